#!/usr/bin/env bash
# The Java runtime (17 or newer) the Spark engine's tests need.
#
#   source scripts/ci-java.sh
#   xsell_has_java || pkg="$(xsell_java_package)"   # after apt-get update
#
# A java on the PATH (or JAVA_HOME) of version 17 or newer is used as it is.
# Otherwise scripts/test.sh installs, in its one apt-get step, the newest
# openjdk-NN-jre-headless (NN >= 17) that apt offers (Debian 12: 17; Debian 13: 21).

_xsell_java_version() {
    "$1" -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -n1
}

# True when a Java 17+ runtime is there already.
xsell_has_java() {
    local java="${JAVA_HOME:+$JAVA_HOME/bin/java}"
    [ -n "$java" ] && [ -x "$java" ] || java="$(command -v java || true)"
    [ -n "$java" ] && [ "$(_xsell_java_version "$java")" -ge 17 ] 2>/dev/null
}

# The newest openjdk-NN-jre-headless (NN >= 17) apt offers; empty when none.
xsell_java_package() {
    local version
    version="$(apt-cache search --names-only '^openjdk-[0-9]+-jre-headless$' 2>/dev/null \
        | sed -n 's/^openjdk-\([0-9]*\)-jre-headless.*/\1/p' | sort -n \
        | awk '$1 >= 17' | tail -n1)"
    [ -n "$version" ] && echo "openjdk-$version-jre-headless"
}
