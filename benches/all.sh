#!/usr/bin/env bash
# Every table of BENCHMARKS.md, in one command, on this machine:
#   1. Ingestion (issue #5): `benches/ingest.sh`, a 1,000,000-line feed into PostgreSQL,
#      MariaDB and SQLite against each engine's raw bulk load.
#   2. Serving (issue #8): `benches/load.sh`, S1/S2/MIX against B0 and B2, on the
#      1,000,000-hotel PostgreSQL catalog, the 10,000-hotel one and a 200,000-hotel SQLite one.
#   3. The CPU guard: `cargo bench --bench schema` (criterion, `Schema::execute` of S1).
#
# Each step builds what it needs (release) and generates or seeds its data when missing, so a
# fresh machine takes longer the first time (the 1,000,000-hotel seed about 20 minutes).
# The steps' own variables pass through (e.g. REPS, DURATION, LINES, HOTELS); ONLY="ingest",
# "load" or "criterion" runs one step. Output: the tables on stdout, the raw results under
# `benches/results/` and the ingestion figures in the log.
set -euo pipefail
cd "$(dirname "$0")/.."

ONLY=${ONLY:-"ingest load criterion"}
runs() { [[ " $ONLY " == *" $1 "* ]]; }

if runs ingest; then
  benches/ingest.sh
fi
if runs load; then
  benches/load.sh
fi
if runs criterion; then
  cargo bench --locked --bench schema
fi
