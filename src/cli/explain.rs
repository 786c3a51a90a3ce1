//! `sipfence explain`: the verdict on messages in files, with the reasons.

use bytes::Bytes;
use std::net::SocketAddr;
use std::path::PathBuf;

use crate::behaviour::local::LocalTracker;
use crate::decide::{Context, judge};
use crate::policy::Policy;
use crate::policy::rate::LocalRateCounter;
use crate::record::Record;
use crate::sip::Message;
use crate::sip::rewrite::EditList;
use crate::verdict;

pub struct Args {
    pub trunk: Option<String>,
    pub source: Option<SocketAddr>,
    pub at_ms: Option<u64>,
    pub json: bool,
    pub show_output: bool,
    pub files: Vec<PathBuf>,
}

pub fn run(policy: &Policy, a: &Args) -> i32 {
    let trunk = match &a.trunk {
        Some(name) => match policy.trunk_by_name(name) {
            Some(t) => Some(t),
            None => {
                eprintln!(
                    "sipfence: no trunk named '{name}' (have: {})",
                    policy
                        .trunks
                        .iter()
                        .map(|t| t.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                );
                return 2;
            }
        },
        // Neither given: judge as the first trunk, the usual case for a one-trunk file.
        None if a.source.is_none() => (!policy.trunks.is_empty()).then_some(0),
        None => None,
    };
    let source = a
        .source
        .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 5070)));
    let rates = LocalRateCounter::new(100_000);
    // Several messages given in one run build up behaviour the way a call sequence
    // would: INVITEs count as attempts, responses, CANCELs and BYEs as their outcomes.
    let tracker = LocalTracker::new(65_536, 65_536);
    let mut status = 0;
    for f in &a.files {
        let bytes = match std::fs::read(f) {
            Ok(b) => b,
            Err(e) => {
                eprintln!("{}: cannot read: {e}", f.display());
                status = 1;
                continue;
            }
        };
        let now = a.at_ms.unwrap_or_else(super::now_ms);
        if crate::replay::capture::looks_like_capture(&bytes) {
            let hint = format!(
                "a packet capture, not a SIP message: sipfence replay {}",
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
        let msg = match Message::parse(Bytes::from(bytes)) {
            Ok(m) => m,
            Err(e) => {
                if a.json {
                    println!(
                        "{}",
                        serde_json::json!({"file": f.display().to_string(), "error": e.to_string(), "verdict": "malformed"})
                    );
                } else {
                    println!("{}: malformed: {e}", f.display());
                }
                status = 1;
                continue;
            }
        };
        let ctx = Context {
            source,
            local: None,
            trunk,
            now_ms: now,
            rates: &rates,
            behaviour: &tracker,
        };
        let d = judge(policy, &msg, &ctx);
        if d.kind != crate::decide::Kind::Call && !d.is_reject() {
            crate::behaviour::observe(&msg, &tracker, now);
        }
        let rec = Record::new(policy, &msg, &d, source, now);
        let mut out = Vec::new();
        let dropped = d.outcome == crate::decide::Outcome::Drop;
        if a.show_output && !dropped && !verdict::write_reject(policy, &msg, &d, &mut out) {
            let mut edits = EditList::new();
            verdict::add_edits(policy, &msg, &d, &mut edits);
            edits.apply(msg.buf(), msg.len(), &mut out);
        }
        if a.json {
            let mut v = serde_json::to_value(&rec).unwrap_or_default();
            v["file"] = serde_json::Value::String(f.display().to_string());
            if a.show_output && dropped {
                // Nothing leaves: no answer, no forwarded request.
                v["output"] = serde_json::Value::Null;
            } else if a.show_output {
                v["output"] = serde_json::Value::String(String::from_utf8_lossy(&out).into_owned());
            }
            println!("{v}");
        } else {
            println!("{}:", f.display());
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
            println!(
                "  trunk    {}",
                rec.trunk.as_deref().unwrap_or("(none: unknown source)")
            );
            println!("  kind     {}", rec.kind);
            println!(
                "  caller   {} ({}{})  from={} asserted={}{}",
                rec.caller.as_deref().unwrap_or("-"),
                rec.class.or(rec.blank).unwrap_or("-"),
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
                match &i.error {
                    Some(e) => println!("  isup     unreadable: {e}"),
                    None => println!(
                        "  isup     calling={} ({}, {}, {}) generic={} called={}{}",
                        i.calling.as_deref().unwrap_or("-"),
                        i.calling_class.unwrap_or("-"),
                        i.calling_nature.unwrap_or("-"),
                        i.calling_presentation.unwrap_or("-"),
                        i.generic.as_deref().unwrap_or("-"),
                        i.called.as_deref().unwrap_or("-"),
                        if i.rules.is_empty() {
                            String::new()
                        } else {
                            format!("  matched on isup: {}", i.rules.join(", "))
                        }
                    ),
                }
            }
            if a.show_output && dropped {
                println!("  output:  none (dropped: no answer, nothing forwarded)");
            } else if a.show_output {
                println!("  output:\n{}", String::from_utf8_lossy(&out));
            }
        }
    }
    status
}
