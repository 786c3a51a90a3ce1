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
            lens: [0; BATCH],
            addrs: [SocketAddr::from(([0, 0, 0, 0], 0)); BATCH],
        }
    }

    /// Receives up to [`BATCH`] datagrams without blocking; `WouldBlock` when none.
    pub fn recv(&mut self, fd: RawFd) -> io::Result<usize> {
        let mut iovs: [MaybeUninit<libc::iovec>; BATCH] = [const { MaybeUninit::uninit() }; BATCH];
        // SAFETY: all-zero is a valid sockaddr_storage and mmsghdr (null pointers, zero lengths).
        let mut names: [libc::sockaddr_storage; BATCH] = unsafe { std::mem::zeroed() };
        let mut hdrs: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
        for i in 0..BATCH {
            let iov = iovs[i].write(libc::iovec {
                iov_base: self.buf[i * SLOT..].as_mut_ptr() as *mut libc::c_void,
                iov_len: SLOT,
            });
            hdrs[i].msg_hdr.msg_iov = iov;
            hdrs[i].msg_hdr.msg_iovlen = 1;
            hdrs[i].msg_hdr.msg_name =
                &mut names[i] as *mut libc::sockaddr_storage as *mut libc::c_void;
            hdrs[i].msg_hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        }
        // SAFETY: every header points at a live iovec over a slot of self.buf and at a
        // live sockaddr_storage, all of which outlive the call.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                hdrs.as_mut_ptr(),
                BATCH as u32,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let n = n as usize;
        for i in 0..n {
            self.lens[i] = (hdrs[i].msg_len as usize).min(SLOT);
            self.addrs[i] =
                to_socket_addr(&names[i]).unwrap_or(SocketAddr::from(([0, 0, 0, 0], 0)));
        }
        Ok(n)
    }

    /// Datagram `i` of the last batch and its sender.
    pub fn get(&self, i: usize) -> (&[u8], SocketAddr) {
        (&self.buf[i * SLOT..i * SLOT + self.lens[i]], self.addrs[i])
    }
}

/// Sends datagrams with as few `sendmmsg` calls as the kernel allows; returns how many
/// went out (fewer than asked when the socket buffer is full: `WouldBlock` then).
pub fn send_batch(fd: RawFd, items: &[(SocketAddr, &[u8])]) -> io::Result<usize> {
    let mut sent = 0;
    while sent < items.len() {
        let chunk = &items[sent..(sent + BATCH).min(items.len())];
        let mut iovs: [MaybeUninit<libc::iovec>; BATCH] = [const { MaybeUninit::uninit() }; BATCH];
        // SAFETY: all-zero is a valid sockaddr_storage and mmsghdr.
        let mut names: [libc::sockaddr_storage; BATCH] = unsafe { std::mem::zeroed() };
        let mut hdrs: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
        for (i, (addr, data)) in chunk.iter().enumerate() {
            let len = from_socket_addr(addr, &mut names[i]);
            let iov = iovs[i].write(libc::iovec {
                iov_base: data.as_ptr() as *mut libc::c_void,
                iov_len: data.len(),
            });
            hdrs[i].msg_hdr.msg_iov = iov;
            hdrs[i].msg_hdr.msg_iovlen = 1;
            hdrs[i].msg_hdr.msg_name =
                &mut names[i] as *mut libc::sockaddr_storage as *mut libc::c_void;
            hdrs[i].msg_hdr.msg_namelen = len;
        }
        // SAFETY: the headers point at live iovecs over the callers' slices (read only by
        // the kernel) and at live socket addresses, for the duration of the call.
        let n = unsafe {
            libc::sendmmsg(
                fd,
                hdrs.as_mut_ptr(),
                chunk.len() as u32,
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
        if (n as usize) < chunk.len() {
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
            assert_eq!(send_batch(tx.as_raw_fd(), &items).unwrap(), 40);
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
