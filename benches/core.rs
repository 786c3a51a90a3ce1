//! Parse, and parse + decide, of a realistic INVITE (PAI, Privacy, SDP), beside the same
//! message parsed by the `rsip` crate in the same run; and parse + decide of a SIP-I
//! INVITE (the same call with an ISUP IAM in a multipart body) beside it.
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

/// The same call as SIP-I: SDP and an IAM (called, calling, generic number, original
/// called number) in a multipart/mixed body.
fn sipi_invite() -> Bytes {
    use sipfence::isup::encode::{IamBuilder, NumberSpec, sipi_body};
    let plain = invite();
    let text = std::str::from_utf8(&plain).unwrap();
    let (head, sdp) = text.split_once("\r\n\r\n").unwrap();
    let iam = IamBuilder::new("861012345678")
        .calling(NumberSpec::international("442071234567"))
        .generic(NumberSpec::international("442071234567"))
        .original_called(NumberSpec::international("861012345678"))
        .build();
    let (ct, body) = sipi_body(sdp, &iam, "sipfence-bench");
    let head: Vec<&str> = head
        .split("\r\n")
        .filter(|l| !l.starts_with("Content-Type") && !l.starts_with("Content-Length"))
        .collect();
    let mut m = format!(
        "{}\r\nMIME-Version: 1.0\r\nContent-Type: {ct}\r\nContent-Length: {}\r\n\r\n",
        head.join("\r\n"),
        body.len()
    )
    .into_bytes();
    m.extend_from_slice(&body);
    Bytes::from(m)
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
    let sipi = sipi_invite();
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
