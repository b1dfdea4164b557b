#!/usr/bin/env bash
# Install everything the tests need and run the whole test suite:
# the Python package into .venv, a throwaway PostgreSQL server (Debian's
# package, installed with apt-get when missing) for the database tests, and
# Debian's chromium + chromium-driver (installed when missing) for the
# dashboard's browser tests.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[test]'
export OPENBLAS_NUM_THREADS=1
# The dashboard's browser tests drive Debian's chromium through its chromedriver.
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
    if [ "$(id -u)" = 0 ]; then
        echo "test.sh: installing Debian's chromium and chromium-driver packages" >&2
        DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2 &&
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >&2 ||
            echo "test.sh: chromium could not be installed; browser tests will skip" >&2
    else
        echo "test.sh: chromium is not installed and we are not root to apt-get it; " \
             "browser tests will skip" >&2
    fi
fi
# Screenshots of every dashboard view, written by the browser tests.
XSELL_SCREENSHOTS="${XSELL_SCREENSHOTS:-$(mktemp -d /tmp/xsell-screenshots.XXXXXX)}"
export XSELL_SCREENSHOTS
echo "test.sh: dashboard screenshots go to $XSELL_SCREENSHOTS" >&2
# shellcheck source=scripts/ci-postgres.sh
source scripts/ci-postgres.sh
if [ -n "${CI:-}" ] && [ -z "${XSELL_TEST_PG_URL:-}" ]; then
    echo "CI: the PostgreSQL test server could not be started" >&2
    exit 1
fi
.venv/bin/python -m pytest -q "$@"
