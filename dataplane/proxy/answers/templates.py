"""The built-in default answers and which template variables each status may use.

The statuses, headers and variables are sozu 2.1's (`lib/src/protocol/kawa_h1/answers.rs`);
the page text is ours. Every built-in answer closes the connection and carries the request id.
"""

from __future__ import annotations

# Variables a template may use, per answer name. A `%NAME` that is not listed for the template
# is left as literal text, as sozu leaves it.
_COMMON = ("ROUTE", "REQUEST_ID")
_PARSE = ("PHASE", "SUCCESSFULLY_PARSED", "PARTIALLY_PARSED", "INVALID", "MESSAGE")
VARIABLES: dict[str, tuple[str, ...]] = {
    "301": (*_COMMON, "REDIRECT_LOCATION"),
    "302": (*_COMMON, "REDIRECT_LOCATION"),
    "308": (*_COMMON, "REDIRECT_LOCATION"),
    "400": (*_COMMON, *_PARSE),
    "401": (*_COMMON, "WWW_AUTHENTICATE"),
    # 403 is a pysozu addition: a frontend's source lists (access.py).
    "403": _COMMON,
    "404": _COMMON,
    "408": (*_COMMON, "DURATION"),
    "413": (*_COMMON, "CAPACITY", "MESSAGE", "PHASE"),
    "421": _COMMON,
    # 431 is a pysozu addition: sozu answers 413 for a request head larger than its buffer.
    "431": (*_COMMON, "CAPACITY", "MESSAGE", "PHASE"),
    "429": (*_COMMON, "CLUSTER_ID", "RETRY_AFTER"),
    # 500 is a pysozu addition: a route's external authorisation failed (auth_request).
    "500": (*_COMMON, "CLUSTER_ID", "MESSAGE"),
    "502": (*_COMMON, "CLUSTER_ID", "BACKEND_ID", *_PARSE),
    "503": (*_COMMON, "CLUSTER_ID", "BACKEND_ID", "MESSAGE"),
    "504": (*_COMMON, "CLUSTER_ID", "BACKEND_ID", "DURATION"),
    "507": (*_COMMON, "CLUSTER_ID", "BACKEND_ID", "CAPACITY", "MESSAGE", "PHASE"),
}
# Templates with any other name (a frontend's redirect_template) may use these.
CUSTOM_VARIABLES = (*_COMMON, "CLUSTER_ID", "REDIRECT_LOCATION", "TEMPLATE_NAME")
# Variables that only make sense in a body, and ones that only make sense as a header value.
BODY_ONLY = frozenset({"MESSAGE", "SUCCESSFULLY_PARSED", "PARTIALLY_PARSED", "INVALID"})
HEADER_ONLY = frozenset({"WWW_AUTHENTICATE", "RETRY_AFTER"})

REASONS = {
    301: "Moved Permanently",
    302: "Found",
    308: "Permanent Redirect",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    408: "Request Timeout",
    413: "Payload Too Large",
    421: "Misdirected Request",
    431: "Request Header Fields Too Large",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
    507: "Insufficient Storage",
}

# Headers a status needs beyond the common ones; a header whose variable is empty is dropped.
_EXTRA_HEADERS = {
    301: "Location: %REDIRECT_LOCATION\n",
    302: "Location: %REDIRECT_LOCATION\n",
    308: "Location: %REDIRECT_LOCATION\n",
    401: "WWW-Authenticate: %WWW_AUTHENTICATE\n",
    429: "Retry-After: %RETRY_AFTER\n",
}

_EXPLANATIONS = {
    400: "The request could not be parsed (%PHASE). %MESSAGE\n"
    "Parsed: %SUCCESSFULLY_PARSED\nPartially parsed: %PARTIALLY_PARSED\nInvalid: %INVALID",
    401: "This resource requires authentication.",
    403: "Your address may not use this route.",
    404: "No frontend matches this host and path.",
    408: "The request was not received completely within %DURATION.",
    413: "The request body is larger than this route accepts: %MESSAGE",
    431: "The request head does not fit in %CAPACITY bytes (%PHASE). %MESSAGE",
    421: "This host is not served by the certificate of this TLS connection. "
    "Open a new connection for it.",
    429: "Too many connections or requests from your address to cluster %CLUSTER_ID. Retry later.",
    500: "The external authorisation of this route failed. %MESSAGE",
    502: "The backend %BACKEND_ID of cluster %CLUSTER_ID sent an invalid response (%PHASE). "
    "%MESSAGE\nParsed: %SUCCESSFULLY_PARSED\nPartially parsed: %PARTIALLY_PARSED\n"
    "Invalid: %INVALID",
    503: "No backend of cluster %CLUSTER_ID could take the request. %MESSAGE",
    504: "The backend %BACKEND_ID of cluster %CLUSTER_ID did not answer within %DURATION.",
    507: "The response head from backend %BACKEND_ID does not fit in %CAPACITY bytes "
    "(%PHASE). %MESSAGE",
}

_PAGE = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>{status} {reason}</title></head>
<body style="font-family:sans-serif;max-width:50em;margin:2em auto">
<h1>{status} {reason}</h1>
<p>{explanation}</p>
<pre>route: %ROUTE
request id: %REQUEST_ID</pre>
<hr><small>pysozu</small>
</body></html>
"""


def default_head(status: int, sozu_id_header: str) -> str:
    """The head every built-in answer uses; also wraps body-only templates."""
    # Redirects are cacheable (sozu sends them without Cache-Control); error pages are not.
    cache = "" if status in (301, 302, 308) else "Cache-Control: no-cache\n"
    return (
        f"HTTP/1.1 {status} {REASONS[status]}\n"
        f"{_EXTRA_HEADERS.get(status, '')}"
        f"{cache}"
        "Connection: close\n"
        f"{sozu_id_header}: %REQUEST_ID\n"
        "\n"
    )


def default_answer(status: int, sozu_id_header: str) -> str:
    """A full built-in answer. Redirects have no body, as in sozu."""
    head = default_head(status, sozu_id_header)
    if status in (301, 302, 308):
        return head
    explanation = _EXPLANATIONS[status]
    return head + _PAGE.format(status=status, reason=REASONS[status], explanation=explanation)


def missing_template_answer(sozu_id_header: str) -> str:
    """Sent when a frontend names a template that does not exist (sozu's fallback 404)."""
    return default_head(404, sozu_id_header) + _PAGE.format(
        status=404,
        reason=REASONS[404],
        explanation='The template "%TEMPLATE_NAME" requested by this route does not exist.',
    )
