//! SIP over SCTP (RFC 4168) in captures. SCTP carries each SIP message as one user
//! message: a DATA chunk with both the Beginning and End flags, or a run of fragments
//! with consecutive TSNs from the one flagged B to the one flagged E (RFC 9260 6.9).
//! Several chunks may share a packet (bundling), and a chunk the peer did not
//! acknowledge in time comes again with its TSN unchanged: that copy is the
//! transport's, not a second SIP message, and is dropped here as the receiving stack
//! drops it. I-DATA (RFC 8260) numbers a message and its fragments instead, so that
//! fragments of messages on several streams may interleave; both are put back. SIP is told by content, whatever the ports and payload protocol
//! identifier (senders put 0 or nothing agreed there), so Diameter or SIGTRAN beside
//! it stay out. Every table is bounded, as the rest of replay's.

use std::collections::{BTreeMap, HashMap};

use super::net::{NetStats, be16, be32, find_sip_start};
use crate::sip::MAX_MESSAGE;

/// Directions of associations followed at once.
const MAX_DIRECTIONS: usize = 65_536;
/// TSNs below the highest one seen that are remembered, to recognise a retransmitted
/// chunk. A sender has at most a receive window of data outstanding (some hundred SIP
/// messages), so its retransmissions fall well inside.
const WINDOW: u32 = 1024;
/// Fragment bytes held over all associations.
const MAX_FRAGMENT_BYTES: usize = 16 << 20;

/// One direction of one association: its source and destination ports and the
/// verification tag the receiver chose, which a new association changes.
type Key = (u16, u16, u32);

#[derive(Default)]
struct Direction {
    highest: Option<u32>,
    /// Bit `i`: TSN `highest - i` was seen (an anti-replay window, as IPsec keeps).
    seen: [u64; (WINDOW / 64) as usize],
    /// Fragments waiting for the rest of their message, by TSN: (begins, ends, data).
    fragments: BTreeMap<u32, (bool, bool, Vec<u8>)>,
    /// I-DATA fragments waiting, by message: (stream, unordered, message identifier).
    messages: HashMap<(u16, bool, u32), Partial>,
    /// Bytes held in `fragments` and `messages`.
    fragment_bytes: usize,
}

/// An I-DATA message in the making: its fragments by fragment sequence number (the
/// first is 0), and the number of the last once the fragment flagged E came.
#[derive(Default)]
struct Partial {
    parts: BTreeMap<u32, Vec<u8>>,
    last: Option<u32>,
}

impl Direction {
    /// Whether the chunk is new (and remember it). A TSN older than the window is taken
    /// for a retransmission.
    fn first_time(&mut self, tsn: u32) -> bool {
        let Some(high) = self.highest else {
            self.highest = Some(tsn);
            self.seen[0] = 1;
            return true;
        };
        let ahead = tsn.wrapping_sub(high) as i32;
        if ahead > 0 {
            self.shift(ahead as u32);
            self.highest = Some(tsn);
            self.seen[0] |= 1;
            return true;
        }
        let back = ahead.unsigned_abs();
        if back >= WINDOW {
            return false;
        }
        let (word, bit) = ((back / 64) as usize, back % 64);
        let new = self.seen[word] & (1 << bit) == 0;
        self.seen[word] |= 1 << bit;
        new
    }

    /// Moves the window up by `n` TSNs.
    fn shift(&mut self, n: u32) {
        if n >= WINDOW {
            self.seen = Default::default();
            return;
        }
        let (words, bits) = ((n / 64) as usize, n % 64);
        for i in (0..self.seen.len()).rev() {
            let mut v = 0;
            if i >= words {
                v = self.seen[i - words] << bits;
                if bits > 0 && i > words {
                    v |= self.seen[i - words - 1] >> (64 - bits);
                }
            }
            self.seen[i] = v;
        }
    }

    /// Makes room for `len` more fragment bytes: held past the size of any SIP message,
    /// they are of a message too large or of fragments whose rest was never captured,
    /// so start again rather than grow.
    fn hold(&mut self, len: usize) {
        if self.fragment_bytes + len > MAX_MESSAGE + 1024 {
            self.fragments.clear();
            self.messages.clear();
            self.fragment_bytes = 0;
        }
        self.fragment_bytes += len;
    }

    /// Files one fragment; the whole message when it was the last one missing.
    fn fragment(&mut self, tsn: u32, begins: bool, ends: bool, data: &[u8]) -> Option<Vec<u8>> {
        self.hold(data.len());
        self.fragments.insert(tsn, (begins, ends, data.to_vec()));
        // Back to the fragment that begins the message, then on to the one ending it,
        // every TSN between present.
        let mut first = tsn;
        while !self.fragments.get(&first)?.0 {
            first = first.wrapping_sub(1);
            if first == tsn {
                return None;
            }
        }
        let mut last = tsn;
        while !self.fragments.get(&last)?.1 {
            last = last.wrapping_add(1);
            if last == first {
                return None;
            }
        }
        let mut whole = vec![];
        let mut t = first;
        loop {
            if let Some((_, _, d)) = self.fragments.remove(&t) {
                self.fragment_bytes -= d.len();
                whole.extend_from_slice(&d);
            }
            if t == last {
                break;
            }
            t = t.wrapping_add(1);
        }
        Some(whole)
    }

    /// Files one I-DATA fragment (`fsn` is 0 for the one that begins the message); the
    /// whole message when it was the last one missing.
    fn message_fragment(
        &mut self,
        id: (u16, bool, u32),
        fsn: u32,
        ends: bool,
        data: &[u8],
    ) -> Option<Vec<u8>> {
        self.hold(data.len());
        let p = self.messages.entry(id).or_default();
        if ends {
            p.last = Some(fsn);
        }
        // The same fragment number twice (under new TSNs: a broken sender) keeps the newer.
        if let Some(old) = p.parts.insert(fsn, data.to_vec()) {
            self.fragment_bytes -= old.len();
        }
        let last = p.last?;
        // Fragment numbers run 0..=last, so the message is whole when that many are in
        // (a number past `last` would be the sender's error and keeps it waiting).
        if p.parts.len() as u64 != u64::from(last) + 1 || p.parts.keys().next_back() != Some(&last)
        {
            return None;
        }
        let p = self.messages.remove(&id)?;
        let mut whole = Vec::new();
        for d in p.parts.into_values() {
            self.fragment_bytes -= d.len();
            whole.extend_from_slice(&d);
        }
        Some(whole)
    }
}

/// The SCTP associations of a capture.
#[derive(Default)]
pub struct Associations {
    directions: HashMap<Key, Direction>,
    /// The directions' fragment bytes, summed.
    fragment_bytes: usize,
}

impl Associations {
    /// One SCTP packet: its ports and the SIP messages it completes (none for a packet
    /// of control chunks, a fragment, a retransmission or another protocol's data).
    /// `None` when the common header does not fit.
    pub fn packet(&mut self, b: &[u8], stats: &mut NetStats) -> Option<(u16, u16, Vec<Vec<u8>>)> {
        let sport = be16(b, 0)?;
        let dport = be16(b, 2)?;
        let key = (sport, dport, be32(b, 4)?);
        let mut out = vec![];
        let mut off = 12;
        while off + 4 <= b.len() {
            let kind = b[off];
            let flags = b[off + 1];
            let len = be16(b, off + 2)? as usize;
            if len < 4 || off + len > b.len() {
                stats.sctp_damaged += 1;
                break;
            }
            let chunk = &b[off..off + len];
            off += (len + 3) & !3;
            // DATA (0): TSN, stream, stream sequence, payload protocol, then the data.
            // I-DATA (64, RFC 8260): TSN, stream, reserved, message identifier, then the
            // payload protocol in the first fragment and the fragment's number in the
            // others, then the data.
            let (tsn, data) = match kind {
                0 if len >= 16 => (be32(chunk, 4)?, &chunk[16..]),
                64 if len >= 20 => (be32(chunk, 4)?, &chunk[20..]),
                _ => continue,
            };
            if self.directions.len() >= MAX_DIRECTIONS && !self.directions.contains_key(&key) {
                self.directions.clear();
                self.fragment_bytes = 0;
            }
            if self.fragment_bytes > MAX_FRAGMENT_BYTES {
                // Fragments of many associations whose ends never came: start again.
                for d in self.directions.values_mut() {
                    d.fragments.clear();
                    d.messages.clear();
                    d.fragment_bytes = 0;
                }
                self.fragment_bytes = 0;
            }
            let dir = self.directions.entry(key).or_default();
            if !dir.first_time(tsn) {
                stats.sctp_retransmitted += 1;
                continue;
            }
            let (begins, ends) = (flags & 0x02 != 0, flags & 0x01 != 0);
            let message = if begins && ends {
                data.to_vec()
            } else if kind == 0 {
                let before = dir.fragment_bytes;
                let whole = dir.fragment(tsn, begins, ends, data);
                self.fragment_bytes = self.fragment_bytes + dir.fragment_bytes - before;
                let Some(m) = whole else { continue };
                stats.sctp_reassembled += 1;
                m
            } else {
                let id = (be16(chunk, 8)?, flags & 0x04 != 0, be32(chunk, 12)?);
                let fsn = if begins { 0 } else { be32(chunk, 16)? };
                let before = dir.fragment_bytes;
                let whole = dir.message_fragment(id, fsn, ends, data);
                self.fragment_bytes = self.fragment_bytes + dir.fragment_bytes - before;
                let Some(m) = whole else { continue };
                stats.sctp_reassembled += 1;
                m
            };
            if let Some(start) = find_sip_start(&message) {
                stats.sctp_messages += 1;
                out.push(message[start..].to_vec());
            }
        }
        Some((sport, dport, out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(flags: u8, tsn: u32, payload: &[u8]) -> Vec<u8> {
        let mut c = vec![0, flags];
        c.extend_from_slice(&((16 + payload.len()) as u16).to_be_bytes());
        c.extend_from_slice(&tsn.to_be_bytes());
        c.extend_from_slice(&[0, 1, 0, 7, 0, 0, 0, 0]);
        c.extend_from_slice(payload);
        while c.len() % 4 != 0 {
            c.push(0);
        }
        c
    }

    /// An I-DATA chunk: `word` is the payload protocol in a first fragment and the
    /// fragment number in the others.
    fn idata(flags: u8, tsn: u32, stream: u16, mid: u32, word: u32, payload: &[u8]) -> Vec<u8> {
        let mut c = vec![64, flags];
        c.extend_from_slice(&((20 + payload.len()) as u16).to_be_bytes());
        c.extend_from_slice(&tsn.to_be_bytes());
        c.extend_from_slice(&stream.to_be_bytes());
        c.extend_from_slice(&[0, 0]);
        c.extend_from_slice(&mid.to_be_bytes());
        c.extend_from_slice(&word.to_be_bytes());
        c.extend_from_slice(payload);
        while c.len() % 4 != 0 {
            c.push(0);
        }
        c
    }

    fn packet(chunks: &[Vec<u8>]) -> Vec<u8> {
        let mut p = vec![0x13, 0xc4, 0x13, 0xc4, 0xde, 0xad, 0xbe, 0xef, 0, 0, 0, 0];
        for c in chunks {
            p.extend_from_slice(c);
        }
        p
    }

    const A: &[u8] = b"OPTIONS sip:a@b SIP/2.0\r\nCall-ID: 1\r\n\r\n";
    const B: &[u8] = b"SIP/2.0 200 OK\r\nCall-ID: 1\r\n\r\n";

    #[test]
    fn bundled_fragmented_and_retransmitted_chunks() {
        let mut a = Associations::default();
        let mut st = NetStats::default();
        // Two whole messages bundled, with a SACK (3) in front.
        let sack = vec![3, 0, 0, 16, 0, 0, 0, 9, 0, 0, 0x10, 0, 0, 0, 0, 0];
        let (sp, dp, m) = a
            .packet(&packet(&[sack, data(3, 10, A), data(3, 11, B)]), &mut st)
            .unwrap();
        assert_eq!((sp, dp), (5060, 5060));
        assert_eq!(m, vec![A.to_vec(), B.to_vec()]);
        // The second comes again (same TSN): the transport's copy, dropped.
        let (_, _, m) = a.packet(&packet(&[data(3, 11, B)]), &mut st).unwrap();
        assert!(m.is_empty());
        assert_eq!(st.sctp_retransmitted, 1);
        // One message in three fragments, the middle one last and the end one
        // retransmitted.
        let (x, rest) = A.split_at(10);
        let (y, z) = rest.split_at(10);
        assert!(
            a.packet(&packet(&[data(2, 12, x)]), &mut st)
                .unwrap()
                .2
                .is_empty()
        );
        assert!(
            a.packet(&packet(&[data(1, 14, z)]), &mut st)
                .unwrap()
                .2
                .is_empty()
        );
        assert!(
            a.packet(&packet(&[data(1, 14, z)]), &mut st)
                .unwrap()
                .2
                .is_empty()
        );
        let (_, _, m) = a.packet(&packet(&[data(0, 13, y)]), &mut st).unwrap();
        assert_eq!(m, vec![A.to_vec()]);
        assert_eq!((st.sctp_reassembled, st.sctp_retransmitted), (1, 2));
        assert_eq!(st.sctp_messages, 3);
        // Not SIP (a Diameter-like binary), and a chunk overrunning the packet.
        let (_, _, m) = a
            .packet(&packet(&[data(3, 15, &[1, 0, 0, 20])]), &mut st)
            .unwrap();
        assert!(m.is_empty());
        let mut cut = packet(&[data(3, 16, A)]);
        cut.truncate(30);
        assert!(a.packet(&cut, &mut st).unwrap().2.is_empty());
        assert_eq!(st.sctp_damaged, 1);
        assert!(a.packet(&[0x13, 0xc4, 0x13], &mut st).is_none());
    }

    #[test]
    fn idata_fragments_of_messages_on_two_streams_interleave() {
        let mut a = Associations::default();
        let mut st = NetStats::default();
        let (a1, rest) = A.split_at(9);
        let (a2, a3) = rest.split_at(12);
        let (b1, b2) = B.split_at(7);
        // A on stream 1 (message 5) in three fragments, B unordered on stream 2 (also
        // message 5: another stream, another message) in two, interleaved, and out of
        // order in TSN as well; A's last fragment sent again under its TSN.
        let chunks = [
            idata(2, 100, 1, 5, 0, a1),
            idata(4 | 2, 101, 2, 5, 0, b1),
            idata(1, 103, 1, 5, 2, a3),
        ];
        assert!(a.packet(&packet(&chunks), &mut st).unwrap().2.is_empty());
        assert!(
            a.packet(&packet(&[idata(1, 103, 1, 5, 2, a3)]), &mut st)
                .unwrap()
                .2
                .is_empty()
        );
        let (_, _, m) = a
            .packet(&packet(&[idata(4 | 1, 104, 2, 5, 1, b2)]), &mut st)
            .unwrap();
        assert_eq!(m, vec![B.to_vec()]);
        let (_, _, m) = a
            .packet(&packet(&[idata(0, 102, 1, 5, 1, a2)]), &mut st)
            .unwrap();
        assert_eq!(m, vec![A.to_vec()]);
        // A whole message in one chunk, bundled after a fragment that waits.
        let (_, _, m) = a
            .packet(
                &packet(&[idata(2, 105, 1, 6, 0, a1), idata(3, 106, 3, 1, 0, B)]),
                &mut st,
            )
            .unwrap();
        assert_eq!(m, vec![B.to_vec()]);
        assert_eq!(
            (st.sctp_messages, st.sctp_reassembled, st.sctp_retransmitted),
            (3, 2, 1)
        );
        let d = a.directions.values().next().unwrap();
        assert_eq!((d.messages.len(), d.fragment_bytes), (1, a1.len()));
    }

    #[test]
    fn the_window_remembers_recent_tsns_across_wrapping() {
        let mut d = Direction::default();
        let start = u32::MAX - 100;
        for i in 0..300u32 {
            assert!(d.first_time(start.wrapping_add(i * 2)), "{i}");
        }
        // Every one seen is seen; the gaps between them are new, once.
        for i in 0..300u32 {
            assert!(!d.first_time(start.wrapping_add(i * 2)), "{i} again");
        }
        for i in 0..299u32 {
            assert!(d.first_time(start.wrapping_add(i * 2 + 1)), "{i} gap");
            assert!(
                !d.first_time(start.wrapping_add(i * 2 + 1)),
                "{i} gap again"
            );
        }
        // A jump past the window forgets everything below it; older ones read as seen.
        let far = start.wrapping_add(10_000);
        assert!(d.first_time(far));
        assert!(d.first_time(far - 1));
        assert!(!d.first_time(far - WINDOW));
        assert!(!d.first_time(start));
    }

    #[test]
    fn fragments_never_grow_past_a_message() {
        let mut a = Associations::default();
        let mut st = NetStats::default();
        // Beginnings without ends, forever: memory stays bounded.
        for tsn in 0..200u32 {
            a.packet(&packet(&[data(2, tsn * 2, &[b'x'; 1200])]), &mut st);
        }
        let d = a.directions.values().next().unwrap();
        assert!(d.fragment_bytes <= MAX_MESSAGE + 1024);
        // The same with I-DATA: first fragments of ever new messages.
        for mid in 0..200u32 {
            a.packet(
                &packet(&[idata(2, 1000 + mid, 1, mid, 0, &[b'x'; 1200])]),
                &mut st,
            );
        }
        let d = a.directions.values().next().unwrap();
        assert!(d.fragment_bytes <= MAX_MESSAGE + 1024);
        assert!(d.messages.len() < 100);
        assert_eq!(st.sctp_messages, 0);
    }
}
