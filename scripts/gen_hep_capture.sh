#!/usr/bin/env bash
# Records the HEP test captures from a real HEP sender: Kamailio's siptrace module.
#
#     bash scripts/gen_hep_capture.sh        # writes testdata/pcap/hep*.pcap
#
# Kamailio listens where the built-in policy's trunks do (udp and tcp 127.0.0.1:5060
# "intl", 127.0.0.1:5062 "ent-400"), relays every call statelessly to a sipp UAS on
# 127.0.0.1:5080, and mirrors each message it receives (requests from the caller,
# responses from the UAS) to a Homer server at udp 127.0.0.1:9060, as operators run
# Homer. sipp places the calls in testdata/sipp/hep-callers-{intl,ent}.csv to each trunk,
# over UDP, then over TCP. tshark records, at the same time:
#   hep3.pcap        the HEPv3 datagrams to 127.0.0.1:9060 (what a Homer server sees)
#   hep3-plain.pcap  the same messages as they travelled: what Kamailio received on
#                    :5060 and :5062 (TCP and UDP), which is what it mirrors
# then a second run with hep_version 2 writes hep2.pcap (no plain copy: its Call-IDs
# differ, its calls and their verdicts are the same), and a third sends HEPv3 over TCP
# (`;transport=tcp`, as heplify and captagent can) to a collector that only reads:
# hep3-tcp.pcap, HEP packets in a TCP stream.
#
#     bash scripts/gen_hep_capture.sh tcp    # the third only
# tests/replay.rs holds the HEP captures to the plain one: same messages, same verdicts.
# Needs kamailio (with siptrace), sipp and tshark; installs them with apt when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=testdata/pcap
need=()
command -v kamailio >/dev/null || need+=(kamailio kamailio-extra-modules)
command -v sipp >/dev/null || need+=(sip-tester)
command -v tshark >/dev/null || need+=(tshark)
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
for p in 5060 5062 5080 9060; do
  if ss -lnu "sport = :$p" | grep -q ":$p" || ss -lnt "sport = :$p" | grep -q ":$p"; then
    echo "port $p is in use: stop what listens there first" >&2
    exit 1
  fi
done
WORK=$(mktemp -d)
pids=()
collector=
cleanup() {
  pkill -f "sipp -sn uas -i 127.0.0.1 -p 5080" 2>/dev/null || true
  [ -z "$collector" ] || kill "$collector" 2>/dev/null || true
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

MODS=$(dirname "$(find /usr/lib -name siptrace.so -path '*kamailio*' | head -1)")

run() { # $1 HEP version, $2 HEP capture, $3 plain capture or "", $4 udp or tcp
  cat >"$WORK/kamailio.cfg" <<EOF
#!KAMAILIO
debug=1
log_stderror=yes
fork=yes
children=1
listen=udp:127.0.0.1:5060
listen=tcp:127.0.0.1:5060
listen=udp:127.0.0.1:5062
listen=tcp:127.0.0.1:5062
auto_aliases=no
dns=no
rev_dns=no
mpath="$MODS"
loadmodule "pv.so"
loadmodule "siptrace.so"
modparam("siptrace", "duplicate_uri", "sip:127.0.0.1:9060;transport=$4")
modparam("siptrace", "hep_mode_on", 1)
modparam("siptrace", "hep_version", $1)
modparam("siptrace", "hep_capture_id", 2001)
modparam("siptrace", "trace_to_database", 0)
modparam("siptrace", "trace_on", 1)
request_route {
  sip_trace();
  \$du = "sip:127.0.0.1:5080;transport=udp";
  forward();
  exit;
}
onreply_route {
  sip_trace();
}
EOF
  if [ "$4" = tcp ]; then
    # The collector: accepts and reads, as heplify-server does, and never answers.
    python3 -c '
import socket, threading
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", 9060)); s.listen(8)
def drain(c):
    while c.recv(65536):
        pass
while True:
    threading.Thread(target=drain, args=(s.accept()[0],), daemon=True).start()
' &
    collector=$!
    tshark -q -n -i lo -f "tcp port 9060" -F pcap -w "$WORK/hep.pcap" 2>"$WORK/tshark-hep.log" &
  else
    tshark -q -n -i lo -f "udp dst port 9060" -F pcap -w "$WORK/hep.pcap" 2>"$WORK/tshark-hep.log" &
  fi
  pids+=($!)
  if [ -n "$3" ]; then
    tshark -q -n -i lo -f "dst port 5060 or dst port 5062" \
      -F pcap -w "$WORK/plain.pcap" 2>"$WORK/tshark-plain.log" &
    pids+=($!)
  fi
  sleep 3
  kamailio -f "$WORK/kamailio.cfg" -DD -E -m 64 -M 8 2>"$WORK/kamailio.log" &
  local kam=$!
  pids+=($kam)
  # sipp -bg exits non-zero even when the UAS started: checked by the calls instead.
  sipp -sn uas -i 127.0.0.1 -p 5080 -bg >/dev/null || true
  sleep 1
  for t in u1 t1; do
    for trunk in intl:5060 ent:5062; do
      local csv=testdata/sipp/hep-callers-${trunk%%:*}.csv n
      n=$(grep -vc '^SEQUENTIAL' "$csv")
      sipp "127.0.0.1:${trunk##*:}" -sf testdata/sipp/hep-uac.xml -inf "$csv" \
        -i 127.0.0.1 -p 5090 -t "$t" -m "$n" -r 20 -timeout 20 -timeout_error \
        -trace_err -error_file "$WORK/sipp.err" >/dev/null 2>&1 || {
          echo "sipp ($t, $trunk) failed:" >&2
          cat "$WORK/sipp.err" "$WORK/kamailio.log" >&2
          exit 1
        }
    done
  done
  sleep 1
  pkill -f "sipp -sn uas -i 127.0.0.1 -p 5080" || true
  kill "$kam"
  wait "$kam" 2>/dev/null || true
  # A background job ignores SIGINT: the collector is stopped with SIGTERM.
  [ -z "${collector:-}" ] || { kill "$collector" 2>/dev/null || true; collector=; }
  for p in "${pids[@]}"; do kill -INT "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  pids=()
  cp "$WORK/hep.pcap" "$OUT/$2"
  [ -z "$3" ] || cp "$WORK/plain.pcap" "$OUT/$3"
  echo "wrote $OUT/$2 ${3:+and $OUT/$3}"
}

if [ "${1:-}" != tcp ]; then
  run 3 hep3.pcap hep3-plain.pcap udp
  run 2 hep2.pcap "" udp
fi
run 3 hep3-tcp.pcap "" tcp
