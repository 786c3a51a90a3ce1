#!/usr/bin/env bash
# Instructions per message (callgrind), for the decision core and rsip on the same INVITE:
# a figure that does not drift with the load of a shared machine, unlike time.
#
#     bash scripts/instructions.sh
#     WORKLOADS="parse decide" bash scripts/instructions.sh    # a subset (no ratio line)
#
# `proxy` and `call` count the proxy's stateless step (parse, checks, decision, Via and
# edits, the answer) without sockets: a call set-up, and the load run's average call.
#
# Each workload runs twice (N=1000 and N=11000) and the difference is divided by 10000,
# which removes start-up (policy build, plan) from the count.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v valgrind >/dev/null || { apt-get update -qq && apt-get install -y -qq valgrind >/dev/null; }
cargo bench --bench instructions --no-run --locked 2>/dev/null
BIN=${BIN:-$(ls -t target/release/deps/instructions-* | grep -v "\.d$" | head -1)}
count() {
  WHAT=$1 N=$2 valgrind --tool=callgrind --callgrind-out-file=/dev/null "$BIN" 2>&1 \
    | awk '/Collected/ {print $4}'
}
declare -A per
for w in ${WORKLOADS:-parse decide sipi behaviour proxy call rsip}; do
  a=$(count "$w" 1000); b=$(count "$w" 11000)
  per[$w]=$(( (b - a) / 10000 ))
  unit="per message"; [ "$w" = proxy ] && unit="per call set-up (INVITE forwarded, 180 and 200 relayed)"
  # `call` runs two calls per iteration (the load run's mix: one allowed whole, one refused).
  [ "$w" = call ] && { per[$w]=$(( per[$w] / 2 )); unit="per call (INVITE, 180, 200, ACK, BYE, 200; half the calls refused: INVITE, 403, ACK)"; }
  # `call-rr`: the same on a trunk with record_route (each call's From kept for its later requests).
  [ "$w" = call-rr ] && { per[$w]=$(( per[$w] / 2 )); unit="per call, record_route trunk (as call)"; }
  printf '%-7s %8d instructions %s\n' "$w" "${per[$w]}" "$unit"
done
[[ -n ${per[rsip]:-} ]] || exit 0
awk -v r="${per[rsip]}" -v d="${per[decide]}" 'BEGIN { printf "rsip parse / sipfence parse+decide: %.2fx\n", r / d }'
