"""ingress-nginx's CORS annotations -> a frontend's CORS policy (docs/cors.md).

Read with `--nginx-annotations` under `nginx.ingress.kubernetes.io/`, and always under
`pysozu.io/` (same names; ours win), as ingress-nginx's `cors` annotation parser reads them:

- `enable-cors: "true"` turns CORS on for every route of the Ingress; the other keys mean
  nothing without it (reported). A value that is not a Go boolean means off (reported).
- `cors-allow-origin`: comma-separated `*`, `null`, `scheme://host[:port]` or
  `scheme://*.host[:port]`; `*` anywhere means every origin; absent: `*`. An entry that
  cannot be read is left out and reported, as ingress-nginx skips it; when none is left,
  CORS stays off (reported). ingress-nginx falls back to `*` when the whole value fails its
  validator: pysozu never widens a list it cannot read.
- `cors-allow-methods` (letters), `cors-allow-headers` (letters, digits, `-`, `_`),
  `cors-expose-headers` (those and `*`): comma-separated; a value of another shape is
  reported and the default applies (ingress-nginx's defaults; no exposed headers).
- `cors-allow-credentials` (default true; not a boolean: true, reported), `cors-max-age`
  (seconds, default 1728000; not a whole number in 0..2^31-1: the default, reported).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

from ingress_operator.access_annotations import Lookup

from dataplane.command.cors_rules import MAX_AGE, ORIGIN
from dataplane.command.messages import CORS_HEADERS, CORS_METHODS, CorsPolicy

CORS_NAMES = frozenset(
    {
        "enable-cors",
        "cors-allow-origin",
        "cors-allow-methods",
        "cors-allow-headers",
        "cors-expose-headers",
        "cors-allow-credentials",
        "cors-max-age",
    }
)
DEFAULT_MAX_AGE = 1_728_000
# Go's strconv.ParseBool, which ingress-nginx's GetBoolAnnotation uses.
_BOOLS = {
    **dict.fromkeys(("1", "t", "T", "TRUE", "true", "True"), True),
    **dict.fromkeys(("0", "f", "F", "FALSE", "false", "False"), False),
}
# ingress-nginx's validators (internal/ingress/annotations/cors, parser.HeadersVariable).
_METHODS = re.compile(r"([A-Za-z]+,?\s?)+")
_HEADERS = re.compile(r"[A-Za-z0-9\-_, ]*")
_EXPOSE = re.compile(r"(([A-Za-z0-9\-_]+|\*),?\s?)+")


@dataclass(frozen=True, slots=True)
class Cors:
    """The policy the annotations ask for, hashable (it is part of interned route keys)."""

    origins: tuple[str, ...] = ("*",)
    methods: tuple[str, ...] = CORS_METHODS
    headers: tuple[str, ...] = CORS_HEADERS
    expose: tuple[str, ...] = ()
    credentials: bool = True
    max_age: int = DEFAULT_MAX_AGE

    def policy(self) -> CorsPolicy:
        return CorsPolicy(
            allow_origins=list(self.origins),
            allow_methods=list(self.methods),
            allow_headers=list(self.headers),
            expose_headers=list(self.expose),
            allow_credentials=self.credentials,
            max_age=self.max_age,
        )


@dataclass(slots=True)
class CorsResult:
    cors: Cors | None = None  # None: CORS is off
    problems: list[str] = field(default_factory=list)


def _split(value: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in value.split(",") if item.strip())


def _origins(key: str, value: str, problems: list[str]) -> tuple[str, ...]:
    origins: list[str] = []
    for origin in _split(value):
        if origin == "*":
            return ("*",)
        if origin == "null" or ORIGIN.fullmatch(origin):
            if origin not in origins:
                origins.append(origin)
        else:
            problems.append(
                f"annotation {key}: {origin!r} is not *, null, scheme://host[:port] "
                "or scheme://*.host[:port]; left out"
            )
    return tuple(origins)


def parse_cors(find: Lookup) -> CorsResult:
    result = CorsResult()
    problems = result.problems
    enabled = find("enable-cors")
    on = False
    if enabled is not None:
        on = _BOOLS.get(enabled[1].strip(), False)
        if enabled[1].strip() not in _BOOLS:
            problems.append(f"annotation {enabled[0]}: {enabled[1]!r} is not true or false; off")
    if not on:
        for name in sorted(CORS_NAMES - {"enable-cors"}):
            if (found := find(name)) is not None:
                problems.append(f"annotation {found[0]}: has no effect without enable-cors")
        return result
    cors = Cors()
    if (found := find("cors-allow-origin")) is not None:
        origins = _origins(found[0], found[1], problems)
        if not origins:
            problems.append(f"annotation {found[0]}: no origin can be read, so CORS is off")
            return result
        cors = replace(cors, origins=origins)
    for name, pattern, attribute, default in (
        ("cors-allow-methods", _METHODS, "methods", "the default GET, PUT, POST, ..."),
        ("cors-allow-headers", _HEADERS, "headers", "the default DNT,Keep-Alive,..."),
        ("cors-expose-headers", _EXPOSE, "expose", "no header is exposed"),
    ):
        if (found := find(name)) is None:
            continue
        if pattern.fullmatch(found[1]) and all(" " not in item for item in _split(found[1])):
            items = _split(found[1])
            if attribute == "methods":
                cors = replace(cors, methods=items)
            elif attribute == "headers":
                cors = replace(cors, headers=items)
            else:
                cors = replace(cors, expose=items)
        else:
            problems.append(f"annotation {found[0]}: {found[1]!r} cannot be read; {default}")
    if (found := find("cors-allow-credentials")) is not None:
        credentials = _BOOLS.get(found[1].strip())
        if credentials is None:
            problems.append(f"annotation {found[0]}: {found[1]!r} is not true or false; true")
        else:
            cors = replace(cors, credentials=credentials)
    if (found := find("cors-max-age")) is not None:
        text = found[1].strip()
        if text.isdigit() and int(text) <= MAX_AGE:
            cors = replace(cors, max_age=int(text))
        else:
            problems.append(
                f"annotation {found[0]}: {found[1]!r} is not a number of seconds in "
                f"0..{MAX_AGE}; {DEFAULT_MAX_AGE}"
            )
    result.cors = cors
    return result
