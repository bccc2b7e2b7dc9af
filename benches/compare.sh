#!/usr/bin/env bash
# One lever at a time: builds of the subgraph side by side on one scenario, back to back and
# repeated, by CPU time per request (the steadiest figure) and throughput at saturation.
#
#   benches/compare.sh /tmp/before/images-subgraph target/release/images-subgraph
#
# Environment (defaults): SCENARIO=S1 DATABASE=postgres://postgres@127.0.0.1:5432/bench_small
#   HOTELS=10000 (the catalog of DATABASE: bodies are made for it) REPS=2 REQUESTS=20000
#   STATE=l1 (or db: no cache) PERF= (set: also record a perf profile of the last build to
#   perf.data, 8 s at saturation)
# Needs `oha` and a seeded DATABASE (`benches/load.sh` seeds `bench_small`).
set -euo pipefail
cd "$(dirname "$0")/.."

SCENARIO=${SCENARIO:-S1}
DATABASE=${DATABASE:-postgres://postgres@127.0.0.1:5432/bench_small}
HOTELS=${HOTELS:-10000}
REPS=${REPS:-2}
REQUESTS=${REQUESTS:-20000}
STATE=${STATE:-l1}
DATA=${DATA:-/tmp/isg-bench}
URL=http://127.0.0.1:4300/graphql
BODY=$DATA/bodies-$SCENARIO-$HOTELS.jsonl
mkdir -p "$DATA"
[[ -s $BODY ]] || python3 benches/bodies.py "$SCENARIO" "$HOTELS" 2000 >"$BODY"

oha_() {
  taskset -c 0 oha --no-tui --output-format json -m POST -H 'content-type: application/json' \
    -Z "$BODY" "$@" "$URL"
}

run() { # binary, profile?
  local entries=2000000
  [[ $STATE == db ]] && entries=0
  DATABASE_URL=$DATABASE LISTEN_ADDR=127.0.0.1:4300 RUST_LOG=warn SEED_DEMO=false \
    CACHE_L1_ENTRIES=$entries taskset -c 1 "$1" serve >/dev/null 2>&1 &
  local pid=$!
  for _ in $(seq 1 100); do
    curl -fsS -o /dev/null -X POST -H 'content-type: application/json' \
      --data '{"query":"{__typename}"}' "$URL" 2>/dev/null && break
    sleep 0.1
  done
  oha_ -n 4000 -c 8 >/dev/null
  local t0 t1
  t0=$(awk '{print $14 + $15}' "/proc/$pid/stat")
  oha_ -n "$REQUESTS" -c 32 >/tmp/compare-sat.json
  t1=$(awk '{print $14 + $15}' "/proc/$pid/stat")
  python3 - "$1" "$((t1 - t0))" "$(getconf CLK_TCK)" "$REQUESTS" <<'EOF'
import json, sys
binary, ticks, clk, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
summary = json.load(open("/tmp/compare-sat.json"))["summary"]
print(f"| {binary} | {ticks / clk * 1e6 / n:,.0f} | {summary['requestsPerSec']:,.0f} |")
EOF
  if [[ ${2:-} == profile ]]; then
    perf record -F 2000 -g -p "$pid" -o perf.data -- sleep 8 >/dev/null 2>&1 &
    local perf_pid=$!
    oha_ -z 8s -c 32 >/dev/null
    wait "$perf_pid" || true
  fi
  kill "$pid"
  wait "$pid" 2>/dev/null || true
}

echo "$SCENARIO, $STATE, $DATABASE; $REQUESTS requests at 32 connections after 4,000 to warm up; load $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "| build | CPU µs/request | req/s |"
echo "|---|---:|---:|"
for _ in $(seq 1 "$REPS"); do
  for binary in "$@"; do run "$binary"; done
done
if [[ -n ${PERF:-} ]]; then
  last=${*: -1}
  run "$last" profile
  echo
  echo "profile of $last in perf.data: perf report -i perf.data --no-children --sort dso,symbol"
fi
