"""Object store: time from a publish to every one of 3 replicas answering the new version,
``s3://`` (moto's S3 server on loopback) against a shared local folder, in the same run.

    python bench/objectstore_bench.py [--models DIR] [--replicas 3] [--interval 1]

Trains the demo model unless ``--models`` names a folder holding one. Starts the
replicas (gunicorn, one worker each, ``XSELL_RELOAD_INTERVAL`` seconds between
pointer checks; each s3 replica with its own local cache), publishes a copy of
the current version under a new name (s3: every file, then the manifest, then
``CURRENT``; folder: the trainer's rename + pointer move), and polls every
replica until all answer with the new version. Three publishes per setup; the
median is printed. The s3 figure includes each replica's download and checksum
of the whole version (the demo model: about 200 MB).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.join(REPO, "bench"))

from serve_bench import Gunicorn, demo_model, free_port, get  # noqa: E402

from recsys.artifacts import current_version  # noqa: E402
from recsys.objectstore import S3Models  # noqa: E402
from support.versions import publish_copy  # noqa: E402


def until_all_new(replicas, version: str, timeout: float = 300) -> float:
    start = time.perf_counter()
    pending = set(range(len(replicas)))
    while pending and time.perf_counter() - start < timeout:
        for n in list(pending):
            try:
                _, body = get(replicas[n].port, "/v1/model")
                if body.get("version") == version or body.get("model_version") == version:
                    pending.discard(n)
            except OSError:
                pass
        time.sleep(0.02)
    if pending:
        raise TimeoutError(f"replicas {sorted(pending)} never answered with {version}")
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models")
    parser.add_argument("--replicas", type=int, default=3)
    parser.add_argument("--interval", type=float, default=1.0)
    parser.add_argument("--publishes", type=int, default=3)
    args = parser.parse_args()
    import logging

    import boto3
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no line per S3 request

    work = tempfile.mkdtemp(prefix="xsell-s3-bench-")
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    os.environ.update(AWS_ENDPOINT_URL=f"http://127.0.0.1:{port}", AWS_ACCESS_KEY_ID="bench",
                      AWS_SECRET_ACCESS_KEY="bench", AWS_DEFAULT_REGION="us-east-1",
                      XSELL_MODEL_CACHE=os.path.join(work, "publisher-cache"))
    boto3.client("s3").create_bucket(Bucket="bench")
    url = "s3://bench/models"
    replicas = []
    try:
        source = demo_model(args.models, work)
        folder = os.path.join(work, "folder")
        shutil.copytree(source, folder)
        version = current_version(folder)
        store = S3Models(url)
        store.upload_version(folder, version)
        store._put(store.key("CURRENT"), (version + "\n").encode())
        log = os.path.join(work, "gunicorn.log")
        results = {}
        for label, models in (("local folder", folder), ("s3 (moto)", url)):
            replicas = []
            for n in range(args.replicas):
                env = {"XSELL_MODELS_DIR": models, "XSELL_RELOAD_INTERVAL": str(args.interval),
                       "XSELL_ACCESS_LOG": "false",
                       "XSELL_MODEL_CACHE": os.path.join(work, f"cache-{label[:2]}-{n}")}
                replicas.append(Gunicorn("service.wsgi:app", 1, env, log))
            for r in replicas:
                r.wait("/readyz", timeout=300)
            times = []
            for p in range(args.publishes):
                new = version[:-4] + f"{label[0]}{p:03d}"
                if models == url:
                    # The copy is made in the (no longer served) folder, then uploaded.
                    publish_copy(folder, version, new)
                    start = time.perf_counter()
                    store.upload_version(folder, new)
                    store._put(store.key("CURRENT"), (new + "\n").encode())
                else:
                    start = time.perf_counter()
                    publish_copy(folder, version, new)
                times.append(time.perf_counter() - start + until_all_new(replicas, new))
            results[label] = times
            for r in replicas:
                r.stop()
            replicas = []
            print(f"{label:<13} publish -> all {args.replicas} replicas answer the new "
                  f"version: median {statistics.median(times):.2f} s "
                  f"({', '.join(f'{t:.2f}' for t in times)}; poll interval "
                  f"{args.interval:g} s)", flush=True)
        ratio = statistics.median(results["s3 (moto)"]) / statistics.median(
            results["local folder"])
        print(f"s3 / local folder: x{ratio:.2f}")
        return 0
    finally:
        for r in replicas:
            r.stop()
        server.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
