#!/usr/bin/env python3
"""Generates the packet captures that `sipfence replay` is tested against.

Run from anywhere (it writes relative to the project root):

    python3 scripts/gen_testdata.py

Python 3 standard library only; no randomness and fixed timestamps (every capture starts
at 2026-11-30T02:00:00Z, packets 100 ms apart), so every run rewrites byte-identical files.
It writes, in testdata/pcap/:

  rules-udp.pcap       classic pcap, Ethernet/IPv4/UDP: per rule one call it blocks (or
                       rewrites / labels) and allowed calls, full dialogs
  rules-tcp.pcapng     pcapng (SHB, IDB linktype 1, EPBs), SIP over TCP: 3-way handshakes,
                       two INVITEs in one segment, INVITEs split across two segments (once in
                       the headers, once in the SDP body), one retransmitted INVITE segment
  vlan-ipv6-frag.pcap  802.1Q-tagged Ethernet: IPv4 and IPv6 UDP calls, a ~3000-byte
                       INVITE in IPv4 fragments and one in IPv6 fragments (Fragment header)
  sll.pcap             Linux cooked capture v1 (linktype 113)
  sll2.pcap            Linux cooked capture v2 (linktype 276)
  rawip.pcap           raw IP (linktype 101), IPv4 and one IPv6 call
  truncated.pcap       valid capture cut off in the middle of its last packet record (an
                       INVITE that therefore must not produce a verdict)
  sipi.pcap            SIP-I calls (ITU-T Q.1912.5): multipart/mixed INVITEs with an SDP
                       part and an application/ISUP IAM written to Q.763 by the small
                       encoder below (independent of the Rust one, which tshark checks):
                       forged numbers in the ISUP Calling Party Number behind clean SIP
                       headers, a Generic Number to delete, an IAM without calling number,
                       an unreadable IAM
  sctp.pcap            SIP over SCTP (RFC 4168): associations with INIT/COOKIE handshakes,
                       SACKs, 100 and 180 bundled in one packet, a retransmitted INVITE
                       chunk (same TSN), a ~3000-byte INVITE in three DATA fragments, TSNs
                       wrapping past 2^32, an unknown source, Diameter beside it (not SIP),
                       and an association using I-DATA (RFC 8260) whose two INVITEs'
                       fragments interleave on two streams
  websocket.pcapng     SIP over WebSocket (RFC 7118), to the enterprise port: the HTTP
                       upgrade, client frames masked, a frame cut across TCP segments, a
                       message in a frame and a continuation with a ping between, pong and
                       close frames, and a connection with permessage-deflate (RFC 7692)
  expected.tsv         one row per initial INVITE (no To-tag) that replay can read:
                       file, call_id, trunk, verdict, code, rule (built-in policy)

The verdicts in expected.tsv follow deploy/sipfence.toml (the built-in policy): packets from
127.0.0.1 to 127.0.0.1:5060 belong to trunk "intl" (international), to 127.0.0.1:5062 to
"ent-400" (enterprise); 192.0.2.50 and IPv6 sources match no trunk ("-", unknown-source).
Each call below states its expected verdict next to the numbers it carries. A retransmitted
TCP segment is one call (one row), as is the fragmented INVITE. No call exercises label-mvno:
under the built-in policy an MVNO (+86) caller is rejected first on either trunk
(intl-domestic-caller, or enterprise-not-whitelisted as no MVNO number is whitelisted); nor
the enterprise-foreign-network/-hours/-rate rules, which the built-in policy leaves inactive
(no own_segments, no hours, limits of 6000 and 600 calls per minute).

With --counts it also writes testdata/pcap/counts.tsv: for each capture above and each one
listed in ../shared/corpus/pcap/INDEX.tsv, the number of SIP messages tshark decodes (needs
tshark; the exact command is in the file's comment lines). Without tshark, run it without
--counts: the captures and expected.tsv do not depend on it.

    python3 scripts/gen_testdata.py --counts

With --big N OUT.pcap it writes only OUT.pcap, a large classic pcap (Ethernet/IPv4/UDP) for
the replay throughput benchmark (scripts/bench_replay.sh): N units, 1000 per second of
capture time from 2026-11-30T02:00:00Z, with overlapping dialogs as on a busy gateway, a
unit being, per 20: 10 allowed foreign callers on intl (INVITE 180 200 ACK BYE 200), 3 +86
callers on intl, 2 non-whitelisted callers on ent-400, 1 blacklisted caller (+8613800000001)
on intl (INVITE, 403 or 608, ACK), 2 OPTIONS keep-alives and their 200, 2 REGISTERs and their
401. Deterministic, streamed to disk (memory does not grow with N), about 4.3 packets per
unit; it prints the counts replay should report.

    python3 scripts/gen_testdata.py --big 200000 target/bench/replay-big.pcap
"""

import hashlib
import ipaddress
import os
import struct
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT_DIR = os.path.join(ROOT, "testdata", "pcap")
REL_DIR = "testdata/pcap"

T0_US = 1796004000 * 1_000_000  # 2026-11-30T02:00:00Z
STEP_US = 100_000  # 100 ms between packets

PROXY4 = "127.0.0.1"
UAC4 = "127.0.0.1"
FOREIGN4 = "192.0.2.50"  # no trunk claims it
UAS_CONTACT = "127.0.0.1:5080"  # the core the proxy forwards to
INTL, ENT = 5060, 5062
UAC_PORT = 5070

MAC_PROXY = bytes.fromhex("020000000001")
MAC_UAC = bytes.fromhex("02000000000a")

INTL_CALLEE = "+861012345678"
ENT_CALLEE = "+861087654321"


def h(*parts, n=16):
    """Deterministic hex token from text parts."""
    return hashlib.sha1("/".join(str(p) for p in parts).encode()).hexdigest()[:n]


# ---------------------------------------------------------------------------------------
# Checksums, IP, UDP, TCP
# ---------------------------------------------------------------------------------------

def csum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return (~s) & 0xFFFF


def ip_bytes(addr):
    return ipaddress.ip_address(addr).packed


def is_v6(addr):
    return ":" in addr


def pseudo(src, dst, proto, length):
    s, d = ip_bytes(src), ip_bytes(dst)
    if len(s) == 16:
        return s + d + struct.pack("!IxxxB", length, proto)
    return s + d + struct.pack("!xBH", proto, length)


def l4_checksum(src, dst, proto, seg):
    c = csum(pseudo(src, dst, proto, len(seg)) + seg)
    if proto == 17 and c == 0:
        c = 0xFFFF
    return c


def udp(src, sport, dst, dport, payload):
    hdr = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0)
    c = l4_checksum(src, dst, 17, hdr + payload)
    return struct.pack("!HHHH", sport, dport, 8 + len(payload), c) + payload


TCP_FIN, TCP_SYN, TCP_PSH, TCP_ACK = 0x01, 0x02, 0x08, 0x10


def tcp(src, sport, dst, dport, seq, ack, flags, payload, mss=None):
    opts = struct.pack("!BBH", 2, 4, mss) if mss else b""
    off = (20 + len(opts)) // 4
    ack_v = ack if flags & TCP_ACK else 0

    def build(c):
        return struct.pack("!HHIIBBHHH", sport, dport, seq & 0xFFFFFFFF, ack_v & 0xFFFFFFFF,
                           off << 4, flags, 65535, c, 0) + opts + payload

    return build(l4_checksum(src, dst, 6, build(0)))


class IpIds:
    """Per-capture IPv4 identification / IPv6 fragment id counter (deterministic)."""

    def __init__(self, start):
        self.n = start

    def next(self):
        self.n = (self.n + 1) & 0xFFFF
        return self.n


def ipv4(src, dst, proto, payload, ident, flags_off=0, ttl=64):
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), ident, flags_off, ttl,
                      proto, 0, ip_bytes(src), ip_bytes(dst))
    c = csum(hdr)
    return hdr[:10] + struct.pack("!H", c) + hdr[12:] + payload


def ipv6(src, dst, nh, payload, hlim=64):
    return struct.pack("!IHBB16s16s", 6 << 28, len(payload), nh, hlim,
                       ip_bytes(src), ip_bytes(dst)) + payload


def ip_packets(src, dst, proto, l4, ids, mtu=1500, df=False):
    """One L4 segment as a list of IP packets, fragmented to `mtu` when it does not fit."""
    if is_v6(src):
        if 40 + len(l4) <= mtu:
            return [ipv6(src, dst, proto, l4)]
        ident = 0x5F3A0000 | ids.next()
        per = (mtu - 40 - 8) // 8 * 8
        out = []
        for off in range(0, len(l4), per):
            chunk = l4[off:off + per]
            more = 1 if off + per < len(l4) else 0
            frag = struct.pack("!BBHI", proto, 0, (off // 8) << 3 | more, ident)
            out.append(ipv6(src, dst, 44, frag + chunk))
        return out
    ident = ids.next()
    if 20 + len(l4) <= mtu:
        return [ipv4(src, dst, proto, l4, ident, 0x4000 if df else 0)]
    per = (mtu - 20) // 8 * 8
    out = []
    for off in range(0, len(l4), per):
        chunk = l4[off:off + per]
        more = 0x2000 if off + per < len(l4) else 0
        out.append(ipv4(src, dst, proto, chunk, ident, more | (off // 8)))
    return out


# ---------------------------------------------------------------------------------------
# Link layers: each takes (ip packet, outgoing?) and returns the frame
# ---------------------------------------------------------------------------------------

def ethertype_of(pkt):
    return 0x86DD if pkt[0] >> 4 == 6 else 0x0800


def link_ether(pkt, outgoing, vlan=None):
    dst, src = (MAC_UAC, MAC_PROXY) if outgoing else (MAC_PROXY, MAC_UAC)
    if vlan is None:
        return dst + src + struct.pack("!H", ethertype_of(pkt)) + pkt
    return dst + src + struct.pack("!HHH", 0x8100, vlan, ethertype_of(pkt)) + pkt


ARPHRD_LOOPBACK = 772
PACKET_HOST, PACKET_OUTGOING = 0, 4


def link_sll(pkt, outgoing):
    ptype = PACKET_OUTGOING if outgoing else PACKET_HOST
    return struct.pack("!HHH8sH", ptype, ARPHRD_LOOPBACK, 6, b"\0" * 8, ethertype_of(pkt)) + pkt


def link_sll2(pkt, outgoing):
    ptype = PACKET_OUTGOING if outgoing else PACKET_HOST
    return struct.pack("!HHIHBB8s", ethertype_of(pkt), 0, 1, ARPHRD_LOOPBACK, ptype, 6,
                       b"\0" * 8) + pkt


def link_raw(pkt, outgoing):
    return pkt


# ---------------------------------------------------------------------------------------
# File formats
# ---------------------------------------------------------------------------------------

LINKTYPE_ETHERNET, LINKTYPE_RAW, LINKTYPE_SLL, LINKTYPE_SLL2 = 1, 101, 113, 276
SNAPLEN = 262144


def pcap_bytes(linktype, packets, cut_last=False):
    out = bytearray(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, SNAPLEN, linktype))
    for i, (ts, frame) in enumerate(packets):
        rec = struct.pack("<IIII", ts // 1_000_000, ts % 1_000_000, len(frame), len(frame))
        if cut_last and i == len(packets) - 1:
            # Record header complete, packet data cut off half-way.
            out += rec + frame[: len(frame) // 2]
        else:
            out += rec + frame
    return bytes(out)


def pcapng_option(code, value):
    pad = (-len(value)) % 4
    return struct.pack("<HH", code, len(value)) + value + b"\0" * pad


def pcapng_block(btype, body):
    total = 12 + len(body)
    return struct.pack("<II", btype, total) + body + struct.pack("<I", total)


def pcapng_bytes(linktype, packets):
    shb_opts = pcapng_option(4, b"sipfence scripts/gen_testdata.py") + pcapng_option(0, b"")
    out = bytearray(pcapng_block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1)
                                 + shb_opts))
    idb_opts = (pcapng_option(2, b"lo") + pcapng_option(9, bytes([6]))
                + pcapng_option(0, b""))
    out += pcapng_block(0x00000001, struct.pack("<HHI", linktype, 0, SNAPLEN) + idb_opts)
    for ts, frame in packets:
        pad = (-len(frame)) % 4
        body = struct.pack("<IIIII", 0, ts >> 32, ts & 0xFFFFFFFF, len(frame), len(frame))
        out += pcapng_block(0x00000006, body + frame + b"\0" * pad)
    return bytes(out)


class Capture:
    """Packets of one file, stamped 100 ms apart from T0."""

    def __init__(self, link, ids_start):
        self.link = link
        self.packets = []
        self.ids = IpIds(ids_start)

    def frame(self, ip_pkt, outgoing):
        self.packets.append((T0_US + len(self.packets) * STEP_US, self.link(ip_pkt, outgoing)))

    def udp(self, src, dst, payload, outgoing, mtu=1500):
        (sa, sp), (da, dp) = src, dst
        for p in ip_packets(sa, da, 17, udp(sa, sp, da, dp, payload), self.ids, mtu):
            self.frame(p, outgoing)


# ---------------------------------------------------------------------------------------
# SIP
# ---------------------------------------------------------------------------------------

REASONS = {100: "Trying", 180: "Ringing", 200: "OK", 403: "Forbidden",
           433: "Anonymity Disallowed", 608: "Rejected"}


def hostport(addr, port):
    return "[%s]:%d" % (addr, port) if is_v6(addr) else "%s:%d" % (addr, port)


def host(addr):
    return "[%s]" % addr if is_v6(addr) else addr


class Call:
    """One call and the verdict the built-in policy gives its initial INVITE.

    caller: the From user ("+4420...", "110", national "13812345678"), or "anonymous",
    or "" for a From URI without a user part.
    expect: (trunk, verdict, code, rule) as in expected.tsv.
    """

    def __init__(self, call_id, caller, expect, *, uac=(UAC4, UAC_PORT), proxy=(PROXY4, INTL),
                 pai=None, privacy=None, transport="UDP", big=False, isup=None):
        self.call_id = call_id
        self.caller = caller
        self.expect = expect
        self.uac = uac
        self.proxy = proxy
        self.pai = pai
        self.privacy = privacy
        self.transport = transport
        self.big = big
        self.isup = isup
        self.callee = ENT_CALLEE if proxy[1] == ENT else INTL_CALLEE
        self.ftag = h(call_id, "from", n=10)
        self.ttag = h(call_id, "to", n=10)

    @property
    def rejected(self):
        return self.expect[1] == "reject"

    @property
    def code(self):
        return int(self.expect[2])

    def branch(self, what):
        return "z9hG4bK" + h(self.call_id, what)

    def via(self, what):
        return "Via: SIP/2.0/%s %s;branch=%s;rport" % (
            self.transport, hostport(*self.uac), self.branch(what))

    def from_hdr(self):
        ua = host(self.uac[0])
        if self.caller == "":
            return "From: <sip:%s>;tag=%s" % (ua, self.ftag)
        if self.caller == "anonymous":
            return 'From: "Anonymous" <sip:anonymous@anonymous.invalid>;tag=%s' % self.ftag
        return 'From: "%s" <sip:%s@%s;user=phone>;tag=%s' % (self.caller, self.caller, ua,
                                                            self.ftag)

    def to_hdr(self, tag):
        v = "To: <sip:%s@%s;user=phone>" % (self.callee, host(self.proxy[0]))
        return v + (";tag=%s" % self.ttag if tag else "")

    def ruri(self):
        return "sip:%s@%s;user=phone" % (self.callee, hostport(*self.proxy))

    def contact(self):
        user = self.caller + "@" if self.caller not in ("", "anonymous") else ""
        return "Contact: <sip:%s%s;transport=%s>" % (user, hostport(*self.uac),
                                                      self.transport.lower())

    def route(self):
        return "<sip:%s;transport=%s;lr>" % (hostport(*self.proxy), self.transport.lower())

    def sdp(self, addr, port, sess, big=False):
        ipv = "IP6" if is_v6(addr) else "IP4"
        lines = [
            "v=0",
            "o=- %d %d IN %s %s" % (sess, sess, ipv, addr),
            "s=-",
            "c=IN %s %s" % (ipv, addr),
            "t=0 0",
            "m=audio %d RTP/AVP 8 0 18 101" % port,
            "a=rtpmap:8 PCMA/8000",
            "a=rtpmap:0 PCMU/8000",
            "a=rtpmap:18 G729/8000",
            "a=fmtp:18 annexb=no",
            "a=rtpmap:101 telephone-event/8000",
            "a=fmtp:101 0-15",
            "a=ptime:20",
            "a=sendrecv",
        ]
        if big:
            # A long offer: ICE candidates and a video stream, as softphones send.
            lines.insert(5, "a=ice-ufrag:%s" % h(self.call_id, "ufrag", n=8))
            lines.insert(6, "a=ice-pwd:%s" % h(self.call_id, "pwd", n=24))
            for i in range(18):
                lines.append("a=candidate:%d 1 UDP %d %s %d typ host generation 0" % (
                    i + 1, 2130706431 - i, addr, port + 2 * i))
            lines.append("m=video %d RTP/AVP 96 97 98" % (port + 100))
            for pt, codec in ((96, "H264"), (97, "H264"), (98, "VP8")):
                lines.append("a=rtpmap:%d %s/90000" % (pt, codec))
                lines.append("a=rtcp-fb:%d nack" % pt)
                lines.append("a=rtcp-fb:%d nack pli" % pt)
                lines.append("a=rtcp-fb:%d ccm fir" % pt)
            lines.append("a=fmtp:96 profile-level-id=42e01f;packetization-mode=1")
            lines.append("a=fmtp:97 profile-level-id=42e01f;packetization-mode=0")
            for i in range(8):
                lines.append("a=candidate:%d 1 UDP %d %s %d typ host generation 0" % (
                    i + 30, 2130706331 - i, addr, port + 100 + 2 * i))
            lines.append("a=sendrecv")
        return "\r\n".join(lines) + "\r\n"

    @staticmethod
    def message(start, headers, body="", content_type="application/sdp"):
        if isinstance(body, str):
            body = body.encode()
        if body:
            headers = headers + ["Content-Type: " + content_type]
        headers = headers + ["Content-Length: %d" % len(body)]
        return ("\r\n".join([start] + headers) + "\r\n\r\n").encode() + body

    def invite(self):
        hs = [self.via("invite"), "Max-Forwards: 70", self.from_hdr(), self.to_hdr(False),
              "Call-ID: " + self.call_id, "CSeq: 1 INVITE", self.contact()]
        if self.pai:
            hs += ["P-Asserted-Identity: " + v for v in self.pai]
        if self.privacy:
            hs.append("Privacy: " + self.privacy)
        hs += ["Allow: INVITE, ACK, CANCEL, BYE, OPTIONS", "Supported: timer",
               "User-Agent: sipfence-testdata"]
        sess = int(h(self.call_id, "sess", n=8), 16)
        body = self.sdp(self.uac[0], 18000, sess, self.big)
        if self.isup is not None:
            # SIP-I: SDP and the IAM as two parts of one multipart/mixed body (RFC 3204).
            b = "sipi-" + h(self.call_id, "boundary", n=8)
            body = (("--%s\r\nContent-Type: application/sdp\r\n\r\n%s\r\n--%s\r\n"
                     "Content-Type: application/ISUP;version=itu-t92+\r\n"
                     "Content-Disposition: signal;handling=required\r\n\r\n")
                    % (b, body, b)).encode() + self.isup + ("\r\n--%s--\r\n" % b).encode()
            return self.message("INVITE %s SIP/2.0" % self.ruri(), hs + ["MIME-Version: 1.0"],
                                body, "multipart/mixed;boundary=%s" % b)
        return self.message("INVITE %s SIP/2.0" % self.ruri(), hs, body)

    def response(self, code, cseq="1 INVITE", via="invite", tag=True):
        hs = [self.via(via), self.from_hdr(), self.to_hdr(tag), "Call-ID: " + self.call_id,
              "CSeq: " + cseq]
        body = ""
        if code in (180, 200) and cseq.endswith("INVITE"):
            hs.append("Record-Route: " + self.route())
            hs.append("Contact: <sip:%s@%s>" % (self.callee, UAS_CONTACT))
            if code == 200:
                sess = int(h(self.call_id, "answer", n=8), 16)
                body = self.sdp("127.0.0.1", 30000, sess)
        if code >= 300:
            hs.append("Server: sipfence")
        return self.message("SIP/2.0 %d %s" % (code, REASONS[code]), hs, body)

    def ack(self):
        if self.rejected:
            # ACK of a non-2xx final response: same branch and Request-URI as the INVITE.
            hs = [self.via("invite"), "Max-Forwards: 70", self.from_hdr(), self.to_hdr(True),
                  "Call-ID: " + self.call_id, "CSeq: 1 ACK"]
            return self.message("ACK %s SIP/2.0" % self.ruri(), hs)
        hs = [self.via("ack"), "Route: " + self.route(), "Max-Forwards: 70", self.from_hdr(),
              self.to_hdr(True), "Call-ID: " + self.call_id, "CSeq: 1 ACK"]
        return self.message("ACK sip:%s@%s SIP/2.0" % (self.callee, UAS_CONTACT), hs)

    def bye(self):
        hs = [self.via("bye"), "Route: " + self.route(), "Max-Forwards: 70", self.from_hdr(),
              self.to_hdr(True), "Call-ID: " + self.call_id, "CSeq: 2 BYE"]
        return self.message("BYE sip:%s@%s SIP/2.0" % (self.callee, UAS_CONTACT), hs)

    def dialog(self):
        """The call's messages as the UAC side sees them: (from_uac, bytes)."""
        if self.rejected:
            return [(True, self.invite()), (False, self.response(self.code)), (True, self.ack())]
        return [
            (True, self.invite()),
            (False, self.response(100, tag=False)),
            (False, self.response(180)),
            (False, self.response(200)),
            (True, self.ack()),
            (True, self.bye()),
            (False, self.response(200, cseq="2 BYE", via="bye")),
        ]


def udp_calls(cap, calls, mtu=1500):
    for c in calls:
        for from_uac, msg in c.dialog():
            if from_uac:
                cap.udp(c.uac, c.proxy, msg, False, mtu)
            else:
                cap.udp(c.proxy, c.uac, msg, True, mtu)


# ---------------------------------------------------------------------------------------
# TCP
# ---------------------------------------------------------------------------------------

class TcpConn:
    """One TCP connection from a client (the UAC side) to the proxy, with real sequence
    and acknowledgement numbers. Every segment acknowledges all the peer has sent."""

    def __init__(self, cap, cli, srv, isn_c, isn_s):
        self.cap, self.cli, self.srv = cap, cli, srv
        self.seq = {True: isn_c, False: isn_s}  # next seq to send, by from_client
        self.handshake()

    def seg(self, from_client, flags, payload=b"", seq=None, mss=None):
        (sa, sp), (da, dp) = (self.cli, self.srv) if from_client else (self.srv, self.cli)
        s = self.seq[from_client] if seq is None else seq
        ack = self.seq[not from_client]
        t = tcp(sa, sp, da, dp, s, ack, flags, payload, mss)
        # Loopback: MTU 65536, so TCP segments are never IP-fragmented.
        for p in ip_packets(sa, da, 6, t, self.cap.ids, mtu=65535, df=True):
            self.cap.frame(p, not from_client)
        if seq is None:
            self.seq[from_client] += len(payload) + (1 if flags & (TCP_SYN | TCP_FIN) else 0)
        return s

    def handshake(self):
        self.seg(True, TCP_SYN, mss=65495)
        self.seg(False, TCP_SYN | TCP_ACK, mss=65495)
        self.seg(True, TCP_ACK)

    def send(self, from_client, data):
        return self.seg(from_client, TCP_PSH | TCP_ACK, data)

    def retransmit(self, from_client, seq, data):
        self.seg(from_client, TCP_PSH | TCP_ACK, data, seq=seq)

    def ack(self, from_client):
        self.seg(from_client, TCP_ACK)

    def close(self):
        self.seg(True, TCP_FIN | TCP_ACK)
        self.seg(False, TCP_FIN | TCP_ACK)
        self.seg(True, TCP_ACK)


# ---------------------------------------------------------------------------------------
# The captures
# ---------------------------------------------------------------------------------------

def E(trunk, verdict="allow", code="-", rule="-"):
    return (trunk, verdict, str(code), rule)


def rules_udp():
    def C(name, caller, expect, **kw):
        return Call("udp-%s@%s" % (name, kw.get("uac", (UAC4,))[0]), caller, expect, **kw)

    ent = (PROXY4, ENT)
    calls = [
        # Unknown source: 192.0.2.50 is in no trunk's sources.
        C("unknown-source", "+442071234567", E("-", "reject", 403, "unknown-source"),
          uac=(FOREIGN4, 5060)),
        C("withheld-caller", "anonymous", E("intl", "reject", 433, "withheld-caller"),
          privacy="id"),
        C("blank-anonymous", "anonymous", E("intl", "reject", 433, "blank-caller")),
        C("blank-no-user", "", E("intl", "reject", 433, "blank-caller")),
        C("blank-pai-anonymous", "+442071234567", E("intl", "reject", 433, "blank-caller"),
          pai=["<sip:anonymous@anonymous.invalid>"]),
        # 154 is an unallocated mobile prefix; +12345 is too short for any E.164 number.
        C("numbering-plan-154", "+8615412345678", E("intl", "reject", 403, "numbering-plan")),
        C("numbering-plan-short", "+12345", E("intl", "reject", 403, "numbering-plan")),
        # 145: data-only card.
        C("no-voice-number", "+8614512345678", E("intl", "reject", 403, "no-voice-number")),
        C("blacklist-exact", "+8613800000001", E("intl", "reject", 608, "blacklist")),
        # Segment +8617099999*, on the enterprise trunk: the blacklist comes first.
        C("blacklist-segment", "+8617099999123", E("ent-400", "reject", 608, "blacklist"),
          proxy=ent),
        C("forged-110", "110", E("intl", "reject", 403, "intl-forged-service")),
        C("forged-10086", "+8610086", E("intl", "reject", 403, "intl-forged-service")),
        C("forged-protected", "+861066666110", E("intl", "reject", 403, "intl-forged-service")),
        C("domestic-mobile", "+8613812345678", E("intl", "reject", 403, "intl-domestic-caller")),
        # National form without '+': normalised to +8613812345678.
        C("domestic-national", "13812345678", E("intl", "reject", 403, "intl-domestic-caller")),
        C("roamer", "+8613900000000", E("intl")),
        C("ent-not-whitelisted", "+8613812345678",
          E("ent-400", "reject", 403, "enterprise-not-whitelisted"), proxy=ent),
        # An MVNO caller (170) on the enterprise trunk: not whitelisted, so rejected before
        # label-mvno could fire.
        C("ent-mvno", "+8617012345678",
          E("ent-400", "reject", 403, "enterprise-not-whitelisted"), proxy=ent),
        C("ent-whitelisted-range", "+8613912345678", E("ent-400"), proxy=ent),
        C("ent-whitelisted-400", "+864008001234", E("ent-400"), proxy=ent),
        C("ent-whitelisted-segment", "+861055551234", E("ent-400"), proxy=ent),
        # Generic number: a +86 From over a foreign asserted identity.
        C("generic-number", "+8613812345678", E("intl", "rewrite", "-", "generic-number"),
          pai=["<sip:+442071234567@127.0.0.1;user=phone>"]),
        # +44 95588: foreign, but 95588 (a bank's service number) once the 44 is taken off.
        C("service-shape", "+4495588", E("intl", "label", "-", "label-service-shape")),
        C("foreign-uk", "+442071234567", E("intl")),
        C("foreign-us", "+12125550123", E("intl")),
        # PAI equal to From (sip and tel form): nothing to rewrite.
        C("foreign-pai", "+12125550123", E("intl"),
          pai=["<sip:+12125550123@127.0.0.1;user=phone>", "<tel:+12125550123>"]),
    ]
    cap = Capture(link_ether, 0x1000)
    udp_calls(cap, calls)
    return cap, calls


def rules_tcp():
    def C(name, caller, expect, port, ip=UAC4, **kw):
        return Call("tcp-%s@%s" % (name, ip), caller, expect, uac=(ip, port), transport="TCP",
                    **kw)

    ent = (PROXY4, ENT)
    a = C("foreign-uk", "+442071234567", E("intl"), 40100)
    b = C("withheld-caller", "+12125550123", E("intl", "reject", 433, "withheld-caller"), 40100,
          privacy="id")
    c = C("blacklist", "+8613800000002", E("intl", "reject", 608, "blacklist"), 40100)
    d = C("domestic-mobile", "+8618612345678", E("intl", "reject", 403, "intl-domestic-caller"),
          40100)
    e = C("generic-number", "+8613812345678", E("intl", "rewrite", "-", "generic-number"),
          40100, pai=["<tel:+12125550123>"])
    f = C("foreign-us", "+12125550123", E("intl"), 40100)
    g = C("ent-whitelisted", "+8613912345678", E("ent-400"), 40102, proxy=ent)
    hh = C("ent-not-whitelisted", "+8613812345678",
           E("ent-400", "reject", 403, "enterprise-not-whitelisted"), 40102, proxy=ent)
    i = C("ent-whitelisted-400", "+864008001234", E("ent-400"), 40102, proxy=ent)
    j = C("unknown-source", "+442071234567", E("-", "reject", 403, "unknown-source"), 40104,
          ip=FOREIGN4)

    cap = Capture(link_ether, 0x2000)

    def rest(conn, call, skip=1):
        for from_uac, msg in call.dialog()[skip:]:
            conn.send(from_uac, msg)

    # Connection 1: intl trunk, several calls multiplexed on one connection.
    c1 = TcpConn(cap, a.uac, a.proxy, 1_000_000_000, 3_000_000_000)
    # A's INVITE is retransmitted (same seq) before the proxy acknowledges it.
    inv = a.invite()
    s = c1.send(True, inv)
    c1.retransmit(True, s, inv)
    c1.ack(False)
    rest(c1, a)
    # B and C: two INVITEs in one segment, then their rejections and ACKs.
    c1.send(True, b.invite() + c.invite())
    for call in (b, c):
        rest(c1, call)
    # D: one INVITE split across two segments, in the middle of its header section.
    inv = d.invite()
    cut = inv.index(b"\r\nCall-ID:") + 5
    c1.send(True, inv[:cut])
    c1.ack(False)
    c1.send(True, inv[cut:])
    rest(c1, d)
    # E, F: one message per segment; F's ACK and BYE go out together in one segment.
    rest(c1, e, 0)
    fd = f.dialog()
    for from_uac, msg in fd[:4]:
        c1.send(from_uac, msg)
    c1.send(True, fd[4][1] + fd[5][1])
    c1.send(False, fd[6][1])
    c1.close()

    # Connection 2: enterprise trunk. G's INVITE is split inside its SDP body.
    c2 = TcpConn(cap, g.uac, g.proxy, 1_100_000_000, 3_100_000_000)
    inv = g.invite()
    cut = inv.index(b"\r\n\r\n") + 4 + 40
    c2.send(True, inv[:cut])
    c2.ack(False)
    c2.send(True, inv[cut:])
    rest(c2, g)
    rest(c2, hh, 0)
    rest(c2, i, 0)
    c2.close()

    # Connection 3: from an address no trunk claims.
    c3 = TcpConn(cap, j.uac, j.proxy, 1_200_000_000, 3_200_000_000)
    rest(c3, j, 0)
    c3.close()
    return cap, [a, b, c, d, e, f, g, hh, i, j]


def vlan_ipv6_frag():
    def C(name, caller, expect, **kw):
        return Call("vlan-%s@gen.sipfence.test" % name, caller, expect, **kw)

    v6uac, v6proxy = ("::1", UAC_PORT), ("::1", INTL)
    v4 = [
        C("v4-foreign-us", "+12125550123", E("intl")),
        C("v4-ent-not-whitelisted", "+8618912345678",
          E("ent-400", "reject", 403, "enterprise-not-whitelisted"), proxy=(PROXY4, ENT)),
        # About 3000 bytes: three IPv4 fragments.
        C("v4-frag-foreign-uk", "+442071234567", E("intl"), big=True),
    ]
    v6 = [
        # Trunk sources are 127.0.0.0/8 only: every IPv6 call is from an unknown source.
        C("v6-foreign-us", "+12125550123", E("-", "reject", 403, "unknown-source"),
          uac=v6uac, proxy=v6proxy),
        C("v6-frag-foreign-uk", "+442071234567", E("-", "reject", 403, "unknown-source"),
          uac=v6uac, proxy=v6proxy, big=True),
    ]
    cap = Capture(lambda p, o: link_ether(p, o, vlan=100 if p[0] >> 4 == 4 else 200), 0x3000)
    udp_calls(cap, v4)
    udp_calls(cap, v6)
    return cap, v4 + v6


def sll():
    calls = [
        Call("sll-foreign-us@127.0.0.1", "+12125550123", E("intl")),
        Call("sll-forged-110@127.0.0.1", "110", E("intl", "reject", 403, "intl-forged-service")),
    ]
    cap = Capture(link_sll, 0x4000)
    udp_calls(cap, calls)
    return cap, calls


def sll2():
    ent = (PROXY4, ENT)
    calls = [
        Call("sll2-ent-whitelisted@127.0.0.1", "+8613912340001", E("ent-400"), proxy=ent),
        Call("sll2-blacklist@127.0.0.1", "+8613800000002", E("intl", "reject", 608, "blacklist")),
    ]
    cap = Capture(link_sll2, 0x5000)
    udp_calls(cap, calls)
    return cap, calls


def rawip():
    calls = [
        Call("raw-foreign-uk@127.0.0.1", "+442071234567", E("intl")),
        Call("raw-numbering-plan@127.0.0.1", "+8619412345678",
             E("intl", "reject", 403, "numbering-plan")),
        Call("raw-v6-foreign-us@gen.sipfence.test", "+12125550123",
             E("-", "reject", 403, "unknown-source"), uac=("::1", UAC_PORT),
             proxy=("::1", INTL)),
    ]
    cap = Capture(link_raw, 0x6000)
    udp_calls(cap, calls)
    return cap, calls


def truncated():
    calls = [
        Call("trunc-foreign-us@127.0.0.1", "+12125550123", E("intl")),
        Call("trunc-domestic@127.0.0.1", "+8613812345678",
             E("intl", "reject", 403, "intl-domestic-caller")),
    ]
    cut = Call("trunc-cut-off@127.0.0.1", "+442071234567", E("intl"))
    cap = Capture(link_ether, 0x7000)
    udp_calls(cap, calls)
    # The last record: an INVITE cut half-way, so it yields no call and no verdict.
    cap.udp(cut.uac, cut.proxy, cut.invite(), False)
    return cap, calls


# ---------------------------------------------------------------------------------------
# SIP-I: ISUP IAMs (ITU-T Q.763)
# ---------------------------------------------------------------------------------------

ISUP_CALLING, ISUP_GENERIC, ISUP_ORIGINAL_CALLED = 0x0A, 0xC0, 0x28
NAI_NATIONAL, NAI_INTERNATIONAL = 3, 4


def isup_signals(digits):
    """Odd/even indicator and address signals, two per octet, first in the low nibble."""
    nib = [int(c) for c in digits]
    odd = len(nib) % 2
    if odd:
        nib.append(0)
    return odd, bytes(nib[i] | (nib[i + 1] << 4) for i in range(0, len(nib), 2))


def isup_number(digits, nai, presentation=0, screening=3):
    """Calling Party Number contents (Q.763 3.10): ISDN plan, presentation, screening."""
    odd, sig = isup_signals(digits)
    return bytes([(odd << 7) | nai, 0x10 | (presentation << 2) | screening]) + sig


def isup_iam(called, optional):
    """An IAM from its message type code: fixed part, pointers, Called Party Number
    (national), then the optional parameters [(code, contents)] and END."""
    odd, sig = isup_signals(called)
    cdpn = bytes([(odd << 7) | NAI_NATIONAL, 0x10]) + sig
    fixed = bytes([0x01, 0x00, 0x20, 0x01, 0x0A, 0x00])
    if optional:
        ptrs = bytes([2, 2 + len(cdpn)])
        opt = b"".join(bytes([c, len(v)]) + v for c, v in optional) + b"\x00"
    else:
        ptrs, opt = bytes([2, 0]), b""
    return fixed + ptrs + bytes([len(cdpn)]) + cdpn + opt


def sipi():
    def C(name, caller, isup, expect, **kw):
        return Call("sipi-%s@127.0.0.1" % name, caller, expect, isup=isup,
                    pai=["<tel:%s>" % caller], **kw)

    def iam(*optional):
        return isup_iam("861012345678", list(optional))

    def cgpn(d, nai=NAI_INTERNATIONAL, **kw):
        return (ISUP_CALLING, isup_number(d, nai, **kw))

    uk = "+442071234567"
    calls = [
        C("foreign-uk", uk, iam(cgpn("442071234567")), E("intl")),
        # Same caller, national nature in ISUP for a +86 roamer: one number, allowed.
        C("roamer-national", "+8613900000000", iam(cgpn("13900000000", NAI_NATIONAL)),
          E("intl")),
        # Clean SIP headers, a domestic mobile inside the IAM.
        C("domestic-in-isup", uk, iam(cgpn("8613812345678")),
          E("intl", "reject", 403, "intl-domestic-caller")),
        C("forged-110-in-isup", uk, iam(cgpn("110", NAI_NATIONAL)),
          E("intl", "reject", 403, "intl-forged-service")),
        C("blacklist-in-isup", uk, iam(cgpn("8613800000001")),
          E("intl", "reject", 608, "blacklist")),
        C("mismatch", uk, iam(cgpn("442079999999")),
          E("intl", "reject", 403, "isup-mismatch")),
        # A Generic Number (additional calling party number, qualifier 6) to delete, with
        # an Original Called Number after it that must stay.
        C("generic-number", uk,
          iam(cgpn("442071234567"),
              (ISUP_GENERIC, bytes([6]) + isup_number("8613812345678", NAI_INTERNATIONAL)),
              (ISUP_ORIGINAL_CALLED, isup_number("861087654321", NAI_INTERNATIONAL, 0, 0))),
          E("intl", "rewrite", "-", "generic-number")),
        C("no-calling-number", uk, iam(), E("intl", "reject", 433, "blank-caller")),
        C("unreadable-iam", uk, iam(cgpn("442071234567"))[:-4],
          E("intl", "reject", 403, "isup-mismatch")),
    ]
    cap = Capture(link_ether, 0x8000)
    udp_calls(cap, calls)
    return cap, calls


# ---------------------------------------------------------------------------------------
# SIP over SCTP (RFC 4168) and over WebSocket (RFC 7118)
# ---------------------------------------------------------------------------------------

def _crc32c_table():
    t = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        t.append(c)
    return t


CRC32C = _crc32c_table()


def crc32c(data):
    c = 0xFFFFFFFF
    for b in data:
        c = CRC32C[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


SCTP_DATA, SCTP_INIT, SCTP_INIT_ACK, SCTP_SACK = 0, 1, 2, 3
SCTP_SHUTDOWN, SCTP_SHUTDOWN_ACK, SCTP_COOKIE_ECHO, SCTP_COOKIE_ACK = 7, 8, 10, 11
SCTP_SHUTDOWN_COMPLETE, SCTP_IDATA = 14, 64


def sctp_chunk(kind, flags, value):
    c = struct.pack("!BBH", kind, flags, 4 + len(value)) + value
    return c + b"\0" * ((-len(c)) % 4)


def sctp_packet(sport, dport, vtag, chunks):
    hdr = struct.pack("!HHI", sport, dport, vtag)
    body = b"".join(chunks)
    # CRC32c over the packet with a zero checksum, stored as the Linux stack stores it.
    return hdr + struct.pack("<I", crc32c(hdr + b"\0\0\0\0" + body)) + body


class SctpAssoc:
    """One SCTP association from a client to the proxy, with real verification tags,
    TSNs and stream sequence numbers; each side's SACK acknowledges what the other sent."""

    def __init__(self, cap, cli, srv, tag_c, tag_s, tsn_c, tsn_s, ppid=0, idata=False):
        self.cap, self.cli, self.srv, self.ppid = cap, cli, srv, ppid
        self.tag = {True: tag_s, False: tag_c}  # the tag a packet carries: the receiver's
        self.tsn = {True: tsn_c, False: tsn_s}  # next TSN to send, by from_client
        self.ssn = {True: 0, False: 0}
        # I-DATA (RFC 8260): both ends list chunk type 64 as a supported extension
        # (parameter 0x8008, padded to four bytes), and messages carry identifiers.
        self.idata = idata
        self.mid = {True: {}, False: {}}  # next message identifier, by stream
        ext = struct.pack("!HHB", 0x8008, 5, SCTP_IDATA) + b"\0\0\0" if idata else b""
        init = struct.pack("!IIHHI", tag_c, 106496, 10, 65535, tsn_c) + ext
        self.packet(True, [sctp_chunk(SCTP_INIT, 0, init)], vtag=0)
        cookie = h(tag_c, tag_s, "cookie", n=32).encode()
        init_ack = struct.pack("!IIHHI", tag_s, 106496, 10, 10, tsn_s) + ext
        init_ack += struct.pack("!HH", 7, 4 + len(cookie)) + cookie
        self.packet(False, [sctp_chunk(SCTP_INIT_ACK, 0, init_ack)])
        self.packet(True, [sctp_chunk(SCTP_COOKIE_ECHO, 0, cookie)])
        self.packet(False, [sctp_chunk(SCTP_COOKIE_ACK, 0, b"")])

    def packet(self, from_client, chunks, vtag=None):
        (sa, sp), (da, dp) = (self.cli, self.srv) if from_client else (self.srv, self.cli)
        v = self.tag[from_client] if vtag is None else vtag
        seg = sctp_packet(sp, dp, v, chunks)
        for p in ip_packets(sa, da, 132, seg, self.cap.ids, mtu=65535, df=True):
            self.cap.frame(p, not from_client)

    def sack(self, from_client):
        cum = self.tsn[not from_client] - 1
        return sctp_chunk(SCTP_SACK, 0, struct.pack("!IIHH", cum & 0xFFFFFFFF, 106496, 0, 0))

    def data(self, from_client, payload, flags=3, new_message=True):
        """One DATA chunk (flags: B=2, E=1, U=4); advances the TSN."""
        if self.idata:
            return self.message_chunks(from_client, 0, payload, len(payload))[0]
        tsn = self.tsn[from_client]
        self.tsn[from_client] += 1
        ssn = self.ssn[from_client]
        if flags & 1 and not flags & 4:
            self.ssn[from_client] += 1
        value = struct.pack("!IHHI", tsn, 0, ssn, self.ppid) + payload
        return sctp_chunk(SCTP_DATA, flags, value)

    def send(self, from_client, *messages, sack=False):
        chunks = [self.sack(from_client)] if sack else []
        chunks += [self.data(from_client, m) for m in messages]
        self.packet(from_client, chunks)
        return chunks[-1]

    def send_fragmented(self, from_client, message, size):
        parts = [message[i:i + size] for i in range(0, len(message), size)]
        for i, part in enumerate(parts):
            flags = (2 if i == 0 else 0) | (1 if i == len(parts) - 1 else 0)
            self.packet(from_client, [self.data(from_client, part, flags)])

    def message_chunks(self, from_client, stream, message, size):
        """One message as I-DATA chunks of at most `size` bytes: the first carries the
        payload protocol, the others their fragment number."""
        mids = self.mid[from_client]
        mid = mids.get(stream, 0)
        mids[stream] = mid + 1
        parts = [message[i:i + size] for i in range(0, len(message), size)]
        chunks = []
        for fsn, part in enumerate(parts):
            flags = (2 if fsn == 0 else 0) | (1 if fsn == len(parts) - 1 else 0)
            tsn = self.tsn[from_client]
            self.tsn[from_client] += 1
            value = struct.pack("!IHHII", tsn, stream, 0, mid, self.ppid if fsn == 0 else fsn)
            chunks.append(sctp_chunk(SCTP_IDATA, flags, value + part))
        return chunks

    def ack(self, from_client):
        self.packet(from_client, [self.sack(from_client)])

    def close(self):
        cum = struct.pack("!I", (self.tsn[False] - 1) & 0xFFFFFFFF)
        self.packet(True, [sctp_chunk(SCTP_SHUTDOWN, 0, cum)])
        self.packet(False, [sctp_chunk(SCTP_SHUTDOWN_ACK, 0, b"")])
        self.packet(True, [sctp_chunk(SCTP_SHUTDOWN_COMPLETE, 0, b"")])


def sctp():
    """SIP over SCTP: whole messages, bundled ones, one fragmented, one retransmitted."""
    def C(name, caller, expect, port, ip=UAC4, **kw):
        return Call("sctp-%s@%s" % (name, ip), caller, expect, uac=(ip, port),
                    transport="SCTP", **kw)

    ent = (PROXY4, ENT)
    a = C("foreign-uk", "+442071234567", E("intl"), 5090)
    b = C("domestic-mobile", "+8613812345678", E("intl", "reject", 403, "intl-domestic-caller"),
          5090)
    c = C("frag-foreign-us", "+12125550123", E("intl"), 5090, big=True)
    d = C("blacklist", "+8613800000001", E("intl", "reject", 608, "blacklist"), 5090)
    e = C("ent-whitelisted", "+8613912345678", E("ent-400"), 5092, proxy=ent)
    f = C("ent-not-whitelisted", "+8613812345678",
          E("ent-400", "reject", 403, "enterprise-not-whitelisted"), 5092, proxy=ent)
    g = C("unknown-source", "+442071234567", E("-", "reject", 403, "unknown-source"), 5094,
          ip=FOREIGN4)
    i = C("idata-foreign-fr", "+33142685300", E("intl"), 5096, big=True)
    j = C("idata-domestic-fixed", "+861012345678",
          E("intl", "reject", 403, "intl-domestic-caller"), 5096)
    cap = Capture(link_ether, 0x9000)

    def rest(assoc, call, skip=1):
        for from_uac, msg in call.dialog()[skip:]:
            assoc.send(from_uac, msg, sack=True)

    s1 = SctpAssoc(cap, a.uac, a.proxy, 0x1a2b3c4d, 0x5e6f7081, 1000, 9000)
    # A: INVITE alone; 100 and 180 bundled in one packet.
    da = a.dialog()
    s1.send(True, da[0][1])
    s1.send(False, da[1][1], da[2][1], sack=True)
    for from_uac, msg in da[3:]:
        s1.send(from_uac, msg, sack=True)
    # B: the INVITE's chunk sent again (same TSN), as a sender whose SACK came late does.
    inv = s1.send(True, b.invite())
    s1.packet(True, [inv])
    s1.ack(False)
    rest(s1, b)
    # C: an INVITE of about 3000 bytes in three fragments.
    s1.send_fragmented(True, c.invite(), 1200)
    rest(s1, c)
    # D: INVITE bundled behind a SACK.
    rest(s1, d, 0)
    s1.close()

    s2 = SctpAssoc(cap, e.uac, e.proxy, 0x22334455, 0x66778899, 50, 70)
    rest(s2, e, 0)
    rest(s2, f, 0)
    s2.close()

    s3 = SctpAssoc(cap, g.uac, g.proxy, 0x0badcafe, 0x0ddba11, 4294967294, 1)  # TSNs wrap
    rest(s3, g, 0)
    s3.close()

    # I-DATA: I's big INVITE on stream 1 in 1200-byte fragments and J's on stream 2 in
    # 600-byte ones, interleaved as RFC 8260's scheduler sends them (one of each per
    # packet, TSNs in that order, J's ending first); then both dialogs' other messages
    # whole, one chunk each.
    s4 = SctpAssoc(cap, i.uac, i.proxy, 0x1da7a001, 0x1da7a002, 777, 888, idata=True)
    ci = s4.message_chunks(True, 1, i.invite(), 1200)
    cj = s4.message_chunks(True, 2, j.invite(), 600)
    assert len(ci) == 3 and len(cj) == 2, (len(ci), len(cj))
    s4.packet(True, [ci[0], cj[0]])
    s4.packet(True, [cj[1]])
    s4.packet(True, [ci[1]])
    s4.packet(True, [ci[2]])
    s4.ack(False)
    for call in (i, j):
        rest(s4, call)
    s4.close()

    # Diameter beside it on the same host (payload protocol 46): not SIP, never a call.
    dia = SctpAssoc(cap, (UAC4, 3868), (PROXY4, 3868), 0x0d1a0001, 0x0d1a0002, 1, 1, ppid=46)
    dia.send(True, struct.pack("!I", 0x01000014) + struct.pack("!IIII", 0x80000101, 0, 1, 1))
    dia.close()
    return cap, [a, b, c, d, e, f, g, i, j]


WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def ws_frame(opcode, payload, mask=None, fin=True, rsv1=False):
    b0 = (0x80 if fin else 0) | (0x40 if rsv1 else 0) | opcode
    n = len(payload)
    m = 0x80 if mask else 0
    if n < 126:
        hdr = struct.pack("!BB", b0, m | n)
    elif n < 65536:
        hdr = struct.pack("!BBH", b0, m | 126, n)
    else:
        hdr = struct.pack("!BBQ", b0, m | 127, n)
    if mask:
        payload = bytes(c ^ mask[i % 4] for i, c in enumerate(payload))
        hdr += mask
    return hdr + payload


class WsConn:
    """SIP over WebSocket on one TCP connection: the HTTP upgrade, then one SIP message
    per WebSocket message, the client's frames masked (RFC 6455 5.3), permessage-deflate
    when asked for (RFC 7692, context kept from message to message)."""

    def __init__(self, tcp, name, deflate=False):
        import base64
        import zlib
        self.tcp, self.name, self.deflate, self.n = tcp, name, deflate, 0
        key = base64.b64encode(hashlib.sha1(name.encode()).digest()[:16]).decode()
        accept = base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()
        ext = "Sec-WebSocket-Extensions: permessage-deflate\r\n" if deflate else ""
        req = ("GET /sip HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\n"
               "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
               "Origin: https://webphone.example\r\nSec-WebSocket-Protocol: sip\r\n"
               "%sSec-WebSocket-Version: 13\r\n\r\n") % (hostport(*tcp.srv), key, ext)
        ans = ("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
               "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n"
               "Sec-WebSocket-Protocol: sip\r\n%s\r\n") % (accept, ext)
        tcp.send(True, req.encode())
        tcp.send(False, ans.encode())
        self.z = {k: zlib.compressobj(9, zlib.DEFLATED, -15) for k in (True, False)}

    def frames(self, from_client, msg, split=None, ping_between=False):
        """The frames of one message: `split` cuts it into a first frame and a
        continuation, with a ping between them when asked."""
        mask = None
        if from_client:
            self.n += 1
            mask = hashlib.sha1(("%s/%d" % (self.name, self.n)).encode()).digest()[:4]
        rsv1 = False
        if self.deflate:
            z = self.z[from_client]
            msg = z.compress(msg) + z.flush(__import__("zlib").Z_SYNC_FLUSH)
            assert msg.endswith(b"\0\0\xff\xff")
            msg, rsv1 = msg[:-4], True
        if split is None:
            return ws_frame(0x1, msg, mask, rsv1=rsv1)
        out = ws_frame(0x1, msg[:split], mask, fin=False, rsv1=rsv1)
        if ping_between:
            out += ws_frame(0x9, b"", mask)
        return out + ws_frame(0x0, msg[split:], mask)

    def send(self, from_client, msg, **kw):
        return self.tcp.send(from_client, self.frames(from_client, msg, **kw))


def websocket():
    """SIP over WebSocket, as a WebRTC gateway receives it from browsers. Both connections
    go to the enterprise trunk's port, 5062: on 5060, SIP's registered port, tshark reads
    the HTTP upgrade as SIP and finds no call (replay tells them apart by content)."""
    def C(name, caller, expect, port, **kw):
        return Call("ws-%s@%s" % (name, UAC4), caller, expect, uac=(UAC4, port),
                    proxy=(PROXY4, ENT), transport="WS", **kw)

    a = C("ent-whitelisted", "+8613912345678", E("ent-400"), 40200)
    b = C("ent-not-whitelisted", "+8613812345678",
          E("ent-400", "reject", 403, "enterprise-not-whitelisted"), 40200)
    c = C("blacklist", "+8613800000001", E("ent-400", "reject", 608, "blacklist"), 40200)
    d = C("ent-whitelisted-segment", "+861055551234", E("ent-400"), 40202)
    e = C("numbering-plan", "+8615412345678", E("ent-400", "reject", 403, "numbering-plan"),
          40202)
    f = C("ent-whitelisted-400", "+864008001234", E("ent-400"), 40202)
    cap = Capture(link_ether, 0xA000)

    def rest(ws, call, skip=1):
        for from_uac, msg in call.dialog()[skip:]:
            ws.send(from_uac, msg)

    t1 = TcpConn(cap, a.uac, a.proxy, 1_300_000_000, 3_300_000_000)
    w1 = WsConn(t1, "ws1")
    # A: the INVITE's frame cut across two TCP segments; 100 and 180 in one segment.
    fr = w1.frames(True, a.invite())
    t1.send(True, fr[:300])
    t1.ack(False)
    t1.send(True, fr[300:])
    da = a.dialog()
    t1.send(False, w1.frames(False, da[1][1]) + w1.frames(False, da[2][1]))
    for from_uac, msg in da[3:]:
        w1.send(from_uac, msg)
    # B: the INVITE in a first frame and a continuation, a ping between them; the pong.
    w1.send(True, b.invite(), split=200, ping_between=True)
    t1.send(False, ws_frame(0xA, b""))
    rest(w1, b)
    rest(w1, c, 0)
    # Close handshake, then the TCP close.
    t1.send(True, ws_frame(0x8, struct.pack("!H", 1000), b"\x01\x02\x03\x04"))
    t1.send(False, ws_frame(0x8, struct.pack("!H", 1000)))
    t1.close()

    # permessage-deflate: later messages refer back to earlier ones.
    t2 = TcpConn(cap, d.uac, d.proxy, 1_400_000_000, 3_400_000_000)
    w2 = WsConn(t2, "ws2", deflate=True)
    for call in (d, e, f):
        rest(w2, call, 0)
    t2.close()
    return cap, [a, b, c, d, e, f]


def write(name, data):
    path = os.path.join(OUT_DIR, name)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)
    print("wrote %s/%s (%d bytes)" % (REL_DIR, name, len(data)))


CORPUS_DIR = os.path.join(os.path.dirname(ROOT), "shared", "corpus", "pcap")
CORPUS_REL = "../shared/corpus/pcap"

# One word per SIP message: requests have a Method, responses a Status-Code; occurrences in
# one frame (several messages in one TCP segment) are joined by spaces.
TSHARK_ARGS = ["-o", "tcp.desegment_tcp_streams:TRUE", "-Y", "sip", "-T", "fields",
               "-E", "aggregator=/s", "-e", "sip.Method", "-e", "sip.Status-Code"]


def tshark_count(rel):
    """SIP messages tshark finds in a capture (path relative to the project root)."""
    r = subprocess.run(["tshark", "-r", rel] + TSHARK_ARGS, cwd=ROOT, capture_output=True,
                       text=True)
    cut_short = "cut short in the middle of a packet" in r.stderr
    if r.returncode != 0 and not cut_short:
        sys.exit("tshark failed on %s (exit %d): %s" % (rel, r.returncode, r.stderr.strip()))
    return len(r.stdout.split()), cut_short


# Captures recorded from real senders by other scripts, counted here too:
# scripts/gen_hep_capture.sh (Kamailio's siptrace; tshark has no HEP dissector, so the
# plain copy recorded beside the HEP one is what it counts), scripts/gen_ws_capture.sh
# (Kamailio's websocket module).
RECORDED = ["hep3-plain.pcap", "websocket-kamailio.pcap"]


def write_counts(names):
    files = ["%s/%s" % (REL_DIR, n) for n in list(names) + RECORDED]
    with open(os.path.join(CORPUS_DIR, "INDEX.tsv")) as f:
        corpus = [line.split("\t")[0] for line in f.read().splitlines()[1:] if line.strip()]
    files += ["%s/%s" % (CORPUS_REL, n) for n in corpus]
    version = subprocess.run(["tshark", "--version"], capture_output=True,
                             text=True).stdout.splitlines()[0]
    lines = [
        "# SIP messages tshark decodes in each capture, counted from the project root with:",
        "#   tshark -r FILE %s | wc -w" % " ".join(
            a if " " not in a else "'%s'" % a for a in TSHARK_ARGS),
        "# One word per message. '-T fields -e sip.Call-ID | wc -l' counts frames instead: the",
        "# same numbers except rules-tcp.pcapng, where two frames carry two messages each (48).",
        "# The retransmitted TCP segment in rules-tcp.pcapng is not dissected again by tshark.",
        "# truncated.pcap: tshark reports the file cut short in the middle of a packet (exit 2);",
        "# the count is of the complete records before the cut.",
        "# Counted with %s" % version,
        "# Written by: python3 scripts/gen_testdata.py --counts",
        "file\tsip_messages",
    ]
    for rel in files:
        n, _ = tshark_count(rel)
        lines.append("%s\t%d" % (rel, n))
    write("counts.tsv", ("\n".join(lines) + "\n").encode())


# ---------------------------------------------------------------------------------------
# --big: a large capture for the replay throughput benchmark (scripts/bench_replay.sh)
# ---------------------------------------------------------------------------------------

# The mix, per 20 units (a unit is one call, or one OPTIONS or REGISTER transaction):
#   A  10  allowed foreign caller on intl: INVITE, 180, 200, ACK, BYE, 200
#   D   3  +86 caller on intl (intl-domestic-caller): INVITE, 403, ACK
#   E   2  non-whitelisted +86 caller on ent-400 (enterprise-not-whitelisted): INVITE, 403, ACK
#   B   1  blacklisted +8613800000001 on intl (blacklist): INVITE, 608, ACK
#   O   2  OPTIONS keep-alive to intl / ent-400 and its 200
#   R   2  REGISTER to ent-400 and its 401
# spread over the cycle so that no kind comes in bursts.
BIG_CYCLE = "ADAOAEARADABAOAEARAD"
assert len(BIG_CYCLE) == 20 and sorted(BIG_CYCLE) == sorted("A" * 10 + "D" * 3 + "E" * 2
                                                            + "B" + "O" * 2 + "R" * 2)
BIG_CALL_STEP_US = 1000  # 1000 units per second of capture time
BIG_OFFER_SESS, BIG_ANSWER_SESS = 1111111111, 2222222222  # replaced by 10-digit numbers

# Foreign callers: (prefix, digits that follow), all well-formed E.164 numbers.
BIG_FOREIGN = [("+4420", 8), ("+1212", 7), ("+4930", 8), ("+3314", 7), ("+813", 8),
               ("+612", 8), ("+656", 7), ("+4122", 7), ("+3906", 8), ("+1415", 7)]
BIG_DOMESTIC = ["+86135", "+86150", "+86186", "+86188"]  # mobile, none listed anywhere
BIG_ENT_OTHER = [("+86137", 8), ("+862161", 6)]  # not on ent-400's whitelist


def big_templates():
    """Message templates (%-format strings) built with Call, so that the benchmark's
    messages have exactly the shape of the test captures'. Fields: cid, caller, ftag,
    ttag, br (branch suffix), sess, asess (10-digit SDP session ids)."""

    def call(proxy, expect):
        c = Call("%(cid)s", "%(caller)s", expect, proxy=proxy)
        c.ftag, c.ttag = "%(ftag)s", "%(ttag)s"
        c.branch = lambda what: "z9hG4bK%(br)s" + what[0]  # i(nvite), a(ck), b(ye)
        sdp = c.sdp
        c.sdp = lambda addr, port, sess, big=False: sdp(
            addr, port, BIG_ANSWER_SESS if port == 30000 else BIG_OFFER_SESS)
        return c

    def tpl(msg):
        s = msg.decode()
        s = s.replace(str(BIG_OFFER_SESS), "%(sess)d").replace(str(BIG_ANSWER_SESS),
                                                               "%(asess)d")
        rest = s
        for f in ("cid", "caller", "ftag", "ttag", "br"):
            rest = rest.replace("%%(%s)s" % f, "")
        rest = rest.replace("%(sess)d", "").replace("%(asess)d", "")
        assert "%" not in rest, rest
        return s

    intl, ent = (PROXY4, INTL), (PROXY4, ENT)
    out = {}
    a = call(intl, E("intl"))
    out["A"] = [(True, tpl(a.invite())), (False, tpl(a.response(180))),
                (False, tpl(a.response(200))), (True, tpl(a.ack())), (True, tpl(a.bye())),
                (False, tpl(a.response(200, cseq="2 BYE", via="bye")))]
    for kind, proxy, code, rule in (("D", intl, 403, "intl-domestic-caller"),
                                    ("E", ent, 403, "enterprise-not-whitelisted"),
                                    ("B", intl, 608, "blacklist")):
        c = call(proxy, E("-", "reject", code, rule))
        out[kind] = [(True, tpl(c.invite())), (False, tpl(c.response(code))),
                     (True, tpl(c.ack()))]
    uac = hostport(UAC4, UAC_PORT)
    for kind, port in (("O", INTL), ("o", ENT)):
        via = "Via: SIP/2.0/UDP %s;branch=z9hG4bK%%(br)so;rport" % uac
        frm = "From: <sip:ping@%s>;tag=%%(ftag)s" % uac
        to = "To: <sip:%s>" % hostport(PROXY4, port)
        req = Call.message("OPTIONS sip:%s SIP/2.0" % hostport(PROXY4, port), [
            via, "Max-Forwards: 70", frm, to, "Call-ID: %(cid)s", "CSeq: 1 OPTIONS",
            "User-Agent: sipfence-testdata"])
        resp = Call.message("SIP/2.0 200 OK", [
            via, frm, to + ";tag=%(ttag)s", "Call-ID: %(cid)s", "CSeq: 1 OPTIONS",
            "Allow: INVITE, ACK, CANCEL, BYE, OPTIONS", "Accept: application/sdp",
            "Supported: timer", "Server: sipfence"])
        out[kind] = [(True, tpl(req)), (False, tpl(resp))]
    reg = hostport(PROXY4, ENT)
    via = "Via: SIP/2.0/UDP %s;branch=z9hG4bK%%(br)sr;rport" % uac
    aor = "<sip:%%(caller)s@%s;user=phone>" % PROXY4
    req = Call.message("REGISTER sip:%s SIP/2.0" % reg, [
        via, "Max-Forwards: 70", "From: %s;tag=%%(ftag)s" % aor, "To: %s" % aor,
        "Call-ID: %(cid)s", "CSeq: 1 REGISTER",
        "Contact: <sip:%%(caller)s@%s;transport=udp>;expires=3600" % uac,
        "Expires: 3600", "User-Agent: sipfence-testdata"])
    resp = Call.message("SIP/2.0 401 Unauthorized", [
        via, "From: %s;tag=%%(ftag)s" % aor, "To: %s;tag=%%(ttag)s" % aor,
        "Call-ID: %(cid)s", "CSeq: 1 REGISTER",
        'WWW-Authenticate: Digest realm="gen.sipfence.test", nonce="%(br)s", algorithm=MD5,'
        ' qop="auth"', "Server: sipfence"])
    out["R"] = [(True, tpl(req)), (False, tpl(resp))]
    return out


def big_unit(i):
    """Kind, destination port, template fields and delays (µs after the previous message)
    of unit i; everything derives from i, so nothing needs to be kept per call."""
    x = (i * 0x9E3779B1) & 0xFFFFFFFF  # a bijection on 32 bits: distinct per unit
    y = (i * 0x85EBCA77 + 0x165667B1) & 0xFFFFFFFF
    kind = BIG_CYCLE[i % 20]
    f = {"cid": "%08x-%d@gen.sipfence.test" % (x, i), "ftag": "%08x" % x,
         "ttag": "%08x" % (x ^ 0x5BD1E995), "br": "%08x%08x" % (x, i & 0xFFFFFFFF),
         "sess": 1_000_000_000 + x, "asess": 1_000_000_000 + (x ^ 0xA5A5A5A5)}
    if kind == "A":
        prefix, n = BIG_FOREIGN[(i // 20) % len(BIG_FOREIGN)]
        f["caller"] = prefix + "%0*d" % (n, y % 10 ** n)
        port = INTL
        # 180 after 30-80 ms, 200 after 1-8 s of ringing, ACK 20 ms later, BYE after
        # 5-95 s of talk, its 200 15 ms later.
        delays = (30_000 + y % 50_000, 1_000_000 + x % 7_000_000, 20_000,
                  5_000_000 + (x >> 4) % 90_000_000, 15_000)
    elif kind in "DEB":
        if kind == "D":
            f["caller"] = BIG_DOMESTIC[(i // 20) % 4] + "%08d" % (y % 10 ** 8)
        elif kind == "E":
            prefix, n = BIG_ENT_OTHER[(i // 20) % 2]
            f["caller"] = prefix + "%0*d" % (n, y % 10 ** n)
        else:
            f["caller"] = "+8613800000001"
        port = ENT if kind == "E" else INTL
        delays = (3_000 + y % 7_000, 20_000)  # final response, then the ACK
    elif kind == "O":
        # Alternately to intl and ent-400.
        if (i // 20) % 2:
            kind, port = "o", ENT
        else:
            port = INTL
        delays = (1_000 + y % 2_000,)
    else:
        f["caller"] = "+864008%06d" % (y % 10 ** 6)  # the enterprise's PBX extensions
        port = ENT
        delays = (2_000 + y % 3_000,)
    return kind, port, f, delays


def big(n_calls, path):
    """Streams a classic pcap (Ethernet/IPv4/UDP) of n_calls units to `path`. Dialogs
    overlap as on a live gateway; a heap holds the next message of each open unit."""
    import heapq

    templates = big_templates()
    rec_hdr = struct.Struct("<IIII")
    net_hdr = struct.Struct("!6s6sHBBHHHBBH4s4sHHHH")  # Ethernet + IPv4 + UDP, 42 bytes
    lo = ip_bytes(PROXY4)
    assert PROXY4 == UAC4 == "127.0.0.1"
    lo_words = (lo[0] << 8 | lo[1]) + (lo[2] << 8 | lo[3])
    ip_const = 0x4500 + (64 << 8 | 17) + 2 * lo_words
    udp_const = 2 * lo_words + 17
    ident = [0x8000]
    stats = {"packets": 0, "bytes": 24, "calls": 0, "units": {}}

    def frame(ts, from_uac, port, payload):
        ulen = 8 + len(payload)
        tot = 20 + ulen
        ident[0] = (ident[0] + 1) & 0xFFFF
        s = ip_const + tot + ident[0]
        s = (s & 0xFFFF) + (s >> 16)
        s = (s & 0xFFFF) + (s >> 16)
        ipc = ~s & 0xFFFF
        sport, dport = (UAC_PORT, port) if from_uac else (port, UAC_PORT)
        # Ones'-complement sum of 16-bit words == the number they form, modulo 0xFFFF.
        v = int.from_bytes(payload, "big")
        if len(payload) & 1:
            v <<= 8
        s = (udp_const + 2 * ulen + sport + dport + v) % 0xFFFF or 0xFFFF
        uc = ~s & 0xFFFF or 0xFFFF
        dmac, smac = (MAC_PROXY, MAC_UAC) if from_uac else (MAC_UAC, MAC_PROXY)
        stats["packets"] += 1
        stats["bytes"] += 16 + 42 + len(payload)
        return (rec_hdr.pack(ts // 1_000_000, ts % 1_000_000, 42 + len(payload),
                             42 + len(payload))
                + net_hdr.pack(dmac, smac, 0x0800, 0x45, 0, tot, ident[0], 0, 64, 17, ipc,
                               lo, lo, sport, dport, ulen, uc)
                + payload)

    def message(ts, i, step):
        kind, port, f, delays = big_unit(i)
        if step == 0:
            stats["units"][kind] = stats["units"].get(kind, 0) + 1
            stats["calls"] += kind in "ADEB"
        from_uac, t = templates[kind][step]
        out.append(frame(ts, from_uac, port, (t % f).encode()))
        if step < len(delays):
            heapq.heappush(heap, (ts + delays[step], i, step + 1))

    tmp = path + ".tmp"
    heap = []
    out = []
    with open(tmp, "wb") as fh:
        fh.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, SNAPLEN, LINKTYPE_ETHERNET))
        for i in range(n_calls):
            start = T0_US + i * BIG_CALL_STEP_US
            while heap and heap[0][0] <= start:
                message(*heapq.heappop(heap))
            message(start, i, 0)
            if len(out) >= 4096:
                fh.write(b"".join(out))
                out.clear()
        while heap:
            message(*heapq.heappop(heap))
            if len(out) >= 4096:
                fh.write(b"".join(out))
                out.clear()
        fh.write(b"".join(out))
    os.replace(tmp, path)
    u = stats["units"]
    print("wrote %s (%d bytes): %d units, %d INVITE calls (allowed %d, rejected %d: "
          "intl +86 %d, ent-400 not whitelisted %d, blacklist %d), OPTIONS %d, REGISTER %d; "
          "%d packets, one SIP message each" % (
              path, stats["bytes"], n_calls, stats["calls"], u.get("A", 0),
              u.get("D", 0) + u.get("E", 0) + u.get("B", 0), u.get("D", 0), u.get("E", 0),
              u.get("B", 0), u.get("O", 0) + u.get("o", 0), u.get("R", 0),
              stats["packets"]))


def main():
    args = sys.argv[1:]
    if args and args[0] == "--big":
        if len(args) != 3 or not args[1].isdigit() or int(args[1]) < 1:
            sys.exit("usage: gen_testdata.py --big N OUT.pcap")
        big(int(args[1]), args[2])
        return
    counts = "--counts" in args
    os.makedirs(OUT_DIR, exist_ok=True)
    rows = []
    outputs = [
        ("rules-udp.pcap", rules_udp, lambda c: pcap_bytes(LINKTYPE_ETHERNET, c.packets)),
        ("rules-tcp.pcapng", rules_tcp, lambda c: pcapng_bytes(LINKTYPE_ETHERNET, c.packets)),
        ("vlan-ipv6-frag.pcap", vlan_ipv6_frag,
         lambda c: pcap_bytes(LINKTYPE_ETHERNET, c.packets)),
        ("sll.pcap", sll, lambda c: pcap_bytes(LINKTYPE_SLL, c.packets)),
        ("sll2.pcap", sll2, lambda c: pcap_bytes(LINKTYPE_SLL2, c.packets)),
        ("rawip.pcap", rawip, lambda c: pcap_bytes(LINKTYPE_RAW, c.packets)),
        ("truncated.pcap", truncated,
         lambda c: pcap_bytes(LINKTYPE_ETHERNET, c.packets, cut_last=True)),
        ("sipi.pcap", sipi, lambda c: pcap_bytes(LINKTYPE_ETHERNET, c.packets)),
        ("sctp.pcap", sctp, lambda c: pcap_bytes(LINKTYPE_ETHERNET, c.packets)),
        ("websocket.pcapng", websocket, lambda c: pcapng_bytes(LINKTYPE_ETHERNET, c.packets)),
    ]
    seen = set()
    for name, gen, fmt in outputs:
        cap, calls = gen()
        write(name, fmt(cap))
        for c in calls:
            assert c.call_id not in seen, c.call_id
            seen.add(c.call_id)
            rows.append("\t".join(("%s/%s" % (REL_DIR, name), c.call_id) + c.expect))
    tsv = "file\tcall_id\ttrunk\tverdict\tcode\trule\n" + "\n".join(rows) + "\n"
    write("expected.tsv", tsv.encode())
    if counts:
        write_counts([name for name, _, _ in outputs])


if __name__ == "__main__":
    main()
