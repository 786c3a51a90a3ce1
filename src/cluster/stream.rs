//! Signaling records also go to one Redis stream shared by every gateway
//! (`XADD <prefix>:<stream> MAXLEN ~ <records_maxlen>`, fields `gw` and `record`), so
//! an investigator finds a call seen at any gateway with `sipfence trace --redis` (or
//! `XRANGE`/`XREAD` by hand). The workers hand records over a bounded queue and never
//! wait; a full queue or a failed write drops records and counts them, as the file
//! writer does.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::mpsc;

use super::Redis;

/// Records waiting for Redis; beyond this they are dropped and counted.
const QUEUE: usize = 16_384;
/// Records per pipeline.
const BATCH: usize = 512;

#[derive(Default)]
pub struct StreamStats {
    pub written: AtomicU64,
    pub dropped: AtomicU64,
    /// Writes Redis refused or that never reached it (each drops its batch).
    pub errors: AtomicU64,
}

#[derive(Clone)]
pub struct RecordStream {
    tx: mpsc::Sender<String>,
    pub stats: Arc<StreamStats>,
}

impl RecordStream {
    /// Starts the writer on the current runtime.
    pub fn start(redis: Arc<Redis>, stream: &str, maxlen: u64, instance: String) -> RecordStream {
        let (tx, rx) = mpsc::channel(QUEUE);
        let stats = Arc::new(StreamStats::default());
        let key = redis.key(stream);
        tokio::spawn(write(redis, key, maxlen, instance, rx, stats.clone()));
        RecordStream { tx, stats }
    }

    /// Queues one record (JSON); never blocks.
    pub fn send(&self, json: String) {
        if self.tx.try_send(json).is_err() {
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

async fn write(
    redis: Arc<Redis>,
    key: String,
    maxlen: u64,
    instance: String,
    mut rx: mpsc::Receiver<String>,
    stats: Arc<StreamStats>,
) {
    let mut batch = Vec::with_capacity(BATCH);
    // Records lost are evidence lost: one warning when writes start failing, one line
    // when they succeed again (QA 47: only a debug line and a counter said so).
    let mut failing = false;
    while rx.recv_many(&mut batch, BATCH).await > 0 {
        let mut pipe = redis::pipe();
        for r in &batch {
            pipe.cmd("XADD")
                .arg(&key)
                .arg("MAXLEN")
                .arg("~")
                .arg(maxlen)
                .arg("*")
                .arg("gw")
                .arg(&instance)
                .arg("record")
                .arg(r)
                .ignore();
        }
        let n = batch.len() as u64;
        match redis
            .run(|mut c| async move { pipe.query_async::<()>(&mut c).await })
            .await
        {
            Ok(()) => {
                if failing {
                    tracing::info!(stream = %key, "records reach the redis stream again");
                    failing = false;
                }
                stats.written.fetch_add(n, Ordering::Relaxed)
            }
            Err(e) => {
                if !failing {
                    tracing::warn!(stream = %key, error = %e, "records to the redis stream are dropped until it takes them again (the records files keep them); counted in sipfence_redis_records_total{{result=\"dropped\"}}");
                    failing = true;
                }
                stats.errors.fetch_add(1, Ordering::Relaxed);
                stats.dropped.fetch_add(n, Ordering::Relaxed)
            }
        };
        batch.clear();
    }
}

/// Records per `XRANGE` page when reading the stream back.
const PAGE: usize = 1_000;

/// Reads the stream back between two entry IDs (`-`, `+`, or Unix milliseconds: an
/// entry's ID is the time Redis added it), page by page, oldest first: `f(gw, record)`
/// for each entry. For `sipfence trace --redis`, which finds a call whichever gateway
/// decided it.
pub async fn read_range(
    redis: &Redis,
    stream: &str,
    from: &str,
    to: &str,
    mut f: impl FnMut(&str, &str),
) -> Result<u64, String> {
    let key = redis.key(stream);
    let mut start = from.to_string();
    let mut n = 0u64;
    loop {
        let (k, s, t) = (key.clone(), start.clone(), to.to_string());
        let page: Vec<(String, Vec<String>)> = redis
            .run(|mut c| async move {
                redis::cmd("XRANGE")
                    .arg(&k)
                    .arg(&s)
                    .arg(&t)
                    .arg("COUNT")
                    .arg(PAGE)
                    .query_async(&mut c)
                    .await
            })
            .await
            .map_err(|e| format!("XRANGE {key}: {e}"))?;
        for (_, fields) in &page {
            let field = |name: &str| {
                fields
                    .chunks_exact(2)
                    .find(|kv| kv[0] == name)
                    .map(|kv| kv[1].as_str())
            };
            if let Some(record) = field("record") {
                f(field("gw").unwrap_or("-"), record);
                n += 1;
            }
        }
        match page.last() {
            // The next page starts after the last entry read (exclusive range, Redis 6.2).
            Some((id, _)) if page.len() == PAGE => start = format!("({id}"),
            _ => return Ok(n),
        }
    }
}
