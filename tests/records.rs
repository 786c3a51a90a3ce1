//! Signaling records: the fields an investigator needs, rotation by size, deletion
//! after the retention period; and the live proxy's records equal replay's verdicts on
//! the same messages.

mod common;

use sipfence::observability::metrics::Metrics;
use sipfence::observability::records;
use sipfence::policy::config::RecordsConf;
use std::sync::Arc;
use std::time::Duration;

fn record(i: usize) -> sipfence::record::Record {
    use bytes::Bytes;
    use sipfence::decide::{Context, decide};
    use sipfence::policy::Policy;
    use sipfence::policy::rate::NoCounting;
    let p = Policy::builtin().unwrap();
    let m = sipfence::sip::Message::parse(Bytes::from(format!(
        "INVITE sip:4008001234@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK{i}\r\nFrom: <sip:+8613812345678@127.0.0.1>;tag={i}\r\nTo: <sip:4008001234@127.0.0.1>\r\nCall-ID: rec-{i}\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    )))
    .unwrap();
    let src = "127.0.0.1:5070".parse().unwrap();
    let d = decide(
        &p,
        &m,
        &Context {
            source: src,
            local: None,
            trunk: Some(0),
            now_ms: 1_000,
            wall_ms: 1_000,
            rates: &NoCounting,
            behaviour: &sipfence::behaviour::NoTracking,
        },
    );
    sipfence::record::Record::new(&p, &m, &d, src, 1_000 + i as u64)
}

#[test]
fn records_have_the_fields_rotate_and_expire() {
    let dir = tempfile::tempdir().unwrap();
    // An old file from a past run, last written long ago: older than the retention,
    // it must go.
    std::fs::write(dir.path().join("records-1000.jsonl"), "{}\n").unwrap();
    std::fs::File::options()
        .write(true)
        .open(dir.path().join("records-1000.jsonl"))
        .unwrap()
        .set_modified(std::time::UNIX_EPOCH + Duration::from_secs(2000))
        .unwrap();
    let conf = RecordsConf {
        dir: dir.path().display().to_string(),
        rotate_bytes: 4096,
        rotate_secs: 3600,
        retention_secs: 86_400,
        pcap_rejected: false,
    };
    let metrics = Arc::new(Metrics::new());
    let sink = records::start(&conf, metrics.clone()).unwrap().unwrap();
    for i in 0..200 {
        sink.send(record(i));
    }
    drop(sink);
    let mut lines = vec![];
    for _ in 0..50 {
        std::thread::sleep(Duration::from_millis(100));
        if metrics.records_written.get() == 200 {
            break;
        }
    }
    assert_eq!(metrics.records_written.get(), 200);
    let mut files: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    files.sort();
    assert!(
        !files.iter().any(|f| f.ends_with("records-1000.jsonl")),
        "expired file deleted"
    );
    assert!(
        files.len() >= 5,
        "rotated by size into several files: {files:?}"
    );
    for f in &files {
        let size = std::fs::metadata(f).unwrap().len();
        assert!(size <= 4096 + 1024, "{} is {size} bytes", f.display());
        for l in std::fs::read_to_string(f).unwrap().lines() {
            lines.push(serde_json::from_str::<serde_json::Value>(l).unwrap());
        }
    }
    assert_eq!(lines.len(), 200);
    let r = lines.iter().find(|r| r["call_id"] == "rec-7").unwrap();
    for (k, v) in [
        ("trunk", "intl"),
        ("source", "127.0.0.1:5070"),
        ("from", "+8613812345678"),
        ("caller", "+8613812345678"),
        ("class", "mobile"),
        ("callee", "+864008001234"),
        ("verdict", "reject"),
        ("rule", "intl-domestic-caller"),
    ] {
        assert_eq!(r[k], v, "{k} in {r}");
    }
    assert_eq!(r["code"], 403);
    assert_eq!(r["ts_ms"], 1007);
    // The policy that decided, as `check` names it.
    let fp = sipfence::policy::Policy::builtin().unwrap().fingerprint();
    assert_eq!(fp.len(), 16);
    assert_eq!(r["policy"], fp.as_str());
}

#[test]
fn live_proxy_and_replay_give_the_same_verdicts() {
    use sipfence::replay::pcapout::PcapWriter;
    use std::net::UdpSocket;
    let base = common::port_block();
    let dir = tempfile::tempdir().unwrap();
    let rec_dir = dir.path().join("records");
    let cfg = format!(
        r#"
[lists.blacklist]
entries = ["+8613800000001", "+8617099999*"]
[lists.roamers]
entries = ["+8613900000000"]
[[trunk]]
name = "intl"
role = "international"
listen = ["udp:127.0.0.1:{intl}"]
sources = ["127.0.0.0/8"]
next_hop = "udp:127.0.0.1:{uas}"
[[trunk]]
name = "ent"
role = "enterprise"
listen = ["udp:127.0.0.1:{ent}"]
sources = ["127.0.0.0/8"]
next_hop = "udp:127.0.0.1:{uas}"
max_calls_per_minute_per_caller = 2
[trunk.whitelist]
entries = ["+8613912340000..+8613912349999"]
[records]
dir = "{rec}"
pcap_rejected = true
[metrics]
listen = ""
"#,
        intl = base,
        ent = base + 2,
        uas = base + 10,
        rec = rec_dir.display()
    );
    let proxy = common::Proxy::start(&cfg, 2);
    std::fs::write(dir.path().join("p.toml"), &cfg).unwrap();
    let uas = UdpSocket::bind(("127.0.0.1", base + 10)).unwrap();
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let cport = client.local_addr().unwrap().port();
    let callers: &[(&str, &str, u16)] = &[
        ("+442071234567", "", base),
        ("+8613812345678", "", base),
        ("+8613900000000", "", base),
        ("anonymous", "", base),
        ("+442071234567", "Privacy: id\r\n", base),
        (
            "+8613812345678",
            "P-Asserted-Identity: <sip:+12125550123@10.0.0.1>\r\n",
            base,
        ),
        ("110", "", base),
        ("13800000001", "", base + 2),
        ("13912345678", "", base + 2),
        ("13912345678", "", base + 2),
        ("13912345678", "", base + 2), // third in a minute: over the per-caller rate
        ("13812345678", "", base + 2),
        ("+8614512345678", "", base + 2),
        // A MESSAGE's sender is judged, and recorded let through or not (QA 176 N6).
        ("MESSAGE:+442071234567", "", base),
        ("MESSAGE:110", "", base),
    ];
    let mut w = PcapWriter::create(&dir.path().join("sent.pcap")).unwrap();
    for (i, (caller, extra, port)) in callers.iter().enumerate() {
        let (method, caller) = caller.split_once(':').unwrap_or(("INVITE", caller));
        let msg = format!(
            "{method} sip:4008001234@127.0.0.1:{port} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{cport};branch=z9hG4bK-eq{i};rport\r\nFrom: <sip:{caller}@127.0.0.1>;tag=eq{i}\r\nTo: <sip:4008001234@127.0.0.1>\r\nCall-ID: eq-{i}\r\nCSeq: 1 {method}\r\nMax-Forwards: 70\r\n{extra}Content-Length: 0\r\n\r\n"
        );
        client
            .send_to(msg.as_bytes(), ("127.0.0.1", *port))
            .unwrap();
        // The same datagram, as a capture of Ethernet/IPv4/UDP would hold it.
        let ts = 1_796_000_000 + i as u32;
        w.write(1, ts, 0, &frame(cport, *port, msg.as_bytes()), 0)
            .unwrap();
        let mut b = [0u8; 4096];
        let _ = client.recv(&mut b);
    }
    w.finish().unwrap();
    drop(uas);
    std::thread::sleep(Duration::from_millis(800));
    drop(proxy);
    let mut live = std::collections::BTreeMap::new();
    for e in std::fs::read_dir(&rec_dir)
        .unwrap()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "jsonl"))
    {
        for l in std::fs::read_to_string(e.path()).unwrap().lines() {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            live.insert(v["call_id"].as_str().unwrap().to_string(), v);
        }
    }
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sipfence"))
        .args([
            "replay",
            "--json",
            "--config",
            dir.path().join("p.toml").to_str().unwrap(),
            dir.path().join("sent.pcap").to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut n = 0;
    for l in String::from_utf8_lossy(&out.stdout).lines() {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        let Some(id) = v["call_id"].as_str() else {
            continue;
        };
        let lv = live
            .get(id)
            .unwrap_or_else(|| panic!("{id}: no live record"));
        for k in [
            "trunk", "verdict", "code", "rule", "caller", "class", "hits", "policy",
        ] {
            assert_eq!(v[k], lv[k], "{id}: {k} differs between replay and live");
        }
        n += 1;
    }
    assert_eq!(n, callers.len(), "every call decided by both");
    // The raw rejected requests went to a pcap: replayed, it holds exactly those calls.
    let rejected_live = live.values().filter(|v| v["verdict"] == "reject").count();
    let pcaps: Vec<_> = std::fs::read_dir(&rec_dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "pcap"))
        .collect();
    assert!(!pcaps.is_empty(), "no rejected-*.pcap");
    let policy = sipfence::policy::Policy::load(&dir.path().join("p.toml")).unwrap();
    // Both ran this policy, and their records say so.
    assert!(
        live.values()
            .all(|v| v["policy"] == policy.fingerprint().as_str()),
        "{live:?}"
    );
    let mut r = sipfence::replay::Replayer::new(&policy, None);
    let mut ids = vec![];
    for p in &pcaps {
        r.file(p, &mut sipfence::replay::Outputs::default(), &mut |rec| {
            ids.push(rec.call_id)
        })
        .unwrap();
    }
    assert_eq!(ids.len(), rejected_live, "{ids:?}");
    // Exactly the calls the live proxy rejected (replayed alone, a rate-limited call
    // is no longer over its rate, so compare identities, not verdicts).
    assert!(
        ids.iter().all(|id| live[id]["verdict"] == "reject"),
        "{ids:?}"
    );
    assert_eq!(live.get("eq-10").unwrap()["rule"], "enterprise-rate-caller");

    // Trace-back through the same records, as an investigator asks: a number in the
    // form the complaint gives it, a segment, a rule, a verdict, a time window.
    let trace = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_sipfence"))
            .args([
                "trace",
                "--config",
                dir.path().join("p.toml").to_str().unwrap(),
            ])
            .args(args)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let mut ids: Vec<String> = text
            .lines()
            .skip(1)
            .filter_map(|l| l.split_whitespace().nth(1).map(String::from))
            .collect();
        ids.sort();
        (
            out.status.code(),
            ids,
            text,
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let ids = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    // The enterprise caller, written nationally: its three calls, the third over its rate.
    let (code, got, text, _) = trace(&["--caller", "139 1234 5678"]);
    assert_eq!(code, Some(0), "{text}");
    assert_eq!(got, ids(&["eq-10", "eq-8", "eq-9"]), "{text}");
    assert!(text.contains("enterprise-rate-caller"), "{text}");
    let (_, got, text, _) = trace(&["--caller", "+8613912345678", "--verdict", "reject"]);
    assert_eq!(got, ids(&["eq-10"]), "{text}");
    // A URI as a header carries it, as `number` reads one.
    for uri in [
        "tel:139-1234-5678;phone-context=+86",
        "sip:+8613912345678@gw.example.net;user=phone",
    ] {
        let (code, got, text, _) = trace(&["--caller", uri]);
        assert_eq!(code, Some(0), "{uri}: {text}");
        assert_eq!(got, ids(&["eq-10", "eq-8", "eq-9"]), "{uri}: {text}");
    }
    let (_, got, text, _) = trace(&["--rule", "enterprise-rate-caller"]);
    assert_eq!(got, ids(&["eq-10"]), "{text}");
    // A segment: the judged caller, or a From beside another asserted number (eq-5).
    let (_, got, text, _) = trace(&["--caller", "+86138*"]);
    assert_eq!(got, ids(&["eq-1", "eq-11", "eq-5", "eq-7"]), "{text}");
    // The withheld and the anonymous caller by their code, on one trunk.
    let (_, got, text, _) = trace(&["--trunk", "intl", "--verdict", "433"]);
    let want: Vec<String> = live
        .iter()
        .filter(|(_, v)| v["trunk"] == "intl" && v["code"] == 433)
        .map(|(k, _)| k.clone())
        .collect();
    assert!(want.len() >= 2, "{want:?}");
    assert_eq!(got, want, "{text}");
    // A call by its Call-ID, as stored.
    let (code, _, text, _) = trace(&["--call-id", "eq-6", "--json"]);
    assert_eq!(code, Some(0));
    let v: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
    assert_eq!(&v, live.get("eq-6").unwrap());
    // Time windows, in UTC+8 as a gateway in China writes them.
    let first_ms = live
        .values()
        .map(|v| v["ts_ms"].as_u64().unwrap())
        .min()
        .unwrap();
    let last_ms = live
        .values()
        .map(|v| v["ts_ms"].as_u64().unwrap())
        .max()
        .unwrap();
    let beijing = |ms: u64| {
        let utc = sipfence::time::rfc3339(ms + 8 * 3_600_000);
        utc.replace('Z', "+08:00")
    };
    let (_, got, text, _) = trace(&["--since", &beijing(first_ms), "--until", &beijing(last_ms)]);
    assert_eq!(got.len(), callers.len(), "{text}");
    let (code, got, _, err) = trace(&["--since", &beijing(last_ms + 1)]);
    assert_eq!((code, got.len()), (Some(1), 0), "{err}");
    assert!(err.contains("0 records matched"), "{err}");
    let (code, _, _, err) = trace(&["--since", "ten this morning"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("expected Unix seconds"), "{err}");
    // So would a window that ends before it starts.
    let (code, _, _, err) = trace(&[
        "--since",
        &beijing(last_ms),
        "--until",
        &beijing(first_ms - 1_000),
    ]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("is later than --until"), "{err}");
    // A misspelt rule or verdict would find nothing and look like an answer: refused.
    let (code, _, _, err) = trace(&["--rule", "enterprise-rate"]);
    assert_eq!(code, Some(2));
    assert!(
        err.contains("no rule named 'enterprise-rate'") && err.contains("enterprise-rate-caller"),
        "{err}"
    );
    let (code, _, _, err) = trace(&["--verdict", "rejected"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("expected allow, reject"), "{err}");
    // Call-IDs compare exactly.
    let (code, got, _, _) = trace(&["--call-id", "EQ-6"]);
    assert_eq!((code, got.len()), (Some(1), 0));

    // The signaling as evidence: the raw requests of the matching rejected calls, out
    // of the rejected-*.pcap files kept beside the records.
    let pcap_ids = |p: &std::path::Path| {
        let mut r = sipfence::replay::Replayer::new(&policy, None);
        let mut ids = vec![];
        r.file(p, &mut sipfence::replay::Outputs::default(), &mut |rec| {
            ids.push(rec.call_id)
        })
        .unwrap();
        ids.sort();
        ids
    };
    let one = dir.path().join("one.pcap");
    let (code, _, _, err) = trace(&[
        "--caller",
        "13912345678",
        "--write-pcap",
        one.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        err.contains("1 packets of 1 rejected calls written"),
        "{err}"
    );
    assert_eq!(pcap_ids(&one), ids(&["eq-10"]));
    let all = dir.path().join("all.pcap");
    let (_, got, _, err) = trace(&["--verdict", "reject", "--write-pcap", all.to_str().unwrap()]);
    assert_eq!(got.len(), rejected_live, "{err}");
    assert_eq!(pcap_ids(&all), got);

    // Records compressed by the operator's log rotation are read too; a line cut by a
    // crash is named and skipped.
    let old = dir.path().join("old");
    std::fs::create_dir(&old).unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    for v in live.values() {
        std::io::Write::write_all(&mut gz, format!("{v}\n").as_bytes()).unwrap();
    }
    std::fs::write(old.join("records-100.jsonl.gz"), gz.finish().unwrap()).unwrap();
    std::fs::write(old.join("records-200.jsonl"), "{\"ts_ms\":1").unwrap();
    let (code, got, text, err) =
        trace(&["--dir", old.to_str().unwrap(), "--caller", "13912345678"]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(got, ids(&["eq-10", "eq-8", "eq-9"]), "{text}");
    assert!(err.contains("records-200.jsonl:1: not a record"), "{err}");
    assert!(
        err.contains("in 2 of 2 record files") && err.contains("1 lines unreadable"),
        "{err}"
    );
    // Two gateways' records, copied to one host, searched in one run, each row naming
    // its gateway's directory (QA 153: a second --dir was refused, and calls the shared
    // stream lost in an outage took a search per gateway).
    let other = dir.path().join("gw-b");
    std::fs::create_dir(&other).unwrap();
    let mut moved = live.get("eq-9").unwrap().clone();
    moved["call_id"] = "gwb-1".into();
    std::fs::write(other.join("records-300.jsonl"), format!("{moved}\n")).unwrap();
    let (code, _, text, err) = trace(&[
        "--dir",
        old.to_str().unwrap(),
        "--dir",
        other.to_str().unwrap(),
        "--caller",
        "13912345678",
    ]);
    assert_eq!(code, Some(0), "{err}");
    assert!(text.starts_with("gateway    time"), "{text}");
    let rows: Vec<&str> = text.lines().skip(1).collect();
    assert_eq!(rows.len(), 4, "{text}");
    assert!(
        rows.iter()
            .filter(|r| r.starts_with(other.to_str().unwrap()))
            .all(|r| r.contains("gwb-1"))
            && rows.iter().filter(|r| r.contains("gwb-1")).count() == 1,
        "{text}"
    );
    assert!(err.contains("in 1 of 1 record files in"), "{err}");
    // In time order across the directories (QA 155: one directory's rows, then the
    // other's): the copy of eq-9 stands after it, before the later eq-10.
    let at = |id: &str| rows.iter().position(|r| r.contains(id)).unwrap();
    assert!(
        at("eq-8") < at("eq-9") && at("eq-9") < at("gwb-1") && at("gwb-1") < at("eq-10"),
        "{text}"
    );
    // A directory named twice is searched once.
    let (_, _, text, err) = trace(&[
        "--dir",
        old.to_str().unwrap(),
        "--dir",
        &format!("{}/.", old.display()),
        "--caller",
        "13912345678",
    ]);
    assert_eq!(text.lines().count(), 4, "{text}");
    assert!(err.contains("is given twice: searched once"), "{err}");
}

/// Ethernet + IPv4 + UDP around a payload, 127.0.0.1:sport -> 127.0.0.1:dport.
fn frame(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0u8; 12];
    f.extend_from_slice(&[0x08, 0x00]);
    let total = (20 + 8 + payload.len()) as u16;
    f.extend_from_slice(&[
        0x45,
        0,
        (total >> 8) as u8,
        total as u8,
        0,
        1,
        0,
        0,
        64,
        17,
        0,
        0,
        127,
        0,
        0,
        1,
        127,
        0,
        0,
        1,
    ]);
    let ulen = (8 + payload.len()) as u16;
    f.extend_from_slice(&sport.to_be_bytes());
    f.extend_from_slice(&dport.to_be_bytes());
    f.extend_from_slice(&ulen.to_be_bytes());
    f.extend_from_slice(&[0, 0]);
    f.extend_from_slice(payload);
    f
}
