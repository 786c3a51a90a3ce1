//! Batched datagram I/O: `recvmmsg` and `sendmmsg` (Linux), so that one system call and
//! one wake-up carry many datagrams when traffic is heavy. System calls and wake-ups,
//! not parsing, dominate a proxy's cost (../shared/peers/udp-relay measures 11-16 us per
//! datagram); batching is what the fastest relay there does.
//!
//! The unsafe code is confined here: building `mmsghdr` arrays over buffers this module
//! owns, and reading back what the kernel wrote into them.

use std::io;
use std::mem::{MaybeUninit, size_of};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::RawFd;

/// Datagrams per system call.
pub const BATCH: usize = 32;
/// Receive slot size: a UDP datagram's maximum, so nothing is ever truncated.
pub const SLOT: usize = 65_536;

const NAME_LEN: libc::socklen_t = size_of::<libc::sockaddr_storage>() as libc::socklen_t;

/// Receive buffers for one socket, and the `mmsghdr` array over them: built once, so
/// that a call writes nothing before `recvmmsg` (rewriting 32 headers and iovecs for
/// every call, most of which find one datagram or none, was a sixth of the proxy's
/// user-space instructions per call at low rates, under callgrind).
pub struct RecvBatch {
    buf: Vec<u8>,
    /// Where the kernel writes each sender's address.
    names: Box<[libc::sockaddr_storage; BATCH]>,
    iovs: Box<[libc::iovec; BATCH]>,
    /// Header `i` points at `iovs[i]` (over slot `i` of `buf`) and at `names[i]`: all
    /// three are heap allocations owned here, which never move or grow after `new`.
    hdrs: Box<[libc::mmsghdr; BATCH]>,
    lens: [usize; BATCH],
    addrs: [SocketAddr; BATCH],
}

// SAFETY: the raw pointers in `iovs` and `hdrs` point only into this value's own heap
// allocations (`buf`, `names`, `iovs`), which move with it to another thread; nothing
// else refers to them.
unsafe impl Send for RecvBatch {}

impl Default for RecvBatch {
    fn default() -> Self {
        RecvBatch::new()
    }
}

fn to_socket_addr(s: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match s.ss_family as i32 {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in, which it is large
            // enough for and aligned for.
            let a = unsafe { &*(s as *const libc::sockaddr_storage as *const libc::sockaddr_in) };
            Some(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr)),
                u16::from_be(a.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: as above, for sockaddr_in6.
            let a = unsafe { &*(s as *const libc::sockaddr_storage as *const libc::sockaddr_in6) };
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(a.sin6_addr.s6_addr),
                u16::from_be(a.sin6_port),
                a.sin6_flowinfo,
                a.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

/// Writes `a` as a C socket address into `s` (only the bytes the family uses: the
/// kernel reads `namelen` of them) and returns that length.
fn write_socket_addr(
    a: &SocketAddr,
    s: &mut MaybeUninit<libc::sockaddr_storage>,
) -> libc::socklen_t {
    match a {
        SocketAddr::V4(v4) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: v4.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from(*v4.ip()).to_be(),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is large enough and aligned for sockaddr_in.
            unsafe { s.as_mut_ptr().cast::<libc::sockaddr_in>().write(sin) };
            size_of::<libc::sockaddr_in>() as libc::socklen_t
        }
        SocketAddr::V6(v6) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: v6.port().to_be(),
                sin6_flowinfo: v6.flowinfo(),
                sin6_addr: libc::in6_addr {
                    s6_addr: v6.ip().octets(),
                },
                sin6_scope_id: v6.scope_id(),
            };
            // SAFETY: as above, for sockaddr_in6.
            unsafe { s.as_mut_ptr().cast::<libc::sockaddr_in6>().write(sin6) };
            size_of::<libc::sockaddr_in6>() as libc::socklen_t
        }
    }
}

impl RecvBatch {
    pub fn new() -> RecvBatch {
        let mut buf = vec![0u8; BATCH * SLOT];
        // SAFETY: all-zero is a valid sockaddr_storage, iovec (null, 0) and mmsghdr.
        let mut names: Box<[libc::sockaddr_storage; BATCH]> =
            Box::new(unsafe { std::mem::zeroed() });
        let mut iovs: Box<[libc::iovec; BATCH]> = Box::new(unsafe { std::mem::zeroed() });
        let mut hdrs: Box<[libc::mmsghdr; BATCH]> = Box::new(unsafe { std::mem::zeroed() });
        for (i, slot) in buf.chunks_exact_mut(SLOT).enumerate() {
            iovs[i] = libc::iovec {
                iov_base: slot.as_mut_ptr() as *mut libc::c_void,
                iov_len: SLOT,
            };
            hdrs[i] = mmsghdr(
                &mut iovs[i],
                &mut names[i] as *mut libc::sockaddr_storage as *mut libc::c_void,
                NAME_LEN,
            );
        }
        RecvBatch {
            buf,
            names,
            iovs,
            hdrs,
            lens: [0; BATCH],
            addrs: [SocketAddr::from(([0, 0, 0, 0], 0)); BATCH],
        }
    }

    /// Receives up to [`BATCH`] datagrams without blocking; `WouldBlock` when none.
    pub fn recv(&mut self, fd: RawFd) -> io::Result<usize> {
        // The headers' pointers are still those `new` wrote (`iovs` is only kept alive
        // here, never written again).
        debug_assert!(std::ptr::eq(self.hdrs[0].msg_hdr.msg_iov, &self.iovs[0]));
        // SAFETY: every header points at a live iovec over a slot of self.buf and at a
        // live sockaddr_storage (see `new`), all owned by self and outliving the call.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                self.hdrs.as_mut_ptr(),
                BATCH as u32,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let n = (n as usize).min(BATCH);
        for i in 0..n {
            let h = &mut self.hdrs[i];
            self.lens[i] = (h.msg_len as usize).min(SLOT);
            self.addrs[i] =
                to_socket_addr(&self.names[i]).unwrap_or(SocketAddr::from(([0, 0, 0, 0], 0)));
            // The kernel wrote the sender's address length here; the next call needs
            // the room again. (It changes nothing else a header holds.)
            h.msg_hdr.msg_namelen = NAME_LEN;
        }
        Ok(n)
    }

    /// Datagram `i` of the last batch and its sender.
    pub fn get(&self, i: usize) -> (&[u8], SocketAddr) {
        (&self.buf[i * SLOT..i * SLOT + self.lens[i]], self.addrs[i])
    }
}

/// One `mmsghdr` over one buffer and one address, every other field empty.
fn mmsghdr(
    iov: *mut libc::iovec,
    name: *mut libc::c_void,
    namelen: libc::socklen_t,
) -> libc::mmsghdr {
    // SAFETY: all-zero is a valid msghdr (null pointers, zero lengths); the fields that
    // matter are set below. Written whole rather than zeroed in bulk first.
    let mut msg_hdr: libc::msghdr = unsafe { std::mem::zeroed() };
    msg_hdr.msg_iov = iov;
    msg_hdr.msg_iovlen = 1;
    msg_hdr.msg_name = name;
    msg_hdr.msg_namelen = namelen;
    libc::mmsghdr {
        msg_hdr,
        msg_len: 0,
    }
}

/// Sends datagrams `item(0)..item(count)` with as few `sendmmsg` calls as the kernel
/// allows; returns how many went out (fewer than asked when the socket buffer is full:
/// `WouldBlock` then).
pub fn send_batch<'a>(
    fd: RawFd,
    count: usize,
    item: impl Fn(usize) -> (SocketAddr, &'a [u8]),
) -> io::Result<usize> {
    let mut sent = 0;
    while sent < count {
        let len = (count - sent).min(BATCH);
        let mut iovs: [MaybeUninit<libc::iovec>; BATCH] = [const { MaybeUninit::uninit() }; BATCH];
        let mut names: [MaybeUninit<libc::sockaddr_storage>; BATCH] =
            [const { MaybeUninit::uninit() }; BATCH];
        let mut hdrs: [MaybeUninit<libc::mmsghdr>; BATCH] =
            [const { MaybeUninit::uninit() }; BATCH];
        for i in 0..len {
            let (addr, data) = item(sent + i);
            let namelen = write_socket_addr(&addr, &mut names[i]);
            let iov = iovs[i].write(libc::iovec {
                iov_base: data.as_ptr() as *mut libc::c_void,
                iov_len: data.len(),
            });
            hdrs[i].write(mmsghdr(
                iov,
                names[i].as_mut_ptr() as *mut libc::c_void,
                namelen,
            ));
        }
        // SAFETY: the first `len` headers are written and point at live iovecs over the
        // callers' slices (read only by the kernel) and at live socket addresses whose
        // first `namelen` bytes are written (all the kernel reads of them), for the
        // duration of the call; the kernel reads no further than `len` headers.
        let n = unsafe {
            libc::sendmmsg(
                fd,
                hdrs.as_mut_ptr() as *mut libc::mmsghdr,
                len as u32,
                libc::MSG_DONTWAIT,
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            if sent > 0 && e.kind() == io::ErrorKind::WouldBlock {
                return Ok(sent);
            }
            return Err(e);
        }
        sent += n as usize;
        if (n as usize) < len {
            return Ok(sent);
        }
    }
    Ok(sent)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn batch_round_trip_v4_and_v6() {
        for (a, b) in [("127.0.0.1:0", "127.0.0.1:0"), ("[::1]:0", "[::1]:0")] {
            let Ok(rx) = std::net::UdpSocket::bind(a) else {
                continue;
            };
            let tx = std::net::UdpSocket::bind(b).unwrap();
            let to = rx.local_addr().unwrap();
            let msgs: Vec<Vec<u8>> = (0..40)
                .map(|i| format!("datagram {i}").into_bytes())
                .collect();
            let items: Vec<(SocketAddr, &[u8])> = msgs.iter().map(|m| (to, m.as_slice())).collect();
            assert_eq!(
                send_batch(tx.as_raw_fd(), items.len(), |i| items[i]).unwrap(),
                40
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
            let mut rb = RecvBatch::new();
            let mut got = vec![];
            while let Ok(n) = rb.recv(rx.as_raw_fd()) {
                for i in 0..n {
                    let (d, from) = rb.get(i);
                    assert_eq!(from, tx.local_addr().unwrap());
                    got.push(d.to_vec());
                }
            }
            assert_eq!(got, msgs);
            let e = rb.recv(rx.as_raw_fd()).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
        }
    }
}
