//! Calls up per trunk, for a trunk's contracted number of concurrent calls
//! (`max_concurrent_calls`, rule `concurrent-calls`): the same stream of call events
//! that feeds the behaviour features (the final response to the INVITE, the BYE) says
//! when a call admitted here has ended.
//!
//! A stateless proxy never learns of a call that ends out of its sight, so every call
//! has a deadline, pushed back by what it is seen to do: [`RING_MS`] from the INVITE or
//! its last provisional response (RFC 3261's Timer C, three minutes, and a margin),
//! [`ANSWERED_MS`] from the answer. A call past its deadline no longer counts. The
//! table only ever holds admitted calls, so it is bounded by the sum of the trunks'
//! limits whatever an attacker sends.
//!
//! With `[redis]`, gateways in front of the same trunk share its limit: each publishes
//! its own count and learns the others' ([`crate::cluster::calls`]), and a call is
//! admitted when the calls up here and elsewhere leave a place.

use std::collections::HashMap;
use std::sync::Mutex;

use super::{CallRef, Event};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};

/// An unanswered call counts this long after its INVITE or last 18x.
pub const RING_MS: u64 = 200_000;
/// An answered call whose BYE was never seen counts this long after the answer.
pub const ANSWERED_MS: u64 = 4 * 3_600_000;
#[derive(Debug, Clone, Copy)]
struct Live {
    trunk: u64,
    answered: bool,
    deadline_ms: u64,
    /// When its caller's BYE first went to the core, which has not answered it (0: none).
    bye_ms: u64,
}

#[derive(Debug, Default)]
struct Table {
    calls: HashMap<u64, Live, ahash::RandomState>,
    /// Calls in `calls` per trunk ([`crate::policy::Trunk::id`]: a reload that adds,
    /// removes or reorders trunks leaves each call counted on its own trunk).
    up: HashMap<u64, u32, ahash::RandomState>,
    /// Calls up at the other gateways, per trunk, as last learnt through Redis.
    elsewhere: HashMap<u64, u32, ahash::RandomState>,
    /// Callers' BYEs, sent to the core, of calls not held here on trunks whose calls
    /// are shared: when each was sent (steady ms). A call admitted at another gateway
    /// and ended through this one holds its place there until that gateway is told
    /// (QA 198 F1: a PBX that sent its BYEs to the other gateway of two filled its trunk
    /// with calls long over, and both refused calls).
    byes_elsewhere: HashMap<u64, u64, ahash::RandomState>,
    /// Calls the core's 2xx to such a BYE ended, to tell the other gateways.
    ended: Vec<u64>,
    /// No call in `calls` has a deadline before this (0: not known). Deadlines only
    /// move later, so a sweep before it would free nothing: a full trunk's refusals cost
    /// one comparison, not a pass over every call up (QA 148: with 100,000 calls up,
    /// each refusal took a third of a millisecond of the worker, whatever the trunk).
    earliest_ms: u64,
}

impl Table {
    fn insert(&mut self, call: u64, l: Live) {
        self.earliest_ms = self.earliest_ms.min(l.deadline_ms);
        self.calls.insert(call, l);
    }
    fn end(&mut self, call: u64) {
        if let Some(l) = self.calls.remove(&call)
            && let Some(n) = self.up.get_mut(&l.trunk)
        {
            *n = n.saturating_sub(1);
        }
    }
    fn expire(&mut self, now_ms: u64) {
        if now_ms < self.earliest_ms {
            return;
        }
        let (up, mut earliest) = (&mut self.up, u64::MAX);
        self.calls.retain(|_, l| {
            let keep = l.deadline_ms > now_ms;
            if keep {
                earliest = earliest.min(l.deadline_ms);
            } else if let Some(n) = up.get_mut(&l.trunk) {
                *n = n.saturating_sub(1);
            }
            keep
        });
        self.earliest_ms = earliest;
    }
}

/// The calls up, per trunk. One lock: it is taken once per INVITE admitted and once per
/// later message of a call, on gateways that limit concurrent calls at all.
#[derive(Debug, Default)]
pub struct LiveCalls {
    t: Mutex<Table>,
    /// Whether other gateways share the calls ([`crate::cluster::calls`]): only then is
    /// a BYE of a call not held here of any use to remember.
    shared: AtomicBool,
    /// Calls this gateway told the others had ended, and calls of its own it learnt
    /// had ended through another gateway.
    told: AtomicU64,
    heard: AtomicU64,
}

/// At most this many BYEs of calls held elsewhere are remembered, and this many ended
/// calls wait to be told: a gateway's BYEs of one sync interval (50 ms) at thousands of
/// calls a second, whatever an attacker sends.
pub const ELSEWHERE_MAX: usize = 4_096;

/// A BYE's answer comes within its transaction's time (RFC 3261 17.1.2.2: 64 T1).
const BYE_TXN_MS: u64 = 32_000;

impl LiveCalls {
    pub fn new() -> LiveCalls {
        LiveCalls::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        // A poisoned lock only means a panic elsewhere mid-update of plain counts.
        self.t.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Admits `call` on `trunk` when fewer than `limit` of its calls are up. A call
    /// already up (a retransmitted INVITE) is admitted again without counting twice.
    pub fn admit(&self, trunk: u64, call: u64, limit: u32, now_ms: u64) -> bool {
        let mut t = self.lock();
        if t.calls.contains_key(&call) {
            return true;
        }
        let up = |t: &Table| {
            let here = t.up.get(&trunk).copied().unwrap_or(0);
            here.saturating_add(t.elsewhere.get(&trunk).copied().unwrap_or(0))
        };
        if up(&t) >= limit {
            // Full: calls whose end went unseen may be holding places.
            t.expire(now_ms);
            if up(&t) >= limit {
                return false;
            }
        }
        *t.up.entry(trunk).or_default() += 1;
        t.insert(
            call,
            Live {
                trunk,
                answered: false,
                deadline_ms: now_ms + RING_MS,
                bye_ms: 0,
            },
        );
        true
    }

    /// A call that was admitted and then not sent (a later rule or the transport
    /// refused it) gives its place back.
    pub fn forget(&self, call: u64) {
        let mut t = self.lock();
        if t.calls.get(&call).is_some_and(|l| !l.answered) {
            t.end(call);
        }
    }

    /// A later message of a call. A CANCEL does not end the call (the callee may have
    /// answered meanwhile): the 487 that answers the INVITE does. An answered call is
    /// kept under its dialog, which its BYE names.
    pub fn on_event(&self, r: CallRef, ev: Event, now_ms: u64) {
        let mut t = self.lock();
        let call = r.call;
        let Some(l) = t.calls.get_mut(&call) else {
            if self.shared.load(Relaxed) {
                self.elsewhere_event(&mut t, r, ev, now_ms);
            }
            return;
        };
        match ev {
            Event::Ringing | Event::Progress if !l.answered => l.deadline_ms = now_ms + RING_MS,
            Event::Answered if !l.answered => {
                l.answered = true;
                l.deadline_ms = now_ms + ANSWERED_MS;
                let live = *l;
                if r.dialog != 0 && r.dialog != call {
                    if t.calls.contains_key(&r.dialog) {
                        // The dialog is up already: this was a copy of its INVITE the
                        // proxy no longer knew for one (its memory of transactions is
                        // bounded), and takes no second place.
                        t.end(call);
                    } else {
                        t.calls.remove(&call);
                        t.insert(r.dialog, live);
                    }
                }
            }
            Event::Cancelled | Event::Failed | Event::Challenged if !l.answered => t.end(call),
            Event::Bye => t.end(call),
            // Not ended by itself: a BYE the core refuses (481, 500: one a caller made to
            // be refused while the call stays up, QA 47) or drops without a word (QA
            // 127: Kamailio's stock config drops a `friendly-scanner`'s) frees nothing.
            // One its core never answered because the core is down does
            // ([`LiveCalls::next_hop_down`]).
            Event::ByeSent if l.answered && l.bye_ms == 0 => l.bye_ms = now_ms.max(1),
            Event::ByeRefused if l.answered => l.bye_ms = 0,
            _ => {}
        }
    }

    /// An event of a call not held here: a caller's BYE on a limited trunk is
    /// remembered, and the core's 2xx to it makes the call one to tell the others of.
    fn elsewhere_event(&self, t: &mut Table, r: CallRef, ev: Event, now_ms: u64) {
        match ev {
            Event::ByeSent if r.limited != 0 => {
                if t.byes_elsewhere.len() >= ELSEWHERE_MAX {
                    t.byes_elsewhere
                        .retain(|_, at| now_ms.saturating_sub(*at) < BYE_TXN_MS);
                }
                if t.byes_elsewhere.len() < ELSEWHERE_MAX {
                    t.byes_elsewhere.insert(r.call, now_ms);
                }
            }
            Event::Bye => {
                let ours_to_tell = t.byes_elsewhere.remove(&r.call).is_some();
                if ours_to_tell && t.ended.len() < ELSEWHERE_MAX {
                    t.ended.push(r.call);
                }
            }
            Event::ByeRefused => {
                t.byes_elsewhere.remove(&r.call);
            }
            _ => {}
        }
    }

    /// Shares calls with other gateways from now on: BYEs of calls they hold are
    /// remembered to tell them.
    pub fn share_with_others(&self) {
        self.shared.store(true, Relaxed);
    }

    /// The calls of other gateways that ended through this one since the last call,
    /// to tell them ([`crate::cluster::calls`]).
    pub fn ended_elsewhere(&self) -> Vec<u64> {
        std::mem::take(&mut self.lock().ended)
    }

    /// `n` calls ended here were told to the other gateways.
    pub fn told_others(&self, n: usize) {
        self.told.fetch_add(n as u64, Relaxed);
    }

    /// Other gateways saw `calls` end: those held here give their places back.
    pub fn ended_by_others(&self, calls: &[u64]) {
        let mut t = self.lock();
        for c in calls {
            if t.calls.contains_key(c) {
                t.end(*c);
                self.heard.fetch_add(1, Relaxed);
            }
        }
    }

    /// Calls this gateway told the others had ended, and calls of its own that
    /// ended through another gateway, since the start.
    pub fn ends_shared(&self) -> (u64, u64) {
        (self.told.load(Relaxed), self.heard.load(Relaxed))
    }

    /// The next hop of `trunks` is down (marked by its probes, or its TCP connection
    /// failed): the calls on them whose caller's BYE went to it unanswered since
    /// `since_ms` have ended for their callers (RFC 3261 15.1.1), and give their places
    /// back (QA 124: held for hours after a core's outage, they refused calls once it
    /// was back). A BYE left unanswered before that was the live core's silence, not
    /// the outage's (QA 128: a call whose BYE the core had dropped came free at a later
    /// outage).
    pub fn next_hop_down(&self, trunks: &[u64], since_ms: u64) {
        let mut t = self.lock();
        let ended: Vec<u64> = t
            .calls
            .iter()
            .filter(|(_, l)| l.bye_ms != 0 && l.bye_ms >= since_ms && trunks.contains(&l.trunk))
            .map(|(&k, _)| k)
            .collect();
        for k in ended {
            t.end(k);
        }
    }

    /// Calls up on `trunk` at this gateway (those past their deadline included until
    /// the trunk is next full).
    pub fn up(&self, trunk: u64) -> u32 {
        self.lock().up.get(&trunk).copied().unwrap_or(0)
    }

    /// Calls up on `trunk` at this gateway now, past deadlines swept: what it tells the
    /// other gateways.
    pub fn up_now(&self, trunk: u64, now_ms: u64) -> u32 {
        let mut t = self.lock();
        t.expire(now_ms);
        t.up.get(&trunk).copied().unwrap_or(0)
    }

    /// What the other gateways have up, per trunk: replaces what was known (a trunk
    /// left out has none elsewhere).
    pub fn set_elsewhere(&self, counts: impl IntoIterator<Item = (u64, u32)>) {
        let mut t = self.lock();
        t.elsewhere.clear();
        t.elsewhere.extend(counts);
    }

    /// Calls up on `trunk` at the other gateways, as last learnt.
    pub fn elsewhere(&self, trunk: u64) -> u32 {
        self.lock().elsewhere.get(&trunk).copied().unwrap_or(0)
    }

    /// The calls up at `now_ms`, written for the next process (`[proxy] calls_file`):
    /// a restart must not give away the places of the calls that go on through it
    /// (QA 132: after one gateway's restart its calls were counted nowhere, and the
    /// trunk's cap let twice its calls up). A first line names the form, then one
    /// line per call: its key, trunk id, answered (0/1), deadline and BYE time (ms);
    /// call keys and trunk ids are hashes of what the messages and the policy say,
    /// the same in every process. `field`: the name this gateway's count has in Redis,
    /// which the next process takes over (a line `field NAME` after the first). The stop
    /// time goes in as the first call line, [`stop_line`]: a call of no trunk that ended
    /// at the stop, which every earlier reader skips (QA 150: the `stopped` line written
    /// before made the release before it refuse the whole file on a rollback, and let
    /// a trunk's calls past its limit).
    ///
    /// The table runs on the steady clock (`now_ms`); the file is written in calendar
    /// time (`wall_ms` now), which the next process reads its own steady clock by (it
    /// starts at the calendar time).
    pub fn save(&self, now_ms: u64, wall_ms: u64, field: Option<&str>) -> (String, usize) {
        let mut t = self.lock();
        t.expire(now_ms);
        let wall = |ms: u64| crate::time::on_calendar(ms, now_ms, wall_ms);
        let mut out = String::from(CALLS_FORM);
        out.push('\n');
        if let Some(f) = field {
            out.push_str(&format!("field {f}\n"));
        }
        out.push_str(&stop_line(wall_ms));
        for (k, l) in &t.calls {
            out.push_str(&format!(
                "{k} {} {} {} {}\n",
                l.trunk,
                u8::from(l.answered),
                wall(l.deadline_ms),
                if l.bye_ms == 0 { 0 } else { wall(l.bye_ms) }
            ));
        }
        (out, t.calls.len())
    }

    /// Takes back the calls [`LiveCalls::save`] wrote, at `now_ms`, on the `limited`
    /// trunks (id, limit) only (QA 134: a call of a trunk renamed or removed since was
    /// said counted and counted nowhere), at most their limits' sum (the table stays
    /// bounded whatever a file holds): those past their deadline are dropped, one known
    /// already is kept as it is. Nothing is taken from a text with a line that is not
    /// as written, nor one no stop could have written (a deadline further than a call
    /// has, a BYE after now: QA 134, a hand-edited deadline a century on held a place
    /// for ever): the line (from 1) and why. A file whose stop was more than
    /// [`STALE_MS`] ago gives none (QA 137: a gateway stopped for hours came back with
    /// its channels held by calls whose BYEs it could not have seen).
    ///
    /// `written_ms`: when the file was last written, by its file system, for a file
    /// without its stop time (one an earlier version wrote: QA 140, its age was not
    /// seen).
    pub fn restore(
        &self,
        text: &str,
        now_ms: u64,
        written_ms: Option<u64>,
        limited: &[(u64, u32)],
    ) -> Result<Restored, (usize, String)> {
        let mut lines = text.lines().enumerate().peekable();
        match lines.next() {
            Some((_, first)) if first == CALLS_FORM => {}
            _ => {
                return Err((
                    1,
                    format!("not a calls file (its first line must be '{CALLS_FORM}')"),
                ));
            }
        }
        // The field line ([`field_in`] reads it).
        if lines.peek().is_some_and(|(_, l)| l.starts_with("field ")) {
            if field_in(text).is_none() {
                return Err((
                    2,
                    "a field name must be 1 to 200 characters, no blanks".into(),
                ));
            }
            lines.next();
        }
        let mut stopped = None;
        if let Some((i, l)) = lines.peek().copied()
            && let Some(v) = stop_of(l)
        {
            match digits(v) {
                Some(at) => stopped = Some(at),
                None => {
                    return Err((
                        i + 1,
                        "a stop time not in digits: no stop wrote this".into(),
                    ));
                }
            }
            lines.next();
        }
        // A stop after now: the clock went back since (NTP stepped at boot, a VM moved:
        // QA 192 F9, 2 s refused the file and freed every call's place). Up to a
        // restart's length the file is read as written at a stop just now, its times
        // moved back with the clock; further, or a file system date after now (a copy:
        // QA 141), it has no age to trust.
        let back = match stopped {
            Some(at) if at > now_ms && at - now_ms <= STALE_MS => at - now_ms,
            _ => 0,
        };
        let now_ms = now_ms + back;
        let stopped = stopped.or(written_ms);
        let stale = stopped
            .is_some_and(|at| at > now_ms + CLOCK_SLACK_MS || now_ms.saturating_sub(at) > STALE_MS);
        // What a stop could have written is told against the stop (a file that says
        // it was written later than now is stale, not false).
        let written_at = stopped.map_or(now_ms, |at| at.max(now_ms));
        let mut calls = vec![];
        for (i, line) in lines {
            let f: Vec<&str> = line.split(' ').collect();
            let parsed = match f.as_slice() {
                [k, trunk, answered, deadline, bye] => (|| {
                    let answered = match *answered {
                        "0" => false,
                        "1" => true,
                        _ => return None,
                    };
                    Some((
                        digits(k)?,
                        Live {
                            trunk: digits(trunk)?,
                            answered,
                            deadline_ms: digits(deadline)?,
                            bye_ms: digits(bye)?,
                        },
                    ))
                })(),
                _ => None,
            };
            match parsed {
                Some((_, l))
                    if l.deadline_ms
                        > written_at + if l.answered { ANSWERED_MS } else { RING_MS }
                        || l.bye_ms > written_at =>
                {
                    return Err((
                        i + 1,
                        "a deadline further than a call has, or a BYE after now: no stop wrote this".into(),
                    ));
                }
                Some(c) => calls.push(c),
                None => {
                    return Err((
                        i + 1,
                        "expected: call trunk answered(0|1) deadline_ms bye_ms, in digits".into(),
                    ));
                }
            }
        }
        let max: usize = limited.iter().map(|&(_, n)| n as usize).sum();
        let mut t = self.lock();
        let mut r = Restored {
            age_ms: stopped.map(|at| now_ms.saturating_sub(at)),
            ahead_ms: stopped.map_or(0, |at| at.saturating_sub(now_ms)),
            back_ms: back,
            ..Restored::default()
        };
        for (k, mut l) in calls {
            // On this clock.
            l.deadline_ms -= back.min(l.deadline_ms);
            l.bye_ms -= back.min(l.bye_ms);
            let now_ms = now_ms - back;
            if stale {
                r.stale += 1;
            } else if l.deadline_ms <= now_ms {
                r.ended += 1;
            } else if !limited.iter().any(|&(id, _)| id == l.trunk) {
                r.unlimited += 1;
            } else if r.counted >= max {
                r.beyond += 1;
            } else if !t.calls.contains_key(&k) {
                *t.up.entry(l.trunk).or_default() += 1;
                t.insert(k, l);
                r.counted += 1;
            }
        }
        Ok(r)
    }
}

/// The line of a calls file that says when the stop wrote it: a call (key 0, trunk 0,
/// unanswered) whose deadline is the stop, which a reader that knows no stop time drops
/// as ended, of no trunk it limits (trunk ids are hashes of the trunks' names).
fn stop_line(now_ms: u64) -> String {
    format!("0 0 0 {now_ms} 0\n")
}

/// The stop time a line says, as [`stop_line`] writes it or as the release of session
/// 49 wrote it (`stopped MS`), not yet read as a number.
fn stop_of(line: &str) -> Option<&str> {
    line.strip_prefix("stopped ")
        .or_else(|| line.strip_prefix("0 0 0 ")?.strip_suffix(" 0"))
}

/// The name a calls file says the stopped process's count had in Redis (its `field`
/// line), read apart from its calls: a start that refuses the calls still takes the
/// name over, so the count the stop left there dated ahead is replaced, not left to
/// hold places for a minute after the calls ended (QA 136).
pub fn field_in(text: &str) -> Option<&str> {
    let mut lines = text.lines();
    if lines.next() != Some(CALLS_FORM) {
        return None;
    }
    let f = lines.next()?.strip_prefix("field ")?;
    (!f.is_empty() && f.len() <= 200 && !f.chars().any(|c| c.is_whitespace() || c.is_control()))
        .then_some(f)
}

/// A number of a calls file: digits only (`parse` would take a `+`).
fn digits(s: &str) -> Option<u64> {
    s.bytes()
        .all(|c| c.is_ascii_digit())
        .then(|| s.parse().ok())
        .flatten()
}

/// The first line of a calls file ([`LiveCalls::save`]).
const CALLS_FORM: &str = "sipfence calls up, v1";

/// A calls file written longer ago than this is stale: its calls are not counted. A
/// gateway down that long has missed the BYEs of the calls that ended meanwhile (a
/// caller retries its BYE for 32 s, then gives up), and counting them to their
/// four-hour deadline would refuse calls for hours; a restart, drain included, takes
/// less.
pub const STALE_MS: u64 = 10 * 60_000;

/// How far ahead of this process's clock a stop time may be (a clock stepped back
/// between the stop and the start).
const CLOCK_SLACK_MS: u64 = 60_000;

/// Whether `head`, the first bytes of a file, is not a calls file's: someone else's,
/// which a start must not remove nor a stop replace (QA 137: `calls_file` naming the
/// policy's own file removed it, and the next start had no policy). An empty file is
/// someone else's too (QA 140: an empty list file was replaced): a stop writes its
/// file whole, beside it, and renames it into place, so never leaves one empty.
pub fn foreign(head: &[u8]) -> bool {
    let form = CALLS_FORM.as_bytes();
    !(head.starts_with(form) && matches!(head.get(form.len()), None | Some(b'\n') | Some(b'\r')))
}

/// [`foreign`] of the file at `path` (one that cannot be read: no).
pub fn foreign_file(path: &str) -> bool {
    use std::io::Read;
    let mut head = Vec::with_capacity(64);
    std::fs::File::open(path)
        .and_then(|f| f.take(64).read_to_end(&mut head))
        .is_ok_and(|_| foreign(&head))
}

/// What [`LiveCalls::restore`] did with a file's calls: each is in one count, so that
/// the log accounts for every line (QA 135: the calls left out were not said).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Restored {
    /// Counted again.
    pub counted: usize,
    /// Past their deadline meanwhile.
    pub ended: usize,
    /// Of a trunk that no longer limits its calls (renamed, removed, its limit gone).
    pub unlimited: usize,
    /// Beyond the limits' sum (no stop writes that many).
    pub beyond: usize,
    /// Not counted: the file is older than [`STALE_MS`], or dated after now.
    pub stale: usize,
    /// How long ago the stop wrote it (a file without its stop time: unknown).
    pub age_ms: Option<u64>,
    /// How far after now it is dated (a clock stepped back, a copy), if it is.
    pub ahead_ms: u64,
    /// How far the clock went back since the stop, when the file was read as written
    /// at a stop just now ([`LiveCalls::restore`]).
    pub back_ms: u64,
}

impl Restored {
    /// Calls of the file not counted.
    pub fn left_out(&self) -> usize {
        self.ended + self.unlimited + self.beyond + self.stale
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What one process saves, the next takes back: each call on its trunk, answered
    /// or not, with its deadline; a call past its deadline is not; a file with a line
    /// that is not as written gives nothing, and says which line.
    #[test]
    fn calls_up_go_from_one_process_to_the_next() {
        let l = LiveCalls::new();
        assert!(l.admit(7, 1, 2, 0));
        assert!(l.admit(7, 2, 2, 0));
        assert!(l.admit(9, 3, 1, 0));
        l.on_event(CallRef::call(1), Event::Answered, 10);
        let (text, n) = l.save(100, 100, Some("gw0:cafe"));
        assert_eq!(n, 3);
        let next = LiveCalls::new();
        let limited = [(7, 2), (9, 1)];
        assert_eq!(
            next.restore(&text, 200, None, &limited).map(|r| r.counted),
            Ok(3)
        );
        assert_eq!(field_in(&text), Some("gw0:cafe"));
        assert_eq!((next.up(7), next.up(9)), (2, 1));
        assert!(!next.admit(7, 4, 2, 300), "its places are taken");
        next.on_event(CallRef::call(1), Event::Bye, 400);
        assert!(next.admit(7, 4, 2, 400));
        let taken = |l: &LiveCalls, text: &str, now, limited: &[(u64, u32)]| {
            l.restore(text, now, None, limited)
                .map(|r| (r.counted, r.ended, r.unlimited, r.beyond))
        };
        // Past the ringing calls' deadline, only the answered one comes back.
        assert_eq!(
            taken(&LiveCalls::new(), &text, RING_MS + 1, &limited),
            Ok((1, 2, 0, 0))
        );
        assert_eq!(
            taken(&LiveCalls::new(), &text, 200, &[(7, 1)]),
            Ok((1, 0, 1, 1)),
            "bounded"
        );
        // A trunk no longer limited (renamed, removed) takes none.
        let only_9 = LiveCalls::new();
        assert_eq!(taken(&only_9, &text, 200, &[(9, 5)]), Ok((1, 0, 2, 0)));
        assert_eq!(only_9.up(7), 0);
        // Without Redis, no field line; digits only (a '+' is none).
        let (plain, _) = l.save(100, 100, None);
        assert_eq!(
            LiveCalls::new()
                .restore(&plain, 200, None, &limited)
                .map(|r| r.counted),
            Ok(3)
        );
        // The field name of a file whose calls are refused is still read.
        let broken = format!("{text}x\n");
        assert!(
            LiveCalls::new()
                .restore(&broken, 200, None, &limited)
                .is_err()
        );
        assert_eq!(field_in(&broken), Some("gw0:cafe"));
        assert_eq!(field_in(&plain), None);
        let plus = plain.replacen(" 0\n", " +0\n", 1);
        assert!(
            LiveCalls::new()
                .restore(&plus, 200, None, &limited)
                .is_err(),
            "{plus}"
        );
        let bad = format!("{text}12 7 2 5 0\n");
        let lines = bad.lines().count();
        let fresh = LiveCalls::new();
        assert_eq!(
            fresh.restore(&bad, 200, None, &limited).map_err(|e| e.0),
            Err(lines)
        );
        assert_eq!(fresh.up(7), 0, "nothing taken from a bad file");
        assert_eq!(
            fresh.restore("calls\n", 0, None, &limited).map_err(|e| e.0),
            Err(1)
        );
        // Written longer ago than a restart takes: none counted, each said stale.
        let (saved, _) = l.save(100, 100, Some("gw0:cafe"));
        // The stop time, as a call line every earlier reader takes for one of no trunk
        // that ended at the stop (QA 150: a rollback refused the whole file).
        let stop = saved.lines().nth(2).unwrap_or_default();
        assert_eq!(stop, "0 0 0 100 0", "{saved}");
        assert!(stop.split(' ').all(|f| digits(f).is_some()));
        assert!(limited.iter().all(|&(id, _)| id != 0));
        let late = LiveCalls::new();
        assert_eq!(
            late.restore(&saved, 100 + STALE_MS + 1, None, &limited)
                .map(|r| (r.counted, r.stale, r.age_ms)),
            Ok((0, 3, Some(STALE_MS + 1)))
        );
        assert_eq!(late.up(7), 0);
        assert_eq!(
            taken(&LiveCalls::new(), &saved, 100 + STALE_MS, &limited),
            Ok((1, 2, 0, 0))
        );
        // The `stopped` line session 49's release wrote reads the same.
        let legacy = saved.replace("\n0 0 0 100 0\n", "\nstopped 100\n");
        assert_ne!(legacy, saved);
        for text in [&saved, &legacy] {
            assert_eq!(
                taken(&LiveCalls::new(), text, 100 + STALE_MS, &limited),
                Ok((1, 2, 0, 0))
            );
            assert_eq!(
                LiveCalls::new()
                    .restore(text, 100 + STALE_MS + 1, None, &limited)
                    .map(|r| r.stale),
                Ok(3)
            );
        }
        // A stop after now is no stop's, beyond a clock's slack.
        assert_eq!(
            LiveCalls::new()
                .restore(&saved, 95, None, &limited)
                .map(|r| r.counted),
            Ok(3)
        );
        // A stop after now: the clock went back since (QA 192 F9: 2 s freed every
        // place). Up to a restart's length the file reads as written at a stop just
        // now, its times moved back with the clock; further, nothing is counted.
        for back in [2_000, 60_000, STALE_MS] {
            let fresh = LiveCalls::new();
            let now = 1_000_000;
            let (moved, _) = l.save(100, now + back, None);
            assert_eq!(
                fresh
                    .restore(&moved, now, None, &limited)
                    .map(|r| (r.counted, r.stale, r.back_ms)),
                Ok((3, 0, back)),
                "{back}"
            );
            assert_eq!(fresh.up(7), 2);
        }
        let (moved, _) = l.save(100, 1_000_000 + STALE_MS + 1, None);
        assert_eq!(
            LiveCalls::new()
                .restore(&moved, 1_000_000, None, &limited)
                .map(|r| (r.counted, r.stale, r.back_ms)),
            Ok((0, 3, 0))
        );
        // A file without its stop time (an earlier version's) is as old as the file
        // system says it is.
        let (old, _) = l.save(100, 100, None);
        let old = old.replace("0 0 0 100 0\n", "");
        assert_eq!(old.lines().count(), 4, "{old}");
        let at = |now, written| {
            LiveCalls::new()
                .restore(&old, now, written, &limited)
                .map(|r| (r.counted, r.stale))
        };
        assert_eq!(at(200, Some(100)), Ok((3, 0)));
        assert_eq!(at(200 + STALE_MS, Some(100)), Ok((0, 3)));
        assert_eq!(at(200, None), Ok((3, 0)));
        assert_eq!(
            at(200, Some(200 + CLOCK_SLACK_MS + 1)),
            Ok((0, 3)),
            "dated ahead"
        );
        assert_eq!(
            LiveCalls::new()
                .restore(&old, 200, Some(200 + 2 * CLOCK_SLACK_MS), &limited)
                .map(|r| (r.ahead_ms, r.age_ms)),
            Ok((2 * CLOCK_SLACK_MS, Some(0))),
            "how far ahead, for the warning"
        );
        // Someone else's file is foreign, an empty one too (a list file waiting for
        // entries); a calls file is not.
        assert!(!foreign(saved.as_bytes()) && !foreign(CALLS_FORM.as_bytes()));
        assert!(foreign(b"") && foreign(b"[general]\n") && foreign(b"sipfence calls up, v12\n"));
        // Deadlines no stop could have written.
        for line in [
            format!("5 7 1 {} 0", 200 + ANSWERED_MS + 1),
            format!("5 7 0 {} 0", 200 + RING_MS + 1),
            "5 7 1 1000 201".to_string(),
        ] {
            let text = format!("{CALLS_FORM}\n{line}\n");
            assert_eq!(
                fresh.restore(&text, 200, None, &limited).map_err(|e| e.0),
                Err(2),
                "{line}"
            );
        }
    }

    #[test]
    fn a_full_trunk_refuses_until_a_call_ends() {
        let l = LiveCalls::new();
        assert!(l.admit(0, 1, 2, 0));
        assert!(l.admit(0, 2, 2, 0));
        assert!(!l.admit(0, 3, 2, 0));
        // Another trunk has its own count; a retransmission is the same call.
        assert!(l.admit(1, 3, 1, 0));
        assert!(l.admit(0, 1, 2, 10));
        assert_eq!((l.up(0), l.up(1)), (2, 1));
        // Busy (a final failure) ends call 1; a CANCEL alone does not end call 2, its
        // 487 does.
        l.on_event(CallRef::call(1), Event::Failed, 20);
        assert!(l.admit(0, 4, 2, 30));
        l.on_event(CallRef::call(2), Event::Cancel, 40);
        assert!(!l.admit(0, 5, 2, 40));
        l.on_event(CallRef::call(2), Event::Cancelled, 50);
        assert!(l.admit(0, 5, 2, 60));
        // Answered calls end with their BYE, not with a late failure; the BYE names
        // the dialog the answer set up.
        let answer = CallRef {
            call: 4,
            dialog: 40,
            retry: 0,
            limited: 0,
        };
        l.on_event(answer, Event::Answered, 70);
        l.on_event(CallRef::call(4), Event::Failed, 80);
        l.on_event(CallRef::call(40), Event::Failed, 80);
        l.on_event(CallRef::call(4), Event::Bye, 90);
        assert!(!l.admit(0, 6, 2, 90));
        l.on_event(CallRef::call(40), Event::Bye, 100);
        assert!(l.admit(0, 6, 2, 110));
        // Events of calls never admitted change nothing.
        l.on_event(CallRef::call(99), Event::Bye, 120);
        assert_eq!(l.up(0), 2);
        // A call admitted and then not sent gives its place back; an answered one
        // (under its dialog) is not forgotten so.
        l.forget(6);
        assert_eq!(l.up(0), 1);
        l.on_event(CallRef::call(5), Event::Answered, 130);
        l.forget(5);
        l.forget(99);
        assert_eq!(l.up(0), 1);
    }

    #[test]
    fn calls_whose_end_went_unseen_expire() {
        let l = LiveCalls::new();
        assert!(l.admit(0, 1, 1, 0));
        // Ringing pushes the deadline back; an answer gives the call hours.
        l.on_event(CallRef::call(1), Event::Ringing, RING_MS - 1);
        assert!(!l.admit(0, 2, 1, RING_MS + 10));
        assert!(l.admit(0, 2, 1, 2 * RING_MS));
        l.on_event(CallRef::call(2), Event::Answered, 2 * RING_MS);
        assert!(!l.admit(0, 3, 1, 2 * RING_MS + ANSWERED_MS - 1));
        assert!(l.admit(0, 3, 1, 2 * RING_MS + ANSWERED_MS));
        assert_eq!(l.up(0), 1);
    }

    /// A full trunk's refusals sweep the table only once a deadline has passed (QA 148:
    /// each swept every call up), and the sweep still frees what it must: the call
    /// whose deadline is the earliest, on whichever trunk, and after it the next, even
    /// when its deadline moved later meanwhile or it came back under its dialog.
    #[test]
    fn a_full_trunk_sweeps_only_once_a_deadline_has_passed() {
        let l = LiveCalls::new();
        assert!(l.admit(0, 1, 2, 0));
        assert!(l.admit(1, 10, 1, 50_000));
        assert!(l.admit(0, 2, 2, 100_000));
        for at in [0, 150_000, RING_MS - 1] {
            assert!(!l.admit(0, 3, 2, at), "{at}");
        }
        assert_eq!(l.lock().earliest_ms, RING_MS);
        // Call 1's deadline has come: swept, its place taken.
        assert!(l.admit(0, 3, 2, RING_MS));
        assert_eq!(l.lock().earliest_ms, 50_000 + RING_MS);
        // Trunk 1's call rings on, and call 2 is answered under its dialog: the bound
        // stays below them, and the next sweep finds call 3 the one to go.
        l.on_event(CallRef::call(10), Event::Ringing, 60_000);
        l.on_event(
            CallRef {
                call: 2,
                dialog: 20,
                retry: 0,
                limited: 0,
            },
            Event::Answered,
            150_000,
        );
        assert!(!l.admit(0, 4, 2, RING_MS + 2));
        assert_eq!(l.up(1), 1);
        // Past trunk 1's call's first deadline, before its second: nothing to free.
        assert!(!l.admit(0, 4, 2, 255_000));
        assert_eq!(l.up(1), 1, "trunk 1's call rang at 60 s: up until 260 s");
        // Past it: swept with the rest, though call 3 still holds trunk 0's place.
        assert!(!l.admit(0, 4, 2, RING_MS + RING_MS - 1));
        assert_eq!(l.up(1), 0);
        assert!(l.admit(0, 4, 2, RING_MS + RING_MS));
        assert_eq!(l.up(0), 2);
    }

    /// A call admitted at gateway A and hung up through gateway B (QA 198 F1): B, which
    /// shares the calls, remembers the caller's BYE on the limited trunk and, at the
    /// core's 2xx, has the call to tell A, which gives the place back. A BYE the core
    /// refuses, one on a trunk without a limit, and any at a gateway that shares nothing
    /// tell nothing.
    #[test]
    fn a_call_ended_through_another_gateway_gives_its_place_back() {
        let (a, b) = (LiveCalls::new(), LiveCalls::new());
        let (trunk, call, dialog) = (7, 11, 12);
        assert!(a.admit(trunk, call, 1, 0));
        a.on_event(
            CallRef {
                call,
                dialog,
                ..CallRef::default()
            },
            Event::Answered,
            10,
        );
        assert!(!a.admit(trunk, 13, 1, 20), "the one place is taken");
        let bye = |limited| CallRef {
            call: dialog,
            dialog,
            limited,
            ..CallRef::default()
        };
        // Not shared: nothing to tell.
        b.on_event(bye(trunk), Event::ByeSent, 30);
        b.on_event(bye(0), Event::Bye, 31);
        assert!(b.ended_elsewhere().is_empty());
        b.share_with_others();
        // No limit on the BYE's trunk, or refused by the core: nothing.
        b.on_event(bye(0), Event::ByeSent, 40);
        b.on_event(bye(0), Event::Bye, 41);
        b.on_event(bye(trunk), Event::ByeSent, 42);
        b.on_event(bye(0), Event::ByeRefused, 43);
        b.on_event(bye(0), Event::Bye, 44);
        assert!(b.ended_elsewhere().is_empty());
        // Sent on, then answered 2xx: told.
        b.on_event(bye(trunk), Event::ByeSent, 50);
        b.on_event(bye(0), Event::Bye, 51);
        let ended = b.ended_elsewhere();
        assert_eq!(ended, [dialog]);
        b.told_others(ended.len());
        a.ended_by_others(&ended);
        assert_eq!(a.up(trunk), 0);
        assert!(a.admit(trunk, 13, 1, 60));
        assert_eq!((a.ends_shared(), b.ends_shared()), ((0, 1), (1, 0)));
        // Heard twice (another read of the same ends): given back once.
        a.ended_by_others(&ended);
        assert_eq!((a.up(trunk), a.ends_shared()), (1, (0, 1)));
    }

    #[test]
    fn calls_up_at_other_gateways_take_places() {
        let l = LiveCalls::new();
        l.set_elsewhere([(0, 2), (1, 5)]);
        assert!(l.admit(0, 1, 3, 0));
        assert!(!l.admit(0, 2, 3, 0));
        // What this gateway tells the others is its own count.
        assert_eq!((l.up(0), l.up_now(0, 1), l.elsewhere(0)), (1, 1, 2));
        // The others' calls end: the place frees; a trunk left out has none elsewhere.
        l.set_elsewhere([(0, 1)]);
        assert!(l.admit(0, 2, 3, 0));
        assert!(!l.admit(0, 3, 3, 0));
        assert_eq!(l.elsewhere(1), 0);
        // Sweeping happens when asked for the count to publish.
        assert_eq!(l.up_now(0, RING_MS + 1), 0);
    }
}
