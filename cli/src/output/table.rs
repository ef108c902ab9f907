//! Aligned text tables: columns padded to their widest cell, three spaces apart, the last
//! column not padded (as `docker` prints them).

/// A table: a header row and rows of cells.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Table {
    headers: Vec<String>,
    rows: Vec<Vec<String>>,
}

/// The gap between columns.
const GAP: usize = 3;

impl Table {
    /// A table with these column headers.
    pub fn new(headers: &[&str]) -> Self {
        Table {
            headers: headers.iter().map(|h| (*h).to_owned()).collect(),
            rows: Vec::new(),
        }
    }

    /// Adds a row (missing cells are empty, extra ones ignored).
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// The table as text, one line per row, each ending with a newline.
    pub fn render(&self) -> String {
        let n = self.headers.len();
        let mut widths: Vec<usize> = self.headers.iter().map(|h| width(h)).collect();
        for r in &self.rows {
            for (i, c) in r.iter().take(n).enumerate() {
                widths[i] = widths[i].max(width(c));
            }
        }
        let mut out = String::new();
        let empty = String::new();
        for r in std::iter::once(&self.headers).chain(&self.rows) {
            let mut line = String::new();
            for (i, w) in widths.iter().enumerate() {
                let cell = r.get(i).unwrap_or(&empty);
                line.push_str(cell);
                if i + 1 < n {
                    line.extend(std::iter::repeat_n(' ', w - width(cell) + GAP));
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// The number of characters of `s` (cells hold no wide characters).
fn width(s: &str) -> usize {
    s.chars().count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_are_aligned() {
        let mut t = Table::new(&["NAME", "REPLICAS", "IMAGE"]);
        t.row(vec!["web".into(), "3/3".into(), "busybox:1".into()]);
        t.row(vec!["database".into(), "0/1".into(), String::new()]);
        assert_eq!(
            t.render(),
            "NAME       REPLICAS   IMAGE\nweb        3/3        busybox:1\ndatabase   0/1\n"
        );
    }
}
