use super::*;
use crate::behaviour::NoTracking;
use crate::policy::rate::NoCounting;

const POLICY: &str = r#"
[[trunk]]
name = "ic"
role = "interconnect"
listen = ["udp:192.0.2.10:5060"]
sources = ["198.51.100.0/24"]
next_hop = "udp:10.0.0.5:5060"
record_route = true
"#;

fn step(p: &Policy) -> Step<'_> {
    Step {
        policy: p,
        rates: &NoCounting,
        behaviour: &NoTracking,
        now_ms: 0,
        wall_ms: 0,
        via_addr: "10.0.0.1:5060".parse().unwrap(),
        via_other: None,
        overloaded: false,
        draining: false,
        next_hops: &NoNextHops,
    }
}

/// OPTIONS to the proxy (a sip URI with no user) is answered; one to a URI of
/// another scheme is no keep-alive of ours and goes on like any request.
#[test]
fn options_to_other_schemes_go_on() {
    let p = Policy::from_str(POLICY, "t.toml", std::path::Path::new(".")).unwrap();
    let options = |ruri: &str| {
        format!(
            "OPTIONS {ruri} SIP/2.0\r\nVia: SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bK-o\r\nFrom: <sip:a@198.51.100.7>;tag=1\r\nTo: <{ruri}>\r\nCall-ID: opt\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        )
    };
    let (h, out) = run(&p, "198.51.100.7:5060", &options("sip:192.0.2.10:5060"));
    assert!(matches!(h, Handled::Respond(_, 200)), "{out}");
    // A hop probe (`Max-Forwards: 0`) and an unknown Proxy-Require are a proxy's
    // business, not a UAS's: answered 200 too (QA 30). Forwarded OPTIONS still
    // count hops.
    let probe = |ruri: &str, extra: &str| {
        options(ruri).replace(
            "Max-Forwards: 70\r\n",
            &format!("Max-Forwards: 0\r\n{extra}"),
        )
    };
    for extra in ["", "Proxy-Require: foo\r\n"] {
        let (h, out) = run(
            &p,
            "198.51.100.7:5060",
            &probe("sip:192.0.2.10:5060", extra),
        );
        assert!(matches!(h, Handled::Respond(_, 200)), "{out}");
    }
    let (h, out) = run(
        &p,
        "198.51.100.7:5060",
        &probe("sip:+8613912345678@192.0.2.10", ""),
    );
    assert!(matches!(h, Handled::Respond(_, 483)), "{out}");
    // An ACK with no hops left cannot be answered: dropped, from a trunk and from
    // the core alike (QA 39: it was forwarded with Max-Forwards 0); with hops left
    // it goes on.
    let ack = |mf: u8| {
        format!(
            "ACK sip:+8613912345678@198.51.100.7 SIP/2.0\r\nVia: SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bK-a\r\nFrom: <sip:a@198.51.100.7>;tag=1\r\nTo: <sip:b@192.0.2.10>;tag=2\r\nCall-ID: ack\r\nCSeq: 1 ACK\r\nMax-Forwards: {mf}\r\nContent-Length: 0\r\n\r\n"
        )
    };
    for from in ["198.51.100.7:5060", "10.0.0.5:5060"] {
        let (h, out) = run(&p, from, &ack(0));
        assert!(
            matches!(h, Handled::Dropped("no-hops-left")),
            "{from}: {out}"
        );
        let (h, out) = run(&p, from, &ack(1));
        assert!(matches!(h, Handled::Forward(_)), "{from}: {out}");
        assert!(out.contains("\r\nMax-Forwards: 0\r\n"), "{out}");
    }
    // A Require it answers itself: sipfence implements no extension (QA 32).
    let (h, out) = run(
        &p,
        "198.51.100.7:5060",
        &probe("sip:192.0.2.10:5060", "Require: foo, 100rel\r\n"),
    );
    assert!(matches!(h, Handled::Respond(_, 420)), "{out}");
    assert!(out.contains("\r\nUnsupported: foo, 100rel\r\n"), "{out}");
    for ruri in [
        "nobodyKnowsThisScheme:totallyopaquecontent",
        "soap.beep://192.0.2.103:3002",
        "tel:+8613812345678",
    ] {
        let (h, out) = run(&p, "198.51.100.7:5060", &options(ruri));
        assert!(matches!(h, Handled::Forward(_)), "{ruri}: {out}");
        assert!(
            out.starts_with(&format!("OPTIONS {ruri} SIP/2.0\r\n")),
            "{out}"
        );
    }
}

/// A response is relayed only to a host a forwarded request could have come from,
/// and, with `unknown-source = drop`, only from a host the gateway accepts anything
/// from: our branch prefix alone does not make a datagram ours to send on.
#[test]
fn forged_responses_go_nowhere() {
    let answer = |below: &str| {
        format!(
            "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKsf0123456789abcdef\r\nVia: SIP/2.0/UDP {below};branch=z9hG4bK-x\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:c@d>;tag=2\r\nCall-ID: forged\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
        )
    };
    let p = Policy::from_str(POLICY, "t.toml", std::path::Path::new(".")).unwrap();
    // From the core, to the trunk's peer: relayed.
    let (h, _) = run(&p, "10.0.0.5:5060", &answer("198.51.100.7:5060"));
    assert!(
        matches!(h, Handled::Forward(Dest::Udp(a)) if a == "198.51.100.7:5060".parse().unwrap())
    );
    // To a host behind the gateway that never sent us anything: dropped, even with
    // `received` pointing there, or from the trunk's own peer.
    for (from, below) in [
        ("10.0.0.5:5060", "10.20.30.40:5060"),
        ("10.0.0.5:5060", "198.51.100.7:5060;received=10.20.30.40"),
        ("198.51.100.9:5060", "10.20.30.40:5060"),
    ] {
        let (h, out) = run(&p, from, &answer(below));
        assert!(
            matches!(h, Handled::Dropped("response-unknown-destination")),
            "{below}"
        );
        assert!(out.is_empty());
    }
    // A core's answer to its own request (in-dialog, towards the core): relayed.
    let (h, _) = run(&p, "198.51.100.7:5060", &answer("10.0.0.5:5060"));
    assert!(matches!(h, Handled::Forward(_)));
    // From an address no trunk claims, with `unknown-source = drop`: not carried at
    // all; with the default reject it is carried to a known peer.
    let (h, _) = run(&p, "203.0.113.9:5060", &answer("198.51.100.7:5060"));
    assert!(matches!(h, Handled::Forward(_)));
    let drop = Policy::from_str(
        &format!("{POLICY}\n[rules.unknown-source]\naction = \"drop\"\n"),
        "t.toml",
        std::path::Path::new("."),
    )
    .unwrap();
    let (h, _) = run(&drop, "203.0.113.9:5060", &answer("198.51.100.7:5060"));
    assert!(matches!(h, Handled::Dropped("unknown-source")));
    let (h, _) = run(&drop, "10.0.0.5:5060", &answer("198.51.100.7:5060"));
    assert!(matches!(h, Handled::Forward(_)));
    // No policy lets a stranger's requests on (so that any requester would be
    // answered): unknown-source rejects or drops.
    for action in ["monitor", "off", "label"] {
        let open = Policy::from_str(
            &format!("{POLICY}\n[rules.unknown-source]\naction = \"{action}\"\n"),
            "t.toml",
            std::path::Path::new("."),
        );
        assert!(open.is_err(), "{action}");
    }
}

fn run(p: &Policy, from: &str, text: &str) -> (Handled, String) {
    let (h, out, _) = run_observed(p, from, text);
    (h, out)
}

/// As [`run`], with the codes of the core's requests answered here.
fn run_observed(p: &Policy, from: &str, text: &str) -> (Handled, String, Vec<u16>) {
    run_observed_at(p, from, "192.0.2.10:5060", text)
}

/// As [`run_observed`], the message having come to `to`.
fn run_observed_at(p: &Policy, from: &str, to: &str, text: &str) -> (Handled, String, Vec<u16>) {
    run_on(&step(p), from, to, text)
}

/// As [`run_observed_at`], through the step `st` (another tracker or counter).
fn run_on(st: &Step<'_>, from: &str, to: &str, text: &str) -> (Handled, String, Vec<u16>) {
    let (h, out, core, _) = run_over(st, from, to, Transport::Udp, text);
    (h, out, core)
}

/// `text` through the step `st`, from `from` to the listener `to` over `t` (TCP: on
/// connection 7): what became of it, what went out, the core's requests answered
/// here and the NAT flow events reported.
fn run_over(
    st: &Step<'_>,
    from: &str,
    to: &str,
    t: Transport,
    text: &str,
) -> (Handled, String, Vec<u16>, Vec<&'static str>) {
    let o = Origin {
        source: from.parse().unwrap(),
        local: ListenSpec {
            transport: t,
            addr: to.parse().unwrap(),
        },
        conn: (t == Transport::Tcp).then_some(7),
    };
    let (mut out, mut edits, mut core, mut flows) = (Vec::new(), EditList::new(), vec![], vec![]);
    let h = handle(
        st,
        Bytes::from(text.to_string()),
        &mut Message::empty(),
        &o,
        &mut out,
        &mut edits,
        &mut |ob| match ob {
            Observed::CoreRefused(code) => core.push(code),
            Observed::Flow(e) => flows.push(e),
            _ => {}
        },
    )
    .unwrap();
    (h, String::from_utf8(out).unwrap(), core, flows)
}

/// The NAT flow events `text` makes, arriving from `from`.
fn flow_events(p: &Policy, from: &str, text: &str) -> Vec<&'static str> {
    run_over(&step(p), from, "192.0.2.10:5060", Transport::Udp, text).3
}

/// The core's requests answered here instead of relayed are reported (N3 of QA 85:
/// a loop between core and gateway answered 482/483 showed nowhere); a trunk's
/// refusals, the core's requests that go on and the OPTIONS answered 200 are not.
#[test]
fn the_cores_requests_answered_here_are_reported() {
    let p = Policy::from_str(POLICY, "t.toml", std::path::Path::new(".")).unwrap();
    let bye = |via: &str, mf: u8| {
        format!(
            "BYE sip:+8613912345678@198.51.100.7 SIP/2.0\r\nVia: SIP/2.0/UDP {via}\r\nFrom: <sip:b@192.0.2.10>;tag=2\r\nTo: <sip:a@198.51.100.7>;tag=1\r\nCall-ID: bye\r\nCSeq: 2 BYE\r\nMax-Forwards: {mf}\r\nContent-Length: 0\r\n\r\n"
        )
    };
    let core = "10.0.0.5:5060";
    let (h, out, seen) = run_observed(&p, core, &bye("10.0.0.5:5060;branch=z9hG4bK-b", 0));
    assert!(matches!(h, Handled::Respond(_, 483)), "{out}");
    assert_eq!(seen, [483]);
    let ours = format!(
        "10.0.0.1:5060;branch={}x",
        String::from_utf8_lossy(BRANCH_PREFIX)
    );
    let (h, out, seen) = run_observed(&p, core, &bye(&ours, 70));
    assert!(matches!(h, Handled::Respond(_, 482)), "{out}");
    assert_eq!(seen, [482]);
    let (h, out, seen) = run_observed(&p, core, &bye("10.0.0.5:5060;branch=z9hG4bK-b", 70));
    assert!(matches!(h, Handled::Forward(_)), "{out}");
    assert!(seen.is_empty());
    // The trunk's own refusal is a decision, not the core's.
    let trunk = "198.51.100.7:5060";
    let (h, out, seen) = run_observed(&p, trunk, &bye("198.51.100.7:5060;branch=z9hG4bK-t", 0));
    assert!(matches!(h, Handled::Respond(_, 483)), "{out}");
    assert!(seen.is_empty());
}

/// [`POLICY`] with one call at a time on its trunk.
fn capped() -> Policy {
    Policy::from_str(
        &format!("{POLICY}max_concurrent_calls = 1\n"),
        "t.toml",
        std::path::Path::new("."),
    )
    .unwrap()
}

/// The core (10.0.0.5:5060) stopped answering its probes.
struct Silent;
impl NextHops for Silent {
    fn refuses(&self, _to: SocketAddr, _local: SocketAddr) -> Option<&'static str> {
        None
    }
    fn some_down(&self) -> bool {
        true
    }
    fn silent(&self, to: SocketAddr, _transport: Transport) -> bool {
        to == "10.0.0.5:5060".parse().unwrap()
    }
}

/// A call from the trunk's peer (198.51.100.7), Call-ID and tags named by `id`.
fn peer_invite(id: &str) -> String {
    format!(
        "INVITE sip:+8613912345678@192.0.2.10 SIP/2.0\r\nVia: SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bK-{id}\r\nFrom: <sip:+8613812345678@198.51.100.7>;tag=a{id}\r\nTo: <sip:+8613912345678@192.0.2.10>\r\nCall-ID: {id}\r\nCSeq: 1 INVITE\r\nContact: <sip:+8613812345678@198.51.100.7:5060>\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    )
}

/// The Via lines of a forwarded request, for the answer the core gives it.
fn vias_of(out: &str) -> String {
    out.lines()
        .filter(|l| l.starts_with("Via:"))
        .map(|l| format!("{l}\r\n"))
        .collect()
}

/// A peer whose Contact names the gateway gets the core's BYE sent back here,
/// answered 482; the core holds the call over all the same, so its concurrent place
/// is free again (QA 90 N6: held until the four-hour bound).
#[test]
fn a_core_bye_answered_here_ends_the_call() {
    let p = capped();
    let calls = crate::behaviour::local::LocalTracker::new(64, 64);
    let st = Step {
        behaviour: &calls,
        ..step(&p)
    };
    let run = |from: &str, text: String| {
        let (h, out, _) = run_on(&st, from, "192.0.2.10:5060", &text);
        (h, out)
    };
    let invite = |id: &str| {
        format!(
            "INVITE sip:+8613912345678@192.0.2.10 SIP/2.0\r\nVia: SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bK-{id}\r\nFrom: <sip:+8613812345678@198.51.100.7>;tag=a{id}\r\nTo: <sip:+8613912345678@192.0.2.10>\r\nCall-ID: {id}\r\nCSeq: 1 INVITE\r\nContact: <sip:+8613812345678@192.0.2.10:5060>\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        )
    };
    let peer = "198.51.100.7:5060";
    let (h, out) = run(peer, invite("n6-1"));
    assert!(matches!(h, Handled::Forward(_)), "{out}");
    // The core answers (through our Via); the call is up.
    let vias = vias_of(&out);
    let ok = format!(
        "SIP/2.0 200 OK\r\n{vias}From: <sip:+8613812345678@198.51.100.7>;tag=an6-1\r\nTo: <sip:+8613912345678@192.0.2.10>;tag=core\r\nCall-ID: n6-1\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
    );
    let (h, out) = run("10.0.0.5:5060", ok);
    assert!(matches!(h, Handled::Forward(_)), "{out}");
    let (h, out) = run(peer, invite("n6-2"));
    assert!(matches!(h, Handled::Respond(_, 503)), "{out}");
    let bye = "BYE sip:+8613812345678@192.0.2.10:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bK-n6b\r\nFrom: <sip:+8613912345678@192.0.2.10>;tag=core\r\nTo: <sip:+8613812345678@198.51.100.7>;tag=an6-1\r\nCall-ID: n6-1\r\nCSeq: 2 BYE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n";
    let (h, out) = run("10.0.0.5:5060", bye.to_string());
    assert!(matches!(h, Handled::Respond(_, 482)), "{out}");
    let (h, out) = run(peer, invite("n6-3"));
    assert!(matches!(h, Handled::Forward(_)), "{out}");
}

/// A core outage holds no concurrent-call place for long (QA 124: after a UDP core
/// died and came back, the trunk refused calls for a minute, and places stayed held
/// with no call up): an INVITE sent before the core was marked down ends at the
/// 503 its retransmission gets here; an answered call whose caller's BYE the core
/// never answered ends when the core is found down, not before (QA 127: a core may
/// drop a BYE and keep the call), and one whose BYE the core refused (481: QA 47)
/// stays up.
#[test]
fn a_core_outage_holds_no_concurrent_place() {
    use crate::behaviour::BehaviourTracker;
    let p = capped();
    let calls = crate::behaviour::local::LocalTracker::new(64, 64);
    let t0 = step(&p).now_ms;
    let run = |at: u64, down: bool, from: &str, text: &str| {
        let st = Step {
            behaviour: &calls,
            now_ms: t0 + at,
            wall_ms: t0 + at,
            next_hops: if down { &Silent } else { &NoNextHops },
            ..step(&p)
        };
        let (h, out, _) = run_on(&st, from, "192.0.2.10:5060", text);
        (h, out)
    };
    let (peer, core) = ("198.51.100.7:5060", "10.0.0.5:5060");
    let forwarded = |h: &Handled, out: &str| assert!(matches!(h, Handled::Forward(_)), "{out}");
    let full = |h: &Handled, out: &str| {
        assert!(
            matches!(h, Handled::Respond(_, 503)) && out.contains("concurrent"),
            "{out}"
        )
    };
    // Sent, and lost in a core that died; its retransmission, once the core is
    // marked down, gets 503 here.
    let (h, out) = run(0, false, peer, &peer_invite("o1"));
    forwarded(&h, &out);
    let (h, out) = run(1_000, false, peer, &peer_invite("o2"));
    full(&h, &out);
    let (h, out) = run(30_000, true, peer, &peer_invite("o1"));
    assert!(
        matches!(h, Handled::Respond(_, 503)) && out.contains("Next hop not answering"),
        "{out}"
    );
    // The core is back: the place is free.
    let (h, out) = run(40_000, false, peer, &peer_invite("o3"));
    forwarded(&h, &out);
    // Answered; then the caller's BYE, which the core never answers.
    let answer = |id: &str, out: &str| {
        format!(
            "SIP/2.0 200 OK\r\n{}From: <sip:+8613812345678@198.51.100.7>;tag=a{id}\r\nTo: <sip:+8613912345678@192.0.2.10>;tag=core{id}\r\nCall-ID: {id}\r\nCSeq: 1 INVITE\r\nContact: <sip:core@10.0.0.5>\r\nContent-Length: 0\r\n\r\n",
            vias_of(out)
        )
    };
    let (h, out) = run(40_100, false, core, &answer("o3", &out));
    forwarded(&h, &out);
    let bye = |id: &str| {
        format!(
            "BYE sip:core@10.0.0.5 SIP/2.0\r\nVia: SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bK-b{id}\r\nRoute: <sip:192.0.2.10:5060;lr>\r\nFrom: <sip:+8613812345678@198.51.100.7>;tag=a{id}\r\nTo: <sip:+8613912345678@192.0.2.10>;tag=core{id}\r\nCall-ID: {id}\r\nCSeq: 2 BYE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        )
    };
    let (h, out) = run(50_000, false, peer, &bye("o3"));
    forwarded(&h, &out);
    // Silence alone frees nothing (a core may drop a BYE and keep the call: QA
    // 127); the core found down does.
    let (h, out) = run(600_000, false, peer, &peer_invite("o4"));
    full(&h, &out);
    let behind = p.trunks_behind(core.parse().unwrap(), None);
    assert!(!behind.is_empty());
    // Found down, but the BYE went unanswered before the outage's window: the live
    // core's silence, not the outage's (QA 128).
    calls.next_hop_down(&behind, t0 + 50_001);
    let (h, out) = run(600_000, false, peer, &peer_invite("o4"));
    full(&h, &out);
    calls.next_hop_down(&behind, t0 + 50_000);
    let (h, out) = run(600_000, false, peer, &peer_invite("o5"));
    forwarded(&h, &out);
    // Answered; the caller's BYE refused by the core (481): the call is up still.
    let (h, out) = run(100_000, false, core, &answer("o5", &out));
    forwarded(&h, &out);
    let (h, out) = run(110_000, false, peer, &bye("o5"));
    forwarded(&h, &out);
    let refused = format!(
        "SIP/2.0 481 Call/Transaction Does Not Exist\r\n{}From: <sip:+8613812345678@198.51.100.7>;tag=ao5\r\nTo: <sip:+8613912345678@192.0.2.10>;tag=coreo5\r\nCall-ID: o5\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n",
        vias_of(&out)
    );
    let (h, out) = run(110_100, false, core, &refused);
    forwarded(&h, &out);
    calls.next_hop_down(&behind, t0 + 110_000);
    let (h, out) = run(700_000, false, peer, &peer_invite("o6"));
    full(&h, &out);
}

/// A caller's BYE answered 503 here because its TCP next hop is marked down ends its
/// call (QA 128: only the first BYE of an outage, the one that found the connection
/// failing, gave its place back; the later ones, refused at once, held theirs).
#[test]
fn a_bye_for_a_tcp_next_hop_down_ends_its_call() {
    let p = Policy::from_str(
        &format!("{POLICY}max_concurrent_calls = 1\n")
            .replace("udp:10.0.0.5:5060", "tcp:10.0.0.5:5060"),
        "t.toml",
        std::path::Path::new("."),
    )
    .unwrap();
    let calls = crate::behaviour::local::LocalTracker::new(64, 64);
    struct Unreachable;
    impl NextHops for Unreachable {
        fn refuses(&self, _to: SocketAddr, _local: SocketAddr) -> Option<&'static str> {
            Some(NEXT_HOP_UNREACHABLE)
        }
        fn some_down(&self) -> bool {
            true
        }
        fn silent(&self, _to: SocketAddr, _transport: Transport) -> bool {
            false
        }
    }
    let run = |down: bool, from: &str, text: &str| {
        let st = Step {
            behaviour: &calls,
            next_hops: if down { &Unreachable } else { &NoNextHops },
            ..step(&p)
        };
        let (h, out, _) = run_on(&st, from, "192.0.2.10:5060", text);
        (h, out)
    };
    let peer = "198.51.100.7:5060";
    let (h, out) = run(false, peer, &peer_invite("t1"));
    assert!(matches!(h, Handled::Forward(Dest::TcpTo(_))), "{out}");
    let vias = vias_of(&out);
    let ok = format!(
        "SIP/2.0 200 OK\r\n{vias}From: <sip:+8613812345678@198.51.100.7>;tag=at1\r\nTo: <sip:+8613912345678@192.0.2.10>;tag=core\r\nCall-ID: t1\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
    );
    let (h, out) = run(false, "10.0.0.5:5060", &ok);
    assert!(matches!(h, Handled::Forward(_)), "{out}");
    let (h, out) = run(false, peer, &peer_invite("t2"));
    assert!(
        matches!(h, Handled::Respond(_, 503)) && out.contains("concurrent"),
        "{out}"
    );
    let bye = "BYE sip:core@10.0.0.5 SIP/2.0\r\nVia: SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bK-bt1\r\nFrom: <sip:+8613812345678@198.51.100.7>;tag=at1\r\nTo: <sip:+8613912345678@192.0.2.10>;tag=core\r\nCall-ID: t1\r\nCSeq: 2 BYE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n";
    let (h, out) = run(true, peer, bye);
    assert!(
        matches!(h, Handled::Respond(_, 503)) && out.contains("Next hop unreachable"),
        "{out}"
    );
    let (h, out) = run(false, peer, &peer_invite("t3"));
    assert!(matches!(h, Handled::Forward(_)), "{out}");
}

/// A retransmission of a call let through, answered 503 while the gateway sheds
/// load or stops, ends the call: its place is given back, as a replay of the
/// capture (which sees that 503) gives it back.
#[test]
fn a_call_whose_retransmission_is_shed_gives_its_place_back() {
    let p = capped();
    let calls = crate::behaviour::local::LocalTracker::new(64, 64);
    let run = |overloaded: bool, draining: bool, id: &str| {
        let st = Step {
            behaviour: &calls,
            overloaded,
            draining,
            ..step(&p)
        };
        let (h, out, _) = run_on(
            &st,
            "198.51.100.7:5060",
            "192.0.2.10:5060",
            &peer_invite(id),
        );
        (h, out)
    };
    let (h, out) = run(false, false, "s1");
    assert!(matches!(h, Handled::Forward(_)), "{out}");
    let (h, out) = run(true, false, "s1");
    assert!(
        matches!(h, Handled::Shed(_)) && out.contains("Overloaded"),
        "{out}"
    );
    let (h, out) = run(false, false, "s2");
    assert!(matches!(h, Handled::Forward(_)), "{out}");
    let (h, out) = run(false, true, "s2");
    assert!(
        matches!(h, Handled::Shed(_)) && out.contains("Stopping"),
        "{out}"
    );
    let (h, out) = run(false, false, "s3");
    assert!(matches!(h, Handled::Forward(_)), "{out}");
}

/// Shedding (overload, drain) spares the retransmission of an INVITE judged within
/// its transaction: a call let through goes on again, a refused one gets its
/// refusal again (QA 149: during a drain a caller had 503 Stopping and then the
/// core's 200 for one INVITE); a new call is shed.
#[test]
fn shedding_spares_the_retransmissions_of_calls_judged() {
    let p = Policy::from_str(POLICY, "t.toml", std::path::Path::new(".")).unwrap();
    let rates = crate::policy::rate::LocalRateCounter::new(1024);
    let run_from = |from: &str, overloaded: bool, draining: bool, text: &str| {
        let st = Step {
            rates: &rates,
            overloaded,
            draining,
            now_ms: 1_000,
            wall_ms: 1_000,
            ..step(&p)
        };
        run_on(&st, from, "192.0.2.10:5060", text)
    };
    let run = |overloaded: bool, draining: bool, text: &str| {
        run_from("198.51.100.7:5060", overloaded, draining, text)
    };
    let blank = peer_invite("r2").replace("From: <sip:+8613812345678@", "From: <sip:anonymous@");
    let (h, out, _) = run(false, false, &peer_invite("r1"));
    assert!(matches!(h, Handled::Forward(_)), "{out}");
    let (h, refused, _) = run(false, false, &blank);
    let code = match h {
        Handled::Respond(_, c) => c,
        _ => panic!("{refused}"),
    };
    assert!(code >= 400 && code != 503, "{refused}");
    for (overloaded, draining) in [(true, false), (false, true)] {
        let (h, out, _) = run(overloaded, draining, &peer_invite("r1"));
        assert!(matches!(h, Handled::Forward(_)), "{out}");
        let (h, out, _) = run(overloaded, draining, &blank);
        assert!(matches!(h, Handled::Respond(_, c) if c == code), "{out}");
        let (h, out, _) = run(overloaded, draining, &peer_invite("r3"));
        assert!(matches!(h, Handled::Shed(_)), "{out}");
    }
    // The retry with credentials the core's 407 asked for is the call under way
    // too (QA 151: it was shed); one the core did not ask for is shed.
    let (h, out, _) = run(false, false, &peer_invite("r4"));
    assert!(matches!(h, Handled::Forward(_)), "{out}");
    let challenge = format!(
        "SIP/2.0 407 Proxy Authentication Required\r\n{}From: <sip:+8613812345678@198.51.100.7>;tag=ar4\r\nTo: <sip:+8613912345678@192.0.2.10>;tag=c4\r\nCall-ID: r4\r\nCSeq: 1 INVITE\r\nProxy-Authenticate: Digest realm=\"core\", nonce=\"n4\"\r\nContent-Length: 0\r\n\r\n",
        vias_of(&out)
    );
    let (h, out, _) = run_from("10.0.0.5:5060", false, false, &challenge);
    assert!(matches!(h, Handled::Forward(_)), "{out}");
    let retry = |id: &str| {
        peer_invite(id)
            .replace("CSeq: 1 INVITE", "CSeq: 2 INVITE")
            .replace(&format!("z9hG4bK-{id}"), &format!("z9hG4bK-{id}-2"))
    };
    let (h, out, _) = run(false, true, &retry("r4"));
    assert!(matches!(h, Handled::Forward(_)), "{out}");
    let (h, out, _) = run(false, true, &retry("r5"));
    assert!(matches!(h, Handled::Shed(_)), "{out}");
}

/// During a drain, the INVITE that answers this gateway's own challenge rightly is the
/// call under way and goes on (QA 198 F3: answered 503 Stopping, the PBX had to start
/// the call over at another gateway); a wrong answer, a stale nonce and a new call are
/// shed, and under overload the right answer is too.
#[test]
fn a_drain_lets_the_answer_to_our_own_challenge_on() {
    use md5::{Digest, Md5};
    let p = Policy::from_str(
        &format!("{POLICY}[trunk.auth]\nrealm = \"gw\"\nusers = [\"pbx:pw\"]\n"),
        "t.toml",
        std::path::Path::new("."),
    )
    .unwrap();
    let a = p.trunks[0].auth.as_ref().unwrap();
    let hex = |d: &[u8]| d.iter().map(|b| format!("{b:02x}")).collect::<String>();
    let answered = |id: &str, pw: &str, issued_ms: u64| {
        let nonce = a.nonce(issued_ms, 7, Some("198.51.100.7".parse().unwrap()));
        let uri = "sip:+8613912345678@192.0.2.10";
        let ha1 = hex(&Md5::digest(format!("pbx:gw:{pw}")));
        let ha2 = hex(&Md5::digest(format!("INVITE:{uri}")));
        let response = hex(&Md5::digest(format!("{ha1}:{nonce}:{ha2}")));
        peer_invite(id).replace(
            "Max-Forwards: 70\r\n",
            &format!(
                "Max-Forwards: 70\r\nProxy-Authorization: Digest username=\"pbx\", realm=\"gw\", nonce=\"{nonce}\", uri=\"{uri}\", response=\"{response}\"\r\n"
            ),
        )
    };
    let now = 1_796_000_000_000;
    let run = |overloaded: bool, draining: bool, text: &str| {
        let st = Step {
            overloaded,
            draining,
            now_ms: now,
            wall_ms: now,
            ..step(&p)
        };
        run_on(&st, "198.51.100.7:5060", "192.0.2.10:5060", text)
    };
    let (h, out, _) = run(false, true, &answered("d1", "pw", now - 5_000));
    assert!(matches!(h, Handled::Forward(_)), "{out}");
    for (overloaded, draining, text) in [
        (false, true, answered("d2", "wrong", now - 5_000)),
        (false, true, answered("d3", "pw", now - 3_600_000)),
        (false, true, peer_invite("d4")),
        (true, false, answered("d5", "pw", now - 5_000)),
    ] {
        let (h, out, _) = run(overloaded, draining, &text);
        assert!(
            matches!(h, Handled::Shed(_)),
            "{overloaded} {draining}: {out}"
        );
    }
}

/// What the core sends towards a trunk's peer: a call it offers the peer is
/// record-routed as the peer's calls are (QA 89 F1: the peer's BYE went around the
/// gateway), our Record-Route before our Via so that the Vias stay together (F6);
/// a request routed to sipfence itself is answered 482, not sent to its own socket
/// (F2: it came back as a stranger's refused call); RFC 3261 16.3's checks hold
/// for the core's requests too (F4).
#[test]
fn the_cores_requests_towards_a_peer() {
    let p = Policy::from_str(POLICY, "t.toml", std::path::Path::new(".")).unwrap();
    let core = "10.0.0.5:5060";
    let invite = |ruri: &str, extra: &str| {
        format!(
            "INVITE {ruri} SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bK-c1\r\nRoute: <sip:192.0.2.10:5060;lr>\r\nFrom: <sip:+8613912345678@10.0.0.5>;tag=c\r\nTo: <{ruri}>\r\nCall-ID: out-1\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\n{extra}Content-Length: 0\r\n\r\n"
        )
    };
    let (h, out, seen) = run_observed(&p, core, &invite("sip:+8613812345678@198.51.100.7", ""));
    assert_eq!(
        h,
        Handled::Forward(Dest::Udp("198.51.100.7:5060".parse().unwrap()))
    );
    assert!(seen.is_empty());
    // The peer reaches us where it sends its calls (first), the core where it sent
    // this one (second).
    let rr = out
            .find("\r\nRecord-Route: <sip:10.0.0.1:5060;lr>, <sip:192.0.2.10:5060;lr>\r\nVia: SIP/2.0/UDP 10.0.0.1:5060;")
            .unwrap_or_else(|| panic!("{out}"));
    let theirs = out
        .find("\r\nVia: SIP/2.0/UDP 10.0.0.5:5060")
        .unwrap_or_default();
    assert!(rr < theirs, "{out}");
    assert!(!out.contains("Route: <sip:192.0.2.10"), "{out}");
    // A peer's call: the same order (the Vias together).
    let call = "INVITE sip:+8613912345678@192.0.2.10 SIP/2.0\r\nVia: SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bK-p1\r\nFrom: <sip:+8613812345678@198.51.100.7>;tag=a\r\nTo: <sip:+8613912345678@192.0.2.10>\r\nCall-ID: in-1\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n";
    let (_, out, _) = run_observed(&p, "198.51.100.7:5060", call);
    assert!(
            out.contains("\r\nRecord-Route: <sip:10.0.0.1:5060;lr>, <sip:192.0.2.10:5060;lr>\r\nVia: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKsf"),
            "{out}"
        );
    let ours = out.find("Via: SIP/2.0/UDP 10.0.0.1").unwrap_or_default();
    let next = out[ours..].find("\r\n").map_or(0, |e| ours + e + 2);
    assert!(
        out[next..].starts_with("Via: SIP/2.0/UDP 198.51.100.7"),
        "{out}"
    );
    // Two trunks claiming the peer on two ports: the one the core sent the call
    // to says (QA 90 N5: the first in the file did).
    let two = Policy::from_str(
            &format!(
                "{}\n[[trunk]]\nname = \"ic2\"\nrole = \"interconnect\"\nlisten = [\"udp:192.0.2.10:5070\"]\nsources = [\"198.51.100.0/24\"]\nnext_hop = \"udp:10.0.0.5:5060\"\nrecord_route = true\n",
                POLICY.replace("record_route = true", "record_route = false")
            ),
            "t.toml",
            std::path::Path::new("."),
        )
        .unwrap();
    let two_rr = Policy::from_str(
            &format!(
                "{POLICY}\n[[trunk]]\nname = \"ic2\"\nrole = \"interconnect\"\nlisten = [\"udp:192.0.2.10:5070\"]\nsources = [\"198.51.100.0/24\"]\nnext_hop = \"udp:10.0.0.5:5060\"\n"
            ),
            "t.toml",
            std::path::Path::new("."),
        )
        .unwrap();
    let offer = invite("sip:+8613812345678@198.51.100.7", "")
        .replace("<sip:192.0.2.10:5060;lr>", "<sip:192.0.2.10:5070;lr>");
    for (p, to, rr) in [
        (&two, "192.0.2.10:5070", true),
        (&two, "192.0.2.10:5060", false),
        (&two_rr, "192.0.2.10:5070", false),
        (&two_rr, "192.0.2.10:5060", true),
    ] {
        let (h, out, _) = run_observed_at(p, core, to, &offer);
        assert!(matches!(h, Handled::Forward(_)), "{out}");
        assert_eq!(out.contains("Record-Route"), rr, "{to}: {out}");
    }
    // Not a call of a trunk's (an address no trunk claims): no Record-Route.
    let (h, out, _) = run_observed(&p, core, &invite("sip:+8613812345678@203.0.113.9", ""));
    assert!(matches!(h, Handled::Forward(_)), "{out}");
    assert!(!out.contains("Record-Route"), "{out}");
    // Routed to sipfence itself (its address as the target, mapped IPv4 too).
    for ruri in [
        "sip:+8613812345678@192.0.2.10:5060",
        "sip:+8613812345678@[::ffff:10.0.0.1]",
    ] {
        let (h, out, seen) = run_observed(&p, core, &invite(ruri, ""));
        assert!(matches!(h, Handled::Respond(_, 482)), "{ruri}: {out}");
        assert_eq!(seen, [482]);
    }
    // A Proxy-Require sipfence does not accept, in a request of the core's.
    let (h, out, seen) = run_observed(
        &p,
        core,
        &invite("sip:+8613812345678@198.51.100.7", "Proxy-Require: foo\r\n"),
    );
    assert!(matches!(h, Handled::Respond(_, 420)), "{out}");
    assert!(out.contains("\r\nUnsupported: foo\r\n"), "{out}");
    assert_eq!(seen, [420]);
    // A ping of the core's with a Require: 420, as a UAS answers (a trunk's too).
    let ping = "OPTIONS sip:192.0.2.10 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bK-o\r\nFrom: <sip:core@10.0.0.5>;tag=1\r\nTo: <sip:192.0.2.10>\r\nCall-ID: opt\r\nCSeq: 1 OPTIONS\r\nRequire: foo, bar\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n";
    let (h, out, seen) = run_observed(&p, core, ping);
    assert!(matches!(h, Handled::Respond(_, 420)), "{out}");
    assert!(out.contains("\r\nUnsupported: foo, bar\r\n"), "{out}");
    assert_eq!(seen, [420]);
}

/// The core's OPTIONS to sipfence itself are answered 200, as a trunk's are: a core
/// pinging its gateway (Kamailio's dispatcher, an SBC's session-agent ping) got
/// sipfence's own 482, the ping relayed to itself, and took the gateway for down.
/// One naming another address goes on.
#[test]
fn the_cores_pings_are_answered() {
    let p = Policy::from_str(POLICY, "t.toml", std::path::Path::new(".")).unwrap();
    let options = |ruri: &str, to_tag: &str, mf: u8| {
        format!(
            "OPTIONS {ruri} SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bK-o\r\nFrom: <sip:core@10.0.0.5>;tag=1\r\nTo: <{ruri}>{to_tag}\r\nCall-ID: opt\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: {mf}\r\nContent-Length: 0\r\n\r\n"
        )
    };
    let core = "10.0.0.5:5060";
    for ruri in [
        "sip:192.0.2.10:5060",
        "sip:192.0.2.10",
        "sip:ping@192.0.2.10:5060",
        "sip:10.0.0.1",
        "sips:gw.example.net",
    ] {
        for mf in [70, 0] {
            let (h, out, seen) = run_observed(&p, core, &options(ruri, "", mf));
            assert!(matches!(h, Handled::Respond(_, 200)), "{ruri}: {out}");
            assert!(out.contains("\r\nAllow: INVITE, "), "{out}");
            assert!(seen.is_empty());
        }
    }
    for ruri in [
        "sip:198.51.100.7:5060",
        "sip:192.0.2.10:5070",
        "sip:ping@198.51.100.7",
    ] {
        let (h, out, _) = run_observed(&p, core, &options(ruri, "", 70));
        assert!(matches!(h, Handled::Forward(_)), "{ruri}: {out}");
    }
    // From the core's host on another port (its dispatcher's socket) too.
    let (h, out, _) = run_observed(&p, "10.0.0.5:41234", &options("sip:192.0.2.10", "", 70));
    assert!(matches!(h, Handled::Respond(_, 200)), "{out}");
    // In a dialog it is the core's request towards the peer, not a ping of ours.
    let (h, out, _) = run_observed(&p, core, &options("sip:192.0.2.10", ";tag=9", 70));
    assert!(!matches!(h, Handled::Respond(_, 200)), "{out}");
}

/// Under `unknown-source = drop`, every ACK from a stranger is that drop, well-formed
/// or broken, with hops left or none (QA 41: `no-trunk`, `bad-ack`); a trunk's
/// broken ACK stays `bad-ack`.
#[test]
fn a_strangers_acks_are_the_unknown_source_drop() {
    let p = Policy::from_str(
        &format!("{POLICY}[rules.unknown-source]\naction = \"drop\"\n"),
        "t.toml",
        std::path::Path::new("."),
    )
    .unwrap();
    let ack = |extra: &str, call_id: &str| {
        format!(
            "ACK sip:+8613912345678@192.0.2.10 SIP/2.0\r\nVia: SIP/2.0/UDP 203.0.113.9:5060;branch=z9hG4bK-a\r\nFrom: <sip:a@203.0.113.9>;tag=1\r\nTo: <sip:b@192.0.2.10>;tag=2\r\n{call_id}CSeq: 1 ACK\r\n{extra}Content-Length: 0\r\n\r\n"
        )
    };
    let good = "Call-ID: a1\r\n";
    for (m, why) in [
        (ack("Max-Forwards: 70\r\n", good), "well-formed"),
        (ack("Max-Forwards: 0\r\n", good), "no hops"),
        (ack("Max-Forwards: 70\r\n", ""), "no Call-ID"),
    ] {
        let (h, _) = run(&p, "203.0.113.9:5060", &m);
        assert!(matches!(h, Handled::Dropped("unknown-source")), "{why}");
    }
    let (h, _) = run(&p, "198.51.100.7:5060", &ack("Max-Forwards: 70\r\n", ""));
    assert!(matches!(h, Handled::Dropped("bad-ack")));
}

fn with_body(head: &str, body_len: usize) -> String {
    format!(
        "{head}Content-Type: text/plain\r\nContent-Length: {body_len}\r\n\r\n{}",
        "x".repeat(body_len)
    )
}

/// RFC 3261 18.1.1: with `udp_mtu` set, a request over it goes to the same next hop
/// over TCP, our Via saying so; without it, only a request no datagram can hold is
/// refused (513), to the sender, instead of failing to send.
#[test]
fn requests_too_large_for_udp_go_over_tcp_or_get_513() {
    let invite = "INVITE sip:+8613912345678@192.0.2.10 SIP/2.0\r\nVia: SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bK-big\r\nFrom: <sip:+8613812345678@198.51.100.7>;tag=a\r\nTo: <sip:+8613912345678@192.0.2.10>\r\nCall-ID: big-1\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\n";
    let next: SocketAddr = "10.0.0.5:5060".parse().unwrap();
    let p = Policy::from_str(
        &format!("[proxy]\nudp_mtu = 1300\n{POLICY}"),
        "t.toml",
        std::path::Path::new("."),
    )
    .unwrap();
    let (h, out) = run(&p, "198.51.100.7:5060", &with_body(invite, 1200));
    assert_eq!(h, Handled::Forward(Dest::TcpTo(next)));
    assert!(out.starts_with("INVITE "), "{out}");
    assert!(
        out.contains("\r\nVia: SIP/2.0/TCP 10.0.0.1:5060;branch="),
        "{out}"
    );
    assert!(!out.contains("SIP/2.0/UDP 10.0.0.1"), "{out}");
    // The Record-Route names TCP too, for the core's in-dialog requests.
    assert!(
        out.contains("Record-Route: <sip:10.0.0.1:5060;lr;transport=tcp>"),
        "{out}"
    );
    let (h, out) = run(&p, "198.51.100.7:5060", &with_body(invite, 200));
    assert_eq!(h, Handled::Forward(Dest::Udp(next)));
    assert!(
        out.contains("\r\nVia: SIP/2.0/UDP 10.0.0.1:5060;branch="),
        "{out}"
    );
    // From the core: an in-dialog request to a UDP target, over the MTU.
    let bye = "BYE sip:+8613812345678@198.51.100.7 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bK-3\r\nRoute: <sip:10.0.0.1:5060;lr>, <sip:192.0.2.10:5060;lr>\r\nFrom: <sip:+8613912345678@192.0.2.10>;tag=b\r\nTo: <sip:+8613812345678@198.51.100.7>;tag=a\r\nCall-ID: big-1\r\nCSeq: 1 BYE\r\nMax-Forwards: 70\r\n";
    let (h, out) = run(&p, "10.0.0.5:5060", &with_body(bye, 1500));
    assert_eq!(
        h,
        Handled::Forward(Dest::TcpTo("198.51.100.7:5060".parse().unwrap()))
    );
    assert!(
        out.contains("\r\nVia: SIP/2.0/TCP 10.0.0.1:5060;branch="),
        "{out}"
    );
    assert!(!out.contains("Route: <sip:10.0.0.1:5060;lr>"), "{out}");

    // QA 30: a datagram needs no Content-Length, a stream does (RFC 3261 18.3). One
    // that came without, switched to TCP, leaves with the length of the body it
    // forwards, with CRLF or LF line ends; one under the MTU stays as it came.
    let framed = |m: &str| {
        let Ok(crate::sip::parse::Frame::Message { skip: 0, len }) =
            crate::sip::frame_stream(m.as_bytes())
        else {
            panic!("not framed: {m}");
        };
        assert_eq!(len, m.len(), "{m}");
        let parsed = Message::parse(Bytes::from(m.to_string())).unwrap();
        assert_eq!(parsed.max_forwards(), Some(69), "{m}");
        parsed.body().len()
    };
    for (head, nl) in [
        (invite.to_string(), "\r\n"),
        (invite.replace("\r\n", "\n"), "\n"),
    ] {
        let bare = |n: usize| format!("{head}Content-Type: text/plain{nl}{nl}{}", "y".repeat(n));
        let (h, out) = run(&p, "198.51.100.7:5060", &bare(1400));
        assert_eq!(h, Handled::Forward(Dest::TcpTo(next)));
        assert_eq!(framed(&out), 1400);
        // Bare LFs go on as CRLFs.
        assert!(out.contains("Content-Length: 1400\r\n\r\n"), "{out}");
        let (h, out) = run(&p, "198.51.100.7:5060", &bare(100));
        assert_eq!(h, Handled::Forward(Dest::Udp(next)));
        assert!(!out.contains("Content-Length"), "{out}");
    }
    let bare_bye = format!("{bye}\r\n{}", "z".repeat(1500));
    let (h, out) = run(&p, "10.0.0.5:5060", &bare_bye);
    assert!(matches!(h, Handled::Forward(Dest::TcpTo(_))), "{h:?}");
    assert_eq!(framed(&out), 1500);
    // QA 138: a folded Content-Length (RFC 3261 7.3.1) goes on unfolded, or a next
    // hop that frames its stream by a quick look for it refuses it and closes the
    // connection every call shares; folded before its value or after, with CRLF or
    // LF line ends, in full or compact form.
    for (head, nl) in [
        (invite.to_string(), "\r\n"),
        (invite.replace("\r\n", "\n"), "\n"),
    ] {
        for field in [
            format!("Content-Length:{nl} 5"),
            format!("l: 5{nl}\t"),
            format!("Content-Length:{nl}\t 5 {nl}  "),
        ] {
            let m = format!("{head}Content-Type: text/plain{nl}{field}{nl}{nl}hello");
            let (h, out) = run(&p, "198.51.100.7:5060", &m);
            assert_eq!(h, Handled::Forward(Dest::Udp(next)), "{m}");
            assert!(out.contains("\r\nContent-Length: 5\r\n\r\nhello"), "{out}");
            assert_eq!(framed(&out), 5);
        }
    }

    // No udp_mtu: UDP up to the largest datagram, 513 beyond it.
    let p = Policy::from_str(POLICY, "t.toml", std::path::Path::new(".")).unwrap();
    let (h, _) = run(&p, "198.51.100.7:5060", &with_body(invite, 60_000));
    assert_eq!(h, Handled::Forward(Dest::Udp(next)));
    let big = with_body(invite, 65_200);
    assert!(big.len() <= crate::sip::MAX_MESSAGE && big.len() > 65_000);
    let (h, out) = run(&p, "198.51.100.7:5060", &big);
    assert!(matches!(h, Handled::Respond(_, 513)), "{h:?}");
    assert!(
        out.starts_with("SIP/2.0 513 Message Too Large\r\n"),
        "{out}"
    );
    assert!(out.contains("Call-ID: big-1\r\n"));
    // Reported as what its caller got (QA 44, 45): a refusal of no policy rule.
    let o = Origin {
        source: "198.51.100.7:5060".parse().unwrap(),
        local: ListenSpec {
            transport: Transport::Udp,
            addr: "192.0.2.10:5060".parse().unwrap(),
        },
        conn: None,
    };
    let mut seen = None;
    let (mut out, mut edits) = (Vec::new(), EditList::new());
    let h = handle(
        &step(&p),
        Bytes::from(big),
        &mut Message::empty(),
        &o,
        &mut out,
        &mut edits,
        &mut |ob| {
            if let Observed::Decision(_, d) = ob {
                seen = Some((d.verdict_str(), d.rule, d.refusal.map(|r| r.code)));
            }
        },
    )
    .unwrap();
    assert!(matches!(h, Handled::Respond(_, 513)), "{h:?}");
    assert_eq!(seen, Some(("reject", None, Some(513))));
}

/// A request our edits take past the largest message a stream takes (the CRLFs of
/// a head in bare LFs, our Via) is answered 513 rather than sent to a TCP next hop,
/// which would refuse it and end the connection every call shares (QA 84 G2); an
/// ACK is dropped. One that stays under goes on.
#[test]
fn a_request_grown_past_what_a_stream_takes_gets_513() {
    let p = Policy::from_str(
        &POLICY.replace("udp:10.0.0.5:5060", "tcp:10.0.0.5:5060"),
        "t.toml",
        std::path::Path::new("."),
    )
    .unwrap();
    let head = |method: &str, lines: usize| {
        format!(
            "{method} sip:+8613912345678@192.0.2.10 SIP/2.0\nVia: SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bK-g2\nFrom: <sip:+8613812345678@198.51.100.7>;tag=a\nTo: <sip:+8613912345678@192.0.2.10>\nCall-ID: g2-1\nCSeq: 1 {method}\nMax-Forwards: 70\nSubject: x{}\nContent-Length: 0\n\n",
            "\n y".repeat(lines)
        )
    };
    // Some 52,800 bytes in bare LFs: some 70,300 in CRLFs.
    let big = head("INVITE", 17_500);
    assert!(big.len() < crate::sip::MAX_MESSAGE, "{}", big.len());
    let (h, out) = run(&p, "198.51.100.7:5060", &big);
    assert!(matches!(h, Handled::Respond(_, 513)), "{h:?}");
    assert!(out.contains("Too large for the next hop"), "{out}");
    let (h, _) = run(&p, "198.51.100.7:5060", &head("ACK", 17_500));
    assert_eq!(h, Handled::Dropped("too-large-for-tcp"));
    let (h, out) = run(&p, "198.51.100.7:5060", &head("INVITE", 10_000));
    assert!(matches!(h, Handled::Forward(Dest::TcpTo(_))), "{h:?}");
    assert!(out.len() < crate::sip::MAX_MESSAGE, "{}", out.len());
    // At the bound exactly: with its own Content-Length, what goes on may be 65,535
    // bytes (QA 85: 23 bytes under it were refused, room kept for a length it had);
    // without one, the length the stream adds counts.
    let crlf = |pad: usize, length: bool| {
        let h = head("INVITE", 0).replace('\n', "\r\n");
        let h = h.replace("Subject: x", &format!("Subject: x{}", "y".repeat(pad)));
        if length {
            h
        } else {
            h.replace("Content-Length: 0\r\n", "")
        }
    };
    for length in [true, false] {
        let (_, small) = run(&p, "198.51.100.7:5060", &crlf(0, length));
        let grown = small.len() - crlf(0, length).len();
        let exact = crate::sip::MAX_MESSAGE - grown - crlf(0, length).len();
        let (h, out) = run(&p, "198.51.100.7:5060", &crlf(exact, length));
        if length {
            assert!(matches!(h, Handled::Forward(Dest::TcpTo(_))), "{h:?}");
            assert_eq!(out.len(), crate::sip::MAX_MESSAGE);
        } else {
            assert!(matches!(h, Handled::Respond(_, 513)), "{h:?}");
        }
        let (h, _) = run(&p, "198.51.100.7:5060", &crlf(exact + 1, length));
        assert!(matches!(h, Handled::Respond(_, 513)), "{h:?}");
    }
}

/// RFC 3261 16.3 step 5: a request that requires of proxies an extension sipfence
/// does not accept gets 420 with the tags in Unsupported; accepted tags pass; ACK
/// and CANCEL carry no requirements.
/// A `received` the caller wrote in its own Via is replaced by its source address:
/// the answers go back where the request came from, not to another trunk's peer
/// (QA 80).
#[test]
fn a_forged_received_is_replaced_by_the_source() {
    let p = Policy::from_str(POLICY, "t.toml", std::path::Path::new(".")).unwrap();
    let invite = |via: &str| {
        format!(
            "INVITE sip:+8613912345678@192.0.2.10 SIP/2.0\r\nVia: SIP/2.0/UDP {via};branch=z9hG4bK-fr\r\nFrom: <sip:+8613812345678@198.51.100.7>;tag=a\r\nTo: <sip:+8613912345678@192.0.2.10>\r\nCall-ID: fr-1\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        )
    };
    for (via, forwarded) in [
        (
            "198.51.100.7:5060;rport;received=198.51.100.9",
            "198.51.100.7:5060;rport=5060;received=198.51.100.7;branch",
        ),
        (
            "198.51.100.7:5060;received=10.9.9.9;rport",
            "198.51.100.7:5060;received=198.51.100.7;rport=5060;branch",
        ),
        // Its own address, as it is: kept.
        (
            "198.51.100.7:5060;received=198.51.100.7",
            "198.51.100.7:5060;received=198.51.100.7;branch",
        ),
        // A port of its own in `rport`: the source port (QA 96), kept when it is.
        (
            "198.51.100.7:5060;received=198.51.100.7;rport = 5070",
            "198.51.100.7:5060;received=198.51.100.7;rport = 5060;branch",
        ),
        (
            "198.51.100.7:5060;RPORT=5060",
            "198.51.100.7:5060;RPORT=5060;branch=z9hG4bK-fr;received=198.51.100.7",
        ),
        // Its own address in brackets, which RFC 3261's grammar has not: written
        // as the grammar has it (QA 174 F1).
        (
            "198.51.100.7:5060;received=[198.51.100.7]",
            "198.51.100.7:5060;received=198.51.100.7;branch",
        ),
    ] {
        let (h, out) = run(&p, "198.51.100.7:5060", &invite(via));
        assert!(matches!(h, Handled::Forward(_)), "{out}");
        assert!(out.contains(forwarded), "{via}:\n{out}");
    }
}

/// An out-of-dialog MESSAGE is answered as a call would be when the caller rules
/// refuse its sender, and forwarded when they let it by (QA 173 F2).
#[test]
fn a_message_is_answered_as_its_sender_is_judged() {
    let p = Policy::from_str(POLICY, "t.toml", std::path::Path::new(".")).unwrap();
    let message = |from: &str| {
        format!(
            "MESSAGE sip:+8613912345678@192.0.2.10 SIP/2.0\r\nVia: SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bK-msg\r\nFrom: <sip:{from}@198.51.100.7>;tag=a\r\nTo: <sip:+8613912345678@192.0.2.10>\r\nCall-ID: msg-1\r\nCSeq: 1 MESSAGE\r\nMax-Forwards: 70\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nhi"
        )
    };
    let (h, out) = run(&p, "198.51.100.7:5060", &message("anonymous"));
    assert!(matches!(h, Handled::Respond(_, 433)), "{out}");
    assert!(
        out.starts_with("SIP/2.0 433 ") && out.contains("CSeq: 1 MESSAGE"),
        "{out}"
    );
    let (h, out) = run(&p, "198.51.100.7:5060", &message("+8613812345678"));
    assert!(matches!(h, Handled::Forward(_)), "{out}");
    assert!(out.starts_with("MESSAGE "), "{out}");
}

/// Our branch is the caller's branch and sent-by, and the host it came from: two
/// callers writing the same Via (behind NATs, a weak branch generator) are two
/// transactions at the core (QA 174 F6); one caller's retransmission or CANCEL,
/// from another port of its host too, is the same one.
#[test]
fn the_branch_tells_callers_apart_by_their_host() {
    let p = Policy::from_str(POLICY, "t.toml", std::path::Path::new(".")).unwrap();
    let branch = |from: &str, method: &str| {
        let text = format!(
            "{method} sip:+8613912345678@192.0.2.10 SIP/2.0\r\nVia: SIP/2.0/UDP 192.168.1.2:5060;branch=z9hG4bK-1\r\nFrom: <sip:+8613812345678@198.51.100.7>;tag=a\r\nTo: <sip:+8613912345678@192.0.2.10>\r\nCall-ID: br-1\r\nCSeq: 1 {method}\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        );
        let (h, out) = run(&p, from, &text);
        assert!(matches!(h, Handled::Forward(_)), "{out}");
        let at = out.find(";branch=").unwrap() + 8;
        out[at..at + 25].to_string()
    };
    let one = branch("198.51.100.7:5060", "INVITE");
    assert!(one.starts_with("z9hG4bKsf"), "{one}");
    assert_eq!(one, branch("198.51.100.7:5062", "INVITE"));
    assert_eq!(one, branch("198.51.100.7:5062", "CANCEL"));
    assert_ne!(one, branch("198.51.100.8:5060", "INVITE"));
}

/// A request without Max-Forwards is forwarded with 70, after its own fields, so
/// that the Via rows stay together (QA 30).
#[test]
fn a_missing_max_forwards_is_added_last() {
    let p = Policy::from_str(POLICY, "t.toml", std::path::Path::new(".")).unwrap();
    let invite = "INVITE sip:+8613912345678@192.0.2.10 SIP/2.0\r\nVia: SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bK-mf\r\nFrom: <sip:+8613812345678@198.51.100.7>;tag=a\r\nTo: <sip:+8613912345678@192.0.2.10>\r\nCall-ID: mf-1\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n";
    let (h, out) = run(&p, "198.51.100.7:5060", invite);
    assert!(matches!(h, Handled::Forward(_)), "{out}");
    assert!(
        out.ends_with("Content-Length: 0\r\nMax-Forwards: 70\r\n\r\n"),
        "{out}"
    );
    let vias: Vec<usize> = out.match_indices("\r\nVia: ").map(|(i, _)| i).collect();
    assert_eq!(vias.len(), 2, "{out}");
    assert!(!out[vias[0]..vias[1]].contains("Max-Forwards"), "{out}");
}

/// A head in bare LFs goes on in CRLFs, the request to the core and the response
/// back, its body (which holds a CRLF pair here) as it came: a core that frames its
/// TCP stream on CRLFCRLF alone would otherwise read a second request out of the
/// body, one no rule judged (QA 83 F2).
#[test]
fn a_head_in_bare_lfs_goes_on_in_crlfs() {
    let p = Policy::from_str(POLICY, "t.toml", std::path::Path::new(".")).unwrap();
    let body = "x\r\n\r\nINVITE sip:smuggled SIP/2.0\r\n";
    let invite = format!(
        "INVITE sip:+8613912345678@192.0.2.10 SIP/2.0\nVia: SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bK-lf\nFrom: <sip:+8613812345678@198.51.100.7>;tag=a\nTo: <sip:+8613912345678@192.0.2.10>\nCall-ID: lf-1\nCSeq: 1 INVITE\nMax-Forwards: 70\nContent-Type: text/plain\nContent-Length: {}\n\n{body}",
        body.len()
    );
    let (h, out) = run(&p, "198.51.100.7:5060", &invite);
    assert!(matches!(h, Handled::Forward(_)), "{out}");
    let head_end = out.find("\r\n\r\n").unwrap() + 4;
    assert!(!out[..head_end].replace("\r\n", "").contains('\n'), "{out}");
    assert_eq!(&out[head_end..], body, "{out}");
    assert!(out.contains("\r\nCall-ID: lf-1\r\n"), "{out}");
    // The core's answer, in bare LFs too, goes back in CRLFs.
    let via = out
        .lines()
        .find(|l| l.starts_with("Via: "))
        .unwrap()
        .trim_end();
    let ok = format!(
        "SIP/2.0 200 OK\n{via}\nVia: SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bK-lf\nFrom: <sip:+8613812345678@198.51.100.7>;tag=a\nTo: <sip:+8613912345678@192.0.2.10>;tag=b\nCall-ID: lf-1\nCSeq: 1 INVITE\nContent-Length: 0\n\n"
    );
    let (h, out) = run(&p, "10.0.0.5:5060", &ok);
    assert!(matches!(h, Handled::Forward(_)), "{out}");
    assert!(
        out.starts_with(
            "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bK-lf\r\n"
        ) && out.ends_with("\r\nContent-Length: 0\r\n\r\n"),
        "{out}"
    );
    assert!(!out.replace("\r\n", "").contains('\n'), "{out}");
}

/// A response from the core to a caller that came over TCP goes back on its
/// connection (`sfc` in our Via) with a Content-Length, which a datagram need not
/// carry (QA 30).
#[test]
fn responses_to_a_connection_are_framed() {
    let p = Policy::from_str(POLICY, "t.toml", std::path::Path::new(".")).unwrap();
    let ok = "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKsf0123456789abcdef;sfc=7\r\nVia: SIP/2.0/TCP 198.51.100.7:5060;branch=z9hG4bK-t\r\nFrom: <sip:+8613812345678@198.51.100.7>;tag=a\r\nTo: <sip:+8613912345678@192.0.2.10>;tag=b\r\nCall-ID: t-1\r\nCSeq: 1 INVITE\r\nContent-Type: application/sdp\r\n\r\nv=0\r\n";
    let (h, out) = run(&p, "10.0.0.5:5060", ok);
    // Its connection, or, should that have closed, a new one to its Via's address.
    let back = "198.51.100.7:5060".parse().unwrap();
    assert_eq!(h, Handled::Forward(Dest::TcpBack(7, back)));
    assert!(out.ends_with("Content-Length: 5\r\n\r\nv=0\r\n"), "{out}");
    // Only to an address a trunk claims: another goes back on the connection only.
    let (h, _) = run(
        &p,
        "10.0.0.5:5060",
        &ok.replace("TCP 198.51.100.7", "TCP 203.0.113.99"),
    );
    assert_eq!(h, Handled::Forward(Dest::Tcp(7)));
    assert!(!out.contains("sfc=7"), "{out}");
    // With a length, as it came.
    let with = ok.replace("\r\n\r\nv=0", "\r\nContent-Length: 5\r\n\r\nv=0");
    let (_, out) = run(&p, "10.0.0.5:5060", &with);
    assert_eq!(out.matches("Content-Length").count(), 1, "{out}");
}

/// RFC 3261 16.4 (QA 120): a strict router before us put our Record-Route in the
/// Request-URI and the remote target last in Route; the request goes on with that
/// target as its Request-URI, from either side. A number at our address, or a URI
/// without `lr`, is no strict router's, and stays as it came.
#[test]
fn a_strict_routers_request_gets_its_request_uri_back() {
    let p = Policy::from_str(POLICY, "t.toml", std::path::Path::new(".")).unwrap();
    let bye = |ruri: &str, route: &str| {
        format!(
            "BYE {ruri} SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bK-sr\r\n{route}From: <sip:+8613912345678@10.0.0.5>;tag=b\r\nTo: <sip:+8613812345678@198.51.100.7>;tag=a\r\nCall-ID: sr-1\r\nCSeq: 2 BYE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        )
    };
    let peer = "sip:+8613812345678@198.51.100.7:5062";
    let ours = "sip:192.0.2.10:5060;lr";
    for route in [
        format!("Route: <{peer}>\r\n"),
        format!("Route: <sip:10.0.0.1:5060;lr>, <{peer}>\r\n"),
        format!("Route: <sip:10.0.0.1:5060;lr>\r\nRoute: <{peer}>\r\n"),
    ] {
        let (h, out) = run(&p, "10.0.0.5:5060", &bye(ours, &route));
        let to = "198.51.100.7:5062".parse().unwrap();
        assert_eq!(h, Handled::Forward(Dest::Udp(to)), "{route}");
        assert!(out.starts_with(&format!("BYE {peer} SIP/2.0\r\n")), "{out}");
        assert!(!out.contains("Route:"), "{out}");
    }
    // A Route value left after ours: the request goes there.
    let route = format!("Route: <sip:198.51.100.9;lr>, <{peer}>\r\n");
    let (h, out) = run(&p, "10.0.0.5:5060", &bye(ours, &route));
    let to = "198.51.100.9:5060".parse().unwrap();
    assert_eq!(h, Handled::Forward(Dest::Udp(to)));
    assert!(
        out.starts_with(&format!("BYE {peer} SIP/2.0\r\n"))
            && out.contains("\r\nRoute: <sip:198.51.100.9;lr>\r\n"),
        "{out}"
    );
    // From the peer, to the core.
    let from_peer = "BYE sip:192.0.2.10:5060;lr SIP/2.0\r\nVia: SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bK-sp\r\nRoute: <sip:core@10.0.0.5>\r\nFrom: <sip:+8613812345678@198.51.100.7>;tag=a\r\nTo: <sip:+8613912345678@192.0.2.10>;tag=b\r\nCall-ID: sp-1\r\nCSeq: 2 BYE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n";
    let (h, out) = run(&p, "198.51.100.7:5060", from_peer);
    let core = "10.0.0.5:5060".parse().unwrap();
    assert_eq!(h, Handled::Forward(Dest::Udp(core)));
    assert!(
        out.starts_with("BYE sip:core@10.0.0.5 SIP/2.0\r\n") && !out.contains("Route:"),
        "{out}"
    );
    // QA 142: a sips URI is never our sip one (RFC 3261 19.1.4).
    for ruri in [
        "sip:+8613912345678@192.0.2.10:5060;lr",
        "sip:192.0.2.10:5060",
        "sips:192.0.2.10:5060;lr",
    ] {
        let (_, out) = run(
            &p,
            "198.51.100.7:5060",
            &from_peer.replace("BYE sip:192.0.2.10:5060;lr ", &format!("BYE {ruri} ")),
        );
        assert!(out.starts_with(&format!("BYE {ruri} SIP/2.0\r\n")), "{out}");
        assert!(out.contains("\r\nRoute: <sip:core@10.0.0.5>\r\n"), "{out}");
    }
}

/// QA 142: the core's in-dialog request for another listen address of the gateway's
/// (a peer's Contact named it) is a loop, answered 482, not sent to that socket to
/// come back as a stranger's request or another trunk's call; a wildcard listener
/// names no host, and a peer at its port is not the gateway.
#[test]
fn the_cores_request_for_another_of_our_addresses_is_a_loop() {
    let two = format!(
        "{POLICY}[[trunk]]\nname = \"other\"\nrole = \"interconnect\"\nlisten = [\"udp:192.0.2.11:5070\"]\nsources = [\"203.0.113.0/24\"]\nnext_hop = \"udp:10.0.0.5:5060\"\n"
    );
    let p = Policy::from_str(&two, "t.toml", std::path::Path::new(".")).unwrap();
    let bye = |ruri: &str| {
        format!(
            "BYE {ruri} SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bK-lp\r\nFrom: <sip:+8613912345678@10.0.0.5>;tag=b\r\nTo: <sip:+8613812345678@198.51.100.7>;tag=a\r\nCall-ID: lp-1\r\nCSeq: 2 BYE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        )
    };
    for ours in [
        "sip:x@192.0.2.11:5070",
        "sip:x@0.0.0.0:5060",
        "sip:x@[::]:5070",
    ] {
        let (h, out) = run(&p, "10.0.0.5:5060", &bye(ours));
        assert!(matches!(h, Handled::Respond(_, 482)), "{ours}: {h:?} {out}");
    }
    let (h, _) = run(&p, "10.0.0.5:5060", &bye("sip:x@198.51.100.7:5070"));
    let peer = "198.51.100.7:5070".parse().unwrap();
    assert_eq!(h, Handled::Forward(Dest::Udp(peer)));
    let wild = two.replace("udp:192.0.2.11:5070", "udp:0.0.0.0:5070");
    let p = Policy::from_str(&wild, "t.toml", std::path::Path::new(".")).unwrap();
    let (h, _) = run(&p, "10.0.0.5:5060", &bye("sip:x@198.51.100.7:5070"));
    assert_eq!(h, Handled::Forward(Dest::Udp(peer)));
    // The wildcard listener is ours at the addresses we name ourselves by (QA 143).
    for ours in [
        "sip:x@10.0.0.1:5070",
        "sip:x@192.0.2.10:5070",
        "sip:x@0.0.0.0:5070",
    ] {
        let (h, out) = run(&p, "10.0.0.5:5060", &bye(ours));
        assert!(matches!(h, Handled::Respond(_, 482)), "{ours}: {h:?} {out}");
    }
    // A strict router's request for the peer at the wildcard port: stepped and
    // sent there, not taken for ours (QA 143: 482).
    let strict = bye("sip:192.0.2.10:5060;lr").replace(
        "\r\nFrom: ",
        "\r\nRoute: <sip:+8613812345678@198.51.100.7:5070>\r\nFrom: ",
    );
    let (h, out) = run(&p, "10.0.0.5:5060", &strict);
    assert_eq!(h, Handled::Forward(Dest::Udp(peer)), "{out}");
    assert!(
        out.starts_with("BYE sip:+8613812345678@198.51.100.7:5070 SIP/2.0\r\n"),
        "{out}"
    );
}

/// A request on a stream with no Content-Length, its fields folded over lines: the 400
/// carries each field whole, unfolded (QA 210: the Via came back as `SIP / 2.0` with no
/// host or branch, To lost its URI and got a second tag, CSeq lost its method).
#[test]
fn a_broken_requests_folded_fields_are_answered_whole() {
    let src: SocketAddr = "198.51.100.7:5070".parse().unwrap();
    let text = "INVITE sip:+861012345678@192.0.2.10 SIP/2.0\r\nVia  : SIP  /   2.0\r\n /TCP\r\n    198.51.100.7:5070;branch=z9hG4bK-fold\r\nTO :\r\n <sip:+861012345678@192.0.2.10>;tag=callee1\r\nfrom: <sip:+8613812345678@198.51.100.7>\r\n\t;tag=caller1\r\nCall-ID: fold-1\r\ncseq: 0009\r\n  INVITE\r\nMax-Forwards: 70\r\n\r\n";
    let Err(e) = crate::sip::frame_stream(text.as_bytes()) else {
        panic!("framed without a Content-Length");
    };
    assert_eq!(e.kind, crate::sip::ErrorKind::NoContentLength);
    let mut out = vec![];
    let dest = bad_request_for(text.as_bytes(), src, Some(7), &e, None, &mut out);
    assert_eq!(dest, Some(Dest::Tcp(7)));
    let out = String::from_utf8(out).unwrap();
    assert!(out.starts_with("SIP/2.0 400 Bad Request\r\n"), "{out}");
    let m = crate::sip::Message::parse(Bytes::from(out.clone())).expect("the 400 parses");
    let via = m.top_via().expect("a Via");
    assert_eq!(
        via.branch.map(|b| b.of(m.buf())),
        Some(&b"z9hG4bK-fold"[..]),
        "{out}"
    );
    assert_eq!(m.to_tag(), Some(&b"callee1"[..]), "{out}");
    assert_eq!(m.from_tag(), Some(&b"caller1"[..]), "{out}");
    assert_eq!(m.cseq(), Some((9, &b"INVITE"[..])), "{out}");
    assert_eq!(out.matches("tag=").count(), 2, "{out}");
    // White space around the tag's `;` and `=`, as a fold there leaves it (QA 212): the
    // tag is the request's, not a second one of ours.
    for to in [
        "TO : <sip:a@b>;tag\r\n =callee2",
        "To: <sip:a@b> ; tag = callee2",
        "t: <sip:a@b>;\tTAG=callee2",
    ] {
        let text = text.replace("TO :\r\n <sip:+861012345678@192.0.2.10>;tag=callee1", to);
        let e = crate::sip::frame_stream(text.as_bytes()).unwrap_err();
        let mut bytes = vec![];
        bad_request_for(text.as_bytes(), src, Some(7), &e, None, &mut bytes);
        let out = String::from_utf8(bytes).unwrap();
        let m = crate::sip::Message::parse(Bytes::from(out.clone())).expect("the 400 parses");
        assert_eq!(m.to_tag(), Some(&b"callee2"[..]), "{to:?}: {out}");
        assert_eq!(
            out.to_ascii_lowercase().matches("tag").count(),
            2,
            "{to:?}: {out}"
        );
    }
}

/// A broken request's answer: what the parser refused it for, and its fields copied
/// back without the control characters that broke it (QA 54: a NUL came back).
#[test]
fn broken_requests_are_answered_400_with_printable_fields() {
    let src: SocketAddr = "198.51.100.7:5070".parse().unwrap();
    let req = |method: &str, from: &str| {
        format!(
            "{method} sip:+861012345678@192.0.2.10 SIP/2.0\r\nVia: SIP/2.0/UDP 198.51.100.7:5070;branch=z9hG4bK-lc;rport\r\nFrom: {from};tag=a\r\nTo: <sip:+861012345678@192.0.2.10>\r\nCall-ID: lc-1\r\nCSeq: 1 {method}\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        )
    };
    let answer = |text: &str| {
        let e = crate::sip::Message::parse(Bytes::from(text.to_string())).unwrap_err();
        let mut out = vec![];
        let dest = bad_request_for(text.as_bytes(), src, None, &e, None, &mut out);
        (e, dest, out)
    };
    // A known method in another case: refused before any rule, never forwarded.
    let p = Policy::from_str(POLICY, "t.toml", std::path::Path::new(".")).unwrap();
    let lower = req("invite", "<sip:+8613812345678@198.51.100.7>");
    let (e, dest, out) = answer(&lower);
    assert_eq!(e.kind, crate::sip::ErrorKind::BadMethod);
    assert_eq!(dest, Some(Dest::Udp(src)));
    let out = String::from_utf8(out).unwrap();
    assert!(out.starts_with("SIP/2.0 400 Bad Request\r\n"), "{out}");
    assert!(out.contains("text=\"bad_method at byte 0\""), "{out}");
    let (h, _) = run(
        &p,
        "198.51.100.7:5070",
        &req("INVITE", "<sip:+8613812345678@198.51.100.7>"),
    );
    assert!(matches!(h, Handled::Forward(_)), "{h:?}");
    // An ACK is never answered, whatever its case.
    let (e, dest, out) = answer(&req("ack", "<sip:+8613812345678@198.51.100.7>"));
    assert_eq!(
        (e.kind, dest, out.len()),
        (crate::sip::ErrorKind::BadMethod, None, 0)
    );
    // A NUL in the display name: the From comes back with a space there.
    let (e, dest, out) = answer(&req("INVITE", "\"a\0b\" <sip:+8613812345678@198.51.100.7>"));
    assert_eq!(e.kind, crate::sip::ErrorKind::BadHeaderLine);
    assert_eq!(dest, Some(Dest::Udp(src)));
    assert!(!out.contains(&0), "{out:?}");
    let out = String::from_utf8(out).unwrap();
    assert!(out.starts_with("SIP/2.0 400 Bad Request\r\n"), "{out}");
    assert!(
        out.contains("\r\nFrom: \"a b\" <sip:+8613812345678@198.51.100.7>;tag=a\r\n"),
        "{out}"
    );
    crate::sip::Message::parse(Bytes::from(out)).expect("the 400 parses");
    // No Via that can be read (QA 139: an IPv6 address without its brackets): the
    // answer goes where the request came from, its Via as it came.
    let v6 = req("INVITE", "<sip:+8613812345678@198.51.100.7>").replace(
        "Via: SIP/2.0/UDP 198.51.100.7:5070;branch=z9hG4bK-lc;rport",
        "Via: SIP/2.0/UDP fd00::100:5070;branch=z9hG4bK-lc",
    );
    let (_, dest, out) = answer(&v6);
    assert_eq!(dest, Some(Dest::Udp(src)));
    let out = String::from_utf8(out).unwrap();
    assert!(out.starts_with("SIP/2.0 400 Bad Request\r\n"), "{out}");
    assert!(
        out.contains("\r\nVia: SIP/2.0/UDP fd00::100:5070;branch=z9hG4bK-lc\r\n"),
        "{out}"
    );
}

#[test]
fn proxy_require_unknown_gets_420() {
    let req = |method: &str, pr: &str| {
        format!(
            "{method} sip:+8613912345678@192.0.2.10 SIP/2.0\r\nVia: SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bK-pr\r\nFrom: <sip:+8613812345678@198.51.100.7>;tag=a\r\nTo: <sip:+8613912345678@192.0.2.10>\r\nCall-ID: pr-1\r\nCSeq: 1 {method}\r\nMax-Forwards: 70\r\n{pr}Content-Length: 0\r\n\r\n"
        )
    };
    let p = Policy::from_str(POLICY, "t.toml", std::path::Path::new(".")).unwrap();
    let inv = req(
        "INVITE",
        "Proxy-Require: foo , Bar\r\nProxy-Require: baz\r\n",
    );
    let (h, out) = run(&p, "198.51.100.7:5060", &inv);
    assert!(matches!(h, Handled::Respond(_, 420)), "{h:?}");
    assert!(out.starts_with("SIP/2.0 420 Bad Extension\r\n"), "{out}");
    assert!(out.contains("\r\nUnsupported: foo, Bar, baz\r\n"), "{out}");
    assert!(out.ends_with("\r\n\r\n") && out.contains("Call-ID: pr-1\r\n"));
    crate::sip::Message::parse(Bytes::from(out)).expect("the 420 parses");
    // ACK and CANCEL are not refused for it; no Proxy-Require, no 420.
    for m in ["ACK", "CANCEL"] {
        let (h, _) = run(&p, "198.51.100.7:5060", &req(m, "Proxy-Require: foo\r\n"));
        assert!(matches!(h, Handled::Forward(_)), "{m}: {h:?}");
    }
    let (h, _) = run(&p, "198.51.100.7:5060", &req("INVITE", ""));
    assert!(matches!(h, Handled::Forward(_)), "{h:?}");
    // Accepted tags (any case) pass; only the others are listed.
    let p = Policy::from_str(
        &format!("[proxy]\nproxy_require_accepted = [\"FOO\", \"baz\"]\n{POLICY}"),
        "t.toml",
        std::path::Path::new("."),
    )
    .unwrap();
    let (h, out) = run(&p, "198.51.100.7:5060", &inv);
    assert!(matches!(h, Handled::Respond(_, 420)), "{h:?}");
    assert!(out.contains("\r\nUnsupported: Bar\r\n"), "{out}");
    let (h, _) = run(
        &p,
        "198.51.100.7:5060",
        &req("INVITE", "Proxy-Require: foo, baz\r\n"),
    );
    assert!(matches!(h, Handled::Forward(_)), "{h:?}");
}

/// The OPTIONS that probes a next hop is a request any SIP stack reads, and its
/// answer from the next hop is taken here (reported, not relayed); from anyone else
/// it is no answer. A next hop marked silent gets no new call: the caller has 503
/// at once, with Retry-After; the calls up go on.
#[test]
fn probes_of_a_next_hop_and_its_silence() {
    let p = Policy::from_str(POLICY, "t.toml", std::path::Path::new(".")).unwrap();
    let (core, via): (SocketAddr, SocketAddr) = (
        "10.0.0.5:5060".parse().unwrap(),
        "10.0.0.1:5060".parse().unwrap(),
    );
    let mut out = vec![];
    probe_request(core, Transport::Udp, via, 7, &mut out);
    let probe = Message::parse(Bytes::from(out)).expect("a probe parses");
    assert_eq!(probe.method(), Some(Method::Options));
    assert_eq!(probe.max_forwards(), Some(0));
    let answer = |code: u16| {
        let v = String::from_utf8_lossy(probe.value(HeaderName::Via).unwrap()).to_string();
        format!(
            "SIP/2.0 {code} X\r\nVia: {v};received=10.0.0.1\r\nFrom: <sip:sipfence@10.0.0.1:5060>;tag=sfprobe\r\nTo: <sip:10.0.0.5:5060>;tag=c\r\nCall-ID: sfprobe-7\r\nCSeq: 8 OPTIONS\r\nContent-Length: 0\r\n\r\n"
        )
    };
    let seen = |from: &str, text: &str| {
        let st = step(&p);
        let o = Origin {
            source: from.parse().unwrap(),
            local: ListenSpec {
                transport: Transport::Udp,
                addr: "192.0.2.10:5060".parse().unwrap(),
            },
            conn: None,
        };
        let mut answered = vec![];
        let h = handle(
            &st,
            Bytes::from(text.to_string()),
            &mut Message::empty(),
            &o,
            &mut vec![],
            &mut EditList::new(),
            &mut |ob| {
                if let Observed::ProbeAnswer(a) = ob {
                    answered.push(a);
                }
            },
        )
        .unwrap();
        (h, answered)
    };
    for code in [200, 483, 404] {
        assert_eq!(
            seen("10.0.0.5:5060", &answer(code)),
            (Handled::Absorbed, vec![core])
        );
    }
    let (h, answered) = seen("198.51.100.7:5060", &answer(200));
    assert!(answered.is_empty() && h != Handled::Absorbed, "{h:?}");
    // Silent: a new call is refused, a BYE goes on.
    let st = Step {
        next_hops: &Silent,
        ..step(&p)
    };
    let invite = "INVITE sip:+8613912345678@192.0.2.10 SIP/2.0\r\nVia: SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bK-s1\r\nFrom: <sip:+8613812345678@198.51.100.7>;tag=a\r\nTo: <sip:+8613912345678@192.0.2.10>\r\nCall-ID: silent-1\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n";
    let (h, out, _) = run_on(&st, "198.51.100.7:5060", "192.0.2.10:5060", invite);
    assert!(matches!(h, Handled::Respond(_, 503)), "{h:?}");
    assert!(
        out.contains("Retry-After: 5\r\n") && out.contains("Next hop not answering"),
        "{out}"
    );
    // Not judged (no rate, behaviour or call place spent, QA 60): a caller the rules
    // would refuse gets the same 503.
    let broken = invite.replace("<sip:+8613812345678@", "<sip:+86123@");
    let (h, _, _) = run_on(&st, "198.51.100.7:5060", "192.0.2.10:5060", &broken);
    assert!(matches!(h, Handled::Respond(_, 503)), "{h:?}");
    let (h, _, _) = run_on(&step(&p), "198.51.100.7:5060", "192.0.2.10:5060", &broken);
    assert!(
        !matches!(h, Handled::Respond(_, 503) | Handled::Forward(_)),
        "{h:?}"
    );
    let bye = invite
        .replace("INVITE sip", "BYE sip")
        .replace("1 INVITE", "2 BYE")
        .replace("192.0.2.10>\r\n", "192.0.2.10>;tag=b\r\n");
    let (h, _, _) = run_on(&st, "198.51.100.7:5060", "192.0.2.10:5060", &bye);
    assert_eq!(h, Handled::Forward(Dest::Udp(core)));
    // A TCP next hop is probed over its connection, and refused the same way when
    // it hangs with the connection open (QA 127 N6: its calls went on into it).
    let mut out = vec![];
    probe_request(core, Transport::Tcp, via, 8, &mut out);
    let probe = Message::parse(Bytes::from(out)).expect("a TCP probe parses");
    let text = String::from_utf8_lossy(probe.buf()).to_string();
    assert!(
            text.starts_with("OPTIONS sip:10.0.0.5:5060;transport=tcp SIP/2.0\r\nVia: SIP/2.0/TCP 10.0.0.1:5060;branch=z9hG4bKsfprobe8;"),
            "{text}"
        );
    assert!(is_probe(&probe));
    let tcp = POLICY.replace("udp:10.0.0.5:5060", "tcp:10.0.0.5:5060");
    let p = Policy::from_str(&tcp, "t.toml", std::path::Path::new(".")).unwrap();
    let st = Step {
        next_hops: &Silent,
        ..step(&p)
    };
    let (h, out, _) = run_on(&st, "198.51.100.7:5060", "192.0.2.10:5060", invite);
    assert!(matches!(h, Handled::Respond(_, 503)), "{h:?}");
    assert!(out.contains("Next hop not answering"), "{out}");
    let (h, _, _) = run_on(&step(&p), "198.51.100.7:5060", "192.0.2.10:5060", invite);
    assert_eq!(h, Handled::Forward(Dest::TcpTo(core)));
    let (h, _, _) = run_on(&st, "198.51.100.7:5060", "192.0.2.10:5060", &bye);
    assert_eq!(h, Handled::Forward(Dest::TcpTo(core)));
}

/// A PBX that registers to the core through the gateway leaves it in the Path (RFC
/// 3327) on a `register_path` trunk, with its flow when it is behind a NAT: the
/// core's call to it comes back by that Route and goes to where the REGISTER came
/// from, record-routed. A Path the peer wrote loses any flow in it, as a
/// Record-Route does.
#[test]
fn a_registering_pbx_is_called_by_its_path() {
    let with = |extra: &str| {
        Policy::from_str(
            &format!("{POLICY}{extra}"),
            "t.toml",
            std::path::Path::new("."),
        )
        .unwrap()
    };
    let p = with("register_path = true\n");
    let register = "REGISTER sip:192.0.2.10 SIP/2.0\r\nVia: SIP/2.0/UDP 192.168.1.10:5060;rport;branch=z9hG4bK-r1\r\nFrom: <sip:2001@192.0.2.10>;tag=r\r\nTo: <sip:2001@192.0.2.10>\r\nCall-ID: reg-1\r\nCSeq: 1 REGISTER\r\nContact: <sip:2001@192.168.1.10:5060>\r\nSupported: path\r\nExpires: 600\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n";
    let path_of = |out: &str| {
        let at = out.find("\r\nPath: ").expect("a Path") + 8;
        let end = at + out[at..].find("\r\n").unwrap();
        out[at..end].to_string()
    };
    let (h, out) = run(&p, "198.51.100.7:40000", register);
    assert_eq!(
        h,
        Handled::Forward(Dest::Udp("10.0.0.5:5060".parse().unwrap()))
    );
    let path = path_of(&out);
    assert_eq!(
        path,
        "<sip:10.0.0.1:5060;lr;sf-flow=198.51.100.7~40000~udp>"
    );
    // On top: the first field, ours.
    assert!(
        out.contains("REGISTER sip:192.0.2.10 SIP/2.0\r\nPath: "),
        "{out}"
    );
    assert_eq!(flow_events(&p, "198.51.100.7:40000", register), ["written"]);
    // The core calls the registered Contact by the Path.
    let invite = format!(
        "INVITE sip:2001@192.168.1.10:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bK-c1\r\nRoute: {path}\r\nFrom: <sip:+8613912345678@10.0.0.5>;tag=c\r\nTo: <sip:2001@192.0.2.10>\r\nCall-ID: reg-call\r\nCSeq: 1 INVITE\r\nContact: <sip:core@10.0.0.5>\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    );
    let (h, out) = run(&p, "10.0.0.5:5060", &invite);
    assert_eq!(
        h,
        Handled::Forward(Dest::Udp("198.51.100.7:40000".parse().unwrap())),
        "{out}"
    );
    assert!(
        out.starts_with("INVITE sip:2001@192.168.1.10:5060 SIP/2.0\r\n"),
        "{out}"
    );
    assert!(
        !out.contains("sf-flow") && !out.contains("\r\nRoute:"),
        "{out}"
    );
    assert!(
        out.contains("\r\nRecord-Route: <sip:10.0.0.1:5060;lr>"),
        "{out}"
    );
    assert_eq!(flow_events(&p, "10.0.0.5:5060", &invite), ["followed"]);
    // Towards a TCP core: reached over TCP, as our Record-Route says.
    let tcp = Policy::from_str(
        &format!("{POLICY}register_path = true\n").replace("udp:10.0.0.5", "tcp:10.0.0.5"),
        "t.toml",
        std::path::Path::new("."),
    )
    .unwrap();
    let (h, out) = run(&tcp, "198.51.100.7:40000", register);
    assert_eq!(
        h,
        Handled::Forward(Dest::TcpTo("10.0.0.5:5060".parse().unwrap()))
    );
    assert_eq!(
        path_of(&out),
        "<sip:10.0.0.1:5060;lr;transport=tcp;sf-flow=198.51.100.7~40000~udp>"
    );
    // Not behind a NAT: our Path with no flow, and the call goes to the Contact.
    let public = register.replace("192.168.1.10", "198.51.100.7");
    let (_, out) = run(&p, "198.51.100.7:5060", &public);
    assert_eq!(path_of(&out), "<sip:10.0.0.1:5060;lr>");
    // A Path the PBX wrote stays below ours, without the flow it forged (QA 113's
    // attack by way of the registrar); without `register_path` too, where none of
    // ours is added.
    let forging = register.replace(
            "Supported: path\r\n",
            "Supported: path\r\nPath: <sip:10.0.0.1:5060;lr;sf-flow=198.51.100.99~5060~udp>, <sip:10.0.0.1:5060;lr;sf-flow=\"198.51.100.99~5061~udp\">\r\nPath: sip:10.0.0.1:5060;lr;sf-flow=198.51.100.99~5062~udp\r\nPath: <sip:10.0.0.1:5060;lr>;x=1 ; \tsf-flow = 198.51.100.99~5063~udp\r\n",
        );
    let plain = with("");
    for (p, ours) in [(&p, true), (&plain, false)] {
        let (h, out) = run(p, "198.51.100.7:40000", &forging);
        assert!(matches!(h, Handled::Forward(_)), "{out}");
        assert!(!out.contains("198.51.100.99"), "{out}");
        // The second, quoted (no URI has quotes: a strict reader refuses it, a
        // lenient one might read it), goes too (QA 120).
        assert!(
            out.contains("\r\nPath: <sip:10.0.0.1:5060;lr>, <sip:10.0.0.1:5060;lr>\r\n"),
            "{out}"
        );
        // Without brackets, the parameters are the field's: stripped all the same, as
        // one after the brackets with white space around (QA 122).
        assert!(out.contains("\r\nPath: sip:10.0.0.1:5060;lr\r\n"), "{out}");
        assert!(
            out.contains("\r\nPath: <sip:10.0.0.1:5060;lr>;x=1 \r\n"),
            "{out}"
        );
        assert_eq!(
            out.contains(";sf-flow=198.51.100.7~40000~udp"),
            ours,
            "{out}"
        );
        assert_eq!(
            flow_events(p, "198.51.100.7:40000", &forging),
            if ours {
                vec!["stripped", "written"]
            } else {
                vec!["stripped"]
            }
        );
    }
    let (_, out) = run(&plain, "198.51.100.7:40000", register);
    assert!(!out.contains("\r\nPath:"), "{out}");
}

/// A caller behind a NAT (its Via and Contact name a private address) is reached
/// by the core's requests where its call came from: the flow rides in our
/// Record-Route (QA 111: the core's BYE went to the private Contact and was lost).
#[test]
fn the_core_reaches_a_natted_caller_where_its_call_came_from() {
    let p = Policy::from_str(POLICY, "t.toml", std::path::Path::new(".")).unwrap();
    let invite = "INVITE sip:+8613912345678@192.0.2.10 SIP/2.0\r\nVia: SIP/2.0/UDP 192.168.1.10:5060;rport;branch=z9hG4bK-n1\r\nFrom: <sip:+8613812345678@192.168.1.10>;tag=a\r\nTo: <sip:+8613912345678@192.0.2.10>\r\nCall-ID: nat-1\r\nCSeq: 1 INVITE\r\nContact: <sip:2001@192.168.1.10:5060;ob>\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n";
    let bye = |route: &str| {
        format!(
            "BYE sip:2001@192.168.1.10:5060;ob SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bK-n2\r\nRoute: {route}\r\nFrom: <sip:+8613912345678@192.0.2.10>;tag=b\r\nTo: <sip:+8613812345678@192.168.1.10>;tag=a\r\nCall-ID: nat-1\r\nCSeq: 1 BYE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        )
    };
    let rr_of = |out: &str| {
        let at = out.find("\r\nRecord-Route: ").expect("record-routed") + 16;
        let end = at + out[at..].find("\r\n").unwrap();
        out[at..end].to_string()
    };
    // Behind a NAT: from another address than its Via's, or (rport) another port.
    for (source, flow) in [
        ("198.51.100.7:40000", "198.51.100.7~40000~udp"),
        ("192.168.1.10:40001", "192.168.1.10~40001~udp"),
    ] {
        // The second: a trunk that admits the private range, the Via's host, from
        // a port the NAT chose.
        let p = if source.starts_with("192.168") {
            Policy::from_str(
                &POLICY.replace("198.51.100.0/24", "192.168.1.0/24"),
                "t.toml",
                std::path::Path::new("."),
            )
            .unwrap()
        } else {
            Policy::from_str(POLICY, "t.toml", std::path::Path::new(".")).unwrap()
        };
        let (h, out) = run(&p, source, invite);
        assert!(matches!(h, Handled::Forward(_)), "{h:?}");
        let rr = rr_of(&out);
        assert_eq!(
            rr,
            format!("<sip:10.0.0.1:5060;lr;sf-flow={flow}>, <sip:192.0.2.10:5060;lr>"),
            "{out}"
        );
        let (h, out) = run(&p, "10.0.0.5:5060", &bye(&rr));
        let want: SocketAddr = source.parse().unwrap();
        assert_eq!(h, Handled::Forward(Dest::Udp(want)), "{out}");
        assert!(!out.contains("sf-flow"), "{out}");
        assert!(
            out.starts_with("BYE sip:2001@192.168.1.10:5060;ob "),
            "{out}"
        );
    }
    // Not behind one: no flow, and the core's BYE goes by its Request-URI.
    let public = invite.replace("192.168.1.10", "198.51.100.7");
    let (_, out) = run(&p, "198.51.100.7:5060", &public);
    let rr = rr_of(&out);
    assert_eq!(rr, "<sip:10.0.0.1:5060;lr>, <sip:192.0.2.10:5060;lr>");
    let (h, _) = run(
        &p,
        "10.0.0.5:5060",
        &bye(&rr).replace("192.168.1.10", "198.51.100.7"),
    );
    assert_eq!(
        h,
        Handled::Forward(Dest::Udp("198.51.100.7:5060".parse().unwrap()))
    );
    // Its Via public (an ALG's, or written by hand), its Contact private: the same.
    let alg = invite.replace(
        "Via: SIP/2.0/UDP 192.168.1.10:5060;rport",
        "Via: SIP/2.0/UDP 198.51.100.7:5060;rport",
    );
    let (_, out) = run(&p, "198.51.100.7:5060", &alg);
    assert!(
        rr_of(&out).contains(";sf-flow=198.51.100.7~5060~udp>"),
        "{out}"
    );
    // Without rport a port of its own is where it listens (RFC 3261 18.2.2): no flow.
    let no_rport = public.replace(";rport", "");
    let (_, out) = run(&p, "198.51.100.7:40000", &no_rport);
    assert!(!out.contains("sf-flow"), "{out}");
    // A flow in a Record-Route entry the caller wrote itself naming us goes before
    // the core sees it (QA 113 F1).
    let forging = public.replace(
            "Max-Forwards: 70\r\n",
            "Max-Forwards: 70\r\nRecord-Route: <sip:10.0.0.1:5060;lr;sf-flow=198.51.100.99~5060~udp>\r\n",
        );
    let (_, out) = run(&p, "198.51.100.7:5060", &forging);
    assert!(!out.contains("sf-flow"), "{out}");
    // Each shows in the NAT flow counters.
    assert_eq!(flow_events(&p, "198.51.100.7:5060", &forging), ["stripped"]);
    assert_eq!(flow_events(&p, "198.51.100.7:40000", invite), ["written"]);
    assert!(flow_events(&p, "198.51.100.7:5060", &public).is_empty());
    let flowing = "<sip:10.0.0.1:5060;lr;sf-flow=198.51.100.7~40000~udp>";
    assert_eq!(
        flow_events(&p, "10.0.0.5:5060", &bye(flowing)),
        ["followed"]
    );
    assert!(
        out.contains("\r\nRecord-Route: <sip:10.0.0.1:5060;lr>\r\n"),
        "{out}"
    );
    // A flow naming no trunk's peer is none (the value passed through the peer's
    // hands): the Request-URI is the target.
    for forged in [
        "<sip:10.0.0.1:5060;lr;sf-flow=10.20.30.40~5060~udp>",
        "<sip:10.0.0.1:5060;lr;sf-flow=198.51.100.7~99999~udp>",
        "<sip:10.0.0.1:5060;lr;sf-flow=198.51.100.7~5062~sctp>",
    ] {
        let (h, _) = run(&p, "10.0.0.5:5060", &bye(forged));
        assert_eq!(
            h,
            Handled::Forward(Dest::Udp("192.168.1.10:5060".parse().unwrap())),
            "{forged}"
        );
    }
    // Over TCP the flow is the caller's connection.
    let rr = "<sip:10.0.0.1:5060;lr;sf-flow=198.51.100.7~40002~tcp>";
    let (h, _) = run(&p, "10.0.0.5:5060", &bye(rr));
    assert_eq!(
        h,
        Handled::Forward(Dest::TcpTo("198.51.100.7:40002".parse().unwrap()))
    );
}

/// Over TCP the caller's connection is its flow, its Via public or not (QA 115: a
/// PBX behind a NAT writing its public address got none, and the core's requests
/// went to a port the NAT forwards nowhere); the connection gone, the request goes
/// by a public Request-URI as before, and else is answered 430 Flow Failed (RFC 5626
/// 5.3), not 503. Over UDP a caller without `rport` behind a NAT is answered at its
/// source port, as `force_rport` does (QA 115: its 100, 180 and 200 were lost).
#[test]
fn tcp_flows_and_answers_behind_a_nat() {
    struct Conns(Vec<SocketAddr>);
    impl NextHops for Conns {
        fn refuses(&self, _to: SocketAddr, _local: SocketAddr) -> Option<&'static str> {
            None
        }
        fn connection(&self, to: SocketAddr) -> Option<SocketAddr> {
            self.0.contains(&to).then_some(to)
        }
    }
    let p = Policy::from_str(
        &POLICY.replace(
            "listen = [\"udp:192.0.2.10:5060\"]",
            "listen = [\"udp:192.0.2.10:5060\", \"tcp:192.0.2.10:5060\"]",
        ),
        "t.toml",
        std::path::Path::new("."),
    )
    .unwrap();
    let conn: SocketAddr = "198.51.100.7:40002".parse().unwrap();
    let go = |conns: Vec<SocketAddr>, from: &str, t: Transport, text: &str| {
        let hops = Conns(conns);
        let st = Step {
            next_hops: &hops,
            ..step(&p)
        };
        let (h, out, _, _) = run_over(&st, from, "192.0.2.10:5060", t, text);
        (h, out)
    };
    let invite = "INVITE sip:+8613912345678@192.0.2.10 SIP/2.0\r\nVia: SIP/2.0/TCP 198.51.100.7:5060;branch=z9hG4bK-t1\r\nFrom: <sip:+8613812345678@198.51.100.7>;tag=a\r\nTo: <sip:+8613912345678@192.0.2.10>\r\nCall-ID: nat-t\r\nCSeq: 1 INVITE\r\nContact: <sip:2001@198.51.100.7:5060;transport=tcp>\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n";
    let (_, out) = go(vec![], "198.51.100.7:40002", Transport::Tcp, invite);
    assert!(out.contains(";lr;sf-flow=198.51.100.7~40002~tcp>"), "{out}");
    let bye = |method: &str, ruri: &str| {
        format!(
            "{method} {ruri} SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bK-t2\r\nRoute: <sip:10.0.0.1:5060;lr;sf-flow=198.51.100.7~40002~tcp>, <sip:192.0.2.10:5060;lr;transport=tcp>\r\nFrom: <sip:+8613912345678@192.0.2.10>;tag=b\r\nTo: <sip:+8613812345678@198.51.100.7>;tag=a\r\nCall-ID: nat-t\r\nCSeq: 2 {method}\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        )
    };
    let public = "sip:2001@198.51.100.7:5060;transport=tcp";
    let private = "sip:2001@192.168.1.10:5060;transport=tcp";
    // Its connection up: over it.
    let (h, _) = go(
        vec![conn],
        "10.0.0.5:5060",
        Transport::Udp,
        &bye("BYE", private),
    );
    assert_eq!(h, Handled::Forward(Dest::TcpTo(conn)));
    // Gone: a public Request-URI as before; a private one, 430 (an ACK: dropped).
    let (h, _) = go(vec![], "10.0.0.5:5060", Transport::Udp, &bye("BYE", public));
    assert_eq!(
        h,
        Handled::Forward(Dest::TcpTo("198.51.100.7:5060".parse().unwrap()))
    );
    let (h, out) = go(
        vec![],
        "10.0.0.5:5060",
        Transport::Udp,
        &bye("BYE", private),
    );
    assert!(matches!(h, Handled::Respond(_, 430)), "{h:?}");
    assert!(out.starts_with("SIP/2.0 430 Flow Failed\r\n"), "{out}");
    assert!(!out.contains("Retry-After"), "{out}");
    let (h, _) = go(
        vec![],
        "10.0.0.5:5060",
        Transport::Udp,
        &bye("ACK", private),
    );
    assert_eq!(h, Handled::Dropped("flow-failed"));
    // UDP, no rport, behind a NAT: the forwarded Via says where answers go, and our
    // own answers go there.
    let natted = invite
        .replace(
            "SIP/2.0/TCP 198.51.100.7:5060",
            "SIP/2.0/UDP 192.168.1.10:5060",
        )
        .replace("198.51.100.7:5060;transport=tcp", "192.168.1.10:5060");
    let (_, out) = go(vec![], "198.51.100.7:40000", Transport::Udp, &natted);
    assert!(
            out.contains("Via: SIP/2.0/UDP 192.168.1.10:5060;branch=z9hG4bK-t1;rport=40000;received=198.51.100.7\r\n"),
            "{out}"
        );
    let options = "OPTIONS sip:192.0.2.10:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 192.168.1.10:5060;branch=z9hG4bK-k1\r\nFrom: <sip:pbx@192.168.1.10>;tag=k\r\nTo: <sip:192.0.2.10:5060>\r\nCall-ID: ka-1\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n";
    let (h, _) = go(vec![], "198.51.100.7:40000", Transport::Udp, options);
    assert_eq!(
        h,
        Handled::Respond(Dest::Udp("198.51.100.7:40000".parse().unwrap()), 200)
    );
    // Not behind one: the sent-by port, as RFC 3261 18.2.2 says.
    let (h, _) = go(
        vec![],
        "198.51.100.7:40000",
        Transport::Udp,
        &options.replace("192.168.1.10", "198.51.100.7"),
    );
    assert_eq!(
        h,
        Handled::Respond(Dest::Udp("198.51.100.7:5060".parse().unwrap()), 200)
    );
}

/// A trunk's caller whose request the core's connection cannot take is told when
/// to try again; the core, whose request for one peer cannot go, is not, or it
/// would hold back everything it has for the gateway (QA 116).
#[test]
fn retry_after_only_for_the_trunk_side() {
    struct Down;
    impl NextHops for Down {
        fn refuses(&self, _to: SocketAddr, _local: SocketAddr) -> Option<&'static str> {
            Some(NEXT_HOP_UNREACHABLE)
        }
    }
    let p = Policy::from_str(
        &POLICY.replace("udp:10.0.0.5:5060", "tcp:10.0.0.5:5060"),
        "t.toml",
        std::path::Path::new("."),
    )
    .unwrap();
    let st = Step {
        next_hops: &Down,
        ..step(&p)
    };
    let invite = "INVITE sip:+8613912345678@192.0.2.10 SIP/2.0\r\nVia: SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bK-ra1\r\nFrom: <sip:+8613812345678@198.51.100.7>;tag=a\r\nTo: <sip:+8613912345678@192.0.2.10>\r\nCall-ID: ra-1\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n";
    let (h, out, _) = run_on(&st, "198.51.100.7:5060", "192.0.2.10:5060", invite);
    assert!(matches!(h, Handled::Respond(_, 503)), "{h:?}");
    assert!(out.contains("\r\nRetry-After: "), "{out}");
    let bye = "BYE sip:2001@198.51.100.7:5060;transport=tcp SIP/2.0\r\nVia: SIP/2.0/TCP 10.0.0.5:5060;branch=z9hG4bK-ra2\r\nFrom: <sip:+8613912345678@192.0.2.10>;tag=b\r\nTo: <sip:+8613812345678@198.51.100.7>;tag=a\r\nCall-ID: ra-2\r\nCSeq: 2 BYE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n";
    let (h, out, refused) = run_on(&st, "10.0.0.5:5060", "192.0.2.10:5060", bye);
    assert!(matches!(h, Handled::Respond(_, 503)), "{h:?}");
    assert!(!out.contains("Retry-After"), "{out}");
    assert_eq!(refused, [503]);
}

/// A flow reads back as written, IPv6 too; anything else is none.
#[test]
fn flows_read_back_as_written() {
    for (a, t) in [
        ("198.51.100.7:40000", Transport::Udp),
        ("[2001:db8::7]:5060", Transport::Tcp),
        ("[::1]:65535", Transport::Udp),
    ] {
        let a: SocketAddr = a.parse().unwrap();
        let mut v = vec![];
        push_flow(&mut v, a, t);
        assert_eq!(
            parse_flow(&v),
            Some((a, t)),
            "{}",
            String::from_utf8_lossy(&v)
        );
    }
    for bad in [
        "198.51.100.7~0~udp",
        "198.51.100.7~65536~udp",
        "198.51.100.7~5060~sctp",
        "198.51.100.7~5060",
        "gw.example~5060~udp",
        "198.51.100.7~~udp",
        "~5060~udp",
        "",
    ] {
        assert_eq!(parse_flow(bad.as_bytes()), None, "{bad}");
    }
}

/// A call the core offers a NATed PBX: its answer's Contact names its private
/// address, so our entry in the answer's Record-Route gets the flow, and the core's
/// ACK and BYE reach the PBX where its answer came from (QA 111).
#[test]
fn the_core_reaches_a_natted_callee_where_its_answer_came_from() {
    let p = Policy::from_str(POLICY, "t.toml", std::path::Path::new(".")).unwrap();
    let offer = "INVITE sip:2001@198.51.100.7 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bK-o1\r\nFrom: <sip:+8613912345678@10.0.0.5>;tag=c\r\nTo: <sip:2001@198.51.100.7>\r\nCall-ID: nat-2\r\nCSeq: 1 INVITE\r\nContact: <sip:+8613912345678@10.0.0.5>\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n";
    let (h, out) = run(&p, "10.0.0.5:5060", offer);
    assert_eq!(
        h,
        Handled::Forward(Dest::Udp("198.51.100.7:5060".parse().unwrap()))
    );
    let line = |out: &str, name: &str| {
        let at = out.find(&format!("\r\n{name}: ")).expect(name) + 2;
        let end = at + out[at..].find("\r\n").unwrap();
        out[at..end].to_string()
    };
    let (via, rr) = (line(&out, "Via"), line(&out, "Record-Route"));
    let answer = |contact: &str| {
        format!(
            "SIP/2.0 200 OK\r\n{via}\r\nVia: SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bK-o1\r\n{rr}\r\nFrom: <sip:+8613912345678@10.0.0.5>;tag=c\r\nTo: <sip:2001@198.51.100.7>;tag=p\r\nCall-ID: nat-2\r\nCSeq: 1 INVITE\r\nContact: <{contact}>\r\nContent-Length: 0\r\n\r\n"
        )
    };
    // The PBX's answer from the NAT's public port, its Contact private.
    let (h, out) = run(
        &p,
        "198.51.100.7:40000",
        &answer("sip:2001@192.168.1.10:5060"),
    );
    assert_eq!(
        h,
        Handled::Forward(Dest::Udp("10.0.0.5:5060".parse().unwrap()))
    );
    let routed = line(&out, "Record-Route");
    assert!(
        routed.starts_with("Record-Route: <sip:10.0.0.1:5060;lr;sf-flow=198.51.100.7~40000~udp>"),
        "{out}"
    );
    // The core's ACK, routed by that set (reversed, RFC 3261 12.1.2), to the
    // private Contact.
    let set = routed.trim_start_matches("Record-Route: ");
    let mut set: Vec<&str> = set.split(", ").collect();
    set.reverse();
    let ack = format!(
        "ACK sip:2001@192.168.1.10:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bK-o2\r\nRoute: {}\r\nFrom: <sip:+8613912345678@10.0.0.5>;tag=c\r\nTo: <sip:2001@198.51.100.7>;tag=p\r\nCall-ID: nat-2\r\nCSeq: 1 ACK\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
        set.join(", ")
    );
    let (h, _) = run(&p, "10.0.0.5:5060", &ack);
    assert_eq!(
        h,
        Handled::Forward(Dest::Udp("198.51.100.7:40000".parse().unwrap()))
    );
    // A Contact naming where the answer came from: the Record-Route as it was.
    let (_, out) = run(&p, "198.51.100.7:5060", &answer("sip:2001@198.51.100.7"));
    assert_eq!(line(&out, "Record-Route"), rr, "{out}");
    // The same host on another port, over UDP: a NAT's mapping (QA 113 F2).
    let (_, out) = run(&p, "198.51.100.7:40000", &answer("sip:2001@198.51.100.7"));
    assert!(
        line(&out, "Record-Route").contains(";sf-flow=198.51.100.7~40000~udp>"),
        "{out}"
    );
    // A flow the peer wrote into our entry (or an entry of its own naming us) is
    // taken out, and ours written when there is one (QA 113 F1: the core's requests
    // went to another trunk's peer).
    let forged = ";sf-flow=198.51.100.99~5060~udp";
    let ours = rr.find(";lr>").unwrap() + 3;
    for (source, contact, want) in [
        ("198.51.100.7:5060", "sip:2001@198.51.100.7", rr.clone()),
        (
            "198.51.100.7:40000",
            "sip:2001@192.168.1.10",
            format!(
                "{};sf-flow=198.51.100.7~40000~udp{}",
                &rr[..ours],
                &rr[ours..]
            ),
        ),
    ] {
        for tampered in [
            format!("{}{forged}{}", &rr[..ours], &rr[ours..]),
            rr.replacen(";lr>", ";lr;SF%2dFLOW=198.51.100.99~5060~udp>", 1),
            format!("{rr}, <sip:10.0.0.1:5060;lr{forged}>"),
        ] {
            let text = answer(contact).replace(&rr, &tampered);
            let (_, out) = run(&p, source, &text);
            let got = line(&out, "Record-Route");
            let want = if tampered.ends_with(&format!("{forged}>")) {
                format!("{want}, <sip:10.0.0.1:5060;lr>")
            } else {
                want.clone()
            };
            assert_eq!(got, want, "{tampered}");
        }
    }
    // A malformed flow is none: the Request-URI is the target (QA 113 F3: port 0).
    let bye = ack.replace("ACK", "BYE").replace(
        ";sf-flow=198.51.100.7~40000~udp",
        ";sf-flow=198.51.100.7~0~udp",
    );
    let (h, _) = run(&p, "10.0.0.5:5060", &bye);
    assert_eq!(
        h,
        Handled::Forward(Dest::Udp("192.168.1.10:5060".parse().unwrap()))
    );
    // The core's own answers are none of this.
    let (_, out) = run(&p, "10.0.0.5:5060", &answer("sip:2001@192.168.1.10:5060"));
    assert!(!out.contains("sf-flow"), "{out}");
}

/// On a trunk told by its digest answers alone whose dialogs are record-routed, our
/// Record-Route carries the dialog's token to the trunk's peer alone: in the core's
/// answers to the trunk's calls and subscriptions (binding both tags; the request
/// the core gets has the parameter without a value), and in the core's calls and
/// subscriptions to it (binding the core's tag, which the trunk's requests carry in
/// To), taken out of the peer's answers to those. The peer's later requests that
/// bring the token back in their Route go on to the core, our entries taken off,
/// whatever the gateway's tables know (here none: each message is a fresh step).
#[test]
fn an_auth_only_trunks_dialogs_carry_their_token() {
    use md5::{Digest, Md5};
    let p = Policy::from_str(
            "[general]\nauth_secret = \"fleet\"\n[[trunk]]\nname = \"pbx\"\nrole = \"enterprise\"\nlisten = [\"udp:192.0.2.10:5060\"]\nnext_hop = \"udp:10.0.0.5:5060\"\nrecord_route = true\n[trunk.whitelist]\nentries = [\"+8613812345678\"]\n[trunk.auth]\nrealm = \"pbx\"\nusers = [\"pbx1:s3cret\"]\n",
            "t.toml",
            std::path::Path::new("."),
        )
        .unwrap();
    let a = p.trunks[0].dialog_tokens().unwrap();
    let token = |call_id: &str, tag: &str, other: &str, side: Side| {
        let t = a.dialog_token(call_id.as_bytes(), tag.as_bytes(), other.as_bytes(), side);
        String::from_utf8(t.to_vec()).unwrap()
    };
    let hex = |d: &[u8]| d.iter().map(|b| format!("{b:02x}")).collect::<String>();
    let creds = |method: &str, uri: &str| {
        let nonce = a.nonce(0, 1, Some("198.51.100.7".parse().unwrap()));
        let ha1 = hex(&Md5::digest("pbx1:pbx:s3cret"));
        let ha2 = hex(&Md5::digest(format!("{method}:{uri}")));
        let resp = hex(&Md5::digest(format!("{ha1}:{nonce}:{ha2}")));
        format!(
            "Proxy-Authorization: Digest username=\"pbx1\", realm=\"pbx\", nonce=\"{nonce}\", uri=\"{uri}\", response=\"{resp}\", algorithm=MD5\r\n"
        )
    };
    let request = |method: &str, tags: (&str, &str), extra: &str| {
        let to_tag = if tags.1.is_empty() {
            String::new()
        } else {
            format!(";tag={}", tags.1)
        };
        format!(
            "{method} sip:+8613912345678@192.0.2.10 SIP/2.0\r\nVia: SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bK-{method}\r\n{extra}From: <sip:+8613812345678@198.51.100.7>;tag={}\r\nTo: <sip:+8613912345678@192.0.2.10>{to_tag}\r\nCall-ID: t-1\r\nCSeq: 1 {method}\r\nMax-Forwards: 70\r\nEvent: presence\r\nContent-Length: 0\r\n\r\n",
            tags.0
        )
    };
    let ours = token("t-1", "a", "b", Side::From);
    let core = Handled::Forward(Dest::Udp("10.0.0.5:5060".parse().unwrap()));
    let pbx = Handled::Forward(Dest::Udp("198.51.100.7:5060".parse().unwrap()));
    // The answer the core at 10.0.0.5 gives a request that went on as `fwd`.
    let answer = |fwd: &str, status: &str, to_tag: &str| {
        let head: Vec<&str> = fwd.split("\r\n").collect();
        let keep = |n: &str| {
            head.iter()
                .filter(|l| l.starts_with(n))
                .map(|l| format!("{l}\r\n"))
                .collect::<String>()
        };
        format!(
            "SIP/2.0 {status}\r\n{}{}{}{};tag={to_tag}\r\n{}{}Content-Length: 0\r\n\r\n",
            keep("Via:"),
            keep("Record-Route:"),
            keep("From:"),
            keep("To:").trim_end(),
            keep("Call-ID:"),
            keep("CSeq:")
        )
    };
    // The trunk's call and subscription: the core gets the place for the token,
    // the peer the token in the core's answers.
    for method in ["INVITE", "SUBSCRIBE"] {
        let m = request(
            method,
            ("a", ""),
            &creds(method, "sip:+8613912345678@192.0.2.10"),
        );
        let (h, out) = run(&p, "198.51.100.7:5060", &m);
        assert_eq!(h, core, "{out}");
        let place = a.token_place("t-1".as_bytes(), b"a");
        assert!(place.starts_with("~pbx.") && place.len() == 13, "{place}");
        assert!(
            out.contains(&format!(
                "Record-Route: <sip:10.0.0.1:5060;lr;sf-dlg={place}>, <sip:192.0.2.10:5060;lr>\r\n"
            )),
            "{out}"
        );
        for status in ["180 Ringing", "200 OK"] {
            let (h, back) = run(&p, "10.0.0.5:5060", &answer(&out, status, "b"));
            assert_eq!(h, pbx, "{back}");
            assert!(
                    back.contains(&format!("Record-Route: <sip:10.0.0.1:5060;lr;sf-dlg={ours}>, <sip:192.0.2.10:5060;lr>\r\n")),
                    "{back}"
                );
        }
        // An entry the core's side wrote above ours, naming us with a place of its
        // own (QA 195: a callee's, naming another trunk, got that trunk's token):
        // left as it is, ours filled.
        for forged in ["~pbx.deadbeef", "~pbx", "~other.0123abcd"] {
            let odd = answer(&out, "200 OK", "b").replacen(
                "Record-Route: ",
                &format!("Record-Route: <sip:10.0.0.1:5060;lr;sf-dlg={forged}>\r\nRecord-Route: "),
                1,
            );
            let (_, back) = run(&p, "10.0.0.5:5060", &odd);
            assert!(
                back.contains(&format!("sf-dlg={forged}>\r\n"))
                    && back.contains(&format!("sf-dlg={ours}>")),
                "{forged}: {back}"
            );
        }
        // A copy of our place above ours: the same trunk's and call's, both filled
        // (QA 196: the copy was, ours kept the bare place).
        let copied = answer(&out, "200 OK", "b").replacen(
            "Record-Route: ",
            &format!("Record-Route: <sip:192.0.2.10:5060;lr;sf-dlg={place}>\r\nRecord-Route: "),
            1,
        );
        let (_, back) = run(&p, "10.0.0.5:5060", &copied);
        assert_eq!(
            back.matches(&format!("sf-dlg={ours}>")).count(),
            2,
            "{back}"
        );
        // Another fork's answer: its own dialog's token.
        let (_, back) = run(&p, "10.0.0.5:5060", &answer(&out, "200 OK", "b2"));
        assert!(
            back.contains(&format!("sf-dlg={}>", token("t-1", "a", "b2", Side::From))),
            "{back}"
        );
    }
    // Its requests in the dialog, the token in their Route, go on, our entries
    // off; without it (a stranger's made-up tags) they are challenged.
    let route =
        format!("Route: <sip:192.0.2.10:5060;lr>, <sip:10.0.0.1:5060;lr;sf-dlg={ours}>\r\n");
    for method in ["BYE", "NOTIFY", "PRACK", "INFO", "SUBSCRIBE"] {
        let (h, out) = run(
            &p,
            "198.51.100.7:5060",
            &request(method, ("a", "b"), &route),
        );
        assert_eq!(h, core, "{method}: {out}");
        assert!(!out.contains("Route:") && !out.contains("sf-dlg"), "{out}");
        let (h, out) = run(&p, "198.51.100.7:5060", &request(method, ("a", "b"), ""));
        assert!(out.starts_with("SIP/2.0 407 "), "{method}: {h:?} {out}");
    }
    // The core's call and subscription to the PBX: the token binds the core's tag;
    // the PBX's answers go back to the core's side without it (QA 193 N1: a caller
    // of the core's learnt it from the PBX's 180).
    for method in ["INVITE", "SUBSCRIBE"] {
        let m = format!(
            "{method} sip:+8613812345678@198.51.100.7:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bK-c{method}\r\nFrom: <sip:+8613912345678@10.0.0.5>;tag=core1\r\nTo: <sip:+8613812345678@198.51.100.7>\r\nCall-ID: t-2\r\nCSeq: 1 {method}\r\nMax-Forwards: 70\r\nEvent: presence\r\nContent-Length: 0\r\n\r\n"
        );
        let (h, out) = run(&p, "10.0.0.5:5060", &m);
        assert_eq!(
            h,
            Handled::Forward(Dest::Udp("198.51.100.7:5060".parse().unwrap())),
            "{out}"
        );
        let t = token("t-2", "core1", "", Side::To);
        assert!(out.contains(&format!(";lr;sf-dlg={t}>")), "{out}");
        let (h, back) = run(
            &p,
            "198.51.100.7:5060",
            &answer(&out, "180 Ringing", "pbx9"),
        );
        assert_eq!(h, core, "{back}");
        assert!(
            back.contains("Record-Route: <sip:10.0.0.1:5060;lr>, <sip:192.0.2.10:5060;lr>\r\n")
                && !back.contains("sf-dlg"),
            "{back}"
        );
        // However the peer writes our entry back (QA 194 B2: a display name and
        // white space around ';', the address written otherwise, another case).
        for rr in [
            format!("Record-Route: \"sf\" <sip:10.0.0.1:5060;lr ; sf-dlg={t}>\r\n"),
            format!("Record-Route: <sip:127.000.0.1:5060;lr;SF-DLG={t}>\r\n"),
            format!("record-route: <sip:10.0.0.1;sf%2Ddlg={t};lr>\r\n"),
        ] {
            let odd = answer(&out, "180 Ringing", "pbx9").replacen(
                "Record-Route: ",
                &format!("{rr}Record-Route: "),
                1,
            );
            let (h, back) = run(&p, "198.51.100.7:5060", &odd);
            assert_eq!(h, core, "{back}");
            assert!(!back.contains(&t), "{rr}: {back}");
        }
    }
}

#[test]
fn calls_get_a_double_record_route_and_in_dialog_requests_lose_our_routes() {
    let p = Policy::from_str(POLICY, "t.toml", std::path::Path::new(".")).unwrap();
    let invite = "INVITE sip:+8613912345678@192.0.2.10 SIP/2.0\r\nVia: SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bK-1\r\nRecord-Route: <sip:198.51.100.7;lr>\r\nFrom: <sip:+8613812345678@198.51.100.7>;tag=a\r\nTo: <sip:+8613912345678@192.0.2.10>\r\nCall-ID: rr-1\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n";
    let (h, out) = run(&p, "198.51.100.7:5060", invite);
    assert_eq!(
        h,
        Handled::Forward(Dest::Udp("10.0.0.5:5060".parse().unwrap()))
    );
    // Ours first (the core reaches us at the forwarding address, the peer at the
    // listener), before the peer's own Record-Route.
    let rr = out.find("Record-Route: <sip:10.0.0.1:5060;lr>, <sip:192.0.2.10:5060;lr>\r\n");
    let theirs = out.find("Record-Route: <sip:198.51.100.7;lr>");
    assert!(rr.is_some() && rr < theirs, "{out}");

    // The peer's BYE routes through both of our entries, then its own next one.
    let bye = "BYE sip:+8613912345678@10.0.0.5 SIP/2.0\r\nVia: SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bK-2\r\nRoute: <sip:192.0.2.10:5060;lr>, <sip:10.0.0.1:5060;lr>\r\nRoute: <sip:10.0.0.9;lr>\r\nFrom: <sip:+8613812345678@198.51.100.7>;tag=a\r\nTo: <sip:+8613912345678@192.0.2.10>;tag=b\r\nCall-ID: rr-1\r\nCSeq: 2 BYE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n";
    let (_, out) = run(&p, "198.51.100.7:5060", bye);
    assert!(
        !out.contains("192.0.2.10:5060;lr") && !out.contains("10.0.0.1:5060;lr"),
        "{out}"
    );
    assert!(out.contains("\r\nRoute: <sip:10.0.0.9;lr>\r\n"), "{out}");

    // From the core, our entry and then the peer's: it goes to the peer's.
    let bye = "BYE sip:+8613812345678@198.51.100.7 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bK-3\r\nRoute: <sip:10.0.0.1:5060;lr>, <sip:192.0.2.10:5060;lr>, <sip:198.51.100.7;lr>\r\nFrom: <sip:+8613912345678@192.0.2.10>;tag=b\r\nTo: <sip:+8613812345678@198.51.100.7>;tag=a\r\nCall-ID: rr-1\r\nCSeq: 1 BYE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n";
    let (h, out) = run(&p, "10.0.0.5:5060", bye);
    assert_eq!(
        h,
        Handled::Forward(Dest::Udp("198.51.100.7:5060".parse().unwrap()))
    );
    assert!(
        out.contains("\r\nRoute: <sip:198.51.100.7;lr>\r\n"),
        "{out}"
    );
    // The same from another port of the core's host (another socket of the core, a
    // TCP connection it opened): the core's too, not a stranger's call.
    let (h, _) = run(&p, "10.0.0.5:41234", bye);
    assert_eq!(
        h,
        Handled::Forward(Dest::Udp("198.51.100.7:5060".parse().unwrap()))
    );
    // Another host is a stranger; so is an initial request from the core's host on
    // another port (a process there is no core's dialog).
    let (h, _) = run(&p, "10.0.0.6:5060", bye);
    assert!(!matches!(h, Handled::Forward(_)), "{h:?}");
    let initial = bye.replace(";tag=a\r\n", "\r\n").replace("BYE", "INVITE");
    let (h, _) = run(&p, "10.0.0.5:41234", &initial);
    assert!(!matches!(h, Handled::Forward(_)), "{h:?}");
    let (h, _) = run(&p, "10.0.0.5:5060", &initial);
    assert!(matches!(h, Handled::Forward(_)), "{h:?}");

    // An initial INVITE from a peer that has us as its outbound proxy: our value
    // goes, in a list or a field of its own; another's stays.
    for (route, kept) in [
        ("Route: <sip:192.0.2.10:5060;lr>\r\n", None),
        (
            "Route: <sip:192.0.2.10:5060;lr>, <sip:10.0.0.9;lr>\r\n",
            Some("Route: <sip:10.0.0.9;lr>\r\n"),
        ),
        (
            "Route: <sip:192.0.2.10:5060;lr>\r\nRoute: <sip:10.0.0.9;lr>\r\n",
            Some("Route: <sip:10.0.0.9;lr>\r\n"),
        ),
    ] {
        let invite = invite.replace("Record-Route: <sip:198.51.100.7;lr>\r\n", route);
        let (h, out) = run(&p, "198.51.100.7:5060", &invite);
        assert_eq!(
            h,
            Handled::Forward(Dest::Udp("10.0.0.5:5060".parse().unwrap()))
        );
        let routes: Vec<&str> = out
            .split("\r\n")
            .filter(|l| l.starts_with("Route:"))
            .collect();
        let want: Vec<&str> = kept.map(|k| k.trim_end()).into_iter().collect();
        assert_eq!(routes, want, "{out}");
    }
}
