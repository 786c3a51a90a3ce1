//! The allow path allocates nothing: parsing a realistic INVITE and deciding on it is
//! counted with a global allocator that tallies every allocation in this test binary.

use bytes::Bytes;
use sipfence::decide::{Context, decide};
use sipfence::policy::Policy;
use sipfence::policy::rate::NoCounting;
use sipfence::sip::Message;
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

struct Counting;
static ALLOCS: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static A: Counting = Counting;

/// The count is process-wide, so both messages are checked in one test, one after the
/// other: a second test in this binary could allocate (or the harness report it)
/// mid-count.
#[test]
fn allow_paths_allocate_nothing() {
    use sipfence::isup::encode::{IamBuilder, NumberSpec, to_sipi};
    let policy = Policy::builtin().unwrap();
    let plain = Bytes::from(
        std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/testdata/sip/invite-pai-sdp.sip"
        ))
        .unwrap(),
    );
    assert_eq!(
        allocations_on_allow(&policy, &plain, false),
        0,
        "allocations on the allow path"
    );
    // SIP-I: multipart split and IAM decode allocate nothing either.
    let iam = IamBuilder::new("861012345678")
        .calling(NumberSpec::international("442071234567"))
        .original_called(NumberSpec::international("861012345678"))
        .build();
    let sipi = Bytes::from(to_sipi(&plain, &iam, "b1").unwrap());
    assert_eq!(
        allocations_on_allow(&policy, &sipi, true),
        0,
        "allocations on the SIP-I allow path"
    );
    // A trunk with digest authentication: checking good credentials (nonce MAC, MD5
    // chain) allocates nothing either.
    assert_eq!(
        allocations_authenticated(),
        0,
        "allocations on an authenticated trunk's allow path"
    );
}

/// As [`allocations_on_allow`], for a call with good digest credentials on the
/// built-in enterprise trunk given `[trunk.auth]`.
fn allocations_authenticated() -> usize {
    use md5::{Digest, Md5};
    let text = format!(
        "{}\n[trunk.auth]\nrealm = \"r\"\nusers = [\"pbx:pw\"]\n",
        sipfence::policy::BUILTIN_CONFIG
    );
    let policy = Policy::from_str(&text, "auth", std::path::Path::new(".")).unwrap();
    let ent = policy.trunks.len() - 1;
    let now_ms = 1_795_998_600_000;
    let nonce = policy.trunks[ent].auth.as_ref().unwrap().nonce(
        now_ms,
        1,
        Some("127.0.0.1".parse().unwrap()),
    );
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    let ha1 = hex(&Md5::digest(b"pbx:r:pw"));
    let ha2 = hex(&Md5::digest(b"INVITE:sip:4008001234@127.0.0.1"));
    let resp = hex(&Md5::digest(format!("{ha1}:{nonce}:{ha2}").as_bytes()));
    let raw = Bytes::from(format!(
        "INVITE sip:4008001234@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5071;branch=z9hG4bK-a\r\nFrom: <sip:+8613912345678@127.0.0.1>;tag=1\r\nTo: <sip:4008001234@127.0.0.1>\r\nCall-ID: alloc-auth\r\nCSeq: 2 INVITE\r\nMax-Forwards: 70\r\nProxy-Authorization: Digest username=\"pbx\", realm=\"r\", nonce=\"{nonce}\", uri=\"sip:4008001234@127.0.0.1\", response=\"{resp}\"\r\nContent-Length: 0\r\n\r\n"
    ));
    let ctx = Context {
        source: "127.0.0.1:5071".parse().unwrap(),
        local: None,
        trunk: Some(ent),
        now_ms,
        wall_ms: now_ms,
        rates: &NoCounting,
        behaviour: &sipfence::behaviour::NoTracking,
    };
    let m = Message::parse(raw.clone()).unwrap();
    let d = decide(&policy, &m, &ctx);
    assert!(!d.is_reject(), "{d:?}");
    assert!(
        matches!(d.auth, Some(sipfence::policy::auth::AuthCheck::Ok { .. })),
        "{d:?}"
    );
    drop(m);
    let before = ALLOCS.load(Ordering::Relaxed);
    let mut m = Message::empty();
    for _ in 0..100 {
        m.parse_into(raw.clone()).unwrap();
        std::hint::black_box(decide(&policy, &m, &ctx).is_reject());
    }
    ALLOCS.load(Ordering::Relaxed) - before
}

/// Allocations made by 100 parses + decisions of `raw`, which must be allowed (after one
/// warm-up round for anything lazily initialised); `sipi`: it is judged on an ISUP number.
fn allocations_on_allow(policy: &Policy, raw: &Bytes, sipi: bool) -> usize {
    let ctx = Context {
        source: "127.0.0.1:5070".parse().unwrap(),
        local: None,
        trunk: None,
        now_ms: 1_795_998_600_000,
        wall_ms: 1_795_998_600_000,
        rates: &NoCounting,
        behaviour: &sipfence::behaviour::NoTracking,
    };
    let m = Message::parse(raw.clone()).unwrap();
    let d = decide(policy, &m, &ctx);
    assert!(!d.is_reject(), "{d:?}");
    assert_eq!(d.isup_caller.is_some(), sipi, "{d:?}");
    drop(m);
    let before = ALLOCS.load(Ordering::Relaxed);
    for _ in 0..100 {
        let m = Message::parse(raw.clone()).unwrap();
        assert!(!decide(policy, &m, &ctx).is_reject());
    }
    // The proxy's way: one message parsed into over and over.
    let mut reused = Message::empty();
    for _ in 0..100 {
        reused.parse_for_relay_into(raw.clone()).unwrap();
        assert!(!decide(policy, &reused, &ctx).is_reject());
    }
    ALLOCS.load(Ordering::Relaxed) - before
}
