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
