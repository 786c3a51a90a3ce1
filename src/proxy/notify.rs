//! systemd's readiness protocol (`sd_notify`, `Type=notify`): `READY=1` once every
//! socket is bound and the reload handler is in place, `STATUS=` after each reload,
//! `STOPPING=1` at shutdown. systemd then holds `systemctl reload` (and the units
//! ordered after sipfence) until the gateway really serves, so that a reload asked for
//! while millions of list entries load waits for them instead of racing the start.
//! Without `NOTIFY_SOCKET` (not under systemd) nothing is sent.

use std::os::unix::net::UnixDatagram;

/// Sends `state` (newline-separated `KEY=value` lines) to the service manager, if any.
/// A failure is logged and otherwise ignored: readiness is a courtesy to systemd, and
/// the gateway serves either way.
pub fn notify(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let sent = UnixDatagram::unbound().and_then(|s| {
        let p = path.as_encoded_bytes();
        match p.strip_prefix(b"@") {
            // An abstract socket (systemd's usual choice in containers and user units).
            Some(name) => {
                use std::os::linux::net::SocketAddrExt;
                let a = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
                s.send_to_addr(state.as_bytes(), &a)
            }
            None => s.send_to(state.as_bytes(), &path),
        }
    });
    if let Err(e) = sent {
        tracing::warn!(error = %e, "cannot notify the service manager");
    }
}
