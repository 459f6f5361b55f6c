#!/usr/bin/env python3
"""Run the analyst queries of `benches/analyst_queries.rs` with DuckDB, over the same files.

Reads a JSON spec written by the benchmark:

    {"tables": {"order_placed": ["/…/date=2026-01-05/part-….parquet", …], …},
     "queries": [{"name": "…", "sql": "…"}, …], "threads": 2}

Every table becomes a view over its active Parquet files (the ones the Delta log lists now, so
files replaced by a compaction are not read), with the Hive `date=` partition column. Then it
serves the benchmark, which alternates its own runs with DuckDB's so that both engines see the
same moments of a shared, noisy machine: it prints one JSON line with the DuckDB version, then
for each line `K` it reads on stdin runs query K once and prints one JSON line with the time in
seconds and the rows (dates as ISO strings). A line that is a JSON object `{"sql": "..."}` runs
that query instead, and a query that fails gives `{"error": "..."}` (the SQL corpus,
`tests/sql_corpus.rs`, sends its queries so). It stops at the end of its input.

    python3 -m venv .venv && .venv/bin/pip install duckdb
    echo 0 | .venv/bin/python scripts/analyst_duckdb.py spec.json
"""

import datetime
import decimal
import json
import sys
import time
import uuid

import duckdb


def plain(value):
    if isinstance(value, datetime.datetime) and value.tzinfo is not None:
        return value.astimezone(datetime.timezone.utc).replace(tzinfo=None).isoformat()
    if isinstance(value, (datetime.date, datetime.datetime, datetime.time)):
        return value.isoformat()
    if isinstance(value, datetime.timedelta):
        return str(value)
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
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
    # Footers kept across queries, as `emporium sql` keeps them (off by default in DuckDB; the
    # comparison is fair only with both on).
    con.execute("SET parquet_metadata_cache = true")
    for table, files in spec["tables"].items():
        listed = ", ".join("'" + p.replace("'", "''") + "'" for p in files)
        con.execute(
            f'CREATE VIEW "{table}" AS SELECT * FROM read_parquet([{listed}], hive_partitioning = true)'
        )
    print(json.dumps({"duckdb": duckdb.__version__}), flush=True)
    for line in sys.stdin:
        if line.lstrip().startswith("{"):
            sql = json.loads(line)["sql"]
        else:
            sql = spec["queries"][int(line)]["sql"]
        began = time.perf_counter()
        try:
            cursor = con.execute(sql)
            columns = [d[0] for d in cursor.description or []]
            rows = cursor.fetchall()
        except duckdb.Error as e:
            print(json.dumps({"error": str(e)}), flush=True)
            continue
        seconds = time.perf_counter() - began
        answer = {
            "seconds": seconds,
            "columns": columns,
            "rows": [[plain(v) for v in row] for row in rows],
        }
        print(json.dumps(answer), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
