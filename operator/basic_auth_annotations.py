"""ingress-nginx's basic auth (`auth-type: basic`) -> the cluster's `authorized_hashes` and
`required_auth` on every route of the Ingress, enforced by the proxy.

Read with `--nginx-annotations` under `nginx.ingress.kubernetes.io/`, and always under
`pysozu.io/` (same names; ours win), as ingress-nginx's auth annotation parser reads them:

- `auth-secret`: the Secret's name (or `<namespace>/<name>` of the Ingress's own namespace);
- `auth-secret-type`: `auth-file` (default: the `auth` key holds an htpasswd file) or
  `auth-map` (each key is a user, its value the hash);
- `auth-realm`: the realm of the `WWW-Authenticate` challenge (default empty, as nginx's
  `auth_basic ""`).

Hashes: bcrypt (`htpasswd -B`), `$apr1$` (`htpasswd -m`, its default), `{SHA}` and crypt, as the
dataplane takes them (dataplane/command/credential_formats.py). A line the dataplane cannot
check is reported by user name and left out (that user cannot log in); with none left every
request gets 401. What cannot be enforced fails closed (the routes answer 503): `auth-type`
other than `basic` (`digest` is not served), no `auth-secret`, a Secret that is missing, in
another namespace or without an `auth` key for `auth-file`, and `auth-secret`/`auth-realm`
without `auth-type`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ingress_operator.access_annotations import Lookup
from ingress_operator.annotation_review import Refusals
from ingress_operator.model import AuthSecret, ObjectKey

BASIC_AUTH_NAMES = frozenset({"auth-type", "auth-secret", "auth-secret-type", "auth-realm"})
_REALM = re.compile(r"^[ !#-~]{0,128}$")  # printable, no '"'
_SECRET_TYPES = ("auth-file", "auth-map")


@dataclass(frozen=True, slots=True)
class BasicAuth:
    """What the annotations ask for: the Secret to read, how, and the realm."""

    secret_key: str  # the annotation key that named the Secret (for messages)
    secret: str
    kind: str  # "auth-file" or "auth-map"
    realm: str


@dataclass(slots=True)
class BasicAuthResult(Refusals):
    auth: BasicAuth | None = None


def parse_basic_auth(find: Lookup) -> BasicAuthResult:
    result = BasicAuthResult()
    found = {name: hit for name in sorted(BASIC_AUTH_NAMES) if (hit := find(name)) is not None}
    if not found:
        return result
    kind_hit = found.get("auth-type")
    if kind_hit is None:
        for key, _ in found.values():
            result.refuse(key, "has no effect without auth-type: basic (remove it, or add that)")
        return result
    type_key, value = kind_hit
    if value.strip().lower() != "basic":
        result.refuse(type_key, f"{value!r}: only basic auth is served (not digest)")
        return result
    secret_hit = found.get("auth-secret")
    if secret_hit is None or not secret_hit[1].strip():
        result.refuse(type_key, "basic auth needs auth-secret")
        return result
    secret_kind = "auth-file"
    if (hit := found.get("auth-secret-type")) is not None:
        secret_kind = hit[1].strip()
        if secret_kind not in _SECRET_TYPES:
            result.refuse(hit[0], f"{hit[1]!r} is not auth-file or auth-map")
            return result
    realm = ""
    if (hit := found.get("auth-realm")) is not None:
        if _REALM.match(hit[1]):
            realm = hit[1]
        else:
            result.problems.append(
                f"annotation {hit[0]}: a realm is up to 128 printable characters, no '\"'; "
                "an empty realm is used"
            )
    result.auth = BasicAuth(secret_hit[0], secret_hit[1].strip(), secret_kind, realm)
    return result


def resolve_credentials(
    auth: BasicAuth, namespace: str, secrets: dict[ObjectKey, AuthSecret], result: BasicAuthResult
) -> list[str] | None:
    """The `user:hash` entries of the named Secret (None: refused, said in `result`)."""
    name = auth.secret
    if "/" in name:
        other, _, name = name.partition("/")
        if other != namespace:
            result.refuse(auth.secret_key, "a Secret of another namespace is not read")
            return None
    secret = secrets.get(ObjectKey(namespace, name))
    if secret is None:
        result.refuse(
            auth.secret_key,
            f"Secret {namespace}/{name} not found (or it holds no htpasswd entries)",
        )
        return None
    if auth.kind == "auth-file":
        if secret.file_entries is None:
            result.refuse(auth.secret_key, f"Secret {namespace}/{name} has no auth key")
            return None
        entries, problems = secret.file_entries, secret.file_problems
    else:
        entries, problems = secret.map_entries, secret.map_problems
    for problem in problems:
        result.problems.append(
            f"annotation {auth.secret_key}: Secret {namespace}/{name}, {problem}; left out"
        )
    return list(entries)
