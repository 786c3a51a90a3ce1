//! The policy: trunks, rules with their actions, and the lists they consult, compiled
//! from a TOML file ([`config`]) into lookup-ready form. Rules themselves are evaluated
//! by [`crate::decide`], in the fixed order of [`RuleId::ORDER`].

pub mod auth;
pub mod config;
pub mod diff;
pub mod lint;
pub mod lists;
pub mod rate;

use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::load_error::LoadError;
use crate::numbering::{Bare, Plan, Reading, ShortCodes};
use config::{ActionKind, Config, Days, Hours, ListConf, ListenSpec, Role, RuleConf, SourceSpec};
use lists::{NumberSet, NumberSetBuilder};

/// Every rule, in evaluation order. The first rule whose action is `reject` ends the
/// evaluation; `rewrite`, `label` and `monitor` hits accumulate and evaluation goes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RuleId {
    UnknownSource,
    TrunkAuth,
    WithheldCaller,
    BlankCaller,
    NumberingPlan,
    NoVoiceNumber,
    Blacklist,
    IntlForgedService,
    IntlDomesticCaller,
    EnterpriseForeignNetwork,
    EnterpriseNotWhitelisted,
    EnterpriseHours,
    EnterpriseRateTrunk,
    EnterpriseRateCaller,
    IsupMismatch,
    BehaviourAttempts,
    BehaviourCallees,
    BehaviourSequential,
    BehaviourLowAsr,
    BehaviourRingOnce,
    BehaviourShortCalls,
    GenericNumber,
    LabelMvno,
    LabelServiceShape,
    LabelInternational,
    ConcurrentCalls,
}

pub const RULE_COUNT: usize = 26;

impl RuleId {
    pub const ORDER: [RuleId; RULE_COUNT] = [
        RuleId::UnknownSource,
        RuleId::TrunkAuth,
        RuleId::WithheldCaller,
        RuleId::BlankCaller,
        RuleId::NumberingPlan,
        RuleId::NoVoiceNumber,
        RuleId::Blacklist,
        RuleId::IntlForgedService,
        RuleId::IntlDomesticCaller,
        RuleId::EnterpriseForeignNetwork,
        RuleId::EnterpriseNotWhitelisted,
        RuleId::EnterpriseHours,
        RuleId::EnterpriseRateTrunk,
        RuleId::EnterpriseRateCaller,
        RuleId::IsupMismatch,
        RuleId::BehaviourAttempts,
        RuleId::BehaviourCallees,
        RuleId::BehaviourSequential,
        RuleId::BehaviourLowAsr,
        RuleId::BehaviourRingOnce,
        RuleId::BehaviourShortCalls,
        RuleId::GenericNumber,
        RuleId::LabelMvno,
        RuleId::LabelServiceShape,
        RuleId::LabelInternational,
        RuleId::ConcurrentCalls,
    ];

    pub fn index(self) -> usize {
        self as usize
    }

    /// Rules the exempt list overrides: the blacklist and the behaviour rules, whose
    /// matches can be false positives an operator vouches against. The plan, identity,
    /// service-number and contract rules stand for everyone.
    pub fn exemptable(self) -> bool {
        self == RuleId::Blacklist || RuleId::BEHAVIOUR.contains(&self)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            RuleId::UnknownSource => "unknown-source",
            RuleId::TrunkAuth => "trunk-auth",
            RuleId::WithheldCaller => "withheld-caller",
            RuleId::BlankCaller => "blank-caller",
            RuleId::NumberingPlan => "numbering-plan",
            RuleId::NoVoiceNumber => "no-voice-number",
            RuleId::Blacklist => "blacklist",
            RuleId::IntlForgedService => "intl-forged-service",
            RuleId::IntlDomesticCaller => "intl-domestic-caller",
            RuleId::EnterpriseForeignNetwork => "enterprise-foreign-network",
            RuleId::EnterpriseNotWhitelisted => "enterprise-not-whitelisted",
            RuleId::EnterpriseHours => "enterprise-hours",
            RuleId::EnterpriseRateTrunk => "enterprise-rate-trunk",
            RuleId::EnterpriseRateCaller => "enterprise-rate-caller",
            RuleId::IsupMismatch => "isup-mismatch",
            RuleId::BehaviourAttempts => "behaviour-attempts",
            RuleId::BehaviourCallees => "behaviour-callees",
            RuleId::BehaviourSequential => "behaviour-sequential",
            RuleId::BehaviourLowAsr => "behaviour-low-asr",
            RuleId::BehaviourRingOnce => "behaviour-ring-once",
            RuleId::BehaviourShortCalls => "behaviour-short-calls",
            RuleId::GenericNumber => "generic-number",
            RuleId::LabelMvno => "label-mvno",
            RuleId::LabelServiceShape => "label-service-shape",
            RuleId::LabelInternational => "label-international",
            RuleId::ConcurrentCalls => "concurrent-calls",
        }
    }

    /// The Reason text a rule answers with unless the policy gives its own.
    pub fn default_reason(self) -> &'static str {
        self.default_action().2
    }

    /// Built-in action, code and reason text of each rule.
    fn default_action(self) -> (ActionKind, u16, &'static str, &'static str) {
        use ActionKind::*;
        match self {
            RuleId::UnknownSource => (Reject, 403, "Unknown source", ""),
            // RFC 3261 22.3: a proxy challenges with 407; wrong credentials get 403.
            RuleId::TrunkAuth => (Reject, 407, "Trunk authentication required", ""),
            // RFC 5079: 433 Anonymity Disallowed is the standard answer to a hidden caller.
            RuleId::WithheldCaller => (Reject, 433, "Caller withheld", ""),
            RuleId::BlankCaller => (Reject, 433, "Blank or anonymous calling number", ""),
            RuleId::NumberingPlan => (Reject, 403, "Calling number breaks the numbering plan", ""),
            RuleId::NoVoiceNumber => (Reject, 403, "Data-only or IoT number cannot call", ""),
            // RFC 8688: 608 Rejected is for calls refused by an analytics or list service.
            RuleId::Blacklist => (Reject, 608, "Calling number is blacklisted", ""),
            RuleId::IntlForgedService => (Reject, 403, "Service number forged from abroad", ""),
            RuleId::IntlDomesticCaller => (
                Reject,
                403,
                "Domestic calling number on international gateway",
                "",
            ),
            RuleId::EnterpriseForeignNetwork => (
                Reject,
                403,
                "Calling number not assigned by this network",
                "",
            ),
            RuleId::EnterpriseNotWhitelisted => {
                (Reject, 403, "Calling number not on trunk whitelist", "")
            }
            RuleId::EnterpriseHours => (Reject, 403, "Outside contracted calling hours", ""),
            RuleId::EnterpriseRateTrunk => (Reject, 403, "Trunk call frequency exceeded", ""),
            RuleId::EnterpriseRateCaller => (Reject, 403, "Caller call frequency exceeded", ""),
            RuleId::IsupMismatch => (
                Reject,
                403,
                "ISUP calling number does not match the SIP identity",
                "isup-mismatch",
            ),
            // RFC 8688's 608 is for calls refused by call analytics, which this is.
            // Behaviour is evidence, not proof: by default the call goes through labelled
            // for the callee's network; operators choose reject or rate-limit per trunk.
            RuleId::BehaviourAttempts => (Label, 608, "Call attempt rate", "high-rate"),
            RuleId::BehaviourCallees => (Label, 608, "Too many distinct callees", "many-callees"),
            RuleId::BehaviourSequential => {
                (Label, 608, "Callees dialled in sequence", "sequential")
            }
            RuleId::BehaviourLowAsr => (Label, 608, "Calls almost never answered", "low-asr"),
            RuleId::BehaviourRingOnce => (Label, 608, "Ring-once calls", "ring-once"),
            RuleId::BehaviourShortCalls => (Label, 608, "Answered calls cut short", "short-calls"),
            RuleId::GenericNumber => (
                Rewrite,
                0,
                "Generic number replaced by asserted identity",
                "",
            ),
            RuleId::LabelMvno => (Label, 0, "MVNO segment", "mvno"),
            RuleId::LabelServiceShape => (
                Label,
                0,
                "Foreign number shaped like a service number",
                "service-shape",
            ),
            RuleId::LabelInternational => (Off, 0, "Overseas call", "international"),
            // A capacity limit, not a verdict on the caller: 503 tells the sender to try
            // another route (RFC 3261 21.5.4), as a carrier SBC answers a full trunk.
            RuleId::ConcurrentCalls => (Reject, 503, "Too many concurrent calls on the trunk", ""),
        }
    }
}

/// A set of rules (bit i = `RuleId::ORDER[i]`), `Copy` so verdicts stay allocation-free.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RuleSet(pub u32);

impl RuleSet {
    pub fn insert(&mut self, r: RuleId) {
        self.0 |= 1 << r.index();
    }
    pub fn contains(self, r: RuleId) -> bool {
        self.0 & (1 << r.index()) != 0
    }
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
    pub fn iter(self) -> impl Iterator<Item = RuleId> {
        RuleId::ORDER.into_iter().filter(move |r| self.contains(*r))
    }
}

impl RuleId {
    pub const BEHAVIOUR: [RuleId; 6] = [
        RuleId::BehaviourAttempts,
        RuleId::BehaviourCallees,
        RuleId::BehaviourSequential,
        RuleId::BehaviourLowAsr,
        RuleId::BehaviourRingOnce,
        RuleId::BehaviourShortCalls,
    ];
    pub fn is_behaviour(self) -> bool {
        Self::BEHAVIOUR.contains(&self)
    }
    /// Rules that judge a calling number, and so may be matched by an ISUP one. The
    /// trunk's own rules (source, credentials, hours, trunk rate, concurrent calls) and
    /// the behaviour rules (keyed on the caller decided, whatever carried it) are not.
    pub fn judges_number(self) -> bool {
        matches!(
            self,
            RuleId::WithheldCaller
                | RuleId::BlankCaller
                | RuleId::NumberingPlan
                | RuleId::NoVoiceNumber
                | RuleId::Blacklist
                | RuleId::IntlForgedService
                | RuleId::IntlDomesticCaller
                | RuleId::EnterpriseForeignNetwork
                | RuleId::EnterpriseNotWhitelisted
                | RuleId::LabelMvno
                | RuleId::LabelServiceShape
                | RuleId::LabelInternational
        )
    }
}

/// What a rule does when it matches, resolved from defaults, `[rules]` and `[trunk.rules]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Action {
    pub kind: ActionKind,
    pub code: u16,
    pub reason: Arc<str>,
    pub label: Arc<str>,
    /// Rate rules: match every call while the shared counters cannot be reached.
    pub fail_closed: bool,
}

#[derive(Debug, Clone)]
pub struct Trunk {
    pub name: String,
    /// The name's hash: names the trunk in state that outlives a reload (calls up),
    /// where the trunk's position may change.
    pub id: u64,
    pub role: Role,
    pub sources: Vec<SourceSpec>,
    pub listen: Vec<ListenSpec>,
    pub next_hop: Option<ListenSpec>,
    pub whitelist: Option<NumberSet>,
    pub hours: Option<Hours>,
    pub utc_offset_min: i32,
    pub days: Option<Days>,
    pub max_per_minute: Option<u32>,
    pub max_per_minute_per_caller: Option<u32>,
    /// `max_concurrent_calls`.
    pub max_concurrent: Option<u32>,
    pub behaviour: Option<config::BehaviourConf>,
    pub record_route: bool,
    /// `Path` on the peers' REGISTERs ([`config::TrunkConf::register_path`]).
    pub register_path: bool,
    /// `trust_in_dialog_invites`: an INVITE with a To-tag passes unjudged even when its
    /// dialog is not one this gateway saw answered.
    pub trust_in_dialog_invites: bool,
    /// `refuse_withheld`: a withheld caller is refused with an asserted identity too.
    pub refuse_withheld: bool,
    /// Digest authentication of the trunk's calls (`[trunk.auth]`).
    pub auth: Option<auth::TrunkAuth>,
    /// How the peer writes bare numbers (`bare_numbers`).
    pub bare: Bare,
    pub actions: Vec<Action>,
}

/// Why a rule can never match on a trunk ([`Trunk::never_runs`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NeverRuns {
    /// Another role's rule.
    Role,
    /// A behaviour rule without `[trunk.behaviour]`.
    NoBehaviour,
    /// `trunk-auth` without `[trunk.auth]`.
    NoAuth,
    /// `concurrent-calls` without `max_concurrent_calls`.
    NoConcurrentLimit,
}

/// A trunk's short name in the behaviour tracker's call slots: [`Trunk::tag`].
pub type TrunkTag = u32;

impl Trunk {
    /// Whether its verdicts count earlier calls (rate limits, concurrent calls,
    /// behaviour rules): a call lost from a capture changes them.
    pub fn counts_calls(&self) -> bool {
        self.max_per_minute.is_some()
            || self.max_per_minute_per_caller.is_some()
            || self.max_concurrent.is_some()
            || self.behaviour.is_some()
    }

    /// How far back its counted rules look: a minute for the rate limits, the behaviour
    /// rules' window if longer.
    pub fn counted_window_ms(&self) -> u64 {
        let behaviour = self
            .behaviour
            .as_ref()
            .map_or(0, |b| u64::from(b.window_secs) * 1000);
        behaviour.max(60_000)
    }

    /// Whether its next hop is `addr` (an IPv4 one seen through a dual-stack socket
    /// too), reached over `transport` (`None`: either).
    pub fn sends_to(&self, addr: SocketAddr, transport: Option<config::Transport>) -> bool {
        let addr = crate::canonical(addr);
        self.next_hop.is_some_and(|n| {
            crate::canonical(n.addr) == addr && transport.is_none_or(|x| x == n.transport)
        })
    }

    /// Thirty-two bits of [`Trunk::id`]: how the behaviour tracker's calls name their
    /// trunk (small, and unlike a place in the file it survives a reload that reorders).
    /// Sixteen bits fitted the call slot as well, but two of 500 trunks would then share
    /// one with even odds, and mix their call outcomes; with 32, about 1 in 30,000.
    pub fn tag(&self) -> TrunkTag {
        (self.id >> 32) as TrunkTag
    }

    #[inline]
    pub fn action(&self, r: RuleId) -> &Action {
        &self.actions[r.index()]
    }
    /// The rule can match on this trunk: its role has it, a behaviour rule needs the
    /// trunk's behaviour thresholds, and trunk-auth its `[trunk.auth]`.
    pub fn runs(&self, r: RuleId) -> bool {
        self.never_runs(r).is_none()
    }
    /// The offset its hours are read in: `UTC+08:00`.
    pub fn utc_offset_text(&self) -> String {
        let off = self.utc_offset_min;
        format!(
            "UTC{}{:02}:{:02}",
            if off < 0 { '-' } else { '+' },
            off.unsigned_abs() / 60,
            off.unsigned_abs() % 60
        )
    }
    /// Why the rule can never match on this trunk, if it cannot ([`Trunk::runs`]).
    pub fn never_runs(&self, r: RuleId) -> Option<NeverRuns> {
        if !applies(self.role, r) {
            Some(NeverRuns::Role)
        } else if r.is_behaviour() && self.behaviour.is_none() {
            Some(NeverRuns::NoBehaviour)
        } else if r == RuleId::TrunkAuth && self.auth.is_none() {
            Some(NeverRuns::NoAuth)
        } else if r == RuleId::ConcurrentCalls && self.max_concurrent.is_none() {
            Some(NeverRuns::NoConcurrentLimit)
        } else {
            None
        }
    }
    /// The trunk's authentication, when it vouches for dialogs by the token of our
    /// Record-Route ([`auth::TrunkAuth::vouches_for_dialog`]): on a trunk told by its
    /// digest answers alone (no `sources`) whose dialogs are record-routed. Without
    /// `sources` nothing else tells the peer's requests in a dialog from a stranger's
    /// with made-up tags (QA 189).
    pub fn dialog_tokens(&self) -> Option<&auth::TrunkAuth> {
        self.auth
            .as_ref()
            .filter(|_| self.told_by_digest_alone() && self.record_route)
    }

    /// Whether only its callers' digest answers tell this trunk's requests from
    /// anyone's (`[trunk.auth]` and no `sources`): what the rules, the load's checks
    /// and `check` treat apart.
    pub fn told_by_digest_alone(&self) -> bool {
        self.auth.is_some() && self.sources.is_empty()
    }

    fn matches(&self, source: &SocketAddr, local: Option<&ListenSpec>) -> bool {
        let src_ok = self.sources.is_empty() || self.sources.iter().any(|s| s.matches(source));
        src_ok && local.is_none_or(|l| self.takes_at(l))
    }
    /// Whether messages that come to the socket `local` may be this trunk's: it listens
    /// there, or on the wildcard address of that port (which takes what comes to the
    /// specific socket too, when it is earlier in the file), or names no listen address.
    pub fn takes_at(&self, local: &ListenSpec) -> bool {
        self.listen.is_empty() || self.listen.iter().any(|x| x.covers(local))
    }
}

/// The policy-wide lists (`[lists.<name>]`), beside each trunk's `whitelist:<trunk>`.
pub const LIST_NAMES: [&str; 5] = [
    "blacklist",
    "protected",
    "roamers",
    "own_segments",
    "exempt",
];

/// A compiled policy. Shared read-only by every worker (swapped whole on reload).
#[derive(Debug, Clone)]
pub struct Policy {
    pub plan: Plan,
    pub trunks: Vec<Trunk>,
    pub blacklist: NumberSet,
    pub protected: NumberSet,
    pub roamers: NumberSet,
    pub own_segments: NumberSet,
    pub exempt: NumberSet,
    pub label_header: String,
    pub verstat: Option<String>,
    pub server: String,
    pub reason_header: bool,
    /// A trunk authenticates with a nonce key drawn at random for this load (no
    /// `auth_secret`): nonces another process gave (the live proxy's, in a capture) do
    /// not verify here.
    pub auth_key_random: bool,
    /// Key of the behaviour tables' callee hashing ([`crate::behaviour::local::LocalTracker::keyed`]):
    /// from `auth_secret`, else drawn at random for this load. A fixed hash let anyone
    /// with the binary pick victims that all count as one callee (QA 100), and so did
    /// one from the policy's digest, which `/healthz`, records and metrics show (QA
    /// 101). The tracker takes the key once, at start, so that a reload does not count a
    /// callee twice; replay gets the live estimates when both have the secret.
    pub callee_key: u64,
    /// [`Policy::callee_key`] was drawn at random (no `auth_secret`).
    pub callee_key_random: bool,
    /// Which `auth_secret` makes the nonces and dialog tokens, and which others'
    /// verify (`auth_secrets_accepted`): hashes of their keys, for a reload to say what a
    /// change of secret does to the calls up (QA 198 F2).
    pub secret_id: Option<u64>,
    pub accepted_ids: Vec<u64>,
    /// `[redis]` and `[hep]` hold settings as written (at their defaults too): `check`
    /// warns of them without their address.
    pub redis_written: bool,
    pub hep_written: bool,
    /// Actions for requests from no known trunk.
    pub default_actions: Vec<Action>,
    pub proxy: config::ProxyConf,
    pub behaviour: config::BehaviourTables,
    pub redis: config::RedisConf,
    /// Some trunk runs behaviour rules.
    pub behaviour_on: bool,
    /// Later messages of calls feed the tracker: some trunk runs behaviour rules or
    /// limits its concurrent calls.
    pub tracks_calls: bool,
    /// Some trunk knows its dialogs by the token of our Record-Route
    /// ([`Trunk::dialog_tokens`]): answers are looked at for tokens only then.
    pub dialog_tokens: bool,
    /// Some trunk's concurrent calls are shared with other gateways (`[redis]` and
    /// `max_concurrent_calls`): callers' BYEs are looked at for calls admitted elsewhere
    /// only then.
    pub shares_calls: bool,
    pub metrics: config::MetricsConf,
    pub records: config::RecordsConf,
    pub log: config::LogConf,
    pub hep: config::HepConf,
    /// The fingerprint of what it was built from (its settings but one gateway's own:
    /// [`fingerprinted`]; the plan, list files and published lists): records and
    /// `/healthz` carry it, `check` prints it, so that a decision can be traced to the
    /// policy that made it and gateways compared.
    pub digest: u64,
    /// The fingerprint of what the files alone make (the one a published set is put
    /// on, whichever set ran before).
    pub files_digest: u64,
    /// Where it was loaded from (for reloads and messages).
    pub source: String,
    /// What loading found that does nothing but is no error ([`lint::warnings`] starts
    /// with them).
    pub notes: Vec<String>,
    /// Lists whose files (named here) hold no entry: an export that failed or a file
    /// emptied (QA 203). A list published in their place is no longer empty, so
    /// [`Policy::with_lists`] takes its name out; [`lint::warnings`] words them.
    pub empty_files: Vec<(&'static str, Vec<String>)>,
}

/// "1 number", "2 numbers": the summary is read by people.
pub(crate) fn counted(n: usize, one: &str, many: &str) -> String {
    if n == 1 {
        format!("1 {one}")
    } else {
        format!("{n} {many}")
    }
}

/// Items as a policy writes them, comma-separated (summaries and reload reports).
fn joined<T: std::fmt::Display>(items: &[T]) -> String {
    items
        .iter()
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The built-in example policy (also `deploy/sipfence.toml`): works with no files.
pub const BUILTIN_CONFIG: &str = include_str!("../../deploy/sipfence.toml");

fn toml_error(file: &str, text: &str, e: &toml::de::Error) -> LoadError {
    let (line, col) = match e.span() {
        Some(sp) => crate::load_error::line_and_column(text.as_bytes(), sp.start),
        None => (0, 0),
    };
    let msg = e.message().trim().to_string();
    if line == 0 {
        LoadError::file(file, msg)
    } else {
        LoadError::at(file, line, format!("column {col}: {msg}"))
    }
}

/// The line of a policy text that a reason found after parsing is about: within the
/// `[[trunk]]` block of the trunk it names (the last of that name, since a name defined
/// twice is about the second), or the `[section]` or `[lists.name]` it names, the first
/// key it names (an `entry` of a list is in its `entries`); else the trunk's first line.
fn locate(text: &str, reason: &str) -> Option<usize> {
    let lines: Vec<&str> = text.lines().collect();
    // A key as written, or the last part of a dotted one (`proxy.retry_after = 0` at
    // the top level is `[proxy] retry_after`).
    let key_of = |l: &str| -> Option<String> {
        let (k, _) = l.split_once('=')?;
        let k = k.trim();
        let k = k.rsplit('.').next().unwrap_or(k).trim();
        (!k.is_empty() && k.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_'))
            .then(|| k.to_string())
    };
    // Each table: (header, first line, end), the trunk blocks with their subtables.
    let mut tables: Vec<(String, usize, usize)> = vec![];
    for (i, l) in lines.iter().enumerate() {
        let t = l.trim();
        let sub = t.starts_with("[trunk.") || t.starts_with("[[trunk.");
        if t.starts_with('[') && !sub {
            if let Some(last) = tables.last_mut() {
                last.2 = i;
            }
            tables.push((
                t.trim_matches(|c| c == '[' || c == ']').to_string(),
                i,
                lines.len(),
            ));
        }
    }
    let name_of = |(_, s, e): &(String, usize, usize)| {
        lines[*s..*e].iter().find_map(|l| {
            (key_of(l).as_deref() == Some("name"))
                .then(|| {
                    l.split_once('=')
                        .map(|(_, v)| v.trim().trim_matches(['"', '\'']).to_string())
                })
                .flatten()
        })
    };
    let trunk = tables.iter().rev().find(|t| {
        t.0 == "trunk"
            && name_of(t).is_some_and(|n| {
                [
                    format!("trunk '{n}'"),
                    format!("trunk {n}:"),
                    format!("trunk {n} "),
                    format!("trunk name '{n}'"),
                ]
                .iter()
                .any(|p| reason.contains(p.as_str()))
            })
    });
    let words: Vec<&str> = reason
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'))
        .filter(|w| w.len() >= 3)
        .collect();
    // A section the reason names (`general.label_header`, `blacklist entry 2`).
    let section = words.iter().find_map(|w| {
        let head = w.split('.').next().unwrap_or(w);
        tables
            .iter()
            .find(|t| t.0 != "trunk" && (t.0 == head || t.0 == format!("lists.{head}")))
    });
    let (mut s, mut e) = trunk.or(section).map_or((0, lines.len()), |t| (t.1, t.2));
    // A rule it names (`rule numbering-plan: ...`): that rule's table, in the trunk or
    // policy-wide. Its name's words (`plan`) are not keys to look for elsewhere.
    let rule = reason
        .split("rule ")
        .nth(1)
        .and_then(|r| {
            r.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
                .next()
        })
        .filter(|r| !r.is_empty());
    // Looked for in the trunk, or the whole file: a section the reason's words name
    // (`blacklist`) is not where `[rules.blacklist]` stands.
    let mut rule_at = None;
    if let Some(r) = rule {
        let header = |h: &str| {
            let h = h.trim();
            h == format!("[trunk.rules.{r}]") || h == format!("[rules.{r}]")
        };
        let (rs, re) = trunk.map_or((0, lines.len()), |t| (t.1, t.2));
        if let Some(j) = (rs..re).find(|&i| header(lines[i])) {
            let end = (j + 1..re)
                .find(|&i| lines[i].trim_start().starts_with('['))
                .unwrap_or(re);
            (s, e) = (j, end);
            rule_at = Some(j + 1);
        }
    }
    let find = |range: std::ops::Range<usize>, key: &str| {
        range
            .into_iter()
            .find(|&i| key_of(lines[i]).as_deref() == Some(key))
            .map(|i| i + 1)
    };
    // A trunk's subtable the reason names (`[trunk.whitelist]`), when it names no key.
    let table = |range: std::ops::Range<usize>, name: &str| {
        range
            .into_iter()
            .find(|&i| lines[i].trim() == format!("[trunk.{name}]"))
            .map(|i| i + 1)
    };
    let keys = || words.iter().map(|w| w.rsplit('.').next().unwrap_or(w));
    // A key it names in its table; then anywhere (a trunk's subtable may stand after
    // other tables); then the list `entries` an `entry` is in.
    // Anywhere, for a trunk, stops at the next trunk: another trunk's `sources` is not
    // the line of a trunk that has none.
    let anywhere = match trunk {
        Some(t) => {
            let next = (t.1 + 1..lines.len())
                .find(|&i| lines[i].trim() == "[[trunk]]")
                .unwrap_or(lines.len());
            t.1..next
        }
        None => 0..lines.len(),
    };
    keys()
        .find_map(|k| find(s..e, k))
        // The rule's own table, when none of its keys is named: the words of the rule's
        // name (`enterprise-hours`) are no keys to look for elsewhere.
        .or(rule_at)
        .or_else(|| keys().find_map(|k| find(anywhere.clone(), k)))
        .or_else(|| {
            keys()
                .any(|k| k == "entry")
                .then(|| find(s..e, "entries"))
                .flatten()
        })
        .or_else(|| keys().find_map(|k| table(anywhere.clone(), k)))
        .or_else(|| trunk.or(section).map(|t| t.1 + 1))
}

/// A file the policy names that cannot be read: the error says where the policy names
/// it, so that a typo in the path is found where it was made.
fn named_at(mut e: LoadError, text: &str, file: &str, path: &str) -> LoadError {
    if e.line.is_none()
        && let Some(i) = text
            .lines()
            .position(|l| l.contains(&format!("\"{path}\"")) || l.contains(&format!("'{path}'")))
    {
        e.reason = format!("{} (named at {file}:{})", e.reason, i + 1);
    }
    e
}

/// Largest behaviour table (`[behaviour] callers` or `calls`): 16M callers take 1.7 GiB.
const MAX_BEHAVIOUR_SLOTS: usize = 1 << 24;

/// What a rule's setting that does nothing beside its action is: an answer's code or
/// reason, or a label ([`resolve_actions`]'s notes).
#[derive(Clone, Copy)]
enum Unused {
    Answer,
    Label,
}

/// The actions `base` with the settings of `over` (rule tables, `where_` they are:
/// `[rules.X]` or a trunk's) on top; settings that do nothing go to `notes`.
fn resolve_actions(
    base: &[Action],
    over: &std::collections::BTreeMap<RuleId, RuleConf>,
    file: &str,
    where_: &str,
    notes: &mut Vec<(RuleId, Unused, String)>,
) -> Result<Vec<Action>, LoadError> {
    let mut out = base.to_vec();
    for (r, c) in over {
        // A code or a reason set beside an action that answers nothing: kept for a rule
        // being tried (`monitor` now, `reject` once trusted), so a note, not an error.
        // One inherited from `[rules]` under a trunk's `monitor` is that case exactly.
        let kind = c.action.unwrap_or(out[r.index()].kind);
        if !matches!(kind, ActionKind::Reject | ActionKind::RateLimit) {
            let set: Vec<&str> = [("code", c.code.is_some()), ("reason", c.reason.is_some())]
                .into_iter()
                .filter_map(|(k, s)| s.then_some(k))
                .collect();
            if !set.is_empty() {
                notes.push((
                    *r,
                    Unused::Answer,
                    format!(
                        "{where_}rule {} sets {} but its action {} sends no answer: unused until the action is reject",
                        r.as_str(),
                        set.join(" and "),
                        kind.as_str()
                    ),
                ));
            }
        }
        // A label beside an action that adds none (QA 176 N7), likewise.
        if c.label.is_some()
            && matches!(
                kind,
                ActionKind::Reject | ActionKind::Drop | ActionKind::Monitor | ActionKind::Off
            )
        {
            notes.push((
                *r,
                Unused::Label,
                format!(
                    "{where_}rule {} sets label but its action {} adds none: unused until the action is label{}",
                    r.as_str(),
                    kind.as_str(),
                    if *r == RuleId::GenericNumber {
                        " or rewrite"
                    } else {
                        ""
                    }
                ),
            ));
        }
        if c.action == Some(ActionKind::RateLimit) && !r.is_behaviour() {
            return Err(LoadError::file(
                file,
                format!(
                    "rule {}: rate-limit applies to behaviour rules only",
                    r.as_str()
                ),
            ));
        }
        // A request no trunk takes has no next hop: let through, it would be dropped
        // unanswered while `explain` and the metrics said it went on (QA 70).
        if *r == RuleId::UnknownSource
            && c.action
                .is_some_and(|k| !matches!(k, ActionKind::Reject | ActionKind::Drop))
        {
            return Err(LoadError::file(
                file,
                format!(
                    "{where_}rule unknown-source: action must be reject or drop (a request no trunk takes has no next hop to go to; {} would drop it unanswered)",
                    c.action.map_or("", |k| k.as_str())
                ),
            ));
        }
        // The challenge is a 407 with Proxy-Authenticate (RFC 3261 22.3), wrong
        // credentials a 403: a 401 or 403 carrying the challenge is one no PBX answers,
        // and every call of the trunk would fail (QA 70).
        if *r == RuleId::TrunkAuth && c.code.is_some() {
            return Err(LoadError::file(
                file,
                format!(
                    "{where_}rule trunk-auth: code cannot be set (the challenge is 407 with Proxy-Authenticate, wrong credentials and a locked address get 403)"
                ),
            ));
        }
        // Dropping a call without credentials drops the challenge: no PBX could ever
        // authenticate, and every call of the trunk would vanish (QA 72).
        if *r == RuleId::TrunkAuth && c.action == Some(ActionKind::Drop) {
            return Err(LoadError::file(
                file,
                format!(
                    "{where_}rule trunk-auth: action drop would never send the challenge, so no PBX could authenticate (reject challenges with 407; monitor lets calls on while authentication is tried)"
                ),
            ));
        }
        // A 401 or 407 asks for credentials: without the challenge header that only
        // trunk-auth writes, no UA can answer it (QA 72).
        if *r != RuleId::TrunkAuth && matches!(c.code.map(|c| c.0), Some(401 | 407)) {
            return Err(LoadError::file(
                file,
                format!(
                    "{where_}rule {}: code {} asks for credentials, which only trunk-auth's challenge gives (use 403, 603 or 608)",
                    r.as_str(),
                    c.code.map_or(0, |c| c.0)
                ),
            ));
        }
        // Only the generic number has a rewrite (the presented number replaced by the
        // asserted one). Elsewhere "rewrite" had meant an unnamed label: a blacklisted
        // call went through marked with an empty value, while `check` said ok.
        if c.action == Some(ActionKind::Rewrite) && *r != RuleId::GenericNumber {
            return Err(LoadError::file(
                file,
                format!(
                    "rule {}: action rewrite applies to generic-number only (label lets a call through marked)",
                    r.as_str()
                ),
            ));
        }
        let a = &mut out[r.index()];
        if let Some(k) = c.action {
            a.kind = k;
        }
        if let Some(code) = c.code {
            a.code = code.0;
        }
        if let Some(reason) = &c.reason {
            // Written as the Reason header's quoted text (RFC 3326): a quote or a line
            // break would end it early or add header lines.
            if reason
                .chars()
                .any(|ch| ch.is_control() || ch == '"' || ch == '\\')
            {
                return Err(LoadError::file(
                    file,
                    format!(
                        "rule {}: reason must be text without quotes, backslashes or control characters (it is sent as the Reason header's text)",
                        r.as_str()
                    ),
                ));
            }
            a.reason = reason.as_str().into();
        }
        if let Some(l) = &c.label {
            // Labels are joined with ',' into one header value: a token each.
            let l = l.trim();
            if l.is_empty() || !l.bytes().all(crate::sip::lex::is_token) {
                return Err(LoadError::file(
                    file,
                    format!(
                        "rule {}: label '{l}' must be a token (letters, digits, -.!%*_+`'~), not empty",
                        r.as_str()
                    ),
                ));
            }
            a.label = l.into();
        }
        // A rule labelling without a label of its own says its name: the callee's
        // network is told which rule it was, not an empty value.
        if a.kind == ActionKind::Label && a.label.is_empty() {
            a.label = r.as_str().into();
        }
        if let Some(f) = c.fallback {
            if !matches!(
                r,
                RuleId::EnterpriseRateTrunk | RuleId::EnterpriseRateCaller
            ) {
                return Err(LoadError::file(
                    file,
                    format!(
                        "rule {}: fallback applies to the rate rules only",
                        r.as_str()
                    ),
                ));
            }
            a.fail_closed = f == config::Fallback::Closed;
        }
        if matches!(a.kind, ActionKind::Reject | ActionKind::RateLimit) && a.code == 0 {
            a.code = 403;
        }
    }
    Ok(out)
}

/// `[log] level`: a tracing filter whose every directive names a level (`info`,
/// `sipfence=debug`, `warn,sipfence::proxy=trace`). A directive without one is a target
/// filter to tracing, so a typo (`warning`, `verbose`) would silence every log line,
/// the refused-reload errors operators grep for among them.
/// The `[log] level` as the logger should get it: each directive names a level
/// (`LEVEL` or `TARGET=LEVEL`, a target that is no level name), written without the
/// white space the filter would not forgive (`" info"` silenced every line, and
/// `"info, sipfence=debug"` lost its second part).
fn check_log_level(level: &str) -> Result<String, String> {
    const LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "off"];
    if level.trim().is_empty() {
        return Err("log.level is empty (info is the usual one)".to_string());
    }
    let is_level = |l: &str| LEVELS.iter().any(|x| l.eq_ignore_ascii_case(x));
    let mut clean = vec![];
    for d in level.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        let (target, lvl) = match d.rsplit_once('=') {
            Some((t, l)) => (Some(t.trim()), l.trim()),
            None => (None, d),
        };
        let bad_target = target.is_some_and(|t| {
            t.is_empty() || is_level(t) || t.contains(|c: char| c.is_whitespace())
        });
        if bad_target || !is_level(lvl) {
            return Err(format!(
                "log.level '{level}': '{d}' names no level (one of {}, or target=level with a module path as target)",
                LEVELS.join(", ")
            ));
        }
        clean.push(match target {
            Some(t) => format!("{t}={}", lvl.to_ascii_lowercase()),
            None => lvl.to_ascii_lowercase(),
        });
    }
    Ok(clean.join(","))
}

fn check_behaviour(
    b: config::BehaviourConf,
    trunk: &str,
    file: &str,
) -> Result<config::BehaviourConf, LoadError> {
    let bad = |why: &str| {
        Err(LoadError::file(
            file,
            format!("trunk {trunk} behaviour: {why}"),
        ))
    };
    if b.window_secs == 0 || b.window_secs > 86_400 {
        return bad("window_secs must be 1..=86400");
    }
    if b.min_asr_percent.is_some_and(|p| p > 100) {
        return bad("min_asr_percent must be 0..=100");
    }
    if b.asr_settle_secs() > 60 {
        return bad("asr_settle_secs must be 0..=60");
    }
    if b.ring_once_percent() > 100 {
        return bad("ring_once_percent must be 0..=100");
    }
    if b.ring_once_secs() > 3600 || b.short_call_secs() > 86_400 {
        return bad("ring_once_secs must be at most 3600 and short_call_secs at most 86400");
    }
    // A threshold of 0 is reached by every call: the rule would flag all of them.
    for (key, v) in [
        ("attempts", b.attempts),
        ("distinct_callees", b.distinct_callees),
        ("sequential_callees", b.sequential_callees),
        ("ring_once", b.ring_once),
        ("short_calls", b.short_calls),
    ] {
        if v == Some(0) {
            return bad(&format!(
                "{key} = 0 would flag every call (leave it out to turn the rule off)"
            ));
        }
    }
    if b.ring_once.is_some() && b.ring_once_secs() == 0 {
        return bad("ring_once_secs = 0: no cancelled call would ever count as ring-once");
    }
    if b.short_calls.is_some() && b.short_call_secs() == 0 {
        return bad("short_call_secs = 0: no answered call would ever count as short");
    }
    if b.rate_limit_per_minute == 0 {
        return bad(
            "rate_limit_per_minute = 0 would refuse every call of a rate-limited caller (reject does that, and says so)",
        );
    }
    Ok(b)
}

/// What of a policy file makes the policy, for its fingerprint: its settings as parsed,
/// in a fixed order, without what each gateway sets for itself (listen addresses,
/// `[metrics]`, `[log]`, `[records]`, `[hep]`, `[redis] instance`, `[proxy] advertise`,
/// `workers` and `calls_file`) and without list file names (their bytes are hashed instead). So
/// gateways meant to run one policy, each with its own addresses and name, show one
/// fingerprint, and a comment or a re-indent changes nothing (QA 80: each did).
fn fingerprinted(text: &str) -> String {
    fn drop_files(v: &mut toml::Value) {
        match v {
            toml::Value::Table(t) => {
                t.remove("files");
                t.iter_mut().for_each(|(_, v)| drop_files(v));
            }
            toml::Value::Array(a) => a.iter_mut().for_each(drop_files),
            _ => {}
        }
    }
    let Ok(mut t) = text.parse::<toml::Table>() else {
        return text.to_string();
    };
    for k in ["metrics", "log", "records", "hep"] {
        t.remove(k);
    }
    if let Some(toml::Value::Table(r)) = t.get_mut("redis") {
        r.remove("instance");
    }
    if let Some(toml::Value::Table(p)) = t.get_mut("proxy") {
        p.remove("advertise");
        p.remove("workers");
        // A path of the host's, as `[records] dir` is: two gateways on one host need
        // two (QA 153: their fingerprints differed by it).
        p.remove("calls_file");
    }
    // A table left empty (a `[proxy]` that held only `workers`), or written empty, says
    // what its absence says (QA 103: a gateway with `[proxy] workers = 4` showed another
    // fingerprint than one without; QA 105: `[lists.roamers]`). Not `[trunk.behaviour]`
    // or `[trunk.whitelist]`, whose presence means something.
    fn drop_empty(t: &mut toml::Table) {
        t.retain(|_, v| !matches!(v, toml::Value::Table(t) if t.is_empty()));
    }
    // A list of no files and no entries is no list (QA 107: a template's empty loop
    // wrote `files = []`).
    if let Some(toml::Value::Table(lists)) = t.get_mut("lists") {
        for (_, l) in lists.iter_mut() {
            if let toml::Value::Table(l) = l {
                l.retain(|_, v| !matches!(v, toml::Value::Array(a) if a.is_empty()));
            }
        }
    }
    for section in ["rules", "lists"] {
        if let Some(toml::Value::Table(r)) = t.get_mut(section) {
            drop_empty(r);
        }
    }
    if let Some(toml::Value::Array(trunks)) = t.get_mut("trunk") {
        for tr in trunks.iter_mut() {
            if let toml::Value::Table(tr) = tr {
                tr.remove("listen");
                if let Some(toml::Value::Table(r)) = tr.get_mut("rules") {
                    drop_empty(r);
                }
                if matches!(tr.get("rules"), Some(toml::Value::Table(r)) if r.is_empty()) {
                    tr.remove("rules");
                }
            }
        }
    }
    drop_empty(&mut t);
    let mut v = toml::Value::Table(t);
    drop_files(&mut v);
    // A table's keys in order (toml's map sorts them), so that the order the file
    // wrote them in does not count either.
    v.to_string()
}

impl Policy {
    /// The built-in example policy.
    pub fn builtin() -> Result<Policy, LoadError> {
        Policy::from_str(BUILTIN_CONFIG, "builtin:sipfence.toml", Path::new("."))
    }

    /// Loads a policy file and every file it names (relative to its directory).
    pub fn load(path: &Path) -> Result<Policy, LoadError> {
        let name = path.display().to_string();
        let text = crate::load_error::read_text(path, &name)?;
        let dir = path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        Policy::from_str(&text, &name, &dir)
    }

    pub fn from_str(text: &str, file: &str, dir: &Path) -> Result<Policy, LoadError> {
        Policy::build(text, file, dir).map_err(|mut e| {
            // A reason found once the file parsed (a trunk defined twice, a bad entry)
            // has no line of its own: the one it names is looked up in the text.
            if e.line.is_none() && e.file == file {
                e.line = locate(text, &e.reason);
            }
            e
        })
    }

    fn build(text: &str, file: &str, dir: &Path) -> Result<Policy, LoadError> {
        let mut cfg: Config = toml::from_str(text).map_err(|e| toml_error(file, text, &e))?;
        // Whether a section holds any setting as written: parsed, a default written out
        // cannot be told from one left out.
        let raw = text.parse::<toml::Table>().ok();
        let written = |section: &str| {
            raw.as_ref()
                .and_then(|t| t.get(section))
                .and_then(toml::Value::as_table)
                .is_some_and(|t| !t.is_empty())
        };
        // The fingerprint of everything the policy is built from, in load order: its
        // settings ([`fingerprinted`]), the plan's and every list file's bytes.
        let digest =
            std::cell::Cell::new(crate::sip::lex::tag_hash(&[fingerprinted(text).as_bytes()]));
        let add_digest = |d: u64| {
            digest.set(crate::sip::lex::tag_hash(&[
                &digest.get().to_le_bytes(),
                &d.to_le_bytes(),
            ]))
        };
        let plan = if cfg.general.plan == "builtin:cn" {
            add_digest(crate::sip::lex::tag_hash(&[
                crate::numbering::plan::BUILTIN_CN.as_bytes(),
            ]));
            Plan::builtin()
        } else if cfg.general.plan.starts_with("builtin:") {
            return Err(LoadError::file(
                file,
                format!(
                    "plan = \"{}\": the built-in plan is builtin:cn (other plans are plan files)",
                    cfg.general.plan
                ),
            ));
        } else {
            let p = dir.join(&cfg.general.plan);
            let pn = p.display().to_string();
            let t = crate::load_error::read_text(&p, &pn)
                .map_err(|e| named_at(e, text, file, &cfg.general.plan))?;
            add_digest(crate::sip::lex::tag_hash(&[t.as_bytes()]));
            Plan::parse(&t, &pn)?
        };
        // The entries keep their lines for `check`'s warnings: every entry of a
        // whitelist (`all`), the segments and ranges of the policy-wide lists.
        let load_list = |l: &ListConf, what: &str, all: bool| -> Result<NumberSet, LoadError> {
            let mut b = NumberSetBuilder::for_plan(&plan).with_origins(all);
            for f in &l.files {
                add_digest(
                    b.add_file(&dir.join(f))
                        .map_err(|e| named_at(e, text, file, f))?,
                );
            }
            for (i, e) in l.entries.iter().enumerate() {
                b.add_entry(e)
                    .map_err(|r| LoadError::file(file, format!("{what} entry {}: {r}", i + 1)))?;
            }
            Ok(b.build())
        };
        // The metrics address is bound only by `run`: a typo must fail `check` too.
        // An IPv6 address is bracketed, as in every other address setting: `fd00::1:9090`
        // is one address, which a split at the last colon would bind as another with
        // port 9090 (QA 174 F3). A name is resolved by the bind.
        let m = &cfg.metrics.listen;
        let named = |(host, port): (&str, &str)| {
            !host.is_empty()
                && host
                    .bytes()
                    .all(|c| c.is_ascii_alphanumeric() || c == b'.' || c == b'-')
                && port.parse::<u16>().is_ok()
        };
        if !m.is_empty()
            && m.parse::<std::net::SocketAddr>().is_err()
            && !m.rsplit_once(':').is_some_and(named)
        {
            return Err(LoadError::file(
                file,
                format!(
                    "metrics.listen '{m}' is not host:port (e.g. 127.0.0.1:9090, [::1]:9090){}",
                    config::zone_said(m)
                ),
            ));
        }
        // Port 0 (`:0`, `:00`, `:+0`) binds a port of the kernel's choosing, which no
        // Prometheus knows (QA 177 F, QA 178 E1).
        if m.rsplit_once(':')
            .is_some_and(|(_, p)| p.parse::<u16>() == Ok(0))
        {
            return Err(LoadError::file(
                file,
                format!(
                    "metrics.listen '{m}' has port 0, which the kernel would choose: name the port Prometheus scrapes (e.g. 127.0.0.1:9090)"
                ),
            ));
        }
        // Both are TCP: the one bound second would fail at start, after `check` said ok.
        let metrics_addr = m.parse::<std::net::SocketAddr>().ok().or_else(|| {
            // `localhost` is the loopback address, as the bind will resolve it.
            m.strip_prefix("localhost:")
                .and_then(|p| p.parse::<u16>().ok())
                .map(|p| std::net::SocketAddr::from(([127, 0, 0, 1], p)))
        });
        if let Some(ma) = metrics_addr {
            let ma = crate::canonical(ma);
            let clash = |a: &std::net::SocketAddr| {
                a.port() == ma.port()
                    && (a.ip() == ma.ip() || a.ip().is_unspecified() || ma.ip().is_unspecified())
            };
            if let Some(l) = cfg
                .trunks
                .iter()
                .flat_map(|t| t.listen.iter())
                .find(|l| l.transport != config::Transport::Udp && clash(&l.addr))
            {
                return Err(LoadError::file(
                    file,
                    format!(
                        "metrics.listen '{m}' takes the port of the SIP listen address {}:{}",
                        l.transport.as_str(),
                        l.addr
                    ),
                ));
            }
        }
        let label_header = cfg.general.label_header.trim().to_string();
        if label_header.is_empty() || !label_header.bytes().all(crate::sip::lex::is_token) {
            return Err(LoadError::file(
                file,
                format!("general.label_header '{label_header}' is not a header name"),
            ));
        }
        // A field SIP already has (From, Via, Content-Length...) would be a second one,
        // which the next hop refuses, or be removed from every call as a peer's label.
        if crate::sip::header::is_sip_field(label_header.as_bytes()) {
            return Err(LoadError::file(
                file,
                format!(
                    "general.label_header '{label_header}' is a SIP header of its own: name a header of sipfence's (X-Sipfence-Label)"
                ),
            ));
        }
        if let Some(v) = &cfg.general.verstat
            && (v.is_empty() || !v.bytes().all(crate::sip::lex::is_token))
        {
            return Err(LoadError::file(
                file,
                format!("general.verstat '{v}' must be a token"),
            ));
        }
        // Written into every response: text without control characters (RFC 3261
        // 20.35), or it would add header lines of its own.
        if cfg.general.server.chars().any(char::is_control) {
            return Err(LoadError::file(
                file,
                "general.server must be text without control characters (no line breaks)"
                    .to_string(),
            ));
        }
        cfg.log.level =
            check_log_level(&cfg.log.level).map_err(|why| LoadError::file(file, why))?;
        // Relative like the list files: the records must not move with the directory
        // the gateway was started from (systemd starts it in /).
        if !cfg.records.dir.is_empty() && Path::new(&cfg.records.dir).is_relative() {
            cfg.records.dir = dir.join(&cfg.records.dir).to_string_lossy().into_owned();
        }
        if !cfg.proxy.calls_file.is_empty() && Path::new(&cfg.proxy.calls_file).is_relative() {
            cfg.proxy.calls_file = dir
                .join(&cfg.proxy.calls_file)
                .to_string_lossy()
                .into_owned();
        }
        // Written at a stop by renaming over it: a directory there never could be (QA 135:
        // said only at the stop, when the calls were lost to the next start).
        if Path::new(&cfg.proxy.calls_file).is_dir() {
            return Err(LoadError::file(
                file,
                format!(
                    "[proxy] calls_file '{}' is a directory, not a file",
                    cfg.proxy.calls_file
                ),
            ));
        }
        // Removed at start and replaced at a stop: another file there (the policy's own,
        // a list: QA 137) would be lost.
        if !cfg.proxy.calls_file.is_empty()
            && crate::behaviour::live::foreign_file(&cfg.proxy.calls_file)
        {
            return Err(LoadError::file(
                file,
                format!(
                    "[proxy] calls_file '{}' names a file that is not a calls file: it would be removed at start and replaced at the stop",
                    cfg.proxy.calls_file
                ),
            ));
        }
        // `run` creates it; one that stands as a file could never be.
        if !cfg.records.dir.is_empty()
            && Path::new(&cfg.records.dir)
                .metadata()
                .is_ok_and(|m| !m.is_dir())
        {
            return Err(LoadError::file(
                file,
                format!(
                    "[records] dir '{}' is a file, not a directory",
                    cfg.records.dir
                ),
            ));
        }
        let defaults: Vec<Action> = RuleId::ORDER
            .iter()
            .map(|r| {
                let (kind, code, reason, label) = r.default_action();
                Action {
                    kind,
                    code,
                    reason: reason.into(),
                    label: label.into(),
                    fail_closed: false,
                }
            })
            .collect();
        let mut global_notes = vec![];
        let global = resolve_actions(&defaults, &cfg.rules, file, "[rules] ", &mut global_notes)?;
        let mut notes = vec![];
        // The key that makes nonces unforgeable: an empty or unfilled one is known to
        // anyone who read the template (QA 70).
        if let Some(secret) = cfg.general.auth_secret.as_deref()
            && (secret.trim().is_empty() || auth::unexpanded_template(secret))
        {
            return Err(LoadError::file(
                file,
                format!(
                    "auth_secret '{secret}' is no secret (empty, or a template never filled in): set a random string shared by the gateways, or leave it out for a random key per load"
                ),
            ));
        }
        for secret in &cfg.general.auth_secrets_accepted {
            if secret.trim().is_empty() || auth::unexpanded_template(secret) {
                return Err(LoadError::file(
                    file,
                    format!(
                        "auth_secrets_accepted: '{secret}' is no secret (empty, or a template never filled in)"
                    ),
                ));
            }
        }
        // One nonce key per load, shared by every trunk and worker.
        let auth_key = cfg
            .trunks
            .iter()
            .any(|t| t.auth.is_some())
            .then(|| auth::nonce_key(cfg.general.auth_secret.as_deref()));
        let route_key = auth::route_key(cfg.general.auth_secret.as_deref());
        let mut trunks = Vec::with_capacity(cfg.trunks.len());
        for t in &cfg.trunks {
            if t.name.is_empty()
                || !t
                    .name
                    .bytes()
                    .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_' || c == b'.')
            {
                return Err(LoadError::file(
                    file,
                    format!(
                        "trunk name '{}' must be letters, digits, '-', '_' or '.'",
                        t.name
                    ),
                ));
            }
            // Metrics name calls from no trunk's sources `trunk="none"`: a trunk of that
            // name would be mixed into the unknown-source panels and alerts.
            if t.name == "none" {
                return Err(LoadError::file(
                    file,
                    "trunk name 'none' is reserved: metrics name calls of unknown sources so",
                ));
            }
            if trunks.iter().any(|x: &Trunk| x.name == t.name) {
                return Err(LoadError::file(
                    file,
                    format!("trunk '{}' is defined twice", t.name),
                ));
            }
            let whitelist = match &t.whitelist {
                Some(l) => Some(load_list(l, &format!("trunk {} whitelist", t.name), true)?),
                None => None,
            };
            for (key, v) in [
                ("max_calls_per_minute", t.max_calls_per_minute),
                (
                    "max_calls_per_minute_per_caller",
                    t.max_calls_per_minute_per_caller,
                ),
            ] {
                if v == Some(0) {
                    return Err(LoadError::file(
                        file,
                        format!(
                            "trunk '{}': {key} = 0 would refuse every call (leave it out for no limit)",
                            t.name
                        ),
                    ));
                }
            }
            match t.max_concurrent_calls {
                Some(0) => {
                    return Err(LoadError::file(
                        file,
                        format!(
                            "trunk '{}': max_concurrent_calls = 0 would refuse every call",
                            t.name
                        ),
                    ));
                }
                Some(_) if !t.record_route => {
                    return Err(LoadError::file(
                        file,
                        format!(
                            "trunk '{}': max_concurrent_calls needs record_route = true (without it a call's BYE does not pass sipfence, which would never see the call end)",
                            t.name
                        ),
                    ));
                }
                _ => {}
            }
            if t.register_path && !t.record_route {
                return Err(LoadError::file(
                    file,
                    format!(
                        "trunk '{}': register_path needs record_route = true (without it the calls the core sends by the Path go on around sipfence after their INVITE: the ACK, the BYE and re-INVITEs to the Contact the PBX registered)",
                        t.name
                    ),
                ));
            }
            // Who may use the trunk is said, never implied: a block copied without its
            // sources line must not open the trunk to every address. An open trunk is
            // written as one (`0.0.0.0/0`), and `check` says so.
            if t.sources.is_empty() && t.auth.is_none() {
                return Err(LoadError::file(
                    file,
                    format!(
                        "trunk '{}' has no sources: name its peers' addresses (sources = [\"10.1.2.0/24\"]), or give it [trunk.auth]; sources = [\"0.0.0.0/0\", \"::/0\"] opens it to every address",
                        t.name
                    ),
                ));
            }
            // The contract's terms bind enterprise trunks only: on another role they
            // would be read and never enforced, and `check` would have said ok.
            if t.role != Role::Enterprise {
                let set = [
                    ("whitelist", t.whitelist.is_some()),
                    ("hours", t.hours.is_some()),
                    ("days", t.days.is_some()),
                    ("utc_offset", t.utc_offset.is_some()),
                    ("max_calls_per_minute", t.max_calls_per_minute.is_some()),
                    (
                        "max_calls_per_minute_per_caller",
                        t.max_calls_per_minute_per_caller.is_some(),
                    ),
                ];
                if let Some((key, _)) = set.iter().find(|(_, on)| *on) {
                    return Err(LoadError::file(
                        file,
                        format!(
                            "trunk '{}': {key} is an enterprise contract's term, never enforced on an {} trunk",
                            t.name,
                            t.role.as_str()
                        ),
                    ));
                }
            }
            // Each worker would bind a port of its own: no peer could be pointed at it.
            if let Some(l) = t.listen.iter().find(|l| l.addr.port() == 0) {
                return Err(LoadError::file(
                    file,
                    format!(
                        "trunk '{}': listen {l} has port 0: each worker would bind a port of its own, which no peer can be given",
                        t.name
                    ),
                ));
            }
            if let Some(n) = t.next_hop {
                let ip = n.addr.ip();
                let broadcast = matches!(ip, std::net::IpAddr::V4(a) if a.is_broadcast());
                if n.addr.port() == 0 || ip.is_unspecified() || ip.is_multicast() || broadcast {
                    return Err(LoadError::file(
                        file,
                        format!(
                            "trunk '{}': next_hop {n} is no host to send calls to (port 0, or a wildcard, multicast or broadcast address)",
                            t.name
                        ),
                    ));
                }
                // Forwarded to sipfence itself: every call would come back as a loop.
                let own = cfg.trunks.iter().flat_map(|x| x.listen.iter()).find(|l| {
                    l.transport == n.transport
                        && l.addr.port() == n.addr.port()
                        && (l.addr.ip() == ip || l.addr.ip().is_unspecified() && ip.is_loopback())
                });
                if let Some(l) = own {
                    return Err(LoadError::file(
                        file,
                        format!(
                            "trunk '{}': next_hop {n} is sipfence's own listen address {l}: every call would loop back",
                            t.name
                        ),
                    ));
                }
            }
            if t.role == Role::Enterprise && whitelist.is_none() {
                return Err(LoadError::file(
                    file,
                    format!("enterprise trunk '{}' needs a whitelist", t.name),
                ));
            }
            let trunk = Trunk {
                name: t.name.clone(),
                id: crate::sip::lex::fnv1a(&[t.name.as_bytes()]),
                role: t.role,
                sources: t.sources.clone(),
                listen: t.listen.clone(),
                next_hop: t.next_hop,
                whitelist,
                hours: t.hours,
                utc_offset_min: t.utc_offset.map_or(8 * 60, |o| o.0),
                days: t.days,
                max_per_minute: t.max_calls_per_minute,
                max_per_minute_per_caller: t.max_calls_per_minute_per_caller,
                max_concurrent: t.max_concurrent_calls,
                behaviour: match t.behaviour {
                    Some(b) => Some(check_behaviour(b, &t.name, file)?),
                    None => None,
                },
                record_route: t.record_route,
                register_path: t.register_path,
                trust_in_dialog_invites: t.trust_in_dialog_invites,
                refuse_withheld: t.refuse_withheld.unwrap_or(t.role == Role::Enterprise),
                auth: match (&t.auth, auth_key) {
                    (Some(a), Some(key)) => Some(
                        auth::TrunkAuth::new(a, &t.name, key, route_key)
                            .map_err(|e| LoadError::file(file, e))?
                            .accepting(&cfg.general.auth_secrets_accepted),
                    ),
                    _ => None,
                },
                bare: t.bare_numbers,
                actions: resolve_actions(
                    &global,
                    &t.rules,
                    file,
                    &format!("trunk {}: ", t.name),
                    &mut notes,
                )?,
            };
            // Without sources, the digest is all that tells the trunk's callers from
            // anyone's: a trunk-auth rule that only watches (the usual way to roll
            // authentication out) would open the trunk to every address (QA 70).
            let auth_kind = trunk.action(RuleId::TrunkAuth).kind;
            if trunk.told_by_digest_alone() && auth_kind != ActionKind::Reject {
                return Err(LoadError::file(
                    file,
                    format!(
                        "trunk '{}' has no sources: [trunk.auth] alone identifies its callers, so rule trunk-auth must reject (it is {}: every address could use the trunk); to watch authentication before enforcing it, name the peers' addresses",
                        t.name,
                        auth_kind.as_str()
                    ),
                ));
            }
            // Settings of a rule that never runs on the trunk would never be used.
            for r in t.rules.keys() {
                let why = match (*r, trunk.never_runs(*r)) {
                    // A message some trunk takes has a known source by definition.
                    (RuleId::UnknownSource, _) => {
                        "on a trunk: it judges messages no trunk takes (set it under [rules])"
                            .to_string()
                    }
                    (_, Some(NeverRuns::Role)) => {
                        format!("on a trunk of role {}", t.role.as_str())
                    }
                    (_, Some(NeverRuns::NoBehaviour)) => "without [trunk.behaviour]".into(),
                    (_, Some(NeverRuns::NoAuth)) => "without [trunk.auth]".into(),
                    (_, Some(NeverRuns::NoConcurrentLimit)) => {
                        "without max_concurrent_calls".into()
                    }
                    (_, None) => continue,
                };
                return Err(LoadError::file(
                    file,
                    format!(
                        "trunk '{}': rule {} never runs {why}: its settings here would never be used",
                        t.name,
                        r.as_str()
                    ),
                ));
            }
            trunks.push(trunk);
        }
        // Zeros that would not mean "off" but break something: refused with what they do.
        for (key, zero, why) in [
            (
                "[proxy] overload_ms",
                cfg.proxy.overload_ms == 0,
                "would answer 503 to nearly every INVITE of any burst (the default is 250)",
            ),
            (
                "[proxy] tcp_idle_secs",
                cfg.proxy.tcp_idle_secs == 0,
                "would close every TCP connection as soon as it is idle (the default is 120)",
            ),
            (
                "[proxy] max_tcp_connections",
                cfg.proxy.max_tcp_connections == 0,
                "would refuse every TCP connection (leave tcp: out of the listen addresses for none)",
            ),
            (
                "[proxy] rate_keys",
                cfg.proxy.rate_keys == 0,
                "would leave no memory for rate counts and recent transactions (the default is 1000000)",
            ),
            (
                "[redis] sync_ms",
                cfg.redis.sync_ms == 0,
                "would sync the counters in a busy loop (the default is 100)",
            ),
            (
                "[redis] timeout_ms",
                cfg.redis.timeout_ms == 0,
                "would fail every Redis call (the default is 200)",
            ),
            (
                "[redis] list_poll_ms",
                cfg.redis.list_poll_ms == 0,
                "would poll for lists in a busy loop (the default is 1000)",
            ),
            (
                "[redis] list_timeout_ms",
                cfg.redis.list_timeout_ms == 0,
                "would fail every published list set's transfer (the default is 60000)",
            ),
            (
                "[redis] records_maxlen",
                cfg.redis.records_maxlen == 0,
                "would trim the record stream to nothing (records_stream = \"\" for no stream)",
            ),
            (
                "[proxy] retry_after",
                cfg.proxy.retry_after == 0,
                "would tell every caller refused for overload to retry at once, feeding the overload (the default is 5)",
            ),
            (
                "[records] rotate_bytes",
                cfg.records.rotate_bytes == 0,
                "would start a new file for every record",
            ),
            (
                "[records] rotate_secs",
                cfg.records.rotate_secs == 0,
                "would start a new file every second",
            ),
            (
                "[records] retention_secs",
                cfg.records.retention_secs == 0,
                "would delete every record file as soon as it is closed (leave dir unset for no records)",
            ),
        ] {
            if zero {
                return Err(LoadError::file(file, format!("{key} = 0 {why}")));
            }
        }
        // Values no deployment means: a typo's extra digit, or a size no datagram has.
        if cfg.proxy.udp_mtu != 0 && !(576..=65_507).contains(&cfg.proxy.udp_mtu) {
            return Err(LoadError::file(
                file,
                format!(
                    "[proxy] udp_mtu = {} is no datagram size: 576..=65507 (RFC 3261 18.1.1 says 1300 where the path MTU is unknown), or 0 for always UDP",
                    cfg.proxy.udp_mtu
                ),
            ));
        }
        // Waits longer than a call set-up: every caller would hang up first.
        for (key, v, max, why) in [
            (
                "[proxy] retry_after",
                u64::from(cfg.proxy.retry_after),
                3_600,
                "seconds: an hour's wait for every caller refused for overload (the default is 5)",
            ),
            (
                "[proxy] probe_secs",
                cfg.proxy.probe_secs,
                3_600,
                "seconds: a next hop would be marked down hours after it stopped answering (0 turns probes off)",
            ),
            (
                "[proxy] drain_secs",
                cfg.proxy.drain_secs,
                300,
                "seconds: a stop would hold every new call off that long (a service manager kills it sooner; 0 stops at once)",
            ),
            (
                "[redis] timeout_ms",
                cfg.redis.timeout_ms,
                60_000,
                "ms: a Redis that stops answering would hold the shared counters' sync that long before the fallback (the default is 200)",
            ),
            (
                "[redis] list_timeout_ms",
                cfg.redis.list_timeout_ms,
                600_000,
                "ms: a transfer that stalled would hold the next published set off that long (the default is 60000)",
            ),
        ] {
            if v > max {
                return Err(LoadError::file(
                    file,
                    format!("{key} = {v} is over {max} {why}"),
                ));
            }
        }
        if cfg.proxy.workers > 1024 {
            return Err(LoadError::file(
                file,
                format!(
                    "[proxy] workers = {} is more receive loops than any host has cores (0 = one per core)",
                    cfg.proxy.workers
                ),
            ));
        }
        // Compared with Proxy-Require's option tags, which are tokens (RFC 3261 25.1).
        if let Some(t) = cfg
            .proxy
            .proxy_require_accepted
            .iter()
            .find(|t| t.is_empty() || !t.bytes().all(crate::sip::lex::is_token))
        {
            return Err(LoadError::file(
                file,
                format!("[proxy] proxy_require_accepted: '{t}' is not an option tag (a token)"),
            ));
        }
        // `run` opens it; a URL only `run` refuses would pass `check` and fail the restart.
        if !cfg.redis.url.is_empty() {
            crate::cluster::check_url(&cfg.redis.url)
                .map_err(|e| LoadError::file(file, format!("[redis] url: {e}")))?;
        }
        for (key, n) in [
            ("callers", cfg.behaviour.callers),
            ("calls", cfg.behaviour.calls),
        ] {
            // Allocated whole at start: a typo's extra digits would abort the start.
            if n > MAX_BEHAVIOUR_SLOTS {
                return Err(LoadError::file(
                    file,
                    format!(
                        "[behaviour] {key} = {n}: at most {MAX_BEHAVIOUR_SLOTS} (the table is allocated whole at start, about 170 B a caller and 57 B a call)"
                    ),
                ));
            }
            if n == 0 && cfg.trunks.iter().any(|t| t.behaviour.is_some()) {
                return Err(LoadError::file(
                    file,
                    format!("[behaviour] {key} = 0 leaves the behaviour rules no table to keep"),
                ));
            }
        }
        // A code set under [rules] beside a quiet action is used wherever a trunk
        // makes the rule reject (`action = "reject"` in its own table).
        let notes: Vec<String> = global_notes
            .into_iter()
            .filter(|(r, unused, _)| {
                let g = &global[r.index()];
                !trunks.iter().any(|t| {
                    let a = &t.actions[r.index()];
                    match unused {
                        Unused::Answer => {
                            matches!(a.kind, ActionKind::Reject | ActionKind::RateLimit)
                                && (a.code == g.code || a.reason == g.reason)
                        }
                        // A label set under [rules] that some trunk's action adds.
                        Unused::Label => {
                            matches!(
                                a.kind,
                                ActionKind::Label | ActionKind::RateLimit | ActionKind::Rewrite
                            ) && a.label == g.label
                        }
                    }
                })
            })
            .chain(notes)
            .map(|(_, _, n)| n)
            .collect();
        let blacklist = load_list(&cfg.lists.blacklist, "blacklist", false)?;
        let protected = load_list(&cfg.lists.protected, "protected", false)?;
        let roamers = load_list(&cfg.lists.roamers, "roamers", false)?;
        let own_segments = load_list(&cfg.lists.own_segments, "own_segments", false)?;
        let exempt = load_list(&cfg.lists.exempt, "exempt", false)?;
        // Files named that hold nothing (QA 203: an empty blacklist file loaded with no
        // word, where an empty whitelist is warned of).
        let mut empty_files = vec![];
        for (name, conf, set) in [
            ("blacklist", &cfg.lists.blacklist, &blacklist),
            ("protected", &cfg.lists.protected, &protected),
            ("roamers", &cfg.lists.roamers, &roamers),
            ("own_segments", &cfg.lists.own_segments, &own_segments),
            ("exempt", &cfg.lists.exempt, &exempt),
        ] {
            if !conf.files.is_empty() && set.is_empty() {
                empty_files.push((name, conf.files.clone()));
            }
        }
        Ok(Policy {
            blacklist,
            protected,
            roamers,
            own_segments,
            exempt,
            digest: digest.get(),
            files_digest: digest.get(),
            plan,
            label_header,
            verstat: cfg.general.verstat,
            server: cfg.general.server,
            reason_header: cfg.general.reason_header,
            auth_key_random: cfg.general.auth_secret.is_none()
                && cfg.trunks.iter().any(|t| t.auth.is_some()),
            callee_key: crate::sip::lex::fnv1a(&[
                b"callee-key",
                &auth::nonce_key(cfg.general.auth_secret.as_deref()),
            ]),
            callee_key_random: cfg.general.auth_secret.is_none(),
            secret_id: cfg.general.auth_secret.as_deref().map(auth::secret_id),
            accepted_ids: cfg
                .general
                .auth_secrets_accepted
                .iter()
                .map(|s| auth::secret_id(s))
                .collect(),
            redis_written: written("redis"),
            hep_written: written("hep"),
            default_actions: global,
            proxy: cfg.proxy,
            behaviour: cfg.behaviour,
            shares_calls: !cfg.redis.url.is_empty()
                && trunks.iter().any(|t| t.max_concurrent.is_some()),
            redis: cfg.redis,
            behaviour_on: trunks.iter().any(|t| t.behaviour.is_some()),
            tracks_calls: trunks
                .iter()
                .any(|t| t.behaviour.is_some() || t.max_concurrent.is_some()),
            dialog_tokens: trunks.iter().any(|t| t.dialog_tokens().is_some()),
            trunks,
            metrics: cfg.metrics,
            records: cfg.records,
            log: cfg.log,
            hep: cfg.hep,
            source: file.to_string(),
            notes,
            empty_files,
        })
    }

    /// This policy with lists replaced by published ones (`sipfence lists publish`):
    /// one of [`LIST_NAMES`] or `whitelist:<trunk>`, each
    /// as list-file text. `origin` names them in errors (`redis:lists/v7/blacklist:12`).
    /// Any bad line or unknown name refuses the whole set: an instance keeps its
    /// lists rather than run half a publication.
    pub fn with_lists(
        &self,
        origin: &str,
        lists: &[(String, String)],
    ) -> Result<Policy, LoadError> {
        let mut p = self.clone();
        // The files and this set, in name order: the same set on the same files is the
        // same policy, whatever set ran before it or in what order it came.
        let mut named: Vec<&(String, String)> = lists.iter().collect();
        named.sort();
        p.digest = named.iter().fold(self.files_digest, |d, (name, text)| {
            crate::sip::lex::tag_hash(&[&d.to_le_bytes(), name.as_bytes(), text.as_bytes()])
        });
        for (name, text) in lists {
            let file = format!("{origin}/{name}");
            let mut b =
                NumberSetBuilder::for_plan(&self.plan).with_origins(name.starts_with("whitelist:"));
            b.add_text(text, &file)?;
            let set = b.build();
            let slot = match name.as_str() {
                "blacklist" => &mut p.blacklist,
                "protected" => &mut p.protected,
                "roamers" => &mut p.roamers,
                "own_segments" => &mut p.own_segments,
                "exempt" => &mut p.exempt,
                other => match p.whitelist_of(other) {
                    Some(t) => {
                        p.trunks[t].whitelist = Some(set);
                        continue;
                    }
                    None => {
                        return Err(LoadError::file(
                            &file,
                            format!(
                                "no such list here ({}, or whitelist:<trunk> of a trunk with a whitelist)",
                                LIST_NAMES.join(", ")
                            ),
                        ));
                    }
                },
            };
            *slot = set;
            // The files' emptiness is no longer this list's (lists held in Redis only,
            // their files left empty, are a fleet's choice).
            p.empty_files.retain(|(list, _)| list != name);
        }
        Ok(p)
    }

    /// [`Policy::digest`] as records, `check` and `/healthz` show it.
    pub fn fingerprint(&self) -> String {
        format!("{:016x}", self.digest)
    }

    /// The policy-wide lists by name (as `[lists.<name>]`, metrics and publications name
    /// them), in [`LIST_NAMES`] order.
    pub fn named_lists(&self) -> [(&'static str, &NumberSet); 5] {
        [
            (LIST_NAMES[0], &self.blacklist),
            (LIST_NAMES[1], &self.protected),
            (LIST_NAMES[2], &self.roamers),
            (LIST_NAMES[3], &self.own_segments),
            (LIST_NAMES[4], &self.exempt),
        ]
    }

    /// An address of this proxy: one of its listeners (over `transport`, when given).
    /// What a capture shows coming from one is the proxy's own output.
    pub fn own_address(&self, transport: Option<config::Transport>, a: SocketAddr) -> bool {
        self.trunks.iter().flat_map(|t| &t.listen).any(|l| {
            l.covers(&ListenSpec {
                transport: transport.unwrap_or(l.transport),
                addr: a,
            })
        })
    }

    /// A message of a capture sent from `src` to `dst` is sipfence's own output (a
    /// forwarded request, a relayed answer), not traffic to judge. A listen address
    /// that names its IP tells it by the source alone. A wildcard one (`0.0.0.0:5060`)
    /// fits every host's port 5060, both ends of a peer-to-peer capture where both use
    /// 5060 among them: the message is sipfence's only when it does not go to such an
    /// address too.
    pub fn sent_by_us(
        &self,
        transport: config::Transport,
        src: SocketAddr,
        dst: SocketAddr,
    ) -> bool {
        let explicit =
            self.trunks.iter().flat_map(|t| &t.listen).any(|l| {
                l.transport == transport && l.addr == src && !l.addr.ip().is_unspecified()
            });
        explicit
            || (self.own_address(Some(transport), src) && !self.own_address(Some(transport), dst))
    }

    /// How long before a next hop is found down a caller's BYE left unanswered is taken
    /// for the outage's (and its call for ended): a BYE transaction (32 s), the probes
    /// that mark the next hop down (three), and the shell's look every 10 s.
    pub fn bye_window_ms(&self) -> u64 {
        32_000 + 3 * self.proxy.probe_secs * 1000 + 10_000
    }

    /// The ids ([`Trunk::id`]) of the trunks whose next hop is `addr`, reached over
    /// `transport` (`None`: either).
    pub fn trunks_behind(
        &self,
        addr: SocketAddr,
        transport: Option<config::Transport>,
    ) -> Vec<u64> {
        self.trunks
            .iter()
            .filter(|t| t.sends_to(addr, transport))
            .map(|t| t.id)
            .collect()
    }

    /// Whether `addr` is a trunk's next hop over `transport` (`None`: either).
    pub fn is_next_hop_over(&self, addr: SocketAddr, transport: Option<config::Transport>) -> bool {
        self.trunks.iter().any(|t| t.sends_to(addr, transport))
    }

    /// The trunks that limit their concurrent calls, with their limit: the ones whose
    /// calls up are counted, shared, kept across a restart and shown.
    pub fn limited_trunks(&self) -> impl Iterator<Item = (&Trunk, u32)> {
        self.trunks
            .iter()
            .filter_map(|t| Some((t, t.max_concurrent?)))
    }

    /// The address is a trunk's next hop (the core side): its requests are in-dialog
    /// traffic back towards the trunks, not calls to judge.
    pub fn is_next_hop(&self, source: &SocketAddr) -> bool {
        // An IPv4 core seen through a dual-stack socket shows as ::ffff:a.b.c.d.
        let ip = source.ip().to_canonical();
        self.trunks.iter().any(|t| {
            t.next_hop
                .is_some_and(|n| n.addr.ip() == ip && n.addr.port() == source.port())
        })
    }

    /// Whether a message from `source` comes from the core's side, whose answers set up
    /// dialogs ([`crate::decide::track_dialog`]): a next hop's address, or its host on
    /// another port (a core answers from other sockets too) when no trunk claims it.
    pub fn from_core_side(&self, source: &SocketAddr) -> bool {
        self.is_next_hop(source)
            || (self.is_next_hop_host(source.ip()) && self.match_trunk(source, None).is_none())
    }

    /// Whether a message from `source` speaks for the core on how a call went (the
    /// behaviour rules' outcomes, concurrent-call ends): the core's side as above, or
    /// any address no trunk claims (a core answering from a floating or second address,
    /// QA 48). What a trunk's own address sends (a caller's forged 200, QA 47) does not.
    pub fn speaks_for_core(&self, source: &SocketAddr) -> bool {
        self.from_core_side(source) || self.match_trunk(source, None).is_none()
    }

    /// Whether a relayed response may be sent to `ip`: a host some request we forward
    /// could have come from. That is a trunk's source (any port: a response goes to the
    /// Via's port, not always the one the request left from) or a next hop's host.
    pub fn answers_to(&self, ip: std::net::IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.is_next_hop_host(ip)
            || self
                .trunks
                .iter()
                .any(|t| t.sources.is_empty() || t.sources.iter().any(|s| s.covers_ip(ip)))
    }

    /// A next hop's host, on any port.
    fn is_next_hop_host(&self, ip: std::net::IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.trunks
            .iter()
            .any(|t| t.next_hop.is_some_and(|n| n.addr.ip() == ip))
    }

    /// Nothing is answered to this address: no trunk claims it, it is no next hop, and
    /// `unknown-source` drops. What a parse error or a protocol check would answer is
    /// not sent either: a scanner that sends broken SIP learns no more than one that
    /// sends good SIP.
    pub fn silent_to(&self, source: &SocketAddr, local: Option<&ListenSpec>) -> bool {
        self.action(None, RuleId::UnknownSource).kind == config::ActionKind::Drop
            && !self.knows(source, local)
    }

    /// Whether a trunk claims `source` (arriving at `local`) or it is the core's side
    /// ([`Policy::from_core_side`]): no stranger.
    pub fn knows(&self, source: &SocketAddr, local: Option<&ListenSpec>) -> bool {
        self.match_trunk(source, local).is_some() || self.from_core_side(source)
    }

    /// How numbers from `trunk` are read: the plan's country, and the trunk's
    /// `bare_numbers` (the home plan when no trunk is known).
    #[inline]
    pub fn reading(&self, trunk: Option<usize>) -> Reading<'_> {
        let t = trunk.and_then(|t| self.trunks.get(t));
        Reading {
            home_cc: self.plan.country(),
            bare: t.map_or(Bare::National, |t| t.bare),
            short: match t {
                Some(t) if t.role != Role::Enterprise => ShortCodes::AnySeparator,
                _ => ShortCodes::SpacedOnly,
            },
        }
    }

    /// The trunk a message belongs to: the first (in file order) whose sources and
    /// listen addresses match.
    /// The trunk whose whitelist a published list named `whitelist:<trunk>` replaces: a
    /// trunk of that name that has a whitelist.
    pub fn whitelist_of(&self, list: &str) -> Option<usize> {
        let name = list.strip_prefix("whitelist:")?;
        self.trunks
            .iter()
            .position(|t| t.name == name && t.whitelist.is_some())
    }

    /// Whether a TCP connection from `peer` on `local` may carry anything this policy
    /// takes: a trunk's call, or the core's in-dialog requests (from a next hop's
    /// address, any port: the core connects from an ephemeral one).
    pub fn claims_connection(&self, peer: &SocketAddr, local: &ListenSpec) -> bool {
        self.match_trunk(peer, Some(local)).is_some() || self.is_next_hop_host(peer.ip())
    }

    pub fn match_trunk(&self, source: &SocketAddr, local: Option<&ListenSpec>) -> Option<usize> {
        self.matching_trunks(source, local).next()
    }

    /// Every trunk that claims a message from `source` (at `local`, when known), in
    /// file order: the first is the one it belongs to.
    pub fn matching_trunks<'a>(
        &'a self,
        source: &'a SocketAddr,
        local: Option<&'a ListenSpec>,
    ) -> impl Iterator<Item = usize> + 'a {
        self.trunks
            .iter()
            .enumerate()
            .filter(move |(_, t)| t.matches(source, local))
            .map(|(i, _)| i)
    }

    pub fn trunk_by_name(&self, name: &str) -> Option<usize> {
        self.trunks.iter().position(|t| t.name == name)
    }

    /// The action of a rule on a trunk (or for unknown sources).
    pub fn action(&self, trunk: Option<usize>, r: RuleId) -> &Action {
        match trunk.and_then(|t| self.trunks.get(t)) {
            Some(t) => t.action(r),
            None => &self.default_actions[r.index()],
        }
    }

    /// Every local address some trunk listens on.
    pub fn listen_addrs(&self) -> Vec<ListenSpec> {
        let mut v: Vec<ListenSpec> = self
            .trunks
            .iter()
            .flat_map(|t| t.listen.iter().copied())
            .collect();
        v.sort();
        v.dedup();
        v
    }

    /// A human summary for `sipfence check`.
    pub fn summary(&self) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "policy {}: {}, plan +{} ({} rules)",
            self.source,
            counted(self.trunks.len(), "trunk", "trunks"),
            String::from_utf8_lossy(self.plan.country()),
            self.plan.rule_count()
        );
        let _ = writeln!(
            s,
            "  fingerprint {} (of the settings, plan and lists, not of one gateway's addresses or name; records and /healthz carry it)",
            self.fingerprint()
        );
        for (name, l) in self.named_lists() {
            let _ = writeln!(
                s,
                "  list {name}: {}, {} ({} KiB)",
                counted(l.exact_len(), "number", "numbers"),
                counted(l.segment_len(), "segment", "segments"),
                l.heap_bytes() / 1024
            );
        }
        if !self.proxy.calls_file.is_empty() {
            let _ = writeln!(
                s,
                "  calls file: {} (the calls up, kept from a stop to the next start)",
                self.proxy.calls_file
            );
        }
        if !self.redis.url.is_empty() {
            let _ = writeln!(
                s,
                "  redis: {} (keys {}:*, lists {})",
                crate::cluster::url_for_people(&self.redis.url),
                self.redis.prefix,
                if self.redis.lists {
                    "followed"
                } else {
                    "not followed"
                }
            );
        }
        for t in &self.trunks {
            let _ = writeln!(
                s,
                "  trunk {} ({}): listen [{}] sources [{}] next hop {}",
                t.name,
                t.role.as_str(),
                joined(&t.listen),
                if t.sources.is_empty() {
                    "any address, digest-authenticated".to_string()
                } else {
                    joined(&t.sources)
                },
                t.next_hop
                    .map(|n| n.to_string())
                    .unwrap_or_else(|| "-".into()),
            );
            if let Some(w) = &t.whitelist {
                let _ = writeln!(
                    s,
                    "    whitelist: {}, {}",
                    counted(w.exact_len(), "number", "numbers"),
                    counted(w.segment_len(), "segment", "segments")
                );
            }
            // The contract's terms as read, so that an operator can check them here.
            let mut terms = vec![];
            if let Some(h) = t.hours {
                terms.push(format!("hours {h} ({})", t.utc_offset_text()));
            }
            if let Some(d) = t.days {
                terms.push(format!("days {}", d.names().join(" ")));
            }
            if let Some(n) = t.max_per_minute {
                terms.push(format!("{n} calls a minute"));
            }
            if let Some(n) = t.max_per_minute_per_caller {
                terms.push(format!("{n} a minute per caller"));
            }
            if !terms.is_empty() {
                let _ = writeln!(s, "    contract: {}", terms.join(", "));
            }
            if let Some(a) = &t.auth {
                let _ = writeln!(s, "    auth: {}", a.summary());
            }
            // How the dialogs go: through sipfence or around it.
            let routing: Vec<&str> = [
                (t.record_route, "record-routed"),
                (t.register_path, "Path on REGISTERs"),
                (t.trust_in_dialog_invites, "in-dialog INVITEs trusted"),
            ]
            .into_iter()
            .filter_map(|(on, what)| on.then_some(what))
            .collect();
            if !routing.is_empty() {
                let _ = writeln!(s, "    dialogs: {}", routing.join(", "));
            }
            if let Some(n) = t.max_concurrent {
                let _ = writeln!(s, "    concurrent calls: at most {n}");
            }
            if t.refuse_withheld
                && t.runs(RuleId::WithheldCaller)
                && t.action(RuleId::WithheldCaller).kind != ActionKind::Off
            {
                let _ = writeln!(
                    s,
                    "    withheld callers: refused, asserted identity or not (refuse_withheld)"
                );
            }
            if t.bare != Bare::National {
                let _ = writeln!(
                    s,
                    "    bare numbers: {} (E.164 without '+'; {} digits or fewer read in the home plan)",
                    t.bare.as_str(),
                    crate::numbering::INTERNATIONAL_MIN_DIGITS - 1
                );
            }
            // A behaviour rule without its threshold never fires: left out, and the
            // others say what makes them fire.
            let threshold = |r: RuleId| t.behaviour.and_then(|b| b.describe(r));
            let rules: Vec<String> = RuleId::ORDER
                .iter()
                .filter(|r| t.runs(**r) && t.action(**r).kind != ActionKind::Off)
                .filter(|r| !r.is_behaviour() || threshold(**r).is_some())
                .map(|r| {
                    let a = t.action(*r);
                    let rule = match a.kind {
                        ActionKind::Reject => format!("{}={}", r.as_str(), a.code),
                        ActionKind::RateLimit => format!("{}=rate-limit/{}", r.as_str(), a.code),
                        k => format!("{}={:?}", r.as_str(), k).to_lowercase(),
                    };
                    match threshold(*r) {
                        Some(th) => format!("{rule}[{th}]"),
                        None => rule,
                    }
                })
                .collect();
            let _ = writeln!(s, "    rules: {}", rules.join(" "));
        }
        if let Some(h) = self.hep.server {
            let _ = writeln!(
                s,
                "  hep: every message mirrored to udp:{} (capture id {})",
                h.0, self.hep.capture_id
            );
        }
        s
    }
}

/// Whether a rule is evaluated for a trunk role at all.
pub fn applies(role: Role, r: RuleId) -> bool {
    match r {
        RuleId::IntlForgedService | RuleId::IntlDomesticCaller | RuleId::LabelInternational => {
            role == Role::International
        }
        RuleId::EnterpriseForeignNetwork
        | RuleId::EnterpriseNotWhitelisted
        | RuleId::EnterpriseHours
        | RuleId::EnterpriseRateTrunk
        | RuleId::EnterpriseRateCaller => role == Role::Enterprise,
        RuleId::GenericNumber => role != Role::Enterprise,
        _ => true,
    }
}
