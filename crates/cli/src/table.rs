//! A tiny aligned-columns table for human output (no dependency needed for
//! what `column -t` does).

/// Rows of cells under a header, rendered with every column padded to its
/// widest cell and two spaces between columns.
#[derive(Debug, Default)]
pub(crate) struct Table {
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table whose first row is `header`.
    pub(crate) fn new(header: &[&str]) -> Table {
        Table {
            rows: vec![header.iter().map(|h| (*h).to_owned()).collect()],
        }
    }

    /// A table without a header row (for key/value blocks).
    pub(crate) fn headless() -> Table {
        Table { rows: Vec::new() }
    }

    /// Appends a row; missing trailing cells render empty.
    pub(crate) fn row<I, S>(&mut self, cells: I)
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        // Cells are single-line by construction: a newline would break the
        // alignment of every following row.
        self.rows.push(
            cells
                .into_iter()
                .map(|c| c.into().replace('\n', " "))
                .collect(),
        );
    }

    /// Renders the table, each line ending in '\n'. The last column is not
    /// padded, so lines carry no trailing spaces.
    pub(crate) fn render(&self) -> String {
        let columns = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        let mut widths = vec![0usize; columns];
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate() {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
        let mut out = String::new();
        for row in &self.rows {
            let mut line = String::new();
            for (i, cell) in row.iter().enumerate() {
                if i > 0 {
                    line.push_str("  ");
                }
                line.push_str(cell);
                if i + 1 < row.len() {
                    let pad = widths[i] - cell.chars().count();
                    line.extend(std::iter::repeat_n(' ', pad));
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligns_columns_without_trailing_spaces() {
        let mut t = Table::new(&["ID", "NAME", "STATE"]);
        t.row(["abc", "x", "running"]);
        t.row(["d", "longer-name", ""]);
        assert_eq!(
            t.render(),
            "ID   NAME         STATE\nabc  x            running\nd    longer-name\n"
        );
    }

    #[test]
    fn counts_characters_not_bytes() {
        let mut t = Table::headless();
        t.row(["é", "1"]);
        t.row(["ab", "2"]);
        assert_eq!(t.render(), "é   1\nab  2\n");
    }

    #[test]
    fn empty_table_renders_nothing() {
        assert_eq!(Table::headless().render(), "");
    }
}
