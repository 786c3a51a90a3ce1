//! Reading pcap and pcapng files as a stream of packets, with bounded memory
//! (pcap-parser's streaming reader), and saying clearly where a damaged file ends.

use pcap_parser::pcapng::Block;
use pcap_parser::{PcapBlockOwned, PcapError, create_reader};
use std::fs::File;
use std::path::Path;

/// One captured packet.
pub struct Packet<'a> {
    pub ts_ms: u64,
    /// Microseconds part, for writing the packet out again.
    pub ts_sec: u32,
    pub ts_usec: u32,
    pub linktype: i32,
    pub data: &'a [u8],
    pub orig_len: u32,
}

/// How reading a capture ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    Complete,
    /// Cut off or damaged after this many bytes; what came before was read.
    Damaged {
        offset: usize,
        reason: String,
    },
}

struct Iface {
    linktype: i32,
    resolution: u64,
    offset: u64,
}

/// Units per second of an interface's timestamps (`if_tsresol`): a power of ten, or of
/// two when the top bit is set; microseconds when absent or out of range.
fn ts_resolution(r: u8) -> u64 {
    let e = u32::from(r & 0x7f);
    match (r & 0x80 != 0, e) {
        (true, 0..=63) => 1u64 << e,
        (false, 0..=19) => 10u64.pow(e),
        _ => 1_000_000,
    }
}

/// A packet of a pcapng interface, its timestamp decoded (RFC 9739 4.6: `if_tsoffset`
/// seconds plus ticks of `1 / resolution`).
fn ng_packet<'a>(i: &Iface, hi: u32, lo: u32, data: &'a [u8], orig_len: u32) -> Packet<'a> {
    let ticks = (u64::from(hi) << 32) | u64::from(lo);
    let res = i.resolution.max(1);
    let sec = i.offset.saturating_add(ticks / res);
    let usec = (u128::from(ticks % res) * 1_000_000 / u128::from(res)) as u32;
    Packet {
        ts_ms: sec.saturating_mul(1000) + u64::from(usec / 1000),
        ts_sec: sec as u32,
        ts_usec: usec,
        linktype: i.linktype,
        data,
        orig_len,
    }
}

/// The `n`-byte unsigned field at `k` of a block of a section in that byte order.
fn uint(d: &[u8], k: usize, n: usize, big_endian: bool) -> Option<u32> {
    let b = d.get(k..k.checked_add(n)?)?;
    let fold = |v: u32, &x: &u8| (v << 8) | u32::from(x);
    Some(if big_endian {
        b.iter().fold(0, fold)
    } else {
        b.iter().rev().fold(0, fold)
    })
}

/// A packet block naming an interface its section never described: the file is
/// damaged there (as Wireshark says too), not a packet to skip without a word.
fn no_interface(offset: usize, id: u32, declared: usize) -> End {
    End::Damaged {
        offset,
        reason: format!("packet block names interface {id}, but its section describes {declared}"),
    }
}

/// Calls `f` for every packet of the file. Returns how the file ended, or an error
/// when it is not a capture at all.
pub fn read(path: &Path, f: impl FnMut(&Packet<'_>)) -> Result<End, String> {
    read_from(open(path)?, f)
}

/// The path that names standard input: `tcpdump -U -w - | sipfence replay -` judges
/// live traffic from a mirror port as it comes, packet by packet.
pub const STDIN: &str = "-";

/// A capture's bytes: the file, or standard input for [`STDIN`].
pub fn open(path: &Path) -> Result<Box<dyn std::io::Read + Send>, String> {
    open_input(path).map_err(|e| format!("cannot open: {e}"))
}

/// The file at `path`, or standard input for [`STDIN`] (`replay -`, `explain -`).
pub fn open_input(path: &Path) -> std::io::Result<Box<dyn std::io::Read + Send>> {
    if is_stdin(path) {
        return Ok(Box::new(std::io::stdin()));
    }
    Ok(Box::new(File::open(path)?))
}

/// `path` names standard input ([`STDIN`]).
pub fn is_stdin(path: &Path) -> bool {
    path.as_os_str() == STDIN
}

/// A capture's name in messages: its path, or "standard input".
pub fn display_name(path: &Path) -> String {
    if is_stdin(path) {
        "standard input".to_string()
    } else {
        path.display().to_string()
    }
}

/// The first two bytes of a gzip stream (RFC 1952).
pub(crate) const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// The file starts like a packet capture: pcap (either byte order, micro- or
/// nanosecond), pcapng, or gzip (how captures are usually shipped). For `explain`, which
/// takes SIP messages and is often handed a capture by mistake.
pub fn looks_like_capture(head: &[u8]) -> bool {
    const MAGIC: [[u8; 4]; 5] = [
        [0xd4, 0xc3, 0xb2, 0xa1],
        [0xa1, 0xb2, 0xc3, 0xd4],
        [0x4d, 0x3c, 0xb2, 0xa1],
        [0xa1, 0xb2, 0x3c, 0x4d],
        [0x0a, 0x0d, 0x0d, 0x0a],
    ];
    head.starts_with(&GZIP_MAGIC) || MAGIC.iter().any(|m| head.starts_with(m))
}

/// Like [`read`], from any byte source (a file, a pipe, fuzz input). A gzip-compressed
/// capture (`tcpdump -w - | gzip`, Wireshark's `.pcapng.gz`) is read through, told by
/// its magic bytes rather than its name.
pub fn read_from<R: std::io::Read + Send>(
    src: R,
    f: impl FnMut(&Packet<'_>),
) -> Result<End, String> {
    // The magic's two bytes read whole: a pipe may give them one at a time.
    let mut src = src;
    let mut magic = Vec::with_capacity(GZIP_MAGIC.len());
    fill_to(&mut src, &mut magic, GZIP_MAGIC.len()).map_err(|e| format!("cannot read: {e}"))?;
    let gzip = magic == GZIP_MAGIC;
    let src = std::io::BufReader::new(std::io::Read::chain(std::io::Cursor::new(magic), src));
    if !gzip {
        return read_capture(src, f);
    }
    // Concatenated members too (captures rotated and gzipped piecewise, then joined).
    let mut gz = Lenient {
        inner: flate2::bufread::MultiGzDecoder::new(src),
        error: None,
        delivered: 0,
    };
    let end = read_capture(&mut gz, f)?;
    Ok(match gz.error {
        None => end,
        // The decompressed bytes stop where the damage is; what came before was read.
        Some(e) => End::Damaged {
            offset: gz.delivered,
            reason: format!("compressed data cut short or damaged ({e})"),
        },
    })
}

/// A reader whose first error ends the stream (and is kept): the capture reader then
/// sees a capture cut short, and replays everything before it, as for a plain file.
struct Lenient<R> {
    inner: R,
    error: Option<std::io::Error>,
    delivered: usize,
}

impl<R: std::io::Read> std::io::Read for Lenient<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.error.is_some() {
            return Ok(0);
        }
        loop {
            match self.inner.read(buf) {
                Ok(n) => {
                    self.delivered += n;
                    return Ok(n);
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.error = Some(e);
                    return Ok(0);
                }
            }
        }
    }
}

/// The capture's file header, read whole before the reader sees it: a pipe (a live
/// capture through ssh or nc) may hand over its first bytes in pieces, and the reader
/// takes the header from its first read. A pcap header is 24 octets; a pcapng file
/// starts with a Section Header Block whose length it gives (bounded here).
/// Also whether the source held the whole header.
fn header_prefix<R: std::io::Read>(src: &mut R) -> (Vec<u8>, bool) {
    let mut buf = Vec::with_capacity(64);
    // A read error ends the header where it is: the capture reader reports it.
    let fill = |buf: &mut Vec<u8>, src: &mut R, want: usize| {
        let _ = fill_to(src, buf, want);
    };
    fill(&mut buf, src, 12);
    let want = if buf.starts_with(&[0x0a, 0x0d, 0x0d, 0x0a]) && buf.len() >= 12 {
        let len = if buf[8..12] == [0x4d, 0x3c, 0x2b, 0x1a] {
            u32::from_le_bytes([buf[4], buf[5], buf[6], buf[7]])
        } else {
            u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]])
        };
        (len as usize).clamp(28, 1 << 16)
    } else {
        24
    };
    fill(&mut buf, src, want);
    let whole = buf.len() >= want;
    (buf, whole)
}

/// Reads from `src` until `buf` holds `want` bytes or the source ends: a pipe hands
/// over what it has, a few bytes at a time if it must.
fn fill_to<R: std::io::Read>(src: &mut R, buf: &mut Vec<u8>, want: usize) -> std::io::Result<()> {
    let mut chunk = [0u8; 512];
    while buf.len() < want {
        let n = (want - buf.len()).min(chunk.len());
        match src.read(&mut chunk[..n]) {
            Ok(0) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn read_capture<R: std::io::Read + Send>(
    mut src: R,
    mut f: impl FnMut(&Packet<'_>),
) -> Result<End, String> {
    // The time of the packet before: what a Simple Packet Block, which has none of its
    // own, is given (not 1970).
    let last = std::cell::Cell::new((0u64, 0u32, 0u32));
    let mut f = |p: &Packet<'_>| {
        last.set((p.ts_ms, p.ts_sec, p.ts_usec));
        f(p)
    };
    let (head, whole) = header_prefix(&mut src);
    // A pcapng file cut inside its Section Header Block is a damaged capture (as a pcap
    // cut inside its header is), not some other kind of file.
    let cut_pcapng = !whole && head.starts_with(&[0x0a, 0x0d, 0x0d, 0x0a]);
    let src = std::io::Read::chain(std::io::Cursor::new(head), src);
    let mut reader = match create_reader(1 << 20, src) {
        Ok(r) => r,
        // A file cut inside its own header (a capture that was still being written,
        // a copy interrupted) is damaged like one cut later: nothing before it to replay.
        Err(PcapError::Incomplete(_)) => {
            return Ok(End::Damaged {
                offset: 0,
                reason: "capture cut short inside its file header".to_string(),
            });
        }
        Err(_) if cut_pcapng => {
            return Ok(End::Damaged {
                offset: 0,
                reason: "capture cut short inside its pcapng section header".to_string(),
            });
        }
        Err(PcapError::HeaderNotRecognized) => return Err("not a pcap or pcapng file".into()),
        Err(PcapError::Eof) => return Err("empty file".into()),
        Err(e) => return Err(format!("cannot read capture header: {e}")),
    };
    let mut legacy_link = 1i32;
    let mut legacy_fcs = 0usize;
    let mut legacy_nanos = false;
    let mut ifaces: Vec<Iface> = vec![];
    let mut big_endian = false;
    let mut grown = 1usize << 20;
    loop {
        // Where this block starts, for a damage report (the block borrows the reader).
        let at = reader.consumed();
        match reader.next() {
            Ok((offset, block)) => {
                match block {
                    PcapBlockOwned::LegacyHeader(h) => {
                        // The field's low 16 bits are the link type; the top ones may
                        // say how long a frame check sequence ends each packet
                        // (draft-ietf-opsawg-pcap: FCS length in 16-bit words in bits
                        // 28-31, valid when 0x04000000 is set), other bits are ignored.
                        let field = h.network.0 as u32;
                        legacy_link = (field & 0xffff) as i32;
                        legacy_fcs = if field & 0x0400_0000 != 0 {
                            (field >> 28) as usize * 2
                        } else {
                            0
                        };
                        legacy_nanos = h.is_nanosecond_precision();
                    }
                    PcapBlockOwned::Legacy(b) => {
                        let usec = if legacy_nanos {
                            b.ts_usec / 1000
                        } else {
                            b.ts_usec
                        };
                        // The FCS is there only when the packet was captured whole.
                        let (data, orig_len) = match b.data.len() {
                            n if legacy_fcs > 0 && n as u64 == b.origlen as u64 => {
                                let n = n.saturating_sub(legacy_fcs);
                                (&b.data[..n], n as u32)
                            }
                            _ => (b.data, b.origlen),
                        };
                        f(&Packet {
                            ts_ms: b.ts_sec as u64 * 1000 + usec as u64 / 1000,
                            ts_sec: b.ts_sec,
                            ts_usec: usec,
                            linktype: legacy_link,
                            data,
                            orig_len,
                        });
                    }
                    PcapBlockOwned::NG(Block::SectionHeader(shb)) => {
                        // A major version other than 1 may lay its blocks out otherwise
                        // (libpcap refuses it too): not read as if it were 1 (QA 46).
                        if shb.major_version != 1 {
                            return Ok(End::Damaged {
                                offset: at,
                                reason: format!(
                                    "pcapng section of version {}.{}, which replay does not read (1.x only)",
                                    shb.major_version, shb.minor_version
                                ),
                            });
                        }
                        ifaces.clear();
                        big_endian = shb.big_endian();
                    }
                    PcapBlockOwned::NG(Block::InterfaceDescription(idb)) => ifaces.push(Iface {
                        linktype: idb.linktype.0,
                        resolution: ts_resolution(idb.if_tsresol),
                        offset: idb.ts_offset().max(0) as u64,
                    }),
                    PcapBlockOwned::NG(Block::EnhancedPacket(epb)) => {
                        let Some(i) = ifaces.get(epb.if_id as usize) else {
                            return Ok(no_interface(at, epb.if_id, ifaces.len()));
                        };
                        let len = (epb.caplen as usize).min(epb.data.len());
                        f(&ng_packet(
                            i,
                            epb.ts_high,
                            epb.ts_low,
                            &epb.data[..len],
                            epb.origlen,
                        ));
                    }
                    // The Packet Block pcapng deprecated (type 2) that old writers still
                    // produce: interface, drops, timestamp, lengths, data, as in an EPB.
                    PcapBlockOwned::NG(Block::Unknown(ub)) if ub.block_type == 2 => {
                        let d = ub.data;
                        let field = |k: usize, n: usize| uint(d, k, n, big_endian);
                        let (Some(if_id), Some(hi), Some(lo), Some(caplen), Some(origlen)) = (
                            field(0, 2),
                            field(4, 4),
                            field(8, 4),
                            field(12, 4),
                            field(16, 4),
                        ) else {
                            return Ok(End::Damaged {
                                offset: at,
                                reason: "packet block shorter than its header".into(),
                            });
                        };
                        let Some(i) = ifaces.get(if_id as usize) else {
                            return Ok(no_interface(at, if_id, ifaces.len()));
                        };
                        let body = &d[20.min(d.len())..];
                        let len = (caplen as usize).min(body.len());
                        f(&ng_packet(i, hi, lo, &body[..len], origlen));
                    }
                    PcapBlockOwned::NG(Block::SimplePacket(spb)) => {
                        let Some(i) = ifaces.first() else {
                            return Ok(no_interface(at, 0, 0));
                        };
                        let len = (spb.origlen as usize).min(spb.data.len());
                        let (ts_ms, ts_sec, ts_usec) = last.get();
                        f(&Packet {
                            ts_ms,
                            ts_sec,
                            ts_usec,
                            linktype: i.linktype,
                            data: &spb.data[..len],
                            orig_len: spb.origlen,
                        });
                    }
                    _ => {}
                }
                reader.consume(offset);
            }
            Err(PcapError::Eof) => return Ok(End::Complete),
            Err(PcapError::Incomplete(_)) => {
                if let Err(e) = reader.refill() {
                    // (A damaged gzip stream does not come here: `Lenient` ends it.)
                    let reason = format!("read error: {e:?}").chars().take(120).collect();
                    return Ok(End::Damaged {
                        offset: reader.consumed(),
                        reason,
                    });
                }
            }
            Err(PcapError::BufferTooSmall) => {
                // A block larger than the buffer: grow up to 64 MiB, then give up.
                grown *= 2;
                if grown > 64 << 20 || !reader.grow(grown) {
                    return Ok(End::Damaged {
                        offset: reader.consumed(),
                        reason: "block larger than 64 MiB".into(),
                    });
                }
                let _ = reader.refill();
            }
            Err(PcapError::UnexpectedEof) => {
                return Ok(End::Damaged {
                    offset: reader.consumed(),
                    reason: "a packet record runs past the end of the file (a truncated capture, or a damaged record length)".into(),
                });
            }
            Err(e) => {
                let reason = match e {
                    // The parser's own error carries the bytes it stopped at: no use
                    // to a reader of the summary.
                    PcapError::NomError(_, k) | PcapError::OwnedNomError(_, k) => format!(
                        "damaged block: its header or length does not hold together ({})",
                        k.description()
                    ),
                    e => format!("damaged block: {e:?}").chars().take(120).collect(),
                };
                return Ok(End::Damaged {
                    offset: reader.consumed(),
                    reason,
                });
            }
        }
    }
}
