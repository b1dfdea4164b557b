"""Model versions on disk: ``.npy`` arrays plus ``manifest.json``, no pickle.

Layout of a models folder::

    DIR/
      CURRENT                    one line: the current version's name
      versions/<version>/        manifest.json + arrays (*.npy)
      .tmp-<version>-<pid>/      a version being written (removed on failure)

A version is written completely (manifest with sha256 of every file last)
into a temporary folder, renamed into ``versions/``, and only then is
``CURRENT`` replaced, by writing ``CURRENT.tmp`` and ``os.replace``. A crash
at any point leaves the previous current version untouched.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import secrets
import shutil
from dataclasses import dataclass
from datetime import datetime, timezone

import numpy as np
import scipy.sparse as sp

from .exceptions import ModelLoadError, NoModelError

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
POINTER = "CURRENT"
# One line per pointer move (``<utc time> <version>``): which versions were ever published.
PUBLISHED_LOG = "published.log"
VERSIONS = "versions"
MANIFEST = "manifest.json"


def new_version_name(now: datetime | None = None) -> str:
    """``20261129T020000Z-3f9c``: sortable by time, unique by a random suffix."""
    now = now or datetime.now(timezone.utc)
    return f"{now.strftime('%Y%m%dT%H%M%SZ')}-{secrets.token_hex(2)}"


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _fsync_dir(path: str) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class VersionWriter:
    """Collects arrays for one version and writes them atomically on ``commit``."""

    def __init__(self, models_dir: str, version: str | None = None):
        self.models_dir = models_dir
        self.version = version or new_version_name()
        os.makedirs(os.path.join(models_dir, VERSIONS), exist_ok=True)
        self.tmp = os.path.join(models_dir, f".tmp-{self.version}-{os.getpid()}")
        os.makedirs(self.tmp)
        self.files: list[str] = []

    def add_array(self, name: str, array: np.ndarray) -> None:
        array = np.asarray(array)
        if array.dtype == object:
            raise TypeError(f"array {name!r} has dtype object: not storable without pickle")
        path = os.path.join(self.tmp, f"{name}.npy")
        try:
            np.save(path, array, allow_pickle=False)
        except OSError as exc:
            # numpy reports a short write ("N requested and M written") without an
            # errno: on a regular file that is a full disk.
            if exc.errno in (None, errno.ENOSPC):
                raise OSError(errno.ENOSPC, f"no space left writing {name}.npy ({exc})") from exc
            raise
        self.files.append(f"{name}.npy")

    def add_sparse(self, name: str, matrix: sp.csr_matrix) -> None:
        matrix = matrix.tocsr()
        self.add_array(f"{name}.indptr", matrix.indptr.astype(np.int64))
        self.add_array(f"{name}.indices", matrix.indices.astype(np.int32))
        self.add_array(f"{name}.data", matrix.data)
        self.add_array(f"{name}.shape", np.asarray(matrix.shape, dtype=np.int64))

    def add_json(self, name: str, payload) -> None:
        path = os.path.join(self.tmp, f"{name}.json")
        with open(path, "w", encoding="utf-8") as fh:
            json.dump(payload, fh)
        self.files.append(f"{name}.json")

    def commit(self, manifest: dict, make_current: bool = True) -> str:
        """Write the manifest, fsync, move into ``versions/`` and (optionally) point at it."""
        manifest = dict(manifest)
        manifest.setdefault("schema_version", SCHEMA_VERSION)
        manifest.setdefault("created_at", datetime.now(timezone.utc).isoformat(timespec="microseconds"))
        manifest["version"] = self.version
        manifest["files"] = {f: _sha256(os.path.join(self.tmp, f)) for f in sorted(self.files)}
        manifest_path = os.path.join(self.tmp, MANIFEST)
        with open(manifest_path, "w", encoding="utf-8") as fh:
            json.dump(manifest, fh, indent=2, sort_keys=True)
            fh.flush()
            os.fsync(fh.fileno())
        for f in self.files:
            with open(os.path.join(self.tmp, f), "rb") as fh:
                os.fsync(fh.fileno())
        _fsync_dir(self.tmp)
        final = os.path.join(self.models_dir, VERSIONS, self.version)
        os.rename(self.tmp, final)
        _fsync_dir(os.path.join(self.models_dir, VERSIONS))
        if make_current:
            set_current(self.models_dir, self.version)
        return self.version

    def abort(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, *_):
        if exc_type is not None:
            self.abort()
        return False


def set_current(models_dir: str, version: str) -> None:
    """Atomically point ``CURRENT`` at an existing, valid version."""
    verify_version(models_dir, version)
    tmp = os.path.join(models_dir, f"{POINTER}.tmp-{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(version + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, os.path.join(models_dir, POINTER))
    _fsync_dir(models_dir)
    _log_published(models_dir, version)


def _log_published(models_dir: str, version: str) -> None:
    try:
        with open(os.path.join(models_dir, PUBLISHED_LOG), "a", encoding="utf-8") as fh:
            fh.write(f"{datetime.now(timezone.utc).isoformat(timespec='seconds')} {version}\n")
    except OSError as exc:  # the pointer moved; the log is a record, not the truth
        log.warning("cannot append to %s: %s", PUBLISHED_LOG, exc)


def published_versions(models_dir: str) -> set[str] | None:
    """Versions ``CURRENT`` ever pointed at (None for a folder without the log)."""
    try:
        with open(os.path.join(models_dir, PUBLISHED_LOG), encoding="utf-8",
                  errors="replace") as fh:
            return {line.split()[-1] for line in fh if line.strip()}
    except OSError:
        return None


def current_version(models_dir: str) -> str | None:
    """The version ``CURRENT`` names; None when there is no pointer yet.

    A pointer that exists but cannot be used (unreadable, not UTF-8, empty, not a
    version name) raises :class:`ModelLoadError` with one clear line, never a traceback."""
    try:
        with open(os.path.join(models_dir, POINTER), "rb") as fh:
            raw = fh.read(4096)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ModelLoadError(f"{models_dir}: cannot read {POINTER} ({exc.strerror})") from None
    try:
        name = raw.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise ModelLoadError(f"{models_dir}: {POINTER} is not UTF-8 text (corrupt pointer); "
                             f"repair it with 'xsell models promote VERSION'") from None
    if not name:
        raise ModelLoadError(f"{models_dir}: {POINTER} is empty (corrupt pointer); repair it "
                             f"with 'xsell models promote VERSION'")
    if "\n" in name or "\x00" in name or "/" in name or name.startswith("."):
        raise ModelLoadError(f"{models_dir}: {POINTER} does not hold a version name (corrupt "
                             f"pointer); repair it with 'xsell models promote VERSION'")
    return name


def version_path(models_dir: str, version: str) -> str:
    if not version or "/" in version or version.startswith("."):
        raise ModelLoadError(f"{version!r} is not a valid version name")
    return os.path.join(models_dir, VERSIONS, version)


def read_manifest(models_dir: str, version: str) -> dict:
    path = os.path.join(version_path(models_dir, version), MANIFEST)
    try:
        with open(path, encoding="utf-8") as fh:
            manifest = json.load(fh)
    except FileNotFoundError:
        raise ModelLoadError(f"version {version} has no {MANIFEST} (incomplete or not a version)") from None
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"version {version}: unreadable {MANIFEST} ({exc})") from None
    if manifest.get("schema_version") != SCHEMA_VERSION:
        raise ModelLoadError(
            f"version {version}: schema_version {manifest.get('schema_version')!r} is not "
            f"{SCHEMA_VERSION}; retrain with this xsell release"
        )
    return manifest


def verify_version(models_dir: str, version: str) -> dict:
    """Check every file against the manifest's sha256; return the manifest."""
    manifest = read_manifest(models_dir, version)
    base = version_path(models_dir, version)
    for name, digest in manifest.get("files", {}).items():
        path = os.path.join(base, name)
        if not os.path.exists(path):
            raise ModelLoadError(f"version {version}: file {name} is missing")
        if _sha256(path) != digest:
            raise ModelLoadError(
                f"version {version}: checksum mismatch for {name}; the file is corrupt, "
                f"promote another version with 'xsell models promote'"
            )
    return manifest


@dataclass
class LoadedVersion:
    """Arrays of a verified version, memory-mapped read-only."""

    version: str
    path: str
    manifest: dict

    def array(self, name: str, mmap: bool = True) -> np.ndarray:
        path = os.path.join(self.path, f"{name}.npy")
        try:
            return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise ModelLoadError(f"version {self.version}: cannot load {name}.npy ({exc})") from None

    def has(self, name: str) -> bool:
        return f"{name}.npy" in self.manifest.get("files", {}) or \
            f"{name}.indptr.npy" in self.manifest.get("files", {})

    def sparse(self, name: str) -> sp.csr_matrix:
        shape = tuple(int(x) for x in self.array(f"{name}.shape", mmap=False))
        m = sp.csr_matrix(
            (self.array(f"{name}.data"), self.array(f"{name}.indices"), self.array(f"{name}.indptr")),
            shape=shape,
        )
        # scipy copies indptr (one entry per row) when its dtype is not the indices'; the
        # copy is read-only like the mapped arrays, so no caller can change a version.
        m.indptr.flags.writeable = False
        return m

    def json(self, name: str):
        try:
            with open(os.path.join(self.path, f"{name}.json"), encoding="utf-8") as fh:
                return json.load(fh)
        except (OSError, ValueError) as exc:
            raise ModelLoadError(f"version {self.version}: cannot load {name}.json ({exc})") from None


def load_version(models_dir: str, version: str | None = None, verify: bool = True) -> LoadedVersion:
    """Open a version (default: the current one) after checking its checksums."""
    version = version or current_version(models_dir)
    if version is None:
        raise NoModelError(
            f"{models_dir}: no current model version yet; run 'xsell train --models {models_dir}'"
        )
    manifest = verify_version(models_dir, version) if verify else read_manifest(models_dir, version)
    return LoadedVersion(version, version_path(models_dir, version), manifest)


def list_versions(models_dir: str, verify: bool = True) -> list[dict]:
    """Every version folder, oldest first (by creation time), with its state (current / ok / broken).

    ``status`` is "broken" for a version that fails its checksums or misses a file
    (``verify``: every file is hashed), and ``published`` is true only for versions the
    pointer was moved to: a version whose gate passed but whose run died before
    publishing (an orphan) is not published (``gate_passed`` says what the gate said)."""
    root = os.path.join(models_dir, VERSIONS)
    if not os.path.isdir(root):
        return []
    try:
        current = current_version(models_dir)
    except ModelLoadError as exc:  # listing must still work on a folder with a bad pointer
        log.warning("%s", exc)
        current = None
    published = published_versions(models_dir)
    out = []
    for name in sorted(os.listdir(root)):
        entry = {"version": name, "current": name == current}
        try:
            manifest = verify_version(models_dir, name) if verify else \
                read_manifest(models_dir, name)
            gate_passed = manifest.get("published")
            entry.update(
                created_at=manifest.get("created_at"),
                published=(name == current or (name in published if published is not None
                                               else bool(gate_passed))),
                gate_passed=gate_passed,
                metrics=manifest.get("metrics", {}),
                status="ok",
            )
        except ModelLoadError as exc:
            entry.update(status="broken", published=False, error=str(exc))
        out.append(entry)
    # Names share a one-second prefix; the manifest's time orders versions of the same second.
    out.sort(key=lambda e: (e.get("created_at") or "", e["version"]))
    return out


def prune_versions(models_dir: str, keep: int) -> list[str]:
    """Delete all but the newest ``keep`` versions; never the current one."""
    if keep < 1:
        raise ValueError("keep must be at least 1")
    current = current_version(models_dir)
    names = [v["version"] for v in list_versions(models_dir, verify=False)]
    survivors = set(names[-keep:]) | ({current} if current else set())
    removed = []
    for name in names:
        if name not in survivors:
            shutil.rmtree(version_path(models_dir, name), ignore_errors=True)
            removed.append(name)
    return removed


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_temporary(models_dir: str) -> list[str]:
    """Remove half-written versions left by runs that died (their writer pid is gone)."""
    removed = []
    if not os.path.isdir(models_dir):
        return removed
    for name in os.listdir(models_dir):
        if not (name.startswith(".tmp-") or name.startswith(f"{POINTER}.tmp-")):
            continue
        try:
            pid = int(name.rsplit("-", 1)[1])
        except (IndexError, ValueError):
            pid = -1
        if pid > 0 and pid != os.getpid() and _pid_alive(pid):
            continue
        path = os.path.join(models_dir, name)
        if os.path.isdir(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            try:
                os.remove(path)
            except OSError:
                continue
        removed.append(name)
    return removed
