"""Client certificates (command/client_auth_rules.py, proxy/routing/client_auth.py,
proxy/tls/client_auth.py): value checks, the TOML table, CLI flags, state file, the request
decision on fake connections, the handshake index by SNI and the depth count."""

from __future__ import annotations

import argparse
import datetime
import logging
import shlex
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from fake_host import FakeHost

from dataplane.cli.tree import build_parser
from dataplane.command.address import SocketAddress
from dataplane.command.client_auth_rules import client_auth_problem
from dataplane.command.config import parse_config
from dataplane.command.config_reader import ConfigError
from dataplane.command.messages import (
    ClientAuth,
    HttpListenerConfig,
    HttpsListenerConfig,
    Request,
    RequestHttpFrontend,
)
from dataplane.command.state import ConfigState
from dataplane.command.state_rules import StateError
from dataplane.command.statefile import decode_state, encode_state
from dataplane.proxy.mux.request_route import Forward, Refusal, route_request
from dataplane.proxy.routing.client_auth import (
    ClientAuthPolicy,
    ClientConnection,
    ClientRefusal,
    escaped,
    header_safe,
)
from dataplane.proxy.tls.client_auth import ClientAuthIndex, _bundle_depth

ADDRESS = SocketAddress.parse("127.0.0.1:8443")
NOW = datetime.datetime.now(datetime.UTC)


def _certificate(
    cn: str, issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None = None
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    signer, issuer_name = (issuer[1], issuer[0].subject) if issuer else (key, name)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - datetime.timedelta(days=1))
        .not_valid_after(NOW + datetime.timedelta(days=1))
        .sign(signer, hashes.SHA256())
    )
    return certificate, key


ROOT = _certificate("root")
INTERMEDIATE = _certificate("intermediate", ROOT)
CA_PEM = ROOT[0].public_bytes(serialization.Encoding.PEM).decode()


def _pem(certificate: x509.Certificate) -> str:
    return certificate.public_bytes(serialization.Encoding.PEM).decode()


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"verify": "yes"}, "is not one of on, optional, optional_no_ca"),
        ({"verify_depth": 101}, "verify_depth 101 is not in 0..100"),
        ({"ca": "not pem"}, "ca is not a PEM certificate bundle"),
        ({"crl": "not pem"}, "crl is not a PEM CRL"),
        ({"error_page": "https://a b"}, "error_page"),
        ({"match_cn": "CN=(a"}, "match_cn 'CN=(a' does not compile"),
    ],
)
def test_bad_values_are_clear_errors(fields: dict[str, object], message: str) -> None:
    auth = ClientAuth(ca=CA_PEM)
    for name, value in fields.items():
        setattr(auth, name, value)
    problem = client_auth_problem(auth)
    assert problem is not None and message in problem
    assert client_auth_problem(ClientAuth(ca=CA_PEM), "*.a.com") is None
    assert "exact or *.domain" in (client_auth_problem(ClientAuth(ca=CA_PEM), "/a.*/") or "")


def _toml(tmp_path: Path, protocol: str, extra: str = "") -> str:
    ca = tmp_path / "ca.pem"
    ca.write_text(CA_PEM)
    leaf, key = _certificate("a.com")
    (tmp_path / "c.pem").write_text(_pem(leaf))
    (tmp_path / "k.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    tls = (
        f'certificate = "{tmp_path}/c.pem"\nkey = "{tmp_path}/k.pem"' if protocol == "https" else ""
    )
    return f"""
[[listeners]]
protocol = "{protocol}"
address = "127.0.0.1:8443"

[clusters.app]
protocol = "http"
backends = [{{ address = "127.0.0.1:9000" }}]

[[clusters.app.frontends]]
address = "127.0.0.1:8443"
hostname = "a.com"
{tls}
client_auth = {{ ca = "{ca}", verify = "optional", match_cn = "CN=a"{extra} }}
"""


def test_the_toml_table(tmp_path: Path) -> None:
    config = parse_config(_toml(tmp_path, "https"))
    front = next(r.body for r in config.generate_requests() if r.verb == "add_https_frontend")
    assert front.client_auth == ClientAuth(ca=CA_PEM, verify="optional", match_cn="CN=a")
    with pytest.raises(ConfigError, match="verfy"):
        parse_config(_toml(tmp_path, "https", ', verfy = "on"'))
    with pytest.raises(ConfigError, match="cannot read"):
        parse_config(_toml(tmp_path, "https", ', crl = "missing.crl"'))
    with pytest.raises(ConfigError, match="plain HTTP listener: no TLS handshake"):
        parse_config(_toml(tmp_path, "http"))


def test_state_refuses_it_on_http_and_keeps_it_in_the_state_file() -> None:
    state = ConfigState()
    state.dispatch(Request.of(add_http_listener=HttpListenerConfig(address=ADDRESS)))
    front = RequestHttpFrontend(
        address=ADDRESS, hostname="a.com", cluster_id="app", client_auth=ClientAuth(ca=CA_PEM)
    )
    with pytest.raises(StateError, match="client_auth is for HTTPS listeners"):
        state.dispatch(Request.of(add_http_frontend=front))
    bad = RequestHttpFrontend(
        address=ADDRESS, hostname="a.com", cluster_id="app", client_auth=ClientAuth(ca="x")
    )
    with pytest.raises(StateError, match=r"frontend a\.com: client_auth ca"):
        state.dispatch(Request.of(add_https_frontend=bad))
    requests = [
        Request.of(add_https_listener=HttpsListenerConfig(address=ADDRESS)),
        Request.of(add_https_frontend=front),
    ]
    assert decode_state(encode_state(requests)) == (requests, [])


def _request(line: str) -> Request:
    args = build_parser().parse_args(shlex.split(line))
    result: Request = args.build(args)
    return result


def test_cli_flags(tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_text(CA_PEM)
    base = "frontend https add -a 127.0.0.1:443 --hostname a.com "
    assert _request(base + "id app").body.client_auth is None
    front = _request(
        base + f"--client-ca {tmp_path}/ca.pem --client-verify optional --client-verify-depth 2 "
        "--client-error-page https://e.example/ --client-pass-certificate "
        "--client-match-cn CN=a id app"
    ).body
    assert front.client_auth == ClientAuth(
        ca=CA_PEM,
        verify="optional",
        verify_depth=2,
        error_page="https://e.example/",
        pass_certificate=True,
        match_cn="CN=a",
    )
    with pytest.raises(argparse.ArgumentTypeError, match="need --client-ca"):
        _request(base + "--client-pass-certificate id app")


def _connection(
    policy: ClientAuthPolicy, subject: str | None, failure: str | None = None
) -> ClientConnection:
    issuer = "CN=root" if subject else None
    pem = "-----BEGIN CERTIFICATE-----\nAB+/=\n-----END CERTIFICATE-----\n" if subject else None
    return ClientConnection(None, policy.key, subject, issuer, pem, failure)


def test_the_request_decision() -> None:
    on = ClientAuthPolicy(ClientAuth(ca=CA_PEM, match_cn="CN=alice", pass_certificate=True))
    alice = _connection(on, "CN=alice,O=x")
    headers = on.check(alice, "a.com")
    assert headers == (
        ("ssl-client-verify", "SUCCESS"),
        ("ssl-client-subject-dn", "CN=alice,O=x"),
        ("ssl-client-issuer-dn", "CN=root"),
        (
            "ssl-client-cert",
            "-----BEGIN%20CERTIFICATE-----%0AAB%2B%2F%3D%0A-----END%20CERTIFICATE-----%0A",
        ),
    )
    assert on.check(_connection(on, "CN=bob"), "a.com") == ClientRefusal(
        403, "client certificate unauthorized"
    )
    assert on.check(_connection(on, None), "a.com") == ClientRefusal(
        400, "No required SSL certificate was sent"
    )
    assert on.check(_connection(on, "CN=alice", "certificate chain too long"), "a.com") == (
        ClientRefusal(400, "The SSL certificate error")
    )
    other = ClientAuthPolicy(ClientAuth(ca=CA_PEM, verify="optional"))
    for connection in (None, object(), _connection(other, "CN=alice")):
        refusal = on.check(connection, "a.com")
        assert isinstance(refusal, ClientRefusal) and refusal.status == 421
    none = other.check(_connection(other, None), "a.com")
    assert none == (
        ("ssl-client-verify", "NONE"),
        ("ssl-client-subject-dn", ""),  # empty: the client's own copy is removed
        ("ssl-client-issuer-dn", ""),
        ("ssl-client-cert", ""),
    )
    page = ClientAuthPolicy(ClientAuth(ca=CA_PEM, error_page="https://e/"))
    assert page.check(_connection(page, None), "a.com") == ClientRefusal(
        302, "No required SSL certificate was sent", "https://e/"
    )
    no_ca = ClientAuthPolicy(ClientAuth(ca=CA_PEM, verify="optional_no_ca"))
    refusal = no_ca.check(_connection(no_ca, "CN=a"), "a.com")
    assert isinstance(refusal, ClientRefusal) and refusal.status == 503


def test_header_values_are_ascii_without_controls() -> None:
    assert header_safe("CN=a\r\nX: y,O=é") == "CN=a\\0D\\0AX: y,O=\\C3\\A9"
    assert escaped("a b+/\n") == "a%20b%2B%2F%0A"


def test_route_request_adds_the_headers_and_refuses() -> None:
    host = FakeHost()
    host.route(HttpListenerConfig(address=ADDRESS))
    auth = ClientAuth(ca=CA_PEM)
    front = RequestHttpFrontend(
        address=ADDRESS, hostname="m.com", cluster_id="app", client_auth=auth
    )
    host.proxy.apply(Request.of(add_http_frontend=front))
    listener = host.proxy.listeners[ADDRESS]
    request = listener.parse(b"GET / HTTP/1.1\r\nHost: m.com\r\n\r\n")
    policy = ClientAuthPolicy(auth)

    forward = route_request(
        listener, request, "m.com", lambda: "127.0.0.1", 0.0, None, _connection(policy, "CN=a")
    )
    assert isinstance(forward, Forward) and forward.edits is not None
    assert ("ssl-client-verify", "SUCCESS") in forward.edits.request_headers
    refused = route_request(listener, request, "m.com", lambda: "127.0.0.1", 0.0, None, None)
    assert isinstance(refused, Refusal) and refused.status == 421
    plain = listener.parse(b"GET / HTTP/1.1\r\nHost: p.com\r\n\r\n")
    host.proxy.apply(
        Request.of(
            add_http_frontend=RequestHttpFrontend(
                address=ADDRESS, hostname="p.com", cluster_id="app"
            )
        )
    )
    passed = route_request(listener, plain, "p.com", lambda: "127.0.0.1", 0.0, None, None)
    assert isinstance(passed, Forward) and passed.edits is None  # no policy: nothing added


def _front(hostname: str, auth: ClientAuth | None) -> RequestHttpFrontend:
    return RequestHttpFrontend(
        address=ADDRESS, hostname=hostname, cluster_id="app", client_auth=auth
    )


def test_the_index_by_sni(caplog: pytest.LogCaptureFixture) -> None:
    index = ClientAuthIndex()
    assert not index.active
    on, optional = ClientAuth(ca=CA_PEM), ClientAuth(ca=CA_PEM, verify="optional")
    index.update("k1", _front("a.com", on), "a.com")
    index.update("k2", _front("*.b.com", optional), "*.b.com")
    assert index.active
    found = index.match("a.com")
    assert found is not None and found.config == on
    wildcard = index.match("x.b.com")
    assert wildcard is not None and wildcard.config == optional
    assert index.match("b.com") is None and index.match("y.x.b.com") is None
    with caplog.at_level(logging.WARNING):
        index.update("k3", _front("a.com", optional), "a.com")
    assert "differ in client_auth" in caplog.text
    index.update("k1", None, "a.com")
    index.update("k3", _front("a.com", None), "a.com")  # changed to none
    index.update("k2", None, "*.b.com")
    assert not index.active and index.match("a.com") is None


def test_depth_along_the_bundle() -> None:
    leaf = _certificate("leaf", ROOT)[0]
    deep = _certificate("deep", INTERMEDIATE)[0]
    both = CA_PEM + _pem(INTERMEDIATE[0])
    assert _bundle_depth(leaf, CA_PEM) == 0
    assert _bundle_depth(deep, both) == 1
    assert _bundle_depth(deep, CA_PEM) is None  # its issuer is not in the bundle
