"""How fast PostgreSQL takes an import's rows, four ways (issue 17 part B): the rows of the
`image`, `delivery` and `image_source` tables of a catalog `benches/ingest.sh` imported
(database `isg_bench`), written again into an empty copy of the schema (`isg_exp`), 10,000 rows
per transaction, each way twice; only the writing is timed (the rows are read and encoded
before).

- `json`: today's statement, `INSERT ... SELECT ... FROM json_to_recordset($1) ... ON CONFLICT
  ... DO NOTHING`, one statement per 1,000 rows (`src/store/bulk.rs`);
- `plain`: the same without `ON CONFLICT`;
- `staging`: `COPY` into a temporary table, then `INSERT ... SELECT ... ON CONFLICT DO NOTHING`
  from it (what the issue proposed);
- `copy`: `COPY` straight into the table (no conflict handling: the floor).

    NO_BUILD=1 ENGINES=postgres benches/ingest.sh      # leaves the catalog in isg_bench
    pip install 'psycopg[binary]'
    psql -c 'DROP DATABASE IF EXISTS isg_exp' -c 'CREATE DATABASE isg_exp'
    pg_dump -s isg_bench | psql -q isg_exp
    python3 benches/write_paths.py 200000
"""
import json, sys, time
import psycopg

SRC = "dbname=isg_bench host=/var/run/postgresql user=postgres"
DST = "dbname=isg_exp host=/var/run/postgresql user=postgres"
N = int(sys.argv[1]) if len(sys.argv) > 1 else 200_000
TABLES = {  # table: (conflict key, columns to leave out)
    "image": ("url_key", {"id"}),
    "delivery": ("hotel_id, image_id, partner_id", set()),
    "image_source": ("image_id, partner_id", {"id"}),
}

def columns(conn, table, skip):
    rows = conn.execute(
        "SELECT column_name, data_type FROM information_schema.columns "
        "WHERE table_name = %s AND table_schema = 'public' ORDER BY ordinal_position", (table,)).fetchall()
    return [(c, t) for c, t in rows if c not in skip]

def reset(dst):
    for t in TABLES:
        dst.execute(f"TRUNCATE {t} CASCADE")
    dst.commit()

with psycopg.connect(SRC) as src, psycopg.connect(DST, autocommit=False) as dst:
    for table, (key, skip) in TABLES.items():
        cols = columns(src, table, skip)
        names = ", ".join(f'"{c}"' for c, _ in cols)
        data = src.execute(f"SELECT {names} FROM {table} ORDER BY 1 LIMIT {N}").fetchall()
        as_json = [json.dumps([{c: (v.isoformat() if hasattr(v, 'isoformat') else v) for (c, _), v in zip(cols, row) if v is not None} for row in data[i:i + 1000]]) for i in range(0, len(data), 1000)]
        types = ", ".join(f'"{c}" {t}' for c, t in cols)
        sql_json = f"INSERT INTO {table} ({names}) SELECT {names} FROM json_to_recordset(%s::json) AS r({types}) ON CONFLICT ({key}) DO NOTHING"
        results = {}
        sql_plain = sql_json.split(" ON CONFLICT")[0]
        for method in ("json", "plain", "staging", "copy") * 2:
            reset(dst)
            t0 = time.perf_counter()
            if method in ("json", "plain"):
                sql = sql_json if method == "json" else sql_plain
                for i, chunk in enumerate(as_json):
                    dst.execute(sql, (chunk,), prepare=True)
                    if i % 10 == 9:
                        dst.commit()
                dst.commit()
            elif method == "staging":
                for i in range(0, len(data), 10_000):
                    dst.execute(f"CREATE TEMP TABLE s ON COMMIT DROP AS SELECT {names} FROM {table} WITH NO DATA")
                    with dst.cursor().copy(f"COPY s ({names}) FROM STDIN") as copy:
                        for row in data[i:i + 10_000]:
                            copy.write_row(row)
                    dst.execute(f"INSERT INTO {table} ({names}) SELECT {names} FROM s ON CONFLICT ({key}) DO NOTHING")
                    dst.commit()
            else:
                for i in range(0, len(data), 10_000):
                    with dst.cursor().copy(f"COPY {table} ({names}) FROM STDIN") as copy:
                        for row in data[i:i + 10_000]:
                            copy.write_row(row)
                    dst.commit()
            results.setdefault(method, []).append(time.perf_counter() - t0)
        print(table, len(data), "rows:", {m: " / ".join(f"{len(data) / t:,.0f} rows/s" for t in ts) for m, ts in results.items()}, flush=True)
