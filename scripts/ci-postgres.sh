#!/usr/bin/env bash
# Start a throwaway PostgreSQL server for the tests and export its URL.
#
#   source scripts/ci-postgres.sh     # exports XSELL_TEST_PG_URL; stop with xsell_pg_stop
#   scripts/ci-postgres.sh            # prints "export XSELL_TEST_PG_URL=..." (server left running)
#
# Installs Debian's `postgresql` package when no server binaries are found
# (apt-get, needs root), creates a cluster in a temporary folder owned by a
# non-root user (postgres refuses to run as root: as root we use the
# `postgres` system user the package creates), listens on 127.0.0.1 only on a
# free port, with password authentication for a throwaway `xsell` user.
# When sourced, an EXIT trap stops the server and removes the folder (a caller
# that sets its own EXIT trap afterwards should call xsell_pg_stop in it).

_xsell_pg_main() {
    local bindir="" candidate
    for candidate in "$(pg_config --bindir 2>/dev/null)" /usr/lib/postgresql/*/bin; do
        if [ -n "$candidate" ] && [ -x "$candidate/initdb" ] && [ -x "$candidate/pg_ctl" ]; then
            bindir="$candidate"
        fi
    done
    if [ -z "$bindir" ]; then
        if [ "$(id -u)" != 0 ]; then
            echo "ci-postgres: PostgreSQL is not installed and we are not root to apt-get it" >&2
            return 1
        fi
        echo "ci-postgres: installing Debian's postgresql package" >&2
        DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2 &&
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2 || return 1
        for candidate in /usr/lib/postgresql/*/bin; do
            [ -x "$candidate/initdb" ] && bindir="$candidate"
        done
        [ -n "$bindir" ] || { echo "ci-postgres: initdb not found after install" >&2; return 1; }
    fi

    local run_as=()
    local dir
    dir="$(mktemp -d /tmp/xsell-pg.XXXXXX)" || return 1
    chmod 755 "$dir"
    if [ "$(id -u)" = 0 ]; then
        id postgres >/dev/null 2>&1 || useradd --system --home-dir "$dir" postgres || return 1
        chown postgres "$dir"
        run_as=(su postgres -s /bin/sh -c)
    else
        run_as=(sh -c)
    fi

    local port password
    port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')"
    password="ci-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
    printf '%s\n' "$password" >"$dir/pwfile"
    [ "$(id -u)" = 0 ] && chown postgres "$dir/pwfile"

    "${run_as[@]}" "'$bindir/initdb' -D '$dir/data' -U xsell --pwfile='$dir/pwfile' \
        --auth=scram-sha-256 -E UTF8 --locale=C.UTF-8 >'$dir/initdb.log' 2>&1" || {
        echo "ci-postgres: initdb failed:" >&2; cat "$dir/initdb.log" >&2; return 1; }
    rm -f "$dir/pwfile"
    "${run_as[@]}" "'$bindir/pg_ctl' -D '$dir/data' -l '$dir/server.log' -w -t 60 \
        -o \"-c listen_addresses=127.0.0.1 -p $port -c unix_socket_directories='$dir/data' -c fsync=off\" start >/dev/null" || {
        echo "ci-postgres: server did not start:" >&2; cat "$dir/server.log" >&2; return 1; }

    XSELL_TEST_PG_URL="postgresql://xsell:${password}@127.0.0.1:${port}/postgres"
    XSELL_TEST_PG_DIR="$dir"
    XSELL_TEST_PG_BIN="$bindir"
    export XSELL_TEST_PG_URL XSELL_TEST_PG_DIR XSELL_TEST_PG_BIN
    echo "ci-postgres: PostgreSQL $("$bindir/postgres" --version | awk "{print \$3}") on 127.0.0.1:$port (data in $dir)" >&2
}

xsell_pg_stop() {
    [ -n "${XSELL_TEST_PG_DIR:-}" ] && [ -d "$XSELL_TEST_PG_DIR/data" ] || return 0
    if [ "$(id -u)" = 0 ]; then
        su postgres -s /bin/sh -c "'$XSELL_TEST_PG_BIN/pg_ctl' -D '$XSELL_TEST_PG_DIR/data' -m fast -w stop" >/dev/null 2>&1
    else
        "$XSELL_TEST_PG_BIN/pg_ctl" -D "$XSELL_TEST_PG_DIR/data" -m fast -w stop >/dev/null 2>&1
    fi
    rm -rf "$XSELL_TEST_PG_DIR"
    unset XSELL_TEST_PG_URL XSELL_TEST_PG_DIR XSELL_TEST_PG_BIN
}

if [ "${BASH_SOURCE[0]}" != "$0" ]; then
    # Sourced: export into the caller and stop the server when it exits.
    if _xsell_pg_main; then
        trap xsell_pg_stop EXIT
    else
        echo "ci-postgres: no PostgreSQL server; PostgreSQL tests will be skipped" >&2
    fi
else
    set -euo pipefail
    _xsell_pg_main
    echo "export XSELL_TEST_PG_URL='$XSELL_TEST_PG_URL' XSELL_TEST_PG_DIR='$XSELL_TEST_PG_DIR' XSELL_TEST_PG_BIN='$XSELL_TEST_PG_BIN'"
fi
