"""Fast start, the way the image runs: the package installed (not editable) into a fresh
virtual environment, the answer path compiled as the Dockerfile does (as root), then
served by another, non-root user with site-packages read-only: ready within 3 s, every
compiled kernel loaded from the cache; a cache made with other numba flags or another
source is never loaded."""

from __future__ import annotations

import os
import pwd
import re
import shutil
import site
import stat
import subprocess
import sys
import tempfile
import time

import pytest

from recsys import fastpath
from support.http import free_port, request

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
READY_WITHIN_S = 3.0

pytestmark = pytest.mark.slow


def _user():
    if os.geteuid() != 0:
        pytest.skip("needs root, to serve as another user")
    try:
        return pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("no 'nobody' user")


def _chmod(path: str, mode) -> None:
    """chmod that never follows a symlink (a venv's python links to the system's)."""
    if not os.path.islink(path):
        os.chmod(path, mode(stat.S_IMODE(os.lstat(path).st_mode)))


def _readable(path: str) -> None:
    """Let every user read ``path`` (and run what was executable)."""
    for root, dirs, files in os.walk(path):
        for name in dirs:
            _chmod(os.path.join(root, name), lambda m: m | 0o755)
        for name in files:
            _chmod(os.path.join(root, name), lambda m: m | 0o444 | (0o111 if m & 0o100 else 0))
    _chmod(path, lambda m: m | 0o755)


def _read_only(path: str) -> None:
    for root, dirs, files in os.walk(path):
        for name in files:
            _chmod(os.path.join(root, name), lambda m: m & ~0o222)
        _chmod(root, lambda m: m & ~0o222)


def _world_usable(path: str) -> bool:
    """Whether any user may run ``path`` (every folder above it searchable)."""
    path = os.path.realpath(path)
    if not os.stat(path).st_mode & stat.S_IXOTH:
        return False
    parent = os.path.dirname(path)
    while parent != "/":
        if not os.stat(parent).st_mode & stat.S_IXOTH:
            return False
        parent = os.path.dirname(parent)
    return True


def _open_traverse(paths) -> list:
    """Let every user pass through the folders above ``paths`` (search bit only), as a
    container image's layout does; returns what was changed, to be restored. A clone in a
    ``mktemp -d`` folder (mode 0700) would otherwise hide this venv's site-packages from
    the other user, and the served process could not import its dependencies."""
    changed = []
    for path in paths:
        folder = os.path.realpath(path)
        while folder != "/":
            mode = stat.S_IMODE(os.stat(folder).st_mode)
            if not mode & stat.S_IXOTH and (folder, mode) not in changed:
                os.chmod(folder, mode | stat.S_IXOTH)
                changed.append((folder, mode))
            folder = os.path.dirname(folder)
    return changed


def _interpreter() -> str:
    """This Python, or the system's of the same minor version when this one lies where
    another user cannot reach it (e.g. under /root): the dependencies' wheels serve both."""
    base = getattr(sys, "_base_executable", sys.executable)
    if _world_usable(base):
        return base
    minor = f"python{sys.version_info.major}.{sys.version_info.minor}"
    for candidate in (f"/usr/bin/{minor}", f"/usr/local/bin/{minor}"):
        if os.path.exists(candidate) and _world_usable(candidate):
            return candidate
    pytest.skip(f"no {minor} that another user may run")


@pytest.fixture(scope="module")
def installed():
    """A fresh venv with xsell installed from a copy of the sources (no editable finder;
    the dependencies come from this interpreter's site-packages through a .pth line)."""
    user = _user()
    base = tempfile.mkdtemp(prefix="xsell-start-", dir="/tmp")
    os.chmod(base, 0o755)
    src = os.path.join(base, "src")
    os.makedirs(src)
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(os.path.join(REPO, name), src)
    for name in ("recsys", "training", "service"):
        shutil.copytree(os.path.join(REPO, name), os.path.join(src, name),
                        ignore=shutil.ignore_patterns("__pycache__"))
    venv = os.path.join(base, "venv")
    subprocess.run([_interpreter(), "-m", "venv", "--without-pip", venv], check=True)
    python = os.path.join(venv, "bin", "python")
    target = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()"
                             "['purelib'])"], check=True, capture_output=True,
                            text=True).stdout.strip()
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps",
                    "--no-build-isolation", "--no-index", "--target", target, src],
                   check=True, capture_output=True, cwd=base)
    with open(os.path.join(target, "_xsell_test_deps.pth"), "w", encoding="utf-8") as fh:
        fh.write("\n".join(site.getsitepackages()) + "\n")
    opened = _open_traverse(site.getsitepackages())
    home = os.path.join(base, "home")
    os.makedirs(home)
    os.chown(home, user.pw_uid, user.pw_gid)
    _readable(venv)
    yield {"python": python, "site": target, "base": base, "home": home, "user": user}
    for folder, mode in reversed(opened):
        os.chmod(folder, mode)
    for root, dirs, _ in os.walk(base):
        for name in dirs:
            _chmod(os.path.join(root, name), lambda m: m | 0o700)
    shutil.rmtree(base, ignore_errors=True)


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and its children (gunicorn master, worker)."""
    pids = [pid]
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as fh:
            pids += [int(p) for p in fh.read().split()]
    except OSError:
        pass
    total = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def _env(home: str, **extra) -> dict:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("XSELL_", "NUMBA_", "PYTHON"))}
    env.update(HOME=home, OPENBLAS_NUM_THREADS="1", **extra)
    return env


def test_warm_image_starts_fast_as_another_user(installed, planted_models):
    python, target, home, user = (installed[k] for k in ("python", "site", "home", "user"))
    where = subprocess.run([python, "-c", "import recsys; print(recsys.__file__)"],
                           capture_output=True, text=True, check=True, cwd=home).stdout
    assert where.startswith(target), where  # the installed copy, not this checkout

    # As the Dockerfile: compile into the installed package's cache, as root.
    started = time.perf_counter()
    subprocess.run([python, "-c", "from recsys import fastpath; fastpath.warm()"],
                   check=True, cwd=home, env=_env(home))
    compile_s = time.perf_counter() - started
    _read_only(target)

    models = os.path.join(installed["base"], "models")
    if not os.path.exists(models):
        shutil.copytree(planted_models[0], models)
        _readable(models)

    def serve(**extra):
        port = free_port()
        log_path = os.path.join(installed["base"], f"serve-{port}.log")
        with open(log_path, "wb") as log:
            start = time.perf_counter()
            proc = subprocess.Popen(
                [python, "-m", "training.cli", "serve", "--models", models, "--port",
                 str(port), "--workers", "1"], cwd=home, env=_env(home, **extra),
                stdout=log, stderr=subprocess.STDOUT, user=user.pw_uid, group=user.pw_gid,
                start_new_session=True)
        try:
            ready = cpu = None
            while time.perf_counter() - start < 600 and proc.poll() is None:
                try:
                    if request(port, "GET", "/readyz")[0] == 200:
                        ready = time.perf_counter() - start
                        cpu = _cpu_seconds(proc.pid)
                        break
                except OSError:
                    pass
                time.sleep(0.02)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
        with open(log_path, encoding="utf-8", errors="replace") as fh:
            text = fh.read()
        found = re.search(r"numba cache: (\d+) kernels loaded, (\d+) compiled, folder (\S+)\)",
                          text)
        assert found, text[-3000:]
        return ready, cpu, int(found.group(1)), int(found.group(2)), found.group(3)

    # Warm: every kernel from the read-only cache the root build left; ready in 3 s. Best
    # of two starts (the first also pays for cold disk pages of the dependencies).
    runs = [serve() for _ in range(2)]
    warm_s, warm_cpu = min(r[0] for r in runs), min(r[1] for r in runs)
    busy = os.getloadavg()[0] > (os.cpu_count() or 1)
    print(f"\ncompile at image build {compile_s:.2f} s; warm starts to /readyz 200: "
          + ", ".join(f"{r[0]:.2f} s ({r[1]:.2f} s CPU)" for r in runs)
          + f"; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    for ready, _, loaded, compiled, folder in runs:
        assert ready is not None and loaded > 0 and compiled == 0
        assert folder.startswith(target)
    # The CPU the server spent until ready does not depend on other work on the machine;
    # wall time does, so it is held to 3 s when the machine is not oversubscribed.
    assert warm_cpu <= READY_WITHIN_S
    if not busy:
        assert warm_s <= READY_WITHIN_S

    # Other numba flags: another cache folder (the user's), compiled afresh; the root
    # build's cache is never loaded.
    ready, cpu, loaded, compiled, folder = serve(NUMBA_BOUNDSCHECK="1")
    print(f"start with NUMBA_BOUNDSCHECK=1 (compiles: a cold start): {ready:.2f} s "
          f"({cpu:.2f} s CPU)")
    assert ready is not None and compiled > 0 and loaded == 0
    assert not folder.startswith(target) and folder.startswith(home)
    assert cpu > 2 * warm_cpu


def test_cache_folder_is_named_by_source_and_flags():
    source = open(fastpath.__file__, "rb").read()
    base = fastpath.cache_fingerprint({}, source)
    assert fastpath.cache_fingerprint({}, source) == base
    assert fastpath.cache_fingerprint({}, source + b"# edited\n") != base
    assert fastpath.cache_fingerprint({"NUMBA_OPT": "0"}, source) != base
    assert fastpath.cache_fingerprint({"NUMBA_BOUNDSCHECK": "1"}, source) != base
    # Settings that do not change the machine code share the cache.
    assert fastpath.cache_fingerprint({"NUMBA_NUM_THREADS": "3", "OTHER": "x"}, source) == base
    stats = fastpath.cache_stats()
    assert stats["folder"] is None or os.path.basename(stats["folder"]) == \
        f"xsell-numba-{fastpath.cache_fingerprint()}"
