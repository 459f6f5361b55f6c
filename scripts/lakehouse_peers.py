#!/usr/bin/env python3
"""Read Emporium's lakehouse with other tools and check they agree with `emporium sql`.

Every table under the lakehouse directory is read with the `deltalake` package (into pyarrow),
with DuckDB (over the table's active Parquet files, so files replaced by a compaction are not
counted twice), and with polars (`scan_delta`); the row counts per table must equal those of
`emporium sql`. Exit status 1 on any difference.

    python3 -m venv .peers && .peers/bin/pip install duckdb deltalake polars pyarrow
    .peers/bin/python scripts/lakehouse_peers.py emporium-data/lakehouse --emporium target/release/emporium
"""

import argparse
import json
import pathlib
import subprocess
import sys

import duckdb
import polars as pl
from deltalake import DeltaTable


def emporium_counts(emporium: str, root: pathlib.Path, tables: list[str]) -> dict[str, int]:
    sql = " UNION ALL ".join(f"SELECT '{t}' AS t, count(*) AS n FROM {t}" for t in tables)
    out = subprocess.run(
        [emporium, "sql", "--lakehouse-dir", str(root), "--format", "json", sql],
        check=True,
        capture_output=True,
    )
    return {row["t"]: row["n"] for row in json.loads(out.stdout)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("lakehouse", type=pathlib.Path, help="the lakehouse directory")
    parser.add_argument("--emporium", default="emporium", help="the emporium binary")
    args = parser.parse_args()
    root = args.lakehouse
    tables = sorted(p.name for p in root.iterdir() if (p / "_delta_log").is_dir())
    if not tables:
        print(f"no Delta tables under {root}", file=sys.stderr)
        return 1
    ours = emporium_counts(args.emporium, root, tables)
    con = duckdb.connect()
    failed = False
    print(f"{'table':<24}{'emporium':>12}{'pyarrow':>12}{'duckdb':>12}{'polars':>12}")
    for table in tables:
        path = root / table
        delta = DeltaTable(str(path))
        by_pyarrow = delta.to_pyarrow_dataset().count_rows()
        files = delta.file_uris()
        if files:
            listed = ", ".join(f"'{f}'" for f in files)
            by_duckdb = con.execute(
                f"SELECT count(*) FROM read_parquet([{listed}], hive_partitioning = true)"
            ).fetchone()[0]
        else:
            by_duckdb = 0
        by_polars = pl.scan_delta(str(path)).select(pl.len()).collect().item()
        counts = [ours.get(table, 0), by_pyarrow, by_duckdb, by_polars]
        mark = "" if len(set(counts)) == 1 else "   <- differs"
        failed |= bool(mark)
        print(f"{table:<24}" + "".join(f"{c:>12}" for c in counts) + mark)
    print("all tools agree" if not failed else "the tools DISAGREE")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
