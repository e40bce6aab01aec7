"""Route policies applied by the worker: redirects, deny, https_redirect, basic auth, rewrites,
header edits (sozu's decision order)."""

from __future__ import annotations

import base64
import hashlib
import socket

import pytest
from http_support import Backend, Client, Seen, get, listening_socket
from passlib.hash import apr_md5_crypt, bcrypt

from dataplane.command.address import SocketAddress
from dataplane.command.messages import (
    AddBackend,
    Cluster,
    Header,
    HeaderPosition,
    HttpListenerConfig,
    PathRule,
    RedirectPolicy,
    Request,
    RequestHttpFrontend,
)
from dataplane.command.scm import Listeners

pytestmark = pytest.mark.timeout(60)


def echo_head(seen: Seen, conn: socket.socket) -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(seen.head), seen.head)


@pytest.fixture(scope="module")
def proxy():  # type: ignore[no-untyped-def]
    from http_support import WorkerProcess

    backend = Backend(echo_head)
    sock, port = listening_socket()
    address = SocketAddress.parse(f"127.0.0.1:{port}")
    secret = hashlib.sha256(b"s3cret").hexdigest()

    def front(hostname: str, cluster_id: str | None = "app", **options: object) -> Request:
        return Request.of(
            add_http_frontend=RequestHttpFrontend(
                cluster_id=cluster_id,
                address=address,
                hostname=hostname,
                **options,  # type: ignore[arg-type]
            )
        )

    state = [
        Request.of(add_http_listener=HttpListenerConfig(address=address, active=True)),
        Request.of(add_cluster=Cluster(cluster_id="app")),
        Request.of(add_cluster=Cluster(cluster_id="secure", https_redirect=True)),
        Request.of(
            add_cluster=Cluster(
                cluster_id="private",
                authorized_hashes=[
                    f"alice:{secret}",
                    "bob:" + bcrypt.using(rounds=5, ident="2y").hash("hunter2"),  # htpasswd -B
                    "carol:" + apr_md5_crypt.hash("open sesame"),  # htpasswd -m
                ],
                www_authenticate="staff",
            )
        ),
        front("moved.example", redirect=RedirectPolicy.PERMANENT, rewrite_host="new.example"),
        front("found.example", redirect=RedirectPolicy.FOUND),
        front("deny.example", cluster_id=None),
        front("secure.example", cluster_id="secure"),
        front("private.example", cluster_id="private", required_auth=True),
        front(
            "*.rewrite.example",
            path=PathRule(value="/old"),
            rewrite_host="$HOST[1].internal",
            rewrite_path="/new$PATH[1]",
        ),
        front(
            "edit.example",
            headers=[
                Header(position=HeaderPosition.REQUEST, key="X-Added", val="yes"),
                Header(position=HeaderPosition.REQUEST, key="User-Agent", val=""),
                Header(position=HeaderPosition.RESPONSE, key="X-Served-By", val="pysozu"),
            ],
        ),
    ]
    for cluster_id in ("app", "secure", "private"):
        state.append(
            Request.of(
                add_backend=AddBackend(
                    cluster_id=cluster_id,
                    backend_id=f"{cluster_id}-0",
                    address=SocketAddress.parse(f"127.0.0.1:{backend.port}"),
                )
            )
        )
    worker = WorkerProcess(state, listeners=Listeners(http={str(address): sock}))
    yield port
    worker.stop()
    backend.close()


def header(head: bytes, name: str) -> list[str]:
    return Seen(head, b"").header(name)


def test_redirects(proxy: int) -> None:
    status, head, _ = Client(proxy).roundtrip(get("moved.example", "/a?b=1"))
    assert status == 301
    assert header(head, "Location") == ["http://new.example/a?b=1"]
    status, head, _ = Client(proxy).roundtrip(get("found.example", "/x"))
    assert status == 302 and header(head, "Location") == ["http://found.example/x"]


def test_deny_route_is_401(proxy: int) -> None:
    assert Client(proxy).roundtrip(get("deny.example"))[0] == 401


def test_cluster_https_redirect(proxy: int) -> None:
    status, head, _ = Client(proxy).roundtrip(get("secure.example", "/login"))
    assert status == 301 and header(head, "Location") == ["https://secure.example/login"]


def test_basic_auth(proxy: int) -> None:
    status, head, _ = Client(proxy).roundtrip(get("private.example"))
    assert status == 401 and header(head, "WWW-Authenticate") == ['Basic realm="staff"']
    wrong = base64.b64encode(b"alice:nope").decode()
    assert (
        Client(proxy).roundtrip(get("private.example", extra=f"Authorization: Basic {wrong}\r\n"))[
            0
        ]
        == 401
    )
    right = base64.b64encode(b"alice:s3cret").decode()
    status, _, forwarded = Client(proxy).roundtrip(
        get("private.example", extra=f"Authorization: Basic {right}\r\n")
    )
    assert status == 200 and forwarded.startswith(b"GET / HTTP/1.1")


def test_basic_auth_with_htpasswd_hashes(proxy: int) -> None:
    for user, password in (("bob", "hunter2"), ("carol", "open sesame")):
        for _ in range(3):  # the first check verifies the hash; the next ones hit the cache
            right = base64.b64encode(f"{user}:{password}".encode()).decode()
            status, _, _ = Client(proxy).roundtrip(
                get("private.example", extra=f"Authorization: Basic {right}\r\n")
            )
            assert status == 200
        wrong = base64.b64encode(f"{user}:{password}!".encode()).decode()
        status, _, _ = Client(proxy).roundtrip(
            get("private.example", extra=f"Authorization: Basic {wrong}\r\n")
        )
        assert status == 401


def test_rewrites(proxy: int) -> None:
    status, _, forwarded = Client(proxy).roundtrip(get("api.rewrite.example", "/old/x"))
    assert status == 200
    assert forwarded.startswith(b"GET /new/x HTTP/1.1\r\n")
    assert header(forwarded, "Host") == ["api.internal"]
    assert header(forwarded, "X-Forwarded-Host") == ["api.rewrite.example"]


def test_header_edits(proxy: int) -> None:
    status, head, forwarded = Client(proxy).roundtrip(
        get("edit.example", extra="User-Agent: curl\r\nX-Added: client\r\n")
    )
    assert status == 200
    assert header(forwarded, "X-Added") == ["yes"]
    assert header(forwarded, "User-Agent") == []
    assert header(head, "X-Served-By") == ["pysozu"]
