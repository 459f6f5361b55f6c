#!/usr/bin/env python3
"""Run the analyst queries of `benches/analyst_queries.rs` with DuckDB, over the same files.

Reads a JSON spec written by the benchmark:

    {"tables": {"order_placed": ["/…/date=2026-01-05/part-….parquet", …], …},
     "queries": [{"name": "…", "sql": "…"}, …], "warmup": 1, "runs": 3, "threads": 2}

Every table becomes a view over its active Parquet files (the ones the Delta log lists now, so
files replaced by a compaction are not read), with the Hive `date=` partition column. Each query
runs `warmup` times untimed, then `runs` times timed. Prints, as JSON on stdout, the DuckDB version
and for each query its timings in seconds and its rows (dates as ISO strings).

    python3 -m venv .venv && .venv/bin/pip install duckdb
    .venv/bin/python scripts/analyst_duckdb.py spec.json
"""

import datetime
import decimal
import json
import sys
import time

import duckdb


def plain(value):
    if isinstance(value, (datetime.date, datetime.datetime)):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return float(value)
    return value


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    with open(sys.argv[1], encoding="utf-8") as f:
        spec = json.load(f)
    con = duckdb.connect()
    con.execute(f"SET threads TO {int(spec.get('threads', 2))}")
    con.execute("SET TimeZone = 'UTC'")
    for table, files in spec["tables"].items():
        listed = ", ".join("'" + p.replace("'", "''") + "'" for p in files)
        con.execute(
            f'CREATE VIEW "{table}" AS SELECT * FROM read_parquet([{listed}], hive_partitioning = true)'
        )
    results = []
    for query in spec["queries"]:
        for _ in range(int(spec.get("warmup", 1))):
            con.execute(query["sql"]).fetchall()
        seconds = []
        rows = []
        for _ in range(int(spec.get("runs", 3))):
            began = time.perf_counter()
            rows = con.execute(query["sql"]).fetchall()
            seconds.append(time.perf_counter() - began)
        results.append(
            {
                "name": query["name"],
                "seconds": seconds,
                "rows": [[plain(v) for v in row] for row in rows],
            }
        )
    json.dump({"duckdb": duckdb.__version__, "queries": results}, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
