"""Fixtures of the fault and abuse suite: the planted model of tests/service, and runners.

Every server here listens on 127.0.0.1 on a free port and is stopped after its test;
every load is bounded in count and time (GUIDE.md).
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.service.conftest import make_app, models_copy, planted_models  # noqa: F401

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def run_xsell(*args: str, env: dict | None = None, timeout: float = 240, **kwargs):
    """``xsell ARGS`` in a subprocess: (exit code, stdout, stderr)."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("XSELL_")}
    full_env["PYTHONPATH"] = REPO + os.pathsep + full_env.get("PYTHONPATH", "")
    full_env.update(env or {})
    out = subprocess.run([sys.executable, "-m", "training.cli", *args], capture_output=True,
                         text=True, timeout=timeout, env=full_env, cwd=REPO, **kwargs)
    return out.returncode, out.stdout, out.stderr


def no_traceback(text: str) -> bool:
    return "Traceback" not in text


@pytest.fixture
def app_factory():
    return make_app
