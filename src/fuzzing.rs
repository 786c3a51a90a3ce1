//! The checks the fuzz targets run (`fuzz/fuzz_targets/*` call these), kept in the
//! library so that `cargo test` replays every saved crash and seed through the very
//! same code (`tests/fuzz_regressions.rs`) without libFuzzer.
//!
//! Each function takes arbitrary bytes and panics only on a real defect.

use bytes::Bytes;
use std::sync::OnceLock;

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

fn policy() -> &'static Policy {
    static P: OnceLock<Policy> = OnceLock::new();
    P.get_or_init(|| Policy::builtin().unwrap_or_else(|e| panic!("built-in policy: {e}")))
}

/// The SIP parser and stream framer: no panic; spans stay inside the message; relay
/// parsing accepts whatever full parsing accepts.
pub fn sip_parse(data: &[u8]) {
    let _ = frame_stream(data);
    if let Ok(m) = Message::parse(Bytes::copy_from_slice(data)) {
        assert!(m.len() <= data.len());
        for h in m.headers() {
            let _ = m.slice(h.value);
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

/// The whole decision with the built-in policy, and the bytes a verdict produces: a
/// rejection is a response that parses; a forwarded request parses again.
pub fn decide_and_apply(data: &[u8]) {
    static RATES: OnceLock<LocalRateCounter> = OnceLock::new();
    let rates = RATES.get_or_init(|| LocalRateCounter::new(10_000));
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
    let trunk = (sel & 6 == 2).then_some(1);
    let ctx = Context {
        source: source.into(),
        local: None,
        trunk,
        now_ms: sel as u64 * 3_600_000,
        rates,
    };
    let d = decide(policy, &m, &ctx);
    let mut out = Vec::new();
    if crate::verdict::write_reject(policy, &m, &d, &mut out) {
        let r = Message::parse(Bytes::from(out))
            .unwrap_or_else(|e| panic!("our rejection does not parse: {e}"));
        assert!(r.status().is_some());
    } else if m.is_request() {
        let mut e = EditList::new();
        crate::verdict::add_edits(policy, &m, &d, &mut e);
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
        now_ms: 0,
        via_addr: ([127, 0, 0, 1], 5060).into(),
        overloaded: false,
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
    let Ok(Handled::Forward(_)) = handle(
        &st,
        Bytes::copy_from_slice(data),
        &o,
        &mut out,
        &mut edits,
        &mut |_, _| {},
    ) else {
        return;
    };
    let fwd = Message::parse(Bytes::from(out))
        .unwrap_or_else(|e| panic!("forwarded message does not parse: {e}"));
    assert_eq!(fwd.body(), input.body(), "body changed");
    let untouched = |m: &Message| -> Vec<Vec<u8>> {
        m.headers()
            .iter()
            .filter(|h| {
                !matches!(
                    h.name,
                    HeaderName::Via
                        | HeaderName::MaxForwards
                        | HeaderName::From
                        | HeaderName::PPreferredIdentity
                        | HeaderName::PAssertedIdentity
                        | HeaderName::Other
                )
            })
            .map(|h| m.slice(h.line()).to_vec())
            .collect()
    };
    assert_eq!(
        untouched(&fwd),
        untouched(&input),
        "a field the step does not edit changed"
    );
}

/// The policy, list and plan loaders: refused with a reason, never a panic.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = Policy::from_str(text, "fuzz.toml", std::path::Path::new("/nonexistent"));
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

/// Target name to check function, for the regression runner.
/// A fuzz check: arbitrary bytes in, a panic only on a defect.
pub type Check = fn(&[u8]);

pub const TARGETS: [(&str, Check); 5] = [
    ("sip_parse", sip_parse),
    ("decide", decide_and_apply),
    ("rewrite", rewrite),
    ("config", config),
    ("pcap", pcap),
];
