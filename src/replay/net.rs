//! Just enough of the network stack to find SIP in a capture: link layers (Ethernet
//! with VLAN tags, Linux cooked v1/v2, raw IP, BSD loopback), IPv4 and IPv6 with
//! fragment reassembly, UDP, TCP streams reassembled in order and cut into SIP
//! messages by Content-Length or WebSocket frames (`websocket`), and SCTP user
//! messages (`sctp`); HEP from a Homer capture server is opened as a tunnel (`hep`).
//! Every table is bounded: a capture of any size replays in bounded memory.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::websocket;
use crate::policy::config::Transport;
use crate::sip::parse::{Frame, looks_like_sip};
use crate::sip::{MAX_MESSAGE, frame_stream};

/// Pending fragmented datagrams kept at once, and how long (capture time) they wait.
const MAX_FRAGMENTED: usize = 4096;
/// How long fragments wait for the rest, as Linux waits (`ipfrag_time` 30 s for IPv4,
/// `ip6frag_time` 60 s for IPv6): what the proxy's host would still reassemble.
const FRAGMENT_TIMEOUT_MS: u64 = 30_000;
const FRAGMENT_TIMEOUT_V6_MS: u64 = 60_000;
/// TCP flows followed at once; bytes buffered per flow beyond the next message.
const MAX_FLOWS: usize = 65_536;
const MAX_OUT_OF_ORDER: usize = 256 * 1024;
/// Bytes held for streams, all flows together: segments waiting behind holes and
/// messages not yet complete.
const MAX_QUEUED: usize = 128 << 20;
/// Capture time segments wait behind a hole before it is given up: longer than TCP's
/// retransmission timeouts take to fill a real one (RFC 6298: one second at first,
/// doubling), short enough that a quiet trunk's calls are not held back for long.
const GAP_WAIT_MS: u64 = 5_000;
/// Tunnels and label stacks opened inside one another, at most.
const MAX_DEPTH: u8 = 4;

/// What a packet is one of several packets of (a fragmented datagram, `tag` 0; a TCP
/// stream, 1), so that the packets that carried a message can be told together.
pub fn unit_key<T: std::hash::Hash>(tag: u8, v: &T) -> u64 {
    use std::hash::BuildHasher;
    std::hash::BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default()
        .hash_one((tag, v))
}

/// A transport payload with its addresses.
#[derive(Debug)]
pub struct Segment {
    pub src: SocketAddr,
    pub dst: SocketAddr,
    /// The listen type a trunk would name for it. SCTP and WebSocket are judged as the
    /// policy's TCP addresses: the proxy listens on UDP and TCP only, and both are
    /// reliable, connection-oriented transports like TCP.
    pub transport: Transport,
    pub payload: Payload,
    /// The capture time its messages count from, when not the packet's own: messages
    /// of a TCP stream read after a hole was filled or given up.
    pub at_ms: Option<u64>,
}

/// What a segment carries, by how SIP messages are cut out of it.
#[derive(Debug)]
pub enum Payload {
    /// A UDP datagram: one message, perhaps after junk.
    Datagram(Vec<u8>),
    /// A TCP segment, for the stream reassembler ([`TcpFlows`]).
    Stream(Vec<u8>, TcpMeta),
    /// Whole messages: SCTP user messages (RFC 4168), or what a HEP sender read from TCP.
    Messages(Vec<Vec<u8>>),
}

#[derive(Debug, Clone, Copy)]
pub struct TcpMeta {
    pub seq: u32,
    pub syn: bool,
    pub fin_or_rst: bool,
    /// Capture time of the segment.
    pub ts_ms: u64,
}

#[derive(Default, Debug, Clone, Copy)]
pub struct NetStats {
    pub non_ip: u64,
    /// Packets of a link type replay does not read (counted in `non_ip` too), and the
    /// first such type: a capture of them shows no SIP for that reason alone.
    pub unsupported_link: u64,
    pub unsupported_linktype: i32,
    /// Packets the capture kept only the start of (its snaplen): what they carried past
    /// that is lost, and a message in them may not parse.
    pub snaplen_cut: u64,
    pub fragments: u64,
    pub reassembled: u64,
    pub fragments_expired: u64,
    /// Datagrams dropped for fragments that overlap other than as duplicates, as Linux
    /// drops them (RFC 5722): no reader on the proxy's host ever had them.
    pub fragments_overlapping: u64,
    pub tcp_gaps: u64,
    pub tcp_desync: u64,
    /// TCP streams whose first segment came with no SYN before it: a capture started
    /// while the connection was up (QA 171: what came before, calls the gateway
    /// counted, is not in it). A SYN recorded after it (reordered) takes it back.
    pub tcp_joined: u64,
    /// Out-of-order TCP segments sent again with other bytes (QA 35): the copy queued
    /// first is kept, as Linux's receiver keeps it, and the proxy behind it reads it.
    pub tcp_overlaps_conflicting: u64,
    /// SIP messages over TCP that cannot be framed (no Content-Length, or a bad one):
    /// the proxy answers them 400 and ends the connection, and so does the replay's
    /// reading (the rest of that stream is not read).
    pub tcp_unframed: u64,
    /// Segments found inside a tunnel or label stack (HEP included).
    pub decapsulated: u64,
    /// HEP packets that carried something else (RTCP reports, logs, keep-alives).
    pub hep_not_sip: u64,
    /// HEP packets that carried a SIP message (or what a mirror took for one).
    pub hep_sip: u64,
    /// IP packets of other protocols than UDP, TCP and SCTP (ICMP, routing, IPsec).
    pub other_ip: u64,
    /// HEP packets cut short or inconsistent.
    pub hep_damaged: u64,
    /// SIP messages found in SCTP DATA chunks, of which rebuilt from fragments.
    pub sctp_messages: u64,
    pub sctp_reassembled: u64,
    /// DATA chunks seen again (the sender's retransmissions), dropped.
    pub sctp_retransmitted: u64,
    /// SCTP packets whose chunks overran them.
    pub sctp_damaged: u64,
    /// SIP messages found in WebSocket connections.
    pub websocket_messages: u64,
}

impl NetStats {
    /// Packets whose SIP may be lost: TCP holes and resyncs, datagrams missing
    /// fragments, damaged SCTP and HEP packets (a packet cut by the snaplen is told by
    /// the replay, which knows whether it carried SIP).
    pub fn losses(&self) -> u64 {
        self.tcp_gaps
            + self.tcp_desync
            + self.fragments_expired
            + self.sctp_damaged
            + self.hep_damaged
    }
}

type FragKey = (IpAddr, IpAddr, u32, u8);

/// A datagram's fragments as Linux keeps them (`inet_frag_queue_insert`): runs of
/// fragments that came in order, by offset, none overlapping another. What a fragment
/// holds that a run holds already is a duplicate, dropped; any other overlap drops the
/// whole datagram (RFC 5722 for IPv6; Linux does the same for IPv4 since 4.19). So a
/// datagram holds at most its own length, however often its fragments are sent.
struct FragBuf {
    runs: Vec<(usize, Vec<u8>)>,
    /// The datagram's length, once its last fragment came.
    total: Option<usize>,
    /// The bytes the runs hold: the datagram is whole when they are `total`.
    held: usize,
    first_ms: u64,
}

/// What became of a fragment put among its datagram's others.
enum Placed {
    Kept,
    /// All its bytes were there already: dropped alone.
    Duplicate,
    /// It overlaps what came before otherwise: the datagram is dropped.
    Overlap,
}

impl FragBuf {
    fn place(&mut self, offset: usize, data: &[u8]) -> Placed {
        let end = offset + data.len();
        let run_end = |r: &(usize, Vec<u8>)| r.0 + r.1.len();
        match self.runs.last_mut() {
            None => self.runs.push((offset, data.to_vec())),
            // The common case: past everything held, at the last run's end or after a gap.
            Some(last) if run_end(last) < end => {
                let last_end = run_end(last);
                if offset < last_end {
                    return Placed::Overlap;
                }
                if offset == last_end {
                    last.1.extend_from_slice(data);
                } else {
                    self.runs.push((offset, data.to_vec()));
                }
            }
            Some(_) => {
                // The runs are sorted and apart: the first ending past `offset` is the
                // only one the fragment can start in.
                let i = self.runs.partition_point(|r| run_end(r) <= offset);
                match self.runs.get(i) {
                    Some(r) if r.0 < end => {
                        return if offset >= r.0 && end <= run_end(r) {
                            Placed::Duplicate
                        } else {
                            Placed::Overlap
                        };
                    }
                    _ => self.runs.insert(i, (offset, data.to_vec())),
                }
            }
        }
        self.held += data.len();
        Placed::Kept
    }
}

fn fragment_timeout(k: &FragKey) -> u64 {
    match k.0 {
        IpAddr::V4(_) => FRAGMENT_TIMEOUT_MS,
        IpAddr::V6(_) => FRAGMENT_TIMEOUT_V6_MS,
    }
}

/// Fragment bytes held at once, all datagrams together: Linux holds 4 MB
/// (`ipfrag_high_thresh`) and takes no new datagram beyond it; a replay of a mirror
/// port may see many hosts' fragments, hence more here.
const MAX_FRAGMENT_BYTES: usize = 64 << 20;

/// Link layer + IP decoding with fragment reassembly.
#[derive(Default)]
pub struct Decoder {
    frags: HashMap<FragKey, FragBuf>,
    /// The bytes `frags` holds.
    frag_bytes: usize,
    sctp: super::sctp::Associations,
    pub stats: NetStats,
    /// How deep inside tunnels the last segment was found.
    depth: u8,
    /// The fragmented datagram the last packet was a fragment of ([`unit_key`]).
    pub fragment_of: Option<u64>,
}

pub(super) fn be16(b: &[u8], i: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(i)?, *b.get(i + 1)?]))
}
pub(super) fn be32(b: &[u8], i: usize) -> Option<u32> {
    Some(u32::from_be_bytes([
        *b.get(i)?,
        *b.get(i + 1)?,
        *b.get(i + 2)?,
        *b.get(i + 3)?,
    ]))
}

impl Decoder {
    /// Decodes one captured frame; `None` for anything that is not UDP or TCP over IP
    /// (or a fragment still waiting for the rest). Traffic mirrored from a core network
    /// often arrives wrapped: MPLS label stacks, PPPoE, IP-in-IP, GRE (with ERSPAN
    /// types I-III from switch SPAN sessions), VXLAN and Geneve from cloud mirrors, and
    /// GTP-U from the mobile core (VoLTE signalling on S1-U/Gn). Those are opened, and
    /// the segment keeps the inner addresses, which are the SIP endpoints'.
    /// Datagrams whose fragments have not all come (at the end of a capture: never).
    pub fn incomplete_fragments(&self) -> usize {
        self.frags.len()
    }

    /// Whether a datagram still waits for fragments `age_ms` after its first: a
    /// datagram's fragments follow one another within milliseconds, so one that waits
    /// so long has most likely lost one (the kernel still waits its full time).
    pub fn fragments_waiting(&self, ts_ms: u64, age_ms: u64) -> bool {
        self.frags
            .values()
            .any(|f| ts_ms.saturating_sub(f.first_ms) >= age_ms)
    }

    pub fn decode(&mut self, linktype: i32, frame: &[u8], ts_ms: u64) -> Option<Segment> {
        self.depth = 0;
        self.fragment_of = None;
        let seg = self.link(linktype, frame, ts_ms);
        if seg.is_some() && self.depth > 0 {
            self.stats.decapsulated += 1;
        }
        seg
    }

    fn link(&mut self, linktype: i32, frame: &[u8], ts_ms: u64) -> Option<Segment> {
        match linktype {
            1 => self.ethernet(frame, ts_ms, 0),
            // Linux cooked capture v1: protocol at 14, payload at 16.
            113 => self.ethertype(be16(frame, 14)?, frame.get(16..)?, ts_ms, 0),
            // Linux cooked capture v2: protocol at 0, payload at 20.
            276 => self.ethertype(be16(frame, 0)?, frame.get(20..)?, ts_ms, 0),
            // Raw IP (DLT_RAW on most systems, and LINKTYPE_IPV4/IPV6).
            101 | 12 | 14 | 228 | 229 => self.ip(frame, ts_ms, 0),
            // BSD loopback: 4-byte address family in host order.
            0 | 108 => {
                let af = u32::from_le_bytes(frame.get(..4)?.try_into().ok()?);
                let af_be = u32::from_be_bytes(frame.get(..4)?.try_into().ok()?);
                let v6 = [24u32, 28, 30].contains(&af) || [24u32, 28, 30].contains(&af_be);
                let et = if v6 { 0x86dd } else { 0x0800 };
                self.ethertype(et, frame.get(4..)?, ts_ms, 0)
            }
            // Linux NFLOG (`tcpdump -i nflog:N`, iptables' NFLOG target): TLVs after a
            // 4-byte header; the payload TLV holds the IP packet.
            239 => self.nflog(frame, ts_ms),
            // PPP, and PPP in HDLC framing.
            9 | 50 => {
                let b = frame.strip_prefix(&[0xff, 0x03]).unwrap_or(frame);
                self.ppp(b, ts_ms, 0)
            }
            _ => {
                self.stats.non_ip += 1;
                if self.stats.unsupported_link == 0 {
                    self.stats.unsupported_linktype = linktype;
                }
                self.stats.unsupported_link += 1;
                None
            }
        }
    }

    fn nflog(&mut self, f: &[u8], ts_ms: u64) -> Option<Segment> {
        let mut off = 4;
        // TLV length and type are in the capturing host's byte order: little-endian on
        // every host that matters, and a length that does not fit says otherwise.
        while off + 4 <= f.len() {
            let mut len = u16::from_le_bytes([f[off], f[off + 1]]) as usize;
            let mut kind = u16::from_le_bytes([f[off + 2], f[off + 3]]);
            if len < 4 || off + len > f.len() {
                len = be16(f, off)? as usize;
                kind = be16(f, off + 2)?;
                if len < 4 || off + len > f.len() {
                    break;
                }
            }
            if kind == 9 {
                return self.ip(&f[off + 4..off + len], ts_ms, 0);
            }
            off += (len + 3) & !3;
        }
        self.stats.non_ip += 1;
        None
    }

    fn ethernet(&mut self, f: &[u8], ts_ms: u64, depth: u8) -> Option<Segment> {
        let mut et = be16(f, 12)?;
        let mut off = 14;
        // 802.1Q / 802.1ad tags, possibly stacked.
        while et == 0x8100 || et == 0x88a8 || et == 0x9100 {
            et = be16(f, off + 2)?;
            off += 4;
        }
        self.ethertype(et, f.get(off..)?, ts_ms, depth)
    }

    fn ethertype(&mut self, et: u16, b: &[u8], ts_ms: u64, depth: u8) -> Option<Segment> {
        // Real captures nest two or three deep (VLAN + MPLS + GRE + ERSPAN); the bound
        // stops a crafted packet from recursing.
        if depth > MAX_DEPTH {
            self.stats.non_ip += 1;
            return None;
        }
        match et {
            0x0800 => self.ipv4(b, ts_ms, depth),
            0x86dd => self.ipv6(b, ts_ms, depth),
            0x8847 | 0x8848 => self.mpls(b, ts_ms, depth + 1),
            // A VLAN tag after a header that is not Ethernet's: libpcap puts it back into
            // Linux cooked (SLL, SLL2) frames as protocol 0x8100 + TCI, which is what
            // `tcpdump -i any` writes on a host with VLAN interfaces.
            0x8100 | 0x88a8 | 0x9100 => self.ethertype(be16(b, 2)?, b.get(4..)?, ts_ms, depth + 1),
            // PPPoE session: version/type, code, session, length, then PPP.
            0x8864 => self.ppp(b.get(6..)?, ts_ms, depth + 1),
            _ => {
                self.stats.non_ip += 1;
                None
            }
        }
    }

    /// IP of either version, told by its first nibble.
    fn ip(&mut self, b: &[u8], ts_ms: u64, depth: u8) -> Option<Segment> {
        let et = if b.first()? >> 4 == 6 { 0x86dd } else { 0x0800 };
        self.ethertype(et, b, ts_ms, depth)
    }

    fn ppp(&mut self, b: &[u8], ts_ms: u64, depth: u8) -> Option<Segment> {
        // A compressed (one-byte) protocol field is odd.
        let (proto, rest) = if b.first()? & 1 == 1 {
            (*b.first()? as u16, b.get(1..)?)
        } else {
            (be16(b, 0)?, b.get(2..)?)
        };
        match proto {
            0x21 => self.ethertype(0x0800, rest, ts_ms, depth),
            0x57 => self.ethertype(0x86dd, rest, ts_ms, depth),
            _ => {
                self.stats.non_ip += 1;
                None
            }
        }
    }

    /// An MPLS label stack, then IP, or an Ethernet pseudowire behind its control word.
    fn mpls(&mut self, b: &[u8], ts_ms: u64, depth: u8) -> Option<Segment> {
        let mut off = 0;
        // Up to 16 labels, down to the one with the bottom-of-stack bit.
        loop {
            let label = be32(b, off)?;
            off += 4;
            if label & 0x100 != 0 {
                break;
            }
            if off >= 64 {
                return None;
            }
        }
        let rest = b.get(off..)?;
        match rest.first()? >> 4 {
            4 | 6 => self.ip(rest, ts_ms, depth),
            0 => self.ethernet(rest.get(4..)?, ts_ms, depth),
            _ => {
                self.stats.non_ip += 1;
                None
            }
        }
    }

    /// GRE (RFC 2784/2890): IP, Ethernet (transparent bridging), MPLS, or ERSPAN.
    fn gre(&mut self, b: &[u8], ts_ms: u64, depth: u8) -> Option<Segment> {
        let flags = be16(b, 0)?;
        let proto = be16(b, 2)?;
        if flags & 0x7 != 0 {
            return None; // version 1 is PPTP's, which carries PPP of a VPN, not mirrors
        }
        let off = 4
            + 4 * (flags & 0x8000 != 0) as usize
            + 4 * (flags & 0x2000 != 0) as usize
            + 4 * (flags & 0x1000 != 0) as usize;
        let inner = b.get(off..)?;
        match proto {
            0x6558 => self.ethernet(inner, ts_ms, depth),
            // ERSPAN type II has an 8-byte header and GRE's sequence number; type I
            // has neither.
            0x88be if flags & 0x1000 != 0 => self.ethernet(inner.get(8..)?, ts_ms, depth),
            0x88be => self.ethernet(inner, ts_ms, depth),
            // ERSPAN type III: 12 bytes, 8 more when the platform sub-header is there.
            0x22eb => {
                let o = *inner.get(11)? & 1 != 0;
                self.ethernet(inner.get(12 + 8 * o as usize..)?, ts_ms, depth)
            }
            et => self.ethertype(et, inner, ts_ms, depth),
        }
    }

    /// A UDP payload that is a tunnel (by its well-known port and a header that fits);
    /// `None` when it is not one, so that it is taken as plain UDP.
    fn udp_tunnel(
        &mut self,
        sport: u16,
        dport: u16,
        b: &[u8],
        ts_ms: u64,
        depth: u8,
    ) -> Option<Option<Segment>> {
        // VXLAN: flags with I set, then Ethernet.
        if dport == 4789 && b.len() >= 8 + 14 && b[0] & 0x08 != 0 && b[1..4] == [0, 0, 0] {
            return Some(self.ethernet(&b[8..], ts_ms, depth + 1));
        }
        // Geneve: version 0, options, then the inner protocol.
        if dport == 6081 && b.len() >= 8 && b[0] >> 6 == 0 {
            let opts = (b[0] & 0x3f) as usize * 4;
            let inner = b.get(8 + opts..)?;
            return Some(match be16(b, 2)? {
                0x6558 => self.ethernet(inner, ts_ms, depth + 1),
                et => self.ethertype(et, inner, ts_ms, depth + 1),
            });
        }
        // GTP-U version 1, G-PDU: an IP packet of a mobile subscriber.
        if (dport == 2152 || sport == 2152) && b.len() >= 8 && b[0] >> 4 == 3 && b[1] == 0xff {
            let mut off = 8;
            if b[0] & 0x07 != 0 {
                // Sequence number, N-PDU number, next extension header type.
                let mut next = *b.get(11)?;
                off = 12;
                while next != 0 {
                    let len = *b.get(off)? as usize * 4;
                    if len == 0 {
                        return Some(None);
                    }
                    next = *b.get(off + len - 1)?;
                    off += len;
                }
            }
            return Some(self.ip(b.get(off..)?, ts_ms, depth + 1));
        }
        // HEP, from a capture taken on a Homer server: on whatever port it was sent to.
        let opened = crate::hep::open(b)?;
        if opened.is_ok() {
            self.depth = depth + 1;
        }
        Some(hep_segment(opened, &mut self.stats))
    }

    fn ipv4(&mut self, b: &[u8], ts_ms: u64, depth: u8) -> Option<Segment> {
        if b.first()? >> 4 != 4 {
            return None;
        }
        let ihl = ((b[0] & 0x0f) as usize) * 4;
        // Total length 0: a segmentation-offload (TSO) or BIG TCP packet captured on the
        // sending host before the card cut it up; it ends with the frame, as tcpdump
        // and Wireshark read it (QA 35).
        let total = match be16(b, 2)? as usize {
            0 => b.len(),
            t => t.min(b.len()),
        };
        if ihl < 20 || total < ihl {
            return None;
        }
        let id = be16(b, 4)? as u32;
        let frag = be16(b, 6)?;
        let more = frag & 0x2000 != 0;
        let offset = ((frag & 0x1fff) as usize) * 8;
        let proto = b[9];
        let src = IpAddr::V4(Ipv4Addr::new(b[12], b[13], b[14], b[15]));
        let dst = IpAddr::V4(Ipv4Addr::new(b[16], b[17], b[18], b[19]));
        let payload = &b[ihl..total];
        if more || offset > 0 {
            let whole = self.fragment((src, dst, id, proto), offset, more, payload, ts_ms)?;
            return self.transport(src, dst, proto, &whole, ts_ms, depth);
        }
        self.transport(src, dst, proto, payload, ts_ms, depth)
    }

    fn ipv6(&mut self, b: &[u8], ts_ms: u64, depth: u8) -> Option<Segment> {
        if b.first()? >> 4 != 6 || b.len() < 40 {
            return None;
        }
        let plen = be16(b, 4)? as usize;
        let mut next = b[6];
        let src = IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(&b[8..24]).ok()?));
        let dst = IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(&b[24..40]).ok()?));
        // Payload length 0: a jumbogram (RFC 2675) or, as with IPv4's total length 0, a
        // packet captured on the sending host before segmentation offload cut it up
        // (Linux's BIG TCP): it ends with its frame (QA 46: it was read as empty).
        let end = match plen {
            0 => b.len(),
            n => (40 + n).min(b.len()),
        };
        let mut off = 40;
        loop {
            match next {
                // Hop-by-hop, routing, destination options: skip; AH too (which may
                // come before a Fragment header).
                n if SKIPPED.contains(&n) => (next, off) = skip_header(b, off, next)?,
                44 => {
                    let nh = *b.get(off)?;
                    let fo = be16(b, off + 2)?;
                    let id = be32(b, off + 4)?;
                    let offset = ((fo >> 3) as usize) * 8;
                    let more = fo & 1 != 0;
                    let payload = b.get(off + 8..end)?;
                    // An atomic fragment (offset 0, no more): the whole datagram, read
                    // at once whatever else of its ID waits (RFC 6946, as Linux does).
                    if offset == 0 && !more {
                        let (proto, at) = after_extension_headers(payload, nh)?;
                        return self.transport(src, dst, proto, payload.get(at..)?, ts_ms, depth);
                    }
                    let whole = self.fragment((src, dst, id, nh), offset, more, payload, ts_ms)?;
                    // What follows the Fragment header may be more extension headers
                    // (destination options, RFC 8200 4.1) before the transport.
                    let (proto, at) = after_extension_headers(&whole, nh)?;
                    return self.transport(src, dst, proto, whole.get(at..)?, ts_ms, depth);
                }
                _ => return self.transport(src, dst, next, b.get(off..end)?, ts_ms, depth),
            }
        }
    }

    fn transport(
        &mut self,
        src: IpAddr,
        dst: IpAddr,
        proto: u8,
        b: &[u8],
        ts_ms: u64,
        depth: u8,
    ) -> Option<Segment> {
        self.depth = depth;
        match proto {
            17 => {
                let sp = be16(b, 0)?;
                let dp = be16(b, 2)?;
                let len = (be16(b, 4)? as usize).clamp(8, b.len().max(8));
                let payload = b.get(8..len.min(b.len()))?;
                if let Some(inner) = self.udp_tunnel(sp, dp, payload, ts_ms, depth) {
                    return inner;
                }
                Some(Segment {
                    src: SocketAddr::new(src, sp),
                    dst: SocketAddr::new(dst, dp),
                    transport: Transport::Udp,
                    payload: Payload::Datagram(payload.to_vec()),
                    at_ms: None,
                })
            }
            6 => {
                let sp = be16(b, 0)?;
                let dp = be16(b, 2)?;
                let seq = be32(b, 4)?;
                let hl = ((*b.get(12)? >> 4) as usize) * 4;
                let flags = *b.get(13)?;
                Some(Segment {
                    src: SocketAddr::new(src, sp),
                    dst: SocketAddr::new(dst, dp),
                    transport: Transport::Tcp,
                    payload: Payload::Stream(
                        b.get(hl.max(20)..)?.to_vec(),
                        TcpMeta {
                            seq,
                            syn: flags & 0x02 != 0,
                            fin_or_rst: flags & 0x05 != 0,
                            ts_ms,
                        },
                    ),
                    at_ms: None,
                })
            }
            // IPsec AH (RFC 4302) authenticates without hiding: the transport follows
            // it. Its length counts 32-bit words, less two. (ESP is encrypted: nothing
            // to read.)
            51 => {
                let (next, at) = after_extension_headers(b, 51)?;
                self.transport(src, dst, next, b.get(at..)?, ts_ms, depth)
            }
            // IPv4 or IPv6 in IP (RFC 2003, 4213), and GRE.
            4 => self.ethertype(0x0800, b, ts_ms, depth + 1),
            41 => self.ethertype(0x86dd, b, ts_ms, depth + 1),
            47 => self.gre(b, ts_ms, depth + 1),
            132 => {
                let (sp, dp, messages) = self.sctp.packet(b, &mut self.stats)?;
                Some(Segment {
                    src: SocketAddr::new(src, sp),
                    dst: SocketAddr::new(dst, dp),
                    transport: Transport::Tcp,
                    payload: Payload::Messages(messages),
                    at_ms: None,
                })
            }
            // ICMP, OSPF, ESP...: no SIP (QA 147: counted nowhere).
            _ => {
                self.stats.other_ip += 1;
                None
            }
        }
    }

    fn fragment(
        &mut self,
        key: FragKey,
        offset: usize,
        more: bool,
        data: &[u8],
        ts_ms: u64,
    ) -> Option<Vec<u8>> {
        self.stats.fragments += 1;
        self.fragment_of = Some(unit_key(0, &key));
        if self.frags.len() >= MAX_FRAGMENTED {
            self.expire_fragments(ts_ms);
            if self.frags.len() >= MAX_FRAGMENTED {
                self.stats.fragments_expired += self.frags.len() as u64;
                self.frags.clear();
                self.frag_bytes = 0;
            }
        }
        // The same key long after its first fragment: a new datagram reusing the IP ID
        // (the old one never completed: expired, as the kernel would have let it go).
        if self
            .frags
            .get(&key)
            .is_some_and(|f| ts_ms.saturating_sub(f.first_ms) >= fragment_timeout(&key))
        {
            self.drop_datagram(&key);
            self.stats.fragments_expired += 1;
        }
        if offset + data.len() > MAX_MESSAGE + 1024 {
            self.drop_datagram(&key);
            return None;
        }
        if self.frag_bytes + data.len() > MAX_FRAGMENT_BYTES {
            // Full: datagrams past their time go first (QA 48: with fewer than
            // MAX_FRAGMENTED held, nothing ever swept them and every later fragment
            // was refused).
            self.expire_fragments(ts_ms);
        }
        if self.frag_bytes + data.len() > MAX_FRAGMENT_BYTES {
            // Still full: the fragment is let go, as Linux lets go of what comes past its
            // fragment memory; its datagram, if any came before, expires incomplete.
            if !self.frags.contains_key(&key) {
                self.stats.fragments_expired += 1;
            }
            return None;
        }
        let f = self.frags.entry(key).or_insert_with(|| FragBuf {
            runs: vec![],
            total: None,
            held: 0,
            first_ms: ts_ms,
        });
        let end = offset + data.len();
        // As Linux checks a fragment's end (`ip_frag_queue`): a last fragment ending
        // before bytes already held, or where another last one did not, and a fragment
        // reaching past a known end, are corrupt and dropped alone.
        let past_end = match f.total {
            Some(t) => end > t || (!more && end != t),
            None => !more && f.runs.last().is_some_and(|r| r.0 + r.1.len() > end),
        };
        if past_end || data.is_empty() {
            return None;
        }
        let before = f.held;
        match f.place(offset, data) {
            Placed::Kept => self.frag_bytes += f.held - before,
            Placed::Duplicate => return None,
            Placed::Overlap => {
                self.drop_datagram(&key);
                self.stats.fragments_overlapping += 1;
                return None;
            }
        }
        if !more {
            f.total = Some(end);
        }
        if f.total != Some(f.held) {
            return None; // a hole: wait for the rest
        }
        let f = self.frags.remove(&key)?;
        self.frag_bytes -= f.held;
        self.stats.reassembled += 1;
        // Whole: the runs are apart, in order, and hold `total` bytes, so they abut.
        let mut runs = f.runs.into_iter();
        let (_, mut whole) = runs.next()?;
        for (_, r) in runs {
            whole.extend_from_slice(&r);
        }
        Some(whole)
    }

    /// Lets go of the datagrams past their time at `ts_ms`, counted as expired.
    pub fn expire_fragments(&mut self, ts_ms: u64) {
        let before = self.frags.len();
        self.frags
            .retain(|k, f| ts_ms.saturating_sub(f.first_ms) < fragment_timeout(k));
        self.stats.fragments_expired += (before - self.frags.len()) as u64;
        self.frag_bytes = self.frags.values().map(|f| f.held).sum();
    }

    fn drop_datagram(&mut self, key: &FragKey) {
        if let Some(f) = self.frags.remove(key) {
            self.frag_bytes -= f.held;
        }
    }
}

/// Headers read past to the transport: IPv6 hop-by-hop, routing and destination
/// options, and IPsec AH (RFC 4302), which hides nothing. (ESP is encrypted: nothing to
/// read.)
const SKIPPED: [u8; 4] = [0, 43, 60, 51];

/// The header after the [`SKIPPED`] header `next` at `b[off]`, and where it starts. An
/// IPv6 extension header's length counts 8-octet units past the first; AH's counts
/// 32-bit words, less two.
fn skip_header(b: &[u8], off: usize, next: u8) -> Option<(u8, usize)> {
    let after = *b.get(off)?;
    let len = *b.get(off + 1)? as usize;
    let len = if next == 51 {
        (len + 2) * 4
    } else {
        (len + 1) * 8
    };
    Some((after, off + len))
}

/// The transport protocol and where it starts in `b`, whose first header is `next`:
/// past the [`SKIPPED`] headers that may lead a reassembled datagram or follow an AH.
fn after_extension_headers(b: &[u8], mut next: u8) -> Option<(u8, usize)> {
    let mut off = 0;
    // A datagram holds a bounded few; a longer chain is no datagram.
    for _ in 0..16 {
        if !SKIPPED.contains(&next) {
            return Some((next, off));
        }
        (next, off) = skip_header(b, off, next)?;
    }
    None
}

/// The message a HEP packet carries, with the addresses it travelled between; `None`
/// (counted) for HEP that carries no SIP or is damaged. Over TCP (or TLS, SCTP) the
/// sender reports whole messages, not stream segments: no sequence numbers to follow,
/// the payload is cut as it is.
fn hep_segment(
    opened: Result<crate::hep::Hep<'_>, crate::hep::Skip>,
    stats: &mut NetStats,
) -> Option<Segment> {
    let h = match opened {
        Ok(h) => h,
        Err(crate::hep::Skip::NotSip) => {
            stats.hep_not_sip += 1;
            return None;
        }
        Err(crate::hep::Skip::Damaged) => {
            stats.hep_damaged += 1;
            return None;
        }
    };
    stats.hep_sip += 1;
    let (transport, payload) = match h.ip_proto {
        17 => (Transport::Udp, Payload::Datagram(h.payload.into_owned())),
        _ => (
            Transport::Tcp,
            Payload::Messages(whole_messages(&h.payload)),
        ),
    };
    Some(Segment {
        src: h.src,
        dst: h.dst,
        transport,
        payload,
        at_ms: None,
    })
}

/// Offset of the first SIP start line in a datagram that carries junk before it.
pub fn find_sip_start(b: &[u8]) -> Option<usize> {
    if looks_like_sip(b) {
        return Some(0);
    }
    let mut i = 0;
    while let Some(p) = memchr::memchr(b'\n', &b[i..]) {
        i += p + 1;
        if looks_like_sip(&b[i..]) {
            return Some(i);
        }
    }
    None
}

/// The messages of a stream payload that holds whole messages, as a HEP sender reports
/// what it read from TCP or TLS. What does not frame (a Content-Length beyond the end,
/// a broken header) is given as it is, for the parser to refuse and count.
pub fn whole_messages(mut b: &[u8]) -> Vec<Vec<u8>> {
    let mut out = vec![];
    while !b.is_empty() {
        match frame_stream(b) {
            Ok(Frame::Message { skip, len }) => {
                out.push(b[skip..skip + len].to_vec());
                b = &b[skip + len..];
            }
            Ok(Frame::Ping(n)) if n > 0 => b = &b[n..],
            _ => {
                if b.iter().any(|&c| c != b'\r' && c != b'\n') {
                    out.push(b.to_vec());
                }
                break;
            }
        }
    }
    out
}

/// What a TCP stream turned out to carry.
#[derive(Default)]
enum Mode {
    #[default]
    Unknown,
    Sip,
    WebSocket(Box<websocket::Frames>),
    /// HEPv3 packets, as heplify or captagent send them to a Homer server over TCP.
    Hep,
    Other,
}

#[derive(Default)]
struct Flow {
    next_seq: Option<u32>,
    /// Where `next_seq` is in the stream, counted from its first byte followed: queued
    /// segments are keyed by it, which (unlike sequence numbers) never wraps.
    next_pos: u64,
    buf: Vec<u8>,
    /// Segments ahead of a hole, by stream position, with their sequence number and
    /// capture time. As in Linux's out-of-order queue none lies wholly inside another,
    /// so the one a byte is in is the last starting at or before it: every step is a
    /// lookup, not a walk (QA 46: 60,000 one-byte segments took 16 s, 250,000 13 min).
    ooo: BTreeMap<u64, Queued>,
    ooo_bytes: usize,
    /// Capture time since when segments have waited behind a hole.
    ooo_since: u64,
    /// A FIN or RST came ahead of a hole: the stream ends once the hole fills (or is
    /// given up), as the receiver ends it, not before the data in front of it.
    closing: bool,
    /// The initial sequence number of the SYN that opened the flow: a SYN sent again
    /// (its SYN-ACK lost) opens nothing new.
    isn: Option<u32>,
    /// Its first segment came with no SYN before it (counted in `tcp_joined`), and
    /// where its data was first followed from, if it had any.
    joined: bool,
    first_seq: Option<u32>,
    mode: Mode,
}

/// Messages a stream gave, each with the capture time it counts from.
type Timed = Vec<(Vec<u8>, u64)>;

/// A segment waiting behind a hole.
struct Queued {
    seq: u32,
    data: Vec<u8>,
    ts: u64,
}

impl Flow {
    /// The bytes the flow holds: queued behind a hole, and of a message not complete.
    fn held(&self) -> usize {
        self.ooo_bytes + self.buf.len()
    }

    /// Moves the stream on to sequence number `to` (ahead of `next_seq`, or its first).
    fn advance(&mut self, to: u32) {
        if let Some(n) = self.next_seq {
            self.next_pos += u64::from(to.wrapping_sub(n));
        }
        self.next_seq = Some(to);
    }

    /// The stream position of `seq`, which lies ahead of `next_seq`.
    fn pos_of(&self, seq: u32) -> u64 {
        self.next_pos + u64::from(self.next_seq.map_or(0, |n| seq.wrapping_sub(n)))
    }

    /// Gives a hole up: the stream goes on at the first segment after it, and the
    /// message it cut is lost (the reader picks up at the next start line).
    fn jump_gap(&mut self, stats: &mut NetStats) {
        let Some((&pos, q)) = self.ooo.first_key_value() else {
            return;
        };
        stats.tcp_gaps += 1;
        self.buf.clear();
        self.next_seq = Some(q.seq);
        self.next_pos = pos;
    }

    /// Gives the hole up (if there is one) and reads what waited behind it, each
    /// message at the capture time of the segment that completed it: the receiver had
    /// those then, only the capture missed the hole.
    fn give_up_hole(&mut self, stats: &mut NetStats, out: &mut Timed, segments: &mut Vec<Segment>) {
        self.jump_gap(stats);
        self.pull_in_order(None, stats, out, segments);
    }

    /// Reads the queued segments the stream has reached, in order: each message at the
    /// capture time `filled_at` of the segment that filled the hole, or (a hole given
    /// up) of the segment that completed it. Segments the stream has passed are
    /// dropped.
    fn pull_in_order(
        &mut self,
        filled_at: Option<u64>,
        stats: &mut NetStats,
        out: &mut Timed,
        segments: &mut Vec<Segment>,
    ) {
        while let Some(entry) = self.ooo.first_entry() {
            let pos = *entry.key();
            if pos > self.next_pos {
                break; // another hole
            }
            let q = entry.remove();
            self.ooo_bytes -= q.data.len();
            let skip = (self.next_pos - pos) as usize;
            if skip >= q.data.len() {
                continue;
            }
            self.buf.extend_from_slice(&q.data[skip..]);
            self.advance(q.seq.wrapping_add(q.data.len() as u32));
            self.read(stats, out, segments, filled_at.unwrap_or(q.ts));
        }
    }

    /// Queues a segment that came ahead of a hole, as Linux's receiver does
    /// (`tcp_data_queue_ofo`): one whose bytes are all queued already is dropped, one
    /// that covers queued ones replaces them; the bytes queued first win where segments
    /// overlap otherwise. Copies that disagree are counted: a sender that sends them
    /// wants two readers to differ.
    fn queue(&mut self, seq: u32, payload: &[u8], ts: u64, stats: &mut NetStats) {
        let pos = self.pos_of(seq);
        let end = pos + payload.len() as u64;
        if let Some((&p1, q1)) = self.ooo.range(..=pos).next_back() {
            let e1 = p1 + q1.data.len() as u64;
            if pos < e1 {
                let off = (pos - p1) as usize;
                let n = (q1.data.len() - off).min(payload.len());
                if q1.data[off..off + n] != payload[..n] {
                    stats.tcp_overlaps_conflicting += 1;
                }
                if e1 >= end {
                    return;
                }
            }
        }
        // Queued segments this one covers whole (the one at `pos` included) go.
        let mut conflict = false;
        while let Some((&p2, q2)) = self.ooo.range(pos..end).next() {
            let e2 = p2 + q2.data.len() as u64;
            if e2 > end {
                break;
            }
            let off = (p2 - pos) as usize;
            conflict |= payload[off..off + q2.data.len()] != q2.data[..];
            self.ooo_bytes -= q2.data.len();
            self.ooo.remove(&p2);
        }
        if conflict {
            stats.tcp_overlaps_conflicting += 1;
        }
        self.ooo_bytes += payload.len();
        self.ooo.insert(
            pos,
            Queued {
                seq,
                data: payload.to_vec(),
                ts,
            },
        );
    }

    /// Reads what the buffer holds as the stream's kind; messages count from `ts`.
    fn read(
        &mut self,
        stats: &mut NetStats,
        out: &mut Timed,
        segments: &mut Vec<Segment>,
        ts: u64,
    ) {
        if matches!(self.mode, Mode::Unknown) {
            self.mode = classify(&mut self.buf);
        }
        let mut messages = vec![];
        match &mut self.mode {
            Mode::Sip => {
                if sip_frames(&mut self.buf, stats, &mut messages) {
                    self.mode = Mode::Other;
                }
            }
            Mode::WebSocket(ws) => {
                let read = ws.feed(&mut self.buf, &mut messages);
                stats.websocket_messages += messages.len() as u64;
                if read.is_err() {
                    stats.tcp_desync += 1;
                    self.mode = Mode::Other;
                    self.buf.clear();
                }
            }
            Mode::Hep => hep_packets(&mut self.buf, stats, segments),
            Mode::Other => self.buf.clear(),
            Mode::Unknown => {}
        }
        out.extend(messages.into_iter().map(|m| (m, ts)));
    }
}

/// TCP streams, reassembled per direction and cut into SIP messages: SIP framed by
/// Content-Length, SIP over WebSocket, or HEP packets (each with the addresses of the
/// message it carries).
#[derive(Default)]
pub struct TcpFlows {
    flows: HashMap<(SocketAddr, SocketAddr), Flow>,
    /// The bytes the flows hold ([`Flow::held`]), all together.
    queued: usize,
    /// The stream the last FIN or RST ended, and whether it left a message unfinished.
    closed: Option<((SocketAddr, SocketAddr), bool)>,
    /// The streams last ended by a FIN or RST (at most [`ENDED_KEPT`]): data after its
    /// FIN, reordered in the capture, is no stream joined mid-way.
    ended: std::collections::VecDeque<(SocketAddr, SocketAddr)>,
}

/// Streams remembered as ended ([`TcpFlows::ended`]).
const ENDED_KEPT: usize = 256;

impl TcpFlows {
    /// Whether the stream from `src` to `dst` is followed and holds bytes of a message
    /// not yet complete (`None`: not followed, or ended).
    pub fn holds(&self, src: SocketAddr, dst: SocketAddr) -> Option<bool> {
        match self.flows.get(&(src, dst)) {
            Some(f) => Some(!f.buf.is_empty() || !f.ooo.is_empty()),
            // Ended cleanly by the packet just fed (a bare FIN): nothing was lost.
            None if self.closed == Some(((src, dst), false)) => Some(false),
            None => None,
        }
    }

    /// The end of the capture: what still waits behind a hole is read (the holes are
    /// counted as gaps), so that no call is lost silently for want of a later segment.
    pub fn finish(&mut self, stats: &mut NetStats) -> Vec<Segment> {
        self.give_up_holes(stats, None)
    }

    /// Holes waited for longer than a sender would take to fill them, by the capture's
    /// clock `now_ms` (any flow's packets move it): given up, and what waited behind
    /// them read, without waiting for the next segment of the same flow, which on a
    /// quiet trunk may come minutes later.
    pub fn expire(&mut self, now_ms: u64, stats: &mut NetStats) -> Vec<Segment> {
        self.give_up_holes(stats, Some(now_ms))
    }

    /// Gives up every hole (`now_ms` None), or those waited for too long by `now_ms`.
    fn give_up_holes(&mut self, stats: &mut NetStats, now_ms: Option<u64>) -> Vec<Segment> {
        let mut segments = vec![];
        for (&(src, dst), f) in self.flows.iter_mut() {
            let stale = now_ms.is_none_or(|n| n.saturating_sub(f.ooo_since) > GAP_WAIT_MS);
            if f.ooo.is_empty() || !stale {
                continue;
            }
            let mut out = vec![];
            let before = f.held();
            f.give_up_hole(stats, &mut out, &mut segments);
            self.queued = self.queued - before + f.held();
            // What is still queued lies behind another hole, waited for from now.
            if let Some(n) = now_ms {
                f.ooo_since = n;
            }
            push_messages(&mut segments, src, dst, out);
        }
        segments
    }

    /// Feeds one segment of the stream from `src` to `dst`; returns the complete SIP
    /// messages it finishes, as segments of whole messages.
    pub fn feed(
        &mut self,
        src: SocketAddr,
        dst: SocketAddr,
        payload: &[u8],
        t: TcpMeta,
        stats: &mut NetStats,
    ) -> Vec<Segment> {
        let key = (src, dst);
        if self.flows.len() >= MAX_FLOWS && !self.flows.contains_key(&key) {
            // Forget the flows: a capture with more concurrent flows than this is not
            // going to be followed completely anyway, and memory stays bounded.
            self.flows.clear();
            self.queued = 0;
        }
        let f = self.flows.entry(key).or_default();
        let queued_before = f.held();
        // A segment of a stream whose SYN the capture has not shown: the capture
        // started while the connection was up (QA 171, 172: a keep-alive's empty ACK
        // says so as well as data). Not a FIN or RST (a closed port's answer to a
        // scan), nor what follows a stream's own FIN.
        if !t.syn
            && !t.fin_or_rst
            && !f.joined
            && f.isn.is_none()
            && f.next_seq.is_none()
            && !self.ended.contains(&key)
        {
            stats.tcp_joined += 1;
            f.joined = true;
        }
        if t.syn && f.isn != Some(t.seq) {
            let joined = f.joined && f.isn.is_none();
            if joined {
                // A SYN behind its first segments (reordered in the capture): no join
                // after all.
                stats.tcp_joined = stats.tcp_joined.saturating_sub(1);
                f.joined = false;
            }
            if joined && f.first_seq == Some(t.seq.wrapping_add(1)) {
                // Its data was followed from the SYN's next byte: the stream is whole
                // (QA 172: reset, the next segment read as a hole).
                f.isn = Some(t.seq);
            } else {
                *f = Flow {
                    next_seq: Some(t.seq.wrapping_add(1)),
                    isn: Some(t.seq),
                    ..Flow::default()
                };
            }
        }
        // Data on a SYN (TCP Fast Open, RFC 7413) starts after the SYN's own sequence
        // number; a SYN sent again carries the same data, read once.
        let seq = if t.syn { t.seq.wrapping_add(1) } else { t.seq };
        let mut out = vec![];
        let mut segments = vec![];
        if !payload.is_empty() {
            if f.next_seq.is_none() && f.joined {
                f.first_seq = Some(seq);
            }
            let next = *f.next_seq.get_or_insert(seq);
            let ahead = seq.wrapping_sub(next) as i32;
            if ahead == 0 {
                f.buf.extend_from_slice(payload);
                f.advance(next.wrapping_add(payload.len() as u32));
                f.read(stats, &mut out, &mut segments, t.ts_ms);
            } else if ahead < 0 {
                // Retransmission or overlap: keep only what is new.
                let skip = (-ahead) as usize;
                if skip < payload.len() {
                    f.buf.extend_from_slice(&payload[skip..]);
                    f.advance(next.wrapping_add((payload.len() - skip) as u32));
                    f.read(stats, &mut out, &mut segments, t.ts_ms);
                }
            } else {
                if f.ooo.is_empty() {
                    f.ooo_since = t.ts_ms;
                }
                f.queue(seq, payload, t.ts_ms, stats);
            }
            // A hole that will not fill: the sender would have sent it again within a
            // few retransmission timeouts, so it is the capture's (a mirror port that
            // dropped it, a capture started mid-way); or more waits behind it than any
            // message holds.
            // All flows' queues together are bounded too (QA 46: 65,536 flows of 256 KiB
            // each would be 16 GiB): the flow that goes past the bound gives its hole up.
            let stale = t.ts_ms.saturating_sub(f.ooo_since) > GAP_WAIT_MS;
            let over = f.ooo_bytes > MAX_OUT_OF_ORDER
                || self.queued - queued_before + f.held() > MAX_QUEUED;
            if !f.ooo.is_empty() && (over || stale) {
                f.give_up_hole(stats, &mut out, &mut segments);
            }
            let waiting = f.ooo.len();
            f.pull_in_order(Some(t.ts_ms), stats, &mut out, &mut segments);
            if f.ooo.len() < waiting {
                f.ooo_since = t.ts_ms;
            }
        }
        // A FIN that came ahead of a hole waits for it (QA 36: the receiver reads the
        // data in front of it, and so does the proxy behind it).
        if t.fin_or_rst && !f.ooo.is_empty() {
            f.closing = true;
        } else if t.fin_or_rst || f.closing && f.ooo.is_empty() {
            // What waits behind a hole is read before the flow is forgotten.
            f.give_up_hole(stats, &mut out, &mut segments);
            let unfinished = !f.buf.is_empty() || !f.ooo.is_empty();
            self.queued -= queued_before;
            self.flows.remove(&key);
            self.closed = Some((key, unfinished));
            if self.ended.len() >= ENDED_KEPT {
                self.ended.pop_front();
            }
            self.ended.push_back(key);
            push_messages(&mut segments, src, dst, out);
            return segments;
        }
        // Past the bound with a message still incomplete (QA 48: 30,000 flows each in
        // the middle of a 62 KB message took 1.9 GB): that message is given up, as a
        // gap, and the stream read on from its next start line.
        if self.queued - queued_before + f.held() > MAX_QUEUED && !f.buf.is_empty() {
            stats.tcp_gaps += 1;
            f.buf.clear();
        }
        self.queued = self.queued - queued_before + f.held();
        push_messages(&mut segments, src, dst, out);
        segments
    }
}

/// The messages a stream from `src` to `dst` gave, as segments: one per run of
/// messages with the same capture time.
fn push_messages(segments: &mut Vec<Segment>, src: SocketAddr, dst: SocketAddr, out: Timed) {
    let mut run: Vec<Vec<u8>> = vec![];
    let mut run_ts = None;
    for (m, ts) in out {
        if run_ts.is_some_and(|t| t != ts) {
            segments.push(stream_segment(src, dst, std::mem::take(&mut run), run_ts));
        }
        run_ts = Some(ts);
        run.push(m);
    }
    if !run.is_empty() {
        segments.push(stream_segment(src, dst, run, run_ts));
    }
}

fn stream_segment(
    src: SocketAddr,
    dst: SocketAddr,
    m: Vec<Vec<u8>>,
    at_ms: Option<u64>,
) -> Segment {
    Segment {
        src,
        dst,
        transport: Transport::Tcp,
        payload: Payload::Messages(m),
        at_ms,
    }
}

/// Opens the complete HEP packets at the front of a stream's buffer (removing them).
/// Where the stream stops reading as HEP (a gap the capture missed), it picks up again
/// at the next packet's "HEP3".
fn hep_packets(buf: &mut Vec<u8>, stats: &mut NetStats, out: &mut Vec<Segment>) {
    let mut used = 0;
    while buf.len() - used >= 6 {
        let b = &buf[used..];
        let len = be16(b, 4).unwrap_or(0) as usize;
        if !b.starts_with(b"HEP3") || len < 6 {
            stats.tcp_desync += 1;
            match memchr::memmem::find(&b[1..], b"HEP3") {
                Some(p) => {
                    used += 1 + p;
                    continue;
                }
                None => {
                    // Keep a tail that may be the start of the next "HEP3".
                    used = buf.len() - 3;
                    break;
                }
            }
        }
        let Some(packet) = b.get(..len) else { break };
        // A packet that starts "HEP3" and does not open is damaged HEP.
        let opened = crate::hep::open(packet).unwrap_or(Err(crate::hep::Skip::Damaged));
        if let Some(seg) = hep_segment(opened, stats) {
            stats.decapsulated += 1;
            out.push(seg);
        }
        used += len;
    }
    buf.drain(..used);
}

/// What a stream carries, from its first bytes (an upgrade's bytes are consumed).
fn classify(buf: &mut Vec<u8>) -> Mode {
    // CRLF keep-alives before the first message say nothing.
    if buf.iter().all(|&c| c == b'\r' || c == b'\n') {
        return Mode::Unknown;
    }
    if buf.starts_with(b"HEP3") {
        return Mode::Hep;
    }
    if buf.len() < 4 && b"HEP3".starts_with(buf) {
        return Mode::Unknown;
    }
    if looks_like_sip(buf) {
        return Mode::Sip;
    }
    let ws = websocket::start(buf);
    match ws {
        websocket::Start::Upgrade(n) => {
            buf.drain(..n);
            return Mode::WebSocket(Box::default());
        }
        websocket::Start::Frames => return Mode::WebSocket(Box::default()),
        websocket::Start::Wait | websocket::Start::No => {}
    }
    // A HEP connection lives for days: a capture mostly starts inside it.
    if let Some(p) = memchr::memmem::find(buf, b"HEP3")
        && hep_starts(&buf[p..])
    {
        buf.drain(..p);
        return Mode::Hep;
    }
    // A capture that starts inside a SIP connection (or after a hole) starts inside a
    // message: SIP from the next start line on.
    if let Some(p) = find_sip_start(buf) {
        buf.drain(..p);
        return Mode::Sip;
    }
    match ws {
        // A start line cut by the segment: wait for its end, as long as the rest of a
        // message might come before one.
        websocket::Start::Wait => Mode::Unknown,
        _ if buf.len() < UNKNOWN_WAIT_BYTES => Mode::Unknown,
        _ => Mode::Other,
    }
}

/// Bytes a stream of no known kind is held while waiting for a start line: about the
/// rest of a large SIP message cut by the capture's start.
const UNKNOWN_WAIT_BYTES: usize = 8192;

/// Whether a HEPv3 packet starts `b` (whole and readable, or cut by the segment's end).
fn hep_starts(b: &[u8]) -> bool {
    let len = be16(b, 4).unwrap_or(0) as usize;
    len >= 6 && b.get(..len).is_none_or(|p| crate::hep::open(p).is_some())
}

/// Cuts the SIP messages at the front of a stream's buffer by Content-Length.
/// Where a message starts in a stream buffer: past the blank lines before it.
fn message_start(buf: &[u8]) -> usize {
    buf.iter()
        .position(|&c| c != b'\r' && c != b'\n')
        .unwrap_or(buf.len())
}

/// Returns true when the stream ends here, as the proxy would end its connection.
fn sip_frames(buf: &mut Vec<u8>, stats: &mut NetStats, out: &mut Vec<Vec<u8>>) -> bool {
    loop {
        match frame_stream(buf) {
            Ok(Frame::Message { skip, len }) => {
                out.push(buf[skip..skip + len].to_vec());
                buf.drain(..skip + len);
            }
            Ok(Frame::Ping(n)) => {
                buf.drain(..n);
            }
            Ok(Frame::Incomplete) => return false,
            // A message larger than SIP allows: the proxy answers it 513 and ends the
            // connection. Handed on as it starts (no more than a message's bound), so
            // that it is counted as unparsable rather than lost in a resync.
            Err(e)
                if e.kind == crate::sip::ErrorKind::TooLarge
                    && looks_like_sip(&buf[message_start(buf)..]) =>
            {
                let start = message_start(buf);
                let end = buf.len().min(start + crate::sip::MAX_MESSAGE + 1);
                out.push(buf[start..end].to_vec());
                // What is buffered is the rest of it (its header lines may look like
                // start lines to a resync): gone. A message right behind it in the same
                // segments goes too; the proxy closes the connection.
                buf.clear();
                return true;
            }
            // A message that starts where the stream is in step and cannot be framed
            // (no Content-Length, or one that is no number): the proxy answers it 400
            // and ends the connection; what the client sends after it is never read.
            Err(_) if looks_like_sip(&buf[message_start(buf)..]) => {
                stats.tcp_unframed += 1;
                buf.clear();
                return true;
            }
            Err(_) => {
                stats.tcp_desync += 1;
                // Resynchronise on the next thing that looks like a start line.
                match find_sip_start(&buf[1..]) {
                    Some(p) => {
                        buf.drain(..p + 1);
                    }
                    None => buf.clear(),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ipv4(proto: u8, payload: &[u8]) -> Vec<u8> {
        let mut p = vec![0x45, 0];
        p.extend_from_slice(&((20 + payload.len()) as u16).to_be_bytes());
        p.extend_from_slice(&[0, 0, 0x40, 0, 64, proto, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2]);
        p.extend_from_slice(payload);
        p
    }

    fn udp_sip() -> Vec<u8> {
        let body = b"OPTIONS sip:a@b SIP/2.0\r\n\r\n";
        let mut u = vec![0x13, 0xc4, 0x13, 0xc4];
        u.extend_from_slice(&((8 + body.len()) as u16).to_be_bytes());
        u.extend_from_slice(&[0, 0]);
        u.extend_from_slice(body);
        u
    }

    fn sip_udp() -> Vec<u8> {
        ipv4(17, &udp_sip())
    }

    /// ::1 to ::2.
    fn ipv6(next: u8, payload: &[u8]) -> Vec<u8> {
        let mut p = vec![0x60, 0, 0, 0];
        p.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        p.extend_from_slice(&[next, 64]);
        for last in [1, 2] {
            p.extend_from_slice(&[0; 15]);
            p.push(last);
        }
        p.extend_from_slice(payload);
        p
    }

    fn is_options(s: &Segment) -> bool {
        matches!(&s.payload, Payload::Datagram(p) if p.starts_with(b"OPTIONS"))
    }

    /// An IPv4 fragment of datagram `id` (10.0.0.1 to 10.0.0.2, UDP).
    fn v4_frag(id: u16, offset: usize, more: bool, data: &[u8]) -> Vec<u8> {
        let mut p = ipv4(17, data);
        p[4..6].copy_from_slice(&id.to_be_bytes());
        p[6..8]
            .copy_from_slice(&((offset / 8) as u16 | if more { 0x2000 } else { 0 }).to_be_bytes());
        p
    }

    /// A UDP datagram carrying an OPTIONS padded to `len` bytes, for cutting up.
    fn long_udp_sip(len: usize) -> Vec<u8> {
        let mut body = b"OPTIONS sip:a@b SIP/2.0\r\nX: ".to_vec();
        body.resize(len - 8 - 4, b'x');
        body.extend_from_slice(b"\r\n\r\n");
        let mut u = vec![0x13, 0xc4, 0x13, 0xc4];
        u.extend_from_slice(&((8 + body.len()) as u16).to_be_bytes());
        u.extend_from_slice(&[0, 0]);
        u.extend_from_slice(&body);
        u
    }

    /// Fragments as Linux keeps them (QA 46): a copy of one already held is dropped
    /// alone, however often it comes (a million copies held 1.5 GB, and each new one
    /// re-sorted them all); fragments that overlap otherwise drop the datagram, even
    /// with the same bytes, as Linux (RFC 5722, and IPv4 since 4.19) drops it.
    #[test]
    fn fragments_are_held_once_and_overlaps_drop_the_datagram() {
        let d = long_udp_sip(96);
        let mut dec = Decoder::default();
        for _ in 0..10_000 {
            assert!(
                dec.decode(101, &v4_frag(1, 32, true, &d[32..64]), 0)
                    .is_none()
            );
        }
        assert_eq!(dec.frag_bytes, 32, "a duplicate is held once");
        // Before, after and inside what is held, out of order: whole.
        assert!(
            dec.decode(101, &v4_frag(1, 64, false, &d[64..]), 1)
                .is_none()
        );
        assert!(
            dec.decode(101, &v4_frag(1, 40, true, &d[40..48]), 1)
                .is_none()
        );
        let s = dec
            .decode(101, &v4_frag(1, 0, true, &d[..32]), 2)
            .expect("whole");
        assert!(is_options(&s));
        assert_eq!((dec.stats.reassembled, dec.frag_bytes), (1, 0));
        // The same bytes, but across two fragments' boundary: dropped whole.
        let mut dec = Decoder::default();
        assert!(dec.decode(101, &v4_frag(2, 0, true, &d[..32]), 0).is_none());
        assert!(
            dec.decode(101, &v4_frag(2, 24, true, &d[24..64]), 0)
                .is_none()
        );
        assert!(
            dec.decode(101, &v4_frag(2, 64, false, &d[64..]), 0)
                .is_none()
        );
        assert_eq!(dec.stats.fragments_overlapping, 1);
        assert!(
            dec.decode(101, &v4_frag(2, 32, true, &d[32..64]), 0)
                .is_none()
        );
        assert_eq!(
            dec.stats.reassembled, 0,
            "the rest starts a datagram that never ends"
        );
        // A fragment past a known end, and a second last fragment ending elsewhere:
        // dropped alone; the datagram completes with the right ones.
        let mut dec = Decoder::default();
        assert!(
            dec.decode(101, &v4_frag(3, 64, false, &d[64..]), 0)
                .is_none()
        );
        assert!(
            dec.decode(101, &v4_frag(3, 64, false, &d[64..88]), 0)
                .is_none()
        );
        assert!(dec.decode(101, &v4_frag(3, 0, true, &d[..64]), 0).is_some());
    }

    /// Fragments of many datagrams never whole take at most the budget (QA 46).
    #[test]
    fn fragment_memory_is_bounded_across_datagrams() {
        let d = long_udp_sip(1480 + 64);
        let mut dec = Decoder::default();
        for id in 0..MAX_FRAGMENTED as u16 {
            for off in (0..1480 * 40).step_by(1480) {
                let _ = dec.decode(101, &v4_frag(id, off, true, &d[..1480]), 0);
            }
        }
        assert!(dec.frag_bytes <= MAX_FRAGMENT_BYTES, "{}", dec.frag_bytes);
        let held: usize = dec.frags.values().map(|f| f.held).sum();
        assert_eq!(held, dec.frag_bytes);
        assert!(dec.stats.fragments_expired > 0);
        // Later, past the fragments' time: they are swept, and a new datagram is whole.
        let d = long_udp_sip(96);
        let later = 31_000;
        assert!(
            dec.decode(101, &v4_frag(9999, 0, true, &d[..48]), later)
                .is_none()
        );
        let s = dec.decode(101, &v4_frag(9999, 48, false, &d[48..]), later);
        assert!(s.is_some_and(|s| is_options(&s)), "swept and reassembled");
    }

    /// An IPv6 atomic fragment is read at once, even while fragments of its ID wait
    /// (RFC 6946; QA 48).
    #[test]
    fn an_ipv6_atomic_fragment_is_read_at_once() {
        let inner = udp_sip();
        let frag = |offset: usize, more: bool, data: &[u8]| {
            let mut f = vec![17, 0];
            f.extend_from_slice(&(((offset / 8) as u16) << 3 | more as u16).to_be_bytes());
            f.extend_from_slice(&7u32.to_be_bytes());
            f.extend_from_slice(data);
            ipv6(44, &f)
        };
        let mut d = Decoder::default();
        assert!(d.decode(101, &frag(16, true, &inner[16..24]), 0).is_none());
        let s = d
            .decode(101, &frag(0, false, &inner), 1)
            .expect("atomic: whole");
        assert!(is_options(&s));
    }

    /// An IPv6 packet with payload length 0 (BIG TCP on the sending host, a jumbogram)
    /// ends with its frame, as an IPv4 one with total length 0 does (QA 46).
    #[test]
    fn ipv6_payload_length_zero_ends_with_the_frame() {
        let mut p = ipv6(17, &udp_sip());
        p[4..6].copy_from_slice(&[0, 0]);
        let s = Decoder::default()
            .decode(101, &p, 0)
            .expect("read to the frame's end");
        assert!(is_options(&s));
    }

    /// A destination-options header may follow the Fragment header (RFC 8200 4.1): the
    /// datagram is read past it once reassembled. IPv6 fragments wait 60 s, as the
    /// kernel's do (IPv4's 30 s).
    #[test]
    fn ipv6_headers_after_the_fragment_header_are_read_past() {
        let mut inner = vec![17, 0, 1, 4, 0, 0, 0, 0];
        inner.extend_from_slice(&udp_sip());
        let frag = |offset: usize, more: bool, data: &[u8]| {
            let mut f = vec![60, 0];
            f.extend_from_slice(&(((offset / 8) as u16) << 3 | more as u16).to_be_bytes());
            f.extend_from_slice(&7u32.to_be_bytes());
            f.extend_from_slice(data);
            ipv6(44, &f)
        };
        let mut d = Decoder::default();
        assert!(d.decode(101, &frag(16, false, &inner[16..]), 0).is_none());
        let s = d
            .decode(101, &frag(0, true, &inner[..16]), 45_000)
            .expect("reassembled past its destination options");
        assert_eq!(s.dst, "[::2]:5060".parse().unwrap());
        assert!(is_options(&s));
        // AH may come before the Fragment header (RFC 4302 3.1.2: after hop-by-hop and
        // routing, with the fragment header or after it).
        let ah_frag = |offset: usize, more: bool, data: &[u8]| {
            let mut f = vec![44, 4, 0, 0];
            f.extend_from_slice(&[0; 20]);
            f.extend_from_slice(&[60, 0]);
            f.extend_from_slice(&(((offset / 8) as u16) << 3 | more as u16).to_be_bytes());
            f.extend_from_slice(&8u32.to_be_bytes());
            f.extend_from_slice(data);
            ipv6(51, &f)
        };
        assert!(
            d.decode(101, &ah_frag(16, false, &inner[16..]), 46_000)
                .is_none()
        );
        let s = d
            .decode(101, &ah_frag(0, true, &inner[..16]), 46_001)
            .expect("reassembled behind AH");
        assert!(is_options(&s));
        // Past 60 s the first fragment is gone.
        assert!(
            d.decode(101, &frag(16, false, &inner[16..]), 100_000)
                .is_none()
        );
        assert!(
            d.decode(101, &frag(0, true, &inner[..16]), 161_000)
                .is_none()
        );
        // IPv4 waits 30 s.
        let v4 = |offset: usize, more: bool, data: &[u8]| {
            let mut p = ipv4(17, data);
            p[4..6].copy_from_slice(&9u16.to_be_bytes());
            p[6..8].copy_from_slice(
                &(((offset / 8) as u16) | if more { 0x2000 } else { 0 }).to_be_bytes(),
            );
            p
        };
        let udp = udp_sip();
        assert!(d.decode(101, &v4(16, false, &udp[16..]), 200_000).is_none());
        assert!(d.decode(101, &v4(0, true, &udp[..16]), 245_000).is_none());
    }

    /// IPsec AH authenticates without hiding: the transport behind it is read, over
    /// IPv4 and IPv6, past other extension headers too; a chain longer than any
    /// datagram's is not followed.
    #[test]
    fn ah_is_read_past() {
        let mut ah = vec![17, 4, 0, 0];
        ah.extend_from_slice(&[0; 20]);
        ah.extend_from_slice(&udp_sip());
        let mut d = Decoder::default();
        assert!(is_options(
            &d.decode(101, &ipv4(51, &ah), 0).expect("AH over IPv4")
        ));
        assert!(is_options(
            &d.decode(101, &ipv6(51, &ah), 0).expect("AH over IPv6")
        ));
        // AH then destination options (IPv6), and two AHs: read past as well.
        let mut ah_opts = vec![60, 4, 0, 0];
        ah_opts.extend_from_slice(&[0; 20]);
        ah_opts.extend_from_slice(&[17, 0, 1, 4, 0, 0, 0, 0]);
        ah_opts.extend_from_slice(&udp_sip());
        assert!(is_options(
            &d.decode(101, &ipv6(51, &ah_opts), 0).expect("AH, options")
        ));
        let mut twice = vec![51, 4, 0, 0];
        twice.extend_from_slice(&[0; 20]);
        twice.extend_from_slice(&ah);
        assert!(is_options(
            &d.decode(101, &ipv4(51, &twice), 0).expect("AH, AH")
        ));
        // A chain longer than any datagram's is not followed.
        let mut long = udp_sip();
        let mut next = 17;
        for _ in 0..20 {
            let mut h = vec![next, 4, 0, 0];
            h.extend_from_slice(&[0; 20]);
            h.extend_from_slice(&long);
            long = h;
            next = 51;
        }
        assert!(d.decode(101, &ipv4(51, &long), 0).is_none());
    }

    #[test]
    fn ip_in_ip_opens_up_to_the_depth_bound_and_no_deeper() {
        let mut d = Decoder::default();
        let mut p = sip_udp();
        for _ in 0..MAX_DEPTH {
            p = ipv4(4, &p);
        }
        let s = d.decode(101, &p, 0).expect("four tunnels deep");
        assert_eq!(s.src, "10.0.0.1:5060".parse().unwrap());
        assert_eq!(d.stats.decapsulated, 1);
        // One more level is refused (counted as not IP), not followed.
        let deeper = ipv4(4, &p);
        assert!(d.decode(101, &deeper, 0).is_none());
        assert_eq!(d.stats.non_ip, 1);
        // A crafted stack thousands deep is cut at the bound as well.
        let mut p = sip_udp();
        for _ in 0..3000 {
            p = ipv4(4, &p);
            p.truncate(60_000);
        }
        assert!(d.decode(101, &p, 0).is_none());
    }

    #[test]
    fn plain_udp_on_a_tunnel_port_stays_plain_when_the_header_does_not_fit() {
        let mut d = Decoder::default();
        // SIP sent to port 4789: 'O' (0x4f) happens to have VXLAN's I flag set, but the
        // bytes VXLAN reserves ("PTI") are not zeros.
        let body = b"OPTIONS sip:a@b SIP/2.0\r\n\r\n";
        let mut u = vec![0x13, 0xc4, 0x12, 0xb5];
        u.extend_from_slice(&((8 + body.len()) as u16).to_be_bytes());
        u.extend_from_slice(&[0, 0]);
        u.extend_from_slice(body);
        let s = d.decode(101, &ipv4(17, &u), 0).expect("plain UDP");
        assert_eq!(s.dst.port(), 4789);
        assert!(matches!(&s.payload, Payload::Datagram(p) if p.starts_with(b"OPTIONS")));
        assert_eq!(d.stats.decapsulated, 0);
        // GRE version 1 (PPTP) is not opened.
        let mut g = vec![0x30, 0x01, 0x88, 0x0b, 0, 0, 0, 0, 0, 0, 0, 0];
        g.extend_from_slice(&sip_udp());
        assert!(d.decode(101, &ipv4(47, &g), 0).is_none());
    }

    fn hep(n: u16) -> Vec<u8> {
        let body = format!("OPTIONS sip:a@b SIP/2.0\r\nCall-ID: {n}\r\nContent-Length: 0\r\n\r\n");
        let mut out = vec![];
        let m = crate::hep::Mirror {
            src: SocketAddr::from(([10, 0, 0, 1], 5060)),
            dst: SocketAddr::from(([10, 0, 0, 2], 5000 + n)),
            transport: Transport::Udp,
            ts_us: 0,
            capture_id: 1,
            password: b"",
            payload: body.as_bytes(),
            correlation: b"",
        };
        assert!(crate::hep::encode(&m, &mut out));
        out
    }

    /// HEP over TCP, as captagent keeps one connection open for days: a capture that
    /// starts inside a packet, packets cut across segments, bytes that are not HEP.
    #[test]
    fn hep_in_a_tcp_stream_is_followed_from_wherever_the_capture_starts() {
        let mut stream = hep(1)[10..].to_vec(); // the capture began inside packet 1
        stream.extend(hep(2));
        let three = hep(3);
        stream.extend(&three[..20]);
        let mut rest = three[20..].to_vec();
        rest.extend(b"\x00\x01garbage"); // a gap the capture missed...
        rest.extend(hep(4)); // ...then HEP again
        let mut flows = TcpFlows::default();
        let mut st = NetStats::default();
        let (a, b) = (
            SocketAddr::from(([10, 0, 9, 1], 40000)),
            SocketAddr::from(([10, 0, 9, 2], 9060)),
        );
        let meta = |seq| TcpMeta {
            seq,
            syn: false,
            fin_or_rst: false,
            ts_ms: 0,
        };
        let mut got = vec![];
        for (seq, part) in [(1000u32, &stream), (1000 + stream.len() as u32, &rest)] {
            for s in flows.feed(a, b, part, meta(seq), &mut st) {
                assert_eq!(
                    s.src,
                    SocketAddr::from(([10, 0, 0, 1], 5060)),
                    "the message's own addresses"
                );
                got.push(s.dst.port());
            }
        }
        assert_eq!(got, vec![5002, 5003, 5004]);
        assert_eq!(st.decapsulated, 3);
        assert_eq!(st.tcp_desync, 1);
    }

    /// Call-IDs of the messages in segments.
    fn call_ids(segments: Vec<Segment>) -> Vec<String> {
        let mut ids = vec![];
        for s in segments {
            if let Payload::Messages(m) = s.payload {
                for m in m {
                    let t = String::from_utf8_lossy(&m).into_owned();
                    let id = t
                        .split("Call-ID: ")
                        .nth(1)
                        .unwrap_or("")
                        .split("\r\n")
                        .next();
                    ids.push(id.unwrap_or("").to_string());
                }
            }
        }
        ids
    }

    /// The two ends of the test streams.
    fn ends() -> (SocketAddr, SocketAddr) {
        (
            SocketAddr::from(([10, 0, 0, 1], 40000)),
            SocketAddr::from(([10, 0, 0, 2], 5060)),
        )
    }

    /// A data segment at `seq`, captured at `ts_ms`.
    fn meta(seq: u32, ts_ms: u64) -> TcpMeta {
        TcpMeta {
            seq,
            syn: false,
            fin_or_rst: false,
            ts_ms,
        }
    }

    fn options(id: &str) -> Vec<u8> {
        format!("OPTIONS sip:a@b SIP/2.0\r\nCall-ID: {id}\r\nContent-Length: 0\r\n\r\n")
            .into_bytes()
    }

    /// Thousands of one-byte segments ahead of a hole, a sequence number wrap among
    /// them, then the hole filled: read in order, each step a lookup (QA 46: the queue
    /// was walked for every segment, 250,000 of them took 13 minutes).
    #[test]
    fn a_long_out_of_order_queue_is_read_in_order() {
        let (a, b) = ends();
        let mut f = TcpFlows::default();
        let mut st = NetStats::default();
        let mut data = vec![];
        for i in 0..200 {
            data.extend(options(&format!("m{i}")));
        }
        let start = u32::MAX - 5_000; // wraps inside the queue
        let hole = 10;
        let syn = TcpMeta {
            syn: true,
            ..meta(start.wrapping_sub(1), 0)
        };
        assert!(f.feed(a, b, b"", syn, &mut st).is_empty());
        // Every byte after the hole, last first, some twice, one with other bytes.
        for i in (hole..data.len()).rev() {
            let seq = start.wrapping_add(i as u32);
            assert!(f.feed(a, b, &data[i..=i], meta(seq, 0), &mut st).is_empty());
            if i % 7 == 0 {
                let _ = f.feed(a, b, &data[i..=i], meta(seq, 0), &mut st);
            }
        }
        let _ = f.feed(
            a,
            b,
            b"!",
            meta(start.wrapping_add(hole as u32 + 1), 0),
            &mut st,
        );
        assert_eq!(st.tcp_overlaps_conflicting, 1);
        // A segment covering queued ones replaces them (and says they differed only
        // where they did: here they do not).
        let span = start.wrapping_add(hole as u32 + 100);
        let _ = f.feed(a, b, &data[hole + 100..hole + 150], meta(span, 0), &mut st);
        assert_eq!(st.tcp_overlaps_conflicting, 1);
        let ids = call_ids(f.feed(a, b, &data[..hole], meta(start, 1), &mut st));
        let want: Vec<String> = (0..200).map(|i| format!("m{i}")).collect();
        assert_eq!(ids, want);
        assert_eq!((f.queued, st.tcp_gaps), (0, 0));
    }

    /// Queues behind holes are bounded all flows together, not only each (QA 46:
    /// 65,536 flows of 256 KiB each): past the bound, a flow gives its hole up.
    #[test]
    fn out_of_order_bytes_are_bounded_across_flows() {
        let mut f = TcpFlows::default();
        let mut st = NetStats::default();
        let chunk = vec![b'x'; MAX_OUT_OF_ORDER - 1];
        let flows = MAX_QUEUED / chunk.len() + 10;
        for port in 0..flows {
            let a = SocketAddr::from(([10, 0, 0, 1], 10_000 + port as u16));
            let b = SocketAddr::from(([10, 0, 0, 2], 5060));
            let _ = f.feed(a, b, b"OPT", meta(1, 0), &mut st);
            let _ = f.feed(a, b, &chunk, meta(100, 0), &mut st);
            assert!(f.queued <= MAX_QUEUED);
        }
        let held: usize = f.flows.values().map(Flow::held).sum();
        assert_eq!(held, f.queued);
        assert!(st.tcp_gaps >= 10, "{}", st.tcp_gaps);
        // Messages begun and not ended count too (QA 48): past the bound, a flow's
        // incomplete message is given up.
        let mut f = TcpFlows::default();
        let mut st = NetStats::default();
        let mut head = b"INVITE sip:a@b SIP/2.0\r\nX: ".to_vec();
        head.resize(60_000, b'x');
        for port in 0..MAX_QUEUED / head.len() + 10 {
            let a = SocketAddr::from(([10, 0, 1, (port >> 8) as u8], port as u16));
            let b = SocketAddr::from(([10, 0, 0, 2], 5060));
            let _ = f.feed(a, b, &head, meta(1, 0), &mut st);
            assert!(f.queued <= MAX_QUEUED);
        }
        let held: usize = f.flows.values().map(Flow::held).sum();
        assert_eq!(held, f.queued);
        assert!(st.tcp_gaps >= 10, "{}", st.tcp_gaps);
    }

    /// A message over TCP with no Content-Length, where the stream is in step: the proxy
    /// answers it 400 and ends the connection, so nothing after it on that stream is
    /// read; a new connection (SYN) is read again.
    #[test]
    fn an_unframed_message_ends_its_stream() {
        let (a, b) = ends();
        let mut f = TcpFlows::default();
        let mut st = NetStats::default();
        let no_cl = b"INVITE sip:a@b SIP/2.0\r\nCall-ID: no-cl\r\n\r\n".to_vec();
        let mut seq = 1;
        let mut ids = vec![];
        for data in [options("first"), no_cl, options("after")] {
            ids.extend(call_ids(f.feed(a, b, &data, meta(seq, 0), &mut st)));
            seq += data.len() as u32;
        }
        assert_eq!(ids, ["first"]);
        assert_eq!((st.tcp_unframed, st.tcp_desync), (1, 0));
        let syn = TcpMeta {
            syn: true,
            ..meta(1000, 1)
        };
        f.feed(a, b, &[], syn, &mut st);
        let again = call_ids(f.feed(a, b, &options("new"), meta(1001, 2), &mut st));
        assert_eq!(again, ["new"]);
    }

    /// Data on a SYN (TCP Fast Open) is the stream's first bytes, after the SYN's own
    /// sequence number; the SYN sent again (its SYN-ACK lost) neither repeats the data
    /// nor restarts the stream.
    #[test]
    fn data_on_a_syn_is_read_once() {
        let (a, b) = ends();
        let mut f = TcpFlows::default();
        let mut st = NetStats::default();
        let first = options("tfo");
        let syn = TcpMeta {
            syn: true,
            ..meta(5000, 0)
        };
        assert_eq!(call_ids(f.feed(a, b, &first, syn, &mut st)), ["tfo"]);
        assert_eq!(
            call_ids(f.feed(a, b, &first, syn, &mut st)),
            Vec::<String>::new()
        );
        let next = 5001 + first.len() as u32;
        assert_eq!(
            call_ids(f.feed(a, b, &options("after"), meta(next, 1), &mut st)),
            ["after"]
        );
        assert_eq!((st.tcp_gaps, st.tcp_desync), (0, 0));
        // A new connection (another ISN) is a new stream.
        let syn2 = TcpMeta {
            syn: true,
            ..meta(90_000, 2)
        };
        assert_eq!(
            call_ids(f.feed(a, b, &options("new"), syn2, &mut st)),
            ["new"]
        );
    }

    /// A hole the capture never fills (a mirror that dropped a segment) is given up
    /// after GAP_WAIT_MS of capture time, or at the capture's end, and what waited
    /// behind it is read from the next start line; a hole filled in time loses nothing.
    #[test]
    fn holes_are_waited_for_then_given_up() {
        let (a, b) = ends();
        let (m1, m2, m3) = (options("one"), options("two"), options("three"));
        let mut stream = m1.clone();
        stream.extend_from_slice(&m2);
        stream.extend_from_slice(&m3);
        let (x, rest) = stream.split_at(20);
        let (hole, y) = rest.split_at(10); // inside the first message
        let y_seq = 1000 + 30;
        // Filled in time (one second later): all three.
        // The stream's start, then what follows a hole of 10 bytes: nothing read yet.
        let behind_a_hole = || {
            let mut f = TcpFlows::default();
            let mut st = NetStats::default();
            assert!(f.feed(a, b, x, meta(1000, 0), &mut st).is_empty());
            assert!(f.feed(a, b, y, meta(y_seq, 10), &mut st).is_empty());
            (f, st)
        };
        let (mut f, mut st) = behind_a_hole();
        let got = call_ids(f.feed(a, b, hole, meta(1020, 1_000), &mut st));
        assert_eq!(got, ["one", "two", "three"]);
        assert_eq!(st.tcp_gaps, 0);
        // Never filled: the next segment after GAP_WAIT_MS gives the rest up to it.
        let (mut f, mut st) = behind_a_hole();
        let m4 = options("four");
        let m4_seq = y_seq + y.len() as u32;
        let got = call_ids(f.feed(a, b, &m4, meta(m4_seq, 10 + GAP_WAIT_MS + 1), &mut st));
        assert_eq!(got, ["two", "three", "four"]);
        assert_eq!(st.tcp_gaps, 1);
        // Never filled and nothing after it: the capture's end gives it up.
        let (mut f, mut st) = behind_a_hole();
        assert_eq!(call_ids(f.finish(&mut st)), ["two", "three"]);
        assert_eq!(st.tcp_gaps, 1);
        assert!(f.finish(&mut st).is_empty(), "given once");
        // A FIN ahead of the hole waits for it, as the receiver's does (QA 36): filled,
        // all three; never filled, the capture's end gives it up.
        let fin = TcpMeta {
            fin_or_rst: true,
            ..meta(y_seq + y.len() as u32, 20)
        };
        let (mut f, mut st) = behind_a_hole();
        assert!(f.feed(a, b, &[], fin, &mut st).is_empty());
        let got = call_ids(f.feed(a, b, hole, meta(1020, 30), &mut st));
        assert_eq!(got, ["one", "two", "three"]);
        assert_eq!(st.tcp_gaps, 0);
        let (mut f, mut st) = behind_a_hole();
        assert!(f.feed(a, b, &[], fin, &mut st).is_empty());
        assert_eq!(call_ids(f.finish(&mut st)), ["two", "three"]);
    }

    /// What waited behind a hole counts from its own capture time, not from the packet
    /// that made the hole be given up (minutes later on a quiet trunk: hour and rate
    /// rules would judge it then); a hole filled counts from when it was filled; and
    /// the capture's clock gives a hole up without a later segment of the same flow.
    #[test]
    fn messages_behind_a_hole_keep_their_own_time() {
        let (a, b) = ends();
        let timed = |segments: Vec<Segment>| -> Vec<(String, Option<u64>)> {
            segments
                .into_iter()
                .flat_map(|s| {
                    let at = s.at_ms;
                    call_ids(vec![s]).into_iter().map(move |id| (id, at))
                })
                .collect()
        };
        let (m1, m2) = (options("one"), options("two"));
        let (x, rest) = m1.split_at(20);
        let (hole, tail) = rest.split_at(10);
        let (tail_seq, m2_seq) = (1030, 1000 + m1.len() as u32);
        // The next segment, ten minutes on, gives the hole up: "two" keeps its time.
        let mut f = TcpFlows::default();
        let mut st = NetStats::default();
        f.feed(a, b, x, meta(1000, 0), &mut st);
        f.feed(a, b, tail, meta(tail_seq, 10), &mut st);
        f.feed(a, b, &m2, meta(m2_seq, 500), &mut st);
        let m3 = options("three");
        let got = timed(f.feed(a, b, &m3, meta(m2_seq + m2.len() as u32, 600_000), &mut st));
        assert_eq!(
            got,
            [
                ("two".to_string(), Some(500)),
                ("three".to_string(), Some(600_000))
            ]
        );
        // The capture's clock (another flow's packets) gives it up after GAP_WAIT_MS.
        let mut f = TcpFlows::default();
        let mut st = NetStats::default();
        f.feed(a, b, x, meta(1000, 0), &mut st);
        f.feed(a, b, tail, meta(tail_seq, 10), &mut st);
        f.feed(a, b, &m2, meta(m2_seq, 500), &mut st);
        assert!(f.expire(GAP_WAIT_MS, &mut st).is_empty(), "not yet");
        let got = timed(f.expire(GAP_WAIT_MS + 20, &mut st));
        assert_eq!(got, [("two".to_string(), Some(500))]);
        assert_eq!(st.tcp_gaps, 1);
        // Filled at 1 s: both messages reach the receiver then.
        let mut f = TcpFlows::default();
        let mut st = NetStats::default();
        f.feed(a, b, x, meta(1000, 0), &mut st);
        f.feed(a, b, tail, meta(tail_seq, 10), &mut st);
        f.feed(a, b, &m2, meta(m2_seq, 500), &mut st);
        let got = timed(f.feed(a, b, hole, meta(1020, 1_000), &mut st));
        assert_eq!(
            got,
            [
                ("one".to_string(), Some(1_000)),
                ("two".to_string(), Some(1_000))
            ]
        );
    }

    /// A capture that starts inside a connection, inside a message: read from the next
    /// start line, also when that line comes in a later segment.
    #[test]
    fn a_stream_picked_up_inside_a_message() {
        let (a, b) = (
            SocketAddr::from(([10, 0, 0, 1], 40001)),
            SocketAddr::from(([10, 0, 0, 2], 5060)),
        );
        let meta = |seq| TcpMeta {
            seq,
            syn: false,
            fin_or_rst: false,
            ts_ms: 0,
        };
        let m = options("whole");
        let mut tail = b"ntact: <sip:x@y>\r\nContent-Length: 0\r\n\r\n".to_vec();
        let cut = tail.len() + 7; // the next start line cut after "OPTIONS"
        tail.extend_from_slice(&m);
        let mut f = TcpFlows::default();
        let mut st = NetStats::default();
        assert!(f.feed(a, b, &tail[..cut], meta(5000), &mut st).is_empty());
        let got = call_ids(f.feed(a, b, &tail[cut..], meta(5000 + cut as u32), &mut st));
        assert_eq!(got, ["whole"]);
        // Not SIP at all: given up once more than a message's rest has come.
        let mut f = TcpFlows::default();
        let mut seq = 1;
        for _ in 0..10 {
            let junk = [0x17u8; 1400];
            assert!(f.feed(a, b, &junk, meta(seq), &mut st).is_empty());
            seq += 1400;
        }
        let flow = f.flows.values().next().unwrap();
        assert!(matches!(flow.mode, Mode::Other) && flow.buf.is_empty());
    }
}
