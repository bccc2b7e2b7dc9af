#!/usr/bin/env python3
"""Results of `benches/load.sh`.

    summarize.py record SAT.json FIXED.json key=value...   one run → one JSON line (stdout)
    summarize.py brief < line                               one run → one short line
    summarize.py report runs.jsonl [machine.txt]            every run → the markdown tables

A run is one target × scenario × repetition: saturation (oha JSON of `-z`), then the fixed rate
of half of it (oha JSON of `-q`), plus the server's CPU ticks, SQL statements and peak RSS over
the saturation run. The report gives medians over repetitions with their spread (min–max).
"""
import json
import statistics
import sys

LABELS = {
    "b0": "B0 plain axum, fixed bytes",
    "b2": "B2 Apollo Server 5 (PostgreSQL)",
    "b2-small": "B2 Apollo Server 5 (PostgreSQL small catalog)",
    "pg-db": "subgraph, PostgreSQL, database only",
    "pg-redis": "subgraph, PostgreSQL, Redis warm (L1 off)",
    "pg-l1": "subgraph, PostgreSQL, L1 warm",
    "pg-l1-exec": "subgraph, PostgreSQL, L1 warm, no compiled plans",
    "sqlite-db": "subgraph, SQLite, database only",
    "sqlite-redis": "subgraph, SQLite, Redis warm (L1 off)",
    "sqlite-l1": "subgraph, SQLite, L1 warm",
    "pg-small-db": "subgraph, PostgreSQL small catalog, database only",
    "pg-small-l1": "subgraph, PostgreSQL small catalog, L1 warm",
    "pg-small-l1-exec": "subgraph, PostgreSQL small catalog, L1 warm, no compiled plans",
}
ORDER = list(LABELS)
SCENARIOS = {
    "S1": "S1 search page: `SearchResultsMainImages`, 50 hotels",
    "S2": "S2 hotel page: `HotelGallery`, 30 images",
    "MIX": "MIX: 90% S1, 10% S2",
}


def completed(oha):
    return sum(oha.get("statusCodeDistribution", {}).values())


def record(sat_path, fixed_path, pairs):
    sat = json.load(open(sat_path))
    fixed = json.load(open(fixed_path))
    meta = dict(pair.split("=", 1) for pair in pairs)
    requests = completed(sat)
    ticks = int(meta.pop("cpu_ticks"))
    clk = int(meta.pop("clk_tck"))
    statements = int(meta.pop("statements"))
    codes = {}
    for run in (sat, fixed):
        for code, n in run.get("statusCodeDistribution", {}).items():
            codes[code] = codes.get(code, 0) + n
    # Requests still in flight when `-z` ends are cut off ("aborted due to deadline"): not errors.
    errors = sum(
        n
        for run in (sat, fixed)
        for kind, n in run.get("errorDistribution", {}).items()
        if "deadline" not in kind
    )
    out = {
        **meta,
        "rps": sat["summary"]["requestsPerSec"],
        "sat_p50_ms": sat["latencyPercentiles"]["p50"] * 1e3,
        "sat_p99_ms": sat["latencyPercentiles"]["p99"] * 1e3,
        "fixed_rps": fixed["summary"]["requestsPerSec"],
        "p50_ms": fixed["latencyPercentiles"]["p50"] * 1e3,
        "p99_ms": fixed["latencyPercentiles"]["p99"] * 1e3,
        "requests": requests,
        "sql_per_request": statements / max(requests, 1),
        "cpu_us_per_request": ticks / clk / max(requests, 1) * 1e6,
        "rss_mb": int(meta.get("rss_kb", 0)) / 1024,
        "bytes_per_response": sat["summary"].get("sizePerRequest"),
        "status": codes,
        "errors": errors,
    }
    print(json.dumps(out))


def brief(line):
    r = json.loads(line)
    print(
        f"{r['rps']:.0f} req/s, p50 {r['p50_ms']:.2f} ms, p99 {r['p99_ms']:.2f} ms, "
        f"{r['sql_per_request']:.2f} SQL/req, {r['cpu_us_per_request']:.0f} µs CPU/req, "
        f"status {r['status']}, errors {r['errors']}"
    )


def spread(values, fmt):
    values = sorted(values)
    med = statistics.median(values)
    if len(values) == 1:
        return fmt(med)
    return f"{fmt(med)} ({fmt(values[0])}–{fmt(values[-1])})"


def report(runs_path, machine_path=None):
    runs = [json.loads(line) for line in open(runs_path) if line.strip()]
    if machine_path:
        machine = dict(
            line.rstrip("\n").split("=", 1) for line in open(machine_path) if "=" in line
        )
        print(f"Commit `{machine.get('commit')}`; {machine.get('nproc')} CPUs ({machine.get('cpu')}); "
              f"{machine.get('oha')}; Node {machine.get('node')}; load average at start "
              f"{machine.get('start_load')}, at end {machine.get('end_load', '?')}.\n")
        print(f"Command: `{machine.get('command')}`\n")
    groups = {}
    for r in runs:
        groups.setdefault((r["scenario"], r["target"]), []).append(r)

    def median(scenario, target, key):
        rs = groups.get((scenario, target))
        return statistics.median(r[key] for r in rs) if rs else None

    for scenario, title in SCENARIOS.items():
        targets = [t for t in ORDER if (scenario, t) in groups]
        if not targets:
            continue
        b0 = median(scenario, "b0", "rps")
        # Each subgraph row against B2 on the same catalog (the small one for `pg-small-*`).
        b2 = {"large": median(scenario, "b2", "rps"), "small": median(scenario, "b2-small", "rps")}
        reps = max(len(groups[(scenario, t)]) for t in targets)
        print(f"### {title}\n")
        print(f"Medians of {reps} repetition(s), (min–max). Throughput at saturation (32 connections); "
              "latency at a fixed rate of half the saturation throughput.\n")
        print("| target | req/s | p50 ms | p99 ms | SQL/req | CPU µs/req | peak RSS MB | vs B0 | vs B2 | load avg |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for t in targets:
            rs = groups[(scenario, t)]
            rps = statistics.median(r["rps"] for r in rs)
            vs_b0 = f"{rps / b0:.1%}" if b0 and t != "b0" else "—"
            peer = b2["small" if t.startswith("pg-small") else "large"]
            vs_b2 = f"{rps / peer:.1f}×" if peer and not t.startswith("b") else "—"
            bad = sum(r["errors"] for r in rs) + sum(
                n for r in rs for code, n in r["status"].items() if code != "200"
            )
            label = LABELS.get(t, t) + (f" ⚠ {bad} failed" if bad else "")
            print(
                f"| {label} | {spread([r['rps'] for r in rs], lambda v: f'{v:,.0f}')} "
                f"| {spread([r['p50_ms'] for r in rs], lambda v: f'{v:.2f}')} "
                f"| {spread([r['p99_ms'] for r in rs], lambda v: f'{v:.2f}')} "
                f"| {spread([r['sql_per_request'] for r in rs], lambda v: f'{v:.2f}')} "
                f"| {spread([r['cpu_us_per_request'] for r in rs], lambda v: f'{v:,.0f}')} "
                f"| {spread([r['rss_mb'] for r in rs], lambda v: f'{v:.0f}')} "
                f"| {vs_b0} | {vs_b2} | {spread([float(r['load']) for r in rs], lambda v: f'{v:.2f}')} |"
            )
        print()

    flat = [
        (state, size_small, size_large)
        for state in ("db", "l1")
        for size_small, size_large in [(f"pg-small-{state}", f"pg-{state}")]
        if any((s, size_small) in groups for s in SCENARIOS) and any((s, size_large) in groups for s in SCENARIOS)
    ]
    if flat:
        print("### Flat latency: small vs large PostgreSQL catalog\n")
        print("| scenario | cache state | hotels | req/s | p50 ms | p99 ms |")
        print("|---|---|---:|---:|---:|---:|")
        for scenario in SCENARIOS:
            for state, small, large in flat:
                for t in (small, large):
                    rs = groups.get((scenario, t))
                    if not rs:
                        continue
                    print(
                        f"| {scenario} | {state} | {int(rs[0]['hotels']):,} "
                        f"| {spread([r['rps'] for r in rs], lambda v: f'{v:,.0f}')} "
                        f"| {spread([r['p50_ms'] for r in rs], lambda v: f'{v:.2f}')} "
                        f"| {spread([r['p99_ms'] for r in rs], lambda v: f'{v:.2f}')} |"
                    )
        print()


def main():
    command = sys.argv[1]
    if command == "record":
        record(sys.argv[2], sys.argv[3], sys.argv[4:])
    elif command == "brief":
        brief(sys.stdin.readline())
    elif command == "report":
        report(sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else None)
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
