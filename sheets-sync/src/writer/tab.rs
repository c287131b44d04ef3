//! A tab and its header: found or created, checked before each batch (a person may have
//! moved, cleared or deleted it), widened for the form's columns, refilled when it lost its
//! rows.

use super::*;
use crate::google::NewTab;

pub(super) fn header_cells(header: &[String]) -> Vec<Value> {
    header
        .iter()
        .map(|name| Value::String(name.clone()))
        .collect()
}

/// What reading a tab's header found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum HeaderState {
    /// The header is there, its `response_id` column where it was.
    Same,
    /// A person moved or inserted columns: `response_id` is in another column now.
    Moved,
    /// Row 1 was not the header (cleared, or the header row deleted) while the tab still holds
    /// responses: the header is back in row 1 and the tab is unclean (reconciled next).
    Restored,
    /// The tab had lost every row Collect wrote (deleted, renamed, emptied): it has its header
    /// again, `sheet_rows` of it are forgotten, and every stored response of the form is
    /// queued for it (an export).
    Rebuilt,
}

/// Row 1's cells as header names.
pub(super) fn header_names(cells: &[Value]) -> Vec<String> {
    let mut names: Vec<String> = cells
        .iter()
        .map(|cell| match cell {
            Value::String(text) => text.clone(),
            Value::Null => String::new(),
            other => other.to_string(),
        })
        .collect();
    while names.last().is_some_and(String::is_empty) {
        names.pop();
    }
    names
}

/// Makes sure the tab exists and reads its header (row 1). A tab Collect creates is only as
/// large as it needs (the header's columns, a few rows; appends insert their rows), not
/// Google's 1,000 × 26: every tab's cells count against the spreadsheet's 10 million. It is
/// created with its header in one write, and is known clean: nothing of it is read. A tab
/// that is gone while `sheet_rows` says rows were written to it (a person deleted or renamed
/// it) is created again and refilled from PostgreSQL ([`HeaderState::Rebuilt`]).
pub(super) async fn prepare_tab(
    api: &SheetsApi,
    store: &Store,
    target: &Target,
    form: &Form,
) -> Result<(TabState, HeaderState), BatchError> {
    let wanted = sheet_row::wanted_columns(form);
    let tabs = api.tabs(&target.spreadsheet_id).await?;
    let Some(info) = TabInfo::find(&tabs, &target.tab) else {
        let new = NewTab {
            title: &target.tab,
            sheet_id: unused_sheet_id(&tabs, &[]),
            header: &wanted,
        };
        let info = api
            .add_tabs(&target.spreadsheet_id, &[new], 1 + NEW_TAB_SPARE_ROWS)
            .await?
            .remove(0);
        info!(spreadsheet = %target.spreadsheet_id, tab = %target.tab, "created the tab");
        let mut state = TabState::created(&info, wanted);
        let recorded = store
            .sheet_row_count(&target.spreadsheet_id, &target.tab)
            .await?;
        if recorded > 0 {
            state.created = false;
            rebuild(store, form, target).await?;
            return Ok((state, HeaderState::Rebuilt));
        }
        return Ok((state, HeaderState::Same));
    };
    let mut state = TabState {
        title: info.title.clone(),
        header: Vec::new(),
        sheet_id: info.sheet_id,
        column_count: info.column_count,
        row_count: info.row_count,
        response_id_column: 0,
        clean: false,
        checked_at: Instant::now(),
        created: false,
    };
    let first_row = read_first_row(api, target, &state).await?;
    let header = check_header(api, store, target, form, &mut state, first_row).await?;
    Ok((state, header))
}

/// Row 1 of the tab, as read now (`values.get`).
pub(super) async fn read_first_row(
    api: &SheetsApi,
    target: &Target,
    tab: &TabState,
) -> Result<Vec<Value>, BatchError> {
    Ok(api
        .read(&target.spreadsheet_id, &tab.range("1:1"))
        .await?
        .into_iter()
        .next()
        .unwrap_or_default())
}

/// A tab id for a new tab: Google's are non-negative 32-bit numbers, chosen at random, and
/// `addSheet` refuses one the spreadsheet has (`tabs`) or the same request adds (`taken`).
pub(super) fn unused_sheet_id(tabs: &[TabInfo], taken: &[i32]) -> i32 {
    loop {
        let id = (uuid::Uuid::new_v4().as_u128() as u32 & 0x7fff_ffff) as i32;
        if !tabs.iter().any(|tab| tab.sheet_id == id) && !taken.contains(&id) {
            return id;
        }
    }
}

/// Looks the tab up again (`spreadsheets.get`): its grid, and whether it still exists.
pub(super) async fn refresh_tab(
    api: &SheetsApi,
    target: &Target,
    tab: &mut TabState,
) -> Result<bool, BatchError> {
    let tabs = api.tabs(&target.spreadsheet_id).await?;
    let Some(info) = TabInfo::find(&tabs, &target.tab) else {
        return Ok(false);
    };
    tab.update(info);
    Ok(true)
}

impl TabState {
    /// A tab Collect has just created with `header` in row 1: known clean, and its first batch
    /// need not read the header back.
    pub(super) fn created(info: &TabInfo, header: Vec<String>) -> Self {
        Self {
            title: info.title.clone(),
            response_id_column: header
                .iter()
                .position(|name| name == "response_id")
                .unwrap_or(0),
            header,
            sheet_id: info.sheet_id,
            column_count: info.column_count,
            row_count: info.row_count,
            clean: true,
            checked_at: Instant::now(),
            created: true,
        }
    }

    /// `cells` of this tab in A1 notation (`'West'!A1:B2`), under the name the spreadsheet
    /// has for it now.
    pub(super) fn range(&self, cells: &str) -> String {
        a1(&self.title, cells)
    }

    /// Takes the tab's name, id and grid from `spreadsheets.get`, as of now.
    pub(super) fn update(&mut self, info: &TabInfo) {
        self.title.clone_from(&info.title);
        self.sheet_id = info.sheet_id;
        self.column_count = info.column_count;
        self.row_count = info.row_count;
        self.checked_at = Instant::now();
    }
}

/// Checks row 1 (`first_row`, as read) against what the writer knows, and puts things right:
/// columns a person inserted or moved are taken as they are now (Collect's columns are found by
/// their names); questions the sheet lacks are added on the right (only those cells are
/// written, so a person's header cells stay); a missing header row is written back; a tab that
/// lost every row Collect wrote is refilled.
pub(super) async fn check_header(
    api: &SheetsApi,
    store: &Store,
    target: &Target,
    form: &Form,
    tab: &mut TabState,
    first_row: Vec<Value>,
) -> Result<HeaderState, BatchError> {
    let wanted = sheet_row::wanted_columns(form);
    let existing = header_names(&first_row);
    if let Some(position) = existing.iter().position(|name| name == "response_id") {
        let moved = position != tab.response_id_column && !tab.header.is_empty();
        tab.response_id_column = position;
        let header = sheet_row::merged_header(&existing, &wanted);
        if header.len() > existing.len() {
            widen(api, target, tab, header.len()).await?;
            let start = column_letters(existing.len());
            api.write_ranges(
                &target.spreadsheet_id,
                vec![(
                    tab.range(&format!("{start}1")),
                    vec![header_cells(&header[existing.len()..])],
                )],
            )
            .await?;
        }
        tab.header = header;
        return Ok(if moved {
            HeaderState::Moved
        } else {
            HeaderState::Same
        });
    }

    // No header in row 1. Does the tab still hold responses?
    let column = if tab.header.iter().any(|name| name == "response_id") {
        tab.response_id_column
    } else {
        0
    };
    let letters = column_letters(column);
    let ids = if tab.row_count > 0 {
        api.read(
            &target.spreadsheet_id,
            &tab.range(&format!("{letters}:{letters}")),
        )
        .await?
    } else {
        Vec::new()
    };
    let holds_rows = ids
        .iter()
        .filter_map(|row| row.first().and_then(id_text))
        .any(|id| id != "response_id");
    let recorded = store
        .sheet_row_count(&target.spreadsheet_id, &target.tab)
        .await?;
    let header = if holds_rows && tab.header.iter().any(|name| name == "response_id") {
        tab.header.clone()
    } else {
        wanted
    };
    if !existing.is_empty() {
        // Row 1 holds something else (the header row was deleted, or a person's title): the
        // header goes above it.
        api.insert_rows(&target.spreadsheet_id, tab.sheet_id, 0, 1)
            .await?;
        tab.row_count += 1;
    }
    widen(api, target, tab, header.len()).await?;
    api.write_ranges(
        &target.spreadsheet_id,
        vec![(tab.range("A1"), vec![header_cells(&header)])],
    )
    .await?;
    tab.response_id_column = header
        .iter()
        .position(|name| name == "response_id")
        .unwrap_or(0);
    tab.header = header;
    if holds_rows {
        warn!(
            spreadsheet = %target.spreadsheet_id,
            tab = %target.tab,
            "row 1 was not the header; wrote the header back and finding the rows by response_id"
        );
        tab.clean = false;
        return Ok(HeaderState::Restored);
    }
    tab.clean = true;
    if recorded > 0 {
        rebuild(store, form, target).await?;
        return Ok(HeaderState::Rebuilt);
    }
    Ok(HeaderState::Restored)
}

/// The tab lost every row Collect wrote (deleted, renamed, emptied): forgets where they were
/// and queues every stored response of the form for it, as an export does.
pub(super) async fn rebuild(store: &Store, form: &Form, target: &Target) -> Result<(), BatchError> {
    let forgotten = store
        .forget_tab(&target.spreadsheet_id, &target.tab)
        .await?;
    let queued = store.enqueue_form_export(&form.id).await?;
    warn!(
        spreadsheet = %target.spreadsheet_id,
        tab = %target.tab,
        forgotten,
        queued,
        "the tab lost every row written to it (deleted, renamed or emptied in the sheet); refilling it from PostgreSQL"
    );
    Ok(())
}

/// Makes room for `columns` columns: Sheets refuses values past the grid. The grid is looked
/// up first (a person may have added columns since) and only ever grown (`appendDimension`),
/// so a person's columns are never cut off.
pub(super) async fn widen(
    api: &SheetsApi,
    target: &Target,
    tab: &mut TabState,
    columns: usize,
) -> Result<(), BatchError> {
    let columns = columns as i32;
    if columns > tab.column_count {
        refresh_tab(api, target, tab).await?;
    }
    if columns > tab.column_count {
        api.append_columns(
            &target.spreadsheet_id,
            tab.sheet_id,
            columns - tab.column_count,
        )
        .await?;
        tab.column_count = columns;
    }
    Ok(())
}
