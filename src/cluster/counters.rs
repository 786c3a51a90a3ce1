//! Rate counters shared by every gateway, without a network round trip per call.
//!
//! Each instance counts in memory, exactly as the local counter does. Every `sync_ms`
//! one pipeline goes to Redis: for every key counted since the last sync, this
//! instance's own count of the key's fixed window (windows aligned on the epoch so that
//! all instances agree) is written into the window's hash
//! (`<prefix>:counts:<key>:<window>:<bucket>`, one field per running gateway process),
//! and the hash's sum, the total of all instances, comes back, in one script per key.
//! A call is judged on the last total Redis returned plus what this instance counted
//! since.
//!
//! Why a count and not an increment: writing the same count twice changes nothing, so
//! a sync that timed out and still reaches Redis later (a Redis paused, or slow, takes
//! the pipeline into its socket and runs it when it resumes), or one sent again because
//! its answer was lost, cannot count a call twice (QA 80 F1: with `INCRBY`, 600 calls
//! were counted 607-631 across a one-second pause). The script keeps the larger of the
//! stored and the written count, so an old sync that arrives after a newer one does not
//! undo it either. The field is this process's (instance name and a random tag): a
//! gateway that restarts starts a new field, and what it counted before still counts
//! until the window ends.
//!
//! The same pipeline also reads back the totals of keys this instance counted within
//! their last two windows but has nothing new for, so that a gateway that was quiet for
//! a while does not judge its next burst on the total it learnt a minute ago (which
//! would let it admit everything the others admitted meanwhile a second time). At most
//! `REFRESH_BUDGET` such keys per sync interval, the longest unrefreshed first, so that
//! thousands of per-caller keys cost Redis a bounded read rate (and each is read every
//! keys / budget syncs). A window's total is also read again once it has ended, for
//! two sync intervals and then once every ten while the key is counted here: the next
//! window's calls are judged on it as well (and an instance whose syncs failed across
//! the turn writes its count later); the first call of a window on a key wakes the
//! sync for that.
//!
//! Worst-case overshoot: between two syncs an instance does not see the other
//! instances' new calls, so with N instances a limit can be passed by at most the calls
//! that the other N-1 instances admit in one sync interval (plus the two-bucket sliding
//! approximation's error, as for the local counter). A key an instance has not counted
//! lately (a caller new to this gateway) has no total here yet: its calls are judged
//! on this instance's count alone until the sync its first call wakes (at most every
//! `sync_ms / 50`, instead of at the next tick) has read the total, so the gap in
//! which this gateway does not know the others' count is one Redis round trip, not a
//! sync interval (a burst within it can take the whole limit here). A 60-a-minute
//! contract spread over three gateways at its limit sees well under one extra call per
//! 100 ms sync.
//!
//! Redis slow or down: the sync fails after `timeout_ms`, the counter turns
//! `degraded` and keeps counting locally on top of the last totals it had (fail-open:
//! each gateway alone against the full limit), or makes rules configured with
//! `fallback = "closed"` match. It retries every sync interval; the first sync that
//! succeeds writes the counts made meanwhile, and counting is shared again. A Redis
//! that comes back empty (restarted without persistence, flushed) is told by the epoch
//! mark: every instance then writes its counts of the current windows again.

use dashmap::DashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use super::{Redis, RedisFailure};
use crate::policy::rate::{RateCounter, Recent};

#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    window_ms: u64,
    /// Index of the current fixed window (now / window).
    bucket: u64,
    /// This instance's count: [current window, previous window].
    own: [u32; 2],
    /// What of `own` Redis holds: the count the last answered sync wrote. Less than
    /// `own` means there is something to write.
    sent: [u32; 2],
    /// Totals Redis returned at the last sync (this instance's `sent` included).
    shared: [u32; 2],
    last_ms: u64,
    /// When `shared` was last read from Redis.
    synced_ms: u64,
    /// When the previous window's total was last read: a read made before that window
    /// had ended, and the others had synced what they counted in it, may lack their
    /// calls (QA 83 F1: a gateway quiet for a minute judged a burst on the total it
    /// had read before another admitted the whole contract, and let 20 of 20 by).
    prev_read_ms: u64,
}

impl Slot {
    fn roll(&mut self, bucket: u64) {
        if bucket == self.bucket {
            return;
        }
        if bucket == self.bucket + 1 {
            self.own[1] = self.own[0];
            self.sent[1] = self.sent[0];
            self.shared[1] = self.shared[0];
            self.prev_read_ms = self.synced_ms;
        } else {
            self.own[1] = 0;
            self.sent[1] = 0;
            self.shared[1] = 0;
            self.prev_read_ms = 0;
        }
        self.own[0] = 0;
        self.sent[0] = 0;
        self.shared[0] = 0;
        self.bucket = bucket;
    }

    /// Whether the previous window's total was read late enough to hold every
    /// gateway's count of it: `settle_ms` after the window ended.
    fn prev_settled(&self, settle_ms: u64) -> bool {
        self.prev_read_ms >= (self.bucket * self.window_ms).saturating_add(settle_ms)
    }

    fn estimate(&self, now_ms: u64) -> u32 {
        let w = self.window_ms.max(1);
        let into = now_ms.saturating_sub(self.bucket * w).min(w);
        let unsent = |i: usize| self.own[i].saturating_sub(self.sent[i]);
        let cur = self.shared[0].saturating_add(unsent(0));
        let prev = self.shared[1].saturating_add(unsent(1)) as u64;
        cur.saturating_add((prev * (w - into) / w) as u32)
    }
}

/// Writes this instance's count of one window into the window's hash, keeping the
/// larger when the field holds more already (an older sync that reached Redis late),
/// and returns the hash's sum: every instance's count. A count of 0 only reads.
const COUNT: &str = "local n = tonumber(ARGV[2])
if n > 0 and n > (tonumber(redis.call('HGET', KEYS[1], ARGV[1])) or 0) then
  redis.call('HSET', KEYS[1], ARGV[1], n)
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
end
local t = 0
for _, v in ipairs(redis.call('HVALS', KEYS[1])) do t = t + (tonumber(v) or 0) end
return t";

pub struct SharedRateCounter {
    map: DashMap<u64, Slot, ahash::RandomState>,
    capacity: usize,
    degraded: AtomicBool,
    /// Events of new keys the full table could not keep.
    pub overflowed: AtomicU64,
    recent: Recent,
    /// A key this gateway had not counted: its first call was judged on this
    /// gateway's count alone, so the sync goes now rather than at the next tick.
    fresh: tokio::sync::Notify,
    /// Draws each sync's candidate for the store's epoch mark (a new one each time:
    /// the instance that set the last mark must not write the same one into an empty
    /// store), and the mark last read (0: none yet). A mark that changes means Redis
    /// lost the counts.
    marks: ahash::RandomState,
    epoch: std::sync::atomic::AtomicI64,
    /// This process's field in every window's hash: the instance name, for whoever
    /// reads the hashes, and a random tag, so that a restarted gateway does not write
    /// over what it counted before the restart (those calls still count).
    field: String,
    /// The [`COUNT`] script's SHA-1, once Redis has told it (every pipeline loads the
    /// script first, so a Redis that restarted has it again before it is called).
    script: std::sync::OnceLock<String>,
    /// The sync interval (set by [`Self::run`]; 0 until then): a window's total is
    /// whole two intervals after it ended, and the read-back budget is per interval.
    every_ms: AtomicU64,
    /// Keys with a first call to send since the last sync (a few may be in twice): what
    /// a sync woken between ticks sends, without walking the table of every key counted
    /// (up to a hundred times a second: at 2,000 calls/s of new callers the proxy made
    /// 0.63x the calls per CPU-second of local counters with the walks, 0.77x without).
    /// A tick's sync walks the table and empties this.
    woken: std::sync::Mutex<Vec<u64>>,
    /// When the last sync read keys back: the budget is per interval, however often
    /// syncs come (when each sync woken for a new key spent a whole one, up to ten an
    /// interval, Redis spent three times the CPU on reads; only a tick's sync reads
    /// back now, and none reads more than the time since the last one earns).
    refreshed_ms: AtomicU64,
    /// How far this gateway's steady clock, which its windows run on, is from Redis's
    /// (`i64::MIN` until measured): windows are aligned on each gateway's clock, so
    /// gateways this far apart share no count at a window's turn (QA 192 F6: a minute
    /// apart, they never shared one, and nothing said so).
    pub clock_offset_ms: std::sync::atomic::AtomicI64,
}

/// Keys with nothing to send whose totals one sync reads back, at most (two reads
/// each): at 100 ms syncs, at most ~20,000 reads a second per gateway.
const REFRESH_BUDGET: usize = 1024;

/// Whether an error is one key's matter: a key of another type where a count is kept
/// (someone else's key; WRONGTYPE, as a script's error reports it too). Any other
/// refusal is the store's.
fn refuses_one_key(e: &redis::RedisError) -> bool {
    e.code() == Some("WRONGTYPE") || e.to_string().contains("WRONGTYPE")
}

/// A number in a Redis reply (an integer, or a string of one as `GET` gives); nothing
/// there counts 0.
fn number(v: &redis::Value) -> Option<i64> {
    match v {
        redis::Value::Int(n) => Some(*n),
        redis::Value::Nil => Some(0),
        redis::Value::BulkString(b) => std::str::from_utf8(b).ok()?.parse().ok(),
        redis::Value::SimpleString(s) => s.parse().ok(),
        _ => None,
    }
}

impl SharedRateCounter {
    pub fn new(capacity: usize, instance: &str) -> SharedRateCounter {
        let marks = ahash::RandomState::new();
        let tag = marks.hash_one((std::process::id(), instance)) as u32;
        SharedRateCounter {
            map: DashMap::with_hasher(ahash::RandomState::new()),
            capacity: capacity.max(1),
            // Degraded until the first sync: nothing is known of the others yet.
            degraded: AtomicBool::new(true),
            overflowed: AtomicU64::new(0),
            recent: Recent::new(capacity),
            fresh: tokio::sync::Notify::new(),
            marks,
            epoch: std::sync::atomic::AtomicI64::new(0),
            field: format!("{instance}:{tag:08x}"),
            script: std::sync::OnceLock::new(),
            every_ms: AtomicU64::new(0),
            refreshed_ms: AtomicU64::new(0),
            woken: std::sync::Mutex::new(Vec::new()),
            clock_offset_ms: std::sync::atomic::AtomicI64::new(i64::MIN),
        }
    }

    /// Measures [`Self::clock_offset_ms`] against Redis's `TIME`, from the middle of
    /// the round trip.
    async fn measure_clock(&self, redis: &Redis) -> bool {
        let before = crate::cli::steady_ms();
        let time = redis
            .run(|mut c| async move { redis::cmd("TIME").query_async::<(u64, u64)>(&mut c).await })
            .await;
        if let Ok((secs, micros)) = time {
            let mid = (before + crate::cli::steady_ms()) / 2;
            let theirs = secs.saturating_mul(1000) + micros / 1000;
            self.clock_offset_ms
                .store(mid as i64 - theirs as i64, Ordering::Relaxed);
            return true;
        }
        false
    }

    fn wake(&self, key: u64) {
        self.woken
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(key);
    }

    fn count(s: &mut Slot, now_ms: u64, window_ms: u64, bucket: u64) -> u32 {
        s.window_ms = window_ms;
        s.roll(bucket);
        s.own[0] = s.own[0].saturating_add(1);
        s.last_ms = now_ms;
        s.estimate(now_ms)
    }

    fn redis_key(prefix: &str, key: u64, window_ms: u64, bucket: u64) -> String {
        format!("{prefix}:counts:{key:016x}:{window_ms}:{bucket}")
    }

    /// The store's epoch mark: set (without expiry) by the first instance to sync
    /// against an empty store, read by every sync. Outside `counts:*`, where the counts
    /// are.
    pub fn epoch_key(prefix: &str) -> String {
        format!("{prefix}:counts-epoch")
    }

    /// Redis lost the counts: nothing of this instance's is there any more, so every
    /// window's count is to be written again (the estimates do not change: the totals
    /// last read held what was sent, the next ones will not until it is written).
    fn forget_sent(&self) -> usize {
        let mut keys = 0;
        for mut e in self.map.iter_mut() {
            let s = e.value_mut();
            if s.sent != [0, 0] {
                keys += 1;
                for i in 0..2 {
                    s.shared[i] = s.shared[i].saturating_sub(s.sent[i]);
                    s.sent[i] = 0;
                }
            }
        }
        keys
    }

    /// Adds one [`COUNT`] call to `pipe`: by its SHA-1 once known, else by its text.
    fn count_cmd(&self, pipe: &mut redis::Pipeline, key: String, n: u32, ttl_ms: u64) {
        let cmd = match self.script.get() {
            Some(sha) => pipe.cmd("EVALSHA").arg(sha),
            None => pipe.cmd("EVAL").arg(COUNT),
        };
        cmd.arg(1).arg(key).arg(&self.field).arg(n).arg(ttl_ms);
    }

    /// One sync: write what was counted, read the totals back. Only keys counted since
    /// the last sync are written (a key nobody here counts needs no fresh total: it is
    /// refreshed by the next sync after its next call, within the overshoot bound). On
    /// failure nothing is lost: the counts not yet written go with the next attempt.
    ///
    /// A key Redis refuses (someone else's key of another type there: WRONGTYPE) is
    /// that key's matter alone: its counts stay unwritten, its callers are judged on
    /// this gateway's count, and the sync goes on for every other key (QA 47: one such
    /// key failed the whole sync, and with `fallback = "closed"` refused every caller).
    ///
    /// `every_key`: a tick's sync, which walks every key counted (and reads some back);
    /// else a sync woken between ticks, which sends the keys counted since the last one.
    pub async fn sync(
        &self,
        redis: &Redis,
        now_ms: u64,
        every_key: bool,
    ) -> Result<Synced, RedisFailure> {
        // (key, window, bucket, own count now, own count of the previous window when
        // Redis does not hold it yet or its total is not known to be whole)
        let mut batch: Vec<(u64, u64, u64, u32, Option<u32>)> = Vec::new();
        // Keys to read back only: (last read, key, window, bucket).
        let mut stale: Vec<(u64, u64, u64, u64)> = Vec::new();
        let every_ms = self.every_ms.load(Ordering::Relaxed);
        let settle_ms = 2 * every_ms;
        let woken = std::mem::take(&mut *self.woken.lock().unwrap_or_else(|p| p.into_inner()));
        // What one key has to send, if anything; `false` when it has nothing.
        let mut send = |key: u64, s: &mut Slot| {
            // Read the window the next call will be judged in, not the one the last
            // call was.
            s.roll(now_ms / s.window_ms.max(1));
            if s.own == s.sent {
                return false;
            }
            // And once every ten intervals anyway: a gateway whose syncs failed across
            // the turn writes its count of the window later, which a busy gateway would
            // otherwise never read (QA 84 G3: 12 calls let by on a total short of 39).
            let prev_due = !s.prev_settled(settle_ms)
                || now_ms.saturating_sub(s.prev_read_ms) >= 10 * every_ms;
            let prev = (s.own[1] != s.sent[1] || prev_due).then_some(s.own[1]);
            batch.push((key, s.window_ms, s.bucket, s.own[0], prev));
            true
        };
        if every_key {
            for mut e in self.map.iter_mut() {
                let key = *e.key();
                let s = e.value_mut();
                if !send(key, s) && now_ms.saturating_sub(s.last_ms) <= 2 * s.window_ms {
                    // Every key kept (two windows after its last call: its next call is
                    // judged on the previous window too) is read back, the longest
                    // unread first.
                    stale.push((s.synced_ms, key, s.window_ms, s.bucket));
                }
            }
        } else {
            let mut woken = woken;
            woken.sort_unstable();
            woken.dedup();
            for key in woken {
                if let Some(mut s) = self.map.get_mut(&key) {
                    send(key, &mut s);
                }
            }
        }
        // The interval's budget, in proportion to the time since the last read-back.
        let since = now_ms.saturating_sub(self.refreshed_ms.load(Ordering::Relaxed));
        let budget = match every_ms {
            0 => REFRESH_BUDGET,
            e => (REFRESH_BUDGET as u64 * since / e).min(REFRESH_BUDGET as u64) as usize,
        };
        if stale.len() > budget {
            if budget > 0 {
                stale.select_nth_unstable(budget);
            }
            stale.truncate(budget);
        }
        if !stale.is_empty() {
            self.refreshed_ms.store(now_ms, Ordering::Relaxed);
        }
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        // The epoch mark first: set if the store has none (empty: first start, or it
        // lost its data), then read. With nothing to count they still go: a write and
        // the script's loading prove the store takes what sharing needs (a PING did
        // not: a Redis out of memory answered it, and a quiet gateway took it for up
        // again between its busy moments, QA 87 F6).
        let epoch_key = Self::epoch_key(&redis.prefix);
        // Never 0 ("none yet").
        let mark = (self.marks.hash_one((now_ms, batch.len(), stale.len())) >> 2) as i64 + 1;
        pipe.cmd("SET").arg(&epoch_key).arg(mark).arg("NX");
        pipe.cmd("GET").arg(&epoch_key);
        pipe.cmd("SCRIPT").arg("LOAD").arg(COUNT);
        for &(key, w, b, n0, n1) in &batch {
            let ttl = 3 * w;
            self.count_cmd(
                &mut pipe,
                Self::redis_key(&redis.prefix, key, w, b),
                n0,
                ttl,
            );
            // The previous window only when Redis lacks some of it (a sync that failed
            // across a window's end), or its total was last read before every gateway
            // had written its count of it: it is otherwise known.
            if let Some(n1) = n1 {
                let k1 = Self::redis_key(&redis.prefix, key, w, b.saturating_sub(1));
                self.count_cmd(&mut pipe, k1, n1, ttl);
            }
        }
        for &(_, key, w, b) in &stale {
            for b in [b, b.saturating_sub(1)] {
                self.count_cmd(&mut pipe, Self::redis_key(&redis.prefix, key, w, b), 0, 0);
            }
        }
        let answers: Vec<redis::RedisResult<redis::Value>> = redis
            .run(|mut c| async move { pipe.query_async(&mut c).await })
            .await?;
        // A Redis that answers but refuses what sharing needs (out of memory under
        // `noeviction`, a read-only replica, a user without write or script rights,
        // still loading its data) is as good as gone, and judged so: fallbacks apply and
        // `sipfence_redis_up` says 0 (QA 87 F1: its errors were taken for keys of
        // another type, one key's matter, and `fallback = "closed"` let every call by).
        // Nothing is taken as sent: every count goes again with the next sync.
        if let Some(e) = answers
            .iter()
            .find_map(|a| a.as_ref().err().filter(|e| !refuses_one_key(e)))
        {
            return Err(RedisFailure::Error(e.clone()));
        }
        let mut answers = answers.into_iter();
        // SET NX's answer says nothing the GET does not.
        answers.next();
        let mut out = Synced::default();
        // Another mark than the one read before: the counts written before it are gone
        // (SET NX wrote a new mark into an empty store). Written again, so that a
        // contract holds across a Redis restart rather than start its minute over (QA 78
        // F2). Before the counts this pipeline wrote are taken: those are there.
        if let Some(seen) = answers.next().and_then(|v| number(&v.ok()?)) {
            let before = self.epoch.swap(seen, Ordering::Relaxed);
            if before != 0 && before != seen {
                out.resent_keys = self.forget_sent();
                self.fresh.notify_one();
            }
        }
        if let Some(Ok(redis::Value::BulkString(sha))) = answers.next()
            && let Ok(sha) = String::from_utf8(sha)
        {
            let _ = self.script.set(sha);
        }
        let mut refused = |key: u64, w: u64, b: u64, e: &str| {
            out.refused += 1;
            if out.first_refused.is_none() {
                out.first_refused = Some(format!(
                    "{}: {e}",
                    Self::redis_key(&redis.prefix, key, w, b)
                ));
            }
        };
        // A total, or why Redis gave none.
        let mut total = || -> Option<Result<u32, String>> {
            Some(match answers.next()? {
                Ok(v) => number(&v)
                    .map(|t| t.clamp(0, u32::MAX as i64) as u32)
                    .ok_or_else(|| format!("unexpected answer {v:?}")),
                Err(e) => Err(e.to_string()),
            })
        };
        for &(key, w, b, n0, n1) in &batch {
            let Some(t0) = total() else { break };
            let t1 = match n1 {
                Some(n1) => match total() {
                    Some(Ok(t1)) => Some((n1, t1)),
                    Some(Err(e)) => {
                        refused(key, w, b.saturating_sub(1), &e);
                        None
                    }
                    None => break,
                },
                None => None,
            };
            let t0 = match t0 {
                Ok(t) => t,
                Err(e) => {
                    refused(key, w, b, &e);
                    continue;
                }
            };
            if let Some(mut s) = self.map.get_mut(&key) {
                s.synced_ms = now_ms;
                if s.bucket == b {
                    s.sent[0] = n0;
                    s.shared[0] = t0;
                    if let Some((n1, t1)) = t1 {
                        s.sent[1] = n1;
                        s.shared[1] = t1;
                        s.prev_read_ms = now_ms;
                    }
                } else if s.bucket == b + 1 {
                    // The window turned during the sync: what was current is previous.
                    s.sent[1] = n0;
                    s.shared[1] = t0;
                }
            }
        }
        for &(_, key, w, b) in &stale {
            let (Some(t0), Some(t1)) = (total(), total()) else {
                break;
            };
            let (t0, t1) = match (t0, t1) {
                (Ok(t0), Ok(t1)) => (t0, t1),
                (Err(e), _) | (_, Err(e)) => {
                    refused(key, w, b, &e);
                    continue;
                }
            };
            if let Some(mut s) = self.map.get_mut(&key) {
                // Calls counted meanwhile are in `own` beyond `sent`, which the totals
                // do not hold yet: only the totals are replaced.
                if s.bucket == b {
                    s.synced_ms = now_ms;
                    s.prev_read_ms = now_ms;
                    s.shared = [t0, t1];
                    // A total short of what this process wrote into it has lost that
                    // write, under an epoch mark that did not change: a Redis restored
                    // from a snapshot taken before it, a replica promoted before it had
                    // it (QA 87 F2: a caller's 5 calls at one gateway forgotten, 5 more
                    // let by at the other). Sent again with the next sync; judged
                    // meanwhile on the total plus all this process counted.
                    for w in 0..2 {
                        if s.shared[w] < s.sent[w] {
                            s.sent[w] = 0;
                            out.lost_keys += 1;
                        }
                    }
                }
            }
        }
        self.degraded.store(false, Ordering::Relaxed);
        Ok(out)
    }

    /// This process's field (instance name and random tag), which the concurrent
    /// calls' hashes use too ([`super::calls`]).
    pub fn field(&self) -> &str {
        &self.field
    }

    /// The sync interval, which [`Self::run`] sets (for a caller that syncs itself).
    pub fn pace(&self, every: Duration) {
        self.every_ms
            .store(every.as_millis() as u64, Ordering::Relaxed);
    }

    /// Syncs every `every` until the process ends; marks the counter degraded while
    /// Redis cannot be reached and counts the failures.
    pub async fn run(
        self: Arc<Self>,
        redis: Arc<Redis>,
        every: Duration,
        on_result: impl Fn(Result<&Synced, &RedisFailure>),
    ) {
        self.pace(every);
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Syncs prompted by new keys come at most this often: a flood of invented
        // callers would otherwise keep Redis and this task busy. Short, because a
        // new key's calls are judged on this gateway's count alone until then (a
        // woken sync sends only the keys counted since the last one: cheap).
        let gap = (every / 50).max(Duration::from_millis(1));
        #[derive(PartialEq)]
        enum Reach {
            Unknown,
            Up,
            Down,
        }
        let mut state = Reach::Unknown;
        // Keys Redis refuses: one line when it starts, one when it is over.
        let mut refusing = false;
        let mut lost_logged: Option<std::time::Instant> = None;
        let mut clock_read: Option<std::time::Instant> = None;
        loop {
            let every_key = tokio::select! {
                _ = tick.tick() => true,
                _ = self.fresh.notified() => false,
            };
            // Until it is first measured, at every tick (QA 194 A4: a first try before
            // Redis answered left the gauge at 0 for 30 s).
            if every_key
                && clock_read.is_none_or(|t| t.elapsed() >= Duration::from_secs(30))
                && self.measure_clock(&redis).await
            {
                clock_read = Some(std::time::Instant::now());
            }
            // One line when the store goes, at start as well as later, and one when it
            // is back: what an operator reading the journal after the fact needs.
            match self.sync(&redis, crate::cli::steady_ms(), every_key).await {
                Ok(n) => {
                    match state {
                        Reach::Unknown => {
                            tracing::info!("redis reachable: rate counters are shared")
                        }
                        Reach::Down => tracing::warn!(
                            "redis reachable again: rate counters are shared again, the calls counted meanwhile sent"
                        ),
                        Reach::Up => {}
                    }
                    state = Reach::Up;
                    if n.resent_keys > 0 {
                        tracing::warn!(
                            keys = n.resent_keys,
                            "redis lost the shared counts (restarted empty, or flushed): this gateway sends its counts of the current windows again"
                        );
                    }
                    // One line a minute at most: a restore is found key by key, as
                    // the read-back reaches each.
                    if n.lost_keys > 0
                        && lost_logged.is_none_or(|t: std::time::Instant| {
                            t.elapsed() >= Duration::from_secs(60)
                        })
                    {
                        lost_logged = Some(std::time::Instant::now());
                        tracing::warn!(
                            windows = n.lost_keys,
                            "redis lost counts this gateway had written (restored from an older snapshot, or a replica promoted before it had them): sent again"
                        );
                    }
                    // Over only when a tick's sync, which sends every key with counts
                    // unwritten (a refused key's stay so), found none refused: a sync
                    // woken for new keys does not send it (QA 90 N4: the two lines
                    // alternated while the key stayed of another type).
                    if n.refused > 0 && !refusing {
                        refusing = true;
                        tracing::warn!(
                            keys = n.refused,
                            first = n.first_refused.as_deref().unwrap_or(""),
                            "redis refuses some rate counter keys (a key of another type where sipfence keeps a count?): the callers they count are judged on this gateway's count alone until it accepts them"
                        );
                    } else if n.refused == 0 && refusing && every_key {
                        refusing = false;
                        tracing::info!("redis accepts every rate counter key again");
                    }
                    on_result(Ok(&n));
                }
                Err(e) => {
                    self.degraded.store(true, Ordering::Relaxed);
                    if state != Reach::Down {
                        tracing::warn!(error = %e, "redis unreachable, or refusing what sharing needs, until it is back: rate rules judge this gateway's count alone, and those set to fallback = \"closed\" refuse every call they judge");
                    }
                    state = Reach::Down;
                    on_result(Err(&e));
                }
            }
            tokio::time::sleep(gap).await;
        }
    }
}

/// What one sync did.
#[derive(Debug, Default)]
pub struct Synced {
    /// Commands Redis refused, and the first of them (its key and the error).
    pub refused: usize,
    pub first_refused: Option<String>,
    /// Redis lost the counts (its epoch mark changed): keys whose counts this
    /// instance sends again.
    pub resent_keys: usize,
    /// Windows read back with a total short of what this process had written into it
    /// (Redis lost the write without losing its epoch mark): sent again.
    pub lost_keys: usize,
}

impl RateCounter for SharedRateCounter {
    // Per gateway, not through Redis: a retransmission, and a digest answer, come back
    // to the gateway that saw the request first (with a shared `auth_secret` an answer
    // may be replayed once at another: see the README).
    fn recent(&self) -> Option<&Recent> {
        Some(&self.recent)
    }
    fn hit(&self, key: u64, now_ms: u64, window_ms: u64) -> u32 {
        let window_ms = window_ms.max(1);
        let bucket = now_ms / window_ms;
        if let Some(mut s) = self.map.get_mut(&key) {
            let n = Self::count(&mut s, now_ms, window_ms, bucket);
            // Its first call since the last sync: for the next sync woken before a tick.
            if s.own[0].wrapping_sub(s.sent[0]) == 1 {
                self.wake(key);
            }
            // The first call of a window on a key: its judgement leans on the previous
            // window's total, which no sync has read since that window ended (a whole
            // window's calls at the other gateways, when this one was quiet): read now,
            // as for a key new here.
            if s.prev_read_ms < bucket * window_ms {
                self.fresh.notify_one();
            }
            return n;
        }
        // Only a new key pays for the size check (DashMap::len visits every shard). As
        // the local counter: a new caller the full table cannot keep counts as its own
        // first (a shared overflow key refused every tenant's new callers for one
        // tenant's flood), unless its limit must hold (a lockout, a suspect): then it
        // shares its trunk's overflow key. A trunk's own key is always kept.
        let key = if self.map.len() >= self.capacity {
            match crate::policy::rate::when_full(key) {
                Some(k) if k == key => key,
                Some(overflow) => {
                    self.overflowed.fetch_add(1, Ordering::Relaxed);
                    overflow
                }
                None => {
                    self.overflowed.fetch_add(1, Ordering::Relaxed);
                    return 1;
                }
            }
        } else {
            key
        };
        let mut s = self.map.entry(key).or_insert_with(|| {
            self.wake(key);
            self.fresh.notify_one();
            Slot {
                window_ms,
                bucket,
                ..Slot::default()
            }
        });
        Self::count(&mut s, now_ms, window_ms, bucket)
    }

    fn peek(&self, key: u64, now_ms: u64, window_ms: u64) -> u32 {
        // What this gateway counted and the totals it last learnt: a key it never
        // counted reads 0 until it counts one (only counted keys are synced).
        let read = |key: u64| {
            self.map.get(&key).map(|s| {
                let mut s = *s;
                s.roll(now_ms / window_ms.max(1));
                s.estimate(now_ms)
            })
        };
        // A key that must hold reads its trunk's overflow counter while the table is
        // full, as the local counter does.
        read(key).unwrap_or_else(|| {
            crate::policy::rate::read_when_absent(key, || self.map.len() >= self.capacity)
                .and_then(read)
                .unwrap_or(0)
        })
    }

    fn degraded(&self) -> bool {
        self.degraded.load(Ordering::Relaxed)
    }

    fn housekeep(&self, now_ms: u64) {
        self.map
            .retain(|_, s| now_ms.saturating_sub(s.last_ms) <= 2 * s.window_ms);
        self.recent.sweep(now_ms);
    }

    fn keys(&self) -> usize {
        self.map.len()
    }
    fn overflowed(&self) -> u64 {
        self.overflowed.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_locally_until_a_sync_and_slides() {
        let c = SharedRateCounter::new(16, "gw");
        assert!(c.degraded());
        // Bucket 10 of one-minute windows.
        let t = 600_000;
        for i in 1..=5 {
            assert_eq!(c.hit(7, t + i, 60_000), i as u32);
        }
        // What another instance reported, as a sync would store it.
        c.map.get_mut(&7).unwrap().shared = [20, 0];
        c.map.get_mut(&7).unwrap().sent = [5, 0];
        assert_eq!(c.hit(7, t + 10, 60_000), 21);
        // Looking counts nothing, and includes the other instances' share.
        assert_eq!(c.peek(7, t + 20, 60_000), 21);
        assert_eq!(c.peek(8, t + 20, 60_000), 0);
        assert_eq!(c.peek(7, t + 90_000, 60_000), 21 / 2);
        // Half-way through the next window: 21 / 2 of the previous one, plus this call.
        assert_eq!(c.hit(7, t + 90_000, 60_000), 1 + 21 / 2);
    }

    /// An allowance (a `rate-limit` rule) is used up by the calls let through, on this
    /// gateway and (once synced) the others; refused attempts leave it be.
    #[test]
    fn an_allowance_counts_what_passed_everywhere() {
        // What the decision does: look, and count the call let through.
        fn admit(c: &SharedRateCounter, key: u64, at: u64, window: u64, limit: u32) -> bool {
            let open = c.allows(key, at, window, limit);
            if open {
                c.hit(key, at, window);
            }
            open
        }
        let c = SharedRateCounter::new(16, "gw");
        let t = 600_000;
        assert!(admit(&c, 7, t, 60_000, 3));
        assert!(admit(&c, 7, t + 1, 60_000, 3));
        assert!(admit(&c, 7, t + 2, 60_000, 3));
        for i in 3..50 {
            assert!(!admit(&c, 7, t + i, 60_000, 3), "{i}");
        }
        assert_eq!(c.peek(7, t + 50, 60_000), 3, "refusals are not counted");
        // The next minute: the previous one's weight falls off as the allowance
        // refills: one call at once, the next a third of the way through.
        assert!(admit(&c, 7, t + 60_000 + 10_000, 60_000, 3));
        assert!(!admit(&c, 7, t + 60_000 + 15_000, 60_000, 3));
        assert!(admit(&c, 7, t + 60_000 + 20_001, 60_000, 3));
        // Another gateway let two through this minute (as a sync would store it).
        let c = SharedRateCounter::new(16, "gw");
        assert!(admit(&c, 8, t, 60_000, 3));
        c.map.get_mut(&8).unwrap().shared = [2, 0];
        assert!(!admit(&c, 8, t + 1, 60_000, 3));
    }

    /// A full table keeps no new caller (each counts as its own first: no tenant's
    /// flood refuses another's callers) but always a trunk's own key.
    #[test]
    fn a_full_table_keeps_no_newcomer_but_trunk_keys() {
        use crate::policy::rate::{keyed_closed, keyed_for, trunk_key};
        let (t0, t1) = (0x1111_0000_0000_0000u64, 0x2222_0000_0000_0000u64);
        let c = SharedRateCounter::new(2, "gw");
        c.hit(keyed_for(t0, 1), 0, 60_000);
        c.hit(keyed_for(t0, 2), 0, 60_000);
        assert_eq!(c.hit(keyed_for(t1, 3), 0, 60_000), 1);
        assert_eq!(c.hit(keyed_for(t1, 3), 0, 60_000), 1);
        assert_eq!(c.hit(keyed_for(t1, 4), 0, 60_000), 1);
        assert_eq!(c.overflowed(), 3);
        assert_eq!(c.hit(trunk_key(t1), 0, 60_000), 1);
        assert_eq!(c.hit(trunk_key(t1), 0, 60_000), 2);
        assert_eq!(c.keys(), 3);
        assert_eq!(c.hit(keyed_closed(t1, 5), 0, 60_000), 1);
        assert_eq!(c.hit(keyed_closed(t1, 6), 0, 60_000), 2);
        assert_eq!(c.keys(), 4);
        // A look at a key that must hold reads the overflow counter it would go to.
        assert_eq!(c.peek(keyed_closed(t1, 7), 0, 60_000), 2);
        assert_eq!(c.peek(keyed_closed(t0, 7), 0, 60_000), 0);
        assert_eq!(c.peek(keyed_for(t1, 7), 0, 60_000), 0);
        c.housekeep(1_000_000);
        assert_eq!(c.keys(), 0);
    }
}
