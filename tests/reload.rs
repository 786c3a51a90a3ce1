//! Hot reload: SIGHUP and POST /reload swap the policy under load without losing a
//! call; a broken policy is refused with its file and line, and the old one keeps running.

mod common;

use common::{Proxy, Uac, port_block, sipp_available, sipp_uas, uac_scenario};
use std::net::UdpSocket;
use std::time::Duration;

fn config(base: u16, blacklist: &str) -> String {
    format!(
        r#"
[lists.blacklist]
entries = [{blacklist}]
[[trunk]]
name = "intl"
role = "international"
listen = ["udp:127.0.0.1:{p}"]
sources = ["127.0.0.0/8"]
next_hop = "udp:127.0.0.1:{uas}"
[metrics]
listen = "127.0.0.1:{m}"
"#,
        p = base,
        uas = base + 10,
        m = base + 30
    )
}

fn ask(base: u16, caller: &str, call: &str) -> String {
    let c = UdpSocket::bind("127.0.0.1:0").unwrap();
    c.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    c.connect(("127.0.0.1", base)).unwrap();
    let port = c.local_addr().unwrap().port();
    let m = format!(
        "INVITE sip:4008001234@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK-{call};rport\r\nFrom: <sip:{caller}@127.0.0.1>;tag=t{call}\r\nTo: <sip:4008001234@127.0.0.1>\r\nCall-ID: {call}\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    );
    c.send(m.as_bytes()).unwrap();
    let mut b = [0u8; 4096];
    let n = c.recv(&mut b).unwrap_or(0);
    String::from_utf8_lossy(&b[..n])
        .lines()
        .next()
        .unwrap_or("")
        .to_string()
}

/// A proxy whose blacklist is the file `blacklist.txt` beside its policy, holding
/// `list`; the file's path and the policy's text.
fn with_list_file(base: u16, list: &str) -> (Proxy, std::path::PathBuf, String) {
    let conf = config(base, "").replace(
        "[lists.blacklist]\nentries = []",
        "[lists.blacklist]\nfiles = [\"blacklist.txt\"]",
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("blacklist.txt");
    std::fs::write(&path, list).unwrap();
    (Proxy::start_in(dir, &conf, 1, &|_| {}), path, conf)
}

#[test]
fn reload_under_load_loses_no_call_and_bad_policy_is_refused() {
    if !sipp_available() {
        return;
    }
    let base = port_block();
    let proxy = Proxy::start(&config(base, "\"+442079999999\""), 2);
    let dir = proxy.dir.path().to_path_buf();
    let cfg_path = dir.join("sipfence.toml");
    let _uas = sipp_uas(base + 10, None, &dir);
    // sipp's built-in UAC calls from "sipp", which is no number: use a caller CSV instead.
    let csv = dir.join("callers.csv");
    std::fs::write(
        &csv,
        "SEQUENTIAL\n+442071234567@;X-A: 1;X-B: 1;\n+12125550123@;X-A: 1;X-B: 1;\n",
    )
    .unwrap();
    let sc = uac_scenario(&dir, 200);
    let load = {
        let (dir, sc, csv) = (dir.clone(), sc.clone(), csv.clone());
        std::thread::spawn(move || {
            Uac {
                dir: &dir,
                scenario: &sc,
                csv: &csv,
                port: base,
                uac_port: base + 20,
                transport: "u1",
                calls: 600,
                rate: 100,
            }
            .run()
        })
    };
    // Reload ten times while calls flow, alternating SIGHUP and the HTTP endpoint.
    for i in 0..10 {
        std::thread::sleep(Duration::from_millis(400));
        std::fs::write(&cfg_path, config(base, &format!("\"+44207999{i:04}\""))).unwrap();
        if i % 2 == 0 {
            proxy.signal("HUP");
        } else {
            let (code, body) = proxy.http("POST", "/reload");
            assert_eq!(code, 200, "{body}");
        }
    }
    // The reload endpoint takes POST only, and says so.
    let (code, body) = proxy.http("GET", "/reload");
    assert_eq!(
        (code, body.as_str()),
        (405, "/reload takes POST, OPTIONS\n")
    );
    // Probes: HEAD is GET without the body, OPTIONS says what a path takes.
    assert_eq!(proxy.http("HEAD", "/readyz"), (200, String::new()));
    assert_eq!(proxy.http("HEAD", "/healthz").0, 200);
    assert_eq!(proxy.http("OPTIONS", "/readyz").0, 204);
    assert_eq!(proxy.http("OPTIONS", "/reload").0, 204);
    // A broken policy: refused with its file and line; the running one stays.
    std::fs::write(
        &cfg_path,
        config(base, "\"+8613800000001\"")
            .replace("role = \"international\"", "role = \"internationl\""),
    )
    .unwrap();
    let (code, body) = proxy.http("POST", "/reload");
    assert_eq!(code, 422, "{body}");
    assert!(
        body.contains("sipfence.toml:") && body.contains("internationl"),
        "{body}"
    );
    // An empty file (one being written, or cut): no trunk, every call would be refused
    // as from nowhere; refused too (QA 67: it reloaded "ok").
    std::fs::write(&cfg_path, "").unwrap();
    let (code, body) = proxy.http("POST", "/reload");
    assert_eq!(code, 422, "{body}");
    assert!(
        body.contains("sipfence.toml: no trunk (an empty or cut file?)"),
        "{body}"
    );
    let (code, out) = load.join().unwrap();
    assert_eq!(code, 0, "calls lost during reloads:\n{out}");
    assert!(proxy.metric("sipfence_policy_reloads_total{result=\"ok\"}") >= 10.0);
    assert_eq!(
        proxy.metric("sipfence_policy_reloads_total{result=\"failed\"}"),
        2.0
    );
    // The last good policy (blacklisting +442079990009) is the one running.
    assert!(ask(base, "+442079990009", "r1").starts_with("SIP/2.0 608 "));
    // ... and only that one: the previous entry is no longer blacklisted.
    assert!(!ask(base, "+442079990008", "r2").starts_with("SIP/2.0 608"));
    // A good policy again, by SIGHUP: now the new blacklist applies.
    std::fs::write(&cfg_path, config(base, "\"+442071111111\"")).unwrap();
    proxy.signal("HUP");
    std::thread::sleep(Duration::from_millis(500));
    assert!(ask(base, "+442071111111", "r4").starts_with("SIP/2.0 608 "));
}

/// A list file cut, or read while a feed writes it, is refused at a reload when the
/// list would lose more than half its entries (QA 118 F3: a blacklist emptied so
/// reloaded "ok", and its numbers went through); `POST /reload?force=1` takes it. An
/// edit that keeps more than half goes in as ever.
#[test]
fn a_list_cut_while_being_written_is_refused_until_forced() {
    let base = port_block();
    let numbers = |n: usize| -> String { (0..n).map(|i| format!("+44207000{i:04}\n")).collect() };
    let (proxy, list, conf) = with_list_file(base, &numbers(1000));
    assert!(ask(base, "+442070000999", "c1").starts_with("SIP/2.0 608 "));
    // `check --against` the running files says the reload would refuse a cut (QA 119
    // N4: it said ok).
    let old = tempfile::tempdir().unwrap();
    std::fs::write(old.path().join("sipfence.toml"), &conf).unwrap();
    std::fs::write(old.path().join("blacklist.txt"), numbers(1000)).unwrap();
    std::fs::write(&list, numbers(10)).unwrap();
    let said = proxy.check(Some(&old.path().join("sipfence.toml")));
    assert!(
        said.contains("a reload refuses it: list blacklist 1000 -> 10 entries lost more than half")
            && !said.contains("\nok\n"),
        "{said}"
    );
    // Cut to nothing, then to 400 of 1000: refused, named, the running list kept.
    for (kept, shown) in [(0, "1000 -> 0 entries"), (400, "1000 -> 400 entries")] {
        std::fs::write(&list, numbers(kept)).unwrap();
        let (code, body) = proxy.http("POST", "/reload");
        assert_eq!(code, 422, "{body}");
        assert!(
            body.contains(&format!("list blacklist {shown} lost more than half"))
                && body.contains("POST /reload?force=1"),
            "{body}"
        );
        proxy.signal("HUP");
    }
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        proxy.metric("sipfence_policy_reloads_total{result=\"failed\"}"),
        4.0
    );
    assert!(ask(base, "+442070000999", "c2").starts_with("SIP/2.0 608 "));
    // Half and one kept: an edit, taken, with a warning (more than a tenth lost: QA
    // 152, a file read while a feed rewrote it went in with an info line).
    std::fs::write(&list, numbers(501)).unwrap();
    let (code, body) = proxy.http("POST", "/reload");
    assert_eq!(code, 200, "{body}");
    assert!(
        body.contains("warning: list blacklist 1000 -> 501 entries lost more than a tenth: meant?"),
        "{body}"
    );
    assert!(!ask(base, "+442070000999", "c3").starts_with("SIP/2.0 608"));
    // Forced, the cut list is taken.
    std::fs::write(&list, numbers(10)).unwrap();
    assert_eq!(proxy.http("POST", "/reload").0, 422);
    let (code, body) = proxy.http("POST", "/reload?force=1");
    assert_eq!(code, 200, "{body}");
    assert!(!ask(base, "+442070000500", "c4").starts_with("SIP/2.0 608"));
    assert!(ask(base, "+442070000009", "c5").starts_with("SIP/2.0 608 "));
}

/// Reloads run one at a time (QA 152: a reload that read a long list file and one
/// asked after the file was replaced ran at once; the first to begin finished last and
/// put the older list back in force, a number just added and answered "loaded" let
/// through again). Here the first reads 3M entries, the second a shorter list with one
/// number more, asked while the first reads: the newer list is the one in force.
#[test]
fn overlapping_reloads_end_with_the_newest_files() {
    let base = port_block();
    let numbers = |n: usize| -> String { (0..n).map(|i| format!("+44207{i:07}\n")).collect() };
    let (proxy, list, _) = with_list_file(base, &numbers(3_000_000));
    let proxy = std::sync::Arc::new(proxy);
    let added = "+442079999999";
    assert!(!ask(base, added, "o1").starts_with("SIP/2.0 608"));
    let first = {
        let proxy = proxy.clone();
        std::thread::spawn(move || proxy.http("POST", "/reload"))
    };
    std::thread::sleep(Duration::from_millis(300));
    let newer = list.with_extension("new");
    std::fs::write(&newer, numbers(1_600_000) + added + "\n").unwrap();
    std::fs::rename(&newer, &list).unwrap();
    let (code, body) = proxy.http("POST", "/reload");
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("blacklist 1600001 entries"), "{body}");
    let (code, body) = first.join().unwrap();
    assert_eq!(code, 200, "{body}");
    assert!(
        ask(base, added, "o2").starts_with("SIP/2.0 608 "),
        "the list read first was put back in force"
    );
    // Asked while another runs, a reload is answered by the next to begin: three at
    // once load twice at most.
    let before = proxy.metric("sipfence_policy_reloads_total{result=\"ok\"}");
    let three: Vec<_> = (0..3)
        .map(|_| {
            let proxy = proxy.clone();
            std::thread::spawn(move || proxy.http("POST", "/reload"))
        })
        .collect();
    for t in three {
        let (code, body) = t.join().unwrap();
        assert_eq!(code, 200, "{body}");
    }
    let loads = proxy.metric("sipfence_policy_reloads_total{result=\"ok\"}") - before;
    assert!((1.0..=2.0).contains(&loads), "{loads}");
}

/// The running policy is named by the fingerprint of its content (config and list
/// files): what `check` prints, `/healthz` shows and `sipfence_policy_info` names. A
/// reload that changes a list file changes it, a refused one keeps it, and the same
/// files again give the same one (it is of the content, not of the load).
#[test]
fn the_running_policy_is_named_by_its_fingerprint() {
    let base = port_block();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("bl.txt"), "+442079999999\n").unwrap();
    let cfg = config(base, "\"+8613800000001\"").replace(
        "[lists.blacklist]\nentries = [\"+8613800000001\"]",
        "[lists.blacklist]\nfiles = [\"bl.txt\"]",
    );
    assert!(cfg.contains("files = [\"bl.txt\"]"), "{cfg}");
    let proxy = Proxy::start_in(dir, &cfg, 1, &|_| {});
    let list = proxy.dir.path().join("bl.txt");
    let printed = |p: &Proxy| -> String {
        let out = p.check(None);
        out.lines()
            .find_map(|l| l.trim().strip_prefix("fingerprint "))
            .and_then(|r| r.get(..16))
            .unwrap_or_else(|| panic!("no fingerprint in check's output:\n{out}"))
            .to_string()
    };
    let shown = |p: &Proxy| -> String {
        let (code, body) = p.http("GET", "/healthz");
        assert_eq!(code, 200, "{body}");
        body.split_whitespace()
            .find_map(|w| w.strip_prefix("fingerprint="))
            .unwrap_or_else(|| panic!("no fingerprint in /healthz: {body}"))
            .to_string()
    };
    let info = |fp: &str| format!("sipfence_policy_info{{fingerprint=\"{fp}\"}}");
    let first = printed(&proxy);
    assert_eq!(shown(&proxy), first);
    assert_eq!(proxy.metric(&info(&first)), 1.0);

    // The list file changes, the config text does not: another policy.
    std::fs::write(&list, "+442079999999\n+442071111111\n").unwrap();
    let (code, body) = proxy.http("POST", "/reload");
    assert_eq!(code, 200, "{body}");
    let second = printed(&proxy);
    assert_ne!(second, first);
    assert_eq!(shown(&proxy), second);
    assert_eq!(proxy.metric(&info(&second)), 1.0);
    let (_, metrics) = proxy.http("GET", "/metrics");
    assert!(
        !metrics.contains(&first),
        "the old policy's series is gone:\n{metrics}"
    );

    // A list that does not load: refused, and the running policy keeps its name.
    std::fs::write(&list, "+442079999999\nalice\n").unwrap();
    let (code, body) = proxy.http("POST", "/reload");
    assert_eq!(code, 422, "{body}");
    assert_eq!(shown(&proxy), second);
    assert_eq!(proxy.metric(&info(&second)), 1.0);

    // The first files again: the first fingerprint.
    std::fs::write(&list, "+442079999999\n").unwrap();
    let (code, body) = proxy.http("POST", "/reload");
    assert_eq!(code, 200, "{body}");
    assert_eq!(shown(&proxy), first);
    assert_eq!(printed(&proxy), first);
}

/// The fingerprint is of the policy, not of one gateway's file (QA 80): comments, the
/// order of keys, listen addresses, `[metrics]`, `[redis] instance` and a list file's
/// name change nothing; a rule, an entry, a list file's bytes or a next hop do.
#[test]
fn gateways_running_one_policy_show_one_fingerprint() {
    use sipfence::policy::Policy;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("bl.txt"), "+442079999999\n").unwrap();
    std::fs::write(dir.path().join("copy.txt"), "+442079999999\n").unwrap();
    let gw = |listen: &str, metrics: &str, instance: &str, file: &str| {
        format!(
            "[lists.blacklist]\nfiles = [\"{file}\"]\n[[trunk]]\nname = \"intl\"\nrole = \"international\"\nlisten = [\"udp:{listen}:5060\"]\nsources = [\"192.0.2.0/24\"]\nnext_hop = \"udp:10.0.0.10:5060\"\n[metrics]\nlisten = \"{metrics}:9090\"\n[redis]\nurl = \"redis://10.0.0.50:6379\"\ninstance = \"{instance}\"\n"
        )
    };
    let fp = |text: &str| {
        Policy::from_str(text, "gw.toml", dir.path())
            .unwrap()
            .fingerprint()
    };
    let one = fp(&gw("10.1.0.1", "10.1.0.1", "gw-bj-1", "bl.txt"));
    for (what, text) in [
        (
            "another gateway",
            gw("10.2.0.1", "10.2.0.1", "gw-sh-1", "bl.txt"),
        ),
        (
            "a comment and indentation",
            format!(
                "# gateway 2\n{}",
                gw("10.1.0.1", "10.1.0.1", "gw-bj-1", "bl.txt")
            )
            .replace("role =", "  role   ="),
        ),
        (
            "keys in another order",
            gw("10.1.0.1", "10.1.0.1", "gw-bj-1", "bl.txt")
                .replace("role = \"international\"\nlisten", "listen")
                .replace("next_hop =", "role = \"international\"\nnext_hop ="),
        ),
        (
            "a copy of the list",
            gw("10.1.0.1", "10.1.0.1", "gw-bj-1", "./copy.txt"),
        ),
        // Each gateway's own workers, address and calls file (QA 153: two gateways on
        // one host need two), in a table of their own or written empty (QA 103: the
        // table's presence counted).
        (
            "its own workers",
            format!(
                "{}[proxy]\nworkers = 4\nadvertise = \"203.0.113.5\"\ncalls_file = \"calls-b\"\n",
                gw("10.1.0.1", "10.1.0.1", "gw-bj-1", "bl.txt")
            ),
        ),
        (
            "empty tables",
            format!(
                "[behaviour]\n[rules]\n[rules.blacklist]\n[lists.roamers]\n[lists.protected]\nfiles = []\nentries = []\n{}[trunk.rules]\n[proxy]\n",
                gw("10.1.0.1", "10.1.0.1", "gw-bj-1", "bl.txt")
            ),
        ),
    ] {
        assert_eq!(fp(&text), one, "{what}:\n{text}");
    }
    std::fs::write(dir.path().join("copy.txt"), "+442079999998\n").unwrap();
    for (what, text) in [
        (
            "another list",
            gw("10.1.0.1", "10.1.0.1", "gw-bj-1", "copy.txt"),
        ),
        (
            "another next hop",
            gw("10.1.0.1", "10.1.0.1", "gw-bj-1", "bl.txt").replace("10.0.0.10", "10.0.0.11"),
        ),
        (
            "a proxy setting",
            format!(
                "{}[proxy]\nworkers = 4\noverload_ms = 100\n",
                gw("10.1.0.1", "10.1.0.1", "gw-bj-1", "bl.txt")
            ),
        ),
        (
            "behaviour rules on (defaults)",
            gw("10.1.0.1", "10.1.0.1", "gw-bj-1", "bl.txt")
                .replace("[metrics]", "[trunk.behaviour]\n[metrics]"),
        ),
        (
            "an entry more",
            gw("10.1.0.1", "10.1.0.1", "gw-bj-1", "bl.txt")
                .replace("files = [", "entries = [\"+8613800000001\"]\nfiles = ["),
        ),
    ] {
        assert_ne!(fp(&text), one, "{what}:\n{text}");
    }
}

/// A reload says what it changed, and what it cannot apply: a new listen address is
/// read at start only, so the answer says "needs a restart" and
/// `sipfence_restart_pending` stays up until the setting is back as the process runs it.
#[test]
fn reload_says_what_it_changed_and_what_takes_a_restart() {
    let base = port_block();
    let proxy = Proxy::start(&config(base, "\"+442079999999\""), 1);
    let cfg_path = proxy.dir.path().join("sipfence.toml");
    assert_eq!(proxy.metric("sipfence_restart_pending"), 0.0);
    let (code, body) = proxy.http("POST", "/reload");
    assert_eq!(code, 200, "{body}");
    assert!(
        body.contains("no change to lists, trunks or rules"),
        "{body}"
    );
    // The log says so too (QA 145).
    let logged = (0..50).any(|_| {
        let said = proxy
            .stderr
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("reload applies no change to lists, trunks or rules"));
        if !said {
            std::thread::sleep(Duration::from_millis(100));
        }
        said
    });
    assert!(logged, "{:?}", proxy.stderr.lock().unwrap());

    let udp_only = format!("listen = [\"udp:127.0.0.1:{base}\"]");
    let with_tcp = format!("listen = [\"udp:127.0.0.1:{base}\", \"tcp:127.0.0.1:{base}\"]");
    std::fs::write(
        &cfg_path,
        config(base, "\"+442079999999\", \"+442071111111\"").replace(&udp_only, &with_tcp),
    )
    .unwrap();
    let (code, body) = proxy.http("POST", "/reload");
    assert_eq!(code, 200, "{body}");
    assert!(
        body.contains("applied: list blacklist +1 -0 (1 -> 2 entries)"),
        "{body}"
    );
    assert!(
        body.contains(&format!(
            "needs a restart (read at start only): listen addresses +tcp:127.0.0.1:{base}"
        )),
        "{body}"
    );
    // The trunk's new listen address is not bound: it keeps the running one until then.
    assert!(
        body.contains("trunk intl: listen [") && body.contains("waits for the restart"),
        "{body}"
    );
    assert_eq!(proxy.metric("sipfence_restart_pending"), 2.0);
    // What a reload can apply, it did.
    assert!(ask(base, "+442071111111", "c1").starts_with("SIP/2.0 608 "));

    // The listen address back as the process runs it: nothing pending any more.
    std::fs::write(
        &cfg_path,
        config(base, "\"+442079999999\", \"+442071111111\""),
    )
    .unwrap();
    let (code, body) = proxy.http("POST", "/reload");
    assert_eq!(code, 200, "{body}");
    assert!(!body.contains("needs a restart"), "{body}");
    assert_eq!(proxy.metric("sipfence_restart_pending"), 0.0);
}

/// A trunk moved to a listen address no socket is bound to keeps taking its calls where
/// they come now until the restart (QA 40: its peer was answered "Unknown source" at
/// once), and the reload says so; put back, nothing is pending.
#[test]
fn a_trunk_moved_to_an_unbound_address_keeps_its_calls() {
    let base = port_block();
    let proxy = Proxy::start(&config(base, "\"+442079999999\""), 1);
    let cfg_path = proxy.dir.path().join("sipfence.toml");
    assert!(ask(base, "+442079999999", "m0").starts_with("SIP/2.0 608 "));
    let moved = config(base, "\"+442079999999\"").replace(
        &format!("listen = [\"udp:127.0.0.1:{base}\"]"),
        &format!("listen = [\"udp:127.0.0.1:{}\"]", base + 1),
    );
    std::fs::write(&cfg_path, moved).unwrap();
    let (code, body) = proxy.http("POST", "/reload");
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("waits for the restart"), "{body}");
    assert!(
        !body.contains("applied: trunk intl: listen"),
        "not applied: {body}"
    );
    // Still the trunk's call: refused by the blacklist, not as an unknown source.
    assert!(ask(base, "+442079999999", "m1").starts_with("SIP/2.0 608 "));
    std::fs::write(&cfg_path, config(base, "\"+442079999999\"")).unwrap();
    let (code, body) = proxy.http("POST", "/reload");
    assert_eq!(code, 200, "{body}");
    assert_eq!(proxy.metric("sipfence_restart_pending"), 0.0);
}

/// A `[::]` listener's Via and Record-Route addresses are found at start: a reload whose
/// next hop is of another IP family says they wait for the restart (QA 40: they
/// silently stayed those of the old family).
#[test]
fn a_reload_that_would_rename_a_wildcard_listener_says_so() {
    if UdpSocket::bind("[::1]:0").is_err() {
        eprintln!("skipped: this host has no IPv6 loopback (::1)");
        return;
    }
    let base = port_block();
    let v4 = config(base, "\"+442079999999\"").replace(
        &format!("listen = [\"udp:127.0.0.1:{base}\"]"),
        &format!("listen = [\"udp:[::]:{base}\"]"),
    );
    let proxy = Proxy::start(&v4, 1);
    let cfg_path = proxy.dir.path().join("sipfence.toml");
    let v6 = v4.replace(
        &format!("next_hop = \"udp:127.0.0.1:{}\"", base + 10),
        &format!("next_hop = \"udp:[::1]:{}\"", base + 10),
    );
    std::fs::write(&cfg_path, v6).unwrap();
    let (code, body) = proxy.http("POST", "/reload");
    assert_eq!(code, 200, "{body}");
    assert!(
        body.contains(&format!(
            "needs a restart (read at start only): listen [::]:{base}: Via and Record-Route name 127.0.0.1 until the restart"
        )),
        "{body}"
    );
    assert!(proxy.metric("sipfence_restart_pending") >= 1.0);
    // `check --against` says the same (QA 41).
    let old_path = proxy.dir.path().join("old.toml");
    std::fs::write(&old_path, &v4).unwrap();
    let said = proxy.check(Some(&old_path));
    assert!(
        said.contains(&format!(
            "needs a restart (read at start only): listen [::]:{base}: Via and Record-Route name 127.0.0.1 until the restart"
        )),
        "{said}"
    );
    std::fs::write(&cfg_path, v4).unwrap();
    let (code, body) = proxy.http("POST", "/reload");
    assert_eq!(code, 200, "{body}");
    assert_eq!(proxy.metric("sipfence_restart_pending"), 0.0);
}

/// A reload asked for while sipfence starts (lists still loading) waits for the start
/// to finish and is then done; it does not end the process, as SIGHUP's default action
/// would (systemd would not restart a service that SIGHUP ended).
#[test]
fn a_reload_during_start_is_done_after_it() {
    let base = port_block();
    let dir = tempfile::tempdir().unwrap();
    // A list long enough that loading it takes a while.
    let mut list = String::with_capacity(300_000 * 16);
    for i in 0..300_000u32 {
        list.push_str(&format!("+86139{i:08}\n"));
    }
    std::fs::write(dir.path().join("bl.txt"), list).unwrap();
    let cfg = config(base, "\"+8613800000001\"").replace(
        "[lists.blacklist]\nentries = [\"+8613800000001\"]",
        "[lists.blacklist]\nfiles = [\"bl.txt\"]",
    );
    assert!(cfg.contains("files = [\"bl.txt\"]"), "{cfg}");
    let proxy = Proxy::start_in(dir, &cfg, 1, &|pid| {
        // Once the process holds SIGHUP back (its first step; the exec before it is
        // no part of sipfence), while it loads the list.
        let held = || {
            std::fs::read_to_string(format!("/proc/{pid}/status"))
                .ok()
                .and_then(|s| {
                    s.lines()
                        .find_map(|l| l.strip_prefix("SigBlk:"))
                        .and_then(|m| u64::from_str_radix(m.trim(), 16).ok())
                })
                .is_some_and(|m| m & 1 != 0)
        };
        let t = std::time::Instant::now();
        while !held() {
            assert!(t.elapsed() < Duration::from_secs(10), "SIGHUP never held");
            std::thread::sleep(Duration::from_millis(1));
        }
        for _ in 0..3 {
            let _ = std::process::Command::new("kill")
                .args(["-HUP", &pid.to_string()])
                .status();
            std::thread::sleep(Duration::from_millis(10));
        }
    });
    // Alive, serving, and the held-back reload done once it could be.
    let t = std::time::Instant::now();
    while proxy.metric("sipfence_policy_reloads_total{result=\"ok\"}") < 1.0 {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "no reload after the start"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(ask(base, "+8613900000007", "after-start").starts_with("SIP/2.0 608"));
}

/// Under systemd (`Type=notify`) the gateway says READY=1 once it serves, its policy
/// version after a reload, and STOPPING=1 at SIGTERM, on the socket systemd names.
#[test]
fn the_service_manager_hears_ready_reload_and_stop() {
    use std::os::unix::net::UnixDatagram;
    let base = port_block();
    let dir = tempfile::tempdir().unwrap();
    let sock_path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let cfg_path = dir.path().join("sipfence.toml");
    std::fs::write(&cfg_path, config(base, "\"+8613800000001\"")).unwrap();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_sipfence"))
        .args(["run", "--config", cfg_path.to_str().unwrap()])
        .env("NOTIFY_SOCKET", &sock_path)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut proc = common::Proc(child);
    let pid = proc.0.id().to_string();
    let mut b = [0u8; 512];
    let next = |b: &mut [u8]| {
        let n = sock.recv(b).expect("a notification");
        String::from_utf8_lossy(&b[..n]).into_owned()
    };
    let ready = next(&mut b);
    assert!(
        ready.starts_with("READY=1\n") && ready.contains("policy v1"),
        "{ready}"
    );
    // Ready means serving: the first call gets its verdict at once.
    assert!(ask(base, "+8613800000001", "ready").starts_with("SIP/2.0 608"));
    let _ = std::process::Command::new("kill")
        .args(["-HUP", &pid])
        .status();
    let status = next(&mut b);
    assert_eq!(status, "STATUS=serving, policy v2");
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status();
    assert_eq!(next(&mut b), "STOPPING=1");
    let exit = proc.0.wait().unwrap();
    assert!(exit.success(), "{exit:?}");
}

/// QA 37: with `[log] json = true` the lines the proxy prints about itself (where it
/// listens, its workers, a reload) are JSON objects shaped as its log events, so a
/// shipper reading the journal meets one format.
#[test]
fn json_logs_make_the_start_lines_json_too() {
    let base = port_block();
    let proxy = Proxy::start(
        &format!(
            r#"
[log]
json = true
[[trunk]]
name = "ent"
role = "enterprise"
listen = ["udp:127.0.0.1:{base}"]
sources = ["127.0.0.0/8"]
next_hop = "udp:127.0.0.1:{uas}"
[trunk.whitelist]
entries = ["+8613912340000..+8613912349999"]
[metrics]
listen = ""
"#,
            uas = base + 10
        ),
        1,
    );
    let lines = proxy.stdout.lock().unwrap().clone();
    assert!(lines.len() >= 2, "{lines:?}");
    let mut listening = false;
    for l in &lines {
        let v: serde_json::Value =
            serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"));
        assert_eq!(v["level"], "INFO", "{l}");
        assert!(
            v["timestamp"].as_str().is_some_and(|t| t.ends_with('Z')),
            "{l}"
        );
        let message = v["fields"]["message"].as_str().unwrap_or_default();
        listening |= message.starts_with("sipfence: listening on udp:127.0.0.1:");
    }
    assert!(listening, "{lines:?}");
}
