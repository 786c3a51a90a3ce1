//! OPTIONS probes of next hops (`[proxy] probe_secs`), as Kamailio's dispatcher pings
//! its destinations and an SBC its session agents. A UDP next hop that goes away just
//! stops answering: without probes its calls went on into the void, counted as
//! allowed, each caller waiting out its own timer (QA 118 F2), and nothing showed it. A
//! TCP one that goes away fails its connection, and its calls get 503 at once; but one
//! that hangs with its connection open (a stopped or wedged process, whose kernel still
//! holds the socket) fails nothing, and took calls into it as the UDP one did (QA 127
//! N6): it is probed over its connection.
//!
//! A next hop that has answered a probe and then leaves [`LOST`] in a row unanswered
//! is marked down (`sipfence_next_hops_down`, a log line): new calls for it are
//! answered 503 with Retry-After, so that callers try another route, while everything
//! else still goes (the calls up must end). Any answer, whatever its code, brings it
//! back, and so does a new connection to a TCP one (a restarted core). One that never
//! answered a probe (a core that ignores OPTIONS) is never marked down: its silence
//! says nothing, and refusing its calls would never end.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::Shared;
use super::stateless::{Dest, probe_request};
use super::udp::{self, Udps};
use crate::policy::config::{ListenSpec, Transport};

/// Probes unanswered in a row that mark a next hop down.
pub const LOST: u64 = 3;

/// A next hop as probes know it: its address (canonical: an IPv4 one seen through a
/// dual-stack socket is the same) and the transport trunks reach it by. A core's UDP
/// and TCP sides are two next hops: one trunk's TCP connection failing says nothing of
/// another trunk's UDP, and the UDP side must be probed on its own (QA 139: a UDP
/// trunk's calls went on into a stopped core whose TCP side was down).
pub type Key = (SocketAddr, Transport);

/// How much before its time a probe still goes: the rounds come every second, a few
/// milliseconds early or late, and a probe due at 1.999 s must not wait for the next
/// (QA 133: with `probe_secs = 2`, a probe every 2 or 3 s).
const EARLY_MS: u64 = 250;

/// What one next hop's probes have shown: the rule that marks it down, the same for
/// the live proxy and for replay reading the gateway's probes in a capture.
#[derive(Clone, Copy, Debug, Default)]
pub struct Watch {
    /// Probes sent since the last answer.
    unanswered: u64,
    answered_ever: bool,
}

impl Watch {
    /// A probe goes.
    pub fn sent(&mut self) {
        self.unanswered += 1;
    }

    /// Any answer to a probe, whatever its code.
    pub fn answered(&mut self) {
        self.unanswered = 0;
        self.answered_ever = true;
    }

    /// The probes left unanswered are forgotten (a new connection, a failed one): that
    /// it answered once is kept, so that a core that comes back hung is down again.
    pub fn afresh(&mut self) {
        self.unanswered = 0;
    }

    /// The next hop answered once, then left [`LOST`] in a row unanswered: down.
    pub fn lost(&self) -> bool {
        self.answered_ever && self.unanswered >= LOST
    }

    /// It has answered none of [`LOST`] or more: it may ignore OPTIONS, and its
    /// silence says nothing.
    pub fn silent(&self) -> bool {
        !self.answered_ever && self.unanswered >= LOST
    }
}

#[derive(Default)]
pub struct Probes {
    hops: Mutex<HashMap<Key, Hop>>,
    /// The next hops marked down: what a new call asks (after the gauge says some
    /// next hop is down, one atomic read).
    down: dashmap::DashMap<Key, (), ahash::RandomState>,
}

struct Hop {
    /// When the last probe went.
    sent_ms: u64,
    watch: Watch,
    /// Said once: this next hop answers no probe, so it is not watched.
    said_silent: bool,
}

impl Probes {
    pub fn is_down(&self, to: SocketAddr, transport: Transport) -> bool {
        !self.down.is_empty() && self.down.contains_key(&(crate::canonical(to), transport))
    }

    /// The next hops marked down.
    pub fn down_hops(&self) -> Vec<Key> {
        self.down.iter().map(|e| *e.key()).collect()
    }

    /// How many are marked down.
    pub fn down_count(&self) -> usize {
        self.down.len()
    }

    /// A new connection to the TCP next hop `to`, or one that failed (down by that,
    /// and counted so: not twice, QA 133): what its probes left unanswered is
    /// forgotten (the process that left them has gone, or it could not have been
    /// reached anew), and its mark with it; that it answered once is kept, so that a
    /// core that comes back hung is marked down again (QA 133). True when it was
    /// marked down.
    pub fn start_afresh(&self, to: SocketAddr) -> bool {
        let to = (crate::canonical(to), Transport::Tcp);
        if let Ok(mut hops) = self.hops.lock()
            && let Some(h) = hops.get_mut(&to)
        {
            h.watch.afresh();
        }
        self.down.remove(&to).is_some()
    }

    /// An answer to a probe, from `from` over `transport`. True when it brought a next
    /// hop back.
    pub fn answered(&self, from: SocketAddr, transport: Transport) -> bool {
        let from = (crate::canonical(from), transport);
        let Ok(mut hops) = self.hops.lock() else {
            return false;
        };
        let Some(h) = hops.get_mut(&from) else {
            return false;
        };
        h.watch.answered();
        if self.down.remove(&from).is_none() {
            return false;
        }
        tracing::warn!(next_hop = %from.0, transport = from.1.as_str(), "next hop answers its probes again: new calls go to it");
        true
    }

    /// One round at `now_ms` over the next hops of the running policy (`hops`, probed
    /// every `every_ms`; 0: none), but those `paused` (a TCP one whose connection
    /// failed, down by that): marks down those that left [`LOST`] probes unanswered,
    /// forgets those no trunk has any more, and returns those due for a probe now, each
    /// counted as sent.
    pub fn due(
        &self,
        hops: &[Key],
        paused: impl Fn(&Key) -> bool,
        every_ms: u64,
        now_ms: u64,
    ) -> Vec<Key> {
        let Ok(mut map) = self.hops.lock() else {
            return vec![];
        };
        let wanted = |a: &Key| every_ms > 0 && hops.contains(a);
        map.retain(|a, _| {
            let keep = wanted(a);
            if !keep {
                self.down.remove(a);
            }
            keep
        });
        let mut due = vec![];
        for &a in hops.iter().filter(|a| wanted(a)) {
            let h = map.entry(a).or_insert(Hop {
                sent_ms: 0,
                watch: Watch::default(),
                said_silent: false,
            });
            if paused(&a) {
                h.watch.afresh();
                self.down.remove(&a);
                continue;
            }
            if now_ms.saturating_sub(h.sent_ms) + EARLY_MS < every_ms {
                continue;
            }
            if h.watch.lost() && !self.down.contains_key(&a) {
                self.down.insert(a, ());
                tracing::warn!(next_hop = %a.0, transport = a.1.as_str(), probes = h.watch.unanswered, "next hop answers no probe: marked down, its new calls are answered 503 until it answers again");
            } else if h.watch.silent() && !h.said_silent {
                h.said_silent = true;
                tracing::warn!(next_hop = %a.0, transport = a.1.as_str(), "next hop has answered none of its OPTIONS probes: it is not watched (it may ignore OPTIONS); probes go on");
            }
            h.sent_ms = now_ms;
            h.watch.sent();
            due.push(a);
        }
        due
    }
}

/// A next hop of the running policy to probe.
struct NextHop {
    /// As the policy writes it (what its TCP connections are kept under) ...
    addr: SocketAddr,
    /// ... and as probes know it.
    key: SocketAddr,
    transport: Transport,
    /// A listen address of its trunk to probe it from (the first trunk's that names
    /// it, of the next hop's transport first).
    from: Option<ListenSpec>,
}

/// The next hops of the running policy, each once per transport.
fn next_hops(shared: &Shared) -> Vec<NextHop> {
    let l = shared.loaded.load();
    let mut out: Vec<NextHop> = vec![];
    for t in &l.policy.trunks {
        let Some(n) = t.next_hop else { continue };
        let key = crate::canonical(n.addr);
        if out
            .iter()
            .any(|o| o.key == key && o.transport == n.transport)
        {
            continue;
        }
        let from = t
            .listen
            .iter()
            .find(|l| l.transport == n.transport)
            .or_else(|| match n.transport {
                Transport::Udp => None,
                Transport::Tcp => t.listen.first(),
            });
        out.push(NextHop {
            addr: n.addr,
            key,
            transport: n.transport,
            from: from.copied(),
        });
    }
    out
}

/// Sends the probes: a UDP one from one worker's sockets (answers come to whichever
/// worker the kernel gives them), a TCP one over the connection every request for that
/// next hop takes (opened if none is); each answer is reported through
/// [`Probes::answered`].
pub async fn run(shared: Arc<Shared>, udps: Udps) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let (mut n, mut out) = (0u64, Vec::with_capacity(512));
    loop {
        tick.tick().await;
        let every_ms = shared.loaded.load().policy.proxy.probe_secs * 1000;
        let hops = next_hops(&shared);
        // A TCP next hop whose connection fails is down by that, and retried every
        // second: probes wait for a connection, and start afresh on it.
        let keys: Vec<Key> = hops.iter().map(|h| (h.key, h.transport)).collect();
        let paused = |k: &Key| {
            hops.iter().any(|h| {
                (h.key, h.transport) == *k
                    && h.transport == Transport::Tcp
                    && shared.tcp_down.contains_key(&h.addr)
            })
        };
        let now = crate::cli::steady_ms();
        let due = shared.probes.due(&keys, paused, every_ms, now);
        shared.count_next_hops_down();
        for k in due {
            let Some(h) = hops.iter().find(|h| (h.key, h.transport) == k) else {
                continue;
            };
            let to = h.key;
            n += 1;
            out.clear();
            if h.transport == Transport::Tcp {
                let Some(local) = h.from.or_else(|| shared.start_only.listen.first().copied())
                else {
                    continue;
                };
                // A worker without UDP sockets forwards over TCP alone, as a
                // connection's reader does.
                let from = udp::forwarder(&udps, &local).unwrap_or(usize::MAX);
                let via =
                    super::stateless::via_for(super::tcp::vias(&shared, &udps, from, local), to);
                probe_request(to, Transport::Tcp, via, n, &mut out);
                super::tcp::send_to_peer(&shared, &udps, from, local, h.addr, &out);
                continue;
            }
            let from = match h.from {
                Some(l) => udp::forwarder(&udps, &l),
                None => (!udps.is_empty()).then_some(0),
            };
            let Some(from) = from else { continue };
            let Some((j, _)) = udp::sender(&udps, from, to) else {
                continue;
            };
            probe_request(to, Transport::Udp, udps[j].2, n, &mut out);
            let local = h.from.unwrap_or(udps[from].0);
            udp::send(&shared, &udps, from, local, Dest::Udp(to), &out).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Marked down after [`LOST`] unanswered probes, back at the first answer; one
    /// that never answered is never down; one no trunk has any more is forgotten.
    #[test]
    fn a_next_hop_is_down_after_three_lost_probes_and_up_at_an_answer() {
        let p = Probes::default();
        let (core, mute): (Key, Key) = (
            ("10.0.0.5:5060".parse().unwrap(), Transport::Udp),
            ("10.0.0.6:5060".parse().unwrap(), Transport::Udp),
        );
        let hops = [core, mute];
        let every = 10_000;
        let mut t = 1_000_000;
        assert_eq!(p.due(&hops, |_| false, every, t), hops);
        // Not due again before `every`.
        assert!(p.due(&hops, |_| false, every, t + 5_000).is_empty());
        assert!(!p.answered(core.0, core.1));
        for _ in 0..LOST {
            t += every;
            assert_eq!(p.due(&hops, |_| false, every, t), hops);
            assert!(!p.is_down(core.0, core.1) && !p.is_down(mute.0, mute.1));
        }
        t += every;
        p.due(&hops, |_| false, every, t);
        assert!(
            p.is_down(core.0, core.1),
            "three probes lost after an answer"
        );
        assert!(!p.is_down(mute.0, mute.1), "never answered: not watched");
        assert_eq!(p.down_count(), 1);
        // An IPv4 answer seen on a dual-stack socket is the same next hop.
        assert!(p.answered("[::ffff:10.0.0.5]:5060".parse().unwrap(), Transport::Udp));
        assert!(!p.is_down(core.0, core.1));
        assert_eq!(p.down_count(), 0);
        // Down again, then gone from the policy (or probes turned off): forgotten.
        for _ in 0..=LOST {
            t += every;
            p.due(&hops, |_| false, every, t);
        }
        assert!(p.is_down(core.0, core.1));
        assert!(p.due(&hops, |_| false, 0, t + every).is_empty());
        assert!(!p.is_down(core.0, core.1));
        assert_eq!(p.down_count(), 0);
    }

    /// A TCP next hop connected anew, or whose connection fails, starts its count
    /// afresh and loses its mark (down by its connection, it is not counted twice);
    /// paused while its connection fails; and, having answered once, it is marked down
    /// again when the new process hangs too (QA 133). A round a few milliseconds early
    /// still sends the probe due.
    #[test]
    fn a_reconnected_next_hop_is_watched_as_before() {
        let p = Probes::default();
        let core: Key = ("10.0.0.5:5060".parse().unwrap(), Transport::Tcp);
        let (every, mut t) = (2_000, 1_000_000);
        assert_eq!(p.due(&[core], |_| false, every, t), [core]);
        p.answered(core.0, core.1);
        for _ in 0..=LOST {
            t += every - 3;
            assert_eq!(p.due(&[core], |_| false, every, t), [core], "early by 3 ms");
        }
        assert!(p.is_down(core.0, core.1));
        // Its connection fails: paused, not marked down by its probes meanwhile.
        assert!(p.start_afresh(core.0));
        assert!(!p.is_down(core.0, core.1));
        for _ in 0..=LOST {
            t += every;
            assert!(p.due(&[core], |_| true, every, t).is_empty());
        }
        assert!(!p.is_down(core.0, core.1));
        // Connected anew, and hung: down again after three unanswered.
        assert!(!p.start_afresh(core.0));
        for _ in 0..=LOST {
            t += every;
            assert!(!p.is_down(core.0, core.1));
            p.due(&[core], |_| false, every, t);
        }
        assert!(
            p.is_down(core.0, core.1),
            "answered before the restart: watched"
        );
    }
}
