//! SIP over WebSocket (RFC 7118) in captures: a TCP connection that starts with an
//! HTTP/1.1 upgrade (RFC 6455) and then carries one SIP message per WebSocket message,
//! in frames (client to server masked), perhaps split into continuation frames with
//! pings between them, perhaps compressed (permessage-deflate, RFC 7692). Browsers'
//! SIP stacks (JsSIP, SIP.js) reach a carrier's WebRTC gateway this way; on its far
//! side the same calls come out as plain SIP. A capture that begins after the upgrade
//! is still read when its first frame holds a SIP start line.

use flate2::{Decompress, FlushDecompress, Status};

use super::net::find_sip_start;
use crate::sip::MAX_MESSAGE;
use crate::sip::parse::looks_like_sip;

/// The longest upgrade request or answer waited for.
const MAX_HANDSHAKE: usize = 16 * 1024;

/// How a TCP stream's first bytes read.
#[derive(Debug, PartialEq, Eq)]
pub enum Start {
    /// An HTTP upgrade to WebSocket (request or `101` answer) of this many bytes.
    Upgrade(usize),
    /// WebSocket frames whose first message is SIP (the upgrade was not captured).
    Frames,
    /// Not enough bytes yet to tell.
    Wait,
    /// Neither.
    No,
}

/// Whether `b`, the first bytes of a TCP stream, is WebSocket.
pub fn start(b: &[u8]) -> Start {
    let line_end = memchr::memchr(b'\n', b);
    let line = &b[..line_end.unwrap_or(b.len())];
    let http = line.starts_with(b"GET ") && line.windows(6).any(|w| w == b" HTTP/")
        || line.starts_with(b"HTTP/1.1 101")
            && line.get(12).is_none_or(|&c| c == b' ' || c == b'\r');
    if http {
        let Some(end) = memchr::memmem::find(b, b"\r\n\r\n") else {
            return if b.len() > MAX_HANDSHAKE {
                Start::No
            } else {
                Start::Wait
            };
        };
        let upgrade = b[..end].split(|&c| c == b'\n').skip(1).any(|h| {
            let Some(colon) = memchr::memchr(b':', h) else {
                return false;
            };
            h[..colon].trim_ascii().eq_ignore_ascii_case(b"upgrade")
                && h[colon + 1..]
                    .trim_ascii()
                    .eq_ignore_ascii_case(b"websocket")
        });
        return if upgrade {
            Start::Upgrade(end + 4)
        } else {
            Start::No
        };
    }
    if line_end.is_none() && b.len() < 8 {
        return Start::Wait;
    }
    match Header::read(b) {
        Ok(Some(h)) if matches!(h.opcode, 1 | 2) && h.rsv == 0 => {
            let n = h.len.min(2048);
            let Some(p) = b.get(h.size..h.size + n) else {
                return if b.len() > MAX_HANDSHAKE {
                    Start::No
                } else {
                    Start::Wait
                };
            };
            let mut p = p.to_vec();
            h.unmask(&mut p, 0);
            if looks_like_sip(&p) {
                Start::Frames
            } else {
                Start::No
            }
        }
        Ok(None) => Start::Wait,
        _ => Start::No,
    }
}

/// A frame's header.
struct Header {
    fin: bool,
    /// RSV1-3; RSV1 marks a compressed message's first frame.
    rsv: u8,
    opcode: u8,
    mask: Option<[u8; 4]>,
    /// Header bytes, then payload bytes.
    size: usize,
    len: usize,
}

/// A frame that breaks RFC 6455: the stream is not followed further.
#[derive(Debug)]
pub struct Broken;

impl Header {
    /// `Ok(None)` while the header is incomplete.
    fn read(b: &[u8]) -> Result<Option<Header>, Broken> {
        let (Some(&b0), Some(&b1)) = (b.first(), b.get(1)) else {
            return Ok(None);
        };
        let mut size = 2;
        let len = match b1 & 0x7f {
            126 => {
                size += 2;
                match b.get(2..4) {
                    Some(l) => u16::from_be_bytes([l[0], l[1]]) as usize,
                    None => return Ok(None),
                }
            }
            127 => {
                size += 8;
                match b.get(2..10) {
                    Some(l) => {
                        let l = u64::from_be_bytes(l.try_into().map_err(|_| Broken)?);
                        usize::try_from(l).map_err(|_| Broken)?
                    }
                    None => return Ok(None),
                }
            }
            l => l as usize,
        };
        let mask = if b1 & 0x80 != 0 {
            let Some(k) = b.get(size..size + 4) else {
                return Ok(None);
            };
            size += 4;
            Some([k[0], k[1], k[2], k[3]])
        } else {
            None
        };
        if len > MAX_MESSAGE {
            return Err(Broken);
        }
        Ok(Some(Header {
            fin: b0 & 0x80 != 0,
            rsv: (b0 >> 4) & 0x07,
            opcode: b0 & 0x0f,
            mask,
            size,
            len,
        }))
    }

    /// Unmasks `p`, the payload from its byte `at` on.
    fn unmask(&self, p: &mut [u8], at: usize) {
        if let Some(k) = self.mask {
            for (i, c) in p.iter_mut().enumerate() {
                *c ^= k[(at + i) % 4];
            }
        }
    }
}

/// One direction of a WebSocket connection, after the upgrade.
#[derive(Default)]
pub struct Frames {
    message: Vec<u8>,
    in_message: bool,
    compressed: bool,
    /// The direction's inflater: permessage-deflate keeps its window from message to
    /// message unless the upgrade said otherwise, and a kept inflater reads both.
    inflater: Option<Decompress>,
}

impl Frames {
    /// Reads the complete frames at the front of `buf` (removing them) and adds the SIP
    /// messages they finish to `out`; those found before a broken frame are kept.
    pub fn feed(&mut self, buf: &mut Vec<u8>, out: &mut Vec<Vec<u8>>) -> Result<(), Broken> {
        let mut used = 0;
        while let Some(h) = Header::read(&buf[used..])? {
            let Some(p) = buf.get(used + h.size..used + h.size + h.len) else {
                break;
            };
            let mut p = p.to_vec();
            used += h.size + h.len;
            h.unmask(&mut p, 0);
            match h.opcode {
                // Close, ping, pong: between the frames of a message as well.
                0x8..=0xa if h.fin && h.len <= 125 => continue,
                1 | 2 if !self.in_message && h.rsv & 0x03 == 0 => {
                    self.in_message = true;
                    self.compressed = h.rsv & 0x04 != 0;
                    self.message = p;
                }
                0 if self.in_message && h.rsv == 0 => {
                    if self.message.len() + p.len() > MAX_MESSAGE {
                        return Err(Broken);
                    }
                    self.message.extend_from_slice(&p);
                }
                _ => return Err(Broken),
            }
            if h.fin {
                self.in_message = false;
                let mut m = std::mem::take(&mut self.message);
                if self.compressed {
                    let z = self.inflater.get_or_insert_with(|| Decompress::new(false));
                    m = inflate(z, &m).ok_or(Broken)?;
                }
                if let Some(start) = find_sip_start(&m) {
                    out.push(m.split_off(start));
                }
            }
        }
        buf.drain(..used);
        Ok(())
    }
}

/// One compressed message (RFC 7692 7.2.2: the sender's trailing empty block is cut
/// off, so it is put back before inflating).
fn inflate(z: &mut Decompress, data: &[u8]) -> Option<Vec<u8>> {
    let mut input = Vec::with_capacity(data.len() + 4);
    input.extend_from_slice(data);
    input.extend_from_slice(&[0, 0, 0xff, 0xff]);
    let mut out = Vec::with_capacity((4 * input.len()).min(MAX_MESSAGE + 1));
    let mut pos = 0;
    loop {
        if out.len() == out.capacity() {
            if out.len() > MAX_MESSAGE {
                return None;
            }
            out.reserve(out.len().max(1024));
        }
        let (was_in, was_out) = (z.total_in(), out.len());
        let status = z
            .decompress_vec(&input[pos..], &mut out, FlushDecompress::Sync)
            .ok()?;
        pos += (z.total_in() - was_in) as usize;
        let stuck = z.total_in() == was_in && out.len() == was_out;
        if status == Status::StreamEnd || stuck || pos >= input.len() && out.len() < out.capacity()
        {
            break;
        }
    }
    (out.len() <= MAX_MESSAGE).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// A frame as a browser (masked) or a server (not) writes it.
    fn frame(fin: bool, rsv1: bool, opcode: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
        let mut f = vec![(fin as u8) << 7 | (rsv1 as u8) << 6 | opcode];
        let m = (mask.is_some() as u8) << 7;
        match payload.len() {
            n if n < 126 => f.push(m | n as u8),
            n if n < 65536 => {
                f.push(m | 126);
                f.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                f.push(m | 127);
                f.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        let mut p = payload.to_vec();
        if let Some(k) = mask {
            f.extend_from_slice(&k);
            for (i, c) in p.iter_mut().enumerate() {
                *c ^= k[i % 4];
            }
        }
        f.extend_from_slice(&p);
        f
    }

    const INVITE: &[u8] =
        b"INVITE sip:+861012345678@gw SIP/2.0\r\nCall-ID: ws1\r\nContent-Length: 0\r\n\r\n";
    const OK: &[u8] = b"SIP/2.0 200 OK\r\nCall-ID: ws1\r\nContent-Length: 0\r\n\r\n";
    const KEY: Option<[u8; 4]> = Some([0x37, 0xfa, 0x21, 0x3d]);

    #[test]
    fn the_upgrade_is_told_from_sip_and_from_other_http() {
        let req = b"GET /ws HTTP/1.1\r\nHost: gw\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Protocol: sip\r\n\r\n";
        assert_eq!(start(req), Start::Upgrade(req.len()));
        assert_eq!(start(&req[..40]), Start::Wait);
        let ans = b"HTTP/1.1 101 Switching Protocols\r\nupgrade:  WebSocket \r\n\r\n\x81";
        assert_eq!(start(ans), Start::Upgrade(ans.len() - 1));
        assert_eq!(start(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"), Start::No);
        assert_eq!(
            start(b"HTTP/1.1 200 OK\r\nUpgrade: websocket\r\n\r\n"),
            Start::No
        );
        // The upgrade not captured: a first frame holding SIP.
        assert_eq!(start(&frame(true, false, 1, INVITE, KEY)), Start::Frames);
        assert_eq!(start(&frame(true, false, 1, INVITE, KEY)[..4]), Start::Wait);
        assert_eq!(
            start(&frame(true, false, 1, b"{\"json\": 1}", None)),
            Start::No
        );
    }

    #[test]
    fn frames_masked_split_pinged_and_compressed() {
        let mut f = Frames::default();
        // Masked, in two frames with a ping between them, the second cut across reads.
        let (a, b) = INVITE.split_at(20);
        let mut buf = frame(false, false, 1, a, KEY);
        buf.extend(frame(true, false, 9, b"", KEY));
        let second = frame(true, false, 0, b, KEY);
        buf.extend_from_slice(&second[..7]);
        let feed = |f: &mut Frames, buf: &mut Vec<u8>| {
            let mut out = vec![];
            f.feed(buf, &mut out).map(|_| out)
        };
        assert!(feed(&mut f, &mut buf).unwrap().is_empty());
        buf.extend_from_slice(&second[7..]);
        assert_eq!(feed(&mut f, &mut buf).unwrap(), vec![INVITE.to_vec()]);
        assert!(buf.is_empty());
        // Two compressed messages, the second referring back to the first's window.
        let mut z = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::best());
        z.write_all(OK).unwrap();
        z.flush().unwrap();
        let one = z.get_mut().split_off(0);
        z.write_all(OK).unwrap();
        z.flush().unwrap();
        let two = z.get_mut().split_off(0);
        let cut = |c: &[u8]| c.strip_suffix(&[0, 0, 0xff, 0xff]).unwrap().to_vec();
        let mut g = Frames::default();
        let mut buf = frame(true, true, 1, &cut(&one), None);
        buf.extend(frame(true, true, 2, &cut(&two), None));
        assert!(cut(&two).len() < OK.len() / 2, "the second refers back");
        assert_eq!(
            feed(&mut g, &mut buf).unwrap(),
            vec![OK.to_vec(), OK.to_vec()]
        );
        // Not SIP: skipped. Continuation with no message begun: broken.
        let mut buf = frame(true, false, 1, b"{\"keepalive\": 1}", None);
        assert!(feed(&mut g, &mut buf).unwrap().is_empty());
        // Broken after a message: the message is kept, the stream given up.
        let mut buf = frame(true, false, 1, OK, None);
        buf.extend(frame(true, false, 0, b"x", None));
        let mut out = vec![];
        assert!(g.feed(&mut buf, &mut out).is_err());
        assert_eq!(out, vec![OK.to_vec()]);
        // A length beyond any message, or a 64-bit length that no usize holds.
        let mut buf = vec![0x81, 127, 0xff, 0, 0, 0, 0, 0, 0, 0];
        assert!(feed(&mut Frames::default(), &mut buf).is_err());
        let mut big = frame(true, false, 1, &[b'a'; 70_000], None);
        assert!(feed(&mut Frames::default(), &mut big).is_err());
    }
}
