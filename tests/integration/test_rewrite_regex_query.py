"""The operator's regex routes in a real worker: a REGEX rule rendered from an Ingress path
with use-regex (`rewrites.regex_rule`) matches case-insensitively from the start, and its
`rewrite_path` (rewrite-target `/$2`) replaces the path and keeps the query string as the
client sent it, with the X-Forwarded-Prefix header edit next to it."""

from __future__ import annotations

import socket

import pytest
from http_support import Backend, Client, Seen, get, listening_socket
from ingress_operator.regex_paths import regex_rule
from ingress_operator.rewrites import Rewrite

from dataplane.command.address import SocketAddress
from dataplane.command.messages import (
    AddBackend,
    Cluster,
    HttpListenerConfig,
    Request,
    RequestHttpFrontend,
)
from dataplane.command.scm import Listeners

pytestmark = pytest.mark.timeout(60)

PATH = "/something(/|$)(.*)"


def echo_head(seen: Seen, conn: socket.socket) -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(seen.head), seen.head)


@pytest.fixture(scope="module")
def proxy():  # type: ignore[no-untyped-def]
    from http_support import WorkerProcess

    backend = Backend(echo_head)
    sock, port = listening_socket()
    address = SocketAddress.parse(f"127.0.0.1:{port}")
    rule = regex_rule(PATH)
    rewritten = Rewrite(use_regex=True, target="/$2", forwarded_prefix="/something")
    edit = rewritten.rewritten(PATH, rule)
    assert edit is not None and edit.template == "/$PATH[2]"
    state = [
        Request.of(add_http_listener=HttpListenerConfig(address=address, active=True)),
        Request.of(add_cluster=Cluster(cluster_id="app")),
        Request.of(
            add_http_frontend=RequestHttpFrontend(
                cluster_id="app",
                address=address,
                hostname="rewrite.example",
                path=rule,
                rewrite_path=edit.template,
                headers=edit.headers,
            )
        ),
        Request.of(
            add_backend=AddBackend(
                cluster_id="app",
                backend_id="app-0",
                address=SocketAddress.parse(f"127.0.0.1:{backend.port}"),
            )
        ),
    ]
    worker = WorkerProcess(state, listeners=Listeners(http={str(address): sock}))
    yield port
    worker.stop()
    backend.close()


@pytest.mark.parametrize(
    ("target", "forwarded"),
    [
        ("/something/new/x?q=1&r=a%20b", "/new/x?q=1&r=a%20b"),
        ("/something?only=query", "/?only=query"),
        ("/SOMETHING/Up?x=/something/", "/Up?x=/something/"),
        ("/something/", "/"),
        ("/something/%61b%20c?x=1", "/ab%20c?x=1"),  # captures of the normalised path
        ("/x/../something//y?z=1", "/y?z=1"),
        ("/something/a?b?c&d", "/a?b?c&d"),  # the query verbatim, `?` in it included
    ],
)
def test_the_rewrite_keeps_the_query(proxy: int, target: str, forwarded: str) -> None:
    client = Client(proxy)
    try:
        status, _, head = client.roundtrip(get("rewrite.example", target))
    finally:
        client.close()
    assert status == 200
    assert head.startswith(f"GET {forwarded} HTTP/1.1\r\n".encode()), head[:120]
    assert Seen(head, b"").header("X-Forwarded-Prefix") == ["/something"]


@pytest.mark.parametrize("target", ["/x/something", "/somethingelse", "/"])
def test_what_the_regex_does_not_match_from_the_start_is_not_routed(
    proxy: int, target: str
) -> None:
    client = Client(proxy)
    try:
        status, _, _ = client.roundtrip(get("rewrite.example", target))
    finally:
        client.close()
    assert status == 404
