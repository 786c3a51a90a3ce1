//! A fixed number of iterations of one workload, for counting instructions under
//! callgrind (`scripts/instructions.sh`): on a shared VM without hardware counters,
//! time moves 10-20% between runs, instruction counts do not.
//!
//!     WHAT=parse|decide|sipi|behaviour|proxy|rsip N=10000 target/release/deps/instructions-*
//!
//! `behaviour` is `decide` with the behaviour rules on (callers rotating over 4096).
//! `proxy` is the proxy's stateless step for a call set-up: the INVITE forwarded (parse,
//! checks, decision, our Via), then its 180 and 200 relayed back (no sockets: the
//! user-space work the proxy does for those three datagrams). `call` is the load run's
//! average call: one allowed call whole (INVITE, 180, 200, ACK, BYE and its 200) and one
//! refused (INVITE answered 403, its ACK absorbed), counted as two calls.

mod common;

use bytes::Bytes;
use sipfence::decide::decide;
use sipfence::policy::Policy;
use sipfence::policy::config::{ListenSpec, Transport};
use sipfence::proxy::stateless::{Handled, Origin, Step, handle};
use sipfence::sip::Message;
use sipfence::sip::response::{Extra, write_response};
use std::hint::black_box;

fn main() {
    // `cargo bench` passes "--bench": run only when asked for a workload.
    let Ok(what) = std::env::var("WHAT") else {
        return;
    };
    let n: usize = std::env::var("N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let (raw, sipi) = (common::invite(), common::sipi_invite());
    let policy = Policy::builtin().unwrap();
    let ctx = common::context();
    let v = raw.to_vec();
    let bpolicy = common::behaviour_policy();
    let callers = common::invites_from_many_callers();
    let tracker = sipfence::behaviour::local::LocalTracker::new(262_144, 262_144);
    let setup = proxy_setup(&policy);
    // The same calls on a trunk that records the route: each call's From is kept for
    // its later requests (QA 173 F1).
    let rr_policy = Policy::from_str(
        &sipfence::policy::BUILTIN_CONFIG.replace(
            "name = \"intl\"\n",
            "name = \"intl\"\nrecord_route = true\n",
        ),
        "builtin-rr",
        std::path::Path::new("."),
    )
    .unwrap();
    let rr_setup = proxy_setup(&rr_policy);
    let mut out = Vec::with_capacity(2048);
    let mut edits = sipfence::sip::rewrite::EditList::new();
    // Parsed into as the proxy does: one message per worker, its header table reused.
    let mut msg = Message::empty();
    let mut acc = 0usize;
    for i in 0..n {
        acc += match what.as_str() {
            "parse" => {
                msg.parse_into(black_box(raw.clone())).unwrap();
                msg.len()
            }
            "decide" => {
                msg.parse_into(black_box(raw.clone())).unwrap();
                decide(&policy, &msg, &ctx).is_reject() as usize + msg.len()
            }
            "sipi" => {
                msg.parse_into(black_box(sipi.clone())).unwrap();
                decide(&policy, &msg, &ctx).is_reject() as usize + msg.len()
            }
            "behaviour" => {
                msg.parse_into(black_box(callers[i % 4096].clone()))
                    .unwrap();
                let ctx = sipfence::decide::Context {
                    now_ms: ctx.now_ms + i as u64,
                    wall_ms: ctx.now_ms + i as u64,
                    behaviour: &tracker,
                    ..common::context()
                };
                decide(&bpolicy, &msg, &ctx).is_reject() as usize + msg.len()
            }
            "proxy" => counted(
                &setup.step_at(&policy, i),
                &setup.set_up,
                &mut msg,
                &mut out,
                &mut edits,
            ),
            "call" => counted(
                &setup.step_at(&policy, i),
                &setup.call,
                &mut msg,
                &mut out,
                &mut edits,
            ),
            "call-rr" => counted(
                &rr_setup.step_at(&rr_policy, i),
                &rr_setup.call,
                &mut msg,
                &mut out,
                &mut edits,
            ),
            "rsip" => {
                let m = rsip::SipMessage::try_from(black_box(v.as_slice())).unwrap();
                black_box(&m);
                1
            }
            w => panic!("WHAT={w}: parse, decide, sipi, behaviour, proxy, call, call-rr or rsip"),
        };
    }
    black_box(acc);
}

/// Datagrams through the stateless step, reusing the caller's buffers (the counted loop).
fn counted(
    step: &Step<'_>,
    datagrams: &[(Bytes, Origin)],
    msg: &mut Message,
    out: &mut Vec<u8>,
    edits: &mut sipfence::sip::rewrite::EditList,
) -> usize {
    let mut n = 0;
    for (data, from) in datagrams {
        let h = handle(
            step,
            black_box(data.clone()),
            msg,
            from,
            out,
            edits,
            &mut |_| {},
        );
        n += h.is_ok() as usize + out.len();
    }
    n
}

/// The bench INVITE as the UAC sends it to the international trunk, and the 180 and 200
/// the next hop answers to the INVITE sipfence forwarded (built once, outside the count).
struct ProxySetup {
    uac: Origin,
    uas: Origin,
    ringing: Bytes,
    ok: Bytes,
    /// The call set-up: the INVITE, then the 180 and the 200 coming back.
    set_up: Vec<(Bytes, Origin)>,
    /// Every datagram of an allowed and of a refused call, in order, with its sender.
    call: Vec<(Bytes, Origin)>,
    rates: sipfence::policy::rate::LocalRateCounter,
}

impl ProxySetup {
    fn step<'a>(&'a self, policy: &'a Policy) -> Step<'a> {
        self.step_at(policy, 0)
    }

    /// The step of iteration `i`: with the proxy's own counters (the transaction
    /// memory every INVITE goes through), each iteration past the last one's 32 s, so
    /// that each INVITE is a new call as in the load run, not a retransmission.
    fn step_at<'a>(&'a self, policy: &'a Policy, i: usize) -> Step<'a> {
        Step {
            policy,
            rates: &self.rates,
            behaviour: &sipfence::behaviour::NoTracking,
            now_ms: common::context().now_ms + i as u64 * 40_000,
            wall_ms: common::context().now_ms + i as u64 * 40_000,
            via_addr: ([127, 0, 0, 1], 5060).into(),
            via_other: None,
            overloaded: false,
            draining: false,
            next_hops: &sipfence::proxy::stateless::NoNextHops,
        }
    }
}

/// One datagram through the stateless step, outside the count: what it did and what it sent.
fn step_once(
    step: &Step<'_>,
    data: &Bytes,
    from: &Origin,
) -> (Result<Handled, sipfence::sip::ParseError>, Vec<u8>) {
    let (mut out, mut edits) = (Vec::new(), sipfence::sip::rewrite::EditList::new());
    let h = handle(
        step,
        data.clone(),
        &mut Message::empty(),
        from,
        &mut out,
        &mut edits,
        &mut |_| {},
    );
    (h, out)
}

/// A message's To value, tag included.
/// `response` with its To tag replaced by `tag`.
fn retag(response: &[u8], tag: &str) -> Vec<u8> {
    let text = String::from_utf8_lossy(response);
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive("\r\n") {
        match (line.starts_with("To:"), line.find(";tag=")) {
            (true, Some(at)) => {
                let rest = &line[at + 5..];
                let end = rest.find([';', '\r']).unwrap_or(rest.len());
                out.push_str(&line[..at + 5]);
                out.push_str(tag);
                out.push_str(&rest[end..]);
            }
            _ => out.push_str(line),
        }
    }
    out.into_bytes()
}

fn to_value(m: &Message) -> String {
    m.first(sipfence::sip::HeaderName::To)
        .map(|h| String::from_utf8_lossy(h.value().of(m.buf())).into_owned())
        .expect("a To field")
}

fn proxy_setup(policy: &Policy) -> ProxySetup {
    let local = ListenSpec {
        transport: Transport::Udp,
        addr: ([127, 0, 0, 1], 5060).into(),
    };
    let origin = |port: u16| Origin {
        source: ([127, 0, 0, 1], port).into(),
        local,
        conn: None,
    };
    let (uac, uas) = (origin(5070), origin(5080));
    let mut s = ProxySetup {
        uac,
        uas,
        ringing: Bytes::new(),
        ok: Bytes::new(),
        set_up: Vec::new(),
        call: Vec::new(),
        rates: sipfence::policy::rate::LocalRateCounter::new(1 << 20),
    };
    let (h, out) = step_once(&s.step(policy), &common::invite(), &s.uac);
    assert!(
        matches!(h, Ok(Handled::Forward(_))),
        "the bench INVITE is forwarded"
    );
    let fwd = Message::parse(Bytes::from(out)).expect("forwarded INVITE parses");
    let answer = |code: u16, phrase: &str| {
        let mut r = Vec::new();
        write_response(&fwd, code, phrase, &Extra::default(), &mut r);
        // A UAS picks its own To tag (RFC 3261 8.2.6.2); the one our writer gives is the
        // tag sipfence puts on its own answers, whose ACK it absorbs.
        Bytes::from(retag(&r, "as6f0c1e27"))
    };
    s.ringing = answer(180, "Ringing");
    s.ok = answer(200, "OK");
    // The rest of the allowed call as the UAC sends it: the ACK and the BYE carry the
    // 200's To tag, each in a new transaction; the BYE's 200 comes back like the INVITE's.
    let to = to_value(&Message::parse(s.ok.clone()).expect("200 parses"));
    let text = String::from_utf8_lossy(&common::invite()).into_owned();
    let head = text
        .split("\r\n\r\n")
        .next()
        .expect("a header section")
        .to_owned();
    let in_dialog = |method: &str, cseq: u32, branch: &str| {
        let mut m = String::new();
        for line in head.split("\r\n") {
            let line = if line.starts_with("INVITE ") {
                line.replacen("INVITE", method, 1)
            } else if line.starts_with("To:") {
                format!("To: {to}")
            } else if line.starts_with("CSeq:") {
                format!("CSeq: {cseq} {method}")
            } else if line.starts_with("Via:") {
                line.replace("4b0e3d1b8a1c", branch)
            } else if line.starts_with("Content-Type:") {
                continue;
            } else if line.starts_with("Content-Length:") {
                "Content-Length: 0".to_owned()
            } else {
                line.to_owned()
            };
            m.push_str(&line);
            m.push_str("\r\n");
        }
        m.push_str("\r\n");
        Bytes::from(m)
    };
    let (ack, bye) = (in_dialog("ACK", 1, "ack1"), in_dialog("BYE", 2, "bye1"));
    let (h, fwd_bye) = step_once(&s.step(policy), &bye, &s.uac);
    assert!(matches!(h, Ok(Handled::Forward(_))), "the BYE is forwarded");
    let fwd_bye = Message::parse(Bytes::from(fwd_bye)).expect("forwarded BYE parses");
    let mut bye_ok = Vec::new();
    write_response(&fwd_bye, 200, "OK", &Extra::default(), &mut bye_ok);
    // A refused call: the same INVITE from a +86 caller on the international trunk.
    let spoofed = Bytes::from(text.replace("+442071234567", "+8613912345678"));
    let (h, answer_403) = step_once(&s.step(policy), &spoofed, &s.uac);
    assert!(
        matches!(h, Ok(Handled::Respond(_, 403))),
        "the +86 INVITE is refused"
    );
    let refused = Message::parse(Bytes::from(answer_403)).expect("403 parses");
    assert_eq!(refused.status(), Some(403));
    let to403 = to_value(&refused);
    // The ACK to a non-2xx final answer is part of the INVITE's transaction: same branch.
    let ack403 = String::from_utf8_lossy(&in_dialog("ACK", 1, "4b0e3d1b8a1c"))
        .replace("+442071234567", "+8613912345678")
        .replace(&format!("To: {to}"), &format!("To: {to403}"));
    s.set_up = vec![
        (common::invite(), s.uac),
        (s.ringing.clone(), s.uas),
        (s.ok.clone(), s.uas),
    ];
    s.call = vec![
        (common::invite(), s.uac),
        (s.ringing.clone(), s.uas),
        (s.ok.clone(), s.uas),
        (ack, s.uac),
        (bye, s.uac),
        (Bytes::from(bye_ok), s.uas),
        (spoofed, s.uac),
        (Bytes::from(ack403), s.uac),
    ];
    let outcomes: Vec<String> = s
        .call
        .iter()
        .map(|(d, from)| match step_once(&s.step(policy), d, from).0 {
            Ok(Handled::Forward(_)) => "forward".to_owned(),
            Ok(Handled::Respond(_, c)) => c.to_string(),
            Ok(Handled::Absorbed) => "absorbed".to_owned(),
            other => format!("{other:?}"),
        })
        .collect();
    assert_eq!(
        outcomes,
        [
            "forward", "forward", "forward", "forward", "forward", "forward", "403", "absorbed"
        ],
        "the call's datagrams go where a call's go"
    );
    for r in [&s.ringing, &s.ok] {
        let (h, _) = step_once(&s.step(policy), r, &s.uas);
        assert!(
            matches!(h, Ok(Handled::Forward(_))),
            "responses are relayed"
        );
    }
    s
}
