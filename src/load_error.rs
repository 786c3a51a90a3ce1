//! Errors from loading configuration, plan and list files: always the file, the line
//! when there is one, and the reason, so an operator can fix the file at once.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadError {
    pub file: String,
    pub line: Option<usize>,
    pub reason: String,
}

/// Most bytes of a reason given, whatever it quotes: a list line can be megabytes (QA
/// 152: a 20 MB line was echoed whole by `check`, the reload's answer and the log).
/// Quotes are cut shorter still ([`quote`]), so that the reason after one is kept.
const REASON_MAX: usize = 2048;
/// Most bytes of a text quoted in a reason.
const QUOTE_MAX: usize = 80;

/// `text` to quote in a reason: cut to [`QUOTE_MAX`] bytes on a character boundary,
/// saying how long it was (QA 155: cutting the whole reason cut its explanation off).
pub fn quote(text: &str) -> std::borrow::Cow<'_, str> {
    match cut(text, QUOTE_MAX) {
        Some(head) => format!("{head}... ({} bytes)", text.len()).into(),
        None => text.into(),
    }
}

/// `reason`, cut to [`REASON_MAX`] bytes on a character boundary, saying how long it was.
fn bounded(reason: String) -> String {
    match cut(&reason, REASON_MAX) {
        Some(head) => format!("{head}... ({} bytes in all)", reason.len()),
        None => reason,
    }
}

/// The first `max` bytes of `text` or fewer, ending on a character boundary; `None`
/// when it is no longer than that.
fn cut(text: &str, max: usize) -> Option<&str> {
    (text.len() > max).then(|| {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        &text[..end]
    })
}

impl LoadError {
    pub fn at(file: impl Into<String>, line: usize, reason: impl Into<String>) -> LoadError {
        LoadError {
            file: file.into(),
            line: Some(line),
            reason: bounded(reason.into()),
        }
    }
    pub fn file(file: impl Into<String>, reason: impl Into<String>) -> LoadError {
        LoadError {
            file: file.into(),
            line: None,
            reason: bounded(reason.into()),
        }
    }
}

/// The bytes of a configuration, plan or list file, refused when the file changed while
/// it was read (its length or modification time moved, or fewer bytes came than it
/// held): a feed still writing it in place would otherwise put in force the part
/// written so far (QA 152: a blacklist reloaded at 60% written lost two million
/// entries, and its cut last line came in as a number). `name` is the file as the
/// operator named it.
pub fn read_whole(path: &std::path::Path, name: &str) -> Result<Vec<u8>, LoadError> {
    use std::io::Read;
    let cannot = |e: std::io::Error| LoadError::file(name, format!("cannot read: {e}"));
    let mut f = std::fs::File::open(path).map_err(cannot)?;
    let stamp = |m: &std::fs::Metadata| (m.len(), m.modified().ok());
    let before = f.metadata().map_err(cannot)?;
    let mut bytes = Vec::with_capacity(before.len() as usize);
    f.read_to_end(&mut bytes).map_err(cannot)?;
    let after = f.metadata().map_err(cannot)?;
    // A file of the kernel's (/proc, /dev/stdin) says length 0 and has more.
    let regular = before.is_file() && before.len() > 0;
    if stamp(&before) != stamp(&after) || regular && bytes.len() as u64 != after.len() {
        return Err(LoadError::file(
            name,
            "changed while being read (a feed still writing it? write the file whole elsewhere and rename it into place)",
        ));
    }
    Ok(bytes)
}

/// [`read_whole`] of a text file: refused with the line of the first byte that is no
/// UTF-8.
pub fn read_text(path: &std::path::Path, name: &str) -> Result<String, LoadError> {
    String::from_utf8(read_whole(path, name)?).map_err(|e| {
        let line = 1 + e.as_bytes()[..e.utf8_error().valid_up_to()]
            .iter()
            .filter(|&&c| c == b'\n')
            .count();
        not_utf8(name, line, e.as_bytes())
    })
}

/// The refusal of a text file that is no UTF-8 at `line`, saying what it more likely
/// is and how to convert it (QA 203): UTF-16 with its byte-order mark (what spreadsheets
/// save as "Unicode text"), else a legacy encoding, GBK or GB18030 being what Chinese
/// Windows tools save.
pub fn not_utf8(name: &str, line: usize, bytes: &[u8]) -> LoadError {
    if bytes.starts_with(&[0xff, 0xfe]) || bytes.starts_with(&[0xfe, 0xff]) {
        return LoadError::at(
            name,
            1,
            "UTF-16 text, not UTF-8 (a spreadsheet's \"Unicode text\"?): convert it, e.g. iconv -f UTF-16 -t UTF-8",
        );
    }
    LoadError::at(
        name,
        line,
        "not UTF-8 text (GBK or GB18030, as Chinese Windows tools save it?): convert it, e.g. iconv -f GB18030 -t UTF-8",
    )
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

    /// QA 152: a list line of 20 MB was echoed whole in the reason; QA 155: cut with the
    /// reason, the explanation after the quote was lost.
    #[test]
    fn a_long_reason_is_cut_and_says_how_long() {
        let line = "7".repeat(20_000_000);
        let e = LoadError::at(
            "l.txt",
            4,
            format!("'{}' is not a number (too-long)", quote(&line)),
        );
        assert_eq!(
            e.reason,
            format!(
                "'{}... (20000000 bytes)' is not a number (too-long)",
                "7".repeat(80)
            )
        );
        let e = LoadError::at("l.txt", 4, format!("bad '{line}'"));
        assert!(e.reason.len() < 2100, "{}", e.reason.len());
        assert!(
            e.reason.ends_with("... (20000006 bytes in all)"),
            "{}",
            &e.reason[2000..]
        );
        // On a character boundary.
        let e = LoadError::file("l.txt", "号".repeat(1000));
        assert!(e.reason.starts_with(&"号".repeat(680)));
        assert_eq!(
            quote(&"号".repeat(30)),
            format!("{}... (90 bytes)", "号".repeat(26))
        );
        assert_eq!(LoadError::file("l.txt", "short").reason, "short");
    }

    /// A file a writer is still appending to is refused, not read in part (QA 152); once
    /// written, it is read whole.
    #[test]
    fn a_file_changing_while_read_is_refused() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("list.txt");
        let line = "+8613800000000\n".repeat(1000);
        std::fs::write(&path, line.repeat(50)).unwrap();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let writer = {
            let (path, stop, line) = (path.clone(), stop.clone(), line.clone());
            std::thread::spawn(move || {
                let mut f = std::fs::OpenOptions::new()
                    .append(true)
                    .open(&path)
                    .unwrap();
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    f.write_all(&line.as_bytes()[..15]).unwrap();
                }
            })
        };
        let refused = (0..500).any(|_| {
            read_whole(&path, "list.txt").is_err_and(|e| {
                e.to_string()
                    .starts_with("list.txt: changed while being read")
            })
        });
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        writer.join().unwrap();
        assert!(refused);
        let whole = read_whole(&path, "list.txt").unwrap();
        assert_eq!(whole.len() as u64, std::fs::metadata(&path).unwrap().len());
        let e = read_whole(dir.path(), "d").unwrap_err().to_string();
        assert!(e.starts_with("d: cannot read: "), "{e}");
    }
}
