#!/usr/bin/env bash
# Replay throughput benchmark: how fast `sipfence replay --json` gets through a large
# capture, and how much memory it needs (replay streams, so max RSS should not grow with
# the size of the capture).
#
#     bash scripts/bench_replay.sh                     # 200000 calls
#     CALLS=1000000 OUT=target/bench/replay-1m.pcap bash scripts/bench_replay.sh
#
# The capture (classic pcap, Ethernet/IPv4/UDP) comes from
# `python3 scripts/gen_testdata.py --big CALLS OUT`: a busy gateway's mix of allowed and
# rejected calls, OPTIONS keep-alives and REGISTERs, about 4.3 packets (one SIP message
# each) per call, 1000 calls per second of capture time. It is generated when OUT (default
# target/bench/replay-big.pcap) is missing, or when OUT.info says it holds another number
# of calls. It does not build anything: it times the existing target/release/sipfence.
#
# One untimed run (which also brings the file into the page cache) reads the summary, the
# last line of the --json output; then RUNS (default 3) timed runs of
#     target/release/sipfence replay --json OUT > /dev/null
# Prints the file size, each run, and one line
#     REPLAY file=... packets=... sip_messages=... calls=... wall_s=... msgs_per_s=...
#            packets_per_s=... max_rss_mb=...
# with wall_s the best run (the rates are from it) and max_rss_mb the largest of the runs;
# the median is on the line before. `calls` counts initial INVITEs: 80% of CALLS, the rest
# being OPTIONS and REGISTER transactions.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BIN=$ROOT/target/release/sipfence
CALLS=${CALLS:-200000}
OUT=${OUT:-target/bench/replay-big.pcap}
RUNS=${RUNS:-3}

die() { echo "bench_replay: $*" >&2; exit 1; }
[ -x "$BIN" ] || die "$BIN not found: run cargo build --release first"
[ -x /usr/bin/time ] || die "/usr/bin/time not found (it measures max RSS): apt-get install time"
case $CALLS in '' | *[!0-9]*) die "CALLS must be a number, not '$CALLS'";; esac
case $RUNS in '' | *[!0-9]* | 0) die "RUNS must be a positive number, not '$RUNS'";; esac

mkdir -p "$(dirname "$OUT")"
info=$OUT.info
if [ -f "$OUT" ] && [ -f "$info" ] && ! grep -q "^calls=$CALLS\$" "$info"; then
  echo "bench_replay: $OUT holds $(sed -n 's/^calls=//p' "$info") calls, not $CALLS: regenerating" >&2
  rm -f "$OUT" "$info"
fi
if [ ! -f "$OUT" ]; then
  echo "bench_replay: generating $OUT ($CALLS calls)" >&2
  rm -f "$info"
  gen=$(python3 scripts/gen_testdata.py --big "$CALLS" "$OUT")
  echo "$gen" >&2
  printf 'calls=%s\n%s\n' "$CALLS" "$gen" > "$info"
elif [ ! -f "$info" ]; then
  echo "bench_replay: using $OUT as it is (no $info: its number of calls is not checked)" >&2
fi
size=$(stat -c %s "$OUT")
echo "file: $OUT $size bytes ($(awk -v b="$size" 'BEGIN { printf "%.1f", b / 1048576 }') MiB)"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# Untimed run: the summary, and the file in the page cache for the timed runs.
status=0
"$BIN" replay --json "$OUT" 2> "$tmp/stderr" | tail -n 1 > "$tmp/summary" || status=$?
[ "$status" -eq 0 ] || die "replay exited with $status: $(tail -n 3 "$tmp/stderr")"
read -r packets sip_messages calls parse_errors damaged < <(python3 -c '
import json, sys
s = json.load(open(sys.argv[1]))["summary"]
print(s["packets"], s["sip_messages"], s["calls"], s["parse_errors"], len(s["damaged"]))
' "$tmp/summary") || die "no JSON summary on the last line of the output: $(cat "$tmp/summary")"
[ "$parse_errors" -eq 0 ] || echo "bench_replay: WARNING: $parse_errors SIP messages did not parse" >&2
[ "$damaged" -eq 0 ] || echo "bench_replay: WARNING: the capture is damaged: $(cat "$tmp/summary")" >&2
if [ -f "$info" ]; then
  # The generator's line says what replay should find.
  want_calls=$(sed -n 's/.* \([0-9]*\) INVITE calls.*/\1/p' "$info")
  want_packets=$(sed -n 's/.*; \([0-9]*\) packets.*/\1/p' "$info")
  if [ "$calls" != "$want_calls" ] || [ "$packets" != "$want_packets" ] \
     || [ "$sip_messages" != "$want_packets" ]; then
    echo "bench_replay: WARNING: replay found $packets packets, $sip_messages SIP messages," \
         "$calls calls; the generator wrote $want_packets packets, $want_calls calls" >&2
  fi
fi

walls=()
rss_kb=0
for run in $(seq 1 "$RUNS"); do
  t0=$(date +%s%N)
  status=0
  /usr/bin/time -f "%e %U %S %M" -o "$tmp/time" \
    "$BIN" replay --json "$OUT" > /dev/null 2> "$tmp/stderr" || status=$?
  t1=$(date +%s%N)
  [ "$status" -eq 0 ] || die "replay exited with $status: $(tail -n 3 "$tmp/stderr")"
  read -r _ user sys kb < <(tail -n 1 "$tmp/time")
  wall=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", (b - a) / 1e9 }')
  walls+=("$wall")
  [ "$kb" -le "$rss_kb" ] || rss_kb=$kb
  echo "run $run: wall_s=$wall user_s=$user sys_s=$sys max_rss_mb=$(awk -v k="$kb" 'BEGIN { printf "%.1f", k / 1024 }')"
done
sorted=$(printf '%s\n' "${walls[@]}" | sort -g)
best=$(echo "$sorted" | head -n 1)
median=$(echo "$sorted" | sed -n "$(( (RUNS + 1) / 2 ))p")
echo "runs=$RUNS wall_best_s=$best wall_median_s=$median"
awk -v f="$OUT" -v p="$packets" -v m="$sip_messages" -v c="$calls" -v w="$best" -v k="$rss_kb" 'BEGIN {
  printf "REPLAY file=%s packets=%d sip_messages=%d calls=%d wall_s=%.3f msgs_per_s=%.0f packets_per_s=%.0f max_rss_mb=%.1f\n",
    f, p, m, c, w, m / w, p / w, k / 1024 }'
