"""`ssl-passthrough` end to end (kmock + real operator + real pysozu, real TLS): the host of a
passthrough Ingress is reached by SNI, still encrypted, at a TLS backend holding its own
certificate (the client verifies it), while another Ingress's host is terminated by pysozu
on the same HTTPS port; the other HTTP annotations of the Ingress are said to apply to its
plain HTTP routes only."""

from __future__ import annotations

import contextlib
import json
import socket
import ssl
import threading
from collections.abc import Iterator

import pytest
import trustme
from conftest import World, wait_for
from objects import endpoint_slice, ingress, ingress_class, service
from ports import free_port
from test_operator_tls_semantics import https

pytestmark = pytest.mark.timeout(120)

NGINX = "nginx.ingress.kubernetes.io/"


class TlsApp:
    """An HTTPS server on 127.0.0.3 with its own certificate: one answer per connection."""

    def __init__(self, ca: trustme.CA, name: str) -> None:
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ca.issue_cert(name).configure_cert(self.context)
        self.server = socket.create_server(("127.0.0.3", free_port()))
        self.port = self.server.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                raw, _ = self.server.accept()
            except OSError:
                return
            threading.Thread(target=self._answer, args=(raw,), daemon=True).start()

    def _answer(self, raw: socket.socket) -> None:
        with contextlib.suppress(OSError), raw:
            raw.settimeout(10)
            with self.context.wrap_socket(raw, server_side=True) as tls:
                seen = b""
                while b"\r\n\r\n" not in seen and (chunk := tls.recv(4096)):
                    seen += chunk
                body = b"vault-tls"
                head = b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: %d\r\n\r\n"
                tls.sendall(head % len(body) + body)


@pytest.fixture
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def vault(ca: trustme.CA) -> Iterator[TlsApp]:
    app = TlsApp(ca, "vault.example")
    yield app
    app.server.close()


def events_for(world: World, name: str) -> list[tuple[str, str, str]]:
    items = json.loads(world.kubectl("get", "events", "-o", "json"))["items"]
    return [
        (event["type"], event["reason"], event["message"])
        for event in items
        if event.get("involvedObject", {}).get("name") == name
    ]


def test_a_passthrough_host_reaches_its_tls_backend_by_sni(
    world: World, ca: trustme.CA, vault: TlsApp
) -> None:
    world.backend("127.0.0.2", "app-0")
    world.apply(ingress_class())
    world.start_operator("--nginx-annotations")
    wait_for("the operator's first push (/readyz)", world.operator_ready)
    annotations = {NGINX + "ssl-passthrough": "true", NGINX + "proxy-read-timeout": "30"}
    world.apply(
        service("app"),
        endpoint_slice("app", ["127.0.0.2"], world.backend_port),
        service("vault"),  # the pods speak TLS, whatever the port's name says
        endpoint_slice("vault", ["127.0.0.3"], vault.port),
        ingress("vault", "vault.example", "vault", annotations=annotations),
        ingress("web", "web.example", "app"),
    )
    # verified against the CA of the backend's own certificate: pysozu does not hold it
    wait_for("passthrough", lambda: https(world, "vault.example", ca) == (200, "vault-tls"))
    assert https(world, "web.example") == (200, "app-0 /")  # terminated on the same port
    status, body = https(world, "vault.example")  # again, anything goes: still the backend
    assert (status, body) == (200, "vault-tls")
    listed = world.pysozu_json("frontend", "list", "--https")
    assert '"passthrough": true' in json.dumps(listed)
    seen = wait_for(
        "the Event about HTTP-only annotations",
        lambda: [e for e in events_for(world, "vault") if e[1] == "PassthroughHttpOnly"],
    )
    assert seen[0][0] == "Normal" and NGINX + "proxy-read-timeout" in seen[0][2]
    # the Ingress is no longer passthrough: its host is terminated by pysozu again
    world.apply(ingress("vault", "vault.example", "vault"))
    wait_for("termination again", lambda: https(world, "vault.example", ca)[0] == 0)
