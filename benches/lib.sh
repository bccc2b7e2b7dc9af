# Shared by the benchmark scripts (sourced, not run).

# The PostgreSQL role that works over the Unix socket $PG_SOCKET: $PG_USER when set, else
# `postgres` or `root` (trust auth).
pg_user() {
  if [ -n "${PG_USER:-}" ]; then echo "$PG_USER"; return; fi
  for user in postgres root; do
    if psql -h "$PG_SOCKET" -U "$user" -d postgres -Atc 'select 1' >/dev/null 2>&1; then echo "$user"; return; fi
  done
  echo "no PostgreSQL role (postgres or root)" >&2; return 1
}
