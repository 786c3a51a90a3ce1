//! End to end: the real binary between a real SIP client and server (sipp), over real
//! sockets on 127.0.0.1. Every blocking rule answers the configured code at the client,
//! allowed calls complete INVITE/100/180/200/ACK/BYE, edits arrive at the server.

mod common;

use common::{
    Proxy, Uac, port_block, run_sipp, sipp_available, sipp_uas, sipp_uas_on, uac_scenario, udp_core,
};
use std::net::UdpSocket;
use std::path::Path;
use std::time::Duration;

/// An initial INVITE from `caller` at `me`, its Call-ID and branch named `id`.
fn invite_from(me: std::net::SocketAddr, caller: &str, id: &str) -> String {
    format!(
        "INVITE sip:+861012345678@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-{id}\r\nFrom: <sip:{caller}@{me}>;tag=1\r\nTo: <sip:+861012345678@127.0.0.1>\r\nCall-ID: {id}\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    )
}

/// Waits until the proxy marks no next hop down, for at most `wait`.
fn no_next_hop_down_within(proxy: &Proxy, wait: Duration, why: &str) {
    let deadline = std::time::Instant::now() + wait;
    while proxy.metric("sipfence_next_hops_down") != 0.0 {
        assert!(std::time::Instant::now() < deadline, "{why}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A caller on a UDP socket of its own: each call sends `caller`'s INVITE (Call-ID
/// `id`) to the proxy's `port` and gives back the answer, or "" when none comes within
/// `wait`.
fn caller_to(port: u16, caller: &'static str, wait: Duration) -> impl Fn(&str) -> String {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(wait)).unwrap();
    let me = sock.local_addr().unwrap();
    move |id| {
        sock.send_to(invite_from(me, caller, id).as_bytes(), ("127.0.0.1", port))
            .unwrap();
        let mut b = [0u8; 4096];
        sock.recv(&mut b)
            .map(|n| String::from_utf8_lossy(&b[..n]).into_owned())
            .unwrap_or_default()
    }
}

/// Sends `msg` to the proxy's `port` and reads the datagram that answers it.
fn answer_to(sock: &UdpSocket, port: u16, msg: &str) -> String {
    sock.send_to(msg.as_bytes(), ("127.0.0.1", port)).unwrap();
    let mut b = [0u8; 4096];
    let n = sock.recv(&mut b).expect("an answer");
    String::from_utf8_lossy(&b[..n]).into_owned()
}

/// [`config`] with the international trunk's next hop (the core at `base + 10`) over
/// TCP, and `terms` (trunk keys) after it.
fn tcp_core_config(base: u16, terms: &str) -> String {
    config(base, "").replacen(
        &format!("next_hop = \"udp:127.0.0.1:{}\"", base + 10),
        &format!("next_hop = \"tcp:127.0.0.1:{}\"\n{terms}", base + 10),
        1,
    )
}

fn config(base: u16, extra: &str) -> String {
    format!(
        r#"
[general]
verstat = "TN-Validation-Failed"
[lists.blacklist]
entries = ["+8613800000001", "+8617099999*"]
[lists.roamers]
entries = ["+8613900000000"]

[[trunk]]
name = "intl"
role = "international"
listen = ["udp:127.0.0.1:{intl}", "tcp:127.0.0.1:{intl}"]
sources = ["127.0.0.0/8"]
next_hop = "udp:127.0.0.1:{uas}"

[[trunk]]
name = "ent"
role = "enterprise"
listen = ["udp:127.0.0.1:{ent}", "tcp:127.0.0.1:{ent}"]
sources = ["127.0.0.0/8"]
next_hop = "udp:127.0.0.1:{uas}"
[trunk.whitelist]
entries = ["+8613912340000..+8613912349999"]

[[trunk]]
name = "ic"
role = "interconnect"
listen = ["udp:127.0.0.1:{ic}"]
sources = ["127.0.0.0/8"]
next_hop = "udp:127.0.0.1:{uas}"

[metrics]
listen = "127.0.0.1:{metrics}"
{extra}
"#,
        intl = base,
        ent = base + 2,
        ic = base + 4,
        uas = base + 10,
        metrics = base + 30,
    )
}

fn uas_check_scenario(
    dir: &Path,
    name: &str,
    must: &[&str],
    must_not: &[&str],
) -> std::path::PathBuf {
    let mut checks = String::new();
    let xml = |re: &str| {
        re.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
    };
    let must: Vec<String> = must.iter().map(|r| xml(r)).collect();
    let must_not: Vec<String> = must_not.iter().map(|r| xml(r)).collect();
    for re in must.iter() {
        checks.push_str(&format!(
            "      <ereg regexp=\"{re}\" search_in=\"msg\" check_it=\"true\" assign_to=\"chk\"/>\n"
        ));
    }
    for re in must_not.iter() {
        checks.push_str(&format!("      <ereg regexp=\"{re}\" search_in=\"msg\" check_it_inverse=\"true\" assign_to=\"chk\"/>\n"));
    }
    // sipp refuses a variable that is set but never read.
    checks.push_str("      <log message=\"checked [$chk]\"/>\n");
    let p = dir.join(format!("uas-{name}.xml"));
    std::fs::write(
        &p,
        include_str!("../testdata/sipp/uas-check.xml.in").replace("@CHECKS@", &checks),
    )
    .unwrap();
    p
}

/// Places one call per row at `port` and asserts every one ends as `expect`.
fn calls(
    dir: &Path,
    port: u16,
    uac_port: u16,
    transport: &str,
    expect: u16,
    rows: &[(&str, &str, &str)],
) {
    calls_at("127.0.0.1", dir, port, uac_port, transport, expect, rows)
}

/// [`calls`] from and to `ip`.
fn calls_at(
    ip: &str,
    dir: &Path,
    port: u16,
    uac_port: u16,
    transport: &str,
    expect: u16,
    rows: &[(&str, &str, &str)],
) {
    let csv = dir.join(format!("calls-{port}-{expect}-{uac_port}.csv"));
    let mut s = String::from("SEQUENTIAL\n");
    for (from, h1, h2) in rows {
        s.push_str(&format!("{from};{h1};{h2};\n"));
    }
    std::fs::write(&csv, s).unwrap();
    let sc = uac_scenario(dir, expect);
    let (code, out) = Uac {
        dir,
        scenario: &sc,
        csv: &csv,
        port,
        uac_port,
        transport,
        calls: rows.len(),
        rate: 20,
    }
    .run_at(ip);
    let errs = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains("errors"))
        .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n");
    assert_eq!(
        code, 0,
        "sipp {transport} to {port} expecting {expect}: exit {code}\n{out}\n{errs}"
    );
}

const ALLOWED_INTL: &[(&str, &str, &str)] = &[
    ("+442071234567@", "X-No-PAI: 1", "X-No-Privacy: 1"),
    ("+12125550123@", "X-No-PAI: 1", "X-No-Privacy: 1"),
    (
        "+8613812345678@",
        "P-Asserted-Identity: <sip:+442071234567@10.20.30.40>",
        "X-No-Privacy: 1",
    ),
    ("+8613900000000@", "X-No-PAI: 1", "X-No-Privacy: 1"),
];

#[test]
fn udp_calls_allowed_and_blocked_by_each_rule() {
    if !sipp_available() {
        return;
    }
    let base = port_block();
    let proxy = Proxy::start(&config(base, ""), 2);
    let dir = proxy.dir.path().to_path_buf();
    let _uas = sipp_uas(base + 10, None, &dir);
    let (intl, ent, ic) = (base, base + 2, base + 4);
    calls(&dir, intl, base + 20, "u1", 200, ALLOWED_INTL);
    calls(
        &dir,
        ent,
        base + 21,
        "u1",
        200,
        &[
            ("+8613912345678@", "X-No-PAI: 1", "X-No-Privacy: 1"),
            (
                "trunk-gw@",
                "P-Asserted-Identity: <sip:13912340001@10.1.1.1>",
                "X-No-Privacy: 1",
            ),
        ],
    );
    calls(
        &dir,
        ic,
        base + 22,
        "u1",
        200,
        &[
            ("+8617012345678@", "X-No-PAI: 1", "X-No-Privacy: 1"),
            ("02161234567@", "X-No-PAI: 1", "X-No-Privacy: 1"),
        ],
    );
    // intl-domestic-caller, intl-forged-service, numbering-plan, no-voice-number: 403
    calls(
        &dir,
        intl,
        base + 23,
        "u1",
        403,
        &[
            ("+8613812345678@", "X-No-PAI: 1", "X-No-Privacy: 1"),
            (
                "+442071234567@",
                "P-Asserted-Identity: <sip:+8618612345678@10.20.30.40>",
                "X-No-Privacy: 1",
            ),
            ("110@", "X-No-PAI: 1", "X-No-Privacy: 1"),
            ("+12345@", "X-No-PAI: 1", "X-No-Privacy: 1"),
        ],
    );
    calls(
        &dir,
        ic,
        base + 24,
        "u1",
        403,
        &[
            ("+8614512345678@", "X-No-PAI: 1", "X-No-Privacy: 1"),
            ("02612345678@", "X-No-PAI: 1", "X-No-Privacy: 1"),
        ],
    );
    // blank-caller and withheld-caller: 433 (RFC 5079)
    calls(
        &dir,
        intl,
        base + 25,
        "u1",
        433,
        &[
            ("", "X-No-PAI: 1", "X-No-Privacy: 1"),
            ("anonymous@", "X-No-PAI: 1", "X-No-Privacy: 1"),
            ("+442071234567@", "X-No-PAI: 1", "Privacy: id"),
        ],
    );
    calls(
        &dir,
        ent,
        base + 26,
        "u1",
        433,
        &[(
            "+8613912345678@",
            "P-Asserted-Identity: <sip:anonymous@10.1.1.1>",
            "X-No-Privacy: 1",
        )],
    );
    // blacklist: 608 (RFC 8688), exact and segment, and over the whitelist
    calls(
        &dir,
        ic,
        base + 27,
        "u1",
        608,
        &[
            ("13800000001@", "X-No-PAI: 1", "X-No-Privacy: 1"),
            ("+8617099999123@", "X-No-PAI: 1", "X-No-Privacy: 1"),
        ],
    );
    // enterprise-not-whitelisted, and enterprise-foreign-network for another country's
    // number: 403
    calls(
        &dir,
        ent,
        base + 28,
        "u1",
        403,
        &[
            ("13812345678@", "X-No-PAI: 1", "X-No-Privacy: 1"),
            ("+442071234567@", "X-No-PAI: 1", "X-No-Privacy: 1"),
        ],
    );

    // Counters match the calls, rule by rule (INVITE retransmissions aside, each call once).
    let m = |s: &str| proxy.metric(s);
    assert_eq!(
        m("sipfence_calls_total{trunk=\"intl\",verdict=\"allow\"}")
            + m("sipfence_calls_total{trunk=\"intl\",verdict=\"rewrite\"}"),
        4.0
    );
    assert_eq!(
        m("sipfence_rule_hits_total{action=\"rewrite\",rule=\"generic-number\",trunk=\"intl\"}"),
        1.0
    );
    assert_eq!(
        m(
            "sipfence_rule_hits_total{action=\"reject\",rule=\"intl-domestic-caller\",trunk=\"intl\"}"
        ),
        2.0
    );
    assert_eq!(
        m(
            "sipfence_rule_hits_total{action=\"reject\",rule=\"intl-forged-service\",trunk=\"intl\"}"
        ),
        1.0
    );
    assert_eq!(
        m("sipfence_rule_hits_total{action=\"reject\",rule=\"numbering-plan\",trunk=\"intl\"}"),
        1.0
    );
    assert_eq!(
        m("sipfence_rule_hits_total{action=\"reject\",rule=\"numbering-plan\",trunk=\"ic\"}"),
        1.0
    );
    assert_eq!(
        m("sipfence_rule_hits_total{action=\"reject\",rule=\"no-voice-number\",trunk=\"ic\"}"),
        1.0
    );
    assert_eq!(
        m("sipfence_rule_hits_total{action=\"reject\",rule=\"blank-caller\",trunk=\"intl\"}"),
        2.0
    );
    assert_eq!(
        m("sipfence_rule_hits_total{action=\"reject\",rule=\"withheld-caller\",trunk=\"intl\"}"),
        1.0
    );
    assert_eq!(
        m("sipfence_rule_hits_total{action=\"reject\",rule=\"blank-caller\",trunk=\"ent\"}"),
        1.0
    );
    assert_eq!(
        m("sipfence_rule_hits_total{action=\"reject\",rule=\"blacklist\",trunk=\"ic\"}"),
        2.0
    );
    assert_eq!(
        m(
            "sipfence_rule_hits_total{action=\"reject\",rule=\"enterprise-not-whitelisted\",trunk=\"ent\"}"
        ),
        1.0
    );
    assert_eq!(
        m(
            "sipfence_rule_hits_total{action=\"reject\",rule=\"enterprise-foreign-network\",trunk=\"ent\"}"
        ),
        1.0
    );
    assert_eq!(
        m("sipfence_rule_hits_total{action=\"label\",rule=\"label-mvno\",trunk=\"ic\"}"),
        1.0
    );
    assert_eq!(
        m("sipfence_calls_total{trunk=\"ent\",verdict=\"allow\"}"),
        2.0
    );
    assert_eq!(
        m("sipfence_calls_total{trunk=\"ic\",verdict=\"reject\"}"),
        4.0
    );
}

/// The exempt list at work, with sipp on both sides: a blacklisted number the
/// operator vouches for completes its call, another listed number is still refused,
/// and the counters say how often the exemption overrode the blacklist.
/// The contract's hours and call frequency answer the caller at sipp, with the code and
/// reason the policy sets (QA 204: the hour rule was never driven through the running
/// proxy, the trunk rate only by raw UDP, and no end-to-end test set an answer other
/// than a rule's default). The hours are two hours away from now, whenever it runs.
#[test]
fn hour_and_rate_rules_answer_the_caller_as_configured() {
    if !sipp_available() {
        return;
    }
    let base = port_block();
    let hour = sipfence::cli::now_ms() / 3_600_000 % 24;
    let (hours, rate) = (base + 6, base + 8);
    let trunk = |name: &str, port: u16, terms: &str| {
        format!(
            "[[trunk]]\nname = \"{name}\"\nrole = \"enterprise\"\nlisten = [\"udp:127.0.0.1:{port}\"]\nsources = [\"127.0.0.0/8\"]\nnext_hop = \"udp:127.0.0.1:{}\"\n{terms}\n[trunk.whitelist]\nentries = [\"+8613912340000..+8613912349999\"]\n",
            base + 10
        )
    };
    let extra = format!(
        "[rules.enterprise-hours]\ncode = 480\nreason = \"Outside the contracted hours\"\n{}{}",
        trunk(
            "ent-hours",
            hours,
            &format!(
                "hours = \"{:02}:00-{:02}:00\"\nutc_offset = \"+00:00\"",
                (hour + 2) % 24,
                (hour + 3) % 24
            )
        ),
        trunk("ent-rate", rate, "max_calls_per_minute = 2"),
    );
    let proxy = Proxy::start(&config(base, &extra), 2);
    let dir = proxy.dir.path().to_path_buf();
    let _uas = sipp_uas(base + 10, None, &dir);
    let caller = [("+8613912345678@", "X-No-PAI: 1", "X-No-Privacy: 1")];
    // Outside the hours: 480 with the reason set, read by sipp.
    let sc = uac_scenario(&dir, 480);
    let xml = std::fs::read_to_string(&sc).unwrap().replace(
        "<recv response=\"480\"> </recv>",
        "<recv response=\"480\"><action><ereg regexp=\"Reason: SIP;cause=480;text=&quot;Outside the contracted hours&quot;\" search_in=\"msg\" check_it=\"true\" assign_to=\"why\"/><log message=\"[$why]\"/></action></recv>",
    );
    assert!(xml.contains("assign_to=\"why\""));
    let sc = dir.join("uac-480-reason.xml");
    std::fs::write(&sc, xml).unwrap();
    let csv = dir.join("hours.csv");
    std::fs::write(
        &csv,
        "SEQUENTIAL\n+8613912345678@;X-No-PAI: 1;X-No-Privacy: 1;\n",
    )
    .unwrap();
    let (code, out) = Uac {
        dir: &dir,
        scenario: &sc,
        csv: &csv,
        port: hours,
        uac_port: base + 20,
        transport: "u1",
        calls: 1,
        rate: 20,
    }
    .run();
    assert_eq!(code, 0, "outside the hours: {out}");
    // The same caller on a trunk whose contract has no hours goes through: the 480 is
    // the hours'.
    calls(&dir, base + 2, base + 21, "u1", 200, &caller);
    // Two calls a minute: the third is refused with the rule's default answer.
    calls(&dir, rate, base + 22, "u1", 200, &[caller[0], caller[0]]);
    calls(&dir, rate, base + 23, "u1", 403, &caller);
    let hits = |rule: &str, trunk: &str| {
        proxy.metric(&format!(
            "sipfence_rule_hits_total{{action=\"reject\",rule=\"{rule}\",trunk=\"{trunk}\"}}"
        ))
    };
    assert_eq!(hits("enterprise-hours", "ent-hours"), 1.0);
    assert_eq!(hits("enterprise-rate-trunk", "ent-rate"), 1.0);
}

#[test]
fn an_exempt_number_passes_the_blacklist() {
    if !sipp_available() {
        return;
    }
    let base = port_block();
    let proxy = Proxy::start(
        &config(base, "[lists.exempt]\nentries = [\"13800000001\"]\n"),
        1,
    );
    let dir = proxy.dir.path().to_path_buf();
    let _uas = sipp_uas(base + 10, None, &dir);
    let ic = base + 4;
    calls(
        &dir,
        ic,
        base + 20,
        "u1",
        200,
        &[("13800000001@", "X-No-PAI: 1", "X-No-Privacy: 1")],
    );
    calls(
        &dir,
        ic,
        base + 21,
        "u1",
        608,
        &[("+8617099999123@", "X-No-PAI: 1", "X-No-Privacy: 1")],
    );
    let m = |s: &str| proxy.metric(s);
    assert_eq!(
        m("sipfence_exemptions_total{rule=\"blacklist\",trunk=\"ic\"}"),
        1.0
    );
    assert_eq!(
        m("sipfence_rule_hits_total{action=\"reject\",rule=\"blacklist\",trunk=\"ic\"}"),
        1.0
    );
    assert_eq!(m("sipfence_list_entries{list=\"exempt\"}"), 1.0);
}

#[test]
fn tcp_calls_allowed_and_blocked() {
    if !sipp_available() {
        return;
    }
    let base = port_block();
    let proxy = Proxy::start(&config(base, ""), 2);
    let dir = proxy.dir.path().to_path_buf();
    let _uas = sipp_uas(base + 10, None, &dir);
    calls(&dir, base, base + 20, "t1", 200, ALLOWED_INTL);
    calls(
        &dir,
        base,
        base + 21,
        "t1",
        403,
        &[("+8613812345678@", "X-No-PAI: 1", "X-No-Privacy: 1")],
    );
    calls(
        &dir,
        base + 2,
        base + 22,
        "t1",
        200,
        &[("+8613912345678@", "X-No-PAI: 1", "X-No-Privacy: 1")],
    );
    assert!(proxy.metric("sipfence_messages_total{kind=\"request\",transport=\"tcp\"}") >= 6.0);
}

/// The core reached over TCP: the proxy opens one connection to the next hop and every
/// call (UDP from the trunk) crosses it, the UAS's answers and BYE responses coming back
/// over the same connection; blocked calls never reach it.
#[test]
fn tcp_next_hop() {
    if !sipp_available() {
        return;
    }
    let base = port_block();
    let cfg = tcp_core_config(base, "");
    assert!(cfg.contains("next_hop = \"tcp:"));
    let proxy = Proxy::start(&cfg, 2);
    let dir = proxy.dir.path().to_path_buf();
    let _uas = sipp_uas_on(base + 10, None, &dir, "t1");
    calls(&dir, base, base + 20, "u1", 200, ALLOWED_INTL);
    calls(
        &dir,
        base,
        base + 21,
        "u1",
        403,
        &[("+8613812345678@", "X-No-PAI: 1", "X-No-Privacy: 1")],
    );
    // INVITE, ACK and BYE of each allowed call went out over TCP; 100/180/200 and the
    // BYE's 200 came back over it.
    let n = ALLOWED_INTL.len() as f64;
    assert!(
        proxy.metric("sipfence_messages_total{kind=\"response\",transport=\"tcp\"}") >= 3.0 * n
    );
    assert_eq!(
        proxy.metric("sipfence_tcp_connections"),
        1.0,
        "one connection, reused"
    );
}

/// A caller's BYE that a UDP core leaves unanswered frees its call's place once the
/// core is found down (its probes), not before: silence alone may be a core dropping
/// the BYE while the call stays up (QA 127: Kamailio's stock config drops a
/// `friendly-scanner`'s), a dead core never answers (QA 124: such places were held for
/// hours, and the trunk refused calls once the core was back).
#[test]
fn a_bye_a_dead_core_never_answered_frees_its_place() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let base = port_block();
    let cfg = config(base, "[proxy]\nprobe_secs = 1\n").replacen(
        &format!("listen = [\"udp:127.0.0.1:{}\"]\n", base + 4),
        &format!(
            "listen = [\"udp:127.0.0.1:{}\"]\nmax_concurrent_calls = 1\nrecord_route = true\n",
            base + 4
        ),
        1,
    );
    assert!(cfg.contains("max_concurrent_calls = 1"), "{cfg}");
    let proxy = Proxy::start(&cfg, 1);
    let answering = Arc::new(AtomicBool::new(true));
    let stop = Arc::new(AtomicBool::new(false));
    let core_side = {
        let answering = answering.clone();
        udp_core(base + 10, stop.clone(), move |m, from, core| {
            if !answering.load(Ordering::Relaxed) {
                return;
            }
            let answer = if m.starts_with("INVITE ") {
                common::answer_as_uas(m, "200 OK").replacen(
                    "\r\nTo: <sip:+861012345678@127.0.0.1>",
                    "\r\nTo: <sip:+861012345678@127.0.0.1>;tag=core",
                    1,
                )
            } else {
                common::answer_as_uas(m, "200 OK")
            };
            core.send_to(answer.as_bytes(), from).unwrap();
        })
    };
    let caller = UdpSocket::bind("127.0.0.1:0").unwrap();
    caller
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    let me = caller.local_addr().unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let r = answer_to(
        &caller,
        base + 4,
        &invite_from(me, "+8613912345678", "dead-bye"),
    );
    assert!(r.starts_with("SIP/2.0 200 "), "{r}");
    let up = || proxy.metric("sipfence_concurrent_calls{trunk=\"ic\"}");
    assert_eq!(up(), 1.0);
    answering.store(false, Ordering::Relaxed);
    let bye = format!(
        "BYE sip:core@127.0.0.1:{core} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-dead-bye-2\r\nFrom: <sip:+8613912345678@{me}>;tag=1\r\nTo: <sip:+861012345678@127.0.0.1>;tag=core\r\nCall-ID: dead-bye\r\nCSeq: 2 BYE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
        core = base + 10
    );
    caller
        .send_to(bye.as_bytes(), ("127.0.0.1", base + 4))
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(up(), 1.0, "silence alone frees nothing");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while proxy.metric("sipfence_next_hops_down") != 1.0 {
        assert!(std::time::Instant::now() < deadline, "never marked down");
        std::thread::sleep(Duration::from_millis(200));
    }
    // At the next look (every 10 s) at the next hops down.
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while up() != 0.0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the place stayed held"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    stop.store(true, Ordering::Relaxed);
    core_side.join().unwrap();
}

/// A gateway whose wall clock steps (libfaketime moves its wall clock alone, as an NTP
/// step or `date -s` does; the monotonic clock goes on) keeps the calls up and the
/// dialogs it knows: seven hours on, past an answered call's four-hour deadline and the
/// dialogs' six hours, the call still holds the trunk's one place (a second call is
/// answered 503) and its re-INVITE is the call's, not a new one; an hour back, the
/// BYE frees the place and the next call goes on. QA 192 F3/F4: the call's place was
/// freed by the step and its re-INVITE judged as a new call. The log says the clock
/// stepped, and `sipfence_clock_step_seconds` how far.
#[test]
fn a_step_of_the_wall_clock_ends_no_call_and_forgets_no_dialog() {
    use std::sync::Arc;
    use std::sync::atomic::AtomicBool;
    let Some(lib) = common::faketime_lib() else {
        return;
    };
    let base = port_block();
    let cfg = config(base, "").replacen(
        &format!("listen = [\"udp:127.0.0.1:{}\"]\n", base + 4),
        &format!(
            "listen = [\"udp:127.0.0.1:{}\"]\nmax_concurrent_calls = 1\nrecord_route = true\n",
            base + 4
        ),
        1,
    );
    assert!(cfg.contains("max_concurrent_calls = 1"), "{cfg}");
    let (proxy, clock, _dir) = under_faketime(&cfg, &lib);
    let stop = Arc::new(AtomicBool::new(false));
    let core_side = common::answering_core(base + 10, stop.clone());
    let caller = UdpSocket::bind("127.0.0.1:0").unwrap();
    caller
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    let me = caller.local_addr().unwrap();
    let in_dialog = |method: &str, cseq: u32| {
        format!(
            "{method} sip:core@127.0.0.1:{core} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-step-{cseq}\r\nFrom: <sip:+8613912345678@{me}>;tag=1\r\nTo: <sip:+861012345678@127.0.0.1>;tag=core\r\nCall-ID: step-1\r\nCSeq: {cseq} {method}\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
            core = base + 10
        )
    };
    let up = || proxy.metric("sipfence_concurrent_calls{trunk=\"ic\"}");
    let judged = || proxy.metric("sipfence_calls_total{trunk=\"ic\",verdict=\"allow\"}");
    let r = answer_to(
        &caller,
        base + 4,
        &invite_from(me, "+8613912345678", "step-1"),
    );
    assert!(r.starts_with("SIP/2.0 200 "), "{r}");
    caller
        .send_to(in_dialog("ACK", 1).as_bytes(), ("127.0.0.1", base + 4))
        .unwrap();
    assert_eq!((up(), judged()), (1.0, 1.0));
    // Seven hours on.
    std::fs::write(&clock, "+7h\n").unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert!(proxy.metric("sipfence_policy_loaded_timestamp_seconds") > 0.0);
    let r = answer_to(
        &caller,
        base + 4,
        &invite_from(me, "+8613912345678", "step-2"),
    );
    assert!(
        r.starts_with("SIP/2.0 503 "),
        "the place is still held: {r}"
    );
    let r = answer_to(&caller, base + 4, &in_dialog("INVITE", 2));
    assert!(r.starts_with("SIP/2.0 200 "), "{r}");
    assert_eq!(
        (
            judged(),
            proxy.metric("sipfence_unknown_dialog_invites_total{trunk=\"ic\"}")
        ),
        (1.0, 0.0),
        "the re-INVITE is the call's"
    );
    // An hour back from the true time.
    std::fs::write(&clock, "-1h\n").unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let r = answer_to(&caller, base + 4, &in_dialog("BYE", 3));
    assert!(r.starts_with("SIP/2.0 200 "), "{r}");
    assert_eq!(up(), 0.0);
    let r = answer_to(
        &caller,
        base + 4,
        &invite_from(me, "+8613912345678", "step-3"),
    );
    assert!(r.starts_with("SIP/2.0 200 "), "{r}");
    // Said at the next look (every 10 s): eight hours back since the last one.
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while !proxy
        .stderr
        .lock()
        .unwrap()
        .iter()
        .any(|l| l.contains("the wall clock stepped"))
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the step was not said"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    let step = proxy.metric("sipfence_clock_step_seconds");
    assert!((step + 3600.0).abs() < 5.0, "{step}");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    core_side.join().unwrap();
}

/// The proxy on `cfg` with libfaketime (`lib`) preloaded, its wall clock stepped by
/// what is written to the file returned (`+7h`, `-1h`: from the true time), its
/// monotonic clock left true; the file is in the directory returned with it.
fn under_faketime(
    cfg: &str,
    lib: &std::path::Path,
) -> (Proxy, std::path::PathBuf, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let clock = dir.path().join("clock");
    std::fs::write(&clock, "+0\n").unwrap();
    let proxy = Proxy::start_env(
        cfg,
        1,
        &[
            ("LD_PRELOAD", lib.as_os_str()),
            ("FAKETIME_TIMESTAMP_FILE", clock.as_os_str()),
            ("FAKETIME_NO_CACHE", "1".as_ref()),
            ("FAKETIME_DONT_FAKE_MONOTONIC", "1".as_ref()),
        ],
    );
    (proxy, clock, dir)
}

/// `trace --since/--until` finds the records written after the wall clock went back
/// (QA 192 F7: they went into the file named before the step, whose span by the next
/// file's name no longer held their times, and were not found by time). sipfence runs
/// under libfaketime: a call, the clock two hours back, another call; each call is
/// found in its own window, by its own time.
#[test]
fn records_written_after_the_clock_went_back_are_found_by_time() {
    use std::sync::Arc;
    use std::sync::atomic::AtomicBool;
    let Some(lib) = common::faketime_lib() else {
        return;
    };
    let base = port_block();
    let cfg = config(base, "") + "[records]\ndir = \"records\"\n";
    let (proxy, clock, _dir) = under_faketime(&cfg, &lib);
    let stop = Arc::new(AtomicBool::new(false));
    let core_side = udp_core(base + 10, stop.clone(), move |m, from, core| {
        if m.starts_with("INVITE ") {
            let answer = common::answer_as_uas(m, "486 Busy Here");
            core.send_to(answer.as_bytes(), from).unwrap();
        }
    });
    let caller = UdpSocket::bind("127.0.0.1:0").unwrap();
    caller
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    let me = caller.local_addr().unwrap();
    let now_s = || sipfence::cli::now_ms() / 1000;
    let before = now_s();
    let r = answer_to(
        &caller,
        base + 4,
        &invite_from(me, "+8613912345678", "before-the-step"),
    );
    assert!(r.starts_with("SIP/2.0 486 "), "{r}");
    std::thread::sleep(Duration::from_millis(300));
    std::fs::write(&clock, "-2h\n").unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let after = now_s() - 7200;
    let r = answer_to(
        &caller,
        base + 4,
        &invite_from(me, "+8613912345678", "after-the-step"),
    );
    assert!(r.starts_with("SIP/2.0 486 "), "{r}");
    let config = proxy.dir.path().join("sipfence.toml");
    let trace = |since: u64, until: u64| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_sipfence"))
            .args(["trace", "--config", config.to_str().unwrap()])
            .args(["--since", &since.to_string(), "--until", &until.to_string()])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let ids: Vec<String> = text
            .lines()
            .skip(1)
            .filter_map(|l| l.split_whitespace().nth(1).map(String::from))
            .collect();
        (ids, text + &String::from_utf8_lossy(&out.stderr))
    };
    // The writer takes a moment.
    let mut found = (vec![], String::new());
    for _ in 0..30 {
        found = trace(after - 300, after + 300);
        if !found.0.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(found.0, ["after-the-step"], "{}", found.1);
    let (ids, text) = trace(before - 300, before + 300);
    assert_eq!(ids, ["before-the-step"], "{text}");
    let (ids, text) = trace(after - 300, before + 300);
    assert_eq!(ids.len(), 2, "{text}");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    core_side.join().unwrap();
}

/// The test policy with `[proxy] calls_file` and the `ic` trunk limited to `max` calls.
fn calls_file_config(base: u16, file: &std::path::Path, max: u32) -> String {
    let cfg = config(
        base,
        &format!("[proxy]\ncalls_file = \"{}\"\n", file.display()),
    )
    .replacen(
        &format!("listen = [\"udp:127.0.0.1:{}\"]\n", base + 4),
        &format!(
            "listen = [\"udp:127.0.0.1:{}\"]\nmax_concurrent_calls = {max}\nrecord_route = true\n",
            base + 4
        ),
        1,
    );
    assert!(cfg.contains("max_concurrent_calls = "), "{cfg}");
    cfg
}

/// `[proxy] calls_file`: a restart gives away no place of a call that goes on through
/// it (QA 132: after a gateway's restart its calls were counted nowhere, and the trunk's
/// cap let in as many again). The call up at the stop holds its place in the next
/// process, and its BYE there gives it back; the file is gone once read.
#[test]
fn calls_up_keep_their_places_across_a_restart() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let base = port_block();
    let state = tempfile::tempdir().unwrap();
    let file = state.path().join("calls");
    let cfg = calls_file_config(base, &file, 1);
    let stop = Arc::new(AtomicBool::new(false));
    let core_side = udp_core(base + 10, stop.clone(), move |m, from, core| {
        let answer = common::answer_as_uas(m, "200 OK").replacen(
            "\r\nTo: <sip:+861012345678@127.0.0.1>\r\n",
            "\r\nTo: <sip:+861012345678@127.0.0.1>;tag=core\r\n",
            1,
        );
        core.send_to(answer.as_bytes(), from).unwrap();
    });
    let caller = UdpSocket::bind("127.0.0.1:0").unwrap();
    caller
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    let me = caller.local_addr().unwrap();
    let call = |id: &str| answer_to(&caller, base + 4, &invite_from(me, "+8613912345678", id));
    let mut proxy = Proxy::start(&cfg, 1);
    let r = call("kept-1");
    assert!(r.starts_with("SIP/2.0 200 "), "{r}");
    proxy.signal("TERM");
    assert!(proxy.proc.0.wait().unwrap().success());
    let written = std::fs::read_to_string(&file).expect("the calls file written at the stop");
    assert_eq!(
        written.lines().count(),
        3,
        "form, stop time, one call: {written}"
    );
    drop(proxy);
    let proxy = Proxy::start(&cfg, 1);
    assert!(!file.exists(), "read once, then removed");
    assert_eq!(proxy.metric("sipfence_concurrent_calls{trunk=\"ic\"}"), 1.0);
    let r = call("kept-2");
    assert!(
        r.starts_with("SIP/2.0 503 ") && r.contains("concurrent"),
        "the place is still taken: {r}"
    );
    let bye = format!(
        "BYE sip:core@127.0.0.1:{core} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-kept-1-2\r\nFrom: <sip:+8613912345678@{me}>;tag=1\r\nTo: <sip:+861012345678@127.0.0.1>;tag=core\r\nCall-ID: kept-1\r\nCSeq: 2 BYE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
        core = base + 10
    );
    let r = answer_to(&caller, base + 4, &bye);
    assert!(r.starts_with("SIP/2.0 200 "), "{r}");
    let r = call("kept-3");
    assert!(r.starts_with("SIP/2.0 200 "), "freed by its BYE: {r}");
    stop.store(true, Ordering::Relaxed);
    core_side.join().unwrap();
}

/// Two gateways given one calls file (QA 135: each took the other's calls, which then
/// ended where they were not counted): the second to start is told, neither reads nor
/// writes the file, and the first's calls are the file's alone. The second names the
/// file by another path (QA 140: through a symbolic link, it took another lock).
#[test]
fn a_second_gateway_on_one_calls_file_leaves_it_alone() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let state = tempfile::tempdir().unwrap();
    let file = state.path().join("calls");
    let limited = |base: u16| calls_file_config(base, &file, 2);
    let (a, b) = (port_block(), port_block());
    let stop = Arc::new(AtomicBool::new(false));
    let core_side = udp_core(a + 10, stop.clone(), move |m, from, core| {
        let answer = common::answer_as_uas(m, "200 OK");
        core.send_to(answer.as_bytes(), from).unwrap();
    });
    let caller = UdpSocket::bind("127.0.0.1:0").unwrap();
    caller
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    let me = caller.local_addr().unwrap();
    let first = Proxy::start(&limited(a), 1);
    let r = answer_to(
        &caller,
        a + 4,
        &invite_from(me, "+8613912345678", "shared-1"),
    );
    assert!(r.starts_with("SIP/2.0 200 "), "{r}");
    // Named through a symbolic link (to a file not there while the first runs): the
    // same file all the same.
    let alias = state.path().join("alias");
    std::os::unix::fs::symlink("calls", &alias).unwrap();
    let second = Proxy::start(&calls_file_config(b, &alias, 2), 1);
    let told = |p: &Proxy| {
        (0..50).any(|_| {
            let said = p
                .stderr
                .lock()
                .unwrap()
                .iter()
                .any(|l| l.contains("another running sipfence uses this calls file"));
            if !said {
                std::thread::sleep(Duration::from_millis(100));
            }
            said
        })
    };
    assert!(told(&second), "{:?}", second.stderr.lock().unwrap());
    second.signal("TERM");
    let mut second = second;
    assert!(second.proc.0.wait().unwrap().success());
    assert!(!file.exists(), "the second wrote nothing");
    first.signal("TERM");
    let mut first = first;
    assert!(first.proc.0.wait().unwrap().success());
    let written = std::fs::read_to_string(&file).expect("the first's calls written");
    assert_eq!(
        written.lines().count(),
        3,
        "form, stop time, one call: {written}"
    );
    assert!(
        !first
            .stderr
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("another running")),
        "the first held the file"
    );
    drop((first, second));
    // The file is free again: the next gateway to start takes it.
    let next = Proxy::start(&limited(b), 1);
    assert_eq!(next.metric("sipfence_concurrent_calls{trunk=\"ic\"}"), 1.0);
    stop.store(true, Ordering::Relaxed);
    core_side.join().unwrap();
}

/// A next hop that refuses TCP: the INVITE is counted as not sent and answered 503
/// with Retry-After, as if the next hop had (the caller can reroute at once), through
/// the response path (our Via off, back to the caller's); the proxy lives on.
#[test]
fn tcp_next_hop_unreachable() {
    let base = port_block();
    // One call at a time: a call answered 503 for the transport gives its place back
    // (else the third below would be refused for the limit).
    let cfg = tcp_core_config(base, "max_concurrent_calls = 1\nrecord_route = true")
        + "[records]\ndir = \"records\"\n";
    let proxy = Proxy::start(&cfg, 1);
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let invite = format!(
        "INVITE sip:+861012345678@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-tcpdown\r\nFrom: <sip:+442071234567@{me}>;tag=1\r\nTo: <sip:+861012345678@127.0.0.1>\r\nCall-ID: tcp-down\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
        me = sock.local_addr().unwrap()
    );
    sock.set_read_timeout(Some(Duration::from_secs(6))).unwrap();
    sock.send_to(invite.as_bytes(), ("127.0.0.1", base))
        .unwrap();
    let mut b = [0u8; 4096];
    let n = sock.recv(&mut b).expect("an answer");
    let r = String::from_utf8_lossy(&b[..n]).into_owned();
    assert!(r.starts_with("SIP/2.0 503 Service Unavailable\r\n"), "{r}");
    assert!(
        r.contains("Retry-After: ") && r.contains("text=\"Next hop unreachable\""),
        "{r}"
    );
    let vias: Vec<&str> = r.lines().filter(|l| l.starts_with("Via:")).collect();
    assert_eq!(vias.len(), 1, "{r}");
    assert!(vias[0].contains("branch=z9hG4bK-tcpdown"), "{r}");
    assert_eq!(
        proxy.metric("sipfence_dropped_total{reason=\"tcp-connect-failed\"}"),
        1.0
    );
    // The 503 is ours: no message came over TCP (QA 32).
    assert_eq!(
        proxy.metric("sipfence_messages_total{kind=\"response\",transport=\"tcp\"}"),
        0.0
    );
    // Which build runs, by its commit (QA 170: two builds of one version looked alike).
    let (code, health) = proxy.http("GET", "/healthz");
    assert_eq!(code, 200);
    assert!(
        health.contains(&format!(" build={}", sipfence::COMMIT)),
        "{health}"
    );
    assert_eq!(
        proxy.metric(&format!(
            "sipfence_build_info{{commit=\"{}\",version=\"{}\"}}",
            sipfence::COMMIT,
            env!("CARGO_PKG_VERSION")
        )),
        1.0
    );
    assert_eq!(proxy.metric("sipfence_tcp_connections"), 0.0);
    // Within the second after a failed attempt, a call is answered 503 at once, and its
    // decision and record say so (QA 49: it was queued, answered later, and counted as
    // allowed).
    let r = answer_to(&sock, base, &invite.replace("tcp-down", "tcp-down-2"));
    assert!(
        r.starts_with("SIP/2.0 503 ") && r.contains("text=\"Next hop unreachable\""),
        "{r}"
    );
    assert_eq!(
        proxy.metric("sipfence_calls_total{trunk=\"intl\",verdict=\"reject\"}"),
        1.0
    );
    assert_eq!(
        proxy.metric("sipfence_dropped_total{reason=\"tcp-connect-failed\"}"),
        1.0,
        "the second was never queued"
    );
    assert_eq!(proxy.metric("sipfence_next_hops_down"), 1.0);
    // The 503s of calls are told from the rules' blocks, and only those of calls: a
    // PBX's OPTIONS answered 503 the same way is no call (QA 119 N3).
    let options = invite
        .replace(
            "INVITE sip:+861012345678@127.0.0.1",
            "OPTIONS sip:+861012345678@127.0.0.1",
        )
        .replace("1 INVITE", "1 OPTIONS")
        .replace("tcp-down", "tcp-down-options");
    let r = answer_to(&sock, base, &options);
    assert!(r.starts_with("SIP/2.0 503 "), "{r}");
    assert_eq!(
        proxy.metric("sipfence_protocol_refusals_total{code=\"503\",trunk=\"intl\"}"),
        1.0,
        "the second INVITE only"
    );
    // Seconds later it is still down: still answered at once and recorded as refused,
    // not queued behind a new attempt and recorded as allowed (the attempts go on in
    // the background).
    std::thread::sleep(Duration::from_millis(2500));
    let sent = std::time::Instant::now();
    let r = answer_to(&sock, base, &invite.replace("tcp-down", "tcp-down-3"));
    assert!(
        r.starts_with("SIP/2.0 503 ") && r.contains("text=\"Next hop unreachable\""),
        "{r}"
    );
    assert!(
        sent.elapsed() < Duration::from_millis(500),
        "answered at once"
    );
    assert_eq!(
        proxy.metric("sipfence_calls_total{trunk=\"intl\",verdict=\"reject\"}"),
        2.0
    );
    assert_eq!(
        proxy.metric("sipfence_dropped_total{reason=\"tcp-connect-failed\"}"),
        1.0
    );
    // The core comes up: within the next attempt or two, calls reach it again.
    let core = std::net::TcpListener::bind(("127.0.0.1", base + 10)).unwrap();
    let reached = std::thread::spawn(move || {
        let (mut c, _) = core.accept().unwrap();
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut got = Vec::new();
        let mut chunk = [0u8; 4096];
        while !String::from_utf8_lossy(&got).contains("Call-ID: tcp-down-up") {
            match std::io::Read::read(&mut c, &mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&chunk[..n]),
            }
        }
        (String::from_utf8_lossy(&got).into_owned(), c)
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(6);
    sock.set_read_timeout(Some(Duration::from_millis(400)))
        .unwrap();
    for i in 0.. {
        assert!(
            std::time::Instant::now() < deadline,
            "the core never reached"
        );
        // A new call each time: a retransmission would get the refusal again.
        let up = invite.replace("tcp-down", &format!("tcp-down-up-{i}"));
        sock.send_to(up.as_bytes(), ("127.0.0.1", base)).unwrap();
        // A 503 while the next attempt is due; silence once the INVITE went through.
        match sock.recv(&mut b) {
            Ok(n) if b[..n].starts_with(b"SIP/2.0 503 ") => {
                std::thread::sleep(Duration::from_millis(200));
                continue;
            }
            Ok(n) => panic!("{}", String::from_utf8_lossy(&b[..n])),
            Err(_) => break,
        }
    }
    // (The core's end is held open until the connection is counted.)
    let (got, mut open) = reached.join().unwrap();
    assert!(got.starts_with("INVITE sip:+861012345678@"), "{got}");
    assert_eq!(proxy.metric("sipfence_next_hops_down"), 0.0);
    assert_eq!(proxy.metric("sipfence_tcp_connections"), 1.0);
    // The core answers the call; then it goes away, and the caller's BYE cannot reach
    // it: answered 503 here, and the call's place is given back at once (QA 124: the
    // 503, relayed as the core's answer, kept it for the four-hour bound).
    let call_id = got
        .lines()
        .find_map(|l| l.strip_prefix("Call-ID: "))
        .unwrap()
        .to_string();
    let vias: String = got
        .lines()
        .take_while(|l| !l.is_empty())
        .filter(|l| l.starts_with("Via:"))
        .map(|l| format!("{l}\r\n"))
        .collect();
    let ok = format!(
        "SIP/2.0 200 OK\r\n{vias}From: <sip:+442071234567@{me}>;tag=1\r\nTo: <sip:+861012345678@127.0.0.1>;tag=core\r\nCall-ID: {call_id}\r\nCSeq: 1 INVITE\r\nContact: <sip:core@127.0.0.1:{core};transport=tcp>\r\nContent-Length: 0\r\n\r\n",
        me = sock.local_addr().unwrap(),
        core = base + 10
    );
    std::io::Write::write_all(&mut open, ok.as_bytes()).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let n = sock.recv(&mut b).expect("the 200 relayed");
    assert!(b[..n].starts_with(b"SIP/2.0 200 "));
    assert_eq!(
        proxy.metric("sipfence_concurrent_calls{trunk=\"intl\"}"),
        1.0
    );
    drop(open);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while proxy.metric("sipfence_tcp_connections") != 0.0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the core's close unseen"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let bye = format!(
        "BYE sip:core@127.0.0.1:{core};transport=tcp SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-tcpdown-bye\r\nFrom: <sip:+442071234567@{me}>;tag=1\r\nTo: <sip:+861012345678@127.0.0.1>;tag=core\r\nCall-ID: {call_id}\r\nCSeq: 2 BYE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
        me = sock.local_addr().unwrap(),
        core = base + 10
    );
    let r = answer_to(&sock, base, &bye);
    assert!(
        r.starts_with("SIP/2.0 503 ") && r.contains("CSeq: 2 BYE"),
        "{r}"
    );
    assert_eq!(
        proxy.metric("sipfence_concurrent_calls{trunk=\"intl\"}"),
        0.0
    );
    // The record of a call refused for the transport carries the reason, and `trace`
    // shows it where a rule's name would be (it showed `reject 503 -`).
    let config = proxy.dir.path().join("sipfence.toml");
    let mut row = String::new();
    for _ in 0..30 {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_sipfence"))
            .args(["trace", "--config", config.to_str().unwrap()])
            .args(["--call-id", "tcp-down-3", "--json"])
            .output()
            .unwrap();
        row = String::from_utf8_lossy(&out.stdout).into_owned();
        if !row.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let v: serde_json::Value = serde_json::from_str(row.trim()).expect("one record");
    assert_eq!(v["refused"], "Next hop unreachable", "{v}");
    assert_eq!(v["code"], 503, "{v}");
    assert_eq!(v["caller"], "+442071234567", "{v}");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sipfence"))
        .args(["trace", "--config", config.to_str().unwrap()])
        .args(["--call-id", "tcp-down-3"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().nth(1).unwrap_or_default();
    assert!(
        line.contains("reject 503") && line.ends_with("Next hop unreachable"),
        "{text}"
    );
}

/// A UDP core that stops answering is seen by its OPTIONS probes (`[proxy]
/// probe_secs`): marked down after three unanswered, its new calls answered 503 with
/// Retry-After at once (QA 118 F2: they went into the void, recorded as allowed), and
/// back at its first answer. A call sent on before, whose caller retransmits into the
/// outage, gets the 503 too, and a second record says so (QA 145: its one record said
/// allowed).
#[test]
fn a_udp_next_hop_that_stops_answering_its_probes_gets_no_new_calls() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let base = port_block();
    let proxy = Proxy::start(
        &config(
            base,
            "[proxy]\nprobe_secs = 1\n[records]\ndir = \"records\"\n",
        ),
        1,
    );
    let (answering, invites, probes) = (
        Arc::new(AtomicBool::new(true)),
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
    );
    let stop = Arc::new(AtomicBool::new(false));
    let core_side = {
        let (answering, invites, probes) = (answering.clone(), invites.clone(), probes.clone());
        udp_core(base + 10, stop.clone(), move |m, from, core| {
            if m.starts_with("INVITE ") {
                invites.fetch_add(1, Ordering::Relaxed);
            } else if m.starts_with("OPTIONS ") {
                assert!(m.contains("\r\nMax-Forwards: 0\r\n"), "{m}");
                probes.fetch_add(1, Ordering::Relaxed);
                if answering.load(Ordering::Relaxed) {
                    core.send_to(common::answer_as_uas(m, "200 OK").as_bytes(), from)
                        .unwrap();
                }
            }
        })
    };
    let call = caller_to(base + 4, "+8613912345678", Duration::from_secs(2));
    std::thread::sleep(Duration::from_millis(2500));
    assert!(probes.load(Ordering::Relaxed) >= 2);
    // Answering: the call goes to the core (which answers nothing to it here).
    assert_eq!(call("probed-1"), "");
    assert_eq!(invites.load(Ordering::Relaxed), 1);
    // Silent: after three probes lost, new calls are refused at once.
    answering.store(false, Ordering::Relaxed);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while proxy.metric("sipfence_next_hops_down") != 1.0 {
        assert!(std::time::Instant::now() < deadline, "never marked down");
        std::thread::sleep(Duration::from_millis(200));
    }
    let refused = call("probed-2");
    assert!(refused.starts_with("SIP/2.0 503 "), "{refused}");
    assert!(
        refused.contains("Retry-After: 5\r\n") && refused.contains("Next hop not answering"),
        "{refused}"
    );
    assert_eq!(invites.load(Ordering::Relaxed), 1);
    // A refusal of the next hop's, not a block of the rules' (the block-spike alert
    // leaves these out).
    assert_eq!(
        proxy.metric("sipfence_protocol_refusals_total{code=\"503\",trunk=\"ic\"}"),
        1.0
    );
    // The first call's caller retransmits into the outage: the 503 too, counted as a
    // call sent into the outage, neither as another call nor as a refusal (the
    // block-spike alert takes those out of the calls refused: QA 147); its
    // retransmissions after that add nothing.
    for _ in 0..2 {
        let again = call("probed-1");
        assert!(
            again.starts_with("SIP/2.0 503 ") && again.contains("Next hop not answering"),
            "{again}"
        );
    }
    assert_eq!(invites.load(Ordering::Relaxed), 1);
    assert_eq!(
        proxy.metric("sipfence_protocol_refusals_total{code=\"503\",trunk=\"ic\"}"),
        1.0
    );
    assert_eq!(
        proxy.metric("sipfence_calls_sent_into_outage_total{trunk=\"ic\"}"),
        1.0
    );
    assert_eq!(
        proxy.metric("sipfence_invite_retransmissions_total{trunk=\"ic\"}"),
        2.0
    );
    assert_eq!(
        proxy.metric("sipfence_calls_total{trunk=\"ic\",verdict=\"allow\"}"),
        1.0
    );
    let config = proxy.dir.path().join("sipfence.toml");
    let mut rows = vec![];
    for _ in 0..30 {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_sipfence"))
            .args(["trace", "--config", config.to_str().unwrap()])
            .args(["--call-id", "probed-1", "--json"])
            .output()
            .unwrap();
        rows = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("a record"))
            .collect();
        if rows.len() >= 2 {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(rows[0]["verdict"], "allow", "{rows:?}");
    assert_eq!(rows[1]["verdict"], "reject", "{rows:?}");
    assert_eq!(rows[1]["code"], 503, "{rows:?}");
    assert_eq!(rows[1]["refused"], "Next hop not answering", "{rows:?}");
    assert_eq!(rows[1]["retry"], "retransmission", "{rows:?}");
    // Answering again: back.
    answering.store(true, Ordering::Relaxed);
    no_next_hop_down_within(&proxy, Duration::from_secs(5), "never back");
    assert_eq!(call("probed-3"), "");
    assert_eq!(invites.load(Ordering::Relaxed), 2);
    stop.store(true, Ordering::Relaxed);
    core_side.join().unwrap();
}

/// Each trunk's requests reach a TCP core from the trunk's own listen address, as they
/// do over UDP (from the trunk's socket): a core that tells trunks apart by address
/// (Kamailio's address ACLs) sees each from its own. One connection per next hop and
/// source, kept: a second call of a trunk takes its trunk's connection (QA 127: the
/// first trunk to call decided the address of all, when one connection carried them).
#[test]
fn each_trunk_reaches_a_tcp_core_from_its_own_address() {
    use std::io::Read;
    use std::sync::{Arc, Mutex};
    let base = port_block();
    let cfg = format!(
        r#"
[[trunk]]
name = "a"
role = "international"
listen = ["udp:127.0.0.1:{a}"]
sources = ["127.0.0.0/8"]
next_hop = "tcp:127.0.0.1:{core}"

[[trunk]]
name = "b"
role = "international"
listen = ["udp:127.0.0.2:{b}"]
sources = ["127.0.0.0/8"]
next_hop = "tcp:127.0.0.1:{core}"

[metrics]
listen = "127.0.0.1:{metrics}"
"#,
        a = base,
        b = base + 2,
        core = base + 10,
        metrics = base + 30,
    );
    // The core: for each connection, its source address and the Call-IDs it carried.
    let seen: Arc<Mutex<Vec<(std::net::IpAddr, String)>>> = Arc::default();
    let listener = std::net::TcpListener::bind(("127.0.0.1", base + 10)).unwrap();
    {
        let seen = seen.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { return };
                let seen = seen.clone();
                std::thread::spawn(move || {
                    let from = conn.peer_addr().unwrap().ip();
                    let mut text = String::new();
                    let mut b = [0u8; 8192];
                    while let Ok(n) = conn.read(&mut b) {
                        if n == 0 {
                            return;
                        }
                        text.push_str(&String::from_utf8_lossy(&b[..n]));
                        while let Some(end) = text.find("\r\n\r\n") {
                            let m: String = text.drain(..end + 4).collect();
                            if let Some(id) = m.split("\r\nCall-ID: ").nth(1) {
                                let id = id.split("\r\n").next().unwrap().to_string();
                                seen.lock().unwrap().push((from, id));
                            }
                        }
                    }
                });
            }
        });
    }
    let proxy = Proxy::start(&cfg, 1);
    let caller = UdpSocket::bind("127.0.0.1:0").unwrap();
    let me = caller.local_addr().unwrap();
    for (id, to) in [
        ("via-a-1", ("127.0.0.1", base)),
        ("via-b-1", ("127.0.0.2", base + 2)),
        ("via-a-2", ("127.0.0.1", base)),
        ("via-b-2", ("127.0.0.2", base + 2)),
    ] {
        caller
            .send_to(invite_from(me, "+442071234567", id).as_bytes(), to)
            .unwrap();
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while seen.lock().unwrap().len() < 4 {
        assert!(std::time::Instant::now() < deadline, "{seen:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut got = seen.lock().unwrap().clone();
    got.sort_by(|x, y| x.1.cmp(&y.1));
    let a: std::net::IpAddr = "127.0.0.1".parse().unwrap();
    let b: std::net::IpAddr = "127.0.0.2".parse().unwrap();
    assert_eq!(
        got,
        [
            (a, "via-a-1".to_string()),
            (a, "via-a-2".to_string()),
            (b, "via-b-1".to_string()),
            (b, "via-b-2".to_string()),
        ]
    );
    assert_eq!(proxy.metric("sipfence_tcp_connections"), 2.0);
}

/// With probes, a TCP core that is down is found before any call needs it (the probe
/// opens the connection), and the probe that could not go is no request dropped (QA
/// 133: it was counted as one).
#[test]
fn a_tcp_core_down_is_found_by_its_probe_before_a_call() {
    let base = port_block();
    let proxy = Proxy::start(
        &(tcp_core_config(base, "") + "[proxy]\nprobe_secs = 1\n"),
        1,
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while proxy.metric("sipfence_next_hops_down") != 1.0 {
        assert!(std::time::Instant::now() < deadline, "never found down");
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(proxy.metric("sipfence_next_hops_down"), 1.0, "counted once");
    assert_eq!(
        proxy.metric("sipfence_dropped_total{reason=\"tcp-connect-failed\"}"),
        0.0
    );
    let r = caller_to(base, "+442071234567", Duration::from_secs(3))("probed-down");
    assert!(
        r.starts_with("SIP/2.0 503 ") && r.contains("Next hop unreachable"),
        "{r}"
    );
}

/// A core reached by one trunk over TCP and by another over UDP, at one address and
/// port, is two next hops: its TCP side refusing connections says nothing of its UDP
/// side, which is probed over UDP and marked down on its own when it stops answering
/// (QA 139: probed over TCP alone, paused while TCP was down, the UDP trunk's calls
/// went on into a stopped core).
#[test]
fn a_core_reached_over_udp_and_tcp_is_watched_on_each() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let base = port_block();
    // `intl` reaches the core over TCP (nothing listens there), `ic` over UDP.
    let proxy = Proxy::start(
        &(tcp_core_config(base, "") + "[proxy]\nprobe_secs = 1\n"),
        1,
    );
    let (answering, invites, stop) = (
        Arc::new(AtomicBool::new(true)),
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicBool::new(false)),
    );
    let core_side = {
        let (answering, invites) = (answering.clone(), invites.clone());
        udp_core(base + 10, stop.clone(), move |m, from, core| {
            if m.starts_with("INVITE ") {
                invites.fetch_add(1, Ordering::Relaxed);
            } else if m.starts_with("OPTIONS ") && answering.load(Ordering::Relaxed) {
                core.send_to(common::answer_as_uas(m, "200 OK").as_bytes(), from)
                    .unwrap();
            }
        })
    };
    let over_tcp = caller_to(base, "+442071234567", Duration::from_secs(3));
    let over_udp = caller_to(base + 4, "+8613912345678", Duration::from_secs(2));
    std::thread::sleep(Duration::from_millis(2500));
    let r = over_tcp("both-1");
    assert!(
        r.starts_with("SIP/2.0 503 ") && r.contains("Next hop unreachable"),
        "{r}"
    );
    assert_eq!(proxy.metric("sipfence_next_hops_down"), 1.0);
    // Each named (QA 167: paged for "1 next hop down", the operator searched the log).
    let series = |t: &str| {
        format!(
            "sipfence_next_hop_down{{next_hop=\"127.0.0.1:{}\",transport=\"{t}\"}}",
            base + 10
        )
    };
    let named = |t: &str| proxy.metric(&series(t));
    assert_eq!(named("tcp"), 1.0);
    let (_, body) = proxy.http("GET", "/metrics");
    assert!(
        !body.contains(&series("udp")),
        "a next hop up has no series"
    );
    // Its UDP side answers its probes: the UDP trunk's call goes on.
    assert_eq!(over_udp("both-2"), "");
    assert_eq!(invites.load(Ordering::Relaxed), 1);
    // The UDP side stops answering: marked down too, and counted.
    answering.store(false, Ordering::Relaxed);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while proxy.metric("sipfence_next_hops_down") != 2.0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the UDP side never marked down"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!((named("tcp"), named("udp")), (1.0, 1.0));
    let r = over_udp("both-3");
    assert!(
        r.starts_with("SIP/2.0 503 ") && r.contains("Next hop not answering"),
        "{r}"
    );
    assert_eq!(invites.load(Ordering::Relaxed), 1);
    stop.store(true, Ordering::Relaxed);
    core_side.join().unwrap();
}

/// A TCP core that hangs with its connection open (a stopped process: its kernel still
/// holds the socket) fails no connection; its probes, sent over the connection, find
/// it: marked down after three unanswered, its new calls answered 503 at once (QA 127
/// N6: they went into it, recorded as allowed). A new connection (a restarted core)
/// brings it back even before it answers a probe.
#[test]
fn a_tcp_next_hop_that_hangs_with_its_connection_open_gets_no_new_calls() {
    use std::io::{Read, Write};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let base = port_block();
    let (answering, restart, stop) = (
        Arc::new(AtomicBool::new(true)),
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicBool::new(false)),
    );
    let (invites, probes, connections) = (
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
    );
    let listener = std::net::TcpListener::bind(("127.0.0.1", base + 10)).unwrap();
    listener.set_nonblocking(true).unwrap();
    let core_side = {
        let (answering, restart, stop) = (answering.clone(), restart.clone(), stop.clone());
        let (invites, probes, connections) = (invites.clone(), probes.clone(), connections.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let Ok((mut conn, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(50));
                    continue;
                };
                connections.fetch_add(1, Ordering::Relaxed);
                conn.set_nonblocking(false).unwrap();
                conn.set_read_timeout(Some(Duration::from_millis(100)))
                    .unwrap();
                let mut buf = String::new();
                let mut b = [0u8; 8192];
                // One connection at a time, until the core "restarts" (closes it).
                while !stop.load(Ordering::Relaxed) && !restart.swap(false, Ordering::Relaxed) {
                    match conn.read(&mut b) {
                        Ok(0) => break,
                        Ok(n) => buf.push_str(&String::from_utf8_lossy(&b[..n])),
                        Err(_) => continue,
                    }
                    // Every message here has an empty body.
                    while let Some(end) = buf.find("\r\n\r\n") {
                        let m: String = buf.drain(..end + 4).collect();
                        if m.starts_with("INVITE ") {
                            invites.fetch_add(1, Ordering::Relaxed);
                        } else if m.starts_with("OPTIONS ") {
                            assert!(m.contains("\r\nVia: SIP/2.0/TCP "), "{m}");
                            probes.fetch_add(1, Ordering::Relaxed);
                            if answering.load(Ordering::Relaxed) {
                                let _ =
                                    conn.write_all(common::answer_as_uas(&m, "200 OK").as_bytes());
                            }
                        }
                    }
                }
            }
        })
    };
    let proxy = Proxy::start(
        &(tcp_core_config(base, "") + "[proxy]\nprobe_secs = 1\n"),
        1,
    );
    let call = caller_to(base, "+442071234567", Duration::from_millis(1500));
    let wait_for = |what: &dyn Fn() -> bool, why: &str| {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !what() {
            assert!(std::time::Instant::now() < deadline, "{why}");
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    // Probed over TCP from the start, before any call.
    wait_for(&|| probes.load(Ordering::Relaxed) >= 2, "no probe over TCP");
    assert_eq!(call("tcp-probed-1"), "");
    wait_for(
        &|| invites.load(Ordering::Relaxed) == 1,
        "the call never came",
    );
    // Hung: the connection stays open, nothing is answered.
    answering.store(false, Ordering::Relaxed);
    wait_for(
        &|| proxy.metric("sipfence_next_hops_down") == 1.0,
        "never marked down",
    );
    let refused = call("tcp-probed-2");
    assert!(
        refused.starts_with("SIP/2.0 503 ") && refused.contains("Next hop not answering"),
        "{refused}"
    );
    assert_eq!(invites.load(Ordering::Relaxed), 1);
    assert_eq!(connections.load(Ordering::Relaxed), 1);
    assert_eq!(proxy.metric("sipfence_tcp_connections"), 1.0);
    // Restarted: the old connection closes, a new one is made, and the new process is
    // not held to the old one's silence (it answers no probe yet) ...
    restart.store(true, Ordering::Relaxed);
    wait_for(
        &|| connections.load(Ordering::Relaxed) == 2,
        "never connected anew",
    );
    no_next_hop_down_within(
        &proxy,
        Duration::from_secs(5),
        "not back on a new connection",
    );
    assert_eq!(call("tcp-probed-3"), "");
    wait_for(
        &|| invites.load(Ordering::Relaxed) == 2,
        "the call after never came",
    );
    // ... but it answered before: hung after its restart too, it is marked down again
    // (QA 133: its probes started as a stranger's, never watched).
    wait_for(
        &|| proxy.metric("sipfence_next_hops_down") == 1.0,
        "a core back hung never marked down",
    );
    stop.store(true, Ordering::Relaxed);
    core_side.join().unwrap();
}

/// `[proxy] drain_secs`: after SIGTERM new calls are answered 503 with Retry-After and
/// `/readyz` says not ready, while the answer to a call already sent on is still
/// relayed; then it stops, with status 0 (QA 118 F7: it stopped at once).
#[test]
fn a_stop_drains_the_calls_under_way() {
    let base = port_block();
    let mut proxy = Proxy::start(&config(base, "[proxy]\ndrain_secs = 2\n"), 1);
    let core = UdpSocket::bind(("127.0.0.1", base + 10)).unwrap();
    core.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let caller = UdpSocket::bind("127.0.0.1:0").unwrap();
    caller
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    let me = caller.local_addr().unwrap();
    let send = |id: &str| {
        caller
            .send_to(
                invite_from(me, "+8613912345678", id).as_bytes(),
                ("127.0.0.1", base + 4),
            )
            .unwrap();
    };
    let read = |s: &UdpSocket| {
        let mut b = [0u8; 4096];
        let (n, from) = s.recv_from(&mut b).expect("a datagram");
        (String::from_utf8_lossy(&b[..n]).into_owned(), from)
    };
    send("drain-1");
    let (invite, proxy_addr) = read(&core);
    assert!(invite.starts_with("INVITE "), "{invite}");
    let started = std::time::Instant::now();
    proxy.signal("TERM");
    std::thread::sleep(Duration::from_millis(300));
    let (code, body) = proxy.http("GET", "/readyz");
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("draining"), "{body}");
    // A new call: told to go elsewhere.
    send("drain-2");
    let (refused, _) = read(&caller);
    assert!(
        refused.starts_with("SIP/2.0 503 ")
            && refused.contains("Retry-After: ")
            && refused.contains("text=\"Stopping: try another gateway\""),
        "{refused}"
    );
    // The call under way, its answer slow to come, retransmitted meanwhile: sent on
    // again, not answered 503 (QA 149: its caller had 503 and then the core's 200).
    send("drain-1");
    let (again, _) = read(&core);
    assert_eq!(again, invite, "the same INVITE, sent on again");
    // The call under way gets its answer.
    core.send_to(
        common::answer_as_uas(&invite, "200 OK").as_bytes(),
        proxy_addr,
    )
    .unwrap();
    let (ok, _) = read(&caller);
    assert!(
        ok.starts_with("SIP/2.0 200 ") && ok.contains("Call-ID: drain-1"),
        "{ok}"
    );
    let exit = proxy.proc.0.wait().unwrap();
    assert!(exit.success(), "{exit:?}");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(6),
        "{took:?}"
    );
}

/// While a TCP next hop is down, the calls answered 503 for it are not judged: they
/// spend nothing of the trunk's contract (QA 60: a short outage, its PBX retrying, used
/// up an enterprise trunk's calls per minute, and the first calls after it were refused
/// 403). Only the call queued behind the first attempt was judged (and counts).
#[test]
fn calls_refused_for_a_dead_tcp_next_hop_spend_no_contract() {
    let base = port_block();
    let cfg = config(base, "");
    let (head, ent) = cfg.split_at(cfg.find("name = \"ent\"").unwrap());
    let ent = ent.replacen(
        &format!("next_hop = \"udp:127.0.0.1:{}\"", base + 10),
        &format!(
            "next_hop = \"tcp:127.0.0.1:{}\"\nmax_calls_per_minute = 3",
            base + 10
        ),
        1,
    );
    let proxy = Proxy::start(&format!("{head}{ent}"), 1);
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(6))).unwrap();
    let me = sock.local_addr().unwrap();
    let invite = |id: &str| invite_from(me, "+8613912345678", id);
    let answer = |id: &str| answer_to(&sock, base + 2, &invite(id));
    // The first waits for the attempt; the next five are answered at once.
    for i in 0..6 {
        let r = answer(&format!("down-{i}"));
        assert!(
            r.starts_with("SIP/2.0 503 ") && r.contains("Next hop unreachable"),
            "{r}"
        );
        assert!(r.contains("Retry-After: "), "{r}");
    }
    assert_eq!(
        proxy.metric("sipfence_calls_total{trunk=\"ent\",verdict=\"reject\"}"),
        5.0
    );
    // The core comes up: the contract's three calls a minute, less the one judged.
    let core = std::net::TcpListener::bind(("127.0.0.1", base + 10)).unwrap();
    no_next_hop_down_within(&proxy, Duration::from_secs(5), "never reconnected");
    let reached = std::thread::spawn(move || {
        let (mut c, _) = core.accept().unwrap();
        c.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        let mut got = Vec::new();
        let mut chunk = [0u8; 4096];
        while let Ok(n) = std::io::Read::read(&mut c, &mut chunk) {
            if n == 0 {
                break;
            }
            got.extend_from_slice(&chunk[..n]);
        }
        String::from_utf8_lossy(&got).into_owned()
    });
    sock.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    for i in 0..2 {
        let id = format!("up-{i}");
        sock.send_to(invite(&id).as_bytes(), ("127.0.0.1", base + 2))
            .unwrap();
        // Sent on: no answer from sipfence.
        let mut b = [0u8; 4096];
        if let Ok(n) = sock.recv(&mut b) {
            panic!("{id}: {}", String::from_utf8_lossy(&b[..n]));
        }
    }
    let r = answer("up-2");
    assert!(
        r.starts_with("SIP/2.0 403 "),
        "the fourth of the minute: {r}"
    );
    let got = reached.join().unwrap();
    assert!(
        got.contains("Call-ID: up-0") && got.contains("Call-ID: up-1"),
        "{got}"
    );
}

/// A reload that moves the trunk off a dead TCP next hop ends its probing at once: the
/// gauge (and its alert) does not go on naming an address no trunk sends to (QA 60:
/// it stayed at 1 for five minutes).
#[test]
fn a_reload_away_from_a_dead_next_hop_clears_it() {
    let base = port_block();
    let proxy = Proxy::start(&tcp_core_config(base, ""), 1);
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(6))).unwrap();
    let me = sock.local_addr().unwrap();
    let r = answer_to(&sock, base, &invite_from(me, "+442071234567", "moved"));
    assert!(r.starts_with("SIP/2.0 503 "), "{r}");
    assert_eq!(proxy.metric("sipfence_next_hops_down"), 1.0);
    std::fs::write(proxy.dir.path().join("sipfence.toml"), config(base, "")).unwrap();
    let (code, said) = proxy.http("POST", "/reload");
    assert_eq!(code, 200, "{said}");
    no_next_hop_down_within(&proxy, Duration::from_secs(5), "still down");
}

/// A core that takes each connection and resets it (a balancer with no healthy core
/// behind it) never says a word: the requests written to it are answered 503 when the
/// connection goes, and their calls give back their places (QA 62: unanswered, they held
/// them for the ring deadline, and the trunk refused genuine calls).
#[test]
fn a_core_that_accepts_and_resets_gets_its_calls_answered() {
    let base = port_block();
    let core = std::net::TcpListener::bind(("127.0.0.1", base + 10)).unwrap();
    std::thread::spawn(move || {
        for c in core.incoming().flatten() {
            // Read what came (the INVITE), then reset.
            c.set_read_timeout(Some(Duration::from_millis(200))).ok();
            let mut chunk = [0u8; 4096];
            let _ = std::io::Read::read(&mut (&c), &mut chunk);
            socket2::SockRef::from(&c)
                .set_linger(Some(Duration::ZERO))
                .ok();
        }
    });
    let cfg = tcp_core_config(base, "max_concurrent_calls = 2\nrecord_route = true");
    let proxy = Proxy::start(&cfg, 1);
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let me = sock.local_addr().unwrap();
    for i in 0..4 {
        let r = answer_to(
            &sock,
            base,
            &invite_from(me, "+442071234567", &format!("reset-{i}")),
        );
        // Never the call limit: each lost call gave its place back.
        assert!(
            r.starts_with("SIP/2.0 503 ") && r.contains("Next hop unreachable"),
            "{i}: {r}"
        );
    }
    assert!(proxy.metric("sipfence_dropped_total{reason=\"tcp-gone\"}") >= 4.0);
    assert_eq!(
        proxy.metric("sipfence_concurrent_calls{trunk=\"intl\"}"),
        0.0
    );
}

/// A TCP next hop that accepts and then stops reading: once the connection's queue is
/// full, every request is answered 503 with Retry-After (QA 49: 30,000 INVITEs vanished,
/// counted as allowed), and the calls refused so are counted as refused.
#[test]
fn a_tcp_next_hop_that_stops_reading_gets_503s() {
    let base = port_block();
    // A core that takes the connection and reads nothing, with a small receive buffer
    // so that the proxy's queue fills soon.
    let core = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    core.set_reuse_address(true).unwrap();
    core.set_recv_buffer_size(4096).unwrap();
    let at: std::net::SocketAddr = format!("127.0.0.1:{}", base + 10).parse().unwrap();
    core.bind(&at.into()).unwrap();
    core.listen(8).unwrap();
    let core: std::net::TcpListener = core.into();
    let held = std::thread::spawn(move || core.accept().map(|(s, _)| s));
    let cfg = tcp_core_config(base, "");
    let proxy = Proxy::start(&cfg, 1);
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let me = sock.local_addr().unwrap();
    let body = "v=0\r\n".repeat(150);
    let mut refused = 0;
    let mut b = [0u8; 4096];
    for round in 0..40 {
        for i in 0..100 {
            let invite = format!(
                "INVITE sip:+861012345678@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-st{round}-{i}\r\nFrom: <sip:+442071234567@{me}>;tag=1\r\nTo: <sip:+861012345678@127.0.0.1>\r\nCall-ID: stuck-{round}-{i}\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            sock.send_to(invite.as_bytes(), ("127.0.0.1", base))
                .unwrap();
        }
        sock.set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        while let Ok(n) = sock.recv(&mut b) {
            let r = String::from_utf8_lossy(&b[..n]);
            assert!(r.starts_with("SIP/2.0 503 "), "{r}");
            // Connected, and slower than the calls: congested, not unreachable (QA 79).
            assert!(
                r.contains("Retry-After: ") && r.contains("text=\"Next hop congested\""),
                "{r}"
            );
            refused += 1;
        }
        if refused > 100 {
            break;
        }
    }
    assert!(refused > 100, "only {refused} INVITEs answered 503");
    // Each one the step refused is counted as refused; at most the few that raced it
    // (answered from the connection's queue) as allowed too.
    let rejected = proxy.metric("sipfence_calls_total{trunk=\"intl\",verdict=\"reject\"}");
    let raced = proxy.metric("sipfence_dropped_total{reason=\"tcp-backlog\"}");
    assert!(
        rejected > 0.0 && rejected + raced >= refused as f64,
        "{rejected} + {raced} < {refused}"
    );
    // Every request a full queue kept back is counted there, the step's refusals too.
    assert!(raced >= rejected, "{raced} < {rejected}");
    assert_eq!(proxy.http("GET", "/healthz").0, 200);
    // The core resets the connection: the INVITEs queued behind it (256) cannot be
    // written any more; each is counted and answered 503 (QA 60: they were lost in
    // silence, the calls recorded as allowed).
    let held = held.join().unwrap().unwrap();
    socket2::SockRef::from(&held)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(held);
    sock.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let mut after = 0;
    while let Ok(n) = sock.recv(&mut b) {
        let r = String::from_utf8_lossy(&b[..n]);
        assert!(r.starts_with("SIP/2.0 503 "), "{r}");
        after += 1;
        if after == 200 {
            break;
        }
    }
    assert_eq!(after, 200, "the queued INVITEs went unanswered");
    assert!(proxy.metric("sipfence_dropped_total{reason=\"tcp-gone\"}") >= 200.0);
}

/// A checking UAS for `n` calls, in a thread; join it for (exit code, output).
fn checking_uas(
    dir: &Path,
    port: u16,
    sc: &Path,
    n: usize,
) -> std::thread::JoinHandle<(i32, String)> {
    checking_uas_at("127.0.0.1", dir, port, sc, n)
}

/// [`checking_uas`] on `ip`.
fn checking_uas_at(
    ip: &'static str,
    dir: &Path,
    port: u16,
    sc: &Path,
    n: usize,
) -> std::thread::JoinHandle<(i32, String)> {
    checking_uas_over(ip, dir, port, sc, n, "u1")
}

/// [`checking_uas_at`] over `transport` (u1 / t1).
fn checking_uas_over(
    ip: &'static str,
    dir: &Path,
    port: u16,
    sc: &Path,
    n: usize,
    transport: &'static str,
) -> std::thread::JoinHandle<(i32, String)> {
    let (dir, sc) = (dir.to_path_buf(), sc.to_path_buf());
    let h = std::thread::spawn(move || {
        let p = port.to_string();
        let n = n.to_string();
        run_sipp(
            &[
                "-sf",
                sc.to_str().unwrap(),
                "-i",
                ip,
                "-p",
                &p,
                "-m",
                &n,
                "-t",
                transport,
                "-nostdin",
                "-trace_err",
                "-timeout",
                "20s",
            ],
            &dir,
            Duration::from_secs(30),
        )
    });
    std::thread::sleep(Duration::from_millis(400));
    h
}

/// The README's first call, as written there, on the built-in policy moved to this
/// test's ports: sipp's own UAS as the core, `first-call-uac.xml` as a foreign caller,
/// exit 0 (QA 177 D: the scenario first named waited for a reliable 183 that sipp's UAS
/// never sends).
#[test]
fn the_readmes_first_call_goes_through() {
    if !sipp_available() {
        return;
    }
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    assert!(readme.contains(
        "sipp -sf testdata/sipp/first-call-uac.xml -i 127.0.0.1 -p 5070 -m 1 127.0.0.1:5060"
    ));
    assert!(readme.contains("sipp -sn uas -i 127.0.0.1 -p 5080 -bg"));
    let base = port_block();
    let conf = sipfence::policy::BUILTIN_CONFIG
        .replace("127.0.0.1:5060", &format!("127.0.0.1:{base}"))
        .replace("127.0.0.1:5062", &format!("127.0.0.1:{}", base + 2))
        .replace("127.0.0.1:5080", &format!("127.0.0.1:{}", base + 10))
        .replace("127.0.0.1:9090", &format!("127.0.0.1:{}", base + 30));
    let proxy = Proxy::start(&conf, 1);
    let dir = proxy.dir.path().to_path_buf();
    let _uas = common::sipp_uas(base + 10, None, &dir);
    let sc = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/sipp/first-call-uac.xml");
    let (code, out) = one_call(&dir, &sc, base, base + 20, "u1", &[]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        proxy.metric("sipfence_calls_total{trunk=\"intl\",verdict=\"allow\"}"),
        1.0
    );
}

/// One call of `scenario` from 127.0.0.1:`port` to 127.0.0.1:`to` over `transport`
/// (u1 / t1), with `extra` sipp arguments; (exit code, output).
fn one_call(
    dir: &Path,
    scenario: &Path,
    to: u16,
    port: u16,
    transport: &str,
    extra: &[&str],
) -> (i32, String) {
    let (target, p) = (format!("127.0.0.1:{to}"), port.to_string());
    let mut args = vec![
        target.as_str(),
        "-sf",
        scenario.to_str().unwrap(),
        "-i",
        "127.0.0.1",
        "-p",
        &p,
        "-t",
        transport,
        "-m",
        "1",
        "-nostdin",
        "-timeout",
        "20s",
        "-trace_err",
    ];
    // A local address of the caller's own ("-i" in `extra`) replaces 127.0.0.1.
    if let Some(k) = extra.iter().position(|a| *a == "-i") {
        args[4] = extra.get(k + 1).copied().unwrap_or("127.0.0.1");
        args.extend(
            extra
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != k && *j != k + 1)
                .map(|(_, a)| *a),
        );
    } else {
        args.extend_from_slice(extra);
    }
    run_sipp(&args, dir, Duration::from_secs(30))
}

#[test]
fn rewritten_and_labelled_calls_arrive_edited() {
    if !sipp_available() {
        return;
    }
    let base = port_block();
    // A fourth trunk, from a carrier that writes E.164 without the '+'.
    let bare = format!(
        "[[trunk]]\nname = \"intl-bare\"\nrole = \"international\"\nlisten = [\"udp:127.0.0.1:{}\"]\nsources = [\"127.0.0.0/8\"]\nnext_hop = \"udp:127.0.0.1:{}\"\nbare_numbers = \"international\"\n",
        base + 6,
        base + 10
    );
    let proxy = Proxy::start(&config(base, &bare), 1);
    let dir = proxy.dir.path().to_path_buf();
    // Generic number deleted: From carries the asserted number, the tag is kept, and
    // P-Preferred-Identity is gone; our Via is on top with a decremented Max-Forwards.
    let sc = uas_check_scenario(
        &dir,
        "rewrite",
        &[
            "From: <sip:\\+442071234567@127\\.0\\.0\\.1:[0-9]+>;tag=",
            "Via: SIP/2\\.0/UDP 127\\.0\\.0\\.1:[0-9]+;branch=z9hG4bKsf",
            "Max-Forwards: 69",
        ],
        &[
            "P-Preferred-Identity",
            "8613812345678@127",
            "X-Sipfence-Label",
        ],
    );
    let uas = checking_uas(&dir, base + 10, &sc, 1);
    let row = (
        "+8613812345678@",
        "P-Asserted-Identity: <sip:+442071234567@10.20.30.40>",
        "P-Preferred-Identity: <sip:+8613812345678@10.9.9.9>",
    );
    calls(&dir, base, base + 20, "u1", 200, &[row]);
    let (code, out) = uas.join().unwrap();
    assert_eq!(code, 0, "UAS checks failed:\n{out}");
    // Its answers come back to the caller with the From it wrote (RFC 3261 8.2.6.2;
    // QA 104: they came with the rewritten one).
    let uas = checking_uas(&dir, base + 10, &sc, 1);
    let uac = std::fs::read_to_string(uac_scenario(&dir, 200))
        .unwrap()
        .replacen(
            r#"<recv response="200" rtd="true" rrs="true"> </recv>"#,
            r#"<recv response="200" rtd="true" rrs="true">
    <action>
      <ereg regexp="^ *&lt;sip:\+8613812345678@127\.0\.0\.1:[0-9]+&gt;;tag=" search_in="hdr" header="From:" check_it="true" assign_to="chk"/>
    </action>
  </recv>"#,
            1,
        )
        .replace("</scenario>", "  <Reference variables=\"chk\"/>\n</scenario>");
    assert!(uac.contains("check_it"));
    let uac_sc = dir.join("uac-answers-from.xml");
    std::fs::write(&uac_sc, uac).unwrap();
    let csv = dir.join("answers-from.csv");
    std::fs::write(
        &csv,
        format!("SEQUENTIAL\n{};{};{};\n", row.0, row.1, row.2),
    )
    .unwrap();
    let (code, out) = Uac {
        dir: &dir,
        scenario: &uac_sc,
        csv: &csv,
        port: base,
        uac_port: base + 25,
        transport: "u1",
        calls: 1,
        rate: 20,
    }
    .run();
    assert_eq!(code, 0, "the caller's From did not come back:\n{out}");
    let (code, out) = uas.join().unwrap();
    assert_eq!(code, 0, "UAS checks failed:\n{out}");
    // Label header and verstat on the asserted identity for an MVNO caller.
    let sc = uas_check_scenario(
        &dir,
        "label",
        &[
            "X-Sipfence-Label: mvno",
            "P-Asserted-Identity: <sip:\\+8617012345678;verstat=TN-Validation-Failed@",
        ],
        &[],
    );
    let uas = checking_uas(&dir, base + 10, &sc, 1);
    calls(
        &dir,
        base + 4,
        base + 21,
        "u1",
        200,
        &[(
            "+8617012345678@",
            "P-Asserted-Identity: <sip:+8617012345678@10.20.30.40>",
            "X-No-Privacy: 1",
        )],
    );
    let (code, out) = uas.join().unwrap();
    assert_eq!(code, 0, "UAS checks failed:\n{out}");
    // Bare E.164 from that carrier: a London caller reaches the core with the '+'
    // written into From and P-Asserted-Identity ...
    let sc = uas_check_scenario(
        &dir,
        "bare",
        &[
            "From: <sip:\\+442071234567@127\\.0\\.0\\.1:[0-9]+>;tag=",
            "P-Asserted-Identity: <sip:\\+442071234567@10\\.20\\.30\\.40>",
        ],
        &["sip:442071234567@"],
    );
    let uas = checking_uas(&dir, base + 10, &sc, 1);
    calls(
        &dir,
        base + 6,
        base + 22,
        "u1",
        200,
        &[(
            "442071234567@",
            "P-Asserted-Identity: <sip:442071234567@10.20.30.40>",
            "X-No-Privacy: 1",
        )],
    );
    let (code, out) = uas.join().unwrap();
    assert_eq!(code, 0, "UAS checks failed:\n{out}");
    // ... and one with country code 86 is a domestic caller from abroad; the same
    // London digits on the trunk that reads them in the home plan break the plan.
    calls(
        &dir,
        base + 6,
        base + 23,
        "u1",
        403,
        &[("8613812345678@", "X-No-PAI: 1", "X-No-Privacy: 1")],
    );
    calls(
        &dir,
        base,
        base + 24,
        "u1",
        403,
        &[("442071234567@", "X-No-PAI: 1", "X-No-Privacy: 1")],
    );
    assert_eq!(
        proxy.metric(
            "sipfence_rule_hits_total{action=\"reject\",rule=\"intl-domestic-caller\",trunk=\"intl-bare\"}"
        ),
        1.0
    );
}

/// A trunk on a port's wildcard address, earlier in the file, takes what comes to a
/// specific address of that port too (first match wins, as the README says): the
/// start-up line names both trunks there, `check` warns that the later one can never
/// match, and a call to the specific socket is judged on the first trunk's rules (QA 43:
/// the start-up line named the later trunk alone, and `check` said nothing).
#[test]
fn a_wildcard_trunk_first_takes_the_specific_socket_too() {
    let base = port_block();
    let conf = config(base, "")
        .replace(
            &format!("listen = [\"udp:127.0.0.1:{base}\", \"tcp:127.0.0.1:{base}\"]"),
            &format!("listen = [\"udp:0.0.0.0:{base}\"]"),
        )
        .replace(
            &format!("listen = [\"udp:127.0.0.1:{}\"]", base + 4),
            &format!("listen = [\"udp:127.0.0.1:{base}\"]"),
        );
    assert!(conf.contains(&format!("udp:0.0.0.0:{base}")), "{conf}");
    let proxy = Proxy::start(&conf, 1);
    let said = proxy.stdout.lock().unwrap().join("\n");
    assert!(
        said.contains(&format!(
            "listening on udp:127.0.0.1:{base} (trunks: intl, ic)"
        )),
        "{said}"
    );
    assert!(
        said.contains(&format!("listening on udp:0.0.0.0:{base} (trunks: intl;")),
        "{said}"
    );
    let checked = proxy.check(None);
    assert!(
        checked.contains("trunk ic can never match: trunk intl, earlier in the file"),
        "{checked}"
    );
    // A domestic caller: the interconnect trunk would let it through, the international
    // one (first) refuses it.
    let c = UdpSocket::bind("127.0.0.1:0").unwrap();
    c.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let port = c.local_addr().unwrap().port();
    c.send_to(
        invite("wild-first-1", "+8613812345678", "z9hG4bK-wf-1", port).as_bytes(),
        ("127.0.0.1", base),
    )
    .unwrap();
    let answer = recv(&c).expect("an answer");
    assert!(answer.starts_with("SIP/2.0 403"), "{answer}");
    assert_eq!(
        proxy.metric(
            "sipfence_rule_hits_total{action=\"reject\",rule=\"intl-domestic-caller\",trunk=\"intl\"}"
        ),
        1.0
    );
}

/// A wildcard listen address names no host: the forwarded INVITE's Via and
/// Record-Route give the address the host sends from towards the next hop (here
/// 127.0.0.1), or `[proxy] advertise`; never 0.0.0.0 or [::], which a core elsewhere
/// would take for itself. An IPv4 caller on a dual-stack `[::]` socket is written in
/// `received` as IPv4 (RFC 3261 25.1), not as ::ffff:127.0.0.1.
#[test]
fn wildcard_listeners_name_a_real_address() {
    for (listen, extra, named) in [
        ("0.0.0.0", "", "127.0.0.1"),
        ("[::]", "", "127.0.0.1"),
        (
            "0.0.0.0",
            "[proxy]\nadvertise = \"192.0.2.44\"\n",
            "192.0.2.44",
        ),
    ] {
        let base = port_block();
        let conf = config(base, extra).replace(
            &format!("listen = [\"udp:127.0.0.1:{base}\", \"tcp:127.0.0.1:{base}\"]"),
            &format!("listen = [\"udp:{listen}:{base}\"]\nrecord_route = true"),
        );
        assert!(conf.contains(&format!("udp:{listen}:{base}")));
        let proxy = Proxy::start(&conf, 1);
        let said = proxy.stdout.lock().unwrap().join("\n");
        assert!(
            said.contains(&format!("Via and Record-Route name {named}")),
            "{said}"
        );
        let uas = UdpSocket::bind(("127.0.0.1", base + 10)).unwrap();
        uas.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        let c = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = c.local_addr().unwrap().port();
        c.send_to(
            invite("wild-1", "+442071234567", "z9hG4bK-wild-1", port).as_bytes(),
            ("127.0.0.1", base),
        )
        .unwrap();
        let fwd = recv(&uas).expect("forwarded INVITE");
        let line = |name: &str| {
            fwd.lines()
                .find(|l| l.starts_with(name))
                .unwrap_or_default()
                .to_string()
        };
        assert!(
            line("Via:").starts_with(&format!("Via: SIP/2.0/UDP {named}:{base};branch=")),
            "{listen}: {fwd}"
        );
        assert!(
            line("Record-Route:").starts_with(&format!("Record-Route: <sip:{named}:{base};lr>")),
            "{listen}: {fwd}"
        );
        let vias: Vec<&str> = fwd.lines().filter(|l| l.starts_with("Via:")).collect();
        assert!(
            vias[1].ends_with(&format!(";rport={port};received=127.0.0.1")),
            "{listen}: {fwd}"
        );
        // The core's in-dialog request reaches the caller: on the dual-stack socket too,
        // where the core's IPv4 address shows as ::ffff:127.0.0.1.
        c.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        let bye = format!(
            "BYE sip:caller@127.0.0.1:{port} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{uas_port};branch=z9hG4bK-core-bye\r\nMax-Forwards: 70\r\nFrom: <sip:4008001234@127.0.0.1>;tag=core\r\nTo: <sip:+442071234567@127.0.0.1>;tag=fwild-1\r\nCall-ID: wild-1\r\nCSeq: 9 BYE\r\nContent-Length: 0\r\n\r\n",
            uas_port = base + 10
        );
        uas.send_to(bye.as_bytes(), ("127.0.0.1", base)).unwrap();
        let got = recv(&c).unwrap_or_default();
        assert!(got.starts_with("BYE sip:caller@"), "{listen}: {got}");
    }
}

fn invite(call: &str, from: &str, branch: &str, port: u16) -> String {
    format!(
        "INVITE sip:4008001234@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{port};branch={branch};rport\r\nFrom: <sip:{from}@127.0.0.1>;tag=f{call}\r\nTo: <sip:4008001234@127.0.0.1>\r\nCall-ID: {call}\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContact: <sip:a@127.0.0.1:{port}>\r\nContent-Length: 0\r\n\r\n"
    )
}

fn recv(s: &UdpSocket) -> Option<String> {
    let mut b = [0u8; 65536];
    s.recv(&mut b)
        .ok()
        .map(|n| String::from_utf8_lossy(&b[..n]).into_owned())
}

#[test]
fn retransmissions_ack_absorption_and_max_forwards() {
    let base = port_block();
    let proxy = Proxy::start(&config(base, ""), 2);
    // A raw UDP "UAS" on the next hop, to see what does (not) reach it.
    let uas = UdpSocket::bind(("127.0.0.1", base + 10)).unwrap();
    uas.set_read_timeout(Some(Duration::from_millis(700)))
        .unwrap();
    let c = UdpSocket::bind("127.0.0.1:0").unwrap();
    c.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    c.connect(("127.0.0.1", base)).unwrap();
    let port = c.local_addr().unwrap().port();
    let inv = invite("rtx-1", "+8613812345678", "z9hG4bK-rtx-1", port);
    c.send(inv.as_bytes()).unwrap();
    let r1 = recv(&c).expect("403");
    c.send(inv.as_bytes()).unwrap();
    let r2 = recv(&c).expect("403 again");
    assert!(r1.starts_with("SIP/2.0 403 "), "{r1}");
    assert_eq!(r1, r2, "a retransmission gets the very same answer");
    // The ACK to our 403 (same branch, our To-tag) ends at the proxy.
    let tag = r1
        .lines()
        .find(|l| l.starts_with("To:"))
        .and_then(|l| l.split(";tag=").nth(1))
        .unwrap()
        .to_string();
    let ack = format!(
        "ACK sip:4008001234@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK-rtx-1;rport\r\nFrom: <sip:+8613812345678@127.0.0.1>;tag=frtx-1\r\nTo: <sip:4008001234@127.0.0.1>;tag={tag}\r\nCall-ID: rtx-1\r\nCSeq: 1 ACK\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    );
    c.send(ack.as_bytes()).unwrap();
    assert!(
        recv(&uas).is_none(),
        "the ACK to our own rejection must not be forwarded"
    );
    // Nor one with a branch of its own (against RFC 3261 17.1.1.3, as some clients
    // send it): our To-tag alone tells it.
    c.send(
        ack.replace("branch=z9hG4bK-rtx-1;", "branch=z9hG4bK-rtx-1-ack;")
            .as_bytes(),
    )
    .unwrap();
    assert!(
        recv(&uas).is_none(),
        "the ACK to our own rejection, on another branch, must not be forwarded"
    );
    // An INVITE with a To-tag of its own (no dialog we know) refused: its ACK repeats
    // that tag, not ours, and ends at the proxy all the same.
    let tagged = invite("rtx-2", "+8613812345678", "z9hG4bK-rtx-2", port).replace(
        "To: <sip:4008001234@127.0.0.1>",
        "To: <sip:4008001234@127.0.0.1>;tag=peer-made",
    );
    c.send(tagged.as_bytes()).unwrap();
    let r = recv(&c).expect("403");
    assert!(
        r.starts_with("SIP/2.0 403 ") && r.contains(";tag=peer-made"),
        "{r}"
    );
    let ack2 = ack
        .replace("rtx-1", "rtx-2")
        .replace(&format!("tag={tag}"), "tag=peer-made");
    c.send(ack2.as_bytes()).unwrap();
    assert!(
        recv(&uas).is_none(),
        "the ACK to our refusal of a To-tagged INVITE must not be forwarded"
    );
    // An allowed INVITE reaches the next hop with our Via on top and rport filled in.
    let ok = invite("ok-1", "+442071234567", "z9hG4bK-ok-1", port);
    c.send(ok.as_bytes()).unwrap();
    let fwd = recv(&uas).expect("forwarded INVITE");
    let vias: Vec<&str> = fwd.lines().filter(|l| l.starts_with("Via:")).collect();
    assert!(
        vias[0].starts_with("Via: SIP/2.0/UDP 127.0.0.1:") && vias[0].contains("branch=z9hG4bKsf"),
        "{fwd}"
    );
    assert!(vias[1].contains(&format!("rport={port}")), "{fwd}");
    assert!(fwd.contains("Max-Forwards: 69\r\n"));
    // Its retransmission goes out with the same branch.
    c.send(ok.as_bytes()).unwrap();
    let fwd2 = recv(&uas).expect("forwarded again");
    assert_eq!(fwd.lines().next(), fwd2.lines().next());
    assert_eq!(
        vias[0],
        fwd2.lines().find(|l| l.starts_with("Via:")).unwrap()
    );
    // The UAS's answer comes back to the client without our Via.
    let resp = fwd.replacen(
        "INVITE sip:4008001234@127.0.0.1 SIP/2.0",
        "SIP/2.0 180 Ringing",
        1,
    );
    let resp = resp.replacen(
        "To: <sip:4008001234@127.0.0.1>",
        "To: <sip:4008001234@127.0.0.1>;tag=uas1",
        1,
    );
    uas.send_to(resp.as_bytes(), ("127.0.0.1", base)).unwrap();
    let back = recv(&c).expect("180 relayed");
    assert!(back.starts_with("SIP/2.0 180"), "{back}");
    assert_eq!(
        back.lines().filter(|l| l.starts_with("Via:")).count(),
        1,
        "{back}"
    );
    assert!(!back.contains("z9hG4bKsf"));
    // Max-Forwards 0: 483.
    let mf0 = invite("mf-1", "+442071234567", "z9hG4bK-mf-1", port)
        .replace("Max-Forwards: 70", "Max-Forwards: 0");
    c.send(mf0.as_bytes()).unwrap();
    assert!(recv(&c).unwrap().starts_with("SIP/2.0 483 "));
    // OPTIONS to the proxy itself: 200.
    let opt = format!(
        "OPTIONS sip:127.0.0.1:{base} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK-o1;rport\r\nFrom: <sip:ping@127.0.0.1>;tag=o1\r\nTo: <sip:127.0.0.1>\r\nCall-ID: o1\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    );
    c.send(opt.as_bytes()).unwrap();
    let r = recv(&c).unwrap();
    assert!(
        r.starts_with("SIP/2.0 200 OK") && r.contains("Allow:"),
        "{r}"
    );
    // Each call counted once: the refused one and the allowed one were each sent
    // twice; the retransmissions are counted apart, and add no rule hit. (The second
    // hit is the To-tagged INVITE's.)
    let m = |s: &str| proxy.metric(s);
    assert_eq!(
        m("sipfence_invite_retransmissions_total{trunk=\"intl\"}"),
        2.0
    );
    assert_eq!(
        m("sipfence_calls_total{trunk=\"intl\",verdict=\"allow\"}"),
        1.0
    );
    assert_eq!(
        m(
            "sipfence_rule_hits_total{action=\"reject\",rule=\"intl-domestic-caller\",trunk=\"intl\"}"
        ),
        2.0
    );
    drop(proxy);
}

/// A final answer lost between the gateway and the caller: the caller sends its
/// INVITE again, which is the same call (QA 93: counted again, and refused 403 at the
/// caller's limit of one a minute while the callee had answered), carried to the core
/// as the retransmission it is. Once the caller's ACK has passed, the same bytes are a
/// new attempt, judged and refused at the limit.
#[test]
fn a_final_answer_lost_before_the_caller_keeps_its_call() {
    let base = port_block();
    let conf = config(base, "").replacen(
        "\n[trunk.whitelist]",
        "\nmax_calls_per_minute_per_caller = 1\n[trunk.whitelist]",
        1,
    );
    let proxy = Proxy::start(&conf, 1);
    let uas = UdpSocket::bind(("127.0.0.1", base + 10)).unwrap();
    uas.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let c = UdpSocket::bind("127.0.0.1:0").unwrap();
    c.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    c.connect(("127.0.0.1", base + 2)).unwrap();
    let port = c.local_addr().unwrap().port();
    let inv = invite("lost-1", "+8613912340001", "z9hG4bK-lost-1", port);
    c.send(inv.as_bytes()).unwrap();
    let fwd = recv(&uas).expect("forwarded INVITE");
    let ok = fwd
        .replacen(
            "INVITE sip:4008001234@127.0.0.1 SIP/2.0",
            "SIP/2.0 200 OK",
            1,
        )
        .replacen(
            "To: <sip:4008001234@127.0.0.1>",
            "To: <sip:4008001234@127.0.0.1>;tag=uas1",
            1,
        );
    uas.send_to(ok.as_bytes(), ("127.0.0.1", base + 2)).unwrap();
    // Relayed, and lost on the way: the caller never reads it, and sends again.
    let relayed = recv(&c).expect("200 relayed");
    assert!(relayed.starts_with("SIP/2.0 200 "), "{relayed}");
    c.send(inv.as_bytes()).unwrap();
    let again = recv(&uas).expect("the INVITE again, carried to the core");
    assert!(again.starts_with("INVITE "), "{again}");
    let m = |s: &str| proxy.metric(s);
    assert_eq!(
        m("sipfence_calls_total{trunk=\"ent\",verdict=\"allow\"}"),
        1.0
    );
    assert_eq!(
        m("sipfence_calls_total{trunk=\"ent\",verdict=\"reject\"}"),
        0.0
    );
    assert_eq!(
        m("sipfence_invite_retransmissions_total{trunk=\"ent\"}"),
        1.0
    );
    // The core's 200 again reaches the caller, which acknowledges it.
    uas.send_to(ok.as_bytes(), ("127.0.0.1", base + 2)).unwrap();
    assert!(recv(&c).expect("200 again").starts_with("SIP/2.0 200 "));
    let ack = format!(
        "ACK sip:4008001234@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK-lost-1-ack;rport\r\nFrom: <sip:+8613912340001@127.0.0.1>;tag=flost-1\r\nTo: <sip:4008001234@127.0.0.1>;tag=uas1\r\nCall-ID: lost-1\r\nCSeq: 1 ACK\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    );
    c.send(ack.as_bytes()).unwrap();
    assert!(recv(&uas).expect("ACK carried").starts_with("ACK "));
    // The same bytes now: a new attempt, the caller's second in the minute.
    c.send(inv.as_bytes()).unwrap();
    let r = recv(&c).expect("refused");
    assert!(r.starts_with("SIP/2.0 403 "), "{r}");
    assert_eq!(
        m("sipfence_calls_total{trunk=\"ent\",verdict=\"reject\"}"),
        1.0
    );
    assert_eq!(
        m(
            "sipfence_rule_hits_total{action=\"reject\",rule=\"enterprise-rate-caller\",trunk=\"ent\"}"
        ),
        1.0
    );
}

#[test]
fn unknown_source_is_rejected() {
    let base = port_block();
    // Only 127.0.0.2 may use the intl trunk here.
    let cfg = config(base, "").replacen(
        "sources = [\"127.0.0.0/8\"]",
        "sources = [\"127.0.0.2\"]",
        1,
    );
    let _proxy = Proxy::start(&cfg, 1);
    let c = UdpSocket::bind("127.0.0.1:0").unwrap();
    c.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    c.connect(("127.0.0.1", base)).unwrap();
    let port = c.local_addr().unwrap().port();
    c.send(invite("u-1", "+442071234567", "z9hG4bK-u1", port).as_bytes())
        .unwrap();
    let r = recv(&c).unwrap();
    assert!(
        r.starts_with("SIP/2.0 403 ") && r.contains("Unknown source"),
        "{r}"
    );
}

/// SIP-I through the proxy: sipp sends INVITEs whose multipart body carries an IAM with a
/// Generic Number; the sipp UAS answers them, and what reached the UAS (captured on the
/// loopback, decoded by tshark's ISUP dissector) has the same calling and original called
/// numbers and no Generic Number. A second call hides a +86 number in the IAM behind clean
/// SIP headers: refused 403.
#[test]
fn sipi_calls_arrive_with_the_generic_number_deleted() {
    if !sipp_available() || !common::tshark_available() {
        return;
    }
    use sipfence::isup::encode::{IamBuilder, NumberSpec, sipi_body};
    let base = port_block();
    let proxy = Proxy::start(&config(base, ""), 1);
    let dir = proxy.dir.path().to_path_buf();
    let boundary = "sipfence-e2e-b1";
    let sdp = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n";
    let write_body = |name: &str, calling: &str| {
        let iam = IamBuilder::new("861012345678")
            .calling(NumberSpec::international(calling))
            .generic(NumberSpec::international("8613812345678"))
            .original_called(NumberSpec::international("861087654321"))
            .build();
        let (_, body) = sipi_body(sdp, &iam, boundary);
        std::fs::write(dir.join(name), body).unwrap();
    };
    write_body("allowed.bin", "442071234567");
    write_body("forged.bin", "8613812345678");
    // The e2e UAC scenario with the SDP body swapped for the SIP-I one ([file] inserts
    // the bytes as they are, NULs included).
    let scenario = |body: &str, expect: u16| {
        let base_sc = std::fs::read_to_string(uac_scenario(&dir, expect)).unwrap();
        let s = base_sc.find("Content-Type: application/sdp").unwrap();
        let e = s + base_sc[s..].find("]]>").unwrap();
        let sc = format!(
            "{}MIME-Version: 1.0\n      Content-Type: multipart/mixed;boundary={boundary}\n      Content-Length: [len]\n\n[file name=\"{body}\"]\n    {}",
            &base_sc[..s],
            &base_sc[e..]
        );
        let p = dir.join(format!("uac-sipi-{expect}.xml"));
        std::fs::write(&p, sc).unwrap();
        p
    };
    // Capture what reaches the UAS.
    let pcap = dir.join("to-uas.pcap");
    let mut cap = std::process::Command::new("tshark")
        .args([
            "-i",
            "lo",
            "-f",
            &format!("udp and dst port {}", base + 10),
            "-w",
        ])
        .arg(&pcap)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("tshark capture");
    {
        // Capturing once tshark says so.
        use std::io::Read;
        let mut err = cap.stderr.take().unwrap();
        let mut seen = String::new();
        let mut buf = [0u8; 256];
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !seen.contains("Capturing on") && std::time::Instant::now() < deadline {
            match err.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => seen.push_str(&String::from_utf8_lossy(&buf[..n])),
            }
        }
        assert!(
            seen.contains("Capturing on"),
            "tshark cannot capture on lo: {seen}"
        );
        std::thread::spawn(move || std::io::copy(&mut err, &mut std::io::sink()));
    }
    let _uas = sipp_uas(base + 10, None, &dir);
    let run = |body: &str, expect: u16, uac_port: u16| {
        let csv = dir.join(format!("sipi-{expect}.csv"));
        std::fs::write(
            &csv,
            "SEQUENTIAL\n+442071234567@;P-Asserted-Identity: <tel:+442071234567>;X-No-Privacy: 1;\n",
        )
        .unwrap();
        let sc = scenario(body, expect);
        let (code, out) = Uac {
            dir: &dir,
            scenario: &sc,
            csv: &csv,
            port: base,
            uac_port,
            transport: "u1",
            calls: 1,
            rate: 10,
        }
        .run();
        assert_eq!(code, 0, "SIP-I call expecting {expect}: {out}");
    };
    run("allowed.bin", 200, base + 20);
    run("forged.bin", 403, base + 21);
    let invites = || {
        let o = std::process::Command::new("tshark")
            .arg("-r")
            .arg(&pcap)
            .args([
                "-Y",
                "sip.Method == \"INVITE\"",
                "-T",
                "fields",
                "-E",
                "separator=|",
                "-e",
                "isup.calling",
                "-e",
                "isup.generic_number",
                "-e",
                "isup.original_called_number",
                "-e",
                "_ws.malformed",
            ])
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    // The capture runs in its own process: on a loaded machine it may write the INVITE
    // well after the call ended (a fixed half second once stopped it first).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while invites().is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(300));
    }
    std::thread::sleep(Duration::from_millis(300));
    let _ = std::process::Command::new("kill")
        .args(["-INT", &cap.id().to_string()])
        .status();
    let _ = cap.wait();
    let rows = invites();
    let rows: Vec<&str> = rows.lines().collect();
    // Only the allowed call reached the UAS, once, rewritten.
    assert_eq!(
        rows,
        vec!["442071234567||861087654321|"],
        "INVITEs at the UAS"
    );
    assert_eq!(
        proxy.metric("sipfence_isup_rule_hits_total{rule=\"intl-domestic-caller\",trunk=\"intl\"}"),
        1.0
    );
    assert_eq!(
        proxy.metric("sipfence_sipi_calls_total{iam=\"decoded\",trunk=\"intl\"}"),
        2.0
    );
}

/// Requests too large for UDP (RFC 3261 18.1.1): with `udp_mtu = 1300`, one over it goes
/// to the same next hop over TCP, our Via saying TCP, while small ones stay on UDP;
/// without it, a request no datagram can hold (it came over TCP) is answered 513.
#[test]
fn large_requests_switch_to_tcp_or_get_513() {
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    let padded = |call: &str, port: u16, pad: usize| {
        invite(call, "+442071234567", &format!("z9hG4bK-{call}"), port).replacen(
            "Max-Forwards: 70\r\n",
            &format!("Max-Forwards: 70\r\nX-Pad: {}\r\n", "p".repeat(pad)),
            1,
        )
    };
    let base = port_block();
    let cfg = config(base, "[proxy]\nudp_mtu = 1300");
    let proxy = Proxy::start(&cfg, 1);
    let core_tcp = TcpListener::bind(("127.0.0.1", base + 10)).unwrap();
    let core_udp = UdpSocket::bind(("127.0.0.1", base + 10)).unwrap();
    core_udp
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    let c = UdpSocket::bind("127.0.0.1:0").unwrap();
    c.connect(("127.0.0.1", base)).unwrap();
    let port = c.local_addr().unwrap().port();
    // Small: UDP as configured.
    c.send(padded("mtu-small", port, 10).as_bytes()).unwrap();
    let small = recv(&core_udp).expect("the small INVITE over UDP");
    assert!(small.starts_with("INVITE "), "{small}");
    assert!(small.contains("\r\nVia: SIP/2.0/UDP 127.0.0.1:"), "{small}");
    // Over 1300 bytes: the same next hop, over TCP.
    let big = padded("mtu-big", port, 1400);
    assert!(big.len() > 1300);
    c.send(big.as_bytes()).unwrap();
    let (mut conn, _) = core_tcp.accept().unwrap();
    let head = read_head(&mut conn);
    assert!(head.starts_with("INVITE "), "{head}");
    assert!(head.contains("\r\nVia: SIP/2.0/TCP 127.0.0.1:"), "{head}");
    assert!(head.contains("Call-ID: mtu-big\r\n"), "{head}");
    // QA 30: one that came without a Content-Length (a datagram needs none) goes on
    // the shared connection with one, so that the call after it is framed as sent.
    let body = "v=0\r\n".repeat(300);
    let bare = padded("mtu-bare", port, 10).replace("Content-Length: 0\r\n\r\n", "\r\n") + &body;
    c.send(bare.as_bytes()).unwrap();
    c.send(padded("mtu-next", port, 1400).as_bytes()).unwrap();
    let mut stream = head.into_bytes();
    let mut b = [0u8; 8192];
    conn.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let mut calls = vec![];
    while calls.len() < 3 {
        match sipfence::sip::frame_stream(&stream) {
            Ok(sipfence::sip::parse::Frame::Message { skip, len }) => {
                let m = String::from_utf8_lossy(&stream[skip..skip + len]).into_owned();
                stream.drain(..skip + len);
                calls.push(m);
            }
            Ok(_) => {
                let n = conn.read(&mut b).expect("the rest of the stream");
                assert!(n > 0, "connection closed after {calls:?}");
                stream.extend_from_slice(&b[..n]);
            }
            Err(e) => panic!("the core cannot frame the stream: {e} after {calls:?}"),
        }
    }
    assert!(calls[1].contains("Call-ID: mtu-bare\r\n"), "{}", calls[1]);
    assert!(
        calls[1].ends_with(&format!("Content-Length: {}\r\n\r\n{body}", body.len())),
        "{}",
        calls[1]
    );
    assert!(calls[2].contains("Call-ID: mtu-next\r\n"), "{}", calls[2]);
    drop(proxy);

    // Without udp_mtu: a request that with our Via no longer fits a datagram, over TCP
    // towards a UDP next hop, gets 513.
    let base = port_block();
    let proxy = Proxy::start(&config(base, ""), 1);
    let _core = UdpSocket::bind(("127.0.0.1", base + 10)).unwrap();
    let mut t = TcpStream::connect(("127.0.0.1", base)).unwrap();
    let port = t.local_addr().unwrap().port();
    let huge = padded("too-big", port, 65_150).replace("SIP/2.0/UDP", "SIP/2.0/TCP");
    assert!(
        huge.len() > 65_450 && huge.len() <= 65_535,
        "{}",
        huge.len()
    );
    t.write_all(huge.as_bytes()).unwrap();
    let r = read_head(&mut t);
    assert!(r.starts_with("SIP/2.0 513 Message Too Large\r\n"), "{r}");
    assert!(r.contains("Call-ID: too-big\r\n"), "{r}");
    // Counted as what its caller got, not as an allowed call (QA 44).
    assert_eq!(
        proxy.metric("sipfence_calls_total{trunk=\"intl\",verdict=\"reject\"}"),
        1.0
    );
    assert_eq!(
        proxy.metric("sipfence_calls_total{trunk=\"intl\",verdict=\"allow\"}"),
        0.0
    );
    assert_eq!(
        proxy.metric("sipfence_protocol_refusals_total{code=\"513\",trunk=\"intl\"}"),
        1.0
    );
    // Past the largest message any transport carries (Content-Length says so before
    // the body has come): 513 as well, not 400, and the connection ends (a stream that
    // cannot be framed cannot go on).
    for (call, pad) in [("too-big-2", 65_600), ("too-big-3", 70_000)] {
        let mut t = TcpStream::connect(("127.0.0.1", base)).unwrap();
        let port = t.local_addr().unwrap().port();
        let huge = padded(call, port, pad).replace("SIP/2.0/UDP", "SIP/2.0/TCP");
        assert!(huge.len() > 65_535);
        let _ = t.write_all(huge.as_bytes());
        let r = read_head(&mut t);
        assert!(
            r.starts_with("SIP/2.0 513 Message Too Large\r\n"),
            "{call}: {r}"
        );
        assert!(r.contains(&format!("Call-ID: {call}\r\n")), "{r}");
    }
    drop(proxy);
}

/// An IPv6 interconnect: the proxy on [::1] over UDP and TCP, with Record-Route. The
/// INVITE reaches the UAS with our bracketed Via and Record-Route, the answered call's
/// ACK and BYE come back through the proxy by that route, and the rules refuse as on
/// IPv4. Skipped (with the reason printed) where the host has no IPv6 loopback.
#[test]
fn ipv6_calls_over_udp_and_tcp() {
    if !sipp_available() {
        return;
    }
    if UdpSocket::bind("[::1]:0").is_err() {
        eprintln!("skipped: this host has no IPv6 loopback (::1)");
        return;
    }
    let base = port_block();
    let conf = format!(
        r#"
[[trunk]]
name = "intl"
role = "international"
listen = ["udp:[::1]:{intl}", "tcp:[::1]:{intl}"]
sources = ["::1/128"]
next_hop = "udp:[::1]:{uas}"
record_route = true

[metrics]
listen = "127.0.0.1:{metrics}"
"#,
        intl = base,
        uas = base + 10,
        metrics = base + 30,
    );
    let proxy = Proxy::start(&conf, 1);
    let dir = proxy.dir.path().to_path_buf();
    let sc = uas_check_scenario(
        &dir,
        "ipv6",
        &[
            "Via: SIP/2\\.0/UDP \\[::1\\]:[0-9]+;branch=z9hG4bKsf",
            "Via: SIP/2\\.0/UDP \\[::1\\]:[0-9]+;branch=z9hG4bK-",
            "Record-Route: <sip:\\[::1\\]:[0-9]+",
            "Max-Forwards: 69",
        ],
        &[],
    );
    let uas = checking_uas_at("::1", &dir, base + 10, &sc, 1);
    calls_at(
        "::1",
        &dir,
        base,
        base + 20,
        "u1",
        200,
        &[("+442071234567@", "X-No-PAI: 1", "X-No-Privacy: 1")],
    );
    let (code, out) = uas.join().unwrap();
    assert_eq!(code, 0, "UAS checks failed:\n{out}");
    // The in-dialog requests followed the route through the proxy.
    assert!(
        proxy.metric("sipfence_messages_total{kind=\"request\",transport=\"udp\"}") >= 3.0,
        "INVITE, ACK and BYE through the proxy"
    );

    let _uas = common::sipp_uas_at("::1", base + 10, None, &dir, "u1");
    let refused = [("+8613812345678@", "X-No-PAI: 1", "X-No-Privacy: 1")];
    calls_at("::1", &dir, base, base + 21, "u1", 403, &refused);
    // Not the roamer: this policy has no roamers list.
    calls_at("::1", &dir, base, base + 22, "t1", 200, &ALLOWED_INTL[..3]);
    calls_at("::1", &dir, base, base + 23, "t1", 403, &refused);
    assert_eq!(
        proxy.metric("sipfence_calls_total{trunk=\"intl\",verdict=\"reject\"}"),
        2.0
    );
    assert!(proxy.metric("sipfence_messages_total{kind=\"request\",transport=\"tcp\"}") >= 6.0);
}

/// A dual-stack gateway (QA 38): IPv6 callers reach an IPv4 core and IPv4 callers an
/// IPv6 core. The INVITE leaves by the listener of the core's family, our Via names
/// it, and the Record-Route is doubled (RFC 5658: the core's side first); the answers
/// go back by the caller's family, and ACK and BYE follow the route. With no listener of
/// the core's family the caller gets 503 at once (and `check` warns), not silence.
#[test]
fn a_dual_stack_gateway_forwards_across_ip_families() {
    if !sipp_available() {
        return;
    }
    if UdpSocket::bind("[::1]:0").is_err() {
        eprintln!("skipped: this host has no IPv6 loopback (::1)");
        return;
    }
    // Listeners on both loopbacks, or one `[::]` wildcard (which carries IPv4 too: its
    // address towards each side is the one the routing table gives for it).
    let cases = [false, true]
        .into_iter()
        .flat_map(|wild| [("::1", "127.0.0.1", wild), ("127.0.0.1", "::1", wild)]);
    for (caller, core, wild) in cases {
        let base = port_block();
        let listen = match wild {
            false => format!(
                r#""udp:127.0.0.1:{base}", "tcp:127.0.0.1:{base}", "udp:[::1]:{base}", "tcp:[::1]:{base}""#
            ),
            true => format!(r#""udp:[::]:{base}", "tcp:[::]:{base}""#),
        };
        let host = |ip: &str| match ip.contains(':') {
            true => format!("[{ip}]"),
            false => ip.to_string(),
        };
        let conf = format!(
            r#"
[[trunk]]
name = "ic"
role = "interconnect"
listen = [{listen}]
sources = ["127.0.0.0/8", "::1/128"]
next_hop = "udp:{hop}:{uas}"
record_route = true

[metrics]
listen = "127.0.0.1:{metrics}"
"#,
            hop = host(core),
            uas = base + 10,
            metrics = base + 30,
        );
        let proxy = Proxy::start(&conf, 1);
        let dir = proxy.dir.path().to_path_buf();
        let re = |ip: &str| regex_escape(&host(ip));
        let via = format!("Via: SIP/2\\.0/UDP {}:{base};branch=z9hG4bKsf", re(core));
        let rr = format!(
            "Record-Route: <sip:{}:{base};lr>, <sip:{}:{base};lr>",
            re(core),
            re(caller)
        );
        let sc = uas_check_scenario(&dir, "xfam", &[&via, &rr, "Max-Forwards: 69"], &[]);
        let core_ip: &'static str = if core == "::1" { "::1" } else { "127.0.0.1" };
        let uas = checking_uas_at(core_ip, &dir, base + 10, &sc, 1);
        calls_at(
            caller,
            &dir,
            base,
            base + 20,
            "u1",
            200,
            &[("+8613912345680@", "X-No-PAI: 1", "X-No-Privacy: 1")],
        );
        let (code, out) = uas.join().unwrap();
        assert_eq!(
            code, 0,
            "{caller} to {core} (wildcard: {wild}): UAS checks failed:\n{out}"
        );
        assert!(
            proxy.metric("sipfence_messages_total{kind=\"request\",transport=\"udp\"}") >= 3.0,
            "INVITE, ACK and BYE through the proxy"
        );
        assert_eq!(
            proxy.metric("sipfence_dropped_total{reason=\"send-failed\"}"),
            0.0
        );
    }

    // Only IPv6 listeners, an IPv4 core: the call is answered 503, counted and warned of.
    let base = port_block();
    let conf = format!(
        r#"
[[trunk]]
name = "ic"
role = "interconnect"
listen = ["udp:[::1]:{base}"]
sources = ["::1/128"]
next_hop = "udp:127.0.0.1:{uas}"

[metrics]
listen = "127.0.0.1:{metrics}"
"#,
        uas = base + 10,
        metrics = base + 30,
    );
    let proxy = Proxy::start(&conf, 1);
    let dir = proxy.dir.path().to_path_buf();
    let said = proxy.check(None);
    assert!(
        said.contains("next_hop 127.0.0.1:") && said.contains("no UDP listen address is"),
        "{said}"
    );
    calls_at(
        "::1",
        &dir,
        base,
        base + 20,
        "u1",
        503,
        &[("+8613912345680@", "X-No-PAI: 1", "X-No-Privacy: 1")],
    );
    assert!(proxy.metric("sipfence_dropped_total{reason=\"send-failed\"}") >= 1.0);
}

/// A gateway with TCP listeners only opens no UDP socket of its own: towards a TCP next
/// hop its calls go through (the Via names the TCP listener); towards a UDP one `check`
/// and the start-up warn, and each call is answered 503 on the caller's connection,
/// counted as send-failed (QA 39: it was dropped and the connection closed, silently).
#[test]
fn a_gateway_with_tcp_listeners_only() {
    if !sipp_available() {
        return;
    }
    let v6 = UdpSocket::bind("[::1]:0").is_ok();
    // (listen, next hop transport, caller): an IPv6 caller through a `[::]` TCP
    // listener to an IPv4 core gets a Record-Route entry of each family (QA 40).
    let mut cases = vec![
        ("127.0.0.1", "tcp", "127.0.0.1"),
        ("127.0.0.1", "udp", "127.0.0.1"),
    ];
    if v6 {
        cases.push(("[::]", "tcp", "::1"));
    } else {
        eprintln!("skipped the IPv6 case: this host has no IPv6 loopback (::1)");
    }
    for (listen, hop, caller) in cases {
        let base = port_block();
        let conf = format!(
            r#"
[[trunk]]
name = "ic"
role = "interconnect"
listen = ["tcp:{listen}:{base}"]
sources = ["127.0.0.0/8", "::1/128"]
next_hop = "{hop}:127.0.0.1:{uas}"
record_route = true

[metrics]
listen = "127.0.0.1:{metrics}"
"#,
            uas = base + 10,
            metrics = base + 30,
        );
        let proxy = Proxy::start(&conf, 1);
        let dir = proxy.dir.path().to_path_buf();
        let said = proxy.check(None);
        let call = [("+8613912345680@", "X-No-PAI: 1", "X-No-Privacy: 1")];
        if hop == "tcp" {
            assert!(!said.contains("cannot be sent"), "{said}");
            let via = format!("Via: SIP/2\\.0/TCP 127\\.0\\.0\\.1:{base};branch=z9hG4bKsf");
            let rr = match caller {
                "::1" => format!(
                    "Record-Route: <sip:127\\.0\\.0\\.1:{base};lr;transport=tcp>, <sip:\\[::1\\]:{base};lr;transport=tcp>"
                ),
                _ => format!("Record-Route: <sip:127\\.0\\.0\\.1:{base};lr;transport=tcp>\\r"),
            };
            let sc = uas_check_scenario(&dir, "tcponly", &[&via, &rr], &[]);
            let uas = checking_uas_over("127.0.0.1", &dir, base + 10, &sc, 1, "t1");
            let target = if caller == "::1" { "::1" } else { "127.0.0.1" };
            calls_at(target, &dir, base, base + 20, "t1", 200, &call);
            let (code, out) = uas.join().unwrap();
            assert_eq!(code, 0, "{listen} from {caller}: UAS checks failed:\n{out}");
            assert_eq!(
                proxy.metric("sipfence_dropped_total{reason=\"send-failed\"}"),
                0.0
            );
        } else {
            assert!(
                said.contains("is UDP, and no listen address is: its calls cannot be sent"),
                "{said}"
            );
            calls_at("127.0.0.1", &dir, base, base + 20, "t1", 503, &call);
            assert!(proxy.metric("sipfence_dropped_total{reason=\"send-failed\"}") >= 1.0);
            // Every request that cannot go on gets its 503 on the same connection: an
            // INVITE with a To-tag (judged as a call) and a BYE as well (QA 40).
            use std::io::Write;
            let mut t = std::net::TcpStream::connect(("127.0.0.1", base)).unwrap();
            let port = t.local_addr().unwrap().port();
            for (method, to_tag) in [("INVITE", ";tag=made-up"), ("BYE", ";tag=b")] {
                let req = format!(
                    "{method} sip:+8613912345680@127.0.0.1:{base} SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:{port};branch=z9hG4bK-{method}\r\nFrom: <sip:+8613812345678@127.0.0.1>;tag=a\r\nTo: <sip:+8613912345680@127.0.0.1>{to_tag}\r\nCall-ID: tcponly-{method}\r\nCSeq: 2 {method}\r\nMax-Forwards: 70\r\nContact: <sip:a@127.0.0.1:{port};transport=tcp>\r\nContent-Length: 0\r\n\r\n"
                );
                t.write_all(req.as_bytes()).unwrap();
                let r = read_head(&mut t);
                assert!(r.starts_with("SIP/2.0 503 "), "{method}: {r}");
                assert!(r.contains(&format!("CSeq: 2 {method}\r\n")), "{r}");
            }
        }
    }
}

/// What a TCP stream brings up to the end of one message's header (3 s at most).
fn read_head(s: &mut std::net::TcpStream) -> String {
    use std::io::Read;
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let mut got = Vec::new();
    let mut b = [0u8; 4096];
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        match s.read(&mut b) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&b[..n]),
        }
    }
    String::from_utf8_lossy(&got).into_owned()
}

/// A literal for a sipp regular expression.
fn regex_escape(s: &str) -> String {
    s.chars()
        .flat_map(|c| match c {
            '.' | '[' | ']' | '(' | ')' | '*' | '+' | '?' | '\\' | '|' | '^' | '$' => {
                vec!['\\', c]
            }
            c => vec![c],
        })
        .collect()
}

/// An initial INVITE dressed as a re-INVITE (a To-tag of the caller's invention) is
/// judged as the call it is: a domestic caller on the international gateway gets the
/// same 403 at sipp as without the tag, and is counted as an unknown dialog. (The
/// re-INVITE of a dialog answered through the proxy passes unjudged: see
/// `carrier_call_with_prack_update_reinvite_and_info`.)
#[test]
fn an_invented_to_tag_carries_no_call_past_the_rules() {
    if !sipp_available() {
        return;
    }
    let base = port_block();
    let proxy = Proxy::start(&config(base, ""), 1);
    let dir = proxy.dir.path().to_path_buf();
    let _uas = sipp_uas(base + 10, None, &dir);
    let plain = std::fs::read_to_string(uac_scenario(&dir, 403)).unwrap();
    let to = "To: <sip:4008001234@[remote_ip]:[remote_port]>\n";
    let spoof = plain.replacen(
        to,
        "To: <sip:4008001234@[remote_ip]:[remote_port]>;tag=invented-[call_number]\n",
        1,
    );
    assert_ne!(spoof, plain, "the INVITE's To line is in the scenario");
    let sc = dir.join("invented-to-tag-uac.xml");
    std::fs::write(&sc, spoof).unwrap();
    let csv = dir.join("invented.csv");
    std::fs::write(
        &csv,
        "SEQUENTIAL\n+8613812345678@;X-No-PAI: 1;X-No-Privacy: 1;\n+8613812345679@;P-Asserted-Identity: <sip:+8613812345679@10.20.30.40>;X-No-Privacy: 1;\n",
    )
    .unwrap();
    let (code, out) = Uac {
        dir: &dir,
        scenario: &sc,
        csv: &csv,
        port: base,
        uac_port: base + 20,
        transport: "u1",
        calls: 2,
        rate: 20,
    }
    .run();
    assert_eq!(code, 0, "both refused 403 at sipp: exit {code}\n{out}");
    assert_eq!(
        proxy.metric("sipfence_unknown_dialog_invites_total{trunk=\"intl\"}"),
        2.0
    );
    assert_eq!(
        proxy.metric(
            "sipfence_rule_hits_total{action=\"reject\",rule=\"intl-domestic-caller\",trunk=\"intl\"}"
        ),
        2.0
    );
}

/// A carrier's call the whole way through the proxy (`record_route`): INVITE with 100rel
/// and session timers, a reliable 183 and its PRACK (RFC 3262), 200, ACK, a
/// session-refresh UPDATE, a re-INVITE putting the call on hold and its ACK, an INFO from
/// the core side back to the caller, BYE. The far end of each in-dialog request checks
/// that it carries the proxy's Via (it came through sipfence by the Record-Route set);
/// the trunk side over UDP, then over TCP with the core on UDP.
///
/// Then the same caller behind a NAT: its Via and Contact name an address nothing
/// listens at (as a PBX writes its private one), its packets come from its real socket.
/// The INFO reaches it all the same, over UDP and over its TCP connection: the gateway
/// sends the core's requests where the call came from, by the flow in its Record-Route
/// (QA 111: they went to the private Contact and were lost).
#[test]
fn carrier_call_with_prack_update_reinvite_and_info() {
    if !sipp_available() {
        return;
    }
    let base = port_block();
    let conf = config(base, "").replace(
        "next_hop = \"udp:127.0.0.1:",
        "record_route = true\nnext_hop = \"udp:127.0.0.1:",
    );
    let proxy = Proxy::start(&conf, 1);
    let dir = proxy.dir.path().to_path_buf();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/sipp");
    let plain = root.join("carrier-uac.xml");
    let uac = std::fs::read_to_string(&plain).unwrap();
    let via = "Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=";
    let contact = "Contact: <sip:+442071234567@[local_ip]:[local_port];transport=[transport]>";
    // Our Record-Route carries the flow.
    let rr = ";lr&gt;\" search_in";
    assert!(uac.contains(via) && uac.contains(contact) && uac.contains(rr));
    let natted = uac
        .replace(
            rr,
            ";lr;sf-flow=127\\.0\\.0\\.1~[0-9]+~(udp|tcp)&gt;\" search_in",
        )
        .replace(
            via,
            "Via: SIP/2.0/[transport] 127.0.0.9:[local_port];rport;branch=",
        )
        .replace(
            contact,
            "Contact: <sip:+442071234567@127.0.0.9:[local_port];transport=[transport]>",
        );
    let natted_sc = dir.join("natted-uac.xml");
    std::fs::write(&natted_sc, natted).unwrap();
    let uas = checking_uas(&dir, base + 10, &root.join("carrier-uas.xml"), 4);
    for (sc, t, port) in [
        (&plain, "u1", base + 20),
        (&plain, "t1", base + 21),
        (&natted_sc, "u1", base + 22),
        (&natted_sc, "t1", base + 23),
    ] {
        let (code, out) = one_call(&dir, sc, base, port, t, &[]);
        assert_eq!(code, 0, "{sc:?} over {t}: exit {code}\n{out}");
    }
    let (code, out) = uas.join().unwrap();
    assert_eq!(code, 0, "far end:\n{out}");
    // INVITE, PRACK, ACK, UPDATE, re-INVITE, ACK, INFO and BYE of each call.
    let requests = proxy.metric("sipfence_messages_total{kind=\"request\",transport=\"udp\"}")
        + proxy.metric("sipfence_messages_total{kind=\"request\",transport=\"tcp\"}");
    assert!(requests >= 32.0, "{requests} requests through the proxy");
    assert_eq!(
        proxy.metric("sipfence_calls_total{trunk=\"intl\",verdict=\"allow\"}"),
        4.0,
        "four calls judged: re-INVITEs are in-dialog"
    );
    // The natted calls' flows, written once each, followed by each one's INFO.
    for (event, n) in [("written", 2.0), ("followed", 2.0), ("stripped", 0.0)] {
        assert_eq!(
            proxy.metric(&format!("sipfence_nat_flows_total{{event=\"{event}\"}}")),
            n,
            "{event}"
        );
    }
}

/// A PBX on a trunk told by its digest answers alone (`[trunk.auth]`, no `sources`,
/// `record_route`): sipp places the carrier call of
/// [`carrier_call_with_prack_update_reinvite_and_info`] with credentials, and sipfence is
/// restarted after the ACK. Every request of the dialog carries the token of
/// sipfence's Record-Route in its Route: the early dialog's PRACK before any 2xx, and
/// after the restart, which forgot every dialog, the UPDATE, the re-INVITE (no new call,
/// not challenged) and the BYE go on. A stranger's BYE with made-up tags is challenged
/// (QA 189: it went on).
#[test]
fn an_auth_only_trunks_pbx_call_survives_a_restart_by_its_dialog_token() {
    if !sipp_available() {
        return;
    }
    let base = port_block();
    let pbx = base + 6;
    let conf = config(
        base,
        &format!(
            "[[trunk]]\nname = \"pbx\"\nrole = \"enterprise\"\nlisten = [\"udp:127.0.0.1:{pbx}\"]\nnext_hop = \"udp:127.0.0.1:{}\"\nrecord_route = true\n[trunk.whitelist]\nentries = [\"+8613912345678\"]\n[trunk.auth]\nrealm = \"pbx.example\"\nusers = [\"pbx1:s3cret\"]\n",
            base + 10
        ),
    )
    .replace("[general]\n", "[general]\nauth_secret = \"fleet\"\n");
    let proxy = Proxy::start(&conf, 1);
    let dir = proxy.dir.path().to_path_buf();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/sipp");
    // The carrier call, its caller the contracted number, its INVITE challenged and
    // sent again with credentials (the 407 and its ACK as in auth-uac.xml.in), its
    // CSeqs moved on, a pause after the ACK for the restart, and our Record-Route
    // expected with its token.
    let carrier = std::fs::read_to_string(root.join("carrier-uac.xml"))
        .unwrap()
        .replace("+442071234567", "+8613912345678");
    let auth = include_str!("../testdata/sipp/auth-uac.xml.in");
    let first_send = carrier.find("<send").unwrap();
    let after_invite = carrier.find("</send>").unwrap() + "</send>".len();
    let invite = &carrier[first_send..after_invite];
    let challenge = {
        let from = auth.find("</send>").unwrap() + "</send>".len();
        let to = from + auth[from..].find("<send retrans").unwrap();
        &auth[from..to]
    };
    assert!(challenge.contains("<recv response=\"407\" auth=\"true\">"));
    let answered = invite.replace("CSeq: 1 INVITE", "CSeq: 2 INVITE").replace(
        "      Max-Forwards: 70\n",
        "      [authentication]\n      Max-Forwards: 70\n",
    );
    assert!(answered.contains("[authentication]") && answered.contains("CSeq: 2 INVITE"));
    let mut tail = carrier[after_invite..].to_string();
    for (from, to) in [
        ("CSeq: 2 PRACK", "CSeq: 12 PRACK"),
        ("RAck: [$rseq] 1 INVITE", "RAck: [$rseq] 2 INVITE"),
        ("CSeq: 1 ACK", "CSeq: 2 ACK"),
        ("CSeq: 3 UPDATE", "CSeq: 13 UPDATE"),
        ("CSeq: 4 INVITE", "CSeq: 14 INVITE"),
        ("CSeq: 4 ACK", "CSeq: 14 ACK"),
        ("CSeq: 5 BYE", "CSeq: 15 BYE"),
        (
            ";lr&gt;\" search_in",
            ";lr;sf-dlg=[0-9a-f]{16}&gt;\" search_in",
        ),
    ] {
        assert!(tail.contains(from), "{from}");
        tail = tail.replace(from, to);
    }
    let ack_end = tail.find("CSeq: 2 ACK").unwrap();
    let ack_end = ack_end + tail[ack_end..].find("</send>").unwrap() + "</send>".len();
    tail.insert_str(ack_end, "\n  <pause milliseconds=\"4000\"/>\n");
    let sc = dir.join("pbx-uac.xml");
    std::fs::write(
        &sc,
        format!(
            "{}{invite}{challenge}{answered}{tail}",
            &carrier[..first_send]
        ),
    )
    .unwrap();
    // The far end, which sees the INVITE the PBX sent with credentials (CSeq 2).
    let far = std::fs::read_to_string(root.join("carrier-uas.xml")).unwrap();
    assert!(far.contains("RAck: 1 1 INVITE"));
    let far_sc = dir.join("pbx-uas.xml");
    // The core's side gets the place for the token, never a token (QA 193 N1).
    let hundred_rel = "<ereg regexp=\"100rel\" search_in=\"hdr\" header=\"Supported:\" check_it=\"true\" assign_to=\"chk\"/>";
    assert!(far.contains(hundred_rel));
    let far = far
        .replace("RAck: 1 1 INVITE", "RAck: 1 2 INVITE")
        .replace(
            hundred_rel,
            &format!("{hundred_rel}\n      <ereg regexp=\";lr;sf-dlg=~pbx\\.[0-9a-f]{{8}}&gt;\" search_in=\"hdr\" header=\"Record-Route:\" check_it=\"true\" assign_to=\"chk\"/>"),
        );
    std::fs::write(&far_sc, far).unwrap();
    let uas = checking_uas(&dir, base + 10, &far_sc, 1);
    let call = {
        let dir = dir.clone();
        std::thread::spawn(move || {
            one_call(
                &dir,
                &sc,
                pbx,
                base + 20,
                "u1",
                &["-au", "pbx1", "-ap", "s3cret"],
            )
        })
    };
    // Once the call is answered, the gateway goes down and comes back.
    let answered = |p: &Proxy| p.metric("sipfence_calls_total{trunk=\"pbx\",verdict=\"allow\"}");
    let t0 = std::time::Instant::now();
    while answered(&proxy) < 1.0 && t0.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(50));
    }
    if answered(&proxy) < 1.0 {
        let (code, out) = call.join().unwrap();
        panic!("the PBX's call was not answered: exit {code}\n{out}");
    }
    std::thread::sleep(Duration::from_millis(500));
    drop(proxy);
    let proxy = Proxy::start(&conf, 1);
    let (code, out) = call.join().unwrap();
    assert_eq!(code, 0, "the PBX's call:\n{out}");
    let (code, out) = uas.join().unwrap();
    assert_eq!(code, 0, "far end:\n{out}");
    // After the restart: no call judged (the re-INVITE was the call's), none challenged.
    assert_eq!(answered(&proxy), 0.0);
    assert_eq!(
        proxy.metric("sipfence_calls_total{trunk=\"pbx\",verdict=\"challenge\"}"),
        0.0
    );
    // A stranger's BYE with made-up tags: challenged, not sent on.
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let me = s.local_addr().unwrap();
    let bye = format!(
        "BYE sip:+8613912345678@127.0.0.1:{} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-stranger\r\nFrom: <sip:+8613912345678@{me}>;tag=made-up\r\nTo: <sip:4008001234@127.0.0.1>;tag=also-made-up\r\nCall-ID: stranger-1\r\nCSeq: 2 BYE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
        base + 10
    );
    s.send_to(bye.as_bytes(), ("127.0.0.1", pbx)).unwrap();
    let mut buf = [0u8; 4096];
    let n = s.recv(&mut buf).unwrap();
    let answer = String::from_utf8_lossy(&buf[..n]);
    assert!(answer.starts_with("SIP/2.0 407 "), "{answer}");
}

/// A PBX behind a NAT that registers to the core through sipfence gets the core's calls
/// through it (RFC 3327 Path, `register_path`): sipp as the PBX writes an address nothing
/// reaches in its Via and Contact, sipp as the registrar calls the Contact it registered
/// by the Path, and the INVITE, ACK and BYE arrive at the PBX over UDP and over its TCP
/// connection.
#[test]
fn a_pbx_registered_through_the_gateway_is_called_by_its_path() {
    if !sipp_available() {
        return;
    }
    let base = port_block();
    let conf = config(base, "").replacen(
        "next_hop = \"udp:127.0.0.1:",
        "record_route = true\nregister_path = true\nnext_hop = \"udp:127.0.0.1:",
        1,
    );
    let proxy = Proxy::start(&conf, 1);
    let dir = proxy.dir.path().to_path_buf();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/sipp");
    let core = checking_uas(&dir, base + 10, &root.join("registrar-core.xml"), 2);
    for (t, port) in [("u1", base + 20), ("t1", base + 21)] {
        let (code, out) = one_call(&dir, &root.join("register-pbx.xml"), base, port, t, &[]);
        assert_eq!(code, 0, "PBX over {t}: exit {code}\n{out}");
    }
    let (code, out) = core.join().unwrap();
    assert_eq!(code, 0, "registrar:\n{out}");
    // Each REGISTER's Path and each 200 of the PBX's got the flow; the core's INVITE,
    // ACK and BYE followed it. None was a call of the trunk's.
    for (event, n) in [("written", 4.0), ("followed", 6.0), ("stripped", 0.0)] {
        assert_eq!(
            proxy.metric(&format!("sipfence_nat_flows_total{{event=\"{event}\"}}")),
            n,
            "{event}"
        );
    }
    assert_eq!(
        proxy.metric("sipfence_calls_total{trunk=\"intl\",verdict=\"allow\"}"),
        0.0
    );
}

/// The end of testdata/sipp/auth-uac.xml.in for a call that is answered: ACK, BYE.
const ANSWERED_TAIL: &str = r#"  <recv response="100" optional="true"> </recv>
  <recv response="180" optional="true"> </recv>
  <recv response="200"> </recv>
  <send>
    <![CDATA[

      ACK sip:4008001234@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:+8613912345678@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:4008001234@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 2 ACK
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
  <send retrans="500">
    <![CDATA[

      BYE sip:4008001234@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:+8613912345678@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:4008001234@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 3 BYE
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
  <recv response="200"> </recv>"#;

/// The end of testdata/sipp/auth-uac.xml.in for a call refused 403 after the challenge.
const REFUSED_TAIL: &str = r#"  <recv response="100" optional="true"> </recv>
  <recv response="403"> </recv>
  <send>
    <![CDATA[

      ACK sip:4008001234@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch-3]
      From: <sip:+8613912345678@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:4008001234@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 2 ACK
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>"#;

/// A proxy whose enterprise trunk has this `[trunk.auth]` table (its lines, each with
/// its newline).
fn auth_proxy(base: u16, auth: &str) -> Proxy {
    let conf = config(base, "").replace(
        "entries = [\"+8613912340000..+8613912349999\"]\n",
        &format!("entries = [\"+8613912340000..+8613912349999\"]\n[trunk.auth]\n{auth}"),
    );
    assert!(conf.contains(auth));
    Proxy::start(&conf, 1)
}

/// An enterprise trunk with digest authentication (`[trunk.auth]`): an INVITE without
/// credentials is challenged 407 with a nonce; answered with the right password the
/// call completes, and the credentials do not travel on to the core; a wrong password is
/// refused 403. The whitelist still judges the authenticated trunk's callers.
#[test]
fn digest_authenticated_trunk() {
    if !sipp_available() {
        return;
    }
    let base = port_block();
    let proxy = auth_proxy(
        base,
        "realm = \"ent.example\"\nusers = [\"pbx1:s3cret\", \"pbx2:other\"]\n",
    );
    let dir = proxy.dir.path().to_path_buf();
    let tpl = include_str!("../testdata/sipp/auth-uac.xml.in");
    let run = |tail: &str, name: &str, port: u16, user: &str, pass: &str| {
        let sc = dir.join(format!("auth-{name}.xml"));
        std::fs::write(&sc, tpl.replace("@TAIL@", tail)).unwrap();
        one_call(&dir, &sc, base + 2, port, "u1", &["-au", user, "-ap", pass])
    };
    // The core sees the authenticated call without the credentials meant for sipfence.
    let sc = uas_check_scenario(
        &dir,
        "auth",
        &["Max-Forwards: 69", "branch=z9hG4bKsf"],
        &["Proxy-Authorization", "s3cret"],
    );
    let uas = checking_uas(&dir, base + 10, &sc, 1);
    let (code, out) = run(ANSWERED_TAIL, "ok", base + 20, "pbx1", "s3cret");
    assert_eq!(code, 0, "authenticated call:\n{out}");
    let (code, out) = uas.join().unwrap();
    assert_eq!(code, 0, "at the core:\n{out}");
    let (code, out) = run(REFUSED_TAIL, "bad", base + 21, "pbx1", "wrong");
    assert_eq!(code, 0, "wrong password:\n{out}");
    // Another user's password for pbx1 is just as wrong.
    let (code, out) = run(REFUSED_TAIL, "cross", base + 22, "pbx1", "other");
    assert_eq!(code, 0, "another user's password:\n{out}");
    // No credentials at all: the challenge, and nothing reaches the core.
    calls(
        &dir,
        base + 2,
        base + 23,
        "u1",
        407,
        &[("+8613912345678@", "X-No-PAI: 1", "X-No-Privacy: 1")],
    );
    let m = |s: &str| proxy.metric(s);
    // Challenges: one for each of the three authenticating calls and the plain one;
    // refusals: the two wrong passwords. The rule's hits say which it was.
    assert_eq!(
        m("sipfence_rule_hits_total{action=\"challenge\",rule=\"trunk-auth\",trunk=\"ent\"}"),
        4.0
    );
    assert_eq!(
        m("sipfence_rule_hits_total{action=\"reject\",rule=\"trunk-auth\",trunk=\"ent\"}"),
        2.0
    );
    assert_eq!(
        m("sipfence_calls_total{trunk=\"ent\",verdict=\"allow\"}"),
        1.0
    );
    // The challenges are counted apart from the refusals (wrong passwords).
    assert_eq!(
        m("sipfence_calls_total{trunk=\"ent\",verdict=\"challenge\"}"),
        4.0
    );
    assert_eq!(
        m("sipfence_calls_total{trunk=\"ent\",verdict=\"reject\"}"),
        2.0
    );
    for (result, n) in [
        ("ok", 1.0),
        ("missing", 4.0),
        ("stale", 0.0),
        ("invalid", 2.0),
    ] {
        let sample = format!("sipfence_auth_total{{result=\"{result}\",trunk=\"ent\"}}");
        assert_eq!(m(&sample), n, "{sample}");
    }
    // Trunks without [trunk.auth] have no such series.
    let (_, body) = proxy.http("GET", "/metrics");
    assert!(!body.contains("sipfence_auth_total{result=\"ok\",trunk=\"intl\"}"));
}

/// A digest answer is good for one call. The PBX (sipp with `-au/-ap`) places an
/// authenticated call; its `Proxy-Authorization` is taken from sipp's own message trace
/// (what a wiretap on the trunk would capture) and sent in a new call by another sipp:
/// challenged again with `stale=true`, and nothing of it reaches the core. The PBX's next
/// call answers its own fresh challenge and goes through.
#[test]
fn a_replayed_digest_answer_is_challenged_again() {
    if !sipp_available() {
        return;
    }
    let base = port_block();
    let proxy = auth_proxy(base, "realm = \"ent.example\"\nusers = [\"pbx1:s3cret\"]\n");
    let dir = proxy.dir.path().to_path_buf();
    let tpl = include_str!("../testdata/sipp/auth-uac.xml.in");
    let pbx = dir.join("auth-pbx.xml");
    std::fs::write(&pbx, tpl.replace("@TAIL@", ANSWERED_TAIL)).unwrap();
    let trace = dir.join("pbx-messages.log");
    let sc = uas_check_scenario(
        &dir,
        "core",
        &["Max-Forwards: 69"],
        &["Proxy-Authorization"],
    );
    let uas = checking_uas(&dir, base + 10, &sc, 2);
    let (code, out) = one_call(
        &dir,
        &pbx,
        base + 2,
        base + 20,
        "u1",
        &[
            "-au",
            "pbx1",
            "-ap",
            "s3cret",
            "-trace_msg",
            "-message_file",
            trace.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "the PBX's call:\n{out}");
    let log = std::fs::read_to_string(&trace).expect("sipp's message trace");
    let captured = log
        .lines()
        .find(|l| l.starts_with("Proxy-Authorization: Digest "))
        .unwrap_or_else(|| panic!("no answer in the trace:\n{log}"))
        .trim_end()
        .to_string();
    // The replayer: the captured field in an INVITE of its own (new Call-ID, branch):
    // the template's first INVITE, its 407 (which must say stale=true) and the ACK.
    let second_invite = tpl
        .match_indices("  <send retrans=\"500\">")
        .nth(1)
        .map(|(k, _)| k)
        .expect("the template's second INVITE");
    let replay = tpl[..second_invite]
        .replacen(
            "      Max-Forwards: 70\n",
            &format!("      {captured}\n      Max-Forwards: 70\n"),
            1,
        )
        .replace(
            "<recv response=\"407\" auth=\"true\"> </recv>",
            r#"<recv response="407">
    <action>
      <ereg regexp="stale=true" search_in="hdr" header="Proxy-Authenticate:" check_it="true" assign_to="stale"/>
    </action>
  </recv>
  <Reference variables="stale"/>"#,
        )
        + "</scenario>\n";
    assert!(replay.contains(&captured) && replay.contains("stale=true"));
    let sc = dir.join("replay.xml");
    std::fs::write(&sc, replay).unwrap();
    let (code, out) = one_call(&dir, &sc, base + 2, base + 21, "u1", &[]);
    assert_eq!(code, 0, "the replayed answer:\n{out}");
    let m = |s: &str| proxy.metric(s);
    let auth = |r: &str| {
        m(&format!(
            "sipfence_auth_total{{result=\"{r}\",trunk=\"ent\"}}"
        ))
    };
    assert_eq!((auth("ok"), auth("replayed")), (1.0, 1.0));
    assert_eq!(
        m("sipfence_calls_total{trunk=\"ent\",verdict=\"allow\"}"),
        1.0
    );
    // The PBX's next call is its own: a fresh challenge, a fresh answer, through.
    let (code, out) = one_call(
        &dir,
        &pbx,
        base + 2,
        base + 22,
        "u1",
        &["-au", "pbx1", "-ap", "s3cret"],
    );
    assert_eq!(code, 0, "the PBX's next call:\n{out}");
    let (code, out) = uas.join().unwrap();
    assert_eq!(
        code, 0,
        "at the core (the PBX's two calls, not the replay):\n{out}"
    );
    assert_eq!((auth("ok"), auth("replayed")), (2.0, 1.0));
}

/// sipvicious' svcrack guesses the PBX password of an authenticated trunk from one
/// address of it, the right password last in its list: past `max_failures_per_minute`
/// wrong answers the address is locked and even the right one is refused, while the
/// real PBX at another address of the trunk still gets its calls through, and the
/// guessing address with the right password is still refused afterwards.
#[test]
fn password_guessing_locks_the_guessing_address() {
    if !sipp_available() || !common::svcrack_available() {
        return;
    }
    let base = port_block();
    let proxy = auth_proxy(
        base,
        "realm = \"ent.example\"\nusers = [\"pbx1:s3cret\"]\nmax_failures_per_minute = 5\n",
    );
    let dir = proxy.dir.path().to_path_buf();
    let dict = dir.join("passwords.txt");
    let mut words: Vec<String> = (1..=15).map(|i| format!("guess{i}")).collect();
    words.push("s3cret".into());
    std::fs::write(&dict, words.join("\n") + "\n").unwrap();
    let out = std::process::Command::new("timeout")
        .args(["60", "svcrack", "-m", "INVITE", "-u", "pbx1", "-d"])
        .arg(&dict)
        .args([
            "-p",
            &(base + 2).to_string(),
            "-b",
            "127.0.0.2",
            "127.0.0.1",
        ])
        .output()
        .expect("svcrack runs");
    let said =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    let m = |s: &str| proxy.metric(s);
    let auth = |r: &str| {
        m(&format!(
            "sipfence_auth_total{{result=\"{r}\",trunk=\"ent\"}}"
        ))
    };
    // Five wrong answers are checked; the other ten and the right one find the address
    // locked. Every attempt was challenged first.
    assert_eq!(
        (auth("invalid"), auth("locked"), auth("ok")),
        (5.0, 11.0, 0.0),
        "svcrack said:\n{said}"
    );
    assert!(auth("missing") >= 16.0, "svcrack said:\n{said}");
    assert!(
        !said.contains("s3cret"),
        "svcrack found the password:\n{said}"
    );
    // The PBX itself, at another address of the trunk (svcrack sends from 127.0.0.1
    // whatever its -b), answers its challenge and its call goes through.
    let sc = uas_check_scenario(&dir, "pbx", &["Max-Forwards: 69"], &["Proxy-Authorization"]);
    let uas = checking_uas(&dir, base + 10, &sc, 1);
    let tpl = include_str!("../testdata/sipp/auth-uac.xml.in");
    let uac = dir.join("auth-pbx.xml");
    std::fs::write(&uac, tpl.replace("@TAIL@", ANSWERED_TAIL)).unwrap();
    let (code, out) = one_call(
        &dir,
        &uac,
        base + 2,
        base + 20,
        "u1",
        &["-au", "pbx1", "-ap", "s3cret", "-i", "127.0.0.2"],
    );
    assert_eq!(code, 0, "the PBX's call:\n{out}");
    let (code, out) = uas.join().unwrap();
    assert_eq!(code, 0, "at the core:\n{out}");
    assert_eq!(auth("ok"), 1.0);
    assert_eq!(auth("locked"), 11.0);
    // The right password from the guessing address: still locked (the minute is not
    // over), refused 403 without a new challenge.
    let refused = dir.join("auth-locked.xml");
    std::fs::write(&refused, tpl.replace("@TAIL@", REFUSED_TAIL)).unwrap();
    let (code, out) = one_call(
        &dir,
        &refused,
        base + 2,
        base + 21,
        "u1",
        &["-au", "pbx1", "-ap", "s3cret"],
    );
    assert_eq!(
        code, 0,
        "the right password from the locked address:\n{out}"
    );
    assert_eq!((auth("ok"), auth("locked")), (1.0, 12.0));
}

/// `[hep]`: every message the proxy reads and sends reaches a Homer collector (here a UDP
/// socket of the test) in HEPv3, with both ends' addresses: an allowed call in and out
/// over UDP, a rejected one with the proxy's own 403, and a call whose caller side is
/// TCP (mirrored as TCP) while the core side is UDP. What it sends is counted.
#[test]
fn every_message_is_mirrored_to_homer_in_hep() {
    if !sipp_available() {
        return;
    }
    let base = port_block();
    let homer = UdpSocket::bind(("127.0.0.1", base + 25)).unwrap();
    homer
        .set_read_timeout(Some(Duration::from_millis(700)))
        .unwrap();
    let hep = format!(
        "[hep]\nserver = \"udp:127.0.0.1:{}\"\ncapture_id = 2001\npassword = \"homer-key\"\n",
        base + 25
    );
    let proxy = Proxy::start(&config(base, &hep), 1);
    let dir = proxy.dir.path().to_path_buf();
    let _uas = sipp_uas(base + 10, None, &dir);
    let none = ("X-No-PAI: 1", "X-No-Privacy: 1");
    calls(
        &dir,
        base,
        base + 20,
        "u1",
        200,
        &[("+442071234567@", none.0, none.1)],
    );
    calls(
        &dir,
        base,
        base + 21,
        "u1",
        403,
        &[("+8613812345678@", none.0, none.1)],
    );
    calls(
        &dir,
        base,
        base + 22,
        "t1",
        200,
        &[("+12125550123@", none.0, none.1)],
    );
    // Datagrams that are no SIP (RTP, garbage sent to the SIP port) are not mirrored as
    // SIP (QA 147): each copy below must open as a SIP message.
    let junk = UdpSocket::bind("127.0.0.1:0").unwrap();
    for d in [&b"\x80\x08\x00\x01\x00\x00\x00\xa0rtp"[..], b"hello world"] {
        junk.send_to(d, ("127.0.0.1", base)).unwrap();
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while proxy.metric("sipfence_dropped_total{reason=\"malformed\"}") < 2.0 {
        assert!(std::time::Instant::now() < deadline, "the junk never read");
        std::thread::sleep(Duration::from_millis(50));
    }

    // (source, destination, IP protocol, message) of every HEP packet received.
    let mut got = vec![];
    let mut buf = vec![0u8; 70_000];
    while let Ok(n) = homer.recv(&mut buf) {
        let h = sipfence::hep::open(&buf[..n])
            .expect("HEP")
            .expect("a SIP message");
        // Correlated by the Call-ID, which Homer's tools group a call's copies by.
        let call_id = h.payload.split(|&c| c == b'\n').find_map(|l| {
            let l = String::from_utf8_lossy(l);
            l.strip_prefix("Call-ID:").map(|v| v.trim().to_string())
        });
        assert_eq!(
            Some(String::from_utf8_lossy(h.correlation).into_owned()),
            call_id
        );
        got.push((
            h.src,
            h.dst,
            h.ip_proto,
            String::from_utf8_lossy(&h.payload).into_owned(),
        ));
    }
    let a = |port: u16| std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let (proxy_at, uas) = (a(base), a(base + 10));
    let seen = |from: std::net::SocketAddr,
                to: std::net::SocketAddr,
                proto: u8,
                start: &str,
                caller: &str| {
        got.iter().any(|(s, d, p, m)| {
            *s == from && *d == to && *p == proto && m.starts_with(start) && m.contains(caller)
        })
    };
    let uk = "+442071234567@";
    // The allowed UDP call, each message in and out.
    for (start, caller_side_in) in [
        ("INVITE ", true),
        ("SIP/2.0 200", false),
        ("ACK ", true),
        ("BYE ", true),
    ] {
        let (c_from, c_to, u_from, u_to) = if caller_side_in {
            (a(base + 20), proxy_at, proxy_at, uas)
        } else {
            (proxy_at, a(base + 20), uas, proxy_at)
        };
        assert!(
            seen(c_from, c_to, 17, start, uk),
            "{start} caller side: {got:#?}"
        );
        assert!(
            seen(u_from, u_to, 17, start, uk),
            "{start} core side: {got:#?}"
        );
    }
    // What went to the core is what the proxy sent: its own Via on top.
    let fwd = got
        .iter()
        .find(|(s, d, _, m)| {
            *s == proxy_at && *d == uas && m.starts_with("INVITE ") && m.contains(uk)
        })
        .unwrap();
    let top_via = fwd.3.lines().find(|l| l.starts_with("Via:")).unwrap();
    assert!(
        top_via.contains(&format!("127.0.0.1:{base};branch=z9hG4bK")),
        "{top_via}"
    );
    // The rejected call: in, the proxy's 403 out, never to the core.
    let cn = "+8613812345678@";
    assert!(seen(a(base + 21), proxy_at, 17, "INVITE ", cn));
    assert!(seen(proxy_at, a(base + 21), 17, "SIP/2.0 403", cn));
    assert!(!got.iter().any(|(_, d, _, m)| *d == uas && m.contains(cn)));
    // The TCP caller: its side mirrored as TCP (the proxy's end is the connection's).
    let us = "+12125550123@";
    assert!(seen(a(base + 22), proxy_at, 6, "INVITE ", us), "{got:#?}");
    assert!(seen(proxy_at, uas, 17, "INVITE ", us));
    assert!(
        seen(proxy_at, a(base + 22), 6, "SIP/2.0 200", us),
        "{got:#?}"
    );
    // Counted as sent, one by one; nothing lost.
    let sent = proxy.metric("sipfence_hep_packets_total{outcome=\"sent\"}");
    assert_eq!(sent as usize, got.len());
    assert_eq!(
        proxy.metric("sipfence_hep_packets_total{outcome=\"socket-full\"}"),
        0.0
    );

    // `check` names the mirror; changing it takes a restart, and a reload says so.
    let with =
        sipfence::policy::Policy::from_str(&config(base, &hep), "a.toml", Path::new(".")).unwrap();
    let without =
        sipfence::policy::Policy::from_str(&config(base, ""), "b.toml", Path::new(".")).unwrap();
    assert!(
        with.summary().contains(&format!(
            "hep: every message mirrored to udp:127.0.0.1:{} (capture id 2001)",
            base + 25
        )),
        "{}",
        with.summary()
    );
    assert!(!without.summary().contains("hep:"));
    let c = sipfence::policy::diff::changes(&with, &without);
    assert_eq!(c.restart, vec!["[hep]".to_string()]);

    // A collector over TCP is refused where it is written.
    let e = sipfence::policy::Policy::from_str(
        "[hep]\nserver = \"tcp:127.0.0.1:9060\"\n",
        "hep.toml",
        Path::new("."),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("hep.toml:2:") && e.contains("UDP only"), "{e}");
}

/// An interconnect trunk listening on UDP and TCP at `base`, its core (UDP) at base + 10,
/// metrics at base + 30; `extra` goes into the trunk's table.
fn interconnect_over_tcp(base: u16, extra: &str) -> String {
    format!(
        r#"
[[trunk]]
name = "ic"
role = "interconnect"
listen = ["udp:127.0.0.1:{base}", "tcp:127.0.0.1:{base}"]
sources = ["127.0.0.0/8"]
next_hop = "udp:127.0.0.1:{uas}"
{extra}
[metrics]
listen = "127.0.0.1:{metrics}"
"#,
        uas = base + 10,
        metrics = base + 30,
    )
}

/// Reads `stream` into `seen` until it holds `what` (true), or the stream ends or times
/// out first (false).
fn read_until(stream: &mut std::net::TcpStream, what: &str, seen: &mut Vec<u8>) -> bool {
    use std::io::Read;
    let mut chunk = [0u8; 4096];
    while !String::from_utf8_lossy(seen).contains(what) {
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => seen.extend_from_slice(&chunk[..n]),
        }
    }
    String::from_utf8_lossy(seen).contains(what)
}

/// A request from the core to a trunk peer that reached sipfence over TCP goes over the
/// peer's open connection when it is addressed to that connection's far end (RFC 3261
/// 18.1.1, RFC 5923; Kamailio and OpenSIPS look connections up by address): a PBX
/// behind NAT, or one that does not listen on its source port, cannot be connected to,
/// and the callee could never hang up (QA 64: its BYE was answered 503).
#[test]
fn the_cores_requests_reuse_the_trunk_peers_connection() {
    use std::io::Write;
    let base = port_block();
    let proxy = Proxy::start(&interconnect_over_tcp(base, "record_route = true\n"), 1);
    let core = UdpSocket::bind(("127.0.0.1", base + 10)).unwrap();
    core.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let mut pbx = std::net::TcpStream::connect(("127.0.0.1", base)).unwrap();
    pbx.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let me = pbx.local_addr().unwrap();
    let invite = format!(
        "INVITE sip:+861012345678@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP {me};branch=z9hG4bK-reuse\r\nFrom: <sip:+8613812345678@127.0.0.1>;tag=pbx1\r\nTo: <sip:+861012345678@127.0.0.1>\r\nCall-ID: reuse-1\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContact: <sip:+8613812345678@{me};transport=tcp>\r\nContent-Length: 0\r\n\r\n"
    );
    pbx.write_all(invite.as_bytes()).unwrap();
    let got = recv(&core).expect("the INVITE at the core");
    let field = |m: &str, name: &str| -> Vec<String> {
        m.lines()
            .filter(|l| l.starts_with(name))
            .map(|l| l[name.len()..].trim().to_string())
            .collect()
    };
    let routes = field(&got, "Record-Route:");
    assert!(!routes.is_empty(), "{got}");
    let vias: Vec<String> = field(&got, "Via:");
    let mut answer = String::from("SIP/2.0 200 OK\r\n");
    for v in &vias {
        answer += &format!("Via: {v}\r\n");
    }
    answer += "From: <sip:+8613812345678@127.0.0.1>;tag=pbx1\r\nTo: <sip:+861012345678@127.0.0.1>;tag=core1\r\nCall-ID: reuse-1\r\nCSeq: 1 INVITE\r\nContact: <sip:core@127.0.0.1>\r\nContent-Length: 0\r\n\r\n";
    core.send_to(answer.as_bytes(), ("127.0.0.1", base))
        .unwrap();
    let mut seen = Vec::new();
    assert!(
        read_until(&mut pbx, "SIP/2.0 200 OK", &mut seen),
        "{}",
        String::from_utf8_lossy(&seen)
    );
    // The callee hangs up: its BYE, routed through sipfence, names the PBX's Contact,
    // the far end of the PBX's own connection, which listens nowhere.
    let mut bye = format!(
        "BYE sip:+8613812345678@{me};transport=tcp SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{};branch=z9hG4bK-bye1\r\n",
        base + 10
    );
    for r in &routes {
        bye += &format!("Route: {r}\r\n");
    }
    bye += "From: <sip:+861012345678@127.0.0.1>;tag=core1\r\nTo: <sip:+8613812345678@127.0.0.1>;tag=pbx1\r\nCall-ID: reuse-1\r\nCSeq: 1 BYE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n";
    core.send_to(bye.as_bytes(), ("127.0.0.1", base)).unwrap();
    seen.clear();
    assert!(
        read_until(&mut pbx, "BYE sip:", &mut seen),
        "the BYE on the PBX's connection: {}",
        String::from_utf8_lossy(&seen)
    );
    // Nothing came back to the core instead (a 503 for a next hop unreachable).
    core.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    assert_eq!(recv(&core), None);
    assert_eq!(proxy.metric("sipfence_tcp_connections"), 1.0);
    // Once the PBX's connection is gone, a request for that address is tried anew (and
    // answered 503 when nothing listens there).
    drop(pbx);
    std::thread::sleep(Duration::from_millis(300));
    core.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    core.send_to(
        bye.replace("bye1", "bye2")
            .replace("CSeq: 1 BYE", "CSeq: 2 BYE")
            .as_bytes(),
        ("127.0.0.1", base),
    )
    .unwrap();
    let r = recv(&core).expect("an answer");
    assert!(r.starts_with("SIP/2.0 503 "), "{r}");
    // A PBX that connects from an address just found unreachable is used at once, not
    // after the next attempt a second later (QA 66).
    let q = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let to_q = |n: u32| {
        bye.replace(&me.to_string(), &q.to_string())
            .replace("bye1", &format!("byeq{n}"))
            .replace("CSeq: 1 BYE", &format!("CSeq: {} BYE", 10 + n))
    };
    core.send_to(to_q(1).as_bytes(), ("127.0.0.1", base))
        .unwrap();
    let r = recv(&core).expect("an answer");
    assert!(r.starts_with("SIP/2.0 503 "), "{r}");
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.set_reuse_address(true).unwrap();
    sock.bind(&q.into()).unwrap();
    sock.connect(&std::net::SocketAddr::from(([127, 0, 0, 1], base)).into())
        .unwrap();
    let mut pbx2: std::net::TcpStream = sock.into();
    pbx2.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    // A keep-alive, and a moment for the proxy to take the connection in.
    pbx2.write_all(b"\r\n\r\n").unwrap();
    std::thread::sleep(Duration::from_millis(200));
    core.send_to(to_q(2).as_bytes(), ("127.0.0.1", base))
        .unwrap();
    let mut seen = Vec::new();
    assert!(
        read_until(&mut pbx2, "BYE sip:", &mut seen),
        "the BYE on the new connection: {}",
        String::from_utf8_lossy(&seen)
    );
}

/// A response for a caller whose TCP connection has closed goes over a new connection
/// to the address its Via names (`received` and the sent-by port, RFC 3261 18.2.2), as
/// Kamailio does: a PBX whose connection broke between its INVITE and the answer (a NAT
/// rebinding, a load balancer, a reconnect) still gets its 180 and 200 (QA 79: they
/// were dropped as `tcp-gone`, and the answered call timed out at the caller).
#[test]
fn a_response_for_a_closed_tcp_connection_goes_over_a_new_one() {
    use std::io::Write;
    let base = port_block();
    let proxy = Proxy::start(&interconnect_over_tcp(base, ""), 1);
    let core = UdpSocket::bind(("127.0.0.1", base + 10)).unwrap();
    core.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    // The PBX listens on its sent-by port and sends from another (an ephemeral one).
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let sent_by = listener.local_addr().unwrap();
    let mut pbx = std::net::TcpStream::connect(("127.0.0.1", base)).unwrap();
    let invite = format!(
        "INVITE sip:+861012345678@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP {sent_by};branch=z9hG4bK-gone1\r\nFrom: <sip:+8613812345678@127.0.0.1>;tag=pbx1\r\nTo: <sip:+861012345678@127.0.0.1>\r\nCall-ID: gone-1\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContact: <sip:+8613812345678@{sent_by};transport=tcp>\r\nContent-Length: 0\r\n\r\n"
    );
    pbx.write_all(invite.as_bytes()).unwrap();
    let got = recv(&core).expect("the INVITE at the core");
    // The PBX's connection goes before the core answers.
    drop(pbx);
    std::thread::sleep(Duration::from_millis(300));
    let vias: Vec<&str> = got
        .lines()
        .filter_map(|l| l.strip_prefix("Via:"))
        .map(str::trim)
        .collect();
    assert_eq!(vias.len(), 2, "{got}");
    for code in ["180 Ringing", "200 OK"] {
        let mut answer = format!("SIP/2.0 {code}\r\n");
        for v in &vias {
            answer += &format!("Via: {v}\r\n");
        }
        answer += "From: <sip:+8613812345678@127.0.0.1>;tag=pbx1\r\nTo: <sip:+861012345678@127.0.0.1>;tag=core1\r\nCall-ID: gone-1\r\nCSeq: 1 INVITE\r\nContact: <sip:core@127.0.0.1>\r\nContent-Length: 0\r\n\r\n";
        core.send_to(answer.as_bytes(), ("127.0.0.1", base))
            .unwrap();
    }
    // sipfence connects to the sent-by port, and both answers come over that one
    // connection.
    let (mut back, _) = {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(listener.accept());
        });
        rx.recv_timeout(Duration::from_secs(5))
            .expect("sipfence connects to the PBX's sent-by port")
            .unwrap()
    };
    back.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let mut seen = Vec::new();
    read_until(&mut back, "SIP/2.0 200 OK", &mut seen);
    let text = String::from_utf8_lossy(&seen);
    assert!(
        text.starts_with("SIP/2.0 180 Ringing") && text.contains("SIP/2.0 200 OK"),
        "{text}"
    );
    assert_eq!(
        proxy.metric("sipfence_dropped_total{reason=\"tcp-gone\"}"),
        0.0
    );
}

/// A call that crosses IP families on a gateway with several IPv4 listen addresses: the
/// IPv6 core's answer reaches the IPv4 trunk peer from the address the peer sent its
/// INVITE to (RFC 3581 4), not from another trunk's socket (QA 67, and QA 69 with a
/// `[::]` wildcard: a peer's firewall or NAT drops those).
#[test]
fn answers_across_ip_families_leave_from_the_trunks_own_address() {
    if UdpSocket::bind("[::1]:0").is_err() {
        eprintln!("skipped: this host has no IPv6 loopback (::1)");
        return;
    }
    // The IPv6 side on its own address, then on a `[::]` wildcard of another trunk,
    // which can send to IPv4 peers too (QA 69: the answer left by it).
    for v6_listen in ["[::1]", "[::]"] {
        let base = port_block();
        let peer_port = base + 20;
        let conf = format!(
            r#"
[[trunk]]
name = "a"
role = "interconnect"
listen = ["udp:127.0.0.1:{base}"]
sources = ["127.0.0.1/32:{other}"]
next_hop = "udp:127.0.0.1:{core4}"

[[trunk]]
name = "v6"
role = "interconnect"
listen = ["udp:{v6_listen}:{v6}"]
sources = ["::1/128"]
next_hop = "udp:[::1]:{core6}"

[[trunk]]
name = "b"
role = "interconnect"
listen = ["udp:127.0.0.1:{b}"]
sources = ["127.0.0.1/32:{peer_port}"]
next_hop = "udp:[::1]:{core6}"

[metrics]
listen = "127.0.0.1:{metrics}"
"#,
            other = base + 21,
            core4 = base + 10,
            v6 = base + 8,
            core6 = base + 11,
            b = base + 6,
            metrics = base + 30,
        );
        let _proxy = Proxy::start(&conf, 1);
        let core = UdpSocket::bind(("::1", base + 11)).unwrap();
        core.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        let peer = UdpSocket::bind(("127.0.0.1", peer_port)).unwrap();
        peer.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        let inv = invite("xfam-1", "+8613812345678", "z9hG4bK-xfam1", peer_port);
        peer.send_to(inv.as_bytes(), ("127.0.0.1", base + 6))
            .unwrap();
        let mut b = [0u8; 65536];
        let (n, from) = core.recv_from(&mut b).expect("the INVITE at the IPv6 core");
        let got = String::from_utf8_lossy(&b[..n]).into_owned();
        let vias: Vec<&str> = got.lines().filter(|l| l.starts_with("Via:")).collect();
        let mut answer = String::from("SIP/2.0 200 OK\r\n");
        for v in &vias {
            answer += &format!("{v}\r\n");
        }
        answer += "From: <sip:+8613812345678@127.0.0.1>;tag=fxfam-1\r\nTo: <sip:4008001234@127.0.0.1>;tag=core\r\nCall-ID: xfam-1\r\nCSeq: 1 INVITE\r\nContact: <sip:core@[::1]>\r\nContent-Length: 0\r\n\r\n";
        core.send_to(answer.as_bytes(), from).unwrap();
        let (n, src) = peer.recv_from(&mut b).expect("the answer at the peer");
        assert!(b[..n].starts_with(b"SIP/2.0 200 OK\r\n"));
        assert_eq!(
            src,
            std::net::SocketAddr::from(([127, 0, 0, 1], base + 6)),
            "{v6_listen}: from the address the INVITE went to"
        );
    }
}

/// A call the core offers a trunk's peer through the gateway (QA 89 F1): relayed
/// unjudged, record-routed as the peer's own calls are on a `record_route` trunk, so
/// that the peer's BYE comes back through sipfence to the core, over real sockets.
#[test]
fn a_call_the_core_offers_a_peer_is_record_routed() {
    let base = port_block();
    let (core_port, peer_port) = (base + 10, base + 20);
    let proxy = Proxy::start(
        &format!(
            r#"
[[trunk]]
name = "ic"
role = "interconnect"
listen = ["udp:127.0.0.1:{base}"]
sources = ["127.0.0.2/32"]
next_hop = "udp:127.0.0.3:{core_port}"
record_route = true
[metrics]
listen = "127.0.0.1:{m}"
"#,
            m = base + 30
        ),
        1,
    );
    let bind = |ip: &str, port: u16| {
        let s = UdpSocket::bind((ip, port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        s
    };
    let (core, peer) = (bind("127.0.0.3", core_port), bind("127.0.0.2", peer_port));
    let invite = format!(
        "INVITE sip:+8613812345678@127.0.0.2:{peer_port} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.3:{core_port};branch=z9hG4bK-out1\r\nRoute: <sip:127.0.0.1:{base};lr>\r\nFrom: <sip:+8613912345678@127.0.0.3>;tag=c1\r\nTo: <sip:+8613812345678@127.0.0.2>\r\nCall-ID: core-offered-1\r\nCSeq: 1 INVITE\r\nContact: <sip:c@127.0.0.3:{core_port}>\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    );
    core.send_to(invite.as_bytes(), ("127.0.0.1", base))
        .unwrap();
    let got = recv(&peer).expect("the INVITE at the peer");
    let rr = format!("Record-Route: <sip:127.0.0.1:{base};lr>\r\n");
    assert!(got.contains(&rr), "{got}");
    assert!(!got.contains("\r\nRoute:"), "{got}");
    // The peer answers along the Vias, with the route set it was given.
    let vias: String = got
        .split("\r\n")
        .filter(|l| l.starts_with("Via:"))
        .map(|l| format!("{l}\r\n"))
        .collect();
    let ok = format!(
        "SIP/2.0 200 OK\r\n{vias}{rr}From: <sip:+8613912345678@127.0.0.3>;tag=c1\r\nTo: <sip:+8613812345678@127.0.0.2>;tag=p1\r\nCall-ID: core-offered-1\r\nCSeq: 1 INVITE\r\nContact: <sip:p@127.0.0.2:{peer_port}>\r\nContent-Length: 0\r\n\r\n"
    );
    peer.send_to(ok.as_bytes(), ("127.0.0.1", base)).unwrap();
    let got = recv(&core).expect("the 200 at the core");
    assert!(got.starts_with("SIP/2.0 200 "), "{got}");
    // The peer's BYE follows the route set: through the gateway, to the core.
    let bye = format!(
        "BYE sip:c@127.0.0.3:{core_port} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.2:{peer_port};branch=z9hG4bK-pbye\r\nRoute: <sip:127.0.0.1:{base};lr>\r\nFrom: <sip:+8613812345678@127.0.0.2>;tag=p1\r\nTo: <sip:+8613912345678@127.0.0.3>;tag=c1\r\nCall-ID: core-offered-1\r\nCSeq: 1 BYE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    );
    peer.send_to(bye.as_bytes(), ("127.0.0.1", base)).unwrap();
    let got = recv(&core).expect("the peer's BYE at the core");
    assert!(got.starts_with("BYE sip:c@127.0.0.3"), "{got}");
    // None of it was a call of the trunk's.
    assert_eq!(
        proxy.metric("sipfence_calls_total{trunk=\"ic\",verdict=\"allow\"}"),
        0.0
    );
}

/// `sipfence_next_hops_down` names next hops only: a trunk peer whose own address (the
/// Via of a TCP caller that closed its connection) cannot be reached for the core's
/// answer is no next hop down (QA 161: the gauge, and the outage alert, read 1 while
/// such answers were retried).
#[test]
fn a_peer_address_out_of_reach_is_no_next_hop_down() {
    use std::io::Write;
    let base = port_block();
    let core = UdpSocket::bind(("127.0.0.1", base + 10)).unwrap();
    core.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let proxy = common::Proxy::start(
        &format!(
            "[[trunk]]\nname = \"ic\"\nrole = \"interconnect\"\nlisten = [\"tcp:127.0.0.1:{}\", \"udp:127.0.0.1:{}\"]\nsources = [\"127.0.0.0/8\"]\nnext_hop = \"udp:127.0.0.1:{}\"\n[metrics]\nlisten = \"127.0.0.1:{}\"\n",
            base,
            base,
            base + 10,
            base + 30
        ),
        1,
    );
    // The caller's Via names a port nothing listens on, and its connection closes.
    let gone = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let via_port = gone.local_addr().unwrap().port();
    drop(gone);
    let invite = format!(
        "INVITE sip:+8613912345678@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:{via_port};branch=z9hG4bK-gone\r\nFrom: <sip:+8613812345678@127.0.0.1>;tag=g1\r\nTo: <sip:+8613912345678@127.0.0.1>\r\nCall-ID: gone-1\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContact: <sip:a@127.0.0.1:{via_port};transport=tcp>\r\nContent-Length: 0\r\n\r\n"
    );
    let mut peer = std::net::TcpStream::connect(("127.0.0.1", base)).unwrap();
    peer.write_all(invite.as_bytes()).unwrap();
    let mut b = [0u8; 4096];
    let (n, from) = core.recv_from(&mut b).unwrap();
    let req = String::from_utf8_lossy(&b[..n]).into_owned();
    drop(peer);
    std::thread::sleep(Duration::from_millis(200));
    core.send_to(common::answer_as_uas(&req, "200 OK").as_bytes(), from)
        .unwrap();
    let failed = "sipfence_dropped_total{reason=\"tcp-connect-failed\"}";
    let t = std::time::Instant::now();
    while proxy.metric(failed) < 1.0 {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "the answer was never tried"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(proxy.metric("sipfence_next_hops_down"), 0.0);
}
