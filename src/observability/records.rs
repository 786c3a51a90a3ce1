//! Signaling records for trace-back: one JSON line per decision on an initial request,
//! written by a dedicated thread so the proxy never waits on a disk. The channel is
//! bounded; when the writer falls behind, records are dropped and counted.
//!
//! Files are `records-<unix-seconds>.jsonl` in the configured directory, rotated by size
//! and age, and deleted once older than the retention period.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::observability::metrics::Metrics;
use crate::policy::config::RecordsConf;
use crate::record::Record;

#[derive(Clone)]
pub struct RecordSink {
    tx: SyncSender<Record>,
    metrics: Arc<Metrics>,
}

impl RecordSink {
    /// Hands a record to the writer; never blocks.
    pub fn send(&self, r: Record) {
        match self.tx.try_send(r) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.metrics.records_dropped.inc()
            }
        }
    }
}

/// Starts the writer thread; `None` when records are disabled (empty dir).
pub fn start(conf: &RecordsConf, metrics: Arc<Metrics>) -> std::io::Result<Option<RecordSink>> {
    if conf.dir.is_empty() {
        return Ok(None);
    }
    let dir = PathBuf::from(&conf.dir);
    std::fs::create_dir_all(&dir)?;
    let (tx, rx) = sync_channel(65_536);
    let w = Writer {
        dir,
        rotate_bytes: conf.rotate_bytes.max(4096),
        rotate_secs: conf.rotate_secs.max(1),
        retention_secs: conf.retention_secs,
        file: None,
        opened_at: 0,
        written: 0,
        metrics: metrics.clone(),
    };
    std::thread::Builder::new()
        .name("records".into())
        .spawn(move || w.run(rx))?;
    Ok(Some(RecordSink { tx, metrics }))
}

struct Writer {
    dir: PathBuf,
    rotate_bytes: u64,
    rotate_secs: u64,
    retention_secs: u64,
    file: Option<BufWriter<File>>,
    opened_at: u64,
    written: u64,
    metrics: Arc<Metrics>,
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Writer {
    fn run(mut self, rx: Receiver<Record>) {
        loop {
            match rx.recv_timeout(Duration::from_millis(500)) {
                Ok(r) => {
                    self.write(&r);
                    // Drain what is queued before flushing once.
                    while let Ok(r) = rx.try_recv() {
                        self.write(&r);
                    }
                    if let Some(f) = self.file.as_mut() {
                        let _ = f.flush();
                    }
                }
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                    let now = now_secs();
                    if self.file.is_some() && now.saturating_sub(self.opened_at) >= self.rotate_secs
                    {
                        self.rotate(now);
                    }
                }
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        if let Some(f) = self.file.as_mut() {
            let _ = f.flush();
        }
    }

    fn write(&mut self, r: &Record) {
        let now = now_secs();
        if self.file.is_none()
            || self.written >= self.rotate_bytes
            || now.saturating_sub(self.opened_at) >= self.rotate_secs
        {
            self.rotate(now);
        }
        let Some(f) = self.file.as_mut() else {
            self.metrics.records_dropped.inc();
            return;
        };
        let Ok(mut line) = serde_json::to_vec(r) else {
            return;
        };
        line.push(b'\n');
        if f.write_all(&line).is_ok() {
            self.written += line.len() as u64;
            self.metrics.records_written.inc();
        } else {
            self.metrics.records_dropped.inc();
        }
    }

    fn rotate(&mut self, now: u64) {
        if let Some(mut f) = self.file.take() {
            let _ = f.flush();
        }
        // Unique name even when rotating twice in one second.
        let mut name = self.dir.join(format!("records-{now}.jsonl"));
        let mut n = 1;
        while name.exists() {
            name = self.dir.join(format!("records-{now}-{n}.jsonl"));
            n += 1;
        }
        match OpenOptions::new().create(true).append(true).open(&name) {
            Ok(f) => {
                self.file = Some(BufWriter::new(f));
                self.opened_at = now;
                self.written = 0;
            }
            Err(e) => {
                tracing::warn!(file = %name.display(), error = %e, "cannot open signaling record file")
            }
        }
        expire(&self.dir, now, self.retention_secs);
    }
}

/// Deletes record files older than the retention period (by the time in their name).
pub fn expire(dir: &Path, now: u64, retention_secs: u64) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let name = e.file_name();
        let Some(n) = name.to_str() else { continue };
        let Some(ts) = n
            .strip_prefix("records-")
            .and_then(|r| r.strip_suffix(".jsonl"))
        else {
            continue;
        };
        let ts: u64 = ts
            .split('-')
            .next()
            .and_then(|t| t.parse().ok())
            .unwrap_or(u64::MAX);
        if now.saturating_sub(ts) > retention_secs {
            let _ = std::fs::remove_file(e.path());
        }
    }
}
