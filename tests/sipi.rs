//! SIP-I (ITU-T Q.1912.5): the ISUP IAM inside the INVITE is judged like the SIP
//! headers. Per rule, the call its ISUP number blocks and the one it lets through; the
//! Generic Number deletion with its pointer and length fixes; unreadable ISUP.

mod common;

use bytes::Bytes;
use sipfence::decide::{Context, Decision, Outcome, decide};
use sipfence::isup::encode::{IamBuilder, NumberSpec, sipi_body};
use sipfence::isup::{self, Nature};
use sipfence::policy::rate::NoCounting;
use sipfence::policy::{Policy, RuleId};
use sipfence::sip::rewrite::EditList;
use sipfence::sip::{HeaderName, Message};
use sipfence::verdict;
use std::path::Path;

const POLICY: &str = r#"
[lists.blacklist]
entries = ["+8613800000001", "+8617099999*"]
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
[trunk.whitelist]
entries = ["+8613912340000..+8613912349999"]
"#;

fn policy(extra: &str) -> Policy {
    Policy::from_str(&format!("{POLICY}\n{extra}"), "test.toml", Path::new(".")).unwrap()
}

const SDP: &str = "v=0\r\no=- 1 1 IN IP4 10.9.9.9\r\ns=-\r\nc=IN IP4 10.9.9.9\r\nt=0 0\r\nm=audio 4000 RTP/AVP 8\r\n";

/// A SIP-I INVITE: SIP caller `sip_caller` in From and PAI (none when empty), ISUP `iam`.
fn sipi(sip_caller: &str, iam: &[u8]) -> Message {
    let (ct, body) = sipi_body(SDP, iam, "sipfence-b1");
    let pai = if sip_caller.is_empty() {
        String::new()
    } else {
        format!("P-Asserted-Identity: <tel:{sip_caller}>\r\n")
    };
    let from = if sip_caller.is_empty() {
        "anonymous"
    } else {
        sip_caller
    };
    let mut s = format!(
        "INVITE sip:+861012345678@10.0.0.100 SIP/2.0\r\nVia: SIP/2.0/UDP 10.9.9.9:5060;branch=z9hG4bK-sipi\r\nFrom: <sip:{from}@10.9.9.9;user=phone>;tag=ft1\r\nTo: <sip:+861012345678@10.0.0.100>\r\nCall-ID: sipi-1\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\n{pai}MIME-Version: 1.0\r\nContent-Type: {ct}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    s.extend_from_slice(&body);
    Message::parse(Bytes::from(s)).expect("SIP-I INVITE parses")
}

fn iam(calling: NumberSpec) -> Vec<u8> {
    IamBuilder::new("861012345678").calling(calling).build()
}

fn judge(p: &Policy, m: &Message, trunk: &str) -> Decision {
    let ip = match trunk {
        "intl" => "10.0.0.1",
        "ic" => "10.0.0.2",
        "ent" => "10.0.0.3",
        ip => ip,
    };
    decide(
        p,
        m,
        &Context {
            source: format!("{ip}:5060").parse().unwrap(),
            local: None,
            trunk: None,
            now_ms: 1_795_998_600_000,
            wall_ms: 1_795_998_600_000,
            rates: &NoCounting,
            behaviour: &sipfence::behaviour::NoTracking,
        },
    )
}

#[track_caller]
fn blocks_on_isup(p: &Policy, m: &Message, trunk: &str, code: u16, rule: RuleId) {
    let d = judge(p, m, trunk);
    assert_eq!(d.outcome, Outcome::Reject { code }, "{d:?}");
    assert_eq!(d.rule, Some(rule), "{d:?}");
    assert!(
        d.isup_hits.contains(rule) || !rule_is_per_number(rule),
        "{rule:?} should be marked as matched on the ISUP number: {d:?}"
    );
}

fn rule_is_per_number(r: RuleId) -> bool {
    !matches!(
        r,
        RuleId::BlankCaller | RuleId::WithheldCaller | RuleId::IsupMismatch
    )
}

#[track_caller]
fn passes(p: &Policy, m: &Message, trunk: &str) -> Decision {
    let d = judge(p, m, trunk);
    assert_eq!(d.outcome, Outcome::Forward, "{d:?}");
    d
}

/// The ISUP calling number is judged even when the SIP headers are clean: a domestic
/// number forged inside the body of an international call is caught.
#[test]
fn intl_domestic_caller_in_isup() {
    let p = policy("[rules.isup-mismatch]\naction = \"label\"");
    let m = sipi(
        "+442071234567",
        &iam(NumberSpec::international("8613812345678")),
    );
    blocks_on_isup(&p, &m, "intl", 403, RuleId::IntlDomesticCaller);
    // The same ISUP number as a foreign one passes.
    let m = sipi(
        "+442071234567",
        &iam(NumberSpec::international("442071234567")),
    );
    let d = passes(&p, &m, "intl");
    assert_eq!(d.isup_caller.unwrap().e164(), "+442071234567");
    // National nature: the home country code goes in front.
    let m = sipi("+442071234567", &iam(NumberSpec::national("13812345678")));
    blocks_on_isup(&p, &m, "intl", 403, RuleId::IntlDomesticCaller);
    // An outbound roamer is the exception, in ISUP as in SIP.
    let m = sipi(
        "+8613900000000",
        &iam(NumberSpec::international("8613900000000")),
    );
    passes(&p, &m, "intl");
}

#[test]
fn forged_service_number_in_isup() {
    let p = policy("[rules.isup-mismatch]\naction = \"label\"");
    for n in ["86110", "8612345", "8610086", "861066666110"] {
        let m = sipi("+442071234567", &iam(NumberSpec::international(n)));
        blocks_on_isup(&p, &m, "intl", 403, RuleId::IntlForgedService);
    }
}

#[test]
fn blacklist_and_numbering_plan_in_isup() {
    let p = policy("[rules.isup-mismatch]\naction = \"label\"");
    let m = sipi(
        "+8613912345678",
        &iam(NumberSpec::international("8613800000001")),
    );
    blocks_on_isup(&p, &m, "ic", 608, RuleId::Blacklist);
    let m = sipi(
        "+8613912345678",
        &iam(NumberSpec::international("8617099999123")),
    );
    blocks_on_isup(&p, &m, "ic", 608, RuleId::Blacklist);
    // 12 digits after +86 1: no such mobile number.
    let m = sipi(
        "+8613912345678",
        &iam(NumberSpec::international("86139123456789")),
    );
    blocks_on_isup(&p, &m, "ic", 403, RuleId::NumberingPlan);
    // More digits than any plan holds (QA 46: refused, but neither the decision nor
    // the record said the IAM's number was the one; the SIP one is foreign and fine).
    for digits in ["4420712345671234567890123456789", "8613912345678901234"] {
        let m = sipi("+442071234567", &iam(NumberSpec::international(digits)));
        blocks_on_isup(&p, &m, "intl", 403, RuleId::NumberingPlan);
        let d = judge(&p, &m, "intl");
        assert!(d.isup_hits.contains(RuleId::NumberingPlan), "{d:?}");
        let r = sipfence::record::Record::new(&p, &m, &d, "10.0.0.1:5060".parse().unwrap(), 0);
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(
            v["isup"]["rules"],
            serde_json::json!(["numbering-plan"]),
            "{v}"
        );
    }
    // More digits than an IAM number holds here (32): the record shows that it goes on.
    let long = "442071234567123456789012345678901";
    let m = sipi("+442071234567", &iam(NumberSpec::international(long)));
    let d = judge(&p, &m, "intl");
    assert!(d.is_reject(), "{d:?}");
    let r = sipfence::record::Record::new(&p, &m, &d, "10.0.0.1:5060".parse().unwrap(), 0);
    let v = serde_json::to_value(&r).unwrap();
    assert_eq!(v["isup"]["calling"], format!("{}…", &long[..32]), "{v}");
    // Too long in SIP, fine in the IAM: the SIP number's, not the IAM's.
    let m = sipi(
        "+86139123456789012345",
        &iam(NumberSpec::international("8613912345678")),
    );
    let d = judge(&p, &m, "intl");
    assert_eq!(d.rule, Some(RuleId::NumberingPlan), "{d:?}");
    assert!(!d.isup_hits.contains(RuleId::NumberingPlan), "{d:?}");
    let m = sipi(
        "+8613912345678",
        &iam(NumberSpec::international("8613912345678")),
    );
    passes(&p, &m, "ic");
}

#[test]
fn enterprise_whitelist_in_isup() {
    let p = policy("");
    let m = sipi(
        "+8613912340001",
        &iam(NumberSpec::international("8613912340001")),
    );
    passes(&p, &m, "ent");
    // SIP says a whitelisted number, the IAM another one: the IAM is judged too (and
    // the whitelist fires before the mismatch rule).
    let m = sipi(
        "+8613912340001",
        &iam(NumberSpec::international("8613512345678")),
    );
    blocks_on_isup(&p, &m, "ent", 403, RuleId::EnterpriseNotWhitelisted);
    // The IAM's Generic Number is a presented number: on an enterprise trunk it must be
    // contracted too (another of the contract passes).
    let with_generic = |g: &str| {
        IamBuilder::new("861012345678")
            .calling(NumberSpec::international("8613912340001"))
            .generic(NumberSpec::international(g))
            .build()
    };
    let m = sipi("+8613912340001", &with_generic("8695588"));
    let d = judge(&p, &m, "ent");
    assert_eq!(d.outcome, Outcome::Reject { code: 403 }, "{d:?}");
    assert_eq!(d.rule, Some(RuleId::EnterpriseNotWhitelisted));
    assert!(d.presented_hits.contains(RuleId::EnterpriseNotWhitelisted));
    assert_eq!(d.presented.map(|n| n.e164()).as_deref(), Some("+8695588"));
    let d = passes(
        &p,
        &sipi("+8613912340001", &with_generic("8613912340002")),
        "ent",
    );
    assert!(d.presented_hits.is_empty(), "{d:?}");
}

#[test]
fn blank_and_withheld_isup_caller() {
    let p = policy("");
    // No Calling Party Number at all in the IAM; address not available: blank by the
    // IAM alone (SIP asserts a number), and said to be.
    for m in [
        sipi("+442071234567", &IamBuilder::new("861012345678").build()),
        sipi(
            "+442071234567",
            &iam(NumberSpec::international("1").not_available()),
        ),
    ] {
        blocks_on_isup(&p, &m, "intl", 433, RuleId::BlankCaller);
        let d = judge(&p, &m, "intl");
        assert!(d.isup_hits.contains(RuleId::BlankCaller), "{d:?}");
        let r = sipfence::record::Record::new(&p, &m, &d, "10.0.0.1:5060".parse().unwrap(), 0);
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(
            v["isup"]["rules"],
            serde_json::json!(["blank-caller"]),
            "{v}"
        );
    }
    // A blank SIP caller is the SIP headers' doing, not the IAM's.
    let m = sipi("", &IamBuilder::new("861012345678").build());
    let d = judge(&p, &m, "intl");
    assert!(
        d.is_reject() && !d.isup_hits.contains(RuleId::BlankCaller),
        "{d:?}"
    );
    // The IAM's calling number does not stand in for a SIP identity: an anonymous From
    // without Privacy and no P-Asserted-Identity is a blank caller to the SIP hops behind,
    // whatever number the IAM lets be shown (QA 211, as README says).
    let m = sipi("", &iam(NumberSpec::national("13812345678")));
    blocks_on_isup(&p, &m, "intl", 433, RuleId::BlankCaller);
    blocks_on_isup(&p, &m, "ic", 433, RuleId::BlankCaller);
    // Presentation restricted without digits, and no SIP identity either.
    let mut restricted = NumberSpec::international("").restricted();
    restricted.digits.clear();
    let m = sipi("", &iam(restricted.clone()));
    let d = judge(&p, &m, "intl");
    assert!(d.is_reject(), "{d:?}");
    // Restricted with digits is an identity the network holds: not blank.
    let m = sipi(
        "+442071234567",
        &iam(NumberSpec::international("442071234567").restricted()),
    );
    passes(&p, &m, "intl");
}

/// An IAM whose Calling Party Number is presentation restricted asks, as `Privacy: id`
/// does, that the number not be shown: the generic-number rewrite makes From anonymous
/// instead of writing the asserted number in it (QA 88: the restricted number went into
/// From); not restricted, From becomes the asserted number as ever.
#[test]
fn a_restricted_isup_caller_is_not_written_into_from() {
    let p = policy("");
    let presented = |restricted: bool| {
        let mut n = NumberSpec::national("13812345678");
        if restricted {
            n = n.restricted();
        }
        let m = sipi(
            "+8613812345678",
            &IamBuilder::new("861012345678").calling(n).build(),
        );
        let b = m.buf()[..m.len()].to_vec();
        let at = b
            .windows(22)
            .position(|w| w == b"From: <sip:+8613812345")
            .unwrap();
        let mut b2 = b.clone();
        b2[at + 11..at + 11 + 14].copy_from_slice(b"+8613912345678");
        Message::parse(Bytes::from(b2)).unwrap()
    };
    // From presenting another number; From showing the asserted number itself, the
    // rule firing for a Generic Number in the IAM: a restricted caller's number does
    // not stay in From (QA 112), a shown one does.
    let with_generic = |restricted: bool| {
        let mut n = NumberSpec::national("13812345678");
        if restricted {
            n = n.restricted();
        }
        sipi(
            "+8613812345678",
            &IamBuilder::new("861012345678")
                .calling(n)
                .generic(NumberSpec::national("95588"))
                .build(),
        )
    };
    for shape in [&presented as &dyn Fn(bool) -> Message, &with_generic] {
        for (restricted, from) in [
            (true, "\"Anonymous\" <sip:anonymous@anonymous.invalid>"),
            (false, "<sip:+8613812345678@10.9.9.9;user=phone>"),
        ] {
            let m = shape(restricted);
            let d = judge(&p, &m, "ic");
            assert!(d.rewrite_from, "{d:?}");
            let out = forwarded(&p, &m, &d);
            let text = String::from_utf8_lossy(&out.buf()[..out.len()]).into_owned();
            assert!(
                text.contains(&format!("\r\nFrom: {from};tag=ft1\r\n")),
                "{restricted} {text}"
            );
            assert!(!text.contains("+8613912345678"), "{text}");
        }
    }
}

/// On an enterprise trunk a presentation-restricted Calling Party Number is a withheld
/// caller whatever SIP asserts (`refuse_withheld`, the enterprise default); shown, the
/// same contracted number goes through.
#[test]
fn a_restricted_isup_caller_is_refused_on_an_enterprise_trunk() {
    let p = policy("");
    let call = |restricted: bool| {
        let mut n = NumberSpec::national("13912340001");
        if restricted {
            n = n.restricted();
        }
        sipi(
            "+8613912340001",
            &IamBuilder::new("861012345678").calling(n).build(),
        )
    };
    let d = judge(&p, &call(true), "ent");
    assert_eq!(d.outcome, Outcome::Reject { code: 433 }, "{d:?}");
    assert_eq!(d.rule, Some(RuleId::WithheldCaller), "{d:?}");
    assert!(d.isup_hits.contains(RuleId::WithheldCaller), "{d:?}");
    passes(&p, &call(false), "ent");
    passes(&p, &call(true), "ic");
    // Presentation `11`, "reserved for restriction by the network" (Q.763 3.10 d), is
    // read as restricted (QA 112: it went past the enterprise trunk).
    let mut n = NumberSpec::national("13912340001");
    n.presentation = sipfence::isup::Presentation::Reserved;
    let m = sipi(
        "+8613912340001",
        &IamBuilder::new("861012345678").calling(n).build(),
    );
    let d = judge(&p, &m, "ent");
    assert_eq!(d.rule, Some(RuleId::WithheldCaller), "{d:?}");
    passes(&p, &m, "ic");
}

#[test]
fn mismatch_between_isup_and_sip() {
    let p = policy("");
    let m = sipi(
        "+442071234567",
        &iam(NumberSpec::international("442079999999")),
    );
    let d = judge(&p, &m, "intl");
    assert_eq!(d.rule, Some(RuleId::IsupMismatch));
    assert_eq!(d.outcome, Outcome::Reject { code: 403 });
    // Same number written differently (national nature vs +86 in SIP): no mismatch.
    let m = sipi("+8613912345678", &iam(NumberSpec::national("13912345678")));
    passes(&p, &m, "ic");
    // Configured to label instead.
    let p = policy("[rules.isup-mismatch]\naction = \"label\"");
    let m = sipi(
        "+442071234567",
        &iam(NumberSpec::international("442079999999")),
    );
    let d = passes(&p, &m, "intl");
    assert!(d.labels.contains(RuleId::IsupMismatch));
}

#[test]
fn unreadable_isup_is_a_mismatch() {
    let p = policy("");
    let mut bad = iam(NumberSpec::international("442071234567"));
    bad.truncate(bad.len() - 3);
    let m = sipi("+442071234567", &bad);
    let d = judge(&p, &m, "intl");
    assert_eq!(d.rule, Some(RuleId::IsupMismatch), "{d:?}");
    assert!(d.identity.isup.unwrap().iam.is_err());
    // Its answer says the IAM could not be read, not that it names another caller.
    let mut out = vec![];
    assert!(sipfence::verdict::write_reject(&p, &m, &d, None, &mut out));
    let r = String::from_utf8_lossy(&out);
    assert!(r.contains("text=\"ISUP IAM unreadable\""), "{r}");
    // A multipart body that cannot be split may hide an IAM: the same answer.
    let s = "INVITE sip:+861012345678@10.0.0.100 SIP/2.0\r\nVia: SIP/2.0/UDP 10.9.9.9:5060;branch=z9hG4bK-mp\r\nFrom: <sip:+442071234567@10.9.9.9>;tag=1\r\nTo: <sip:+861012345678@10.0.0.100>\r\nCall-ID: mp-1\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContent-Type: multipart/mixed;boundary=zz\r\nContent-Length: 9\r\n\r\n--zz\r\nabc";
    let m = Message::parse(Bytes::from(s)).unwrap();
    let d = judge(&p, &m, "intl");
    assert_eq!(d.rule, Some(RuleId::IsupMismatch));
    let err = d.identity.isup.unwrap().iam.unwrap_err().to_string();
    assert!(
        err.starts_with("the multipart body cannot be split"),
        "{err}"
    );
    // A whole-body IAM under gzip, or a body with no type, is no multipart body, and is
    // not said to be (QA 46).
    let ok = iam(NumberSpec::international("442071234567"));
    for (head, at) in [
        (
            "Content-Type: application/ISUP;version=itu-t92+\r\nContent-Encoding: gzip\r\n",
            "Content-Encoding",
        ),
        ("", "without one"),
    ] {
        let mut s = format!("INVITE sip:+861012345678@10.0.0.100 SIP/2.0\r\nVia: SIP/2.0/UDP 10.9.9.9:5060;branch=z9hG4bK-mp\r\nFrom: <sip:+442071234567@10.9.9.9>;tag=1\r\nTo: <sip:+861012345678@10.0.0.100>\r\nCall-ID: mp-2\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\n{head}Content-Length: {}\r\n\r\n", ok.len()).into_bytes();
        s.extend_from_slice(&ok);
        let d = judge(&p, &Message::parse(Bytes::from(s)).unwrap(), "intl");
        assert_eq!(d.rule, Some(RuleId::IsupMismatch));
        let err = d.identity.isup.unwrap().iam.unwrap_err().to_string();
        assert!(
            err.starts_with("the body cannot be read as the next hop reads it") && err.contains(at),
            "{err}"
        );
    }
    // A plain SDP call is not SIP-I.
    let s = "INVITE sip:+861012345678@10.0.0.100 SIP/2.0\r\nVia: SIP/2.0/UDP 10.9.9.9:5060;branch=z9hG4bK-sdp\r\nFrom: <sip:+442071234567@10.9.9.9>;tag=1\r\nTo: <sip:+861012345678@10.0.0.100>\r\nCall-ID: sdp-1\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContent-Type: application/sdp\r\nContent-Length: 5\r\n\r\nv=0\r\n";
    let m = Message::parse(Bytes::from(s)).unwrap();
    let d = passes(&p, &m, "intl");
    assert!(d.identity.isup.is_none());
}

/// A repeated Calling Party Number (Q.763 allows one) is no IAM to trust: a clean one
/// first must not cover a forged one after it, whichever the next hop reads. Generic
/// Numbers may repeat: on an enterprise trunk a second distinct one is judged too, and
/// an IAM with a third distinct one is not read.
#[test]
fn repeated_isup_numbers_cannot_hide_one() {
    let p = policy("");
    let twice = IamBuilder::new("861012345678")
        .calling(NumberSpec::international("442071234567"))
        .calling(NumberSpec::international("8613812345678"))
        .build();
    let d = judge(&p, &sipi("+442071234567", &twice), "intl");
    assert_eq!(d.outcome, Outcome::Reject { code: 403 }, "{d:?}");
    assert_eq!(d.rule, Some(RuleId::IsupMismatch), "{d:?}");
    let err = d.identity.isup.unwrap().iam.unwrap_err().to_string();
    assert!(err.contains("second ISUP Calling Party Number"), "{err}");
    // On an enterprise trunk: a whitelisted Generic Number, then 95588.
    let generics = |gs: &[&str]| {
        let mut b =
            IamBuilder::new("861012345678").calling(NumberSpec::international("8613912340001"));
        for g in gs {
            b = b.generic(NumberSpec::international(g));
        }
        b.build()
    };
    let m = sipi("+8613912340001", &generics(&["8613912340002", "8695588"]));
    let d = judge(&p, &m, "ent");
    assert_eq!(d.outcome, Outcome::Reject { code: 403 }, "{d:?}");
    assert!(
        d.presented_hits.contains(RuleId::EnterpriseNotWhitelisted),
        "{d:?}"
    );
    // Two contracted ones, and the same one twice, pass.
    passes(
        &p,
        &sipi(
            "+8613912340001",
            &generics(&["8613912340002", "8613912340003"]),
        ),
        "ent",
    );
    passes(
        &p,
        &sipi(
            "+8613912340001",
            &generics(&["8613912340002", "8613912340002", "8613912340002"]),
        ),
        "ent",
    );
    // The same contracted numbers, each written both internationally and nationally:
    // two numbers, both judged, not four (they had been refused as too many).
    let both_ways = IamBuilder::new("861012345678")
        .calling(NumberSpec::international("8613912340001"))
        .generic(NumberSpec::international("8613912340002"))
        .generic(NumberSpec::national("13912340002"))
        .generic(NumberSpec::national("13912340003"))
        .generic(NumberSpec::international("8613912340003"))
        .build();
    passes(&p, &sipi("+8613912340001", &both_ways), "ent");
    // ... and an uncontracted one behind them is judged, whichever way it is written.
    for last in [
        NumberSpec::international("8695588"),
        NumberSpec::national("95588"),
    ] {
        let m = sipi(
            "+8613912340001",
            &IamBuilder::new("861012345678")
                .calling(NumberSpec::international("8613912340001"))
                .generic(NumberSpec::international("8613912340002"))
                .generic(NumberSpec::national("13912340002"))
                .generic(last)
                .build(),
        );
        let d = judge(&p, &m, "ent");
        assert_eq!(d.outcome, Outcome::Reject { code: 403 }, "{d:?}");
        assert!(
            d.presented_hits.contains(RuleId::EnterpriseNotWhitelisted),
            "{d:?}"
        );
    }
    // Three distinct ones: more than are judged, refused as an unreadable IAM on an
    // enterprise trunk; at a gateway all of them are deleted (rule 22).
    let three = generics(&["8613912340002", "8613912340003", "8613912340004"]);
    let m = sipi("+8613912340001", &three);
    let d = judge(&p, &m, "ent");
    assert_eq!(d.rule, Some(RuleId::IsupMismatch), "{d:?}");
    let mut out = vec![];
    assert!(sipfence::verdict::write_reject(&p, &m, &d, None, &mut out));
    assert!(String::from_utf8_lossy(&out).contains("ISUP IAM unreadable"));
    // The record says why, and names the numbers (QA 166: it showed a matching
    // calling number and one Generic Number, with no error).
    let r = sipfence::record::Record::new(&p, &m, &d, "10.0.0.1:5060".parse().unwrap(), 0);
    let i = r.isup.expect("an ISUP record");
    assert!(
        i.error
            .as_deref()
            .is_some_and(|e| e.contains("more Generic Numbers than an enterprise trunk judges")),
        "{i:?}"
    );
    assert_eq!(i.generic.as_deref(), Some("+8613912340002"), "{i:?}");
    assert_eq!(i.generic2.as_deref(), Some("+8613912340003"), "{i:?}");
    assert_eq!(i.calling.as_deref(), Some("+8613912340001"), "{i:?}");
    let d = passes(&p, &sipi("+8613912340001", &three), "ic");
    let r = sipfence::record::Record::new(&p, &m, &d, "10.0.0.1:5060".parse().unwrap(), 0);
    assert_eq!(r.isup.and_then(|i| i.error), None, "deleted at a gateway");
    assert!(d.rewrite_from, "{d:?}");
    let gone = forwarded(&p, &sipi("+8613912340001", &three), &d);
    assert_eq!(
        sipfence::isup::decode_iam(&isup_of(&gone))
            .unwrap()
            .generic_count,
        0
    );
    // At the gateways every Generic Number goes, the second one as well.
    let pl = policy("");
    let m = sipi(
        "+442071234567",
        &IamBuilder::new("861012345678")
            .calling(NumberSpec::international("442071234567"))
            .generic(NumberSpec::international("442071234568"))
            .generic(NumberSpec::international("8613812345678"))
            .build(),
    );
    let d = passes(&pl, &m, "intl");
    assert!(d.rewrite_from, "{d:?}");
    let out = forwarded(&pl, &m, &d);
    let iam = sipfence::isup::decode_iam(&isup_of(&out)).unwrap();
    assert_eq!(iam.generic_count, 0);
}

/// Two Content-Type fields (single-valued, RFC 3261 20.15): the filter could read an SDP
/// body where the next hop reads a multipart with an IAM in it. Refused 400, in either
/// order and with the compact form.
#[test]
fn two_content_types_are_refused() {
    let p = policy("");
    let isup = iam(NumberSpec::international("8613812345678"));
    let (ct, body) = sipi_body(SDP, &isup, "b2");
    for (first, second) in [
        (
            "Content-Type: application/sdp".to_string(),
            format!("Content-Type: {ct}"),
        ),
        (
            "c: application/sdp".to_string(),
            format!("Content-Type: {ct}"),
        ),
        (
            format!("Content-Type: {ct}"),
            "c: application/sdp".to_string(),
        ),
    ] {
        let mut raw = format!(
            "INVITE sip:+861012345678@10.0.0.100 SIP/2.0\r\nVia: SIP/2.0/UDP 10.9.9.9:5060;branch=z9hG4bK-ct\r\nFrom: <sip:+442071234567@10.9.9.9>;tag=1\r\nTo: <sip:+861012345678@10.0.0.100>\r\nCall-ID: ct-1\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\n{first}\r\n{second}\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        raw.extend_from_slice(&body);
        let m = Message::parse(Bytes::from(raw)).unwrap();
        // What the proxy, replay and explain run: the protocol checks, then the rules.
        let d = sipfence::decide::judge(
            &p,
            &m,
            &Context {
                source: "10.0.0.1:5060".parse().unwrap(),
                local: None,
                trunk: None,
                now_ms: 1_795_998_600_000,
                wall_ms: 1_795_998_600_000,
                rates: &NoCounting,
                behaviour: &sipfence::behaviour::NoTracking,
            },
        );
        assert_eq!(
            d.outcome,
            Outcome::Reject { code: 400 },
            "{first} / {second}: {d:?}"
        );
        assert_eq!(d.refusal.map(|r| r.why), Some("Multiple Content-Type"));
    }
    // Inside a part, likewise: an ISUP part that also says `application/sdp` hides its
    // IAM from a reader that keeps the last field. Unreadable, refused.
    for (a, b) in [
        ("application/ISUP;version=itu-t92+", "application/sdp"),
        ("application/sdp", "application/ISUP;version=itu-t92+"),
    ] {
        let mut body = format!("--b3\r\nContent-Type: application/sdp\r\n\r\n{SDP}\r\n--b3\r\nContent-Type: {a}\r\nContent-Type: {b}\r\nContent-Disposition: signal;handling=required\r\n\r\n").into_bytes();
        body.extend_from_slice(&isup);
        body.extend_from_slice(b"\r\n--b3--\r\n");
        let mut raw = format!(
            "INVITE sip:+861012345678@10.0.0.100 SIP/2.0\r\nVia: SIP/2.0/UDP 10.9.9.9:5060;branch=z9hG4bK-ct2\r\nFrom: <sip:+442071234567@10.9.9.9>;tag=1\r\nTo: <sip:+861012345678@10.0.0.100>\r\nCall-ID: ct-2\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContent-Type: multipart/mixed;boundary=b3\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        raw.extend_from_slice(&body);
        let m = Message::parse(Bytes::from(raw)).unwrap();
        let d = judge(&p, &m, "intl");
        assert_eq!(d.rule, Some(RuleId::IsupMismatch), "{a} / {b}: {d:?}");
        assert_eq!(d.outcome, Outcome::Reject { code: 403 });
    }
}

/// The ISUP variant is named by the part's `version` (RFC 3204): ITU-T and the national
/// variants built on it are read; ANSI's IAM (SIP-T) is laid out otherwise, and is
/// refused as unreadable rather than misread.
#[test]
fn ansi_isup_is_not_misread() {
    let p = policy("");
    let with_version = |version: &str| {
        let m = sipi(
            "+442071234567",
            &iam(NumberSpec::international("8613812345678")),
        );
        // Bytes, not text: the IAM is binary.
        let b = m.buf();
        let pat = b"version=itu-t92+";
        let at = b.windows(pat.len()).position(|w| w == pat).unwrap();
        let body_len = m.len() - m.body_span().start as usize;
        let mut s = b[..at].to_vec();
        s.extend_from_slice(version.as_bytes());
        s.extend_from_slice(&b[at + pat.len()..m.len()]);
        let s = String::from_utf8_lossy(&s[..at])
            .replace(
                &format!("Content-Length: {body_len}\r\n"),
                &format!(
                    "Content-Length: {}\r\n",
                    body_len + version.len() - pat.len()
                ),
            )
            .into_bytes()
            .into_iter()
            .chain(s[at..].iter().copied())
            .collect::<Vec<u8>>();
        Message::parse(Bytes::from(s)).unwrap()
    };
    for v in ["version=ansi92", "version=ANSI88", "version=\"gr-317\""] {
        let d = judge(&p, &with_version(v), "intl");
        assert_eq!(d.rule, Some(RuleId::IsupMismatch), "{v}: {d:?}");
        let e = d.identity.isup.unwrap().iam.unwrap_err();
        assert!(e.to_string().contains("ANSI"), "{v}: {e}");
    }
    // ITU-T variants, or no version at all: the IAM is read, and its domestic calling
    // number refused.
    for v in ["version=itu-t88", "version=chn", "foo=bar"] {
        blocks_on_isup(
            &p,
            &with_version(v),
            "intl",
            403,
            RuleId::IntlDomesticCaller,
        );
    }
}

fn forwarded(p: &Policy, m: &Message, d: &Decision) -> Message {
    let mut e = EditList::new();
    verdict::add_edits(p, m, d, None, &mut e);
    let mut out = vec![];
    e.apply(m.buf(), m.len(), &mut out);
    Message::parse(Bytes::from(out)).expect("rewritten message re-parses")
}

/// The ISUP octets of a message's first application/ISUP part.
fn isup_of(m: &Message) -> Vec<u8> {
    let s = isup::sipi::find(m).unwrap().unwrap();
    s.body.of(m.buf()).to_vec()
}

#[test]
fn generic_number_deleted_from_the_iam() {
    let p = policy("");
    // With other optional parameters after it: only the Generic Number goes.
    let built = IamBuilder::new("861012345678")
        .calling(NumberSpec::international("442071234567"))
        .generic(NumberSpec::international("8613812345678"))
        .unknown(0x39, &[0x31, 0xc0])
        .generic(NumberSpec::international("8613812345679"))
        .original_called(NumberSpec::international("861087654321"))
        .build();
    let m = sipi("+442071234567", &built);
    let d = passes(&p, &m, "intl");
    assert_eq!(d.rule, Some(RuleId::GenericNumber));
    assert!(d.rewrite_from);
    let out = forwarded(&p, &m, &d);
    let after = isup_of(&out);
    let want = IamBuilder::new("861012345678")
        .calling(NumberSpec::international("442071234567"))
        .unknown(0x39, &[0x31, 0xc0])
        .original_called(NumberSpec::international("861087654321"))
        .build();
    assert_eq!(after, want, "only the generic numbers removed");
    let iam = isup::decode_iam(&after).unwrap();
    assert!(iam.generic.is_none());
    assert_eq!(iam.calling.unwrap().digits(), b"442071234567");
    // Content-Length follows the shorter body, and the SDP part is untouched.
    let cl: usize = std::str::from_utf8(out.value(HeaderName::ContentLength).unwrap())
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(cl, out.body().len());
    assert_eq!(cl, m.body().len() - (built.len() - want.len()));
    assert!(out.body().windows(SDP.len()).any(|w| w == SDP.as_bytes()));
    // The rewritten call is clean: judged again, nothing to delete.
    let d2 = passes(&p, &out, "intl");
    assert!(!d2.rewrite_from, "{d2:?}");
    // `explain --output` prints that request byte for byte (the IAM's octets above
    // 0x7f included), and `--json` gives its bytes in hex beside the text.
    let dir = tempfile::tempdir().unwrap();
    let (cfg, msgf) = (dir.path().join("p.toml"), dir.path().join("m.sip"));
    std::fs::write(&cfg, POLICY).unwrap();
    std::fs::write(&msgf, &m.buf()[..m.len()]).unwrap();
    let run = |json: bool| {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_sipfence"));
        c.args(["explain", "--trunk", "intl", "--output", "--config"])
            .arg(&cfg);
        if json {
            c.arg("--json");
        }
        c.arg(&msgf).output().unwrap().stdout
    };
    let text = run(false);
    let at = text
        .windows(8)
        .position(|w| w == b"output:\n")
        .expect("an output section");
    let printed = &text[at + 8..text.len() - 1];
    assert_eq!(printed, &out.buf()[..out.len()]);
    let v: serde_json::Value = serde_json::from_slice(&run(true)).unwrap();
    let hex: String = out.buf()[..out.len()]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(v["output_hex"], hex.as_str());
    // A folded Content-Length is printed as the proxy sends it: unfolded, recounted
    // (QA 141: shown folded, the form a Kamailio core refuses).
    let raw = &m.buf()[..m.len()];
    let at = memchr::memmem::find(raw, b"\r\nContent-Length: ").unwrap();
    let folded = [
        &raw[..at],
        b"\r\nContent-Length:\r\n ",
        &raw[at + b"\r\nContent-Length: ".len()..],
    ]
    .concat();
    std::fs::write(&msgf, &folded).unwrap();
    let text = run(false);
    let want = format!("\r\nContent-Length: {}\r\n", out.body().len());
    assert!(
        memchr::memmem::find(&text, want.as_bytes()).is_some(),
        "{}",
        String::from_utf8_lossy(&text)
    );
}

#[test]
fn generic_number_alone_leaves_no_optional_part() {
    let p = policy("[rules.isup-mismatch]\naction = \"label\"");
    let built = IamBuilder::new("861012345678")
        .generic(NumberSpec::international("8613812345678"))
        .calling(NumberSpec::international("442071234567"))
        .build();
    let m = sipi("+442071234567", &built);
    let d = passes(&p, &m, "intl");
    let out = forwarded(&p, &m, &d);
    let after = isup_of(&out);
    let iam = isup::decode_iam(&after).unwrap();
    assert_eq!(iam.optional_count, 1);
    // Only a generic number: the optional part disappears, pointer 0, no end octet.
    let built = IamBuilder::new("861012345678")
        .generic(NumberSpec::international("8613812345678").with_nature(Nature::National))
        .build();
    let m = sipi("+442071234567", &built);
    // No Calling Party Number: a blank caller, here only monitored.
    let p = policy("[rules.blank-caller]\naction = \"monitor\"");
    let d = judge(&p, &m, "ic");
    assert!(
        d.rewrite_from && d.hits.contains(RuleId::BlankCaller),
        "{d:?}"
    );
    let out = forwarded(&p, &m, &d);
    let after = isup_of(&out);
    assert_eq!(after, IamBuilder::new("861012345678").build());
    assert_eq!(after[isup::OPT_PTR], 0);
}

#[test]
fn generic_number_kept_on_enterprise_trunks_and_when_switched_off() {
    let built = IamBuilder::new("861012345678")
        .calling(NumberSpec::international("8613912340001"))
        .generic(NumberSpec::international("8613912340002"))
        .build();
    let m = sipi("+8613912340001", &built);
    let p = policy("");
    let d = passes(&p, &m, "ent");
    assert!(!d.rewrite_from);
    let p = policy("[rules.generic-number]\naction = \"off\"");
    let d = passes(&p, &m, "ic");
    let out = forwarded(&p, &m, &d);
    assert_eq!(isup_of(&out), built);
}

/// tshark's ISUP dissector (an implementation nobody here wrote) decodes every IAM the
/// project writes, before and after the Generic Number deletion: after it, no Generic
/// Number and every other number unchanged. Also every IAM of the SIP-I test capture.
#[test]
fn tshark_decodes_every_iam_before_and_after_deletion() {
    if !common::tshark_available() {
        return;
    }
    use sipfence::replay::pcapout::{LINKTYPE_RAW, PcapWriter, udp_packet};
    let p = policy(
        "[rules.isup-mismatch]\naction = \"label\"\n[rules.blank-caller]\naction = \"monitor\"",
    );
    let cases: Vec<Vec<u8>> = vec![
        IamBuilder::new("861012345678")
            .calling(NumberSpec::international("442071234567"))
            .generic(NumberSpec::international("8613812345678"))
            .original_called(NumberSpec::international("861087654321"))
            .build(),
        IamBuilder::new("13812345678")
            .generic(NumberSpec::national("13912345678"))
            .calling(NumberSpec::national("1012345678").restricted())
            .unknown(0x39, &[0x31, 0xc0])
            .redirecting(NumberSpec::international("861055551234"))
            .build(),
        IamBuilder::new("861012345678")
            .generic(NumberSpec::international("8613812345678"))
            .build(),
        IamBuilder::new("110")
            .calling(NumberSpec::international("12125550123"))
            .build(),
    ];
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("iams.pcap");
    let mut w = PcapWriter::create(&path).unwrap();
    let (src, dst) = (
        "10.0.0.2:5060".parse().unwrap(),
        "10.0.0.100:5060".parse().unwrap(),
    );
    let mut want = vec![];
    for (k, iam) in cases.iter().enumerate() {
        let m = sipi("+442071234567", iam);
        let d = judge(&p, &m, "ic");
        let has_generic = isup::decode_iam(iam).unwrap().generic_count > 0;
        assert_eq!(d.rewrite_from, has_generic, "case {k}: {d:?}");
        let out = forwarded(&p, &m, &d);
        for (msg, after) in [(&m, false), (&out, true)] {
            let pkt = udp_packet(src, dst, &msg.buf()[..msg.len()]);
            w.write(
                LINKTYPE_RAW,
                1_796_004_000 + want.len() as u32,
                0,
                &pkt,
                pkt.len() as u32,
            )
            .unwrap();
            let i = isup::decode_iam(&isup_of(msg)).unwrap();
            let digits = |n: Option<isup::IsupNumber>| {
                n.map(|n| n.digits_str().to_string()).unwrap_or_default()
            };
            want.push(vec![
                "1".to_string(),
                i.called.digits_str().to_string(),
                digits(i.calling),
                if after {
                    String::new()
                } else {
                    digits(i.generic)
                },
                digits(i.original_called),
                digits(i.redirecting),
            ]);
            if after {
                assert!(i.generic.is_none());
            }
        }
    }
    w.finish().unwrap();
    let fields = [
        "isup.message_type",
        "isup.called",
        "isup.calling",
        "isup.generic_number",
        "isup.original_called_number",
        "isup.redirecting",
    ];
    let run = |file: &std::path::Path| -> Vec<Vec<String>> {
        let mut args: Vec<String> = vec![
            "-r".into(),
            file.display().to_string(),
            "-Y".into(),
            "sip.Method == \"INVITE\"".into(),
            "-T".into(),
            "fields".into(),
            "-E".into(),
            "separator=|".into(),
        ];
        for f in fields.iter().chain(["_ws.malformed"].iter()) {
            args.push("-e".into());
            args.push(f.to_string());
        }
        let o = std::process::Command::new("tshark")
            .args(&args)
            .output()
            .expect("tshark runs");
        assert!(
            o.status.success(),
            "tshark: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .map(|l| l.split('|').map(str::to_string).collect())
            .collect()
    };
    let got = run(&path);
    assert_eq!(got.len(), want.len(), "{got:?}");
    for (k, (g, w)) in got.iter().zip(&want).enumerate() {
        assert_eq!(
            g[6], "",
            "frame {k}: tshark finds the message malformed: {g:?}"
        );
        assert_eq!(&g[..6], &w[..], "frame {k} (tshark vs sipfence)");
    }
    // The SIP-I capture written by scripts/gen_testdata.py: every IAM decodes, except the
    // one cut short on purpose.
    let cap = common::project_dir().join("testdata/pcap/sipi.pcap");
    let rows = run(&cap);
    assert_eq!(rows.len(), 9, "{rows:?}");
    for r in &rows[..8] {
        assert_eq!((r[0].as_str(), r[6].as_str()), ("1", ""), "{r:?}");
    }
    assert_ne!(
        rows[8][6], "",
        "the truncated IAM is malformed for tshark too"
    );
}

#[test]
fn no_voice_and_labels_on_the_isup_number() {
    let p = policy("[rules.isup-mismatch]\naction = \"label\"");
    // 145: a data-only card, hidden in the IAM.
    let m = sipi(
        "+8613912345678",
        &iam(NumberSpec::international("8614512345678")),
    );
    blocks_on_isup(&p, &m, "ic", 403, RuleId::NoVoiceNumber);
    // An MVNO number in the IAM labels the call, and says the ISUP number did it.
    let m = sipi(
        "+8613912345678",
        &iam(NumberSpec::international("8617012345678")),
    );
    let d = passes(&p, &m, "ic");
    assert!(d.labels.contains(RuleId::LabelMvno), "{d:?}");
    assert!(d.isup_hits.contains(RuleId::LabelMvno));
    // The same numbers with SIP and ISUP swapped: the SIP number did it this time.
    let m = sipi(
        "+8617012345678",
        &iam(NumberSpec::international("8613912345678")),
    );
    let d = passes(&p, &m, "ic");
    assert!(d.labels.contains(RuleId::LabelMvno) && !d.isup_hits.contains(RuleId::LabelMvno));
}

#[test]
fn enterprise_foreign_network_in_isup() {
    let p = policy("[lists.own_segments]\nentries = [\"+86139*\"]");
    let m = sipi(
        "+8613912340001",
        &iam(NumberSpec::international("8613912340001")),
    );
    passes(&p, &m, "ent");
    let m = sipi(
        "+8613912340001",
        &iam(NumberSpec::international("8618612345678")),
    );
    blocks_on_isup(&p, &m, "ent", 403, RuleId::EnterpriseForeignNetwork);
}

/// `sipfence explain` shows the ISUP numbers and the rules they made match, in text and
/// in JSON.
#[test]
fn explain_shows_the_isup_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let m = sipi(
        "+442071234567",
        &iam(NumberSpec::international("8613812345678")),
    );
    let f = dir.path().join("sipi.sip");
    std::fs::write(&f, &m.buf()[..m.len()]).unwrap();
    let run = |json: bool| {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_sipfence"));
        c.args(["explain", "--trunk", "intl"]);
        if json {
            c.arg("--json");
        }
        let o = c.arg(&f).output().unwrap();
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let text = run(false);
    assert!(text.contains("rule     intl-domestic-caller"), "{text}");
    assert!(
        text.contains("isup     calling=+8613812345678 (mobile, international, allowed)"),
        "{text}"
    );
    assert!(
        text.contains("matched on isup: intl-domestic-caller"),
        "{text}"
    );
    let v: serde_json::Value = serde_json::from_str(run(true).trim()).unwrap();
    assert_eq!(v["isup"]["calling"], "+8613812345678");
    assert_eq!(v["isup"]["rules"][0], "intl-domestic-caller");
    assert_eq!(v["caller"], "+442071234567");
}

/// An INVITE whose body is `body` of type `ct` (a hand-built multipart).
fn with_body(ct: &str, body: &[u8]) -> Message {
    let mut s = format!(
        "INVITE sip:+861012345678@10.0.0.100 SIP/2.0\r\nVia: SIP/2.0/UDP 10.9.9.9:5060;branch=z9hG4bK-nest\r\nFrom: <sip:+442071234567@10.9.9.9;user=phone>;tag=ft1\r\nTo: <sip:+861012345678@10.0.0.100>\r\nCall-ID: nest-1\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\nP-Asserted-Identity: <tel:+442071234567>\r\nMIME-Version: 1.0\r\nContent-Type: {ct}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    s.extend_from_slice(body);
    Message::parse(Bytes::from(s)).expect("INVITE parses")
}

/// One multipart body of these parts (content type, bytes) under `boundary`.
fn multipart(boundary: &str, parts: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let mut b = Vec::new();
    for (ct, body) in parts {
        b.extend_from_slice(format!("--{boundary}\r\nContent-Type: {ct}\r\n\r\n").as_bytes());
        b.extend_from_slice(body);
        b.extend_from_slice(b"\r\n");
    }
    b.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    b
}

/// The next hop may read any ISUP part of the body: an IAM in a multipart part inside
/// the multipart body is judged like one at the top; two ISUP parts (a clean one first,
/// a forged one after it) are unreadable, refused as a mismatch rather than judged on
/// the first; nesting past three levels is refused alike.
#[test]
fn every_isup_part_counts_at_any_depth() {
    let p = policy("");
    const ISUP: &str = "application/ISUP;version=itu-t92+";
    let clean = iam(NumberSpec::international("442071234567"));
    let forged = iam(NumberSpec::national("13812345678"));
    let sdp = SDP.as_bytes().to_vec();
    // Nested: SDP beside a multipart/mixed holding the forged IAM.
    let inner = multipart("in1", &[(ISUP, forged.clone())]);
    let outer = multipart(
        "out1",
        &[
            ("application/sdp", sdp.clone()),
            ("multipart/mixed;boundary=in1", inner),
        ],
    );
    let m = with_body("multipart/mixed;boundary=out1", &outer);
    blocks_on_isup(&p, &m, "intl", 403, RuleId::IntlDomesticCaller);
    // The clean IAM nested, nothing else: judged and let through.
    let inner = multipart("in2", &[(ISUP, clean.clone())]);
    let outer = multipart(
        "out2",
        &[
            ("application/sdp", sdp.clone()),
            ("multipart/mixed;boundary=in2", inner),
        ],
    );
    let d = passes(
        &p,
        &with_body("multipart/mixed;boundary=out2", &outer),
        "intl",
    );
    assert!(d.identity.isup.is_some_and(|i| i.iam.is_ok()), "{d:?}");
    // Two ISUP parts.
    let two = multipart(
        "two",
        &[
            ("application/sdp", sdp.clone()),
            (ISUP, clean.clone()),
            (ISUP, forged),
        ],
    );
    let d = judge(&p, &with_body("multipart/mixed;boundary=two", &two), "intl");
    assert_eq!(d.rule, Some(RuleId::IsupMismatch), "{d:?}");
    assert!(matches!(
        d.identity.isup.map(|i| i.iam),
        Some(Err(sipfence::isup::IsupError::SeveralParts))
    ));
    // Four levels.
    let mut body = multipart("l4", &[(ISUP, clean)]);
    for (i, b) in ["l3", "l2", "l1"].iter().enumerate() {
        let inner_b = ["l4", "l3", "l2"][i];
        body = multipart(
            b,
            &[(&format!("multipart/mixed;boundary={inner_b}") as &str, body)],
        );
    }
    let d = judge(&p, &with_body("multipart/mixed;boundary=l1", &body), "intl");
    assert_eq!(d.rule, Some(RuleId::IsupMismatch), "{d:?}");
}

/// QA 31: a nested body whose first delimiter has text glued before it (`" --in"`)
/// held no part here, so its forged IAM went on unjudged to a next hop that finds the
/// delimiter anyway. The delimiter where none stands makes the IAM unreadable, at any
/// level, in front of a part, inside one or after the close; the same body written
/// right is judged.
/// A boundary of dashes only (RFC 2046 allows `-` in a boundary) matches inside its
/// own delimiters: those are no stray delimiter (QA 46: every such body was refused,
/// SIP-I or not). One anywhere else still is.
#[test]
fn a_boundary_of_dashes_is_read() {
    let p = policy("");
    const ISUP: &str = "application/ISUP;version=itu-t92+";
    let sdp = SDP.as_bytes().to_vec();
    let own = iam(NumberSpec::international("442071234567"));
    for boundary in ["-", "--", "---", "-=-"] {
        let ct = format!("multipart/mixed;boundary=\"{boundary}\"");
        let body = multipart(
            boundary,
            &[("application/sdp", sdp.clone()), (ISUP, own.clone())],
        );
        let d = passes(&p, &with_body(&ct, &body), "intl");
        assert!(d.isup_hits.is_empty(), "{boundary}: {d:?}");
        let body = multipart(
            boundary,
            &[
                ("application/sdp", sdp.clone()),
                ("text/plain", b"hello".to_vec()),
            ],
        );
        passes(&p, &with_body(&ct, &body), "intl");
        // A delimiter inside the SDP part, where a reader splits and finds the IAM.
        let mut hidden = sdp.clone();
        hidden
            .extend_from_slice(format!("--{boundary}\r\nContent-Type: {ISUP}\r\n\r\n").as_bytes());
        hidden.extend(iam(NumberSpec::national("13812345678")));
        let body = multipart(
            boundary,
            &[("application/sdp", hidden), (ISUP, own.clone())],
        );
        let d = judge(&p, &with_body(&ct, &body), "intl");
        assert!(d.is_reject(), "{boundary}: {d:?}");
    }
}

#[test]
fn a_delimiter_where_none_stands_is_unreadable() {
    let p = policy("");
    const ISUP: &str = "application/ISUP;version=itu-t92+";
    let sdp = SDP.as_bytes().to_vec();
    for forged in [
        iam(NumberSpec::national("13812345678")),
        iam(NumberSpec::international("442071234567")),
    ] {
        let inner = multipart("in", &[(ISUP, forged.clone())]);
        for glued in [" ", "\t", "x", "preamble text "] {
            let outer = multipart(
                "out",
                &[
                    ("application/sdp", sdp.clone()),
                    (
                        "multipart/mixed;boundary=in",
                        [glued.as_bytes(), &inner].concat(),
                    ),
                ],
            );
            let d = judge(
                &p,
                &with_body("multipart/mixed;boundary=out", &outer),
                "intl",
            );
            assert_eq!(d.rule, Some(RuleId::IsupMismatch), "{glued:?}: {d:?}");
            // The same at the top.
            let top = [
                glued.as_bytes(),
                &multipart(
                    "out",
                    &[("application/sdp", sdp.clone()), (ISUP, forged.clone())],
                ),
            ]
            .concat();
            let d = judge(&p, &with_body("multipart/mixed;boundary=out", &top), "intl");
            assert_eq!(d.rule, Some(RuleId::IsupMismatch), "{glued:?}: {d:?}");
        }
        // A part after the close, where a reader that reads on finds it.
        let mut late = multipart("out", &[("application/sdp", sdp.clone())]);
        late.extend_from_slice(&multipart("out", &[(ISUP, forged.clone())]));
        let d = judge(
            &p,
            &with_body("multipart/mixed;boundary=out", &late),
            "intl",
        );
        assert_eq!(d.rule, Some(RuleId::IsupMismatch), "{d:?}");
    }
    // QA 33: a delimiter line in another case, where a reader comparing without case
    // finds a forged part; a boundary with white space unquoted, which a reader ends at
    // the space.
    let forged = iam(NumberSpec::national("13812345678"));
    let clean = iam(NumberSpec::international("442071234567"));
    let mut cased = b"--abc\r\nContent-Type: application/sdp\r\n\r\nv=0\r\n--ABC\r\nContent-Type: application/ISUP;version=itu-t92+\r\n\r\n".to_vec();
    cased.extend_from_slice(&forged);
    cased.extend_from_slice(b"\r\n");
    cased.extend_from_slice(&multipart("abc", &[(ISUP, clean.clone())]));
    let d = judge(
        &p,
        &with_body("multipart/mixed;boundary=abc", &cased),
        "intl",
    );
    assert_eq!(d.rule, Some(RuleId::IsupMismatch), "{d:?}");
    let spaced = multipart("a b", &[("application/sdp", sdp.clone()), (ISUP, clean)]);
    let d = judge(
        &p,
        &with_body("multipart/mixed;boundary=a b", &spaced),
        "intl",
    );
    assert_eq!(d.rule, Some(RuleId::IsupMismatch), "{d:?}");
    passes(
        &p,
        &with_body("multipart/mixed;boundary=\"a b\"", &spaced),
        "intl",
    );

    // Written right, nested: the clean IAM passes.
    let inner = multipart(
        "in",
        &[(ISUP, iam(NumberSpec::international("442071234567")))],
    );
    let outer = multipart(
        "out",
        &[
            ("application/sdp", sdp),
            ("multipart/mixed;boundary=in", inner),
        ],
    );
    passes(
        &p,
        &with_body("multipart/mixed;boundary=out", &outer),
        "intl",
    );
}

/// A `multipart/mixed;boundary=b1` body: an SDP part, then `iam` under the part
/// headers `part_head`.
fn sdp_and_isup(part_head: &str, iam: &[u8]) -> Vec<u8> {
    let mut b = b"--b1\r\nContent-Type: application/sdp\r\n\r\n".to_vec();
    b.extend_from_slice(SDP.as_bytes());
    b.extend_from_slice(format!("\r\n--b1\r\n{part_head}\r\n\r\n").as_bytes());
    b.extend_from_slice(iam);
    b.extend_from_slice(b"\r\n--b1--\r\n");
    b
}

/// What a lenient MIME reader makes of a part or its type is what the filter reads: a
/// folded part header, white space around the type's slash; and what two readers may
/// read differently is refused (two `boundary` parameters, two `version`s).
#[test]
fn part_headers_are_read_as_mime_reads_them() {
    let p = policy("");
    let forged = iam(NumberSpec::national("13812345678"));
    let body = |part_head: &str| sdp_and_isup(part_head, &forged);
    for head in [
        "Content-Type:\r\n application/ISUP;version=itu-t92+",
        "Content-Type:\r\n\tapplication/ISUP;version=itu-t92+",
        "Content-Type: application/ISUP;\r\n version=itu-t92+",
        "Content-Type: application / ISUP;version=itu-t92+",
        "Content-Type: application/\r\n ISUP",
        "Content-Disposition: signal;\r\n handling=required\r\nContent-Type: application/ISUP",
        // RFC 822 comments, which a lenient reader skips.
        "Content-Type: application/ISUP (SIP-I);version=itu-t92+",
        "Content-Type: application/ISUP(x)",
        "Content-Type: (IAM) application/ISUP",
        "Content-Type: application(x)/ISUP",
    ] {
        let m = with_body("multipart/mixed;boundary=b1", &body(head));
        blocks_on_isup(&p, &m, "intl", 403, RuleId::IntlDomesticCaller);
    }
    // The top-level type alike.
    let m = with_body(
        "multipart / mixed;boundary=b1",
        &body("Content-Type: application/ISUP"),
    );
    blocks_on_isup(&p, &m, "intl", 403, RuleId::IntlDomesticCaller);
    let m = with_body(
        "(SIP-I) multipart/mixed (two parts);boundary=b1",
        &body("Content-Type: application/ISUP"),
    );
    blocks_on_isup(&p, &m, "intl", 403, RuleId::IntlDomesticCaller);
    // A comment that names ISUP makes no ISUP part: the SDP-typed part is not read.
    let m = with_body(
        "multipart/mixed;boundary=b1",
        &body("Content-Type: application/sdp (not ISUP)"),
    );
    passes(&p, &m, "intl");
    // A fold makes no second field of a folded one: a single Content-Type.
    let m = with_body(
        "multipart/mixed;boundary=b1",
        &body(
            "Content-Type: application/ISUP;\r\n version=itu-t92+\r\nContent-Disposition: signal",
        ),
    );
    blocks_on_isup(&p, &m, "intl", 403, RuleId::IntlDomesticCaller);
    // Two boundaries: the body splits one way here and maybe another at the next hop.
    for ct in [
        "multipart/mixed;boundary=b2;boundary=b1",
        "multipart/mixed;boundary=b1;BOUNDARY=\"b2\"",
    ] {
        let d = judge(
            &p,
            &with_body(ct, &body("Content-Type: application/ISUP")),
            "intl",
        );
        assert_eq!(d.rule, Some(RuleId::IsupMismatch), "{ct}: {d:?}");
    }
}

/// QA 27: ISUP the next hop reads otherwise than these bytes is refused as unreadable
/// (`isup-mismatch`): under a transfer encoding that changes bytes (base64 decoders skip
/// what is not of their alphabet, so a clean IAM can carry an encoded forged one), or
/// behind a CR that ends a part's header line for some readers. Identity encodings pass.
#[test]
fn isup_another_reader_reads_otherwise_is_refused() {
    let p = policy("");
    let clean = iam(NumberSpec::international("442071234567"));
    let body = |part_head: &str| sdp_and_isup(part_head, &clean);
    let unreadable = |m: &Message, what: &str| {
        let d = judge(&p, m, "intl");
        assert_eq!(d.rule, Some(RuleId::IsupMismatch), "{what}: {d:?}");
        assert!(
            d.identity.isup.is_some_and(|i| i.iam.is_err()),
            "{what}: {d:?}"
        );
    };
    for cte in ["base64", "Quoted-Printable", "x-uuencode", "(c) base64"] {
        let head = format!("Content-Type: application/ISUP\r\nContent-Transfer-Encoding: {cte}");
        unreadable(&with_body("multipart/mixed;boundary=b1", &body(&head)), cte);
        // A second one that changes bytes behind an identity one.
        let head = format!(
            "Content-Type: application/ISUP\r\nContent-Transfer-Encoding: binary\r\nContent-Transfer-Encoding: {cte}"
        );
        unreadable(&with_body("multipart/mixed;boundary=b1", &body(&head)), cte);
    }
    for cte in ["binary", "8bit", "7BIT", "binary (raw)"] {
        let head = format!("Content-Type: application/ISUP\r\nContent-Transfer-Encoding: {cte}");
        passes(
            &p,
            &with_body("multipart/mixed;boundary=b1", &body(&head)),
            "intl",
        );
    }
    // A transfer-encoded SDP part is no ISUP.
    let mut b = b"--b1\r\nContent-Type: application/sdp\r\nContent-Transfer-Encoding: base64\r\n\r\ndj0w\r\n--b1\r\nContent-Type: application/ISUP\r\n\r\n".to_vec();
    b.extend_from_slice(&clean);
    b.extend_from_slice(b"\r\n--b1--\r\n");
    passes(&p, &with_body("multipart/mixed;boundary=b1", &b), "intl");
    // The whole body transfer-encoded.
    let top = |cte: &str| {
        let mut s = format!(
            "INVITE sip:+861012345678@10.0.0.100 SIP/2.0\r\nVia: SIP/2.0/UDP 10.9.9.9:5060;branch=z9hG4bK-cte\r\nFrom: <sip:+442071234567@10.9.9.9;user=phone>;tag=ft1\r\nTo: <sip:+861012345678@10.0.0.100>\r\nCall-ID: cte-1\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\nP-Asserted-Identity: <tel:+442071234567>\r\nContent-Type: application/ISUP;version=itu-t92+\r\nContent-Transfer-Encoding: {cte}\r\nContent-Length: {}\r\n\r\n",
            clean.len()
        )
        .into_bytes();
        s.extend_from_slice(&clean);
        Message::parse(Bytes::from(s)).expect("INVITE parses")
    };
    unreadable(&top("base64"), "top-level base64");
    passes(&p, &top("binary"), "intl");
    // SIP's own Content-Encoding (QA 28: a gzip header's extra field held a clean
    // multipart, the compressed data a forged one); `identity` changes nothing.
    for (ce, refused) in [
        ("Content-Encoding: gzip", true),
        ("e: identity, gzip", true),
        ("Content-Encoding: (c) deflate", true),
        ("Content-Encoding: identity", false),
    ] {
        let m = top(&format!("binary\r\n{ce}"));
        if refused {
            unreadable(&m, ce);
        } else {
            passes(&p, &m, "intl");
        }
    }
    // A Content-Type that is no media type, at the top or on a part, and a body
    // without one that looks like an IAM or like parts: the next hop may guess ISUP.
    for ct in [
        "application/ISUP\0",
        "application/ISUP, application/sdp",
        "\"application/ISUP\"",
        "application",
    ] {
        // A NUL in a field of the SIP head is refused before anything is read (400: QA
        // 44); in a part's head, it is the multipart reader's.
        if !ct.contains('\0') {
            unreadable(&with_body(ct, &clean), ct);
        }
        let head = format!("Content-Type: {ct}");
        unreadable(
            &with_body("multipart/mixed;boundary=b1", &body(&head)),
            &head,
        );
    }
    let untyped = |b: &[u8]| {
        let mut s = format!(
            "INVITE sip:+861012345678@10.0.0.100 SIP/2.0\r\nVia: SIP/2.0/UDP 10.9.9.9:5060;branch=z9hG4bK-nct\r\nFrom: <sip:+442071234567@10.9.9.9;user=phone>;tag=ft1\r\nTo: <sip:+861012345678@10.0.0.100>\r\nCall-ID: nct-1\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\nP-Asserted-Identity: <tel:+442071234567>\r\nContent-Length: {}\r\n\r\n",
            b.len()
        )
        .into_bytes();
        s.extend_from_slice(b);
        Message::parse(Bytes::from(s)).expect("INVITE parses")
    };
    unreadable(&untyped(&clean), "an untyped IAM");
    unreadable(
        &untyped(&body("Content-Type: application/ISUP")),
        "untyped parts",
    );
    let mut preamble = b"This is a MIME message.\r\n".to_vec();
    preamble.extend_from_slice(&body("Content-Type: application/ISUP"));
    unreadable(&untyped(&preamble), "untyped parts after a preamble");
    passes(&p, &untyped(SDP.as_bytes()), "intl");
    passes(
        &p,
        &with_body("Application/SDP ; charset=utf-8", SDP.as_bytes()),
        "intl",
    );
    // SIP's Content-Encoding written on a part around the ISUP (QA 29).
    let mut inner = b"--in\r\nContent-Type: application/ISUP\r\n\r\n".to_vec();
    inner.extend_from_slice(&clean);
    inner.extend_from_slice(b"\r\n--in--");
    for ce in ["Content-Encoding: gzip", "e: deflate"] {
        let mut b = format!(
            "--b1\r\nContent-Type: application/sdp\r\n\r\nv=0\r\n--b1\r\nContent-Type: multipart/mixed;boundary=in\r\n{ce}\r\n\r\n"
        )
        .into_bytes();
        b.extend_from_slice(&inner);
        b.extend_from_slice(b"\r\n--b1--\r\n");
        unreadable(&with_body("multipart/mixed;boundary=b1", &b), ce);
    }
    // A CR that ends no line in a part's header.
    unreadable(
        &with_body(
            "multipart/mixed;boundary=b1",
            &body("Content-Type: text/plain\rContent-Type: application/ISUP"),
        ),
        "bare CR",
    );
}

/// QA 27: a Generic Number's deletion inside a multipart part nested in the body fixes
/// the Content-Length of every part around it, not only its own and the message's.
#[test]
fn generic_number_deletion_fixes_every_enclosing_length() {
    let p = policy("");
    // 102 octets with the Generic Number, 94 without: the part's Content-Length loses
    // a digit, which every length around it must count too (QA 28).
    let with_generic = IamBuilder::new("861012345678")
        .calling(NumberSpec::international("442071234567"))
        .generic(NumberSpec::national("95588"))
        .unknown(0xfd, &[7; 64])
        .build();
    assert_eq!(with_generic.len(), 102);
    let mut inner = b"--in\r\nContent-Type: application/ISUP;version=itu-t92+\r\n".to_vec();
    inner.extend_from_slice(format!("Content-Length: {}\r\n\r\n", with_generic.len()).as_bytes());
    inner.extend_from_slice(&with_generic);
    inner.extend_from_slice(b"\r\n--in--");
    let mut body = b"--out\r\nContent-Type: application/sdp\r\n\r\n".to_vec();
    body.extend_from_slice(SDP.as_bytes());
    body.extend_from_slice(
        format!(
            "\r\n--out\r\nContent-Type: multipart/mixed;boundary=in\r\nContent-Length: {}\r\n\r\n",
            inner.len()
        )
        .as_bytes(),
    );
    body.extend_from_slice(&inner);
    body.extend_from_slice(b"\r\n--out--\r\n");
    let m = with_body("multipart/mixed;boundary=out", &body);
    let d = passes(&p, &m, "intl");
    assert_eq!(d.rule, Some(RuleId::GenericNumber), "{d:?}");
    let out = forwarded(&p, &m, &d);
    let text = String::from_utf8_lossy(out.body()).into_owned();
    let without = IamBuilder::new("861012345678")
        .calling(NumberSpec::international("442071234567"))
        .unknown(0xfd, &[7; 64])
        .build();
    let removed = with_generic.len() - without.len();
    assert!(
        text.contains(&format!(
            "Content-Length: {}\r\n",
            inner.len() - removed - 1
        )),
        "{text}"
    );
    // The message's length counts every byte that went: the next hop frames it whole.
    assert_eq!(out.len(), out.buf().len());
    assert_eq!(out.body().len(), m.body().len() - removed - 1);
    assert!(
        text.contains(&format!("Content-Length: {}\r\n", without.len())),
        "{text}"
    );
    assert_eq!(isup_of(&out), without);
    // QA 138: a length that is not the part's (the inner one, or the ISUP part's) is a
    // second reading of where the IAM ends: unreadable. One counting the CRLF before
    // the next delimiter is the part's too.
    let at = |n: usize| format!("Content-Length: {n}\r\n");
    let inner_cl = at(inner.len());
    let isup_cl = at(with_generic.len());
    // The IAM's octets are no UTF-8: fields are replaced in the bytes.
    let replaced = |field: &str, by: &str| {
        let at = memchr::memmem::find(&body, field.as_bytes()).unwrap();
        [&body[..at], by.as_bytes(), &body[at + field.len()..]].concat()
    };
    for (field, by, readable) in [
        (&isup_cl, 5usize, false),
        (&isup_cl, 2, true),
        (&isup_cl, 1, false),
        (&inner_cl, 2, true),
        (&inner_cl, 3, false),
    ] {
        let n = |f: &str| {
            f["Content-Length: ".len()..f.len() - 2]
                .parse::<usize>()
                .unwrap()
        };
        let changed = replaced(field, &at(n(field) + by));
        let m = with_body("multipart/mixed;boundary=out", &changed);
        let d = judge(&p, &m, "intl");
        if readable {
            assert_eq!(d.rule, Some(RuleId::GenericNumber), "+{by}: {d:?}");
        } else {
            assert_eq!(d.rule, Some(RuleId::IsupMismatch), "+{by}: {d:?}");
            let err = d.identity.isup.unwrap().iam.unwrap_err().to_string();
            assert!(err.contains("Content-Length is not its length"), "{err}");
        }
    }
    let short = replaced(&isup_cl, &at(5));
    let d = judge(
        &p,
        &with_body("multipart/mixed;boundary=out", &short),
        "intl",
    );
    assert_eq!(d.rule, Some(RuleId::IsupMismatch), "{d:?}");
}

/// QA 27: every Generic Number that may be shown as the caller counts, whatever its
/// qualifier (only those Q.763 gives another party do not): judged on an enterprise
/// trunk, deleted at the gateways. Digits after the end of pulsing hide nothing; an
/// IAM with octets no parameter holds is unreadable; an ISUP number of unknown nature
/// is read in the home plan, as the core reads it, whatever `bare_numbers` says.
#[test]
fn isup_numbers_read_as_the_core_reads_them() {
    let p = policy("");
    let ent_caller = NumberSpec::international("8613912340001");
    for q in [0x02u8, 0x03, 0x80] {
        // Enterprise: a non-contracted number behind the qualifier is refused.
        let b = IamBuilder::new("861012345678")
            .calling(ent_caller.clone())
            .generic_with(q, NumberSpec::national("13812345678"))
            .build();
        let m = sipi("+8613912340001", &b);
        let d = judge(&p, &m, "ent");
        assert_eq!(
            d.outcome,
            Outcome::Reject { code: 403 },
            "qualifier {q:#x}: {d:?}"
        );
        // Gateways: deleted.
        let b = IamBuilder::new("861012345678")
            .calling(NumberSpec::international("442071234567"))
            .generic_with(q, NumberSpec::national("95588"))
            .build();
        let m = sipi("+442071234567", &b);
        let d = passes(&p, &m, "intl");
        assert_eq!(d.rule, Some(RuleId::GenericNumber), "{q:#x}: {d:?}");
        let out = forwarded(&p, &m, &d);
        assert_eq!(
            isup_of(&out),
            IamBuilder::new("861012345678")
                .calling(NumberSpec::international("442071234567"))
                .build()
        );
    }
    // An additional called number (qualifier 1) names the callee: kept, not judged.
    let b = IamBuilder::new("861012345678")
        .calling(ent_caller.clone())
        .generic_with(0x01, NumberSpec::national("13812345678"))
        .build();
    passes(&p, &sipi("+8613912340001", &b), "ent");
    // Octets after the end of the optional parameters.
    let mut b = iam(NumberSpec::international("442071234567"));
    b.extend_from_slice(&[0xc0, 0x06, 0x06, 0x83, 0x10, 0x59, 0x85, 0x08]);
    let d = judge(&p, &sipi("+442071234567", &b), "intl");
    assert_eq!(d.rule, Some(RuleId::IsupMismatch), "{d:?}");
    // A Generic Number hiding digits after ST, on an enterprise trunk.
    let mut b = IamBuilder::new("861012345678")
        .calling(ent_caller)
        .generic(NumberSpec::national("13912340002"))
        .build();
    let at = b
        .windows(3)
        .position(|w| {
            w[0] == isup::code::GENERIC_NUMBER && w[2] == isup::QUALIFIER_ADDITIONAL_CALLING
        })
        .unwrap();
    // "13912340002" is 11 digits: its last octet holds '2' and a filler; ST and '9' go
    // there instead, with the odd indicator cleared and one more octet of digits.
    let len = b[at + 1] as usize;
    let last = at + 2 + len - 1;
    b[last] = 0xf2;
    b.insert(last + 1, 0x59);
    b[at + 1] += 1;
    b[at + 3] &= 0x7f;
    let d = judge(&p, &sipi("+8613912340001", &b), "ent");
    assert_eq!(d.rule, Some(RuleId::IsupMismatch), "{d:?}");
    assert!(
        d.identity
            .isup
            .is_some_and(|i| i.iam.is_ok() && i.generic_unjudged),
        "{d:?}"
    );
    // Unknown nature on a trunk that reads bare SIP numbers as E.164: the core reads
    // 13812345678 as a domestic mobile, and so does the filter.
    let bare = Policy::from_str(
        &format!(
            "{POLICY}\n[[trunk]]\nname = \"intl-bare\"\nrole = \"international\"\nsources = [\"10.0.0.4\"]\nbare_numbers = \"international\"\n"
        ),
        "test.toml",
        Path::new("."),
    )
    .unwrap();
    let b = iam(NumberSpec::national("13812345678").with_nature(Nature::Unknown));
    let m = sipi("13812345678", &b);
    let d = judge(&bare, &m, "10.0.0.4");
    assert_eq!(d.rule, Some(RuleId::IntlDomesticCaller), "{d:?}");
}

/// An IAM under another media type than `application/ISUP` is judged all the same: a
/// type that names ISUP otherwise (`application/x-isup`, as a next hop may take it) or
/// bytes that start as an IAM (`application/octet-stream`), as the whole body or a
/// part (QA 125: a forged domestic caller under `application/x-isup` went on). Its
/// Generic Number is deleted as from any IAM. An SDP or text part is not read as
/// ISUP, and an IAM without its end octet is refused as such (QA 125: it was said to
/// be truncated).
#[test]
fn an_iam_under_another_media_type_is_judged() {
    let p = policy("");
    let forged = iam(NumberSpec::national("13812345678"));
    let clean = iam(NumberSpec::international("442071234567"));
    for ct in [
        "application/x-isup",
        "application/X-ISUP;version=itu-t92+",
        "application/vnd.example.isup",
        "application/octet-stream",
        "application/sipi",
    ] {
        // The whole body.
        blocks_on_isup(
            &p,
            &with_body(ct, &forged),
            "intl",
            403,
            RuleId::IntlDomesticCaller,
        );
        passes(&p, &with_body(ct, &clean), "intl");
        // A part beside the SDP.
        let body = multipart(
            "b1",
            &[("application/sdp", SDP.into()), (ct, forged.clone())],
        );
        let m = with_body("multipart/mixed;boundary=b1", &body);
        blocks_on_isup(&p, &m, "intl", 403, RuleId::IntlDomesticCaller);
        let body = multipart(
            "b1",
            &[("application/sdp", SDP.into()), (ct, clean.clone())],
        );
        let d = passes(&p, &with_body("multipart/mixed;boundary=b1", &body), "intl");
        assert!(d.identity.isup.is_some_and(|i| i.iam.is_ok()), "{ct}");
    }
    // A Generic Number under `application/x-isup` leaves the IAM like any other.
    let with_generic = IamBuilder::new("861012345678")
        .calling(NumberSpec::international("442071234567"))
        .generic(NumberSpec::international("8613812345678"))
        .build();
    let m = with_body("application/x-isup", &with_generic);
    let d = judge(&p, &m, "intl");
    assert_eq!(d.rule, Some(RuleId::GenericNumber), "{d:?}");
    let out = isup_of(&forwarded(&p, &m, &d));
    assert!(out.len() < with_generic.len(), "{out:?}");
    let left = isup::decode_iam(&out).unwrap();
    assert!(left.generic.is_none() && left.calling.is_some());
    // Text is never an IAM, nor is what another type says it is, nor a type whose name
    // only holds the letters (QA 126).
    for (ct, body) in [
        ("text/plain", &b"\x01 hello"[..]),
        ("image/png", &forged[..]),
        ("application/QSIG", &forged[..]),
        ("application/vnd.isupport+json", b"{\"a\":1}"),
        ("application/x-isupdate", b"{\"a\":1}"),
    ] {
        let d = passes(&p, &with_body(ct, body), "intl");
        assert!(d.identity.isup.is_none(), "{ct}");
    }
    blocks_on_isup(
        &p,
        &with_body("application/foo+isup", &forged),
        "intl",
        403,
        RuleId::IntlDomesticCaller,
    );
    // No end octet: refused, and said so.
    let mut no_end = clean.clone();
    assert_eq!(no_end.pop(), Some(0));
    let d = judge(&p, &with_body("application/ISUP", &no_end), "intl");
    assert_eq!(d.rule, Some(RuleId::IsupMismatch), "{d:?}");
    let err = d.identity.isup.unwrap().iam.unwrap_err().to_string();
    assert!(err.contains("without their end octet"), "{err}");
}
