//! `sipfence number`: what the filter makes of a calling number, and what a call from
//! it meets on each trunk. The engineer writing a whitelist, answering a complaint
//! ("our customer's calls are refused") or checking a blacklist entry asks this of a
//! number, not of a SIP message: `explain` needs a whole message.
//!
//! Nothing is computed here that the core does not compute for a live call: the number
//! goes through `numbering::normalise` and the plan, the lists are the policy's own
//! lookups, and each trunk's verdict comes from the caller rules run on an INVITE that
//! carries the number in From and P-Asserted-Identity, parsed by the same parser.

use bytes::Bytes;
use serde_json::json;
use std::io::Read;
use std::net::SocketAddr;
use std::path::PathBuf;

use crate::behaviour::local::LocalTracker;
use crate::decide::{Context, judge_caller_rules};
use crate::identity::uri_number;
use crate::numbering::{NotANumber, Number, Reading, normalise};
use crate::policy::Policy;
use crate::policy::lists::{ListMatch, NumberSet, line_entry};
use crate::policy::rate::LocalRateCounter;
use crate::record::{Record, verdict_text};
use crate::replay::capture;
use crate::sip::{Message, Span};

#[derive(clap::Args)]
pub struct Args {
    /// The policy to ask (default: the built-in example).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Judge on this trunk only (default: every trunk).
    #[arg(long)]
    pub trunk: Option<String>,
    /// The number called (Request-URI and To); a number or a sip/tel URI.
    #[arg(long, default_value = "+861012345678")]
    pub callee: String,
    /// Time of the call (hour and day rules): Unix seconds or RFC 3339
    /// (`2026-11-30T10:00:00+08:00`); default now.
    #[arg(long)]
    pub at: Option<String>,
    /// One JSON object per number.
    #[arg(long)]
    pub json: bool,
    /// Calling numbers in any written form (`010 1234 5678`, `+8613812345678`,
    /// `0086...`), or sip/tel URIs; `-` reads one a line from standard input (a list
    /// file as the customer sent it: `#` comments and blank lines are skipped).
    #[arg(required = true)]
    pub numbers: Vec<String>,
}

/// The sender a judged call is shown from: TEST-NET-1, never a real trunk's address.
const SOURCE: &str = "192.0.2.1:5060";

/// What the filter reads from the text given: a number in any written form, or a
/// sip/sips/tel URI as a header would carry it (`tel:010-12345678;phone-context=+86`).
fn read_number(policy: &Policy, input: &str) -> Result<Number, NotANumber> {
    read_number_as(policy.plan.country(), input)
}

/// [`read_number`] in the plan of country code `cc`: also what `trace` reads a number
/// to look for from.
pub(crate) fn read_number_as(cc: &[u8], input: &str) -> Result<Number, NotANumber> {
    let t = input.trim();
    match as_uri(t) {
        Some(u) => uri_number(u.as_bytes(), Span::new(0, u.len()), Reading::national(cc)).1,
        // A URI with characters no URI has is no number either: `normalise` stops at
        // its scheme's letters.
        None => normalise(t.as_bytes(), cc, None),
    }
}

/// The identity a test call presents: the text as given when a URI or a user part can
/// carry it unchanged (so that every rule sees the form the peer would send), else the
/// number as normalised, else the text %-escaped (a withheld "anonymous", say).
fn identity_uri(input: &str, number: Option<&Number>) -> String {
    let t = input.trim();
    if let Some(uri) = as_uri(t) {
        return uri.to_string();
    }
    let user_safe = |c: u8| c.is_ascii_alphanumeric() || b"-_.!~*'()+".contains(&c);
    let user = if t.bytes().all(user_safe) {
        t.to_string()
    } else if let Some(n) = number {
        n.e164()
    } else {
        t.bytes()
            .map(|c| {
                if user_safe(c) {
                    (c as char).to_string()
                } else {
                    format!("%{c:02X}")
                }
            })
            .collect()
    };
    if user.is_empty() {
        "sip:192.0.2.1".into()
    } else {
        format!("sip:{user}@192.0.2.1;user=phone")
    }
}

/// The display name before a `<uri>` given as a header writes it (`"95588" <sip:...>`),
/// with the blank after it, or nothing: the test call carries it as given, since the
/// rules read display names too.
fn display_name(input: &str) -> &str {
    let t = input.trim();
    match (t.find('<'), as_uri(t)) {
        (Some(a), Some(_)) if a > 0 && !t[..a].contains(['\r', '\n']) => &t[..a],
        _ => "",
    }
}

/// The text itself when it is a sip, sips or tel URI a header can carry as it stands.
fn as_uri(t: &str) -> Option<&str> {
    // As a header's name-addr writes it: `<sip:...>`, perhaps after a display name.
    // Header parameters after it (`;tag=...`) belong to the field, not the URI.
    let t = match (t.find('<'), t.rfind('>')) {
        (Some(a), Some(b))
            if a < b && {
                let after = t[b + 1..].trim();
                after.is_empty() || after.starts_with(';')
            } =>
        {
            &t[a + 1..b]
        }
        _ => t,
    };
    (["sip:", "sips:", "tel:"]
        .iter()
        .any(|s| t.get(..s.len()).is_some_and(|p| p.eq_ignore_ascii_case(s)))
        && t.bytes().all(crate::sip::lex::is_uri_char))
    .then_some(t)
}

/// An initial INVITE from `caller` (a name-addr) to `callee` (a URI), as a peer gateway
/// sends one.
fn test_call(caller: &str, callee_uri: &str, n: usize) -> Result<Message, String> {
    let text = format!(
        "INVITE {callee_uri} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {SOURCE};branch=z9hG4bK-sipfence-number-{n}\r\n\
         Max-Forwards: 70\r\n\
         From: {caller};tag=number-{n}\r\n\
         To: <{callee_uri}>\r\n\
         Call-ID: sipfence-number-{n}@192.0.2.1\r\n\
         CSeq: 1 INVITE\r\n\
         P-Asserted-Identity: {caller}\r\n\
         Contact: <sip:{SOURCE}>\r\n\
         Content-Length: 0\r\n\r\n"
    );
    Message::parse(Bytes::from(text)).map_err(|e| e.to_string())
}

fn list_hit(set: &NumberSet, n: &Number) -> Option<String> {
    set.lookup(n).map(|m| match m {
        ListMatch::Exact => "exact".to_string(),
        ListMatch::Segment(l) => format!(
            "segment +{}*",
            n.as_str().get(..l as usize).unwrap_or(n.as_str())
        ),
        // The block of the range, one `x` a digit: its numbers' length shows.
        ListMatch::Range(l) => format!(
            "range +{}{}",
            n.as_str().get(..l as usize).unwrap_or(n.as_str()),
            "x".repeat(n.len().saturating_sub(l as usize))
        ),
    })
}

pub fn run(policy: &Policy, a: &Args) -> i32 {
    let trunks: Vec<usize> = match &a.trunk {
        Some(name) => match super::trunk_arg(policy, name) {
            Ok(t) => vec![t],
            Err(status) => return status,
        },
        None => (0..policy.trunks.len()).collect(),
    };
    // The called number as a URI: as given when it is one, else the number normalised
    // (a person writes "010 1234 5678", which no URI can carry as it stands).
    let callee = match read_number(policy, &a.callee) {
        Ok(_) if as_uri(a.callee.trim()).is_some() => a.callee.trim().to_string(),
        Ok(n) => format!("sip:{}@core.invalid;user=phone", n.e164()),
        Err(_) => {
            eprintln!("sipfence: --callee '{}' is not a number", a.callee);
            return 2;
        }
    };
    let now = match a.at.as_deref().map(crate::time::parse_time) {
        None => super::now_ms(),
        Some(Ok(ms)) => ms,
        Some(Err(e)) => {
            eprintln!("sipfence: --at: {e}");
            return 2;
        }
    };
    let source: SocketAddr = SOURCE.parse().unwrap_or(SocketAddr::from(([0; 4], 0)));
    let mut numbers = Vec::with_capacity(a.numbers.len());
    for n in &a.numbers {
        let path = std::path::Path::new(n);
        if !capture::is_stdin(path) {
            numbers.push(n.clone());
            continue;
        }
        let mut text = String::new();
        if let Err(e) = capture::open_input(path).and_then(|mut r| r.read_to_string(&mut text)) {
            eprintln!("sipfence: standard input: {e}");
            return 2;
        }
        numbers.extend(
            text.lines()
                .map(line_entry)
                .filter(|l| !l.is_empty())
                .map(str::to_string),
        );
    }
    let mut status = 0;
    for (i, input) in numbers.iter().enumerate() {
        let number = read_number(policy, input);
        let class = number.as_ref().ok().map(|n| policy.plan.classify(n));
        let mut lists = vec![];
        if let Ok(n) = &number {
            for (name, set) in policy.named_lists() {
                if let Some(how) = list_hit(set, n) {
                    lists.push((name.to_string(), how));
                }
            }
            for t in &policy.trunks {
                if let Some(how) = t.whitelist.as_ref().and_then(|w| list_hit(w, n)) {
                    lists.push((format!("whitelist:{}", t.name), how));
                }
            }
        }
        let caller = format!(
            "{}<{}>",
            display_name(input),
            identity_uri(input, number.as_ref().ok())
        );
        let msg = match test_call(&caller, &callee, i) {
            Ok(m) => m,
            Err(e) => {
                eprintln!("sipfence: '{input}' cannot be carried in a SIP URI: {e}");
                status = 2;
                continue;
            }
        };
        let mut verdicts = vec![];
        for &t in &trunks {
            // A first call: fresh rate counters and behaviour, as a number never seen.
            let rates = LocalRateCounter::new(64);
            let tracker = LocalTracker::new(16, 16);
            let ctx = Context {
                source,
                local: None,
                trunk: Some(t),
                now_ms: now,
                wall_ms: now,
                rates: &rates,
                behaviour: &tracker,
            };
            let d = judge_caller_rules(policy, &msg, &ctx, t);
            if d.is_reject() {
                status = status.max(1);
            }
            verdicts.push((t, Record::new(policy, &msg, &d, source, now)));
        }
        let flags: Vec<&'static str> = class
            .map(|c| {
                [
                    (c.flags.mvno, "mvno"),
                    (c.flags.satellite, "satellite"),
                    (c.flags.novoice, "novoice"),
                ]
                .into_iter()
                .filter_map(|(on, name)| on.then_some(name))
                .collect()
            })
            .unwrap_or_default();
        if a.json {
            let trunks: Vec<_> = verdicts
                .iter()
                .map(|(t, r)| {
                    json!({
                        "trunk": policy.trunks[*t].name,
                        "role": policy.trunks[*t].role.as_str(),
                        "caller": r.caller,
                        "class": r.class,
                        "verdict": r.verdict,
                        "code": r.code,
                        "rule": r.rule,
                        "hits": r.hits,
                        "exempted": r.exempted,
                    })
                })
                .collect();
            let lists: Vec<_> = lists
                .iter()
                .map(|(l, how)| json!({"list": l, "match": how}))
                .collect();
            println!(
                "{}",
                json!({
                    "input": input,
                    "number": number.as_ref().ok().map(Number::e164),
                    "not_a_number": number.as_ref().err().map(|e| e.as_str()),
                    "class": class.map(|c| c.class.as_str()),
                    "operator": class.and_then(|c| c.operator),
                    "flags": flags,
                    "lists": lists,
                    "trunks": trunks,
                })
            );
            continue;
        }
        println!("{}", if input.is_empty() { "\"\"" } else { input });
        match (&number, class) {
            (Ok(n), Some(c)) => println!(
                "  number   {}  {}{}{}",
                n.e164(),
                c.class.as_str(),
                c.operator
                    .map(|o| format!(", allocated to {o}"))
                    .unwrap_or_default(),
                if flags.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", flags.join(", "))
                }
            ),
            (Err(e), _) => println!("  number   - (not a number: {})", e.as_str()),
            (Ok(_), None) => {}
        }
        if number.is_ok() {
            if lists.is_empty() {
                println!("  lists    none");
            }
            for (l, how) in &lists {
                println!("  lists    {l} ({how})");
            }
        }
        for (t, r) in &verdicts {
            let tr = &policy.trunks[*t];
            let also: Vec<&str> = r
                .hits
                .iter()
                .copied()
                .filter(|h| Some(*h) != r.rule)
                .collect();
            // A trunk whose peer writes bare numbers otherwise (`bare_numbers`) reads
            // the same digits as another number.
            let read = number.as_ref().ok().map(Number::e164);
            println!(
                "  {:<20} {:<14} {:<9} {}{}{}{}",
                tr.name,
                tr.role.as_str(),
                verdict_text(r.verdict, r.code),
                r.rule.unwrap_or("-"),
                if also.is_empty() {
                    String::new()
                } else {
                    format!("  matched {}", also.join(", "))
                },
                if r.exempted.is_empty() {
                    String::new()
                } else {
                    format!("  exempted {}", r.exempted.join(", "))
                },
                match &r.caller {
                    Some(c) if r.caller != read => {
                        format!("  read as {c} ({})", r.class.unwrap_or("-"))
                    }
                    _ => String::new(),
                }
            );
        }
    }
    status
}
