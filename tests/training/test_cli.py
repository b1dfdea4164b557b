"""The ``xsell`` command line driven as a user does: a subprocess, real files."""

import csv
import json
import os
import subprocess
import sys

import pyarrow.parquet as pq
import pytest

from tests.conftest import DEMO_ORDERS, REPO

DEMO_COLUMNS = ("customer_id=CustomerID,order_id=InvoiceNo,item_id=StockCode,quantity=Quantity,"
                "unit_price=UnitPrice,timestamp=InvoiceDate")


def xsell(*args, check=True):
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", PYTHONPATH=REPO)
    proc = subprocess.run([sys.executable, "-m", "training.cli", *args], capture_output=True,
                          text=True, env=env, cwd=REPO, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture(scope="module")
def models(planted, tmp_path_factory):
    path, _ = planted
    out = tmp_path_factory.mktemp("cli") / "models"
    proc = xsell("train", "--orders", path, "--models", str(out))
    return str(out), proc


def test_train_prints_report_and_a_json_summary_last(models):
    _, proc = models
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["published"] is True
    assert {"version", "published", "metrics"} <= set(summary)
    assert "rows read" in proc.stderr and "rows used" in proc.stderr
    assert "published version" in proc.stderr


def test_export_all_kinds_jsonl(models, tmp_path):
    models_dir, _ = models
    customers = tmp_path / "customers.txt"
    customers.write_text("Q0_0\nnobody\nQ1_0\n")
    out = tmp_path / "nb.jsonl"
    xsell("export", "--models", models_dir, "--kind", "next-best", "--input", str(customers),
          "--limit", "3", "--out", str(out))
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["customer_id"] for r in records] == ["Q0_0", "nobody", "Q1_0"]
    assert records[0]["recommendations"][0]["item_id"] == "B0"
    assert len(records[0]["recommendations"]) == 3
    assert records[1] == {"customer_id": "nobody", "recommendations": [], "error": "unknown_customer"}

    items = tmp_path / "items.txt"
    items.write_text("A2\nZZZ\n")
    out = tmp_path / "ab.jsonl"
    xsell("export", "--models", models_dir, "--kind", "also-bought", "--input", str(items),
          "--out", str(out))
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert records[0]["item_id"] == "A2" and records[0]["recommendations"][0]["item_id"] == "B2"
    assert records[1]["error"] == "unknown_item" and records[1]["recommendations"] == []
    # Each recommendation as the API shows it: item facts and the reason (CRM: "because
    # you bought A2"); slots no customer bought with A2 say they are filled, not co-bought.
    first = records[0]["recommendations"][0]
    assert {"name", "price", "category", "in_stock"} <= set(first)
    assert first["reason"]["because_of"] == ["A2"] and first["reason"]["support"] > 10
    assert first["reason"]["lift"] > 1 and "confidence" in first["reason"]
    assert "filled" not in first["reason"]
    for r in records[0]["recommendations"]:
        assert ("filled" in r["reason"]) == (not r["reason"]["support"])
    slim = tmp_path / "ab_slim.jsonl"
    xsell("export", "--models", models_dir, "--kind", "also-bought", "--input", str(items),
          "--out", str(slim), "--slim")
    slim_records = [json.loads(line) for line in slim.read_text().splitlines()]
    assert [set(r) for r in slim_records[0]["recommendations"]] == \
        [{"item_id", "score"}] * len(records[0]["recommendations"])
    assert [r["item_id"] for r in slim_records[0]["recommendations"]] == \
        [r["item_id"] for r in records[0]["recommendations"]]

    baskets = tmp_path / "baskets.jsonl"
    baskets.write_text('["A3", "P9"]\n["nope"]\nnot json\n')
    out = tmp_path / "basket.jsonl"
    xsell("export", "--models", models_dir, "--kind", "basket", "--input", str(baskets),
          "--out", str(out))
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(records) == 3
    assert records[0]["items"] == ["A3", "P9"]
    assert records[0]["recommendations"][0]["item_id"] == "B3"
    assert not {"A3", "P9"} & {r["item_id"] for r in records[0]["recommendations"]}
    assert records[1]["error"] == "unknown_item"
    assert records[2]["error"] == "invalid_basket"

    out = tmp_path / "lb.jsonl"
    xsell("export", "--models", models_dir, "--kind", "likely-buyers", "--input", str(items),
          "--limit", "5", "--out", str(out))
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(records[0]["customers"]) == 5 and "customer_id" in records[0]["customers"][0]
    assert records[1]["error"] == "unknown_item"


def test_export_all_customers_csv(models, tmp_path):
    models_dir, _ = models
    out = tmp_path / "nb.csv"
    xsell("export", "--models", models_dir, "--kind", "next-best", "--limit", "2", "--out", str(out))
    with open(out) as fh:
        rows = list(csv.DictReader(fh))
    queries = {r["query"] for r in rows}
    assert len(queries) == 630  # 600 planted customers + 30 query customers
    assert all(r["rank"] in ("1", "2") for r in rows)
    first = [r for r in rows if r["query"] == "Q4_1"]
    assert first[0]["id"] == "B4"
    # Flat columns for the item facts and the reason.
    assert {"name", "price", "category", "because_of", "support", "lift", "confidence",
            "filled"} <= set(rows[0])
    assert first[0]["because_of"].split("|")[0].startswith("A4")
    slim = tmp_path / "nb_slim.csv"
    xsell("export", "--models", models_dir, "--kind", "next-best", "--limit", "2", "--out",
          str(slim), "--slim")
    with open(slim) as fh:
        assert next(csv.reader(fh)) == ["query", "rank", "id", "score", "error"]


def test_models_list_promote_prune(models, planted, tmp_path):
    models_dir, _ = models
    path, _ = planted
    xsell("train", "--orders", path, "--models", models_dir)
    listing = json.loads(xsell("models", "list", "--models", models_dir, "--json").stdout)
    assert len(listing) >= 2 and listing[-1]["current"]
    oldest = listing[0]["version"]
    xsell("models", "promote", oldest, "--models", models_dir)
    listing = json.loads(xsell("models", "list", "--models", models_dir, "--json").stdout)
    assert [v["version"] for v in listing if v["current"]] == [oldest]
    table = xsell("models", "list", "--models", models_dir).stdout
    assert f"* {oldest}" in table
    xsell("models", "prune", "--keep", "1", "--models", models_dir)
    listing = json.loads(xsell("models", "list", "--models", models_dir, "--json").stdout)
    assert {v["version"] for v in listing} >= {oldest}
    assert len(listing) <= 2
    bad = xsell("models", "promote", "nope", "--models", models_dir, check=False)
    assert bad.returncode == 1 and "error:" in bad.stderr and "Traceback" not in bad.stderr


def test_user_mistakes_give_one_clear_line_and_exit_2(tmp_path):
    orders = tmp_path / "o.csv"
    orders.write_text("customer_id,order_id\nc,1\n")
    proc = xsell("train", "--orders", str(orders), "--models", str(tmp_path / "m"), check=False)
    assert proc.returncode == 2
    assert "item_id" in proc.stderr and "o.csv" in proc.stderr and "Traceback" not in proc.stderr
    proc = xsell("train", "--orders", str(tmp_path / "absent.parquet"), "--models",
                 str(tmp_path / "m"), check=False)
    assert proc.returncode == 2 and "no such file" in proc.stderr
    proc = xsell("export", "--models", str(tmp_path / "empty"), "--kind", "next-best", "--out",
                 str(tmp_path / "x.jsonl"), check=False)
    assert proc.returncode == 1 and "no current model" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_strict_fails_with_exit_2(planted, tmp_path):
    path, _ = planted
    dirty = tmp_path / "dirty.csv"
    dirty.write_text(open(path).read() + "C1,Oz,A1,-1,1.0,2025-02-01T00:00:00\n")
    proc = xsell("train", "--orders", str(dirty), "--models", str(tmp_path / "m"), "--strict",
                 check=False)
    assert proc.returncode == 2
    assert "non_positive_quantity=1" in proc.stderr
    assert not os.path.exists(tmp_path / "m" / "CURRENT")


@pytest.mark.skipif(not os.path.exists(DEMO_ORDERS), reason="demo data not bundled")
def test_train_on_a_slice_of_the_real_demo_data(tmp_path):
    table = pq.read_table(DEMO_ORDERS).slice(0, 60000)
    path = tmp_path / "slice.parquet"
    pq.write_table(table, path)
    proc = xsell("train", "--orders", str(path), "--columns", DEMO_COLUMNS,
                 "--exclude-items", "^(POST|DOT|M|C2|D|S|B|BANK CHARGES|AMAZONFEE|CRUK)$",
                 "--models", str(tmp_path / "m"))
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["data"]["rows_read"] == 60000
    assert "non_positive_quantity" in proc.stderr and "not_a_product" in proc.stderr
    assert summary["data"]["rows_used"] + summary["data"]["rows_rejected"] == 60000
    assert "basket" in summary["metrics"]
