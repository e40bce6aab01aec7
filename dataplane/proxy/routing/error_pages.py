"""Custom error pages, the pure part: a frontend's `custom_errors` precomputed when the frontend
is added (`ErrorPages`) and the request it sends to the error cluster.

ingress-nginx's `custom-http-errors` (nginx `proxy_intercept_errors` with an `error_page` per
code): when the backend answers one of `codes`, its response is dropped and the request is
served by the error cluster (ingress-nginx's default backend) instead. That request is a GET
of `/` (HEAD for a HEAD) with the client's headers, no body, and X-Code (the backend's status),
X-Format (the client's Accept), X-Original-URI (the request's target), X-Request-ID (the
request id the backend saw) and the route's static headers (X-Namespace, X-Ingress-Name,
X-Service-Name, X-Service-Port from the ingress controller). Its answer, status included, is
what the client gets. The I/O is in mux/error_pages.py.
"""

from __future__ import annotations

import re

from dataplane.command.messages import CustomErrors
from dataplane.proxy.http1.head import RequestHead
from dataplane.proxy.routing.auth_request import BODYLESS_DROPPED
from dataplane.proxy.routing.policy import set_headers

_ACCEPT = re.compile(rb"\r\naccept:[ \t]*([^\r]*)")


class ErrorPages:
    """A route's `custom_errors`, ready for the response path."""

    __slots__ = ("cluster_id", "codes", "headers")

    def __init__(self, errors: CustomErrors) -> None:
        self.cluster_id = errors.cluster_id
        self.codes = frozenset(errors.codes)
        self.headers = tuple(errors.headers.items())

    @classmethod
    def build(cls, errors: CustomErrors | None) -> ErrorPages | None:
        return None if errors is None else cls(errors)

    def request_head(self, request: RequestHead, status: int, request_id: str) -> bytes:
        """The error cluster's request for `request`, whose backend answered `status`."""
        method = b"HEAD" if request.method == b"HEAD" else b"GET"
        head = method + b" / HTTP/1.1" + request.block + b"\r\n\r\n"
        found = _ACCEPT.search(request.block.lower())
        accept = ""
        if found is not None:
            start, end = found.span(1)
            accept = request.block[start:end].rstrip(b" \t").decode("latin-1")
        edits = (
            *BODYLESS_DROPPED,
            ("X-Code", str(status)),
            ("X-Format", accept),
            ("X-Original-URI", request.path),
            ("X-Request-ID", request_id),
            *self.headers,
        )
        return set_headers(head, edits)
