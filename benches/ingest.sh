#!/usr/bin/env bash
# Ingestion benchmark (issue #5 item 6): imports a generated feed into PostgreSQL, MariaDB and
# SQLite with the release build of the real `import` command, imports it a second time (the
# re-import rate: every line UNCHANGED), and bulk-loads the same rows raw for comparison
# (PostgreSQL COPY, MariaDB LOAD DATA LOCAL INFILE, SQLite one transaction of prepared inserts).
# On PostgreSQL it also loads the catalog the import wrote (every table, with its indexes) with
# COPY into an empty database: the floor of the import's own writes.
#
#   benches/ingest.sh                      # 1,000,000 lines, every engine
#   LINES=100000 ENGINES="sqlite" benches/ingest.sh
#
# Environment: LINES (1000000), SEED (42), ENGINES ("postgres mariadb sqlite"), BATCH_SIZE
# (the import's default when unset), FEED_DIR (target/bench), PG_USER (postgres or root),
# CARGO_TARGET_DIR (target), NO_BUILD (set: use the release binary as built). The server engines are reached over their Unix sockets: sqlx does
# not set TCP_NODELAY, which costs a delayed ACK on many round trips over TCP.
set -euo pipefail
cd "$(dirname "$0")/.."

LINES=${LINES:-1000000}
SEED=${SEED:-42}
ENGINES=${ENGINES:-"postgres mariadb sqlite"}
TARGET=${CARGO_TARGET_DIR:-target}
FEED_DIR=${FEED_DIR:-$TARGET/bench}
PG_SOCKET=${PG_SOCKET:-/var/run/postgresql}
MYSQL_SOCKET=${MYSQL_SOCKET:-/run/mysqld/mysqld.sock}
DB=isg_bench
BIN=$TARGET/release/images-subgraph

log() { printf '\n== %s\n' "$*" >&2; }
now() { date +%s.%N; }
rate() { python3 -c "import sys; print(round($1 / ($3 - $2)))"; }

# shellcheck source=benches/lib.sh
. benches/lib.sh

COMMIT="$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- src Cargo.toml Cargo.lock || echo ' (+ local changes)')"
if [ -z "${NO_BUILD:-}" ]; then
  log "build (release)"
  cargo build --release --locked --bin images-subgraph -j "${JOBS:-2}" >&2
fi

mkdir -p "$FEED_DIR"
FEED=$FEED_DIR/feed-$LINES-$SEED.jsonl
RAW=$FEED_DIR/feed-$LINES-$SEED.csv
if [ ! -s "$FEED" ] || [ ! -s "$RAW" ]; then
  log "generating $FEED"
  python3 benches/gen_feed.py --lines "$LINES" --seed "$SEED" --out "$FEED" --csv "$RAW"
fi
FEED=$(realpath "$FEED"); RAW=$(realpath "$RAW")

PARTNERS_SQL="INSERT INTO partner (id, name, kind, url_rewrites, created_at, updated_at) VALUES
  (1, 'Partner 1', 'OTA', '[]', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP),
  (2, 'Partner 2', 'HOTEL_CHAIN', '[]', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP),
  (3, 'Partner 3', 'CONTENT_PROVIDER', '[]', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP),
  (4, 'Partner 4', 'OTA', '[]', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
RAW_COLUMNS="partner_id BIGINT, hotel_id BIGINT, url TEXT, partner_image_ref TEXT, legacy_id TEXT,
  width INTEGER, height INTEGER, tags TEXT, quality_score DOUBLE PRECISION"

batch_flag=()
if [ -n "${BATCH_SIZE:-}" ]; then batch_flag=(--batch-size "$BATCH_SIZE"); fi

# Runs the import of the feed; prints lines/s and keeps the command's output in $OUT_DIR.
run_import() { # engine url pass
  local engine=$1 url=$2 pass=$3 out
  out=$FEED_DIR/$engine-$pass.out
  local t0 t1
  t0=$(now)
  DATABASE_URL=$url SEED_DEMO=false RUST_LOG=warn "$BIN" import "${batch_flag[@]}" \
    --rejects "$FEED_DIR/$engine-$pass.rejects" "$FEED" >"$out" 2>&1
  t1=$(now)
  cat "$out" | grep -v '^\s*$' | sed 's/^/    /' >&2
  rate "$LINES" "$t0" "$t1"
}

# The floor of the import's own writes on PostgreSQL: every row of the catalog it wrote (all
# tables, their indexes), dumped and loaded back with COPY in one transaction into a freshly
# migrated database. Prints lines of the feed per second of that load.
pg_catalog_copy() { # url of the imported database
  local dump=$FEED_DIR/catalog-dump floor_db=${DB}_floor script t0 t1
  mkdir -p "$dump"
  script=$dump/load.sql
  : >"$script"
  for table in $CATALOG_TABLES; do
    psql -h "$PG_SOCKET" -U "$PGU" -d "$DB" -qc "\\copy $table TO '$dump/$table.copy'"
    echo "\\copy $table FROM '$dump/$table.copy'" >>"$script"
  done
  psql -h "$PG_SOCKET" -U "$PGU" -d postgres -qc "DROP DATABASE IF EXISTS $floor_db" -c "CREATE DATABASE $floor_db"
  DATABASE_URL="postgres:///$floor_db?host=$PG_SOCKET&user=$PGU" SEED_DEMO=false "$BIN" migrate >/dev/null 2>&1
  t0=$(now)
  psql -h "$PG_SOCKET" -U "$PGU" -d "$floor_db" -q -1 -f "$script"
  t1=$(now)
  psql -h "$PG_SOCKET" -U "$PGU" -d postgres -qc "DROP DATABASE $floor_db"
  rate "$LINES" "$t0" "$t1"
}
CATALOG_TABLES="partner image image_tag hotel hotel_image image_source delivery legacy_image_id outbox audit_log"

declare -A IMPORT REIMPORT RAWRATE FLOOR
PGU=$(pg_user)

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
for engine in $ENGINES; do
  log "$engine (load average $(cut -d' ' -f1-3 /proc/loadavg))"
  case $engine in
    postgres)
      psql -h "$PG_SOCKET" -U "$PGU" -d postgres -qc "DROP DATABASE IF EXISTS $DB" -c "CREATE DATABASE $DB"
      url="postgres:///$DB?host=$PG_SOCKET&user=$PGU"
      DATABASE_URL=$url SEED_DEMO=false "$BIN" migrate >/dev/null 2>&1
      psql -h "$PG_SOCKET" -U "$PGU" -d "$DB" -qc "$PARTNERS_SQL"
      ;;
    mariadb)
      mysql -uroot -S "$MYSQL_SOCKET" -e "DROP DATABASE IF EXISTS $DB; CREATE DATABASE $DB"
      url="mysql://root@localhost/$DB?socket=$MYSQL_SOCKET"
      DATABASE_URL=$url SEED_DEMO=false "$BIN" migrate >/dev/null 2>&1
      mysql -uroot -S "$MYSQL_SOCKET" "$DB" -e "$PARTNERS_SQL"
      ;;
    sqlite)
      rm -f "$FEED_DIR"/bench.db*
      url="sqlite://$(realpath "$FEED_DIR")/bench.db?mode=rwc"
      DATABASE_URL=$url SEED_DEMO=false "$BIN" migrate >/dev/null 2>&1
      python3 - "$FEED_DIR/bench.db" "$PARTNERS_SQL" <<'PY'
import sqlite3, sys
db = sqlite3.connect(sys.argv[1]); db.execute(sys.argv[2]); db.commit()
PY
      ;;
  esac
  log "$engine: import"
  IMPORT[$engine]=$(run_import "$engine" "$url" first)
  log "$engine: second import (re-import)"
  REIMPORT[$engine]=$(run_import "$engine" "$url" second)

  log "$engine: raw bulk load of the same rows"
  case $engine in
    postgres)
      psql -h "$PG_SOCKET" -U "$PGU" -d "$DB" -qc "CREATE TABLE raw_feed ($RAW_COLUMNS)"
      t0=$(now)
      psql -h "$PG_SOCKET" -U "$PGU" -d "$DB" -qc "\\copy raw_feed FROM '$RAW' WITH (FORMAT csv)"
      t1=$(now)
      ;;
    mariadb)
      mysql -uroot -S "$MYSQL_SOCKET" "$DB" -e "CREATE TABLE raw_feed ($RAW_COLUMNS) ENGINE=InnoDB"
      t0=$(now)
      mysql --local-infile=1 -uroot -S "$MYSQL_SOCKET" "$DB" -e \
        "LOAD DATA LOCAL INFILE '$RAW' INTO TABLE raw_feed FIELDS TERMINATED BY ',' OPTIONALLY ENCLOSED BY '\"' LINES TERMINATED BY '\n'"
      t1=$(now)
      ;;
    sqlite)
      t0=$(now)
      python3 - "$FEED_DIR/bench.db" "$RAW" "$RAW_COLUMNS" <<'PY'
import csv, sqlite3, sys
db = sqlite3.connect(sys.argv[1])
db.execute("PRAGMA journal_mode=WAL"); db.execute("PRAGMA synchronous=NORMAL")
db.execute(f"CREATE TABLE raw_feed ({sys.argv[3]})")
with open(sys.argv[2], newline="") as f, db:
    db.executemany("INSERT INTO raw_feed VALUES (?,?,?,?,?,?,?,?,?)", csv.reader(f))
PY
      t1=$(now)
      ;;
  esac
  RAWRATE[$engine]=$(rate "$LINES" "$t0" "$t1")
  FLOOR[$engine]="-"
  if [ "$engine" = postgres ]; then
    log "postgres: the catalog the import wrote, loaded with COPY into an empty, indexed schema"
    FLOOR[$engine]=$(pg_catalog_copy "$url")
  fi
done

echo
echo "commit $COMMIT, $(nproc) CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), load average before $LOAD_BEFORE, after $(cut -d' ' -f1-3 /proc/loadavg)"
echo "$LINES lines, seed $SEED, batch size ${BATCH_SIZE:-default}"
echo
echo "| engine | import lines/s | re-import lines/s | raw bulk lines/s | import / raw | catalog COPY lines/s |"
echo "|---|---:|---:|---:|---:|---:|"
for engine in $ENGINES; do
  ratio=$(python3 -c "print(f'{${IMPORT[$engine]} / ${RAWRATE[$engine]}:.3f}')")
  echo "| $engine | ${IMPORT[$engine]} | ${REIMPORT[$engine]} | ${RAWRATE[$engine]} | $ratio | ${FLOOR[$engine]} |"
done
