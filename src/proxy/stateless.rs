//! The stateless proxy step (RFC 3261 16.11): one received message in, at most one
//! message out, no transaction state. Sockets are not touched here: the transports
//! call [`handle`] and send what it returns, so this logic is tested without them.
//!
//! Requests from a trunk go through [`decide`]; allowed ones are forwarded to the
//! trunk's next hop with our Via on top (branch derived from the incoming one, so a
//! retransmission or a CANCEL maps to the same branch), Max-Forwards decremented and
//! `received`/`rport` filled in (RFC 3581). Responses are routed back by the Via below
//! ours. The ACK to our own rejection is absorbed: its To-tag is the one we generated.

use bytes::Bytes;
use std::net::SocketAddr;

use crate::behaviour::{self, BehaviourTracker, Seen};
use crate::decide::{Context, Decision, Kind, Outcome, Refusal, decide};
use crate::policy::auth::{DIALOG_PARAM, Side};
use crate::policy::config::{ListenSpec, Transport};
use crate::policy::rate::{RateCounter, TRANSACTION_MS};
use crate::policy::{Policy, RuleId};
use crate::sip::response::{self, Extra, hex16, push_num};
use crate::sip::rewrite::{EditList, crlf_head};
use crate::sip::uri;
use crate::sip::via::host_ip;
use crate::sip::via::{self, Via};
use crate::sip::{HeaderName, Message, Method, Span, lex};
use crate::verdict;

pub use crate::sip::via::BRANCH_PREFIX;

/// Where a message came from.
#[derive(Debug, Clone, Copy)]
pub struct Origin {
    pub source: SocketAddr,
    /// The listener it arrived on.
    pub local: ListenSpec,
    /// The TCP connection, for messages that came over one.
    pub conn: Option<u64>,
}

/// Where a message goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dest {
    Udp(SocketAddr),
    /// Back over the TCP connection with this id.
    Tcp(u64),
    /// A response relayed back over the TCP connection with this id, or, when that
    /// connection is gone, over a new one to this address: the Via's `received` and
    /// sent-by port (RFC 3261 18.2.2), so that a PBX whose connection broke (a NAT
    /// rebinding, a load balancer, a reconnect between attempts) still gets its 200
    /// (QA 79: it was dropped as `tcp-gone`).
    TcpBack(u64, SocketAddr),
    /// Over our TCP connection to this next hop, opened when there is none (RFC 3261
    /// 18.1.1: the connection is reused for every request to that address).
    TcpTo(SocketAddr),
}

/// What became of one received message. Bytes to send, if any, are in the `out` buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handled {
    /// A request forwarded downstream (or a response relayed upstream).
    Forward(Dest),
    /// Answered by sipfence itself with this status.
    Respond(Dest, u16),
    /// A new INVITE answered 503 because the proxy is saturated.
    Shed(Dest),
    /// The ACK to one of our own rejections: ends here.
    Absorbed,
    /// Not answered; the reason is a metric label.
    Dropped(&'static str),
}

/// What the shell knows of its TCP connections towards next hops, so that the step
/// answers a request one cannot take at once, and the decision says what its caller got.
pub trait NextHops: Sync {
    /// A request for `to` would not go now, and why (the Reason of the 503 that answers
    /// it): the connection's last attempt failed ([`NEXT_HOP_UNREACHABLE`]), or its
    /// queue is full, a next hop that has stopped reading or is slower than the calls
    /// ([`NEXT_HOP_CONGESTED`]).
    /// `local`: the listener the request came in on (each has its own connection).
    fn refuses(&self, to: SocketAddr, local: SocketAddr) -> Option<&'static str>;
    /// The address a TCP connection with `to` is up under (a peer's own, or ours to
    /// it; an IPv4 peer of a dual-stack listener is kept under its mapped form), if
    /// one is: a TCP flow is its connection ([`nat_flow`]).
    fn connection(&self, to: SocketAddr) -> Option<SocketAddr> {
        Some(to)
    }
    /// Whether some next hop is marked down (one atomic read: asked of every INVITE
    /// before the trunk's next hop is looked up).
    fn some_down(&self) -> bool {
        false
    }
    /// Whether the next hop `to`, reached over `transport`, has stopped answering the
    /// OPTIONS probes (`[proxy] probe_secs`): new calls for it are answered 503
    /// ([`NEXT_HOP_SILENT`]).
    fn silent(&self, _to: SocketAddr, _transport: Transport) -> bool {
        false
    }
}

/// Of our Via addresses (one, and another of the other IP family if any), the one a
/// request sent to `dest` names: the one of `dest`'s IP family.
pub fn via_for((here, other): (SocketAddr, Option<SocketAddr>), dest: SocketAddr) -> SocketAddr {
    match other {
        Some(o) if o.is_ipv4() == dest.ip().to_canonical().is_ipv4() => o,
        _ => here,
    }
}

/// Branch prefix of the OPTIONS probes of next hops ([`probe_request`]); never one
/// of a relayed request's (theirs go on in hex digits).
pub const PROBE_BRANCH: &[u8] = b"z9hG4bKsfprobe";

/// The OPTIONS that probes the next hop `to` over `transport`, sent from `via` (`n`: a
/// sequence number, so that each probe is a transaction of its own). Max-Forwards 0
/// asks the next hop to answer itself rather than send it on (RFC 3261 11, 16.3 step
/// 3): any answer, a 483 too, says it is there.
pub fn probe_request(
    to: SocketAddr,
    transport: Transport,
    via: SocketAddr,
    n: u64,
    out: &mut Vec<u8>,
) {
    out.extend_from_slice(b"OPTIONS sip:");
    response::push_sent_by(out, to);
    if transport == Transport::Tcp {
        out.extend_from_slice(b";transport=tcp");
    }
    out.extend_from_slice(match transport {
        Transport::Udp => b" SIP/2.0\r\nVia: SIP/2.0/UDP ",
        Transport::Tcp => b" SIP/2.0\r\nVia: SIP/2.0/TCP ",
    });
    response::push_sent_by(out, via);
    out.extend_from_slice(b";branch=");
    out.extend_from_slice(PROBE_BRANCH);
    push_num(out, n);
    out.extend_from_slice(b";rport\r\nMax-Forwards: 0\r\nFrom: <sip:sipfence@");
    response::push_sent_by(out, via);
    out.extend_from_slice(b">;tag=sfprobe\r\nTo: <sip:");
    response::push_sent_by(out, to);
    out.extend_from_slice(b">\r\nCall-ID: sfprobe-");
    push_num(out, n);
    out.extend_from_slice(b"\r\nCSeq: ");
    push_num(out, n % 1_000_000_000 + 1);
    out.extend_from_slice(b" OPTIONS\r\nContent-Length: 0\r\n\r\n");
}

/// A response to one of our probes, from a next hop.
fn probe_answer(st: &Step<'_>, msg: &Message, o: &Origin) -> bool {
    is_probe(msg) && st.policy.is_next_hop(&o.source)
}

/// One of our probes of a next hop (`[proxy] probe_secs`), or an answer to one: our
/// probe branch on top, an OPTIONS transaction.
pub fn is_probe(msg: &Message) -> bool {
    let b = msg.buf();
    msg.top_via()
        .and_then(|v| v.branch)
        .is_some_and(|br| br.of(b).starts_with(PROBE_BRANCH))
        && msg.cseq().is_some_and(|(_, m)| m == b"OPTIONS")
}

/// No connections (replay, explain, benches): every request can go.
pub struct NoNextHops;

impl NextHops for NoNextHops {
    fn refuses(&self, _to: SocketAddr, _local: SocketAddr) -> Option<&'static str> {
        None
    }
}

/// Everything a step needs besides the message.
pub struct Step<'a> {
    pub policy: &'a Policy,
    pub rates: &'a dyn RateCounter,
    pub behaviour: &'a dyn BehaviourTracker,
    /// Steady and calendar time ([`Context::now_ms`], [`Context::wall_ms`]).
    pub now_ms: u64,
    pub wall_ms: u64,
    /// Address of the UDP socket that forwards (goes into our Via).
    pub via_addr: SocketAddr,
    /// The address of the worker's socket of the other IP family, if it has one: a
    /// request that goes to an address of that family leaves by it, and our Via and
    /// Record-Route name it (a dual-stack gateway between an IPv6 trunk and an IPv4
    /// core).
    pub via_other: Option<SocketAddr>,
    /// New INVITEs are answered 503 (the proxy is saturated).
    pub overloaded: bool,
    /// Stopping (`[proxy] drain_secs`): new INVITEs are answered 503 as under
    /// overload, with a Reason that says why.
    pub draining: bool,
    pub next_hops: &'a dyn NextHops,
}

impl<'a> Step<'a> {
    /// The address a request sent to `dest` leaves from: the one of its IP family.
    pub fn via_to(&self, dest: SocketAddr) -> SocketAddr {
        via_for((self.via_addr, self.via_other), dest)
    }

    /// One of the addresses our Via names.
    fn is_via(&self, a: SocketAddr) -> bool {
        a == self.via_addr || Some(a) == self.via_other
    }

    /// What the decision core is told of a request from `o`.
    fn context(&self, o: &Origin) -> Context<'a> {
        Context {
            source: o.source,
            local: Some(o.local),
            trunk: None,
            now_ms: self.now_ms,
            wall_ms: self.wall_ms,
            rates: self.rates,
            behaviour: self.behaviour,
        }
    }
}

fn dest_for_response(b: &[u8], o: &Origin, top: Option<&Via>) -> Dest {
    if let Some(c) = o.conn {
        return Dest::Tcp(c);
    }
    // RFC 3581: with rport, answer the source port; else the sent-by port. Always the
    // source address (the "received" of RFC 3261 18.2.2). A sender behind a NAT is
    // answered at its source port all the same ([`natted_via`]).
    let port = match top {
        Some(v) if v.rport.is_some() || natted_via(b, v, o.source) => o.source.port(),
        Some(v) => v.port.unwrap_or(5060),
        None => o.source.port(),
    };
    Dest::Udp(SocketAddr::new(o.source.ip(), port))
}

/// A Via whose host is not the packet's source: the sender wrote an address it has
/// behind a NAT, and its sent-by port is that address's too, which nothing outside
/// reaches (QA 115: a caller without `rport` behind a port-changing NAT never got its
/// 100, 180 or 200). Answered at the source port, as Kamailio's `force_rport` in a NAT
/// route does (its `nat_uac_test` 2).
fn natted_via(b: &[u8], v: &Via, src: SocketAddr) -> bool {
    !v.sent_from(b, src.ip())
}

fn respond(msg: &Message, o: &Origin, code: u16, extra: &Extra<'_>, out: &mut Vec<u8>) -> Handled {
    let extra = Extra {
        source: Some(o.source),
        ..*extra
    };
    response::write_response(msg, code, response::phrase(code), &extra, out);
    Handled::Respond(
        dest_for_response(msg.buf(), o, msg.top_via().as_ref()),
        code,
    )
}

/// What a step reports to the shell for metrics and records.
pub enum Observed<'a> {
    /// A decision on a request.
    Decision(&'a Message, &'a Decision),
    /// A relayed message that told the behaviour tracker how a call went (the trunk's
    /// [`crate::policy::Trunk::tag`], event).
    Behaviour(crate::policy::TrunkTag, Seen),
    /// A request from the core's side answered here instead of relayed (its code): no
    /// call and no decision, but a loop or a peer's connection that cannot take the
    /// core's BYE must show somewhere.
    CoreRefused(u16),
    /// NAT traversal (see [`nat_flow`]) in what went on: "written" (a flow put in our
    /// Record-Route), "followed" (a request of the core's sent to one), "stripped" (a
    /// peer's own taken out).
    Flow(&'static str),
    /// A next hop answered an OPTIONS probe of ours ([`probe_request`]).
    ProbeAnswer(SocketAddr),
}

/// Handles one message. `observe` is called with every decision on a request and every
/// call outcome the behaviour tracker learnt, before the result is returned.
///
/// `msg` is the caller's message to parse into, reused from one datagram to the next
/// (its ~1 KB header table is not built and moved for each); it holds this datagram's
/// message afterwards, or none.
pub fn handle(
    st: &Step<'_>,
    data: Bytes,
    msg: &mut Message,
    o: &Origin,
    out: &mut Vec<u8>,
    edits: &mut EditList,
    observe: &mut dyn FnMut(Observed<'_>),
) -> Result<Handled, crate::sip::ParseError> {
    out.clear();
    edits.clear();
    msg.parse_for_relay_into(data)?;
    let msg = &*msg;
    let h = handle_parsed(st, msg, o, out, edits, observe);
    // Whatever goes on over a stream, by whichever path, is framed for it.
    if let Handled::Forward(Dest::Tcp(_) | Dest::TcpBack(..) | Dest::TcpTo(_)) = h {
        framed_for_stream(msg, out);
    }
    // Only what actually goes on counts towards a caller's behaviour and the dialogs we
    // know: a response that is not ours, or a request we refuse, says nothing about a
    // call we carry. But for the core's BYE answered here (a peer whose Contact names
    // the gateway has it sent back to us, 482, QA 90 N6): once its BYE is sent the core
    // holds the call over (RFC 3261 15.1.1), so the call's concurrent place is given
    // back rather than held to the bound, as a replay of the capture would have it.
    let core_bye = matches!(h, Handled::Respond(..))
        && msg.method() == Some(Method::Bye)
        && st.policy.speaks_for_core(&o.source);
    if matches!(h, Handled::Forward(_)) || core_bye {
        let from_core = || st.policy.from_core_side(&o.source);
        crate::decide::track_dialog(msg, from_core, st.rates, st.now_ms);
        if st.policy.tracks_calls
            && let Some((trunk, seen)) = behaviour::observe(
                msg,
                st.policy.speaks_for_core(&o.source),
                st.behaviour,
                st.now_ms,
            )
        {
            observe(Observed::Behaviour(trunk, seen));
        }
    }
    Ok(h)
}

fn handle_parsed(
    st: &Step<'_>,
    msg: &Message,
    o: &Origin,
    out: &mut Vec<u8>,
    edits: &mut EditList,
    observe: &mut dyn FnMut(Observed<'_>),
) -> Handled {
    if !msg.is_request() {
        if probe_answer(st, msg, o) {
            observe(Observed::ProbeAnswer(o.source));
            return Handled::Absorbed;
        }
        // Responses from where nothing is accepted are not carried either: with
        // `unknown-source = drop` the gateway relays nothing for an address no trunk
        // claims.
        if st.policy.silent_to(&o.source, Some(&o.local)) && !st.policy.from_core_side(&o.source) {
            return Handled::Dropped("unknown-source");
        }
        let from = crate::decide::callers_from(msg, st.rates, st.now_ms);
        let (mut stripped, mut written) = (false, false);
        // Only where some trunk knows its dialogs by their token.
        let tokens = st.policy.dialog_tokens;
        if !st.policy.from_core_side(&o.source) {
            stripped = strip_flows(msg, Some(edits));
            if tokens {
                strip_dialog_tokens(msg, edits);
            }
            if let Some(flow) = answer_flow(st, msg, o) {
                written = flow_into_record_route(st, msg, flow, edits);
            }
        } else if tokens {
            answer_dialog_token(st, msg, edits);
        }
        let h = relay_response(st.policy, msg, from.as_deref(), out, edits);
        if let Handled::Forward(_) = h {
            for (happened, event) in [(stripped, "stripped"), (written, "written")] {
                if happened {
                    observe(Observed::Flow(event));
                }
            }
        }
        return h;
    }
    let server = (!st.policy.server.is_empty()).then_some(st.policy.server.as_str());
    let core_side = sent_by_core(st.policy, msg, o.source);
    if let Some(r) = Refusal::syntax(msg) {
        return refuse(st, msg, o, r, core_side, out, observe);
    }
    let top = msg.top_via();
    if top
        .and_then(|v| v.branch)
        .is_some_and(|b| msg.slice(b).starts_with(BRANCH_PREFIX) && is_our_host(msg, &top, st))
    {
        let r = Refusal {
            code: 482,
            why: "Loop Detected",
        };
        return refuse(st, msg, o, r, core_side, out, observe);
    }
    let method = msg.method().unwrap_or(Method::Other);

    // The core's keep-alives, from any of its host's sockets no trunk claims (a core
    // pings from where its dispatcher sends, not always from its SIP port).
    if method == Method::Options
        && (core_side || st.policy.from_core_side(&o.source))
        && core_pings_us(st, msg, o)
    {
        // Answered as a UAS answers, as a trunk's are: a Require sipfence does not
        // implement gets 420 (QA 89 F4: the core's got 200).
        if crate::decide::addressed_to_proxy(msg)
            && let Some(r) = Refusal::forwarding(st.policy, msg)
        {
            return refuse(st, msg, o, r, true, out, observe);
        }
        return answer_keepalive(msg, o, top.as_ref(), server, out);
    }
    // Requests from the core side (a next hop): in-dialog traffic towards the trunk,
    // held to what RFC 3261 16.3 holds every request to (no hops left: 483; a
    // Proxy-Require not accepted: 420, QA 89 F4).
    if core_side {
        if let Some(r) = Refusal::forwarding(st.policy, msg) {
            return refuse(st, msg, o, r, true, out, observe);
        }
        let h = forward_from_core(st, msg, o, out, edits, observe);
        if let Handled::Respond(_, code) = h {
            observe(Observed::CoreRefused(code));
        }
        return h;
    }

    if method == Method::Ack && crate::decide::ack_to_our_refusal(msg, st.rates, st.now_ms) {
        return Handled::Absorbed;
    }
    let mf = msg.max_forwards();
    // No hops left: not forwarded (RFC 3261 16.3 step 3), and an ACK gets no 483.
    if method == Method::Ack && mf == Some(0) {
        // A stranger's is the unknown-source drop, whatever its fields (QA 40).
        return if st.policy.silent_to(&o.source, Some(&o.local)) {
            Handled::Dropped("unknown-source")
        } else {
            Handled::Dropped("no-hops-left")
        };
    }
    if let Some(r) = Refusal::forwarding(st.policy, msg) {
        return refuse(st, msg, o, r, false, out, observe);
    }

    let ctx = st.context(o);
    // What the caller rules would judge: an initial INVITE, or one whose To-tag names a
    // dialog this gateway never carried (else invented To-tags would be a way past the
    // shedding, each judged in full). A stranger's INVITE is never shed: the
    // unknown-source rule, the first and cheapest, answers it as always (silence, with
    // `drop`), so that an overload gives a scanner no answer to reflect and no stranger
    // can turn the gateway not ready.
    if (st.overloaded || st.draining)
        && method == Method::Invite
        && st.policy.knows(&o.source, Some(&o.local))
        && sheds(st, msg, o, &ctx)
    {
        // Shed load before any list lookup: an explicit answer beats a silent drop.
        let extra = Extra {
            reason_text: Some(if st.draining { STOPPING } else { OVERLOADED }),
            retry_after: Some(st.policy.proxy.retry_after),
            server,
            source: Some(o.source),
            ..Extra::default()
        };
        response::write_response(msg, 503, response::phrase(503), &extra, out);
        // A retransmission of a call let through before ends here, as below.
        if st.policy.tracks_calls {
            st.behaviour.forget(behaviour::call_key(msg));
        }
        return Handled::Shed(dest_for_response(msg.buf(), o, top.as_ref()));
    }
    // A call for a next hop that cannot take it now (a TCP one down, a UDP one not
    // answering its probes) is not judged: answered 503 at once as the transport error
    // it is (RFC 3261 16.9), recorded with its caller, and counted towards no rate,
    // behaviour or call limit (QA 60: a short core outage, its callers retrying, used
    // up an enterprise trunk's calls per minute).
    if method == Method::Invite
        && st.next_hops.some_down()
        && msg.to_tag().is_none()
        && let Some(t) = st
            .policy
            .match_trunk(&o.source, Some(&o.local))
            .and_then(|t| st.policy.trunks.get(t))
        && let Some(next) = t.next_hop
        && let Some(why) = match next.transport {
            // A TCP core that hangs with its connection open (stopped, or its
            // process wedged) fails no connection: only its probes find it (QA 127 N6).
            Transport::Tcp => st.next_hops.refuses(next.addr, o.local.addr).or_else(|| {
                st.next_hops
                    .silent(next.addr, Transport::Tcp)
                    .then_some(NEXT_HOP_SILENT)
            }),
            Transport::Udp => st
                .next_hops
                .silent(next.addr, Transport::Udp)
                .then_some(NEXT_HOP_SILENT),
        }
    {
        // A retransmission of a call sent before the next hop was marked down ends
        // here, its caller answered: its concurrent-call place is given back (QA 124:
        // held to the 200 s bound, it refused calls once the core was back).
        if st.policy.tracks_calls {
            st.behaviour.forget(behaviour::call_key(msg));
        }
        let r = Refusal { code: 503, why };
        let mut d = Decision::refused(st.policy, msg, &st.context(o), r);
        // The first 503 a call gets: a retransmission of one sent on before leaves its
        // record too, the retransmissions after it none.
        let first_503 = st
            .rates
            .earlier_sight(down_key(msg), st.now_ms, TRANSACTION_MS)
            .is_none();
        d.answered_otherwise = d.retransmission && first_503;
        return refuse_decided(st, msg, o, r, &d, out, observe);
    }
    let mut d = decide(st.policy, msg, &ctx);
    let let_through = d.outcome == Outcome::Forward;
    let handled = carry_out(
        observe,
        st,
        msg,
        o,
        &mut d,
        server,
        top.as_ref(),
        mf,
        method,
        out,
        edits,
    );
    // A call let through and not sent (no next hop; the transport cannot take it) gives
    // back the places it took (behaviour, concurrent calls), as one a rule refused
    // does ([`crate::decide::decide`]).
    if let_through
        && st.policy.tracks_calls
        && d.kind == Kind::Call
        && !d.retransmission
        && !matches!(handled, Handled::Forward(_))
    {
        st.behaviour.forget(crate::behaviour::call_key(msg));
    }
    // Reported once the answer is known: a call the next hop's transport cannot take
    // (513) is recorded and counted as what its caller got, not as allowed (QA 44).
    observe(Observed::Decision(msg, &d));
    handled
}

/// Whether a known source's INVITE is one the overload and drain shedding answers 503:
/// one the caller rules would judge (initial, or its To-tag naming a dialog this gateway
/// never carried), and not a call under way ([`crate::decide::under_way`]).
fn sheds(st: &Step<'_>, msg: &Message, o: &Origin, ctx: &Context<'_>) -> bool {
    let trunk = st.policy.match_trunk(&o.source, Some(&o.local));
    (msg.to_tag().is_none()
        || crate::decide::invite_of_unknown_dialog(st.policy, msg, trunk, st.rates, st.now_ms))
        && !crate::decide::under_way(st.policy, msg, ctx, trunk)
}

/// The 200 to an OPTIONS addressed to sipfence itself (a peer's or the core's
/// keep-alive).
fn answer_keepalive(
    msg: &Message,
    o: &Origin,
    top: Option<&Via>,
    server: Option<&str>,
    out: &mut Vec<u8>,
) -> Handled {
    let extra = Extra {
        server,
        // Tell keep-alive senders what we are willing to carry.
        fields: b"Allow: INVITE, ACK, CANCEL, BYE, OPTIONS, PRACK, UPDATE, INFO\r\nAccept: application/sdp\r\n",
        source: Some(o.source),
        ..Extra::default()
    };
    response::write_response(msg, 200, "OK", &extra, out);
    Handled::Respond(dest_for_response(msg.buf(), o, top), 200)
}

/// Whether an OPTIONS of the core's (the caller read the method) names sipfence itself
/// (no To-tag, a sip or sips URI):
/// its host one of our addresses (the one it came to, or a Via address of ours), with
/// a user or none (`sip:ping@gw`, as some SBCs write it), or a name with no user (the
/// core's configuration naming the gateway: a name is no next hop the core's requests
/// could go on to). A core pinging its gateway this way (Kamailio's dispatcher, an
/// SBC's session-agent ping) was sent sipfence's own 482, the ping relayed to itself,
/// and took the gateway for down. An OPTIONS naming another address (a trunk peer
/// pinged through sipfence) goes on as before.
fn core_pings_us(st: &Step<'_>, msg: &Message, o: &Origin) -> bool {
    if msg.to_tag().is_some() {
        return false;
    }
    let b = msg.buf();
    let Some(u) = msg.request_uri().and_then(|u| uri::parse(b, u).ok()) else {
        return false;
    };
    if !matches!(u.scheme, uri::Scheme::Sip | uri::Scheme::Sips) {
        return false;
    }
    let Some(ip) = host_ip(u.host.of(b)) else {
        return u.user.is_none();
    };
    names_us(st, o, SocketAddr::new(ip, u.port.unwrap_or(5060)))
}

/// Whether `a` is this proxy: a Via address of ours, or the address the request came
/// to (IPv4 also when written mapped into IPv6, `[::ffff:192.0.2.10]`), or another of
/// its addresses ([`listens_at`]).
fn names_us(st: &Step<'_>, o: &Origin, a: SocketAddr) -> bool {
    let a = crate::canonical(a);
    listens_at(st, a) || (a == o.local.addr && !o.local.addr.ip().is_unspecified())
}

/// A Via address of ours, or a listen address of ours (QA 142: the core's request for
/// a peer whose Contact named the gateway's other address was sent to that socket, and
/// came back as a stranger's, or as another trunk's call). A wildcard listener is ours
/// at its port on the addresses the gateway names itself by (its Via addresses and its
/// explicit listen addresses; 0.0.0.0 and `::` are this host at any port), not on
/// every host: a peer at that port elsewhere is not us (QA 143: after the strict-route
/// step such a peer's Contact was taken for the gateway's and answered 482; before it,
/// a Route value naming one was taken off as ours).
fn listens_at(st: &Step<'_>, a: SocketAddr) -> bool {
    let a = crate::canonical(a);
    // Sent to, 0.0.0.0 and `::` are this host (QA 144: a request for
    // `sip:x@0.0.0.0:5060` came back to the gateway's own socket).
    if a.ip().is_unspecified() {
        return true;
    }
    let listen = || st.policy.trunks.iter().flat_map(|t| &t.listen);
    let named = |ip: std::net::IpAddr| {
        ip == st.via_addr.ip()
            || st.via_other.is_some_and(|v| v.ip() == ip)
            || listen().any(|l| l.addr.ip() == ip)
    };
    st.is_via(a)
        || listen().any(|l| {
            let here = ListenSpec {
                transport: l.transport,
                addr: a,
            };
            l.covers(&here) && (!l.addr.ip().is_unspecified() || named(a.ip()))
        })
}

/// What the decision `d` makes of the request: its answer, or the request forwarded. A
/// forward that cannot be made as decided (too large for UDP to the next hop) turns `d`
/// into the refusal its caller is sent.
#[allow(clippy::too_many_arguments)]
fn carry_out(
    observe: &mut dyn FnMut(Observed<'_>),
    st: &Step<'_>,
    msg: &Message,
    o: &Origin,
    d: &mut Decision,
    server: Option<&str>,
    top: Option<&Via>,
    mf: Option<u32>,
    method: Method,
    out: &mut Vec<u8>,
    edits: &mut EditList,
) -> Handled {
    if verdict::write_reject(st.policy, msg, d, Some(o.source), out) {
        return Handled::Respond(
            dest_for_response(msg.buf(), o, top),
            match d.outcome {
                Outcome::Reject { code } => code,
                Outcome::Forward | Outcome::Drop => 0,
            },
        );
    }
    if d.outcome == Outcome::Drop {
        // One reason for all a stranger sends under `unknown-source = drop`, well-formed
        // or not (QA 40).
        return if d.rule == Some(RuleId::UnknownSource) {
            Handled::Dropped("unknown-source")
        } else {
            Handled::Dropped("policy")
        };
    }
    let Some(trunk) = d.trunk.map(|t| &st.policy.trunks[t]) else {
        // An ACK from a stranger (no rule judges ACKs): its drop, under `drop`.
        return if st.policy.silent_to(&o.source, Some(&o.local)) {
            Handled::Dropped("unknown-source")
        } else {
            Handled::Dropped("no-trunk")
        };
    };
    if method == Method::Options
        && d.kind == Kind::OtherRequest
        && crate::decide::addressed_to_proxy(msg)
    {
        return answer_keepalive(msg, o, top, server, out);
    }
    let Some(next) = trunk.next_hop else {
        return Handled::Dropped("no-next-hop");
    };
    let rr = trunk.record_route && sets_up_dialog(msg, method, d);
    // On a trunk that knows its dialogs by their token, the place for it: the core's
    // answers, which name the dialog, get it written in on their way back to the peer
    // ([`answer_dialog_token`]); the core's side never sees one.
    let place = rr
        .then(|| trunk.dialog_tokens())
        .flatten()
        .map(|a| a.token_place(msg.call_id(), msg.from_tag_read().unwrap_or_default()));
    let token = place.as_deref().map(str::as_bytes);
    // RFC 3327: a PBX that registers to the core through the gateway leaves it in the
    // Path, so that the core's calls to it come this way (and, behind a NAT, to where
    // its REGISTER came from) rather than to the Contact it registered.
    let path = method == Method::Register && trunk.register_path;
    let flow = if rr || path { nat_flow(msg, o) } else { None };
    let stripped = strip_flows(msg, None);
    let build = |transport: Transport, edits: &mut EditList, out: &mut Vec<u8>| {
        edits.clear();
        out.clear();
        let from = crate::decide::kept_from(msg, d, st.rates, st.now_ms);
        verdict::add_edits(st.policy, msg, d, from.as_deref(), edits);
        if stripped {
            strip_flows(msg, Some(edits));
        }
        // Inserted before our Via, at the same place: the Via rows stay together (QA 89
        // F6).
        if rr {
            record_route(st, msg, o, transport, next.addr, flow, token, edits);
        }
        if path {
            // On top of any Path the peer wrote: the registrar's Route set for the
            // PBX is the Path in order (RFC 3327 5.3), nearest the core first.
            let core = st.via_to(next.addr);
            edits.insert_with(first_header(msg), |out| {
                out.extend_from_slice(b"Path: ");
                push_own_uri(out, core, transport, flow);
                out.extend_from_slice(b"\r\n");
            });
        }
        add_proxy_edits(st, msg, o, top, mf, transport, next.addr, edits);
        // Route values naming us end here (RFC 3261 16.4): our Record-Route's on
        // in-dialog requests, and on initial ones a peer that has us as its outbound
        // proxy; the core is the next hop. Left in, a loose-routing core would send the
        // request back to us.
        strip_own_routes(st, msg, edits, |_| {});
        write_edited(edits, msg, out);
    };
    build(next.transport, edits, out);
    let handled = match next.transport {
        Transport::Tcp => Handled::Forward(Dest::TcpTo(next.addr)),
        Transport::Udp => udp_or_tcp(st, msg, o, server, next.addr, out, |out| {
            build(Transport::Tcp, edits, out)
        }),
    };
    let (handled, refused) = unless_refused(st, msg, o, method, server, handled, out);
    if let Handled::Forward(_) = handled {
        if stripped {
            observe(Observed::Flow("stripped"));
        }
        if flow.is_some() {
            observe(Observed::Flow("written"));
        }
    }
    if let Handled::Respond(_, code) = handled {
        d.outcome = Outcome::Reject { code };
        // No rule of the policy refused it (a label rule that let it through is still
        // counted as a match, with its own action: QA 45).
        d.rule = None;
        d.refusal = Some(Refusal {
            code,
            why: match refused {
                Some(why) => why,
                None if code == 513 => "Too large for UDP to the next hop",
                None => NEXT_HOP_UNREACHABLE,
            },
        });
    }
    handled
}

pub const NEXT_HOP_UNREACHABLE: &str = "Next hop unreachable";

/// Below this many bytes no request the policy lets through can grow, with the
/// gateway's Via, Record-Route and edits, past what UDP or a stream takes (65,507 and
/// 65,535 bytes): [`refused_for_size`] need not build it.
pub const SIZE_SAFE: usize = 32_768;

/// The next hops as a replay sees them: up (the 503s a capture shows for their state
/// are read from it instead).
struct AllUp;

impl NextHops for AllUp {
    fn refuses(&self, _: SocketAddr, _: SocketAddr) -> Option<&'static str> {
        None
    }
}

/// For a replay: what the proxy makes of a request the decision `d` lets through when
/// the request, built as the proxy forwards it (with its Via naming `via_addr`, the
/// gateway's address the capture shows), is too large for the next hop's transport: `d`
/// becomes the 513 refusal its caller got live, and `true` is returned (QA 146: replay
/// let through the calls the gateway had refused for their size). The same building as
/// the proxy's ([`carry_out`]), with every next hop up.
pub fn refused_for_size(
    policy: &Policy,
    ctx: &Context<'_>,
    via_addr: SocketAddr,
    msg: &Message,
    o: &Origin,
    d: &mut Decision,
) -> bool {
    if msg.len() <= SIZE_SAFE || d.is_reject() || !msg.is_request() {
        return false;
    }
    let st = Step {
        policy,
        rates: ctx.rates,
        behaviour: ctx.behaviour,
        now_ms: ctx.now_ms,
        wall_ms: ctx.wall_ms,
        via_addr,
        via_other: None,
        overloaded: false,
        draining: false,
        next_hops: &AllUp,
    };
    let (Some(method), top, mf) = (msg.method(), msg.top_via(), msg.max_forwards()) else {
        return false;
    };
    let (mut out, mut edits) = (Vec::new(), EditList::new());
    let before = d.outcome;
    carry_out(
        &mut |_| {},
        &st,
        msg,
        o,
        d,
        None,
        top.as_ref(),
        mf,
        method,
        &mut out,
        &mut edits,
    );
    before != d.outcome
}

/// `[proxy] drain_secs`: new calls after SIGTERM.
pub const STOPPING: &str = "Stopping: try another gateway";
pub const OVERLOADED: &str = "Overloaded";

/// A next hop that answers no probe (`[proxy] probe_secs`).
pub const NEXT_HOP_SILENT: &str = "Next hop not answering";
pub const TOO_LARGE_FOR_NEXT_HOP: &str = "Too large for the next hop";

/// Its connection is up and its queue full (QA 79: such calls were refused as
/// unreachable while the core was connected, and nothing told the two apart).
pub const NEXT_HOP_CONGESTED: &str = "Next hop congested";

/// The Reason texts of the 503s that the gateway's state gives a call, not its policy:
/// a replay, which judges the policy alone, tells a capture's calls answered so apart
/// (QA 123: they read as allowed offline, with nothing said).
pub const GATEWAY_STATE: [&str; 5] = [
    NEXT_HOP_UNREACHABLE,
    NEXT_HOP_SILENT,
    NEXT_HOP_CONGESTED,
    STOPPING,
    OVERLOADED,
];

/// Whether a message built for a TCP connection is past the largest one a stream takes
/// here ([`crate::sip::MAX_MESSAGE`], as at many SIP stacks), with room for the
/// Content-Length [`framed_for_stream`] adds when `msg` has none. Our Via and
/// Record-Route, and the CRLFs of a head in bare LFs (up to a third more), can take a
/// message the parser took past it: the next hop would refuse it and end the connection
/// every call shares (QA 84: a 50,181-byte INVITE went on at 66,533 bytes, and a call
/// sent just after was lost).
fn too_large_for_a_stream(msg: &Message, out: &[u8]) -> bool {
    let framing = match msg.first(HeaderName::ContentLength) {
        Some(_) => 0,
        None => b"Content-Length: 65535\r\n".len(),
    };
    out.len() + framing > crate::sip::MAX_MESSAGE
}

/// A request for a TCP connection that it would take past what a stream takes
/// ([`too_large_for_a_stream`]) is answered 513, an ACK dropped; one for a connection
/// that cannot take it now ([`NextHops::refuses`]) is answered 503 with Retry-After, as a transport error (RFC 3261 16.9), so that its
/// caller tries another route at once (QA 49: a next hop that stopped reading made
/// requests vanish, counted as allowed). An ACK is never answered: it goes, and is
/// dropped (and counted) if it cannot.
fn unless_refused(
    st: &Step<'_>,
    msg: &Message,
    o: &Origin,
    method: Method,
    server: Option<&str>,
    handled: Handled,
    out: &mut Vec<u8>,
) -> (Handled, Option<&'static str>) {
    // (A next hop that stopped answering its probes has its new calls refused before
    // they are judged, in `handle_parsed`; the rest goes on: the calls up must end.)
    let Handled::Forward(Dest::TcpTo(to)) = handled else {
        return (handled, None);
    };
    if too_large_for_a_stream(msg, out) {
        if method == Method::Ack {
            return (Handled::Dropped("too-large-for-tcp"), None);
        }
        out.clear();
        let extra = Extra {
            reason_text: Some(TOO_LARGE_FOR_NEXT_HOP),
            server,
            ..Extra::default()
        };
        return (
            respond(msg, o, 513, &extra, out),
            Some(TOO_LARGE_FOR_NEXT_HOP),
        );
    }
    if method == Method::Ack {
        return (handled, None);
    }
    let Some(why) = st.next_hops.refuses(to, o.local.addr) else {
        return (handled, None);
    };
    // A BYE for a TCP next hop marked down ends its call, as one whose connection
    // failed does ([`crate::proxy::tcp::unreachable`]; QA 128: only the first, which
    // found the connection failing, gave its place back).
    if method == Method::Bye && st.policy.tracks_calls {
        let from_core = st.policy.speaks_for_core(&o.source);
        behaviour::bye_not_delivered(msg, from_core, st.behaviour, st.now_ms);
    }
    out.clear();
    let extra = Extra {
        reason_text: Some(why),
        retry_after: retry_after_for(st.policy, to),
        server,
        ..Extra::default()
    };
    (respond(msg, o, 503, &extra, out), Some(why))
}

/// The Retry-After of a 503 for a request `to` could not take: a trunk's caller is told
/// when to try the core again; the core, whose request for one trunk peer failed, is
/// told nothing of the kind, or it would hold back everything it has for the gateway
/// (RFC 3261 21.5.4; QA 116: a NATed PBX's connection gone).
pub fn retry_after_for(policy: &Policy, to: SocketAddr) -> Option<u32> {
    policy.is_next_hop(&to).then_some(policy.proxy.retry_after)
}

/// Answers a request the protocol checks refused, and reports the decision (counted
/// and recorded like any other). The core's own requests are answered as they always
/// are: the core is no trunk, and `unknown-source` must not silence it.
fn refuse(
    st: &Step<'_>,
    msg: &Message,
    o: &Origin,
    r: Refusal,
    core_side: bool,
    out: &mut Vec<u8>,
    observe: &mut dyn FnMut(Observed<'_>),
) -> Handled {
    if !core_side {
        let d = Decision::refused(st.policy, msg, &st.context(o), r);
        return refuse_decided(st, msg, o, r, &d, out, observe);
    }
    if msg.method() == Some(Method::Ack) {
        return Handled::Dropped("bad-ack");
    }
    observe(Observed::CoreRefused(r.code));
    verdict::write_refusal(st.policy, msg, r, Some(o.source), out);
    Handled::Respond(
        dest_for_response(msg.buf(), o, msg.top_via().as_ref()),
        r.code,
    )
}

/// [`refuse`] for a request from a trunk's side, its decision `d` made of the refusal
/// `r`: reported, and answered (a stranger's, under `drop`, dropped).
fn refuse_decided(
    st: &Step<'_>,
    msg: &Message,
    o: &Origin,
    r: Refusal,
    d: &Decision,
    out: &mut Vec<u8>,
    observe: &mut dyn FnMut(Observed<'_>),
) -> Handled {
    observe(Observed::Decision(msg, d));
    if d.outcome == Outcome::Drop {
        // A stranger's, broken ACK or not, is the unknown-source drop (QA 41); a drop
        // that is no ACK is always a stranger's.
        return if msg.method() == Some(Method::Ack)
            && !st.policy.silent_to(&o.source, Some(&o.local))
        {
            Handled::Dropped("bad-ack")
        } else {
            Handled::Dropped("unknown-source")
        };
    }
    verdict::write_refusal(st.policy, msg, r, Some(o.source), out);
    Handled::Respond(
        dest_for_response(msg.buf(), o, msg.top_via().as_ref()),
        r.code,
    )
}

/// Key in the rate counters' memory of an INVITE transaction answered 503 for its next
/// hop down.
fn down_key(msg: &Message) -> u64 {
    let cseq = msg.cseq().map_or(0, |(n, _)| n);
    crate::sip::lex::tag_hash(&[
        b"down-503",
        msg.call_id(),
        msg.from_tag().unwrap_or_default(),
        &cseq.to_le_bytes(),
    ])
}

/// The largest UDP payload over IPv4 (65,535 - 20 - 8).
pub const MAX_UDP_PAYLOAD: usize = 65_507;

/// A request built in `out` for UDP to `dest`: sent as it is when it fits; over
/// `[proxy] udp_mtu`, rebuilt by `for_tcp` (our Via must name the transport it really
/// goes on) and sent to the same address over TCP (RFC 3261 18.1.1); larger than any
/// datagram with no switch configured, answered 513 (RFC 3261 21.5.14) to the sender
/// rather than lost to a failing send it would retransmit into.
fn udp_or_tcp(
    st: &Step<'_>,
    msg: &Message,
    o: &Origin,
    server: Option<&str>,
    dest: SocketAddr,
    out: &mut Vec<u8>,
    for_tcp: impl FnOnce(&mut Vec<u8>),
) -> Handled {
    let mtu = st.policy.proxy.udp_mtu;
    if mtu > 0 && out.len() > mtu {
        for_tcp(out);
        Handled::Forward(Dest::TcpTo(dest))
    } else if out.len() > MAX_UDP_PAYLOAD {
        out.clear();
        let extra = Extra {
            reason_text: Some("Too large for UDP to the next hop"),
            server,
            ..Extra::default()
        };
        respond(msg, o, 513, &extra, out)
    } else {
        Handled::Forward(Dest::Udp(dest))
    }
}

fn is_our_host(msg: &Message, v: &Option<Via>, st: &Step<'_>) -> bool {
    v.as_ref().is_some_and(|v| {
        host_ip(msg.slice(v.host))
            .is_some_and(|ip| st.is_via(SocketAddr::new(ip, v.port.unwrap_or(5060))))
    })
}

/// A message the core sent, relayed as the core's (requests unjudged): anything from
/// the next hop's address; from that host on another port no trunk claims, its
/// responses and in-dialog requests (To-tag), which a core sends from other sockets too
/// (another worker's, a TCP connection of its own). An initial request from there is
/// judged as a stranger's (QA 51: relayed unjudged, it made the gateway a relay for any
/// process on the core's host).
pub fn sent_by_core(policy: &Policy, msg: &Message, source: SocketAddr) -> bool {
    policy.is_next_hop(&source)
        || (policy.from_core_side(&source) && (!msg.is_request() || msg.to_tag().is_some()))
}

/// A request this proxy sent (what a capture shows of its output): our Via on top, with
/// our branch, naming one of our addresses, and sent from that host, or sent to a next
/// hop. Replay tells its own output by this where the source address alone cannot:
/// requests sipfence sends over a TCP connection it opened leave from an ephemeral
/// port, no listen address, and from the address the system chooses towards the core,
/// which may be another of the host's than the listener's its Via names (QA 126, QA
/// 127: one connection per next hop carries every trunk's requests). (A request that
/// merely claims our Via comes from another host, and is judged, unless it went to
/// the core around the gateway.)
pub fn sent_by_proxy(policy: &Policy, msg: &Message, src: SocketAddr, dst: SocketAddr) -> bool {
    let top = msg.top_via();
    msg.is_request()
        && top.as_ref().is_some_and(|v| {
            v.branch
                .is_some_and(|b| msg.slice(b).starts_with(BRANCH_PREFIX))
                && host_ip(msg.slice(v.host)).is_some_and(|ip| {
                    (ip == src.ip().to_canonical() || policy.is_next_hop(&dst))
                        && policy.own_address(None, SocketAddr::new(ip, v.port.unwrap_or(5060)))
                })
        })
}

/// Our Via (naming the address the request leaves from towards `dest`),
/// received/rport on the previous one, Max-Forwards minus one.
#[allow(clippy::too_many_arguments)]
fn add_proxy_edits(
    st: &Step<'_>,
    msg: &Message,
    o: &Origin,
    top: Option<&Via>,
    mf: Option<u32>,
    transport: Transport,
    dest: SocketAddr,
    edits: &mut EditList,
) {
    let branch = branch_for(msg, top, o.source.ip());
    edits.insert_with(first_header(msg), |out| {
        out.extend_from_slice(match transport {
            Transport::Udp => b"Via: SIP/2.0/UDP ",
            Transport::Tcp => b"Via: SIP/2.0/TCP ",
        });
        // Written in place: no temporary String per forwarded message.
        response::push_sent_by(out, st.via_to(dest));
        out.extend_from_slice(b";branch=");
        out.extend_from_slice(BRANCH_PREFIX);
        out.extend_from_slice(&branch);
        if let Some(c) = o.conn {
            // Responses must return over the same connection: remember which, in our Via.
            out.extend_from_slice(b";sfc=");
            push_num(out, c);
        }
        out.extend_from_slice(b"\r\n");
    });
    if mf.is_none() {
        // Last, not beside our Via: the Via rows stay together (QA 30).
        edits.insert_with(msg.head_end(), |out| {
            out.extend_from_slice(b"Max-Forwards: 70\r\n")
        });
    }
    if let Some(v) = top {
        // `rport` is often the last parameter: fill it before appending `received`,
        // both edits being at the same offset then (EditList keeps insertion order).
        match (v.rport, v.rport_value, v.rport_end) {
            (Some(_), None, Some(end)) => edits.insert_with(end as usize, |out| {
                out.push(b'=');
                push_num(out, o.source.port() as u64);
            }),
            // A port the sender wrote itself (RFC 3581 has it send `rport` empty) is no
            // word of ours either: behind a NAT it is not where answers reach it (QA 96:
            // `rport=5060` from port 48520, every answer lost), as Kamailio's
            // `force_rport` has it.
            (Some(port), Some(value), _) if port != Some(o.source.port()) => {
                edits.replace_with(value, |out| push_num(out, o.source.port() as u64))
            }
            // No rport from behind a NAT: the answers go to the source port all the
            // same, so it is written for the Via they are routed back by ([`natted_via`]).
            (None, _, _)
                if o.local.transport == Transport::Udp && natted_via(msg.buf(), v, o.source) =>
            {
                edits.insert_with(v.whole.end as usize, |out| {
                    out.extend_from_slice(b";rport=");
                    push_num(out, o.source.port() as u64);
                })
            }
            _ => {}
        }
        // RFC 3581 4: with `rport`, `received` even when it is the sent-by address.
        // IPv4 written as IPv4 when a dual-stack socket shows it mapped (RFC 3261 25.1).
        let ip = o.source.ip().to_canonical();
        if v.needs_received(msg.buf(), ip) {
            edits.insert_with(v.whole.end as usize, |out| {
                out.extend_from_slice(b";received=");
                response::push_ip(out, ip);
            });
        } else if let Some(r) = v.received
            && !written_as(r.of(msg.buf()), ip)
        {
            // A `received` the sender wrote itself is no word of ours: the source is
            // (RFC 3261 18.2.1), else the answers would follow it to another trunk's
            // peer (QA 80: the core's 200 went to another peer's port). The source
            // written otherwise (`[::1]`, `0:0::1`) is rewritten in RFC 3261's form,
            // which a strict next hop parses (QA 174 F1).
            edits.replace_with(r, |out| response::push_ip(out, ip));
        }
    }
    if let (Some(n), Some(h)) = (mf, msg.first(HeaderName::MaxForwards)) {
        edits.replace_with(h.value(), |out| push_num(out, n.saturating_sub(1) as u64));
    }
}

/// Whether a `received` value is `ip` as sipfence writes it (RFC 3261's grammar: IPv6
/// without brackets, RFC 5952's text). A sender writes it rarely: the check may allocate.
fn written_as(value: &[u8], ip: std::net::IpAddr) -> bool {
    host_ip(value) == Some(ip) && {
        let mut own = Vec::with_capacity(40);
        response::push_ip(&mut own, ip);
        own == value
    }
}

/// RFC 3261 16.11: from the incoming branch when it is RFC 3261-style, else from the
/// fields that identify the transaction (RFC 2543 peers). The source host is hashed in
/// too: two PBXs behind NATs with the same private sent-by and a weak branch generator
/// would else have their calls merged into one transaction at the core (QA 174 F6).
/// Not its port: a CANCEL may come over a new TCP connection.
fn branch_for(msg: &Message, top: Option<&Via>, source: std::net::IpAddr) -> [u8; 16] {
    let b = msg.buf();
    let src = match source.to_canonical() {
        std::net::IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
        std::net::IpAddr::V6(a) => a.octets(),
    };
    let h = match top.and_then(|v| v.branch).map(|s| s.of(b)) {
        Some(br) if br.starts_with(b"z9hG4bK") => {
            let v = top.map(|v| v.whole.of(b)).unwrap_or(b"");
            lex::tag_hash(&[br, v.split(|&c| c == b';').next().unwrap_or(b""), &src])
        }
        _ => {
            let cseq_num = msg.cseq().map(|(n, _)| n.to_le_bytes()).unwrap_or_default();
            lex::tag_hash(&[
                msg.call_id(),
                msg.from_tag().unwrap_or(b""),
                msg.request_uri().map(|u| u.of(b)).unwrap_or(b""),
                &cseq_num,
                top.map(|v| v.whole.of(b)).unwrap_or(b""),
                &src,
            ])
        }
    };
    hex16(h)
}

/// RFC 3261 16.11: a response goes where the Via below ours says. That Via is whatever
/// the responder wrote, so it is only followed to an address a request we forwarded
/// could have come from ([`Policy::answers_to`]): a forged response (our branch prefix
/// is public) must not make the gateway send datagrams to hosts behind it.
/// `from`: the From the caller wrote, when the rules changed its call's
/// ([`crate::decide::callers_from`]).
fn relay_response(
    policy: &Policy,
    msg: &Message,
    from: Option<&[u8]>,
    out: &mut Vec<u8>,
    edits: &mut EditList,
) -> Handled {
    let b = msg.buf();
    // Both via-parms were validated and kept by the parser.
    let (Some(h), Some(ours)) = (msg.first(HeaderName::Via), msg.top_via()) else {
        return Handled::Dropped("response-no-via");
    };
    if !ours
        .branch
        .is_some_and(|br| br.of(b).starts_with(BRANCH_PREFIX))
    {
        return Handled::Dropped("response-not-ours");
    }
    let conn = crate::sip::uri::param(b, ours.params, b"sfc")
        .and_then(|s| lex::parse_u32(s.of(b)).map(u64::from));
    let Some(below) = msg.second_via() else {
        return Handled::Dropped("response-no-next-via");
    };
    // Remove ours: up to the next via-parm when it shares the field, else the field.
    let remove = if h.value().contains(below.whole.start) {
        Span::new(ours.whole.start as usize, below.whole.start as usize)
    } else {
        h.line()
    };
    let dest = match conn {
        // Only to an address a request could have come from, as over UDP.
        Some(c) => match host_ip(below.received.unwrap_or(below.host).of(b))
            .filter(|ip| policy.answers_to(*ip))
        {
            Some(ip) => Dest::TcpBack(c, SocketAddr::new(ip, below.port.unwrap_or(5060))),
            None => Dest::Tcp(c),
        },
        None => {
            let Some(ip) = host_ip(below.received.unwrap_or(below.host).of(b)) else {
                // A stateless proxy does no DNS on the response path.
                return Handled::Dropped("response-unresolvable");
            };
            if !policy.answers_to(ip) {
                return Handled::Dropped("response-unknown-destination");
            }
            let port = below.rport.flatten().or(below.port).unwrap_or(5060);
            Dest::Udp(SocketAddr::new(ip, port))
        }
    };
    edits.remove(remove);
    if let (Some(v), Some(h)) = (from, msg.first(HeaderName::From)) {
        edits.replace(h.value(), v);
    }
    write_edited(edits, msg, out);
    // Only a response that came over TCP can be too large to go back over UDP; any
    // can grow too large for a stream (see `too_large_for_a_stream`).
    match dest {
        Dest::Udp(_) if out.len() > MAX_UDP_PAYLOAD => {
            return Handled::Dropped("too-large-for-udp");
        }
        Dest::Tcp(_) | Dest::TcpTo(_) | Dest::TcpBack(..) if too_large_for_a_stream(msg, out) => {
            return Handled::Dropped("too-large-for-tcp");
        }
        _ => {}
    }
    Handled::Forward(dest)
}

/// RFC 3261 18.3 and 20.14: on a stream every message carries Content-Length. One that
/// came over UDP without it (legal there: the datagram ends it) gets one, counting the
/// body as it leaves (`out`), when it goes on over TCP (a TCP next hop, the `udp_mtu`
/// switch, a caller's connection). Else the receiver cannot tell where it
/// ends, and one caller could desynchronise the next-hop connection every call shares.
fn framed_for_stream(msg: &Message, out: &mut Vec<u8>) {
    if msg.first(HeaderName::ContentLength).is_some() {
        return;
    }
    // The empty line that ends the header section, where the parser ends it (a head in
    // bare LFs has had its CRLFs by now, but the body is left alone).
    let Some(end) = crate::sip::parse::head_len(out) else {
        return;
    };
    let blank = if out[..end].ends_with(b"\r\n") { 2 } else { 1 };
    let at = end - blank;
    let mut field = Vec::with_capacity(24);
    field.extend_from_slice(b"Content-Length: ");
    push_num(&mut field, (out.len() - at - blank) as u64);
    field.extend_from_slice(b"\r\n");
    out.splice(at..at, field);
}

fn first_header(msg: &Message) -> usize {
    msg.headers()
        .first()
        .map_or(msg.head_end(), |h| h.line().start as usize)
}

fn push_rr(out: &mut Vec<u8>, a: SocketAddr, t: Transport) {
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
fn sets_up_dialog(msg: &Message, method: Method, d: &Decision) -> bool {
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
fn record_route(
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
fn push_own_uri(
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
const FLOW_PARAM: &[u8] = b";sf-flow";

/// Where to reach the sender of a call set-up that came through a NAT: its source
/// address, when its top Via names another host (a PBX writing its private address),
/// or, on UDP with `rport`, another port (RFC 3581: it listens where it sent from). The
/// core's requests of the dialog go to the Contact, the same private address, which
/// nothing outside the PBX's network reaches (QA 111: the core's BYE, NOTIFY and
/// re-INVITE never came; a PBX's far-end hang-up left its channel up). `None` when the
/// Via names the source: the Contact is then trusted as it is.
fn nat_flow(msg: &Message, o: &Origin) -> Option<(SocketAddr, Transport)> {
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
fn contact_addr(msg: &Message) -> Option<Option<SocketAddr>> {
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
fn private_ip(ip: std::net::IpAddr) -> bool {
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
fn answer_flow(st: &Step<'_>, msg: &Message, o: &Origin) -> Option<(SocketAddr, Transport)> {
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
fn strip_flows(msg: &Message, edits: Option<&mut EditList>) -> bool {
    strip_param(msg, edits, &FLOW_PARAM[1..], b"flow")
}

/// Takes every `sf-dlg` out of the Record-Route of a trunk peer's answer, which goes to
/// the core's side: the token of a dialog the core set up is the peer's alone (QA 193
/// N1: the caller behind the core had it in the PBX's 180, and sent the PBX's trunk
/// NOTIFYs and BYEs it let by unchallenged). As leniently as flows are (QA 194 B2: our
/// entry sent back with a display name and white space around its `;`, or its address
/// written `127.000.0.1`, kept its token), in every entry: only sipfence writes one.
fn strip_dialog_tokens(msg: &Message, edits: &mut EditList) {
    strip_param(msg, Some(edits), DIALOG_PARAM, b"dlg");
}

/// [`strip_flows`] for the parameter `name`, in fields that hold `hint`.
fn strip_param(msg: &Message, mut edits: Option<&mut EditList>, name: &[u8], hint: &[u8]) -> bool {
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
fn lenient_params(b: &[u8], span: Span, each: &mut dyn FnMut(Span, Span)) {
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
fn flow_into_record_route(
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
fn answer_dialog_token(st: &Step<'_>, msg: &Message, edits: &mut EditList) {
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
const TOKEN_PLACE: u8 = b'~';

fn push_flow(out: &mut Vec<u8>, a: SocketAddr, t: Transport) {
    response::push_ip(out, a.ip());
    out.push(b'~');
    push_num(out, a.port() as u64);
    out.extend_from_slice(match t {
        Transport::Udp => b"~udp",
        Transport::Tcp => b"~tcp",
    });
}

/// The flow one of our Route entries carries ([`nat_flow`]), from its URI.
fn flow_of(b: &[u8], route: Span) -> Option<(SocketAddr, Transport)> {
    let u = uri::parse(b, route).ok()?;
    parse_flow(uri::param(b, u.params, &FLOW_PARAM[1..])?.of(b))
}

/// `ip~port~transport`, as [`push_flow`] writes it.
fn parse_flow(v: &[u8]) -> Option<(SocketAddr, Transport)> {
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
fn is_own_uri(st: &Step<'_>, b: &[u8], u: Span) -> bool {
    uri::parse(b, u).is_ok_and(|u| own_host(st, b, &u))
}

/// The host and port of a parsed URI are this proxy's ([`listens_at`]).
fn own_host(st: &Step<'_>, b: &[u8], u: &uri::Uri) -> bool {
    host_ip(u.host.of(b))
        .is_some_and(|ip| listens_at(st, SocketAddr::new(ip, u.port.unwrap_or(5060))))
}

/// `msg` as it goes on: with `edits` applied, a folded Content-Length unfolded, and a
/// head whose lines ended in LF alone written in CRLFs (a next hop may frame its TCP
/// stream on CRLFCRLF alone).
fn write_edited(edits: &mut EditList, msg: &Message, out: &mut Vec<u8>) {
    crate::sip::rewrite::unfold_content_length(msg, edits);
    edits.apply(msg.buf(), msg.len(), out);
    if msg.bare_lf() {
        crlf_head(out);
    }
}

/// Removes the Route values at the top that name this proxy (RFC 3261 16.4; two of
/// them after a double Record-Route) and returns the first that does not, if any.
/// `own` is shown the URI of each of ours.
fn strip_own_routes(
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
fn strict_routed(
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

/// In-dialog requests from the core towards a trunk peer: drop our Route, go to the
/// next Route or the Request-URI.
fn forward_from_core(
    st: &Step<'_>,
    msg: &Message,
    o: &Origin,
    out: &mut Vec<u8>,
    edits: &mut EditList,
    observe: &mut dyn FnMut(Observed<'_>),
) -> Handled {
    let b = msg.buf();
    let method = msg.method().unwrap_or(Method::Other);
    let mf = msg.max_forwards();
    if mf == Some(0) {
        // An ACK: any other request with no hops left got its 483 before (16.3 step 3).
        return Handled::Dropped("no-hops-left");
    }
    // The first flow among our entries, when it names a trunk's peer: a Route is the
    // core's word, but the value came back through the peer's hands in the 200's
    // Record-Route, and a forged one must not make the gateway send into networks no
    // trunk claims.
    let mut flow = None;
    let target = strip_own_routes(st, msg, edits, |u| {
        if flow.is_none() {
            flow = flow_of(b, u);
        }
    })
    .or(msg.request_uri());
    let mut flow = flow.filter(|(a, _)| st.policy.match_trunk(a, None).is_some());
    let Some(t) = target.and_then(|t| uri::parse(b, t).ok()) else {
        return Handled::Dropped("core-no-target");
    };
    // A caller behind a NAT is reached where its call came from, not at the private
    // address it wrote (the Request-URI, its Contact).
    // A TCP flow is the peer's connection. Gone (the PBX reconnected from another port,
    // or closed it), the request goes by its Request-URI when that names an address
    // outside private networks, as before flows; else it is answered RFC 5626 5.3's
    // 430 Flow Failed, which tells the core this peer's flow and not the gateway failed
    // (QA 115: a 503 with Retry-After held back everything the core had for the
    // gateway).
    if let Some((a, Transport::Tcp)) = flow {
        if let Some(up) = st.next_hops.connection(a) {
            flow = Some((up, Transport::Tcp));
        } else if host_ip(t.host.of(b)).is_some_and(|ip| !private_ip(ip.to_canonical())) {
            flow = None;
        } else if method == Method::Ack {
            return Handled::Dropped("flow-failed");
        } else {
            return respond(msg, o, 430, &Extra::default(), out);
        }
    }
    let dest = match flow {
        Some((a, _)) => a,
        None => {
            let Some(ip) = host_ip(t.host.of(b)) else {
                return Handled::Dropped("core-unresolvable");
            };
            SocketAddr::new(ip, t.port.unwrap_or(5060))
        }
    };
    if names_us(st, o, dest) {
        // Sent on, it would come back to this proxy as a stranger's request, answered
        // 482 and counted as a refused call (QA 89 F2): the core has routed it here
        // with nowhere further to go.
        if method == Method::Ack {
            return Handled::Dropped("core-no-target");
        }
        let extra = Extra {
            reason_text: Some("Loop Detected"),
            ..Extra::default()
        };
        return respond(msg, o, 482, &extra, out);
    }
    let top = msg.top_via();
    // `;transport=tcp` on the target asks for TCP (RFC 3261 19.1.1); UDP otherwise. A
    // flow is the transport its call came by (on TCP, its connection).
    let tcp = match flow {
        Some((_, t)) => t == Transport::Tcp,
        None => uri::param(b, t.params, b"transport")
            .is_some_and(|v| v.of(b).eq_ignore_ascii_case(b"tcp")),
    };
    let transport = if tcp { Transport::Tcp } else { Transport::Udp };
    // A call the core offers a trunk's peer is record-routed as the peer's calls are,
    // so that the peer's ACK, BYE and re-INVITEs come back through the gateway (QA 89
    // F1: they went to the core directly, around it). The trunk is the one that claims
    // the peer at the address the core sent this to, when one listens there (two
    // trunks may claim one peer on two ports, QA 90 N5), else the first that claims it.
    let rr = (matches!(method, Method::Invite | Method::Subscribe | Method::Refer)
        && msg.to_tag().is_none())
    .then(|| {
        st.policy
            .match_trunk(&dest, Some(&o.local))
            .or_else(|| st.policy.match_trunk(&dest, None))
            .map(|t| &st.policy.trunks[t])
    })
    .flatten()
    .filter(|t| t.record_route);
    // The trunk's side writes the core's tag in To in the dialog's requests. (Its
    // answers lose it on their way to the core: [`strip_dialog_tokens`].)
    let token = rr.and_then(|t| t.dialog_tokens()).map(|a| {
        a.dialog_token(
            msg.call_id(),
            msg.from_tag_read().unwrap_or_default(),
            b"",
            Side::To,
        )
    });
    // What depends on the transport, after our Route entries' removal.
    let finish = |transport: Transport, edits: &mut EditList, out: &mut Vec<u8>| {
        if rr.is_some() {
            record_route(
                st,
                msg,
                o,
                transport,
                dest,
                None,
                token.as_ref().map(|t| &t[..]),
                edits,
            );
        }
        add_proxy_edits(st, msg, o, top.as_ref(), mf, transport, dest, edits);
        write_edited(edits, msg, out);
    };
    finish(transport, edits, out);
    let handled = if tcp {
        Handled::Forward(Dest::TcpTo(dest))
    } else {
        udp_or_tcp(st, msg, o, None, dest, out, |out| {
            edits.clear();
            out.clear();
            strip_own_routes(st, msg, edits, |_| {});
            finish(Transport::Tcp, edits, out);
        })
    };
    let handled = unless_refused(st, msg, o, method, None, handled, out).0;
    if flow.is_some() && matches!(handled, Handled::Forward(_)) {
        observe(Observed::Flow("followed"));
    }
    handled
}

/// The code of the answer to a request the parser refused: 513 for a message over the
/// size bound (RFC 3261 21.5.14), else 400.
pub fn bad_request_code(e: &crate::sip::ParseError) -> u16 {
    if e.kind == crate::sip::ErrorKind::TooLarge {
        513
    } else {
        400
    }
}

/// The answer (400, or 513 for a message over the size bound: RFC 3261 21.5.14) to a
/// request the parser refused, when enough of it is readable to answer (start line,
/// Via, Call-ID...): built from a lenient re-read of the header lines.
pub fn bad_request_for(
    data: &[u8],
    source: SocketAddr,
    conn: Option<u64>,
    e: &crate::sip::ParseError,
    server: Option<&str>,
    out: &mut Vec<u8>,
) -> Option<Dest> {
    out.clear();
    let text = data.get(..data.len().min(crate::sip::MAX_MESSAGE))?;
    let head_end = memchr::memmem::find(text, b"\r\n\r\n").unwrap_or(text.len());
    let mut lines = text[..head_end]
        .split(|&c| c == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let first = lines.next()?;
    // Only requests are answered, and never an ACK, in any case (QA 55: a broken `ack`
    // was answered 400).
    if first.starts_with(b"SIP/")
        || lex::starts_with_ci(first, b"ACK ")
        || !first.first().is_some_and(|&c| lex::is_token(c))
    {
        return None;
    }
    let mut vias = vec![];
    // (name, whole line, value) of From, To, Call-ID and CSeq.
    let mut keep = vec![];
    // The first Via value that parses, read once: where the answer goes, and the top
    // Via it fills in.
    let mut top = None;
    for l in lines {
        let Some(colon) = l.iter().position(|&c| c == b':') else {
            continue;
        };
        let n = lex::trim(&l[..colon]);
        if !n.iter().all(|&c| lex::is_token(c)) {
            continue;
        }
        let v = lex::trim(&l[colon + 1..]);
        match HeaderName::parse(n) {
            HeaderName::Via => {
                if top.is_none() {
                    top = via::parse_first(v, Span::new(0, v.len())).map(|x| (vias.len(), v, x));
                }
                vias.push(l);
            }
            name @ (HeaderName::From | HeaderName::To | HeaderName::CallId | HeaderName::CSeq) => {
                keep.push((name, l, v))
            }
            _ => {}
        }
    }
    // A request whose every Via is unreadable (an IPv6 address without its brackets,
    // QA 139) is answered too, where it came from, its Vias as they came: silence left
    // its sender retransmitting to its timeout.
    if top.is_none() && vias.is_empty() {
        return None;
    }
    // As [`dest_for_response`]: the source port with rport, or from behind a NAT.
    let (rport, port) = match &top {
        Some((_, v, x)) => (x.rport.is_some() || natted_via(v, x, source), x.port),
        None => (true, None),
    };
    let code = bad_request_code(e);
    let why = if code == 513 {
        format!("Message larger than {} bytes", crate::sip::MAX_MESSAGE)
    } else {
        e.to_string()
    };
    out.extend_from_slice(b"SIP/2.0 ");
    push_num(out, code as u64);
    out.push(b' ');
    out.extend_from_slice(response::phrase(code).as_bytes());
    out.extend_from_slice(b"\r\n");
    // As every answer of ours (RFC 3261 8.2.6.2, RFC 3581 4): the top Via told where the
    // request came from, a To-tag the same for its retransmissions, Server.
    for (i, l) in vias.iter().enumerate() {
        if i == 0
            && let Some((0, top_value, top_via)) = &top
        {
            let whole = Span::new(0, top_value.len());
            response::push_top_via(out, top_value, whole, top_via, source);
        } else {
            push_printable(out, l);
            out.extend_from_slice(b"\r\n");
        }
    }
    let value = |name: HeaderName| {
        keep.iter()
            .find_map(|&(n, _, v)| (n == name).then_some(v))
            .unwrap_or_default()
    };
    let tag = hex16(lex::tag_hash(&[
        value(HeaderName::CallId),
        value(HeaderName::From),
        value(HeaderName::CSeq),
    ]));
    for &(name, l, v) in &keep {
        push_printable(out, l);
        if name == HeaderName::To && !v.windows(5).any(|w| w.eq_ignore_ascii_case(b";tag=")) {
            out.extend_from_slice(b";tag=");
            out.extend_from_slice(&tag);
        }
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"Reason: SIP;cause=");
    push_num(out, code as u64);
    out.extend_from_slice(b";text=\"");
    out.extend(
        why.bytes()
            .filter(|&c| c != b'"' && c != b'\\' && c >= b' '),
    );
    out.extend_from_slice(b"\"\r\n");
    if let Some(s) = server {
        out.extend_from_slice(b"Server: ");
        out.extend_from_slice(s.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"Content-Length: 0\r\n\r\n");
    Some(match conn {
        Some(c) => Dest::Tcp(c),
        None => Dest::Udp(SocketAddr::new(
            source.ip(),
            if rport {
                source.port()
            } else {
                port.unwrap_or(5060)
            },
        )),
    })
}

/// A field line of a broken request, copied into our answer with every control
/// character (a NUL, a bare CR: often what broke it) made a space: the caller still
/// finds its From, To, Call-ID and CSeq, and gets back no byte a reader might end a line
/// or a string at (QA 54).
fn push_printable(out: &mut Vec<u8>, line: &[u8]) {
    out.extend(line.iter().map(|&c| {
        if (c < b' ' && c != b'\t') || c == 0x7f {
            b' '
        } else {
            c
        }
    }));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::behaviour::NoTracking;
    use crate::policy::rate::NoCounting;

    const POLICY: &str = r#"
[[trunk]]
name = "ic"
role = "interconnect"
listen = ["udp:192.0.2.10:5060"]
sources = ["198.51.100.0/24"]
next_hop = "udp:10.0.0.5:5060"
record_route = true
"#;

    fn step(p: &Policy) -> Step<'_> {
        Step {
            policy: p,
            rates: &NoCounting,
            behaviour: &NoTracking,
            now_ms: 0,
            wall_ms: 0,
            via_addr: "10.0.0.1:5060".parse().unwrap(),
            via_other: None,
            overloaded: false,
            draining: false,
            next_hops: &NoNextHops,
        }
    }

    /// OPTIONS to the proxy (a sip URI with no user) is answered; one to a URI of
    /// another scheme is no keep-alive of ours and goes on like any request.
    #[test]
    fn options_to_other_schemes_go_on() {
        let p = Policy::from_str(POLICY, "t.toml", std::path::Path::new(".")).unwrap();
        let options = |ruri: &str| {
            format!(
                "OPTIONS {ruri} SIP/2.0\r\nVia: SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bK-o\r\nFrom: <sip:a@198.51.100.7>;tag=1\r\nTo: <{ruri}>\r\nCall-ID: opt\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
            )
        };
        let (h, out) = run(&p, "198.51.100.7:5060", &options("sip:192.0.2.10:5060"));
        assert!(matches!(h, Handled::Respond(_, 200)), "{out}");
        // A hop probe (`Max-Forwards: 0`) and an unknown Proxy-Require are a proxy's
        // business, not a UAS's: answered 200 too (QA 30). Forwarded OPTIONS still
        // count hops.
        let probe = |ruri: &str, extra: &str| {
            options(ruri).replace(
                "Max-Forwards: 70\r\n",
                &format!("Max-Forwards: 0\r\n{extra}"),
            )
        };
        for extra in ["", "Proxy-Require: foo\r\n"] {
            let (h, out) = run(
                &p,
                "198.51.100.7:5060",
                &probe("sip:192.0.2.10:5060", extra),
            );
            assert!(matches!(h, Handled::Respond(_, 200)), "{out}");
        }
        let (h, out) = run(
            &p,
            "198.51.100.7:5060",
            &probe("sip:+8613912345678@192.0.2.10", ""),
        );
        assert!(matches!(h, Handled::Respond(_, 483)), "{out}");
        // An ACK with no hops left cannot be answered: dropped, from a trunk and from
        // the core alike (QA 39: it was forwarded with Max-Forwards 0); with hops left
        // it goes on.
        let ack = |mf: u8| {
            format!(
                "ACK sip:+8613912345678@198.51.100.7 SIP/2.0\r\nVia: SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bK-a\r\nFrom: <sip:a@198.51.100.7>;tag=1\r\nTo: <sip:b@192.0.2.10>;tag=2\r\nCall-ID: ack\r\nCSeq: 1 ACK\r\nMax-Forwards: {mf}\r\nContent-Length: 0\r\n\r\n"
            )
        };
        for from in ["198.51.100.7:5060", "10.0.0.5:5060"] {
            let (h, out) = run(&p, from, &ack(0));
            assert!(
                matches!(h, Handled::Dropped("no-hops-left")),
                "{from}: {out}"
            );
            let (h, out) = run(&p, from, &ack(1));
            assert!(matches!(h, Handled::Forward(_)), "{from}: {out}");
            assert!(out.contains("\r\nMax-Forwards: 0\r\n"), "{out}");
        }
        // A Require it answers itself: sipfence implements no extension (QA 32).
        let (h, out) = run(
            &p,
            "198.51.100.7:5060",
            &probe("sip:192.0.2.10:5060", "Require: foo, 100rel\r\n"),
        );
        assert!(matches!(h, Handled::Respond(_, 420)), "{out}");
        assert!(out.contains("\r\nUnsupported: foo, 100rel\r\n"), "{out}");
        for ruri in [
            "nobodyKnowsThisScheme:totallyopaquecontent",
            "soap.beep://192.0.2.103:3002",
            "tel:+8613812345678",
        ] {
            let (h, out) = run(&p, "198.51.100.7:5060", &options(ruri));
            assert!(matches!(h, Handled::Forward(_)), "{ruri}: {out}");
            assert!(
                out.starts_with(&format!("OPTIONS {ruri} SIP/2.0\r\n")),
                "{out}"
            );
        }
    }

    /// A response is relayed only to a host a forwarded request could have come from,
    /// and, with `unknown-source = drop`, only from a host the gateway accepts anything
    /// from: our branch prefix alone does not make a datagram ours to send on.
    #[test]
    fn forged_responses_go_nowhere() {
        let answer = |below: &str| {
            format!(
                "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKsf0123456789abcdef\r\nVia: SIP/2.0/UDP {below};branch=z9hG4bK-x\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:c@d>;tag=2\r\nCall-ID: forged\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
            )
        };
        let p = Policy::from_str(POLICY, "t.toml", std::path::Path::new(".")).unwrap();
        // From the core, to the trunk's peer: relayed.
        let (h, _) = run(&p, "10.0.0.5:5060", &answer("198.51.100.7:5060"));
        assert!(
            matches!(h, Handled::Forward(Dest::Udp(a)) if a == "198.51.100.7:5060".parse().unwrap())
        );
        // To a host behind the gateway that never sent us anything: dropped, even with
        // `received` pointing there, or from the trunk's own peer.
        for (from, below) in [
            ("10.0.0.5:5060", "10.20.30.40:5060"),
            ("10.0.0.5:5060", "198.51.100.7:5060;received=10.20.30.40"),
            ("198.51.100.9:5060", "10.20.30.40:5060"),
        ] {
            let (h, out) = run(&p, from, &answer(below));
            assert!(
                matches!(h, Handled::Dropped("response-unknown-destination")),
                "{below}"
            );
            assert!(out.is_empty());
        }
        // A core's answer to its own request (in-dialog, towards the core): relayed.
        let (h, _) = run(&p, "198.51.100.7:5060", &answer("10.0.0.5:5060"));
        assert!(matches!(h, Handled::Forward(_)));
        // From an address no trunk claims, with `unknown-source = drop`: not carried at
        // all; with the default reject it is carried to a known peer.
        let (h, _) = run(&p, "203.0.113.9:5060", &answer("198.51.100.7:5060"));
        assert!(matches!(h, Handled::Forward(_)));
        let drop = Policy::from_str(
            &format!("{POLICY}\n[rules.unknown-source]\naction = \"drop\"\n"),
            "t.toml",
            std::path::Path::new("."),
        )
        .unwrap();
        let (h, _) = run(&drop, "203.0.113.9:5060", &answer("198.51.100.7:5060"));
        assert!(matches!(h, Handled::Dropped("unknown-source")));
        let (h, _) = run(&drop, "10.0.0.5:5060", &answer("198.51.100.7:5060"));
        assert!(matches!(h, Handled::Forward(_)));
        // No policy lets a stranger's requests on (so that any requester would be
        // answered): unknown-source rejects or drops.
        for action in ["monitor", "off", "label"] {
            let open = Policy::from_str(
                &format!("{POLICY}\n[rules.unknown-source]\naction = \"{action}\"\n"),
                "t.toml",
                std::path::Path::new("."),
            );
            assert!(open.is_err(), "{action}");
        }
    }

    fn run(p: &Policy, from: &str, text: &str) -> (Handled, String) {
        let (h, out, _) = run_observed(p, from, text);
        (h, out)
    }

    /// As [`run`], with the codes of the core's requests answered here.
    fn run_observed(p: &Policy, from: &str, text: &str) -> (Handled, String, Vec<u16>) {
        run_observed_at(p, from, "192.0.2.10:5060", text)
    }

    /// As [`run_observed`], the message having come to `to`.
    fn run_observed_at(
        p: &Policy,
        from: &str,
        to: &str,
        text: &str,
    ) -> (Handled, String, Vec<u16>) {
        run_on(&step(p), from, to, text)
    }

    /// As [`run_observed_at`], through the step `st` (another tracker or counter).
    fn run_on(st: &Step<'_>, from: &str, to: &str, text: &str) -> (Handled, String, Vec<u16>) {
        let (h, out, core, _) = run_over(st, from, to, Transport::Udp, text);
        (h, out, core)
    }

    /// `text` through the step `st`, from `from` to the listener `to` over `t` (TCP: on
    /// connection 7): what became of it, what went out, the core's requests answered
    /// here and the NAT flow events reported.
    fn run_over(
        st: &Step<'_>,
        from: &str,
        to: &str,
        t: Transport,
        text: &str,
    ) -> (Handled, String, Vec<u16>, Vec<&'static str>) {
        let o = Origin {
            source: from.parse().unwrap(),
            local: ListenSpec {
                transport: t,
                addr: to.parse().unwrap(),
            },
            conn: (t == Transport::Tcp).then_some(7),
        };
        let (mut out, mut edits, mut core, mut flows) =
            (Vec::new(), EditList::new(), vec![], vec![]);
        let h = handle(
            st,
            Bytes::from(text.to_string()),
            &mut Message::empty(),
            &o,
            &mut out,
            &mut edits,
            &mut |ob| match ob {
                Observed::CoreRefused(code) => core.push(code),
                Observed::Flow(e) => flows.push(e),
                _ => {}
            },
        )
        .unwrap();
        (h, String::from_utf8(out).unwrap(), core, flows)
    }

    /// The NAT flow events `text` makes, arriving from `from`.
    fn flow_events(p: &Policy, from: &str, text: &str) -> Vec<&'static str> {
        run_over(&step(p), from, "192.0.2.10:5060", Transport::Udp, text).3
    }

    /// The core's requests answered here instead of relayed are reported (N3 of QA 85:
    /// a loop between core and gateway answered 482/483 showed nowhere); a trunk's
    /// refusals, the core's requests that go on and the OPTIONS answered 200 are not.
    #[test]
    fn the_cores_requests_answered_here_are_reported() {
        let p = Policy::from_str(POLICY, "t.toml", std::path::Path::new(".")).unwrap();
        let bye = |via: &str, mf: u8| {
            format!(
                "BYE sip:+8613912345678@198.51.100.7 SIP/2.0\r\nVia: SIP/2.0/UDP {via}\r\nFrom: <sip:b@192.0.2.10>;tag=2\r\nTo: <sip:a@198.51.100.7>;tag=1\r\nCall-ID: bye\r\nCSeq: 2 BYE\r\nMax-Forwards: {mf}\r\nContent-Length: 0\r\n\r\n"
            )
        };
        let core = "10.0.0.5:5060";
        let (h, out, seen) = run_observed(&p, core, &bye("10.0.0.5:5060;branch=z9hG4bK-b", 0));
        assert!(matches!(h, Handled::Respond(_, 483)), "{out}");
        assert_eq!(seen, [483]);
        let ours = format!(
            "10.0.0.1:5060;branch={}x",
            String::from_utf8_lossy(BRANCH_PREFIX)
        );
        let (h, out, seen) = run_observed(&p, core, &bye(&ours, 70));
        assert!(matches!(h, Handled::Respond(_, 482)), "{out}");
        assert_eq!(seen, [482]);
        let (h, out, seen) = run_observed(&p, core, &bye("10.0.0.5:5060;branch=z9hG4bK-b", 70));
        assert!(matches!(h, Handled::Forward(_)), "{out}");
        assert!(seen.is_empty());
        // The trunk's own refusal is a decision, not the core's.
        let trunk = "198.51.100.7:5060";
        let (h, out, seen) = run_observed(&p, trunk, &bye("198.51.100.7:5060;branch=z9hG4bK-t", 0));
        assert!(matches!(h, Handled::Respond(_, 483)), "{out}");
        assert!(seen.is_empty());
    }

    /// [`POLICY`] with one call at a time on its trunk.
    fn capped() -> Policy {
        Policy::from_str(
            &format!("{POLICY}max_concurrent_calls = 1\n"),
            "t.toml",
            std::path::Path::new("."),
        )
        .unwrap()
    }

    /// The core (10.0.0.5:5060) stopped answering its probes.
    struct Silent;
    impl NextHops for Silent {
        fn refuses(&self, _to: SocketAddr, _local: SocketAddr) -> Option<&'static str> {
            None
        }
        fn some_down(&self) -> bool {
            true
        }
        fn silent(&self, to: SocketAddr, _transport: Transport) -> bool {
            to == "10.0.0.5:5060".parse().unwrap()
        }
    }

    /// A call from the trunk's peer (198.51.100.7), Call-ID and tags named by `id`.
    fn peer_invite(id: &str) -> String {
        format!(
            "INVITE sip:+8613912345678@192.0.2.10 SIP/2.0\r\nVia: SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bK-{id}\r\nFrom: <sip:+8613812345678@198.51.100.7>;tag=a{id}\r\nTo: <sip:+8613912345678@192.0.2.10>\r\nCall-ID: {id}\r\nCSeq: 1 INVITE\r\nContact: <sip:+8613812345678@198.51.100.7:5060>\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        )
    }

    /// The Via lines of a forwarded request, for the answer the core gives it.
    fn vias_of(out: &str) -> String {
        out.lines()
            .filter(|l| l.starts_with("Via:"))
            .map(|l| format!("{l}\r\n"))
            .collect()
    }

    /// A peer whose Contact names the gateway gets the core's BYE sent back here,
    /// answered 482; the core holds the call over all the same, so its concurrent place
    /// is free again (QA 90 N6: held until the four-hour bound).
    #[test]
    fn a_core_bye_answered_here_ends_the_call() {
        let p = capped();
        let calls = crate::behaviour::local::LocalTracker::new(64, 64);
        let st = Step {
            behaviour: &calls,
            ..step(&p)
        };
        let run = |from: &str, text: String| {
            let (h, out, _) = run_on(&st, from, "192.0.2.10:5060", &text);
            (h, out)
        };
        let invite = |id: &str| {
            format!(
                "INVITE sip:+8613912345678@192.0.2.10 SIP/2.0\r\nVia: SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bK-{id}\r\nFrom: <sip:+8613812345678@198.51.100.7>;tag=a{id}\r\nTo: <sip:+8613912345678@192.0.2.10>\r\nCall-ID: {id}\r\nCSeq: 1 INVITE\r\nContact: <sip:+8613812345678@192.0.2.10:5060>\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
            )
        };
        let peer = "198.51.100.7:5060";
        let (h, out) = run(peer, invite("n6-1"));
        assert!(matches!(h, Handled::Forward(_)), "{out}");
        // The core answers (through our Via); the call is up.
        let vias = vias_of(&out);
        let ok = format!(
            "SIP/2.0 200 OK\r\n{vias}From: <sip:+8613812345678@198.51.100.7>;tag=an6-1\r\nTo: <sip:+8613912345678@192.0.2.10>;tag=core\r\nCall-ID: n6-1\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
        );
        let (h, out) = run("10.0.0.5:5060", ok);
        assert!(matches!(h, Handled::Forward(_)), "{out}");
        let (h, out) = run(peer, invite("n6-2"));
        assert!(matches!(h, Handled::Respond(_, 503)), "{out}");
        let bye = "BYE sip:+8613812345678@192.0.2.10:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bK-n6b\r\nFrom: <sip:+8613912345678@192.0.2.10>;tag=core\r\nTo: <sip:+8613812345678@198.51.100.7>;tag=an6-1\r\nCall-ID: n6-1\r\nCSeq: 2 BYE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n";
        let (h, out) = run("10.0.0.5:5060", bye.to_string());
        assert!(matches!(h, Handled::Respond(_, 482)), "{out}");
        let (h, out) = run(peer, invite("n6-3"));
        assert!(matches!(h, Handled::Forward(_)), "{out}");
    }

    /// A core outage holds no concurrent-call place for long (QA 124: after a UDP core
    /// died and came back, the trunk refused calls for a minute, and places stayed held
    /// with no call up): an INVITE sent before the core was marked down ends at the
    /// 503 its retransmission gets here; an answered call whose caller's BYE the core
    /// never answered ends when the core is found down, not before (QA 127: a core may
    /// drop a BYE and keep the call), and one whose BYE the core refused (481: QA 47)
    /// stays up.
    #[test]
    fn a_core_outage_holds_no_concurrent_place() {
        use crate::behaviour::BehaviourTracker;
        let p = capped();
        let calls = crate::behaviour::local::LocalTracker::new(64, 64);
        let t0 = step(&p).now_ms;
        let run = |at: u64, down: bool, from: &str, text: &str| {
            let st = Step {
                behaviour: &calls,
                now_ms: t0 + at,
                wall_ms: t0 + at,
                next_hops: if down { &Silent } else { &NoNextHops },
                ..step(&p)
            };
            let (h, out, _) = run_on(&st, from, "192.0.2.10:5060", text);
            (h, out)
        };
        let (peer, core) = ("198.51.100.7:5060", "10.0.0.5:5060");
        let forwarded = |h: &Handled, out: &str| assert!(matches!(h, Handled::Forward(_)), "{out}");
        let full = |h: &Handled, out: &str| {
            assert!(
                matches!(h, Handled::Respond(_, 503)) && out.contains("concurrent"),
                "{out}"
            )
        };
        // Sent, and lost in a core that died; its retransmission, once the core is
        // marked down, gets 503 here.
        let (h, out) = run(0, false, peer, &peer_invite("o1"));
        forwarded(&h, &out);
        let (h, out) = run(1_000, false, peer, &peer_invite("o2"));
        full(&h, &out);
        let (h, out) = run(30_000, true, peer, &peer_invite("o1"));
        assert!(
            matches!(h, Handled::Respond(_, 503)) && out.contains("Next hop not answering"),
            "{out}"
        );
        // The core is back: the place is free.
        let (h, out) = run(40_000, false, peer, &peer_invite("o3"));
        forwarded(&h, &out);
        // Answered; then the caller's BYE, which the core never answers.
        let answer = |id: &str, out: &str| {
            format!(
                "SIP/2.0 200 OK\r\n{}From: <sip:+8613812345678@198.51.100.7>;tag=a{id}\r\nTo: <sip:+8613912345678@192.0.2.10>;tag=core{id}\r\nCall-ID: {id}\r\nCSeq: 1 INVITE\r\nContact: <sip:core@10.0.0.5>\r\nContent-Length: 0\r\n\r\n",
                vias_of(out)
            )
        };
        let (h, out) = run(40_100, false, core, &answer("o3", &out));
        forwarded(&h, &out);
        let bye = |id: &str| {
            format!(
                "BYE sip:core@10.0.0.5 SIP/2.0\r\nVia: SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bK-b{id}\r\nRoute: <sip:192.0.2.10:5060;lr>\r\nFrom: <sip:+8613812345678@198.51.100.7>;tag=a{id}\r\nTo: <sip:+8613912345678@192.0.2.10>;tag=core{id}\r\nCall-ID: {id}\r\nCSeq: 2 BYE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
            )
        };
        let (h, out) = run(50_000, false, peer, &bye("o3"));
        forwarded(&h, &out);
        // Silence alone frees nothing (a core may drop a BYE and keep the call: QA
        // 127); the core found down does.
        let (h, out) = run(600_000, false, peer, &peer_invite("o4"));
        full(&h, &out);
        let behind = p.trunks_behind(core.parse().unwrap(), None);
        assert!(!behind.is_empty());
        // Found down, but the BYE went unanswered before the outage's window: the live
        // core's silence, not the outage's (QA 128).
        calls.next_hop_down(&behind, t0 + 50_001);
        let (h, out) = run(600_000, false, peer, &peer_invite("o4"));
        full(&h, &out);
        calls.next_hop_down(&behind, t0 + 50_000);
        let (h, out) = run(600_000, false, peer, &peer_invite("o5"));
        forwarded(&h, &out);
        // Answered; the caller's BYE refused by the core (481): the call is up still.
        let (h, out) = run(100_000, false, core, &answer("o5", &out));
        forwarded(&h, &out);
        let (h, out) = run(110_000, false, peer, &bye("o5"));
        forwarded(&h, &out);
        let refused = format!(
            "SIP/2.0 481 Call/Transaction Does Not Exist\r\n{}From: <sip:+8613812345678@198.51.100.7>;tag=ao5\r\nTo: <sip:+8613912345678@192.0.2.10>;tag=coreo5\r\nCall-ID: o5\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n",
            vias_of(&out)
        );
        let (h, out) = run(110_100, false, core, &refused);
        forwarded(&h, &out);
        calls.next_hop_down(&behind, t0 + 110_000);
        let (h, out) = run(700_000, false, peer, &peer_invite("o6"));
        full(&h, &out);
    }

    /// A caller's BYE answered 503 here because its TCP next hop is marked down ends its
    /// call (QA 128: only the first BYE of an outage, the one that found the connection
    /// failing, gave its place back; the later ones, refused at once, held theirs).
    #[test]
    fn a_bye_for_a_tcp_next_hop_down_ends_its_call() {
        let p = Policy::from_str(
            &format!("{POLICY}max_concurrent_calls = 1\n")
                .replace("udp:10.0.0.5:5060", "tcp:10.0.0.5:5060"),
            "t.toml",
            std::path::Path::new("."),
        )
        .unwrap();
        let calls = crate::behaviour::local::LocalTracker::new(64, 64);
        struct Unreachable;
        impl NextHops for Unreachable {
            fn refuses(&self, _to: SocketAddr, _local: SocketAddr) -> Option<&'static str> {
                Some(NEXT_HOP_UNREACHABLE)
            }
            fn some_down(&self) -> bool {
                true
            }
            fn silent(&self, _to: SocketAddr, _transport: Transport) -> bool {
                false
            }
        }
        let run = |down: bool, from: &str, text: &str| {
            let st = Step {
                behaviour: &calls,
                next_hops: if down { &Unreachable } else { &NoNextHops },
                ..step(&p)
            };
            let (h, out, _) = run_on(&st, from, "192.0.2.10:5060", text);
            (h, out)
        };
        let peer = "198.51.100.7:5060";
        let (h, out) = run(false, peer, &peer_invite("t1"));
        assert!(matches!(h, Handled::Forward(Dest::TcpTo(_))), "{out}");
        let vias = vias_of(&out);
        let ok = format!(
            "SIP/2.0 200 OK\r\n{vias}From: <sip:+8613812345678@198.51.100.7>;tag=at1\r\nTo: <sip:+8613912345678@192.0.2.10>;tag=core\r\nCall-ID: t1\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
        );
        let (h, out) = run(false, "10.0.0.5:5060", &ok);
        assert!(matches!(h, Handled::Forward(_)), "{out}");
        let (h, out) = run(false, peer, &peer_invite("t2"));
        assert!(
            matches!(h, Handled::Respond(_, 503)) && out.contains("concurrent"),
            "{out}"
        );
        let bye = "BYE sip:core@10.0.0.5 SIP/2.0\r\nVia: SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bK-bt1\r\nFrom: <sip:+8613812345678@198.51.100.7>;tag=at1\r\nTo: <sip:+8613912345678@192.0.2.10>;tag=core\r\nCall-ID: t1\r\nCSeq: 2 BYE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n";
        let (h, out) = run(true, peer, bye);
        assert!(
            matches!(h, Handled::Respond(_, 503)) && out.contains("Next hop unreachable"),
            "{out}"
        );
        let (h, out) = run(false, peer, &peer_invite("t3"));
        assert!(matches!(h, Handled::Forward(_)), "{out}");
    }

    /// A retransmission of a call let through, answered 503 while the gateway sheds
    /// load or stops, ends the call: its place is given back, as a replay of the
    /// capture (which sees that 503) gives it back.
    #[test]
    fn a_call_whose_retransmission_is_shed_gives_its_place_back() {
        let p = capped();
        let calls = crate::behaviour::local::LocalTracker::new(64, 64);
        let run = |overloaded: bool, draining: bool, id: &str| {
            let st = Step {
                behaviour: &calls,
                overloaded,
                draining,
                ..step(&p)
            };
            let (h, out, _) = run_on(
                &st,
                "198.51.100.7:5060",
                "192.0.2.10:5060",
                &peer_invite(id),
            );
            (h, out)
        };
        let (h, out) = run(false, false, "s1");
        assert!(matches!(h, Handled::Forward(_)), "{out}");
        let (h, out) = run(true, false, "s1");
        assert!(
            matches!(h, Handled::Shed(_)) && out.contains("Overloaded"),
            "{out}"
        );
        let (h, out) = run(false, false, "s2");
        assert!(matches!(h, Handled::Forward(_)), "{out}");
        let (h, out) = run(false, true, "s2");
        assert!(
            matches!(h, Handled::Shed(_)) && out.contains("Stopping"),
            "{out}"
        );
        let (h, out) = run(false, false, "s3");
        assert!(matches!(h, Handled::Forward(_)), "{out}");
    }

    /// Shedding (overload, drain) spares the retransmission of an INVITE judged within
    /// its transaction: a call let through goes on again, a refused one gets its
    /// refusal again (QA 149: during a drain a caller had 503 Stopping and then the
    /// core's 200 for one INVITE); a new call is shed.
    #[test]
    fn shedding_spares_the_retransmissions_of_calls_judged() {
        let p = Policy::from_str(POLICY, "t.toml", std::path::Path::new(".")).unwrap();
        let rates = crate::policy::rate::LocalRateCounter::new(1024);
        let run_from = |from: &str, overloaded: bool, draining: bool, text: &str| {
            let st = Step {
                rates: &rates,
                overloaded,
                draining,
                now_ms: 1_000,
                wall_ms: 1_000,
                ..step(&p)
            };
            run_on(&st, from, "192.0.2.10:5060", text)
        };
        let run = |overloaded: bool, draining: bool, text: &str| {
            run_from("198.51.100.7:5060", overloaded, draining, text)
        };
        let blank =
            peer_invite("r2").replace("From: <sip:+8613812345678@", "From: <sip:anonymous@");
        let (h, out, _) = run(false, false, &peer_invite("r1"));
        assert!(matches!(h, Handled::Forward(_)), "{out}");
        let (h, refused, _) = run(false, false, &blank);
        let code = match h {
            Handled::Respond(_, c) => c,
            _ => panic!("{refused}"),
        };
        assert!(code >= 400 && code != 503, "{refused}");
        for (overloaded, draining) in [(true, false), (false, true)] {
            let (h, out, _) = run(overloaded, draining, &peer_invite("r1"));
            assert!(matches!(h, Handled::Forward(_)), "{out}");
            let (h, out, _) = run(overloaded, draining, &blank);
            assert!(matches!(h, Handled::Respond(_, c) if c == code), "{out}");
            let (h, out, _) = run(overloaded, draining, &peer_invite("r3"));
            assert!(matches!(h, Handled::Shed(_)), "{out}");
        }
        // The retry with credentials the core's 407 asked for is the call under way
        // too (QA 151: it was shed); one the core did not ask for is shed.
        let (h, out, _) = run(false, false, &peer_invite("r4"));
        assert!(matches!(h, Handled::Forward(_)), "{out}");
        let challenge = format!(
            "SIP/2.0 407 Proxy Authentication Required\r\n{}From: <sip:+8613812345678@198.51.100.7>;tag=ar4\r\nTo: <sip:+8613912345678@192.0.2.10>;tag=c4\r\nCall-ID: r4\r\nCSeq: 1 INVITE\r\nProxy-Authenticate: Digest realm=\"core\", nonce=\"n4\"\r\nContent-Length: 0\r\n\r\n",
            vias_of(&out)
        );
        let (h, out, _) = run_from("10.0.0.5:5060", false, false, &challenge);
        assert!(matches!(h, Handled::Forward(_)), "{out}");
        let retry = |id: &str| {
            peer_invite(id)
                .replace("CSeq: 1 INVITE", "CSeq: 2 INVITE")
                .replace(&format!("z9hG4bK-{id}"), &format!("z9hG4bK-{id}-2"))
        };
        let (h, out, _) = run(false, true, &retry("r4"));
        assert!(matches!(h, Handled::Forward(_)), "{out}");
        let (h, out, _) = run(false, true, &retry("r5"));
        assert!(matches!(h, Handled::Shed(_)), "{out}");
    }

    /// What the core sends towards a trunk's peer: a call it offers the peer is
    /// record-routed as the peer's calls are (QA 89 F1: the peer's BYE went around the
    /// gateway), our Record-Route before our Via so that the Vias stay together (F6);
    /// a request routed to sipfence itself is answered 482, not sent to its own socket
    /// (F2: it came back as a stranger's refused call); RFC 3261 16.3's checks hold
    /// for the core's requests too (F4).
    #[test]
    fn the_cores_requests_towards_a_peer() {
        let p = Policy::from_str(POLICY, "t.toml", std::path::Path::new(".")).unwrap();
        let core = "10.0.0.5:5060";
        let invite = |ruri: &str, extra: &str| {
            format!(
                "INVITE {ruri} SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bK-c1\r\nRoute: <sip:192.0.2.10:5060;lr>\r\nFrom: <sip:+8613912345678@10.0.0.5>;tag=c\r\nTo: <{ruri}>\r\nCall-ID: out-1\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\n{extra}Content-Length: 0\r\n\r\n"
            )
        };
        let (h, out, seen) = run_observed(&p, core, &invite("sip:+8613812345678@198.51.100.7", ""));
        assert_eq!(
            h,
            Handled::Forward(Dest::Udp("198.51.100.7:5060".parse().unwrap()))
        );
        assert!(seen.is_empty());
        // The peer reaches us where it sends its calls (first), the core where it sent
        // this one (second).
        let rr = out
            .find("\r\nRecord-Route: <sip:10.0.0.1:5060;lr>, <sip:192.0.2.10:5060;lr>\r\nVia: SIP/2.0/UDP 10.0.0.1:5060;")
            .unwrap_or_else(|| panic!("{out}"));
        let theirs = out
            .find("\r\nVia: SIP/2.0/UDP 10.0.0.5:5060")
            .unwrap_or_default();
        assert!(rr < theirs, "{out}");
        assert!(!out.contains("Route: <sip:192.0.2.10"), "{out}");
        // A peer's call: the same order (the Vias together).
        let call = "INVITE sip:+8613912345678@192.0.2.10 SIP/2.0\r\nVia: SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bK-p1\r\nFrom: <sip:+8613812345678@198.51.100.7>;tag=a\r\nTo: <sip:+8613912345678@192.0.2.10>\r\nCall-ID: in-1\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n";
        let (_, out, _) = run_observed(&p, "198.51.100.7:5060", call);
        assert!(
            out.contains("\r\nRecord-Route: <sip:10.0.0.1:5060;lr>, <sip:192.0.2.10:5060;lr>\r\nVia: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKsf"),
            "{out}"
        );
        let ours = out.find("Via: SIP/2.0/UDP 10.0.0.1").unwrap_or_default();
        let next = out[ours..].find("\r\n").map_or(0, |e| ours + e + 2);
        assert!(
            out[next..].starts_with("Via: SIP/2.0/UDP 198.51.100.7"),
            "{out}"
        );
        // Two trunks claiming the peer on two ports: the one the core sent the call
        // to says (QA 90 N5: the first in the file did).
        let two = Policy::from_str(
            &format!(
                "{}\n[[trunk]]\nname = \"ic2\"\nrole = \"interconnect\"\nlisten = [\"udp:192.0.2.10:5070\"]\nsources = [\"198.51.100.0/24\"]\nnext_hop = \"udp:10.0.0.5:5060\"\nrecord_route = true\n",
                POLICY.replace("record_route = true", "record_route = false")
            ),
            "t.toml",
            std::path::Path::new("."),
        )
        .unwrap();
        let two_rr = Policy::from_str(
            &format!(
                "{POLICY}\n[[trunk]]\nname = \"ic2\"\nrole = \"interconnect\"\nlisten = [\"udp:192.0.2.10:5070\"]\nsources = [\"198.51.100.0/24\"]\nnext_hop = \"udp:10.0.0.5:5060\"\n"
            ),
            "t.toml",
            std::path::Path::new("."),
        )
        .unwrap();
        let offer = invite("sip:+8613812345678@198.51.100.7", "")
            .replace("<sip:192.0.2.10:5060;lr>", "<sip:192.0.2.10:5070;lr>");
        for (p, to, rr) in [
            (&two, "192.0.2.10:5070", true),
            (&two, "192.0.2.10:5060", false),
            (&two_rr, "192.0.2.10:5070", false),
            (&two_rr, "192.0.2.10:5060", true),
        ] {
            let (h, out, _) = run_observed_at(p, core, to, &offer);
            assert!(matches!(h, Handled::Forward(_)), "{out}");
            assert_eq!(out.contains("Record-Route"), rr, "{to}: {out}");
        }
        // Not a call of a trunk's (an address no trunk claims): no Record-Route.
        let (h, out, _) = run_observed(&p, core, &invite("sip:+8613812345678@203.0.113.9", ""));
        assert!(matches!(h, Handled::Forward(_)), "{out}");
        assert!(!out.contains("Record-Route"), "{out}");
        // Routed to sipfence itself (its address as the target, mapped IPv4 too).
        for ruri in [
            "sip:+8613812345678@192.0.2.10:5060",
            "sip:+8613812345678@[::ffff:10.0.0.1]",
        ] {
            let (h, out, seen) = run_observed(&p, core, &invite(ruri, ""));
            assert!(matches!(h, Handled::Respond(_, 482)), "{ruri}: {out}");
            assert_eq!(seen, [482]);
        }
        // A Proxy-Require sipfence does not accept, in a request of the core's.
        let (h, out, seen) = run_observed(
            &p,
            core,
            &invite("sip:+8613812345678@198.51.100.7", "Proxy-Require: foo\r\n"),
        );
        assert!(matches!(h, Handled::Respond(_, 420)), "{out}");
        assert!(out.contains("\r\nUnsupported: foo\r\n"), "{out}");
        assert_eq!(seen, [420]);
        // A ping of the core's with a Require: 420, as a UAS answers (a trunk's too).
        let ping = "OPTIONS sip:192.0.2.10 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bK-o\r\nFrom: <sip:core@10.0.0.5>;tag=1\r\nTo: <sip:192.0.2.10>\r\nCall-ID: opt\r\nCSeq: 1 OPTIONS\r\nRequire: foo, bar\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n";
        let (h, out, seen) = run_observed(&p, core, ping);
        assert!(matches!(h, Handled::Respond(_, 420)), "{out}");
        assert!(out.contains("\r\nUnsupported: foo, bar\r\n"), "{out}");
        assert_eq!(seen, [420]);
    }

    /// The core's OPTIONS to sipfence itself are answered 200, as a trunk's are: a core
    /// pinging its gateway (Kamailio's dispatcher, an SBC's session-agent ping) got
    /// sipfence's own 482, the ping relayed to itself, and took the gateway for down.
    /// One naming another address goes on.
    #[test]
    fn the_cores_pings_are_answered() {
        let p = Policy::from_str(POLICY, "t.toml", std::path::Path::new(".")).unwrap();
        let options = |ruri: &str, to_tag: &str, mf: u8| {
            format!(
                "OPTIONS {ruri} SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bK-o\r\nFrom: <sip:core@10.0.0.5>;tag=1\r\nTo: <{ruri}>{to_tag}\r\nCall-ID: opt\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: {mf}\r\nContent-Length: 0\r\n\r\n"
            )
        };
        let core = "10.0.0.5:5060";
        for ruri in [
            "sip:192.0.2.10:5060",
            "sip:192.0.2.10",
            "sip:ping@192.0.2.10:5060",
            "sip:10.0.0.1",
            "sips:gw.example.net",
        ] {
            for mf in [70, 0] {
                let (h, out, seen) = run_observed(&p, core, &options(ruri, "", mf));
                assert!(matches!(h, Handled::Respond(_, 200)), "{ruri}: {out}");
                assert!(out.contains("\r\nAllow: INVITE, "), "{out}");
                assert!(seen.is_empty());
            }
        }
        for ruri in [
            "sip:198.51.100.7:5060",
            "sip:192.0.2.10:5070",
            "sip:ping@198.51.100.7",
        ] {
            let (h, out, _) = run_observed(&p, core, &options(ruri, "", 70));
            assert!(matches!(h, Handled::Forward(_)), "{ruri}: {out}");
        }
        // From the core's host on another port (its dispatcher's socket) too.
        let (h, out, _) = run_observed(&p, "10.0.0.5:41234", &options("sip:192.0.2.10", "", 70));
        assert!(matches!(h, Handled::Respond(_, 200)), "{out}");
        // In a dialog it is the core's request towards the peer, not a ping of ours.
        let (h, out, _) = run_observed(&p, core, &options("sip:192.0.2.10", ";tag=9", 70));
        assert!(!matches!(h, Handled::Respond(_, 200)), "{out}");
    }

    /// Under `unknown-source = drop`, every ACK from a stranger is that drop, well-formed
    /// or broken, with hops left or none (QA 41: `no-trunk`, `bad-ack`); a trunk's
    /// broken ACK stays `bad-ack`.
    #[test]
    fn a_strangers_acks_are_the_unknown_source_drop() {
        let p = Policy::from_str(
            &format!("{POLICY}[rules.unknown-source]\naction = \"drop\"\n"),
            "t.toml",
            std::path::Path::new("."),
        )
        .unwrap();
        let ack = |extra: &str, call_id: &str| {
            format!(
                "ACK sip:+8613912345678@192.0.2.10 SIP/2.0\r\nVia: SIP/2.0/UDP 203.0.113.9:5060;branch=z9hG4bK-a\r\nFrom: <sip:a@203.0.113.9>;tag=1\r\nTo: <sip:b@192.0.2.10>;tag=2\r\n{call_id}CSeq: 1 ACK\r\n{extra}Content-Length: 0\r\n\r\n"
            )
        };
        let good = "Call-ID: a1\r\n";
        for (m, why) in [
            (ack("Max-Forwards: 70\r\n", good), "well-formed"),
            (ack("Max-Forwards: 0\r\n", good), "no hops"),
            (ack("Max-Forwards: 70\r\n", ""), "no Call-ID"),
        ] {
            let (h, _) = run(&p, "203.0.113.9:5060", &m);
            assert!(matches!(h, Handled::Dropped("unknown-source")), "{why}");
        }
        let (h, _) = run(&p, "198.51.100.7:5060", &ack("Max-Forwards: 70\r\n", ""));
        assert!(matches!(h, Handled::Dropped("bad-ack")));
    }

    fn with_body(head: &str, body_len: usize) -> String {
        format!(
            "{head}Content-Type: text/plain\r\nContent-Length: {body_len}\r\n\r\n{}",
            "x".repeat(body_len)
        )
    }

    /// RFC 3261 18.1.1: with `udp_mtu` set, a request over it goes to the same next hop
    /// over TCP, our Via saying so; without it, only a request no datagram can hold is
    /// refused (513), to the sender, instead of failing to send.
    #[test]
    fn requests_too_large_for_udp_go_over_tcp_or_get_513() {
        let invite = "INVITE sip:+8613912345678@192.0.2.10 SIP/2.0\r\nVia: SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bK-big\r\nFrom: <sip:+8613812345678@198.51.100.7>;tag=a\r\nTo: <sip:+8613912345678@192.0.2.10>\r\nCall-ID: big-1\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\n";
        let next: SocketAddr = "10.0.0.5:5060".parse().unwrap();
        let p = Policy::from_str(
            &format!("[proxy]\nudp_mtu = 1300\n{POLICY}"),
            "t.toml",
            std::path::Path::new("."),
        )
        .unwrap();
        let (h, out) = run(&p, "198.51.100.7:5060", &with_body(invite, 1200));
        assert_eq!(h, Handled::Forward(Dest::TcpTo(next)));
        assert!(out.starts_with("INVITE "), "{out}");
        assert!(
            out.contains("\r\nVia: SIP/2.0/TCP 10.0.0.1:5060;branch="),
            "{out}"
        );
        assert!(!out.contains("SIP/2.0/UDP 10.0.0.1"), "{out}");
        // The Record-Route names TCP too, for the core's in-dialog requests.
        assert!(
            out.contains("Record-Route: <sip:10.0.0.1:5060;lr;transport=tcp>"),
            "{out}"
        );
        let (h, out) = run(&p, "198.51.100.7:5060", &with_body(invite, 200));
        assert_eq!(h, Handled::Forward(Dest::Udp(next)));
        assert!(
            out.contains("\r\nVia: SIP/2.0/UDP 10.0.0.1:5060;branch="),
            "{out}"
        );
        // From the core: an in-dialog request to a UDP target, over the MTU.
        let bye = "BYE sip:+8613812345678@198.51.100.7 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bK-3\r\nRoute: <sip:10.0.0.1:5060;lr>, <sip:192.0.2.10:5060;lr>\r\nFrom: <sip:+8613912345678@192.0.2.10>;tag=b\r\nTo: <sip:+8613812345678@198.51.100.7>;tag=a\r\nCall-ID: big-1\r\nCSeq: 1 BYE\r\nMax-Forwards: 70\r\n";
        let (h, out) = run(&p, "10.0.0.5:5060", &with_body(bye, 1500));
        assert_eq!(
            h,
            Handled::Forward(Dest::TcpTo("198.51.100.7:5060".parse().unwrap()))
        );
        assert!(
            out.contains("\r\nVia: SIP/2.0/TCP 10.0.0.1:5060;branch="),
            "{out}"
        );
        assert!(!out.contains("Route: <sip:10.0.0.1:5060;lr>"), "{out}");

        // QA 30: a datagram needs no Content-Length, a stream does (RFC 3261 18.3). One
        // that came without, switched to TCP, leaves with the length of the body it
        // forwards, with CRLF or LF line ends; one under the MTU stays as it came.
        let framed = |m: &str| {
            let Ok(crate::sip::parse::Frame::Message { skip: 0, len }) =
                crate::sip::frame_stream(m.as_bytes())
            else {
                panic!("not framed: {m}");
            };
            assert_eq!(len, m.len(), "{m}");
            let parsed = Message::parse(Bytes::from(m.to_string())).unwrap();
            assert_eq!(parsed.max_forwards(), Some(69), "{m}");
            parsed.body().len()
        };
        for (head, nl) in [
            (invite.to_string(), "\r\n"),
            (invite.replace("\r\n", "\n"), "\n"),
        ] {
            let bare =
                |n: usize| format!("{head}Content-Type: text/plain{nl}{nl}{}", "y".repeat(n));
            let (h, out) = run(&p, "198.51.100.7:5060", &bare(1400));
            assert_eq!(h, Handled::Forward(Dest::TcpTo(next)));
            assert_eq!(framed(&out), 1400);
            // Bare LFs go on as CRLFs.
            assert!(out.contains("Content-Length: 1400\r\n\r\n"), "{out}");
            let (h, out) = run(&p, "198.51.100.7:5060", &bare(100));
            assert_eq!(h, Handled::Forward(Dest::Udp(next)));
            assert!(!out.contains("Content-Length"), "{out}");
        }
        let bare_bye = format!("{bye}\r\n{}", "z".repeat(1500));
        let (h, out) = run(&p, "10.0.0.5:5060", &bare_bye);
        assert!(matches!(h, Handled::Forward(Dest::TcpTo(_))), "{h:?}");
        assert_eq!(framed(&out), 1500);
        // QA 138: a folded Content-Length (RFC 3261 7.3.1) goes on unfolded, or a next
        // hop that frames its stream by a quick look for it refuses it and closes the
        // connection every call shares; folded before its value or after, with CRLF or
        // LF line ends, in full or compact form.
        for (head, nl) in [
            (invite.to_string(), "\r\n"),
            (invite.replace("\r\n", "\n"), "\n"),
        ] {
            for field in [
                format!("Content-Length:{nl} 5"),
                format!("l: 5{nl}\t"),
                format!("Content-Length:{nl}\t 5 {nl}  "),
            ] {
                let m = format!("{head}Content-Type: text/plain{nl}{field}{nl}{nl}hello");
                let (h, out) = run(&p, "198.51.100.7:5060", &m);
                assert_eq!(h, Handled::Forward(Dest::Udp(next)), "{m}");
                assert!(out.contains("\r\nContent-Length: 5\r\n\r\nhello"), "{out}");
                assert_eq!(framed(&out), 5);
            }
        }

        // No udp_mtu: UDP up to the largest datagram, 513 beyond it.
        let p = Policy::from_str(POLICY, "t.toml", std::path::Path::new(".")).unwrap();
        let (h, _) = run(&p, "198.51.100.7:5060", &with_body(invite, 60_000));
        assert_eq!(h, Handled::Forward(Dest::Udp(next)));
        let big = with_body(invite, 65_200);
        assert!(big.len() <= crate::sip::MAX_MESSAGE && big.len() > 65_000);
        let (h, out) = run(&p, "198.51.100.7:5060", &big);
        assert!(matches!(h, Handled::Respond(_, 513)), "{h:?}");
        assert!(
            out.starts_with("SIP/2.0 513 Message Too Large\r\n"),
            "{out}"
        );
        assert!(out.contains("Call-ID: big-1\r\n"));
        // Reported as what its caller got (QA 44, 45): a refusal of no policy rule.
        let o = Origin {
            source: "198.51.100.7:5060".parse().unwrap(),
            local: ListenSpec {
                transport: Transport::Udp,
                addr: "192.0.2.10:5060".parse().unwrap(),
            },
            conn: None,
        };
        let mut seen = None;
        let (mut out, mut edits) = (Vec::new(), EditList::new());
        let h = handle(
            &step(&p),
            Bytes::from(big),
            &mut Message::empty(),
            &o,
            &mut out,
            &mut edits,
            &mut |ob| {
                if let Observed::Decision(_, d) = ob {
                    seen = Some((d.verdict_str(), d.rule, d.refusal.map(|r| r.code)));
                }
            },
        )
        .unwrap();
        assert!(matches!(h, Handled::Respond(_, 513)), "{h:?}");
        assert_eq!(seen, Some(("reject", None, Some(513))));
    }

    /// A request our edits take past the largest message a stream takes (the CRLFs of
    /// a head in bare LFs, our Via) is answered 513 rather than sent to a TCP next hop,
    /// which would refuse it and end the connection every call shares (QA 84 G2); an
    /// ACK is dropped. One that stays under goes on.
    #[test]
    fn a_request_grown_past_what_a_stream_takes_gets_513() {
        let p = Policy::from_str(
            &POLICY.replace("udp:10.0.0.5:5060", "tcp:10.0.0.5:5060"),
            "t.toml",
            std::path::Path::new("."),
        )
        .unwrap();
        let head = |method: &str, lines: usize| {
            format!(
                "{method} sip:+8613912345678@192.0.2.10 SIP/2.0\nVia: SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bK-g2\nFrom: <sip:+8613812345678@198.51.100.7>;tag=a\nTo: <sip:+8613912345678@192.0.2.10>\nCall-ID: g2-1\nCSeq: 1 {method}\nMax-Forwards: 70\nSubject: x{}\nContent-Length: 0\n\n",
                "\n y".repeat(lines)
            )
        };
        // Some 52,800 bytes in bare LFs: some 70,300 in CRLFs.
        let big = head("INVITE", 17_500);
        assert!(big.len() < crate::sip::MAX_MESSAGE, "{}", big.len());
        let (h, out) = run(&p, "198.51.100.7:5060", &big);
        assert!(matches!(h, Handled::Respond(_, 513)), "{h:?}");
        assert!(out.contains("Too large for the next hop"), "{out}");
        let (h, _) = run(&p, "198.51.100.7:5060", &head("ACK", 17_500));
        assert_eq!(h, Handled::Dropped("too-large-for-tcp"));
        let (h, out) = run(&p, "198.51.100.7:5060", &head("INVITE", 10_000));
        assert!(matches!(h, Handled::Forward(Dest::TcpTo(_))), "{h:?}");
        assert!(out.len() < crate::sip::MAX_MESSAGE, "{}", out.len());
        // At the bound exactly: with its own Content-Length, what goes on may be 65,535
        // bytes (QA 85: 23 bytes under it were refused, room kept for a length it had);
        // without one, the length the stream adds counts.
        let crlf = |pad: usize, length: bool| {
            let h = head("INVITE", 0).replace('\n', "\r\n");
            let h = h.replace("Subject: x", &format!("Subject: x{}", "y".repeat(pad)));
            if length {
                h
            } else {
                h.replace("Content-Length: 0\r\n", "")
            }
        };
        for length in [true, false] {
            let (_, small) = run(&p, "198.51.100.7:5060", &crlf(0, length));
            let grown = small.len() - crlf(0, length).len();
            let exact = crate::sip::MAX_MESSAGE - grown - crlf(0, length).len();
            let (h, out) = run(&p, "198.51.100.7:5060", &crlf(exact, length));
            if length {
                assert!(matches!(h, Handled::Forward(Dest::TcpTo(_))), "{h:?}");
                assert_eq!(out.len(), crate::sip::MAX_MESSAGE);
            } else {
                assert!(matches!(h, Handled::Respond(_, 513)), "{h:?}");
            }
            let (h, _) = run(&p, "198.51.100.7:5060", &crlf(exact + 1, length));
            assert!(matches!(h, Handled::Respond(_, 513)), "{h:?}");
        }
    }

    /// RFC 3261 16.3 step 5: a request that requires of proxies an extension sipfence
    /// does not accept gets 420 with the tags in Unsupported; accepted tags pass; ACK
    /// and CANCEL carry no requirements.
    /// A `received` the caller wrote in its own Via is replaced by its source address:
    /// the answers go back where the request came from, not to another trunk's peer
    /// (QA 80).
    #[test]
    fn a_forged_received_is_replaced_by_the_source() {
        let p = Policy::from_str(POLICY, "t.toml", std::path::Path::new(".")).unwrap();
        let invite = |via: &str| {
            format!(
                "INVITE sip:+8613912345678@192.0.2.10 SIP/2.0\r\nVia: SIP/2.0/UDP {via};branch=z9hG4bK-fr\r\nFrom: <sip:+8613812345678@198.51.100.7>;tag=a\r\nTo: <sip:+8613912345678@192.0.2.10>\r\nCall-ID: fr-1\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
            )
        };
        for (via, forwarded) in [
            (
                "198.51.100.7:5060;rport;received=198.51.100.9",
                "198.51.100.7:5060;rport=5060;received=198.51.100.7;branch",
            ),
            (
                "198.51.100.7:5060;received=10.9.9.9;rport",
                "198.51.100.7:5060;received=198.51.100.7;rport=5060;branch",
            ),
            // Its own address, as it is: kept.
            (
                "198.51.100.7:5060;received=198.51.100.7",
                "198.51.100.7:5060;received=198.51.100.7;branch",
            ),
            // A port of its own in `rport`: the source port (QA 96), kept when it is.
            (
                "198.51.100.7:5060;received=198.51.100.7;rport = 5070",
                "198.51.100.7:5060;received=198.51.100.7;rport = 5060;branch",
            ),
            (
                "198.51.100.7:5060;RPORT=5060",
                "198.51.100.7:5060;RPORT=5060;branch=z9hG4bK-fr;received=198.51.100.7",
            ),
            // Its own address in brackets, which RFC 3261's grammar has not: written
            // as the grammar has it (QA 174 F1).
            (
                "198.51.100.7:5060;received=[198.51.100.7]",
                "198.51.100.7:5060;received=198.51.100.7;branch",
            ),
        ] {
            let (h, out) = run(&p, "198.51.100.7:5060", &invite(via));
            assert!(matches!(h, Handled::Forward(_)), "{out}");
            assert!(out.contains(forwarded), "{via}:\n{out}");
        }
    }

    /// An out-of-dialog MESSAGE is answered as a call would be when the caller rules
    /// refuse its sender, and forwarded when they let it by (QA 173 F2).
    #[test]
    fn a_message_is_answered_as_its_sender_is_judged() {
        let p = Policy::from_str(POLICY, "t.toml", std::path::Path::new(".")).unwrap();
        let message = |from: &str| {
            format!(
                "MESSAGE sip:+8613912345678@192.0.2.10 SIP/2.0\r\nVia: SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bK-msg\r\nFrom: <sip:{from}@198.51.100.7>;tag=a\r\nTo: <sip:+8613912345678@192.0.2.10>\r\nCall-ID: msg-1\r\nCSeq: 1 MESSAGE\r\nMax-Forwards: 70\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nhi"
            )
        };
        let (h, out) = run(&p, "198.51.100.7:5060", &message("anonymous"));
        assert!(matches!(h, Handled::Respond(_, 433)), "{out}");
        assert!(
            out.starts_with("SIP/2.0 433 ") && out.contains("CSeq: 1 MESSAGE"),
            "{out}"
        );
        let (h, out) = run(&p, "198.51.100.7:5060", &message("+8613812345678"));
        assert!(matches!(h, Handled::Forward(_)), "{out}");
        assert!(out.starts_with("MESSAGE "), "{out}");
    }

    /// Our branch is the caller's branch and sent-by, and the host it came from: two
    /// callers writing the same Via (behind NATs, a weak branch generator) are two
    /// transactions at the core (QA 174 F6); one caller's retransmission or CANCEL,
    /// from another port of its host too, is the same one.
    #[test]
    fn the_branch_tells_callers_apart_by_their_host() {
        let p = Policy::from_str(POLICY, "t.toml", std::path::Path::new(".")).unwrap();
        let branch = |from: &str, method: &str| {
            let text = format!(
                "{method} sip:+8613912345678@192.0.2.10 SIP/2.0\r\nVia: SIP/2.0/UDP 192.168.1.2:5060;branch=z9hG4bK-1\r\nFrom: <sip:+8613812345678@198.51.100.7>;tag=a\r\nTo: <sip:+8613912345678@192.0.2.10>\r\nCall-ID: br-1\r\nCSeq: 1 {method}\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
            );
            let (h, out) = run(&p, from, &text);
            assert!(matches!(h, Handled::Forward(_)), "{out}");
            let at = out.find(";branch=").unwrap() + 8;
            out[at..at + 25].to_string()
        };
        let one = branch("198.51.100.7:5060", "INVITE");
        assert!(one.starts_with("z9hG4bKsf"), "{one}");
        assert_eq!(one, branch("198.51.100.7:5062", "INVITE"));
        assert_eq!(one, branch("198.51.100.7:5062", "CANCEL"));
        assert_ne!(one, branch("198.51.100.8:5060", "INVITE"));
    }

    /// A request without Max-Forwards is forwarded with 70, after its own fields, so
    /// that the Via rows stay together (QA 30).
    #[test]
    fn a_missing_max_forwards_is_added_last() {
        let p = Policy::from_str(POLICY, "t.toml", std::path::Path::new(".")).unwrap();
        let invite = "INVITE sip:+8613912345678@192.0.2.10 SIP/2.0\r\nVia: SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bK-mf\r\nFrom: <sip:+8613812345678@198.51.100.7>;tag=a\r\nTo: <sip:+8613912345678@192.0.2.10>\r\nCall-ID: mf-1\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n";
        let (h, out) = run(&p, "198.51.100.7:5060", invite);
        assert!(matches!(h, Handled::Forward(_)), "{out}");
        assert!(
            out.ends_with("Content-Length: 0\r\nMax-Forwards: 70\r\n\r\n"),
            "{out}"
        );
        let vias: Vec<usize> = out.match_indices("\r\nVia: ").map(|(i, _)| i).collect();
        assert_eq!(vias.len(), 2, "{out}");
        assert!(!out[vias[0]..vias[1]].contains("Max-Forwards"), "{out}");
    }

    /// A head in bare LFs goes on in CRLFs, the request to the core and the response
    /// back, its body (which holds a CRLF pair here) as it came: a core that frames its
    /// TCP stream on CRLFCRLF alone would otherwise read a second request out of the
    /// body, one no rule judged (QA 83 F2).
    #[test]
    fn a_head_in_bare_lfs_goes_on_in_crlfs() {
        let p = Policy::from_str(POLICY, "t.toml", std::path::Path::new(".")).unwrap();
        let body = "x\r\n\r\nINVITE sip:smuggled SIP/2.0\r\n";
        let invite = format!(
            "INVITE sip:+8613912345678@192.0.2.10 SIP/2.0\nVia: SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bK-lf\nFrom: <sip:+8613812345678@198.51.100.7>;tag=a\nTo: <sip:+8613912345678@192.0.2.10>\nCall-ID: lf-1\nCSeq: 1 INVITE\nMax-Forwards: 70\nContent-Type: text/plain\nContent-Length: {}\n\n{body}",
            body.len()
        );
        let (h, out) = run(&p, "198.51.100.7:5060", &invite);
        assert!(matches!(h, Handled::Forward(_)), "{out}");
        let head_end = out.find("\r\n\r\n").unwrap() + 4;
        assert!(!out[..head_end].replace("\r\n", "").contains('\n'), "{out}");
        assert_eq!(&out[head_end..], body, "{out}");
        assert!(out.contains("\r\nCall-ID: lf-1\r\n"), "{out}");
        // The core's answer, in bare LFs too, goes back in CRLFs.
        let via = out
            .lines()
            .find(|l| l.starts_with("Via: "))
            .unwrap()
            .trim_end();
        let ok = format!(
            "SIP/2.0 200 OK\n{via}\nVia: SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bK-lf\nFrom: <sip:+8613812345678@198.51.100.7>;tag=a\nTo: <sip:+8613912345678@192.0.2.10>;tag=b\nCall-ID: lf-1\nCSeq: 1 INVITE\nContent-Length: 0\n\n"
        );
        let (h, out) = run(&p, "10.0.0.5:5060", &ok);
        assert!(matches!(h, Handled::Forward(_)), "{out}");
        assert!(
            out.starts_with(
                "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bK-lf\r\n"
            ) && out.ends_with("\r\nContent-Length: 0\r\n\r\n"),
            "{out}"
        );
        assert!(!out.replace("\r\n", "").contains('\n'), "{out}");
    }

    /// A response from the core to a caller that came over TCP goes back on its
    /// connection (`sfc` in our Via) with a Content-Length, which a datagram need not
    /// carry (QA 30).
    #[test]
    fn responses_to_a_connection_are_framed() {
        let p = Policy::from_str(POLICY, "t.toml", std::path::Path::new(".")).unwrap();
        let ok = "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKsf0123456789abcdef;sfc=7\r\nVia: SIP/2.0/TCP 198.51.100.7:5060;branch=z9hG4bK-t\r\nFrom: <sip:+8613812345678@198.51.100.7>;tag=a\r\nTo: <sip:+8613912345678@192.0.2.10>;tag=b\r\nCall-ID: t-1\r\nCSeq: 1 INVITE\r\nContent-Type: application/sdp\r\n\r\nv=0\r\n";
        let (h, out) = run(&p, "10.0.0.5:5060", ok);
        // Its connection, or, should that have closed, a new one to its Via's address.
        let back = "198.51.100.7:5060".parse().unwrap();
        assert_eq!(h, Handled::Forward(Dest::TcpBack(7, back)));
        assert!(out.ends_with("Content-Length: 5\r\n\r\nv=0\r\n"), "{out}");
        // Only to an address a trunk claims: another goes back on the connection only.
        let (h, _) = run(
            &p,
            "10.0.0.5:5060",
            &ok.replace("TCP 198.51.100.7", "TCP 203.0.113.99"),
        );
        assert_eq!(h, Handled::Forward(Dest::Tcp(7)));
        assert!(!out.contains("sfc=7"), "{out}");
        // With a length, as it came.
        let with = ok.replace("\r\n\r\nv=0", "\r\nContent-Length: 5\r\n\r\nv=0");
        let (_, out) = run(&p, "10.0.0.5:5060", &with);
        assert_eq!(out.matches("Content-Length").count(), 1, "{out}");
    }

    /// RFC 3261 16.4 (QA 120): a strict router before us put our Record-Route in the
    /// Request-URI and the remote target last in Route; the request goes on with that
    /// target as its Request-URI, from either side. A number at our address, or a URI
    /// without `lr`, is no strict router's, and stays as it came.
    #[test]
    fn a_strict_routers_request_gets_its_request_uri_back() {
        let p = Policy::from_str(POLICY, "t.toml", std::path::Path::new(".")).unwrap();
        let bye = |ruri: &str, route: &str| {
            format!(
                "BYE {ruri} SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bK-sr\r\n{route}From: <sip:+8613912345678@10.0.0.5>;tag=b\r\nTo: <sip:+8613812345678@198.51.100.7>;tag=a\r\nCall-ID: sr-1\r\nCSeq: 2 BYE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
            )
        };
        let peer = "sip:+8613812345678@198.51.100.7:5062";
        let ours = "sip:192.0.2.10:5060;lr";
        for route in [
            format!("Route: <{peer}>\r\n"),
            format!("Route: <sip:10.0.0.1:5060;lr>, <{peer}>\r\n"),
            format!("Route: <sip:10.0.0.1:5060;lr>\r\nRoute: <{peer}>\r\n"),
        ] {
            let (h, out) = run(&p, "10.0.0.5:5060", &bye(ours, &route));
            let to = "198.51.100.7:5062".parse().unwrap();
            assert_eq!(h, Handled::Forward(Dest::Udp(to)), "{route}");
            assert!(out.starts_with(&format!("BYE {peer} SIP/2.0\r\n")), "{out}");
            assert!(!out.contains("Route:"), "{out}");
        }
        // A Route value left after ours: the request goes there.
        let route = format!("Route: <sip:198.51.100.9;lr>, <{peer}>\r\n");
        let (h, out) = run(&p, "10.0.0.5:5060", &bye(ours, &route));
        let to = "198.51.100.9:5060".parse().unwrap();
        assert_eq!(h, Handled::Forward(Dest::Udp(to)));
        assert!(
            out.starts_with(&format!("BYE {peer} SIP/2.0\r\n"))
                && out.contains("\r\nRoute: <sip:198.51.100.9;lr>\r\n"),
            "{out}"
        );
        // From the peer, to the core.
        let from_peer = "BYE sip:192.0.2.10:5060;lr SIP/2.0\r\nVia: SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bK-sp\r\nRoute: <sip:core@10.0.0.5>\r\nFrom: <sip:+8613812345678@198.51.100.7>;tag=a\r\nTo: <sip:+8613912345678@192.0.2.10>;tag=b\r\nCall-ID: sp-1\r\nCSeq: 2 BYE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n";
        let (h, out) = run(&p, "198.51.100.7:5060", from_peer);
        let core = "10.0.0.5:5060".parse().unwrap();
        assert_eq!(h, Handled::Forward(Dest::Udp(core)));
        assert!(
            out.starts_with("BYE sip:core@10.0.0.5 SIP/2.0\r\n") && !out.contains("Route:"),
            "{out}"
        );
        // QA 142: a sips URI is never our sip one (RFC 3261 19.1.4).
        for ruri in [
            "sip:+8613912345678@192.0.2.10:5060;lr",
            "sip:192.0.2.10:5060",
            "sips:192.0.2.10:5060;lr",
        ] {
            let (_, out) = run(
                &p,
                "198.51.100.7:5060",
                &from_peer.replace("BYE sip:192.0.2.10:5060;lr ", &format!("BYE {ruri} ")),
            );
            assert!(out.starts_with(&format!("BYE {ruri} SIP/2.0\r\n")), "{out}");
            assert!(out.contains("\r\nRoute: <sip:core@10.0.0.5>\r\n"), "{out}");
        }
    }

    /// QA 142: the core's in-dialog request for another listen address of the gateway's
    /// (a peer's Contact named it) is a loop, answered 482, not sent to that socket to
    /// come back as a stranger's request or another trunk's call; a wildcard listener
    /// names no host, and a peer at its port is not the gateway.
    #[test]
    fn the_cores_request_for_another_of_our_addresses_is_a_loop() {
        let two = format!(
            "{POLICY}[[trunk]]\nname = \"other\"\nrole = \"interconnect\"\nlisten = [\"udp:192.0.2.11:5070\"]\nsources = [\"203.0.113.0/24\"]\nnext_hop = \"udp:10.0.0.5:5060\"\n"
        );
        let p = Policy::from_str(&two, "t.toml", std::path::Path::new(".")).unwrap();
        let bye = |ruri: &str| {
            format!(
                "BYE {ruri} SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bK-lp\r\nFrom: <sip:+8613912345678@10.0.0.5>;tag=b\r\nTo: <sip:+8613812345678@198.51.100.7>;tag=a\r\nCall-ID: lp-1\r\nCSeq: 2 BYE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
            )
        };
        for ours in [
            "sip:x@192.0.2.11:5070",
            "sip:x@0.0.0.0:5060",
            "sip:x@[::]:5070",
        ] {
            let (h, out) = run(&p, "10.0.0.5:5060", &bye(ours));
            assert!(matches!(h, Handled::Respond(_, 482)), "{ours}: {h:?} {out}");
        }
        let (h, _) = run(&p, "10.0.0.5:5060", &bye("sip:x@198.51.100.7:5070"));
        let peer = "198.51.100.7:5070".parse().unwrap();
        assert_eq!(h, Handled::Forward(Dest::Udp(peer)));
        let wild = two.replace("udp:192.0.2.11:5070", "udp:0.0.0.0:5070");
        let p = Policy::from_str(&wild, "t.toml", std::path::Path::new(".")).unwrap();
        let (h, _) = run(&p, "10.0.0.5:5060", &bye("sip:x@198.51.100.7:5070"));
        assert_eq!(h, Handled::Forward(Dest::Udp(peer)));
        // The wildcard listener is ours at the addresses we name ourselves by (QA 143).
        for ours in [
            "sip:x@10.0.0.1:5070",
            "sip:x@192.0.2.10:5070",
            "sip:x@0.0.0.0:5070",
        ] {
            let (h, out) = run(&p, "10.0.0.5:5060", &bye(ours));
            assert!(matches!(h, Handled::Respond(_, 482)), "{ours}: {h:?} {out}");
        }
        // A strict router's request for the peer at the wildcard port: stepped and
        // sent there, not taken for ours (QA 143: 482).
        let strict = bye("sip:192.0.2.10:5060;lr").replace(
            "\r\nFrom: ",
            "\r\nRoute: <sip:+8613812345678@198.51.100.7:5070>\r\nFrom: ",
        );
        let (h, out) = run(&p, "10.0.0.5:5060", &strict);
        assert_eq!(h, Handled::Forward(Dest::Udp(peer)), "{out}");
        assert!(
            out.starts_with("BYE sip:+8613812345678@198.51.100.7:5070 SIP/2.0\r\n"),
            "{out}"
        );
    }

    /// A broken request's answer: what the parser refused it for, and its fields copied
    /// back without the control characters that broke it (QA 54: a NUL came back).
    #[test]
    fn broken_requests_are_answered_400_with_printable_fields() {
        let src: SocketAddr = "198.51.100.7:5070".parse().unwrap();
        let req = |method: &str, from: &str| {
            format!(
                "{method} sip:+861012345678@192.0.2.10 SIP/2.0\r\nVia: SIP/2.0/UDP 198.51.100.7:5070;branch=z9hG4bK-lc;rport\r\nFrom: {from};tag=a\r\nTo: <sip:+861012345678@192.0.2.10>\r\nCall-ID: lc-1\r\nCSeq: 1 {method}\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
            )
        };
        let answer = |text: &str| {
            let e = crate::sip::Message::parse(Bytes::from(text.to_string())).unwrap_err();
            let mut out = vec![];
            let dest = bad_request_for(text.as_bytes(), src, None, &e, None, &mut out);
            (e, dest, out)
        };
        // A known method in another case: refused before any rule, never forwarded.
        let p = Policy::from_str(POLICY, "t.toml", std::path::Path::new(".")).unwrap();
        let lower = req("invite", "<sip:+8613812345678@198.51.100.7>");
        let (e, dest, out) = answer(&lower);
        assert_eq!(e.kind, crate::sip::ErrorKind::BadMethod);
        assert_eq!(dest, Some(Dest::Udp(src)));
        let out = String::from_utf8(out).unwrap();
        assert!(out.starts_with("SIP/2.0 400 Bad Request\r\n"), "{out}");
        assert!(out.contains("text=\"bad_method at byte 0\""), "{out}");
        let (h, _) = run(
            &p,
            "198.51.100.7:5070",
            &req("INVITE", "<sip:+8613812345678@198.51.100.7>"),
        );
        assert!(matches!(h, Handled::Forward(_)), "{h:?}");
        // An ACK is never answered, whatever its case.
        let (e, dest, out) = answer(&req("ack", "<sip:+8613812345678@198.51.100.7>"));
        assert_eq!(
            (e.kind, dest, out.len()),
            (crate::sip::ErrorKind::BadMethod, None, 0)
        );
        // A NUL in the display name: the From comes back with a space there.
        let (e, dest, out) = answer(&req("INVITE", "\"a\0b\" <sip:+8613812345678@198.51.100.7>"));
        assert_eq!(e.kind, crate::sip::ErrorKind::BadHeaderLine);
        assert_eq!(dest, Some(Dest::Udp(src)));
        assert!(!out.contains(&0), "{out:?}");
        let out = String::from_utf8(out).unwrap();
        assert!(out.starts_with("SIP/2.0 400 Bad Request\r\n"), "{out}");
        assert!(
            out.contains("\r\nFrom: \"a b\" <sip:+8613812345678@198.51.100.7>;tag=a\r\n"),
            "{out}"
        );
        crate::sip::Message::parse(Bytes::from(out)).expect("the 400 parses");
        // No Via that can be read (QA 139: an IPv6 address without its brackets): the
        // answer goes where the request came from, its Via as it came.
        let v6 = req("INVITE", "<sip:+8613812345678@198.51.100.7>").replace(
            "Via: SIP/2.0/UDP 198.51.100.7:5070;branch=z9hG4bK-lc;rport",
            "Via: SIP/2.0/UDP fd00::100:5070;branch=z9hG4bK-lc",
        );
        let (_, dest, out) = answer(&v6);
        assert_eq!(dest, Some(Dest::Udp(src)));
        let out = String::from_utf8(out).unwrap();
        assert!(out.starts_with("SIP/2.0 400 Bad Request\r\n"), "{out}");
        assert!(
            out.contains("\r\nVia: SIP/2.0/UDP fd00::100:5070;branch=z9hG4bK-lc\r\n"),
            "{out}"
        );
    }

    #[test]
    fn proxy_require_unknown_gets_420() {
        let req = |method: &str, pr: &str| {
            format!(
                "{method} sip:+8613912345678@192.0.2.10 SIP/2.0\r\nVia: SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bK-pr\r\nFrom: <sip:+8613812345678@198.51.100.7>;tag=a\r\nTo: <sip:+8613912345678@192.0.2.10>\r\nCall-ID: pr-1\r\nCSeq: 1 {method}\r\nMax-Forwards: 70\r\n{pr}Content-Length: 0\r\n\r\n"
            )
        };
        let p = Policy::from_str(POLICY, "t.toml", std::path::Path::new(".")).unwrap();
        let inv = req(
            "INVITE",
            "Proxy-Require: foo , Bar\r\nProxy-Require: baz\r\n",
        );
        let (h, out) = run(&p, "198.51.100.7:5060", &inv);
        assert!(matches!(h, Handled::Respond(_, 420)), "{h:?}");
        assert!(out.starts_with("SIP/2.0 420 Bad Extension\r\n"), "{out}");
        assert!(out.contains("\r\nUnsupported: foo, Bar, baz\r\n"), "{out}");
        assert!(out.ends_with("\r\n\r\n") && out.contains("Call-ID: pr-1\r\n"));
        crate::sip::Message::parse(Bytes::from(out)).expect("the 420 parses");
        // ACK and CANCEL are not refused for it; no Proxy-Require, no 420.
        for m in ["ACK", "CANCEL"] {
            let (h, _) = run(&p, "198.51.100.7:5060", &req(m, "Proxy-Require: foo\r\n"));
            assert!(matches!(h, Handled::Forward(_)), "{m}: {h:?}");
        }
        let (h, _) = run(&p, "198.51.100.7:5060", &req("INVITE", ""));
        assert!(matches!(h, Handled::Forward(_)), "{h:?}");
        // Accepted tags (any case) pass; only the others are listed.
        let p = Policy::from_str(
            &format!("[proxy]\nproxy_require_accepted = [\"FOO\", \"baz\"]\n{POLICY}"),
            "t.toml",
            std::path::Path::new("."),
        )
        .unwrap();
        let (h, out) = run(&p, "198.51.100.7:5060", &inv);
        assert!(matches!(h, Handled::Respond(_, 420)), "{h:?}");
        assert!(out.contains("\r\nUnsupported: Bar\r\n"), "{out}");
        let (h, _) = run(
            &p,
            "198.51.100.7:5060",
            &req("INVITE", "Proxy-Require: foo, baz\r\n"),
        );
        assert!(matches!(h, Handled::Forward(_)), "{h:?}");
    }

    /// The OPTIONS that probes a next hop is a request any SIP stack reads, and its
    /// answer from the next hop is taken here (reported, not relayed); from anyone else
    /// it is no answer. A next hop marked silent gets no new call: the caller has 503
    /// at once, with Retry-After; the calls up go on.
    #[test]
    fn probes_of_a_next_hop_and_its_silence() {
        let p = Policy::from_str(POLICY, "t.toml", std::path::Path::new(".")).unwrap();
        let (core, via): (SocketAddr, SocketAddr) = (
            "10.0.0.5:5060".parse().unwrap(),
            "10.0.0.1:5060".parse().unwrap(),
        );
        let mut out = vec![];
        probe_request(core, Transport::Udp, via, 7, &mut out);
        let probe = Message::parse(Bytes::from(out)).expect("a probe parses");
        assert_eq!(probe.method(), Some(Method::Options));
        assert_eq!(probe.max_forwards(), Some(0));
        let answer = |code: u16| {
            let v = String::from_utf8_lossy(probe.value(HeaderName::Via).unwrap()).to_string();
            format!(
                "SIP/2.0 {code} X\r\nVia: {v};received=10.0.0.1\r\nFrom: <sip:sipfence@10.0.0.1:5060>;tag=sfprobe\r\nTo: <sip:10.0.0.5:5060>;tag=c\r\nCall-ID: sfprobe-7\r\nCSeq: 8 OPTIONS\r\nContent-Length: 0\r\n\r\n"
            )
        };
        let seen = |from: &str, text: &str| {
            let st = step(&p);
            let o = Origin {
                source: from.parse().unwrap(),
                local: ListenSpec {
                    transport: Transport::Udp,
                    addr: "192.0.2.10:5060".parse().unwrap(),
                },
                conn: None,
            };
            let mut answered = vec![];
            let h = handle(
                &st,
                Bytes::from(text.to_string()),
                &mut Message::empty(),
                &o,
                &mut vec![],
                &mut EditList::new(),
                &mut |ob| {
                    if let Observed::ProbeAnswer(a) = ob {
                        answered.push(a);
                    }
                },
            )
            .unwrap();
            (h, answered)
        };
        for code in [200, 483, 404] {
            assert_eq!(
                seen("10.0.0.5:5060", &answer(code)),
                (Handled::Absorbed, vec![core])
            );
        }
        let (h, answered) = seen("198.51.100.7:5060", &answer(200));
        assert!(answered.is_empty() && h != Handled::Absorbed, "{h:?}");
        // Silent: a new call is refused, a BYE goes on.
        let st = Step {
            next_hops: &Silent,
            ..step(&p)
        };
        let invite = "INVITE sip:+8613912345678@192.0.2.10 SIP/2.0\r\nVia: SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bK-s1\r\nFrom: <sip:+8613812345678@198.51.100.7>;tag=a\r\nTo: <sip:+8613912345678@192.0.2.10>\r\nCall-ID: silent-1\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n";
        let (h, out, _) = run_on(&st, "198.51.100.7:5060", "192.0.2.10:5060", invite);
        assert!(matches!(h, Handled::Respond(_, 503)), "{h:?}");
        assert!(
            out.contains("Retry-After: 5\r\n") && out.contains("Next hop not answering"),
            "{out}"
        );
        // Not judged (no rate, behaviour or call place spent, QA 60): a caller the rules
        // would refuse gets the same 503.
        let broken = invite.replace("<sip:+8613812345678@", "<sip:+86123@");
        let (h, _, _) = run_on(&st, "198.51.100.7:5060", "192.0.2.10:5060", &broken);
        assert!(matches!(h, Handled::Respond(_, 503)), "{h:?}");
        let (h, _, _) = run_on(&step(&p), "198.51.100.7:5060", "192.0.2.10:5060", &broken);
        assert!(
            !matches!(h, Handled::Respond(_, 503) | Handled::Forward(_)),
            "{h:?}"
        );
        let bye = invite
            .replace("INVITE sip", "BYE sip")
            .replace("1 INVITE", "2 BYE")
            .replace("192.0.2.10>\r\n", "192.0.2.10>;tag=b\r\n");
        let (h, _, _) = run_on(&st, "198.51.100.7:5060", "192.0.2.10:5060", &bye);
        assert_eq!(h, Handled::Forward(Dest::Udp(core)));
        // A TCP next hop is probed over its connection, and refused the same way when
        // it hangs with the connection open (QA 127 N6: its calls went on into it).
        let mut out = vec![];
        probe_request(core, Transport::Tcp, via, 8, &mut out);
        let probe = Message::parse(Bytes::from(out)).expect("a TCP probe parses");
        let text = String::from_utf8_lossy(probe.buf()).to_string();
        assert!(
            text.starts_with("OPTIONS sip:10.0.0.5:5060;transport=tcp SIP/2.0\r\nVia: SIP/2.0/TCP 10.0.0.1:5060;branch=z9hG4bKsfprobe8;"),
            "{text}"
        );
        assert!(is_probe(&probe));
        let tcp = POLICY.replace("udp:10.0.0.5:5060", "tcp:10.0.0.5:5060");
        let p = Policy::from_str(&tcp, "t.toml", std::path::Path::new(".")).unwrap();
        let st = Step {
            next_hops: &Silent,
            ..step(&p)
        };
        let (h, out, _) = run_on(&st, "198.51.100.7:5060", "192.0.2.10:5060", invite);
        assert!(matches!(h, Handled::Respond(_, 503)), "{h:?}");
        assert!(out.contains("Next hop not answering"), "{out}");
        let (h, _, _) = run_on(&step(&p), "198.51.100.7:5060", "192.0.2.10:5060", invite);
        assert_eq!(h, Handled::Forward(Dest::TcpTo(core)));
        let (h, _, _) = run_on(&st, "198.51.100.7:5060", "192.0.2.10:5060", &bye);
        assert_eq!(h, Handled::Forward(Dest::TcpTo(core)));
    }

    /// A PBX that registers to the core through the gateway leaves it in the Path (RFC
    /// 3327) on a `register_path` trunk, with its flow when it is behind a NAT: the
    /// core's call to it comes back by that Route and goes to where the REGISTER came
    /// from, record-routed. A Path the peer wrote loses any flow in it, as a
    /// Record-Route does.
    #[test]
    fn a_registering_pbx_is_called_by_its_path() {
        let with = |extra: &str| {
            Policy::from_str(
                &format!("{POLICY}{extra}"),
                "t.toml",
                std::path::Path::new("."),
            )
            .unwrap()
        };
        let p = with("register_path = true\n");
        let register = "REGISTER sip:192.0.2.10 SIP/2.0\r\nVia: SIP/2.0/UDP 192.168.1.10:5060;rport;branch=z9hG4bK-r1\r\nFrom: <sip:2001@192.0.2.10>;tag=r\r\nTo: <sip:2001@192.0.2.10>\r\nCall-ID: reg-1\r\nCSeq: 1 REGISTER\r\nContact: <sip:2001@192.168.1.10:5060>\r\nSupported: path\r\nExpires: 600\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n";
        let path_of = |out: &str| {
            let at = out.find("\r\nPath: ").expect("a Path") + 8;
            let end = at + out[at..].find("\r\n").unwrap();
            out[at..end].to_string()
        };
        let (h, out) = run(&p, "198.51.100.7:40000", register);
        assert_eq!(
            h,
            Handled::Forward(Dest::Udp("10.0.0.5:5060".parse().unwrap()))
        );
        let path = path_of(&out);
        assert_eq!(
            path,
            "<sip:10.0.0.1:5060;lr;sf-flow=198.51.100.7~40000~udp>"
        );
        // On top: the first field, ours.
        assert!(
            out.contains("REGISTER sip:192.0.2.10 SIP/2.0\r\nPath: "),
            "{out}"
        );
        assert_eq!(flow_events(&p, "198.51.100.7:40000", register), ["written"]);
        // The core calls the registered Contact by the Path.
        let invite = format!(
            "INVITE sip:2001@192.168.1.10:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bK-c1\r\nRoute: {path}\r\nFrom: <sip:+8613912345678@10.0.0.5>;tag=c\r\nTo: <sip:2001@192.0.2.10>\r\nCall-ID: reg-call\r\nCSeq: 1 INVITE\r\nContact: <sip:core@10.0.0.5>\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        );
        let (h, out) = run(&p, "10.0.0.5:5060", &invite);
        assert_eq!(
            h,
            Handled::Forward(Dest::Udp("198.51.100.7:40000".parse().unwrap())),
            "{out}"
        );
        assert!(
            out.starts_with("INVITE sip:2001@192.168.1.10:5060 SIP/2.0\r\n"),
            "{out}"
        );
        assert!(
            !out.contains("sf-flow") && !out.contains("\r\nRoute:"),
            "{out}"
        );
        assert!(
            out.contains("\r\nRecord-Route: <sip:10.0.0.1:5060;lr>"),
            "{out}"
        );
        assert_eq!(flow_events(&p, "10.0.0.5:5060", &invite), ["followed"]);
        // Towards a TCP core: reached over TCP, as our Record-Route says.
        let tcp = Policy::from_str(
            &format!("{POLICY}register_path = true\n").replace("udp:10.0.0.5", "tcp:10.0.0.5"),
            "t.toml",
            std::path::Path::new("."),
        )
        .unwrap();
        let (h, out) = run(&tcp, "198.51.100.7:40000", register);
        assert_eq!(
            h,
            Handled::Forward(Dest::TcpTo("10.0.0.5:5060".parse().unwrap()))
        );
        assert_eq!(
            path_of(&out),
            "<sip:10.0.0.1:5060;lr;transport=tcp;sf-flow=198.51.100.7~40000~udp>"
        );
        // Not behind a NAT: our Path with no flow, and the call goes to the Contact.
        let public = register.replace("192.168.1.10", "198.51.100.7");
        let (_, out) = run(&p, "198.51.100.7:5060", &public);
        assert_eq!(path_of(&out), "<sip:10.0.0.1:5060;lr>");
        // A Path the PBX wrote stays below ours, without the flow it forged (QA 113's
        // attack by way of the registrar); without `register_path` too, where none of
        // ours is added.
        let forging = register.replace(
            "Supported: path\r\n",
            "Supported: path\r\nPath: <sip:10.0.0.1:5060;lr;sf-flow=198.51.100.99~5060~udp>, <sip:10.0.0.1:5060;lr;sf-flow=\"198.51.100.99~5061~udp\">\r\nPath: sip:10.0.0.1:5060;lr;sf-flow=198.51.100.99~5062~udp\r\nPath: <sip:10.0.0.1:5060;lr>;x=1 ; \tsf-flow = 198.51.100.99~5063~udp\r\n",
        );
        let plain = with("");
        for (p, ours) in [(&p, true), (&plain, false)] {
            let (h, out) = run(p, "198.51.100.7:40000", &forging);
            assert!(matches!(h, Handled::Forward(_)), "{out}");
            assert!(!out.contains("198.51.100.99"), "{out}");
            // The second, quoted (no URI has quotes: a strict reader refuses it, a
            // lenient one might read it), goes too (QA 120).
            assert!(
                out.contains("\r\nPath: <sip:10.0.0.1:5060;lr>, <sip:10.0.0.1:5060;lr>\r\n"),
                "{out}"
            );
            // Without brackets, the parameters are the field's: stripped all the same, as
            // one after the brackets with white space around (QA 122).
            assert!(out.contains("\r\nPath: sip:10.0.0.1:5060;lr\r\n"), "{out}");
            assert!(
                out.contains("\r\nPath: <sip:10.0.0.1:5060;lr>;x=1 \r\n"),
                "{out}"
            );
            assert_eq!(
                out.contains(";sf-flow=198.51.100.7~40000~udp"),
                ours,
                "{out}"
            );
            assert_eq!(
                flow_events(p, "198.51.100.7:40000", &forging),
                if ours {
                    vec!["stripped", "written"]
                } else {
                    vec!["stripped"]
                }
            );
        }
        let (_, out) = run(&plain, "198.51.100.7:40000", register);
        assert!(!out.contains("\r\nPath:"), "{out}");
    }

    /// A caller behind a NAT (its Via and Contact name a private address) is reached
    /// by the core's requests where its call came from: the flow rides in our
    /// Record-Route (QA 111: the core's BYE went to the private Contact and was lost).
    #[test]
    fn the_core_reaches_a_natted_caller_where_its_call_came_from() {
        let p = Policy::from_str(POLICY, "t.toml", std::path::Path::new(".")).unwrap();
        let invite = "INVITE sip:+8613912345678@192.0.2.10 SIP/2.0\r\nVia: SIP/2.0/UDP 192.168.1.10:5060;rport;branch=z9hG4bK-n1\r\nFrom: <sip:+8613812345678@192.168.1.10>;tag=a\r\nTo: <sip:+8613912345678@192.0.2.10>\r\nCall-ID: nat-1\r\nCSeq: 1 INVITE\r\nContact: <sip:2001@192.168.1.10:5060;ob>\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n";
        let bye = |route: &str| {
            format!(
                "BYE sip:2001@192.168.1.10:5060;ob SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bK-n2\r\nRoute: {route}\r\nFrom: <sip:+8613912345678@192.0.2.10>;tag=b\r\nTo: <sip:+8613812345678@192.168.1.10>;tag=a\r\nCall-ID: nat-1\r\nCSeq: 1 BYE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
            )
        };
        let rr_of = |out: &str| {
            let at = out.find("\r\nRecord-Route: ").expect("record-routed") + 16;
            let end = at + out[at..].find("\r\n").unwrap();
            out[at..end].to_string()
        };
        // Behind a NAT: from another address than its Via's, or (rport) another port.
        for (source, flow) in [
            ("198.51.100.7:40000", "198.51.100.7~40000~udp"),
            ("192.168.1.10:40001", "192.168.1.10~40001~udp"),
        ] {
            // The second: a trunk that admits the private range, the Via's host, from
            // a port the NAT chose.
            let p = if source.starts_with("192.168") {
                Policy::from_str(
                    &POLICY.replace("198.51.100.0/24", "192.168.1.0/24"),
                    "t.toml",
                    std::path::Path::new("."),
                )
                .unwrap()
            } else {
                Policy::from_str(POLICY, "t.toml", std::path::Path::new(".")).unwrap()
            };
            let (h, out) = run(&p, source, invite);
            assert!(matches!(h, Handled::Forward(_)), "{h:?}");
            let rr = rr_of(&out);
            assert_eq!(
                rr,
                format!("<sip:10.0.0.1:5060;lr;sf-flow={flow}>, <sip:192.0.2.10:5060;lr>"),
                "{out}"
            );
            let (h, out) = run(&p, "10.0.0.5:5060", &bye(&rr));
            let want: SocketAddr = source.parse().unwrap();
            assert_eq!(h, Handled::Forward(Dest::Udp(want)), "{out}");
            assert!(!out.contains("sf-flow"), "{out}");
            assert!(
                out.starts_with("BYE sip:2001@192.168.1.10:5060;ob "),
                "{out}"
            );
        }
        // Not behind one: no flow, and the core's BYE goes by its Request-URI.
        let public = invite.replace("192.168.1.10", "198.51.100.7");
        let (_, out) = run(&p, "198.51.100.7:5060", &public);
        let rr = rr_of(&out);
        assert_eq!(rr, "<sip:10.0.0.1:5060;lr>, <sip:192.0.2.10:5060;lr>");
        let (h, _) = run(
            &p,
            "10.0.0.5:5060",
            &bye(&rr).replace("192.168.1.10", "198.51.100.7"),
        );
        assert_eq!(
            h,
            Handled::Forward(Dest::Udp("198.51.100.7:5060".parse().unwrap()))
        );
        // Its Via public (an ALG's, or written by hand), its Contact private: the same.
        let alg = invite.replace(
            "Via: SIP/2.0/UDP 192.168.1.10:5060;rport",
            "Via: SIP/2.0/UDP 198.51.100.7:5060;rport",
        );
        let (_, out) = run(&p, "198.51.100.7:5060", &alg);
        assert!(
            rr_of(&out).contains(";sf-flow=198.51.100.7~5060~udp>"),
            "{out}"
        );
        // Without rport a port of its own is where it listens (RFC 3261 18.2.2): no flow.
        let no_rport = public.replace(";rport", "");
        let (_, out) = run(&p, "198.51.100.7:40000", &no_rport);
        assert!(!out.contains("sf-flow"), "{out}");
        // A flow in a Record-Route entry the caller wrote itself naming us goes before
        // the core sees it (QA 113 F1).
        let forging = public.replace(
            "Max-Forwards: 70\r\n",
            "Max-Forwards: 70\r\nRecord-Route: <sip:10.0.0.1:5060;lr;sf-flow=198.51.100.99~5060~udp>\r\n",
        );
        let (_, out) = run(&p, "198.51.100.7:5060", &forging);
        assert!(!out.contains("sf-flow"), "{out}");
        // Each shows in the NAT flow counters.
        assert_eq!(flow_events(&p, "198.51.100.7:5060", &forging), ["stripped"]);
        assert_eq!(flow_events(&p, "198.51.100.7:40000", invite), ["written"]);
        assert!(flow_events(&p, "198.51.100.7:5060", &public).is_empty());
        let flowing = "<sip:10.0.0.1:5060;lr;sf-flow=198.51.100.7~40000~udp>";
        assert_eq!(
            flow_events(&p, "10.0.0.5:5060", &bye(flowing)),
            ["followed"]
        );
        assert!(
            out.contains("\r\nRecord-Route: <sip:10.0.0.1:5060;lr>\r\n"),
            "{out}"
        );
        // A flow naming no trunk's peer is none (the value passed through the peer's
        // hands): the Request-URI is the target.
        for forged in [
            "<sip:10.0.0.1:5060;lr;sf-flow=10.20.30.40~5060~udp>",
            "<sip:10.0.0.1:5060;lr;sf-flow=198.51.100.7~99999~udp>",
            "<sip:10.0.0.1:5060;lr;sf-flow=198.51.100.7~5062~sctp>",
        ] {
            let (h, _) = run(&p, "10.0.0.5:5060", &bye(forged));
            assert_eq!(
                h,
                Handled::Forward(Dest::Udp("192.168.1.10:5060".parse().unwrap())),
                "{forged}"
            );
        }
        // Over TCP the flow is the caller's connection.
        let rr = "<sip:10.0.0.1:5060;lr;sf-flow=198.51.100.7~40002~tcp>";
        let (h, _) = run(&p, "10.0.0.5:5060", &bye(rr));
        assert_eq!(
            h,
            Handled::Forward(Dest::TcpTo("198.51.100.7:40002".parse().unwrap()))
        );
    }

    /// Over TCP the caller's connection is its flow, its Via public or not (QA 115: a
    /// PBX behind a NAT writing its public address got none, and the core's requests
    /// went to a port the NAT forwards nowhere); the connection gone, the request goes
    /// by a public Request-URI as before, and else is answered 430 Flow Failed (RFC 5626
    /// 5.3), not 503. Over UDP a caller without `rport` behind a NAT is answered at its
    /// source port, as `force_rport` does (QA 115: its 100, 180 and 200 were lost).
    #[test]
    fn tcp_flows_and_answers_behind_a_nat() {
        struct Conns(Vec<SocketAddr>);
        impl NextHops for Conns {
            fn refuses(&self, _to: SocketAddr, _local: SocketAddr) -> Option<&'static str> {
                None
            }
            fn connection(&self, to: SocketAddr) -> Option<SocketAddr> {
                self.0.contains(&to).then_some(to)
            }
        }
        let p = Policy::from_str(
            &POLICY.replace(
                "listen = [\"udp:192.0.2.10:5060\"]",
                "listen = [\"udp:192.0.2.10:5060\", \"tcp:192.0.2.10:5060\"]",
            ),
            "t.toml",
            std::path::Path::new("."),
        )
        .unwrap();
        let conn: SocketAddr = "198.51.100.7:40002".parse().unwrap();
        let go = |conns: Vec<SocketAddr>, from: &str, t: Transport, text: &str| {
            let hops = Conns(conns);
            let st = Step {
                next_hops: &hops,
                ..step(&p)
            };
            let (h, out, _, _) = run_over(&st, from, "192.0.2.10:5060", t, text);
            (h, out)
        };
        let invite = "INVITE sip:+8613912345678@192.0.2.10 SIP/2.0\r\nVia: SIP/2.0/TCP 198.51.100.7:5060;branch=z9hG4bK-t1\r\nFrom: <sip:+8613812345678@198.51.100.7>;tag=a\r\nTo: <sip:+8613912345678@192.0.2.10>\r\nCall-ID: nat-t\r\nCSeq: 1 INVITE\r\nContact: <sip:2001@198.51.100.7:5060;transport=tcp>\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n";
        let (_, out) = go(vec![], "198.51.100.7:40002", Transport::Tcp, invite);
        assert!(out.contains(";lr;sf-flow=198.51.100.7~40002~tcp>"), "{out}");
        let bye = |method: &str, ruri: &str| {
            format!(
                "{method} {ruri} SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bK-t2\r\nRoute: <sip:10.0.0.1:5060;lr;sf-flow=198.51.100.7~40002~tcp>, <sip:192.0.2.10:5060;lr;transport=tcp>\r\nFrom: <sip:+8613912345678@192.0.2.10>;tag=b\r\nTo: <sip:+8613812345678@198.51.100.7>;tag=a\r\nCall-ID: nat-t\r\nCSeq: 2 {method}\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
            )
        };
        let public = "sip:2001@198.51.100.7:5060;transport=tcp";
        let private = "sip:2001@192.168.1.10:5060;transport=tcp";
        // Its connection up: over it.
        let (h, _) = go(
            vec![conn],
            "10.0.0.5:5060",
            Transport::Udp,
            &bye("BYE", private),
        );
        assert_eq!(h, Handled::Forward(Dest::TcpTo(conn)));
        // Gone: a public Request-URI as before; a private one, 430 (an ACK: dropped).
        let (h, _) = go(vec![], "10.0.0.5:5060", Transport::Udp, &bye("BYE", public));
        assert_eq!(
            h,
            Handled::Forward(Dest::TcpTo("198.51.100.7:5060".parse().unwrap()))
        );
        let (h, out) = go(
            vec![],
            "10.0.0.5:5060",
            Transport::Udp,
            &bye("BYE", private),
        );
        assert!(matches!(h, Handled::Respond(_, 430)), "{h:?}");
        assert!(out.starts_with("SIP/2.0 430 Flow Failed\r\n"), "{out}");
        assert!(!out.contains("Retry-After"), "{out}");
        let (h, _) = go(
            vec![],
            "10.0.0.5:5060",
            Transport::Udp,
            &bye("ACK", private),
        );
        assert_eq!(h, Handled::Dropped("flow-failed"));
        // UDP, no rport, behind a NAT: the forwarded Via says where answers go, and our
        // own answers go there.
        let natted = invite
            .replace(
                "SIP/2.0/TCP 198.51.100.7:5060",
                "SIP/2.0/UDP 192.168.1.10:5060",
            )
            .replace("198.51.100.7:5060;transport=tcp", "192.168.1.10:5060");
        let (_, out) = go(vec![], "198.51.100.7:40000", Transport::Udp, &natted);
        assert!(
            out.contains("Via: SIP/2.0/UDP 192.168.1.10:5060;branch=z9hG4bK-t1;rport=40000;received=198.51.100.7\r\n"),
            "{out}"
        );
        let options = "OPTIONS sip:192.0.2.10:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 192.168.1.10:5060;branch=z9hG4bK-k1\r\nFrom: <sip:pbx@192.168.1.10>;tag=k\r\nTo: <sip:192.0.2.10:5060>\r\nCall-ID: ka-1\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n";
        let (h, _) = go(vec![], "198.51.100.7:40000", Transport::Udp, options);
        assert_eq!(
            h,
            Handled::Respond(Dest::Udp("198.51.100.7:40000".parse().unwrap()), 200)
        );
        // Not behind one: the sent-by port, as RFC 3261 18.2.2 says.
        let (h, _) = go(
            vec![],
            "198.51.100.7:40000",
            Transport::Udp,
            &options.replace("192.168.1.10", "198.51.100.7"),
        );
        assert_eq!(
            h,
            Handled::Respond(Dest::Udp("198.51.100.7:5060".parse().unwrap()), 200)
        );
    }

    /// A trunk's caller whose request the core's connection cannot take is told when
    /// to try again; the core, whose request for one peer cannot go, is not, or it
    /// would hold back everything it has for the gateway (QA 116).
    #[test]
    fn retry_after_only_for_the_trunk_side() {
        struct Down;
        impl NextHops for Down {
            fn refuses(&self, _to: SocketAddr, _local: SocketAddr) -> Option<&'static str> {
                Some(NEXT_HOP_UNREACHABLE)
            }
        }
        let p = Policy::from_str(
            &POLICY.replace("udp:10.0.0.5:5060", "tcp:10.0.0.5:5060"),
            "t.toml",
            std::path::Path::new("."),
        )
        .unwrap();
        let st = Step {
            next_hops: &Down,
            ..step(&p)
        };
        let invite = "INVITE sip:+8613912345678@192.0.2.10 SIP/2.0\r\nVia: SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bK-ra1\r\nFrom: <sip:+8613812345678@198.51.100.7>;tag=a\r\nTo: <sip:+8613912345678@192.0.2.10>\r\nCall-ID: ra-1\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n";
        let (h, out, _) = run_on(&st, "198.51.100.7:5060", "192.0.2.10:5060", invite);
        assert!(matches!(h, Handled::Respond(_, 503)), "{h:?}");
        assert!(out.contains("\r\nRetry-After: "), "{out}");
        let bye = "BYE sip:2001@198.51.100.7:5060;transport=tcp SIP/2.0\r\nVia: SIP/2.0/TCP 10.0.0.5:5060;branch=z9hG4bK-ra2\r\nFrom: <sip:+8613912345678@192.0.2.10>;tag=b\r\nTo: <sip:+8613812345678@198.51.100.7>;tag=a\r\nCall-ID: ra-2\r\nCSeq: 2 BYE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n";
        let (h, out, refused) = run_on(&st, "10.0.0.5:5060", "192.0.2.10:5060", bye);
        assert!(matches!(h, Handled::Respond(_, 503)), "{h:?}");
        assert!(!out.contains("Retry-After"), "{out}");
        assert_eq!(refused, [503]);
    }

    /// A flow reads back as written, IPv6 too; anything else is none.
    #[test]
    fn flows_read_back_as_written() {
        for (a, t) in [
            ("198.51.100.7:40000", Transport::Udp),
            ("[2001:db8::7]:5060", Transport::Tcp),
            ("[::1]:65535", Transport::Udp),
        ] {
            let a: SocketAddr = a.parse().unwrap();
            let mut v = vec![];
            push_flow(&mut v, a, t);
            assert_eq!(
                parse_flow(&v),
                Some((a, t)),
                "{}",
                String::from_utf8_lossy(&v)
            );
        }
        for bad in [
            "198.51.100.7~0~udp",
            "198.51.100.7~65536~udp",
            "198.51.100.7~5060~sctp",
            "198.51.100.7~5060",
            "gw.example~5060~udp",
            "198.51.100.7~~udp",
            "~5060~udp",
            "",
        ] {
            assert_eq!(parse_flow(bad.as_bytes()), None, "{bad}");
        }
    }

    /// A call the core offers a NATed PBX: its answer's Contact names its private
    /// address, so our entry in the answer's Record-Route gets the flow, and the core's
    /// ACK and BYE reach the PBX where its answer came from (QA 111).
    #[test]
    fn the_core_reaches_a_natted_callee_where_its_answer_came_from() {
        let p = Policy::from_str(POLICY, "t.toml", std::path::Path::new(".")).unwrap();
        let offer = "INVITE sip:2001@198.51.100.7 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bK-o1\r\nFrom: <sip:+8613912345678@10.0.0.5>;tag=c\r\nTo: <sip:2001@198.51.100.7>\r\nCall-ID: nat-2\r\nCSeq: 1 INVITE\r\nContact: <sip:+8613912345678@10.0.0.5>\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n";
        let (h, out) = run(&p, "10.0.0.5:5060", offer);
        assert_eq!(
            h,
            Handled::Forward(Dest::Udp("198.51.100.7:5060".parse().unwrap()))
        );
        let line = |out: &str, name: &str| {
            let at = out.find(&format!("\r\n{name}: ")).expect(name) + 2;
            let end = at + out[at..].find("\r\n").unwrap();
            out[at..end].to_string()
        };
        let (via, rr) = (line(&out, "Via"), line(&out, "Record-Route"));
        let answer = |contact: &str| {
            format!(
                "SIP/2.0 200 OK\r\n{via}\r\nVia: SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bK-o1\r\n{rr}\r\nFrom: <sip:+8613912345678@10.0.0.5>;tag=c\r\nTo: <sip:2001@198.51.100.7>;tag=p\r\nCall-ID: nat-2\r\nCSeq: 1 INVITE\r\nContact: <{contact}>\r\nContent-Length: 0\r\n\r\n"
            )
        };
        // The PBX's answer from the NAT's public port, its Contact private.
        let (h, out) = run(
            &p,
            "198.51.100.7:40000",
            &answer("sip:2001@192.168.1.10:5060"),
        );
        assert_eq!(
            h,
            Handled::Forward(Dest::Udp("10.0.0.5:5060".parse().unwrap()))
        );
        let routed = line(&out, "Record-Route");
        assert!(
            routed
                .starts_with("Record-Route: <sip:10.0.0.1:5060;lr;sf-flow=198.51.100.7~40000~udp>"),
            "{out}"
        );
        // The core's ACK, routed by that set (reversed, RFC 3261 12.1.2), to the
        // private Contact.
        let set = routed.trim_start_matches("Record-Route: ");
        let mut set: Vec<&str> = set.split(", ").collect();
        set.reverse();
        let ack = format!(
            "ACK sip:2001@192.168.1.10:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bK-o2\r\nRoute: {}\r\nFrom: <sip:+8613912345678@10.0.0.5>;tag=c\r\nTo: <sip:2001@198.51.100.7>;tag=p\r\nCall-ID: nat-2\r\nCSeq: 1 ACK\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
            set.join(", ")
        );
        let (h, _) = run(&p, "10.0.0.5:5060", &ack);
        assert_eq!(
            h,
            Handled::Forward(Dest::Udp("198.51.100.7:40000".parse().unwrap()))
        );
        // A Contact naming where the answer came from: the Record-Route as it was.
        let (_, out) = run(&p, "198.51.100.7:5060", &answer("sip:2001@198.51.100.7"));
        assert_eq!(line(&out, "Record-Route"), rr, "{out}");
        // The same host on another port, over UDP: a NAT's mapping (QA 113 F2).
        let (_, out) = run(&p, "198.51.100.7:40000", &answer("sip:2001@198.51.100.7"));
        assert!(
            line(&out, "Record-Route").contains(";sf-flow=198.51.100.7~40000~udp>"),
            "{out}"
        );
        // A flow the peer wrote into our entry (or an entry of its own naming us) is
        // taken out, and ours written when there is one (QA 113 F1: the core's requests
        // went to another trunk's peer).
        let forged = ";sf-flow=198.51.100.99~5060~udp";
        let ours = rr.find(";lr>").unwrap() + 3;
        for (source, contact, want) in [
            ("198.51.100.7:5060", "sip:2001@198.51.100.7", rr.clone()),
            (
                "198.51.100.7:40000",
                "sip:2001@192.168.1.10",
                format!(
                    "{};sf-flow=198.51.100.7~40000~udp{}",
                    &rr[..ours],
                    &rr[ours..]
                ),
            ),
        ] {
            for tampered in [
                format!("{}{forged}{}", &rr[..ours], &rr[ours..]),
                rr.replacen(";lr>", ";lr;SF%2dFLOW=198.51.100.99~5060~udp>", 1),
                format!("{rr}, <sip:10.0.0.1:5060;lr{forged}>"),
            ] {
                let text = answer(contact).replace(&rr, &tampered);
                let (_, out) = run(&p, source, &text);
                let got = line(&out, "Record-Route");
                let want = if tampered.ends_with(&format!("{forged}>")) {
                    format!("{want}, <sip:10.0.0.1:5060;lr>")
                } else {
                    want.clone()
                };
                assert_eq!(got, want, "{tampered}");
            }
        }
        // A malformed flow is none: the Request-URI is the target (QA 113 F3: port 0).
        let bye = ack.replace("ACK", "BYE").replace(
            ";sf-flow=198.51.100.7~40000~udp",
            ";sf-flow=198.51.100.7~0~udp",
        );
        let (h, _) = run(&p, "10.0.0.5:5060", &bye);
        assert_eq!(
            h,
            Handled::Forward(Dest::Udp("192.168.1.10:5060".parse().unwrap()))
        );
        // The core's own answers are none of this.
        let (_, out) = run(&p, "10.0.0.5:5060", &answer("sip:2001@192.168.1.10:5060"));
        assert!(!out.contains("sf-flow"), "{out}");
    }

    /// On a trunk told by its digest answers alone whose dialogs are record-routed, our
    /// Record-Route carries the dialog's token to the trunk's peer alone: in the core's
    /// answers to the trunk's calls and subscriptions (binding both tags; the request
    /// the core gets has the parameter without a value), and in the core's calls and
    /// subscriptions to it (binding the core's tag, which the trunk's requests carry in
    /// To), taken out of the peer's answers to those. The peer's later requests that
    /// bring the token back in their Route go on to the core, our entries taken off,
    /// whatever the gateway's tables know (here none: each message is a fresh step).
    #[test]
    fn an_auth_only_trunks_dialogs_carry_their_token() {
        use md5::{Digest, Md5};
        let p = Policy::from_str(
            "[general]\nauth_secret = \"fleet\"\n[[trunk]]\nname = \"pbx\"\nrole = \"enterprise\"\nlisten = [\"udp:192.0.2.10:5060\"]\nnext_hop = \"udp:10.0.0.5:5060\"\nrecord_route = true\n[trunk.whitelist]\nentries = [\"+8613812345678\"]\n[trunk.auth]\nrealm = \"pbx\"\nusers = [\"pbx1:s3cret\"]\n",
            "t.toml",
            std::path::Path::new("."),
        )
        .unwrap();
        let a = p.trunks[0].dialog_tokens().unwrap();
        let token = |call_id: &str, tag: &str, other: &str, side: Side| {
            let t = a.dialog_token(call_id.as_bytes(), tag.as_bytes(), other.as_bytes(), side);
            String::from_utf8(t.to_vec()).unwrap()
        };
        let hex = |d: &[u8]| d.iter().map(|b| format!("{b:02x}")).collect::<String>();
        let creds = |method: &str, uri: &str| {
            let nonce = a.nonce(0, 1, Some("198.51.100.7".parse().unwrap()));
            let ha1 = hex(&Md5::digest("pbx1:pbx:s3cret"));
            let ha2 = hex(&Md5::digest(format!("{method}:{uri}")));
            let resp = hex(&Md5::digest(format!("{ha1}:{nonce}:{ha2}")));
            format!(
                "Proxy-Authorization: Digest username=\"pbx1\", realm=\"pbx\", nonce=\"{nonce}\", uri=\"{uri}\", response=\"{resp}\", algorithm=MD5\r\n"
            )
        };
        let request = |method: &str, tags: (&str, &str), extra: &str| {
            let to_tag = if tags.1.is_empty() {
                String::new()
            } else {
                format!(";tag={}", tags.1)
            };
            format!(
                "{method} sip:+8613912345678@192.0.2.10 SIP/2.0\r\nVia: SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bK-{method}\r\n{extra}From: <sip:+8613812345678@198.51.100.7>;tag={}\r\nTo: <sip:+8613912345678@192.0.2.10>{to_tag}\r\nCall-ID: t-1\r\nCSeq: 1 {method}\r\nMax-Forwards: 70\r\nEvent: presence\r\nContent-Length: 0\r\n\r\n",
                tags.0
            )
        };
        let ours = token("t-1", "a", "b", Side::From);
        let core = Handled::Forward(Dest::Udp("10.0.0.5:5060".parse().unwrap()));
        let pbx = Handled::Forward(Dest::Udp("198.51.100.7:5060".parse().unwrap()));
        // The answer the core at 10.0.0.5 gives a request that went on as `fwd`.
        let answer = |fwd: &str, status: &str, to_tag: &str| {
            let head: Vec<&str> = fwd.split("\r\n").collect();
            let keep = |n: &str| {
                head.iter()
                    .filter(|l| l.starts_with(n))
                    .map(|l| format!("{l}\r\n"))
                    .collect::<String>()
            };
            format!(
                "SIP/2.0 {status}\r\n{}{}{}{};tag={to_tag}\r\n{}{}Content-Length: 0\r\n\r\n",
                keep("Via:"),
                keep("Record-Route:"),
                keep("From:"),
                keep("To:").trim_end(),
                keep("Call-ID:"),
                keep("CSeq:")
            )
        };
        // The trunk's call and subscription: the core gets the place for the token,
        // the peer the token in the core's answers.
        for method in ["INVITE", "SUBSCRIBE"] {
            let m = request(
                method,
                ("a", ""),
                &creds(method, "sip:+8613912345678@192.0.2.10"),
            );
            let (h, out) = run(&p, "198.51.100.7:5060", &m);
            assert_eq!(h, core, "{out}");
            let place = a.token_place("t-1".as_bytes(), b"a");
            assert!(place.starts_with("~pbx.") && place.len() == 13, "{place}");
            assert!(
                out.contains(&format!(
                    "Record-Route: <sip:10.0.0.1:5060;lr;sf-dlg={place}>, <sip:192.0.2.10:5060;lr>\r\n"
                )),
                "{out}"
            );
            for status in ["180 Ringing", "200 OK"] {
                let (h, back) = run(&p, "10.0.0.5:5060", &answer(&out, status, "b"));
                assert_eq!(h, pbx, "{back}");
                assert!(
                    back.contains(&format!("Record-Route: <sip:10.0.0.1:5060;lr;sf-dlg={ours}>, <sip:192.0.2.10:5060;lr>\r\n")),
                    "{back}"
                );
            }
            // An entry the core's side wrote above ours, naming us with a place of its
            // own (QA 195: a callee's, naming another trunk, got that trunk's token):
            // left as it is, ours filled.
            for forged in ["~pbx.deadbeef", "~pbx", "~other.0123abcd"] {
                let odd = answer(&out, "200 OK", "b").replacen(
                    "Record-Route: ",
                    &format!(
                        "Record-Route: <sip:10.0.0.1:5060;lr;sf-dlg={forged}>\r\nRecord-Route: "
                    ),
                    1,
                );
                let (_, back) = run(&p, "10.0.0.5:5060", &odd);
                assert!(
                    back.contains(&format!("sf-dlg={forged}>\r\n"))
                        && back.contains(&format!("sf-dlg={ours}>")),
                    "{forged}: {back}"
                );
            }
            // A copy of our place above ours: the same trunk's and call's, both filled
            // (QA 196: the copy was, ours kept the bare place).
            let copied = answer(&out, "200 OK", "b").replacen(
                "Record-Route: ",
                &format!("Record-Route: <sip:192.0.2.10:5060;lr;sf-dlg={place}>\r\nRecord-Route: "),
                1,
            );
            let (_, back) = run(&p, "10.0.0.5:5060", &copied);
            assert_eq!(
                back.matches(&format!("sf-dlg={ours}>")).count(),
                2,
                "{back}"
            );
            // Another fork's answer: its own dialog's token.
            let (_, back) = run(&p, "10.0.0.5:5060", &answer(&out, "200 OK", "b2"));
            assert!(
                back.contains(&format!("sf-dlg={}>", token("t-1", "a", "b2", Side::From))),
                "{back}"
            );
        }
        // Its requests in the dialog, the token in their Route, go on, our entries
        // off; without it (a stranger's made-up tags) they are challenged.
        let route =
            format!("Route: <sip:192.0.2.10:5060;lr>, <sip:10.0.0.1:5060;lr;sf-dlg={ours}>\r\n");
        for method in ["BYE", "NOTIFY", "PRACK", "INFO", "SUBSCRIBE"] {
            let (h, out) = run(
                &p,
                "198.51.100.7:5060",
                &request(method, ("a", "b"), &route),
            );
            assert_eq!(h, core, "{method}: {out}");
            assert!(!out.contains("Route:") && !out.contains("sf-dlg"), "{out}");
            let (h, out) = run(&p, "198.51.100.7:5060", &request(method, ("a", "b"), ""));
            assert!(out.starts_with("SIP/2.0 407 "), "{method}: {h:?} {out}");
        }
        // The core's call and subscription to the PBX: the token binds the core's tag;
        // the PBX's answers go back to the core's side without it (QA 193 N1: a caller
        // of the core's learnt it from the PBX's 180).
        for method in ["INVITE", "SUBSCRIBE"] {
            let m = format!(
                "{method} sip:+8613812345678@198.51.100.7:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bK-c{method}\r\nFrom: <sip:+8613912345678@10.0.0.5>;tag=core1\r\nTo: <sip:+8613812345678@198.51.100.7>\r\nCall-ID: t-2\r\nCSeq: 1 {method}\r\nMax-Forwards: 70\r\nEvent: presence\r\nContent-Length: 0\r\n\r\n"
            );
            let (h, out) = run(&p, "10.0.0.5:5060", &m);
            assert_eq!(
                h,
                Handled::Forward(Dest::Udp("198.51.100.7:5060".parse().unwrap())),
                "{out}"
            );
            let t = token("t-2", "core1", "", Side::To);
            assert!(out.contains(&format!(";lr;sf-dlg={t}>")), "{out}");
            let (h, back) = run(
                &p,
                "198.51.100.7:5060",
                &answer(&out, "180 Ringing", "pbx9"),
            );
            assert_eq!(h, core, "{back}");
            assert!(
                back.contains("Record-Route: <sip:10.0.0.1:5060;lr>, <sip:192.0.2.10:5060;lr>\r\n")
                    && !back.contains("sf-dlg"),
                "{back}"
            );
            // However the peer writes our entry back (QA 194 B2: a display name and
            // white space around ';', the address written otherwise, another case).
            for rr in [
                format!("Record-Route: \"sf\" <sip:10.0.0.1:5060;lr ; sf-dlg={t}>\r\n"),
                format!("Record-Route: <sip:127.000.0.1:5060;lr;SF-DLG={t}>\r\n"),
                format!("record-route: <sip:10.0.0.1;sf%2Ddlg={t};lr>\r\n"),
            ] {
                let odd = answer(&out, "180 Ringing", "pbx9").replacen(
                    "Record-Route: ",
                    &format!("{rr}Record-Route: "),
                    1,
                );
                let (h, back) = run(&p, "198.51.100.7:5060", &odd);
                assert_eq!(h, core, "{back}");
                assert!(!back.contains(&t), "{rr}: {back}");
            }
        }
    }

    #[test]
    fn calls_get_a_double_record_route_and_in_dialog_requests_lose_our_routes() {
        let p = Policy::from_str(POLICY, "t.toml", std::path::Path::new(".")).unwrap();
        let invite = "INVITE sip:+8613912345678@192.0.2.10 SIP/2.0\r\nVia: SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bK-1\r\nRecord-Route: <sip:198.51.100.7;lr>\r\nFrom: <sip:+8613812345678@198.51.100.7>;tag=a\r\nTo: <sip:+8613912345678@192.0.2.10>\r\nCall-ID: rr-1\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n";
        let (h, out) = run(&p, "198.51.100.7:5060", invite);
        assert_eq!(
            h,
            Handled::Forward(Dest::Udp("10.0.0.5:5060".parse().unwrap()))
        );
        // Ours first (the core reaches us at the forwarding address, the peer at the
        // listener), before the peer's own Record-Route.
        let rr = out.find("Record-Route: <sip:10.0.0.1:5060;lr>, <sip:192.0.2.10:5060;lr>\r\n");
        let theirs = out.find("Record-Route: <sip:198.51.100.7;lr>");
        assert!(rr.is_some() && rr < theirs, "{out}");

        // The peer's BYE routes through both of our entries, then its own next one.
        let bye = "BYE sip:+8613912345678@10.0.0.5 SIP/2.0\r\nVia: SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bK-2\r\nRoute: <sip:192.0.2.10:5060;lr>, <sip:10.0.0.1:5060;lr>\r\nRoute: <sip:10.0.0.9;lr>\r\nFrom: <sip:+8613812345678@198.51.100.7>;tag=a\r\nTo: <sip:+8613912345678@192.0.2.10>;tag=b\r\nCall-ID: rr-1\r\nCSeq: 2 BYE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n";
        let (_, out) = run(&p, "198.51.100.7:5060", bye);
        assert!(
            !out.contains("192.0.2.10:5060;lr") && !out.contains("10.0.0.1:5060;lr"),
            "{out}"
        );
        assert!(out.contains("\r\nRoute: <sip:10.0.0.9;lr>\r\n"), "{out}");

        // From the core, our entry and then the peer's: it goes to the peer's.
        let bye = "BYE sip:+8613812345678@198.51.100.7 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bK-3\r\nRoute: <sip:10.0.0.1:5060;lr>, <sip:192.0.2.10:5060;lr>, <sip:198.51.100.7;lr>\r\nFrom: <sip:+8613912345678@192.0.2.10>;tag=b\r\nTo: <sip:+8613812345678@198.51.100.7>;tag=a\r\nCall-ID: rr-1\r\nCSeq: 1 BYE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n";
        let (h, out) = run(&p, "10.0.0.5:5060", bye);
        assert_eq!(
            h,
            Handled::Forward(Dest::Udp("198.51.100.7:5060".parse().unwrap()))
        );
        assert!(
            out.contains("\r\nRoute: <sip:198.51.100.7;lr>\r\n"),
            "{out}"
        );
        // The same from another port of the core's host (another socket of the core, a
        // TCP connection it opened): the core's too, not a stranger's call.
        let (h, _) = run(&p, "10.0.0.5:41234", bye);
        assert_eq!(
            h,
            Handled::Forward(Dest::Udp("198.51.100.7:5060".parse().unwrap()))
        );
        // Another host is a stranger; so is an initial request from the core's host on
        // another port (a process there is no core's dialog).
        let (h, _) = run(&p, "10.0.0.6:5060", bye);
        assert!(!matches!(h, Handled::Forward(_)), "{h:?}");
        let initial = bye.replace(";tag=a\r\n", "\r\n").replace("BYE", "INVITE");
        let (h, _) = run(&p, "10.0.0.5:41234", &initial);
        assert!(!matches!(h, Handled::Forward(_)), "{h:?}");
        let (h, _) = run(&p, "10.0.0.5:5060", &initial);
        assert!(matches!(h, Handled::Forward(_)), "{h:?}");

        // An initial INVITE from a peer that has us as its outbound proxy: our value
        // goes, in a list or a field of its own; another's stays.
        for (route, kept) in [
            ("Route: <sip:192.0.2.10:5060;lr>\r\n", None),
            (
                "Route: <sip:192.0.2.10:5060;lr>, <sip:10.0.0.9;lr>\r\n",
                Some("Route: <sip:10.0.0.9;lr>\r\n"),
            ),
            (
                "Route: <sip:192.0.2.10:5060;lr>\r\nRoute: <sip:10.0.0.9;lr>\r\n",
                Some("Route: <sip:10.0.0.9;lr>\r\n"),
            ),
        ] {
            let invite = invite.replace("Record-Route: <sip:198.51.100.7;lr>\r\n", route);
            let (h, out) = run(&p, "198.51.100.7:5060", &invite);
            assert_eq!(
                h,
                Handled::Forward(Dest::Udp("10.0.0.5:5060".parse().unwrap()))
            );
            let routes: Vec<&str> = out
                .split("\r\n")
                .filter(|l| l.starts_with("Route:"))
                .collect();
            let want: Vec<&str> = kept.map(|k| k.trim_end()).into_iter().collect();
            assert_eq!(routes, want, "{out}");
        }
    }
}
