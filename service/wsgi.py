"""WSGI entry point for gunicorn: ``gunicorn -c python:service.gunicorn_conf service.wsgi:app``."""

import sys

from recsys.exceptions import ConfigError

from . import create_app

try:
    app = create_app()
except ConfigError as exc:
    # A bad setting (e.g. XSELL_API_KEYS): one line, not gunicorn's traceback of the import.
    print(f"xsell: configuration error: {exc}", file=sys.stderr, flush=True)
    sys.exit(4)
