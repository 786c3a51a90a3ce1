//! Memory and speed of the behaviour tables under a flood of invented callers: a
//! million INVITEs, each from a calling number never seen before, through parse +
//! decide with every behaviour rule on, the default table sizes. Prints the process's
//! resident memory before the tables exist, once they are allocated, and after the
//! flood; and the rate of the flood.
//!
//!     cargo bench --bench behaviour_flood            # N=1000000 by default

use bytes::Bytes;
use sipfence::behaviour::local::LocalTracker;
use sipfence::decide::{Context, Outcome, decide};
use sipfence::policy::Policy;
use sipfence::policy::rate::LocalRateCounter;
use sipfence::sip::Message;
use std::time::Instant;

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

fn main() {
    // `cargo bench` passes --bench; nothing else to read.
    let n: u64 = std::env::var("N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let text = format!(
        "{}\n[trunk.behaviour]\nattempts = 60\ndistinct_callees = 30\nsequential_callees = 10\nmin_asr_percent = 10\nring_once = 3\nshort_calls = 5\n",
        r#"
[[trunk]]
name = "ic"
role = "interconnect"
sources = ["127.0.0.0/8"]
next_hop = "udp:127.0.0.1:5080""#
    );
    let policy = Policy::from_str(&text, "flood", std::path::Path::new(".")).expect("policy");
    let sizes = policy.behaviour;
    let rates = LocalRateCounter::new(1024);
    let before = rss_kib();
    let tracker = LocalTracker::new(sizes.callers, sizes.calls);
    tracker.reserve();
    let allocated = rss_kib();
    let t0 = Instant::now();
    let mut forwarded = 0u64;
    for i in 0..n {
        // Mobile numbers +86 139 0000 0000 onwards: valid, each one new.
        let caller = 13_900_000_000u64 + i;
        let m = format!(
            "INVITE sip:+8613812345678@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-{i}\r\nFrom: <sip:+86{caller}@127.0.0.1>;tag={i}\r\nTo: <sip:+8613812345678@127.0.0.1>\r\nCall-ID: flood-{i}\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        );
        let m = Message::parse(Bytes::from(m)).expect("flood INVITE parses");
        let ctx = Context {
            source: "127.0.0.1:5070".parse().expect("literal"),
            local: None,
            trunk: None,
            now_ms: 1_796_004_000_000 + i / 10,
            wall_ms: 1_796_004_000_000 + i / 10,
            rates: &rates,
            behaviour: &tracker,
        };
        if decide(&policy, &m, &ctx).outcome == Outcome::Forward {
            forwarded += 1;
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    let after = rss_kib();
    let s = tracker.stats(1_796_004_000_000 + n / 10);
    println!(
        "behaviour flood: {n} distinct callers in {secs:.2} s ({:.0} calls/s, parse + format + decide), {forwarded} forwarded",
        n as f64 / secs
    );
    let (cb, kb) = LocalTracker::slot_bytes();
    println!(
        "tables: {} caller slots, {} call slots, {:.1} MiB ({cb} B per caller, {kb} B per call, locks included)",
        tracker.caller_capacity(),
        tracker.call_capacity(),
        tracker.memory_bytes() as f64 / 1048576.0,
    );
    println!(
        "RSS: {:.1} MiB before the tables, {:.1} MiB allocated, {:.1} MiB after the flood (+{:.1} MiB during it)",
        before as f64 / 1024.0,
        allocated as f64 / 1024.0,
        after as f64 / 1024.0,
        after.saturating_sub(allocated) as f64 / 1024.0
    );
    println!(
        "held after the flood: {} callers, {} calls; evictions: {} callers, {} calls",
        s.callers, s.calls, s.caller_evictions, s.call_evictions
    );
    // A trunk at its `max_concurrent_calls` refusing calls while another holds 100,000
    // calls up (QA 148: each refusal swept every call up, a third of a millisecond).
    let live = sipfence::behaviour::live::LiveCalls::new();
    for k in 0..100_000u64 {
        live.admit(0, k, 100_000, 0);
    }
    live.admit(1, u64::MAX, 1, 0);
    let t0 = Instant::now();
    let mut refused = 0u32;
    for k in 0..100_000u64 {
        refused += u32::from(!live.admit(1, 100_000 + k, 1, 1_000 + k));
    }
    println!(
        "concurrent-call refusals with 100,000 calls up: {:.0} ns each ({refused} refused)",
        t0.elapsed().as_nanos() as f64 / 100_000.0
    );
}
