//! A1 notation: parsing what clients send (`'My tab'!A2:T`, `Sheet1`, `A1:B2`, `1:3`, `$A$1`)
//! and writing ranges back the way Google does (`Sheet1!A1:T60`, `'My tab'!B7`).

/// Columns Google allows in a sheet (`ZZZ` is 18,278; the UI caps lower, the parser does not
/// need to).
const MAX_COLUMN: u32 = 18_278;
/// Rows Google allows in a sheet, a bound that keeps arithmetic far from overflow.
const MAX_ROW: u32 = 10_000_000;

/// A range as typed: the tab (if named) and the cells, with `None` for an open side, like the
/// API's own `GridRange`. Rows and columns are 0-based; ends are exclusive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct A1Range {
    pub sheet: Option<String>,
    pub cells: Option<CellRange>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CellRange {
    pub start_row: Option<u32>,
    pub end_row: Option<u32>,
    pub start_col: Option<u32>,
    pub end_col: Option<u32>,
}

/// A fully bounded rectangle (after clipping to a sheet's grid).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rect {
    pub start_row: u32,
    pub end_row: u32,
    pub start_col: u32,
    pub end_col: u32,
}

impl Rect {
    pub fn rows(&self) -> u32 {
        self.end_row.saturating_sub(self.start_row)
    }

    pub fn cols(&self) -> u32 {
        self.end_col.saturating_sub(self.start_col)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError;

/// Parses `input` (already percent-decoded). A bare word that reads as cells (`A1:B2`) comes
/// back without a tab; the caller first checks whether a tab has that very name.
pub fn parse(input: &str) -> Result<A1Range, ParseError> {
    let input = input.trim();
    if input.is_empty() {
        return Err(ParseError);
    }
    if let Some(rest) = input.strip_prefix('\'') {
        // 'It''s'!A1 : a quote inside a quoted name is doubled.
        let mut name = String::new();
        let mut chars = rest.char_indices().peekable();
        let mut after = None;
        while let Some((index, c)) = chars.next() {
            if c == '\'' {
                if matches!(chars.peek(), Some((_, '\''))) {
                    chars.next();
                    name.push('\'');
                } else {
                    after = Some(&rest[index + 1..]);
                    break;
                }
            } else {
                name.push(c);
            }
        }
        let after = after.ok_or(ParseError)?;
        if name.is_empty() {
            return Err(ParseError);
        }
        return match after {
            "" => Ok(A1Range {
                sheet: Some(name),
                cells: None,
            }),
            cells => Ok(A1Range {
                sheet: Some(name),
                cells: Some(parse_cells(cells.strip_prefix('!').ok_or(ParseError)?)?),
            }),
        };
    }
    match input.rsplit_once('!') {
        Some((sheet, cells)) if !sheet.is_empty() => Ok(A1Range {
            sheet: Some(sheet.to_owned()),
            cells: Some(parse_cells(cells)?),
        }),
        Some(_) => Err(ParseError),
        None => match parse_cells(input) {
            Ok(cells) => Ok(A1Range {
                sheet: None,
                cells: Some(cells),
            }),
            // Not cells: a tab name on its own.
            Err(ParseError) => Ok(A1Range {
                sheet: Some(input.to_owned()),
                cells: None,
            }),
        },
    }
}

/// `A1`, `A1:B2`, `A:C`, `A2:T`, `3:5`, `$A$1:$B$2` (case-insensitive).
fn parse_cells(input: &str) -> Result<CellRange, ParseError> {
    let input = input.trim();
    let (first, second) = match input.split_once(':') {
        Some((first, second)) => (parse_endpoint(first)?, Some(parse_endpoint(second)?)),
        None => (parse_endpoint(input)?, None),
    };
    let Some(second) = second else {
        // A single endpoint must be a cell: `A` or `3` alone is not a range.
        return match first {
            (Some(col), Some(row)) => Ok(CellRange {
                start_row: Some(row),
                end_row: Some(row + 1),
                start_col: Some(col),
                end_col: Some(col + 1),
            }),
            _ => Err(ParseError),
        };
    };
    let ((c1, r1), (c2, r2)) = (first, second);
    // Both sides must agree on having columns (`A1:3` is not a range), except `A2:T`-style
    // where the end leaves rows open.
    if c1.is_none() != c2.is_none() {
        return Err(ParseError);
    }
    let (start_col, end_col) = match (c1, c2) {
        (Some(a), Some(b)) => (Some(a.min(b)), Some(a.max(b) + 1)),
        _ => (None, None),
    };
    let (start_row, end_row) = match (r1, r2) {
        (Some(a), Some(b)) => (Some(a.min(b)), Some(a.max(b) + 1)),
        (Some(a), None) => (Some(a), None),
        (None, Some(b)) => (Some(0), Some(b + 1)),
        (None, None) => (None, None),
    };
    if start_col.is_none() && start_row.is_none() {
        return Err(ParseError);
    }
    Ok(CellRange {
        start_row,
        end_row,
        start_col,
        end_col,
    })
}

/// `A1` → (Some(0), Some(0)); `C` → (Some(2), None); `7` → (None, Some(6)).
fn parse_endpoint(input: &str) -> Result<(Option<u32>, Option<u32>), ParseError> {
    let bytes = input.trim().as_bytes();
    let mut index = 0;
    if bytes.get(index) == Some(&b'$') {
        index += 1;
    }
    let letters_start = index;
    while index < bytes.len() && bytes[index].is_ascii_alphabetic() {
        index += 1;
    }
    let letters = &bytes[letters_start..index];
    if bytes.get(index) == Some(&b'$') && !letters.is_empty() {
        index += 1;
    }
    let digits_start = index;
    while index < bytes.len() && bytes[index].is_ascii_digit() {
        index += 1;
    }
    let digits = &bytes[digits_start..index];
    if index != bytes.len() || (letters.is_empty() && digits.is_empty()) {
        return Err(ParseError);
    }
    let col = if letters.is_empty() {
        None
    } else {
        Some(column_index(letters).ok_or(ParseError)?)
    };
    let row = if digits.is_empty() {
        None
    } else {
        let number: u32 = std::str::from_utf8(digits)
            .map_err(|_| ParseError)?
            .parse()
            .map_err(|_| ParseError)?;
        if number == 0 || number > MAX_ROW {
            return Err(ParseError);
        }
        Some(number - 1)
    };
    Ok((col, row))
}

fn column_index(letters: &[u8]) -> Option<u32> {
    if letters.len() > 3 {
        return None;
    }
    let mut value: u32 = 0;
    for letter in letters {
        value = value * 26 + u32::from(letter.to_ascii_uppercase() - b'A') + 1;
    }
    (value <= MAX_COLUMN).then(|| value - 1)
}

/// `0` → `A`, `26` → `AA`.
pub fn column_name(mut index: u32) -> String {
    let mut letters = Vec::new();
    loop {
        letters.push(b'A' + (index % 26) as u8);
        if index < 26 {
            break;
        }
        index = index / 26 - 1;
    }
    letters.reverse();
    String::from_utf8(letters).unwrap_or_default()
}

/// A tab name as Google writes it in a range: bare when it is a plain identifier that cannot be
/// mistaken for a cell, quoted (with `'` doubled) otherwise.
pub fn quote_sheet(name: &str) -> String {
    let plain = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && parse_endpoint(name).is_err();
    if plain {
        name.to_owned()
    } else {
        format!("'{}'", name.replace('\'', "''"))
    }
}

/// `A1:C3`, or `B2` for a single cell.
pub fn format_cells(rect: Rect) -> String {
    let mut out = format!("{}{}", column_name(rect.start_col), rect.start_row + 1);
    let last_row = rect.end_row.max(rect.start_row + 1) - 1;
    let last_col = rect.end_col.max(rect.start_col + 1) - 1;
    if last_row != rect.start_row || last_col != rect.start_col {
        out.push_str(&format!(":{}{}", column_name(last_col), last_row + 1));
    }
    out
}

/// `Sheet1!A1:C3`, `'My tab'!B2`.
pub fn format_range(sheet: &str, rect: Rect) -> String {
    format!("{}!{}", quote_sheet(sheet), format_cells(rect))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn cells(
        start_row: Option<u32>,
        end_row: Option<u32>,
        start_col: Option<u32>,
        end_col: Option<u32>,
    ) -> Option<CellRange> {
        Some(CellRange {
            start_row,
            end_row,
            start_col,
            end_col,
        })
    }

    #[test]
    fn columns_round_trip() {
        assert_eq!(column_name(0), "A");
        assert_eq!(column_name(25), "Z");
        assert_eq!(column_name(26), "AA");
        assert_eq!(column_name(27), "AB");
        assert_eq!(column_name(701), "ZZ");
        assert_eq!(column_name(702), "AAA");
        for index in [0, 1, 25, 26, 51, 52, 701, 702, 18_277] {
            assert_eq!(
                column_index(column_name(index).as_bytes()),
                Some(index),
                "{index}"
            );
        }
        assert_eq!(column_index(b"aa"), Some(26));
        assert_eq!(column_index(b"AAAA"), None);
    }

    #[test]
    fn parses_tab_and_cells() {
        assert_eq!(
            parse("Tab!A1:C3"),
            Ok(A1Range {
                sheet: Some("Tab".into()),
                cells: cells(Some(0), Some(3), Some(0), Some(3)),
            })
        );
        assert_eq!(
            parse("'My tab'!A:C"),
            Ok(A1Range {
                sheet: Some("My tab".into()),
                cells: cells(None, None, Some(0), Some(3)),
            })
        );
        assert_eq!(
            parse("'It''s'!A1"),
            Ok(A1Range {
                sheet: Some("It's".into()),
                cells: cells(Some(0), Some(1), Some(0), Some(1)),
            })
        );
        assert_eq!(
            parse("'a!b'!B7"),
            Ok(A1Range {
                sheet: Some("a!b".into()),
                cells: cells(Some(6), Some(7), Some(1), Some(2)),
            })
        );
        assert_eq!(
            parse("'My tab'"),
            Ok(A1Range {
                sheet: Some("My tab".into()),
                cells: None,
            })
        );
    }

    #[test]
    fn parses_open_and_whole_ranges() {
        assert_eq!(
            parse("Tab"),
            Ok(A1Range {
                sheet: Some("Tab".into()),
                cells: None,
            })
        );
        assert_eq!(
            parse("Tab!A2:T").map(|r| r.cells),
            Ok(cells(Some(1), None, Some(0), Some(20)))
        );
        assert_eq!(
            parse("A1:B2"),
            Ok(A1Range {
                sheet: None,
                cells: cells(Some(0), Some(2), Some(0), Some(2)),
            })
        );
        assert_eq!(
            parse("Tab!2:4").map(|r| r.cells),
            Ok(cells(Some(1), Some(4), None, None))
        );
        assert_eq!(
            parse("Tab!AA10:AB").map(|r| r.cells),
            Ok(cells(Some(9), None, Some(26), Some(28)))
        );
        assert_eq!(
            parse("Tab!$A$1:$b$2").map(|r| r.cells),
            Ok(cells(Some(0), Some(2), Some(0), Some(2)))
        );
        // Reversed corners are normalised.
        assert_eq!(
            parse("Tab!C3:A1").map(|r| r.cells),
            Ok(cells(Some(0), Some(3), Some(0), Some(3)))
        );
    }

    #[test]
    fn refuses_nonsense() {
        assert_eq!(parse(""), Err(ParseError));
        assert_eq!(parse("'unterminated!A1"), Err(ParseError));
        assert_eq!(parse("Tab!"), Err(ParseError));
        assert_eq!(parse("Tab!A0"), Err(ParseError));
        assert_eq!(parse("Tab!1A"), Err(ParseError));
        assert_eq!(parse("Tab!A1:3"), Err(ParseError));
        assert_eq!(parse("Tab!AAAA1"), Err(ParseError));
        assert_eq!(parse("!A1"), Err(ParseError));
        assert_eq!(parse("'Tab'A1"), Err(ParseError));
    }

    #[test]
    fn formats_like_google() {
        let rect = Rect {
            start_row: 10,
            end_row: 60,
            start_col: 0,
            end_col: 20,
        };
        assert_eq!(format_range("Sheet1", rect), "Sheet1!A11:T60");
        assert_eq!(format_range("My tab", rect), "'My tab'!A11:T60");
        assert_eq!(format_range("It's", rect), "'It''s'!A11:T60");
        let cell = Rect {
            start_row: 6,
            end_row: 7,
            start_col: 1,
            end_col: 2,
        };
        assert_eq!(format_range("Data", cell), "Data!B7");
        // A name that reads as a cell is quoted.
        assert_eq!(quote_sheet("AB12"), "'AB12'");
        assert_eq!(quote_sheet("Responses_2024"), "Responses_2024");
    }
}
