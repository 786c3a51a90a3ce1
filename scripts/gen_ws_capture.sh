#!/usr/bin/env bash
# Records testdata/pcap/websocket-kamailio.pcap: SIP over WebSocket (RFC 7118) as a
# real WebSocket SIP server speaks it, Kamailio 5.6's websocket module.
#
#     bash scripts/gen_ws_capture.sh
#
# Kamailio listens where the built-in policy's enterprise trunk does (tcp and udp
# 127.0.0.1:5062, "ent-400"), takes the HTTP upgrade (ws_handle_handshake) and relays
# every call statelessly to a sipp UAS on udp 127.0.0.1:5080; what the UAS answers goes
# back to the caller in Kamailio's WebSocket frames. The caller is a small WebSocket
# client below (one connection, frames masked as RFC 6455 wants of a client) placing
# the calls of CALLS, whose messages are scripts/gen_testdata.py's. tshark records the
# WebSocket leg (tcp port 5062). tests/replay.rs checks the calls' verdicts, and
# counts.tsv holds tshark's count of its SIP messages.
# Needs kamailio (with the websocket module), sipp and tshark; installs them when
# missing.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=testdata/pcap/websocket-kamailio.pcap
need=()
command -v kamailio >/dev/null || need+=(kamailio)
find /usr/lib -name websocket.so -path '*kamailio*' 2>/dev/null | grep -q . ||
  need+=(kamailio-websocket-modules)
command -v sipp >/dev/null || need+=(sip-tester)
command -v tshark >/dev/null || need+=(tshark)
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
for p in 5062 5080 40300; do
  if ss -lnu "sport = :$p" | grep -q ":$p" || ss -lnt "sport = :$p" | grep -q ":$p"; then
    echo "port $p is in use: stop what listens there first" >&2
    exit 1
  fi
done
WORK=$(mktemp -d)
pids=()
cleanup() {
  pkill -f "sipp -sn uas -i 127.0.0.1 -p 5080" 2>/dev/null || true
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
MODS=$(dirname "$(find /usr/lib -name websocket.so -path '*kamailio*' | head -1)")

cat >"$WORK/kamailio.cfg" <<EOF
#!KAMAILIO
debug=1
log_stderror=yes
fork=yes
children=1
listen=udp:127.0.0.1:5062
listen=tcp:127.0.0.1:5062
auto_aliases=no
dns=no
rev_dns=no
tcp_accept_no_cl=yes
mpath="$MODS"
loadmodule "sl.so"
loadmodule "pv.so"
loadmodule "textops.so"
loadmodule "xhttp.so"
loadmodule "websocket.so"
request_route {
  \$du = "sip:127.0.0.1:5080;transport=udp";
  forward();
  exit;
}
event_route[xhttp:request] {
  if (\$hdr(Upgrade) =~ "websocket" && \$hdr(Connection) =~ "Upgrade" && \$rm =~ "GET") {
    if (ws_handle_handshake()) {
      exit;
    }
  }
  xhttp_reply("404", "Not Found", "", "");
}
EOF

tshark -q -n -i lo -f "tcp port 5062" -F pcap -w "$WORK/ws.pcap" 2>"$WORK/tshark.log" &
pids+=($!)
sleep 3
kamailio -f "$WORK/kamailio.cfg" -DD -E -m 64 -M 8 2>"$WORK/kamailio.log" &
pids+=($!)
# sipp -bg exits non-zero even when the UAS started: checked by the calls instead.
sipp -sn uas -i 127.0.0.1 -p 5080 -bg >/dev/null || true
sleep 1

python3 - "$WORK" <<'PY' || { cat "$WORK/kamailio.log" >&2; exit 1; }
"""A WebSocket SIP client: one connection to Kamailio, the calls below placed in turn."""
import base64, hashlib, os, re, socket, struct, sys
sys.path.insert(0, "scripts")
import gen_testdata as g

CALLS = [
    ("ent-whitelisted", "+8613912345678"),
    ("ent-not-whitelisted", "+8613812345678"),
    ("blacklist", "+8613800000001"),
    ("ent-whitelisted-segment", "+861055551234"),
    ("numbering-plan", "+8615412345678"),
    ("ent-whitelisted-400", "+864008001234"),
]
UAC = ("127.0.0.1", 40300)
s = socket.create_connection(("127.0.0.1", 5062), timeout=5, source_address=UAC)
key = base64.b64encode(hashlib.sha1(b"sipfence-ws").digest()[:16]).decode()
s.sendall(("GET / HTTP/1.1\r\nHost: 127.0.0.1:5062\r\nUpgrade: websocket\r\n"
           "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\nSec-WebSocket-Protocol: sip\r\n"
           "Sec-WebSocket-Version: 13\r\nOrigin: http://127.0.0.1\r\n\r\n" % key).encode())
buf = b""
while b"\r\n\r\n" not in buf:
    buf += s.recv(4096)
head, buf = buf.split(b"\r\n\r\n", 1)
assert head.startswith(b"HTTP/1.1 101"), head

def send(msg, n=[0]):
    n[0] += 1
    mask = hashlib.sha1(b"mask%d" % n[0]).digest()[:4]
    s.sendall(g.ws_frame(0x1, msg, mask))

def recv():
    global buf
    while True:
        if len(buf) >= 2:
            n, off = buf[1] & 0x7F, 2
            if n == 126:
                n, off = struct.unpack("!H", buf[2:4])[0], 4
            if len(buf) >= off + n:
                op, data, buf = buf[0] & 0x0F, buf[off:off + n], buf[off + n:]
                if op in (1, 2):
                    return data
                continue
        chunk = s.recv(65536)
        if not chunk:
            raise SystemExit("connection closed")
        buf += chunk

for name, caller in CALLS:
    c = g.Call("wsk-%s@127.0.0.1" % name, caller, None, uac=UAC, proxy=("127.0.0.1", 5062),
               transport="WS")
    c.expect = ("ent-400", "allow", "-", "-")  # the UAS answers every call: full dialog
    send(c.invite())
    while True:
        r = recv()
        code = int(r.split(b" ", 2)[1])
        if code >= 200:
            break
    assert code == 200, r[:60]
    tag = re.search(rb"^To:.*;tag=([^;\r\n]+)", r, re.M | re.I).group(1).decode()
    fix = lambda m: m.replace(("tag=%s" % c.ttag).encode(), ("tag=%s" % tag).encode())
    send(fix(c.ack()))
    send(fix(c.bye()))
    r = recv()
    assert r.startswith(b"SIP/2.0 200"), r[:60]
s.sendall(g.ws_frame(0x8, struct.pack("!H", 1000), b"\x01\x02\x03\x04"))
recv_close = s.recv(64)
s.close()
print("placed %d calls over WebSocket" % len(CALLS))
PY
sleep 1
pkill -f "sipp -sn uas -i 127.0.0.1 -p 5080" || true
for p in "${pids[@]}"; do kill -INT "$p" 2>/dev/null || true; done
wait 2>/dev/null || true
pids=()
cp "$WORK/ws.pcap" "$OUT"
echo "wrote $OUT"
