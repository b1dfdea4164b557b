"""Item 13 and the suite's schemathesis run: every check, against a live server.

Unlike tests/service/test_openapi.py (which leaves positive_data_acceptance out),
every one of schemathesis' checks runs here, over every operation, with a bounded
number of examples (``--max-examples``) and a fixed seed.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

import pytest

from support.http import Server
from tests.reliability.conftest import REPO

CONFIG = """
[checks.negative_data_rejection]
# 413: a schema-violating body can also be too large, which is the right answer then.
expected-statuses = ["400", "401", "403", "404", "405", "406", "409", "413", "414", "415",
                     "422", "431"]

[checks.positive_data_acceptance]
# 413 is documented for every POST: a schema-valid body can still be over the byte limit
# (see the request bodies' description and x-max-body-bytes in /openapi.json).
expected-statuses = ["2xx", "401", "403", "404", "413"]
"""


def _run(port: int, workdir: str, *args: str) -> tuple[int, str]:
    exe = shutil.which("schemathesis") or os.path.join(os.path.dirname(sys.executable),
                                                       "schemathesis")
    config = os.path.join(workdir, "schemathesis.toml")
    with open(config, "w", encoding="utf-8") as fh:
        fh.write(CONFIG)
    env = dict(os.environ, SCHEMATHESIS_HOOKS="tests.reliability.schemathesis_hooks",
               PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    cmd = [exe, "--config-file", config, "--no-color", "run",
           f"http://127.0.0.1:{port}/openapi.json", "--checks", "all",
           # One worker: with several, hypothesis describes filter lambdas with ast.parse on
           # concurrent threads, which CPython 3.11 does not survive ("AST constructor
           # recursion depth mismatch", a runtime error of the run, not of the service).
           "-H", "X-API-Key: admin-key-1", "--workers", "1", "--max-examples", "25",
           "--seed", "7", *args]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=420, cwd=workdir,
                         env=env)
    return out.returncode, out.stdout + out.stderr


@pytest.mark.slow
def test_schemathesis_every_check_no_failures(planted_models, tmp_path):
    pytest.importorskip("schemathesis")
    models, _, _ = planted_models
    copy = str(tmp_path / "models")
    shutil.copytree(models, copy)
    server = Server(copy, workers=2, threads=4, env={
        "XSELL_API_KEYS": "storefront:shop-key-1,crm:crm-key-1,admin:admin-key-1"})
    try:
        server.wait_ready()
        for code, out in [_run(server.port, str(tmp_path))]:
            counts = re.search(r"(\d+) generated.*", out)
            print("schemathesis, every check:", counts.group(0) if counts else out[-500:])
            assert code == 0, out[-8000:]
        assert "Traceback" not in server.output(), server.output()
    finally:
        server.stop()
