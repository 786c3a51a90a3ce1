//! Number lists (blacklist, whitelists, protected numbers, own segments): exact numbers
//! and segments (prefixes), millions of them, looked up on every call.
//!
//! Exact numbers are a sorted `Vec<u64>` of [`Number::key`]s (8 bytes per entry, binary
//! search); segments are a second sorted vector with a bitmask of the prefix lengths
//! present, so a lookup costs one search per distinct segment length.
//!
//! List file format, one entry per line, `#` starts a comment:
//! - a number in any form the normaliser accepts (`+8613812345678`, `13812345678`, `0755...`);
//! - a segment: a number prefix followed by `*` (`+86170*`, `1703*`);
//! - a range: `FROM..TO`, both ends of the same length (`13800000000..13800009999`),
//!   stored as the smallest set of segments that covers it.

use crate::load_error::LoadError;
use crate::numbering::{Number, key_of, normalise};

#[derive(Debug, Clone, Default)]
pub struct NumberSet {
    exact: Vec<u64>,
    prefixes: Vec<u64>,
    /// Bit n set: some segment has n digits.
    prefix_lens: u32,
}

/// How a number matched a list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListMatch {
    Exact,
    /// Matched a segment of this many digits.
    Segment(u8),
}

/// Accumulates entries; [`NumberSetBuilder::build`] sorts once at the end.
#[derive(Debug, Default)]
pub struct NumberSetBuilder {
    set: NumberSet,
    cc: Vec<u8>,
}

impl NumberSetBuilder {
    pub fn new(home_cc: &[u8]) -> NumberSetBuilder {
        NumberSetBuilder {
            set: NumberSet::default(),
            cc: home_cc.to_vec(),
        }
    }

    /// Adds one list line (comment and blanks allowed); the error is the reason only.
    pub fn add_line(&mut self, line: &str) -> Result<(), String> {
        let entry = line.split('#').next().unwrap_or("").trim();
        if entry.is_empty() {
            return Ok(());
        }
        self.add_entry(entry)
    }

    pub fn add_entry(&mut self, entry: &str) -> Result<(), String> {
        let num = |s: &str| -> Result<Number, String> {
            normalise(s.trim().as_bytes(), &self.cc, None)
                .map_err(|e| format!("'{s}' is not a number ({})", e.as_str()))
        };
        if let Some(p) = entry.strip_suffix('*') {
            let n = num(p)?;
            self.add_prefix(n.digits());
        } else if let Some((a, z)) = entry.split_once("..") {
            let (a, z) = (num(a)?, num(z)?);
            if a.len() != z.len() || a.digits() > z.digits() {
                return Err(format!(
                    "range '{entry}': both ends need the same length, low end first"
                ));
            }
            self.add_range(a.digits(), z.digits());
        } else {
            self.set.exact.push(num(entry)?.key());
        }
        Ok(())
    }

    fn add_prefix(&mut self, d: &[u8]) {
        self.set.prefixes.push(key_of(d));
        self.set.prefix_lens |= 1 << d.len();
    }

    /// Covers [a, z] (same length) with the fewest prefixes, like a CIDR split.
    fn add_range(&mut self, a: &[u8], z: &[u8]) {
        let n = a.len();
        let lo: u128 = a.iter().fold(0, |v, &c| v * 10 + (c - b'0') as u128);
        let hi: u128 = z.iter().fold(0, |v, &c| v * 10 + (c - b'0') as u128);
        let mut cur = lo;
        while cur <= hi {
            // Largest block 10^k aligned at cur that fits in [cur, hi].
            let mut k = 0u32;
            while k < n as u32 {
                let size = 10u128.pow(k + 1);
                if !cur.is_multiple_of(size) || cur + size - 1 > hi {
                    break;
                }
                k += 1;
            }
            let digits = format!("{:0width$}", cur, width = n);
            self.add_prefix(&digits.as_bytes()[..n - k as usize]);
            cur += 10u128.pow(k);
        }
    }

    pub fn build(mut self) -> NumberSet {
        self.set.exact.sort_unstable();
        self.set.exact.dedup();
        self.set.exact.shrink_to_fit();
        self.set.prefixes.sort_unstable();
        self.set.prefixes.dedup();
        self.set.prefixes.shrink_to_fit();
        self.set
    }

    /// Reads a list file's text, reporting the first bad line as `file:line: reason`.
    pub fn add_text(&mut self, text: &str, file: &str) -> Result<(), LoadError> {
        for (i, line) in text.lines().enumerate() {
            self.add_line(line)
                .map_err(|e| LoadError::at(file, i + 1, e))?;
        }
        Ok(())
    }

    pub fn add_file(&mut self, path: &std::path::Path) -> Result<(), LoadError> {
        let name = path.display().to_string();
        let text =
            std::fs::read(path).map_err(|e| LoadError::file(&name, format!("cannot read: {e}")))?;
        let text = String::from_utf8(text).map_err(|e| {
            let line = 1 + e.as_bytes()[..e.utf8_error().valid_up_to()]
                .iter()
                .filter(|&&c| c == b'\n')
                .count();
            LoadError::at(&name, line, "not UTF-8 text")
        })?;
        // Reserve once: a 5M-line file should not regrow the vector twenty times.
        self.set.exact.reserve(text.len() / 12);
        self.add_text(&text, &name)
    }
}

impl NumberSet {
    pub fn len(&self) -> usize {
        self.exact.len() + self.prefixes.len()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    pub fn exact_len(&self) -> usize {
        self.exact.len()
    }
    pub fn segment_len(&self) -> usize {
        self.prefixes.len()
    }
    /// Heap bytes used.
    pub fn heap_bytes(&self) -> usize {
        (self.exact.capacity() + self.prefixes.capacity()) * 8
    }

    #[inline]
    pub fn lookup(&self, n: &Number) -> Option<ListMatch> {
        if self.exact.binary_search(&n.key()).is_ok() {
            return Some(ListMatch::Exact);
        }
        let mut lens = self.prefix_lens;
        while lens != 0 {
            let l = lens.trailing_zeros() as usize;
            lens &= lens - 1;
            if l > n.len() {
                break;
            }
            if self.prefixes.binary_search(&n.prefix_key(l)).is_ok() {
                return Some(ListMatch::Segment(l as u8));
            }
        }
        None
    }

    pub fn contains(&self, n: &Number) -> bool {
        self.lookup(n).is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(lines: &str) -> NumberSet {
        let mut b = NumberSetBuilder::new(b"86");
        b.add_text(lines, "t").unwrap();
        b.build()
    }
    fn n(s: &str) -> Number {
        normalise(s.as_bytes(), b"86", None).unwrap()
    }

    #[test]
    fn exact_forms_and_segments() {
        let s = set("13812345678\n+86170*  # MVNO\n0755 8888 *\n\n# c\n");
        assert_eq!(s.lookup(&n("+8613812345678")), Some(ListMatch::Exact));
        assert_eq!(s.lookup(&n("013812345678")), Some(ListMatch::Exact));
        assert_eq!(s.lookup(&n("13812345679")), None);
        assert_eq!(s.lookup(&n("17001234567")), Some(ListMatch::Segment(5)));
        assert!(s.contains(&n("075588881234")));
        assert!(!s.contains(&n("075588871234")));
    }

    #[test]
    fn ranges_become_segments() {
        let s = set("13800000000..13800019999\n13900000005..13900000012\n");
        assert!(s.contains(&n("13800000000")));
        assert!(s.contains(&n("13800019999")));
        assert!(!s.contains(&n("13800020000")));
        assert_eq!(s.segment_len(), 2 + 8);
        assert!(s.contains(&n("13900000005")));
        assert!(s.contains(&n("13900000012")));
        assert!(!s.contains(&n("13900000004")));
        assert!(!s.contains(&n("13900000013")));
    }

    #[test]
    fn bad_lines_name_the_line() {
        let mut b = NumberSetBuilder::new(b"86");
        let e = b.add_text("13812345678\nalice\n", "bl.txt").unwrap_err();
        assert_eq!(
            e.to_string(),
            "bl.txt:2: 'alice' is not a number (non-numeric)"
        );
        let e = b.add_text("138..13900000000\n", "bl.txt").unwrap_err();
        assert_eq!(e.line, Some(1));
    }
}
