"""gunicorn's own answers and log lines, made to follow the contract.

gunicorn answers a request it cannot parse (a request line or header over its limits,
a malformed header, a bad chunk) itself, before the app sees it, with an HTML page;
the contract wants JSON errors (``{"error": {"code", "message"}}``) everywhere, 414
and 431 included. And its warning for such a request quotes the offending text, which
may be an API key (``X-API-Key secret`` without the colon): it is logged without it.

:func:`install` is called by ``service.gunicorn_conf`` in the master, before the fork.
"""

from __future__ import annotations

import json
import logging
import re

from .errors import HTTP_CODES

_MESSAGES = {
    400: "the request is not valid HTTP (request line, header or chunked body)",
    403: "request forbidden",
    414: "the request line (URL) is too long",
    417: "expectation failed",
    431: "the request headers are too large (too many, or one too long)",
    500: "internal error; see the service log",
    501: "transfer coding not supported",
}
_INVALID = re.compile(r"^(Invalid request from ip=\S+?):.*", re.S)


def json_error(status: int, reason: str) -> bytes:
    body = json.dumps({"error": {"code": HTTP_CODES.get(status, "http_error"),
                                 "message": _MESSAGES.get(status, reason)}}).encode()
    head = (f"HTTP/1.1 {status} {reason}\r\nConnection: close\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n")
    return head.encode("latin-1") + body


def write_error(sock, status_int, reason, mesg):
    """Replacement of ``gunicorn.util.write_error``: JSON, and never the offending text."""
    from gunicorn import util

    util.write_nonblock(sock, json_error(int(status_int), str(reason)))


class RedactInvalidRequest(logging.Filter):
    """Drop the quoted request text from gunicorn's 'Invalid request' warnings."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str) and record.msg.startswith("Invalid request from"):
            found = _INVALID.match(record.msg)
            if found:
                record.msg = (f"{found.group(1)}: request line or header not valid or over "
                              f"the limits (its text is not logged: it may hold a key)")
                record.args = ()
        return True


def install() -> None:
    from gunicorn import util

    util.write_error = write_error
    logger = logging.getLogger("gunicorn.error")
    if not any(isinstance(f, RedactInvalidRequest) for f in logger.filters):
        logger.addFilter(RedactInvalidRequest())
