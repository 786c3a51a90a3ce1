//! Replay of captures: every capture reads, the SIP message counts match tshark's, the
//! verdicts match what the rules say (testdata/pcap/expected.tsv, written with the
//! captures by scripts/gen_testdata.py), and a damaged capture is reported without
//! losing what was read.

mod common;

use sipfence::policy::Policy;
use sipfence::record::Record;
use sipfence::replay::capture::End;
use sipfence::replay::{Outputs, Replayer};
use std::collections::HashMap;
use std::path::PathBuf;

fn root() -> PathBuf {
    common::project_dir()
}

fn replay(path: &std::path::Path) -> (Vec<Record>, sipfence::replay::Summary, End) {
    let p = Policy::builtin().unwrap();
    let mut r = Replayer::new(&p, None);
    let mut recs = vec![];
    let end = r
        .file(path, &mut Outputs::default(), &mut |rec| recs.push(rec))
        .expect("capture opens");
    (recs, r.summary.clone(), end)
}

#[test]
fn message_counts_match_tshark() {
    let tsv = std::fs::read_to_string(root().join("testdata/pcap/counts.tsv")).unwrap();
    let shared = common::shared_dir();
    let mut checked = 0;
    for line in tsv.lines().filter(|l| !l.starts_with('#')).skip(1) {
        let (file, n) = line.split_once('\t').unwrap();
        if file.starts_with("../shared") && shared.is_none() {
            continue;
        }
        let (_, s, _) = replay(&root().join(file));
        assert_eq!(
            s.sip_messages,
            n.parse::<u64>().unwrap(),
            "{file}: SIP messages (tshark: {n})"
        );
        // The zeek trace with a broken Content-Length is meant to be refused (the live
        // proxy answers it 400); every other message must parse.
        let want_errors = if file.contains("invalid-content-length") {
            s.sip_messages
        } else {
            0
        };
        assert_eq!(s.parse_errors, want_errors, "{file}: unparsable messages");
        checked += 1;
    }
    assert!(checked >= 7);
}

#[test]
fn verdicts_match_expected() {
    let tsv = std::fs::read_to_string(root().join("testdata/pcap/expected.tsv")).unwrap();
    let mut by_file: HashMap<String, Vec<Vec<String>>> = HashMap::new();
    for line in tsv.lines().skip(1).filter(|l| !l.trim().is_empty()) {
        let cols: Vec<String> = line.split('\t').map(str::to_string).collect();
        by_file.entry(cols[0].clone()).or_default().push(cols);
    }
    let mut bad = vec![];
    let mut n = 0;
    for (file, rows) in &by_file {
        let (recs, _, _) = replay(&root().join(file));
        let calls: HashMap<&str, &Record> = recs
            .iter()
            .filter(|r| r.kind == "call")
            .map(|r| (r.call_id.as_str(), r))
            .collect();
        for row in rows {
            n += 1;
            let Some(r) = calls.get(row[1].as_str()) else {
                bad.push(format!("{file} {}: no decision", row[1]));
                continue;
            };
            let got = [
                r.trunk.clone().unwrap_or("-".into()),
                r.verdict.to_string(),
                r.code.map(|c| c.to_string()).unwrap_or("-".into()),
                r.rule.unwrap_or("-").to_string(),
            ];
            if got[..] != row[2..6] {
                bad.push(format!(
                    "{file} {}: want {:?} got {:?}",
                    row[1],
                    &row[2..6],
                    got
                ));
            }
        }
        // Each initial INVITE is decided once (TCP retransmissions are not calls again).
        assert_eq!(
            calls.len(),
            recs.iter().filter(|r| r.kind == "call").count(),
            "{file}: a call decided twice"
        );
    }
    assert!(n >= 40, "{n} expected rows");
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

#[test]
fn truncated_capture_keeps_what_was_read() {
    let (recs, s, end) = replay(&root().join("testdata/pcap/truncated.pcap"));
    assert!(matches!(end, End::Damaged { .. }), "{end:?}");
    assert_eq!(s.sip_messages, 10);
    assert_eq!(recs.iter().filter(|r| r.kind == "call").count(), 2);
    assert_eq!(s.damaged.len(), 1);
    // Through the binary: the table is printed, the damage said on stderr, exit status 2.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sipfence"))
        .args([
            "replay",
            root()
                .join("testdata/pcap/truncated.pcap")
                .to_str()
                .unwrap(),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("truncated"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("calls 2"));
}

#[test]
fn not_a_capture_is_refused_clearly() {
    let p = Policy::builtin().unwrap();
    let mut r = Replayer::new(&p, None);
    let e = r.file(
        &root().join("testdata/sip/invite-pai-sdp.sip"),
        &mut Outputs::default(),
        &mut |_| {},
    );
    assert!(e.unwrap_err().contains("not a pcap"));
}

#[test]
fn split_into_blocked_and_allowed_captures() {
    let dir = tempfile::tempdir().unwrap();
    let (b, a) = (
        dir.path().join("blocked.pcap"),
        dir.path().join("allowed.pcap"),
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sipfence"))
        .args([
            "replay",
            "--json",
            "--write-blocked",
            b.to_str().unwrap(),
            "--write-allowed",
            a.to_str().unwrap(),
            root()
                .join("testdata/pcap/rules-udp.pcap")
                .to_str()
                .unwrap(),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let summary: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    let rejected = summary["summary"]["by_verdict"]["reject"].as_u64().unwrap();
    // The split files are captures again: replaying them gives only blocked / only
    // allowed calls, and together all of them.
    let (rb, _, _) = replay(&b);
    let (ra, _, _) = replay(&a);
    let calls = |v: &[Record]| v.iter().filter(|r| r.kind == "call").count();
    assert_eq!(calls(&rb) as u64, rejected);
    assert!(
        rb.iter()
            .filter(|r| r.kind == "call")
            .all(|r| r.verdict == "reject")
    );
    assert!(
        ra.iter()
            .filter(|r| r.kind == "call")
            .all(|r| r.verdict != "reject")
    );
    assert_eq!(calls(&rb) + calls(&ra), 26);
}

/// A SIP-I capture: records carry the ISUP numbers and the rules the ISUP number made
/// match, so an analyst sees why a call with clean SIP headers was refused.
#[test]
fn sipi_capture_shows_isup_numbers() {
    let (recs, _, _) = replay(&root().join("testdata/pcap/sipi.pcap"));
    let call = |id: &str| {
        recs.iter()
            .find(|r| r.kind == "call" && r.call_id == id)
            .unwrap_or_else(|| panic!("no record for {id}"))
    };
    let r = call("sipi-domestic-in-isup@127.0.0.1");
    assert_eq!(r.caller.as_deref(), Some("+442071234567"), "SIP caller");
    let i = r.isup.as_ref().expect("isup part of the record");
    assert_eq!(i.calling.as_deref(), Some("+8613812345678"));
    assert_eq!(i.calling_nature, Some("international"));
    assert_eq!(i.rules, vec!["intl-domestic-caller"]);
    let i = call("sipi-generic-number@127.0.0.1").isup.as_ref().unwrap();
    assert_eq!(i.generic.as_deref(), Some("+8613812345678"));
    assert!(i.rules.is_empty());
    let i = call("sipi-unreadable-iam@127.0.0.1").isup.as_ref().unwrap();
    assert!(i.error.as_deref().unwrap_or("").contains("ISUP"), "{i:?}");
    // Plain SIP calls have no isup part.
    let (recs, _, _) = replay(&root().join("testdata/pcap/rules-udp.pcap"));
    assert!(recs.iter().all(|r| r.isup.is_none()));
}
