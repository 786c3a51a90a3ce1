//! `sipfence run`: the inline proxy. One current-thread tokio runtime per worker
//! thread, each with its own SO_REUSEPORT sockets, so the kernel spreads datagrams and
//! connections across cores and no message moves between threads (the udp-relay
//! measurements: a multi-thread runtime costs a third more CPU per call).
//!
//! The policy sits behind an `ArcSwap`: a reload builds the new one aside and swaps
//! it in whole; a message in flight finishes with the policy it started with.

/// `println!` and `eprintln!` that do not panic when nobody reads any more (a closed
/// pipe, a terminal gone): the proxy ignores SIGPIPE, so such a write fails with EPIPE,
/// and a message about the proxy is not worth its crash. With `[log] json = true` the
/// line is a JSON object shaped as the log's events are ([`banner_line`]), so that a
/// shipper reading the journal (stdout and stderr together) meets one format.
macro_rules! print_out {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), "{}", banner_line(format!($($t)*), "INFO"));
    }};
}
macro_rules! print_err {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), "{}", banner_line(format!($($t)*), "ERROR"));
    }};
}

/// Set once logging is set up with `[log] json = true`.
static JSON_LOGS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// One line the proxy prints about itself: as it is, or, with JSON logs, as the log's
/// events are (`timestamp`, `level`, `fields.message`, `target`).
fn banner_line(text: String, level: &str) -> String {
    if !JSON_LOGS.load(Ordering::Relaxed) {
        return text;
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    serde_json::json!({
        "timestamp": crate::time::rfc3339(now),
        "level": level,
        "fields": { "message": text },
        "target": "sipfence::proxy",
    })
    .to_string()
}

pub mod mmsg;
mod notify;
pub mod probe;
mod signals;
pub mod stateless;
pub mod tcp;
pub mod udp;

use arc_swap::ArcSwap;
use dashmap::DashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;
use tokio::sync::{mpsc, watch};

use crate::behaviour::local::LocalTracker;
use crate::cluster::{Cluster, Redis, counters::SharedRateCounter};
use crate::decide::Decision;
use crate::observability::homer::HepMirror;
use crate::observability::metrics::{Bound, Metrics};
use crate::observability::records::{self, RecordSink};
use crate::policy::Policy;
use crate::policy::config::{ListenSpec, Transport};
use crate::policy::diff::{self, StartOnly};
use crate::policy::lint;
use crate::policy::rate::{LocalRateCounter, RateCounter};
use crate::record::Record;
use crate::sip::Message;

/// A reload's changes, logged one a line and said as text for whoever asked for the
/// reload (`POST /reload` answers with it).
fn said(c: &diff::Changes) -> String {
    use std::fmt::Write;
    let mut text = String::new();
    if c.applied.is_empty() {
        // Said in the log too (QA 145: a reload of the same files showed only as a new
        // version and a dashboard annotation).
        tracing::info!("reload applies no change to lists, trunks or rules");
        text.push_str("no change to lists, trunks or rules\n");
    }
    for a in &c.applied {
        tracing::info!(change = %a, "reload applies");
        let _ = writeln!(text, "applied: {a}");
    }
    for r in &c.restart {
        tracing::warn!(setting = %r, "reload cannot apply this: read at start only; restart sipfence");
        let _ = writeln!(text, "needs a restart (read at start only): {r}");
    }
    text
}

/// A loaded policy with its metric handles and version.
pub struct Loaded {
    pub policy: Policy,
    pub bound: Bound,
    pub version: u64,
}

/// A reload done: a reload asked while it was being waited for is answered by the next
/// one to begin, whose files are at least as new as the asker's.
pub struct LastReload {
    began: std::time::Instant,
    force: bool,
    outcome: Result<String, String>,
}

/// State shared by every worker.
pub struct Shared {
    pub loaded: ArcSwap<Loaded>,
    /// Local counters, or counters shared through Redis (`[redis]`).
    pub rates: Arc<dyn RateCounter>,
    pub cluster: Option<Cluster>,
    /// The published list set running on top of the policy's files (version, lists):
    /// re-applied after a reload, which re-reads the files.
    pub lists: std::sync::Mutex<
        Option<(
            crate::cluster::lists::Published,
            crate::cluster::lists::ListSet,
        )>,
    >,
    /// Reloads and published list sets, one at a time, and the last reload done. Two at
    /// once each built a whole copy of the lists, and the one that read older files
    /// could finish last and put them back in force (QA 152: a number just added, and
    /// answered "loaded", let through again).
    pub reloading: std::sync::Mutex<Option<LastReload>>,
    /// Sized once at start from `[behaviour]`, allocated when behaviour rules run: a
    /// reload keeps the tables and what they learnt (new sizes take a restart).
    pub behaviour: LocalTracker,
    pub metrics: Arc<Metrics>,
    pub records: Option<RecordSink>,
    /// The mirror to Homer (`[hep]`).
    pub hep: Option<HepMirror>,
    /// Writers of open TCP connections, by id (responses find their connection here).
    pub tcp_conns: DashMap<u64, mpsc::Sender<bytes::Bytes>, ahash::RandomState>,
    /// Open TCP connections peers opened to us, by their address (ids into
    /// `tcp_conns`), which requests for that address reuse (one per address: the first
    /// kept).
    pub tcp_peers: DashMap<std::net::SocketAddr, u64, ahash::RandomState>,
    /// Those we opened, to a next hop or a peer's address, by that address and the
    /// address they leave from (a listener's, or the system's choice: `None`).
    #[allow(clippy::type_complexity)]
    pub tcp_out: DashMap<(std::net::SocketAddr, Option<std::net::IpAddr>), u64, ahash::RandomState>,
    /// Next hops whose last connection attempt failed: requests for them are answered
    /// 503 at once while a task tries again every [`tcp::RETRY_AFTER_FAILURE`]. The
    /// value is when (ms) a request last wanted one: a next hop nobody wants any more
    /// is given up ([`tcp::GIVE_UP_AFTER`]).
    pub tcp_down: DashMap<std::net::SocketAddr, AtomicU64, ahash::RandomState>,
    /// The OPTIONS probes of next hops, and those marked down.
    pub probes: probe::Probes,
    pub next_conn: AtomicU64,
    /// Accepted TCP connections from addresses no trunk claims and no next hop has.
    pub unclaimed_tcp: std::sync::atomic::AtomicUsize,
    /// Accepted TCP connections open, each place taken at `accept` (before the
    /// connection's task runs), so that workers accepting at once cannot pass
    /// `max_tcp_connections` between them (QA 44: 272 open at a cap of 256).
    pub accepted_tcp: std::sync::atomic::AtomicUsize,
    /// Accepted connections the open files limit leaves room for ([`open_files`]),
    /// followed every 10 s ([`follow_open_files`]: `prlimit` on the running process).
    pub tcp_room: std::sync::atomic::AtomicUsize,
    /// Connections the metrics server serves at once ([`open_files`]).
    pub http_room: usize,
    pub config_path: Option<PathBuf>,
    /// The settings this process took at start: a reload that changes them is applied
    /// only by a restart, and says so.
    pub start_only: StartOnly,
    /// For each wildcard listen address, what our Via and Record-Route name there
    /// ([`advertised_both`]), found at start: the sockets keep these until the restart,
    /// and a reload that would find others says so.
    pub named: Vec<(SocketAddr, SocketAddr, Option<SocketAddr>)>,
    pub started: Instant,
    /// sipfence_messages_total handles: [udp, tcp] x [request, response].
    pub msg_counters: [[prometheus::IntCounter; 2]; 2],
    /// When an INVITE was last shed for overload (ms since the epoch, 0: never).
    pub shed_at_ms: AtomicU64,
    /// Stopping (`[proxy] drain_secs` after SIGTERM): new calls are shed as under
    /// overload, the rest relayed.
    pub draining: std::sync::atomic::AtomicBool,
    /// The calls up are written for the next start (`[proxy] calls_file`): this
    /// process no longer publishes them through Redis.
    pub calls_handed_over: std::sync::atomic::AtomicBool,
    /// The name the calls up had in Redis before a restart (`[proxy] calls_file`):
    /// this process publishes its calls under it, so its first count replaces the
    /// stopped process's rather than counting beside it (QA 134, QA 135).
    pub calls_field: std::sync::Mutex<Option<String>>,
    /// The calls file this process holds (`[proxy] calls_file`), and its lock.
    pub calls_lock: std::sync::Mutex<Option<(String, std::fs::File)>>,
}

/// How long after the last INVITE shed for overload `/readyz` says not ready.
const SHEDDING_MS: u64 = 10_000;

/// The address to give in our Via and Record-Route for a socket bound to `bound`. A
/// wildcard address names no host (a core elsewhere would answer itself): it is replaced
/// by `[proxy] advertise`, else by the address this host sends from towards a next hop
/// (of a trunk on that socket first), else towards a trunk's source network, as the
/// routing table says; no packet is sent.
pub fn advertised(policy: &Policy, bound: SocketAddr) -> SocketAddr {
    if !bound.ip().is_unspecified() {
        return bound;
    }
    let v6 = bound.is_ipv6();
    let ip = policy
        .proxy
        .advertise
        .filter(|a| v6 || a.is_ipv4())
        .or_else(|| {
            towards(policy, bound)
                .filter(|d| v6 || d.to_canonical().is_ipv4())
                .find_map(route_from)
        });
    ip.map_or(bound, |ip| SocketAddr::new(ip, bound.port()))
}

/// [`advertised`], and for a socket bound to `[::]`, which carries IPv4 as well
/// (Linux's default, net.ipv6.bindv6only = 0), the address to give to peers of the IP
/// family the first is not of, found the same way (`[proxy] advertise` of that family,
/// a next hop, a trunk's source network): `None` for any other socket, or when nothing
/// of that family is routed.
pub fn advertised_both(policy: &Policy, bound: SocketAddr) -> (SocketAddr, Option<SocketAddr>) {
    let first = advertised(policy, bound);
    (first, advertised_other(policy, bound, first))
}

fn advertised_other(policy: &Policy, bound: SocketAddr, first: SocketAddr) -> Option<SocketAddr> {
    if !(bound.is_ipv6() && bound.ip().is_unspecified()) || first.ip().is_unspecified() {
        return None;
    }
    let v4 = !first.is_ipv4();
    let ip = policy
        .proxy
        .advertise
        .filter(|a| a.is_ipv4() == v4)
        .or_else(|| routed(policy, bound, v4))?;
    Some(SocketAddr::new(ip, bound.port()))
}

/// Where this host's traffic for the socket `bound` goes, in the order [`advertised`]
/// asks the routing table about: next hops of the trunks on that socket, then of all
/// trunks, then the trunks' source networks (their first host) in the same order.
fn towards(policy: &Policy, bound: SocketAddr) -> impl Iterator<Item = IpAddr> + '_ {
    let on_socket = move |t: &&crate::policy::Trunk| {
        t.listen
            .iter()
            .any(|l| l.addr.port() == bound.port() && l.addr.ip().is_unspecified())
    };
    let trunks = || {
        policy
            .trunks
            .iter()
            .filter(on_socket)
            .chain(policy.trunks.iter())
    };
    let hops = trunks().filter_map(|t| t.next_hop).map(|h| h.addr.ip());
    let nets = trunks().flat_map(|t| t.sources.iter()).filter_map(|s| {
        let host = match s.net {
            IpAddr::V4(n) if s.prefix < 32 => {
                IpAddr::from(u32::from(n).checked_add(1)?.to_be_bytes())
            }
            IpAddr::V6(n) if s.prefix < 128 => {
                IpAddr::from(u128::from(n).checked_add(1)?.to_be_bytes())
            }
            n => n,
        };
        (s.prefix > 0).then_some(host)
    });
    hops.chain(nets)
}

/// The first address of IP family `v4` that the routing table sends from towards one of
/// [`towards`].
fn routed(policy: &Policy, bound: SocketAddr, v4: bool) -> Option<IpAddr> {
    towards(policy, bound)
        .filter(|d| d.to_canonical().is_ipv4() == v4)
        .find_map(route_from)
}

/// The source address the routing table chooses towards `dest` (a connected UDP socket
/// that sends nothing).
fn route_from(dest: IpAddr) -> Option<IpAddr> {
    let dest = dest.to_canonical();
    let any: SocketAddr = if dest.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let s = std::net::UdpSocket::bind(any).ok()?;
    s.connect(SocketAddr::new(dest, 5060)).ok()?;
    Some(s.local_addr().ok()?.ip()).filter(|ip| !ip.is_unspecified())
}

/// For each wildcard listen address of `policy`, what our Via and Record-Route name
/// there ([`advertised_both`]).
pub fn wildcard_names(policy: &Policy) -> Vec<(SocketAddr, SocketAddr, Option<SocketAddr>)> {
    let mut wild: Vec<SocketAddr> = policy
        .listen_addrs()
        .iter()
        .map(|l| l.addr)
        .filter(|a| a.ip().is_unspecified())
        .collect();
    wild.sort();
    wild.dedup();
    wild.into_iter()
        .map(|a| {
            let (first, other) = advertised_both(policy, a);
            (a, first, other)
        })
        .collect()
}

/// The wildcard listen addresses whose Via and Record-Route address `new` would find
/// otherwise than `named` ([`wildcard_names`] of the running process: a next hop or
/// sources of another IP family, QA 40): the sockets keep theirs until the restart, and
/// this says so, a line each (the reload's and `check --against`'s).
pub fn renamed(
    named: &[(SocketAddr, SocketAddr, Option<SocketAddr>)],
    new: &Policy,
) -> Vec<String> {
    let both = |a: SocketAddr, b: Option<SocketAddr>| match b {
        Some(b) => format!("{} and {}", a.ip(), b.ip()),
        None => a.ip().to_string(),
    };
    named
        .iter()
        .filter_map(|&(bound, a, b)| {
            let (na, nb) = advertised_both(new, bound);
            ((na, nb) != (a, b)).then(|| {
                format!(
                    "listen {bound}: Via and Record-Route name {} until the restart ({} under this policy)",
                    both(a, b),
                    both(na, nb)
                )
            })
        })
        .collect()
}

impl Shared {
    /// What our Via and Record-Route name for a listen address: for a wildcard, the
    /// addresses found at start ([`Shared::named`]; no routing-table lookup on the way
    /// of a message or a connection), else the address itself.
    pub fn names_at(&self, listen: SocketAddr) -> (SocketAddr, Option<SocketAddr>) {
        self.named
            .iter()
            .find(|n| n.0 == listen)
            .map_or((listen, None), |n| (n.1, n.2))
    }

    /// `sipfence_next_hops_down`: TCP addresses whose last connection attempt failed,
    /// and next hops marked down by their probes.
    pub fn count_next_hops_down(&self) {
        // A peer's own address the core's requests could not reach is no next hop
        // (QA 161: it held the gauge, and the outage alert, above 0).
        let policy = &self.loaded.load().policy;
        let mut down: Vec<_> = self
            .tcp_down
            .iter()
            .map(|e| *e.key())
            .filter(|a| policy.is_next_hop_over(*a, Some(Transport::Tcp)))
            .map(|a| (a, Transport::Tcp))
            .collect();
        down.extend(self.probes.down_hops());
        self.metrics.next_hops_down_are(&down);
    }

    /// Calls whose caller's BYE went unanswered to a next hop now down (its probes, or
    /// its TCP connection) have ended: their concurrent-call places are given back
    /// ([`crate::behaviour::live::LiveCalls::next_hop_down`]). Every 10 s.
    pub fn end_byes_behind_down_hops(&self) {
        let l = self.loaded.load();
        if !l.policy.tracks_calls || self.tcp_down.len() + self.probes.down_count() == 0 {
            return;
        }
        let mut down = self.probes.down_hops();
        down.extend(self.tcp_down.iter().map(|e| (*e.key(), Transport::Tcp)));
        let trunks: Vec<u64> = down
            .into_iter()
            .flat_map(|(a, t)| l.policy.trunks_behind(a, Some(t)))
            .collect();
        let since = crate::cli::steady_ms().saturating_sub(l.policy.bye_window_ms());
        crate::behaviour::BehaviourTracker::next_hop_down(&self.behaviour, &trunks, since);
    }

    /// Accepted TCP connections kept open at once: `max_tcp_connections`, or the room
    /// the open files limit leaves when that is less.
    pub fn tcp_limit(&self) -> usize {
        let max = self.loaded.load().policy.proxy.max_tcp_connections;
        max.min(self.tcp_room.load(Ordering::Relaxed))
    }

    pub fn count_message(&self, t: Transport, response: bool) {
        self.msg_counters[(t == Transport::Tcp) as usize][response as usize].inc();
    }

    /// Re-reads the policy (SIGHUP, `POST /reload`), counted in
    /// `sipfence_policy_reloads_total`; on failure the running one stays and the reason
    /// is returned.
    pub fn reload(&self) -> Result<String, String> {
        self.reload_with(false)
    }

    /// [`Shared::reload`]; `force` takes lists that shrank by more than half too
    /// ([`diff::shrunk_lists`], refused otherwise).
    ///
    /// Reloads run one at a time; one asked while another ran is answered by the next to
    /// begin (counted once): every one asked meanwhile reads no older files than that.
    pub fn reload_with(&self, force: bool) -> Result<String, String> {
        let asked = std::time::Instant::now();
        let mut last = self
            .reloading
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(done) = last
            .as_ref()
            .filter(|d| d.began >= asked && (d.force || !force))
        {
            let also = "(the reload that began while this one waited; its outcome)\n";
            return match &done.outcome {
                Ok(t) => Ok(format!("{t}{also}")),
                Err(e) => Err(format!("{e}\n{also}")),
            };
        }
        let began = std::time::Instant::now();
        let r = self.reread(force).map_err(|e| {
            tracing::error!(error = %e, "reload refused; the running policy stays");
            format!("reload refused: {e}")
        });
        let r = r.map(|mut text| {
            // A set refused here is tried again by the poller, not by this reload (QA
            // 58: the answer said nothing of the set that then came in force).
            if self.metrics.list_refused.get() > 0 {
                let v = self
                    .metrics
                    .list_version
                    .with_label_values(&["refused"])
                    .get();
                text.push_str(&format!(
                    "published lists v{v}, refused here before, are tried again at the next poll\n"
                ));
            }
            text
        });
        let result = if r.is_ok() { "ok" } else { "failed" };
        self.metrics.reloads.with_label_values(&[result]).inc();
        *last = Some(LastReload {
            began,
            force,
            outcome: r.clone(),
        });
        r
    }

    /// [`Shared::reload`] without counting it: a published list set that gives a list
    /// back to the files reads them too.
    fn reread(&self, force: bool) -> Result<String, String> {
        let loaded = crate::cli::load_policy(self.config_path.as_deref()).and_then(|p| {
            // Lists published through Redis stay in force over the files' ones.
            let set = self.lists.lock().ok().and_then(|g| g.clone());
            match set {
                Some((v, lists)) => crate::cluster::lists::apply(&p, v.version, &lists),
                None => Ok(p),
            }
        });
        // A policy without a trunk would refuse every call as from an unknown source:
        // a file emptied or cut while being written is refused, not put in force (QA
        // 67: an empty file reloaded "ok" and took the gateway down). A start refuses
        // it too (no trunk has a listen address).
        let loaded = loaded.and_then(|p| match p.trunks.is_empty() {
            true => Err(crate::load_error::LoadError::file(
                p.source.clone(),
                "no trunk (an empty or cut file?): every call would be refused",
            )),
            false => Ok(p),
        });
        // Lists, likewise: one that lost more than half its entries is far more often
        // a file cut or caught while a feed wrote it than an edit, and a blacklist so
        // emptied lets its numbers through with nothing to show (QA 118 F3). Taken on
        // demand, or at a restart.
        let loaded = loaded.and_then(|p| {
            let shrunk = diff::shrunk_lists(&self.loaded.load().policy, &p);
            if force || shrunk.is_empty() {
                return Ok(p);
            }
            Err(crate::load_error::LoadError::file(
                p.source.clone(),
                format!(
                    "{} lost more than half (a list file cut, or read while being written? write a list whole and rename it into place); to take it as it is: POST /reload?force=1, or restart",
                    shrunk.join(", ")
                ),
            ))
        });
        match loaded {
            Ok(mut p) => {
                // What the file says of the sockets, before a trunk that moved to an
                // address not bound keeps its running ones.
                let written = StartOnly::of(&p);
                let mut kept = diff::keep_bound_listens(
                    &self.loaded.load().policy,
                    &self.start_only.listen,
                    &mut p,
                );
                kept.extend(renamed(&self.named, &p));
                let summary = format!(
                    "loaded from {}: {}, blacklist {}",
                    p.source,
                    crate::policy::counted(p.trunks.len(), "trunk", "trunks"),
                    crate::policy::counted(p.blacklist.len(), "entry", "entries")
                );
                let changes = self.changes(&p, &written, kept);
                let mut warnings = lint::warnings(&p);
                warnings.extend(diff::cut_warning(&self.loaded.load().policy, &p));
                let version = self.install(p);
                let summary = format!("policy v{version} {summary}");
                notify::notify(&format!("STATUS=serving, policy v{version}"));
                tracing::info!("{summary}");
                let mut text = format!("{summary}\n{}", said(&changes));
                for w in warnings {
                    tracing::warn!("{w}");
                    text.push_str(&format!("warning: {w}\n"));
                }
                Ok(text)
            }
            // Said by the caller: a reload, or a published list set (QA 132: its refusal
            // was logged as a reload's, when none was asked for).
            Err(e) => Err(e.to_string()),
        }
    }

    /// What `new` changes against the running policy. Changes to settings read at
    /// start only are counted against the process's own start, not the last reload
    /// (`sipfence_restart_pending`), so that reverting them clears the gauge.
    /// `written`: the start-only settings as the new file has them; `kept`: what
    /// [`diff::keep_bound_listens`] kept of the running policy, and the wildcard
    /// addresses [`renamed`] until the restart.
    fn changes(&self, new: &Policy, written: &StartOnly, kept: Vec<String>) -> diff::Changes {
        let c = diff::Changes {
            applied: diff::applied(&self.loaded.load().policy, new),
            restart: [self.start_only.changes(written), kept].concat(),
        };
        self.metrics.restart_pending.set(c.restart.len() as i64);
        c
    }

    /// The published list version running, if any.
    pub fn lists_version(&self) -> Option<u64> {
        self.lists_running().map(|p| p.version)
    }

    /// The publication whose lists are in force, if any.
    pub fn lists_running(&self) -> Option<crate::cluster::lists::Published> {
        self.lists.lock().ok().and_then(|g| g.as_ref().map(|x| x.0))
    }

    /// The set running here, published again under another version (its content's
    /// digest the same: Redis flushed and the same files published again): nothing to
    /// build, the version is all that changes (QA 186: each gateway fetched and rebuilt
    /// it, saying the lists went back).
    fn renumber_lists(&self, p: crate::cluster::lists::Published) {
        if let Ok(mut g) = self.lists.lock()
            && let Some((running, _)) = g.as_mut()
        {
            *running = p;
        }
        self.metrics
            .list_version
            .with_label_values(&["running"])
            .set(p.version as i64);
    }

    /// Swaps a new policy in whole, with its metric handles; returns its version.
    fn install(&self, policy: Policy) -> u64 {
        // A reload or a published list set: either changes what is refused, and the
        // dashboard's "Policy loaded" marks both.
        self.metrics
            .loaded_at
            .set(crate::cli::now_ms() as i64 / 1000);
        let bound = self.metrics.bind(&policy);
        let version = self.loaded.load().version + 1;
        self.loaded.store(Arc::new(Loaded {
            policy,
            bound,
            version,
        }));
        version
    }

    /// Swaps in a published list set on top of the running policy: taken as it comes, or
    /// judged here as `trust` says.
    pub fn apply_lists(
        &self,
        published: crate::cluster::lists::Published,
        lists: crate::cluster::lists::ListSet,
        trust: crate::cluster::lists::Trust,
    ) -> Result<String, String> {
        use crate::cluster::lists::Trust;
        let judged = trust == Trust::Taken;
        let version = published.version;
        let names: Vec<String> = lists.iter().map(|(n, _)| n.clone()).collect();
        // Not while a reload reads the files: it took the running set when it began.
        let _one_at_a_time = self
            .reloading
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let Ok(mut running) = self.lists.lock() else {
            return Err("published lists: lock poisoned".into());
        };
        // A list the running set holds and this one does not goes back to the files'
        // (what a gateway that starts now runs): the files are read again, as a reload
        // reads them. Applied on top of the running policy, it kept the older set's
        // entries, and two gateways on one version enforced two lists (QA 54).
        let dropped = running
            .as_ref()
            .is_some_and(|(_, old)| old.iter().any(|(n, _)| !names.contains(n)));
        let policy_version = if dropped {
            let previous = running.replace((published, lists));
            drop(running);
            // Judged by the publisher with the lists going back to their files (QA 177
            // B); else judged here, as a reload is.
            match self.reread(judged) {
                Ok(_) => self.loaded.load().version,
                Err(e) => {
                    if let Ok(mut g) = self.lists.lock() {
                        *g = previous;
                    }
                    return Err(e);
                }
            }
        } else {
            // A set `lists publish` did not judge (written by other means, or by a
            // release before it), against the running lists, as a reload judges a list
            // file: a feed's file cut short would else empty the blacklist of every
            // gateway at once (QA 175 F1). A judged one was judged against the sets
            // before it, which this gateway may not run (restarted, a version behind:
            // QA 177 A).
            let running_policy = self.loaded.load();
            let seen = crate::cluster::lists::judge(&running_policy.policy, version, &lists)
                .map_err(|e| e.to_string())?;
            if !judged && !seen.shrunk.is_empty() {
                let how = match trust {
                    Trust::CheckedWithoutRunning => {
                        "against the set running here, which `lists publish` did not judge this one against (redis lost it, or this gateway was cut off meanwhile)"
                    }
                    _ => "in a set no `lists publish` judged",
                };
                return Err(format!(
                    "{} lost more than half, {how} (a feed's file cut short?); to take it as it is: sipfence lists publish --force",
                    seen.shrunk.join(", ")
                ));
            }
            let p = seen.policy;
            for c in diff::applied(&running_policy.policy, &p) {
                tracing::info!(change = %c, version, "published lists apply");
            }
            // What `check` would now say that it did not of the running policy: a
            // published `+86*` is named when it takes effect, not at the next reload
            // (QA 60); a list cut by more than a tenth, as a reload says it.
            for w in seen.warnings {
                tracing::warn!(version, "published lists: {w}");
            }
            drop(running_policy);
            let policy_version = self.install(p);
            *running = Some((published, lists));
            policy_version
        };
        self.metrics
            .list_version
            .with_label_values(&["running"])
            .set(version as i64);
        self.metrics.list_refused.set(0);
        Ok(format!(
            "published lists v{version} running ({}), policy v{policy_version}",
            names.join(", ")
        ))
    }

    /// Counts a decision and hands its record (and, for a rejection, the raw request) to
    /// the writer.
    #[allow(clippy::too_many_arguments)]
    pub fn observe(
        &self,
        l: &Loaded,
        msg: &Message,
        d: &Decision,
        source: SocketAddr,
        local: SocketAddr,
        now_ms: u64,
        seconds: f64,
    ) {
        l.bound.count(d, seconds);
        if d.retransmission && !d.answered_otherwise {
            // Its original's record (and raw request) stands for the call.
            return;
        }
        let stream = self.cluster.as_ref().and_then(|c| c.stream.get());
        if (stream.is_some() || self.records.is_some()) && d.recorded() {
            // One record for both writers.
            let rec = Record::new(&l.policy, msg, d, source, now_ms);
            if let Some(st) = stream
                && let Ok(json) = serde_json::to_string(&rec)
            {
                st.send(json);
            }
            if let Some(r) = &self.records {
                r.send(rec);
            }
        }
        if let Some(r) = &self.records
            && d.is_reject()
        {
            r.send_raw(now_ms, source, local, msg.bytes().slice(..msg.len()));
        }
    }
}

pub struct RunArgs {
    pub config: Option<PathBuf>,
    pub workers: Option<usize>,
}

fn init_logging(p: &Policy) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(p.log.level.clone()));
    // Colours for a person at a terminal only: a file or the journal would keep the
    // escape codes as text (NO_COLOR, https://no-color.org, turns them off anyway).
    use std::io::IsTerminal;
    let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour)
        .with_writer(std::io::stderr);
    let _ = if p.log.json {
        JSON_LOGS.store(true, Ordering::Relaxed);
        b.json().try_init()
    } else {
        b.try_init()
    };
}

/// Raises the process's soft limit of open files to its hard limit, as servers do (a
/// shell's or an old init's default of 1024 is under `max_tcp_connections` of many
/// gateways: QA 44 ran out of descriptors at 1,100 connections), and warns when even
/// that leaves no room for the connections allowed, the sockets, the record files and
/// the metrics server.
///
/// Returns how many accepted connections the limit leaves room for (`usize::MAX`: no
/// limit), and how many the metrics server may serve at once: past the first, a
/// connection is refused at once rather than left to fail at `accept` and wait in the
/// kernel's queue, and the descriptors left serve the metrics server, the next hops'
/// connections and the record files (QA 118 F4: with the limit taken by silent
/// connections, `/healthz` timed out while calls flowed).
fn open_files(max_tcp: usize) -> (usize, usize) {
    use crate::observability::http::MAX_CONNECTIONS as HTTP_MAX;
    #[cfg(unix)]
    {
        let mut l = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit and setrlimit read and write the struct passed, nothing else.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) } != 0 {
            return (usize::MAX, HTTP_MAX);
        }
        if l.rlim_cur < l.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: l.rlim_max,
                rlim_max: l.rlim_max,
            };
            // SAFETY: as above.
            if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
                tracing::debug!(
                    from = l.rlim_cur,
                    to = l.rlim_max,
                    "open files limit raised"
                );
                l = raised;
            }
        }
        if l.rlim_cur == libc::RLIM_INFINITY {
            return (usize::MAX, HTTP_MAX);
        }
        let limit = usize::try_from(l.rlim_cur).unwrap_or(usize::MAX);
        let room = tcp_room(limit);
        // What the accepted connections leave, of which the metrics server takes a
        // quarter at most (QA 119 N5: its 256 idle connections took every descriptor
        // kept back, and /healthz timed out again).
        let spare = limit - room.min(max_tcp);
        let http = (spare / 4).clamp(8, HTTP_MAX);
        if room < max_tcp {
            tracing::warn!(
                limit,
                max_tcp_connections = max_tcp,
                accepted_at_most = room,
                "the open files limit leaves room for fewer TCP connections than max_tcp_connections: those past it are refused; raise the limit (systemd LimitNOFILE=, ulimit -n) or lower max_tcp_connections"
            );
        }
        (room, http)
    }
    #[cfg(not(unix))]
    (usize::MAX, HTTP_MAX)
}

/// The accepted connections an open files limit leaves room for: a quarter of it, at
/// most 256, is kept for the listeners, worker sockets, record files, the metrics
/// server's connections and the next hops'.
fn tcp_room(limit: usize) -> usize {
    limit - (limit / 4).min(256)
}

/// The open files limit now, `None` for none (or unreadable).
fn nofile_limit() -> Option<usize> {
    #[cfg(unix)]
    {
        let mut l = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes the struct passed, nothing else.
        let ok = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) } == 0;
        (ok && l.rlim_cur != libc::RLIM_INFINITY)
            .then(|| usize::try_from(l.rlim_cur).unwrap_or(usize::MAX))
    }
    #[cfg(not(unix))]
    None
}

/// Follows the open files limit changed on the running process (`prlimit --pid`: an
/// operator who raises it at 3 a.m. should not need a restart for the connections it
/// makes room for); said when the accepted connections' cap moves. The metrics
/// server's share stays that of the start.
fn follow_open_files(shared: &Shared) {
    let room = nofile_limit().map_or(usize::MAX, tcp_room);
    let was = shared.tcp_room.swap(room, Ordering::Relaxed);
    if room != was {
        let max = shared.loaded.load().policy.proxy.max_tcp_connections;
        tracing::warn!(
            limit = nofile_limit().map_or("none".to_string(), |l| l.to_string()),
            max_tcp_connections = max,
            accepted_at_most = max.min(room),
            "the open files limit changed"
        );
    }
}

/// Runs the proxy until SIGTERM/SIGINT. Returns the process exit code.
pub fn run(args: RunArgs) -> i32 {
    // The steady clock starts at the calendar time now.
    crate::cli::steady_ms();
    signals::hold_sighup();
    let policy = match crate::cli::load_policy(args.config.as_deref()) {
        Ok(p) => p,
        Err(e) => {
            print_err!("sipfence: config refused: {e}");
            return 1;
        }
    };
    init_logging(&policy);
    tracing::info!(
        build = crate::VERSION,
        fingerprint = %policy.fingerprint(),
        "sipfence starting"
    );
    for w in lint::warnings(&policy) {
        tracing::warn!("{w}");
    }
    let (tcp_room, http_room) = open_files(policy.proxy.max_tcp_connections);
    let metrics = Arc::new(Metrics::new());
    let bound = metrics.bind(&policy);
    metrics.loaded_at.set(crate::cli::now_ms() as i64 / 1000);
    let records = match records::start(&policy.records, metrics.clone()) {
        Ok(r) => r,
        Err(e) => {
            print_err!("sipfence: records directory '{}': {e}", policy.records.dir);
            return 1;
        }
    };
    let hep = match HepMirror::start(&policy.hep, &metrics) {
        Ok(h) => h,
        Err(e) => {
            print_err!("sipfence: [hep]: {e}");
            return 1;
        }
    };
    let workers = args
        .workers
        .filter(|&w| w > 0)
        .unwrap_or(if policy.proxy.workers > 0 {
            policy.proxy.workers
        } else {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        });
    let listens = policy.listen_addrs();
    if listens.is_empty() {
        print_err!("sipfence: no trunk has a listen address; nothing to do");
        return 1;
    }
    for l in &listens {
        // Port 0 means "any": nothing to collide with.
        if l.addr.port() != 0
            && let Err(e) = probe_free(l)
        {
            // The likely cause, in the operator's words.
            let hint = match e.kind() {
                std::io::ErrorKind::AddrInUse => " (another sipfence or SIP server?)",
                std::io::ErrorKind::AddrNotAvailable => {
                    " (no interface of this host has that address: check `ip addr`)"
                }
                std::io::ErrorKind::PermissionDenied => {
                    " (a port below 1024 needs CAP_NET_BIND_SERVICE)"
                }
                _ => "",
            };
            print_err!("sipfence: cannot listen on {l}: {e}{hint}");
            return 1;
        }
    }
    let metrics_listen = policy.metrics.listen.clone();
    let (rates, cluster): (Arc<dyn RateCounter>, Option<Cluster>) = if policy.redis.url.is_empty() {
        (
            Arc::new(LocalRateCounter::new(policy.proxy.rate_keys)),
            None,
        )
    } else {
        let r = &policy.redis;
        let redis = match Redis::open(&r.url, &r.prefix, r.timeout_ms, r.list_timeout_ms) {
            Ok(x) => Arc::new(x),
            Err(e) => {
                print_err!("sipfence: [redis]: {e}");
                return 1;
            }
        };
        let instance = crate::cluster::instance_name(r);
        let counters = Arc::new(SharedRateCounter::new(policy.proxy.rate_keys, &instance));
        let c = Cluster {
            redis,
            instance,
            counters: counters.clone(),
            stream: std::sync::OnceLock::new(),
        };
        (counters, Some(c))
    };
    let mut start_only = StartOnly::of(&policy);
    start_only.workers_cli = args.workers.is_some_and(|w| w > 0);
    let named = wildcard_names(&policy);
    let shared = Arc::new(Shared {
        rates,
        cluster,
        lists: std::sync::Mutex::new(None),
        reloading: std::sync::Mutex::new(None),
        behaviour: {
            let t = LocalTracker::new(policy.behaviour.callers, policy.behaviour.calls)
                .keyed(policy.callee_key);
            // Taken now when it will be used, so that no call waits for it; a reload that
            // switches behaviour rules on allocates at its first call.
            if policy.behaviour_on {
                t.reserve();
            }
            t
        },
        loaded: ArcSwap::from_pointee(Loaded {
            policy,
            bound,
            version: 1,
        }),
        records,
        hep,
        tcp_conns: DashMap::with_hasher(ahash::RandomState::new()),
        tcp_peers: DashMap::with_hasher(ahash::RandomState::new()),
        tcp_out: DashMap::with_hasher(ahash::RandomState::new()),
        tcp_down: DashMap::with_hasher(ahash::RandomState::new()),
        next_conn: AtomicU64::new(1),
        unclaimed_tcp: std::sync::atomic::AtomicUsize::new(0),
        accepted_tcp: std::sync::atomic::AtomicUsize::new(0),
        tcp_room: std::sync::atomic::AtomicUsize::new(tcp_room),
        http_room,
        probes: probe::Probes::default(),
        config_path: args.config.clone(),
        start_only,
        named,
        started: Instant::now(),
        shed_at_ms: AtomicU64::new(0),
        draining: std::sync::atomic::AtomicBool::new(false),
        calls_handed_over: std::sync::atomic::AtomicBool::new(false),
        calls_field: std::sync::Mutex::new(None),
        calls_lock: std::sync::Mutex::new(None),
        msg_counters: [Transport::Udp, Transport::Tcp].map(|t| {
            ["request", "response"].map(|k| metrics.messages.with_label_values(&[t.as_str(), k]))
        }),
        metrics,
    });

    shared
        .metrics
        .tcp_connections_limit
        .set(shared.tcp_limit() as i64);
    restore_calls(&shared);
    restore_watched(&shared);
    // Bind everything before announcing: a port in use is a start-up error, not a log line.
    let mut per_worker = Vec::new();
    for _ in 0..workers {
        let mut socks = Vec::new();
        for l in &listens {
            let s = match l.transport {
                Transport::Udp => udp::bind(l.addr).map(Sock::Udp),
                Transport::Tcp => tcp::bind(l.addr).map(Sock::Tcp),
            };
            match s {
                Ok(s) => socks.push((*l, s)),
                Err(e) => {
                    print_err!("sipfence: cannot listen on {l}: {e}");
                    return 1;
                }
            }
        }
        per_worker.push(socks);
    }
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut threads = Vec::new();
    for (i, socks) in per_worker.into_iter().enumerate() {
        let shared = shared.clone();
        let stop = stop_rx.clone();
        let t = std::thread::Builder::new()
            .name(format!("sip-{i}"))
            .spawn(move || worker(shared, socks, stop, i == 0));
        match t {
            Ok(t) => threads.push(t),
            Err(e) => {
                print_err!("sipfence: cannot start worker: {e}");
                return 1;
            }
        }
    }

    // The control runtime: metrics HTTP, signals, housekeeping.
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            print_err!("sipfence: runtime: {e}");
            return 1;
        }
    };
    let code = rt.block_on(control(shared.clone(), metrics_listen, listens, workers));
    let _ = stop_tx.send(true);
    for t in threads {
        let _ = t.join();
    }
    code
}

/// SO_REUSEPORT lets a second process bind the same address silently and take part of
/// the traffic. A plain bind first proves the address is really free.
fn probe_free(l: &ListenSpec) -> std::io::Result<()> {
    match l.transport {
        Transport::Udp => std::net::UdpSocket::bind(l.addr).map(drop),
        Transport::Tcp => std::net::TcpListener::bind(l.addr).map(drop),
    }
}

enum Sock {
    Udp(std::net::UdpSocket),
    Tcp(std::net::TcpListener),
}

/// One receive loop's runtime; the first (`probes`) also sends the next hops' probes.
fn worker(
    shared: Arc<Shared>,
    socks: Vec<(ListenSpec, Sock)>,
    mut stop: watch::Receiver<bool>,
    probes: bool,
) {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "worker runtime");
            return;
        }
    };
    rt.block_on(async move {
        let mut udps: udp::UdpVec = Vec::new();
        let mut tcps = Vec::new();
        for (l, s) in socks {
            match s {
                Sock::Udp(u) => match tokio::net::UdpSocket::from_std(u) {
                    Ok(u) => {
                        // The bound port, should the listen address say 0 (any).
                        let port = u.local_addr().map_or(l.addr.port(), |b| b.port());
                        let on = |a: SocketAddr| SocketAddr::new(a.ip(), port);
                        let (a, also) = shared.names_at(l.addr);
                        udps.push((l, Arc::new(u), on(a), also.map(on)))
                    }
                    Err(e) => tracing::error!(error = %e, "udp socket"),
                },
                Sock::Tcp(t) => match tokio::net::TcpListener::from_std(t) {
                    Ok(t) => tcps.push((l, t)),
                    Err(e) => tracing::error!(error = %e, "tcp listener"),
                },
            }
        }
        let udps = Arc::new(udps);
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..udps.len() {
            tasks.spawn(udp::serve(shared.clone(), udps.clone(), i));
        }
        for (l, t) in tcps {
            tasks.spawn(tcp::serve(shared.clone(), udps.clone(), l, t));
        }
        if probes {
            tasks.spawn(probe::run(shared.clone(), udps.clone()));
        }
        let _ = stop.wait_for(|s| *s).await;
        tasks.abort_all();
    });
}

/// Starts the Redis side (`[redis]`) on the control runtime: the counter sync, the
/// list follower and the record stream.
fn start_cluster(shared: &Arc<Shared>) {
    let Some(c) = &shared.cluster else { return };
    shared.metrics.redis_configured();
    let conf = shared.loaded.load().policy.redis.clone();
    print_out!(
        "sipfence: shared state on {} as gateway '{}' (counters every {} ms{}{})",
        crate::cluster::url_for_people(&conf.url),
        c.instance,
        conf.sync_ms,
        if conf.lists { ", published lists" } else { "" },
        if conf.records_stream.is_empty() {
            String::new()
        } else {
            format!(", records to {}:{}", conf.prefix, conf.records_stream)
        }
    );
    let m = shared.metrics.clone();
    tokio::spawn(c.counters.clone().run(
        c.redis.clone(),
        std::time::Duration::from_millis(conf.sync_ms.max(10)),
        move |r| match r {
            Ok(s) => {
                m.redis_up.set(1);
                // A key Redis refuses is an error on that key, not Redis down.
                m.redis_errors
                    .with_label_values(&["counters"])
                    .inc_by(s.refused as u64);
            }
            Err(_) => {
                m.redis_up.set(0);
                m.redis_error("counters");
            }
        },
    ));
    tokio::spawn(share_calls(
        shared.clone(),
        std::time::Duration::from_millis(conf.sync_ms.max(10)),
    ));
    if conf.lists {
        tokio::spawn(follow_lists(
            shared.clone(),
            std::time::Duration::from_millis(conf.list_poll_ms.max(50)),
        ));
    }
    if !conf.records_stream.is_empty() {
        let st = crate::cluster::stream::RecordStream::start(
            c.redis.clone(),
            &conf.records_stream,
            conf.records_maxlen,
            c.instance.clone(),
        );
        let _ = c.stream.set(st);
    }
}

/// Publishes this gateway's calls up on every trunk with `max_concurrent_calls` and
/// learns the other gateways' (see [`crate::cluster::calls`]).
async fn share_calls(shared: Arc<Shared>, every: std::time::Duration) {
    let Some(c) = &shared.cluster else { return };
    let limited = || {
        if shared.calls_handed_over.load(Ordering::Relaxed) {
            return vec![];
        }
        shared
            .loaded
            .load()
            .policy
            .limited_trunks()
            .map(|(t, _)| (t.id, t.name.clone()))
            .collect()
    };
    let live = shared.behaviour.live();
    let on_error = || shared.metrics.redis_error("calls");
    // Per process, as the counters' fields are: two gateways on one host share the
    // host name, the default instance (QA 87 F3: one field for both, and each took the
    // other's calls for its own).
    let field = calls_field(&shared, c);
    crate::cluster::calls::run(&c.redis, &field, live, every, limited, on_error).await
}

/// The name this gateway's calls up have in Redis: the one a restart took over, else
/// this process's.
fn calls_field(shared: &Shared, c: &crate::cluster::Cluster) -> String {
    shared
        .calls_field
        .lock()
        .ok()
        .and_then(|f| f.clone())
        .unwrap_or_else(|| c.counters.field().to_string())
}

/// Polls for published lists and swaps each new version in (or refuses it).
async fn follow_lists(shared: Arc<Shared>, every: std::time::Duration) {
    let Some(c) = &shared.cluster else { return };
    // The set refused last, and the policy version it was refused on: a reload (the
    // files it broke on mended) tries it again (QA 55: it never was, and this gateway
    // kept the older set while the others ran the new one).
    let mut refused: Option<(crate::cluster::lists::Published, u64)> = None;
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Whether the running set's loss from Redis was told.
    let mut gone_told = false;
    // A set that did not arrive in time is fetched again after a wait that doubles, up
    // to five minutes: each try moves the whole set again (QA 184: a set longer in
    // transit than `list_timeout_ms` was sent again every poll, for good). Other
    // failures (Redis down) cost nothing to retry, and are retried every poll. The
    // publication late, its timeouts in a row, and when it is tried again: a newer
    // one is fetched at once (QA 186).
    let mut late: Option<(crate::cluster::lists::Published, u32, tokio::time::Instant)> = None;
    // The publication found without a set, once said (QA 188: said every poll).
    let mut missing: Option<crate::cluster::lists::Published> = None;
    loop {
        tick.tick().await;
        // Told by version and content: after Redis lost its data, a new v1 is not the
        // v1 running here.
        let running = shared.lists_running();
        let current = crate::cluster::lists::current(&c.redis).await;
        if let Ok(published) = &current {
            let v = published.map_or(0, |p| p.version);
            shared
                .metrics
                .list_version
                .with_label_values(&["published"])
                .set(v as i64);
            // The set running here is gone from Redis (flushed, restored without it): it
            // stays, but a gateway started now runs its files alone, and the fleet
            // splits (QA 87 F4: nothing said so).
            match (running, published) {
                (Some(r), None) if !gone_told => {
                    gone_told = true;
                    let said = format!(
                        "published lists v{} running here are gone from redis (flushed, or restored without them): kept; a gateway started now runs its list files alone: publish them again (a list cut by more than half against the set running here is refused here unless forced)",
                        r.version
                    );
                    tracing::warn!("{said}");
                    print_out!("sipfence: {said}");
                }
                (_, Some(_)) => gone_told = false,
                _ => {}
            }
        }
        let p = match current {
            Ok(Some(p))
                if Some(p) != running && refused != Some((p, shared.loaded.load().version)) =>
            {
                p
            }
            // Running what Redis holds: no refusal stands (QA 184: a set refused before
            // Redis lost its sets kept the gauge at 1 on a gateway running the set
            // published since, and its version could hide a newer one's).
            Ok(Some(p)) if Some(p) == running => {
                refused = None;
                shared.metrics.list_refused.set(0);
                shared
                    .metrics
                    .list_version
                    .with_label_values(&["refused"])
                    .set(0);
                continue;
            }
            Ok(_) => continue,
            Err(e) => {
                shared.metrics.redis_error("lists");
                tracing::debug!(error = %e, "list version poll");
                continue;
            }
        };
        let v = p.version;
        if running.is_some_and(|r| r.tag == p.tag && r.tag != 0) {
            shared.renumber_lists(p);
            tracing::info!(
                version = v,
                "published lists: the set running here, published again"
            );
            continue;
        }
        if late.is_some_and(|(l, _, at)| l == p && tokio::time::Instant::now() < at) {
            continue;
        }
        let lists = match crate::cluster::lists::fetch(&c.redis, v).await {
            Ok(l) => {
                late = None;
                l
            }
            Err(crate::cluster::RedisFailure::Timeout) => {
                shared.metrics.redis_error("lists");
                let failures = match late {
                    Some((l, n, _)) if l == p => n.saturating_add(1),
                    _ => 1,
                };
                let wait = (every * 2u32.saturating_pow(failures.min(16)))
                    .min(std::time::Duration::from_secs(300));
                late = Some((p, failures, tokio::time::Instant::now() + wait));
                tracing::warn!(
                    version = v,
                    again_in_s = wait.as_secs(),
                    "cannot fetch published lists: not arrived within [redis] list_timeout_ms = {} ms",
                    c.redis.bulk_timeout.as_millis()
                );
                continue;
            }
            Err(e) => {
                shared.metrics.redis_error("lists");
                late = None;
                tracing::warn!(error = %e, version = v, "cannot fetch published lists");
                continue;
            }
        };
        // A version `current` names with no set under it (trimmed, or written without
        // one): nothing to apply; left out, the lists would go back to the files at
        // every gateway (QA 186: refused as if the files were at fault).
        if lists.is_empty() {
            if missing != Some(p) {
                missing = Some(p);
                tracing::warn!(
                    version = v,
                    "published lists v{v}, named by lists:current, are not in redis: the running lists stay"
                );
            }
            continue;
        }
        // A version below the one running: not a new publication (a Redis that lost
        // its data numbers from v1 again, and that is taken as ever) but maybe an older
        // snapshot restored, which takes the last publication back on every gateway
        // (QA 90 N3: silently). Followed, as Redis is the source, when it is taken;
        // said then (QA 186: said before a refusal).
        let went_back = running.filter(|r| v < r.version).map(|r| {
            format!(
                "published lists in redis went back from v{} to v{v} (redis restored from an older snapshot, or flushed and published again): following them; publish again if the newer set should stay",
                r.version
            )
        });
        // Not known (Redis gone between the two reads): judged here, the safe side.
        let judged = crate::cluster::lists::judged(&c.redis, v, &lists)
            .await
            .unwrap_or(None);
        // Judged from the set running here, link by link, or this gateway runs its files
        // (QA 177 A: a gateway restarted, or a version behind, follows the fleet); not
        // after Redis lost the set running here, nor when this gateway was cut off
        // while it did (QA 181, QA 184). Not known (Redis gone between the reads):
        // judged here. Asked of a checked set alone: nothing else turns on it.
        let from_running = match running {
            _ if judged != Some(crate::cluster::lists::Judgement::Checked) => false,
            None => true,
            Some(r) => crate::cluster::lists::judged_from(&c.redis, v, r.tag)
                .await
                .unwrap_or(false),
        };
        let trust = crate::cluster::lists::Trust::of(judged, from_running);
        let s = shared.clone();
        let applied = tokio::task::spawn_blocking(move || s.apply_lists(p, lists, trust)).await;
        match applied {
            Ok(Ok(summary)) => {
                if let Some(said) = went_back {
                    tracing::warn!("{said}");
                    print_out!("sipfence: {said}");
                }
                tracing::info!("{summary}");
                print_out!("sipfence: {summary}");
            }
            Ok(Err(e)) => {
                refused = Some((p, shared.loaded.load().version));
                shared
                    .metrics
                    .list_version
                    .with_label_values(&["refused"])
                    .set(v as i64);
                shared.metrics.list_refused.set(1);
                tracing::error!(error = %e, version = v, "published lists refused; the running lists stay");
                print_out!("sipfence: published lists v{v} refused: {e}");
            }
            Err(_) => {}
        }
    }
}

async fn control(
    shared: Arc<Shared>,
    metrics_listen: String,
    listens: Vec<ListenSpec>,
    workers: usize,
) -> i32 {
    use crate::observability::http::{self, HttpState};
    use tokio::signal::unix::{SignalKind, signal};
    let st = Arc::new(HttpState {
        metrics: shared.metrics.clone(),
        ready: {
            let s = shared.clone();
            // Listening (the server starts after the sockets are bound) and not
            // shedding: a load balancer that reads this sends new calls elsewhere while
            // this gateway answers them 503, and back once it has kept up for a while.
            Box::new(move || {
                if s.draining.load(Ordering::Relaxed) {
                    return Err("draining: stopping, new calls are answered 503".into());
                }
                let shed = s.shed_at_ms.load(Ordering::Relaxed);
                let ago = crate::cli::steady_ms().saturating_sub(shed);
                if shed != 0 && ago < SHEDDING_MS {
                    Err(format!(
                        "shedding load: INVITEs answered 503 {:.1} s ago",
                        ago as f64 / 1000.0
                    ))
                } else {
                    Ok(())
                }
            })
        },
        reload: {
            let s = shared.clone();
            Box::new(move |force| s.reload_with(force))
        },
        version: {
            let s = shared.clone();
            Box::new(move || {
                let lists = match s.lists_version() {
                    Some(v) => format!(" lists=v{v}"),
                    None => String::new(),
                };
                let loaded = s.loaded.load();
                format!(
                    "policy=v{} fingerprint={} uptime={}s{lists} build={}",
                    loaded.version,
                    loaded.policy.fingerprint(),
                    s.started.elapsed().as_secs(),
                    crate::COMMIT
                )
            })
        },
        refresh: {
            let s = shared.clone();
            Box::new(move || {
                s.metrics.calls_up(
                    &s.loaded.load().policy,
                    &s.behaviour,
                    crate::cli::steady_ms(),
                );
                // As of the scrape, not the last tick: a flood that fills the table shows
                // at once.
                s.metrics.rate_keys.set(s.rates.keys() as i64);
                Metrics::catch_up(&s.metrics.rate_overflows, s.rates.overflowed());
            })
        },
    });
    {
        let l = shared.loaded.load();
        for ls in &listens {
            let trunks: Vec<&str> = l
                .policy
                .trunks
                .iter()
                .filter(|t| t.takes_at(ls))
                .map(|t| t.name.as_str())
                .collect();
            // What a wildcard address is given as, so that the operator sees it.
            let named = if ls.addr.ip().is_unspecified() {
                let (a, also) = shared.names_at(ls.addr);
                let also = also.map_or(String::new(), |b| {
                    format!(
                        " (and {} to IPv{} peers)",
                        b.ip(),
                        if b.is_ipv4() { 4 } else { 6 }
                    )
                });
                if a.ip().is_unspecified() {
                    "; no address found to give in Via: set [proxy] advertise".to_string()
                } else {
                    format!("; Via and Record-Route name {}{also}", a.ip())
                }
            } else {
                String::new()
            };
            print_out!(
                "sipfence: listening on {ls} (trunks: {}{named})",
                trunks.join(", ")
            );
        }
        for t in &l.policy.trunks {
            if let Some(n) = t.next_hop {
                print_out!(
                    "sipfence: trunk {} ({}) forwards to {n}",
                    t.name,
                    t.role.as_str()
                );
            }
        }
    }
    if !metrics_listen.is_empty() {
        match http::bind(&metrics_listen).await {
            Ok((l, a)) => {
                print_out!("sipfence: metrics on http://{a}/metrics");
                tokio::spawn(http::run(l, st.clone(), shared.http_room));
            }
            Err(e) => {
                print_err!("sipfence: cannot serve metrics on {metrics_listen}: {e}");
                return 1;
            }
        }
    }
    print_out!(
        "sipfence: {workers} worker(s), policy v1 from {}",
        shared.loaded.load().policy.source
    );
    start_cluster(&shared);
    let (Ok(mut hup), Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::hangup()),
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        print_err!("sipfence: cannot install signal handlers");
        return 1;
    };
    // The handler is in place: a reload asked for while starting is done now.
    signals::release_sighup();
    notify::notify(&format!(
        "READY=1\nSTATUS=serving, policy v{}",
        shared.loaded.load().version
    ));
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(10));
    let mut step_said = 0;
    loop {
        tokio::select! {
            _ = hup.recv() => {
                let s = shared.clone();
                let _ = tokio::task::spawn_blocking(move || s.reload()).await;
            }
            _ = term.recv() => {
                drain(&shared, &mut term, &mut int).await;
                break;
            }
            _ = int.recv() => break,
            _ = tick.tick() => {
                let now = crate::cli::steady_ms();
                let step = crate::cli::clock_step_ms();
                shared.metrics.clock_step.set(step as f64 / 1000.0);
                if let Some(c) = &shared.cluster {
                    let off = c.counters.clock_offset_ms.load(Ordering::Relaxed);
                    if off != i64::MIN {
                        shared.metrics.clock_offset.set(off as f64 / 1000.0);
                    }
                }
                if (step - step_said).abs() >= 1_000 {
                    tracing::warn!(
                        seconds = (step - step_said) as f64 / 1000.0,
                        since_start = step as f64 / 1000.0,
                        "the wall clock stepped: contracted hours, nonces and records follow it; the calls up, dialogs, rate windows and lockouts keep their own time, and so do the windows shared through Redis, which are that far off other gateways' until a restart"
                    );
                    step_said = step;
                }
                follow_open_files(&shared);
                shared.end_byes_behind_down_hops();
                shared.metrics.tcp_connections_limit.set(shared.tcp_limit() as i64);
                shared.rates.housekeep(now);
                shared.metrics.rate_keys.set(shared.rates.keys() as i64);
                if let Some(r) = shared.rates.recent() {
                    shared.metrics.call_state(r);
                }
                Metrics::catch_up(&shared.metrics.rate_overflows, shared.rates.overflowed());
                if shared.loaded.load().policy.behaviour_on {
                    shared.metrics.behaviour_stats(&shared.behaviour.stats(now));
                }
                if let Some(st) = shared.cluster.as_ref().and_then(|c| c.stream.get()) {
                    for (result, n) in [("written", &st.stats.written), ("dropped", &st.stats.dropped)] {
                        Metrics::catch_up(
                            &shared.metrics.redis_records.with_label_values(&[result]),
                            n.load(Ordering::Relaxed),
                        );
                    }
                    Metrics::catch_up(
                        &shared.metrics.redis_errors.with_label_values(&["records"]),
                        st.stats.errors.load(Ordering::Relaxed),
                    );
                }
            }
        }
    }
    tracing::info!("shutting down");
    notify::notify("STOPPING=1");
    save_calls(&shared).await;
    save_watched(&shared);
    // Every decision made is kept: the records queued are written before the exit.
    if let Some(r) = &shared.records
        && !r.finish(std::time::Duration::from_secs(5))
    {
        tracing::warn!("signaling records still queued at exit were not all written");
    }
    print_out!("sipfence: stopped");
    0
}

/// `[proxy] calls_file`: the calls up that the last stop wrote are counted again, each
/// to its deadline or its end (QA 132: a restarted gateway counted none of the calls
/// still up through it, and its trunks' caps let in as many again). The file is
/// removed once read: after a crash, calls long ended must not come back.
fn restore_calls(shared: &Shared) {
    let l = shared.loaded.load();
    let path = l.policy.proxy.calls_file.as_str();
    if path.is_empty() || !holds_calls_file(shared, path) {
        return;
    }
    // Said now, not at the stop, when it is too late (QA 134).
    let tmp = format!("{path}.tmp");
    if let Err(e) = std::fs::write(&tmp, "").and_then(|()| std::fs::remove_file(&tmp)) {
        tracing::warn!(file = path, error = %e, "cannot write beside the calls file: the calls up at the stop will not be kept for the next start");
    }
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
        Err(e) => {
            tracing::warn!(file = path, error = %e, "cannot read the calls up at the last stop: they are not counted");
            return;
        }
    };
    // Checked with the config too; a file put there since is left alone all the same.
    if crate::behaviour::live::foreign(text.as_bytes()) {
        tracing::error!(
            file = path,
            "[proxy] calls_file names a file that is not a calls file: it is left alone, and the calls up at the stop will not be kept"
        );
        return;
    }
    let limited: Vec<(u64, u32)> = l
        .policy
        .limited_trunks()
        .map(|(t, max)| (t.id, max))
        .collect();
    // A file an earlier version wrote holds no stop time: its own date stands in.
    let written = std::fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_millis() as u64);
    match shared
        .behaviour
        .live()
        .restore(&text, crate::cli::steady_ms(), written, &limited)
    {
        Ok(r) if r.back_ms > 0 => tracing::warn!(
            file = path,
            calls = r.counted,
            ended_meanwhile = r.ended,
            seconds_back = r.back_ms.div_ceil(1000),
            "the calls file's stop time is after now: the clock went back since the stop (read as a stop just now, its calls counted again)"
        ),
        // Dated after now: no age to tell (QA 150: "0 minutes ago" beside the text).
        Ok(r) if r.stale > 0 && r.ahead_ms > 0 => tracing::warn!(
            file = path,
            calls = r.stale,
            minutes_ahead = r.ahead_ms.div_ceil(60_000),
            "the calls file is dated after now (a clock set back, or a copy): its age cannot be told, and its calls are not counted"
        ),
        Ok(r) if r.stale > 0 => tracing::warn!(
            file = path,
            calls = r.stale,
            minutes_ago = r.age_ms.unwrap_or(0) / 60_000,
            "the calls file was written longer ago than a restart takes: its calls are not counted (the BYEs of those that ended meanwhile were never seen)"
        ),
        Ok(r) if r.left_out() > 0 => tracing::warn!(
            file = path,
            calls = r.counted,
            ended_meanwhile = r.ended,
            trunk_not_limited = r.unlimited,
            beyond_limits = r.beyond,
            "the calls up at the last stop are counted again, but not all of them"
        ),
        Ok(r) => tracing::info!(
            file = path,
            calls = r.counted,
            "the calls up at the last stop are counted again"
        ),
        Err((line, why)) => {
            tracing::warn!("{path}:{line}: {why}: the calls up at the last stop are not counted")
        }
    }
    // The name is taken over whether or not the calls were (QA 136).
    if let (Some(f), Ok(mut g)) = (
        crate::behaviour::live::field_in(&text),
        shared.calls_field.lock(),
    ) {
        *g = Some(f.to_string());
    }
    if let Err(e) = std::fs::remove_file(path) {
        tracing::warn!(file = path, error = %e, "cannot remove the calls file read at start: a later start would count its calls again");
    }
}

/// Writes `text` whole to a file beside `path` and renames it over `path`, so that a
/// stop cut short leaves the last file or the new one, never part of one; what was
/// written beside is removed when that fails.
fn write_whole(path: &str, text: &str) -> std::io::Result<()> {
    let tmp = format!("{path}.tmp");
    std::fs::write(&tmp, text)
        .and_then(|()| std::fs::rename(&tmp, path))
        .inspect_err(|_| {
            let _ = std::fs::remove_file(&tmp);
        })
}

/// Beside the calls file, `PATH.watched`: the callers a behaviour rule tripped, still
/// watched (refused) when the last process stopped ([`crate::behaviour::local::LocalTracker::save_watched`]).
fn watched_file(shared: &Shared) -> Option<String> {
    let l = shared.loaded.load();
    let path = l.policy.proxy.calls_file.as_str();
    (!path.is_empty() && l.policy.behaviour_on && holds_calls_file(shared, path))
        .then(|| format!("{path}.watched"))
}

/// The callers watched at the last stop are watched again to the end of their time
/// (QA 170: a restart let a caller refused as a fraud suspect call again at once). The
/// file stays: after a crash, its watches still in time still hold.
fn restore_watched(shared: &Shared) {
    let Some(path) = watched_file(shared) else {
        return;
    };
    let text = match std::fs::read(&path) {
        Ok(t) => String::from_utf8_lossy(&t).into_owned(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
        Err(e) => {
            tracing::warn!(file = path, error = %e, "cannot read the callers watched at the last stop: they are not watched");
            return;
        }
    };
    let max_watch_ms = shared
        .loaded
        .load()
        .policy
        .trunks
        .iter()
        .filter_map(|t| t.behaviour.as_ref())
        .map(|b| u64::from(b.watch_secs) * 1000)
        .max()
        .unwrap_or(0);
    match shared
        .behaviour
        .restore_watched(&text, crate::cli::steady_ms(), max_watch_ms)
    {
        Ok((n, bad)) => {
            for (line, why) in &bad {
                tracing::warn!("{path}:{line}: {why}: that line is left out");
            }
            tracing::info!(
                file = path,
                callers = n,
                "the callers watched at the last stop are watched again"
            )
        }
        Err((line, why)) => tracing::warn!(
            "{path}:{line}: {why}: the callers watched at the last stop are not watched"
        ),
    }
}

/// At a stop, the callers watched are written for the next start ([`restore_watched`]).
fn save_watched(shared: &Shared) {
    let Some(path) = watched_file(shared) else {
        return;
    };
    let (text, n) = shared
        .behaviour
        .save_watched(crate::cli::steady_ms(), crate::cli::now_ms());
    if let Err(e) = write_whole(&path, &text) {
        tracing::warn!(file = path, error = %e, "cannot write the callers watched: the next start watches none of them");
        return;
    }
    tracing::info!(
        file = path,
        callers = n,
        "callers watched written for the next start"
    );
}

/// Whether this process may read and write the calls file `path`: it holds a lock on
/// `PATH.lock` (taken at the first use of each path, kept while the process lives, let
/// go by the system when it ends, however it ends). Two gateways given one calls file
/// took each other's calls, which then ended where they were not counted, held to
/// their deadline (QA 135): the second is told, and keeps no calls across its
/// restarts. A lock file that cannot be made is no reason to refuse the file: reading
/// and writing it say what is wrong.
fn holds_calls_file(shared: &Shared, path: &str) -> bool {
    let Ok(mut held) = shared.calls_lock.lock() else {
        return true;
    };
    if held.as_ref().is_some_and(|(p, _)| p == path) {
        return true;
    }
    let lock = lock_name(path);
    let file = match std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock)
    {
        Ok(f) => f,
        Err(e) => {
            tracing::warn!(file = lock, error = %e, "cannot make the calls file's lock: another gateway given the same calls file would not be found");
            return true;
        }
    };
    match file.try_lock() {
        Ok(()) => {
            *held = Some((path.to_string(), file));
            true
        }
        Err(std::fs::TryLockError::WouldBlock) => {
            tracing::error!(
                file = path,
                "another running sipfence uses this calls file: this one neither reads nor writes it, and keeps no calls up across its restart (give each gateway its own calls_file)"
            );
            false
        }
        Err(std::fs::TryLockError::Error(e)) => {
            tracing::warn!(file = lock, error = %e, "cannot lock the calls file's lock: another gateway given the same calls file would not be found");
            true
        }
    }
}

/// `PATH.lock`, of `path` as the system resolves it: two gateways given one calls file
/// by different names (a symbolic link to it, even while the file is away between a
/// start and a stop, or to its directory, `..`) take the same lock (QA 140). A name
/// that cannot be resolved (its directory missing) is taken as written: reading and
/// writing the file say what is wrong.
fn lock_name(path: &str) -> String {
    let mut p = std::path::PathBuf::from(path);
    // Links followed by hand: `canonicalize` refuses one whose file is not there.
    for _ in 0..40 {
        let Ok(to) = std::fs::read_link(&p) else {
            break;
        };
        p = match p.parent() {
            Some(dir) if to.is_relative() => dir.join(to),
            _ => to,
        };
    }
    let dir = match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => std::path::Path::new("."),
    };
    match (std::fs::canonicalize(dir), p.file_name()) {
        (Ok(d), Some(name)) => format!("{}.lock", d.join(name).display()),
        _ => format!("{path}.lock"),
    }
}

/// At a stop, the calls up are written to `[proxy] calls_file` for the next start
/// ([`restore_calls`]): written whole to a file beside it, then renamed over it. With
/// `[redis]`, this process's counts are then handed over to the next process
/// ([`crate::cluster::calls::hand_over`]).
async fn save_calls(shared: &Shared) {
    let l = shared.loaded.load();
    let path = l.policy.proxy.calls_file.as_str();
    if path.is_empty() || !l.policy.tracks_calls || !holds_calls_file(shared, path) {
        return;
    }
    let field = shared.cluster.as_ref().map(|c| calls_field(shared, c));
    let (text, n) = shared.behaviour.live().save(
        crate::cli::steady_ms(),
        crate::cli::now_ms(),
        field.as_deref(),
    );
    if crate::behaviour::live::foreign_file(path) {
        tracing::error!(
            file = path,
            "[proxy] calls_file names a file that is not a calls file: not replaced, and the calls up are not kept for the next start"
        );
        return;
    }
    if let Err(e) = write_whole(path, &text) {
        if std::path::Path::new(path).exists() {
            // The start could not remove it (QA 137: the next start counted its calls
            // again, while this said none).
            tracing::warn!(file = path, error = %e, "cannot write the calls up: the next start counts the calls of the file the last start left there instead");
        } else {
            tracing::warn!(file = path, error = %e, "cannot write the calls up: the next start counts none of them");
        }
        return;
    }
    tracing::info!(
        file = path,
        calls = n,
        "calls up written for the next start"
    );
    let (Some(c), Some(field)) = (&shared.cluster, field) else {
        return;
    };
    shared.calls_handed_over.store(true, Ordering::Relaxed);
    let now = crate::cli::steady_ms();
    let live = shared.behaviour.live();
    let counts: Vec<(String, u32)> = l
        .policy
        .limited_trunks()
        .map(|(t, _)| (t.name.clone(), live.up_now(t.id, now)))
        .collect();
    let over = crate::cluster::calls::hand_over(&c.redis, &field, &counts);
    if let Err(e) = tokio::time::timeout(std::time::Duration::from_secs(1), over)
        .await
        .unwrap_or(Err(crate::cluster::RedisFailure::Timeout))
    {
        tracing::warn!(error = %e, "the hand-over of this gateway's calls in redis is not confirmed: if it did not happen, the other gateways stop counting them once stale, until this gateway is back");
    }
}

/// After SIGTERM, with `[proxy] drain_secs`: new calls are answered 503 (and
/// `/readyz` says not ready) for that long, so that callers and load balancers move
/// them to another gateway, while the calls under way get their answers, ACKs and BYEs
/// relayed; then, or at a second SIGTERM or SIGINT, the stop goes on (QA 118 F7: it
/// stopped within milliseconds, mid-transaction).
async fn drain(
    shared: &Shared,
    term: &mut tokio::signal::unix::Signal,
    int: &mut tokio::signal::unix::Signal,
) {
    let secs = shared.loaded.load().policy.proxy.drain_secs;
    if secs == 0 {
        return;
    }
    shared.draining.store(true, Ordering::Relaxed);
    notify::notify(&format!(
        "STOPPING=1\nSTATUS=draining: new calls answered 503 for {secs} s"
    ));
    tracing::info!(
        drain_secs = secs,
        "draining: new calls are answered 503 while the calls under way go on; SIGTERM again stops at once"
    );
    tokio::select! {
        _ = tokio::time::sleep(std::time::Duration::from_secs(secs)) => {}
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

/// Whether a log line guarded by `last` is due: at most one every ten seconds across
/// the workers, so that a flood of the same trouble does not flood the log.
fn say_every_10s(last: &std::sync::atomic::AtomicU64) -> bool {
    let now = crate::cli::steady_ms();
    let said = last.load(Ordering::Relaxed);
    now.saturating_sub(said) >= 10_000
        && last
            .compare_exchange(said, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
}

impl stateless::NextHops for Shared {
    fn some_down(&self) -> bool {
        self.metrics.next_hops_down.get() > 0
    }
    fn silent(&self, to: std::net::SocketAddr, transport: Transport) -> bool {
        self.probes.is_down(to, transport)
    }
    fn connection(&self, to: std::net::SocketAddr) -> Option<std::net::SocketAddr> {
        let mapped = match to.ip() {
            std::net::IpAddr::V4(v4) => {
                std::net::SocketAddr::new(v4.to_ipv6_mapped().into(), to.port())
            }
            std::net::IpAddr::V6(_) => to,
        };
        [to, mapped].into_iter().find(|a| {
            self.tcp_peers.contains_key(a) || self.tcp_out.iter().any(|e| e.key().0 == *a)
        })
    }
    fn refuses(
        &self,
        to: std::net::SocketAddr,
        local: std::net::SocketAddr,
    ) -> Option<&'static str> {
        if let Some(wanted) = self.tcp_down.get(&to) {
            wanted.store(crate::cli::steady_ms(), Ordering::Relaxed);
            return Some(stateless::NEXT_HOP_UNREACHABLE);
        }
        // Guards dropped before the next map is read.
        let id = tcp::connection_for(self, to, local)?;
        if self.tcp_conns.get(&id).is_none_or(|tx| tx.capacity() != 0) {
            return None;
        }
        // Not sent: counted with the other messages a full queue kept back, and said in
        // the log at most every 10 s (QA 79: only the records told it, as unreachable).
        self.metrics.dropped("tcp-backlog");
        static SAID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        if say_every_10s(&SAID) {
            tracing::warn!(addr = %to, "next hop reads slower than the requests come: its connection's queue is full, and new calls for it are answered 503 (Next hop congested)");
        }
        Some(stateless::NEXT_HOP_CONGESTED)
    }
}
