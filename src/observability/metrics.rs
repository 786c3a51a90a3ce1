//! Prometheus metrics. Label values come only from configuration (trunk and rule names)
//! or from small closed sets (verdicts, error kinds, transports), never from callers,
//! so no attacker can grow the series count.
//!
//! Counters on the per-call path are resolved to handles once per policy load
//! ([`Metrics::bind`]), so counting a call is a few atomic adds, not label hashing.

use prometheus::{
    Encoder, Gauge, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::decide::{Decision, Kind};
use crate::policy::auth::AuthCheck;
use crate::policy::config::ActionKind;
use crate::policy::{Policy, RuleId};
use crate::sip::ErrorKind;

/// Every metric the binary exports (the dashboard and alert tests check against this).
pub const METRIC_NAMES: &[&str] = &[
    "sipfence_messages_total",
    "sipfence_calls_total",
    "sipfence_invite_retransmissions_total",
    "sipfence_core_retries_total",
    "sipfence_calls_sent_into_outage_total",
    "sipfence_unknown_dialog_invites_total",
    "sipfence_rule_hits_total",
    "sipfence_auth_total",
    "sipfence_isup_rule_hits_total",
    "sipfence_exemptions_total",
    "sipfence_sipi_calls_total",
    "sipfence_parse_errors_total",
    "sipfence_keepalives_total",
    "sipfence_dropped_total",
    "sipfence_overload_rejections_total",
    "sipfence_protocol_refusals_total",
    "sipfence_core_refusals_total",
    "sipfence_nat_flows_total",
    "sipfence_decision_seconds",
    "sipfence_policy_reloads_total",
    "sipfence_policy_loaded_timestamp_seconds",
    "sipfence_clock_step_seconds",
    "sipfence_clock_offset_seconds",
    "sipfence_policy_info",
    "sipfence_build_info",
    "sipfence_restart_pending",
    "sipfence_list_entries",
    "sipfence_list_segments",
    "sipfence_concurrent_calls",
    "sipfence_concurrent_calls_elsewhere",
    "sipfence_concurrent_calls_ended_elsewhere_total",
    "sipfence_tcp_connections",
    "sipfence_tcp_connections_limit",
    "sipfence_next_hops_down",
    "sipfence_next_hop_down",
    "sipfence_records_written_total",
    "sipfence_records_dropped_total",
    "sipfence_rejected_pcap_dropped_total",
    "sipfence_rate_keys",
    "sipfence_rate_overflows_total",
    "sipfence_call_state_entries",
    "sipfence_call_state_overflows_total",
    "sipfence_behaviour_events_total",
    "sipfence_behaviour_table_entries",
    "sipfence_behaviour_evictions_total",
    "sipfence_redis_up",
    "sipfence_redis_errors_total",
    "sipfence_shared_rate_fallbacks_total",
    "sipfence_list_version",
    "sipfence_list_refused",
    "sipfence_redis_records_total",
    "sipfence_hep_packets_total",
];

pub const VERDICTS: [&str; 6] = ["allow", "reject", "challenge", "rewrite", "label", "drop"];

/// Why a message was dropped without an answer (`sipfence_dropped_total{reason}`):
/// every reason the proxy gives, created at start so that dashboards and `increase()`
/// see a zero before the first drop rather than no series at all.
pub const DROP_REASONS: [&str; 27] = [
    // Not SIP enough to answer, or the policy says say nothing.
    "malformed",
    "policy",
    // An unknown source's request or response, with `unknown-source = drop`.
    "unknown-source",
    "bad-ack",
    "no-trunk",
    "no-next-hop",
    // Responses that cannot be routed back.
    "response-no-via",
    "response-no-next-via",
    "response-not-ours",
    "response-unresolvable",
    "response-unknown-destination",
    // An ACK with Max-Forwards 0 (RFC 3261 16.3 step 3: not forwarded, not answered).
    "no-hops-left",
    // In-dialog requests from the core with nowhere to go.
    "core-no-target",
    "core-unresolvable",
    // An ACK of the core's for a peer whose TCP flow is gone.
    "flow-failed",
    // Sending.
    "too-large-for-udp",
    "too-large-for-tcp",
    "send-failed",
    "tcp-connect-failed",
    "tcp-gone",
    "tcp-backlog",
    "tcp-limit",
    "tcp-unclaimed-limit",
    // A connection the kernel could not hand over (no file descriptor left).
    "tcp-accept-failed",
    "tcp-idle",
    "tcp-slow-message",
    "tcp-closed-mid-message",
];

/// The codes the protocol checks answer (a decision's `refusal`): broken fields, an
/// unsupported Proxy-Require, a loop, no hops left; and a request the next hop cannot
/// take: too large for UDP to it (513), or it down, not answering its probes or
/// congested (503, calls only: told apart from the rules' blocks, so that an outage of
/// the core does not read as a block spike, QA 118 F5).
pub const REFUSAL_CODES: [u16; 6] = [400, 420, 482, 483, 503, 513];

/// The codes sipfence answers the core's own requests with: broken fields, an
/// unsupported Require or Proxy-Require, a loop, no hops left, a trunk peer that cannot
/// be reached or whose TCP connection cannot take it now, too large for it.
pub const CORE_REFUSAL_CODES: [u16; 7] = [400, 420, 430, 482, 483, 503, 513];

pub struct Metrics {
    pub registry: Registry,
    pub messages: IntCounterVec,
    pub calls: IntCounterVec,
    pub rule_hits: IntCounterVec,
    pub auth: IntCounterVec,
    pub isup_rule_hits: IntCounterVec,
    pub exemptions: IntCounterVec,
    pub sipi_calls: IntCounterVec,
    pub parse_errors: IntCounterVec,
    pub keepalives: IntCounterVec,
    pub dropped: IntCounterVec,
    pub overload: IntCounterVec,
    pub retransmissions: IntCounterVec,
    pub core_retries: IntCounterVec,
    pub into_outage: IntCounterVec,
    pub unknown_dialogs: IntCounterVec,
    pub refusals: IntCounterVec,
    pub core_refusals: IntCounterVec,
    pub nat_flows: IntCounterVec,
    pub decision_seconds: HistogramVec,
    pub reloads: IntCounterVec,
    pub loaded_at: IntGauge,
    /// How far the wall clock moved from the steady one since the start (its steps).
    pub clock_step: Gauge,
    /// How far the steady clock is from Redis's, with `[redis]`.
    pub clock_offset: Gauge,
    /// 1 for the running policy's fingerprint: gateways running different policies
    /// show as two series across the fleet.
    pub policy_info: IntGaugeVec,
    pub restart_pending: IntGauge,
    pub list_entries: IntGaugeVec,
    /// Of those, segments and ranges' blocks: a cut that loses them is seen apart.
    pub list_segments: IntGaugeVec,
    /// Calls up per trunk with `max_concurrent_calls` (set when scraped).
    pub concurrent_calls: IntGaugeVec,
    /// The same trunks' calls up at the other gateways, as learnt through Redis.
    pub concurrent_calls_elsewhere: IntGaugeVec,
    /// Calls ended through a gateway other than the one that admitted them: `told`
    /// (others' calls whose BYE went through this one), `heard` (this one's, given back).
    pub concurrent_calls_ended_elsewhere: IntCounterVec,
    pub tcp_connections: IntGauge,
    pub tcp_connections_limit: IntGauge,
    pub next_hops_down: IntGauge,
    /// 1 per next hop down, named: the count alone left the operator paged for "1 next
    /// hop down" to search the log for which (QA 167).
    pub next_hop_down: IntGaugeVec,
    pub records_written: IntCounter,
    pub records_dropped: IntCounter,
    pub rejected_pcap_dropped: IntCounter,
    pub rate_keys: IntGauge,
    /// Counter events of new keys the full table could not keep (their limits lapse).
    pub rate_overflows: IntCounter,
    pub call_state_entries: IntGaugeVec,
    pub call_state_overflows: IntCounterVec,
    pub behaviour_events: IntCounterVec,
    /// Entries held by the behaviour tables: callers, watched callers, calls.
    pub behaviour_entries: IntGaugeVec,
    pub behaviour_evictions: IntCounterVec,
    /// 1 while the last Redis call succeeded (always 0 without `[redis]`).
    pub redis_up: IntGauge,
    pub redis_errors: IntCounterVec,
    /// Calls whose rate rules were judged with Redis out of reach, by fallback (open:
    /// this gateway's count alone; closed: a rule set to fail closed matched).
    pub shared_fallbacks: IntCounterVec,
    /// Published list version running, and the last one refused.
    pub list_version: IntGaugeVec,
    /// 1 while the newest published list set is refused: a version number cannot say
    /// so, since a Redis that lost its data numbers sets from v1 again.
    pub list_refused: IntGauge,
    pub redis_records: IntCounterVec,
    /// The mirror to Homer (`[hep]`), by outcome.
    pub hep_packets: IntCounterVec,
}

/// Counter handles for one policy's trunks, indexed by trunk (last slot: no trunk).
pub struct Bound {
    calls: Vec<[IntCounter; 6]>,
    /// Rule matches by trunk and rule: the series of what the rule usually does, and of
    /// the other thing it may do (a rate-limit rule over its limit refuses, trunk-auth
    /// challenges or refuses).
    hits: Vec<Vec<Option<RuleHits>>>,
    /// For the rare action no handle was made for (a refusal that became a drop).
    rule_hits: IntCounterVec,
    names: Vec<String>,
    /// Each trunk's [`crate::policy::Trunk::tag`], by place.
    tags: Vec<crate::policy::TrunkTag>,
    /// Rule matches made by the ISUP calling number, same layout as `hits`.
    isup_hits: Vec<Vec<Option<IntCounter>>>,
    /// Matches the exempt list overrode, same layout (only with an exempt list).
    exempted: Vec<Vec<Option<IntCounter>>>,
    /// SIP-I calls: [IAM decoded, IAM unreadable].
    sipi: Vec<[IntCounter; 2]>,
    overload: Vec<IntCounter>,
    retransmissions: Vec<IntCounter>,
    core_retries: Vec<IntCounter>,
    into_outage: Vec<IntCounter>,
    unknown_dialogs: Vec<IntCounter>,
    /// Requests refused by the protocol checks, by [`REFUSAL_CODES`].
    refusals: Vec<[IntCounter; REFUSAL_CODES.len()]>,
    latency: Vec<Histogram>,
    /// Call outcomes seen by the behaviour tracker, by [`Seen::index`].
    events: Vec<[IntCounter; 6]>,
    /// Digest checks by [`AuthCheck::index`], on trunks with auth.
    auth: Vec<Option<[IntCounter; AuthCheck::NAMES.len()]>>,
    /// Calls judged with the shared counters out of reach: [open, closed].
    fallbacks: [IntCounter; 2],
}

/// One rule's match counters on one trunk.
struct RuleHits {
    usual: (&'static str, IntCounter),
    other: Option<(&'static str, IntCounter)>,
}

fn must<T>(r: prometheus::Result<T>) -> T {
    // Metric definitions are constants of this file: a failure is a programming error
    // caught by the first test run, not an input condition.
    r.unwrap_or_else(|e| panic!("metric definition: {e}"))
}

impl Metrics {
    /// The gauges that only mean something with `[redis]`, exported from now on.
    pub fn redis_configured(&self) {
        let _ = self.registry.register(Box::new(self.redis_up.clone()));
        let _ = self
            .registry
            .register(Box::new(self.shared_fallbacks.clone()));
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let cv = |name: &str, help: &str, labels: &[&str]| {
            let c = must(IntCounterVec::new(Opts::new(name, help), labels));
            must(registry.register(Box::new(c.clone())));
            c
        };
        let messages = cv(
            "sipfence_messages_total",
            "SIP messages received, by transport and kind",
            &["transport", "kind"],
        );
        let calls = cv(
            "sipfence_calls_total",
            "Initial INVITEs decided, by trunk and verdict",
            &["trunk", "verdict"],
        );
        let rule_hits = cv(
            "sipfence_rule_hits_total",
            "Rule matches, by trunk, rule and action",
            &["trunk", "rule", "action"],
        );
        let auth = cv(
            "sipfence_auth_total",
            "Digest checks of calls on trunks with [trunk.auth], by trunk and result (ok, missing, stale, invalid, locked, replayed, uri-mismatch)",
            &["trunk", "result"],
        );
        let isup_rule_hits = cv(
            "sipfence_isup_rule_hits_total",
            "Rule matches made by the ISUP calling number of SIP-I calls, by trunk and rule",
            &["trunk", "rule"],
        );
        let exemptions = cv(
            "sipfence_exemptions_total",
            "Rules (blacklist, behaviour) that matched a number on the exempt list and were not applied, by trunk and rule",
            &["trunk", "rule"],
        );
        let sipi_calls = cv(
            "sipfence_sipi_calls_total",
            "Initial INVITEs carrying ISUP (SIP-I), by trunk and whether the IAM could be read",
            &["trunk", "iam"],
        );
        let parse_errors = cv(
            "sipfence_parse_errors_total",
            "Messages refused by the parser, by transport and kind",
            &["transport", "kind"],
        );
        let keepalives = cv(
            "sipfence_keepalives_total",
            "Keep-alives received (CRLF pings, STUN), by transport: not SIP, not answered on UDP",
            &["transport"],
        );
        let dropped = cv(
            "sipfence_dropped_total",
            "Messages dropped without an answer, by reason",
            &["reason"],
        );
        let overload = cv(
            "sipfence_overload_rejections_total",
            "INVITEs answered 503 because the proxy was saturated",
            &["trunk"],
        );
        let retransmissions = cv(
            "sipfence_invite_retransmissions_total",
            "Initial INVITEs that repeat one seen within 32 s (UDP retransmissions): judged and answered again, but not counted in sipfence_calls_total, rule hits or records",
            &["trunk"],
        );
        let core_retries = cv(
            "sipfence_core_retries_total",
            "INVITEs that retry a call the core asked to send again (credentials after its 401/407, a longer session interval after 422, ...) and went on: the same call, counted once in sipfence_calls_total and the rule hits (a retry refused is counted there as a call)",
            &["trunk"],
        );
        let into_outage = cv(
            "sipfence_calls_sent_into_outage_total",
            "Calls sent on to a next hop before it was found down (not answering its probes), whose caller's retransmission was then answered 503 here: counted once in sipfence_calls_total, as they were let through, and recorded a second time with the 503 (retry: retransmission)",
            &["trunk"],
        );
        let unknown_dialogs = cv(
            "sipfence_unknown_dialog_invites_total",
            "INVITEs with a To-tag whose dialog this gateway did not see answered (an invented To-tag, or a call set up before a restart or through another gateway): judged as calls, and counted in sipfence_calls_total too",
            &["trunk"],
        );
        let refusals = cv(
            "sipfence_protocol_refusals_total",
            "Requests refused before any rule because they break SIP (400 broken or repeated To/From/Call-ID/CSeq/Max-Forwards/Content-Length, 420 unsupported Proxy-Require, 482 loop, 483 no hops left), or that the next hop cannot take (513: too large for UDP, or grown past 65,535 bytes for TCP; 503, calls only: it is down, not answering its probes, or congested), by trunk (none: no trunk claims the source) and code",
            &["trunk", "code"],
        );
        let core_refusals = cv(
            "sipfence_core_refusals_total",
            "Requests from the core's side (a next hop: its BYEs, re-INVITEs and other in-dialog requests towards a trunk's peer) that sipfence answered itself instead of relaying, by code: 400 broken fields, 420 an unsupported Require (in an OPTIONS to sipfence) or Proxy-Require, 430 a NATed peer's TCP flow gone, 482 a loop through sipfence or a request routed to sipfence itself, 483 no hops left, 503 the peer cannot be reached or its TCP connection cannot take it now, 513 too large for the peer's transport. No call: no verdict, no record",
            &["code"],
        );
        let nat_flows = cv(
            "sipfence_nat_flows_total",
            "NAT traversal on record-routed trunks: written (a flow put in sipfence's Record-Route entry for a peer behind a NAT; on TCP nearly every call of a peer's, whose connection is its flow), followed (a request of the core's sent to a peer's flow instead of its Request-URI), stripped (a flow a peer wrote itself, taken out: forged or copied)",
            &["event"],
        );
        let reloads = cv(
            "sipfence_policy_reloads_total",
            "Policy reloads, by result",
            &["result"],
        );
        let decision_seconds = must(HistogramVec::new(
            HistogramOpts::new(
                "sipfence_decision_seconds",
                "Time to parse and decide on an initial INVITE, from its receive batch leaving the kernel (UDP; the wait behind earlier datagrams of the batch included) or from its framing (TCP)",
            )
            // Microseconds when all is well, up to a quarter second so that a stall
            // (a blocked worker, a swapped-out host) is measured, not clipped at the top
            // bucket.
            .buckets(vec![
                1e-6, 2e-6, 5e-6, 1e-5, 2e-5, 5e-5, 1e-4, 2e-4, 5e-4, 1e-3, 2e-3, 5e-3, 1e-2,
                2.5e-2, 5e-2, 0.1, 0.25,
            ]),
            &["trunk"],
        ));
        must(registry.register(Box::new(decision_seconds.clone())));
        let loaded_at = must(IntGauge::new(
            "sipfence_policy_loaded_timestamp_seconds",
            "When the running policy was loaded",
        ));
        must(registry.register(Box::new(loaded_at.clone())));
        let clock_step = must(Gauge::new(
            "sipfence_clock_step_seconds",
            "How far the wall clock has stepped since the start (NTP at boot, date -s, a VM's clock put right): the calendar (contracted hours, nonces, records) follows it, the tables and windows keep the steady clock; other gateways' shared windows are that far off this one's until a restart",
        ));
        must(registry.register(Box::new(clock_step.clone())));
        let clock_offset = must(Gauge::new(
            "sipfence_clock_offset_seconds",
            "How far this gateway's clock (the steady one its rate windows run on) is from Redis's, measured every 30 s with [redis]: gateways a second or more apart share no count at a window's turn, a minute apart none at all (0 without [redis])",
        ));
        must(registry.register(Box::new(clock_offset.clone())));
        let policy_info = must(IntGaugeVec::new(
            Opts::new(
                "sipfence_policy_info",
                "1 for the fingerprint of the running policy (config, plan, list files and published lists, as `sipfence check` prints it and records carry it)",
            ),
            &["fingerprint"],
        ));
        must(registry.register(Box::new(policy_info.clone())));
        // Constant for the process: which build runs (QA 170: two builds of one
        // version could not be told apart, in an upgrade or a rollback).
        let build_info = must(IntGaugeVec::new(
            Opts::new(
                "sipfence_build_info",
                "1 for the running build: its version and the commit it was built from",
            ),
            &["version", "commit"],
        ));
        must(registry.register(Box::new(build_info.clone())));
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION"), crate::COMMIT])
            .set(1);
        let restart_pending = must(IntGauge::new(
            "sipfence_restart_pending",
            "Settings the loaded policy changed that the process reads at start only (listen addresses, workers, rate_keys, [metrics], [records], [log], [behaviour] sizes, [redis], [hep]): how many differ until a restart",
        ));
        must(registry.register(Box::new(restart_pending.clone())));
        let list_entries = must(IntGaugeVec::new(
            Opts::new("sipfence_list_entries", "Entries in the loaded lists"),
            &["list"],
        ));
        must(registry.register(Box::new(list_entries.clone())));
        let list_segments = must(IntGaugeVec::new(
            Opts::new(
                "sipfence_list_segments",
                "Segments and ranges' blocks among the entries of the loaded lists",
            ),
            &["list"],
        ));
        must(registry.register(Box::new(list_segments.clone())));
        let concurrent_calls = must(IntGaugeVec::new(
            Opts::new(
                "sipfence_concurrent_calls",
                "Calls up on a trunk that limits its concurrent calls (max_concurrent_calls)",
            ),
            &["trunk"],
        ));
        must(registry.register(Box::new(concurrent_calls.clone())));
        let concurrent_calls_elsewhere = must(IntGaugeVec::new(
            Opts::new(
                "sipfence_concurrent_calls_elsewhere",
                "Calls up on a trunk that limits its concurrent calls, at the other gateways sharing the limit through Redis (as last learnt; 0 without [redis])",
            ),
            &["trunk"],
        ));
        must(registry.register(Box::new(concurrent_calls_elsewhere.clone())));
        let concurrent_calls_ended_elsewhere = must(IntCounterVec::new(
            Opts::new(
                "sipfence_concurrent_calls_ended_elsewhere_total",
                "Calls of trunks with max_concurrent_calls ended through a gateway other than the one that admitted them, shared through Redis: side=told (callers' BYEs of calls not held here, answered 2xx by the core, told the other gateways), side=heard (this gateway's calls, their places given back)",
            ),
            &["side"],
        ));
        must(registry.register(Box::new(concurrent_calls_ended_elsewhere.clone())));
        let tcp_connections = must(IntGauge::new(
            "sipfence_tcp_connections",
            "Open TCP connections",
        ));
        must(registry.register(Box::new(tcp_connections.clone())));
        let tcp_connections_limit = must(IntGauge::new(
            "sipfence_tcp_connections_limit",
            "Accepted TCP connections sipfence keeps open at once: [proxy] max_tcp_connections, or fewer when the open files limit leaves room for fewer",
        ));
        must(registry.register(Box::new(tcp_connections_limit.clone())));
        let next_hops_down = must(IntGauge::new(
            "sipfence_next_hops_down",
            "Next hops down: TCP ones whose last connection attempt failed (their requests are answered 503 until one succeeds, tried every second), UDP ones that stopped answering their OPTIONS probes (their new calls are answered 503 until one is answered)",
        ));
        must(registry.register(Box::new(next_hops_down.clone())));
        let next_hop_down = must(IntGaugeVec::new(
            Opts::new(
                "sipfence_next_hop_down",
                "1 for each next hop counted in sipfence_next_hops_down, by its address and transport",
            ),
            &["next_hop", "transport"],
        ));
        must(registry.register(Box::new(next_hop_down.clone())));
        let records_written = must(IntCounter::new(
            "sipfence_records_written_total",
            "Signaling records written",
        ));
        must(registry.register(Box::new(records_written.clone())));
        let records_dropped = must(IntCounter::new(
            "sipfence_records_dropped_total",
            "Signaling records not written: the writer was behind, or the disk refused them (full, read-only; logged once per episode)",
        ));
        must(registry.register(Box::new(records_dropped.clone())));
        let rejected_pcap_dropped = must(IntCounter::new(
            "sipfence_rejected_pcap_dropped_total",
            "Rejected requests not written to the pcap of rejected calls ([records] pcap_rejected): the writer was behind, or the disk refused them",
        ));
        must(registry.register(Box::new(rejected_pcap_dropped.clone())));
        let rate_keys = must(IntGauge::new(
            "sipfence_rate_keys",
            "Keys held by the rate counters",
        ));
        must(registry.register(Box::new(rate_keys.clone())));
        let rate_overflows = must(IntCounter::new(
            "sipfence_rate_overflows_total",
            "Calls of keys the full rate table could not keep ([proxy] rate_keys): per-caller limits lapse, lockout and rate-limit counts go to their trunk's overflow counter, until keys free up",
        ));
        must(registry.register(Box::new(rate_overflows.clone())));
        let call_state_entries = must(IntGaugeVec::new(
            Opts::new(
                "sipfence_call_state_entries",
                "Entries of the tables the stateless proxy keeps beside the rate counters, each bounded by [proxy] rate_keys: dialogs (answered calls, 6 h or until BYE), invites (INVITE transactions seen), transactions (verdicts of rate-counted INVITEs), answers (digest answers used), froms (the From a call was given, for its CANCEL and later requests: rewritten calls, and every call of a trunk with record_route)",
            ),
            &["table"],
        ));
        must(registry.register(Box::new(call_state_entries.clone())));
        let call_state_overflows = cv(
            "sipfence_call_state_overflows_total",
            "New entries a full call-state table could not keep ([proxy] rate_keys): for dialogs, their re-INVITEs are judged as new calls",
            &["table"],
        );
        for t in ["dialogs", "invites", "transactions", "answers", "froms"] {
            call_state_entries.with_label_values(&[t]);
            call_state_overflows.with_label_values(&[t]);
        }
        let behaviour_events = cv(
            "sipfence_behaviour_events_total",
            "Call outcomes the behaviour rules learn from, by trunk and event",
            &["trunk", "event"],
        );
        let behaviour_entries = must(IntGaugeVec::new(
            Opts::new(
                "sipfence_behaviour_table_entries",
                "Entries held by the fixed-size behaviour tables (callers, watched, calls)",
            ),
            &["table"],
        ));
        must(registry.register(Box::new(behaviour_entries.clone())));
        let behaviour_evictions = cv(
            "sipfence_behaviour_evictions_total",
            "Behaviour table entries overwritten because their set was full",
            &["table"],
        );
        for t in ["callers", "calls"] {
            behaviour_evictions.with_label_values(&[t]);
        }
        for t in ["callers", "watched", "calls"] {
            behaviour_entries.with_label_values(&[t]);
        }
        // Exported only with `[redis]` ([`Metrics::redis_configured`]): a 0 on a gateway
        // that has no Redis would read as "Redis down" on the dashboard.
        let redis_up = must(IntGauge::new(
            "sipfence_redis_up",
            "1 while the last call to the shared Redis succeeded",
        ));
        let redis_errors = cv(
            "sipfence_redis_errors_total",
            "Failed or timed-out Redis calls, by what they were for",
            &["op"],
        );
        for op in ["counters", "calls", "lists", "records"] {
            redis_errors.with_label_values(&[op]);
        }
        // Registered with `[redis]` only (`redis_configured`).
        let shared_fallbacks = must(IntCounterVec::new(
            Opts::new(
                "sipfence_shared_rate_fallbacks_total",
                "Calls whose rate rules were judged with Redis out of reach: on this gateway's count alone (open), or with a rule set to fail closed matching (closed)",
            ),
            &["fallback"],
        ));
        for f in ["open", "closed"] {
            shared_fallbacks.with_label_values(&[f]);
        }

        let list_version = must(IntGaugeVec::new(
            Opts::new(
                "sipfence_list_version",
                "Published list version: running here, the newest in Redis as last polled (published; 0: none there), and the last one refused. Running above published: the set running here is gone from Redis, and a gateway started now runs its list files alone",
            ),
            &["state"],
        ));
        must(registry.register(Box::new(list_version.clone())));
        for st in ["running", "published", "refused"] {
            list_version.with_label_values(&[st]);
        }
        let list_refused = must(IntGauge::new(
            "sipfence_list_refused",
            "1 while the newest list set published through Redis is refused (the running one stays), else 0",
        ));
        must(registry.register(Box::new(list_refused.clone())));
        let redis_records = cv(
            "sipfence_redis_records_total",
            "Signaling records sent to the Redis stream, by result",
            &["result"],
        );
        for r in ["written", "dropped"] {
            redis_records.with_label_values(&[r]);
        }
        let hep_packets = cv(
            "sipfence_hep_packets_total",
            "Messages mirrored to Homer ([hep]), by outcome (sent, socket-full, send-failed, too-large)",
            &["outcome"],
        );
        for o in crate::observability::homer::OUTCOMES {
            hep_packets.with_label_values(&[o]);
        }
        // Parse error kinds are a closed set: create them all so dashboards show zeros.
        for t in ["udp", "tcp"] {
            for k in ErrorKind::ALL {
                parse_errors.with_label_values(&[t, k.as_str()]);
            }
        }
        for r in ["ok", "failed"] {
            reloads.with_label_values(&[r]);
        }
        for t in ["udp", "tcp"] {
            for k in ["request", "response"] {
                messages.with_label_values(&[t, k]);
            }
            keepalives.with_label_values(&[t]);
        }
        for r in DROP_REASONS {
            dropped.with_label_values(&[r]);
        }
        for c in CORE_REFUSAL_CODES {
            core_refusals.with_label_values(&[c.to_string().as_str()]);
        }
        for e in ["written", "followed", "stripped"] {
            nat_flows.with_label_values(&[e]);
        }
        Metrics {
            registry,
            messages,
            calls,
            rule_hits,
            auth,
            isup_rule_hits,
            exemptions,
            sipi_calls,
            parse_errors,
            keepalives,
            dropped,
            overload,
            retransmissions,
            core_retries,
            into_outage,
            unknown_dialogs,
            refusals,
            core_refusals,
            nat_flows,
            decision_seconds,
            reloads,
            loaded_at,
            clock_step,
            clock_offset,
            policy_info,
            restart_pending,
            list_entries,
            list_segments,
            concurrent_calls,
            concurrent_calls_elsewhere,
            concurrent_calls_ended_elsewhere,
            tcp_connections,
            tcp_connections_limit,
            next_hops_down,
            next_hop_down,
            records_written,
            records_dropped,
            rejected_pcap_dropped,
            rate_keys,
            rate_overflows,
            call_state_entries,
            call_state_overflows,
            behaviour_events,
            behaviour_entries,
            behaviour_evictions,
            redis_up,
            redis_errors,
            shared_fallbacks,
            list_version,
            list_refused,
            redis_records,
            hep_packets,
        }
    }

    /// Moves a counter up to a total kept elsewhere (an atomic in the cluster code).
    pub fn catch_up(c: &IntCounter, total: u64) {
        c.inc_by(total.saturating_sub(c.get()));
    }

    /// Publishes the call-state tables' occupancy and overflows (from the periodic
    /// tick).
    pub fn call_state(&self, r: &crate::policy::rate::Recent) {
        for (t, held, overflowed) in r.tables() {
            self.call_state_entries
                .with_label_values(&[t])
                .set(held as i64);
            Self::catch_up(
                &self.call_state_overflows.with_label_values(&[t]),
                overflowed,
            );
        }
    }

    /// Publishes the behaviour tables' occupancy (from the periodic tick). Evictions
    /// are kept by the tracker as totals; the counters move by the difference.
    pub fn behaviour_stats(&self, s: &crate::behaviour::local::Stats) {
        for (t, v) in [
            ("callers", s.callers),
            ("watched", s.watched),
            ("calls", s.calls),
        ] {
            self.behaviour_entries.with_label_values(&[t]).set(v as i64);
        }
        for (t, total) in [("callers", s.caller_evictions), ("calls", s.call_evictions)] {
            Self::catch_up(&self.behaviour_evictions.with_label_values(&[t]), total);
        }
    }

    /// Resolves the per-trunk handles for a policy (called at load and reload).
    pub fn bind(&self, p: &Policy) -> Bound {
        // One series: the last policy bound is the one running.
        self.policy_info.reset();
        self.policy_info
            .with_label_values(&[p.fingerprint().as_str()])
            .set(1);
        let names: Vec<&str> = p
            .trunks
            .iter()
            .map(|t| t.name.as_str())
            .chain(std::iter::once("none"))
            .collect();
        let mut b = Bound {
            calls: vec![],
            hits: vec![],
            rule_hits: self.rule_hits.clone(),
            names: names.iter().map(|n| n.to_string()).collect(),
            tags: p.trunks.iter().map(|t| t.tag()).collect(),
            isup_hits: vec![],
            exempted: vec![],
            sipi: vec![],
            overload: vec![],
            retransmissions: vec![],
            core_retries: vec![],
            into_outage: vec![],
            unknown_dialogs: vec![],
            refusals: vec![],
            latency: vec![],
            events: vec![],
            auth: vec![],
            fallbacks: ["open", "closed"].map(|f| self.shared_fallbacks.with_label_values(&[f])),
        };
        for (i, n) in names.iter().enumerate() {
            b.calls
                .push(VERDICTS.map(|v| self.calls.with_label_values(&[n, v])));
            let trunk = p.trunks.get(i);
            let hits = RuleId::ORDER
                .iter()
                .map(|r| {
                    // Only series that can move: rules of this trunk's role, switched on;
                    // for unknown sources, only unknown-source.
                    let relevant = match trunk {
                        Some(t) => t.runs(*r) && *r != RuleId::UnknownSource,
                        None => *r == RuleId::UnknownSource,
                    };
                    let a = p.action(trunk.map(|_| i), *r);
                    let series = |action: &'static str| {
                        (
                            action,
                            self.rule_hits.with_label_values(&[n, r.as_str(), action]),
                        )
                    };
                    (relevant && a.kind != ActionKind::Off).then(|| match a.kind {
                        ActionKind::RateLimit => RuleHits {
                            usual: series("label"),
                            other: Some(series("reject")),
                        },
                        // Every authenticated call is challenged first.
                        ActionKind::Reject if *r == RuleId::TrunkAuth => RuleHits {
                            usual: series("challenge"),
                            other: Some(series("reject")),
                        },
                        k => RuleHits {
                            usual: series(k.as_str()),
                            other: None,
                        },
                    })
                })
                .collect::<Vec<_>>();
            let isup_hits = hits
                .iter()
                .zip(RuleId::ORDER)
                .map(|(h, r)| {
                    h.as_ref()
                        .filter(|_| r.judges_number())
                        .map(|_| self.isup_rule_hits.with_label_values(&[n, r.as_str()]))
                })
                .collect();
            let exempted = hits
                .iter()
                .zip(RuleId::ORDER)
                .map(|(h, r)| {
                    h.as_ref()
                        .filter(|_| !p.exempt.is_empty() && r.exemptable())
                        .map(|_| self.exemptions.with_label_values(&[n, r.as_str()]))
                })
                .collect();
            b.hits.push(hits);
            b.isup_hits.push(isup_hits);
            b.exempted.push(exempted);
            b.sipi.push(
                ["decoded", "unreadable"].map(|k| self.sipi_calls.with_label_values(&[n, k])),
            );
            b.overload.push(self.overload.with_label_values(&[n]));
            b.retransmissions
                .push(self.retransmissions.with_label_values(&[n]));
            b.core_retries
                .push(self.core_retries.with_label_values(&[n]));
            b.into_outage.push(self.into_outage.with_label_values(&[n]));
            b.unknown_dialogs
                .push(self.unknown_dialogs.with_label_values(&[n]));
            b.refusals.push(REFUSAL_CODES.map(|c| {
                self.refusals
                    .with_label_values(&[*n, c.to_string().as_str()])
            }));
            b.events.push(
                crate::behaviour::Seen::ALL
                    .map(|e| self.behaviour_events.with_label_values(&[n, e.as_str()])),
            );
            b.latency
                .push(self.decision_seconds.with_label_values(&[n]));
            b.auth.push(
                trunk
                    .filter(|t| t.auth.is_some())
                    .map(|_| AuthCheck::NAMES.map(|r| self.auth.with_label_values(&[n, r]))),
            );
        }
        // A trunk that no longer limits its calls leaves the gauge.
        self.concurrent_calls.reset();
        self.concurrent_calls_elsewhere.reset();
        self.calls_up(p, &crate::behaviour::NoTracking, 0);
        // A trunk a reload removed leaves no whitelist series behind.
        self.list_entries.reset();
        self.list_segments.reset();
        let sized = |name: &str, l: &crate::policy::lists::NumberSet| {
            self.list_entries
                .with_label_values(&[name])
                .set(l.len() as i64);
            self.list_segments
                .with_label_values(&[name])
                .set(l.segment_len() as i64);
        };
        for (name, l) in p.named_lists() {
            sized(name, l);
        }
        // One series per trunk: summed, one customer's whitelist cut short was a small
        // share of all of them, under what the shrink alert sees (QA 167).
        for t in &p.trunks {
            if let Some(w) = &t.whitelist {
                sized(&format!("whitelist:{}", t.name), w);
            }
        }
        b
    }

    /// Sets the calls-up gauge of every trunk that limits its concurrent calls.
    pub fn calls_up(&self, p: &Policy, t: &dyn crate::behaviour::BehaviourTracker, now_ms: u64) {
        for (trunk, _) in p.limited_trunks() {
            self.concurrent_calls
                .with_label_values(&[trunk.name.as_str()])
                .set(t.calls_up(trunk.id, now_ms) as i64);
            self.concurrent_calls_elsewhere
                .with_label_values(&[trunk.name.as_str()])
                .set(t.calls_elsewhere(trunk.id) as i64);
        }
        let (told, heard) = t.ends_shared();
        for (side, n) in [("told", told), ("heard", heard)] {
            let c = self
                .concurrent_calls_ended_elsewhere
                .with_label_values(&[side]);
            c.inc_by(n.saturating_sub(c.get()));
        }
    }

    /// The next hops down now: their count, and each by name.
    pub fn next_hops_down_are(
        &self,
        down: &[(std::net::SocketAddr, crate::policy::config::Transport)],
    ) {
        self.next_hops_down.set(down.len() as i64);
        self.next_hop_down.reset();
        for (a, t) in down {
            self.next_hop_down
                .with_label_values(&[&a.to_string(), t.as_str()])
                .set(1);
        }
    }

    pub fn parse_error(&self, transport: &str, k: ErrorKind) {
        self.parse_errors
            .with_label_values(&[transport, k.as_str()])
            .inc();
    }

    /// A Redis operation (`counters`, `lists`, ...) that failed or timed out.
    pub fn redis_error(&self, op: &'static str) {
        self.redis_errors.with_label_values(&[op]).inc();
    }

    pub fn keepalive(&self, transport: &str) {
        self.keepalives.with_label_values(&[transport]).inc();
    }

    /// A request of the core's answered here ([`CORE_REFUSAL_CODES`]; the labels of
    /// the few others it could be are made when first met).
    pub fn core_refused(&self, code: u16) {
        self.core_refusals
            .with_label_values(&[itoa::Buffer::new().format(code)])
            .inc();
    }

    /// A NAT flow written, followed or stripped ([`crate::proxy::stateless::Observed::Flow`]).
    pub fn nat_flow(&self, event: &'static str) {
        self.nat_flows.with_label_values(&[event]).inc();
    }

    pub fn dropped(&self, reason: &'static str) {
        self.dropped.with_label_values(&[reason]).inc();
    }

    /// Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut buf = vec![];
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Bound {
    fn slot(&self, trunk: Option<usize>) -> usize {
        trunk
            .filter(|&t| t < self.calls.len() - 1)
            .unwrap_or(self.calls.len() - 1)
    }

    /// Counts one decision: the verdict of a call, and every rule hit.
    pub fn count(&self, d: &Decision, seconds: f64) {
        let s = self.slot(d.trunk);
        if d.retransmission {
            // Its original was counted: the same call, rule hits and all. One answered
            // otherwise (503, its next hop found down since) is counted apart: not in
            // the protocol refusals, which the block-spike alert takes out of the calls
            // refused, where this call is not (QA 147).
            self.retransmissions[s].inc();
            self.latency[s].observe(seconds);
            if d.answered_otherwise {
                self.into_outage[s].inc();
            }
            return;
        }
        if d.core_retry && d.outcome == crate::decide::Outcome::Forward {
            // The call its first INVITE was, counted then: a core that challenges every
            // call must not double the calls panel and halve the block ratio (QA 71).
            self.core_retries[s].inc();
            self.latency[s].observe(seconds);
            return;
        }
        if d.unknown_dialog {
            self.unknown_dialogs[s].inc();
        }
        if let Some(f) = d.rate_fallback {
            self.fallbacks[(f == crate::policy::config::Fallback::Closed) as usize].inc();
        }
        if d.kind == Kind::Call {
            // Index into VERDICTS.
            let v = VERDICTS
                .iter()
                .position(|&v| v == d.verdict_str())
                .unwrap_or(VERDICTS.len() - 1);
            self.calls[s][v].inc();
            self.latency[s].observe(seconds);
        }
        // A next hop's 503 is counted for calls only: it is what the block-spike alert
        // takes out of the calls refused (QA 119 N3: a PBX's OPTIONS answered 503 hid
        // real blocks).
        if let Some(r) = d.refusal
            && (r.code != 503 || d.kind == Kind::Call)
            && let Some(i) = REFUSAL_CODES.iter().position(|&c| c == r.code)
        {
            self.refusals[s][i].inc();
        }
        for r in d.hits.iter() {
            let Some(h) = &self.hits[s][r.index()] else {
                continue;
            };
            // The `action` label says what the rule did to this call, not what it was
            // set to: a refusals panel (`action=~"reject|drop"`) then sees a rate-limit
            // rule's refusals but not its labelled passes, and no digest challenge.
            let action = if d.rule == Some(r) && d.is_reject() {
                d.verdict_str()
            } else {
                h.usual.0
            };
            match &h.other {
                _ if action == h.usual.0 => h.usual.1.inc(),
                Some((o, c)) if action == *o => c.inc(),
                // A refusal that became a silent drop: rare, worth no handle.
                _ => self
                    .rule_hits
                    .with_label_values(&[self.names[s].as_str(), r.as_str(), action])
                    .inc(),
            }
        }
        for r in d.exempted.iter() {
            if let Some(c) = &self.exempted[s][r.index()] {
                c.inc();
            }
        }
        if let (Some(a), Some(Some(c))) = (d.auth, self.auth.get(s)) {
            c[a.index()].inc();
        }
        if let Some(i) = &d.identity.isup {
            self.sipi[s][i.iam.is_err() as usize].inc();
            for r in d.isup_hits.iter() {
                if let Some(c) = &self.isup_hits[s][r.index()] {
                    c.inc();
                }
            }
        }
    }

    /// A call outcome the behaviour tracker attributed to a call of the trunk tagged
    /// `tag` ([`crate::policy::Trunk::tag`]).
    pub fn behaviour_event(&self, tag: crate::policy::TrunkTag, e: crate::behaviour::Seen) {
        // By the trunk's name, not its place: a reload that reorders trunks leaves the
        // calls up counted on theirs. A call decided under the previous policy may name
        // a trunk that no longer exists: counted under "none" rather than lost.
        let t = self.tags.iter().position(|&t| t == tag);
        self.events[self.slot(t)][e.index()].inc();
    }

    pub fn overload(&self, trunk: Option<usize>) {
        self.overload[self.slot(trunk)].inc();
    }
}

#[cfg(test)]
mod tests {
    /// Only series that can move are made at start: no unknown-source hits on a named
    /// trunk (an unknown source has no trunk), no ISUP matches of rules that judge no
    /// number.
    #[test]
    fn no_series_that_cannot_move() {
        let text = "[[trunk]]\nname = \"ic\"\nrole = \"interconnect\"\nsources = [\"10.0.0.1\"]\nmax_concurrent_calls = 5\nrecord_route = true\n";
        let p = crate::policy::Policy::from_str(text, "t.toml", std::path::Path::new(".")).unwrap();
        let m = super::Metrics::new();
        let _b = m.bind(&p);
        let out = m.render();
        assert!(
            out.contains("rule_hits_total{action=\"drop\",rule=\"unknown-source\",trunk=\"none\"}")
                || out.contains(
                    "rule_hits_total{action=\"reject\",rule=\"unknown-source\",trunk=\"none\"}"
                ),
            "{out}"
        );
        assert!(
            !out.contains("rule=\"unknown-source\",trunk=\"ic\""),
            "{out}"
        );
        assert!(
            out.contains("sipfence_isup_rule_hits_total{rule=\"blacklist\",trunk=\"ic\"}"),
            "{out}"
        );
        assert!(
            out.contains(
                "sipfence_rule_hits_total{action=\"reject\",rule=\"concurrent-calls\",trunk=\"ic\"}"
            ),
            "{out}"
        );
        for r in ["concurrent-calls", "unknown-source"] {
            assert!(
                !out.contains(&format!("sipfence_isup_rule_hits_total{{rule=\"{r}\"")),
                "{out}"
            );
        }
    }

    /// Each trunk's whitelist is a series of its own (QA 167: summed over trunks, one
    /// customer's cut short hid under the shrink alert's tenth), and a trunk a reload
    /// removed leaves none behind.
    #[test]
    fn whitelists_are_counted_per_trunk() {
        let trunk = |n: &str, ip: &str, entries: &str| {
            format!(
                "[[trunk]]\nname = \"{n}\"\nrole = \"enterprise\"\nsources = [\"{ip}\"]\n[trunk.whitelist]\nentries = [{entries}]\n"
            )
        };
        let load = |text: String| {
            crate::policy::Policy::from_str(&text, "t.toml", std::path::Path::new(".")).unwrap()
        };
        let m = super::Metrics::new();
        let _b = m.bind(&load(
            trunk("a", "10.0.0.1", "\"+8613912340001\", \"+8613912340002\"")
                + &trunk("b", "10.0.0.2", "\"+8613912350000..+8613912359999\""),
        ));
        let out = m.render();
        for line in [
            "sipfence_list_entries{list=\"whitelist:a\"} 2",
            "sipfence_list_entries{list=\"whitelist:b\"} 1",
            "sipfence_list_segments{list=\"whitelist:b\"} 1",
        ] {
            assert!(out.contains(line), "{line}\n{out}");
        }
        let _b = m.bind(&load(trunk("b", "10.0.0.2", "\"+8613912340001\"")));
        let out = m.render();
        assert!(!out.contains("whitelist:a"), "{out}");
        assert!(
            out.contains("sipfence_list_entries{list=\"whitelist:b\"} 1"),
            "{out}"
        );
    }

    /// Every reason the code drops for is one [`super::DROP_REASONS`] creates at start (a
    /// reason missing there would have no series until its first drop), and every reason
    /// listed is given somewhere.
    #[test]
    fn every_drop_reason_is_created_at_start() {
        fn walk(dir: &std::path::Path, found: &mut Vec<String>) {
            for e in std::fs::read_dir(dir).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    walk(&p, found);
                } else if p.extension().is_some_and(|x| x == "rs") {
                    let text = std::fs::read_to_string(&p).unwrap();
                    for pat in ["Dropped(\"", "dropped(\""] {
                        for (i, _) in text.match_indices(pat) {
                            let rest = &text[i + pat.len()..];
                            found.push(rest[..rest.find('"').unwrap()].to_string());
                        }
                    }
                }
            }
        }
        let mut found = vec![];
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        walk(&src, &mut found);
        assert!(found.len() >= 15, "{found:?}");
        for r in &found {
            assert!(
                super::DROP_REASONS.contains(&r.as_str()),
                "reason {r:?} is not in DROP_REASONS"
            );
        }
        for r in super::DROP_REASONS {
            assert!(found.iter().any(|f| f == r), "{r} is never given");
        }
    }
    /// A call's outcome is counted on its trunk by name: a reload that puts a trunk
    /// ahead of it while the call is up does not move its events to another trunk.
    #[test]
    fn behaviour_events_follow_the_trunk_name() {
        let trunk = |n: &str, ip: &str| {
            format!("[[trunk]]\nname = \"{n}\"\nrole = \"interconnect\"\nsources = [\"{ip}\"]\n")
        };
        let load = |text: String| {
            crate::policy::Policy::from_str(&text, "t.toml", std::path::Path::new(".")).unwrap()
        };
        let before = load(trunk("a", "10.0.0.1") + &trunk("b", "10.0.0.2"));
        let after =
            load(trunk("new", "10.0.0.3") + &trunk("b", "10.0.0.2") + &trunk("a", "10.0.0.1"));
        let m = super::Metrics::new();
        // The tracker noted the call's trunk under the policy it was decided by.
        let tag = before.trunks[0].tag();
        let _old = m.bind(&before);
        let b = m.bind(&after);
        b.behaviour_event(tag, crate::behaviour::Seen::Answered);
        b.behaviour_event(0xFFFF_FFFF ^ tag, crate::behaviour::Seen::Answered);
        let out = m.render();
        for (t, n) in [("a", 1), ("b", 0), ("new", 0), ("none", 1)] {
            let line =
                format!("sipfence_behaviour_events_total{{event=\"answered\",trunk=\"{t}\"}} {n}");
            assert!(out.contains(&line), "{line}\n{out}");
        }
    }

    /// Trunks whose names hash alike in the top sixteen bits (even odds among 300
    /// trunks) keep their call outcomes apart.
    #[test]
    fn behaviour_events_of_trunks_alike_in_sixteen_bits_stay_apart() {
        let (x, y) = crate::policy::rate::names_alike_in_top_bits("pbx-", 16);
        let text = format!(
            "[[trunk]]\nname = \"{x}\"\nrole = \"interconnect\"\nsources = [\"10.0.0.1\"]\n\
             [[trunk]]\nname = \"{y}\"\nrole = \"interconnect\"\nsources = [\"10.0.0.2\"]\n"
        );
        let p =
            crate::policy::Policy::from_str(&text, "t.toml", std::path::Path::new(".")).unwrap();
        assert_ne!(p.trunks[0].tag(), p.trunks[1].tag());
        let m = super::Metrics::new();
        let b = m.bind(&p);
        b.behaviour_event(p.trunks[1].tag(), crate::behaviour::Seen::Answered);
        let out = m.render();
        for (t, n) in [(&x, 0), (&y, 1)] {
            let line =
                format!("sipfence_behaviour_events_total{{event=\"answered\",trunk=\"{t}\"}} {n}");
            assert!(out.contains(&line), "{line}\n{out}");
        }
    }
}
