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

/// Receive buffers for one socket, reused for every batch.
pub struct RecvBatch {
    buf: Vec<u8>,
    /// Where the kernel writes each sender's address: zeroed once, overwritten by every
    /// call (clearing 4 KiB per call, most of which find one datagram or none, showed in
    /// profiles).
    names: Box<[libc::sockaddr_storage; BATCH]>,
    lens: [usize; BATCH],
    addrs: [SocketAddr; BATCH],
}

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

fn from_socket_addr(a: &SocketAddr, s: &mut libc::sockaddr_storage) -> libc::socklen_t {
    match a {
        SocketAddr::V4(v4) => {
            // SAFETY: sockaddr_storage is large enough and aligned for sockaddr_in.
            let sin = unsafe { &mut *(s as *mut libc::sockaddr_storage as *mut libc::sockaddr_in) };
            sin.sin_family = libc::AF_INET as libc::sa_family_t;
            sin.sin_port = v4.port().to_be();
            sin.sin_addr = libc::in_addr {
                s_addr: u32::from(*v4.ip()).to_be(),
            };
            size_of::<libc::sockaddr_in>() as libc::socklen_t
        }
        SocketAddr::V6(v6) => {
            // SAFETY: as above, for sockaddr_in6.
            let sin6 =
                unsafe { &mut *(s as *mut libc::sockaddr_storage as *mut libc::sockaddr_in6) };
            sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sin6.sin6_port = v6.port().to_be();
            sin6.sin6_addr = libc::in6_addr {
                s6_addr: v6.ip().octets(),
            };
            sin6.sin6_flowinfo = v6.flowinfo();
            sin6.sin6_scope_id = v6.scope_id();
            size_of::<libc::sockaddr_in6>() as libc::socklen_t
        }
    }
}

impl RecvBatch {
    pub fn new() -> RecvBatch {
        RecvBatch {
            buf: vec![0u8; BATCH * SLOT],
            // SAFETY: all-zero is a valid sockaddr_storage.
            names: Box::new(unsafe { std::mem::zeroed() }),
            lens: [0; BATCH],
            addrs: [SocketAddr::from(([0, 0, 0, 0], 0)); BATCH],
        }
    }

    /// Receives up to [`BATCH`] datagrams without blocking; `WouldBlock` when none.
    pub fn recv(&mut self, fd: RawFd) -> io::Result<usize> {
        let mut iovs: [MaybeUninit<libc::iovec>; BATCH] = [const { MaybeUninit::uninit() }; BATCH];
        let mut hdrs: [MaybeUninit<libc::mmsghdr>; BATCH] =
            [const { MaybeUninit::uninit() }; BATCH];
        let names = self.names.as_mut_ptr();
        for i in 0..BATCH {
            let iov = iovs[i].write(libc::iovec {
                iov_base: self.buf[i * SLOT..].as_mut_ptr() as *mut libc::c_void,
                iov_len: SLOT,
            });
            hdrs[i].write(mmsghdr(
                iov,
                names.wrapping_add(i) as *mut libc::c_void,
                size_of::<libc::sockaddr_storage>() as libc::socklen_t,
            ));
        }
        // SAFETY: every header points at a live iovec over a slot of self.buf and at a
        // live sockaddr_storage, all of which outlive the call.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                hdrs.as_mut_ptr() as *mut libc::mmsghdr,
                BATCH as u32,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let n = n as usize;
        for (i, h) in hdrs.iter().enumerate().take(n) {
            // SAFETY: every header was written above; the kernel filled in the first n.
            let len = unsafe { h.assume_init_ref() }.msg_len;
            self.lens[i] = (len as usize).min(SLOT);
            self.addrs[i] =
                to_socket_addr(&self.names[i]).unwrap_or(SocketAddr::from(([0, 0, 0, 0], 0)));
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
            // SAFETY: all-zero is a valid sockaddr_storage.
            let name = names[i].write(unsafe { std::mem::zeroed() });
            let namelen = from_socket_addr(&addr, name);
            let iov = iovs[i].write(libc::iovec {
                iov_base: data.as_ptr() as *mut libc::c_void,
                iov_len: data.len(),
            });
            hdrs[i].write(mmsghdr(
                iov,
                name as *mut libc::sockaddr_storage as *mut libc::c_void,
                namelen,
            ));
        }
        // SAFETY: the first `len` headers are written and point at live iovecs over the
        // callers' slices (read only by the kernel) and at live socket addresses, for the
        // duration of the call; the kernel reads no further than `len`.
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
