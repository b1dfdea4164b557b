"""The Spark engine vs the local engine, same data, same config, same run.

For each data set, ``xsell train`` with ``--engine local`` and with
``--engine spark`` (local mode: ``--master``, default local[2]): wall time,
peak memory (the whole process tree, sampled: the Python driver plus
Spark's JVM), the trainer's stages, the Spark engine's own steps, and the
largest object the driver collected (it never collects order lines: the
largest is an aggregate the model holds, typically the customer x item
history). Prints the ratio Spark / local of each.

    python bench/spark_bench.py                         # Instacart + 2M synthetic lines
    python bench/spark_bench.py --synthetic 2000000,20000000 --skip-instacart
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench._common import REPO, SHARED_DATA, xsell_args  # noqa: E402

INSTACART = os.path.join(SHARED_DATA, "instacart", "order_products__train.parquet")


def tree_sample(pid: int) -> tuple[int, dict[int, float]]:
    """(resident bytes, {pid: CPU seconds so far}) of ``pid`` and all its descendants
    (Linux /proc): the Python driver and Spark's JVM."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    cpu: dict[int, float] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(name))
            rss[int(name)] = int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
            cpu[int(name)] = (int(fields[11]) + int(fields[12])) / tick
        except (OSError, IndexError, ValueError):
            continue
    total, seen, todo = 0, {}, [pid]
    while todo:
        p = todo.pop()
        total += rss.get(p, 0)
        seen[p] = cpu.get(p, 0.0)
        todo.extend(children.get(p, []))
    return total, seen


def measured(args: list[str], env: dict, log: str | None = None
             ) -> tuple[float, float, float, str, str]:
    """(wall s, peak tree RSS GiB, tree CPU s, stdout, stderr) of one command.

    CPU seconds are the last sample of each process of the tree (every 0.5 s), so a
    process's final half second may be missed; on a shared machine they say more
    than the wall time."""
    full_env = dict(os.environ, OPENBLAS_NUM_THREADS="1", PYTHONPATH=REPO, **env)
    start = time.perf_counter()
    # stderr to ``log`` when given: the trainer's progress is visible while it runs.
    err_file = open(log, "w", encoding="utf-8") if log else None
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=err_file or subprocess.PIPE,
                            env=full_env, cwd=REPO, text=True)
    peak = [0]
    cpu: dict[int, float] = {}

    def sample():
        while proc.poll() is None:
            rss, seen = tree_sample(proc.pid)
            peak[0] = max(peak[0], rss)
            for p, t in seen.items():
                cpu[p] = max(cpu.get(p, 0.0), t)
            time.sleep(0.5)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, err = proc.communicate()
    wall = time.perf_counter() - start
    sampler.join()
    if err_file:
        err_file.close()
        with open(log, encoding="utf-8") as fh:
            err = fh.read()
    if proc.returncode != 0:
        sys.stderr.write(err[-4000:])
        raise SystemExit(f"command failed ({proc.returncode}): {' '.join(args)}")
    return wall, peak[0] / 2 ** 30, sum(cpu.values()), out, err


def run_pair(name: str, orders: str, columns: str | None, config: str, master: str,
             engines=("local", "spark"), log_dir: str | None = None) -> dict:
    base = ["-v", "train", "--orders", orders, "--config", config]
    if columns:
        base += ["--columns", columns]
    out = {"data": name}
    for engine in engines:
        with tempfile.TemporaryDirectory() as models, tempfile.TemporaryDirectory() as tmp:
            report_path = os.path.join(tmp, "spark.json")
            extra = ["--engine", engine] + (["--spark-master", master] if engine == "spark"
                                            else [])
            log = os.path.join(log_dir, f"{engine}.log") if log_dir else None
            wall, peak, cpu, stdout, _ = measured(xsell_args(*base, "--models", models, *extra),
                                                  {"XSELL_SPARK_REPORT": report_path}, log)
            summary = json.loads(stdout.strip().splitlines()[-1])
            out[engine] = {"wall_s": round(wall, 1), "cpu_s": round(cpu, 1),
                           "peak_gib": round(peak, 2), "load_after": os.getloadavg()[0],
                           "stages_s": summary["timings_s"], "metrics": summary["metrics"],
                           "lines": summary["data"]["rows_used"]}
            if engine == "spark" and os.path.exists(report_path):
                with open(report_path, encoding="utf-8") as fh:
                    out[engine]["engine"] = json.load(fh)
            e = out[engine]
            print(f"  [{name}] {engine}: {e['wall_s']}s wall, {e['cpu_s']}s CPU, "
                  f"peak {e['peak_gib']} GiB, load {e['load_after']:.1f}", flush=True)
    return out


def show(r: dict) -> None:
    if "local" not in r or "spark" not in r:
        return
    local, spark = r["local"], r["spark"]
    print(f"\n== {r['data']}: {local['lines']:,} lines")
    for engine in ("local", "spark"):
        e = r[engine]
        stages = ", ".join(f"{k} {v:.1f}s" for k, v in e["stages_s"].items())
        print(f"  {engine:<5}  {e['wall_s']:8.1f}s wall  {e['cpu_s']:8.1f}s CPU  "
              f"peak {e['peak_gib']:.2f} GiB  load {e['load_after']:.1f}  ({stages})")
    print(f"  ratio spark/local: wall {spark['wall_s'] / local['wall_s']:.1f}x, "
          f"CPU {spark['cpu_s'] / max(local['cpu_s'], 1e-9):.1f}x, "
          f"peak memory {spark['peak_gib'] / max(local['peak_gib'], 1e-9):.1f}x")
    eng = spark.get("engine") or {}
    steps = eng.get("steps_s") or {}
    if steps:
        print("  spark engine steps: " + ", ".join(f"{k} {v:.1f}s" for k, v in steps.items()))
    collected = eng.get("collected") or []
    if collected:
        top = collected[0]
        print(f"  largest object collected to the driver: {top['what']} "
              f"({top['rows']:,} rows, {top['bytes'] / 2 ** 20:.1f} MiB); order lines: "
              f"{local['lines']:,} (never collected)")
    for kind, m in local["metrics"].items():
        keys = [k for k in m if k.endswith("@10") and k[0] in "nh"]
        pairs = ", ".join(f"{k} {m[k]:.4f} vs {spark['metrics'].get(kind, {}).get(k, 0):.4f}"
                          for k in keys)
        print(f"  {kind}: local vs spark {pairs}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--synthetic", default="2000000",
                        help="Comma-separated synthetic line counts (bench/synth.py).")
    parser.add_argument("--skip-instacart", action="store_true")
    parser.add_argument("--master", default="local[2]")
    parser.add_argument("--json", default=None, help="Also write the results here.")
    parser.add_argument("--ease", action="store_true",
                        help="Keep EASE in both engines. Off by default: above ease.max_items "
                             "kept items (the synthetic 2M lines have 10,000, Instacart "
                             "~30,000) the local engine fits the large-catalogue EASE and the "
                             "Spark engine none, so the two would not fit the same models.")
    parser.add_argument("--driver-memory", default="4g")
    parser.add_argument("--engines", default="local,spark",
                        help="Which engines to run (one size's pair may not fit one run).")
    parser.add_argument("--log-dir", default=None,
                        help="Write each engine's progress (xsell -v) here while it runs.")
    parser.add_argument("--shuffle-partitions", default="8")
    args = parser.parse_args()

    from bench.synth import generate

    results = []
    with tempfile.TemporaryDirectory() as tmp:
        config = os.path.join(tmp, "config.json")
        with open(config, "w", encoding="utf-8") as fh:
            settings = {"spark": {"driver_memory": args.driver_memory,
                                  "conf": {"spark.sql.shuffle.partitions":
                                           args.shuffle_partitions}}}
            if not args.ease:
                settings["ease"] = {"enabled": False}
            json.dump(settings, fh)
        if not args.skip_instacart and os.path.exists(INSTACART):
            results.append(run_pair("Instacart (order_products__train)", INSTACART,
                                    "item_id=product_id", config, args.master,
                                    args.engines.split(","), args.log_dir))
            show(results[-1])
            save(results, args.json)
        for n in [int(x) for x in args.synthetic.split(",") if x]:
            path = os.path.join(tmp, f"synth_{n}.parquet")
            generate(path, n, customers=max(1000, n // 20), items=max(500, n // 200))
            results.append(run_pair(f"synthetic {n:,} lines", path, None, config, args.master,
                                    args.engines.split(","), args.log_dir))
            show(results[-1])
            save(results, args.json)
            os.remove(path)
    if len(results) > 1 and all("synthetic" in r["data"] for r in results[-2:]):
        a, b = results[-2], results[-1]
        for engine in ("local", "spark"):
            if engine in a and engine in b:
                grow = b[engine]["lines"] / a[engine]["lines"]
                print(f"\n{grow:.1f}x the lines: {engine} "
                      f"{b[engine]['wall_s'] / a[engine]['wall_s']:.1f}x the wall time, "
                      f"{b[engine]['cpu_s'] / a[engine]['cpu_s']:.1f}x the CPU time")


def save(results: list, path: str | None) -> None:
    if path:
        with open(path, "w", encoding="utf-8") as fh:
            json.dump(results, fh, indent=1)


if __name__ == "__main__":
    main()
