//! What operators see: Prometheus metrics ([`metrics`]), served over HTTP ([`http`]),
//! and signaling records for trace-back ([`records`]).

pub mod http;
pub mod metrics;
pub mod records;
