"""API keys: each key has a role; keys are kept and compared only as sha256 digests.

``XSELL_API_KEYS`` holds ``role:key`` pairs (comma-separated); the file named by
``XSELL_API_KEYS_FILE`` holds one ``role:sha256-hex-of-key`` per line (``#``
comments allowed). Roles are ranked: ``storefront`` < ``crm`` < ``admin``; a
key may call every endpoint whose role is at or below its own. Without any
key the service is open to loopback clients only.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import ipaddress
import logging
import re

from recsys.exceptions import ConfigError

from .errors import ApiError

log = logging.getLogger(__name__)

ROLES = {"storefront": 1, "crm": 2, "admin": 3}
_HEX = re.compile(r"^[0-9a-fA-F]{64}$")


def digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8")).digest()


def _check_role(role: str, where: str) -> str:
    role = role.strip().lower()
    if role not in ROLES:
        # Never echo the text: a reversed 'key:role' pair puts the key here.
        raise ConfigError(f"{where}: the role is not one of {', '.join(ROLES)} (expected "
                          f"'role:key', e.g. 'storefront:<key>')")
    return role


class ApiKeys:
    """The configured keys as (role, sha256 digest) pairs."""

    def __init__(self, entries: list[tuple[str, bytes]]):
        self.entries = entries

    @property
    def enabled(self) -> bool:
        return bool(self.entries)

    @classmethod
    def from_settings(cls, pairs: str | None, path: str | None) -> ApiKeys:
        entries = []
        for n, pair in enumerate(p for p in (pairs or "").split(",") if p.strip()):
            role, sep, key = pair.strip().partition(":")
            if not sep or not key.strip():
                # Never echo the text: it may be a key.
                raise ConfigError(f"XSELL_API_KEYS entry {n + 1} is not 'role:key'")
            entries.append((_check_role(role, f"XSELL_API_KEYS entry {n + 1}"),
                            digest(key.strip())))
        if path:
            try:
                with open(path, encoding="utf-8") as fh:
                    lines = fh.read().splitlines()
            except OSError as exc:
                raise ConfigError(f"XSELL_API_KEYS_FILE {path} cannot be read ({exc.strerror})"
                                  ) from None
            for n, line in enumerate(lines, 1):
                line = line.strip()
                if not line or line.startswith("#"):
                    continue
                role, sep, hexdigest = line.partition(":")
                if not sep or not _HEX.match(hexdigest.strip()):
                    raise ConfigError(f"{path} line {n}: expected 'role:<sha256 hex of the key>'")
                entries.append((_check_role(role, f"{path} line {n}"),
                                bytes.fromhex(hexdigest.strip())))
        return cls(entries)

    def role_of(self, key: str) -> str | None:
        """The best role of a presented key, or None; every entry is compared (no early exit)."""
        presented = digest(key)
        best = None
        for role, expected in self.entries:
            if hmac.compare_digest(presented, expected):
                if best is None or ROLES[role] > ROLES[best]:
                    best = role
        return best


def presented_key(headers) -> str | None:
    key = headers.get("X-API-Key")
    if key:
        return key.strip()
    auth = headers.get("Authorization", "")
    scheme, _, value = auth.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return None


@functools.lru_cache(maxsize=4096)
def is_loopback(addr: str | None) -> bool:
    if not addr:
        return False
    try:
        return ipaddress.ip_address(addr.split("%")[0]).is_loopback
    except ValueError:
        return False


def authorize(keys: ApiKeys, needed: str | None, headers, remote_addr: str | None,
              allow_open: bool) -> str | None:
    """The caller's role, or an ApiError (401/403). ``needed`` None: open endpoint."""
    if needed is None:
        return None
    if not keys.enabled:
        # A request relayed by the reverse proxy (deploy/nginx) comes from loopback too:
        # it counts as the remote client it is.
        proxied = "X-Forwarded-For" in headers or "Forwarded" in headers
        if allow_open or (is_loopback(remote_addr) and not proxied):
            return "admin"
        raise ApiError(403, "forbidden", "no API keys are configured, so the service answers "
                       "loopback clients only; set XSELL_API_KEYS or XSELL_API_KEYS_FILE")
    key = presented_key(headers)
    if key is None:
        raise ApiError(401, "missing_api_key", "this endpoint needs an API key: send "
                       "'X-API-Key: <key>' or 'Authorization: Bearer <key>'",
                       {"WWW-Authenticate": 'Bearer realm="xsell"'})
    role = keys.role_of(key)
    if role is None:
        raise ApiError(401, "invalid_api_key", "the API key is not valid",
                       {"WWW-Authenticate": 'Bearer realm="xsell"'})
    if ROLES[role] < ROLES[needed]:
        raise ApiError(403, "forbidden", f"a {role} key may not call this endpoint; it needs "
                       f"the {needed} role or above")
    return role
