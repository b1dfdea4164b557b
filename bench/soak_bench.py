"""Soak benchmark: mixed traffic for 10 minutes while the model store is abused.

    python bench/soak_bench.py [--duration 600] [--clients 3] [--orders FILE] [--no-proxy]

Runs the shipped deployment shape on loopback: ``xsell serve`` (gunicorn, 2
workers, API keys on) behind Debian's nginx with the shipped configuration
(deploy/nginx; ``--no-proxy`` or no nginx installed: gunicorn alone). Client
threads send a mix of every endpoint (valid requests, unknown ids, invalid
parameters that must get 400, oversized bodies that must get 413) for
``--duration`` seconds, while, at fixed fractions of the run:

    10%  the nightly job (``xsell nightly``) publishes version 2
    30%  the nightly job publishes version 3
    45%  a corrupted version (an array file cut in half) is made current
    55%  one gunicorn worker is killed (SIGKILL)
    65%  the nightly job publishes version 4 (the pointer is good again)

Every answer is checked (status as expected, JSON, the error shape) and every
failed request is counted by cause. Only requests in flight on the killed
worker may fail: failures within ``KILL_WINDOW_S`` of the kill that look like a
dropped connection (a reset, or the proxy's 503) are counted as such, at most
one per client thread; anything else fails the run.

Memory: the total PSS of gunicorn's master and workers after warm-up and at the
end. Stated bound: the end may exceed the start by at most ``MEMORY_BOUND_RATIO``
(x1.5) plus ``MEMORY_BOUND_MIB`` (64 MiB), room for the per-worker answer caches
(bounded by XSELL_ANSWER_CACHE) and the replaced worker's own pages.

Ratios against a baseline measured in the same run: throughput of each phase
against the quiet first phase, and memory end / start. Exit code 1 when an
unexpected failure occurred or the memory bound was exceeded.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from support.http import Server, request  # noqa: E402
from support.versions import publish_copy  # noqa: E402

KEYS = "storefront:soak-shop,crm:soak-crm,admin:soak-admin"
KEY = {"X-API-Key": "soak-admin"}
KILL_WINDOW_S = 2.0
MEMORY_BOUND_RATIO = 1.5
MEMORY_BOUND_MIB = 64
EVENTS = [(0.10, "nightly"), (0.30, "nightly"), (0.45, "corrupt"), (0.55, "kill"),
          (0.65, "nightly")]
NIGHTLY_CONFIG = """
# The soak's nightly runs retrain on the same data: the gate compares with the current
# version's stored metrics; no margin over popularity, so every run publishes.
[gate]
min_lift_over_popularity = 0.0
[als]
factors = 16
iterations = 8
"""


def requests_mix(items, customers) -> list[tuple[str, str, object, int]]:
    """(method, path, body, expected status): valid and invalid requests of every kind."""
    mix = []
    for i, item in enumerate(items):
        c = customers[i % len(customers)]
        basket = [item, items[(i + 3) % len(items)]]
        mix += [("GET", f"/v1/items/{item}/also-bought?limit={i % 20 + 1}", None, 200),
                ("GET", f"/v1/items/{item}/upsell", None, 200),
                ("GET", f"/v1/items/{item}/likely-buyers", None, 200),
                ("GET", f"/v1/customers/{c}/next-best-products", None, 200),
                ("POST", "/v1/recommendations/basket", {"items": basket}, 200),
                ("POST", "/v1/recommendations/next-best", {"history": basket}, 200)]
    mix += [("GET", "/v1/items/NO-SUCH-ITEM/also-bought", None, 200),  # popular fallback
            ("GET", "/v1/items/NO-SUCH-ITEM/also-bought?fallback=false", None, 404),
            ("GET", f"/v1/items/{items[0]}/also-bought?limit=0", None, 400),
            ("GET", f"/v1/items/{items[0]}/also-bought?limit=1_0", None, 400),
            ("POST", "/v1/recommendations/basket", b'{"items": [', 400),
            ("POST", "/v1/recommendations/basket",
             {"items": [items[0]], "pad": "x" * 70000}, 413),
            ("GET", "/v1/model", None, 200), ("GET", "/readyz", None, 200),
            ("GET", "/healthz", None, 200), ("GET", "/metrics", None, 200)]
    return mix


class Traffic:
    """Client threads cycling through the mix; every outcome recorded with its time."""

    def __init__(self, port: int, mix, clients: int, pause: float):
        self.port, self.mix, self.pause = port, mix, pause
        self.stop_event = threading.Event()
        self.lock = threading.Lock()
        self.ok = 0
        self.done: list[float] = []  # completion times (for throughput per phase)
        self.failures: list[tuple[float, str, str]] = []  # (time, cause, request)
        self.threads = [threading.Thread(target=self._run, args=(n,), daemon=True)
                        for n in range(clients)]

    def start(self):
        for t in self.threads:
            t.start()

    def stop(self):
        self.stop_event.set()
        for t in self.threads:
            t.join(timeout=30)

    def _run(self, n: int):
        rnd = random.Random(n)
        while not self.stop_event.is_set():
            method, path, body, expected = rnd.choice(self.mix)
            started = time.time()
            cause = None
            try:
                status, _, answer = request(self.port, method, path, body=body,
                                            headers=KEY, timeout=10)
                if status != expected:
                    cause = f"status_{status}"
                    if isinstance(answer, dict) and "error" in answer:
                        cause += f"_{answer['error'].get('code')}"
                elif path != "/metrics" and not isinstance(answer, dict):
                    cause = "not_json"
                elif expected >= 400 and set(answer) != {"error"}:
                    cause = "error_shape"
            except TimeoutError:
                cause = "timeout"
            except OSError as exc:
                cause = f"connection_{type(exc).__name__}"
            except Exception as exc:  # http.client's RemoteDisconnected, BadStatusLine
                cause = f"protocol_{type(exc).__name__}"
            with self.lock:
                self.done.append(time.time())
                if cause is None:
                    self.ok += 1
                else:
                    self.failures.append((started, cause, f"{method} {path[:60]}"))
            if self.pause:
                time.sleep(self.pause)


def pss_mib(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/smaps_rollup", encoding="ascii") as fh:
                total += sum(int(line.split()[1]) for line in fh if line.startswith("Pss:"))
        except OSError:
            continue
    return total / 1024


def nightly(orders: str, models: str, config: str, log) -> int:
    env = dict(os.environ, PYTHONPATH=REPO, OPENBLAS_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "training.cli", "nightly", "--orders", orders,
                           "--models", models, "--config", config, "--keep", "10"],
                          cwd=REPO, env=env, stdout=log, stderr=log).returncode


def query_ids(models: str):
    from recsys.artifacts import load_version
    from recsys.recommender import Recommender

    rec = Recommender.load(load_version(models))
    items = [rec.items.id_of(i) for i in range(min(len(rec.items), 40))]
    customers = [rec.customers.id_of(i) for i in range(min(len(rec.customers), 40))]
    return items, customers


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=600.0, help="seconds of traffic")
    parser.add_argument("--clients", type=int, default=3, help="client threads")
    parser.add_argument("--pause", type=float, default=0.005,
                        help="seconds each client waits between requests")
    parser.add_argument("--orders", default=None,
                        help="orders for the nightly runs (default: planted synthetic data)")
    parser.add_argument("--no-proxy", action="store_true", help="gunicorn without nginx")
    parser.add_argument("--json", default=None, help="write the summary here too")
    args = parser.parse_args()

    work = tempfile.mkdtemp(prefix="xsell-soak-")
    models = os.path.join(work, "models")
    log = open(os.path.join(work, "nightly.log"), "ab")
    config = os.path.join(work, "nightly.toml")
    with open(config, "w", encoding="utf-8") as fh:
        fh.write(NIGHTLY_CONFIG)
    orders = args.orders
    if orders is None:
        from support.synthetic import planted_orders

        orders = os.path.join(work, "orders.csv")
        planted_orders(orders)
    print(f"work folder {work}; first nightly run ...", flush=True)
    if nightly(orders, models, config, log) != 0:
        raise SystemExit(f"the first nightly run did not publish; see {work}/nightly.log")

    server = Server(models, workers=2, threads=4, reload_interval=1.0,
                    env={"XSELL_API_KEYS": KEYS})
    proxy = None
    try:
        server.wait_ready(timeout=60)
        port = server.port
        if not args.no_proxy and (shutil.which("nginx") or os.path.exists("/usr/sbin/nginx")):
            from support.proxy import Proxy

            proxy_dir = os.path.join(work, "nginx")
            os.makedirs(proxy_dir)
            proxy = Proxy(proxy_dir, server.port)
            port = proxy.port
        shape = "nginx + gunicorn" if proxy else "gunicorn alone"
        items, customers = query_ids(models)
        traffic = Traffic(port, requests_mix(items, customers), args.clients, args.pause)
        for method, path, body, _ in traffic.mix[:60]:  # warm-up, not measured
            request(port, method, path, body=body, headers=KEY)
        pids = [server.proc.pid, *server.worker_pids()]
        mem_start = pss_mib(pids)
        t0 = time.time()
        traffic.start()
        events, kill_at = [], None
        for fraction, kind in EVENTS:
            while time.time() < t0 + fraction * args.duration:
                time.sleep(0.2)
            at = round(time.time() - t0, 1)
            if kind == "nightly":
                code = nightly(orders, models, config, log)
                events.append({"at_s": at, "event": "nightly", "exit_code": code})
            elif kind == "corrupt":
                from recsys.artifacts import current_version

                bad = publish_copy(models, current_version(models),
                                   f"29990101T000000Z-{random.randrange(16**4):04x}",
                                   corrupt="truncate")
                events.append({"at_s": at, "event": "corrupt version made current",
                               "version": bad})
            elif kind == "kill":
                victim = server.worker_pids()[0]
                kill_at = time.time()
                os.kill(victim, signal.SIGKILL)
                events.append({"at_s": at, "event": "worker killed", "pid": victim})
            print(f"  {at:7.1f} s  {events[-1]}", flush=True)
        while time.time() < t0 + args.duration:
            time.sleep(0.5)
        traffic.stop()
        elapsed = time.time() - t0
        pids = [server.proc.pid, *server.worker_pids()]
        mem_end = pss_mib(pids)
        try:
            status, _, ready = request(port, "GET", "/readyz")
        except (OSError, ValueError) as exc:  # counted, never a crash of the bench
            status, ready = f"no answer ({type(exc).__name__})", {}
        from recsys.artifacts import current_version

        final_version = current_version(models)
    finally:
        if proxy is not None:
            proxy.stop()
        server.stop()

    killed, unexpected = [], []
    for started, cause, what in traffic.failures:
        dropped = cause.startswith(("connection_", "protocol_")) or \
            cause.startswith("status_503_unavailable")
        if kill_at is not None and dropped and abs(started - kill_at) <= KILL_WINDOW_S:
            killed.append((started, cause, what))
        else:
            unexpected.append((started, cause, what))
    if len(killed) > args.clients:  # more than one in flight per client thread: not them
        unexpected += killed[args.clients:]
        killed = killed[:args.clients]
    causes = Counter(cause for _, cause, _ in unexpected)
    bounds = [t0] + [t0 + f * args.duration for f, _ in EVENTS] + [t0 + elapsed]
    names = ["quiet (baseline)"] + [f"after {kind} #{n}" for n, (_, kind) in
                                    enumerate(EVENTS, 1)]
    rates = []
    for name, lo, hi in zip(names, bounds[:-1], bounds[1:], strict=True):
        n = sum(1 for t in traffic.done if lo <= t < hi)
        rates.append((name, n / max(hi - lo, 1e-9)))
    base = rates[0][1] or 1.0
    bound = mem_start * MEMORY_BOUND_RATIO + MEMORY_BOUND_MIB
    summary = {
        "shape": shape, "duration_s": round(elapsed, 1), "clients": args.clients,
        "requests": len(traffic.done), "ok": traffic.ok,
        "failed_killed_worker_in_flight": len(killed),
        "failed_unexpected": len(unexpected), "failed_by_cause": dict(causes),
        "killed_by_cause": dict(Counter(c for _, c, _ in killed)),
        "events": events, "final_version": final_version,
        "readyz_at_end": {"status": status, "model_version": ready.get("model_version")
                          if isinstance(ready, dict) else None},
        "memory_pss_mib": {"start": round(mem_start, 1), "end": round(mem_end, 1),
                           "end_over_start": round(mem_end / mem_start, 3),
                           "bound": round(bound, 1), "within_bound": mem_end <= bound},
        "throughput_vs_quiet_phase": {name: round(rate / base, 3) for name, rate in rates},
        "requests_per_s_quiet": round(base, 1),
        "first_unexpected": [f"{c} {w}" for _, c, w in unexpected[:5]],
    }
    print(f"soak: {summary['duration_s']} s of traffic ({shape}, {args.clients} clients), "
          f"{summary['requests']} requests, {summary['ok']} as expected")
    print(f"  failed, killed worker's in-flight: {len(killed)} {summary['killed_by_cause']}")
    print(f"  failed, anything else:            {len(unexpected)} {dict(causes)}")
    print(f"  memory PSS: start {mem_start:.1f} MiB, end {mem_end:.1f} MiB "
          f"(x{mem_end / mem_start:.2f}; bound x{MEMORY_BOUND_RATIO} + {MEMORY_BOUND_MIB} MiB "
          f"= {bound:.1f} MiB: {'ok' if mem_end <= bound else 'EXCEEDED'})")
    print("  throughput vs the quiet phase: " + ", ".join(
        f"{n} x{r / base:.2f}" for n, r in rates))
    print(json.dumps(summary))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(summary, fh, indent=2)
    log.close()
    shutil.rmtree(work, ignore_errors=True)
    good = not unexpected and mem_end <= bound and status == 200
    return 0 if good else 1


if __name__ == "__main__":
    sys.exit(main())
