#!/usr/bin/env bash
# Install everything the tests need and run the whole test suite:
# the Python package into .venv, nginx (Debian's nginx-light, for the reverse-proxy
# tests of tests/reliability) and a throwaway PostgreSQL server (Debian's package,
# installed with apt-get when missing) for the database tests.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[test]'
export OPENBLAS_NUM_THREADS=1
# nginx (Debian's package): tests/reliability runs the shipped reverse-proxy config.
if ! command -v nginx >/dev/null 2>&1 && [ ! -x /usr/sbin/nginx ]; then
    if [ "$(id -u)" = 0 ]; then
        echo "test.sh: installing Debian's nginx-light package" >&2
        DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2 &&
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light >&2 ||
            echo "test.sh: nginx could not be installed" >&2
    fi
fi
if [ -n "${CI:-}" ] && ! command -v nginx >/dev/null 2>&1 && [ ! -x /usr/sbin/nginx ]; then
    echo "CI: nginx is needed by tests/reliability and could not be installed" >&2
    exit 1
fi
# shellcheck source=scripts/ci-postgres.sh
source scripts/ci-postgres.sh
if [ -n "${CI:-}" ] && [ -z "${XSELL_TEST_PG_URL:-}" ]; then
    echo "CI: the PostgreSQL test server could not be started" >&2
    exit 1
fi
.venv/bin/python -m pytest -q "$@"
