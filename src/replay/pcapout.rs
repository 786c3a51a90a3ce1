//! Writing packets to a classic pcap file (what Wireshark opens everywhere).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

pub struct PcapWriter {
    out: BufWriter<File>,
    linktype: Option<i32>,
    pub written: u64,
    pub skipped: u64,
}

impl PcapWriter {
    pub fn create(path: &Path) -> std::io::Result<PcapWriter> {
        Ok(PcapWriter {
            out: BufWriter::new(File::create(path)?),
            linktype: None,
            written: 0,
            skipped: 0,
        })
    }

    /// Writes one packet; the file takes the link type of the first packet, and
    /// packets of another link type are skipped (a classic pcap has only one).
    pub fn write(
        &mut self,
        linktype: i32,
        ts_sec: u32,
        ts_usec: u32,
        data: &[u8],
        orig_len: u32,
    ) -> std::io::Result<()> {
        match self.linktype {
            None => self.header(linktype)?,
            Some(l) if l != linktype => {
                self.skipped += 1;
                return Ok(());
            }
            Some(_) => {}
        }
        self.out.write_all(&ts_sec.to_le_bytes())?;
        self.out.write_all(&ts_usec.to_le_bytes())?;
        self.out.write_all(&(data.len() as u32).to_le_bytes())?;
        self.out
            .write_all(&orig_len.max(data.len() as u32).to_le_bytes())?;
        self.out.write_all(data)?;
        self.written += 1;
        Ok(())
    }

    fn header(&mut self, linktype: i32) -> std::io::Result<()> {
        self.linktype = Some(linktype);
        self.out.write_all(&0xa1b2_c3d4u32.to_le_bytes())?;
        self.out.write_all(&2u16.to_le_bytes())?;
        self.out.write_all(&4u16.to_le_bytes())?;
        self.out.write_all(&0i32.to_le_bytes())?;
        self.out.write_all(&0u32.to_le_bytes())?;
        self.out.write_all(&262_144u32.to_le_bytes())?;
        self.out.write_all(&(linktype as u32).to_le_bytes())
    }

    pub fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }

    pub fn finish(mut self) -> std::io::Result<()> {
        if self.linktype.is_none() {
            // No packet: still a valid, empty capture.
            self.header(1)?;
        }
        self.out.flush()
    }
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
