//! What operators see: Prometheus metrics ([`metrics`]), served over HTTP ([`http`]),
//! signaling records for trace-back ([`records`]), and the mirror of every message to
//! a Homer server ([`homer`]).

pub mod homer;
pub mod http;
pub mod metrics;
pub mod records;
