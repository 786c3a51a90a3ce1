//! UDP: one SO_REUSEPORT socket per listen address per worker. After each readiness
//! wake-up the socket is drained in batches: `recvmmsg` brings up to 32 datagrams per
//! system call, each goes through the stateless step, and what they produce leaves in
//! one `sendmmsg` (see [`super::mmsg`]).

use bytes::{Bytes, BytesMut};
use socket2::{Domain, Protocol, Socket, Type};
use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::Instant;
use tokio::io::Interest;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use super::mmsg::{self, BATCH, RecvBatch};
use super::stateless::{self, Dest, Handled, Observed, Origin, Step};
use super::{Loaded, Shared};
use crate::observability::homer::HepBatch;
use crate::policy::config::{ListenSpec, Transport};
use crate::sip::Message;
use crate::sip::rewrite::EditList;

pub fn bind(addr: SocketAddr) -> io::Result<std::net::UdpSocket> {
    let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    s.set_reuse_address(true)?;
    s.set_reuse_port(true)?;
    // Bursts wait in the kernel rather than being dropped while a worker is busy.
    let _ = s.set_recv_buffer_size(8 << 20);
    let _ = s.set_send_buffer_size(8 << 20);
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    Ok(s.into())
}

/// A worker's UDP sockets: the listener each serves, the socket, the address our Via
/// names for it and, for a `[::]` wildcard (which carries IPv4 too), the one it names
/// to peers of the other IP family ([`super::advertised_both`]).
pub type UdpVec = Vec<(ListenSpec, Arc<UdpSocket>, SocketAddr, Option<SocketAddr>)>;
pub type Udps = Arc<UdpVec>;

/// The socket that forwards for a listener (its index in `udps`): the UDP one on the
/// same address, else the first.
pub fn forwarder(udps: &Udps, local: &ListenSpec) -> Option<usize> {
    udps.iter()
        .position(|u| u.0.addr == local.addr)
        .or_else(|| (!udps.is_empty()).then_some(0))
}

/// The socket (index in `udps`) that sends a datagram to `dest` for the socket `from`,
/// and the address to give the kernel: `from` itself when it is of `dest`'s IP family
/// (a `[::]` wildcard is of both: an IPv4 address is written IPv4-mapped), else the
/// worker's socket of that family (on `from`'s port first), else another dual-stack
/// wildcard. `None`: this worker has no socket that can reach that family.
pub fn sender(udps: &Udps, from: usize, dest: SocketAddr) -> Option<(usize, SocketAddr)> {
    let dest = crate::canonical(dest);
    let family = |i: usize| udps[i].0.addr.is_ipv4();
    // Only a socket bound to `[::]` also carries IPv4 (Linux's default,
    // net.ipv6.bindv6only = 0).
    let dual = |i: usize| {
        let a = udps[i].0.addr;
        a.is_ipv6() && a.ip().is_unspecified()
    };
    let mapped = |d: SocketAddr| match d {
        SocketAddr::V4(v4) => SocketAddr::new(v4.ip().to_ipv6_mapped().into(), v4.port()),
        d => d,
    };
    if udps.get(from).is_some() {
        if family(from) == dest.is_ipv4() {
            return Some((from, dest));
        }
        if dest.is_ipv4() && dual(from) {
            return Some((from, mapped(dest)));
        }
    }
    let port = udps.get(from).map(|u| u.0.addr.port());
    let same = |i: &usize| family(*i) == dest.is_ipv4();
    if let Some(j) = (0..udps.len())
        .filter(same)
        .min_by_key(|&i| Some(udps[i].0.addr.port()) != port)
    {
        return Some((j, dest));
    }
    if !dest.is_ipv4() {
        return None;
    }
    let wild = (0..udps.len()).find(|&i| dual(i))?;
    Some((wild, mapped(dest)))
}

/// The socket (index in `udps`) a datagram for `dest` received on the socket `from`
/// leaves by, and the address to give the kernel: [`sender`]'s choice, except that a
/// datagram crossing IP families, or a `[::]` socket's to an IPv4 peer, leaves by a UDP
/// listen address of the trunk that claims the peer when it has one: the address its
/// peer sent the call to (RFC 3581 4; QA 67, QA 69: it left by another trunk's socket,
/// which a peer's firewall or NAT drops). Another socket's datagram is sent by
/// [`send`], which gives the kernel its address.
fn leaves_by(
    udps: &Udps,
    policy: &crate::policy::Policy,
    from: usize,
    dest: SocketAddr,
) -> Option<(usize, SocketAddr)> {
    let (j, to) = sender(udps, from, dest)?;
    let a = udps[from].0.addr;
    let wildcard_to_v4 =
        a.is_ipv6() && a.ip().is_unspecified() && dest.ip().to_canonical().is_ipv4();
    if j == from && !wildcard_to_v4 {
        return Some((j, to));
    }
    let dest = crate::canonical(dest);
    let own = policy.match_trunk(&dest, None).and_then(|t| {
        let listen = &policy.trunks[t].listen;
        udps.iter().position(|u| {
            listen
                .iter()
                .any(|l| l.transport == Transport::Udp && l.addr == u.0.addr)
                && (u.0.addr.is_ipv4() == dest.is_ipv4()
                    || (u.0.addr.is_ipv6() && u.0.addr.ip().is_unspecified()))
        })
    });
    match own {
        // The trunk's own socket is of the peer's family or a `[::]` one: it sends
        // to the address `sender` writes for it (IPv4-mapped on a wildcard).
        Some(own) if own != j => sender(udps, own, dest),
        _ => Some((j, to)),
    }
}

/// The address our Via names for a datagram the socket `j` sends to a peer of IP family
/// `v4`.
pub fn named(udps: &Udps, j: usize, v4: bool) -> Option<SocketAddr> {
    let u = udps.get(j)?;
    [Some(u.2), u.3]
        .into_iter()
        .flatten()
        .find(|a| a.is_ipv4() == v4)
}

/// The addresses our Via names for requests the socket `from` forwards: its own, and
/// the one it or the worker's socket of the other IP family gives to peers of that
/// family, if any (see [`Step::via_other`]). `alone`: what our Via names when `from`
/// is no socket (a worker with TCP listeners only).
pub fn vias(udps: &Udps, from: usize, alone: SocketAddr) -> (SocketAddr, Option<SocketAddr>) {
    let here = udps.get(from).map_or(alone, |u| u.2);
    let probe = if here.is_ipv4() {
        SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, 0))
    } else {
        SocketAddr::from(([127, 0, 0, 1], 0))
    };
    let other = sender(udps, from, probe).and_then(|(j, _)| named(udps, j, probe.is_ipv4()));
    (here, other)
}

/// A datagram this worker cannot send (no socket of its family, or the send failed):
/// counted, and logged at most once every ten seconds (a flood of them must not flood
/// the log).
pub fn send_failed(shared: &Shared, dest: SocketAddr, why: &dyn std::fmt::Display) {
    shared.metrics.dropped("send-failed");
    static LAST: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    if super::say_every_10s(&LAST) {
        tracing::warn!(%dest, error = %why, "cannot send (counted in sipfence_dropped_total{{reason=\"send-failed\"}}; this line at most every 10 s)");
    }
}

/// When a batch of messages came in, read once for all of them: the steady and wall
/// clocks the rules see ([`crate::decide::Context`]), and the instant the decision
/// latency is measured from (so the latency includes the wait behind earlier messages
/// of the same batch, as a caller sees it).
#[derive(Clone, Copy)]
pub struct Arrival {
    pub now_ms: u64,
    pub wall_ms: u64,
    pub at: Instant,
}

impl Arrival {
    pub fn now() -> Arrival {
        Arrival {
            now_ms: crate::cli::steady_ms(),
            wall_ms: crate::cli::now_ms(),
            at: Instant::now(),
        }
    }
}

/// The stateless step a worker takes with the policy `l` loaded, at `arrival`'s times,
/// with `vias` from [`vias`].
pub fn step<'a>(
    shared: &'a Shared,
    l: &'a Loaded,
    arrival: Arrival,
    vias: (SocketAddr, Option<SocketAddr>),
    overloaded: bool,
) -> Step<'a> {
    Step {
        policy: &l.policy,
        rates: &*shared.rates,
        behaviour: &shared.behaviour,
        now_ms: arrival.now_ms,
        wall_ms: arrival.wall_ms,
        via_addr: vias.0,
        via_other: vias.1,
        overloaded,
        draining: shared.draining.load(std::sync::atomic::Ordering::Relaxed),
        next_hops: shared,
    }
}

/// Runs one message through the stateless step: counts it, observes the decision, and
/// leaves what must be sent in `out`. Returns where it goes, if anywhere. `l` is the
/// policy loaded when the batch began: a reload takes effect from the next batch.
#[allow(clippy::too_many_arguments)]
pub fn handle_one(
    shared: &Shared,
    l: &Loaded,
    arrival: Arrival,
    vias: (SocketAddr, Option<SocketAddr>),
    data: Bytes,
    o: &Origin,
    overloaded: bool,
    msg: &mut Message,
    edits: &mut EditList,
    out: &mut Vec<u8>,
) -> Option<Dest> {
    let transport = o.local.transport.as_str();
    if crate::sip::parse::keepalive(&data) {
        shared.metrics.keepalive(transport);
        return None;
    }
    let response = data.starts_with(b"SIP/");
    let step = step(shared, l, arrival, vias, overloaded);
    let raw = data.clone();
    let mut observe = |ob: Observed<'_>| match ob {
        Observed::Decision(m, d) => shared.observe(
            l,
            m,
            d,
            o.source,
            o.local.addr,
            // Records carry the calendar time.
            arrival.wall_ms,
            arrival.at.elapsed().as_secs_f64(),
        ),
        Observed::Behaviour(trunk, seen) => l.bound.behaviour_event(trunk, seen),
        Observed::CoreRefused(code) => shared.metrics.core_refused(code),
        Observed::Flow(event) => shared.metrics.nat_flow(event),
        Observed::ProbeAnswer(from) => {
            if shared.probes.answered(from, o.local.transport) {
                shared.count_next_hops_down();
            }
        }
    };
    let handled = stateless::handle(&step, data, msg, o, out, edits, &mut observe);
    // SIP messages only: what does not parse is counted in parse_errors_total.
    if handled.is_ok() {
        shared.count_message(o.local.transport, response);
    }
    match handled {
        Ok(Handled::Forward(d)) | Ok(Handled::Respond(d, _)) => Some(d),
        Ok(Handled::Shed(d)) => {
            let t = l.policy.match_trunk(&o.source, Some(&o.local));
            l.bound.overload(t);
            shared
                .shed_at_ms
                .store(arrival.now_ms, std::sync::atomic::Ordering::Relaxed);
            Some(d)
        }
        Ok(Handled::Absorbed) => None,
        Ok(Handled::Dropped(reason)) => {
            shared.metrics.dropped(reason);
            None
        }
        Err(e) => {
            shared.metrics.parse_error(transport, e.kind);
            tracing::debug!(source = %o.source, error = %e, "malformed message");
            let d = if e.answerable() && !l.policy.silent_to(&o.source, Some(&o.local)) {
                let server = (!l.policy.server.is_empty()).then_some(l.policy.server.as_str());
                stateless::bad_request_for(&raw, o.source, o.conn, &e, server, out)
            } else {
                None
            };
            if d.is_none() {
                shared.metrics.dropped("malformed");
            } else if l.policy.from_core_side(&o.source) {
                // The core's request answered here, as the ones that parse are (QA 95:
                // its BYE with a broken From got its 400 counted nowhere but the parse
                // errors).
                shared.metrics.core_refused(stateless::bad_request_code(&e));
            }
            d
        }
    }
}

/// Sends one message (the TCP path, and anything not batched) for the socket `from`
/// (a datagram leaves by the socket of its destination's family, see [`sender`]).
/// `udps` and `local` serve a connection to a next hop that has to be opened.
pub async fn send(
    shared: &Arc<Shared>,
    udps: &Udps,
    from: usize,
    local: ListenSpec,
    dest: Dest,
    bytes: &[u8],
) {
    match now_bound(shared, dest) {
        Dest::Udp(addr) => {
            let Some((j, to)) = sender(udps, from, addr) else {
                return no_socket(shared, udps, from, local, addr, bytes);
            };
            let sock = &udps[j].1;
            mirror_sent(shared, udps, j, addr, bytes);
            match sock.try_send_to(bytes, to) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if let Err(e) = sock.send_to(bytes, to).await {
                        send_failed(shared, addr, &e);
                    }
                }
                Err(e) => send_failed(shared, addr, &e),
            }
        }
        Dest::Tcp(id) | Dest::TcpBack(id, _) => {
            send_tcp_waiting(shared, id, bytes, TCP_QUEUE_WAIT).await;
        }
        Dest::TcpTo(addr) => super::tcp::send_to_peer(shared, udps, from, local, addr, bytes),
    }
}

/// Where a message goes now: a response for a TCP connection that has closed
/// ([`Dest::TcpBack`]) over a new one to the address its Via names, every other as it
/// is. Asked by each path that sends, once, before it looks at the destination.
fn now_bound(shared: &Shared, dest: Dest) -> Dest {
    match dest {
        Dest::TcpBack(id, back) if !shared.tcp_conns.contains_key(&id) => Dest::TcpTo(back),
        d => d,
    }
}

/// How long a connection's reader waits for room in a connection's writer queue before
/// the message is dropped (and counted).
const TCP_QUEUE_WAIT: std::time::Duration = std::time::Duration::from_millis(500);

/// How long a UDP worker waits, once its batch is out, for room in a TCP connection's
/// queue: short, since the worker serves every peer of its socket meanwhile, and once
/// per connection per batch (a connection that stays full loses the rest of the batch's
/// messages at once).
const TCP_QUEUE_WAIT_UDP: std::time::Duration = std::time::Duration::from_millis(20);

/// [`send_tcp`] that waits (up to `wait`) for room in the writer's queue rather than
/// dropping the message. From a connection's reader, it reads nothing more meanwhile:
/// a peer that sends a burst of requests on one connection then gets every answer, at
/// the pace it reads them (QA 44: 660 of 1,000 answers to a burst of OPTIONS were
/// dropped, the reader having answered them all before the writer ran once). A peer
/// that reads nothing still gets its answers dropped, after the wait, not the gateway
/// held.
async fn send_tcp_waiting(shared: &Shared, id: u64, bytes: &[u8], wait: std::time::Duration) {
    if let Err(full) = try_send_tcp(shared, id, bytes) {
        wait_for_room(shared, full, wait).await;
    }
}

/// A message for a full writer queue ([`try_send_tcp`]) sent once there is room, within
/// `wait`: false (dropped and counted) when there is none by then.
async fn wait_for_room(shared: &Shared, full: Full, wait: std::time::Duration) -> bool {
    let (tx, b) = full;
    let sent = matches!(tokio::time::timeout(wait, tx.send(b)).await, Ok(Ok(())));
    if !sent {
        shared.metrics.dropped("tcp-backlog");
    }
    sent
}

/// Sends at once, never waiting (an answer made up on a failure path): a datagram that
/// would block is dropped and counted.
pub fn send_now(
    shared: &Arc<Shared>,
    udps: &Udps,
    from: usize,
    local: ListenSpec,
    dest: Dest,
    bytes: &[u8],
) {
    match now_bound(shared, dest) {
        Dest::Udp(addr) => match sender(udps, from, addr) {
            Some((j, to)) => {
                mirror_sent(shared, udps, j, addr, bytes);
                if let Err(e) = udps[j].1.try_send_to(bytes, to) {
                    send_failed(shared, addr, &e);
                }
            }
            None => send_failed(shared, addr, &"no socket of its IP family"),
        },
        Dest::Tcp(id) | Dest::TcpBack(id, _) => send_tcp(shared, id, bytes),
        Dest::TcpTo(addr) => super::tcp::send_to_peer(shared, udps, from, local, addr, bytes),
    }
}

/// A datagram for an address of an IP family this worker has no socket of (an IPv4 core
/// with only IPv6 listeners): counted and logged, and an initial INVITE is answered 503
/// as for a next hop that cannot be reached, so that its caller tries another route
/// instead of retransmitting into nothing (`check` warns of such a trunk).
fn no_socket(
    shared: &Arc<Shared>,
    udps: &Udps,
    from: usize,
    local: ListenSpec,
    addr: SocketAddr,
    bytes: &[u8],
) {
    send_failed(
        shared,
        addr,
        &"no UDP listener (of its IP family) to send from",
    );
    super::tcp::unreachable(
        shared,
        udps,
        from,
        local,
        addr,
        Bytes::copy_from_slice(bytes),
        super::stateless::NEXT_HOP_UNREACHABLE,
    );
}

/// Mirrors a datagram sent from `from` to `to` to Homer (`[hep]`), one at a time (the
/// UDP receive loop batches its own). Messages that go over TCP are mirrored by their
/// connection's writer, which knows both ends.
pub fn mirror_sent(shared: &Shared, udps: &Udps, j: usize, to: SocketAddr, bytes: &[u8]) {
    if let Some(h) = &shared.hep {
        let (from, to) = sent_as(udps, j, to);
        h.mirror(from, to, Transport::Udp, bytes);
    }
}

/// A datagram the socket `j` sends to `to`, as a capture would show it: from the address
/// our Via names to peers of `to`'s family, to `to` (not IPv4-mapped).
fn sent_as(udps: &Udps, j: usize, to: SocketAddr) -> (SocketAddr, SocketAddr) {
    let to = crate::canonical(to);
    let from = named(udps, j, to.is_ipv4())
        .or_else(|| udps.get(j).map(|u| u.2))
        .unwrap_or(to);
    (from, to)
}

/// Hands bytes to a TCP connection's writer; never waits.
pub fn send_tcp(shared: &Shared, id: u64, bytes: &[u8]) {
    if try_send_tcp(shared, id, bytes).is_err() {
        shared.metrics.dropped("tcp-backlog");
    }
}

/// A connection's writer queue found full, and the message that did not fit.
type Full = (mpsc::Sender<Bytes>, Bytes);

/// Hands bytes to a TCP connection's writer if its queue has room: `Ok(true)` when
/// queued. A full queue gives the queue and the message back (nothing counted yet: the
/// caller waits for room or drops it); a connection gone or closed is counted here
/// (`Ok(false)`).
pub(super) fn try_send_tcp(shared: &Shared, id: u64, bytes: &[u8]) -> Result<bool, Full> {
    let Some(tx) = shared.tcp_conns.get(&id).map(|t| t.clone()) else {
        shared.metrics.dropped("tcp-gone");
        return Ok(false);
    };
    match tx.try_send(Bytes::copy_from_slice(bytes)) {
        Ok(()) => Ok(true),
        Err(mpsc::error::TrySendError::Full(b)) => Err((tx, b)),
        Err(mpsc::error::TrySendError::Closed(_)) => {
            shared.metrics.dropped("tcp-backlog");
            Ok(false)
        }
    }
}

/// The receive arena's size: a batch of typical datagrams (32 x 2 KiB) fits without
/// growing it.
const ARENA: usize = 64 * 1024;

/// Receive loop of one UDP socket.
pub async fn serve(shared: Arc<Shared>, udps: Udps, i: usize) {
    let (local, sock) = (udps[i].0, udps[i].1.clone());
    let vias = vias(&udps, i, local.addr);
    let fd = sock.as_raw_fd();
    let mut rb = RecvBatch::new();
    let mut outs: Vec<Vec<u8>> = (0..BATCH).map(|_| Vec::with_capacity(2048)).collect();
    let mut edits = EditList::new();
    let mut msg = Message::empty();
    let mut pending: Vec<(SocketAddr, usize)> = Vec::with_capacity(BATCH);
    let mut across: Vec<(SocketAddr, usize, usize)> = Vec::new();
    // Messages for TCP connections whose queue was full: sent once the batch is out,
    // waiting a little for room (QA 45: the core's answers to a burst of INVITEs on one
    // connection, relayed by this worker faster than the connection's writer ran).
    let mut to_tcp: Vec<(u64, Full)> = Vec::new();
    let mut full: Vec<u64> = Vec::new();
    // The batches' datagrams are copied into this one buffer and handed out as slices of
    // it. Once every slice of a batch is dropped (the usual case: a stateless step keeps
    // nothing), `reserve` takes the same memory back, so a batch costs no allocation; a
    // slice still held elsewhere only makes the next batch start a new buffer. (A fresh
    // buffer per batch cost two allocations and two frees: the buffer, and the shared
    // header `bytes` adds when a buffer is first split.)
    let mut arena = BytesMut::with_capacity(ARENA);
    // The copies for Homer (`[hep]`) of what each batch read and sent.
    let mut hep = HepBatch::new();
    loop {
        if sock.readable().await.is_err() {
            continue;
        }
        // A busy period: from the wake-up until the socket is empty. One that lasts
        // longer than `overload_ms` means datagrams arrive faster than we handle them
        // and the kernel queue grows: new INVITEs then get 503 cheaply until it drains.
        let mut busy_since: Option<Instant> = None;
        let mut batches = 0u32;
        loop {
            // Drained until EAGAIN, not just until a short batch: measured, the extra
            // call often finds datagrams that arrived while the batch was handled, and
            // saves a wake-up (at 2,000 calls/s, 12% less CPU than stopping at a short
            // batch; the same at 8,000).
            let n = match sock.try_io(Interest::READABLE, || rb.recv(fd)) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                // ICMP port unreachable from an earlier send, and the like: not fatal.
                Err(_) => continue,
            };
            // Clocks and the policy are read once per batch, not per datagram.
            let arrival = Arrival::now();
            let l = shared.loaded.load();
            let since = *busy_since.get_or_insert(arrival.at);
            let overload_after =
                std::time::Duration::from_millis(l.policy.proxy.overload_ms.max(1));
            let overloaded = arrival.at.duration_since(since) > overload_after;
            arena.reserve((0..n).map(|k| rb.get(k).0.len()).sum::<usize>().max(ARENA));
            for k in 0..n {
                arena.extend_from_slice(rb.get(k).0);
            }
            pending.clear();
            across.clear();
            for (k, out) in outs.iter_mut().enumerate().take(n) {
                let (d, src) = rb.get(k);
                let o = Origin {
                    source: src,
                    local,
                    conn: None,
                };
                let data = arena.split_to(d.len()).freeze();
                if let Some(h) = &shared.hep
                    && crate::sip::parse::looks_like_sip(&data)
                {
                    // As the peer sent it: to the address our Via names to its family
                    // (a wildcard listener's own is `0.0.0.0`, which Homer would show as
                    // a host of its own).
                    let from = crate::canonical(src);
                    let to = named(&udps, i, from.is_ipv4()).unwrap_or(local.addr);
                    hep.push(h, from, to, Transport::Udp, &data);
                }
                match handle_one(
                    &shared, &l, arrival, vias, data, &o, overloaded, &mut msg, &mut edits, out,
                )
                .map(|d| now_bound(&shared, d))
                {
                    Some(Dest::Udp(a)) => match leaves_by(&udps, &l.policy, i, a) {
                        // The usual case: out by this socket, in the batch.
                        Some((j, to)) if j == i => {
                            if let Some(h) = &shared.hep {
                                let (from, to) = sent_as(&udps, i, to);
                                hep.push(h, from, to, Transport::Udp, out);
                            }
                            pending.push((to, k))
                        }
                        // By another socket (of the other IP family, or the peer's
                        // trunk's own), once the batch is out.
                        Some((j, _)) => across.push((a, k, j)),
                        None => no_socket(&shared, &udps, i, local, a, out),
                    },
                    Some(Dest::Tcp(id) | Dest::TcpBack(id, _)) => {
                        if let Err(full) = try_send_tcp(&shared, id, out) {
                            to_tcp.push((id, full));
                        }
                    }
                    Some(Dest::TcpTo(a)) => {
                        super::tcp::send_to_peer(&shared, &udps, i, local, a, out)
                    }
                    None => {}
                }
            }
            drop(l);
            // The last message still holds a slice of the arena: let go, so that the
            // next batch can take the arena's memory back.
            msg.clear();
            // Homer gets the batch's copies before its datagrams go: an answer they
            // bring about, read by another worker, is mirrored after them (QA 146: with
            // two workers, the core's 180 reached Homer before the INVITE it answered,
            // and a replay of the mirror read them in that order).
            if let Some(h) = &shared.hep {
                hep.flush(h);
            }
            let mut done = 0;
            while done < pending.len() {
                let items = &pending[done..];
                let sent = sock.try_io(Interest::WRITABLE, || {
                    mmsg::send_batch(fd, items.len(), |j| {
                        let (a, k) = items[j];
                        (a, outs[k].as_slice())
                    })
                });
                match sent {
                    Ok(n) => done += n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        if sock.writable().await.is_err() {
                            break;
                        }
                    }
                    Err(e) => {
                        // That one datagram cannot go (no route, refused...): skip it.
                        send_failed(&shared, pending[done].0, &e);
                        done += 1;
                    }
                }
            }
            for &(a, k, j) in &across {
                send(&shared, &udps, j, local, Dest::Udp(a), &outs[k]).await;
            }
            full.clear();
            for (id, f) in to_tcp.drain(..) {
                if full.contains(&id) {
                    shared.metrics.dropped("tcp-backlog");
                } else if !wait_for_room(&shared, f, TCP_QUEUE_WAIT_UDP).await {
                    full.push(id);
                }
            }
            batches += 1;
            if batches.is_multiple_of(4) {
                // Let the worker's other sockets and connections have their turn.
                tokio::task::yield_now().await;
            }
        }
    }
}
