//! Property tests: number normalisation (idempotent, every written form of a number
//! gives the same E.164) and rewriting (the generic-number rewrite keeps everything it
//! does not mean to change).

use bytes::Bytes;
use proptest::prelude::*;
use sipfence::decide::{Context, decide};
use sipfence::numbering::{Plan, normalise};
use sipfence::policy::Policy;
use sipfence::policy::rate::NoCounting;
use sipfence::sip::rewrite::EditList;
use sipfence::sip::{HeaderName, Message};

/// An 11-digit mobile number from an assigned prefix.
fn mobile() -> impl Strategy<Value = String> {
    (
        prop::sample::select(vec![
            "138", "139", "186", "189", "150", "177", "198", "170", "166",
        ]),
        0u64..100_000_000,
    )
        .prop_map(|(p, n)| format!("{p}{n:08}"))
}

/// A Beijing / Shanghai / Shenzhen / Shijiazhuang fixed number as national digits (no trunk 0).
fn fixed() -> impl Strategy<Value = String> {
    (
        prop::sample::select(vec!["10", "21", "755", "311"]),
        20_000_000u64..99_999_999,
    )
        .prop_map(|(a, n)| format!("{a}{n}"))
}

fn with_separators(d: &str, sep: char) -> String {
    d.chars()
        .enumerate()
        .map(|(i, c)| {
            if i > 0 && i % 3 == 0 {
                format!("{sep}{c}")
            } else {
                c.to_string()
            }
        })
        .collect()
}

fn e164(s: &str) -> String {
    normalise(s.as_bytes(), b"86", None)
        .map(|n| n.e164())
        .unwrap_or_else(|e| format!("error {e:?}"))
}

proptest! {
    #[test]
    fn every_form_of_a_mobile_is_one_number(m in mobile(), sep in prop::sample::select(vec!['-', '.', ' '])) {
        let want = format!("+86{m}");
        for form in [m.clone(), format!("0{m}"), format!("86{m}"), format!("+86{m}"), format!("0086{m}"), format!("+86{}", with_separators(&m, sep)), format!("%2B86{m}"), format!("179510086{m}")] {
            prop_assert_eq!(e164(&form), want.clone(), "form {}", form);
        }
        let tel = format!("tel:+86-{}", with_separators(&m, '-'));
        let (_, n) = sipfence::identity::uri_number(tel.as_bytes(), sipfence::sip::Span::new(0, tel.len()), sipfence::numbering::Reading::national(b"86"));
        prop_assert_eq!(n.map(|n| n.e164()).ok(), Some(want));
    }

    #[test]
    fn every_form_of_a_fixed_number_is_one_number(f in fixed()) {
        let want = format!("+86{f}");
        for form in [format!("0{f}"), format!("+86{f}"), format!("0086{f}"), format!("86{f}")] {
            prop_assert_eq!(e164(&form), want.clone(), "form {}", form);
        }
        let local = format!("0{f}");
        let n = normalise(local.as_bytes(), b"86", Some(b"+86")).unwrap();
        prop_assert_eq!(n.e164(), want.clone());
        // And the plan agrees that it is a fixed line.
        prop_assert_eq!(Plan::builtin().classify(&n).class.as_str(), "fixed");
    }

    #[test]
    fn normalisation_is_idempotent(s in "[+]?[0-9 ().-]{1,24}") {
        if let Ok(n) = normalise(s.as_bytes(), b"86", None) {
            let again = normalise(n.e164().as_bytes(), b"86", None).unwrap();
            prop_assert_eq!(again, n);
        }
    }

    #[test]
    fn generic_number_rewrite_keeps_the_rest(
        presented in mobile(),
        display in "[A-Za-z0-9 ]{0,12}",
        asserted in prop_oneof![
            (1_000_000u64..9_999_999_999).prop_map(|n| format!("+44{n}")),
            // Hong Kong: eight digits starting 2-9 in the built-in plan.
            (2u64..=9, 0u64..10_000_000).prop_map(|(a, n)| format!("+852{a}{n:07}")),
            // NANP: the built-in plan holds +1 to ten digits, area code [2-9][0-8]x, no
            // N11 (the middle digit 1 is left out here), the exchange code [2-9]xx.
            (2u64..=9, prop::sample::select(vec![0u64, 2, 3, 4, 5, 6, 7, 8]), 0u64..10, 2u64..=9, 0u64..1_000_000).prop_map(|(a, b, c, e, n)| format!("+1{a}{b}{c}{e}{n:06}")),
        ],
        tag in "[a-z0-9]{1,12}",
        extra in prop::collection::vec("[A-Za-z]{1,8}", 0..5),
    ) {
        let policy = Policy::builtin().unwrap();
        let mut hdrs = String::new();
        for (i, e) in extra.iter().enumerate() {
            hdrs.push_str(&format!("X-Extra-{i}: {e}\r\n"));
        }
        let raw = format!(
            "INVITE sip:4008001234@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKp\r\nFrom: \"{display}\" <sip:+86{presented}@127.0.0.1>;tag={tag}\r\nTo: <sip:4008001234@127.0.0.1>\r\nCall-ID: prop\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\nP-Asserted-Identity: <sip:{asserted}@10.0.0.1>\r\n{hdrs}Content-Length: 3\r\n\r\nabc"
        );
        let m = Message::parse(Bytes::from(raw)).unwrap();
        let ctx = Context { source: "127.0.0.1:5070".parse().unwrap(), local: None, trunk: Some(0), now_ms: 0,  wall_ms: 0, rates: &NoCounting, behaviour: &sipfence::behaviour::NoTracking };
        let d = decide(&policy, &m, &ctx);
        prop_assert!(d.rewrite_from);
        let mut e = EditList::new();
        sipfence::verdict::add_edits(&policy, &m, &d, None, &mut e);
        let mut out = vec![];
        e.apply(m.buf(), m.len(), &mut out);
        let r = Message::parse(Bytes::from(out)).unwrap();
        let want_from = format!("<sip:{asserted}@127.0.0.1>;tag={tag}");
        prop_assert_eq!(r.value(HeaderName::From), Some(want_from.as_bytes()));
        prop_assert_eq!(r.from_tag(), m.from_tag());
        // A label may be added (e.g. an asserted "+1 30950000" reads like 95xxx): it is
        // the only other change.
        let kept: Vec<_> = r
            .headers()
            .iter()
            .filter(|h| !r.slice(h.name_span()).eq_ignore_ascii_case(policy.label_header.as_bytes()))
            .collect();
        prop_assert_eq!(kept.len(), m.headers().len());
        for (a, b) in kept.into_iter().zip(m.headers()) {
            if a.name != HeaderName::From {
                prop_assert_eq!(r.slice(a.line()), m.slice(b.line()));
            }
        }
        prop_assert_eq!(r.body(), m.body());
    }
}
