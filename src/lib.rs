//! sipfence: a SIP signaling firewall against fraud calls.
//!
//! The decision core ([`sip`], [`isup`], [`identity`], [`numbering`], [`policy`],
//! [`decide`]) is pure:
//! bytes and context in, verdict out, no I/O and no clock. The shells around it
//! (proxy, replay, explain, metrics) all call the same [`decide::decide`].

pub mod behaviour;
pub mod cli;
pub mod cluster;
pub mod decide;
#[doc(hidden)]
pub mod fuzzing;
pub mod hep;
pub mod identity;
pub mod isup;
pub mod load_error;
pub mod numbering;
pub mod observability;
pub mod policy;
pub mod proxy;
pub mod record;
pub mod replay;
pub mod sip;
pub mod time;
pub mod verdict;

/// The version and the commit this binary was built from (`build.rs`): two builds of
/// one version told apart when upgrading and rolling back (QA 170).
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("SIPFENCE_COMMIT"),
    ")"
);

/// The commit alone (`unknown` when built outside a git checkout).
pub const COMMIT: &str = env!("SIPFENCE_COMMIT");

/// A peer's address as the trunks match it and the records show it: an IPv4 peer of a
/// dual-stack (`[::]`) socket arrives IPv4-mapped (`[::ffff:192.0.2.1]:5060`) and is its
/// IPv4 address.
pub fn canonical(a: std::net::SocketAddr) -> std::net::SocketAddr {
    std::net::SocketAddr::new(a.ip().to_canonical(), a.port())
}
