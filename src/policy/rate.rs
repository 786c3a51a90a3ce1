//! Call-rate counting behind a small interface, so that the decision core stays pure
//! (it is handed a counter and the time) and the counting can move to a shared store
//! (Redis, across gateways) without touching the rules.

use dashmap::DashMap;
use std::sync::atomic::{AtomicU64, Ordering};

/// Counts events per key in a sliding window.
pub trait RateCounter: Send + Sync {
    /// Records one event for `key` at `now_ms` and returns how many events the window
    /// of `window_ms` ending now holds, this one included.
    fn hit(&self, key: u64, now_ms: u64, window_ms: u64) -> u32;

    /// How many events the window of `window_ms` ending now holds for `key`, without
    /// recording one (a rule that counts failures and judges every attempt).
    fn peek(&self, key: u64, now_ms: u64, window_ms: u64) -> u32;

    /// An allowance: whether the window of `window_ms` ending now holds fewer than
    /// `limit` events for `key`, without recording one. The caller records the event
    /// (`hit`) only for the attempts it lets through, so that refused attempts do not
    /// use the allowance up and a caller who keeps trying still gets `limit` a window
    /// (counting every attempt refuses a persistent caller for good). The look and the
    /// count are two steps: two calls of one key at the same instant on two workers may
    /// both pass (one over the limit, at most per worker).
    fn allows(&self, key: u64, now_ms: u64, window_ms: u64, limit: u32) -> bool {
        self.peek(key, now_ms, window_ms) < limit
    }

    /// The in-process memory of recent requests behind `recall`, `remember` and
    /// `claim` (the same for local and shared counts); `None`: no memory.
    fn recent(&self) -> Option<&Recent> {
        None
    }

    /// What [`RateCounter::remember`] stored for `key` (an INVITE transaction) and has
    /// not expired: `Some(passed)` for a retransmission. `None`: a new transaction, or
    /// one forgotten because the memory was full (counted again: the safe side).
    fn recall(&self, key: u64, now_ms: u64) -> Option<bool> {
        self.recent()?.recall(key, now_ms)
    }

    /// Remembers for `ttl_ms` whether a transaction passed the rate rules, so that its
    /// retransmissions are not counted as new calls.
    fn remember(&self, key: u64, now_ms: u64, ttl_ms: u64, passed: bool) {
        if let Some(r) = self.recent() {
            r.remember(key, now_ms, ttl_ms, passed);
        }
    }

    /// When `key` (an INVITE transaction) was first seen, if that was earlier and within
    /// `ttl_ms`: `Some` for its retransmissions; `None` for a first sighting, which is
    /// remembered. Without a memory, or when the memory is full, every sighting is the
    /// first (a retransmission then counts as a call again: the safe side).
    fn earlier_sight(&self, key: u64, now_ms: u64, ttl_ms: u64) -> Option<u64> {
        self.recent()?.earlier_sight(key, now_ms, ttl_ms)
    }

    /// A one-time token (a digest answer): the first `owner` (the INVITE transaction
    /// that used it) keeps it for `ttl_ms`. True for that owner while it may still
    /// retransmit ([`TRANSACTION_MS`]), so that its retransmissions pass again; false
    /// for any other request, and for the same request sent again later (a replay).
    /// Without a memory, every owner is the first.
    fn claim(&self, key: u64, owner: u64, now_ms: u64, ttl_ms: u64) -> bool {
        self.recent()
            .is_none_or(|r| r.claim(key, owner, now_ms, ttl_ms))
    }

    /// Remembers an established dialog (`key`: [`crate::decide::dialog_key`]) for
    /// `ttl_ms` from now ([`DIALOG_MS`]): its re-INVITEs are in-dialog requests, not
    /// new calls. (Also a call the core offered a trunk, for as long as it may ring, and
    /// an INVITE with a To-tag refused here, until its ACK.)
    fn note_dialog(&self, key: u64, now_ms: u64, ttl_ms: u64) {
        if let Some(r) = self.recent() {
            r.dialogs.put(key, 1, now_ms, ttl_ms);
        }
    }

    /// Forgets a dialog that ended.
    fn forget_dialog(&self, key: u64) {
        if let Some(r) = self.recent() {
            r.dialogs.remove(key);
        }
    }

    /// Whether a dialog was seen established and has not ended or expired. Without a
    /// memory, or when the memory was full, none is known: its re-INVITEs are judged as
    /// calls (the safe side).
    fn knows_dialog(&self, key: u64, now_ms: u64) -> bool {
        self.recent()
            .is_some_and(|r| r.dialogs.get(key, now_ms).is_some())
    }

    /// The counts are local only because the shared store cannot be reached: rules
    /// configured to fail closed then match.
    fn degraded(&self) -> bool {
        false
    }

    /// Housekeeping from a periodic tick: forget idle keys.
    fn housekeep(&self, _now_ms: u64) {}

    /// Keys held (a gauge).
    fn keys(&self) -> usize {
        0
    }

    /// Events of new keys a full table could not keep, since start.
    fn overflowed(&self) -> u64 {
        0
    }
}

/// A counter that never counts: for `explain` on a single message, and for policies
/// without rate rules.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoCounting;

impl RateCounter for NoCounting {
    fn hit(&self, _key: u64, _now_ms: u64, _window_ms: u64) -> u32 {
        1
    }
    fn peek(&self, _key: u64, _now_ms: u64, _window_ms: u64) -> u32 {
        0
    }
}

#[derive(Debug, Clone, Copy)]
struct Window {
    /// Start of the current fixed window.
    start_ms: u64,
    cur: u32,
    prev: u32,
}

/// How long an INVITE transaction is remembered: RFC 3261's Timer B (64 x T1), after
/// which its client gives up retransmitting.
pub const TRANSACTION_MS: u64 = 32_000;

/// How long an established dialog is remembered after its last 2xx to an INVITE (its
/// answer, or the answer to a re-INVITE or session refresh): longer than any session
/// timer's interval (RFC 4028 suggests 30 minutes), so that a call whose BYE passes
/// elsewhere is forgotten in the end.
pub const DIALOG_MS: u64 = 6 * 3_600_000;

/// Short-lived facts about single requests, kept for a while and bounded: the INVITE
/// transactions seen lately and whether they passed the rate rules, and which
/// transaction first used a digest answer. When full, expired entries are swept (at most
/// once a second); when still full, a new one is not kept (a transaction's
/// retransmissions then count again, an answer can be used again: what happens without
/// the table). Kept in the process even when the counts are shared: a UDP
/// retransmission comes back to the same gateway.
pub struct Remembered<V = u64> {
    /// key -> (expiry, value, when it was first kept)
    map: DashMap<u64, (u64, V, u64), ahash::RandomState>,
    capacity: usize,
    last_sweep_ms: AtomicU64,
    /// New keys not kept because the table was full, since start.
    overflowed: AtomicU64,
}

impl<V: Clone> Remembered<V> {
    pub fn new(capacity: usize) -> Remembered<V> {
        Remembered {
            map: DashMap::with_hasher(ahash::RandomState::new()),
            capacity: capacity.max(1),
            last_sweep_ms: AtomicU64::new(0),
            overflowed: AtomicU64::new(0),
        }
    }

    pub fn get(&self, key: u64, now_ms: u64) -> Option<V> {
        self.map
            .get(&key)
            .and_then(|e| (e.0 > now_ms).then(|| e.1.clone()))
    }

    /// Keeps `value` for `key` until `now_ms + ttl_ms`, replacing what was there.
    pub fn put(&self, key: u64, value: V, now_ms: u64, ttl_ms: u64) {
        if let Some(mut e) = self.map.get_mut(&key) {
            *e = (now_ms + ttl_ms, value, now_ms);
            return;
        }
        if self.room(now_ms) {
            self.map.insert(key, (now_ms + ttl_ms, value, now_ms));
        }
    }

    /// Room for one more entry, after a sweep if the table is full.
    fn room(&self, now_ms: u64) -> bool {
        if self.map.len() < self.capacity {
            return true;
        }
        if now_ms.saturating_sub(self.last_sweep_ms.load(Ordering::Relaxed)) >= 1000 {
            self.sweep(now_ms);
        }
        let room = self.map.len() < self.capacity;
        if !room {
            self.overflowed.fetch_add(1, Ordering::Relaxed);
        }
        room
    }

    pub fn remove(&self, key: u64) {
        self.map.remove(&key);
    }

    pub fn sweep(&self, now_ms: u64) {
        self.map.retain(|_, e| e.0 > now_ms);
        self.last_sweep_ms.store(now_ms, Ordering::Relaxed);
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

impl Remembered<u64> {
    /// `None` when `key` is not held (or has expired), and then holds it for `ttl_ms`
    /// from now; while it is held, when it was first kept. Not refreshed by later
    /// sightings: a transaction's lifetime runs from its first request. One entry lock.
    pub fn insert_new(&self, key: u64, now_ms: u64, ttl_ms: u64) -> Option<u64> {
        let fresh = (now_ms + ttl_ms, 1, now_ms);
        if let Some(mut e) = self.map.get_mut(&key) {
            if e.0 > now_ms {
                return Some(e.2);
            }
            *e = fresh;
            return None;
        }
        if self.room(now_ms) {
            // Two workers racing on one new key: the entry lock picks one first.
            let mut held = None;
            self.map
                .entry(key)
                .and_modify(|e| {
                    if e.0 <= now_ms {
                        *e = fresh;
                    } else {
                        held = Some(e.2);
                    }
                })
                .or_insert(fresh);
            return held;
        }
        None
    }

    /// The first `owner` of `key` keeps it until it expires (`ttl_ms`): true for that
    /// owner within `again_ms` of its first claim, false for any other, and for the
    /// owner later on. One entry lock: two workers racing for a key see one winner.
    pub fn claim(&self, key: u64, owner: u64, now_ms: u64, ttl_ms: u64, again_ms: u64) -> bool {
        let fresh = (now_ms + ttl_ms, owner, now_ms);
        let mine = |e: &(u64, u64, u64)| e.1 == owner && now_ms < e.2.saturating_add(again_ms);
        if let Some(e) = self.map.get(&key)
            && e.0 > now_ms
        {
            return mine(&e);
        }
        if !self.room(now_ms) {
            return true;
        }
        let mut e = self.map.entry(key).or_insert(fresh);
        if e.0 <= now_ms {
            *e = fresh;
        }
        mine(&e)
    }
}

/// The tables every rate counter keeps in the process (see [`Remembered`]).
pub struct Recent {
    txns: Remembered,
    answers: Remembered,
    /// Every INVITE transaction seen lately, rate rules or not: its retransmissions
    /// are not new calls.
    seen: Remembered,
    /// Dialogs seen established (a 2xx to an INVITE carried) and not yet ended (BYE):
    /// an INVITE within one of them is no new call.
    dialogs: Remembered,
    /// The From value a forwarded INVITE was given, by its Call-ID and From tag: the
    /// CANCEL and the caller's later requests get it too ([`crate::decide::kept_from`]);
    /// and the one it came with, which the answers to them go back with
    /// ([`crate::decide::callers_from`]).
    froms: Remembered<(u16, KeptFrom)>,
    /// When a From was last kept or its time extended (ms, 0: never): with none for
    /// longer than an entry lives, the table is empty and no later request looks.
    from_kept_ms: AtomicU64,
    /// When the core last asked a caller to retry a call (401, 407, 422...; ms, 0:
    /// never): on trunks without rate or behaviour rules, forwarded calls are
    /// remembered for their retries only within an hour of it
    /// ([`Recent::retries_asked`]).
    retry_asked_ms: AtomicU64,
}

/// What happened to a call whose From is kept ([`Recent::from_event`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FromEvent {
    /// A 180/183 to its INVITE.
    Ringing,
    /// A 2xx to its INVITE; `new_dialog`: one not known before (not a copy).
    Answered { new_dialog: bool },
    /// A final failure to its INVITE.
    Failed,
    /// The BYE of one of its dialogs.
    DialogEnded,
}

/// A call's From as it went on, and as its caller wrote it (empty when longer than
/// [`MAX_KEPT_FROM`]: its answers go back as the core sent them).
#[derive(Debug, Clone)]
pub struct KeptFrom {
    pub given: bytes::Bytes,
    pub original: bytes::Bytes,
}

/// How long a call may ring (its INVITE's Timer C, restarted by each 18x).
const RING_MS: u64 = crate::behaviour::live::RING_MS;

/// The longest From value kept for a call's later requests: longer ones are not kept
/// (and those requests go on with their From as written).
pub const MAX_KEPT_FROM: usize = 512;

impl Recent {
    pub fn new(capacity: usize) -> Recent {
        Recent {
            txns: Remembered::new(capacity),
            answers: Remembered::new(capacity),
            seen: Remembered::new(capacity),
            dialogs: Remembered::new(capacity),
            // Calls whose From was changed, and those of trunks that record the route
            // (their later requests pass here), at most MAX_KEPT_FROM bytes each.
            froms: Remembered::new(capacity),
            from_kept_ms: AtomicU64::new(0),
            retry_asked_ms: AtomicU64::new(0),
        }
    }
    /// Keeps the From value `value` of a call, and the one it came with (`original`),
    /// for as long as it may ring.
    pub fn keep_from(&self, key: u64, value: bytes::Bytes, original: &[u8], now_ms: u64) {
        if value.len() <= MAX_KEPT_FROM {
            let original = if original.len() <= MAX_KEPT_FROM {
                bytes::Bytes::copy_from_slice(original)
            } else {
                bytes::Bytes::new()
            };
            let kept = KeptFrom {
                given: value,
                original,
            };
            self.froms.put(key, (0, kept), now_ms, RING_MS);
            self.from_kept_ms
                .fetch_max(now_ms.max(1), Ordering::Relaxed);
        }
    }
    /// What happened to the call whose From is kept under `key`: it is kept while the
    /// call rings (each 18x starts the time again, as RFC 3261's Timer C), while any of
    /// its dialogs is up (a forked call has several: the BYE of one leaves the others
    /// theirs), then only while a last request may be sent again.
    pub fn from_event(&self, key: u64, ev: FromEvent, now_ms: u64) {
        let Some((dialogs, v)) = self.kept_from_entry(key, now_ms) else {
            return;
        };
        let (dialogs, ttl) = match ev {
            FromEvent::Ringing if dialogs == 0 => (0, RING_MS),
            FromEvent::Ringing => return,
            FromEvent::Answered { new_dialog } => {
                (dialogs.saturating_add(new_dialog as u16), DIALOG_MS)
            }
            FromEvent::Failed if dialogs == 0 => (0, TRANSACTION_MS),
            FromEvent::Failed => return,
            FromEvent::DialogEnded => match dialogs.saturating_sub(1) {
                0 => (0, TRANSACTION_MS),
                n => (n, DIALOG_MS),
            },
        };
        self.froms.put(key, (dialogs, v), now_ms, ttl);
        self.from_kept_ms
            .fetch_max(now_ms.max(1), Ordering::Relaxed);
    }
    fn kept_from_entry(&self, key: u64, now_ms: u64) -> Option<(u16, KeptFrom)> {
        if !self.keeps_froms(now_ms) {
            return None;
        }
        self.froms.get(key, now_ms)
    }
    /// Whether any From may be kept at `now_ms`: most gateways rewrite no From, and
    /// their calls' later requests then cost no lookup.
    /// The core asked a caller to retry a call.
    pub fn note_retry_asked(&self, now_ms: u64) {
        self.retry_asked_ms
            .fetch_max(now_ms.max(1), Ordering::Relaxed);
    }
    /// Whether the core asked for a retry within the last hour: a core that challenges
    /// or asks for session timers does so for call after call, and most cores never
    /// do, so that their gateways pay nothing for it.
    pub fn retries_asked(&self, now_ms: u64) -> bool {
        let last = self.retry_asked_ms.load(Ordering::Relaxed);
        last != 0 && now_ms.saturating_sub(last) <= 3_600_000
    }
    pub fn keeps_froms(&self, now_ms: u64) -> bool {
        let last = self.from_kept_ms.load(Ordering::Relaxed);
        last != 0 && now_ms.saturating_sub(last) <= DIALOG_MS
    }
    pub fn forget_from(&self, key: u64) {
        self.froms.remove(key);
    }
    pub fn kept_from(&self, key: u64, now_ms: u64) -> Option<bytes::Bytes> {
        self.kept_from_entry(key, now_ms).map(|(_, v)| v.given)
    }
    /// The From the call kept under `key` came with, when it was kept.
    pub fn original_from(&self, key: u64, now_ms: u64) -> Option<bytes::Bytes> {
        self.kept_from_entry(key, now_ms)
            .map(|(_, v)| v.original)
            .filter(|v| !v.is_empty())
    }
    pub fn earlier_sight(&self, key: u64, now_ms: u64, ttl_ms: u64) -> Option<u64> {
        self.seen.insert_new(key, now_ms, ttl_ms)
    }
    /// Whether `key` was sighted ([`Recent::earlier_sight`]) and is still held, without
    /// keeping this sighting.
    pub fn sighted(&self, key: u64, now_ms: u64) -> bool {
        self.seen.get(key, now_ms).is_some()
    }
    pub fn recall(&self, key: u64, now_ms: u64) -> Option<bool> {
        self.txns.get(key, now_ms).map(|v| v != 0)
    }
    pub fn remember(&self, key: u64, now_ms: u64, ttl_ms: u64, passed: bool) {
        self.txns.put(key, passed as u64, now_ms, ttl_ms);
    }
    pub fn claim(&self, key: u64, owner: u64, now_ms: u64, ttl_ms: u64) -> bool {
        self.answers
            .claim(key, owner, now_ms, ttl_ms, TRANSACTION_MS)
    }
    pub fn sweep(&self, now_ms: u64) {
        self.txns.sweep(now_ms);
        self.answers.sweep(now_ms);
        self.seen.sweep(now_ms);
        self.dialogs.sweep(now_ms);
        self.froms.sweep(now_ms);
    }

    /// Each table by the name its metrics give it: entries held, and new keys a full
    /// table could not keep since start. A full `dialogs` table is the one a call
    /// notices: the re-INVITEs of dialogs it could not keep are judged as new calls.
    pub fn tables(&self) -> [(&'static str, usize, u64); 5] {
        let t = |name, r: &Remembered| (name, r.len(), r.overflowed.load(Ordering::Relaxed));
        [
            t("dialogs", &self.dialogs),
            t("invites", &self.seen),
            t("transactions", &self.txns),
            t("answers", &self.answers),
            (
                "froms",
                self.froms.len(),
                self.froms.overflowed.load(Ordering::Relaxed),
            ),
        ]
    }
}

/// The top 24 bits of a key: its trunk, as 24 bits of the hash of the trunk's name
/// ([`crate::policy::Trunk::id`]), not its place in the file: a reload that adds or
/// reorders trunks leaves each trunk its counts, and gateways sharing counters
/// through Redis count a trunk of one name together. Two trunks of one tag share the
/// overflow counter of a full table (`check` warns of them): with 16 bits two of 500
/// trunks did so with odds of 85%, with 24 bits 0.7%. The 38 bits left for a caller
/// still make a collision of two callers of one trunk rare (about one pair in eight
/// tables of 262,144 callers).
const TAG: u64 = !0 << 40;
/// Set in the keys of counters that must hold when the table is full.
const CLOSED: u64 = 1 << 39;
/// Set in a trunk's own key and its overflow key: always kept.
const TRUNK: u64 = 1 << 38;
const HASH: u64 = TRUNK - 1;

/// Two trunk names (`{prefix}N`) whose ids ([`crate::policy::Trunk::id`]) agree in
/// their top `bits`: for tests of what trunks alike in a tag keep apart.
#[cfg(test)]
pub(crate) fn names_alike_in_top_bits(prefix: &str, bits: u32) -> (String, String) {
    let id = |n: &str| crate::sip::lex::fnv1a(&[n.as_bytes()]);
    let mut seen = std::collections::HashMap::new();
    (0..20_000_000)
        .map(|i| format!("{prefix}{i}"))
        .find_map(|n| {
            seen.insert(id(&n) >> (64 - bits), n.clone())
                .map(|m| (m, n))
        })
        .expect("two names alike")
}

/// Whether two trunks (their ids) share a tag, and so the overflow counter of a full
/// table.
pub fn same_tag(a: u64, b: u64) -> bool {
    a & TAG == b & TAG
}

/// A counter key of trunk `trunk` (its [`crate::policy::Trunk::id`]): the hash in the
/// low 38 bits. When the table is full, a new key of this kind is not kept: its limit
/// lapses (a caller's calls a minute: its own first call, so that one tenant's flood
/// refuses no other tenant's callers).
pub fn keyed_for(trunk: u64, hash: u64) -> u64 {
    (trunk & TAG) | (hash & HASH)
}

/// A counter key whose limit must hold even when the table is full (a source's wrong
/// digest answers, a flagged caller's rate limit): new keys of a full table share one
/// overflow counter of their trunk's, the safe side for a lockout or a suspect.
pub fn keyed_closed(trunk: u64, hash: u64) -> u64 {
    keyed_for(trunk, hash) | CLOSED
}

/// The key of a trunk's own counter (its calls a minute): always kept, whatever the
/// table holds, so that no flood of callers can lift a trunk's limit. Two trunks whose
/// names share a tag still have keys of their own (the rest of the name's hash).
pub fn trunk_key(trunk: u64) -> u64 {
    (trunk & TAG) | TRUNK | (trunk & HASH)
}

/// Where a new key goes when the table is full: itself (a trunk's key, or the overflow
/// key of a trunk), the trunk's overflow key (a key that must hold), or nowhere (its
/// limit lapses: `None`).
pub fn when_full(key: u64) -> Option<u64> {
    if key & TRUNK != 0 {
        Some(key)
    } else if key & CLOSED != 0 {
        Some((key & TAG) | CLOSED | TRUNK)
    } else {
        None
    }
}

/// Where a look at a key the table does not hold reads instead: a key that must hold
/// reads its trunk's overflow counter while the table is full (where its events went,
/// so that a locked-out source's right password is refused too); `None`: it reads 0.
/// `full` is asked only for such a key (it costs a visit of every shard).
pub fn read_when_absent(key: u64, full: impl FnOnce() -> bool) -> Option<u64> {
    when_full(key).filter(|&o| o != key && full())
}

/// In-process sliding-window counters (two fixed windows, the previous weighted by how
/// much of it is still inside the sliding one: the usual approximation). It reads the
/// previous window's events as spread evenly: events bunched at its end are undercounted,
/// at its start overcounted, by at most that window's count (so an allowance can pass
/// nearly twice its limit within one window across a boundary; QA 39).
///
/// Memory is bounded: at most `capacity` keys. When full, keys idle for two windows are
/// swept; if it is still full, a new key is not kept: its event counts as the first of
/// its window (the limits of callers not yet known lapse while memory is exhausted,
/// counted in `overflowed`), except a trunk's own key ([`trunk_key`]), which is always
/// kept. A shared overflow counter was tried: one tenant's flood of invented callers
/// then refused every other tenant's new callers as over their limit.
pub struct LocalRateCounter {
    map: DashMap<u64, Window, ahash::RandomState>,
    capacity: usize,
    last_sweep_ms: AtomicU64,
    overflowed: AtomicU64,
    recent: Recent,
}

impl LocalRateCounter {
    pub fn new(capacity: usize) -> LocalRateCounter {
        LocalRateCounter {
            // Grows as keys come: most policies count few callers.
            map: DashMap::with_hasher(ahash::RandomState::new()),
            capacity: capacity.max(1),
            last_sweep_ms: AtomicU64::new(0),
            overflowed: AtomicU64::new(0),
            recent: Recent::new(capacity),
        }
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
    /// Events counted in the shared overflow counter because the table was full.
    pub fn overflowed(&self) -> u64 {
        self.overflowed.load(Ordering::Relaxed)
    }

    /// Drops keys idle for more than `idle_ms`.
    pub fn sweep(&self, now_ms: u64, idle_ms: u64) {
        self.map
            .retain(|_, w| now_ms.saturating_sub(w.start_ms) <= idle_ms);
        self.last_sweep_ms.store(now_ms, Ordering::Relaxed);
    }

    fn bump(w: &mut Window, now_ms: u64, window_ms: u64) -> u32 {
        Self::roll(w, now_ms, window_ms);
        w.cur = w.cur.saturating_add(1);
        Self::estimate(w, now_ms, window_ms)
    }

    /// Moves the two fixed windows on to the one `now_ms` is in.
    fn roll(w: &mut Window, now_ms: u64, window_ms: u64) {
        let window_ms = window_ms.max(1);
        let elapsed = now_ms.saturating_sub(w.start_ms);
        if elapsed >= 2 * window_ms {
            *w = Window {
                start_ms: now_ms - now_ms % window_ms,
                cur: 0,
                prev: 0,
            };
        } else if elapsed >= window_ms {
            w.prev = w.cur;
            w.cur = 0;
            w.start_ms += window_ms;
        }
    }

    /// The window `key` is counted in, as it stands at `now_ms`: a copy rolled, since
    /// looking must not move the stored windows (nor take the shard's write lock). A
    /// new key has none, unless the full table sends it to its trunk's overflow
    /// counter: that one's.
    fn window_now(&self, key: u64, now_ms: u64, window_ms: u64) -> Option<Window> {
        let read = |key: u64| {
            self.map.get(&key).map(|w| {
                let mut w = *w;
                Self::roll(&mut w, now_ms, window_ms);
                w
            })
        };
        read(key)
            .or_else(|| read_when_absent(key, || self.map.len() >= self.capacity).and_then(read))
    }

    /// Whether the weighted count is under `limit`, exactly: the rounded-up estimate
    /// (never under, as a limit wants) would keep an allowance one short a window.
    fn below(w: &Window, now_ms: u64, window_ms: u64, limit: u32) -> bool {
        let window_ms = window_ms.max(1) as u128;
        let into = (now_ms.saturating_sub(w.start_ms) as u128).min(window_ms);
        (w.cur as u128) * window_ms + (w.prev as u128) * (window_ms - into)
            < (limit as u128) * window_ms
    }

    fn estimate(w: &Window, now_ms: u64, window_ms: u64) -> u32 {
        let window_ms = window_ms.max(1);
        let into = now_ms.saturating_sub(w.start_ms).min(window_ms);
        // Weight of the previous window still inside the sliding window.
        let carry = (w.prev as u64 * (window_ms - into)).div_ceil(window_ms);
        (w.cur as u64 + carry).min(u32::MAX as u64) as u32
    }
}

impl RateCounter for LocalRateCounter {
    fn recent(&self) -> Option<&Recent> {
        Some(&self.recent)
    }
    fn peek(&self, key: u64, now_ms: u64, window_ms: u64) -> u32 {
        self.window_now(key, now_ms, window_ms)
            .map_or(0, |w| Self::estimate(&w, now_ms, window_ms))
    }
    fn allows(&self, key: u64, now_ms: u64, window_ms: u64, limit: u32) -> bool {
        // Exactly, not on the rounded-up estimate `peek` gives (see `below`).
        self.window_now(key, now_ms, window_ms)
            .map_or(limit > 0, |w| Self::below(&w, now_ms, window_ms, limit))
    }
    fn housekeep(&self, now_ms: u64) {
        // Every window the rules use is at most a minute.
        self.sweep(now_ms, 120_000);
        self.recent.sweep(now_ms);
    }
    fn keys(&self) -> usize {
        self.len()
    }
    fn overflowed(&self) -> u64 {
        LocalRateCounter::overflowed(self)
    }
    fn hit(&self, mut key: u64, now_ms: u64, window_ms: u64) -> u32 {
        if let Some(mut w) = self.map.get_mut(&key) {
            return Self::bump(&mut w, now_ms, window_ms);
        }
        if self.map.len() >= self.capacity {
            let last = self.last_sweep_ms.load(Ordering::Relaxed);
            if now_ms.saturating_sub(last) >= window_ms.max(1) {
                self.sweep(now_ms, 2 * window_ms);
            }
            if self.map.len() >= self.capacity {
                match when_full(key) {
                    Some(k) if k == key => {}
                    Some(overflow) => {
                        self.overflowed.fetch_add(1, Ordering::Relaxed);
                        key = overflow;
                    }
                    None => {
                        self.overflowed.fetch_add(1, Ordering::Relaxed);
                        return 1;
                    }
                }
            }
        }
        let mut w = self.map.entry(key).or_insert(Window {
            start_ms: now_ms - now_ms % window_ms.max(1),
            cur: 0,
            prev: 0,
        });
        Self::bump(&mut w, now_ms, window_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_sightings_run_from_the_first_and_stay_bounded() {
        let t = Recent::new(2);
        assert_eq!(t.earlier_sight(1, 0, 32_000), None);
        // Retransmissions within the lifetime, however many: seen at 0, and they do not
        // stretch it.
        for at in [500, 1_500, 3_500, 31_999] {
            assert_eq!(t.earlier_sight(1, at, 32_000), Some(0), "{at}");
        }
        assert_eq!(
            t.earlier_sight(1, 32_000, 32_000),
            None,
            "its lifetime is over"
        );
        assert_eq!(t.earlier_sight(1, 32_100, 32_000), Some(32_000));
        assert_eq!(t.earlier_sight(2, 32_000, 32_000), None);
        // Full, nothing expired: every sighting of a third is a first (counted again).
        assert_eq!(t.earlier_sight(3, 33_000, 32_000), None);
        assert_eq!(t.earlier_sight(3, 33_100, 32_000), None);
        // Once the others expire, a sweep makes room.
        assert_eq!(t.earlier_sight(3, 70_000, 32_000), None);
        assert_eq!(t.earlier_sight(3, 70_100, 32_000), Some(70_000));
        assert_eq!(NoCounting.earlier_sight(3, 70_100, 32_000), None);
    }

    #[test]
    fn transactions_are_remembered_bounded_and_forgotten() {
        let t = Recent::new(2);
        assert_eq!(t.recall(1, 0), None);
        t.remember(1, 0, 32_000, false);
        assert_eq!(t.recall(1, 500), Some(false));
        t.remember(1, 600, 32_000, true);
        assert_eq!(t.recall(1, 700), Some(true));
        assert_eq!(t.recall(1, 40_000), None, "expired");
        t.remember(2, 1_000, 32_000, true);
        // Full, nothing expired: a third is not remembered (it will be counted again),
        // and the metrics say so.
        t.remember(3, 1_000, 32_000, true);
        assert_eq!((t.txns.len(), t.recall(3, 1_000)), (2, None));
        assert_eq!(t.tables()[2], ("transactions", 2, 1));
        assert_eq!(t.tables()[0], ("dialogs", 0, 0));
        // Once the others expire, a sweep makes room.
        t.remember(3, 40_000, 32_000, true);
        assert_eq!((t.txns.len(), t.recall(3, 40_001)), (1, Some(true)));
        let c = LocalRateCounter::new(10);
        c.remember(9, 0, 1000, true);
        assert_eq!(c.recall(9, 10), Some(true));
        assert_eq!(NoCounting.recall(9, 10), None);
    }

    #[test]
    fn a_token_belongs_to_its_first_owner_until_it_expires() {
        let t = Remembered::new(2);
        let claim = |k, owner, at| t.claim(k, owner, at, 10_000, 4_000);
        assert!(claim(1, 100, 0), "first use");
        assert!(claim(1, 100, 3_000), "the same owner again");
        assert!(
            !claim(1, 100, 5_000),
            "the same owner, too late to be a retransmission"
        );
        assert!(!claim(1, 200, 6_000), "another owner");
        assert!(claim(1, 200, 10_000), "expired: the next owner's");
        assert!(!claim(1, 100, 11_000));
        // Full of live entries: not kept, so not refused (what happens without a table).
        assert!(claim(2, 1, 11_000));
        assert!(claim(3, 1, 11_000));
        assert!(claim(3, 2, 11_000));
        assert_eq!(t.len(), 2);
        // The others expired: a sweep makes room and the newcomer is kept.
        assert!(claim(3, 1, 30_000));
        assert!(!claim(3, 2, 30_001));
        let c = LocalRateCounter::new(10);
        assert!(c.claim(5, 1, 0, 1000) && !c.claim(5, 2, 10, 1000));
        assert!(NoCounting.claim(5, 1, 0, 1000) && NoCounting.claim(5, 2, 10, 1000));
    }

    #[test]
    fn peek_reads_without_counting() {
        let c = LocalRateCounter::new(100);
        assert_eq!(c.peek(7, 60_000, 60_000), 0);
        for _ in 0..3 {
            c.hit(7, 60_010, 60_000);
        }
        assert_eq!(c.peek(7, 60_020, 60_000), 3);
        assert_eq!(c.peek(7, 60_030, 60_000), 3);
        assert_eq!(c.hit(7, 60_040, 60_000), 4);
        // Sliding like a hit: most of the window still counts just after its end,
        // nothing two windows on.
        assert!(c.peek(7, 120_500, 60_000) >= 3);
        assert_eq!(c.peek(7, 181_000, 60_000), 0);
        // Looking moved nothing: the next hit still sees the first window's calls.
        assert!(c.hit(7, 120_600, 60_000) >= 4);
        assert_eq!(c.peek(8, 60_000, 60_000), 0);
        assert_eq!(NoCounting.peek(7, 60_000, 60_000), 0);
    }

    #[test]
    fn an_allowance_is_not_used_up_by_refused_attempts() {
        // A caller trying every 2 s for five minutes, allowed 3 a minute: every minute
        // lets 3 through, the first and every one after (counting the refused
        // attempts too left it none after the first minute).
        for (c, label) in [
            (&LocalRateCounter::new(100) as &dyn RateCounter, "local"),
            (&NoCounting, "none"),
        ] {
            let mut per_minute = [0u32; 5];
            for i in 0..150u64 {
                let at = 1_000 + i * 2_000;
                if c.allows(9, at, 60_000, 3) {
                    c.hit(9, at, 60_000);
                    per_minute[((at - 1_000) / 60_000) as usize] += 1;
                }
            }
            let want = if label == "none" { [30; 5] } else { [3; 5] };
            assert_eq!(per_minute, want, "{label}");
        }
        let c = LocalRateCounter::new(100);
        assert!(
            !c.allows(5, 0, 60_000, 0),
            "a limit of none lets none through"
        );
        // A full table: a new key that must hold is judged by its trunk's overflow
        // counter, which the earlier overflowed keys filled.
        let c = LocalRateCounter::new(1);
        c.hit(1, 0, 60_000);
        let (a, b) = (keyed_closed(7 << 56, 2), keyed_closed(7 << 56, 3));
        assert!(c.allows(a, 10, 60_000, 1));
        c.hit(a, 10, 60_000);
        assert!(
            !c.allows(b, 20, 60_000, 1),
            "the overflow counter holds one"
        );
    }

    #[test]
    fn counts_within_window_and_expires() {
        let c = LocalRateCounter::new(100);
        for i in 1..=5 {
            assert_eq!(c.hit(7, 60_000 + i * 10, 60_000), i as u32);
        }
        assert_eq!(c.hit(8, 60_100, 60_000), 1);
        // Two windows later everything is forgotten.
        assert_eq!(c.hit(7, 200_000, 60_000), 1);
    }

    #[test]
    /// The previous window is read as spread evenly over it (README, Windows): what of
    /// it counts shrinks as the sliding window moves on.
    fn sliding_carry_weights_the_previous_window() {
        let c = LocalRateCounter::new(10);
        for _ in 0..10 {
            c.hit(1, 59_000, 60_000);
        }
        // Just after the boundary nearly all of the previous window still counts.
        assert!(c.hit(1, 60_500, 60_000) >= 10);
        // Near the end of the next window, little of it does.
        assert!(c.hit(1, 119_000, 60_000) <= 3);
    }

    #[test]
    fn bounded_under_a_flood() {
        let c = LocalRateCounter::new(1000);
        for k in 0..100_000u64 {
            c.hit(k, 1_000, 60_000);
        }
        assert!(c.len() <= 1000);
        assert!(c.overflowed() >= 99_000);
        // Idle keys are swept once a window has passed.
        c.hit(1_000_000, 200_000, 60_000);
        assert!(c.len() <= 1000);
        assert_eq!(c.hit(1_000_001, 200_001, 60_000), 1);
    }

    /// One trunk's flood fills the table: no other trunk's new caller is refused for
    /// it (each counts as its own first), callers already known keep their counts, and
    /// every trunk's own counter is kept whatever the table holds.
    #[test]
    fn a_full_table_keeps_trunks_apart() {
        // Trunk ids as the policy makes them: a name's hash, all 64 bits.
        let id = |n: u64| crate::sip::lex::fnv1a(&[&n.to_le_bytes()]);
        let c = LocalRateCounter::new(100);
        c.hit(keyed_for(id(1), 7), 500, 60_000);
        for k in 0..10_000u64 {
            c.hit(keyed_for(id(0), k + 1_000), 1_000, 60_000);
        }
        assert!(c.len() <= 100);
        for k in 0..5 {
            assert_eq!(c.hit(keyed_for(id(1), 99_990 + k), 1_001, 60_000), 1);
        }
        assert_eq!(c.hit(keyed_for(id(1), 7), 1_002, 60_000), 2);
        for i in 1..=3 {
            assert_eq!(c.hit(trunk_key(id(2)), 1_003, 60_000), i);
        }
        assert!(c.len() <= 101);
        // A key that must hold shares its trunk's overflow counter instead, and a look
        // at one the table does not hold reads that counter (a locked-out source's
        // right password is refused too).
        for i in 1..=4 {
            assert_eq!(
                c.hit(keyed_closed(id(1), 50_000 + i), 1_004, 60_000),
                i as u32
            );
        }
        assert_eq!(c.peek(keyed_closed(id(1), 50_001), 1_004, 60_000), 4);
        assert_eq!(c.peek(keyed_closed(id(1), 77_777), 1_004, 60_000), 4);
        assert_eq!(c.peek(keyed_closed(id(3), 77_777), 1_004, 60_000), 0);
        assert_eq!(c.peek(keyed_for(id(1), 77_777), 1_004, 60_000), 0);
        assert_eq!(c.hit(keyed_closed(id(3), 1), 1_005, 60_000), 1);
        assert!(c.len() <= 103);
        // Once the table has room again, an absent key reads 0.
        c.housekeep(1_000_000);
        assert_eq!(c.peek(keyed_closed(id(1), 77_777), 1_000_000, 60_000), 0);
    }

    /// A key names its trunk by the trunk's name (its id), not its place in the file;
    /// two trunks whose ids share the top 24 bits still have counters of their own.
    #[test]
    fn keys_name_their_trunk() {
        let (a, b) = (0xABCD_EF00_0000_0001u64, 0xABCD_EF00_0000_0002u64);
        assert_ne!(trunk_key(a), trunk_key(b));
        assert_eq!(keyed_for(a, 9) >> 40, 0xAB_CDEF);
        // Alike in 16 bits is not alike in 24: their overflow counters are apart.
        let c = 0xABCD_0E00_0000_0001u64;
        assert_ne!(when_full(keyed_closed(a, 9)), when_full(keyed_closed(c, 9)));
        assert_eq!(keyed_for(a, u64::MAX) & !TAG, HASH);
        for k in [keyed_for(a, u64::MAX), keyed_for(a, 0), keyed_closed(a, 0)] {
            assert_ne!(k, trunk_key(a));
            assert_ne!(Some(k), when_full(keyed_closed(a, 1)));
        }
        assert_eq!(when_full(trunk_key(a)), Some(trunk_key(a)));
        assert_eq!(when_full(keyed_for(a, 9)), None);
        assert_eq!(when_full(keyed_closed(a, 9)), when_full(keyed_closed(b, 7)));
        let overflow = when_full(keyed_closed(a, 9)).unwrap();
        assert_eq!(when_full(overflow), Some(overflow));
        assert_ne!(overflow, trunk_key(a));
    }
}
