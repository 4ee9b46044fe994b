#!/usr/bin/env python3
"""Latency of filing a privacy request (POST /v1/requests) under a fixed load.

Starts `lethe-service serve` (embedded default: SQLite, in-process worker) in a fresh data
folder, creates an admin, then files REQUESTS access requests for distinct subjects from
CONCURRENCY client threads, and prints p50 / p90 / p99 / max in milliseconds as one JSON line.
Used to compare two builds (issue 13: signed audit checkpoints must not cost filing more than
10 % of p99), e.g.

    bench/filing_latency.py --service old/lethe-service --service new/lethe-service --rounds 3

Standard library only. Each round runs every binary once, alternating, so background load on
a shared machine hits both alike.
"""

import argparse
import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def call(port, method, path, body=None, token=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    headers = {"content-type": "application/json"}
    if token:
        headers["authorization"] = f"Bearer {token}"
    conn.request(method, path, body=json.dumps(body) if body is not None else None, headers=headers)
    response = conn.getresponse()
    data = response.read()
    conn.close()
    return response.status, data


def run_once(binary, requests, concurrency, warmup):
    data = tempfile.mkdtemp(prefix="lethe-filing-")
    port = free_port()
    env = dict(os.environ)
    env.update({
        "LETHE__STORAGE__DATA_DIR": data,
        "LETHE__DATABASE__URL": f"sqlite://{data}/lethe.db",
        "LETHE__SERVER__PORT": str(port),
        "LETHE__LOG__FILTER": "warn",
        "LETHE__REQUESTS__ACCESS_APPROVAL": "review",
    })
    password = "a long bench password"
    subprocess.run([binary, "user", "create", "--email", "admin@bench.invalid", "--role", "admin",
                    "--password-stdin"], input=password.encode(), env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    service = subprocess.Popen([binary, "serve"], env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        for _ in range(300):
            try:
                if call(port, "GET", "/healthz")[0] == 200:
                    break
            except OSError:
                time.sleep(0.1)
        status, body = call(port, "POST", "/v1/auth/login",
                            {"email": "admin@bench.invalid", "password": password})
        assert status == 200, body
        token = json.loads(body)["access_token"]
        latencies = []
        lock = threading.Lock()
        counter = iter(range(warmup + requests))
        errors = []

        def worker():
            while True:
                with lock:
                    i = next(counter, None)
                if i is None:
                    return
                start = time.perf_counter()
                status, body = call(port, "POST", "/v1/requests", {
                    "type": "access", "subject_id": f"bench-subject-{i}",
                    "verification_note": "bench"}, token)
                elapsed = (time.perf_counter() - start) * 1000
                if status != 201:
                    errors.append((status, body[:200]))
                elif i >= warmup:
                    with lock:
                        latencies.append(elapsed)

        threads = [threading.Thread(target=worker) for _ in range(concurrency)]
        started = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - started
        if errors:
            raise SystemExit(f"{binary}: {len(errors)} filings failed, e.g. {errors[0]}")
        latencies.sort()
        pick = lambda q: round(latencies[min(len(latencies) - 1, int(q * len(latencies)))], 2)
        return {"binary": binary, "requests": len(latencies), "concurrency": concurrency,
                "p50_ms": pick(0.50), "p90_ms": pick(0.90), "p99_ms": pick(0.99),
                "max_ms": round(latencies[-1], 2), "requests_per_s": round((warmup + requests) / wall, 1)}
    finally:
        service.terminate()
        service.wait(timeout=60)
        shutil.rmtree(data, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--service", action="append", required=True, help="a lethe-service binary (repeat)")
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=1)
    args = ap.parse_args()
    for _ in range(args.rounds):
        for binary in args.service:
            print(json.dumps(run_once(binary, args.requests, args.concurrency, args.warmup)), flush=True)


if __name__ == "__main__":
    sys.exit(main())
