#!/usr/bin/env python3
"""Helpers of bench/surgery.sh (row-group surgery against DuckDB on an unsorted lake).

  surgery_lake.py generate OUT_DIR [--files 150] [--rows-per-file 120000] [--row-groups 2]
                  [--users 1000000] [--seed 7]
      Writes an unsorted Hive-partitioned lake with pyarrow (zstd, dictionary encoding,
      row groups of rows-per-file / row-groups rows), and OUT_DIR/../subjects.txt: 100 user ids
      that occur in the lake, in a fixed order.
  surgery_lake.py holding LAKE SUBJECTS_FILE N
      JSON: files and row groups holding any of the first N subjects, and the compressed bytes
      of those row groups (what an ideal row-group surgery must decode and encode again).
  surgery_lake.py duckdb LAKE SUBJECTS_FILE N
      Erases the first N subjects with DuckDB, one `COPY (SELECT * … WHERE user_id NOT IN …) TO`
      per affected file (zstd), replacing each file; prints JSON with the seconds spent in the
      COPYs alone (finding the affected files is not timed).
"""
import datetime
import json
import os
import random
import sys
import time

import pyarrow as pa
import pyarrow.parquet as pq


def data_files(lake):
    out = []
    for dirpath, _, names in os.walk(lake):
        for n in names:
            if n.endswith(".parquet") and not n.startswith((".", "_")):
                out.append(os.path.join(dirpath, n))
    return sorted(out)


def generate(out, files=150, rows_per_file=120_000, row_groups=2, users=1_000_000, seed=7):
    rng = random.Random(seed)
    regions = ["EU", "US", "APAC"]
    kinds = ["run", "walk", "ride", "swim", "hike", "row", "ski", "yoga"]
    countries = ["DE", "FR", "US", "CA", "JP", "SG", "NL", "BR", "IN", "AU"]
    seen = []
    event_id = 0
    for f in range(files):
        day = f // len(regions)
        region = regions[f % len(regions)]
        date = datetime.date(2025, 1, 1) + datetime.timedelta(days=day)
        folder = os.path.join(out, f"date={date.isoformat()}", f"region={region}")
        os.makedirs(folder, exist_ok=True)
        ids = [rng.randrange(users) for _ in range(rows_per_file)]
        if f < 100:
            seen.append(ids[0])
        base = 1_735_689_600_000_000 + day * 86_400_000_000
        table = pa.table(
            {
                "user_id": pa.array([f"u-{i:07d}" for i in ids], pa.string()),
                "event_id": pa.array(range(event_id, event_id + rows_per_file), pa.int64()),
                "ts": pa.array([base + rng.randrange(86_400_000_000) for _ in ids], pa.timestamp("us", tz="UTC")),
                "kind": pa.array([kinds[i % len(kinds)] for i in ids], pa.string()),
                "distance_km": pa.array([round(rng.random() * 40, 3) for _ in ids], pa.float64()),
                "duration_s": pa.array([rng.randrange(60, 14_400) for _ in ids], pa.int32()),
                "country": pa.array([countries[i % len(countries)] for i in ids], pa.string()),
                "device": pa.array([f"dev-{i % 50_000:05d}" for i in ids], pa.string()),
            }
        )
        event_id += rows_per_file
        pq.write_table(
            table,
            os.path.join(folder, "part-00000.parquet"),
            compression="zstd",
            row_group_size=rows_per_file // row_groups,
        )
    subjects = os.path.join(os.path.dirname(os.path.abspath(out)), "subjects.txt")
    with open(subjects, "w") as fh:
        for i in seen:
            fh.write(f"u-{i:07d}\n")
    print(json.dumps({"files": files, "rows": files * rows_per_file, "bytes": sum(os.path.getsize(p) for p in data_files(out))}))


def first_subjects(path, n):
    with open(path) as fh:
        return [line.strip() for line in fh if line.strip()][:n]


def holding(lake, subjects_file, n):
    subjects = set(first_subjects(subjects_file, n))
    files = groups = 0
    compressed = 0
    total = 0
    for path in data_files(lake):
        pf = pq.ParquetFile(path)
        hit = False
        for g in range(pf.num_row_groups):
            rg = pf.metadata.row_group(g)
            size = sum(rg.column(c).total_compressed_size for c in range(rg.num_columns))
            total += size
            users = pf.read_row_group(g, columns=["user_id"]).column(0).to_pylist()
            if any(u in subjects for u in users):
                groups += 1
                compressed += size
                hit = True
        files += hit
    print(json.dumps({"files": files, "row_groups": groups, "compressed_bytes": compressed, "lake_compressed_bytes": total}))


def duckdb_erase(lake, subjects_file, n):
    import duckdb

    subjects = first_subjects(subjects_file, n)
    con = duckdb.connect()
    quoted = ", ".join("'" + s.replace("'", "''") + "'" for s in subjects)
    affected = [
        p
        for p in data_files(lake)
        if con.execute(f"SELECT count(*) FROM read_parquet('{p}') WHERE user_id IN ({quoted})").fetchone()[0] > 0
    ]
    started = time.monotonic()
    for p in affected:
        tmp = p + ".duckdb-tmp"
        con.execute(
            f"COPY (SELECT * FROM read_parquet('{p}') WHERE user_id NOT IN ({quoted})) "
            f"TO '{tmp}' (FORMAT parquet, COMPRESSION zstd)"
        )
        os.replace(tmp, p)
    elapsed = time.monotonic() - started
    print(json.dumps({"files_rewritten": len(affected), "elapsed_s": elapsed, "duckdb": duckdb.__version__}))


def main(argv):
    cmd = argv[1]
    if cmd == "generate":
        out = argv[2]
        opts = {"--files": 150, "--rows-per-file": 120_000, "--row-groups": 2, "--users": 1_000_000, "--seed": 7}
        rest = argv[3:]
        for k, v in zip(rest[::2], rest[1::2]):
            opts[k] = int(v)
        generate(out, opts["--files"], opts["--rows-per-file"], opts["--row-groups"], opts["--users"], opts["--seed"])
    elif cmd == "holding":
        holding(argv[2], argv[3], int(argv[4]))
    elif cmd == "duckdb":
        duckdb_erase(argv[2], argv[3], int(argv[4]))
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
