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

/// A lazily (re)connected Redis connection with a bounded wait on every call.
pub struct Redis {
    client: redis::Client,
    conn: Mutex<Option<redis::aio::MultiplexedConnection>>,
    pub timeout: Duration,
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
    pub fn open(url: &str, prefix: &str, timeout_ms: u64) -> Result<Redis, String> {
        let client = redis::Client::open(url)
            .map_err(|e| format!("redis url '{}': {e}", url_for_people(url)))?;
        Ok(Redis {
            client,
            conn: Mutex::new(None),
            timeout: Duration::from_millis(timeout_ms.max(1)),
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
        let conn = {
            let mut g = self.conn.lock().await;
            match &*g {
                Some(c) => c.clone(),
                None => {
                    let c = tokio::time::timeout(
                        self.timeout,
                        self.client.get_multiplexed_async_connection(),
                    )
                    .await
                    .map_err(|_| RedisFailure::Timeout)?
                    .map_err(RedisFailure::Error)?;
                    *g = Some(c.clone());
                    c
                }
            }
        };
        let r = match tokio::time::timeout(self.timeout, f(conn)).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(RedisFailure::Error(e)),
            Err(_) => Err(RedisFailure::Timeout),
        };
        if r.is_err() {
            *self.conn.lock().await = None;
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
