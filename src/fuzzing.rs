//! The checks the fuzz targets run (`fuzz/fuzz_targets/*` call these), kept in the
//! library so that `cargo test` replays every saved crash and seed through the very
//! same code (`tests/fuzz_regressions.rs`) without libFuzzer.
//!
//! Each function takes arbitrary bytes and panics only on a real defect.

use bytes::Bytes;
use std::sync::OnceLock;

use crate::behaviour::local::LocalTracker;
use crate::decide::{Context, decide};
use crate::numbering::Plan;
use crate::policy::Policy;
use crate::policy::config::{ListenSpec, Transport};
use crate::policy::lists::NumberSetBuilder;
use crate::policy::rate::{LocalRateCounter, NoCounting};
use crate::proxy::stateless::{Handled, Origin, Step, handle};
use crate::replay::{Outputs, Replayer};
use crate::sip::rewrite::EditList;
use crate::sip::{HeaderName, Message, frame_stream};

/// The built-in policy, plus on its first trunk (intl, where the fuzz inputs arrive)
/// Record-Route (and Path on REGISTERs) and behaviour rules with thresholds low enough for a few inputs to
/// reach, one of each action, and digest authentication (monitored, so that the calls
/// go on to the other rules); and a third trunk whose peer writes E.164 without the '+'
/// (`bare_numbers = "international"`) and carries two calls at once, so that writing
/// the '+' in and the concurrent-call count are fuzzed too.
fn policy() -> &'static Policy {
    static P: OnceLock<Policy> = OnceLock::new();
    P.get_or_init(|| {
        let mut text = crate::policy::BUILTIN_CONFIG.replacen(
            "\n[[trunk]]\nname = \"ent-400\"",
            "record_route = true\nregister_path = true\n[trunk.behaviour]\nattempts = 3\ndistinct_callees = 2\nsequential_callees = 1\nmin_asr_percent = 50\nasr_min_attempts = 2\nring_once = 1\nshort_calls = 1\n\
             [trunk.rules.behaviour-attempts]\naction = \"rate-limit\"\n\
             [trunk.rules.behaviour-ring-once]\naction = \"reject\"\n\
             [trunk.rules.behaviour-short-calls]\naction = \"monitor\"\n\
             [trunk.auth]\nrealm = \"fuzz\"\nusers = [\"pbx:pw\"]\n\
             [trunk.rules.trunk-auth]\naction = \"monitor\"\n\
             \n[[trunk]]\nname = \"ent-400\"",
            1,
        );
        text.push_str(
            "\n[[trunk]]\nname = \"intl-bare\"\nrole = \"international\"\nsources = [\"198.51.100.0/24\"]\nbare_numbers = \"international\"\nrecord_route = true\nmax_concurrent_calls = 2\n",
        );
        let p = Policy::from_str(&text, "fuzz-policy", std::path::Path::new("."))
            .unwrap_or_else(|e| panic!("fuzz policy: {e}"));
        assert!(p.trunks[0].behaviour.is_some() && p.trunks[0].record_route);
        assert!(p.trunks[0].register_path);
        assert_eq!(p.trunks[2].bare, crate::numbering::Bare::International);
        // Digest credentials are read (and the rule counted) on every fuzzed call.
        assert!(p.trunks[0].auth.is_some());
        p
    })
}

/// The SIP parser and stream framer: no panic; spans stay inside the message; relay
/// parsing accepts whatever full parsing accepts; a frame the parser reads is the
/// message it reads, no more and no less (what a stream frames longer eats the start of
/// the next message).
pub fn sip_parse(data: &[u8]) {
    if let Ok(crate::sip::parse::Frame::Message { skip, len }) = frame_stream(data) {
        let frame = &data[skip..skip + len];
        if let Ok(m) = Message::parse(Bytes::copy_from_slice(frame)) {
            assert_eq!(
                m.len(),
                len,
                "the frame is not the message the parser reads"
            );
        }
    }
    let line = data.split(|&c| c == b'\n').next().unwrap_or(data);
    crate::sip::parse::assert_request_line_paths_agree(line.strip_suffix(b"\r").unwrap_or(line));
    let fresh = Message::parse(Bytes::copy_from_slice(data));
    // The answer to a broken request, which the proxy writes from the raw bytes (on a
    // stream, when it cannot be framed): no panic, and one status line, whole field
    // lines and an empty line, with no control character a reader could end a line or a
    // string at (QA 54, QA 210).
    let answered = |e: &crate::sip::ParseError| {
        let mut out = vec![];
        let source = std::net::SocketAddr::from(([192, 0, 2, 7], 5070));
        if crate::proxy::stateless::bad_request_for(data, source, None, e, None, &mut out).is_some()
        {
            assert!(out.starts_with(b"SIP/2.0 ") && out.ends_with(b"\r\n\r\n"));
            let head = &out[..out.len() - 2];
            for (i, &c) in head.iter().enumerate() {
                let line_end = c == b'\r' && head.get(i + 1) == Some(&b'\n')
                    || c == b'\n' && i > 0 && head[i - 1] == b'\r';
                assert!(
                    line_end || (c >= b' ' || c == b'\t') && c != 0x7f,
                    "control byte {c:#x} at {i} in the answer: {:?}",
                    String::from_utf8_lossy(&out)
                );
            }
        }
    };
    if let Err(e) = &fresh {
        answered(e);
    }
    if let Err(e) = frame_stream(data) {
        answered(&e);
    }
    // Parsed into a message that held another one (as the proxy reuses one per
    // worker), the outcome is the same as a fresh parse's.
    let mut reused = Message::parse(Bytes::from_static(REUSE_SEED))
        .unwrap_or_else(|e| panic!("seed message: {e}"));
    let again = reused.parse_into(Bytes::copy_from_slice(data));
    match (&fresh, again) {
        (Ok(m), Ok(())) => assert_eq!(summary(m), summary(&reused), "reuse changed the parse"),
        (Err(e), Err(e2)) => {
            assert_eq!(*e, e2, "reuse changed the error");
            assert!(
                reused.is_empty() && reused.headers().is_empty(),
                "a failed parse leaves the message empty"
            );
        }
        (a, b) => panic!("reuse changed the outcome: {a:?} / {b:?}"),
    }
    if let Ok(m) = fresh {
        assert!(m.len() <= data.len());
        for h in m.headers() {
            let _ = m.slice(h.value());
            let _ = m.slice(h.line());
        }
        let _ = (
            m.top_via(),
            m.to_tag(),
            m.from_tag(),
            m.cseq(),
            m.max_forwards(),
            m.check_request(),
            m.body(),
        );
        assert!(Message::parse_for_relay(Bytes::copy_from_slice(data)).is_ok());
    }
}

/// A message with more fields, Vias and tags than most inputs, to parse others into.
const REUSE_SEED: &[u8] = b"INVITE sip:+861012345678@core.example.net SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK-a;rport=5060;received=192.0.2.9\r\nVia: SIP/2.0/TCP 192.0.2.2;branch=z9hG4bK-b\r\nMax-Forwards: 70\r\nFrom: <sip:+442071234567@192.0.2.1>;tag=f1\r\nTo: <sip:+861012345678@core.example.net>;tag=t1\r\nCall-ID: seed@192.0.2.1\r\nCSeq: 1 INVITE\r\nContact: <sip:a@192.0.2.1>\r\nP-Asserted-Identity: <tel:+442071234567>\r\nPrivacy: id\r\nX-A: 1\r\nX-B: 2\r\nX-C: 3\r\nContent-Length: 4\r\n\r\nbody";

/// Everything a reader of a parsed message can see, as text: two parses that agree on
/// it agree for every caller.
pub fn summary(m: &Message) -> String {
    format!(
        "{m:?} {:?} {:?} {:?} {:?} {:?} {:?} {:?} {:?} {:?} {:?}",
        m.first(HeaderName::ContentLength),
        m.all(HeaderName::PAssertedIdentity).count(),
        m.start(),
        m.start_line_span(),
        m.top_via(),
        m.second_via(),
        m.from_addr(),
        m.to_tag(),
        m.from_tag(),
        m.body(),
    )
}

/// The whole judging (protocol checks, then the rules) with the built-in policy, and
/// the bytes a verdict produces: a rejection is a response that parses; a forwarded
/// request parses again.
pub fn decide_and_apply(data: &[u8]) {
    static RATES: OnceLock<LocalRateCounter> = OnceLock::new();
    let rates = RATES.get_or_init(|| LocalRateCounter::new(10_000));
    static TRACKER: OnceLock<LocalTracker> = OnceLock::new();
    let tracker = TRACKER.get_or_init(|| LocalTracker::new(1024, 1024));
    let policy = policy();
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let Ok(m) = Message::parse(Bytes::copy_from_slice(rest)) else {
        return;
    };
    let source = if sel & 1 == 0 {
        ([127, 0, 0, 1], 5070)
    } else {
        ([192, 0, 2, 1], 5060)
    };
    let trunk = match sel & 6 {
        2 => Some(1),
        4 => Some(2),
        _ => None,
    };
    let ctx = Context {
        source: source.into(),
        local: None,
        trunk,
        now_ms: sel as u64 * 3_600_000,
        wall_ms: sel as u64 * 3_600_000,
        rates,
        behaviour: tracker,
    };
    let d = crate::decide::judge(policy, &m, &ctx);
    crate::behaviour::observe(&m, policy.speaks_for_core(&ctx.source), tracker, ctx.now_ms);
    // What the message says of dialogs, read from a response as the proxy reads one it
    // relays (Via only, From on demand), so that later inputs meet known dialogs too.
    if !d.is_reject() {
        crate::decide::track_dialog(&m, || sel & 8 != 0, rates, ctx.now_ms);
        if let Ok(r) = Message::parse_for_relay(m.bytes().clone()) {
            crate::decide::track_dialog(&r, || sel & 8 != 0, rates, ctx.now_ms);
        }
    }
    let mut out = Vec::new();
    if crate::verdict::write_reject(policy, &m, &d, Some(ctx.source), &mut out) {
        let r = Message::parse(Bytes::from(out))
            .unwrap_or_else(|e| panic!("our rejection does not parse: {e}"));
        assert!(r.status().is_some());
    } else if m.is_request() {
        // A later request of a call whose From was changed gets that From: whatever
        // the earlier inputs kept, the request still parses with it.
        let from = crate::decide::kept_from(&m, &d, rates, ctx.now_ms);
        let mut e = EditList::new();
        crate::verdict::add_edits(policy, &m, &d, from.as_deref(), &mut e);
        e.apply(m.buf(), m.len(), &mut out);
        if let Err(e) = Message::parse(Bytes::from(out)) {
            panic!("forwarded request does not parse: {e}");
        }
    }
}

/// The proxy step's rewriting (our Via, Max-Forwards, received/rport, generic number,
/// labels): the output parses, the body is unchanged, and every field no step edits is
/// still there, byte for byte, in order.
pub fn rewrite(data: &[u8]) {
    let Ok(input) = Message::parse(Bytes::copy_from_slice(data)) else {
        return;
    };
    let st = Step {
        policy: policy(),
        rates: &NoCounting,
        behaviour: &crate::behaviour::NoTracking,
        now_ms: 0,
        wall_ms: 0,
        via_addr: ([127, 0, 0, 1], 5060).into(),
        via_other: None,
        overloaded: false,
        draining: false,
        next_hops: &crate::proxy::stateless::NoNextHops,
    };
    let o = Origin {
        source: ([127, 0, 0, 1], 5070).into(),
        local: ListenSpec {
            transport: Transport::Udp,
            addr: ([127, 0, 0, 1], 5060).into(),
        },
        conn: None,
    };
    let mut out = Vec::new();
    let mut edits = EditList::new();
    match handle(
        &st,
        Bytes::copy_from_slice(data),
        &mut Message::empty(),
        &o,
        &mut out,
        &mut edits,
        &mut |_| {},
    ) {
        Ok(Handled::Forward(_)) => {}
        // Whatever sipfence answers itself (400, 403, 420, 483, 513...) parses as the
        // response it claims to be.
        Ok(Handled::Respond(_, code)) => {
            match Message::parse(Bytes::from(out)) {
                Ok(r) => assert_eq!(r.status(), Some(code)),
                // Every Via is copied and up to seven fields join them: a request near
                // the field limit that is mostly Vias makes a response past it (valid
                // SIP, which our parser caps).
                Err(e)
                    if e.kind == crate::sip::ErrorKind::TooManyHeaders
                        && input.all(HeaderName::Via).count() + 7 > crate::sip::MAX_HEADERS => {}
                Err(e) => panic!("our {code} does not parse: {e}"),
            }
            return;
        }
        _ => return,
    }
    let fwd = Message::parse(Bytes::from(out))
        .unwrap_or_else(|e| panic!("forwarded message does not parse: {e}"));
    assert_eq!(fwd.body(), input.body(), "body changed");
    // Every line of what goes on ends in CRLF, whatever the input's did.
    assert!(!fwd.bare_lf(), "a line forwarded ends in LF alone");
    // A field's line as written, its line ends aside (a bare LF goes on as CRLF).
    let lf = |l: &[u8]| -> Vec<u8> {
        (0..l.len())
            .filter(|&i| !(l[i] == b'\r' && l.get(i + 1) == Some(&b'\n')))
            .map(|i| l[i])
            .collect()
    };
    let untouched = |m: &Message| -> Vec<Vec<u8>> {
        m.headers()
            .iter()
            .filter(|h| {
                !matches!(
                    h.name,
                    HeaderName::Via
                        | HeaderName::RecordRoute
                        | HeaderName::Route
                        | HeaderName::MaxForwards
                        | HeaderName::From
                        | HeaderName::PPreferredIdentity
                        | HeaderName::PAssertedIdentity
                        | HeaderName::RemotePartyId
                        | HeaderName::ContentLength
                        | HeaderName::Other
                )
            })
            .map(|h| lf(m.slice(h.line())))
            .collect()
    };
    assert_eq!(
        untouched(&fwd),
        untouched(&input),
        "a field the step does not edit changed"
    );
    // Content-Length keeps its value; a folded one goes on on one line (QA 138).
    assert_eq!(
        fwd.value(HeaderName::ContentLength),
        input.value(HeaderName::ContentLength)
    );
    if let Some(h) = fwd.first(HeaderName::ContentLength) {
        let line = fwd.slice(h.line());
        let folds = line.iter().filter(|&&c| c == b'\n').count();
        assert_eq!(folds, 1, "a folded Content-Length went on");
    }
    // Only sipfence writes a NAT flow, into the one Record-Route or Path field it puts
    // first: one the peer wrote anywhere in its Record-Route or Path (an escaped name
    // too) never goes on, or the core would send the dialog where the peer chose.
    if fwd.is_request() {
        let flowing = |h: &crate::sip::Header| {
            let named = h.name == HeaderName::RecordRoute
                || fwd.slice(h.name_span()).eq_ignore_ascii_case(b"Path");
            let v = fwd.slice(h.value()).to_ascii_lowercase();
            let v = String::from_utf8_lossy(&v).replace("%2d", "-");
            named && v.contains("sf-flow")
        };
        let all = fwd.headers().iter().filter(|h| flowing(h)).count();
        let ours = fwd.headers().first().is_some_and(|h| {
            flowing(h)
                && input
                    .headers()
                    .first()
                    .is_none_or(|i| input.slice(i.line()) != fwd.slice(h.line()))
        });
        assert_eq!(all, usize::from(ours), "a peer's sf-flow went on");
    }
}

/// The policy, list and plan loaders: refused with a reason, never a panic.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(p) = Policy::from_str(text, "fuzz.toml", std::path::Path::new("/nonexistent")) {
        // What a reload onto it, and back, would say.
        let c = crate::policy::diff::changes(policy(), &p);
        let back = crate::policy::diff::changes(&p, policy());
        assert_eq!(c.is_empty(), back.is_empty());
        assert!(
            crate::policy::diff::changes(&p, &p).is_empty(),
            "a policy differs from itself"
        );
    }
    let mut b = NumberSetBuilder::new(b"86");
    if b.add_text(text, "fuzz.txt").is_ok() {
        let _ = b.build().len();
    }
    let _ = Plan::parse(text, "fuzz.plan");
}

/// The capture reader and the replay pipeline on arbitrary bytes.
pub fn pcap(data: &[u8]) {
    let mut r = Replayer::new(policy(), None);
    let _ = r.stream(data, "fuzz", &mut Outputs::default(), &mut |_| {});
}

/// The transports replay follows beyond UDP, fed straight rather than through a capture
/// file (where a mutated byte mostly breaks the file's framing first). A first byte
/// with the top bit set: SCTP packets, each behind a two-byte length; otherwise one TCP
/// stream in segments of `1 + first % 61` bytes, told apart as replay tells it (SIP,
/// WebSocket after an upgrade or from a frame, HEP packets). Whatever comes out is a
/// message no longer than a SIP message can be, and nothing panics or loops.
pub fn transports(data: &[u8]) {
    use crate::replay::net::{NetStats, Payload, TcpFlows, TcpMeta};
    let Some((&first, mut rest)) = data.split_first() else {
        return;
    };
    let mut stats = NetStats::default();
    let fits = |m: &[u8]| assert!(m.len() <= crate::sip::MAX_MESSAGE + 1024, "{}", m.len());
    if first & 0x80 != 0 {
        let mut a = crate::replay::sctp::Associations::default();
        while let [h, l, tail @ ..] = rest {
            let len = (u16::from_be_bytes([*h, *l]) as usize).min(tail.len());
            let (packet, next) = tail.split_at(len);
            if let Some((_, _, messages)) = a.packet(packet, &mut stats) {
                messages.iter().for_each(|m| fits(m));
            }
            rest = next;
        }
        return;
    }
    let mut flows = TcpFlows::default();
    let (src, dst) = (
        std::net::SocketAddr::from(([10, 0, 0, 1], 40000)),
        std::net::SocketAddr::from(([10, 0, 0, 2], 5060)),
    );
    let check = |segments: Vec<crate::replay::net::Segment>| {
        for s in segments {
            match &s.payload {
                Payload::Messages(m) => m.iter().for_each(|m| fits(m)),
                Payload::Datagram(d) => fits(d),
                Payload::Stream(..) => panic!("a stream gives messages, not segments"),
            }
        }
    };
    // Bit 6 of the first byte: every seventh segment is sent late (after the next one)
    // and every eleventh is lost, so the holes and their expiry are exercised too.
    let holes = first & 0x40 != 0;
    let mut seq = 1u32;
    let mut late: Option<(u32, &[u8])> = None;
    for (i, segment) in rest.chunks(1 + first as usize % 61).enumerate() {
        let ts_ms = i as u64 * 1_000;
        let meta = |seq| TcpMeta {
            seq,
            syn: false,
            fin_or_rst: false,
            ts_ms,
        };
        if holes && i % 11 == 10 {
        } else if holes && i % 7 == 6 {
            late = Some((seq, segment));
        } else {
            check(flows.feed(src, dst, segment, meta(seq), &mut stats));
            if let Some((s, l)) = late.take() {
                check(flows.feed(src, dst, l, meta(s), &mut stats));
            }
        }
        seq = seq.wrapping_add(segment.len() as u32);
    }
    check(flows.finish(&mut stats));
}

/// An international trunk on which every rule only watches, except the Generic Number
/// deletion: whatever the IAM says, the call goes on and the deletion path runs.
fn sipi_policy() -> &'static Policy {
    static P: OnceLock<Policy> = OnceLock::new();
    P.get_or_init(|| {
        let mut text = String::from(
            "[[trunk]]\nname = \"intl\"\nrole = \"international\"\nsources = [\"127.0.0.0/8\"]\n",
        );
        for r in crate::policy::RuleId::ORDER {
            // (A stranger's request is refused whatever: its rule cannot watch.)
            if !matches!(
                r,
                crate::policy::RuleId::GenericNumber | crate::policy::RuleId::UnknownSource
            ) {
                text.push_str(&format!("[rules.{}]\naction = \"monitor\"\n", r.as_str()));
            }
        }
        Policy::from_str(&text, "fuzz-sipi.toml", std::path::Path::new("."))
            .unwrap_or_else(|e| panic!("sipi fuzz policy: {e}"))
    })
}

/// SIP-I: the input is an ISUP body. Alone, the IAM decoder and the multipart splitter
/// must not panic and keep every offset inside the input. Carried in a SIP-I INVITE
/// through the decision on an international trunk, the forwarded call must parse again,
/// its ISUP must be the input with exactly the Generic Numbers cut out (every other byte
/// unchanged, and the IAM still decodes), and Content-Length must match the new body.
pub fn sipi(data: &[u8]) {
    use crate::isup::{self, encode::sipi_body};
    if let Ok(iam) = isup::decode_iam(data) {
        assert!(iam.len <= data.len());
        for (at, len) in iam.generic_numbers(data) {
            assert!(at + len <= data.len());
        }
    }
    let whole = crate::sip::Span::new(0, data.len());
    if let Ok((parts, n)) = crate::sip::multipart::parts(data, whole, b"B") {
        for p in &parts[..n] {
            assert!(p.body.end as usize <= data.len() && p.body.start <= p.body.end);
        }
    }
    let (ct, mut body) = sipi_body("v=0\r\n", data, "sipfence-fuzz-b");
    // Every other input gives its part a Content-Length of its own: a deletion must fix
    // it and count the digits it loses in the message's (QA 28: "101" became "93").
    if data.len() % 2 == 1 {
        let mark = b"handling=required\r\n";
        if let Some(p) = memchr::memmem::find(&body, mark) {
            let line = format!("Content-Length: {}\r\n", data.len());
            body.splice(p + mark.len()..p + mark.len(), line.into_bytes());
        }
    }
    let mut raw = format!(
        "INVITE sip:+861012345678@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKfz\r\nFrom: <sip:+442071234567@127.0.0.1>;tag=f\r\nTo: <sip:+861012345678@127.0.0.1>\r\nCall-ID: fz\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\nP-Asserted-Identity: <tel:+442071234567>\r\nContent-Type: {ct}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    raw.extend_from_slice(&body);
    // An IAM part that big makes a message no transport carries: refused as too large,
    // rightly; the wrapper only has to parse below that.
    if raw.len() > crate::sip::MAX_MESSAGE {
        return;
    }
    let m = Message::parse(Bytes::from(raw)).unwrap_or_else(|e| panic!("SIP-I wrapper: {e}"));
    let ctx = Context {
        source: "127.0.0.1:5070".parse().unwrap_or_else(|_| unreachable!()),
        local: None,
        trunk: Some(0),
        now_ms: 1_796_004_000_000,
        wall_ms: 1_796_004_000_000,
        rates: &NoCounting,
        behaviour: &crate::behaviour::NoTracking,
    };
    let policy = sipi_policy();
    let d = decide(policy, &m, &ctx);
    assert!(!d.is_reject(), "every rule is monitor-only here: {d:?}");
    let mut edits = EditList::new();
    crate::verdict::add_edits(policy, &m, &d, None, &mut edits);
    let mut out = Vec::new();
    edits.apply(m.buf(), m.len(), &mut out);
    let fwd = Message::parse(Bytes::from(out))
        .unwrap_or_else(|e| panic!("forwarded SIP-I call does not parse: {e}"));
    assert_eq!(fwd.body().len(), fwd.body_span().len());
    let cl = fwd
        .value(HeaderName::ContentLength)
        .and_then(crate::sip::lex::parse_u32);
    assert_eq!(
        cl,
        Some(fwd.body().len() as u32),
        "Content-Length after the rewrite"
    );
    let Some(found) = d.identity.isup.filter(|i| i.body.of(m.buf()) == data) else {
        return; // the input itself looked like a delimiter: not this check's business
    };
    let Ok(Some(after)) = isup::sipi::find(&fwd) else {
        panic!("forwarded call lost its ISUP part");
    };
    let after = after.body.of(fwd.buf());
    match found.iam {
        Ok(iam) if d.rewrite_from && iam.generic_count > 0 => {
            let mut want = Vec::new();
            let mut pos = 0;
            for (at, len) in iam.generic_numbers(data) {
                want.extend_from_slice(&data[pos..at]);
                pos = at + len;
            }
            want.extend_from_slice(&data[pos..]);
            if iam.generic_count == iam.optional_count {
                // Nothing optional left: pointer 0 and no end octet.
                want[isup::OPT_PTR] = 0;
                let end = iam.len - (data.len() - want.len());
                want.remove(end - 1);
            }
            assert_eq!(after, &want[..], "only the Generic Numbers may go");
            let again = isup::decode_iam(after)
                .unwrap_or_else(|e| panic!("IAM after deletion does not decode: {e}"));
            assert_eq!(again.generic_count, 0);
            assert_eq!(
                again
                    .calling
                    .map(|c| (c.digits().to_vec(), c.nature, c.presentation)),
                iam.calling
                    .map(|c| (c.digits().to_vec(), c.nature, c.presentation)),
                "calling number changed"
            );
        }
        _ => assert_eq!(after, data, "ISUP changed without a deletion"),
    }
}

/// Target name to check function, for the regression runner.
/// A fuzz check: arbitrary bytes in, a panic only on a defect.
pub type Check = fn(&[u8]);

pub const TARGETS: [(&str, Check); 7] = [
    ("sip_parse", sip_parse),
    ("decide", decide_and_apply),
    ("rewrite", rewrite),
    ("config", config),
    ("pcap", pcap),
    ("sipi", sipi),
    ("transports", transports),
];
