//! The in-process behaviour tracker: two fixed-size, set-associative tables allocated
//! once (at the first call, or up front with [`LocalTracker::reserve`]), so memory is
//! the same whatever an attacker sends, and nothing is taken where no trunk runs
//! behaviour rules.
//!
//! - Callers: `callers` slots of [`CallerSlot`] in sets of [`WAYS`], each set behind
//!   its own lock (two workers rarely touch the same set). A new caller takes a free
//!   slot of its set, else evicts, in this order of preference: an idle slot (nothing
//!   for two windows), a caller seen once (what a flood of invented numbers looks like:
//!   they evict each other, not the history of real repeat callers), the least recently
//!   active; a caller on the watch list goes last.
//! - Calls: `calls` slots of [`CallSlot`] (call key, caller, times of the INVITE,
//!   first 18x and answer), set-associative the same way; the oldest call of a set is
//!   overwritten, and a later message of an overwritten call is simply not counted.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};

use super::live::LiveCalls;
use super::{BehaviourTracker, CallRef, CallStart, Event, Features, SEQ_STEP, Seen};
use crate::policy::RuleSet;
use crate::policy::TrunkTag;

/// Slots per set.
pub const WAYS: usize = 8;

/// Outcomes held back for the settle time ([`super::Features::settled`]) are counted
/// in slots of this many milliseconds (up to one slot late) ...
const SETTLE_Q_MS: u64 = 10_000;
/// ... in a ring of this many slots, which must cover the longest settle time
/// (`asr_settle_secs` at most 60) plus one slot.
const PENDING: usize = 8;

/// Two-bucket sliding window of one count.
#[derive(Debug, Clone, Copy, Default)]
struct Pair {
    cur: u16,
    prev: u16,
}

impl Pair {
    fn add(&mut self) {
        self.cur = self.cur.saturating_add(1);
    }
    /// `prev` weighted by the share of the previous bucket still inside the window,
    /// rounded: just past a bucket's end, two calls a moment ago are two (1.996), not
    /// one, wherever the clock's buckets happen to fall.
    fn weighted(self, left_permille: u64) -> u32 {
        self.cur as u32 + ((self.prev as u64 * left_permille + 500) / 1000) as u32
    }
    fn roll(&mut self, buckets: u64) {
        self.prev = if buckets == 1 { self.cur } else { 0 };
        self.cur = 0;
    }
}

/// One set: the keys side by side, so that a lookup reads one cache line of keys and
/// then the one slot it wants (with the keys inside the slots, a miss in a big table
/// cost a cache line per way).
#[derive(Debug, Clone, Copy)]
struct Set<T> {
    /// 0 = free.
    keys: [u64; WAYS],
    slots: [T; WAYS],
}

impl<T: Copy + Default> Default for Set<T> {
    fn default() -> Self {
        Set {
            keys: [0; WAYS],
            slots: [T::default(); WAYS],
        }
    }
}

impl<T> Set<T> {
    fn find(&self, key: u64) -> Option<usize> {
        self.keys.iter().position(|&k| k == key)
    }
}

/// The start of the bucket of `window_ms` that `now_ms` falls in. Buckets are on the
/// clock, as the rate counters' are, not on a caller's first call: then a call long out
/// of the window cannot move where the buckets of later ones start, and a capture that
/// begins mid-way counts as the gateway that saw it all did (QA 53).
fn aligned(now_ms: u64, window_ms: u64) -> u64 {
    now_ms - now_ms % window_ms
}

#[derive(Debug, Clone, Copy, Default)]
struct CallerSlot {
    /// Start of the current bucket.
    start_ms: u64,
    last_ms: u64,
    window_ms: u64,
    watch_until_ms: u64,
    last_callee: u64,
    /// Callee bitmaps of the current and previous bucket (linear counting).
    callees: [u128; 2],
    /// The same, of the ring-once calls' callees, and of the callees calls reached
    /// (half the bits: the share is read around a few to a few dozen).
    ring_once_callees: [u64; 2],
    reached_callees: [u64; 2],
    attempts: Pair,
    answered: Pair,
    settled: Pair,
    ring_once: Pair,
    reached: Pair,
    sequential: Pair,
    short_calls: Pair,
    watched: RuleSet,
    /// Outcomes held back, by the [`SETTLE_Q_MS`] slot they count in: the slot
    /// numbered `n` (since the epoch) at `pending[n % PENDING]`, failures and answers.
    /// Both wait, so that the ratio's two counts cover the same calls: with answers
    /// counted at once, a burst's answers left the window before its failures, and
    /// its ratio read low once the caller slowed down (QA 101).
    pending: [u8; PENDING],
    pending_answers: [u8; PENDING],
    /// The first slot `pending` may hold.
    pending_from: u32,
}

/// Moves bitmap buckets on by `buckets` (current, previous).
fn roll_bits<T: Copy + Default>(b: &mut [T; 2], buckets: u64) {
    *b = [T::default(), if buckets == 1 { b[0] } else { T::default() }];
}

/// Puts bitmap buckets where [`CallerSlot::rewindow`] placed their times.
fn rebucket<T: Copy + Default + std::ops::BitOrAssign>(b: &mut [T; 2], to: [Option<usize>; 2]) {
    let was = std::mem::take(b);
    for (bits, to) in was.into_iter().zip(to) {
        if let Some(j) = to {
            b[j] |= bits;
        }
    }
}

/// Linear counting: distinct items behind `set` of `m` bits, n = -m ln(zeros/m); all
/// bits set means "more than we can tell" (the caller bounds it by a count).
fn linear_count(set: u32, m: u32) -> u32 {
    let zeros = m - set.min(m);
    if zeros == 0 {
        return u32::MAX;
    }
    (-(m as f64) * (zeros as f64 / m as f64).ln()).round() as u32
}

/// The callee's bit in the callee bitmap.
#[inline]
fn callee_bit(callee_hash: u64) -> u8 {
    (mix(callee_hash) >> 57) as u8
}

/// A callee's bit (its [`callee_bit`]) in the half-size bitmaps: its upper six.
#[inline]
fn half_bit(bit: u8) -> u64 {
    1 << (bit >> 1)
}

impl CallerSlot {
    /// Every count kept in buckets.
    fn pairs(&mut self) -> [&mut Pair; 7] {
        [
            &mut self.attempts,
            &mut self.answered,
            &mut self.settled,
            &mut self.ring_once,
            &mut self.reached,
            &mut self.sequential,
            &mut self.short_calls,
        ]
    }

    /// Moves the buckets forward to `now`; returns the per-mille of the previous bucket
    /// still inside the window.
    fn roll(&mut self, now_ms: u64) -> u64 {
        let w = self.window_ms.max(1);
        let elapsed = now_ms.saturating_sub(self.start_ms);
        if elapsed >= w {
            let buckets = elapsed / w;
            for p in self.pairs() {
                p.roll(buckets);
            }
            roll_bits(&mut self.callees, buckets);
            roll_bits(&mut self.ring_once_callees, buckets);
            roll_bits(&mut self.reached_callees, buckets);
            self.start_ms += buckets * w;
        }
        self.mature(now_ms);
        let into = now_ms.saturating_sub(self.start_ms).min(w);
        1000 - into * 1000 / w
    }

    /// Counts the outcomes held back whose slot has begun by `now_ms`, in the bucket
    /// that slot's start falls in.
    fn mature(&mut self, now_ms: u64) {
        let now = (now_ms / SETTLE_Q_MS) as u32;
        if self.pending_from > now {
            return;
        }
        let w = self.window_ms.max(1);
        // Only the PENDING slots from `pending_from` on can hold anything.
        for n in self.pending_from..=now.min(self.pending_from + PENDING as u32 - 1) {
            let i = n as usize % PENDING;
            let failed = std::mem::take(&mut self.pending[i]) as u16;
            let answered = std::mem::take(&mut self.pending_answers[i]) as u16;
            let at = n as u64 * SETTLE_Q_MS;
            let (settled, answers) = if at >= self.start_ms {
                (&mut self.settled.cur, &mut self.answered.cur)
            } else if at + w >= self.start_ms {
                (&mut self.settled.prev, &mut self.answered.prev)
            } else {
                continue;
            };
            *settled = settled.saturating_add(failed + answered);
            *answers = answers.saturating_add(answered);
        }
        self.pending_from = now + 1;
    }

    /// The outcome of `call` (`answered` or not): counted in the answer ratio now, or
    /// its settle time after its INVITE when that is still to come. The caller's slot
    /// was rolled to `now_ms` first.
    fn settle(&mut self, call: &CallSlot, now_ms: u64, answered: bool) {
        let due = call.invite_ms + call.settle_s as u64 * 1000;
        if due <= now_ms {
            self.settled.add();
            if answered {
                self.answered.add();
            }
            return;
        }
        // The first slot that begins at or after `due`, within the ring.
        let n = (due.div_ceil(SETTLE_Q_MS) as u32)
            .clamp(self.pending_from, self.pending_from + PENDING as u32 - 1);
        let ring = if answered {
            &mut self.pending_answers
        } else {
            &mut self.pending
        };
        let c = &mut ring[n as usize % PENDING];
        *c = c.saturating_add(1);
    }

    /// A reload changed the window to `window_ms`: the counts move into the buckets of
    /// the new size, on its clock. An old bucket's events lie between its start and its
    /// end or the caller's last event, whichever comes first; its count goes to the new
    /// bucket that the newest of those times falls in, so that no count is read as
    /// older than it may be. QA 55: kept as they were, a lengthened window took the old
    /// current bucket for the new previous one; QA 58: spread over the old bucket, a
    /// window shortened in the middle of an attack let the attacker's last calls out
    /// of it.
    fn rewindow(&mut self, now_ms: u64, window_ms: u64) {
        self.roll(now_ms);
        let (old, last) = (self.window_ms, self.last_ms.min(now_ms));
        let start = aligned(now_ms, window_ms);
        // The new bucket (0 current, 1 previous) of the old one beginning at `b`.
        let place = |b: u64| {
            let newest = last.min(b + old - 1);
            if newest >= start {
                Some(0)
            } else if newest >= start.saturating_sub(window_ms) {
                Some(1)
            } else {
                None
            }
        };
        let to = [
            place(self.start_ms),
            place(self.start_ms.saturating_sub(old)),
        ];
        rebucket(&mut self.callees, to);
        rebucket(&mut self.ring_once_callees, to);
        rebucket(&mut self.reached_callees, to);
        for p in self.pairs() {
            let was = std::mem::take(p);
            for (n, to) in [was.cur, was.prev].into_iter().zip(to) {
                match to {
                    Some(0) => p.cur = p.cur.saturating_add(n),
                    Some(_) => p.prev = p.prev.saturating_add(n),
                    None => {}
                }
            }
        }
        (self.window_ms, self.start_ms) = (window_ms, start);
    }

    fn features(&self, left: u64, now_ms: u64) -> Features {
        let attempts = self.attempts.weighted(left);
        // A bucket wholly out of the window adds no bits.
        let prev = left > 0;
        let bits = self.callees[0] | if prev { self.callees[1] } else { 0 };
        let total = |p: Pair| p.cur as u32 + p.prev as u32;
        let ring_once = self.ring_once.weighted(left);
        let union = |b: [u64; 2]| b[0] | if prev { b[1] } else { 0 };
        let watching = self.watch_until_ms > now_ms;
        Features {
            attempts,
            callees: linear_count(bits.count_ones(), 128)
                .min(total(self.attempts))
                .min(attempts.max(1))
                .max(1),
            answered: self.answered.weighted(left),
            settled: self.settled.weighted(left),
            ring_once,
            ring_once_callees: linear_count(union(self.ring_once_callees).count_ones(), 64)
                .min(total(self.ring_once))
                .min(ring_once),
            reached_callees: linear_count(union(self.reached_callees).count_ones(), 64)
                .min(total(self.reached))
                .min(self.reached.weighted(left)),
            sequential: self.sequential.weighted(left),
            short_calls: self.short_calls.weighted(left),
            watched: if watching {
                self.watched
            } else {
                RuleSet::default()
            },
            watch_until_ms: if watching { self.watch_until_ms } else { 0 },
        }
    }

    /// Eviction rank of a used slot: lower goes first.
    fn rank(&self, now_ms: u64) -> (u8, u64) {
        let idle = now_ms.saturating_sub(self.last_ms) > 2 * self.window_ms;
        let watched = self.watch_until_ms > now_ms;
        let once = self.attempts.cur as u32 + self.attempts.prev as u32 <= 1;
        let class = match (watched, idle, once) {
            (true, _, _) => 4,
            (false, true, _) => 1,
            (false, false, true) => 2,
            (false, false, false) => 3,
        };
        (class, self.last_ms)
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct CallSlot {
    caller: u64,
    invite_ms: u64,
    /// When the callee's phone rang: the first 180, else the first 183 (marked with
    /// [`BY_PROGRESS`] until a 180 comes); 0: not yet. Read through [`CallSlot::rang_at`].
    ring_ms: u64,
    answer_ms: u64,
    short_call_ms: u32,
    trunk: TrunkTag,
    /// When the caller's CANCEL came, in ms after the INVITE plus one (0: none). The call
    /// ends at the INVITE's final answer, not at the CANCEL: the callee may have
    /// answered meanwhile, and an answered call is no ring-once one.
    cancel_at: u32,
    /// The ring-once time in tenths of a second (configured in seconds, at most an
    /// hour): with the callee's bit, it keeps the slot at 48 bytes.
    ring_once_ds: u16,
    /// [`callee_bit`] of the callee, for the caller's ring-once callees.
    callee_bit: u8,
    /// The settle time in seconds ([`super::CallStart::settle_ms`]; at most 60).
    settle_s: u8,
}

const _: () = assert!(std::mem::size_of::<CallSlot>() == 48);

/// Marks a [`CallSlot::ring_ms`] taken from a 183, which a later 180 replaces.
const BY_PROGRESS: u64 = 1 << 63;

impl CallSlot {
    /// When the phone rang (0: not yet).
    fn rang_at(&self) -> u64 {
        self.ring_ms & !BY_PROGRESS
    }

    /// Past the deadlines the concurrent-call limit keeps ([`super::live`]): a call
    /// whose end was never seen (its final answer lost, or challenged by the core and
    /// never retried: QA 64). It is no longer counted as up, and is the first a new
    /// call overwrites, before calls that are up.
    fn stale(&self, now_ms: u64) -> bool {
        if self.answer_ms != 0 {
            now_ms.saturating_sub(self.answer_ms) > super::live::ANSWERED_MS
        } else {
            now_ms.saturating_sub(self.invite_ms.max(self.rang_at())) > super::live::RING_MS
        }
    }
}

/// Occupancy figures, for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    pub callers: usize,
    pub watched: usize,
    pub calls: usize,
    pub caller_evictions: u64,
    pub call_evictions: u64,
}

/// A line of a watched-callers file left out: its number (from 1) and why.
pub type LeftOut = (usize, &'static str);

/// The first line of a watched-callers file ([`LocalTracker::save_watched`]).
pub const WATCHED_FORM: &str = "sipfence watched callers 1";

pub struct LocalTracker {
    /// Set counts (powers of two), fixed at construction.
    caller_sets: usize,
    call_sets: usize,
    tables: OnceLock<Tables>,
    caller_evictions: AtomicU64,
    call_evictions: AtomicU64,
    /// Calls up per trunk, for the concurrent-call limits.
    live: LiveCalls,
    /// Mixed into callee hashes ([`LocalTracker::keyed`]).
    key: u64,
}

struct Tables {
    callers: Box<[Mutex<Set<CallerSlot>>]>,
    calls: Box<[Mutex<Set<CallSlot>>]>,
}

/// A poisoned lock only means another thread panicked mid-update of plain counters:
/// the data is still usable.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Tables {
    fn caller_set(&self, key: u64) -> MutexGuard<'_, Set<CallerSlot>> {
        lock(&self.callers[set_of(key, self.callers.len())])
    }
    fn call_set(&self, call: u64) -> MutexGuard<'_, Set<CallSlot>> {
        lock(&self.calls[set_of(call, self.calls.len())])
    }
}

fn sets_for(slots: usize) -> usize {
    slots.div_ceil(WAYS).max(1).next_power_of_two()
}

/// Keys are already hashes; mixing again spreads sets even if a caller of this type
/// hands in weak ones.
#[inline]
fn set_of(key: u64, sets: usize) -> usize {
    (key.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) as usize & (sets - 1)
}

/// splitmix64's finaliser: callee keys are numbers, often in arithmetic progression,
/// which a single multiply would spread unevenly over 128 bits.
#[inline]
fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// 0 is the free marker.
#[inline]
fn nonzero(k: u64) -> u64 {
    k.max(1)
}

impl LocalTracker {
    /// The calls up per trunk (`max_concurrent_calls`), for sharing them between
    /// gateways.
    pub fn live(&self) -> &LiveCalls {
        &self.live
    }

    /// Room for `callers` callers and `calls` calls in flight (each rounded up to a
    /// power of two of sets of [`WAYS`]).
    /// Allocates nothing yet: see [`LocalTracker::reserve`].
    pub fn new(callers: usize, calls: usize) -> LocalTracker {
        LocalTracker {
            caller_sets: sets_for(callers),
            call_sets: sets_for(calls),
            tables: OnceLock::new(),
            caller_evictions: AtomicU64::new(0),
            call_evictions: AtomicU64::new(0),
            live: LiveCalls::new(),
            key: 0,
        }
    }

    /// Hashes callees into the bitmaps under `key` ([`crate::policy::Policy::callee_key`]):
    /// with a known hash, an attacker can pick victims whose bits coincide, and any
    /// number of them count as one callee (QA 100). The proxy, replay and `explain` key
    /// their trackers from the policy, so that a capture gets the live estimates.
    pub fn keyed(mut self, key: u64) -> LocalTracker {
        self.key = key;
        self
    }

    /// Allocates the tables now rather than at the first call (the proxy does it at
    /// start when a trunk runs behaviour rules, so no call waits for it).
    pub fn reserve(&self) {
        self.tables();
    }

    fn tables(&self) -> &Tables {
        self.tables.get_or_init(|| Tables {
            callers: (0..self.caller_sets).map(|_| Mutex::default()).collect(),
            calls: (0..self.call_sets).map(|_| Mutex::default()).collect(),
        })
    }

    /// The callers watched at `now_ms` (a behaviour rule tripped: refused until their
    /// time is up), written for the next process beside the calls file: a restart gave
    /// a caller refused as a fraud suspect a clean slate, its next call let through
    /// (QA 170). One line per caller after [`WATCHED_FORM`]: its key (the rate
    /// counters' hash of trunk and number, the same in every process), its window, the
    /// end of its watch (ms) and the rules it is watched for, by name (bits would
    /// change meaning with the rule list).
    ///
    /// The tables run on the steady clock (`now_ms`); the file is written in calendar
    /// time (`wall_ms` now), which the next process's steady clock starts at (QA 194
    /// A1: written on a steady clock a step had left hours behind, the next start took
    /// every watch for ended).
    pub fn save_watched(&self, now_ms: u64, wall_ms: u64) -> (String, usize) {
        let wall = |ms: u64| crate::time::on_calendar(ms, now_ms, wall_ms);
        let mut out = format!("{WATCHED_FORM}\n");
        let mut n = 0;
        if let Some(t) = self.tables.get() {
            for set in t.callers.iter() {
                let set = lock(set);
                for (c, k) in set.slots.iter().zip(set.keys) {
                    if k == 0 || c.watch_until_ms <= now_ms || c.watched.is_empty() {
                        continue;
                    }
                    let rules: Vec<&str> = c.watched.iter().map(|r| r.as_str()).collect();
                    out.push_str(&format!(
                        "{k} {} {} {}\n",
                        c.window_ms,
                        wall(c.watch_until_ms),
                        rules.join(",")
                    ));
                    n += 1;
                }
            }
        }
        (out, n)
    }

    /// Takes back the callers [`LocalTracker::save_watched`] wrote, at `now_ms`: those
    /// whose watch ended meanwhile are dropped, rules this version does not know are
    /// left out, and a watch longer than the policy's longest now (`max_watch_ms`, a
    /// trunk's `watch_secs` shortened since) ends that much from now. A line that is
    /// not as written is left out alone, its number (from 1) and why returned beside
    /// the count kept (QA 171: refusing the whole file for one line let every watched
    /// caller go, for good once the next stop wrote the file anew). A file of another
    /// form gives nothing. The table stays bounded: a full set evicts as a new caller
    /// would.
    pub fn restore_watched(
        &self,
        text: &str,
        now_ms: u64,
        max_watch_ms: u64,
    ) -> Result<(usize, Vec<LeftOut>), (usize, String)> {
        let mut lines = text.lines().enumerate();
        if lines.next().map(|(_, l)| l) != Some(WATCHED_FORM) {
            return Err((
                1,
                format!("not a watched-callers file (its first line must be '{WATCHED_FORM}')"),
            ));
        }
        let mut kept = vec![];
        let mut bad = vec![];
        for (i, l) in lines {
            let f: Vec<&str> = l.split(' ').collect();
            let parsed = match f.as_slice() {
                [k, w, u, rules] => k
                    .parse::<u64>()
                    .ok()
                    .filter(|k| *k != 0)
                    .zip(w.parse::<u64>().ok().filter(|w| *w > 0))
                    .zip(u.parse::<u64>().ok())
                    .map(|((k, w), u)| (k, w, u, *rules)),
                _ => None,
            };
            let Some((key, window_ms, until_ms, rules)) = parsed else {
                bad.push((i + 1, "expected: key window_ms until_ms rules"));
                continue;
            };
            let until_ms = until_ms.min(now_ms.saturating_add(max_watch_ms));
            let mut set = RuleSet::default();
            for name in rules.split(',') {
                if let Some(r) = crate::policy::RuleId::BEHAVIOUR
                    .into_iter()
                    .find(|r| r.as_str() == name)
                {
                    set.insert(r);
                }
            }
            if set.is_empty() {
                bad.push((i + 1, "no behaviour rule this version knows"));
            } else if until_ms > now_ms {
                kept.push((key, window_ms, until_ms, set));
            }
        }
        let t = self.tables();
        for &(key, window_ms, until_ms, rules) in &kept {
            self.with_caller(t, key, now_ms, Some(window_ms), |s| {
                s.watch_until_ms = s.watch_until_ms.max(until_ms);
                s.watched.0 |= rules.0;
            });
        }
        Ok((kept.len(), bad))
    }

    /// Bytes the tables take once allocated: fixed at construction.
    pub fn memory_bytes(&self) -> usize {
        self.caller_sets * std::mem::size_of::<Mutex<Set<CallerSlot>>>()
            + self.call_sets * std::mem::size_of::<Mutex<Set<CallSlot>>>()
    }
    /// Bytes per caller slot and per call slot, their set's lock shared out.
    pub fn slot_bytes() -> (usize, usize) {
        (
            std::mem::size_of::<Mutex<Set<CallerSlot>>>() / WAYS,
            std::mem::size_of::<Mutex<Set<CallSlot>>>() / WAYS,
        )
    }
    pub fn caller_capacity(&self) -> usize {
        self.caller_sets * WAYS
    }
    pub fn call_capacity(&self) -> usize {
        self.call_sets * WAYS
    }

    /// Counts what the tables hold (walks them: for a periodic gauge, not per call).
    pub fn stats(&self, now_ms: u64) -> Stats {
        let mut s = Stats {
            caller_evictions: self.caller_evictions.load(Ordering::Relaxed),
            call_evictions: self.call_evictions.load(Ordering::Relaxed),
            ..Stats::default()
        };
        let Some(t) = self.tables.get() else {
            return s;
        };
        for set in t.callers.iter() {
            let set = lock(set);
            for (c, _) in set.slots.iter().zip(set.keys).filter(|(_, k)| *k != 0) {
                s.callers += 1;
                s.watched += (c.watch_until_ms > now_ms) as usize;
            }
        }
        for set in t.calls.iter() {
            let set = lock(set);
            s.calls += (set.slots.iter().zip(set.keys))
                .filter(|(c, k)| *k != 0 && !c.stale(now_ms))
                .count();
        }
        s
    }

    /// Runs `f` on the caller's slot, creating it when `create` (else only if present).
    fn with_caller<R>(
        &self,
        t: &Tables,
        key: u64,
        now_ms: u64,
        create: Option<u64>,
        f: impl FnOnce(&mut CallerSlot) -> R,
    ) -> Option<R> {
        let key = nonzero(key);
        let mut set = t.caller_set(key);
        let i = match set.find(key) {
            Some(i) => i,
            None => {
                let window_ms = create?;
                let i = match set.find(0) {
                    Some(free) => free,
                    None => {
                        self.caller_evictions.fetch_add(1, Ordering::Relaxed);
                        (0..WAYS).min_by_key(|&i| set.slots[i].rank(now_ms))?
                    }
                };
                set.keys[i] = key;
                let window_ms = window_ms.max(1);
                set.slots[i] = CallerSlot {
                    start_ms: aligned(now_ms, window_ms),
                    last_ms: now_ms,
                    window_ms,
                    ..CallerSlot::default()
                };
                i
            }
        };
        Some(f(&mut set.slots[i]))
    }
}

impl LocalTracker {
    /// Puts call `c` in its slot. False when the call is one already open: a second
    /// branch of it (the same transaction), or the caller's retry after a 401/407 (under
    /// [`CallStart::retry`] since the challenge). A call whose key has an outcome starts
    /// a new call in that slot.
    fn start_call(&self, t: &Tables, c: &CallStart, callee_bit: u8) -> bool {
        let call = nonzero(c.call);
        let open = |s: &CallSlot| s.answer_ms == 0 && s.caller == c.caller;
        {
            let set = t.call_set(call);
            if set.find(call).is_some_and(|i| open(&set.slots[i])) {
                return false;
            }
        }
        if let Some(s) = (c.retry != 0)
            .then(|| self.take_call(t, nonzero(c.retry), open))
            .flatten()
        {
            self.put_call(t, call, s, c.now_ms);
            return false;
        }
        self.put_call(
            t,
            call,
            CallSlot {
                caller: c.caller,
                invite_ms: c.now_ms,
                ring_once_ds: (c.ring_once_ms / 100).min(u16::MAX as u32) as u16,
                callee_bit,
                settle_s: (c.settle_ms / 1000).min(u8::MAX as u32) as u8,
                short_call_ms: c.short_call_ms,
                trunk: c.trunk,
                ..CallSlot::default()
            },
            c.now_ms,
        );
        true
    }

    /// Writes `slot` under `key`: over the call of that key, else in a free slot of its
    /// set, else over a stale call of the set ([`CallSlot::stale`]), else its oldest.
    fn put_call(&self, t: &Tables, key: u64, slot: CallSlot, now_ms: u64) {
        let mut set = t.call_set(key);
        // A stale call goes first, then the oldest.
        let i = set.find(key).or_else(|| set.find(0)).unwrap_or_else(|| {
            self.call_evictions.fetch_add(1, Ordering::Relaxed);
            (0..WAYS)
                .min_by_key(|&i| (!set.slots[i].stale(now_ms), set.slots[i].invite_ms))
                .unwrap_or(0)
        });
        set.keys[i] = key;
        set.slots[i] = slot;
    }

    /// Takes the call under `key` out of the table when `keep` holds for it.
    fn take_call(
        &self,
        t: &Tables,
        key: u64,
        keep: impl Fn(&CallSlot) -> bool,
    ) -> Option<CallSlot> {
        let mut set = t.call_set(key);
        let i = set.find(key).filter(|&i| keep(&set.slots[i]))?;
        set.keys[i] = 0;
        Some(set.slots[i])
    }
}

impl BehaviourTracker for LocalTracker {
    fn on_call(&self, c: &CallStart) -> Features {
        let t = self.tables();
        // A retransmitted INVITE, or a call already open: its features, counted once.
        // The callee's bit under this tracker's key, for the caller's bitmaps now and the
        // call's outcome later.
        let bit = callee_bit(c.callee_hash ^ self.key);
        if c.repeat || !self.start_call(t, c, bit) {
            return self
                .with_caller(t, c.caller, c.now_ms, Some(c.window_ms), |s| {
                    let left = s.roll(c.now_ms);
                    s.features(left, c.now_ms)
                })
                .unwrap_or_default();
        }
        self.with_caller(t, c.caller, c.now_ms, Some(c.window_ms), |s| {
            let w = c.window_ms.max(1);
            if s.window_ms != w {
                s.rewindow(c.now_ms, w);
            }
            let left = s.roll(c.now_ms);
            s.last_ms = c.now_ms;
            s.attempts.add();
            let bit = 1u128 << bit;
            // A callee already called in the window is no step of a sweep: going back
            // and forth between a few numbers close together is not (QA 99, QA 100).
            let new = (s.callees[0] | s.callees[1]) & bit == 0;
            s.callees[0] |= bit;
            if let Some(v) = c.callee_seq {
                let step = v.abs_diff(s.last_callee);
                if s.last_callee != 0 && new && (1..=SEQ_STEP).contains(&step) {
                    s.sequential.add();
                }
                s.last_callee = v;
            }
            s.features(left, c.now_ms)
        })
        .unwrap_or_default()
    }

    fn watch(&self, caller: u64, rules: RuleSet, until_ms: u64) {
        // No tables yet: no caller to watch.
        let Some(t) = self.tables.get() else { return };
        self.with_caller(t, caller, 0, None, |s| {
            if s.watch_until_ms < until_ms {
                s.watch_until_ms = until_ms;
            }
            s.watched.0 |= rules.0;
        });
    }

    fn admit(&self, trunk: u64, call: u64, limit: u32, now_ms: u64) -> bool {
        self.live.admit(trunk, nonzero(call), limit, now_ms)
    }

    fn calls_up(&self, trunk: u64, now_ms: u64) -> u32 {
        self.live.up_now(trunk, now_ms)
    }

    fn calls_elsewhere(&self, trunk: u64) -> u32 {
        self.live.elsewhere(trunk)
    }

    fn ends_shared(&self) -> (u64, u64) {
        self.live.ends_shared()
    }

    fn next_hop_down(&self, trunks: &[u64], since_ms: u64) {
        self.live.next_hop_down(trunks, since_ms);
    }

    fn forget(&self, call: u64) {
        let call = nonzero(call);
        self.live.forget(call);
        let Some(t) = self.tables.get() else { return };
        let mut set = t.call_set(call);
        if let Some(i) = set.find(call).filter(|&i| set.slots[i].answer_ms == 0) {
            set.keys[i] = 0;
        }
    }

    fn on_event(&self, r: CallRef, ev: Event, now_ms: u64) -> Option<(TrunkTag, Seen)> {
        let call = nonzero(r.call);
        self.live.on_event(CallRef { call, ..r }, ev, now_ms);
        // No tables yet: no call known.
        let t = self.tables.get()?;
        // Where the call goes on being found: under its dialog once answered, under its
        // retry key once challenged.
        let mut move_to = None;
        let (slot, seen) = {
            let mut set = t.call_set(call);
            let i = set.find(call)?;
            let s = &mut set.slots[i];
            let seen = match ev {
                Event::Ringing => {
                    if s.ring_ms == 0 || s.ring_ms & BY_PROGRESS != 0 {
                        s.ring_ms = now_ms.max(1);
                    }
                    None
                }
                Event::Progress => {
                    if s.ring_ms == 0 {
                        s.ring_ms = now_ms.max(1) | BY_PROGRESS;
                    }
                    None
                }
                Event::Answered if s.answer_ms == 0 => {
                    s.answer_ms = now_ms.max(1);
                    move_to = Some(r.dialog);
                    Some(Seen::Answered)
                }
                Event::Challenged if s.answer_ms == 0 => {
                    move_to = Some(r.retry);
                    None
                }
                Event::Cancel if s.answer_ms == 0 => {
                    if s.cancel_at == 0 {
                        let after = now_ms.saturating_sub(s.invite_ms).min(u32::MAX as u64 - 1);
                        s.cancel_at = after as u32 + 1;
                    }
                    None
                }
                // The answer to a cancelled INVITE: 487, or another failure that crossed
                // the CANCEL. A 487 whose CANCEL went another way ends it as it comes.
                Event::Cancelled | Event::Failed
                    if s.answer_ms == 0 && (ev == Event::Cancelled || s.cancel_at != 0) =>
                {
                    let given_up = match s.cancel_at {
                        0 => now_ms,
                        at => s.invite_ms + at as u64 - 1,
                    };
                    let quick = s.rang_at() != 0
                        && given_up.saturating_sub(s.rang_at()) <= s.ring_once_ds as u64 * 100;
                    Some(if quick {
                        Seen::RingOnce
                    } else {
                        Seen::Cancelled
                    })
                }
                Event::Failed if s.answer_ms == 0 => Some(Seen::Failed),
                Event::Bye if s.answer_ms != 0 => {
                    let short = now_ms.saturating_sub(s.answer_ms) <= s.short_call_ms as u64;
                    Some(if short { Seen::ShortCall } else { Seen::Ended })
                }
                _ => None,
            };
            let slot = *s;
            // Every outcome but an answer ends the call.
            let ended = seen.is_some_and(|x| x != Seen::Answered);
            if ended {
                // Its outcome is counted: the place is free, and later messages of the
                // call (a BYE sent again, the 487 after a CANCEL) find nothing to count
                // (QA 57: ended calls stayed, filled the table and were evicted by age
                // alongside long calls still up).
                set.keys[i] = 0;
            } else if let Some(to) = move_to.filter(|&k| k != 0 && k != call) {
                set.keys[i] = 0;
                drop(set);
                self.put_call(t, nonzero(to), slot, now_ms);
            }
            (slot, seen?)
        };
        self.with_caller(t, slot.caller, now_ms, None, |s| {
            s.roll(now_ms);
            // The caller's last event, calls' outcomes included ([`CallerSlot::rewindow`]).
            s.last_ms = s.last_ms.max(now_ms);
            // An outcome of a call that rang (or was answered): it reached its callee.
            if matches!(seen, Seen::Answered)
                || (slot.ring_ms != 0
                    && matches!(seen, Seen::RingOnce | Seen::Cancelled | Seen::Failed))
            {
                s.reached.add();
                s.reached_callees[0] |= half_bit(slot.callee_bit);
            }
            match seen {
                Seen::Answered => s.settle(&slot, now_ms, true),
                Seen::RingOnce => {
                    s.ring_once.add();
                    s.ring_once_callees[0] |= half_bit(slot.callee_bit);
                    s.settle(&slot, now_ms, false);
                }
                Seen::Cancelled | Seen::Failed => s.settle(&slot, now_ms, false),
                Seen::ShortCall => s.short_calls.add(),
                Seen::Ended => {}
            }
        });
        Some((slot.trunk, seen))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::RuleId;

    /// Tests key a call's retry apart from its transaction by this.
    const RETRY: u64 = 1 << 40;

    fn start(caller: u64, call: u64, callee: u64, now_ms: u64) -> CallStart {
        CallStart {
            caller,
            call,
            retry: call ^ RETRY,
            trunk: 3,
            callee_hash: crate::sip::lex::fnv1a(&[&callee.to_le_bytes()]),
            callee_seq: Some(callee),
            now_ms,
            window_ms: 60_000,
            ring_once_ms: 5_000,
            settle_ms: 0,
            short_call_ms: 10_000,
            repeat: false,
        }
    }

    /// The callers watched go to the next process and are watched there to the end of
    /// their time (QA 170); a line not as written is left out alone (QA 171).
    #[test]
    fn watched_callers_are_kept_across_a_restart() {
        let mut tripped = RuleSet::default();
        tripped.insert(RuleId::BehaviourAttempts);
        tripped.insert(RuleId::BehaviourRingOnce);
        let t = LocalTracker::new(1024, 1024);
        t.on_call(&start(7, 100, 5, 1_000));
        t.on_call(&start(8, 101, 5, 1_000));
        t.on_call(&start(9, 102, 5, 1_000));
        t.watch(7, tripped, 600_000);
        t.watch(9, tripped, 2_000);
        let (text, n) = t.save_watched(10_000, 10_000);
        assert_eq!(n, 1, "{text}");
        assert!(
            text.ends_with(" 60000 600000 behaviour-attempts,behaviour-ring-once\n"),
            "{text}"
        );
        let next = LocalTracker::new(1024, 1024);
        assert_eq!(
            next.restore_watched(&text, 20_000, 1_800_000),
            Ok((1, vec![]))
        );
        let f = next.on_call(&start(7, 200, 5, 30_000));
        assert_eq!((f.watched, f.watch_until_ms), (tripped, 600_000));
        assert!(next.on_call(&start(8, 201, 5, 30_000)).watched.is_empty());
        // Written in calendar time: a wall clock five hours on from the steady one
        // (stepped since the start) moves the watch's end with it, and the next start,
        // whose steady clock starts at the calendar, keeps it (QA 194 A1).
        let step = 5 * 3_600_000;
        let (moved, _) = t.save_watched(10_000, 10_000 + step);
        assert!(
            moved.ends_with(&format!(
                " 60000 {} behaviour-attempts,behaviour-ring-once\n",
                600_000 + step
            )),
            "{moved}"
        );
        assert_eq!(
            LocalTracker::new(1024, 1024).restore_watched(&moved, 20_000 + step, 1_800_000),
            Ok((1, vec![]))
        );
        // Its watch over by the next start: not kept.
        let later = LocalTracker::new(1024, 1024);
        assert_eq!(
            later.restore_watched(&text, 700_000, 1_800_000),
            Ok((0, vec![]))
        );
        // A rule this version does not know is left out; a line without a rule it
        // knows keeps nothing, and is named (QA 172).
        let odd = format!(
            "{WATCHED_FORM}\n5 60000 900000 behaviour-attempts,behaviour-new\n6 60000 900000 behaviour-new\n"
        );
        assert_eq!(
            later.restore_watched(&odd, 700_000, 1_800_000),
            Ok((1, vec![(3, "no behaviour rule this version knows")]))
        );
        // A line not as written is left out alone; the others are kept (QA 171).
        let r = LocalTracker::new(1024, 1024).restore_watched(
            &format!(
                "{WATCHED_FORM}\n5 60000 900000\n\n6 60000 x behaviour-attempts\n0 60000 900000 behaviour-attempts\n7 60000 900000 behaviour-attempts\n"
            ),
            700_000,
            1_800_000,
        );
        let (n, bad) = r.unwrap();
        assert_eq!(n, 1);
        assert_eq!(bad.iter().map(|b| b.0).collect::<Vec<_>>(), [2, 3, 4, 5]);
        // A watch longer than the policy's longest now ends that much from now.
        let t = LocalTracker::new(1024, 1024);
        let long = format!("{WATCHED_FORM}\n5 60000 99999999999 behaviour-attempts\n");
        assert_eq!(t.restore_watched(&long, 700_000, 60_000), Ok((1, vec![])));
        assert_eq!(
            t.on_call(&start(5, 300, 5, 710_000)).watch_until_ms,
            760_000
        );
        assert!(
            LocalTracker::new(1024, 1024)
                .restore_watched("not a watched file\n", 700_000, 1_800_000)
                .is_err()
        );
    }

    #[test]
    fn attempts_slide_out_of_the_window() {
        let t = LocalTracker::new(1024, 1024);
        for i in 0..10 {
            t.on_call(&start(7, 100 + i, 5, 1_000 + i * 1000));
        }
        let f = t.on_call(&start(7, 200, 5, 20_000));
        assert_eq!(f.attempts, 11);
        assert_eq!(f.callees, 1);
        // 90 s on: the first bucket (1..61 s) is half inside the window: 11 / 2 = 5,
        // plus this one.
        let f = t.on_call(&start(7, 201, 5, 91_000));
        assert_eq!(f.attempts, 6);
        // Three windows later nothing is left.
        let f = t.on_call(&start(7, 202, 5, 400_000));
        assert_eq!(f.attempts, 1);
    }

    /// Buckets are on the clock: a call long out of the window changes nothing, and a
    /// tracker that saw only the recent calls (a capture that starts mid-way) counts as
    /// one that saw them all (QA 53: the first call set where the buckets started).
    #[test]
    fn windows_are_on_the_clock() {
        let at = |t: &LocalTracker, call: u64, now_ms: u64| {
            t.on_call(&CallStart {
                window_ms: 10_000,
                ..start(7, call, 5, now_ms)
            })
        };
        let base = 1_796_000_003_700;
        let (all, late) = (LocalTracker::new(1024, 1024), LocalTracker::new(1024, 1024));
        at(&all, 1, base);
        for (i, s) in [26_000, 27_000, 28_000, 29_000, 30_500]
            .into_iter()
            .enumerate()
        {
            let (a, b) = (
                at(&all, 10 + i as u64, base + s),
                at(&late, 10 + i as u64, base + s),
            );
            assert_eq!(a.attempts, b.attempts, "call at +{s} ms");
        }
        // 30.5 s on from ...03,700 is ...34,200: 4.2 s into the bucket that began at
        // ...30,000 (four calls, and this one), whose predecessor (one call, at
        // ...29,700) is 58% inside the window: counted 0.58, rounded to 1.
        assert_eq!(at(&late, 20, base + 30_500).attempts, 6);
    }

    /// A reload that changes the window moves the counts into buckets of the new size
    /// (QA 55: lengthened from 10 s to 60 s, five calls a moment before counted as a
    /// part of a bucket gone by).
    #[test]
    fn a_new_window_keeps_the_calls_it_covers() {
        let at = |t: &LocalTracker, call: u64, now_ms: u64, window_ms: u64| {
            t.on_call(&CallStart {
                window_ms,
                ..start(7, call, 5, now_ms)
            })
        };
        let t = LocalTracker::new(1024, 1024);
        let base = 1_796_000_040_000; // on a minute
        for (i, s) in [1, 2, 3, 4, 5, 11].into_iter().enumerate() {
            at(&t, 100 + i as u64, base + s * 1000, 10_000);
        }
        assert_eq!(at(&t, 10, base + 16_000, 60_000).attempts, 7);
        assert_eq!(at(&t, 11, base + 18_000, 60_000).attempts, 8);
        // Shortened again at 25 s: the 8 calls of the minute so far, the last at 18 s,
        // go to the new previous bucket (10-20 s), half of which is still inside the
        // window: 1 + 8 / 2. Never less than were in the window (3: 16, 18 and 25 s).
        assert_eq!(at(&t, 12, base + 25_000, 10_000).attempts, 5);
        // Shortened in the middle of a burst (QA 58): five calls at 50-54 s of a
        // 60-s bucket, then 10 s: all five are in the new window, as they were.
        let t = LocalTracker::new(1024, 1024);
        for s in 50..55 {
            at(&t, 200 + s, base + s * 1000, 60_000);
        }
        assert_eq!(at(&t, 300, base + 56_000, 10_000).attempts, 6);
        // Five calls at the minute's start, shortened at 55 s: none is in the window.
        let t = LocalTracker::new(1024, 1024);
        for s in 1..6 {
            at(&t, 400 + s, base + s * 1000, 60_000);
        }
        assert_eq!(at(&t, 500, base + 55_000, 10_000).attempts, 1);
    }

    #[test]
    fn distinct_and_sequential_callees() {
        let t = LocalTracker::new(1024, 1024);
        let mut f = Features::default();
        for i in 0..40u64 {
            f = t.on_call(&start(9, i + 1, 138_0000_0000 + i, 1000 + i));
        }
        assert_eq!(f.attempts, 40);
        assert!((33..=40).contains(&f.callees), "{f:?}");
        // 39 steps, less the callees whose bit an earlier callee had taken (five of
        // 40 in 128 bits): those read as called before.
        assert_eq!(f.sequential, 34);
        // Same callee over and over: one distinct, nothing sequential.
        let mut g = Features::default();
        for i in 0..40u64 {
            g = t.on_call(&start(10, 1000 + i, 42, 1000 + i));
        }
        assert_eq!((g.callees, g.sequential), (1, 0));
        // Downwards counts as upwards.
        let mut h = Features::default();
        for i in 0..12u64 {
            h = t.on_call(&start(11, 2000 + i, 138_0000_0000 - 3 * i, 1000 + i));
        }
        // (11 steps, one callee reading as called before.)
        assert_eq!(h.sequential, 10);
        // Back and forth between two numbers a few apart: one step, not one a call.
        let mut k = Features::default();
        for i in 0..12u64 {
            k = t.on_call(&start(12, 3000 + i, 138_0000_0000 + 3 * (i % 2), 1000 + i));
        }
        assert_eq!((k.callees, k.sequential), (2, 1));
    }

    /// A burst, then the same share answered at a trickle: the ratio's two counts cover
    /// the same calls, so it never reads lower than the caller's (QA 101: with answers
    /// counted at once, the burst's answers left the window before its failures, and
    /// 20 % answered read 9 %).
    #[test]
    fn a_bursts_ratio_is_read_over_the_same_calls() {
        let t = LocalTracker::new(1024, 1024);
        let base = 1_796_000_040_000;
        let mut n = 0;
        let mut place = |at: u64| {
            n += 1;
            let f = t.on_call(&CallStart {
                settle_ms: 30_000,
                ..start(6, n, n, base + at)
            });
            if n % 5 == 0 {
                t.on_event(CallRef::call(n), Event::Answered, base + at + 5_000);
            } else {
                t.on_event(CallRef::call(n), Event::Failed, base + at + 500);
            }
            f
        };
        // The burst near a minute's end: its answers fall in one bucket, its failures
        // (30 s on) in the next.
        for i in 0..100 {
            place(45_000 + i * 100);
        }
        let mut lowest = 100;
        for i in 0..40 {
            let f = place(57_000 + i * 5_000);
            if f.settled >= 20 {
                lowest = lowest.min(f.asr_percent());
            }
        }
        assert!((15..=25).contains(&lowest), "{lowest}");
    }

    /// Victims picked so that their bits coincide under one key count as one callee
    /// there, and as themselves under another (QA 100: under the fixed hash anyone with
    /// the binary could pick them).
    #[test]
    fn callees_are_hashed_under_the_trackers_key() {
        let hash = |callee: u64| crate::sip::lex::fnv1a(&[&callee.to_le_bytes()]);
        let bit = callee_bit(hash(13_912_345_678));
        let victims: Vec<u64> = (13_912_345_679..)
            .filter(|&v| callee_bit(hash(v)) == bit)
            .take(8)
            .collect();
        let count = |t: LocalTracker| {
            let mut f = Features::default();
            for (i, &v) in victims.iter().enumerate() {
                f = t.on_call(&start(5, i as u64 + 1, v, 1000 + i as u64));
            }
            f.callees
        };
        assert_eq!(count(LocalTracker::new(64, 64)), 1);
        assert!(count(LocalTracker::new(64, 64).keyed(0x5eed_1234_abcd_0001)) >= 7);
    }

    /// A failure sooner than the settle time after its INVITE counts in the answer
    /// ratio at that time, and so does an answer: a campaign whose failures come back at
    /// once and whose answers after 20 s is read as it is (QA 98, QA 99).
    #[test]
    fn fast_failures_are_held_back_for_the_settle_time() {
        let t = LocalTracker::new(1024, 1024);
        let base = 1_796_000_040_000; // on a minute
        let call = |n: u64, at: u64| {
            t.on_call(&CallStart {
                settle_ms: 30_000,
                ..start(4, n, n, base + at)
            })
        };
        // Two calls busy at once, one answered after 20 s.
        call(1, 0);
        t.on_event(CallRef::call(1), Event::Failed, base + 500);
        call(2, 1_000);
        t.on_event(CallRef::call(2), Event::Failed, base + 1_500);
        call(3, 2_000);
        t.on_event(CallRef::call(3), Event::Answered, base + 22_000);
        let f = call(4, 25_000);
        assert_eq!((f.answered, f.settled), (0, 0));
        // The outcomes count from 30 s after their INVITEs (in the 10 s slot that
        // begins then or next).
        assert_eq!(call(5, 30_000).settled, 1);
        assert_eq!(call(6, 39_000).settled, 1);
        let f = call(10, 40_000);
        assert_eq!((f.answered, f.settled), (1, 3));
        // A failure later than the settle time counts at once.
        t.on_event(CallRef::call(4), Event::Failed, base + 56_000);
        assert_eq!(call(7, 57_000).settled, 4);
        // Held back across a long silence: counted in the bucket its time falls in
        // (here gone from the window), not now.
        call(8, 58_000);
        t.on_event(CallRef::call(8), Event::Failed, base + 58_100);
        let f = call(9, 400_000);
        assert_eq!((f.attempts, f.settled), (1, 0));
    }

    /// Ring-once calls are counted with their callees, against the callees calls
    /// reached: the rule weighs a campaign's many victims, not one number rung again,
    /// nor calls to one accomplice between them (QA 99).
    #[test]
    fn ring_once_callees_and_calls_that_reached_a_callee() {
        let t = LocalTracker::new(1024, 1024);
        let ring_once = |call: u64, callee: u64, at: u64| {
            t.on_call(&start(2, call, callee, at));
            t.on_event(CallRef::call(call), Event::Ringing, at + 100);
            t.on_event(CallRef::call(call), Event::Cancel, at + 1_100);
            t.on_event(CallRef::call(call), Event::Cancelled, at + 1_150)
        };
        for i in 0..4 {
            assert_eq!(
                ring_once(100 + i, 5, i * 3_000).map(|s| s.1),
                Some(Seen::RingOnce)
            );
        }
        // Failed before ringing: an outcome that reached no one.
        t.on_call(&start(2, 200, 6, 13_000));
        t.on_event(CallRef::call(200), Event::Failed, 13_300);
        let f = t.on_call(&start(2, 201, 6, 14_000));
        assert_eq!(
            (
                f.ring_once,
                f.ring_once_callees,
                f.reached_callees,
                f.settled
            ),
            (4, 1, 1, 5)
        );
        assert_eq!(f.ring_once_percent(), 100);
        // Three other callees, then two answered calls.
        for i in 0..3 {
            ring_once(300 + i, 10 + i, 15_000 + i * 1_000);
        }
        for i in 0..2 {
            t.on_call(&start(2, 400 + i, 20 + i, 20_000));
            t.on_event(CallRef::call(400 + i), Event::Answered, 21_000);
        }
        let f = t.on_call(&start(2, 500, 30, 22_000));
        // Six callees reached: an estimate (two of these six share a bit of the 64).
        assert_eq!(
            (f.ring_once, f.ring_once_callees, f.reached_callees),
            (7, 4, 5)
        );
        assert_eq!(f.ring_once_percent(), 80);
        // Ten calls to one number, rung and declined: one callee more.
        for i in 0..10 {
            t.on_call(&start(2, 600 + i, 40, 23_000 + i * 100));
            t.on_event(CallRef::call(600 + i), Event::Ringing, 23_050 + i * 100);
            t.on_event(CallRef::call(600 + i), Event::Failed, 23_080 + i * 100);
        }
        let f = t.on_call(&start(2, 700, 30, 25_000));
        assert_eq!((f.ring_once_callees, f.reached_callees), (4, 6));
        assert_eq!(f.ring_once_percent(), 66);
        // Two windows on, nothing is left.
        let f = t.on_call(&start(2, 501, 30, 130_000));
        assert_eq!(
            (f.ring_once, f.ring_once_callees, f.reached_callees),
            (0, 0, 0)
        );
    }

    /// The phone rings at the 180, not at a 183 before it (IMS sends 183 at once, QA
    /// 159: a call hung up 1 s after a 180 that came 4.4 s after its 183 was not
    /// ring-once); a 183 with no 180 after it is the ringing.
    #[test]
    fn ringing_is_timed_from_the_180_after_a_183() {
        let t = LocalTracker::new(1024, 1024);
        for call in [21, 22, 23] {
            t.on_call(&start(1, call, call, 0));
        }
        t.on_event(CallRef::call(21), Event::Progress, 100);
        t.on_event(CallRef::call(21), Event::Ringing, 4_500);
        t.on_event(CallRef::call(21), Event::Progress, 4_600);
        t.on_event(CallRef::call(21), Event::Cancel, 5_500);
        assert_eq!(
            t.on_event(CallRef::call(21), Event::Cancelled, 5_600),
            Some((3, Seen::RingOnce))
        );
        // A 183 alone: ringing from it.
        t.on_event(CallRef::call(22), Event::Progress, 100);
        t.on_event(CallRef::call(22), Event::Cancel, 1_100);
        assert_eq!(
            t.on_event(CallRef::call(22), Event::Cancelled, 1_200),
            Some((3, Seen::RingOnce))
        );
        // A 183, then a long ring from the 180: no ring-once.
        t.on_event(CallRef::call(23), Event::Progress, 100);
        t.on_event(CallRef::call(23), Event::Ringing, 200);
        t.on_event(CallRef::call(23), Event::Cancel, 20_000);
        assert_eq!(
            t.on_event(CallRef::call(23), Event::Cancelled, 20_100),
            Some((3, Seen::Cancelled))
        );
    }

    #[test]
    fn answered_ring_once_and_short_calls() {
        let t = LocalTracker::new(1024, 1024);
        t.on_call(&start(1, 11, 5, 0));
        t.on_call(&start(1, 12, 6, 0));
        t.on_call(&start(1, 13, 7, 0));
        t.on_call(&start(1, 14, 8, 0));
        // 11: rings, cancelled 2 s later (ring-once), counted at the 487 (which came
        // well after: the CANCEL's time counts); a 487 sent again is the same end.
        assert_eq!(t.on_event(CallRef::call(11), Event::Ringing, 1_000), None);
        assert_eq!(t.on_event(CallRef::call(11), Event::Cancel, 3_000), None);
        assert_eq!(t.on_event(CallRef::call(11), Event::Cancel, 3_500), None);
        assert_eq!(
            t.on_event(CallRef::call(11), Event::Cancelled, 9_000),
            Some((3, Seen::RingOnce))
        );
        assert_eq!(t.on_event(CallRef::call(11), Event::Cancelled, 9_010), None);
        // 12: rings, cancelled after 20 s: an ordinary unanswered call.
        t.on_event(CallRef::call(12), Event::Ringing, 1_000);
        assert_eq!(
            t.on_event(CallRef::call(12), Event::Cancelled, 21_000),
            Some((3, Seen::Cancelled))
        );
        // 13: answered, hung up after 3 s; 14: answered, long call.
        assert_eq!(
            t.on_event(CallRef::call(13), Event::Answered, 2_000),
            Some((3, Seen::Answered))
        );
        assert_eq!(t.on_event(CallRef::call(13), Event::Answered, 2_100), None);
        assert_eq!(
            t.on_event(CallRef::call(13), Event::Bye, 5_000),
            Some((3, Seen::ShortCall))
        );
        t.on_event(CallRef::call(14), Event::Answered, 2_000);
        assert_eq!(
            t.on_event(CallRef::call(14), Event::Bye, 50_000),
            Some((3, Seen::Ended))
        );
        // Unknown call: nothing.
        assert_eq!(t.on_event(CallRef::call(99), Event::Answered, 1), None);
        let f = t.on_call(&start(1, 15, 9, 50_000));
        assert_eq!(
            (
                f.attempts,
                f.answered,
                f.settled,
                f.ring_once,
                f.short_calls,
                f.reached_callees,
                f.ring_once_callees
            ),
            (5, 2, 4, 1, 1, 4, 1)
        );
        // Two of the four calls with an outcome; the fifth, being judged, is none yet.
        assert_eq!(f.asr_percent(), 50);
        // Ended calls take no place (QA 57: they stayed until evicted, and the table
        // filled): the fifth, up, alone; a BYE sent again counts nothing.
        assert_eq!(t.stats(50_000).calls, 1);
        assert_eq!(t.on_event(CallRef::call(14), Event::Bye, 50_100), None);
        // A call refused at the gateway gives its place back, counted as an attempt
        // only (QA 59: refused calls filled the table); one answered is not forgotten.
        t.forget(15);
        assert_eq!(t.stats(50_000).calls, 0);
        let f = t.on_call(&start(1, 16, 9, 50_200));
        assert_eq!((f.attempts, f.settled), (6, 4));
        t.on_event(CallRef::call(16), Event::Answered, 51_000);
        t.forget(16);
        assert_eq!(t.stats(51_000).calls, 1);
    }

    /// A CANCEL that crosses the callee's answer: the call is answered, not rung once
    /// (it was counted ring-once at the CANCEL); a failure that crosses a quick CANCEL
    /// is one.
    #[test]
    fn a_cancel_crossing_the_answer_is_no_ring_once() {
        let t = LocalTracker::new(1024, 1024);
        t.on_call(&start(1, 21, 5, 0));
        t.on_event(CallRef::call(21), Event::Ringing, 500);
        assert_eq!(t.on_event(CallRef::call(21), Event::Cancel, 1_500), None);
        assert_eq!(
            t.on_event(CallRef::call(21), Event::Answered, 1_510),
            Some((3, Seen::Answered))
        );
        assert_eq!(
            t.on_event(CallRef::call(21), Event::Bye, 9_000),
            Some((3, Seen::ShortCall))
        );
        // 22: rings, cancelled at once, but a 486 crossed the CANCEL.
        t.on_call(&start(1, 22, 6, 10_000));
        t.on_event(CallRef::call(22), Event::Ringing, 10_500);
        t.on_event(CallRef::call(22), Event::Cancel, 11_000);
        assert_eq!(
            t.on_event(CallRef::call(22), Event::Failed, 11_020),
            Some((3, Seen::RingOnce))
        );
        // 23: cancelled before it rang: an ordinary cancel.
        t.on_call(&start(1, 23, 7, 20_000));
        t.on_event(CallRef::call(23), Event::Cancel, 20_100);
        assert_eq!(
            t.on_event(CallRef::call(23), Event::Cancelled, 20_120),
            Some((3, Seen::Cancelled))
        );
        let f = t.on_call(&start(1, 24, 8, 20_200));
        assert_eq!(
            (f.answered, f.ring_once, f.settled, f.short_calls),
            (1, 1, 3, 1)
        );
        assert_eq!(t.stats(20_200).calls, 1);
    }

    /// A call whose end is never seen (challenged by the core and not retried, its
    /// final answer lost) is not counted as up past the ring deadline, and a new call
    /// takes its place before that of an answered call still up (QA 64).
    #[test]
    fn calls_never_ended_go_stale() {
        use crate::behaviour::live::{ANSWERED_MS, RING_MS};
        // One set of WAYS slots: every call competes for it. Answered calls first (the
        // oldest), then one the core challenges and that is never retried.
        let t = LocalTracker::new(1024, WAYS);
        for k in 2..=WAYS as u64 {
            t.on_call(&start(1, k, 5, k));
            t.on_event(
                CallRef {
                    call: k,
                    dialog: 100 + k,
                    retry: 0,
                    limited: 0,
                },
                Event::Answered,
                500,
            );
        }
        t.on_call(&start(1, 1, 5, 1_000));
        t.on_event(
            CallRef {
                call: 1,
                dialog: 0,
                retry: RETRY + 1,
                limited: 0,
            },
            Event::Challenged,
            1_100,
        );
        assert_eq!(t.stats(1_000 + RING_MS).calls, WAYS);
        let now = 1_000 + RING_MS + 10_000;
        assert_eq!(t.stats(now).calls, WAYS - 1, "past the ring deadline");
        // A new call overwrites the stale one, not the oldest answered one, whose BYE
        // still ends it.
        t.on_call(&start(1, 50, 6, now));
        assert_eq!(t.stats(now).calls, WAYS);
        assert_eq!(
            t.on_event(CallRef::call(102), Event::Bye, now + 1),
            Some((3, Seen::Ended))
        );
        // An answered call whose BYE never came is stale after the answered deadline.
        assert_eq!(t.stats(500 + ANSWERED_MS + 1).calls, 0);
    }

    #[test]
    fn watch_expires() {
        let t = LocalTracker::new(1024, 1024);
        t.on_call(&start(4, 1, 5, 0));
        let mut rs = RuleSet::default();
        rs.insert(RuleId::BehaviourRingOnce);
        t.watch(4, rs, 600_000);
        let f = t.on_call(&start(4, 2, 5, 300_000));
        assert!(f.watched.contains(RuleId::BehaviourRingOnce));
        assert_eq!(f.watch_until_ms, 600_000);
        let f = t.on_call(&start(4, 3, 5, 600_001));
        assert!(f.watched.is_empty());
        // Watching a caller the table does not hold creates nothing.
        t.watch(77, rs, 1);
        assert_eq!(t.stats(0).callers, 1);
    }

    #[test]
    fn a_flood_of_invented_callers_stays_in_the_table_and_spares_repeat_callers() {
        let t = LocalTracker::new(4096, 4096);
        let cap = t.caller_capacity();
        // 64 real callers with history, one of them watched.
        for c in 1..=64u64 {
            for k in 0..5 {
                t.on_call(&start(c * 7919, c * 100 + k, k, 1_000));
            }
        }
        let mut rs = RuleSet::default();
        rs.insert(RuleId::BehaviourAttempts);
        t.watch(7919, rs, 10_000_000);
        for i in 0..200_000u64 {
            t.on_call(&start(
                crate::sip::lex::fnv1a(&[&i.to_le_bytes()]),
                1_000_000 + i,
                i,
                2_000 + i / 100,
            ));
        }
        let s = t.stats(3_000);
        assert!(s.callers <= cap, "{s:?}");
        assert!(s.caller_evictions > 190_000, "{s:?}");
        // The repeat callers are still there with their history.
        let f = t.on_call(&start(7919, 9, 5, 3_000));
        assert_eq!(f.attempts, 6);
        assert!(f.watched.contains(RuleId::BehaviourAttempts));
        let kept = (2..=64u64)
            .filter(|c| t.on_call(&start(c * 7919, 9, 5, 3_000)).attempts == 6)
            .count();
        assert!(kept >= 60, "{kept} of 63 kept");
    }

    #[test]
    fn two_invites_of_one_call_id_and_tag_are_two_calls() {
        // QA 48: the same Call-ID and From tag with a new CSeq while the first call is
        // up: two dialogs to a permissive core, two calls here.
        let t = LocalTracker::new(1024, 1024);
        let mut first = start(5, 101, 7, 0);
        let mut second = start(5, 102, 8, 10);
        first.retry = 77;
        second.retry = 77;
        assert_eq!(t.on_call(&first).attempts, 1);
        assert_eq!(t.on_call(&second).attempts, 2);
        let answer = |call, dialog| CallRef {
            call,
            dialog,
            retry: 77,
            limited: 0,
        };
        assert_eq!(
            t.on_event(answer(101, 1001), Event::Answered, 1_000),
            Some((3, Seen::Answered))
        );
        assert_eq!(
            t.on_event(answer(102, 1002), Event::Answered, 1_000),
            Some((3, Seen::Answered))
        );
        // Each BYE names its dialog; the INVITE's key no longer finds an answered call.
        assert_eq!(t.on_event(CallRef::call(101), Event::Bye, 30_000), None);
        assert_eq!(
            t.on_event(CallRef::call(1001), Event::Bye, 30_000),
            Some((3, Seen::Ended))
        );
        assert_eq!(
            t.on_event(CallRef::call(1002), Event::Bye, 2_000),
            Some((3, Seen::ShortCall))
        );
        let f = t.on_call(&start(5, 103, 9, 40_000));
        assert_eq!((f.attempts, f.answered, f.short_calls), (3, 2, 1));
    }

    #[test]
    fn a_retry_after_a_challenge_is_the_same_call() {
        let t = LocalTracker::new(1024, 1024);
        let mut first = start(6, 201, 7, 0);
        first.retry = 88;
        t.on_call(&first);
        let challenge = CallRef {
            call: 201,
            dialog: 0,
            retry: 88,
            limited: 0,
        };
        assert_eq!(t.on_event(challenge, Event::Challenged, 100), None);
        // The retry: a new CSeq, the same Call-ID and tag.
        let mut retry = start(6, 202, 7, 200);
        retry.retry = 88;
        assert_eq!(t.on_call(&retry).attempts, 1);
        let answer = CallRef {
            call: 202,
            dialog: 2002,
            retry: 88,
            limited: 0,
        };
        assert_eq!(
            t.on_event(answer, Event::Answered, 1_000),
            Some((3, Seen::Answered))
        );
        // Answered, the call waits under its dialog: another INVITE of the same Call-ID
        // and tag is a new call, not this one's retry.
        let mut again = start(6, 203, 7, 2_000);
        again.retry = 88;
        let f = t.on_call(&again);
        assert_eq!((f.attempts, f.answered, f.settled), (2, 1, 1));
        // Another caller's INVITE under a challenged call's key starts its own call.
        t.on_event(
            CallRef {
                call: 203,
                dialog: 0,
                retry: 88,
                limited: 0,
            },
            Event::Challenged,
            2_100,
        );
        let mut stranger = start(9, 204, 7, 2_200);
        stranger.retry = 88;
        assert_eq!(t.on_call(&stranger).attempts, 1);
        let mut retry = start(6, 205, 7, 2_300);
        retry.retry = 88;
        assert_eq!(t.on_call(&retry).attempts, 2);
    }
}
