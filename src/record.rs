//! The signaling record of one decision: what `explain` prints, what replay lists and
//! what the record writer keeps for trace-back. One shape everywhere.

use serde::Serialize;
use std::net::SocketAddr;

use crate::behaviour::Features;
use crate::decide::{Decision, Kind, Outcome};
use crate::identity::{Party, uri_number};
use crate::policy::Policy;
use crate::sip::{Message, Span};

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Record {
    /// Unix time, milliseconds.
    pub ts_ms: u64,
    pub trunk: Option<String>,
    pub source: String,
    pub kind: &'static str,
    pub method: String,
    pub call_id: String,
    /// From user part as presented.
    pub from: Option<String>,
    /// Asserted identity user part (PAI / screened RPID).
    pub asserted: Option<String>,
    pub withheld: bool,
    /// The number judged, in E.164.
    pub caller: Option<String>,
    pub class: Option<&'static str>,
    pub caller_flags: Vec<&'static str>,
    pub blank: Option<&'static str>,
    pub callee: Option<String>,
    pub verdict: &'static str,
    pub code: Option<u16>,
    pub rule: Option<&'static str>,
    /// Every rule that matched (monitor-only and labels included).
    pub hits: Vec<&'static str>,
    /// Rules that matched a number on the exempt list and were not applied.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub exempted: Vec<&'static str>,
    /// Enterprise trunks: rules that matched on a number presented beside a different
    /// caller (From's URI or display name, P-Preferred-Identity, an unscreened
    /// Remote-Party-ID, the IAM's Generic Number), which is judged too.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub from_rules: Vec<&'static str>,
    /// A number presented beside the caller's that is not the caller's, in E.164: the
    /// one judged on an enterprise trunk, else the one a display name or another
    /// identity header shows (what `generic-number` deletes), so that a decision on a
    /// number read out of a name can be seen.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub presented: Option<String>,
    /// A second asserted identity naming another number (E.164), judged too, and the
    /// rules it made match.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub asserted2: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub asserted2_rules: Vec<&'static str>,
    /// A forwarded call: who forwarded it, read from the first Diversion value (the
    /// latest redirection, RFC 5806), else the first History-Info entry (the target
    /// first called, RFC 7044); in E.164 when it reads as a number of the plan, else as
    /// written.
    /// No rule judges it (QA 111: a refused forwarded call read as any refusal).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub diverted: Option<String>,
    /// SIP-I: the numbers of the ISUP IAM, and the rules its calling number made match.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub isup: Option<IsupRecord>,
    /// On a trunk with digest authentication: ok, missing, stale, invalid, locked or
    /// replayed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth: Option<&'static str>,
    /// Refused by the protocol checks before any rule: why ("Multiple From", "Too Many
    /// Hops", ...); `code` says the answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refused: Option<&'static str>,
    /// An INVITE with a To-tag whose dialog this gateway did not see answered, judged
    /// as a call: "unknown".
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dialog: Option<&'static str>,
    /// The retry of a call the core asked to send again (its 401/407, 422, ...):
    /// "core-asked"; a retransmission of the caller's answered otherwise than the INVITE
    /// it repeats (503, its next hop found down since): "retransmission". The same call
    /// as the record before it with this Call-ID.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry: Option<&'static str>,
    /// The rate rules were judged with Redis out of reach: "open" (this gateway's count
    /// alone) or "closed" (a rule set to fail closed matched, whatever the count).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_fallback: Option<&'static str>,
    /// The caller's behaviour features at this call, on trunks with behaviour rules:
    /// the values that made a behaviour rule fire, or that it stayed under.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub behaviour: Option<BehaviourRecord>,
    /// Replay only: the capture time of the first packet the capture lost SIP in,
    /// before this call, on a trunk whose verdicts count earlier calls: the gateway
    /// counted what the capture lost, so this verdict may differ from its (QA 168).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after_loss: Option<u64>,
    /// The fingerprint of the policy that decided ([`Policy::fingerprint`]: what
    /// `check` prints and `/healthz` shows), so that a decision traced back months
    /// later names the config and lists it was made with.
    pub policy: String,
}

/// "reject 403", "allow": a verdict as the tables print it.
pub fn verdict_text(verdict: &str, code: Option<u16>) -> String {
    match code {
        Some(c) => format!("{verdict} {c}"),
        None => verdict.to_string(),
    }
}

/// What the rule column of [`table_row`] shows for the retry of a call the core asked
/// to send again (no rule, and not a second call: QA 78).
pub const RETRY_SHOWN: &str = "(retry the core asked for)";

/// The rule column of [`table_row`]: the rule that fired; for a call refused before
/// any rule (its next hop down), why; for the core's retry of a call, [`RETRY_SHOWN`].
pub fn rule_shown<'a>(
    rule: Option<&'a str>,
    refused: Option<&'a str>,
    retry: bool,
) -> Option<&'a str> {
    rule.or(refused).or(retry.then_some(RETRY_SHOWN))
}

/// The column heads of [`table_row`].
pub const TABLE_HEADER: &str = "time                     call-id                              caller           callee           trunk      verdict  rule";

/// One decision on one line, for people: what `replay` lists and `trace` finds.
#[allow(clippy::too_many_arguments)]
pub fn table_row(
    ts_ms: u64,
    call_id: &str,
    caller: Option<&str>,
    callee: Option<&str>,
    trunk: Option<&str>,
    verdict: &str,
    code: Option<u16>,
    rule: Option<&str>,
) -> String {
    format!(
        "{:<24} {:<36} {:<16} {:<16} {:<10} {:<8} {}",
        crate::time::rfc3339(ts_ms),
        call_id,
        caller.unwrap_or("-"),
        callee.unwrap_or("-"),
        trunk.unwrap_or("-"),
        verdict_text(verdict, code),
        rule.unwrap_or("-")
    )
}

/// What a table row adds after the rule when the rule matched on a SIP-I call's ISUP
/// calling number rather than the SIP caller (QA 204: replay's table said a +44 caller
/// was refused as a domestic one; the +86 number it matched was only in `--json`).
pub fn isup_shown<'a>(
    rule: Option<&str>,
    calling: Option<&str>,
    mut rules: impl Iterator<Item = &'a str>,
) -> String {
    match (rule, calling) {
        (Some(r), Some(c)) if rules.any(|x| x == r) => format!(" on isup {c}"),
        _ => String::new(),
    }
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct BehaviourRecord {
    #[serde(flatten)]
    pub features: Features,
    pub asr_percent: u32,
    pub ring_once_percent: u32,
    /// Rules the caller is on the watch list for.
    pub watched: Vec<&'static str>,
}

impl BehaviourRecord {
    fn new(f: Features) -> BehaviourRecord {
        BehaviourRecord {
            features: f,
            asr_percent: f.asr_percent(),
            ring_once_percent: f.ring_once_percent(),
            watched: f.watched.iter().map(|r| r.as_str()).collect(),
        }
    }

    /// One line for people: `attempts=12 callees=11 answered=0/9 (asr 0%) ...`
    /// (answered over the attempts with an outcome).
    pub fn summary(&self) -> String {
        let f = &self.features;
        let mut s = format!(
            "attempts={} callees={} answered={}/{} (asr {}) ring-once={}{} sequential={} short={}",
            f.attempts,
            f.callees,
            f.answered,
            f.settled,
            // None of its calls has an outcome yet: no ratio to show.
            if f.settled == 0 {
                "-".to_string()
            } else {
                format!("{}%", self.asr_percent)
            },
            f.ring_once,
            // What the ring-once rule weighs besides the count.
            if f.ring_once == 0 {
                String::new()
            } else {
                format!(
                    " ({} callees, {}% of {} reached)",
                    f.ring_once_callees,
                    f.ring_once_percent(),
                    f.reached_callees
                )
            },
            f.sequential,
            f.short_calls
        );
        if !self.watched.is_empty() {
            s.push_str(&format!("  watched for {}", self.watched.join(",")));
        }
        s
    }
}

/// The ISUP side of a SIP-I call, as recorded.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct IsupRecord {
    /// Calling Party Number: E.164 when it normalises, else its digits as sent.
    pub calling: Option<String>,
    pub calling_nature: Option<&'static str>,
    pub calling_presentation: Option<&'static str>,
    pub calling_class: Option<&'static str>,
    /// Generic Number (additional calling party number).
    pub generic: Option<String>,
    /// The first Generic Number naming another number than `generic`.
    pub generic2: Option<String>,
    pub called: Option<String>,
    /// Why the IAM could not be read, when it could not.
    pub error: Option<String>,
    /// Rules that matched on the ISUP calling number.
    pub rules: Vec<&'static str>,
}

fn isup_record(policy: &Policy, d: &Decision) -> Option<IsupRecord> {
    let i = d.identity.isup?;
    let role = d.trunk.map(|t| policy.trunks[t].role);
    let shown =
        |n: Option<crate::isup::IsupNumber>,
         norm: Option<Result<crate::numbering::Number, crate::numbering::NotANumber>>| {
            match (n, norm) {
                (_, Some(Ok(num))) => Some(num.e164()),
                // More signals than are kept: the record says so rather than show a
                // shorter number than the IAM's (QA 46).
                (Some(n), _) if n.digits().len() == crate::isup::MAX_DIGITS && n.odd_signals => {
                    Some(format!("{}…", n.digits_str()))
                }
                (Some(n), _) => Some(n.digits_str().to_string()),
                _ => None,
            }
        };
    let iam = i.iam.ok();
    let calling = iam.and_then(|m| m.calling);
    Some(IsupRecord {
        calling: shown(calling, i.calling),
        calling_nature: calling.map(|c| c.nature.as_str()),
        calling_presentation: calling.and_then(|c| c.presentation).map(|p| p.as_str()),
        calling_class: d.isup_class.map(|c| c.class.as_str()),
        generic: shown(iam.and_then(|m| m.generic), i.generic),
        generic2: i.generic2.and_then(|g| g.ok()).map(|n| n.e164()),
        called: iam.map(|m| m.called.digits_str().to_string()),
        // A readable IAM refused on an enterprise trunk for what it presents says why:
        // without it, the refusal read as a calling number that did not match (QA 166).
        error: match i.iam {
            Err(e) => Some(e.to_string()),
            Ok(_) if role.is_some_and(|r| i.unreadable_on(r)) => Some(
                "more Generic Numbers than an enterprise trunk judges (a third distinct number, more than four in all, or one with signals that are no digits)".into(),
            ),
            Ok(_) => None,
        },
        rules: d.isup_hits.iter().map(|r| r.as_str()).collect(),
    })
}

fn text(b: &[u8], s: Span) -> String {
    String::from_utf8_lossy(s.of(b)).into_owned()
}

/// The party [`Record::diverted`] names: the first value of the first Diversion field,
/// else of the first History-Info field.
fn diverted(msg: &Message, policy: &Policy, d: &Decision) -> Option<String> {
    let b = msg.buf();
    let named = |n: &[u8]| {
        msg.headers()
            .iter()
            .find(|h| h.name_span().of(b).eq_ignore_ascii_case(n))
    };
    let h = named(b"Diversion").or_else(|| named(b"History-Info"))?;
    let mut first = None;
    let _ = crate::sip::addr::parse_list(b, h.value(), |na| {
        first.get_or_insert(na.uri);
    });
    let (user, num) = uri_number(b, first?, policy.reading(d.trunk));
    // A number of the plan in E.164; an extension (`8005`), a short code the plan
    // does not know as a caller, a name as written (QA 114: `+868005` named no one).
    Some(match num {
        Ok(n) if policy.plan.classify(&n).class != crate::numbering::Class::Invalid => n.e164(),
        _ if !user.is_empty() => text(b, user),
        _ => text(b, first?),
    })
}

fn party_user(b: &[u8], p: &Option<Party>) -> Option<String> {
    p.as_ref().map(|p| text(b, p.user))
}

impl Record {
    pub fn new(
        policy: &Policy,
        msg: &Message,
        d: &Decision,
        source: SocketAddr,
        ts_ms: u64,
    ) -> Record {
        let b = msg.buf();
        let callee = msg.request_uri().map(|u| {
            let (user, num) = uri_number(b, u, policy.reading(d.trunk));
            match num {
                Ok(n) => n.e164(),
                Err(_) => text(b, user),
            }
        });
        let mut flags = vec![];
        if let Some(c) = d.class {
            if c.flags.mvno {
                flags.push("mvno");
            }
            if c.flags.satellite {
                flags.push("satellite");
            }
            if c.flags.novoice {
                flags.push("novoice");
            }
        }
        Record {
            ts_ms,
            trunk: d.trunk.map(|t| policy.trunks[t].name.clone()),
            // A peer on a dual-stack listener as its own address, as replay shows it
            // and as the trunks match it (QA 53: `[::ffff:192.0.2.1]:5060`).
            source: crate::canonical(source).to_string(),
            kind: d.kind.as_str(),
            method: msg
                .method_bytes()
                .map(|m| String::from_utf8_lossy(m).into_owned())
                .unwrap_or_else(|| msg.status().map(|s| s.to_string()).unwrap_or_default()),
            call_id: String::from_utf8_lossy(msg.call_id()).into_owned(),
            from: party_user(b, &d.identity.from),
            asserted: party_user(b, &d.identity.asserted),
            withheld: d.identity.hides_number(),
            caller: d.caller.map(|n| n.e164()),
            class: d.class.map(|c| c.class.as_str()),
            caller_flags: flags,
            blank: d.blank.map(|r| r.as_str()),
            callee: if d.kind == Kind::Call { callee } else { None },
            verdict: d.verdict_str(),
            code: match d.outcome {
                Outcome::Reject { code } => Some(code),
                Outcome::Forward | Outcome::Drop => None,
            },
            rule: d.rule.map(|r| r.as_str()),
            hits: d.hits.iter().map(|r| r.as_str()).collect(),
            exempted: d.exempted.iter().map(|r| r.as_str()).collect(),
            from_rules: d.presented_hits.iter().map(|r| r.as_str()).collect(),
            presented: d
                .presented
                .or_else(|| {
                    let id = &d.identity;
                    let caller = id.effective_number();
                    id.display_number
                        .filter(|n| Some(*n) != caller)
                        .or_else(|| id.other_presented())
                })
                .map(|n| n.e164()),
            asserted2: d.asserted2.map(|n| n.e164()),
            asserted2_rules: d.asserted2_hits.iter().map(|r| r.as_str()).collect(),
            diverted: if d.kind == Kind::Call {
                diverted(msg, policy, d)
            } else {
                None
            },
            isup: isup_record(policy, d),
            auth: d.auth.map(|a| a.as_str()),
            refused: d.refusal.map(|r| r.why),
            dialog: d.unknown_dialog.then_some("unknown"),
            retry: if d.answered_otherwise {
                Some("retransmission")
            } else {
                d.core_retry.then_some("core-asked")
            },
            rate_fallback: d.rate_fallback.map(|f| match f {
                crate::policy::config::Fallback::Open => "open",
                crate::policy::config::Fallback::Closed => "closed",
            }),
            behaviour: d.features.map(BehaviourRecord::new),
            after_loss: None,
            policy: policy.fingerprint(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decide::{Context, decide};
    use bytes::Bytes;

    /// A peer on a dual-stack listener is recorded by its IPv4 address, as replay
    /// records it (QA 53); an IPv6 peer as it is.
    #[test]
    fn a_mapped_source_is_recorded_as_ipv4() {
        let p = Policy::builtin().expect("built-in policy");
        let m = Message::parse(Bytes::from_static(
            b"INVITE sip:4008001234@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK1\r\nFrom: <sip:+8613812345678@127.0.0.1>;tag=1\r\nTo: <sip:4008001234@127.0.0.1>\r\nCall-ID: m-1\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
        ))
        .expect("parses");
        for (src, shown) in [
            ("[::ffff:127.0.0.2]:5070", "127.0.0.2:5070"),
            ("127.0.0.2:5070", "127.0.0.2:5070"),
            ("[2001:db8::1]:5070", "[2001:db8::1]:5070"),
        ] {
            let src: SocketAddr = src.parse().expect("address");
            let ctx = Context {
                source: src,
                local: None,
                trunk: None,
                now_ms: 1_000,
                wall_ms: 1_000,
                rates: &crate::policy::rate::NoCounting,
                behaviour: &crate::behaviour::NoTracking,
            };
            let r = Record::new(&p, &m, &decide(&p, &m, &ctx), src, 1_000);
            assert_eq!(r.source, shown);
        }
    }
}
