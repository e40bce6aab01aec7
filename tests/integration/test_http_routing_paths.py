"""Path rules against raw request targets (issue 16): a query string never defeats a rule, no
other spelling of `/admin` (escapes, dot segments, doubled slashes) reaches another cluster than
the `/admin` rule names, what cannot be normalised is 400, and the backend gets the bytes the
client sent. A real `pysozu start` from a sozu-style TOML file, raw sockets as the client."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from http_support import Backend, Client, Seen, exchange, get

pytestmark = pytest.mark.timeout(90)

# name -> (hostname, path, path_type, extra TOML keys of the frontend)
FRONTENDS = {
    "public": [
        ("eq.example", "/", "PREFIX", ""),
        ("pre.example", "/", "PREFIX", ""),
        ("deny.example", "/", "PREFIX", ""),
        ("q.example", "/", "PREFIX", ""),
        ("rw.example", "/", "PREFIX", ""),
    ],
    "admin": [("eq.example", "/admin", "EQUALS", ""), ("pre.example", "/admin", "PREFIX", "")],
    "foo": [("q.example", "/foo", "EQUALS", "")],
    "bbb": [("q.example", "/aaa/bbb", "PREFIX", "")],
    "aaa": [("q.example", "/aaa", "PREFIX", "")],
    "api": [("rw.example", "/api/", "PREFIX", 'rewrite_path = "/v2/$PATH[1]"')],
}

ADMIN_SPELLINGS = [
    b"/admin",
    b"/admin?x=1",
    b"/%61dmin",
    b"/%61%64%6d%69%6E",
    b"/x/../admin",
    b"/./admin",
    b"//admin",
    b"/x/%2e%2e/admin",
]


def echo(name: str):  # type: ignore[no-untyped-def]
    """A backend answering its name and the request line it received."""

    def respond(seen: Seen, _conn: socket.socket) -> bytes:
        body = name.encode() + b" " + seen.head.split(b"\r\n", 1)[0]
        return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)

    return respond


@dataclass
class Setup:
    port: int
    backends: dict[str, Backend]
    proxy: object

    def forwarded(self) -> int:
        return sum(len(backend.seen) for backend in self.backends.values())


def config(port: int, backends: dict[str, Backend]) -> str:
    lines = ["[[listeners]]", 'protocol = "http"', f'address = "127.0.0.1:{port}"', ""]
    for name, fronts in FRONTENDS.items():
        entries = ", ".join(
            f'{{ address = "127.0.0.1:{port}", hostname = "{host}", path = "{path}", '
            f'path_type = "{kind}"{", " + extra if extra else ""} }}'
            for host, path, kind, extra in fronts
        )
        backend = f'{{ address = "127.0.0.1:{backends[name].port}", backend_id = "{name}" }}'
        lines += [
            f"[clusters.{name}]",
            'protocol = "http"',
            f"frontends = [{entries}]",
            f"backends = [{backend}]",
            "",
        ]
    return "\n".join(lines)


@pytest.fixture
def setup(pysozu) -> Iterator[Setup]:  # type: ignore[no-untyped-def]
    backends = {name: Backend(echo(name)) for name in FRONTENDS}
    try:
        port = pysozu.free_port()
        proxy = pysozu.start(config(port, backends), workers=1)
        pysozu.wait_for_port(port)
        yield Setup(port, backends, proxy)
    finally:
        for backend in backends.values():
            backend.close()


def served(setup: Setup, host: str, target: bytes) -> tuple[int, bytes]:
    """(status, body) for one raw GET on a fresh connection."""
    client = Client(setup.port)
    try:
        status, _head, body = client.roundtrip(
            b"GET " + target + b" HTTP/1.1\r\nHost: " + host.encode() + b"\r\n\r\n"
        )
    finally:
        client.close()
    return status, body


def test_query_strings_do_not_defeat_path_rules(setup: Setup) -> None:
    cases = [
        (b"/foo?x=1", b"foo GET /foo?x=1 HTTP/1.1"),
        (b"/foo?", b"foo GET /foo? HTTP/1.1"),
        (b"/aaa/bbb?x=1", b"bbb GET /aaa/bbb?x=1 HTTP/1.1"),
        (b"/aaa/?next=/aaa/bbb", b"aaa GET /aaa/?next=/aaa/bbb HTTP/1.1"),
        (b"/?x=/foo", b"public GET /?x=/foo HTTP/1.1"),
    ]
    client = Client(setup.port)  # one keep-alive connection: the head caches see them all
    try:
        for target, expected in cases:
            status, _head, body = client.roundtrip(get("q.example", target.decode()))
            assert (status, body) == (200, expected), target
    finally:
        client.close()


@pytest.mark.parametrize("host", ["eq.example", "pre.example"])
def test_no_spelling_of_admin_reaches_another_cluster(setup: Setup, host: str) -> None:
    for target in ADMIN_SPELLINGS:
        status, body = served(setup, host, target)
        # The admin cluster, and the backend gets the very bytes the client sent.
        assert (status, body) == (200, b"admin GET " + target + b" HTTP/1.1"), target
    # PREFIX is a string prefix, as in sozu: /adminx is under PREFIX /admin, not EQUALS /admin.
    owner = b"public " if host == "eq.example" else b"admin "
    assert served(setup, host, b"/adminx")[1].startswith(owner)
    assert served(setup, host, b"/ADMIN")[1].startswith(b"public ")


def test_no_spelling_of_admin_escapes_a_deny_rule(setup: Setup) -> None:
    added = setup.proxy.cli(  # type: ignore[attr-defined]
        "frontend", "http", "add", "--address", f"127.0.0.1:{setup.port}",
        "--hostname", "deny.example", "--path-equals", "/admin", "deny",
    )  # fmt: skip
    assert added.returncode == 0, added.stdout + added.stderr
    before = setup.forwarded()
    for target in ADMIN_SPELLINGS:
        assert served(setup, "deny.example", target)[0] == 401, target
    assert setup.forwarded() == before
    assert served(setup, "deny.example", b"/admin/")[0] == 200


@pytest.mark.parametrize(
    "target",
    [
        b"/%2Fadmin",
        b"/x/..%2fadmin",
        b"/adm%00in",
        b"/admin#frag",
        b"/public?x#frag",
        b"/%zz",
        b"/../admin",
        b"/%2e%2e/etc/passwd",
        b"http://eq.example/%2Fadmin",
    ],
)
def test_what_cannot_be_normalised_is_400_and_never_forwarded(setup: Setup, target: bytes) -> None:
    before = setup.forwarded()
    answer = exchange(setup.port, b"GET " + target + b" HTTP/1.1\r\nHost: eq.example\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 400 "), answer[:80]
    assert setup.forwarded() == before


def test_a_path_rewrite_keeps_the_query(setup: Setup) -> None:
    status, body = served(setup, "rw.example", b"/api/./users//7?x=1&next=/api/")
    assert (status, body) == (200, b"api GET /v2/users/7?x=1&next=/api/ HTTP/1.1")
    status, body = served(setup, "rw.example", b"/api/users")
    assert (status, body) == (200, b"api GET /v2/users HTTP/1.1")
