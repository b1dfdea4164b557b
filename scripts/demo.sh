#!/usr/bin/env bash
# Install xsell into .venv, train on the bundled Online Retail demo data and
# show a few recommendations. Usage: scripts/demo.sh [models-dir]
set -euo pipefail
cd "$(dirname "$0")/.."
MODELS="${1:-models}"
python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e .
export OPENBLAS_NUM_THREADS=1
.venv/bin/xsell train --orders demo/online_retail.parquet --catalog demo/catalog.csv \
    --config demo/online_retail.toml --models "$MODELS"
printf '85099B\n22423\n' > "$MODELS/demo-items.txt"
.venv/bin/xsell export --models "$MODELS" --kind also-bought --input "$MODELS/demo-items.txt" \
    --limit 5 --out "$MODELS/demo-also-bought.jsonl"
cat "$MODELS/demo-also-bought.jsonl"
