//! `[hep]`: every SIP message sipfence reads and sends, mirrored to a Homer server in
//! HEPv3 over UDP, as Kamailio's `siptrace` and most SBCs do. Operators who trace calls
//! in Homer then see the filter's hop: the INVITE in, the INVITE out (with its edits),
//! or the rejection sipfence answered.
//!
//! The worker that handled the messages sends their copies itself, a receive batch's
//! worth in one `sendmmsg` without waiting ([`HepBatch`]). Measured, a sender thread fed
//! through a queue cost twice as much: one wake-up of that thread per message, on the
//! core sipp and the kernel need. The socket's send buffer is the only queue: when the
//! collector's path is backed up, copies are dropped and counted, and no call waits.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::{SystemTime, UNIX_EPOCH};

use prometheus::IntCounter;

use crate::hep::{Mirror, OVERHEAD, encode};
use crate::observability::metrics::Metrics;
use crate::policy::config::{HepConf, Transport};
use crate::proxy::mmsg::{self, BATCH};

/// Outcomes counted in `sipfence_hep_packets_total`.
pub const OUTCOMES: [&str; 4] = ["sent", "socket-full", "send-failed", "too-large"];

pub struct HepMirror {
    sock: UdpSocket,
    server: SocketAddr,
    capture_id: u32,
    password: Vec<u8>,
    sent: IntCounter,
    socket_full: IntCounter,
    failed: IntCounter,
    too_large: IntCounter,
}

impl HepMirror {
    /// The mirror, when `[hep] server` is set.
    pub fn start(conf: &HepConf, metrics: &Metrics) -> io::Result<Option<HepMirror>> {
        let Some(server) = conf.server else {
            return Ok(None);
        };
        let any: SocketAddr = if server.0.is_ipv4() {
            (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
        } else {
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let sock = UdpSocket::bind(any)?;
        sock.set_nonblocking(true)?;
        // Bursts wait here rather than being dropped while the kernel sends.
        let _ = socket2::SockRef::from(&sock).set_send_buffer_size(4 << 20);
        let c = |o: &str| metrics.hep_packets.with_label_values(&[o]);
        Ok(Some(HepMirror {
            sock,
            server: server.0,
            capture_id: conf.capture_id,
            password: conf.password.clone().into_bytes(),
            sent: c("sent"),
            socket_full: c("socket-full"),
            failed: c("send-failed"),
            too_large: c("too-large"),
        }))
    }

    /// Encodes one message into `out`; `false` (counted) when it does not fit HEP.
    fn encode(
        &self,
        src: SocketAddr,
        dst: SocketAddr,
        transport: Transport,
        payload: &[u8],
        out: &mut Vec<u8>,
    ) -> bool {
        let ts_us = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as u64);
        let m = Mirror {
            src,
            dst,
            transport,
            ts_us,
            capture_id: self.capture_id,
            password: &self.password,
            payload,
        };
        let ok = encode(&m, out);
        if !ok {
            self.too_large.inc();
        }
        ok
    }

    /// Mirrors one message now (the TCP paths, which handle one message at a time).
    pub fn mirror(&self, src: SocketAddr, dst: SocketAddr, transport: Transport, payload: &[u8]) {
        let mut out = Vec::with_capacity(payload.len() + self.password.len() + OVERHEAD);
        if self.encode(src, dst, transport, payload, &mut out) {
            self.send(1, |_| &out);
        }
    }

    fn send<'a>(&self, count: usize, item: impl Fn(usize) -> &'a [u8]) {
        let fd = self.sock.as_raw_fd();
        match mmsg::send_batch(fd, count, |j| (self.server, item(j))) {
            Ok(n) => {
                self.sent.inc_by(n as u64);
                self.socket_full.inc_by((count - n) as u64);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                self.socket_full.inc_by(count as u64)
            }
            // No route, or ICMP from a collector that is down: this batch is lost.
            Err(_) => self.failed.inc_by(count as u64),
        }
    }
}

/// A UDP worker's copies of one receive batch, sent together: buffers are reused from
/// batch to batch, so mirroring allocates nothing once warm.
#[derive(Default)]
pub struct HepBatch {
    bufs: Vec<Vec<u8>>,
    n: usize,
}

impl HepBatch {
    pub fn new() -> HepBatch {
        HepBatch::default()
    }

    /// Adds one message; sends the batch when it is full.
    pub fn push(
        &mut self,
        h: &HepMirror,
        src: SocketAddr,
        dst: SocketAddr,
        transport: Transport,
        payload: &[u8],
    ) {
        if self.n == self.bufs.len() {
            self.bufs.push(Vec::with_capacity(2048));
        }
        if h.encode(src, dst, transport, payload, &mut self.bufs[self.n]) {
            self.n += 1;
        }
        if self.n == BATCH {
            self.flush(h);
        }
    }

    /// Sends what was added.
    pub fn flush(&mut self, h: &HepMirror) {
        if self.n > 0 {
            let bufs = &self.bufs;
            h.send(self.n, |j| bufs[j].as_slice());
            self.n = 0;
        }
    }
}
