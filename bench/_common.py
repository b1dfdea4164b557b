"""Helpers shared by the benchmark scripts: run a command, measure wall time and peak RSS."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_DATA = os.path.join(os.path.dirname(REPO), "shared", "data")


def run_measured(args: list[str], env: dict | None = None) -> tuple[float, float, str]:
    """Run a child process; return (wall seconds, peak RSS in GiB, stdout).

    The peak RSS is that child's own, from the rusage that wait4 returns.
    """
    full_env = dict(os.environ, OPENBLAS_NUM_THREADS="1", PYTHONPATH=REPO)
    full_env.update(env or {})
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        start = time.perf_counter()
        proc = subprocess.Popen(args, stdout=out, stderr=err, env=full_env, cwd=REPO, text=True)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if proc.returncode != 0:
        sys.stderr.write(stderr[-4000:])
        raise SystemExit(f"command failed ({proc.returncode}): {' '.join(args)}")
    return wall, usage.ru_maxrss / 1024 / 1024, stdout


def xsell_args(*args: str) -> list[str]:
    return [sys.executable, "-m", "training.cli", *args]
