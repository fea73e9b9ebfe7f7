#!/usr/bin/env bash
# benches/load.sh -- one command for the load-test harness (../shared/bench, relative to the
# repository root) against this repository's release binary, through benches/pinproxy-adapter.sh,
# with nginx and HAProxy in the same run.
#
#   bash benches/load.sh                       # build the release binary, then the full harness
#   ROUNDS=3 SCENARIOS="a b" bash benches/load.sh
#
# Every harness setting (DURATION, SCENARIOS, ROUNDS, LAYOUT, OUT_DIR, ...) passes through; see
# ../shared/bench/README.md. BENCH_DIR overrides where the harness is; PINPROXY_BIN skips the
# build and uses that binary. The result tables land in the harness's results/ directory (the
# path is printed at the end); BENCHMARKS.md says how to read them.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
HARNESS=${BENCH_DIR:-$ROOT/../shared/bench}
[ -x "$HARNESS/run.sh" ] || { echo "load.sh: no harness at $HARNESS/run.sh (set BENCH_DIR)" >&2; exit 1; }

if [ -z "${PINPROXY_BIN:-}" ]; then
    cargo build --release --manifest-path "$ROOT/Cargo.toml"
    PINPROXY_BIN=$ROOT/target/release/pinproxy
fi
[ -x "$PINPROXY_BIN" ] || { echo "load.sh: no binary at $PINPROXY_BIN" >&2; exit 1; }

export PINPROXY_BIN
export CANDIDATE=$ROOT/benches/pinproxy-adapter.sh
export CANDIDATE_NAME=${CANDIDATE_NAME:-pinproxy}
exec "$HARNESS/run.sh"
