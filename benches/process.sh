#!/usr/bin/env bash
# Image-processing benchmark (issue 16 item 11): a local HTTP server (the partner's CDN) serves a
# generated corpus (2,000 photo-like 1600x1067 JPEGs plus 50 PNGs and 50 WebPs); a feed that
# points at it, declaring no dimensions, hashes or scores, is imported with the release build of
# the real `import` command and every image processed with the real `process` command (fetch,
# measure, store, curate), into PostgreSQL and SQLite. The floor is the same measuring work in a
# tight loop over the same files on every core, with no HTTP and no database.
#
#   benches/process.sh                          # 2,000 JPEGs, PostgreSQL and SQLite
#   JPEGS=200 ENGINES=sqlite benches/process.sh
#
# Environment: JPEGS (2000), OTHERS (50 PNGs and 50 WebPs), ENGINES ("postgres sqlite"),
# CONCURRENCY (4 workers, on both engines), PORT (18090), DIR (target/bench/process),
# PG_USER (postgres or root), NO_BUILD (set: use the release binaries as built).
set -euo pipefail
cd "$(dirname "$0")/.."

JPEGS=${JPEGS:-2000}
OTHERS=${OTHERS:-50}
ENGINES=${ENGINES:-"postgres sqlite"}
CONCURRENCY=${CONCURRENCY:-4}
PORT=${PORT:-18090}
DIR=${DIR:-target/bench/process}
PG_SOCKET=${PG_SOCKET:-/var/run/postgresql}
DB=isg_bench_process
BIN=target/release/images-subgraph

log() { printf '\n== %s\n' "$*" >&2; }
now() { date +%s.%N; }

# shellcheck source=benches/lib.sh
. benches/lib.sh

if [ -z "${NO_BUILD:-}" ]; then
  log "build (release)"
  cargo build --release --locked --bin images-subgraph >&2
  cargo bench --locked --bench process --no-run >&2
fi
TOOL=$(ls -t target/release/deps/process-* | grep -v '\.d$' | head -1)

mkdir -p "$DIR"
DIR=$(realpath "$DIR")
log "corpus ($JPEGS JPEGs, $OTHERS PNGs, $OTHERS WebPs)"
"$TOOL" corpus "$DIR" "http://127.0.0.1:$PORT" "$JPEGS" "$OTHERS" >&2
FILES=$(ls "$DIR/files" | wc -l)
MB=$(du -sm "$DIR/files" | cut -f1)

log "floor: measure() over the files in memory, every core"
FLOOR=$("$TOOL" floor "$DIR")
echo "$FLOOR" >&2
FLOOR_RATE=$(echo "$FLOOR" | sed -E 's/.* ([0-9.]+) images\/s.*/\1/')

"$TOOL" serve "$DIR" "$PORT" >/dev/null &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true' EXIT
for _ in $(seq 1 50); do curl -sf -o /dev/null "http://127.0.0.1:$PORT/p00000.jpg" && break; sleep 0.1; done

PARTNERS_SQL="INSERT INTO partner (id, name, kind, url_rewrites, created_at, updated_at) VALUES
  (1, 'Partner 1', 'OTA', '[]', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP),
  (2, 'Partner 2', 'HOTEL_CHAIN', '[]', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
PGU=$(pg_user)

declare -A RESULT
for engine in $ENGINES; do
  log "$engine"
  store=$DIR/store-$engine
  rm -rf "$store"; mkdir -p "$store"
  case $engine in
    postgres)
      psql -h "$PG_SOCKET" -U "$PGU" -d postgres -qc "DROP DATABASE IF EXISTS $DB" -c "CREATE DATABASE $DB"
      url="postgres:///$DB?host=$PG_SOCKET&user=$PGU"
      DATABASE_URL=$url SEED_DEMO=false "$BIN" migrate >/dev/null 2>&1
      psql -h "$PG_SOCKET" -U "$PGU" -d "$DB" -qc "$PARTNERS_SQL"
      ;;
    sqlite)
      rm -f "$DIR/bench.db" "$DIR/bench.db-wal" "$DIR/bench.db-shm"
      url="sqlite://$DIR/bench.db?mode=rwc"
      DATABASE_URL=$url SEED_DEMO=false "$BIN" migrate >/dev/null 2>&1
      python3 -c "import sqlite3,sys; c=sqlite3.connect('$DIR/bench.db'); c.execute(sys.argv[1]); c.commit()" "$PARTNERS_SQL"
      ;;
    *) echo "unknown engine $engine" >&2; exit 1 ;;
  esac
  export DATABASE_URL=$url SEED_DEMO=false RUST_LOG=warn FETCH_ALLOW_HOSTS=127.0.0.1 \
    OBJECT_STORE_URL="file://$store" PROCESS_PER_HOST=$CONCURRENCY
  "$BIN" import "$DIR/feed.jsonl" >"$DIR/$engine-import.out" 2>&1
  t0=$(now)
  "$BIN" process --concurrency "$CONCURRENCY" >"$DIR/$engine-process.out" 2>&1
  t1=$(now)
  sed 's/^/    /' "$DIR/$engine-process.out" | grep -v '^\s*$' >&2
  RESULT[$engine]=$(python3 -c "
s = $t1 - $t0
print(f'{$FILES / s:.1f} images/s, {$MB / s:.1f} MB/s, {s:.1f} s, {100 * $FILES / s / $FLOOR_RATE:.0f}% of the floor')")
  unset DATABASE_URL
done

echo
echo "commit $(git rev-parse --short HEAD), $(nproc) cores, load average before: see above"
echo "corpus: $FILES files, $MB MB; $FLOOR"
for engine in $ENGINES; do echo "$engine: ${RESULT[$engine]}"; done
