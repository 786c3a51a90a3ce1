//! Signaling records for trace-back: one JSON line per decision on an initial request,
//! written by a dedicated thread so the proxy never waits on a disk. The channel is
//! bounded; when the writer falls behind, records are dropped and counted.
//!
//! Files are `records-<unix-seconds>.jsonl` in the configured directory, rotated by size
//! and age, and deleted once older than the retention period. With `pcap_rejected`, the
//! raw requests sipfence rejected also go to `rejected-<unix-seconds>.pcap` (rotated with
//! the records), as IP/UDP packets Wireshark opens directly.

use bytes::Bytes;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::observability::metrics::Metrics;
use crate::policy::config::RecordsConf;
use crate::record::Record;
use crate::replay::pcapout::{LINKTYPE_RAW, PcapWriter, udp_packet};

/// What goes to the writer thread.
pub enum Item {
    Record(Box<Record>),
    /// A rejected request as received, for the pcap of rejected calls.
    Raw {
        ts_ms: u64,
        src: SocketAddr,
        dst: SocketAddr,
        bytes: Bytes,
    },
}

#[derive(Clone)]
pub struct RecordSink {
    tx: SyncSender<Item>,
    metrics: Arc<Metrics>,
    /// Whether raw rejected requests are wanted.
    pub pcap_rejected: bool,
}

impl RecordSink {
    /// Hands a record to the writer; never blocks.
    pub fn send(&self, r: Record) {
        self.push(Item::Record(Box::new(r)));
    }

    /// Hands a rejected request's bytes to the writer (when `pcap_rejected`); never blocks.
    pub fn send_raw(&self, ts_ms: u64, src: SocketAddr, dst: SocketAddr, bytes: Bytes) {
        if self.pcap_rejected {
            self.push(Item::Raw {
                ts_ms,
                src,
                dst,
                bytes,
            });
        }
    }

    fn push(&self, i: Item) {
        match self.tx.try_send(i) {
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
        pcap: None,
        want_pcap: conf.pcap_rejected,
        opened_at: 0,
        written: 0,
        metrics: metrics.clone(),
    };
    std::thread::Builder::new()
        .name("records".into())
        .spawn(move || w.run(rx))?;
    Ok(Some(RecordSink {
        tx,
        metrics,
        pcap_rejected: conf.pcap_rejected,
    }))
}

struct Writer {
    dir: PathBuf,
    rotate_bytes: u64,
    rotate_secs: u64,
    retention_secs: u64,
    file: Option<BufWriter<File>>,
    pcap: Option<PcapWriter>,
    want_pcap: bool,
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
    fn run(mut self, rx: Receiver<Item>) {
        loop {
            match rx.recv_timeout(Duration::from_millis(500)) {
                Ok(i) => {
                    self.item(i);
                    // Drain what is queued before flushing once.
                    while let Ok(i) = rx.try_recv() {
                        self.item(i);
                    }
                    if let Some(f) = self.file.as_mut() {
                        let _ = f.flush();
                    }
                    if let Some(p) = self.pcap.as_mut() {
                        let _ = p.flush();
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
        if let Some(p) = self.pcap.take() {
            let _ = p.finish();
        }
    }

    fn item(&mut self, i: Item) {
        match i {
            Item::Record(r) => self.write(&r),
            Item::Raw {
                ts_ms,
                src,
                dst,
                bytes,
            } => {
                if self.file.is_none() {
                    self.rotate(now_secs());
                }
                let Some(p) = self.pcap.as_mut() else { return };
                let pkt = udp_packet(src, dst, &bytes);
                let ok = p.write(
                    LINKTYPE_RAW,
                    (ts_ms / 1000) as u32,
                    (ts_ms % 1000 * 1000) as u32,
                    &pkt,
                    pkt.len() as u32,
                );
                if ok.is_err() {
                    self.metrics.records_dropped.inc();
                }
            }
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
        if let Some(p) = self.pcap.take() {
            let _ = p.finish();
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
        if self.want_pcap {
            let stem = name
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("records")
                .replace("records-", "rejected-")
                .replace(".jsonl", ".pcap");
            match PcapWriter::create(&self.dir.join(stem)) {
                Ok(p) => self.pcap = Some(p),
                Err(e) => tracing::warn!(error = %e, "cannot open the pcap of rejected calls"),
            }
        }
        expire(&self.dir, now, self.retention_secs);
    }
}

/// The time a record or rejected-call file was opened, from its name
/// (`records-<secs>[-n].jsonl`, `rejected-<secs>[-n].pcap`; `.gz` when an operator's
/// log rotation has compressed one); `None` for any other file.
fn opened_at(name: &str) -> Option<u64> {
    let name = name.strip_suffix(".gz").unwrap_or(name);
    let ts = name
        .strip_prefix("records-")
        .and_then(|r| r.strip_suffix(".jsonl"))
        .or_else(|| {
            name.strip_prefix("rejected-")
                .and_then(|r| r.strip_suffix(".pcap"))
        })?;
    ts.split('-').next()?.parse().ok()
}

/// The record files of a directory, oldest first (`records-<secs>[-n].jsonl`, and
/// `.jsonl.gz`): what `sipfence trace` searches.
pub fn record_files(dir: &Path) -> std::io::Result<Vec<(u64, PathBuf)>> {
    files_named(dir, "records-", ".jsonl")
}

/// The pcaps of rejected requests beside the records (`rejected-<secs>[-n].pcap`),
/// oldest first: where `sipfence trace --write-pcap` takes the packets from.
pub fn rejected_files(dir: &Path) -> std::io::Result<Vec<(u64, PathBuf)>> {
    files_named(dir, "rejected-", ".pcap")
}

fn files_named(dir: &Path, prefix: &str, ext: &str) -> std::io::Result<Vec<(u64, PathBuf)>> {
    let mut files = vec![];
    for e in std::fs::read_dir(dir)?.flatten() {
        let name = e.file_name();
        let Some(n) = name.to_str() else { continue };
        if n.starts_with(prefix)
            && let Some(ts) = opened_at(n)
        {
            // Same second: records-T.jsonl, then records-T-1.jsonl, ...
            let n_in_second: u64 = n
                .trim_end_matches(".gz")
                .trim_end_matches(ext)
                .split('-')
                .nth(2)
                .and_then(|k| k.parse().ok())
                .unwrap_or(0);
            files.push(((ts, n_in_second), e.path()));
        }
    }
    files.sort();
    Ok(files.into_iter().map(|((ts, _), p)| (ts, p)).collect())
}

/// Deletes record files older than the retention period (by the time in their name).
pub fn expire(dir: &Path, now: u64, retention_secs: u64) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let name = e.file_name();
        let Some(n) = name.to_str() else { continue };
        // Only the files this writer names; compressed ones are the operator's.
        if n.ends_with(".gz") {
            continue;
        }
        let Some(ts) = opened_at(n) else { continue };
        if now.saturating_sub(ts) > retention_secs {
            let _ = std::fs::remove_file(e.path());
        }
    }
}
