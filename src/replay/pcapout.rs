//! Writing packets to a capture file Wireshark opens everywhere: classic pcap, or
//! pcapng when the file's name ends in `.pcapng` (which holds packets of several link
//! types: one interface each).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

pub struct PcapWriter {
    out: BufWriter<File>,
    /// pcap: the file's one link type, from its first packet. pcapng: the link type of
    /// each interface described so far (the index is the interface id).
    linktypes: Vec<i32>,
    ng: bool,
    pub written: u64,
    /// Packets not written: of another link type than a classic pcap's first.
    pub skipped: u64,
}

impl PcapWriter {
    pub fn create(path: &Path) -> std::io::Result<PcapWriter> {
        let ng = path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| e.eq_ignore_ascii_case("pcapng"));
        let mut w = PcapWriter {
            out: BufWriter::new(File::create(path)?),
            linktypes: vec![],
            ng,
            written: 0,
            skipped: 0,
        };
        if ng {
            // Section header: byte-order magic, version 1.0, section length unknown.
            let mut b = 0x1a2b_3c4du32.to_le_bytes().to_vec();
            b.extend_from_slice(&[1, 0, 0, 0]);
            b.extend_from_slice(&(-1i64).to_le_bytes());
            w.block(0x0a0d_0d0a, &b)?;
        }
        Ok(w)
    }

    /// Writes one packet. A classic pcap takes the link type of its first packet, and
    /// packets of another are skipped (counted in `skipped`: a pcap holds one); a
    /// pcapng describes an interface for each link type it meets.
    pub fn write(
        &mut self,
        linktype: i32,
        ts_sec: u32,
        ts_usec: u32,
        data: &[u8],
        orig_len: u32,
    ) -> std::io::Result<()> {
        let orig_len = orig_len.max(data.len() as u32);
        if self.ng {
            let id = match self.linktypes.iter().position(|&l| l == linktype) {
                Some(i) => i,
                None => {
                    // Interface: link type, reserved, snaplen; no options (microseconds).
                    let mut b = (linktype as u16).to_le_bytes().to_vec();
                    b.extend_from_slice(&[0, 0]);
                    b.extend_from_slice(&262_144u32.to_le_bytes());
                    self.block(1, &b)?;
                    self.linktypes.push(linktype);
                    self.linktypes.len() - 1
                }
            };
            let ticks = u64::from(ts_sec) * 1_000_000 + u64::from(ts_usec);
            let mut b = Vec::with_capacity(20 + data.len());
            b.extend_from_slice(&(id as u32).to_le_bytes());
            b.extend_from_slice(&((ticks >> 32) as u32).to_le_bytes());
            b.extend_from_slice(&(ticks as u32).to_le_bytes());
            b.extend_from_slice(&(data.len() as u32).to_le_bytes());
            b.extend_from_slice(&orig_len.to_le_bytes());
            b.extend_from_slice(data);
            self.block(6, &b)?;
            self.written += 1;
            return Ok(());
        }
        match self.linktypes.first() {
            None => self.header(linktype)?,
            Some(&l) if l != linktype => {
                self.skipped += 1;
                return Ok(());
            }
            Some(_) => {}
        }
        let mut rec = Vec::with_capacity(16 + data.len());
        push_record(&mut rec, ts_sec, ts_usec, data, orig_len);
        self.out.write_all(&rec)?;
        self.written += 1;
        Ok(())
    }

    /// One pcapng block: type, total length, the body padded to four bytes, length.
    fn block(&mut self, kind: u32, body: &[u8]) -> std::io::Result<()> {
        let pad = body.len().next_multiple_of(4) - body.len();
        let len = (12 + body.len() + pad) as u32;
        self.out.write_all(&kind.to_le_bytes())?;
        self.out.write_all(&len.to_le_bytes())?;
        self.out.write_all(body)?;
        self.out.write_all(&[0u8; 3][..pad])?;
        self.out.write_all(&len.to_le_bytes())
    }

    fn header(&mut self, linktype: i32) -> std::io::Result<()> {
        self.linktypes.push(linktype);
        self.out.write_all(&file_header(linktype))
    }

    pub fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }

    pub fn finish(mut self) -> std::io::Result<()> {
        if !self.ng && self.linktypes.is_empty() {
            // No packet: still a valid, empty capture.
            self.header(1)?;
        }
        self.out.flush()
    }
}

/// A classic pcap's file header (microseconds, little-endian).
pub fn file_header(linktype: i32) -> [u8; 24] {
    let mut h = [0u8; 24];
    h[0..4].copy_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    h[4..6].copy_from_slice(&2u16.to_le_bytes());
    h[6..8].copy_from_slice(&4u16.to_le_bytes());
    h[16..20].copy_from_slice(&262_144u32.to_le_bytes());
    h[20..24].copy_from_slice(&(linktype as u32).to_le_bytes());
    h
}

/// One packet record of a classic pcap, appended to `out` whole (a record is written in
/// one piece, so that a failing disk never leaves half of one mid-file).
pub fn push_record(out: &mut Vec<u8>, ts_sec: u32, ts_usec: u32, data: &[u8], orig_len: u32) {
    out.extend_from_slice(&ts_sec.to_le_bytes());
    out.extend_from_slice(&ts_usec.to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out.extend_from_slice(&orig_len.max(data.len() as u32).to_le_bytes());
    out.extend_from_slice(data);
}

/// LINKTYPE_RAW: packets start with the IP header.
pub const LINKTYPE_RAW: i32 = 101;

/// An IPv4 or IPv6 + UDP packet around a payload (checksums left zero, which Wireshark
/// accepts), for writing messages that were not captured off a wire.
pub fn udp_packet(src: std::net::SocketAddr, dst: std::net::SocketAddr, payload: &[u8]) -> Vec<u8> {
    use std::net::IpAddr;
    let ulen = (8 + payload.len()).min(u16::MAX as usize) as u16;
    let mut p = Vec::with_capacity(48 + payload.len());
    match (src.ip(), dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let total = (20 + ulen as usize).min(u16::MAX as usize) as u16;
            p.extend_from_slice(&[0x45, 0]);
            p.extend_from_slice(&total.to_be_bytes());
            p.extend_from_slice(&[0, 0, 0x40, 0, 64, 17, 0, 0]);
            p.extend_from_slice(&s.octets());
            p.extend_from_slice(&d.octets());
        }
        (s, d) => {
            let v6 = |a: IpAddr| match a {
                IpAddr::V6(x) => x.octets(),
                IpAddr::V4(x) => x.to_ipv6_mapped().octets(),
            };
            p.extend_from_slice(&[0x60, 0, 0, 0]);
            p.extend_from_slice(&ulen.to_be_bytes());
            p.extend_from_slice(&[17, 64]);
            p.extend_from_slice(&v6(s));
            p.extend_from_slice(&v6(d));
        }
    }
    p.extend_from_slice(&src.port().to_be_bytes());
    p.extend_from_slice(&dst.port().to_be_bytes());
    p.extend_from_slice(&ulen.to_be_bytes());
    p.extend_from_slice(&[0, 0]);
    p.extend_from_slice(payload);
    p
}
