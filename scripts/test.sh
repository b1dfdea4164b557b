#!/usr/bin/env bash
# Install everything the tests need and run the whole test suite:
# the Python package into .venv (with PySpark, the `spark` extra), a Java
# runtime for the Spark engine's tests (Debian's, apt-get when missing), and
# a throwaway PostgreSQL server (Debian's package, installed with apt-get
# when missing) for the database tests.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[test,spark]'
export OPENBLAS_NUM_THREADS=1
# shellcheck source=scripts/ci-java.sh
source scripts/ci-java.sh
if [ -n "${CI:-}" ] && ! command -v java >/dev/null && [ -z "${JAVA_HOME:-}" ]; then
    echo "CI: no Java runtime for the Spark engine's tests" >&2
    exit 1
fi
# shellcheck source=scripts/ci-postgres.sh
source scripts/ci-postgres.sh
if [ -n "${CI:-}" ] && [ -z "${XSELL_TEST_PG_URL:-}" ]; then
    echo "CI: the PostgreSQL test server could not be started" >&2
    exit 1
fi
.venv/bin/python -m pytest -q "$@"
