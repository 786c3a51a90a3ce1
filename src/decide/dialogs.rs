//! What the rules remember of calls and dialogs between messages, through the rate
//! counters' memory (shared through Redis when the policy says so): retransmissions,
//! dialogs and their tokens, offers, retries the core asked for, the From a call went
//! on with, the ACKs of our refusals.

use super::*;

/// When the initial INVITE this one repeats was first seen, within [`TRANSACTION_MS`]
/// of that (its client's Timer B); `None`, and remembered, if it repeats none. A retransmission is the
/// same request (RFC 3261 17.1.1.2), byte for byte: keyed on the whole message, so
/// that an INVITE reusing a branch, Call-ID and tags with another caller is a call of
/// its own, counted and recorded, not hidden as a retransmission.
pub(super) fn repeated(
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
pub(super) fn sight_key(policy: &Policy, msg: &Message, trunk: Option<usize>) -> u64 {
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
pub(super) fn answered_already(msg: &Message, ctx: &Context<'_>) -> bool {
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
pub(super) fn acked_key(call_id: &[u8], caller_tag: &[u8], cseq: u32) -> u64 {
    crate::sip::lex::tag_hash(&[b"acked", call_id, caller_tag, &cseq.to_le_bytes()])
}

/// Key in the rate counters' memory of a call a BYE ended, by Call-ID and the caller's
/// tag: its caller had the answer whether or not its ACK came this way (QA 94: an ACK sent
/// around the gateway left the INVITE's copies after the BYE uncounted).
pub(super) fn ended_key(call_id: &[u8], tag: &[u8]) -> u64 {
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
pub(super) fn dialog_of(msg: &Message) -> u64 {
    dialog_key(
        msg.call_id(),
        msg.from_tag_read().unwrap_or_default(),
        msg.to_tag_read().unwrap_or_default(),
    )
}

pub(super) fn dialog_known(msg: &Message, rates: &dyn RateCounter, now_ms: u64) -> bool {
    rates.knows_dialog(dialog_of(msg), now_ms)
}

/// Whether a trunk's request names a dialog this gateway let on: one its tables know
/// (an INVITE's 2xx passed), or one whose token (on a trunk that has them,
/// [`crate::policy::Trunk::dialog_tokens`]) its Route carries, which holds for early
/// dialogs, subscriptions, and calls from before a restart too.
pub(super) fn dialog_vouched(
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
pub(super) fn offer_key(call_id: &[u8]) -> u64 {
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
pub(super) fn challenge_key(call_id: &[u8], caller_tag: &[u8]) -> u64 {
    crate::sip::lex::tag_hash(&[b"challenged", call_id, caller_tag])
}

/// A URI's user part and the number the rules read in it ([`identity::uri_number`]).
pub(super) type UriNumber = (crate::sip::Span, Result<Number, NotANumber>);

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
pub(super) fn call_print(
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
pub(super) fn core_asked_retry(msg: &Message, ctx: &Context<'_>) -> bool {
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
pub(super) fn retry_asked_of(msg: &Message, ctx: &Context<'_>) -> Option<u64> {
    // The retry has the next CSeq (RFC 3261 8.1.3.5): a call's first INVITE, nearly
    // always CSeq 1, is not looked up.
    if msg.cseq().is_none_or(|(n, _)| n < 2) {
        return None;
    }
    let challenged = challenge_key(msg.call_id(), msg.from_tag().unwrap_or_default());
    (ctx.rates.recall(challenged, ctx.now_ms) == Some(true)).then_some(challenged)
}

/// Key of the From value a call's INVITE was forwarded with: its Call-ID and From tag.
pub(super) fn from_key(call_id: &[u8], caller_tag: &[u8]) -> u64 {
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
pub(super) fn keep_from(policy: &Policy, msg: &Message, d: &Decision, ctx: &Context<'_>) {
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
pub(super) fn fitted(v: &[u8]) -> bytes::Bytes {
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

/// An INVITE transaction refused here, as its ACK names it (RFC 3261 17.1.1.3: the ACK
/// to a non-2xx answer has the INVITE's branch and Call-ID).
pub(super) fn refusal_key(msg: &Message) -> u64 {
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
