"""Issue 16 (5, 6), from the outside: raw bytes through a real pysozu, a backend that echoes the
head it received.

5. A client's X-Forwarded-Proto/-Port, X-Real-IP, X-Forwarded-For and Forwarded are replaced by
   what the proxy saw, unless its address is in the listener's `trusted_proxies` (decided once
   per connection); then they are kept and appended to, as sozu does for everyone.
6. A trailer section carrying a field RFC 9110 forbids there (Content-Length, Host...) is
   refused in both directions, never forwarded whole.
"""

from __future__ import annotations

import json
import socket
import time
from typing import Any

import pytest
from http_support import Backend, Client, Seen, exchange, get, running_worker
from https_support import Pki, TlsClient, https_config

from dataplane.command.address import SocketAddress
from dataplane.command.messages import HttpListenerConfig, Request, UpdateHttpListenerConfig
from dataplane.command.responses import ResponseStatus

pytestmark = pytest.mark.timeout(60)

CLAIMS = (
    "X-Forwarded-Proto: https\r\nX-Forwarded-Port: 443\r\nX-Real-IP: 6.6.6.6\r\n"
    "X-Forwarded-For: 6.6.6.6\r\nForwarded: for=6.6.6.6;proto=https\r\n"
    "x-forwarded-proto: https\r\nX-REAL-IP: 7.7.7.7\r\n"
)
NAMES = ("X-Forwarded-Proto", "X-Forwarded-Port", "X-Real-IP", "X-Forwarded-For", "Forwarded")


def echo_head(seen: Seen, conn: socket.socket) -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(seen.head), seen.head)


def forwarded(client: Client, extra: str = CLAIMS) -> dict[str, list[str]]:
    status, _, head = client.roundtrip(get("example.com", extra=extra))
    assert status == 200
    seen = Seen(head, b"")
    return {name: seen.header(name) for name in NAMES}


def ours(client: Client, port: int) -> dict[str, list[str]]:
    peer_port = client.sock.getsockname()[1]
    return {
        "X-Forwarded-Proto": ["http"],
        "X-Forwarded-Port": [str(port)],
        "X-Real-IP": [],
        "X-Forwarded-For": ["127.0.0.1"],
        "Forwarded": [f'proto=http;for="127.0.0.1:{peer_port}";by=127.0.0.1'],
    }


def appended(client: Client) -> dict[str, list[str]]:
    peer_port = client.sock.getsockname()[1]
    return {
        "X-Forwarded-Proto": ["https", "https"],
        "X-Forwarded-Port": ["443"],
        "X-Real-IP": ["6.6.6.6", "7.7.7.7"],
        "X-Forwarded-For": ["6.6.6.6, 127.0.0.1"],
        "Forwarded": [
            f'for=6.6.6.6;proto=https, proto=http;for="127.0.0.1:{peer_port}";by=127.0.0.1'
        ],
    }


@pytest.mark.parametrize("listener", [{}, {"trusted_proxies": ["10.0.0.0/8", "::1"]}])
def test_a_plain_http_client_cannot_claim_https_443_or_an_address(
    listener: dict[str, Any],
) -> None:
    backend = Backend(echo_head)
    with running_worker({"a": ("example.com", [backend.port])}, **listener) as (_worker, port):
        client = Client(port)
        assert forwarded(client) == ours(client, port)
        assert forwarded(client) == ours(client, port)  # the next request on the connection


def test_send_x_real_ip_replaces_the_clients_even_without_elide() -> None:
    backend = Backend(echo_head)
    with running_worker({"a": ("example.com", [backend.port])}, send_x_real_ip=True) as (_w, port):
        client = Client(port)
        assert forwarded(client)["X-Real-IP"] == ["127.0.0.1"]


def test_a_trusted_proxy_keeps_its_headers_and_is_appended_to() -> None:
    backend = Backend(echo_head)
    with running_worker(
        {"a": ("example.com", [backend.port])}, trusted_proxies=["127.0.0.0/8"]
    ) as (_worker, port):
        client = Client(port)
        assert forwarded(client) == appended(client)
        assert forwarded(client, extra="") == ours(client, port)  # nothing sent: ours alone


def test_trust_is_decided_once_per_connection() -> None:
    """A listener update changes the trust of new connections only."""
    backend = Backend(echo_head)
    with running_worker({"a": ("example.com", [backend.port])}) as (worker, port):
        before = Client(port)
        assert forwarded(before) == ours(before, port)
        address = SocketAddress.parse(f"127.0.0.1:{port}")
        patch = UpdateHttpListenerConfig(address=address, trusted_proxies=["127.0.0.1"])
        assert worker.call(Request.of(update_http_listener=patch)).status == ResponseStatus.OK
        assert forwarded(before) == ours(before, port)  # accepted untrusted, stays so
        after = Client(port)
        assert forwarded(after) == appended(after)
        patch = UpdateHttpListenerConfig(address=address, trusted_proxies=[])
        assert worker.call(Request.of(update_http_listener=patch)).status == ResponseStatus.OK
        assert forwarded(after) == appended(after)
        last = Client(port)
        assert forwarded(last) == ours(last, port)


def test_a_bad_trusted_proxy_is_a_failure_naming_the_field() -> None:
    backend = Backend(echo_head)
    with running_worker({"a": ("example.com", [backend.port])}) as (worker, port):
        address = SocketAddress.parse(f"127.0.0.1:{port + 1 if port < 65535 else port - 1}")
        bad = HttpListenerConfig(address=address, trusted_proxies=["10.0.0.1/8"])
        answer = worker.call(Request.of(add_http_listener=bad))
        assert answer.status == ResponseStatus.FAILURE
        assert "trusted_proxies: '10.0.0.1/8' has bits set" in answer.message


# ---------------------------------------------------------------------------------------------
# 6. trailers


def chunked_post(trailers: bytes) -> bytes:
    return (
        b"POST /up HTTP/1.1\r\nHost: example.com\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n0\r\n" + trailers + b"\r\n"
    )


def test_allowed_request_trailers_are_forwarded_verbatim() -> None:
    backend = Backend(echo_head)
    with running_worker({"a": ("example.com", [backend.port])}) as (_worker, port):
        status, _, _ = Client(port).roundtrip(chunked_post(b"X-Checksum: abc\r\n"))
    assert status == 200
    assert backend.seen[-1].body == b"5\r\nhello\r\n0\r\nX-Checksum: abc\r\n\r\n"


@pytest.mark.parametrize(
    "field", [b"Content-Length: 5", b"transfer-encoding: chunked", b"Host: admin.internal"]
)
@pytest.mark.parametrize("split", [False, True])
def test_a_request_trailer_with_a_framing_field_is_refused(field: bytes, split: bool) -> None:
    backend = Backend(echo_head)
    with running_worker({"a": ("example.com", [backend.port])}) as (_worker, port):
        data = chunked_post(b"X-Checksum: abc\r\n" + field + b"\r\n")
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            if split:  # the body reaches the backend first, the trailers later
                at = data.index(b"0\r\n")
                sock.sendall(data[:at])
                time.sleep(0.3)
                sock.sendall(data[at:])
            else:
                sock.sendall(data)
            answer = bytearray()
            while chunk := sock.recv(65536):
                answer += chunk
        time.sleep(0.2)
    assert answer.startswith(b"HTTP/1.1 400 ")
    assert backend.seen == []  # no complete request reached it


def chunked_response(trailers: bytes, pause: float = 0.0) -> Any:
    def respond(seen: Seen, conn: socket.socket) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
        if pause:
            time.sleep(pause)
        conn.sendall(b"0\r\n" + trailers + b"\r\n")
        time.sleep(0.5)  # keep the connection: the proxy is the one to close
        return None

    return respond


def test_allowed_response_trailers_are_forwarded_verbatim() -> None:
    backend = Backend(chunked_response(b"Server-Timing: db;dur=53\r\n"))
    with running_worker({"a": ("example.com", [backend.port])}) as (_worker, port):
        status, _, body = Client(port).roundtrip(get("example.com"))
    assert status == 200
    assert body == b"5\r\nhello\r\n0\r\nServer-Timing: db;dur=53\r\n\r\n"


@pytest.mark.parametrize("pause", [0.0, 0.3])
def test_a_response_trailer_with_a_framing_field_never_reaches_the_client(pause: float) -> None:
    backend = Backend(chunked_response(b"Content-Length: 0\r\n", pause))
    with running_worker({"a": ("example.com", [backend.port])}) as (_worker, port):
        received = exchange(port, get("example.com"))
    assert b"Content-Length: 0\r\n" not in received
    assert not received.endswith(b"0\r\n\r\n")  # cut short, the connection closed
    if pause:
        assert received.startswith(b"HTTP/1.1 200 OK\r\n") and b"5\r\nhello\r\n" in received


# ---------------------------------------------------------------------------------------------
# the whole product: TOML key, CLI flags, listener list


def test_trusted_proxies_through_toml_cli_and_listing(pysozu: Any, tmp_path: Any) -> None:
    backend = Backend(echo_head)
    port = pysozu.free_port()
    toml = pysozu.http_config(port, {"a": ("example.com", [backend.port])}).replace(
        f'address = "127.0.0.1:{port}"\n',
        f'address = "127.0.0.1:{port}"\ntrusted_proxies = ["127.0.0.1", "10.0.0.0/8"]\n',
        1,
    )
    proxy = pysozu.start(toml, workers=1)
    listing = proxy.cli("listener", "list")
    assert listing.returncode == 0, listing.stderr
    assert "TRUSTED PROXIES" in listing.stdout and "127.0.0.1,10.0.0.0/8" in listing.stdout
    trusted = Client(port)
    assert forwarded(trusted) == appended(trusted)

    result = proxy.cli(
        "listener", "http", "update", "-a", f"127.0.0.1:{port}", "--no-trusted-proxies"
    )
    assert result.returncode == 0, result.stderr
    plain = Client(port)
    assert forwarded(plain) == ours(plain, port)
    listed = json.loads(proxy.cli("-j", "listener", "list").stdout)
    http = listed["content"]["content_type"]["LISTENERS_LIST"]["http_listeners"]
    assert http[f"127.0.0.1:{port}"]["trusted_proxies"] == []

    refused = proxy.cli(
        "listener", "http", "update", "-a", f"127.0.0.1:{port}", "--trusted-proxies", "edge"
    )
    assert refused.returncode == 2 and "--trusted-proxies" in refused.stderr
    patch = UpdateHttpListenerConfig(
        address=SocketAddress.parse(f"127.0.0.1:{port}"), trusted_proxies=["127.0.0.1/8"]
    )
    answer = proxy.request(Request.of(update_http_listener=patch))
    assert answer.status == ResponseStatus.FAILURE
    assert "trusted_proxies: '127.0.0.1/8' has bits set" in answer.message


def test_a_bad_trusted_proxy_in_the_toml_is_a_config_error(pysozu: Any) -> None:
    port = pysozu.free_port()
    toml = f'[[listeners]]\nprotocol = "http"\naddress = "127.0.0.1:{port}"\n'
    proxy = pysozu.start(toml + 'trusted_proxies = ["10.0.0.0/33"]\n', wait=False)
    assert proxy.process.wait(timeout=20) != 0
    assert "trusted_proxies: '10.0.0.0/33' is not an IP network" in proxy.log()


@pytest.mark.parametrize("trusted", [False, True])
def test_https_listeners_decide_trust_alike(pysozu: Any, tmp_path: Any, trusted: bool) -> None:
    pki = Pki(tmp_path)
    cert = pki.issue("a.example")
    backend = Backend(echo_head)
    port = pysozu.free_port()
    listener = 'trusted_proxies = ["127.0.0.1"]' if trusted else ""
    pysozu.start(https_config(port, {"a": ("a.example", backend.port, cert)}, listener), workers=1)
    with TlsClient(port, "a.example", pki.client_context()) as client:
        headers = {"X-Forwarded-Proto": "http", "X-Forwarded-Port": "80", "X-Real-IP": "6.6.6.6"}
        response = client.get("a.example", headers=headers)
        seen = Seen(response.body, b"")  # type: ignore[attr-defined]
        peer_port = client.sock.getsockname()[1]
    if trusted:
        assert seen.header("X-Forwarded-Proto") == ["http"]
        assert seen.header("X-Forwarded-Port") == ["80"]
        assert seen.header("X-Real-IP") == ["6.6.6.6"]
    else:
        assert seen.header("X-Forwarded-Proto") == ["https"]
        assert seen.header("X-Forwarded-Port") == [str(port)]
        assert seen.header("X-Real-IP") == []
    assert seen.header("Forwarded") == [f'proto=https;for="127.0.0.1:{peer_port}";by=127.0.0.1']
