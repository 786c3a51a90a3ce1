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
        rates: &NoCounting,
        behaviour: &sipfence::behaviour::NoTracking,
    }
}
