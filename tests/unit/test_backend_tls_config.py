"""Backend TLS settings (pysozu extension `Cluster.backend_tls`): the context built once per
cluster (verification, names, ALPN, client certificate), the state's checks, the TOML table,
the CLI flags, the state file, and the stream's read-again nudge, all without a network."""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

import pytest
import trustme

from dataplane.cli.tree import build_parser
from dataplane.command.backend_tls import BackendTlsContext, check_backend_tls, names_match
from dataplane.command.config import ConfigError, parse_config
from dataplane.command.messages import (
    BackendTls,
    Cluster,
    HealthCheckConfig,
    Request,
    SetHealthCheck,
)
from dataplane.command.state import ConfigState
from dataplane.command.state_rules import StateError
from dataplane.command.statefile import decode_state, encode_state
from dataplane.proxy.clusters import ClusterRuntime
from dataplane.proxy.mux.backend_tls import EPOLLIN, BackendTlsStream

pytestmark = pytest.mark.timeout(20)


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def _der(ca: trustme.CA, *names: str) -> bytes:
    pem = ca.issue_cert(*names).cert_chain_pems[0].bytes().decode()
    return ssl.PEM_cert_to_DER_cert(pem)


# -- the context ------------------------------------------------------------------------------


def test_without_verification_nothing_is_checked() -> None:
    built = BackendTlsContext(BackendTls(), http2=False)
    assert built.context.verify_mode == ssl.CERT_NONE
    assert not built.context.check_hostname
    assert (built.server_name, built.name, built.depth, built.alpn) == (
        None,
        None,
        None,
        "http/1.1",
    )


def test_verification_by_openssl_when_the_name_is_the_sni(ca: trustme.CA) -> None:
    config = BackendTls(verify=True, ca=ca.cert_pem.bytes().decode(), server_name="b.internal")
    built = BackendTlsContext(config, http2=True)
    assert built.context.verify_mode == ssl.CERT_REQUIRED
    assert built.context.check_hostname
    assert built.name is None  # OpenSSL checks it
    assert built.alpn == "h2"


def test_a_name_verified_but_not_sent_is_checked_after_the_handshake(ca: trustme.CA) -> None:
    config = BackendTls(verify=True, ca=ca.cert_pem.bytes().decode(), verify_name="b.internal")
    built = BackendTlsContext(config, http2=False)
    assert built.context.verify_mode == ssl.CERT_REQUIRED
    assert not built.context.check_hostname
    assert (built.server_name, built.name) == (None, "b.internal")


def test_chain_only_verification_and_depth(ca: trustme.CA) -> None:
    config = BackendTls(verify=True, ca=ca.cert_pem.bytes().decode(), verify_depth=2)
    built = BackendTlsContext(config, http2=False)
    assert (built.name, built.depth) == (None, 2)
    unverified = BackendTlsContext(BackendTls(verify_depth=2), http2=False)
    assert unverified.depth is None  # depth means nothing without verification


def test_names_match(ca: trustme.CA) -> None:
    der = _der(ca, "b.internal", "*.svc.local", "10.0.0.7")
    assert names_match(der, "b.internal")
    assert names_match(der, "B.Internal.")
    assert names_match(der, "api.svc.local")
    assert not names_match(der, "a.b.svc.local")  # a wildcard covers one label
    assert not names_match(der, "svc.local")
    assert names_match(der, "10.0.0.7")
    assert not names_match(der, "10.0.0.8")
    assert not names_match(der, "other.internal")
    assert not names_match(b"not a certificate", "b.internal")


@pytest.mark.parametrize(
    ("fields", "match"),
    [
        ({"verify": True}, "verify needs a ca bundle"),
        ({"verify": True, "ca": "nonsense"}, "ca is not a PEM bundle"),
        ({"certificate": "x"}, "needs both certificate and key"),
        ({"certificate": "x", "key": "y"}, "client certificate or key refused"),
        ({"verify_depth": 101}, "verify_depth 101 is not in 0..100"),
        ({"server_name": ""}, "server_name '' is not a host name"),
        ({"verify_name": "é.example"}, "verify_name 'é.example' is not a host name"),
    ],
)
def test_the_state_refuses_unusable_settings(fields: dict[str, Any], match: str) -> None:
    cluster = Cluster(cluster_id="app", backend_tls=BackendTls(**fields))
    with pytest.raises(StateError, match=f"cluster app: .*{match}"):
        check_backend_tls(cluster)
    with pytest.raises(StateError, match=match):
        ConfigState().dispatch(Request.of(add_cluster=cluster))


def test_health_checks_and_backend_tls_do_not_go_together() -> None:
    probe = HealthCheckConfig(uri="/health")
    tls = Cluster(cluster_id="app", backend_tls=BackendTls(), health_check=probe)
    with pytest.raises(StateError, match="health checks do not speak TLS"):
        ConfigState().dispatch(Request.of(add_cluster=tls))
    state = ConfigState()
    state.dispatch(Request.of(add_cluster=Cluster(cluster_id="app", backend_tls=BackendTls())))
    with pytest.raises(StateError, match="health checks do not speak TLS"):
        state.dispatch(Request.of(set_health_check=SetHealthCheck(cluster_id="app", config=probe)))
    assert state.clusters["app"].health_check is None


def test_a_client_certificate_is_loaded(ca: trustme.CA) -> None:
    leaf = ca.issue_cert("proxy.client")
    config = BackendTls(
        certificate=leaf.cert_chain_pems[0].bytes().decode(),
        key=leaf.private_key_pem.bytes().decode(),
    )
    check_backend_tls(Cluster(cluster_id="app", backend_tls=config))
    assert BackendTlsContext(config, http2=False).context is not None


def test_the_runtime_builds_one_context_per_configuration(ca: trustme.CA) -> None:
    runtime = ClusterRuntime(Cluster(cluster_id="app", backend_tls=BackendTls()))
    first = runtime.backend_tls
    assert first is not None and first.alpn == "http/1.1"
    runtime.configure(Cluster(cluster_id="app", http2=True, backend_tls=BackendTls()))
    assert runtime.backend_tls is not first and runtime.backend_tls.alpn == "h2"
    runtime.configure(Cluster(cluster_id="app"))
    assert runtime.backend_tls is None


def test_the_state_file_round_trips(ca: trustme.CA) -> None:
    config = BackendTls(
        server_name="b.internal", verify=True, ca=ca.cert_pem.bytes().decode(), verify_depth=3
    )
    request = Request.of(add_cluster=Cluster(cluster_id="app", backend_tls=config))
    assert decode_state(encode_state([request]))[0] == [request]


# -- TOML -------------------------------------------------------------------------------------


def _toml(tls: str, protocol: str = "http") -> str:
    listener = "http" if protocol == "http" else "tcp"
    host = ', hostname = "a.example"' if protocol == "http" else ""
    return f"""
[[listeners]]
protocol = "{listener}"
address = "127.0.0.1:8080"

[clusters.app]
protocol = "{protocol}"
frontends = [{{ address = "127.0.0.1:8080"{host} }}]
backends = [{{ address = "127.0.0.1:9000" }}]

[clusters.app.backend_tls]
{tls}
"""


def test_toml_table_with_pem_files(tmp_path: Path, ca: trustme.CA) -> None:
    leaf = ca.issue_cert("proxy.client")
    (tmp_path / "ca.pem").write_bytes(ca.cert_pem.bytes())
    (tmp_path / "client.pem").write_bytes(leaf.cert_chain_pems[0].bytes())
    (tmp_path / "client.key").write_bytes(leaf.private_key_pem.bytes())
    tls = (
        f'server_name = "b.internal"\nverify = true\nca = "{tmp_path}/ca.pem"\n'
        f'verify_name = "b.internal"\nverify_depth = 2\ncertificate = "{tmp_path}/client.pem"\n'
        f'key = "{tmp_path}/client.key"'
    )
    config = parse_config(_toml(tls), str(tmp_path / "config.toml"))
    found = config.clusters["app"].cluster.backend_tls
    assert found == BackendTls(
        server_name="b.internal",
        verify=True,
        verify_name="b.internal",
        verify_depth=2,
        ca=ca.cert_pem.bytes().decode(),
        certificate=leaf.cert_chain_pems[0].bytes().decode(),
        key=leaf.private_key_pem.bytes().decode(),
    )
    plain = parse_config(_toml("").replace("[clusters.app.backend_tls]", ""), "config.toml")
    assert plain.clusters["app"].cluster.backend_tls is None


def test_bad_toml_tables_are_reported(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(_toml("verify = true\nsni = 1"), str(tmp_path / "config.toml"))
    found = [(p.table, p.key, p.message) for p in caught.value.problems]
    assert ("clusters.app.backend_tls", "sni", "unknown key") in found
    assert any(
        table == "clusters.app.backend_tls" and "verify needs a ca bundle" in message
        for table, _, message in found
    )
    with pytest.raises(ConfigError, match="cannot read"):
        parse_config(_toml('ca = "missing.pem"'), str(tmp_path / "config.toml"))


def test_backend_tls_on_a_tcp_cluster_is_ignored_with_a_warning() -> None:
    config = parse_config(_toml("", protocol="tcp"), "config.toml")
    assert config.clusters["app"].cluster.backend_tls is None
    assert any("[clusters.app] backend_tls: does not apply" in w for w in config.warnings)


# -- CLI --------------------------------------------------------------------------------------


def test_cluster_add_flags(tmp_path: Path, ca: trustme.CA) -> None:
    (tmp_path / "ca.pem").write_bytes(ca.cert_pem.bytes())
    argv = ["cluster", "add", "-i", "app", "--backend-tls-server-name", "b.internal"]
    argv += ["--backend-tls-verify", "--backend-tls-ca", str(tmp_path / "ca.pem")]
    argv += ["--backend-tls-verify-depth", "2"]
    args = build_parser().parse_args(argv)
    cluster = args.build(args).body
    assert cluster.backend_tls == BackendTls(
        server_name="b.internal", verify=True, verify_depth=2, ca=ca.cert_pem.bytes().decode()
    )
    args = build_parser().parse_args(["cluster", "add", "-i", "app", "--backend-tls"])
    assert args.build(args).body.backend_tls == BackendTls()
    args = build_parser().parse_args(["cluster", "add", "-i", "app"])
    assert args.build(args).body.backend_tls is None


# -- the stream's nudge -----------------------------------------------------------------------


class _FakeTls:
    def __init__(self, pending: int) -> None:
        self.left = pending

    def pending(self) -> int:
        return self.left

    def fileno(self) -> int:
        return 7


class _FakeLoop:
    def __init__(self) -> None:
        self.handlers: dict[int, Any] = {}
        self.soon: list[object] = []

    def flush_soon(self, writer: object) -> None:
        self.soon.append(writer)


class _Conn:
    fd = 7
    mask = EPOLLIN


def test_decrypted_bytes_left_in_openssl_are_read_after_the_turn() -> None:
    stream = object.__new__(BackendTlsStream)
    loop, conn, calls = _FakeLoop(), _Conn(), []
    stream._obj = stream._sock = _FakeTls(pending=100)  # type: ignore[assignment]
    stream.loop, stream.reader = loop, conn  # type: ignore[assignment]
    loop.handlers[7] = calls.append
    stream.flush()
    assert calls == [EPOLLIN] and loop.soon == []
    conn.mask = 0  # the session reads nothing now (its client is slow): look again later
    stream.flush()
    assert calls == [EPOLLIN] and loop.soon == [stream]
    stream._obj.left = 0  # type: ignore[attr-defined]
    conn.mask = EPOLLIN
    stream.flush()  # nothing held any more: nothing to do
    assert calls == [EPOLLIN]
