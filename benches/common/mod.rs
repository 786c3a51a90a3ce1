//! The messages and context the message benches share (`core` times them, `instructions`
//! counts their instructions), so that both measure exactly the same work.

use bytes::Bytes;
use sipfence::decide::Context;
use sipfence::policy::rate::NoCounting;

/// A realistic INVITE: PAI (sip and tel), Privacy, SDP.
pub fn invite() -> Bytes {
    Bytes::from_static(include_bytes!("../../testdata/sip/invite-pai-sdp.sip"))
}

/// The same call as SIP-I: SDP and an IAM (called, calling, generic number, original
/// called number) in a multipart/mixed body.
pub fn sipi_invite() -> Bytes {
    use sipfence::isup::encode::{IamBuilder, NumberSpec, to_sipi};
    let iam = IamBuilder::new("861012345678")
        .calling(NumberSpec::international("442071234567"))
        .generic(NumberSpec::international("442071234567"))
        .original_called(NumberSpec::international("861012345678"))
        .build();
    Bytes::from(to_sipi(&invite(), &iam, "sipfence-bench").expect("the bench INVITE is text"))
}

/// The sender on the built-in policy's international trunk, a Monday morning, no rate
/// counting.
pub fn context() -> Context<'static> {
    Context {
        source: "127.0.0.1:5070".parse().expect("literal address"),
        local: None,
        trunk: None,
        now_ms: 1_795_998_600_000,
        wall_ms: 1_795_998_600_000,
        rates: &NoCounting,
        behaviour: &sipfence::behaviour::NoTracking,
    }
}

/// The built-in policy with every behaviour rule on the first trunk (intl, where
/// [`invite`] arrives), action monitor so that every call goes the whole way.
pub fn behaviour_policy() -> sipfence::policy::Policy {
    let mut text = sipfence::policy::BUILTIN_CONFIG.replacen(
        "\n[[trunk]]\nname = \"ent-400\"",
        "[trunk.behaviour]\nattempts = 60\ndistinct_callees = 30\nsequential_callees = 10\nmin_asr_percent = 10\nring_once = 3\nshort_calls = 5\n\n[[trunk]]\nname = \"ent-400\"",
        1,
    );
    for r in [
        "attempts",
        "callees",
        "sequential",
        "low-asr",
        "ring-once",
        "short-calls",
    ] {
        text.push_str(&format!("\n[rules.behaviour-{r}]\naction = \"monitor\"\n"));
    }
    let p = sipfence::policy::Policy::from_str(&text, "bench", std::path::Path::new("."))
        .expect("behaviour policy");
    assert!(p.trunks[0].behaviour.is_some());
    p
}

/// [`invite`] from 4096 different calling numbers, for the behaviour tables.
pub fn invites_from_many_callers() -> Vec<Bytes> {
    let text = String::from_utf8(invite().to_vec()).expect("text");
    (0..4096)
        .map(|i| Bytes::from(text.replace("442071234567", &format!("4420712{i:05}"))))
        .collect()
}
