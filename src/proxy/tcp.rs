//! TCP: SO_REUSEPORT listeners per worker, one task per connection, messages cut by
//! Content-Length (RFC 3261 18.3), CRLFCRLF keep-alives answered with CRLF (RFC 5626),
//! idle connections closed, and a cap on connections so a flood of silent sockets
//! cannot exhaust the process.
//!
//! Towards a next hop configured as `tcp:`, one connection per address and source is
//! opened on first use and reused by every worker: it leaves from the address of the
//! listener the requests came in on, as a UDP request leaves from its listener's
//! socket, so that a core that tells trunks apart by address sees each trunk's requests
//! from its own (a wildcard listener's leave from the address the system chooses).
//! Responses and in-dialog requests from the core come back over it and are handled
//! like any other message. A next hop that cannot be
//! reached costs one attempt per second, not one per message: while it is down, the
//! step answers its requests 503 at once (and counts and records them so), and a task
//! tries to connect again every second until it can (as an SBC probes a dead route).

use bytes::{Buf, Bytes, BytesMut};
use socket2::{Domain, Protocol, Socket, Type};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::mpsc;

use super::Shared;
use super::stateless::{Dest, NEXT_HOP_CONGESTED, NEXT_HOP_UNREACHABLE, Origin};
use super::udp::{self, Udps};
use crate::policy::config::{ListenSpec, Transport};
use crate::sip::parse::Frame;
use crate::sip::rewrite::EditList;
use crate::sip::{MAX_MESSAGE, frame_stream};

pub fn bind(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    s.set_reuse_address(true)?;
    s.set_reuse_port(true)?;
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    s.listen(1024)?;
    Ok(s.into())
}

/// When a failed `accept`, and a connection refused for the limit, were last logged.
static ACCEPT_FAILED_SAID: AtomicU64 = AtomicU64::new(0);
static LIMIT_SAID: AtomicU64 = AtomicU64::new(0);
static PEER_UNREACHABLE_SAID: AtomicU64 = AtomicU64::new(0);

pub async fn serve(shared: Arc<Shared>, udps: Udps, local: ListenSpec, listener: TcpListener) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning, and say so (QA 118
                // F4: nothing showed it while new peers waited in the kernel's queue).
                shared.metrics.dropped("tcp-accept-failed");
                if super::say_every_10s(&ACCEPT_FAILED_SAID) {
                    tracing::warn!(listen = %local, error = %e, "cannot accept TCP connections (open files limit?): they wait in the kernel's queue");
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let max = shared.tcp_limit();
        let claimed = shared.loaded.load().policy.claims_connection(&peer, &local);
        let Some(place) = Place::take(&shared, |s| &s.accepted_tcp, max) else {
            shared.metrics.dropped("tcp-limit");
            if super::say_every_10s(&LIMIT_SAID) {
                tracing::warn!(limit = max, peer = %peer, "TCP connection refused: the accepted connections are at their limit (max_tcp_connections, or the open files limit)");
            }
            drop(stream);
            continue;
        };
        // Addresses no trunk claims share an eighth of the connections: a flood of
        // them (each answered unknown-source, or holding a socket open and silent)
        // cannot take the places the trunks' PBXs and peers need.
        let unclaimed = if claimed {
            None
        } else {
            match Place::take(&shared, |s| &s.unclaimed_tcp, (max / 8).max(1)) {
                Some(p) => Some(p),
                None => {
                    shared.metrics.dropped("tcp-unclaimed-limit");
                    drop(stream);
                    continue;
                }
            }
        };
        let _ = stream.set_nodelay(true);
        let (shared, udps) = (shared.clone(), udps.clone());
        tokio::spawn(async move {
            connection(shared, udps, local, stream, peer).await;
            drop(unclaimed);
            drop(place);
        });
    }
}

/// One place among at most `cap` counted by an atomic of [`Shared`], taken with one
/// atomic step (no check-then-count race between workers) and given back when the
/// connection ends.
struct Place(Arc<Shared>, fn(&Shared) -> &AtomicUsize);

impl Place {
    fn take(shared: &Arc<Shared>, count: fn(&Shared) -> &AtomicUsize, cap: usize) -> Option<Place> {
        if count(shared).fetch_add(1, Ordering::Relaxed) >= cap {
            count(shared).fetch_sub(1, Ordering::Relaxed);
            return None;
        }
        Some(Place(shared.clone(), count))
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        (self.1)(&self.0).fetch_sub(1, Ordering::Relaxed);
    }
}

async fn connection(
    shared: Arc<Shared>,
    udps: Udps,
    local: ListenSpec,
    stream: TcpStream,
    peer: SocketAddr,
) {
    let (id, tx, rx) = register(&shared);
    // Requests for the peer's address go over its own connection (RFC 3261 18.1.1,
    // RFC 5923): a PBX behind NAT, or one not listening on its source port, cannot be
    // connected to, and the callee's BYE would never reach it (QA 64). It is taken
    // before one we opened to that address (those are kept apart, by source:
    // `tcp_out`); a second one from the same address leaves the first in place.
    // A peer that connects from an address we could not connect to is up again: its
    // own connection takes the place at once (QA 66: requests for it were answered 503
    // until the next attempt, a second later).
    if reachable(&shared, peer) {
        shared.tcp_peers.insert(peer, id);
    } else {
        shared.tcp_peers.entry(peer).or_insert(id);
    }
    serve_stream(
        &shared,
        &udps,
        local,
        stream,
        peer,
        id,
        Side::Accepted,
        tx,
        rx,
    )
    .await;
}

/// Who opened a connection: a peer, or we (to a next hop or a peer's address), from
/// a given source address or the system's choice.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
    Accepted,
    Opened(Option<IpAddr>),
}

/// The address a connection to `to` for requests that came in on the listener `local`
/// leaves from: the listener's, when it names one of `to`'s IP family; none (the
/// system's choice) for a wildcard listener.
pub fn source_for(local: SocketAddr, to: SocketAddr) -> Option<IpAddr> {
    let ip = crate::canonical(local).ip();
    (!ip.is_unspecified() && ip.is_ipv4() == crate::canonical(to).is_ipv4()).then_some(ip)
}

/// The connection a request for `to` that came in on `local` goes over, if one is up
/// (or being opened): the peer's own connection to us first (RFC 5923), else ours to
/// it from that listener's address.
pub fn connection_for(shared: &Shared, to: SocketAddr, local: SocketAddr) -> Option<u64> {
    if let Some(id) = shared.tcp_peers.get(&to).map(|v| *v) {
        return Some(id);
    }
    shared.tcp_out.get(&(to, source_for(local, to))).map(|v| *v)
}

/// Connects to `addr` from `src` (any port), or from the system's choice. A source
/// that cannot be bound (a listener's address the host no longer has) falls back to
/// the system's choice, with a warning at each such attempt (one per connection made,
/// one a second while the next hop cannot be reached either).
async fn connect_from(addr: SocketAddr, src: Option<IpAddr>) -> io::Result<TcpStream> {
    let Some(ip) = src else {
        return TcpStream::connect(addr).await;
    };
    let sock = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    if let Err(e) = sock.bind(SocketAddr::new(ip, 0)) {
        tracing::warn!(%addr, source = %ip, error = %e, "cannot connect from the listener's address: connecting from the address the system chooses");
        return TcpStream::connect(addr).await;
    }
    sock.connect(addr).await
}

/// A new connection id and its writer queue, registered so that answers find it.
fn register(shared: &Shared) -> (u64, mpsc::Sender<Bytes>, mpsc::Receiver<Bytes>) {
    let id = shared.next_conn.fetch_add(1, Ordering::Relaxed);
    let (tx, rx) = mpsc::channel::<Bytes>(QUEUE);
    shared.tcp_conns.insert(id, tx.clone());
    (id, tx, rx)
}

/// `addr` is no longer marked down (reached, or given up), and the gauge says so.
/// Whether it was.
fn reachable(shared: &Shared, addr: SocketAddr) -> bool {
    let was = shared.tcp_down.remove(&addr).is_some();
    shared.count_next_hops_down();
    was
}

/// Messages queued per connection before new ones are dropped (and counted).
const QUEUE: usize = 256;
/// How long a connection attempt to a next hop may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// After a failed attempt, the next attempt comes this much later; requests for that
/// next hop are answered 503 meanwhile: a dead core is not hammered.
pub const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(1);
/// A next hop still down when no request has wanted it for this long is no longer
/// tried (a reload moved the calls elsewhere); the next request starts afresh.
pub const GIVE_UP_AFTER: Duration = Duration::from_secs(300);

/// Sends to a next hop over TCP: over the open connection to it, or over a new one
/// (queued while it connects). Never waits.
pub fn send_to_peer(
    shared: &Arc<Shared>,
    udps: &Udps,
    from: usize,
    local: ListenSpec,
    addr: SocketAddr,
    bytes: &[u8],
) {
    let src = source_for(local.addr, addr);
    let id = match connection_for(shared, addr, local.addr) {
        Some(id) => id,
        None => *shared.tcp_out.entry((addr, src)).or_insert_with(|| {
            let (id, tx, rx) = register(shared);
            tokio::spawn(outbound(
                shared.clone(),
                udps.clone(),
                from,
                local,
                (addr, src),
                id,
                tx,
                rx,
            ));
            id
        }),
    };
    // A request that cannot be queued is answered 503 as one that finds the connection
    // down (the step answers most at once: [`super::stateless::NextHops`]; this is the
    // one that raced it), never lost in silence (QA 49).
    let why = match udp::try_send_tcp(shared, id, bytes) {
        Ok(true) => return,
        // Gone or closed: counted already.
        Ok(false) => NEXT_HOP_UNREACHABLE,
        Err(_full) => {
            shared.metrics.dropped("tcp-backlog");
            NEXT_HOP_CONGESTED
        }
    };
    unreachable(
        shared,
        udps,
        from,
        local,
        addr,
        Bytes::copy_from_slice(bytes),
        why,
    );
}

#[allow(clippy::too_many_arguments)]
async fn outbound(
    shared: Arc<Shared>,
    udps: Udps,
    from: usize,
    local: ListenSpec,
    (addr, src): (SocketAddr, Option<IpAddr>),
    id: u64,
    tx: mpsc::Sender<Bytes>,
    mut rx: mpsc::Receiver<Bytes>,
) {
    // Requests queued for this connection that cannot go: answered 503 now.
    let answer = |b: Bytes| {
        if !our_probe(&b) {
            shared.metrics.dropped("tcp-connect-failed");
        }
        unreachable(&shared, &udps, from, local, addr, b, NEXT_HOP_UNREACHABLE);
    };
    let mut failed = 0u64;
    loop {
        let why = match tokio::time::timeout(CONNECT_TIMEOUT, connect_from(addr, src)).await {
            Ok(Ok(stream)) => {
                let _ = stream.set_nodelay(true);
                if failed > 0 {
                    tracing::warn!(%addr, failed, "next hop reachable again");
                } else {
                    tracing::debug!(%addr, "connected to next hop");
                }
                reachable(&shared, addr);
                if shared.probes.start_afresh(addr) {
                    tracing::warn!(%addr, "next hop connected anew: its new calls go to it again (its probes start afresh)");
                    shared.count_next_hops_down();
                }
                let side = Side::Opened(src);
                serve_stream(&shared, &udps, local, stream, addr, id, side, tx, rx).await;
                return;
            }
            Ok(Err(e)) => e.to_string(),
            Err(_) => "timed out".to_string(),
        };
        // A reload that moved the trunks elsewhere ends it at once: the gauge (and its
        // alert) must not go on naming an address no trunk sends to (QA 60). An
        // in-dialog target that is no next hop is tried once, as it always was.
        let named = shared
            .loaded
            .load()
            .policy
            .is_next_hop_over(addr, Some(Transport::Tcp));
        // One line when it goes down, not one a second while it stays down.
        if failed == 0 && !named {
            // A peer's own address (its Contact, or the Via of a caller whose
            // connection closed), not a next hop (QA 79: the line said next hop).
            // Tried once per request or response that wants it: at most a line every
            // 10 s (QA 118 F6: one per retransmission after a restart).
            if super::say_every_10s(&PEER_UNREACHABLE_SAID) {
                tracing::warn!(%addr, error = %why, "cannot connect to a peer's own address (no next hop): the requests for it are answered 503, the responses lost (said at most every 10 s)");
            }
        } else if failed == 0 {
            tracing::warn!(%addr, error = %why, "cannot connect to next hop: its requests are answered 503 until it can be reached (tried every second)");
        } else {
            tracing::debug!(%addr, error = %why, failed, "next hop still unreachable");
        }
        failed += 1;
        shared
            .tcp_down
            .entry(addr)
            .or_insert_with(|| AtomicU64::new(crate::cli::steady_ms()));
        // Down by its connection now, not by its probes as well.
        shared.probes.start_afresh(addr);
        shared.count_next_hops_down();
        // What was queued while connecting, and what raced the mark until the next try.
        let until = tokio::time::Instant::now() + RETRY_AFTER_FAILURE;
        while let Ok(Some(b)) = tokio::time::timeout_at(until, rx.recv()).await {
            answer(b);
        }
        let wanted = shared
            .tcp_down
            .get(&addr)
            .map_or(0, |w| w.load(Ordering::Relaxed));
        if crate::cli::steady_ms().saturating_sub(wanted) > GIVE_UP_AFTER.as_millis() as u64 {
            tracing::info!(%addr, "next hop still unreachable and no longer wanted: not tried again until a request wants it");
            break;
        }
        if !named {
            tracing::debug!(%addr, "unreachable, and no trunk's next hop: not tried again until a request wants it");
            break;
        }
    }
    drop(tx);
    while let Ok(b) = rx.try_recv() {
        answer(b);
    }
    shared.tcp_out.remove_if(&(addr, src), |_, v| *v == id);
    shared.tcp_conns.remove(&id);
    reachable(&shared, addr);
    // Whatever was queued after the last look has nowhere to go.
    while rx.try_recv().is_ok() {
        shared.metrics.dropped("tcp-gone");
    }
}

/// One of our OPTIONS probes ([`super::probe`]): not a message a peer sent, so its loss
/// is no request dropped (QA 133: a probe's failed connection counted as one).
fn our_probe(b: &[u8]) -> bool {
    let branch = super::stateless::PROBE_BRANCH;
    b.starts_with(b"OPTIONS ") && b.windows(branch.len()).any(|w| w == branch)
}

/// A stream closed for a message that cannot be framed. The core's connection carries
/// every call's answers: its loss is said (QA 79: only a parse-error counter moved, and
/// the answers after it on that connection were lost); a peer's is only counted.
fn cut_off(outbound: bool, peer: SocketAddr, why: crate::sip::ErrorKind) {
    if outbound {
        tracing::warn!(addr = %peer, error = why.as_str(), "the next hop sent a message that cannot be framed (a Content-Length missing or wrong, or too large): its connection is closed, with the answers it would have carried after it; the next request opens another");
    } else {
        tracing::debug!(addr = %peer, error = why.as_str(), "a peer's stream closed for a message that cannot be framed");
    }
}

/// A connection that ends with part of a message read: the message is lost, and
/// counted (QA 49: nothing said so). Keep-alive CRLFs are no message.
fn closed_mid_message(shared: &Shared, buf: &[u8]) {
    if buf.iter().any(|&c| c != b'\r' && c != b'\n') {
        shared.metrics.dropped("tcp-closed-mid-message");
    }
}

/// A message for the next hop `addr` lost on a connection that broke (or went, and
/// was never answered): counted, and answered as [`unreachable`] says.
fn lost(
    shared: &Arc<Shared>,
    udps: &Udps,
    from: usize,
    local: ListenSpec,
    addr: SocketAddr,
    b: Bytes,
) {
    if !our_probe(&b) {
        shared.metrics.dropped("tcp-gone");
    }
    unreachable(shared, udps, from, local, addr, b, NEXT_HOP_UNREACHABLE);
}

/// A request that could not be sent to the next hop `addr`: it is answered 503 (with
/// Retry-After) as if the next hop had answered, which is what RFC 3261 16.9 has a
/// proxy do on a transport error, so that the caller's side tries another route at once
/// instead of retransmitting into nothing until Timer B or F (an ACK is never answered). The 503
/// goes back the way the next hop's answers go (our Via taken off) and is mirrored like
/// one, but not counted as a message received: none came (QA 32; the loss is counted as
/// `tcp-connect-failed`, or `send-failed` for a UDP next hop of an IP family the
/// gateway has no socket of).
pub fn unreachable(
    shared: &Arc<Shared>,
    udps: &Udps,
    from: usize,
    local: ListenSpec,
    addr: SocketAddr,
    request: Bytes,
    why: &'static str,
) {
    let Ok(req) = crate::sip::Message::parse(request) else {
        return;
    };
    // Any request but an ACK (which is never answered): a re-INVITE, an INVITE with an
    // invented To-tag (judged as a call) and a BYE end at once as well, rather than be
    // retransmitted into nothing (QA 40).
    if req.method().is_none_or(|m| m == crate::sip::Method::Ack) {
        return;
    }
    let l = shared.loaded.load();
    let server = (!l.policy.server.is_empty()).then_some(l.policy.server.as_str());
    let extra = crate::sip::response::Extra {
        reason_text: Some(why),
        retry_after: super::stateless::retry_after_for(&l.policy, addr),
        server,
        ..Default::default()
    };
    // A request for a trunk's peer came from the core's side: its 503 is one of the
    // core's refusals (QA 89 F5: counted nowhere).
    if !l.policy.is_next_hop(&addr) {
        shared.metrics.core_refused(503);
    }
    let mut answer = Vec::new();
    crate::sip::response::write_response(&req, 503, "Service Unavailable", &extra, &mut answer);
    let o = Origin {
        source: addr,
        local: ListenSpec {
            transport: Transport::Tcp,
            addr: local.addr,
        },
        conn: None,
    };
    let (mut msg, mut edits, mut out) = (
        crate::sip::Message::empty(),
        EditList::new(),
        Vec::with_capacity(answer.len()),
    );
    let arrival = udp::Arrival::now();
    let step = udp::step(shared, &l, arrival, vias(shared, udps, from, local), false);
    let relayed = super::stateless::handle(
        &step,
        Bytes::from(answer),
        &mut msg,
        &o,
        &mut out,
        &mut edits,
        &mut |_| {},
    );
    match relayed {
        Ok(super::stateless::Handled::Forward(d)) => {
            udp::send_now(shared, udps, from, local, d, &out)
        }
        Ok(super::stateless::Handled::Dropped(reason)) => shared.metrics.dropped(reason),
        _ => {}
    }
    if l.policy.tracks_calls && l.policy.is_next_hop(&addr) {
        crate::behaviour::bye_not_delivered(&req, false, &shared.behaviour, arrival.now_ms);
    }
}

/// The addresses our Via names for requests a connection on `local` forwards: those of
/// the worker's UDP sockets ([`udp::vias`]); where none is of the other IP family, the
/// address a TCP listener gives peers of that family (a `[::]` one's other address, or
/// a bound listener of that family, on `local`'s port first), so that a gateway with
/// TCP listeners only records a route of each side's family too (QA 40). The addresses
/// are those found at start ([`Shared::names_at`]): no routing-table lookup per
/// connection.
pub(super) fn vias(
    shared: &Shared,
    udps: &Udps,
    from: usize,
    local: ListenSpec,
) -> (SocketAddr, Option<SocketAddr>) {
    let (first, also) = shared.names_at(local.addr);
    let (here, other) = udp::vias(udps, from, first);
    if other.is_some() {
        return (here, other);
    }
    let v4 = !here.is_ipv4();
    let other = also.filter(|a| a.is_ipv4() == v4).or_else(|| {
        shared
            .start_only
            .listen
            .iter()
            .filter(|t| t.transport == Transport::Tcp)
            .map(|t| shared.names_at(t.addr).0)
            .filter(|a| a.is_ipv4() == v4 && !a.ip().is_unspecified())
            .min_by_key(|a| a.port() != local.addr.port())
    });
    (here, other)
}

/// Reads and writes one connection, accepted or opened (`side`), until it closes,
/// idles out (nothing read or written for `tcp_idle_secs`) or breaks framing; then
/// unregisters it. `tx` is the sender registered under `id`, kept for keep-alive answers.
#[allow(clippy::too_many_arguments)]
async fn serve_stream(
    shared: &Arc<Shared>,
    udps: &Udps,
    local: ListenSpec,
    stream: TcpStream,
    peer: SocketAddr,
    id: u64,
    side: Side,
    tx: mpsc::Sender<Bytes>,
    mut rx: mpsc::Receiver<Bytes>,
) {
    let outbound = side != Side::Accepted;
    let unregister = || {
        match side {
            Side::Accepted => drop(shared.tcp_peers.remove_if(&peer, |_, v| *v == id)),
            Side::Opened(src) => drop(shared.tcp_out.remove_if(&(peer, src), |_, v| *v == id)),
        }
        shared.tcp_conns.remove(&id);
    };
    // A worker without a UDP socket (only TCP listeners) forwards over TCP alone: a
    // datagram it would send is answered 503 like one of an IP family it has no socket
    // of (`from` then names none).
    let from = udp::forwarder(udps, &local).unwrap_or(usize::MAX);
    let vias = vias(shared, udps, from, local);
    let ends = (stream.local_addr().unwrap_or(local.addr), peer);
    let (mut rd, mut wr) = stream.into_split();
    shared.metrics.tcp_connections.inc();
    // Milliseconds since `base` of the last write: a connection we only write to (a
    // core that has not answered yet) is not idle.
    let base = std::time::Instant::now();
    let last_write = Arc::new(AtomicU64::new(0));
    let lw = last_write.clone();
    // The requests written on a connection we opened before the core has sent a byte
    // back: if it closes without one (a balancer that accepts and resets), they were
    // lost, and are answered as on a connection that cannot be made, which also gives
    // back the places their calls took (QA 62: unanswered, they held them for minutes).
    // An ACK expects no answer and is not kept.
    let heard = Arc::new(std::sync::atomic::AtomicBool::new(!outbound));
    let unheard: Arc<std::sync::Mutex<Vec<Bytes>>> = Arc::default();
    let (hw, uw) = (heard.clone(), unheard.clone());
    let sh = shared.clone();
    let ud = udps.clone();
    let writer = tokio::spawn(async move {
        while let Some(b) = rx.recv().await {
            if wr.write_all(&b).await.is_err() {
                // What can no longer be written is lost: counted, and the requests for
                // a next hop answered 503 as on a connection that cannot be made (QA 60:
                // a core that accepts and resets left INVITEs unanswered, uncounted).
                let gone = |b: Bytes| {
                    if !b.iter().any(|&c| c != b'\r' && c != b'\n') {
                        // A keep-alive answer: no message.
                    } else if outbound {
                        lost(&sh, &ud, from, local, peer, b);
                    } else {
                        sh.metrics.dropped("tcp-gone");
                    }
                };
                gone(b);
                while let Ok(b) = rx.try_recv() {
                    gone(b);
                }
                break;
            }
            if !hw.load(Ordering::Relaxed)
                && !b.starts_with(b"SIP/")
                && !b.starts_with(b"ACK ")
                && b.iter().any(|&c| c != b'\r' && c != b'\n')
                && let Ok(mut v) = uw.lock()
                && v.len() < QUEUE
            {
                v.push(b.clone());
            }
            // Keep-alive answers (CRLF) are not SIP messages: not mirrored.
            if let Some(h) = &sh.hep
                && b.iter().any(|&c| c != b'\r' && c != b'\n')
            {
                h.mirror(ends.0, ends.1, Transport::Tcp, &b);
            }
            lw.store(base.elapsed().as_millis() as u64, Ordering::Relaxed);
        }
    });
    let idle = Duration::from_secs(shared.loaded.load().policy.proxy.tcp_idle_secs.max(1));
    let mut buf = BytesMut::with_capacity(8192);
    let mut edits = EditList::new();
    let mut msg = crate::sip::Message::empty();
    let mut out = Vec::with_capacity(2048);
    // Messages read here came over TCP, whatever listener the connection serves.
    let o = Origin {
        source: peer,
        local: ListenSpec {
            transport: Transport::Tcp,
            addr: local.addr,
        },
        conn: Some(id),
    };
    // When the bytes of a message not yet whole began to arrive: a message must be
    // whole within `idle` of its first byte, so that a peer trickling a byte now and
    // then (slowloris) cannot hold a connection, and a place under
    // `max_tcp_connections`, for ever (QA 44; Kamailio's `tcp_msg_read_timeout`).
    let mut partial_since: Option<std::time::Instant> = None;
    // A busy period, as a UDP socket's: from a read that found bytes waiting until one
    // finds the socket empty. One longer than `overload_ms` means the peer sends faster
    // than this worker handles, and its bytes queue in the kernel: new INVITEs are then
    // answered 503 cheaply until it drains (QA 49: over TCP every INVITE was judged in
    // full, answers came seconds late, and the overload counter and readiness never
    // moved).
    let mut busy_since: Option<std::time::Instant> = None;
    'conn: loop {
        // Bytes already waiting are read without a wake-up, and keep the period going.
        let waiting = match rd.try_read_buf(&mut buf) {
            Ok(0) => {
                closed_mid_message(shared, &buf);
                break;
            }
            Ok(_) => {
                heard.store(true, Ordering::Relaxed);
                true
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => false,
            // A reset: what was read of a message is lost as at a close (QA 161: a
            // reset right after part of an INVITE went uncounted).
            Err(_) => {
                closed_mid_message(shared, &buf);
                break;
            }
        };
        if waiting {
            busy_since.get_or_insert_with(std::time::Instant::now);
            // A read that never waits takes no turn from tokio's budget: take one, so
            // that a peer that keeps sending cannot starve the worker's other sockets.
            tokio::task::coop::consume_budget().await;
        } else {
            busy_since = None;
        }
        let wait = partial_since.map_or(idle, |t| idle.saturating_sub(t.elapsed()));
        let read = if waiting {
            Ok(Ok(1))
        } else {
            tokio::time::timeout(wait, rd.read_buf(&mut buf)).await
        };
        match read {
            Err(_) => {
                if partial_since.is_some_and(|t| t.elapsed() >= idle) {
                    shared.metrics.dropped("tcp-slow-message");
                    break;
                }
                let since_write = (base.elapsed().as_millis() as u64)
                    .saturating_sub(last_write.load(Ordering::Relaxed));
                if since_write < idle.as_millis() as u64 {
                    continue;
                }
                shared.metrics.dropped("tcp-idle");
                break;
            }
            Ok(Ok(0)) | Ok(Err(_)) => {
                closed_mid_message(shared, &buf);
                break;
            }
            Ok(Ok(_)) => heard.store(true, Ordering::Relaxed),
        }
        loop {
            match frame_stream(&buf) {
                Ok(Frame::Incomplete) => {
                    if buf.len() > MAX_MESSAGE + 4 {
                        shared
                            .metrics
                            .parse_error("tcp", crate::sip::ErrorKind::TooLarge);
                        cut_off(outbound, peer, crate::sip::ErrorKind::TooLarge);
                        break 'conn;
                    }
                    // Keep-alive CRLFs are framed whole: what waits here is a message.
                    if buf.is_empty() {
                        partial_since = None;
                    } else if partial_since.is_none() {
                        partial_since = Some(std::time::Instant::now());
                    }
                    break;
                }
                Ok(Frame::Ping(n)) => {
                    buf.advance(n);
                    shared.metrics.keepalive("tcp");
                    let _ = tx.try_send(Bytes::from_static(b"\r\n"));
                }
                Ok(Frame::Message { skip, len }) => {
                    partial_since = None;
                    buf.advance(skip);
                    let data = buf.split_to(len).freeze();
                    if let Some(h) = &shared.hep {
                        h.mirror(peer, ends.0, Transport::Tcp, &data);
                    }
                    let l = shared.loaded.load();
                    let arrival = udp::Arrival::now();
                    let overload_after = Duration::from_millis(l.policy.proxy.overload_ms.max(1));
                    let overloaded =
                        busy_since.is_some_and(|t| arrival.at.duration_since(t) > overload_after);
                    if let Some(d) = udp::handle_one(
                        shared, &l, arrival, vias, data, &o, overloaded, &mut msg, &mut edits,
                        &mut out,
                    ) {
                        udp::send(shared, udps, from, local, d, &out).await;
                    }
                    // Let go of the slice of `buf`, which can then reuse its memory.
                    msg.clear();
                }
                Err(e) => {
                    // The stream cannot be resynchronised after a framing error.
                    shared.metrics.parse_error("tcp", e.kind);
                    cut_off(outbound, peer, e.kind);
                    let data = buf.split().freeze();
                    let l = shared.loaded.load();
                    let silent = l.policy.silent_to(&peer, Some(&o.local));
                    let server = (!l.policy.server.is_empty()).then_some(l.policy.server.as_str());
                    if !silent
                        && let Some(Dest::Tcp(_)) = super::stateless::bad_request_for(
                            &data,
                            peer,
                            Some(id),
                            &e,
                            server,
                            &mut out,
                        )
                    {
                        let _ = tx.try_send(Bytes::copy_from_slice(&out));
                    }
                    break 'conn;
                }
            }
        }
    }
    unregister();
    shared.metrics.tcp_connections.dec();
    drop(tx);
    // Let queued answers go out before the socket closes.
    let _ = tokio::time::timeout(Duration::from_secs(2), writer).await;
    if !heard.load(Ordering::Relaxed) {
        let unanswered = unheard.lock().map(|mut v| std::mem::take(&mut *v));
        for b in unanswered.unwrap_or_default() {
            lost(shared, udps, from, local, peer, b);
        }
    }
}
