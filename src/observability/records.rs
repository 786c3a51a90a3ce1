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
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::observability::metrics::Metrics;
use crate::policy::config::RecordsConf;
use crate::record::Record;
use crate::replay::pcapout::{LINKTYPE_RAW, file_header, push_record, udp_packet};

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
    /// Write everything queued before it and end the pcap of rejected calls, then say
    /// so: the last thing before the process exits.
    Finish(std::sync::mpsc::SyncSender<()>),
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

    /// At shutdown: waits (up to `wait`) until the writer has written every record
    /// queued so far and ended the pcap of rejected calls (one that took no packet is
    /// removed: QA 44 found an empty one left after a run with only allowed calls, the
    /// process gone before its writer thread ended it). True when it did.
    pub fn finish(&self, wait: Duration) -> bool {
        let (ack, done) = sync_channel(1);
        self.tx.send(Item::Finish(ack)).is_ok() && done.recv_timeout(wait).is_ok()
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
            Err(TrySendError::Full(i)) | Err(TrySendError::Disconnected(i)) => match i {
                Item::Record(_) => self.metrics.records_dropped.inc(),
                Item::Raw { .. } => self.metrics.rejected_pcap_dropped.inc(),
                Item::Finish(_) => {}
            },
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
    let w = Writer::new(dir, conf, metrics.clone());
    std::thread::Builder::new()
        .name("records".into())
        .spawn(move || w.run(rx))?;
    Ok(Some(RecordSink {
        tx,
        metrics,
        pcap_rejected: conf.pcap_rejected,
    }))
}

/// A file written a batch at a time: what was added since the last write goes in one
/// `write`, and counts as written once the disk took all of it. A write the disk
/// refuses part-way (full, read-only) is cut back to the file's last whole batch, so
/// that a full disk leaves no half JSON line nor half pcap record behind.
struct Batched {
    file: File,
    path: PathBuf,
    /// Bytes the disk took, all of them whole entries.
    len: u64,
    pending: Vec<u8>,
    /// Entries in `pending` (records, packets).
    pending_n: u64,
    /// The time of the newest entry, ms since the epoch: the file's modification time
    /// is kept at least this, so that it tells `trace` where the file's records end
    /// even when the clock went back after they were stamped.
    newest_ms: u64,
}

impl Batched {
    fn open(path: PathBuf) -> std::io::Result<Batched> {
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        Ok(Batched {
            file,
            path,
            len: 0,
            pending: Vec::with_capacity(64 * 1024),
            pending_n: 0,
            newest_ms: 0,
        })
    }

    fn size(&self) -> u64 {
        self.len + self.pending.len() as u64
    }

    /// Writes what is pending: `Ok(n)` entries written, or `Err((n, e))` entries lost.
    fn write(&mut self) -> Result<u64, (u64, std::io::Error)> {
        let n = std::mem::take(&mut self.pending_n);
        if self.pending.is_empty() {
            return Ok(n);
        }
        let r = self.file.write_all(&self.pending);
        let taken = self.pending.len() as u64;
        self.pending.clear();
        match r {
            Ok(()) => {
                self.len += taken;
                // The write stamped the file with the clock's now; an entry stamped
                // later (the clock stepped back since) moves the stamp to it. The
                // record files' spans are what `trace --since/--until` picks them by.
                let newest = UNIX_EPOCH + Duration::from_millis(self.newest_ms);
                if newest > SystemTime::now() {
                    let _ = self.file.set_modified(newest);
                }
                Ok(n)
            }
            Err(e) => {
                let _ = self.file.set_len(self.len);
                Err((n, e))
            }
        }
    }
}

struct Writer {
    dir: PathBuf,
    rotate_bytes: u64,
    rotate_secs: u64,
    retention_secs: u64,
    /// The JSON lines of the records.
    file: Option<Batched>,
    /// The pcap of rejected calls (removed at rotation if it took no packet).
    pcap: Option<Batched>,
    want_pcap: bool,
    /// When the open file was opened (for `rotate_secs`), by this writer's clock.
    opened_at: u64,
    /// The time in its name: the opening, or its first record's when that is earlier
    /// (a record stamped before a step of the clock forward).
    named_at: u64,
    /// Since when writes fail (a full or read-only disk), and when they last did: said
    /// once, and once more when they have gone through for a while ([`RECOVERED`]),
    /// not at each batch that happens to fit while the disk is nearly full.
    failing: Option<(Instant, Instant)>,
    /// After a file could not be opened (a directory made read-only, no file descriptor
    /// left), none is tried again before this: the records meanwhile are dropped and
    /// counted, and the failure said once like a write's (QA 44: every record tried a
    /// new file and logged two lines, 2.4 GB of log an hour at 2,000 calls/s).
    reopen_at: Option<Instant>,
    /// When the open file's path was last looked at ([`Writer::follow_path`]), and how
    /// often it is.
    looked_at: Instant,
    look_every: Duration,
    metrics: Arc<Metrics>,
}

/// How far before its file's name a record's time may be without starting a new file:
/// records queued while the file was opened, and small steps of the clock, stay within
/// the minute of slack `trace` allows around a file's span.
const STEP_BACK_MS: u64 = 10_000;

/// How often the open records file's path is checked for being the same file.
const LOOK_EVERY: Duration = Duration::from_secs(1);

/// How long after a file could not be opened the next one is tried.
const REOPEN: Duration = Duration::from_secs(1);

/// Writes that succeed for this long after the last failure end a failure episode.
const RECOVERED: Duration = Duration::from_secs(10);

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Writer {
    /// A writer into `dir` with no file open yet: the first record opens one.
    fn new(dir: PathBuf, conf: &RecordsConf, metrics: Arc<Metrics>) -> Writer {
        Writer {
            dir,
            rotate_bytes: conf.rotate_bytes.max(4096),
            rotate_secs: conf.rotate_secs.max(1),
            retention_secs: conf.retention_secs,
            file: None,
            pcap: None,
            want_pcap: conf.pcap_rejected,
            opened_at: 0,
            named_at: 0,
            failing: None,
            reopen_at: None,
            looked_at: Instant::now(),
            look_every: LOOK_EVERY,
            metrics,
        }
    }

    /// A records file removed or moved while open (a clean-up job, an external log
    /// rotation) would take every record until sipfence's own rotation, up to
    /// `rotate_secs`, into a file no one can read any more, each counted as written (QA
    /// 118 F1). One removed (no link left) is seen at each batch, by the open file
    /// alone (QA 122: looked at once a second, the batches of that second went into the
    /// removed file); one moved, which keeps what it took, by its path every
    /// `look_every`. Either way the open file ends (and the pcap of rejected calls with
    /// it: QA 119 N1) and the next record opens a new one.
    fn follow_path(&mut self) {
        let now = Instant::now();
        let look = now.duration_since(self.looked_at) >= self.look_every;
        if look {
            self.looked_at = now;
        }
        let Some(gone) = [self.file.as_ref(), self.pcap.as_ref()]
            .into_iter()
            .flatten()
            .find(|f| let_go(&f.file, &f.path, look))
        else {
            return;
        };
        tracing::warn!(file = %gone.path.display(), "a signaling records or rejected-calls file was removed or moved while being written: new ones are started at the next record (sipfence rotates and expires its own files: [records] rotate_secs, rotate_bytes, retention_secs)");
        self.flush();
        self.file = None;
        self.close_pcap();
    }

    fn run(mut self, rx: Receiver<Item>) {
        loop {
            match rx.recv_timeout(Duration::from_millis(500)) {
                Ok(i) => {
                    self.follow_path();
                    self.item(i);
                    // Drain what is queued before writing once.
                    while let Ok(i) = rx.try_recv() {
                        self.item(i);
                    }
                    self.flush();
                }
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                    // A quiet gateway's removed file is let go too (QA 121).
                    self.follow_path();
                    self.idle(now_secs());
                }
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        self.flush();
        self.close_pcap();
    }

    /// Nothing to write: once the file's time is up, it ends here, and the next record
    /// opens the next one (QA 57: a quiet gateway kept an empty file every
    /// `rotate_secs`); old files still expire on time.
    fn idle(&mut self, now: u64) {
        if now.saturating_sub(self.opened_at) >= self.rotate_secs {
            self.flush();
            self.file = None;
            self.close_pcap();
            self.opened_at = now;
            expire(&self.dir, now, self.retention_secs);
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
                if self.file.is_none() && self.may_open() {
                    let now = now_secs();
                    self.rotate(now, now);
                }
                let Some(p) = self.pcap.as_mut() else {
                    self.metrics.rejected_pcap_dropped.inc();
                    return;
                };
                // The file header goes with the first packet of a file still empty.
                if p.size() == 0 {
                    p.pending.extend_from_slice(&file_header(LINKTYPE_RAW));
                }
                p.newest_ms = p.newest_ms.max(ts_ms);
                let pkt = udp_packet(src, dst, &bytes);
                let (sec, usec) = ((ts_ms / 1000) as u32, (ts_ms % 1000 * 1000) as u32);
                push_record(&mut p.pending, sec, usec, &pkt, pkt.len() as u32);
                p.pending_n += 1;
            }
            Item::Finish(ack) => {
                self.flush();
                self.close_pcap();
                let _ = ack.send(());
            }
        }
    }

    fn write(&mut self, r: &Record) {
        let now = now_secs();
        // A record stamped well before the open file's name (the wall clock stepped
        // back) starts a new file: each file then holds the records from the time in
        // its name to its modification time, which is how `trace` picks files for a
        // window (QA 192 F7: records written after a step back of an hour sat in a file
        // named an hour later and were not found by time).
        let stepped_back = r.ts_ms.saturating_add(STEP_BACK_MS) < self.named_at * 1000;
        if (self
            .file
            .as_ref()
            .is_none_or(|f| f.size() >= self.rotate_bytes)
            || now.saturating_sub(self.opened_at) >= self.rotate_secs
            || stepped_back)
            && self.may_open()
        {
            self.rotate(now, now.min(r.ts_ms / 1000));
        }
        let Some(f) = self.file.as_mut() else {
            self.metrics.records_dropped.inc();
            return;
        };
        if serde_json::to_writer(&mut f.pending, r).is_ok() {
            f.pending.push(b'\n');
            f.pending_n += 1;
            f.newest_ms = f.newest_ms.max(r.ts_ms);
        }
    }

    /// Writes the batch of records and of rejected packets, each in one go.
    fn flush(&mut self) {
        let records = self.file.as_mut().map(Batched::write);
        let packets = self.pcap.as_mut().map(Batched::write);
        let mut error = None;
        // Only a write that took something is news that the disk takes writes again:
        // an empty batch (the flush at shutdown) said it while the disk was still full
        // (QA 86 F2).
        let mut wrote = false;
        match records {
            Some(Ok(n)) => {
                self.metrics.records_written.inc_by(n);
                wrote = n > 0;
            }
            Some(Err((n, e))) => {
                self.metrics.records_dropped.inc_by(n);
                error = Some(e);
            }
            None => {}
        }
        match packets {
            Some(Err((n, e))) => {
                self.metrics.rejected_pcap_dropped.inc_by(n);
                error = error.or(Some(e));
            }
            Some(Ok(n)) => wrote |= n > 0,
            None => {}
        }
        if error.is_some() || wrote {
            self.health(error.map(|e| e.to_string()));
        }
    }

    /// Whether a new file may be tried now ([`REOPEN`] after one could not be opened).
    fn may_open(&self) -> bool {
        self.reopen_at.is_none_or(|t| Instant::now() >= t)
    }

    /// Notes whether the last writes (or file opening) failed: the first failure of an
    /// episode and the end of one are logged, nothing in between.
    fn health(&mut self, error: Option<String>) {
        let now = Instant::now();
        match (error, self.failing) {
            (Some(e), None) => {
                self.failing = Some((now, now));
                tracing::warn!(dir = %self.dir.display(), error = %e, "cannot write signaling records: they are dropped and counted (sipfence_records_dropped_total) until writes succeed again");
            }
            (Some(_), Some((since, _))) => self.failing = Some((since, now)),
            (None, Some((since, last))) if now.duration_since(last) >= RECOVERED => {
                self.failing = None;
                tracing::info!(dir = %self.dir.display(), failing_for_secs = last.duration_since(since).as_secs(), "signaling records are written again");
            }
            _ => {}
        }
    }

    /// Ends the pcap of rejected calls; one that never took a packet is removed rather
    /// than left empty.
    fn close_pcap(&mut self) {
        if let Some(p) = self.pcap.take()
            && p.len == 0
        {
            let _ = std::fs::remove_file(&p.path);
        }
    }

    /// Starts the next file, opened `now` and named by `named` (seconds).
    fn rotate(&mut self, now: u64, named: u64) {
        self.flush();
        self.file = None;
        self.close_pcap();
        // Unique name even when rotating twice in one second.
        let mut name = self.dir.join(format!("records-{named}.jsonl"));
        let mut n = 1;
        while name.exists() {
            name = self.dir.join(format!("records-{named}-{n}.jsonl"));
            n += 1;
        }
        // The directory removed while running (QA 119 N2) is made again, as at start.
        let opened = Batched::open(name.clone()).or_else(|e| match e.kind() {
            std::io::ErrorKind::NotFound => {
                std::fs::create_dir_all(&self.dir)?;
                Batched::open(name.clone())
            }
            _ => Err(e),
        });
        match opened {
            Ok(f) => {
                self.file = Some(f);
                (self.opened_at, self.named_at) = (now, named);
            }
            Err(e) => {
                self.reopen_at = Some(Instant::now() + REOPEN);
                self.health(Some(format!("cannot open {}: {e}", name.display())));
                return;
            }
        }
        self.reopen_at = None;
        if self.want_pcap {
            let stem = name
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("records")
                .replace("records-", "rejected-")
                .replace(".jsonl", ".pcap");
            let path = self.dir.join(stem);
            match Batched::open(path.clone()) {
                Ok(p) => self.pcap = Some(p),
                Err(e) => self.health(Some(format!("cannot open {}: {e}", path.display()))),
            }
        }
        expire(&self.dir, now, self.retention_secs);
    }
}

/// Whether the open `file` is to be let go: it has been removed (no name left in any
/// directory), or, when `look`, `path` no longer names it (the same device and inode).
fn let_go(file: &File, path: &Path, look: bool) -> bool {
    use std::os::unix::fs::MetadataExt;
    // Not known to be gone: kept.
    let Ok(open) = file.metadata() else {
        return false;
    };
    if open.nlink() == 0 {
        return true;
    }
    if !look {
        return false;
    }
    match std::fs::metadata(path) {
        Ok(named) => (named.dev(), named.ino()) != (open.dev(), open.ino()),
        // No such file, or its directory replaced by a file (QA 121).
        Err(e) => matches!(
            e.kind(),
            std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
        ),
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

/// Deletes record files whose newest record is older than the retention period: a
/// file is kept until `retention_secs` after it was last written (its modification
/// time; the time in its name when that is later or unreadable). QA 86: deleted by the
/// time in its name, when it was opened, a file lost its newest records up to one
/// rotation before the retention a regulator asks for. A name's time still to come (a
/// clock that ran ahead when the file was opened, QA 90 N7) does not count: it would keep
/// the file for as long as the clock was ahead.
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
        let Some(opened) = opened_at(n) else { continue };
        let written = e
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_secs());
        let last = match (written, opened <= now) {
            (0, false) => continue,
            (0, true) => opened,
            (w, true) => w.max(opened),
            (w, false) => w,
        };
        if now.saturating_sub(last) > retention_secs {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decide::{Context, decide};
    use crate::policy::Policy;
    use crate::policy::rate::NoCounting;

    fn record(p: &Policy, i: u32) -> Record {
        let m = crate::sip::Message::parse(Bytes::from(format!(
            "INVITE sip:4008001234@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK{i}\r\nFrom: <sip:+8613812345678@127.0.0.1>;tag={i}\r\nTo: <sip:4008001234@127.0.0.1>\r\nCall-ID: full-{i}\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        )))
        .expect("parses");
        record_at(p, &m, now_secs() * 1000)
    }

    /// The record of `m` judged at `ms` (since the epoch) by the wall clock.
    fn record_at(p: &Policy, m: &crate::sip::Message, ms: u64) -> Record {
        let src = "127.0.0.1:5070".parse().expect("address");
        let ctx = Context {
            source: src,
            local: None,
            trunk: Some(0),
            now_ms: ms,
            wall_ms: ms,
            rates: &NoCounting,
            behaviour: &crate::behaviour::NoTracking,
        };
        Record::new(p, m, &decide(p, m, &ctx), src, ms)
    }

    /// Files of 1 GiB at most, rotated after `rotate_secs`, kept `retention_secs`.
    fn conf(rotate_secs: u64, retention_secs: u64, pcap_rejected: bool) -> RecordsConf {
        RecordsConf {
            dir: String::new(),
            rotate_bytes: 1 << 30,
            rotate_secs,
            retention_secs,
            pcap_rejected,
        }
    }

    /// A writer into `dir` (hour-long files, `pcap` of rejected calls or not) that
    /// looks at its files' paths every `look`.
    fn watching(dir: &Path, pcap: bool, look: Duration) -> Writer {
        let mut w = Writer::new(
            dir.to_path_buf(),
            &conf(3_600, 1 << 30, pcap),
            Arc::new(Metrics::new()),
        );
        w.look_every = look;
        w
    }

    /// A quiet gateway: the file whose time is up ends, and no empty one follows it
    /// until a record comes (QA 57).
    #[test]
    fn a_file_is_kept_until_its_newest_record_is_past_retention() {
        let dir = tempfile::tempdir().expect("dir");
        let now = std::time::SystemTime::now();
        let secs = |t: std::time::SystemTime| {
            t.duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs())
        };
        let ago = |s: u64| now - Duration::from_secs(s);
        // Both opened 100 s ago; one last written 20 s ago, one 60 s ago; and two
        // written 60 s ago whose names' times are still to come (a clock that was ahead).
        for (name, opened, written) in [
            ("records-{}.jsonl", secs(ago(100)), 20),
            ("rejected-{}.pcap", secs(ago(100)), 60),
            ("records-{}.jsonl", secs(now) + 60, 60),
            ("rejected-{}.pcap", secs(now) + 86_400, 60),
        ] {
            let path = dir.path().join(name.replace("{}", &opened.to_string()));
            let f = std::fs::File::create(&path).expect("file");
            f.set_modified(ago(written)).expect("mtime");
        }
        expire(dir.path(), secs(now), 50);
        let left: Vec<String> = std::fs::read_dir(dir.path())
            .expect("dir")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(left.len(), 1, "{left:?}");
        assert!(left[0].starts_with("records-"), "{left:?}");
    }

    /// The file being written removed, then the next one moved away (QA 118 F1): each
    /// time a new file takes the next records, and none is lost after the check.
    #[test]
    fn a_records_file_removed_or_moved_is_followed_by_a_new_one() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut w = watching(dir.path(), false, Duration::ZERO);
        let p = Policy::builtin().expect("built-in policy");
        let write = |w: &mut Writer, i: u32| {
            w.follow_path();
            w.item(Item::Record(Box::new(record(&p, i))));
            w.flush();
        };
        write(&mut w, 1);
        let first = record_files(dir.path()).expect("listed");
        assert_eq!(first.len(), 1);
        std::fs::remove_file(&first[0].1).expect("removed");
        write(&mut w, 2);
        let second = record_files(dir.path()).expect("listed");
        assert_eq!(second.len(), 1, "{second:?}");
        let moved = dir.path().join("elsewhere.jsonl");
        std::fs::rename(&second[0].1, &moved).expect("moved");
        write(&mut w, 3);
        write(&mut w, 4);
        let third = record_files(dir.path()).expect("listed");
        assert_eq!(third.len(), 1, "{third:?}");
        let lines = |f: &Path| std::fs::read_to_string(f).expect("read").lines().count();
        assert_eq!(lines(&moved), 1);
        assert_eq!(lines(&third[0].1), 2);
        // Untouched, the file goes on.
        write(&mut w, 5);
        assert_eq!(lines(&third[0].1), 3);
        // The whole directory removed: made again (QA 119 N2).
        std::fs::remove_dir_all(dir.path()).expect("removed");
        write(&mut w, 6);
        let fourth = record_files(dir.path()).expect("listed");
        assert_eq!(fourth.len(), 1, "{fourth:?}");
        assert_eq!(lines(&fourth[0].1), 1);
        // Replaced by a file: nowhere to write, so dropped and counted, not written
        // into the removed file (QA 121).
        std::fs::remove_dir_all(dir.path()).expect("removed");
        std::fs::write(dir.path(), "x").expect("a file in its place");
        let written = w.metrics.records_written.get();
        write(&mut w, 7);
        assert_eq!(w.metrics.records_written.get(), written);
        assert_eq!(w.metrics.records_dropped.get(), 1);
        std::fs::remove_file(dir.path()).expect("removed");
    }

    /// A removed file is seen at the next batch, however seldom the path is looked at
    /// (QA 122: the batches of the second after it went into the removed file).
    #[test]
    fn a_removed_records_file_is_seen_at_the_next_batch() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut w = watching(dir.path(), false, Duration::from_secs(3_600));
        let p = Policy::builtin().expect("built-in policy");
        for i in 0..3 {
            w.follow_path();
            w.item(Item::Record(Box::new(record(&p, i))));
            w.flush();
            for (_, f) in record_files(dir.path()).expect("listed") {
                std::fs::remove_file(f).expect("removed");
            }
        }
        w.follow_path();
        w.item(Item::Record(Box::new(record(&p, 9))));
        w.flush();
        let left = record_files(dir.path()).expect("listed");
        assert_eq!(left.len(), 1, "{left:?}");
        let text = std::fs::read_to_string(&left[0].1).expect("read");
        assert_eq!(text.lines().count(), 1, "{text}");
    }

    /// The pcap of rejected calls removed while open goes with its records file: both
    /// start anew (QA 119 N1: packets went into the removed pcap).
    #[test]
    fn a_rejected_pcap_removed_is_followed_by_a_new_one() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut w = watching(dir.path(), true, Duration::ZERO);
        let raw = |w: &mut Writer| {
            w.follow_path();
            w.item(Item::Raw {
                ts_ms: 1_000,
                src: "127.0.0.1:5070".parse().expect("address"),
                dst: "127.0.0.1:5060".parse().expect("address"),
                bytes: Bytes::from_static(b"INVITE sip:x SIP/2.0\r\n\r\n"),
            });
            w.flush();
        };
        raw(&mut w);
        let pcaps = || rejected_files(dir.path()).expect("listed");
        assert_eq!(pcaps().len(), 1);
        std::fs::remove_file(&pcaps()[0].1).expect("removed");
        raw(&mut w);
        let now = pcaps();
        assert_eq!(now.len(), 1, "{now:?}");
        // A whole pcap: its header and one packet.
        let len = std::fs::metadata(&now[0].1).expect("there").len();
        assert!(len > 24, "{len}");
    }

    /// Each file holds the records from the time in its name to its modification time,
    /// whatever the clock did (QA 192 F7): a record stamped well before its file's name
    /// (the clock went back) starts the next file, and a file holding a record stamped
    /// after now (stamped before the clock went back) is modified no earlier.
    #[test]
    fn a_file_spans_its_records_when_the_clock_went_back() {
        let dir = tempfile::tempdir().expect("temp dir");
        let p = Policy::builtin().expect("built-in policy");
        let m = crate::sip::Message::parse(Bytes::from_static(
            b"INVITE sip:4008001234@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKs\r\nFrom: <sip:+8613812345678@127.0.0.1>;tag=1\r\nTo: <sip:4008001234@127.0.0.1>\r\nCall-ID: step\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
        ))
        .expect("parses");
        let mut w = Writer::new(
            dir.path().to_path_buf(),
            &conf(3600, 86_400, false),
            Arc::new(Metrics::new()),
        );
        let now = now_secs() * 1000;
        // Stamped two hours ahead of this clock (which went back since), then an hour
        // behind it (the clock went back past the file's opening), then a few seconds
        // before that (queued a moment earlier: the same file).
        for ts in [now + 7_200_000, now - 3_600_000, now - 3_605_000] {
            w.item(Item::Record(Box::new(record_at(&p, &m, ts))));
            w.flush();
        }
        let files = record_files(dir.path()).expect("listed");
        assert_eq!(files.len(), 2, "{files:?}");
        let modified = |f: &PathBuf| {
            std::fs::metadata(f)
                .and_then(|m| m.modified())
                .expect("mtime")
                .duration_since(UNIX_EPOCH)
                .expect("after the epoch")
                .as_millis() as u64
        };
        let stamps = |f: &PathBuf| -> Vec<u64> {
            std::fs::read_to_string(f)
                .expect("read")
                .lines()
                .map(|l| {
                    serde_json::from_str::<serde_json::Value>(l).expect("json")["ts_ms"]
                        .as_u64()
                        .expect("ts")
                })
                .collect()
        };
        // Oldest name first: the file after the step, then the one before it.
        assert_eq!(stamps(&files[0].1), [now - 3_600_000, now - 3_605_000]);
        assert_eq!(files[0].0 * 1000, now - 3_600_000);
        assert_eq!(stamps(&files[1].1), [now + 7_200_000]);
        assert_eq!(files[1].0 * 1000, now);
        assert!(modified(&files[1].1) >= now + 7_200_000);
        assert!(modified(&files[0].1) >= now);
    }

    #[test]
    fn quiet_hours_leave_no_empty_files() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut w = Writer::new(
            dir.path().to_path_buf(),
            &conf(60, 1 << 30, true),
            Arc::new(Metrics::new()),
        );
        let p = Policy::builtin().expect("built-in policy");
        w.item(Item::Record(Box::new(record(&p, 1))));
        w.flush();
        let t = w.opened_at;
        for quiet in [t + 30, t + 61, t + 200, t + 3_600] {
            w.idle(quiet);
        }
        assert!(w.file.is_none());
        w.item(Item::Record(Box::new(record(&p, 2))));
        w.flush();
        let files = record_files(dir.path()).expect("listed");
        assert_eq!(files.len(), 2, "{files:?}");
        for (_, f) in &files {
            assert_eq!(std::fs::read_to_string(f).expect("read").lines().count(), 1);
        }
        // The pcaps of rejected calls that took no packet are gone.
        let pcaps = std::fs::read_dir(dir.path())
            .expect("listed")
            .filter(|e| {
                e.as_ref()
                    .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "pcap"))
            })
            .count();
        assert!(pcaps <= 1, "{pcaps}");
    }

    /// A disk that refuses writes (here /dev/full, which answers every write with
    /// ENOSPC as a full disk does): the batch's records count as dropped, not written,
    /// and the writer says so once; once writes succeed they count as written again.
    #[test]
    fn records_the_disk_refuses_are_dropped_not_written() {
        let Ok(full) = Batched::open("/dev/full".into()) else {
            eprintln!("skipped: no /dev/full here");
            return;
        };
        let dir = tempfile::tempdir().expect("temp dir");
        let metrics = Arc::new(Metrics::new());
        let mut w = Writer::new(
            dir.path().to_path_buf(),
            &conf(1 << 30, 0, false),
            metrics.clone(),
        );
        (w.file, w.opened_at) = (Some(full), now_secs());
        let p = Policy::builtin().expect("built-in policy");
        for i in 0..3 {
            w.item(Item::Record(Box::new(record(&p, i))));
        }
        w.flush();
        assert_eq!(metrics.records_written.get(), 0);
        assert_eq!(metrics.records_dropped.get(), 3);
        assert!(w.failing.is_some());
        // Long after the failure, a flush with nothing to write (the one at shutdown)
        // is no news that the disk takes writes again (QA 86 F2: it said so).
        let long_ago = Instant::now() - Duration::from_secs(30);
        w.failing = Some((long_ago, long_ago));
        w.flush();
        assert!(w.failing.is_some(), "an empty flush ended the episode");
        let now = Instant::now();
        w.failing = Some((now, now));
        // A disk with room again (the next file): written. (The episode ends once
        // writes have gone through for a while, not at the first one.)
        let now = now_secs();
        w.rotate(now, now);
        w.item(Item::Record(Box::new(record(&p, 9))));
        w.flush();
        assert_eq!(metrics.records_written.get(), 1);
        assert_eq!(metrics.records_dropped.get(), 3);
        assert!(w.failing.is_some(), "not over at the first write that fits");
        let files = record_files(dir.path()).expect("listed");
        assert_eq!(files.len(), 1);
        let text = std::fs::read_to_string(&files[0].1).expect("read");
        assert_eq!(text.lines().count(), 1);
        assert!(text.ends_with('\n') && text.contains("full-9"));

        // The pcap of rejected calls alike: a refused batch is counted and leaves
        // nothing; the next file holds whole records only, and opens.
        w.pcap = Some(Batched::open("/dev/full".into()).expect("opened above"));
        let raw = |n: u8| Item::Raw {
            ts_ms: 1_795_000_000_000 + u64::from(n),
            src: "192.0.2.1:5060".parse().expect("address"),
            dst: "192.0.2.2:5060".parse().expect("address"),
            bytes: Bytes::from(vec![b'x'; 300]),
        };
        w.item(raw(1));
        w.item(raw(2));
        w.flush();
        assert_eq!(metrics.rejected_pcap_dropped.get(), 2);
        let path = dir.path().join("rejected-test.pcap");
        w.pcap = Some(Batched::open(path.clone()).expect("opens"));
        w.item(raw(3));
        w.flush();
        w.close_pcap();
        let mut packets = 0;
        let end = crate::replay::capture::read(&path, |_| packets += 1).expect("a capture");
        assert_eq!((packets, end), (1, crate::replay::capture::End::Complete));
    }

    /// A directory where no file can be opened (read-only, or no descriptor left; here
    /// a path under a plain file): the records are dropped and counted, the failure is
    /// one episode, and no new file is tried per record (QA 44: each tried one and was
    /// logged twice). Finishing with only allowed calls leaves no empty pcap behind.
    #[test]
    fn a_directory_that_refuses_files_drops_and_counts_without_retrying_each_record() {
        let dir = tempfile::tempdir().expect("temp dir");
        let plain = dir.path().join("plain");
        std::fs::write(&plain, b"").expect("a file");
        let metrics = Arc::new(Metrics::new());
        let mut w = Writer::new(
            plain.join("records"),
            &conf(1 << 30, 0, true),
            metrics.clone(),
        );
        let p = Policy::builtin().expect("built-in policy");
        w.item(Item::Record(Box::new(record(&p, 0))));
        let retry = w.reopen_at.expect("a retry time set");
        let episode = w.failing.expect("failing");
        for i in 1..500 {
            w.item(Item::Record(Box::new(record(&p, i))));
        }
        w.flush();
        assert_eq!(
            w.reopen_at,
            Some(retry),
            "no new file tried before the retry time"
        );
        assert_eq!(w.failing.map(|f| f.0), Some(episode.0), "one episode");
        assert_eq!(metrics.records_dropped.get(), 500);
        assert_eq!(metrics.records_written.get(), 0);

        // The same writer on a directory that takes files, at shutdown with only allowed
        // calls written: the records are there, the empty pcap is not.
        w.dir = dir.path().to_path_buf();
        w.reopen_at = None;
        w.item(Item::Record(Box::new(record(&p, 700))));
        let (ack, done) = sync_channel(1);
        w.item(Item::Finish(ack));
        assert!(done.try_recv().is_ok());
        assert_eq!(metrics.records_written.get(), 1);
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .expect("listed")
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        assert!(names.iter().any(|n| n.starts_with("records-")), "{names:?}");
        assert!(
            !names.iter().any(|n| n.starts_with("rejected-")),
            "{names:?}"
        );
    }
}
