#!/usr/bin/env bash
# Runs every test of the project: format and lint gates, unit, property, corpus,
# end-to-end (sipp), replay and observability tests, and the fuzz smoke pass when
# cargo-fuzz is usable. Installs what it needs first (scripts/deps.sh).
#
#     bash scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
# deps.sh installed every tool the tests drive: a test that finds one missing fails
# instead of skipping (tests/common: tools_required).
export SIPFENCE_TOOLS_REQUIRED=1
echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --all-targets --locked -- -D warnings
echo "== cargo test"
cargo test --locked -- --test-threads 4 2>&1 | tee /tmp/sipfence-test.log
echo "== instruction bench workloads, one iteration each (its set-up checks must hold)"
for w in parse decide sipi behaviour proxy call rsip; do
  WHAT=$w N=2 cargo test -q --locked --bench instructions
done
if [ -x scripts/fuzz.sh ] && [ "${SIPFENCE_SKIP_FUZZ:-0}" != 1 ]; then
  echo "== fuzz smoke"
  bash scripts/fuzz.sh smoke
fi
passed=$(grep -Eo '[0-9]+ passed' /tmp/sipfence-test.log | awk '{s+=$1} END {print s+0}')
failed=$(grep -Eo '[0-9]+ failed' /tmp/sipfence-test.log | awk '{s+=$1} END {print s+0}')
echo "tests: $passed passed, $failed failed"
