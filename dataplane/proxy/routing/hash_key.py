"""A cluster's `hash_key` (dataplane/command/hash_keys.py) evaluated for one request: the bytes
its consistent hash (HRW, MAGLEV) picks a backend by. Built once per cluster configuration;
clusters without one pay an attribute test."""

from __future__ import annotations

import re
from collections.abc import Callable
from urllib.parse import unquote_to_bytes

from dataplane.command.hash_keys import parse_hash_key
from dataplane.proxy.http1.head import RequestHead


class HashKey:
    __slots__ = ("_parts",)

    def __init__(self, template: str) -> None:
        parts: list[tuple[str, object]] = []
        for kind, name in parse_hash_key(template):
            if kind == "http":
                header = re.escape(name.replace("_", "-").encode("ascii"))
                finder = re.compile(rb"\r\n" + header + rb"[ \t]*:[ \t]*([^\r]*)", re.IGNORECASE)
                parts.append((kind, finder))
            else:
                parts.append((kind, name))
        self._parts = tuple(parts)

    @classmethod
    def build(cls, template: str | None) -> HashKey | None:
        return None if template is None else cls(template)

    def key(self, request: RequestHead, client_ip: Callable[[], str], scheme: str) -> bytes:
        out: list[bytes] = []
        for kind, value in self._parts:
            if kind == "text":
                assert isinstance(value, str)
                out.append(value.encode("utf-8"))
            elif kind == "request_uri":
                out.append(request.path.encode("utf-8", "surrogateescape"))
            elif kind == "uri":
                out.append(request.route_path.encode("utf-8", "surrogateescape"))
            elif kind == "host":
                out.append(request.host)
            elif kind == "scheme":
                out.append(scheme.encode("ascii"))
            elif kind in ("remote_addr", "binary_remote_addr"):
                out.append(client_ip().encode("ascii"))
            elif kind == "http":
                assert isinstance(value, re.Pattern)
                found = value.search(request.block)
                out.append(found.group(1).rstrip(b" \t") if found else b"")
            elif kind == "cookie":
                assert isinstance(value, str)
                out.append(_cookie(request, value.encode("ascii", "replace")))
            else:  # arg
                assert isinstance(value, str)
                out.append(_argument(request.path, value.encode("utf-8")))
        return b"".join(out)


def _cookie(request: RequestHead, name: bytes) -> bytes:
    for _, _, header in request.cookies:
        for pair in header.split(b";"):
            key, _, value = pair.strip().partition(b"=")
            if key == name:
                return value
    return b""


def _argument(target: str, name: bytes) -> bytes:
    _, question, query = target.partition("?")
    if not question:
        return b""
    for pair in query.encode("utf-8", "surrogateescape").split(b"&"):
        key, _, value = pair.partition(b"=")
        if unquote_to_bytes(key) == name:
            return value
    return b""
