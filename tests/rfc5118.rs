//! RFC 5118 (SIP torture test messages for IPv6): the IPv6 references an interconnect
//! peer may send are read as the RFC says, and the one invalid message is refused and
//! answered 400. The messages are in testdata/sip/rfc5118 (see SOURCE.md there).

use bytes::Bytes;
use sipfence::proxy::stateless::bad_request_for;
use sipfence::sip::error::ErrorKind;
use sipfence::sip::{HeaderName, Message, Span, uri};

fn read(name: &str) -> Vec<u8> {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata/sip/rfc5118")
        .join(format!("{name}.sip"));
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn parse(name: &str) -> Message {
    Message::parse(Bytes::from(read(name))).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn text(m: &Message, s: Span) -> &str {
    std::str::from_utf8(m.slice(s)).expect("ASCII")
}

/// (host, port) of the Request-URI.
fn ruri(m: &Message) -> (String, Option<u16>) {
    let s = m.request_uri().expect("a request");
    let u = uri::parse(m.buf(), s).expect("a URI");
    (text(m, u.host).to_string(), u.port)
}

#[test]
fn every_message_is_accepted_or_refused_as_the_rfc_says() {
    let tsv = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/sip/rfc5118/expected.tsv"),
    )
    .expect("expected.tsv");
    let mut n = 0;
    for line in tsv.lines().skip(1) {
        let cols: Vec<&str> = line.split('\t').collect();
        let (name, section, verdict) = (cols[0], cols[1], cols[2]);
        let parsed = Message::parse(Bytes::from(read(name)));
        match verdict {
            // "tolerated": RFC 3261's ABNF bug (4.10), accepted by the robustness principle.
            "valid" | "tolerated" => {
                let m = parsed.unwrap_or_else(|e| panic!("{name} ({section}): refused: {e}"));
                assert_eq!(m.check_request(), Ok(()), "{name} ({section})");
            }
            "invalid" => {
                let e = parsed
                    .err()
                    .unwrap_or_else(|| panic!("{name} ({section}): parsed"));
                assert_eq!(e.kind, ErrorKind::BadRequestUri, "{name} ({section})");
            }
            v => panic!("{name}: verdict {v}?"),
        }
        n += 1;
    }
    assert_eq!(n, 12, "corpus size");
}

/// 4.2: the request without brackets round its IPv6 reference gets a 400, sent back to
/// the top Via's IPv6 sender.
#[test]
fn the_unbracketed_reference_is_answered_400() {
    let raw = read("ipv6-bad");
    let mut out = vec![];
    let src = "[2001:db8::9:1]:5060".parse().expect("address");
    let e = Message::parse(Bytes::from(raw.clone())).expect_err("refused by the parser");
    let dest = bad_request_for(&raw, src, None, &e, Some("sipfence"), &mut out);
    assert!(dest.is_some(), "no answer");
    let again = {
        let mut o = vec![];
        bad_request_for(&raw, src, None, &e, Some("sipfence"), &mut o);
        o
    };
    assert_eq!(out, again, "a retransmission gets the same answer");
    let r = Message::parse(Bytes::from(out)).expect("the 400 parses");
    assert_eq!(r.status(), Some(400));
    let via = r.top_via().expect("Via copied");
    assert_eq!(text(&r, via.host), "[2001:db8::9:1]");
    assert_eq!(r.call_id(), b"SSG9559905523997077@hlau_4100");
    // As every answer of ours: a To-tag (RFC 3261 8.2.6.2) and Server.
    assert!(r.to_tag().is_some_and(|t| t.len() == 16), "no To-tag");
    assert_eq!(r.value(HeaderName::Server), Some(&b"sipfence"[..]));
}

#[test]
fn ipv6_references_are_read_right() {
    // 4.3: the colon and digits inside the brackets belong to the address: no port.
    let m = parse("port-ambiguous");
    assert_eq!(ruri(&m), ("[2001:db8::10:5070]".to_string(), None));
    // 4.4: after the bracket, a port.
    let m = parse("port-unambiguous");
    assert_eq!(ruri(&m), ("[2001:db8::10]".to_string(), Some(5070)));
    // 4.1 and 4.10: the reference whole, with two colons and with the three of RFC 3261's
    // ABNF bug (tolerated, not rewritten: a proxy passes what it does not use unchanged).
    assert_eq!(ruri(&parse("ipv6-good")).0, "[2001:db8::10]");
    assert_eq!(
        ruri(&parse("ipv6-correct-abnf-2-colons")).0,
        "[2001:db8::192.0.2.1]"
    );
    assert_eq!(
        ruri(&parse("ipv6-bug-abnf-3-colons")).0,
        "[2001:db8:::192.0.2.1]"
    );

    // 4.5: `received` with and without brackets (RFC 3261's grammar has none; both are
    // sent), and the sent-by before it.
    for (name, received) in [
        ("via-received-param-with-delim", "[2001:db8::9:255]"),
        ("via-received-param-no-delim", "2001:db8::9:255"),
    ] {
        let m = parse(name);
        let v = m.top_via().expect("Via");
        assert_eq!(text(&m, v.host), "[2001:db8::9:1]", "{name}");
        assert_eq!(v.port, None, "{name}");
        assert_eq!(v.received.map(|r| text(&m, r)), Some(received), "{name}");
        assert!(v.branch.is_some(), "{name}");
    }

    // 4.7: IPv6 and IPv4 senders in one Via list; the second is where a response goes next.
    let m = parse("mult-ip-in-header");
    let (top, second) = (m.top_via().expect("top"), m.second_via().expect("second"));
    assert_eq!(
        (text(&m, top.host), top.port),
        ("[2001:db8::9:1]", Some(6050))
    );
    assert_eq!((text(&m, second.host), second.port), ("192.0.2.1", None));
    assert_eq!(m.count(sipfence::sip::header::HeaderName::Via), 3);

    // 4.9: an IPv4-mapped IPv6 sender with a port.
    let m = parse("ipv4-mapped-ipv6");
    let v = m.top_via().expect("Via");
    assert_eq!(
        (text(&m, v.host), v.port),
        ("[::ffff:192.0.2.10]", Some(19823))
    );

    // 4.6 and 4.8: the SDP bodies are the Content-Length's, untouched.
    for name in ["ipv6-in-sdp", "mult-ip-in-sdp"] {
        let m = parse(name);
        assert!(m.body().starts_with(b"v=0\r\n"), "{name}");
        assert!(m.body().ends_with(b"H263-1998/90000\r\n"), "{name}");
    }
}
