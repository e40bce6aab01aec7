"""use-regex, rewrite-target, x-forwarded-prefix and server-alias end to end (kmock + the real
operator + the real dataplane + real backends): what each backend is sent, path, query and
headers, for requests as a client makes them."""

from __future__ import annotations

import http.client
import http.server
import json
import socket
import socketserver
import ssl
import threading
from typing import Any

import pytest
import trustme
from conftest import World, wait_for
from objects import endpoint_slice, ingress, ingress_class, service, tls_secret

pytestmark = pytest.mark.timeout(120)

NGINX = "nginx.ingress.kubernetes.io/"


class EchoBackend:
    """Answers every request with JSON: its name, the request target and the headers."""

    def __init__(self, ip: str, port: int, name: str) -> None:
        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                headers = {k.lower(): v for k, v in self.headers.items()}
                body = json.dumps({"name": name, "target": self.path, "headers": headers})
                data = body.encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
            daemon_threads = True
            allow_reuse_address = True

        self.server = Server((ip, port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def seen(world: World, host: str, target: str) -> dict[str, Any] | int:
    """What the backend got for `GET target` (its JSON), or the status when not 200."""
    status, body, _ = world.get(host, target)
    return json.loads(body) if status == 200 else status


def routed(world: World, *requests: tuple[str, str]) -> bool:
    """Every (host, target) reaches a backend (its routes and endpoints are all pushed)."""
    return all(isinstance(seen(world, host, target), dict) for host, target in requests)


def serve(world: World, flags: tuple[str, ...], *ingresses: dict[str, Any]) -> None:
    for ip, name in (("127.0.0.2", "app"), ("127.0.0.3", "files")):
        world.backends.append(EchoBackend(ip, world.backend_port, name))  # type: ignore[arg-type]
    world.apply(ingress_class())
    world.start_operator(*flags)
    wait_for("the operator's first push (/readyz)", world.operator_ready)
    world.apply(
        service("app"),
        endpoint_slice("app", ["127.0.0.2"], world.backend_port),
        service("files"),
        endpoint_slice("files", ["127.0.0.3"], world.backend_port),
        *ingresses,
    )


def events(world: World, name: str) -> list[tuple[str, str]]:
    items = json.loads(world.kubectl("get", "events", "-o", "json"))["items"]
    return [
        (event["reason"], event["message"])
        for event in items
        if event.get("involvedObject", {}).get("name") == name
    ]


def test_rewrite_target_with_captures_keeps_the_query_and_sets_the_prefix(world: World) -> None:
    rewrite = ingress(
        "rewrite",
        "rewrite.example",
        "app",
        path="/something(/|$)(.*)",
        path_type="ImplementationSpecific",
        created="2026-01-01T00:00:00Z",
        annotations={
            NGINX + "use-regex": "true",
            NGINX + "rewrite-target": "/$2",
            NGINX + "x-forwarded-prefix": "/something",
        },
    )
    # Another Ingress on the same host, without annotations: its path is a regex too.
    plain = ingress(
        "plain", "rewrite.example", "files", path="/static", created="2026-01-02T00:00:00Z"
    )
    serve(world, ("--nginx-annotations",), rewrite, plain)
    pairs = (("rewrite.example", "/something/x"), ("rewrite.example", "/static"))
    wait_for("the routes", lambda: routed(world, *pairs))

    got = seen(world, "rewrite.example", "/something/new/x?q=1&r=a%20b")
    assert isinstance(got, dict)
    assert (got["name"], got["target"]) == ("app", "/new/x?q=1&r=a%20b")  # the query survives
    assert got["headers"]["x-forwarded-prefix"] == "/something"
    got = seen(world, "rewrite.example", "/SOMETHING")  # case-insensitive, `$` branch
    assert isinstance(got, dict) and got["target"] == "/"
    got = seen(world, "rewrite.example", "/something?only=query")
    assert isinstance(got, dict) and got["target"] == "/?only=query"
    # The plain Ingress's Prefix /static is nginx's ~* "^/static" on this host: /staticky too,
    # not rewritten, and the client's own X-Forwarded-Prefix (none here) is not added.
    got = seen(world, "rewrite.example", "/Staticky/file?v=2")
    assert isinstance(got, dict)
    assert (got["name"], got["target"]) == ("files", "/Staticky/file?v=2")
    assert "x-forwarded-prefix" not in got["headers"]
    assert seen(world, "rewrite.example", "/x/something") == 404  # anchored at the start
    assert seen(world, "rewrite.example", "/somethingelse") == 404


def test_regex_paths_are_tried_longest_first(world: World) -> None:
    short = ingress(
        "short",
        "order.example",
        "app",
        path="/api/.*",
        path_type="ImplementationSpecific",
        annotations={NGINX + "use-regex": "true"},
    )
    long_ = ingress(
        "long", "order.example", "files", path="/api/v1/files", created="2026-01-02T00:00:00Z"
    )
    serve(world, ("--nginx-annotations",), short, long_)
    pairs = (("order.example", "/api/v1/files/a"), ("order.example", "/api/x"))
    wait_for("both routes", lambda: routed(world, *pairs))
    for target, name in [
        ("/api/v1/files/a", "files"),  # ~* "^/api/v1/files/" is longer than ~* "^/api/.*"
        ("/api/v1/filesystem", "files"),  # ~* "^/api/v1/files": a string prefix here
        ("/api/v1/file", "app"),
        ("/API/other", "app"),
    ]:
        got = seen(world, "order.example", target)
        assert isinstance(got, dict) and (got["name"], got["target"]) == (name, target)


def test_server_alias_and_pysozu_keys_without_the_flag(world: World) -> None:
    aliased = ingress(
        "aliased",
        "main.example",
        "app",
        path="/v1",
        created="2026-01-01T00:00:00Z",
        annotations={
            "pysozu.io/server-alias": "alias.example, taken.example",
            "pysozu.io/rewrite-target": "/",
        },
    )
    more = ingress("more", "main.example", "files", path="/more", created="2026-01-02T00:00:00Z")
    owner = ingress("owner", "taken.example", "files", created="2026-01-03T00:00:00Z")
    serve(world, (), aliased, more, owner)
    wait_for(
        "the routes",
        lambda: routed(
            world, ("alias.example", "/more"), ("main.example", "/v1"), ("taken.example", "/")
        ),
    )
    for host in ("main.example", "alias.example"):
        got = seen(world, host, "/V1/deep?x=1")  # rewritten, query kept
        assert isinstance(got, dict) and (got["name"], got["target"]) == ("app", "/?x=1")
        got = seen(world, host, "/more/thing")  # another Ingress's route on the host
        assert isinstance(got, dict) and (got["name"], got["target"]) == ("files", "/more/thing")
    # taken.example is a rule host of its own: that Ingress serves it, the alias is reported.
    got = seen(world, "taken.example", "/v1")
    assert isinstance(got, dict) and (got["name"], got["target"]) == ("files", "/v1")
    conflict = wait_for(
        "the alias Conflict",
        lambda: [m for r, m in events(world, "aliased") if r == "Conflict"],
    )
    assert "server-alias taken.example" in conflict[0]


def https(world: World, host: str, ca: trustme.CA) -> tuple[int, str]:
    """GET / over TLS with SNI and Host `host`, the certificate verified against `ca`."""
    context = ssl.create_default_context()
    ca.configure_trust(context)
    try:
        with (
            socket.create_connection(("127.0.0.1", world.https_port), timeout=5) as raw,
            context.wrap_socket(raw, server_hostname=host) as tls,
        ):
            tls.sendall(f"GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
            response = http.client.HTTPResponse(tls)
            response.begin()
            return response.status, response.read().decode(errors="replace")
    except (OSError, http.client.HTTPException) as error:
        return 0, str(error)


def test_an_alias_gets_the_certificate_of_its_host_when_it_covers_it(world: World) -> None:
    ca = trustme.CA()
    leaf = ca.issue_cert("main.example", "alias.example")
    secret = tls_secret("main-tls", leaf.cert_chain_pems[0].bytes(), leaf.private_key_pem.bytes())
    body = ingress(
        "aliased",
        "main.example",
        "app",
        tls_secret="main-tls",
        annotations={NGINX + "server-alias": "alias.example,other.example"},
    )
    world.apply(secret)
    serve(world, ("--nginx-annotations",), body)
    wait_for("the alias over TLS", lambda: https(world, "alias.example", ca)[0] == 200)
    assert json.loads(https(world, "alias.example", ca)[1])["name"] == "app"
    # Plain HTTP to a secured name is redirected, as for the host itself.
    for host in ("main.example", "alias.example"):
        status, _, headers = world.get(host, "/x?y=1")
        assert (status, headers["location"]) == (308, f"https://{host}/x?y=1")
    # The certificate does not cover other.example: the listener's default one, no redirect.
    assert https(world, "other.example", ca)[0] == 0  # not trusted: not this certificate
    got = seen(world, "other.example", "/x")
    assert isinstance(got, dict) and (got["name"], got["target"]) == ("app", "/x")
