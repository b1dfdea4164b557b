#!/usr/bin/env bash
# Install everything the tests need and run the whole test suite:
# the Python package into .venv (with PySpark, the `spark` extra), nginx (Debian's
# nginx-light, for the reverse-proxy tests of tests/reliability), Debian's chromium +
# chromium-driver for the dashboard's browser tests, a Java runtime for the Spark
# engine's tests (Debian's headless JRE; all installed in one apt-get step when
# missing) and a throwaway PostgreSQL server (Debian's package, installed when
# missing) for the database tests.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[test,spark]'
export OPENBLAS_NUM_THREADS=1
# Debian packages the tests drive: nginx (tests/reliability runs the shipped
# reverse-proxy config), chromium + its chromedriver (the dashboard's browser tests)
# a Java runtime and a native BLAS (the Spark engine's tests), in one apt-get step.
# shellcheck source=scripts/ci-java.sh
source scripts/ci-java.sh
missing=()
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing+=(nginx-light)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v chromedriver >/dev/null 2>&1 || missing+=(chromium-driver)
# A native BLAS (libblas.so.3) for Spark MLlib's ALS, which falls back to Java's without.
{ ldconfig -p || /sbin/ldconfig -p; } 2>/dev/null | grep 'libblas\.so\.3 ' >/dev/null ||
    missing+=(libopenblas0-pthread)
need_java=""
xsell_has_java || need_java=1
if ((${#missing[@]})) || [ -n "$need_java" ]; then
    if [ "$(id -u)" = 0 ]; then
        if DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2; then
            if [ -n "$need_java" ]; then
                java_package="$(xsell_java_package || true)"
                if [ -n "$java_package" ]; then
                    missing+=("$java_package")
                else
                    echo "test.sh: apt offers no openjdk-17+ package" >&2
                fi
            fi
            if ((${#missing[@]})); then
                echo "test.sh: installing Debian's ${missing[*]}" >&2
                DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2 ||
                    echo "test.sh: ${missing[*]} could not be installed" >&2
            fi
        else
            echo "test.sh: apt-get update failed; ${missing[*]} not installed" >&2
        fi
    else
        echo "test.sh: ${missing[*]}${need_java:+ java} missing and we are not root to " \
             "apt-get them; the tests that need them will skip" >&2
    fi
fi
if [ -n "${CI:-}" ] && ! command -v nginx >/dev/null 2>&1 && [ ! -x /usr/sbin/nginx ]; then
    echo "CI: nginx is needed by tests/reliability and could not be installed" >&2
    exit 1
fi
if [ -n "${CI:-}" ] && ! xsell_has_java; then
    echo "CI: no Java runtime for the Spark engine's tests" >&2
    exit 1
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
