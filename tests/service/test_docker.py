"""The Dockerfile, read and checked, and its start command run outside a container.

There is no Docker engine here: the test parses CMD, ENV and HEALTHCHECK, runs
the start command against a model folder on loopback (host and port swapped
for a free loopback port, the ``xsell`` script for this checkout's CLI), and
then runs the health check command against it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest

from support.http import free_port, request

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def dockerfile() -> dict:
    with open(os.path.join(REPO, "Dockerfile"), encoding="utf-8") as fh:
        text = re.sub(r"\\\n", " ", fh.read())
    out: dict = {"env": {}}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        word = word.upper()
        if word == "FROM":
            out["from"] = rest.strip()
        elif word == "USER":
            out["user"] = rest.strip()
        elif word == "EXPOSE":
            out["expose"] = rest.strip()
        elif word == "CMD":
            out["cmd"] = json.loads(rest)
        elif word == "ENV":
            for key, value in re.findall(r"(\w+)=(\S+)", rest):
                out["env"][key] = value
        elif word == "HEALTHCHECK":
            out["healthcheck"] = json.loads(rest[rest.index("CMD") + 3:].strip())
        elif word == "VOLUME":
            out["volume"] = json.loads(rest)
    return out


def test_dockerfile_is_production_shaped():
    d = dockerfile()
    assert re.match(r"python:\d+\.\d+\.\d+-slim", d["from"])  # pinned, no 'latest'
    assert d["user"] and d["user"] not in ("root", "0")
    assert d["volume"] == ["/models"]
    assert d["cmd"][:2] == ["xsell", "serve"] and "/models" in d["cmd"]
    port = d["cmd"][d["cmd"].index("--port") + 1]
    assert d["expose"] == port
    assert "/healthz" in " ".join(d["healthcheck"]) and port in " ".join(d["healthcheck"])
    assert d["env"]["OPENBLAS_NUM_THREADS"] == "1"


@pytest.mark.slow
def test_start_command_and_healthcheck_work_outside_a_container(planted_models, tmp_path):
    d = dockerfile()
    models, version, _ = planted_models
    volume = str(tmp_path / "models")
    shutil.copytree(models, volume)
    port = str(free_port())
    cmd = list(d["cmd"])
    cmd[0:1] = [sys.executable, "-m", "training.cli"]
    cmd = [volume if arg == "/models" else arg for arg in cmd]
    cmd[cmd.index("--host") + 1] = "127.0.0.1"  # tests bind loopback only
    image_port = cmd[cmd.index("--port") + 1]
    cmd[cmd.index("--port") + 1] = port
    env = {k: v for k, v in os.environ.items() if not k.startswith("XSELL_")}
    env.update({k: (volume if v == "/models" else v) for k, v in d["env"].items()})
    env["PYTHONPATH"] = REPO
    env["XSELL_WORKERS"] = "1"
    log = open(tmp_path / "server.log", "wb")
    proc = subprocess.Popen(cmd, env=env, cwd=str(tmp_path), stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                if request(int(port), "GET", "/readyz")[0] == 200:
                    break
            except OSError:
                time.sleep(0.1)
        status, _, body = request(int(port), "GET", "/v1/items/A0/also-bought")
        assert status == 200 and body["model_version"] == version
        health = [arg.replace(f":{image_port}/", f":{port}/") for arg in d["healthcheck"]]
        if health[0] == "python":
            health[0] = sys.executable
        assert subprocess.run(health, timeout=10).returncode == 0
    finally:
        proc.send_signal(signal.SIGTERM)  # what 'docker stop' sends
        try:
            assert proc.wait(timeout=30) == 0  # graceful shutdown exits cleanly
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
            log.close()
