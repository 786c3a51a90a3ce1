//! `sipfence trace`: trace-back through the signaling records. A complaint names a
//! number and a time ("a call showing 010-1234 5678 rang me at ten this morning"); this
//! finds every decision on it in the records the gateways kept, whatever form the
//! number is written in: the query goes through the same normaliser as the calls did.

use serde_json::Value;
use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use crate::numbering::normalise;
use crate::observability::records::{record_files, rejected_files};
use crate::policy::{Policy, RuleId};
use crate::replay::capture::GZIP_MAGIC;
use crate::time::parse_time;

/// What a record's `verdict` says.
const VERDICTS: [&str; 6] = ["allow", "reject", "challenge", "rewrite", "label", "drop"];

#[derive(clap::Args)]
pub struct Args {
    /// The policy whose `[records] dir` to search and whose plan reads the numbers.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// The records directory (default: the policy's `[records] dir`); several, one per
    /// gateway (copied to one host), are searched as one, each row naming its own.
    #[arg(long)]
    pub dir: Vec<PathBuf>,
    /// A calling number (judged, From, asserted, or the IAM's calling or generic
    /// number); `+86170*` for a segment.
    #[arg(long)]
    pub caller: Option<String>,
    /// A called number; `+86138*` for a segment.
    #[arg(long)]
    pub callee: Option<String>,
    #[arg(long)]
    pub call_id: Option<String>,
    /// From this time: Unix seconds or RFC 3339 (`2026-11-30T10:00:00+08:00`; UTC
    /// without an offset).
    #[arg(long)]
    pub since: Option<String>,
    /// Up to this time (same forms).
    #[arg(long)]
    pub until: Option<String>,
    #[arg(long)]
    pub trunk: Option<String>,
    /// allow, reject, challenge, rewrite, label or drop; or a response code (403).
    #[arg(long)]
    pub verdict: Option<String>,
    /// A rule that fired, matched (monitor-only included) or was exempted.
    #[arg(long)]
    pub rule: Option<String>,
    /// Search the records of every gateway, in the shared Redis stream, instead of
    /// this one's files (URL, or the policy's `[redis] url` when none is given).
    #[arg(long, num_args = 0..=1, default_missing_value = "", conflicts_with = "dir")]
    pub redis: Option<String>,
    /// The gateways' `[redis] prefix`, when it is not the policy's (or the default
    /// `sipfence` without a policy).
    #[arg(long, requires = "redis")]
    pub prefix: Option<String>,
    /// Also write the raw requests of the matching rejected calls (kept with
    /// `[records] pcap_rejected`) to this pcap: the signaling as evidence.
    #[arg(long, conflicts_with = "redis")]
    pub write_pcap: Option<PathBuf>,
    /// The matching records as stored, one JSON line each.
    #[arg(long)]
    pub json: bool,
}

/// A number to look for: one number, or a segment (`+86170*`), in E.164.
#[derive(Debug, Clone, PartialEq, Eq)]
enum NumberQuery {
    Exact(String),
    Segment(String),
}

impl NumberQuery {
    fn parse(q: &str, home_cc: &[u8]) -> Result<NumberQuery, String> {
        // Typed by a person: "010 1234 5678" is a number too.
        let typed: String = q.chars().filter(|c| !c.is_whitespace()).collect();
        let (digits, segment) = match typed.strip_suffix('*') {
            Some(p) => (p, true),
            None => (typed.as_str(), false),
        };
        // A number, or a sip/sips/tel URI as a header carries it: read as `number` does.
        // A segment is read as a list's segment is (`86170*` in international form).
        // (A segment is never a URI: whatever is not one is read as a list reads it.)
        let n = if segment && !digits.contains(':') {
            crate::numbering::normalise_prefix(digits.as_bytes(), home_cc)
        } else {
            super::number::read_number_as(home_cc, digits)
        }
        .map_err(|e| format!("number '{q}': not a number ({})", e.as_str()))?;
        Ok(if segment {
            NumberQuery::Segment(n.e164())
        } else {
            NumberQuery::Exact(n.e164())
        })
    }

    fn matches(&self, e164: &str) -> bool {
        match self {
            NumberQuery::Exact(n) => e164 == n,
            NumberQuery::Segment(p) => e164.starts_with(p.as_str()),
        }
    }
}

/// What a record must show to be printed.
#[derive(Default)]
struct Filter {
    caller: Option<NumberQuery>,
    callee: Option<NumberQuery>,
    call_id: Option<String>,
    since_ms: Option<u64>,
    until_ms: Option<u64>,
    trunk: Option<String>,
    verdict: Option<String>,
    rule: Option<String>,
    home_cc: Vec<u8>,
}

impl Filter {
    /// A number the record holds, in E.164: stored so when it was judged, or a user part
    /// as presented (From, P-Asserted-Identity), read through the normaliser now.
    fn e164(&self, v: &Value) -> Option<String> {
        let s = v.as_str()?;
        if s.starts_with('+') {
            return Some(s.to_string());
        }
        normalise(s.as_bytes(), &self.home_cc, None)
            .ok()
            .map(|n| n.e164())
    }

    /// Whether the record `r` is asked for; `added_ms`, when Redis added it to the
    /// shared stream.
    fn keeps(&self, r: &Value, added_ms: Option<u64>) -> bool {
        let ts = r["ts_ms"].as_u64().unwrap_or(0);
        let within =
            |t: u64| self.since_ms.is_none_or(|s| t >= s) && self.until_ms.is_none_or(|u| t <= u);
        // A record stamped far from when Redis took it was stamped by a gateway whose
        // clock was off (QA 192 F7): the fleet's common clock, Redis's, says when it
        // was, as well as its own.
        let skewed = added_ms.is_some_and(|a| a.abs_diff(ts) > SLACK_MS);
        if !(within(ts) || skewed && added_ms.is_some_and(within)) {
            return false;
        }
        let is = |field: &str, want: &Option<String>| {
            want.as_ref()
                .is_none_or(|w| r[field].as_str().is_some_and(|v| v.eq_ignore_ascii_case(w)))
        };
        // Calls from no trunk's sources: `none`, as the metrics name them (QA 57).
        let trunk = match self.trunk.as_deref() {
            Some(t) if t.eq_ignore_ascii_case("none") => r["trunk"].is_null(),
            _ => is("trunk", &self.trunk),
        };
        // Call-IDs compare exactly (RFC 3261 20.8); names and verdicts in any case.
        if self
            .call_id
            .as_ref()
            .is_some_and(|id| r["call_id"].as_str() != Some(id.as_str()))
            || !trunk
        {
            return false;
        }
        if !is("verdict", &self.verdict) && !self.code_matches(r) {
            return false;
        }
        if let Some(rule) = &self.rule {
            let fired = r["rule"].as_str() == Some(rule.as_str());
            let matched = ["hits", "from_rules", "asserted2_rules", "exempted"]
                .iter()
                .any(|k| list_has(&r[*k], rule))
                || list_has(&r["isup"]["rules"], rule);
            if !fired && !matched {
                return false;
            }
        }
        if let Some(q) = &self.caller {
            // Every number the call presented or asserted as its caller: the one judged,
            // From, the number presented beside them (a display name's, P-Preferred-
            // Identity's), the asserted identities, the IAM's calling and generic numbers.
            let mut shown = [
                &r["caller"],
                &r["from"],
                &r["presented"],
                &r["asserted"],
                &r["asserted2"],
                &r["isup"]["calling"],
                &r["isup"]["generic"],
            ]
            .into_iter()
            .filter_map(|v| self.e164(v));
            if !shown.any(|n| q.matches(&n)) {
                return false;
            }
        }
        if let Some(q) = &self.callee {
            let shown = [&r["callee"], &r["isup"]["called"]];
            if !shown
                .into_iter()
                .filter_map(|v| self.e164(v))
                .any(|n| q.matches(&n))
            {
                return false;
            }
        }
        true
    }

    /// Whether the `i`th of a directory's files (oldest first, by the time in their
    /// names) can hold a record of the window, give or take [`SLACK_MS`]. A file holds
    /// the records from the time in its name to its modification time: the writer
    /// starts a new file when the clock went back, and keeps the time a file was last
    /// written at least that of its newest record (QA 192 F7: by the next file's name,
    /// records written after a step back sat outside their file's span). Without a
    /// modification time, the next file's name ends the span, as it used to.
    fn may_hold(&self, files: &[(u64, PathBuf)], i: usize) -> bool {
        let named = files[i].0 * 1000;
        let ends = std::fs::metadata(&files[i].1)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| named.max(d.as_millis() as u64))
            .or_else(|| files.get(i + 1).map(|(t, _)| t * 1000));
        !(self
            .until_ms
            .is_some_and(|u| named > u.saturating_add(SLACK_MS))
            || self
                .since_ms
                .zip(ends)
                .is_some_and(|(s, e)| e.saturating_add(SLACK_MS) < s))
    }

    /// `--verdict 403`: the response code, for those who think in codes.
    fn code_matches(&self, r: &Value) -> bool {
        self.verdict
            .as_deref()
            .and_then(|v| v.parse::<u64>().ok())
            .is_some_and(|c| r["code"].as_u64() == Some(c))
    }
}

fn list_has(v: &Value, name: &str) -> bool {
    v.as_array()
        .is_some_and(|a| a.iter().any(|x| x.as_str() == Some(name)))
}

fn build(policy: &Policy, a: &Args) -> Result<Filter, String> {
    let home_cc = policy.plan.country().to_vec();
    let number = |q: &Option<String>| {
        q.as_deref()
            .map(|q| NumberQuery::parse(q, &home_cc))
            .transpose()
    };
    let time = |t: &Option<String>| t.as_deref().map(parse_time).transpose();
    let f = Filter {
        caller: number(&a.caller)?,
        callee: number(&a.callee)?,
        call_id: a.call_id.clone(),
        since_ms: time(&a.since)?,
        until_ms: time(&a.until)?,
        trunk: a.trunk.clone(),
        verdict: a.verdict.clone(),
        rule: a.rule.clone(),
        home_cc: home_cc.clone(),
    };
    // An empty window matches nothing, which would look like an answer too (QA 43).
    if let (Some(s), Some(u)) = (f.since_ms, f.until_ms)
        && s > u
    {
        return Err(format!(
            "--since {} is later than --until {}: no time is in between",
            a.since.as_deref().unwrap_or_default(),
            a.until.as_deref().unwrap_or_default()
        ));
    }
    // A misspelt rule or verdict would match nothing and look like an answer.
    if let Some(r) = &a.rule
        && !RuleId::ORDER.iter().any(|k| k.as_str() == r)
    {
        let names: Vec<&str> = RuleId::ORDER.iter().map(|k| k.as_str()).collect();
        return Err(format!("no rule named '{r}' (rules: {})", names.join(", ")));
    }
    if let Some(v) = &a.verdict
        && !VERDICTS.iter().any(|k| k.eq_ignore_ascii_case(v))
        && !v.parse::<u16>().is_ok_and(|c| (100..=699).contains(&c))
    {
        return Err(format!(
            "verdict '{v}': expected {} or a response code (403)",
            VERDICTS.join(", ")
        ));
    }
    if let Some(t) = &a.trunk
        && policy.trunk_by_name(t).is_none()
        && !t.eq_ignore_ascii_case("none")
    {
        // Records may be older than the policy: a warning, not a refusal.
        eprintln!("sipfence: note: the policy has no trunk named '{t}'");
    }
    Ok(f)
}

/// Reading a record file: plain, or gzip-compressed by log rotation (told by its magic
/// bytes, as captures are).
fn open(path: &Path) -> std::io::Result<Box<dyn BufRead>> {
    let mut f = BufReader::new(std::fs::File::open(path)?);
    Ok(if f.fill_buf()?.starts_with(&GZIP_MAGIC) {
        Box::new(BufReader::new(flate2::bufread::MultiGzDecoder::new(f)))
    } else {
        Box::new(f)
    })
}

/// Prints the records the filter keeps, and counts.
struct Printer<'f> {
    filter: &'f Filter,
    json: bool,
    /// Records from the shared stream carry the gateway that decided them.
    gateways: bool,
    matched: u64,
    unreadable: u64,
    /// Parts of the window the search could not read (records lost to the stream).
    gaps: u64,
    /// Rows held to be printed in time order at the end (several directories, each in
    /// its own order), with their times.
    held: Option<Vec<(u64, String)>>,
    /// Call-IDs of the matching records, kept when their packets are wanted.
    call_ids: Option<HashSet<String>>,
}

impl Printer<'_> {
    fn header(&self) {
        if !self.json {
            let gw = if self.gateways { "gateway    " } else { "" };
            println!("{gw}{}", crate::record::TABLE_HEADER);
        }
    }

    /// One stored record; `place` names it when it cannot be read; `added_ms`, when
    /// Redis added it to the shared stream.
    fn line(
        &mut self,
        gw: Option<&str>,
        added_ms: Option<u64>,
        line: &[u8],
        place: &dyn Fn() -> String,
    ) {
        let Ok(mut r) = serde_json::from_slice::<Value>(line) else {
            // The last line of a file cut by a crash, or something that is no record.
            if self.unreadable < 5 {
                eprintln!("sipfence: {}: not a record (JSON), skipped", place());
            }
            self.unreadable += 1;
            return;
        };
        if !self.filter.keeps(&r, added_ms) {
            return;
        }
        self.matched += 1;
        if let (Some(ids), Some(id)) = (&mut self.call_ids, r["call_id"].as_str()) {
            ids.insert(id.to_string());
        }
        let ts = r["ts_ms"].as_u64().unwrap_or(0);
        if self.json {
            let text = match gw {
                Some(g) if r.is_object() => {
                    r["gw"] = Value::String(g.to_string());
                    r.to_string()
                }
                _ => String::from_utf8_lossy(line).into_owned(),
            };
            self.emit(ts, text);
            return;
        }
        let s = |k: &str| r[k].as_str();
        let row = crate::record::table_row(
            ts,
            s("call_id").unwrap_or("-"),
            s("caller").or(s("blank")),
            s("callee"),
            s("trunk"),
            s("verdict").unwrap_or("-"),
            r["code"].as_u64().and_then(|c| u16::try_from(c).ok()),
            crate::record::rule_shown(s("rule"), s("refused"), s("retry").is_some()),
        );
        let isup = crate::record::isup_shown(
            s("rule"),
            r["isup"]["calling"].as_str(),
            r["isup"]["rules"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str),
        );
        let row = format!("{row}{isup}");
        let text = match gw {
            Some(g) => format!("{g:<10} {row}"),
            None => row,
        };
        self.emit(ts, text);
    }

    fn emit(&mut self, ts: u64, text: String) {
        match &mut self.held {
            Some(rows) => rows.push((ts, text)),
            None => println!("{text}"),
        }
    }

    /// The held rows, oldest first (a stable sort: each directory's own order kept
    /// within a millisecond).
    fn flush(&mut self) {
        if let Some(mut rows) = self.held.take() {
            rows.sort_by_key(|r| r.0);
            for (_, text) in rows {
                println!("{text}");
            }
        }
    }

    fn unreadable_note(&self) -> String {
        if self.unreadable > 0 {
            format!(" ({} lines unreadable)", self.unreadable)
        } else {
            String::new()
        }
    }
}

/// A file's name and modification time, and the stream's entries' IDs, are a moment
/// before or after the times of the records they hold.
const SLACK_MS: u64 = 60_000;

/// This gateway's record files, skipping those whose span cannot meet the window.
fn from_files(dir: &Path, gw: Option<&str>, out: &mut Printer<'_>) -> Result<String, String> {
    let files = record_files(dir).map_err(|e| format!("{}: cannot read: {e}", dir.display()))?;
    let f = out.filter;
    let mut searched = 0usize;
    for (i, (_, path)) in files.iter().enumerate() {
        if !f.may_hold(&files, i) {
            continue;
        }
        let reader = match open(path) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("sipfence: {}: cannot read: {e}", path.display());
                continue;
            }
        };
        searched += 1;
        for (n, line) in reader.split(b'\n').enumerate() {
            let line = match line {
                Ok(l) => l,
                Err(e) => {
                    eprintln!("sipfence: {}:{}: {e}", path.display(), n + 1);
                    out.unreadable += 1;
                    break;
                }
            };
            if !line.is_empty() {
                out.line(gw, None, &line, &|| format!("{}:{}", path.display(), n + 1));
            }
        }
    }
    Ok(format!(
        "in {searched} of {} record files in {}",
        files.len(),
        dir.display()
    ))
}

/// The stream every gateway writes its records to (`[redis] records_stream`), read
/// over the window only (entry IDs are times).
fn from_stream(
    policy: &Policy,
    url: &str,
    prefix: Option<&str>,
    out: &mut Printer<'_>,
) -> Result<String, String> {
    let conf = &policy.redis;
    if conf.records_stream.is_empty() {
        return Err("the policy's [redis] records_stream is empty: no shared records".into());
    }
    let prefix = prefix.unwrap_or(&conf.prefix);
    let redis = crate::cluster::Redis::open(
        url,
        prefix,
        conf.timeout_ms.max(5_000),
        conf.list_timeout_ms,
    )?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("runtime: {e}"))?;
    let f = out.filter;
    let from = f
        .since_ms
        .map_or("-".to_string(), |s| s.saturating_sub(SLACK_MS).to_string());
    let to = f
        .until_ms
        .map_or("+".to_string(), |u| u.saturating_add(SLACK_MS).to_string());
    let key = redis.key(&conf.records_stream);
    let mut k = 0u64;
    // What the stream does not hold: each gateway's records lost in the window (an
    // outage, a full queue), and what is older than its first entry (trimmed, or lost
    // with Redis's data). A search over such a gap must not read as "no such call" (QA
    // 153: 2,258 records lost in an outage, "0 records matched" and exit 1).
    let first = rt.block_on(crate::cluster::stream::first_ms(
        &redis,
        &conf.records_stream,
    ))?;
    let mut lost: Vec<(String, u64, u64, u64)> = vec![];
    let window =
        |a: u64, b: u64| f.since_ms.is_none_or(|s| b >= s) && f.until_ms.is_none_or(|u| a <= u);
    use crate::cluster::stream::{Entry, LOST_SUFFIX, read_range};
    let n = rt.block_on(read_range(
        &redis,
        &conf.records_stream,
        &from,
        &to,
        |gw, entry| {
            if let Entry::Record { json, added_ms } = entry {
                k += 1;
                out.line(Some(gw), Some(added_ms), json.as_bytes(), &|| {
                    format!("{key} entry {k}")
                });
            }
        },
    ))?;
    let losses = format!("{}{LOST_SUFFIX}", conf.records_stream);
    rt.block_on(read_range(&redis, &losses, "-", "+", |gw, entry| {
        if let Entry::Lost { n, since_ms, to_ms } = entry
            && window(since_ms, to_ms)
        {
            lost.push((gw.to_string(), n, since_ms, to_ms));
        }
    }))?;
    let when = crate::time::rfc3339;
    for (gw, n, a, b) in &lost {
        out.gaps += 1;
        eprintln!(
            "sipfence: warning: gateway {gw} could not write {n} records to the stream between {} and {} (Redis unreachable, or its queue full): they are in its record files only (trace --dir on that gateway)",
            when(*a),
            when(*b)
        );
    }
    match (first, f.since_ms) {
        (Some(t), Some(since)) if t > since => {
            out.gaps += 1;
            eprintln!(
                "sipfence: warning: the stream begins at {}, after --since: older records were trimmed (records_maxlen) or lost with Redis's data, and are in the gateways' record files only (trace --dir on each)",
                when(t)
            );
        }
        (None, _) => {
            out.gaps += 1;
            eprintln!(
                "sipfence: warning: the stream is empty: records are in the gateways' record files only (trace --dir on each)"
            );
        }
        _ => {}
    }
    Ok(format!(
        "in {n} stream entries of {key} at {}{}",
        crate::cluster::url_for_people(url),
        first.map_or(String::new(), |t| format!(
            ", which holds records from {}",
            when(t)
        ))
    ))
}

/// Copies the packets of the matching calls out of the `rejected-*.pcap` files whose
/// span can meet the window: the signaling itself, as evidence. Returns what it wrote.
fn write_rejected(
    dirs: &[PathBuf],
    f: &Filter,
    ids: &HashSet<String>,
    to: &Path,
) -> Result<String, String> {
    use crate::replay::{capture, net, pcapout::PcapWriter};
    let mut w =
        PcapWriter::create(to).map_err(|e| format!("{}: cannot write: {e}", to.display()))?;
    let mut decoder = net::Decoder::default();
    let mut calls = HashSet::new();
    for dir in dirs {
        let files =
            rejected_files(dir).map_err(|e| format!("{}: cannot read: {e}", dir.display()))?;
        for (i, (_, path)) in files.iter().enumerate() {
            if !f.may_hold(&files, i) {
                continue;
            }
            let read = capture::read(path, |p| {
                let Some(seg) = decoder.decode(p.linktype, p.data, p.ts_ms) else {
                    return;
                };
                // The files hold what the proxy wrote: IP/UDP packets, one request each.
                let net::Payload::Datagram(d) = &seg.payload else {
                    return;
                };
                let Some(start) = net::find_sip_start(d) else {
                    return;
                };
                let Ok(msg) = crate::sip::Message::parse(bytes::Bytes::from(d[start..].to_vec()))
                else {
                    return;
                };
                let id = String::from_utf8_lossy(msg.call_id());
                if ids.contains(id.as_ref())
                    && w.write(p.linktype, p.ts_sec, p.ts_usec, p.data, p.orig_len)
                        .is_ok()
                {
                    calls.insert(id.into_owned());
                }
            });
            if let Err(e) = read {
                eprintln!("sipfence: {}: {e}", path.display());
            }
        }
    }
    let written = w.written;
    w.finish()
        .map_err(|e| format!("{}: cannot write: {e}", to.display()))?;
    Ok(format!(
        "{written} packets of {} rejected calls written to {}",
        calls.len(),
        to.display()
    ))
}

/// Exit status as grep's: 0 when a record matched, 1 when none did, 2 on an error; 3
/// when none did but the stream searched misses records of the window (warned of).
pub fn run(policy: &Policy, a: &Args) -> i32 {
    let filter = match build(policy, a) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("sipfence: {e}");
            return 2;
        }
    };
    let mut out = Printer {
        filter: &filter,
        json: a.json,
        gateways: a.redis.is_some() || a.dir.len() > 1,
        matched: 0,
        unreadable: 0,
        gaps: 0,
        held: (a.dir.len() > 1).then(Vec::new),
        call_ids: a.write_pcap.as_ref().map(|_| HashSet::new()),
    };
    let searched = match &a.redis {
        Some(url) => {
            let url = if url.is_empty() {
                &policy.redis.url
            } else {
                url
            };
            if url.is_empty() {
                eprintln!("sipfence: no Redis: give --redis URL or [redis] url in the policy");
                return 2;
            }
            out.header();
            from_stream(policy, url, a.prefix.as_deref(), &mut out)
        }
        None => {
            let dirs = match (a.dir.is_empty(), policy.records.dir.as_str()) {
                (false, _) => {
                    // One directory named twice (by two paths) is searched once.
                    let mut seen = HashSet::new();
                    let mut dirs = vec![];
                    for d in &a.dir {
                        if seen.insert(std::fs::canonicalize(d).unwrap_or_else(|_| d.clone())) {
                            dirs.push(d.clone());
                        } else {
                            eprintln!("sipfence: {} is given twice: searched once", d.display());
                        }
                    }
                    dirs
                }
                (true, "") => {
                    eprintln!(
                        "sipfence: no records: give --dir, --redis, or a --config whose [records] dir is set"
                    );
                    return 2;
                }
                (true, d) => vec![PathBuf::from(d)],
            };
            out.header();
            let mut searched = Ok(vec![]);
            for dir in &dirs {
                let gw = dir.display().to_string();
                let gw = (a.dir.len() > 1).then_some(gw.as_str());
                searched = searched.and_then(|mut all: Vec<String>| {
                    all.push(from_files(dir, gw, &mut out)?);
                    Ok(all)
                });
            }
            out.flush();
            let searched = searched.map(|all| all.join(", "));
            if let (Ok(_), Some(to), Some(ids)) = (&searched, &a.write_pcap, &out.call_ids) {
                match write_rejected(&dirs, &filter, ids, to) {
                    Ok(what) => eprintln!("sipfence: {what}"),
                    Err(e) => {
                        eprintln!("sipfence: {e}");
                        return 2;
                    }
                }
            }
            searched
        }
    };
    match searched {
        Ok(what) => {
            eprintln!(
                "sipfence: {} record{} matched {what}{}",
                out.matched,
                if out.matched == 1 { "" } else { "s" },
                out.unreadable_note()
            );
            match (out.matched, out.gaps) {
                (1.., _) => 0,
                (0, 0) => 1,
                // Nothing found where records are missing: no proof of no call.
                (0, 1..) => 3,
            }
        }
        Err(e) => {
            eprintln!("sipfence: {e}");
            2
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `--trunk none` finds the calls from no trunk's sources, as the metrics name them
    /// (QA 57: they are recorded with no trunk, and nothing matched); a name finds its
    /// trunk's, in any case.
    #[test]
    fn trunk_none_is_no_trunk() {
        let rec = |trunk: Value| serde_json::json!({ "ts_ms": 1, "trunk": trunk });
        let f = |t: &str| Filter {
            trunk: Some(t.into()),
            ..Filter::default()
        };
        assert!(f("none").keeps(&rec(Value::Null), None));
        assert!(f("NONE").keeps(&rec(Value::Null), None));
        assert!(!f("none").keeps(&rec("intl".into()), None));
        assert!(f("Intl").keeps(&rec("intl".into()), None));
        assert!(!f("intl").keeps(&rec(Value::Null), None));
    }

    #[test]
    fn numbers_are_asked_for_in_any_form() {
        let cc = b"86";
        for q in [
            "+861012345678",
            "01012345678",
            "861012345678",
            "0086 10 1234 5678",
            "010-1234-5678",
        ] {
            assert_eq!(
                NumberQuery::parse(q, cc),
                Ok(NumberQuery::Exact("+861012345678".into())),
                "{q}"
            );
        }
        let seg = NumberQuery::parse("+86170*", cc).unwrap();
        assert_eq!(seg, NumberQuery::Segment("+86170".into()));
        assert!(seg.matches("+8617012345678"));
        assert!(!seg.matches("+8613812345678"));
        assert!(NumberQuery::parse("anonymous", cc).is_err());
        // A segment in the international form without '+', as a list writes one.
        let seg = NumberQuery::parse("86170*", cc).unwrap();
        assert_eq!(seg, NumberQuery::Segment("+86170".into()));
        // With separators, as lists accept them.
        for q in [
            "86-170*",
            "(86)170*",
            "86 170*",
            "86.170-9*",
            "８６１７０*",
            "86\u{2010}170*",
        ] {
            let seg = NumberQuery::parse(q, cc).unwrap();
            assert!(
                seg == NumberQuery::Segment("+86170".into())
                    || seg == NumberQuery::Segment("+861709".into()),
                "{q}: {seg:?}"
            );
        }
    }

    /// A call is found by every number it showed as its caller, the one a display name
    /// presented included (what the callee saw, and what a complaint quotes).
    #[test]
    fn a_call_is_found_by_the_number_it_presented() {
        let f = |q: &str| Filter {
            caller: Some(NumberQuery::parse(q, b"86").unwrap()),
            home_cc: b"86".to_vec(),
            ..Filter::default()
        };
        let r = serde_json::json!({
            "ts_ms": 1, "caller": "+864008001234", "from": "4008001234",
            "presented": "+8695588", "verdict": "allow"
        });
        assert!(f("95588").keeps(&r, None));
        assert!(f("4008001234").keeps(&r, None));
        assert!(!f("95599").keeps(&r, None));
    }
}
