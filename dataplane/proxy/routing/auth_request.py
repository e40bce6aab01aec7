"""External authorisation, the pure part: a frontend's `auth_request` precomputed when the
frontend is added (`AuthPolicy`), the sub-request it sends, and the verdict an answer means.

As ingress-nginx's `auth-url` (nginx `auth_request`): the sub-request carries the request's
headers (as they would be forwarded: X-Forwarded-*, X-Real-IP, the request id), no body, and
X-Original-URL, X-Original-Method, X-Sent-From, X-Auth-Request-Redirect. A 2xx answer lets the
request through with the `response_headers` copied from it (a header the answer lacks is
removed from the request: a client cannot supply it); a 401 or 403 is the client's answer, a
401 becoming a 302 to the signin URL when there is one; any other answer is a 500. The I/O is
in mux/auth_request.py.
"""

from __future__ import annotations

import re
from urllib.parse import quote

from dataplane.command.messages import AuthRequest
from dataplane.proxy.http1.head import RequestHead, ResponseHead
from dataplane.proxy.routing.policy import set_headers

SENT_FROM = "nginx-ingress-controller"  # ingress-nginx's value: auth services may check it
# A sub-request has no body and is not an upgrade: these request headers are removed from
# the copy (also by routing/error_pages.py).
BODYLESS_DROPPED = (
    ("Content-Length", ""),
    ("Transfer-Encoding", ""),
    ("Expect", ""),
    ("Connection", ""),
    ("Upgrade", ""),
)
_SIGNIN_VARIABLE = re.compile(
    r"\$(escaped_request_uri|request_uri|pass_access_scheme|scheme|http_host|host)\b"
)
_ESCAPE_SAFE = "/"  # nginx's $escaped_request_uri keeps slashes


class AuthPolicy:
    """A route's `auth_request`, ready for the request path."""

    __slots__ = (
        "cluster_id",
        "copied",
        "host",
        "hsts",
        "line",
        "method",
        "redirect",
        "signin",
        "signin_param",
    )

    def __init__(self, auth: AuthRequest, hsts: str) -> None:
        self.cluster_id = auth.cluster_id
        self.method = auth.method
        self.line = f"{auth.method} {auth.path} HTTP/1.1".encode("ascii")
        # name and its pattern in a response block (lower-cased for the search)
        self.copied = tuple(
            (
                name,
                re.compile(
                    rb"\r\n" + re.escape(name.lower().encode("ascii")) + rb":[ \t]*([^\r]*)"
                ),
            )
            for name in dict.fromkeys(auth.response_headers)
        )
        self.signin = auth.signin
        self.signin_param = auth.signin_redirect_param
        self.redirect = auth.request_redirect
        self.host = auth.host
        self.hsts = hsts

    @classmethod
    def build(cls, auth: AuthRequest | None, hsts: str | None) -> AuthPolicy | None:
        return None if auth is None else cls(auth, hsts or "")

    def request_head(self, forwarded: bytes, request: RequestHead, scheme: str) -> bytes:
        """The sub-request for `request`, from its forwarded head (`forward_request`)."""
        line_end = forwarded.index(b"\r\n")
        head = self.line + forwarded[line_end:]
        host = request.host.decode("latin-1")
        edits: tuple[tuple[str, str], ...] = (
            *BODYLESS_DROPPED,
            ("X-Original-URL", f"{scheme}://{host}{request.path}"),
            ("X-Original-Method", request.method.decode("ascii")),
            ("X-Sent-From", SENT_FROM),
            ("X-Auth-Request-Redirect", self.redirect or request.path),
        )
        if self.host is not None:
            edits += (("Host", self.host),)
        return set_headers(head, edits)

    def copies(self, response: ResponseHead) -> tuple[tuple[str, str], ...]:
        """The request header edits a 2xx answer makes: each copied header with the auth
        answer's value, or removed when the answer has none."""
        block = response.block.lower()
        edits = []
        for name, pattern in self.copied:
            found = pattern.search(block)
            value = ""
            if found is not None:
                start, end = found.span(1)
                value = response.block[start:end].rstrip(b" \t").decode("latin-1")
            edits.append((name, value))
        return tuple(edits)

    def signin_location(self, request: RequestHead, scheme: str) -> str | None:
        """Where a 401 sends the client (None: no signin URL, the 401 stands)."""
        signin = self.signin
        if signin is None:
            return None
        host = request.host.decode("latin-1")
        uri = request.path
        values = {
            "escaped_request_uri": quote(uri, safe=_ESCAPE_SAFE),
            "request_uri": uri,
            "pass_access_scheme": scheme,
            "scheme": scheme,
            "http_host": host,
            "host": host.rsplit(":", 1)[0] if not host.endswith("]") else host,
        }
        location = _SIGNIN_VARIABLE.sub(lambda m: values[m.group(1)], signin)
        param = self.signin_param
        query = location.partition("?")[2]
        if not any(part.partition("=")[0] == param for part in query.split("&") if part):
            original = f"{scheme}://{host}{quote(uri, safe=_ESCAPE_SAFE)}"
            location += ("&" if "?" in location else "?") + f"{param}={original}"
        return location


def verdict_status(status: int) -> int:
    """200 (let through), 401, 403, or 500 (anything else) for an auth answer's status."""
    if 200 <= status < 300:
        return 200
    if status in (401, 403):
        return status
    return 500
