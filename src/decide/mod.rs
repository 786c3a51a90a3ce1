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

mod dialogs;
mod rules;
pub use dialogs::*;
pub use rules::*;

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
