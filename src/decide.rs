//! The decision: one SIP message and its context in, a verdict out.
//!
//! Pure: no I/O, no clock (the time comes in [`Context::now_ms`]), no allocation on
//! the path that lets a call through. The live proxy, pcap replay, `explain`, the
//! benches and the fuzz targets all call [`decide`], so a capture replayed offline
//! gets exactly the verdicts the proxy would have given. Before the rules, a request
//! passes the protocol checks every proxy makes (RFC 3261 16.3, [`Refusal`]): the
//! proxy runs them at its points of the request's way, replay and `explain` through
//! [`judge`], which is those checks and then [`decide`].

use std::net::SocketAddr;

use crate::behaviour::{self, BehaviourTracker, CallStart, Features};
use crate::identity::{self, CallerIdentity};
use crate::numbering::{Class, Classification, NotANumber, Number};
use crate::policy::auth::AuthCheck;
use crate::policy::config::{ActionKind, BehaviourConf, ListenSpec, Role};
use crate::policy::lists::ListMatch;
use crate::policy::rate::{DIALOG_MS, FromEvent, RateCounter, TRANSACTION_MS};
use crate::policy::{Policy, RuleId, RuleSet, applies};
use crate::sip::{HeaderName, Message, Method};

/// What the decision may know about where a message came from, and when.
pub struct Context<'a> {
    pub source: SocketAddr,
    /// The local address (and transport) it arrived on, when known.
    pub local: Option<ListenSpec>,
    /// Force a trunk (explain/replay `--trunk`) instead of matching by address.
    pub trunk: Option<usize>,
    /// The time every table, window and expiry runs on, in Unix milliseconds: the
    /// proxy's steady clock ([`crate::cli::steady_ms`]: a step of the wall clock moves
    /// it not, QA 192: a step back held rate windows and lockouts full for its length,
    /// one forward ended every call up); the capture's time when replaying.
    pub now_ms: u64,
    /// The calendar time, in Unix milliseconds: contracted hours and days, the issue
    /// time of nonces (which other gateways check). The same as `now_ms` but in the
    /// live proxy after a step of its wall clock.
    pub wall_ms: u64,
    pub rates: &'a dyn RateCounter,
    /// Behaviour state: counted into by calls that reach the behaviour rules.
    pub behaviour: &'a dyn BehaviourTracker,
}

/// Which kind of message this was for the filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// An initial INVITE, or an INVITE that names a dialog this gateway did not see
    /// established ([`Decision::unknown_dialog`]): the caller rules ran.
    Call,
    /// A request inside a dialog (To-tag) or CANCEL/ACK: forwarded without the caller rules.
    InDialog,
    /// Any other out-of-dialog request (OPTIONS, REGISTER, SUBSCRIBE...): source check
    /// only; a MESSAGE or REFER, the caller rules too ([`shown_sender`]).
    OtherRequest,
    Response,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Call => "call",
            Kind::InDialog => "in-dialog",
            Kind::OtherRequest => "other-request",
            Kind::Response => "response",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Forward,
    Reject {
        code: u16,
    },
    /// Refused without an answer (action `drop`).
    Drop,
}

/// The verdict and what it was based on. `Copy` and allocation-free.
#[derive(Debug, Clone, Copy)]
pub struct Decision {
    pub kind: Kind,
    pub trunk: Option<usize>,
    pub outcome: Outcome,
    /// The rule that decided: the rejecting one, else the first that changed the call.
    pub rule: Option<RuleId>,
    /// Every rule that matched, whatever its action (monitor-only included).
    pub hits: RuleSet,
    /// Rules that matched a number on the exempt list and were not applied (the
    /// blacklist, the behaviour rules): what the exemption let through.
    pub exempted: RuleSet,
    /// Rules whose label goes on the forwarded call.
    pub labels: RuleSet,
    /// Put the asserted number into From (generic-number deletion).
    pub rewrite_from: bool,
    /// A REFER's Referred-By presented another number than its sender's, and goes
    /// (generic-number deletion: [`judge_referrer`]).
    pub referrer_removed: bool,
    pub identity: CallerIdentity,
    /// The normalised number judged, and its class.
    pub caller: Option<Number>,
    pub class: Option<Classification>,
    pub blank: Option<NotANumber>,
    pub blacklist_match: Option<ListMatch>,
    /// The ISUP Calling Party Number of a SIP-I call, normalised, and its class.
    pub isup_caller: Option<Number>,
    pub isup_class: Option<Classification>,
    /// Rules that matched on the ISUP number (the SIP one did not match them).
    pub isup_hits: RuleSet,
    /// On an enterprise trunk, a number presented beside the caller (From's URI, else
    /// its display name, else a SIP-I call's Generic Number, else P-Preferred-Identity
    /// or an unscreened Remote-Party-ID) when it is not the one judged above: it is
    /// judged too, and the rules it made match.
    pub presented: Option<Number>,
    pub presented_hits: RuleSet,
    /// A second asserted identity (the tel or sip one of a P-Asserted-Identity pair)
    /// with another number than the caller's: judged too, and the rules it made match.
    pub asserted2: Option<Number>,
    pub asserted2_hits: RuleSet,
    /// The caller's behaviour features, when the trunk runs behaviour rules.
    pub features: Option<Features>,
    /// What the call's digest credentials came to, on a trunk with `[trunk.auth]`, and
    /// the time they were judged at (a challenge's nonce is issued for it).
    pub auth: Option<AuthCheck>,
    pub auth_at_ms: u64,
    /// Refused by the protocol checks before any rule ran (no rule is named).
    pub refusal: Option<Refusal>,
    /// An initial INVITE that repeats one seen within its transaction's lifetime (a
    /// UDP retransmission): judged and answered again like its original, but not a
    /// new call for the counters and the records.
    pub retransmission: bool,
    /// A retransmission (above) answered otherwise than the INVITE it repeats: 503, its
    /// next hop found down since that one was sent on. Recorded, as what its caller got
    /// last, and counted as a call sent into an outage, neither as another call nor as
    /// a refusal (QA 145: the calls sent into a core that died were traced as allowed
    /// while their callers had the gateway's 503; QA 147).
    pub answered_otherwise: bool,
    /// An INVITE with a To-tag whose dialog this gateway did not see answered (an
    /// invented To-tag, or a call set up before a restart or through another gateway):
    /// judged as a call, so that a To-tag cannot carry a call past the rules.
    pub unknown_dialog: bool,
    /// The retry of a call the core asked to send again (credentials after its 401 or
    /// 407, a longer session interval after 422...: [`retry_asked`]): the same call, so
    /// not counted again in the calls metrics when it goes on (QA 71).
    pub core_retry: bool,
    /// [`call_print`] of a call to remember for its retry, if it goes on (0: none).
    print: u64,
    /// The trunk's rate rules were judged while the shared counters were out of reach
    /// (Redis down): on this gateway's count alone (`Open`), or with a rule configured
    /// `fallback = "closed"` matching whatever the count (`Closed`). What tells an
    /// outage's refusals from a real breach in the record and the metrics.
    pub rate_fallback: Option<crate::policy::config::Fallback>,
    /// Counts that wait for the verdict: a trunk's contracted calls and a rate-limited
    /// caller's allowance are spent by the calls let through, not by one a later rule
    /// refuses (QA 70: the 503s of a full trunk used its calls a minute up).
    spend: Spend,
}

/// The rate keys (one-minute windows) a call spends if it goes on: the trunk's, and
/// one per rate-limited behaviour rule.
#[derive(Debug, Clone, Copy, Default)]
struct Spend {
    keys: [u64; 1 + RuleId::BEHAVIOUR.len()],
    len: u8,
}

impl Spend {
    fn add(&mut self, key: u64) {
        if let Some(k) = self.keys.get_mut(self.len as usize) {
            *k = key;
            self.len += 1;
        }
    }

    /// Counts them once the call goes on.
    fn settle(&self, outcome: Outcome, rates: &dyn RateCounter, now_ms: u64) {
        if outcome == Outcome::Forward {
            for &k in &self.keys[..self.len as usize] {
                rates.hit(k, now_ms, 60_000);
            }
        }
    }
}

impl Decision {
    fn new(kind: Kind, trunk: Option<usize>) -> Decision {
        Decision {
            kind,
            trunk,
            outcome: Outcome::Forward,
            rule: None,
            hits: RuleSet::default(),
            exempted: RuleSet::default(),
            labels: RuleSet::default(),
            rewrite_from: false,
            referrer_removed: false,
            identity: CallerIdentity::default(),
            caller: None,
            class: None,
            blank: None,
            blacklist_match: None,
            isup_caller: None,
            isup_class: None,
            isup_hits: RuleSet::default(),
            presented: None,
            presented_hits: RuleSet::default(),
            asserted2: None,
            asserted2_hits: RuleSet::default(),
            features: None,
            auth: None,
            auth_at_ms: 0,
            refusal: None,
            retransmission: false,
            unknown_dialog: false,
            core_retry: false,
            answered_otherwise: false,
            print: 0,
            rate_fallback: None,
            spend: Spend::default(),
        }
    }

    /// The decision on a request the protocol checks refused. A bad ACK is dropped
    /// (nothing answers an ACK), and so is any refused request from an address
    /// [`Policy::silent_to`].
    pub fn refused(policy: &Policy, msg: &Message, ctx: &Context<'_>, r: Refusal) -> Decision {
        let trunk = ctx
            .trunk
            .or_else(|| policy.match_trunk(&ctx.source, ctx.local.as_ref()));
        let method = msg.method();
        let mut d = Decision::new(method.map_or(Kind::Response, |m| kind_of(msg, m)), trunk);
        // Only a request no trunk claims can be silenced (and only then is the address
        // looked up again).
        let silent = trunk.is_none() && policy.silent_to(&ctx.source, ctx.local.as_ref());
        if silent {
            // What every request from such an address gets: the unknown-source drop,
            // whatever its SIP (no protocol refusal is counted or recorded; QA 39).
            if method != Some(Method::Ack) {
                fire(policy, &mut d, RuleId::UnknownSource);
            }
            d.outcome = Outcome::Drop;
            return d;
        }
        d.outcome = if method == Some(Method::Ack) {
            Outcome::Drop
        } else {
            Outcome::Reject { code: r.code }
        };
        d.refusal = Some(r);
        if d.kind == Kind::Call {
            d.retransmission = repeated(policy, msg, ctx, trunk).is_some();
            // Judged by no rule, but its record names the caller as far as it can be
            // read, so that a trace by number finds it (QA 56: caller, From and the
            // asserted identity were all null).
            identity::extract_into(msg, policy.reading(trunk), &policy.plan, &mut d.identity);
            d.caller = d.identity.effective_number();
            d.class = d.caller.map(|n| policy.plan.classify(&n));
        }
        d
    }
    pub fn is_reject(&self) -> bool {
        matches!(self.outcome, Outcome::Reject { .. } | Outcome::Drop)
    }
    /// Whether the decision leaves a signalling record (the proxy's and replay's alike):
    /// calls, every request refused (a scanner's OPTIONS dropped as `unknown-source`
    /// too, QA 57), and the MESSAGEs and REFERs whose sender was judged, a caller named
    /// (QA 176 N6: one let through left none).
    pub fn recorded(&self) -> bool {
        self.kind == Kind::Call || self.is_reject() || self.caller.is_some()
    }
    /// A short word for the verdict: allow, reject, rewrite, label.
    pub fn verdict_str(&self) -> &'static str {
        match self.outcome {
            // A digest challenge (407 asking for credentials, RFC 3261 22.3) is the first
            // leg of every authenticated call, not a block: counted apart, so that an
            // authenticating trunk does not read as half blocked. Failed credentials are
            // refusals.
            Outcome::Reject { .. }
                if self.rule == Some(RuleId::TrunkAuth)
                    && self.auth.is_some_and(|a| a.challenges()) =>
            {
                "challenge"
            }
            Outcome::Reject { .. } => "reject",
            Outcome::Drop => "drop",
            Outcome::Forward if self.rewrite_from || self.referrer_removed => "rewrite",
            Outcome::Forward if !self.labels.is_empty() => "label",
            Outcome::Forward => "allow",
        }
    }
}

/// Refuses the call by rule `r`.
fn reject(d: &mut Decision, r: RuleId, code: u16) {
    d.hits.insert(r);
    d.outcome = Outcome::Reject { code };
    d.rule = Some(r);
}

/// Applies one matching rule's action. Returns true when evaluation must stop.
#[inline]
fn fire(policy: &Policy, d: &mut Decision, r: RuleId) -> bool {
    let a = policy.action(d.trunk, r);
    match a.kind {
        ActionKind::Off => return false,
        ActionKind::Monitor => {
            d.hits.insert(r);
            return false;
        }
        _ => {}
    }
    d.hits.insert(r);
    match a.kind {
        ActionKind::Reject => {
            reject(d, r, a.code);
            true
        }
        ActionKind::Drop => {
            d.outcome = Outcome::Drop;
            d.rule = Some(r);
            true
        }
        ActionKind::Rewrite => {
            if r == RuleId::GenericNumber {
                d.rewrite_from = true;
                // A caller that presented another number than the network asserts is
                // suspect even once corrected: with a label set, the callee's network
                // is told (QA 173 F3).
                if !a.label.is_empty() {
                    d.labels.insert(r);
                }
            } else {
                // Only generic-number has a rewrite; elsewhere it means "label".
                d.labels.insert(r);
            }
            d.rule.get_or_insert(r);
            false
        }
        // A rate-limited caller under its limit goes through labelled (see `behaviour`).
        ActionKind::Label | ActionKind::RateLimit => {
            d.labels.insert(r);
            d.rule.get_or_insert(r);
            false
        }
        ActionKind::Monitor | ActionKind::Off => false,
    }
}

/// When the initial INVITE this one repeats was first seen, within [`TRANSACTION_MS`]
/// of that (its client's Timer B); `None`, and remembered, if it repeats none. A retransmission is the
/// same request (RFC 3261 17.1.1.2), byte for byte: keyed on the whole message, so
/// that an INVITE reusing a branch, Call-ID and tags with another caller is a call of
/// its own, counted and recorded, not hidden as a retransmission.
fn repeated(
    policy: &Policy,
    msg: &Message,
    ctx: &Context<'_>,
    trunk: Option<usize>,
) -> Option<u64> {
    // No memory (explain on its own, the benches): no hashing either.
    ctx.rates.recent()?;
    let key = sight_key(policy, msg, trunk);
    let first = ctx.rates.earlier_sight(key, ctx.now_ms, TRANSACTION_MS)?;
    (!answered_already(msg, ctx)).then_some(first)
}

/// The key [`repeated`] keeps an initial INVITE's sighting under: its trunk by name (a
/// retransmission across a reload that reorders trunks is still one) and its bytes.
fn sight_key(policy: &Policy, msg: &Message, trunk: Option<usize>) -> u64 {
    let b = msg.buf();
    let t = trunk.map_or(u64::MAX, |t| policy.trunks[t].id);
    crate::sip::lex::tag_hash(&[b"seen", &t.to_le_bytes(), &b[..msg.len().min(b.len())]])
}

/// Whether the initial INVITE `msg` belongs to a call under way: it repeats one judged
/// within its transaction's lifetime (as [`repeated`] tells, without keeping this
/// sighting), or it is the retry of a call the core asked to send again (as
/// [`core_asked_retry`] tells, without spending the core's answer). The proxy's
/// overload and drain shedding let such an INVITE go on to its judgement, which answers
/// a retransmission as its original was answered or sends it on again, rather than
/// answer 503 a call the core may have up (QA 149: during a drain, a caller had 503
/// Stopping and then the core's 200 for the same INVITE; QA 151: the retry with
/// credentials after the core's 407 was shed).
pub fn under_way(policy: &Policy, msg: &Message, ctx: &Context<'_>, trunk: Option<usize>) -> bool {
    let Some(r) = ctx.rates.recent() else {
        return false;
    };
    retry_asked_of(msg, ctx).is_some()
        || (r.sighted(sight_key(policy, msg, trunk), ctx.now_ms) && !answered_already(msg, ctx))
}

/// Whether the caller of `msg` acknowledged its INVITE's final answer ([`track_dialog`]:
/// its ACK passed, or a BYE of the call did). A copy sent after that is no retransmission (a UAC retransmits an
/// INVITE only until it has its answer): it is judged and counted as the call it is to
/// a core whose transaction has ended (QA 52: the same bytes sent again once a call had
/// ended passed the per-caller limit uncounted). Before that, a copy says the answer
/// never reached the caller (lost between the gateway and the peer, QA 93): the same
/// call, which the core's transaction takes as the retransmission it is (RFC 3261
/// 17.2.1, RFC 6026's Accepted state), whatever the answer was. Judged as a new call, it
/// was counted twice and, at a limit, refused 403 or 503 while the callee had answered.
fn answered_already(msg: &Message, ctx: &Context<'_>) -> bool {
    let cseq = msg.cseq().map_or(0, |(n, _)| n);
    let tag = msg.from_tag().unwrap_or_default();
    let key = acked_key(msg.call_id(), tag, cseq);
    ctx.rates.recall(key, ctx.now_ms).is_some()
        || ctx
            .rates
            .recall(ended_key(msg.call_id(), tag), ctx.now_ms)
            .is_some()
}

/// Key in the rate counters' memory of an INVITE transaction whose caller acknowledged
/// its final answer: Call-ID, the caller's tag and the CSeq number, which the ACK shares
/// with its INVITE whatever the answer (a 2xx's ACK has a branch of its own).
fn acked_key(call_id: &[u8], caller_tag: &[u8], cseq: u32) -> u64 {
    crate::sip::lex::tag_hash(&[b"acked", call_id, caller_tag, &cseq.to_le_bytes()])
}

/// Key in the rate counters' memory of a call a BYE ended, by Call-ID and the caller's
/// tag: its caller had the answer whether or not its ACK came this way (QA 94: an ACK sent
/// around the gateway left the INVITE's copies after the BYE uncounted).
fn ended_key(call_id: &[u8], tag: &[u8]) -> u64 {
    crate::sip::lex::tag_hash(&[b"ended", call_id, tag])
}

/// Key of a dialog in the rate counter's memory: its Call-ID and both tags, the trunk
/// side's first. A trunk's requests in a dialog carry its tag in From (RFC 3261
/// 12.2.1.1: the caller's when the trunk placed the call, the callee's when the core
/// offered it); the tags the other way round name the dialog as the core's side does,
/// which no request from the trunk may (QA 182 F5: keyed the same either way round, a
/// trunk's INVITE with the core's tag in From passed as a re-INVITE, its From unjudged
/// and not the call's kept one). The tags tell apart the dialogs of a forked call,
/// which share a Call-ID: the BYE that ends one leaves the other known (QA 64: keyed on
/// the Call-ID alone, the surviving dialog's re-INVITEs were judged as new calls). Only
/// 2xx answers to INVITEs and BYEs have their tags read here.
pub fn dialog_key(call_id: &[u8], trunk_tag: &[u8], other_tag: &[u8]) -> u64 {
    crate::sip::lex::tag_hash(&[b"dialog", call_id, trunk_tag, other_tag])
}

/// The dialog a trunk's request names, its tag in From.
fn dialog_of(msg: &Message) -> u64 {
    dialog_key(
        msg.call_id(),
        msg.from_tag_read().unwrap_or_default(),
        msg.to_tag_read().unwrap_or_default(),
    )
}

fn dialog_known(msg: &Message, rates: &dyn RateCounter, now_ms: u64) -> bool {
    rates.knows_dialog(dialog_of(msg), now_ms)
}

/// Whether a trunk's request names a dialog this gateway let on: one its tables know
/// (an INVITE's 2xx passed), or one whose token (on a trunk that has them,
/// [`crate::policy::Trunk::dialog_tokens`]) its Route carries, which holds for early
/// dialogs, subscriptions, and calls from before a restart too.
fn dialog_vouched(
    policy: &Policy,
    trunk: Option<usize>,
    msg: &Message,
    rates: &dyn RateCounter,
    now_ms: u64,
) -> bool {
    dialog_known(msg, rates, now_ms)
        || trunk
            .and_then(|t| policy.trunks[t].dialog_tokens())
            .is_some_and(|a| a.vouches_for_dialog(msg))
}

/// An INVITE the core sent towards a trunk (an initial one passed, or a re-INVITE): the
/// peer's 2xx to it may set up a dialog.
fn offer_key(call_id: &[u8]) -> u64 {
    crate::sip::lex::tag_hash(&[b"offer", call_id])
}

/// What a message carried on (forwarded or relayed, either way) tells of dialogs: a
/// 2xx to an INVITE establishes one (or, to a re-INVITE, refreshes it), a BYE ends
/// it. `from_core`: whether it came from the core's side (a next hop's address), asked
/// only of the messages that need it (an initial INVITE, a 2xx to one, a BYE). A 2xx counts
/// when the core sent it, or when a trunk peer answers a call the core offered it: a
/// 2xx a trunk makes up (with a branch shaped like ours, which carries no secret) must
/// not make a Call-ID known, or its INVITEs would pass unjudged. The proxy calls this
/// for every message it passes on, replay and `explain` for every message not
/// refused, so that all three know the same dialogs.
pub fn track_dialog(
    msg: &Message,
    from_core: impl Fn() -> bool,
    rates: &dyn RateCounter,
    now_ms: u64,
) {
    match msg.method() {
        Some(Method::Bye) => {
            let core = from_core();
            // The caller's tag: From's when the caller hangs up, To's when the core does.
            let caller_tag = if core { msg.to_tag() } else { msg.from_tag() };
            if let Some(tag) = caller_tag {
                rates.remember(ended_key(msg.call_id(), tag), now_ms, TRANSACTION_MS, true);
            }
            // The core's BYE has the trunk side's tag in To.
            let dialog = if core {
                dialog_key(
                    msg.call_id(),
                    msg.to_tag_read().unwrap_or_default(),
                    msg.from_tag_read().unwrap_or_default(),
                )
            } else {
                dialog_of(msg)
            };
            // One dialog of the call is over (the caller's tag is in From or To,
            // whichever side sends the BYE; a copy of the BYE ends nothing more).
            if let Some(r) = rates.recent()
                && r.keeps_froms(now_ms)
                && rates.knows_dialog(dialog, now_ms)
            {
                // A caller without a tag is kept by the Call-ID alone (`""`).
                for tag in [msg.from_tag_read(), msg.to_tag_read()]
                    .into_iter()
                    .map(Option::unwrap_or_default)
                {
                    r.from_event(from_key(msg.call_id(), tag), FromEvent::DialogEnded, now_ms);
                }
            }
            rates.forget_dialog(dialog);
            // The core's offer is over with its call: its mark goes too (QA 114: each
            // answered call the core offered kept a place in the table after its BYE).
            rates.forget_dialog(offer_key(msg.call_id()));
        }
        // The core's INVITE, initial or within a dialog: the trunk peer's 2xx to it may
        // set up the dialog, or make known again one this gateway forgot (a restart:
        // QA 185 M1, the peer's own re-INVITEs were else judged as calls from the
        // callee's number for the rest of the call). A re-INVITE is answered at once,
        // not rung: its mark lasts a transaction, the least a made-up 2xx has to use.
        Some(Method::Invite) if from_core() => rates.note_dialog(
            offer_key(msg.call_id()),
            now_ms,
            if msg.to_tag().is_none() {
                crate::behaviour::live::RING_MS
            } else {
                TRANSACTION_MS
            },
        ),
        // The caller had its INVITE's final answer: a copy of that INVITE sent from now
        // on is a new attempt ([`repeated`]). Not the ACK of an answer sipfence gave
        // itself, which the proxy absorbs and never carries (replay and `explain` see it
        // too, and must read the INVITE's copies as the proxy does).
        Some(Method::Ack) => {
            if !ack_to_our_refusal(msg, rates, now_ms)
                && let Some((cseq, _)) = msg.cseq()
            {
                let key = acked_key(msg.call_id(), msg.from_tag().unwrap_or_default(), cseq);
                rates.remember(key, now_ms, TRANSACTION_MS, true);
            }
        }
        Some(_) => {}
        None => {
            let status = msg.status().unwrap_or(0);
            let Some((_, b"INVITE")) = msg.cseq() else {
                return;
            };
            // The From a call's requests are given lives with the call.
            let froms = rates
                .recent()
                .filter(|r| r.keeps_froms(now_ms) && status > 100)
                .map(|r| {
                    let tag = msg.from_tag_read().unwrap_or_default();
                    (r, from_key(msg.call_id(), tag))
                });
            let core = (200..300).contains(&status) && from_core();
            let offered = (200..300).contains(&status)
                && !core
                && rates.knows_dialog(offer_key(msg.call_id()), now_ms);
            if core || offered {
                // The trunk side's tag: the caller's (From) in the core's answer to a
                // trunk's call, the answering peer's (To) in a call the core offered.
                let dialog = if core {
                    dialog_of(msg)
                } else {
                    dialog_key(
                        msg.call_id(),
                        msg.to_tag_read().unwrap_or_default(),
                        msg.from_tag_read().unwrap_or_default(),
                    )
                };
                if let Some((r, key)) = froms {
                    let new_dialog = !rates.knows_dialog(dialog, now_ms);
                    r.from_event(key, FromEvent::Answered { new_dialog }, now_ms);
                }
                rates.note_dialog(dialog, now_ms, DIALOG_MS);
                // Answered, the offer waits only for the 2xx of other forks (RFC 3261
                // 13.2.2.4: 64*T1), not the whole ring time.
                if offered {
                    rates.note_dialog(offer_key(msg.call_id()), now_ms, 64 * 500);
                }
            } else if let Some((r, key)) = froms
                && !(200..300).contains(&status)
                && from_core()
            {
                // Only the core's word ends a call: a peer's own failure must not cut
                // short the From its later requests are given.
                let ev = match status {
                    101..=199 => FromEvent::Ringing,
                    _ => FromEvent::Failed,
                };
                r.from_event(key, ev, now_ms);
            }
            // The core asks the caller to retry the call otherwise: its retry is the
            // same call.
            if retry_asked(status) && from_core() {
                let key = challenge_key(msg.call_id(), msg.from_tag_read().unwrap_or_default());
                rates.remember(key, now_ms, TRANSACTION_MS, true);
                if let Some(r) = rates.recent() {
                    r.note_retry_asked(now_ms);
                }
            }
        }
    }
}

/// Final answers to an INVITE that ask the caller to send it again, changed, with the
/// same Call-ID and From tag and the next CSeq: credentials (401, 407: RFC 3261 22.2),
/// a body or URI it can take (413, 415, 416), an extension (420, 421), a longer session
/// interval (422, RFC 4028 6), a security agreement (494, RFC 3329). The retry is the
/// same call: it passes the rate rules uncounted ([`Decision::core_retry`]) and the
/// behaviour features count one attempt (QA 67: a core's 422 halved a contract).
pub fn retry_asked(status: u16) -> bool {
    matches!(status, 401 | 407 | 413 | 415 | 416 | 420 | 421 | 422 | 494)
}

/// A call the core asked to retry ([`retry_asked`]), by its Call-ID and the caller's
/// tag, which the retry keeps (RFC 3261 8.1.3.5).
fn challenge_key(call_id: &[u8], caller_tag: &[u8]) -> u64 {
    crate::sip::lex::tag_hash(&[b"challenged", call_id, caller_tag])
}

/// A URI's user part and the number the rules read in it ([`identity::uri_number`]).
type UriNumber = (crate::sip::Span, Result<Number, NotANumber>);

/// A call as the rules counted it: its Call-ID, the caller's tag, From's number and
/// whether From presents another number or a name than the asserted one, the callee,
/// the numbers a display name, P-Preferred-Identity or Remote-Party-ID shows, and
/// every number judged (the asserted, the shown ones, the IAM's); each number as
/// the rules read it, however written (QA 76: an SBC that rebuilds From on the retry
/// is the same caller), else its user part. What a retry after the core's challenge
/// must repeat to be that call, uncounted by the rate rules, the behaviour features
/// and the calls metrics: a retry that shows another number or calls another callee
/// is an attempt of its own (QA 74: a shown number over its limit, or a callee the
/// sequence rules would have seen, passed in the retry).
fn call_print(
    policy: &Policy,
    d: &Decision,
    msg: &Message,
    nums: &[Option<Judged>],
    callee: &Option<UriNumber>,
) -> u64 {
    let b = msg.buf();
    let trunk = d.trunk.map_or(0, |t| policy.trunks[t].id).to_le_bytes();
    fn read<'a>(b: &'a [u8], n: &'a Option<UriNumber>) -> &'a [u8] {
        match n {
            Some((_, Ok(n))) => n.digits(),
            Some((user, Err(_))) => user.of(b),
            None => &[],
        }
    }
    let from = d.identity.from.map(|p| (p.user, p.number));
    let (from, callee) = (read(b, &from), read(b, callee));
    let differs = [d.identity.presented_differs() as u8];
    // Shown on every trunk, judged on enterprise ones only (so not among `nums` on
    // the others): a retry that swaps them is another attempt too (QA 77).
    // Only numbers other than the caller's and From's: a display name that repeats
    // the number, there or not, shows nothing else.
    let from_number = d.identity.from.and_then(|p| p.number.ok());
    let other = |n: &Number| Some(*n) != d.caller && Some(*n) != from_number;
    let (display, preferred) = (
        d.identity.display_number.filter(other),
        d.identity.other_presented().filter(other),
    );
    fn digits(n: &Option<Number>) -> &[u8] {
        n.as_ref().map_or(&[], |n| n.digits())
    }
    let mut parts: [&[u8]; 21] = [&[]; 21];
    parts[..9].copy_from_slice(&[
        b"passed",
        &trunk,
        msg.call_id(),
        msg.from_tag().unwrap_or_default(),
        from,
        &differs,
        callee,
        digits(&display),
        digits(&preferred),
    ]);
    for (slot, j) in parts[9..].iter_mut().zip(nums.iter().flatten()) {
        *slot = j.n.digits();
    }
    crate::sip::lex::tag_hash(&parts)
}

/// Whether the INVITE `msg` is the retry of a call the core asked to send again (a
/// challenge, a 422...: [`retry_asked`]): the same call, not another attempt. One
/// answer lets one retry by: a caller cannot send many INVITEs under one Call-ID the
/// core answered so.
fn core_asked_retry(msg: &Message, ctx: &Context<'_>) -> bool {
    let Some(challenged) = retry_asked_of(msg, ctx) else {
        return false;
    };
    // Spent: the next retry needs an answer of its own.
    ctx.rates
        .remember(challenged, ctx.now_ms, TRANSACTION_MS, false);
    true
}

/// The key of the core's answer that asked for the retry `msg` is, if one did and is
/// not spent.
fn retry_asked_of(msg: &Message, ctx: &Context<'_>) -> Option<u64> {
    // The retry has the next CSeq (RFC 3261 8.1.3.5): a call's first INVITE, nearly
    // always CSeq 1, is not looked up.
    if msg.cseq().is_none_or(|(n, _)| n < 2) {
        return None;
    }
    let challenged = challenge_key(msg.call_id(), msg.from_tag().unwrap_or_default());
    (ctx.rates.recall(challenged, ctx.now_ms) == Some(true)).then_some(challenged)
}

/// Key of a trunk, or of a caller within a trunk: rate counters and behaviour tables.
/// `trunk` is the trunk's [`crate::policy::Trunk::id`] (its name's), not its place in
/// the file, so that counts survive a reload that adds or reorders trunks.
fn rate_key(trunk: u64, caller: Option<&Number>) -> u64 {
    let t = trunk.to_le_bytes();
    match caller {
        Some(n) => crate::policy::rate::keyed_for(
            trunk,
            crate::sip::lex::fnv1a(&[b"caller", &t, n.digits()]),
        ),
        None => crate::policy::rate::trunk_key(trunk),
    }
}

/// An INVITE transaction as its retransmissions repeat it (RFC 3261 17.2.3: the top
/// Via's branch), with what makes it this call (Call-ID, CSeq, From tag, Request-URI):
/// a request that reuses a branch for another call is another transaction. Kept in the
/// process only (retransmissions come back to the same gateway), so it takes the
/// word-at-a-time hash of our branches rather than the counters' shared FNV-1a: every
/// INVITE goes through it.
pub fn transaction_key(trunk: u64, msg: &Message) -> u64 {
    let b = msg.buf();
    let branch = msg
        .top_via()
        .and_then(|v| v.branch)
        .map_or(&b""[..], |s| s.of(b));
    let cseq = msg.cseq().map_or(0, |(n, _)| n).to_le_bytes();
    let ruri = msg.request_uri().map_or(&b""[..], |s| s.of(b));
    crate::sip::lex::tag_hash(&[
        b"txn",
        &trunk.to_le_bytes(),
        branch,
        msg.call_id(),
        &cseq,
        msg.from_tag().unwrap_or_default(),
        ruri,
    ])
}

/// The counter key of a source address's wrong digest answers on a trunk.
fn auth_failure_key(trunk: u64, ip: std::net::IpAddr) -> u64 {
    let t = trunk.to_le_bytes();
    crate::policy::rate::keyed_closed(
        trunk,
        match ip {
            std::net::IpAddr::V4(a) => crate::sip::lex::fnv1a(&[b"auth-fail", &t, &a.octets()]),
            std::net::IpAddr::V6(a) => crate::sip::lex::fnv1a(&[b"auth-fail", &t, &a.octets()]),
        },
    )
}

/// Local minute of the day and weekday (Monday = 0) for a UTC offset.
fn local_time(now_ms: u64, offset_min: i32) -> (u16, u8) {
    let min = (now_ms / 60_000) as i64 + offset_min as i64;
    let day = min.div_euclid(1440);
    let minute = min.rem_euclid(1440) as u16;
    // 1970-01-01 was a Thursday (Monday = 0 makes it 3).
    let weekday = (day + 3).rem_euclid(7) as u8;
    (minute, weekday)
}

/// A foreign number that reads like one of our short service numbers once its first one
/// to three digits are taken for a country code (`+1 10086`, `+44 95588`, `+8 12345`):
/// what a handset shows is then close to the real service number. Only short codes
/// (at most 6 digits) count; longer ones are ordinary numbers of somewhere.
fn service_shaped(policy: &Policy, n: &Number) -> bool {
    let d = n.digits();
    (1..=3).any(|k| {
        d.len() > k && d.len() - k <= 6 && policy.plan.classify_nsn(&d[k..]).class.is_service()
    })
}

fn kind_of(msg: &Message, method: Method) -> Kind {
    match method {
        Method::Invite if msg.to_tag().is_none() => Kind::Call,
        Method::Ack | Method::Cancel => Kind::InDialog,
        _ if msg.to_tag().is_some() => Kind::InDialog,
        _ => Kind::OtherRequest,
    }
}

/// A request refused before any rule because it breaks SIP itself: the answer's code
/// and its Reason text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    pub code: u16,
    pub why: &'static str,
}

impl Refusal {
    /// The fields every element relies on (RFC 3261 16.3 step 1; RFC 4475 3.3.8 and
    /// 3.3.9): exactly one To, From, Call-ID and CSeq, a Via, at most one Max-Forwards
    /// Content-Length and Content-Type. Two From fields would let the filter judge one caller and
    /// the callee see the other.
    pub fn syntax(msg: &Message) -> Option<Refusal> {
        msg.check_request()
            .err()
            .map(|why| Refusal { code: 400, why })
    }

    /// What a proxy checks of a request from a trunk before forwarding it (RFC 3261
    /// 16.3 steps 3 and 5): hops left (483), and every Proxy-Require option supported
    /// (420; ACK and CANCEL carry no requirements, 8.2.2.3).
    pub fn forwarding(policy: &Policy, msg: &Message) -> Option<Refusal> {
        let method = msg.method()?;
        // An OPTIONS to the gateway itself is answered, not forwarded: a UAS does not
        // count hops nor read Proxy-Require, and carriers probe each hop with
        // `Max-Forwards: 0` (RFC 3261 16.3 step 3; QA 30). It reads Require, and
        // implements no extension (RFC 3261 8.2.2.3; QA 32).
        if method == Method::Options && addressed_to_proxy(msg) {
            return unsupported_tags(msg, &[]).next().map(|_| Refusal {
                code: 420,
                why: "Bad Extension",
            });
        }
        if method != Method::Ack && msg.max_forwards() == Some(0) {
            return Some(Refusal {
                code: 483,
                why: "Too Many Hops",
            });
        }
        if !matches!(method, Method::Ack | Method::Cancel)
            && unsupported_tags(msg, &policy.proxy.proxy_require_accepted)
                .next()
                .is_some()
        {
            return Some(Refusal {
                code: 420,
                why: "Bad Extension",
            });
        }
        None
    }
}

/// A request addressed to the proxy itself: a sip or sips URI without a user part.
/// Other schemes (`tel:`, RFC 4475's `nobodyKnowsThisScheme:`) name no host of ours:
/// they go to the next hop like any request (RFC 4475 3.3.2: a proxy may forward them).
pub fn addressed_to_proxy(msg: &Message) -> bool {
    use crate::sip::uri;
    msg.request_uri()
        .and_then(|u| uri::parse(msg.buf(), u).ok())
        .is_some_and(|u| {
            u.user.is_none() && matches!(u.scheme, uri::Scheme::Sip | uri::Scheme::Sips)
        })
}

/// The option tags a request requires that are not in `accepted`: of Proxy-Require
/// (RFC 3261 20.29), or of Require in an OPTIONS sipfence answers itself (a UAS that
/// implements no extension, RFC 3261 8.2.2.3).
pub fn unsupported_tags<'m>(
    msg: &'m Message,
    accepted: &'m [String],
) -> impl Iterator<Item = &'m [u8]> + 'm {
    let (name, accepted) = if msg.method() == Some(Method::Options) && addressed_to_proxy(msg) {
        (HeaderName::Require, &[][..])
    } else {
        (HeaderName::ProxyRequire, accepted)
    };
    msg.all(name).flat_map(move |h| {
        msg.slice(h.value())
            .split(|&c| c == b',')
            .map(crate::sip::lex::trim)
            .filter(move |tag| {
                !tag.is_empty()
                    && !accepted
                        .iter()
                        .any(|a| a.as_bytes().eq_ignore_ascii_case(tag))
            })
    })
}

/// A request as the proxy judges one from a trunk: the protocol checks, then the
/// rules. Replay and `explain` call this; the proxy makes the same checks at its own
/// points (loop detection, which needs the proxy's own Via, only there).
pub fn judge(policy: &Policy, msg: &Message, ctx: &Context<'_>) -> Decision {
    if msg.is_request()
        && let Some(r) = Refusal::syntax(msg).or_else(|| Refusal::forwarding(policy, msg))
    {
        return Decision::refused(policy, msg, ctx, r);
    }
    decide(policy, msg, ctx)
}

/// Key of the From value a call's INVITE was forwarded with: its Call-ID and From tag.
fn from_key(call_id: &[u8], caller_tag: &[u8]) -> u64 {
    crate::sip::lex::tag_hash(&[b"from", call_id, caller_tag])
}

/// The From value the INVITE of `msg`'s call was forwarded with, when the edits changed
/// it and `msg` is a later request of the caller's side (its CANCEL, ACK, BYE, re-INVITE,
/// UPDATE): it goes on with that From too ([`crate::verdict::add_edits`]). RFC 3261 9.1
/// wants a CANCEL's From to be its INVITE's, and the callee's side knows the dialog by
/// the From it was given: a later request must not show it the number or name the
/// rules took off (QA 65: the forged display name came back in the CANCEL, ACK,
/// re-INVITE and UPDATE). One table lookup; nothing for calls whose From went on as
/// written.
pub fn kept_from(
    msg: &Message,
    d: &Decision,
    rates: &dyn RateCounter,
    now_ms: u64,
) -> Option<bytes::Bytes> {
    if d.kind != Kind::InDialog || d.trunk.is_none() || !msg.is_request() {
        return None;
    }
    let r = rates.recent().filter(|r| r.keeps_froms(now_ms))?;
    let tag = msg.from_tag().unwrap_or_default();
    r.kept_from(from_key(msg.call_id(), tag), now_ms)
        // A call whose INVITE had no From tag, its later request adding one (QA 178 C2).
        .or_else(|| {
            (!tag.is_empty())
                .then(|| r.kept_from(from_key(msg.call_id(), b""), now_ms))
                .flatten()
        })
}

/// For a response to a request of the caller's side of a call whose From was changed
/// (its From tag is the caller's), the From that call came with: the response goes back
/// with it. RFC 3261 8.2.6.2 has a response's From equal its request's, and the caller
/// sent the one the rules took off (QA 104: a strict caller stack may refuse an answer
/// with another From; Kamailio's `uac_replace_from` restores it likewise). One table
/// lookup, only while some From is kept.
pub fn callers_from(msg: &Message, rates: &dyn RateCounter, now_ms: u64) -> Option<bytes::Bytes> {
    if msg.is_request() {
        return None;
    }
    let r = rates.recent().filter(|r| r.keeps_froms(now_ms))?;
    r.original_from(
        from_key(msg.call_id(), msg.from_tag_read().unwrap_or_default()),
        now_ms,
    )
}

/// Keeps the From value a forwarded INVITE was given, when the edits change it or its
/// trunk records the route, for [`kept_from`] (how long:
/// [`crate::policy::rate::Recent::from_event`]); one that goes on as written elsewhere
/// drops what an earlier INVITE of its Call-ID and From tag kept.
fn keep_from(policy: &Policy, msg: &Message, d: &Decision, ctx: &Context<'_>) {
    // A MESSAGE or REFER whose sender was judged and changed: its answer goes back with
    // the From the sender wrote, as a call's does (QA 176 N4).
    let judged_other = d.kind == Kind::OtherRequest && d.caller.is_some();
    if !(d.kind == Kind::Call || judged_other) || d.outcome != Outcome::Forward {
        return;
    }
    let Some(r) = ctx.rates.recent() else {
        return;
    };
    // A From without a tag (RFC 2543 equipment, or a caller hiding its later requests
    // from the keeping: QA 176 N1) is kept by the Call-ID alone.
    let tag = msg.from_tag().unwrap_or_default();
    let odd =
        |p: &Option<crate::identity::Party>| p.is_some_and(|p| p.plus_missing || p.in_context);
    // A peer's verstat taken off From changes it too (QA 191 F3: the answers went back
    // without the one the caller wrote).
    let changed =
        (d.rewrite_from || odd(&d.identity.from) || crate::verdict::from_may_lose_verstat(msg))
            .then(|| crate::verdict::forwarded_from(policy, msg, d))
            .flatten();
    let key = from_key(msg.call_id(), tag);
    // Kept values go into messages framed in CRLFs whatever the caller's were (QA 191
    // F4: a folded From of a request in bare LFs came back in the answers with one).
    fn crlf<'a>(msg: &Message, v: &'a [u8]) -> std::borrow::Cow<'a, [u8]> {
        if !msg.bare_lf() {
            return v.into();
        }
        let mut v = v.to_vec();
        crate::sip::rewrite::crlf_head(&mut v);
        v.into()
    }
    match changed {
        Some(v) => r.keep_from(
            key,
            fitted(&crlf(msg, &v)),
            &crlf(
                msg,
                msg.from_addr().map_or(&[][..], |na| na.whole.of(msg.buf())),
            ),
            ctx.now_ms,
        ),
        // A MESSAGE or REFER that went on as written has no later requests.
        None if judged_other => {}
        // A call whose later requests pass here (Record-Route) keeps its From as
        // written too: the caller is judged once, and an UPDATE or re-INVITE must not
        // show the callee another caller than the INVITE did (QA 173 F1: a clean +44
        // call's UPDATE came with From "110", its re-INVITE with a +86 number, and
        // both went on). Kept as the core was given it; its answers need no other.
        None if d.trunk.is_some_and(|t| policy.trunks[t].record_route) => {
            if let Some(na) = msg.from_addr() {
                r.keep_from(
                    key,
                    fitted(&crlf(msg, na.whole.of(msg.buf()))),
                    &[],
                    ctx.now_ms,
                );
            }
        }
        // An INVITE of the same Call-ID and From tag that goes on as written (the retry
        // the core asked for, with another From) is what its CANCEL must repeat: the
        // From kept for the one before goes (QA 68).
        None if r.keeps_froms(ctx.now_ms) => r.forget_from(key),
        None => {}
    }
}

/// A From value as kept for a call's later requests: as it is, or, past
/// [`MAX_KEPT_FROM`] (a caller padding its From so that nothing is kept: QA 176 N1),
/// its URI alone as the address of a number (`<sip:user@host:port>`, `<tel:number>`)
/// with its tag: the later requests then show the caller's URI without its display
/// name or parameters, never another caller. A URI too long even so stands for no one
/// (`anonymous.invalid`).
fn fitted(v: &[u8]) -> bytes::Bytes {
    use crate::policy::rate::MAX_KEPT_FROM;
    use crate::sip::uri::Scheme;
    if v.len() <= MAX_KEPT_FROM {
        return bytes::Bytes::copy_from_slice(v);
    }
    let mut out = Vec::with_capacity(128);
    let parsed = crate::sip::addr::parse_one(v, 0, v.len()).ok();
    if let Some((na, _)) = parsed
        && let Ok(u) = crate::sip::uri::parse(v, na.uri)
        && u.scheme != Scheme::Other
    {
        out.extend_from_slice(match u.scheme {
            Scheme::Sips => b"<sips:",
            Scheme::Tel => b"<tel:",
            _ => b"<sip:",
        });
        if let Some(user) = u.user {
            out.extend_from_slice(user.of(v));
            if u.scheme != Scheme::Tel {
                out.push(b'@');
            }
        }
        if u.scheme != Scheme::Tel {
            out.extend_from_slice(u.host.of(v));
            if let Some(p) = u.port {
                out.extend_from_slice(format!(":{p}").as_bytes());
            }
        }
        out.push(b'>');
    }
    if out.is_empty() || out.len() > MAX_KEPT_FROM - 80 {
        out.clear();
        out.extend_from_slice(b"<sip:anonymous@anonymous.invalid>");
    }
    // The dialog is known by the tag: it stays, unless it is too long itself (the later
    // requests then go without one, and the core, knowing no such dialog, refuses them:
    // only a caller that padded its own tag loses).
    let tag = parsed.and_then(|(na, _)| crate::sip::addr::header_param(v, na.params, b"tag"));
    if let Some(t) = tag.filter(|t| out.len() + 5 + t.len() <= MAX_KEPT_FROM) {
        out.extend_from_slice(b";tag=");
        out.extend_from_slice(t);
    }
    bytes::Bytes::from(out)
}

/// Decides on one message.
pub fn decide(policy: &Policy, msg: &Message, ctx: &Context<'_>) -> Decision {
    let d = decide_message(policy, msg, ctx);
    keep_from(policy, msg, &d, ctx);
    // A call the behaviour tracker took in and a rule then refused never reaches the
    // core, and its answer is no event: its place is given back now. (A retransmission
    // took none.)
    if d.features.is_some() && !d.retransmission && d.outcome != Outcome::Forward {
        ctx.behaviour.forget(behaviour::call_key(msg));
    }
    // The ACK to our refusal of an INVITE that carried a To-tag repeats the peer's tag,
    // not ours: it is told by its transaction instead ([`ack_to_our_refusal`]).
    if d.unknown_dialog && matches!(d.outcome, Outcome::Reject { .. }) {
        ctx.rates
            .note_dialog(refusal_key(msg), ctx.now_ms, TRANSACTION_MS);
    }
    d
}

/// An INVITE transaction refused here, as its ACK names it (RFC 3261 17.1.1.3: the ACK
/// to a non-2xx answer has the INVITE's branch and Call-ID).
fn refusal_key(msg: &Message) -> u64 {
    let b = msg.buf();
    let branch = msg
        .top_via()
        .and_then(|v| v.branch)
        .map_or(&b""[..], |s| s.of(b));
    crate::sip::lex::tag_hash(&[b"refused", msg.call_id(), branch])
}

/// An ACK to an answer sipfence gave itself: it ends here. Our To-tags are sixteen hex
/// digits (any other length is not ours, told without hashing); an INVITE that came with
/// a To-tag and was refused here keeps its own tag (a dialog it did not know), and its
/// ACK is told by the transaction.
pub fn ack_to_our_refusal(msg: &Message, rates: &dyn RateCounter, now_ms: u64) -> bool {
    msg.method() == Some(Method::Ack)
        && (msg
            .to_tag()
            .is_some_and(|t| t.len() == 16 && t == &crate::sip::response::stable_tag(msg)[..])
            || rates.knows_dialog(refusal_key(msg), now_ms))
}

/// An INVITE with a To-tag that is judged as a call: it is a re-INVITE only when the
/// dialog is one this gateway carried (or its trunk trusts in-dialog INVITEs);
/// otherwise a To-tag would be all it takes to skip every rule. The proxy asks too, to
/// shed such INVITEs under overload as it sheds initial ones.
pub fn invite_of_unknown_dialog(
    policy: &Policy,
    msg: &Message,
    trunk: Option<usize>,
    rates: &dyn RateCounter,
    now_ms: u64,
) -> bool {
    msg.method() == Some(Method::Invite)
        && msg.to_tag().is_some()
        && trunk.is_some_and(|t| !policy.trunks[t].trust_in_dialog_invites)
        && !dialog_vouched(policy, trunk, msg, rates, now_ms)
}

fn decide_message(policy: &Policy, msg: &Message, ctx: &Context<'_>) -> Decision {
    let trunk = ctx
        .trunk
        .or_else(|| policy.match_trunk(&ctx.source, ctx.local.as_ref()));
    let method = match msg.method() {
        None => return Decision::new(Kind::Response, trunk),
        Some(m) => m,
    };
    let mut kind = kind_of(msg, method);
    let unknown_dialog = kind == Kind::InDialog
        && invite_of_unknown_dialog(policy, msg, trunk, ctx.rates, ctx.now_ms);
    if unknown_dialog {
        kind = Kind::Call;
    }
    let mut d = Decision::new(kind, trunk);
    d.unknown_dialog = unknown_dialog;
    let first_seen = if kind == Kind::Call {
        repeated(policy, msg, ctx, trunk)
    } else {
        None
    };
    d.retransmission = first_seen.is_some();
    if trunk.is_none() {
        // Nothing may enter from an address no trunk claims, call or not.
        if kind != Kind::InDialog || method != Method::Ack {
            fire(policy, &mut d, RuleId::UnknownSource);
        }
        if kind == Kind::Call {
            name_caller(policy, msg, &mut d);
        }
        return d;
    }
    if kind != Kind::Call {
        // A To-tag of a dialog this gateway never carried makes no MESSAGE or REFER
        // in-dialog: judged as one out of a dialog, as such an INVITE is judged as a call
        // (QA 176 N2: an invented To-tag let a MESSAGE "from 95588" by).
        // `trust_in_dialog_invites` speaks of INVITEs (QA 178 B2). Tags of a dialog
        // carried here the other way round (the core's tag in From) name no dialog of
        // the trunk's ([`dialog_key`]: QA 178 B1, QA 182 F5).
        let unknown_dialog =
            || trunk.is_some() && !dialog_vouched(policy, trunk, msg, ctx.rates, ctx.now_ms);
        let shows_sender = matches!(method, Method::Message | Method::Refer)
            && (kind == Kind::OtherRequest || unknown_dialog());
        // What is judged like a call is authenticated like one; and on a trunk that
        // only its digest answers tell (no `sources`), every request that starts
        // something at the core (QA 182 F1: a stranger's MESSAGE, REFER and REGISTER
        // under the enterprise's number went on, filed as the enterprise's). REGISTER,
        // PUBLISH and OPTIONS belong to no dialog: a To-tag on one, invented or a real
        // dialog's, is no reason to let it by (QA 183 F8, QA 187 N2, N4: a stranger's
        // REGISTER with one bound the enterprise's number at the registrar). The
        // requests of dialogs (BYE, PRACK, UPDATE, INFO, NOTIFY...) are challenged
        // only where the trunk's dialogs are record-routed, and then only when neither
        // the dialog tables nor the token of our Record-Route in their Route vouch for
        // the dialog (QA 189: passed whatever their tags, a stranger's NOTIFY and BYE
        // went on, and a core relaying by Route alone sent them to phones). The token
        // holds where no table does (early dialogs, subscriptions, a call from before
        // a restart: QA 187 N1, challenged, such a PRACK, NOTIFY or BYE stopped at a
        // PBX that answers challenges to INVITE and REGISTER alone); without
        // `record_route` such requests go on, for a core that knows its dialogs. Not
        // the keep-alive OPTIONS the gateway answers itself, nor ACK and CANCEL, which
        // no one may challenge (RFC 3261 22.1).
        let by_auth_alone = || {
            trunk.is_some_and(|t| policy.trunks[t].told_by_digest_alone())
                && match method {
                    Method::Ack | Method::Cancel => false,
                    Method::Options if kind == Kind::OtherRequest && addressed_to_proxy(msg) => {
                        false
                    }
                    // In no dialog; nor is a method no dialog of ours knows (QA 189 L1).
                    Method::Register | Method::Publish | Method::Options | Method::Other => true,
                    _ => {
                        kind == Kind::OtherRequest
                            || (trunk.is_some_and(|t| policy.trunks[t].dialog_tokens().is_some())
                                && !dialog_vouched(policy, trunk, msg, ctx.rates, ctx.now_ms))
                    }
                }
        };
        if (shows_sender || by_auth_alone())
            && authentication_refuses(policy, msg, ctx, &mut d, None)
        {
            return d;
        }
        if shows_sender {
            d.kind = Kind::OtherRequest;
            shown_sender(policy, msg, ctx, &mut d);
        }
        return d;
    }
    // A trunk that must prove who it is does so before anything is read of its calls.
    if authentication_refuses(policy, msg, ctx, &mut d, first_seen) {
        return d;
    }
    // Asked here; `judge_caller` confirms it is the call as it went on ([`call_print`]).
    let asked = !d.retransmission && core_asked_retry(msg, ctx);
    judge_caller(policy, msg, ctx, &mut d, asked);
    admit(policy, msg, ctx, &mut d);
    d.spend.settle(d.outcome, ctx.rates, ctx.now_ms);
    // A call that goes on, as its rules counted it: what the core's retry of it must
    // repeat to be that call ([`core_asked_retry`]). (A retransmission's original did
    // this.)
    if d.outcome == Outcome::Forward && !d.retransmission && d.print != 0 {
        ctx.rates
            .remember(d.print, ctx.now_ms, TRANSACTION_MS, true);
    }
    d
}

/// A trunk with `[trunk.auth]` proves who it is (RFC 3261 22.3) before anything is read
/// of what it sends: true when the request is challenged or refused (`d` says how).
/// `first_seen`: when the request this one repeats was first seen (a retransmission is
/// challenged with the nonce its original had).
fn authentication_refuses(
    policy: &Policy,
    msg: &Message,
    ctx: &Context<'_>,
    d: &mut Decision,
    first_seen: Option<u64>,
) -> bool {
    if let Some(ti) = d.trunk
        && let Some(a) = policy.trunks[ti].auth.as_ref()
        && policy.action(d.trunk, RuleId::TrunkAuth).kind != ActionKind::Off
    {
        let tid = policy.trunks[ti].id;
        // Nonces carry calendar time: other gateways check them.
        let mut c = a.check(
            msg,
            ctx.wall_ms,
            policy.reading(d.trunk),
            Some(ctx.source.ip()),
        );
        // Wrong answers are counted per source address; past the limit its answers,
        // right or wrong, are refused alike, so that guessing on learns nothing. Only
        // answers to a nonce of ours count: a sender that never saw our challenge (a
        // forged source address) cannot lock a trunk out.
        if a.max_failures > 0 && !matches!(c, AuthCheck::Missing) {
            let key = auth_failure_key(tid, ctx.source.ip());
            // An answer for another Request-URI is no slip of a password, but a held-back
            // or captured answer tried elsewhere: it counts as a failure too.
            let failures = if matches!(c, AuthCheck::Invalid | AuthCheck::UriMismatch) {
                ctx.rates.hit(key, ctx.now_ms, 60_000)
            } else {
                ctx.rates.peek(key, ctx.now_ms, 60_000)
            };
            if failures > a.max_failures {
                c = AuthCheck::Locked;
            }
        }
        // An answer is good for one call: the transaction that used it first keeps it
        // (its retransmissions carry the same answer), any other request with it is a
        // replay.
        if let AuthCheck::Ok { field } = c
            && let Some(key) = a.answer_key(msg, field, tid)
            && !ctx.rates.claim(
                key,
                transaction_key(tid, msg),
                ctx.now_ms,
                a.answer_ttl_ms(),
            )
        {
            c = AuthCheck::Replayed;
        }
        d.auth = Some(c);
        // A retransmission is challenged as the INVITE it repeats was: the same nonce,
        // whose issue time is in it (QA 43: a second boundary between the two changed
        // the answer).
        // (`first_seen` is steady time: as long ago on the calendar.)
        d.auth_at_ms = first_seen.map_or(ctx.wall_ms, |f| on_calendar(f, ctx));
        if c.refuses() && fire(policy, d, RuleId::TrunkAuth) {
            // A challenge is the configured answer (407); credentials that do not
            // verify are refused, not challenged again for another guess.
            if let Outcome::Reject { code } = &mut d.outcome {
                match c {
                    AuthCheck::Invalid | AuthCheck::Locked => *code = 403,
                    AuthCheck::UriMismatch => *code = 400,
                    _ => {}
                }
            }
            name_caller(policy, msg, d);
            return true;
        }
    }
    false
}

/// An out-of-dialog MESSAGE or REFER shows its sender to a user as a call shows its
/// caller (an SMS "from 95588" through an IP-SM-GW, a transfer "referred by 110"): the
/// caller rules judge it, refusing, rewriting and labelling it as they would a call
/// (QA 173 F2: a bank-phishing MESSAGE with an asserted 95588 went on from the
/// international trunk untouched). It is no call attempt: it counts toward no rate,
/// behaviour or concurrent-call limit.
#[cold]
fn shown_sender(policy: &Policy, msg: &Message, ctx: &Context<'_>, d: &mut Decision) {
    let uncounted = Context {
        rates: &crate::policy::rate::NoCounting,
        behaviour: &crate::behaviour::NoTracking,
        ..*ctx
    };
    judge_caller(policy, msg, &uncounted, d, false);
    if msg.method() == Some(Method::Refer) && !d.is_reject() {
        judge_referrer(policy, msg, &uncounted, d);
    }
}

/// A REFER's Referred-By names who asks for the transfer, and the party transferred is
/// shown it (RFC 3892; QA 182 F2: `"95588"` and `110` went on from a whitelisted
/// sender): it is judged as a number the sender presents beside its own, as a
/// P-Preferred-Identity is. On an enterprise trunk it must be contracted; at the
/// gateways one that names another number than the sender's goes (generic-number);
/// and any trunk refuses what it would refuse presented. The REFER is judged again
/// with the referrer written as a P-Preferred-Identity after its other fields, so that
/// every field read before stands where it was.
#[cold]
fn judge_referrer(policy: &Policy, msg: &Message, ctx: &Context<'_>, d: &mut Decision) {
    let b = msg.buf();
    let Some(h) = msg
        .all(crate::sip::HeaderName::Other)
        .find(|h| h.is(b, crate::sip::REFERRED_BY))
    else {
        return;
    };
    let at = msg.head_end();
    let eol: &[u8] = if b[..at].ends_with(b"\r\n") {
        b"\r\n"
    } else {
        b"\n"
    };
    let mut text = Vec::with_capacity(msg.len() + h.value().len() + 32);
    text.extend_from_slice(&b[..at]);
    text.extend_from_slice(b"P-Preferred-Identity: ");
    text.extend_from_slice(h.value().of(b));
    text.extend_from_slice(eol);
    text.extend_from_slice(&b[at..msg.len()]);
    let Ok(seen) = Message::parse(bytes::Bytes::from(text)) else {
        return;
    };
    let mut r = Decision::new(d.kind, d.trunk);
    judge_caller(policy, &seen, ctx, &mut r, false);
    // What it made match is the REFER's; its identity reads another buffer, and stays.
    d.hits.0 |= r.hits.0;
    d.labels.0 |= r.labels.0;
    d.presented = d.presented.or(r.presented);
    d.presented_hits.0 |= r.presented_hits.0;
    if r.is_reject() {
        d.outcome = r.outcome;
        d.rule = r.rule;
        d.refusal = r.refusal.map(|f| match f.why {
            "Bad P-Preferred-Identity" => Refusal {
                why: "Bad Referred-By",
                ..f
            },
            _ => f,
        });
    } else if r.rewrite_from {
        d.referrer_removed = true;
        d.rule = d.rule.or(r.rule);
    }
}

/// A call refused before any caller rule runs (a stranger's, a trunk's that failed
/// authentication) still names its caller in the decision, so that tracing a number
/// finds those attempts too (QA 43: a stranger's record had the callee, not the caller).
#[cold]
fn name_caller(policy: &Policy, msg: &Message, d: &mut Decision) {
    identity::extract_into(msg, policy.reading(d.trunk), &policy.plan, &mut d.identity);
    if let Some(n) = d.identity.effective_number() {
        d.caller = Some(n);
        d.class = Some(policy.plan.classify(&n));
    }
}

/// The trunk's concurrent-call limit (`concurrent-calls`), after every other rule: a
/// call takes a place only when nothing refuses it, and holds it until its final
/// failure or BYE is seen (see [`crate::behaviour::live`]).
fn admit(policy: &Policy, msg: &Message, ctx: &Context<'_>, d: &mut Decision) {
    let Some(ti) = d.trunk else { return };
    let Some(limit) = policy.trunks[ti].max_concurrent else {
        return;
    };
    if !matches!(d.outcome, Outcome::Forward)
        || policy.action(d.trunk, RuleId::ConcurrentCalls).kind == ActionKind::Off
    {
        return;
    }
    // A retransmission of an INVITE refused here is refused again, even if a place
    // has freed meanwhile: its caller has (or will have) the 503, and would not answer
    // the core's 200.
    let tid = policy.trunks[ti].id;
    let txn = transaction_key(tid, msg) ^ CONCURRENCY_TXN;
    // Only a retransmission is the refused call again: a new attempt (a copy after the
    // caller's ACK) is judged on the places as they are now (QA 94: refused 503 with a
    // place free, and counted as a call all the same).
    let refused_before = d.retransmission && ctx.rates.recall(txn, ctx.now_ms) == Some(false);
    // Any other retransmission is the call that has its place: still ringing, or
    // answered (its place under the dialog now) or failed (given back) with an answer
    // its caller never had (QA 93: the copy took a second place, and at the limit its
    // caller got 503 for a call the callee had answered). A copy sent after the caller
    // acknowledged its answer is no retransmission: a new attempt, which takes a place
    // of its own (QA 52: a core that took it as a new call had it ride past the limit).
    if d.retransmission && !refused_before {
        return;
    }
    let full = refused_before
        || !ctx
            .behaviour
            .admit(tid, behaviour::call_key(msg), limit, ctx.now_ms);
    if full {
        ctx.rates.remember(txn, ctx.now_ms, TRANSACTION_MS, false);
        fire(policy, d, RuleId::ConcurrentCalls);
    }
}

/// Keeps the concurrent-call rule's memory of refused INVITEs apart from the rate
/// rules' memory of the same transactions.
const CONCURRENCY_TXN: u64 = 0x6c69_7665_6361_6c6c;

/// Refuses a request whose identity fields cannot be judged, which no caller rule is
/// the matter of (kept out of line: nearly no call takes this path).
#[cold]
fn refuse_identity(d: &mut Decision) {
    let why = match d.identity.unreadable {
        // The request breaks RFC 3325 9.1, and judging two of its asserted identities
        // would let a third through to the core.
        _ if d.identity.excess_asserted => "Too Many P-Asserted-Identity Values",
        // More numbers presented than are judged (on an enterprise trunk, where every
        // one must be contracted): one would reach the callee unjudged.
        None if d.identity.shown_all.overflow => "Too Many Presented Numbers",
        // Not judged without it: the core, or the callee's equipment, may read a number
        // in the field that the filter cannot (a lenient parser skips an empty list
        // element, a stray byte, blanks inside the brackets).
        Some(HeaderName::PAssertedIdentity) => "Bad P-Asserted-Identity",
        Some(HeaderName::PPreferredIdentity) => "Bad P-Preferred-Identity",
        Some(HeaderName::From) => "Bad From",
        _ => "Bad Remote-Party-ID",
    };
    let r = Refusal { code: 400, why };
    d.outcome = Outcome::Reject { code: r.code };
    d.refusal = Some(r);
}

/// The caller rules alone for an initial INVITE on trunk `trunk`, as if the trunk had
/// proven who it is (`sipfence number` asks what a number would meet on each trunk;
/// a trunk's digest challenge says nothing about the number). Everything else is
/// [`decide`]'s own code path.
pub fn judge_caller_rules(
    policy: &Policy,
    msg: &Message,
    ctx: &Context<'_>,
    trunk: usize,
) -> Decision {
    let mut d = Decision::new(Kind::Call, Some(trunk));
    if trunk < policy.trunks.len() {
        judge_caller(policy, msg, ctx, &mut d, false);
    }
    d
}

/// `asked`: the INVITE retries a call the core asked to send again ([`core_asked_retry`]),
/// which [`Decision::core_retry`] says once [`call_print`] shows it is that call.
fn judge_caller(policy: &Policy, msg: &Message, ctx: &Context<'_>, d: &mut Decision, asked: bool) {
    let Some(ti) = d.trunk else { return };
    let trunk = &policy.trunks[ti];
    let role = trunk.role;
    identity::extract_into(msg, policy.reading(d.trunk), &policy.plan, &mut d.identity);
    if d.identity.excess_asserted
        || d.identity.unreadable.is_some()
        || (role == Role::Enterprise && d.identity.shown_all.overflow)
    {
        return refuse_identity(d);
    }

    // Whether rule `r` is evaluated on this trunk at all: its role's, and not off.
    let runs = |r: RuleId| applies(role, r) && policy.action(Some(ti), r).kind != ActionKind::Off;
    // Rules run in RuleId::ORDER; each block below is one rule.
    macro_rules! rule {
        ($r:expr, $cond:expr) => {
            if runs($r) && $cond {
                if fire(policy, d, $r) {
                    return;
                }
            }
        };
    }

    let isup = d.identity.isup;
    // Rules 3 and 4 made to match by the IAM alone (the SIP headers name a caller) say
    // so, as the number rules do: the record and the ISUP rule hits point at the IAM.
    // A trunk whose calls must show their number refuses a withheld one whatever the
    // network asserts (QA 104: a contracted 400 line hiding its number).
    let withheld = d.identity.withheld_without_identity()
        || (trunk.refuse_withheld && d.identity.withheld_any());
    if withheld && !d.identity.withheld && runs(RuleId::WithheldCaller) {
        d.isup_hits.insert(RuleId::WithheldCaller);
    }
    rule!(RuleId::WithheldCaller, withheld);
    d.blank = d.identity.blank_reason();
    let sip_named = d.identity.effective().is_some_and(|p| p.number.is_ok());
    let blank = d.blank.is_some_and(|r| !r.breaks_plan());
    if blank && sip_named && runs(RuleId::BlankCaller) {
        d.isup_hits.insert(RuleId::BlankCaller);
    }
    // A withheld caller's blank From is the withheld-caller rule's matter, not this
    // one's: with that rule at `monitor` (genuine withheld calls a peer cannot yet
    // send with an asserted identity) they go on, where both rules matching refused
    // them anyway (QA 88). With it off, this rule still refuses the blank caller.
    rule!(
        RuleId::BlankCaller,
        blank && !(withheld && runs(RuleId::WithheldCaller))
    );

    // The numbers judged: the SIP one (asserted, else presented) and the ISUP Calling
    // Party Number of a SIP-I call. A number rule matches when either number does.
    let sip_caller = d.identity.effective_number();
    let isup_caller = isup.and_then(|i| i.calling).and_then(Result::ok);
    let judged = |n: Number, on: On| Judged {
        n,
        class: policy.plan.classify(&n),
        domestic: policy.plan.is_domestic(&n),
        listed: policy.blacklist.lookup(&n),
        on,
    };
    // An enterprise's PBX writes every identity header itself, PAI included: the numbers
    // it presents (From's URI, a number in From's display name, which many phones show,
    // a SIP-I call's Generic Number) are what the callee sees, and must be contracted
    // numbers as much as the asserted one (a whitelisted PAI behind someone else's
    // number in From is the spoofing the whitelist is there to stop). Elsewhere a
    // presented number is the generic-number rule's business.
    let (presented, shown, generic, preferred) = if role == Role::Enterprise {
        let other = |n: &Number| Some(*n) != sip_caller && Some(*n) != isup_caller;
        let user = d.identity.from.and_then(|f| f.number()).filter(other);
        let shown = d
            .identity
            .display_number
            .filter(|n| other(n) && Some(*n) != user);
        let generic = isup
            .and_then(|i| i.generic)
            .and_then(Result::ok)
            .filter(|n| other(n) && Some(*n) != user && Some(*n) != shown);
        // P-Preferred-Identity and an unscreened Remote-Party-ID: what the PBX would
        // like the network to assert.
        let preferred = d
            .identity
            .other_presented()
            .filter(|n| other(n) && ![user, shown, generic].contains(&Some(*n)));
        (user, shown, generic, preferred)
    } else {
        (None, None, None, None)
    };
    // Every other number the display names show: each must be contracted as well.
    // A second Generic Number and the four shown_all keeps: room for all five.
    let mut more = [None; 5];
    if role == Role::Enterprise {
        let judged_already = [
            sip_caller,
            isup_caller,
            presented,
            shown,
            generic,
            preferred,
        ];
        // A second Generic Number first: the IAM's numbers are what an ISUP callee sees.
        let generic2 = isup.and_then(|i| i.generic2).and_then(Result::ok);
        for (slot, n) in more.iter_mut().zip(
            generic2
                .into_iter()
                .chain(d.identity.shown_all.iter())
                .filter(|n| !judged_already.contains(&Some(*n))),
        ) {
            *slot = Some(n);
        }
    }
    d.presented = presented.or(shown).or(generic).or(preferred);
    // RFC 3325's sip + tel pair names one caller; a pair that names two is judged on
    // both, on every trunk: the core may show either (many prefer the tel one), and a
    // domestic number hidden in the second must not pass the international gateway.
    d.asserted2 = d
        .identity
        .asserted2
        .and_then(|p| p.number())
        .filter(|n| sip_caller.is_some() && Some(*n) != sip_caller && Some(*n) != isup_caller);
    // The judged numbers, packed: nearly every call has one, and each number rule
    // looks through them.
    let candidates = [
        sip_caller.map(|n| (n, On::Sip)),
        d.asserted2.map(|n| (n, On::Asserted2)),
        isup_caller
            .filter(|n| Some(*n) != sip_caller)
            .map(|n| (n, On::Isup)),
        presented.map(|n| (n, On::Presented)),
        shown.map(|n| (n, On::Presented)),
        generic.map(|n| (n, On::Presented)),
        preferred.map(|n| (n, On::Presented)),
        more[0].map(|n| (n, On::Presented)),
        more[1].map(|n| (n, On::Presented)),
        more[2].map(|n| (n, On::Presented)),
        more[3].map(|n| (n, On::Presented)),
        more[4].map(|n| (n, On::Presented)),
    ];
    let mut packed: [Option<Judged>; 12] = [None; 12];
    let mut count = 0;
    for (n, on) in candidates.into_iter().flatten() {
        packed[count] = Some(judged(n, on));
        count += 1;
    }
    let nums = &packed[..count];
    let primary = nums.iter().flatten().next().copied();
    if let Some(p) = primary {
        d.caller = Some(p.n);
        d.class = Some(p.class);
    }
    // The retry the core asked for is the call it retries only as that call went on:
    // with another number or callee it is another attempt (QA 72, QA 74). Calls are
    // remembered for it on trunks whose rules count attempts (rate rules, behaviour)
    // always, elsewhere (only the metrics tell) while the core asks for retries at all,
    // so that gateways whose core never does pay nothing: there the first call it
    // challenges after a quiet hour is counted twice.
    let remember = trunk.max_per_minute.is_some()
        || trunk.max_per_minute_per_caller.is_some()
        || trunk.behaviour.is_some()
        || ctx
            .rates
            .recent()
            .is_some_and(|r| r.retries_asked(ctx.now_ms));
    let printed = primary.is_some() && (asked || remember);
    // The callee as the rules read it, once: for the print and the behaviour rules.
    let callee = (printed || trunk.behaviour.is_some())
        .then(|| {
            msg.request_uri()
                .map(|u| identity::uri_number(msg.buf(), u, policy.reading(d.trunk)))
        })
        .flatten();
    if printed {
        let print = call_print(policy, d, msg, nums, &callee);
        d.core_retry = asked && ctx.rates.recall(print, ctx.now_ms) == Some(true);
        d.print = if remember { print } else { 0 };
    }
    if let Some(n) = isup_caller {
        d.isup_caller = Some(n);
        d.isup_class = Some(policy.plan.classify(&n));
    }
    // Digits that no plan holds (more than E.164 and any national plan allow, or `00`
    // alone) are a number that breaks the plan. The caller's own, a second asserted
    // one, and on enterprise trunks a presented one, which is judged there like the
    // numbers below.
    let unholdable = |p: Option<identity::Party>| {
        p.is_some_and(|p| p.number.is_err_and(NotANumber::breaks_plan))
    };
    let caller_unholdable =
        d.blank.is_some_and(NotANumber::breaks_plan) || unholdable(d.identity.asserted2);
    let presented_unholdable = role == Role::Enterprise
        && (d.identity.display_unholdable
            || d.identity.dial_unholdable
            || std::iter::once(d.identity.from)
                .chain(d.identity.presented_parties().map(Some))
                .any(unholdable));
    if caller_unholdable || presented_unholdable {
        if !caller_unholdable {
            d.presented_hits.insert(RuleId::NumberingPlan);
        } else if sip_named
            && d.blank.is_some_and(NotANumber::breaks_plan)
            && runs(RuleId::NumberingPlan)
        {
            // Digits no plan holds in the IAM, the SIP headers naming a number: the
            // IAM's (QA 46: the record and the ISUP rule hits missed it), as for rule 4.
            d.isup_hits.insert(RuleId::NumberingPlan);
        }
        rule!(RuleId::NumberingPlan, true);
    }
    let Some(primary) = primary else {
        // No number to judge (a withheld caller that rule 3 only watches, or rule 4 off
        // or watching): the rules that need none still run. An IAM that cannot be read
        // may hide one; and the generic-number deletion must not leave a forged display
        // name, P-Preferred-Identity, Remote-Party-ID or Generic Number for the callee
        // to see (QA 90 N1: "95588" over an anonymous From, withheld, reached the core).
        rule!(
            RuleId::IsupMismatch,
            isup.is_some_and(|i| i.unreadable_on(role))
        );
        rule!(
            RuleId::GenericNumber,
            d.identity.presented_differs() || isup.is_some_and(|i| i.generic_count() > 0)
        );
        // From abroad, whoever it is: an overseas call (no roamer's number to say
        // otherwise).
        rule!(RuleId::LabelInternational, true);
        return;
    };

    // A number rule: fires when `cond` holds for one of the judged numbers, noting
    // whether it was the ISUP one.
    macro_rules! rule_n {
        ($r:expr, |$j:ident| $cond:expr) => {
            if runs($r) {
                if let Some(hit) = nums.iter().flatten().find(|$j| $cond) {
                    match hit.on {
                        On::Sip => {}
                        On::Isup => d.isup_hits.insert($r),
                        On::Presented => {
                            d.presented_hits.insert($r);
                            // The record shows the presented number that matched.
                            d.presented = Some(hit.n);
                        }
                        On::Asserted2 => d.asserted2_hits.insert($r),
                    }
                    if fire(policy, d, $r) {
                        return;
                    }
                }
            }
        };
    }

    rule_n!(RuleId::NumberingPlan, |j| j.class.class == Class::Invalid);
    rule_n!(RuleId::NoVoiceNumber, |j| j.class.flags.novoice);
    // The exempt list is asked only about a listed number: nothing on the usual path.
    let exempt = |n: &Number| !policy.exempt.is_empty() && policy.exempt.contains(n);
    let any_exempt = !policy.exempt.is_empty()
        && nums
            .iter()
            .flatten()
            .any(|j| j.listed.is_some() && exempt(&j.n))
        && runs(RuleId::Blacklist);
    let listed = |j: &Judged| j.listed.filter(|_| !(any_exempt && exempt(&j.n)));
    d.blacklist_match = nums.iter().flatten().find_map(listed);
    // Exempted only when the exemption let the call past the rule: another of its
    // numbers listed and not exempt is refused all the same (QA 70: the record said
    // the caller was exempt).
    if any_exempt && d.blacklist_match.is_none() {
        d.exempted.insert(RuleId::Blacklist);
    }
    rule_n!(RuleId::Blacklist, |j| listed(j).is_some());

    rule_n!(RuleId::IntlForgedService, |j| policy
        .protected
        .contains(&j.n)
        || (j.domestic && j.class.class.is_service()));
    rule_n!(RuleId::IntlDomesticCaller, |j| j.domestic
        && !policy.roamers.contains(&j.n));

    if role == Role::Enterprise {
        // A number of another country is never one this network assigned; within the
        // country, `own_segments` says which are.
        rule_n!(RuleId::EnterpriseForeignNetwork, |j| !j.domestic
            || (!policy.own_segments.is_empty()
                && !policy.own_segments.contains(&j.n)));
        rule_n!(RuleId::EnterpriseNotWhitelisted, |j| !trunk
            .whitelist
            .as_ref()
            .is_some_and(|w| w.contains(&j.n)));
        // `days` without `hours`: every hour of those days.
        rule!(
            RuleId::EnterpriseHours,
            (trunk.hours.is_some() || trunk.days.is_some()) && {
                let (minute, weekday) = local_time(ctx.wall_ms, trunk.utc_offset_min);
                let in_hours = trunk.hours.is_none_or(|h| {
                    if h.from_min < h.to_min {
                        minute >= h.from_min && minute < h.to_min
                    } else {
                        minute >= h.from_min || minute < h.to_min
                    }
                });
                let day_ok = trunk.days.is_none_or(|days| days.0 & (1 << weekday) != 0);
                !(in_hours && day_ok)
            }
        );
        // Shared counters out of reach: a fail-closed rate rule matches (it still counts,
        // so the count is right when the store is back).
        let closed = |r: RuleId| ctx.rates.degraded() && trunk.action(r).fail_closed;
        // A UDP retransmission of an INVITE is the same call: one that passed the rate
        // rules passes again uncounted (its original went on to the core); one that did
        // not is judged on the counts as they are, without adding to them. The
        // transaction is remembered as refused until the rules let it through, so
        // sending a call twice gains nothing.
        let limited = trunk.max_per_minute.is_some() || trunk.max_per_minute_per_caller.is_some();
        // With the caller judged: an INVITE that copies an allowed call's transaction
        // for another caller is no retransmission of it, and inherits nothing.
        let txn = limited.then(|| {
            crate::sip::lex::tag_hash(&[
                &transaction_key(trunk.id, msg).to_le_bytes(),
                primary.n.digits(),
            ])
        });
        // A transaction whose caller acknowledged its final answer is over: a copy is a
        // new attempt.
        let mut before = txn
            .and_then(|k| ctx.rates.recall(k, ctx.now_ms))
            .filter(|_| !answered_already(msg, ctx));
        if let (None, Some(k)) = (before, txn) {
            // The retry of a call the core challenged passes as its first INVITE did
            // (as it went on: see above), and so do its retransmissions.
            let retry = d.core_retry;
            if retry {
                before = Some(true);
            }
            ctx.rates.remember(k, ctx.now_ms, TRANSACTION_MS, retry);
        }
        let count = |key: u64| match before {
            None => ctx.rates.hit(key, ctx.now_ms, 60_000),
            Some(_) => ctx.rates.peek(key, ctx.now_ms, 60_000),
        };
        if before != Some(true) && ctx.rates.degraded() {
            let closes = |r: RuleId, limit: Option<u32>| {
                runs(r) && limit.is_some() && trunk.action(r).fail_closed
            };
            d.rate_fallback = Some(
                if closes(RuleId::EnterpriseRateTrunk, trunk.max_per_minute)
                    || closes(
                        RuleId::EnterpriseRateCaller,
                        trunk.max_per_minute_per_caller,
                    )
                {
                    crate::policy::config::Fallback::Closed
                } else {
                    crate::policy::config::Fallback::Open
                },
            );
        }
        if before != Some(true) {
            // The trunk's limit counts the calls it lets through: a caller over its
            // own limit spends none of the trunk's, so one runaway dialler cannot lock
            // the enterprise's other callers out. A caller's limit counts its every
            // attempt, so that hammering on keeps it refused. (Two workers may both see
            // room for the last call: an overshoot of at most one per worker.)
            let trunk_key = rate_key(trunk.id, None);
            rule!(
                RuleId::EnterpriseRateTrunk,
                trunk.max_per_minute.is_some_and(|max| ctx
                    .rates
                    .peek(trunk_key, ctx.now_ms, 60_000)
                    >= max
                    || closed(RuleId::EnterpriseRateTrunk))
            );
            // A call counts against every number it shows the callee as much as against
            // the asserted one: a PBX rotating its asserted number (and From) behind one
            // shown number, in From, a display name or a Generic Number, is that number
            // calling (QA 43, QA 45); so is the second asserted one, and the IAM's (QA
            // 52: a sip PAI rotating beside a fixed tel one, which the core may show,
            // never reached the limit). Each distinct number is counted once a call (a
            // From showing the second asserted number is one caller), the caller's and
            // the IAM's before the shown ones, then judged.
            let mut numbers = [(Number::default(), false); 12];
            let mut kept = 0;
            for (n, shown) in [
                (Some(primary.n), false),
                (d.asserted2, false),
                (isup_caller, false),
            ]
            .into_iter()
            .chain(
                [presented, shown, generic, preferred]
                    .into_iter()
                    .chain(more)
                    .map(|n| (n, true)),
            )
            .filter_map(|(n, shown)| n.map(|n| (n, shown)))
            {
                if kept < numbers.len() && !numbers[..kept].iter().any(|(m, _)| *m == n) {
                    numbers[kept] = (n, shown);
                    kept += 1;
                }
            }
            let over = runs(RuleId::EnterpriseRateCaller)
                .then_some(trunk.max_per_minute_per_caller)
                .flatten()
                .map(|max| {
                    let (mut caller, mut shown) = (false, false);
                    for &(n, is_shown) in &numbers[..kept] {
                        if count(rate_key(trunk.id, Some(&n))) > max {
                            *(if is_shown { &mut shown } else { &mut caller }) = true;
                        }
                    }
                    (caller, shown)
                });
            // Over on a shown number alone: the record says the presented number matched,
            // not the caller it names, which may have called once (QA 52).
            if let Some((false, true)) = over {
                d.presented_hits.insert(RuleId::EnterpriseRateCaller);
            }
            rule!(
                RuleId::EnterpriseRateCaller,
                over.is_some_and(|(a, s)| a || s) || closed(RuleId::EnterpriseRateCaller)
            );
            if trunk.max_per_minute.is_some() {
                d.spend.add(trunk_key);
            }
            if let Some(k) = txn {
                ctx.rates.remember(k, ctx.now_ms, TRANSACTION_MS, true);
            }
        }
    }

    // The IAM cannot be read (it may hide a number; on an enterprise trunk, one that
    // presents more numbers than are judged counts so), or its calling number is not
    // the one SIP asserts.
    rule!(
        RuleId::IsupMismatch,
        isup.is_some_and(|i| i.unreadable_on(role)
            || matches!((isup_caller, sip_caller), (Some(a), Some(b)) if a != b))
    );
    if let Some(b) = &trunk.behaviour
        && judge_behaviour(
            policy,
            msg,
            ctx,
            d,
            b,
            ti,
            &primary.n,
            exempt(&primary.n),
            &callee,
        )
    {
        return;
    }
    rule!(
        RuleId::GenericNumber,
        d.identity.presented_differs() || isup.is_some_and(|i| i.generic_count() > 0)
    );
    rule_n!(RuleId::LabelMvno, |j| j.class.flags.mvno);
    rule_n!(RuleId::LabelServiceShape, |j| !j.domestic
        && service_shaped(policy, &j.n));
    rule_n!(RuleId::LabelInternational, |j| !j.domestic);
}

/// The behaviour rules: counts this attempt, reads the caller's features back and
/// fires the rules whose threshold they reach or that the caller is watched for.
/// An `exempt` caller is counted (its record shows its features) but no rule fires
/// on it and it is never watched: the rules it reaches are noted as exempted.
/// Returns true when the call is rejected.
#[allow(clippy::too_many_arguments)]
fn judge_behaviour(
    policy: &Policy,
    msg: &Message,
    ctx: &Context<'_>,
    d: &mut Decision,
    b: &BehaviourConf,
    ti: usize,
    caller: &Number,
    exempt: bool,
    callee: &Option<UriNumber>,
) -> bool {
    let t = d.trunk;
    let on = |r: RuleId| policy.action(t, r).kind != ActionKind::Off;
    if !RuleId::BEHAVIOUR.into_iter().any(on) {
        return false;
    }
    let tid = policy.trunks[ti].id;
    let key = rate_key(tid, Some(caller));
    let buf = msg.buf();
    let (callee_hash, callee_seq) = match callee {
        Some((_, Ok(n))) => (n.key(), Some(n.key())),
        Some((user, Err(_))) => (crate::sip::lex::fnv1a(&[user.of(buf)]), None),
        None => (0, None),
    };
    let mut f = ctx.behaviour.on_call(&CallStart {
        caller: key,
        call: behaviour::call_key(msg),
        // Only the retry the core asked for, as its call went on, is that call.
        retry: if d.core_retry {
            behaviour::retry_key(msg)
        } else {
            0
        },
        trunk: policy.trunks[ti].tag(),
        callee_hash,
        callee_seq,
        now_ms: ctx.now_ms,
        window_ms: b.window_secs as u64 * 1000,
        ring_once_ms: b.ring_once_secs().saturating_mul(1000),
        settle_ms: b.asr_settle_secs().saturating_mul(1000),
        short_call_ms: b.short_call_secs().saturating_mul(1000),
        repeat: d.retransmission,
    });
    if f.watch_until_ms > 0 {
        f.watch_until_ms = on_calendar(f.watch_until_ms, ctx);
    }
    d.features = Some(f);
    let reached = |t: Option<u32>, v: u32| t.is_some_and(|t| v >= t);
    let mut tripped = RuleSet::default();
    let mut rejected = false;
    for r in RuleId::BEHAVIOUR {
        if !on(r) {
            continue;
        }
        let now = match r {
            RuleId::BehaviourAttempts => reached(b.attempts, f.attempts),
            RuleId::BehaviourCallees => reached(b.distinct_callees, f.callees),
            RuleId::BehaviourSequential => reached(b.sequential_callees, f.sequential),
            RuleId::BehaviourLowAsr => b.min_asr_percent.is_some_and(|min| {
                f.settled >= b.asr_min_attempts().max(1) && f.asr_percent() < min
            }),
            // Distinct callees, and a share: one person hanging up on one number, or a
            // busy line's few misdials among its answered calls, is no campaign.
            RuleId::BehaviourRingOnce => {
                reached(b.ring_once, f.ring_once_callees)
                    && f.ring_once_percent() >= b.ring_once_percent()
            }
            RuleId::BehaviourShortCalls => reached(b.short_calls, f.short_calls),
            _ => false,
        };
        if !now && !f.watched.contains(r) {
            continue;
        }
        if exempt {
            d.exempted.insert(r);
            continue;
        }
        if now {
            tripped.insert(r);
        }
        let a = policy.action(d.trunk, r);
        if a.kind == ActionKind::RateLimit {
            // Each rate-limited rule counts in its own key: two of them do not share.
            let rk = crate::policy::rate::keyed_closed(
                tid,
                key ^ (r.index() as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15),
            );
            // A retransmission of an INVITE is the same call: it keeps the verdict its
            // original had, uncounted (as for the enterprise rate rules).
            let txn = crate::sip::lex::tag_hash(&[
                b"behaviour-rate",
                &transaction_key(tid, msg).to_le_bytes(),
                &rk.to_le_bytes(),
            ]);
            let over = match ctx.rates.recall(txn, ctx.now_ms) {
                Some(passed) => !passed,
                // The retry the core asked for is the call this rule let through: it
                // passes again, spending nothing (QA 75: a challenging core halved the
                // allowance and refused calls on their retry).
                None if d.core_retry => {
                    ctx.rates.remember(txn, ctx.now_ms, TRANSACTION_MS, true);
                    false
                }
                None => {
                    // Only the calls let through use the allowance up: this one when
                    // no later rule refuses it.
                    let over = !ctx
                        .rates
                        .allows(rk, ctx.now_ms, 60_000, b.rate_limit_per_minute);
                    if !over {
                        d.spend.add(rk);
                    }
                    ctx.rates.remember(txn, ctx.now_ms, TRANSACTION_MS, !over);
                    over
                }
            };
            if over {
                reject(d, r, a.code);
                rejected = true;
                break;
            }
        }
        if fire(policy, d, r) {
            rejected = true;
            break;
        }
    }
    if !tripped.is_empty() {
        let until = ctx.now_ms + b.watch_secs as u64 * 1000;
        ctx.behaviour.watch(key, tripped, until);
        // The record says what the caller is watched for from this call on (on the
        // calendar, as the record's time: QA 194 A2).
        if let Some(f) = &mut d.features {
            f.watched.0 |= tripped.0;
            f.watch_until_ms = f.watch_until_ms.max(on_calendar(until, ctx));
        }
    }
    rejected
}

/// A steady time as the calendar has it (what records show).
fn on_calendar(steady_ms: u64, ctx: &Context<'_>) -> u64 {
    crate::time::on_calendar(steady_ms, ctx.now_ms, ctx.wall_ms)
}

/// One calling number under judgement.
#[derive(Debug, Clone, Copy)]
struct Judged {
    n: Number,
    class: Classification,
    domestic: bool,
    listed: Option<ListMatch>,
    on: On,
}

/// Which of a call's numbers a [`Judged`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum On {
    /// The SIP caller: asserted, else presented.
    Sip,
    /// The ISUP Calling Party Number of a SIP-I call.
    Isup,
    /// A number presented beside a different caller (From's URI or display name, the
    /// IAM's Generic Number; enterprise trunks).
    Presented,
    /// The second P-Asserted-Identity, when it names another number.
    Asserted2,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_time_and_weekday() {
        // 2026-11-30T00:30:00Z is a Monday, 08:30 in +08:00.
        let t = 1_795_998_600_000u64;
        assert_eq!(local_time(t, 8 * 60), (8 * 60 + 30, 0));
        assert_eq!(local_time(t, 0), (30, 0));
        // 23:30 the day before in -01:00: Sunday.
        assert_eq!(local_time(t, -60), (23 * 60 + 30, 6));
    }
}
