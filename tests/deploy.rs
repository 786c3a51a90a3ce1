//! The deploy kit matches the binary: every metric the dashboard and the alert rules use
//! is one sipfence exports, promtool accepts the rules and the scrape config, and every
//! example policy loads.

mod common;

use sipfence::observability::metrics::{METRIC_NAMES, Metrics};
use sipfence::policy::Policy;
use std::collections::BTreeSet;

fn used_metrics(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let b = text.as_bytes();
    let mut i = 0;
    while let Some(p) = text[i..].find("sipfence_") {
        let s = i + p;
        let mut e = s;
        while e < b.len() && (b[e].is_ascii_alphanumeric() || b[e] == b'_') {
            e += 1;
        }
        let name = &text[s..e];
        let base = ["_bucket", "_sum", "_count"]
            .iter()
            .fold(name, |n, suf| n.strip_suffix(suf).unwrap_or(n));
        out.insert(base.to_string());
        i = e;
    }
    out
}

#[test]
fn dashboard_and_alerts_use_only_exported_metrics() {
    let root = common::project_dir();
    let m = Metrics::new();
    // The built-in policy, with the optional features whose series exist only where
    // they are configured (digest authentication and a concurrent-call limit on its
    // last trunk, an exempt list, Redis).
    let text = format!(
        "{}\n[trunk.auth]\nusers = [\"pbx:pw\"]\n[lists.exempt]\nentries = [\"+8613800000001\"]\n",
        sipfence::policy::BUILTIN_CONFIG.replace(
            "max_calls_per_minute = 6000\n",
            "max_calls_per_minute = 6000\nrecord_route = true\nmax_concurrent_calls = 30\n"
        )
    );
    let p = Policy::from_str(&text, "builtin+auth", std::path::Path::new(".")).unwrap();
    assert!(p.trunks.last().unwrap().auth.is_some());
    let _bound = m.bind(&p);
    // The Redis gauges are exported only with `[redis]`.
    assert!(!m.render().contains("sipfence_redis_up"));
    m.redis_configured();
    // A next hop's series exists only while it is down.
    m.next_hops_down_are(&[(
        "127.0.0.1:5060".parse().unwrap(),
        sipfence::policy::config::Transport::Udp,
    )]);
    let exposition = m.render();
    for name in METRIC_NAMES {
        assert!(
            exposition.contains(&format!("# TYPE {name} ")),
            "{name} is not exported"
        );
    }
    for f in [
        "deploy/grafana/sipfence-dashboard.json",
        "deploy/prometheus/alerts.yml",
    ] {
        let text = std::fs::read_to_string(root.join(f)).unwrap();
        let used = used_metrics(&text);
        assert!(used.len() >= 5, "{f} uses only {used:?}");
        for u in &used {
            // Names in prose (e.g. "sipfence_" alone, or the job label) are not metrics.
            if u == "sipfence_" {
                continue;
            }
            assert!(
                METRIC_NAMES.contains(&u.as_str()),
                "{f} uses {u}, which sipfence does not export"
            );
        }
    }
    // The dashboard is valid JSON with panels.
    let d: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("deploy/grafana/sipfence-dashboard.json")).unwrap(),
    )
    .unwrap();
    assert!(d["panels"].as_array().is_some_and(|p| p.len() >= 10));

    // What a reader at 3 a.m. relies on without checking: the Trunk selector filters
    // every query of a metric that has a trunk, and a per-second axis shows rates only
    // (a gauge drawn as req/s reads as traffic).
    let with_trunk: BTreeSet<String> = exposition
        .lines()
        .filter(|l| !l.starts_with('#') && l.contains("trunk=\""))
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(|n| {
            ["_bucket", "_sum", "_count"]
                .iter()
                .fold(n, |n, suf| n.strip_suffix(suf).unwrap_or(n))
                .to_string()
        })
        .collect();
    assert!(with_trunk.contains("sipfence_auth_total"), "{with_trunk:?}");
    let mut panels: Vec<&serde_json::Value> = vec![];
    let mut stack: Vec<&serde_json::Value> = d["panels"].as_array().unwrap().iter().collect();
    while let Some(p) = stack.pop() {
        panels.push(p);
        if let Some(inner) = p["panels"].as_array() {
            stack.extend(inner);
        }
    }
    for p in panels {
        let title = p["title"].as_str().unwrap_or("?");
        let unit = p["fieldConfig"]["defaults"]["unit"].as_str().unwrap_or("");
        let overridden: Vec<&str> = p["fieldConfig"]["overrides"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|o| o["matcher"]["id"] == "byFrameRefID")
            .filter_map(|o| o["matcher"]["options"].as_str())
            .collect();
        for t in p["targets"].as_array().into_iter().flatten() {
            let expr = t["expr"].as_str().unwrap_or("");
            for m in used_metrics(expr) {
                if with_trunk.contains(&m) {
                    assert!(
                        expr.contains("trunk=~\"$trunk\"") || expr.contains("trunk=\"none\""),
                        "panel {title:?}: {m} without the Trunk selector in {expr}"
                    );
                }
            }
            let rate = expr.contains("rate(") || expr.contains("increase(");
            let reference = t["refId"].as_str().unwrap_or("");
            if unit == "reqps" && !overridden.contains(&reference) {
                assert!(rate, "panel {title:?} shows {expr} as req/s");
            }
        }
    }
}

#[test]
fn promtool_accepts_rules_and_config() {
    let root = common::project_dir();
    let have = std::process::Command::new("promtool")
        .arg("--version")
        .output()
        .is_ok();
    if !have {
        if common::tools_required() {
            panic!("promtool missing: scripts/deps.sh installs the prometheus package");
        }
        eprintln!("skipped: promtool not installed");
        return;
    }
    for args in [
        ["check", "rules", "deploy/prometheus/alerts.yml"],
        ["check", "config", "deploy/prometheus/prometheus.yml"],
    ] {
        let out = std::process::Command::new("promtool")
            .args(args)
            .current_dir(&root)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "promtool {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// The shipped alert unit tests (`deploy/prometheus/alerts_test.yml`: each alert made
/// true must fire, made almost true must not) run on `alerts.yml` as shipped, its
/// annotations (text for people, templates the test would have to repeat) left out,
/// as `scripts/check_alerts.sh` does for an operator.
#[test]
fn shipped_alerts_fire_for_what_they_describe() {
    let root = common::project_dir();
    if std::process::Command::new("promtool")
        .arg("--version")
        .output()
        .is_err()
    {
        if common::tools_required() {
            panic!("promtool missing: scripts/deps.sh installs the prometheus package");
        }
        eprintln!("skipped: promtool not installed");
        return;
    }
    let rules = std::fs::read_to_string(root.join("deploy/prometheus/alerts.yml")).unwrap();
    let indent = |l: &str| l.len() - l.trim_start().len();
    let mut kept = String::new();
    let mut annotations: Option<usize> = None;
    for line in rules.lines() {
        if let Some(at) = annotations {
            if line.trim().is_empty() || indent(line) > at {
                continue;
            }
            annotations = None;
        }
        if line.trim() == "annotations:" {
            annotations = Some(indent(line));
            continue;
        }
        kept.push_str(line);
        kept.push('\n');
    }
    assert!(!kept.contains("runbook:"), "annotations left in:\n{kept}");
    assert_eq!(
        kept.matches("- alert:").count(),
        rules.matches("- alert:").count()
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("alerts_exprs_only.yml"), kept).unwrap();
    std::fs::copy(
        root.join("deploy/prometheus/alerts_test.yml"),
        dir.path().join("alerts_test.yml"),
    )
    .unwrap();
    let out = std::process::Command::new("promtool")
        .args(["test", "rules", "alerts_test.yml"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success() && text.contains("SUCCESS"), "{text}");
}

#[test]
fn example_policies_load() {
    let root = common::project_dir();
    let mut n = 0;
    for e in std::fs::read_dir(root.join("deploy/examples"))
        .unwrap()
        .flatten()
    {
        if e.path().extension().is_some_and(|x| x == "toml") {
            let p = Policy::load(&e.path())
                .unwrap_or_else(|err| panic!("{}: {err}", e.path().display()));
            assert!(!p.trunks.is_empty());
            // The examples' whitelists hold nothing an earlier rule refuses.
            let w = sipfence::policy::lint::warnings(&p);
            assert!(w.is_empty(), "{}: {w:?}", e.path().display());
            n += 1;
        }
    }
    assert!(n >= 3);
    assert!(Policy::load(&root.join("deploy/sipfence.toml")).is_ok());
}

/// A scratch directory holding a copy of the examples' list files (to edit as a feed
/// would), and the examples' own directory.
fn examples_lists_copy() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let ex = common::project_dir().join("deploy/examples");
    std::fs::create_dir(dir.path().join("lists")).unwrap();
    for e in std::fs::read_dir(ex.join("lists")).unwrap().flatten() {
        std::fs::copy(e.path(), dir.path().join("lists").join(e.file_name())).unwrap();
    }
    (dir, ex)
}

/// `sipfence check --against RUNNING`: what a reload of the new files would change, on
/// the shipped enterprise example with its list files edited as a feed would.
#[test]
fn check_against_the_running_policy_names_each_change() {
    let (dir, ex) = examples_lists_copy();
    let old = std::fs::read_to_string(ex.join("enterprise-gateway.toml")).unwrap();
    let new = old
        .replacen("hours = \"08:00-21:00\"", "hours = \"07:30-22:00\"", 1)
        .replace("udp:10.50.0.10:5062", "udp:10.50.0.10:5064");
    std::fs::write(dir.path().join("new.toml"), new).unwrap();
    let bl = dir.path().join("lists/blacklist.txt");
    let text = std::fs::read_to_string(&bl).unwrap();
    std::fs::write(&bl, format!("{text}+8613800000999\n")).unwrap();
    let run = |against: &std::path::Path| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_sipfence"))
            .arg("check")
            .arg("--config")
            .arg(dir.path().join("new.toml"))
            .arg("--against")
            .arg(against)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let out = run(&ex.join("enterprise-gateway.toml"));
    for line in [
        "reload applies: list blacklist +1 -0 (6 -> 7 entries)",
        "reload applies: trunk ent-bank: hours 08:00-21:00 UTC+08:00 mon,tue,wed,thu,fri,sat -> 07:30-22:00 UTC+08:00 mon,tue,wed,thu,fri,sat",
        "needs a restart (read at start only): listen addresses +udp:10.50.0.10:5064 -udp:10.50.0.10:5062",
        // Not bound at start: the trunk keeps its running address until the restart.
        "needs a restart (read at start only): trunk ent-clinic: listen [udp:10.50.0.10:5064] waits for the restart (not all bound): [udp:10.50.0.10:5062] stays in force",
    ] {
        assert!(out.contains(line), "missing {line:?} in:\n{out}");
    }
    assert_eq!(out.matches("reload applies:").count(), 2, "{out}");
    // Against itself: nothing.
    let out = run(&dir.path().join("new.toml"));
    assert!(
        out.contains("changes against") && out.contains("  none\n"),
        "{out}"
    );
}

/// `sipfence check` names whitelist entries that an earlier rule refuses before the
/// whitelist is read (here: a blacklisted number and another network's number added
/// to the bank's contract file), and still accepts the policy.
#[test]
fn check_warns_of_whitelist_entries_no_call_can_use() {
    let (dir, ex) = examples_lists_copy();
    std::fs::copy(
        ex.join("enterprise-gateway.toml"),
        dir.path().join("gw.toml"),
    )
    .unwrap();
    let wl = dir.path().join("lists/whitelist-bank.txt");
    let text = std::fs::read_to_string(&wl).unwrap();
    assert!(text.ends_with('\n'));
    let n = text.lines().count();
    // The other network's number written nationally, and a line cut short: each warning
    // names the line that wrote the entry, whatever form it was written in (QA 43).
    std::fs::write(
        &wl,
        format!("{text}+8613800000001\n013912345678\n+8613912 # cut short\n"),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sipfence"))
        .args(["check", "--config"])
        .arg(dir.path().join("gw.toml"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    let at = |k: usize| format!("({}:{})", wl.display(), n + k);
    for line in [
        format!(
            "warning: trunk ent-bank whitelist: 1 entry not a valid number in the plan, refused first by numbering-plan: +8613912 {}",
            at(3)
        ),
        format!(
            "warning: trunk ent-bank whitelist: 1 entry on the blacklist, refused first by blacklist: +8613800000001 {}",
            at(1)
        ),
        format!(
            "warning: trunk ent-bank whitelist: 1 entry not (wholly) in own_segments, refused first by enterprise-foreign-network: +8613912345678 {}",
            at(2)
        ),
    ] {
        assert!(stdout.contains(&line), "missing {line:?} in:\n{stdout}");
    }
    assert_eq!(stdout.matches("warning:").count(), 3, "{stdout}");
    assert!(stdout.ends_with("ok\n"), "{stdout}");
}

/// The README's policy reference is a policy the loader reads: every key where its
/// table takes it (only the list files it names are missing here).
#[test]
fn the_readme_policy_reference_parses() {
    let readme = std::fs::read_to_string(common::project_dir().join("README.md")).unwrap();
    let from = readme.find("## Policy reference").unwrap();
    let start = readme[from..].find("```toml\n").unwrap() + from + 8;
    let end = readme[start..].find("```").unwrap() + start;
    let cfg: sipfence::policy::config::Config = toml::from_str(&readme[start..end])
        .unwrap_or_else(|e| panic!("README policy reference: {e}"));
    assert_eq!(cfg.trunks.len(), 1);
    let t = &cfg.trunks[0];
    assert!(t.record_route && t.max_concurrent_calls == Some(30) && t.auth.is_some());
}

/// The shipped international example watches carrier B's withheld calls without an
/// asserted identity (`withheld-caller = "monitor"`) instead of refusing them. What
/// such a call presents is still the generic-number rule's: a service number in its
/// display name, a P-Preferred-Identity, an unscreened Remote-Party-ID, a Generic
/// Number in its IAM go before the core sees them (QA 90 N1: with no number to judge,
/// no rule after blank-caller ran, and each reached the core as sent).
#[test]
fn the_example_carrier_b_withheld_calls_present_nothing_forged() {
    let root = common::project_dir();
    let dir = root.join("testdata/sip/withheld-presenting");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    files.sort();
    assert_eq!(files.len(), 5);
    for f in &files {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_sipfence"))
            .current_dir(&root)
            .args([
                "explain",
                "--config",
                "deploy/examples/international-gateway.toml",
                "--source",
                "203.0.113.33:5060",
                "--to",
                "udp:10.10.0.10:5060",
                "--output",
            ])
            .arg(f)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{}: {text}", f.display());
        assert!(text.contains("verdict  rewrite"), "{}: {text}", f.display());
        assert!(
            text.contains("matched  withheld-caller, generic-number"),
            "{}: {text}",
            f.display()
        );
        let forwarded = &text[text.find("INVITE sip:").unwrap_or(0)..];
        assert!(
            forwarded.contains("\r\nFrom: \"Anonymous\" <sip:anonymous@anonymous.invalid>;tag="),
            "{}: {forwarded}",
            f.display()
        );
        for gone in [
            "95588",
            "sip:110@",
            "P-Preferred-Identity",
            "Remote-Party-ID",
        ] {
            assert!(!forwarded.contains(gone), "{}: {forwarded}", f.display());
        }
        // And it is labelled as the overseas call it is, like carrier B's others, and
        // as one that presented another number (QA 173 F3).
        assert!(
            forwarded.contains("\r\nX-Sipfence-Label: generic-number,international\r\n"),
            "{}: {forwarded}",
            f.display()
        );
    }
}

/// The README's metrics reference names every metric sipfence exports, and every reason
/// `sipfence_dropped_total` gives (QA 131: two reasons a scrape showed were in no row).
#[test]
fn the_readme_names_every_metric_and_drop_reason() {
    let readme = std::fs::read_to_string(common::project_dir().join("README.md")).unwrap();
    for name in METRIC_NAMES {
        assert!(readme.contains(name), "README names no {name}");
    }
    let row = readme
        .lines()
        .find(|l| l.starts_with("| `sipfence_dropped_total` |"))
        .expect("a row for sipfence_dropped_total");
    for reason in sipfence::observability::metrics::DROP_REASONS {
        assert!(
            row.contains(&format!("`{reason}`")),
            "README's sipfence_dropped_total row names no reason {reason}"
        );
    }
}
