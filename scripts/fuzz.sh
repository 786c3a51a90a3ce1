#!/usr/bin/env bash
# Fuzzing with cargo-fuzz (libFuzzer + AddressSanitizer) on the machine's stable Rust.
#
#     bash scripts/fuzz.sh smoke              # every target for FUZZ_SECS (default 20) s: what CI runs
#     bash scripts/fuzz.sh run TARGET SECS    # one target
#     bash scripts/fuzz.sh long SECS          # every target for SECS s each (a campaign)
#
# cargo-fuzz asks rustc for -Z flags (sanitizers, coverage instrumentation); stable rustc
# accepts them with RUSTC_BOOTSTRAP=1, which this script sets for the fuzz build only.
# Seeds: ../shared/corpus (RFC 4475 messages, captures), testdata/, deploy/ configs and
# lists, fuzz/regressions/. A crash fails the run; its input is in fuzz/artifacts/TARGET/.
# Copy it to fuzz/regressions/TARGET/ with the fix: `cargo test` replays it from then on.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
TARGETS="sip_parse decide rewrite config pcap sipi transports"
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz: installing cargo-fuzz" >&2
  cargo install cargo-fuzz --locked >&2
fi
export RUSTC_BOOTSTRAP=1

seed() {  # $1 = target: fill fuzz/corpus/$1 from the seed sources (idempotent)
  local d=fuzz/corpus/$1
  mkdir -p "$d"
  local srcs=(testdata/sip testdata/pcap deploy deploy/examples deploy/examples/lists "fuzz/regressions/$1")
  [ -d ../shared/corpus ] && srcs+=(../shared/corpus/rfc4475 ../shared/corpus/pcap)
  for s in "${srcs[@]}"; do
    [ -d "$s" ] || continue
    find "$s" -maxdepth 1 -type f -size -1M -exec cp -n {} "$d/" \; 2>/dev/null || true
  done
  cp -n src/numbering/cn.plan "$d/" 2>/dev/null || true
}

run() {  # $1 = target, $2 = seconds
  [ -f "fuzz/fuzz_targets/$1.rs" ] || { echo "fuzz: no target '$1' (targets: $TARGETS)" >&2; return 2; }
  seed "$1"
  echo "== fuzz $1 for $2 s" >&2
  (cd fuzz && cargo fuzz run "$1" "corpus/$1" -- -max_total_time="$2" -rss_limit_mb=2048 -print_final_stats=1 2>&1) \
    | tee "target/fuzz-$1.log" | grep -E "^(stat::number_of_executed_units|stat::average_exec_per_sec|==|SUMMARY|Done)" || true
  if grep -qE "^(==[0-9]+==ERROR|SUMMARY: |thread '.*' panicked|deadly signal)" "target/fuzz-$1.log"; then
    echo "fuzz: $1 crashed; input saved in fuzz/artifacts/$1/" >&2
    return 1
  fi
  # libFuzzer ends a run it finished with "Done N runs": without it the target did not
  # build or start, which must not pass for a clean run.
  if ! grep -qE "^Done [0-9]+ runs" "target/fuzz-$1.log"; then
    echo "fuzz: $1 did not run to the end (see target/fuzz-$1.log)" >&2
    return 1
  fi
}

mkdir -p target
case "${1:-smoke}" in
  smoke)
    (cd fuzz && cargo fuzz build) >&2
    for t in $TARGETS; do run "$t" "${FUZZ_SECS:-20}"; done;;
  long)
    (cd fuzz && cargo fuzz build) >&2
    for t in $TARGETS; do run "$t" "${2:-600}"; done;;
  run) run "$2" "${3:-60}";;
  *) sed -n 2,12p "$0"; exit 2;;
esac
