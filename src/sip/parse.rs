//! Start line, header section and body of one message; stream framing for TCP.
//!
//! The start line and the scalar fields use nom; the header walk is a plain scan
//! because folding (RFC 3261 7.3.1) makes a line a poor unit for combinators.

use bytes::Bytes;
use nom::IResult;
use nom::Parser;
use nom::bytes::complete::{tag_no_case, take_while_m_n, take_while1};
use nom::character::complete::char;
use nom::combinator::{all_consuming, rest};

use super::error::{ErrorKind, ParseError};
use super::header::HeaderName;
use super::lex::{self, is_token, is_wsp, skip_lws};
use super::{Header, Message, Method, Span, StartLine, addr, uri, via};

/// Header fields kept per message; more is refused (a header flood is an attack, not a
/// call). Real INVITEs carry 15-40, but a response that crossed many proxies carries one
/// Record-Route and one Via per hop, and a 200 OK refused here is a call answered that
/// the caller never hears: so the bound is what the one-byte index of first fields
/// holds, not what a call usually needs.
pub const MAX_HEADERS: usize = 254;
/// Largest message accepted: a UDP datagram's worth (RFC 3261 18.1.1 moves larger
/// requests to TCP; the same bound keeps a TCP peer from growing our buffers forever).
pub const MAX_MESSAGE: usize = 65_535;

type NomErr<'a> = nom::error::Error<&'a [u8]>;

fn request_line(i: &[u8]) -> IResult<&[u8], (&[u8], &[u8]), NomErr<'_>> {
    let (i, method) = take_while1(is_token)(i)?;
    let (i, _) = char(' ')(i)?;
    let (i, uri) = take_while1(|c: u8| c > b' ' && c != 0x7f)(i)?;
    let (i, _) = char(' ')(i)?;
    Ok((i, (method, uri)))
}

fn sip_version(i: &[u8]) -> IResult<&[u8], &[u8], NomErr<'_>> {
    tag_no_case("SIP/2.0")(i)
}

fn status_line(i: &[u8]) -> IResult<&[u8], (u16, &[u8]), NomErr<'_>> {
    let (i, _) = (sip_version, char(' ')).parse(i)?;
    let (i, code) = take_while_m_n(3, 3, |c: u8| c.is_ascii_digit())(i)?;
    // The reason phrase may be empty, with or without its separating SP (RFC 4475 3.1.1.13).
    let (i, reason) = if i.is_empty() {
        (i, i)
    } else {
        let (i, _) = char(' ')(i)?;
        rest(i)?
    };
    let c = (code[0] - b'0') as u16 * 100 + (code[1] - b'0') as u16 * 10 + (code[2] - b'0') as u16;
    Ok((i, (c, reason)))
}

/// `CSeq: 1*DIGIT LWS Method`, number below 2**31 (RFC 3261 8.1.1.5).
pub fn split_cseq(v: &[u8]) -> Option<(u32, &[u8])> {
    let digits: IResult<&[u8], &[u8], NomErr<'_>> = take_while1(|c: u8| c.is_ascii_digit())(v);
    let (rest_b, num) = digits.ok()?;
    let n = lex::parse_u32(num).filter(|&n| n < 1 << 31)?;
    let m = skip_lws(rest_b, 0);
    if m == 0 {
        return None;
    }
    let method = &rest_b[m..];
    if method.is_empty() || !method.iter().all(|&c| is_token(c)) {
        return None;
    }
    Some((n, method))
}

/// Finds the end of the line starting at `i`: returns (end of content, start of next line).
/// For the start line; the header section's lines come from [`lex::NewLines`].
#[inline]
fn line_end(b: &[u8], i: usize) -> Option<(usize, usize)> {
    // memchr, not the 8-byte scan used for short spans: measured with callgrind, 600
    // fewer instructions per INVITE (a line is long enough for its vector loop).
    let nl = memchr::memchr(b'\n', &b[i..])? + i;
    Some(line_at(b, i, nl))
}

/// The line starting at `i` whose '\n' is at `nl`: (end of content, start of next line),
/// a CR before the LF left out of the content.
#[inline]
fn line_at(b: &[u8], i: usize, nl: usize) -> (usize, usize) {
    let end = if nl > i && b[nl - 1] == b'\r' {
        nl - 1
    } else {
        nl
    };
    (end, nl + 1)
}

/// `line_end` for a line of the header section, whose line ends `lines` hands out.
#[inline]
fn header_line(
    lines: &mut lex::NewLines<'_>,
    b: &[u8],
    i: usize,
) -> Result<(usize, usize), ParseError> {
    lines
        .next(i)
        .map(|nl| line_at(b, i, nl))
        .ok_or_else(|| ParseError::new(ErrorKind::Truncated, b.len()))
}

/// The end of the field name at `pos`, and which name it is. Sixteen bytes are
/// classified at once; a name the table knows needs no per-byte check, because it can
/// only have matched letters and '-' (CR, the one other byte that folds onto '-', stops
/// the scan). Any other name is checked byte by byte as before.
#[inline]
fn field_name(b: &[u8], pos: usize) -> (usize, HeaderName) {
    if let Some(c) = b.get(pos..).and_then(|r| r.first_chunk::<16>()) {
        let stop = lex::name_stop_mask(c);
        if stop != 0 {
            let end = pos + stop.trailing_zeros() as usize;
            let n = &b[pos..end];
            let name = HeaderName::parse(n);
            // A name the table does not know is checked as a token: scanned in the
            // whole buffer, so that the vector scan applies (the name ends at ':' or
            // whitespace, neither of which is a token byte).
            if name != HeaderName::Other || lex::token_end(b, pos) == end {
                return (end, name);
            }
        }
    }
    let end = lex::token_end(b, pos);
    (end, HeaderName::parse(&b[pos..end]))
}

/// How much of a message to check beyond its framing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// Every header the filter relies on (requests, RFC 4475).
    Full,
    /// Only Via: what a stateless proxy needs to relay a response. Responses are not
    /// judged, and validating their other fields would cost every relayed message.
    ViaOnly,
}

pub(crate) fn parse_message(buf: Bytes) -> Result<Message, ParseError> {
    parse_message_with(buf, Check::Full)
}

pub(crate) fn parse_message_with(buf: Bytes, check: Check) -> Result<Message, ParseError> {
    let mut m = Message::empty();
    parse_message_into(&mut m, buf, check)?;
    Ok(m)
}

/// Parses into `m`, whose header table is reused: the table is ~1 KB, and a message
/// built in locals and returned was copied on its way out (twice, with the caller's
/// move: a tenth of a relayed response's parse). On `Err`, `m` holds no message (an
/// empty buffer and no fields).
pub(crate) fn parse_message_into(
    m: &mut Message,
    buf: Bytes,
    check: Check,
) -> Result<(), ParseError> {
    let r = fill(m, &buf, check);
    match r {
        Ok(()) => m.buf = buf,
        Err(_) => m.clear(),
    }
    r
}

fn fill(m: &mut Message, buf: &Bytes, check: Check) -> Result<(), ParseError> {
    let b: &[u8] = buf;
    if b.len() > MAX_MESSAGE {
        return Err(ParseError::new(ErrorKind::TooLarge, MAX_MESSAGE));
    }
    // CRLFs before the start line are ignored (RFC 3261 7.5).
    let mut i = 0;
    while i < b.len() && (b[i] == b'\r' || b[i] == b'\n') {
        i += 1;
    }
    let (sl_end, mut pos) =
        line_end(b, i).ok_or_else(|| ParseError::new(ErrorKind::Truncated, b.len()))?;
    let sl = &b[i..sl_end];
    let start = parse_start_line(b, i, sl)?;
    // A line that ends in LF alone (RFC 3261 asks for CRLF): relayed, the head is
    // written with CRLFs (a next hop may frame a stream on CRLFCRLF alone, QA 83 F2).
    let mut bare_lf = pos - sl_end == 1;

    // Filled in place; `m.first` is all that must start cleared (the table is only
    // read up to `n_headers`).
    let headers = &mut m.headers;
    let mut n_headers = 0usize;
    let first = &mut m.first;
    *first = [0u8; HeaderName::COUNT];
    let head_end;

    // Header section.
    let mut lines = lex::NewLines::new(b, pos);
    let body_start;
    loop {
        // A field name's first byte is above SP; anything else ends the section or is
        // malformed (one test per field instead of three).
        match b.get(pos) {
            Some(&c) if c > b' ' => {}
            None => return Err(ParseError::new(ErrorKind::Truncated, pos)),
            Some(b'\n') => {
                head_end = pos as u32;
                body_start = pos + 1;
                bare_lf = true;
                break;
            }
            Some(b'\r') if b.get(pos + 1) == Some(&b'\n') => {
                head_end = pos as u32;
                body_start = pos + 2;
                break;
            }
            // A continuation line with no field before it.
            Some(b' ' | b'\t') => return Err(ParseError::new(ErrorKind::BadHeaderLine, pos)),
            Some(_) => {}
        }
        let line_start = pos;
        // Logical line: physical lines joined while the next one starts with SP/HT.
        let (mut content_end, mut next) = header_line(&mut lines, b, pos)?;
        bare_lf |= next - content_end == 1;
        // A fold starts with SP or HT: a next line starting above SP is the next field.
        while next < b.len() && b[next] <= b' ' && is_wsp(b[next]) {
            let (ce, nx) = header_line(&mut lines, b, next)?;
            content_end = ce;
            next = nx;
            bare_lf |= next - content_end == 1;
        }
        let (name_end, name) = field_name(b, pos);
        if name_end == pos {
            return Err(ParseError::new(ErrorKind::BadHeaderLine, pos));
        }
        // Nearly always "Name:"; whitespace before the colon is allowed (RFC 3261 7.3.1).
        let c = if name_end < content_end && b[name_end] == b':' {
            name_end
        } else {
            let mut c = name_end;
            while c < content_end && is_wsp(b[c]) {
                c += 1;
            }
            if c >= content_end || b[c] != b':' {
                return Err(ParseError::new(ErrorKind::BadHeaderLine, pos));
            }
            c
        };
        let vs = skip_lws(b, c + 1).min(content_end);
        let mut ve = content_end;
        while ve > vs
            && b[ve - 1] <= b' '
            && (is_wsp(b[ve - 1]) || b[ve - 1] == b'\r' || b[ve - 1] == b'\n')
        {
            ve -= 1;
        }
        let n = n_headers;
        if n >= MAX_HEADERS {
            return Err(ParseError::new(ErrorKind::TooManyHeaders, pos));
        }
        // Offsets and the name's length fit the table's u16s: the message is at most
        // MAX_MESSAGE bytes (checked on entry; MAX_MESSAGE <= u16::MAX is asserted).
        headers[n] = Header::new(
            name,
            Span::new(line_start, next),
            name_end - pos,
            Span::new(vs, ve),
        );
        if first[name as usize] == 0 {
            first[name as usize] = (n + 1) as u8;
        }
        n_headers += 1;
        pos = next;
    }

    // A request's header section with a CR that ends no line: refused (400), since a
    // next hop that ends lines there reads fields this parse did not.
    // So is a NUL but in a quoted-pair (`\<NUL>`, which RFC 3261 25.1 allows in quoted
    // strings and RFC 4475 3.1.1.3 calls valid): no field may hold one otherwise, and it
    // ends the text for a next hop that reads C strings, which then reads other fields
    // than this parse (QA 44).
    if matches!(start, StartLine::Request { .. })
        && let Some(at) = lex::bare_cr_or_nul(&b[i..head_end as usize])
    {
        return Err(ParseError::new(ErrorKind::BadHeaderLine, i + at));
    }

    // Body: Content-Length decides; without one, a datagram's remainder is the body.
    let mut body_end = b.len();
    let fields = &headers[..n_headers];
    if let Some(h) = first[HeaderName::ContentLength as usize]
        .checked_sub(1)
        .and_then(|k| fields.get(k as usize))
    {
        let v = h.value().of(b);
        let cl = lex::parse_u32(v).ok_or_else(|| {
            ParseError::header(HeaderName::ContentLength, h.value().start as usize)
        })?;
        body_end = body_start
            .checked_add(cl as usize)
            .filter(|&e| e <= b.len())
            .ok_or_else(|| ParseError::new(ErrorKind::BodyTruncated, b.len()))?;
    }
    let body = Span::new(body_start, body_end);
    let vias = &mut m.vias;
    *vias = [None; 2];
    let mut n_vias = 0;
    let mut keep_via = |v: via::Via| {
        if n_vias < 2 {
            vias[n_vias] = Some(v);
            n_vias += 1;
        }
    };
    let (from, to) = if check == Check::Full || matches!(start, StartLine::Request { .. }) {
        validate_headers(start, fields, b, &mut keep_via)?
    } else {
        for h in fields.iter().filter(|h| h.name == HeaderName::Via) {
            via::parse_list(b, h.value(), &mut keep_via)
                .map_err(|_| ParseError::header(HeaderName::Via, h.value().start as usize))?;
        }
        (None, None)
    };
    m.start = start;
    m.start_line = Span::new(i, sl_end);
    m.n_headers = n_headers as u16;
    m.head_end = head_end;
    m.bare_lf = bare_lf;
    m.body = body;
    m.from = from;
    m.to = to;
    Ok(())
}

#[inline(never)]
fn parse_start_line(b: &[u8], off: usize, sl: &[u8]) -> Result<StartLine, ParseError> {
    if lex::starts_with_ci(sl, b"SIP/") {
        let (_, (code, reason)) = all_consuming(status_line).parse(sl).map_err(|_| {
            if lex::starts_with_ci(sl, b"SIP/2.0 ") {
                ParseError::new(ErrorKind::BadStatusCode, off + 8)
            } else {
                ParseError::new(ErrorKind::BadVersion, off)
            }
        })?;
        if !(100..=699).contains(&code) {
            return Err(ParseError::new(ErrorKind::BadStatusCode, off + 8));
        }
        let rs = off + (reason.as_ptr() as usize - sl.as_ptr() as usize);
        return Ok(StartLine::Response {
            code,
            reason: Span::new(rs, rs + reason.len()),
        });
    }
    // Nearly every request line is "METHOD SP URI SP SIP/2.0" with a URI of URI
    // characters only: one vector scan finds its end and checks its characters, where
    // the general path below scans it byte by byte and then checks it again.
    let m_end = lex::token_end(sl, 0);
    if m_end > 0 && sl.get(m_end) == Some(&b' ') {
        let u_end = lex::class_end::<lex::Uri>(sl, m_end + 1);
        if u_end > m_end + 1
            && sl.get(u_end) == Some(&b' ')
            && sl[u_end + 1..].eq_ignore_ascii_case(b"SIP/2.0")
        {
            let uri_span = Span::new(off + m_end + 1, off + u_end);
            return match uri::parse_chars_checked(b, uri_span) {
                // Headers are not allowed in a Request-URI (RFC 3261 19.1.5).
                Ok(u) if u.headers.is_none() => Ok(StartLine::Request {
                    method: method(&sl[..m_end], off)?,
                    method_span: Span::new(off, off + m_end),
                    uri: uri_span,
                }),
                _ => Err(ParseError::new(ErrorKind::BadRequestUri, off + m_end + 1)),
            };
        }
    }
    request_line_general(b, off, sl)
}

/// For the fuzz target: the request-line fast path and the general one give the same
/// result on `sl` (a line without its terminator).
pub(crate) fn assert_request_line_paths_agree(sl: &[u8]) {
    if lex::starts_with_ci(sl, b"SIP/") {
        return;
    }
    let (fast, general) = (parse_start_line(sl, 0, sl), request_line_general(sl, 0, sl));
    assert_eq!(fast, general, "request-line fast path disagrees");
}

/// Any request line, its errors classified (the fast path above takes the common one).
fn request_line_general(b: &[u8], off: usize, sl: &[u8]) -> Result<StartLine, ParseError> {
    let (version, (method, uri_b)) = match request_line(sl) {
        Ok(x) => x,
        Err(_) => {
            // Interop: "BYE  SIP/2.0" (empty Request-URI), as sipp sends in-dialog
            // requests when it learned no Contact. Kamailio forwards these; so do we,
            // for in-dialog requests only (an initial request without a target gets a
            // 400 from check_request).
            if let Some(sp) = memchr::memmem::find(sl, b"  ") {
                let (m, v) = (&sl[..sp], &sl[sp + 2..]);
                if !m.is_empty()
                    && m.iter().all(|&c| is_token(c))
                    && v.eq_ignore_ascii_case(b"SIP/2.0")
                {
                    return Ok(StartLine::Request {
                        method: method(m, off)?,
                        method_span: Span::new(off, off + m.len()),
                        uri: Span::new(off + sp + 1, off + sp + 1),
                    });
                }
            }
            let kind = if sl.first().is_some_and(|&c| is_token(c)) && sl.contains(&b' ') {
                ErrorKind::BadRequestUri
            } else {
                ErrorKind::BadStartLine
            };
            return Err(ParseError::new(kind, off));
        }
    };
    let uri_start = off + method.len() + 1;
    let uri_span = Span::new(uri_start, uri_start + uri_b.len());
    let version_ok: IResult<&[u8], &[u8], NomErr<'_>> = all_consuming(sip_version).parse(version);
    if version_ok.is_err() {
        // Method and URI exclude control characters already; the version may hold one.
        if !sl.iter().all(|&c| c >= b' ' || c == b'\t') {
            return Err(ParseError::new(ErrorKind::BadStartLine, off));
        }
        // "SIP/7.0" and "SIP/2.0  " (trailing SP, RFC 4475 3.1.2.10) alike.
        let kind = if version.starts_with(b"SIP/") || version.starts_with(b"sip/") {
            ErrorKind::BadVersion
        } else {
            ErrorKind::BadRequestUri
        };
        return Err(ParseError::new(kind, uri_span.end as usize + 1));
    }
    let u = uri::parse(b, uri_span)
        .map_err(|_| ParseError::new(ErrorKind::BadRequestUri, uri_start))?;
    if u.headers.is_some() {
        // Headers are not allowed in a Request-URI (RFC 3261 19.1.5, RFC 4475 3.1.2.11).
        return Err(ParseError::new(ErrorKind::BadRequestUri, uri_start));
    }
    Ok(StartLine::Request {
        method: self::method(method, off)?,
        method_span: Span::new(off, off + method.len()),
        uri: uri_span,
    })
}

/// A request's method; a known one in another case is refused ([`Method::is_miscased`]).
fn method(m: &[u8], off: usize) -> Result<Method, ParseError> {
    match Method::from_bytes(m) {
        Method::Other if Method::is_miscased(m) => Err(ParseError::new(ErrorKind::BadMethod, off)),
        known => Ok(known),
    }
}

/// Checks the fields whose grammar the proxy or the policy relies on. Unknown fields
/// are passed through untouched, whatever they hold (RFC 4475 3.1.1.1).
fn validate_headers(
    start: StartLine,
    fields: &[Header],
    b: &[u8],
    keep_via: &mut impl FnMut(via::Via),
) -> Result<(Option<addr::NameAddr>, Option<addr::NameAddr>), ParseError> {
    let (mut from, mut to) = (None, None);
    let req_method = match start {
        StartLine::Request { method_span, .. } => Some(method_span.of(b)),
        StartLine::Response { .. } => None,
    };
    for h in fields {
        let v = h.value().of(b);
        let at = h.value().start as usize;
        let bad = |_| ParseError::header(h.name, at);
        match h.name {
            HeaderName::Via => via::parse_list(b, h.value(), &mut *keep_via).map_err(bad)?,
            HeaderName::From | HeaderName::To => {
                let na = addr::parse_single(b, h.value()).map_err(bad)?;
                let slot = if h.name == HeaderName::From {
                    &mut from
                } else {
                    &mut to
                };
                slot.get_or_insert(na);
            }
            HeaderName::Contact
                if v != b"*" => {
                    addr::parse_list(b, h.value(), |_| {}).map_err(bad)?;
                }
            HeaderName::CSeq => {
                let (_, m) = split_cseq(v).ok_or_else(|| ParseError::header(h.name, at))?;
                if let Some(rm) = req_method
                    && rm != m {
                        return Err(ParseError::new(ErrorKind::CSeqMismatch, at));
                    }
            }
            HeaderName::MaxForwards => {
                lex::parse_u32(v)
                    .filter(|&n| n <= 255)
                    .ok_or_else(|| ParseError::header(h.name, at))?;
            }
            HeaderName::Expires
                // RFC 2543 also allowed an HTTP date here; a number must fit 32 bits.
                if v.first().is_some_and(u8::is_ascii_digit) && lex::parse_u32(v).is_none() => {
                    return Err(ParseError::header(h.name, at));
                }
            HeaderName::RetryAfter => {
                let n = v.iter().take_while(|c| c.is_ascii_digit()).count();
                lex::parse_u32(&v[..n]).ok_or_else(|| ParseError::header(h.name, at))?;
            }
            HeaderName::Date
                // rfc1123-date always ends in "GMT" (RFC 3261 20.17, RFC 4475 3.1.2.12).
                if !v.ends_with(b"GMT") => {
                    return Err(ParseError::header(h.name, at));
                }
            HeaderName::CallId
                if (v.is_empty() || lex::class_end::<lex::CallId>(v, 0) != v.len()) => {
                    return Err(ParseError::header(h.name, at));
                }
            _ => {}
        }
    }
    Ok((from, to))
}

/// Whether bytes start like a SIP message: a status line, or a request line ending in
/// SIP/2.0. Used to find SIP on any port (replay), and to mirror to Homer only what is
/// SIP (QA 147: garbage and RTP sent to the SIP port went to Homer as SIP).
pub fn looks_like_sip(b: &[u8]) -> bool {
    let b = &b[b.iter().take_while(|&&c| c == b'\r' || c == b'\n').count()..];
    if lex::starts_with_ci(b, b"SIP/2.0 ") {
        return true;
    }
    let line = &b[..memchr::memchr(b'\n', &b[..b.len().min(2048)]).unwrap_or(b.len().min(2048))];
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    line.first().is_some_and(|&c| lex::is_token(c))
        && line.len() > 8
        && line[line.len() - 8..].eq_ignore_ascii_case(b" SIP/2.0")
}

/// What a TCP (or other stream) receive buffer holds at its front.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame {
    /// Not enough bytes yet.
    Incomplete,
    /// A keep-alive ping (CRLFCRLF, RFC 5626 3.5.1) of this many bytes: answer CRLF.
    Ping(usize),
    /// A whole message: skip `skip` bytes of leading CRLF, then `len` bytes of message.
    Message { skip: usize, len: usize },
}

/// A keep-alive rather than a message: a datagram of nothing but CR, LF, NUL, SP or HT
/// (the CRLF pings of RFC 5626 3.5.1, which many devices send over UDP too, and zero
/// padding), or a STUN message (RFC 5389: first two bits clear, the magic cookie at
/// bytes 4-7), which is how RFC 5626 keeps UDP flows open. Not SIP, not an attack:
/// counted apart, never as a parse error, never answered.
pub fn keepalive(d: &[u8]) -> bool {
    const STUN_COOKIE: [u8; 4] = [0x21, 0x12, 0xa4, 0x42];
    match d.first() {
        // A SIP message starts with a letter: one test lets every one through.
        Some(&c) if c >= b'A' => false,
        _ if d.len() <= 64
            && d.iter()
                .all(|&c| matches!(c, b'\r' | b'\n' | 0 | b' ' | b'\t')) =>
        {
            true
        }
        _ => d.len() >= 20 && d[0] & 0xc0 == 0 && d[4..8] == STUN_COOKIE,
    }
}

/// The fields named `name` in a message head (`head` ends at or before its blank
/// line), each as the offset of its trimmed value and that value, folded lines
/// included (RFC 3261 7.3.1: `Content-Length:\r\n 85` is 85, as the parser reads it).
/// Nothing else of the head is checked: for bytes no parse has judged yet (a stream
/// being framed) or will judge (a copy sent to Homer).
fn head_fields(head: &[u8], name: HeaderName) -> impl Iterator<Item = (usize, &[u8])> {
    let end = head.len();
    let mut i = 0;
    std::iter::from_fn(move || {
        while i < end {
            let at = i;
            let mut nl = memchr::memchr(b'\n', &head[i..]).map_or(end, |p| i + p + 1);
            let ne = lex::token_end(&head[i..nl], 0);
            let named = ne > 0 && HeaderName::parse(&head[i..i + ne]) == name;
            if named {
                while nl < end && matches!(head[nl], b' ' | b'\t') {
                    nl = memchr::memchr(b'\n', &head[nl..]).map_or(end, |p| nl + p + 1);
                }
            }
            i = nl;
            let rest = &head[at + ne..nl];
            if named && let Some(colon) = rest.iter().position(|&c| c == b':') {
                let v = lex::trim(&rest[colon + 1..]);
                // The value's own offset, as the parser reports a bad value's: the
                // framing and the parse name one byte for one mistake (QA 180).
                return Some((v.as_ptr() as usize - head.as_ptr() as usize, v));
            }
        }
        None
    })
}

/// The length of a message's head, its blank line included, where the parser ends it:
/// at the first line that is empty, whichever line end each line has (LF or CRLF:
/// `\n\n` or `\n\r\n`). `None` while no such line has come. (Looking for `\r\n\r\n`
/// first let a head that ends in bare LFs run on into a body holding a CRLF pair: the
/// stream was then framed longer than the message the parser read.)
pub(crate) fn head_len(s: &[u8]) -> Option<usize> {
    memchr::memchr_iter(b'\n', s).find_map(|p| match s.get(p + 1..) {
        Some([b'\n', ..]) => Some(p + 2),
        Some([b'\r', b'\n', ..]) => Some(p + 3),
        _ => None,
    })
}

/// The Call-ID of a message, read off its bytes without a parse (the first one, as
/// written; `None` when there is none).
pub fn call_id_of(msg: &[u8]) -> Option<&[u8]> {
    let head = &msg[..head_len(msg).unwrap_or(msg.len())];
    head_fields(head, HeaderName::CallId)
        .map(|(_, v)| v)
        .next()
        .filter(|v| !v.is_empty())
}

/// Cuts the next message off a byte stream using Content-Length (RFC 3261 18.3), which
/// is mandatory on streams; a missing or bad one is an error that closes the connection.
pub fn frame_stream(b: &[u8]) -> Result<Frame, ParseError> {
    if b.starts_with(b"\r\n\r\n") {
        return Ok(Frame::Ping(4));
    }
    let mut skip = 0;
    while skip < b.len() && (b[skip] == b'\r' || b[skip] == b'\n') {
        skip += 1;
    }
    if skip == b.len() {
        return Ok(Frame::Incomplete);
    }
    let s = &b[skip..];
    let Some(head_end) = head_len(s) else {
        if s.len() > MAX_MESSAGE {
            return Err(ParseError::new(ErrorKind::TooLarge, skip + MAX_MESSAGE));
        }
        return Ok(Frame::Incomplete);
    };
    let mut cl: Option<u32> = None;
    for (i, v) in head_fields(&s[..head_end], HeaderName::ContentLength) {
        // Two lengths frame nothing: whichever one the next reader takes, the stream is
        // read apart from what was judged. Refused at once, not after waiting for the
        // longer body (the connection then closes).
        if cl.is_some() {
            return Err(ParseError {
                kind: ErrorKind::BadContentLength,
                offset: (skip + i) as u32,
                header: Some(HeaderName::ContentLength),
            });
        }
        cl = Some(
            lex::parse_u32(v)
                .ok_or_else(|| ParseError::header(HeaderName::ContentLength, skip + i))?,
        );
    }
    let cl = cl.ok_or_else(|| ParseError::new(ErrorKind::NoContentLength, skip))? as usize;
    let len = head_end + cl;
    if len > MAX_MESSAGE {
        return Err(ParseError::new(ErrorKind::TooLarge, skip));
    }
    if s.len() < len {
        return Ok(Frame::Incomplete);
    }
    Ok(Frame::Message { skip, len })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A head that ends in bare LFs ends there for the framing as for the parser, even
    /// when its body holds a CRLF pair: the stream is cut where the message ends, and
    /// the next message starts whole (the framing looked for CRLFCRLF first and took
    /// the body's for the head's end: the frame ran six bytes into the next message).
    #[test]
    fn stream_framing_ends_the_head_where_the_parser_does() {
        let first = "INVITE sip:a@b SIP/2.0\nVia: SIP/2.0/TCP h;branch=z9hG4bK-1\nFrom: <sip:c@d>;tag=1\nTo: <sip:a@b>\nCall-ID: f\nCSeq: 1 INVITE\nContent-Length: 6\n\nab\r\n\r\n";
        let second = "OPTIONS sip:x SIP/2.0\r\nContent-Length: 0\r\n\r\n";
        for (head_end, body) in [
            ("\n\n", "ab\r\n\r\n"),
            ("\n\r\n", "ab\r\n\r\n"),
            ("\r\n\r\n", "ab\n\nxy"),
        ] {
            let m = first.replace("\n\nab\r\n\r\n", &format!("{head_end}{body}"));
            let stream = format!("{m}{second}");
            let Ok(Frame::Message { skip: 0, len }) = frame_stream(stream.as_bytes()) else {
                panic!("{head_end:?}: {:?}", frame_stream(stream.as_bytes()));
            };
            assert_eq!(&stream[..len], m, "{head_end:?}");
            let parsed = crate::sip::Message::parse(bytes::Bytes::copy_from_slice(m.as_bytes()))
                .unwrap_or_else(|e| panic!("{head_end:?}: {e}"));
            assert_eq!(
                (parsed.len(), parsed.body()),
                (len, body.as_bytes()),
                "{head_end:?}"
            );
            assert!(matches!(
                frame_stream(&stream.as_bytes()[len..]),
                Ok(Frame::Message { skip: 0, .. })
            ));
        }
    }

    /// A bad Content-Length is named at the same byte whether the stream's framing or
    /// the parse finds it: the proxy's answer on TCP and `explain` agree (QA 180: the
    /// framing named the field's line, the parse its value, 16 bytes apart).
    #[test]
    fn framing_and_parse_name_one_byte_for_a_bad_length() {
        for value in ["+310", "-0", "3 10", "0x10"] {
            let m = format!(
                "INVITE sip:a@b SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK-1\r\nFrom: <sip:c@d>;tag=1\r\nTo: <sip:a@b>\r\nCall-ID: f\r\nCSeq: 1 INVITE\r\nContent-Length: {value}\r\n\r\n"
            );
            let framed = frame_stream(m.as_bytes()).err();
            let parsed =
                crate::sip::Message::parse(bytes::Bytes::copy_from_slice(m.as_bytes())).err();
            let at = m.find(value).map(|p| p as u32);
            assert_eq!(framed.map(|e| e.offset), at, "{value}");
            assert_eq!(parsed.map(|e| e.offset), at, "{value}");
        }
    }

    /// The Call-ID read off bytes no parse has judged (a copy for Homer): any form of
    /// the name, a folded value, the first of two; none in the body or without one.
    #[test]
    fn the_call_id_is_read_off_the_bytes() {
        let of =
            |m: &str| call_id_of(m.as_bytes()).map(|v| String::from_utf8_lossy(v).into_owned());
        let head = "INVITE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK-1\r\n";
        assert_eq!(
            of(&format!("{head}Call-ID: abc@h \r\n\r\n")).as_deref(),
            Some("abc@h")
        );
        assert_eq!(
            of(&format!("{head}i:x1\r\nCall-ID: x2\r\n\r\n")).as_deref(),
            Some("x1")
        );
        assert_eq!(
            of(&format!("{head}CALL-id :\r\n  folded\r\n\r\n")).as_deref(),
            Some("folded")
        );
        assert_eq!(of("SIP/2.0 200 OK\ncall-id: lf\n\n").as_deref(), Some("lf"));
        assert_eq!(
            of(&format!("{head}Call-IDs: no\r\n\r\nCall-ID: body")),
            None
        );
        assert_eq!(of(&format!("{head}Call-ID:\r\n\r\n")), None);
        assert_eq!(of(&format!("{head}Call-ID: cut")).as_deref(), Some("cut"));
        assert_eq!(of("\u{0}\u{1}garbage"), None);
    }

    /// A stream frames a message by its Content-Length as the parser reads it: a folded
    /// value included (RFC 3261 7.3.1), and the message it frames parses.
    #[test]
    fn stream_framing_reads_a_folded_content_length() {
        let head = "INVITE sip:a@b SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK-1\r\nFrom: <sip:c@d>;tag=1\r\nTo: <sip:a@b>\r\nCall-ID: f\r\nCSeq: 1 INVITE\r\n";
        for cl in [
            "Content-Length:\r\n 4",
            "Content-Length: \r\n\t 4 \r\n ",
            "l:\r\n  4",
            "Content-Length: 4",
        ] {
            let m = format!("{head}{cl}\r\n\r\nv=0\nOPTIONS");
            let Ok(Frame::Message { skip: 0, len }) = frame_stream(m.as_bytes()) else {
                panic!("{cl:?}: {:?}", frame_stream(m.as_bytes()));
            };
            assert!(m[..len].ends_with("v=0\n"), "{cl:?}");
            let parsed =
                crate::sip::Message::parse(bytes::Bytes::copy_from_slice(&m.as_bytes()[..len]));
            assert!(parsed.is_ok_and(|p| p.body() == b"v=0\n"), "{cl:?}");
        }
        for cl in ["Content-Length: 1 2", "Content-Length:\r\n x"] {
            let m = format!("{head}{cl}\r\n\r\nv=0\n");
            assert!(frame_stream(m.as_bytes()).is_err(), "{cl:?}");
        }
        // Two lengths (QA 30): refused as soon as the header section is in, whether
        // the body of the longer one has come or not, and whichever comes first.
        for cls in [
            "Content-Length: 0\r\nl: 5",
            "Content-Length: 5\r\nContent-Length: 0",
            "l: 4\r\nContent-Length: 4",
        ] {
            let m = format!("{head}{cls}\r\n\r\n");
            let e = frame_stream(m.as_bytes()).unwrap_err();
            assert_eq!(e.kind, ErrorKind::BadContentLength, "{cls:?}");
            assert!(
                frame_stream(format!("{m}v=0\nx").as_bytes()).is_err(),
                "{cls:?}"
            );
        }
    }

    /// The vector path of `field_name` ends the name where the byte-by-byte token scan
    /// does and recognises the same name, for every known name and for each of them
    /// with any one byte replaced (CR, which folds onto '-', among them), at any case.
    #[test]
    fn request_line_fast_path_agrees_with_the_general_one() {
        let uris = [
            "sip:+861012345678@core.example.net;user=phone",
            "sips:a@b",
            "tel:+86-10-1234-5678;phone-context=+86",
            "sip:a@b?Subject=x",
            "sip:a@[2001:db8::1]:5060",
            "sip:%61lice@atlanta.com;transport=TCP",
            "urn:service:sos",
            "sip:",
            "sip:a@b:99999",
            "sip:a@b:5060:5060",
            "<sip:a@b>",
            "sip:a b@c",
            "sip:a\u{7f}@b",
            "sip:a\"@b",
            "sip:a@b\u{e4}",
            "x",
        ];
        let mut n = 0;
        for m in ["INVITE", "ACK", "bye", "X-CUSTOM"] {
            for u in uris {
                for v in ["SIP/2.0", "sip/2.0", "SIP/2.1", "SIP/2.0 "] {
                    let line = format!("{m} {u} {v}");
                    let b = line.as_bytes();
                    let fast = parse_start_line(b, 0, b);
                    let general = request_line_general(b, 0, b);
                    assert_eq!(fast, general, "{line:?}");
                    n += 1;
                }
            }
        }
        assert_eq!(n, 256);
    }

    /// A known method in another case is refused, by both request-line paths (QA 54: a
    /// core that reads methods without case set up an "invite" no rule had judged);
    /// extension methods, whatever their case, are methods of their own.
    #[test]
    fn a_known_method_in_another_case_is_refused() {
        let msg = |m: &str, uri: &str| {
            Bytes::from(format!(
                "{m} {uri} SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK-1\r\nFrom: <sip:c@d>;tag=1\r\nTo: <sip:a@b>\r\nCall-ID: f\r\nCSeq: 1 {m}\r\nContent-Length: 0\r\n\r\n"
            ))
        };
        // The usual request line, and the empty Request-URI read for interop.
        for uri in ["sip:+861012345678@core", ""] {
            for m in [
                "invite", "Invite", "iNVITE", "bye", "Ack", "cancel", "Options", "register",
            ] {
                let e = Message::parse(msg(m, uri)).unwrap_err();
                assert_eq!((e.kind, e.offset), (ErrorKind::BadMethod, 0), "{m} {uri}");
                assert!(e.answerable());
            }
        }
        for (m, method) in [
            ("INVITE", Method::Invite),
            ("BYE", Method::Bye),
            ("NEWMETHOD", Method::Other),
            ("invitex", Method::Other),
            ("RE%47IST%45R", Method::Other),
            ("x-invite", Method::Other),
        ] {
            let parsed = Message::parse(msg(m, "sip:a@b")).unwrap();
            assert_eq!(parsed.method(), Some(method), "{m}");
        }
    }

    /// A CR that ends no line in a request's header section (QA 27): some readers end
    /// the line there and read a field this parse would not. Refused with its offset;
    /// responses, relayed as they are, and CRs inside CRLF (folds included) are not.
    #[test]
    fn a_bare_cr_in_a_request_head_is_refused() {
        let head = "INVITE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK-1\r\nFrom: <sip:c@d>;tag=1\r\nTo: <sip:a@b>\r\nCall-ID: f\r\nCSeq: 1 INVITE\r\n";
        let msg = |extra: &str| Bytes::from(format!("{head}{extra}Content-Length: 0\r\n\r\n"));
        let e = Message::parse(msg("X-Note: a\rP-Asserted-Identity: <sip:110@x>\r\n")).unwrap_err();
        assert_eq!(e.kind, ErrorKind::BadHeaderLine);
        assert_eq!(e.offset as usize, head.len() + "X-Note: a".len());
        assert!(Message::parse(msg("X-Note: a\r\n b\r\n")).is_ok());
        // A NUL in any field alike (QA 44), an unknown one included; as a quoted-pair
        // it is text (RFC 4475 3.1.1.3).
        let e = Message::parse(msg("X-Note: a\0b\r\n")).unwrap_err();
        assert_eq!(e.kind, ErrorKind::BadHeaderLine);
        assert_eq!(e.offset as usize, head.len() + "X-Note: a".len());
        assert!(Message::parse(msg("X-Note: \"a\\\0b\"\r\n")).is_ok());
        assert!(Message::parse(msg("X-Note: a\n")).is_ok());
        // A CR in the body is the body's.
        let body = Bytes::from(format!("{head}Content-Length: 3\r\n\r\na\rb"));
        assert!(Message::parse(body).is_ok());
    }

    #[test]
    fn keepalives_and_messages_told_apart() {
        let mut stun = vec![0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42];
        stun.extend_from_slice(&[7; 12]);
        for k in [
            &b"\r\n"[..],
            b"\r\n\r\n",
            b"\n",
            b"\0\0\0\0",
            b" \r\n",
            b"",
            &stun,
        ] {
            assert!(keepalive(k), "{k:?}");
        }
        let mut not_stun = stun.clone();
        not_stun[5] = 0x13;
        for m in [
            &b"OPTIONS sip:a@b SIP/2.0\r\n\r\n"[..],
            b"SIP/2.0 200 OK\r\n\r\n",
            b"\r\nINVITE sip:a@b SIP/2.0\r\n\r\n",
            b"jaK\n",
            b"\x01\x02garbage",
            &not_stun,
            &stun[..19],
            &[b'\r'; 65],
        ] {
            assert!(!keepalive(m), "{m:?}");
        }
    }

    #[test]
    fn field_name_agrees_with_the_token_scan() {
        let names = [
            "Via",
            "v",
            "From",
            "To",
            "Call-ID",
            "CSeq",
            "Max-Forwards",
            "Contact",
            "P-Asserted-Identity",
            "P-Preferred-Identity",
            "Remote-Party-ID",
            "Content-Length",
            "Record-Route",
            "Allow",
            "X-Long-Unknown-Name-Here",
            "i",
        ];
        let subs = [
            b'\r', b'\n', b' ', b'\t', b':', b'@', b'(', 0x80, 0xe4, 0x7f, 0, b'-', b'M', b'm',
            b'.',
        ];
        let mut checked = 0;
        for n in names {
            for upper in [false, true] {
                let base: Vec<u8> = if upper {
                    n.to_ascii_uppercase().into_bytes()
                } else {
                    n.as_bytes().to_vec()
                };
                for at in 0..=base.len() {
                    for &s in subs.iter().chain([b'x'].iter()) {
                        let mut name = base.clone();
                        if at < name.len() {
                            name[at] = s;
                        }
                        for tail in [&b": x\r\nnext: y\r\n\r\n"[..], b" : x\r\n", b":"] {
                            let mut line = name.clone();
                            line.extend_from_slice(tail);
                            let end = lex::token_end(&line, 0);
                            let want = (end, HeaderName::parse(&line[..end]));
                            assert_eq!(
                                field_name(&line, 0),
                                want,
                                "{:?}",
                                String::from_utf8_lossy(&line)
                            );
                            checked += 1;
                        }
                    }
                }
            }
        }
        assert!(checked > 10_000);
    }
}
