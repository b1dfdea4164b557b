"""Service health over the last hour, from the service's own Prometheus metrics.

The metrics are running totals (per process, merged over the gunicorn workers
in multiprocess mode). A sampler thread in each worker reads the merged totals
every ``INTERVAL`` seconds and keeps an hour of them; rates, latency quantiles
and error and fallback shares are differences between consecutive samples.
Every worker reads the same merged totals, so whichever worker answers the
dashboard shows the same history (from when that worker started).
"""

from __future__ import annotations

import logging
import math
import os
import struct
import threading
import time
from collections import deque

from .. import metrics

log = logging.getLogger(__name__)

INTERVAL = 10.0
WINDOW = 3600.0
_REQUESTS = "xsell_http_requests"
_LATENCY = "xsell_http_request_duration_seconds"
_ANSWERS = "xsell_recommendations"


def _families():
    if metrics.multiprocess():
        return metrics.worker_files_collector().collect()
    return [family for metric in (metrics.REQUESTS, metrics.LATENCY, metrics.ANSWERS)
            for family in metric.collect()]


def read_totals() -> dict:
    """Running totals per endpoint: requests, 4xx, 5xx, answers, fallbacks, latency buckets."""
    totals: dict = {}

    def of(endpoint):
        return totals.setdefault(endpoint, {"requests": 0.0, "client_errors": 0.0,
                                            "errors": 0.0, "answers": 0.0, "fallbacks": 0.0,
                                            "buckets": {}})

    for family in _families():
        for sample in family.samples:
            endpoint = sample.labels.get("endpoint")
            if endpoint is None or endpoint.startswith("dashboard."):
                continue
            if sample.name == _REQUESTS + "_total":
                t = of(endpoint)
                t["requests"] += sample.value
                status = sample.labels.get("status", "")
                if status.startswith("5"):
                    t["errors"] += sample.value
                elif status.startswith("4"):
                    t["client_errors"] += sample.value
            elif sample.name == _LATENCY + "_bucket":
                buckets = of(endpoint)["buckets"]
                le = float(sample.labels["le"])
                buckets[le] = buckets.get(le, 0.0) + sample.value
            elif sample.name == _ANSWERS + "_total":
                t = of(endpoint)
                t["answers"] += sample.value
                if sample.labels.get("strategy") == "popular-fallback":
                    t["fallbacks"] += sample.value
    return totals


def quantile(q: float, buckets: dict) -> float | None:
    """The q-quantile of a cumulative histogram ({upper bound: count}), interpolated linearly
    within its bucket (as Prometheus' histogram_quantile); None without observations."""
    bounds = sorted(buckets)
    if not bounds or buckets[bounds[-1]] <= 0:
        return None
    total = buckets[bounds[-1]]
    rank = q * total
    lower, below = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if math.isinf(bound):
                return lower  # above the largest finite bound: report that bound
            if count == below:
                return bound
            return lower + (bound - lower) * (rank - below) / (count - below)
        lower, below = bound, count
    return lower


class HealthHistory:
    """An hour of metric samples (time, totals) and the per-interval series drawn from them."""

    def __init__(self, interval: float = INTERVAL, window: float = WINDOW):
        self.interval = interval
        self.window = window
        # Kept by age (an hour and one interval); the views add a sample at most once a
        # second, so the count stays bounded too.
        self.samples: deque = deque(maxlen=int(window) + 2)
        self.lock = threading.Lock()
        self._thread: threading.Thread | None = None
        # Threads do not survive fork: a forked child (a gunicorn worker) starts its own.
        os.register_at_fork(after_in_child=self._forget_thread)

    def _forget_thread(self) -> None:
        self._thread = None
        self.lock = threading.Lock()

    def sample(self, now: float | None = None) -> None:
        totals = read_totals()
        now = time.time() if now is None else now
        with self.lock:
            self.samples.append((now, totals))
            while self.samples and self.samples[0][0] < now - self.window - self.interval:
                self.samples.popleft()

    def ensure_sampler(self) -> None:
        """Start this process's sampler thread if it has none (cheap: called per request)."""
        if self._thread is not None:
            return
        with self.lock:
            if self._thread is not None:
                return
            self._thread = threading.Thread(target=self._run, name="xsell-health-sampler",
                                            daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while True:
            self.sample_logged()
            time.sleep(self.interval)

    def sample_logged(self) -> None:
        """One sample; a failure is logged, never raised (the sampler must never die)."""
        try:
            self.sample()
        except (struct.error, OSError) as exc:
            # A worker that has just started may have created its metrics file but not
            # yet written its header (prometheus_client reads 0 bytes): the next
            # sample reads it. One line, no traceback.
            log.warning("health sampler: a metrics file is not readable yet (%s); "
                        "sampling again in %.0f s", exc, self.interval)
        except Exception:
            log.exception("health sampler: cannot read the metrics")

    def series(self, window: float = WINDOW, now: float | None = None) -> dict:
        """Per endpoint, one point per interval: requests/s, p50 and p99 latency (ms), error
        and fallback shares; plus the totals over the window."""
        now = time.time() if now is None else now
        with self.lock:
            samples = [s for s in self.samples if s[0] >= now - window - self.interval]
        endpoints = sorted({e for _, totals in samples for e in totals})
        out = {}
        for endpoint in endpoints:
            points = []
            for (t0, a), (t1, b) in zip(samples, samples[1:], strict=False):
                points.append(dict(t=t1, **_delta(a.get(endpoint), b.get(endpoint), t1 - t0)))
            first, last = samples[0], samples[-1]
            summary = _delta(first[1].get(endpoint), last[1].get(endpoint),
                             max(last[0] - first[0], 1e-9))
            out[endpoint] = {"points": points, "summary": summary}
        span = samples[-1][0] - samples[0][0] if len(samples) > 1 else 0.0
        return {"interval_s": self.interval, "span_s": span, "endpoints": out}


def _delta(a: dict | None, b: dict | None, seconds: float) -> dict:
    empty = {"requests": 0.0, "client_errors": 0.0, "errors": 0.0, "answers": 0.0,
             "fallbacks": 0.0, "buckets": {}}
    a, b = a or empty, b or empty
    # A restarted worker's totals may drop: clamp differences at zero.
    d = {key: max(0.0, b[key] - a[key]) for key in empty if key != "buckets"}
    buckets = {le: max(0.0, n - a["buckets"].get(le, 0.0)) for le, n in b["buckets"].items()}
    p50, p99 = quantile(0.5, buckets), quantile(0.99, buckets)
    return {
        "requests": d["requests"],
        "rps": d["requests"] / seconds if seconds > 0 else 0.0,
        "p50_ms": None if p50 is None else p50 * 1000,
        "p99_ms": None if p99 is None else p99 * 1000,
        "error_rate": d["errors"] / d["requests"] if d["requests"] else None,
        "client_error_rate": d["client_errors"] / d["requests"] if d["requests"] else None,
        "fallback_rate": d["fallbacks"] / d["answers"] if d["answers"] else None,
    }


history = HealthHistory()
