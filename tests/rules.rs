//! Every rule: the call it blocks and the call it must let through, through the same
//! `decide` the proxy uses, plus the bytes that go out (rejection or rewritten request).

use bytes::Bytes;
use sipfence::behaviour::BehaviourTracker;
use sipfence::behaviour::local::LocalTracker;
use sipfence::decide::{Context, Decision, Kind, Outcome, decide};
use sipfence::policy::rate::{LocalRateCounter, NoCounting, RateCounter};
use sipfence::policy::{Policy, RuleId};
use sipfence::sip::rewrite::EditList;
use sipfence::sip::{HeaderName, Message};
use sipfence::verdict;
use std::net::SocketAddr;
use std::path::Path;

const POLICY: &str = r#"
[general]
verstat = "TN-Validation-Failed"

[lists.blacklist]
entries = ["+8613800000001", "+8617099999*", "+8613912340007"]
[lists.protected]
entries = ["+861066666110"]
[lists.roamers]
entries = ["+8613900000000"]

[[trunk]]
name = "intl"
role = "international"
sources = ["10.0.0.1"]

[[trunk]]
name = "ic"
role = "interconnect"
sources = ["10.0.0.2"]

[[trunk]]
name = "ent"
role = "enterprise"
sources = ["10.0.0.3"]
hours = "09:00-18:00"
utc_offset = "+08:00"
days = ["mon", "tue", "wed", "thu", "fri"]
max_calls_per_minute = 5
max_calls_per_minute_per_caller = 2
[trunk.whitelist]
entries = ["+8613912340000..+8613912349999", "+864008001234", "13812345678"]
"#;

/// Monday 2026-11-30 10:00 in +08:00.
const MON_10H: u64 = 1_795_998_600_000 + 90 * 60_000;

fn policy(extra: &str) -> Policy {
    Policy::from_str(&format!("{POLICY}\n{extra}"), "test.toml", Path::new(".")).unwrap()
}

fn invite(from_user: &str, extra: &str) -> Message {
    let from = if from_user.is_empty() {
        "<sip:10.9.9.9>".to_string()
    } else {
        format!("\"{from_user}\" <sip:{from_user}@10.9.9.9>")
    };
    let s = format!(
        "INVITE sip:4008001234@10.0.0.100 SIP/2.0\r\nVia: SIP/2.0/UDP 10.9.9.9:5060;branch=z9hG4bK-{from_user}\r\nFrom: {from};tag=ft1\r\nTo: <sip:4008001234@10.0.0.100>\r\nCall-ID: call-{from_user}\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContact: <sip:x@10.9.9.9>\r\n{extra}Content-Type: application/sdp\r\nContent-Length: 4\r\n\r\nv=0\n"
    );
    Message::parse(Bytes::from(s)).unwrap()
}

/// An INVITE with this whole From value (tag added) and these extra header lines.
fn with_from(from: &str, extra: &str) -> Message {
    let s = format!(
        "INVITE sip:4008001234@10.0.0.100 SIP/2.0\r\nVia: SIP/2.0/UDP 10.9.9.9:5060;branch=z9hG4bK-wf\r\nFrom: {from};tag=ft1\r\nTo: <sip:4008001234@10.0.0.100>\r\nCall-ID: call-wf\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\n{extra}Content-Length: 0\r\n\r\n"
    );
    Message::parse(Bytes::from(s)).unwrap()
}

/// `m` as another call: its Call-ID `call-{id}` and branch `z9hG4bK-{id}` renamed to
/// `new_id`'s.
fn renamed(m: &Message, id: &str, new_id: &str) -> Message {
    let text = String::from_utf8(m.bytes().to_vec())
        .unwrap()
        .replace(&format!("call-{id}"), &format!("call-{new_id}"))
        .replace(&format!("z9hG4bK-{id}"), &format!("z9hG4bK-{new_id}"));
    Message::parse(Bytes::from(text)).unwrap()
}

/// A [`with_from`] call of its own: its Call-ID and branch named `id`.
fn with_from_call(from: &str, extra: &str, id: &str) -> Message {
    renamed(&with_from(from, extra), "wf", id)
}

/// The From an international trunk forwards after the generic-number rewrite (which
/// must have fired).
fn rewritten_from(p: &Policy, m: &Message) -> Vec<u8> {
    let d = passes(p, m, "intl");
    assert!(d.rewrite_from, "{d:?}");
    assert_eq!(d.rule, Some(RuleId::GenericNumber));
    forwarded(p, m, &d)
        .value(HeaderName::From)
        .unwrap()
        .to_vec()
}

fn src(trunk: &str) -> SocketAddr {
    let ip = match trunk {
        "intl" => "10.0.0.1",
        "ic" => "10.0.0.2",
        "ent" => "10.0.0.3",
        "intl-bare" => "10.0.0.4",
        "intl-cap" => "10.0.0.5",
        _ => "192.0.2.77",
    };
    format!("{ip}:5060").parse().unwrap()
}

fn judge_at(
    p: &Policy,
    m: &Message,
    trunk: &str,
    now_ms: u64,
    rates: &dyn RateCounter,
) -> Decision {
    decide(
        p,
        m,
        &Context {
            source: src(trunk),
            local: None,
            trunk: None,
            now_ms,
            wall_ms: now_ms,
            rates,
            behaviour: &sipfence::behaviour::NoTracking,
        },
    )
}

fn judge(p: &Policy, m: &Message, trunk: &str) -> Decision {
    judge_at(p, m, trunk, MON_10H, &NoCounting)
}

/// Judges a call on trunk `ent`, `t` ms after [`MON_10H`], against `rates`: refused how,
/// if at all.
fn on_ent<'a>(
    p: &'a Policy,
    rates: &'a dyn RateCounter,
) -> impl Fn(&Message, u64) -> Option<(u16, &'static str)> + 'a {
    move |m, t| rejected(&judge_at(p, m, "ent", MON_10H + t, rates))
}

fn rejected(d: &Decision) -> Option<(u16, &'static str)> {
    match d.outcome {
        Outcome::Reject { code } => Some((code, d.rule.map(|r| r.as_str()).unwrap_or("?"))),
        // No answer: code 0.
        Outcome::Drop => Some((0, d.rule.map(|r| r.as_str()).unwrap_or("?"))),
        Outcome::Forward => None,
    }
}

#[track_caller]
fn blocks(p: &Policy, m: &Message, trunk: &str, code: u16, rule: &str) {
    let d = judge(p, m, trunk);
    assert_eq!(rejected(&d), Some((code, rule)), "decision: {d:?}");
}

#[track_caller]
fn passes(p: &Policy, m: &Message, trunk: &str) -> Decision {
    let d = judge(p, m, trunk);
    assert_eq!(rejected(&d), None, "decision: {d:?}");
    d
}

fn forwarded(p: &Policy, m: &Message, d: &Decision) -> Message {
    let mut e = EditList::new();
    verdict::add_edits(p, m, d, None, &mut e);
    let mut out = vec![];
    e.apply(m.buf(), m.len(), &mut out);
    Message::parse(Bytes::from(out)).expect("rewritten message re-parses")
}

#[test]
fn unknown_source() {
    let p = policy("");
    blocks(
        &p,
        &invite("+442071234567", ""),
        "nowhere",
        403,
        "unknown-source",
    );
    passes(&p, &invite("+442071234567", ""), "intl");
    // Refused before any caller rule, the call still names its caller for the record,
    // so that tracing the number finds it (QA 43).
    let d = judge(&p, &invite("+442071234567", ""), "nowhere");
    assert_eq!(
        d.caller.map(|n| n.to_string()).as_deref(),
        Some("+442071234567"),
        "{d:?}"
    );
    assert!(d.class.is_some(), "{d:?}");
    // Also OPTIONS from nowhere; but in-dialog ACKs are not answered.
    let opt = Message::parse(Bytes::from_static(b"OPTIONS sip:x@10.0.0.100 SIP/2.0\r\nVia: SIP/2.0/UDP 1.2.3.4;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:x@y>\r\nCall-ID: o1\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n")).unwrap();
    assert_eq!(
        rejected(&judge(&p, &opt, "nowhere")),
        Some((403, "unknown-source"))
    );
    assert_eq!(judge(&p, &opt, "intl").kind, Kind::OtherRequest);
}

#[test]
fn withheld_caller() {
    let p = policy("");
    blocks(
        &p,
        &invite("+442071234567", "Privacy: id\r\n"),
        "intl",
        433,
        "withheld-caller",
    );
    passes(
        &p,
        &invite(
            "anonymous",
            "Privacy: id\r\nP-Asserted-Identity: <tel:+442071234567>\r\n",
        ),
        "intl",
    );
}

/// A private call's asserted identity written with an empty list element goes on
/// without it, so that a core reading RFC 3325's grammar reads the identity the rules
/// let the call through on (QA 105: Kamailio read none, and had an anonymous call).
#[test]
fn an_asserted_identity_goes_on_without_empty_list_elements() {
    let p = policy("");
    for pai in [
        ", <tel:+442071234567>",
        "<tel:+442071234567>,",
        "<tel:+442071234567>,,",
        // Folds at either end go with the element (QA 110: a line of blanks was left).
        "<tel:+442071234567>,\r\n ",
        "<tel:+442071234567>\r\n\t,\r\n ,\r\n ",
        "\r\n ,<tel:+442071234567>",
        "\r\n ,\r\n <tel:+442071234567>",
    ] {
        let m = invite(
            "anonymous",
            &format!("Privacy: id\r\nP-Asserted-Identity: {pai}\r\n"),
        );
        let d = passes(&p, &m, "intl");
        let out = forwarded(&p, &m, &d);
        assert_eq!(
            out.value(HeaderName::PAssertedIdentity),
            Some(&b"<tel:+442071234567>"[..]),
            "{pai:?}"
        );
        let text = String::from_utf8_lossy(out.buf());
        assert!(
            text.contains("\r\nP-Asserted-Identity: <tel:+442071234567>\r\n"),
            "{pai:?}: {text}"
        );
    }
    // With no value at all, no identity is asserted: the withheld caller is refused.
    blocks(
        &p,
        &invite("anonymous", "Privacy: id\r\nP-Asserted-Identity: ,\r\n"),
        "intl",
        433,
        "withheld-caller",
    );
}

/// Remote-Party-ID and P-Preferred-Identity go on without empty list elements too, and
/// a called-party Remote-Party-ID value beside the screened caller in one field goes
/// alone: the core reads the caller the rules judged (QA 107: Kamailio read none, or
/// equipment reading the first value read the called 110).
#[test]
fn identity_fields_go_on_as_judged() {
    let p = policy("");
    let rpid = |m: &Message, trunk: &str| {
        let d = passes(&p, m, trunk);
        let out = forwarded(&p, m, &d);
        out.all(HeaderName::RemotePartyId)
            .map(|h| String::from_utf8_lossy(out.slice(h.value())).into_owned())
            .collect::<Vec<_>>()
    };
    let calling = "<sip:+8613912340001@x>;party=calling;screen=yes";
    for (field, want) in [
        (
            format!("<sip:110@pbx>;party=called, {calling}"),
            calling.to_string(),
        ),
        (
            format!("{calling}, <sip:110@pbx>;party=called"),
            calling.to_string(),
        ),
        (
            format!("\"95588\" <sip:95588@pbx>;party=called,, {calling},"),
            calling.to_string(),
        ),
        (
            format!("{calling}, <sip:110@pbx>;party=called, <sip:95588@pbx>;party=called"),
            calling.to_string(),
        ),
        (format!("{calling},"), calling.to_string()),
    ] {
        let m = invite("anonymous", &format!("Remote-Party-ID: {field}\r\n"));
        assert_eq!(rpid(&m, "ent"), [want], "{field}");
    }
    // A withheld caller from abroad asserted by a screened Remote-Party-ID.
    let m = invite(
        "anonymous",
        "Remote-Party-ID: <sip:+442071234567@gw;user=phone>;party=calling;screen=yes;privacy=full,\r\n",
    );
    assert_eq!(
        rpid(&m, "intl"),
        ["<sip:+442071234567@gw;user=phone>;party=calling;screen=yes;privacy=full"]
    );
    // A preferred identity the enterprise trunk judged, as judged.
    let m = invite(
        "+8613912340001",
        "P-Preferred-Identity: , <sip:+8613912340001@x>\r\n",
    );
    let d = passes(&p, &m, "ent");
    let out = forwarded(&p, &m, &d);
    assert_eq!(
        out.value(HeaderName::PPreferredIdentity),
        Some(&b"<sip:+8613912340001@x>"[..])
    );
}

/// An enterprise trunk's calls show the number this network assigned: one withheld
/// with its contracted number asserted is refused too (QA 104: a 400 line hiding its
/// number), unless the trunk says `refuse_withheld = false`; elsewhere it is RFC 3325's
/// private call, and the same call not withheld goes through.
#[test]
fn withheld_caller_on_an_enterprise_trunk() {
    let p = policy("");
    let pai = "P-Asserted-Identity: <sip:+8613912340001@10.9.9.9>\r\n";
    let privacy = [
        format!("Privacy: id\r\n{pai}"),
        format!("Privacy: user;id\r\n{pai}"),
        "Remote-Party-ID: <sip:+8613912340001@10.9.9.9>;party=calling;screen=yes;privacy=full\r\n"
            .to_string(),
    ];
    for extra in &privacy {
        blocks(
            &p,
            &invite("anonymous", extra),
            "ent",
            433,
            "withheld-caller",
        );
        passes(&p, &invite("anonymous", extra), "ic");
    }
    passes(&p, &invite("anonymous", pai), "ent");
    passes(&p, &invite("+8613912340001", "Privacy: none\r\n"), "ent");
    let opted_out = Policy::from_str(
        &POLICY.replace(
            "name = \"ent\"\n",
            "name = \"ent\"\nrefuse_withheld = false\n",
        ),
        "test.toml",
        Path::new("."),
    )
    .unwrap();
    for extra in &privacy {
        passes(&opted_out, &invite("anonymous", extra), "ent");
    }
    // Without an asserted number it is refused on every trunk, opted out or not.
    blocks(
        &opted_out,
        &invite("+8613912340001", "Privacy: id\r\n"),
        "ent",
        433,
        "withheld-caller",
    );
    // And an international trunk may ask for it too.
    let intl = Policy::from_str(
        &POLICY.replace(
            "name = \"intl\"\n",
            "name = \"intl\"\nrefuse_withheld = true\n",
        ),
        "test.toml",
        Path::new("."),
    )
    .unwrap();
    blocks(
        &intl,
        &invite(
            "anonymous",
            "Privacy: id\r\nP-Asserted-Identity: <tel:+442071234567>\r\n",
        ),
        "intl",
        433,
        "withheld-caller",
    );
}

/// The usual withheld call without an asserted identity (RFC 3323's anonymous From,
/// `Privacy: id`) is the withheld-caller rule's: at `monitor` it goes on, counted, as
/// an operator waiting for a peer's fix wants (QA 88: blank-caller refused it anyway);
/// with withheld-caller off, blank-caller still refuses its blank From.
#[test]
fn a_monitored_withheld_caller_is_not_refused_as_blank() {
    let withheld = with_from(
        "\"Anonymous\" <sip:anonymous@anonymous.invalid>",
        "Privacy: id\r\n",
    );
    blocks(&policy(""), &withheld, "intl", 433, "withheld-caller");
    let monitored = policy("[rules.withheld-caller]\naction = \"monitor\"");
    let d = passes(&monitored, &withheld, "intl");
    assert!(d.hits.contains(RuleId::WithheldCaller), "{d:?}");
    assert!(!d.hits.contains(RuleId::BlankCaller), "{d:?}");
    // A blank From with no privacy asked is blank-caller's as ever.
    blocks(
        &monitored,
        &with_from("<sip:anonymous@anonymous.invalid>", ""),
        "intl",
        433,
        "blank-caller",
    );
    let off = policy("[rules.withheld-caller]\naction = \"off\"");
    blocks(&off, &withheld, "intl", 433, "blank-caller");
    // What such a call presents is still the generic-number rule's: a service number
    // in its display name, a P-Preferred-Identity, go before the core sees them (QA 90
    // N1: with no number to judge, no rule after rule 4 ran, and both reached it).
    for (from, extra, gone) in [
        (
            "\"95588\" <sip:anonymous@anonymous.invalid>",
            "Privacy: id\r\n",
            "95588",
        ),
        (
            "\"Anonymous\" <sip:anonymous@anonymous.invalid>",
            "Privacy: id\r\nP-Preferred-Identity: <sip:110@10.9.9.9>\r\n",
            "sip:110@",
        ),
    ] {
        let m = with_from(from, extra);
        let d = passes(&monitored, &m, "intl");
        assert!(d.hits.contains(RuleId::GenericNumber), "{d:?}");
        let out = forwarded(&monitored, &m, &d);
        let text = String::from_utf8_lossy(&out.buf()[..out.len()]).into_owned();
        assert!(!text.contains(gone), "{text}");
        assert!(
            text.contains("\r\nFrom: \"Anonymous\" <sip:anonymous@anonymous.invalid>;tag="),
            "{text}"
        );
    }
}

#[test]
fn blank_caller() {
    let p = policy("");
    blocks(&p, &invite("", ""), "intl", 433, "blank-caller");
    blocks(&p, &invite("anonymous", ""), "intl", 433, "blank-caller");
    blocks(&p, &invite("unknown", ""), "ent", 433, "blank-caller");
    blocks(
        &p,
        &invite("13812345678", "P-Asserted-Identity: <sip:anonymous@x>\r\n"),
        "ent",
        433,
        "blank-caller",
    );
    blocks(&p, &invite("trunk-gw", ""), "ic", 433, "blank-caller");
    passes(
        &p,
        &invite("trunk-gw", "P-Asserted-Identity: <sip:13912340001@x>\r\n"),
        "ent",
    );
}

#[test]
fn numbering_plan() {
    let p = policy("");
    blocks(
        &p,
        &invite("+8615412345678", ""),
        "ic",
        403,
        "numbering-plan",
    );
    blocks(&p, &invite("02612345678", ""), "ic", 403, "numbering-plan");
    blocks(&p, &invite("1381234567", ""), "ic", 403, "numbering-plan");
    blocks(&p, &invite("+12345", ""), "intl", 403, "numbering-plan");
    passes(&p, &invite("+8613812345678", ""), "ic");
    passes(&p, &invite("075512345678", ""), "ic");
    // Foreign callers: a country code no one has been given breaks the plan too (the
    // asserted identity is what is judged when there is one); codes in service pass,
    // satellite and international networks among them.
    // So does a number its own country's plan has no room for: NANP is ten digits with
    // an area code [2-9][0-8]x, +7 ten digits (the built-in plan's `foreign` lines).
    for spare in [
        "+999123456789",
        "+2801234567",
        "+85112345678",
        "+0123456789",
        "+1415555012",
        "+10155550123",
        "+7916123456",
    ] {
        blocks(&p, &invite(spare, ""), "intl", 403, "numbering-plan");
        let pai = format!("P-Asserted-Identity: <sip:{spare}@10.0.0.9>\r\n");
        blocks(
            &p,
            &invite("+442071234567", &pai),
            "intl",
            403,
            "numbering-plan",
        );
    }
    for real in [
        "+85221234567",
        "+88216123456",
        "+8501912345678",
        "+97142345678",
        "+14155550123",
        "+79161234567",
    ] {
        passes(&p, &invite(real, ""), "intl");
    }
}

#[test]
fn no_voice_number() {
    let p = policy("");
    blocks(
        &p,
        &invite("+8614512345678", ""),
        "ic",
        403,
        "no-voice-number",
    );
    blocks(
        &p,
        &invite("1440123456789", ""),
        "ic",
        403,
        "no-voice-number",
    );
    // An SMS service port sends messages and places no calls (QA 92: a bank's
    // notification port let through as a caller).
    blocks(&p, &invite("106586111", ""), "ic", 403, "no-voice-number");
    passes(&p, &invite("+8614712345678", ""), "ic");
    // A Beijing number of the 6 range is no port.
    passes(&p, &invite("+861065123456", ""), "ic");
}

/// `drop` ends the evaluation like `reject` but writes no answer; the next rules do not
/// run, and a caller the rule does not match is judged as ever.
#[test]
fn drop_refuses_without_an_answer() {
    let p = policy("[rules.blacklist]\naction = \"drop\"");
    let m = invite("+8613800000001", "");
    let d = judge(&p, &m, "intl");
    assert_eq!(d.outcome, Outcome::Drop);
    assert_eq!(d.rule, Some(RuleId::Blacklist));
    assert!(d.is_reject());
    assert_eq!(d.verdict_str(), "drop");
    let mut out = vec![];
    assert!(!verdict::write_reject(&p, &m, &d, None, &mut out));
    assert!(out.is_empty());
    // Not blacklisted: the next rule answers as configured.
    blocks(
        &p,
        &invite("+8613812345678", ""),
        "intl",
        403,
        "intl-domestic-caller",
    );
    passes(&p, &invite("+442071234567", ""), "intl");
}

/// `sipfence explain --output` says what leaves: nothing for a drop, the rewritten
/// request otherwise; and it names a second asserted identity that matched.
#[test]
fn explain_output_of_a_drop_and_a_second_asserted_identity() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("p.toml");
    std::fs::write(
        &cfg,
        "[lists.blacklist]\nentries = [\"+8613800000001\"]\n[rules.blacklist]\naction = \"drop\"\n[[trunk]]\nname = \"intl\"\nrole = \"international\"\nsources = [\"127.0.0.0/8\"]\nnext_hop = \"udp:127.0.0.1:5080\"\n",
    )
    .unwrap();
    let run = |m: &Message, json: bool| {
        let f = dir.path().join("m.sip");
        std::fs::write(&f, &m.buf()[..m.len()]).unwrap();
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_sipfence"));
        c.args(["explain", "--trunk", "intl", "--output", "--config"])
            .arg(&cfg);
        if json {
            c.arg("--json");
        }
        let o = c.arg(&f).output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let m = with_from("<sip:+8613800000001@10.9.9.9>", "");
    let text = run(&m, false);
    assert!(text.contains("verdict  drop"), "{text}");
    assert!(text.contains("output:  none (dropped"), "{text}");
    assert!(!text.contains("INVITE sip:"), "{text}");
    let v: serde_json::Value = serde_json::from_str(run(&m, true).trim()).unwrap();
    assert_eq!(v["verdict"], "drop");
    assert!(v["output"].is_null() && v["code"].is_null(), "{v}");
    let m = with_from(
        "<sip:+442071234567@10.9.9.9>",
        "P-Asserted-Identity: <sip:+442071234567@x>, <tel:+8613812345678>\r\n",
    );
    let text = run(&m, false);
    assert!(
        text.contains("asserted +8613812345678 as well (a second P-Asserted-Identity)  matched on it: intl-domestic-caller"),
        "{text}"
    );
    assert!(text.contains("SIP/2.0 403"), "{text}");
    let v: serde_json::Value = serde_json::from_str(run(&m, true).trim()).unwrap();
    assert_eq!(v["asserted2"], "+8613812345678");
    assert_eq!(v["asserted2_rules"][0], "intl-domestic-caller");
    assert!(v.get("diverted").is_none(), "{v}");
    // A forwarded call says who forwarded it, its caller judged as ever (QA 111): the
    // latest Diversion; else the first History-Info entry.
    for (extra, by) in [
        (
            "Diversion: <sip:+8613912340001@pbx>;reason=unconditional;counter=1, <sip:+8613912340002@pbx>;reason=busy\r\nHistory-Info: <sip:+861012345678@x>;index=1\r\n",
            "+8613912340001",
        ),
        (
            "History-Info: \"Desk\" <sip:4008001234@pbx?Reason=SIP%3Bcause%3D302>;index=1, <sip:+8613912340001@x;cause=302>;index=1.1\r\n",
            "+864008001234",
        ),
        ("Diversion: <sip:desk@pbx.example>\r\n", "desk"),
        // An extension is no number of the plan: as written (QA 114: `+868005`).
        (
            "Diversion: <sip:8005@pbx.acme>;reason=unconditional\r\n",
            "8005",
        ),
    ] {
        let m = with_from(
            "<sip:+8613812345678@10.9.9.9>",
            &format!("P-Asserted-Identity: <sip:+8613812345678@x>\r\n{extra}"),
        );
        let v: serde_json::Value = serde_json::from_str(run(&m, true).trim()).unwrap();
        assert_eq!(v["diverted"], by, "{extra}");
        assert_eq!(v["rule"], "intl-domestic-caller", "{v}");
        let text = run(&m, false);
        assert!(text.contains(&format!("diverted by {by} ")), "{text}");
    }
    // The number read out of a display name is shown, so that a rewrite or refusal on
    // it can be understood; a name that shows none shows nothing.
    let m = with_from(
        "\"Bank of China 95 588\" <sip:+442071234567@10.9.9.9>",
        "P-Asserted-Identity: <sip:+442071234567@x>\r\n",
    );
    let text = run(&m, false);
    assert!(
        text.contains("presented +8695588 (beside the caller"),
        "{text}"
    );
    let v: serde_json::Value = serde_json::from_str(run(&m, true).trim()).unwrap();
    assert_eq!(v["presented"], "+8695588");
    assert_eq!(v["rule"], "generic-number");
    let m = with_from(
        "\"Invoice 2024-01-10\" <sip:+442071234567@10.9.9.9>",
        "P-Asserted-Identity: <sip:+442071234567@x>\r\n",
    );
    let v: serde_json::Value = serde_json::from_str(run(&m, true).trim()).unwrap();
    assert!(v["presented"].is_null(), "{v}");
}

#[test]
fn blacklist_exact_segment_and_over_whitelist() {
    let p = policy("");
    blocks(&p, &invite("13800000001", ""), "ic", 608, "blacklist");
    blocks(&p, &invite("+8617099999123", ""), "ic", 608, "blacklist");
    // Whitelisted on the enterprise trunk, but the blacklist wins.
    blocks(&p, &invite("13912340007", ""), "ent", 608, "blacklist");
    passes(&p, &invite("13912340008", ""), "ent");
    passes(&p, &invite("+8617099989123", ""), "ic");
}

/// The exempt list overrides the blacklist (an entry of the national list disputed
/// locally) and nothing else: the plan, identity, service-number and contract rules
/// stand for an exempt number too. The record names what the exemption let through.
#[test]
fn exempt_numbers_pass_the_blacklist_only() {
    let p = policy(
        "[lists.exempt]\nentries = [\"+8613800000001\", \"+861701234567\", \"+8613812345678\", \"+8613900000001\", \"110\"]",
    );
    let d = passes(&p, &invite("13800000001", ""), "ic");
    assert!(d.exempted.contains(RuleId::Blacklist), "{d:?}");
    assert!(!d.hits.contains(RuleId::Blacklist), "{d:?}");
    assert!(d.blacklist_match.is_none());
    let rec = sipfence::record::Record::new(&p, &invite("13800000001", ""), &d, src("ic"), MON_10H);
    assert_eq!(rec.exempted, vec!["blacklist"]);
    // Without the exemption, as before; another listed number is still refused.
    blocks(
        &policy(""),
        &invite("13800000001", ""),
        "ic",
        608,
        "blacklist",
    );
    blocks(&p, &invite("+8617099999123", ""), "ic", 608, "blacklist");
    // Nothing else is relaxed.
    blocks(
        &p,
        &invite("+861701234567", ""),
        "ic",
        403,
        "numbering-plan",
    );
    blocks(
        &p,
        &invite("13800000001", ""),
        "intl",
        403,
        "intl-domestic-caller",
    );
    blocks(&p, &invite("110", ""), "intl", 403, "intl-forged-service");
    blocks(
        &p,
        &invite("13900000001", ""),
        "ent",
        403,
        "enterprise-not-whitelisted",
    );
    // An exemption that overrides nothing says nothing.
    let d = passes(&p, &invite("13812345678", ""), "ic");
    assert!(d.exempted.is_empty(), "{d:?}");
    // Nor one of a presented number beside a listed caller that is refused (QA 70).
    let both = invite(
        "13800000001",
        "P-Asserted-Identity: <tel:+8613912340007>\r\n",
    );
    blocks(&p, &both, "ent", 608, "blacklist");
    assert!(judge(&p, &both, "ent").exempted.is_empty());
    // `explain` says what the exemption let through.
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("p.toml");
    std::fs::write(
        &cfg,
        format!("{POLICY}\n[lists.exempt]\nentries = [\"+8613800000001\"]\n"),
    )
    .unwrap();
    let m = invite("13800000001", "");
    let f = dir.path().join("m.sip");
    std::fs::write(&f, &m.buf()[..m.len()]).unwrap();
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_sipfence"))
        .args(["explain", "--trunk", "ic", "--config"])
        .arg(&cfg)
        .arg(&f)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("verdict  allow"), "{text}");
    assert!(
        text.contains(
            "exempted blacklist (matched, not applied: a number of the call is on the exempt list)"
        ),
        "{text}"
    );
    // Published through Redis like the other lists (`sipfence lists publish exempt=F`).
    let published = p
        .with_lists(
            "redis:lists/v2",
            &[("exempt".into(), "+8617099999123\n".into())],
        )
        .unwrap();
    assert!(
        published
            .exempt
            .contains(&sipfence::numbering::normalise(b"+8617099999123", b"86", None).unwrap())
    );
    passes(&published, &invite("+8617099999123", ""), "ic");
    blocks(
        &published,
        &invite("13800000001", ""),
        "ic",
        608,
        "blacklist",
    );
    assert!(sipfence::cluster::lists::valid_name("exempt"));
    // The blacklist switched off on a trunk: nothing to exempt either.
    let off = policy(
        "[lists.exempt]\nentries = [\"+8613800000001\"]\n[rules.blacklist]\naction = \"off\"",
    );
    assert!(
        passes(&off, &invite("13800000001", ""), "ic")
            .exempted
            .is_empty()
    );
}

#[test]
fn intl_forged_service() {
    let p = policy("");
    blocks(&p, &invite("110", ""), "intl", 403, "intl-forged-service");
    blocks(
        &p,
        &invite("+8610086", ""),
        "intl",
        403,
        "intl-forged-service",
    );
    blocks(
        &p,
        &invite("+8612345", ""),
        "intl",
        403,
        "intl-forged-service",
    );
    blocks(
        &p,
        &invite("01066666110", ""),
        "intl",
        403,
        "intl-forged-service",
    );
    passes(&p, &invite("+442071234567", ""), "intl");
    // Domestic trunks may carry service numbers.
    passes(&p, &invite("95588", ""), "ic");
}

/// A REFER names one target and at most one referrer (RFC 3515 2.4.1, RFC 3892), and
/// neither hides an identity in a URI header (the call it makes is built from them,
/// RFC 3261 19.1.5): 400. Its Referred-By is shown to the party transferred, and is
/// judged as a number the sender presents: contracted on an enterprise trunk, taken
/// off at the gateways when it names another number than the sender's (QA 182 F2:
/// `95588` and `110` went on from a whitelisted sender).
#[test]
fn a_refers_target_and_referrer_are_judged() {
    let p = policy("");
    let refer = |from: &str, fields: &str| {
        Message::parse(Bytes::from(format!(
            "REFER sip:4008001234@10.0.0.100 SIP/2.0\r\nVia: SIP/2.0/UDP 10.9.9.9:5060;branch=z9hG4bK-rf\r\nFrom: <sip:{from}@10.9.9.9>;tag=ft1\r\nTo: <sip:4008001234@10.0.0.100>\r\nCall-ID: refer-1\r\nCSeq: 1 REFER\r\nMax-Forwards: 70\r\nContact: <sip:x@10.9.9.9>\r\n{fields}Content-Length: 0\r\n\r\n"
        )))
        .unwrap()
    };
    let with_checks = |m: &Message, trunk: &str| {
        sipfence::decide::judge(
            &p,
            m,
            &Context {
                source: src(trunk),
                local: None,
                trunk: None,
                now_ms: MON_10H,
                wall_ms: MON_10H,
                rates: &NoCounting,
                behaviour: &sipfence::behaviour::NoTracking,
            },
        )
    };
    let target = "Refer-To: <sip:13700001111@10.0.0.100>\r\n";
    for (fields, why) in [
        ("", "Missing Refer-To"),
        (
            "Refer-To: <sip:1@x>\r\nr: <sip:2@x>\r\n",
            "Multiple Refer-To",
        ),
        ("Refer-To: <sip:1@x>, <sip:2@x>\r\n", "Multiple Refer-To"),
        (
            "Refer-To: <sip:13700001111@x?P-Asserted-Identity=%3Csip%3A%2B8613912345678%40x%3E&From=%3Csip%3A95588%40x%3E>\r\n",
            "Bad Refer-To",
        ),
        ("Refer-To: <sip:1@95588@x>\r\n", "Bad Refer-To"),
        ("Refer-To: <sip:1@x\r\n", "Bad Refer-To"),
        (
            "Refer-To: <sip:1@x>\r\nReferred-By: <sip:+442071234567@x?From=sip:110@x>\r\n",
            "Bad Referred-By",
        ),
        (
            "Refer-To: <sip:1@x>\r\nReferred-By: <sip:1@x>\r\nb: <sip:2@x>\r\n",
            "Multiple Referred-By",
        ),
    ] {
        let d = with_checks(&refer("+442071234567", fields), "intl");
        assert_eq!(
            (rejected(&d).map(|r| r.0), d.refusal.map(|r| r.why)),
            (Some(400), Some(why)),
            "{fields:?}"
        );
    }
    // An attended transfer's Replaces header is no identity.
    let d = with_checks(
        &refer(
            "+442071234567",
            "Refer-To: <sip:13700001111@10.0.0.100?Replaces=abc%40h%3Bto-tag%3D1%3Bfrom-tag%3D2>\r\n",
        ),
        "intl",
    );
    assert_eq!(rejected(&d), None, "{d:?}");
    // The referrer at the international gateway: its own number passes as it is;
    // another, or a service number, goes (the REFER labelled as the rule says).
    let d = with_checks(
        &refer(
            "+442071234567",
            &format!("{target}Referred-By: <sip:+442071234567@x>\r\n"),
        ),
        "intl",
    );
    assert!(rejected(&d).is_none() && !d.referrer_removed, "{d:?}");
    for referrer in [
        "<sip:110@x>",
        "\"95588\" <sip:+442071234567@x>",
        "<sip:+8613812345678@x>",
        "b: <sip:110@x>",
    ] {
        let field = if referrer.starts_with("b:") {
            format!("{referrer}\r\n")
        } else {
            format!("Referred-By: {referrer}\r\n")
        };
        let m = refer("+442071234567", &format!("{target}{field}"));
        let d = with_checks(&m, "intl");
        assert!(
            rejected(&d).is_none() && d.referrer_removed,
            "{referrer}: {d:?}"
        );
        assert_eq!(d.verdict_str(), "rewrite");
        let out = forwarded(&p, &m, &d);
        let text = String::from_utf8_lossy(out.buf()).into_owned();
        assert!(
            !text.contains("Referred-By") && !text.contains("\r\nb:") && text.contains("Refer-To"),
            "{text}"
        );
    }
    // On an enterprise trunk the referrer must be contracted too.
    for (referrer, want) in [
        ("<sip:+8613912340001@x>", None),
        ("<sip:+8613912340002@x>", None),
        ("<sip:95588@x>", Some((403, "enterprise-not-whitelisted"))),
        (
            "<sip:+8613812345679@x>",
            Some((403, "enterprise-not-whitelisted")),
        ),
    ] {
        let d = with_checks(
            &refer(
                "+8613912340001",
                &format!("{target}Referred-By: {referrer}\r\n"),
            ),
            "ent",
        );
        assert_eq!(rejected(&d), want, "{referrer}: {d:?}");
    }
}

/// An out-of-dialog MESSAGE or REFER shows its sender as a call shows its caller: the
/// caller rules judge it (QA 173 F2: an SMS "from 95588" went on from abroad), and it
/// counts toward no rate limit. Other out-of-dialog requests get the source check only.
#[test]
fn messages_and_refers_are_judged_by_their_sender() {
    let p = policy("");
    let request = |method: &str, from: &str, extra: &str| {
        let text = String::from_utf8(invite(from, extra).bytes().to_vec())
            .unwrap()
            .replace("INVITE", method);
        Message::parse(Bytes::from(text)).unwrap()
    };
    for method in ["MESSAGE", "REFER"] {
        let refused = |from: &str, extra: &str, code: u16, rule: &str| {
            let d = judge(&p, &request(method, from, extra), "intl");
            assert_eq!(d.kind, Kind::OtherRequest);
            assert_eq!(rejected(&d), Some((code, rule)), "{method} {from}: {d:?}");
        };
        refused("95588", "", 403, "intl-forged-service");
        refused("+8613812345678", "", 403, "intl-domestic-caller");
        refused(
            "+442071234567",
            "P-Asserted-Identity: <sip:110@10.9.9.9;user=phone>\r\n",
            403,
            "intl-forged-service",
        );
        refused("anonymous", "", 433, "blank-caller");
        refused("+8613800000001", "", 608, "blacklist");
        let d = passes(&p, &request(method, "+442071234567", ""), "intl");
        assert_eq!(d.kind, Kind::OtherRequest);
        // Domestic trunks may carry service numbers, as in a call.
        passes(&p, &request(method, "95588", ""), "ic");
        // The generic number is deleted as in a call.
        let m = request(
            method,
            "+8613812345678",
            "P-Asserted-Identity: <sip:+442071234567@10.9.9.9;user=phone>\r\n",
        );
        let d = passes(&p, &m, "intl");
        assert!(d.rewrite_from, "{d:?}");
        let out = forwarded(&p, &m, &d);
        let from = String::from_utf8_lossy(out.value(HeaderName::From).unwrap()).to_string();
        assert!(!from.contains("13812345678"), "{from}");
        // Its answer goes back with the From the sender wrote (QA 176 N4).
        let rates = LocalRateCounter::new(1000);
        judge_at(&p, &m, "intl", MON_10H, &rates);
        let answer = Message::parse_for_relay(Bytes::from(format!(
            "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 10.9.9.9:5060;branch=z9hG4bK-x\r\nFrom: {from}\r\nTo: <sip:4008001234@10.0.0.100>;tag=u\r\nCall-ID: call-+8613812345678\r\nCSeq: 1 {method}\r\nContent-Length: 0\r\n\r\n"
        )))
        .unwrap();
        let back = sipfence::decide::callers_from(&answer, &rates, MON_10H + 100).unwrap();
        assert!(
            String::from_utf8_lossy(&back).contains("sip:+8613812345678@10.9.9.9"),
            "{}",
            String::from_utf8_lossy(&back)
        );
        // An enterprise's messages count toward no call limit: the whitelisted caller
        // passes however many it sends.
        let rates = LocalRateCounter::new(1000);
        for i in 0..10 {
            let d = judge_at(
                &p,
                &request(method, "+8613912340001", ""),
                "ent",
                MON_10H + i,
                &rates,
            );
            assert_eq!(rejected(&d), None, "{method} {i}: {d:?}");
        }
        let d = judge(&p, &request(method, "+8613812340001", ""), "ent");
        assert_eq!(
            rejected(&d),
            Some((403, "enterprise-not-whitelisted")),
            "{d:?}"
        );
    }
    // A To-tag of a dialog never carried here makes no MESSAGE or REFER in-dialog
    // (QA 176 N2); one of a dialog seen answered is in-dialog, its caller judged once.
    for method in ["MESSAGE", "REFER"] {
        let with_tag = |tag: &str| {
            let text = String::from_utf8(request(method, "95588", "").bytes().to_vec())
                .unwrap()
                .replace(
                    "To: <sip:4008001234@10.0.0.100>",
                    &format!("To: <sip:4008001234@10.0.0.100>;tag={tag}"),
                );
            Message::parse(Bytes::from(text)).unwrap()
        };
        let d = judge(&p, &with_tag("nodlg"), "intl");
        assert_eq!(
            (d.kind, rejected(&d)),
            (Kind::OtherRequest, Some((403, "intl-forged-service"))),
            "{method}"
        );
        let rates = LocalRateCounter::new(1000);
        let ok = Message::parse_for_relay(Bytes::from(
            "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 10.9.9.9:5060;branch=z9hG4bK-x\r\nFrom: <sip:95588@10.9.9.9>;tag=ft1\r\nTo: <sip:4008001234@10.0.0.100>;tag=uas1\r\nCall-ID: call-95588\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n",
        ))
        .unwrap();
        sipfence::decide::track_dialog(&ok, || true, &rates, MON_10H);
        let d = judge_at(&p, &with_tag("uas1"), "intl", MON_10H + 1, &rates);
        assert_eq!((d.kind, rejected(&d)), (Kind::InDialog, None), "{method}");
    }
    // `trust_in_dialog_invites` speaks of INVITEs: a MESSAGE with an invented To-tag is
    // judged on such a trunk too (QA 178 B2).
    let trusting = policy(
        "[[trunk]]\nname = \"intl-trust\"\nrole = \"international\"\nsources = [\"192.0.2.77\"]\ntrust_in_dialog_invites = true\n",
    );
    let invented = Message::parse(Bytes::from(
        String::from_utf8(request("MESSAGE", "95588", "").bytes().to_vec())
            .unwrap()
            .replace(
                "To: <sip:4008001234@10.0.0.100>",
                "To: <sip:4008001234@10.0.0.100>;tag=nodlg",
            ),
    ))
    .unwrap();
    let d = judge(&trusting, &invented, "intl-trust");
    assert_eq!(rejected(&d), Some((403, "intl-forged-service")), "{d:?}");
    // Source check only for the others: a SUBSCRIBE from "95588" goes on.
    for method in ["SUBSCRIBE", "OPTIONS", "PUBLISH"] {
        let d = judge(&p, &request(method, "95588", ""), "intl");
        assert_eq!(
            (d.kind, rejected(&d)),
            (Kind::OtherRequest, None),
            "{method}"
        );
    }
}

#[test]
fn intl_domestic_caller() {
    let p = policy("");
    blocks(
        &p,
        &invite("+8613812345678", ""),
        "intl",
        403,
        "intl-domestic-caller",
    );
    blocks(
        &p,
        &invite(
            "+442071234567",
            "P-Asserted-Identity: <sip:+8613812345678@x>\r\n",
        ),
        "intl",
        403,
        "intl-domestic-caller",
    );
    passes(&p, &invite("+8613900000000", ""), "intl"); // an own roamer
    passes(&p, &invite("+12125550123", ""), "intl");
}

/// In the home country's phone-context a number reads as the home plan reads it (QA
/// 88: `00…` and IP-dial forms were put behind +86 and refused as no number at all):
/// a foreign caller a domestic carrier relays passes, a domestic one written so is
/// still the +86 caller an international trunk refuses.
#[test]
fn the_home_context_reads_as_the_home_plan() {
    let p = policy("");
    for from in [
        "<tel:00442071234567;phone-context=+86>",
        "<sip:00442071234567;phone-context=+86@ims.example;user=phone>",
        "<tel:17951-00442071234567;phone-context=%2B86>",
    ] {
        let d = passes(&p, &with_from(from, ""), "ic");
        assert_eq!(
            d.caller.map(|n| n.to_string()).as_deref(),
            Some("+442071234567"),
            "{from}"
        );
    }
    let d = passes(
        &p,
        &with_from("<tel:1795113812345678;phone-context=+86>", ""),
        "ic",
    );
    assert_eq!(
        d.caller.map(|n| n.to_string()).as_deref(),
        Some("+8613812345678")
    );
    for from in [
        "<tel:0086-138-1234-5678;phone-context=+86>",
        "<tel:1795113812345678;phone-context=+86>",
    ] {
        blocks(
            &p,
            &with_from(from, ""),
            "intl",
            403,
            "intl-domestic-caller",
        );
    }
}

#[test]
fn enterprise_foreign_network() {
    let p = policy("[lists.own_segments]\nentries = [\"+86139*\", \"+86400*\"]");
    blocks(
        &p,
        &invite("13812345678", ""),
        "ent",
        403,
        "enterprise-foreign-network",
    );
    passes(&p, &invite("13912345678", ""), "ent");
}

#[test]
fn enterprise_not_whitelisted() {
    let p = policy("");
    blocks(
        &p,
        &invite("+8613812345679", ""),
        "ent",
        403,
        "enterprise-not-whitelisted",
    );
    // Another country's number was never assigned by this network: refused as such,
    // before the whitelist is read.
    blocks(
        &p,
        &invite("+442071234567", ""),
        "ent",
        403,
        "enterprise-foreign-network",
    );
    passes(&p, &invite("+8613912345678", ""), "ent");
    passes(&p, &invite("8613812345678", ""), "ent");
    passes(&p, &invite("4008001234", ""), "ent");
}

/// On an enterprise trunk the PBX writes PAI itself: the number From presents (what
/// the callee sees) must be contracted too, not only the asserted one.
#[test]
fn enterprise_presented_number_judged_too() {
    let p = policy("");
    let pai = "P-Asserted-Identity: <sip:4008001234@10.9.9.9>\r\n";
    // A whitelisted PAI behind a bank's service number, or another subscriber's.
    for (from, rule) in [
        ("95588", RuleId::EnterpriseNotWhitelisted),
        ("+8613812345679", RuleId::EnterpriseNotWhitelisted),
        ("+442071234567", RuleId::EnterpriseForeignNetwork),
    ] {
        let m = invite(from, pai);
        let d = judge(&p, &m, "ent");
        assert_eq!(rejected(&d), Some((403, rule.as_str())), "{from}: {d:?}");
        assert!(d.presented_hits.contains(rule));
        assert!(d.presented.is_some());
        // The asserted number is still the caller of record.
        assert_eq!(d.caller.map(|n| n.e164()).as_deref(), Some("+864008001234"));
    }
    // A blacklisted one: the blacklist fires first, on the presented number.
    blocks(&p, &invite("+8613912340007", pai), "ent", 608, "blacklist");
    // A PBX extension is not a number the callee may be shown.
    blocks(&p, &invite("8001", pai), "ent", 403, "numbering-plan");
    // Allowed: From and PAI both contracted (same number in another form, or another
    // number of the contract), and a From that presents a name rather than a number.
    for from in ["+864008001234", "13912345678", "trunk-gw"] {
        let d = passes(&p, &invite(from, pai), "ent");
        assert!(d.presented_hits.is_empty(), "{from}");
    }
    // The same From on an international trunk is the generic-number rule's business
    // (rewritten, not refused).
    let d = passes(
        &p,
        &invite(
            "+8613812345679",
            "P-Asserted-Identity: <sip:+442071234567@x>\r\n",
        ),
        "intl",
    );
    assert!(d.rewrite_from && d.presented.is_none());
}

#[test]
fn enterprise_hours_and_days() {
    let p = policy("");
    let m = invite("13912345678", "");
    let at = |ms| judge_at(&p, &m, "ent", ms, &NoCounting);
    assert_eq!(
        rejected(&at(MON_10H - 90 * 60_000)),
        Some((403, "enterprise-hours"))
    ); // 08:30
    assert_eq!(rejected(&at(MON_10H)), None);
    assert_eq!(
        rejected(&at(MON_10H + 8 * 3_600_000)),
        Some((403, "enterprise-hours"))
    ); // 18:00
    assert_eq!(
        rejected(&at(MON_10H - 24 * 3_600_000)),
        Some((403, "enterprise-hours"))
    ); // Sunday
    // Hours are the calendar's: the wall clock, whatever the steady one the tables run
    // on says (the live proxy's after a step of its wall clock, QA 192).
    let on = |steady: u64, wall: u64| {
        let c = Context {
            source: src("ent"),
            local: None,
            trunk: None,
            now_ms: steady,
            wall_ms: wall,
            rates: &NoCounting,
            behaviour: &sipfence::behaviour::NoTracking,
        };
        rejected(&decide(&p, &m, &c))
    };
    assert_eq!(on(MON_10H + 8 * 3_600_000, MON_10H), None);
    assert_eq!(
        on(MON_10H, MON_10H + 8 * 3_600_000),
        Some((403, "enterprise-hours"))
    );

    // Days without hours: every hour of those days, none of the others.
    let p = Policy::from_str(
        &POLICY.replace("hours = \"09:00-18:00\"\n", "").replace(
            "days = [\"mon\", \"tue\", \"wed\", \"thu\", \"fri\"]",
            "days = [\"mon\"]",
        ),
        "t.toml",
        Path::new("."),
    )
    .unwrap();
    assert!(p.trunks[2].hours.is_none());
    let at = |ms| judge_at(&p, &m, "ent", ms, &NoCounting);
    for h in [-10i64, 0, 8, 13] {
        // Monday 00:00 to 23:59, Beijing time.
        assert_eq!(
            rejected(&at((MON_10H as i64 + h * 3_600_000) as u64)),
            None,
            "{h}"
        );
    }
    for h in [-11i64, 14, 24, 24 * 6] {
        assert_eq!(
            rejected(&at((MON_10H as i64 + h * 3_600_000) as u64)),
            Some((403, "enterprise-hours")),
            "{h}"
        );
    }
}

/// A call the core challenges (401/407) and the caller retries with credentials (the
/// same Call-ID and From tag, CSeq + 1, a new branch: RFC 3261 22.2) is one call for the
/// rate contract (QA 64: a core that challenged every call halved the contracted
/// frequency). A retry the core did not ask for, a second retry on one challenge, or
/// a retry for another caller is counted as the attempt it is.
#[test]
fn a_retry_after_the_cores_challenge_is_the_same_call() {
    use sipfence::decide::track_dialog;
    let p = policy("");
    let a = "13912340001";
    let call = |k: &str| renamed(&invite(a, ""), a, k);
    let retry = |m: &Message, n: u32, caller: &str| {
        let t = String::from_utf8(m.bytes().to_vec())
            .unwrap()
            .replace("CSeq: 1 INVITE", &format!("CSeq: {n} INVITE"))
            .replace(";branch=z9hG4bK-", &format!(";branch=z9hG4bK-r{n}-"))
            .replace(&format!("sip:{a}@"), &format!("sip:{caller}@"))
            .replace(
                "Max-Forwards: 70\r\n",
                "Max-Forwards: 70\r\nProxy-Authorization: Digest username=\"pbx\", realm=\"core\", nonce=\"n1\", uri=\"sip:4008001234@10.0.0.100\", response=\"0\"\r\n",
            );
        Message::parse(Bytes::from(t)).unwrap()
    };
    let answer = |code: &str, m: &Message, rates: &LocalRateCounter, t: u64| {
        let text = String::from_utf8(m.bytes().to_vec()).unwrap();
        let head = text.split("\r\n\r\n").next().unwrap();
        let resp = format!(
            "SIP/2.0 {code}\r\n{}\r\n\r\n",
            head.split_once("\r\n")
                .unwrap()
                .1
                .replace("Content-Length: 4", "Content-Length: 0")
                .replace(
                    "To: <sip:4008001234@10.0.0.100>",
                    "To: <sip:4008001234@10.0.0.100>;tag=core1"
                )
        );
        let resp = Message::parse_for_relay(Bytes::from(resp)).unwrap();
        track_dialog(&resp, || true, rates, MON_10H + t);
    };
    let challenge = |m: &Message, rates: &LocalRateCounter, t: u64| {
        answer("407 Proxy Authentication Required", m, rates, t)
    };
    let rates = LocalRateCounter::new(1000);
    let r = on_ent(&p, &rates);
    let first = call("ch-1");
    assert_eq!(r(&first, 0), None);
    challenge(&first, &rates, 50);
    let again = retry(&first, 2, a);
    assert_eq!(r(&again, 100), None);
    // Its retransmission: the same, uncounted.
    assert_eq!(r(&again, 600), None);
    // One call spent of the caller's two a minute: a second passes, a third does not.
    assert_eq!(r(&call("ch-2"), 700), None);
    assert_eq!(r(&call("ch-3"), 800), Some((403, "enterprise-rate-caller")));

    // A longer session interval asked for (422, RFC 4028): the same (QA 67); a busy
    // callee asks for nothing, and a new INVITE after it is a new attempt.
    let rates = LocalRateCounter::new(1000);
    let r = on_ent(&p, &rates);
    let first = call("ch-11");
    assert_eq!(r(&first, 0), None);
    answer("422 Session Interval Too Small", &first, &rates, 50);
    assert_eq!(r(&retry(&first, 2, a), 100), None);
    let busy = call("ch-12");
    assert_eq!(r(&busy, 200), None);
    answer("486 Busy Here", &busy, &rates, 250);
    assert_eq!(
        r(&retry(&busy, 2, a), 300),
        Some((403, "enterprise-rate-caller"))
    );

    // Without the core's challenge a retry is another attempt; one challenge lets
    // one retry by.
    let rates = LocalRateCounter::new(1000);
    let r = on_ent(&p, &rates);
    let first = call("ch-4");
    assert_eq!(r(&first, 0), None);
    assert_eq!(r(&retry(&first, 2, a), 100), None);
    assert_eq!(r(&call("ch-5"), 200), Some((403, "enterprise-rate-caller")));
    let rates = LocalRateCounter::new(1000);
    let r = on_ent(&p, &rates);
    let first = call("ch-6");
    assert_eq!(r(&first, 0), None);
    challenge(&first, &rates, 50);
    assert_eq!(r(&retry(&first, 2, a), 100), None);
    assert_eq!(
        r(&retry(&first, 3, a), 200),
        None,
        "counted: the second of two"
    );
    assert_eq!(r(&call("ch-7"), 300), Some((403, "enterprise-rate-caller")));
    // A retry that names another caller is that caller's call: counted for it.
    let rates = LocalRateCounter::new(1000);
    let r = on_ent(&p, &rates);
    let first = call("ch-8");
    assert_eq!(r(&first, 0), None);
    challenge(&first, &rates, 50);
    let b = "13912340002";
    assert_eq!(r(&retry(&first, 2, b), 100), None);
    assert_eq!(r(&renamed(&invite(b, ""), b, "ch-9"), 200), None);
    assert_eq!(
        r(&renamed(&invite(b, ""), b, "ch-10"), 300),
        Some((403, "enterprise-rate-caller"))
    );

    // A retry that keeps the asserted caller but shows another number in From is an
    // attempt of that number (QA 74: a shown number over its limit passed in retries).
    let rates = LocalRateCounter::new(1000);
    let r = on_ent(&p, &rates);
    let pai = "P-Asserted-Identity: <sip:13912340001@10.9.9.9>\r\n";
    let first = renamed(&invite(a, pai), a, "ch-30");
    assert_eq!(r(&first, 0), None);
    challenge(&first, &rates, 50);
    let shows_b = String::from_utf8(first.bytes().to_vec())
        .unwrap()
        .replace("CSeq: 1 INVITE", "CSeq: 2 INVITE")
        .replace(";branch=z9hG4bK-", ";branch=z9hG4bK-r2-")
        .replace(
            "\"13912340001\" <sip:13912340001@",
            "\"13912340002\" <sip:13912340002@",
        );
    let shows_b = Message::parse(Bytes::from(shows_b)).unwrap();
    let d = judge_at(&p, &shows_b, "ent", MON_10H + 100, &rates);
    assert!(!d.core_retry && rejected(&d).is_none(), "{d:?}");
    // 13912340002 shown once: its own second call passes, its third is over.
    let b2 = |k: &str| renamed(&invite(b, ""), b, k);
    assert_eq!(r(&b2("ch-31"), 200), None);
    assert_eq!(r(&b2("ch-32"), 300), Some((403, "enterprise-rate-caller")));

    // On any trunk, limits or none, the calls metrics count the call once, and its
    // retry's record says what it is (QA 71: a core challenging every call doubled
    // the calls panel and halved the block ratio).
    let rates = LocalRateCounter::new(1000);
    let metrics = sipfence::observability::metrics::Metrics::new();
    let bound = metrics.bind(&p);
    let first = renamed(&invite("+442071234567", ""), "+442071234567", "ch-20");
    let on_intl = |m: &Message, t: u64| {
        let d = judge_at(&p, m, "intl", MON_10H + t, &rates);
        bound.count(&d, 0.0);
        d
    };
    // Without rate rules a forwarded call is remembered for its retry only once the
    // core has asked for retries lately (most cores never do): the first call so
    // answered is counted twice.
    let before = renamed(&invite("+442071234566", ""), "+442071234566", "ch-19");
    assert!(!on_intl(&before, 0).core_retry);
    challenge(&before, &rates, 10);
    let again = String::from_utf8(before.bytes().to_vec())
        .unwrap()
        .replace("CSeq: 1 INVITE", "CSeq: 2 INVITE")
        .replace(";branch=z9hG4bK-", ";branch=z9hG4bK-r2-");
    assert!(!on_intl(&Message::parse(Bytes::from(again)).unwrap(), 20).core_retry);
    assert!(!on_intl(&first, 30).core_retry);
    challenge(&first, &rates, 50);
    let retry_intl = |n: u32| {
        let t = String::from_utf8(first.bytes().to_vec())
            .unwrap()
            .replace("CSeq: 1 INVITE", &format!("CSeq: {n} INVITE"))
            .replace(";branch=z9hG4bK-", &format!(";branch=z9hG4bK-r{n}-"));
        Message::parse(Bytes::from(t)).unwrap()
    };
    let d = on_intl(&retry_intl(2), 100);
    assert!(d.core_retry && d.outcome == Outcome::Forward, "{d:?}");
    let rec = sipfence::record::Record::new(&p, &retry_intl(2), &d, src("intl"), MON_10H);
    assert_eq!(rec.retry, Some("core-asked"));
    // A second retry on one challenge is an attempt of its own: counted.
    assert!(!on_intl(&retry_intl(3), 200).core_retry);
    // So is a retry that names another caller (QA 72).
    let other = renamed(&invite("+442071234568", ""), "+442071234568", "ch-21");
    assert!(!on_intl(&other, 300).core_retry);
    challenge(&other, &rates, 350);
    let swapped = Message::parse(Bytes::from(
        String::from_utf8(other.bytes().to_vec())
            .unwrap()
            .replace("CSeq: 1 INVITE", "CSeq: 2 INVITE")
            .replace(";branch=z9hG4bK-", ";branch=z9hG4bK-r2-")
            .replace("+442071234568", "+442071234569"),
    ))
    .unwrap();
    assert!(!on_intl(&swapped, 400).core_retry);
    // A From rebuilt on the retry (an SBC's: no display name, a port, another case) is
    // the same From: the same number, presenting nothing else (QA 76).
    let rebuilt = renamed(&invite("+442071234570", ""), "+442071234570", "ch-22");
    assert!(!on_intl(&rebuilt, 500).core_retry);
    challenge(&rebuilt, &rates, 550);
    let again = String::from_utf8(rebuilt.bytes().to_vec())
        .unwrap()
        .replace("CSeq: 1 INVITE", "CSeq: 2 INVITE")
        .replace(";branch=z9hG4bK-", ";branch=z9hG4bK-r2-")
        .replace(
            "From: \"+442071234570\" <sip:+442071234570@10.9.9.9>;tag=ft1",
            "From: <sip:+442071234570@10.9.9.9:5060>;TAG=ft1",
        );
    let d = on_intl(&Message::parse(Bytes::from(again)).unwrap(), 600);
    assert!(d.core_retry, "{d:?}");
    // On an interconnect trunk the numbers a display name shows are not judged one by
    // one, but a retry that shows another is another attempt all the same (QA 77).
    let pai = "P-Asserted-Identity: <sip:+8613812345678@10.9.9.9>\r\n";
    let shows = |k: &str, cseq: u32, display: &str| {
        let m = with_from_call(
            &format!("\"{display}\" <sip:+8613812345678@10.9.9.9>"),
            pai,
            k,
        );
        let t = String::from_utf8(m.bytes().to_vec())
            .unwrap()
            .replace("CSeq: 1 INVITE", &format!("CSeq: {cseq} INVITE"))
            .replace(";branch=z9hG4bK-", &format!(";branch=z9hG4bK-r{cseq}-"));
        Message::parse(Bytes::from(t)).unwrap()
    };
    for (k, display, same) in [("ch-23", "95588", true), ("ch-24", "95566", false)] {
        let first = shows(k, 1, "95588");
        assert!(!judge_at(&p, &first, "ic", MON_10H + 700, &rates).core_retry);
        challenge(&first, &rates, 750);
        let d = judge_at(&p, &shows(k, 2, display), "ic", MON_10H + 800, &rates);
        assert_eq!(d.core_retry, same, "{display}: {d:?}");
    }
    let text = metrics.render();
    for series in [
        "sipfence_calls_total{trunk=\"intl\",verdict=\"allow\"} 7",
        "sipfence_core_retries_total{trunk=\"intl\"} 2",
    ] {
        assert!(text.contains(series), "{series} not in\n{text}");
    }
}

/// Per caller and per trunk limits; a UDP retransmission of an INVITE (same branch,
/// Call-ID, CSeq) is the same call: not counted again, and given the verdict its
/// original got from these rules.
#[test]
fn enterprise_rates() {
    let p = policy("");
    let rates = LocalRateCounter::new(1000);
    // Call k of a caller: a new Call-ID and branch each time.
    let call = |from: &str, k: u32| renamed(&invite(from, ""), from, &format!("{from}-{k}"));
    let (a, b, c) = ("13912340001", "13912340002", "13912340003");
    let r = on_ent(&p, &rates);
    assert_eq!(r(&call(a, 1), 0), None);
    let a2 = call(a, 2);
    assert_eq!(r(&a2, 1), None);
    // Its retransmission (the core was slow with 100 Trying): passes, uncounted.
    assert_eq!(r(&a2, 501), None);
    let a3 = call(a, 3);
    assert_eq!(r(&a3, 600), Some((403, "enterprise-rate-caller")));
    // A retransmission of the refused one: still refused, and not counted either.
    assert_eq!(r(&a3, 1100), Some((403, "enterprise-rate-caller")));
    assert_eq!(r(&call(b, 1), 1200), None);
    assert_eq!(r(&call(c, 1), 1300), None);
    // The trunk's limit counts the calls it let through (A's refused third and the
    // retransmissions are not among them): this is the fifth, within 5 per minute.
    assert_eq!(r(&call(c, 2), 1400), None);
    // A sixth, from a caller well within its own limit: over the trunk's.
    let d = "13912340004";
    assert_eq!(r(&call(d, 1), 1500), Some((403, "enterprise-rate-trunk")));
    // Refused by the trunk's limit, it spent none of it: still refused.
    assert_eq!(r(&call(d, 2), 1600), Some((403, "enterprise-rate-trunk")));
    // Two minutes later the window is empty again, and a retransmission long after its
    // transaction ended (RFC 3261 Timer B, 32 s) is a call again.
    assert_eq!(r(&a3, 120_000), None);
    // Sending the same INVITE twice gains nothing: the first refused, the second too.
    let rates = LocalRateCounter::new(1000);
    let r = on_ent(&p, &rates);
    assert_eq!(r(&call(a, 10), 0), None);
    assert_eq!(r(&call(a, 11), 1), None);
    let twice = call(a, 12);
    assert_eq!(r(&twice, 2), Some((403, "enterprise-rate-caller")));
    assert_eq!(r(&twice, 3), Some((403, "enterprise-rate-caller")));
    // The same branch and Call-ID with another Request-URI is another call: counted.
    let other = String::from_utf8(call(a, 11).bytes().to_vec())
        .unwrap()
        .replace("INVITE sip:4008001234@", "INVITE sip:4008009999@");
    let other = Message::parse(Bytes::from(other)).unwrap();
    assert_eq!(r(&other, 4), Some((403, "enterprise-rate-caller")));
    // An allowed call's transaction copied for a caller over its limit (b, with its
    // two calls spent) is that caller's call, not the allowed one's retransmission.
    let rates = LocalRateCounter::new(1000);
    let r = on_ent(&p, &rates);
    let b1 = call(b, 1);
    assert_eq!(r(&b1, 10), None);
    assert_eq!(r(&call(b, 2), 11), None);
    assert_eq!(r(&call(b, 3), 12), Some((403, "enterprise-rate-caller")));
    let allowed = call(c, 1);
    assert_eq!(r(&allowed, 13), None);
    let copied = String::from_utf8(allowed.bytes().to_vec())
        .unwrap()
        .replace(&format!("\"{c}\" <sip:{c}@"), &format!("\"{b}\" <sip:{b}@"));
    assert!(copied.contains(&format!("<sip:{b}@")), "{copied}");
    let copied = Message::parse(Bytes::from(copied)).unwrap();
    assert_eq!(r(&copied, 14), Some((403, "enterprise-rate-caller")));

    // One number shown in From while the asserted number rotates over the contract:
    // the shown number's calls are counted too, and its third in the minute is refused
    // (QA 43: every call passed).
    let rates = LocalRateCounter::new(1000);
    let r = on_ent(&p, &rates);
    let shown = |pai: &str, k: u32| {
        with_from_call(
            "<sip:+8613912340009@10.9.9.9>",
            &format!("P-Asserted-Identity: <sip:+{pai}@10.9.9.9>\r\n"),
            &format!("wf-{k}"),
        )
    };
    assert_eq!(r(&shown("8613912340001", 1), 20), None);
    assert_eq!(r(&shown("8613912340002", 2), 21), None);
    assert_eq!(
        r(&shown("8613912340003", 3), 22),
        Some((403, "enterprise-rate-caller"))
    );
    // Each asserted number is within its own limit: only the shown one is over.
    assert_eq!(r(&call("13912340003", 1), 23), None);
    // The record says the shown number matched, not the caller it names (QA 52).
    let d = judge_at(&p, &shown("8613912340004", 4), "ent", MON_10H + 24, &rates);
    assert_eq!(d.rule, Some(RuleId::EnterpriseRateCaller));
    assert!(
        d.presented_hits.contains(RuleId::EnterpriseRateCaller),
        "{d:?}"
    );

    // A sip P-Asserted-Identity that rotates beside a fixed tel one (the core may show
    // either): the tel number's calls are counted, its third refused (QA 52); one call
    // showing the same number twice counts it once.
    let rates = LocalRateCounter::new(1000);
    let r = on_ent(&p, &rates);
    // Call `k`: From `from`, a sip P-Asserted-Identity `sip` and the fixed tel one.
    let pair = |from: &str, sip: &str, k: u32| {
        with_from_call(
            &format!("<sip:+{from}@10.9.9.9>"),
            &format!(
                "P-Asserted-Identity: <sip:+{sip}@10.9.9.9>\r\nP-Asserted-Identity: <tel:+8613912340088>\r\n"
            ),
            &format!("pr-{k}"),
        )
    };
    let rotating = |sip: &str, k: u32| pair(sip, sip, k);
    assert_eq!(r(&rotating("8613912340021", 1), 40), None);
    assert_eq!(r(&rotating("8613912340022", 2), 41), None);
    assert_eq!(
        r(&rotating("8613912340023", 3), 42),
        Some((403, "enterprise-rate-caller"))
    );
    let rates = LocalRateCounter::new(1000);
    let r = on_ent(&p, &rates);
    let twice = |sip: &str, k: u32| pair("8613912340088", sip, k);
    assert_eq!(r(&twice("8613912340031", 1), 50), None);
    assert_eq!(r(&twice("8613912340032", 2), 51), None);

    // A fixed number in the display name behind a From and an asserted number that
    // both rotate: the display name's number is counted too (QA 45: only From's was).
    let rates = LocalRateCounter::new(1000);
    let r = on_ent(&p, &rates);
    let fixed_display = |k: u32| {
        let n = format!("86139123400{:02}", 10 + k);
        with_from_call(
            &format!("\"+8613912340099\" <sip:+{n}@10.9.9.9>"),
            &format!("P-Asserted-Identity: <sip:+{n}@10.9.9.9>\r\n"),
            &format!("fd-{k}"),
        )
    };
    assert_eq!(r(&fixed_display(1), 30), None);
    assert_eq!(r(&fixed_display(2), 31), None);
    assert_eq!(
        r(&fixed_display(3), 32),
        Some((403, "enterprise-rate-caller"))
    );
}

/// Counts belong to the trunk, by its name: a reload that puts a new trunk first keeps
/// each trunk's callers and calls counted (they had moved with the trunks' places, so
/// a contract of 5 calls a minute let 10 through), and the new trunk starts afresh.
/// The trunk's contract counts the calls it carries: a call a later rule refuses (the
/// 503 of a trunk whose channels are all busy) spends none of it (QA 70: a PBX trying
/// again while the line was full used the minute's calls up, and the call it could
/// then carry was refused 403).
#[test]
fn a_call_refused_after_the_rate_rules_spends_none_of_the_contract() {
    let text = POLICY.replace(
        "max_calls_per_minute = 5\n",
        "max_calls_per_minute = 2\nrecord_route = true\nmax_concurrent_calls = 1\n",
    );
    let p = Policy::from_str(&text, "test.toml", Path::new(".")).unwrap();
    let rates = LocalRateCounter::new(1000);
    let calls = sipfence::behaviour::local::LocalTracker::new(64, 64);
    let at = |m: &Message, t: u64| {
        rejected(&decide(
            &p,
            m,
            &Context {
                source: src("ent"),
                local: None,
                trunk: None,
                now_ms: MON_10H + t,
                wall_ms: MON_10H + t,
                rates: &rates,
                behaviour: &calls,
            },
        ))
    };
    assert_eq!(at(&invite("13912340001", ""), 0), None);
    // The line is busy: every other caller gets 503, however many try.
    // (13912340007 is on the blacklist.)
    for k in [2, 3, 4, 5, 6, 8] {
        let busy = invite(&format!("1391234000{k}"), "");
        assert_eq!(at(&busy, k), Some((503, "concurrent-calls")), "{k}");
    }
    // The first call ends: the line carries a second call (a new INVITE: a copy of
    // the refused one is refused again), the minute's last.
    sipfence::behaviour::observe(&later("13912340001", "486"), true, &calls, MON_10H + 100);
    let second = renamed(&invite("13912340002", ""), "13912340002", "13912340002-2");
    assert_eq!(at(&second, 200), None);
    sipfence::behaviour::observe(&later("13912340002-2", "486"), true, &calls, MON_10H + 300);
    // Two calls carried this minute: the contract's third is refused, line free or not.
    assert_eq!(
        at(&invite("13912340009", ""), 400),
        Some((403, "enterprise-rate-trunk"))
    );
}

#[test]
fn rate_counts_stay_with_their_trunk_across_a_reload() {
    let before = policy("");
    let after = Policy::from_str(
        &format!(
            "[[trunk]]\nname = \"ent-new\"\nrole = \"enterprise\"\nsources = [\"10.0.0.3\"]\nlisten = [\"udp:127.0.0.1:5099\"]\nmax_calls_per_minute_per_caller = 1\n[trunk.whitelist]\nentries = [\"+8613912340000..+8613912349999\"]\n{POLICY}"
        ),
        "test.toml",
        Path::new("."),
    )
    .unwrap();
    assert_eq!(after.trunks[0].name, "ent-new");
    let rates = LocalRateCounter::new(1000);
    let call = |from: &str, k: u32| renamed(&invite(from, ""), from, &format!("{from}-{k}"));
    let on = |p: &Policy, trunk: &str, m: &Message, t: u64| {
        let ti = p.trunks.iter().position(|x| x.name == trunk);
        rejected(&decide(
            p,
            m,
            &Context {
                source: src("ent"),
                local: None,
                trunk: ti,
                now_ms: MON_10H + t,
                wall_ms: MON_10H + t,
                rates: &rates,
                behaviour: &sipfence::behaviour::NoTracking,
            },
        ))
    };
    let (a, b, c, d) = ("13912340001", "13912340002", "13912340003", "13912340004");
    assert_eq!(on(&before, "ent", &call(a, 1), 0), None);
    assert_eq!(on(&before, "ent", &call(a, 2), 1), None);
    assert_eq!(on(&before, "ent", &call(b, 1), 2), None);
    // Reloaded: the caller's two calls and the trunk's three are still counted.
    assert_eq!(
        on(&after, "ent", &call(a, 3), 3),
        Some((403, "enterprise-rate-caller"))
    );
    assert_eq!(on(&after, "ent", &call(b, 2), 4), None);
    assert_eq!(on(&after, "ent", &call(c, 1), 5), None);
    assert_eq!(
        on(&after, "ent", &call(d, 1), 6),
        Some((403, "enterprise-rate-trunk"))
    );
    // The new trunk counts its own.
    assert_eq!(on(&after, "ent-new", &call(a, 4), 7), None);
    assert_eq!(
        on(&after, "ent-new", &call(a, 5), 8),
        Some((403, "enterprise-rate-caller"))
    );
}

/// Any initial INVITE repeated byte for byte within its transaction's 32 s is flagged
/// a retransmission, whatever the trunk's rules (the proxy then counts and records it
/// once): judged again all the same, refusals included; another CSeq, Request-URI or
/// caller, or the same INVITE after 32 s, is a new call. `explain` on one file twice
/// says so.
#[test]
fn retransmitted_invites_are_flagged_on_every_trunk() {
    let p = policy("");
    let rates = LocalRateCounter::new(1000);
    let at = |m: &Message, trunk: &str, t: u64| judge_at(&p, m, trunk, MON_10H + t, &rates);
    let allowed = invite("+442071234567", "");
    let refused = invite("+8613812345678", "");
    for (m, trunk, code) in [(&allowed, "intl", None), (&refused, "intl", Some(403))] {
        let d = at(m, trunk, 0);
        assert!(!d.retransmission, "{trunk}");
        assert_eq!(rejected(&d).map(|r| r.0), code);
        for t in [500, 1_500, 31_000] {
            let d = at(m, trunk, t);
            assert!(d.retransmission, "{t}");
            assert_eq!(rejected(&d).map(|r| r.0), code, "judged again");
        }
        assert!(!at(m, trunk, 32_000).retransmission, "Timer B is over");
    }
    // The same INVITE on another trunk is another transaction.
    assert!(!at(&allowed, "ic", 40_000).retransmission);
    let text = String::from_utf8(allowed.bytes().to_vec()).unwrap();
    // Another CSeq, another Request-URI; and the same branch, Call-ID and tags with
    // another caller: a call of its own (counted and recorded), not a retransmission.
    for other in [
        text.replace("CSeq: 1 INVITE", "CSeq: 2 INVITE"),
        text.replace("INVITE sip:", "INVITE sip:9"),
        text.replace("+442071234567", "+442079999999"),
    ] {
        let m = Message::parse(Bytes::from(other)).unwrap();
        assert!(!at(&m, "intl", 40_100).retransmission);
    }
    // Without a memory (the benches), nothing is flagged.
    let d = decide(
        &p,
        &allowed,
        &Context {
            source: src("intl"),
            local: None,
            trunk: None,
            now_ms: MON_10H,
            wall_ms: MON_10H,
            rates: &sipfence::policy::rate::NoCounting,
            behaviour: &sipfence::behaviour::NoTracking,
        },
    );
    assert!(!d.retransmission);

    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("m.sip");
    std::fs::write(&f, &refused.buf()[..refused.len()]).unwrap();
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_sipfence"))
        .args(["explain", "--json"])
        .arg(&f)
        .arg(&f)
        .output()
        .unwrap();
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(lines[0].get("retransmission").is_none(), "{:?}", lines[0]);
    assert_eq!(lines[1]["retransmission"], true);
    assert_eq!(lines[0]["verdict"], lines[1]["verdict"]);
}

#[test]
fn generic_number_rewritten_to_asserted() {
    let p = policy("");
    let m = invite(
        "+8613812345678",
        "P-Asserted-Identity: <sip:+442071234567@x>\r\nP-Preferred-Identity: <sip:+8613812345678@x>\r\n",
    );
    let d = passes(&p, &m, "intl");
    assert!(d.rewrite_from);
    assert_eq!(d.rule, Some(RuleId::GenericNumber));
    let out = forwarded(&p, &m, &d);
    assert_eq!(
        out.value(HeaderName::From),
        Some(&b"<sip:+442071234567@10.9.9.9>;tag=ft1"[..])
    );
    assert_eq!(out.count(HeaderName::PPreferredIdentity), 0);
    assert_eq!(
        out.value(HeaderName::PAssertedIdentity),
        m.value(HeaderName::PAssertedIdentity)
    );
    assert_eq!(out.body(), m.body());
    // No label by default; with one set, the call is labelled too (QA 173 F3: a forged
    // +86 number deleted went on with nothing to tell the callee's network).
    assert!(!String::from_utf8_lossy(out.bytes()).contains("X-Sipfence-Label"));
    let labelled = policy("[rules.generic-number]\nlabel = \"generic-number\"");
    let d = passes(&labelled, &m, "intl");
    assert_eq!(
        (d.verdict_str(), d.rule),
        ("rewrite", Some(RuleId::GenericNumber))
    );
    let out = forwarded(&labelled, &m, &d);
    assert!(
        String::from_utf8_lossy(out.bytes()).contains("\r\nX-Sipfence-Label: generic-number\r\n"),
        "{:?}",
        out.bytes()
    );
    assert_eq!(
        out.value(HeaderName::From),
        Some(&b"<sip:+442071234567@10.9.9.9>;tag=ft1"[..])
    );
    // Two rules with one label write it once (QA 176 N7).
    let twice = policy(
        "[rules.generic-number]\nlabel = \"international\"\n[rules.label-international]\naction = \"label\"",
    );
    let d = passes(&twice, &m, "intl");
    let text = String::from_utf8_lossy(forwarded(&twice, &m, &d).bytes()).to_string();
    assert!(
        text.contains("\r\nX-Sipfence-Label: international\r\n"),
        "{text}"
    );
    // Same numbers in another form: nothing to delete.
    let m = invite(
        "+442071234567",
        "P-Asserted-Identity: <tel:0044-20-7123-4567>\r\n",
    );
    assert!(!passes(&p, &m, "intl").rewrite_from);
    // Not on enterprise trunks, and off when configured off.
    let m = invite("trunk-gw", "P-Asserted-Identity: <sip:13912340001@x>\r\n");
    assert!(!passes(&p, &m, "ent").rewrite_from);
    let p = policy("[rules.generic-number]\naction = \"off\"");
    let m = invite(
        "+8613812345678",
        "P-Asserted-Identity: <sip:+442071234567@x>\r\n",
    );
    assert!(!passes(&p, &m, "intl").rewrite_from);
}

/// Privacy (RFC 3323) and the generic number: an anonymous From presents nothing, so
/// there is nothing to delete and it stays anonymous; a number presented beside a
/// privacy request is deleted by making From anonymous, never by writing the asserted
/// number where the callee sees it.
#[test]
fn generic_number_deletion_keeps_privacy() {
    let p = policy("");
    let pai = "P-Asserted-Identity: <sip:+442071234567@x>\r\n";
    // Anonymous From with Privacy: id and an asserted number: allowed, untouched.
    for from in [
        "\"Anonymous\" <sip:anonymous@anonymous.invalid>",
        "<sip:anonymous@anonymous.invalid>",
        "\"unknown\" <sip:unknown@10.9.9.9>",
        "<sip:10.9.9.9>",
    ] {
        for privacy in ["Privacy: id\r\n", ""] {
            let m = with_from(from, &format!("{privacy}{pai}"));
            let d = passes(&p, &m, "intl");
            assert!(!d.rewrite_from, "{from} {privacy}: {d:?}");
            assert_eq!(d.rule, None, "{from}");
            let out = forwarded(&p, &m, &d);
            assert_eq!(out.value(HeaderName::From), m.value(HeaderName::From));
        }
    }
    // An anonymous URI under a display name that shows a number: the display name is
    // what the callee sees, so it is a generic number and goes.
    let m = with_from("\"10086\" <sip:anonymous@anonymous.invalid>", pai);
    assert_eq!(
        rewritten_from(&p, &m),
        b"<sip:+442071234567@anonymous.invalid>;tag=ft1"
    );
    // A number presented beside Privacy: id: From becomes anonymous (name-addr and
    // addr-spec forms), the asserted identity stays in P-Asserted-Identity.
    for from in [
        "\"+8613812345678\" <sip:+8613812345678@10.9.9.9>",
        "sip:+8613812345678@10.9.9.9",
    ] {
        let m = with_from(from, &format!("Privacy: id\r\n{pai}"));
        let d = passes(&p, &m, "intl");
        assert!(d.rewrite_from, "{from}");
        assert_eq!(d.rule, Some(RuleId::GenericNumber));
        let out = forwarded(&p, &m, &d);
        assert_eq!(
            out.value(HeaderName::From),
            Some(&b"\"Anonymous\" <sip:anonymous@anonymous.invalid>;tag=ft1"[..]),
            "{from}"
        );
        assert_eq!(out.from_tag(), m.from_tag());
        assert_eq!(
            out.value(HeaderName::PAssertedIdentity),
            m.value(HeaderName::PAssertedIdentity)
        );
        // Judged again: anonymous now, nothing left to delete.
        assert!(!passes(&p, &out, "intl").rewrite_from);
    }
}

/// A display name that shows a number is presented to the callee as much as the URI:
/// one that shows another number than the caller's is a generic number and goes.
/// QA 197 F2: opening hours after the caller's number in its display name are no digits
/// of it where digits are read across any mark too (`"95588 8:00-20:00"` showed
/// 9558880020, and the bank's own name was taken off as another number's); a short
/// code hidden as a time is still read there.
#[test]
fn opening_hours_after_the_number_show_no_other_number() {
    let p = policy("");
    for (display, kept) in [
        ("中国工商银行 95588 8:00-20:00", true),
        ("中国工商银行 95588 08:30-20:00", true),
        ("中国工商银行 95588 2024-01-10", true),
        // QA 199 FC: a date and a time together make no number either.
        ("2026-12-07 09:00", true),
        ("10/01 09:00-18:00", true),
        ("营业 8：00-20：00", true),
        ("报警 1:10", false),
        ("95588 1:10", false),
        // QA 202 U3: there, dates hide no digits of a short code before them.
        ("中国移动 100 8/6", false),
        ("公安 1 2/2", false),
        ("１００ ８／６", false),
    ] {
        let m = with_from(
            &format!("\"{display}\" <sip:95588@10.9.9.9>"),
            "P-Asserted-Identity: <sip:+8695588@10.9.9.9>\r\n",
        );
        let d = passes(&p, &m, "ic");
        assert_eq!(!d.rewrite_from, kept, "{display}: {d:?}");
    }
}

#[test]
fn generic_number_in_the_display_name() {
    let p = policy("");
    // A domestic number shown over a foreign caller, no PAI: the display name goes,
    // the URI stays.
    for display in ["\"+8613812345678\"", "\"+86 138 1234 5678\"", "95588"] {
        let m = with_from(&format!("{display} <sip:+442071234567@10.9.9.9>"), "");
        let d = passes(&p, &m, "intl");
        assert!(d.rewrite_from, "{display}: {d:?}");
        assert_eq!(d.rule, Some(RuleId::GenericNumber));
        assert_eq!(
            forwarded(&p, &m, &d).value(HeaderName::From),
            Some(&b"<sip:+442071234567@10.9.9.9>;tag=ft1"[..]),
            "{display}"
        );
    }
    // With a PAI: From gets the asserted number, display name gone.
    let m = with_from(
        "\"+8613812345678\" <sip:+442071234567@10.9.9.9>",
        "P-Asserted-Identity: <sip:+442071234567@x>\r\n",
    );
    assert_eq!(
        rewritten_from(&p, &m),
        b"<sip:+442071234567@10.9.9.9>;tag=ft1"
    );
    // Kept: a display name that shows the caller's own number (in any form), or a name.
    for display in [
        "\"+442071234567\"",
        "\"0044 20 7123 4567\"",
        "\"Alice\"",
        "Bob Smith",
    ] {
        let m = with_from(&format!("{display} <sip:+442071234567@10.9.9.9>"), "");
        let d = passes(&p, &m, "intl");
        assert!(!d.rewrite_from, "{display}: {d:?}");
        assert_eq!(d.rule, None, "{display}");
    }
    // QA 197 F1: a foreign caller's own number as written in its country (read in the
    // home plan, "2125550100" showed a Shanghai number), with an asserted identity or
    // without; but not where a callee here reads a domestic number: with the home trunk
    // prefix (London's "020 7123 4567" is a Guangzhou number here), or a mobile's, a 400
    // number's shape, nor beside a word.
    for (display, caller, kept) in [
        ("\"2125550100\"", "+12125550100", true),
        ("\"(415) 555-0123\"", "+14155550123", true),
        ("\"212-555-0100\"", "+12125550100", true),
        ("\"1-415-555-0123\"", "+14155550123", true),
        ("\"8 (916) 123-45-67\"", "+79161234567", true),
        ("\"020 7123 4567\"", "+442071234567", false),
        ("\"07700 900123\"", "+447700900123", false),
        ("\"13812345678\"", "+4413812345678", false),
        ("\"4008001234\"", "+444008001234", false),
        ("\"2125550101\"", "+12125550100", false),
        ("\"9 2125550100\"", "+12125550100", false),
        // QA 199 FA: a service, emergency, 400, 800 or mobile number inside the
        // caller's own digits is what a callee here reads.
        ("\"95588 123\"", "+85295588123", false),
        ("\"110 00000\"", "+4411000000", false),
        ("\"1-400-223-4567\"", "+14002234567", false),
        // QA 213 H3: a '+' glued to a trunk 0 prefixes nothing a callee dials: the
        // national number after it is read.
        ("\"+010-6666-0100\"", "+442071234567", false),
        ("\"+0138 1234 5678\"", "+442071234567", false),
        // QA 215: a footnote's raised digit before the police's number.
        ("\"报警¹110\"", "+442071234567", false),
        // QA 218 F1: a letter glued to the police's number's first digit hides it on
        // no trunk; a label's digit hides what is no emergency number.
        ("\"Tel1-10\"", "+442071234567", false),
        ("\"Q1-10\"", "+442071234567", false),
        ("\"Q1 2024\"", "+442071234567", true),
        ("\"银行Tel9-5588\"", "+442071234567", false),
        // QA 217 P1: Taobao's and China Post's service numbers.
        ("\"淘宝客服 951-0211\"", "+442071234567", false),
        ("\"中国邮政 11185\"", "+442071234567", false),
        ("\"8 (800) 555-35-35\"", "+78005553535", false),
        ("\"49 1512 3456789\"", "+4915123456789", false),
    ] {
        for pai in ["", "P-Asserted-Identity: <sip:CALLER@x>\r\n"] {
            let m = with_from(
                &format!("{display} <sip:{caller}@10.9.9.9>"),
                &pai.replace("CALLER", caller),
            );
            let d = passes(&p, &m, "intl");
            assert_eq!(!d.rewrite_from, kept, "{display} {caller} {pai}: {d:?}");
            assert_eq!(
                d.rule == Some(RuleId::GenericNumber),
                !kept,
                "{display} {caller} {pai}"
            );
        }
    }
    // On enterprise trunks the shown number is judged instead: refused unless
    // contracted.
    let m = with_from("\"95588\" <sip:13912345678@10.9.9.9>", "");
    let d = judge(&p, &m, "ent");
    assert_eq!(rejected(&d), Some((403, "enterprise-not-whitelisted")));
    assert!(d.presented_hits.contains(RuleId::EnterpriseNotWhitelisted));
    let m = with_from("\"139-1234-0001\" <sip:13912345678@10.9.9.9>", "");
    assert!(!passes(&p, &m, "ent").rewrite_from);
    // Full-width digits (what a CJK input method types) show the same number on a
    // phone: deleted alike. A Chinese name is a name.
    for display in [
        "\"＋８６１３８１２３４５６７８\"",
        "\"１３８－１２３４－５６７８\"",
    ] {
        let m = with_from(&format!("{display} <sip:+442071234567@10.9.9.9>"), "");
        let d = passes(&p, &m, "intl");
        assert!(d.rewrite_from, "{display}: {d:?}");
        assert_eq!(
            forwarded(&p, &m, &d).value(HeaderName::From),
            Some(&b"<sip:+442071234567@10.9.9.9>;tag=ft1"[..]),
            "{display}"
        );
    }
    let m = with_from("\"张三\" <sip:+442071234567@10.9.9.9>", "");
    assert_eq!(passes(&p, &m, "intl").rule, None);
}

/// P-Preferred-Identity is what the caller would like asserted (a trusted proxy behind
/// the gateway may assert it), and an unscreened Remote-Party-ID, or one beside a PAI,
/// is what legacy equipment may show: other numbers there are generic numbers.
#[test]
fn preferred_and_legacy_identities_are_presented_numbers() {
    let p = policy("");
    let from = "<sip:+442071234567@10.9.9.9>";
    let out = |m: &Message| {
        let d = passes(&p, m, "intl");
        (
            d.rule,
            String::from_utf8_lossy(forwarded(&p, m, &d).buf()).into_owned(),
        )
    };
    for extra in [
        "P-Preferred-Identity: <sip:+8613812345678@x>\r\n",
        "Remote-Party-ID: <sip:+8613812345678@x>;party=calling;screen=no\r\n",
        "P-Asserted-Identity: <sip:+442071234567@x>\r\nRemote-Party-ID: <sip:+8613812345678@x>;party=calling;screen=yes\r\n",
    ] {
        let (rule, fwd) = out(&with_from(from, extra));
        assert_eq!(rule, Some(RuleId::GenericNumber), "{extra}");
        assert!(!fwd.contains("8613812345678"), "{extra} -> {fwd}");
        assert!(
            fwd.contains("From: <sip:+442071234567@10.9.9.9>;tag=ft1\r\n"),
            "{fwd}"
        );
        assert_eq!(
            fwd.contains("P-Asserted-Identity"),
            extra.contains("P-Asserted")
        );
    }
    // A number in P-Asserted-Identity's display name is shown too: the display name
    // goes, the asserted URI stays. A name, or the caller's own number, stays.
    let (rule, fwd) = out(&with_from(
        from,
        "P-Asserted-Identity: \"+8613812345678\" <sip:+442071234567@x>\r\n",
    ));
    assert_eq!(rule, Some(RuleId::GenericNumber));
    assert!(
        fwd.contains("P-Asserted-Identity: <sip:+442071234567@x>\r\n")
            && !fwd.contains("8613812345678"),
        "{fwd}"
    );
    for display in ["\"Alice\"", "\"+44 20 7123 4567\""] {
        let extra = format!("P-Asserted-Identity: {display} <sip:+442071234567@x>\r\n");
        let (rule, fwd) = out(&with_from(from, &extra));
        assert_eq!(rule, None, "{display}");
        assert!(fwd.contains(&extra), "{fwd}");
    }
    // Behind a first value whose display name is the caller's own number, the second
    // value of the pair (sip + tel) showing another number is seen too.
    let (rule, fwd) = out(&with_from(
        from,
        "P-Asserted-Identity: \"+442071234567\" <sip:+442071234567@x>\r\nP-Asserted-Identity: \"+8613812345678\" <tel:+442071234567>\r\n",
    ));
    assert_eq!(rule, Some(RuleId::GenericNumber));
    assert!(
        fwd.contains("P-Asserted-Identity: <tel:+442071234567>\r\n")
            && fwd.contains("P-Asserted-Identity: \"+442071234567\" <sip:+442071234567@x>\r\n")
            && !fwd.contains("8613812345678"),
        "{fwd}"
    );
    // The caller's own number in them, or a screened Remote-Party-ID that is the
    // asserted identity: nothing to delete.
    for extra in [
        "P-Preferred-Identity: <tel:+442071234567>\r\n",
        "Remote-Party-ID: <sip:+442071234567@x>;party=calling;screen=yes\r\n",
        "Remote-Party-ID: \"Bob\" <sip:+442071234567@x>;party=calling;screen=no\r\n",
    ] {
        let (rule, fwd) = out(&with_from(from, extra));
        assert_eq!(rule, None, "{extra}");
        assert!(fwd.contains(extra), "{fwd}");
    }
    // Enterprise: the PBX's preferred identity must be a contracted number too.
    let ent = |ppi: &str| {
        with_from(
            "<sip:+8613912340001@10.9.9.9>",
            &format!(
                "P-Asserted-Identity: <sip:+8613912340001@x>\r\nP-Preferred-Identity: {ppi}\r\n"
            ),
        )
    };
    let d = judge(&p, &ent("<sip:+8613712345678@x>"), "ent");
    assert_eq!(rejected(&d), Some((403, "enterprise-not-whitelisted")));
    assert!(d.presented_hits.contains(RuleId::EnterpriseNotWhitelisted));
    assert_eq!(passes(&p, &ent("<sip:+8613912340002@x>"), "ent").rule, None);
    // And the number its PAI's display name shows.
    let m = with_from(
        "<sip:+8613912340001@10.9.9.9>",
        "P-Asserted-Identity: \"95588\" <sip:+8613912340001@x>\r\n",
    );
    assert_eq!(
        rejected(&judge(&p, &m, "ent")),
        Some((403, "enterprise-not-whitelisted"))
    );
}

/// RFC 3325 allows two P-Asserted-Identity values, a sip and a tel URI naming one
/// caller. A pair naming two numbers is judged on both: the core may show the second.
#[test]
fn a_second_asserted_identity_is_judged_too() {
    let p = policy("");
    let pai = |second: &str| {
        with_from(
            "<sip:+442071234567@10.9.9.9>",
            &format!(
                "P-Asserted-Identity: <sip:+442071234567@x;user=phone>\r\nP-Asserted-Identity: {second}\r\n"
            ),
        )
    };
    // International: a domestic mobile or a forged service number behind a foreign
    // caller is refused, and the decision says which identity matched.
    let d = judge(&p, &pai("<tel:+8613812345678>"), "intl");
    assert_eq!(rejected(&d), Some((403, "intl-domestic-caller")));
    assert!(d.asserted2_hits.contains(RuleId::IntlDomesticCaller));
    assert_eq!(d.caller.map(|n| n.e164()).as_deref(), Some("+442071234567"));
    let d = judge(&p, &pai("<tel:110;phone-context=+86>"), "intl");
    assert_eq!(rejected(&d), Some((403, "intl-forged-service")));
    // The same caller written twice, in any form, or another foreign number: passes.
    for second in [
        "<tel:+442071234567>",
        "<tel:+44-20-7123-4567>",
        "<sip:00442071234567@x;user=phone>",
        "<tel:+33142345678>",
    ] {
        let d = passes(&p, &pai(second), "intl");
        assert_eq!(d.rule, None, "{second}");
    }
    // One field with both values behaves the same.
    let m = with_from(
        "<sip:+442071234567@10.9.9.9>",
        "P-Asserted-Identity: <sip:+442071234567@x;user=phone>, <tel:+8613812345678>\r\n",
    );
    assert_eq!(
        rejected(&judge(&p, &m, "intl")),
        Some((403, "intl-domestic-caller"))
    );
    // Enterprise: both must be contracted numbers.
    let ent = |second: &str| {
        with_from(
            "<sip:+8613912340001@10.9.9.9>",
            &format!("P-Asserted-Identity: <sip:+8613912340001@x>, {second}\r\n"),
        )
    };
    let d = judge(&p, &ent("<tel:+8613812349999>"), "ent");
    assert_eq!(rejected(&d), Some((403, "enterprise-not-whitelisted")));
    assert!(d.asserted2_hits.contains(RuleId::EnterpriseNotWhitelisted));
    assert_eq!(passes(&p, &ent("<tel:+8613912340002>"), "ent").rule, None);
    assert_eq!(
        passes(&p, &ent("<tel:+86-139-1234-0001>"), "ent").rule,
        None
    );
}

/// RFC 3325 9.1 allows at most two P-Asserted-Identity values: a third is refused
/// (400) rather than let through unjudged, in separate fields or in one list; two, and
/// an empty field beside them, pass as before.
#[test]
fn a_third_asserted_identity_is_refused() {
    let p = policy("");
    let m = |pai: &str| with_from("<sip:+442071234567@10.9.9.9>", pai);
    for (pai, trunks) in [
        (
            "P-Asserted-Identity: <sip:+442071234567@x>\r\nP-Asserted-Identity: <tel:+442071234567>\r\nP-Asserted-Identity: <tel:+8613812345678>\r\n",
            &["intl", "ic"][..],
        ),
        (
            "P-Asserted-Identity: <sip:+442071234567@x>, <tel:+442071234567>, <tel:+86110>\r\n",
            &["intl", "ic"][..],
        ),
        (
            "P-Asserted-Identity: <sip:gw@x>\r\nP-Asserted-Identity: <tel:+442071234567>, <tel:+8613812345678>\r\n",
            &["intl"][..],
        ),
    ] {
        for trunk in trunks {
            let d = judge(&p, &m(pai), trunk);
            assert_eq!(d.outcome, Outcome::Reject { code: 400 }, "{trunk} {pai}");
            assert_eq!(
                d.refusal.map(|r| r.why),
                Some("Too Many P-Asserted-Identity Values")
            );
            assert_eq!(d.rule, None);
        }
    }
    let ent = with_from(
        "<sip:+8613912340001@10.9.9.9>",
        "P-Asserted-Identity: <sip:+8613912340001@x>\r\nP-Asserted-Identity: <tel:+8613912340001>\r\nP-Asserted-Identity: <tel:+8613812345678>\r\n",
    );
    assert_eq!(
        judge(&p, &ent, "ent").outcome,
        Outcome::Reject { code: 400 }
    );
    // Two values, and an empty field: judged as ever.
    for pai in [
        "P-Asserted-Identity: <sip:+442071234567@x>\r\nP-Asserted-Identity: <tel:+442071234567>\r\n",
        "P-Asserted-Identity: <sip:+442071234567@x>, <tel:+442071234567>\r\nP-Asserted-Identity: \r\n",
    ] {
        assert_eq!(passes(&p, &m(pai), "intl").rule, None, "{pai}");
    }
}

/// A Remote-Party-ID list whose screened value is the asserted identity and whose
/// other value is not: the other value goes, the asserted one stays, in either order.
#[test]
fn remote_party_id_list_keeps_only_the_asserted_value() {
    let p = policy("");
    let asserted = "<sip:+442071234567@gw>;party=calling;screen=yes";
    let other = "<sip:+8613812345678@gw>;party=calling;screen=no";
    for rpid in [
        format!("{asserted}, {other}"),
        format!("{other} ,{asserted}"),
        format!("{other}, {asserted}, {other}"),
    ] {
        let m = with_from(
            "<sip:+442071234567@10.9.9.9>",
            &format!("Remote-Party-ID: {rpid}\r\n"),
        );
        let d = passes(&p, &m, "intl");
        assert_eq!(d.rule, Some(RuleId::GenericNumber), "{rpid}");
        let out = forwarded(&p, &m, &d);
        let kept: Vec<&[u8]> = out
            .all(HeaderName::RemotePartyId)
            .map(|h| out.slice(h.value()))
            .collect();
        assert_eq!(kept, vec![asserted.as_bytes()], "{rpid}");
    }
}

/// Digits no plan can hold (more than 18 of them, or `00` alone) break the numbering
/// plan (403): they are not a blank caller (433, "your caller hid"). On an enterprise
/// trunk a presented number of that kind is judged as well.
#[test]
fn digits_beyond_any_plan_break_the_plan() {
    let p = policy("");
    for from in [
        "<sip:+8613812345678000000@10.9.9.9;user=phone>",
        "<sip:13812345678000000000@10.9.9.9;user=phone>",
        "<sip:00@10.9.9.9;user=phone>",
    ] {
        let m = with_from(from, "");
        for trunk in ["intl", "ic", "ent"] {
            blocks(&p, &m, trunk, 403, "numbering-plan");
        }
    }
    // Enterprise: a contracted PAI behind an over-long From or P-Preferred-Identity.
    for extra in [
        ("<sip:13812345678000000@pbx;user=phone>", ""),
        (
            "<sip:+8613912340001@pbx>",
            "P-Preferred-Identity: <sip:+8613812345678000000@pbx>\r\n",
        ),
    ] {
        let m = with_from(
            extra.0,
            &format!(
                "P-Asserted-Identity: <sip:+8613912340001@pbx>\r\n{}",
                extra.1
            ),
        );
        let d = judge(&p, &m, "ent");
        assert_eq!(rejected(&d), Some((403, "numbering-plan")), "{extra:?}");
        assert!(d.presented_hits.contains(RuleId::NumberingPlan));
        assert_eq!(
            d.caller.map(|n| n.e164()).as_deref(),
            Some("+8613912340001")
        );
    }
    // The same From on the international trunk is a generic number: rewritten away.
    let m = with_from(
        "<sip:13812345678000000@gw;user=phone>",
        "P-Asserted-Identity: <sip:+442071234567@gw>\r\n",
    );
    assert_eq!(passes(&p, &m, "intl").rule, Some(RuleId::GenericNumber));
    // Words stay blank callers.
    blocks(
        &p,
        &with_from("<sip:anonymous@10.9.9.9>", ""),
        "intl",
        433,
        "blank-caller",
    );
}

/// A number among words in From's display name ("Bank of China 95588", the forged-bank
/// pattern) is shown to the callee as much as a display name that is only a number:
/// deleted at the international gateway, judged on an enterprise trunk. Digits that are
/// no number of the plan ("Room 1203") show none.
#[test]
fn a_number_among_words_in_the_display_name() {
    let p = policy("");
    let pai = "P-Asserted-Identity: <sip:+442071234567@x>\r\n";
    for display in [
        "\"Bank of China 95588\"",
        "\"中国银行95588\"",
        "\"95588 中国银行\"",
        "\"Tel:13812345678\"",
        "\"客服 ９５５８８\"",
        // Written unquoted, as PBXs do (RFC 3261 wants quotes around UTF-8).
        "中国银行95588",
        "客服 ９５５８８",
    ] {
        let m = with_from(&format!("{display} <sip:+442071234567@10.9.9.9>"), pai);
        assert_eq!(
            rewritten_from(&p, &m),
            b"<sip:+442071234567@10.9.9.9>;tag=ft1".to_vec(),
            "{display}"
        );
    }
    for display in [
        "\"Room 1203\"",
        "\"John Smith\"",
        "\"UK desk +44 20 7123 4567\"",
        "张三",
        "伦敦 办公室",
    ] {
        let m = with_from(&format!("{display} <sip:+442071234567@10.9.9.9>"), pai);
        assert_eq!(passes(&p, &m, "intl").rule, None, "{display}");
    }
    let ent = |display: &str| {
        with_from(
            &format!("{display} <sip:+8613912340001@10.9.9.9>"),
            "P-Asserted-Identity: <sip:+8613912340001@x>\r\n",
        )
    };
    let d = judge(&p, &ent("\"Hotline 95588\""), "ent");
    assert_eq!(rejected(&d), Some((403, "enterprise-not-whitelisted")));
    assert!(d.presented_hits.contains(RuleId::EnterpriseNotWhitelisted));
    for display in ["\"Room 1203\"", "\"Sales 400-800-1234\"", "\"Front desk\""] {
        assert_eq!(passes(&p, &ent(display), "ent").rule, None, "{display}");
    }
}

#[test]
fn label_mvno_with_verstat() {
    let p = policy("");
    let m = invite(
        "+8617012345678",
        "P-Asserted-Identity: <sip:+8617012345678@x;user=phone>\r\n",
    );
    let d = passes(&p, &m, "ic");
    assert_eq!(d.rule, Some(RuleId::LabelMvno));
    let out = forwarded(&p, &m, &d);
    assert_eq!(
        out.first(HeaderName::Other)
            .map(|h| out.slice(h.name_span())),
        Some(&b"X-Sipfence-Label"[..])
    );
    assert!(String::from_utf8_lossy(out.buf()).contains("X-Sipfence-Label: mvno\r\n"));
    assert_eq!(
        out.value(HeaderName::PAssertedIdentity),
        Some(&b"<sip:+8617012345678;verstat=TN-Validation-Failed@x;user=phone>"[..])
    );
    let d = passes(&p, &invite("+8613812345678", ""), "ic");
    assert!(d.labels.is_empty());
    assert_eq!(d.verdict_str(), "allow");
}

/// An unbracketed sip URI (RFC 3325 9.1 allows addr-spec) gets its verstat too, in
/// angle brackets with the parameters written after it (a P-Asserted-Identity has no
/// header parameters, so they were the URI's): QA 104, the sip value of a pair went
/// without it. A peer's own verstat there goes as ever; a local number gets none.
#[test]
fn verstat_on_an_unbracketed_sip_identity() {
    let p = policy("");
    let cases: [(&str, &[u8]); 18] = [
        // ... and around a parameter's '=' (QA 193: these went without verstat).
        (
            "sip:+8617012345678@gw.example.com;user = phone",
            b"<sip:+8617012345678;verstat=TN-Validation-Failed@gw.example.com;user=phone>",
        ),
        (
            "sip:+8617012345678@gw.example.com;user=phone ;foo=bar",
            b"<sip:+8617012345678;verstat=TN-Validation-Failed@gw.example.com;user=phone;foo=bar>",
        ),
        // White space (a fold too) around the parameters' `;` stays out of the
        // brackets (QA 191 F1: `<sip:...@gw ;user=phone>` parsed nowhere).
        (
            "sip:+8617012345678@gw.example.com ;user=phone",
            b"<sip:+8617012345678;verstat=TN-Validation-Failed@gw.example.com;user=phone>",
        ),
        (
            "sip:+8617012345678@gw.example.com\t; user=phone",
            b"<sip:+8617012345678;verstat=TN-Validation-Failed@gw.example.com;user=phone>",
        ),
        (
            "tel:+8617012345678\r\n ;foo=bar",
            b"<tel:+8617012345678;verstat=TN-Validation-Failed;foo=bar>",
        ),
        (
            "sip:+8617012345678@gw.example.com ;user=phone , tel:+8617012345678 ;x=y",
            b"<sip:+8617012345678;verstat=TN-Validation-Failed@gw.example.com;user=phone> , <tel:+8617012345678;verstat=TN-Validation-Failed;x=y>",
        ),
        (
            "sip:+8617012345678@[2001:db8::1] ;user=phone",
            b"<sip:+8617012345678;verstat=TN-Validation-Failed@[2001:db8::1];user=phone>",
        ),
        // A quoted value, which no URI can hold: left as it is, without verstat.
        (
            "sip:+8617012345678@gw.example.com;user=phone;x=\"a b\"",
            b"sip:+8617012345678@gw.example.com;user=phone;x=\"a b\"",
        ),
        (
            "sip:+8617012345678@gw.example.com;user=phone",
            b"<sip:+8617012345678;verstat=TN-Validation-Failed@gw.example.com;user=phone>",
        ),
        (
            "sip:+8617012345678@gw.example.com",
            b"<sip:+8617012345678;verstat=TN-Validation-Failed@gw.example.com;user=phone>",
        ),
        (
            "sip:+8617012345678@gw.example.com;user=phone;verstat=TN-Validation-Passed",
            b"<sip:+8617012345678;verstat=TN-Validation-Failed@gw.example.com;user=phone>",
        ),
        (
            "sip:+8617012345678@gw.example.com;user=phone, tel:+8617012345678",
            b"<sip:+8617012345678;verstat=TN-Validation-Failed@gw.example.com;user=phone>, <tel:+8617012345678;verstat=TN-Validation-Failed>",
        ),
        (
            "sip:+8617012345678@gw.example.com;user=ip",
            b"sip:+8617012345678@gw.example.com;user=ip",
        ),
        // A tel URI too (QA 105): unbracketed, its parameters were the header's.
        (
            "tel:+8617012345678",
            b"<tel:+8617012345678;verstat=TN-Validation-Failed>",
        ),
        (
            "tel:+8617012345678;verstat=TN-Validation-Passed",
            b"<tel:+8617012345678;verstat=TN-Validation-Failed>",
        ),
        // Empty list elements go: a stack reading RFC 3325's grammar reads no value
        // past one (QA 105: Kamailio read none), and every value gets its verstat.
        (
            ", <sip:+8617012345678@gw.example.com;user=phone>",
            b"<sip:+8617012345678;verstat=TN-Validation-Failed@gw.example.com;user=phone>",
        ),
        (
            "<sip:+8617012345678@gw.example.com;user=phone>, , tel:+8617012345678,",
            b"<sip:+8617012345678;verstat=TN-Validation-Failed@gw.example.com;user=phone>, <tel:+8617012345678;verstat=TN-Validation-Failed>",
        ),
        (
            "sip:+8617012345678@gw.example.com;user=phone,",
            b"<sip:+8617012345678;verstat=TN-Validation-Failed@gw.example.com;user=phone>",
        ),
    ];
    for (pai, want) in cases {
        let m = invite("+8617012345678", &format!("P-Asserted-Identity: {pai}\r\n"));
        let d = passes(&p, &m, "ic");
        assert_eq!(d.rule, Some(RuleId::LabelMvno), "{pai}");
        let out = forwarded(&p, &m, &d);
        assert_eq!(
            out.value(HeaderName::PAssertedIdentity),
            Some(want),
            "{pai}: {}",
            String::from_utf8_lossy(out.value(HeaderName::PAssertedIdentity).unwrap_or(b""))
        );
        // What went on reads as the same caller, by RFC 3325's grammar too.
        assert_eq!(
            passes(&p, &out, "ic").identity.effective_number(),
            d.identity.effective_number(),
            "{pai}"
        );
        let h = out.first(HeaderName::PAssertedIdentity).unwrap();
        assert!(
            sipfence::sip::addr::parse_list(out.buf(), h.value(), |_| {}).is_ok(),
            "{pai}"
        );
    }
}

/// Only sipfence labels and gives a verification result: a peer's own label field and
/// `verstat` go, on labelled calls (ours alone is left) and on unlabelled ones.
#[test]
fn a_peers_label_and_verstat_are_not_passed_on() {
    let p = policy("[rules.label-international]\naction = \"label\"\nlabel = \"international\"");
    // (Escaped names are the same name, RFC 3261 19.1.4.)
    let planted = "x-sipfence-label: verified\r\nP-Asserted-Identity: <tel:+442071234567;verstat=TN-Validation-Passed>\r\nP-Asserted-Identity: <sip:+442071234567;%76erstat=TN-Validation-Passed;v%45rstat=x@x;user=phone>\r\n";
    let m = with_from(
        "<sip:+442071234567;VERSTAT=TN-Validation-Passed@x;user=phone>",
        planted,
    );
    let d = passes(&p, &m, "intl");
    assert!(d.labels.contains(RuleId::LabelInternational));
    let out = forwarded(&p, &m, &d);
    let text = String::from_utf8_lossy(out.buf()).to_string();
    assert!(
        text.contains("X-Sipfence-Label: international\r\n"),
        "{text}"
    );
    assert!(!text.contains("verified"), "{text}");
    // Ours, on both asserted values; none of the peer's.
    assert_eq!(
        text.matches("verstat=TN-Validation-Failed").count(),
        2,
        "{text}"
    );
    assert!(
        !text.contains("Passed") && !text.contains("rstat=x"),
        "{text}"
    );
    assert_eq!(
        out.value(HeaderName::PAssertedIdentity),
        Some(&b"<tel:+442071234567;verstat=TN-Validation-Failed>"[..])
    );
    assert!(
        out.value(HeaderName::From)
            .unwrap()
            .starts_with(b"<sip:+442071234567@x;user=phone>")
    );

    // An unlabelled call keeps no verdict of a peer's either, whatever the trunk; the
    // rest of the identity stays as written.
    for trunk in ["ic", "ent"] {
        let m = with_from(
            "<sip:+8613912340001@x>",
            "P-Asserted-Identity: <sip:+8613912340001;verstat=TN-Validation-Passed@x;user=phone>, tel:+8613912340001;verstat=TN-Validation-Passed\r\nX-Sipfence-Label: verified\r\n",
        );
        let d = passes(&p, &m, trunk);
        assert!(d.labels.is_empty(), "{trunk}: {d:?}");
        let out = forwarded(&p, &m, &d);
        assert_eq!(
            out.value(HeaderName::PAssertedIdentity),
            Some(&b"<sip:+8613912340001@x;user=phone>, tel:+8613912340001"[..]),
            "{trunk}"
        );
        assert!(out.first(HeaderName::Other).is_none(), "{trunk}");
    }

    // Nor in Remote-Party-ID, which legacy equipment reads the caller from (QA 43):
    // the field goes on, the peer's verdict does not.
    for (trunk, n) in [
        ("intl", "+442071234567"),
        ("ic", "+8613912340001"),
        ("ent", "+8613912340001"),
    ] {
        let m = with_from(
            &format!("<sip:{n}@x>"),
            &format!(
                "P-Asserted-Identity: <sip:{n}@x;user=phone>\r\nRemote-Party-ID: <sip:{n};verstat=TN-Validation-Passed@x;user=phone>;party=calling;screen=yes;verstat=TN-Validation-Passed\r\n"
            ),
        );
        let d = passes(&p, &m, trunk);
        let out = forwarded(&p, &m, &d);
        let text = String::from_utf8_lossy(out.buf()).to_string();
        assert!(!text.contains("Passed"), "{trunk}:\n{text}");
        assert_eq!(
            out.value(HeaderName::RemotePartyId),
            Some(format!("<sip:{n}@x;user=phone>;party=calling;screen=yes").as_bytes()),
            "{trunk}:\n{text}"
        );
    }

    // Both values of a sip + tel pair carry our verstat on a labelled call.
    let m = with_from(
        "<sip:+8617012345678@x>",
        "P-Asserted-Identity: <sip:+8617012345678@x;user=phone>\r\nP-Asserted-Identity: <tel:+8617012345678>\r\n",
    );
    let d = passes(&p, &m, "ic");
    assert_eq!(d.rule, Some(RuleId::LabelMvno));
    let out = forwarded(&p, &m, &d);
    let pai: Vec<_> = out
        .all(HeaderName::PAssertedIdentity)
        .map(|h| out.slice(h.value()).to_vec())
        .collect();
    assert_eq!(
        pai,
        [
            b"<sip:+8617012345678;verstat=TN-Validation-Failed@x;user=phone>".to_vec(),
            b"<tel:+8617012345678;verstat=TN-Validation-Failed>".to_vec()
        ]
    );

    // A header parameter may have white space and folds around its ';' and '=', and a
    // quoted value: the same parameter, removed whole, and the field stays well formed.
    for planted in [
        "; verstat=TN-Validation-Passed",
        ";\tverstat=TN-Validation-Passed",
        ";\r\n verstat=TN-Validation-Passed",
        ";verstat= TN-Validation-Passed",
        ";verstat =TN-Validation-Passed",
        " ; verstat = TN-Validation-Passed",
        ";verstat=\"TN-Validation-Passed\"",
        ";verstat=\"TN Validation Passed\"",
        ";verstat",
    ] {
        for (trunk, n) in [
            ("intl", "+442071234567"),
            ("ic", "+8613912340001"),
            ("ent", "+8613912340001"),
        ] {
            let m = with_from(
                &format!("<sip:{n}@x>{planted}"),
                &format!("P-Asserted-Identity: <sip:{n}@x;user=phone>{planted}\r\n"),
            );
            let d = passes(&p, &m, trunk);
            let out = forwarded(&p, &m, &d);
            let text = String::from_utf8_lossy(out.buf()).to_string();
            assert!(
                !text.contains("Passed") && !text.contains(";verstat\r"),
                "{trunk} {planted:?}:\n{text}"
            );
            let pai = out.value(HeaderName::PAssertedIdentity).unwrap_or_default();
            assert!(
                pai.ends_with(b";user=phone>"),
                "{trunk} {planted:?}:\n{text}"
            );
            let from = out.value(HeaderName::From).unwrap_or_default();
            assert!(from.ends_with(b">;tag=ft1"), "{trunk} {planted:?}:\n{text}");
        }
    }

    // verstat goes only where RFC 8224 puts it, after a telephone-subscriber: a global
    // number in a bracketed sip URI gets user=phone with it; a local number, or an
    // unbracketed URI whose parameters would be the header's, gets none.
    for (pai, want) in [
        (
            "<sip:+8617012345678@x>",
            "<sip:+8617012345678;verstat=TN-Validation-Failed@x;user=phone>",
        ),
        (
            "<sips:+8617012345678@x:5061;transport=tcp>",
            "<sips:+8617012345678;verstat=TN-Validation-Failed@x:5061;transport=tcp;user=phone>",
        ),
        // Unbracketed: bracketed to carry it ([`verstat_on_an_unbracketed_sip_identity`]).
        (
            "sip:+8617012345678@x",
            "<sip:+8617012345678;verstat=TN-Validation-Failed@x;user=phone>",
        ),
        ("<sip:17012345678@x>", "<sip:17012345678@x>"),
        // user=phone among the parameters, before the URI's headers (QA 45).
        (
            "<sip:+8617012345678@x;transport=udp?X-A=1>",
            "<sip:+8617012345678;verstat=TN-Validation-Failed@x;transport=udp;user=phone?X-A=1>",
        ),
        // A user that says it is no telephone number: no second `user`, no verstat.
        (
            "<sip:+8617012345678@x;user=ip>",
            "<sip:+8617012345678@x;user=ip>",
        ),
    ] {
        let m = with_from(
            "<sip:+8617012345678@x>",
            &format!("P-Asserted-Identity: {pai}\r\n"),
        );
        let d = passes(&p, &m, "ic");
        assert_eq!(d.rule, Some(RuleId::LabelMvno), "{pai}");
        let out = forwarded(&p, &m, &d);
        assert_eq!(
            String::from_utf8_lossy(out.value(HeaderName::PAssertedIdentity).unwrap_or_default()),
            want
        );
    }

    // In-dialog requests from a trunk carry no label of a peer's either (only this
    // filter labels a call; [`later_requests_of_a_dialog_name_no_other_caller`]); the
    // rest of the request stays as it came.
    let m = Message::parse(Bytes::from_static(b"BYE sip:x@10.0.0.100 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bK-b\r\nFrom: <sip:+8613912340001@x>;tag=a\r\nTo: <sip:4008001234@10.0.0.100>;tag=b\r\nCall-ID: c-bye\r\nCSeq: 2 BYE\r\nMax-Forwards: 70\r\nX-Sipfence-Label: mvno\r\nX-Other: kept\r\nContent-Length: 0\r\n\r\n")).unwrap();
    let d = judge(&p, &m, "ic");
    assert_eq!(d.kind, Kind::InDialog);
    let out = forwarded(&p, &m, &d);
    let text = String::from_utf8_lossy(out.buf());
    assert!(
        !text.contains("X-Sipfence-Label") && text.contains("X-Other: kept\r\n"),
        "{text}"
    );
}

#[test]
fn label_service_shape_and_international() {
    let p = policy("[rules.label-international]\naction = \"label\"");
    let d = passes(&p, &invite("+4495588", ""), "intl");
    assert!(d.labels.contains(RuleId::LabelServiceShape));
    assert!(d.labels.contains(RuleId::LabelInternational));
    let out = forwarded(&p, &invite("+4495588", ""), &d);
    assert!(
        String::from_utf8_lossy(out.buf())
            .contains("X-Sipfence-Label: service-shape,international\r\n")
    );
    let d = passes(&p, &invite("+442071234567", ""), "intl");
    assert!(!d.labels.contains(RuleId::LabelServiceShape));
}

/// A rule set to label without a label of its own says its name, never an empty value.
#[test]
fn a_labelling_rule_without_a_label_says_its_name() {
    let p =
        policy("[rules.blacklist]\naction = \"label\"\n[rules.numbering-plan]\naction = \"label\"");
    let m = invite("+8613800000001", "");
    let d = passes(&p, &m, "ic");
    let out = forwarded(&p, &m, &d);
    assert!(
        String::from_utf8_lossy(out.buf()).contains("X-Sipfence-Label: blacklist\r\n"),
        "{d:?}"
    );
    let m = invite("+8617012345", "");
    let d = passes(&p, &m, "ic");
    let out = forwarded(&p, &m, &d);
    let text = String::from_utf8_lossy(out.buf()).to_string();
    let label = text
        .lines()
        .find(|l| l.starts_with("X-Sipfence-Label:"))
        .unwrap_or_default();
    assert!(
        label.starts_with("X-Sipfence-Label: numbering-plan"),
        "{text}"
    );
    assert!(!label.contains(",,") && !label.ends_with(','), "{label}");
}

#[test]
fn monitor_only_and_trunk_override() {
    let p = policy("[rules.blacklist]\naction = \"monitor\"");
    let d = passes(&p, &invite("13800000001", ""), "ic");
    assert!(d.hits.contains(RuleId::Blacklist));
    assert_eq!(d.verdict_str(), "allow");
    // A per-trunk override beats the global setting.
    let p = Policy::from_str(
        &POLICY.replace("name = \"ic\"\nrole = \"interconnect\"\nsources = [\"10.0.0.2\"]", "name = \"ic\"\nrole = \"interconnect\"\nsources = [\"10.0.0.2\"]\n[trunk.rules.blacklist]\ncode = 603\nreason = \"Declined\""),
        "t.toml",
        Path::new("."),
    )
    .unwrap();
    blocks(&p, &invite("13800000001", ""), "ic", 603, "blacklist");
    blocks(&p, &invite("13800000001", ""), "intl", 608, "blacklist");
}

#[test]
fn rejection_response_is_complete() {
    let p = policy("");
    let m = invite("+8613812345678", "");
    let d = judge(&p, &m, "intl");
    let mut out = vec![];
    assert!(verdict::write_reject(&p, &m, &d, None, &mut out));
    let r = Message::parse(Bytes::from(out)).unwrap();
    assert_eq!(r.status(), Some(403));
    assert_eq!(r.call_id(), m.call_id());
    assert_eq!(r.cseq(), Some((1, &b"INVITE"[..])));
    assert_eq!(r.value(HeaderName::Via), m.value(HeaderName::Via));
    assert!(r.to_tag().is_some());
    assert_eq!(
        r.value(HeaderName::Reason),
        Some(&b"SIP;cause=403;text=\"Domestic calling number on international gateway\""[..])
    );
    // Without Reason: on the rules' refusals and the protocol checks' alike (QA 70);
    // a configured code says its own name on the status line.
    let text = POLICY.replace("[general]\n", "[general]\nreason_header = false\n")
        + "[rules.intl-domestic-caller]\ncode = 484\n";
    let p = Policy::from_str(&text, "test.toml", Path::new(".")).unwrap();
    let two_tags = with_from("<sip:+442071234567@10.9.9.9>;tag=x", "");
    for (m, first) in [
        (&m, "SIP/2.0 484 Address Incomplete\r\n"),
        (&two_tags, "SIP/2.0 400 Bad Request\r\n"),
    ] {
        let mut out = vec![];
        let ctx = Context {
            source: src("intl"),
            local: None,
            trunk: None,
            now_ms: MON_10H,
            wall_ms: MON_10H,
            rates: &NoCounting,
            behaviour: &sipfence::behaviour::NoTracking,
        };
        // The protocol checks, then the rules, as the proxy judges.
        let d = sipfence::decide::judge(&p, m, &ctx);
        assert!(verdict::write_reject(&p, m, &d, None, &mut out));
        let text = String::from_utf8_lossy(&out).into_owned();
        assert!(text.starts_with(first), "{text}");
        let r = Message::parse(Bytes::from(out)).unwrap();
        assert_eq!(r.value(HeaderName::Reason), None, "{text}");
    }
}

#[test]
fn in_dialog_and_responses_are_not_judged() {
    let p = policy("");
    let bye = Message::parse(Bytes::from_static(b"BYE sip:x@10.0.0.100 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK2\r\nFrom: <sip:anonymous@b>;tag=1\r\nTo: <sip:x@y>;tag=2\r\nCall-ID: b1\r\nCSeq: 2 BYE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n")).unwrap();
    let d = judge(&p, &bye, "intl");
    assert_eq!((d.kind, rejected(&d)), (Kind::InDialog, None));
    let resp = Message::parse(Bytes::from_static(b"SIP/2.0 180 Ringing\r\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK2\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:x@y>;tag=2\r\nCall-ID: b1\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n")).unwrap();
    assert_eq!(judge(&p, &resp, "nowhere").kind, Kind::Response);
}

/// An international peer that writes E.164 without the '+' (`bare_numbers =
/// "international"`): its foreign callers pass and go on with the '+' written in, its
/// domestic and forged ones are refused as on any international trunk, and short codes
/// stay short codes. The default trunk reads the same digits in the home plan.
#[test]
fn bare_numbers_from_an_international_peer() {
    let p = policy(
        "[[trunk]]\nname = \"intl-bare\"\nrole = \"international\"\nsources = [\"10.0.0.4\"]\nbare_numbers = \"international\"",
    );
    let pai = |n: &str| {
        format!(
            "P-Asserted-Identity: <sip:{n}@10.9.9.9;user=phone>\r\nP-Asserted-Identity: <tel:{n}>\r\n"
        )
    };
    // A London caller as such a peer writes it.
    let m = with_from(
        "\"442071234567\" <sip:442071234567@10.9.9.9;user=phone>",
        &pai("442071234567"),
    );
    let d = passes(&p, &m, "intl-bare");
    assert_eq!(
        d.caller.map(|n| n.to_string()).as_deref(),
        Some("+442071234567")
    );
    let out = forwarded(&p, &m, &d);
    let from = String::from_utf8_lossy(out.value(HeaderName::From).unwrap()).to_string();
    // The display name showing the URI's number as written gets its '+' too: a phone
    // shows it.
    assert!(
        from.starts_with("\"+442071234567\" <sip:+442071234567@10.9.9.9"),
        "{from}"
    );
    let pais: Vec<String> = out
        .all(HeaderName::PAssertedIdentity)
        .map(|h| String::from_utf8_lossy(h.value().of(out.buf())).to_string())
        .collect();
    assert_eq!(
        pais,
        [
            "<sip:+442071234567@10.9.9.9;user=phone>",
            "<tel:+442071234567>"
        ]
    );
    // The same digits on the default trunk: a national number the plan refuses.
    blocks(&p, &m, "intl", 403, "numbering-plan");
    // Every value of a P-Preferred-Identity the call keeps showing that number gets its
    // '+', not the first alone (QA 109: the tel value and a second field went on as a
    // domestic mobile's digits).
    let m = with_from(
        "<sip:13812345678@10.9.9.9;user=phone>",
        &format!(
            "{}P-Preferred-Identity: <sip:13812345678@10.9.9.9;user=phone>, <tel:13812345678>\r\nP-Preferred-Identity: <sip:13812345678@gw2>\r\n",
            pai("13812345678")
        ),
    );
    let d = passes(&p, &m, "intl-bare");
    let out = forwarded(&p, &m, &d);
    let ppis: Vec<String> = out
        .all(HeaderName::PPreferredIdentity)
        .map(|h| String::from_utf8_lossy(h.value().of(out.buf())).to_string())
        .collect();
    assert_eq!(
        ppis,
        [
            "<sip:+13812345678@10.9.9.9;user=phone>, <tel:+13812345678>",
            "<sip:+13812345678@gw2>"
        ]
    );
    // After a value written with its '+', and display names showing the number as
    // written (QA 110).
    for (ppi, want) in [
        (
            "<sip:+13812345678@gw>, <tel:13812345678>",
            "<sip:+13812345678@gw>, <tel:+13812345678>",
        ),
        (
            "\"13812345678\" <sip:13812345678@gw>, \"13812345678\" <tel:13812345678>",
            "\"+13812345678\" <sip:+13812345678@gw>, \"+13812345678\" <tel:+13812345678>",
        ),
        // A domain's context goes from every value, not the first alone (QA 110): a
        // global number has none.
        (
            "<tel:13812345678;phone-context=example.cn>, <tel:13812345678;phone-context=example.cn>",
            "<tel:+13812345678>, <tel:+13812345678>",
        ),
        // A value its context places is not the digits as written: left as it is.
        (
            "<tel:13812345678>, <tel:3812345678;phone-context=+1>",
            "<tel:+13812345678>, <tel:3812345678;phone-context=+1>",
        ),
    ] {
        let m = with_from(
            "<sip:13812345678@10.9.9.9;user=phone>",
            &format!("{}P-Preferred-Identity: {ppi}\r\n", pai("13812345678")),
        );
        let d = passes(&p, &m, "intl-bare");
        let out = forwarded(&p, &m, &d);
        assert_eq!(
            String::from_utf8_lossy(out.value(HeaderName::PPreferredIdentity).unwrap()),
            want,
            "{ppi}"
        );
        // The home-plan trunk leaves them as they are.
        let d = judge(&p, &m, "intl");
        if !d.is_reject() {
            let out = forwarded(&p, &m, &d);
            assert_eq!(
                out.value(HeaderName::PPreferredIdentity),
                Some(ppi.as_bytes())
            );
        }
    }
    // A labelled call's asserted pair gets its '+' and the verstat on both values, the
    // sip one with user=phone (QA 43: the sip value lost its verstat).
    let m = with_from(
        "<sip:85295588@10.9.9.9>",
        "P-Asserted-Identity: <sip:85295588@10.9.9.9>\r\nP-Asserted-Identity: <tel:85295588>\r\n",
    );
    let d = passes(&p, &m, "intl-bare");
    assert!(!d.labels.is_empty(), "{d:?}");
    let out = forwarded(&p, &m, &d);
    let pais: Vec<String> = out
        .all(HeaderName::PAssertedIdentity)
        .map(|h| String::from_utf8_lossy(h.value().of(out.buf())).to_string())
        .collect();
    assert_eq!(
        pais,
        [
            "<sip:+85295588;verstat=TN-Validation-Failed@10.9.9.9;user=phone>",
            "<tel:+85295588;verstat=TN-Validation-Failed>"
        ]
    );
    // Digits that read as a domestic mobile in the home plan are a foreign number here,
    // and go on as one, so that the core cannot show them as a domestic mobile.
    let m = with_from("<sip:13812345678@10.9.9.9;user=phone>", "");
    let d = passes(&p, &m, "intl-bare");
    assert_eq!(
        d.caller.map(|n| n.to_string()).as_deref(),
        Some("+13812345678")
    );
    let out = forwarded(&p, &m, &d);
    assert!(
        out.value(HeaderName::From)
            .unwrap()
            .starts_with(b"<sip:+13812345678@")
    );
    blocks(&p, &m, "intl", 403, "intl-domestic-caller");
    // So in a domain's context, which places nothing: written global, the context gone
    // (QA 90 N2: it went on as written, a domestic mobile's digits for the core).
    for (from, out_from) in [
        (
            "<tel:13812345678;phone-context=ims.mnc000.mcc460.3gppnetwork.org>",
            "<tel:+13812345678>;tag=ft1",
        ),
        (
            "<sip:13812345678;phone-context=example.cn@10.9.9.9;user=phone>",
            "<sip:+13812345678@10.9.9.9;user=phone>;tag=ft1",
        ),
    ] {
        let m = with_from(from, "");
        let d = passes(&p, &m, "intl-bare");
        assert_eq!(
            d.caller.map(|n| n.to_string()).as_deref(),
            Some("+13812345678"),
            "{from}"
        );
        let out = forwarded(&p, &m, &d);
        assert_eq!(
            String::from_utf8_lossy(out.value(HeaderName::From).unwrap()),
            out_from
        );
        blocks(&p, &m, "intl", 403, "intl-domestic-caller");
    }
    // A display name is read as a person reads it, in the home plan: "13812345678"
    // beside a London URI shows a domestic mobile, and the generic-number deletion
    // takes it off; unquoted and equal to the URI's number, it gets the '+'.
    let m = with_from(
        "\"13812345678\" <sip:442071234567@10.9.9.9;user=phone>",
        &pai("442071234567"),
    );
    let d = passes(&p, &m, "intl-bare");
    assert!(d.rewrite_from, "{d:?}");
    let out = forwarded(&p, &m, &d);
    assert_eq!(
        out.value(HeaderName::From).unwrap(),
        b"<sip:+442071234567@10.9.9.9;user=phone>;tag=ft1"
    );
    let m = with_from("13812345678 <sip:13812345678@10.9.9.9;user=phone>", "");
    let d = passes(&p, &m, "intl-bare");
    assert!(!d.rewrite_from, "{d:?}");
    let out = forwarded(&p, &m, &d);
    assert_eq!(
        out.value(HeaderName::From).unwrap(),
        b"+13812345678 <sip:+13812345678@10.9.9.9;user=phone>;tag=ft1"
    );
    // Country code 86 written without '+' is a domestic caller from abroad; prefixed
    // forms read as they say; short codes are the forged service numbers they look like.
    for (from, code, rule) in [
        ("8613812345678", 403, "intl-domestic-caller"),
        ("008613812345678", 403, "intl-domestic-caller"),
        ("013812345678", 403, "intl-domestic-caller"),
        ("110", 403, "intl-forged-service"),
        ("95588", 403, "intl-forged-service"),
        ("12345", 403, "intl-forged-service"),
        ("8612345", 403, "intl-forged-service"),
    ] {
        let m = with_from(&format!("<sip:{from}@10.9.9.9;user=phone>"), "");
        blocks(&p, &m, "intl-bare", code, rule);
    }
    // A '+' number needs no '+' written in; a local number in its context goes on as
    // the global number (as on every international trunk).
    for (from, e164, out_from) in [
        (
            "<sip:+14155550123@10.9.9.9;user=phone>",
            "+14155550123",
            "<sip:+14155550123@10.9.9.9;user=phone>;tag=ft1",
        ),
        (
            "<tel:5550123;phone-context=+1415>",
            "+14155550123",
            "<tel:+14155550123>;tag=ft1",
        ),
    ] {
        let m = with_from(from, "");
        let d = passes(&p, &m, "intl-bare");
        assert_eq!(d.caller.map(|n| n.to_string()).as_deref(), Some(e164));
        let out = forwarded(&p, &m, &d);
        assert_eq!(
            out.value(HeaderName::From),
            Some(out_from.as_bytes()),
            "{from}"
        );
    }
    // The generic-number rewrite puts the asserted number, '+' and all, in From.
    let m = with_from(
        "<sip:8613812345678@10.9.9.9;user=phone>",
        &pai("442071234567"),
    );
    let d = passes(&p, &m, "intl-bare");
    assert!(d.rewrite_from, "{d:?}");
    let out = forwarded(&p, &m, &d);
    assert!(
        out.value(HeaderName::From)
            .unwrap()
            .starts_with(b"<sip:+442071234567@"),
        "{:?}",
        String::from_utf8_lossy(out.value(HeaderName::From).unwrap())
    );
    assert_eq!(
        out.value(HeaderName::PAssertedIdentity).unwrap(),
        b"<sip:+442071234567@10.9.9.9;user=phone>"
    );
    // A misspelt setting is refused with its line.
    let e = Policy::from_str(
        &format!(
            "{POLICY}\n[[trunk]]\nname = \"x\"\nrole = \"international\"\nbare_numbers = \"e164\""
        ),
        "bad.toml",
        Path::new("."),
    )
    .unwrap_err()
    .to_string();
    let line = format!("{POLICY}\n").matches('\n').count() + 4;
    assert!(
        e.contains(&format!("bad.toml:{line}:")) && e.contains("national"),
        "{e}"
    );
}

/// A later message of call `call-<user>` (as `invite` names its calls): a response to
/// its INVITE, or a CANCEL or BYE.
fn later(user: &str, what: &str) -> Message {
    let (start, cseq) = match what {
        "CANCEL" => (
            "CANCEL sip:4008001234@10.0.0.100 SIP/2.0".to_string(),
            "1 CANCEL",
        ),
        "BYE" => ("BYE sip:4008001234@10.0.0.100 SIP/2.0".to_string(), "2 BYE"),
        "BYE-200" => ("SIP/2.0 200 OK".to_string(), "2 BYE"),
        "BYE-481" => ("SIP/2.0 481 No Such Call".to_string(), "2 BYE"),
        code => (format!("SIP/2.0 {code} Whatever"), "1 INVITE"),
    };
    let s = format!(
        "{start}\r\nVia: SIP/2.0/UDP 10.9.9.9:5060;branch=z9hG4bK-{user}\r\nFrom: <sip:{user}@10.9.9.9>;tag=ft1\r\nTo: <sip:4008001234@10.0.0.100>;tag=tt1\r\nCall-ID: call-{user}\r\nCSeq: {cseq}\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    );
    Message::parse(Bytes::from(s)).unwrap()
}

/// An international trunk of two concurrent calls, whose dialogs pass through sipfence.
const CAPPED: &str = "[[trunk]]\nname = \"intl-cap\"\nrole = \"international\"\nsources = [\"10.0.0.5\"]\nrecord_route = true\nmax_concurrent_calls = 2\n";

/// Calls that share a Call-ID but not the caller's From tag are different calls, as
/// they are different dialogs to the core (QA 47: ten answered calls with one Call-ID
/// held one place of six).
#[test]
fn one_call_id_with_new_from_tags_takes_a_place_each() {
    let p = policy(CAPPED);
    let rates = LocalRateCounter::new(1000);
    let calls = sipfence::behaviour::local::LocalTracker::new(64, 64);
    let ctx = Context {
        source: src("intl-cap"),
        local: None,
        trunk: None,
        now_ms: MON_10H,
        wall_ms: MON_10H,
        rates: &rates,
        behaviour: &calls,
    };
    let call = |tag: &str, n: u32| {
        let s = format!(
            "INVITE sip:4008001234@10.0.0.100 SIP/2.0\r\nVia: SIP/2.0/UDP 10.9.9.9:5060;branch=z9hG4bK-{tag}\r\nFrom: <sip:+44207123456{n}@10.9.9.9>;tag={tag}\r\nTo: <sip:4008001234@10.0.0.100>\r\nCall-ID: one-call-id\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        );
        Message::parse(Bytes::from(s)).unwrap()
    };
    assert_eq!(rejected(&decide(&p, &call("a", 1), &ctx)), None);
    assert_eq!(rejected(&decide(&p, &call("b", 2), &ctx)), None);
    let d = decide(&p, &call("c", 3), &ctx);
    assert_eq!(rejected(&d), Some((503, "concurrent-calls")), "{d:?}");
    // The same From tag again is the same call (a retransmission).
    assert_eq!(rejected(&decide(&p, &call("a", 1), &ctx)), None);
    assert_eq!(calls.calls_up(p.trunks[3].id, MON_10H), 2);
    // The same Call-ID and From tag with a new CSeq while call a is up: a new
    // transaction, a second dialog to a permissive core, a place of its own (QA 48).
    let again = |cseq: u32| {
        let text = String::from_utf8(call("a", 1).bytes().to_vec())
            .unwrap()
            .replace("CSeq: 1 ", &format!("CSeq: {cseq} "))
            .replace("branch=z9hG4bK-a", &format!("branch=z9hG4bK-a{cseq}"));
        Message::parse(Bytes::from(text)).unwrap()
    };
    let d = decide(&p, &again(2), &ctx);
    assert_eq!(rejected(&d), Some((503, "concurrent-calls")), "{d:?}");
    // The core's word on the calls: From and To as the caller sent them, or swapped in
    // the core's own request.
    let core = |start: &str, from: &str, to: &str, cseq: &str| {
        let s = format!(
            "{start}\r\nVia: SIP/2.0/UDP 10.9.9.9:5060;branch=z9hG4bK-x\r\nFrom: <sip:x@10.9.9.9>;tag={from}\r\nTo: <sip:4008001234@10.0.0.100>;tag={to}\r\nCall-ID: one-call-id\r\nCSeq: {cseq}\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        );
        let m = Message::parse(Bytes::from(s)).unwrap();
        sipfence::behaviour::observe(&m, true, &calls, MON_10H);
    };
    // Call b is busy: a's second INVITE (CSeq 3) takes the place.
    core("SIP/2.0 486 Busy", "b", "tb", "1 INVITE");
    assert_eq!(rejected(&decide(&p, &again(3), &ctx)), None);
    assert_eq!(calls.calls_up(p.trunks[3].id, MON_10H), 2);
    // Both answered, two dialogs; the core's BYE of the first ends that one alone.
    core("SIP/2.0 200 OK", "a", "t1", "1 INVITE");
    core("SIP/2.0 200 OK", "a", "t3", "3 INVITE");
    core("BYE sip:x@10.9.9.9 SIP/2.0", "t1", "a", "7 BYE");
    assert_eq!(calls.calls_up(p.trunks[3].id, MON_10H), 1);
    let d = decide(&p, &again(4), &ctx);
    assert_eq!(rejected(&d), None, "{d:?}");
    assert_eq!(
        rejected(&decide(&p, &again(5), &ctx)),
        Some((503, "concurrent-calls"))
    );
}

/// `max_concurrent_calls`: a full trunk answers 503 until one of its calls ends (a final
/// failure, the 487 after a CANCEL, a BYE), and a refused INVITE sent again stays
/// refused.
#[test]
fn concurrent_calls_per_trunk() {
    let p = policy(CAPPED);
    let rates = LocalRateCounter::new(1000);
    let calls = sipfence::behaviour::local::LocalTracker::new(64, 64);
    let at = |m: &Message, now: u64| {
        decide(
            &p,
            m,
            &Context {
                source: src("intl-cap"),
                local: None,
                trunk: None,
                now_ms: MON_10H + now,
                wall_ms: MON_10H + now,
                rates: &rates,
                behaviour: &calls,
            },
        )
    };
    // Responses come from the core's side, requests from the caller's.
    let seen = |m: &Message, now: u64| {
        sipfence::behaviour::observe(m, !m.is_request(), &calls, MON_10H + now);
    };
    let a = invite("+442071234561", "");
    let b = invite("+442071234562", "");
    let c = invite("+442071234563", "");
    assert_eq!(rejected(&at(&a, 0)), None);
    assert_eq!(rejected(&at(&b, 10)), None);
    // A retransmission of a call that is up is the same call.
    assert_eq!(rejected(&at(&a, 500)), None);
    let d = at(&c, 20);
    assert_eq!(rejected(&d), Some((503, "concurrent-calls")), "{d:?}");
    let mut out = vec![];
    assert!(verdict::write_reject(&p, &c, &d, None, &mut out));
    assert!(
        out.starts_with(b"SIP/2.0 503 "),
        "{}",
        String::from_utf8_lossy(&out)
    );
    // Busy ends call a; the refused INVITE sent again stays refused; a new call passes.
    seen(&later("+442071234561", "486"), 30);
    assert_eq!(rejected(&at(&c, 40)), Some((503, "concurrent-calls")));
    let e = invite("+442071234564", "");
    assert_eq!(rejected(&at(&e, 50)), None);
    // A CANCEL alone does not end call e (the callee may have answered); its 487 does.
    seen(&later("+442071234564", "CANCEL"), 60);
    let f = invite("+442071234565", "");
    assert_eq!(rejected(&at(&f, 70)), Some((503, "concurrent-calls")));
    seen(&later("+442071234564", "487"), 80);
    let g = invite("+442071234566", "");
    assert_eq!(rejected(&at(&g, 90)), None);
    // Answered calls hold their place until the BYE.
    seen(&later("+442071234562", "200"), 100);
    let h = invite("+442071234567", "");
    assert_eq!(rejected(&at(&h, 110)), Some((503, "concurrent-calls")));
    // The caller's BYE ends the call once the core takes it (QA 47: a BYE the core
    // answered 481 freed the place too).
    seen(&later("+442071234562", "BYE"), 120);
    seen(&later("+442071234562", "BYE-481"), 121);
    assert_eq!(rejected(&at(&h, 122)), Some((503, "concurrent-calls")));
    seen(&later("+442071234562", "BYE-200"), 123);
    let i = invite("+442071234568", "");
    assert_eq!(rejected(&at(&i, 130)), None);
    // A caller's own final response (relayed, with sipfence's Via on top) ends
    // nothing: only the core's side says how a call went.
    sipfence::behaviour::observe(&later("+442071234568", "486"), false, &calls, MON_10H + 131);
    let j = invite("+442071234570", "");
    assert_eq!(rejected(&at(&j, 132)), Some((503, "concurrent-calls")));
    // Whose word counts: any address no trunk claims (a core that answers from a
    // floating or second address, QA 48); not a trunk's own address.
    assert!(p.speaks_for_core(&"198.51.100.77:5060".parse().unwrap()));
    assert!(!p.speaks_for_core(&src("intl-cap")));
    // A call refused by another rule takes no place; other trunks have no limit.
    assert_eq!(
        rejected(&at(&invite("+8613812345678", ""), 140)).map(|r| r.1),
        Some("intl-domestic-caller")
    );
    assert_eq!(calls.calls_up(p.trunks[3].id, MON_10H), 2);
    // A reload that moves the trunk first: its calls up still count on it.
    let cap = CAPPED;
    let moved = Policy::from_str(
        &POLICY.replacen(
            "[[trunk]]\nname = \"intl\"",
            &format!("{cap}\n[[trunk]]\nname = \"intl\""),
            1,
        ),
        "moved.toml",
        Path::new("."),
    )
    .unwrap();
    assert_eq!(moved.trunks[0].name, "intl-cap");
    let d = decide(
        &moved,
        &invite("+442071234569", ""),
        &Context {
            source: src("intl-cap"),
            local: None,
            trunk: None,
            now_ms: MON_10H + 150,
            wall_ms: MON_10H + 150,
            rates: &rates,
            behaviour: &calls,
        },
    );
    assert_eq!(rejected(&d), Some((503, "concurrent-calls")), "{d:?}");
    // Monitor: the call over the limit goes on, counted as a hit.
    let p = policy(
        "[[trunk]]\nname = \"intl-cap\"\nrole = \"international\"\nsources = [\"10.0.0.5\"]\nrecord_route = true\nmax_concurrent_calls = 1\n[trunk.rules.concurrent-calls]\naction = \"monitor\"",
    );
    let calls = sipfence::behaviour::local::LocalTracker::new(64, 64);
    let ctx = Context {
        source: src("intl-cap"),
        local: None,
        trunk: None,
        now_ms: MON_10H,
        wall_ms: MON_10H,
        rates: &NoCounting,
        behaviour: &calls,
    };
    assert!(decide(&p, &a, &ctx).hits.is_empty());
    let d = decide(&p, &b, &ctx);
    assert_eq!(rejected(&d), None);
    assert!(d.hits.contains(RuleId::ConcurrentCalls), "{d:?}");
    // The limit needs Record-Route (else the BYE is never seen), and must let a call in.
    for (extra, why) in [
        ("max_concurrent_calls = 30", "needs record_route = true"),
        (
            "register_path = true",
            "register_path needs record_route = true",
        ),
        (
            "record_route = true\nmax_concurrent_calls = 0",
            "would refuse every call",
        ),
    ] {
        let e = Policy::from_str(
            &format!("{POLICY}\n[[trunk]]\nname = \"x\"\nrole = \"interconnect\"\n{extra}"),
            "bad.toml",
            Path::new("."),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("bad.toml") && e.contains(why), "{e}");
    }
}

#[test]
fn config_errors_name_file_and_line() {
    let bad = |extra: &str| {
        Policy::from_str(&format!("{POLICY}\n{extra}"), "bad.toml", Path::new("."))
            .unwrap_err()
            .to_string()
    };
    // Line number of the first line of `extra` in the combined text.
    let lines = format!("{POLICY}\n").matches('\n').count();
    let e = bad("[rules.no-such-rule]\naction = \"reject\"");
    assert!(e.starts_with(&format!("bad.toml:{}:", lines + 1)), "{e}");
    let e = bad("[rules.blacklist]\ncode = 200");
    assert!(
        e.starts_with(&format!("bad.toml:{}:", lines + 2)) && e.contains("not a 4xx-6xx"),
        "{e}"
    );
    // A trunk says who may use it: no sources (left out or empty) is refused, an open
    // trunk is written as one, and `check` names it.
    // (At its name when it has no sources line, else at that line.)
    for (sources, at) in [("", 2), ("sources = []\n", 4)] {
        let e = bad(&format!(
            "[[trunk]]\nname = \"open\"\nrole = \"enterprise\"\n{sources}[trunk.whitelist]\nentries = [\"+864008001234\"]"
        ));
        assert!(
            e.starts_with(&format!("bad.toml:{}:", lines + at))
                && e.contains("trunk 'open' has no sources"),
            "{e}"
        );
    }
    // Without sources, [trunk.auth] alone tells the trunk's callers from anyone: its
    // rule must refuse (QA 70: `monitor`, the way to roll authentication out, let every
    // address in). With sources, it may watch while authentication is tried.
    let authed = |sources: &str, rule: &str| {
        format!(
            "[[trunk]]\nname = \"pbx\"\nrole = \"enterprise\"\n{sources}[trunk.whitelist]\nentries = [\"+864008001234\"]\n[trunk.auth]\nrealm = \"x\"\nusers = [\"pbx1:s3cret\"]\n{rule}"
        )
    };
    for action in ["monitor", "off", "label"] {
        let on_trunk = format!("[trunk.rules.trunk-auth]\naction = \"{action}\"\n");
        let everywhere = format!("[rules.trunk-auth]\naction = \"{action}\"\n");
        for e in [
            bad(&authed("", &on_trunk)),
            bad(&(everywhere.clone() + &authed("", ""))),
        ] {
            assert!(
                e.contains("trunk 'pbx' has no sources: [trunk.auth] alone")
                    && e.contains(&format!("(it is {action}:")),
                "{e}"
            );
        }
        policy(&authed("sources = [\"10.9.0.1\"]\n", &on_trunk));
    }
    policy(&authed("", ""));
    // The challenge is a 407, a failure 403: a code would make every call fail (QA 70),
    // and so would a drop, which drops the challenge (QA 72); a 401 or 407 on another
    // rule asks for credentials nothing lets the caller give.
    let e = bad("[rules.trunk-auth]\ncode = 401");
    assert!(e.contains("rule trunk-auth: code cannot be set"), "{e}");
    let e = bad(&authed(
        "sources = [\"10.9.0.1\"]\n",
        "[trunk.rules.trunk-auth]\naction = \"drop\"\n",
    ));
    assert!(
        e.contains("action drop would never send the challenge"),
        "{e}"
    );
    for code in [401, 407] {
        let e = bad(&format!("[rules.blacklist]\ncode = {code}"));
        assert!(
            e.contains(&format!("rule blacklist: code {code} asks for credentials")),
            "{e}"
        );
    }
    policy("[rules.blacklist]\ncode = 603");
    // A stranger's request has nowhere to go: it is refused or dropped, never "let
    // through" to be dropped unanswered while the metrics said allow (QA 70).
    for action in ["monitor", "off", "label"] {
        let e = bad(&format!("[rules.unknown-source]\naction = \"{action}\""));
        assert!(
            e.contains("rule unknown-source: action must be reject or drop"),
            "{e}"
        );
    }
    policy("[rules.unknown-source]\naction = \"drop\"");
    let p = policy(
        "[[trunk]]\nname = \"open\"\nrole = \"interconnect\"\nsources = [\"0.0.0.0/0\", \"::/0\"]",
    );
    assert!(
        sipfence::policy::lint::warnings(&p)
            .iter()
            .any(|w| w.starts_with("trunk open takes calls from every address")),
        "{:?}",
        sipfence::policy::lint::warnings(&p)
    );
    // Halves of the address space are as open.
    let p = policy(
        "[[trunk]]\nname = \"open\"\nrole = \"interconnect\"\nsources = [\"0.0.0.0/1\", \"128.0.0.0/1\"]",
    );
    assert!(
        sipfence::policy::lint::warnings(&p)
            .iter()
            .any(|w| w.starts_with("trunk open takes calls from every address, or most")),
        "{:?}",
        sipfence::policy::lint::warnings(&p)
    );
    // QA 139: an IPv6 source whose last group reads like a SIP port is the address it
    // spells, and said so; one in brackets with its port, or another last group, is not.
    let said = |sources: &str| {
        let p = policy(&format!(
            "[[trunk]]\nname = \"v6\"\nrole = \"interconnect\"\nsources = [{sources}]"
        ));
        sipfence::policy::lint::warnings(&p)
            .into_iter()
            .filter(|w| w.contains("is read as one IPv6 address"))
            .collect::<Vec<_>>()
    };
    let w = said("\"fd00::100:5060\"");
    assert!(
        w.len() == 1 && w[0].contains("fd00::100:5060") && w[0].contains("[ADDRESS]:5060"),
        "{w:?}"
    );
    assert!(said("\"[fd00::100]:5060\", \"fd00::100:1\", \"fd00::5060/64\"").is_empty());
    // A network with a port.
    let p = policy(
        "[[trunk]]\nname = \"np\"\nrole = \"interconnect\"\nsources = [\"10.1.0.0/16:5061\", \"[2001:db8::/32]:5062\"]",
    );
    let t = p.trunks.last().unwrap();
    let shown: Vec<String> = t.sources.iter().map(|s| s.to_string()).collect();
    assert_eq!(shown, ["10.1.0.0/16:5061", "[2001:db8::/32]:5062"]);
    assert!(t.sources[0].matches(&"10.1.9.9:5061".parse().unwrap()));
    assert!(!t.sources[0].matches(&"10.1.9.9:5060".parse().unwrap()));
    assert!(t.sources[1].matches(&"[2001:db8::7]:5062".parse().unwrap()));
    // An IPv4 address or network written IPv4-mapped is that IPv4 one, whichever way
    // the peer's address reaches the policy (plain, or mapped by a dual-stack socket);
    // it had matched only a mapped peer.
    let p = policy(
        "[[trunk]]\nname = \"mapped\"\nrole = \"interconnect\"\nsources = [\"::ffff:10.1.2.3\", \"[::ffff:10.2.0.0/112]:5061\"]",
    );
    let t = p.trunks.last().unwrap();
    let shown: Vec<String> = t.sources.iter().map(|s| s.to_string()).collect();
    assert_eq!(shown, ["10.1.2.3/32", "10.2.0.0/16:5061"]);
    for (peer, taken) in [
        ("10.1.2.3:5060", true),
        ("[::ffff:10.1.2.3]:5060", true),
        ("10.1.2.4:5060", false),
        ("10.2.9.9:5061", true),
        ("[::ffff:10.2.9.9]:5061", true),
        ("10.2.9.9:5060", false),
        ("10.3.0.1:5061", false),
    ] {
        let peer: std::net::SocketAddr = peer.parse().unwrap();
        assert_eq!(t.sources.iter().any(|s| s.matches(&peer)), taken, "{peer}");
    }
    // An IPv6 network that contains the mapped range (`::/64`) holds no IPv4 peer, as
    // a dual-stack socket reports it or otherwise: it had taken in every IPv4 caller.
    let p = policy(
        "[[trunk]]\nname = \"v6\"\nrole = \"interconnect\"\nsources = [\"::/64\", \"::ffff:0:0/95\"]",
    );
    let t = p.trunks.last().unwrap();
    for peer in ["[::ffff:127.0.0.2]:5060", "127.0.0.2:5060"] {
        let peer: std::net::SocketAddr = peer.parse().unwrap();
        assert!(!t.sources.iter().any(|s| s.matches(&peer)), "{peer}");
        assert_ne!(
            p.match_trunk(&peer, None)
                .map(|i| p.trunks[i].name.as_str()),
            Some("v6")
        );
    }
    assert!(t.sources[0].matches(&"[::1]:5060".parse().unwrap()));
    // A next hop or listen address written so is the IPv4 one as well.
    let p = policy(
        "[[trunk]]\nname = \"mapped\"\nrole = \"interconnect\"\nsources = [\"10.1.2.3\"]\nlisten = [\"udp:[::ffff:127.0.0.1]:5070\"]\nnext_hop = \"udp:[::ffff:10.9.9.9]:5060\"",
    );
    let t = p.trunks.last().unwrap();
    assert_eq!(t.listen[0].to_string(), "udp:127.0.0.1:5070");
    assert_eq!(t.next_hop.unwrap().to_string(), "udp:10.9.9.9:5060");
    assert!(p.is_next_hop(&"10.9.9.9:5060".parse().unwrap()));
    assert!(p.is_next_hop(&"[::ffff:10.9.9.9]:5060".parse().unwrap()));
    // Host bits set in a network admit the whole network: check says so.
    let p = policy(
        "[[trunk]]\nname = \"hb\"\nrole = \"interconnect\"\nsources = [\"10.1.2.3/24\", \"10.9.9.0/24\", \"10.8.8.8\", \"2001:db8::1/64\"]",
    );
    let w = sipfence::policy::lint::warnings(&p);
    for want in [
        "trunk hb source 10.1.2.3/24 has host bits set: it admits all of 10.1.2.0/24 (write 10.1.2.3 for that address alone)",
        "trunk hb source 2001:db8::1/64 has host bits set: it admits all of 2001:db8::/64 (write 2001:db8::1 for that address alone)",
    ] {
        assert!(w.iter().any(|l| l == want), "{want}\nnot in {w:#?}");
    }
    assert_eq!(
        w.iter().filter(|l| l.contains("host bits")).count(),
        2,
        "{w:#?}"
    );
    assert!(p.trunks.last().unwrap().sources[0].matches(&"10.1.2.200:5060".parse().unwrap()));
    for wrong in [
        "10.1.0.0/16:0",
        "10.1.0.0/16:x",
        "[2001:db8::/32]x",
        "10.1.0.0/33",
    ] {
        let e = bad(&format!(
            "[[trunk]]\nname = \"w\"\nrole = \"interconnect\"\nsources = [\"{wrong}\"]"
        ));
        assert!(e.contains(wrong), "{wrong}: {e}");
    }
    let e = bad("[[trunk]]\nname = \"x\"\nrole = \"international\"\nsources = [\"10.0.0.300\"]");
    assert!(
        e.contains(&format!("bad.toml:{}:", lines + 4)) && e.contains("10.0.0.300"),
        "{e}"
    );
    let e = bad(
        "[[trunk]]\nname = \"y\"\nrole = \"enterprise\"\nhours = \"9-17\"\n[trunk.whitelist]\nentries=[]",
    );
    assert!(e.contains(&format!("bad.toml:{}:", lines + 4)), "{e}");
    // A window starts at 00:00, not 24:00 (QA 52: it loaded and was shown as written).
    let e = bad(
        "[[trunk]]\nname = \"y\"\nrole = \"enterprise\"\nhours = \"24:00-08:00\"\n[trunk.whitelist]\nentries=[]",
    );
    assert!(
        e.contains(&format!("bad.toml:{}:", lines + 4)) && e.contains("starts at 00:00"),
        "{e}"
    );
    // Each reason says what is wrong (QA 53: 09:00-24:01 was said to need two
    // different times).
    for (hours, why) in [
        ("09:00-24:01", "'24:01' is no time of day"),
        ("25:00-08:00", "'25:00' is no time of day"),
        ("08:00-08:00", "starts and ends at the same time"),
        ("0800-1800", "'0800' is no time of day"),
        ("-1:00-09:00", "no start time"),
        ("09:00-10:00,12:00-13:00", "one window only"),
        ("09:00-10:00;12:00-13:00", "one window only"),
        ("09:00-10:00 12:00-13:00", "one window only"),
        ("+1:00-09:00", "'+1:00' is no time of day"),
        ("09:00-09:+5", "'09:+5' is no time of day"),
    ] {
        let e = bad(&format!(
            "[[trunk]]\nname = \"y\"\nrole = \"enterprise\"\nhours = \"{hours}\"\n[trunk.whitelist]\nentries=[]"
        ));
        assert!(
            e.contains(&format!("bad.toml:{}:", lines + 4)) && e.contains(why),
            "{hours}: {e}"
        );
    }
    let e = bad("[lists.own_segments]\nentries = [\"alice\"]");
    assert!(
        e.starts_with(&format!("bad.toml:{}:", lines + 2)) && e.contains("alice"),
        "{e}"
    );
    // Reasons found once the file parsed name the line they are about too: the
    // second trunk of a name, a key of a trunk, a section's key, a list's entries.
    let e = bad("[[trunk]]\nname = \"intl\"\nrole = \"international\"");
    assert!(
        e.starts_with(&format!("bad.toml:{}:", lines + 1)) && e.contains("defined twice"),
        "{e}"
    );
    let e = bad(
        "[[trunk]]\nname = \"z\"\nrole = \"enterprise\"\nsources = [\"10.0.0.9\"]\nmax_calls_per_minute = 0\n[trunk.whitelist]\nentries = [\"13912345678\"]",
    );
    assert!(
        e.starts_with(&format!("bad.toml:{}:", lines + 5)) && e.contains("= 0 would refuse"),
        "{e}"
    );
    let e = bad(
        "[[trunk]]\nname = \"z\"\nrole = \"enterprise\"\nsources = [\"10.0.0.9\"]\n[trunk.whitelist]\nentries = [\"139\", \"bob\"]",
    );
    assert!(
        e.starts_with(&format!("bad.toml:{}:", lines + 6)) && e.contains("bob"),
        "{e}"
    );
    // [proxy] zeros that would break the proxy rather than turn something off.
    for key in [
        "overload_ms",
        "tcp_idle_secs",
        "max_tcp_connections",
        "rate_keys",
    ] {
        let e = Policy::from_str(
            &format!("[general]\n\n[proxy]\nworkers = 1\n{key} = 0\n"),
            "bad.toml",
            Path::new("."),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.starts_with("bad.toml:5:") && e.contains(&format!("{key} = 0 would")),
            "{e}"
        );
    }
    let e = Policy::from_str(
        "[general]\nlabel_header = \"X Bad: y\"\n",
        "bad.toml",
        Path::new("."),
    )
    .unwrap_err()
    .to_string();
    assert!(e.starts_with("bad.toml:2:"), "{e}");
    for name in [
        "From",
        "content-length",
        "v",
        "P-Asserted-Identity",
        "e",
        "Content-Encoding",
        "Allow",
        "MIME-Version",
        "identity",
        "y",
        "Diversion",
        "History-Info",
        "P-Charging-Vector",
        "j",
    ] {
        let e = Policy::from_str(
            &format!("[general]\nlabel_header = \"{name}\"\n"),
            "bad.toml",
            Path::new("."),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("a SIP header of its own"), "{name}: {e}");
    }
    // A Server value with a line break would write header lines into every answer.
    for server in ["sf\\r\\nContact: <sip:evil@6.6.6.6>", "sf\\n", "a\\u0000b"] {
        let e = Policy::from_str(
            &format!("[general]\nserver = \"{server}\"\n"),
            "bad.toml",
            Path::new("."),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.starts_with("bad.toml:2:") && e.contains("control characters"),
            "{server}: {e}"
        );
    }
    // A log level tracing would read as a target filter, which silences every line.
    for level in [
        "warning",
        "verbose",
        "info,sipfence=loud",
        "",
        "=info",
        "info,=debug",
        "info=info",
        "info,my target=debug",
    ] {
        let e = Policy::from_str(
            &format!("[general]\n[log]\nlevel = \"{level}\"\n"),
            "bad.toml",
            Path::new("."),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("bad.toml") && (e.contains("names no level") || e.contains("empty")),
            "{level:?}: {e}"
        );
    }
    // Written as the logger reads it: white space around the parts does not silence it.
    for (level, read) in [
        ("warn", "warn"),
        ("ERROR", "error"),
        ("info,sipfence::proxy=debug", "info,sipfence::proxy=debug"),
        ("off", "off"),
        (" info", "info"),
        ("info ", "info"),
        ("info, sipfence=debug", "info,sipfence=debug"),
        (
            "info , sipfence::proxy = DEBUG,",
            "info,sipfence::proxy=debug",
        ),
    ] {
        let p = Policy::from_str(
            &format!("[general]\n[log]\nlevel = \"{level}\"\n"),
            "ok.toml",
            Path::new("."),
        );
        assert_eq!(p.map(|p| p.log.level).as_deref(), Ok(read), "{level:?}");
    }
    // A relative records directory is the policy file's, as list files are.
    let p = Policy::from_str(
        "[records]\ndir = \"records\"\n",
        "p.toml",
        Path::new("/etc/sipfence"),
    )
    .unwrap();
    assert_eq!(p.records.dir, "/etc/sipfence/records");
    let p = Policy::from_str(
        "[records]\ndir = \"/var/lib/r\"\n",
        "p.toml",
        Path::new("/etc/sipfence"),
    )
    .unwrap();
    assert_eq!(p.records.dir, "/var/lib/r");
    // No day at all, and labels that are no token.
    let e = bad(
        "[[trunk]]\nname = \"d\"\nrole = \"enterprise\"\ndays = []\n[trunk.whitelist]\nentries = [\"139\"]",
    );
    assert!(
        e.starts_with(&format!("bad.toml:{}:", lines + 4)) && e.contains("days: empty"),
        "{e}"
    );
    for label in ["", "a,b", "two words"] {
        let e = bad(&format!(
            "[rules.blacklist]\naction = \"label\"\nlabel = \"{label}\""
        ));
        assert!(e.contains("must be a token"), "{label:?}: {e}");
    }
    // The line is the rule's own, even when a word of its name is a key elsewhere
    // (`plan` of numbering-plan), policy-wide and in a trunk.
    let e = Policy::from_str(
        "[general]\nplan = \"builtin:cn\"\n\n[rules.numbering-plan]\naction = \"label\"\nlabel = \"\"\n",
        "bad.toml",
        Path::new("."),
    )
    .unwrap_err()
    .to_string();
    assert!(e.starts_with("bad.toml:6:"), "{e}");
    let e = Policy::from_str(
        "[general]\nplan = \"builtin:cn\"\n[[trunk]]\nname = \"i\"\nrole = \"international\"\nsources = [\"0.0.0.0/0\"]\n[trunk.rules.numbering-plan]\naction = \"label\"\nlabel = \"a b\"\n",
        "bad.toml",
        Path::new("."),
    )
    .unwrap_err()
    .to_string();
    assert!(e.starts_with("bad.toml:9:"), "{e}");
    let e = Policy::from_str(
        "[general]\n[metrics]\nlisten = \"localhost\"\n",
        "bad.toml",
        Path::new("."),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.starts_with("bad.toml:3:") && e.contains("not host:port"),
        "{e}"
    );
    // IPv6 as every address setting has it, in brackets: `fd00::1:9090` is one address,
    // not fd00::1 with port 9090; `::1` has no port; a zone id is named (QA 174 F2, F3).
    for (listen, ok) in [
        ("::1", false),
        ("::1:40093", false),
        ("fd00::1:9090", false),
        ("[fe80::1%eth0]:9090", false),
        // Port 0: one of the kernel's choosing, which no Prometheus knows (QA 177 F).
        ("127.0.0.1:0", false),
        ("localhost:0", false),
        ("127.0.0.1:00", false),
        ("127.0.0.1:+0", false),
        ("[::1]:9090", true),
        ("localhost:9090", true),
        ("metrics-host.example:9090", true),
        ("127.0.0.1:9090", true),
    ] {
        let r = Policy::from_str(
            &format!("[general]\n[metrics]\nlisten = \"{listen}\"\n"),
            "m.toml",
            Path::new("."),
        );
        match r {
            Ok(_) => assert!(ok, "{listen} was taken"),
            Err(e) => {
                let e = e.to_string();
                assert!(!ok, "{listen}: {e}");
                assert!(
                    e.starts_with("m.toml:3:")
                        && (e.contains("[::1]:9090")
                            || listen.ends_with('0') && e.contains("port 0")),
                    "{e}"
                );
                assert_eq!(listen.contains('%'), e.contains("zone ids"), "{e}");
            }
        }
    }
    // A source no packet comes from would match nobody: written for "any", it is
    // refused with what "any" is (QA 174 F4).
    for (source, ok) in [
        ("::", false),
        ("0.0.0.0", false),
        ("[::]:5060", false),
        ("ff02::1", false),
        ("224.0.0.1", false),
        ("255.255.255.255", false),
        ("::ffff:0.0.0.0", false),
        // Networks of such addresses alone (QA 177 G).
        ("ff00::/8", false),
        ("224.0.0.0/4", false),
        ("0.0.0.0/8", false),
        ("239.1.0.0/16", false),
        ("0.0.0.0/0", true),
        ("::/0", true),
        ("10.0.0.0/8", true),
    ] {
        let r = Policy::from_str(
            &format!(
                "[[trunk]]\nname = \"i\"\nrole = \"international\"\nsources = [\"{source}\"]\n"
            ),
            "s.toml",
            Path::new("."),
        );
        match r {
            Ok(_) => assert!(ok, "{source} was taken"),
            Err(e) => {
                let e = e.to_string();
                assert!(!ok, "{source}: {e}");
                assert!(
                    e.starts_with("s.toml:4:")
                        && e.contains("no packet's source")
                        && e.contains("0.0.0.0/0"),
                    "{e}"
                );
            }
        }
    }
    let e = Policy::from_str(
        "[general]\n\nplan = \"builtin:us\"\n",
        "bad.toml",
        Path::new("."),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.starts_with("bad.toml:3:") && e.contains("builtin:cn"),
        "{e}"
    );
    // List files: their own name and line.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("wl.txt"),
        "13912345678\n# fine\n139123456789999999999\n",
    )
    .unwrap();
    let cfg =
        "[[trunk]]\nname = \"e\"\nrole = \"enterprise\"\n[trunk.whitelist]\nfiles = [\"wl.txt\"]\n";
    std::fs::write(dir.path().join("p.toml"), cfg).unwrap();
    let e = Policy::load(&dir.path().join("p.toml"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("wl.txt:3:"), "{e}");
    // Missing files are named too.
    std::fs::write(dir.path().join("p.toml"), cfg.replace("wl.txt", "nope.txt")).unwrap();
    let e = Policy::load(&dir.path().join("p.toml"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("nope.txt") && e.contains("cannot read"), "{e}");
}

#[test]
fn builtin_policy_loads_and_judges_the_sample() {
    let p = Policy::builtin().unwrap();
    let m = Message::parse(Bytes::from(
        std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/testdata/sip/invite-pai-sdp.sip"
        ))
        .unwrap(),
    ))
    .unwrap();
    let d = decide(
        &p,
        &m,
        &Context {
            source: "127.0.0.1:5999".parse().unwrap(),
            local: None,
            trunk: None,
            now_ms: MON_10H,
            wall_ms: MON_10H,
            rates: &NoCounting,
            behaviour: &sipfence::behaviour::NoTracking,
        },
    );
    assert_eq!(d.trunk, Some(0));
    assert_eq!(d.verdict_str(), "allow");
    assert_eq!(d.caller.unwrap().e164(), "+442071234567");
}

/// A `Proxy-Authorization` field of user pbx1 in realm ent.example for the test INVITE
/// (`invite`'s Request-URI): qop=auth with this nonce count and client nonce, or no qop.
fn digest_answer(nonce: &str, pass: &str, qop: Option<(&str, &str)>) -> String {
    digest_answer_for("INVITE", "sip:4008001234@10.0.0.100", nonce, pass, qop)
}

/// [`digest_answer`] for a request of this method and Request-URI.
fn digest_answer_for(
    method: &str,
    uri: &str,
    nonce: &str,
    pass: &str,
    qop: Option<(&str, &str)>,
) -> String {
    use md5::{Digest, Md5};
    let md5 = |s: String| {
        Md5::digest(s.as_bytes())
            .iter()
            .map(|x| format!("{x:02x}"))
            .collect::<String>()
    };
    let ha1 = md5(format!("pbx1:ent.example:{pass}"));
    let ha2 = md5(format!("{method}:{uri}"));
    let (r, q) = match qop {
        Some((nc, cn)) => (
            md5(format!("{ha1}:{nonce}:{nc}:{cn}:auth:{ha2}")),
            format!(", qop=auth, nc={nc}, cnonce=\"{cn}\""),
        ),
        None => (md5(format!("{ha1}:{nonce}:{ha2}")), String::new()),
    };
    format!(
        "Proxy-Authorization: Digest username=\"pbx1\", realm=\"ent.example\", nonce=\"{nonce}\", uri=\"{uri}\"{q}, response=\"{r}\"\r\n"
    )
}

/// `trunk-auth`: an enterprise trunk with `[trunk.auth]`. The call without credentials
/// is challenged 407 (nonce in Proxy-Authenticate); answered right it passes on to the
/// other rules and leaves without the credentials meant for sipfence (another realm's
/// stay); a wrong password is refused 403; the same answer after `nonce_secs` is
/// challenged again as stale; in-dialog requests are not challenged; `monitor` lets
/// the unauthenticated call through, counted.
#[test]
fn trunk_auth() {
    let text = format!(
        "{}\n[trunk.auth]\nrealm = \"ent.example\"\nusers = [\"pbx1:s3cret\"]\nnonce_secs = 300\n",
        POLICY.replace("[general]\n", "[general]\nauth_secret = \"shared\"\n")
    );
    let p = Policy::from_str(&text, "t.toml", Path::new(".")).unwrap();
    let creds = |nonce: &str, pass: &str| digest_answer(nonce, pass, Some(("00000001", "abc")));
    let challenge = |m: &Message, at: u64| {
        let d = judge_at(&p, m, "ent", at, &NoCounting);
        assert_eq!(rejected(&d), Some((407, "trunk-auth")), "{d:?}");
        // A challenge is no block: its own verdict in the metrics and records.
        assert_eq!(d.verdict_str(), "challenge");
        let mut out = vec![];
        // The nonce is given to the address that asked.
        assert!(verdict::write_reject(&p, m, &d, Some(src("ent")), &mut out));
        let r = String::from_utf8(out).unwrap();
        assert!(
            r.starts_with("SIP/2.0 407 Proxy Authentication Required\r\n"),
            "{r}"
        );
        let pa = r
            .lines()
            .find(|l| l.starts_with("Proxy-Authenticate: Digest realm=\"ent.example\""))
            .unwrap_or_else(|| panic!("no challenge in {r}"))
            .to_string();
        let nonce = pa
            .split("nonce=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap();
        (nonce.to_string(), pa.contains("stale=true"))
    };

    let (nonce, stale) = challenge(&invite("13912345678", ""), MON_10H);
    assert!(!stale);
    // A retransmission gets the same 407 byte for byte, though a second has turned
    // between the two (the nonce carries its issue time: QA 43); a new INVITE from the
    // same caller gets a nonce of its own.
    let rates = LocalRateCounter::new(1000);
    let answer = |m: &Message, at: u64| {
        let d = judge_at(&p, m, "ent", at, &rates);
        let mut out = vec![];
        assert!(verdict::write_reject(&p, m, &d, Some(src("ent")), &mut out));
        (String::from_utf8(out).unwrap(), d.retransmission)
    };
    let m = invite("13912345678", "");
    let (first, again) = answer(&m, MON_10H + 700);
    assert!(first.starts_with("SIP/2.0 407 ") && !again, "{first}");
    let (second, again) = answer(&m, MON_10H + 1_200);
    assert!(again);
    assert_eq!(first, second);
    let (third, _) = answer(&m, MON_10H + 4_700);
    assert_eq!(first, third);
    let other = invite("13912345678", "X-Attempt: 2\r\n");
    let (fresh, again) = answer(&other, MON_10H + 1_200);
    assert!(!again && fresh.starts_with("SIP/2.0 407 "), "{fresh}");
    assert_ne!(first, fresh);
    // The challenged call's record names its caller (no caller rule ran).
    let d = judge_at(&p, &invite("13912345678", ""), "ent", MON_10H, &NoCounting);
    assert_eq!(d.caller.map(|n| n.e164()), Some("+8613912345678".into()));
    // Answered: judged by the other rules, credentials taken off, another realm's kept.
    let other = "Proxy-Authorization: Digest username=\"x\", realm=\"core\", nonce=\"n\", uri=\"sip:a@b\", response=\"0\"\r\n";
    let m = invite(
        "13912345678",
        &format!("{}{other}", creds(&nonce, "s3cret")),
    );
    let d = judge_at(&p, &m, "ent", MON_10H + 10_000, &NoCounting);
    assert_eq!(rejected(&d), None, "{d:?}");
    let out = forwarded(&p, &m, &d);
    let left: Vec<&[u8]> = out
        .all(HeaderName::ProxyAuthorization)
        .map(|h| out.slice(h.value()))
        .collect();
    assert_eq!(left.len(), 1);
    assert!(left[0].windows(12).any(|w| w == b"realm=\"core\""));
    // A later request of the call that carries them again (a UA that resends its
    // credentials, as pjsip does) loses ours too, keeps the core's (QA 67).
    let bye = String::from_utf8(m.bytes().to_vec())
        .unwrap()
        .replacen("INVITE sip:", "BYE sip:", 1)
        .replace("CSeq: 1 INVITE", "CSeq: 2 BYE")
        .replace(
            "To: <sip:4008001234@10.0.0.100>",
            "To: <sip:4008001234@10.0.0.100>;tag=core1",
        );
    let bye = Message::parse(Bytes::from(bye)).unwrap();
    let d = judge_at(&p, &bye, "ent", MON_10H + 20_000, &NoCounting);
    assert_eq!(d.kind, Kind::InDialog);
    let out = forwarded(&p, &bye, &d);
    let left: Vec<&[u8]> = out
        .all(HeaderName::ProxyAuthorization)
        .map(|h| out.slice(h.value()))
        .collect();
    assert_eq!(left.len(), 1, "{left:?}");
    assert!(left[0].windows(12).any(|w| w == b"realm=\"core\""));
    // Authenticated is not whitelisted: a caller off the contract is still refused.
    let m = invite("13812345679", &creds(&nonce, "s3cret"));
    let d = judge_at(&p, &m, "ent", MON_10H + 10_000, &NoCounting);
    assert_eq!(rejected(&d), Some((403, "enterprise-not-whitelisted")));
    // Wrong password: 403, no new challenge.
    let m = invite("13912345678", &creds(&nonce, "guess"));
    let d = judge_at(&p, &m, "ent", MON_10H + 10_000, &NoCounting);
    assert_eq!(rejected(&d), Some((403, "trunk-auth")));
    let mut out = vec![];
    verdict::write_reject(&p, &m, &d, None, &mut out);
    let r = String::from_utf8_lossy(&out);
    assert!(!r.contains("Proxy-Authenticate"), "{r}");
    assert!(r.contains("text=\"Trunk authentication failed\""), "{r}");
    // The right answer for another Request-URI (a held-back answer spent on another
    // callee): 400, RFC 7616 3.4.6, and the digest's uri does not reach the core.
    let elsewhere = |to: &str| {
        let t = String::from_utf8_lossy(invite("13912345678", &creds(&nonce, "s3cret")).buf())
            .replacen("INVITE sip:4008001234@10.0.0.100 ", to, 1);
        Message::parse(Bytes::from(t)).unwrap()
    };
    let m = elsewhere("INVITE sip:+882345678901@10.0.0.100 ");
    let d = judge_at(&p, &m, "ent", MON_10H + 10_000, &NoCounting);
    assert_eq!(rejected(&d), Some((400, "trunk-auth")));
    assert_eq!(d.auth.map(|a| a.as_str()), Some("uri-mismatch"));
    let mut out = vec![];
    verdict::write_reject(&p, &m, &d, None, &mut out);
    let r = String::from_utf8_lossy(&out);
    assert!(
        r.starts_with("SIP/2.0 400 Bad Request\r\n")
            && r.contains("text=\"Digest answer made for another callee\""),
        "{r}"
    );
    // The same callee through another host (a proxy before sipfence) is the same.
    let m = elsewhere("INVITE sip:4008001234@192.0.2.1 ");
    let d = judge_at(&p, &m, "ent", MON_10H + 10_000, &NoCounting);
    assert_eq!(d.auth.map(|a| a.as_str()), Some("ok"));
    // The right answer, ten minutes on: stale, challenged again.
    let m = invite("13912345678", &creds(&nonce, "s3cret"));
    let (fresh, stale) = challenge(&m, MON_10H + 600_000);
    assert!(stale && fresh != nonce);
    // In-dialog requests are not challenged.
    let bye = Message::parse(Bytes::from_static(b"BYE sip:x@10.9.9.9 SIP/2.0\r\nVia: SIP/2.0/UDP 10.9.9.9;branch=z9hG4bK-b\r\nFrom: <sip:13912345678@10.9.9.9>;tag=ft1\r\nTo: <sip:4008001234@10.0.0.100>;tag=tt\r\nCall-ID: c\r\nCSeq: 2 BYE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n")).unwrap();
    let d = judge(&p, &bye, "ent");
    assert_eq!((d.kind, rejected(&d)), (Kind::InDialog, None));
    // Other trunks have no [trunk.auth]: nothing asked.
    passes(&p, &invite("+442071234567", ""), "intl");
    // A bad [trunk.auth] is refused with the file, and a bare password is not echoed.
    let bad = text.replace("users = [\"pbx1:s3cret\"]", "users = [\"s3cret\"]");
    let e = Policy::from_str(&bad, "t.toml", Path::new("."))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("t.toml") && e.contains("entry 1") && !e.contains("s3cret"),
        "{e}"
    );
    // monitor: through, counted.
    let p = Policy::from_str(
        &format!("{text}[trunk.rules.trunk-auth]\naction = \"monitor\"\n"),
        "t.toml",
        Path::new("."),
    )
    .unwrap();
    let d = passes(&p, &invite("13912345678", ""), "ent");
    assert!(d.hits.contains(RuleId::TrunkAuth));
}

/// What is judged like a call is authenticated like one: an out-of-dialog MESSAGE or
/// REFER of a trunk with `[trunk.auth]` is challenged, and passes answered. On a trunk
/// told by its digest answers alone (no `sources`), every out-of-dialog request that
/// goes to the core is challenged (QA 182 F1: a stranger's MESSAGE, REFER, REGISTER
/// and SUBSCRIBE went on under the enterprise's number); a trunk with sources keeps
/// the source check for the others, and the OPTIONS the gateway answers itself is
/// never challenged.
#[test]
fn trunk_auth_covers_what_is_judged_like_a_call() {
    let auth =
        "[trunk.auth]\nrealm = \"ent.example\"\nusers = [\"pbx1:s3cret\"]\nnonce_secs = 300\n";
    let text = format!(
        "{}\n{auth}\n[[trunk]]\nname = \"pbx\"\nrole = \"enterprise\"\nlisten = [\"udp:10.0.0.100:5070\"]\n[trunk.whitelist]\nentries = [\"+864008007777\"]\n{auth}",
        POLICY.replace("[general]\n", "[general]\nauth_secret = \"shared\"\n")
    );
    let p = Policy::from_str(&text, "t.toml", Path::new(".")).unwrap();
    let pbx = p.trunks.iter().position(|t| t.name == "pbx").unwrap();
    let request = |method: &str, ruri: &str, from: &str, extra: &str| {
        Message::parse(Bytes::from(format!(
            "{method} {ruri} SIP/2.0\r\nVia: SIP/2.0/UDP 10.9.9.9:5060;branch=z9hG4bK-{method}\r\nFrom: <sip:{from}@10.9.9.9>;tag=ft1\r\nTo: <sip:4008001234@10.0.0.100>\r\nCall-ID: oo-{method}\r\nCSeq: 1 {method}\r\nMax-Forwards: 70\r\nRefer-To: <sip:13700001111@10.0.0.100>\r\n{extra}Content-Length: 0\r\n\r\n"
        )))
        .unwrap()
    };
    let on = |m: &Message, trunk: Option<usize>, source: &str| {
        decide(
            &p,
            m,
            &Context {
                source: source.parse().unwrap(),
                local: None,
                trunk,
                now_ms: MON_10H,
                wall_ms: MON_10H,
                rates: &NoCounting,
                behaviour: &sipfence::behaviour::NoTracking,
            },
        )
    };
    let nonce_of = |m: &Message, d: &Decision, source: &str| {
        let mut out = vec![];
        assert!(verdict::write_reject(
            &p,
            m,
            d,
            Some(source.parse().unwrap()),
            &mut out
        ));
        let r = String::from_utf8(out).unwrap();
        assert!(r.starts_with("SIP/2.0 407 "), "{r}");
        r.split("nonce=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap()
            .to_string()
    };
    let ent = "10.0.0.3:5060";
    let ruri = "sip:4008001234@10.0.0.100";
    for method in ["MESSAGE", "REFER"] {
        let m = request(method, ruri, "13912345678", "");
        let d = on(&m, None, ent);
        assert_eq!(
            (d.kind, rejected(&d)),
            (Kind::OtherRequest, Some((407, "trunk-auth"))),
            "{method}"
        );
        let nonce = nonce_of(&m, &d, ent);
        let creds = digest_answer_for(method, ruri, &nonce, "s3cret", Some(("00000001", "a")));
        let d = on(&request(method, ruri, "13912345678", &creds), None, ent);
        assert_eq!(
            (d.kind, rejected(&d), d.auth.map(|a| a.as_str())),
            (Kind::OtherRequest, None, Some("ok")),
            "{method}"
        );
        // Authenticated is not whitelisted.
        let creds = digest_answer_for(method, ruri, &nonce, "s3cret", Some(("00000002", "a")));
        let d = on(&request(method, ruri, "13812345679", &creds), None, ent);
        assert_eq!(
            rejected(&d),
            Some((403, "enterprise-not-whitelisted")),
            "{method}"
        );
    }
    // A trunk told by its sources: the other requests keep the source check alone.
    let d = on(
        &request("REGISTER", "sip:10.0.0.100", "13912345678", ""),
        None,
        ent,
    );
    assert_eq!((d.kind, rejected(&d)), (Kind::OtherRequest, None));
    // A trunk told by its digest answers alone: anyone's request is challenged.
    let stranger = "192.0.2.99:5060";
    for (method, ruri) in [
        ("MESSAGE", ruri),
        ("REFER", ruri),
        ("REGISTER", "sip:10.0.0.100"),
        ("SUBSCRIBE", ruri),
        ("PUBLISH", ruri),
        ("NOTIFY", ruri),
        ("OPTIONS", "sip:4008001234@10.0.0.100"),
    ] {
        let m = request(method, ruri, "4008007777", "");
        let d = on(&m, Some(pbx), stranger);
        assert_eq!(rejected(&d), Some((407, "trunk-auth")), "{method}");
        let nonce = nonce_of(&m, &d, stranger);
        let creds = digest_answer_for(method, ruri, &nonce, "s3cret", None);
        let d = on(
            &request(method, ruri, "4008007777", &creds),
            Some(pbx),
            stranger,
        );
        assert_eq!(rejected(&d), None, "{method}");
    }
    // The keep-alive the gateway answers itself is not.
    let ping = request("OPTIONS", "sip:10.0.0.100:5070", "4008007777", "");
    assert_eq!(rejected(&on(&ping, Some(pbx), stranger)), None);
    // Nor are the requests of dialogs: a dialog's requests go to a core that knows its
    // dialogs (QA 187 N1: an early dialog's PRACK, a subscription's NOTIFY, a BYE after
    // a restart were challenged); ACK and CANCEL are never challenged (RFC 3261 22.1).
    // REGISTER, PUBLISH and OPTIONS are in no dialog: a To-tag, invented or a real
    // dialog's, does not let them by (QA 183 F8, QA 187 N2, N4).
    let rates = LocalRateCounter::new(1000);
    sipfence::decide::track_dialog(
        &Message::parse_for_relay(Bytes::from_static(b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 10.9.9.9;branch=z9hG4bK-i\r\nFrom: <sip:4008007777@10.9.9.9>;tag=ft1\r\nTo: <sip:4008001234@10.0.0.100>;tag=tt\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n")).unwrap(),
        || true,
        &rates,
        MON_10H,
    );
    let in_dialog = |method: &str, to_tag: &str| {
        Message::parse(Bytes::from(format!(
            "{method} sip:x@10.9.9.9 SIP/2.0\r\nVia: SIP/2.0/UDP 10.9.9.9;branch=z9hG4bK-b{method}\r\nFrom: <sip:4008007777@10.9.9.9>;tag=ft1\r\nTo: <sip:4008001234@10.0.0.100>;tag={to_tag}\r\nCall-ID: c\r\nCSeq: 2 {method}\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        )))
        .unwrap()
    };
    let at = |m: &Message| {
        decide(
            &p,
            m,
            &Context {
                source: stranger.parse().unwrap(),
                local: None,
                trunk: Some(pbx),
                now_ms: MON_10H + 1_000,
                wall_ms: MON_10H + 1_000,
                rates: &rates,
                behaviour: &sipfence::behaviour::NoTracking,
            },
        )
    };
    for method in [
        "BYE",
        "NOTIFY",
        "UPDATE",
        "INFO",
        "PRACK",
        "SUBSCRIBE",
        "ACK",
        "CANCEL",
    ] {
        for to_tag in ["tt", "made-up"] {
            let d = at(&in_dialog(method, to_tag));
            assert_eq!(
                (d.kind, rejected(&d)),
                (Kind::InDialog, None),
                "{method} {to_tag}"
            );
        }
    }
    for method in ["REGISTER", "PUBLISH", "OPTIONS", "FOO"] {
        for to_tag in ["tt", "made-up"] {
            let d = at(&in_dialog(method, to_tag));
            assert_eq!(rejected(&d), Some((407, "trunk-auth")), "{method} {to_tag}");
        }
    }
    // An OPTIONS to the gateway itself with a To-tag is no keep-alive it answers: it
    // would go to the core.
    let d = at(&Message::parse(Bytes::from_static(b"OPTIONS sip:10.0.0.100:5070 SIP/2.0\r\nVia: SIP/2.0/UDP 10.9.9.9;branch=z9hG4bK-o\r\nFrom: <sip:4008007777@10.9.9.9>;tag=ft1\r\nTo: <sip:10.0.0.100:5070>;tag=x\r\nCall-ID: o\r\nCSeq: 2 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n")).unwrap());
    assert_eq!(rejected(&d), Some((407, "trunk-auth")));
}

/// On a trunk told by its digest answers alone whose dialogs are record-routed, the
/// requests of a dialog are challenged unless the dialog tables or the token of our
/// Record-Route in their Route vouch for it (QA 189: a stranger's NOTIFY and BYE with
/// made-up tags went on, and a core relaying by Route alone sent them to phones). The
/// token holds where no table does (an early dialog's PRACK, a subscription's NOTIFY, a
/// BYE after a restart: QA 187 N1), at any gateway with the same `auth_secret`; it binds
/// the Call-ID and the trunk side's tag, where that side writes it.
#[test]
fn an_auth_only_trunks_dialogs_are_vouched_for_by_our_record_route() {
    use sipfence::policy::auth::Side;
    let auth =
        "[trunk.auth]\nrealm = \"ent.example\"\nusers = [\"pbx1:s3cret\"]\nnonce_secs = 300\n";
    let text = |secret: &str, rr: bool| {
        format!(
            "{}\n[[trunk]]\nname = \"pbx\"\nrole = \"enterprise\"\nlisten = [\"udp:10.0.0.100:5070\"]\nrecord_route = {rr}\n[trunk.whitelist]\nentries = [\"+864008007777\"]\n{auth}\n[[trunk]]\nname = \"pbx2\"\nrole = \"enterprise\"\nlisten = [\"udp:10.0.0.100:5072\"]\nrecord_route = {rr}\n[trunk.whitelist]\nentries = [\"+864008008888\"]\n{auth}",
            POLICY.replace(
                "[general]\n",
                &format!("[general]\nauth_secret = \"{secret}\"\n")
            )
        )
    };
    let load = |secret: &str, rr: bool| {
        Policy::from_str(&text(secret, rr), "t.toml", Path::new(".")).unwrap()
    };
    let p = load("shared", true);
    let pbx = p.trunks.iter().position(|t| t.name == "pbx").unwrap();
    let token = |p: &Policy, call_id: &str, tag: &str, other: &str, side: Side| {
        let t = p.trunks[pbx].dialog_tokens().unwrap().dialog_token(
            call_id.as_bytes(),
            tag.as_bytes(),
            other.as_bytes(),
            side,
        );
        String::from_utf8(t.to_vec()).unwrap()
    };
    // The trunk's request in dialog `c` (its tag in From, the other side's in To), with
    // this Route.
    let request = |method: &str, from_tag: &str, to_tag: &str, route: &str| {
        Message::parse(Bytes::from(format!(
            "{method} sip:x@10.9.9.9 SIP/2.0\r\nVia: SIP/2.0/UDP 10.9.9.9;branch=z9hG4bK-b{method}\r\n{route}From: <sip:4008007777@10.9.9.9>;tag={from_tag}\r\nTo: <sip:4008001234@10.0.0.100>;tag={to_tag}\r\nCall-ID: c\r\nCSeq: 2 {method}\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        )))
        .unwrap()
    };
    let route = |t: &str| format!("Route: <sip:10.0.0.100:5070;lr;sf-dlg={t}>\r\n");
    let at = |p: &Policy, m: &Message, rates: &dyn RateCounter| {
        let d = decide(
            p,
            m,
            &Context {
                source: "192.0.2.99:5060".parse().unwrap(),
                local: None,
                trunk: Some(pbx),
                now_ms: MON_10H + 1_000,
                wall_ms: MON_10H + 1_000,
                rates,
                behaviour: &sipfence::behaviour::NoTracking,
            },
        );
        (d.kind, rejected(&d))
    };
    let passed = (Kind::InDialog, None);
    let challenged = Some((407, "trunk-auth"));
    // A dialog the trunk set up: its tag and the core's side's (the core's answer
    // carries the token).
    let ours = token(&p, "c", "ft1", "tt", Side::From);
    let methods = [
        "BYE",
        "NOTIFY",
        "UPDATE",
        "INFO",
        "PRACK",
        "SUBSCRIBE",
        "REFER",
    ];
    for method in methods {
        // Made-up tags, no Route or a Route without a token: challenged.
        for r in [String::new(), "Route: <sip:10.0.0.100:5070;lr>\r\n".into()] {
            let (_, refused) = at(&p, &request(method, "ft1", "tt", &r), &NoCounting);
            assert_eq!(refused, challenged, "{method} {r}");
        }
        // The dialog's token, with no table that knows it (a restart, an early dialog,
        // a subscription): on.
        let m = request(method, "ft1", "tt", &route(&ours));
        assert_eq!(at(&p, &m, &NoCounting), passed, "{method}");
        // ... at another gateway with the same secret, or this one after a restart.
        assert_eq!(
            at(&load("shared", true), &m, &NoCounting),
            passed,
            "{method}"
        );
        // Not with another secret, nor for another dialog, nor the tags the other way
        // round (the core's tag in From, QA 182 F5), nor a token cut or changed.
        assert_eq!(
            at(&load("other", true), &m, &NoCounting).1,
            challenged,
            "{method}"
        );
        // ... unless that one accepts this one's: a fleet moving to a new secret keeps
        // the calls up (QA 198 F2).
        let rotated = Policy::from_str(
            &text("other", true).replace(
                "auth_secret = \"other\"\n",
                "auth_secret = \"other\"\nauth_secrets_accepted = [\"shared\"]\n",
            ),
            "t.toml",
            Path::new("."),
        )
        .unwrap();
        assert_eq!(at(&rotated, &m, &NoCounting), passed, "{method}");
        let other_call =
            String::from_utf8_lossy(m.buf()).replace("Call-ID: c\r\n", "Call-ID: d\r\n");
        let other_call = Message::parse(Bytes::from(other_call)).unwrap();
        assert_eq!(at(&p, &other_call, &NoCounting).1, challenged, "{method}");
        let swapped = request(method, "tt", "ft1", &route(&ours));
        assert_eq!(at(&p, &swapped, &NoCounting).1, challenged, "{method}");
        // Nor another trunk's token (QA 194 B1: another enterprise's PBX spent its own
        // dialog's token here).
        let other_trunk = p.trunks[pbx + 1].dialog_tokens().unwrap().dialog_token(
            b"c",
            b"ft1",
            b"tt",
            Side::From,
        );
        let m = request(
            method,
            "ft1",
            "tt",
            &route(std::str::from_utf8(&other_trunk).unwrap()),
        );
        assert_eq!(at(&p, &m, &NoCounting).1, challenged, "{method}");
        // Nor another To-tag (another dialog of the call, or made up).
        let other_dialog = request(method, "ft1", "tt2", &route(&ours));
        assert_eq!(at(&p, &other_dialog, &NoCounting).1, challenged, "{method}");
        let mut bad = ours.clone().into_bytes();
        bad[15] = if bad[15] == b'0' { b'1' } else { b'0' };
        for t in [&ours[..15], std::str::from_utf8(&bad).unwrap()] {
            let m = request(method, "ft1", "tt", &route(t));
            assert_eq!(at(&p, &m, &NoCounting).1, challenged, "{method} {t}");
        }
        // A call the core offered the trunk: the token binds the core's tag, which the
        // trunk's requests carry in To.
        let offered = token(&p, "c", "core1", "", Side::To);
        let m = request(method, "pbx9", "core1", &route(&offered));
        assert_eq!(at(&p, &m, &NoCounting), passed, "{method}");
        let m = request(method, "core1", "pbx9", &route(&offered));
        assert_eq!(at(&p, &m, &NoCounting).1, challenged, "{method}");
        // The token in a second Route value, or a second Route field: on.
        let m = request(
            method,
            "ft1",
            "tt",
            &format!(
                "Route: <sip:10.0.0.7;lr>\r\nRoute: <sip:10.0.0.1;lr>, <sip:10.0.0.100:5070;lr;transport=tcp;sf-dlg={ours}>\r\n"
            ),
        );
        assert_eq!(at(&p, &m, &NoCounting), passed, "{method}");
        // ACK and CANCEL are never challenged (RFC 3261 22.1).
        for method in ["ACK", "CANCEL"] {
            assert_eq!(
                at(&p, &request(method, "ft1", "tt", ""), &NoCounting),
                passed
            );
        }
    }
    // A dialog the tables know (an INVITE's 2xx passed, from before the tokens) needs
    // none.
    let rates = LocalRateCounter::new(1000);
    sipfence::decide::track_dialog(
        &Message::parse_for_relay(Bytes::from_static(b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 10.9.9.9;branch=z9hG4bK-i\r\nFrom: <sip:4008007777@10.9.9.9>;tag=ft1\r\nTo: <sip:4008001234@10.0.0.100>;tag=tt\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n")).unwrap(),
        || true,
        &rates,
        MON_10H,
    );
    assert_eq!(at(&p, &request("BYE", "ft1", "tt", ""), &rates), passed);
    assert_eq!(
        at(&p, &request("BYE", "ft1", "made-up", ""), &rates).1,
        challenged
    );
    // A re-INVITE with the token is one of a call let on here: not judged again as a
    // call after a restart; without it, judged (and so challenged).
    assert_eq!(
        at(
            &p,
            &request("INVITE", "ft1", "tt", &route(&ours)),
            &NoCounting
        ),
        passed
    );
    assert_eq!(
        at(&p, &request("INVITE", "ft1", "tt", ""), &NoCounting),
        (Kind::Call, challenged)
    );
    // A MESSAGE in a dialog the token vouches for shows no sender of its own to judge.
    assert_eq!(
        at(
            &p,
            &request("MESSAGE", "ft1", "tt", &route(&ours)),
            &NoCounting
        ),
        passed
    );
    // Without `record_route` the trunk's dialogs do not pass sipfence: their requests
    // go on for a core that knows its dialogs (README), and no token is made.
    let plain = load("shared", false);
    assert!(plain.trunks[pbx].dialog_tokens().is_none());
    for method in methods {
        // (A REFER in a dialog never carried here is judged, like one out of a dialog.)
        let (_, refused) = at(&plain, &request(method, "ft1", "tt", ""), &NoCounting);
        let want = if method == "REFER" { challenged } else { None };
        assert_eq!(refused, want, "{method}");
    }
}

/// A digest answer is good for one call: its retransmissions pass, the same answer in
/// another request (a captured one replayed, or a client reusing a nonce without
/// counting) is challenged again with `stale=true`.
#[test]
fn trunk_auth_answers_are_good_for_one_call() {
    let text = format!(
        "{}\n[trunk.auth]\nrealm = \"ent.example\"\nusers = [\"pbx1:s3cret\"]\nnonce_secs = 300\n",
        POLICY
            .replace("[general]\n", "[general]\nauth_secret = \"shared\"\n")
            .replace(
                "max_calls_per_minute = 5\nmax_calls_per_minute_per_caller = 2\n",
                ""
            )
    );
    let p = Policy::from_str(&text, "t.toml", Path::new(".")).unwrap();
    let nonce = p.trunks[2]
        .auth
        .as_ref()
        .unwrap()
        .nonce(MON_10H, 1, Some(src("ent").ip()));
    let creds = |qop: Option<(&str, &str)>| digest_answer(&nonce, "s3cret", qop);
    // The same INVITE as another call: its own Call-ID and branch.
    let as_call = |m: &Message, n: u32| {
        let t = String::from_utf8_lossy(m.buf())
            .replace("call-13912345678", &format!("call-{n}"))
            .replace("branch=z9hG4bK-13912345678", &format!("branch=z9hG4bK-{n}"));
        Message::parse(Bytes::from(t)).unwrap()
    };
    let rates = LocalRateCounter::new(1000);
    let auth = |m: &Message, at: u64| {
        let d = judge_at(&p, m, "ent", at, &rates);
        (rejected(&d), d.auth.map(|a| a.as_str()))
    };
    let ok = (None, Some("ok"));
    let replayed = (Some((407, "trunk-auth")), Some("replayed"));
    let t = MON_10H + 1000;

    let m = invite("13912345678", &creds(Some(("00000001", "c0ffee"))));
    assert_eq!(auth(&m, t), ok);
    // Its retransmissions, within Timer B: the same call.
    assert_eq!(auth(&m, t + 500), ok);
    assert_eq!(auth(&m, t + 4_000), ok);
    // The answer in another call: a replay, challenged again with stale=true (a real
    // client answers the fresh nonce without asking its user).
    let replay = as_call(&m, 2);
    assert_eq!(auth(&replay, t + 5_000), replayed);
    let d = judge_at(&p, &replay, "ent", t + 5_000, &rates);
    let mut out = vec![];
    assert!(verdict::write_reject(&p, &replay, &d, None, &mut out));
    let r = String::from_utf8_lossy(&out);
    assert!(
        r.starts_with("SIP/2.0 407 ") && r.contains("stale=true"),
        "{r}"
    );
    // The very same INVITE once its transaction is over is no retransmission.
    assert_eq!(auth(&m, t + 40_000), replayed);
    // A client that reuses the nonce counts up: each count is a new answer.
    let next = invite("13912345678", &creds(Some(("00000002", "c0ffee"))));
    assert_eq!(auth(&as_call(&next, 3), t + 41_000), ok);
    assert_eq!(auth(&as_call(&next, 4), t + 42_000), replayed);
    // A count once used is spent, whatever new client nonce comes with it.
    let recount = invite("13912345678", &creds(Some(("00000002", "5eed"))));
    assert_eq!(auth(&as_call(&recount, 9), t + 42_500), replayed);
    // Without qop there is no count: a nonce answers one call.
    let bare = invite("13912345678", &creds(None));
    assert_eq!(auth(&as_call(&bare, 5), t + 43_000), ok);
    assert_eq!(auth(&as_call(&bare, 6), t + 44_000), replayed);
    // Replays are no wrong answers: however many, the address is not locked.
    for i in 0..20 {
        assert_eq!(auth(&as_call(&m, 100 + i), t + 45_000 + i as u64), replayed);
    }
    let fresh = as_call(
        &invite("13912345678", &creds(Some(("00000003", "c0ffee")))),
        7,
    );
    assert_eq!(auth(&fresh, t + 50_000), ok);
    // Once the nonce has expired, an old answer is stale like any other.
    assert_eq!(
        auth(&as_call(&m, 8), MON_10H + 400_000),
        (Some((407, "trunk-auth")), Some("stale"))
    );
    // Without a memory (explain on one message), nothing is a replay.
    let d = judge_at(&p, &replay, "ent", t + 5_000, &NoCounting);
    assert_eq!(d.auth.map(|a| a.as_str()), Some("ok"));
}

/// A password guesser is locked out per source address: past `max_failures_per_minute`
/// wrong answers within a minute, its right answer is refused too; the trunk's other
/// addresses are not; the lock ends when its failures age out.
#[test]
fn trunk_auth_locks_out_a_guesser() {
    let text = format!(
        "{}\n[trunk.auth]\nrealm = \"ent.example\"\nusers = [\"pbx1:s3cret\"]\nmax_failures_per_minute = 3\n",
        POLICY
            // One nonce key for both policies below.
            .replace("[general]\n", "[general]\nauth_secret = \"shared\"\n")
            .replace("sources = [\"10.0.0.3\"]", "sources = [\"10.0.0.0/29\"]")
            // Every right answer here is the same caller: no rate rule in the way.
            .replace(
                "max_calls_per_minute = 5\nmax_calls_per_minute_per_caller = 2\n",
                ""
            )
    );
    assert!(!text.contains("max_calls_per_minute") && text.contains("auth_secret"));
    let p = Policy::from_str(&text, "t.toml", Path::new(".")).unwrap();
    // Each nonce is given to one address, and answers it from there only.
    let nonce_for = |ip: &str, at: u64, salt: u64| {
        p.trunks[2]
            .auth
            .as_ref()
            .unwrap()
            .nonce(at, salt, Some(ip.parse().unwrap()))
    };
    let nonce = nonce_for("10.0.0.3", MON_10H, 1);
    let creds_for = |nonce: &str, pass: &str| digest_answer(nonce, pass, None);
    let creds = |pass: &str| creds_for(&nonce, pass);
    let rates = LocalRateCounter::new(1000);
    let from = |ip: &str, m: &Message, at: u64| {
        decide(
            &p,
            m,
            &Context {
                source: format!("{ip}:5060").parse().unwrap(),
                local: None,
                trunk: None,
                now_ms: at,
                wall_ms: at,
                rates: &rates,
                behaviour: &sipfence::behaviour::NoTracking,
            },
        )
    };
    let (right, wrong) = (
        invite("13912345678", &creds("s3cret")),
        invite("13912345678", &creds("guess")),
    );
    let auth = |d: &Decision| d.auth.map(|a| a.as_str());
    let t = MON_10H + 1000;
    // The limit itself is not a lock: three wrong answers, then the right one passes.
    for i in 0..3 {
        let d = from("10.0.0.3", &wrong, t + i);
        assert_eq!(
            (rejected(&d), auth(&d)),
            (Some((403, "trunk-auth")), Some("invalid"))
        );
    }
    let d = from("10.0.0.3", &right, t + 10);
    assert_eq!((rejected(&d), auth(&d)), (None, Some("ok")), "{d:?}");
    // The fourth wrong answer locks the address: the right one is now refused alike.
    let d = from("10.0.0.3", &wrong, t + 20);
    assert_eq!(
        (rejected(&d), auth(&d)),
        (Some((403, "trunk-auth")), Some("locked"))
    );
    let d = from("10.0.0.3", &right, t + 30);
    assert_eq!(
        (rejected(&d), auth(&d)),
        (Some((403, "trunk-auth")), Some("locked"))
    );
    let mut out = vec![];
    verdict::write_reject(&p, &right, &d, None, &mut out);
    let r = String::from_utf8_lossy(&out);
    assert!(
        r.starts_with("SIP/2.0 403 ") && !r.contains("Proxy-Authenticate"),
        "{r}"
    );
    // No credentials: challenged as ever (a challenge reveals nothing), not counted.
    let d = from("10.0.0.3", &invite("13912345678", ""), t + 40);
    assert_eq!(
        (rejected(&d), auth(&d)),
        (Some((407, "trunk-auth")), Some("missing"))
    );
    // Another address of the same trunk is not locked.
    let right4 = invite(
        "13912345678",
        &creds_for(&nonce_for("10.0.0.4", MON_10H, 1), "s3cret"),
    );
    let d = from("10.0.0.4", &right4, t + 50);
    assert_eq!((rejected(&d), auth(&d)), (None, Some("ok")));
    // A nonce answered from another address than it was given to is no answer to our
    // challenge: challenged again, never counted (QA 52: nonces fetched from one
    // address and wrong answers forged from the PBX's locked the PBX out).
    let elsewhere = invite(
        "13912345678",
        &creds_for(&nonce_for("10.0.0.9", MON_10H, 1), "guess"),
    );
    for i in 0..10 {
        let d = from("10.0.0.4", &elsewhere, t + 51 + i);
        assert_eq!(
            (rejected(&d), auth(&d)),
            (Some((407, "trunk-auth")), Some("missing"))
        );
    }
    let d = from("10.0.0.4", &right4, t + 70);
    assert_eq!((rejected(&d), auth(&d)), (None, Some("ok")));
    // A forged answer (a nonce we never gave) is a challenge, and never counts: a
    // sender that cannot see our challenges cannot lock an address.
    let forged = invite(
        "13912345678",
        &creds("guess").replace(&nonce, &"0".repeat(48)),
    );
    for i in 0..10 {
        let d = from("10.0.0.5", &forged, t + 60 + i);
        assert_eq!(auth(&d), Some("missing"));
    }
    let right5 = invite(
        "13912345678",
        &creds_for(&nonce_for("10.0.0.5", MON_10H, 1), "s3cret"),
    );
    let d = from("10.0.0.5", &right5, t + 100);
    assert_eq!((rejected(&d), auth(&d)), (None, Some("ok")));
    // Two minutes on, the failures have aged out. (A new call, with a new nonce: an
    // answer is good for one call.)
    let later = nonce_for("10.0.0.3", t + 120_000, 2);
    let right2 = invite("13912345678", &creds_for(&later, "s3cret"));
    let d = from("10.0.0.3", &right2, t + 125_000);
    assert_eq!((rejected(&d), auth(&d)), (None, Some("ok")), "{d:?}");
    // A full rate table (another trunk's flood of callers) does not lift the lock: the
    // failures of a source it cannot keep go to the trunk's overflow counter, and the
    // right answer reads that counter.
    let full = LocalRateCounter::new(4);
    for k in 0..10u64 {
        full.hit(
            sipfence::policy::rate::keyed_for(p.trunks[0].id, k),
            t,
            60_000,
        );
    }
    let in_full = |m: &Message, at: u64| {
        decide(
            &p,
            m,
            &Context {
                source: "10.0.0.3:5060".parse().unwrap(),
                local: None,
                trunk: None,
                now_ms: at,
                wall_ms: at,
                rates: &full,
                behaviour: &sipfence::behaviour::NoTracking,
            },
        )
    };
    for i in 0..3 {
        assert_eq!(auth(&in_full(&wrong, t + i)), Some("invalid"));
    }
    assert_eq!(auth(&in_full(&wrong, t + 3)), Some("locked"));
    let d = in_full(&right, t + 10);
    assert_eq!(
        (rejected(&d), auth(&d)),
        (Some((403, "trunk-auth")), Some("locked")),
        "{d:?}"
    );
    // max_failures_per_minute = 0: never locked.
    let p0 = Policy::from_str(
        &text.replace("max_failures_per_minute = 3", "max_failures_per_minute = 0"),
        "t.toml",
        Path::new("."),
    )
    .unwrap();
    let rates = LocalRateCounter::new(1000);
    let ctx = |at| Context {
        source: "10.0.0.3:5060".parse().unwrap(),
        local: None,
        trunk: None,
        now_ms: at,
        wall_ms: at,
        rates: &rates,
        behaviour: &sipfence::behaviour::NoTracking,
    };
    for i in 0..20 {
        assert_eq!(
            decide(&p0, &wrong, &ctx(t + i)).auth.map(|a| a.as_str()),
            Some("invalid")
        );
    }
    assert_eq!(rejected(&decide(&p0, &right, &ctx(t + 30))), None);
}

/// The protocol checks before the rules (`judge`): a request the proxy answers 400 /
/// 420 / 483 gets that verdict, naming no rule; `decide` alone still judges it by the
/// rules; a stranger's broken request is dropped when `unknown-source` drops, and
/// answered when a trunk is forced (`explain --trunk`, `replay --trunk`).
#[test]
fn protocol_checks_come_before_the_rules() {
    use sipfence::decide::judge;
    let p = Policy::from_str(POLICY, "t.toml", Path::new(".")).unwrap();
    let ctx = |trunk: &str, forced: Option<usize>| Context {
        source: src(trunk),
        local: None,
        trunk: forced,
        now_ms: MON_10H,
        wall_ms: MON_10H,
        rates: &NoCounting,
        behaviour: &sipfence::behaviour::NoTracking,
    };
    let two_from = invite(
        "+442071234567",
        "From: <sip:+8613812345678@10.9.9.9>;tag=x\r\n",
    );
    let d = judge(&p, &two_from, &ctx("intl", None));
    assert_eq!(
        (d.outcome, d.rule, d.refusal.map(|r| r.why)),
        (Outcome::Reject { code: 400 }, None, Some("Multiple From"))
    );
    // decide alone judges the first From, a foreign caller: let through. The proxy and
    // replay never do that (their checks come first).
    assert_eq!(rejected(&decide(&p, &two_from, &ctx("intl", None))), None);
    let mut out = vec![];
    assert!(verdict::write_reject(&p, &two_from, &d, None, &mut out));
    let r = String::from_utf8(out).unwrap();
    assert!(
        r.starts_with("SIP/2.0 400 Bad Request\r\n") && r.contains("text=\"Multiple From\""),
        "{r}"
    );
    // Two tags in From or To: which one names the dialog depends on who reads it (the
    // first here, the last in Kamailio): refused, in a call or within one (QA 66: a
    // To with a known tag and another passed unjudged). One tag in each passes.
    let text = String::from_utf8(invite("+442071234567", "").bytes().to_vec()).unwrap();
    for (from, to, why) in [
        (";tag=ft1;tag=zz", "", Some("Multiple From tags")),
        (";tag=ft1", ";tag=real;TAG=x", Some("Multiple To tags")),
        (";tag=ft1", ";tag=real", None),
        (";tag=ft1;x=\";tag=2\"", "", None),
    ] {
        let m = text.replace(";tag=ft1", from).replace(
            "To: <sip:4008001234@10.0.0.100>",
            &format!("To: <sip:4008001234@10.0.0.100>{to}"),
        );
        let m = Message::parse(Bytes::from(m)).unwrap();
        let d = judge(&p, &m, &ctx("intl", None));
        assert_eq!(d.refusal.map(|r| r.why), why, "{from} {to}");
        if why.is_some() {
            assert_eq!(d.outcome, Outcome::Reject { code: 400 });
        }
    }
    // A top Via answers could not come back by (QA 95: the call was carried, and every
    // answer dropped as malformed): refused. What a hop fills in, or an address, passes.
    for (via, why) in [
        ("10.9.9.9:5060;branch=z9hG4bK-v;rport=abc", Some("Bad Via")),
        (
            "10.9.9.9:5060;branch=z9hG4bK-v;rport=70000",
            Some("Bad Via"),
        ),
        ("10.9.9.9:5060;branch=z9hG4bK-v;rport=0", Some("Bad Via")),
        (
            "10.9.9.9:5060;branch=z9hG4bK-v;received=::zz::",
            Some("Bad Via"),
        ),
        (
            "10.9.9.9:5060;branch=z9hG4bK-v;received=gw.example",
            Some("Bad Via"),
        ),
        ("[]:5060;branch=z9hG4bK-v", Some("Bad Via")),
        ("[fe80::1%25eth0]:5060;branch=z9hG4bK-v", Some("Bad Via")),
        ("[1:2:3:4:5:6:7:8:9]:5060;branch=z9hG4bK-v", Some("Bad Via")),
        ("[10.9.9.9]:5060;branch=z9hG4bK-v", Some("Bad Via")),
        ("10.9.9.9:5060;branch=z9hG4bK-v;rport", None),
        ("10.9.9.9:5060;branch=z9hG4bK-v;RPORT ;x=1", None),
        (
            "10.9.9.9:5060;branch=z9hG4bK-v;rport=5062;received=10.9.9.8",
            None,
        ),
        (
            "[2001:db8::9]:5060;branch=z9hG4bK-v;received=2001:db8::8",
            None,
        ),
        ("gw.example.com;branch=z9hG4bK-v", None),
    ] {
        let m = text.replace(
            "Via: SIP/2.0/UDP 10.9.9.9:5060;branch=z9hG4bK-+442071234567",
            &format!("Via: SIP/2.0/UDP {via}"),
        );
        assert!(m.contains(via), "{m}");
        let m = Message::parse(Bytes::from(m)).unwrap();
        let d = judge(&p, &m, &ctx("intl", None));
        assert_eq!(d.refusal.map(|r| r.why), why, "{via}");
    }
    let no_hops = invite("+442071234567", "").bytes().to_vec();
    let no_hops = String::from_utf8(no_hops)
        .unwrap()
        .replace("Max-Forwards: 70", "Max-Forwards: 0");
    let no_hops = Message::parse(Bytes::from(no_hops)).unwrap();
    let d = judge(&p, &no_hops, &ctx("intl", None));
    assert_eq!(d.outcome, Outcome::Reject { code: 483 });
    // Judged by no rule, but its record names the caller (QA 56: a trace by number
    // never found protocol refusals).
    let r = sipfence::record::Record::new(&p, &no_hops, &d, src("intl"), MON_10H);
    assert_eq!(
        (r.caller.as_deref(), r.from.as_deref(), r.class),
        (
            Some("+442071234567"),
            Some("+442071234567"),
            Some("foreign")
        )
    );
    let d = judge(
        &p,
        &invite("+442071234567", "Proxy-Require: x-y\r\n"),
        &ctx("intl", None),
    );
    assert_eq!(d.outcome, Outcome::Reject { code: 420 });
    // A good request: exactly what decide says.
    let good = invite("+442071234567", "");
    let (a, b) = (
        judge(&p, &good, &ctx("intl", None)),
        decide(&p, &good, &ctx("intl", None)),
    );
    assert_eq!((a.outcome, a.rule, a.refusal), (b.outcome, b.rule, None));
    // A stranger: answered 400 by default, dropped when unknown-source drops.
    let d = judge(&p, &two_from, &ctx("stranger", None));
    assert_eq!((d.outcome, d.trunk), (Outcome::Reject { code: 400 }, None));
    let dropping = Policy::from_str(
        &format!("{POLICY}\n[rules.unknown-source]\naction = \"drop\"\n"),
        "t.toml",
        Path::new("."),
    )
    .unwrap();
    // As the unknown-source drop, not as a protocol refusal (QA 39: it was counted in
    // sipfence_protocol_refusals_total although nothing was answered).
    for m in [&two_from, &no_hops] {
        let d = judge(&dropping, m, &ctx("stranger", None));
        assert_eq!(
            (d.outcome, d.rule, d.refusal),
            (Outcome::Drop, Some(RuleId::UnknownSource), None)
        );
    }
    assert_eq!(
        judge(&dropping, &two_from, &ctx("stranger", Some(0))).outcome,
        Outcome::Reject { code: 400 }
    );
}

/// An INVITE inside dialog `call_id` (a To-tag), from `from_user` on its side `ftag`.
fn in_dialog_invite(call_id: &str, from_user: &str, ftag: &str, ttag: &str) -> Message {
    let s = format!(
        "INVITE sip:4008001234@10.9.9.8 SIP/2.0\r\nVia: SIP/2.0/UDP 10.9.9.9:5060;branch=z9hG4bK-re{ttag}\r\nFrom: <sip:{from_user}@10.9.9.9>;tag={ftag}\r\nTo: <sip:4008001234@10.0.0.100>;tag={ttag}\r\nCall-ID: {call_id}\r\nCSeq: 2 INVITE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    );
    Message::parse(Bytes::from(s)).unwrap()
}

/// A final answer to the INVITE (`method`) of dialog `call_id` whose caller's tag is
/// `ftag`, or a BYE within it.
fn dialog_message(first_line: &str, call_id: &str, ftag: &str, ttag: &str, cseq: &str) -> Message {
    let s = format!(
        "{first_line}\r\nVia: SIP/2.0/UDP 10.9.9.9:5060;branch=z9hG4bK-dm{ttag}\r\nFrom: <sip:a@10.9.9.9>;tag={ftag}\r\nTo: <sip:4008001234@10.0.0.100>;tag={ttag}\r\nCall-ID: {call_id}\r\nCSeq: {cseq}\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    );
    // Parsed as the proxy parses what it relays (a response's Via only).
    Message::parse_for_relay(Bytes::from(s)).unwrap()
}

#[test]
fn an_invite_in_a_dialog_never_answered_here_is_judged_as_a_call() {
    use sipfence::decide::track_dialog;
    use sipfence::policy::rate::DIALOG_MS;
    let p = policy("");
    let rates = LocalRateCounter::new(1000);
    let at = |m: &Message, t: u64| judge_at(&p, m, "intl", MON_10H + t, &rates);
    // An invented To-tag carries no call past the rules: a domestic caller on the
    // international gateway is refused as without it, a foreign one passes, both judged.
    let spoof = in_dialog_invite("c-1", "+8613812345678", "ft1", "made-up");
    let d = at(&spoof, 0);
    assert_eq!((d.kind, d.unknown_dialog), (Kind::Call, true));
    assert_eq!(rejected(&d), Some((403, "intl-domestic-caller")), "{d:?}");
    assert_eq!(
        sipfence::record::Record::new(&p, &spoof, &d, src("intl"), MON_10H).dialog,
        Some("unknown")
    );
    // Its ACK (same branch and Call-ID, RFC 3261 17.1.1.3) ends at sipfence: it carries
    // the peer's To-tag, not one of ours, so it is told by the transaction.
    let ack = |branch: &str| {
        Message::parse(Bytes::from(format!(
            "ACK sip:4008001234@10.9.9.8 SIP/2.0\r\nVia: SIP/2.0/UDP 10.9.9.9:5060;branch={branch}\r\nFrom: <sip:+8613812345678@10.9.9.9>;tag=ft1\r\nTo: <sip:4008001234@10.0.0.100>;tag=made-up\r\nCall-ID: c-1\r\nCSeq: 2 ACK\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        )))
        .unwrap()
    };
    use sipfence::decide::ack_to_our_refusal;
    assert!(ack_to_our_refusal(
        &ack("z9hG4bK-remade-up"),
        &rates,
        MON_10H + 100
    ));
    assert!(!ack_to_our_refusal(
        &ack("z9hG4bK-other"),
        &rates,
        MON_10H + 100
    ));
    assert!(
        !ack_to_our_refusal(&ack("z9hG4bK-remade-up"), &rates, MON_10H + 40_000),
        "the transaction is over"
    );
    let foreign = in_dialog_invite("c-1", "+442071234567", "ft1", "made-up");
    let d = at(&foreign, 0);
    assert_eq!(
        (d.kind, d.unknown_dialog, rejected(&d)),
        (Kind::Call, true, None)
    );

    // The dialog the core answered through us: its re-INVITEs are in-dialog, not
    // judged again (a session refresh without P-Asserted-Identity shows only the From,
    // which on the international gateway may be the +86 generic number the answer let
    // through).
    track_dialog(
        &dialog_message("SIP/2.0 200 OK", "c-2", "ft2", "uas2", "1 INVITE"),
        || true,
        &rates,
        MON_10H,
    );
    let refresh = in_dialog_invite("c-2", "+8613812345678", "ft2", "uas2");
    let d = at(&refresh, 60_000);
    assert_eq!(
        (d.kind, d.unknown_dialog, rejected(&d)),
        (Kind::InDialog, false, None)
    );
    // Another Call-ID is not that dialog.
    let d = at(
        &in_dialog_invite("c-2x", "+8613812345678", "ft2", "uas2"),
        60_000,
    );
    assert_eq!((d.kind, rejected(&d).map(|r| r.0)), (Kind::Call, Some(403)));
    // A 2xx a trunk peer makes up (nothing the core offered it) sets up nothing: else
    // a peer could answer itself and then call past the rules.
    let made_up = "c-3";
    track_dialog(
        &dialog_message("SIP/2.0 200 OK", made_up, "core7", "peer1", "1 INVITE"),
        || false,
        &rates,
        MON_10H,
    );
    let back = in_dialog_invite(made_up, "+8613812345678", "peer1", "core7");
    assert!(at(&back, 60_000).unknown_dialog);
    // A call the core offered the trunk, answered by the peer: the peer's re-INVITE
    // carries the core caller's tag as its To-tag, and is in-dialog.
    let offer = Message::parse(Bytes::from(format!(
        "INVITE sip:+8613812345678@10.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.100;branch=z9hG4bK-core\r\nFrom: <sip:4008001234@10.0.0.100>;tag=core7\r\nTo: <sip:+8613812345678@10.0.0.1>\r\nCall-ID: {made_up}\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    )))
    .unwrap();
    track_dialog(&offer, || true, &rates, MON_10H);
    track_dialog(
        &dialog_message("SIP/2.0 200 OK", made_up, "core7", "peer1", "1 INVITE"),
        || false,
        &rates,
        MON_10H + 1_000,
    );
    assert_eq!(at(&back, 60_000).kind, Kind::InDialog);
    // A provisional or failed answer sets up no dialog, nor a 200 to another method.
    for (line, cseq) in [
        ("SIP/2.0 180 Ringing", "1 INVITE"),
        ("SIP/2.0 486 Busy Here", "1 INVITE"),
        ("SIP/2.0 200 OK", "1 OPTIONS"),
    ] {
        track_dialog(
            &dialog_message(line, "c-4", "ft4", "uas4", cseq),
            || true,
            &rates,
            MON_10H,
        );
    }
    let d = at(
        &in_dialog_invite("c-4", "+8613812345678", "ft4", "uas4"),
        60_000,
    );
    assert!(d.unknown_dialog && rejected(&d).is_some());
    // A BYE (either side's) ends the dialog: an INVITE after it is judged again.
    track_dialog(
        &dialog_message("BYE sip:a@10.9.9.9 SIP/2.0", "c-2", "uas2", "ft2", "7 BYE"),
        || true,
        &rates,
        MON_10H + 90_000,
    );
    assert!(at(&refresh, 100_000).unknown_dialog);
    // A forked call: two dialogs of one Call-ID, told apart by the callee's tags. The
    // BYE that ends one leaves the other up (QA 64: it forgot both, and the survivor's
    // session refreshes were judged and counted as new calls); another tag is neither.
    for uas in ["fork-a", "fork-b"] {
        track_dialog(
            &dialog_message("SIP/2.0 200 OK", "c-5", "ft5", uas, "1 INVITE"),
            || true,
            &rates,
            MON_10H,
        );
    }
    // The caller's BYE (its tag in From), from the trunk's side.
    track_dialog(
        &dialog_message(
            "BYE sip:a@10.9.9.8 SIP/2.0",
            "c-5",
            "ft5",
            "fork-a",
            "2 BYE",
        ),
        || false,
        &rates,
        MON_10H + 1_000,
    );
    let fork = |uas: &str| in_dialog_invite("c-5", "+8613812345678", "ft5", uas);
    assert_eq!(at(&fork("fork-b"), 60_000).kind, Kind::InDialog);
    assert!(at(&fork("fork-a"), 60_000).unknown_dialog);
    assert!(at(&fork("fork-c"), 60_000).unknown_dialog);
    // A dialog is kept DIALOG_MS after its last 2xx: a 2xx to a re-INVITE refreshes it
    // (the core's to the peer's, whose tag is in From).
    track_dialog(
        &dialog_message("SIP/2.0 200 OK", "c-3", "peer1", "core7", "2 INVITE"),
        || true,
        &rates,
        MON_10H + DIALOG_MS - 1,
    );
    assert_eq!(at(&back, DIALOG_MS + 60_000).kind, Kind::InDialog);
    assert!(
        at(&back, 2 * DIALOG_MS).unknown_dialog,
        "forgotten in the end"
    );
    // A call the core offered, once answered, waits 64*T1 for other forks' 2xx, not
    // the ring time; its BYE leaves nothing of it in the table (QA 114: the offer's
    // mark stayed, a place per answered inbound call).
    let dialogs = || rates.recent().unwrap().tables()[0].1;
    let offer6 = String::from_utf8(offer.bytes().to_vec())
        .unwrap()
        .replace("Call-ID: c-3", "Call-ID: c-6");
    let offer6 = Message::parse(Bytes::from(offer6)).unwrap();
    track_dialog(&offer6, || true, &rates, MON_10H);
    let answer = |uas: &str, t: u64| {
        track_dialog(
            &dialog_message("SIP/2.0 200 OK", "c-6", "core7", uas, "1 INVITE"),
            || false,
            &rates,
            MON_10H + t,
        )
    };
    answer("peer1", 1_000);
    answer("peer2", 30_000);
    answer("peer3", 70_000);
    let leg = |uas: &str| in_dialog_invite("c-6", "+8613812345678", uas, "core7");
    assert_eq!(at(&leg("peer2"), 80_000).kind, Kind::InDialog);
    assert!(at(&leg("peer3"), 80_000).unknown_dialog);
    // Held: the two dialogs and the offer.
    let held = dialogs();
    for uas in ["peer1", "peer2"] {
        track_dialog(
            &dialog_message("BYE sip:a@10.9.9.8 SIP/2.0", "c-6", "core7", uas, "2 BYE"),
            || true,
            &rates,
            MON_10H + 90_000,
        );
    }
    assert_eq!(dialogs(), held - 3);
    // After a restart no dialog is known. The core's re-INVITE and the trunk side's 2xx
    // to it make one known again, whichever side placed the call (QA 185 M1: in a call
    // the core offered, the peer's re-INVITEs were judged as calls from the callee's
    // number for the rest of the call); a 2xx a trunk makes up to a re-INVITE the core
    // never sent makes nothing known.
    let fresh = LocalRateCounter::new(1000);
    let at_fresh = |m: &Message, t: u64| judge_at(&p, m, "intl", MON_10H + t, &fresh);
    let core_reinvite = |call_id: &str, core_tag: &str, trunk_tag: &str| {
        Message::parse(Bytes::from(format!(
            "INVITE sip:peer@192.0.2.77 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.100;branch=z9hG4bK-cr{call_id}\r\nFrom: <sip:4008001234@10.0.0.100>;tag={core_tag}\r\nTo: <sip:+442071234567@192.0.2.77>;tag={trunk_tag}\r\nCall-ID: {call_id}\r\nCSeq: 6 INVITE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        )))
        .unwrap()
    };
    for (call_id, trunk_tag, core_tag) in [("c-7", "peer7", "core7"), ("c-8", "ft8", "uas8")] {
        let trunks = in_dialog_invite(call_id, "+8613812345678", trunk_tag, core_tag);
        assert!(at_fresh(&trunks, 0).unknown_dialog, "{call_id}");
        let ok = dialog_message("SIP/2.0 200 OK", call_id, core_tag, trunk_tag, "6 INVITE");
        track_dialog(&ok, || false, &fresh, MON_10H + 1_000);
        assert!(
            at_fresh(&trunks, 2_000).unknown_dialog,
            "{call_id}: made up"
        );
        track_dialog(
            &core_reinvite(call_id, core_tag, trunk_tag),
            || true,
            &fresh,
            MON_10H + 3_000,
        );
        track_dialog(&ok, || false, &fresh, MON_10H + 3_500);
        assert_eq!(at_fresh(&trunks, 4_000).kind, Kind::InDialog, "{call_id}");
    }
    // Other in-dialog requests set up no call: they pass as before.
    let bye = dialog_message("BYE sip:a@10.9.9.8 SIP/2.0", "c-9", "x", "y", "3 BYE");
    assert_eq!(at(&bye, 0).kind, Kind::InDialog);
    // Without a memory (the benches) no dialog is known: judged.
    assert!(judge(&p, &refresh, "intl").unknown_dialog);

    // A trunk may trust its peer's To-tags.
    let trusting = Policy::from_str(
        &POLICY.replace(
            "role = \"international\"\n",
            "role = \"international\"\ntrust_in_dialog_invites = true\n",
        ),
        "test.toml",
        Path::new("."),
    )
    .unwrap();
    let d = judge(&trusting, &spoof, "intl");
    assert_eq!(
        (d.kind, d.unknown_dialog, rejected(&d)),
        (Kind::InDialog, false, None)
    );
}

/// Whose answers set up dialogs: the core (a next hop), from its own port or another;
/// never a trunk peer, even one on the core's host.
#[test]
fn the_core_side_is_told_by_the_next_hops() {
    let p = Policy::from_str(
        &POLICY.replace(
            "sources = [\"10.0.0.1\"]\n",
            "sources = [\"10.0.0.1\", \"10.0.0.50:5070\"]\nnext_hop = \"udp:10.0.0.50:5060\"\n",
        ),
        "test.toml",
        Path::new("."),
    )
    .unwrap();
    let side = |a: &str| p.from_core_side(&a.parse().unwrap());
    assert!(side("10.0.0.50:5060"), "the next hop itself");
    assert!(side("10.0.0.50:40123"), "the core's host, another port");
    assert!(
        side("[::ffff:10.0.0.50]:40123"),
        "seen on a dual-stack socket"
    );
    assert!(!side("10.0.0.50:5070"), "a trunk peer on the core's host");
    assert!(!side("10.0.0.1:5060"), "a trunk peer");
    assert!(!side("192.0.2.77:5060"), "a stranger");
}

/// RFC 3325 allows a sip and a tel P-Preferred-Identity, and Remote-Party-ID is a list:
/// every value is judged and deleted, not only the first. A first value that is the
/// caller's own number must not hide a second that is not.
#[test]
fn every_preferred_and_legacy_value_is_judged() {
    let p = policy("");
    let from = "<sip:+442071234567@gw.example>";
    let pai = "P-Asserted-Identity: <sip:+442071234567@gw.example>\r\n";
    let own = "<sip:+442071234567@gw.example>";
    let rpid_own = "<sip:+442071234567@gw>;party=calling;screen=no";
    let rpid_86 = "<tel:+8613812345678>;party=calling;screen=no";
    for extra in [
        format!("P-Preferred-Identity: {own}, <tel:+8613812345678>\r\n"),
        format!("P-Preferred-Identity: {own}\r\nP-Preferred-Identity: <tel:+8613812345678>\r\n"),
        format!(
            "P-Preferred-Identity: {own}, <tel:+442071234567>\r\nP-Preferred-Identity: <tel:+8613812345678>\r\n"
        ),
        format!("Remote-Party-ID: {rpid_own}\r\nRemote-Party-ID: {rpid_86}\r\n"),
        format!("Remote-Party-ID: {rpid_own}, {rpid_own}, {rpid_86}\r\n"),
    ] {
        for trunk in ["intl", "ic"] {
            let m = with_from(from, &format!("{pai}{extra}"));
            let d = passes(&p, &m, trunk);
            assert_eq!(d.rule, Some(RuleId::GenericNumber), "{trunk} {extra}");
            let out = String::from_utf8_lossy(forwarded(&p, &m, &d).buf()).into_owned();
            assert!(!out.contains("8613812345678"), "{trunk} {extra} -> {out}");
            assert!(!out.contains("P-Preferred-Identity"), "{out}");
            assert!(!out.contains("Remote-Party-ID"), "{out}");
            assert!(out.contains(pai), "{out}");
        }
    }
    // Every value the caller's own: nothing to delete.
    for extra in [
        format!("P-Preferred-Identity: {own}, <tel:+442071234567>\r\n"),
        format!("Remote-Party-ID: {rpid_own}\r\nRemote-Party-ID: {rpid_own}\r\n"),
    ] {
        let m = with_from(from, &format!("{pai}{extra}"));
        let d = passes(&p, &m, "intl");
        assert_eq!(d.rule, None, "{extra}");
        assert!(
            String::from_utf8_lossy(forwarded(&p, &m, &d).buf()).contains(&extra),
            "{extra}"
        );
    }
    // Enterprise: a contracted number first, another network's mobile second.
    let ent = |extra: &str| {
        with_from(
            "<sip:+8613912340001@10.9.9.9>",
            &format!("P-Asserted-Identity: <sip:+8613912340001@x>\r\n{extra}"),
        )
    };
    for extra in [
        "P-Preferred-Identity: <sip:+8613912340001@x>, <tel:+8613712345678>\r\n",
        "Remote-Party-ID: <sip:+8613912340001@x>;screen=no\r\nRemote-Party-ID: <sip:+8613712345678@x>;screen=no\r\n",
    ] {
        let d = judge(&p, &ent(extra), "ent");
        assert_eq!(
            rejected(&d),
            Some((403, "enterprise-not-whitelisted")),
            "{extra}"
        );
        assert!(d.presented_hits.contains(RuleId::EnterpriseNotWhitelisted));
    }
    let d = passes(
        &p,
        &ent("P-Preferred-Identity: <sip:+8613912340001@x>, <tel:+8613912340002>\r\n"),
        "ent",
    );
    assert_eq!(d.rule, None);
    // Two presented values that are not the caller's, or one of each field: the third
    // number is judged too (QA 50: only the first two distinct were).
    for (extra, want) in [
        (
            "P-Preferred-Identity: <sip:+8613912340002@x>, <tel:+8613800000001>\r\n",
            (608, "blacklist"),
        ),
        (
            "Remote-Party-ID: <sip:+8613912340002@x>;screen=no, <sip:+8613712345678@x>;screen=no\r\n",
            (403, "enterprise-not-whitelisted"),
        ),
        (
            "P-Preferred-Identity: <sip:+8613912340003@x>\r\nRemote-Party-ID: <tel:+8613800000001>;screen=no\r\n",
            (608, "blacklist"),
        ),
        (
            "P-Preferred-Identity: <tel:+8613912340003>, <sip:+8695588@x>\r\n",
            (403, "enterprise-not-whitelisted"),
        ),
    ] {
        let d = judge(&p, &ent(extra), "ent");
        assert_eq!(rejected(&d), Some(want), "{extra}");
        assert!(!d.presented_hits.is_empty(), "{extra}");
    }
    // Contracted numbers all: passes, however many fields show them.
    let d = passes(
        &p,
        &ent(
            "P-Preferred-Identity: <sip:+8613912340002@x>, <tel:+8613912340003>\r\nRemote-Party-ID: <tel:+8613912340004>;screen=no\r\n",
        ),
        "ent",
    );
    assert_eq!(d.rule, None);
    // More distinct numbers than are judged: refused, as one would go unjudged.
    let d = judge(
        &p,
        &ent(
            "P-Preferred-Identity: <sip:+8613912340002@x>, <tel:+8613912340003>\r\nRemote-Party-ID: <tel:+8613912340004>;screen=no, <tel:+8613912340005>;screen=no, <tel:+8613912340006>;screen=no\r\n",
        ),
        "ent",
    );
    assert_eq!(rejected(&d).map(|r| r.0), Some(400), "{d:?}");
    assert_eq!(d.refusal.map(|r| r.why), Some("Too Many Presented Numbers"));
}

/// An identity field that does not parse is refused (400), on every trunk: a lenient
/// element behind the filter (Wireshark's dissector reads most of these) would find the
/// number the filter could not judge. An empty field says nothing and passes.
#[test]
fn an_unreadable_identity_field_is_refused() {
    let p = policy("");
    let from = "<sip:+442071234567@gw.example>";
    let pai = "P-Asserted-Identity: <sip:+442071234567@gw.example>\r\n";
    for (field, why) in [
        ("P-Asserted-Identity", "Bad P-Asserted-Identity"),
        ("P-Preferred-Identity", "Bad P-Preferred-Identity"),
        ("Remote-Party-ID", "Bad Remote-Party-ID"),
    ] {
        for value in [
            "< tel:+8613812345678 >",
            "<tel:+8613812345678",
            "<tel:+8613812345678>\u{1}",
            "<tel:+442071234567> <tel:+8613812345678>",
            "<tel:+442071234567>;<tel:+8613812345678>",
            // A second value hidden in a quoted parameter, which a splitter at commas
            // that minds no quotes reads, or in URI headers (QA 173 F4).
            "<sip:+442071234567@x;user=phone>;foo=\"x, <tel:+8613812345678>\"",
            "<sip:+442071234567@x>;party=calling;x=\"a\\\"b <tel:+8613812345678>\"",
            "<sip:+442071234567@x?P-Asserted-Identity=tel:+8613812345678>",
            "<sip:+442071234567@x?X-A=1&p-asserted-%49dentity=tel:+8613812345678>",
            "<sip:+442071234567@x?P-Asserted-Identity%20=tel:+8613812345678>",
            "<sip:+442071234567@x?P-Asserted-Identity+=tel:+8613812345678>",
            "<sip:+442071234567@x?X-A=1;P-Asserted-Identity=tel:+8613812345678>",
            // A second '@', which no URI has: the core's parser refuses the URI (the
            // caller is then blank to it) or splits at the last '@' (QA 180).
            "<sip:+442071234567@+8613812345678@x>",
            "<sip:+442071234567@x@y;user=phone>",
            "sip:+442071234567@95588@x",
        ] {
            // A P-Asserted-Identity field is the only one; the others sit beside one.
            let extra = if field == "P-Asserted-Identity" {
                format!("{field}: {value}\r\n")
            } else {
                format!("{pai}{field}: {value}\r\n")
            };
            for trunk in ["intl", "ic", "ent"] {
                let d = judge(&p, &with_from(from, &extra), trunk);
                assert_eq!(
                    d.outcome,
                    Outcome::Reject { code: 400 },
                    "{trunk} {extra:?}"
                );
                assert_eq!(d.refusal.map(|r| r.why), Some(why), "{extra:?}");
            }
        }
        // The same in From (QA 176 N5), on every trunk.
        for from in [
            "<sip:+442071234567@gw.example?P-Asserted-Identity=tel:+8613812345678>",
            "<sip:+442071234567@gw.example>;x=\"a, <tel:+8613812345678>\"",
            "<sip:+442071234567@+8613812345678@gw.example>",
            "sip:+864008001234@95588@pbx.example",
        ] {
            for trunk in ["intl", "ic", "ent"] {
                let d = judge(&p, &with_from(from, pai), trunk);
                assert_eq!(rejected(&d).map(|r| r.0), Some(400), "{trunk} {from}");
                assert_eq!(d.refusal.map(|r| r.why), Some("Bad From"), "{from}");
            }
        }
        // The refusal says why, in the response the peer gets.
        let m = with_from(from, &format!("{field}: <tel:+8613812345678\r\n"));
        let d = judge(&p, &m, "intl");
        let mut out = vec![];
        assert!(verdict::write_reject(&p, &m, &d, None, &mut out));
        let text = String::from_utf8_lossy(&out);
        assert!(text.starts_with("SIP/2.0 400 "), "{text}");
        assert!(text.contains(why), "{text}");
    }
    // An asserted identity of another scheme than sip, sips and tel (RFC 3325 9.1),
    // first or second (QA 61: `h323:95588` went on as the first value); the usual
    // pair passes.
    for pai in [
        "\"95588\" <h323:95588@gw.example>, <sip:+442071234567@x>",
        "<sip:+442071234567@x>, <fax:+8613812345678>",
        "<H323:95588@gw.example>",
    ] {
        for trunk in ["intl", "ic", "ent"] {
            let d = judge(
                &p,
                &with_from(from, &format!("P-Asserted-Identity: {pai}\r\n")),
                trunk,
            );
            assert_eq!(d.outcome, Outcome::Reject { code: 400 }, "{trunk} {pai}");
            assert_eq!(d.refusal.map(|r| r.why), Some("Bad P-Asserted-Identity"));
        }
    }
    let d = judge(
        &p,
        &with_from(
            from,
            "P-Asserted-Identity: <SIP:+442071234567@x>, <Tel:+442071234567>\r\n",
        ),
        "intl",
    );
    assert_eq!(d.refusal, None);
    // An escaped '@' in the user part, and one in a URI header's value, are no second
    // '@' of the URI.
    for from in [
        "<sip:+442071234567%40x@gw.example>",
        "<sip:+442071234567@gw.example?Subject=a@b>",
    ] {
        let d = judge(&p, &with_from(from, pai), "intl");
        assert_ne!(d.outcome, Outcome::Reject { code: 400 }, "{from}: {d:?}");
    }
    // Empty list elements are passed over, as lenient stacks do, and every value
    // around them judged.
    let d = judge(
        &p,
        &with_from(from, "P-Asserted-Identity: , <tel:+8613812345678>\r\n"),
        "intl",
    );
    assert_eq!(rejected(&d), Some((403, "intl-domestic-caller")));
    for value in [
        ", <tel:+8613812345678>",
        "<sip:+442071234567@gw.example>,, <tel:+8613812345678>",
        "<sip:+442071234567@gw.example>, <tel:+8613812345678>,",
    ] {
        let m = with_from(from, &format!("{pai}P-Preferred-Identity: {value}\r\n"));
        let d = passes(&p, &m, "intl");
        assert_eq!(d.rule, Some(RuleId::GenericNumber), "{value}");
        let out = String::from_utf8_lossy(forwarded(&p, &m, &d).buf()).into_owned();
        assert!(!out.contains("8613812345678"), "{out}");
    }
    // What RFC 3325 senders write passes as before.
    for extra in [
        format!("{pai}P-Preferred-Identity: <sip:+442071234567@gw.example>,\r\n"),
        "P-Asserted-Identity: \r\n".to_string(),
        format!("{pai}P-Asserted-Identity: \r\n"),
        "P-Asserted-Identity: <sip:+442071234567@gw.example>, <tel:+442071234567>\r\n".into(),
        format!("{pai}P-Preferred-Identity: \"Bob\" <sip:+442071234567@gw.example>\r\n"),
        format!(
            "{pai}Remote-Party-ID: \"Bob\" <sip:+442071234567@gw>;party=calling;screen=no;privacy=off\r\n"
        ),
    ] {
        assert_eq!(
            passes(&p, &with_from(from, &extra), "intl").rule,
            None,
            "{extra}"
        );
    }
}

/// A display name shows a number through what a screen does not show (zero-width and
/// bidi characters, soft hyphens, the byte order mark) and across what it shows as a
/// gap (Unicode spaces, TAB, dashes, middle dots); two numbers side by side, or a number
/// and a stray digit, still show the number.
#[test]
fn display_names_show_numbers_through_unicode_and_beside_others() {
    let p = policy("");
    let pai = "P-Asserted-Identity: <sip:+442071234567@x>\r\n";
    for display in [
        "138\u{200b}1234\u{200c}5678",
        "138\u{200d}12345678\u{2060}",
        "\u{feff}138\u{ad}1234\u{200e}5678\u{200f}",
        "138\u{a0}1234\u{a0}5678",
        "138\u{202f}1234\u{2009}5678",
        "138\u{2002}1234\t5678",
        "138\u{2010}1234\u{2011}5678",
        "138\u{2013}1234\u{2212}5678",
        "138\u{b7}1234\u{b7}5678",
        "13812345678 13812345678",
        "13812345678 2nd",
        "+442071234567 13812345678",
        "报警110 1号",
    ] {
        let m = with_from(&format!("\"{display}\" <sip:+442071234567@10.9.9.9>"), pai);
        assert_eq!(
            rewritten_from(&p, &m),
            b"<sip:+442071234567@10.9.9.9>;tag=ft1".to_vec(),
            "{display:?}"
        );
    }
    // A Latin-1 no-break space byte, as some PBXs write, separates too.
    let raw = b"INVITE sip:4008001234@10.0.0.100 SIP/2.0\r\nVia: SIP/2.0/UDP 10.9.9.9:5060;branch=z9hG4bK-nb\r\nFrom: \"138\xa01234\xa05678\" <sip:+442071234567@10.9.9.9>;tag=ft1\r\nTo: <sip:4008001234@10.0.0.100>\r\nCall-ID: nb\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\nP-Asserted-Identity: <sip:+442071234567@x>\r\nContent-Length: 0\r\n\r\n";
    let m = Message::parse(Bytes::from_static(raw)).unwrap();
    assert_eq!(
        rewritten_from(&p, &m),
        b"<sip:+442071234567@10.9.9.9>;tag=ft1".to_vec()
    );
    // The caller's own number, however written, and names: nothing to delete.
    for display in [
        "+44\u{a0}20\u{a0}7123\u{a0}4567",
        "+44 20 7123 4567 ext 2",
        "Room 1203",
        "Flat 3, 12 High St",
    ] {
        let m = with_from(&format!("\"{display}\" <sip:+442071234567@10.9.9.9>"), pai);
        assert_eq!(passes(&p, &m, "intl").rule, None, "{display:?}");
    }
    // Enterprise: a contracted number beside another network's mobile is refused; two
    // contracted numbers, or one written with Unicode gaps, pass.
    let ent = |display: &str| {
        with_from(
            &format!("\"{display}\" <sip:+8613912340001@10.9.9.9>"),
            "P-Asserted-Identity: <sip:+8613912340001@x>\r\n",
        )
    };
    for display in [
        "13912340001 13712345678",
        "137\u{200b}1234\u{200b}5678",
        "Sales 13912340001, 13712345678",
    ] {
        let d = judge(&p, &ent(display), "ent");
        assert_eq!(
            rejected(&d),
            Some((403, "enterprise-not-whitelisted")),
            "{display:?}"
        );
        assert!(d.presented_hits.contains(RuleId::EnterpriseNotWhitelisted));
    }
    // Copies of the contracted number do not push another number out of sight.
    let stuffed = format!("{}13712345678", "13912340001 ".repeat(4));
    assert_eq!(
        rejected(&judge(&p, &ent(&stuffed), "ent")),
        Some((403, "enterprise-not-whitelisted"))
    );
    for display in [
        "13912340001 13912340002",
        "139\u{a0}1234\u{a0}0001",
        "Desk 13912340001 ext 2",
    ] {
        assert_eq!(passes(&p, &ent(display), "ent").rule, None, "{display:?}");
    }
    assert_eq!(
        passes(&p, &ent(&"13912340001 ".repeat(40)), "ent").rule,
        None
    );
}

/// A P-Asserted-Identity display name reads numbers among words as From's does.
#[test]
fn an_asserted_display_name_reads_numbers_among_words() {
    let p = policy("");
    for pai in [
        "\"x, <tel:+8613812345678>\" <sip:+442071234567@gw.example>",
        "\"Police 110\" <sip:+442071234567@gw.example>",
        "\"13812345678 2nd\" <sip:+442071234567@gw.example>",
    ] {
        let m = with_from(
            "<sip:+442071234567@gw.example>",
            &format!("P-Asserted-Identity: {pai}\r\n"),
        );
        let d = passes(&p, &m, "intl");
        assert_eq!(d.rule, Some(RuleId::GenericNumber), "{pai}");
        let out = forwarded(&p, &m, &d);
        assert_eq!(
            out.value(HeaderName::PAssertedIdentity),
            Some(&b"<sip:+442071234567@gw.example>"[..]),
            "{pai}"
        );
    }
    let m = with_from(
        "<sip:+442071234567@gw.example>",
        "P-Asserted-Identity: \"London office\" <sip:+442071234567@gw.example>\r\n",
    );
    assert_eq!(passes(&p, &m, "intl").rule, None);
}

/// A local number in a foreign phone-context is that country's number: at the
/// international and interconnect gateways it goes on in global form, so that
/// equipment that drops the context (ISUP interworking) cannot show the local digits
/// as a domestic number.
#[test]
fn local_numbers_in_a_foreign_context_go_on_in_global_form() {
    let p = policy("");
    for (from, want) in [
        ("<tel:95588;phone-context=+852>", "<tel:+85295588>;tag=ft1"),
        (
            "\"95588\" <tel:95588;phone-context=+852>",
            "\"+85295588\" <tel:+85295588>;tag=ft1",
        ),
        (
            "<tel:13812345678;phone-context=+44>",
            "<tel:+4413812345678>;tag=ft1",
        ),
        (
            "<sip:13812345678;phone-context=+44@gw.example;user=phone>",
            "<sip:+4413812345678@gw.example;user=phone>",
        ),
        (
            "<tel:95588;isub=12;Phone-Context=+852>",
            "<tel:+85295588;isub=12>;tag=ft1",
        ),
        // Escaped, the same context (QA 54: read in the home plan and refused).
        (
            "<sip:21234567;phone-context=%2B852@gw.hk.example;user=phone>",
            "<sip:+85221234567@gw.hk.example;user=phone>",
        ),
        // An escaped name too: the next element reads it as the context (RFC 3261
        // 19.1.4), and it goes with the rewrite.
        (
            "<sip:21234567;phone%2Dcontext=+852@gw.hk.example;user=phone>",
            "<sip:+85221234567@gw.hk.example;user=phone>",
        ),
        (
            "<tel:95588;Phone%2dContext=%2B852>",
            "<tel:+85295588>;tag=ft1",
        ),
        // A context of dialled digits that leads abroad is that country's number too
        // (QA 60, QA 61: judged foreign, it went on as written, and a core dropping the
        // context showed the bank's 95588, the domestic mobile, the hotline 12345).
        (
            "\"95588\" <tel:95588;phone-context=00852>",
            "\"+85295588\" <tel:+85295588>;tag=ft1",
        ),
        (
            "<sip:13812345678;phone-context=004@gw.example;user=phone>",
            "<sip:+413812345678@gw.example;user=phone>",
        ),
        (
            "<tel:95588;phone%2Dcontext=00-852>",
            "<tel:+85295588>;tag=ft1",
        ),
    ] {
        for trunk in ["intl", "ic"] {
            let m = with_from(from, "");
            let d = passes(&p, &m, trunk);
            let out = forwarded(&p, &m, &d);
            let got = String::from_utf8_lossy(out.value(HeaderName::From).unwrap()).into_owned();
            assert!(got.starts_with(want), "{trunk} {from} -> {got}");
        }
    }
    // The asserted identity too, labelled service-shape with the verstat after the
    // number; a sip URI written in global form gets it as one that came so would (QA
    // 43: it went on without).
    for (pai, want) in [
        (
            "<tel:95588;phone-context=+852>",
            "<tel:+85295588;verstat=TN-Validation-Failed>",
        ),
        (
            "<sip:95588;phone-context=+852@x>",
            "<sip:+85295588;verstat=TN-Validation-Failed@x;user=phone>",
        ),
        (
            "<tel:95588;phone-context=00852>",
            "<tel:+85295588;verstat=TN-Validation-Failed>",
        ),
    ] {
        let m = with_from(
            "<tel:+85221234567>",
            &format!("P-Asserted-Identity: {pai}\r\n"),
        );
        let d = passes(&p, &m, "intl");
        let out = forwarded(&p, &m, &d);
        assert_eq!(
            out.value(HeaderName::PAssertedIdentity),
            Some(want.as_bytes()),
            "{pai}"
        );
    }
    // A context that changes nothing (the digits alone are the number), a global
    // number, a domain context: as written, on any trunk.
    for (from, trunk) in [
        ("<tel:13812345678;phone-context=+86>", "ic"),
        ("<tel:13912340001;phone-context=+86>", "ent"),
        ("<tel:+85295588>", "intl"),
        ("<tel:6543;phone-context=example.com>", "ic"),
    ] {
        let m = with_from(from, "");
        let d = judge(&p, &m, trunk);
        if rejected(&d).is_none() {
            let out = forwarded(&p, &m, &d);
            let got = String::from_utf8_lossy(out.value(HeaderName::From).unwrap()).into_owned();
            assert!(got.starts_with(from), "{trunk} {from} -> {got}");
        }
    }
    // A home context whose digits alone are another number: in global form too, on
    // every trunk (QA 61: an enterprise's contracted +8613912340110 written as `110` in
    // the context +8613912340 passed the whitelist and showed the callee 110).
    for (from, trunk, want) in [
        (
            "<tel:12345678;phone-context=010>",
            "ic",
            "<tel:+861012345678>;tag=ft1",
        ),
        (
            "\"110\" <tel:110;phone-context=+8613912340>",
            "ent",
            "\"+8613912340110\" <tel:+8613912340110>;tag=ft1",
        ),
        (
            "<sip:110;phone-context=013912340@pbx.example;user=phone>",
            "ent",
            "<sip:+8613912340110@pbx.example;user=phone>",
        ),
    ] {
        let m = with_from(from, "");
        let d = passes(&p, &m, trunk);
        let out = forwarded(&p, &m, &d);
        let got = String::from_utf8_lossy(out.value(HeaderName::From).unwrap()).into_owned();
        assert!(got.starts_with(want), "{trunk} {from} -> {got}");
    }
    let m = with_from(
        "<tel:+8613912340001>",
        "P-Asserted-Identity: <tel:3912340001;phone-context=+861>\r\n",
    );
    let d = judge(&p, &m, "ent");
    let out = forwarded(&p, &m, &d);
    assert_eq!(
        out.value(HeaderName::PAssertedIdentity),
        Some(&b"<tel:+8613912340001>"[..])
    );
}

/// On a `bare_numbers = "international"` trunk a Remote-Party-ID display name that
/// repeats its URI's number gets the '+' as the URI does (a phone shows it).
#[test]
fn bare_numbers_in_remote_party_id_display_names_get_their_plus() {
    let p = policy(
        "[[trunk]]\nname = \"intl-bare\"\nrole = \"international\"\nsources = [\"10.0.0.4\"]\nbare_numbers = \"international\"",
    );
    let m = with_from(
        "\"13812345678\" <sip:13812345678@10.9.9.9;user=phone>",
        "Remote-Party-ID: \"13812345678\" <sip:13812345678@10.9.9.9;user=phone>;party=calling;screen=yes\r\n",
    );
    let d = passes(&p, &m, "intl-bare");
    assert_eq!(
        d.caller.map(|n| n.to_string()).as_deref(),
        Some("+13812345678")
    );
    let out = forwarded(&p, &m, &d);
    assert_eq!(
        out.value(HeaderName::RemotePartyId),
        Some(
            &b"\"+13812345678\" <sip:+13812345678@10.9.9.9;user=phone>;party=calling;screen=yes"[..]
        )
    );
    assert!(
        out.value(HeaderName::From)
            .unwrap()
            .starts_with(b"\"+13812345678\" <sip:+13812345678@")
    );
}

/// A message may carry up to 254 header fields: a 200 OK that crossed 70 proxies (one
/// Record-Route each) is a call answered, and an INVITE with 100 fields is judged; 255
/// is a flood, refused.
#[test]
fn many_header_fields_are_read() {
    let mut ok = String::from(
        "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 10.0.0.100;branch=z9hG4bK1\r\nVia: SIP/2.0/UDP 10.9.9.9;branch=z9hG4bK2\r\n",
    );
    for i in 0..70 {
        ok.push_str(&format!("Record-Route: <sip:p{i}.example;lr>\r\n"));
    }
    ok.push_str("From: <sip:+8613912340001@x>;tag=1\r\nTo: <sip:b@x>;tag=2\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n");
    let m =
        Message::parse_for_relay(Bytes::from(ok.clone())).expect("a 200 OK with 70 Record-Routes");
    assert_eq!(m.all(HeaderName::RecordRoute).count(), 70);
    let p = policy("");
    let mut extra = String::new();
    for i in 0..100 {
        extra.push_str(&format!("X-Hop-{i}: {i}\r\n"));
    }
    let m = with_from("<sip:+442071234567@gw.example>", &extra);
    assert_eq!(passes(&p, &m, "intl").rule, None);
    for i in 100..260 {
        extra.push_str(&format!("X-Hop-{i}: {i}\r\n"));
    }
    let s = format!(
        "INVITE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:b@c>\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\n{extra}\r\n"
    );
    let e = Message::parse(Bytes::from(s)).unwrap_err();
    assert_eq!(e.kind, sipfence::sip::ErrorKind::TooManyHeaders);
}

/// A URI whose host breaks the grammar (`sbc_01.carrier.example`, `gw:`, no host) still
/// shows its number: it is read, judged and rewritten as any other, not taken for a
/// caller without a number.
#[test]
fn a_number_behind_an_odd_host_is_read() {
    let p = policy("");
    let pai = "P-Asserted-Identity: <sip:+442071234567@uk.example>\r\n";
    // Rewritten whole (QA 25): a URI that breaks the grammar is not sent on edited.
    for (from, want) in [
        ("<sip:+8613812345678@gw_1>", "<tel:+442071234567>;tag=ft1"),
        (
            "<sip:+8613812345678@gw.example:>",
            "<tel:+442071234567>;tag=ft1",
        ),
        ("<sip:110@gw_1;user=phone>", "<tel:+442071234567>;tag=ft1"),
    ] {
        let m = with_from(from, pai);
        assert_eq!(
            String::from_utf8_lossy(&rewritten_from(&p, &m)),
            want,
            "{from}"
        );
    }
    for extra in [
        "P-Preferred-Identity: <sip:110@gw_1>\r\n",
        "Remote-Party-ID: <sip:110@gw.example:>;party=calling\r\n",
    ] {
        let m = with_from("<sip:+442071234567@uk.example>", &format!("{pai}{extra}"));
        let d = passes(&p, &m, "intl");
        assert_eq!(d.rule, Some(RuleId::GenericNumber), "{extra}");
        let out = String::from_utf8_lossy(forwarded(&p, &m, &d).buf()).into_owned();
        assert!(!out.contains("sip:110@"), "{out}");
    }
    let ent = with_from(
        "<sip:+8613912340001@10.9.9.9>",
        "P-Asserted-Identity: <sip:+8613912340001@x>\r\nP-Preferred-Identity: <sip:13712345678@pbx_1>\r\n",
    );
    assert_eq!(
        rejected(&judge(&p, &ent, "ent")),
        Some((403, "enterprise-not-whitelisted"))
    );
    // A foreign caller behind an SBC whose name has an underscore is a caller.
    let m = with_from("<sip:+442071234567@sbc_01.carrier.example>", "");
    assert_eq!(passes(&p, &m, "intl").rule, None);
    let m = with_from(
        "<sip:+442071234567@sbc_01.carrier.example>",
        "P-Asserted-Identity: <sip:+442071234567@sbc_01.carrier.example>\r\n",
    );
    assert_eq!(passes(&p, &m, "intl").rule, None);
}

/// A number in the password of From's userinfo (`<sip:+442071234567:110@gw>`) is shown
/// as much as one in its display name (QA 130: the service number went on to the
/// callee, unjudged): at the international gateway From is rewritten to the asserted
/// identity, on an enterprise trunk it must be contracted. A password that is no number
/// changes nothing.
#[test]
fn a_number_in_a_uri_password_is_a_presented_number() {
    let p = policy("");
    let pai = "P-Asserted-Identity: <sip:+442071234567@uk.example>\r\n";
    let m = with_from("<sip:+442071234567:110@uk.example>", pai);
    let d = passes(&p, &m, "intl");
    assert_eq!(d.rule, Some(RuleId::GenericNumber));
    let out = String::from_utf8_lossy(forwarded(&p, &m, &d).buf()).into_owned();
    assert!(!out.contains(":110@"), "{out}");
    // Without an asserted identity From keeps its own number, without the password.
    let m = with_from("<sip:+442071234567:110@uk.example>", "");
    assert_eq!(rewritten_from(&p, &m), b"<tel:+442071234567>;tag=ft1");
    // Seen in a P-Preferred-Identity too, which goes.
    let m = with_from(
        "<sip:+442071234567@uk.example>",
        &format!("{pai}P-Preferred-Identity: <sip:+442071234567:95588@uk.example>\r\n"),
    );
    assert_eq!(passes(&p, &m, "intl").rule, Some(RuleId::GenericNumber));
    for from in [
        "<sip:+442071234567:secret@uk.example>",
        "<sip:+442071234567@uk.example>",
    ] {
        assert_eq!(
            passes(&p, &with_from(from, pai), "intl").rule,
            None,
            "{from}"
        );
    }
    let ent = |from: &str| judge(&p, &with_from(from, ""), "ent");
    assert_eq!(
        rejected(&ent("<sip:+8613912340001:95588@10.9.9.9>")),
        Some((403, "enterprise-not-whitelisted"))
    );
    // No user: the password is all the URI shows (QA 133).
    let behind = |from: &str| {
        judge(
            &p,
            &with_from(
                from,
                "P-Asserted-Identity: <sip:+8613912340001@10.9.9.9>\r\n",
            ),
            "ent",
        )
    };
    assert_eq!(
        rejected(&behind("<sip::95588@10.9.9.9>")),
        Some((403, "enterprise-not-whitelisted"))
    );
    assert_eq!(rejected(&behind("<sip::13912340002@10.9.9.9>")), None);
    let m = with_from("<sip::110@uk.example>", pai);
    assert_eq!(rewritten_from(&p, &m), b"<tel:+442071234567>;tag=ft1");
    assert_eq!(rejected(&ent("<sip:+8613912340001:pw@10.9.9.9>")), None);
}

/// Every identity header's display name is read, the asserted Remote-Party-ID's and
/// P-Preferred-Identity's too; and a P-Preferred-Identity or unasserted
/// Remote-Party-ID that presents a name, or digits that are no number, goes at the
/// gateways as From presenting one does.
#[test]
fn every_identity_display_name_and_odd_user_part_is_read() {
    let p = policy(
        "[[trunk]]\nname = \"intl-bare\"\nrole = \"international\"\nsources = [\"10.0.0.4\"]\nbare_numbers = \"international\"",
    );
    let from = "<sip:+442071234567@uk.example>";
    // The asserted Remote-Party-ID's display name: removed, the value kept.
    let m = with_from(
        from,
        "Remote-Party-ID: \"110\" <sip:+442071234567@uk.example>;party=calling;screen=yes\r\n",
    );
    let d = passes(&p, &m, "intl");
    assert_eq!(d.rule, Some(RuleId::GenericNumber));
    assert_eq!(
        forwarded(&p, &m, &d).value(HeaderName::RemotePartyId),
        Some(&b"<sip:+442071234567@uk.example>;party=calling;screen=yes"[..])
    );
    for extra in [
        "P-Preferred-Identity: \"95588\" <sip:gw@carrier.example>\r\n",
        "P-Preferred-Identity: \"中国银行95588\" <sip:gw@x>\r\n",
        "P-Preferred-Identity: \"110\" <sip:+442071234567@uk.example>\r\n",
        "P-Preferred-Identity: <sip:gw@carrier.example>\r\n",
        "P-Preferred-Identity: <sip:95588,1@x>\r\n",
        "Remote-Party-ID: <sip:95588p1@x;user=phone>;party=calling;screen=no\r\n",
    ] {
        let m = with_from(
            from,
            &format!("P-Asserted-Identity: <sip:+442071234567@uk.example>\r\n{extra}"),
        );
        let d = passes(&p, &m, "intl");
        assert_eq!(d.rule, Some(RuleId::GenericNumber), "{extra}");
        let out = String::from_utf8_lossy(forwarded(&p, &m, &d).buf()).into_owned();
        assert!(
            !out.contains("P-Preferred-Identity") && !out.contains("Remote-Party-ID"),
            "{out}"
        );
    }
    // Enterprise: what the asserted Remote-Party-ID's display name or a From user part
    // that is no number shows must be contracted too.
    for (from, extra) in [
        (
            "<sip:+8613912340001@10.9.9.9>",
            "Remote-Party-ID: \"13712345678\" <sip:+8613912340001@x>;party=calling;screen=yes\r\n",
        ),
        (
            "<sip:13712345678,1@10.9.9.9>",
            "P-Asserted-Identity: <sip:+8613912340001@x>\r\n",
        ),
    ] {
        let d = judge(&p, &with_from(from, extra), "ent");
        assert_eq!(
            rejected(&d),
            Some((403, "enterprise-not-whitelisted")),
            "{from} {extra}"
        );
    }
    assert_eq!(
        passes(
            &p,
            &with_from(
                "<sip:+8613912340001@10.9.9.9>",
                "Remote-Party-ID: \"13912340001\" <sip:+8613912340001@x>;party=calling;screen=yes\r\n"
            ),
            "ent"
        )
        .rule,
        None
    );
    // A peer writing bare numbers: a display name writing them otherwise than the URI
    // is read in the home plan, a domestic mobile, and goes.
    let m = with_from(
        "<sip:13812345678@10.9.9.9;user=phone>",
        "Remote-Party-ID: \"138-1234-5678\" <sip:13812345678@10.9.9.9;user=phone>;party=calling;screen=yes\r\n",
    );
    let d = passes(&p, &m, "intl-bare");
    assert_eq!(d.rule, Some(RuleId::GenericNumber));
    let out = forwarded(&p, &m, &d);
    assert_eq!(
        out.value(HeaderName::RemotePartyId),
        Some(&b"<sip:+13812345678@10.9.9.9;user=phone>;party=calling;screen=yes"[..])
    );
}

/// Numbers hidden in display names with quoted-pairs, a right-to-left override, other
/// scripts' digits and digit forms, marks and invisible characters, other separators,
/// Latin-1 bytes and control characters are read; long runs of digits before one do not
/// hide it; two numbers run together are digits no plan holds.
#[test]
fn display_names_hide_no_number() {
    let p = policy("");
    let pai = "P-Asserted-Identity: <sip:+442071234567@uk.example>\r\n";
    for display in [
        "9\\5\\5\\8\\8",
        "Bank \u{202e}88559\u{202c}",
        "9\u{34f}5588",
        "9\u{fe0f}\u{20e3}5588",
        "95\u{e0041}588",
        "9\u{180e}5588",
        "৯৫৫৮৮",
        "໙໕໕໘໘",
        "၉၅၅၈၈",
        "⁹⁵⁵⁸⁸",
        "⑨⑤⑤⑧⑧",
        "🯹🯵🯵🯸🯸",
        "9\u{301}5588",
        "138\u{1680}1234\u{1680}5678",
        "138\u{2022}1234\u{2022}5678",
        "138/1234/5678",
        "138_1234_5678",
        "9\u{1}5588",
        "1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 95588",
    ] {
        let m = with_from(
            &format!("\"{display}\" {}", "<sip:+442071234567@uk.example>"),
            pai,
        );
        assert_eq!(
            rewritten_from(&p, &m),
            b"<sip:+442071234567@uk.example>;tag=ft1".to_vec(),
            "{display:?}"
        );
    }
    // Latin-1 soft hyphen and middle dot bytes.
    for raw in [&b"9\xad5588"[..], &b"138\xb71234\xb75678"[..]] {
        let mut s = b"INVITE sip:4008001234@10.0.0.100 SIP/2.0\r\nVia: SIP/2.0/UDP 10.9.9.9:5060;branch=z9hG4bK-l1\r\nFrom: \"".to_vec();
        s.extend_from_slice(raw);
        s.extend_from_slice(b"\" <sip:+442071234567@uk.example>;tag=ft1\r\nTo: <sip:4008001234@10.0.0.100>\r\nCall-ID: l1\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\nP-Asserted-Identity: <sip:+442071234567@uk.example>\r\nContent-Length: 0\r\n\r\n");
        let m = Message::parse(Bytes::from(s)).unwrap();
        assert_eq!(
            rewritten_from(&p, &m),
            b"<sip:+442071234567@uk.example>;tag=ft1".to_vec()
        );
    }
    // The caller's own number with the bracketed trunk prefix is the caller's.
    for display in ["+44 (0)20 7123 4567", "Acme 24/7", "Flat 3, 12 High St"] {
        let m = with_from(
            &format!("\"{display}\" <sip:+442071234567@uk.example>"),
            pai,
        );
        let d = passes(&p, &m, "intl");
        assert_eq!(d.rule, None, "{display:?}");
    }
    // Enterprise: two numbers run together are digits no plan holds.
    for display in ["1391234000113712345678", "13912340001\u{200b}13712345678"] {
        let m = with_from(
            &format!("\"{display}\" <sip:+8613912340001@10.9.9.9>"),
            "P-Asserted-Identity: <sip:+8613912340001@x>\r\n",
        );
        let d = judge(&p, &m, "ent");
        assert_eq!(rejected(&d), Some((403, "numbering-plan")), "{display:?}");
        assert!(d.presented_hits.contains(RuleId::NumberingPlan));
    }
}

/// Two phone-contexts name two places: the number is read without one, in the home
/// plan, and judged there.
#[test]
fn two_phone_contexts_are_none() {
    let p = policy("");
    for from in [
        "<tel:95588;phone-context=+852;phone-context=+86>",
        "<tel:95588;phone-context=+86;phone-context=+852>",
    ] {
        blocks(&p, &with_from(from, ""), "intl", 403, "intl-forged-service");
    }
}

/// QA pass 9: right-to-left paragraphs, Remote-Party-ID's `party` written otherwise,
/// marks and fillers of every script, bidi controls in bulk, GBK bytes: none hides a
/// number; dates, prices and versions show none.
#[test]
fn display_names_as_drawn_and_not_misread() {
    let p = policy("");
    let uk = "<sip:+442071234567@uk.example>";
    let pai = "P-Asserted-Identity: <sip:+442071234567@uk.example>\r\n";
    for display in [
        "\u{200f}588 95 中国银行".to_string(),
        "בנק 588 95".to_string(),
        "9\u{302a}5588".to_string(),
        "9\u{64b}5588".to_string(),
        "95\u{80}588".to_string(),
        "a\u{115f}\u{115f}\u{115f}95588".to_string(),
        format!("a{}95588", "\u{115f}".repeat(200)),
        // Fillers are drawn as blanks (QA 208), and blanks in bulk are one gap.
        format!("a{}95588", "\u{3164}".repeat(200)),
        format!("a{}95588", " ".repeat(200)),
        format!("{}95588", "\u{202e}\u{202c}".repeat(90)),
        format!("{}88559", "\u{202e}".repeat(180)),
        "Bank 95 588".to_string(),
        "Police 1 1 0".to_string(),
    ] {
        let m = with_from(&format!("\"{display}\" {uk}"), pai);
        assert_eq!(
            rewritten_from(&p, &m),
            b"<sip:+442071234567@uk.example>;tag=ft1".to_vec(),
            "{display:?}"
        );
    }
    // GBK full-width digits.
    let mut s = b"INVITE sip:4008001234@10.0.0.100 SIP/2.0\r\nVia: SIP/2.0/UDP 10.9.9.9:5060;branch=z9hG4bK-g1\r\nFrom: \"\xa3\xb9\xa3\xb5\xa3\xb5\xa3\xb8\xa3\xb8\" <sip:+442071234567@uk.example>;tag=ft1\r\n".to_vec();
    s.extend_from_slice(b"To: <sip:4008001234@10.0.0.100>\r\nCall-ID: g1\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\nP-Asserted-Identity: <sip:+442071234567@uk.example>\r\nContent-Length: 0\r\n\r\n");
    let m = Message::parse(Bytes::from(s)).unwrap();
    assert_eq!(
        rewritten_from(&p, &m),
        b"<sip:+442071234567@uk.example>;tag=ft1".to_vec()
    );
    // Remote-Party-ID: `party="calling"`, an unknown party, no value: the caller; a
    // called party goes at the gateway.
    for rpid in [
        "\"110\" <sip:110@uk.example>;party=\"calling\";screen=no",
        "\"110\" <sip:110@uk.example>;party=x;screen=no",
        "<sip:110@uk.example>;party",
        "<sip:110@uk.example>;party=called",
    ] {
        let m = with_from(uk, &format!("{pai}Remote-Party-ID: {rpid}\r\n"));
        let d = passes(&p, &m, "intl");
        assert_eq!(d.rule, Some(RuleId::GenericNumber), "{rpid}");
        let out = String::from_utf8_lossy(forwarded(&p, &m, &d).buf()).into_owned();
        assert!(!out.contains("Remote-Party-ID"), "{out}");
    }
    let ent = |from: &str, extra: &str| {
        judge(
            &p,
            &with_from(
                &format!("{from} <sip:+8613912340001@pbx.example>"),
                &format!("P-Asserted-Identity: <sip:+8613912340001@pbx.example>\r\n{extra}"),
            ),
            "ent",
        )
    };
    assert_eq!(
        rejected(&ent(
            "",
            "Remote-Party-ID: <sip:95588@pbx.example>;party=\"calling\";screen=no\r\n"
        )),
        Some((403, "enterprise-not-whitelisted"))
    );
    // A called party is no caller on an enterprise trunk (it names the callee, whom no
    // whitelist holds), but it goes: equipment that reads Remote-Party-ID whatever
    // `party` says would show its number as the caller's. A calling one stays.
    let with_rpid = |rpid: &str| {
        with_from(
            "<sip:+8613912340001@pbx.example>",
            &format!(
                "P-Asserted-Identity: <sip:+8613912340001@pbx.example>\r\nRemote-Party-ID: {rpid}\r\n"
            ),
        )
    };
    for (rpid, kept) in [
        ("<sip:+8675512345678@core>;party=called", false),
        ("<sip:+442071234567@core>;party=\"called\";screen=no", false),
        (
            "<sip:+8613912340001@pbx.example>;party=calling;screen=no",
            true,
        ),
    ] {
        let m = with_rpid(rpid);
        let d = judge(&p, &m, "ent");
        assert_eq!(rejected(&d), None, "{rpid}");
        let out = String::from_utf8_lossy(forwarded(&p, &m, &d).buf()).into_owned();
        assert_eq!(out.contains("Remote-Party-ID"), kept, "{rpid}\n{out}");
        assert!(out.contains("P-Asserted-Identity: <sip:+8613912340001@pbx.example>"));
    }
    // Dates, prices, versions and codes in an enterprise caller's name show no number.
    for display in [
        "HK$95,588",
        "CNY 95,588",
        "Invoice 2024-01-10",
        "2024.10.01",
        "Sale 1/10",
        "1.10",
        "Room 1-10",
        "Meeting 12/3/15",
        "v1.2.3.4.5",
        "Model 12-3",
        "Q1 2024",
    ] {
        let d = ent(&format!("\"{display}\""), "");
        assert_eq!(rejected(&d), None, "{display:?}: {d:?}");
    }
    // The caller's own number after `00` and a bracketed trunk prefix.
    let m = with_from(&format!("\"0044 (0)20 7123 4567\" {uk}"), pai);
    assert_eq!(passes(&p, &m, "intl").rule, None);
}

/// QA pass 10: every number a display name shows is judged on an enterprise trunk (a
/// second contracted number cannot cover a third), `sip:95588` shows 95588, a date
/// written with spaces shows no number, the record names the presented number that
/// matched, adjacent override runs draw as one, and a rewritten From loses its context.
#[test]
fn every_shown_number_is_judged_and_shown() {
    let p = policy("");
    let w = "<sip:+8613912340001@pbx.example>";
    let ent = |from: &str, extra: &str| {
        judge(
            &p,
            &with_from(from, &format!("P-Asserted-Identity: {w}\r\n{extra}")),
            "ent",
        )
    };
    for display in [
        "13912340002 95588",
        "13912340002 13712345678",
        "4008001234转95588",
    ] {
        let d = ent(&format!("\"{display}\" {w}"), "");
        assert_eq!(
            rejected(&d),
            Some((403, "enterprise-not-whitelisted")),
            "{display}"
        );
        assert!(
            ["+8695588", "+8613712345678"].contains(&d.presented.unwrap().e164().as_str()),
            "{d:?}"
        );
    }
    assert_eq!(
        rejected(&ent(&format!("\"13912340002 4008001234\" {w}"), "")),
        None
    );
    // The presented number that matched is the one recorded.
    let d = ent("\"95588\" <sip:+8613912340002@pbx.example>", "");
    assert_eq!(rejected(&d), Some((403, "enterprise-not-whitelisted")));
    assert_eq!(d.presented.map(|n| n.e164()).as_deref(), Some("+8695588"));
    // Digits for a host and no user part.
    let uk = "<sip:+442071234567@uk.example>";
    let pai = format!("P-Asserted-Identity: {uk}\r\n");
    let m = with_from(
        uk,
        &format!("{pai}P-Preferred-Identity: <sip:13812345678>\r\n"),
    );
    let d = passes(&p, &m, "intl");
    assert_eq!(d.rule, Some(RuleId::GenericNumber));
    assert!(!String::from_utf8_lossy(forwarded(&p, &m, &d).buf()).contains("13812345678"));
    // With dots, as a person reads them (QA 61: `95588.`, the root of a name, and
    // dotted groups went on unread, and equipment that shows the host showed 95588).
    for host in [
        "95588",
        "95588.",
        "9.5.5.8.8",
        "95.588",
        "95588.:5060",
        "@95588",
        ".95588",
        "9-5-5-8-8",
    ] {
        let m = with_from(&format!("<sip:{host}>"), &pai);
        let d = passes(&p, &m, "intl");
        assert_eq!(d.rule, Some(RuleId::GenericNumber), "{host}");
        let out = forwarded(&p, &m, &d);
        let from = String::from_utf8_lossy(out.value(HeaderName::From).unwrap()).into_owned();
        assert!(from.starts_with("<tel:+442071234567>"), "{host}: {from}");
    }
    for host in [
        "13712345678",
        "137.1234.5678",
        "13712345678.",
        "137-1234-5678",
        "010.203.040.50",
    ] {
        assert_eq!(
            rejected(&ent(&format!("<sip:{host}>"), "")),
            Some((403, "enterprise-not-whitelisted")),
            "{host}"
        );
    }
    // A From of an address only is still no number.
    for host in ["10.9.9.9", "10.9.9.9.", "192.168.100.200:5060"] {
        blocks(
            &p,
            &with_from(&format!("<sip:{host}>"), ""),
            "intl",
            433,
            "blank-caller",
        );
    }
    // Dates with spaces.
    for display in ["Invoice 2024 01 10", "10 01 2024"] {
        assert_eq!(
            rejected(&ent(&format!("\"{display}\" {w}"), "")),
            None,
            "{display}"
        );
    }
    // A right-to-left character in a left-to-right name governs the numbers after it;
    // after left-to-right letters digits keep their order.
    for display in [
        "中国银行\u{200f}588 95",
        "Bank \u{200f}5678 1234 138",
        "Call بنك 588 95",
        "\u{200f}5678•1234•138",
    ] {
        let m = with_from(&format!("\"{display}\" {uk}"), &pai);
        assert_eq!(
            rewritten_from(&p, &m),
            b"<sip:+442071234567@uk.example>;tag=ft1".to_vec(),
            "{display:?}"
        );
    }
    assert_eq!(
        rejected(&ent(&format!("\"\u{200f}中国银行 588 95\" {w}"), "")),
        None
    );
    // Override runs one after another.
    let m = with_from(&format!("\"\u{202e}88\u{202c}\u{202e}559\" {uk}"), &pai);
    assert_eq!(
        rewritten_from(&p, &m),
        b"<sip:+442071234567@uk.example>;tag=ft1".to_vec()
    );
    // The generic-number rewrite of a tel From in a context writes a global number.
    let m = with_from("<tel:95588;phone-context=+86>", &pai);
    assert_eq!(
        String::from_utf8_lossy(&rewritten_from(&p, &m)),
        "<tel:+442071234567>;tag=ft1"
    );
    // However many contexts it was written with, escaped or not, and its other
    // parameters stay (QA 63: two contexts stayed on the global number).
    for (from, want) in [
        (
            "<tel:95588;phone-context=+86;phone-context=+852>",
            "<tel:+442071234567>;tag=ft1",
        ),
        (
            "<tel:95588;phone%2Dcontext=+86;isub=1;phone-context=+852>",
            "<tel:+442071234567;isub=1>;tag=ft1",
        ),
        (
            "<sip:95588;phone-context=+86;phone-context=+852@gw.example;user=phone>",
            "<sip:+442071234567@gw.example;user=phone>;tag=ft1",
        ),
        // One after the host too, where no number's context belongs (QA 66).
        (
            "<sip:95588;phone-context=+86@gw.example;user=phone;phone-context=+86>",
            "<sip:+442071234567@gw.example;user=phone>;tag=ft1",
        ),
    ] {
        let m = with_from(from, &pai);
        assert_eq!(
            String::from_utf8_lossy(&rewritten_from(&p, &m)),
            want,
            "{from}"
        );
    }
}

/// Settings that `check` used to pass and that would never work (QA 22): each refused
/// with the line it stands on; the same settings where they do work still load.
#[test]
fn settings_that_would_never_work_are_refused_at_their_line() {
    let refused = |text: &str, line: usize, why: &str| {
        let e = Policy::from_str(text, "p.toml", Path::new("."))
            .err()
            .unwrap_or_else(|| panic!("loaded: {text}"))
            .to_string();
        assert!(
            e.starts_with(&format!("p.toml:{line}: ")) && e.contains(why),
            "want line {line} and '{why}': {e}\n{text}"
        );
    };
    let policy_of = |text: &str| Policy::from_str(text, "p.toml", Path::new(".")).unwrap();
    let loads = |text: &str| {
        if let Err(e) = Policy::from_str(text, "p.toml", Path::new(".")) {
            panic!("{e}\n{text}");
        }
    };
    let ic = "[[trunk]]\nname = \"ic\"\nrole = \"interconnect\"\nsources = [\"10.0.0.1\"]\nnext_hop = \"udp:10.0.0.5:5060\"\n";
    let ent = "[[trunk]]\nname = \"ent\"\nrole = \"enterprise\"\nsources = [\"10.0.0.2\"]\n[trunk.whitelist]\nentries = [\"+864008001234\"]\n";

    // `rewrite` exists for the generic number only: elsewhere it let the call through
    // with an empty label.
    refused(
        "[lists.blacklist]\nentries = [\"+8613800000001\"]\n[rules.blacklist]\naction = \"rewrite\"\n",
        4,
        "action rewrite applies to generic-number only",
    );
    loads("[rules.generic-number]\naction = \"rewrite\"\n[rules.blacklist]\naction = \"label\"\n");

    // An enterprise contract's terms on another role were read and never enforced.
    for (key, value) in [
        ("hours", "\"08:00-18:00\""),
        ("days", "[\"mon\"]"),
        ("utc_offset", "\"+08:00\""),
        ("max_calls_per_minute", "5"),
        ("max_calls_per_minute_per_caller", "2"),
    ] {
        refused(
            &format!("{ic}{key} = {value}\n"),
            6,
            &format!(
                "{key} is an enterprise contract's term, never enforced on an interconnect trunk"
            ),
        );
        loads(&ent.replace(
            "[trunk.whitelist]",
            &format!("{key} = {value}\n[trunk.whitelist]"),
        ));
    }
    refused(
        &format!("{ic}[trunk.whitelist]\nentries = [\"+8613800000001\"]\n"),
        6,
        "whitelist is an enterprise contract's term",
    );
    // Rules that never run on the trunk.
    refused(
        &format!("{ic}[trunk.rules.enterprise-hours]\ncode = 480\n"),
        6,
        "rule enterprise-hours never runs on a trunk of role interconnect",
    );
    refused(
        &format!("{ic}[trunk.rules.behaviour-attempts]\naction = \"reject\"\n"),
        6,
        "rule behaviour-attempts never runs without [trunk.behaviour]",
    );
    refused(
        &format!("{ic}[trunk.rules.trunk-auth]\nreason = \"Who are you\"\n"),
        6,
        "rule trunk-auth never runs without [trunk.auth]",
    );
    loads(&format!("{ic}[trunk.rules.blacklist]\ncode = 603\n"));
    // Said at the trunk's line, naming the trunk (QA 74).
    refused(
        &format!("[rules.blacklist]\ncode = 603\n{ic}[trunk.rules.blacklist]\ncode = 407\n"),
        9,
        "trunk ic: rule blacklist: code 407 asks for credentials",
    );
    loads(&format!(
        "{ent}[trunk.rules.enterprise-hours]\ncode = 480\n"
    ));

    // Metrics name unknown sources' calls trunk="none".
    refused(
        &ic.replace("\"ic\"", "\"none\""),
        2,
        "trunk name 'none' is reserved",
    );

    // Zeros and sizes no deployment means.
    refused(
        "[redis]\nurl = \"http://127.0.0.1:6379\"\n",
        2,
        "[redis] url: 'http://127.0.0.1:6379' does not parse",
    );
    loads("[redis]\nurl = \"redis://127.0.0.1:6379/2\"\n");
    refused("[redis]\nsync_ms = 0\n", 2, "[redis] sync_ms = 0");
    refused("[redis]\ntimeout_ms = 0\n", 2, "[redis] timeout_ms = 0");
    refused("[redis]\nlist_poll_ms = 0\n", 2, "[redis] list_poll_ms = 0");
    refused(
        "[redis]\nlist_timeout_ms = 0\n",
        2,
        "[redis] list_timeout_ms = 0",
    );
    refused(
        "[records]\ndir = \"r\"\nretention_secs = 0\n",
        3,
        "[records] retention_secs = 0",
    );
    refused(
        "[records]\nrotate_bytes = 0\n",
        2,
        "[records] rotate_bytes = 0",
    );
    refused(
        "[proxy]\nudp_mtu = 10\n",
        2,
        "udp_mtu = 10 is no datagram size",
    );
    refused(
        "[proxy]\nudp_mtu = 70000\n",
        2,
        "udp_mtu = 70000 is no datagram size",
    );
    loads("[proxy]\nudp_mtu = 1300\n");
    loads("[proxy]\nudp_mtu = 0\n");
    refused(
        "[proxy]\nprobe_secs = 36000\n",
        2,
        "[proxy] probe_secs = 36000 is over 3600 seconds",
    );
    loads("[proxy]\nprobe_secs = 10\n");
    refused(
        "[proxy]\ndrain_secs = 3600\n",
        2,
        "[proxy] drain_secs = 3600 is over 300 seconds",
    );
    loads("[proxy]\ndrain_secs = 5\n");
    refused("[proxy]\nworkers = 100000\n", 2, "workers = 100000");
    // Session 27: a stream trimmed to nothing, an overload answer that feeds the
    // overload or asks for an hour's wait, a Redis wait longer than a call set-up, a
    // nonce good for more than a day.
    refused(
        "[redis]\nrecords_maxlen = 0\n",
        2,
        "[redis] records_maxlen = 0",
    );
    refused("[proxy]\nretry_after = 0\n", 2, "[proxy] retry_after = 0");
    refused(
        "[proxy]\nretry_after = 7200\n",
        2,
        "[proxy] retry_after = 7200 is over 3600",
    );
    loads("[proxy]\nretry_after = 30\n");
    // Dotted keys are found at their line too (QA 28).
    refused(
        "# policy\nproxy.retry_after = 0\nredis.timeout_ms = 200\n",
        2,
        "[proxy] retry_after = 0",
    );
    refused(
        "[redis]\ntimeout_ms = 120000\n",
        2,
        "[redis] timeout_ms = 120000 is over 60000",
    );
    loads("[redis]\ntimeout_ms = 5000\n");
    refused(
        "[redis]\nlist_timeout_ms = 700000\n",
        2,
        "[redis] list_timeout_ms = 700000 is over 600000",
    );
    loads("[redis]\nlist_timeout_ms = 120000\n");
    refused(
        &format!("{ent}[trunk.auth]\nusers = [\"pbx:pw\"]\nnonce_secs = 604800\n"),
        9,
        "auth nonce_secs = 604800 is over a day",
    );
    loads(&format!(
        "{ent}[trunk.auth]\nusers = [\"pbx:pw\"]\nnonce_secs = 3600\n"
    ));
    refused(
        "[proxy]\nproxy_require_accepted = [\"a b\"]\n",
        2,
        "'a b' is not an option tag",
    );
    refused(
        &format!("{ic}[trunk.behaviour]\nattempts = 0\n"),
        7,
        "attempts = 0 would flag every call",
    );
    refused(
        &format!("{ic}[trunk.behaviour]\nring_once = 3\nring_once_percent = 101\n"),
        8,
        "ring_once_percent must be 0..=100",
    );
    loads(&format!(
        "{ic}[trunk.behaviour]\nring_once = 3\nring_once_percent = 30\n"
    ));
    refused(
        &format!("[behaviour]\ncalls = 0\n{ic}[trunk.behaviour]\nattempts = 30\n"),
        2,
        "[behaviour] calls = 0",
    );
    loads(&format!("[behaviour]\ncalls = 0\n{ic}"));
    // The metrics port on a SIP TCP listen address: `run` failed at start.
    refused(
        &format!(
            "[metrics]\nlisten = \"127.0.0.1:5062\"\n{}",
            ic.replace("next_hop", "listen = [\"tcp:0.0.0.0:5062\"]\nnext_hop")
        ),
        2,
        "takes the port of the SIP listen address tcp:0.0.0.0:5062",
    );
    loads(&format!(
        "[metrics]\nlisten = \"127.0.0.1:5062\"\n{}",
        ic.replace("next_hop", "listen = [\"udp:0.0.0.0:5062\"]\nnext_hop")
    ));
    // Digest users' errors stand on the users line.
    let auth = |users: &str| format!("{ent}[trunk.auth]\nrealm = \"ent\"\nusers = [{users}]\n");
    refused(
        &auth("\"a:x\", \"a:y\""),
        9,
        "auth users entry 2: user name 'a'",
    );
    refused(
        &auth("\"a:md5:12\""),
        9,
        "auth users entry 1: user 'a': md5: needs 32 hex digits",
    );
    // QA 23: more of the same.
    refused(
        &format!("[behaviour]\ncallers = 99999999999\n{ic}[trunk.behaviour]\nattempts = 5\n"),
        2,
        "[behaviour] callers = 99999999999: at most 16777216",
    );
    for hop in [
        "udp:127.0.0.1:0",
        "udp:0.0.0.0:5060",
        "udp:[::]:5060",
        "udp:224.0.0.1:5060",
        "udp:255.255.255.255:5060",
    ] {
        refused(
            &ic.replace("udp:10.0.0.5:5060", hop),
            5,
            "is no host to send calls to",
        );
    }
    let looped = ic.replace(
        "next_hop = \"udp:10.0.0.5:5060\"",
        "listen = [\"udp:0.0.0.0:5070\"]\nnext_hop = \"udp:127.0.0.1:5070\"",
    );
    refused(
        &looped,
        6,
        "is sipfence's own listen address udp:0.0.0.0:5070",
    );
    loads(&looped.replace("udp:127.0.0.1:5070", "tcp:127.0.0.1:5070"));
    refused(
        &ic.replace("next_hop", "listen = [\"udp:127.0.0.1:0\"]\nnext_hop"),
        5,
        "listen udp:127.0.0.1:0 has port 0",
    );
    // A name in single quotes is found as well as one in double quotes.
    refused(
        &format!(
            "{}[trunk.whitelist]\nentries = [\"+8613800000001\"]\n",
            ic.replace("\"ic\"", "'ic'")
        ),
        6,
        "whitelist is an enterprise contract's term",
    );
    refused(
        &format!("{ic}[trunk.rules.unknown-source]\naction = \"drop\"\n"),
        6,
        "rule unknown-source never runs on a trunk",
    );
    // A behaviour rule set up before its threshold is a template's: warned of.
    let early = policy_of(&format!(
        "{ic}[trunk.behaviour]\nattempts = 5\n[trunk.rules.behaviour-callees]\naction = \"reject\"\n"
    ));
    assert!(
        sipfence::policy::lint::warnings(&early).iter().any(|w| w
            == "trunk ic: rule behaviour-callees has settings but never runs: its threshold in [trunk.behaviour] is not set"),
        "{:?}",
        sipfence::policy::lint::warnings(&early)
    );
    loads(&format!(
        "{ic}[trunk.behaviour]\ndistinct_callees = 5\n[trunk.rules.behaviour-callees]\naction = \"reject\"\n"
    ));
    for metrics in ["localhost:5062", "[::ffff:127.0.0.1]:5062"] {
        refused(
            &format!(
                "[metrics]\nlisten = \"{metrics}\"\n{}",
                ic.replace("next_hop", "listen = [\"tcp:127.0.0.1:5062\"]\nnext_hop")
            ),
            2,
            "takes the port of the SIP listen address",
        );
    }
    refused(
        &auth("\"a:\""),
        9,
        "auth users entry 1: user 'a' has an empty password",
    );
    // A template never filled in is no secret either (QA 70); a '$' in a password is.
    refused(
        &auth("\"a:${PBX1_PASSWORD}\""),
        9,
        "user 'a' has the password ${PBX1_PASSWORD}, a template never filled in",
    );
    loads(&auth("\"a:$ecret}\""));
    refused(&auth("\"a:$PBX1_PW\""), 9, "a template never filled in");
    refused(
        &auth("\"a:{{ pbx1_pw }}\""),
        9,
        "a template never filled in",
    );
    refused(&auth("\"a:%PBX1_PW%\""), 9, "a template never filled in");
    refused(&auth("\"a: \""), 9, "has an empty password");
    for secret in ["", " ", "${AUTH_SECRET}", "$AUTH_SECRET"] {
        refused(
            &format!("[general]\nauth_secret = \"{secret}\"\n{}", auth("\"a:b\"")),
            2,
            "is no secret",
        );
    }
    refused(
        "[rules.blacklist]\nreason = \"a\\\"b\\r\\nX-Injected: yes\"\n",
        2,
        "reason must be text without quotes",
    );
    {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("recs"), "a file").unwrap();
        let e = Policy::from_str("[records]\ndir = \"recs\"\n", "p.toml", dir.path())
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.starts_with("p.toml:2: ") && e.contains("is a file, not a directory"),
            "{e}"
        );
        let e = Policy::from_str("[proxy]\ncalls_file = \".\"\n", "p.toml", dir.path())
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.starts_with("p.toml:2: ") && e.contains("is a directory, not a file"),
            "{e}"
        );
        // QA 137: a file that is not a calls file (the policy's own, a list) would be
        // removed at start and replaced at the stop; a calls file, or an empty one, is
        // taken.
        let policy = "[proxy]\ncalls_file = \"p.toml\"\n";
        std::fs::write(dir.path().join("p.toml"), policy).unwrap();
        let e = Policy::load(&dir.path().join("p.toml"))
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.contains("p.toml:2: ") && e.contains("names a file that is not a calls file"),
            "{e}"
        );
        for (text, ok) in [
            ("", false),
            ("sipfence calls up, v1\nstopped 5\n", true),
            ("sipfence calls up, v1", true),
            ("sipfence calls up, v10\n", false),
            ("+8613800000001\n", false),
        ] {
            std::fs::write(dir.path().join("calls"), text).unwrap();
            let p = Policy::from_str("[proxy]\ncalls_file = \"calls\"\n", "p.toml", dir.path());
            assert_eq!(p.is_ok(), ok, "{text:?}");
        }
    }
    // `check` shows the contract's terms as read, and Redis without its password.
    let summary = policy_of(&format!(
        "[redis]\nurl = \"redis://:s3cret@10.0.0.9:6379/2\"\n{}",
        ent.replace(
            "[trunk.whitelist]",
            "hours = \"09:00-18:00\"\ndays = [\"mon\", \"fri\"]\nutc_offset = \"+05:30\"\nmax_calls_per_minute = 5\n[trunk.whitelist]"
        )
    ))
    .summary();
    assert!(
        summary.contains(
            "    contract: hours 09:00-18:00 (UTC+05:30), days mon fri, 5 calls a minute\n"
        ),
        "{summary}"
    );
    assert!(
        summary.contains("  redis: redis://***@10.0.0.9:6379/2 (keys sipfence:*, lists followed)"),
        "{summary}"
    );
    assert!(!summary.contains("s3cret"), "{summary}");
    // ... and how the trunk's dialogs go (QA 120: neither Record-Route nor Path showed).
    assert!(!summary.contains("    dialogs:"), "{summary}");
    let routed = policy_of(&ent.replace(
        "[trunk.whitelist]",
        "record_route = true\nregister_path = true\n[trunk.whitelist]",
    ))
    .summary();
    assert!(
        routed.contains("    dialogs: record-routed, Path on REGISTERs\n"),
        "{routed}"
    );
    // A list file that cannot be read says where the policy names it.
    let e = Policy::from_str(
        "[general]\n[lists.blacklist]\nfiles = [\"no/such/list.txt\"]\n",
        "p.toml",
        Path::new("."),
    )
    .err()
    .unwrap()
    .to_string();
    assert!(
        e.contains("no/such/list.txt: cannot read") && e.contains("(named at p.toml:3)"),
        "{e}"
    );
}

/// At the gateways a short code a display name writes with any separator (`"95-588"`,
/// `"1-1-0"`, `"(95)588"`) is the presented number a callee reads, and goes with the
/// generic number; what shows no short code (a date, a name) is left as it is. On an
/// enterprise trunk, where a presented number is judged and a misreading refuses the
/// call, only short codes written with spaces are read (dates and prices are written
/// with the other separators).
#[test]
fn gateways_read_short_codes_written_with_any_separator() {
    let p = policy("");
    let pai = "P-Asserted-Identity: <sip:+442071234567@uk.example>\r\n";
    for (display, shown) in [
        ("95-588", "+8695588"),
        ("ICBC 95-588", "+8695588"),
        ("9-5-5-8-8", "+8695588"),
        ("95.588", "+8695588"),
        ("(95)588", "+8695588"),
        ("1-1-0", "+86110"),
        // QA 24: any mark between digits, numbers drawn two digits to a glyph, and
        // padding a phone trims.
        ("[138]12345678", "+8613812345678"),
        ("中国银行【95】588", "+8695588"),
        ("138:1234:5678", "+8613812345678"),
        ("1。1。0", "+86110"),
        ("⑪⓪", "+86110"),
        ("⑫345", "+8612345"),
        ("96⑪0", "+8696110"),
        (&format!("{}110", "\\ ".repeat(64)), "+86110"),
        (&format!("{}110", "\u{3000}".repeat(62)), "+86110"),
        // QA 25: symbols between digits, a '%' drawn as itself, an escaped
        // full-width digit, escaped padding.
        ("138★1234★5678", "+8613812345678"),
        ("1♥1♥0", "+86110"),
        // QA 154: '+' between digit groups, and before a short code.
        ("138+1234+5678", "+8613812345678"),
        ("138 + 1234 + 5678", "+8613812345678"),
        ("95+588", "+8695588"),
        ("1+1+0", "+86110"),
        ("+95588", "+8695588"),
        ("138一1234一5678", "+8613812345678"),
        ("1一1一0", "+86110"),
        ("%110", "+86110"),
        ("95%588", "+8695588"),
        ("9\\５588", "+8695588"),
        (&format!("{}110", "\\\u{3000}".repeat(70)), "+86110"),
        // QA 26: numbers inside a right-to-left embedding or isolate are drawn in
        // its order.
        ("\u{202b}588 95\u{202c}", "+8695588"),
        ("ACME \u{2067}588 95\u{2069}", "+8695588"),
        ("\u{202b}5678 1234 138\u{202c}", "+8613812345678"),
    ] {
        let m = with_from(
            &format!("\"{display}\" <sip:+442071234567@uk.example>"),
            pai,
        );
        for trunk in ["intl", "ic"] {
            let d = passes(&p, &m, trunk);
            assert_eq!(d.rule, Some(RuleId::GenericNumber), "{display} on {trunk}");
            assert_eq!(
                d.identity.display_number.map(|n| n.e164()).as_deref(),
                Some(shown),
                "{display} on {trunk}"
            );
            let from = forwarded(&p, &m, &d)
                .value(HeaderName::From)
                .unwrap()
                .to_vec();
            assert_eq!(
                from,
                b"<sip:+442071234567@uk.example>;tag=ft1".to_vec(),
                "{display} on {trunk}"
            );
        }
    }
    // E.123's trunk prefix in square brackets is dialled nowhere, as in round ones.
    let m = with_from(
        "\"+44 [0]20 7123 4567\" <sip:+442071234567@uk.example>",
        pai,
    );
    assert_eq!(passes(&p, &m, "intl").rule, None);
    for display in ["Invoice 2024-01-10", "London Office", "Sale 1-2"] {
        let m = with_from(
            &format!("\"{display}\" <sip:+442071234567@uk.example>"),
            pai,
        );
        let d = passes(&p, &m, "intl");
        assert_eq!(d.rule, None, "{display}: {d:?}");
        assert!(d.identity.display_number.is_none(), "{display}: {d:?}");
    }
    // On an enterprise trunk, a short code across marks is read only if it is a number
    // fraud forges (QA 36 R2, session 29: "Order 95-588" was let through before): a
    // range or a reference under five digits is not.
    let ent = |display: &str| {
        judge(
            &p,
            &with_from(
                &format!("\"{display}\" <sip:+8613912340001@pbx.example>"),
                "P-Asserted-Identity: <sip:+8613912340001@pbx.example>\r\n",
            ),
            "ent",
        )
    };
    assert_eq!(
        rejected(&ent("Order 95-588")),
        Some((403, "enterprise-not-whitelisted"))
    );
    assert_eq!(rejected(&ent("Order 9-588")), None);
    // A price is no number (QA 24), on the enterprise trunk that would refuse it.
    for price in ["ACME ¥1,110", "Total ¥1,120.00", "$2,110", "￥ 95 588"] {
        assert_eq!(rejected(&ent(price)), None, "{price}");
    }
    // Session 27: an amount written with marks or a currency shows no short number
    // (a price, a thousands amount, a decimal, a version, an address), and a number
    // beside one is still judged.
    for name in [
        "ACME 1,110元",
        "v2.10.110",
        "PBX 10.0.0.110",
        "110.5",
        "110,00元",
    ] {
        assert_eq!(rejected(&ent(name)), None, "{name}");
    }
    // Letters drawn like digits, in a word of digits and such letters only, are read
    // as the callee reads them (QA 36 R3); a word with other letters keeps them.
    for name in [
        "公安 11O",
        "1l0报警",
        "11〇",
        "China Mobile 1OO86",
        "Ｉ１０",
    ] {
        assert!(rejected(&ent(name)).is_some(), "{name}");
    }
    for name in [
        "O2O 商城",
        "H2O Studio",
        "Win10 Store",
        "IO Systems",
        "Studio 1O",
    ] {
        assert_eq!(rejected(&ent(name)), None, "{name}");
    }
    // QA 41: through characters that draw nothing, escapes, and more look-alikes
    // (Cyrillic palochka, slashed and circled O, mathematical letters); a capital I or O
    // that starts a code before a digit is a letter prefix.
    for name in [
        "公安 11\u{200b}O",
        "公安 11\u{ad}O",
        "l\u{2060}10",
        "1Ӏ0",
        "11Ø",
        "11○",
        "𝟏𝟏𝐎",
        "𝐈𝟏𝟎",
        "1\\l0",
    ] {
        assert!(rejected(&ent(name)).is_some(), "{name:?}");
    }
    // A capital I before digits is read as well (QA 42: a letter-prefix exception let
    // these through); a code written so is refused with them.
    for name in [
        "公安 I1O",
        "Police I10",
        "中国移动 I0086",
        "Gate I19",
        "I2O Kitchen",
    ] {
        assert!(rejected(&ent(name)).is_some(), "{name}");
    }
    for name in ["O2 Shop", "IO Systems"] {
        assert_eq!(rejected(&ent(name)), None, "{name}");
    }
    // An escaped letter in a URI is that letter (RFC 3261 19.1.4): `11%4F` is `11O`.
    // So is a character escaped octet by octet, a look-alike, a digit or one that
    // draws nothing (QA 42); and in a URI a comma is a pause, no decimal comma.
    for from in [
        "<sip:11%4F@pbx.example>",
        "<sip:11%6f@pbx.example>",
        "<sip:11O@pbx.example>",
        "<sip:11%E3%80%87@pbx.example>",
        "<sip:11%C3%98@pbx.example>",
        "<sip:%EF%BC%91%EF%BC%91%EF%BC%90@pbx.example>",
        "<sip:1%E2%80%8B10@pbx.example>",
        "<sip:9%E2%80%8B5588@pbx.example>",
        "<sip:110,00@pbx.example>",
        "<tel:110,00>",
    ] {
        let m = with_from(
            from,
            "P-Asserted-Identity: <sip:+8613912340001@pbx.example>\r\n",
        );
        assert!(rejected(&judge(&p, &m, "ent")).is_some(), "{from}");
    }
    // A decimal comma hides no piece of five digits or more: a service number before
    // it is still read (as before a decimal point, `"95588.1"`).
    assert!(rejected(&ent("中国银行 95588,00")).is_some());
    // Session 28 (QA 33, QA 34): words (a unit, an ordinal, a street name) hide no
    // emergency number, since words can be added to any name (`"Room 110指挥中心"`,
    // `"110个经侦"`); what they hide is a count's or a room's digits the plan holds
    // no short number for.
    for shown in [
        "ACME 120 RMB",
        "Price 110 yuan",
        "人民路120号",
        "Room 110",
        "Order #110",
        "Office 120",
        "第110分店",
        "110人民币",
        "120周年庆",
        "Room 110指挥中心",
        "110个经侦",
        "110个公检法",
        "110 pcs 𝐏𝐨𝐥𝐢𝐜𝐞",
        "110 Broadway C\u{43e}ps",
        "122个交管",
    ] {
        assert_eq!(
            rejected(&ent(shown)),
            Some((403, "enterprise-not-whitelisted")),
            "{shown}"
        );
    }
    for shown in [
        "ACME 110",
        "Tel: 110",
        "客服95588",
        "Suite 1,110 95588",
        "ACME ¥12 95588",
        "Room 110 Tel 95588",
        "95588,1",
        // QA 28.
        "中国银行 No.1/95588",
        "Room 110/95588",
        "中国银行 95588                              RMB",
        "中国银行客服 Tel No. 95588",
        "Ext 95588",
        "中国银行 95588个人业务",
        "110号码",
        // QA 29: a single digit first.
        "中国银行 9 5588",
        "报警 1 10",
        "1 2315",
        "9 55 88",
        // QA 31: a text that names the police or an emergency service reads the short
        // code whatever unit it is glued to; a decimal hides no five-digit code; a
        // house number hides none either.
        "110人民警察",
        "110人民公安",
        "110天网",
        "110个警察",
        "110万警察",
        "110号报警中心",
        "110室报警",
        "110栋公安",
        "120家急救",
        "120人急救",
        "Police 110 pcs",
        "110 Emergency St",
        "中国银行 95588.1",
        "95588.00",
        "12315.5",
        "95588 Main St",
        "Ext 9 5588",
        // QA 33: the emergency words as read, traditional and English ones.
        "110个公\u{200b}安",
        "110个Ｐｏｌｉｃｅ",
        "110个派出所",
        "120家急診",
        "110 Broadway Cops",
    ] {
        assert_eq!(
            rejected(&ent(shown)),
            Some((403, "enterprise-not-whitelisted")),
            "{shown}"
        );
    }
    // QA 31: ordinary names with pages (no short code starts with an ordinal's digit:
    // `12024` is a government number), measures, percentages.
    for name in ["Page 1 2024", "Page 1 2315", "ACME 1,110元", "110.5%"] {
        assert_eq!(rejected(&ent(name)), None, "{name}");
    }
    // QA 36: a sign beside an emergency number hides it no more than a word does.
    for shown in [
        "¥110 经侦",
        "110% 𝐏𝐨𝐥𝐢𝐜𝐞",
        "120℃ 诊所",
        "$110 Полиция",
        "110% Service",
        "120㎎",
    ] {
        assert_eq!(
            rejected(&ent(shown)),
            Some((403, "enterprise-not-whitelisted")),
            "{shown}"
        );
    }
    // QA 25: a price hides no number beside it or longer than a price; a number
    // written across marks or after '%' is read; ordinary names with marks are not.
    for shown in [
        "ACME ¥1,110 13698765432",
        "$13698765432",
        "¥ 136 9876 5432",
        "%13698765432",
        "[136]98765432",
        "136|9876|5432",
        "136【9876】5432",
        // QA 154: a '+' between digit groups is drawn as any mark is, with spaces
        // around it or not, full-width or not; a '+' before a short code prefixes
        // nothing a callee can call.
        "136+9876+5432",
        "136 + 9876 + 5432",
        "136＋9876＋5432",
        "1369876+5432",
        "136 +9876 +5432",
        "95 +588",
        "1 +1 +0",
        "95-+588",
        "中国银行 95+588",
        "报警 1+1+0",
        "+95588",
        "中国银行 +95588",
        "+110",
        // 一 between digits is drawn as a dash, and so are the other letters drawn as
        // a line, a bar or a plus (QA 156), through what draws nothing, spaces, a
        // quoted-pair.
        "136一9876一5432",
        "中国银行 95一588",
        "95一\u{200b}588",
        "95\\一588",
        "136 一 9876 一 5432",
        "95一一588",
        "1 一 1 一 0",
        "136ㅡ9876ㅡ5432",
        "95丨588",
        "136十9876十5432",
        "95ㄧ588",
        "95ـ588",
        "136一-9876一-5432",
        // QA 160: a short code between two of the caller's own numbers, its groups
        // shared with them, is read.
        "中国移动 13912340 / 100 86 / 13912340100",
        "中国移动 13912340 100 86 13912340100",
        // QA 162: a short code with a separator inside it beside own numbers, and one
        // before a number, which a display name does not dial as an IP prefix.
        "139 1234 0001 / 12/345 / 139 1234 0002",
        "11/0 13912340001",
        "100/86 13912340001",
        "12345 13912340001",
        "政务服务 12345 13912340001",
        // QA 163: in any digits, and a mobile glued to a prefix is still read.
        "１２３４５ 13912340001",
        "1234513698765432",
    ] {
        assert_eq!(
            rejected(&ent(shown)),
            Some((403, "enterprise-not-whitelisted")),
            "{shown}"
        );
    }
    assert_eq!(
        rejected(&ent("\u{202b}5432 9876 136\u{202c}")),
        Some((403, "enterprise-not-whitelisted"))
    );
    for name in [
        // QA 26: dates and times of day, alone, together and in ranges.
        "ACME 2024-01-10 09:00",
        "ACME 10/01/2024 09:00",
        "ACME 10.01.2024 09:00",
        "ACME 10/01 09:00-18:00",
        "ACME 2024.01.10-2024.02.10",
        "ACME 24-01-10 09:30",
        "Open 9:00-18:00",
        // QA 197 F2: opening hours after the number, an hour of one digit.
        "中国银行 13912340001 9:00-17:00",
        "ACME 139 1234 0001 8:00-20:00",
        "ACME 13912340001 2024-01-10",
        "ACME 139-1234-0001 10/01 09:00",
        "ACME 139 1234 1023 8:00-17:00",
        // QA 199 FB: typed with a Chinese input method.
        "ACME 139 1234 1023 8：00-17：00",
        "ACME 139 1234 1023 ８：００－１７：００",
        "ACME [Shenzhen] Co.",
        "客服中心【总部】",
        "Q1|2024|Report",
        "★ACME★",
    ] {
        assert_eq!(rejected(&ent(name)), None, "{name}");
    }
    assert_eq!(
        rejected(&ent("95 588")),
        Some((403, "enterprise-not-whitelisted"))
    );
    // QA 36 R2: a service number written across marks is read on enterprise trunks too,
    // while references, ranges, dates, prices and labels written so are not numbers.
    for shown in [
        "中国银行 95-588",
        "中国银行 95/588",
        "中国银行【95】588",
        "中国银行 95|588",
        "中国移动 100-86",
        "市长热线 12-345",
        "报警 1-1-0",
        "反诈 96-110",
        "Bank of China 9-5-5-8-8",
        // QA 201: a date after a short code hides none of it; a time does not where the
        // text names the police.
        "报警 1 10/10",
        "中国移动 1008/6/10",
        "市长热线 123/15/10",
        "公安 1 10:00",
    ] {
        assert_eq!(
            rejected(&ent(shown)),
            Some((403, "enterprise-not-whitelisted")),
            "{shown}"
        );
    }
    // Two of the business's own numbers side by side show no third made of the end of
    // one and the start of the other (QA 156: `"+86 10 5555 0100 / +86 10 5555 0101"`
    // showed +865555010086, refused); a '+' before digits starts a number of its own.
    // Names with '+' or 一 that hold no number pass.
    for name in [
        "+86 400 800 1234 / +86 400 800 1234",
        "400 800 1234 / 400 800 1234",
        "139 1234 0001 / 139 1234 0002",
        "139 1234 0101 / 0086 139 1234 0001",
        // QA 160: stray digits before a '+' that starts a number, two numbers with no
        // separator between them.
        "7x24 +86 139 1234 0001",
        "Ext 123 +86 139 1234 0001",
        "139 1234 0001 400 800 1234",
        "0086 139 1234 0101 0086 139 1234 0001",
        // QA 163: a word with digits between list separators beside own numbers.
        "400-800-1234 / 5号",
        "139 1234 0001 / 12 / 139 1234 0002",
        "139 1234 0001、分机 12、139 1234 0002",
        // QA 164: an abbreviated list, its separator unspaced; QA 165: a price range.
        "400-800-1234/35",
        "139-1234-0001/02",
        "价格1,110-1,220元",
        "Revenue 1,120 2023",
        "400-800-1234 400-800-1234",
        "+86 139 1234 0001 +86 139 1234 0002",
        "C++ 2024",
        "24+7 Support",
        "WiFi 6+",
        "一号店 3楼",
        "Grade 1一2",
    ] {
        assert_eq!(rejected(&ent(name)), None, "{name}");
    }
    for name in [
        "ACME No.3-21",
        "ACME Unit 7-305",
        "Q1-2024 Report",
        "ACME 95,588元",
        "ACME 2024-12-31",
        "ACME 12/31",
        "ACME v2.10.3",
        "中国银行 95.588",
        "Room 1-10",
        "Building 5-12",
    ] {
        assert_eq!(rejected(&ent(name)), None, "{name}");
    }
}

/// A From the generic-number rule rewrites whose URI has no user part to edit (a host
/// that breaks the grammar) or another scheme is replaced whole by the asserted number
/// (QA 24: the verdict said rewrite, and the From went on as it came).
#[test]
fn a_from_with_no_user_to_edit_is_replaced_whole() {
    let p = policy("");
    let pai = "P-Asserted-Identity: <sip:+442071234567@uk.example>\r\n";
    for from in [
        "\"+86 138 1234 5678\" <sip:+8613812345678>",
        "\"95588\" <sip:sbc_01.carrier.example>",
        "<h323:95588@uk.example>",
        "<im:13812345678@uk.example>",
        // QA 25: a host only (shown as the caller by some equipment), no host, a
        // password beside the user, a broken IPv6 reference.
        "<sip:13812345678>",
        "<sip:95588;user=phone>",
        "<sip:110@>",
        "<sip:user:pass@95588>",
        "<sip:95588@[::1>",
    ] {
        let m = with_from(from, pai);
        let d = passes(&p, &m, "intl");
        assert_eq!(d.rule, Some(RuleId::GenericNumber), "{from}");
        let out = forwarded(&p, &m, &d);
        assert_eq!(
            out.value(HeaderName::From).unwrap(),
            b"<tel:+442071234567>;tag=ft1",
            "{from}"
        );
    }
    // A From with a user part keeps its URI, the user rewritten.
    let m = with_from("\"95588\" <sip:+8695588@uk.example>", pai);
    assert_eq!(
        rewritten_from(&p, &m),
        b"<sip:+442071234567@uk.example>;tag=ft1".to_vec()
    );
}

/// Enterprise trunks: a dial string in a user part whose marks hide its digits
/// (`*8001`, `*6713812345678`) breaks the plan as `8001` does; a currency sign before
/// a service number in a user part or beside a word in a display name hides nothing
/// (QA 50). Their look-alikes that are a contracted number or no number pass.
#[test]
fn marks_and_currency_signs_hide_no_presented_number() {
    let p = policy("");
    let pai = "P-Asserted-Identity: <sip:+8613912340001@x>\r\n";
    for from in [
        "<sip:8001@pbx>",
        "<sip:*8001@pbx>",
        "<sip:#8001@pbx>",
        "<sip:%2A8001@pbx>",
        "<sip:*6713812345678@pbx>",
        "<sip:*67110@pbx>",
        // Blanks, controls and what draws nothing among the marks (QA 51), and the
        // pauses of a dial string.
        "<sip:*8001%20@pbx>",
        "<sip:%20*8001@pbx>",
        "<sip:*%208001@pbx>",
        "<sip:*8001%09@pbx>",
        "<sip:*8001%00@pbx>",
        "<sip:*8001%E2%80%8B@pbx>",
        "<sip:8001,1@pbx>",
        "<sip:*8001,1@pbx>",
        "<sip:8001p1@pbx>",
        "<sip:8001w1@pbx>",
        "<sip:95,588@pbx>",
    ] {
        let d = judge(&p, &with_from(from, pai), "ent");
        assert_eq!(rejected(&d), Some((403, "numbering-plan")), "{from}: {d:?}");
        assert!(d.presented_hits.contains(RuleId::NumberingPlan), "{from}");
    }
    for from in [
        "<sip:$95588@pbx>",
        "<sip:%2495588@pbx>",
        "<sip:%C2%A595588@pbx>",
        "<sip:$10086@pbx>",
        "\"客服 $95588\" <sip:+8613912340001@pbx>",
        "\"客服 ¥95588\" <sip:+8613912340001@pbx>",
    ] {
        let d = judge(&p, &with_from(from, pai), "ent");
        assert!(rejected(&d).is_some(), "{from}: {d:?}");
        assert!(!d.presented_hits.is_empty(), "{from}: {d:?}");
    }
    // A contracted number behind the marks, a name, a price: nothing refused.
    for from in [
        "<sip:*13912340002@pbx>",
        "<sip:pbx-gw@pbx>",
        "\"特价 ¥1,280\" <sip:+8613912340001@pbx>",
        "\"会员 ¥128\" <sip:+8613912340001@pbx>",
    ] {
        let d = passes(&p, &with_from(from, pai), "ent");
        assert_eq!(d.rule, None, "{from}");
    }
}

/// The caller's ACK of its INVITE's final answer, as the gateway carries it.
fn ack_of(call_id: &str, rates: &LocalRateCounter, now_ms: u64) {
    let s = format!(
        "ACK sip:4008001234@10.0.0.100 SIP/2.0\r\nVia: SIP/2.0/UDP 10.9.9.9:5060;branch=z9hG4bK-ack-{call_id}\r\nFrom: <sip:x@10.9.9.9>;tag=ft1\r\nTo: <sip:4008001234@10.0.0.100>;tag=core\r\nCall-ID: {call_id}\r\nCSeq: 1 ACK\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    );
    let m = Message::parse(Bytes::from(s)).unwrap();
    sipfence::decide::track_dialog(&m, || false, rates, now_ms);
}

/// The context of a call on the capped international trunk, `now` ms after Monday 10:00.
fn capped_at<'a>(rates: &'a LocalRateCounter, calls: &'a LocalTracker, now: u64) -> Context<'a> {
    Context {
        source: src("intl-cap"),
        local: None,
        trunk: None,
        now_ms: MON_10H + now,
        wall_ms: MON_10H + now,
        rates,
        behaviour: calls,
    }
}

/// The core's final answer to `caller`'s INVITE (a [`invite`] call), told to the tracker.
fn core_answers(calls: &LocalTracker, caller: &str, code: u16, to_tag: &str) {
    let s = format!(
        "SIP/2.0 {code} X\r\nVia: SIP/2.0/UDP 10.9.9.9:5060;branch=z9hG4bK-{caller}\r\nFrom: <sip:{caller}@10.9.9.9>;tag=ft1\r\nTo: <sip:4008001234@10.0.0.100>;tag={to_tag}\r\nCall-ID: call-{caller}\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
    );
    let m = Message::parse(Bytes::from(s)).unwrap();
    sipfence::behaviour::observe(&m, true, calls, MON_10H);
}

/// A copy of an answered call's INVITE sent before its caller acknowledged the answer
/// is the answer lost on its way back: the same call, in the place it has, even with
/// the trunk full (QA 93: it took a second place, and its caller got 503 for a call
/// the callee had answered). Sent after the ACK, it is a new attempt that takes a place
/// of its own, and keeps it when the core makes a new dialog of it (QA 52: such a copy
/// rode past `max_concurrent_calls`).
#[test]
fn a_copy_of_an_answered_invite_is_held_to_the_limit() {
    let p = policy(CAPPED);
    let rates = LocalRateCounter::new(1000);
    let calls = LocalTracker::new(64, 64);
    let ctx = |now: u64| capped_at(&rates, &calls, now);
    let up = || calls.calls_up(p.trunks[3].id, MON_10H);
    let answer = |caller: &str, code: u16, to_tag: &str| core_answers(&calls, caller, code, to_tag);
    let (a, b) = ("+442071234561", "+442071234562");
    let x = invite(a, "");
    assert_eq!(rejected(&decide(&p, &x, &ctx(0))), None);
    answer(a, 200, "t1");
    assert_eq!(rejected(&decide(&p, &invite(b, ""), &ctx(50))), None);
    assert_eq!(up(), 2);
    // The 200 lost before the caller: its INVITE again, the core's 200 again.
    let d = decide(&p, &x, &ctx(100));
    assert!(d.retransmission && rejected(&d).is_none(), "{d:?}");
    assert_eq!(up(), 2);
    answer(a, 200, "t1");
    assert_eq!(up(), 2);
    // Acknowledged; the other call ends busy. The same bytes again: a new attempt, in
    // the place the busy call gave back, kept when the core makes a new dialog of it.
    ack_of(&format!("call-{a}"), &rates, MON_10H + 150);
    answer(b, 486, "t3");
    assert_eq!(up(), 1);
    let d = decide(&p, &x, &ctx(200));
    assert!(!d.retransmission && rejected(&d).is_none(), "{d:?}");
    assert_eq!(up(), 2);
    answer(a, 200, "t2");
    assert_eq!(up(), 2);
    let y = invite("+442071234563", "");
    assert_eq!(
        rejected(&decide(&p, &y, &ctx(300))),
        Some((503, "concurrent-calls"))
    );
    // Calls whose end went unseen leave the gauge once past their deadline (four hours
    // after an answer), without waiting for the trunk's next call (QA 52).
    let later = MON_10H + 5 * 3_600_000;
    assert_eq!(calls.calls_up(p.trunks[3].id, later), 0);
}

/// A copy sent after the caller's ACK is a new attempt each time: refused at the limit,
/// it is judged again on the places as they are when it comes again, not refused for
/// having been refused (QA 94: 503 with a place free, and counted as a call).
#[test]
fn a_new_attempt_refused_at_the_limit_is_judged_again() {
    let p = policy(CAPPED);
    let rates = LocalRateCounter::new(1000);
    let calls = LocalTracker::new(64, 64);
    let ctx = |now: u64| capped_at(&rates, &calls, now);
    let answer = |caller: &str, code: u16| core_answers(&calls, caller, code, &format!("t{code}"));
    let (a, b) = ("+442071234561", "+442071234562");
    let x = invite(a, "");
    assert_eq!(rejected(&decide(&p, &x, &ctx(0))), None);
    answer(a, 200);
    ack_of(&format!("call-{a}"), &rates, MON_10H + 50);
    assert_eq!(rejected(&decide(&p, &invite(b, ""), &ctx(60))), None);
    let d = decide(&p, &x, &ctx(100));
    assert!(!d.retransmission, "{d:?}");
    assert_eq!(rejected(&d), Some((503, "concurrent-calls")));
    // The other call fails: a place is free, and the same bytes take it.
    answer(b, 486);
    let d = decide(&p, &x, &ctx(200));
    assert!(!d.retransmission && rejected(&d).is_none(), "{d:?}");
}

/// An INVITE sent again after its caller acknowledged the final answer is no
/// retransmission: a UAC retransmits only until it has its answer, and a core whose
/// transaction has ended takes the copy as a new call. It is judged and counted (QA 52:
/// the same bytes sent again once a call had ended passed the per-caller limit). Before
/// the ACK, a copy says the answer was lost on its way back: the same call, uncounted
/// (QA 93: refused 403 at the per-caller limit for a call the core had answered).
#[test]
fn an_invite_sent_again_after_its_final_answer_is_counted() {
    let p = policy("");
    let rates = LocalRateCounter::new(1000);
    let call = |from: &str, k: u32| renamed(&invite(from, ""), from, &format!("{from}-{k}"));
    let a = "13912340001";
    let r = |m: &Message, t: u64| judge_at(&p, m, "ent", MON_10H + t, &rates);
    // The core's final answer to call k, relayed (our Via on top, the caller's below).
    let answered = |k: u32, code: u16, t: u64| {
        let s = format!(
            "SIP/2.0 {code} X\r\nVia: SIP/2.0/UDP 10.0.0.9:5060;branch=z9hG4bKsf0123456789abcdef\r\nVia: SIP/2.0/UDP 10.9.9.9:5060;branch=z9hG4bK-{a}-{k}\r\nFrom: <sip:{a}@10.9.9.9>;tag=ft1\r\nTo: <sip:4008001234@10.0.0.100>;tag=core\r\nCall-ID: call-{a}-{k}\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
        );
        let m = Message::parse_for_relay(Bytes::from(s)).unwrap();
        sipfence::decide::track_dialog(&m, || true, &rates, MON_10H + t);
    };
    let a1 = call(a, 1);
    assert_eq!(rejected(&r(&a1, 0)), None);
    // Retransmitted while the core thinks it over: the same call, uncounted.
    let d = r(&a1, 500);
    assert!(d.retransmission && rejected(&d).is_none());
    answered(1, 486, 1_000);
    // The answer lost on its way back: the caller sends its INVITE again, twice, and
    // it is still the same call (the caller's limit is two a minute).
    for t in [1_500, 2_500] {
        let d = r(&a1, t);
        assert!(d.retransmission && rejected(&d).is_none(), "{d:?}");
    }
    // Sent again after the caller's ACK: a call of its own, the caller's second.
    ack_of(&format!("call-{a}-1"), &rates, MON_10H + 3_000);
    let d = r(&a1, 6_000);
    assert!(!d.retransmission && rejected(&d).is_none(), "{d:?}");
    // And again: the third in the minute, over the limit of two.
    let d = r(&a1, 7_000);
    assert_eq!(rejected(&d), Some((403, "enterprise-rate-caller")), "{d:?}");
    // A call whose ACK went around the gateway (or never came) but whose BYE passed:
    // its caller had the answer, so the same bytes after it are a new attempt (QA 94).
    let rates3 = LocalRateCounter::new(1000);
    let r3 = |m: &Message, t: u64| judge_at(&p, m, "ent", MON_10H + t, &rates3);
    let a3 = call(a, 3);
    assert_eq!(rejected(&r3(&a3, 0)), None);
    let bye = format!(
        "BYE sip:x@10.0.0.100 SIP/2.0\r\nVia: SIP/2.0/UDP 10.9.9.9:5060;branch=z9hG4bK-bye3\r\nFrom: <sip:{a}@10.9.9.9>;tag=ft1\r\nTo: <sip:4008001234@10.0.0.100>;tag=core\r\nCall-ID: call-{a}-3\r\nCSeq: 2 BYE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    );
    let bye = Message::parse(Bytes::from(bye)).unwrap();
    sipfence::decide::track_dialog(&bye, || false, &rates3, MON_10H + 4_000);
    let d = r3(&a3, 5_000);
    assert!(!d.retransmission && rejected(&d).is_none(), "{d:?}");
    assert_eq!(
        rejected(&r3(&a3, 6_000)),
        Some((403, "enterprise-rate-caller"))
    );
    // The core's BYE names the caller's tag in To: the call is over all the same.
    let rates4 = LocalRateCounter::new(1000);
    let r4 = |m: &Message, t: u64| judge_at(&p, m, "ent", MON_10H + t, &rates4);
    assert_eq!(rejected(&r4(&a3, 0)), None);
    let core_bye = String::from_utf8(bye.bytes().to_vec())
        .unwrap()
        .replace("From: <sip:", "X-From: <sip:")
        .replace(
            "To: <sip:4008001234@10.0.0.100>;tag=core",
            "From: <sip:4008001234@10.0.0.100>;tag=core",
        )
        .replace("X-From: ", "To: ");
    let core_bye = Message::parse(Bytes::from(core_bye)).unwrap();
    assert_eq!(core_bye.to_tag(), Some(&b"ft1"[..]));
    sipfence::decide::track_dialog(&core_bye, || true, &rates4, MON_10H + 4_000);
    assert!(!r4(&a3, 5_000).retransmission);
    // Another call's ACK ends nothing of this one's: its retransmissions stay so.
    let a2 = call(a, 2);
    let rates2 = LocalRateCounter::new(1000);
    let r2 = |m: &Message, t: u64| judge_at(&p, m, "ent", MON_10H + t, &rates2);
    assert_eq!(rejected(&r2(&a2, 0)), None);
    answered(1, 200, 100);
    ack_of(&format!("call-{a}-1"), &rates2, MON_10H + 200);
    assert!(r2(&a2, 600).retransmission);
}

/// The ACK of sipfence's own refusal ends no transaction the core had: the proxy
/// absorbs it, so replay and `explain`, which see it, read the INVITE's copies as the
/// proxy does (retransmissions of the refused call, not new attempts).
#[test]
fn the_ack_of_our_own_refusal_ends_no_transaction() {
    let p = policy("");
    let rates = LocalRateCounter::new(1000);
    let r = |m: &Message, t: u64| judge_at(&p, m, "ent", MON_10H + t, &rates);
    let m = renamed(&invite("13999999999", ""), "13999999999", "refused-1");
    let d = r(&m, 0);
    assert_eq!(rejected(&d), Some((403, "enterprise-not-whitelisted")));
    let tag = String::from_utf8(sipfence::sip::response::stable_tag(&m).to_vec()).unwrap();
    let ack = format!(
        "ACK sip:4008001234@10.0.0.100 SIP/2.0\r\nVia: SIP/2.0/UDP 10.9.9.9:5060;branch=z9hG4bK-refused-1\r\nFrom: <sip:13999999999@10.9.9.9>;tag=ft1\r\nTo: <sip:4008001234@10.0.0.100>;tag={tag}\r\nCall-ID: call-refused-1\r\nCSeq: 1 ACK\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    );
    let ack = Message::parse(Bytes::from(ack)).unwrap();
    sipfence::decide::track_dialog(&ack, || false, &rates, MON_10H + 100);
    let d = r(&m, 2_000);
    assert!(d.retransmission, "{d:?}");
    assert_eq!(rejected(&d), Some((403, "enterprise-not-whitelisted")));
    // The ACK of the core's answer does end it.
    let core_ack = String::from_utf8(ack.bytes().to_vec())
        .unwrap()
        .replace(&format!("tag={tag}"), "tag=core");
    let core_ack = Message::parse(Bytes::from(core_ack)).unwrap();
    sipfence::decide::track_dialog(&core_ack, || false, &rates, MON_10H + 3_000);
    assert!(!r(&m, 4_000).retransmission);
}

/// The caller is judged once, when the call is set up: a later request of the dialog
/// from the trunk's side may not name another (QA 61: an UPDATE or a re-INVITE asserting
/// 110 or a domestic number reached the core, which can show it to the callee as a
/// caller-ID update). Its identity fields and any label go; From, To and the rest stay.
#[test]
fn later_requests_of_a_dialog_name_no_other_caller() {
    let p = policy("");
    for method in ["UPDATE", "INVITE", "BYE", "INFO"] {
        let s = format!(
            "{method} sip:core@10.0.0.100 SIP/2.0\r\nVia: SIP/2.0/UDP 10.9.9.9:5060;branch=z9hG4bK-ud\r\nFrom: <sip:+442071234567@10.9.9.9>;tag=ft1\r\nTo: <sip:4008001234@10.0.0.100>;tag=core1\r\nCall-ID: call-ud\r\nCSeq: 2 {method}\r\nMax-Forwards: 70\r\nP-Asserted-Identity: \"110\" <sip:110@10.9.9.9>\r\nP-Preferred-Identity: <tel:+8613812345678>\r\nRemote-Party-ID: <sip:95588@x>;party=calling\r\nX-Sipfence-Label: clean\r\nContent-Length: 0\r\n\r\n"
        );
        let m = Message::parse(Bytes::from(s)).unwrap();
        for trunk in ["intl", "ic", "ent"] {
            let d = judge(&p, &m, trunk);
            if method == "INVITE" {
                // A re-INVITE of a dialog this gateway never saw is judged as a call.
                continue;
            }
            assert_eq!(d.kind, Kind::InDialog, "{method} {trunk}");
            assert_eq!(rejected(&d), None);
            let out = forwarded(&p, &m, &d);
            for h in [
                HeaderName::PAssertedIdentity,
                HeaderName::PPreferredIdentity,
                HeaderName::RemotePartyId,
            ] {
                assert_eq!(out.value(h), None, "{method} {trunk} {h:?}");
            }
            let text = String::from_utf8_lossy(out.buf());
            assert!(!text.contains("X-Sipfence-Label"), "{text}");
            assert_eq!(
                out.value(HeaderName::From),
                Some(&b"<sip:+442071234567@10.9.9.9>;tag=ft1"[..])
            );
            assert_eq!(out.value(HeaderName::CallId), Some(&b"call-ud"[..]));
        }
    }
    // The initial INVITE keeps its (judged) asserted identity.
    let m = with_from(
        "<sip:+442071234567@gw.example>",
        "P-Asserted-Identity: <sip:+442071234567@gw.example>\r\n",
    );
    let d = passes(&p, &m, "intl");
    assert_eq!(
        forwarded(&p, &m, &d).value(HeaderName::PAssertedIdentity),
        Some(&b"<sip:+442071234567@gw.example>"[..])
    );
}

/// On a trunk that records the route, every call's later requests pass here: the
/// caller's side cannot show the callee another caller in an UPDATE or re-INVITE than
/// its INVITE did (QA 173 F1: a clean +44 call's UPDATE went on with From "110", its
/// re-INVITE with a +86 number). Its From is kept as written, and given back.
#[test]
fn a_recorded_calls_from_cannot_change_within_the_call() {
    use sipfence::decide::{callers_from, kept_from, track_dialog};
    let p = policy(
        "[[trunk]]\nname = \"intl-rr\"\nrole = \"international\"\nsources = [\"192.0.2.77\"]\nrecord_route = true\n",
    );
    let rates = LocalRateCounter::new(1000);
    let pai = "P-Asserted-Identity: <sip:+442071234567@uk.example>\r\n";
    let from = "\"Alice\" <sip:+442071234567@uk.example>";
    let inv = with_from(from, pai);
    let d = judge_at(&p, &inv, "intl-rr", MON_10H, &rates);
    assert!(!d.is_reject() && !d.rewrite_from, "{d:?}");
    let ok = Message::parse_for_relay(Bytes::from(format!(
        "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 10.9.9.9:5060;branch=z9hG4bK-wf\r\nFrom: {from};tag=ft1\r\nTo: <sip:4008001234@10.0.0.100>;tag=uas1\r\nCall-ID: call-wf\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
    )))
    .unwrap();
    track_dialog(&ok, || true, &rates, MON_10H + 1_000);
    // Its answers go back as they are: the caller's From was never changed.
    assert_eq!(callers_from(&ok, &rates, MON_10H + 1_000), None);
    let later = |method: &str, cseq: u32, new_from: &str| {
        let t = format!(
            "{method} sip:4008001234@10.0.0.100 SIP/2.0\r\nVia: SIP/2.0/UDP 10.9.9.9:5060;branch=z9hG4bK-l{cseq}\r\nFrom: {new_from};tag=ft1\r\nTo: <sip:4008001234@10.0.0.100>;tag=uas1\r\nCall-ID: call-wf\r\nCSeq: {cseq} {method}\r\nMax-Forwards: 70\r\nP-Asserted-Identity: <sip:110@x>\r\nContent-Length: 0\r\n\r\n"
        );
        Message::parse(Bytes::from(t)).unwrap()
    };
    let at_core = |m: &Message, rates: &LocalRateCounter, p: &Policy, trunk: &str| {
        let d = judge_at(p, m, trunk, MON_10H + 60_000, rates);
        assert_eq!(d.kind, Kind::InDialog, "{d:?}");
        let kept = kept_from(m, &d, rates, MON_10H + 60_000);
        let mut e = EditList::new();
        verdict::add_edits(p, m, &d, kept.as_deref(), &mut e);
        let mut out = vec![];
        e.apply(m.buf(), m.len(), &mut out);
        let fwd = Message::parse(Bytes::from(out)).expect("re-parses");
        assert_eq!(fwd.count(HeaderName::PAssertedIdentity), 0);
        String::from_utf8_lossy(fwd.value(HeaderName::From).unwrap()).into_owned()
    };
    let want = format!("{from};tag=ft1");
    for (method, cseq, new_from) in [
        ("UPDATE", 2, "\"110\" <sip:110@uk.example;user=phone>"),
        (
            "INVITE",
            3,
            "\"+86 138 1234 5678\" <sip:+8613812345678@uk.example>",
        ),
        ("INFO", 4, "<sip:+8613812345678@uk.example>"),
        // Unchanged: goes on untouched.
        ("UPDATE", 5, from),
    ] {
        assert_eq!(
            at_core(&later(method, cseq, new_from), &rates, &p, "intl-rr"),
            want,
            "{method} {new_from}"
        );
    }
    // A caller cannot opt out (QA 176 N1): a From padded past what is kept is kept as
    // its URI and tag, and one without a tag by the Call-ID alone.
    let sent = |text: String| Message::parse(Bytes::from(text)).unwrap();
    let call = |id: &str, from: &str| {
        sent(format!(
            "INVITE sip:4008001234@10.0.0.100 SIP/2.0\r\nVia: SIP/2.0/UDP 10.9.9.9:5060;branch=z9hG4bK-{id}\r\nFrom: {from}\r\nTo: <sip:4008001234@10.0.0.100>\r\nCall-ID: {id}\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\n{pai}Content-Length: 0\r\n\r\n"
        ))
    };
    let update = |id: &str, from: &str| {
        sent(format!(
            "UPDATE sip:4008001234@10.0.0.100 SIP/2.0\r\nVia: SIP/2.0/UDP 10.9.9.9:5060;branch=z9hG4bK-u{id}\r\nFrom: {from}\r\nTo: <sip:4008001234@10.0.0.100>;tag=uas1\r\nCall-ID: {id}\r\nCSeq: 2 UPDATE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        ))
    };
    let padded = format!(
        "\"Alice\" <sip:+442071234567@uk.example;user=phone>;x={};tag=pad1",
        "a".repeat(600)
    );
    judge_at(&p, &call("pad", &padded), "intl-rr", MON_10H, &rates);
    assert_eq!(
        at_core(
            &update("pad", "\"110\" <sip:110@uk.example>;tag=pad1"),
            &rates,
            &p,
            "intl-rr"
        ),
        "<sip:+442071234567@uk.example>;tag=pad1"
    );
    judge_at(&p, &call("notag", from), "intl-rr", MON_10H, &rates);
    assert_eq!(
        at_core(
            &update("notag", "\"110\" <sip:110@uk.example>"),
            &rates,
            &p,
            "intl-rr"
        ),
        from
    );
    // A tagless call's later request adding a tag is the same caller (QA 178 C2).
    assert_eq!(
        at_core(
            &update("notag", "\"110\" <sip:110@uk.example>;tag=X1"),
            &rates,
            &p,
            "intl-rr"
        ),
        from
    );
    // The caller's side writing its dialog's tags the other way round (the core's tag
    // in From) sends no in-dialog MESSAGE of its own: judged (QA 178 B1).
    let swapped = sent(
        "MESSAGE sip:4008001234@10.0.0.100 SIP/2.0\r\nVia: SIP/2.0/UDP 10.9.9.9:5060;branch=z9hG4bK-sw\r\nFrom: \"95588\" <sip:95588@uk.example>;tag=uas1\r\nTo: <sip:4008001234@10.0.0.100>;tag=ft1\r\nCall-ID: call-wf\r\nCSeq: 9 MESSAGE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        .to_string(),
    );
    let d = judge_at(&p, &swapped, "intl-rr", MON_10H + 60_000, &rates);
    assert_eq!(
        (d.kind, rejected(&d)),
        (Kind::OtherRequest, Some((403, "intl-forged-service"))),
        "{d:?}"
    );
    // So is an INVITE with the tags the other way round, as a call of a dialog never
    // carried here: the core keys dialogs by its own tag and the peer's, and a lenient
    // one relays such an INVITE to its Request-URI (QA 182 F5: it passed as a
    // re-INVITE, From as written).
    let swapped_invite = sent(
        "INVITE sip:13700001111@10.0.0.100 SIP/2.0\r\nVia: SIP/2.0/UDP 10.9.9.9:5060;branch=z9hG4bK-swi\r\nFrom: \"95588\" <sip:+8613912345678@uk.example>;tag=uas1\r\nTo: <sip:4008001234@10.0.0.100>;tag=ft1\r\nCall-ID: call-wf\r\nCSeq: 10 INVITE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        .to_string(),
    );
    let d = judge_at(&p, &swapped_invite, "intl-rr", MON_10H + 60_000, &rates);
    assert!(d.unknown_dialog && d.kind == Kind::Call, "{d:?}");
    assert_eq!(rejected(&d).map(|r| r.1), Some("intl-domestic-caller"));
    // Without Record-Route nothing is kept (the later requests pass elsewhere).
    let plain = LocalRateCounter::new(1000);
    judge_at(&p, &inv, "intl", MON_10H, &plain);
    track_dialog(&ok, || true, &plain, MON_10H + 1_000);
    let update = later("UPDATE", 2, "\"110\" <sip:110@uk.example;user=phone>");
    assert_eq!(
        at_core(&update, &plain, &p, "intl"),
        "\"110\" <sip:110@uk.example;user=phone>;tag=ft1"
    );
    // The tags the other way round name no dialog of the trunk's there either: such a
    // MESSAGE is judged by its sender (QA 182 F5: only record_route trunks judged it).
    let d = judge_at(&p, &swapped, "intl", MON_10H + 60_000, &plain);
    assert_eq!(
        (d.kind, rejected(&d)),
        (Kind::OtherRequest, Some((403, "intl-forged-service"))),
        "{d:?}"
    );
    // A call the core offered the trunk's peer: the peer's requests carry its own tag
    // (the 2xx's To-tag) in From, and pass as in-dialog; written with the core's tag in
    // From they are judged (QA 179 N6).
    let offer = Message::parse(Bytes::from(
        "INVITE sip:+442071234567@192.0.2.77 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.100:5060;branch=z9hG4bK-of\r\nFrom: <sip:+8613912345678@10.0.0.100>;tag=core7\r\nTo: <sip:+442071234567@192.0.2.77>\r\nCall-ID: offered-1\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
    ))
    .unwrap();
    track_dialog(&offer, || true, &plain, MON_10H);
    let answered = Message::parse_for_relay(Bytes::from(
        "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 10.0.0.100:5060;branch=z9hG4bK-of\r\nFrom: <sip:+8613912345678@10.0.0.100>;tag=core7\r\nTo: <sip:+442071234567@192.0.2.77>;tag=peer7\r\nCall-ID: offered-1\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n",
    ))
    .unwrap();
    track_dialog(&answered, || false, &plain, MON_10H + 1_000);
    let peers = |from_tag: &str, to_tag: &str| {
        sent(format!(
            "MESSAGE sip:+8613912345678@10.0.0.100 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.77:5060;branch=z9hG4bK-pm{from_tag}\r\nFrom: \"95588\" <sip:95588@uk.example>;tag={from_tag}\r\nTo: <sip:+8613912345678@10.0.0.100>;tag={to_tag}\r\nCall-ID: offered-1\r\nCSeq: 2 MESSAGE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        ))
    };
    let d = judge_at(
        &p,
        &peers("peer7", "core7"),
        "intl",
        MON_10H + 2_000,
        &plain,
    );
    assert_eq!(d.kind, Kind::InDialog, "{d:?}");
    let d = judge_at(
        &p,
        &peers("core7", "peer7"),
        "intl",
        MON_10H + 2_000,
        &plain,
    );
    assert_eq!(
        (d.kind, rejected(&d)),
        (Kind::OtherRequest, Some((403, "intl-forged-service"))),
        "{d:?}"
    );
}

/// An answer goes back to the caller with the From it wrote whenever the call's From
/// went on changed: a peer's `verstat` taken off is a change too (QA 191 F3: the 183
/// came back without it), and a From written over two lines of a request in bare LFs
/// comes back in CRLFs, as the rest of the answer is (QA 191 F4).
#[test]
fn an_answer_gets_the_callers_from_back_as_it_was_written() {
    let p = policy("");
    let pai = "P-Asserted-Identity: <sip:+442071234567@uk.example>\r\n";
    let answer_to = |forwarded_from: &[u8]| {
        Message::parse_for_relay(Bytes::from(format!(
            "SIP/2.0 183 Session Progress\r\nVia: SIP/2.0/UDP 10.9.9.9:5060;branch=z9hG4bK-wf\r\nFrom: {}\r\nTo: <sip:4008001234@10.0.0.100>;tag=uas1\r\nCall-ID: call-wf\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n",
            String::from_utf8_lossy(forwarded_from)
        )))
        .unwrap()
    };
    for (inv, written) in [
        (
            with_from("<tel:+442071234567;verstat=TN-Validation-Passed>", pai),
            &b"<tel:+442071234567;verstat=TN-Validation-Passed>;tag=ft1"[..],
        ),
        (
            with_from("<sip:+442071234567;VerStat=x@uk.example>", pai),
            b"<sip:+442071234567;VerStat=x@uk.example>;tag=ft1",
        ),
    ] {
        let rates = LocalRateCounter::new(1000);
        let d = judge_at(&p, &inv, "intl", MON_10H, &rates);
        let fwd = forwarded(&p, &inv, &d);
        let given = fwd.value(HeaderName::From).unwrap();
        assert!(!given.windows(7).any(|w| w.eq_ignore_ascii_case(b"verstat")));
        assert_eq!(
            sipfence::decide::callers_from(&answer_to(given), &rates, MON_10H + 100).as_deref(),
            Some(written),
            "{}",
            String::from_utf8_lossy(written)
        );
    }
    // The caller's lines end in LF alone, its From folded.
    let text = String::from_utf8(
        with_from("\"95588\"\r\n <sip:95588@uk.example>", pai)
            .bytes()
            .to_vec(),
    )
    .unwrap()
    .replace("\r\n", "\n");
    let inv = Message::parse(Bytes::from(text)).unwrap();
    assert!(inv.bare_lf());
    let rates = LocalRateCounter::new(1000);
    let d = judge_at(&p, &inv, "intl", MON_10H, &rates);
    assert!(d.rewrite_from, "{d:?}");
    let fwd = forwarded(&p, &inv, &d);
    let back = sipfence::decide::callers_from(
        &answer_to(fwd.value(HeaderName::From).unwrap()),
        &rates,
        MON_10H + 100,
    )
    .unwrap();
    assert_eq!(&back[..], b"\"95588\"\r\n <sip:95588@uk.example>;tag=ft1");
}

/// The From a rewritten call's INVITE went on with is the From of its CANCEL (RFC 3261
/// 9.1: a CANCEL's From is its INVITE's) and of every later request of the caller's
/// side, for as long as the call lasts: the callee's side never sees the number or
/// name the rules took off (QA 65: the bank's name came back in the CANCEL, ACK,
/// re-INVITE and UPDATE). The core's own requests, and calls whose From went on as
/// written, are left alone.
#[test]
fn a_rewritten_from_stays_rewritten_for_the_whole_call() {
    use sipfence::decide::{kept_from, track_dialog};
    let p = policy("");
    let rates = LocalRateCounter::new(1000);
    let froms = |r: &LocalRateCounter| {
        r.recent()
            .unwrap()
            .tables()
            .into_iter()
            .find(|t| t.0 == "froms")
            .unwrap()
            .1
    };
    let pai = "P-Asserted-Identity: <sip:+442071234567@uk.example>\r\n";
    let inv = with_from("\"中国银行95588\" <sip:+442071234567@uk.example>", pai);
    let d = judge_at(&p, &inv, "intl", MON_10H, &rates);
    assert!(d.rewrite_from, "{d:?}");
    let fwd = forwarded(&p, &inv, &d);
    let want = fwd.value(HeaderName::From).unwrap().to_vec();
    assert_eq!(
        String::from_utf8_lossy(&want),
        "<sip:+442071234567@uk.example>;tag=ft1"
    );
    assert_eq!(froms(&rates), 1);
    let text = String::from_utf8(inv.bytes().to_vec()).unwrap();
    let request = |method: &str, to_tag: &str, cseq: &str| {
        let t = text
            .replacen("INVITE sip:", &format!("{method} sip:"), 1)
            .replace("CSeq: 1 INVITE", &format!("CSeq: {cseq}"))
            .replace(
                "To: <sip:4008001234@10.0.0.100>",
                &format!("To: <sip:4008001234@10.0.0.100>{to_tag}"),
            );
        Message::parse(Bytes::from(t)).unwrap()
    };
    // What the core receives of a later message, its From.
    let from_at_core = |m: &Message, t: u64| {
        let d = judge_at(&p, m, "intl", MON_10H + t, &rates);
        assert_eq!(d.kind, Kind::InDialog, "{d:?}");
        let kept = kept_from(m, &d, &rates, MON_10H + t);
        let mut e = EditList::new();
        verdict::add_edits(&p, m, &d, kept.as_deref(), &mut e);
        let mut out = vec![];
        e.apply(m.buf(), m.len(), &mut out);
        let fwd = Message::parse(Bytes::from(out)).expect("re-parses");
        String::from_utf8_lossy(fwd.value(HeaderName::From).unwrap()).into_owned()
    };
    let want = String::from_utf8(want).unwrap();
    assert_eq!(from_at_core(&request("CANCEL", "", "1 CANCEL"), 500), want);
    // Answered: kept as long as the dialog, past the ringing time.
    let ok = Message::parse_for_relay(Bytes::from(format!(
        "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 10.9.9.9:5060;branch=z9hG4bK-wf\r\nFrom: {want}\r\nTo: <sip:4008001234@10.0.0.100>;tag=uas1\r\nCall-ID: call-wf\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
    )))
    .unwrap();
    track_dialog(&ok, || true, &rates, MON_10H + 1_000);
    // Its answer goes back to the caller with the From the caller wrote (RFC 3261
    // 8.2.6.2; QA 104), the core's requests' answers as they are.
    assert_eq!(
        sipfence::decide::callers_from(&ok, &rates, MON_10H + 1_000).as_deref(),
        Some(&b"\"\xe4\xb8\xad\xe5\x9b\xbd\xe9\x93\xb6\xe8\xa1\x8c95588\" <sip:+442071234567@uk.example>;tag=ft1"[..])
    );
    let core_side_answer = Message::parse_for_relay(Bytes::from(
        "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 10.0.0.100;branch=z9hG4bK-cb\r\nFrom: <sip:4008001234@10.0.0.100>;tag=uas1\r\nTo: <sip:+442071234567@uk.example>;tag=ft1\r\nCall-ID: call-wf\r\nCSeq: 1 BYE\r\nContent-Length: 0\r\n\r\n",
    ))
    .unwrap();
    assert_eq!(
        sipfence::decide::callers_from(&core_side_answer, &rates, MON_10H + 1_000),
        None
    );
    let ack = request("ACK", ";tag=uas1", "1 ACK");
    assert_eq!(from_at_core(&ack, 1_100), want);
    let update = request("UPDATE", ";tag=uas1", "2 UPDATE");
    assert_eq!(from_at_core(&update, 600_000), want);
    // The core's own request (the callee's tags the other way round) is its own.
    let core_bye = Message::parse(Bytes::from(
        "BYE sip:a@10.9.9.9 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.100;branch=z9hG4bK-cb\r\nFrom: <sip:4008001234@10.0.0.100>;tag=uas1\r\nTo: \"中国银行95588\" <sip:+442071234567@uk.example>;tag=ft1\r\nCall-ID: call-wf\r\nCSeq: 1 BYE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
    ))
    .unwrap();
    assert_eq!(
        from_at_core(&core_bye, 700_000),
        "<sip:4008001234@10.0.0.100>;tag=uas1"
    );
    // The BYE ends it: kept while the BYE may be sent again (32 s), then gone.
    track_dialog(&core_bye, || true, &rates, MON_10H + 700_000);
    let bye = request("BYE", ";tag=uas1", "3 BYE");
    assert_eq!(from_at_core(&bye, 710_000), want);
    rates.housekeep(MON_10H + 740_000);
    assert_eq!(froms(&rates), 0);
    assert_eq!(
        from_at_core(&bye, 740_000),
        "\"中国银行95588\" <sip:+442071234567@uk.example>;tag=ft1"
    );
    // A call whose From goes on as written keeps nothing.
    let plain = with_from_call("<sip:+442071234567@uk.example>", pai, "plain");
    let d = judge_at(&p, &plain, "intl", MON_10H, &rates);
    assert!(!d.rewrite_from && !d.is_reject(), "{d:?}");
    assert_eq!(froms(&rates), 0);
    // Without the answer, kept only as long as the call may ring (200 s) ...
    let rates = LocalRateCounter::new(1000);
    judge_at(&p, &inv, "intl", MON_10H, &rates);
    let d = judge_at(&p, &ack, "intl", MON_10H + 300_000, &rates);
    assert_eq!(kept_from(&ack, &d, &rates, MON_10H + 300_000), None);
    // ... from its last 180/183 (QA 66: a call that rang 215 s lost it); a failure
    // ends it 32 s later, but only the core's.
    let answer = |code: &str, to_tag: &str, at: u64, core: bool, rates: &LocalRateCounter| {
        let m = Message::parse_for_relay(Bytes::from(format!(
            "SIP/2.0 {code}\r\nVia: SIP/2.0/UDP 10.9.9.9:5060;branch=z9hG4bK-wf\r\nFrom: {want}\r\nTo: <sip:4008001234@10.0.0.100>{to_tag}\r\nCall-ID: call-wf\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
        )))
        .unwrap();
        track_dialog(&m, || core, rates, MON_10H + at);
    };
    let cancel = request("CANCEL", "", "1 CANCEL");
    let rates = LocalRateCounter::new(1000);
    let from_then = |m: &Message, t: u64, rates: &LocalRateCounter| {
        let d = judge_at(&p, m, "intl", MON_10H + t, rates);
        kept_from(m, &d, rates, MON_10H + t).map(|v| String::from_utf8(v.to_vec()).unwrap())
    };
    judge_at(&p, &inv, "intl", MON_10H, &rates);
    answer("180 Ringing", ";tag=uas1", 150_000, true, &rates);
    answer("183 Session Progress", ";tag=uas1", 300_000, true, &rates);
    assert_eq!(from_then(&cancel, 450_000, &rates), Some(want.clone()));
    answer("486 Busy Here", ";tag=uas1", 460_000, false, &rates);
    assert_eq!(from_then(&cancel, 495_000, &rates), Some(want.clone()));
    answer("487 Request Terminated", ";tag=uas1", 460_000, true, &rates);
    assert_eq!(from_then(&ack, 480_000, &rates), Some(want.clone()));
    assert_eq!(from_then(&ack, 495_000, &rates), None);
    // The retry the core asked for (same Call-ID and From tag) with a From that goes on
    // as written: its CANCEL repeats that From, not the one kept for the first (QA 68).
    let rates = LocalRateCounter::new(1000);
    judge_at(&p, &inv, "intl", MON_10H, &rates);
    assert_eq!(from_then(&cancel, 100, &rates), Some(want.clone()));
    answer(
        "422 Session Interval Too Small",
        ";tag=uas1",
        200,
        true,
        &rates,
    );
    let retry = Message::parse(Bytes::from(
        text.replace("\"中国银行95588\" <sip:", "<sip:")
            .replace("CSeq: 1 INVITE", "CSeq: 2 INVITE")
            .replace("branch=z9hG4bK-wf", "branch=z9hG4bK-wf2"),
    ))
    .unwrap();
    let d = judge_at(&p, &retry, "intl", MON_10H + 300, &rates);
    assert!(!d.rewrite_from && !d.is_reject(), "{d:?}");
    let cancel2 = Message::parse(Bytes::from(
        String::from_utf8(retry.bytes().to_vec())
            .unwrap()
            .replacen("INVITE sip:", "CANCEL sip:", 1)
            .replace("CSeq: 2 INVITE", "CSeq: 2 CANCEL"),
    ))
    .unwrap();
    assert_eq!(from_then(&cancel2, 400, &rates), None);
    // A forked call: two dialogs; the BYE of one leaves the other its From (QA 66).
    let rates = LocalRateCounter::new(1000);
    judge_at(&p, &inv, "intl", MON_10H, &rates);
    answer("200 OK", ";tag=fork-a", 1_000, true, &rates);
    answer("200 OK", ";tag=fork-b", 1_010, true, &rates);
    answer("200 OK", ";tag=fork-b", 1_500, true, &rates);
    let bye_a = request("BYE", ";tag=fork-a", "2 BYE");
    track_dialog(&bye_a, || false, &rates, MON_10H + 2_000);
    track_dialog(&bye_a, || false, &rates, MON_10H + 2_500);
    let update_b = request("UPDATE", ";tag=fork-b", "3 UPDATE");
    assert_eq!(from_then(&update_b, 3_600_000, &rates), Some(want.clone()));
    let bye_b = request("BYE", ";tag=fork-b", "4 BYE");
    track_dialog(&bye_b, || false, &rates, MON_10H + 3_700_000);
    assert_eq!(from_then(&bye_b, 3_710_000, &rates), Some(want.clone()));
    assert_eq!(from_then(&bye_b, 3_740_000, &rates), None);
}

/// Digits after a number that a word or a letter makes a count, an hour or a floor are
/// no digits of it (`"中国银行 95566 9折"` showed 955669, `"010-5555-0100 24小时"` a
/// fixed number 555-501-0024, and the enterprise's own calls were refused 403): a callee
/// reads the number, then the count. Where no number ends before the count, its digits
/// are read as written (`"138 1234 5678号"` shows the mobile), and an emergency number
/// is read whatever follows it.
#[test]
fn a_count_after_the_number_is_no_digit_of_it() {
    let p = policy(
        r#"
[[trunk]]
name = "ent-bank"
role = "enterprise"
sources = ["192.0.2.77"]
[trunk.whitelist]
entries = ["+8695566", "+861055550100", "+8613901381234", "+8613914400800", "+8613912345955", "+8613900108402", "+8613910840211", "+864008001234", "+868518123456", "+8613800009611"]
"#,
    );
    let call = |display: &str, caller: &str| {
        judge(
            &p,
            &with_from(
                &format!("\"{display}\" <sip:{caller}@pbx.example>"),
                &format!("P-Asserted-Identity: <sip:{caller}@pbx.example>\r\n"),
            ),
            "ent-bank",
        )
    };
    for (display, caller) in [
        ("中国银行 95566 9点-17点", "+8695566"),
        ("中国银行 95566 9am-5pm", "+8695566"),
        ("中国银行 95566 9 PM", "+8695566"),
        ("中国银行 95566 9折", "+8695566"),
        ("中国银行 95566 8折优惠", "+8695566"),
        ("中国银行 95566 3F", "+8695566"),
        ("中国银行 95566 2楼", "+8695566"),
        ("中国银行 95566 7x24", "+8695566"),
        ("中国银行 95566 7×24", "+8695566"),
        ("中国银行 95566 9时至17时", "+8695566"),
        ("Bank 010-5555-0100 24小时", "+861055550100"),
        ("Bank 010-5555-0100 24h", "+861055550100"),
        ("Bank 010 5555 0100 9点-17点", "+861055550100"),
        // QA 205: written with spaces, ranges, decimals, shares, traditional characters.
        ("Bank 010 5555 0100 24小时", "+861055550100"),
        ("+86 10 5555 0100 24小時", "+861055550100"),
        ("010 5555 0100 9.5折", "+861055550100"),
        ("010-5555-0100 24 h", "+861055550100"),
        ("010-5555-0100 24/7", "+861055550100"),
        ("010-5555-0100 0.5%", "+861055550100"),
        ("中国银行 95566 9-17点", "+8695566"),
        ("中国银行 95566 9~17点", "+8695566"),
        ("中国银行 95566 9至17点", "+8695566"),
        ("中国银行 95566 9點-17點", "+8695566"),
        ("中国银行 95566 9 a.m.-5 p.m.", "+8695566"),
        ("中国银行 95566 9-5pm", "+8695566"),
        ("中国银行 95566 7*24", "+8695566"),
        ("中国银行 95566 7 x 24", "+8695566"),
        ("中国银行 95566 3/F", "+8695566"),
        ("中国银行 95566 5G", "+8695566"),
        ("中国银行 95566 4S店", "+8695566"),
        ("中国银行 95566 9.9元", "+8695566"),
        // QA 206 M2: a count after a mark.
        ("中国银行 95566，9折", "+8695566"),
        ("中国银行 95566（9折）", "+8695566"),
        ("中国银行 95566、3楼", "+8695566"),
        ("中国银行 95566 / 9折", "+8695566"),
        // QA 207: a count after a number written whole with dashes, more counts.
        ("客服 400-800-1234 9折", "+864008001234"),
        ("客服 400-800-1234 9-18点", "+864008001234"),
        ("客服 400-800-1234 3楼", "+864008001234"),
        ("中国银行 95566 5星服务", "+8695566"),
        ("中国银行 95566 1对1服务", "+8695566"),
        ("中国银行 95566 24x7", "+8695566"),
        ("中国银行 95566 7/24", "+8695566"),
        ("中国银行 95566 24-hour", "+8695566"),
        ("中国银行 95566 9〜17点", "+8695566"),
        // QA 213: a room on the floor a count names.
        ("客服 400-800-1234 3楼301室", "+864008001234"),
        ("客服 400-800-1234 3rd Floor 301", "+864008001234"),
        // QA 214: prices after the number are prices of their own.
        ("客服 400-800-1234 ¥5起", "+864008001234"),
        ("客服 400-800-1234 ¥5/分钟", "+864008001234"),
        ("客服 010-5555-0100 ¥99.9", "+861055550100"),
        ("客服 400-800-1234 1,299元", "+864008001234"),
        ("客服 400-800-1234 B座1203", "+864008001234"),
        // QA 217 F1: a day and a month after the number are a date of their own.
        ("Acme 400-800-1234 5/1休息", "+864008001234"),
        ("Acme 400-800-1234 1/1-1/3休息", "+864008001234"),
        ("Acme 010-5555-0100。 📞 12/31", "+861055550100"),
        // Still amounts: a decimal comma before a currency, a range of thousands.
        ("客服 400-800-1234 售价 110,00元", "+864008001234"),
        ("客服 400-800-1234 1,000~2,110元", "+864008001234"),
        // Still a time after a number and a mark.
        ("客服 010-5555-0100•10:00-22:00", "+861055550100"),
        // QA 218 F8: a day and a month with a dash or a dot too; a label's digit before
        // a unit hides nothing.
        ("Acme 400-800-1234 5-1休息", "+864008001234"),
        ("Acme 400-800-1234 5.1休息", "+864008001234"),
        ("Acme 010-5555-0100 12-31截止", "+861055550100"),
        ("客服 400-800-1234 Top1)10分钟", "+864008001234"),
        ("客服 400-800-1234 Q1-2024", "+864008001234"),
        // QA 219, QA 220: a shop's number, dates with any dash, ranges of amounts.
        ("客服 400-800-1234 万达广场B1-20", "+864008001234"),
        ("Acme 400-800-1234 5–1休息", "+864008001234"),
        ("Acme 400-800-1234 1-2,000 pcs", "+864008001234"),
        ("Acme 400-800-1234 1-2,500元", "+864008001234"),
        // QA 221, QA 222: a list or a range of dates written with dashes or dots (a
        // holiday notice), in any digits.
        ("Acme 5-1、10-1休息", "+864008001234"),
        ("Acme 400-800-1234 5-1、10-1休息", "+864008001234"),
        ("Acme 400-800-1234 5.1，10.1休息", "+864008001234"),
        ("Acme 1-1、5-1、10-1放假", "+864008001234"),
        ("Acme 400-800-1234 5.1-5.5、10.1-10.7休息", "+864008001234"),
        ("Acme 400-800-1234 5.1-5.5放假", "+864008001234"),
        ("营业 11-4至11-9、1-24", "+864008001234"),
        ("12-27—12-31；1-22休息", "+864008001234"),
        ("1-2 and 1-10 closed", "+864008001234"),
        ("星巴克·10-1、10-7休息", "+864008001234"),
        (
            "Acme ４００－８００－１２３４ ２－１４， １．２２截止",
            "+864008001234",
        ),
        // QA 223: a date with a year of four digits needs no word to be one.
        ("Acme 400-800-1234 1-20-2026", "+864008001234"),
        ("５－１、１０－１休息", "+864008001234"),
        ("休息日：5-1、10-1", "+864008001234"),
        // QA 221: a day and a month with a year after them, as most of the world writes
        // a date.
        ("Acme 010-5555-0100 12/31/2025截止", "+861055550100"),
        ("Acme 010-5555-0100 31.12.2025", "+861055550100"),
        ("Acme 010-5555-0100 12-31-2025", "+861055550100"),
        ("Acme 010-5555-0100 12/31/25截止", "+861055550100"),
        // QA 221: a rating's star ends its amount.
        ("Acme 4.9★ 5000+门店", "+864008001234"),
        ("Top 3 4.9★ 010-5555-0100", "+861055550100"),
    ] {
        let d = call(display, caller);
        assert_eq!(rejected(&d), None, "{display}: {d:?}");
    }
    for (display, caller) in [
        // No number ends before the count: the digits are a mobile's.
        ("138 1234 5678号", "+861055550100"),
        // Another number beside the caller's, with or without a count after it.
        ("Bank 010-5555-0100 955 88号", "+861055550100"),
        ("Bank 010-5555-0100 95588 9折", "+861055550100"),
        ("010 5555 0100 13812345678号", "+861055550100"),
        // An emergency number is read whatever follows it.
        ("010-5555-0100 1 10号", "+861055550100"),
        // QA 205 H1: a mobile, a 400 or a service number made of the end of the
        // caller's number and a count is what a callee reads.
        ("工号1390 138 1234 5678号", "+8613901381234"),
        ("1390-138-1234 5678号", "+8613901381234"),
        ("13914 400 800 5678号", "+8613914400800"),
        ("中国银行 13912345 955 88号", "+8613912345955"),
        ("中国移动 01055550 100 86号", "+861055550100"),
        ("010 5555 0 100 10号", "+861055550100"),
        // QA 206 H2: a mobile or a 400 number holding the caller's with digits in front.
        ("中国银行 138 95566 123号", "+8695566"),
        ("400 95566 12号", "+8695566"),
        // QA 206 H1: a fixed line whose area code shows, or cut from a mobile.
        ("北京市公安局 工号1390-010-8402 1110号", "+8613900108402"),
        ("139 10 8402 11 10号", "+8613910840211"),
        ("139-10-8402-11 10号", "+8613910840211"),
        // QA 207 F1: where a city has 7- and 8-digit numbers, a 7-digit number and one
        // digit is another number of that city.
        ("贵阳市公安局 0851-8123-456 7号", "+868518123456"),
        ("0851-8123-456\u{2009}7号", "+868518123456"),
        // QA 208 F1: brackets, colons and a Hangul filler set a short code apart as
        // white space does; a mobile or a 400 number cut from a dashed one is read.
        ("市民热线 400-800【1234 5号】", "+864008001234"),
        ("中国移动 010-5555-0（100 86号）", "+861055550100"),
        ("中国移动 010-5555-0：100 86号", "+861055550100"),
        ("中国移动 010-5555-0\u{3164}100 86号", "+861055550100"),
        ("138-0000：9611 0号", "+8613800009611"),
        // QA 209: a sentence's full stop and a bullet end an item, as a bracket does.
        ("市民热线 400-800。1234 5号", "+864008001234"),
        ("市民热线 400-800•1234 5号", "+864008001234"),
        ("中国移动 010-5555-0｡100 86号", "+861055550100"),
        // QA 213 H1: a sign ends its amount, so digits after a mark are another word's:
        // the emergency number after it is read.
        ("客服 400-800-1234 5%，110", "+864008001234"),
        ("客服 400-800-1234 5℃。119", "+864008001234"),
        ("客服 400-800-1234 0.5%、120", "+864008001234"),
        // QA 213 H2: a place word after a count is that count's unit, not the ordinal
        // of the number set apart after it.
        ("客服 400-800-1234 3楼 95 588", "+864008001234"),
        ("客服 400-800-1234 5号楼 100 86", "+864008001234"),
        ("客服 400-800-1234 3rd Floor 95 588", "+864008001234"),
        // QA 214: a decimal ends at a sentence's comma, a bullet or a symbol, and a
        // thousands group after its fraction is none; a place word after a letter or a
        // numeral names that place too; a price's fraction is its cents.
        ("客服 400-800-1234 0.5，110", "+864008001234"),
        ("客服 400-800-1234 0.5。119", "+864008001234"),
        ("客服 400-800-1234 4.9★，110", "+864008001234"),
        ("客服 400-800-1234 0.5,120", "+864008001234"),
        ("客服 400-800-1234 B座 95 588", "+864008001234"),
        ("客服 400-800-1234 三楼 95 588", "+864008001234"),
        ("客服 400-800-1234 3 楼 95 588", "+864008001234"),
        ("客服 400-800-1234 ¥5,95588", "+864008001234"),
        ("客服 400-800-1234 ¥5.95588", "+864008001234"),
        // A unit's square is no digit 2 of a thousands amount.
        ("客服 400-800-1234 5m²,110", "+864008001234"),
        // QA 215: a raised or lowered digit beside full-size ones is drawn apart.
        ("客服 400-800-1234 报警¹110", "+864008001234"),
        ("客服 400-800-1234 中国银行₁95588", "+864008001234"),
        ("客服 400-800-1234 5²,110", "+864008001234"),
        // QA 215: a decimal comma's fraction, a full-width decimal point, cents, a
        // currency after its amount, no time or date with white space after its mark.
        ("客服 400-800-1234 0,50,110", "+864008001234"),
        ("客服 400-800-1234 0,5,120", "+864008001234"),
        ("客服 400-800-1234 0．5,110", "+864008001234"),
        ("客服 400-800-1234 ¥1.00 110", "+864008001234"),
        ("客服 400-800-1234 5$ 95 588", "+864008001234"),
        ("客服 400-800-1234 5 RMB 95 588", "+864008001234"),
        ("客服 400-800-1234 Room 3: 12 345", "+864008001234"),
        ("客服 400-800-1234 Room 3 / 1 10", "+864008001234"),
        ("客服 400-800-1234 3rd Floor: 95 588", "+864008001234"),
        // QA 216: a currency sign after its amount across white space, full-width
        // digits before a currency word, no date with white space after its marks, a
        // fraction after any dot, no thousands group after a time or a date.
        ("客服 400-800-1234 5 € 95 588", "+864008001234"),
        ("客服 400-800-1234 １０ RMB 100 86", "+864008001234"),
        ("客服 400-800-1234 12/31 / 1 10", "+864008001234"),
        ("客服 400-800-1234 0·5,110", "+864008001234"),
        ("客服 400-800-1234 10:00,110", "+864008001234"),
        ("客服 400-800-1234 5/6,110", "+864008001234"),
        // QA 213 H3: a '+' before a trunk 0 prefixes nothing: a Beijing number.
        ("客服 400-800-1234 +010-6666-0100", "+864008001234"),
        // The police's number spelt with a dash, and digits of a list that holds no
        // date after the day and month (`"5-1、10"`, `"1-1、1-0"`), are read.
        ("Acme 1-10", "+861055550100"),
        ("Acme 5-1、10", "+861055550100"),
        ("Acme 1-1、1-0", "+861055550100"),
        ("Acme 5-1、10-1-5", "+861055550100"),
        // QA 222: digits after the list's last date (F1), a list that starts no item
        // (F2), white space alone between the dates, or a text that names the police
        // (F5): the code is read.
        ("中国银行 5-1、9-5 5 8 8", "+861055550100"),
        ("中国银行 5.1、9.5-588", "+861055550100"),
        ("政务热线 5-1、1-2 3 4 5", "+861055550100"),
        ("5-1、1-1、0", "+861055550100"),
        ("移动 5.1、10.08-6", "+861055550100"),
        ("A5-1、1-10", "+861055550100"),
        ("¥5-1、1-10", "+861055550100"),
        ("¥\u{200b}5.1,1–20", "+861055550100"),
        ("1:5-1、1-10", "+861055550100"),
        ("5-1 1-10", "+861055550100"),
        ("公安 5-1、1-10", "+861055550100"),
        ("5-1、1-10报警", "+861055550100"),
        // QA 223: a short group before the list (A5), words that ask to dial or name a
        // bank (A1), a letter of another script (A2), digits of other styles, a rating
        // no shop shows (A3), or a list no word calls dates.
        ("中国银行 9 5-5、8-8休息", "+861055550100"),
        ("1 1-10、5-1休息", "+861055550100"),
        ("Tel: 9-5、5-11休息", "+861055550100"),
        ("平安银行 9-5、5-11休息", "+861055550100"),
        ("📞 1-10、5-1休息", "+861055550100"),
        ("ア5-1、1-10休息", "+861055550100"),
        ("¹1-10、5-1休息", "+861055550100"),
        ("中国银行 9.5★ 588", "+861055550100"),
        ("1.1★ 0", "+861055550100"),
        ("9-6、1-10", "+861055550100"),
        // QA 224: more dial words (look-alike letters too), and marks between a short
        // group and the list.
        ("来电 9-5、5-11休息", "+861055550100"),
        ("Теl: 9-5, 5-11 off", "+861055550100"),
        ("🚓 1-10、5-1休息", "+861055550100"),
        ("9(5-5、8-8)休息", "+861055550100"),
        ("9 + 5-5、8-8休息", "+861055550100"),
        // A code after a rating's star and a mark is read, and one written with a star
        // glued between its digits (QA 221).
        ("客服 4.9★.95 588", "+861055550100"),
        ("客服 1.1★0", "+861055550100"),
        // QA 217 E1: a decimal comma's digits that go on into another number, a count
        // or a word are no fraction.
        ("客服 110,8.8折", "+861055550100"),
        ("客服 119,9折", "+861055550100"),
        ("客服 110,2至3天", "+861055550100"),
        ("客服 1 1 0,9:00-18:00", "+861055550100"),
        ("客服 1-2-2,12/31", "+861055550100"),
        ("客服 1 1 0,5星", "+861055550100"),
        // QA 217 E2: a currency sign glued to the digits after it is theirs.
        ("客服 95-588 ¥5", "+861055550100"),
        ("客服 1 1 0 €10", "+861055550100"),
        ("客服 (12)2 ¥0.5", "+861055550100"),
        // QA 217 E3: a letter glued to the first digit hides no emergency number.
        ("客服 Tel1-1-0", "+861055550100"),
        // QA 217 E4: no time from a room's number, across a symbol, or from a date.
        ("客服 Room 3:12 345", "+861055550100"),
        ("客服 第5：12 345", "+861055550100"),
        ("客服 4.9★:12 345", "+861055550100"),
        ("客服 2025/6/18：12-345", "+861055550100"),
        // QA 217 E5: no thousands group after a count or a range.
        ("客服 7x24,110", "+861055550100"),
        ("客服 3~5,120", "+861055550100"),
        // QA 218: a phone word is no label (F1, F7); any blank between an ordinal and its
        // number (F2); dashes between counts (F3); a currency sign with white space on
        // both sides after a code (F4); a code written digit by digit before a unit (F5).
        ("客服 Tel9-5588", "+861055550100"),
        ("客服 Room\u{a0}3:12 345", "+861055550100"),
        ("客服 Room\u{200b}3:12 345", "+861055550100"),
        ("客服 3-5,120", "+861055550100"),
        ("客服 7−24,110", "+861055550100"),
        ("客服 1 1 0 ¥ 10", "+861055550100"),
        ("客服 95-588 ¥ 5", "+861055550100"),
        ("客服 1-1-0号", "+861055550100"),
        // QA 219 H1: no amount goes on after a decimal comma's fraction.
        ("客服 9,99,110", "+861055550100"),
        ("客服 €5,5.110", "+861055550100"),
        // QA 220: a phone word as a callee reads it, any dash of a range, a decimal's
        // range, any blank around a currency sign, a sign after a spelt code.
        ("客服 ＴＥＬ9-5588", "+861055550100"),
        ("客服 T\u{200b}el9-5588", "+861055550100"),
        ("客服 3\u{2010}5,110", "+861055550100"),
        ("客服 3 - 5,110", "+861055550100"),
        ("客服 1.5-2,110", "+861055550100"),
        ("客服 5\u{a0}€\u{a0}95 588", "+861055550100"),
        ("客服 1 1 0\u{3000}¥\u{3000}10", "+861055550100"),
        ("客服 1-1-0%", "+861055550100"),
        ("客服 1 1 0℃", "+861055550100"),
        // QA 217 P1: Taobao's 9510211 and China Post's 11185 are numbers.
        ("淘宝客服 951-0211", "+864008001234"),
        ("中国邮政 11185", "+864008001234"),
    ] {
        let d = call(display, caller);
        assert!(rejected(&d).is_some(), "{display}: {d:?}");
    }
}
