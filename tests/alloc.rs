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

/// The count is process-wide, so both checks run in one test, one after the other: a
/// second test in this binary could allocate (or the harness report it) mid-count.
#[test]
fn allow_paths_allocate_nothing() {
    parse_and_decide_allocate_nothing_on_allow();
    sipi_parse_and_decide_allocate_nothing();
}

fn parse_and_decide_allocate_nothing_on_allow() {
    let policy = Policy::builtin().unwrap();
    let raw = Bytes::from(
        std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/testdata/sip/invite-pai-sdp.sip"
        ))
        .unwrap(),
    );
    let ctx = Context {
        source: "127.0.0.1:5070".parse().unwrap(),
        local: None,
        trunk: None,
        now_ms: 1_795_998_600_000,
        rates: &NoCounting,
    };
    // Warm up anything lazily initialised.
    let m = Message::parse(raw.clone()).unwrap();
    let _ = decide(&policy, &m, &ctx);
    drop(m);

    let before = ALLOCS.load(Ordering::Relaxed);
    let mut allowed = 0;
    for _ in 0..100 {
        let m = Message::parse(raw.clone()).unwrap();
        let d = decide(&policy, &m, &ctx);
        if !d.is_reject() {
            allowed += 1;
        }
    }
    let after = ALLOCS.load(Ordering::Relaxed);
    assert_eq!(allowed, 100);
    assert_eq!(after - before, 0, "allocations on the allow path");
}

/// The same for a SIP-I INVITE: multipart split and IAM decode allocate nothing either.
fn sipi_parse_and_decide_allocate_nothing() {
    use sipfence::isup::encode::{IamBuilder, NumberSpec, sipi_body};
    let policy = Policy::builtin().unwrap();
    let iam = IamBuilder::new("861012345678")
        .calling(NumberSpec::international("442071234567"))
        .original_called(NumberSpec::international("861012345678"))
        .build();
    let (ct, body) = sipi_body("v=0\r\n", &iam, "b1");
    let mut raw = format!(
        "INVITE sip:+861012345678@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKa\r\nFrom: <sip:+442071234567@127.0.0.1>;tag=1\r\nTo: <sip:+861012345678@127.0.0.1>\r\nCall-ID: a1\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\nP-Asserted-Identity: <tel:+442071234567>\r\nContent-Type: {ct}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    raw.extend_from_slice(&body);
    let raw = Bytes::from(raw);
    let ctx = Context {
        source: "127.0.0.1:5070".parse().unwrap(),
        local: None,
        trunk: None,
        now_ms: 1_795_998_600_000,
        rates: &NoCounting,
    };
    let m = Message::parse(raw.clone()).unwrap();
    let d = decide(&policy, &m, &ctx);
    assert!(!d.is_reject() && d.isup_caller.is_some(), "{d:?}");
    drop(m);
    let before = ALLOCS.load(Ordering::Relaxed);
    for _ in 0..100 {
        let m = Message::parse(raw.clone()).unwrap();
        assert!(!decide(&policy, &m, &ctx).is_reject());
    }
    assert_eq!(
        ALLOCS.load(Ordering::Relaxed) - before,
        0,
        "allocations on the SIP-I allow path"
    );
}
