//! A fixed number of iterations of one workload, for counting instructions under
//! callgrind (`scripts/instructions.sh`): on a shared VM without hardware counters,
//! time moves 10-20% between runs, instruction counts do not.
//!
//!     WHAT=parse|decide|sipi|behaviour|proxy|rsip N=10000 target/release/deps/instructions-*
//!
//! `behaviour` is `decide` with the behaviour rules on (callers rotating over 4096).
//! `proxy` is the proxy's stateless step for a call set-up: the INVITE forwarded (parse,
//! checks, decision, our Via), then its 180 and 200 relayed back (no sockets: the
//! user-space work the proxy does for those three datagrams).

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
    let mut out = Vec::with_capacity(2048);
    let mut edits = sipfence::sip::rewrite::EditList::new();
    let mut acc = 0usize;
    for i in 0..n {
        acc += match what.as_str() {
            "parse" => Message::parse(black_box(raw.clone())).unwrap().len(),
            "decide" => {
                let m = Message::parse(black_box(raw.clone())).unwrap();
                decide(&policy, &m, &ctx).is_reject() as usize + m.len()
            }
            "sipi" => {
                let m = Message::parse(black_box(sipi.clone())).unwrap();
                decide(&policy, &m, &ctx).is_reject() as usize + m.len()
            }
            "behaviour" => {
                let m = Message::parse(black_box(callers[i % 4096].clone())).unwrap();
                let ctx = sipfence::decide::Context {
                    now_ms: ctx.now_ms + i as u64,
                    behaviour: &tracker,
                    ..common::context()
                };
                decide(&bpolicy, &m, &ctx).is_reject() as usize + m.len()
            }
            "proxy" => {
                let step = setup.step(&policy);
                let mut n = 0;
                for (data, from) in [
                    (&raw, &setup.uac),
                    (&setup.ringing, &setup.uas),
                    (&setup.ok, &setup.uas),
                ] {
                    let h = handle(
                        &step,
                        black_box(data.clone()),
                        from,
                        &mut out,
                        &mut edits,
                        &mut |_| {},
                    );
                    n += matches!(h, Ok(Handled::Forward(_))) as usize + out.len();
                }
                n
            }
            "rsip" => {
                let m = rsip::SipMessage::try_from(black_box(v.as_slice())).unwrap();
                black_box(&m);
                1
            }
            w => panic!("WHAT={w}: parse, decide, sipi, behaviour, proxy or rsip"),
        };
    }
    black_box(acc);
}

/// The bench INVITE as the UAC sends it to the international trunk, and the 180 and 200
/// the next hop answers to the INVITE sipfence forwarded (built once, outside the count).
struct ProxySetup {
    uac: Origin,
    uas: Origin,
    ringing: Bytes,
    ok: Bytes,
}

impl ProxySetup {
    fn step<'a>(&self, policy: &'a Policy) -> Step<'a> {
        Step {
            policy,
            rates: &sipfence::policy::rate::NoCounting,
            behaviour: &sipfence::behaviour::NoTracking,
            now_ms: common::context().now_ms,
            via_addr: ([127, 0, 0, 1], 5060).into(),
            overloaded: false,
        }
    }
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
    };
    let (mut out, mut edits) = (Vec::new(), sipfence::sip::rewrite::EditList::new());
    let h = handle(
        &s.step(policy),
        common::invite(),
        &s.uac,
        &mut out,
        &mut edits,
        &mut |_| {},
    );
    assert!(
        matches!(h, Ok(Handled::Forward(_))),
        "the bench INVITE is forwarded"
    );
    let fwd = Message::parse(Bytes::from(out)).expect("forwarded INVITE parses");
    let answer = |code: u16, phrase: &str| {
        let mut r = Vec::new();
        write_response(&fwd, code, phrase, &Extra::default(), &mut r);
        Bytes::from(r)
    };
    s.ringing = answer(180, "Ringing");
    s.ok = answer(200, "OK");
    for r in [&s.ringing, &s.ok] {
        let h = handle(
            &s.step(policy),
            r.clone(),
            &s.uas,
            &mut Vec::new(),
            &mut edits,
            &mut |_| {},
        );
        assert!(
            matches!(h, Ok(Handled::Forward(_))),
            "responses are relayed"
        );
    }
    s
}
