"""The ``xsell`` command line.

Human-readable output (data report, progress, tables) goes to stderr; the
machine-readable result (``train``'s one-line JSON summary) is the last line
of stdout. Exit codes: 0 success, 1 unexpected failure, 2 bad input or
options (including ``--strict`` rejections).
"""

from __future__ import annotations

import json
import logging
import sys

import click

from recsys.exceptions import ConfigError
from recsys.kinds import EXPORT_KINDS
from recsys.objectstore import is_remote, local_models, open_models
from training.console import (
    echo_report,
    handle_errors,
    parse_columns,
    progress_factory,
    training_engine,
)
from training.nightly import nightly_command


@click.group()
@click.version_option(package_name="xsell")
@click.option("-v", "--verbose", is_flag=True, help="Log progress details to stderr.")
def main(verbose: bool) -> None:
    """xsell: cross-sell and upsell recommendations from purchase histories."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


orders_option = click.option("--orders", required=True,
                             help="Orders: .csv, .csv.gz, .parquet, or a database URL.")
catalog_option = click.option("--catalog", default=None, help="Optional item catalog (same formats).")
columns_option = click.option("--columns", default=None,
                              help="Column names that differ, e.g. customer_id=CustomerID,item_id=StockCode")
models_option = click.option("--models", "models_dir", required=True, type=click.Path(),
                             help="Folder of model versions, or s3://bucket/prefix.")


@main.command()
@orders_option
@catalog_option
@columns_option
@models_option
@click.option("--config", "config_path", default=None, help="TOML or JSON settings file.")
@click.option("--engine", type=click.Choice(["local", "spark"]), default="local", show_default=True)
@click.option("--spark-master", default=None,
              help="With --engine spark: the Spark master URL (default: [spark] master, local[*]).")
@click.option("--exclude-items", default=None,
              help="Non-product ids: a file with one id per line, or a regular expression.")
@click.option("--strict", is_flag=True, help="Fail (exit 2) if any row is rejected.")
@click.option("--orders-query", default=None, help="SQL query or table name with a database URL.")
@click.option("--catalog-query", default=None, help="SQL query or table name for the catalog.")
@handle_errors
def train(orders, catalog, columns, models_dir, config_path, engine, spark_master,
          exclude_items, strict, orders_query, catalog_query):
    """Train all models, evaluate on a temporal holdout, publish if the gate passes."""
    from training.config import load_config
    from training.preflight import check_models_writable
    from training.train import train as run_train

    overrides = {"data": {"exclude_items": exclude_items}} if exclude_items else None
    config = load_config(config_path, overrides)
    # s3://: a mirror, uploaded at the end
    with training_engine(engine, spark_master, config) as chosen, \
            local_models(models_dir) as folder:
        check_models_writable(folder)  # before anything is read or fitted
        summary = run_train(
            orders, folder, config, catalog=catalog, columns=parse_columns(columns) or None,
            strict=strict, orders_query=orders_query, catalog_query=catalog_query,
            progress_factory=progress_factory, on_report=echo_report, engine=chosen,
        )
    gate = summary["gate"]
    click.echo(f"{'published' if summary['published'] else 'NOT published'} "
               f"version {summary['version']}: {gate['reason']}", err=True)
    sys.stderr.flush()
    click.echo(json.dumps(summary, separators=(",", ":"), default=str))


_OPTION_TYPES = {"price": float, "int": int, "number": float, "id": str, "ids": str}


def filter_options(func):
    """Business filters and relevance floor options, one per field of
    :data:`recsys.kinds.FILTER_FIELDS` (the service's query parameters)."""
    from recsys.kinds import FILTER_FIELDS

    for field in reversed(FILTER_FIELDS):
        text = field.help[0].upper() + field.help[1:] + "."
        if field.type == "categories":
            option = click.option(field.option, field.attribute, multiple=True, help=text)
        elif field.type == "bool":
            option = click.option(field.option, is_flag=True, help=text)
        else:
            option = click.option(field.option, type=_OPTION_TYPES[field.type], default=None,
                                  help=text)
        func = option(func)
    return func


def build_filters(**values):
    """A validated Filters from the filter options (one per field of
    :data:`recsys.kinds.FILTER_FIELDS`, by its ``Filters`` attribute), or None when none
    was given."""
    from recsys.kinds import FILTER_FIELDS
    from recsys.rules import Filters

    given = {}
    for field in FILTER_FIELDS:
        value = values[field.attribute]
        if field.type == "categories":
            value = list(value)
        elif field.type == "ids":
            value = [x.strip() for x in (value or "").split(",") if x.strip()]
        given[field.attribute] = value
    filters = Filters(**given)
    if filters == Filters():
        return None
    return filters.validate()


@main.command()
@models_option
@click.option("--kind", required=True, type=click.Choice(list(EXPORT_KINDS)))
@click.option("--input", "input_path", default=None, type=click.Path(),
              help="Query file (see the contract); all customers/items when omitted.")
@click.option("--limit", default=10, show_default=True, type=int)
@click.option("--out", "out_path", required=True, type=click.Path(), help="Output .jsonl or .csv")
@click.option("--slim", is_flag=True,
              help="Only item_id and score per recommendation (no name, price, category, "
                   "reason): smaller files.")
@filter_options
@handle_errors
def export(models_dir, kind, input_path, limit, out_path, slim, **filter_values):
    """Batch recommendations as JSON Lines or CSV, one record per query."""
    from recsys.artifacts import load_version
    from recsys.recommender import Recommender
    from training.export import export as run_export

    filters = build_filters(**filter_values)
    source = open_models(models_dir)
    version = source.current()
    rec = Recommender.load(load_version(source.fetch(version) if version else models_dir,
                                        version))
    n = run_export(rec, kind, out_path, input_path, limit, filters=filters, slim=slim)
    click.echo(f"wrote {n} records to {out_path} (model {rec.version})", err=True)


@main.group()
def catalog():
    """Item catalog: refresh prices, stock and metadata without retraining."""


@catalog.command("update")
@models_option
@click.option("--catalog", "catalog_path", required=True, help="Catalog file or database URL.")
@columns_option
@click.option("--catalog-query", default=None, help="SQL query or table name with a database URL.")
@click.option("--from-version", "base_version", default=None,
              help="Version to start from (default: the current one).")
@click.option("--strict", is_flag=True, help="Fail (exit 2) if any catalog row is rejected.")
@handle_errors
def catalog_update(models_dir, catalog_path, columns, catalog_query, base_version, strict):
    """Write a new model version with the same models and this catalog's item metadata."""
    from training.catalog import update_catalog

    with local_models(models_dir, base_version) as folder:
        summary = update_catalog(folder, catalog_path, columns=parse_columns(columns) or None,
                                 strict=strict, query=catalog_query, base_version=base_version,
                                 on_report=echo_report)
    click.echo(f"version {summary['version']} from {summary['base_version']}: "
               f"{summary['items_in_catalog']} of {summary['items']} items in the catalog"
               f"{' (current)' if summary['published'] else ''}", err=True)
    sys.stderr.flush()
    click.echo(json.dumps(summary, separators=(",", ":")))


@main.group()
def models():
    """Model lifecycle: list, promote (roll back or forward), prune."""


@models.command("list")
@models_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@handle_errors
def models_list(models_dir, as_json):
    """List versions, oldest first; * marks the current one."""
    from recsys.artifacts import list_versions

    versions = open_models(models_dir).list_versions() if is_remote(models_dir) \
        else list_versions(models_dir)
    if as_json:
        click.echo(json.dumps(versions, default=str))
        return
    if not versions:
        click.echo(f"no model versions in {models_dir}")
        return
    for v in versions:
        mark = "*" if v["current"] else " "
        metrics = v.get("metrics") or {}
        headline = ", ".join(
            f"{kind} {name}={value:.4f}" for kind, m in metrics.items()
            for name, value in m.items() if name in ("ndcg@10", "hr@10")
        )
        state = v["status"] if v["status"] != "ok" else (
            "published" if v.get("published") else
            "orphan" if v.get("gate_passed") else "not published")
        click.echo(f"{mark} {v['version']}  {v.get('created_at') or '-':<25} {state:<14} {headline}")


@models.command("promote")
@click.argument("version")
@models_option
@handle_errors
def models_promote(version, models_dir):
    """Make VERSION current (after checking its checksums and that the service can load it)."""
    from recsys.artifacts import set_current
    from recsys.recommender.servable import check_servable

    check_servable(open_models(models_dir).fetch(version), version)
    if is_remote(models_dir):
        open_models(models_dir).set_current(version)
    else:
        set_current(models_dir, version)
    click.echo(f"current version is now {version}")


@models.command("prune")
@models_option
@click.option("--keep", required=True, type=click.IntRange(min=1), help="How many versions to keep.")
@handle_errors
def models_prune(models_dir, keep):
    """Delete old versions, keeping the newest N and always the current one."""
    from recsys.artifacts import prune_versions

    removed = open_models(models_dir).prune(keep) if is_remote(models_dir) \
        else prune_versions(models_dir, keep)
    click.echo(f"removed {len(removed)} version(s)" + (f": {', '.join(removed)}" if removed else ""))


@main.command("evaluate")
@orders_option
@catalog_option
@columns_option
@click.option("--config", "config_path", default=None, help="TOML or JSON settings file.")
@click.option("--exclude-items", default=None,
              help="Non-product ids: a file with one id per line, or a regular expression.")
@click.option("--k", default=10, show_default=True, type=click.IntRange(min=1))
@click.option("--max-queries", default=10000, show_default=True, type=click.IntRange(min=0),
              help="Seeded sample of test queries per protocol (0: all).")
@click.option("--skip", default="", help="Comma-separated baseline families to leave out.")
@click.option("--ease-max-items", default=12000, show_default=True, type=click.IntRange(min=2),
              help="Fit the EASE baseline on at most this many items, the most-bought "
                   "(dense O(n^3) inverse; the table states it).")
@click.option("--json", "json_out", default=None, type=click.Path(), help="Write results as JSON.")
@click.option("--report", "report_out", default=None, type=click.Path(),
              help="Write an HTML report with charts.")
@click.option("--tune", "tune_out", default=None, type=click.Path(),
              help="Also search the product's settings on the validation split; write a config.")
@click.option("--baseline-cache", default=None, type=click.Path(),
              help="JSON file of the baselines' results: read when it matches this data and "
                   "these settings, else written (iterate on the product without re-tuning).")
@handle_errors
def evaluate_cmd(orders, catalog, columns, config_path, exclude_items, k, max_queries, skip,
                 ease_max_items, json_out, report_out, tune_out, baseline_cache):
    """Compare the product with tuned baselines on a temporal holdout (EVALUATION.md)."""
    from training.config import load_config
    from training.evaluate import cli_evaluate

    overrides = {"data": {"exclude_items": exclude_items}} if exclude_items else None
    config = load_config(config_path, overrides)
    cli_evaluate(orders, config, catalog=catalog, columns=parse_columns(columns) or None, k=k,
                 max_queries=max_queries or None, skip=tuple(filter(None, skip.split(","))),
                 ease_max_items=ease_max_items, json_out=json_out, report_out=report_out,
                 tune_out=tune_out, baseline_cache=baseline_cache,
                 on_report=echo_report, echo=lambda text: click.echo(text, err=True),
                 out=click.echo)


@main.command()
@models_option
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on (0.0.0.0 for all; set API keys then).")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535))
@click.option("--workers", default=None, type=click.IntRange(min=1),
              help="Worker processes [default: one per core].")
@click.option("--threads", default=None, type=click.IntRange(min=1),
              help="Threads per worker [default: 4].")
@click.option("--reload-interval", default=None, type=click.FloatRange(min=0),
              help="Seconds between checks for a new model version [default: 5].")
@handle_errors
def serve(models_dir, host, port, workers, threads, reload_interval):
    """Run the HTTP API under gunicorn (see service/gunicorn_conf.py)."""
    import os

    if not is_remote(models_dir) and not os.path.isdir(models_dir):
        raise ConfigError(f"--models {models_dir} is not a folder; train a model into it first")
    from service.auth import ApiKeys

    # Bad keys fail here with one line (never echoing a key), not in every gunicorn worker.
    ApiKeys.from_settings(os.environ.get("XSELL_API_KEYS"), os.environ.get("XSELL_API_KEYS_FILE"))
    env = os.environ
    env["XSELL_MODELS_DIR"] = models_dir if is_remote(models_dir) else \
        os.path.abspath(models_dir)
    env["XSELL_BIND"] = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    if workers:
        env["XSELL_WORKERS"] = str(workers)
    if threads:
        env["XSELL_THREADS"] = str(threads)
    if reload_interval is not None:
        env["XSELL_RELOAD_INTERVAL"] = str(reload_interval)
    env.setdefault("OPENBLAS_NUM_THREADS", "1")
    sys.stdout.flush()
    sys.stderr.flush()
    # exec: gunicorn's master becomes this process and gets the signals (TERM, HUP, ...).
    os.execv(sys.executable, [sys.executable, "-m", "gunicorn", "-c",
                              "python:service.gunicorn_conf", "service.wsgi:app"])


main.add_command(nightly_command)


if __name__ == "__main__":
    main()
