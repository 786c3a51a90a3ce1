//! Parse, and parse + decide, of a realistic INVITE (PAI, Privacy, SDP), beside the same
//! message parsed by the `rsip` crate in the same run.
//!
//!     cargo bench --bench core

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use sipfence::decide::{Context, decide};
use sipfence::policy::Policy;
use sipfence::policy::rate::NoCounting;
use sipfence::sip::Message;
use std::hint::black_box;

fn invite() -> Bytes {
    Bytes::from_static(include_bytes!("../testdata/sip/invite-pai-sdp.sip"))
}

fn bench(c: &mut Criterion) {
    let raw = invite();
    let policy = Policy::builtin().expect("built-in policy");
    let ctx = Context {
        source: "127.0.0.1:5070".parse().unwrap(),
        local: None,
        trunk: None,
        now_ms: 1_795_998_600_000,
        rates: &NoCounting,
    };
    let mut g = c.benchmark_group("invite");
    g.bench_function("sipfence_parse", |b| {
        b.iter(|| Message::parse(black_box(raw.clone())).unwrap())
    });
    g.bench_function("sipfence_parse_decide", |b| {
        b.iter(|| {
            let m = Message::parse(black_box(raw.clone())).unwrap();
            black_box(decide(&policy, &m, &ctx).is_reject())
        })
    });
    let v = raw.to_vec();
    g.bench_function("rsip_parse", |b| {
        b.iter(|| rsip::SipMessage::try_from(black_box(v.as_slice())).unwrap())
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
