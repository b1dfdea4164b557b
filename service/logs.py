"""Structured JSON logs (one object per line) with the request id of the request being served."""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import time

import orjson

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def request_id(incoming: str | None) -> str:
    """The caller's X-Request-ID when it is sane, else a new one (32 random hex digits)."""
    if incoming and _REQUEST_ID.match(incoming):
        return incoming
    return os.urandom(16).hex()


_second: tuple[int, str] = (-1, "")  # (whole second, its text), replaced as one object


def utc_now() -> str:
    global _second
    now = time.time()
    second, text = _second
    if second != int(now):
        second = int(now)
        text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        _second = (second, text)
    return f"{text}.{int(now % 1 * 1000):03d}Z"


def write_access_line(fields: dict) -> None:
    """One access-log line: one ``write`` on stderr, without the logging machinery.

    Per request, the logging module's record, lock and flush cost more than the
    recommendation itself; a single write of a short line is atomic on a pipe.
    """
    line = orjson.dumps(fields, default=str, option=orjson.OPT_APPEND_NEWLINE)
    try:
        os.write(2, line)
    except OSError:
        pass


class JsonFormatter(logging.Formatter):
    """``{"ts", "level", "logger", "message", ...extra fields}``; never the raw args."""

    def format(self, record: logging.LogRecord) -> str:
        out = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if fields:
            out.update(fields)
        rid = getattr(record, "request_id", None)
        if rid is None:
            rid = _current_request_id()
        if rid is not None:
            out["request_id"] = rid
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def _current_request_id() -> str | None:
    try:
        from flask import g, has_request_context

        if has_request_context():
            return g.get("request_id")
    except ImportError:  # pragma: no cover
        return None
    return None


_HANDLER_NAME = "xsell-json"


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time (it may be replaced after setup)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value):
        pass


def configure_logging(level: str = "INFO") -> None:
    """One JSON handler on stderr for the service's and the library's loggers (idempotent)."""
    for name in ("service", "recsys", "xsell"):
        logger = logging.getLogger(name)
        logger.setLevel(level.upper())
        if not any(h.get_name() == _HANDLER_NAME for h in logger.handlers):
            handler = _StderrHandler()
            handler.set_name(_HANDLER_NAME)
            handler.setFormatter(JsonFormatter())
            logger.addHandler(handler)
            logger.propagate = False
