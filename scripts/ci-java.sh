#!/usr/bin/env bash
# Make a Java runtime (17 or newer) available for the Spark engine's tests.
#
#   source scripts/ci-java.sh      # installs Debian's headless JRE when none is found
#
# A java on the PATH (or JAVA_HOME) of version 17 or newer is used as it is.
# Otherwise, as root, apt-get installs the newest openjdk-NN-jre-headless
# (NN >= 17) that `apt-cache policy` offers (Debian 12: 17; Debian 13: 21).

_xsell_java_version() {
    "$1" -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -n1
}

_xsell_java_main() {
    local java="${JAVA_HOME:+$JAVA_HOME/bin/java}"
    [ -n "$java" ] && [ -x "$java" ] || java="$(command -v java || true)"
    if [ -n "$java" ] && [ "$(_xsell_java_version "$java")" -ge 17 ] 2>/dev/null; then
        return 0
    fi
    if [ "$(id -u)" != 0 ]; then
        echo "ci-java: no Java 17+ and we are not root to apt-get it" >&2
        return 1
    fi
    echo "ci-java: installing Debian's headless Java runtime" >&2
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2 || return 1
    local package
    package="$(apt-cache search --names-only '^openjdk-[0-9]+-jre-headless$' 2>/dev/null \
        | sed -n 's/^openjdk-\([0-9]*\)-jre-headless.*/\1/p' | sort -n \
        | awk '$1 >= 17' | tail -n1)"
    [ -n "$package" ] || { echo "ci-java: no openjdk-17+ package offered" >&2; return 1; }
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "openjdk-$package-jre-headless" >&2 || return 1
    command -v java >/dev/null || { echo "ci-java: java not found after install" >&2; return 1; }
}

if ! _xsell_java_main; then
    echo "ci-java: no Java runtime: the Spark engine's tests will skip (fail under CI)" >&2
fi
