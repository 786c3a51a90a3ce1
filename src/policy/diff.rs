//! What a new policy changes against the running one, said the way the on-call engineer
//! checks a reload: "blacklist +120 -3", "trunk ent-bank: hours 08:00-21:00 -> 07:00-22:00".
//!
//! Two kinds of change: those a reload applies at once (lists, trunks, rules, live
//! proxy settings), and those the running process read at start only (sockets,
//! threads, the record writer, table sizes, Redis). A reload cannot apply the second
//! kind; saying so, and keeping it visible until a restart, is what keeps a changed
//! listen address from being believed in service.

use super::config::{
    BehaviourTables, HepConf, ListenSpec, LogConf, MetricsConf, RecordsConf, RedisConf,
};
use super::lists::NumberSet;
use super::{Action, Policy, RuleId, Trunk, joined};

#[derive(Debug, Default, Clone, PartialEq)]
pub struct Changes {
    /// In force as soon as the new policy is swapped in.
    pub applied: Vec<String>,
    /// Read at start only: in force after a restart.
    pub restart: Vec<String>,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.applied.is_empty() && self.restart.is_empty()
    }
}

/// The settings a running proxy took at start and keeps until it is restarted.
#[derive(Debug, Clone, PartialEq)]
pub struct StartOnly {
    /// Every address some trunk listens on: the sockets bound at start.
    pub listen: Vec<ListenSpec>,
    pub workers: usize,
    /// `run --workers N` set the workers: what the file says of them does not count,
    /// now or at the next start (QA 105: a reload said "workers 0 -> 3" of a process
    /// running 2, and a restart would have kept 2).
    pub workers_cli: bool,
    pub rate_keys: usize,
    pub advertise: Option<std::net::IpAddr>,
    pub metrics: MetricsConf,
    pub records: RecordsConf,
    pub log: LogConf,
    pub behaviour: BehaviourTables,
    pub redis: RedisConf,
    pub hep: HepConf,
    /// The behaviour tables' callee key when `auth_secret` gives it (the tables keep
    /// the one they were made with: QA 102, a secret changed by reload did nothing).
    pub callee_key: Option<u64>,
}

impl StartOnly {
    pub fn of(p: &Policy) -> StartOnly {
        let mut listen: Vec<ListenSpec> = p.trunks.iter().flat_map(|t| t.listen.clone()).collect();
        listen.sort();
        listen.dedup();
        StartOnly {
            listen,
            workers: p.proxy.workers,
            workers_cli: false,
            rate_keys: p.proxy.rate_keys,
            advertise: p.proxy.advertise,
            metrics: p.metrics.clone(),
            records: p.records.clone(),
            log: p.log.clone(),
            behaviour: p.behaviour,
            redis: p.redis.clone(),
            hep: p.hep.clone(),
            callee_key: (!p.callee_key_random).then_some(p.callee_key),
        }
    }

    /// What `new` would change of the settings taken at start.
    pub fn changes(&self, new: &StartOnly) -> Vec<String> {
        let mut out = vec![];
        let added: Vec<String> = new
            .listen
            .iter()
            .filter(|l| !self.listen.contains(l))
            .map(|l| format!("+{l}"))
            .collect();
        let removed: Vec<String> = self
            .listen
            .iter()
            .filter(|l| !new.listen.contains(l))
            .map(|l| format!("-{l}"))
            .collect();
        if !added.is_empty() || !removed.is_empty() {
            out.push(format!(
                "listen addresses {}",
                [added, removed].concat().join(" ")
            ));
        }
        if !self.workers_cli && self.workers != new.workers {
            out.push(format!(
                "[proxy] workers {} -> {}",
                self.workers, new.workers
            ));
        }
        if self.rate_keys != new.rate_keys {
            out.push(format!(
                "[proxy] rate_keys {} -> {}",
                self.rate_keys, new.rate_keys
            ));
        }
        if self.advertise != new.advertise {
            let s = |a: Option<std::net::IpAddr>| {
                a.map_or("(found at start)".into(), |a| a.to_string())
            };
            out.push(format!(
                "[proxy] advertise {} -> {}",
                s(self.advertise),
                s(new.advertise)
            ));
        }
        if self.metrics != new.metrics {
            out.push(format!(
                "[metrics] listen '{}' -> '{}'",
                self.metrics.listen, new.metrics.listen
            ));
        }
        if self.records != new.records {
            out.push("[records]".into());
        }
        if self.log != new.log {
            out.push("[log]".into());
        }
        if self.behaviour != new.behaviour {
            out.push(format!(
                "[behaviour] table sizes {}/{} -> {}/{}",
                self.behaviour.callers,
                self.behaviour.calls,
                new.behaviour.callers,
                new.behaviour.calls
            ));
        }
        if self.redis != new.redis {
            out.push("[redis]".into());
        }
        if self.hep != new.hep {
            out.push("[hep]".into());
        }
        if self.callee_key != new.callee_key {
            out.push("[general] auth_secret, as the behaviour tables' callee key".into());
        }
        out
    }
}

/// `+120 -3 (5000000 -> 5000117 entries)`, or `None` when the entries are the same.
pub fn list_change(old: &NumberSet, new: &NumberSet) -> Option<String> {
    let (added, removed) = new.difference_counts(old);
    (added + removed > 0).then(|| format!("+{added} -{removed} ({})", sizes(old, new)))
}

/// `5000000 -> 5000117 entries`.
fn sizes(old: &NumberSet, new: &NumberSet) -> String {
    format!(
        "{} -> {}",
        old.len(),
        super::counted(new.len(), "entry", "entries")
    )
}

/// A list cut by fewer entries than this is edited, whatever share of it that is.
const SHRINK_FLOOR: usize = 100;
/// Likewise for its segments (and ranges' blocks), each of which may hold millions of
/// numbers: a file cut short loses its last lines, where feeds often write them (QA
/// 155: 5% of a blacklist cut off held all its 100,000 segments, and 5% is no tenth).
const SEGMENT_SHRINK_FLOOR: usize = 10;

/// The lists `new` would cut by more than half (and by at least [`SHRINK_FLOOR`]
/// entries) against `old`, each said as `list blacklist 995006 -> 0 entries`: what a
/// list file truncated, or caught while being written, looks like (QA 118 F3: a
/// blacklist emptied so reloaded "ok", and the filter let its numbers through). A
/// whitelist is matched by its trunk's name.
pub fn shrunk_lists(old: &Policy, new: &Policy) -> Vec<String> {
    lists_losing(old, new, 5)
}

/// The warning a reload that cuts a list by more than a tenth gives (and `check
/// --against`): taken, but maybe a file cut or read while being written.
pub fn cut_warning(old: &Policy, new: &Policy) -> Option<String> {
    let cut = lists_losing(old, new, 1);
    (!cut.is_empty()).then(|| {
        format!(
            "{} lost more than a tenth: meant? (a list file cut, or read while being written, is refused only below half)",
            cut.join(", ")
        )
    })
}

/// The lists `new` would cut by more than `tenths` tenths (and by at least
/// [`SHRINK_FLOOR`] entries, or [`SEGMENT_SHRINK_FLOOR`] segments) against `old`, said
/// as [`shrunk_lists`] says them. More
/// than a tenth, a reload takes but warns of (QA 152: a list file rewritten in place
/// and read at 60% written went in with a line at info level).
pub fn lists_losing(old: &Policy, new: &Policy, tenths: usize) -> Vec<String> {
    let cut = |a: usize, b: usize, floor: usize| {
        a.saturating_sub(b) >= floor && 10 * b < (10 - tenths.min(10)) * a
    };
    // The entries, else the segments alone.
    let said = |name: String, a: &NumberSet, b: &NumberSet| {
        if cut(a.len(), b.len(), SHRINK_FLOOR) {
            Some(format!("{name} {}", sizes(a, b)))
        } else if cut(a.segment_len(), b.segment_len(), SEGMENT_SHRINK_FLOOR) {
            Some(format!(
                "{name} {} -> {}",
                a.segment_len(),
                super::counted(b.segment_len(), "segment", "segments")
            ))
        } else {
            None
        }
    };
    let mut out = vec![];
    for ((name, a), (_, b)) in old.named_lists().into_iter().zip(new.named_lists()) {
        out.extend(said(format!("list {name}"), a, b));
    }
    for t in &new.trunks {
        let old = old.trunks.iter().find(|o| o.name == t.name);
        if let (Some(a), Some(b)) = (old.and_then(|o| o.whitelist.as_ref()), &t.whitelist) {
            out.extend(said(format!("trunk {} whitelist", t.name), a, b));
        }
    }
    out
}

fn action_text(a: &Action) -> String {
    use super::config::ActionKind::*;
    match a.kind {
        Reject | RateLimit => format!("{} {}", a.kind.as_str(), a.code),
        _ => a.kind.as_str().to_string(),
    }
}

/// Rule actions that differ: `blacklist reject 608 -> monitor`.
fn action_changes(old: &[Action], new: &[Action], runs: impl Fn(RuleId) -> bool) -> Vec<String> {
    RuleId::ORDER
        .iter()
        .filter(|r| runs(**r))
        .filter_map(|&r| {
            let (o, n) = (old.get(r.index())?, new.get(r.index())?);
            if o == n {
                return None;
            }
            let (a, b) = (action_text(o), action_text(n));
            let fallback = |x: &Action| if x.fail_closed { "closed" } else { "open" };
            // Every part that changed, in one line per rule.
            let mut parts = vec![];
            if a != b {
                parts.push(format!("{a} -> {b}"));
            }
            if o.fail_closed != n.fail_closed {
                parts.push(format!("fallback {} -> {}", fallback(o), fallback(n)));
            }
            if o.label != n.label {
                parts.push(format!("label '{}' -> '{}'", o.label, n.label));
            }
            if o.reason != n.reason || parts.is_empty() {
                parts.push("reason".to_string());
            }
            Some(format!("rule {} {}", r.as_str(), parts.join(", ")))
        })
        .collect()
}

fn opt<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map_or("none".into(), |v| v.to_string())
}

fn hours_text(t: &Trunk) -> String {
    let days = match t.days {
        Some(d) => format!(" {}", d.names().join(",")),
        None => String::new(),
    };
    match t.hours {
        None if t.days.is_none() => "any time".into(),
        // Every hour of the days named.
        None => format!("all day{days}"),
        Some(h) => format!("{h} {}{days}", t.utc_offset_text()),
    }
}

fn trunk_changes(o: &Trunk, n: &Trunk, out: &mut Vec<String>) {
    let mut say = |what: String| out.push(format!("trunk {}: {what}", n.name));
    if o.role != n.role {
        say(format!("role {} -> {}", o.role.as_str(), n.role.as_str()));
    }
    if o.sources != n.sources {
        say(format!(
            "sources [{}] -> [{}]",
            joined(&o.sources),
            joined(&n.sources)
        ));
    }
    if o.listen != n.listen {
        // Which of the sockets bound at start the trunk takes calls on changes now; a
        // socket not yet bound is the restart's (said among the start-only settings).
        say(format!(
            "listen [{}] -> [{}] (the trunk's share of the bound sockets)",
            joined(&o.listen),
            joined(&n.listen)
        ));
    }
    if o.next_hop != n.next_hop {
        say(format!(
            "next hop {} -> {}",
            opt(o.next_hop),
            opt(n.next_hop)
        ));
    }
    match (&o.whitelist, &n.whitelist) {
        (Some(a), Some(b)) => {
            if let Some(c) = list_change(a, b) {
                say(format!("whitelist {c}"));
            }
        }
        (None, Some(b)) => say(format!(
            "whitelist added ({})",
            super::counted(b.len(), "entry", "entries")
        )),
        (Some(_), None) => say("whitelist removed".into()),
        (None, None) => {}
    }
    if (o.hours, o.utc_offset_min, o.days) != (n.hours, n.utc_offset_min, n.days) {
        say(format!("hours {} -> {}", hours_text(o), hours_text(n)));
    }
    if o.max_per_minute != n.max_per_minute {
        say(format!(
            "max_calls_per_minute {} -> {}",
            opt(o.max_per_minute),
            opt(n.max_per_minute)
        ));
    }
    if o.max_per_minute_per_caller != n.max_per_minute_per_caller {
        say(format!(
            "max_calls_per_minute_per_caller {} -> {}",
            opt(o.max_per_minute_per_caller),
            opt(n.max_per_minute_per_caller)
        ));
    }
    if o.max_concurrent != n.max_concurrent {
        say(format!(
            "max_concurrent_calls {} -> {}",
            opt(o.max_concurrent),
            opt(n.max_concurrent)
        ));
    }
    if o.trust_in_dialog_invites != n.trust_in_dialog_invites {
        say(format!(
            "trust_in_dialog_invites {} -> {}",
            o.trust_in_dialog_invites, n.trust_in_dialog_invites
        ));
    }
    if o.refuse_withheld != n.refuse_withheld {
        say(format!(
            "refuse_withheld {} -> {}",
            o.refuse_withheld, n.refuse_withheld
        ));
    }
    if o.behaviour.map(|b| b.effective()) != n.behaviour.map(|b| b.effective()) {
        say("behaviour thresholds".into());
    }
    if o.record_route != n.record_route {
        say(format!(
            "record_route {} -> {}",
            o.record_route, n.record_route
        ));
    }
    if o.register_path != n.register_path {
        say(format!(
            "register_path {} -> {}",
            o.register_path, n.register_path
        ));
    }
    if o.bare != n.bare {
        say(format!(
            "bare_numbers {} -> {}",
            o.bare.as_str(),
            n.bare.as_str()
        ));
    }
    match (&o.auth, &n.auth) {
        (Some(a), Some(b)) if !a.same_terms(b) => say("digest authentication terms".into()),
        (None, Some(_)) => say("digest authentication on".into()),
        (Some(_), None) => say("digest authentication off".into()),
        _ => {}
    }
    for c in action_changes(&o.actions, &n.actions, |r| n.runs(r) || o.runs(r)) {
        say(c);
    }
}

/// Everything `new` changes against `old` (a running proxy started on `old`). A trunk
/// whose new listen addresses are not all bound keeps its running ones until the
/// restart ([`keep_bound_listens`]).
pub fn changes(old: &Policy, new: &Policy) -> Changes {
    let start = StartOnly::of(old);
    let restart = start.changes(&StartOnly::of(new));
    let waits = |t: &Trunk| {
        !t.listen.iter().all(|l| start.listen.contains(l))
            && old
                .trunks
                .iter()
                .find(|o| o.name == t.name)
                .is_none_or(|o| o.listen != t.listen)
    };
    if !new.trunks.iter().any(waits) {
        return Changes {
            applied: applied(old, new),
            restart,
        };
    }
    // Rare (an offline check): the copy is the price of one code path with the reload.
    let mut kept = new.clone();
    let notes = keep_bound_listens(old, &start.listen, &mut kept);
    Changes {
        applied: applied(old, &kept),
        restart: [restart, notes].concat(),
    }
}

/// A reload cannot bind sockets: a trunk of `new` that names a listen address not in
/// `bound` (the sockets bound at start) keeps the listen addresses it has in `running`
/// until the restart, rather than lose its calls on the sockets it has now (QA 40:
/// moved to an address not yet bound, its peer was answered "Unknown source"). What was
/// kept, one line per trunk.
pub fn keep_bound_listens(running: &Policy, bound: &[ListenSpec], new: &mut Policy) -> Vec<String> {
    let mut said = vec![];
    for t in &mut new.trunks {
        if t.listen.iter().all(|l| bound.contains(l)) {
            continue;
        }
        let Some(o) = running.trunks.iter().find(|o| o.name == t.name) else {
            // A new trunk takes its calls on the bound sockets it names at once, and on
            // the others from the restart on (QA 41).
            let unbound: Vec<ListenSpec> = t
                .listen
                .iter()
                .filter(|l| !bound.contains(l))
                .copied()
                .collect();
            said.push(format!(
                "trunk {}: listen [{}] takes calls from the restart on (not bound)",
                t.name,
                joined(&unbound)
            ));
            continue;
        };
        if o.listen != t.listen {
            said.push(format!(
                "trunk {}: listen [{}] waits for the restart (not all bound): [{}] stays in force",
                t.name,
                joined(&t.listen),
                joined(&o.listen)
            ));
            t.listen = o.listen.clone();
        }
    }
    said
}

/// What `new` changes against `old` that a reload applies at once.
pub fn applied(old: &Policy, new: &Policy) -> Vec<String> {
    let mut applied = vec![];
    for ((name, a), (_, b)) in old.named_lists().into_iter().zip(new.named_lists()) {
        if let Some(c) = list_change(a, b) {
            applied.push(format!("list {name} {c}"));
        }
    }
    for t in &new.trunks {
        match old.trunks.iter().find(|o| o.name == t.name) {
            Some(o) => trunk_changes(o, t, &mut applied),
            None => applied.push(format!("trunk {} added ({})", t.name, t.role.as_str())),
        }
    }
    for o in &old.trunks {
        if !new.trunks.iter().any(|t| t.name == o.name) {
            applied.push(format!("trunk {} removed", o.name));
        }
    }
    // The first trunk whose sources match takes the call: an order change moves calls.
    let kept = |p: &Policy, other: &Policy| -> Vec<String> {
        p.trunks
            .iter()
            .filter(|t| other.trunks.iter().any(|o| o.name == t.name))
            .map(|t| t.name.clone())
            .collect()
    };
    let (ko, kn) = (kept(old, new), kept(new, old));
    if ko != kn {
        applied.push(format!(
            "trunk order (first match wins) {} -> {}",
            ko.join(", "),
            kn.join(", ")
        ));
    }
    for c in action_changes(&old.default_actions, &new.default_actions, |r| {
        r == RuleId::UnknownSource
    }) {
        applied.push(format!("unknown sources: {c}"));
    }
    if old.plan != new.plan {
        applied.push(format!(
            "numbering plan ({} -> {} rules)",
            old.plan.rule_count(),
            new.plan.rule_count()
        ));
    }
    if old.secret_id != new.secret_id {
        // What the calls up make of it (QA 198 F2: a reload said nothing but the
        // behaviour tables' key, and every live call's BYE was challenged after it).
        applied.push(match old.secret_id {
            Some(o) if new.accepted_ids.contains(&o) => "auth_secret changed: nonces and dialog tokens are made under the new one, and those made under the old one still verify (auth_secrets_accepted)",
            Some(_) => "auth_secret changed, the old one not accepted: nonces and dialog tokens made under it no longer verify here, so the in-dialog requests of calls up on trunks told by digest alone are challenged; name it in auth_secrets_accepted until those calls are over",
            None => "auth_secret set: nonces and dialog tokens made before, under this process's own key, no longer verify here (the in-dialog requests of calls up on trunks told by digest alone are challenged)",
        }.to_string());
    }
    if old.accepted_ids != new.accepted_ids {
        // A secret taken out while calls set up under it are up strands them as a
        // change of auth_secret does (QA 200: said only "1 -> 0 secrets").
        let dropped = old
            .accepted_ids
            .iter()
            .filter(|o| !new.accepted_ids.contains(o) && new.secret_id != Some(**o))
            .count();
        let mut said = format!(
            "auth_secrets_accepted: {} -> {} secrets",
            old.accepted_ids.len(),
            new.accepted_ids.len()
        );
        if dropped > 0 {
            said.push_str(&format!(
                "; nonces and dialog tokens made under the {dropped} taken out no longer verify here (the in-dialog requests of calls set up under them, on trunks told by digest alone, are challenged): take one out only once its calls are over (four hours after the switch)"
            ));
        }
        applied.push(said);
    }
    let mut setting = |name: &str, a: String, b: String| {
        if a != b {
            applied.push(format!("{name} '{a}' -> '{b}'"));
        }
    };
    setting(
        "label_header",
        old.label_header.clone(),
        new.label_header.clone(),
    );
    setting(
        "verstat",
        opt(old.verstat.as_ref()),
        opt(new.verstat.as_ref()),
    );
    setting("server", old.server.clone(), new.server.clone());
    setting(
        "reason_header",
        old.reason_header.to_string(),
        new.reason_header.to_string(),
    );
    let (op, np) = (&old.proxy, &new.proxy);
    // The [proxy] settings read live (workers and rate_keys are start-only, below).
    macro_rules! live {
        ($($f:ident),*) => {$(
            setting(concat!("[proxy] ", stringify!($f)), format!("{:?}", op.$f), format!("{:?}", np.$f));
        )*};
    }
    live!(
        overload_ms,
        retry_after,
        tcp_idle_secs,
        max_tcp_connections,
        udp_mtu,
        proxy_require_accepted,
        probe_secs,
        drain_secs,
        calls_file
    );
    applied
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"
[lists.blacklist]
entries = ["+8613800000001", "+8617099999*"]
[[trunk]]
name = "intl"
role = "international"
listen = ["udp:127.0.0.1:5060"]
sources = ["10.0.0.0/24"]
[[trunk]]
name = "ent"
role = "enterprise"
listen = ["udp:127.0.0.1:5060"]
sources = ["10.0.1.0/24"]
hours = "08:00-21:00"
utc_offset = "+08:00"
[trunk.whitelist]
entries = ["+864008001234"]
[trunk.auth]
users = ["pbx:secret"]
"#;

    fn policy(text: &str) -> Policy {
        Policy::from_str(text, "t.toml", std::path::Path::new(".")).expect("test policy")
    }

    fn diff(new: &str) -> Changes {
        changes(&policy(BASE), &policy(new))
    }

    #[test]
    fn the_same_policy_changes_nothing() {
        // Loaded twice: the digest nonce key is drawn anew (no secret configured), which
        // is no change of the trunk's terms.
        let c = diff(BASE);
        assert!(c.is_empty(), "{c:?}");
        assert!(changes(&Policy::builtin().unwrap(), &Policy::builtin().unwrap()).is_empty());
    }

    /// A behaviour rule's second setting written out at its default is no change; at
    /// another value it is one.
    #[test]
    fn behaviour_settings_at_their_defaults_change_nothing() {
        let with = |extra: &str| {
            BASE.replace(
                "[trunk.whitelist]",
                &format!("[trunk.behaviour]\nring_once = 5\n{extra}[trunk.whitelist]"),
            )
        };
        let base = policy(&with(""));
        let c = changes(
            &base,
            &policy(&with("ring_once_secs = 5\nshort_call_secs = 10\n")),
        );
        assert!(c.is_empty(), "{c:?}");
        let c = changes(&base, &policy(&with("ring_once_secs = 6\n")));
        assert_eq!(c.applied, ["trunk ent: behaviour thresholds"], "{c:?}");
    }

    /// Lists that lose more than half their entries, and at least 100, are named (a
    /// reload refuses them unless forced); smaller cuts and small lists are edits.
    #[test]
    fn lists_cut_by_more_than_half_are_named() {
        let with = |black: usize, white: usize| {
            let nums = |p: &str, n: usize| {
                (0..n)
                    .map(|i| format!("\"{p}{i:04}\""))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            policy(
                &BASE
                    .replace(
                        "entries = [\"+8613800000001\", \"+8617099999*\"]",
                        &format!("entries = [{}]", nums("+8613800000", black)),
                    )
                    .replace(
                        "entries = [\"+864008001234\"]",
                        &format!("entries = [{}]", nums("+8640080", white)),
                    ),
            )
        };
        let old = with(1000, 300);
        for (black, white, named) in [
            (1000, 300, vec![]),
            (501, 151, vec![]),
            (500, 150, vec![]),
            (499, 300, vec!["list blacklist 1000 -> 499 entries"]),
            (
                0,
                0,
                vec![
                    "list blacklist 1000 -> 0 entries",
                    "trunk ent whitelist 300 -> 0 entries",
                ],
            ),
            (2000, 100, vec!["trunk ent whitelist 300 -> 100 entries"]),
        ] {
            assert_eq!(
                shrunk_lists(&old, &with(black, white)),
                named,
                "{black} {white}"
            );
        }
        // Under 100 gone: an edit of a small list.
        assert!(shrunk_lists(&with(150, 99), &with(60, 0)).is_empty());
        assert_eq!(
            shrunk_lists(&with(200, 0), &with(0, 0)),
            ["list blacklist 200 -> 0 entries"]
        );
        // Segments are counted apart (QA 155: a blacklist cut by 5% lost all its
        // segments): half of them gone is refused, a tenth warned of.
        let segs = |numbers: usize, segments: usize| {
            let list: Vec<String> = (0..numbers)
                .map(|i| format!("\"+8613800{i:05}\""))
                .chain((0..segments).map(|i| format!("\"+8617{i:04}*\"")))
                .collect();
            policy(&BASE.replace(
                "entries = [\"+8613800000001\", \"+8617099999*\"]",
                &format!("entries = [{}]", list.join(", ")),
            ))
        };
        let old = segs(1000, 40);
        assert_eq!(
            shrunk_lists(&old, &segs(1000, 0)),
            ["list blacklist 40 -> 0 segments"]
        );
        assert!(shrunk_lists(&old, &segs(1000, 30)).is_empty());
        assert_eq!(
            cut_warning(&old, &segs(1000, 30)).as_deref(),
            Some(
                "list blacklist 40 -> 30 segments lost more than a tenth: meant? (a list file cut, or read while being written, is refused only below half)"
            )
        );
        assert_eq!(cut_warning(&old, &segs(950, 40)), None);
        // Under 10 gone: an edit.
        assert!(shrunk_lists(&segs(0, 12), &segs(0, 3)).is_empty());
    }

    #[test]
    fn lists_count_what_was_added_and_removed() {
        let c = diff(&BASE.replace(
            r#"["+8613800000001", "+8617099999*"]"#,
            r#"["+8613800000002", "13800000003", "+8617099999*"]"#,
        ));
        assert_eq!(c.applied, ["list blacklist +2 -1 (2 -> 3 entries)"]);
        assert!(c.restart.is_empty());
        // The same entries written otherwise (national form, another order, twice) are
        // no change.
        let c = diff(&BASE.replace(
            r#"["+8613800000001", "+8617099999*"]"#,
            r#"["+8617099999*", "13800000001", "008613800000001"]"#,
        ));
        assert!(c.is_empty(), "{c:?}");
        let c = diff(&BASE.replace(
            r#"["+864008001234"]"#,
            r#"["+864008001234", "+864008001235"]"#,
        ));
        assert_eq!(c.applied, ["trunk ent: whitelist +1 -0 (1 -> 2 entries)"]);
        let c = diff(&BASE.replace(
            r#"["+8613800000001", "+8617099999*"]"#,
            r#"["+8617099999*"]"#,
        ));
        assert_eq!(c.applied, ["list blacklist +0 -1 (2 -> 1 entry)"]);
    }

    #[test]
    fn trunk_contract_and_rules() {
        let c = diff(
            &(BASE
                .replace("08:00-21:00", "07:00-22:00")
                .replace(
                    "[trunk.auth]\nusers = [\"pbx:secret\"]",
                    "[trunk.auth]\nusers = [\"pbx:other\"]",
                )
                .replace(
                    "sources = [\"10.0.1.0/24\"]",
                    "sources = [\"10.0.1.0/24\", \"10.0.2.7\"]\nmax_calls_per_minute = 60",
                )
                .replace(
                    "sources = [\"10.0.0.0/24\"]",
                    "sources = [\"10.0.0.0/24\"]\nbare_numbers = \"international\"",
                )
                + "[rules.blacklist]\naction = \"monitor\"\n"),
        );
        assert_eq!(
            c.applied,
            [
                "trunk intl: bare_numbers national -> international",
                "trunk intl: rule blacklist reject 608 -> monitor",
                "trunk ent: sources [10.0.1.0/24] -> [10.0.1.0/24, 10.0.2.7/32]",
                "trunk ent: hours 08:00-21:00 UTC+08:00 -> 07:00-22:00 UTC+08:00",
                "trunk ent: max_calls_per_minute none -> 60",
                "trunk ent: digest authentication terms",
                "trunk ent: rule blacklist reject 608 -> monitor",
            ]
        );
        assert!(c.restart.is_empty());
        // The same action with another fallback or label says which.
        let c = diff(&format!(
            "{BASE}[rules.enterprise-rate-trunk]\nfallback = \"closed\"\n[rules.label-mvno]\nlabel = \"resale\"\n"
        ));
        assert!(
            c.applied.contains(
                &"trunk ent: rule enterprise-rate-trunk fallback open -> closed".to_string()
            ),
            "{:?}",
            c.applied
        );
        // Both parts of one rule's change are named.
        let c2 = diff(&format!(
            "{BASE}[rules.enterprise-rate-trunk]\nfallback = \"closed\"\ncode = 486\n"
        ));
        assert!(
            c2.applied.contains(
                &"trunk ent: rule enterprise-rate-trunk reject 403 -> reject 486, fallback open -> closed"
                    .to_string()
            ),
            "{:?}",
            c2.applied
        );
        assert!(
            c.applied
                .contains(&"trunk ent: rule label-mvno label 'mvno' -> 'resale'".to_string()),
            "{:?}",
            c.applied
        );
    }

    #[test]
    fn trunks_added_removed_and_reordered() {
        let intl = &BASE[BASE.find("[[trunk]]\nname = \"intl\"").unwrap()
            ..BASE.find("[[trunk]]\nname = \"ent\"").unwrap()];
        let swapped = BASE.replace(intl, "") + intl;
        let c = diff(&swapped);
        assert_eq!(
            c.applied,
            ["trunk order (first match wins) intl, ent -> ent, intl"]
        );
        let c = diff(&BASE.replace(intl, ""));
        assert_eq!(c.applied, ["trunk intl removed"]);
        let c = diff(&format!(
            "{BASE}[[trunk]]\nname = \"ic\"\nrole = \"interconnect\"\nlisten = [\"udp:127.0.0.1:5060\"]\nsources = [\"10.9.0.1\"]\n"
        ));
        assert_eq!(c.applied, ["trunk ic added (interconnect)"]);
        assert!(c.restart.is_empty(), "same listen address: nothing to bind");
    }

    #[test]
    fn start_only_settings_need_a_restart() {
        let c = diff(
            &(BASE.replacen(
                "listen = [\"udp:127.0.0.1:5060\"]",
                "listen = [\"udp:127.0.0.1:5060\", \"tcp:127.0.0.1:5060\"]",
                1,
            ) + "[metrics]\nlisten = \"127.0.0.1:9191\"\n[proxy]\nworkers = 2\noverload_ms = 500\n"),
        );
        // The trunk's new address is not bound: it keeps the running ones until the
        // restart (QA 40), and says so.
        assert_eq!(c.applied, ["[proxy] overload_ms '250' -> '500'"]);
        assert_eq!(
            c.restart,
            [
                "listen addresses +tcp:127.0.0.1:5060",
                "[proxy] workers 0 -> 2",
                "[metrics] listen '127.0.0.1:9090' -> '127.0.0.1:9191'",
                "trunk intl: listen [udp:127.0.0.1:5060, tcp:127.0.0.1:5060] waits for the restart (not all bound): [udp:127.0.0.1:5060] stays in force",
            ]
        );
        // The behaviour tables keep their callee key: a secret set or changed waits
        // for the restart (QA 102); none on either side (a random key) is no change.
        let secret = |s: &str| policy(&format!("[general]\nauth_secret = \"{s}\"\n{BASE}"));
        let want = ["[general] auth_secret, as the behaviour tables' callee key"];
        assert_eq!(changes(&policy(BASE), &secret("a1b2c3d4e5")).restart, want);
        assert_eq!(
            changes(&secret("a1b2c3d4e5"), &secret("f6e5d4c3b2")).restart,
            want
        );
        assert!(
            changes(&secret("a1b2c3d4e5"), &secret("a1b2c3d4e5"))
                .restart
                .is_empty()
        );
        assert!(changes(&policy(BASE), &policy(BASE)).restart.is_empty());
        // What a new secret does to the calls up is said (QA 198 F2): nothing kept
        // unless the old one is accepted.
        let accepting = |s: &str, old: &str| {
            policy(&format!(
                "[general]\nauth_secret = \"{s}\"\nauth_secrets_accepted = [\"{old}\"]\n{BASE}"
            ))
        };
        let said = |a: &Policy, b: &Policy| changes(a, b).applied.join("\n");
        let lost = said(&secret("a1b2c3d4e5"), &secret("f6e5d4c3b2"));
        assert!(lost.contains("the old one not accepted"), "{lost}");
        let kept = said(
            &secret("a1b2c3d4e5"),
            &accepting("f6e5d4c3b2", "a1b2c3d4e5"),
        );
        assert!(
            kept.contains("still verify") && kept.contains("auth_secrets_accepted: 0 -> 1"),
            "{kept}"
        );
        assert!(said(&policy(BASE), &secret("a1b2c3d4e5")).contains("made before"));
        // Taking an accepted one out says what it does (QA 200); the old secret made
        // the current one again is no loss.
        let early = said(
            &accepting("f6e5d4c3b2", "a1b2c3d4e5"),
            &secret("f6e5d4c3b2"),
        );
        assert!(
            early.contains("1 -> 0 secrets; nonces and dialog tokens made under the 1 taken out no longer verify"),
            "{early}"
        );
        let back = said(
            &accepting("f6e5d4c3b2", "a1b2c3d4e5"),
            &accepting("a1b2c3d4e5", "f6e5d4c3b2"),
        );
        assert!(!back.contains("taken out"), "{back}");
        // Workers set on the command line are the running ones whatever the file says.
        let mut cli = StartOnly::of(&policy(BASE));
        let file = StartOnly::of(&policy(&format!("{BASE}[proxy]\nworkers = 3\n")));
        assert_eq!(cli.changes(&file), ["[proxy] workers 0 -> 3"]);
        cli.workers_cli = true;
        assert!(cli.changes(&file).is_empty());
        // Among the sockets bound, a trunk's share changes at once.
        let two = BASE.replacen(
            "listen = [\"udp:127.0.0.1:5060\"]",
            "listen = [\"udp:127.0.0.1:5060\", \"udp:127.0.0.1:5070\"]",
            1,
        );
        let old = policy(&two);
        let new = policy(&two.replacen(
            "listen = [\"udp:127.0.0.1:5060\", \"udp:127.0.0.1:5070\"]",
            "listen = [\"udp:127.0.0.1:5070\"]",
            1,
        ));
        let c = changes(&old, &new);
        assert_eq!(
            c.applied,
            [
                "trunk intl: listen [udp:127.0.0.1:5060, udp:127.0.0.1:5070] -> [udp:127.0.0.1:5070] (the trunk's share of the bound sockets)"
            ]
        );
    }

    /// A trunk moved to an address not bound keeps its running listen addresses (its
    /// peer's calls on them go on being taken), and a new trunk is left as written.
    #[test]
    fn a_trunk_moved_to_an_unbound_address_keeps_its_sockets() {
        let old = policy(BASE);
        let mut new = policy(
            &(BASE.replacen(
                "listen = [\"udp:127.0.0.1:5060\"]",
                "listen = [\"udp:[::1]:5060\"]",
                1,
            ) + "[[trunk]]\nname = \"ic\"\nrole = \"interconnect\"\nlisten = [\"udp:[::1]:5070\"]\nsources = [\"10.9.0.1\"]\n"),
        );
        let bound = StartOnly::of(&old).listen;
        let said = keep_bound_listens(&old, &bound, &mut new);
        assert_eq!(said.len(), 2, "{said:?}");
        assert_eq!(new.trunks[0].listen, old.trunks[0].listen);
        assert_eq!(new.trunks[1].listen, old.trunks[1].listen);
        assert_eq!(new.trunks[2].listen[0].to_string(), "udp:[::1]:5070");
        assert_eq!(
            said[1],
            "trunk ic: listen [udp:[::1]:5070] takes calls from the restart on (not bound)"
        );
    }
}
