//! Our places in the route sets of the dialogs we record-route (RFC 3261 16.6, 16.12,
//! RFC 5658): the Record-Route entries we write, the caller's NAT flow and the dialog's
//! token they carry, taking our own entries out of Route, and strict routing.

use super::*;

pub(super) fn push_rr(out: &mut Vec<u8>, a: SocketAddr, t: Transport) {
    out.extend_from_slice(b"<sip:");
    response::push_sent_by(out, a);
    out.extend_from_slice(b";lr");
    if t == Transport::Tcp {
        out.extend_from_slice(b";transport=tcp");
    }
    out.push(b'>');
}

/// Requests that set up a dialog, which a trunk with `record_route` keeps us in: a call
/// (not an INVITE judged for want of a known dialog: a dialog's route set is fixed by
/// its first INVITE, RFC 3261 12.1), a SUBSCRIBE and an out-of-dialog REFER (RFC 6665
/// 4.1.2: the subscription's NOTIFYs and refreshes follow its route set; Kamailio's
/// stock configuration record-routes SUBSCRIBEs too).
pub(super) fn sets_up_dialog(msg: &Message, method: Method, d: &Decision) -> bool {
    match method {
        Method::Invite => d.kind == Kind::Call && !d.unknown_dialog,
        Method::Subscribe | Method::Refer => msg.to_tag().is_none(),
        _ => false,
    }
}

/// Record-Route for a call (RFC 3261 16.6 step 4), doubled (RFC 5658) when the side
/// the call came in on and the side it leaves by (towards `dest`) differ in address,
/// IP family or transport: the core reaches us at the first entry, the trunk peer at
/// the second.
///
/// `flow`: where a caller behind a NAT really is ([`nat_flow`]), written in the entry
/// the core routes by, so that the core's requests of the dialog reach it there.
/// `token`: the dialog's ([`crate::policy::auth::TrunkAuth::dialog_token`]), in the
/// first entry, which the trunk's peer has in its Route set however many we write; or
/// the place for the answers to fill in ([`TOKEN_PLACE`]).
#[allow(clippy::too_many_arguments)]
pub(super) fn record_route(
    st: &Step<'_>,
    msg: &Message,
    o: &Origin,
    out_t: Transport,
    dest: SocketAddr,
    flow: Option<(SocketAddr, Transport)>,
    token: Option<&[u8]>,
    edits: &mut EditList,
) {
    let core = st.via_to(dest);
    // A wildcard listener has no address to give: the forwarding one serves both sides
    // (of the caller's family: the core's may be the other).
    let peer = if o.local.addr.ip().is_unspecified() {
        st.via_to(o.source)
    } else {
        o.local.addr
    };
    let in_t = o.local.transport;
    edits.insert_with(first_header(msg), |out| {
        out.extend_from_slice(b"Record-Route: ");
        push_own_uri(out, core, out_t, flow);
        if let Some(t) = token {
            // Inside the brackets, before '>'.
            out.pop();
            out.push(b';');
            out.extend_from_slice(DIALOG_PARAM);
            if !t.is_empty() {
                out.push(b'=');
                out.extend_from_slice(t);
            }
            out.push(b'>');
        }
        if peer != core || in_t != out_t {
            out.extend_from_slice(b", ");
            push_rr(out, peer, in_t);
        }
        out.extend_from_slice(b"\r\n");
    });
}

/// Our URI as the core reaches it (`core`, over `t`), with the peer's `flow` when it
/// has one: the entry of a Record-Route or a Path the core routes the dialog's
/// requests by.
pub(super) fn push_own_uri(
    out: &mut Vec<u8>,
    core: SocketAddr,
    t: Transport,
    flow: Option<(SocketAddr, Transport)>,
) {
    push_rr(out, core, t);
    if let Some((a, t)) = flow {
        // Inside the brackets, before '>': a parameter of our URI.
        out.pop();
        out.extend_from_slice(FLOW_PARAM);
        out.push(b'=');
        push_flow(out, a, t);
        out.push(b'>');
    }
}

/// The Record-Route parameter that carries a NATed caller's flow: its address as the
/// gateway saw it and the transport (Kamailio's `add_contact_alias` writes the same
/// triple into Contact; RFC 5626 5.1 puts a flow token in the edge proxy's
/// Record-Route, which the core leaves alone and sends back in its Route).
pub(super) const FLOW_PARAM: &[u8] = b";sf-flow";

/// Where to reach the sender of a call set-up that came through a NAT: its source
/// address, when its top Via names another host (a PBX writing its private address),
/// or, on UDP with `rport`, another port (RFC 3581: it listens where it sent from). The
/// core's requests of the dialog go to the Contact, the same private address, which
/// nothing outside the PBX's network reaches (QA 111: the core's BYE, NOTIFY and
/// re-INVITE never came; a PBX's far-end hang-up left its channel up). `None` when the
/// Via names the source: the Contact is then trusted as it is.
pub(super) fn nat_flow(msg: &Message, o: &Origin) -> Option<(SocketAddr, Transport)> {
    let v = msg.top_via()?;
    let b = msg.buf();
    let src = crate::canonical(o.source);
    let other_host = natted_via(b, &v, src);
    // On TCP the caller's connection is the flow whenever it does not come from its
    // sent-by port (nearly always): a PBX behind a NAT that writes its public address
    // (Asterisk's `external_signaling_address`) is reached by nothing else, as the NAT
    // forwards no port to it (QA 115). When that connection is gone, the Request-URI
    // is tried as before ([`forward_from_core`]).
    let other_port = (o.local.transport == Transport::Tcp || v.rport.is_some())
        && v.port.unwrap_or(5060) != src.port();
    // A Via rewritten by an ALG or written public by hand, the Contact left private
    // (Kamailio's `nat_uac_test` 1): nothing outside reaches that either.
    let private_contact = || {
        contact_addr(msg)
            .flatten()
            .is_some_and(|a| private_ip(a.ip()) && a.ip() != src.ip())
    };
    (other_host || other_port || private_contact()).then_some((src, o.local.transport))
}

/// The first Contact's address (`Some(None)`: a host that is no IP literal).
pub(super) fn contact_addr(msg: &Message) -> Option<Option<SocketAddr>> {
    let b = msg.buf();
    let contact = msg.first(HeaderName::Contact)?;
    let mut at = None;
    let _ = crate::sip::addr::parse_list(b, contact.value(), |na| {
        if at.is_none() {
            at = Some(uri::parse(b, na.uri).ok().and_then(|u| {
                let ip = host_ip(u.host.of(b))?.to_canonical();
                Some(SocketAddr::new(ip, u.port.unwrap_or(5060)))
            }));
        }
    });
    at
}

/// An address no one outside its own network reaches: RFC 1918, the carriers' shared
/// space (RFC 6598, 100.64/10), link-local, IPv6 unique-local and link-local.
pub(super) fn private_ip(ip: std::net::IpAddr) -> bool {
    match ip {
        std::net::IpAddr::V4(v) => {
            let [a, b, ..] = v.octets();
            v.is_private() || v.is_link_local() || (a == 100 && b & 0xc0 == 64)
        }
        std::net::IpAddr::V6(v) => {
            let s = v.segments()[0];
            s & 0xfe00 == 0xfc00 || s & 0xffc0 == 0xfe80
        }
    }
}

/// The same for a call the core offered a trunk's peer: the peer's answer (18x, 2xx)
/// fixes the core's route set, and its Contact names the private address where a
/// NATed PBX took the call (QA 111): the core's ACK and BYE would go there. Told by the
/// Contact: no Via of the peer's comes back in its answer.
pub(super) fn answer_flow(
    st: &Step<'_>,
    msg: &Message,
    o: &Origin,
) -> Option<(SocketAddr, Transport)> {
    if !matches!(msg.status(), Some(101..=299))
        || msg.cseq().is_none_or(|(_, m)| m != b"INVITE")
        || msg.first(HeaderName::RecordRoute).is_none()
    {
        return None;
    }
    let src = crate::canonical(o.source);
    // On UDP another port is a NAT's mapping too (QA 113: a port-translating NAT, or a
    // PBX told its public address but not its port): the core sent the call where the
    // answer comes from, and is answered from there.
    // On TCP the answer's connection, as for a caller's ([`nat_flow`]).
    let natted = match contact_addr(msg)? {
        None => true,
        Some(a) => a != src,
    };
    // Not from the core's side: its caller asked already.
    let peer = st.policy.match_trunk(&o.source, Some(&o.local)).is_some();
    (natted && peer).then_some((src, o.local.transport))
}

/// Takes every `sf-flow` out of the Record-Route of a peer's request or answer (and the
/// Path of its REGISTER): only sipfence writes one, into the Record-Route or Path it
/// adds (or, for an answer, into its own entry after this), so one found in what a peer
/// sends is forged or copied from another call (QA 113: a PBX that wrote another trunk's peer there had the core's
/// ACK, re-INVITE and BYE of its calls sent to that customer). The same reader as
/// [`flow_of`]'s: an escaped name (`sf%2Dflow`) goes too.
///
/// Without `edits`, only whether there is any.
pub(super) fn strip_flows(msg: &Message, edits: Option<&mut EditList>) -> bool {
    strip_param(msg, edits, &FLOW_PARAM[1..], b"flow")
}

/// Takes every `sf-dlg` out of the Record-Route of a trunk peer's answer, which goes to
/// the core's side: the token of a dialog the core set up is the peer's alone (QA 193
/// N1: the caller behind the core had it in the PBX's 180, and sent the PBX's trunk
/// NOTIFYs and BYEs it let by unchallenged). As leniently as flows are (QA 194 B2: our
/// entry sent back with a display name and white space around its `;`, or its address
/// written `127.000.0.1`, kept its token), in every entry: only sipfence writes one.
pub(super) fn strip_dialog_tokens(msg: &Message, edits: &mut EditList) {
    strip_param(msg, Some(edits), DIALOG_PARAM, b"dlg");
}

/// [`strip_flows`] for the parameter `name`, in fields that hold `hint`.
pub(super) fn strip_param(
    msg: &Message,
    mut edits: Option<&mut EditList>,
    name: &[u8],
    hint: &[u8],
) -> bool {
    let b = msg.buf();
    let mut any = false;
    // A Path the peer wrote is stored by the registrar and comes back as the Route of
    // the core's calls to the PBX: a flow in it is as forged as one in a Record-Route.
    let paths = msg
        .method()
        .is_some_and(|m| m == Method::Register)
        .then(|| {
            msg.all(HeaderName::Other)
                .filter(|h| h.name_span().of(b).eq_ignore_ascii_case(b"Path"))
        })
        .into_iter()
        .flatten();
    for h in msg.all(HeaderName::RecordRoute).chain(paths) {
        let v = h.value().of(b);
        // Nearly every field: no parameter that could be one.
        if !v.contains(&b'%') && !v.windows(hint.len()).any(|w| w.eq_ignore_ascii_case(hint)) {
            continue;
        }
        // A field every strict reader takes: each URI's parameters. Any other (a quoted
        // value, a '"' no URI has: QA 120, whose registrar stored it) as a lenient
        // reader would see it: every ';' parameter of the field.
        let mut strict = true;
        let listed = crate::sip::addr::parse_list(b, h.value(), |na| {
            strict &= uri::parse(b, na.uri).is_ok();
        });
        let mut take = |name_at: Span, seg: Span| {
            if uri::is_param_name(lex::trim(name_at.of(b)), name) {
                any = true;
                if let Some(e) = edits.as_deref_mut() {
                    e.remove(seg);
                }
            }
        };
        if listed.is_ok() && strict {
            let _ = crate::sip::addr::parse_list(b, h.value(), |na| {
                // The URI's parameters, and the field's own after it (an entry written
                // without brackets gives them there, and a loose reader takes them for
                // the URI's: QA 121).
                let uri_params = uri::parse(b, na.uri).map(|u| u.params);
                let lists = [(uri_params.ok(), false), (Some(na.params), true)];
                for (span, quoted) in lists {
                    for p in span.into_iter().flat_map(|sp| lex::params(b, sp, quoted)) {
                        // White space may stand after the ';' of a field's parameter
                        // (RFC 3261 25.1 SEMI), where the list starts past it (QA 122).
                        let ws = |c: &u8| matches!(c, b' ' | b'\t' | b'\r' | b'\n');
                        let at = b[..p.seg.start as usize].iter().rposition(|c| !ws(c));
                        if let Some(semi) = at.filter(|&k| b[k] == b';') {
                            take(p.name, Span::new(semi, p.seg.end as usize));
                        }
                    }
                }
            });
        } else {
            lenient_params(b, h.value(), &mut take);
        }
    }
    any
}

/// The ';' parameters anywhere in `b[span]` as the most lenient reader finds them:
/// `each(name, from its ';' to its end)`, a parameter ending at the next ';', ',' or
/// '>' outside a quoted string.
pub(super) fn lenient_params(b: &[u8], span: Span, each: &mut dyn FnMut(Span, Span)) {
    let end = (span.end as usize).min(b.len());
    let mut i = span.start as usize;
    let mut semi = None;
    // The end of the span ends the last parameter as a ',' would.
    while i <= end {
        match b.get(i).filter(|_| i < end).copied().unwrap_or(b',') {
            b'"' => {
                i = lex::quoted_end(&b[..end], i).unwrap_or(end);
                continue;
            }
            c @ (b';' | b',' | b'>') => {
                if let Some(s) = semi.take() {
                    let eq = b[s..i].iter().position(|&c| c == b'=').map_or(i, |k| s + k);
                    each(Span::new(s + 1, eq), Span::new(s, i));
                }
                if c == b';' {
                    semi = Some(i);
                }
            }
            _ => {}
        }
        i += 1;
    }
}

/// Writes `flow` into the first of our entries in an answer's Record-Route (RFC 3261
/// 16.7 step 9 lets a proxy change its own values in a response).
pub(super) fn flow_into_record_route(
    st: &Step<'_>,
    msg: &Message,
    flow: (SocketAddr, Transport),
    edits: &mut EditList,
) -> bool {
    let b = msg.buf();
    let mut at = None;
    for h in msg.all(HeaderName::RecordRoute) {
        let _ = crate::sip::addr::parse_list(b, h.value(), |na| {
            // Any flow already in it was taken out ([`strip_flows`]).
            if at.is_none() && na.bracketed && is_own_uri(st, b, na.uri) {
                at = Some(na.uri.end as usize);
            }
        });
        if at.is_some() {
            break;
        }
    }
    if let Some(at) = at {
        edits.insert_with(at, |out| {
            out.extend_from_slice(FLOW_PARAM);
            out.push(b'=');
            push_flow(out, flow.0, flow.1);
        });
    }
    at.is_some()
}

/// Writes the dialog's token into the `sf-dlg` our first Record-Route entry carries
/// without one, in the core's answer to a call or subscription of a trunk that knows
/// its dialogs by it ([`crate::policy::Trunk::dialog_tokens`]): it binds the Call-ID
/// and both tags, the caller's and this answer's (each dialog of a forked call has its
/// own), and only the trunk's peer, whose Route set the answer gives, sees it (QA 193
/// N1: written into the request, the core's side had it, and a caller of the core's
/// learnt the token of its own call to the PBX). RFC 3261 16.7 step 9 lets a proxy
/// change its own entry in an answer.
pub(super) fn answer_dialog_token(st: &Step<'_>, msg: &Message, edits: &mut EditList) {
    let b = msg.buf();
    // Every entry with our place is filled: a copy of it the core's side put above
    // ours is for the same trunk and call, and whichever the peer routes by carries
    // the token (QA 196: only the first was, and the peer's Route kept the bare place).
    let mut places = vec![];
    let from_tag = msg.from_tag_read().unwrap_or_default();
    for h in msg.all(HeaderName::RecordRoute) {
        let v = h.value().of(b);
        if !v
            .windows(DIALOG_PARAM.len())
            .any(|w| w.eq_ignore_ascii_case(DIALOG_PARAM))
        {
            continue;
        }
        let _ = crate::sip::addr::parse_list(b, h.value(), |na| {
            if places.len() >= 8 || !na.bracketed {
                return;
            }
            let Ok(u) = uri::parse(b, na.uri) else {
                return;
            };
            if !own_host(st, b, &u) {
                return;
            }
            // The place we wrote, told by its mark from one the core's side wrote.
            let at = lex::params(b, u.params, false)
                .find(|p| uri::is_param_name(lex::trim(p.name.of(b)), DIALOG_PARAM))
                .map(|p| p.value)
                .and_then(|v| {
                    let place = v.of(b);
                    let dot = place.iter().rposition(|&c| c == b'.')?;
                    if place.first() != Some(&TOKEN_PLACE) {
                        return None;
                    }
                    let name = std::str::from_utf8(&place[1..dot]).ok()?;
                    let trunk = st.policy.trunk_by_name(name)?;
                    let a = st.policy.trunks[trunk].dialog_tokens()?;
                    a.is_token_place(place, msg.call_id(), from_tag)
                        .then_some((v, a))
                });
            places.extend(at);
        });
    }
    // The tags are read only for an answer that has the place for a token.
    let (Some(&(_, a)), Some(to_tag)) = (places.first(), msg.to_tag_read()) else {
        return;
    };
    let t = a.dialog_token(msg.call_id(), from_tag, to_tag, Side::From);
    for (at, _) in places {
        edits.replace(at, &t);
    }
}

/// The first byte of the place for a dialog's token in our Record-Route entry of a
/// trunk's request ([`answer_dialog_token`], [`crate::policy::auth::TrunkAuth::token_place`]),
/// the trunk's name after it: each trunk's
/// tokens are its own (QA 194 B1: another enterprise's PBX spent its own dialog's token
/// on this trunk). No hex digit: never a token.
pub(super) const TOKEN_PLACE: u8 = b'~';

pub(super) fn push_flow(out: &mut Vec<u8>, a: SocketAddr, t: Transport) {
    response::push_ip(out, a.ip());
    out.push(b'~');
    push_num(out, a.port() as u64);
    out.extend_from_slice(match t {
        Transport::Udp => b"~udp",
        Transport::Tcp => b"~tcp",
    });
}

/// The flow one of our Route entries carries ([`nat_flow`]), from its URI.
pub(super) fn flow_of(b: &[u8], route: Span) -> Option<(SocketAddr, Transport)> {
    let u = uri::parse(b, route).ok()?;
    parse_flow(uri::param(b, u.params, &FLOW_PARAM[1..])?.of(b))
}

/// `ip~port~transport`, as [`push_flow`] writes it.
pub(super) fn parse_flow(v: &[u8]) -> Option<(SocketAddr, Transport)> {
    let mut parts = v.rsplitn(3, |&c| c == b'~');
    let t = match parts.next()? {
        b"udp" => Transport::Udp,
        b"tcp" => Transport::Tcp,
        _ => return None,
    };
    let port = u16::try_from(lex::parse_u32(parts.next()?)?)
        .ok()
        .filter(|&p| p != 0)?;
    let ip = host_ip(parts.next()?)?;
    Some((SocketAddr::new(ip, port), t))
}

/// A URI that names this proxy: its forwarding address or one of its listeners.
pub(super) fn is_own_uri(st: &Step<'_>, b: &[u8], u: Span) -> bool {
    uri::parse(b, u).is_ok_and(|u| own_host(st, b, &u))
}

/// The host and port of a parsed URI are this proxy's ([`listens_at`]).
pub(super) fn own_host(st: &Step<'_>, b: &[u8], u: &uri::Uri) -> bool {
    host_ip(u.host.of(b))
        .is_some_and(|ip| listens_at(st, SocketAddr::new(ip, u.port.unwrap_or(5060))))
}

/// `msg` as it goes on: with `edits` applied, a folded Content-Length unfolded, and a
/// head whose lines ended in LF alone written in CRLFs (a next hop may frame its TCP
/// stream on CRLFCRLF alone).
pub(super) fn write_edited(edits: &mut EditList, msg: &Message, out: &mut Vec<u8>) {
    crate::sip::rewrite::unfold_content_length(msg, edits);
    edits.apply(msg.buf(), msg.len(), out);
    if msg.bare_lf() {
        crlf_head(out);
    }
}

/// Removes the Route values at the top that name this proxy (RFC 3261 16.4; two of
/// them after a double Record-Route) and returns the first that does not, if any.
/// `own` is shown the URI of each of ours.
pub(super) fn strip_own_routes(
    st: &Step<'_>,
    msg: &Message,
    edits: &mut EditList,
    mut own: impl FnMut(Span),
) -> Option<Span> {
    let b = msg.buf();
    if let Some(target) = strict_routed(st, msg, edits, &mut own) {
        return Some(target);
    }
    for r in msg.all(HeaderName::Route) {
        let mut ours = 0;
        let mut other = None;
        let parsed = crate::sip::addr::parse_list(b, r.value(), |na| {
            if other.is_none() {
                if is_own_uri(st, b, na.uri) {
                    ours += 1;
                    own(na.uri);
                } else {
                    other = Some(na);
                }
            }
        });
        if parsed.is_err() {
            // Not ours to mend: left for the next hop to judge.
            return None;
        }
        match other {
            None => edits.remove(r.line()),
            Some(na) => {
                if ours > 0 {
                    edits.remove(Span::new(r.value().start as usize, na.whole.start as usize));
                }
                return Some(na.uri);
            }
        }
    }
    None
}

/// RFC 3261 16.4: an in-dialog request whose Request-URI is our Record-Route (no user
/// part, `lr`, one of our addresses: a strict router before us, RFC 2543's routing,
/// put it there and the remote target last in Route) goes on with the last Route value
/// as its Request-URI, that value and our own at the top of Route removed. `Some`
/// when it was: where the request goes, the first Route value left, else the new
/// Request-URI. A request to a number at our address (a trunk's usual form) has a
/// user part and is not touched. QA 120: such a request went on with our address as its
/// Request-URI.
pub(super) fn strict_routed(
    st: &Step<'_>,
    msg: &Message,
    edits: &mut EditList,
    own: &mut impl FnMut(Span),
) -> Option<Span> {
    // Asked of every request forwarded: an initial one (no To-tag) goes first.
    msg.to_tag()?;
    let b = msg.buf();
    let ruri = msg.request_uri()?;
    // Most in-dialog requests go to a Contact with a user part: no URI parsed for them.
    if memchr::memchr(b'@', ruri.of(b)).is_some() {
        return None;
    }
    let u = uri::parse(b, ruri).ok()?;
    // Ours as we write it: a sip URI (a sips one is never the same, RFC 3261 19.1.4, QA
    // 142) naming an address of ours, not a wildcard listener's port on any host.
    if u.scheme != uri::Scheme::Sip
        || u.user.is_some()
        || uri::param(b, u.params, b"lr").is_none()
        || !own_host(st, b, &u)
    {
        return None;
    }
    let fields: Vec<&crate::sip::Header> = msg.all(HeaderName::Route).collect();
    let mut values = vec![];
    for (i, h) in fields.iter().enumerate() {
        crate::sip::addr::parse_list(b, h.value(), |na| values.push((i, na))).ok()?;
    }
    let &(_, last) = values.last()?;
    if is_own_uri(st, b, last.uri) {
        return None;
    }
    // Our URI there carries the flow of a peer behind a NAT as a Route value would.
    own(ruri);
    let mut keep = vec![true; values.len()];
    keep[values.len() - 1] = false;
    for (k, (_, na)) in values.iter().enumerate().take(values.len() - 1) {
        if !is_own_uri(st, b, na.uri) {
            break;
        }
        own(na.uri);
        keep[k] = false;
    }
    edits.replace(ruri, last.uri.of(b));
    for (i, h) in fields.iter().enumerate() {
        let mine: Vec<usize> = (0..values.len()).filter(|&k| values[k].0 == i).collect();
        let kept: Vec<usize> = mine.iter().copied().filter(|&k| keep[k]).collect();
        if kept.len() == mine.len() {
            continue;
        }
        if kept.is_empty() {
            edits.remove(h.line());
            continue;
        }
        edits.replace_with(h.value(), |out| {
            for (n, &k) in kept.iter().enumerate() {
                if n > 0 {
                    out.extend_from_slice(b", ");
                }
                out.extend_from_slice(values[k].1.whole.of(b));
            }
        });
    }
    Some(
        keep.iter()
            .position(|&k| k)
            .map_or(last.uri, |k| values[k].1.uri),
    )
}
