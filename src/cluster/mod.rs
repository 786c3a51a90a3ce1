//! Several gateways acting as one filter. Each instance still decides alone, on its
//! own copy of the policy, so no call waits on the network; three things are shared
//! through Redis:
//!
//! - rate counters ([`counters::SharedRateCounter`]): counted locally, sent to Redis
//!   and read back in small batches every `sync_ms`, with local counting when Redis is
//!   out of reach; and each gateway's concurrent calls per limited trunk ([`calls`]),
//!   published and summed on the same beat;
//! - list versions ([`lists`]): `sipfence lists publish` stores a new set of lists,
//!   every instance polls for it and swaps it in, or refuses it and keeps its own;
//! - signaling records ([`stream`]): also appended to a Redis stream, so that an
//!   investigation looks in one place for a call seen at any gateway.
//!
//! Everything here runs on the control runtime, never on the workers' receive loops;
//! the workers only touch in-memory state.

pub mod calls;
pub mod counters;
pub mod lists;
pub mod stream;

use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;

use crate::policy::config::RedisConf;

/// Lazily (re)connected Redis connections with a bounded wait on every call.
pub struct Redis {
    client: redis::Client,
    /// The counters', concurrent calls', stream's and list polls' calls: small, each
    /// within `timeout`.
    conn: Mutex<Option<redis::aio::MultiplexedConnection>>,
    /// Whole list sets (tens of MB for millions of entries), on a connection and a wait
    /// of their own: on the shared connection a set's transfer held the counter sync
    /// behind it past its timeout (Redis said lost every second, calls of a `closed`
    /// fallback refused), and a set that took longer than `timeout` to arrive was
    /// fetched again every poll and never loaded (QA 181).
    bulk: Mutex<Option<redis::aio::MultiplexedConnection>>,
    pub timeout: Duration,
    pub bulk_timeout: Duration,
    pub prefix: String,
}

/// Why a Redis call failed, for logs and metrics.
#[derive(Debug)]
pub enum RedisFailure {
    Timeout,
    Error(redis::RedisError),
}

impl std::fmt::Display for RedisFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RedisFailure::Timeout => f.write_str("timed out"),
            // An answer cut off (Redis killed while it was being sent) reads to the
            // client as a malformed one: said as what it is (QA 181).
            RedisFailure::Error(e) if e.kind() == redis::ErrorKind::Parse => {
                let first = e.to_string();
                let first = first.lines().next().unwrap_or_default();
                write!(f, "the connection broke off mid-answer ({first})")
            }
            RedisFailure::Error(e) => write!(f, "{e}"),
        }
    }
}

/// Whether `run` could open this URL: `check` refuses what the restart would.
pub fn check_url(url: &str) -> Result<(), String> {
    redis::Client::open(url).map(drop).map_err(|e| {
        format!(
            "'{}' does not parse: {e} (redis://host:port[/db])",
            url_for_people(url)
        )
    })
}

/// A Redis URL as printed and logged: a password in it is not for the screen.
pub fn url_for_people(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) if rest.contains('@') => format!(
            "{scheme}://***@{}",
            rest.rsplit_once('@').map_or("", |(_, h)| h)
        ),
        _ => url.to_string(),
    }
}

impl Redis {
    /// `timeout_ms` bounds every call, `bulk_timeout_ms` the reads and writes of whole
    /// list sets ([`Redis::run_bulk`]).
    pub fn open(
        url: &str,
        prefix: &str,
        timeout_ms: u64,
        bulk_timeout_ms: u64,
    ) -> Result<Redis, String> {
        let client = redis::Client::open(url)
            .map_err(|e| format!("redis url '{}': {e}", url_for_people(url)))?;
        let timeout = Duration::from_millis(timeout_ms.max(1));
        Ok(Redis {
            client,
            conn: Mutex::new(None),
            bulk: Mutex::new(None),
            timeout,
            bulk_timeout: Duration::from_millis(bulk_timeout_ms).max(timeout),
            prefix: prefix.to_string(),
        })
    }

    pub fn key(&self, rest: &str) -> String {
        format!("{}:{rest}", self.prefix)
    }

    /// Runs `f` on a connection within the timeout; a failure drops the connection so
    /// that the next call reconnects (Redis restarted, network healed).
    pub async fn run<T, F, Fut>(&self, f: F) -> Result<T, RedisFailure>
    where
        F: FnOnce(redis::aio::MultiplexedConnection) -> Fut,
        Fut: std::future::Future<Output = redis::RedisResult<T>>,
    {
        self.run_on(&self.conn, self.timeout, f).await
    }

    /// [`Redis::run`] for a whole list set, on its own connection within `bulk_timeout`.
    pub async fn run_bulk<T, F, Fut>(&self, f: F) -> Result<T, RedisFailure>
    where
        F: FnOnce(redis::aio::MultiplexedConnection) -> Fut,
        Fut: std::future::Future<Output = redis::RedisResult<T>>,
    {
        self.run_on(&self.bulk, self.bulk_timeout, f).await
    }

    async fn run_on<T, F, Fut>(
        &self,
        slot: &Mutex<Option<redis::aio::MultiplexedConnection>>,
        wait: Duration,
        f: F,
    ) -> Result<T, RedisFailure>
    where
        F: FnOnce(redis::aio::MultiplexedConnection) -> Fut,
        Fut: std::future::Future<Output = redis::RedisResult<T>>,
    {
        let conn = {
            let mut g = slot.lock().await;
            match &*g {
                Some(c) => c.clone(),
                None => {
                    // The waits are the ones configured here: the client's own (half a
                    // second for an answer) cut a large set's transfer, and any
                    // `timeout_ms` over it, short.
                    let config = redis::AsyncConnectionConfig::new()
                        .set_connection_timeout(None)
                        .set_response_timeout(None);
                    let c = tokio::time::timeout(
                        wait,
                        self.client
                            .get_multiplexed_async_connection_with_config(&config),
                    )
                    .await
                    .map_err(|_| RedisFailure::Timeout)?
                    .map_err(RedisFailure::Error)?;
                    *g = Some(c.clone());
                    c
                }
            }
        };
        let r = match tokio::time::timeout(wait, f(conn)).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(RedisFailure::Error(e)),
            Err(_) => Err(RedisFailure::Timeout),
        };
        if r.is_err() {
            *slot.lock().await = None;
        }
        r
    }
}

/// This gateway's name: configured, else the host name, else "sipfence".
pub fn instance_name(conf: &RedisConf) -> String {
    if !conf.instance.is_empty() {
        return conf.instance.clone();
    }
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "sipfence".into())
}

/// The shared parts of a running proxy.
pub struct Cluster {
    pub redis: Arc<Redis>,
    pub instance: String,
    pub counters: Arc<counters::SharedRateCounter>,
    /// Set once the control runtime runs (the writer is a task on it).
    pub stream: std::sync::OnceLock<stream::RecordStream>,
}
