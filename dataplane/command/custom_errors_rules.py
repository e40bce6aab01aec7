"""A frontend's `custom_errors` (a pysozu extension, docs/custom-errors.md): its checks, its TOML
table and its CLI flags.

ingress-nginx's `custom-http-errors`: when the backend answers one of `codes`, the response is
dropped and the request is served by the cluster `cluster_id` instead (a GET of `/` carrying
X-Code, X-Format, X-Original-URI, X-Request-ID and the static `headers`, such as X-Namespace).
`custom_errors_problem` says what is wrong with one, or None: the state checks turn it into a
StateError, the TOML reader and the CLI report it before anything is sent.
"""

from __future__ import annotations

import re

from dataplane.command.config_reader import _MISSING, Table
from dataplane.command.messages import CustomErrors

MAX_HEADERS = 16
MAX_VALUE = 1024
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,256}")
_ID_FORBIDDEN = re.compile(r"[\s\x00-\x1f\x7f]")
_VALUE = re.compile(r"[\x20-\x7e]*")
# Set by the proxy for each intercepted request: a static header cannot replace them.
PER_REQUEST = frozenset({"x-code", "x-format", "x-original-uri", "x-request-id"})


def custom_errors_problem(errors: CustomErrors) -> str | None:
    """What makes `errors` unusable, or None."""
    if not errors.cluster_id or _ID_FORBIDDEN.search(errors.cluster_id):
        return f"cluster_id {errors.cluster_id!r} is not a cluster id"
    if not errors.codes:
        return "codes is empty"
    for code in errors.codes:
        if not 300 <= code <= 599:
            return f"code {code} is not a status 300..599"
    if len(errors.headers) > MAX_HEADERS:
        return f"at most {MAX_HEADERS} headers"
    for name, value in errors.headers.items():
        if not _TOKEN.fullmatch(name) or name.lower() in PER_REQUEST:
            return f"header {name!r} is not a header name the error request may carry"
        if len(value) > MAX_VALUE or not _VALUE.fullmatch(value):
            return f"header {name}: value {value!r} must be printable ASCII"
    return None


def read_custom_errors(frontend: Table) -> CustomErrors | None:
    """`custom_errors = { codes = [404, 503], cluster_id = "errors", headers = {...} }`."""
    table = frontend.table("custom_errors")
    if table is None:
        return None
    cluster_id = table.text("cluster_id", required=True)
    codes = table._typed("codes", (list,), "an array of status codes", True)
    codes = None if codes is _MISSING else codes
    errors = CustomErrors(
        cluster_id=cluster_id or "",
        codes=[c for c in codes or [] if isinstance(c, int) and not isinstance(c, bool)],
        headers=table.str_map("headers") or {},
    )
    table.finish(strict=True)
    if cluster_id is None or codes is None:
        return None  # reported by the read
    if len(errors.codes) != len(codes):
        table.error("codes", "status codes are integers")
        return None
    problem = custom_errors_problem(errors)
    if problem is not None:
        table.error(None, problem)
        return None
    return errors
