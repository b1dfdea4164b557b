#!/usr/bin/env bash
# Install xsell into .venv, train on the bundled Online Retail demo data and
# serve the API on http://127.0.0.1:8000 (Ctrl-C stops it).
# Usage: scripts/demo.sh [models-dir] [port]
set -euo pipefail
cd "$(dirname "$0")/.."
MODELS="${1:-models}"
PORT="${2:-8000}"
python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e .
export OPENBLAS_NUM_THREADS=1
.venv/bin/xsell train --orders demo/online_retail.parquet --catalog demo/catalog.csv \
    --config demo/online_retail.toml --models "$MODELS"
echo "serving on http://127.0.0.1:$PORT  (try: curl http://127.0.0.1:$PORT/v1/items/85099B/also-bought)"
exec .venv/bin/xsell serve --models "$MODELS" --host 127.0.0.1 --port "$PORT"
