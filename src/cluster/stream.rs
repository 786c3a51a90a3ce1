//! Signaling records also go to one Redis stream shared by every gateway
//! (`XADD <prefix>:<stream> MAXLEN ~ <records_maxlen>`, fields `gw` and `record`), so
//! an investigator finds a call seen at any gateway with `sipfence trace --redis` (or
//! `XRANGE`/`XREAD` by hand). The workers hand records over a bounded queue and never
//! wait; a full queue or a failed write drops records and counts them, as the file
//! writer does, and the next write that reaches Redis says how many in
//! `<prefix>:<stream>:lost` (fields `gw`, `lost`, `since_ms`).

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
    // Records dropped and said in the stream so far, and when the last write reached
    // it: the next write that does says how many were lost since (a [`LOST`] entry),
    // so that `trace --redis` tells a search over the gap from one that found nothing
    // (QA 153: 2,258 records lost in an outage, and "0 records matched").
    let mut said = 0u64;
    let mut last_ok_ms = crate::cli::steady_ms();
    while rx.recv_many(&mut batch, BATCH).await > 0 {
        // Said on its own before the batch, so that a loss is said once: a pipeline
        // that fails may still have written some of its entries.
        let lost = stats.dropped.load(Ordering::Relaxed) - said;
        if lost > 0 {
            let (k, gw, since) = (format!("{key}{LOST_SUFFIX}"), instance.clone(), last_ok_ms);
            let wrote = redis
                .run(|mut c| async move {
                    redis::cmd("XADD")
                        .arg(&k)
                        .arg("MAXLEN")
                        .arg("~")
                        .arg(LOST_MAXLEN)
                        .arg("*")
                        .arg("gw")
                        .arg(&gw)
                        .arg(LOST)
                        .arg(lost)
                        .arg("since_ms")
                        .arg(since)
                        .query_async::<()>(&mut c)
                        .await
                })
                .await;
            if wrote.is_ok() {
                said += lost;
                last_ok_ms = crate::cli::steady_ms();
            }
        }
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
                last_ok_ms = crate::cli::steady_ms();
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

/// The field of an entry that says records of its gateway were lost (dropped, never
/// written to the stream) between its `since_ms` and its own time. Such entries go to
/// a stream of their own beside the records' (its name and [`LOST_SUFFIX`]), small
/// enough to read whole: the entry comes when writes work again, maybe long after the
/// window a search reads of the records' stream.
pub const LOST: &str = "lost";
pub const LOST_SUFFIX: &str = ":lost";
const LOST_MAXLEN: u64 = 10_000;

/// An entry of the stream as read back.
pub enum Entry<'a> {
    /// A record (JSON) and when Redis added it (Unix ms, from the entry's ID).
    Record { json: &'a str, added_ms: u64 },
    /// `n` records of the gateway lost between `since_ms` and `to_ms` (the entry's time).
    Lost { n: u64, since_ms: u64, to_ms: u64 },
}

/// The time of the stream's oldest entry (Unix ms), if it holds one: records older than
/// it were trimmed (`records_maxlen`) or lost with Redis's data.
pub async fn first_ms(redis: &Redis, stream: &str) -> Result<Option<u64>, String> {
    let page = xrange(redis, &redis.key(stream), "-", "+", 1).await?;
    Ok(page.first().and_then(|(id, _)| id_ms(id)))
}

/// `XRANGE key from to COUNT count`: entries, each its ID and its fields and values.
async fn xrange(
    redis: &Redis,
    key: &str,
    from: &str,
    to: &str,
    count: usize,
) -> Result<Vec<(String, Vec<String>)>, String> {
    let (k, f, t) = (key.to_string(), from.to_string(), to.to_string());
    redis
        .run(|mut c| async move {
            redis::cmd("XRANGE")
                .arg(&k)
                .arg(&f)
                .arg(&t)
                .arg("COUNT")
                .arg(count)
                .query_async(&mut c)
                .await
        })
        .await
        .map_err(|e| format!("XRANGE {key}: {e}"))
}

/// The time part of a stream entry ID (`<ms>-<seq>`).
fn id_ms(id: &str) -> Option<u64> {
    id.split('-').next()?.parse().ok()
}

/// Reads the stream back between two entry IDs (`-`, `+`, or Unix milliseconds: an
/// entry's ID is the time Redis added it), page by page, oldest first: `f(gw, entry)`
/// for each record or loss ([`Entry`]); the count returned is of records. For `sipfence trace --redis`, which finds a call whichever gateway
/// decided it.
pub async fn read_range(
    redis: &Redis,
    stream: &str,
    from: &str,
    to: &str,
    mut f: impl FnMut(&str, Entry<'_>),
) -> Result<u64, String> {
    let key = redis.key(stream);
    let mut start = from.to_string();
    let mut n = 0u64;
    loop {
        let page = xrange(redis, &key, &start, to, PAGE).await?;
        for (id, fields) in &page {
            let field = |name: &str| {
                fields
                    .chunks_exact(2)
                    .find(|kv| kv[0] == name)
                    .map(|kv| kv[1].as_str())
            };
            let gw = field("gw").unwrap_or("-");
            if let Some(record) = field("record") {
                let added_ms = id_ms(id).unwrap_or(0);
                f(
                    gw,
                    Entry::Record {
                        json: record,
                        added_ms,
                    },
                );
                n += 1;
            } else if let Some(lost) = field(LOST).and_then(|v| v.parse().ok()) {
                let to_ms = id_ms(id).unwrap_or(u64::MAX);
                let since_ms = field("since_ms").and_then(|v| v.parse().ok());
                f(
                    gw,
                    Entry::Lost {
                        n: lost,
                        since_ms: since_ms.unwrap_or(0),
                        to_ms,
                    },
                );
            }
        }
        match page.last() {
            // The next page starts after the last entry read (exclusive range, Redis 6.2).
            Some((id, _)) if page.len() == PAGE => start = format!("({id}"),
            _ => return Ok(n),
        }
    }
}
