//! TCP: SO_REUSEPORT listeners per worker, one task per connection, messages cut by
//! Content-Length (RFC 3261 18.3), CRLFCRLF keep-alives answered with CRLF (RFC 5626),
//! idle connections closed, and a cap on connections so a flood of silent sockets
//! cannot exhaust the process.

use bytes::{Buf, Bytes, BytesMut};
use socket2::{Domain, Protocol, Socket, Type};
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use super::Shared;
use super::stateless::{Dest, Origin};
use super::udp::{self, Udps};
use crate::policy::config::ListenSpec;
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

pub async fn serve(shared: Arc<Shared>, udps: Udps, local: ListenSpec, listener: TcpListener) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(_) => {
                // EMFILE and friends: back off instead of spinning.
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let max = shared.loaded.load().policy.proxy.max_tcp_connections as i64;
        if shared.metrics.tcp_connections.get() >= max {
            shared.metrics.dropped("tcp-limit");
            drop(stream);
            continue;
        }
        let _ = stream.set_nodelay(true);
        tokio::spawn(connection(
            shared.clone(),
            udps.clone(),
            local,
            stream,
            peer,
        ));
    }
}

async fn connection(
    shared: Arc<Shared>,
    udps: Udps,
    local: ListenSpec,
    stream: TcpStream,
    peer: SocketAddr,
) {
    // Without a UDP socket nothing can be forwarded: refuse before registering anything.
    let Some((fwd, via_addr)) = udp::forwarder(&udps, &local) else {
        shared.metrics.dropped("no-udp-forwarder");
        return;
    };
    let id = shared.next_conn.fetch_add(1, Ordering::Relaxed);
    let (mut rd, mut wr) = stream.into_split();
    let (tx, mut rx) = mpsc::channel::<Bytes>(256);
    shared.tcp_conns.insert(id, tx.clone());
    shared.metrics.tcp_connections.inc();
    let writer = tokio::spawn(async move {
        while let Some(b) = rx.recv().await {
            if wr.write_all(&b).await.is_err() {
                break;
            }
        }
    });
    let idle = Duration::from_secs(shared.loaded.load().policy.proxy.tcp_idle_secs.max(1));
    let mut buf = BytesMut::with_capacity(8192);
    let mut edits = EditList::new();
    let mut out = Vec::with_capacity(2048);
    let o = Origin {
        source: peer,
        local,
        conn: Some(id),
    };
    'conn: loop {
        match tokio::time::timeout(idle, rd.read_buf(&mut buf)).await {
            Err(_) => {
                shared.metrics.dropped("tcp-idle");
                break;
            }
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(_)) => {}
        }
        loop {
            match frame_stream(&buf) {
                Ok(Frame::Incomplete) => {
                    if buf.len() > MAX_MESSAGE + 4 {
                        shared
                            .metrics
                            .parse_error("tcp", crate::sip::ErrorKind::TooLarge);
                        break 'conn;
                    }
                    break;
                }
                Ok(Frame::Ping(n)) => {
                    buf.advance(n);
                    let _ = tx.try_send(Bytes::from_static(b"\r\n"));
                }
                Ok(Frame::Message { skip, len }) => {
                    buf.advance(skip);
                    let data = buf.split_to(len).freeze();
                    if let Some(d) =
                        udp::handle_one(&shared, via_addr, data, &o, false, &mut edits, &mut out)
                    {
                        udp::send(&shared, &fwd, d, &out).await;
                    }
                }
                Err(e) => {
                    // The stream cannot be resynchronised after a framing error.
                    shared.metrics.parse_error("tcp", e.kind);
                    let data = buf.split().freeze();
                    if let Some(Dest::Tcp(_)) = super::stateless::bad_request_for(
                        &data,
                        peer,
                        Some(id),
                        &e.to_string(),
                        &mut out,
                    ) {
                        let _ = tx.try_send(Bytes::copy_from_slice(&out));
                    }
                    break 'conn;
                }
            }
        }
    }
    shared.tcp_conns.remove(&id);
    shared.metrics.tcp_connections.dec();
    drop(tx);
    // Let queued answers go out before the socket closes.
    let _ = tokio::time::timeout(Duration::from_secs(2), writer).await;
}
