#!/usr/bin/env bash
# Load run: sipfence and Kamailio 5.6 under the same rules and the same sipp load, in
# the same sitting, at rising call rates (../shared/peers/kamailio/run.sh does the
# driving and measuring; half the calls are blocked by the various rules).
#
#     bash scripts/load.sh                      # rates 2000 4000 8000, 15 s each
#     RATES="4000 8000 12000 16000" DURATION=20 WORKERS=1 bash scripts/load.sh
#     SITTINGS=4 bash scripts/load.sh           # four alternating sittings, median ratio
#     PROXIES="sipfence sipfence-behaviour" bash scripts/load.sh   # behaviour rules off / on
#     PCAP=6 SITTINGS=2 bash scripts/load.sh    # also each proxy's own latency, from a capture
#
# PCAP=S captures loopback for S seconds of each step (the peer's --pcap: tcpdump, kernel
# timestamps) and reports the time each proxy itself takes, INVITE in to 403 out, INVITE in
# to INVITE forwarded, 200 in to 200 relayed, in microseconds: sipp's response times tick
# in milliseconds and include sipp, the capture's do not.
#
# "sipfence-behaviour" is the same policy with every behaviour rule evaluated (the README's
# thresholds, action monitor: features counted and rules matched, calls unchanged, so the
# peer's expected answers still hold): the cost of the behaviour rules under load.
#
#     PROXIES="sipfence-counted sipfence-redis" bash scripts/load.sh   # counters local / on Redis
#     PROXIES="sipfence sipfence-hep" bash scripts/load.sh   # without / with the mirror to Homer
#
# "sipfence-hep" mirrors every message read and sent ([hep]) to udp 127.0.0.1:9061, where
# this script holds a socket it never reads: the kernel takes each packet and drops it
# when that socket's buffer is full, so the proxy pays the whole sending path and no
# collector competes for the two cores.
#
# Both count every call of the enterprise trunk against a per-trunk and a per-caller
# limit too high to refuse anything; "sipfence-redis" shares the counters through a
# redis-server this script starts on 127.0.0.1:6390, "sipfence-redis-stream" also sends
# every record to the Redis stream. Redis's own CPU is not in the proxy's figure.
# Prints the peer's RESULT lines for both proxies and a summary: the highest rate held
# with under 0.1% failed calls, sipp's response times, and calls per proxy CPU-second.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PEER=$ROOT/../shared/peers/kamailio
[ -x "$PEER/run.sh" ] || [ -f "$PEER/run.sh" ] || { echo "load: $PEER/run.sh not found" >&2; exit 1; }
RATES=${RATES:-"2000 4000 8000"}
DURATION=${DURATION:-15}
WORKERS=${WORKERS:-1}
PCAP=${PCAP:-0}
pcap_args=(); [ "$PCAP" != 0 ] && pcap_args=(--pcap "$PCAP")
PROXIES=${PROXIES:-"kamailio sipfence"}
bash scripts/deps.sh
cargo build --release --locked --bin sipfence
OUT=${OUT:-$ROOT/target/load/$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT"
# The peer's data (1M blacklist, 10k whitelist) is generated on its first run; make it now
# so that both proxies load the same files. Written to a copy when ../shared is read-only.
DATA=$PEER/data
if [ ! -s "$DATA/calls.csv" ]; then
  if ! python3 "$PEER/gen_data.py" "$DATA" >/dev/null 2>&1; then
    cp -r "$PEER" "$OUT/peer"; PEER=$OUT/peer; DATA=$PEER/data
    python3 "$PEER/gen_data.py" "$DATA" >&2
  fi
fi
sed "s#@DATA@#$DATA#g" deploy/bench/kamailio-contract.toml.in > "$OUT/sipfence.toml"
"$ROOT/target/release/sipfence" check --config "$OUT/sipfence.toml" | tail -1
# Behaviour thresholds on every trunk (a table right after each trunk's next_hop line).
sed '/^next_hop = /a [trunk.behaviour]\nattempts = 60\ndistinct_callees = 30\nsequential_callees = 10\nmin_asr_percent = 10\nasr_min_attempts = 20\nring_once = 3\nshort_calls = 5' \
  "$OUT/sipfence.toml" > "$OUT/sipfence-behaviour.toml"
# The contract's limits on the enterprise trunk only (`check` refuses them elsewhere).
sed '/^name = "ent"/,/^next_hop = /{/^next_hop = /a max_calls_per_minute = 100000000\nmax_calls_per_minute_per_caller = 1000000
}' "$OUT/sipfence.toml" > "$OUT/sipfence-counted.toml"
cp "$OUT/sipfence-counted.toml" "$OUT/sipfence-redis.toml"
printf '\n[redis]\nurl = "redis://127.0.0.1:6390"\ninstance = "load"\nrecords_stream = ""\n' >> "$OUT/sipfence-redis.toml"
# The same with every record also sent to the Redis stream.
cp "$OUT/sipfence-redis.toml" "$OUT/sipfence-redis-stream.toml"
sed -i 's/^records_stream = ""/records_stream = "records"/' "$OUT/sipfence-redis-stream.toml"
"$ROOT/target/release/sipfence" check --config "$OUT/sipfence-redis.toml" | tail -1
cp "$OUT/sipfence.toml" "$OUT/sipfence-hep.toml"
printf '\n[hep]\nserver = "udp:127.0.0.1:9061"\ncapture_id = 1\n' >> "$OUT/sipfence-hep.toml"
"$ROOT/target/release/sipfence" check --config "$OUT/sipfence-hep.toml" | tail -1
if [[ " $PROXIES " == *" sipfence-hep "* ]]; then
  python3 -c 'import socket, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 9061)); time.sleep(86400)' &
  hep_sink=$!
  trap 'kill $hep_sink 2>/dev/null || true' EXIT
fi
if [[ " $PROXIES " == *" sipfence-redis"* ]]; then
  redis-server --port 6390 --bind 127.0.0.1 --save "" --appendonly no --daemonize yes >/dev/null
  trap 'redis-cli -p 6390 shutdown nosave >/dev/null 2>&1 || true' EXIT
fi
for r in attempts callees sequential low-asr ring-once short-calls; do
  printf '\n[rules.behaviour-%s]\naction = "monitor"\n' "$r" >> "$OUT/sipfence-behaviour.toml"
done
"$ROOT/target/release/sipfence" check --config "$OUT/sipfence-behaviour.toml" | tail -1
# redis-server's CPU seconds so far (user + system), 0 when it is not running.
redis_cpu() {
  { redis-cli -p 6390 INFO cpu 2>/dev/null || true; } | tr -d '\r' \
    | awk -F: '/^used_cpu_(user|sys):/ {t += $2} END {printf "%.3f", t + 0}'
}
SITTINGS=${SITTINGS:-1}
for sitting in $(seq 1 "$SITTINGS"); do
for p in $PROXIES; do
  case $p in
    kamailio) args=(--workers "$WORKERS");;
    sipfence|sipfence-behaviour|sipfence-counted|sipfence-redis|sipfence-redis-stream|sipfence-hep) args=(--proxy-cmd "$ROOT/target/release/sipfence run --config $OUT/$p.toml --workers $WORKERS");;
  esac
  echo "== $p" >&2
  redis_before=$(redis_cpu)
  bash "$PEER/run.sh" "${args[@]}" "${pcap_args[@]}" --rates "$RATES" --duration "$DURATION" --outdir "$OUT/$p-$sitting" 2>"$OUT/$p-$sitting.log" \
    | sed "s/proxy=cmd/proxy=$p/; s/^RESULT /RESULT sitting=$sitting /; s/^rate=\([0-9]*\) .*PCAPLAT /PCAPLAT sitting=$sitting proxy=$p rate=\1 /" \
    | tee -a "$OUT/results.txt" || true
  # What the shared counters cost Redis over the whole step (every rate), not counted
  # in the proxy's CPU.
  if [[ $p == sipfence-redis* ]]; then
    echo "REDISCPU sitting=$sitting proxy=$p rates=${RATES// /,} redis_cpu_s=$(python3 -c "print(round($(redis_cpu) - $redis_before, 2))")" | tee -a "$OUT/results.txt"
  fi
done
done
echo
echo "summary (rate held = highest offered rate with under 0.1% failed calls):"
python3 - "$OUT/results.txt" <<'PY'
import re, statistics, sys
rows = {}
lat = {}
for line in open(sys.argv[1]):
    kv = dict(re.findall(r"(\S+?)=(\S+)", line))
    if line.startswith("PCAPLAT"):
        lat.setdefault((kv["proxy"], kv["rate"]), []).append(kv)
    if not line.startswith("RESULT"):
        continue
    rows.setdefault(kv["proxy"], []).append(kv)
for proxy, rs in rows.items():
    held = [r for r in rs if r["fail_pct"] != "na" and float(r["fail_pct"]) < 0.1]
    best = max((int(float(r["rate"])) for r in held), default=0)
    for r in rs:
        print(f"{proxy:18s} rate={r['rate']:>6s} failed={r['fail_pct']:>5s}% rtt_allowed(p50/p99)={r['rtt_allowed_ms(p50/p99/max)']} rtt_blocked={r['rtt_blocked_ms(p50/p99/max)']} calls/cpu-s={r['calls_per_proxy_cpu_s']} cpu%={r['proxy_core_pct']}")
    print(f"{proxy:18s} highest rate held: {best} calls/s")
# Each proxy against the first one (Kamailio by default), sitting by sitting: the VM
# drifts 10-20% between sittings, so only ratios within one sitting mean anything, and
# their median over several sittings is the figure to quote.
names = list(rows)
if len(names) > 1:
    base = names[0]
    def cps(proxy):
        out = {}
        for r in rows[proxy]:
            try:
                out.setdefault(r["rate"], {})[r.get("sitting", "1")] = float(r["calls_per_proxy_cpu_s"])
            except ValueError:
                pass
        return out
    b = cps(base)
    for other in names[1:]:
        o = cps(other)
        for rate in sorted(b, key=float):
            ratios = sorted(o[rate][s] / b[rate][s] for s in b[rate] if s in o.get(rate, {}) and b[rate][s] > 0)
            if ratios:
                print(f"{other} / {base} calls per CPU-s at {rate}: " + " ".join(f"{x:.2f}x" for x in ratios) + f"  median {statistics.median(ratios):.2f}x")
# The proxies' own latency (PCAP=S): p99 in microseconds per kind, sitting by sitting.
for (proxy, rate), ls in sorted(lat.items(), key=lambda x: (float(x[0][1]), x[0][0])):
    parts = []
    for kind in ("blocked", "forward", "relay"):
        key = f"{kind}_us(n/p50/p90/p99/p99.9/max)"
        p99 = [int(l[key].split("/")[3]) for l in ls if key in l and l[key].count("/") == 5]
        if p99:
            parts.append(f"{kind} p99 " + "/".join(map(str, p99)) + f" (median {statistics.median(p99):.0f})")
    print(f"{proxy:18s} rate={rate:>6s} own latency us: " + ", ".join(parts))
PY
echo "results in $OUT"
