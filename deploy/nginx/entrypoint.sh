#!/bin/sh
# Render the site for this deployment and run nginx in the foreground.
set -eu
: "${XSELL_LISTEN:=8080}"
: "${XSELL_UPSTREAM:=127.0.0.1:8000}"
sed -e "s|@LISTEN@|${XSELL_LISTEN}|" -e "s|@UPSTREAM@|${XSELL_UPSTREAM}|" \
    /etc/xsell/xsell.conf.template > /tmp/xsell-site.conf
exec nginx -c /etc/xsell/nginx.conf -g 'daemon off;'
