"""A frontend's CORS policy, compiled once, as ingress-nginx's `enable-cors` serves it.

pysozu extension to sozu (docs/cors.md). `Cors.build` makes one per frontend with a `cors`
policy, None otherwise: routes without CORS pay one attribute test (`Route.cors`).

Behaviour (ingress-nginx's nginx.tmpl CORS block): a request whose `Origin` is allowed gets
Access-Control-Allow-Origin (the origin as sent; `*` when every origin is allowed), -Allow-
Credentials (when allowed), -Allow-Methods, -Allow-Headers, -Expose-Headers (when set) and
-Max-Age, replacing any the backend sends, and on the proxy's own answers too. An allowed
`OPTIONS` request is answered by the proxy: 204, those headers, Content-Length 0; it never
reaches the backend. With `*`, every request counts as allowed (ingress-nginx sets the origin
to `*` whatever the client sent). An origin not allowed gets no CORS header and its OPTIONS
goes to the backend. Origins match case-insensitively, as nginx's `~*`, but over the whole
value (ingress-nginx's regex is not anchored at the start; ours is: fail closed).
"""

from __future__ import annotations

import re

from dataplane.command.cors_rules import ORIGIN, cors_problem
from dataplane.command.messages import CorsPolicy
from dataplane.proxy.routing.rules import RouterError

PREFLIGHT = 204
OPTIONS = b"OPTIONS"
ALLOW_ORIGIN = "Access-Control-Allow-Origin"
# One Origin field (two or more: not allowed). The block is `\r\nname:value` lines.
_ORIGIN_FIELD = re.compile(rb"\r\norigin:[ \t]*([^\r]*)", re.IGNORECASE)

HeaderEdits = tuple[tuple[str, str], ...]


class CorsValue(str):
    """A response header value set by a CORS policy: default answers carry it too."""

    __slots__ = ()


class CorsOrigin(CorsValue):
    """The Access-Control-Allow-Origin value; it also carries the response's CORS header
    lines as bytes (`lines`) and how many edits they stand for (`span`), so `set_headers`
    appends them in one piece where the head has no Access-Control-* field yet."""

    __slots__ = ("lines", "span")
    lines: bytes
    span: int


class Cors:
    """What a CORS policy adds to a request's response (`headers`)."""

    __slots__ = ("_any", "_matcher", "_static", "_static_lines")

    def __init__(self, policy: CorsPolicy) -> None:
        problem = cors_problem(policy)
        if problem is not None:
            raise RouterError(problem)
        static: list[tuple[str, str]] = []
        if policy.allow_credentials:
            static.append(("Access-Control-Allow-Credentials", CorsValue("true")))
        if policy.allow_methods:
            methods = ", ".join(policy.allow_methods)
            static.append(("Access-Control-Allow-Methods", CorsValue(methods)))
        if policy.allow_headers:
            allowed = ",".join(policy.allow_headers)
            static.append(("Access-Control-Allow-Headers", CorsValue(allowed)))
        if policy.expose_headers:
            exposed = ", ".join(policy.expose_headers)
            static.append(("Access-Control-Expose-Headers", CorsValue(exposed)))
        static.append(("Access-Control-Max-Age", CorsValue(str(policy.max_age))))
        self._static: HeaderEdits = tuple(static)
        self._static_lines = b"".join(f"{n}: {v}\r\n".encode("latin-1") for n, v in static)
        self._any: HeaderEdits | None = None
        self._matcher: re.Pattern[bytes] | None = None
        if policy.allow_origins == ["*"]:
            self._any = ((ALLOW_ORIGIN, self._origin(b"*")), *static)
        else:
            self._matcher = re.compile(
                "|".join(_origin_regex(origin) for origin in policy.allow_origins).encode(),
                re.IGNORECASE,
            )

    @classmethod
    def build(cls, policy: CorsPolicy | None) -> Cors | None:
        return None if policy is None else cls(policy)

    def headers(self, block: bytes) -> HeaderEdits | None:
        """The CORS response headers for a request head's field `block`; None when its
        origin is not allowed."""
        if self._any is not None:
            return self._any
        found = _ORIGIN_FIELD.findall(block)
        if len(found) != 1:
            return None
        origin = found[0].rstrip(b" \t")
        assert self._matcher is not None
        if self._matcher.fullmatch(origin) is None:
            return None
        return ((ALLOW_ORIGIN, self._origin(origin)), *self._static)

    def _origin(self, origin: bytes) -> CorsOrigin:
        value = CorsOrigin(origin.decode("ascii"))
        value.lines = b"Access-Control-Allow-Origin: " + origin + b"\r\n" + self._static_lines
        value.span = len(self._static) + 1
        return value


def _origin_regex(origin: str) -> str:
    """One allowed origin as a regex: literal, its leading `*.` one DNS label."""
    if origin == "null":
        return "(?:null)"
    match = ORIGIN.fullmatch(origin)
    assert match is not None  # cors_problem checked it
    scheme, wildcard, host, port = match.groups()
    label = r"[A-Za-z0-9-]+\." if wildcard else ""
    return f"(?:{re.escape(scheme)}://{label}{re.escape(host)}{re.escape(port or '')})"


def edited_cors(edits: HeaderEdits) -> HeaderEdits:
    """The CORS headers among a forwarded request's response edits (for answers after
    forwarding: a backend that fails still answers with them)."""
    return tuple(edit for edit in edits if isinstance(edit[1], CorsValue))


def with_cors(answer: bytes, status: int, headers: HeaderEdits) -> bytes:
    """A default answer with the CORS headers; for PREFLIGHT, the preflight answer itself."""
    lines = b"".join(f"{name}: {value}\r\n".encode("latin-1") for name, value in headers)
    if status == PREFLIGHT:
        return (
            b"HTTP/1.1 204 No Content\r\n" + lines + b"Content-Type: text/plain charset=UTF-8\r\n"
            b"Content-Length: 0\r\nConnection: close\r\n\r\n"
        )
    line_end = answer.index(b"\r\n") + 2
    return answer[:line_end] + lines + answer[line_end:]
