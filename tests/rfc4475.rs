//! RFC 4475 torture messages: valid ones parse, invalid ones are refused, and the
//! "valid but odd" ones parse and then get the answer the RFC describes.

mod common;

use bytes::Bytes;
use sipfence::fuzzing::summary;
use sipfence::sip::uri::{self, Scheme};
use sipfence::sip::{Message, StartLine};

#[test]
fn rfc4475_corpus_matches_expected_verdicts() {
    let Some(shared) = common::shared_dir() else {
        return;
    };
    let dir = shared.join("corpus/rfc4475");
    let tsv = std::fs::read_to_string(dir.join("expected.tsv")).expect("expected.tsv");
    let mut failures = vec![];
    let mut n = 0;
    // One message parsed into over and over, as the proxy does: each outcome must be the
    // fresh parse's, whatever the message held before (valid and invalid ones alternate
    // in the corpus).
    let mut reused = Message::empty();
    for line in tsv.lines().skip(1) {
        let cols: Vec<&str> = line.split('\t').collect();
        let (name, verdict) = (cols[0], cols[2]);
        let bytes = std::fs::read(dir.join(format!("{name}.dat"))).expect("message file");
        n += 1;
        let parsed = Message::parse(Bytes::from(bytes.clone()));
        match (&parsed, reused.parse_into(Bytes::from(bytes))) {
            (Ok(m), Ok(())) => assert_eq!(summary(m), summary(&reused), "{name}: reused"),
            (Err(e), Err(e2)) => {
                assert_eq!(*e, e2, "{name}: reused");
                assert!(reused.headers().is_empty(), "{name}: left empty");
            }
            (a, b) => panic!("{name}: a reused message parsed differently: {a:?} / {b:?}"),
        }
        let ok = match (verdict, &parsed) {
            ("valid", Ok(m)) => !m.is_request() || m.check_request().is_ok(),
            ("invalid", Err(_)) => true,
            ("valid-but-odd", Ok(m)) => odd_case_handled(name, m),
            _ => false,
        };
        if !ok {
            failures.push(format!(
                "{name} ({verdict}): {:?}",
                parsed.as_ref().map(|_| "parsed").map_err(|e| e.to_string())
            ));
        }
    }
    assert_eq!(n, 50, "corpus size");
    assert!(
        failures.is_empty(),
        "RFC 4475 disagreements:\n{}",
        failures.join("\n")
    );
}

/// What an element does with each "valid but odd" message (RFC 4475 3.2-3.4).
fn odd_case_handled(name: &str, m: &Message) -> bool {
    match name {
        // Missing or repeated single-value fields: the element answers 400.
        "insuf" | "multi01" | "mcl01" => m.check_request().is_err(),
        // Max-Forwards 0: a proxy answers 483 instead of forwarding.
        "zeromf" => m.max_forwards() == Some(0) && m.check_request().is_ok(),
        // Unknown Request-URI scheme: parsed as opaque.
        "unkscm" | "novelsc" => match m.start() {
            StartLine::Request { uri: u, .. } => uri::parse(m.buf(), u)
                .map(|u| u.scheme == Scheme::Other)
                .unwrap_or(false),
            _ => false,
        },
        "bcast" => m.status() == Some(200),
        _ => !m.is_request() || m.check_request().is_ok(),
    }
}

/// RFC 4475 3.3.5 (bext01) at the proxy: the Proxy-Require tags it does not support come
/// back in a 420's Unsupported; the Require tags are the UAS's business, not listed.
#[test]
fn bext01_proxy_answers_420_listing_proxy_require() {
    use sipfence::policy::Policy;
    use sipfence::policy::config::{ListenSpec, Transport};
    use sipfence::proxy::stateless::{Handled, Origin, Step, handle};
    use sipfence::sip::rewrite::EditList;
    let Some(shared) = common::shared_dir() else {
        return;
    };
    let bytes = std::fs::read(shared.join("corpus/rfc4475/bext01.dat")).expect("bext01");
    let policy = Policy::from_str(
        "[[trunk]]\nname = \"any\"\nrole = \"interconnect\"\nsources = [\"0.0.0.0/0\"]\nnext_hop = \"udp:10.0.0.5:5060\"\n",
        "t.toml",
        std::path::Path::new("."),
    )
    .unwrap();
    let st = Step {
        policy: &policy,
        rates: &sipfence::policy::rate::NoCounting,
        behaviour: &sipfence::behaviour::NoTracking,
        now_ms: 0,
        wall_ms: 0,
        via_addr: "10.0.0.1:5060".parse().unwrap(),
        via_other: None,
        overloaded: false,
        draining: false,
        next_hops: &sipfence::proxy::stateless::NoNextHops,
    };
    let o = Origin {
        source: "192.0.2.7:5060".parse().unwrap(),
        local: ListenSpec {
            transport: Transport::Udp,
            addr: "10.0.0.1:5060".parse().unwrap(),
        },
        conn: None,
    };
    let (mut out, mut edits, mut msg) = (Vec::new(), EditList::new(), Message::empty());
    let h = handle(
        &st,
        Bytes::from(bytes),
        &mut msg,
        &o,
        &mut out,
        &mut edits,
        &mut |_| {},
    )
    .expect("bext01 parses");
    assert!(matches!(h, Handled::Respond(_, 420)), "{h:?}");
    let r = String::from_utf8(out).unwrap();
    assert!(r.starts_with("SIP/2.0 420 Bad Extension\r\n"), "{r}");
    assert!(
        r.contains("\r\nUnsupported: noProxiesSupportThis, norDoAnyProxiesSupportThis\r\n"),
        "{r}"
    );
    assert!(!r.contains("nothingSupportsThis"), "{r}");
}

/// The corpus through `judge`, the way replay and `explain` judge a request: the odd
/// messages RFC 4475 says an element answers are answered with the RFC's code (the
/// proxy answers the same, by the same checks), and no other request is refused by the
/// protocol checks.
#[test]
fn replay_and_explain_answer_the_odd_messages_as_the_proxy_does() {
    use sipfence::decide::{Context, Outcome, judge};
    let Some(shared) = common::shared_dir() else {
        return;
    };
    let dir = shared.join("corpus/rfc4475");
    let tsv = std::fs::read_to_string(dir.join("expected.tsv")).expect("expected.tsv");
    let policy = sipfence::policy::Policy::builtin().expect("built-in policy");
    let ctx = Context {
        source: "127.0.0.1:5070".parse().unwrap(),
        local: None,
        trunk: None,
        now_ms: 1_796_004_000_000,
        wall_ms: 1_796_004_000_000,
        rates: &sipfence::policy::rate::NoCounting,
        behaviour: &sipfence::behaviour::NoTracking,
    };
    let mut refused = vec![];
    for line in tsv.lines().skip(1) {
        let name = line.split('\t').next().unwrap();
        let bytes = std::fs::read(dir.join(format!("{name}.dat"))).expect("message file");
        let Ok(m) = Message::parse(Bytes::from(bytes)) else {
            continue;
        };
        let d = judge(&policy, &m, &ctx);
        if let Some(r) = d.refusal {
            let code = match d.outcome {
                Outcome::Reject { code } => code,
                _ => 0,
            };
            assert_eq!(code, r.code, "{name}");
            refused.push(format!("{name} {code}"));
        }
    }
    assert_eq!(
        refused,
        [
            "insuf 400",
            "bext01 420",
            "multi01 400",
            "mcl01 400",
            "zeromf 483"
        ],
        "protocol refusals"
    );
}
