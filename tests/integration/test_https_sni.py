"""HTTPS through a real `pysozu start`: SNI routing, default certificate, strict SNI binding,
forwarded headers, HSTS, https_redirect, TLS versions. Certificates come from trustme."""

from __future__ import annotations

import http.client
import shutil
import ssl
import subprocess
from pathlib import Path

import pytest
from http_support import Backend, Seen
from https_support import Pki, TlsClient, https_config, insecure_context, served_fingerprint

pytestmark = pytest.mark.timeout(60)


def echo_headers(seen: Seen, conn: object) -> bytes:
    """A backend answering with the forwarded headers it saw."""
    body = "\n".join(
        f"{name}={','.join(seen.header(name))}"
        for name in ("x-forwarded-proto", "x-forwarded-port", "forwarded", "host")
    ).encode()
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return Pki(tmp_path)


def test_two_clusters_routed_by_sni_with_their_certificates(pysozu, backends, pki) -> None:
    cert_a, cert_b = pki.issue("a.example"), pki.issue("*.b.example")
    port = pysozu.free_port()
    echo = Backend(respond=echo_headers)
    try:
        pysozu.start(
            https_config(
                port,
                {
                    "a": ("a.example", backends.start("app-a"), cert_a),
                    "b": ("x.b.example", echo.port, cert_b),
                },
            )
        )
        context = pki.client_context()  # verifies the chain and the name
        with TlsClient(port, "a.example", context) as client:
            assert served_fingerprint(client.sock) == cert_a["fingerprint"]
            for _ in range(3):  # keep-alive over one TLS connection
                response = client.get("a.example")
                assert (response.status, response.body) == (200, b"app-a")
        with TlsClient(port, "x.b.example", context) as client:
            assert served_fingerprint(client.sock) == cert_b["fingerprint"]
            assert client.sock.selected_alpn_protocol() in (None, "http/1.1")
            seen = client.get("x.b.example").body.decode()
        assert "x-forwarded-proto=https" in seen
        assert f"x-forwarded-port={port}" in seen
        assert "proto=https" in seen
    finally:
        echo.close()


def test_unknown_or_missing_sni_gets_the_default_certificate(pysozu, backends, pki) -> None:
    cert_a = pki.issue("a.example")
    port = pysozu.free_port()
    pysozu.start(https_config(port, {"a": ("a.example", backends.start("app-a"), cert_a)}))
    for sni in ("unknown.example", None):
        with TlsClient(port, sni, insecure_context()) as client:
            assert served_fingerprint(client.sock) != cert_a["fingerprint"]
            status = client.get("unknown.example").status
            # unknown SNI: the Host equals the SNI, so it is routed (404: no such route);
            # no SNI: the built-in default certificate covers no host name (421)
            assert status == (404 if sni else 421)


def test_host_outside_the_served_certificate_is_misdirected(pysozu, backends, pki) -> None:
    cert_a, cert_b = pki.issue("a.example"), pki.issue("b.example")
    port = pysozu.free_port()
    clusters = {
        "a": ("a.example", backends.start("app-a"), cert_a),
        "b": ("b.example", backends.start("app-b"), cert_b),
    }
    pysozu.start(https_config(port, clusters))
    with TlsClient(port, "a.example", pki.client_context()) as client:
        response = client.get("b.example")
        assert response.status == 421
    with TlsClient(port, "a.example", pki.client_context()) as client:
        assert client.get("a.example").status == 200
        assert client.get("*.example").status in (400, 421)  # never expanded


def test_strict_sni_binding_can_be_turned_off(pysozu, backends, pki) -> None:
    cert_a, cert_b = pki.issue("a.example"), pki.issue("b.example")
    port = pysozu.free_port()
    clusters = {
        "a": ("a.example", backends.start("app-a"), cert_a),
        "b": ("b.example", backends.start("app-b"), cert_b),
    }
    pysozu.start(https_config(port, clusters, listener="strict_sni_binding = false"))
    with TlsClient(port, "a.example", pki.client_context()) as client:
        response = client.get("b.example")
        assert (response.status, response.body) == (200, b"app-b")


def test_hsts_from_the_listener_and_the_frontend(pysozu, backends, pki) -> None:
    cert_a = pki.issue("a.example")
    port = pysozu.free_port()
    listener = "[listeners.hsts]\nenabled = true\nmax_age = 600\ninclude_subdomains = true"
    pysozu.start(
        https_config(port, {"a": ("a.example", backends.start("app-a"), cert_a)}, listener)
    )
    with TlsClient(port, "a.example", pki.client_context()) as client:
        response = client.get("a.example")
        assert response.status == 200
        value = response.getheader("Strict-Transport-Security")
        assert value == "max-age=600; includeSubDomains"


def test_https_redirect_sends_plain_http_clients_to_https(pysozu, backends, pki) -> None:
    cert_a = pki.issue("a.example")
    https_port, http_port = pysozu.free_port(), pysozu.free_port()
    app = backends.start("app-a")
    certificate = f'certificate = "{cert_a["certificate"]}", key = "{cert_a["key"]}"'
    toml = f"""
[[listeners]]
protocol = "http"
address = "127.0.0.1:{http_port}"

[[listeners]]
protocol = "https"
address = "127.0.0.1:{https_port}"

[clusters.a]
protocol = "http"
https_redirect = true
https_redirect_port = {https_port}
frontends = [
  {{ address = "127.0.0.1:{http_port}", hostname = "a.example" }},
  {{ address = "127.0.0.1:{https_port}", hostname = "a.example", {certificate} }},
]
backends = [{{ address = "127.0.0.1:{app}", backend_id = "a-1" }}]
"""
    pysozu.start(toml)
    connection = http.client.HTTPConnection("127.0.0.1", http_port, timeout=5)
    connection.request("GET", "/x?y=1", headers={"Host": "a.example"})
    response = connection.getresponse()
    connection.close()
    assert response.status == 301
    assert response.getheader("Location") == f"https://a.example:{https_port}/x?y=1"
    with TlsClient(https_port, "a.example", pki.client_context()) as client:
        response = client.get("a.example")  # no redirect loop over HTTPS
        assert (response.status, response.body) == (200, b"app-a")


@pytest.mark.parametrize(
    ("versions", "refused"),
    [
        ('["TLS_V12"]', ssl.TLSVersion.TLSv1_3),
        ('["TLS_V13"]', ssl.TLSVersion.TLSv1_2),
    ],
)
def test_listener_tls_versions(pysozu, backends, pki, versions, refused) -> None:
    cert_a = pki.issue("a.example")
    port = pysozu.free_port()
    pysozu.start(
        https_config(
            port,
            {"a": ("a.example", backends.start("app-a"), cert_a)},
            listener=f"tls_versions = {versions}",
        )
    )
    allowed = (
        ssl.TLSVersion.TLSv1_2 if refused == ssl.TLSVersion.TLSv1_3 else ssl.TLSVersion.TLSv1_3
    )
    pinned = pki.client_context(minimum_version=allowed, maximum_version=allowed)
    with TlsClient(port, "a.example", pinned) as client:
        assert client.sock.version() == (
            "TLSv1.2" if allowed == ssl.TLSVersion.TLSv1_2 else "TLSv1.3"
        )
        assert client.get("a.example").status == 200
    wrong = pki.client_context(minimum_version=refused, maximum_version=refused)
    with pytest.raises((ssl.SSLError, ConnectionError)):
        TlsClient(port, "a.example", wrong).close()


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_curl_with_resolve_and_the_test_ca(pysozu, backends, pki, tmp_path) -> None:
    cert_a = pki.issue("a.example")
    port = pysozu.free_port()
    pysozu.start(https_config(port, {"a": ("a.example", backends.start("app-a"), cert_a)}))
    ca_file = tmp_path / "ca.pem"
    pki.ca.cert_pem.write_to_path(str(ca_file))
    result = subprocess.run(
        [
            "curl",
            "-sS",
            "--cacert",
            str(ca_file),
            "--resolve",
            f"a.example:{port}:127.0.0.1",
            f"https://a.example:{port}/",
        ],
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "app-a"


def test_cipher_list_restricts_tls12_suites(pysozu, backends, pki) -> None:
    cert_a = pki.issue("a.example")  # trustme keys are ECDSA
    port = pysozu.free_port()
    listener = (
        'tls_versions = ["TLS_V12"]\ncipher_list = ["TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"]'
    )
    pysozu.start(
        https_config(port, {"a": ("a.example", backends.start("app-a"), cert_a)}, listener)
    )
    with TlsClient(port, "a.example", pki.client_context()) as client:
        assert client.sock.cipher()[0] == "ECDHE-ECDSA-AES128-GCM-SHA256"
        assert client.get("a.example").status == 200
    other = pki.client_context()
    other.set_ciphers("ECDHE-ECDSA-AES256-GCM-SHA384")
    other.maximum_version = ssl.TLSVersion.TLSv1_2
    with pytest.raises((ssl.SSLError, ConnectionError)):
        TlsClient(port, "a.example", other).close()
