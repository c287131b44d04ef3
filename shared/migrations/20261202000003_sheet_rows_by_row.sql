-- People sort, insert and delete rows in their sheets, so sheets-sync moves recorded rows: an
-- append that lands in a gap (values.append inserts its rows) moves every row below it down
-- (`UPDATE ... WHERE spreadsheet_id = $1 AND tab = $2 AND row_number >= $3`). Without this
-- index that statement reads every row of the tab on every append.
CREATE INDEX sheet_rows_by_row ON sheet_rows (spreadsheet_id, tab, row_number);
