//! Number lists (blacklist, whitelists, protected numbers, own segments): exact numbers
//! and segments (prefixes), millions of them, looked up on every call.
//!
//! Exact numbers are a sorted `Vec<u64>` of [`Number::key`]s (8 bytes per entry);
//! segments are a second sorted vector with a bitmask of the prefix lengths present, so
//! a lookup costs one search per distinct segment length.
//!
//! A plain binary search over millions of keys misses the cache at almost every one of
//! its ~22 steps (measured: the blacklist search was 90% of `decide` under load). Each
//! vector therefore carries a fence index, the first key of every block of [`BLOCK`]
//! keys (1/32 of the data, small enough to stay cached): the search runs over the fences
//! and then inside one 256-byte block, a couple of cache misses in all. In front of it,
//! a filter of one byte per key turns away most numbers that are not listed (nearly
//! every caller) with a single memory access.
//!
//! List file format, one entry per line, `#` starts a comment:
//! - a number in any form the normaliser accepts (`+8613812345678`, `13812345678`, `0755...`);
//! - a segment: a number prefix followed by `*` (`+86170*`, `1703*`);
//! - a range: `FROM..TO`, both ends of the same length (`13800000000..13800009999`),
//!   stored as the smallest set of segments that covers it.

use crate::load_error::{LoadError, quote};
use crate::numbering::{Number, key_of, normalise, normalise_prefix};

#[derive(Debug, Clone, Default)]
pub struct NumberSet {
    exact: Sorted,
    prefixes: Sorted,
    /// Bit n set: some segment has n digits.
    prefix_lens: u32,
    /// The blocks of ranges that are no single number: a segment bound to the length of
    /// the range's numbers ([`range_key`]). A range is numbers of one length; held as
    /// plain segments, `+867541234500..+867541234599` also took in the 8-digit
    /// subscribers under `7541234 5xx` (QA 50: area codes with 7- and 8-digit numbers,
    /// 95/96 numbers of 5 and 6 digits).
    ranged: Sorted,
    /// Bit n set: some block of `ranged` has n leading digits.
    ranged_lens: u32,
    /// Where each entry was written, for lists built [`NumberSetBuilder::with_origins`].
    origins: Option<Box<Origins>>,
}

/// The file and line of each entry of a list, so that `check` can point at the line of
/// an entry it warns about (QA 43: a whitelist line cut short was named only by the
/// number it normalises to). Kept for every entry of a whitelist, which is small; for
/// the policy-wide lists, only for their segments and ranges (the entries `check` can
/// warn of there: a stray `+86*`), never for the blacklist's millions of numbers.
#[derive(Debug, Clone, Default)]
struct Origins {
    /// Single numbers' lines are kept too.
    exact: bool,
    files: Vec<String>,
    /// (key, kind, file index, line), sorted; kind 0 a number, 1 a segment, 2 a
    /// range's block (its key [`range_key`], so that a segment and a range of the same
    /// leading digits, or two ranges of different lengths, keep their own lines).
    at: Vec<(u64, u8, u32, u32)>,
}

/// Keys per block of the fence index: 32 keys are 256 bytes, four cache lines.
const BLOCK: usize = 32;

/// A sorted, deduplicated key vector with its fence index and its filter.
#[derive(Debug, Clone, Default)]
struct Sorted {
    keys: Vec<u64>,
    /// `keys[i * BLOCK]` for every block.
    fences: Vec<u64>,
    filter: Filter,
}

impl Sorted {
    fn from_unsorted(mut keys: Vec<u64>) -> Sorted {
        keys.sort_unstable();
        keys.dedup();
        keys.shrink_to_fit();
        let fences = keys.iter().step_by(BLOCK).copied().collect();
        let filter = Filter::new(&keys);
        Sorted {
            keys,
            fences,
            filter,
        }
    }

    #[inline]
    fn contains(&self, k: u64) -> bool {
        if !self.filter.may_contain(k) {
            return false;
        }
        // Blocks whose first key is <= k; the last of them is the only one that can hold k.
        let b = self.fences.partition_point(|&f| f <= k);
        if b == 0 {
            return false;
        }
        let lo = (b - 1) * BLOCK;
        let hi = (lo + BLOCK).min(self.keys.len());
        self.keys[lo..hi].binary_search(&k).is_ok()
    }

    fn len(&self) -> usize {
        self.keys.len()
    }

    fn heap_bytes(&self) -> usize {
        (self.keys.capacity() + self.fences.capacity() + self.filter.words.capacity()) * 8
    }
}

/// Bits per key of the filter: one byte a key.
const FILTER_BITS_PER_KEY: usize = 8;

/// A blocked Bloom filter in front of the search: two bits per key, both in one 64-bit
/// word, so that a number that is not listed (nearly every caller) usually costs one
/// cache miss instead of the search's several. About 5% of absent keys get through to
/// the search; a listed key always does.
#[derive(Debug, Clone, Default)]
struct Filter {
    /// One byte a key, rounded up to whole words; empty when there are no keys.
    words: Vec<u64>,
}

impl Filter {
    fn new(keys: &[u64]) -> Filter {
        if keys.is_empty() {
            return Filter::default();
        }
        let n = (keys.len() * FILTER_BITS_PER_KEY).div_ceil(64);
        let mut f = Filter { words: vec![0; n] };
        for &k in keys {
            let (w, m) = f.slot(k);
            f.words[w] |= m;
        }
        f
    }

    #[inline]
    fn slot(&self, k: u64) -> (usize, u64) {
        // Keys are digit strings packed into integers, close to each other: mix before
        // taking bits (multiply-xorshift, as in splitmix64's finaliser).
        let mut h = k ^ (k >> 31);
        h = h.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        h ^= h >> 29;
        h = h.wrapping_mul(0xBF58_476D_1CE4_E5B9);
        // The word: the hash scaled onto [0, len) (multiply and keep the high half),
        // which needs no power-of-two size. The bits: the hash's low twelve bits.
        let w = ((h as u128 * self.words.len() as u128) >> 64) as usize;
        (w, (1u64 << (h & 63)) | (1u64 << ((h >> 6) & 63)))
    }

    /// `false` for every key when there are no words (`slot` then points at word 0,
    /// which `get` does not find).
    #[inline]
    fn may_contain(&self, k: u64) -> bool {
        let (w, m) = self.slot(k);
        self.words.get(w).is_some_and(|&x| x & m == m)
    }
}

/// How a number matched a list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListMatch {
    Exact,
    /// Matched a segment of this many digits.
    Segment(u8),
    /// Matched part of a range `FROM..TO`: the range's numbers share this many leading
    /// digits, and have the number's length.
    Range(u8),
}

/// What a list entry is, as [`NumberSet::entries`] gives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    /// A number.
    Exact,
    /// Every number under these leading digits.
    Segment,
    /// A range's block: the numbers of this many digits under these leading ones.
    Range(u8),
}

/// Key of a range's block: its leading digits ([`key_of`], under 2^59 for the 17 at
/// most that a block of a number of [`crate::numbering::MAX_DIGITS`] has) and the
/// length of its numbers.
fn range_key(lead: &[u8], len: usize) -> u64 {
    key_of(lead) * 32 + len as u64
}

/// A [`range_key`]'s leading digits' key and length of numbers.
fn range_parts(k: u64) -> (u64, u8) {
    (k / 32, (k % 32) as u8)
}

/// The entry a list file's line holds: the text before any `#` comment, trimmed (empty
/// for a blank or comment-only line).
#[inline]
pub fn line_entry(line: &str) -> &str {
    line.split('#').next().unwrap_or("").trim()
}

/// Accumulates entries; [`NumberSetBuilder::build`] sorts once at the end.
#[derive(Debug, Default)]
pub struct NumberSetBuilder {
    exact: Vec<u64>,
    prefixes: Vec<u64>,
    prefix_lens: u32,
    ranged: Vec<u64>,
    ranged_lens: u32,
    cc: Vec<u8>,
    /// The plan's national numbers never begin with 0: an entry that has one after the
    /// country code is refused ([`NumberSetBuilder::for_plan`]).
    no_zero_nsn: bool,
    origins: Option<Origins>,
}

impl NumberSetBuilder {
    pub fn new(home_cc: &[u8]) -> NumberSetBuilder {
        NumberSetBuilder {
            cc: home_cc.to_vec(),
            ..NumberSetBuilder::default()
        }
    }

    /// A builder for lists judged against `plan`: its country code, and entries whose
    /// national number begins with a digit none of the plan's does after the country
    /// code refused (QA 50: `+86-0755-8888-1234`, as business cards write it, loaded as
    /// a number no call has, and the blacklist entry blocked nothing).
    pub fn for_plan(plan: &crate::numbering::plan::Plan) -> NumberSetBuilder {
        NumberSetBuilder {
            no_zero_nsn: !plan.nsn_may_begin_with(b'0'),
            ..NumberSetBuilder::new(plan.country())
        }
    }

    /// Keeps the file and line of the segments and ranges read from list text
    /// ([`NumberSet::origins_of`]), and of the single numbers too when `numbers`: a
    /// list of millions of numbers pays for its few thousand segments' lines (24 bytes
    /// each), not for its numbers'.
    pub fn with_origins(mut self, numbers: bool) -> NumberSetBuilder {
        self.origins = Some(Origins {
            exact: numbers,
            ..Origins::default()
        });
        self
    }

    /// Adds one list line (comment and blanks allowed); the error is the reason only.
    pub fn add_line(&mut self, line: &str) -> Result<(), String> {
        // A control character is no part of a number a person wrote: a file cut or
        // corrupted in copying, a binary file, or old Mac line ends (CR alone), which
        // would run every line into one.
        if let Some(c) = line
            .trim_end_matches('\r')
            .bytes()
            .find(|&c| (c < 0x20 && c != b'\t') || c == 0x7f)
        {
            return Err(if c == b'\r' {
                "line ends with CR alone (old Mac text): save the file with LF or CRLF line ends"
                    .to_string()
            } else {
                format!("control character 0x{c:02x} in the line: a corrupted or binary file?")
            });
        }
        let entry = line_entry(line);
        if entry.is_empty() {
            return Ok(());
        }
        self.add_entry(entry)
    }

    pub fn add_entry(&mut self, entry: &str) -> Result<(), String> {
        if let Some(why) = not_one_number(entry) {
            return Err(format!("'{}': {why}", quote(entry)));
        }
        let cc = self.cc.as_slice();
        let trunk_zero = |d: &[u8]| -> Result<(), String> {
            match d.strip_prefix(cc) {
                Some([b'0', rest @ ..]) if self.no_zero_nsn => {
                    // `+86 00 755 ...` too: every trunk 0 off in the fix offered.
                    let rest = &rest[rest.iter().take_while(|&&c| c == b'0').count()..];
                    Err(format!(
                        "'{}': the 0 after country code {} is the trunk prefix, dialled only within the country: write +{}{} or 0{}",
                        quote(entry),
                        String::from_utf8_lossy(cc),
                        String::from_utf8_lossy(cc),
                        String::from_utf8_lossy(rest),
                        String::from_utf8_lossy(rest)
                    ))
                }
                _ => Ok(()),
            }
        };
        let num = |s: &str| -> Result<Number, String> {
            let n = normalise(s.trim().as_bytes(), cc, None)
                .map_err(|e| format!("'{}' is not a number ({})", quote(s), e.as_str()))?;
            trunk_zero(n.digits())?;
            Ok(n)
        };
        if let Some(p) = entry.strip_suffix('*') {
            // The entry as written, star included: `+86139**` is named so, not as the
            // `+86139*` left once one star is taken off (QA 43).
            let n = normalise_prefix(p.as_bytes(), cc).map_err(|e| {
                format!(
                    "'{}' is not a number segment ({})",
                    quote(entry),
                    e.as_str()
                )
            })?;
            trunk_zero(n.digits())?;
            self.add_prefix(n.digits());
        } else if let Some((a, z)) = entry.split_once("..") {
            let (a, z) = (num(a)?, num(z)?);
            // The one of the two mistakes made, said alone (QA 175 F5).
            if a.len() != z.len() {
                return Err(format!(
                    "range '{}': both ends need the same length ({} and {} digits)",
                    quote(entry),
                    a.len(),
                    z.len()
                ));
            }
            if a.digits() > z.digits() {
                return Err(format!(
                    "range '{}': the low end comes first ({}..{})",
                    quote(entry),
                    z,
                    a
                ));
            }
            self.add_range(a.digits(), z.digits());
        } else {
            self.exact.push(num(entry)?.key());
        }
        Ok(())
    }

    fn add_prefix(&mut self, d: &[u8]) {
        self.prefixes.push(key_of(d));
        self.prefix_lens |= 1 << d.len();
    }

    /// Covers [a, z] (same length) with the fewest blocks, like a CIDR split: a block of
    /// one number is that number, a larger one its leading digits bound to the length.
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
            let lead = &digits.as_bytes()[..n - k as usize];
            if k == 0 {
                self.exact.push(key_of(lead));
            } else {
                self.ranged.push(range_key(lead, n));
                self.ranged_lens |= 1 << lead.len();
            }
            cur += 10u128.pow(k);
        }
    }

    pub fn build(self) -> NumberSet {
        NumberSet {
            exact: Sorted::from_unsorted(self.exact),
            prefixes: Sorted::from_unsorted(self.prefixes),
            prefix_lens: self.prefix_lens,
            ranged: Sorted::from_unsorted(self.ranged),
            ranged_lens: self.ranged_lens,
            origins: self.origins.map(|mut o| {
                o.at.sort_unstable();
                Box::new(o)
            }),
        }
    }

    /// Reads a list file's text, reporting the first bad line as `file:line: reason`.
    pub fn add_text(&mut self, text: &str, file: &str) -> Result<(), LoadError> {
        // A byte-order mark, which Windows editors put in front of UTF-8 text, is no
        // part of the first entry.
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let f = self.origins.as_mut().map(|o| {
            o.files.push(file.to_string());
            o.files.len() as u32 - 1
        });
        for (i, line) in text.lines().enumerate() {
            let (e0, p0, r0) = (self.exact.len(), self.prefixes.len(), self.ranged.len());
            self.add_line(line)
                .map_err(|e| LoadError::at(file, i + 1, e))?;
            if let (Some(o), Some(f)) = (self.origins.as_mut(), f) {
                let line = i as u32 + 1;
                if o.exact {
                    o.at.extend(self.exact[e0..].iter().map(|&k| (k, 0, f, line)));
                }
                o.at.extend(self.prefixes[p0..].iter().map(|&k| (k, 1, f, line)));
                o.at.extend(self.ranged[r0..].iter().map(|&k| (k, 2, f, line)));
            }
        }
        Ok(())
    }

    /// Adds a list file's entries; returns the digest of its bytes (the policy's
    /// fingerprint covers the lists it was built from, not only its own text).
    pub fn add_file(&mut self, path: &std::path::Path) -> Result<u64, LoadError> {
        let name = path.display().to_string();
        let text = read_list_text(path, &name)?;
        let digest = crate::sip::lex::tag_hash(&[text.as_bytes()]);
        // Reserve once: a 5M-line file should not regrow the vector twenty times.
        self.exact.reserve(text.len() / 12);
        self.add_text(&text, &name)?;
        Ok(digest)
    }
}

/// A list file's text ([`crate::load_error::read_text`]), where a comment may be in
/// another encoding than UTF-8: Chinese Windows tools save GBK (GB18030), and a list
/// whose numbers are ASCII but whose header or notes are GBK is read as meant (QA 203:
/// a feed's one GBK comment refused a 2-million-line blacklist). Text before a `#` that
/// is no UTF-8 is still refused with its line.
pub fn read_list_text(path: &std::path::Path, name: &str) -> Result<String, LoadError> {
    let bytes = crate::load_error::read_whole(path, name)?;
    let bytes = match String::from_utf8(bytes) {
        Ok(text) => return Ok(text),
        Err(e) => e.into_bytes(),
    };
    // GBK's and GB18030's bytes after a lead byte are 0x30 and up: no '#' or line end is
    // ever part of a character, so lines and comments are found in the bytes as they are.
    let mut text = String::with_capacity(bytes.len());
    for (i, line) in bytes.split_inclusive(|&c| c == b'\n').enumerate() {
        let entry = line.split(|&c| c == b'#').next().unwrap_or(line);
        match std::str::from_utf8(line) {
            Ok(l) => text.push_str(l),
            Err(_) if std::str::from_utf8(entry).is_ok() && entry.len() < line.len() => {
                text.push_str(&String::from_utf8_lossy(line));
            }
            Err(_) => {
                return Err(crate::load_error::not_utf8(name, i + 1, &bytes));
            }
        }
    }
    Ok(text)
}

/// Why a list entry is no one number as a person or a tool wrote it, before it is read
/// as one: what spreadsheets, databases and exports make of a number column, which the
/// reader would otherwise take as digits with separators and load as another number
/// (QA 203: `13800000001.0` loaded as `+86138000000010`, and a blacklist so exported and
/// reloaded lost every number; `95500-95599` loaded as the number `+869550095599`).
fn not_one_number(entry: &str) -> Option<&'static str> {
    let e = entry.trim_end_matches('*').trim_end();
    // The usual entry (digits, '+', spaces) is none of these: a list of millions is read
    // at the cost of one scan each.
    if !e.bytes().any(|c| {
        c >= 0x80
            || matches!(
                c,
                b'.' | b',' | b';' | b'\t' | b'"' | b'\'' | b'e' | b'E' | b'-'
            )
    }) {
        return None;
    }
    // A decimal part: a number column saved as decimals (`13800000001.0`, `95588.00`).
    if let Some((whole, frac)) = e.rsplit_once('.')
        && !whole.contains('.')
        && !whole.ends_with('.')
        && whole.bytes().last().is_some_and(|c| c.is_ascii_digit())
        && (1..=2).contains(&frac.len())
        && frac.bytes().all(|c| c == b'0')
    {
        return Some(
            "a number with a decimal part (a number column saved as decimals, by a spreadsheet or an export?): write the digits alone",
        );
    }
    // A range's `..` is a range's, whatever else the line holds (the range reader words
    // what is wrong with it).
    let range = e.contains("..");
    if e.bytes()
        .any(|c| matches!(c, b',' | b';' | b'\t' | b'"' | b'\''))
        && !range
    {
        return Some(
            "more than a number (a spreadsheet or CSV row: columns, quotes?): one number, segment or range a line, a comment after '#'",
        );
    }
    let exponent = e
        .as_bytes()
        .windows(2)
        .any(|w| matches!(w[0], b'e' | b'E') && w[1] == b'+');
    if exponent && e.bytes().next().is_some_and(|c| c.is_ascii_digit()) {
        return Some(
            "a number in scientific notation (a spreadsheet column formatted as numbers?): write all its digits",
        );
    }
    // Groups joined by '-': a range written with a dash (`95500-95599`, two groups of the
    // same length sharing their first digits), or digits after a whole number
    // (`13800138000-999`, `010-1234567-9`: a range's end or an extension), which no
    // calling number has. `010-5555-0100` and `+86-138-1234-5678` are numbers.
    // Any dash a screen or a word processor draws, digits of any width.
    let dash = |c: char| matches!(c, '-' | '\u{2010}'..='\u{2015}' | '\u{2212}' | '\u{ff0d}');
    if !range && e.contains(dash) {
        let digit = |c: char| c.is_ascii_digit() || ('\u{ff10}'..='\u{ff19}').contains(&c);
        let groups: Vec<&str> = e
            .split(dash)
            .map(|g| g.trim_matches(|c: char| c.is_whitespace() || matches!(c, '(' | ')')))
            .collect();
        let digits = |g: &str| !g.is_empty() && g.chars().all(digit);
        if groups.len() >= 2
            && groups
                .iter()
                .all(|g| digits(g.trim_start_matches(['+', '\u{ff0b}'])))
        {
            let (a, z) = (groups[groups.len() - 2], groups[groups.len() - 1]);
            let len = |g: &str| g.chars().filter(|&c| digit(c)).count();
            let shared = a.chars().zip(z.chars()).take_while(|(x, y)| x == y).count();
            if groups.len() == 2 && len(a) == len(z) && len(a) >= 4 && 2 * shared >= len(a) && z > a
            {
                return Some("a range written with '-': write it FROM..TO");
            }
            let a_len = len(a);
            if a_len >= 10 || a_len >= 7 && groups.len() >= 3 {
                return Some(
                    "digits after a whole number (a range's end, or an extension?): write a range FROM..TO, a number alone",
                );
            }
        }
    }
    None
}

impl NumberSet {
    /// `file:line` of every line that wrote the entry `n` of `kind` (a segment's or a
    /// range block's leading digits; QA 60: a `+86*` on four lines took four rounds of
    /// `check` to find), for a list built [`NumberSetBuilder::with_origins`] from list
    /// text; none for any other (an entry written in the policy itself).
    pub fn origins_of(&self, n: &Number, kind: EntryKind) -> Vec<String> {
        let Some(o) = self.origins.as_ref() else {
            return vec![];
        };
        let (key, k) = match kind {
            EntryKind::Exact => (key_of(n.digits()), 0),
            EntryKind::Segment => (key_of(n.digits()), 1),
            EntryKind::Range(len) => (range_key(n.digits(), len as usize), 2),
        };
        let i = o.at.partition_point(|&(a, b, _, _)| (a, b) < (key, k));
        o.at[i..]
            .iter()
            .take_while(|&&(a, b, _, _)| (a, b) == (key, k))
            .map(|&(_, _, f, line)| format!("{}:{line}", o.files[f as usize]))
            .collect()
    }
    /// Every entry: the number, or the leading digits of a segment or a range's block,
    /// and which it is. In key order; for reports, not for the call path.
    pub fn entries(&self) -> impl Iterator<Item = (Number, EntryKind)> + '_ {
        let exact = self
            .exact
            .keys
            .iter()
            .filter_map(|&k| Number::from_key(k).map(|n| (n, EntryKind::Exact)));
        exact.chain(self.blocks())
    }

    /// The entries that are no single number: segments and ranges' blocks, by their
    /// leading digits; for reports.
    pub fn blocks(&self) -> impl Iterator<Item = (Number, EntryKind)> + '_ {
        let segs = self
            .prefixes
            .keys
            .iter()
            .filter_map(|&k| Number::from_key(k).map(|n| (n, EntryKind::Segment)));
        let ranged = self.ranged.keys.iter().filter_map(|&k| {
            let (lead, len) = range_parts(k);
            Number::from_key(lead).map(|n| (n, EntryKind::Range(len)))
        });
        segs.chain(ranged)
    }

    /// Entries (numbers and segments) in `self` and not in `old`, and in `old` and not
    /// in `self`: one merge walk over the sorted keys (5 million entries: a few ms, at
    /// reload only).
    pub fn difference_counts(&self, old: &NumberSet) -> (usize, usize) {
        fn walk(new: &[u64], old: &[u64]) -> (usize, usize) {
            let (mut i, mut j, mut added, mut removed) = (0, 0, 0, 0);
            while i < new.len() && j < old.len() {
                match new[i].cmp(&old[j]) {
                    std::cmp::Ordering::Less => (added, i) = (added + 1, i + 1),
                    std::cmp::Ordering::Greater => (removed, j) = (removed + 1, j + 1),
                    std::cmp::Ordering::Equal => (i, j) = (i + 1, j + 1),
                }
            }
            (added + new.len() - i, removed + old.len() - j)
        }
        let (a1, r1) = walk(&self.exact.keys, &old.exact.keys);
        let (a2, r2) = walk(&self.prefixes.keys, &old.prefixes.keys);
        let (a3, r3) = walk(&self.ranged.keys, &old.ranged.keys);
        (a1 + a2 + a3, r1 + r2 + r3)
    }

    pub fn len(&self) -> usize {
        self.exact.len() + self.segment_len()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    pub fn exact_len(&self) -> usize {
        self.exact.len()
    }
    /// Segments, and the blocks of ranges.
    pub fn segment_len(&self) -> usize {
        self.prefixes.len() + self.ranged.len()
    }
    /// Heap bytes used.
    pub fn heap_bytes(&self) -> usize {
        self.exact.heap_bytes()
            + self.prefixes.heap_bytes()
            + self.ranged.heap_bytes()
            + self.origins.as_ref().map_or(0, |o| {
                o.at.capacity() * std::mem::size_of::<(u64, u8, u32, u32)>()
                    + o.files.iter().map(|f| f.capacity()).sum::<usize>()
            })
    }

    #[inline]
    pub fn lookup(&self, n: &Number) -> Option<ListMatch> {
        if self.exact.contains(n.key()) {
            return Some(ListMatch::Exact);
        }
        let mut lens = self.prefix_lens;
        while lens != 0 {
            let l = lens.trailing_zeros() as usize;
            lens &= lens - 1;
            if l > n.len() {
                break;
            }
            if self.prefixes.contains(n.prefix_key(l)) {
                return Some(ListMatch::Segment(l as u8));
            }
        }
        let mut lens = self.ranged_lens;
        while lens != 0 {
            let l = lens.trailing_zeros() as usize;
            lens &= lens - 1;
            if l >= n.len() {
                break;
            }
            if self.ranged.contains(range_key(&n.digits()[..l], n.len())) {
                return Some(ListMatch::Range(l as u8));
            }
        }
        None
    }

    #[inline]
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
        let s = set(
            "13812345678\n+86170*  # MVNO\n0755 8888 *\n\n# c\n86171999*\n0086172*\n86 173-99 *\n(86)174 0*\n",
        );
        assert_eq!(s.lookup(&n("+8613812345678")), Some(ListMatch::Exact));
        assert_eq!(s.lookup(&n("013812345678")), Some(ListMatch::Exact));
        assert_eq!(s.lookup(&n("13812345679")), None);
        assert_eq!(s.lookup(&n("17001234567")), Some(ListMatch::Segment(5)));
        assert!(s.contains(&n("075588881234")));
        assert!(!s.contains(&n("075588871234")));
        // A segment in the international form without '+' (and with 00).
        assert!(s.contains(&n("+8617199991234")));
        assert!(!s.contains(&n("+8617198991234")));
        assert!(s.contains(&n("+8617212345678")));
        assert!(s.contains(&n("+8617399123456")));
        assert!(s.contains(&n("+8617400123456")));
        // As a screen shows them: full-width digits, Unicode hyphens, dashes and dots.
        let s = set(
            "８６１７０９９９*\n86\u{2010}171999*\n86\u{2013}172999*\n86\u{00b7}173999*\n８６ １７４９９９*\n",
        );
        for x in [
            "+8617099912345",
            "+8617199912345",
            "+8617299912345",
            "+8617399912345",
            "+8617499912345",
        ] {
            assert!(s.contains(&n(x)), "{x}");
        }
        assert!(!s.contains(&n("+868617099912345")));
    }

    /// What spreadsheets and exports make of a number column is refused with what it
    /// looks like, not read as another number (QA 203); numbers written with dashes and
    /// brackets still load.
    #[test]
    fn spreadsheet_forms_are_refused_not_misread() {
        for (entry, says) in [
            ("13800000001.0", "decimal part"),
            ("95588.0", "decimal part"),
            ("+86 138 0013 8000.00", "decimal part"),
            ("105555.0*", "decimal part"),
            ("95500-95599", "range written with '-'"),
            ("13800138000-13800138999", "range written with '-'"),
            ("９５５００－９５５９９", "range written with '-'"),
            ("13800138000-999", "digits after a whole number"),
            ("0755-88881230-39", "digits after a whole number"),
            ("010-1234567-9", "digits after a whole number"),
            ("13800000001,fraud,2024-01-01", "more than a number"),
            ("\"13800000001\"", "more than a number"),
            ("'13800000001", "more than a number"),
            ("13800000001\t20240101", "more than a number"),
            ("1.38001E+10", "scientific notation"),
        ] {
            let e = NumberSetBuilder::new(b"86").add_entry(entry).unwrap_err();
            assert!(e.contains(says), "{entry}: {e}");
        }
        let s = set(
            "010-5555-0100\n+86-138-1234-5678\n1380013-8000\n0755-8888-1234\n138.0013.8001\n400-800-1234\n13800138000..13800138999\n",
        );
        for x in [
            "+861055550100",
            "+8613812345678",
            "+8613800138000",
            "+8675588881234",
            "+8613800138001",
            "+864008001234",
            "+8613800138500",
        ] {
            assert!(s.contains(&n(x)), "{x}");
        }
    }

    /// A comment in GBK (what Chinese Windows tools save) is read past; a number line
    /// that is no UTF-8, and UTF-16, are refused with the line and the fix.
    #[test]
    fn legacy_encodings_in_comments_are_read_past() {
        let dir = std::env::temp_dir().join(format!("sipfence-enc-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = |name: &str, bytes: &[u8]| {
            let f = dir.join(name);
            std::fs::write(&f, bytes).unwrap();
            f
        };
        let f = file(
            "gbk.txt",
            b"# \xba\xda\xc3\xfb\xb5\xa5\r\n13800000001 # \xd5\xa9\xc6\xad\r\n",
        );
        let mut b = NumberSetBuilder::new(b"86");
        b.add_file(&f).unwrap();
        assert!(b.build().contains(&n("+8613800000001")));
        let f = file("bad.txt", b"13800000001\n\xba\xda 13800000002\n");
        let e = NumberSetBuilder::new(b"86")
            .add_file(&f)
            .unwrap_err()
            .to_string();
        assert!(e.ends_with("bad.txt:2: not UTF-8 text (GBK or GB18030, as Chinese Windows tools save it?): convert it, e.g. iconv -f GB18030 -t UTF-8"), "{e}");
        let f = file("u16.txt", b"\xff\xfe1\x003\x008\x00\n\x00");
        let e = NumberSetBuilder::new(b"86")
            .add_file(&f)
            .unwrap_err()
            .to_string();
        assert!(e.contains("u16.txt:1: UTF-16 text"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn control_characters_are_refused_with_the_line() {
        for (text, want) in [
            (
                "13812345678\n+8613812345679\0\n",
                "t:2: control character 0x00",
            ),
            ("13812345678\r13812345679\r", "t:1: line ends with CR alone"),
            ("13812345678\n\u{7f}\n", "t:2: control character 0x7f"),
        ] {
            let mut b = NumberSetBuilder::new(b"86");
            let e = b.add_text(text, "t").unwrap_err().to_string();
            assert!(e.starts_with(want), "{text:?}: {e}");
        }
        // CRLF and tabs are fine.
        let s = set("13812345678\r\n\t+8613812345679\t# x\r\n");
        assert!(s.contains(&n("+8613812345679")));
    }

    #[test]
    fn ranges_become_blocks_of_their_length() {
        let s = set("13800000000..13800019999\n13900000005..13900000012\n");
        assert!(s.contains(&n("13800000000")));
        assert!(s.contains(&n("13800019999")));
        assert!(!s.contains(&n("13800020000")));
        // Two blocks of 10,000; 5..9 and 10..12 under 1390000000 are single numbers,
        // but 10..12 is no whole block: all eight are numbers.
        assert_eq!((s.segment_len(), s.exact_len()), (2, 8));
        assert_eq!(s.lookup(&n("13800012345")), Some(ListMatch::Range(9)));
        assert!(s.contains(&n("13900000005")));
        assert!(s.contains(&n("13900000012")));
        assert!(!s.contains(&n("13900000004")));
        assert!(!s.contains(&n("13900000013")));
        // QA 50: a range holds numbers of its own length only. Shantou (0754) has 7- and
        // 8-digit subscribers; 95 numbers 5 and 6 digits.
        let s = set("+867541234500..+867541234599\n+8695580..+8695589\n");
        assert!(s.contains(&n("07541234550")));
        assert!(!s.contains(&n("075412345500")));
        assert!(s.contains(&n("+8695585")));
        assert!(!s.contains(&n("+86955850")));
        // A segment is any length, as written.
        let s = set("+86754123455*\n");
        assert!(s.contains(&n("07541234550")) && s.contains(&n("075412345500")));
    }

    #[test]
    fn fence_search_agrees_with_a_scan() {
        // Sizes around block multiples: the first, last and partial blocks all matter.
        for n in [0usize, 1, 31, 32, 33, 64, 1000, 1025] {
            let keys: Vec<u64> = (0..n as u64).rev().map(|i| i * 3 + 7).collect();
            let s = Sorted::from_unsorted(keys.clone());
            for k in 0..(n as u64 * 3 + 12) {
                assert_eq!(s.contains(k), keys.contains(&k), "n={n} k={k}");
            }
        }
    }

    /// The filter never hides a listed key, and lets few absent ones through to the
    /// search (what makes it worth a byte a key), with keys as dense as real numbers.
    #[test]
    fn filter_keeps_every_key_and_stops_most_others() {
        let keys: Vec<u64> = (0..200_000u64).map(|i| 8_613_800_000_000 + i * 7).collect();
        let f = Filter::new(&keys);
        assert!(keys.iter().all(|&k| f.may_contain(k)));
        let absent = (0..200_000u64).map(|i| 8_613_800_000_000 + i * 7 + 3);
        let passed = absent.filter(|&k| f.may_contain(k)).count();
        assert!(passed < 200_000 / 10, "{passed} false positives in 200,000");
        assert!(!Filter::new(&[]).may_contain(5));
        let one = Filter::new(&[42]);
        assert!(one.may_contain(42));
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
        // The mistake made is the one said (QA 175 F5).
        assert!(
            e.to_string().contains("same length (5 and 13 digits)"),
            "{e}"
        );
        let e = b
            .add_text("13812345679..13812345670\n", "bl.txt")
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "bl.txt:1: range '13812345679..13812345670': the low end comes first (+8613812345670..+8613812345679)"
        );
        // A segment is named as written, every star kept.
        let e = b.add_text("+86139**\n", "bl.txt").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("bl.txt:1: '+86139**' is not a number segment ("),
            "{e}"
        );
    }

    #[test]
    fn a_trunk_zero_after_the_country_code_is_refused_with_the_fix() {
        let plan = crate::numbering::plan::Plan::builtin();
        assert!(!plan.nsn_may_begin_with(b'0') && plan.nsn_may_begin_with(b'1'));
        // QA 50: each of these loaded as a number no call has. One trunk 0 after the
        // country code is read through, as in calls (QA 197): the entry is the number
        // calls written either way have. Two are a mistake.
        let mut b = NumberSetBuilder::for_plan(&plan);
        b.add_text(
            "+86-0755-8888-1234\n+86 0755 6666*\n0086 010 6666 0000\n860755123*\n+86013800000001\n+8607541234500..+8607541234599\n",
            "bl.txt",
        )
        .unwrap();
        let set = b.build();
        for n in [
            "+8675588881234",
            "+8675566661111",
            "+861066660000",
            "+86755123000",
            "+8613800000001",
            "+8607541234567",
            "+867541234567",
        ] {
            assert!(
                set.lookup(&normalise(n.as_bytes(), b"86", None).unwrap())
                    .is_some(),
                "{n}"
            );
        }
        for bad in [
            "+86-00-755-8888-1234",
            "+86 00 755 6666*",
            "0086 00 10 6666 0000",
            "8600755123*",
        ] {
            let mut b = NumberSetBuilder::for_plan(&plan);
            let e = b
                .add_text(&format!("# list\n{bad}\n"), "bl.txt")
                .unwrap_err();
            let text = e.to_string();
            assert!(
                text.starts_with("bl.txt:2: ") && text.contains("is the trunk prefix"),
                "{bad}: {text}"
            );
        }
        let e = NumberSetBuilder::for_plan(&plan)
            .add_entry("+86 00 755 8888 1234")
            .unwrap_err();
        assert!(e.ends_with("write +8675588881234 or 075588881234"), "{e}");
        // The forms that say the same number rightly load, and match it.
        let mut b = NumberSetBuilder::for_plan(&plan);
        b.add_text(
            "+86 (0)755 8888 1234\n0755 6666*\n+86 10 6666 0000\n",
            "bl.txt",
        )
        .unwrap();
        let set = b.build();
        for n in ["+8675588881234", "+8675566661111", "+861066660000"] {
            assert!(
                set.lookup(&normalise(n.as_bytes(), b"86", None).unwrap())
                    .is_some(),
                "{n}"
            );
        }
        // A plan whose national numbers may begin with 0 (Italy's) keeps them.
        let mut b = NumberSetBuilder::new(b"39");
        b.add_entry("+39 06 1234 5678").unwrap();
    }
}
