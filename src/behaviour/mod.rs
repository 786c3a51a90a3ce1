//! Behaviour features: how a calling number calls, not who it is. Lists stop numbers
//! someone already reported; a fraud campaign shows itself first in its traffic: many
//! attempts, many different callees, almost nothing answered, calls cancelled just
//! after they ring ("ring-once", 响一声), callees dialled in sequence, answered calls
//! hung up at once.
//!
//! The decision core stays pure: it is handed a [`BehaviourTracker`] and the time, the
//! way it is handed a rate counter. [`decide`](crate::decide::decide) counts each call
//! attempt that reaches the behaviour rules and reads the caller's features back;
//! [`observe`] feeds the later messages of a call (provisional and final responses to
//! the INVITE, CANCEL, BYE) from whatever relays or replays them. The in-process
//! tracker is [`local::LocalTracker`]; the interface is small so that a shared store can
//! stand behind it across gateways. The same events say which calls are up, for a
//! trunk's concurrent-call limit ([`live`]).

pub mod live;
pub mod local;

use serde::Serialize;

use crate::policy::{RuleSet, TrunkTag};
use crate::sip::{Message, Method};

/// What the core tells the tracker about a new call attempt.
#[derive(Debug, Clone, Copy)]
pub struct CallStart {
    /// Key of the caller within its trunk (the same number on two trunks is two
    /// callers: the thresholds are per trunk).
    pub caller: u64,
    /// Key of the call ([`call_key`]), to attach its later messages.
    pub call: u64,
    /// [`retry_key`]: a call the core challenged waits under it for this retry. 0: this
    /// is no retry the core asked for (or not the call it asked about).
    pub retry: u64,
    /// The trunk's [`crate::policy::Trunk::tag`].
    pub trunk: TrunkTag,
    /// Hash of the callee, for the distinct-callee count.
    pub callee_hash: u64,
    /// The callee as a number key ([`crate::numbering::Number::key`]): consecutive
    /// numbers of one length have consecutive keys. `None` when it is not a number.
    pub callee_seq: Option<u64>,
    pub now_ms: u64,
    pub window_ms: u64,
    /// A cancel this soon after the first 18x is a ring-once call.
    pub ring_once_ms: u32,
    /// A call's outcome counts in the answer ratio no sooner than this after its INVITE
    /// ([`Features::settled`]).
    pub settle_ms: u32,
    /// A BYE this soon after the 200 is a short call.
    pub short_call_ms: u32,
    /// A retransmission of an INVITE already counted (the same request within its
    /// transaction): its caller's features are read, nothing is counted again (QA 44: a
    /// stateless proxy sends no 100 Trying, so every UDP call set-up slower than 500 ms
    /// is retransmitted, and counted twice a caller reached its attempts limit at half
    /// of it).
    pub repeat: bool,
}

/// A caller's sliding-window features at one call attempt (that attempt included).
/// Counts cover the last window, the previous one weighted by how much of it still
/// falls inside (the usual two-bucket approximation).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Features {
    pub attempts: u32,
    /// Distinct callees (linear counting over 128 bits: exact for a few, within about
    /// 7% at 30, 10% at 100; never more than the attempts).
    pub callees: u32,
    pub answered: u32,
    /// Attempts whose outcome is known (answered, failed, cancelled): the ASR's
    /// denominator, so that calls still ringing, and this one, are not counted as
    /// unanswered. An outcome counts here (and an answer in `answered`) no sooner than
    /// the settle time after its INVITE (`asr_settle_secs`): outcomes counted as they
    /// came read a campaign whose failures come back at once and whose answers after
    /// 20 s of ringing as all failures at its start (QA 98, QA 99); held back so, the
    /// ratio covers the calls old enough to have their outcome, and a dialler that is
    /// never answered is judged that much later.
    pub settled: u32,
    /// Calls cancelled within the ring-once time of their first 18x.
    pub ring_once: u32,
    /// Distinct callees of those calls (linear counting over 64 bits, never more than
    /// the calls): one person hanging up on the same number four times rang one
    /// callee, a Wangiri campaign rings a new one each time (QA 98).
    pub ring_once_callees: u32,
    /// Distinct callees that the caller's calls reached, with an outcome: rang
    /// (180/183) or answered (linear counting over 64 bits, never more than those
    /// calls). The ring-once callees' share of them tells a campaign (nearly all the
    /// people it rang) from a busy line with a few misdials (QA 98: a PBX pilot with
    /// three among thirty). Callees, not calls: a campaign calling one accomplice
    /// number between its victims, rung and declined at no cost, would dilute a share
    /// of calls at will (QA 99).
    pub reached_callees: u32,
    /// Attempts whose callee lay within [`SEQ_STEP`] of the previous callee, either
    /// way (a sweep downwards, or a dialler whose two channels swap neighbours, is a
    /// sweep too: QA 98), and was not called in the window before (going back and
    /// forth between a few numbers close together is no sweep: QA 99, QA 100; a callee
    /// sharing a bit of the callee bitmap with an earlier one counts as called).
    pub sequential: u32,
    pub short_calls: u32,
    /// Rules this caller is on the watch list for, and until when (Unix ms, 0 = not):
    /// as the tracker returns them, before this call; in a decision, after it.
    #[serde(skip)]
    pub watched: RuleSet,
    pub watch_until_ms: u64,
}

impl Features {
    /// Answer-seizure ratio in percent: answered attempts over the attempts whose
    /// outcome is known (a dialler with many calls ringing at once is not judged low
    /// for them); 100 while none is.
    pub fn asr_percent(&self) -> u32 {
        (self.answered.min(self.settled) * 100)
            .checked_div(self.settled)
            .unwrap_or(100)
    }

    /// Ring-once callees' share of the callees reached, in percent; 0 while none was.
    pub fn ring_once_percent(&self) -> u32 {
        (self.ring_once_callees.min(self.reached_callees) * 100)
            .checked_div(self.reached_callees)
            .unwrap_or(0)
    }
}

/// Largest step, up or down, between consecutive callees that counts as "dialled in
/// sequence" (0, the same callee again, does not).
pub const SEQ_STEP: u64 = 16;

/// What a later message of a call was, once attributed to a known call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// 180 to the INVITE.
    Ringing,
    /// 183 to the INVITE: ringing where no 180 follows (early media for a ring tone),
    /// else before the phone rings (IMS sends 183 at once: QA 159, a call hung up 1 s
    /// after a 180 that came 4 s after its 183 was not ring-once).
    Progress,
    /// 2xx to the INVITE.
    Answered,
    /// The CANCEL request: the caller gave up, but the callee may have answered
    /// meanwhile.
    Cancel,
    /// 487 to the INVITE: the CANCEL took.
    Cancelled,
    /// Another final failure to the INVITE (busy, not found, rejected...).
    Failed,
    /// 401/407, 422 and the other answers that ask for a retry
    /// ([`crate::decide::retry_asked`]). No outcome: the caller's retry (same Call-ID
    /// and From tag) is the same call (QA 48: the retry counted as a second attempt and
    /// its answer was lost; QA 67: so did a 422's). A concurrent-call place is given back until
    /// the retry takes one.
    Challenged,
    Bye,
    /// The caller's BYE, sent on to the core: the caller holds the call over (RFC 3261
    /// 15.1.1) whatever the core makes of it. Its place is given back at the core's 2xx
    /// ([`Event::Bye`]), or when the core is found down with the BYE unanswered
    /// ([`BehaviourTracker::next_hop_down`]: QA 124, places held for hours after an
    /// outage), not at a failure ([`Event::ByeRefused`]) nor at silence alone.
    ByeSent,
    /// The core's final failure to the caller's BYE (481: no such dialog): the call is
    /// up as it was.
    ByeRefused,
}

/// What the tracker made of an event, for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    Answered,
    /// Cancelled within the ring-once time of the first 18x.
    RingOnce,
    Cancelled,
    Failed,
    /// BYE within the short-call time of the answer.
    ShortCall,
    Ended,
}

impl Seen {
    pub const ALL: [Seen; 6] = [
        Seen::Answered,
        Seen::RingOnce,
        Seen::Cancelled,
        Seen::Failed,
        Seen::ShortCall,
        Seen::Ended,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            Seen::Answered => "answered",
            Seen::RingOnce => "ring-once",
            Seen::Cancelled => "cancelled",
            Seen::Failed => "failed",
            Seen::ShortCall => "short-call",
            Seen::Ended => "ended",
        }
    }
    pub fn index(self) -> usize {
        self as usize
    }
}

/// The state behind the behaviour rules.
pub trait BehaviourTracker: Send + Sync {
    /// Counts a call attempt and returns the caller's features, this attempt included.
    fn on_call(&self, c: &CallStart) -> Features;
    /// Puts a caller on the watch list for `rules` until `until_ms`.
    fn watch(&self, caller: u64, rules: RuleSet, until_ms: u64);
    /// A later message of call `call`. Returns the trunk of the call (its tag) and what the
    /// event amounted to, when the call is known (`None` for the events that change
    /// nothing, such as a second 180).
    fn on_event(&self, call: CallRef, ev: Event, now_ms: u64) -> Option<(TrunkTag, Seen)>;
    /// Call `call` goes no further than the gateway (refused here, or not sent): the
    /// places it took are given back, and nothing is counted (its attempt was, by
    /// [`BehaviourTracker::on_call`]). Without it a refused call, whose answer comes from
    /// the gateway and is no event, held its place until pushed out (QA 59: a caller
    /// refused by `behaviour-attempts` filled the call table).
    fn forget(&self, _call: u64) {}
    /// The next hop of `trunks` ([`crate::policy::Trunk::id`]) is down: calls on them
    /// whose caller's BYE it left unanswered since `since_ms` have ended
    /// ([`live::LiveCalls::next_hop_down`]).
    fn next_hop_down(&self, _trunks: &[u64], _since_ms: u64) {}
    /// Admits call `call` on trunk `trunk` ([`crate::policy::Trunk::id`]), which limits
    /// its concurrent calls to `limit`:
    /// false when that many are up ([`live::LiveCalls::admit`]). A tracker that keeps
    /// nothing admits every call.
    fn admit(&self, _trunk: u64, _call: u64, _limit: u32, _now_ms: u64) -> bool {
        true
    }
    /// Calls up on `trunk` ([`crate::policy::Trunk::id`]; a gauge) at `now_ms`: calls
    /// past their deadline no longer counted (QA 52: the gauge showed them until the
    /// trunk's next call).
    fn calls_up(&self, _trunk: u64, _now_ms: u64) -> u32 {
        0
    }
    /// Calls up on `trunk` at the other gateways sharing its limit (a gauge).
    fn calls_elsewhere(&self, _trunk: u64) -> u32 {
        0
    }
    /// Calls of other gateways that ended through this one (told them), and calls of
    /// this one's that ended through another (places given back), since the start.
    fn ends_shared(&self) -> (u64, u64) {
        (0, 0)
    }
}

/// A tracker that keeps nothing: `explain` of a single message, and policies without
/// behaviour rules. Every call looks like the caller's first.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoTracking;

impl BehaviourTracker for NoTracking {
    fn on_call(&self, _c: &CallStart) -> Features {
        Features {
            attempts: 1,
            callees: 1,
            ..Features::default()
        }
    }
    fn watch(&self, _caller: u64, _rules: RuleSet, _until_ms: u64) {}
    fn on_event(&self, _call: CallRef, _ev: Event, _now_ms: u64) -> Option<(TrunkTag, Seen)> {
        None
    }
}

/// Key of a call, from its INVITE: the Call-ID, the caller's From tag and the CSeq
/// number, the INVITE transaction (RFC 3261 17.2.3 less the branch, which a retry
/// changes). The Call-ID alone let one caller give every call the same Call-ID and new
/// From tags, new dialogs to the core but one call here (QA 47); Call-ID and From tag
/// still let two INVITEs with a new CSeq, which a permissive core takes as two dialogs,
/// hold one place under a concurrent-call limit and give one outcome (QA 48). The
/// responses to the INVITE and its CANCEL carry the same three; an answered call is then
/// found by its dialog ([`CallRef::dialog`]), as its BYE carries another CSeq.
pub fn call_key(msg: &Message) -> u64 {
    let n = msg.cseq().map_or(0, |(n, _)| n);
    txn_key(msg.call_id(), msg.from_tag_read().unwrap_or_default(), n)
}

/// Key of the caller's retry of a call the core challenged (401/407): the same Call-ID
/// and From tag with a higher CSeq (RFC 3261 22.2), the same call.
pub fn retry_key(msg: &Message) -> u64 {
    retry_of(msg.call_id(), msg.from_tag_read().unwrap_or_default())
}

fn retry_of(call_id: &[u8], caller_tag: &[u8]) -> u64 {
    crate::sip::lex::fnv1a(&[b"r", call_id, caller_tag])
}

fn txn_key(call_id: &[u8], caller_tag: &[u8], cseq: u32) -> u64 {
    crate::sip::lex::fnv1a(&[b"i", call_id, caller_tag, &cseq.to_le_bytes()])
}

fn dialog_key(call_id: &[u8], caller_tag: &[u8], callee_tag: &[u8]) -> u64 {
    crate::sip::lex::fnv1a(&[b"d", call_id, caller_tag, callee_tag])
}

/// Which call a later message is about, for [`BehaviourTracker::on_event`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CallRef {
    /// The call as last keyed: its INVITE transaction ([`call_key`]) for the answers to
    /// the INVITE and the CANCEL, its dialog for a BYE and the answer to it.
    pub call: u64,
    /// The dialog a 2xx to the INVITE sets up (Call-ID and both tags): the call is found
    /// by it from then on. 0 otherwise.
    pub dialog: u64,
    /// [`retry_key`], under which a challenged call waits for the caller's retry.
    pub retry: u64,
    /// For a caller's BYE: the trunk it came from ([`crate::policy::Trunk::id`]), when
    /// that trunk's concurrent calls are limited, so a call admitted at another gateway
    /// may hold a place there ([`LiveCalls::ended_elsewhere`]). 0 otherwise.
    ///
    /// [`LiveCalls::ended_elsewhere`]: live::LiveCalls::ended_elsewhere
    pub limited: u64,
}

impl CallRef {
    /// The INVITE transaction `call` alone (tests, and shells that key calls themselves).
    pub fn call(call: u64) -> CallRef {
        CallRef {
            call,
            ..CallRef::default()
        }
    }
}

/// The [`CallRef`] of a later message of a call, the event it is given. The dialog's
/// tags are the caller's and the callee's whichever side sends: the core's BYE carries
/// the callee's tag in From, the caller's in To (RFC 3261 12.2.1.1).
fn call_ref(msg: &Message, from_core: bool, ev: Event) -> CallRef {
    let id = msg.call_id();
    let from = msg.from_tag_read().unwrap_or_default();
    if matches!(ev, Event::Bye | Event::ByeSent | Event::ByeRefused) {
        let to = msg.to_tag_read().unwrap_or_default();
        let (caller, callee) = if msg.is_request() && from_core {
            (to, from)
        } else {
            (from, to)
        };
        let d = dialog_key(id, caller, callee);
        return CallRef {
            call: d,
            dialog: d,
            ..CallRef::default()
        };
    }
    let n = msg.cseq().map_or(0, |(n, _)| n);
    let dialog = if ev == Event::Answered {
        dialog_key(id, from, msg.to_tag_read().unwrap_or_default())
    } else {
        0
    };
    CallRef {
        call: txn_key(id, from, n),
        dialog,
        retry: retry_of(id, from),
        limited: 0,
    }
}

/// The event a message is for the behaviour features, if any: the core's responses to
/// an INVITE, the caller's CANCEL, and the end of an answered call: the core's BYE or
/// its 2xx to the caller's (QA 47: a BYE the core refused, 481 for a dialog it does not
/// have, freed a concurrent-call place). Cheap enough for every relayed message (no
/// header is re-parsed).
pub fn event_of(msg: &Message, from_core: bool) -> Option<Event> {
    match msg.method() {
        Some(Method::Cancel) if !from_core => Some(Event::Cancel),
        Some(Method::Bye) if from_core => Some(Event::Bye),
        Some(Method::Bye) => Some(Event::ByeSent),
        Some(_) => None,
        // A response from the caller's side tells nothing of how the core took a call.
        None if !from_core => None,
        None => {
            let (_, m) = msg.cseq()?;
            let status = msg.status()?;
            if m == b"BYE" {
                return match status {
                    200..=299 => Some(Event::Bye),
                    300..=699 => Some(Event::ByeRefused),
                    _ => None,
                };
            }
            if m != b"INVITE" {
                return None;
            }
            match status {
                180 => Some(Event::Ringing),
                183 => Some(Event::Progress),
                200..=299 => Some(Event::Answered),
                487 => Some(Event::Cancelled),
                // The caller retries the same call (credentials, a longer session
                // interval...): no outcome yet.
                s if crate::decide::retry_asked(s) => Some(Event::Challenged),
                300..=699 => Some(Event::Failed),
                _ => None,
            }
        }
    }
}

/// The caller's BYE `msg` (or the answer to it) could not reach the core (no connection
/// to it), and the gateway answered it 503 itself: the call ends for its caller all the
/// same (RFC 3261 15.1.1), so it ends here too, whatever that 503, relayed as the
/// core's answer, said (QA 124: such a call held its place for the four-hour bound).
/// `from_core`: a BYE request of the core's (to a peer that cannot be reached), which
/// holds the call over as well.
pub fn bye_not_delivered(msg: &Message, from_core: bool, t: &dyn BehaviourTracker, now_ms: u64) {
    let bye = match msg.method() {
        Some(m) => m == Method::Bye,
        None => msg.cseq().is_some_and(|(_, m)| m == b"BYE"),
    };
    if bye {
        t.on_event(call_ref(msg, from_core, Event::Bye), Event::Bye, now_ms);
    }
}

/// Feeds one relayed (or replayed) message to the tracker. The shell calls this for
/// every message it passes that is not a new call; new calls are counted by `decide`.
/// `from_core`: the message came from the core's side, whose word on a call is the
/// only one taken (QA 47: a caller's own forged 200 made every call of an all-busy
/// caller "answered").
pub fn observe(
    msg: &Message,
    from_core: bool,
    t: &dyn BehaviourTracker,
    now_ms: u64,
) -> Option<(TrunkTag, Seen)> {
    observe_on(msg, from_core, 0, t, now_ms)
}

/// [`observe`], for a message from a trunk whose concurrent calls are limited
/// (`limited`, its [`crate::policy::Trunk::id`]; 0: none or not known): the live proxy,
/// whose gateway may carry the BYE of a call another gateway admitted.
pub fn observe_on(
    msg: &Message,
    from_core: bool,
    limited: u64,
    t: &dyn BehaviourTracker,
    now_ms: u64,
) -> Option<(TrunkTag, Seen)> {
    let ev = event_of(msg, from_core)?;
    let r = CallRef {
        limited,
        ..call_ref(msg, from_core, ev)
    };
    t.on_event(r, ev, now_ms)
}
