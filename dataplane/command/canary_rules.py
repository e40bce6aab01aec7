"""Value checks for a frontend's canary alternative (a pysozu extension, docs/canary.md).

`canary_problem` says what is wrong with a `Canary`, or None: the state checks
(`state_rules.check_http_frontend`) turn it into a StateError, the TOML reader (`read_canary`,
a frontend's `canary` table) and the CLI report it before anything is sent.
"""

from __future__ import annotations

import re

from dataplane.command.config_reader import Table
from dataplane.command.messages import Canary
from dataplane.command.regexes import RegexError, compile_regex

MAX_WEIGHT_TOTAL = 1_000_000
MAX_TEXT = 1024  # header value or pattern length
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,256}")
_ID_FORBIDDEN = re.compile(r"[\s\x00-\x1f\x7f]")
_VALUE_FORBIDDEN = re.compile(r"[\r\n\x00]")


def canary_problem(canary: Canary) -> str | None:
    """What makes `canary` unusable, or None."""
    if not canary.cluster_id or _ID_FORBIDDEN.search(canary.cluster_id):
        return f"cluster_id {canary.cluster_id!r} is not a cluster id"
    header = canary.header
    if header is not None and not _TOKEN.fullmatch(header):
        return f"header {header!r} is not a header name"
    for name in ("header_value", "header_pattern"):
        text = getattr(canary, name)
        if text is None:
            continue
        if header is None:
            return f"{name} needs a header"
        if not text or len(text) > MAX_TEXT or _VALUE_FORBIDDEN.search(text):
            return f"{name} must be 1..{MAX_TEXT} characters without CR, LF or NUL"
    if canary.header_value is not None and canary.header_pattern is not None:
        return "header_value and header_pattern exclude each other"
    if canary.header_pattern is not None:
        try:
            compile_regex(canary.header_pattern)
        except RegexError as error:
            return f"header_pattern {canary.header_pattern!r} does not compile: {error}"
    if canary.cookie is not None and not _TOKEN.fullmatch(canary.cookie):
        return f"cookie {canary.cookie!r} is not a cookie name"
    total = canary.weight_total
    if not 1 <= total <= MAX_WEIGHT_TOTAL:
        return f"weight_total {total} is not in 1..{MAX_WEIGHT_TOTAL}"
    if not 0 <= canary.weight <= total:
        return f"weight {canary.weight} is not in 0..weight_total ({total})"
    return None


def read_canary(frontend: Table) -> Canary | None:
    """A frontend's `canary = { cluster_id = ..., header = ..., weight = ... }` table."""
    table = frontend.table("canary")
    if table is None:
        return None
    cluster_id = table.text("cluster_id", required=True)
    fields = dict(
        header=table.text("header"),
        header_value=table.text("header_value"),
        header_pattern=table.text("header_pattern"),
        cookie=table.text("cookie"),
        weight=table.integer("weight", 0, high=MAX_WEIGHT_TOTAL),
        weight_total=table.integer("weight_total", 100, low=1, high=MAX_WEIGHT_TOTAL),
    )
    table.finish(strict=True)
    if cluster_id is None or None in (fields["weight"], fields["weight_total"]):
        return None  # reported by the reads
    canary = Canary(cluster_id=cluster_id, **fields)
    problem = canary_problem(canary)
    if problem is not None:
        table.error(None, problem)
        return None
    return canary
