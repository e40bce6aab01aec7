"""pysozu extension: a cluster's `hash_key`, the request variables whose value keys its
consistent hash (`HRW` or `MAGLEV`) for HTTP requests, as nginx's `hash <key> consistent` that
ingress-nginx's `upstream-hash-by` writes. sozu hashes UDP flows only: its HTTP requests to an
HRW or MAGLEV cluster fall back to round robin, as they still do here without a `hash_key`.

A template is text with nginx variables (`$name` or `${name}`): `$request_uri` (the target as
sent, query included), `$uri` (the normalised path), `$host`, `$scheme`, `$remote_addr` and
`$binary_remote_addr` (the client address, as the access rules see it), `$http_<header>`,
`$cookie_<name>`, `$arg_<name>`. Anything else is an error when the cluster is added.
"""

from __future__ import annotations

import re

MAX_TEMPLATE = 256
FIXED = frozenset({"request_uri", "uri", "host", "scheme", "remote_addr", "binary_remote_addr"})
PREFIXES = ("http_", "cookie_", "arg_")
_VARIABLE = re.compile(r"\$(?:\{([A-Za-z0-9_]+)\}|([A-Za-z0-9_]+))")

Part = tuple[str, str]  # ("text", literal) or (variable kind, its name: header/cookie/arg)


def parse_hash_key(template: str) -> tuple[Part, ...]:
    """The template's parts; ValueError saying why when it cannot be one."""
    if not template or len(template) > MAX_TEMPLATE or any(c in template for c in "\r\n\0"):
        raise ValueError(f"a hash key is 1..{MAX_TEMPLATE} characters without CR, LF or NUL")
    parts: list[Part] = []
    at = 0
    for found in _VARIABLE.finditer(template):
        if found.start() > at:
            parts.append(("text", template[at : found.start()]))
        name = found.group(1) or found.group(2)
        if name in FIXED:
            parts.append((name, ""))
        else:
            prefix = next((p for p in PREFIXES if name.startswith(p) and len(name) > len(p)), None)
            if prefix is None:
                raise ValueError(f"${name} is not a variable a hash key can use")
            parts.append((prefix[:-1], name[len(prefix) :]))
        at = found.end()
    if at < len(template):
        parts.append(("text", template[at:]))
    if all(kind == "text" for kind, _ in parts):
        raise ValueError(f"hash key {template!r} names no variable: every request would be alike")
    return tuple(parts)
