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
        if st.policy.tracks_calls {
            let from_core = st.policy.speaks_for_core(&o.source);
            // A caller's BYE on a trunk whose calls are limited, which another gateway
            // may have admitted (QA 198 F1).
            let limited =
                if st.policy.shares_calls && !from_core && msg.method() == Some(Method::Bye) {
                    st.policy
                        .match_trunk(&o.source, Some(&o.local))
                        .map(|t| &st.policy.trunks[t])
                        .filter(|t| t.max_concurrent.is_some())
                        .map_or(0, |t| t.id)
                } else {
                    0
                };
            if let Some((trunk, seen)) =
                behaviour::observe_on(msg, from_core, limited, st.behaviour, st.now_ms)
            {
                observe(Observed::Behaviour(trunk, seen));
            }
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
        && !(st.draining && answers_our_challenge(st, msg, o, trunk))
}

/// An INVITE that answers this gateway's own challenge rightly: the retry of a call
/// that began here. A drain lets it on, as it lets the core's retries (QA 198 F3: shed,
/// the PBX had to start the call over elsewhere); an overload sheds it like any call.
fn answers_our_challenge(st: &Step<'_>, msg: &Message, o: &Origin, trunk: Option<usize>) -> bool {
    trunk
        .and_then(|t| st.policy.trunks[t].auth.as_ref())
        .is_some_and(|a| {
            matches!(
                a.check(
                    msg,
                    st.wall_ms,
                    st.policy.reading(trunk),
                    Some(o.source.ip())
                ),
                crate::policy::auth::AuthCheck::Ok { .. }
            )
        })
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

mod bad_request;
mod route;
pub use bad_request::{bad_request_code, bad_request_for};
use route::*;

#[cfg(test)]
mod tests;
