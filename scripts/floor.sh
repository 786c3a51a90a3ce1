#!/usr/bin/env bash
# The floor: sipfence against ../shared/peers/udp-relay's batched relay (recvmmsg /
# sendmmsg, no SIP work at all) on the relay's own workload, in the same sitting: sipp's
# built-in UAS and `uac_allowed.xml` (an ordinary mobile caller that any policy lets
# through; INVITE, 180 and 200 through the proxy, ACK and BYE straight to the UAS).
# Calls per CPU-second of the relay bound any proxy's from above on this machine; the
# ratio says how much of sipfence's CPU is its own work and how much the system calls
# and wake-ups every proxy pays.
#
#     bash scripts/floor.sh                          # 8000 calls/s, 10 s, 2 sittings
#     RATE=4000 DURATION=15 SITTINGS=3 bash scripts/floor.sh
#
# sipfence runs with one worker on an interconnect trunk (udp 127.0.0.1:5060 to the
# UAS on 127.0.0.1:5080) holding the Kamailio peer's 1M-entry blacklist when it has
# been generated (scripts/load.sh does), else the built-in policy's lists.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
RELAY=$ROOT/../shared/peers/udp-relay
[ -f "$RELAY/bench.sh" ] || { echo "floor: $RELAY/bench.sh not found" >&2; exit 1; }
RATE=${RATE:-8000}
DURATION=${DURATION:-10}
SITTINGS=${SITTINGS:-2}
bash scripts/deps.sh
cargo build --release --locked --bin sipfence
OUT=${OUT:-$ROOT/target/floor/$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT"
# The relay bench builds its relays in its own target/; on a read-only ../shared, a copy.
if ! { [ -x "$RELAY/target/release/udp-relay-batched" ] || (cd "$RELAY" && cargo build --release -q 2>/dev/null); }; then
  cp -r "$RELAY" "$OUT/relay"; RELAY=$OUT/relay
  (cd "$RELAY" && cargo build --release -q)
fi
BLACKLIST=$ROOT/../shared/peers/kamailio/data/blacklist.txt
{
  echo '[general]'
  echo 'server = "sipfence"'
  if [ -s "$BLACKLIST" ]; then
    printf '[lists.blacklist]\nfiles = ["%s"]\n' "$BLACKLIST"
  fi
  printf '[metrics]\nlisten = "127.0.0.1:9091"\n'
  printf '[[trunk]]\nname = "ic"\nrole = "interconnect"\nlisten = ["udp:127.0.0.1:5060"]\n'
  printf 'sources = ["127.0.0.0/8"]\nnext_hop = "udp:127.0.0.1:5080"\n'
} > "$OUT/floor.toml"
"$ROOT/target/release/sipfence" check --config "$OUT/floor.toml" | tail -1
for sitting in $(seq 1 "$SITTINGS"); do
  for p in batched sipfence; do
    cmd=$p
    [ "$p" = sipfence ] && cmd="$ROOT/target/release/sipfence run --config $OUT/floor.toml --workers 1"
    # The previous run's sockets close before the next binds the same ports.
    sleep 3
    bash "$RELAY/bench.sh" "$cmd" "$RATE" "$DURATION" 2>&1 | grep '^RESULT' \
      | sed "s#^RESULT proxy=[^=]* rate=#RESULT sitting=$sitting proxy=$p rate=#" \
      | tee -a "$OUT/results.txt" || true
  done
done
python3 - "$OUT/results.txt" <<'PY'
import re, statistics, sys
rows = {}
for line in open(sys.argv[1]):
    kv = dict(re.findall(r"(\S+?)=(\S+)", line))
    if int(kv.get("failed", "1")) * 1000 > int(kv.get("calls", "1")):
        print(f"sitting {kv['sitting']}: {kv['proxy']} failed {kv['failed']} calls: not counted")
        continue
    rows.setdefault(kv["sitting"], {})[kv["proxy"]] = float(kv["calls_per_proxy_cpu_s"])
ratios = [r["sipfence"] / r["batched"] for r in rows.values() if r.get("batched") and "sipfence" in r]
for s, r in sorted(rows.items()):
    if "batched" in r and "sipfence" in r:
        print(f"sitting {s}: batched relay {r['batched']:.0f}, sipfence {r['sipfence']:.0f} calls per CPU-second: {r['sipfence'] / r['batched']:.2f} of the floor")
if ratios:
    print(f"median: sipfence runs at {statistics.median(ratios):.2f} of the batched relay's calls per CPU-second")
PY
