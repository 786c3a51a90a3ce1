//! Errors from loading configuration, plan and list files: always the file, the line
//! when there is one, and the reason, so an operator can fix the file at once.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadError {
    pub file: String,
    pub line: Option<usize>,
    pub reason: String,
}

impl LoadError {
    pub fn at(file: impl Into<String>, line: usize, reason: impl Into<String>) -> LoadError {
        LoadError {
            file: file.into(),
            line: Some(line),
            reason: reason.into(),
        }
    }
    pub fn file(file: impl Into<String>, reason: impl Into<String>) -> LoadError {
        LoadError {
            file: file.into(),
            line: None,
            reason: reason.into(),
        }
    }
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(l) => write!(f, "{}:{}: {}", self.file, l, self.reason),
            None => write!(f, "{}: {}", self.file, self.reason),
        }
    }
}

impl std::error::Error for LoadError {}

/// Line and column (both from 1, the column in bytes) of byte `offset` of a text: where
/// a config error or a malformed message is, for a person.
pub fn line_and_column(text: &[u8], offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line_start = before
        .iter()
        .rposition(|&c| c == b'\n')
        .map_or(0, |p| p + 1);
    let line = before.iter().filter(|&&c| c == b'\n').count() + 1;
    (line, before.len() - line_start + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_and_column_of_an_offset() {
        let t = b"[general]\r\nplan = 5\nx";
        assert_eq!(line_and_column(t, 0), (1, 1));
        assert_eq!(line_and_column(t, 3), (1, 4));
        assert_eq!(line_and_column(t, 11), (2, 1));
        assert_eq!(line_and_column(t, 18), (2, 8));
        assert_eq!(line_and_column(t, 20), (3, 1));
        // Past the end: the end.
        assert_eq!(line_and_column(t, 99), (3, 2));
    }
}
