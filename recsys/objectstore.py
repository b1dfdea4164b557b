"""Model versions in an object store: ``--models s3://bucket/prefix``.

The layout under the prefix is the local one (:mod:`recsys.artifacts`)::

    s3://bucket/prefix/
      CURRENT                          one line: the current version's name
      versions/<version>/manifest.json with the sha256 of every file
      versions/<version>/*.npy, *.json the arrays
      runs/<run id>.json               nightly run records

Object stores have no rename, so the guarantees come from the order of writes:
a publisher uploads every file of a version, then its manifest, and only then
overwrites ``CURRENT`` (one PUT: readers see the old pointer or the new one). A
reader follows ``CURRENT`` to a manifest, downloads the files it lists into a
local cache folder (a temporary folder, renamed when complete), checks every
sha256 against the manifest and then memory-maps the arrays from local disk. A
version whose manifest is missing (half-uploaded) or whose files do not match
it is never loaded; the service keeps the model it has.

Endpoint, region and credentials come from boto3's usual sources: ``AWS_ENDPOINT_URL``
(MinIO, GCS's S3 interoperability, a local test server), ``AWS_REGION`` /
``AWS_DEFAULT_REGION``, ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` /
``AWS_SESSION_TOKEN``, ``AWS_PROFILE``, instance roles. The local cache lives in
``XSELL_MODEL_CACHE`` (default ``~/.cache/xsell/models``).

Commands that write (train, nightly, catalog update) work on a local mirror of the
prefix (:func:`local_models`): the current version is downloaded first (the gate
compares against it), the command runs as on a folder, and new versions, then the
pointer, are uploaded at the end. Run one publisher per prefix (the nightly
lock is a local file lock; an object store offers no portable lock).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import threading
from urllib.parse import urlparse

from .artifacts import MANIFEST, POINTER, SCHEMA_VERSION, VERSIONS, current_version
from .exceptions import ModelLoadError

log = logging.getLogger(__name__)

SCHEME = "s3://"
RUNS = "runs"
# Versions kept in a replica's local cache (the served one is never removed).
CACHE_KEEP = 3


def is_remote(models: str | None) -> bool:
    return bool(models) and str(models).startswith(SCHEME)


def _client():
    try:
        import boto3
        from botocore.config import Config
    except ImportError:  # pragma: no cover - boto3 is a dependency
        raise ModelLoadError("s3:// models need boto3: pip install boto3") from None
    return boto3.client("s3", config=Config(retries={"max_attempts": 5, "mode": "standard"}))


class S3Models:
    """One ``s3://bucket/prefix`` and the local cache its versions are downloaded into."""

    def __init__(self, url: str, cache_root: str | None = None, client=None):
        parsed = urlparse(url)
        if parsed.scheme != "s3" or not parsed.netloc:
            raise ModelLoadError(f"{url!r} is not an s3://bucket/prefix URL")
        self.url = url.rstrip("/")
        self.bucket = parsed.netloc
        self.prefix = parsed.path.strip("/")
        root = cache_root or os.environ.get("XSELL_MODEL_CACHE") or os.path.join(
            os.path.expanduser("~"), ".cache", "xsell", "models")
        self.cache = os.path.join(root, self.bucket, *(self.prefix.split("/") if self.prefix
                                                       else []), "_")
        self._client = client
        self._lock = threading.Lock()

    # --------------------------------------------------------------- plumbing
    @property
    def client(self):
        if self._client is None:
            self._client = _client()
        return self._client

    def key(self, *parts: str) -> str:
        return "/".join(p for p in (self.prefix, *parts) if p)

    def _error(self, what: str, exc: Exception) -> ModelLoadError:
        # The message names the bucket and key, never credentials.
        return ModelLoadError(f"{self.url}: cannot {what} ({type(exc).__name__}: {exc})")

    def _get(self, key: str) -> bytes | None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404", "NotFound"):
                return None
            raise self._error(f"read {key}", exc) from None
        except BotoCoreError as exc:
            raise self._error(f"read {key}", exc) from None

    def _put(self, key: str, data: bytes) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client.put_object(Bucket=self.bucket, Key=key, Body=data)
        except (BotoCoreError, ClientError) as exc:
            raise self._error(f"write {key}", exc) from None

    def _upload(self, path: str, key: str) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client.upload_file(path, self.bucket, key)
        except (BotoCoreError, ClientError, OSError) as exc:
            raise self._error(f"upload {key}", exc) from None

    def _list(self, prefix: str, delimiter: str | None = None):
        from botocore.exceptions import BotoCoreError, ClientError

        kwargs = {"Bucket": self.bucket, "Prefix": prefix}
        if delimiter:
            kwargs["Delimiter"] = delimiter
        try:
            for page in self.client.get_paginator("list_objects_v2").paginate(**kwargs):
                yield page
        except (BotoCoreError, ClientError) as exc:
            raise self._error(f"list {prefix}", exc) from None

    # ---------------------------------------------------------------- reading
    def current(self) -> str | None:
        data = self._get(self.key(POINTER))
        if data is None:
            return None
        name = data.decode("utf-8", "replace").strip()
        return name or None

    def version_names(self) -> list[str]:
        root = self.key(VERSIONS) + "/"
        names = []
        for page in self._list(root, "/"):
            for entry in page.get("CommonPrefixes", []):
                names.append(entry["Prefix"][len(root):].rstrip("/"))
        return sorted(names)

    def manifest(self, version: str) -> dict:
        _check_name(version)
        data = self._get(self.key(VERSIONS, version, MANIFEST))
        if data is None:
            raise ModelLoadError(f"version {version} has no {MANIFEST} in {self.url} "
                                 "(incomplete upload or not a version)")
        try:
            manifest = json.loads(data)
        except ValueError as exc:
            raise ModelLoadError(f"version {version}: unreadable {MANIFEST} ({exc})") from None
        if manifest.get("schema_version") != SCHEMA_VERSION:
            raise ModelLoadError(f"version {version}: schema_version "
                                 f"{manifest.get('schema_version')!r} is not {SCHEMA_VERSION}")
        return manifest

    def fetch(self, version: str) -> str:
        """A local models folder holding ``version`` verified (downloaded if not cached);
        ``recsys.artifacts.load_version(folder, version)`` then memory-maps it."""
        _check_name(version)
        final = os.path.join(self.cache, VERSIONS, version)
        if os.path.exists(os.path.join(final, MANIFEST)):
            return self.cache
        manifest = self.manifest(version)
        os.makedirs(os.path.join(self.cache, VERSIONS), exist_ok=True)
        tmp = os.path.join(self.cache, f".tmp-{version}-{os.getpid()}-{threading.get_ident()}")
        shutil.rmtree(tmp, ignore_errors=True)
        os.makedirs(tmp)
        try:
            for name, digest in sorted(manifest.get("files", {}).items()):
                _check_name(name)
                self._download(self.key(VERSIONS, version, name), os.path.join(tmp, name),
                               version, name, digest)
            with open(os.path.join(tmp, MANIFEST), "w", encoding="utf-8") as fh:
                json.dump(manifest, fh, indent=2, sort_keys=True)
            try:
                os.rename(tmp, final)
            except OSError:
                if not os.path.exists(os.path.join(final, MANIFEST)):
                    raise
                # Another worker finished the same download first: use its copy.
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        self._trim_cache(keep=version)
        return self.cache

    def _download(self, key: str, path: str, version: str, name: str, digest: str) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        sha = hashlib.sha256()
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=key)["Body"]
            with open(path, "wb") as fh:
                for chunk in iter(lambda: body.read(1 << 20), b""):
                    sha.update(chunk)
                    fh.write(chunk)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404", "NotFound"):
                raise ModelLoadError(f"version {version}: file {name} is missing") from None
            raise self._error(f"download {key}", exc) from None
        except BotoCoreError as exc:
            raise self._error(f"download {key}", exc) from None
        if sha.hexdigest() != digest:
            raise ModelLoadError(f"version {version}: checksum mismatch for {name}; the object "
                                 "is corrupt, promote another version with 'xsell models "
                                 "promote'")

    def _trim_cache(self, keep: str) -> None:
        """Keep the newest ``CACHE_KEEP`` cached versions (by download time) and ``keep``.
        A process still serving a removed one keeps reading its open memory maps."""
        root = os.path.join(self.cache, VERSIONS)
        try:
            names = sorted(os.listdir(root),
                           key=lambda n: os.path.getmtime(os.path.join(root, n)))
        except OSError:
            return
        for name in names[:-CACHE_KEEP]:
            if name != keep:
                shutil.rmtree(os.path.join(root, name), ignore_errors=True)

    # ---------------------------------------------------------------- writing
    def upload_version(self, folder: str, version: str) -> None:
        """Upload a complete local version: every file, then its manifest (last)."""
        base = os.path.join(folder, VERSIONS, version)
        with open(os.path.join(base, MANIFEST), encoding="utf-8") as fh:
            manifest = json.load(fh)
        for name in sorted(manifest.get("files", {})):
            self._upload(os.path.join(base, name), self.key(VERSIONS, version, name))
        self._upload(os.path.join(base, MANIFEST), self.key(VERSIONS, version, MANIFEST))

    def set_current(self, version: str) -> None:
        """Point ``CURRENT`` at ``version`` after downloading it and checking every checksum."""
        self.fetch(version)
        self._put(self.key(POINTER), (version + "\n").encode())

    def list_versions(self) -> list[dict]:
        """As :func:`recsys.artifacts.list_versions`, from the object store."""
        current = self.current()
        out = []
        for name in self.version_names():
            entry = {"version": name, "current": name == current}
            try:
                manifest = self.manifest(name)
                entry.update(created_at=manifest.get("created_at"),
                             published=manifest.get("published"),
                             metrics=manifest.get("metrics", {}), status="ok")
            except ModelLoadError as exc:
                entry.update(status="broken", error=str(exc))
            out.append(entry)
        out.sort(key=lambda e: (e.get("created_at") or "", e["version"]))
        return out

    def prune(self, keep: int) -> list[str]:
        """Delete all but the newest ``keep`` versions; never the current one."""
        if keep < 1:
            raise ValueError("keep must be at least 1")
        current = self.current()
        names = [v["version"] for v in self.list_versions()]
        survivors = set(names[-keep:]) | ({current} if current else set())
        removed = []
        for name in names:
            if name in survivors:
                continue
            # The manifest first: a half-deleted version is then "broken", never loadable.
            self._delete([self.key(VERSIONS, name, MANIFEST)])
            keys = [obj["Key"] for page in self._list(self.key(VERSIONS, name) + "/")
                    for obj in page.get("Contents", [])]
            self._delete(keys)
            removed.append(name)
        return removed

    def _delete(self, keys: list[str]) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        for start in range(0, len(keys), 1000):
            batch = [{"Key": k} for k in keys[start:start + 1000]]
            try:
                self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": batch})
            except (BotoCoreError, ClientError) as exc:
                raise self._error("delete objects", exc) from None

    def push(self, folder: str, pulled_pointer: str | None) -> list[str]:
        """Upload the versions of a local mirror the store lacks (files, then manifest),
        then run records, then move ``CURRENT`` if the mirror's pointer moved."""
        remote = set(self.version_names())
        complete = {n for n in remote if self._get(self.key(VERSIONS, n, MANIFEST)) is not None}
        uploaded = []
        root = os.path.join(folder, VERSIONS)
        for name in sorted(os.listdir(root)) if os.path.isdir(root) else []:
            if name not in complete and os.path.exists(os.path.join(root, name, MANIFEST)):
                self.upload_version(folder, name)
                uploaded.append(name)
        runs = os.path.join(folder, RUNS)
        for name in sorted(os.listdir(runs)) if os.path.isdir(runs) else []:
            if name.endswith(".json"):
                self._upload(os.path.join(runs, name), self.key(RUNS, name))
        pointer = current_version(folder)
        if pointer and pointer != pulled_pointer:
            now = self.current()
            if now != pulled_pointer:
                log.warning("%s: CURRENT moved from %s to %s while this run worked; "
                            "pointing it at %s", self.url, pulled_pointer, now, pointer)
            self._put(self.key(POINTER), (pointer + "\n").encode())
        return uploaded


def _check_name(name: str) -> None:
    if not name or "/" in name or name.startswith(".") or "\\" in name:
        raise ModelLoadError(f"{name!r} is not a valid version or file name")


class LocalModels:
    """A local models folder, behind the interface the service's store uses."""

    def __init__(self, folder: str):
        self.url = folder

    def current(self) -> str | None:
        return current_version(self.url)

    def fetch(self, version: str) -> str:
        return self.url


def open_models(models: str):
    """:class:`S3Models` for an ``s3://`` URL, :class:`LocalModels` for a folder."""
    return S3Models(models) if is_remote(models) else LocalModels(models)


@contextlib.contextmanager
def local_models(models: str, version: str | None = None):
    """A local folder for a command: ``models`` itself, or for ``s3://`` a mirror holding
    the current version (and ``version``), whose new versions and pointer move are
    uploaded when the block ends without an exception."""
    if not is_remote(models):
        yield models
        return
    store = S3Models(models)
    folder = store.cache
    os.makedirs(os.path.join(folder, VERSIONS), exist_ok=True)
    pulled = store.current()
    for name in {pulled, version} - {None}:
        store.fetch(name)
    # The mirror's pointer is the store's (the gate and catalog updates read it).
    pointer = os.path.join(folder, POINTER)
    if pulled:
        with open(pointer + ".tmp", "w", encoding="utf-8") as fh:
            fh.write(pulled + "\n")
        os.replace(pointer + ".tmp", pointer)
    elif os.path.exists(pointer):
        os.remove(pointer)
    yield folder
    store.push(folder, pulled)
