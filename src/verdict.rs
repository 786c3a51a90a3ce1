//! Turning a [`Decision`] into bytes: the rejection response, or the header edits
//! (generic-number rewrite, labels, verstat) to apply to the forwarded request.

use crate::decide::{Decision, Kind, Outcome, Refusal, transaction_key, unsupported_tags};
use crate::identity::{Party, Source};
use crate::isup;
use crate::policy::auth::AuthCheck;
use crate::policy::config::Role;
use crate::policy::{Policy, RuleId};
use crate::sip::response::{self, Extra};
use crate::sip::rewrite::EditList;
use crate::sip::uri::{self, Scheme};
use crate::sip::{HeaderName, Message, Span, addr};

/// Writes the response for a rejected request; false when the decision is not a rejection.
/// `source` is where the request came from, for the answer's top Via (RFC 3581).
pub fn write_reject(
    policy: &Policy,
    msg: &Message,
    d: &Decision,
    source: Option<std::net::SocketAddr>,
    out: &mut Vec<u8>,
) -> bool {
    let Outcome::Reject { code } = d.outcome else {
        return false;
    };
    if let Some(r) = d.refusal {
        write_refusal(policy, msg, r, source, out);
        return true;
    }
    // Credentials that fail are sipfence's own answer (403 or 400 whatever the rule's
    // code), so they say why rather than repeat the challenge's text.
    let failed = match d.auth.filter(|_| d.rule == Some(RuleId::TrunkAuth)) {
        Some(AuthCheck::Invalid | AuthCheck::Locked) => Some("Trunk authentication failed"),
        Some(AuthCheck::UriMismatch) => Some("Digest answer made for another callee"),
        // `isup-mismatch` refuses an IAM that says another caller and one that cannot
        // be read: the peer's NOC is told which it was (unless the operator wrote the
        // rule's own reason).
        _ if d.rule == Some(RuleId::IsupMismatch)
            && d.identity.isup.is_some_and(|i| {
                i.unreadable_on(
                    d.trunk
                        .and_then(|t| policy.trunks.get(t))
                        .map_or(Role::International, |t| t.role),
                )
            })
            && *policy.action(d.trunk, RuleId::IsupMismatch).reason
                == *RuleId::IsupMismatch.default_reason() =>
        {
            Some("ISUP IAM unreadable")
        }
        _ => None,
    };
    let reason = d
        .rule
        .filter(|_| policy.reason_header)
        .map(|r| failed.unwrap_or(&policy.action(d.trunk, r).reason));
    // A trunk's call without good credentials: the challenge to answer (RFC 3261 22.3).
    let mut challenge = Vec::new();
    if let (Some(RuleId::TrunkAuth), Some(c), Some(t)) = (d.rule, d.auth, d.trunk)
        && c.challenges()
        && let Some(a) = &policy.trunks[t].auth
    {
        // Each challenge its own nonce, the same for a retransmission.
        a.challenge(
            d.auth_at_ms,
            transaction_key(policy.trunks[t].id, msg),
            source.map(|s| s.ip()),
            c.stale(),
            &mut challenge,
        );
    }
    let extra = Extra {
        reason_text: reason,
        retry_after: None,
        server: (!policy.server.is_empty()).then_some(policy.server.as_str()),
        source,
        fields: &challenge,
    };
    response::write_response(msg, code, response::phrase(code), &extra, out);
    true
}

/// Writes the answer to a request the protocol checks refused: its Reason says why,
/// and an unsupported Proxy-Require is answered with the tags (RFC 3261 20.40).
pub fn write_refusal(
    policy: &Policy,
    msg: &Message,
    r: Refusal,
    source: Option<std::net::SocketAddr>,
    out: &mut Vec<u8>,
) {
    let mut tags = Vec::new();
    if r.code == 420 {
        for (i, t) in unsupported_tags(msg, &policy.proxy.proxy_require_accepted).enumerate() {
            tags.extend_from_slice(if i == 0 { b"Unsupported: " } else { b", " });
            tags.extend_from_slice(t);
        }
        tags.extend_from_slice(b"\r\n");
    }
    let extra = Extra {
        // What was wrong, unless the operator keeps Reason off every answer.
        reason_text: Some(r.why).filter(|_| policy.reason_header),
        // A transport refusal (the next hop is down): when to try again.
        retry_after: (r.code == 503).then_some(policy.proxy.retry_after),
        server: (!policy.server.is_empty()).then_some(policy.server.as_str()),
        source,
        fields: &tags,
    };
    response::write_response(msg, r.code, response::phrase(r.code), &extra, out);
}

/// Removes the Remote-Party-ID fields that name the called party (one of their
/// values, unless the field also holds the asserted identity).
fn remove_called_party(msg: &Message, d: &Decision, edits: &mut EditList) {
    let b = msg.buf();
    let asserted_line = d.identity.asserted_rpid();
    for h in msg.all(HeaderName::RemotePartyId) {
        if Some(h.value()) == asserted_line {
            // The asserted value stays; a called-party one beside it in the field goes
            // alone (QA 107: `<sip:110@pbx>;party=called, <...>;party=calling;screen=yes`
            // went on whole, 110 first, where equipment reads the first value).
            remove_called_values(b, h.value(), edits);
            continue;
        }
        let mut called = false;
        let _ = addr::parse_list_skip_empty(b, h.value(), |na| {
            called |= crate::identity::is_called_party(b, &na);
        });
        if called {
            edits.remove(h.line());
        }
    }
}

/// Takes the called-party values out of a Remote-Party-ID field that keeps others: each
/// with the separator after it, or, the last, with the one before it.
fn remove_called_values(b: &[u8], v: Span, edits: &mut EditList) {
    let mut values = [(Span::new(0, 0), false); 4];
    let mut n = 0;
    let _ = addr::parse_list_skip_empty(b, v, |na| {
        if let Some(slot) = values.get_mut(n) {
            *slot = (na.whole, crate::identity::is_called_party(b, &na));
        }
        n += 1;
    });
    // A field of more values than an identity field holds is left as it is.
    if n > values.len() {
        return;
    }
    let values = &values[..n];
    for (i, &(whole, called)) in values.iter().enumerate() {
        if !called {
            continue;
        }
        if let Some(&(next, _)) = values.get(i + 1) {
            edits.remove(Span::new(whole.start as usize, next.start as usize));
        } else if let Some(&(kept, _)) = values[..i].iter().rev().find(|v| !v.1) {
            // The last: from the end of the last value kept (any called ones between
            // go with it; their own removals, inside this one, are skipped).
            edits.remove(Span::new(kept.end as usize, whole.end as usize));
        }
    }
}

/// The From value a forwarded INVITE goes on with, when the edits change it: its CANCEL
/// and the caller's later requests are given it too ([`crate::decide::kept_from`]).
pub fn forwarded_from(policy: &Policy, msg: &Message, d: &Decision) -> Option<Vec<u8>> {
    let na = msg.from_addr()?;
    let mut edits = EditList::new();
    add_edits(policy, msg, d, None, &mut edits);
    let mut out = Vec::new();
    match edits.apply_within(msg.buf(), na.whole, &mut out) {
        Some(true) => Some(out),
        _ => None,
    }
}

/// Adds the edits a forwarded call needs to `edits`. Returns how many were added.
/// `kept_from`: for a later request of a call whose INVITE's From was changed, the From
/// value that INVITE went on with ([`crate::decide::kept_from`]).
pub fn add_edits(
    policy: &Policy,
    msg: &Message,
    d: &Decision,
    kept_from: Option<&[u8]>,
    edits: &mut EditList,
) -> usize {
    let before = edits.len();
    if d.is_reject() {
        return 0;
    }
    let b = msg.buf();
    // Credentials for our realm were for us: they go no further (RFC 3261 22.3).
    if let Some(AuthCheck::Ok { field }) = d.auth
        && let Some(h) = msg.headers().get(field as usize)
    {
        edits.remove(h.line());
    }
    // A REFER's referrer presenting another number than its sender goes, as a
    // P-Preferred-Identity would ([`crate::decide::Decision::referrer_removed`]).
    if d.referrer_removed {
        for h in msg.all(HeaderName::Other) {
            if h.is(b, crate::sip::REFERRED_BY) {
                edits.remove(h.line());
            }
        }
    }
    if let (Kind::InDialog, Some(t)) = (d.kind, d.trunk) {
        remove_later_identities(policy, msg, edits);
        if let Some(a) = &policy.trunks[t].auth {
            for h in msg.all(HeaderName::ProxyAuthorization) {
                if a.is_ours(h.value().of(b)) {
                    edits.remove(h.line());
                }
            }
        }
        if let (Some(v), Some(na)) = (kept_from, msg.from_addr())
            && na.whole.of(b) != v
        {
            edits.replace(na.whole, v);
        }
    }
    if d.kind == Kind::Call {
        remove_planted_verdicts(policy, msg, edits);
        // Where the generic-number rule has not taken every presented Remote-Party-ID
        // (an enterprise trunk, or the rule off), a called-party one still goes: it is
        // no caller to judge (it names the callee, whom no whitelist holds), and
        // equipment that reads the field whatever `party` says would show its number
        // as the caller's.
        if d.identity.called_party && !d.rewrite_from {
            remove_called_party(msg, d, edits);
        }
    }
    let mut from_edit = FromEdit::Untouched;
    if d.rewrite_from {
        // The rule also fires for a Generic Number in the IAM alone: From is only
        // touched when it presents a number of its own, or shows the number of a caller
        // who asked for privacy (QA 112: a restricted IAM's caller stayed in From
        // unless a display name made From differ).
        let hidden_shown =
            d.identity.hides_number() && d.identity.from.is_some_and(|f| f.number.is_ok());
        if (d.identity.from_differs() || hidden_shown)
            && let Some(na) = msg.from_addr()
        {
            from_edit = match d.identity.asserted.and_then(|p| p.number()) {
                // The caller asked for privacy (RFC 3323): the generic number goes, but
                // putting the asserted number in its place would show the callee whom
                // the network was told to hide. From becomes anonymous instead; the
                // asserted identity travels on in P-Asserted-Identity.
                _ if d.identity.hides_number() => {
                    anonymise_from(b, na, edits);
                    FromEdit::Replaced
                }
                Some(asserted) => {
                    rewrite_from(b, na, &asserted, edits);
                    FromEdit::Replaced
                }
                // No asserted number: only the display name, or the URI's password,
                // showed another number; the URI's own number stays.
                None => match d.identity.from.and_then(|f| f.number()) {
                    Some(own) if d.identity.password_number.is_some_and(|n| n != own) => {
                        rewrite_from(b, na, &own, edits);
                        FromEdit::Replaced
                    }
                    _ => {
                        remove_display(b, na, edits);
                        FromEdit::DisplayRemoved
                    }
                },
            };
        }
        // The user's wish for an identity has no place once the network asserted one,
        // nor has a Remote-Party-ID that is not the asserted identity (legacy equipment
        // behind the gateway may still show it).
        for h in msg.all(HeaderName::PPreferredIdentity) {
            edits.remove(h.line());
        }
        let asserted_line = d.identity.asserted_rpid();
        for h in msg.all(HeaderName::RemotePartyId) {
            if Some(h.value()) != asserted_line {
                edits.remove(h.line());
            } else if let Some(a) = d.identity.asserted {
                keep_only_asserted(b, h.value(), &a, edits);
            }
        }
        // A P-Asserted-Identity display name showing another number goes, and so does
        // the asserted Remote-Party-ID's; their URIs stay.
        if !d.identity.header_shown.is_empty() {
            let caller = d.identity.effective_number();
            let r = policy.reading(d.trunk);
            let fields = msg
                .all(HeaderName::PAssertedIdentity)
                .chain(msg.all(HeaderName::RemotePartyId))
                .filter(|h| {
                    h.name == HeaderName::PAssertedIdentity || Some(h.value()) == asserted_line
                });
            for h in fields {
                let _ = addr::parse_list_skip_empty(b, h.value(), |na| {
                    // Read as the identity read it: against the value's own number.
                    let (user, own) = crate::identity::uri_number(b, na.uri, r);
                    if na
                        .display
                        .filter(|&s| crate::identity::unquote(s.of(b)) != user.of(b))
                        .and_then(|s| {
                            crate::identity::display_number(b, s, r, &policy.plan, own.ok())
                        })
                        .is_some_and(|n| Some(n) != caller)
                    {
                        remove_display(b, &na, edits);
                    }
                });
            }
        }
        if let Some(i) = &d.identity.isup {
            delete_isup_generic(msg, i, edits);
        }
    }
    let global = write_global_forms(msg, d, from_edit, edits);
    if !d.labels.is_empty() {
        let at = msg.head_end();
        edits.insert_with(at, |out| {
            out.extend_from_slice(policy.label_header.as_bytes());
            out.extend_from_slice(b": ");
            // Each label once, when two rules share one (QA 176 N7:
            // `international,international`).
            let mut written = 0;
            for (i, r) in d.labels.iter().enumerate() {
                let label = policy.action(d.trunk, r).label.as_bytes();
                if d.labels
                    .iter()
                    .take(i)
                    .any(|o| policy.action(d.trunk, o).label.as_bytes() == label)
                {
                    continue;
                }
                if written > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(label);
                written += 1;
            }
            out.extend_from_slice(b"\r\n");
        });
        // On every asserted value: the tel URI of a sip + tel pair is the one many
        // cores show.
        if let Some(v) = &policy.verstat {
            for p in [d.identity.asserted, d.identity.asserted2]
                .into_iter()
                .flatten()
            {
                if p.source == Source::PAssertedIdentity
                    && !p.user.is_empty()
                    && let Some(place) =
                        telephone_subscriber(msg.buf(), &p, global.contains(&p.user.start))
                {
                    if let Some(at) = place.open {
                        edits.insert(at, b"<");
                    }
                    // Brought inside the brackets, the parameters lose the white space
                    // around their `;`, which no URI has (RFC 3261 25.1; QA 191 F1:
                    // `<sip:...@gw ;user=phone>` parsed nowhere, Kamailio lost the
                    // asserted identity).
                    if let Some(params) = place.squeeze {
                        let b = msg.buf();
                        let mut i = params.start as usize;
                        while i < params.end as usize {
                            let run = b[i..params.end as usize]
                                .iter()
                                .take_while(|c| matches!(c, b' ' | b'\t' | b'\r' | b'\n'))
                                .count();
                            if run > 0 {
                                edits.remove(Span::new(i, i + run));
                            }
                            i += run.max(1);
                        }
                    }
                    edits.insert_with(p.user.end as usize, |out| {
                        out.extend_from_slice(b";verstat=");
                        out.extend_from_slice(v.as_bytes());
                    });
                    if let Some((at, text)) = place.close {
                        edits.insert(at, text);
                    }
                }
            }
        }
    }
    edits.len() - before
}

/// What besides `;verstat=` after the user part a sip URI needs to carry it
/// ([`telephone_subscriber`]).
#[derive(Debug, PartialEq)]
struct VerstatPlace {
    /// Where to open angle brackets: an unbracketed URI, whose parameters, verstat
    /// among them, a reader would take for the header's (RFC 3261 20.10).
    open: Option<usize>,
    /// What to add where: `;user=phone` (a user part with a parameter reads as a
    /// telephone-subscriber only with it), and the closing bracket.
    close: Option<(usize, &'static [u8])>,
    /// The parameters of an unbracketed URI, which go inside the brackets: the white
    /// space in them goes.
    squeeze: Option<Span>,
}

/// Whether `verstat` may go after the number of `p` (RFC 8224: a tel URI, or a sip URI
/// whose user part is a telephone-subscriber), and what the URI needs first: a global
/// number in a sip URI without `user=phone` gets it, else a parameter in its user part
/// would make the user `+8613...;verstat=...`, no number at all to a core that does not
/// read it so; an unbracketed sip URI (`sip:+44...@gw;user=phone`, as RFC 3325 9.1
/// allows) is bracketed, its parameters with it, since a P-Asserted-Identity has no
/// header parameters (QA 104: it went without verstat). `None`: nowhere (a local
/// number). `global`: the user part goes on in global form (`+` written in by
/// [`write_global_forms`]: QA 43, a peer's `<sip:442071234567@c>` on a `bare_numbers =
/// "international"` trunk lost its verstat).
fn telephone_subscriber(b: &[u8], p: &Party, global: bool) -> Option<VerstatPlace> {
    let mut found = None;
    let _ = addr::parse_list_skip_empty(b, p.value, |na| {
        if na.uri.start <= p.user.start && p.user.end <= na.uri.end {
            found = Some(na);
        }
    });
    let na = found?;
    let u = uri::parse(b, na.uri).ok()?;
    let as_is = VerstatPlace {
        open: None,
        close: None,
        squeeze: None,
    };
    let outside = Span::new(na.uri.end as usize, na.whole.end as usize);
    // A quoted header parameter has no place in a URI: such a value gets no verstat.
    if !na.bracketed && memchr::memchr(b'"', outside.of(b)).is_some() {
        return None;
    }
    if u.scheme == Scheme::Tel {
        // Unbracketed, its parameters, verstat among them, would read as the header's
        // (RFC 3261 20: a URI with ';' goes in brackets; QA 105).
        return Some(if na.bracketed {
            as_is
        } else {
            VerstatPlace {
                open: Some(na.uri.start as usize),
                close: Some((na.whole.end as usize, b">")),
                squeeze: Some(outside),
            }
        });
    }
    // Unbracketed, the URI's parameters were read as the header's.
    let params = if na.bracketed { u.params } else { na.params };
    let user = uri::param(b, params, b"user");
    let global_user = global
        || p.user.of(b).first() == Some(&b'+') && p.user.of(b)[1..].iter().all(u8::is_ascii_digit);
    match user {
        // (White space around a header parameter's value is no part of it.)
        Some(v) if crate::sip::lex::trim(v.of(b)).eq_ignore_ascii_case(b"phone") => {}
        // A URI that says its user is no telephone number (`user=ip`, or any other
        // value) gets no verstat, rather than a second `user` parameter (QA 45).
        Some(_) => return None,
        None if global_user => {}
        None => return None,
    }
    if na.bracketed {
        if user.is_some() {
            return Some(as_is);
        }
        // Among the URI's parameters: before its `?headers`, if any (QA 45: it went
        // after them, inside a header's value).
        let end = u
            .headers
            .map_or(na.uri.end as usize, |h| h.start as usize - 1);
        return Some(VerstatPlace {
            open: None,
            close: Some((end, b";user=phone")),
            squeeze: None,
        });
    }
    Some(VerstatPlace {
        open: Some(na.uri.start as usize),
        close: Some((
            na.whole.end as usize,
            if user.is_some() {
                b">"
            } else {
                b";user=phone>"
            },
        )),
        squeeze: Some(outside),
    })
}

/// What only sipfence may say of a call goes if a peer wrote it: a field named as our
/// label header (a peer's `X-Sipfence-Label: verified` would read as our verdict, and
/// the first of two label fields is the one many cores read), and `verstat` (RFC 8224:
/// the terminating network's verification result) in From and the identity fields, so
/// that a labelled call never carries a peer's `TN-Validation-Passed` beside ours, nor
/// an unlabelled one a verdict nobody here gave.
/// Whether `h` is a label header line, whoever wrote it: only this filter labels a
/// call.
fn is_label(policy: &Policy, b: &[u8], h: &crate::sip::Header) -> bool {
    h.name == HeaderName::Other
        && h.name_span()
            .of(b)
            .eq_ignore_ascii_case(policy.label_header.as_bytes())
}

/// A request within a dialog from a trunk's side loses its identity fields (and any
/// label): the caller is judged once, when the call is set up, and a later request may
/// not name another (QA 61: an UPDATE or re-INVITE asserting 110 or a domestic number
/// reached the core, which can show it to the callee as a caller-ID update). The
/// dialog's own From and To stay.
fn remove_later_identities(policy: &Policy, msg: &Message, edits: &mut EditList) {
    // One pass: every ACK and BYE of every call comes this way.
    let b = msg.buf();
    for h in msg.headers() {
        let gone = matches!(
            h.name,
            HeaderName::PAssertedIdentity
                | HeaderName::PPreferredIdentity
                | HeaderName::RemotePartyId
        ) || is_label(policy, b, h);
        if gone {
            edits.remove(h.line());
        }
    }
}

/// Whether From may carry a `verstat` ([`remove_planted_verdicts`] takes it off), its
/// name escaped or not: a quick look, for the From a call keeps only when it changed.
pub fn from_may_lose_verstat(msg: &Message) -> bool {
    msg.from_addr().is_some_and(|na| {
        let v = na.whole.of(msg.buf());
        memchr::memchr(b'%', v).is_some()
            || memchr::memchr2_iter(b'v', b'V', v).any(|i| {
                v.get(i..i + 7)
                    .is_some_and(|w| w.eq_ignore_ascii_case(b"verstat"))
            })
    })
}

fn remove_planted_verdicts(policy: &Policy, msg: &Message, edits: &mut EditList) {
    let b = msg.buf();
    for h in msg.headers() {
        if is_label(policy, b, h) {
            edits.remove(h.line());
        }
    }
    if let Some(na) = msg.from_addr() {
        remove_verstat(
            b,
            Span::new(na.uri.start as usize, na.whole.end as usize),
            edits,
        );
    }
    // The whole field, every value of it, without parsing it again: a `;verstat` in a
    // quoted display name would go too, which harms no one.
    for h in msg.all(HeaderName::PAssertedIdentity) {
        remove_verstat(b, h.value(), edits);
        remove_empty_elements(b, h, edits);
    }
    // Legacy equipment reads the caller from Remote-Party-ID, some from
    // P-Preferred-Identity: a peer's verdict there is as good as planted (QA 43). Where
    // the generic-number rule removes such a field whole, that removal starts first and
    // this one is skipped.
    for h in msg
        .all(HeaderName::RemotePartyId)
        .chain(msg.all(HeaderName::PPreferredIdentity))
    {
        remove_verstat(b, h.value(), edits);
        remove_empty_elements(b, h, edits);
    }
}

/// The identity fields' values were read past empty list elements; a stack reading
/// RFC 3261's grammar reads none past them (QA 105, QA 107: Kamailio read no asserted,
/// preferred or Remote-Party-ID identity at all), so they go, and a field of empty
/// elements alone with them.
fn remove_empty_elements(b: &[u8], h: &crate::sip::Header, edits: &mut EditList) {
    // Without a comma there is no list to have an empty element (most fields).
    if !h.value().of(b).contains(&b',') {
        return;
    }
    let mut cut = [Span::new(0, 0); 4];
    let mut n = 0;
    let left = addr::empty_elements(b, h.value(), |sp| {
        if let Some(c) = cut.get_mut(n) {
            *c = sp;
        }
        n += 1;
    });
    // The value's span leaves out the white space around it: a cut at either end takes
    // the folds there with it, or a line of blanks is left (QA 110). After the colon
    // one blank stays.
    let v = h.value();
    let whole = |sp: Span| {
        let mut start = sp.start as usize;
        if start == v.start as usize {
            while start > 0 && matches!(b[start - 1], b' ' | b'\t' | b'\r' | b'\n') {
                start -= 1;
            }
            if matches!(b.get(start), Some(b' ' | b'\t')) {
                start += 1;
            }
        }
        let mut end = sp.end as usize;
        if end == v.end as usize {
            end = crate::sip::lex::skip_lws(b, end);
        }
        Span::new(start.min(sp.start as usize), end)
    };
    match left {
        Ok(false) => edits.remove(h.line()),
        Ok(true) if n <= cut.len() => cut[..n].iter().for_each(|sp| edits.remove(whole(*sp))),
        _ => {}
    }
}

/// Removes every `;verstat=...` in a URI and the header parameters after it (in a sip
/// URI's user part, among its or a tel URI's parameters, or as a header parameter of a
/// value written without brackets: a next hop may read any of them). A header
/// parameter may have white space, folds included, around its `;` and `=` (RFC 3261
/// 25.1: `SEMI = SWS ";" SWS`, `EQUAL = SWS "=" SWS`) and a quoted value: all of it goes.
fn remove_verstat(b: &[u8], span: Span, edits: &mut EditList) {
    let text = span.of(b);
    let name_char = |c: u8| c.is_ascii_alphanumeric() || b"-%._!~*'".contains(&c);
    let lws = |c: u8| matches!(c, b' ' | b'\t' | b'\r' | b'\n');
    let skip_lws = |mut j: usize| {
        while j < text.len() && lws(text[j]) {
            j += 1;
        }
        j
    };
    // Found by its first letter, or an escape (`%76erstat` is the same name, RFC 3261
    // 19.1.4): identities hold few of either.
    let mut i = 0;
    while let Some(k) = memchr::memchr3(b'v', b'V', b'%', &text[i..]) {
        let hit = i + k;
        i = hit + 1;
        // The parameter name the byte is in, back to its ';'.
        let mut p = hit;
        while p > 0 && name_char(text[p - 1]) {
            p -= 1;
        }
        let mut semi = p;
        while semi > 0 && lws(text[semi - 1]) {
            semi -= 1;
        }
        if semi == 0 || text[semi - 1] != b';' {
            continue;
        }
        let name_end = text[p..]
            .iter()
            .position(|&c| !name_char(c))
            .map_or(text.len(), |e| p + e);
        i = i.max(name_end);
        if !uri::is_param_name(&text[p..name_end], b"verstat") {
            continue;
        }
        let eq = skip_lws(name_end);
        let end = if text.get(eq) == Some(&b'=') {
            let v = skip_lws(eq + 1);
            match text.get(v) {
                Some(b'"') => crate::sip::lex::quoted_end(text, v).unwrap_or(text.len()),
                _ => text[v..]
                    .iter()
                    .position(|&c| {
                        matches!(c, b';' | b'@' | b'>' | b'?' | b',') || c.is_ascii_whitespace()
                    })
                    .map_or(text.len(), |e| v + e),
            }
        } else {
            // A bare `;verstat`: the name alone.
            name_end
        };
        // The white space before the ';' is the parameter's too (SEMI).
        let mut start = semi - 1;
        while start > 0 && lws(text[start - 1]) {
            start -= 1;
        }
        let s = span.start as usize;
        edits.remove(Span::new(s + start, s + end));
        i = end;
    }
}

/// The field that holds the asserted Remote-Party-ID may list other values beside it
/// (`<sip:+44...>;screen=yes, <sip:+86...>;screen=no`): they go, the asserted value
/// stays as written. Two cuts around it, so that an edit inside it (the '+' of
/// `bare_numbers`) stays apart from them.
fn keep_only_asserted(b: &[u8], value: Span, asserted: &Party, edits: &mut EditList) {
    let (mut first, mut kept, mut last) = (None, None, None);
    let _ = addr::parse_list_skip_empty(b, value, |na| {
        first.get_or_insert(na.whole);
        last = Some(na.whole);
        let holds = if asserted.user.is_empty() {
            kept.is_none()
        } else {
            na.whole.start <= asserted.user.start && asserted.user.end <= na.whole.end
        };
        if holds {
            kept = Some(na.whole);
        }
    });
    let (Some(first), Some(kept), Some(last)) = (first, kept, last) else {
        return;
    };
    if first.start < kept.start {
        edits.remove(Span::new(first.start as usize, kept.start as usize));
    }
    if kept.end < last.end {
        edits.remove(Span::new(kept.end as usize, last.end as usize));
    }
}

/// What the generic-number rewrite did to From.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FromEdit {
    Untouched,
    /// Only its display name went: the URI stays as written.
    DisplayRemoved,
    /// Display name and URI replaced (the asserted number, or RFC 3323's anonymous).
    Replaced,
}

/// The identities go on in the form the filter judged them in, so that the core and
/// the callee's equipment cannot read them as another number:
/// - on a trunk whose peer writes E.164 without its '+' (`bare_numbers =
///   "international"`), the numbers read as international get the '+' written in: a
///   foreign `13812345678` read in the home plan would be a domestic mobile;
/// - a local number in a `phone-context` whose digits alone would be another number
///   (`tel:95588;phone-context=+852`, `tel:110;phone-context=+8613912340`) is written
///   as the global number (`tel:+85295588`), on every trunk: ISUP interworking drops
///   the context, and the callee would be shown 95588, a domestic bank's number, or
///   110 (QA 61: an enterprise's contracted +8613912340110 written so showed 110).
///
/// A display name that repeats its URI's number as written gets the same change (a
/// phone shows it). Identities the generic-number rewrite replaces or removes
/// (`from_edit` says what it did to From) are left to it. Returns where the user parts
/// written in global form start (`u32::MAX`: none).
fn write_global_forms(
    msg: &Message,
    d: &Decision,
    from_edit: FromEdit,
    edits: &mut EditList,
) -> [u32; 7] {
    let mut written = [u32::MAX; 7];
    let id = &d.identity;
    // Every party read, once for both questions below.
    let read = [
        &id.from,
        &id.asserted,
        &id.asserted2,
        &id.preferred,
        &id.preferred2,
        &id.rpid,
        &id.rpid2,
    ];
    // Nearly every call: nothing read without its '+' or in a context.
    let odd = |p: &Option<Party>| p.is_some_and(|p| p.plus_missing || p.in_context);
    if !read.into_iter().any(odd) {
        return written;
    }
    let b = msg.buf();
    let presented_removed = d.rewrite_from;
    let parties = [
        id.from.filter(|_| from_edit != FromEdit::Replaced),
        id.asserted,
        id.asserted2,
    ]
    .into_iter()
    .flatten()
    .chain(id.presented_parties().filter(|_| !presented_removed));
    for (k, p) in parties.enumerate() {
        if p.user.is_empty() || !(p.plus_missing || p.in_context) {
            continue;
        }
        // The field's value that holds the URI (From's was parsed already).
        let na = if p.source == Source::From {
            msg.from_addr().copied()
        } else {
            value_of(b, &p)
        };
        // In a context (a placing one, or a domain's beside a number read as E.164
        // without its '+'): written as the global number, the context gone (RFC 3966
        // gives a global number none).
        let global = match (p.in_context || p.plus_missing, p.number, na) {
            (true, Ok(n), Some(na)) => uri::parse_user_anyway(b, na.uri)
                .ok()
                .and_then(|u| uri::phone_context_param(b, &u))
                .filter(|ctx| ctx.has_value())
                .and_then(|ctx| ctx.with_semi(b))
                .map(|param| (param, n)),
            _ => None,
        };
        if !p.plus_missing && global.is_none() {
            continue;
        }
        let display = na
            .filter(|_| p.source != Source::From || from_edit == FromEdit::Untouched)
            .and_then(|na| display_showing(b, &na, p.user.of(b)));
        match global {
            Some((param, n)) => {
                let plus = |out: &mut Vec<u8>| {
                    out.push(b'+');
                    out.extend_from_slice(n.digits());
                };
                edits.replace_with(p.user, plus);
                edits.remove(param);
                if let Some(t) = display {
                    edits.replace_with(t, plus);
                }
            }
            None => {
                edits.insert(p.user.start as usize, b"+");
                if let Some(t) = display {
                    edits.insert(t.start as usize, b"+");
                }
            }
        }
        if let Some(w) = written.get_mut(k) {
            *w = p.user.start;
        }
    }
    // The identity keeps one presented value per number; a field's other values that
    // show the same number as written (a P-Preferred-Identity's sip + tel pair, the
    // number again in a second field) get their '+' too, since a core may read any of
    // them (QA 109: the tel value went on as a domestic mobile's number).
    // So do those after a value written with it (QA 110: `<sip:+1381...>, <tel:1381...>`),
    // on a trunk that reads bare numbers so: some party was read without its '+'.
    let bare_international = read.into_iter().any(|p| p.is_some_and(|p| p.plus_missing));
    for p in id.presented_parties().filter(|_| !presented_removed) {
        let user = p.user.of(b);
        let number = match user.strip_prefix(b"+") {
            Some(digits) if bare_international && p.number.is_ok() => digits,
            Some(_) => continue,
            None if p.plus_missing => user,
            None => continue,
        };
        if p.in_context || number.is_empty() {
            continue;
        }
        let name = match p.source {
            Source::PPreferredIdentity => HeaderName::PPreferredIdentity,
            _ => HeaderName::RemotePartyId,
        };
        for h in msg.all(name) {
            let _ = addr::parse_list_skip_empty(b, h.value(), |na| {
                let Some(u) = uri::parse_user_anyway(b, na.uri).ok() else {
                    return;
                };
                let Some(user) = u.user else { return };
                // A number placed by its context is another number than the digits.
                let ctx = uri::phone_context(b, &u);
                if ctx.is_some_and(|c| uri::placing_context(c.of(b))) {
                    return;
                }
                let user = uri::user_number(b, user);
                if user.of(b) == number && !written.contains(&user.start) {
                    edits.insert(user.start as usize, b"+");
                    // A domain's context goes: a global number has none (RFC 3966
                    // 5.1.5; QA 110 saw `tel:+1381...;phone-context=example.cn`).
                    uri::each_phone_context(b, &u, |param| edits.remove(param));
                    // A display name showing it as written shows it so (QA 110).
                    if let Some(t) = display_showing(b, &na, number) {
                        edits.insert(t.start as usize, b"+");
                    }
                }
            });
        }
    }
    written
}

/// The span of `na`'s display name text when it is `number` as written (the quote and
/// blanks around it left out): shown beside the URI, it gets the URI's edit.
fn display_showing(b: &[u8], na: &addr::NameAddr, number: &[u8]) -> Option<Span> {
    let dn = na.display?;
    let raw = dn.of(b);
    let text = crate::identity::unquote(raw);
    // The number starts after the quote and blanks `unquote` took off.
    let lead = raw
        .iter()
        .take_while(|&&c| matches!(c, b'"' | b' ' | b'\t'))
        .count();
    let start = dn.start as usize + lead;
    (!text.is_empty() && text == number).then(|| Span::new(start, start + text.len()))
}

/// The value of `p`'s field that holds its URI.
fn value_of(b: &[u8], p: &Party) -> Option<addr::NameAddr> {
    let mut value = None;
    let _ = addr::parse_list_skip_empty(b, p.value, |na| {
        if na.whole.start <= p.user.start && p.user.end <= na.whole.end {
            value = Some(na);
        }
    });
    value
}

/// Removes every Generic Number (additional calling party number) from the IAM, in the
/// same edit list as the SIP changes: the parameters go, the optional-part pointer and
/// end octet go too when nothing optional is left (Q.763 1.8: pointer 0, no end octet),
/// and the part's and the message's Content-Length follow the new length.
fn delete_isup_generic(msg: &Message, i: &crate::identity::IsupIdentity, edits: &mut EditList) {
    let Ok(iam) = i.iam else { return };
    if iam.generic_count == 0 {
        return;
    }
    let b = msg.buf();
    let isup = i.body.of(b);
    let base = i.body.start as usize;
    let mut removed = 0usize;
    for (at, len) in iam.generic_numbers(isup) {
        edits.remove(Span::new(base + at, base + at + len));
        removed += len;
    }
    if iam.generic_count == iam.optional_count {
        edits.replace(
            Span::new(base + isup::OPT_PTR, base + isup::OPT_PTR + 1),
            &[0],
        );
        edits.remove(Span::new(base + iam.len - 1, base + iam.len));
        removed += 1;
    }
    // Innermost first: each length counts what the lengths inside it lost too, the
    // octets removed and the digits a shorter Content-Length inside lost ("101" to
    // "93"), or the next hop frames the body (and, on TCP, the next message) wrong.
    let mut shrink = removed;
    let mut fix_length = |edits: &mut EditList, v: Span| {
        let written = v.of(b);
        if let Some(n) = crate::sip::lex::parse_u32(written) {
            let mut new = Vec::with_capacity(written.len());
            response::push_num(&mut new, (n as usize).saturating_sub(shrink) as u64);
            shrink += written.len().saturating_sub(new.len());
            edits.replace(v, &new);
        }
    };
    for v in i.part_content_lengths.into_iter().rev().flatten() {
        fix_length(edits, v);
    }
    if let Some(h) = msg.first(HeaderName::ContentLength) {
        fix_length(edits, h.value());
    }
}

/// Removes the display name and the blanks up to '<'.
fn remove_display(b: &[u8], na: &addr::NameAddr, edits: &mut EditList) {
    if let Some(d) = na.display {
        let mut end = d.end as usize;
        while end < b.len() && (b[end] == b' ' || b[end] == b'\t') {
            end += 1;
        }
        edits.remove(Span::new(d.start as usize, end));
    }
}

/// RFC 3323 4.1.1.3's anonymous From in place of display name and URI; the tag and
/// other parameters stay.
fn anonymise_from(b: &[u8], na: &addr::NameAddr, edits: &mut EditList) {
    // A bracketed URI ends at its '>' (the parser allows nothing between them).
    let mut end = na.uri.end as usize;
    if na.bracketed {
        while end < b.len() && b[end] != b'>' {
            end += 1;
        }
        end = (end + 1).min(b.len());
    }
    edits.replace(
        Span::new(na.whole.start as usize, end),
        ANONYMOUS_FROM.as_bytes(),
    );
}

/// The From of an anonymous caller (RFC 3323 4.1.1.3).
pub const ANONYMOUS_FROM: &str = "\"Anonymous\" <sip:anonymous@anonymous.invalid>";

/// From gets the asserted number as its user part and loses its display name; the tag
/// and every other parameter stay, so the dialog is unchanged.
fn rewrite_from(
    b: &[u8],
    na: &addr::NameAddr,
    asserted: &crate::numbering::Number,
    edits: &mut EditList,
) {
    let plus = |out: &mut Vec<u8>| {
        out.push(b'+');
        out.extend_from_slice(asserted.digits());
    };
    remove_display(b, na, edits);
    // Edited in place only when the URI is sound and its user is all it shows: a sip,
    // sips or tel user, no password after it (`sip:user:pass@host`), a host
    // (`sip:110@`).
    let in_place = uri::parse_chars_checked(b, na.uri).ok().and_then(|u| {
        // An empty user (`sip:@95588`) leaves the host to be shown.
        let user = u.user.filter(|s| !s.is_empty())?;
        let password = b.get(user.end as usize) == Some(&b':');
        let host = !u.host.is_empty() || u.scheme == Scheme::Tel;
        let scheme = matches!(u.scheme, Scheme::Sip | Scheme::Sips | Scheme::Tel);
        (scheme && host && !password).then_some((u, user))
    });
    match in_place {
        Some((u, user)) => {
            edits.replace_with(uri::user_number(b, user), plus);
            // A global number has no context (RFC 3966 5.1.5).
            uri::each_phone_context(b, &u, |param| edits.remove(param));
        }
        // Anything else is replaced whole by the asserted number: equipment that shows
        // a URI's host when it has no user (`sip:13812345678`), reads a broken one
        // (`sip:+86...@gw_1`) or any scheme's user (`h323:`, `im:`) would otherwise
        // show what the rule deletes.
        None => edits.replace_with(na.uri, |out| {
            out.extend_from_slice(b"tel:");
            plus(out);
        }),
    }
}
