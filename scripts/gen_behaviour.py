#!/usr/bin/env python3
"""Generates the behaviour-rule captures (issue 10) in testdata/pcap/behaviour/.

    python3 scripts/gen_behaviour.py

Python 3 standard library only (the packet layers come from gen_testdata.py), seeded
and with fixed timestamps from 2026-11-30T02:00:00Z, so every run rewrites byte-identical
files. Every capture is what a gateway sees on its trunk side: calls from 127.0.0.1:5070
to the proxy at 127.0.0.1:5060, and the proxy's responses, BYEs in either direction.
The policy to replay them with is testdata/pcap/behaviour/policy.toml (one
interconnect trunk with behaviour thresholds; every behaviour rule labels).

One capture per pattern, the pattern caller mixed into ~40 ordinary callers:

  attempts.pcap     150 attempts in 60 s to 5 callees (an auto-dialler redialling);
                    40 % answered, so only the attempt count is odd
  callees.pcap      50 different callees in 60 s, half answered, long calls
  sequential.pcap   30 callees +1 apart, one every 4 s, half answered
  low-asr.pcap      45 calls in 90 s to 6 callees, none answered (busy, unavailable,
                    given up after 30 s of ringing): 20 outcomes within a minute
  ring-once.pcap    12 calls in 2 min, each cancelled 1-2.5 s after the 180
  short-calls.pcap  12 calls in 2 min, answered and hung up after 1-3 s
  normal.pcap       600 ordinary callers over 10 minutes, no pattern: answered (with
                    some short calls), busy, unanswered, rejected, callers who give up
                    early, and a few heavy legitimate callers (a PBX, call centres):
                    the false-positive measure
  busy-lines.pcap   legitimate busy lines that earlier rules misjudged (QA 98), inside
                    40 ordinary callers: a person redialling one number and hanging up
                    in the ring, a PBX pilot at 25 calls a minute with a few misdials
                    given up at once, a call centre whose failures come back at once and
                    whose answers after 15-25 s of ringing; no behaviour rule may fire

  expected.tsv      capture, the pattern caller (E.164), the rule that must fire on it
                    ("-" for normal.pcap: no behaviour rule may fire on any call)
"""

import os
import random
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gen_testdata as g  # noqa: E402

OUT = os.path.join(g.ROOT, "testdata", "pcap", "behaviour")
T0_MS = g.T0_US // 1000
UAC = ("127.0.0.1", 5070)
PROXY = ("127.0.0.1", 5060)

POLICY = """\
# Replays testdata/pcap/behaviour/*.pcap (scripts/gen_behaviour.py). One interconnect
# trunk on 127.0.0.1:5060 with the behaviour thresholds of the README; every behaviour
# rule labels, so a replay shows each rule that fires without cutting the pattern short.

[general]
plan = "builtin:cn"
# Keys the behaviour tables' callee hashing: the estimates are the same in every run.
auth_secret = "behaviour-captures-5b1e0c7d"

[[trunk]]
name = "ic"
role = "interconnect"
listen = ["udp:127.0.0.1:5060"]
sources = ["127.0.0.0/8"]
next_hop = "udp:127.0.0.1:5080"

[trunk.behaviour]
window_secs = 60
watch_secs = 600
attempts = 60
distinct_callees = 30
sequential_callees = 10
min_asr_percent = 10
asr_min_attempts = 20
ring_once = 3
ring_once_secs = 5
short_calls = 5
short_call_secs = 6
"""

REASONS = {100: "Trying", 180: "Ringing", 200: "OK", 404: "Not Found", 480:
           "Temporarily Unavailable", 486: "Busy Here", 487: "Request Terminated",
           603: "Decline"}


class Cap:
    """Packets with explicit times (ms from T0), sorted when written."""

    def __init__(self):
        self.packets = []
        self.ids = g.IpIds(7000)

    def udp(self, t_ms, src, dst, payload, outgoing):
        (sa, sp), (da, dp) = src, dst
        for p in g.ip_packets(sa, da, 17, g.udp(sa, sp, da, dp, payload), self.ids):
            self.packets.append(((T0_MS + t_ms) * 1000, len(self.packets),
                                 g.link_ether(p, outgoing)))

    def bytes(self):
        pk = sorted(self.packets)
        return g.pcap_bytes(g.LINKTYPE_ETHERNET, [(ts, f) for ts, _, f in pk])


class Call:
    def __init__(self, cid, caller, callee):
        self.cid, self.caller, self.callee = cid, caller, callee
        self.ftag = g.h(cid, "f", n=10)
        self.ttag = g.h(cid, "t", n=10)

    def hdrs(self, via, to_tag, cseq):
        return [
            "Via: SIP/2.0/UDP %s:%d;branch=z9hG4bK%s;rport" % (UAC + (g.h(self.cid, via),)),
            "From: <sip:%s@%s;user=phone>;tag=%s" % (self.caller, UAC[0], self.ftag),
            "To: <sip:%s@%s;user=phone>%s" % (self.callee, PROXY[0],
                                             ";tag=" + self.ttag if to_tag else ""),
            "Call-ID: " + self.cid,
            "CSeq: " + cseq,
        ]

    def req(self, method, via, to_tag, cseq, body=""):
        ruri = "sip:%s@%s:%d;user=phone" % (self.callee, PROXY[0], PROXY[1])
        hs = self.hdrs(via, to_tag, cseq) + ["Max-Forwards: 70"]
        if method == "INVITE":
            hs.append("Contact: <sip:%s@%s:%d>" % (self.caller, UAC[0], UAC[1]))
        return g.Call.message("%s %s SIP/2.0" % (method, ruri), hs, body)

    def core_hdrs(self, cseq):
        # A request from the core's side: its own tag in From, the caller's in To
        # (RFC 3261 12.2.1.1), its Via the proxy's.
        return [
            "Via: SIP/2.0/UDP %s:%d;branch=z9hG4bK%s" % (PROXY + (g.h(self.cid, "core-bye"),)),
            "From: <sip:%s@%s;user=phone>;tag=%s" % (self.callee, PROXY[0], self.ttag),
            "To: <sip:%s@%s;user=phone>;tag=%s" % (self.caller, UAC[0], self.ftag),
            "Call-ID: " + self.cid,
            "CSeq: " + cseq,
        ]

    def core_bye(self):
        ruri = "sip:%s@%s:%d" % (self.caller, UAC[0], UAC[1])
        return g.Call.message("BYE %s SIP/2.0" % ruri, self.core_hdrs("1 BYE") + ["Max-Forwards: 70"])

    def core_bye_ok(self):
        return g.Call.message("SIP/2.0 200 OK", self.core_hdrs("1 BYE"))

    def resp(self, code, via="invite", cseq="1 INVITE"):
        return g.Call.message("SIP/2.0 %d %s" % (code, REASONS[code]),
                              self.hdrs(via, code != 100, cseq))

    def sdp(self):
        return ("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
                "m=audio 18000 RTP/AVP 8 0\r\na=rtpmap:8 PCMA/8000\r\n")

    def play(self, cap, t, outcome):
        """outcome: ("answer", ring_ms, talk_ms, caller_hangs_up) | ("fail", after_ms,
        code) | ("cancel", ring_ms)."""
        up = lambda dt, m: cap.udp(t + dt, UAC, PROXY, m, False)  # noqa: E731
        down = lambda dt, m: cap.udp(t + dt, PROXY, UAC, m, True)  # noqa: E731
        up(0, self.req("INVITE", "invite", False, "1 INVITE", self.sdp()))
        down(20, self.resp(100))
        kind = outcome[0]
        if kind == "answer":
            _, ring, talk, caller_bye = outcome
            down(100, self.resp(180))
            down(100 + ring, self.resp(200))
            up(120 + ring, self.req("ACK", "ack", True, "1 ACK"))
            end = 100 + ring + talk
            if caller_bye:
                up(end, self.req("BYE", "bye", True, "2 BYE"))
                down(end + 30, self.resp(200, "bye", "2 BYE"))
            else:
                down(end, self.core_bye())
                up(end + 30, self.core_bye_ok())
        elif kind == "fail":
            _, after, code = outcome
            if after > 1000:
                down(100, self.resp(180))
            down(after, self.resp(code))
            up(after + 10, self.req("ACK", "invite", True, "1 ACK"))
        else:
            _, ring = outcome
            down(100, self.resp(180))
            up(100 + ring, self.req("CANCEL", "invite", False, "1 CANCEL"))
            down(130 + ring, self.resp(200, "invite", "1 CANCEL"))
            down(140 + ring, self.resp(487))
            up(150 + ring, self.req("ACK", "invite", True, "1 ACK"))


MOBILE = ["134", "135", "136", "137", "138", "139", "150", "151", "152", "157", "158",
          "159", "182", "183", "187", "188", "130", "131", "132", "155", "156", "185",
          "186", "133", "153", "180", "181", "189", "177", "199"]
AREAS = ["10", "20", "21", "22", "23", "24", "25", "27", "28", "29"]


def number(r):
    if r.random() < 0.75:
        return "+86%s%08d" % (r.choice(MOBILE), r.randrange(10 ** 8))
    # Two-digit area codes: all have eight-digit subscriber numbers.
    return "+86%s%d%07d" % (r.choice(AREAS), r.randrange(2, 9), r.randrange(10 ** 7))


def ordinary(r):
    """One call's outcome with the mix of a normal day."""
    x = r.random()
    if x < 0.55:
        ring = r.randrange(2000, 20000)
        y = r.random()
        talk = (r.randrange(30000, 300000) if y < 0.7 else
                r.randrange(10000, 30000) if y < 0.9 else r.randrange(3000, 9000))
        return ("answer", ring, talk, r.random() < 0.5)
    if x < 0.67:
        return ("fail", r.randrange(300, 800), 486)
    if x < 0.85:
        return ("cancel", r.randrange(15000, 45000))
    if x < 0.88:
        return ("fail", r.randrange(3000, 15000), 603)
    if x < 0.93:
        return ("fail", r.randrange(500, 2000), r.choice([404, 480]))
    # Gives up while it rings: dialled the wrong number, changed their mind.
    return ("cancel", r.randrange(3000, 8000))


def background(cap, r, callers, span_ms, tag, calls_per_caller=(1, 6)):
    n = 0
    for k in range(callers):
        caller = number(r)
        for j in range(r.randint(*calls_per_caller)):
            Call("%s-%d-%d@bg" % (tag, k, j), caller, number(r)).play(
                cap, r.randrange(span_ms), ordinary(r))
            n += 1
    return n


def heavy(cap, r, tag, span_ms):
    """Legitimate heavy callers: a PBX trunk number (many callees, 8 a minute, mostly
    answered) and call centres (4 a minute each)."""
    for k, (per_min, callees) in enumerate([(8, 400), (4, 200), (4, 200), (3, 12)]):
        caller = number(r)
        book = [number(r) for _ in range(callees)]
        t = r.randrange(5000)
        i = 0
        while t < span_ms:
            Call("%s-heavy-%d-%d@bg" % (tag, k, i), caller, r.choice(book)).play(
                cap, t, ordinary(r))
            t += int(r.expovariate(per_min / 60000.0)) + 1000
            i += 1


def busy_lines(cap, r, tag, span_ms):
    """The busy lines of busy-lines.pcap (see the docstring at the top)."""
    # Redials one number four times, hanging up 2-4 s into the ring, the fifth answered;
    # again two minutes later.
    caller, friend = number(r), number(r)
    for k in range(span_ms // 120000):
        base = k * 120000 + r.randrange(5000)
        for i in range(5):
            outcome = (("cancel", r.randrange(2000, 4000)) if i < 4 else
                       ("answer", 3000, 60000, True))
            Call("%s-redial-%d-%d@busy" % (tag, k, i), caller, friend).play(
                cap, base + i * 12000, outcome)
    # A PBX pilot number: 25 calls a minute, 85 % answered, about three a minute given
    # up within 3 s of ringing (misdials).
    caller = number(r)
    book = [number(r) for _ in range(400)]
    t, i = r.randrange(3000), 0
    while t < span_ms:
        x = r.random()
        outcome = (("cancel", r.randrange(1500, 3000)) if x < 0.12 else
                   ("fail", r.randrange(300, 800), 486) if x < 0.15 else
                   ("answer", r.randrange(2000, 8000), r.randrange(30000, 180000),
                    r.random() < 0.5))
        Call("%s-pbx-%d@busy" % (tag, i), caller, r.choice(book)).play(cap, t, outcome)
        t += 2400
        i += 1
    # A call centre's campaign: 25 calls a minute to new callees, the failures (busy,
    # not found) back within a second, the answers after 15-25 s of ringing (35 %).
    caller = number(r)
    t, i = r.randrange(3000), 0
    while t < span_ms:
        outcome = (("answer", r.randrange(15000, 25000), r.randrange(60000, 240000), True)
                   if r.random() < 0.35 else
                   ("fail", r.randrange(300, 900), r.choice([486, 486, 404, 480])))
        Call("%s-cc-%d@busy" % (tag, i), caller, number(r)).play(cap, t, outcome)
        t += 2400
        i += 1


def pattern(name, caller, calls):
    """calls: (t_ms, callee, outcome) of the pattern caller."""
    r = random.Random("sipfence-" + name)
    cap = Cap()
    span = max(t for t, _, _ in calls) + 60000
    background(cap, r, 40, span, name)
    for i, (t, callee, outcome) in enumerate(calls):
        Call("%s-%d@pattern" % (name, i), caller, callee).play(cap, t, outcome)
    return cap


def main():
    os.makedirs(OUT, exist_ok=True)
    r = random.Random(2026)
    rows = []
    out = []

    def add(name, caller, rule, calls):
        out.append((name, pattern(name, caller, calls)))
        rows.append((name, caller, rule))

    few = [number(r) for _ in range(5)]
    add("attempts", "+8613512345678", "behaviour-attempts",
        [(i * 400, few[i % 5],
          ("answer", 3000, 20000, True) if i % 5 < 2 else ("fail", 500, 486))
         for i in range(150)])
    add("callees", "+8615212345678", "behaviour-callees",
        [(i * 1200, number(r),
          ("answer", 4000, 120000, True) if i % 2 else ("cancel", 20000))
         for i in range(50)])
    add("sequential", "+8618612345678", "behaviour-sequential",
        [(i * 4000, "+861380010%04d" % (1000 + i),
          ("answer", 5000, 40000, True) if i % 2 else ("fail", 600, 486))
         for i in range(30)])
    six = [number(r) for _ in range(6)]
    add("low-asr", "+8613012345678", "behaviour-low-asr",
        [(i * 2000, six[i % 6],
          [("fail", 500, 486), ("fail", 8000, 480), ("cancel", 30000)][i % 3])
         for i in range(45)])
    add("ring-once", "+8615912345678", "behaviour-ring-once",
        [(i * 10000, number(r), ("cancel", 1000 + (i * 137) % 1500)) for i in range(12)])
    add("short-calls", "+8618812345678", "behaviour-short-calls",
        [(i * 10000, number(r), ("answer", 3000, 1000 + (i * 211) % 2000, True))
         for i in range(12)])

    cap = Cap()
    nr = random.Random("sipfence-normal")
    calls = background(cap, nr, 600, 600000, "normal", (1, 8))
    heavy(cap, nr, "normal", 600000)
    out.append(("normal", cap))
    rows.append(("normal", "-", "-"))

    cap = Cap()
    br = random.Random("sipfence-busy-lines")
    background(cap, br, 40, 360000, "busy")
    busy_lines(cap, br, "busy", 360000)
    out.append(("busy-lines", cap))
    rows.append(("busy-lines", "-", "-"))

    for name, c in out:
        data = c.bytes()
        with open(os.path.join(OUT, name + ".pcap"), "wb") as f:
            f.write(data)
        print("wrote testdata/pcap/behaviour/%s.pcap (%d packets)" % (name, len(c.packets)))
    with open(os.path.join(OUT, "expected.tsv"), "w") as f:
        f.write("# Written by: python3 scripts/gen_behaviour.py\n")
        f.write("capture\tcaller\trule\n")
        for row in rows:
            f.write("\t".join(row) + "\n")
    with open(os.path.join(OUT, "policy.toml"), "w") as f:
        f.write(POLICY)
    print("normal.pcap: %d background calls plus the heavy callers" % calls)


if __name__ == "__main__":
    main()
