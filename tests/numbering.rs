//! Every number form and class of the built-in China plan, from testdata/numbering/cn-cases.tsv
//! (the test numbers of docs/numbering-plan-cn.md section 6 and more).

use sipfence::identity::uri_number;
use sipfence::numbering::{Plan, Reading, normalise};
use sipfence::sip::Span;

fn classify(plan: &Plan, input: &str) -> (String, Vec<String>) {
    let n = if input.starts_with("sip:") || input.starts_with("tel:") {
        uri_number(
            input.as_bytes(),
            Span::new(0, input.len()),
            Reading::national(plan.country()),
        )
        .1
    } else {
        normalise(input.as_bytes(), plan.country(), None)
    };
    let n = n.unwrap_or_else(|e| panic!("{input}: not a number ({e:?})"));
    let c = plan.classify(&n);
    let mut flags = vec![];
    if c.flags.mvno {
        flags.push("mvno".to_string());
    }
    if c.flags.satellite {
        flags.push("satellite".to_string());
    }
    if c.flags.novoice {
        flags.push("novoice".to_string());
    }
    if let Some(op) = c.operator {
        flags.push(format!("operator={op}"));
    }
    flags.sort();
    (c.class.as_str().to_string(), flags)
}

#[test]
fn builtin_plan_classifies_every_case() {
    let plan = Plan::builtin();
    let tsv = include_str!("../testdata/numbering/cn-cases.tsv");
    let mut bad = vec![];
    let mut n = 0;
    for line in tsv.lines().skip(1).filter(|l| !l.trim().is_empty()) {
        let cols: Vec<&str> = line.split('\t').collect();
        let (input, class) = (cols[0], cols[1]);
        let mut want: Vec<String> = match cols.get(2) {
            Some(&"-") | None | Some(&"") => vec![],
            Some(f) => f.split(',').map(str::to_string).collect(),
        };
        want.sort();
        let got = classify(&plan, input);
        if got.0 != class || got.1 != want {
            bad.push(format!(
                "{input}: want {class} {want:?}, got {} {:?}",
                got.0, got.1
            ));
        }
        n += 1;
    }
    assert!(n > 80, "only {n} cases");
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

#[test]
fn foreign_and_overlong() {
    let plan = Plan::builtin();
    for f in ["+14155550123", "+85221234567", "+442071234567"] {
        let n = normalise(f.as_bytes(), b"86", None).unwrap();
        assert_eq!(plan.classify(&n).class.as_str(), "foreign", "{f}");
    }
    let n = normalise(b"+1234567890123456", b"86", None).unwrap();
    assert_eq!(plan.classify(&n).class.as_str(), "invalid");
    let n = normalise(b"+12345", b"86", None).unwrap();
    assert_eq!(plan.classify(&n).class.as_str(), "invalid");
}

/// The plans of NANP, Hong Kong, Macao and Taiwan hold their numbers to their own lengths
/// and first digits (QA 211: `+852 1234567` and `+1 415 155 0123` passed as foreign
/// numbers); numbers of those shapes that exist are let be.
#[test]
fn neighbours_plans_hold_their_numbers() {
    let plan = Plan::builtin();
    let class = |f: &str| {
        let n = normalise(f.as_bytes(), b"86", None).unwrap();
        plan.classify(&n).class.as_str()
    };
    for f in [
        "+14155550123",
        "+12125550100",
        "+85221234567",
        "+85291234567",
        "+852800123456",
        "+85290012345678",
        "+85295588",
        "+85328123456",
        "+85366123456",
        "+8530800123",
        "+886221234567",
        "+88641234567",
        "+886912345678",
        "+8867012345678",
    ] {
        assert_eq!(class(f), "foreign", "{f}");
    }
    for f in [
        "+14151550123",
        "+14150550123",
        "+8521234567",
        "+852123456789",
        "+85212345678",
        "+852212345678",
        "+8536612345",
        "+853661234567",
        "+85312345678",
        "+886123456789",
        "+88691234",
        "+8869123456789",
        "+852912345678901",
        "+8528123456789",
    ] {
        assert_eq!(class(f), "invalid", "{f}");
    }
}
