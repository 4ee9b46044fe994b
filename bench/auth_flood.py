#!/usr/bin/env python3
"""Sign-in flood: N login attempts from C concurrent clients against a running service, while
the service's RSS is sampled and an authenticated endpoint is timed. Prints one JSON line.

Usage: auth_flood.py BASE_URL PID TOKEN [--attempts 2000] [--clients 64]
"""
import argparse
import http.client
import json
import statistics
import threading
import time
import urllib.parse
import uuid
from concurrent.futures import ThreadPoolExecutor


def rss_kib(pid, field="VmRSS"):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def timed_get(host, port, path, token):
    conn = http.client.HTTPConnection(host, port, timeout=30)
    start = time.perf_counter()
    conn.request("GET", path, headers={"Authorization": f"Bearer {token}"})
    response = conn.getresponse()
    response.read()
    conn.close()
    return response.status, (time.perf_counter() - start) * 1000


def percentile(values, p):
    if not values:
        return None
    values = sorted(values)
    return round(values[min(len(values) - 1, int(len(values) * p))], 1)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("base")
    parser.add_argument("pid", type=int)
    parser.add_argument("token")
    parser.add_argument("--attempts", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=64)
    args = parser.parse_args()
    url = urllib.parse.urlparse(args.base)
    host, port = url.hostname, url.port

    # The usual latency of an authenticated read, before the flood.
    before = [timed_get(host, port, "/v1/me", args.token)[1] for _ in range(20)]

    statuses, lock = {}, threading.Lock()
    latencies = []
    next_attempt = iter(range(args.attempts))

    def client():
        conn = http.client.HTTPConnection(host, port, timeout=60)
        while True:
            with lock:
                i = next(next_attempt, None)
            if i is None:
                break
            # Unknown e-mails (a spray) and wrong passwords of one real account, alternately.
            email = "admin@bench.invalid" if i % 2 else f"{uuid.uuid4().hex[:12]}@bench.invalid"
            body = json.dumps({"email": email, "password": "wrong-password-" + str(i)})
            start = time.perf_counter()
            try:
                conn.request("POST", "/v1/auth/login", body=body,
                             headers={"Content-Type": "application/json"})
                response = conn.getresponse()
                response.read()
                status = response.status
            except (OSError, http.client.HTTPException):
                conn.close()
                conn = http.client.HTTPConnection(host, port, timeout=60)
                status = "error"
            with lock:
                statuses[status] = statuses.get(status, 0) + 1
                latencies.append((time.perf_counter() - start) * 1000)
        conn.close()

    samples, during, stop = [], [], threading.Event()

    def sampler():
        while not stop.is_set():
            samples.append(rss_kib(args.pid))
            during.append(timed_get(host, port, "/v1/me", args.token)[1])
            time.sleep(0.1)

    rss_before = rss_kib(args.pid)
    watcher = threading.Thread(target=sampler)
    watcher.start()
    start = time.perf_counter()
    with ThreadPoolExecutor(args.clients) as pool:
        for _ in range(args.clients):
            pool.submit(client)
    elapsed = time.perf_counter() - start
    stop.set()
    watcher.join()
    time.sleep(2)
    print(json.dumps({
        "attempts": args.attempts,
        "clients": args.clients,
        "elapsed_s": round(elapsed, 1),
        "statuses": {str(k): v for k, v in sorted(statuses.items(), key=lambda kv: str(kv[0]))},
        "login_ms_p50": percentile(latencies, 0.5),
        "login_ms_p99": percentile(latencies, 0.99),
        "rss_mib_before": round(rss_before / 1024, 1),
        "rss_mib_max_sampled": round(max(samples or [0]) / 1024, 1),
        "rss_mib_peak_vmhwm": round(rss_kib(args.pid, "VmHWM") / 1024, 1),
        "rss_mib_after": round(rss_kib(args.pid) / 1024, 1),
        "me_ms_p50_before": percentile(before, 0.5),
        "me_ms_p50_during": percentile(during, 0.5),
        "me_ms_p99_during": percentile(during, 0.99),
        "me_ms_mean_during": round(statistics.mean(during), 1) if during else None,
    }))


if __name__ == "__main__":
    main()
