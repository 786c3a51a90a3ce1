//! Parse, and parse + decide, of a realistic INVITE (PAI, Privacy, SDP), beside the same
//! message parsed by the `rsip` crate in the same run; and parse + decide of a SIP-I
//! INVITE (the same call with an ISUP IAM in a multipart body) beside it.
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
    g.bench_function("sipfence_parse", |b| {
        b.iter(|| Message::parse(black_box(raw.clone())).unwrap())
    });
    g.bench_function("sipfence_parse_decide", |b| {
        b.iter(|| {
            let m = Message::parse(black_box(raw.clone())).unwrap();
            black_box(decide(&policy, &m, &ctx).is_reject())
        })
    });
    let sipi = common::sipi_invite();
    g.bench_function("sipfence_parse_decide_sipi", |b| {
        b.iter(|| {
            let m = Message::parse(black_box(sipi.clone())).unwrap();
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
