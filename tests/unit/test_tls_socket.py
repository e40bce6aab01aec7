"""TlsSocket: the C SSL object made straight on the accepted socket (no `ssl.SSLSocket`), with
the TlsSocket as its owner (what the SNI callback receives); close_notify sent once, before
the TCP shutdown or the close, never on a descriptor already closed."""

from __future__ import annotations

import socket
import ssl
from typing import Any

import pytest

from dataplane.proxy.tls.transport import TlsSocket


class FakeSock:
    def __init__(self) -> None:
        self.fd = 7
        self.calls: list[str] = []

    def fileno(self) -> int:
        return self.fd

    def shutdown(self, how: int) -> None:
        self.calls.append(f"shutdown {how}")

    def close(self) -> None:
        self.calls.append("close")
        self.fd = -1

    def setsockopt(self, level: int, option: int, value: int) -> None:
        self.calls.append(f"setsockopt {option}={value}")


class FakeSslObject:
    """The C object's calls TlsSocket makes; `shutdown` is close_notify."""

    def __init__(self, calls: list[str], fail: BaseException | None = None) -> None:
        self.calls = calls
        self.fail = fail

    def shutdown(self) -> None:
        self.calls.append("close_notify")
        if self.fail is not None:
            raise self.fail  # non-blocking: the peer's close_notify is not awaited

    def selected_alpn_protocol(self) -> str | None:
        return "h2"

    def getpeercert(self, binary_form: bool) -> Any:
        return b"der" if binary_form else {}


class FakeContext:
    def __init__(self, fail: BaseException | None = None) -> None:
        self.made: list[tuple[Any, ...]] = []
        self.fail = fail

    def _wrap_socket(self, sock: FakeSock, server_side: bool, hostname: None, *, owner: Any):
        self.made.append((sock, server_side, hostname, owner))
        return FakeSslObject(sock.calls, self.fail)


def make(fail: BaseException | None = None) -> tuple[TlsSocket, FakeSock, FakeContext]:
    sock, context = FakeSock(), FakeContext(fail)
    return TlsSocket(context, sock), sock, context  # type: ignore[arg-type]


def test_the_ssl_object_is_made_server_side_on_the_socket_owned_by_the_tls_socket() -> None:
    tls, sock, context = make()
    assert context.made == [(sock, True, None, tls)]  # owner: the SNI callback's connection
    assert tls.fileno() == 7
    assert tls.served is None and tls.server_name is None and tls.client_auth is None
    assert tls.selected_alpn_protocol() == "h2"
    assert tls.getpeercert(binary_form=True) == b"der"
    tls.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    assert sock.calls == [f"setsockopt {socket.TCP_NODELAY}=1"]


@pytest.mark.parametrize(
    "fail", [None, ssl.SSLWantReadError(), ssl.SSLError(), BrokenPipeError(), ValueError()]
)
def test_close_sends_close_notify_once_and_never_raises(fail: BaseException | None) -> None:
    tls, sock, _ = make(fail)
    tls.close()
    tls.close()
    assert sock.calls == ["close_notify", "close", "close"]
    assert tls._sslobj is None
    assert tls.selected_alpn_protocol() is None and tls.getpeercert(True) is None


def test_shutdown_sends_close_notify_before_the_tcp_shutdown_and_close_does_not_again() -> None:
    tls, sock, _ = make(ssl.SSLWantReadError())
    tls.shutdown(socket.SHUT_WR)
    tls.close()
    assert sock.calls == ["close_notify", f"shutdown {socket.SHUT_WR}", "close"]


def test_no_close_notify_on_a_descriptor_already_closed() -> None:
    tls, sock, _ = make()
    sock.fd = -1
    tls.close()
    assert sock.calls == ["close"]
