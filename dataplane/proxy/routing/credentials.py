"""A cluster's basic auth check: the entries of its `authorized_hashes` (formats:
dataplane/command/credential_formats.py), verified with libpass (passlib's maintained fork;
bcrypt through pyca's `bcrypt`).

Slow hashes are verified once per (user, password): the verdict is cached under the SHA-256 of
the password (never the password itself), so a logged-in client costs one SHA-256 per request.
The cache is bounded (`CACHE_SIZE`, emptied when full) and lives as long as the cluster's
configuration. A wrong password that is new costs one verification, as in nginx (which runs
crypt(3) in its worker): keep bcrypt costs low (htpasswd -B uses 5; at most 12 is taken).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from typing import TYPE_CHECKING

from dataplane.command.credential_formats import (
    APR1,
    BCRYPT,
    DES,
    SHA1,
    SHA256,
    CredentialError,
    split_entry,
)
from dataplane.command.lazy_import import lazy_module

if TYPE_CHECKING:
    import hashlib
    import hmac
else:  # OpenSSL (4.8 MB of memory) loads on first use: command/lazy_import.py
    hashlib = lazy_module("hashlib", globals())
    hmac = lazy_module("hmac", globals())

MAX_CREDENTIALS = 4096  # bytes of a base64 Authorization value
CACHE_SIZE = 1024
_HANDLERS = {BCRYPT: "bcrypt", APR1: "apr_md5_crypt", SHA1: "ldap_sha1", DES: "des_crypt"}

Verifier = Callable[[bytes], bool]  # the password -> whether it matches


def _verifier(kind: str, stored: str) -> Verifier:
    if kind == SHA256:
        digest = stored.lower().encode("ascii")
        return lambda password: hmac.compare_digest(
            hashlib.sha256(password).hexdigest().encode("ascii"), digest
        )
    # libpass is imported when a cluster first holds an htpasswd entry: a worker that serves
    # none (sozu's SHA-256 entries, or no basic auth) does not carry it.
    from passlib import hash as handlers

    verify = getattr(handlers, _HANDLERS[kind]).verify

    def check(password: bytes) -> bool:
        try:
            return bool(verify(password, stored))
        except (ValueError, TypeError):
            return False

    return check


class Credentials:
    """The users a cluster accepts, and the verdicts already reached (see module doc)."""

    __slots__ = ("_cache", "_users")

    def __init__(self, entries: list[str]) -> None:
        self._users: dict[bytes, list[Verifier]] = {}
        for entry in entries:
            try:
                user, kind, stored = split_entry(entry)
            except CredentialError:
                continue  # the state refuses such a cluster; nothing to check here
            self._users.setdefault(user.encode("utf-8"), []).append(_verifier(kind, stored))
        self._cache: dict[tuple[bytes, bytes], bool] = {}

    def check(self, authorization: bytes | None) -> bool:
        """Whether a `Basic` Authorization value names a user with the right password."""
        if authorization is None or not self._users:
            return False
        scheme, _, encoded = authorization.partition(b" ")
        if scheme.lower() != b"basic" or len(encoded) > MAX_CREDENTIALS:
            return False
        try:
            decoded = base64.b64decode(encoded.strip(), validate=True)
        except (binascii.Error, ValueError):
            return False
        user, colon, password = decoded.partition(b":")
        checks = self._users.get(user) if colon else None
        if checks is None:
            return False
        key = (user, hashlib.sha256(password).digest())
        known = self._cache.get(key)
        if known is not None:
            return known
        verdict = False
        for check in checks:  # every entry of the user, whatever matches
            verdict |= check(password)
        if len(self._cache) >= CACHE_SIZE:
            self._cache.clear()
        self._cache[key] = verdict
        return verdict
