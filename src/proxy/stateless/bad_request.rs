//! The answer to a request the parser refused, from what can still be read of it.

use super::*;

/// The code of the answer to a request the parser refused: 513 for a message over the
/// size bound (RFC 3261 21.5.14), else 400.
pub fn bad_request_code(e: &crate::sip::ParseError) -> u16 {
    if e.kind == crate::sip::ErrorKind::TooLarge {
        513
    } else {
        400
    }
}

/// The answer (400, or 513 for a message over the size bound: RFC 3261 21.5.14) to a
/// request the parser refused, when enough of it is readable to answer (start line,
/// Via, Call-ID...): built from a lenient re-read of the header lines.
pub fn bad_request_for(
    data: &[u8],
    source: SocketAddr,
    conn: Option<u64>,
    e: &crate::sip::ParseError,
    server: Option<&str>,
    out: &mut Vec<u8>,
) -> Option<Dest> {
    out.clear();
    let text = data.get(..data.len().min(crate::sip::MAX_MESSAGE))?;
    let head_end = memchr::memmem::find(text, b"\r\n\r\n").unwrap_or(text.len());
    let mut lines = text[..head_end]
        .split(|&c| c == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let first = lines.next()?;
    // Only requests are answered, and never an ACK, in any case (QA 55: a broken `ack`
    // was answered 400).
    if first.starts_with(b"SIP/")
        || lex::starts_with_ci(first, b"ACK ")
        || !first.first().is_some_and(|&c| lex::is_token(c))
    {
        return None;
    }
    let mut vias = vec![];
    // (name, whole line, value) of From, To, Call-ID and CSeq.
    let mut keep = vec![];
    // The first Via value that parses, read once: where the answer goes, and the top
    // Via it fills in.
    let mut top = None;
    // Whole field lines: a line that starts with white space goes on with the field
    // before it (RFC 3261 7.3.1), unfolded to one space (QA 210: a folded Via, From, To
    // or CSeq was answered with its first line alone, a Via without its host and
    // branch, a To without the tag it had).
    // Every control character made a space as the fields are read ([`push_printable`]):
    // the answer copies them as read, and the top Via is written back from its value,
    // which a NUL or a bare CR could break.
    let mut fields: Vec<Vec<u8>> = vec![];
    for l in lines {
        match fields.last_mut() {
            Some(field) if matches!(l.first(), Some(b' ' | b'\t')) => {
                field.push(b' ');
                push_printable(field, lex::trim(l));
            }
            _ => {
                let mut field = Vec::with_capacity(l.len());
                push_printable(&mut field, l);
                fields.push(field);
            }
        }
    }
    for l in &fields {
        let l = l.as_slice();
        let Some(colon) = l.iter().position(|&c| c == b':') else {
            continue;
        };
        let n = lex::trim(&l[..colon]);
        if !n.iter().all(|&c| lex::is_token(c)) {
            continue;
        }
        let v = lex::trim(&l[colon + 1..]);
        match HeaderName::parse(n) {
            HeaderName::Via => {
                if top.is_none() {
                    top = via::parse_first(v, Span::new(0, v.len())).map(|x| (vias.len(), v, x));
                }
                vias.push(l);
            }
            name @ (HeaderName::From | HeaderName::To | HeaderName::CallId | HeaderName::CSeq) => {
                keep.push((name, l, v))
            }
            _ => {}
        }
    }
    // A request whose every Via is unreadable (an IPv6 address without its brackets,
    // QA 139) is answered too, where it came from, its Vias as they came: silence left
    // its sender retransmitting to its timeout.
    if top.is_none() && vias.is_empty() {
        return None;
    }
    // As [`dest_for_response`]: the source port with rport, or from behind a NAT.
    let (rport, port) = match &top {
        Some((_, v, x)) => (x.rport.is_some() || natted_via(v, x, source), x.port),
        None => (true, None),
    };
    let code = bad_request_code(e);
    let why = if code == 513 {
        format!("Message larger than {} bytes", crate::sip::MAX_MESSAGE)
    } else {
        e.to_string()
    };
    out.extend_from_slice(b"SIP/2.0 ");
    push_num(out, code as u64);
    out.push(b' ');
    out.extend_from_slice(response::phrase(code).as_bytes());
    out.extend_from_slice(b"\r\n");
    // As every answer of ours (RFC 3261 8.2.6.2, RFC 3581 4): the top Via told where the
    // request came from, a To-tag the same for its retransmissions, Server.
    for (i, l) in vias.iter().enumerate() {
        if i == 0
            && let Some((0, top_value, top_via)) = &top
        {
            let whole = Span::new(0, top_value.len());
            response::push_top_via(out, top_value, whole, top_via, source);
        } else {
            out.extend_from_slice(l);
            out.extend_from_slice(b"\r\n");
        }
    }
    let value = |name: HeaderName| {
        keep.iter()
            .find_map(|&(n, _, v)| (n == name).then_some(v))
            .unwrap_or_default()
    };
    let tag = hex16(lex::tag_hash(&[
        value(HeaderName::CallId),
        value(HeaderName::From),
        value(HeaderName::CSeq),
    ]));
    for &(name, l, v) in &keep {
        out.extend_from_slice(l);
        if name == HeaderName::To && !has_tag(v) {
            out.extend_from_slice(b";tag=");
            out.extend_from_slice(&tag);
        }
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"Reason: SIP;cause=");
    push_num(out, code as u64);
    out.extend_from_slice(b";text=\"");
    out.extend(
        why.bytes()
            .filter(|&c| c != b'"' && c != b'\\' && c >= b' '),
    );
    out.extend_from_slice(b"\"\r\n");
    if let Some(s) = server {
        out.extend_from_slice(b"Server: ");
        out.extend_from_slice(s.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"Content-Length: 0\r\n\r\n");
    Some(match conn {
        Some(c) => Dest::Tcp(c),
        None => Dest::Udp(SocketAddr::new(
            source.ip(),
            if rport {
                source.port()
            } else {
                port.unwrap_or(5060)
            },
        )),
    })
}

/// Whether a To value written by a broken request has a tag parameter, white space
/// around its `;` and `=` allowed as RFC 3261's SEMI and EQUAL allow it (QA 212: `;tag =x`,
/// `; tag=x`, what a fold there unfolds to, got a second tag).
fn has_tag(v: &[u8]) -> bool {
    let blank = |c: &u8| *c == b' ' || *c == b'\t';
    v.iter().enumerate().any(|(i, &c)| {
        if c != b';' {
            return false;
        }
        let rest = &v[i + 1..];
        let rest = &rest[rest.iter().take_while(|c| blank(c)).count()..];
        if !rest
            .get(..3)
            .is_some_and(|w| w.eq_ignore_ascii_case(b"tag"))
        {
            return false;
        }
        let rest = &rest[3..];
        rest.iter().find(|c| !blank(c)) == Some(&b'=')
    })
}

/// A field line of a broken request, copied with every control character (a NUL, a
/// bare CR: often what broke it) made a space, as it is read: the answer copies the
/// fields so read, so the caller still finds its From, To, Call-ID and CSeq and gets
/// back no byte a reader might end a line or a string at (QA 54).
fn push_printable(out: &mut Vec<u8>, line: &[u8]) {
    out.extend(line.iter().map(|&c| {
        if (c < b' ' && c != b'\t') || c == 0x7f {
            b' '
        } else {
            c
        }
    }));
}
