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
        // Connected, so that the ICMP of a collector that is down comes back as an error
        // of a later send (counted `send-failed`): an unconnected socket never hears of
        // it, and every copy counted as sent (QA 49).
        sock.connect(server.0)?;
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
            correlation: crate::sip::call_id_of(payload).unwrap_or_default(),
        };
        // A datagram holds 65,507 bytes over IPv4, 65,527 over IPv6: a copy past that
        // could never be sent (QA 49: it failed in the kernel, and took the rest of its
        // batch with it).
        let max = if self.server.is_ipv4() {
            65_507
        } else {
            65_527
        };
        let ok = encode(&m, out) && out.len() <= max;
        if !ok {
            self.too_large.inc();
        }
        ok
    }

    /// Mirrors one message now (the TCP paths, which handle one message at a time).
    pub fn mirror(&self, src: SocketAddr, dst: SocketAddr, transport: Transport, payload: &[u8]) {
        let mut out = Vec::with_capacity(payload.len() + self.password.len() + OVERHEAD + 64);
        if self.encode(src, dst, transport, payload, &mut out) {
            self.send(1, |_| &out);
        }
    }

    /// Sends `count` copies. `sendmmsg` stops at the first that fails: that one is
    /// counted and the rest sent on; a full socket buffer drops what is left (no call
    /// waits for Homer).
    fn send<'a>(&self, count: usize, item: impl Fn(usize) -> &'a [u8]) {
        let fd = self.sock.as_raw_fd();
        let mut done = 0;
        while done < count {
            match mmsg::send_batch(fd, count - done, |j| (self.server, item(done + j))) {
                Ok(n) if n > 0 => {
                    self.sent.inc_by(n as u64);
                    done += n;
                }
                Ok(_) => break,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                // No route, or the ICMP of a collector that is down: that copy is lost.
                Err(_) => {
                    self.failed.inc();
                    done += 1;
                }
            }
        }
        self.socket_full.inc_by((count - done) as u64);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn mirror_to(server: SocketAddr) -> (HepMirror, Metrics) {
        let metrics = Metrics::new();
        let conf = HepConf {
            server: Some(crate::policy::config::HepServer(server)),
            capture_id: 7,
            password: String::new(),
        };
        let h = HepMirror::start(&conf, &metrics).unwrap().unwrap();
        (h, metrics)
    }

    fn counts(h: &HepMirror) -> [u64; 4] {
        [
            h.sent.get(),
            h.socket_full.get(),
            h.failed.get(),
            h.too_large.get(),
        ]
    }

    /// A copy too big for one datagram is counted too large and sent by none; the
    /// copies around it in its batch go (QA 49: the kernel refused it, and the rest of
    /// the batch was counted as a full socket).
    #[test]
    fn a_copy_too_big_for_a_datagram_is_too_large_and_alone() {
        let collector = UdpSocket::bind("127.0.0.1:0").unwrap();
        let (h, _m) = mirror_to(collector.local_addr().unwrap());
        let a: SocketAddr = "127.0.0.1:5060".parse().unwrap();
        let small = b"OPTIONS sip:x SIP/2.0\r\n\r\n".to_vec();
        let big = vec![b'x'; 65_450];
        let mut batch = HepBatch::new();
        for p in [&small, &big, &small] {
            batch.push(&h, a, a, Transport::Udp, p);
        }
        batch.flush(&h);
        assert_eq!(counts(&h), [2, 0, 0, 1]);
        // Over the TCP paths too.
        h.mirror(a, a, Transport::Tcp, &big);
        assert_eq!(counts(&h), [2, 0, 0, 2]);
        collector.set_nonblocking(true).unwrap();
        let mut buf = [0u8; 2048];
        assert!(collector.recv(&mut buf).is_ok() && collector.recv(&mut buf).is_ok());
    }

    /// Each copy carries its message's Call-ID in the correlation chunk, which Homer's
    /// tools group a call's copies by (QA 82); a message without one carries none.
    #[test]
    fn a_copy_is_correlated_by_its_call_id() {
        let collector = UdpSocket::bind("127.0.0.1:0").unwrap();
        collector
            .set_read_timeout(Some(std::time::Duration::from_secs(2)))
            .unwrap();
        let (h, _m) = mirror_to(collector.local_addr().unwrap());
        let a: SocketAddr = "127.0.0.1:5060".parse().unwrap();
        let mut buf = [0u8; 2048];
        for (msg, corr) in [
            (
                &b"BYE sip:x SIP/2.0\r\ni: 7f3a@pbx\r\nl: 0\r\n\r\n"[..],
                &b"7f3a@pbx"[..],
            ),
            (b"not sip at all", b""),
        ] {
            h.mirror(a, a, Transport::Udp, msg);
            let n = collector.recv(&mut buf).unwrap();
            let got = crate::hep::open(&buf[..n]).unwrap();
            let corr_seen = match &got {
                Ok(m) => m.correlation,
                Err(_) => b"",
            };
            assert_eq!(corr_seen, corr);
        }
    }

    /// A collector that is down says so (ICMP port unreachable, seen on a connected
    /// socket): its copies are counted as failed, not sent (QA 49).
    #[test]
    fn a_collector_that_is_down_counts_as_failed() {
        let gone = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = gone.local_addr().unwrap();
        drop(gone);
        let (h, _m) = mirror_to(addr);
        let a: SocketAddr = "127.0.0.1:5060".parse().unwrap();
        for _ in 0..20 {
            h.mirror(a, a, Transport::Udp, b"OPTIONS sip:x SIP/2.0\r\n\r\n");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let [sent, _, failed, _] = counts(&h);
        assert!(failed >= 5, "sent {sent}, failed {failed}");
    }
}
