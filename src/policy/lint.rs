//! Contradictions a policy loads with but no operator means: whitelist entries that an
//! earlier rule refuses before the whitelist is ever read. The rules run in a fixed
//! order (numbering plan, no-voice, blacklist, foreign network, then the whitelist), so
//! a contracted number that the plan calls invalid, that is blacklisted, or that lies
//! outside this network's own segments can never place a call on that trunk. The
//! provisioning engineer learns it from `sipfence check` (and the log at start and
//! reload) instead of from the customer.

use super::config::{ActionKind, ListenSpec, SourceSpec};
use super::lists::{EntryKind, NumberSet};
use super::{Policy, RuleId, Trunk};
use crate::numbering::Number;
use crate::numbering::plan::Class;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// At most this many entries are named per trunk and reason; the rest are counted.
const NAMED: usize = 5;

/// A segment with fewer digits than this (country code included) takes in a whole
/// country, region or carrier: `0*` (every domestic number), `+86139*`.
const WIDE_SEGMENT: usize = 7;

/// Whether a list entry takes in a whole country, region or carrier: a segment of a
/// handful of leading digits, a range of a million numbers or more (`+8613900000000..
/// +8613999999999`); not a range of complete short numbers (`95500..95599`: QA 58).
fn wide(lead: &Number, kind: EntryKind) -> bool {
    match kind {
        EntryKind::Exact => false,
        EntryKind::Segment => lead.as_str().len() < WIDE_SEGMENT,
        EntryKind::Range(len) => (len as usize).saturating_sub(lead.len()) >= 6,
    }
}

/// A list entry as a report shows it, with `at` (where it was written) after it.
fn shown(lead: Number, kind: EntryKind, at: &str) -> String {
    match kind {
        EntryKind::Exact => format!("{lead}{at}"),
        EntryKind::Segment => format!("{lead}*{at}"),
        // One `x` a digit: the range's numbers have that length.
        EntryKind::Range(len) => format!(
            "{lead}{}{at}",
            "x".repeat((len as usize).saturating_sub(lead.len()))
        ),
    }
}

/// The first [`NAMED`] of `v`, and how many more.
fn named(v: &[String]) -> String {
    first_of(v, NAMED)
}

/// The first `n` of `v`, and how many more.
fn first_of(v: &[String], n: usize) -> String {
    let more = v.len().saturating_sub(n);
    let mut s = v[..v.len().min(n)].join(", ");
    if more > 0 {
        s.push_str(&format!(" and {more} more"));
    }
    s
}

/// Where a list entry was written, as a report puts it after the entry: ` (file:line,
/// ...)`, the first three lines and how many more; empty for an entry of the policy
/// itself.
fn written_at(list: &NumberSet, lead: &Number, kind: EntryKind) -> String {
    let lines = list.origins_of(lead, kind);
    if lines.is_empty() {
        String::new()
    } else {
        format!(" ({})", first_of(&lines, 3))
    }
}

fn refuses(t: &Trunk, r: RuleId) -> bool {
    t.runs(r) && matches!(t.action(r).kind, ActionKind::Reject | ActionKind::Drop)
}

/// The earlier trunks (`before`) that together take every message trunk `b` would (a
/// message belongs to the first trunk whose sources and listen addresses both match
/// it): for each of `b`'s listen addresses, the sources of the earlier trunks that take
/// messages there (a wildcard listener of that port does, QA 43) cover each of `b`'s
/// sources, one network or several side by side (`10.0.0.0/24` and `10.0.1.0/24` cover
/// `10.0.0.0/23`). Empty: `b` can match.
fn shadowing<'a>(before: &'a [Trunk], b: &Trunk) -> Vec<&'a str> {
    let everyone = [
        SourceSpec {
            net: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            prefix: 0,
            port: None,
        },
        SourceSpec {
            net: IpAddr::V6(Ipv6Addr::UNSPECIFIED),
            prefix: 0,
            port: None,
        },
    ];
    let sources = if b.sources.is_empty() {
        &everyone[..]
    } else {
        &b.sources[..]
    };
    // No listen address: any socket, which only another trunk without one matches
    // wherever `b` would.
    let listens: Vec<Option<&ListenSpec>> = if b.listen.is_empty() {
        vec![None]
    } else {
        b.listen.iter().map(Some).collect()
    };
    let mut used = vec![false; before.len()];
    for l in listens {
        let here = |a: &Trunk| l.map_or(a.listen.is_empty(), |l| a.takes_at(l));
        for s in sources {
            // The earlier networks of the source's family that admit its port.
            let mut ranges: Vec<(u128, u128, usize)> = Vec::new();
            for (k, a) in before.iter().enumerate().filter(|(_, a)| here(a)) {
                let nets = if a.sources.is_empty() {
                    &everyone[..]
                } else {
                    &a.sources[..]
                };
                for x in nets {
                    if x.net.is_ipv4() == s.net.is_ipv4()
                        && x.port.is_none_or(|p| s.port == Some(p))
                    {
                        let (lo, hi) = span(x);
                        ranges.push((lo, hi, k));
                    }
                }
            }
            ranges.sort_unstable();
            let (lo, hi) = span(s);
            let mut at = lo;
            let mut covered = false;
            for (rlo, rhi, k) in ranges {
                if rhi < at {
                    continue;
                }
                if rlo > at {
                    break;
                }
                used[k] = true;
                if rhi >= hi {
                    covered = true;
                    break;
                }
                at = rhi + 1;
            }
            if !covered {
                return Vec::new();
            }
        }
    }
    before
        .iter()
        .zip(used)
        .filter(|(_, u)| *u)
        .map(|(a, _)| a.name.as_str())
        .collect()
}

/// The first and last address of a source network, as numbers of its family.
fn span(s: &SourceSpec) -> (u128, u128) {
    let (n, bits) = match s.network() {
        IpAddr::V4(a) => (u32::from(a) as u128, 32u32),
        IpAddr::V6(a) => (u128::from(a), 128u32),
    };
    let host = bits - u32::from(s.prefix).min(bits);
    let mask = if host == 0 {
        0
    } else {
        u128::MAX >> (128 - host)
    };
    (n, n | mask)
}

/// One line per trunk and reason: `trunk ent-bank whitelist: 2 entries refused first by
/// blacklist: +8613800000001, +8613800000002`; and a trunk that an earlier one leaves
/// nothing to.
pub fn warnings(p: &Policy) -> Vec<String> {
    let mut out = p.notes.clone();
    for (name, files) in &p.empty_files {
        let one = files.len() == 1;
        out.push(format!(
            "{name}: its file{} ({}) hold{} no entry: the list is empty (an export that failed, or a file cut short?)",
            if one { "" } else { "s" },
            files.join(", "),
            if one { "s" } else { "" },
        ));
    }
    if p.own_segments.is_empty()
        && p.trunks
            .iter()
            .any(|t| refuses(t, RuleId::EnterpriseForeignNetwork))
    {
        out.push(
            "no [lists.own_segments]: enterprise trunks refuse other countries' numbers, but cannot tell this network's domestic numbers from another carrier's"
                .to_string(),
        );
    }
    // Past the time the service managers give a stop before they kill: a kill mid-drain
    // writes no calls file, and the restarted gateway counts none of the calls up (QA
    // 170: `check` said nothing of 30 s).
    if p.proxy.drain_secs >= 10 {
        out.push(format!(
            "[proxy] drain_secs = {} is as long as `docker stop` waits (10 s) before it kills, and the shipped systemd unit waits 15 s (TimeoutStopSec): a kill mid-drain writes no calls file and loses the records queued; give the manager longer (docker stop -t, TimeoutStopSec=) or drain less",
            p.proxy.drain_secs
        ));
    }
    // `advertise` stands in for the address a wildcard socket lacks, and only there.
    if let Some(a) = p.proxy.advertise {
        let wild: Vec<_> = p
            .listen_addrs()
            .into_iter()
            .filter(|l| l.addr.ip().is_unspecified())
            .collect();
        if wild.is_empty() {
            out.push(format!(
                "[proxy] advertise {a} is given only on wildcard listen addresses (0.0.0.0, [::]), and there are none: it changes nothing (each explicit address names itself)"
            ));
        } else if a.is_ipv6() && wild.iter().all(|l| l.addr.is_ipv4()) {
            out.push(format!(
                "[proxy] advertise {a} is IPv6, and the wildcard listen addresses are 0.0.0.0 (IPv4 only): it changes nothing"
            ));
        }
    }
    // Sections whose settings do nothing without their address.
    // Any setting other than its default was written, so `*_written` says it all.
    if p.redis.url.is_empty() && p.redis_written {
        out.push(
            "[redis] settings without url: Redis is not used (counters, lists and records stay local)"
                .to_string(),
        );
    }
    if p.hep.server.is_none() && p.hep_written {
        out.push("[hep] settings without server: nothing is mirrored".to_string());
    }
    if p.records.dir.is_empty() && p.records.pcap_rejected {
        out.push(
            "[records] pcap_rejected without dir: no records and no capture are written"
                .to_string(),
        );
    }
    // Without shared counters a rate rule counts alone and never falls back.
    if p.redis.url.is_empty()
        && p.trunks.iter().any(|t| {
            [RuleId::EnterpriseRateTrunk, RuleId::EnterpriseRateCaller]
                .iter()
                .any(|&r| t.runs(r) && t.action(r).fail_closed)
        })
    {
        out.push(
            "fallback = \"closed\" has no effect without [redis]: it says what a rate rule does when the shared counters are out of reach"
                .to_string(),
        );
    }
    for t in &p.trunks {
        // `fd00::100:5060` is an IPv6 address whose last group reads like a SIP port: the
        // port of an IPv6 source is written `[fd00::100]:5060` (QA 139: taken as the
        // address, the trunk never matched its peer).
        let ports: Vec<u16> = [5060, 5061]
            .into_iter()
            .chain(t.listen.iter().map(|l| l.addr.port()))
            .chain(t.next_hop.map(|n| n.addr.port()))
            .collect();
        for s in &t.sources {
            if let (std::net::IpAddr::V6(a), 128, None) = (s.net, s.prefix, s.port) {
                let last = format!("{:x}", a.segments()[7]);
                if last.bytes().all(|c| c.is_ascii_digit())
                    && last.parse::<u16>().is_ok_and(|n| ports.contains(&n))
                {
                    out.push(format!(
                        "trunk '{}': source {a} is read as one IPv6 address, ending in :{last}; if :{last} is a port, write the address in brackets, [ADDRESS]:{last}",
                        t.name
                    ));
                }
            }
        }
        // Harmless (one socket serves both) but a sign of a typo for another address.
        for (i, l) in t.listen.iter().enumerate() {
            if t.listen[..i].contains(l) {
                out.push(format!(
                    "trunk {}: listen {}:{} is given twice (one socket serves it; another address meant?)",
                    t.name,
                    l.transport.as_str(),
                    l.addr
                ));
            }
        }
        if let Some(b) = &t.behaviour {
            // A rule's second setting written without its threshold (at its default
            // too: whoever wrote it meant the rule to run).
            for (key, set, threshold) in [
                (
                    "asr_min_attempts",
                    b.asr_min_attempts.is_some(),
                    b.min_asr_percent.is_some(),
                ),
                (
                    "asr_settle_secs",
                    b.asr_settle_secs.is_some(),
                    b.min_asr_percent.is_some(),
                ),
                (
                    "ring_once_secs",
                    b.ring_once_secs.is_some(),
                    b.ring_once.is_some(),
                ),
                (
                    "ring_once_percent",
                    b.ring_once_percent.is_some(),
                    b.ring_once.is_some(),
                ),
                (
                    "short_call_secs",
                    b.short_call_secs.is_some(),
                    b.short_calls.is_some(),
                ),
            ] {
                if set && !threshold {
                    out.push(format!(
                        "trunk {}: behaviour {key} is set but its rule's threshold is not: it does nothing",
                        t.name
                    ));
                }
            }
            // A behaviour rule's action set for this trunk, its threshold not (yet)
            // set: a template's, or a threshold forgotten.
            for r in RuleId::ORDER.iter().filter(|r| r.is_behaviour()) {
                if b.describe(*r).is_none() && t.action(*r) != &p.default_actions[r.index()] {
                    out.push(format!(
                        "trunk {}: rule {} has settings but never runs: its threshold in [trunk.behaviour] is not set",
                        t.name,
                        r.as_str()
                    ));
                }
            }
        }
        if t.next_hop.is_none() {
            out.push(format!(
                "trunk {} has no next_hop: run drops the calls it allows (dropped_total reason no-next-hop)",
                t.name
            ));
        }
        // Over TCP our Via and Record-Route name the address the request came to, for
        // TCP: with no TCP listener there, a core that answers over a new connection
        // (RFC 3261 18.2.2, when ours has closed) or sends its in-dialog requests to
        // the Record-Route finds the port closed (QA 60). Each UDP address the trunk's
        // calls come to needs a TCP listener of its own (QA 62: another trunk's did not
        // help).
        if let Some(h) = t.next_hop
            && h.transport == crate::policy::config::Transport::Tcp
        {
            use crate::policy::config::Transport;
            let all = p.listen_addrs();
            let arrive = if t.listen.is_empty() { &all } else { &t.listen };
            let bare: Vec<String> = arrive
                .iter()
                .filter(|l| l.transport == Transport::Udp)
                .filter(|l| {
                    !all.iter()
                        .any(|m| m.transport == Transport::Tcp && m.addr == l.addr)
                })
                .map(|l| l.addr.to_string())
                .collect();
            if !bare.is_empty() {
                out.push(format!(
                    "trunk {} next_hop {h} is TCP, and no TCP listen address is at {}: the Via names it, so the core's answers and requests that do not come back over sipfence's own connection find no TCP port (add tcp: listen addresses there)",
                    t.name,
                    bare.join(", ")
                ));
            }
        }
        // A datagram leaves by a UDP socket of its destination's IP family (any trunk's:
        // IPv6 callers reach an IPv4 core through the gateway's IPv4 listener); with
        // none, the calls are answered 503.
        if let Some(h) = t.next_hop
            && h.transport == crate::policy::config::Transport::Udp
        {
            let v4 = h.addr.ip().to_canonical().is_ipv4();
            let udp = p
                .listen_addrs()
                .into_iter()
                .filter(|l| l.transport == crate::policy::config::Transport::Udp);
            let reaches = udp.clone().any(|l| l.addr.is_ipv4() == v4)
                || (v4 && udp.clone().any(|l| l.addr.ip().is_unspecified()));
            if !reaches && udp.count() > 0 {
                out.push(format!(
                    "trunk {} next_hop {} is {}, and no UDP listen address is: its calls cannot be sent and are answered 503 (add a UDP listen address of that family)",
                    t.name,
                    h.addr,
                    if v4 { "IPv4" } else { "IPv6" }
                ));
            } else if !reaches && !p.listen_addrs().is_empty() {
                // Like Kamailio and OpenSIPS, no socket is opened that the operator did
                // not list: a datagram leaves by a UDP listener or not at all.
                out.push(format!(
                    "trunk {} next_hop {h} is UDP, and no listen address is: its calls cannot be sent and are answered 503 (add a UDP listen address, or make the next hop tcp:)",
                    t.name
                ));
            }
        }
        // `10.1.2.3/24` admits the whole /24: most likely one address was meant.
        for s in t.sources.iter().filter(|s| s.network() != s.net) {
            out.push(format!(
                "trunk {} source {s} has host bits set: it admits all of {}/{} (write {} for that address alone)",
                t.name,
                s.network(),
                s.prefix,
                s.net
            ));
        }
        // `/0`, or halves and quarters of the address space that add up to most of it.
        let wide = |s: &&crate::policy::config::SourceSpec| {
            s.prefix < if s.net.is_ipv4() { 8 } else { 16 }
        };
        let all: Vec<String> = t
            .sources
            .iter()
            .filter(wide)
            .map(|s| s.to_string())
            .collect();
        if !all.is_empty() {
            out.push(format!(
                "trunk {} takes calls from every address, or most (sources {}){}",
                t.name,
                all.join(", "),
                if t.auth.is_some() {
                    ": its digest credentials are all that identify it"
                } else {
                    ""
                }
            ));
        }
    }
    // Without sources, only the token of our Record-Route tells the peer's requests in
    // its dialogs from a stranger's with made-up tags (QA 189).
    for t in p.trunks.iter().filter(|t| t.told_by_digest_alone()) {
        if !t.record_route {
            out.push(format!(
                "trunk {} is told by its digest answers alone and has no record_route: the requests of its dialogs (BYE, NOTIFY, INFO...) cannot be told from a stranger's and go on unchallenged, for the core to check; set record_route = true, and they must carry the token of sipfence's Record-Route",
                t.name
            ));
        } else if p.callee_key_random {
            out.push(format!(
                "trunk {} knows its dialogs by the token of sipfence's Record-Route, whose key without [general] auth_secret is drawn at each start: after a restart the requests of calls up are challenged (a PBX that answers challenges on INVITE alone cannot end them), and another gateway knows none; set auth_secret, the same on every gateway",
                t.name
            ));
        }
    }
    for (i, b) in p.trunks.iter().enumerate() {
        match shadowing(&p.trunks[..i], b)[..] {
            [] => {}
            [a] => out.push(format!(
                "trunk {} can never match: trunk {a}, earlier in the file, takes every message from its sources on its listen addresses",
                b.name
            )),
            ref several => out.push(format!(
                "trunk {} can never match: trunks {}, earlier in the file, take every message from its sources on its listen addresses between them",
                b.name,
                several.join(", ")
            )),
        }
    }
    // 24 bits of a name's hash tag its counters: two trunks of 500 share one with odds
    // of 0.7%, and then share the overflow counter of a full rate table.
    for (i, b) in p.trunks.iter().enumerate() {
        if let Some(a) = p.trunks[..i]
            .iter()
            .find(|a| crate::policy::rate::same_tag(a.id, b.id))
        {
            out.push(format!(
                "trunks {} and {} share a counter tag (their names hash alike): while the rate table is full, their new sources' digest failures and their flagged callers are counted together; renaming either one parts them",
                a.name, b.name
            ));
        }
    }
    if p.trunks.is_empty() {
        out.push("no trunks: every message is from an unknown source".to_string());
    }
    // A segment or range of a handful of leading digits in a policy-wide list is a whole
    // country, region or carrier: one stray `*` (`+86*`) blacklists every domestic
    // caller, or exempts every one from the blacklist, or lets every +86 caller in from
    // abroad (QA 54, ranges QA 55).
    // (The protected list's wide segments, all 95/96 numbers say, refuse what
    // `intl-forged-service` refuses already.)
    for (name, list, does) in [
        ("blacklist", &p.blacklist, "refused"),
        ("roamers", &p.roamers, "let in from abroad"),
        ("exempt", &p.exempt, "exempt from the blacklist"),
    ] {
        let found: Vec<String> = list
            .blocks()
            .filter(|(lead, kind)| wide(lead, *kind))
            .map(|(lead, kind)| shown(lead, kind, &written_at(list, &lead, kind)))
            .collect();
        if !found.is_empty() {
            out.push(format!(
                "{name}: {} {} a whole country, region or carrier: every caller under {} {does}",
                named(&found),
                if found.len() == 1 {
                    "takes in"
                } else {
                    "take in"
                },
                if found.len() == 1 { "it" } else { "them" },
            ));
        }
    }
    // Own segments are a carrier's prefixes, wide by nature; one that takes in the whole
    // country (`0*`, `+86*`: QA 203) takes every domestic caller for this network's.
    let country: Vec<String> = p
        .own_segments
        .blocks()
        .filter(|(lead, kind)| {
            *kind == EntryKind::Segment && lead.digits().len() <= p.plan.country().len()
        })
        .map(|(lead, kind)| shown(lead, kind, &written_at(&p.own_segments, &lead, kind)))
        .collect();
    if !country.is_empty() {
        out.push(format!(
            "own_segments: {} takes in the whole country: every domestic caller is taken for this network's own, and enterprise-foreign-network refuses none",
            named(&country)
        ));
    }
    // A blacklisted number the plan calls invalid is refused (or let by) as such before
    // the blacklist is asked: never a reason for a refusal. Mostly a line cut short
    // (QA 152: a list read while a feed wrote it ended in `+86133299`).
    // The same in the lists that let callers by (QA 203: a roamer's number mistyped, or
    // exported as `13900000000.0`, loaded silently, and the roamer was refused): no call
    // has such a number, so the entry does nothing.
    for (name, list, judged) in [
        (
            "blacklist",
            &p.blacklist,
            "judged by numbering-plan before the blacklist is asked",
        ),
        (
            "roamers",
            &p.roamers,
            "no call has it, the roamer meant is not let in",
        ),
        (
            "protected",
            &p.protected,
            "no call has it, the number meant is not protected",
        ),
        (
            "exempt",
            &p.exempt,
            "no call has it, the number meant is not exempt",
        ),
    ] {
        let invalid: Vec<String> = list
            .entries()
            .filter(|(n, kind)| {
                *kind == EntryKind::Exact && p.plan.classify(n).class == Class::Invalid
            })
            .map(|(n, _)| n.to_string())
            .collect();
        if !invalid.is_empty() {
            out.push(format!(
                "{name}: {} {} no valid number of the plan (a line cut short, or mistyped?), {judged}: {}",
                invalid.len(),
                if invalid.len() == 1 { "entry is" } else { "entries are" },
                named(&invalid),
            ));
        }
    }
    for t in &p.trunks {
        let Some(w) = &t.whitelist else { continue };
        if w.is_empty() && refuses(t, RuleId::EnterpriseNotWhitelisted) {
            out.push(format!(
                "trunk {} whitelist is empty: every call on it is refused (a list file cut short?)",
                t.name
            ));
        }
        // (rule, why, entries)
        let mut found: Vec<(RuleId, &str, Vec<String>)> = vec![];
        let mut note = |r: RuleId, why: &'static str, e: String| match found
            .iter_mut()
            .find(|(x, w, _)| *x == r && *w == why)
        {
            Some((_, _, v)) => v.push(e),
            None => found.push((r, why, vec![e])),
        };
        let mut odd: Vec<String> = vec![];
        for (lead, kind) in w.entries() {
            let segment = kind != EntryKind::Exact;
            // The entry, and the line of the list file that wrote it.
            let shown = shown(lead, kind, &written_at(w, &lead, kind));
            // A range's block is judged by its first number, which has the block's length
            // (as the lists it is held against may be ranges too); a segment by its
            // leading digits.
            let n = match kind {
                EntryKind::Range(len) => {
                    let mut d = lead.digits().to_vec();
                    d.resize(len as usize, b'0');
                    Number::from_digits(&d).unwrap_or(lead)
                }
                _ => lead,
            };
            // A whole region or carrier is no enterprise's numbers.
            if wide(&lead, kind) {
                odd.push(format!(
                    "trunk {} whitelist: {shown} lets a whole country, region or carrier through",
                    t.name
                ));
            }
            let class = (!segment).then(|| p.plan.classify(&n));
            // Emergency, government and operator numbers, and the protected list's, are
            // never an enterprise's caller (95/96 service numbers are: the voice
            // private lines; 96110 is the police's anti-fraud line).
            if class.is_some_and(|c| {
                matches!(
                    c.class,
                    Class::Emergency | Class::Government | Class::Operator
                ) || p.protected.lookup(&n).is_some()
                    // The number itself, not one that merely ends in its digits
                    // (+8613812396110 is somebody's mobile).
                    || n.as_str() == "8696110"
            }) {
                odd.push(format!(
                    "trunk {} whitelist: {shown} is an emergency, government, operator or protected number, no enterprise's",
                    t.name
                ));
            }
            if let Some(c) = class {
                if c.class == Class::Invalid && refuses(t, RuleId::NumberingPlan) {
                    note(
                        RuleId::NumberingPlan,
                        "not a valid number in the plan",
                        shown,
                    );
                    continue;
                }
                if c.flags.novoice && refuses(t, RuleId::NoVoiceNumber) {
                    note(RuleId::NoVoiceNumber, "a data-only or IoT number", shown);
                    continue;
                }
            }
            // A whole segment blacklisted (or the number): exempt entries pass it.
            if p.blacklist.lookup(&n).is_some()
                && p.exempt.lookup(&n).is_none()
                && refuses(t, RuleId::Blacklist)
            {
                note(RuleId::Blacklist, "on the blacklist", shown);
                continue;
            }
            if refuses(t, RuleId::EnterpriseForeignNetwork) {
                if !p.plan.is_domestic(&n) {
                    note(
                        RuleId::EnterpriseForeignNetwork,
                        "of another country",
                        shown,
                    );
                } else if !p.own_segments.is_empty() && p.own_segments.lookup(&n).is_none() {
                    note(
                        RuleId::EnterpriseForeignNetwork,
                        "not (wholly) in own_segments",
                        shown,
                    );
                }
            }
        }
        out.extend(odd);
        // In the order the rules run.
        found.sort_by_key(|(r, _, _)| r.index());
        for (r, why, v) in found {
            out.push(format!(
                "trunk {} whitelist: {} entr{} {why}, refused first by {}: {}",
                t.name,
                v.len(),
                if v.len() == 1 { "y" } else { "ies" },
                r.as_str(),
                named(&v),
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(extra_rules: &str, whitelist: &str) -> Policy {
        let text = format!(
            r#"
[lists.blacklist]
entries = ["+8613800000001", "+8617099999*"]
[lists.own_segments]
entries = ["+86138*", "+86170*", "+864008*", "+86145*"]
{extra_rules}
[[trunk]]
name = "ent"
role = "enterprise"
sources = ["10.0.1.0/24"]
next_hop = "udp:10.0.0.5:5060"
[trunk.whitelist]
entries = [{whitelist}]
"#
        );
        Policy::from_str(&text, "t.toml", std::path::Path::new(".")).expect("test policy")
    }

    #[test]
    fn a_trunk_behind_one_that_takes_its_messages() {
        let text = |first: &str, second: &str| {
            format!(
                "[[trunk]]\nname = \"a\"\nrole = \"international\"\n{first}\n[[trunk]]\nname = \"b\"\nrole = \"interconnect\"\n{second}\n"
            )
        };
        let warned = |first: &str, second: &str| {
            let p = Policy::from_str(&text(first, second), "t.toml", std::path::Path::new("."))
                .expect("test policy");
            warnings(&p)
                .iter()
                .any(|w| w.starts_with("trunk b can never match: trunk a"))
        };
        let l = "listen = [\"udp:127.0.0.1:5060\"]";
        for (first, second) in [
            (
                format!("{l}\nsources = [\"127.0.0.0/8\"]"),
                format!("{l}\nsources = [\"127.0.0.0/8\"]"),
            ),
            (
                format!("{l}\nsources = [\"10.0.0.0/8\"]"),
                format!("{l}\nsources = [\"10.1.2.3\", \"10.9.0.0/16\"]"),
            ),
            (
                "sources = [\"10.0.0.0/8\"]".to_string(),
                format!("{l}\nsources = [\"10.1.2.3:5070\"]"),
            ),
            (
                format!("{l}\nsources = [\"0.0.0.0/0\"]"),
                format!("{l}\nsources = [\"192.0.2.1\"]"),
            ),
            // A wildcard listener of the port takes what comes to the specific socket
            // (QA 43).
            (
                "listen = [\"udp:0.0.0.0:5060\"]\nsources = [\"127.0.0.0/8\"]".to_string(),
                format!("{l}\nsources = [\"127.0.0.1\"]"),
            ),
            // A dual-stack wildcard takes IPv4 too.
            (
                "listen = [\"udp:[::]:5060\"]\nsources = [\"127.0.0.0/8\"]".to_string(),
                format!("{l}\nsources = [\"127.0.0.1\"]"),
            ),
            // Networks side by side cover the one they make up (QA 43).
            (
                format!("{l}\nsources = [\"10.0.0.0/24\", \"10.0.1.0/24\"]"),
                format!("{l}\nsources = [\"10.0.0.0/23\"]"),
            ),
            (
                format!("{l}\nsources = [\"10.0.1.0/24\", \"10.0.0.0/25\", \"10.0.0.128/25\"]"),
                format!("{l}\nsources = [\"10.0.0.0/23\", \"10.0.1.7:5070\"]"),
            ),
        ] {
            assert!(warned(&first, &second), "{first} / {second}");
        }
        for (first, second) in [
            (
                format!("{l}\nsources = [\"10.0.0.0/8\"]"),
                format!("{l}\nsources = [\"10.0.0.0/8\", \"192.0.2.1\"]"),
            ),
            (
                format!("{l}\nsources = [\"10.0.0.0/8\"]"),
                "sources = [\"10.1.2.3\"]".to_string(),
            ),
            (
                format!("{l}\nsources = [\"10.0.0.0/8\"]"),
                "listen = [\"udp:127.0.0.1:5062\"]\nsources = [\"10.1.2.3\"]".to_string(),
            ),
            (
                format!("{l}\nsources = [\"10.1.2.3:5070\"]"),
                format!("{l}\nsources = [\"10.1.2.3\"]"),
            ),
            (
                format!("{l}\nsources = [\"10.1.0.0/16\"]"),
                format!("{l}\nsources = [\"10.0.0.0/8\"]"),
            ),
            // A specific listener does not take what comes to the wildcard socket.
            (
                format!("{l}\nsources = [\"127.0.0.0/8\"]"),
                "listen = [\"udp:0.0.0.0:5060\"]\nsources = [\"127.0.0.1\"]".to_string(),
            ),
            // An IPv4 wildcard socket receives no IPv6 (QA 45).
            (
                "listen = [\"udp:0.0.0.0:5060\"]\nsources = [\"::/0\", \"0.0.0.0/0\"]".to_string(),
                "listen = [\"udp:[::1]:5060\"]\nsources = [\"::1\"]".to_string(),
            ),
            // A gap between the networks: 10.0.1.0/25 is left.
            (
                format!("{l}\nsources = [\"10.0.0.0/24\", \"10.0.1.128/25\"]"),
                format!("{l}\nsources = [\"10.0.0.0/23\"]"),
            ),
            // A network of the other family, or of a port, covers nothing of it.
            (
                format!("{l}\nsources = [\"10.0.0.0/24\", \"10.0.1.0/24:5070\", \"::/0\"]"),
                format!("{l}\nsources = [\"10.0.0.0/23\"]"),
            ),
        ] {
            assert!(!warned(&first, &second), "{first} / {second}");
        }
        // Two earlier trunks between them, each named.
        let p = Policy::from_str(
            "[[trunk]]\nname = \"a\"\nrole = \"international\"\nsources = [\"10.0.0.0/24\"]\n[[trunk]]\nname = \"c\"\nrole = \"international\"\nsources = [\"10.0.1.0/24\", \"192.0.2.0/24\"]\n[[trunk]]\nname = \"b\"\nrole = \"interconnect\"\nsources = [\"10.0.0.0/23\"]\n",
            "t.toml",
            std::path::Path::new("."),
        )
        .expect("test policy");
        let w = warnings(&p);
        assert!(
            w.iter().any(|w| w
                == "trunk b can never match: trunks a, c, earlier in the file, take every message from its sources on its listen addresses between them"),
            "{w:?}"
        );
    }

    /// Entries no enterprise can own: another country's number, a segment as wide as a
    /// carrier or the country, an emergency, government or operator number; and a policy
    /// whose enterprise trunks cannot tell this network's numbers from others'.
    #[test]
    fn entries_no_enterprise_owns_are_named() {
        let p = policy(
            "",
            r#""+864008001234", "+14155550123", "+86138*", "0*", "110", "12315", "10086", "96110", "95588", "+8613812396110", "+8613812340000..+8613812349999""#,
        );
        let w = warnings(&p);
        for want in [
            "trunk ent whitelist: +86138* lets a whole country, region or carrier through",
            "trunk ent whitelist: +86* lets a whole country, region or carrier through",
            "trunk ent whitelist: +86110 is an emergency, government, operator or protected number, no enterprise's",
            "trunk ent whitelist: +8612315 is an emergency, government, operator or protected number, no enterprise's",
            "trunk ent whitelist: +8610086 is an emergency, government, operator or protected number, no enterprise's",
            "trunk ent whitelist: +8696110 is an emergency, government, operator or protected number, no enterprise's",
            "trunk ent whitelist: 1 entry of another country, refused first by enterprise-foreign-network: +14155550123",
        ] {
            assert!(w.iter().any(|l| l == want), "{want}\nnot in {w:#?}");
        }
        // A bank's 95xxx line is an enterprise's own; a range of ten thousand is a block.
        assert!(
            !w.iter()
                .filter(|l| l.contains("emergency") || l.contains("whole"))
                .any(|l| l.contains("95588") || l.contains("+86138123")),
            "{w:#?}"
        );
        // A mobile number that merely ends in 96110's digits is somebody's own.
        assert!(
            !w.iter()
                .any(|l| l.contains("emergency") && l.contains("+8613812396110")),
            "{w:#?}"
        );
        assert!(!w.iter().any(|l| l.starts_with("no [lists.own_segments]")));
        let empty = policy("", "");
        assert!(
            warnings(&empty)
                .iter()
                .any(|l| l.starts_with("trunk ent whitelist is empty")),
            "{:?}",
            warnings(&empty)
        );
        let bare = Policy::from_str(
            "[[trunk]]\nname = \"ent\"\nrole = \"enterprise\"\nsources = [\"10.0.1.0/24\"]\n[trunk.whitelist]\nentries = [\"+864008001234\"]\n",
            "t.toml",
            std::path::Path::new("."),
        )
        .expect("test policy");
        assert!(
            warnings(&bare)
                .iter()
                .any(|l| l.starts_with("no [lists.own_segments]")),
            "{:?}",
            warnings(&bare)
        );
    }

    /// Names that hash alike in the counters' 24-bit tag are named; others are not.
    #[test]
    fn trunks_sharing_a_counter_tag_are_named() {
        let (x, y) = crate::policy::rate::names_alike_in_top_bits("t", 24);
        let trunks = |names: &[&str]| {
            let text: String = names
                .iter()
                .enumerate()
                .map(|(i, n)| {
                    format!("[[trunk]]\nname = \"{n}\"\nrole = \"interconnect\"\nsources = [\"10.0.0.{}\"]\nnext_hop = \"udp:10.0.0.5:5060\"\n", i + 1)
                })
                .collect();
            warnings(&Policy::from_str(&text, "t.toml", std::path::Path::new(".")).unwrap())
        };
        let w = trunks(&[&x, "other", &y]);
        assert!(
            w.iter()
                .any(|l| l.starts_with(&format!("trunks {x} and {y} share a counter tag"))),
            "{w:?}"
        );
        let w = trunks(&[&x, "other"]);
        assert!(w.is_empty(), "{w:?}");
    }

    /// A trunk with nowhere to send what it allows is named; one with a next hop not.
    #[test]
    fn a_trunk_without_next_hop_is_named() {
        let text = "[[trunk]]\nname = \"ic\"\nrole = \"interconnect\"\nsources = [\"10.0.0.1\"]\n";
        let p = Policy::from_str(text, "t.toml", std::path::Path::new(".")).unwrap();
        assert_eq!(
            warnings(&p),
            [
                "trunk ic has no next_hop: run drops the calls it allows (dropped_total reason no-next-hop)"
            ]
        );
        let p = Policy::from_str(
            &format!("{text}next_hop = \"udp:10.0.0.5:5060\"\n"),
            "t.toml",
            std::path::Path::new("."),
        )
        .unwrap();
        assert!(warnings(&p).is_empty(), "{:?}", warnings(&p));
    }

    /// A UDP next hop of an IP family no UDP listener has is named; one that a
    /// listener of its family (any trunk's) or a dual-stack wildcard reaches is not.
    #[test]
    fn a_next_hop_no_socket_can_reach_is_named() {
        let lint = |listen: &str, hop: &str| {
            let text = format!(
                "[[trunk]]\nname = \"ic\"\nrole = \"interconnect\"\nsources = [\"::1/128\", \"127.0.0.1\"]\nlisten = [{listen}]\nnext_hop = \"{hop}\"\n"
            );
            let p = Policy::from_str(&text, "t.toml", std::path::Path::new(".")).unwrap();
            warnings(&p)
        };
        assert_eq!(
            lint("\"udp:[::1]:5060\"", "udp:127.0.0.1:5070"),
            [
                "trunk ic next_hop 127.0.0.1:5070 is IPv4, and no UDP listen address is: its calls cannot be sent and are answered 503 (add a UDP listen address of that family)"
            ]
        );
        assert_eq!(lint("\"udp:127.0.0.1:5060\"", "udp:[::1]:5070").len(), 1);
        // Another trunk's TCP listener is no help: the Via names the address the call
        // came to (QA 62).
        let two = Policy::from_str(
            "[[trunk]]\nname = \"a\"\nrole = \"interconnect\"\nlisten = [\"udp:127.0.0.1:5060\", \"tcp:127.0.0.1:5060\"]\nsources = [\"10.0.0.1\"]\nnext_hop = \"tcp:127.0.0.1:5070\"\n[[trunk]]\nname = \"b\"\nrole = \"interconnect\"\nlisten = [\"udp:127.0.0.1:5062\"]\nsources = [\"10.0.0.2\"]\nnext_hop = \"tcp:127.0.0.1:5071\"\n",
            "t.toml",
            std::path::Path::new("."),
        )
        .unwrap();
        let w = warnings(&two);
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].starts_with("trunk b next_hop tcp:127.0.0.1:5071 is TCP, and no TCP listen address is at 127.0.0.1:5062"), "{w:?}");
        assert_eq!(
            lint("\"udp:127.0.0.1:5060\"", "tcp:127.0.0.1:5070"),
            [
                "trunk ic next_hop tcp:127.0.0.1:5070 is TCP, and no TCP listen address is at 127.0.0.1:5060: the Via names it, so the core's answers and requests that do not come back over sipfence's own connection find no TCP port (add tcp: listen addresses there)"
            ]
        );
        assert_eq!(
            lint("\"tcp:127.0.0.1:5060\"", "udp:127.0.0.1:5070"),
            [
                "trunk ic next_hop udp:127.0.0.1:5070 is UDP, and no listen address is: its calls cannot be sent and are answered 503 (add a UDP listen address, or make the next hop tcp:)"
            ]
        );
        for (listen, hop) in [
            (
                "\"udp:[::1]:5060\", \"udp:127.0.0.1:5060\"",
                "udp:127.0.0.1:5070",
            ),
            ("\"udp:[::]:5060\"", "udp:127.0.0.1:5070"),
            (
                "\"udp:[::1]:5060\", \"tcp:[::1]:5060\"",
                "tcp:127.0.0.1:5070",
            ),
            ("\"udp:[::1]:5060\"", "udp:[::1]:5070"),
            ("\"tcp:127.0.0.1:5060\"", "tcp:127.0.0.1:5070"),
        ] {
            assert!(
                lint(listen, hop).is_empty(),
                "{listen} {hop}: {:?}",
                lint(listen, hop)
            );
        }
    }

    /// A drain as long as a service manager waits before it kills is named (QA 170);
    /// the examples' 5 s is not.
    #[test]
    fn a_drain_longer_than_a_stop_waits_is_named() {
        let w = |secs: u64| {
            let text = format!(
                "[proxy]\ndrain_secs = {secs}\n[[trunk]]\nname = \"ic\"\nrole = \"interconnect\"\nsources = [\"10.0.0.1\"]\nnext_hop = \"udp:10.0.0.5:5060\"\n"
            );
            warnings(&Policy::from_str(&text, "t.toml", std::path::Path::new(".")).unwrap())
        };
        assert!(w(5).is_empty(), "{:?}", w(5));
        let said = w(30);
        assert!(
            said.len() == 1
                && said[0].contains("docker stop")
                && said[0].contains("TimeoutStopSec"),
            "{said:?}"
        );
    }

    /// `[proxy] advertise` where no wildcard socket can use it is named; where one can,
    /// it is not.
    #[test]
    fn an_advertise_nothing_uses_is_named() {
        let w = |listen: &str, adv: &str| {
            let text = format!(
                "[proxy]\nadvertise = \"{adv}\"\n[[trunk]]\nname = \"ic\"\nrole = \"interconnect\"\nsources = [\"10.0.0.1\"]\nlisten = [{listen}]\nnext_hop = \"udp:10.0.0.5:5060\"\n"
            );
            warnings(&Policy::from_str(&text, "t.toml", std::path::Path::new(".")).unwrap())
        };
        assert_eq!(
            w("\"udp:127.0.0.1:5060\"", "192.0.2.10"),
            [
                "[proxy] advertise 192.0.2.10 is given only on wildcard listen addresses (0.0.0.0, [::]), and there are none: it changes nothing (each explicit address names itself)"
            ]
        );
        assert_eq!(w("\"udp:0.0.0.0:5060\"", "2001:db8::5").len(), 1);
        for (listen, adv) in [
            ("\"udp:0.0.0.0:5060\"", "192.0.2.10"),
            ("\"udp:[::]:5060\"", "2001:db8::5"),
            ("\"udp:[::]:5060\"", "192.0.2.10"),
        ] {
            assert!(
                w(listen, adv).is_empty(),
                "{listen} {adv}: {:?}",
                w(listen, adv)
            );
        }
    }

    /// Settings that do nothing without another are named.
    #[test]
    fn settings_that_need_another_are_named() {
        let w = |text: &str| {
            warnings(&Policy::from_str(text, "t.toml", std::path::Path::new(".")).unwrap())
        };
        let ent = "[lists.own_segments]\nentries = [\"+86400*\"]\n[[trunk]]\nname = \"ent\"\nrole = \"enterprise\"\nsources = [\"10.0.0.1\"]\nnext_hop = \"udp:10.0.0.5:5060\"\nmax_calls_per_minute = 5\n[trunk.whitelist]\nentries = [\"+864008001234\"]\n";
        assert_eq!(
            w(&format!("[records]\npcap_rejected = true\n{ent}")),
            ["[records] pcap_rejected without dir: no records and no capture are written"]
        );
        assert!(
            w(&format!(
                "[records]\ndir = \"/tmp/r\"\npcap_rejected = true\n{ent}"
            ))
            .is_empty()
        );
        let closed = format!("[rules.enterprise-rate-trunk]\nfallback = \"closed\"\n{ent}");
        assert!(
            w(&closed)
                .iter()
                .any(|l| l.starts_with("fallback = \"closed\" has no effect without [redis]")),
            "{:?}",
            w(&closed)
        );
        let shared = format!("[redis]\nurl = \"redis://127.0.0.1:6379\"\n{closed}");
        assert!(w(&shared).is_empty(), "{:?}", w(&shared));
        assert_eq!(
            w(&format!("[redis]\ninstance = \"gw1\"\n{ent}")),
            [
                "[redis] settings without url: Redis is not used (counters, lists and records stay local)"
            ]
        );
        assert_eq!(
            w(&format!("[hep]\ncapture_id = 7\n{ent}")),
            ["[hep] settings without server: nothing is mirrored"]
        );
        // At their defaults too (QA 103); an empty table is no setting.
        assert_eq!(
            w(&format!("[redis]\nsync_ms = 100\nlists = true\n{ent}")),
            [
                "[redis] settings without url: Redis is not used (counters, lists and records stay local)"
            ]
        );
        assert!(w(&format!("[redis]\n[hep]\n{ent}")).is_empty());
        let asr = ent.replace(
            "[trunk.whitelist]",
            "[trunk.behaviour]\nattempts = 30\nasr_min_attempts = 5\n[trunk.whitelist]",
        );
        assert_eq!(
            w(&asr),
            [
                "trunk ent: behaviour asr_min_attempts is set but its rule's threshold is not: it does nothing"
            ]
        );
        assert!(w(&asr.replace("attempts = 30", "min_asr_percent = 10")).is_empty());
        let share = asr.replace("asr_min_attempts = 5", "ring_once_percent = 30");
        assert_eq!(
            w(&share),
            [
                "trunk ent: behaviour ring_once_percent is set but its rule's threshold is not: it does nothing"
            ]
        );
        assert!(w(&share.replace("attempts = 30", "ring_once = 3")).is_empty());
        // Written at its default, it is as meant and as useless (QA 99-102).
        let at_default = asr.replace("asr_min_attempts = 5", "ring_once_percent = 50");
        assert_eq!(
            w(&at_default),
            [
                "trunk ent: behaviour ring_once_percent is set but its rule's threshold is not: it does nothing"
            ]
        );
        assert_eq!(
            w(&asr.replace("asr_min_attempts = 5", "short_call_secs = 10")),
            [
                "trunk ent: behaviour short_call_secs is set but its rule's threshold is not: it does nothing"
            ]
        );
        let settle = asr.replace("asr_min_attempts = 5", "asr_settle_secs = 10");
        assert_eq!(
            w(&settle),
            [
                "trunk ent: behaviour asr_settle_secs is set but its rule's threshold is not: it does nothing"
            ]
        );
        assert!(w(ent).is_empty());
        // An answer's code or reason beside an action that sends none; one inherited
        // from [rules] under a trunk trying the rule (`monitor`) is no note.
        let tried = format!(
            "[rules.blacklist]\nreason = \"Listed\"\n{ent}[trunk.rules.blacklist]\naction = \"monitor\"\n"
        );
        assert!(w(&tried).is_empty(), "{:?}", w(&tried));
        assert_eq!(
            w(&format!(
                "{ent}[trunk.rules.blacklist]\naction = \"label\"\ncode = 604\n"
            )),
            [
                "trunk ent: rule blacklist sets code but its action label sends no answer: unused until the action is reject"
            ]
        );
        assert_eq!(
            w(&format!(
                "[rules.label-mvno]\nreason = \"MVNO\"\ncode = 403\n{ent}"
            )),
            [
                "[rules] rule label-mvno sets code and reason but its action label sends no answer: unused until the action is reject"
            ]
        );
        // A label beside an action that adds none (QA 176 N7); one under [rules] that a
        // trunk's label action uses is no note.
        assert_eq!(
            w(&format!(
                "{ent}[trunk.rules.blacklist]\naction = \"reject\"\nlabel = \"listed\"\n"
            )),
            [
                "trunk ent: rule blacklist sets label but its action reject adds none: unused until the action is label"
            ]
        );
        let used = format!(
            "[rules.blacklist]\nlabel = \"listed\"\n{ent}[trunk.rules.blacklist]\naction = \"label\"\n"
        );
        assert!(w(&used).is_empty(), "{:?}", w(&used));
        // QA 28: a trunk that makes the rule reject uses the code set under [rules].
        let used = format!(
            "[rules.blacklist]\naction = \"label\"\ncode = 609\n{ent}[trunk.rules.blacklist]\naction = \"reject\"\n"
        );
        assert!(w(&used).is_empty(), "{:?}", w(&used));
        // QA 29: unless every trunk that rejects sets its own code and reason.
        let unused = format!(
            "[rules.blacklist]\naction = \"label\"\ncode = 609\n{ent}[trunk.rules.blacklist]\naction = \"reject\"\ncode = 603\nreason = \"Other\"\n"
        );
        assert_eq!(w(&unused).len(), 1, "{:?}", w(&unused));
    }

    #[test]
    fn a_listen_address_given_twice_is_named() {
        let text = "[[trunk]]\nname = \"intl\"\nrole = \"international\"\nlisten = [\"udp:127.0.0.1:5060\", \"tcp:127.0.0.1:5060\", \"udp:127.0.0.1:5060\"]\nsources = [\"127.0.0.0/8\"]\nnext_hop = \"udp:127.0.0.1:5080\"\n";
        let w = warnings(&Policy::from_str(text, "t.toml", std::path::Path::new(".")).unwrap());
        assert_eq!(
            w,
            [
                "trunk intl: listen udp:127.0.0.1:5060 is given twice (one socket serves it; another address meant?)"
            ]
        );
        // The same address over UDP and TCP is no repeat.
        let once = text.replace(", \"udp:127.0.0.1:5060\"]", "]");
        assert!(
            warnings(&Policy::from_str(&once, "t.toml", std::path::Path::new(".")).unwrap())
                .is_empty()
        );
    }

    #[test]
    fn a_clean_whitelist_says_nothing() {
        let p = policy("", r#""+864008001234", "+8613812340000..+8613812349999""#);
        assert!(warnings(&p).is_empty(), "{:?}", warnings(&p));
        assert!(warnings(&Policy::builtin().unwrap()).is_empty());
    }

    /// A trunk told by its digest answers alone learns that its dialogs' requests go on
    /// unchallenged without `record_route`, and that their tokens last a process
    /// without `auth_secret`; with both nothing is said.
    #[test]
    fn an_auth_only_trunk_is_told_what_vouches_for_its_dialogs() {
        let said = |general: &str, rr: bool| {
            let text = format!(
                "{general}[[trunk]]\nname = \"pbx\"\nrole = \"enterprise\"\nlisten = [\"udp:10.0.0.1:5070\"]\nnext_hop = \"udp:10.0.0.9:5060\"\nrecord_route = {rr}\n[trunk.whitelist]\nentries = [\"+864008001234\"]\n[trunk.auth]\nusers = [\"pbx1:s3cret\"]\n"
            );
            let p = Policy::from_str(&text, "t.toml", std::path::Path::new(".")).unwrap();
            warnings(&p)
                .into_iter()
                .filter(|w| w.starts_with("trunk pbx"))
                .collect::<Vec<_>>()
        };
        let secret = "[general]\nauth_secret = \"fleet\"\n";
        assert!(said(secret, true).is_empty(), "{:?}", said(secret, true));
        let w = said(secret, false);
        assert!(
            w.len() == 1 && w[0].contains("has no record_route"),
            "{w:?}"
        );
        let w = said("", true);
        assert!(
            w.len() == 1 && w[0].contains("without [general] auth_secret"),
            "{w:?}"
        );
    }

    /// A policy-wide list with a segment of a handful of digits (QA 54: `+86*` in the
    /// roamers let every +86 caller in from abroad, and `check` said ok); the usual
    /// segments say nothing.
    #[test]
    fn blacklisted_numbers_the_plan_refuses_first_are_named() {
        let text = "[lists.blacklist]\nentries = [\"+86133299\", \"075588881\", \"+8613800000001\", \"01012345678\", \"+8617099999*\", \"+442071234567\"]\n[[trunk]]\nname = \"intl\"\nrole = \"international\"\nsources = [\"10.0.0.0/24\"]\nnext_hop = \"udp:10.0.0.9:5060\"\n";
        let p = Policy::from_str(text, "t.toml", std::path::Path::new(".")).unwrap();
        assert_eq!(
            warnings(&p),
            [
                "blacklist: 2 entries are no valid number of the plan (a line cut short, or mistyped?), judged by numbering-plan before the blacklist is asked: +86133299, +8675588881"
            ]
        );
        // The lists that let callers by, too (QA 203: a roamer's number mistyped loaded
        // with no word, and the roamer was refused); their valid numbers say nothing.
        let text = "[lists.roamers]\nentries = [\"1390000000\", \"+8613900000001\"]\n[lists.protected]\nentries = [\"1066666\", \"+861066666110\"]\n[lists.exempt]\nentries = [\"138000000011\", \"+8613800000001\"]\n[lists.own_segments]\nentries = [\"0*\", \"+86138*\"]\n[[trunk]]\nname = \"intl\"\nrole = \"international\"\nsources = [\"10.0.0.0/24\"]\nnext_hop = \"udp:10.0.0.9:5060\"\n";
        let p = Policy::from_str(text, "t.toml", std::path::Path::new(".")).unwrap();
        assert_eq!(
            warnings(&p),
            [
                "own_segments: +86* takes in the whole country: every domestic caller is taken for this network's own, and enterprise-foreign-network refuses none",
                "roamers: 1 entry is no valid number of the plan (a line cut short, or mistyped?), no call has it, the roamer meant is not let in: +861390000000",
                "protected: 1 entry is no valid number of the plan (a line cut short, or mistyped?), no call has it, the number meant is not protected: +861066666",
                "exempt: 1 entry is no valid number of the plan (a line cut short, or mistyped?), no call has it, the number meant is not exempt: +86138000000011",
            ]
        );
    }

    /// A list file that holds no entry is named (QA 203: an empty blacklist file loaded
    /// with no word); an empty list written in the policy is none of a file's mistakes.
    #[test]
    fn list_files_that_hold_nothing_are_named() {
        let dir = std::env::temp_dir().join(format!("sipfence-lint-empty-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("bl.txt"), "# export of 2026-12-07\n").unwrap();
        std::fs::write(dir.join("roam.txt"), "+8613900000001\n").unwrap();
        let text = "[lists.blacklist]\nfiles = [\"bl.txt\"]\n[lists.roamers]\nfiles = [\"roam.txt\"]\n[lists.exempt]\nentries = []\n[[trunk]]\nname = \"intl\"\nrole = \"international\"\nsources = [\"10.0.0.0/24\"]\nnext_hop = \"udp:10.0.0.9:5060\"\n";
        let p = Policy::from_str(text, "t.toml", &dir).unwrap();
        assert_eq!(
            warnings(&p),
            [
                "blacklist: its file (bl.txt) holds no entry: the list is empty (an export that failed, or a file cut short?)"
            ]
        );
        // A published set in its place (a fleet that keeps its lists in Redis only).
        let set = vec![("blacklist".to_string(), "+8613800000001\n".to_string())];
        let published = crate::cluster::lists::apply(&p, 1, &set).unwrap();
        assert!(
            warnings(&published).is_empty(),
            "{:?}",
            warnings(&published)
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn country_wide_segments_in_the_lists_are_named() {
        let said = |lists: &str| {
            let text = format!(
                "{lists}\n[[trunk]]\nname = \"intl\"\nrole = \"international\"\nsources = [\"10.0.0.0/24\"]\nnext_hop = \"udp:10.0.0.9:5060\"\n"
            );
            let p = Policy::from_str(&text, "t.toml", std::path::Path::new(".")).unwrap();
            warnings(&p)
        };
        let w = said(
            "[lists.blacklist]\nentries = [\"+86*\", \"+8613800000001\", \"+8617099999*\"]\n[lists.roamers]\nentries = [\"0086*\"]\n[lists.exempt]\nentries = [\"1*\", \"+86139*\", \"+861391234*\"]\n[lists.protected]\nentries = [\"+8695*\", \"+8695588\"]\n",
        );
        assert_eq!(
            w,
            [
                "blacklist: +86* takes in a whole country, region or carrier: every caller under it refused",
                "roamers: +86* takes in a whole country, region or carrier: every caller under it let in from abroad",
                "exempt: +861*, +86139* take in a whole country, region or carrier: every caller under them exempt from the blacklist",
            ]
        );
        // Ranges alike (QA 55): all of 139, and every mobile, written as ranges.
        let w = said(
            "[lists.roamers]\nentries = [\"+8613900000000..+8613999999999\"]\n[lists.blacklist]\nentries = [\"13000000000..19999999999\", \"+8613812345600..+8613812345699\"]\n",
        );
        assert_eq!(
            w,
            [
                "blacklist: +8613xxxxxxxxx, +8614xxxxxxxxx, +8615xxxxxxxxx, +8616xxxxxxxxx, +8617xxxxxxxxx and 2 more take in a whole country, region or carrier: every caller under them refused",
                "roamers: +86139xxxxxxxx takes in a whole country, region or carrier: every caller under it let in from abroad",
            ]
        );
        // Complete short numbers in a range, and a block of a hundred, are no region
        // (QA 58: `95500..95599` was warned of).
        assert!(
            said("[lists.blacklist]\nentries = [\"+8617099999*\", \"+8613800000001\", \"+86100..+86199\", \"+8613812345600..+8613812345699\"]\n[lists.roamers]\nentries = [\"+8613900000000\"]\n[lists.exempt]\nentries = [\"95500..95599\", \"+86110..+86119\"]\n").is_empty()
        );
        // From a list file, the entry's line is named, as on whitelists; the numbers'
        // lines are not kept (millions of them), so nothing else changes.
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(
            dir.path().join("black.txt"),
            "# national blacklist\n+8613800000001\n+86*\n+8617099999*\n+8613900000000..+8613999999999\n+86*\n",
        )
        .expect("list file");
        let p = Policy::from_str(
            "[lists.blacklist]\nfiles = [\"black.txt\"]\n[[trunk]]\nname = \"intl\"\nrole = \"international\"\nsources = [\"10.0.0.0/24\"]\nnext_hop = \"udp:10.0.0.9:5060\"\n",
            "t.toml",
            dir.path(),
        )
        .unwrap();
        let at = dir.path().join("black.txt").display().to_string();
        assert_eq!(
            warnings(&p),
            [format!(
                "blacklist: +86* ({at}:3, {at}:6), +86139xxxxxxxx ({at}:5) take in a whole country, region or carrier: every caller under them refused"
            )]
        );
        let n = crate::numbering::Number::from_digits(b"8613800000001").unwrap();
        assert!(p.blacklist.origins_of(&n, EntryKind::Exact).is_empty());
        let none = Policy::from_str("", "t.toml", std::path::Path::new(".")).unwrap();
        assert_eq!(
            warnings(&none),
            ["no trunks: every message is from an unknown source"]
        );
    }

    #[test]
    fn entries_an_earlier_rule_refuses_are_named() {
        let p = policy(
            "",
            r#""+864008001234", "+8613800000001", "+861380000", "+8614512345678", "+8613912345678", "+86170999991*", "+86170*""#,
        );
        let w = warnings(&p);
        assert_eq!(
            w,
            [
                "trunk ent whitelist: +86170* lets a whole country, region or carrier through",
                "trunk ent whitelist: 1 entry not a valid number in the plan, refused first by numbering-plan: +861380000",
                "trunk ent whitelist: 1 entry a data-only or IoT number, refused first by no-voice-number: +8614512345678",
                "trunk ent whitelist: 2 entries on the blacklist, refused first by blacklist: +8613800000001, +86170999991*",
                "trunk ent whitelist: 1 entry not (wholly) in own_segments, refused first by enterprise-foreign-network: +8613912345678",
            ],
        );
    }

    #[test]
    fn rules_that_only_watch_or_exempt_entries_are_no_contradiction() {
        let p = policy(
            "[rules.blacklist]\naction = \"monitor\"\n",
            r#""+8613800000001""#,
        );
        assert!(warnings(&p).is_empty(), "{:?}", warnings(&p));
        let p = policy(
            "[lists.exempt]\nentries = [\"+8613800000001\"]\n",
            r#""+8613800000001""#,
        );
        assert!(warnings(&p).is_empty(), "{:?}", warnings(&p));
    }

    #[test]
    fn long_reports_are_cut() {
        let many: Vec<String> = (0..12).map(|i| format!("\"+86139123400{i:02}\"")).collect();
        let w = warnings(&policy("", &many.join(", ")));
        assert_eq!(w.len(), 1);
        assert!(
            w[0].starts_with("trunk ent whitelist: 12 entries not (wholly) in own_segments"),
            "{}",
            w[0]
        );
        assert!(w[0].ends_with(" and 7 more"), "{}", w[0]);
    }
}
