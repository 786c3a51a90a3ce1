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
