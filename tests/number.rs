//! `sipfence number`: a calling number in any written form, what the filter makes of it
//! and the verdict a call from it gets on each trunk, against the shipped example
//! policies and their list files. The verdicts must be the ones `explain` gives a real
//! message carrying the number.

mod common;

use serde_json::{Value, json};
use std::process::Command;

fn sipfence(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_sipfence"))
        .current_dir(common::project_dir())
        .args(args)
        .output()
        .expect("run sipfence");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `number --json` for one number: the object, and the exit status.
fn number(args: &[&str], n: &str) -> (i32, Value) {
    let mut a = vec!["number", "--json"];
    a.extend_from_slice(args);
    a.push(n);
    let (code, out, err) = sipfence(&a);
    let v = serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out} {err}"));
    (code, v)
}

/// trunk name -> (verdict, code, rule)
fn verdicts(v: &Value) -> Vec<(String, String, Option<u64>, Option<String>)> {
    v["trunks"]
        .as_array()
        .expect("trunks")
        .iter()
        .map(|t| {
            (
                t["trunk"].as_str().unwrap_or_default().to_string(),
                t["verdict"].as_str().unwrap_or_default().to_string(),
                t["code"].as_u64(),
                t["rule"].as_str().map(str::to_string),
            )
        })
        .collect()
}

const ENT: &str = "deploy/examples/enterprise-gateway.toml";
const INTL: &str = "deploy/examples/international-gateway.toml";
/// A Monday, 10:00 in Beijing: inside every example contract's hours.
const MONDAY_10: &str = "2026-11-30T10:00:00+08:00";

#[test]
fn every_written_form_is_the_same_number() {
    let forms = [
        "013812345678",
        "+8613812345678",
        "0086 138 1234 5678",
        "8613812345678",
        "+86-138-1234-5678",
        "tel:+86-138-1234-5678",
        "sip:+8613812345678@gw.example.net;user=phone",
        "＋８６１３８１２３４５６７８",
        // QA 197: the national form with the country code put in front of it.
        "+86013812345678",
        "sip:+86013812345678@gw.example.net;user=phone",
    ];
    let (_, first) = number(&[], forms[0]);
    assert_eq!(first["number"], "+8613812345678");
    assert_eq!(first["class"], "mobile");
    assert_eq!(first["operator"], "cmcc");
    for f in forms {
        let (code, v) = number(&[], f);
        assert_eq!(v["number"], first["number"], "{f}");
        assert_eq!(v["class"], first["class"], "{f}");
        assert_eq!(verdicts(&v), verdicts(&first), "{f}");
        // The built-in intl trunk refuses a domestic number arriving from abroad.
        assert_eq!(code, 1, "{f}");
    }
    // A tel URI's phone-context is a global number, separators and all (RFC 3966 3):
    // the same number as without them, and a foreign context keeps a mobile's digits
    // foreign.
    for (f, want) in [
        ("tel:5555-0100;phone-context=+86-10", "+861055550100"),
        ("tel:5555-0100;phone-context=+(86)10", "+861055550100"),
        ("tel:555-0123;phone-context=+1-415", "+14155550123"),
        ("tel:13912345678;phone-context=+4-4", "+4413912345678"),
        // Session 29: a context of digits alone is the prefix a gateway dials and shows
        // in front of the local number (an area code with its trunk 0); a domain
        // context says nothing of the digits.
        ("tel:12345678;phone-context=010", "+861012345678"),
        (
            "sip:5555-0100;phone-context=0-10@gw.example;user=phone",
            "+861055550100",
        ),
        ("tel:5588;phone-context=9", "+8695588"),
        ("tel:+8613912345678;phone-context=010", "+8613912345678"),
        (
            "tel:13912345678;phone-context=ims.mnc000.mcc460.3gppnetwork.org",
            "+8613912345678",
        ),
        // Copied from a header, angle brackets and display name and all.
        (
            "<sip:+8613912345678@192.0.2.7;user=phone>",
            "+8613912345678",
        ),
        ("\"Alice\" <tel:+86-10-5555-0100>", "+861055550100"),
        ("+86 021 5055 1001", "+862150551001"),
        ("0086-010-5555-0100", "+861055550100"),
    ] {
        assert_eq!(number(&[], f).1["number"], want, "{f}");
    }
    // And one the plan refuses (026 is unassigned) is refused by the plan's rule.
    let (code, v) = number(&[], "02612345678");
    assert_eq!(v["class"], "invalid");
    assert_eq!(code, 1);
    assert!(
        verdicts(&v)
            .iter()
            .all(|t| t.3.as_deref() == Some("numbering-plan"))
    );
}

#[test]
fn enterprise_contract_whitelist_hours_and_own_segments() {
    let at = ["--config", ENT, "--at", MONDAY_10];
    // The bank's 400 number: on its whitelist (exact) and in our own segments.
    let (code, v) = number(&[&at[..], &["--trunk", "ent-bank"]].concat(), "4008001234");
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["number"], "+864008001234");
    assert_eq!(v["class"], "shared-cost");
    let lists: Vec<(String, String)> = v["lists"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| (l["list"].to_string(), l["match"].to_string()))
        .collect();
    assert!(lists.contains(&("\"whitelist:ent-bank\"".into(), "\"exact\"".into())));
    assert!(lists.contains(&("\"own_segments\"".into(), "\"segment +864008*\"".into())));
    assert_eq!(
        verdicts(&v),
        [("ent-bank".into(), "allow".into(), None, None)]
    );
    // The same number on every trunk: only the bank may present it.
    let (code, v) = number(&at, "4008001234");
    assert_eq!(code, 1);
    for (t, verdict, c, rule) in verdicts(&v) {
        if t == "ent-bank" {
            assert_eq!(verdict, "allow");
        } else {
            assert_eq!(
                (verdict.as_str(), c, rule.as_deref()),
                ("reject", Some(403), Some("enterprise-not-whitelisted")),
                "{t}"
            );
        }
    }
    // The bank's number behind another's in the display name: judged as `explain` and
    // the proxy judge it (a number the callee is shown must be contracted too).
    let ent = [&at[..], &["--trunk", "ent-bank"]].concat();
    let (code, v) = number(&ent, "\"95588\" <sip:+864008001234@x>");
    assert_eq!(code, 1, "{v}");
    // (95588 is no number of this network's segments: refused before the whitelist.)
    assert_eq!(
        verdicts(&v)[0].3.as_deref(),
        Some("enterprise-foreign-network")
    );
    let (code, v) = number(&ent, "\"Bank\" <sip:+864008001234@x>");
    assert_eq!(code, 0, "{v}");
    // A field's value as copied from a trace, its header parameters included.
    let (code, v) = number(&ent, "<sip:+864008001234@x>;tag=1");
    assert_eq!(
        (code, v["number"].as_str()),
        (0, Some("+864008001234")),
        "{v}"
    );
    // An agent's line inside the DID range (national form), and one just outside it.
    let (code, _) = number(
        &[&at[..], &["--trunk", "ent-bank"]].concat(),
        "010 5555 0199",
    );
    assert_eq!(code, 0);
    let (code, v) = number(
        &[&at[..], &["--trunk", "ent-bank"]].concat(),
        "010 5555 0200",
    );
    assert_eq!(code, 1);
    assert_eq!(
        verdicts(&v)[0].3.as_deref(),
        Some("enterprise-not-whitelisted")
    );
    // Another network's number is refused before the whitelist is read.
    let (_, v) = number(
        &[&at[..], &["--trunk", "ent-bank"]].concat(),
        "+14155550123",
    );
    assert_eq!(
        verdicts(&v)[0].3.as_deref(),
        Some("enterprise-foreign-network")
    );
    // Sunday, and Monday night: outside the bank's contract hours.
    for when in [
        "2026-11-29T10:00:00+08:00",
        "2026-11-30T22:30:00+08:00",
        "1764511200",
    ] {
        let (code, v) = number(
            &["--config", ENT, "--trunk", "ent-bank", "--at", when],
            "4008001234",
        );
        assert_eq!(code, 1, "{when}");
        assert_eq!(
            verdicts(&v)[0].3.as_deref(),
            Some("enterprise-hours"),
            "{when}"
        );
    }
}

#[test]
fn international_gateway_numbers() {
    let c = [
        "--config",
        INTL,
        "--at",
        MONDAY_10,
        "--trunk",
        "intl-carrier-a",
    ];
    let rule_of = |n: &str| {
        let (code, v) = number(&c, n);
        let t = verdicts(&v);
        assert_eq!(t.len(), 1, "{v}");
        (code, t[0].1.clone(), t[0].3.clone(), v)
    };
    // A foreign caller passes, labelled as from abroad; a domestic one from abroad does
    // not; nor a forged 110.
    assert_eq!(rule_of("+442071234567").1, "label");
    assert_eq!(
        rule_of("+442071234567").2.as_deref(),
        Some("label-international")
    );
    assert_eq!(rule_of("+442071234567").0, 0);
    assert_eq!(
        rule_of("13812345678").2.as_deref(),
        Some("intl-domestic-caller")
    );
    assert_eq!(rule_of("110").2.as_deref(), Some("intl-forged-service"));
    // Our own subscriber roaming abroad, calling home (the roamers list, national form).
    let (code, verdict, _, v) = rule_of("139 0000 0002");
    assert_eq!((code, verdict.as_str()), (0, "allow"), "{v}");
    assert_eq!(v["lists"][0]["list"], "roamers");
    // Withheld and blank callers are refused, and said not to be numbers.
    for (n, why) in [("anonymous", "withheld"), ("", "empty")] {
        let (code, verdict, rule, v) = rule_of(n);
        assert_eq!((code, verdict.as_str()), (1, "reject"), "{n:?}");
        assert!(
            matches!(rule.as_deref(), Some("blank-caller" | "withheld-caller")),
            "{n:?}: {v}"
        );
        assert_eq!(v["not_a_number"], why);
        assert!(v["number"].is_null());
    }
}

/// Carrier B writes E.164 without the '+' (`bare_numbers = "international"`): the same
/// digits are another number there, and `number` says how each trunk read them.
#[test]
fn a_trunk_that_reads_bare_numbers_as_international() {
    let both = ["--config", INTL, "--at", MONDAY_10];
    let on = |t: &str, n: &str| {
        let mut c = both.to_vec();
        c.extend(["--trunk", t]);
        let (code, v) = number(&c, n);
        (code, v["trunks"][0].clone())
    };
    let (code, b) = on("intl-carrier-b", "442071234567");
    assert_eq!(
        (code, &b["caller"], &b["class"]),
        (0, &json!("+442071234567"), &json!("foreign")),
        "{b}"
    );
    let (code, a) = on("intl-carrier-a", "442071234567");
    assert_eq!((code, &a["rule"]), (1, &json!("numbering-plan")), "{a}");
    for (n, rule) in [
        ("8613812345678", "intl-domestic-caller"),
        ("110", "intl-forged-service"),
        ("013812345678", "intl-domestic-caller"),
    ] {
        let (code, b) = on("intl-carrier-b", n);
        assert_eq!((code, &b["rule"]), (1, &json!(rule)), "{n}: {b}");
    }
    // The text report names the other reading on the trunk that made it.
    let (status, out, _) = sipfence(&[
        "number",
        "--config",
        INTL,
        "--at",
        MONDAY_10,
        "442071234567",
    ]);
    assert_eq!(status, 1, "{out}");
    let line = |t: &str| {
        out.lines()
            .find(|l| l.trim_start().starts_with(t))
            .unwrap_or_default()
            .to_string()
    };
    assert!(
        line("intl-carrier-b").contains("read as +442071234567 (foreign)"),
        "{out}"
    );
    assert!(!line("intl-carrier-a").contains("read as"), "{out}");
    assert!(out.contains("number   +86442071234567  invalid"), "{out}");
}

/// The verdict `number` reports is the one `explain` gives a message from that caller.
#[test]
fn number_and_explain_agree() {
    let dir = tempfile::tempdir().unwrap();
    for (cfg, trunk) in [(ENT, "ent-bank"), (INTL, "intl-carrier-a"), ("", "ent-400")] {
        for n in [
            "+864008001234",
            "+861055550100",
            "+8613812345678",
            "+442071234567",
            "+8613800000001",
            "+8617099999123",
            "+86110",
            "+8614512345678",
        ] {
            let mut args = vec!["--trunk", trunk, "--at", "1764468000"];
            if !cfg.is_empty() {
                args.extend(["--config", cfg]);
            }
            let (_, v) = number(&args, n);
            let msg = dir.path().join("call.sip");
            std::fs::write(
                &msg,
                format!(
                    "INVITE sip:+861012345678@core.example.net;user=phone SIP/2.0\r\n\
                     Via: SIP/2.0/UDP 10.100.1.2:5060;branch=z9hG4bK-agree\r\n\
                     Max-Forwards: 70\r\n\
                     From: <sip:{n}@10.100.1.2;user=phone>;tag=a\r\n\
                     To: <sip:+861012345678@core.example.net;user=phone>\r\n\
                     Call-ID: agree@10.100.1.2\r\nCSeq: 1 INVITE\r\n\
                     P-Asserted-Identity: <sip:{n}@10.100.1.2;user=phone>\r\n\
                     Contact: <sip:10.100.1.2:5060>\r\nContent-Length: 0\r\n\r\n"
                ),
            )
            .unwrap();
            // The same moment written as RFC 3339: explain reads both forms as number does.
            let mut e = vec![
                "explain",
                "--json",
                "--trunk",
                trunk,
                "--at",
                "2025-11-30T10:00:00+08:00",
            ];
            if !cfg.is_empty() {
                e.extend(["--config", cfg]);
            }
            let path = msg.to_string_lossy().into_owned();
            e.push(&path);
            let (_, out, err) = sipfence(&e);
            let x: Value =
                serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {err}"));
            let t = &v["trunks"][0];
            for k in ["verdict", "code", "rule", "hits"] {
                assert_eq!(t[k], x[k], "{trunk} {n} {k}: number {t} explain {x}");
            }
        }
    }
}

/// A list as the customer sent it, piped in: one answer per number, comments and blank
/// lines skipped, exit 1 because one entry would be refused on the trunk.
#[test]
fn numbers_are_read_from_standard_input() {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_sipfence"))
        .current_dir(common::project_dir())
        .args([
            "number", "--json", "--config", ENT, "--trunk", "ent-bank", "--at", MONDAY_10, "-",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"# contract C-2024-0042, new lines\n+864008001234   # 400 number\n\n010 5555 0199\n01055550200\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let lines: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let got: Vec<(&str, &str)> = lines
        .iter()
        .map(|v| {
            (
                v["input"].as_str().unwrap(),
                v["trunks"][0]["verdict"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("+864008001234", "allow"),
            ("010 5555 0199", "allow"),
            ("01055550200", "reject")
        ]
    );
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn usage_errors_are_refused_with_the_reason() {
    let (code, _, err) = sipfence(&["number", "--trunk", "nope", "13812345678"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("no trunk named 'nope'") && err.contains("intl, ent-400"),
        "{err}"
    );
    let (code, _, err) = sipfence(&["number", "--at", "yesterday", "13812345678"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("--at") && err.contains("RFC 3339") || err.contains("YYYY"),
        "{err}"
    );
    let (code, _, err) = sipfence(&["explain", "--at", "yesterday", "-"]);
    assert_eq!(code, 2);
    assert!(err.contains("--at") && err.contains("YYYY"), "{err}");
    let (code, _, err) = sipfence(&["number", "--callee", "nobody", "13812345678"]);
    assert_eq!(code, 2);
    assert!(err.contains("--callee"), "{err}");
    // A called number as a person writes it, or as a URI, is one.
    for callee in [
        "010 1234 5678",
        "tel:+86-10-1234-5678",
        "sip:4008001234@core;user=phone",
    ] {
        let (code, v) = number(&["--callee", callee, "--trunk", "intl"], "+442071234567");
        assert_eq!(
            (code, &v["trunks"][0]["verdict"]),
            (0, &Value::from("allow")),
            "{callee}: {v}"
        );
    }
    // Header injection through the input goes nowhere: not a number, no extra field.
    let (code, v) = number(&["--trunk", "intl"], "13812345678\r\nX-Evil: 1");
    assert_eq!(v["not_a_number"], "non-numeric", "{v}");
    assert_eq!(code, 1);
    // The text form names the list and how the number matched it.
    let (code, out, _) = sipfence(&["number", "+8617099999123"]);
    assert_eq!(code, 1);
    assert!(out.contains("blacklist (segment +8617099999*)"), "{out}");
    assert!(out.contains("reject 608 blacklist"), "{out}");
}

/// `explain --source` on trunks that share sources (the built-in policy's two trunks
/// both take 127.0.0.0/8) says which it took and how to choose; `--to` chooses as the
/// proxy does; `--to` beside `--trunk` is refused rather than ignored.
#[test]
fn explain_tells_trunks_that_share_sources_apart() {
    let msg = "testdata/sip/invite-pai-sdp.sip";
    let (code, out, err) = sipfence(&["explain", "--source", "127.0.0.1:5070", msg]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        err.contains("is a source of several trunks (intl, ent-400)"),
        "{err}"
    );
    assert!(err.contains("give --to"), "{err}");
    let (code, out, err) = sipfence(&[
        "explain",
        "--source",
        "127.0.0.1:5070",
        "--to",
        "udp:127.0.0.1:5062",
        msg,
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(!err.contains("several trunks"), "{err}");
    assert!(out.contains("ent-400"), "{out}");
    let (code, _, err) = sipfence(&[
        "explain",
        "--trunk",
        "intl",
        "--to",
        "udp:127.0.0.1:5062",
        msg,
    ]);
    assert_ne!(code, 0, "{err}");
    assert!(err.contains("--to") && err.contains("--trunk"), "{err}");
}
