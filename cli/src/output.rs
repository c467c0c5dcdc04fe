//! Everything that reaches stdout: aligned plain-text tables, compact JSON
//! (one document per line) and raw log bytes. A closed stdout (`ferry ... |
//! head`) becomes [`StdoutClosed`], which the top level treats as success.

use std::fmt;
use std::io::{self, Write};

use anyhow::Result;
use serde::Serialize;

/// Columns are separated by this many spaces.
const GAP: usize = 2;

/// A plain-text table: a header row and left-aligned, space-padded columns.
#[derive(Debug, Clone, Default)]
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(header: &[&str]) -> Table {
        Table {
            header: header.iter().map(|h| h.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    /// Adds a row; empty cells are shown as `-`, line breaks as spaces.
    pub fn row<I, S>(&mut self, cells: I)
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.rows
            .push(cells.into_iter().map(|c| cell(&c.into())).collect());
    }

    /// The table as text, every line ending in `\n`, no trailing spaces.
    pub fn render(&self) -> String {
        let columns = std::iter::once(&self.header)
            .chain(&self.rows)
            .map(Vec::len)
            .max()
            .unwrap_or(0);
        let mut widths = vec![0; columns];
        for line in std::iter::once(&self.header).chain(&self.rows) {
            for (width, text) in widths.iter_mut().zip(line) {
                *width = (*width).max(text.chars().count());
            }
        }
        let mut out = String::new();
        for line in std::iter::once(&self.header).chain(&self.rows) {
            let mut text = String::new();
            for (i, value) in line.iter().enumerate() {
                text.push_str(value);
                if i + 1 < line.len() {
                    let pad = widths[i] - value.chars().count() + GAP;
                    text.extend(std::iter::repeat_n(' ', pad));
                }
            }
            out.push_str(text.trim_end());
            out.push('\n');
        }
        out
    }
}

fn cell(value: &str) -> String {
    let value = value.trim();
    if value.is_empty() {
        return "-".to_string();
    }
    value
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// The first 12 characters of a commit id (the whole string if shorter).
pub fn short_revision(revision: &str) -> String {
    revision.chars().take(12).collect()
}

/// `-` for an empty string, else the string.
pub fn or_dash(value: &str) -> &str {
    if value.is_empty() { "-" } else { value }
}

/// Stdout was closed by the reader (e.g. a pipe into `head`).
#[derive(Debug)]
pub struct StdoutClosed;

impl fmt::Display for StdoutClosed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("standard output was closed")
    }
}

impl std::error::Error for StdoutClosed {}

/// Writes `bytes` to stdout and flushes, so output appears as it arrives.
pub fn write_raw(bytes: &[u8]) -> Result<()> {
    let mut stdout = io::stdout().lock();
    stdout
        .write_all(bytes)
        .and_then(|()| stdout.flush())
        .map_err(|e| {
            if e.kind() == io::ErrorKind::BrokenPipe {
                anyhow::Error::new(StdoutClosed)
            } else {
                anyhow::Error::new(e).context("cannot write to standard output")
            }
        })
}

/// Prints `text`, adding a final newline if it has none.
pub fn print(text: &str) -> Result<()> {
    if text.ends_with('\n') {
        write_raw(text.as_bytes())
    } else {
        write_raw(format!("{text}\n").as_bytes())
    }
}

/// Prints `value` as one line of compact JSON.
pub fn print_json<T: Serialize + ?Sized>(value: &T) -> Result<()> {
    let mut line = serde_json::to_string(value)?;
    line.push('\n');
    write_raw(line.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_are_padded_with_two_spaces() {
        let mut t = Table::new(&["NAME", "VERSION", "STATUS"]);
        t.row(["build-and-deploy", "12", "Succeeded"]);
        t.row(["x", "", "In\nProgress"]);
        assert_eq!(
            t.render(),
            "NAME              VERSION  STATUS\n\
             build-and-deploy  12       Succeeded\n\
             x                 -        In Progress\n"
        );
    }

    #[test]
    fn no_trailing_spaces_and_ragged_rows() {
        let mut t = Table::new(&["A", "B"]);
        t.row(["1", "-"]);
        t.row(["22"]);
        t.row(["ü", "wide", "extra"]);
        assert_eq!(t.render(), "A   B\n1   -\n22\nü   wide  extra\n");
        assert_eq!(Table::new(&["ONLY"]).render(), "ONLY\n");
    }

    #[test]
    fn helpers() {
        assert_eq!(short_revision("0123456789abcdef"), "0123456789ab");
        assert_eq!(short_revision("abc"), "abc");
        assert_eq!(or_dash(""), "-");
        assert_eq!(or_dash("x"), "x");
    }
}
