"""``xsell nightly``: the unattended retraining job a scheduler runs.

lock -> clean what dead runs left -> read -> train -> evaluate -> gate ->
publish -> prune -> run record. The exit code tells the scheduler what
happened (see ``EXIT_CODES`` and docs/NIGHTLY.md); the run record, a JSON
file under ``DIR/runs/``, tells an operator why.

Crash safety comes from the layout in :mod:`recsys.artifacts`: a version is
written into ``DIR/.tmp-<version>-<pid>/``, renamed into ``versions/`` when
complete, and only then does ``CURRENT`` move (an atomic rename). A run
killed at any point leaves ``CURRENT`` and the version it names untouched;
the next run removes the dead run's temporary folder and marks its run
record as died.
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import socket
import sys
import time
from datetime import datetime, timezone

import click

from recsys.artifacts import clean_temporary, current_version, prune_versions
from recsys.data import source_label
from recsys.exceptions import ConfigError, DataError, XsellError
from recsys.objectstore import is_remote
from training.console import echo_report, parse_columns, progress_factory

log = logging.getLogger(__name__)

EXIT_PUBLISHED = 0
EXIT_FAILURE = 1
EXIT_BAD_INPUT = 2
EXIT_NOT_PUBLISHED = 3
EXIT_LOCKED = 4
EXIT_CODES = {
    EXIT_PUBLISHED: "published: a new version passed the gate and is current",
    EXIT_FAILURE: "failed: nothing published (database down, disk full, crash); see the run record",
    EXIT_BAD_INPUT: "bad input or options: unreadable source, missing column, --strict rejections",
    EXIT_NOT_PUBLISHED: "trained but not published: the quality gate refused the new version",
    EXIT_LOCKED: "another nightly run holds the lock on the models folder; this one did nothing",
}

LOCK_FILE = ".lock"
RUNS = "runs"
KEEP_RUN_RECORDS = 200


class LockHeldError(XsellError):
    """Another run holds the models folder's lock."""


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _iso(t: datetime) -> str:
    return t.isoformat(timespec="seconds")


class ModelsLock:
    """An exclusive, non-blocking ``flock`` on ``DIR/.lock``, released when the process dies."""

    def __init__(self, models_dir: str):
        self.path = os.path.join(models_dir, LOCK_FILE)
        self.fd: int | None = None

    def acquire(self) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EACCES, errno.EAGAIN):
                os.close(fd)
                raise
            holder = os.read(fd, 200).decode("utf-8", "replace").strip() or "unknown"
            os.close(fd)
            raise LockHeldError(
                f"another nightly run holds {self.path} ({holder}); this run did nothing"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} on {socket.gethostname()} since {_iso(_now())}\n"
                 .encode())
        self.fd = fd

    def release(self) -> None:
        if self.fd is not None:
            # The file stays: deleting it would let two runs lock two different files.
            os.close(self.fd)
            self.fd = None


def _write_json_atomic(path: str, payload: dict) -> None:
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(payload, fh, indent=2, sort_keys=True, default=str)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError:
        try:
            os.remove(tmp)
        except OSError:
            pass
        raise


def write_run_record(models_dir: str, record: dict) -> str | None:
    """Write (or rewrite) the run's record; a failure to write is logged, never raised."""
    path = os.path.join(models_dir, RUNS, f"{record['run_id']}.json")
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        _write_json_atomic(path, record)
    except OSError as exc:
        log.error("cannot write the run record %s (%s)", path, exc.strerror or exc)
        return None
    return path


def _settle_dead_runs(models_dir: str) -> list[str]:
    """Mark records of runs that never finished (killed) as died; called under the lock."""
    root = os.path.join(models_dir, RUNS)
    settled = []
    if not os.path.isdir(root):
        return settled
    names = sorted(n for n in os.listdir(root) if n.endswith(".json"))
    for name in names:
        path = os.path.join(root, name)
        if ".tmp-" in name:
            continue
        try:
            with open(path, encoding="utf-8") as fh:
                record = json.load(fh)
        except (OSError, ValueError):
            continue
        if record.get("status") != "running" or record.get("pid") == os.getpid():
            continue
        # Only a lock holder writes "running", and we hold the lock: that run is dead.
        record.update(status="died", exit_code=None, settled_at=_iso(_now()),
                      message="the run ended without finishing (killed or crashed); "
                              "nothing it wrote was published")
        try:
            _write_json_atomic(path, record)
            settled.append(record["run_id"])
        except OSError:
            pass
    for name in names[:-KEEP_RUN_RECORDS]:
        try:
            os.remove(os.path.join(root, name))
        except OSError:
            pass
    for name in os.listdir(root):
        if ".tmp-" in name:
            try:
                os.remove(os.path.join(root, name))
            except OSError:
                pass
    return settled


def _failure_message(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return ("disk full while writing the new version; it was removed and the current "
                f"version is unchanged ({exc.filename or exc})")
    if isinstance(exc, OSError):
        return f"{exc.strerror or exc}{f': {exc.filename}' if exc.filename else ''}"
    return str(exc) or type(exc).__name__


def run_nightly(orders: str, models_dir: str, config: dict, *, orders_query: str | None = None,
                catalog: str | None = None, catalog_query: str | None = None,
                columns: dict | None = None, keep: int = 5, strict: bool = False,
                progress_factory=None, on_report=None) -> dict:
    """Run the whole job once; returns the run record (``exit_code`` says how it ended)."""
    from training.train import train

    started = _now()
    t0 = time.perf_counter()
    record: dict = {
        "run_id": f"{started.strftime('%Y%m%dT%H%M%S.%fZ')}-{os.getpid()}",
        "started_at": _iso(started), "pid": os.getpid(), "host": socket.gethostname(),
        "orders": source_label(orders), "orders_query": orders_query,
        "catalog": source_label(catalog) if catalog else None, "catalog_query": catalog_query,
        "keep": keep, "status": "running",
    }

    def finish(status: str, code: int, message: str) -> dict:
        ended = _now()
        record.update(status=status, exit_code=code, message=message, ended_at=_iso(ended),
                      duration_s=round(time.perf_counter() - t0, 3),
                      current_version=_safe_current(models_dir))
        record["record_path"] = write_run_record(models_dir, record)
        return record

    try:
        os.makedirs(models_dir, exist_ok=True)
    except OSError as exc:
        record.update(status="failed", exit_code=EXIT_FAILURE,
                      message=f"cannot create the models folder {models_dir} ({exc.strerror})")
        return record
    lock = ModelsLock(models_dir)
    try:
        lock.acquire()
    except LockHeldError as exc:
        return finish("locked", EXIT_LOCKED, str(exc))
    try:
        record["settled_dead_runs"] = _settle_dead_runs(models_dir)
        record["cleaned_temporary"] = clean_temporary(models_dir)
        record["previous_version"] = _safe_current(models_dir)
        write_run_record(models_dir, record)

        def capture(report, cat_report=None):
            record["data_report"] = {"orders": report.to_dict(),
                                     "catalog": cat_report.to_dict() if cat_report else None}
            if on_report:
                on_report(report, cat_report)

        try:
            summary = train(orders, models_dir, config, catalog=catalog, columns=columns,
                            strict=strict, orders_query=orders_query,
                            catalog_query=catalog_query, progress_factory=progress_factory,
                            on_report=capture)
        except (DataError, ConfigError) as exc:
            return finish("bad_input", EXIT_BAD_INPUT, str(exc))
        except (XsellError, OSError) as exc:
            return finish("failed", EXIT_FAILURE, _failure_message(exc))
        except Exception as exc:  # an unattended job must still leave a record
            log.exception("nightly run failed unexpectedly")
            return finish("failed", EXIT_FAILURE, f"unexpected {type(exc).__name__}: {exc}")

        record.update(version=summary["version"], published=summary["published"],
                      gate=summary["gate"], metrics=summary["metrics"],
                      baseline_popularity=summary["baseline_popularity"],
                      data=summary["data"], timings_s=summary["timings_s"])
        try:
            record["pruned"] = prune_versions(models_dir, keep)
        except (OSError, XsellError) as exc:
            record["pruned"] = []
            record["prune_error"] = _failure_message(exc)
        if summary["published"]:
            return finish("published", EXIT_PUBLISHED,
                          f"published version {summary['version']}: {summary['gate']['reason']}")
        return finish("not_published", EXIT_NOT_PUBLISHED,
                      f"version {summary['version']} trained but NOT published by the gate: "
                      f"{summary['gate']['reason']}")
    finally:
        lock.release()


def _run_nightly_remote(orders: str, url: str, config: dict, *, keep: int, **options) -> dict:
    """``run_nightly`` on a local mirror of ``s3://bucket/prefix`` (recsys.objectstore):
    the new version is uploaded (files, then manifest) and ``CURRENT`` moved only after
    the run published locally; then the store is pruned to ``keep`` versions. Any upload
    error is a failed run, and the store's current version stays."""
    from recsys.objectstore import S3Models, local_models

    try:
        with local_models(url) as folder:
            record = run_nightly(orders, folder, config, keep=keep, **options)
    except XsellError as exc:
        return {"status": "failed", "exit_code": EXIT_FAILURE, "models": url,
                "message": f"object store: {_failure_message(exc)}"}
    record["models"] = url
    if record.get("exit_code") in (EXIT_PUBLISHED, EXIT_NOT_PUBLISHED):
        try:
            record["pruned"] = S3Models(url).prune(keep)
        except XsellError as exc:
            record["prune_error"] = _failure_message(exc)
    return record


def _safe_current(models_dir: str) -> str | None:
    try:
        return current_version(models_dir)
    except XsellError:
        return None


def _needs_query(option: str, source: str | None, query: str | None) -> None:
    if source and "://" in source and not (query and query.strip()):
        raise DataError(
            f"--{option} {source_label(source)} is a database URL: also pass --{option}-query "
            f"with a SQL query or a table name (e.g. --{option}-query {option})"
        )


@click.command("nightly")
@click.option("--orders", required=True, envvar="XSELL_ORDERS", show_envvar=True,
              help="Orders: a file or a database URL (sqlite:///f.db, postgresql://user@host/db).")
@click.option("--orders-query", default=None,
              help="With a database URL: a SQL query or a table name.")
@click.option("--catalog", default=None, envvar="XSELL_CATALOG", show_envvar=True,
              help="Optional catalog: a file or a database URL.")
@click.option("--catalog-query", default=None, help="SQL query or table name for the catalog.")
@click.option("--models", "models_dir", required=True, type=click.Path(),
              help="Folder of model versions (the lock, versions and run records live here).")
@click.option("--columns", default=None, help="Column names that differ, e.g. item_id=product_id")
@click.option("--config", "config_path", default=None, help="TOML or JSON settings file.")
@click.option("--exclude-items", default=None,
              help="Non-product ids: a file with one id per line, or a regular expression.")
@click.option("--keep", default=5, show_default=True, type=click.IntRange(min=1),
              help="Versions to keep when pruning (the current one is always kept).")
@click.option("--strict", is_flag=True, help="Fail (exit 2) if any row is rejected.")
def nightly_command(orders, orders_query, catalog, catalog_query, models_dir, columns,
                    config_path, exclude_items, keep, strict):
    """Unattended retraining: lock, read, train, gate, publish, prune, run record.

    \b
    Exit codes:
      0  published
      1  failed (nothing published; the current version is unchanged)
      2  bad input or options
      3  trained but not published by the quality gate
      4  another run holds the lock
    """
    from training.config import load_config

    try:
        _needs_query("orders", orders, orders_query)
        _needs_query("catalog", catalog, catalog_query)
        overrides = {"data": {"exclude_items": exclude_items}} if exclude_items else None
        config = load_config(config_path, overrides)
        column_map = parse_columns(columns) or None
    except (DataError, ConfigError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_BAD_INPUT)
    if is_remote(models_dir):
        record = _run_nightly_remote(orders, models_dir, config, orders_query=orders_query,
                                     catalog=catalog, catalog_query=catalog_query,
                                     columns=column_map, keep=keep, strict=strict,
                                     progress_factory=progress_factory, on_report=echo_report)
    else:
        record = run_nightly(orders, models_dir, config, orders_query=orders_query,
                             catalog=catalog, catalog_query=catalog_query, columns=column_map,
                             keep=keep, strict=strict, progress_factory=progress_factory,
                             on_report=echo_report)
    code = record["exit_code"]
    prefix = "" if code in (EXIT_PUBLISHED, EXIT_NOT_PUBLISHED) else "error: "
    click.echo(f"{prefix}{record['message']} (exit {code})", err=True)
    sys.stderr.flush()
    click.echo(json.dumps(record, separators=(",", ":"), default=str))
    sys.exit(code)
