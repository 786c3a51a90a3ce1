//! Header edits without re-serialising the message: a list of (span, replacement)
//! pairs applied in one pass, copying every untouched byte as it stands.

use super::Span;

#[derive(Debug, Clone, Copy)]
struct Edit {
    at: Span,
    data: (u32, u32),
}

/// Edits to one message. The replacement bytes live in one arena so that building a
/// list costs no allocation per edit, and a list can be cleared and reused.
#[derive(Debug, Default, Clone)]
pub struct EditList {
    edits: Vec<Edit>,
    arena: Vec<u8>,
}

impl EditList {
    pub fn new() -> EditList {
        EditList::default()
    }
    pub fn clear(&mut self) {
        self.edits.clear();
        self.arena.clear();
    }
    pub fn is_empty(&self) -> bool {
        self.edits.is_empty()
    }
    pub fn len(&self) -> usize {
        self.edits.len()
    }
    /// Replaces the bytes of `at` with `data`.
    pub fn replace(&mut self, at: Span, data: &[u8]) {
        let s = self.arena.len() as u32;
        self.arena.extend_from_slice(data);
        self.edits.push(Edit {
            at,
            data: (s, self.arena.len() as u32),
        });
    }
    /// Replaces `at` with pieces written by `f` into the arena (avoids a temporary).
    pub fn replace_with(&mut self, at: Span, f: impl FnOnce(&mut Vec<u8>)) {
        let s = self.arena.len() as u32;
        f(&mut self.arena);
        self.edits.push(Edit {
            at,
            data: (s, self.arena.len() as u32),
        });
    }
    pub fn remove(&mut self, at: Span) {
        self.replace(at, b"");
    }
    pub fn insert(&mut self, at: usize, data: &[u8]) {
        self.replace(Span::new(at, at), data);
    }
    pub fn insert_with(&mut self, at: usize, f: impl FnOnce(&mut Vec<u8>)) {
        self.replace_with(Span::new(at, at), f);
    }

    /// Writes `src[..len]` with the edits applied into `out`. Overlapping edits are a
    /// programming error: the later one (in position order) is skipped rather than
    /// producing a corrupt message.
    pub fn apply(&mut self, src: &[u8], len: usize, out: &mut Vec<u8>) {
        // Stable sort keeps insertion order for edits at the same point (e.g. two inserts).
        self.edits.sort_by_key(|e| (e.at.start, e.at.end));
        out.reserve(len + self.arena.len());
        let mut pos = 0usize;
        for e in &self.edits {
            let (s, en) = (e.at.start as usize, e.at.end as usize);
            if s < pos || en > len {
                continue;
            }
            out.extend_from_slice(&src[pos..s]);
            out.extend_from_slice(&self.arena[e.data.0 as usize..e.data.1 as usize]);
            pos = en;
        }
        out.extend_from_slice(&src[pos..len]);
    }

    /// Writes the bytes of `within` with the edits inside it applied into `out`, and
    /// says whether any was; `None` when an edit reaches across its bounds (the span
    /// alone cannot say what it becomes).
    pub fn apply_within(&mut self, src: &[u8], within: Span, out: &mut Vec<u8>) -> Option<bool> {
        self.edits.sort_by_key(|e| (e.at.start, e.at.end));
        let (start, end) = (within.start as usize, (within.end as usize).min(src.len()));
        let mut pos = start;
        let mut edited = false;
        for e in &self.edits {
            let (s, en) = (e.at.start as usize, e.at.end as usize);
            // Wholly before or after (an edit that only touches a bound is outside).
            if en < start || s > end || (s < start && en == start) || (s == end && en > end) {
                continue;
            }
            if s < start || en > end {
                return None;
            }
            if s < pos {
                continue;
            }
            out.extend_from_slice(&src[pos..s]);
            out.extend_from_slice(&self.arena[e.data.0 as usize..e.data.1 as usize]);
            pos = en;
            edited = true;
        }
        out.extend_from_slice(&src[pos..end]);
        Some(edited)
    }
}

/// Ends every line of the head of the message in `out` with CRLF, as RFC 3261 asks:
/// for a message whose head had lines ending in LF alone ([`super::Message::bare_lf`]),
/// which the parser takes, and which a next hop framing a TCP stream on CRLFCRLF alone
/// would run on into the body with (QA 83 F2: a body holding a CRLF pair then framed
/// a request there that no rule had judged). The body is left as it is.
pub fn crlf_head(out: &mut Vec<u8>) {
    let head = super::parse::head_len(out).unwrap_or(out.len());
    let bare = memchr::memchr_iter(b'\n', &out[..head])
        .filter(|&p| p == 0 || out[p - 1] != b'\r')
        .count();
    if bare == 0 {
        return;
    }
    let mut fixed = Vec::with_capacity(out.len() + bare);
    let mut from = 0;
    for p in memchr::memchr_iter(b'\n', &out[..head]) {
        if p == 0 || out[p - 1] != b'\r' {
            fixed.extend_from_slice(&out[from..p]);
            fixed.push(b'\r');
            from = p;
        }
    }
    fixed.extend_from_slice(&out[from..]);
    *out = fixed;
}

/// A Content-Length written over more than one line (`Content-Length:\r\n 107`, legal
/// by RFC 3261 7.3.1) goes on as `Content-Length: 107`: a next hop that frames its TCP
/// stream by a quick look for that field does not read a folded one (QA 138: Kamailio
/// 5.6 refused the message and closed the connection every call of the listener
/// shares, losing other callers' calls sent at that moment). The value stays where it
/// is, for the edit that recounts a shortened body. The proxy's every forward, and
/// `explain --output`, make it.
pub fn unfold_content_length(msg: &super::Message, edits: &mut EditList) {
    let Some(h) = msg.first(super::HeaderName::ContentLength) else {
        return;
    };
    let (b, line, value) = (msg.buf(), h.line(), h.value());
    let end = line.end as usize;
    let ending = if b[..end].ends_with(b"\r\n") { 2 } else { 1 };
    let folded = |from: usize, to: usize| b[from..to].iter().any(|&c| c == b'\n' || c == b'\r');
    let (start, vs, ve) = (
        line.start as usize,
        value.start as usize,
        value.end as usize,
    );
    let te = end.saturating_sub(ending).max(ve);
    if !folded(start, vs) && !folded(ve, te) {
        return;
    }
    edits.replace(Span::new(start, vs), b"Content-Length: ");
    edits.remove(Span::new(ve, te));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apply_within_a_span() {
        let src = b"abcdefghij";
        let mut e = EditList::new();
        e.replace(Span::new(3, 5), b"XY");
        e.insert(4 + 3, b"+");
        e.remove(Span::new(0, 1));
        let mut out = Vec::new();
        assert_eq!(e.apply_within(src, Span::new(2, 8), &mut out), Some(true));
        assert_eq!(out, b"cXYfg+h");
        out.clear();
        assert_eq!(e.apply_within(src, Span::new(8, 10), &mut out), Some(false));
        assert_eq!(out, b"ij");
        // Edits that end at the start or start at the end are outside.
        out.clear();
        assert_eq!(e.apply_within(src, Span::new(1, 3), &mut out), Some(false));
        assert_eq!(out, b"bc");
        out.clear();
        assert_eq!(e.apply_within(src, Span::new(0, 1), &mut out), Some(true));
        assert_eq!(out, b"");
        // An edit across the bounds: the span alone cannot say.
        out.clear();
        assert_eq!(e.apply_within(src, Span::new(4, 9), &mut out), None);
    }

    #[test]
    fn apply_in_order() {
        let src = b"abcdefghij";
        let mut e = EditList::new();
        e.replace(Span::new(6, 8), b"XY Z");
        e.insert(0, b">");
        e.remove(Span::new(2, 4));
        e.insert(10, b"<");
        let mut out = vec![];
        e.apply(src, src.len(), &mut out);
        assert_eq!(out, b">abefXY Zij<");
    }

    #[test]
    fn overlap_is_skipped() {
        let mut e = EditList::new();
        e.replace(Span::new(1, 5), b"-");
        e.replace(Span::new(3, 6), b"+");
        let mut out = vec![];
        e.apply(b"0123456789", 10, &mut out);
        assert_eq!(out, b"0-56789");
    }

    /// A head in bare LFs (and one that mixes them with CRLFs) is written in CRLFs,
    /// folds included; its body, blank lines and all, is not touched.
    #[test]
    fn a_head_in_bare_lfs_gets_crlfs() {
        for (head, want) in [
            (
                "INVITE sip:a@b SIP/2.0\nVia: x\r\nTo: <sip:a@b>\n ;p=1\n\n",
                "INVITE sip:a@b SIP/2.0\r\nVia: x\r\nTo: <sip:a@b>\r\n ;p=1\r\n\r\n",
            ),
            (
                "SIP/2.0 200 OK\nCall-ID: c\n\r\n",
                "SIP/2.0 200 OK\r\nCall-ID: c\r\n\r\n",
            ),
            (
                "SIP/2.0 200 OK\r\nCall-ID: c\r\n\r\n",
                "SIP/2.0 200 OK\r\nCall-ID: c\r\n\r\n",
            ),
        ] {
            let body = "v=0\n\nx\r\n\r\n";
            let mut out = format!("{head}{body}").into_bytes();
            crlf_head(&mut out);
            assert_eq!(String::from_utf8(out).unwrap(), format!("{want}{body}"));
        }
    }
}
