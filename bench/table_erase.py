#!/usr/bin/env python3
"""Erasing subjects from Delta Lake and Apache Iceberg tables: Lethe against the formats' own
Python tooling, in the same run, on the same machine (issue 12's target: Lethe at most 0.5x).

For each format and round, two identical tables are written (not timed): ROWS rows of USERS
users in 3 commits, partitioned by `date` (10 days) and `region` (3), by pyiceberg's
SqlCatalog (SQLite) and by deltalake. Then SUBJECTS users are erased from one copy by each
side, timed from process start to exit:

  iceberg, python: pyiceberg `delete(In(user_id, ...))` + `maintenance.expire_snapshots()
                   .older_than(now)` + removing the files no remaining snapshot references
                   (pyiceberg 0.12 has no remove-orphan-files: the referenced set is read from
                   `inspect.all_files()` / `all_manifests()` and the rest listed and deleted)
  iceberg, lethe:  lethe-worker erase --format iceberg --catalog-uri sqlite:///...
  delta, python:   deltalake `delete(user_id IN (...))` + `vacuum(retention_hours=0)`
  delta, lethe:    lethe-worker erase --format delta --root ...

Both sides end with no subject row readable in any snapshot and none in any file. Prints one
JSON line per measurement and a summary line per format (medians).

    bench/table_erase.py --worker target/release/lethe-worker --rounds 3
    bench/table_erase.py --worker ... --clustered --rows 1200000 --days 40 --users 40000
        (scaling: each day has its own slice of user ids, the subjects are day 0's: the files
        holding them stay the same as the table grows)
"""

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HELPER = r'''
import json, os, sys, time
from datetime import datetime, timedelta, timezone
import pyarrow as pa

def batch(commit, n, users, seed, days, clustered):
    import random
    rnd = random.Random(seed)
    base = datetime(2025, 1, 1, tzinfo=timezone.utc)
    rows = {"event_id": [], "user_id": [], "ts": [], "calories": [], "email": [], "date": [], "region": []}
    for i in range(n):
        day = i % days
        # Clustered: the users of day d are the d-th slice of the ids (a table sorted or
        # Z-ordered by user): their rows are in that day's partitions only, and the files'
        # user_id bounds tell them apart.
        per = len(users) // days
        pool = users[day * per:(day + 1) * per] if clustered else users
        u = pool[rnd.randrange(len(pool))]
        rows["event_id"].append(f"e-{commit}-{i:07d}")
        rows["user_id"].append(u)
        rows["ts"].append(base + timedelta(days=day, seconds=i))
        rows["calories"].append(100 + (i * 13) % 400)
        rows["email"].append(f"{u}@example.com")
        rows["date"].append((base + timedelta(days=day)).date().isoformat())
        rows["region"].append(["EU", "US", "APAC"][(i // 10) % 3])
    return pa.table(rows, schema=pa.schema([
        ("event_id", pa.string()), ("user_id", pa.string()), ("ts", pa.timestamp("us", tz="UTC")),
        ("calories", pa.int32()), ("email", pa.string()), ("date", pa.string()), ("region", pa.string())]))

def catalog(d):
    from pyiceberg.catalog.sql import SqlCatalog
    return SqlCatalog("lethe", uri=f"sqlite:///{d}/catalog.db", warehouse=f"file://{d}/warehouse")

cmd, d = sys.argv[1], sys.argv[2]
if cmd == "make-iceberg":
    rows, users, days, clustered = int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), sys.argv[6] == "1"
    from pyiceberg.partitioning import PartitionSpec, PartitionField
    from pyiceberg.transforms import IdentityTransform
    ids = [f"u-{k:05d}" for k in range(users)]
    data = [batch(c, rows // 3, ids, c, days, clustered) for c in range(3)]
    cat = catalog(d)
    cat.create_namespace("default")
    t = cat.create_table("default.events", schema=data[0].schema)
    s = t.schema()
    with t.update_spec() as u:
        u.add_identity("date")
        u.add_identity("region")
    for b in data:
        t = cat.load_table("default.events")
        t.append(b)
elif cmd == "make-delta":
    rows, users, days, clustered = int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), sys.argv[6] == "1"
    from deltalake import write_deltalake
    ids = [f"u-{k:05d}" for k in range(users)]
    for c in range(3):
        write_deltalake(f"{d}/events", batch(c, rows // 3, ids, c, days, clustered), partition_by=["date", "region"],
                        mode="append")
elif cmd == "erase-iceberg":
    subjects = open(sys.argv[3]).read().split()
    from pyiceberg.expressions import In
    t = catalog(d).load_table("default.events")
    t.delete(In("user_id", subjects))
    t = catalog(d).load_table("default.events")
    t.maintenance.expire_snapshots().older_than(datetime.now(timezone.utc) + timedelta(seconds=1)).commit()
    t = catalog(d).load_table("default.events")
    keep = set(t.inspect.all_files().column("file_path").to_pylist())
    keep |= set(t.inspect.all_manifests().column("path").to_pylist())
    keep |= {s.manifest_list for s in t.snapshots()}
    keep = {k.removeprefix("file://") for k in keep}
    root = f"{d}/warehouse"
    for dirpath, _, names in os.walk(root):
        for n in names:
            p = os.path.join(dirpath, n)
            if "/metadata/" in p and (n.endswith(".metadata.json")):
                continue
            if p not in keep:
                os.remove(p)
elif cmd == "erase-delta":
    subjects = open(sys.argv[3]).read().split()
    from deltalake import DeltaTable
    dt = DeltaTable(f"{d}/events")
    dt.delete("user_id IN (" + ", ".join(f"'{s}'" for s in subjects) + ")")
    dt = DeltaTable(f"{d}/events")
    dt.vacuum(retention_hours=0, enforce_retention_duration=False, dry_run=False)
elif cmd == "count-iceberg":
    subjects = set(open(sys.argv[3]).read().split())
    t = catalog(d).load_table("default.events")
    n = sum(1 for u in t.scan().to_arrow().column("user_id").to_pylist() if u in subjects)
    print(json.dumps({"rows": t.scan().count() if hasattr(t.scan(), "count") else None, "subject_rows": n}))
elif cmd == "count-delta":
    subjects = set(open(sys.argv[3]).read().split())
    from deltalake import DeltaTable
    dt = DeltaTable(f"{d}/events")
    users = dt.to_pyarrow_table(columns=["user_id"]).column("user_id").to_pylist()
    print(json.dumps({"rows": len(users), "subject_rows": sum(1 for u in users if u in subjects)}))
'''


def py(*args, check=True):
    return subprocess.run([sys.executable, "-c", HELPER, *args], check=check,
                          capture_output=True, text=True)


def files_holding(root, needles):
    hits = 0
    for dirpath, _, names in os.walk(root):
        for n in names:
            if n.endswith(".parquet"):
                with open(os.path.join(dirpath, n), "rb") as f:
                    data = f.read()
                if any(s.encode() in data for s in needles):
                    hits += 1
    return hits


def timed(cmd):
    start = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if out.returncode != 0:
        sys.exit(f"{cmd[:3]} failed: {out.stderr[-2000:]}")
    return elapsed, out.stdout


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--worker", required=True)
    ap.add_argument("--rows", type=int, default=300_000)
    ap.add_argument("--users", type=int, default=10_000)
    ap.add_argument("--subjects", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--formats", default="iceberg,delta")
    ap.add_argument("--days", type=int, default=10, help="date partitions (x 3 regions)")
    ap.add_argument("--clustered", action="store_true",
                    help="each day its own slice of user ids; subjects from day 0's (the scaling run)")
    args = ap.parse_args()
    worker = os.path.abspath(args.worker)
    results = {}
    for rnd in range(args.rounds):
        pool = [f"u-{k:05d}" for k in range(args.users)]
        if args.clustered:
            pool = pool[:args.users // args.days]
        subjects = random.Random(rnd).sample(pool, args.subjects)
        for fmt in args.formats.split(","):
            with tempfile.TemporaryDirectory() as tmp:
                subjects_file = os.path.join(tmp, "subjects.txt")
                with open(subjects_file, "w") as f:
                    f.write("\n".join(subjects) + "\n")
                dirs = {}
                for side in ("python", "lethe"):
                    d = os.path.join(tmp, side)
                    os.makedirs(d)
                    py(f"make-{fmt}", d, str(args.rows), str(args.users), str(args.days),
                       "1" if args.clustered else "0")
                    dirs[side] = d
                before = json.loads(py(f"count-{fmt}", dirs["python"], subjects_file).stdout)
                t_py, _ = timed([sys.executable, "-c", HELPER, f"erase-{fmt}", dirs["python"], subjects_file])
                if fmt == "iceberg":
                    cmd = [worker, "erase", "--format", "iceberg",
                           "--catalog-uri", f"sqlite:///{dirs['lethe']}/catalog.db",
                           "--catalog-name", "lethe", "--table", "default.events",
                           "--subject-column", "user_id", "--subjects", subjects_file]
                else:
                    cmd = [worker, "erase", "--format", "delta", "--root", f"{dirs['lethe']}/events",
                           "--subject-column", "user_id", "--subjects", subjects_file]
                t_lethe, out = timed(cmd)
                summary = json.loads(out.strip().splitlines()[-1])
                checks = {}
                for side, d in dirs.items():
                    after = json.loads(py(f"count-{fmt}", d, subjects_file).stdout)
                    checks[side] = {"subject_rows_after": after["subject_rows"],
                                    "files_holding_subjects": files_holding(d, subjects)}
                line = {"format": fmt, "round": rnd, "rows": args.rows, "days": args.days,
                        "clustered": args.clustered, "subjects": args.subjects,
                        "subject_rows": before["subject_rows"], "python_s": round(t_py, 3),
                        "lethe_s": round(t_lethe, 3), "ratio": round(t_lethe / t_py, 3),
                        "lethe_files_scanned": summary.get("files_scanned"),
                        "lethe_files_rewritten": summary.get("files_rewritten"),
                        "lethe_files_purged": summary.get("files_purged"),
                        "lethe_snapshots_expired": summary.get("snapshots_expired"),
                        "checks": checks}
                print(json.dumps(line), flush=True)
                results.setdefault(fmt, []).append(line)
    for fmt, lines in results.items():
        print(json.dumps({"format": fmt, "rows": args.rows, "days": args.days, "clustered": args.clustered,
                          "median_python_s": statistics.median(l["python_s"] for l in lines),
                          "median_lethe_s": statistics.median(l["lethe_s"] for l in lines),
                          "median_ratio": statistics.median(l["ratio"] for l in lines)}), flush=True)


if __name__ == "__main__":
    main()
