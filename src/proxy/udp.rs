//! UDP: one SO_REUSEPORT socket per listen address per worker. After each readiness
//! wake-up the socket is drained with non-blocking receives (the cheap path measured by
//! the udp-relay peer); receive buffers are reused, so a datagram costs no allocation
//! until something has to be sent.

use bytes::BytesMut;
use socket2::{Domain, Protocol, Socket, Type};
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;
use tokio::net::UdpSocket;

use super::Shared;
use super::stateless::{self, Dest, Handled, Origin, Step};
use crate::policy::config::ListenSpec;
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

/// A worker's UDP sockets: the listener they serve, the socket, its bound address.
pub type Udps = Arc<Vec<(ListenSpec, Arc<UdpSocket>, SocketAddr)>>;

/// The socket that forwards for a listener: the UDP one on the same address, else the first.
pub fn forwarder(udps: &Udps, local: &ListenSpec) -> Option<(Arc<UdpSocket>, SocketAddr)> {
    udps.iter()
        .find(|(l, _, _)| l.addr == local.addr)
        .or_else(|| udps.first())
        .map(|(_, s, a)| (s.clone(), *a))
}

/// Reusable per-task buffers.
pub struct Scratch {
    pub out: Vec<u8>,
    pub edits: EditList,
}

impl Scratch {
    pub fn new() -> Scratch {
        Scratch {
            out: Vec::with_capacity(4096),
            edits: EditList::new(),
        }
    }
}

impl Default for Scratch {
    fn default() -> Self {
        Scratch::new()
    }
}

/// Runs one message through the stateless step and sends what comes out.
pub async fn process(
    shared: &Shared,
    fwd: &UdpSocket,
    via_addr: SocketAddr,
    data: bytes::Bytes,
    o: &Origin,
    overloaded: bool,
    sc: &mut Scratch,
) {
    let l = shared.loaded.load();
    let transport = o.local.transport.as_str();
    shared.count_message(o.local.transport, data.starts_with(b"SIP/"));
    let now = crate::cli::now_ms();
    let step = Step {
        policy: &l.policy,
        rates: &shared.rates,
        now_ms: now,
        via_addr,
        overloaded,
    };
    let t0 = Instant::now();
    let raw = data.clone();
    let mut observe = |m: &crate::sip::Message, d: &crate::decide::Decision| {
        shared.observe(
            &l,
            m,
            d,
            o.source,
            o.local.addr,
            now,
            t0.elapsed().as_secs_f64(),
        );
    };
    let res = stateless::handle(&step, data, o, &mut sc.out, &mut sc.edits, &mut observe);
    let dest = match res {
        Ok(Handled::Forward(d)) | Ok(Handled::Respond(d, _)) => d,
        Ok(Handled::Shed(d)) => {
            let t = l.policy.match_trunk(&o.source, Some(&o.local));
            l.bound.overload(t);
            d
        }
        Ok(Handled::Absorbed) => return,
        Ok(Handled::Dropped(reason)) => {
            shared.metrics.dropped(reason);
            return;
        }
        Err(e) => {
            shared.metrics.parse_error(transport, e.kind);
            tracing::debug!(source = %o.source, error = %e, "malformed message");
            if !e.answerable() {
                shared.metrics.dropped("malformed");
                return;
            }
            match stateless::bad_request_for(&raw, o.source, o.conn, &e.to_string(), &mut sc.out) {
                Some(d) => d,
                None => {
                    shared.metrics.dropped("malformed");
                    return;
                }
            }
        }
    };
    send(shared, fwd, dest, &sc.out).await;
}

pub async fn send(shared: &Shared, sock: &UdpSocket, dest: Dest, bytes: &[u8]) {
    match dest {
        Dest::Udp(addr) => match sock.try_send_to(bytes, addr) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if sock.send_to(bytes, addr).await.is_err() {
                    shared.metrics.dropped("send-failed");
                }
            }
            Err(_) => shared.metrics.dropped("send-failed"),
        },
        Dest::Tcp(id) => {
            let tx = shared.tcp_conns.get(&id).map(|t| t.clone());
            match tx {
                Some(tx) => {
                    if tx.try_send(bytes::Bytes::copy_from_slice(bytes)).is_err() {
                        shared.metrics.dropped("tcp-backlog");
                    }
                }
                None => shared.metrics.dropped("tcp-gone"),
            }
        }
    }
}

/// Receive loop of one UDP socket.
pub async fn serve(shared: Arc<Shared>, udps: Udps, i: usize) {
    let (local, sock, via_addr) = (udps[i].0, udps[i].1.clone(), udps[i].2);
    let mut buf = BytesMut::with_capacity(1 << 16);
    let mut sc = Scratch::new();
    loop {
        if sock.readable().await.is_err() {
            continue;
        }
        // A busy period: from the wake-up until the socket is empty. One that lasts
        // longer than `overload_ms` means datagrams arrive faster than we handle them,
        // and the kernel queue grows: new INVITEs are then answered 503 cheaply until
        // the queue drains.
        let overload_after =
            std::time::Duration::from_millis(shared.loaded.load().policy.proxy.overload_ms.max(1));
        let busy_since = Instant::now();
        let mut drained = 0u32;
        loop {
            // Reclaims the previous datagram's memory once its Bytes is gone.
            buf.clear();
            buf.reserve(1 << 16);
            match sock.try_recv_buf_from(&mut buf) {
                Ok((_, src)) => {
                    drained += 1;
                    let data = buf.split().freeze();
                    let o = Origin {
                        source: src,
                        local,
                        conn: None,
                    };
                    let overloaded = busy_since.elapsed() > overload_after;
                    process(&shared, &sock, via_addr, data, &o, overloaded, &mut sc).await;
                    if drained.is_multiple_of(64) {
                        // Let the worker's other sockets and connections have their turn.
                        tokio::task::yield_now().await;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                // ICMP port unreachable from an earlier send, and the like: not fatal.
                Err(_) => continue,
            }
        }
    }
}
