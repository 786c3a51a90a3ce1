//! Parse, and parse + decide, of a realistic INVITE (PAI, Privacy, SDP), beside the same
//! message parsed by the `rsip` crate in the same run; and parse + decide of a SIP-I
//! INVITE (the same call with an ISUP IAM in a multipart body) beside it; and parse +
//! decide with the behaviour rules on (the tracker counting every call) against off;
//! and the HEP encoding `[hep]` adds per message.
//!
//!     cargo bench --bench core

mod common;

use criterion::{Criterion, criterion_group, criterion_main};
use sipfence::decide::decide;
use sipfence::policy::Policy;
use sipfence::sip::Message;
use std::hint::black_box;

fn bench(c: &mut Criterion) {
    let raw = common::invite();
    let policy = Policy::builtin().expect("built-in policy");
    let ctx = common::context();
    let mut g = c.benchmark_group("invite");
    // Parsed into one reused message, as the proxy does (its header table is not built
    // and moved for each message).
    let mut m = Message::empty();
    g.bench_function("sipfence_parse", |b| {
        b.iter(|| {
            m.parse_into(black_box(raw.clone())).unwrap();
            black_box(m.len())
        })
    });
    g.bench_function("sipfence_parse_decide", |b| {
        b.iter(|| {
            m.parse_into(black_box(raw.clone())).unwrap();
            black_box(decide(&policy, &m, &ctx).is_reject())
        })
    });
    let sipi = common::sipi_invite();
    g.bench_function("sipfence_parse_decide_sipi", |b| {
        b.iter(|| {
            m.parse_into(black_box(sipi.clone())).unwrap();
            black_box(decide(&policy, &m, &ctx).is_reject())
        })
    });
    let v = raw.to_vec();
    g.bench_function("rsip_parse", |b| {
        b.iter(|| rsip::SipMessage::try_from(black_box(v.as_slice())).unwrap())
    });
    g.finish();
}

/// The cost of the behaviour rules: the same INVITE on the same trunk, with and without
/// `[trunk.behaviour]` (every rule evaluated, action monitor so that every call goes the
/// whole way), callers rotating over 4096 numbers so that the table is really used.
fn behaviour(c: &mut Criterion) {
    use sipfence::behaviour::local::LocalTracker;
    let msgs = common::invites_from_many_callers();
    let off = Policy::builtin().expect("built-in policy");
    let on = common::behaviour_policy();
    let tracker = LocalTracker::new(262_144, 262_144);
    let mut g = c.benchmark_group("behaviour");
    for (name, policy) in [("off", &off), ("on", &on)] {
        let mut i = 0usize;
        let mut now = 1_795_998_600_000u64;
        g.bench_function(name, |b| {
            b.iter(|| {
                i = (i + 1) & 4095;
                now += 1;
                let m = Message::parse(black_box(msgs[i].clone())).unwrap();
                let ctx = sipfence::decide::Context {
                    now_ms: now,
                    wall_ms: now,
                    behaviour: &tracker,
                    ..common::context()
                };
                let d = decide(policy, &m, &ctx);
                assert!(d.features.is_some() == (name == "on"));
                black_box(d.is_reject())
            })
        });
    }
    g.finish();
}

/// What `[hep]` adds to each message on the proxy's thread: reading the README INVITE's
/// Call-ID off its bytes and encoding it as HEPv3 into a fresh buffer (the sender thread's `send` is not in it), beside parse
/// + decide of the same message.
fn hep(c: &mut Criterion) {
    use sipfence::hep::{Mirror, OVERHEAD, encode};
    use sipfence::policy::config::Transport;
    let raw = common::invite();
    let mut g = c.benchmark_group("hep");
    g.bench_function("encode", |b| {
        b.iter(|| {
            let m = Mirror {
                src: "192.0.2.1:5060".parse().unwrap(),
                dst: "198.51.100.2:5060".parse().unwrap(),
                transport: Transport::Udp,
                ts_us: 1_795_998_600_000_000,
                capture_id: 2001,
                password: b"",
                payload: black_box(&raw),
                correlation: sipfence::sip::call_id_of(black_box(&raw)).unwrap_or_default(),
            };
            let mut out = Vec::with_capacity(raw.len() + OVERHEAD);
            assert!(encode(&m, &mut out));
            black_box(out)
        })
    });
    g.finish();
}

criterion_group!(benches, bench, behaviour, hep);
criterion_main!(benches);
