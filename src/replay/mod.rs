//! `sipfence replay`: yesterday's capture through today's policy. Every SIP message
//! found in the capture goes through the same [`decide`] as the live proxy, with the
//! capture's own timestamps as the clock, so rate and hour rules behave as they would
//! have. Each packet is mapped to a trunk by its source and destination address as
//! the proxy would map it (or forced with `--trunk`).

pub mod capture;
pub mod compare;
pub mod net;
pub mod pcapout;
pub mod sctp;
pub mod websocket;

use bytes::Bytes;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::behaviour::{self, local::LocalTracker};
use crate::decide::{self, Context, Kind, judge};
use crate::policy::Policy;
use crate::policy::config::ListenSpec;
use crate::policy::rate::LocalRateCounter;
use crate::proxy::stateless::GATEWAY_STATE;
use crate::record::Record;
use crate::sip::Message;
use crate::time::rfc3339;
use capture::{End, Packet};
use net::{Decoder, TcpFlows};
use pcapout::PcapWriter;

/// Calls remembered to classify their later messages (responses, ACK, BYE) when
/// splitting a capture; the map is cleared when full, so memory stays bounded.
const MAX_CALLS_TRACKED: usize = 1_000_000;

#[derive(Default, Debug, Clone)]
pub struct Summary {
    pub packets: u64,
    /// Split outputs: packets of messages never completed (a stream cut off, a datagram
    /// missing fragments), which neither file took.
    pub split_unplaced: u64,
    pub sip_messages: u64,
    /// Datagrams with no SIP message in them (RTP, DNS, keep-alives, other traffic; garbage, which
    /// the proxy counts as malformed), a HEP copy of one included (QA 146: they were
    /// in no count).
    pub not_sip_datagrams: u64,
    pub parse_errors: u64,
    /// Of those, the ones that did not start as a response (QA 130: a peer's malformed
    /// request and the 400 the gateway answered it with, repeating its bad header, are
    /// two; the count alone did not say how many requests the capture held).
    pub parse_errors_requests: u64,
    pub calls: u64,
    /// INVITEs sent again within their transaction's lifetime (RFC 3261 17.1.1.2: the
    /// UDP client's timer A): judged again, as the proxy judges them, but not new calls.
    pub retransmissions: u64,
    /// Retries of calls the core asked to send again (its 401/407, 422...) that went on:
    /// the same calls, counted once, as the proxy's metrics count them.
    pub core_retries: u64,
    pub by_verdict: BTreeMap<&'static str, u64>,
    pub by_rule: BTreeMap<&'static str, u64>,
    /// Calls per trunk (`none`: no trunk claims the source) and verdict: which trunk a
    /// policy change hits (QA 168: the per-call lines had to be added up).
    pub by_trunk: BTreeMap<String, BTreeMap<&'static str, u64>>,
    /// Call outcomes the behaviour rules learnt from (answered, ring-once...).
    pub behaviour: BTreeMap<&'static str, u64>,
    pub damaged: Vec<String>,
    /// Calls the capture shows sipfence answering 503 for its state then (a next hop
    /// down or congested, stopping, overloaded: [`GATEWAY_STATE`]), not for its policy:
    /// a replay judges them by the policy alone. The first Call-IDs, for the operator.
    pub gateway_state: u64,
    pub gateway_state_calls: Vec<String>,
    /// Calls that went to no listen address of the policy: a capture taken at another
    /// address than the policy names (QA 123: its calls all read as unknown-source,
    /// and the gateway's own output as calls, with nothing said), or of other hosts.
    pub calls_elsewhere: u64,
    /// Capture time of the first packet whose SIP may be lost (cut by the snaplen, a
    /// TCP hole, a datagram missing fragments): the counted rules' verdicts after it
    /// may differ from the gateway's, which saw what the capture lost (QA 168).
    pub first_loss_ms: Option<u64>,
    /// The capture's first packet, when its first minute shows it started mid-traffic
    /// (a TCP stream joined after its start): the counted rules' verdicts in their
    /// window after it may be milder than the gateway's, which counted the calls before.
    pub started_mid_ms: Option<u64>,
    /// Calls judged after it on a trunk whose verdicts count earlier calls (rate
    /// limits, concurrent calls, behaviour rules): each record says so (`after_loss`).
    pub calls_after_loss: u64,
}

/// Call-IDs listed in the summary of calls answered for the gateway's state.
const GATEWAY_STATE_SHOWN: usize = 10;

/// The replay engine, reusable by tests: feed it files, collect records.
pub struct Replayer<'p> {
    policy: &'p Policy,
    trunk: Option<usize>,
    rates: LocalRateCounter,
    behaviour: LocalTracker,
    decoder: Decoder,
    flows: TcpFlows,
    /// Call-ID hash -> rejected, kept only when the capture is being split.
    verdicts: HashMap<u64, bool, ahash::RandomState>,
    /// Responses a trunk's side sent sipfence ([`relay_key`]): the copy the capture then
    /// shows sipfence relaying is the trunk's, no answer of the core's.
    trunk_answers: std::collections::HashSet<u64, ahash::RandomState>,
    /// Calls counted in [`Summary::gateway_state`] (an INVITE retransmitted gets its
    /// 503 again).
    state_answered: std::collections::HashSet<u64, ahash::RandomState>,
    /// The gateway's probes of its next hops as the capture shows them, and whether
    /// they mark it down ([`crate::proxy::probe::Watch`]'s rule).
    probes:
        HashMap<crate::proxy::probe::Key, (crate::proxy::probe::Watch, bool), ahash::RandomState>,
    /// Capture time of the last housekeeping of the counters (every 10 s, as the
    /// proxy's tick).
    housekept_ms: u64,
    /// Capture time TCP holes were last looked at.
    holes_checked_ms: u64,
    /// Capture time of the last packet.
    last_ts_ms: u64,
    /// The network layer's [`net::NetStats::losses`] when last looked at.
    losses_seen: u64,
    /// The capture's first packet's time.
    first_ts_ms: Option<u64>,
    /// Split outputs: the packets of each stream or fragmented datagram since its last
    /// complete message ([`net::unit_key`]), and what is ready to be written (the
    /// packet, to blocked, to allowed).
    held: HashMap<u64, Vec<HeldPacket>, ahash::RandomState>,
    held_bytes: usize,
    ready: Vec<(HeldPacket, (bool, bool))>,
    pub summary: Summary,
}

/// What became of one packet's messages.
#[derive(Default)]
struct PacketOutcome {
    sip: bool,
    blocked: bool,
    /// A message it carried (or completed) was let through: a packet can carry both.
    allowed: bool,
    /// Kept with the other packets of its stream or datagram, which go to the split
    /// outputs together once the messages they carry are judged.
    held: bool,
}

impl PacketOutcome {
    /// The split outputs its packet goes to: (blocked, allowed). A SIP packet none of
    /// whose messages was judged blocked (an unparsable one, say) goes with the allowed.
    fn files(&self) -> (bool, bool) {
        (self.blocked, self.allowed || !self.blocked)
    }
}

/// A packet kept for the split outputs until the messages it carries are judged.
struct HeldPacket {
    linktype: i32,
    ts_sec: u32,
    ts_usec: u32,
    data: Vec<u8>,
    orig_len: u32,
    /// Already written to the blocked / allowed file (with an earlier message it
    /// carried the end of): not written there twice.
    in_blocked: bool,
    in_allowed: bool,
}

impl HeldPacket {
    fn packet(&self) -> Packet<'_> {
        Packet {
            ts_ms: u64::from(self.ts_sec) * 1000 + u64::from(self.ts_usec / 1000),
            ts_sec: self.ts_sec,
            ts_usec: self.ts_usec,
            linktype: self.linktype,
            data: &self.data,
            orig_len: self.orig_len,
        }
    }
}

/// Bytes of packets held for the split outputs, at most: past it, the oldest streams'
/// packets are let go (counted).
const MAX_HELD_BYTES: usize = 64 << 20;

impl<'p> Replayer<'p> {
    /// What the link, IP and TCP layers met (frames not IP, tunnels, fragments, gaps).
    /// What the network layer counted; datagrams still waiting for fragments count as
    /// expired (the capture will not bring the rest).
    pub fn net_stats(&self) -> net::NetStats {
        let mut s = self.decoder.stats;
        s.fragments_expired += self.decoder.incomplete_fragments() as u64;
        s
    }

    pub fn new(policy: &'p Policy, trunk: Option<usize>) -> Replayer<'p> {
        Replayer::keyed(policy, trunk, policy.callee_key)
    }

    /// A replayer whose behaviour tables hash callees under `key`.
    pub fn keyed(policy: &'p Policy, trunk: Option<usize>, key: u64) -> Replayer<'p> {
        Replayer {
            policy,
            trunk,
            rates: LocalRateCounter::new(policy.proxy.rate_keys),
            behaviour: LocalTracker::new(policy.behaviour.callers, policy.behaviour.calls)
                .keyed(key),
            decoder: Decoder::default(),
            flows: TcpFlows::default(),
            verdicts: HashMap::with_hasher(ahash::RandomState::new()),
            trunk_answers: Default::default(),
            state_answered: Default::default(),
            probes: Default::default(),
            housekept_ms: 0,
            holes_checked_ms: 0,
            last_ts_ms: 0,
            losses_seen: 0,
            first_ts_ms: None,
            held: HashMap::with_hasher(ahash::RandomState::new()),
            held_bytes: 0,
            ready: vec![],
            summary: Summary::default(),
        }
    }

    /// Replays one file; `on_record` gets every decision on a request.
    pub fn file(
        &mut self,
        path: &Path,
        out: &mut Outputs,
        on_record: &mut dyn FnMut(Record),
    ) -> Result<End, String> {
        let name = capture::display_name(path);
        self.stream(capture::open(path)?, &name, out, on_record)
    }

    /// Replays a capture from any byte source (`name` is for messages).
    pub fn stream<R: std::io::Read + Send>(
        &mut self,
        src: R,
        name: &str,
        out: &mut Outputs,
        on_record: &mut dyn FnMut(Record),
    ) -> Result<End, String> {
        let started = Instant::now();
        let mut last_note = Instant::now();
        let want_split = out.blocked.is_some() || out.allowed.is_some();
        // Files are one capture read in the order given (a rotated capture's pieces),
        // not merged by time: one that starts before the last ended was taken elsewhere
        // at the same time, and its calls meet the other file's out of order.
        let mut before = (self.summary.packets > 0).then_some(self.last_ts_ms);
        let packets_before = self.summary.packets;
        // Within a file, times that go back (pieces concatenated, not merged; a clock
        // stepped back where it was taken) are judged as if the clock went back: said,
        // as a file that starts early is (QA 192 F8: nothing was).
        let (mut last_in_file, mut went_back, mut furthest) = (None::<u64>, 0u64, 0u64);
        let end = capture::read_from(src, |p| {
            if let Some(prev) = before.take()
                && p.ts_ms + 1_000 < prev
            {
                eprintln!(
                    "sipfence: {name} starts {:.1} s before the previous capture ends: files are read one after the other, not merged by time (merge captures taken at the same time first: mergecap -w all.pcapng A B)",
                    (prev - p.ts_ms) as f64 / 1000.0
                );
            }
            if let Some(prev) = last_in_file
                && p.ts_ms + 1_000 < prev
            {
                went_back += 1;
                furthest = furthest.max(prev - p.ts_ms);
                if went_back == 1 {
                    eprintln!(
                        "sipfence: {name}: packet {} is {:.1} s before the one before it: the capture's times go back, and its calls are judged at their packets' times, rate windows and contracted hours as if the clock went back (pieces concatenated rather than merged? sort it first: reordercap IN OUT)",
                        self.summary.packets - packets_before + 1,
                        (prev - p.ts_ms) as f64 / 1000.0
                    );
                }
            }
            last_in_file = Some(p.ts_ms);
            self.summary.packets += 1;
            let o = self.packet(p, want_split, on_record);
            if o.sip && !o.held {
                write_split(out, p, o.files());
            }
            for (h, files) in self.ready.drain(..) {
                write_split(out, &h.packet(), files);
            }
            if self.summary.packets.is_multiple_of(65_536) && last_note.elapsed().as_secs() >= 2 {
                last_note = Instant::now();
                eprintln!(
                    "replay: {name}: {} packets, {} SIP messages, {} calls ({:.0} packets/s)",
                    self.summary.packets,
                    self.summary.sip_messages,
                    self.summary.calls,
                    self.summary.packets as f64 / started.elapsed().as_secs_f64().max(1e-3)
                );
            }
        })?;
        if went_back > 1 {
            eprintln!(
                "sipfence: {name}: the times went back {went_back} times in all, {:.1} s at most",
                furthest as f64 / 1000.0
            );
        }
        // The capture's end: messages still waiting behind a TCP hole are read now.
        let segments = self.flows.finish(&mut self.decoder.stats);
        self.messages_apart(segments, self.last_ts_ms, want_split, on_record);
        for (h, files) in self.ready.drain(..) {
            write_split(out, &h.packet(), files);
        }
        // Packets of messages never completed go nowhere: said in the summary.
        self.let_go_all();
        if let End::Damaged { offset, reason } = &end {
            self.summary.damaged.push(format!(
                "{name}: {reason} at byte {offset}; the {} packets of this file before it were replayed",
                self.summary.packets - packets_before
            ));
        }
        Ok(end)
    }

    fn packet(
        &mut self,
        p: &Packet<'_>,
        out_wanted: bool,
        on_record: &mut dyn FnMut(Record),
    ) -> PacketOutcome {
        let mut o = PacketOutcome::default();
        self.last_ts_ms = p.ts_ms;
        let first = *self.first_ts_ms.get_or_insert(p.ts_ms);
        if p.ts_ms.abs_diff(self.housekept_ms) >= 10_000 {
            use crate::policy::rate::RateCounter;
            self.rates.housekeep(p.ts_ms);
            self.housekept_ms = p.ts_ms;
        }
        if p.ts_ms.saturating_sub(self.holes_checked_ms) >= 1_000 {
            // Holes given up by the capture's clock: what waited behind them is judged
            // now, at its own times (not the packet's: it is not in the split outputs).
            let segments = self.flows.expire(p.ts_ms, &mut self.decoder.stats);
            // Datagrams past their reassembly time too, as the kernel lets them go: a
            // lost fragment is known then, not only at the capture's end.
            if self.decoder.incomplete_fragments() > 0 {
                self.decoder.expire_fragments(p.ts_ms);
                // For the marks, a datagram a second short of a fragment is lost
                // already: its reassembly time (30 s) would leave the calls of those
                // seconds unmarked.
                if self.decoder.fragments_waiting(p.ts_ms, 1_000) {
                    self.summary.first_loss_ms.get_or_insert(p.ts_ms);
                }
            }
            self.note_losses(p.ts_ms);
            self.messages_apart(segments, p.ts_ms, out_wanted, on_record);
            self.holes_checked_ms = p.ts_ms;
        }
        let cut = p.data.len() < p.orig_len as usize;
        if cut {
            self.decoder.stats.snaplen_cut += 1;
        }
        let errors = self.summary.parse_errors;
        let Some(seg) = self.decoder.decode(p.linktype, p.data, p.ts_ms) else {
            // A fragment of a datagram not yet whole: kept with its other fragments.
            if out_wanted && let Some(u) = self.decoder.fragment_of {
                self.hold(u, p, (false, false));
                o.held = true;
            }
            return o;
        };
        // The stream or fragmented datagram this packet is one of, if any: its packets
        // go to the split outputs together, with the messages they carry.
        let (src, dst) = (seg.src, seg.dst);
        let stream = matches!(seg.payload, net::Payload::Stream(..));
        let unit = match (out_wanted, stream) {
            (false, _) => None,
            (true, true) => Some(net::unit_key(1, &(src, dst))),
            (true, false) => self.decoder.fragment_of,
        };
        if let Some(u) = unit {
            self.hold(u, p, (false, false));
            o.held = true;
        }
        // A TCP segment gives what it completes: messages of the stream, or the messages
        // HEP packets in it carry (each with its own addresses).
        let segments = match seg.payload {
            net::Payload::Stream(bytes, meta) => {
                self.flows
                    .feed(seg.src, seg.dst, &bytes, meta, &mut self.decoder.stats)
            }
            payload => vec![net::Segment { payload, ..seg }],
        };
        // Before the messages: those behind a TCP hole come after a loss.
        self.note_losses(p.ts_ms);
        if self.decoder.stats.tcp_joined > 0
            && self.summary.started_mid_ms.is_none()
            && p.ts_ms.saturating_sub(first) < 60_000
        {
            self.summary.started_mid_ms = Some(first);
        } else if self.decoder.stats.tcp_joined == 0 {
            // Every join undone by its SYN, recorded after the stream's first data (a
            // reordered capture): no start mid-traffic. A call judged before the SYN
            // keeps its mark.
            self.summary.started_mid_ms = None;
        }
        self.messages(segments, p.ts_ms, out_wanted, on_record, &mut o);
        // A packet cut short that held SIP lost its message's end (it is unparsable,
        // or judged without its body); one that held RTP lost nothing of the calls.
        if cut && (o.sip || self.summary.parse_errors > errors) {
            self.summary.first_loss_ms.get_or_insert(p.ts_ms);
        }
        if let Some(u) = unit {
            if o.sip {
                self.release(u, o.files());
            }
            // A whole datagram is done with; a stream may hold the start of a message.
            let holds = if stream {
                self.flows.holds(src, dst)
            } else {
                Some(false)
            };
            match holds {
                // The packet may also carry the start of the stream's next message.
                Some(true) if o.sip => self.hold(u, p, o.files()),
                Some(true) => {}
                // Nothing waits: what is held carried no SIP (keep-alives, another
                // protocol's datagram or stream).
                Some(false) => self.let_go(u, false),
                // The stream ended (FIN, RST) with a message unfinished: nowhere to go.
                None => self.let_go(u, true),
            }
        }
        o
    }

    /// Notes the first loss the network layer has counted by capture time `ts_ms`.
    fn note_losses(&mut self, ts_ms: u64) {
        let n = self.decoder.stats.losses();
        if n > self.losses_seen {
            self.losses_seen = n;
            self.summary.first_loss_ms.get_or_insert(ts_ms);
        }
    }

    /// Keeps a copy of packet `p` with the others of its stream or datagram `u`;
    /// `written`: the files (blocked, allowed) it is already in.
    fn hold(&mut self, u: u64, p: &Packet<'_>, written: (bool, bool)) {
        if self.held_bytes + p.data.len() > MAX_HELD_BYTES {
            // Streams that never complete a message must not grow memory: let go.
            self.let_go_all();
        }
        self.held_bytes += p.data.len();
        self.held.entry(u).or_default().push(HeldPacket {
            linktype: p.linktype,
            ts_sec: p.ts_sec,
            ts_usec: p.ts_usec,
            data: p.data.to_vec(),
            orig_len: p.orig_len,
            in_blocked: written.0,
            in_allowed: written.1,
        });
    }

    /// The packets held for `u` go to the split outputs as the messages they carried
    /// were judged.
    fn release(&mut self, u: u64, (blocked, allowed): (bool, bool)) {
        if let Some(v) = self.held.remove(&u) {
            self.held_bytes -= v.iter().map(|h| h.data.len()).sum::<usize>();
            self.ready.extend(v.into_iter().map(|h| {
                let files = (blocked && !h.in_blocked, allowed && !h.in_allowed);
                (h, files)
            }));
        }
    }

    /// Lets every held packet go, counted: parts of messages never completed.
    fn let_go_all(&mut self) {
        self.summary.split_unplaced += self.held.values().map(|v| v.len() as u64).sum::<u64>();
        self.held.clear();
        self.held_bytes = 0;
    }

    /// Lets the packets held for `u` go unwritten; `unplaced`: they carried part of a
    /// message never completed (counted), rather than nothing SIP at all.
    fn let_go(&mut self, u: u64, unplaced: bool) {
        if let Some(v) = self.held.remove(&u) {
            self.held_bytes -= v.iter().map(|h| h.data.len()).sum::<usize>();
            if unplaced {
                self.summary.split_unplaced += v.len() as u64;
            }
        }
    }

    /// Judges messages that no packet of their own brought (read from a stream after a
    /// hole was given up): the packets held for their stream go where they went.
    fn messages_apart(
        &mut self,
        segments: Vec<net::Segment>,
        ts_ms: u64,
        out_wanted: bool,
        on_record: &mut dyn FnMut(Record),
    ) {
        for seg in segments {
            let u = net::unit_key(1, &(seg.src, seg.dst));
            let mut o = PacketOutcome::default();
            self.messages(vec![seg], ts_ms, out_wanted, on_record, &mut o);
            if out_wanted && o.sip {
                self.release(u, o.files());
            }
        }
    }

    /// Judges the messages of the segments a packet gave.
    fn messages(
        &mut self,
        segments: Vec<net::Segment>,
        ts_ms: u64,
        out_wanted: bool,
        on_record: &mut dyn FnMut(Record),
        o: &mut PacketOutcome,
    ) {
        for mut seg in segments {
            let payload = std::mem::replace(&mut seg.payload, net::Payload::Messages(vec![]));
            let messages: Vec<Vec<u8>> = match payload {
                net::Payload::Datagram(d) => match net::find_sip_start(&d) {
                    Some(start) => vec![d[start..].to_vec()],
                    None => {
                        self.summary.not_sip_datagrams += 1;
                        vec![]
                    }
                },
                net::Payload::Messages(m) => m,
                net::Payload::Stream(..) => vec![],
            };
            let ts = seg.at_ms.unwrap_or(ts_ms);
            for m in messages {
                self.message(m, &seg, ts, out_wanted, on_record, o);
            }
        }
    }

    /// Judges one SIP message of the capture as the proxy would have judged it, received
    /// from the segment's source at its destination.
    fn message(
        &mut self,
        m: Vec<u8>,
        seg: &net::Segment,
        ts_ms: u64,
        out_wanted: bool,
        on_record: &mut dyn FnMut(Record),
        o: &mut PacketOutcome,
    ) {
        let (src, dst, transport) = (seg.src, seg.dst, seg.transport);
        o.sip = true;
        self.summary.sip_messages += 1;
        let response = m.starts_with(b"SIP/");
        let msg = match Message::parse(Bytes::from(m)) {
            Ok(m) => m,
            Err(_) => {
                self.summary.parse_errors += 1;
                self.summary.parse_errors_requests += u64::from(!response);
                return;
            }
        };
        let local = ListenSpec {
            transport,
            addr: dst,
        };
        let call_id = behaviour::call_key(&msg);
        // Its output, or the core's side of the call (which the proxy relays
        // without judging): no verdict, but they tell how calls went.
        let ours = self.policy.sent_by_us(transport, src, dst)
            || crate::proxy::stateless::sent_by_proxy(self.policy, &msg, src, dst);
        if ours || crate::proxy::stateless::sent_by_core(self.policy, &msg, src) {
            // What we relayed towards a trunk came from the core, unless the capture
            // showed a trunk sending it (QA 53: a peer's forged 200, relayed back, was
            // read as the call answered); what we sent the core came from a trunk, as
            // the proxy received it.
            let relayed_trunk_answer = ours
                && msg.status().is_some()
                && relay_key(&msg, msg.top_via()).is_some_and(|k| self.trunk_answers.remove(&k));
            let from_core =
                || !relayed_trunk_answer && (!ours || !self.policy.from_core_side(&dst));
            // sipfence's own answers (503 from `concurrent-calls`, a rule's 403, a
            // behaviour rule's 608...) are no outcome of a call: the proxy never relays
            // them, so they never reach its tracker, nor end a transaction for it (QA
            // 53: a retransmission of a refused INVITE counted as a new attempt). They
            // carry the To-tag sipfence makes of the request, which a response repeats.
            let own_answer = ours
                && msg.status().is_some()
                && msg
                    .to_tag()
                    .is_some_and(|t| t == &crate::sip::response::stable_tag(&msg)[..]);
            if crate::proxy::stateless::is_probe(&msg) {
                self.probe_seen(&msg, (src, dst, transport), ts_ms);
            }
            let for_state = ours && msg.status() == Some(503) && for_gateway_state(&msg);
            if !own_answer {
                decide::track_dialog(&msg, from_core, &self.rates, ts_ms);
                self.learn(&msg, from_core(), ts_ms);
                // The 503 the gateway gave a BYE it could not send to the core, relayed
                // as the core's answer: the call ends, as the proxy ends it (QA 127:
                // replay kept its place, and refused a call let through live).
                if for_state {
                    behaviour::bye_not_delivered(&msg, false, &self.behaviour, ts_ms);
                    self.found_down(&msg, dst, ts_ms);
                }
            } else if for_state {
                // The call ends here, as the proxy ends it: its concurrent-call place
                // is given back. A next hop found down ends the calls whose caller's
                // BYE it left unanswered, as the proxy's look at its down next hops
                // does (the capture shows the 503s, not the probes).
                behaviour::BehaviourTracker::forget(&self.behaviour, behaviour::call_key(&msg));
                self.found_down(&msg, dst, ts_ms);
                if self.state_answered.len() >= MAX_CALLS_TRACKED {
                    self.state_answered.clear();
                }
                if self.state_answered.insert(call_id) {
                    let s = &mut self.summary;
                    s.gateway_state += 1;
                    if s.gateway_state_calls.len() < GATEWAY_STATE_SHOWN {
                        s.gateway_state_calls
                            .push(String::from_utf8_lossy(msg.call_id()).into_owned());
                    }
                }
            }
            let blocked = self.verdicts.get(&call_id).copied().unwrap_or(false);
            o.blocked |= blocked;
            o.allowed |= !blocked;
            return;
        }
        let at_listen = self.policy.own_address(Some(transport), dst);
        let ctx = Context {
            source: src,
            local: Some(local),
            trunk: self.trunk,
            now_ms: ts_ms,
            wall_ms: ts_ms,
            rates: &self.rates,
            behaviour: &self.behaviour,
        };
        let mut d = judge(self.policy, &msg, &ctx);
        let origin = crate::proxy::stateless::Origin {
            source: src,
            local,
            conn: None,
        };
        // A call let through and not sent gives back the places it took, as live.
        if crate::proxy::stateless::refused_for_size(self.policy, &ctx, dst, &msg, &origin, &mut d)
            && self.policy.tracks_calls
            && d.kind == Kind::Call
            && !d.retransmission
        {
            behaviour::BehaviourTracker::forget(&self.behaviour, call_id);
        }
        if !d.is_reject() {
            let from_core = || self.policy.from_core_side(&src);
            decide::track_dialog(&msg, from_core, &self.rates, ts_ms);
        }
        // A response from a trunk's side (the core's were taken above), with our Via on
        // top and the caller's under it, as it will leave sipfence.
        if msg.status().is_some()
            && let Some(k) = relay_key(&msg, msg.second_via())
        {
            if self.trunk_answers.len() >= MAX_CALLS_TRACKED {
                self.trunk_answers.clear();
            }
            self.trunk_answers.insert(k);
        }
        // The proxy feeds the tracker with what it relays; a capture holds what was
        // relayed, so every message that is not a new call goes in, at capture time.
        if d.kind != Kind::Call && !d.is_reject() {
            self.learn(&msg, self.policy.speaks_for_core(&src), ts_ms);
        }
        // Later messages of a call follow its INVITE's verdict when the capture is
        // split; without split outputs nothing needs remembering.
        let blocked = match d.kind {
            Kind::Call | Kind::OtherRequest => {
                if self.verdicts.len() >= MAX_CALLS_TRACKED {
                    self.verdicts.clear();
                }
                let rej = d.is_reject();
                if out_wanted && (d.kind == Kind::Call || rej) {
                    self.verdicts.insert(call_id, rej);
                }
                // A retransmitted INVITE gets its original's verdict and goes where its
                // original went when the capture is split, but is no new call.
                let again = d.retransmission;
                if again {
                    self.summary.retransmissions += 1;
                } else if d.core_retry && !rej {
                    self.summary.core_retries += 1;
                } else if d.kind == Kind::Call {
                    self.summary.calls += 1;
                    self.summary.calls_elsewhere += u64::from(!at_listen);
                    *self.summary.by_verdict.entry(d.verdict_str()).or_default() += 1;
                    let trunk = d
                        .trunk
                        .map_or("none", |t| self.policy.trunks[t].name.as_str());
                    if !self.summary.by_trunk.contains_key(trunk) {
                        self.summary
                            .by_trunk
                            .insert(trunk.to_string(), BTreeMap::new());
                    }
                    if let Some(t) = self.summary.by_trunk.get_mut(trunk) {
                        *t.entry(d.verdict_str()).or_default() += 1;
                    }
                    if let Some(r) = d.rule {
                        *self.summary.by_rule.entry(r.as_str()).or_default() += 1;
                    } else if d.refusal.is_some() {
                        *self.summary.by_rule.entry("(protocol checks)").or_default() += 1;
                    }
                }
                // As the proxy records ([`decide::Decision::recorded`]).
                if !again && d.recorded() {
                    let mut rec = Record::new(self.policy, &msg, &d, src, ts_ms);
                    if d.kind == Kind::Call
                        && let Some(t) = d.trunk.map(|t| &self.policy.trunks[t])
                        && t.counts_calls()
                        && let Some(at) = self.summary.first_loss_ms.or_else(|| {
                            // Within two of its counted windows of a start mid-traffic:
                            // calls let through in the first count in the second (QA
                            // 172: the verdicts differed at +65 and +70 s).
                            self.summary
                                .started_mid_ms
                                .filter(|s| ts_ms < s + 2 * t.counted_window_ms())
                        })
                    {
                        rec.after_loss = Some(at);
                        self.summary.calls_after_loss += 1;
                    }
                    on_record(rec);
                }
                rej
            }
            Kind::InDialog | Kind::Response => {
                if d.is_reject() {
                    on_record(Record::new(self.policy, &msg, &d, src, ts_ms));
                    true
                } else {
                    self.verdicts.get(&call_id).copied().unwrap_or(false)
                }
            }
        };
        o.blocked |= blocked;
        o.allowed |= !blocked;
    }
}

/// A response as sipfence relays it: its transaction (the caller's branch, `caller_via`:
/// the top Via once ours is taken off), Call-ID, CSeq, status and To-tag.
impl Replayer<'_> {
    /// The gateway's 503 `msg` to `caller` says the next hop of the caller's trunk is
    /// down (not answering, unreachable): the calls behind it whose caller's BYE it left
    /// unanswered end, as the proxy's look at its down next hops ends them.
    fn found_down(&self, msg: &Message, caller: std::net::SocketAddr, ts_ms: u64) {
        if let Some(next) = self
            .policy
            .match_trunk(&caller, None)
            .and_then(|t| self.policy.trunks[t].next_hop)
            .filter(|_| for_next_hop_down(msg))
        {
            self.ended_behind((next.addr, next.transport), ts_ms);
        }
    }

    /// Ends the calls behind the next hop `next` found down whose caller's BYE it left
    /// unanswered within the outage's window.
    fn ended_behind(&self, next: crate::proxy::probe::Key, ts_ms: u64) {
        let behind = self.policy.trunks_behind(next.0, Some(next.1));
        let since = ts_ms.saturating_sub(self.policy.bye_window_ms());
        behaviour::BehaviourTracker::next_hop_down(&self.behaviour, &behind, since);
    }

    /// A probe of the gateway's, or its answer: a next hop that answered and then left
    /// [`crate::proxy::probe::LOST`] in a row unanswered is down from the next one on,
    /// as the proxy marks it, and the calls whose caller's BYE it left unanswered end
    /// then and at each probe while it stays down, as the proxy's look every 10 s ends
    /// them (QA 129: a UDP core's outage whose capture held no 503 of the gateway's
    /// left their places held in replay, and refused calls let through live).
    fn probe_seen(
        &mut self,
        msg: &Message,
        (src, dst, transport): (
            std::net::SocketAddr,
            std::net::SocketAddr,
            crate::policy::config::Transport,
        ),
        ts_ms: u64,
    ) {
        if msg.is_request() && self.policy.is_next_hop(&dst) {
            let key = (crate::canonical(dst), transport);
            let (watch, down) = self.probes.entry(key).or_default();
            *down |= watch.lost();
            watch.sent();
            if *down {
                self.ended_behind(key, ts_ms);
            }
        } else if !msg.is_request() && self.policy.is_next_hop(&src) {
            let key = (crate::canonical(src), transport);
            let (watch, down) = self.probes.entry(key).or_default();
            watch.answered();
            *down = false;
        }
    }
}

/// A 503 sipfence gave for its state then, not its policy ([`GATEWAY_STATE`]): its
/// Reason names why (`SIP;cause=503;text="Next hop not answering"`).
fn for_gateway_state(msg: &Message) -> bool {
    reason_is(msg, &GATEWAY_STATE)
}

/// Of those, the 503s for a next hop down (not answering its probes, its connection
/// failed), as the proxy marks it: not a congested one, nor the gateway's own load.
fn for_next_hop_down(msg: &Message) -> bool {
    use crate::proxy::stateless::{NEXT_HOP_SILENT, NEXT_HOP_UNREACHABLE};
    reason_is(msg, &[NEXT_HOP_SILENT, NEXT_HOP_UNREACHABLE])
}

/// Whether the message's Reason text is one of `texts`.
fn reason_is(msg: &Message, texts: &[&str]) -> bool {
    msg.value(crate::sip::HeaderName::Reason).is_some_and(|v| {
        texts.iter().any(|t| {
            let quoted = format!("text=\"{t}\"");
            v.windows(quoted.len()).any(|w| w == quoted.as_bytes())
        })
    })
}

fn relay_key(msg: &Message, caller_via: Option<crate::sip::via::Via>) -> Option<u64> {
    let b = msg.buf();
    let branch = caller_via?.branch?.of(b);
    let (cseq, method) = msg.cseq()?;
    Some(crate::sip::lex::tag_hash(&[
        b"relayed",
        branch,
        msg.call_id(),
        &cseq.to_le_bytes(),
        method,
        &msg.status()?.to_le_bytes(),
        msg.to_tag().unwrap_or_default(),
    ]))
}

/// Writes a packet to the split outputs its messages went to: (blocked, allowed).
fn write_split(out: &mut Outputs, p: &Packet<'_>, (blocked, allowed): (bool, bool)) {
    for (want, w) in [
        (blocked, out.blocked.as_mut()),
        (allowed, out.allowed.as_mut()),
    ] {
        if want && let Some(w) = w {
            let _ = w.write(p.linktype, p.ts_sec, p.ts_usec, p.data, p.orig_len);
        }
    }
}

impl Replayer<'_> {
    /// A later message of a call, for the behaviour features.
    fn learn(&mut self, msg: &Message, from_core: bool, ts_ms: u64) {
        if self.policy.tracks_calls
            && let Some((_, seen)) = behaviour::observe(msg, from_core, &self.behaviour, ts_ms)
        {
            *self.summary.behaviour.entry(seen.as_str()).or_default() += 1;
        }
    }
}

/// Optional split outputs.
#[derive(Default)]
pub struct Outputs {
    pub blocked: Option<PcapWriter>,
    pub allowed: Option<PcapWriter>,
}

pub struct Args {
    /// The running policy to compare with: print only the calls judged otherwise.
    pub baseline: Option<Policy>,
    pub trunk: Option<String>,
    pub json: bool,
    pub write_blocked: Option<PathBuf>,
    pub write_allowed: Option<PathBuf>,
    pub files: Vec<PathBuf>,
}

/// The `--trunk` of a policy: `Err` (the exit status) when it has none of that name.
fn trunk_of(policy: &Policy, name: Option<&str>) -> Result<Option<usize>, i32> {
    name.map(|n| crate::cli::trunk_arg(policy, n)).transpose()
}

pub fn run(policy: &Policy, a: &Args) -> i32 {
    let Ok(trunk) = trunk_of(policy, a.trunk.as_deref()) else {
        return 2;
    };
    // A capture that cannot be opened is said before anything is printed: an empty
    // table and a summary of zeros read as a capture without a call (QA 175 F8).
    for f in a.files.iter().filter(|f| !capture::is_stdin(f)) {
        if let Err(e) = std::fs::File::open(f) {
            eprintln!("sipfence: {}: cannot open: {e}", f.display());
            return 1;
        }
    }
    // Said before any verdict: otherwise every authenticated call of the capture is
    // challenged again, and the difference looks like the policy's (QA 73).
    if policy.auth_key_random {
        eprintln!(
            "sipfence: warning: the policy authenticates trunks but sets no [general] auth_secret: the capture's nonces (the live proxy's) do not verify here, so its authenticated calls are challenged again, and so are the in-dialog requests of trunks that have no sources, whose dialog tokens do not verify either; give replay the gateways' auth_secret"
        );
    }
    if let Some(baseline) = &a.baseline {
        let Ok(base_trunk) = trunk_of(baseline, a.trunk.as_deref()) else {
            return 2;
        };
        return run_compare(policy, trunk, baseline, base_trunk, a);
    }
    let mut outs = Outputs::default();
    for (path, slot) in [
        (&a.write_blocked, &mut outs.blocked),
        (&a.write_allowed, &mut outs.allowed),
    ] {
        if let Some(p) = path {
            match PcapWriter::create(p) {
                Ok(w) => *slot = Some(w),
                Err(e) => {
                    eprintln!("sipfence: cannot write {}: {e}", p.display());
                    return 1;
                }
            }
        }
    }
    let mut r = Replayer::new(policy, trunk);
    let json = a.json;
    if !json {
        println!("{}", crate::record::TABLE_HEADER);
    }
    // The replayer hands over the records the proxy would write
    // ([`crate::decide::Decision::recorded`]), each printed.
    let mut print = |rec: Record| {
        if json {
            println!("{}", serde_json::to_string(&rec).unwrap_or_default());
        } else {
            let isup = rec.isup.as_ref().map_or_else(String::new, |i| {
                crate::record::isup_shown(rec.rule, i.calling.as_deref(), i.rules.iter().copied())
            });
            println!(
                "{}{isup}{}",
                crate::record::table_row(
                    rec.ts_ms,
                    &rec.call_id,
                    rec.caller.as_deref().or(rec.blank),
                    rec.callee.as_deref(),
                    rec.trunk.as_deref(),
                    rec.verdict,
                    rec.code,
                    crate::record::rule_shown(rec.rule, rec.refused, rec.retry.is_some())
                ),
                loss_mark(rec.after_loss)
            );
        }
    };
    let mut status = 0;
    for f in &a.files {
        match r.file(f, &mut outs, &mut print) {
            Ok(End::Complete) => {}
            Ok(End::Damaged { .. }) => status = 2,
            Err(e) => {
                eprintln!("sipfence: {}: {e}", capture::display_name(f));
                status = 1;
            }
        }
    }
    for (w, path) in [
        (outs.blocked.take(), &a.write_blocked),
        (outs.allowed.take(), &a.write_allowed),
    ] {
        let (Some(w), Some(path)) = (w, path) else {
            continue;
        };
        if w.skipped > 0 {
            eprintln!(
                "sipfence: {}: {} packets of another link type than its first were not written (a pcap holds one: name the file .pcapng to keep them all)",
                path.display(),
                w.skipped
            );
        }
        if let Err(e) = w.finish() {
            eprintln!("sipfence: writing capture: {e}");
            status = 1;
        }
    }
    if r.summary.split_unplaced > 0 {
        eprintln!(
            "sipfence: {} packets carried parts of messages never completed (a stream cut off, a datagram missing fragments) or TCP data that was no SIP: in neither split output",
            r.summary.split_unplaced
        );
    }
    let s = &r.summary;
    let n = r.net_stats();
    if n.hep_sip > 0 && s.sip_messages > n.hep_sip {
        // QA 146: a capture on the gateway's host that did not leave out its mirror's
        // port read every message twice (phantom retransmissions), with nothing said.
        eprintln!(
            "sipfence: the capture holds SIP both as it travelled ({} messages) and in HEP copies ({}): if the copies mirror the same traffic (a [hep] mirror captured beside it), every message was read twice; replay one of them (leave the HEP port out of the capture filter)",
            s.sip_messages - n.hep_sip,
            n.hep_sip
        );
    }
    if json {
        let network = serde_json::json!({"not_ip": n.non_ip, "other_ip": n.other_ip, "fragments": n.fragments, "reassembled": n.reassembled, "fragments_expired": n.fragments_expired, "fragments_overlapping": n.fragments_overlapping, "decapsulated": n.decapsulated, "hep_sip": n.hep_sip, "hep_not_sip": n.hep_not_sip, "hep_damaged": n.hep_damaged, "sctp_messages": n.sctp_messages, "sctp_reassembled": n.sctp_reassembled, "sctp_retransmitted": n.sctp_retransmitted, "sctp_damaged": n.sctp_damaged, "websocket_messages": n.websocket_messages, "tcp_gaps": n.tcp_gaps, "tcp_desync": n.tcp_desync, "tcp_joined": n.tcp_joined, "tcp_overlaps_conflicting": n.tcp_overlaps_conflicting, "tcp_unframed": n.tcp_unframed, "snaplen_cut": n.snaplen_cut, "unsupported_link": n.unsupported_link, "unsupported_linktype": n.unsupported_linktype});
        println!(
            "{}",
            serde_json::json!({"summary": {"packets": s.packets, "sip_messages": s.sip_messages, "not_sip_datagrams": s.not_sip_datagrams, "parse_errors": s.parse_errors, "parse_errors_requests": s.parse_errors_requests, "calls": s.calls, "retransmissions": s.retransmissions, "core_retries": s.core_retries, "by_verdict": s.by_verdict, "by_rule": s.by_rule, "by_trunk": s.by_trunk, "behaviour": s.behaviour, "damaged": s.damaged, "network": network, "gateway_state": {"calls": s.gateway_state, "call_ids": s.gateway_state_calls}, "calls_elsewhere": s.calls_elsewhere, "incomplete": incomplete_json(s, &n)}})
        );
    } else {
        println!();
        println!(
            "packets {}  SIP messages {}  unparsable {}{}  calls {}  retransmitted INVITEs {}  retries the core asked for {}",
            s.packets,
            s.sip_messages,
            s.parse_errors,
            match s.parse_errors {
                0 => String::new(),
                n => format!(
                    " ({} requests, {} responses)",
                    s.parse_errors_requests,
                    n - s.parse_errors_requests
                ),
            },
            s.calls,
            s.retransmissions,
            s.core_retries
        );
        // What the network layer could not follow: the first place to look when a
        // capture shows fewer calls than expected.
        println!(
            "  network: not IP {}  other IP protocols {}  tunnelled {}  fragments {} (reassembled {}, expired {})  TCP gaps {}  TCP resyncs {}  TCP streams joined mid-way {}",
            n.non_ip,
            n.other_ip,
            n.decapsulated,
            n.fragments,
            n.reassembled,
            n.fragments_expired,
            n.tcp_gaps,
            n.tcp_desync,
            n.tcp_joined
        );
        if n.tcp_unframed > 0 {
            println!(
                "  SIP over TCP without a usable Content-Length (the proxy answers 400 and ends the connection; the rest of those streams is not read): {}",
                n.tcp_unframed
            );
        }
        if n.tcp_overlaps_conflicting > 0 {
            println!(
                "  TCP segments sent again with other bytes (the copy a receiver queued first is read, as Linux reads it): {}",
                n.tcp_overlaps_conflicting
            );
        }
        if n.fragments_overlapping > 0 {
            println!(
                "  fragmented datagrams dropped for overlapping fragments (as Linux drops them: the proxy's host never has them): {}",
                n.fragments_overlapping
            );
        }
        if n.unsupported_link > 0 {
            println!(
                "  link type {} is not read (see the README's Replay section for those that are): {} packets",
                n.unsupported_linktype, n.unsupported_link
            );
        }
        if n.snaplen_cut > 0 {
            println!(
                "  cut by the capture's snaplen: {} packets (what they carried past it is lost; capture with -s 0)",
                n.snaplen_cut
            );
        }
        if n.hep_sip + n.hep_not_sip + n.hep_damaged > 0 {
            println!(
                "  HEP: SIP {}  not SIP {} (RTCP, logs, keep-alives)  damaged {}",
                n.hep_sip, n.hep_not_sip, n.hep_damaged
            );
        }
        if s.not_sip_datagrams > 0 {
            println!(
                "  datagrams with no SIP message (RTP, DNS, keep-alives, other traffic; garbage, which the proxy counts as malformed): {}",
                s.not_sip_datagrams
            );
        }
        if n.sctp_messages + n.sctp_retransmitted + n.sctp_damaged > 0 {
            println!(
                "  SCTP: SIP messages {} (from fragments {})  retransmitted chunks {}  damaged packets {}",
                n.sctp_messages, n.sctp_reassembled, n.sctp_retransmitted, n.sctp_damaged
            );
        }
        if n.websocket_messages > 0 {
            println!("  WebSocket: SIP messages {}", n.websocket_messages);
        }
        for (v, n) in &s.by_verdict {
            println!("  verdict {v:<8} {n}");
        }
        for (rule, n) in &s.by_rule {
            println!("  rule {rule:<28} {n}");
        }
        for (trunk, verdicts) in &s.by_trunk {
            let shown: Vec<String> = verdicts.iter().map(|(v, n)| format!("{v} {n}")).collect();
            println!(
                "  trunk {trunk:<27} {}  ({})",
                verdicts.values().sum::<u64>(),
                shown.join(", ")
            );
        }
        for (e, n) in &s.behaviour {
            println!("  call outcome {e:<20} {n}");
        }
        if s.gateway_state > 0 {
            let more = if s.gateway_state > s.gateway_state_calls.len() as u64 {
                ", ..."
            } else {
                ""
            };
            println!(
                "  answered 503 live for the gateway's state, not its policy (a next hop down or congested, stopping, overloaded), judged here by the policy alone: {} calls ({}{more})",
                s.gateway_state,
                s.gateway_state_calls.join(", ")
            );
        }
    }
    for d in &s.damaged {
        eprintln!("sipfence: warning: {d}");
    }
    // (A trunk that names no listen address takes what comes anywhere.)
    let listens = policy.trunks.iter().all(|t| !t.listen.is_empty());
    if s.calls_elsewhere > 0 && trunk.is_none() && listens {
        eprintln!(
            "sipfence: warning: {} of {} calls went to no listen address of the policy: judged as received where they went, no trunk takes them (unknown-source); a capture taken at another address than the policy names also shows what that gateway sent on, judged as calls too. Replay with the policy of the gateway that took the capture (its listen addresses); --trunk NAME judges every call as that trunk's, but does not tell that gateway's own messages from calls",
            s.calls_elsewhere, s.calls
        );
    }
    if incomplete(s, &n) {
        warn_incomplete(s, &n);
        if status == 0 {
            status = INCOMPLETE;
        }
    }
    status
}

/// What a table row of a call judged after a loss ends with.
fn loss_mark(after_loss: Option<u64>) -> &'static str {
    if after_loss.is_some() {
        "  (after a loss)"
    } else {
        ""
    }
}

/// The exit status of a replay whose capture lost SIP (and of nothing worse).
pub const INCOMPLETE: i32 = 3;

/// Whether the capture lost SIP somewhere (QA 168: with calls cut by the snaplen or
/// lost in holes, later rate verdicts changed with exit status 0 and nothing said).
fn incomplete(s: &Summary, n: &net::NetStats) -> bool {
    // A join undone by its SYN coming late (reordered) is none.
    s.first_loss_ms.is_some() || (s.started_mid_ms.is_some() && n.tcp_joined > 0) || n.losses() > 0
}

/// The summary's `incomplete` object: null for a whole capture.
fn incomplete_json(s: &Summary, n: &net::NetStats) -> serde_json::Value {
    if !incomplete(s, n) {
        return serde_json::Value::Null;
    }
    serde_json::json!({"first_loss_ts_ms": s.first_loss_ms, "started_mid_traffic_ts_ms": s.started_mid_ms, "calls_after_loss": s.calls_after_loss})
}

fn warn_incomplete(s: &Summary, n: &net::NetStats) {
    let mut what = vec![];
    for (count, name) in [
        (n.snaplen_cut, "packets cut by the snaplen"),
        (n.tcp_gaps + n.tcp_desync, "TCP holes"),
        (n.fragments_expired, "datagrams missing fragments"),
        (
            n.sctp_damaged + n.hep_damaged,
            "damaged SCTP or HEP packets",
        ),
        (
            s.started_mid_ms.map_or(0, |_| n.tcp_joined),
            "TCP streams joined after their start (a capture started mid-traffic: the calls before it are not in it)",
        ),
    ] {
        if count > 0 {
            what.push(format!("{count} {name}"));
        }
    }
    if what.is_empty() {
        what.push("a datagram waiting over a second for its fragments".to_string());
    }
    eprintln!(
        "sipfence: warning: the capture is incomplete ({}): what was lost was not judged{}",
        what.join(", "),
        match (s.first_loss_ms.or(s.started_mid_ms), s.calls_after_loss) {
            (Some(t), n) if n > 0 => format!(
                ", and the {n} calls judged after the first loss ({}), or within a minute (their rules' window) of a start mid-traffic, on trunks with rate limits, concurrent-call limits or behaviour rules may have other verdicts than the gateway gave (it counted the calls the capture lost): marked `(after a loss)`, `after_loss` in --json",
                rfc3339(t)
            ),
            _ => String::new(),
        }
    );
}

/// `--baseline`: the calls the new policy judges otherwise than the running one.
fn run_compare(
    policy: &Policy,
    trunk: Option<usize>,
    baseline: &Policy,
    base_trunk: Option<usize>,
    a: &Args,
) -> i32 {
    // Two policies without a secret drew two keys: compared so, the same policy would
    // differ from itself by its estimates (QA 102). One key for both, then.
    let base_key = if policy.callee_key_random && baseline.callee_key_random {
        policy.callee_key
    } else {
        baseline.callee_key
    };
    let (mut new, mut old) = (
        Replayer::new(policy, trunk),
        Replayer::keyed(baseline, base_trunk, base_key),
    );
    let json = a.json;
    let show =
        |r: &Record| crate::record::verdict_text(r.verdict, r.code) + " " + r.rule.unwrap_or("-");
    if !json {
        println!(
            "{:<24} {:<36} {:<16} {:<10} baseline -> new",
            "time", "call-id", "caller", "trunk"
        );
    }
    let mut on_change = |b: &Record, n: &Record| {
        if json {
            let side = |r: &Record| serde_json::json!({"verdict": r.verdict, "code": r.code, "rule": r.rule});
            let mut row = serde_json::json!({"ts_ms": n.ts_ms, "call_id": n.call_id, "caller": n.caller, "trunk": n.trunk, "baseline": side(b), "new": side(n)});
            if let Some(t) = n.after_loss.or(b.after_loss) {
                row["after_loss"] = t.into();
            }
            println!("{row}");
        } else {
            println!(
                "{:<24} {:<36} {:<16} {:<10} {} -> {}{}",
                rfc3339(n.ts_ms),
                n.call_id,
                n.caller.as_deref().or(n.blank).unwrap_or("-"),
                n.trunk.as_deref().unwrap_or("-"),
                show(b),
                show(n),
                loss_mark(n.after_loss.or(b.after_loss))
            );
        }
    };
    let mut cmp = compare::Comparison::default();
    let mut status = 0;
    for f in &a.files {
        match compare::file(&mut new, &mut old, f, &mut cmp, &mut on_change) {
            Ok(End::Complete) => {}
            Ok(End::Damaged { offset, reason }) => {
                eprintln!(
                    "sipfence: warning: {}: {reason} at byte {offset}; what came before was compared",
                    capture::display_name(f)
                );
                status = 2;
            }
            Err(e) => {
                eprintln!("sipfence: {}: {e}", capture::display_name(f));
                status = 1;
            }
        }
    }
    let n = new.net_stats();
    if incomplete(&new.summary, &n) {
        warn_incomplete(&new.summary, &n);
        if status == 0 {
            status = INCOMPLETE;
        }
    }
    if json {
        println!(
            "{}",
            serde_json::json!({"compare": {"calls": cmp.calls, "changed": cmp.changed(), "newly_blocked": cmp.newly_blocked, "newly_allowed": cmp.newly_allowed, "otherwise": cmp.otherwise, "one_sided": cmp.one_sided, "incomplete": incomplete_json(&new.summary, &n)}})
        );
    } else {
        println!();
        println!(
            "calls {}  changed {}  newly blocked {}  newly let through {}  otherwise {}  judged by one policy only {}",
            cmp.calls,
            cmp.changed(),
            cmp.newly_blocked,
            cmp.newly_allowed,
            cmp.otherwise,
            cmp.one_sided
        );
    }
    status
}
