//! `multipart/*` bodies (RFC 2046 5.1, as SIP uses them per RFC 5621): the parts of a
//! body as spans of the message buffer, nothing copied.
//!
//! Part bodies may be binary (an ISUP part is): a part ends only at CRLF "--" boundary,
//! found with a substring search, never at a line end inside the part.

use super::Span;
use super::lex;

/// Parts kept per body: SIP-I carries two (SDP and ISUP); more is refused rather than
/// walked for ever.
pub const MAX_PARTS: usize = 8;

/// One body part.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Part {
    /// Value of the part's Content-Type (`text/plain` when absent, RFC 2046 5.1).
    pub content_type: Option<Span>,
    /// Value of the part's Content-Disposition.
    pub disposition: Option<Span>,
    /// Value of a Content-Length inside the part (rare, but must follow a rewrite).
    pub content_length: Option<Span>,
    /// Value of its first Content-Transfer-Encoding or Content-Encoding that changes
    /// bytes ([`encoding_changes_bytes`]).
    pub encoding: Option<Span>,
    /// The part's content, between its header section and the next delimiter.
    pub body: Span,
}

/// Why a multipart body was refused, with the offset in the message buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MultipartError {
    /// No `boundary` parameter on the Content-Type.
    NoBoundary,
    /// Two `boundary` parameters on the Content-Type, or one with white space unquoted.
    AmbiguousBoundary,
    /// The first delimiter is missing.
    NoDelimiter(usize),
    /// A part whose header section never ends, or a delimiter never closed.
    Unterminated(usize),
    /// More than [`MAX_PARTS`].
    TooManyParts(usize),
    /// A multipart part inside a multipart part, deeper than [`MAX_DEPTH`].
    TooDeep(usize),
    /// A part with a second Content-Type or Content-Length (at this offset): which one
    /// the next hop reads is not known (an ISUP part that reads as SDP here).
    RepeatedField(usize),
    /// A Content-Type (of the message or of a part, at this offset) that is no media
    /// type (a control character, a list, a quoted type), or a body without one: which
    /// type the next hop reads, ISUP maybe, is not known.
    BadContentType(usize),
    /// A part's header section with a CR that ends no line (at this offset): a reader
    /// that ends lines there sees other fields (`Content-Type: text/plain<CR>...`).
    BareCr(usize),
    /// ISUP or parts under a transfer encoding that changes bytes (base64,
    /// quoted-printable; the field at this offset): a reader that decodes it finds
    /// another content than the bytes read here.
    Encoded(usize),
    /// The boundary's delimiter (at this offset) where no delimiter stands: glued to
    /// other text, in a part's content, or after the closing delimiter. A reader that
    /// looks for it anywhere, or reads past the close, finds parts not read here (QA
    /// 31: an ISUP part behind `" --inner"`).
    StrayDelimiter(usize),
    /// An ISUP part, or a part around one, whose Content-Length (at this offset) is not
    /// its length: a reader that goes by it reads other octets as the IAM.
    LengthDisagrees(usize),
}

/// How deep multipart bodies are opened inside one another (a SIP-I body is one level;
/// a `multipart/mixed` inside one, two).
pub const MAX_DEPTH: usize = 3;

impl MultipartError {
    /// Where in the message it broke (0 for a missing boundary parameter).
    pub fn offset(self) -> usize {
        match self {
            MultipartError::NoBoundary | MultipartError::AmbiguousBoundary => 0,
            MultipartError::NoDelimiter(o)
            | MultipartError::Unterminated(o)
            | MultipartError::TooManyParts(o)
            | MultipartError::TooDeep(o)
            | MultipartError::RepeatedField(o)
            | MultipartError::Encoded(o)
            | MultipartError::BareCr(o)
            | MultipartError::StrayDelimiter(o)
            | MultipartError::LengthDisagrees(o)
            | MultipartError::BadContentType(o) => o,
        }
    }
}

impl std::fmt::Display for MultipartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MultipartError::NoBoundary => write!(f, "its Content-Type has no boundary"),
            MultipartError::AmbiguousBoundary => write!(
                f,
                "its Content-Type has two boundary parameters, or one with white space unquoted: readers split it by different delimiters"
            ),
            MultipartError::NoDelimiter(o) => {
                write!(f, "no delimiter of its boundary (from byte {o})")
            }
            MultipartError::Unterminated(o) => write!(
                f,
                "a part's headers or the closing delimiter never end (at byte {o})"
            ),
            MultipartError::TooManyParts(o) => {
                write!(f, "more than {MAX_PARTS} parts (at byte {o})")
            }
            MultipartError::RepeatedField(o) => {
                write!(
                    f,
                    "a part with a second Content-Type or Content-Length (at byte {o})"
                )
            }
            MultipartError::TooDeep(o) => {
                write!(
                    f,
                    "multipart nested more than {MAX_DEPTH} deep (at byte {o})"
                )
            }
            MultipartError::BadContentType(o) => write!(
                f,
                "a Content-Type that is no media type, or a body without one (at byte {o}): the next hop may read it as ISUP"
            ),
            MultipartError::BareCr(o) => write!(
                f,
                "a part's header with a CR that ends no line (at byte {o})"
            ),
            MultipartError::StrayDelimiter(o) => write!(
                f,
                "its boundary's delimiter where no delimiter stands (at byte {o}): a reader that finds it anywhere reads other parts"
            ),
            MultipartError::Encoded(o) => write!(
                f,
                "ISUP or parts under an encoding that changes bytes (Content-Transfer-Encoding or Content-Encoding, at byte {o}): decoded they read otherwise"
            ),
            MultipartError::LengthDisagrees(o) => write!(
                f,
                "a part's Content-Length is not its length (at byte {o}): a reader that goes by it reads other octets"
            ),
        }
    }
}

/// Whether a Content-Type value is a media type as RFC 3261 20.15 writes it (`type "/"
/// subtype *(";" parameter)`, comments allowed as MIME readers skip them): no control
/// character, no list, no quoted type. `application/sdp`, every INVITE's, is let go
/// first.
pub fn plain_media_type(ct: &[u8]) -> bool {
    let ct = lex::trim(ct);
    if ct.eq_ignore_ascii_case(b"application/sdp") {
        return true;
    }
    if ct
        .iter()
        .any(|&c| c < 0x20 && !matches!(c, b'\t' | b'\r' | b'\n') || c == 0x7f)
    {
        return false;
    }
    let mt = media_type(ct);
    let Some(slash) = lex::find_byte(mt, b'/') else {
        return false;
    };
    let token = |t: &[u8]| {
        let t = lex::trim(without_comments(t));
        !t.is_empty() && t.iter().all(|&c| lex::is_token(c))
    };
    token(&mt[..slash]) && token(&mt[slash + 1..])
}

/// Whether the field `name: value` (of a message or a part) is an encoding a reader
/// decodes into other bytes: a Content-Transfer-Encoding other than `7bit`, `8bit`,
/// `binary` (RFC 2045 6.1), or a Content-Encoding (compact `e`) that lists anything
/// but `identity` (RFC 3261 20.12). Any case, comments around.
pub fn encoding_changes_bytes(name: &[u8], value: &[u8]) -> bool {
    let v = lex::trim(without_comments(value));
    if name.eq_ignore_ascii_case(b"content-transfer-encoding") {
        ![&b"7bit"[..], b"8bit", b"binary"]
            .iter()
            .any(|e| v.eq_ignore_ascii_case(e))
    } else if name.eq_ignore_ascii_case(b"content-encoding") || name.eq_ignore_ascii_case(b"e") {
        !v.split(|&c| c == b',')
            .map(lex::trim)
            .all(|e| e.is_empty() || e.eq_ignore_ascii_case(b"identity"))
    } else {
        false
    }
}

/// The boundary parameter of a multipart Content-Type value, unquoted.
pub fn boundary(content_type: &[u8]) -> Result<&[u8], MultipartError> {
    let mut all = params(content_type, b"boundary");
    let b = all.next().ok_or(MultipartError::NoBoundary)?;
    // Two: which one the next hop splits by is not known (the first here, the last
    // elsewhere), and each may give other parts.
    if all.next().is_some() {
        return Err(MultipartError::AmbiguousBoundary);
    }
    // White space unquoted (`boundary=a b`): a reader that ends the token there splits
    // by `--a` (QA 33). Quoted, it is the boundary's.
    let at = b.as_ptr() as usize - content_type.as_ptr() as usize;
    let quoted = at > 0 && content_type[at - 1] == b'"';
    if !quoted && b.iter().any(|&c| lex::is_wsp(c)) {
        return Err(MultipartError::AmbiguousBoundary);
    }
    // RFC 2046: 1 to 70 characters.
    Some(b)
        .filter(|v| !v.is_empty() && v.len() <= 70)
        .ok_or(MultipartError::NoBoundary)
}

/// A parameter of a Content-Type value, unquoted: the first of that name.
pub fn param<'a>(content_type: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    params(content_type, name).next()
}

/// Every parameter of that name of a Content-Type value, unquoted, in order.
pub fn params<'a, 'n>(
    content_type: &'a [u8],
    name: &'n [u8],
) -> impl Iterator<Item = &'a [u8]> + use<'a, 'n> {
    let rest = lex::find_byte(content_type, b';').map_or(&[][..], |s| &content_type[s + 1..]);
    rest.split(|&c| c == b';').filter_map(move |p| {
        let eq = lex::find_byte(p, b'=')?;
        without_comments(&p[..eq])
            .eq_ignore_ascii_case(name)
            .then(|| {
                let v = without_comments(&p[eq + 1..]);
                v.strip_prefix(b"\"")
                    .and_then(|v| v.strip_suffix(b"\""))
                    .unwrap_or(v)
            })
    })
}

/// A parameter value without the RFC 822 comments around it (`(c)ansi92`, `b1 (x)`),
/// as a lenient MIME reader takes it. A token holds no `(`: one after the value starts
/// a comment; in a quoted value it is the value's.
pub fn without_comments(v: &[u8]) -> &[u8] {
    let mut v = lex::trim(v);
    while v.first() == Some(&b'(') {
        v = match comment_end(v) {
            Some(e) => lex::trim(&v[e..]),
            None => return &[],
        };
    }
    // A quoted value ends at its closing quote (a `\"` inside is the value's); a
    // token at the first `(`, which no token holds. What follows is a comment.
    let end = if v.first() == Some(&b'"') {
        let mut escaped = false;
        v.iter()
            .enumerate()
            .skip(1)
            .find(|&(_, &c)| match c {
                _ if escaped => {
                    escaped = false;
                    false
                }
                b'\\' => {
                    escaped = true;
                    false
                }
                c => c == b'"',
            })
            .map(|(q, _)| q + 1)
    } else {
        lex::find_byte(v, b'(')
    };
    match end {
        Some(e) => lex::trim(&v[..e]),
        None => v,
    }
}

/// Where the RFC 822 comment that opens `v` (at its `(`) ends: the index past its `)`,
/// nested comments and quoted pairs included; `None` when it never closes.
fn comment_end(v: &[u8]) -> Option<usize> {
    let (mut depth, mut escaped) = (0u32, false);
    v.iter()
        .position(|&c| {
            match c {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'(' => depth += 1,
                b')' => depth = depth.saturating_sub(1),
                _ => {}
            }
            depth == 0
        })
        .map(|e| e + 1)
}

/// `Content-Type` value is a multipart type.
pub fn is_multipart(content_type: &[u8]) -> bool {
    let ct = lex::trim(content_type);
    // `multipart /mixed` only when the word is there: every INVITE's SDP asks.
    (lex::starts_with_ci(ct, b"multipart")
        && (ct.get(9) == Some(&b'/') || is_type(ct, b"multipart", None)))
        || (ct.first() == Some(&b'(') && is_type(ct, b"multipart", None))
}

/// Whether the media type of `content_type` is `top`/`sub` (any subtype without
/// `sub`), as a lenient MIME reader takes it (RFC 822 structured fields): white space
/// or folds around the `/`, comments anywhere (`application/ISUP (SIP-I)`,
/// `(x)multipart/mixed`). The slow path, for what the plain comparisons miss: a next
/// hop that reads such a type must not find an IAM the filter never judged.
pub fn is_type(content_type: &[u8], top: &[u8], sub: Option<&[u8]>) -> bool {
    // The media type with each comment and run of white space read as one space; a
    // real type is a short token pair, so a small buffer holds any.
    let mut buf = [0u8; 64];
    let mut n = 0;
    let mut space = false;
    let mut i = 0;
    while let Some(&c) = content_type.get(i) {
        i += 1;
        match c {
            b';' => break,
            // An unclosed comment runs to the end.
            b'(' => match comment_end(&content_type[i - 1..]) {
                Some(e) => (i, space) = (i - 1 + e, true),
                None => break,
            },
            c if c.is_ascii_whitespace() => space = true,
            c => {
                let sep = space && n > 0;
                if n + usize::from(sep) >= buf.len() {
                    return false;
                }
                if sep {
                    buf[n] = b' ';
                    n += 1;
                }
                buf[n] = c;
                n += 1;
                space = false;
            }
        }
    }
    let mt = &buf[..n];
    let Some(slash) = lex::find_byte(mt, b'/') else {
        return false;
    };
    lex::trim(&mt[..slash]).eq_ignore_ascii_case(top)
        && sub.is_none_or(|s| lex::trim(&mt[slash + 1..]).eq_ignore_ascii_case(s))
}

/// Media type of a Content-Type value without its parameters, trimmed.
pub fn media_type(content_type: &[u8]) -> &[u8] {
    let end = lex::find_byte(content_type, b';').unwrap_or(content_type.len());
    lex::trim(&content_type[..end])
}

/// Splits the body `body` of buffer `b` into parts; returns them and how many.
pub fn parts(
    b: &[u8],
    body: Span,
    boundary: &[u8],
) -> Result<([Part; MAX_PARTS], usize), MultipartError> {
    let (start, end) = (body.start as usize, body.end as usize);
    let s = &b[start..end];
    let mut out = [Part::default(); MAX_PARTS];
    let mut n = 0;
    // The first delimiter may open the body; later ones follow a CRLF (or a bare LF).
    let mut dash = [0u8; 72];
    dash[..2].copy_from_slice(b"--");
    dash[2..2 + boundary.len()].copy_from_slice(boundary);
    let delim = &dash[..2 + boundary.len()];
    // One searcher for every delimiter looked for.
    let finder = memchr::memmem::Finder::new(delim);
    let first = if s.starts_with(delim) {
        0
    } else {
        find_delimiter(s, 0, &finder)
            .map(|(_, at)| at)
            .ok_or(MultipartError::NoDelimiter(start))?
    };
    let mut i = first + delim.len();
    // Where the delimiters read stand: the body must hold the string nowhere else.
    let mut read = [usize::MAX; MAX_PARTS + 1];
    read[0] = first;
    loop {
        // After a delimiter: "--" closes; else transport padding, then the line end.
        if s[i..].starts_with(b"--") {
            // In any case: a reader that compares boundaries without case (QA 33)
            // finds `--ABC` a delimiter of `abc`. Every "--" is a candidate; the search
            // steps two bytes, so a run of dashes is looked at from its odd positions
            // too. One that overlaps a delimiter read (with the closing "--") is that
            // delimiter: a boundary of dashes (`--`, RFC 2046 allows it) matches inside
            // its own delimiters (QA 46).
            let in_read = |at: usize| {
                read.iter()
                    .any(|&r| r != usize::MAX && at < r + delim.len() + 2 && r < at + delim.len())
            };
            let stray = memchr::memmem::find_iter(s, b"--")
                .flat_map(|p| [p, p + 1])
                .find(|&at| {
                    s.get(at..at + 2) == Some(b"--")
                        && s.get(at + 2..at + 2 + boundary.len())
                            .is_some_and(|b| b.eq_ignore_ascii_case(boundary))
                        && !in_read(at)
                });
            if let Some(at) = stray {
                return Err(MultipartError::StrayDelimiter(start + at));
            }
            return Ok((out, n));
        }
        while i < s.len() && lex::is_wsp(s[i]) {
            i += 1;
        }
        i = match &s[i..] {
            [b'\r', b'\n', ..] => i + 2,
            [b'\n', ..] => i + 1,
            _ => return Err(MultipartError::Unterminated(start + i)),
        };
        if n == MAX_PARTS {
            return Err(MultipartError::TooManyParts(start + i));
        }
        // Part headers up to the empty line (an empty header section is allowed).
        let mut part = Part::default();
        loop {
            let mut line_end = lex::find_byte(&s[i..], b'\n')
                .map(|p| i + p)
                .ok_or(MultipartError::Unterminated(start + i))?;
            // A field folded onto the next lines (RFC 5322 2.2.3, as MIME part headers
            // may be) is one field: its value spans the fold, which every reader of it
            // (trim, parameters) takes as white space. A non-empty line only: an empty
            // one ends the headers.
            while line_end > i + usize::from(s[line_end - 1] == b'\r')
                && matches!(s.get(line_end + 1), Some(b' ' | b'\t'))
            {
                line_end = lex::find_byte(&s[line_end + 1..], b'\n')
                    .map(|p| line_end + 1 + p)
                    .ok_or(MultipartError::Unterminated(start + i))?;
            }
            let content_end = if line_end > i && s[line_end - 1] == b'\r' {
                line_end - 1
            } else {
                line_end
            };
            let line = &s[i..content_end];
            let line_start = i;
            if let Some(at) = lex::bare_cr(line) {
                return Err(MultipartError::BareCr(start + i + at));
            }
            i = line_end + 1;
            if line.is_empty() {
                break;
            }
            let Some(colon) = lex::find_byte(line, b':') else {
                continue;
            };
            let name = lex::trim(&line[..colon]);
            let vs = line_start + colon + 1;
            let v = lex::trim(&line[colon + 1..]);
            let off = vs + (v.as_ptr() as usize - line[colon + 1..].as_ptr() as usize);
            let span = Span::new(start + off, start + off + v.len());
            let once = |slot: &mut Option<Span>| {
                if slot.replace(span).is_some() {
                    return Err(MultipartError::RepeatedField(start + line_start));
                }
                Ok(())
            };
            if name.eq_ignore_ascii_case(b"content-type") || name.eq_ignore_ascii_case(b"c") {
                once(&mut part.content_type)?;
            } else if name.eq_ignore_ascii_case(b"content-disposition") {
                part.disposition = Some(span);
            } else if name.eq_ignore_ascii_case(b"content-length")
                || name.eq_ignore_ascii_case(b"l")
            {
                once(&mut part.content_length)?;
            } else if part.encoding.is_none() && encoding_changes_bytes(name, span.of(b)) {
                // Of several, either may be decoded: the first that changes bytes
                // counts, so none hides behind an identity one. SIP's Content-Encoding
                // written on a part (QA 29) too: a reader that decodes it there reads
                // other parts.
                part.encoding = Some(span);
            }
        }
        let (body_end, next) =
            find_delimiter(s, i, &finder).ok_or(MultipartError::Unterminated(start + i))?;
        part.body = Span::new(start + i, start + body_end);
        out[n] = part;
        n += 1;
        read[n] = next;
        i = next + delim.len();
    }
}

/// The next delimiter at or after `from` that starts a line: returns (end of the
/// preceding part, i.e. where its CRLF starts, and the position of "--boundary").
fn find_delimiter(
    s: &[u8],
    from: usize,
    delim: &memchr::memmem::Finder<'_>,
) -> Option<(usize, usize)> {
    let mut k = from;
    while let Some(p) = delim.find(&s[k..]) {
        let at = k + p;
        if at >= 1 && s[at - 1] == b'\n' {
            let end = if at >= 2 && s[at - 2] == b'\r' {
                at - 2
            } else {
                at - 1
            };
            return Some((end.max(from), at));
        }
        k = at + 1;
    }
    None
}

/// The `handling` parameter of a Content-Disposition (RFC 3204 / RFC 3261 20.11):
/// true for `required`, the default for `signal` disposition being `required`.
pub fn handling_required(disposition: &[u8]) -> bool {
    for p in disposition.split(|&c| c == b';').skip(1) {
        if let Some(eq) = lex::find_byte(p, b'=')
            && lex::trim(&p[..eq]).eq_ignore_ascii_case(b"handling")
        {
            return lex::trim(&p[eq + 1..]).eq_ignore_ascii_case(b"required");
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(body: &[u8], boundary: &str) -> Result<Vec<Part>, MultipartError> {
        let (p, n) = parts(body, Span::new(0, body.len()), boundary.as_bytes())?;
        Ok(p[..n].to_vec())
    }

    #[test]
    fn boundary_param() {
        assert_eq!(boundary(b"multipart/mixed;boundary=abc"), Ok(&b"abc"[..]));
        assert_eq!(
            boundary(b"multipart/mixed ; charset=x; Boundary = \"a b:c\""),
            Ok(&b"a b:c"[..])
        );
        assert_eq!(
            boundary(b"multipart/mixed"),
            Err(MultipartError::NoBoundary)
        );
        assert_eq!(
            boundary(b"multipart/mixed;boundary="),
            Err(MultipartError::NoBoundary)
        );
        assert_eq!(
            boundary(b"multipart/mixed;boundary=b2; BOUNDARY=\"b1\""),
            Err(MultipartError::AmbiguousBoundary)
        );
        // White space in a boundary: its own when quoted; unquoted, a reader may end
        // the token there (QA 33).
        assert_eq!(
            boundary(b"multipart/mixed;boundary=a b"),
            Err(MultipartError::AmbiguousBoundary)
        );
        assert_eq!(
            boundary(b"multipart/mixed;boundary=\"a b\""),
            Ok(&b"a b"[..])
        );
        assert!(is_multipart(b"multipart / mixed;boundary=x"));
        assert!(is_type(
            b"application /\r\n ISUP;version=itu-t92+",
            b"application",
            Some(b"isup")
        ));
        assert!(!is_type(
            b"application/isupx",
            b"application",
            Some(b"isup")
        ));
        // RFC 822 comments, nested, escaped, with a ';' inside, anywhere between tokens.
        for ct in [
            "application/ISUP (SIP-I)",
            "application/isup(x);version=itu-t92+",
            "(the IAM) application/isup",
            "application (a (nested \\) one)) / isup ; base=itu-t92+",
            "application/isup (a;b)",
        ] {
            assert!(
                is_type(ct.as_bytes(), b"application", Some(b"isup")),
                "{ct}"
            );
        }
        for ct in [
            "application/sdp (isup)",
            "application/i(x)sup",
            "(application/isup) application/sdp",
            "application/isup\u{0}x",
        ] {
            assert!(
                !is_type(ct.as_bytes(), b"application", Some(b"isup")),
                "{ct}"
            );
        }
        assert!(!is_type(
            &[b"application/".as_slice(), &[b' '; 100], b"is", &[b'x'; 80]].concat(),
            b"application",
            Some(b"isup")
        ));
        assert!(is_multipart(b"(c) multipart/mixed;boundary=x"));
        // Comments around a parameter's value are no part of it.
        for (ct, want) in [
            ("multipart/mixed;boundary=(c)b1", "b1"),
            ("multipart/mixed;boundary= b1 (x)", "b1"),
            ("multipart/mixed;boundary=(a (b) \\) c) \"b1\"", "b1"),
            ("multipart/mixed;boundary=\"b(1)\"", "b(1)"),
            ("multipart/mixed;boundary=\"b1\" (c)", "b1"),
            ("multipart/mixed;boundary=(c)\"b1\"(d)", "b1"),
        ] {
            assert_eq!(
                param(ct.as_bytes(), b"boundary"),
                Some(want.as_bytes()),
                "{ct}"
            );
        }
        assert_eq!(
            param(b"multipart/mixed;boundary=(open", b"boundary"),
            Some(&b""[..])
        );
        assert!(is_multipart(b"multipart(c)/mixed;boundary=x"));
        assert_eq!(
            media_type(b" application/ISUP ;version=itu-t92+"),
            b"application/ISUP"
        );
        assert!(is_multipart(b"Multipart/Mixed;boundary=x"));
    }

    #[test]
    fn binary_parts_with_crlf_and_dashes_inside() {
        let isup: &[u8] = b"\x01\x00\r\n--not\r\n-\x00\xff";
        let mut body = b"preamble\r\n--B1\r\nContent-Type: application/sdp\r\n\r\nv=0\r\n\r\n--B1\r\nContent-Type: application/ISUP;version=itu-t92+\r\nContent-Disposition: signal;handling=optional\r\nContent-Length: 11\r\n\r\n".to_vec();
        body.extend_from_slice(isup);
        body.extend_from_slice(b"\r\n--B1--\r\nepilogue");
        let p = split(&body, "B1").unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].body.of(&body), b"v=0\r\n");
        assert_eq!(p[1].body.of(&body), isup);
        assert_eq!(
            p[1].content_type.unwrap().of(&body),
            b"application/ISUP;version=itu-t92+"
        );
        assert!(!handling_required(p[1].disposition.unwrap().of(&body)));
        assert_eq!(p[1].content_length.unwrap().of(&body), b"11");
        assert!(handling_required(b"signal"));
    }

    #[test]
    fn refused() {
        assert_eq!(
            split(b"no delimiter", "B"),
            Err(MultipartError::NoDelimiter(0))
        );
        assert!(matches!(
            split(b"--B\r\nContent-Type: x\r\n", "B"),
            Err(MultipartError::Unterminated(_))
        ));
        assert!(matches!(
            split(b"--B\r\n\r\nbody never closed", "B"),
            Err(MultipartError::Unterminated(_))
        ));
        let many: Vec<u8> = (0..10)
            .flat_map(|_| b"--B\r\n\r\nx\r\n".to_vec())
            .chain(b"--B--".to_vec())
            .collect();
        assert!(matches!(
            split(&many, "B"),
            Err(MultipartError::TooManyParts(_))
        ));
        // The delimiter where none stands (QA 31): glued before the first, inside a
        // part, after the close; a reader that looks for it anywhere reads other parts.
        let isup = "Content-Type: application/ISUP\r\n\r\n\x01\r\n";
        for (body, at) in [
            (format!(" --B\r\n{isup}--B--\r\n"), 1),
            (format!("preamble --B\r\n{isup}--B--"), 9),
            (format!("--B\r\n\r\nv=0 --B\r\n{isup}--B--"), 11),
            (format!("--B\r\n\r\nv=0\r\n--B--\r\n--B\r\n{isup}--B--"), 19),
            // In another case (QA 33), at a line start.
            (format!("--B\r\n\r\nv=0\r\n--b\r\n{isup}--B--"), 12),
        ] {
            assert_eq!(
                split(body.as_bytes(), "B"),
                Err(MultipartError::StrayDelimiter(at)),
                "{body:?}"
            );
        }
        // Dashes, and a preamble and an epilogue without the delimiter, are fine.
        let ok = "x\r\n--B\r\n\r\n-- B --\r\n--B--\r\nend --\r\n";
        assert_eq!(split(ok.as_bytes(), "B").map(|p| p.len()), Ok(1));
        // Every truncation is an error or fewer parts, never a panic.
        let good = b"--B\r\nContent-Type: a/b\r\n\r\nxyz\r\n--B--\r\n";
        for n in 0..good.len() {
            let _ = split(&good[..n], "B");
        }
    }
}
