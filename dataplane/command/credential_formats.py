"""Which basic auth entries a cluster's `authorized_hashes` may hold, checked when the state
takes the cluster (dataplane/proxy/routing/credentials.py verifies them).

sozu's format is `user:hex(sha256(password))`. pysozu extension: htpasswd lines too (what
ingress-nginx's `auth-secret` holds): bcrypt (`$2y$`, `$2b$`, `$2a$`, cost 4..`MAX_BCRYPT_COST`),
Apache MD5 (`$apr1$`), `{SHA}` (base64 SHA-1) and traditional DES crypt (13 characters).
SHA-256/512-crypt (`$5$`, `$6$`) are refused: in Python a check takes about a second on the
worker's event loop, which an attacker could use to stall the worker.
"""

from __future__ import annotations

import re

MAX_BCRYPT_COST = 12
SHA256, BCRYPT, APR1, SHA1, DES = "sha256", "bcrypt", "apr1", "sha1", "des"
_SHA256 = re.compile(r"^[0-9a-fA-F]{64}$")
_BCRYPT = re.compile(r"^\$2[aby]\$([0-9]{2})\$[./A-Za-z0-9]{53}$")
_APR1 = re.compile(r"^\$apr1\$[./0-9A-Za-z]{0,8}\$[./0-9A-Za-z]{22}$")
_SHA1 = re.compile(r"^\{SHA\}[A-Za-z0-9+/]{27}=$")
_DES = re.compile(r"^[./0-9A-Za-z]{13}$")
_SLOW_CRYPT = re.compile(r"^\$[56]\$")


class CredentialError(ValueError):
    """An entry that cannot be checked; the message names the user, never the hash."""


def hash_kind(user: str, stored: str) -> str:
    """The format of one entry's hash (CredentialError when it is none we take)."""
    if _SHA256.match(stored):
        return SHA256
    if found := _BCRYPT.match(stored):
        cost = int(found.group(1))
        if not 4 <= cost <= MAX_BCRYPT_COST:
            raise CredentialError(
                f"user {user!r}: bcrypt cost {cost} is not in 4..{MAX_BCRYPT_COST} (each "
                "check runs on the worker's event loop; htpasswd -B uses 5)"
            )
        return BCRYPT
    if _APR1.match(stored):
        return APR1
    if _SHA1.match(stored):
        return SHA1
    if _DES.match(stored):
        return DES
    if _SLOW_CRYPT.match(stored):
        raise CredentialError(
            f"user {user!r}: SHA-256/512-crypt ($5$, $6$) hashes are not taken: about a second "
            "per check on the worker's event loop; use bcrypt (htpasswd -B)"
        )
    raise CredentialError(
        f"user {user!r}: not a SHA-256 hex digest or an htpasswd hash (bcrypt, $apr1$, "
        "{SHA}, crypt)"
    )


def split_entry(entry: str) -> tuple[str, str, str]:
    """`user:hash` -> (user, kind, hash)."""
    user, colon, stored = entry.partition(":")
    if not colon or not user:
        raise CredentialError("an entry is not user:hash")
    stored = stored.strip()
    return user, hash_kind(user, stored), stored
