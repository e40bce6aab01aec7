"""What the proxy writes into the heads it forwards (sozu's header editor) and sticky sessions."""

from __future__ import annotations

import socket

import pytest
from http_support import Backend, Client, Seen, get, running_worker

from dataplane.proxy.http1.forwarding import ConnectionContext

pytestmark = pytest.mark.timeout(60)


def echo_head(seen: Seen, conn: socket.socket) -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(seen.head), seen.head)


def header(head: bytes, name: str) -> list[str]:
    return Seen(head, b"").header(name)


def test_forwarding_headers_are_created() -> None:
    backend = Backend(echo_head)
    with running_worker({"a": ("example.com", [backend.port])}) as (_worker, port):
        client = Client(port)
        status, response_head, forwarded = client.roundtrip(get("example.com"))
    assert status == 200
    peer_port = client.sock.getsockname()[1]
    assert header(forwarded, "X-Forwarded-For") == ["127.0.0.1"]
    assert header(forwarded, "Forwarded") == [
        f'proto=http;for="127.0.0.1:{peer_port}";by=127.0.0.1'
    ]
    assert header(forwarded, "X-Forwarded-Proto") == ["http"]
    assert header(forwarded, "X-Forwarded-Port") == [str(port)]
    request_id = header(forwarded, "Sozu-Id")
    assert len(request_id) == 1 and len(request_id[0]) == 26
    assert header(response_head, "Sozu-Id") == request_id
    assert header(forwarded, "X-Request-Id") == request_id


def test_forwarding_headers_are_appended_and_trusted() -> None:
    """From a trusted proxy (test_http_forwarding_trust.py has the untrusted peers)."""
    backend = Backend(echo_head)
    with running_worker(
        {"a": ("example.com", [backend.port])}, trusted_proxies=["127.0.0.0/8"]
    ) as (_worker, port):
        client = Client(port)
        extra = (
            "X-Forwarded-For: 1.2.3.4\r\nForwarded: for=1.2.3.4\r\nX-Forwarded-Proto: https\r\n"
            "X-Forwarded-Port: 443\r\nX-Request-Id: abc\r\nSozu-Id: forged\r\n"
        )
        _, _, forwarded = client.roundtrip(get("example.com", extra=extra))
    peer_port = client.sock.getsockname()[1]
    assert header(forwarded, "X-Forwarded-For") == ["1.2.3.4, 127.0.0.1"]
    assert header(forwarded, "Forwarded") == [
        f'for=1.2.3.4, proto=http;for="127.0.0.1:{peer_port}";by=127.0.0.1'
    ]
    assert header(forwarded, "X-Forwarded-Proto") == ["https"]
    assert header(forwarded, "X-Forwarded-Port") == ["443"]
    assert header(forwarded, "X-Request-Id") == ["abc"]
    assert header(forwarded, "Sozu-Id") != ["forged"] and len(header(forwarded, "Sozu-Id")) == 1


def test_hop_by_hop_headers_are_dropped_both_ways() -> None:
    def respond(seen: Seen, conn: socket.socket) -> bytes:
        body = seen.head
        return (
            b"HTTP/1.1 200 OK\r\nConnection: keep-alive, X-Private\r\nKeep-Alive: timeout=5\r\n"
            b"X-Private: p\r\nX-Public: q\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
        )

    backend = Backend(respond)
    with running_worker({"a": ("example.com", [backend.port])}) as (_worker, port):
        extra = "Connection: keep-alive, X-Hop\r\nX-Hop: 1\r\nKeep-Alive: 300\r\nTE: trailers\r\n"
        _, response_head, forwarded = Client(port).roundtrip(get("example.com", extra=extra))
    for name in ("Connection", "X-Hop", "Keep-Alive", "TE"):
        assert header(forwarded, name) == [], name
    for name in ("Connection", "Keep-Alive", "X-Private"):
        assert header(response_head, name) == [], name
    assert header(response_head, "X-Public") == ["q"]


def test_x_real_ip_options() -> None:
    backend = Backend(echo_head)
    with running_worker(
        {"a": ("example.com", [backend.port])}, elide_x_real_ip=True, send_x_real_ip=True
    ) as (_worker, port):
        _, _, forwarded = Client(port).roundtrip(get("example.com", extra="X-Real-IP: 6.6.6.6\r\n"))
    assert header(forwarded, "X-Real-IP") == ["127.0.0.1"]


def test_custom_request_id_header_name() -> None:
    backend = Backend(echo_head)
    with running_worker({"a": ("example.com", [backend.port])}, sozu_id_header="X-Trace") as (
        _worker,
        port,
    ):
        _, response_head, forwarded = Client(port).roundtrip(get("example.com"))
    assert header(forwarded, "Sozu-Id") == []
    assert len(header(forwarded, "X-Trace")) == 1
    assert header(response_head, "X-Trace") == header(forwarded, "X-Trace")


def test_sticky_sessions() -> None:
    one, two = Backend(echo_head), Backend(echo_head)
    with running_worker(
        {"a": ("example.com", [one.port, two.port])}, cluster_options={"sticky_session": True}
    ) as (_worker, port):
        _, head, _ = Client(port).roundtrip(get("example.com"))
        cookie = header(head, "Set-Cookie")
        assert len(cookie) == 1 and cookie[0].startswith("SOZUBALANCEID=sticky-")
        sticky = cookie[0].split(";")[0]
        chosen = one if sticky.endswith("-0") else two
        for _ in range(4):  # new connections, same backend, no new cookie
            before = len(chosen.seen)
            extra = f"Cookie: a=1; {sticky}; b=2\r\n"
            _, head, forwarded = Client(port).roundtrip(get("example.com", extra=extra))
            assert header(head, "Set-Cookie") == []
            assert len(chosen.seen) == before + 1
            assert header(forwarded, "Cookie") == ["a=1; b=2"]  # the sticky cookie is removed
        _, head, _ = Client(port).roundtrip(
            get("example.com", extra="Cookie: SOZUBALANCEID=gone\r\n")
        )
        assert header(head, "Set-Cookie")[0].startswith("SOZUBALANCEID=sticky-")


def test_forwarded_brackets_ipv6_addresses() -> None:
    context = ConnectionContext(
        ("2001:db8::1", 4242), ("2001:db8::2", 80), "http", "Sozu-Id", False, False
    )
    assert context.forwarded_element == b'proto=http;for="[2001:db8::1]:4242";by="[2001:db8::2]"'
    assert context.xff_line == b"\r\nX-Forwarded-For: 2001:db8::1"
    mapped = ConnectionContext(("::ffff:10.0.0.1", 1), ("10.0.0.2", 80), "http", "S", False, False)
    assert mapped.peer_ip == b"10.0.0.1"
