//! A fixed number of iterations of one workload, for counting instructions under
//! callgrind (`scripts/instructions.sh`): on a shared VM without hardware counters,
//! time moves 10-20% between runs, instruction counts do not.
//!
//!     WHAT=parse|decide|sipi|rsip N=10000 target/release/deps/instructions-*

use bytes::Bytes;
use sipfence::decide::{Context, decide};
use sipfence::policy::Policy;
use sipfence::policy::rate::NoCounting;
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
    let raw = Bytes::from_static(include_bytes!("../testdata/sip/invite-pai-sdp.sip"));
    let sipi = {
        use sipfence::isup::encode::{IamBuilder, NumberSpec, sipi_body};
        let text = std::str::from_utf8(&raw).unwrap();
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
    };
    let policy = Policy::builtin().unwrap();
    let ctx = Context {
        source: "127.0.0.1:5070".parse().unwrap(),
        local: None,
        trunk: None,
        now_ms: 1_795_998_600_000,
        rates: &NoCounting,
    };
    let v = raw.to_vec();
    let mut acc = 0usize;
    for _ in 0..n {
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
            "rsip" => {
                let m = rsip::SipMessage::try_from(black_box(v.as_slice())).unwrap();
                black_box(&m);
                1
            }
            w => panic!("WHAT={w}: parse, decide, sipi or rsip"),
        };
    }
    black_box(acc);
}
