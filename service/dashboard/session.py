"""Dashboard sign-in: an admin key entered once, kept as a signed session cookie; CSRF tokens.

The cookie is Flask's signed session (``itsdangerous``, HMAC-SHA1 over a key
derived from the secret), HttpOnly, ``SameSite=Strict``, limited to the
``/dashboard`` path (so no ``/v1`` call ever carries it: the API keeps using
headers only), optionally ``Secure``, and it expires ``SESSION_HOURS`` after
sign-in (the signature's timestamp is checked on every request; the expiry is
not extended by use).

The secret: ``XSELL_SECRET_KEY`` when set (needed when several hosts serve
one dashboard, or for sessions that outlive a restart); otherwise 32 random
bytes made when the app is created. ``xsell serve`` creates the app once in
the gunicorn master (``preload_app``) and forks the workers from it, so every
worker, and every worker gunicorn starts later, holds the same secret and
accepts the same cookie; a restart signs everybody out, which is the safe
side for an admin tool. The secret is never logged.

The cookie holds no key: only the role and a keyed fingerprint of the admin
key's digest, checked against the configured keys on every request, so a
session ends as soon as its key is removed from the configuration.

CSRF: a random token per session, sent back in a hidden form field
(``csrf_token``) or an ``X-CSRF-Token`` header with every state-changing
request, compared in constant time; a present ``Origin`` header must name
this host. Callers who authenticate with a header (API clients) are not
exposed to CSRF and need no token.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import time
from datetime import timedelta

from flask import request, session
from flask.sessions import SecureCookieSessionInterface

from recsys.exceptions import ConfigError

from ..auth import ROLES

log = logging.getLogger(__name__)

PREFIX = "/dashboard"
COOKIE = "xsell_dashboard"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
_MIN_SECRET = 32


class DashboardSessionInterface(SecureCookieSessionInterface):
    """Flask's signed cookie session, opened only for dashboard paths: the API's requests
    neither read nor write a session (no signing work on the hot path)."""

    def open_session(self, app, request):
        if not request.path.startswith(PREFIX):
            return None  # Flask substitutes a NullSession
        return super().open_session(app, request)


def configure(app, settings: dict) -> None:
    """Install the session secret, cookie settings and interface on ``app``."""
    secret = settings.get("SECRET_KEY")
    if secret:
        if len(str(secret)) < _MIN_SECRET:
            # Never echo the value.
            raise ConfigError(f"XSELL_SECRET_KEY is too short: use at least {_MIN_SECRET} "
                              "random characters (e.g. python -c 'import secrets; "
                              "print(secrets.token_hex(32))')")
        app.secret_key = str(secret)
    else:
        app.secret_key = secrets.token_hex(32)
        log.info("no XSELL_SECRET_KEY: dashboard sessions are signed with a key made at start "
                 "(shared by this server's workers; a restart signs everyone out)")
    hours = float(settings.get("SESSION_HOURS") or 8.0)
    if hours <= 0:
        raise ConfigError("XSELL_SESSION_HOURS must be a positive number of hours")
    app.config.update(
        SESSION_COOKIE_NAME=COOKIE,
        SESSION_COOKIE_PATH=PREFIX,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Strict",
        SESSION_COOKIE_SECURE=bool(settings.get("SESSION_COOKIE_SECURE")),
        PERMANENT_SESSION_LIFETIME=timedelta(hours=hours),
        SESSION_REFRESH_EACH_REQUEST=False,
    )
    app.session_interface = DashboardSessionInterface()


def _fingerprint(secret: str, key_digest: bytes) -> str:
    return hmac.new(secret.encode(), key_digest, hashlib.sha256).hexdigest()[:32]


def admin_digest(keys, key: str) -> bytes | None:
    """The digest of ``key`` when it is a configured admin key, else None."""
    from ..auth import digest

    role = keys.role_of(key)
    if role is None or ROLES[role] < ROLES["admin"]:
        return None
    return digest(key)


def sign_in(app, key_digest: bytes) -> None:
    session.clear()
    session.permanent = True
    session["role"] = "admin"
    session["kid"] = _fingerprint(app.secret_key, key_digest)
    session["at"] = int(time.time())
    # A new token at sign-in: a token planted before sign-in is worthless after it.
    session["csrf"] = secrets.token_urlsafe(32)


def sign_out() -> None:
    session.clear()


def session_role(app, keys) -> str | None:
    """``admin`` when the request carries a valid session whose key is still configured."""
    kid = session.get("kid")
    if not kid or session.get("role") != "admin":
        return None
    for role, expected in keys.entries:
        if role == "admin" and hmac.compare_digest(_fingerprint(app.secret_key, expected), kid):
            return "admin"
    return None


def csrf_token() -> str:
    """This session's CSRF token (made on first use)."""
    token = session.get("csrf")
    if not token:
        token = session["csrf"] = secrets.token_urlsafe(32)
    return token


def csrf_problem() -> str | None:
    """Why the current state-changing request fails the CSRF check, or None when it passes."""
    origin = request.headers.get("Origin")
    if origin and origin != "null" and origin.rstrip("/") != request.host_url.rstrip("/"):
        return "the request comes from another site (Origin does not match)"
    if origin == "null":
        return "the request comes from an opaque origin"
    expected = session.get("csrf")
    sent = request.form.get(CSRF_FIELD) or request.headers.get(CSRF_HEADER)
    if not sent:
        return "the form has no CSRF token; reload the page and try again"
    if not expected or not hmac.compare_digest(str(sent), str(expected)):
        return "the CSRF token is not valid for this session; reload the page and try again"
    return None
