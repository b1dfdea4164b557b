"""gunicorn settings for ``xsell serve`` (``-c python:service.gunicorn_conf service.wsgi:app``).

Sizing: the request work is numpy on small vectors, CPU-bound and short, so
one worker per core (``XSELL_WORKERS``) with a few threads each (gthread:
keep-alive connections, and a slow client does not hold a whole worker).
BLAS gets one thread per process: many workers each starting a BLAS pool the
size of the machine would oversubscribe it many times.

The app (and the first model) is loaded once in the master and forked
(``preload_app``), so the workers share the interpreter's and the model's
pages; the arrays are memory-mapped besides. Threads do not survive fork, so
each worker starts its own model watcher in ``post_worker_init``.
"""

import atexit
import gc
import os
import shutil
import tempfile

# Before numpy is imported anywhere (the app is imported after this module).
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")


# malloc thresholds (bytes): blocks from this size on come from mmap and go back to the
# system when freed; the heap is trimmed above the trim threshold free. Sized to the model
# in ``when_ready`` unless set here.
_MMAP_THRESHOLD = int(os.environ.get("XSELL_MALLOC_MMAP_THRESHOLD") or 0)
_TRIM_THRESHOLD = int(os.environ.get("XSELL_MALLOC_TRIM_THRESHOLD") or 0)
_MIN_THRESHOLD = 128 * 1024


def _libc():
    try:
        import ctypes

        return ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc
        return None


def _limit_malloc_arenas(n: int = 2) -> None:
    """glibc gives every thread its own malloc arena; with gthread workers that is private
    memory per worker that the model does not need (same as MALLOC_ARENA_MAX=2; the
    thresholds below as MALLOC_MMAP_THRESHOLD_ / MALLOC_TRIM_THRESHOLD_)."""
    libc = _libc()
    if libc is None or not hasattr(libc, "mallopt"):
        return
    libc.mallopt(-8, n)  # M_ARENA_MAX
    # Fixed thresholds: without them glibc raises its mmap threshold after the first large
    # numpy temporaries are freed (up to 32 MiB) and each worker keeps up to twice that in
    # its own heap (private memory, about a quarter of a worker's on the demo).
    _set_malloc_thresholds(_MMAP_THRESHOLD or _MIN_THRESHOLD, _TRIM_THRESHOLD or _MIN_THRESHOLD)


def _set_malloc_thresholds(mmap_bytes: int, trim_bytes: int) -> None:
    libc = _libc()
    if libc is None or not hasattr(libc, "mallopt"):
        return
    libc.mallopt(-3, int(mmap_bytes))  # M_MMAP_THRESHOLD
    libc.mallopt(-1, int(trim_bytes))  # M_TRIM_THRESHOLD


def size_malloc_to_model(n_items: int) -> tuple[int, int]:
    """Thresholds for a model of ``n_items`` items, set in this process (and so in the
    workers forked from it). A request's largest arrays hold up to 8 bytes per item
    (candidate indexes, scores): they must come from the heap, or every request maps,
    page-faults and unmaps them afresh (on the demo, arrays of 160 KiB to 2 MiB under a
    128 KiB threshold cost 730 page faults a basket request, twice its CPU), and the heap
    keeps a few of them per thread. At least 128 KiB each (what the demo needs)."""
    mmap_bytes = _MMAP_THRESHOLD or max(_MIN_THRESHOLD, 16 * n_items)
    trim_bytes = _TRIM_THRESHOLD or max(_MIN_THRESHOLD, 64 * n_items)
    _set_malloc_thresholds(mmap_bytes, trim_bytes)
    return mmap_bytes, trim_bytes


_limit_malloc_arenas()

# gunicorn's own 400/414/431 answers in the contract's JSON, its warnings without the
# offending request text (service/gunicorn_errors.py).
from service.gunicorn_errors import install as _json_gunicorn_errors  # noqa: E402

_json_gunicorn_errors()

# prometheus_client's multiprocess mode: every worker writes its values here.
_OWN_METRICS_DIR = None
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    _OWN_METRICS_DIR = tempfile.mkdtemp(prefix="xsell-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = _OWN_METRICS_DIR
    _OWNER_PID = os.getpid()

    def _remove_own_metrics_dir() -> None:
        # Also on a failed start (on_exit is not called then); never from a worker.
        if os.getpid() == _OWNER_PID:
            shutil.rmtree(_OWN_METRICS_DIR, ignore_errors=True)

    atexit.register(_remove_own_metrics_dir)


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


bind = os.environ.get("XSELL_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("XSELL_WORKERS") or max(1, min(_cpus(), 16)))
worker_class = "gthread"
threads = int(os.environ.get("XSELL_THREADS") or 4)
preload_app = True
# A request never takes seconds; a worker silent for this long is stuck and is replaced.
timeout = int(os.environ.get("XSELL_WORKER_TIMEOUT") or 30)
# On SIGTERM: stop accepting, finish requests in flight for up to this long.
graceful_timeout = int(os.environ.get("XSELL_GRACEFUL_TIMEOUT") or 20)
keepalive = 5
backlog = 2048
# Request line and header limits (gunicorn answers 4xx above them).
limit_request_line = 8190
limit_request_fields = 100
limit_request_field_size = 8190
# Our JSON access log replaces gunicorn's.
accesslog = None
errorlog = "-"
loglevel = os.environ.get("XSELL_LOG_LEVEL", "info").lower()
proc_name = "xsell"
# gunicorn 27's runtime control socket: off (one fixed path per user would clash
# between instances on one host).
control_socket_disable = True


def when_ready(server):
    # In the master, before the first fork: build lazily created state once, shared by all.
    app = getattr(server.app, "callable", None)
    if app is not None and "xsell" in getattr(app, "extensions", {}):
        from service.app import warm_up

        model = app.extensions["xsell"].store.model
        if model is not None:
            size_malloc_to_model(len(model.recommender.items))
        warm_up(app)


def pre_fork(server, worker):
    # Objects allocated so far (the preloaded app and model) are never collected, so the
    # collector does not touch (and copy) their pages in every worker.
    gc.freeze()


def post_worker_init(worker):
    app = getattr(worker, "wsgi", None)
    state = getattr(app, "extensions", {}).get("xsell") if app is not None else None
    if state is None:
        return
    store = state.store
    store.check()  # the master may hold an older version than CURRENT by now
    store.ensure_watcher()
    store.install_sighup()


def child_exit(server, worker):
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server):
    if _OWN_METRICS_DIR:
        shutil.rmtree(_OWN_METRICS_DIR, ignore_errors=True)
