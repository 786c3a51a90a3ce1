//! Responses sipfence sends itself (rejections, 400, 483, 503, 200 to OPTIONS):
//! RFC 3261 8.2.6 — Via, From, Call-ID and CSeq copied, a To-tag added when missing.

use super::{HeaderName, Message, lex};

/// A To-tag that is the same for every retransmission of a request, so that the
/// answers to them are identical (RFC 3261 17.2.1) without keeping any state. Made of
/// what the ACK to a non-2xx answer repeats (Call-ID, From tag, CSeq number; RFC 3261
/// 17.1.1.3), not of the branch: the ACK is told as ours by this tag alone, and some
/// clients (sipp's scenarios among them) give that ACK a branch of its own. Another
/// transaction of the call (the INVITE sent again with credentials, CSeq + 1) gets
/// another tag.
pub fn stable_tag(msg: &Message) -> [u8; 16] {
    let cseq = msg.cseq().map_or(0, |(n, _)| n).to_le_bytes();
    let h = lex::tag_hash(&[msg.call_id(), msg.from_tag().unwrap_or(b""), &cseq]);
    hex16(h)
}

pub fn hex16(h: u64) -> [u8; 16] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = [0u8; 16];
    for (i, o) in out.iter_mut().enumerate() {
        *o = HEX[((h >> (60 - 4 * i)) & 0xf) as usize];
    }
    out
}

/// Extra fields of a response beyond the mandatory copies.
#[derive(Debug, Default, Clone, Copy)]
pub struct Extra<'a> {
    /// RFC 3326 Reason: written as `SIP;cause=<code>;text="<text>"`.
    pub reason_text: Option<&'a str>,
    pub retry_after: Option<u32>,
    pub server: Option<&'a str>,
    /// Further whole header lines, each ending in CRLF (Allow, Unsupported...).
    pub fields: &'a [u8],
    /// Where the request came from: the top Via of the answer then says so (RFC 3581:
    /// `rport` gets the source port, `received` the source address, so that a caller
    /// behind NAT learns both from our own answers too).
    pub source: Option<std::net::SocketAddr>,
}

/// Writes a complete response to `req` into `out`.
pub fn write_response(
    req: &Message,
    code: u16,
    phrase: &str,
    extra: &Extra<'_>,
    out: &mut Vec<u8>,
) {
    let b = req.buf();
    out.extend_from_slice(b"SIP/2.0 ");
    push_num(out, code as u64);
    out.push(b' ');
    out.extend_from_slice(phrase.as_bytes());
    out.extend_from_slice(b"\r\n");
    // Every Via, in order (the response goes back along them); one each of the
    // single-value fields, the first, even when a malformed request repeats them (the
    // 400 for it must not repeat them too).
    let first = |h: &super::Header| req.first(h.name).is_some_and(|f| std::ptr::eq(f, h));
    // A request with nearly as many Via fields as a message may hold fields would get an
    // answer with more (ours added) than any parser with the same bound reads, ours
    // included: its Vias then go in one row, comma-separated (RFC 3261 7.3.1), the
    // values and their order unchanged (8.2.6.2).
    let join = req.count(HeaderName::Via) + 12 > super::parse::MAX_HEADERS;
    for h in req.headers() {
        match h.name {
            HeaderName::Via if first(h) => {
                match (extra.source, req.top_via()) {
                    (Some(src), Some(v)) => push_top_via(out, b, h.value(), &v, src),
                    _ => push_field(out, "Via", h.value().of(b)),
                }
                if join {
                    out.truncate(out.len() - 2);
                    for v in req.all(HeaderName::Via).skip(1) {
                        out.extend_from_slice(b", ");
                        out.extend_from_slice(v.value().of(b));
                    }
                    out.extend_from_slice(b"\r\n");
                }
            }
            HeaderName::Via if !join => push_field(out, "Via", h.value().of(b)),
            HeaderName::Via => {}
            HeaderName::From | HeaderName::CallId | HeaderName::CSeq if first(h) => {
                push_field(out, h.name.as_str(), h.value().of(b));
            }
            HeaderName::To if first(h) => {
                push_field(out, "To", h.value().of(b));
                if req.to_tag().is_none() && code > 100 {
                    // Strip the CRLF just written, append the tag.
                    out.truncate(out.len() - 2);
                    out.extend_from_slice(b";tag=");
                    out.extend_from_slice(&stable_tag(req));
                    out.extend_from_slice(b"\r\n");
                }
            }
            _ => {}
        }
    }
    if let Some(t) = extra.reason_text {
        out.extend_from_slice(b"Reason: SIP;cause=");
        push_num(out, code as u64);
        out.extend_from_slice(b";text=\"");
        // A quoted-string cannot hold a bare '"' or '\\': drop them rather than escape.
        out.extend(t.bytes().filter(|&c| c != b'"' && c != b'\\' && c >= b' '));
        out.extend_from_slice(b"\"\r\n");
    }
    if let Some(s) = extra.retry_after {
        out.extend_from_slice(b"Retry-After: ");
        push_num(out, s as u64);
        out.extend_from_slice(b"\r\n");
    }
    if let Some(s) = extra.server {
        push_field(out, "Server", s.as_bytes());
    }
    out.extend_from_slice(extra.fields);
    out.extend_from_slice(b"Content-Length: 0\r\n\r\n");
}

/// The first Via field with its top value told where the request came from: `rport`
/// given the source port when it has no value, `received` the source address when the
/// value has none and either `rport` asks for it (RFC 3581 4: even when it is the
/// sent-by address) or the sent-by address is another (RFC 3261 18.2.2). A `received`
/// or an `rport` value the sender wrote itself is replaced by the source's, as the
/// forwarded request has it (QA 97: a NAT'd peer's keep-alive answer told it a port and
/// address it never had).
pub fn push_top_via(
    out: &mut Vec<u8>,
    b: &[u8],
    field: super::Span,
    v: &super::via::Via,
    src: std::net::SocketAddr,
) {
    /// What goes where in the value: the source port or address, or a `received` added.
    #[derive(Clone, Copy)]
    enum Put {
        Port,
        Ip,
        Received,
    }
    let (start, end) = (field.start as usize, field.end as usize);
    // An IPv4 caller on a dual-stack socket shows as ::ffff:a.b.c.d; `received` takes
    // the IPv4 address (RFC 3261 25.1).
    let ip = src.ip().to_canonical();
    // At most three edits, each a span replaced (empty: an insertion), in order.
    let mut edits = [(0usize, 0usize, Put::Port); 3];
    let mut n = 0;
    match (v.rport, v.rport_value, v.rport_end) {
        (Some(_), None, Some(e)) => {
            let e = (e as usize).clamp(start, end);
            edits[n] = (e, e, Put::Port);
            n += 1;
        }
        (Some(port), Some(value), _) if port != Some(src.port()) => {
            let (vs, ve) = (value.start as usize, value.end as usize);
            if (start..=end).contains(&vs) && (vs..=end).contains(&ve) {
                edits[n] = (vs, ve, Put::Port);
                n += 1;
            }
        }
        _ => {}
    }
    if let Some(r) = v.received
        && super::via::host_ip(r.of(b)) != Some(ip)
    {
        let (rs, re) = (r.start as usize, r.end as usize);
        if (start..=end).contains(&rs) && (rs..=end).contains(&re) {
            edits[n] = (rs, re, Put::Ip);
            n += 1;
        }
    }
    if v.needs_received(b, ip) {
        let w = (v.whole.end as usize).clamp(start, end);
        edits[n] = (w, w, Put::Received);
        n += 1;
    }
    let edits = &mut edits[..n];
    edits.sort_by_key(|&(s, e, _)| (s, e));
    out.extend_from_slice(b"Via: ");
    let mut at = start;
    for &(s, e, put) in edits.iter() {
        out.extend_from_slice(&b[at..s.max(at)]);
        match put {
            // A bare `rport` gets its `=`; a value is replaced in place.
            Put::Port => {
                if s == e {
                    out.push(b'=');
                }
                push_num(out, u64::from(src.port()));
            }
            Put::Ip => push_ip(out, ip),
            Put::Received => {
                out.extend_from_slice(b";received=");
                push_ip(out, ip);
            }
        }
        at = e.max(at);
    }
    out.extend_from_slice(&b[at..end]);
    out.extend_from_slice(b"\r\n");
}

fn push_field(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// An IP address as text; IPv4 without going through `core::fmt`, which costs more
/// than the rest of a forwarded message's Via (measured in `perf` under load).
pub fn push_ip(out: &mut Vec<u8>, ip: std::net::IpAddr) {
    match ip {
        std::net::IpAddr::V4(v4) => {
            for (k, o) in v4.octets().into_iter().enumerate() {
                if k > 0 {
                    out.push(b'.');
                }
                push_num(out, o as u64);
            }
        }
        std::net::IpAddr::V6(v6) => {
            use std::io::Write;
            let _ = write!(out, "{v6}");
        }
    }
}

/// `host:port` as a Via sent-by or a URI host: IPv6 in brackets (through `Display`,
/// which also writes a scope id).
pub fn push_sent_by(out: &mut Vec<u8>, a: std::net::SocketAddr) {
    match a {
        std::net::SocketAddr::V4(_) => {
            push_ip(out, a.ip());
            out.push(b':');
            push_num(out, a.port() as u64);
        }
        std::net::SocketAddr::V6(v6) => {
            use std::io::Write;
            let _ = write!(out, "{v6}");
        }
    }
}

pub fn push_num(out: &mut Vec<u8>, n: u64) {
    // itoa: two digits per step from a table; a message carries a dozen numbers (ports,
    // Max-Forwards, Content-Length, octets of addresses) and a digit per division showed.
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

/// Standard reason phrases for the codes sipfence sends.
pub fn phrase(code: u16) -> &'static str {
    // Every final code a rule may be given (400-699) says its own name: the peer's NOC
    // reads the status line first (QA 70: `484 Rejected`).
    match code {
        100 => "Trying",
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        402 => "Payment Required",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        410 => "Gone",
        412 => "Conditional Request Failed",
        413 => "Request Entity Too Large",
        414 => "Request-URI Too Long",
        415 => "Unsupported Media Type",
        416 => "Unsupported URI Scheme",
        417 => "Unknown Resource-Priority",
        420 => "Bad Extension",
        421 => "Extension Required",
        422 => "Session Interval Too Small",
        423 => "Interval Too Brief",
        424 => "Bad Location Information",
        428 => "Use Identity Header",
        429 => "Provide Referrer Identity",
        430 => "Flow Failed",
        433 => "Anonymity Disallowed",
        436 => "Bad Identity-Info",
        437 => "Unsupported Certificate",
        438 => "Invalid Identity Header",
        439 => "First Hop Lacks Outbound Support",
        440 => "Max-Breadth Exceeded",
        469 => "Bad Info Package",
        470 => "Consent Needed",
        480 => "Temporarily Unavailable",
        481 => "Call/Transaction Does Not Exist",
        482 => "Loop Detected",
        483 => "Too Many Hops",
        484 => "Address Incomplete",
        485 => "Ambiguous",
        486 => "Busy Here",
        487 => "Request Terminated",
        488 => "Not Acceptable Here",
        489 => "Bad Event",
        491 => "Request Pending",
        493 => "Undecipherable",
        494 => "Security Agreement Required",
        500 => "Server Internal Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Server Time-out",
        505 => "Version Not Supported",
        513 => "Message Too Large",
        555 => "Push Notification Service Not Supported",
        580 => "Precondition Failure",
        600 => "Busy Everywhere",
        603 => "Decline",
        604 => "Does Not Exist Anywhere",
        606 => "Not Acceptable",
        607 => "Unwanted",
        608 => "Rejected",
        _ => "Rejected",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[test]
    fn addresses_as_text() {
        let mut out = Vec::new();
        push_sent_by(&mut out, "10.0.0.1:5060".parse().unwrap());
        out.push(b' ');
        push_sent_by(&mut out, "[2001:db8::1]:5062".parse().unwrap());
        out.push(b' ');
        push_ip(&mut out, "255.0.10.200".parse().unwrap());
        assert_eq!(out, b"10.0.0.1:5060 [2001:db8::1]:5062 255.0.10.200");
    }

    /// A 400 for a request that repeats single-value fields carries each once (the
    /// first), so that it is not malformed in turn; every Via is kept, in order.
    #[test]
    fn repeated_single_value_fields_are_copied_once() {
        let req = Message::parse(Bytes::from_static(
            b"INVITE sip:a@10.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.2;branch=z9hG4bK1\r\nt: <sip:a@x>\r\nFrom: <sip:b@y>;tag=1\r\nTo: <sip:other@x>\r\nv: SIP/2.0/UDP 10.0.0.3;branch=z9hG4bK0\r\nFrom: <sip:c@y>;tag=2\r\nCall-ID: c1\r\ni: c2\r\nCSeq: 1 INVITE\r\nCSeq: 2 INVITE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
        ))
        .unwrap();
        assert_eq!(req.check_request(), Err("Multiple To"));
        let mut out = vec![];
        write_response(&req, 400, phrase(400), &Extra::default(), &mut out);
        let r = Message::parse(Bytes::from(out)).unwrap();
        assert_eq!(r.check_request(), Ok(()), "one of each");
        for (name, want) in [
            (HeaderName::From, &b"<sip:b@y>;tag=1"[..]),
            (HeaderName::CallId, b"c1"),
            (HeaderName::CSeq, b"1 INVITE"),
        ] {
            assert_eq!(r.count(name), 1, "{name:?}");
            assert_eq!(r.value(name), Some(want));
        }
        assert!(
            r.value(HeaderName::To)
                .unwrap()
                .starts_with(b"<sip:a@x>;tag=")
        );
        let vias: Vec<_> = r
            .all(HeaderName::Via)
            .map(|h| r.slice(h.value()).to_vec())
            .collect();
        assert_eq!(
            vias,
            [
                &b"SIP/2.0/UDP 10.0.0.2;branch=z9hG4bK1"[..],
                b"SIP/2.0/UDP 10.0.0.3;branch=z9hG4bK0"
            ]
        );
    }

    #[test]
    fn configured_codes_say_their_names() {
        for (code, name) in [
            (401, "Unauthorized"),
            (430, "Flow Failed"),
            (484, "Address Incomplete"),
            (555, "Push Notification Service Not Supported"),
            (608, "Rejected"),
            (699, "Rejected"),
        ] {
            assert_eq!(phrase(code), name);
        }
    }

    #[test]
    fn reject_copies_and_tags() {
        let req = Message::parse(Bytes::from_static(
            b"INVITE sip:4008001234@10.0.0.1 SIP/2.0\r\nv: SIP/2.0/UDP 10.0.0.2:5070;branch=z9hG4bK1\r\nVia: SIP/2.0/UDP 10.0.0.3;branch=z9hG4bK0\r\nf: <sip:+8613812345678@10.0.0.2>;tag=abc\r\nt: <sip:4008001234@10.0.0.1>\r\ni: call-1\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\nl: 0\r\n\r\n",
        ))
        .unwrap();
        let mut out = vec![];
        write_response(
            &req,
            403,
            phrase(403),
            &Extra {
                reason_text: Some("blacklist \"x\""),
                ..Extra::default()
            },
            &mut out,
        );
        let resp = Message::parse(Bytes::from(out.clone())).unwrap();
        assert_eq!(resp.status(), Some(403));
        assert_eq!(resp.count(HeaderName::Via), 2);
        assert_eq!(resp.call_id(), b"call-1");
        assert_eq!(resp.from_tag(), Some(&b"abc"[..]));
        let tag = resp.to_tag().unwrap().to_vec();
        assert_eq!(tag.len(), 16);
        assert_eq!(
            resp.value(HeaderName::Reason),
            Some(&b"SIP;cause=403;text=\"blacklist x\""[..])
        );
        // Same request, same answer.
        let mut again = vec![];
        write_response(
            &req,
            403,
            phrase(403),
            &Extra {
                reason_text: Some("blacklist \"x\""),
                ..Extra::default()
            },
            &mut again,
        );
        assert_eq!(out, again);
    }

    /// RFC 3581 4: the answer's top Via says where the request came from: `rport` gets
    /// the source port, `received` the address (even when it is sent-by's, with
    /// `rport`); without `rport`, `received` only when sent-by differs (RFC 3261
    /// 18.2.2). Other values and fields stay as written.
    /// A request with 250 Via fields (it parses: 254 fields at most) gets an answer that
    /// parses too: its Vias in one row, every value, in order.
    #[test]
    fn many_vias_are_answered_in_one_row() {
        let mut t = String::from("OPTIONS sip:x@h SIP/2.0\r\n");
        for i in 0..250 {
            t.push_str(&format!("Via: SIP/2.0/UDP h{i};branch=z9hG4bK{i}\r\n"));
        }
        t.push_str(
            "From: <sip:a@h>;tag=1\r\nTo: <sip:b@h>\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\n\r\n",
        );
        let req = Message::parse(Bytes::from(t)).unwrap();
        let mut out = Vec::new();
        let extra = Extra {
            reason_text: Some("x"),
            retry_after: Some(5),
            server: Some("s"),
            ..Extra::default()
        };
        write_response(&req, 503, "Service Unavailable", &extra, &mut out);
        let r = Message::parse(Bytes::from(out)).expect("our answer parses");
        let vias: Vec<&[u8]> = r.all(HeaderName::Via).map(|h| r.slice(h.value())).collect();
        assert_eq!(vias.len(), 1);
        let values: Vec<String> = String::from_utf8_lossy(vias[0])
            .split(", ")
            .map(str::to_string)
            .collect();
        let want: Vec<String> = (0..250)
            .map(|i| format!("SIP/2.0/UDP h{i};branch=z9hG4bK{i}"))
            .collect();
        assert_eq!(values, want);
    }

    #[test]
    fn our_answers_fill_rport_and_received() {
        let answer = |via: &str, src: &str| {
            let req = Message::parse(Bytes::from(format!(
                "OPTIONS sip:10.0.0.1 SIP/2.0\r\nVia: {via}\r\nVia: SIP/2.0/UDP 10.0.0.3;branch=z9hG4bK0\r\nFrom: <sip:a@10.0.0.2>;tag=abc\r\nTo: <sip:10.0.0.1>\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
            )))
            .unwrap();
            let mut out = vec![];
            let extra = Extra {
                source: Some(src.parse().unwrap()),
                ..Extra::default()
            };
            write_response(&req, 200, "OK", &extra, &mut out);
            let text = String::from_utf8(out).unwrap();
            let vias: Vec<String> = text
                .split("\r\n")
                .filter(|l| l.starts_with("Via: "))
                .map(|l| l[5..].to_string())
                .collect();
            assert_eq!(vias[1], "SIP/2.0/UDP 10.0.0.3;branch=z9hG4bK0");
            vias[0].clone()
        };
        assert_eq!(
            answer(
                "SIP/2.0/UDP 10.0.0.2:5070;rport;branch=z9hG4bK1",
                "10.0.0.2:5070"
            ),
            "SIP/2.0/UDP 10.0.0.2:5070;rport=5070;branch=z9hG4bK1;received=10.0.0.2"
        );
        assert_eq!(
            answer(
                "SIP/2.0/UDP 192.168.1.9:5060;branch=z9hG4bK1;rport",
                "203.0.113.5:40123"
            ),
            "SIP/2.0/UDP 192.168.1.9:5060;branch=z9hG4bK1;rport=40123;received=203.0.113.5"
        );
        assert_eq!(
            answer("SIP/2.0/UDP 10.0.0.2:5070;branch=z9hG4bK1", "10.0.0.2:5070"),
            "SIP/2.0/UDP 10.0.0.2:5070;branch=z9hG4bK1"
        );
        // An IPv4 caller seen through a dual-stack socket: IPv4 in `received`, and none
        // needed when it is the sent-by address.
        assert_eq!(
            answer(
                "SIP/2.0/UDP 10.0.0.2:5070;rport;branch=z9hG4bK1",
                "[::ffff:10.0.0.2]:5070"
            ),
            "SIP/2.0/UDP 10.0.0.2:5070;rport=5070;branch=z9hG4bK1;received=10.0.0.2"
        );
        assert_eq!(
            answer(
                "SIP/2.0/UDP 10.0.0.2:5070;branch=z9hG4bK1",
                "[::ffff:10.0.0.2]:5070"
            ),
            "SIP/2.0/UDP 10.0.0.2:5070;branch=z9hG4bK1"
        );
        assert_eq!(
            answer(
                "SIP/2.0/UDP pbx.example:5070;branch=z9hG4bK1",
                "10.0.0.2:5070"
            ),
            "SIP/2.0/UDP pbx.example:5070;branch=z9hG4bK1;received=10.0.0.2"
        );
        // A field of two values: the first is told, the second stays.
        assert_eq!(
            answer(
                "SIP/2.0/UDP 10.0.0.2:5070;rport;branch=z9hG4bK1, SIP/2.0/UDP 10.0.0.4;branch=z9hG4bK2",
                "10.0.0.2:5070"
            ),
            "SIP/2.0/UDP 10.0.0.2:5070;rport=5070;branch=z9hG4bK1;received=10.0.0.2, SIP/2.0/UDP 10.0.0.4;branch=z9hG4bK2"
        );
        // Told by the sender itself: the source's address and port instead (QA 97), as
        // the forwarded request has them; what is already right stays.
        assert_eq!(
            answer(
                "SIP/2.0/UDP 10.0.0.2:5070;received=10.0.0.9;rport=1",
                "10.0.0.2:5070"
            ),
            "SIP/2.0/UDP 10.0.0.2:5070;received=10.0.0.2;rport=5070"
        );
        assert_eq!(
            answer(
                "SIP/2.0/UDP 192.168.1.9:5060;branch=z9hG4bK1;RPORT = 5060;x=1",
                "203.0.113.5:40123"
            ),
            "SIP/2.0/UDP 192.168.1.9:5060;branch=z9hG4bK1;RPORT = 40123;x=1;received=203.0.113.5"
        );
        assert_eq!(
            answer(
                "SIP/2.0/UDP 10.0.0.2:5070;rport=5070;received=10.0.0.2;branch=z9hG4bK1",
                "10.0.0.2:5070"
            ),
            "SIP/2.0/UDP 10.0.0.2:5070;rport=5070;received=10.0.0.2;branch=z9hG4bK1"
        );
        // A value that is no port (its request is refused `Bad Via`): the source port.
        assert_eq!(
            answer(
                "SIP/2.0/UDP 10.0.0.2:5070;branch=z9hG4bK1;rport=abc",
                "10.0.0.2:5070"
            ),
            "SIP/2.0/UDP 10.0.0.2:5070;branch=z9hG4bK1;rport=5070;received=10.0.0.2"
        );
    }
}
