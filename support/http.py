"""Servers and requests for the service tests (publishing versions: support.versions)."""

from __future__ import annotations

import json
import os
import socket


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``xsell serve`` as a subprocess on a free loopback port; always stop() it."""

    def __init__(self, models_dir: str, workers: int = 2, reload_interval: float = 0.5,
                 env: dict | None = None, threads: int = 2):
        import subprocess
        import sys

        self.port = free_port()
        repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("XSELL_")}
        full_env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        full_env["PYTHONPATH"] = repo + os.pathsep + full_env.get("PYTHONPATH", "")
        full_env["XSELL_ACCESS_LOG"] = "false"
        full_env.update(env or {})
        self.log_path = os.path.join(models_dir + "-server.log") if os.path.isdir(models_dir) \
            else None
        self.log = open(self.log_path or os.devnull, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "training.cli", "serve", "--models", models_dir,
             "--host", "127.0.0.1", "--port", str(self.port), "--workers", str(workers),
             "--threads", str(threads), "--reload-interval", str(reload_interval)],
            env=full_env, cwd=repo, stdout=self.log, stderr=subprocess.STDOUT,
            start_new_session=True)
        self.base = f"http://127.0.0.1:{self.port}"

    def wait_ready(self, timeout: float = 30.0, path: str = "/healthz") -> None:
        import time

        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}: {self.output()}")
            try:
                status, _, _ = request(self.port, "GET", path)
                if status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"server not ready after {timeout} s: {self.output()}")

    def output(self) -> str:
        if not self.log_path:
            return ""
        self.log.flush()
        with open(self.log_path, "rb") as fh:
            return fh.read().decode("utf-8", "replace")[-4000:]

    def worker_pids(self) -> list[int]:
        path = f"/proc/{self.proc.pid}/task/{self.proc.pid}/children"
        try:
            with open(path, encoding="ascii") as fh:
                return [int(p) for p in fh.read().split()]
        except OSError:
            return []

    def stop(self) -> None:
        import signal
        import subprocess

        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        self.log.close()


def request(port: int, method: str, path: str, body=None, headers=None, timeout: float = 10):
    """One HTTP request on a fresh connection: (status, headers, parsed JSON or text)."""
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        data = None
        hdrs = dict(headers or {})
        if body is not None:
            data = json.dumps(body).encode() if not isinstance(body, bytes) else body
            hdrs.setdefault("Content-Type", "application/json")
        conn.request(method, path, body=data, headers=hdrs)
        resp = conn.getresponse()
        raw = resp.read()
        try:
            parsed = json.loads(raw)
        except ValueError:
            parsed = raw.decode("utf-8", "replace")
        return resp.status, dict(resp.getheaders()), parsed
    finally:
        conn.close()


class LoadLoop:
    """Client threads sending requests until stopped (bounded by ``max_seconds``).

    Counts every answer that is not a 200 with a model_version, and every
    connection error, as a failure; records the versions seen in order.
    """

    def __init__(self, port: int, threads: int = 3, max_seconds: float = 60.0):
        import threading

        self.port = port
        self.n_threads = threads
        self.max_seconds = max_seconds
        self.ok = 0
        self.failures: list[str] = []
        self.versions: list[str] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, args=(i,), daemon=True)
                         for i in range(threads)]

    def _one(self, i: int, n: int):
        if n % 2:
            return request(self.port, "POST", "/v1/recommendations/basket",
                           {"items": [f"A{(i + n) % 10}", "P3"], "limit": 5})
        return request(self.port, "GET", f"/v1/items/A{(i + n) % 10}/also-bought?limit=5")

    def _run(self, i: int) -> None:
        import http.client
        import time

        deadline = time.time() + self.max_seconds
        n = 0
        while not self._stop.is_set() and time.time() < deadline:
            n += 1
            try:
                status, _, body = self._one(i, n)
            except (OSError, http.client.HTTPException) as exc:
                # A request in flight on a killed worker ends as a reset or a short read.
                with self._lock:
                    self.failures.append(f"{type(exc).__name__}: {exc}")
                continue
            with self._lock:
                if status == 200 and isinstance(body, dict) and body.get("model_version"):
                    self.ok += 1
                    if not self.versions or self.versions[-1] != body["model_version"]:
                        self.versions.append(body["model_version"])
                else:
                    self.failures.append(f"{status}: {str(body)[:200]}")

    def __enter__(self):
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        for t in self._threads:
            t.join(timeout=30)
        return False

    def wait_for_requests(self, n: int, timeout: float = 30.0) -> None:
        import time

        target = self.ok + n
        deadline = time.time() + timeout
        while self.ok < target and time.time() < deadline:
            time.sleep(0.02)
