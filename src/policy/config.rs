//! The policy file (TOML), as written by operators. Every value that can be wrong is
//! checked while deserialising, so the TOML parser reports it with its line and column.

use serde::Deserialize;
use serde::de::{self, Deserializer};
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use super::RuleId;

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub general: General,
    #[serde(default)]
    pub lists: Lists,
    /// Global rule settings, overriding the built-in defaults.
    #[serde(default)]
    pub rules: BTreeMap<RuleId, RuleConf>,
    #[serde(default, rename = "trunk")]
    pub trunks: Vec<TrunkConf>,
    #[serde(default)]
    pub proxy: ProxyConf,
    #[serde(default)]
    pub behaviour: BehaviourTables,
    #[serde(default)]
    pub redis: RedisConf,
    #[serde(default)]
    pub metrics: MetricsConf,
    #[serde(default)]
    pub records: RecordsConf,
    #[serde(default)]
    pub log: LogConf,
    #[serde(default)]
    pub hep: HepConf,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct General {
    /// `builtin:cn` or a plan file path (relative to the config file).
    pub plan: String,
    /// Header added to labelled calls.
    pub label_header: String,
    /// When set, labelled calls also get `;verstat=<value>` on P-Asserted-Identity
    /// (3GPP TS 24.229), e.g. "TN-Validation-Failed".
    pub verstat: Option<String>,
    /// Server header in responses sipfence sends; empty for none.
    pub server: String,
    /// Add an RFC 3326 Reason header to rejections.
    pub reason_header: bool,
    /// Key of the digest nonces (`[trunk.auth]`). Gateways that share callers, and a
    /// replay of their captures, need the same one; unset, each policy load draws one
    /// at random (outstanding nonces then come back stale and are re-challenged).
    pub auth_secret: Option<String>,
    /// Other secrets whose nonces and dialog tokens are taken, never made: the old one
    /// while calls set up under it are up, or the next one while the fleet moves to it
    /// (rotating `auth_secret` without dropping the calls up).
    pub auth_secrets_accepted: Vec<String>,
}

impl Default for General {
    fn default() -> Self {
        General {
            plan: "builtin:cn".into(),
            label_header: "X-Sipfence-Label".into(),
            verstat: None,
            server: "sipfence".into(),
            reason_header: true,
            auth_secret: None,
            auth_secrets_accepted: vec![],
        }
    }
}

/// SIP digest authentication of a trunk's calls (RFC 3261 22, RFC 7616, RFC 8760), on
/// top of its source addresses: an IP-PBX on an enterprise line proves who it is.
#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct AuthConf {
    /// Realm of the challenge; default: the trunk's name.
    pub realm: Option<String>,
    /// `name:password` (or `name:md5:<32 hex digits>`, the HA1 of name:realm:password,
    /// to keep the password out of the file; MD5 clients only then).
    pub users: Vec<String>,
    /// How long a nonce stays good, in seconds.
    #[serde(default = "default_nonce_secs")]
    pub nonce_secs: u64,
    /// Wrong answers from one source address within a minute beyond which its calls
    /// are refused without their credentials being checked (a password guesser such as
    /// sipvicious' svcrack); 0: never.
    #[serde(default = "default_max_failures")]
    pub max_failures_per_minute: u32,
    /// The digest algorithms offered in a challenge, most preferred first (RFC 8760):
    /// `MD5`, `SHA-256`. Default MD5 alone: every SIP device answers it, and some fail
    /// a call outright on a second challenge (QA 106: baresip).
    pub algorithms: Option<Vec<String>>,
}

fn default_nonce_secs() -> u64 {
    300
}

fn default_max_failures() -> u32 {
    10
}

/// A list: files (one entry per line) and entries written inline.
#[derive(Debug, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields, default)]
pub struct ListConf {
    pub files: Vec<String>,
    pub entries: Vec<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Lists {
    /// National blacklist: rejected on every trunk.
    pub blacklist: ListConf,
    /// Service numbers (police stations, government offices...) that never call from abroad.
    pub protected: ListConf,
    /// +86 numbers that may arrive on an international trunk (own outbound roamers).
    pub roamers: ListConf,
    /// Number segments this network assigned; enterprise callers outside them are refused.
    pub own_segments: ListConf,
    /// Numbers and segments the operator vouches for: the blacklist and the behaviour
    /// rules let them through (their false positives: a national list entry disputed
    /// locally, a bank's notification line that makes many short calls). No other rule
    /// is relaxed.
    pub exempt: ListConf,
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum ActionKind {
    /// Answer with an error response; the call goes no further.
    Reject,
    /// Discard silently: no answer, counted and recorded. What carriers do to traffic
    /// from unknown sources, so that a scanner learns nothing of what listens here.
    Drop,
    /// Edit the message (generic-number: put the asserted number in From) and forward.
    Rewrite,
    /// Forward with a label header.
    Label,
    /// Behaviour rules only: let the caller through at most `rate_limit_per_minute`
    /// calls a minute (labelled), answer the rest with the rule's code.
    RateLimit,
    /// Count and record only.
    Monitor,
    /// The rule is not evaluated.
    Off,
}

impl ActionKind {
    /// As written in a policy (and in the `action` label of the metrics).
    pub fn as_str(self) -> &'static str {
        match self {
            ActionKind::Reject => "reject",
            ActionKind::Drop => "drop",
            ActionKind::Rewrite => "rewrite",
            ActionKind::Label => "label",
            ActionKind::RateLimit => "rate-limit",
            ActionKind::Monitor => "monitor",
            ActionKind::Off => "off",
        }
    }
}

#[derive(Debug, Deserialize, Clone, Default)]
#[serde(deny_unknown_fields)]
pub struct RuleConf {
    pub action: Option<ActionKind>,
    pub code: Option<StatusCode>,
    pub reason: Option<String>,
    pub label: Option<String>,
    /// Rate rules with shared counters: what to do while Redis cannot be reached.
    pub fallback: Option<Fallback>,
}

/// A shared-counter rule while the shared store is unreachable.
#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Fallback {
    /// Count locally against the full limit: calls flow; every gateway may admit the
    /// whole contract until Redis is back.
    #[default]
    Open,
    /// The rule matches every call it judges until the shared count is back.
    Closed,
}

/// Several gateways as one filter: counters, list versions and records shared through
/// Redis. Read at start (like `[metrics]`); empty `url`: everything stays local.
#[derive(Debug, Deserialize, Clone, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RedisConf {
    /// `redis://host:port[/db]`.
    pub url: String,
    /// This gateway's name in records and list-version reports (default: host name).
    pub instance: String,
    /// Prefix of every key sipfence uses.
    pub prefix: String,
    /// Longest wait for any Redis call; after it the call counts as failed.
    pub timeout_ms: u64,
    /// Shared counters: local increments go to Redis, and the totals come back, this often.
    pub sync_ms: u64,
    /// Follow lists published with `sipfence lists publish`.
    pub lists: bool,
    pub list_poll_ms: u64,
    /// Longest wait for a whole list set to arrive (a gateway) or be stored (`lists
    /// publish`): millions of entries are tens of MB.
    pub list_timeout_ms: u64,
    /// Stream the signaling records go to ("" for none), trimmed to about this length.
    pub records_stream: String,
    pub records_maxlen: u64,
}

impl Default for RedisConf {
    fn default() -> Self {
        RedisConf {
            url: String::new(),
            instance: String::new(),
            prefix: "sipfence".into(),
            timeout_ms: 200,
            sync_ms: 100,
            lists: true,
            list_poll_ms: 1000,
            list_timeout_ms: 60_000,
            records_stream: "records".into(),
            records_maxlen: 1_000_000,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatusCode(pub u16);

impl<'de> Deserialize<'de> for StatusCode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let c = u16::deserialize(d)?;
        if !(400..=699).contains(&c) {
            return Err(de::Error::custom(format!(
                "rejection code {c} is not a 4xx-6xx status"
            )));
        }
        Ok(StatusCode(c))
    }
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    International,
    Interconnect,
    Enterprise,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::International => "international",
            Role::Interconnect => "interconnect",
            Role::Enterprise => "enterprise",
        }
    }
}

/// An address (or network) a trunk's traffic comes from: `10.1.2.3`, `10.1.2.0/24`,
/// `2001:db8::/32`, optionally with a port (`127.0.0.1:5070`, `[::1]:5070`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SourceSpec {
    pub net: IpAddr,
    pub prefix: u8,
    pub port: Option<u16>,
}

/// As written in a policy: `10.1.2.0/24`, `127.0.0.1/32:5070`.
impl std::fmt::Display for SourceSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.net, self.port) {
            (IpAddr::V6(n), Some(p)) => write!(f, "[{n}/{}]:{p}", self.prefix),
            (n, Some(p)) => write!(f, "{n}/{}:{p}", self.prefix),
            (n, None) => write!(f, "{n}/{}", self.prefix),
        }
    }
}

/// What an address with a zone id (`fe80::1%eth0`) is told (QA 139: only "not an
/// address" was said): link-local addresses are tied to one link, and a gateway's
/// peers and core are reached by global or unique-local ones.
pub(crate) fn zone_said(s: &str) -> &'static str {
    if s.contains('%') {
        ": zone ids (%eth0) are not taken; use a global or unique-local address"
    } else {
        ""
    }
}

impl SourceSpec {
    pub fn parse(s: &str) -> Result<SourceSpec, String> {
        let s = s.trim();
        if let Ok(sa) = s.parse::<SocketAddr>() {
            let prefix = if sa.is_ipv4() { 32 } else { 128 };
            return SourceSpec::new(sa.ip(), prefix, Some(sa.port())).sending(s);
        }
        // A network with a port: `10.1.0.0/16:5061`, `[2001:db8::/32]:5061`.
        let (net_text, port) = match s.strip_prefix('[').and_then(|r| r.split_once(']')) {
            Some((inner, rest)) => match rest.strip_prefix(':') {
                Some(p) => (inner, Some(p)),
                None if rest.is_empty() => (inner, None),
                None => return Err(format!("'{s}': after ']' only ':port' may follow")),
            },
            None => match s.split_once('/') {
                Some((_, len)) if len.contains(':') && !s.contains("::") => {
                    let (n, p) = s.rsplit_once(':').unwrap_or((s, ""));
                    (n, Some(p))
                }
                _ => (s, None),
            },
        };
        let port = match port {
            Some(p) => Some(
                p.parse::<u16>()
                    .ok()
                    .filter(|&p| p != 0)
                    .ok_or_else(|| format!("bad port in '{s}'"))?,
            ),
            None => None,
        };
        let (ip, prefix) = match net_text.split_once('/') {
            Some((ip, p)) => (ip, Some(p)),
            None => (net_text, None),
        };
        let net: IpAddr = ip.parse().map_err(|_| {
            format!("'{s}' is not an IP address, network or address:port (network:port as 10.1.0.0/16:5061 or [2001:db8::/32]:5061){}", zone_said(s))
        })?;
        let max = if net.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|&p| p <= max)
                .ok_or_else(|| format!("bad prefix length in '{s}' (0 to {max})"))?,
            None => max,
        };
        SourceSpec::new(net, prefix, port).sending(s)
    }

    /// A single address no packet comes from (unspecified, multicast, broadcast) is
    /// refused: written for "any" (as `[::]` is in a listen address) it would match
    /// nobody, and every call of the peer would go to another trunk or be refused as
    /// an unknown source (QA 174 F4).
    fn sending(self, s: &str) -> Result<SourceSpec, String> {
        let host = self.prefix == if self.net.is_ipv4() { 32 } else { 128 };
        let none = match self.net {
            IpAddr::V4(a) => a.is_unspecified() || a.is_multicast() || a.is_broadcast(),
            IpAddr::V6(a) => a.is_unspecified() || a.is_multicast(),
        };
        // A network of such addresses alone (`ff00::/8`, `224.0.0.0/4`, `0.0.0.0/8`,
        // QA 177 G): the same mistake, wider.
        let none_within = match masked(self.net, self.prefix) {
            IpAddr::V4(a) => {
                (self.prefix >= 4 && a.is_multicast()) || (self.prefix >= 8 && a.octets()[0] == 0)
            }
            IpAddr::V6(a) => self.prefix >= 8 && a.is_multicast(),
        };
        if (host && none) || none_within {
            return Err(format!(
                "'{s}' is no packet's source (an unspecified, multicast or broadcast address); any source is 0.0.0.0/0 or ::/0"
            ));
        }
        Ok(self)
    }

    /// An IPv4 network written IPv4-mapped (`::ffff:10.1.2.3`, `::ffff:10.1.0.0/112`) is
    /// that IPv4 network: a peer is matched by its canonical address (a dual-stack
    /// socket reports an IPv4 peer mapped, and the proxy unmaps it), so the mapped form
    /// as written would match nobody.
    fn new(net: IpAddr, prefix: u8, port: Option<u16>) -> SourceSpec {
        match net {
            IpAddr::V6(v6) if prefix >= 96 => match v6.to_ipv4_mapped() {
                Some(v4) => SourceSpec {
                    net: IpAddr::V4(v4),
                    prefix: prefix - 96,
                    port,
                },
                None => SourceSpec { net, prefix, port },
            },
            _ => SourceSpec { net, prefix, port },
        }
    }

    /// The network as a mask reads it: `10.1.2.0` for `10.1.2.3/24`.
    pub fn network(&self) -> IpAddr {
        masked(self.net, self.prefix)
    }

    /// Every address (`0.0.0.0/0`, `::/0`).
    pub fn is_everyone(&self) -> bool {
        self.prefix == 0
    }

    /// Whether every address `other` admits, this admits too.
    pub fn covers(&self, other: &SourceSpec) -> bool {
        self.net.is_ipv4() == other.net.is_ipv4()
            && self.prefix <= other.prefix
            && self.port.is_none_or(|p| other.port == Some(p))
            && self.covers_ip(other.net)
    }

    pub fn matches(&self, a: &SocketAddr) -> bool {
        self.port.is_none_or(|p| p == a.port()) && self.covers_ip(a.ip())
    }

    /// Whether the address is in this network, whatever the port. An IPv4 peer that a
    /// dual-stack socket reports mapped (`::ffff:10.1.2.3`) is the IPv4 peer: only IPv4
    /// networks hold it (an IPv6 network such as `::/64` contains the mapped range, and
    /// would otherwise take in every IPv4 caller).
    pub fn covers_ip(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        ip.is_ipv4() == self.net.is_ipv4() && masked(ip, self.prefix) == self.network()
    }
}

/// `ip` with all but its first `prefix` bits cleared.
fn masked(ip: IpAddr, prefix: u8) -> IpAddr {
    match ip {
        IpAddr::V4(n) => {
            let mask = u32::MAX.checked_shl(32 - prefix as u32).unwrap_or(0);
            IpAddr::V4((u32::from(n) & mask).into())
        }
        IpAddr::V6(n) => {
            let mask = u128::MAX.checked_shl(128 - prefix as u32).unwrap_or(0);
            IpAddr::V6((u128::from(n) & mask).into())
        }
    }
}

impl<'de> Deserialize<'de> for SourceSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        SourceSpec::parse(&s).map_err(de::Error::custom)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Transport {
    Udp,
    Tcp,
}

impl Transport {
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
        }
    }
}

/// `udp:127.0.0.1:5060`, `tcp:[::1]:5060`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ListenSpec {
    pub transport: Transport,
    pub addr: SocketAddr,
}

impl ListenSpec {
    /// Whether a message that arrived at `local` is one this listen address takes: the
    /// same transport and port, and the same IP unless this one is a wildcard of its
    /// family: `[::]` (dual-stack) takes both families, `0.0.0.0` IPv4 only, which is
    /// all such a socket receives (QA 45: it took an IPv6 call to another trunk's
    /// `[::1]`). The proxy's own sockets give their listen address as it is written; a
    /// capture gives the host's real address.
    pub fn covers(&self, local: &ListenSpec) -> bool {
        self.transport == local.transport
            && self.addr.port() == local.addr.port()
            && (self.addr.ip() == local.addr.ip()
                || self.addr.ip().is_unspecified()
                    && (self.addr.is_ipv6() || local.addr.ip().to_canonical().is_ipv4()))
    }

    pub fn parse(s: &str) -> Result<ListenSpec, String> {
        let (t, a) = s
            .split_once(':')
            .ok_or_else(|| format!("'{s}': expected udp:ADDR:PORT or tcp:ADDR:PORT"))?;
        let transport = match t.to_ascii_lowercase().as_str() {
            "udp" => Transport::Udp,
            "tcp" => Transport::Tcp,
            _ => return Err(format!("'{s}': transport must be udp or tcp")),
        };
        let addr: SocketAddr = a
            .parse()
            .map_err(|_| format!("'{s}': '{a}' is not an address:port{}", zone_said(a)))?;
        // `[::ffff:10.1.2.3]:5060` is the IPv4 address: sent to, bound and compared as
        // such (an IPv4 socket cannot send to the mapped form, and peers are matched by
        // their canonical address).
        let addr = crate::canonical(addr);
        Ok(ListenSpec { transport, addr })
    }
}

impl std::fmt::Display for ListenSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.transport.as_str(), self.addr)
    }
}

impl<'de> Deserialize<'de> for ListenSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        ListenSpec::parse(&s).map_err(de::Error::custom)
    }
}

/// `HH:MM-HH:MM` in the trunk's local time; may wrap past midnight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hours {
    pub from_min: u16,
    pub to_min: u16,
}

/// As written in a policy: `08:00-21:00`.
impl std::fmt::Display for Hours {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (a, b) = (self.from_min, self.to_min);
        write!(f, "{:02}:{:02}-{:02}:{:02}", a / 60, a % 60, b / 60, b % 60)
    }
}

fn hhmm(s: &str) -> Option<u16> {
    let (h, m) = s.trim().split_once(':')?;
    // Digits only: `parse` also takes a sign (`+1:00`, `09:+5`: QA 58).
    let digits = |t: &str, n: std::ops::RangeInclusive<usize>| {
        n.contains(&t.len()) && t.bytes().all(|c| c.is_ascii_digit())
    };
    if !digits(h, 1..=2) || !digits(m, 2..=2) {
        return None;
    }
    let (h, m): (u16, u16) = (h.parse().ok()?, m.parse().ok()?);
    (h <= 24 && m < 60 && h * 60 + m <= 1440).then_some(h * 60 + m)
}

impl<'de> Deserialize<'de> for Hours {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let (a, b) = s
            .split_once('-')
            .ok_or_else(|| de::Error::custom(format!("hours '{s}': expected HH:MM-HH:MM")))?;
        let why = match (hhmm(a), hhmm(b)) {
            _ if s.contains([',', ';', '/']) || s.trim().contains(' ') && !s.contains(" - ") => {
                "one window only (HH:MM-HH:MM)".to_string()
            }
            _ if a.trim().is_empty() => "no start time (HH:MM-HH:MM)".to_string(),
            (None, _) => format!("'{}' is no time of day (00:00 to 23:59)", a.trim()),
            (_, None) => format!("'{}' is no time of day (00:00 to 24:00)", b.trim()),
            // 24:00 ends a day; a window that starts then starts at 00:00 (QA 52: it
            // loaded, worked as 00:00 and was shown as written).
            (Some(1440), _) => "a window starts at 00:00, not 24:00".to_string(),
            (Some(from_min), Some(to_min)) if from_min != to_min => {
                return Ok(Hours { from_min, to_min });
            }
            _ => "the window starts and ends at the same time (the whole day is 00:00-24:00)"
                .to_string(),
        };
        Err(de::Error::custom(format!("hours '{s}': {why}")))
    }
}

/// `+08:00`, `-05:30`, `Z`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UtcOffset(pub i32);

impl<'de> Deserialize<'de> for UtcOffset {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if s == "Z" || s == "UTC" {
            return Ok(UtcOffset(0));
        }
        let sign = match s.as_bytes().first() {
            Some(b'+') => 1,
            Some(b'-') => -1,
            _ => {
                return Err(de::Error::custom(format!(
                    "utc_offset '{s}': expected +HH:MM, -HH:MM or Z"
                )));
            }
        };
        let m = hhmm(&s[1..]).filter(|&m| m <= 14 * 60).ok_or_else(|| {
            de::Error::custom(format!("utc_offset '{s}': expected +HH:MM, -HH:MM or Z"))
        })?;
        Ok(UtcOffset(sign * m as i32))
    }
}

/// Days of the week, as a bitmask with Monday = bit 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Days(pub u8);

impl Days {
    const NAMES: [&'static str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

    /// The days as written in a policy, Monday first.
    pub fn names(self) -> Vec<&'static str> {
        (0..7)
            .filter(|i| self.0 & (1 << i) != 0)
            .map(|i| Days::NAMES[i])
            .collect()
    }
}

impl<'de> Deserialize<'de> for Days {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Vec::<String>::deserialize(d)?;
        let mut mask = 0u8;
        for s in &v {
            let i = Days::NAMES
                .iter()
                .position(|n| s.eq_ignore_ascii_case(n))
                .ok_or_else(|| {
                    de::Error::custom(format!(
                        "day '{s}': expected one of {}",
                        Days::NAMES.join(", ")
                    ))
                })?;
            mask |= 1 << i;
        }
        // No day at all would refuse every call of the trunk: a slip, not a contract
        // (leave `days` out for every day; stop a trunk by removing it).
        if mask == 0 {
            return Err(de::Error::custom(
                "days: empty (no day allowed would refuse every call; leave days out for all seven)",
            ));
        }
        Ok(Days(mask))
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrunkConf {
    pub name: String,
    pub role: Role,
    /// Where this trunk's messages come from. Empty: any source (on its listen addresses).
    #[serde(default)]
    pub sources: Vec<SourceSpec>,
    /// Local addresses this trunk arrives on. Empty: any.
    #[serde(default)]
    pub listen: Vec<ListenSpec>,
    /// Where allowed calls go (the operator's core side).
    pub next_hop: Option<ListenSpec>,
    #[serde(default)]
    pub whitelist: Option<ListConf>,
    pub hours: Option<Hours>,
    pub utc_offset: Option<UtcOffset>,
    pub days: Option<Days>,
    pub max_calls_per_minute: Option<u32>,
    pub max_calls_per_minute_per_caller: Option<u32>,
    /// Calls up at once on this trunk (its contracted channels); needs `record_route`.
    pub max_concurrent_calls: Option<u32>,
    #[serde(default)]
    pub rules: BTreeMap<RuleId, RuleConf>,
    /// Behaviour thresholds; absent: the behaviour rules do not run on this trunk.
    pub behaviour: Option<BehaviourConf>,
    /// Add Record-Route to the calls of this trunk, so that their BYEs (and other
    /// in-dialog requests) pass through sipfence: the short-call feature needs them.
    #[serde(default)]
    pub record_route: bool,
    /// Add `Path` (RFC 3327) to the REGISTERs of this trunk's peers, so that the core's
    /// calls to a PBX that registers through sipfence come through it (and, behind a
    /// NAT, reach the PBX where its REGISTER came from); needs `record_route`.
    #[serde(default)]
    pub register_path: bool,
    /// Let an INVITE with a To-tag through without the caller rules even when its
    /// dialog was not seen answered here (the default judges it as a call: a To-tag
    /// anyone can invent must not carry a call past the rules).
    #[serde(default)]
    pub trust_in_dialog_invites: bool,
    /// Refuse (rule `withheld-caller`) a caller withheld from the callee even when the
    /// network asserts its number. Default: on enterprise trunks, whose contract is to
    /// show a number it assigned (the MIIT rules forbid numbers set to 禁显 there);
    /// elsewhere a withheld caller with an asserted identity is RFC 3325's ordinary
    /// private call.
    pub refuse_withheld: Option<bool>,
    /// Digest authentication of the trunk's calls; absent: the source address is enough.
    pub auth: Option<AuthConf>,
    /// How the peer writes numbers with no `+`, `00` or `0` in front: `national` (the
    /// home plan, the default) or `international` (E.164 without the plus).
    #[serde(default)]
    pub bare_numbers: crate::numbering::Bare,
}

/// Sizes of the behaviour tables (process-wide, fixed at start: memory is about
/// `callers` x 170 B + `calls` x 57 B whatever the traffic, 57 MiB at the defaults,
/// allocated only when a trunk runs behaviour rules).
#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct BehaviourTables {
    pub callers: usize,
    pub calls: usize,
}

impl Default for BehaviourTables {
    fn default() -> Self {
        BehaviourTables {
            callers: 262_144,
            calls: 262_144,
        }
    }
}

/// Per-trunk behaviour thresholds. A rule runs when its threshold is set and fires
/// when the caller's feature, over the sliding window, reaches it.
#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct BehaviourConf {
    pub window_secs: u32,
    /// A caller that trips a rule stays on the watch list this long: the rule keeps
    /// firing on its calls whatever its features do meanwhile.
    pub watch_secs: u32,
    /// behaviour-attempts: call attempts in the window.
    pub attempts: Option<u32>,
    /// behaviour-callees: distinct callees in the window.
    pub distinct_callees: Option<u32>,
    /// behaviour-sequential: calls to the callee after the previous one (+1..+16).
    pub sequential_callees: Option<u32>,
    /// behaviour-low-asr: below this answer-seizure ratio (percent) ...
    pub min_asr_percent: Option<u32>,
    /// ... once at least this many of the caller's calls in the window have an outcome
    /// (QA 98: counted over attempts, a call centre whose failures come back at once
    /// and whose answers after 20 s of ringing read 0 of 13 at its 20th attempt).
    pub asr_min_attempts: Option<u32>,
    /// ... counting a call's outcome no sooner than this after its INVITE (at most 60;
    /// 0: as the outcome comes).
    pub asr_settle_secs: Option<u32>,
    /// behaviour-ring-once: calls cancelled within `ring_once_secs` of ringing, to this
    /// many distinct callees ...
    pub ring_once: Option<u32>,
    pub ring_once_secs: Option<u32>,
    /// ... making at least this share (percent) of the callees its calls reached.
    pub ring_once_percent: Option<u32>,
    /// behaviour-short-calls: answered calls ended within `short_call_secs`.
    pub short_calls: Option<u32>,
    pub short_call_secs: Option<u32>,
    /// Calls a minute let through for a caller caught by a `rate-limit` rule.
    pub rate_limit_per_minute: u32,
}

impl BehaviourConf {
    // A rule's second settings are kept as written (`None`: left out) so that `check`
    // can warn about one written without its rule's threshold even at its default.
    pub fn asr_min_attempts(&self) -> u32 {
        self.asr_min_attempts.unwrap_or(20)
    }
    pub fn asr_settle_secs(&self) -> u32 {
        self.asr_settle_secs.unwrap_or(30)
    }
    pub fn ring_once_secs(&self) -> u32 {
        self.ring_once_secs.unwrap_or(5)
    }
    pub fn ring_once_percent(&self) -> u32 {
        self.ring_once_percent.unwrap_or(50)
    }
    pub fn short_call_secs(&self) -> u32 {
        self.short_call_secs.unwrap_or(10)
    }

    /// The settings as the rules use them: a second setting left out reads as its
    /// default, so that writing one out at its default changes nothing a reload reports.
    pub fn effective(&self) -> BehaviourConf {
        BehaviourConf {
            asr_min_attempts: Some(self.asr_min_attempts()),
            asr_settle_secs: Some(self.asr_settle_secs()),
            ring_once_secs: Some(self.ring_once_secs()),
            ring_once_percent: Some(self.ring_once_percent()),
            short_call_secs: Some(self.short_call_secs()),
            ..*self
        }
    }

    /// What makes behaviour rule `r` fire, for people (`check`); `None` when its
    /// threshold is not set, so that the rule never fires.
    pub fn describe(&self, r: super::RuleId) -> Option<String> {
        use super::RuleId::*;
        let w = self.window_secs;
        Some(match r {
            BehaviourAttempts => format!("attempts>={}/{w}s", self.attempts?),
            BehaviourCallees => format!("callees>={}/{w}s", self.distinct_callees?),
            BehaviourSequential => format!("sequential>={}/{w}s", self.sequential_callees?),
            BehaviourLowAsr => format!(
                "asr<{}% once {} calls have an outcome (counted {}s after their INVITE at the earliest)/{w}s",
                self.min_asr_percent?,
                self.asr_min_attempts(),
                self.asr_settle_secs()
            ),
            BehaviourRingOnce => format!(
                "ring-once>={} callees and >={}% of the callees reached (cancelled within {}s of ringing)/{w}s",
                self.ring_once?,
                self.ring_once_percent(),
                self.ring_once_secs()
            ),
            BehaviourShortCalls => format!(
                "short>={} (ended within {}s of the answer)/{w}s",
                self.short_calls?,
                self.short_call_secs()
            ),
            _ => return None,
        })
    }
}

impl Default for BehaviourConf {
    fn default() -> Self {
        BehaviourConf {
            window_secs: 60,
            watch_secs: 1800,
            attempts: None,
            distinct_callees: None,
            sequential_callees: None,
            min_asr_percent: None,
            asr_min_attempts: None,
            asr_settle_secs: None,
            ring_once: None,
            ring_once_secs: None,
            ring_once_percent: None,
            short_calls: None,
            short_call_secs: None,
            rate_limit_per_minute: 2,
        }
    }
}

#[derive(Debug, Deserialize, Clone, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ProxyConf {
    /// Receive loops (one current-thread runtime each); 0 = one per core.
    pub workers: usize,
    /// A socket that stays busy (never found empty) for this long means the proxy is
    /// behind: new INVITEs then get 503 with Retry-After until it catches up.
    pub overload_ms: u64,
    pub tcp_idle_secs: u64,
    pub max_tcp_connections: usize,
    /// Seconds to put in Retry-After on an overload 503.
    pub retry_after: u32,
    /// Keys kept by the rate counters (bounded memory whatever callers an attacker invents).
    pub rate_keys: usize,
    /// Requests larger than this many bytes bound for a UDP next hop go over TCP to the
    /// same address instead (RFC 3261 18.1.1 says 1300 when the path MTU is unknown);
    /// 0 = always UDP, and a request no datagram can hold gets 513.
    pub udp_mtu: usize,
    /// Proxy-Require option tags let through (RFC 3261 16.3 step 5: a request that
    /// requires any other of proxies is answered 420 Bad Extension). sipfence implements
    /// none itself; list the ones the core handles.
    pub proxy_require_accepted: Vec<String>,
    /// The address sipfence gives in its Via and Record-Route for a socket bound to a
    /// wildcard address (`0.0.0.0`, `[::]`), which names no host. Unset: the address
    /// the host routes from towards the next hop, found at start.
    pub advertise: Option<std::net::IpAddr>,
    /// Seconds between OPTIONS probes of each next hop, UDP or TCP (0: none). One that
    /// has answered a probe and then leaves three unanswered is marked down: new calls
    /// for it get 503 until it answers again (or, TCP, is connected anew).
    pub probe_secs: u64,
    /// Seconds sipfence goes on after SIGTERM before it stops (0: it stops at once):
    /// new calls are answered 503 with Retry-After and `/readyz` says not ready, while
    /// what is under way (answers, ACKs, BYEs) is still relayed. A second SIGTERM or
    /// SIGINT stops it at once.
    pub drain_secs: u64,
    /// A file that keeps the calls up (`max_concurrent_calls`) from a stop to the next
    /// start, so that a restart gives away no place of a call that goes on; relative to
    /// the config's directory; empty: none (the default).
    pub calls_file: String,
}

impl Default for ProxyConf {
    fn default() -> Self {
        ProxyConf {
            workers: 0,
            overload_ms: 250,
            tcp_idle_secs: 120,
            max_tcp_connections: 4096,
            retry_after: 5,
            rate_keys: 1_000_000,
            udp_mtu: 0,
            proxy_require_accepted: Vec::new(),
            advertise: None,
            probe_secs: 0,
            drain_secs: 0,
            calls_file: String::new(),
        }
    }
}

#[derive(Debug, Deserialize, Clone, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConf {
    /// HTTP address for /metrics, /healthz, /readyz, /reload; empty to disable.
    pub listen: String,
}

impl Default for MetricsConf {
    fn default() -> Self {
        MetricsConf {
            listen: "127.0.0.1:9090".into(),
        }
    }
}

#[derive(Debug, Deserialize, Clone, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RecordsConf {
    /// Directory for signaling records (JSON lines); empty to disable.
    pub dir: String,
    pub rotate_bytes: u64,
    pub rotate_secs: u64,
    pub retention_secs: u64,
    /// Also write rejected requests into a pcap file in the same directory.
    pub pcap_rejected: bool,
}

/// Mirror of every SIP message sipfence reads and sends to a Homer server (or
/// heplify-server), in HEPv3 over UDP, as Kamailio's `siptrace` does: the filter's hop
/// shows in Homer's call flows, its rejections included. Read at start.
#[derive(Debug, Deserialize, Clone, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct HepConf {
    /// `udp:IP:PORT` of the collector (usually port 9060); unset: no mirror.
    pub server: Option<HepServer>,
    /// This gateway's capture agent id in Homer.
    pub capture_id: u32,
    /// HEP authentication key, when the collector wants one.
    pub password: String,
}

/// The collector's address: HEP goes over UDP.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HepServer(pub std::net::SocketAddr);

impl<'de> Deserialize<'de> for HepServer {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let spec = if s.contains("udp:") || s.contains("tcp:") {
            ListenSpec::parse(&s).map_err(de::Error::custom)?
        } else {
            ListenSpec::parse(&format!("udp:{s}")).map_err(de::Error::custom)?
        };
        if spec.transport != Transport::Udp {
            return Err(de::Error::custom(format!(
                "HEP server '{s}': sipfence sends HEP over UDP only (udp:IP:PORT)"
            )));
        }
        if spec.addr.port() == 0 || spec.addr.ip().is_unspecified() {
            return Err(de::Error::custom(format!(
                "HEP server '{s}': needs the collector's address and port"
            )));
        }
        Ok(HepServer(spec.addr))
    }
}

impl Default for RecordsConf {
    fn default() -> Self {
        RecordsConf {
            dir: String::new(),
            rotate_bytes: 64 << 20,
            rotate_secs: 3600,
            retention_secs: 7 * 86400,
            pcap_rejected: false,
        }
    }
}

#[derive(Debug, Deserialize, Clone, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LogConf {
    /// tracing filter, e.g. "info" or "sipfence=debug"; RUST_LOG overrides it.
    pub level: String,
    pub json: bool,
}

impl Default for LogConf {
    fn default() -> Self {
        LogConf {
            level: "info".into(),
            json: false,
        }
    }
}
