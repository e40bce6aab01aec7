"""Client certificates (`client_auth`, docs/client-certificates.md) through a real pysozu:
Python's ssl, httpx and curl presenting certificates made by trustme, HTTP/1.1 and HTTP/2.

`mtls.example` asks for a certificate from its own CA; `plain.example` shares the listener and
the server certificate (so strict SNI binding lets a request name either host) and asks for
none. The echo backend answers with the headers it received."""

from __future__ import annotations

import datetime
import json
import shutil
import socket
import ssl
import subprocess
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from h2_support import EchoBackend
from https_support import Pki

pytestmark = pytest.mark.timeout(90)


@pytest.fixture
def echo() -> Iterator[EchoBackend]:
    backend = EchoBackend()
    try:
        yield backend
    finally:
        backend.stop()


class Setup:
    def __init__(self, tmp_path: Path) -> None:
        self.tmp = tmp_path
        self.pki = Pki(tmp_path)
        self.server = self.pki.issue("mtls.example", "plain.example", "other.example")
        self.clients = trustme.CA()
        self.ca_file = tmp_path / "clients-ca.pem"
        self.ca_file.write_bytes(self.clients.cert_pem.bytes())
        self.alice = self.clients.issue_cert("alice.clients.test", common_name="alice")
        self.bob = self.clients.issue_cert("bob.clients.test", common_name="bob")

    def config(self, port: int, backend: int, client_auth: str) -> str:
        cert = self.server
        fronts = ""
        for host, auth in (("mtls.example", client_auth), ("plain.example", "")):
            fronts += f"""
[[clusters.app.frontends]]
address = "127.0.0.1:{port}"
hostname = "{host}"
certificate = "{cert["certificate"]}"
key = "{cert["key"]}"
{auth.replace("DIR/", f"{self.tmp}/")}
"""
        return f"""
worker_count = 1

[[listeners]]
protocol = "https"
address = "127.0.0.1:{port}"

[clusters.app]
protocol = "http"
backends = [{{ address = "127.0.0.1:{backend}", backend_id = "echo" }}]
{fronts}"""

    def context(self, leaf: trustme.LeafCert | None = None, alpn: str = "http/1.1") -> Any:
        context = self.pki.client_context()
        context.set_alpn_protocols([alpn])
        if leaf is not None:
            leaf.configure_cert(context)
        return context


def get(
    port: int, sni: str, context: ssl.SSLContext, host: str | None = None, extra: str = ""
) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 request on a new TLS connection."""
    raw = socket.create_connection(("127.0.0.1", port), 5)
    with raw, context.wrap_socket(raw, server_hostname=sni) as tls:
        head = f"GET /x HTTP/1.1\r\nHost: {host or sni}\r\nConnection: close\r\n{extra}\r\n"
        tls.sendall(head.encode())
        answer = b""
        while chunk := tls.recv(65536):
            answer += chunk
    head_bytes, _, body = answer.partition(b"\r\n\r\n")
    lines = head_bytes.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.lower()] = value.strip()
    return int(lines[0].split(" ")[1]), headers, body


def seen(body: bytes) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for name, value in json.loads(body)["headers"]:
        found.setdefault(name, []).append(value)
    return found


REQUIRED = (
    'client_auth = { ca = "DIR/clients-ca.pem", verify = "on", pass_certificate = true, '
    'match_cn = "CN=alice" }'
)


def test_required_certificate_over_http1(pysozu: Any, echo: EchoBackend, tmp_path: Path) -> None:
    setup = Setup(tmp_path)
    port = pysozu.free_port()
    pysozu.start(setup.config(port, echo.port, REQUIRED), workers=1)
    spoof = "ssl-client-verify: SUCCESS\r\nssl-client-subject-dn: CN=admin\r\n"

    status, _, body = get(port, "mtls.example", setup.context(), extra=spoof)
    assert status == 400 and b"No required SSL certificate was sent" in body

    status, _, body = get(port, "mtls.example", setup.context(setup.alice), extra=spoof)
    assert status == 200
    headers = seen(body)
    assert headers["ssl-client-verify"] == ["SUCCESS"]
    assert headers["ssl-client-subject-dn"][0].startswith("CN=alice")
    assert "CN=admin" not in headers["ssl-client-subject-dn"]
    assert headers["ssl-client-issuer-dn"][0] != ""
    pem = urllib.parse.unquote(headers["ssl-client-cert"][0])
    assert pem == setup.alice.cert_chain_pems[0].bytes().decode()

    assert get(port, "mtls.example", setup.context(setup.bob))[0] == 403  # match_cn

    stranger = trustme.CA().issue_cert("eve.clients.test", common_name="alice")
    with pytest.raises((ssl.SSLError, ConnectionError)):
        get(port, "mtls.example", setup.context(stranger))  # refused in the handshake

    # The other host asks for nothing and its requests keep their headers as sent.
    status, _, body = get(port, "plain.example", setup.context(), extra=spoof)
    assert status == 200 and seen(body)["ssl-client-verify"] == ["SUCCESS"]
    # A request for the mTLS host on a connection made for the other one: 421.
    status, _, _ = get(port, "plain.example", setup.context(setup.alice), host="mtls.example")
    assert status == 421


def test_http2_certificate_and_coalescing(pysozu: Any, echo: EchoBackend, tmp_path: Path) -> None:
    setup = Setup(tmp_path)
    port = pysozu.free_port()
    pysozu.start(setup.config(port, echo.port, REQUIRED), workers=1)

    def client(sni: str, leaf: trustme.LeafCert | None) -> httpx.Client:
        context = setup.context(leaf, "h2")
        transport = httpx.HTTPTransport(http2=True, verify=context, retries=0)
        return httpx.Client(
            transport=transport,
            base_url=f"https://127.0.0.1:{port}",
            timeout=10,
            event_hooks={"request": [lambda r: r.extensions.update(sni_hostname=sni)]},
        )

    with client("mtls.example", setup.alice) as alice:
        response = alice.get("/x", headers={"host": "mtls.example", "ssl-client-cert": "forged"})
        assert response.http_version == "HTTP/2" and response.status_code == 200
        headers = seen(response.content)
        assert headers["ssl-client-verify"] == ["SUCCESS"]
        assert headers["ssl-client-cert"][0].startswith("-----BEGIN%20CERTIFICATE-----")
        # The same connection serves the host without client_auth (no headers added).
        plain = alice.get("/x", headers={"host": "plain.example"})
        assert plain.status_code == 200 and "ssl-client-verify" not in seen(plain.content)
    with client("mtls.example", None) as anonymous:
        assert anonymous.get("/x", headers={"host": "mtls.example"}).status_code == 400
    with client("plain.example", setup.alice) as coalesced:
        response = coalesced.get("/x", headers={"host": "mtls.example"})
        assert response.http_version == "HTTP/2" and response.status_code == 421


def test_optional_error_page_and_optional_no_ca(
    pysozu: Any, echo: EchoBackend, tmp_path: Path
) -> None:
    setup = Setup(tmp_path)
    port = pysozu.free_port()
    optional = 'client_auth = { ca = "DIR/clients-ca.pem", verify = "optional" }'
    proxy = pysozu.start(setup.config(port, echo.port, optional), workers=1)
    status, _, body = get(port, "mtls.example", setup.context())
    assert status == 200 and seen(body)["ssl-client-verify"] == ["NONE"]
    assert "ssl-client-cert" not in seen(body)  # pass_certificate is off
    status, _, body = get(port, "mtls.example", setup.context(setup.bob))
    assert status == 200 and seen(body)["ssl-client-verify"] == ["SUCCESS"]

    for host, flags in (
        ("page.example", ["--client-error-page", "https://login.example/cert"]),
        ("noca.example", ["--client-verify", "optional_no_ca"]),
    ):
        added = proxy.cli(
            "frontend", "https", "add", "-a", f"127.0.0.1:{port}", "--hostname", host,
            "--client-ca", str(setup.ca_file), *flags, "id", "app",
        )  # fmt: skip
        assert added.returncode == 0, added.stdout + added.stderr
    insecure = setup.pki.client_context(check_hostname=False, verify_mode=ssl.CERT_NONE)
    insecure.set_alpn_protocols(["http/1.1"])
    status, headers, _ = get(port, "page.example", insecure)
    assert status == 302 and headers["location"] == "https://login.example/cert"
    status, _, body = get(port, "noca.example", insecure)
    assert status == 503 and b"optional_no_ca is not served" in body
    bad = proxy.cli(
        "frontend", "https", "add", "-a", f"127.0.0.1:{port}", "--hostname", "x.example",
        "--client-verify", "optional", "id", "app",
    )  # fmt: skip
    assert bad.returncode != 0 and "need --client-ca" in bad.stdout + bad.stderr


def test_revocation_list(pysozu: Any, echo: EchoBackend, tmp_path: Path) -> None:
    setup = Setup(tmp_path)
    ca_key = serialization.load_pem_private_key(setup.clients.private_key_pem.bytes(), None)
    ca_cert = x509.load_pem_x509_certificate(setup.clients.cert_pem.bytes())
    revoked = x509.load_pem_x509_certificate(setup.bob.cert_chain_pems[0].bytes())
    now = datetime.datetime.now(datetime.UTC)
    crl = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca_cert.subject)
        .last_update(now - datetime.timedelta(hours=1))
        .next_update(now + datetime.timedelta(days=1))
        .add_revoked_certificate(
            x509.RevokedCertificateBuilder()
            .serial_number(revoked.serial_number)
            .revocation_date(now - datetime.timedelta(hours=1))
            .build()
        )
        .sign(ca_key, hashes.SHA256())  # type: ignore[arg-type]
    )
    (tmp_path / "clients.crl").write_bytes(crl.public_bytes(serialization.Encoding.PEM))
    auth = 'client_auth = { ca = "DIR/clients-ca.pem", crl = "DIR/clients.crl" }'
    proxy = pysozu.start(setup.config(port := pysozu.free_port(), echo.port, auth), workers=1)
    assert get(port, "mtls.example", setup.context(setup.alice))[0] == 200
    with pytest.raises((ssl.SSLError, ConnectionError)):
        get(port, "mtls.example", setup.context(setup.bob))  # revoked
    result = proxy.cli("-j", "metrics", "get")
    assert result.returncode == 0, result.stderr
    assert _count(json.loads(result.stdout), "tls.client_cert.refused") == 1


def test_a_resumed_session_keeps_its_certificate(
    pysozu: Any, echo: EchoBackend, tmp_path: Path
) -> None:
    setup = Setup(tmp_path)
    port = pysozu.free_port()
    pysozu.start(setup.config(port, echo.port, REQUIRED), workers=1)
    for version in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
        context = setup.context(setup.alice)
        context.maximum_version = version
        session = None
        for attempt in range(2):
            raw = socket.create_connection(("127.0.0.1", port), 5)
            with (
                raw,
                context.wrap_socket(raw, server_hostname="mtls.example", session=session) as tls,
            ):
                tls.sendall(b"GET /x HTTP/1.1\r\nHost: mtls.example\r\nConnection: close\r\n\r\n")
                answer = b""
                while chunk := tls.recv(65536):
                    answer += chunk
                assert tls.session_reused == (attempt == 1), version
                session = tls.session
            assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
            body = answer.partition(b"\r\n\r\n")[2]
            assert seen(body)["ssl-client-subject-dn"][0].startswith("CN=alice")


def _count(node: Any, name: str) -> int:
    """The sum of the counts named `name` anywhere in `metrics get`'s JSON."""
    if isinstance(node, list):
        return sum(_count(item, name) for item in node)
    if not isinstance(node, dict):
        return 0
    total = 0
    for key, value in node.items():
        if key == name:
            total += value if type(value) is int else sum(_numbers(value))
        else:
            total += _count(value, name)
    return total


def _numbers(node: Any) -> list[int]:
    if type(node) is int:
        return [node]
    if isinstance(node, dict):
        return [n for value in node.values() for n in _numbers(value)]
    return []


def test_verify_depth(pysozu: Any, echo: EchoBackend, tmp_path: Path) -> None:
    setup = Setup(tmp_path)
    auth = 'client_auth = { ca = "DIR/clients-ca.pem", verify_depth = 0 }'
    pysozu.start(setup.config(port := pysozu.free_port(), echo.port, auth), workers=1)
    assert get(port, "mtls.example", setup.context(setup.alice))[0] == 200
    # Issued by an intermediate CA (sent by the client): one intermediate, depth 0 allows none.
    deep = setup.clients.create_child_ca().issue_cert("carol.clients.test", common_name="carol")
    status, _, body = get(port, "mtls.example", setup.context(deep))
    assert status == 400 and b"The SSL certificate error" in body


def test_curl_over_http2_with_and_without_a_certificate(
    pysozu: Any, echo: EchoBackend, tmp_path: Path
) -> None:
    curl = shutil.which("curl")
    assert curl is not None
    setup = Setup(tmp_path)
    port = pysozu.free_port()
    pysozu.start(setup.config(port, echo.port, REQUIRED), workers=1)
    trust = tmp_path / "server-ca.pem"
    setup.pki.ca.cert_pem.write_to_path(str(trust))
    alice = tmp_path / "alice.pem"
    setup.alice.private_key_and_cert_chain_pem.write_to_path(str(alice))
    base = [curl, "-s", "--http2", "--cacert", str(trust), "-w", "\n%{http_version} %{http_code}"]
    base += ["--resolve", f"mtls.example:{port}:127.0.0.1", f"https://mtls.example:{port}/x"]
    with_cert = subprocess.run([*base, "--cert", str(alice)], capture_output=True, timeout=20)
    body, _, status = with_cert.stdout.rpartition(b"\n")
    assert status == b"2 200", with_cert.stderr
    assert seen(body)["ssl-client-verify"] == ["SUCCESS"]
    without = subprocess.run(base, capture_output=True, timeout=20)
    assert without.stdout.rpartition(b"\n")[2] == b"2 400", without.stderr


def test_the_premise_an_sni_context_swap_asks_for_no_certificate(tmp_path: Path) -> None:
    """Why listeners with client_auth peek at the SNI (tls/client_auth.py): CPython's SNI
    callback can swap the context, but OpenSSL keeps the first one's verify mode, so a context
    asking for a certificate, swapped in, asks for nothing."""
    setup = Setup(tmp_path)
    server = setup.server
    asking = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    asking.load_cert_chain(server["certificate"], server["key"])
    asking.verify_mode = ssl.CERT_OPTIONAL
    asking.load_verify_locations(cadata=setup.clients.cert_pem.bytes().decode())
    first = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    first.load_cert_chain(server["certificate"], server["key"])
    first.sni_callback = lambda connection, name, _: setattr(connection, "context", asking)
    for server_context, asked in ((first, False), (asking, True)):
        left, right = socket.socketpair()
        client = setup.context(setup.alice)
        client.check_hostname, client.verify_mode = False, ssl.CERT_NONE
        served = server_context.wrap_socket(left, server_side=True, do_handshake_on_connect=False)
        tls = client.wrap_socket(
            right, server_hostname="mtls.example", do_handshake_on_connect=False
        )
        with served, tls:
            served.setblocking(False)
            tls.setblocking(False)
            for _ in range(100):
                done = 0
                for side in (tls, served):
                    try:
                        side.do_handshake()
                        done += 1
                    except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
                        pass
                if done == 2:
                    break
            else:
                raise AssertionError("no handshake")
            tls.sendall(b"x")  # TLS 1.3: the server reads the client's certificate flight
            for _ in range(100):
                try:
                    served.recv(1)
                    break
                except ssl.SSLWantReadError:
                    time.sleep(0.01)
            assert (served.getpeercert(binary_form=True) is not None) is asked
