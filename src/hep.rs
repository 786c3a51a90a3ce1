//! HEP, the Homer Encapsulation Protocol: how Kamailio's and OpenSIPS' `siptrace`,
//! FreeSWITCH, captagent and heplify mirror SIP to a capture server (Homer). A capture
//! taken on that server holds every signalling message of the network wrapped in UDP
//! to it; opened, each gives back the SIP message with the addresses it travelled
//! between. HEP also carries what a mirror port cannot show: the messages a proxy
//! reports after decrypting TLS.
//!
//! Versions 1 and 2 are a fixed header (`hep_hdr`, the addresses, and for version 2 a
//! time header); version 3 is a list of typed chunks behind the magic `HEP3`.
//!
//! Both directions live here: [`open`] for `replay` (captures taken on a Homer server),
//! [`encode`] for the proxy's own mirror to Homer (`[hep]`), in version 3.

use std::borrow::Cow;
use std::io::Read;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::policy::config::Transport;
use crate::sip::MAX_MESSAGE;

/// What one HEP packet carries.
#[derive(Debug)]
pub struct Hep<'a> {
    pub src: SocketAddr,
    pub dst: SocketAddr,
    /// The IP protocol the message travelled over (17 UDP, 6 TCP, 132 SCTP...).
    pub ip_proto: u8,
    pub payload: Cow<'a, [u8]>,
    /// The correlation chunk (a SIP message's Call-ID, as sipfence and heplify send
    /// it); empty when there is none.
    pub correlation: &'a [u8],
}

/// Why a packet that is HEP gives no SIP message.
#[derive(Debug, PartialEq, Eq)]
pub enum Skip {
    /// Something else carried in HEP: RTCP reports, logs, QoS, keep-alives.
    NotSip,
    /// Cut short, a chunk that does not fit, an address missing, a payload that does
    /// not inflate.
    Damaged,
}

/// HEP chunk types of the generic vendor (0) that matter here.
const FAMILY: u16 = 1;
const IP_PROTO: u16 = 2;
const SRC_V4: u16 = 3;
const DST_V4: u16 = 4;
const SRC_V6: u16 = 5;
const DST_V6: u16 = 6;
const SRC_PORT: u16 = 7;
const DST_PORT: u16 = 8;
const PROTO_TYPE: u16 = 11;
const TIME_SEC: u16 = 9;
const TIME_USEC: u16 = 10;
const CAPTURE_ID: u16 = 12;
const AUTH_KEY: u16 = 14;
const PAYLOAD: u16 = 15;
const COMPRESSED: u16 = 16;
/// What Homer and its tools group the copies of one call by: the Call-ID (as heplify
/// sends it for SIP), not only the Call-ID they read in the payload.
const CORRELATION: u16 = 17;
/// Protocol type 1 is SIP; 0 (or none) is taken as SIP when the payload looks it.
const PROTO_SIP: u8 = 1;

const AF_INET: u8 = 2;
/// Linux's; BSDs' values (24, 28, 30) are taken too, as senders write their own.
const AF_INET6: [u8; 4] = [10, 24, 28, 30];

/// `None` when the bytes are not HEP (then they are taken as plain UDP); otherwise the
/// message, or why there is none.
pub fn open(b: &[u8]) -> Option<Result<Hep<'_>, Skip>> {
    if b.starts_with(b"HEP3") || b.starts_with(b"EEP3") {
        return Some(v3(b));
    }
    v12(b)
}

fn be16(b: &[u8], i: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(i)?, *b.get(i + 1)?]))
}

fn v3(b: &[u8]) -> Result<Hep<'_>, Skip> {
    let total = be16(b, 4).ok_or(Skip::Damaged)? as usize;
    let b = b.get(..total).ok_or(Skip::Damaged)?;
    let (mut family, mut ip_proto, mut kind) = (None, None, None);
    let (mut src_ip, mut dst_ip, mut sport, mut dport) = (None, None, None, None);
    let mut payload: Option<Cow<'_, [u8]>> = None;
    let mut correlation: &[u8] = &[];
    let mut off = 6;
    while off < b.len() {
        let vendor = be16(b, off).ok_or(Skip::Damaged)?;
        let ty = be16(b, off + 2).ok_or(Skip::Damaged)?;
        let len = be16(b, off + 4).ok_or(Skip::Damaged)? as usize;
        if len < 6 {
            return Err(Skip::Damaged);
        }
        let data = b.get(off + 6..off + len).ok_or(Skip::Damaged)?;
        off += len;
        if vendor != 0 {
            continue;
        }
        match (ty, data.len()) {
            (FAMILY, 1) => family = Some(data[0]),
            (IP_PROTO, 1) => ip_proto = Some(data[0]),
            (SRC_V4, 4) => src_ip = Some(v4(data)),
            (DST_V4, 4) => dst_ip = Some(v4(data)),
            (SRC_V6, 16) => src_ip = Some(v6(data)),
            (DST_V6, 16) => dst_ip = Some(v6(data)),
            (SRC_PORT, 2) => sport = be16(data, 0),
            (DST_PORT, 2) => dport = be16(data, 0),
            (PROTO_TYPE, 1) => kind = Some(data[0]),
            (PAYLOAD, _) => payload = Some(Cow::Borrowed(data)),
            (COMPRESSED, _) => payload = Some(Cow::Owned(inflate(data)?)),
            (CORRELATION, _) => correlation = data,
            _ => {}
        }
    }
    if kind.is_some_and(|k| k != PROTO_SIP) {
        return Err(Skip::NotSip);
    }
    let payload = payload.ok_or(Skip::NotSip)?;
    // A family that contradicts the addresses is a damaged packet, not a guess.
    let (src_ip, dst_ip) = (src_ip.ok_or(Skip::Damaged)?, dst_ip.ok_or(Skip::Damaged)?);
    if let Some(f) = family {
        let v6 = AF_INET6.contains(&f);
        if (f != AF_INET && !v6) || src_ip.is_ipv6() != v6 || dst_ip.is_ipv6() != v6 {
            return Err(Skip::Damaged);
        }
    }
    Ok(Hep {
        src: SocketAddr::new(src_ip, sport.ok_or(Skip::Damaged)?),
        dst: SocketAddr::new(dst_ip, dport.ok_or(Skip::Damaged)?),
        ip_proto: ip_proto.unwrap_or(17),
        payload,
        correlation,
    })
}

/// Versions 1 and 2 have no magic: the header must be one of the sizes senders write
/// (`hep_hdr` alone, or with the addresses) and what follows must read as SIP, or the
/// datagram is plain UDP.
fn v12(b: &[u8]) -> Option<Result<Hep<'_>, Skip>> {
    let (&version, &hdr_len, &family, &ip_proto) = (b.first()?, b.get(1)?, b.get(2)?, b.get(3)?);
    if version != 1 && version != 2 {
        return None;
    }
    let addr_len = match family {
        AF_INET => 8,
        f if AF_INET6.contains(&f) => 32,
        _ => return None,
    };
    if hdr_len != 8 && hdr_len as usize != 8 + addr_len {
        return None;
    }
    let addrs = b.get(8..8 + addr_len)?;
    // Version 2's time header: seconds, microseconds, capture id, padded to 12.
    let start = 8 + addr_len + if version == 2 { 12 } else { 0 };
    let payload = b.get(start..)?;
    if !crate::sip::parse::looks_like_sip(payload) {
        return None;
    }
    let (src, dst) = if addr_len == 8 {
        (v4(&addrs[..4]), v4(&addrs[4..]))
    } else {
        (v6(&addrs[..16]), v6(&addrs[16..]))
    };
    Some(Ok(Hep {
        src: SocketAddr::new(src, be16(b, 4)?),
        dst: SocketAddr::new(dst, be16(b, 6)?),
        ip_proto,
        payload: Cow::Borrowed(payload),
        correlation: &[],
    }))
}

/// One message to mirror.
pub struct Mirror<'a> {
    pub src: SocketAddr,
    pub dst: SocketAddr,
    pub transport: Transport,
    /// Microseconds since the Unix epoch: when the message was read or sent.
    pub ts_us: u64,
    pub capture_id: u32,
    /// HEP's authentication key chunk, when the collector wants one.
    pub password: &'a [u8],
    pub payload: &'a [u8],
    /// The correlation chunk: the message's Call-ID (none when empty).
    pub correlation: &'a [u8],
}

/// What a HEPv3 packet adds to its payload, password and correlation at most: the
/// header, thirteen chunk headers, and the fixed chunks' data with IPv6 addresses.
pub const OVERHEAD: usize = 6 + 13 * 6 + (1 + 1 + 16 + 16 + 2 + 2 + 4 + 4 + 1 + 4);

/// Writes `m` as one HEPv3 packet into `out` (cleared first). `false` when it does not
/// fit HEP's 16-bit length.
pub fn encode(m: &Mirror<'_>, out: &mut Vec<u8>) -> bool {
    if m.payload.len() + m.password.len() + m.correlation.len() + OVERHEAD > u16::MAX as usize {
        return false;
    }
    out.clear();
    out.extend_from_slice(b"HEP3\0\0");
    let chunk = |out: &mut Vec<u8>, ty: u16, data: &[u8]| {
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(&ty.to_be_bytes());
        out.extend_from_slice(&((6 + data.len()) as u16).to_be_bytes());
        out.extend_from_slice(data);
    };
    // One family for both ends: an IPv4 peer on a dual-stack socket is written mapped.
    // Addresses go through fixed arrays: the proxy encodes a copy of every message, and
    // a copy costs no allocation once its buffer is warm.
    let proto = match m.transport {
        Transport::Udp => 17,
        Transport::Tcp => 6,
    };
    match (m.src.ip(), m.dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            chunk(out, FAMILY, &[AF_INET]);
            chunk(out, IP_PROTO, &[proto]);
            chunk(out, SRC_V4, &s.octets());
            chunk(out, DST_V4, &d.octets());
        }
        (s, d) => {
            let six = |a: IpAddr| match a {
                IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
                IpAddr::V6(a) => a.octets(),
            };
            chunk(out, FAMILY, &[AF_INET6[0]]);
            chunk(out, IP_PROTO, &[proto]);
            chunk(out, SRC_V6, &six(s));
            chunk(out, DST_V6, &six(d));
        }
    }
    chunk(out, SRC_PORT, &m.src.port().to_be_bytes());
    chunk(out, DST_PORT, &m.dst.port().to_be_bytes());
    chunk(out, TIME_SEC, &((m.ts_us / 1_000_000) as u32).to_be_bytes());
    chunk(
        out,
        TIME_USEC,
        &((m.ts_us % 1_000_000) as u32).to_be_bytes(),
    );
    chunk(out, PROTO_TYPE, &[PROTO_SIP]);
    chunk(out, CAPTURE_ID, &m.capture_id.to_be_bytes());
    if !m.password.is_empty() {
        chunk(out, AUTH_KEY, m.password);
    }
    if !m.correlation.is_empty() {
        chunk(out, CORRELATION, m.correlation);
    }
    chunk(out, PAYLOAD, m.payload);
    let total = out.len() as u16;
    out[4..6].copy_from_slice(&total.to_be_bytes());
    true
}

fn v4(d: &[u8]) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(d[0], d[1], d[2], d[3]))
}

fn v6(d: &[u8]) -> IpAddr {
    let mut a = [0u8; 16];
    a.copy_from_slice(&d[..16]);
    IpAddr::V6(Ipv6Addr::from(a))
}

/// The compressed payload chunk: zlib as Kamailio's `sipcapture` reads it, or gzip.
/// Bounded by the largest SIP message, so a crafted chunk cannot inflate without end.
fn inflate(d: &[u8]) -> Result<Vec<u8>, Skip> {
    let limit = MAX_MESSAGE as u64 + 1;
    let mut out = Vec::new();
    let ok = if d.starts_with(&crate::replay::capture::GZIP_MAGIC) {
        flate2::read::GzDecoder::new(d)
            .take(limit)
            .read_to_end(&mut out)
    } else {
        flate2::read::ZlibDecoder::new(d)
            .take(limit)
            .read_to_end(&mut out)
    };
    match ok {
        Ok(n) if n as u64 <= MAX_MESSAGE as u64 => Ok(out),
        _ => Err(Skip::Damaged),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    const SIP: &[u8] = b"INVITE sip:1@b SIP/2.0\r\nContent-Length: 0\r\n\r\n";

    fn chunk(ty: u16, data: &[u8]) -> Vec<u8> {
        let mut c = vec![0, 0];
        c.extend_from_slice(&ty.to_be_bytes());
        c.extend_from_slice(&((6 + data.len()) as u16).to_be_bytes());
        c.extend_from_slice(data);
        c
    }

    fn hep3(chunks: &[Vec<u8>]) -> Vec<u8> {
        let body: Vec<u8> = chunks.concat();
        let mut p = b"HEP3".to_vec();
        p.extend_from_slice(&((6 + body.len()) as u16).to_be_bytes());
        p.extend_from_slice(&body);
        p
    }

    fn v4_chunks() -> Vec<Vec<u8>> {
        vec![
            chunk(FAMILY, &[2]),
            chunk(IP_PROTO, &[17]),
            chunk(SRC_V4, &[192, 0, 2, 1]),
            chunk(DST_V4, &[198, 51, 100, 2]),
            chunk(SRC_PORT, &5060u16.to_be_bytes()),
            chunk(DST_PORT, &5080u16.to_be_bytes()),
            chunk(9, &1_700_000_000u32.to_be_bytes()),
            chunk(12, &2001u32.to_be_bytes()),
            // A vendor's own chunk with a type number of the generic list: skipped.
            [vec![0, 9], chunk(PAYLOAD, b"not this")[2..].to_vec()].concat(),
        ]
    }

    #[test]
    fn version_3_gives_the_message_and_its_addresses() {
        let mut c = v4_chunks();
        c.push(chunk(PROTO_TYPE, &[1]));
        c.push(chunk(PAYLOAD, SIP));
        let p = hep3(&c);
        let h = open(&p).expect("HEP").expect("SIP");
        assert_eq!(h.src, "192.0.2.1:5060".parse().unwrap());
        assert_eq!(h.dst, "198.51.100.2:5080".parse().unwrap());
        assert_eq!(h.ip_proto, 17);
        assert_eq!(&*h.payload, SIP);
    }

    #[test]
    fn version_3_over_ipv6_with_a_compressed_payload() {
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        z.write_all(SIP).unwrap();
        let src: Ipv6Addr = "2001:db8::1".parse().unwrap();
        let dst: Ipv6Addr = "2001:db8::2".parse().unwrap();
        let p = hep3(&[
            chunk(FAMILY, &[10]),
            chunk(IP_PROTO, &[6]),
            chunk(SRC_V6, &src.octets()),
            chunk(DST_V6, &dst.octets()),
            chunk(SRC_PORT, &5061u16.to_be_bytes()),
            chunk(DST_PORT, &5060u16.to_be_bytes()),
            chunk(COMPRESSED, &z.finish().unwrap()),
        ]);
        let h = open(&p).expect("HEP").expect("SIP");
        assert_eq!(h.src, "[2001:db8::1]:5061".parse().unwrap());
        assert_eq!(h.ip_proto, 6);
        assert_eq!(&*h.payload, SIP);
    }

    #[test]
    fn version_3_that_is_not_sip_or_is_damaged() {
        // RTCP report (protocol type 5).
        let mut c = v4_chunks();
        c.push(chunk(PROTO_TYPE, &[5]));
        c.push(chunk(PAYLOAD, b"{\"type\":200}"));
        assert_eq!(open(&hep3(&c)).unwrap().unwrap_err(), Skip::NotSip);
        // A keep-alive: no payload.
        assert_eq!(
            open(&hep3(&v4_chunks())).unwrap().unwrap_err(),
            Skip::NotSip
        );
        // Cut short inside a chunk, a zero-length chunk, a total beyond the datagram.
        let mut c = v4_chunks();
        c.push(chunk(PAYLOAD, SIP));
        let whole = hep3(&c);
        for cut in [7, 12, 41, whole.len() - 3] {
            let mut p = whole[..cut].to_vec();
            p[4..6].copy_from_slice(&(cut as u16).to_be_bytes());
            assert_eq!(
                open(&p).unwrap().unwrap_err(),
                Skip::Damaged,
                "cut at {cut}"
            );
        }
        let mut p = whole.clone();
        p[4..6].copy_from_slice(&(whole.len() as u16 + 1).to_be_bytes());
        assert_eq!(open(&p).unwrap().unwrap_err(), Skip::Damaged);
        assert_eq!(
            open(&hep3(&[vec![0, 0, 0, 1, 0, 0]])).unwrap().unwrap_err(),
            Skip::Damaged
        );
        // No source address; a family that says IPv6 over IPv4 addresses.
        let mut c: Vec<_> = v4_chunks().into_iter().skip(3).collect();
        c.push(chunk(PAYLOAD, SIP));
        assert_eq!(open(&hep3(&c)).unwrap().unwrap_err(), Skip::Damaged);
        let mut c = v4_chunks();
        c[0] = chunk(FAMILY, &[10]);
        c.push(chunk(PAYLOAD, SIP));
        assert_eq!(open(&hep3(&c)).unwrap().unwrap_err(), Skip::Damaged);
        // A compressed payload that does not inflate, and one that inflates too far.
        let mut c = v4_chunks();
        c.push(chunk(COMPRESSED, b"\x78\x9cnot zlib"));
        assert_eq!(open(&hep3(&c)).unwrap().unwrap_err(), Skip::Damaged);
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
        z.write_all(&vec![b'a'; MAX_MESSAGE + 10]).unwrap();
        let mut c = v4_chunks();
        c.push(chunk(COMPRESSED, &z.finish().unwrap()));
        assert_eq!(open(&hep3(&c)).unwrap().unwrap_err(), Skip::Damaged);
    }

    #[test]
    fn what_is_encoded_opens_to_the_same_message() {
        let mut out = vec![1, 2, 3];
        for (src, dst, transport) in [
            ("192.0.2.1:5060", "198.51.100.2:5080", Transport::Udp),
            ("[2001:db8::1]:5061", "[2001:db8::2]:5060", Transport::Tcp),
            // Mixed families (a dual-stack socket): both written as IPv6.
            ("192.0.2.1:5060", "[2001:db8::2]:5060", Transport::Udp),
        ] {
            let m = Mirror {
                src: src.parse().unwrap(),
                dst: dst.parse().unwrap(),
                transport,
                ts_us: 1_764_640_800_123_456,
                capture_id: 2001,
                password: b"secret",
                payload: SIP,
                correlation: b"a84b4c76e66710",
            };
            assert!(encode(&m, &mut out));
            let h = open(&out).expect("HEP").expect("SIP");
            let plain = |a: SocketAddr| match a.ip() {
                IpAddr::V6(v) => SocketAddr::new(v.to_canonical(), a.port()),
                _ => a,
            };
            assert_eq!((plain(h.src), plain(h.dst)), (m.src, m.dst));
            assert_eq!(h.ip_proto, if transport == Transport::Udp { 17 } else { 6 });
            assert_eq!(&*h.payload, SIP);
            assert_eq!(h.correlation, m.correlation);
            assert!(out.len() <= SIP.len() + m.password.len() + m.correlation.len() + OVERHEAD);
            let find = |ty: u16| {
                let mut off = 6;
                while off < out.len() {
                    let len = be16(&out, off + 4).unwrap() as usize;
                    if be16(&out, off + 2) == Some(ty) {
                        return out[off + 6..off + len].to_vec();
                    }
                    off += len;
                }
                panic!("no chunk {ty}");
            };
            assert_eq!(find(TIME_SEC), 1_764_640_800u32.to_be_bytes());
            assert_eq!(find(TIME_USEC), 123_456u32.to_be_bytes());
            assert_eq!(find(CAPTURE_ID), 2001u32.to_be_bytes());
            assert_eq!(find(AUTH_KEY), b"secret");
        }
        let big = vec![b'a'; u16::MAX as usize];
        let m = Mirror {
            src: "192.0.2.1:5060".parse().unwrap(),
            dst: "192.0.2.2:5060".parse().unwrap(),
            transport: Transport::Udp,
            ts_us: 0,
            capture_id: 0,
            password: b"",
            payload: &big,
            correlation: b"",
        };
        assert!(!encode(&m, &mut out));
    }

    fn v2(version: u8, hdr_len: u8, payload: &[u8]) -> Vec<u8> {
        let mut p = vec![version, hdr_len, 2, 17, 0x13, 0xc4, 0x13, 0xd8];
        p.extend_from_slice(&[10, 0, 0, 1, 10, 0, 0, 2]);
        if version == 2 {
            p.extend_from_slice(&[0x65, 0, 0, 0, 0, 0, 0, 1, 0, 7, 0, 0]);
        }
        p.extend_from_slice(payload);
        p
    }

    #[test]
    fn versions_1_and_2() {
        for (version, hdr_len) in [(1, 16), (2, 16), (2, 8)] {
            let p = v2(version, hdr_len, SIP);
            let h = open(&p).expect("HEP").expect("SIP");
            assert_eq!(h.src, "10.0.0.1:5060".parse().unwrap());
            assert_eq!(h.dst, "10.0.0.2:5080".parse().unwrap());
            assert_eq!(&*h.payload, SIP);
        }
        // No magic: a header of another size, or no SIP behind it, is not HEP.
        assert!(open(&v2(2, 20, SIP)).is_none());
        assert!(open(&v2(2, 16, b"\x80\x00RTP")).is_none());
        assert!(open(SIP).is_none());
        assert!(open(&[2, 16, 2]).is_none());
    }
}
