//! A fixed number of iterations of one workload, for counting instructions under
//! callgrind (`scripts/instructions.sh`): on a shared VM without hardware counters,
//! time moves 10-20% between runs, instruction counts do not.
//!
//!     WHAT=parse|decide|sipi|behaviour|rsip N=10000 target/release/deps/instructions-*
//!
//! `behaviour` is `decide` with the behaviour rules on (callers rotating over 4096).

mod common;

use sipfence::decide::decide;
use sipfence::policy::Policy;
use sipfence::sip::Message;
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
            "rsip" => {
                let m = rsip::SipMessage::try_from(black_box(v.as_slice())).unwrap();
                black_box(&m);
                1
            }
            w => panic!("WHAT={w}: parse, decide, sipi, behaviour or rsip"),
        };
    }
    black_box(acc);
}
