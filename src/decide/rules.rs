//! The rules: trunk authentication, the caller's identity and number (every role's
//! rules, in the order [`judge_caller`] runs them), admission (hours, rates, concurrent
//! calls), the behaviour rules, and the keys they count by. Each fires through
//! [`fire`], which applies the policy's action for it.

use super::*;

/// Key of a trunk, or of a caller within a trunk: rate counters and behaviour tables.
/// `trunk` is the trunk's [`crate::policy::Trunk::id`] (its name's), not its place in
/// the file, so that counts survive a reload that adds or reorders trunks.
pub(super) fn rate_key(trunk: u64, caller: Option<&Number>) -> u64 {
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
pub(super) fn auth_failure_key(trunk: u64, ip: std::net::IpAddr) -> u64 {
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
pub(super) fn local_time(now_ms: u64, offset_min: i32) -> (u16, u8) {
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
pub(super) fn service_shaped(policy: &Policy, n: &Number) -> bool {
    let d = n.digits();
    (1..=3).any(|k| {
        d.len() > k && d.len() - k <= 6 && policy.plan.classify_nsn(&d[k..]).class.is_service()
    })
}

/// A trunk with `[trunk.auth]` proves who it is (RFC 3261 22.3) before anything is read
/// of what it sends: true when the request is challenged or refused (`d` says how).
/// `first_seen`: when the request this one repeats was first seen (a retransmission is
/// challenged with the nonce its original had).
pub(super) fn authentication_refuses(
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
pub(super) fn shown_sender(policy: &Policy, msg: &Message, ctx: &Context<'_>, d: &mut Decision) {
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
pub(super) fn judge_referrer(policy: &Policy, msg: &Message, ctx: &Context<'_>, d: &mut Decision) {
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
pub(super) fn name_caller(policy: &Policy, msg: &Message, d: &mut Decision) {
    identity::extract_into(msg, policy.reading(d.trunk), &policy.plan, &mut d.identity);
    if let Some(n) = d.identity.effective_number() {
        d.caller = Some(n);
        d.class = Some(policy.plan.classify(&n));
    }
}

/// The trunk's concurrent-call limit (`concurrent-calls`), after every other rule: a
/// call takes a place only when nothing refuses it, and holds it until its final
/// failure or BYE is seen (see [`crate::behaviour::live`]).
pub(super) fn admit(policy: &Policy, msg: &Message, ctx: &Context<'_>, d: &mut Decision) {
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
pub(super) const CONCURRENCY_TXN: u64 = 0x6c69_7665_6361_6c6c;

/// Refuses a request whose identity fields cannot be judged, which no caller rule is
/// the matter of (kept out of line: nearly no call takes this path).
#[cold]
pub(super) fn refuse_identity(d: &mut Decision) {
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
pub(super) fn judge_caller(
    policy: &Policy,
    msg: &Message,
    ctx: &Context<'_>,
    d: &mut Decision,
    asked: bool,
) {
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
pub(super) fn judge_behaviour(
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
pub(super) fn on_calendar(steady_ms: u64, ctx: &Context<'_>) -> u64 {
    crate::time::on_calendar(steady_ms, ctx.now_ms, ctx.wall_ms)
}

/// One calling number under judgement.
#[derive(Debug, Clone, Copy)]
pub(super) struct Judged {
    pub(super) n: Number,
    pub(super) class: Classification,
    pub(super) domestic: bool,
    pub(super) listed: Option<ListMatch>,
    pub(super) on: On,
}

/// Which of a call's numbers a [`Judged`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum On {
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
