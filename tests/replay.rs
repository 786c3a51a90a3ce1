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
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    common::project_dir()
}

fn replay(path: &std::path::Path) -> (Vec<Record>, sipfence::replay::Summary, End) {
    let (recs, s, end, _) = replay_net(path);
    (recs, s, end)
}

/// [`replay`], with what the network layer counted.
fn replay_net(
    path: &std::path::Path,
) -> (
    Vec<Record>,
    sipfence::replay::Summary,
    End,
    sipfence::replay::net::NetStats,
) {
    let p = Policy::builtin().unwrap();
    let mut r = Replayer::new(&p, None);
    let mut recs = vec![];
    let end = r
        .file(path, &mut Outputs::default(), &mut |rec| recs.push(rec))
        .expect("capture opens");
    (recs, r.summary.clone(), end, r.net_stats())
}

/// Writes a raw-IP capture of UDP datagrams, each `(ms, from, to, payload)`, `ms` after
/// 1,795,000,000 s, in the order given.
fn udp_capture(path: &Path, datagrams: &[(u32, SocketAddr, SocketAddr, &[u8])]) {
    let mut w = sipfence::replay::pcapout::PcapWriter::create(path).unwrap();
    for &(ms, src, dst, payload) in datagrams {
        let pkt = sipfence::replay::pcapout::udp_packet(src, dst, payload);
        w.write(
            sipfence::replay::pcapout::LINKTYPE_RAW,
            1_795_000_000 + ms / 1000,
            (ms % 1000) * 1000,
            &pkt,
            pkt.len() as u32,
        )
        .unwrap();
    }
    w.finish().unwrap();
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
    // Every row of the table, the shared captures too when they are there (QA 204: a
    // bound of 7 held with the local captures alone).
    let rows = tsv.lines().filter(|l| !l.starts_with('#')).skip(1);
    let want = rows
        .filter(|l| shared.is_some() || !l.starts_with("../shared"))
        .count();
    assert!(checked == want && checked >= 7, "{checked} of {want}");
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

/// Captures QA made of what operators hand over (testdata/pcap/qa, scapy-built by the
/// QA pass, counted with tshark): what replay reads and what it says it could not.
#[test]
fn captures_of_odd_transport_cases_are_read_or_reported() {
    let dir = root().join("testdata/pcap/qa");
    let p = Policy::load(&dir.join("policy.toml")).unwrap();
    let run = |name: &str| {
        let mut r = Replayer::new(&p, None);
        let mut recs = vec![];
        r.file(&dir.join(name), &mut Outputs::default(), &mut |rec| {
            recs.push(rec)
        })
        .expect("capture opens");
        (recs, r.summary.clone(), r.net_stats())
    };
    // A folded Content-Length on TCP frames the message (tshark: 2 INVITEs).
    let (recs, s, _) = run("folded-cl-then-normal.pcap");
    assert_eq!((s.sip_messages, s.parse_errors, s.calls), (2, 0, 2));
    assert_eq!(recs.len(), 2);
    // An INVITE over 65,535 bytes on TCP is counted as unparsable, not lost (tshark
    // sees 3 messages). The proxy ends the connection there (513), so the INVITE the
    // client sends after it on that connection is never read, and replay reads it no
    // more than the proxy would.
    let (_, s, _) = run("tcp-66k-invite.pcap");
    assert_eq!((s.sip_messages, s.parse_errors), (2, 1));
    assert_eq!(s.parse_errors_requests, 1, "an INVITE, not a response");
    // A datagram whose last fragment never came: expired, said so.
    let (_, _, n) = run("invite-missing-last-fragment.pcap");
    assert_eq!((n.fragments, n.reassembled, n.fragments_expired), (3, 0, 1));
    // Overlapping fragments that disagree: dropped as the kernel drops them.
    let (recs, _, n) = run("overlap-first-bad.pcap");
    assert!(recs.is_empty());
    assert_eq!(n.fragments_overlapping, 1);
    // A link type replay does not read is named.
    let (_, s, n) = run("badlink.pcap");
    assert_eq!(s.sip_messages, 0);
    assert_eq!((n.unsupported_link, n.unsupported_linktype), (48, 999));
}

#[test]
fn truncated_capture_keeps_what_was_read() {
    let (recs, s, end) = replay(&root().join("testdata/pcap/truncated.pcap"));
    assert!(matches!(end, End::Damaged { .. }), "{end:?}");
    assert_eq!(s.sip_messages, 10);
    assert_eq!(recs.iter().filter(|r| r.kind == "call").count(), 2);
    assert_eq!(s.damaged.len(), 1);
    // After another file, the damage counts this file's packets (QA 46: the files'
    // together).
    let p = Policy::builtin().unwrap();
    let mut r = Replayer::new(&p, None);
    for f in ["rules-udp.pcap", "truncated.pcap"] {
        let _ = r
            .file(
                &root().join("testdata/pcap").join(f),
                &mut Outputs::default(),
                &mut |_| {},
            )
            .expect("capture opens");
    }
    let said = format!("the {} packets of this file before it", s.packets);
    assert!(r.summary.packets > s.packets);
    assert!(
        r.summary.damaged[0].contains(&said),
        "{:?}",
        r.summary.damaged
    );
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

/// What `sipfence replay --json FILE` prints (it must succeed).
fn replay_json(path: &Path) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sipfence"))
        .args(["replay", "--json"])
        .arg(path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    String::from_utf8(out.stdout).unwrap()
}

/// `replay -` reads a capture from standard input as it comes: `tcpdump -U -w - |
/// sipfence replay -` judges a mirror port's traffic live. Records come out while the
/// capture is still being written (the first half is judged before the second is sent),
/// and the whole gives what the file gives; `--baseline` reads the pipe too.
#[test]
fn replay_judges_a_capture_piped_in_as_it_comes() {
    use std::io::{BufRead, Write};
    use std::process::{Command, Stdio};
    let path = root().join("testdata/pcap/rules-udp.pcap");
    let bytes = std::fs::read(&path).unwrap();
    let want = replay_json(&path);
    assert!(want.lines().count() > 10, "{want}");

    let mut child = Command::new(env!("CARGO_BIN_EXE_sipfence"))
        .args(["replay", "--json", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let line = line.unwrap();
            tx.send(line).unwrap();
        }
    });
    let half = bytes.len() / 2;
    stdin.write_all(&bytes[..half]).unwrap();
    stdin.flush().unwrap();
    let first = rx
        .recv_timeout(std::time::Duration::from_secs(20))
        .expect("a record before the capture is complete");
    assert!(first.contains("\"verdict\""), "{first}");
    stdin.write_all(&bytes[half..]).unwrap();
    drop(stdin);
    assert!(child.wait().unwrap().success());
    reader.join().unwrap();
    let got: Vec<String> = std::iter::once(first).chain(rx.try_iter()).collect();
    assert_eq!(got.join("\n") + "\n", want);

    // Compared against a baseline, from the pipe as from the file.
    let dir = tempfile::tempdir().unwrap();
    let new_path = dir.path().join("new.toml");
    std::fs::write(
        &new_path,
        sipfence::policy::BUILTIN_CONFIG.to_string()
            + "\n[rules.numbering-plan]\naction = \"monitor\"\n",
    )
    .unwrap();
    let compare = |capture: &str, input: Option<&[u8]>| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_sipfence"));
        c.args(["replay", "--json", "--config"])
            .arg(&new_path)
            .args(["--baseline", "deploy/sipfence.toml", capture])
            .current_dir(root())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped());
        let mut child = c.spawn().unwrap();
        let mut stdin = child.stdin.take().unwrap();
        if let Some(b) = input {
            stdin.write_all(b).unwrap();
        }
        drop(stdin);
        let out = child.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(0));
        String::from_utf8(out.stdout).unwrap()
    };
    let (piped, filed) = (
        compare("-", Some(&bytes)),
        compare(path.to_str().unwrap(), None),
    );
    assert!(piped.contains("\"changed\""), "{piped}");
    assert!(!piped.contains("\"changed\":0"), "{piped}");
    assert_eq!(piped, filed);
}

/// Ctrl-C on `tcpdump ... | sipfence replay -` interrupts both ends of the pipe: the
/// replay keeps reading until the capture tool has closed it, then prints its summary
/// (nothing judged is lost); a second Ctrl-C quits at once.
/// A pipe may hand over the capture's file header in pieces (ssh, nc, pv): every
/// message is still read, for pcap and pcapng alike.
#[test]
fn a_file_header_that_arrives_in_pieces_is_waited_for() {
    use std::io::Write;
    use std::process::{Command, Stdio};
    for (name, gz) in [
        ("rules-udp.pcap", false),
        ("rules-tcp.pcapng", false),
        ("rules-udp.pcap", true),
    ] {
        let path = root().join("testdata/pcap").join(name);
        let mut bytes = std::fs::read(&path).unwrap();
        let want = replay_json(&path);
        if gz {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(&bytes).unwrap();
            bytes = e.finish().unwrap();
        }
        let mut child = Command::new(env!("CARGO_BIN_EXE_sipfence"))
            .args(["replay", "--json", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        for piece in [&bytes[..1], &bytes[1..9], &bytes[9..17]] {
            stdin.write_all(piece).unwrap();
            stdin.flush().unwrap();
            std::thread::sleep(std::time::Duration::from_millis(150));
        }
        stdin.write_all(&bytes[17..]).unwrap();
        drop(stdin);
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{name}");
        assert_eq!(String::from_utf8_lossy(&out.stdout), want, "{name}");
    }
}

#[test]
fn ctrl_c_on_a_live_replay_waits_for_the_capture_to_end() {
    use std::io::{Read, Write};
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};
    let path = root().join("testdata/pcap/rules-udp.pcap");
    let bytes = std::fs::read(&path).unwrap();
    let want = replay_json(&path);
    let start = || {
        let mut child = Command::new(env!("CARGO_BIN_EXE_sipfence"))
            .args(["replay", "--json", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(&bytes[..bytes.len() / 2]).unwrap();
        stdin.flush().unwrap();
        // Judging has begun (so the handler is in place): the first record is out.
        let mut stdout = child.stdout.take().unwrap();
        let mut first = [0u8; 1];
        stdout.read_exact(&mut first).unwrap();
        (child, stdin, stdout, first[0])
    };
    let interrupt = |child: &std::process::Child| {
        // SAFETY: sending a signal to our own child process.
        assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGINT) }, 0);
    };
    let wait = |child: &mut std::process::Child| {
        let until = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < until, "replay did not end");
            std::thread::sleep(Duration::from_millis(20));
        }
    };

    let (mut child, mut stdin, mut stdout, first) = start();
    interrupt(&child);
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        child.try_wait().unwrap().is_none(),
        "one Ctrl-C must not end the replay"
    );
    stdin.write_all(&bytes[bytes.len() / 2..]).unwrap();
    drop(stdin);
    let mut got = vec![first];
    stdout.read_to_end(&mut got).unwrap();
    assert!(wait(&mut child).success());
    assert_eq!(String::from_utf8_lossy(&got), want);
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(err.contains("interrupted: the summary follows"), "{err}");

    let (mut child, _stdin, _stdout, _) = start();
    interrupt(&child);
    std::thread::sleep(Duration::from_millis(300));
    interrupt(&child);
    assert_eq!(wait(&mut child).code(), Some(130));

    // Standard input left on the terminal is a mistake, said at once (util-linux's
    // `script` gives the replay a terminal).
    if Command::new("script").arg("--version").output().is_err() {
        eprintln!("skipped the terminal case: no `script` (util-linux)");
        return;
    }
    let cmd = format!("{} replay -", env!("CARGO_BIN_EXE_sipfence"));
    let out = Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("standard input is a terminal"), "{text}");
}

/// The converse mistake: a capture handed to `explain`, which takes SIP messages, is
/// named as one with the command that reads it (pcap, pcapng, gzipped), while a SIP
/// message beside it is still explained.
#[test]
fn explain_points_a_capture_to_replay() {
    use flate2::{Compression, write::GzEncoder};
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let plain = std::fs::read(root().join("testdata/pcap/rules-udp.pcap")).unwrap();
    let mut e = GzEncoder::new(Vec::new(), Compression::default());
    e.write_all(&plain).unwrap();
    let gz = dir.path().join("rules-udp.pcap.gz");
    std::fs::write(&gz, e.finish().unwrap()).unwrap();
    let sip = root().join("testdata/sip/invite-pai-sdp.sip");
    // Given a policy, the hint names it: the command can be pasted as it is.
    let cfg = root().join("deploy/sipfence.toml");
    let cap = root().join("testdata/pcap/rules-udp.pcap");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sipfence"))
        .args(["explain", "--config"])
        .arg(&cfg)
        .arg(&cap)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!(
            "sipfence replay --config {} {}",
            cfg.display(),
            cap.display()
        )),
        "{text}"
    );
    for capture in [
        root().join("testdata/pcap/rules-udp.pcap"),
        root().join("testdata/pcap/rules-tcp.pcapng"),
        gz,
    ] {
        for json in [false, true] {
            let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_sipfence"));
            c.args(["explain", "--trunk", "intl"]);
            if json {
                c.arg("--json");
            }
            let out = c.arg(&capture).arg(&sip).output().unwrap();
            let text = String::from_utf8_lossy(&out.stdout);
            let hint = format!("sipfence replay {}", capture.display());
            assert_eq!(out.status.code(), Some(1), "{text}");
            assert!(
                text.contains("a packet capture, not a SIP message") && text.contains(&hint),
                "{text}"
            );
            assert!(!text.contains("bad_start_line"), "{text}");
            // The message after it is explained as ever.
            if json {
                let last: serde_json::Value =
                    serde_json::from_str(text.lines().last().unwrap()).unwrap();
                assert_eq!(last["verdict"], "allow", "{text}");
            } else {
                assert!(text.contains("verdict  allow"), "{text}");
            }
        }
    }
}

/// `explain` reads messages the way engineers hand them over: piped in (`-`), or
/// copied out of a log or a mail with their CRs lost, so that the body no longer
/// fills its Content-Length. Such a message is judged as sent, with a note, and a
/// message that is really broken says where, by line and column.
#[test]
fn explain_reads_messages_as_people_save_them() {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let dir = tempfile::tempdir().unwrap();
    let explain = |file: &std::path::Path, input: Option<&[u8]>, json: bool| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_sipfence"));
        c.args(["explain", "--trunk", "intl", "--at", "1795998600"]);
        if json {
            c.arg("--json");
        }
        let mut child = c
            .arg(file)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        if let Some(b) = input {
            stdin.write_all(b).unwrap();
        }
        drop(stdin);
        let out = child.wait_with_output().unwrap();
        (out.status.code(), String::from_utf8(out.stdout).unwrap())
    };
    let json = |text: &str| -> serde_json::Value { serde_json::from_str(text.trim()).unwrap() };
    let original = std::fs::read_to_string(root().join("testdata/sip/invite-pai-sdp.sip")).unwrap();
    // One call let through, one refused (a domestic caller on the international trunk).
    let domestic = original.replace("+442071234567", "+8613812345678");
    for (text, verdict) in [(&original, "allow"), (&domestic, "reject")] {
        let crlf = dir.path().join("crlf.sip");
        std::fs::write(&crlf, text).unwrap();
        let (code, out) = explain(&crlf, None, true);
        assert_eq!(code, Some(0), "{out}");
        let want = json(&out);
        assert_eq!(want["verdict"], verdict, "{out}");
        assert!(want.get("note").is_none(), "{out}");

        let lf = dir.path().join("lf.sip");
        std::fs::write(&lf, text.replace("\r\n", "\n")).unwrap();
        let (code, out) = explain(&lf, None, true);
        assert_eq!(code, Some(0), "{out}");
        let mut got = json(&out);
        assert!(got["note"].as_str().unwrap().contains("LF"), "{out}");
        let o = got.as_object_mut().unwrap();
        o.remove("note");
        o.insert("file".into(), want["file"].clone());
        assert_eq!(got, want);
        let (_, out) = explain(&lf, None, false);
        assert!(
            out.contains("note     the file's lines end in LF alone"),
            "{out}"
        );
        assert!(out.contains(&format!("verdict  {verdict}")), "{out}");

        // Piped in: the same verdict as the file.
        let (code, out) = explain(std::path::Path::new("-"), Some(text.as_bytes()), true);
        assert_eq!(code, Some(0), "{out}");
        let mut got = json(&out);
        assert_eq!(got["file"], "-");
        got["file"] = want["file"].clone();
        assert_eq!(got, want);
    }
    // A SIP-I call saved without its CRs (QA 27): the text lost them, the IAM's binary
    // octets did not (0x0A is the Calling Party Number's code, not a line end).
    let iam = sipfence::isup::encode::IamBuilder::new("861012345678")
        .calling(sipfence::isup::encode::NumberSpec::international(
            "442071234567",
        ))
        .build();
    assert!(iam.contains(&b'\n') && !iam.contains(&b'\r'));
    let sipi = sipfence::isup::encode::to_sipi(original.as_bytes(), &iam, "b1").unwrap();
    let mut lf_sipi = Vec::new();
    for (k, &c) in sipi.iter().enumerate() {
        if !(c == b'\r' && sipi.get(k + 1) == Some(&b'\n')) {
            lf_sipi.push(c);
        }
    }
    // The ISUP part first (QA 28): its octets are kept there too.
    let text = String::from_utf8_lossy(&sipi).into_owned();
    let (head, _) = text.split_once("\r\n\r\n").unwrap();
    let mut first = Vec::new();
    first.extend_from_slice(b"--b1\r\nContent-Type: application/ISUP;version=itu-t92+\r\n\r\n");
    first.extend_from_slice(&iam);
    first.extend_from_slice(b"\r\n--b1\r\nContent-Type: application/sdp\r\n\r\nv=0\r\n--b1--\r\n");
    let head = head
        .lines()
        .filter(|l| !l.starts_with("Content-Length"))
        .collect::<Vec<_>>()
        .join("\r\n");
    let mut isup_first = format!("{head}\r\nContent-Length: {}\r\n\r\n", first.len()).into_bytes();
    isup_first.extend_from_slice(&first);
    let mut lf_isup_first = Vec::new();
    for (k, &c) in isup_first.iter().enumerate() {
        if !(c == b'\r' && isup_first.get(k + 1) == Some(&b'\n')) {
            lf_isup_first.push(c);
        }
    }
    for (name, bytes, note) in [
        ("sipi.sip", &sipi, false),
        ("sipi-lf.sip", &lf_sipi, true),
        ("sipi-first.sip", &isup_first, false),
        ("sipi-first-lf.sip", &lf_isup_first, true),
    ] {
        let f = dir.path().join(name);
        std::fs::write(&f, bytes).unwrap();
        let (code, out) = explain(&f, None, false);
        assert_eq!(code, Some(0), "{out}");
        assert!(out.contains("verdict  allow"), "{out}");
        assert!(out.contains("isup     calling=+442071234567"), "{out}");
        assert_eq!(out.contains("lines end in LF alone"), note, "{out}");
    }
    // Really broken: the place is named, in the file's own lines.
    let bad = dir.path().join("bad.sip");
    std::fs::write(&bad, original.replace("CSeq: 1 INVITE", "CSeq: one INVITE")).unwrap();
    let (code, out) = explain(&bad, None, false);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("malformed: bad_header_value in CSeq"), "{out}");
    assert!(
        out.contains("line 8, column 7: \"CSeq: one INVITE\""),
        "{out}"
    );
    let (_, out) = explain(&bad, None, true);
    assert_eq!(json(&out)["at"], "line 8, column 7: \"CSeq: one INVITE\"");
    // A body really cut short stays an error, with or without CRs, and no note.
    for text in [original.clone(), original.replace("\r\n", "\n")] {
        let cut = dir.path().join("cut.sip");
        std::fs::write(&cut, &text[..text.len() - 40]).unwrap();
        let (code, out) = explain(&cut, None, false);
        assert_eq!(code, Some(1), "{out}");
        assert!(out.contains("malformed: body_truncated"), "{out}");
        assert!(out.contains("Content-Length counts more bytes"), "{out}");
        assert!(!out.contains("note"), "{out}");
    }
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

/// The hour and rate rules of a replay go by the capture's time, as they would have
/// live (QA 204: no replay test had either rule). The capture's enterprise calls are at
/// 10:00:05-10:00:07 +08:00: allowed in a one-minute window around them, refused
/// outside it, whenever the test runs; a trunk limit of 2 a minute refuses the third.
#[test]
fn hour_and_rate_rules_follow_the_capture_time() {
    let builtin = std::fs::read_to_string(root().join("deploy/sipfence.toml")).unwrap();
    let on_ent = |from: &str, to: &str| {
        let text = builtin.replace(from, to);
        assert_ne!(text, builtin);
        let p = Policy::from_str(&text, "replay.toml", &root()).unwrap();
        let mut r = Replayer::new(&p, None);
        let mut recs = vec![];
        r.file(
            &root().join("testdata/pcap/rules-udp.pcap"),
            &mut Outputs::default(),
            &mut |rec| recs.push(rec),
        )
        .expect("capture opens");
        recs.into_iter()
            .filter(|r| r.kind == "call" && r.call_id.starts_with("udp-ent-whitelisted"))
            .map(|r| (r.call_id.clone(), r.verdict, r.rule))
            .collect::<Vec<_>>()
    };
    let hours = |h: &str| {
        on_ent(
            "max_calls_per_minute_per_caller = 600",
            &format!(
                "max_calls_per_minute_per_caller = 600\nhours = \"{h}\"\nutc_offset = \"+08:00\""
            ),
        )
    };
    let open = hours("10:00-10:01");
    assert_eq!(open.len(), 3, "{open:?}");
    assert!(open.iter().all(|(_, v, _)| *v == "allow"), "{open:?}");
    let shut = hours("00:00-10:00");
    assert_eq!(shut.len(), 3, "{shut:?}");
    assert!(
        shut.iter()
            .all(|(_, v, r)| *v == "reject" && *r == Some("enterprise-hours")),
        "{shut:?}"
    );
    let limited = on_ent("max_calls_per_minute = 6000", "max_calls_per_minute = 2")
        .into_iter()
        .map(|(_, v, r)| (v, r))
        .collect::<Vec<_>>();
    assert_eq!(
        limited,
        [
            ("allow", None),
            ("allow", None),
            ("reject", Some("enterprise-rate-trunk"))
        ]
    );
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
    // The table says which number a rule matched when it is the ISUP one (QA 204: it
    // showed the +44 SIP caller refused as a domestic caller, the +86 ISUP number only
    // in --json); a rule that matched the SIP caller says nothing more.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sipfence"))
        .arg("replay")
        .arg(root().join("testdata/pcap/sipi.pcap"))
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    let row = |id: &str| {
        table
            .lines()
            .find(|l| l.contains(id))
            .unwrap_or_else(|| panic!("no row for {id}: {table}"))
            .to_string()
    };
    assert!(
        row("sipi-domestic-in-isup@").ends_with("intl-domestic-caller on isup +8613812345678"),
        "{table}"
    );
    assert!(
        row("sipi-blacklist-in-isup@").ends_with("608 blacklist on isup +8613800000001"),
        "{table}"
    );
    assert!(row("sipi-mismatch@").ends_with("isup-mismatch"), "{table}");
    assert!(!row("sipi-generic-number@").contains("on isup"), "{table}");
}

/// How a mirror port or probe may hand over the same packets: each wraps the original
/// frame (or its IP packet) the way the protocol's RFC lays it out.
#[derive(Clone, Copy, Debug)]
enum Wrap {
    /// UDP 4789 over IPv4, inner Ethernet (cloud mirrors).
    Vxlan,
    /// GRE with a sequence number and an ERSPAN type II header (switch SPAN sessions).
    ErspanII,
    /// Two MPLS labels over Ethernet, then the IP packet (carrier cores).
    Mpls,
    /// GTP-U over IPv6 with a PDU-session extension header (mobile core, VoLTE).
    GtpU,
    /// A PPPoE session (access networks).
    Pppoe,
    /// The IP packet inside IPv4 (IP-in-IP) on raw-IP link type.
    IpInIp,
    /// Linux NFLOG link type (`tcpdump -i nflog:N`): TLVs, the payload one last.
    Nflog,
}

fn ethernet(ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2];
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

fn ipv4(proto: u8, payload: &[u8]) -> Vec<u8> {
    let total = u16::try_from(20 + payload.len()).expect("an IPv4 packet's size");
    let mut p = vec![0x45, 0];
    p.extend_from_slice(&total.to_be_bytes());
    p.extend_from_slice(&[0, 0, 0x40, 0, 64, proto, 0, 0, 192, 0, 2, 1, 192, 0, 2, 2]);
    p.extend_from_slice(payload);
    p
}

fn ipv6(next: u8, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0x60, 0, 0, 0];
    p.extend_from_slice(
        &u16::try_from(payload.len())
            .expect("an IPv6 payload's size")
            .to_be_bytes(),
    );
    p.extend_from_slice(&[next, 64]);
    p.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    p.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
    p.extend_from_slice(payload);
    p
}

fn udp(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut u = sport.to_be_bytes().to_vec();
    u.extend_from_slice(&dport.to_be_bytes());
    u.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    u.extend_from_slice(&[0, 0]);
    u.extend_from_slice(payload);
    u
}

/// The frame's ethertype and layer-3 bytes, for the link types the test captures use.
fn layer3(linktype: i32, f: &[u8]) -> Option<(u16, Vec<u8>)> {
    let be = |i: usize| u16::from_be_bytes([f[i], f[i + 1]]);
    match linktype {
        1 => {
            let (mut et, mut off) = (be(12), 14);
            while et == 0x8100 {
                et = be(off + 2);
                off += 4;
            }
            Some((et, f[off..].to_vec()))
        }
        113 => Some((be(14), f[16..].to_vec())),
        276 => Some((be(0), f[20..].to_vec())),
        101 | 228 | 229 => Some((if f[0] >> 4 == 6 { 0x86dd } else { 0x0800 }, f.to_vec())),
        _ => None,
    }
}

/// The packet wrapped, and its link type; `None` when it is not IP (ARP and the like).
fn wrap(w: Wrap, linktype: i32, frame: &[u8], seq: u32) -> Option<(i32, Vec<u8>)> {
    let (et, l3) = layer3(linktype, frame)?;
    if et != 0x0800 && et != 0x86dd {
        return None;
    }
    let inner_eth = if linktype == 1 {
        frame.to_vec()
    } else {
        ethernet(et, &l3)
    };
    Some(match w {
        Wrap::Vxlan => {
            let mut v = vec![0x08, 0, 0, 0, 0, 0x12, 0x34, 0];
            v.extend_from_slice(&inner_eth);
            (1, ethernet(0x0800, &ipv4(17, &udp(49152, 4789, &v))))
        }
        Wrap::ErspanII => {
            let mut g = vec![0x10, 0x00, 0x88, 0xbe];
            g.extend_from_slice(&seq.to_be_bytes());
            // Version 1 (type II), VLAN 0, session 7, index 0.
            g.extend_from_slice(&[0x10, 0x00, 0x00, 0x07, 0, 0, 0, 0]);
            g.extend_from_slice(&inner_eth);
            (1, ethernet(0x0800, &ipv4(47, &g)))
        }
        Wrap::Mpls => {
            // Label 1000 (not bottom), label 2000 (bottom of stack), TTL 64.
            let mut m = vec![0x00, 0x3e, 0x80, 0x40, 0x00, 0x7d, 0x01, 0x40];
            m.extend_from_slice(&l3);
            (1, ethernet(0x8847, &m))
        }
        Wrap::GtpU => {
            let mut g = vec![0x34, 0xff];
            g.extend_from_slice(&((4 + 4 + l3.len()) as u16).to_be_bytes());
            g.extend_from_slice(&0x0001_0203u32.to_be_bytes());
            // Sequence 0, N-PDU 0, next: PDU session container (4 bytes, then none).
            g.extend_from_slice(&[0, 0, 0, 0x85, 0x01, 0x10, 0x09, 0x00]);
            g.extend_from_slice(&l3);
            (1, ethernet(0x86dd, &ipv6(17, &udp(2152, 2152, &g))))
        }
        Wrap::Pppoe => {
            let mut p = vec![0x11, 0x00, 0x00, 0x2a];
            p.extend_from_slice(&((2 + l3.len()) as u16).to_be_bytes());
            p.extend_from_slice(if et == 0x0800 {
                &[0x00, 0x21]
            } else {
                &[0x00, 0x57]
            });
            p.extend_from_slice(&l3);
            (1, ethernet(0x8864, &p))
        }
        Wrap::IpInIp => (101, ipv4(if et == 0x0800 { 4 } else { 41 }, &l3)),
        Wrap::Nflog => {
            let family = if et == 0x0800 { 2 } else { 10 };
            let mut f = vec![family, 0, 0, 5];
            // A prefix TLV ("sip\0"), then the payload, each padded to four bytes.
            f.extend_from_slice(&[8, 0, 10, 0]);
            f.extend_from_slice(b"sip\0");
            f.extend_from_slice(&((4 + l3.len()) as u16).to_le_bytes());
            f.extend_from_slice(&[9, 0]);
            f.extend_from_slice(&l3);
            f.resize(f.len().next_multiple_of(4), 0);
            (239, f)
        }
    })
}

fn tshark_sip_frames(file: &std::path::Path) -> usize {
    let t = std::process::Command::new("tshark")
        .args(["-n", "-r"])
        .arg(file)
        .args(["-Y", "sip", "-T", "fields", "-e", "frame.number"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&t.stdout).lines().count()
}

/// A capture mirrored through a tunnel or label stack replays exactly like the capture
/// itself: same SIP messages, same calls, same verdicts and rules (the inner addresses
/// decide the trunk). tshark, which knows every one of these, agrees on the messages.
#[test]
fn tunnelled_captures_replay_like_the_plain_ones() {
    let mut files: Vec<PathBuf> = std::fs::read_dir(root().join("testdata/pcap"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "pcap" || e == "pcapng"))
        .filter(|p| !p.ends_with("truncated.pcap"))
        .collect();
    if let Some(shared) = common::shared_dir() {
        for e in std::fs::read_dir(shared.join("corpus/pcap")).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|e| e == "pcap" || e == "pcapng") {
                files.push(p);
            }
        }
    }
    files.sort();
    let dir = tempfile::tempdir().unwrap();
    let key = |r: &Record| {
        format!(
            "{} {} {} {:?} {:?} {:?}",
            r.kind, r.call_id, r.verdict, r.rule, r.code, r.trunk
        )
    };
    let mut checked = 0;
    for file in &files {
        let (plain, ps, _) = replay(file);
        let plain_frames = common::tshark_available().then(|| tshark_sip_frames(file));
        for w in [
            Wrap::Vxlan,
            Wrap::ErspanII,
            Wrap::Mpls,
            Wrap::GtpU,
            Wrap::Pppoe,
            Wrap::IpInIp,
            Wrap::Nflog,
        ] {
            let out = dir.path().join(format!(
                "{}-{w:?}.pcap",
                file.file_stem().unwrap().to_string_lossy()
            ));
            let mut wr = sipfence::replay::pcapout::PcapWriter::create(&out).unwrap();
            let mut seq = 0;
            sipfence::replay::capture::read(file, |p| {
                seq += 1;
                if let Some((lt, f)) = wrap(w, p.linktype, p.data, seq) {
                    let len = f.len() as u32;
                    wr.write(lt, p.ts_sec, p.ts_usec, &f, len).unwrap();
                }
            })
            .unwrap();
            wr.finish().unwrap();
            let (recs, s, _) = replay(&out);
            let what = format!("{} in {w:?}", file.display());
            assert_eq!(s.sip_messages, ps.sip_messages, "{what}: SIP messages");
            assert_eq!(s.parse_errors, ps.parse_errors, "{what}: unparsable");
            assert_eq!(
                recs.iter().map(key).collect::<Vec<_>>(),
                plain.iter().map(key).collect::<Vec<_>>(),
                "{what}: records"
            );
            if let Some(want) = plain_frames {
                assert_eq!(tshark_sip_frames(&out), want, "{what}: tshark's SIP frames");
            }
            checked += 1;
        }
    }
    assert!(checked >= 7 * 8, "{checked} tunnelled captures checked");
}

/// Captures are often kept gzipped (`tcpdump -w - | gzip`, Wireshark's `.pcapng.gz`,
/// rotated pieces gzipped and joined): replay reads them as they are, told by their
/// magic bytes, to the same records; a gzip stream cut short is reported as damaged
/// with what came before replayed.
#[test]
fn gzipped_captures_replay_like_the_plain_ones() {
    use flate2::{Compression, write::GzEncoder};
    use std::io::Write;
    let gz = |b: &[u8]| {
        let mut e = GzEncoder::new(Vec::new(), Compression::default());
        e.write_all(b).unwrap();
        e.finish().unwrap()
    };
    let dir = tempfile::tempdir().unwrap();
    let key = |r: &Record| format!("{} {} {} {:?}", r.kind, r.call_id, r.verdict, r.rule);
    for name in ["rules-udp.pcap", "rules-tcp.pcapng", "sipi.pcap"] {
        let plain_path = root().join("testdata/pcap").join(name);
        let plain = std::fs::read(&plain_path).unwrap();
        let (want, ws, _) = replay(&plain_path);
        assert!(ws.calls > 0);
        // One member, and two members joined (the file cut in the middle of a packet).
        let mut two = gz(&plain[..plain.len() / 2]);
        two.extend_from_slice(&gz(&plain[plain.len() / 2..]));
        for (what, bytes) in [("one", gz(&plain)), ("two", two)] {
            let p = dir.path().join(format!("{name}.{what}.gz"));
            std::fs::write(&p, &bytes).unwrap();
            let (got, s, end) = replay(&p);
            assert_eq!(end, End::Complete, "{name} {what}");
            assert_eq!(s.sip_messages, ws.sip_messages, "{name} {what}");
            assert_eq!(
                got.iter().map(key).collect::<Vec<_>>(),
                want.iter().map(key).collect::<Vec<_>>(),
                "{name} {what}"
            );
        }
    }
    // Cut short: damaged, exit status 2, what was read is replayed.
    let plain = std::fs::read(root().join("testdata/pcap/rules-udp.pcap")).unwrap();
    let whole = gz(&plain);
    let p = dir.path().join("cut.pcap.gz");
    std::fs::write(&p, &whole[..whole.len() * 2 / 3]).unwrap();
    let (got, _, end) = replay(&p);
    assert!(matches!(end, End::Damaged { .. }), "{end:?}");
    assert!(!got.is_empty());
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sipfence"))
        .arg("replay")
        .arg(&p)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

/// `--baseline`: one capture through the running policy and a new one, printing only
/// the calls judged otherwise, as two separate replays would find them.
#[test]
fn baseline_shows_what_a_policy_change_would_do() {
    let dir = tempfile::tempdir().unwrap();
    let builtin = sipfence::policy::BUILTIN_CONFIG;
    let old_path = dir.path().join("running.toml");
    std::fs::write(&old_path, builtin).unwrap();
    // The change: a UK caller blacklisted, numbering-plan made monitor-only.
    let new_text = builtin.replacen(
        "\"+8617099999*\"]",
        "\"+8617099999*\", \"+442071234567\"]",
        1,
    ) + "\n[rules.numbering-plan]\naction = \"monitor\"\n";
    assert_ne!(new_text, builtin);
    let new_path = dir.path().join("new.toml");
    std::fs::write(&new_path, &new_text).unwrap();
    let capture = root().join("testdata/pcap/rules-udp.pcap");

    // What two separate replays say.
    let judge = |text: &str| {
        let p = Policy::from_str(text, "t.toml", std::path::Path::new(".")).unwrap();
        let mut r = Replayer::new(&p, None);
        let mut recs = vec![];
        r.file(&capture, &mut Outputs::default(), &mut |rec| {
            if rec.kind == "call" {
                recs.push(rec)
            }
        })
        .unwrap();
        recs
    };
    let (before, after) = (judge(builtin), judge(&new_text));
    assert_eq!(before.len(), after.len());
    let mut want: Vec<(String, String, String)> = vec![];
    for (b, a) in before.iter().zip(&after) {
        assert_eq!(b.call_id, a.call_id);
        if (b.verdict, b.code, b.rule) != (a.verdict, a.code, a.rule) {
            want.push((
                a.call_id.clone(),
                b.verdict.to_string(),
                a.verdict.to_string(),
            ));
        }
    }
    assert!(want.len() >= 3, "{want:?}");

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sipfence"))
        .args(["replay", "--json", "--config"])
        .arg(&new_path)
        .arg("--baseline")
        .arg(&old_path)
        .arg(&capture)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let (summary, changes) = lines.split_last().unwrap();
    let got: Vec<(String, String, String)> = changes
        .iter()
        .map(|c| {
            (
                c["call_id"].as_str().unwrap().to_string(),
                c["baseline"]["verdict"].as_str().unwrap().to_string(),
                c["new"]["verdict"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(got, want);
    let s = &summary["compare"];
    assert_eq!(s["calls"], before.len() as u64);
    assert_eq!(s["changed"], want.len() as u64);
    let count =
        |f: &dyn Fn(&str, &str) -> bool| want.iter().filter(|(_, b, a)| f(b, a)).count() as u64;
    assert_eq!(
        s["newly_blocked"],
        count(&|b, a| b != "reject" && a == "reject")
    );
    assert_eq!(
        s["newly_allowed"],
        count(&|b, a| b == "reject" && a != "reject")
    );
    assert_eq!(s["one_sided"], 0);

    // A baseline that does not load is refused with its file and line.
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[[trunk]]\nname = 1\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sipfence"))
        .args(["replay", "--baseline"])
        .arg(&bad)
        .arg(&capture)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        err.contains("baseline config refused") && err.contains("bad.toml:2"),
        "{err}"
    );
    // A capture that is not there is said, and nothing else is printed (QA 175 F8: an
    // empty table and a summary of zeros read as a capture without a call).
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sipfence"))
        .arg("replay")
        .arg(&capture)
        .arg(dir.path().join("missing.pcap"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        err.contains("missing.pcap: cannot open") && out.stdout.is_empty(),
        "{err}"
    );
}

/// Replay judges requests as the proxy does: the protocol checks first (two From fields
/// answered 400, no hops left 483, with the reason in the record), then the rules; and
/// the core's own requests (from a trunk's next hop), which the proxy relays without
/// judging, get no verdict.
#[test]
fn replay_refuses_broken_requests_as_the_proxy_does() {
    let p = Policy::from_str(
        r#"
[[trunk]]
name = "intl"
role = "international"
listen = ["udp:192.0.2.2:5060"]
sources = ["192.0.2.1/32"]
next_hop = "udp:10.0.0.9:5060"
"#,
        "t.toml",
        std::path::Path::new("."),
    )
    .unwrap();
    let ip = |src: [u8; 4], payload: &[u8]| {
        let mut v = ipv4(17, payload);
        v[12..16].copy_from_slice(&src);
        v
    };
    let invite = |i: u32, extra: &str, mf: u32| {
        format!(
            "INVITE sip:+861012345678@192.0.2.2 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK-r{i}\r\nFrom: <sip:+442071234567@192.0.2.1>;tag=f{i}\r\nTo: <sip:+861012345678@192.0.2.2>\r\nCall-ID: replay-{i}\r\nCSeq: 1 INVITE\r\nMax-Forwards: {mf}\r\n{extra}Content-Length: 0\r\n\r\n"
        )
    };
    let bye = "BYE sip:+442071234567@192.0.2.1 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.9;branch=z9hG4bK-core1\r\nFrom: <sip:+861012345678@192.0.2.2>;tag=callee\r\nTo: <sip:+442071234567@192.0.2.1>;tag=f3\r\nCall-ID: replay-3\r\nCSeq: 2 BYE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n";
    let packets = [
        (
            [192, 0, 2, 1],
            invite(1, "From: <sip:+8613812345678@192.0.2.1>;tag=g\r\n", 70),
        ),
        ([192, 0, 2, 1], invite(2, "", 0)),
        ([192, 0, 2, 1], invite(3, "", 70)),
        ([10, 0, 0, 9], bye.to_string()),
        // A request the parser cannot read (a NUL in From), and the 400 the gateway
        // answered it with, repeating the field: two unparsable messages, one request.
        (
            [192, 0, 2, 1],
            invite(4, "", 70).replace("+442071234567@", "+44207\0@"),
        ),
        (
            [192, 0, 2, 2],
            "SIP/2.0 400 Bad Request\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK-r4\r\nFrom: <sip:+44207\0@192.0.2.1>;tag=f4\r\nTo: <sip:+861012345678@192.0.2.2>;tag=x\r\nCall-ID: replay-4\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n".to_string(),
        ),
    ];
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("broken.pcap");
    let mut wr = sipfence::replay::pcapout::PcapWriter::create(&file).unwrap();
    for (k, (src, m)) in packets.iter().enumerate() {
        let f = ethernet(0x0800, &ip(*src, &udp(5060, 5060, m.as_bytes())));
        wr.write(1, 1_796_000_000 + k as u32, 0, &f, f.len() as u32)
            .unwrap();
    }
    wr.finish().unwrap();
    let mut r = Replayer::new(&p, None);
    let mut recs = vec![];
    r.file(&file, &mut Outputs::default(), &mut |rec| recs.push(rec))
        .expect("capture opens");
    let got: Vec<String> = recs
        .iter()
        .map(|r| {
            format!(
                "{} {} {:?} {:?} {:?}",
                r.call_id, r.verdict, r.code, r.rule, r.refused
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            "replay-1 reject Some(400) None Some(\"Multiple From\")",
            "replay-2 reject Some(483) None Some(\"Too Many Hops\")",
            "replay-3 allow None None None",
        ]
    );
    assert_eq!(r.summary.calls, 3);
    assert_eq!(r.summary.by_rule.get("(protocol checks)"), Some(&2));
    assert_eq!(
        (r.summary.parse_errors, r.summary.parse_errors_requests),
        (2, 1)
    );
}

/// A capture taken on a Homer server holds HEP: every message Kamailio received, mirrored
/// by its siptrace module (scripts/gen_hep_capture.sh recorded both at once). Opened, the
/// HEPv3 capture replays exactly like the messages as they travelled: same SIP messages,
/// same calls over UDP and TCP, same verdicts and rules, the trunks told by the addresses
/// inside. The HEPv2 run of the same calls gives the same verdicts per caller.
#[test]
fn hep_captures_replay_like_the_messages_they_carry() {
    let dir = root().join("testdata/pcap");
    let (plain, ps, _) = replay(&dir.join("hep3-plain.pcap"));
    let key = |r: &Record| {
        format!(
            "{} {} {} {} {:?} {:?} {:?} {:?}",
            r.kind, r.call_id, r.source, r.verdict, r.rule, r.code, r.trunk, r.caller
        )
    };
    assert_eq!(
        ps.calls, 24,
        "the recorded calls: 8 + 4 callers, over UDP and TCP"
    );
    assert!(ps.by_verdict.get("allow").is_some_and(|&n| n > 0));
    assert!(ps.by_verdict.get("reject").is_some_and(|&n| n > 0));

    let (v3, s3, _, net) = replay_net(&dir.join("hep3.pcap"));
    assert_eq!(s3.sip_messages, ps.sip_messages, "HEPv3: SIP messages");
    assert_eq!(s3.parse_errors, 0);
    assert_eq!(
        v3.iter().map(key).collect::<Vec<_>>(),
        plain.iter().map(key).collect::<Vec<_>>(),
        "HEPv3: records"
    );
    // Every packet was HEP, each opened as a tunnel.
    assert_eq!(net.decapsulated, s3.packets);
    assert_eq!(net.hep_sip, s3.sip_messages);
    assert_eq!(net.hep_damaged + net.hep_not_sip, 0);
    // The messages as they travelled and their HEP copies in one capture (taken on the
    // mirroring host, its HEP port not left out: QA 146) are read twice: said.
    let both = std::process::Command::new(env!("CARGO_BIN_EXE_sipfence"))
        .arg("replay")
        .args([dir.join("hep3-plain.pcap"), dir.join("hep3.pcap")])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&both.stderr);
    assert!(
        said.contains(&format!(
            "holds SIP both as it travelled ({} messages) and in HEP copies ({})",
            ps.sip_messages, s3.sip_messages
        )),
        "{said}"
    );
    for one in ["hep3-plain.pcap", "hep3.pcap"] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_sipfence"))
            .arg("replay")
            .arg(dir.join(one))
            .output()
            .unwrap();
        assert!(
            !String::from_utf8_lossy(&out.stderr).contains("both as it travelled"),
            "{one}"
        );
    }

    let per_caller = |recs: &[Record]| {
        let mut v: Vec<String> = recs
            .iter()
            .filter(|r| r.kind == "call")
            .map(|r| format!("{:?} {:?} {} {:?}", r.caller, r.trunk, r.verdict, r.rule))
            .collect();
        v.sort();
        v
    };
    let (v2, s2, _) = replay(&dir.join("hep2.pcap"));
    assert_eq!(s2.sip_messages, ps.sip_messages, "HEPv2: SIP messages");
    assert_eq!(
        per_caller(&v2),
        per_caller(&plain),
        "HEPv2: verdicts per caller"
    );

    // HEPv3 over TCP: one connection to the collector, the packets in its stream.
    let (vt, st, _, net) = replay_net(&dir.join("hep3-tcp.pcap"));
    assert_eq!(
        st.sip_messages, ps.sip_messages,
        "HEP over TCP: SIP messages"
    );
    assert_eq!(st.parse_errors, 0);
    assert_eq!(
        net.decapsulated, ps.sip_messages,
        "one HEP packet per message"
    );
    assert_eq!(net.hep_damaged + net.hep_not_sip + net.tcp_desync, 0);
    assert_eq!(
        per_caller(&vt),
        per_caller(&plain),
        "HEP over TCP: verdicts per caller"
    );
    // The records name the callers' own addresses, not the collector connection's.
    assert!(vt.iter().all(|r| !r.source.ends_with(":9060")));
}

/// SIP over SCTP (RFC 4168) and over WebSocket (RFC 7118): the captures' calls are in
/// expected.tsv and their message counts in counts.tsv (tshark's); here what the
/// transports themselves did. A retransmitted DATA chunk is the transport's copy, not a
/// second INVITE; a fragmented one is one message; a WebSocket capture that starts
/// after the HTTP upgrade still gives its calls.
#[test]
fn sctp_and_websocket_captures_replay() {
    let run = |file: &Path| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_sipfence"))
            .args(["replay", "--json"])
            .arg(file)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let last = text.lines().last().unwrap().to_string();
        let v: serde_json::Value = serde_json::from_str(&last).unwrap();
        v["summary"]["network"].clone()
    };
    let n = run(&root().join("testdata/pcap/sctp.pcap"));
    // 33 in DATA chunks and 10 in I-DATA ones (RFC 8260), as tshark counts them
    // (counts.tsv); one DATA message and two I-DATA ones come in fragments.
    assert_eq!(n["sctp_messages"], 43, "{n}");
    assert_eq!(n["sctp_reassembled"], 3, "{n}");
    assert_eq!(n["sctp_retransmitted"], 1, "{n}");
    assert_eq!(n["sctp_damaged"], 0, "{n}");
    let (recs, _, _) = replay(&root().join("testdata/pcap/sctp.pcap"));
    let invites = recs
        .iter()
        .filter(|r| r.call_id == "sctp-domestic-mobile@127.0.0.1" && r.kind == "call")
        .count();
    assert_eq!(invites, 1, "the retransmitted chunk is not a second call");

    let ws = root().join("testdata/pcap/websocket.pcapng");
    let n = run(&ws);
    assert_eq!(n["websocket_messages"], 30, "{n}");
    assert_eq!(n["tcp_desync"], 0, "{n}");
    // The first connection without its handshake and upgrade (packets 1-5).
    let dir = tempfile::tempdir().unwrap();
    let cut = dir.path().join("ws-midstream.pcap");
    let mut wr = sipfence::replay::pcapout::PcapWriter::create(&cut).unwrap();
    let mut seq = 0;
    sipfence::replay::capture::read(&ws, |p| {
        seq += 1;
        if seq > 5 {
            wr.write(p.linktype, p.ts_sec, p.ts_usec, p.data, p.orig_len)
                .unwrap();
        }
    })
    .unwrap();
    wr.finish().unwrap();
    let key = |r: &Record| {
        format!(
            "{} {} {} {:?} {:?}",
            r.kind, r.call_id, r.verdict, r.rule, r.trunk
        )
    };
    let (all, s_all, _) = replay(&ws);
    let (mid, s_mid, _) = replay(&cut);
    assert_eq!(s_mid.sip_messages, s_all.sip_messages);
    assert_eq!(
        mid.iter().map(key).collect::<Vec<_>>(),
        all.iter().map(key).collect::<Vec<_>>()
    );
}

/// SIP over WebSocket as a real server speaks it: Kamailio's websocket module relaying
/// six calls to the enterprise trunk's port (recorded by scripts/gen_ws_capture.sh).
/// Every message of every call is read (tshark's count is in counts.tsv) and each call
/// gets the verdict its caller earns on `ent-400`.
#[test]
fn websocket_capture_from_kamailio() {
    let file = root().join("testdata/pcap/websocket-kamailio.pcap");
    let (recs, s, end) = replay(&file);
    assert_eq!(end, End::Complete);
    assert_eq!((s.sip_messages, s.parse_errors, s.calls), (36, 0, 6));
    let got: Vec<(String, String, Option<u16>, String)> = recs
        .iter()
        .filter(|r| r.kind == "call")
        .map(|r| {
            (
                r.call_id.clone(),
                r.verdict.to_string(),
                r.code,
                r.rule.unwrap_or_default().to_string(),
            )
        })
        .collect();
    let want = [
        ("ent-whitelisted", "allow", None, ""),
        (
            "ent-not-whitelisted",
            "reject",
            Some(403),
            "enterprise-not-whitelisted",
        ),
        ("blacklist", "reject", Some(608), "blacklist"),
        ("ent-whitelisted-segment", "allow", None, ""),
        ("numbering-plan", "reject", Some(403), "numbering-plan"),
        ("ent-whitelisted-400", "allow", None, ""),
    ];
    let want: Vec<(String, String, Option<u16>, String)> = want
        .iter()
        .map(|(n, v, c, r)| {
            (
                format!("wsk-{n}@127.0.0.1"),
                v.to_string(),
                *c,
                r.to_string(),
            )
        })
        .collect();
    assert_eq!(got, want);
    assert!(
        recs.iter()
            .filter(|r| r.kind == "call")
            .all(|r| r.trunk.as_deref() == Some("ent-400"))
    );
}

/// An INVITE sent again over UDP (RFC 3261 timer A) is its call's retransmission: one
/// call, one record, the retransmissions counted apart. The same INVITE after its
/// transaction's lifetime, or another CSeq, is a new call.
#[test]
fn udp_retransmissions_are_not_new_calls() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("retrans.pcap");
    let (src, dst): (SocketAddr, SocketAddr) = (
        "127.0.0.1:5090".parse().unwrap(),
        "127.0.0.1:5060".parse().unwrap(),
    );
    let invite = |cseq: u32| {
        format!(
            "INVITE sip:+861012345678@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5090;branch=z9hG4bK-r{cseq}\r\nFrom: <sip:+442071234567@127.0.0.1>;tag=a\r\nTo: <sip:+861012345678@127.0.0.1>\r\nCall-ID: retrans-1\r\nCSeq: {cseq} INVITE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        )
    };
    // At 0, 0.5, 1.5 and 3.5 s (timer A doubling), then CSeq 2, then CSeq 1 again
    // after 40 s (past the 32 s a client retransmits for).
    let sent: Vec<(u32, String)> = [
        (0, 1),
        (500, 1),
        (1500, 1),
        (3500, 1),
        (4000, 2),
        (44_000, 1),
    ]
    .into_iter()
    .map(|(t, cseq)| (t, invite(cseq)))
    .collect();
    let datagrams: Vec<_> = sent
        .iter()
        .map(|(t, m)| (*t, src, dst, m.as_bytes()))
        .collect();
    udp_capture(&path, &datagrams);
    let (recs, s, _) = replay(&path);
    assert_eq!((s.calls, s.retransmissions), (3, 3), "{s:?}");
    assert_eq!(recs.len(), 3);
    assert!(recs.iter().all(|r| r.verdict == "allow"), "{recs:?}");
}

/// A capture that lost a call (cut by the snaplen here) changes the counted rules'
/// later verdicts: the gateway counted the call, replay cannot. Replay says so (QA 168:
/// exit status 0, nothing on stderr): the calls after the loss on a trunk with rate
/// limits are marked `after_loss`, the summary gives the first loss, stderr warns, and
/// the exit status is 3. A call lost on a trunk without counted rules marks nothing,
/// and a whole capture marks nothing and exits 0.
#[test]
fn a_capture_that_lost_a_call_says_which_verdicts_may_differ() {
    let dir = tempfile::tempdir().unwrap();
    let config = sipfence::policy::BUILTIN_CONFIG.replace(
        "max_calls_per_minute_per_caller = 600",
        "max_calls_per_minute_per_caller = 2",
    );
    let policy_path = dir.path().join("p.toml");
    std::fs::write(&policy_path, &config).unwrap();
    let p = Policy::from_str(&config, "p.toml", std::path::Path::new(".")).unwrap();
    let src: SocketAddr = "127.0.0.1:5090".parse().unwrap();
    let invite = |n: u32, port: u16| {
        format!(
            "INVITE sip:+861012345678@127.0.0.1:{port} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5090;branch=z9hG4bK-l{n}\r\nFrom: <sip:+8613912340001@127.0.0.1>;tag=a{n}\r\nTo: <sip:+861012345678@127.0.0.1>\r\nCall-ID: lost-{n}\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        )
    };
    // Four calls of one caller a second apart to the enterprise trunk (two a minute
    // per caller), the second cut to 100 bytes when `cut`.
    let write = |name: &str, port: u16, cut: bool| {
        let path = dir.path().join(name);
        let mut w = sipfence::replay::pcapout::PcapWriter::create(&path).unwrap();
        for n in 0..4u32 {
            let dst = SocketAddr::from(([127, 0, 0, 1], port));
            let pkt = sipfence::replay::pcapout::udp_packet(src, dst, invite(n, port).as_bytes());
            let kept = if cut && n == 1 { 100 } else { pkt.len() };
            w.write(
                sipfence::replay::pcapout::LINKTYPE_RAW,
                1_795_000_000 + n,
                0,
                &pkt[..kept],
                pkt.len() as u32,
            )
            .unwrap();
        }
        w.finish().unwrap();
        path
    };
    let run = |path: &Path| {
        let mut r = Replayer::new(&p, None);
        let mut recs = vec![];
        r.file(path, &mut Outputs::default(), &mut |rec| recs.push(rec))
            .expect("capture opens");
        (recs, r.summary.clone())
    };
    let (recs, s) = run(&write("whole.pcap", 5062, false));
    let shown: Vec<_> = recs.iter().map(|r| (r.verdict, r.after_loss)).collect();
    assert_eq!(
        shown,
        [
            ("allow", None),
            ("allow", None),
            ("reject", None),
            ("reject", None)
        ]
    );
    assert_eq!((s.first_loss_ms, s.calls_after_loss), (None, 0));
    // The summary counts them by trunk too (QA 168).
    let by_trunk: Vec<_> = s
        .by_trunk
        .iter()
        .map(|(t, v)| (t.as_str(), v.get("allow"), v.get("reject")))
        .collect();
    assert_eq!(by_trunk, [("ent-400", Some(&2), Some(&2))]);
    // The second call lost: the third is let through (the gateway refused it), and it
    // and the fourth are marked.
    let lost = write("lost.pcap", 5062, true);
    let (recs, s) = run(&lost);
    let at = 1_795_000_001_000;
    let shown: Vec<_> = recs.iter().map(|r| (r.verdict, r.after_loss)).collect();
    assert_eq!(
        shown,
        [("allow", None), ("allow", Some(at)), ("reject", Some(at))]
    );
    assert_eq!((s.first_loss_ms, s.calls_after_loss), (Some(at), 2));
    // The same through the command: warned, exit status 3, the marks in --json.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sipfence"))
        .args(["replay", "--json", "--config"])
        .arg(&policy_path)
        .arg(&lost)
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("the capture is incomplete (1 packets cut by the snaplen)")
            && stderr.contains("the 2 calls judged after the first loss"),
        "{stderr}"
    );
    assert_eq!(stdout.matches("\"after_loss\":").count(), 2, "{stdout}");
    assert!(
        stdout
            .contains("\"incomplete\":{\"calls_after_loss\":2,\"first_loss_ts_ms\":1795000001000,\"started_mid_traffic_ts_ms\":null}"),
        "{stdout}"
    );
    // On the international trunk (no counted rules) a loss marks no verdict, but the
    // capture is still incomplete.
    let (recs, s) = run(&write("intl.pcap", 5060, true));
    assert!(recs.iter().all(|r| r.after_loss.is_none()), "{recs:?}");
    assert_eq!((s.first_loss_ms.is_some(), s.calls_after_loss), (true, 0));
    // A capture started mid-traffic (QA 171): a TCP stream whose first data comes with
    // no SYN. The calls of two of its counted windows (a minute each: what the first
    // let through counts in the second, QA 172) are marked; with its SYN in the
    // capture, nothing is; with its SYN a moment after its first data (reordered), the
    // stream is read whole, and no call after the SYN is marked (QA 172: a hole, and
    // all marked).
    let tcp = |name: &str, syn: bool| {
        let path = dir.path().join(name);
        let mut w = sipfence::replay::pcapout::PcapWriter::create(&path).unwrap();
        let mut seq = 1000u32;
        let mut packets = vec![];
        if syn {
            packets.push(tcp_lo(40000, 5062, seq - 1, 0x02, &[]));
        }
        for n in [0u32, 1, 2, 3, 130] {
            let m = invite(n, 5062)
                .replace("SIP/2.0/UDP 127.0.0.1:5090", "SIP/2.0/TCP 127.0.0.1:40000");
            packets.push(tcp_lo(40000, 5062, seq, 0x18, m.as_bytes()));
            seq += m.len() as u32;
        }
        let times = [0u32, 1, 2, 3, 4, 130];
        let skip = usize::from(!syn);
        for (p, t) in packets.iter().zip(&times[skip..]) {
            w.write(101, 1_795_000_000 + t, 0, p, p.len() as u32)
                .unwrap();
        }
        w.finish().unwrap();
        path
    };
    let (recs, s) = run(&tcp("joined.pcap", false));
    let start = 1_795_000_001_000;
    let marks: Vec<_> = recs.iter().map(|r| r.after_loss).collect();
    assert_eq!(
        marks,
        [Some(start), Some(start), Some(start), Some(start), None],
        "{recs:?}"
    );
    assert_eq!((s.started_mid_ms, s.calls_after_loss), (Some(start), 4));
    let (recs, s) = run(&tcp("whole-tcp.pcap", true));
    assert!(recs.iter().all(|r| r.after_loss.is_none()), "{recs:?}");
    assert_eq!((s.started_mid_ms, s.calls_after_loss), (None, 0));
    let whole = recs;
    // The SYN written after the first data: the first two packets swapped.
    let swapped = dir.path().join("syn-late.pcap");
    let mut w = sipfence::replay::pcapout::PcapWriter::create(&swapped).unwrap();
    let mut packets = vec![];
    sipfence::replay::capture::read(&dir.path().join("whole-tcp.pcap"), |p| {
        packets.push((p.linktype, p.ts_sec, p.ts_usec, p.data.to_vec(), p.orig_len));
    })
    .unwrap();
    for i in [1, 0, 2, 3, 4, 5] {
        let (link, sec, usec, data, orig) = &packets[i];
        w.write(*link, *sec, *usec, data, *orig).unwrap();
    }
    w.finish().unwrap();
    let (recs, s) = run(&swapped);
    let verdicts = |r: &[Record]| r.iter().map(|r| r.verdict).collect::<Vec<_>>();
    assert_eq!(verdicts(&recs), verdicts(&whole));
    // The call judged before its SYN came keeps its mark; none after it has one.
    assert!(recs[1..].iter().all(|r| r.after_loss.is_none()), "{recs:?}");
    assert_eq!(s.started_mid_ms, None);
}

/// A trunk listening on a wildcard address (`udp:0.0.0.0:5060`, as production policies
/// do) takes a capture's messages to any host's port 5060, as the live socket does; a
/// capture where both ends use 5060 is judged, not taken for sipfence's own output. The
/// same capture through a policy naming the addresses gives the same calls.
#[test]
fn a_wildcard_listen_address_takes_the_capture_hosts_traffic() {
    let Some(shared) = common::shared_dir() else {
        return;
    };
    let cap = shared.join("corpus/pcap/zeek-wireshark.pcap");
    let run = |listen: &str| {
        let p = Policy::from_str(
            &format!(
                "[[trunk]]\nname = \"ic\"\nrole = \"interconnect\"\nlisten = [{listen}]\nsources = [\"0.0.0.0/0\", \"::/0\"]\n"
            ),
            "p.toml",
            std::path::Path::new("."),
        )
        .unwrap();
        let mut r = Replayer::new(&p, None);
        let mut recs = vec![];
        r.file(&cap, &mut Outputs::default(), &mut |rec| recs.push(rec))
            .expect("capture opens");
        (recs.len(), r.summary.calls, r.summary.retransmissions)
    };
    let wildcard = run("\"udp:0.0.0.0:5060\", \"tcp:0.0.0.0:5060\"");
    assert!(wildcard.1 > 0, "{wildcard:?}");
    // Every address the capture's INVITEs were sent to, named.
    let mut dsts = std::collections::BTreeSet::new();
    let text = std::process::Command::new("tshark")
        .args([
            "-r",
            cap.to_str().unwrap(),
            "-Y",
            "sip.Method == \"INVITE\"",
            "-T",
            "fields",
            "-e",
            "ip.dst",
        ])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    for ip in text.lines().filter(|l| !l.is_empty()) {
        dsts.insert(format!("\"udp:{ip}:5060\""));
    }
    if dsts.is_empty() {
        assert!(
            !common::tools_required(),
            "tshark found no address in the capture (missing? scripts/deps.sh installs it)"
        );
        eprintln!("note: tshark missing; named-address comparison skipped");
        return;
    }
    let named = run(&dsts.into_iter().collect::<Vec<_>>().join(", "));
    assert_eq!(wildcard, named);
    eprintln!("records, calls, retransmissions: {wildcard:?}");
}

/// Replay knows the dialogs the capture shows answered, as the proxy does: a re-INVITE
/// within a call answered in the capture passes unjudged, while an INVITE whose To-tag
/// names no dialog the capture answered is judged as a call (and a domestic caller on
/// the international gateway refused), the same in the live proxy.
#[test]
fn an_invite_naming_an_unanswered_dialog_is_judged() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dialogs.pcap");
    let (peer, us, core): (SocketAddr, SocketAddr, SocketAddr) = (
        "127.0.0.1:5090".parse().unwrap(),
        "127.0.0.1:5060".parse().unwrap(),
        "127.0.0.1:5080".parse().unwrap(),
    );
    let req = |first: &str, cid: &str, from: &str, to_tag: &str, cseq: &str| {
        let to = if to_tag.is_empty() {
            String::new()
        } else {
            format!(";tag={to_tag}")
        };
        let n = cseq.split(' ').next().unwrap_or("1");
        format!(
            "{first} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5090;branch=z9hG4bK-{cid}-{n}\r\nFrom: <sip:{from}@127.0.0.1>;tag=caller\r\nTo: <sip:+861012345678@127.0.0.1>{to}\r\nCall-ID: {cid}\r\nCSeq: {cseq}\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        )
    };
    // The core's answer, as it comes back to sipfence (our Via on top).
    let ok = |cid: &str| {
        format!(
            "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKsf0123456789abcdef\r\nVia: SIP/2.0/UDP 127.0.0.1:5090;branch=z9hG4bK-{cid}-1\r\nFrom: <sip:+442071234567@127.0.0.1>;tag=caller\r\nTo: <sip:+861012345678@127.0.0.1>;tag=callee\r\nCall-ID: {cid}\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
        )
    };
    let first = "INVITE sip:+861012345678@127.0.0.1";
    let messages = [
        // A foreign caller's call, answered; its session refresh shows only a +86 From
        // (the generic number the call was let through with).
        (peer, us, req(first, "d1", "+442071234567", "", "1 INVITE")),
        (core, us, ok("d1")),
        (
            peer,
            us,
            req(first, "d1", "+8613812345678", "callee", "2 INVITE"),
        ),
        // The same +86 caller with an invented To-tag and no answered dialog.
        (
            peer,
            us,
            req(first, "d2", "+8613812345678", "made-up", "1 INVITE"),
        ),
    ];
    let datagrams: Vec<_> = messages
        .iter()
        .enumerate()
        .map(|(t, (src, dst, m))| (t as u32 * 1000, *src, *dst, m.as_bytes()))
        .collect();
    udp_capture(&path, &datagrams);
    let (recs, s, _) = replay(&path);
    assert_eq!(s.calls, 2, "the first INVITE and the invented one: {s:?}");
    let by_call: Vec<(&str, &str, Option<&str>)> = recs
        .iter()
        .map(|r| (r.call_id.as_str(), r.verdict, r.dialog))
        .collect();
    assert_eq!(
        by_call,
        [("d1", "allow", None), ("d2", "reject", Some("unknown"))],
        "{recs:?}"
    );
}

/// The retry of a call the core challenged is one call with that call, in the summary,
/// the records and the table (QA 78: the table showed two identical calls). The first
/// call challenged is counted twice on a trunk without rate rules (the core had not
/// asked for retries lately), the next one once.
#[test]
fn a_retry_the_core_asked_for_is_one_call_in_replay() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("challenged.pcap");
    let (peer, us, core): (SocketAddr, SocketAddr, SocketAddr) = (
        "127.0.0.1:5090".parse().unwrap(),
        "127.0.0.1:5060".parse().unwrap(),
        "127.0.0.1:5080".parse().unwrap(),
    );
    let invite = |cid: &str, n: u32| {
        format!(
            "INVITE sip:+861012345678@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5090;branch=z9hG4bK-{cid}-{n}\r\nFrom: <sip:+442071234567@127.0.0.1>;tag=caller-{cid}\r\nTo: <sip:+861012345678@127.0.0.1>\r\nCall-ID: {cid}\r\nCSeq: {n} INVITE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        )
    };
    let challenge = |cid: &str| {
        format!(
            "SIP/2.0 407 Proxy Authentication Required\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKsf0123456789abcdef\r\nVia: SIP/2.0/UDP 127.0.0.1:5090;branch=z9hG4bK-{cid}-1\r\nFrom: <sip:+442071234567@127.0.0.1>;tag=caller-{cid}\r\nTo: <sip:+861012345678@127.0.0.1>;tag=core\r\nCall-ID: {cid}\r\nCSeq: 1 INVITE\r\nProxy-Authenticate: Digest realm=\"core\", nonce=\"n1\"\r\nContent-Length: 0\r\n\r\n"
        )
    };
    let messages = [
        (peer, us, invite("c1", 1)),
        (core, us, challenge("c1")),
        (peer, us, invite("c1", 2)),
        (peer, us, invite("c2", 1)),
        (core, us, challenge("c2")),
        (peer, us, invite("c2", 2)),
    ];
    let datagrams: Vec<_> = messages
        .iter()
        .enumerate()
        .map(|(t, (src, dst, m))| (t as u32 * 100, *src, *dst, m.as_bytes()))
        .collect();
    udp_capture(&path, &datagrams);
    let (recs, s, _) = replay(&path);
    assert_eq!((s.calls, s.core_retries), (3, 1), "{s:?}");
    let seen: Vec<(&str, &str, Option<&str>)> = recs
        .iter()
        .map(|r| (r.call_id.as_str(), r.verdict, r.retry))
        .collect();
    assert_eq!(
        seen,
        [
            ("c1", "allow", None),
            ("c1", "allow", None),
            ("c2", "allow", None),
            ("c2", "allow", Some("core-asked"))
        ]
    );
    // The table says which line is the retry.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sipfence"))
        .arg("replay")
        .arg(&path)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let c2: Vec<&str> = text.lines().filter(|l| l.contains(" c2 ")).collect();
    assert_eq!(c2.len(), 2, "{text}");
    assert!(!c2[0].contains(sipfence::record::RETRY_SHOWN), "{text}");
    assert!(c2[1].ends_with(sipfence::record::RETRY_SHOWN), "{text}");
    assert!(
        text.contains("calls 3  retransmitted INVITEs 0  retries the core asked for 1"),
        "{text}"
    );
}

/// One pcapng block (little-endian section): type, length, body padded to four bytes.
fn ng_block(kind: u32, body: &[u8]) -> Vec<u8> {
    let mut b = body.to_vec();
    b.resize(b.len().next_multiple_of(4), 0);
    let len = (12 + b.len()) as u32;
    let mut out = kind.to_le_bytes().to_vec();
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&b);
    out.extend_from_slice(&len.to_le_bytes());
    out
}

/// A pcapng file: a section header, one interface of `linktype` with `if_tsresol`
/// `tsresol`, then `blocks`.
fn pcapng(linktype: u16, tsresol: u8, blocks: &[Vec<u8>]) -> Vec<u8> {
    let mut shb = 0x1a2b_3c4du32.to_le_bytes().to_vec();
    shb.extend_from_slice(&[1, 0, 0, 0]);
    shb.extend_from_slice(&(-1i64).to_le_bytes());
    let mut idb = linktype.to_le_bytes().to_vec();
    idb.extend_from_slice(&[0, 0]);
    idb.extend_from_slice(&262_144u32.to_le_bytes());
    // if_tsresol (9), one byte, padded; then the end of options.
    idb.extend_from_slice(&[9, 0, 1, 0, tsresol, 0, 0, 0, 0, 0, 0, 0]);
    let mut f = ng_block(0x0a0d_0d0a, &shb);
    f.extend(ng_block(1, &idb));
    for b in blocks {
        f.extend_from_slice(b);
    }
    f
}

/// An Enhanced Packet Block (type 6), or the deprecated Packet Block (type 2).
fn ng_packet(kind: u32, if_id: u32, ticks: u64, data: &[u8]) -> Vec<u8> {
    let mut b = if kind == 2 {
        let mut b = (if_id as u16).to_le_bytes().to_vec();
        b.extend_from_slice(&[0, 0]);
        b
    } else {
        if_id.to_le_bytes().to_vec()
    };
    b.extend_from_slice(&((ticks >> 32) as u32).to_le_bytes());
    b.extend_from_slice(&(ticks as u32).to_le_bytes());
    b.extend_from_slice(&(data.len() as u32).to_le_bytes());
    b.extend_from_slice(&(data.len() as u32).to_le_bytes());
    b.extend_from_slice(data);
    ng_block(kind, &b)
}

/// Capture forms seen in the field that a first reader misses: a VLAN tag inside a
/// Linux cooked capture (`tcpdump -i any` on a host with VLAN interfaces), pcapng
/// timestamps in powers of two, the deprecated Packet Block, a packet block naming an
/// interface its section never described (damaged, exit 2, as Wireshark says), and
/// packets cut by the snaplen (said in the summary).
#[test]
fn capture_forms_beyond_the_corpus() {
    let dir = tempfile::tempdir().unwrap();
    let invite = b"INVITE sip:+861012345678@192.0.2.2 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1:5070;branch=z9hG4bK-forms\r\nFrom: <sip:+442071234567@192.0.2.1>;tag=a\r\nTo: <sip:+861012345678@192.0.2.2>\r\nCall-ID: forms-1\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n";
    let ip = ipv4(17, &udp(5070, 5060, invite));
    let write = |name: &str, bytes: &[u8]| {
        let p = dir.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    };
    // SLL v1: packet type, ARPHRD, address length and address, then protocol 0x8100,
    // the tag (VLAN 100) and the inner ethertype.
    let mut sll = vec![0, 0, 0, 1, 0, 6, 2, 0, 0, 0, 0, 1, 0, 0, 0x81, 0x00];
    sll.extend_from_slice(&[0x00, 0x64, 0x08, 0x00]);
    sll.extend_from_slice(&ip);
    let path = dir.path().join("sll-vlan.pcap");
    let mut w = sipfence::replay::pcapout::PcapWriter::create(&path).unwrap();
    w.write(113, 1_764_547_201, 0, &sll, sll.len() as u32)
        .unwrap();
    w.finish().unwrap();
    let (recs, s, end, net) = replay_net(&path);
    assert_eq!((s.calls, net.non_ip, &end), (1, 0, &End::Complete), "{s:?}");
    assert_eq!(recs[0].call_id, "forms-1");

    // if_tsresol 0x94: ticks of 2^-20 s.
    let at = 1_764_547_201u64;
    let f = pcapng(
        1,
        0x94,
        &[ng_packet(6, 0, at << 20, &ethernet(0x0800, &ip))],
    );
    let (recs, s, _) = replay(&write("pow2.pcapng", &f));
    assert_eq!(s.calls, 1);
    assert_eq!(recs[0].ts_ms, at * 1000, "{recs:?}");
    // Microseconds (6) and nanoseconds (9), as before.
    for (r, ticks) in [
        (6u8, at * 1_000_000 + 500_000),
        (9, at * 1_000_000_000 + 500_000_000),
    ] {
        let f = pcapng(1, r, &[ng_packet(6, 0, ticks, &ethernet(0x0800, &ip))]);
        let (recs, _, _) = replay(&write("dec.pcapng", &f));
        assert_eq!(recs[0].ts_ms, at * 1000 + 500, "tsresol {r}");
    }

    // The deprecated Packet Block (type 2).
    let f = pcapng(
        1,
        6,
        &[ng_packet(2, 0, at * 1_000_000, &ethernet(0x0800, &ip))],
    );
    let (recs, s, end) = replay(&write("pb.pcapng", &f));
    assert_eq!((s.calls, end), (1, End::Complete));
    assert_eq!(recs[0].ts_ms, at * 1000);

    // A packet of interface 5 in a section that describes one: damaged there; what
    // came before it was replayed.
    let f = pcapng(
        1,
        6,
        &[
            ng_packet(6, 0, at * 1_000_000, &ethernet(0x0800, &ip)),
            ng_packet(6, 5, at * 1_000_000, &ethernet(0x0800, &ip)),
        ],
    );
    let (_, s, end) = replay(&write("bad-if.pcapng", &f));
    assert_eq!(s.calls, 1);
    match end {
        End::Damaged { reason, .. } => assert!(reason.contains("interface 5"), "{reason}"),
        End::Complete => panic!("an undescribed interface must be reported"),
    }

    // A section of major version 2 (there is none; libpcap refuses it): damage, not a
    // guess at its layout (QA 46).
    let mut f = pcapng(
        1,
        6,
        &[ng_packet(6, 0, at * 1_000_000, &ethernet(0x0800, &ip))],
    );
    f[12] = 2;
    let (_, s, end) = replay(&write("v2.pcapng", &f));
    assert_eq!(s.calls, 0);
    match end {
        End::Damaged { reason, .. } => assert!(reason.contains("version 2.0"), "{reason}"),
        End::Complete => panic!("a pcapng 2.x section must be reported"),
    }

    // A snaplen of 100 bytes: the INVITE is cut, and the summary says why.
    let framed = ethernet(0x0800, &ip);
    let path = dir.path().join("snaplen.pcap");
    let mut w = sipfence::replay::pcapout::PcapWriter::create(&path).unwrap();
    w.write(1, at as u32, 0, &framed[..100], framed.len() as u32)
        .unwrap();
    w.finish().unwrap();
    let (_, s, _, net) = replay_net(&path);
    assert_eq!((s.calls, net.snaplen_cut), (0, 1), "{s:?}");

    // A pcap whose link-type field carries more than the link type in its top bits: an
    // FCS length, valid (0x04000000) or not, ends no capture (libpcap and tshark read
    // the link type from the low 16 bits).
    let pcap = |field: u32, frame: &[u8]| {
        let mut b = vec![0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0];
        b.extend_from_slice(&[0; 8]);
        b.extend_from_slice(&65_535u32.to_le_bytes());
        b.extend_from_slice(&field.to_le_bytes());
        for v in [at as u32, 0, frame.len() as u32, frame.len() as u32] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        b.extend_from_slice(frame);
        b
    };
    let mut with_fcs = ethernet(0x0800, &ip);
    with_fcs.extend_from_slice(&[0xde, 0xad, 0xbe, 0xef]);
    for field in [0x2400_0001u32, 0x2800_0001, 0x0000_0001] {
        let (recs, s, end, net) = replay_net(&write("fcs.pcap", &pcap(field, &with_fcs)));
        assert_eq!((s.calls, &end), (1, &End::Complete), "{field:#x}: {s:?}");
        assert_eq!(recs[0].call_id, "forms-1");
        // The FCS cut off is no snaplen's cut.
        assert_eq!(net.snaplen_cut, 0, "{field:#x}");
    }

    // A Simple Packet Block has no time of its own: it is given the time of the packet
    // before it, not 1970's. (A second INVITE, another call.)
    let invite2 = String::from_utf8_lossy(invite).replace("forms-1", "forms-2");
    let ip2 = ipv4(17, &udp(5070, 5060, invite2.as_bytes()));
    let frame2 = ethernet(0x0800, &ip2);
    let mut spb = (frame2.len() as u32).to_le_bytes().to_vec();
    spb.extend_from_slice(&frame2);
    let f = pcapng(
        1,
        6,
        &[
            ng_packet(6, 0, at * 1_000_000, &ethernet(0x0800, &ip)),
            ng_block(3, &spb),
        ],
    );
    let (recs, s, end) = replay(&write("spb.pcapng", &f));
    assert_eq!((s.calls, end), (2, End::Complete));
    assert_eq!(recs[1].call_id, "forms-2");
    assert_eq!(recs[1].ts_ms, at * 1000, "{recs:?}");

    // A pcapng file cut inside its section header block is a damaged capture, as a
    // pcap cut inside its header is (exit status 2), not "not a capture".
    let f = pcapng(
        1,
        6,
        &[ng_packet(6, 0, at * 1_000_000, &ethernet(0x0800, &ip))],
    );
    for cut in [12, 20, 27] {
        let (_, s, end) = replay(&write("cut.pcapng", &f[..cut]));
        assert_eq!(s.calls, 0);
        match end {
            End::Damaged { offset, reason } => {
                assert_eq!(offset, 0);
                assert!(reason.contains("cut short"), "{reason}");
            }
            End::Complete => panic!("a pcapng cut at {cut} must be reported damaged"),
        }
    }
}

/// IPv4 from 127.0.0.1 to 127.0.0.1 (the built-in policy's international trunk), with
/// fragment fields.
fn ipv4_lo(proto: u8, id: u16, frag: u16, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0x45, 0];
    p.extend_from_slice(&((20 + payload.len()) as u16).to_be_bytes());
    p.extend_from_slice(&id.to_be_bytes());
    p.extend_from_slice(&frag.to_be_bytes());
    p.extend_from_slice(&[64, proto, 0, 0, 127, 0, 0, 1, 127, 0, 0, 1]);
    p.extend_from_slice(payload);
    p
}

fn tcp_lo(sport: u16, dport: u16, seq: u32, flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut t = sport.to_be_bytes().to_vec();
    t.extend_from_slice(&dport.to_be_bytes());
    t.extend_from_slice(&seq.to_be_bytes());
    t.extend_from_slice(&0u32.to_be_bytes());
    t.extend_from_slice(&[0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
    t.extend_from_slice(payload);
    ipv4_lo(6, 0, 0x4000, &t)
}

/// The split outputs hold every packet that carried a message, so that they replay
/// (and open in Wireshark) as calls again: all the fragments of a fragmented datagram,
/// all the segments of a message split over TCP segments, a segment carrying a blocked
/// and an allowed message in both files; and with a `.pcapng` name, packets of every
/// link type of a multi-interface capture.
#[test]
fn split_outputs_keep_every_packet_of_a_message() {
    let dir = tempfile::tempdir().unwrap();
    let invite = |id: &str, caller: &str| {
        format!(
            "INVITE sip:+861012345678@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5090;branch=z9hG4bK-{id}\r\nFrom: <sip:{caller}@127.0.0.1>;tag=a\r\nTo: <sip:+861012345678@127.0.0.1>\r\nCall-ID: {id}\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        )
        .into_bytes()
    };
    let (blocked, allowed) = (
        invite("b1", "+8613812345678"),
        invite("a1", "+442071234567"),
    );
    let split = |name: &str, packets: &[(i32, Vec<u8>)]| {
        let input = dir.path().join(format!("{name}.pcapng"));
        let mut w = sipfence::replay::pcapout::PcapWriter::create(&input).unwrap();
        // A millisecond apart: a datagram's fragments leave its host together (one
        // waiting a second for the rest is taken for lost, QA 168).
        for (t, (link, p)) in packets.iter().enumerate() {
            w.write(*link, 1_795_000_000, 1000 * t as u32, p, p.len() as u32)
                .unwrap();
        }
        w.finish().unwrap();
        let (b, a) = (
            dir.path().join(format!("{name}-blocked.pcapng")),
            dir.path().join(format!("{name}-allowed.pcapng")),
        );
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_sipfence"))
            .args(["replay", "--write-blocked", b.to_str().unwrap()])
            .args([
                "--write-allowed",
                a.to_str().unwrap(),
                input.to_str().unwrap(),
            ])
            .output()
            .unwrap();
        // 3: a stream here without its handshake is a capture started mid-traffic.
        assert!(
            matches!(out.status.code(), Some(0 | 3)),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let calls = |p: &Path| {
            let (recs, s, _) = replay(p);
            let mut v: Vec<(String, &'static str)> = recs
                .into_iter()
                .filter(|r| r.kind == "call")
                .map(|r| (r.call_id, r.verdict))
                .collect();
            v.sort();
            (v, s.packets)
        };
        let ((b, nb), (a, na)) = (calls(&b), calls(&a));
        (b, a, nb, na)
    };
    let want = |v: &[(&str, &'static str)]| {
        v.iter()
            .map(|(c, v)| (c.to_string(), *v))
            .collect::<Vec<_>>()
    };

    // Each INVITE in three IPv4 fragments (offsets in 8-byte units), interleaved.
    let mut packets = vec![];
    for (k, m) in [&blocked, &allowed].into_iter().enumerate() {
        let mut u = 5090u16.to_be_bytes().to_vec();
        u.extend_from_slice(&5060u16.to_be_bytes());
        u.extend_from_slice(&((8 + m.len()) as u16).to_be_bytes());
        u.extend_from_slice(&[0, 0]);
        u.extend_from_slice(m);
        let cuts = [0, 96, 192, u.len()];
        for i in 0..3 {
            let more = if i < 2 { 0x2000 } else { 0 };
            let f = ipv4_lo(
                17,
                7 + k as u16,
                more | (cuts[i] / 8) as u16,
                &u[cuts[i]..cuts[i + 1]],
            );
            packets.push((101, f));
        }
    }
    packets.swap(2, 3);
    let (b, a, nb, na) = split("fragments", &packets);
    assert_eq!((nb, na), (3, 3));
    assert_eq!(b, want(&[("b1", "reject")]));
    assert_eq!(a, want(&[("a1", "allow")]));

    // Over TCP: the blocked INVITE in three segments, the third also carrying the
    // allowed INVITE's first half, then its second half.
    let mut stream = blocked.clone();
    stream.extend_from_slice(&allowed);
    let cuts = [0, 100, 200, blocked.len() + 80, stream.len()];
    let mut packets = vec![(101, tcp_lo(40000, 5060, 999, 0x02, &[]))];
    for i in 0..4 {
        packets.push((
            101,
            tcp_lo(
                40000,
                5060,
                1000 + cuts[i] as u32,
                0x18,
                &stream[cuts[i]..cuts[i + 1]],
            ),
        ));
    }
    let (b, a, nb, na) = split("tcp", &packets);
    assert_eq!(b, want(&[("b1", "reject")]));
    assert_eq!(a, want(&[("a1", "allow")]));
    // The handshake is not copied; the segment both messages share is in each file.
    assert_eq!((nb, na), (3, 2));
    // A segment with a whole allowed INVITE and the start of a blocked one, then one
    // with the rest and another allowed INVITE: the first segment once in each file.
    let a3 = invite("a3", "+12125550199");
    let mut stream = allowed.clone();
    stream.extend_from_slice(&blocked);
    stream.extend_from_slice(&a3);
    let cut = allowed.len() + 50;
    let packets = [
        (101, tcp_lo(40001, 5060, 2000, 0x18, &stream[..cut])),
        (
            101,
            tcp_lo(40001, 5060, 2000 + cut as u32, 0x18, &stream[cut..]),
        ),
    ];
    let (b, a, nb, na) = split("shared", &packets);
    // Each segment carries parts of blocked and allowed messages: both files hold both
    // (as they must, for the blocked call to replay whole), each segment once.
    let all = want(&[("a1", "allow"), ("a3", "allow"), ("b1", "reject")]);
    assert_eq!((b, a), (all.clone(), all));
    assert_eq!((nb, na), (2, 2), "no segment twice in a file");

    // Two interfaces of two link types: raw IP and Ethernet.
    let udp_of = |m: &[u8]| {
        let mut u = 5090u16.to_be_bytes().to_vec();
        u.extend_from_slice(&5060u16.to_be_bytes());
        u.extend_from_slice(&((8 + m.len()) as u16).to_be_bytes());
        u.extend_from_slice(&[0, 0]);
        u.extend_from_slice(m);
        ipv4_lo(17, 0, 0x4000, &u)
    };
    let packets = [
        (101, udp_of(&invite("b2", "+8613812345679"))),
        (
            1,
            ethernet(0x0800, &udp_of(&invite("b3", "+8613812345670"))),
        ),
        (1, ethernet(0x0800, &udp_of(&invite("a2", "+12125550123")))),
    ];
    let (b, a, _, _) = split("links", &packets);
    assert_eq!(b, want(&[("b2", "reject"), ("b3", "reject")]));
    assert_eq!(a, want(&[("a2", "allow")]));
}

/// Requests sipfence relays from the core to a trunk peer over a TCP connection it
/// opened leave from an ephemeral port, no listen address: replay still tells them as
/// its own output by the Via on top (ours, naming this host, sent from it) and judges
/// nothing, as the live proxy judged nothing; a request that merely claims our Via, from
/// another host, is judged.
#[test]
fn our_relayed_requests_over_tcp_are_not_judged_again() {
    let dir = tempfile::tempdir().unwrap();
    let reinvite = |via_host: &str| {
        format!(
            "INVITE sip:peer@127.0.0.2:5090;transport=tcp SIP/2.0\r\nVia: SIP/2.0/TCP {via_host}:5060;branch=z9hG4bKsf0123456789abcdef\r\nVia: SIP/2.0/UDP 127.0.0.1:5080;branch=z9hG4bK-core-1\r\nFrom: <sip:4008001234@127.0.0.1>;tag=core\r\nTo: <sip:+8613812345678@127.0.0.2>;tag=peer\r\nCall-ID: relayed-1\r\nCSeq: 5 INVITE\r\nMax-Forwards: 69\r\nContent-Length: 0\r\n\r\n"
        )
        .into_bytes()
    };
    let path = dir.path().join("relayed.pcap");
    let mut w = sipfence::replay::pcapout::PcapWriter::create(&path).unwrap();
    // Ours: from 127.0.0.1:60090 (a connection sipfence opened), our Via naming 127.0.0.1.
    let ours = tcp_lo(60090, 5090, 1, 0x18, &reinvite("127.0.0.1"));
    w.write(101, 1_795_000_000, 0, &ours, ours.len() as u32)
        .unwrap();
    // The same bytes from another host on that connection's ports: not ours.
    let mut forged = ours.clone();
    forged[15] = 9; // source 127.0.0.9
    w.write(101, 1_795_000_001, 0, &forged, forged.len() as u32)
        .unwrap();
    // Ours to the core (the built-in next hop, 127.0.0.1:5080) from another address of
    // the host, the one the system chose for the connection (QA 127: one connection
    // per next hop carries every trunk's requests, whichever listener its Via names).
    let mut to_core = tcp_lo(60091, 5080, 1, 0x18, &reinvite("127.0.0.1"));
    to_core[15] = 7;
    w.write(101, 1_795_000_002, 0, &to_core, to_core.len() as u32)
        .unwrap();
    w.finish().unwrap();
    let (recs, s, _) = replay(&path);
    assert_eq!(recs.len(), 1, "{recs:?}");
    assert_eq!(recs[0].source, "127.0.0.9:60090");
    assert_eq!(s.calls_elsewhere, 0, "{s:?}");
}

/// QA 35: an out-of-order TCP segment sent again with other bytes (another caller) is
/// read as a Linux receiver reads it, the copy queued first, and counted; the verdict
/// follows that copy either way round. A packet with IPv4 total length 0 (captured
/// before segmentation offload cut it up) is read to the end of its frame.
#[test]
fn tcp_overlaps_read_as_the_receiver_and_tso_packets() {
    let dir = tempfile::tempdir().unwrap();
    let invite = |caller: &str| {
        format!(
            "INVITE sip:+861012345678@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:5090;branch=z9hG4bK-ov\r\nCall-ID: ov\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\nTo: <sip:+861012345678@127.0.0.1>\r\nFrom: <sip:{caller}@127.0.0.1>;tag=a\r\nContent-Length: 0\r\n\r\n"
        )
        .into_bytes()
    };
    // Blacklisted in the built-in policy, and an own roamer it lets in.
    let (bad, good) = (invite("+8613800000001"), invite("+8613900000000"));
    let cut = bad.len() - 60;
    assert_eq!(bad[..cut], good[..cut]);
    let write = |name: &str, packets: &[Vec<u8>]| {
        let path = dir.path().join(name);
        let mut w = sipfence::replay::pcapout::PcapWriter::create(&path).unwrap();
        for (t, p) in packets.iter().enumerate() {
            w.write(101, 1_795_000_000 + t as u32, 0, p, p.len() as u32)
                .unwrap();
        }
        w.finish().unwrap();
        path
    };
    for (first, second, verdict) in [(&bad, &good, "reject"), (&good, &bad, "allow")] {
        let packets = [
            tcp_lo(5090, 5060, 1000, 0x02, b""),
            tcp_lo(5090, 5060, 1001 + cut as u32, 0x18, &first[cut..]),
            tcp_lo(5090, 5060, 1001 + cut as u32, 0x18, &second[cut..]),
            tcp_lo(5090, 5060, 1001, 0x18, &first[..cut]),
        ];
        let path = write("overlap.pcap", &packets);
        let (recs, _, _, net) = replay_net(&path);
        let calls: Vec<_> = recs.iter().filter(|r| r.kind == "call").collect();
        assert_eq!(calls.len(), 1, "{recs:?}");
        assert_eq!(calls[0].verdict, verdict, "{:?}", calls[0]);
        assert_eq!(net.tcp_overlaps_conflicting, 1);
    }
    // QA 36: the tail carrying FIN ahead of the head: the stream ends after the hole
    // fills, with the call read (a Linux receiver reads it so).
    let packets = [
        tcp_lo(5090, 5060, 1000, 0x02, b""),
        tcp_lo(5090, 5060, 1001 + cut as u32, 0x19, &bad[cut..]),
        tcp_lo(5090, 5060, 1001, 0x18, &bad[..cut]),
    ];
    let (recs, _, _, net) = replay_net(&write("fin.pcap", &packets));
    let calls: Vec<_> = recs.iter().filter(|r| r.kind == "call").collect();
    assert_eq!(calls.len(), 1, "{recs:?}");
    assert_eq!(calls[0].verdict, "reject");
    assert_eq!(net.tcp_gaps, 0);
    // The same bytes again are no conflict.
    let packets = [
        tcp_lo(5090, 5060, 1000, 0x02, b""),
        tcp_lo(5090, 5060, 1001 + cut as u32, 0x18, &bad[cut..]),
        tcp_lo(5090, 5060, 1001 + cut as u32, 0x18, &bad[cut..]),
        tcp_lo(5090, 5060, 1001, 0x18, &bad[..cut]),
    ];
    let (recs, _, _, net) = replay_net(&write("same.pcap", &packets));
    assert_eq!(recs.iter().filter(|r| r.kind == "call").count(), 1);
    assert_eq!(net.tcp_overlaps_conflicting, 0);

    // TSO: total length 0, over UDP and TCP.
    let tso = |mut p: Vec<u8>| {
        p[2] = 0;
        p[3] = 0;
        p
    };
    let mut u = 5090u16.to_be_bytes().to_vec();
    u.extend_from_slice(&5060u16.to_be_bytes());
    u.extend_from_slice(&((8 + bad.len()) as u16).to_be_bytes());
    u.extend_from_slice(&[0, 0]);
    u.extend_from_slice(&bad);
    let packets = [
        tso(ipv4_lo(17, 1, 0x4000, &u)),
        tcp_lo(5091, 5060, 5000, 0x02, b""),
        tso(tcp_lo(
            5091,
            5060,
            5001,
            0x18,
            &[&good[..], &good[..]].concat(),
        )),
    ];
    let (recs, s, _, _) = replay_net(&write("tso.pcap", &packets));
    assert_eq!(s.sip_messages, 3, "{recs:?}");
    let verdicts: Vec<_> = recs.iter().map(|r| r.verdict).collect();
    assert!(
        verdicts.contains(&"reject") && verdicts.contains(&"allow"),
        "{verdicts:?}"
    );
}

/// A capture taken on the gateway holds what sipfence received and what it sent. A
/// response a trunk's side forged (our Via on top) and sipfence relayed back is no
/// answer of the core's, in replay as in the proxy (QA 53: replay read the relayed copy
/// as the core's: a forged 180 made a ring-once call, a forged 200 hid one); and
/// sipfence's own refusal ends no transaction, so the refused INVITE sent again is a
/// retransmission, not a new attempt (QA 53: three records and three attempts).
#[test]
fn relayed_forgeries_and_own_refusals_replay_as_the_proxy_saw_them() {
    let policy = Policy::from_str(
        r#"
[[trunk]]
name = "ic"
role = "interconnect"
listen = ["udp:127.0.0.10:5060"]
sources = ["127.0.0.5"]
next_hop = "udp:127.0.0.20:5060"
[trunk.behaviour]
ring_once = 1
ring_once_secs = 5
[trunk.rules.behaviour-ring-once]
action = "reject"
code = 608
"#,
        "t.toml",
        Path::new("."),
    )
    .unwrap();
    let (peer, us, core): (SocketAddr, SocketAddr, SocketAddr) = (
        "127.0.0.5:5090".parse().unwrap(),
        "127.0.0.10:5060".parse().unwrap(),
        "127.0.0.20:5060".parse().unwrap(),
    );
    let head = |first: &str, caller: &str, cid: &str, cseq: &str, to_tag: &str, ours: bool| {
        let our_via = if ours {
            "Via: SIP/2.0/UDP 127.0.0.10:5060;branch=z9hG4bKsf0123456789abcdef\r\n"
        } else {
            ""
        };
        let to = if to_tag.is_empty() {
            String::new()
        } else {
            format!(";tag={to_tag}")
        };
        format!(
            "{first}\r\n{our_via}Via: SIP/2.0/UDP 127.0.0.5:5090;branch=z9hG4bK-{cid}\r\nFrom: <sip:{caller}@127.0.0.5>;tag=caller\r\nTo: <sip:+861012345678@127.0.0.10>{to}\r\nCall-ID: {cid}\r\nCSeq: {cseq}\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        )
    };
    let invite = |caller: &str, cid: &str| {
        head(
            "INVITE sip:+861012345678@127.0.0.10 SIP/2.0",
            caller,
            cid,
            "1 INVITE",
            "",
            false,
        )
    };
    let cancel = |caller: &str, cid: &str| {
        head(
            "CANCEL sip:+861012345678@127.0.0.10 SIP/2.0",
            caller,
            cid,
            "1 CANCEL",
            "",
            false,
        )
    };
    // A response to the INVITE, with our Via on top (as sent to sipfence) or not (as
    // relayed).
    let answer = |status: &str, caller: &str, cid: &str, ours: bool| {
        head(
            &format!("SIP/2.0 {status}"),
            caller,
            cid,
            "1 INVITE",
            "callee",
            ours,
        )
    };
    let (a, b) = ("+8613800000001", "+8613800000002");
    let messages = [
        // Caller a: the core only says 100; the peer forges a 180, which sipfence relays
        // back; a cancels at once. No ring-once: a's next call is let through.
        (peer, us, invite(a, "a1")),
        (core, us, answer("100 Trying", a, "a1", true)),
        (peer, us, answer("180 Ringing", a, "a1", true)),
        (us, peer, answer("180 Ringing", a, "a1", false)),
        (peer, us, cancel(a, "a1")),
        (core, us, answer("487 Request Terminated", a, "a1", true)),
        (us, peer, answer("487 Request Terminated", a, "a1", false)),
        (peer, us, invite(a, "a2")),
        // Caller b: the core rings (relayed), the peer forges a 200 (relayed), b
        // cancels at once: a ring-once call, which refuses b's next one.
        (peer, us, invite(b, "b1")),
        (core, us, answer("180 Ringing", b, "b1", true)),
        (us, peer, answer("180 Ringing", b, "b1", false)),
        (peer, us, answer("200 OK", b, "b1", true)),
        (us, peer, answer("200 OK", b, "b1", false)),
        (peer, us, cancel(b, "b1")),
        (core, us, answer("487 Request Terminated", b, "b1", true)),
        (us, peer, answer("487 Request Terminated", b, "b1", false)),
        (peer, us, invite(b, "b2")),
    ];
    let at = 100 * messages.len() as u32;
    let mut frames: Vec<(u32, SocketAddr, SocketAddr, &[u8])> = messages
        .iter()
        .zip(1..)
        .map(|((src, dst, m), i)| (100 * i, *src, *dst, m.as_bytes()))
        .collect();
    // b2 is refused 608 by sipfence (the answer below, with the To-tag sipfence makes),
    // which the peer does not hear: it sends the INVITE again 0.5 s and 1.5 s on (timer
    // A), each answered 608 again.
    let own = {
        let p = &policy;
        let m = sipfence::sip::Message::parse(bytes::Bytes::from(invite(b, "b2"))).unwrap();
        let ctx = sipfence::decide::Context {
            source: peer,
            local: None,
            trunk: Some(0),
            now_ms: 0,
            wall_ms: 0,
            rates: &sipfence::policy::rate::NoCounting,
            behaviour: &sipfence::behaviour::NoTracking,
        };
        let mut d = sipfence::decide::decide(p, &m, &ctx);
        d.outcome = sipfence::decide::Outcome::Reject { code: 608 };
        let mut out = vec![];
        assert!(sipfence::verdict::write_reject(p, &m, &d, None, &mut out));
        out
    };
    let again = invite(b, "b2");
    frames.push((at + 1, us, peer, &own));
    for t in [at + 500, at + 1_500] {
        frames.push((t, peer, us, again.as_bytes()));
        frames.push((t + 1, us, peer, &own));
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("forged.pcap");
    udp_capture(&path, &frames);
    let mut r = Replayer::new(&policy, None);
    let mut recs = vec![];
    r.file(&path, &mut Outputs::default(), &mut |rec| recs.push(rec))
        .expect("capture opens");
    let got: Vec<(&str, &str, Option<&str>)> = recs
        .iter()
        .map(|r| (r.call_id.as_str(), r.verdict, r.rule))
        .collect();
    assert_eq!(
        got,
        [
            ("a1", "allow", None),
            ("a2", "allow", None),
            ("b1", "allow", None),
            ("b2", "reject", Some("behaviour-ring-once")),
        ],
        "{recs:?}"
    );
    assert_eq!(
        (r.summary.calls, r.summary.retransmissions),
        (4, 2),
        "{:?}",
        r.summary
    );
}

/// A scanner's OPTIONS from an address no trunk claims, under `unknown-source = drop`:
/// replay lists each drop, as the proxy records each (QA 57: replay listed none).
#[test]
fn a_scanners_dropped_requests_are_listed() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("p.toml");
    std::fs::write(
        &cfg,
        "[rules.unknown-source]\naction = \"drop\"\n[[trunk]]\nname = \"ic\"\nrole = \"interconnect\"\nlisten = [\"udp:127.0.0.1:5060\"]\nsources = [\"127.0.0.11\"]\nnext_hop = \"udp:127.0.0.1:5080\"\n",
    )
    .unwrap();
    let path = dir.path().join("scan.pcap");
    let (scanner, us): (SocketAddr, SocketAddr) = (
        "127.0.0.98:42382".parse().unwrap(),
        "127.0.0.1:5060".parse().unwrap(),
    );
    let scans: Vec<String> = ["OPTIONS", "REGISTER", "INVITE"]
        .iter()
        .enumerate()
        .map(|(i, m)| format!(
            "{m} sip:100@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.98:42382;branch=z9hG4bK-scan{i};rport\r\nFrom: \"sipvicious\"<sip:100@1.1.1.1>;tag=s{i}\r\nTo: \"sipvicious\"<sip:100@1.1.1.1>\r\nCall-ID: scan-{i}\r\nCSeq: 1 {m}\r\nMax-Forwards: 70\r\nContact: <sip:100@127.0.0.98:42382>\r\nContent-Length: 0\r\n\r\n"
        ))
        .collect();
    let datagrams: Vec<_> = scans
        .iter()
        .enumerate()
        .map(|(i, m)| (i as u32 * 1000, scanner, us, m.as_bytes()))
        .collect();
    udp_capture(&path, &datagrams);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sipfence"))
        .args(["replay", "--json", "--config"])
        .arg(&cfg)
        .arg(&path)
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let listed: Vec<(String, String, String)> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v.get("call_id").is_some())
        .map(|v| {
            let s = |k: &str| v[k].as_str().unwrap_or("").to_string();
            (s("method"), s("verdict"), s("rule"))
        })
        .collect();
    let want: Vec<(String, String, String)> = ["OPTIONS", "REGISTER", "INVITE"]
        .iter()
        .map(|m| (m.to_string(), "drop".into(), "unknown-source".into()))
        .collect();
    assert_eq!(listed, want, "{text}");
}

/// A capture in which sipfence answered calls 503 for its state then (a next hop down,
/// stopping: its own answers, with the To-tag it makes and the Reason it writes) lists
/// them apart: a replay judges them by the policy alone, which lets them through (QA
/// 123: they read as allowed, with nothing said). A retransmission's 503 again is the
/// same call; the core's own 503, relayed, and sipfence's 503 for a rule are not the
/// gateway's state. A call that went to no listen address of the policy is counted,
/// and the command says so.
#[test]
fn calls_answered_for_the_gateways_state_are_told_apart() {
    use sipfence::sip::response::{Extra, write_response};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.pcap");
    let (peer, us, elsewhere): (SocketAddr, SocketAddr, SocketAddr) = (
        "127.0.0.1:5090".parse().unwrap(),
        "127.0.0.1:5060".parse().unwrap(),
        "127.0.0.30:5060".parse().unwrap(),
    );
    let invite = |id: &str| {
        format!(
            "INVITE sip:+861012345678@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5090;branch=z9hG4bK-{id}\r\nFrom: <sip:+442071234567@127.0.0.1>;tag=a\r\nTo: <sip:+861012345678@127.0.0.1>\r\nCall-ID: {id}\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        )
    };
    let answer = |inv: &str, why: &str, ours: bool| {
        let req = sipfence::sip::Message::parse(bytes::Bytes::from(inv.to_string())).unwrap();
        let mut out = vec![];
        let extra = Extra {
            reason_text: Some(why),
            ..Extra::default()
        };
        write_response(&req, 503, "Service Unavailable", &extra, &mut out);
        let s = String::from_utf8(out).unwrap();
        if ours {
            s
        } else {
            // The core's, relayed: another To-tag than sipfence makes.
            let tag = s.split("tag=").nth(2).unwrap()[..16].to_string();
            s.replace(&tag, "core-tag-1")
        }
    };
    let (down, stop, core, rule) = (
        invite("state-down"),
        invite("state-stopping"),
        invite("state-core"),
        invite("state-rule"),
    );
    let msgs: Vec<(u32, SocketAddr, SocketAddr, String)> = vec![
        (0, peer, us, down.clone()),
        (1, us, peer, answer(&down, "Next hop not answering", true)),
        (500, peer, us, down.clone()),
        (501, us, peer, answer(&down, "Next hop not answering", true)),
        (1000, peer, us, stop.clone()),
        (
            1001,
            us,
            peer,
            answer(&stop, "Stopping: try another gateway", true),
        ),
        (2000, peer, us, core.clone()),
        (
            2001,
            us,
            peer,
            answer(&core, "Next hop not answering", false),
        ),
        (3000, peer, us, rule.clone()),
        (3001, us, peer, answer(&rule, "concurrent-calls", true)),
    ];
    let datagrams: Vec<_> = msgs
        .iter()
        .map(|(t, a, b, m)| (*t, *a, *b, m.as_bytes()))
        .collect();
    udp_capture(&path, &datagrams);
    let (recs, s, _) = replay(&path);
    assert_eq!((s.calls, s.retransmissions), (4, 1), "{s:?}");
    assert!(recs.iter().all(|r| r.verdict == "allow"), "{recs:?}");
    assert_eq!(s.gateway_state, 2, "{s:?}");
    assert_eq!(s.gateway_state_calls, ["state-down", "state-stopping"]);
    assert_eq!(s.calls_elsewhere, 0);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sipfence"))
        .arg("replay")
        .arg(&path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("not its policy")
            && stdout.contains(": 2 calls (state-down, state-stopping)"),
        "{stdout}"
    );
    assert!(!String::from_utf8_lossy(&out.stderr).contains("warning"));

    // The same calls sent to another address than the policy's.
    let path = dir.path().join("elsewhere.pcap");
    let datagrams: Vec<_> = msgs
        .iter()
        .filter(|(_, a, _, _)| *a == peer)
        .map(|(t, a, _, m)| (*t, *a, elsewhere, m.as_bytes()))
        .collect();
    udp_capture(&path, &datagrams);
    let (recs, s, _) = replay(&path);
    assert_eq!((s.calls, s.calls_elsewhere), (4, 4), "{s:?}");
    assert!(recs.iter().all(|r| r.rule == Some("unknown-source")));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sipfence"))
        .arg("replay")
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("warning: 4 of 4 calls went to no listen address of the policy"),
        "{stderr}"
    );
    // Judged as arriving on a trunk, nothing to warn of.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sipfence"))
        .args(["replay", "--trunk", "intl"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&out.stderr).contains("listen address"));
}

/// A trunk's concurrent-call places in replay end where the proxy's end (QA 127: the
/// replay of a core outage kept places the gateway had freed, and refused a call the
/// gateway let through): a call whose caller's BYE the core left unanswered ends once
/// the capture shows the gateway answering a call `Next hop not answering` (its next
/// hop down), and one whose BYE the gateway answered `Next hop unreachable` itself
/// ends at that 503.
#[test]
fn concurrent_places_end_in_replay_as_live() {
    use sipfence::sip::response::{Extra, write_response};
    let text = std::fs::read_to_string(root().join("deploy/sipfence.toml")).unwrap();
    let text = text.replacen(
        "next_hop = \"udp:127.0.0.1:5080\"\n",
        "next_hop = \"udp:127.0.0.1:5080\"\nmax_concurrent_calls = 1\nrecord_route = true\n",
        1,
    );
    let policy = Policy::from_str(&text, "t.toml", &root().join("deploy")).unwrap();
    let (peer, us, core): (SocketAddr, SocketAddr, SocketAddr) = (
        "127.0.0.1:5090".parse().unwrap(),
        "127.0.0.1:5060".parse().unwrap(),
        "127.0.0.1:5080".parse().unwrap(),
    );
    let invite = |id: &str| {
        format!(
            "INVITE sip:+861012345678@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5090;branch=z9hG4bK-{id}\r\nFrom: <sip:+442071234567@127.0.0.1>;tag=a{id}\r\nTo: <sip:+861012345678@127.0.0.1>\r\nCall-ID: {id}\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        )
    };
    let ok = |id: &str| {
        format!(
            "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:5090;branch=z9hG4bK-{id}\r\nFrom: <sip:+442071234567@127.0.0.1>;tag=a{id}\r\nTo: <sip:+861012345678@127.0.0.1>;tag=c{id}\r\nCall-ID: {id}\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
        )
    };
    let bye = |id: &str| {
        format!(
            "BYE sip:core@127.0.0.1:5080 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5090;branch=z9hG4bK-b{id}\r\nFrom: <sip:+442071234567@127.0.0.1>;tag=a{id}\r\nTo: <sip:+861012345678@127.0.0.1>;tag=c{id}\r\nCall-ID: {id}\r\nCSeq: 2 BYE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        )
    };
    let ours_503 = |req: &str, why: &str| {
        let m = sipfence::sip::Message::parse(bytes::Bytes::from(req.to_string())).unwrap();
        let mut out = vec![];
        let extra = Extra {
            reason_text: Some(why),
            ..Extra::default()
        };
        write_response(&m, 503, "Service Unavailable", &extra, &mut out);
        String::from_utf8(out).unwrap()
    };
    let verdicts = |msgs: &[(SocketAddr, SocketAddr, String)]| {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.pcap");
        let datagrams: Vec<_> = msgs
            .iter()
            .enumerate()
            .map(|(i, (a, b, m))| (i as u32 * 1000, *a, *b, m.as_bytes()))
            .collect();
        udp_capture(&path, &datagrams);
        let mut r = Replayer::new(&policy, None);
        let mut recs = vec![];
        r.file(&path, &mut Outputs::default(), &mut |rec| recs.push(rec))
            .unwrap();
        recs.iter()
            .map(|r| (r.call_id.clone(), r.verdict, r.rule))
            .collect::<Vec<_>>()
    };
    // A call answered, and its caller's BYE sent on to the core.
    let answered_then_bye = |id: &str| {
        vec![
            (peer, us, invite(id)),
            (us, core, invite(id)),
            (core, us, ok(id)),
            (us, peer, ok(id)),
            (peer, us, bye(id)),
        ]
    };
    // c1 answered, its caller's BYE unanswered; the core is then found down (c2's 503):
    // c3 takes the place c1 left.
    let mut msgs = answered_then_bye("c1");
    msgs.extend([
        (us, core, bye("c1")),
        (peer, us, invite("c2")),
        (us, peer, ours_503(&invite("c2"), "Next hop not answering")),
        (peer, us, invite("c3")),
    ]);
    let v = verdicts(&msgs);
    assert_eq!(
        v.last().unwrap(),
        &("c3".to_string(), "allow", None),
        "{v:?}"
    );
    // Without the core found down, silence frees nothing.
    msgs.remove(7);
    let v = verdicts(&msgs);
    assert_eq!(
        v.last().unwrap(),
        &("c3".to_string(), "reject", Some("concurrent-calls")),
        "{v:?}"
    );
    // The core found down by the gateway's probes alone, no 503 in the capture (QA 129):
    // answered once, then four sent unanswered (the fourth finds three lost).
    let probe = |n: u32| {
        format!(
            "OPTIONS sip:127.0.0.1:5080 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKsfprobe-{n}\r\nMax-Forwards: 0\r\nFrom: <sip:sipfence@127.0.0.1:5060>;tag=sfprobe\r\nTo: <sip:127.0.0.1:5080>\r\nCall-ID: sfprobe-{n}\r\nCSeq: {n} OPTIONS\r\nContent-Length: 0\r\n\r\n"
        )
    };
    let probed = |answered_then_lost: usize| {
        let mut m = vec![
            (us, core, probe(1)),
            (
                core,
                us,
                "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKsfprobe-1\r\nFrom: <sip:sipfence@127.0.0.1:5060>;tag=sfprobe\r\nTo: <sip:127.0.0.1:5080>;tag=c\r\nCall-ID: sfprobe-1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
                    .to_string(),
            ),
        ];
        m.extend(answered_then_bye("c1"));
        m.push((us, core, bye("c1")));
        for n in 0..answered_then_lost {
            m.push((us, core, probe(2 + n as u32)));
        }
        m.push((peer, us, invite("c3")));
        m
    };
    let v = verdicts(&probed(4));
    assert_eq!(
        v.last().unwrap(),
        &("c3".to_string(), "allow", None),
        "{v:?}"
    );
    let v = verdicts(&probed(3));
    assert_eq!(
        v.last().unwrap(),
        &("c3".to_string(), "reject", Some("concurrent-calls")),
        "three lost: not yet down: {v:?}"
    );
    // c3 answered; its caller's BYE answered 503 by the gateway (no connection to the
    // core), relayed with the BYE's own tags: c4 takes the place.
    let mut msgs = answered_then_bye("c3");
    msgs.extend([
        (us, peer, ours_503(&bye("c3"), "Next hop unreachable")),
        (peer, us, invite("c4")),
    ]);
    let v = verdicts(&msgs);
    assert_eq!(
        v.last().unwrap(),
        &("c4".to_string(), "allow", None),
        "{v:?}"
    );
}

/// A request the policy lets through but the gateway cannot forward for its size (its
/// Via and edits take it past the largest UDP datagram, to a UDP next hop) is refused
/// 513 in replay as live (QA 146: replay let it through); one just below goes on.
#[test]
fn a_call_too_large_for_the_next_hop_is_refused_in_replay_as_live() {
    let policy = Policy::from_str(
        &std::fs::read_to_string(root().join("deploy/sipfence.toml")).unwrap(),
        "t.toml",
        &root().join("deploy"),
    )
    .unwrap();
    let (peer, us): (SocketAddr, SocketAddr) = (
        "127.0.0.1:5090".parse().unwrap(),
        "127.0.0.1:5060".parse().unwrap(),
    );
    // The INVITE, `len` bytes long.
    let invite = |id: &str, len: usize| {
        let head = format!(
            "INVITE sip:+861012345678@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5090;branch=z9hG4bK-{id}\r\nFrom: <sip:+442071234567@127.0.0.1>;tag=a{id}\r\nTo: <sip:+861012345678@127.0.0.1>\r\nCall-ID: {id}\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\nX-Pad: "
        );
        let pad = len - head.len() - 4;
        format!("{head}{}\r\n\r\n", "a".repeat(pad))
    };
    let verdict = |len: usize| {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.pcap");
        let m = invite("big", len);
        assert_eq!(m.len(), len);
        udp_capture(&path, &[(0, peer, us, m.as_bytes())]);
        let mut r = Replayer::new(&policy, None);
        let mut recs = vec![];
        r.file(&path, &mut Outputs::default(), &mut |rec| recs.push(rec))
            .unwrap();
        assert_eq!(recs.len(), 1);
        (recs[0].verdict, recs[0].code, recs[0].refused)
    };
    assert_eq!(
        verdict(65_480),
        (
            "reject",
            Some(513),
            Some("Too large for UDP to the next hop")
        )
    );
    let (v, code, _) = verdict(60_000);
    assert!(v != "reject" && code.is_none(), "{v} {code:?}");
}

/// Datagrams that carry no SIP (RTP, DNS, garbage sent to the SIP port) are counted in
/// the summary, where they were in no count (QA 146), and so are packets of other IP
/// protocols (ICMP: QA 147); those that carry SIP are not.
#[test]
fn datagrams_without_sip_are_counted() {
    let policy = Policy::builtin().unwrap();
    let (peer, us): (SocketAddr, SocketAddr) = (
        "127.0.0.1:5090".parse().unwrap(),
        "127.0.0.1:5060".parse().unwrap(),
    );
    let invite = "INVITE sip:+861012345678@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5090;branch=z9hG4bK-ns\r\nFrom: <sip:+442071234567@127.0.0.1>;tag=a\r\nTo: <sip:+861012345678@127.0.0.1>\r\nCall-ID: ns\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n";
    let rtp = [
        0x80u8, 0x08, 0x00, 0x01, 0, 0, 0, 160, 0x12, 0x34, 0x56, 0x78, 0xd5, 0xd5,
    ];
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.pcap");
    udp_capture(
        &path,
        &[
            (0, peer, us, invite.as_bytes()),
            (10, peer, us, &rtp),
            (20, peer, us, b"\x01\x02garbage"),
        ],
    );
    let mut r = Replayer::new(&policy, None);
    r.file(&path, &mut Outputs::default(), &mut |_| {}).unwrap();
    assert_eq!(r.summary.sip_messages, 1);
    assert_eq!(r.summary.not_sip_datagrams, 2);
    assert_eq!(r.net_stats().other_ip, 0);
    // An ICMP packet (an IPv4 packet of protocol 1) is counted as another IP protocol.
    let mut icmp = sipfence::replay::pcapout::udp_packet(peer, us, b"port unreachable");
    icmp[9] = 1;
    let mut w = sipfence::replay::pcapout::PcapWriter::create(&path).unwrap();
    w.write(
        sipfence::replay::pcapout::LINKTYPE_RAW,
        1_795_000_000,
        0,
        &icmp,
        icmp.len() as u32,
    )
    .unwrap();
    w.finish().unwrap();
    let mut r = Replayer::new(&policy, None);
    r.file(&path, &mut Outputs::default(), &mut |_| {}).unwrap();
    assert_eq!(
        (r.summary.not_sip_datagrams, r.net_stats().other_ip),
        (0, 1)
    );
}

/// A capture whose times go back within the file (pieces concatenated rather than
/// merged, a clock stepped back where it was taken) is said on stderr, as a second file
/// that starts early is: its calls are judged as if the clock went back (QA 192 F8:
/// nothing was said, and calls an hour "earlier" were refused on a later minute's count).
#[test]
fn a_capture_whose_times_go_back_is_said() {
    let bytes = std::fs::read(root().join("testdata/pcap/rules-udp.pcap")).unwrap();
    assert_eq!(
        &bytes[..4],
        &[0xd4, 0xc3, 0xb2, 0xa1],
        "a little-endian pcap"
    );
    // The record headers: each packet's seconds, an hour earlier from the second half on.
    let mut at = 24;
    let mut records = vec![];
    while at + 16 <= bytes.len() {
        records.push(at);
        let len = u32::from_le_bytes(bytes[at + 8..at + 12].try_into().unwrap()) as usize;
        at += 16 + len;
    }
    assert!(records.len() > 10);
    let mut moved = bytes.clone();
    for &r in &records[records.len() / 2..] {
        let secs = u32::from_le_bytes(moved[r..r + 4].try_into().unwrap()) - 3600;
        moved[r..r + 4].copy_from_slice(&secs.to_le_bytes());
    }
    let dir = tempfile::tempdir().unwrap();
    let said = |bytes: &[u8]| {
        let path = dir.path().join("c.pcap");
        std::fs::write(&path, bytes).unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_sipfence"))
            .arg("replay")
            .arg(&path)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let err = said(&moved);
    assert!(
        err.contains(&format!(
            "c.pcap: packet {} is 3599.9 s",
            records.len() / 2 + 1
        )) && err.contains("the capture's times go back"),
        "{err}"
    );
    // Once: the times after it go on from there.
    assert!(!err.contains("times went back"), "{err}");
    assert!(!said(&bytes).contains("go back"));
}
