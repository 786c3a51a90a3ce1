//! `sipfence explain`: the verdict on messages in files, with the reasons.

use bytes::Bytes;
use std::io::Read;
use std::net::SocketAddr;
use std::path::PathBuf;

use crate::behaviour::local::LocalTracker;
use crate::decide::{Context, judge};
use crate::policy::Policy;
use crate::policy::rate::LocalRateCounter;
use crate::record::Record;
use crate::sip::Message;
use crate::sip::error::{ErrorKind, ParseError};
use crate::sip::rewrite::EditList;
use crate::verdict;

pub struct Args {
    pub trunk: Option<String>,
    pub source: Option<SocketAddr>,
    /// The listen address the messages arrived at (`udp:ADDR:PORT`).
    pub to: Option<String>,
    pub at_ms: Option<u64>,
    pub json: bool,
    pub show_output: bool,
    pub files: Vec<PathBuf>,
}

/// The first host address of a source range (the address itself for a host route).
fn first_host(net: std::net::IpAddr, prefix: u8) -> std::net::IpAddr {
    use std::net::IpAddr;
    match net {
        IpAddr::V4(v) if prefix < 31 => IpAddr::V4((u32::from(v) | 1).into()),
        IpAddr::V6(v) if prefix < 127 => IpAddr::V6((u128::from(v) | 1).into()),
        ip => ip,
    }
}

pub fn run(policy: &Policy, a: &Args) -> i32 {
    let trunk = match &a.trunk {
        Some(name) => match super::trunk_arg(policy, name) {
            Ok(t) => Some(t),
            Err(status) => return status,
        },
        // Neither given: judge as the first trunk, the usual case for a one-trunk file.
        None if a.source.is_none() => (!policy.trunks.is_empty()).then_some(0),
        None => None,
    };
    // Without --source, an address the trunk claims (its first source: the first host
    // of a range), so that the record does not pair the trunk with an address the live
    // proxy would refuse as an unknown source (QA 111); a trunk known by its digest
    // users alone has none to give.
    let source = a.source.unwrap_or_else(|| {
        trunk
            .and_then(|t| policy.trunks[t].sources.first())
            .map(|s| SocketAddr::new(first_host(s.net, s.prefix), s.port.unwrap_or(5060)))
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 5070)))
    });
    let local = match a
        .to
        .as_deref()
        .map(crate::policy::config::ListenSpec::parse)
    {
        None => None,
        Some(Ok(l)) => Some(l),
        Some(Err(e)) => {
            eprintln!("sipfence: --to {e}");
            return 2;
        }
    };
    // Trunks that share sources are told apart by the address the message came to:
    // without it the first in the file is taken, which the live proxy might not take.
    if trunk.is_none() && a.source.is_some() {
        let matching: Vec<&str> = policy
            .matching_trunks(&source, local.as_ref())
            .map(|i| policy.trunks[i].name.as_str())
            .collect();
        if matching.len() > 1 {
            match &local {
                None => eprintln!(
                    "sipfence: {source} is a source of several trunks ({}): judged on {}, the first; give --to (the listen address it came to) or --trunk",
                    matching.join(", "),
                    matching[0]
                ),
                // The proxy takes the first too: the policy has trunks it never reaches.
                Some(l) => eprintln!(
                    "sipfence: {source} arriving at {l} matches several trunks ({}): judged on {}, the first, as the proxy does",
                    matching.join(", "),
                    matching[0]
                ),
            }
        }
    }
    let rates = LocalRateCounter::new(100_000);
    // Several messages given in one run build up behaviour the way a call sequence
    // would: INVITEs count as attempts, responses, CANCELs and BYEs as their outcomes.
    let tracker = LocalTracker::new(65_536, 65_536).keyed(policy.callee_key);
    let mut status = 0;
    for f in &a.files {
        let bytes = match read_input(f) {
            Ok(b) => b,
            Err(e) => {
                eprintln!("{}: cannot read: {e}", f.display());
                status = 1;
                continue;
            }
        };
        let now = a.at_ms.unwrap_or_else(super::now_ms);
        if crate::replay::capture::looks_like_capture(&bytes) {
            // The same policy, so that the command can be pasted as it is.
            let config = if policy.source.starts_with("builtin:") {
                String::new()
            } else {
                format!("--config {} ", policy.source)
            };
            let hint = format!(
                "a packet capture, not a SIP message: sipfence replay {config}{}",
                f.display()
            );
            if a.json {
                println!(
                    "{}",
                    serde_json::json!({"file": f.display().to_string(), "error": hint, "verdict": "malformed"})
                );
            } else {
                println!("{}: {hint}", f.display());
            }
            status = 1;
            continue;
        }
        let (msg, note) = match parse_as_saved(bytes) {
            Ok(m) => m,
            Err((e, bytes)) => {
                let place = place_of(&bytes, e.offset as usize, e.kind);
                if a.json {
                    println!(
                        "{}",
                        serde_json::json!({"file": f.display().to_string(), "error": e.to_string(), "at": place, "verdict": "malformed"})
                    );
                } else {
                    println!("{}: malformed: {e}", f.display());
                    println!("  {place}");
                }
                status = 1;
                continue;
            }
        };
        let ctx = Context {
            source,
            local,
            trunk,
            now_ms: now,
            wall_ms: now,
            rates: &rates,
            behaviour: &tracker,
        };
        let d = judge(policy, &msg, &ctx);
        if !d.is_reject() {
            let from_core = || policy.from_core_side(&source);
            crate::decide::track_dialog(&msg, from_core, &rates, now);
        }
        if d.kind != crate::decide::Kind::Call && !d.is_reject() {
            // One source for the whole sequence: its responses are read as the core's
            // answers to its calls, what a sequence of files means.
            let from_core = !msg.is_request() || policy.speaks_for_core(&source);
            crate::behaviour::observe(&msg, from_core, &tracker, now);
        }
        let rec = Record::new(policy, &msg, &d, source, now);
        let mut out = Vec::new();
        let dropped = d.outcome == crate::decide::Outcome::Drop;
        if a.show_output
            && !dropped
            && !verdict::write_reject(policy, &msg, &d, Some(source), &mut out)
        {
            let mut edits = EditList::new();
            let from = crate::decide::kept_from(&msg, &d, &rates, now);
            verdict::add_edits(policy, &msg, &d, from.as_deref(), &mut edits);
            crate::sip::rewrite::unfold_content_length(&msg, &mut edits);
            edits.apply(msg.buf(), msg.len(), &mut out);
        }
        if a.json {
            let mut v = serde_json::to_value(&rec).unwrap_or_default();
            v["file"] = serde_json::Value::String(f.display().to_string());
            if let Some(n) = note {
                v["note"] = serde_json::Value::String(n.into());
            }
            if d.retransmission {
                v["retransmission"] = serde_json::Value::Bool(true);
            }
            if a.show_output && dropped {
                // Nothing leaves: no answer, no forwarded request.
                v["output"] = serde_json::Value::Null;
            } else if a.show_output {
                v["output"] = serde_json::Value::String(String::from_utf8_lossy(&out).into_owned());
                // A binary body (an IAM) has bytes no JSON string holds: the message
                // byte for byte, in hex, beside the text.
                if std::str::from_utf8(&out).is_err() {
                    let hex: String = out.iter().map(|b| format!("{b:02x}")).collect();
                    v["output_hex"] = serde_json::Value::String(hex);
                }
            }
            println!("{v}");
        } else {
            println!("{}:", f.display());
            if let Some(n) = note {
                println!("  note     {n}");
            }
            if d.unknown_dialog {
                println!(
                    "  note     an INVITE with a To-tag, but no dialog answered earlier in this run: judged as a new call"
                );
            }
            if d.retransmission {
                println!(
                    "  note     repeats an INVITE given earlier in this run: a retransmission, judged again but not counted again"
                );
            }
            println!(
                "  verdict  {}{}",
                rec.verdict,
                rec.code.map(|c| format!(" {c}")).unwrap_or_default()
            );
            match rec.refused {
                Some(why) => println!(
                    "  rule     - (refused by the protocol checks, before any rule: {why})"
                ),
                None => println!("  rule     {}", rec.rule.unwrap_or("-")),
            }
            if !rec.hits.is_empty() {
                println!("  matched  {}", rec.hits.join(", "));
            }
            if !rec.exempted.is_empty() {
                println!(
                    "  exempted {} (matched, not applied: a number of the call is on the exempt list)",
                    rec.exempted.join(", ")
                );
            }
            println!(
                "  trunk    {}",
                rec.trunk.as_deref().unwrap_or("(none: unknown source)")
            );
            println!("  kind     {}", rec.kind);
            // A blank number the IAM gave, beside a SIP identity that has one (QA 125:
            // `- (non-numeric)` beside `asserted=+44...` read as the SIP number's).
            let in_iam = rec.caller.is_none()
                && rec.blank.is_some()
                && rec
                    .isup
                    .as_ref()
                    .is_some_and(|i| i.rules.contains(&"blank-caller"));
            println!(
                "  caller   {} ({}{}{})  from={} asserted={}{}",
                rec.caller.as_deref().unwrap_or("-"),
                rec.class.or(rec.blank).unwrap_or("-"),
                if in_iam {
                    ": the IAM's Calling Party Number"
                } else {
                    ""
                },
                if rec.caller_flags.is_empty() {
                    String::new()
                } else {
                    format!(", {}", rec.caller_flags.join(","))
                },
                rec.from.as_deref().unwrap_or("-"),
                rec.asserted.as_deref().unwrap_or("-"),
                if rec.withheld {
                    " privacy=withheld"
                } else {
                    ""
                }
            );
            println!("  callee   {}", rec.callee.as_deref().unwrap_or("-"));
            if let Some(a) = rec.auth {
                println!("  auth     {a} (digest credentials for the trunk's realm)");
            }
            if let Some(n) = &rec.presented {
                println!(
                    "  presented {n} (beside the caller: From, a display name, P-Preferred-Identity, Remote-Party-ID)"
                );
            }
            if let Some(n) = &rec.diverted {
                println!(
                    "  diverted by {n} (Diversion / History-Info: a forwarded call; no rule reads them, the caller is judged)"
                );
            }
            if !rec.from_rules.is_empty() {
                println!(
                    "  matched on a presented number (From, P-Preferred-Identity, Remote-Party-ID or the IAM's Generic Number): {}",
                    rec.from_rules.join(", ")
                );
            }
            if let Some(a2) = &rec.asserted2 {
                println!(
                    "  asserted {a2} as well (a second P-Asserted-Identity){}",
                    if rec.asserted2_rules.is_empty() {
                        String::new()
                    } else {
                        format!("  matched on it: {}", rec.asserted2_rules.join(", "))
                    }
                );
            }
            if let Some(b) = &rec.behaviour {
                println!("  behaviour {}", b.summary());
            }
            if let Some(i) = &rec.isup {
                // A decoded IAM shows its numbers even when refused for what it presents.
                if i.called.is_some() {
                    println!(
                        "  isup     calling={} ({}, {}, {}) generic={}{} called={}{}",
                        i.calling.as_deref().unwrap_or("-"),
                        i.calling_class.unwrap_or("-"),
                        i.calling_nature.unwrap_or("-"),
                        i.calling_presentation.unwrap_or("-"),
                        i.generic.as_deref().unwrap_or("-"),
                        i.generic2
                            .as_deref()
                            .map(|g| format!(",{g}"))
                            .unwrap_or_default(),
                        i.called.as_deref().unwrap_or("-"),
                        if i.rules.is_empty() {
                            String::new()
                        } else {
                            format!("  matched on isup: {}", i.rules.join(", "))
                        }
                    );
                }
                if let Some(e) = &i.error {
                    println!("  isup     unreadable: {e}");
                }
            }
            if a.show_output && dropped {
                println!("  output:  none (dropped: no answer, nothing forwarded)");
            } else if a.show_output {
                // Byte for byte (a binary IAM included), so that it can be saved and
                // sent again, its Content-Length true.
                println!("  output:");
                use std::io::Write;
                let mut so = std::io::stdout().lock();
                let _ = so.write_all(&out);
                let _ = so.write_all(b"\n");
            }
        }
    }
    status
}

/// A file's bytes; `-` reads a message piped or pasted in (`sipfence explain - <<'EOF'`).
fn read_input(f: &std::path::Path) -> std::io::Result<Vec<u8>> {
    let mut b = Vec::new();
    crate::replay::capture::open_input(f)?.read_to_end(&mut b)?;
    Ok(b)
}

/// What `explain` says when it read a message otherwise than the bytes stood.
const LF_NOTE: &str = "the file's lines end in LF alone; read with CRLF, as the message was sent";

/// Parses a message as a person saved it. Messages copied out of logs, mails and
/// terminals have lost their CRs, so the body is shorter than the Content-Length that
/// counted them: read that way it would only say `body_truncated`. When the header
/// section has no CR at all and the body falls short, the lines are read with CRLF
/// again (the body too, if that is what makes it fit: binary SIP-I parts are left as
/// they are when they already fit). The error, if any, is the file's own, at the
/// file's own offsets.
fn parse_as_saved(bytes: Vec<u8>) -> Result<(Message, Option<&'static str>), (ParseError, Bytes)> {
    let raw = Bytes::from(bytes);
    let e = match Message::parse(raw.clone()) {
        Ok(m) => return Ok((m, None)),
        Err(e) => e,
    };
    let blank = memchr::memmem::find(&raw, b"\n\n");
    let head_len = blank.map_or(raw.len(), |p| p + 1);
    if e.kind != ErrorKind::BodyTruncated || raw[..head_len].contains(&b'\r') {
        return Err((e, raw));
    }
    let head = with_crlf(&raw[..head_len]);
    let body = blank.map_or(&raw[raw.len()..], |p| &raw[p + 2..]);
    // A SIP-I body's text (delimiters, part headers, SDP) lost its CRs, its ISUP part's
    // binary octets did not: 0x0A there is an octet of the IAM, not a line end.
    let boundary = boundary_in(&head);
    let mut bodies = vec![body.to_vec(), with_crlf(body)];
    if let Some(bd) = boundary {
        bodies.insert(1, with_crlf_but_isup(body, &bd));
    }
    for body in bodies {
        let mut b = head.clone();
        b.extend_from_slice(b"\r\n");
        b.extend_from_slice(&body);
        if let Ok(m) = Message::parse(Bytes::from(b)) {
            return Ok((m, Some(LF_NOTE)));
        }
    }
    Err((e, raw))
}

/// The Content-Type value among these header lines, if any.
fn content_type_in(head: &[u8]) -> Option<&[u8]> {
    head.split(|&c| c == b'\n').find_map(|line| {
        let colon = line.iter().position(|&c| c == b':')?;
        let name = crate::sip::lex::trim(&line[..colon]);
        (name.eq_ignore_ascii_case(b"content-type") || name.eq_ignore_ascii_case(b"c"))
            .then(|| &line[colon + 1..])
    })
}

/// The boundary of the multipart Content-Type among these header lines, if any.
fn boundary_in(head: &[u8]) -> Option<Vec<u8>> {
    content_type_in(head)
        .and_then(|ct| crate::sip::multipart::boundary(ct).ok())
        .map(<[u8]>::to_vec)
}

/// [`with_crlf`] for a multipart body under `boundary`, but for the contents of its
/// `application/ISUP` parts, which are binary and kept as they are, wherever they stand
/// (first, last, in a multipart part inside).
fn with_crlf_but_isup(body: &[u8], boundary: &[u8]) -> Vec<u8> {
    // Searched with a line end in front, so that a delimiter opening the body is found
    // like the others; the CRLF it becomes is taken off at the end.
    let ext = [&b"\n"[..], body].concat();
    let delim = [&b"\n--"[..], boundary].concat();
    let mut out = Vec::with_capacity(body.len() + body.len() / 16);
    let mut rest = &ext[..];
    let mut first = true;
    loop {
        let (piece, next) = match memchr::memmem::find(rest, &delim) {
            Some(p) => (&rest[..p], Some(&rest[p + 1..])),
            None => (rest, None),
        };
        if first {
            // The preamble, up to the first delimiter.
            out.extend_from_slice(&with_crlf(piece));
            first = false;
        } else {
            // The delimiter line, the part's headers, the blank line: text.
            let head_end = memchr::memmem::find(piece, b"\n\n").map_or(piece.len(), |p| p + 2);
            let (head, content) = piece.split_at(head_end);
            out.extend_from_slice(&with_crlf(head));
            // ISUP as the filter reads the type, so the octets it judges are kept.
            if content_type_in(head).is_some_and(crate::isup::sipi::is_isup) {
                out.extend_from_slice(content);
            } else if let Some(inner) = boundary_in(head).filter(|_| !content.is_empty()) {
                out.extend_from_slice(&with_crlf_but_isup(content, &inner));
            } else {
                out.extend_from_slice(&with_crlf(content));
            }
        }
        match next {
            Some(n) => {
                out.extend_from_slice(b"\r\n");
                rest = n;
            }
            None => break,
        }
    }
    out.split_off(2.min(out.len()))
}

fn with_crlf(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(b.len() + b.len() / 16);
    for &c in b {
        if c == b'\n' {
            out.push(b'\r');
        }
        out.push(c);
    }
    out
}

/// Where a parse error is, for a person: the line, the column and the line's text.
fn place_of(b: &[u8], offset: usize, kind: ErrorKind) -> String {
    if kind == ErrorKind::BodyTruncated {
        return "Content-Length counts more bytes than follow the blank line: the body was \
                cut, edited, or saved without its CRs"
            .into();
    }
    let at = offset.min(b.len());
    let (line, column) = crate::load_error::line_and_column(b, at);
    let start = at + 1 - column;
    let end = memchr::memchr(b'\n', &b[at..]).map_or(b.len(), |p| at + p);
    let text: String = String::from_utf8_lossy(&b[start..end])
        .trim_end_matches('\r')
        .chars()
        .take(120)
        .collect();
    format!("line {line}, column {column}: {text:?}")
}
