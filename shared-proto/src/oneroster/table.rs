//! One CSV file as a table of UTF-8 rows with their physical line numbers, columns found by
//! header name; knows nothing of OneRoster beyond "a file with a header".

use std::collections::HashMap;

use super::{Problem, RosterError, RowError};

const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

/// A column found in the header, carrying its name so that problems can say which value is wrong.
#[derive(Debug, Clone, Copy)]
pub(super) struct Column {
    pub index: usize,
    pub name: &'static str,
}

#[derive(Debug)]
pub(super) struct Row {
    pub line: u64,
    fields: Vec<String>,
}

impl Row {
    pub fn get(&self, column: Column) -> &str {
        // Every kept row has exactly as many fields as the header, so this index exists; the
        // fallback only keeps a logic slip from becoming a panic.
        self.fields.get(column.index).map_or("", String::as_str)
    }

    /// The value of a column the file may leave out; empty when it does.
    pub fn get_optional(&self, column: Option<Column>) -> &str {
        column.map_or("", |column| self.get(column))
    }
}

#[derive(Debug)]
pub(super) struct Table {
    pub file: &'static str,
    pub header_line: u64,
    /// Lower-cased header name -> position. Names are matched ignoring ASCII case because
    /// spreadsheets and hand-written exports vary the case ("SourcedId"), never the meaning.
    columns: HashMap<String, usize>,
    /// Only rows that can be read: UTF-8, the header's number of fields, not blank.
    pub rows: Vec<Row>,
    /// Rows left out for their encoding or number of fields, decoded as well as they can be. Only
    /// their ids are used: a reference to one is not reported as unknown on top of its own problem.
    pub unreadable_rows: Vec<Row>,
}

impl Table {
    /// Reads `bytes` as a CSV file with a header. Problems of single rows go to `problems` and the
    /// row is left out; problems that make the whole file unreadable are returned.
    pub fn parse(
        file: &'static str,
        bytes: &[u8],
        problems: &mut Vec<RowError>,
    ) -> Result<Table, RosterError> {
        let bad_file = |line, problem| {
            RosterError::BadFile(RowError {
                file,
                line,
                problem,
            })
        };
        // Excel's "CSV UTF-8" puts a byte order mark in front; it is not part of the first name.
        let bytes = bytes.strip_prefix(UTF8_BOM).unwrap_or(bytes);

        // Encoding is checked per physical line before CSV parsing, so that a Latin-1 "é" inside
        // a multi-line quoted value is still reported on the line where it is. Splitting on '\n'
        // never cuts a UTF-8 sequence: no byte of a multi-byte sequence is below 0x80.
        for (line_idx, line) in bytes.split(|&byte| byte == b'\n').enumerate() {
            if std::str::from_utf8(line).is_err() {
                let line = line_idx as u64 + 1;
                if line == 1 {
                    return Err(bad_file(line, Problem::NotUtf8));
                }
                problems.push(RowError {
                    file,
                    line,
                    problem: Problem::NotUtf8,
                });
            }
        }

        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .trim(csv::Trim::All)
            .from_reader(bytes);
        let mut records = reader.byte_records();
        let mut lines = LineCounter::new(bytes);

        let Some(header) = records.next() else {
            return Err(bad_file(1, Problem::EmptyFile));
        };
        // Reading from a byte slice cannot fail with I/O; csv reports nothing else here, but an
        // error is still an unreadable file rather than a panic.
        let header = header.map_err(|_| bad_file(1, Problem::EmptyFile))?;
        let header_line = lines.line_of(&header);
        let mut columns = HashMap::new();
        for (index, name) in header.iter().enumerate() {
            let name = std::str::from_utf8(name)
                .map_err(|_| bad_file(header_line, Problem::NotUtf8))?
                .to_ascii_lowercase();
            // Spreadsheets leave unnamed trailing columns ("a,b,,"); those are never looked up.
            if name.is_empty() {
                continue;
            }
            if columns.insert(name.clone(), index).is_some() {
                return Err(bad_file(header_line, Problem::DuplicateColumn(name)));
            }
        }

        let mut rows = Vec::new();
        let mut unreadable_rows = Vec::new();
        for record in records {
            let Ok(record) = record else { continue };
            let line = lines.line_of(&record);
            // Spreadsheets save trailing rows of bare commas; they carry no data.
            if record.iter().all(<[u8]>::is_empty) {
                continue;
            }
            let record = match csv::StringRecord::from_byte_record(record) {
                Ok(record) => record,
                // Its non-UTF-8 lines were reported above, once per line.
                Err(error) => {
                    let record = error.into_byte_record();
                    let fields = record.iter().map(String::from_utf8_lossy);
                    let fields = fields.map(|field| field.into_owned()).collect();
                    unreadable_rows.push(Row { line, fields });
                    continue;
                }
            };
            let fields: Vec<String> = record.iter().map(str::to_owned).collect();
            if fields.len() != header.len() {
                problems.push(RowError {
                    file,
                    line,
                    problem: Problem::FieldCount {
                        found: fields.len(),
                        expected: header.len(),
                    },
                });
                unreadable_rows.push(Row { line, fields });
                continue;
            }
            rows.push(Row { line, fields });
        }
        Ok(Table {
            file,
            header_line,
            columns,
            rows,
            unreadable_rows,
        })
    }

    /// Finds a column the file must have, or says that it is missing (on the header's line).
    pub fn required(&self, name: &'static str) -> Result<Column, RosterError> {
        self.optional(name).ok_or(RosterError::BadFile(RowError {
            file: self.file,
            line: self.header_line,
            problem: Problem::MissingColumn(name),
        }))
    }

    pub fn optional(&self, name: &'static str) -> Option<Column> {
        let index = *self.columns.get(&name.to_ascii_lowercase())?;
        Some(Column { index, name })
    }
}

/// Physical line numbers of records, from their byte offsets. csv's own `Position::line` is
/// taken before the previous record's "\n" when lines end in "\r\n" (Windows, Excel), which
/// would point one line too early; byte offsets are exact, so lines are counted from them.
struct LineCounter<'b> {
    bytes: &'b [u8],
    counted_up_to: usize,
    line: u64,
}

impl<'b> LineCounter<'b> {
    fn new(bytes: &'b [u8]) -> Self {
        LineCounter {
            bytes,
            counted_up_to: 0,
            line: 1,
        }
    }

    /// The line `record` starts on. Records come in file order, so counting goes on from the
    /// previous one and the whole file is scanned once.
    fn line_of(&mut self, record: &csv::ByteRecord) -> u64 {
        let offset = record.position().map_or(0, csv::Position::byte);
        let offset = usize::try_from(offset).unwrap_or(usize::MAX);
        // A record never starts with a line break (csv skips blank lines), so the breaks at the
        // offset belong to the lines before it.
        let start = self
            .bytes
            .get(offset..)
            .and_then(|rest| rest.iter().position(|&byte| byte != b'\r' && byte != b'\n'))
            .map_or(self.bytes.len(), |idx| offset + idx);
        if let Some(skipped) = self.bytes.get(self.counted_up_to..start) {
            self.line += skipped.iter().filter(|&&byte| byte == b'\n').count() as u64;
            self.counted_up_to = start;
        }
        self.line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(bytes: &[u8]) -> (Result<Table, RosterError>, Vec<String>) {
        let mut problems = Vec::new();
        let table = Table::parse("t.csv", bytes, &mut problems);
        (table, problems.iter().map(ToString::to_string).collect())
    }

    #[test]
    fn lines_are_physical_and_count_the_header_blank_lines_and_quoted_newlines() {
        let (table, problems) =
            parse(b"id,name\r\na,\"two\nlines\"\r\n\r\nb,x\n,,\nc,\"caf\xc3\xa9\"\n");
        let table = table.unwrap();
        assert!(problems.is_empty(), "{problems:?}");
        let lines: Vec<u64> = table.rows.iter().map(|row| row.line).collect();
        assert_eq!(lines, [2, 5, 7]);
        let name = table.required("name").unwrap();
        assert_eq!(table.rows[0].get(name), "two\nlines");
        assert_eq!(table.rows[2].get(name), "café");
    }

    #[test]
    fn bom_is_dropped_and_columns_match_ignoring_case_and_spaces() {
        let (table, _) = parse(b"\xEF\xBB\xBFSourcedId , Name\nx, y \n");
        let table = table.unwrap();
        let id = table.required("sourcedId").unwrap();
        let name = table.required("name").unwrap();
        assert_eq!(table.rows[0].get(id), "x");
        assert_eq!(table.rows[0].get(name), "y");
        assert!(table.optional("status").is_none());
        assert_eq!(table.rows[0].get_optional(None), "");
    }

    #[test]
    fn each_latin1_line_is_reported_once_and_left_out() {
        let (table, problems) = parse(b"id,name\na,Jos\xe9\nb,ok\nc,\"M\xfcller\n\xe9\"\n");
        assert_eq!(
            problems,
            [
                "t.csv:2: not UTF-8 text (save the file as UTF-8)",
                "t.csv:4: not UTF-8 text (save the file as UTF-8)",
                "t.csv:5: not UTF-8 text (save the file as UTF-8)",
            ]
        );
        assert_eq!(table.unwrap().rows.len(), 1);
    }

    #[test]
    fn short_and_long_rows_are_reported() {
        let (table, problems) = parse(b"a,b,c\n1,2\n1,2,3\n1,2,3,4\n");
        assert_eq!(table.unwrap().rows.len(), 1);
        assert_eq!(problems.len(), 2);
        assert!(problems[0].starts_with("t.csv:2: 2 fields, but the header has 3"));
        assert!(problems[1].starts_with("t.csv:4: 4 fields, but the header has 3"));
    }

    #[test]
    fn unreadable_headers_stop_the_file() {
        for (bytes, expected) in [
            (
                &b""[..],
                "t.csv:1: the file is empty; expected a header row",
            ),
            (
                b"\xEF\xBB\xBF\n\n",
                "t.csv:1: the file is empty; expected a header row",
            ),
            (
                b"n\xe9m,id\n",
                "t.csv:1: not UTF-8 text (save the file as UTF-8)",
            ),
            // UTF-16, as Excel's "Unicode text" writes it.
            (
                b"\xFF\xFEi\0d\0\n\0",
                "t.csv:1: not UTF-8 text (save the file as UTF-8)",
            ),
            (
                b"id,ID\n",
                "t.csv:1: column \"id\" appears twice in the header",
            ),
        ] {
            let (table, _) = parse(bytes);
            assert_eq!(table.unwrap_err().to_string(), expected);
        }
        let (table, _) = parse(b"id\n");
        let error = table.unwrap().required("name").unwrap_err();
        assert_eq!(error.to_string(), "t.csv:1: missing column \"name\"");
    }
}
