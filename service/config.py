"""Service settings: defaults, then ``XSELL_*`` environment variables, then ``create_app``."""

from __future__ import annotations

import os

from recsys.exceptions import ConfigError

DEFAULTS: dict = {
    # Folder of model versions (``xsell serve --models DIR`` sets XSELL_MODELS).
    "MODELS_DIR": None,
    # Seconds between checks of the CURRENT pointer; 0 turns the watcher off.
    "RELOAD_INTERVAL": 5.0,
    # Largest request body accepted (bytes); larger ones get 413.
    "MAX_BODY_BYTES": 64 * 1024,
    "MAX_BASKET_ITEMS": 100,
    "MAX_HISTORY_ITEMS": 1000,
    "MAX_LIMIT": 100,
    "DEFAULT_LIMIT": 10,
    # ``role:key`` pairs, comma-separated, and/or a file of ``role:sha256hex`` lines.
    "API_KEYS": "",
    "API_KEYS_FILE": None,
    # Without keys the API answers loopback clients only, unless this is true.
    "ALLOW_OPEN": False,
    # Dashboard sessions (service.dashboard.session): the cookie signing secret (default: a
    # random one per start, shared by the preloaded gunicorn workers), lifetime, HTTPS only.
    "SECRET_KEY": None,
    "SESSION_HOURS": 8.0,
    "SESSION_COOKIE_SECURE": False,
    # Access log lines (JSON) per request.
    "ACCESS_LOG": True,
    "LOG_LEVEL": "INFO",
    # Finished answers (GETs, POSTed carts and histories) kept per worker and model
    # version (0: no cache), and the most bytes of answers they may hold.
    "ANSWER_CACHE": 10000,
    "ANSWER_CACHE_BYTES": 64 * 1024 * 1024,
    # Prometheus /metrics and request accounting.
    "METRICS": True,
}

_CASTS = {
    "RELOAD_INTERVAL": float,
    "MAX_BODY_BYTES": int,
    "MAX_BASKET_ITEMS": int,
    "MAX_HISTORY_ITEMS": int,
    "MAX_LIMIT": int,
    "DEFAULT_LIMIT": int,
    "ANSWER_CACHE": int,
    "SESSION_HOURS": float,
    "ANSWER_CACHE_BYTES": int,
}
_BOOLS = {"ACCESS_LOG", "METRICS", "ALLOW_OPEN", "SESSION_COOKIE_SECURE"}


def _cast(key: str, value):
    if key in _BOOLS:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off", ""):
            return False
        raise ConfigError(f"XSELL_{key}={value!r} is not a boolean; use true or false")
    cast = _CASTS.get(key)
    if cast is None or value is None:
        return value
    try:
        return cast(value)
    except (TypeError, ValueError):
        raise ConfigError(f"XSELL_{key}={value!r} is not a valid {cast.__name__}") from None


def load_settings(overrides: dict | None = None, environ=None) -> dict:
    """The effective settings: defaults, ``XSELL_<KEY>`` environment variables, ``overrides``."""
    environ = os.environ if environ is None else environ
    settings = dict(DEFAULTS)
    for key in DEFAULTS:
        env = environ.get(f"XSELL_{key}")
        if env is not None:
            settings[key] = _cast(key, env)
    for key, value in (overrides or {}).items():
        key = key.upper()
        if key.startswith("XSELL_"):
            key = key[len("XSELL_"):]
        settings[key] = _cast(key, value) if key in DEFAULTS else value
    if settings["RELOAD_INTERVAL"] < 0:
        raise ConfigError("XSELL_RELOAD_INTERVAL must be 0 (off) or a positive number of seconds")
    if not 1 <= settings["DEFAULT_LIMIT"] <= settings["MAX_LIMIT"]:
        raise ConfigError("XSELL_DEFAULT_LIMIT must lie between 1 and XSELL_MAX_LIMIT")
    return settings
