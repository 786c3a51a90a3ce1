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

#[test]
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
