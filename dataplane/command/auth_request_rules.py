"""Value checks for a frontend's external authorisation (a pysozu extension,
docs/access-control.md, "External authorisation").

`auth_request_problem` says what is wrong with an `AuthRequest`, or None: the state checks
(`state_rules.check_http_frontend`) turn it into a StateError, the TOML reader
(`read_auth_request`, a frontend's `auth_request` table) and the CLI report it before anything
is sent. The auth cluster need not exist when the frontend is added (frontends and clusters
come in any order): a request that finds it missing is answered 500, never let through.
"""

from __future__ import annotations

import re

from dataplane.command.config_reader import Table
from dataplane.command.messages import AuthRequest

MAX_TEXT = 2048  # path, signin URL, redirect value
MAX_HEADERS = 64
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,256}")
_ID_FORBIDDEN = re.compile(r"[\s\x00-\x1f\x7f]")
_URL_TEXT = re.compile(r"[\x21-\x7e]+")  # visible ASCII, no space
_PARAM = re.compile(r"[A-Za-z0-9_.~-]{1,64}")


def auth_request_problem(auth: AuthRequest) -> str | None:
    """What makes `auth` unusable, or None."""
    if not auth.cluster_id or _ID_FORBIDDEN.search(auth.cluster_id):
        return f"cluster_id {auth.cluster_id!r} is not a cluster id"
    path = auth.path
    if not path.startswith("/") or len(path) > MAX_TEXT or not _URL_TEXT.fullmatch(path):
        return f"path {path!r} must be an origin-form target (/...), visible ASCII"
    if not _TOKEN.fullmatch(auth.method) or len(auth.method) > 32:
        return f"method {auth.method!r} is not a method"
    if len(auth.response_headers) > MAX_HEADERS:
        return f"at most {MAX_HEADERS} response_headers"
    for name in auth.response_headers:
        if not _TOKEN.fullmatch(name):
            return f"response header {name!r} is not a header name"
    for field in ("signin", "request_redirect", "host"):
        text = getattr(auth, field)
        if text is not None and (len(text) > MAX_TEXT or not _URL_TEXT.fullmatch(text)):
            return f"{field} {text!r} must be 1..{MAX_TEXT} visible ASCII characters"
    if not _PARAM.fullmatch(auth.signin_redirect_param):
        return f"signin_redirect_param {auth.signin_redirect_param!r} is not a query name"
    return None


def read_auth_request(frontend: Table) -> AuthRequest | None:
    """A frontend's `auth_request = { cluster_id = ..., path = ..., ... }` table."""
    table = frontend.table("auth_request")
    if table is None:
        return None
    cluster_id = table.text("cluster_id", required=True)
    auth = AuthRequest(cluster_id=cluster_id or "")
    auth.path = table.text("path", "/")
    auth.method = table.text("method", "GET")
    auth.response_headers = table.str_list("response_headers", [])
    auth.signin = table.text("signin")
    auth.signin_redirect_param = table.text("signin_redirect_param", "rd")
    auth.request_redirect = table.text("request_redirect")
    auth.host = table.text("host")
    table.finish(strict=True)
    if cluster_id is None:
        return None  # reported by the read
    problem = auth_request_problem(auth)
    if problem is not None:
        table.error(None, problem)
        return None
    return auth
