#!/usr/bin/env bash
# The load benchmark of issue #8, in one command: builds (release), seeds what is missing,
# then for every target × scenario, interleaved and repeated, measures saturation throughput
# (oha -z DURATION -c 32), p50/p99 at a fixed rate of half that, SQL statements and CPU time
# per request, and peak RSS; finally prints the tables of BENCHMARKS.md.
#
#   benches/load.sh                  # everything, 3 repetitions (about 45 min once seeded)
#   QUICK=1 benches/load.sh          # 1 repetition, short durations (a smoke run)
#
# Targets: the subgraph on SQLite and PostgreSQL in three cache states (db: no cache at all;
# redis: L1 off, Redis warm; l1: in-process cache warm), the subgraph on the small PostgreSQL
# catalog (flat latency), B0 (fixed bytes from plain axum) and B2 (Apollo Server, PostgreSQL,
# on the large catalog and on the small one: `b2-small`).
# Scenarios: S1 (`SearchResultsMainImages`, 50 hotels), S2 (`HotelGallery`, 30 images), MIX
# (90% S1, 10% S2). The server runs on core 1 (`taskset -c 1`), oha on core 0; PostgreSQL and
# Redis are not pinned.
# A subgraph target with the suffix `-exec` (e.g. `pg-l1-exec`) runs with `COMPILED_PLANS=off`:
# every operation through async-graphql's executor, the reference the compiled plans are
# compared with in the same run.
#
# Environment (defaults):
#   QUICK=0 SKIP_BUILD=0 REPS=3 DURATION=10s WARMUP=3s CONNECTIONS=32
#   HOTELS=1000000 (large PostgreSQL catalog) SMALL_HOTELS=10000 (small PostgreSQL catalog)
#   SQLITE_HOTELS=200000 (the SQLite catalog) IMAGES_PER_HOTEL=20
#   PG=postgres://postgres@127.0.0.1:5432 REDIS=redis://127.0.0.1:6379
#   DATA=/tmp/isg-bench (SQLite files, bodies)  OUT=benches/results/<UTC time>
#   TARGETS="..." (a subset, by name; see `all_targets`)  SCENARIOS="S1 S2 MIX"
#   CARGO_TARGET_DIR (as cargo)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

QUICK=${QUICK:-0}
if [[ $QUICK == 1 ]]; then
  REPS=${REPS:-1} DURATION=${DURATION:-3s} WARMUP=${WARMUP:-1s}
else
  REPS=${REPS:-3} DURATION=${DURATION:-10s} WARMUP=${WARMUP:-3s}
fi
CONNECTIONS=${CONNECTIONS:-32}
HOTELS=${HOTELS:-1000000}
SMALL_HOTELS=${SMALL_HOTELS:-10000}
SQLITE_HOTELS=${SQLITE_HOTELS:-200000}
IMAGES_PER_HOTEL=${IMAGES_PER_HOTEL:-20}
PG=${PG:-postgres://postgres@127.0.0.1:5432}
REDIS=${REDIS:-redis://127.0.0.1:6379}
DATA=${DATA:-/tmp/isg-bench}
OUT=${OUT:-$ROOT/benches/results/$(date -u +%Y%m%dT%H%M%SZ)}
SCENARIOS=${SCENARIOS:-S1 S2 MIX}
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
BIN=$TARGET_DIR/release/images-subgraph
B0_BIN=$TARGET_DIR/release/b0
PORT=4300
URL=http://127.0.0.1:$PORT/graphql
SERVER_CORE=1 CLIENT_CORE=0

PG_LARGE="$PG/bench"
PG_SMALL="$PG/bench_small"
SQLITE_LARGE="sqlite://$DATA/bench-$SQLITE_HOTELS.db?mode=rwc"

all_targets() {
  echo "pg-db pg-redis pg-l1 pg-l1-exec sqlite-db sqlite-redis sqlite-l1 pg-small-db pg-small-l1 b0 b2 b2-small"
}
TARGETS=${TARGETS:-$(all_targets)}

log() { printf '== %s  [%s, load %s]\n' "$*" "$(date -u +%H:%M:%S)" "$(cut -d' ' -f1-3 /proc/loadavg)" >&2; }

mkdir -p "$DATA" "$OUT/raw"

# ---------------------------------------------------------------- build
if [[ ${SKIP_BUILD:-0} != 1 ]]; then
  log "build (release)"
  cargo build --release --locked -j 2 --bin images-subgraph
  CARGO_TARGET_DIR=$TARGET_DIR cargo build --release -j 2 --manifest-path benches/b0/Cargo.toml
  npm ci --prefix benches/apollo --no-audit --no-fund --silent
fi
command -v oha >/dev/null || { echo "oha is missing: cargo install oha --locked" >&2; exit 1; }

# ---------------------------------------------------------------- data
pg_hotels() { # database → hotel count (0 when missing)
  psql "$PG/$1" -Atc 'select count(*) from hotel' 2>/dev/null || echo 0
}

seed_pg() { # database hotels
  local db=$1 hotels=$2
  if [[ $(pg_hotels "$db") == "$hotels" ]]; then return; fi
  log "seeding $db with $hotels hotels"
  psql "$PG/postgres" -qc "drop database if exists $db" -c "create database $db"
  DATABASE_URL="$PG/$db" "$BIN" seed --hotels "$hotels" --images-per-hotel "$IMAGES_PER_HOTEL"
  psql "$PG/$db" -qc 'vacuum analyze'
}

seed_sqlite() { # file hotels
  local file=$1 hotels=$2
  if [[ -f $file ]] && [[ $(sqlite3 "$file" 'select count(*) from hotel' 2>/dev/null || echo 0) == "$hotels" ]]; then
    return
  fi
  log "seeding $file with $hotels hotels"
  rm -f "$file" "$file-wal" "$file-shm"
  DATABASE_URL="sqlite://$file?mode=rwc" "$BIN" seed --hotels "$hotels" --images-per-hotel "$IMAGES_PER_HOTEL"
}

needs() { [[ " $TARGETS " == *" $1"* ]]; }
if needs pg- || needs b2; then seed_pg bench "$HOTELS"; fi
if needs pg-small || needs b2-small; then seed_pg bench_small "$SMALL_HOTELS"; fi
if needs sqlite; then seed_sqlite "$DATA/bench-$SQLITE_HOTELS.db" "$SQLITE_HOTELS"; fi

for scenario in $SCENARIOS; do
  for hotels in $(printf '%s\n' "$HOTELS" "$SMALL_HOTELS" "$SQLITE_HOTELS" | sort -u); do
    body=$DATA/bodies-$scenario-$hotels.jsonl
    [[ -s $body ]] || python3 benches/bodies.py "$scenario" "$hotels" 2000 >"$body"
  done
done

# ---------------------------------------------------------------- servers
SERVER_PID=

wait_up() {
  for _ in $(seq 1 100); do
    if curl -fsS -o /dev/null -X POST -H 'content-type: application/json' \
      --data '{"query":"{__typename}"}' "$URL" 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "server did not come up" >&2
  return 1
}

stop_server() {
  if [[ -n $SERVER_PID ]]; then
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=
  fi
}
trap stop_server EXIT

# The subgraph: engine (pg|pg-small|sqlite), cache state (db|redis|l1), `-exec` for no plans.
start_subgraph() {
  local engine=$1 state=${2%-exec} url
  case $engine in
    pg) url=$PG_LARGE ;;
    pg-small) url=$PG_SMALL ;;
    sqlite) url=$SQLITE_LARGE ;;
  esac
  local -a env=(DATABASE_URL="$url" LISTEN_ADDR="127.0.0.1:$PORT" RUST_LOG=warn SEED_DEMO=false)
  case $state in
    db) env+=(CACHE_L1_ENTRIES=0) ;;
    redis) env+=(CACHE_L1_ENTRIES=0 REDIS_URL="$REDIS" REDIS_PREFIX="bench-$engine") ;;
    l1) env+=(CACHE_L1_ENTRIES=2000000) ;;
  esac
  if [[ $2 == *-exec ]]; then env+=(COMPILED_PLANS=off); fi
  env "${env[@]}" taskset -c $SERVER_CORE "$BIN" serve >"$OUT/raw/server.log" 2>&1 &
  SERVER_PID=$!
  wait_up
}

start_b0() { # scenario
  taskset -c $SERVER_CORE "$B0_BIN" "127.0.0.1:$PORT" "$DATA/response-$1.json" >"$OUT/raw/b0.log" 2>&1 &
  SERVER_PID=$!
  wait_up
}

start_b2() { # database URL
  (cd benches/apollo && DATABASE_URL="$1" PORT=$PORT POOL_SIZE=16 NODE_ENV=production \
    exec taskset -c $SERVER_CORE node server.mjs) >"$OUT/raw/b2.log" 2>&1 &
  SERVER_PID=$!
  wait_up
}

# B0 answers with a real response of the subgraph: captured once per scenario.
capture_responses() {
  start_subgraph pg l1
  for scenario in $SCENARIOS; do
    head -1 "$DATA/bodies-$scenario-$HOTELS.jsonl" |
      curl -fsS -X POST -H 'content-type: application/json' --data-binary @- "$URL" \
        >"$DATA/response-$scenario.json"
  done
  stop_server
}

# ---------------------------------------------------------------- measuring
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
rss_kb() { awk '/VmHWM/ {print $2}' "/proc/$1/status"; }
statements() { # target → SQL statements sent so far
  case $1 in
    b0) echo 0 ;;
    b2 | b2-small) curl -fsS "http://127.0.0.1:$((PORT + 1))/" ;;
    *) curl -fsS "http://127.0.0.1:$PORT/metrics" | awk '$1 == "db_statements_total" {print $2}' ;;
  esac
}

oha_run() { # body file, output json, extra oha args...
  local body=$1 out=$2
  shift 2
  taskset -c $CLIENT_CORE oha --no-tui --output-format json -c "$CONNECTIONS" -m POST \
    -H 'content-type: application/json' -Z "$body" "$@" "$URL" >"$out"
}

measure() { # target scenario rep
  local target=$1 scenario=$2 rep=$3 hotels=$HOTELS engine state
  case $target in
    pg-small-*) hotels=$SMALL_HOTELS engine=pg-small state=${target#pg-small-} ;;
    sqlite-*) hotels=$SQLITE_HOTELS engine=sqlite state=${target#*-} ;;
    pg-*) engine=pg state=${target#*-} ;;
    b0) engine=none state=none ;;
    b2) engine=pg state=db ;;
    b2-small) hotels=$SMALL_HOTELS engine=pg-small state=db ;;
  esac
  local body=$DATA/bodies-$scenario-$hotels.jsonl
  local stem=$OUT/raw/$target-$scenario-$rep
  case $target in
    b0) start_b0 "$scenario" ;;
    b2) start_b2 "$PG_LARGE" ;;
    b2-small) start_b2 "$PG_SMALL" ;;
    *) start_subgraph "$engine" "$state" ;;
  esac
  # Warm-up: connections, JIT, and in the warm states the cache (the whole body file once).
  oha_run "$body" /dev/null -z "$WARMUP"
  if [[ ${state%-exec} == l1 || ${state%-exec} == redis ]]; then oha_run "$body" /dev/null -n 2000; fi

  local load cpu0 st0 cpu1 st1
  load=$(cut -d' ' -f1 /proc/loadavg)
  cpu0=$(cpu_ticks "$SERVER_PID") st0=$(statements "$target")
  oha_run "$body" "$stem-sat.json" -z "$DURATION"
  cpu1=$(cpu_ticks "$SERVER_PID") st1=$(statements "$target")
  local rate
  rate=$(python3 -c 'import json,sys; print(max(1, int(json.load(open(sys.argv[1]))["summary"]["requestsPerSec"] / 2)))' "$stem-sat.json")
  oha_run "$body" "$stem-fixed.json" -z "$DURATION" -q "$rate" --latency-correction
  python3 benches/summarize.py record "$stem-sat.json" "$stem-fixed.json" \
    target="$target" scenario="$scenario" rep="$rep" hotels="$hotels" engine="$engine" \
    state="$state" rate="$rate" cpu_ticks="$((cpu1 - cpu0))" clk_tck="$(getconf CLK_TCK)" \
    statements="$((st1 - st0))" rss_kb="$(rss_kb "$SERVER_PID")" load="$load" \
    >>"$OUT/runs.jsonl"
  stop_server
  log "$target $scenario rep $rep: $(tail -1 "$OUT/runs.jsonl" | python3 benches/summarize.py brief)"
}

if needs b0; then capture_responses; fi
{
  echo "commit=$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- src Cargo.toml || echo -dirty)"
  echo "nproc=$(nproc)"
  echo "cpu=$(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)"
  echo "oha=$(oha --version)"
  echo "node=$(node --version)"
  echo "command=QUICK=$QUICK REPS=$REPS DURATION=$DURATION HOTELS=$HOTELS SMALL_HOTELS=$SMALL_HOTELS SQLITE_HOTELS=$SQLITE_HOTELS benches/load.sh"
  echo "start_load=$(cut -d' ' -f1-3 /proc/loadavg)"
} >"$OUT/machine.txt"

for rep in $(seq 1 "$REPS"); do
  for target in $TARGETS; do
    for scenario in $SCENARIOS; do
      measure "$target" "$scenario" "$rep"
    done
  done
done
echo "end_load=$(cut -d' ' -f1-3 /proc/loadavg)" >>"$OUT/machine.txt"

python3 benches/summarize.py report "$OUT/runs.jsonl" "$OUT/machine.txt" | tee "$OUT/tables.md"
log "results in $OUT"
