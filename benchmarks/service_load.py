"""Event latency of `cascor serve` under load, side by side with an unloaded baseline, in one run
of this script: a real server on loopback, WebSocket subscribers on a two-spirals run
(fahlman-spirals, ~1,700 epochs in ~1 s of training, so a batch every 0.25 s carries hundreds of
epochs).

- baseline: 1 subscriber, no other run
- load: 20 subscribers on one run while 3 more runs train (4 workers on this machine's cores)

Latency is the time from the worker writing a batch (its "t" stamp) to a subscriber receiving
it: worker -> pipe -> server -> WebSocket -> client. Also: batches and epochs each subscriber got
(every install must arrive: checked), and the server's resident memory before and after.

    python benchmarks/service_load.py [--reps 3]
"""

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))

from service_util import Server  # noqa: E402


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:")) / 1024


def scenario(srv: Server, subscribers: int, others: int, seed: int) -> dict:
    watched = srv.post("/api/runs", {"dataset": "two-spirals", "preset": "fahlman-spirals", "seed": seed,
                                     "start": False})[1]["id"]
    results = [None] * subscribers
    ready = threading.Barrier(subscribers + 1)

    def follow(k):
        lat, batches, epochs, units = [], 0, 0, 0
        with srv.ws(watched) as ws:
            json.loads(ws.recv(timeout=60))
            ready.wait(60)
            while True:
                m = json.loads(ws.recv(timeout=300))
                now = time.time()
                if m["type"] == "rows":
                    lat.append(now - m["t"])
                    batches += 1
                    epochs += len(m["epochs"]["epoch"])
                    units += len(m["units"]["epoch"])
                if m["type"] == "state" and m["status"] in ("finished", "failed"):
                    break
        results[k] = (lat, batches, epochs, units)

    threads = [threading.Thread(target=follow, args=(k,)) for k in range(subscribers)]
    for t in threads:
        t.start()
    ready.wait(60)
    rss0 = rss_mib(srv.proc.pid)
    background = [srv.post("/api/runs", {"dataset": "two-spirals", "preset": "fahlman-spirals",
                                         "seed": seed + 100 + k})[1]["id"] for k in range(others)]
    srv.post(f"/api/runs/{watched}/resume")
    for t in threads:
        t.join(600)
    final = srv.wait_status(watched, ("finished", "failed"))
    for b in background:
        srv.wait_status(b, ("finished", "failed"))
    installs = len(final["history"]["units"]["epoch"])
    assert all(r[3] == installs for r in results), "an install was lost"
    lat = sorted(x for r in results for x in r[0])
    return {"median_ms": 1000 * statistics.median(lat), "p95_ms": 1000 * lat[int(0.95 * (len(lat) - 1))],
            "max_ms": 1000 * lat[-1], "batches": statistics.median(r[1] for r in results),
            "epochs": statistics.median(r[2] for r in results), "installs": installs,
            "rss_mib": (rss0, rss_mib(srv.proc.pid))}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        srv = Server(os.path.join(tmp, "runs"), "--max-runs", "4").start()
        try:
            rows = []
            for rep in range(args.reps):  # alternate, so drift hits both alike
                rows.append(("baseline (1 sub, 1 run)", scenario(srv, 1, 0, 10 + rep)))
                rows.append(("load (20 subs, 4 runs)", scenario(srv, 20, 3, 20 + rep)))
        finally:
            srv.stop()
    print(f"{'scenario':26} {'median ms':>10} {'p95 ms':>8} {'max ms':>8} {'batches':>8} {'epochs':>7} "
          f"{'installs':>8} {'server RSS MiB':>16}")
    for name, r in rows:
        print(f"{name:26} {r['median_ms']:10.1f} {r['p95_ms']:8.1f} {r['max_ms']:8.1f} {r['batches']:8.0f} "
              f"{r['epochs']:7.0f} {r['installs']:8d} {r['rss_mib'][0]:7.0f} -> {r['rss_mib'][1]:.0f}")


if __name__ == "__main__":
    main()
