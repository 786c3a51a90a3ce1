//! Behaviour rules through the running proxy, with sipp as caller and callee over UDP
//! on 127.0.0.1: each pattern played by a real UAC trips its rule (refusals counted at
//! the proxy's /metrics, as Prometheus scrapes them), ordinary calls do not, and with
//! Record-Route on the BYEs pass through sipfence (whose Route entries it removes).

mod common;

use common::{Proxy, Tail, play, play_at_once, port_block, sipp_available, sipp_uas};
use std::path::PathBuf;
use std::time::Duration;

/// One interconnect trunk on `base`, core at `base + 10`; `thresholds` go into
/// `[trunk.behaviour]` and every behaviour rule rejects (608).
fn config(base: u16, thresholds: &str) -> String {
    let mut rules = String::new();
    for r in [
        "attempts",
        "callees",
        "sequential",
        "low-asr",
        "ring-once",
        "short-calls",
    ] {
        rules.push_str(&format!(
            "[trunk.rules.behaviour-{r}]\naction = \"reject\"\n"
        ));
    }
    trunk_config(
        base,
        "",
        &format!("[trunk.behaviour]\nwindow_secs = 60\nwatch_secs = 600\n{thresholds}\n{rules}"),
    )
}

/// The interconnect trunk "ic" on `base` with Record-Route, `settings` among its keys
/// and `tables` (its sub-tables) after them.
fn trunk_config(base: u16, settings: &str, tables: &str) -> String {
    format!(
        r#"
# The callee hashing's key comes from this, not from the policy's digest, which the
# ports of each run change: the same callees give the same estimates in every run.
[general]
auth_secret = "behaviour-e2e-7f3a91c2"

[[trunk]]
name = "ic"
role = "interconnect"
listen = ["udp:127.0.0.1:{base}"]
sources = ["127.0.0.0/8"]
next_hop = "udp:127.0.0.1:{uas}"
record_route = true
{settings}
{tables}
[metrics]
listen = "127.0.0.1:{metrics}"
"#,
        uas = base + 10,
        metrics = base + 30,
    )
}

fn hits(proxy: &Proxy, rule: &str) -> f64 {
    proxy.metric(&format!(
        "sipfence_rule_hits_total{{action=\"reject\",rule=\"behaviour-{rule}\",trunk=\"ic\"}}"
    ))
}

fn refused(proxy: &Proxy) -> f64 {
    proxy.metric("sipfence_calls_total{trunk=\"ic\",verdict=\"reject\"}")
}

fn event(proxy: &Proxy, e: &str) -> f64 {
    proxy.metric(&format!(
        "sipfence_behaviour_events_total{{event=\"{e}\",trunk=\"ic\"}}"
    ))
}

/// The call table's entries once the behaviour gauges (set every 10 s) count
/// `callers` callers: read after the calls, not before them.
fn calls_held(proxy: &Proxy, callers: f64) -> f64 {
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while proxy.metric("sipfence_behaviour_table_entries{table=\"callers\"}") != callers {
        assert!(
            std::time::Instant::now() < deadline,
            "the callers gauge never reached {callers}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    proxy.metric("sipfence_behaviour_table_entries{table=\"calls\"}")
}

fn uas_scenario(name: &str) -> PathBuf {
    common::project_dir().join("testdata/sipp").join(name)
}

fn rows(caller: &str, callees: impl Iterator<Item = String>) -> Vec<(String, String)> {
    callees.map(|c| (caller.to_string(), c)).collect()
}

/// A caller a behaviour rule refused stays refused across a restart, to the end of its
/// watch (QA 170: the next process let it call again at once): the stop writes the
/// callers watched beside the calls file, the start watches them again. A caller that
/// tripped nothing is let through after the restart as before it.
#[test]
fn a_watched_caller_stays_refused_across_a_restart() {
    if !sipp_available() {
        return;
    }
    let base = port_block();
    let state = tempfile::tempdir().unwrap();
    let calls = state.path().join("calls");
    let cfg =
        config(base, "attempts = 10") + &format!("[proxy]\ncalls_file = \"{}\"\n", calls.display());
    let mut proxy = Proxy::start(&cfg, 1);
    // The scenarios outlive the first proxy's directory.
    let dir = state.path().to_path_buf();
    let _uas = sipp_uas(base + 10, None, &dir);
    let r = rows(
        "+8613512345678",
        (0..12).map(|i| format!("+86138001{:05}", i % 3)),
    );
    play(&dir, base, base + 20, 608, &Tail::Answer(0), &r, 20);
    assert_eq!(hits(&proxy, "attempts"), 3.0);
    proxy.signal("TERM");
    assert!(proxy.proc.0.wait().unwrap().success());
    let watched = std::fs::read_to_string(state.path().join("calls.watched"))
        .expect("the callers watched, written at the stop");
    let lines: Vec<&str> = watched.lines().collect();
    assert_eq!(lines.len(), 2, "form, one caller: {watched}");
    assert!(lines[1].ends_with(" behaviour-attempts"), "{watched}");
    drop(proxy);
    let proxy = Proxy::start(&cfg, 1);
    // One call each: the watched caller is refused at once, the other goes through.
    let r = rows("+8613512345678", std::iter::once("+8613800100009".into()));
    play(&dir, base, base + 21, 608, &Tail::Answer(0), &r, 20);
    assert_eq!(hits(&proxy, "attempts"), 1.0);
    let r = rows("+8613512345679", std::iter::once("+8613800100009".into()));
    play(&dir, base, base + 22, 608, &Tail::Answer(0), &r, 20);
    assert_eq!(refused(&proxy), 1.0);
}

#[test]
fn attempts() {
    if !sipp_available() {
        return;
    }
    let base = port_block();
    let proxy = Proxy::start(&config(base, "attempts = 10"), 1);
    let dir = proxy.dir.path().to_path_buf();
    let _uas = sipp_uas(base + 10, None, &dir);
    // Fourteen calls in about a second from one number: the 10th and later are refused.
    let r = rows(
        "+8613512345678",
        (0..14).map(|i| format!("+86138001{:05}", i % 3)),
    );
    play(&dir, base, base + 20, 608, &Tail::Answer(0), &r, 20);
    assert_eq!(hits(&proxy, "attempts"), 5.0);
    assert_eq!(refused(&proxy), 5.0);
    // Another caller on the same trunk at the same time is not affected.
    let r = rows("+8613512345679", (0..5).map(|i| format!("+86138001{i:05}")));
    play(&dir, base, base + 21, 608, &Tail::Answer(0), &r, 20);
    assert_eq!(refused(&proxy), 5.0);
    assert!(event(&proxy, "answered") >= 14.0);
    // Every call carried has ended (its BYE passed here) and the refused ones never
    // began: the call table is empty (QA 59: each refused call held a place until
    // pushed out).
    assert_eq!(calls_held(&proxy, 2.0), 0.0);
    // The proxy's own tables, set at the same tick: every INVITE seen (19 within their
    // 32 s), no dialog left (each BYE passed here and ended its own), none overflowed.
    let table = |m: &str, t: &str| proxy.metric(&format!("{m}{{table=\"{t}\"}}"));
    assert_eq!(table("sipfence_call_state_entries", "invites"), 19.0);
    assert_eq!(table("sipfence_call_state_entries", "dialogs"), 0.0);
    assert_eq!(table("sipfence_call_state_overflows_total", "dialogs"), 0.0);
}

#[test]
fn distinct_callees_and_its_control() {
    if !sipp_available() {
        return;
    }
    let base = port_block();
    let proxy = Proxy::start(&config(base, "distinct_callees = 8"), 1);
    let dir = proxy.dir.path().to_path_buf();
    let _uas = sipp_uas(base + 10, None, &dir);
    // Twelve calls to the same two callees: never eight distinct ones.
    let r = rows(
        "+8615212345670",
        (0..12).map(|i| format!("+8613800{:06}", (i % 2) * 777_777)),
    );
    play(&dir, base, base + 21, 608, &Tail::Answer(0), &r, 20);
    assert_eq!(hits(&proxy, "callees"), 0.0);
    // Twelve scattered callees: refused from the eighth distinct one on (the estimate
    // may lag a call behind when two callees share a bit).
    let r = rows(
        "+8615212345678",
        (0..12u64).map(|i| format!("+86139{:08}", i * 7_919_993 % 100_000_000)),
    );
    play(&dir, base, base + 20, 608, &Tail::Answer(0), &r, 20);
    let h = hits(&proxy, "callees");
    assert!((4.0..=5.0).contains(&h), "{h} refused");
}

#[test]
fn sequential_callees() {
    if !sipp_available() {
        return;
    }
    let base = port_block();
    let proxy = Proxy::start(&config(base, "sequential_callees = 5"), 1);
    let dir = proxy.dir.path().to_path_buf();
    let _uas = sipp_uas(base + 10, None, &dir);
    // Callees 100 apart (a sorted list): not a sweep.
    let r = rows(
        "+8618612345670",
        (0..10).map(|i| format!("+8613800{:06}", 100_000 + i * 100)),
    );
    play(&dir, base, base + 21, 608, &Tail::Answer(0), &r, 20);
    assert_eq!(hits(&proxy, "sequential"), 0.0);
    // +1 each time: the sixth call (five steps) and later are refused.
    let r = rows(
        "+8618612345678",
        (0..10).map(|i| format!("+8613800{:06}", 100_000 + i)),
    );
    play(&dir, base, base + 20, 608, &Tail::Answer(0), &r, 20);
    assert_eq!(hits(&proxy, "sequential"), 5.0);
}

#[test]
fn low_asr() {
    if !sipp_available() {
        return;
    }
    let base = port_block();
    let proxy = Proxy::start(
        // Failures counted as they come: the settle time is the rules' tests' matter
        // (tests/behaviour.rs), this test the proxy's path of the outcomes.
        &config(
            base,
            "min_asr_percent = 50\nasr_min_attempts = 5\nasr_settle_secs = 0",
        ),
        1,
    );
    let dir = proxy.dir.path().to_path_buf();
    {
        // Answered calls: ASR 100 %.
        let _uas = sipp_uas(base + 10, None, &dir);
        let r = rows("+8613012345670", (0..8).map(|i| format!("+8613800{i:06}")));
        play(&dir, base, base + 21, 608, &Tail::Answer(0), &r, 10);
        assert_eq!(hits(&proxy, "low-asr"), 0.0);
    }
    std::thread::sleep(Duration::from_millis(300));
    let _uas = sipp_uas(
        base + 10,
        Some(&uas_scenario("behaviour-uas-busy.xml")),
        &dir,
    );
    // Every callee busy: once five calls have that outcome, the sixth attempt and
    // later are refused.
    let r = rows("+8613012345678", (0..8).map(|i| format!("+8613800{i:06}")));
    play(&dir, base, base + 20, 608, &Tail::Busy, &r, 10);
    assert_eq!(hits(&proxy, "low-asr"), 3.0);
    assert!(event(&proxy, "failed") >= 4.0);
}

#[test]
fn ring_once_and_patient_callers() {
    if !sipp_available() {
        return;
    }
    let base = port_block();
    let proxy = Proxy::start(&config(base, "ring_once = 2\nring_once_secs = 1"), 1);
    let dir = proxy.dir.path().to_path_buf();
    let _uas = sipp_uas(
        base + 10,
        Some(&uas_scenario("behaviour-uas-ring.xml")),
        &dir,
    );
    // Cancelled 1.5 s after ringing: longer than ring_once_secs, not ring-once.
    let r = rows("+8615912345670", (0..4).map(|i| format!("+8613800{i:06}")));
    play(&dir, base, base + 21, 608, &Tail::Cancel(1500), &r, 4);
    assert_eq!(hits(&proxy, "ring-once"), 0.0);
    assert_eq!(event(&proxy, "cancelled"), 4.0);
    // Cancelled 200 ms after ringing: after two of those the rest are refused.
    let r = rows("+8615912345678", (0..6).map(|i| format!("+8613800{i:06}")));
    play(&dir, base, base + 20, 608, &Tail::Cancel(200), &r, 2);
    assert_eq!(hits(&proxy, "ring-once"), 4.0);
    assert_eq!(event(&proxy, "ring-once"), 2.0);
}

#[test]
fn short_calls_seen_through_record_route() {
    if !sipp_available() {
        return;
    }
    let base = port_block();
    let proxy = Proxy::start(&config(base, "short_calls = 2\nshort_call_secs = 1"), 1);
    let dir = proxy.dir.path().to_path_buf();
    let _uas = sipp_uas(base + 10, None, &dir);
    // Calls held 1.5 s: not short.
    let r = rows("+8618812345670", (0..4).map(|i| format!("+8613800{i:06}")));
    play(&dir, base, base + 21, 608, &Tail::Answer(1500), &r, 4);
    assert_eq!(hits(&proxy, "short-calls"), 0.0);
    assert_eq!(
        event(&proxy, "ended"),
        4.0,
        "the BYEs passed through sipfence"
    );
    // Hung up at once: the third call and later are refused.
    let r = rows("+8618812345678", (0..6).map(|i| format!("+8613800{i:06}")));
    play(&dir, base, base + 20, 608, &Tail::Answer(0), &r, 2);
    assert_eq!(hits(&proxy, "short-calls"), 4.0);
    assert_eq!(event(&proxy, "short-call"), 2.0);
}

/// Many callers with ordinary calls, every behaviour rule switched on with the README's
/// thresholds: nothing fires.
#[test]
fn ordinary_callers_trip_nothing() {
    if !sipp_available() {
        return;
    }
    let base = port_block();
    let proxy = Proxy::start(
        &config(
            base,
            "attempts = 60\ndistinct_callees = 30\nsequential_callees = 10\nmin_asr_percent = 10\nasr_min_attempts = 20\nring_once = 3\nshort_calls = 5\nshort_call_secs = 6",
        ),
        2,
    );
    let dir = proxy.dir.path().to_path_buf();
    let _uas = sipp_uas(base + 10, None, &dir);
    let r: Vec<_> = (0..40)
        .map(|i| {
            (
                format!("+86139{:08}", 10_000_000 + i * 7_777),
                format!("+86138{:08}", 20_000_000 + i * 3_331),
            )
        })
        .collect();
    play(&dir, base, base + 20, 608, &Tail::Answer(200), &r, 20);
    let (_, body) = proxy.http("GET", "/metrics");
    let fired: Vec<&str> = body
        .lines()
        .filter(|l| l.starts_with("sipfence_rule_hits_total") && l.contains("behaviour-"))
        .filter(|l| !l.ends_with(" 0"))
        .collect();
    assert!(fired.is_empty(), "{fired:?}");
    assert_eq!(event(&proxy, "answered"), 40.0);
    // Forty callers known; their calls ended, none held.
    assert_eq!(calls_held(&proxy, 40.0), 0.0);
}

/// `max_concurrent_calls = 3`: of ten calls placed at once (held three seconds, three
/// times as long as the ten take to arrive), three are carried and seven answered 503;
/// the calls-up gauge, scraped meanwhile, reaches three and never more, and falls back
/// to zero once the BYEs (seen through Record-Route) have passed; then the trunk
/// carries calls again.
#[test]
fn concurrent_calls_are_capped_until_calls_end() {
    if !sipp_available() {
        return;
    }
    let base = port_block();
    let proxy = Proxy::start(&trunk_config(base, "max_concurrent_calls = 3", ""), 1);
    let dir = proxy.dir.path().to_path_buf();
    let _uas = sipp_uas(base + 10, None, &dir);
    let up = || proxy.metric("sipfence_concurrent_calls{trunk=\"ic\"}");
    let full = || {
        proxy.metric(
            "sipfence_rule_hits_total{action=\"reject\",rule=\"concurrent-calls\",trunk=\"ic\"}",
        )
    };
    let r = rows("+8618812345670", (0..10).map(|i| format!("+8613800{i:06}")));
    let peak = std::thread::scope(|s| {
        let calls =
            s.spawn(|| play_at_once(&dir, base, base + 20, 503, &Tail::Answer(3000), &r, 10, 10));
        let mut peak = 0.0f64;
        while !calls.is_finished() {
            peak = peak.max(up());
            std::thread::sleep(Duration::from_millis(100));
        }
        calls.join().unwrap();
        peak
    });
    assert_eq!(full(), 7.0);
    assert_eq!(peak, 3.0);
    assert_eq!(up(), 0.0, "every BYE passed through sipfence");
    assert_eq!(
        event(&proxy, "ended"),
        0.0,
        "no behaviour rules: no features kept"
    );
    // The places are free again.
    let r = rows("+8618812345671", (0..3).map(|i| format!("+8613900{i:06}")));
    play_at_once(&dir, base, base + 21, 503, &Tail::Answer(500), &r, 10, 3);
    assert_eq!(full(), 7.0);
    assert_eq!(
        proxy.metric("sipfence_calls_total{trunk=\"ic\",verdict=\"allow\"}"),
        6.0
    );
}
