import tomllib
from pathlib import Path

import pytest
from harness import configs, reconfig, scenarios
from harness.errors import BenchError

from dataplane.command.codec import decode
from dataplane.command.config import parse_config
from dataplane.command.messages import Request

TLS = configs.TlsFiles(Path("/x/cert.pem"), Path("/x/key.pem"), Path("/x/both.pem"))


def setup(**overrides) -> configs.ProxySetup:
    return configs.ProxySetup(
        workdir=Path("/run/bench"), listen_port=8080, backend_port=9090, **overrides
    )


def test_the_target_host_is_last_in_the_routing_table():
    assert configs.cluster_hosts(1) == ["localhost"]
    hosts = configs.cluster_hosts(1000)
    assert len(set(hosts)) == 1000 and hosts[-1] == "localhost"


def test_nginx_keeps_backend_connections_alive_with_one_server_per_cluster():
    text = configs.nginx_proxy(setup(clusters=3))
    assert text.count("keepalive 64;") == 3
    assert text.count("server_name ") == 3
    assert text.count("backlog=4096") == 1  # nginx refuses listen options repeated
    assert 'proxy_set_header Connection "";' in text and "proxy_http_version 1.1;" in text
    assert "access_log off;" in text and "worker_processes 1;" in text


def test_nginx_logs_and_speaks_tls_when_asked():
    text = configs.nginx_proxy(setup(access_log=Path("/run/bench/access.log"), tls=TLS))
    assert "access_log /run/bench/access.log;" in text
    assert "listen 127.0.0.1:8080 ssl backlog=4096;" in text
    assert "proxy_set_header X-Forwarded-Proto https;" in text


def test_haproxy_routes_by_host_map_with_one_thread_and_reuse():
    config, host_map = configs.haproxy_proxy(setup(clusters=3))
    assert "nbthread 1" in config and "http-reuse always" in config
    assert "map(/run/bench/haproxy-hosts.map)" in config
    assert host_map.splitlines()[-1] == "localhost c2"
    assert config.count("\nbackend c") == 3
    assert "log " not in config


def test_haproxy_single_cluster_needs_no_map():
    config, _ = configs.haproxy_proxy(setup())
    assert "default_backend c0" in config and "use_backend" not in config


def test_pysozu_config_is_one_worker_sozu_toml():
    data = tomllib.loads(configs.pysozu_proxy(setup(clusters=2)))
    assert data["worker_count"] == 1
    assert data["log_level"] == "warn"  # successful requests are logged at info: that is "off"
    assert data["listeners"] == [{"protocol": "http", "address": "127.0.0.1:8080"}]
    assert data["clusters"]["c1"]["frontends"][0]["hostname"] == "localhost"
    assert data["clusters"]["c1"]["backends"] == [{"address": "127.0.0.1:9090"}]


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"clusters": 100},
        {"access_log": Path("/run/bench/access.log")},
        {"tls": TLS},
        {"tls": TLS, "tls13_tickets": 2},
        {"tls": TLS, "tls_resumption": False},
        {"extra_clusters_without_backend": ("reconf-0", "reconf-1")},
    ],
)
def test_pysozu_accepts_every_config_the_harness_writes(overrides, tmp_path):
    if "tls" in overrides:  # pysozu reads the certificate files while loading
        overrides = {**overrides, "tls": _real_looking_pem(tmp_path)}
    config = parse_config(configs.pysozu_proxy(setup(**overrides)))
    assert config is not None
    if "tls13_tickets" in overrides:  # pysozu-tickets2: nginx's count, not sozu's 4
        assert config.listeners[0].send_tls13_tickets == 2
    if "tls_resumption" in overrides:  # https-handshake-full: no ticket, nothing to resume
        assert config.listeners[0].send_tls13_tickets == 0


def test_pysozu_sends_sozus_ticket_count_unless_told():
    assert "send_tls13_tickets" not in configs.pysozu_proxy(setup(tls=TLS))
    text = configs.pysozu_proxy(setup(tls=TLS, tls13_tickets=2))
    assert tomllib.loads(text)["listeners"][0]["send_tls13_tickets"] == 2


def test_without_resumption_no_proxy_sends_a_ticket_or_keeps_a_session_cache():
    """https-handshake-full: every handshake a full one, on every proxy alike."""
    for resumption in (True, False):
        nginx = configs.nginx_proxy(setup(tls=TLS, tls_resumption=resumption))
        haproxy, _ = configs.haproxy_proxy(setup(tls=TLS, tls_resumption=resumption))
        pysozu = tomllib.loads(
            configs.pysozu_proxy(setup(tls=TLS, tls13_tickets=2, tls_resumption=resumption))
        )
        off = not resumption
        assert ("ssl_session_tickets off;" in nginx) is off
        assert ("ssl_session_cache off;" in nginx) is off
        assert ("ssl_conf_command NumTickets 0;" in nginx) is off
        assert ("no-tls-tickets" in haproxy) is off
        assert ("tune.ssl.cachesize 0" in haproxy) is off
        assert pysozu["listeners"][0]["send_tls13_tickets"] == (0 if off else 2)
    # plain HTTP has no TLS to configure, whatever the flag says
    assert "ssl_" not in configs.nginx_proxy(setup(tls_resumption=False))
    assert "tune.ssl" not in configs.haproxy_proxy(setup(tls_resumption=False))[0]


def test_https_handshake_scenarios_say_which_handshakes_they_measure():
    resumed, full = scenarios.select(["https-handshake", "https-handshake-full"])
    assert resumed.tls and full.tls
    assert resumed.headers == full.headers == {"Connection": "close"}
    assert resumed.tls_resumption and not full.tls_resumption
    assert "full" in full.title and "resumed" in resumed.title


def _real_looking_pem(directory: Path) -> configs.TlsFiles:
    trustme = pytest.importorskip("trustme")
    authority = trustme.CA()
    cert = authority.issue_cert("localhost")
    cert.cert_chain_pems[0].write_to_path(directory / "cert.pem")
    cert.private_key_pem.write_to_path(directory / "key.pem")
    return configs.TlsFiles(directory / "cert.pem", directory / "key.pem", directory / "both.pem")


def test_command_socket_frames_decode_as_pysozu_requests():
    frame = reconfig.frame(reconfig.backend_request("add_backend", "c0", "churn-1", 9090))
    assert int.from_bytes(frame[:8], "little") == len(frame)
    request = decode(frame[8:], Request)
    assert request.verb == "add_backend"
    assert request.body.cluster_id == "c0" and request.body.backend_id == "churn-1"
    assert str(request.body.address) == "127.0.0.1:9090"


def test_scenario_sets_select_in_order_without_duplicates():
    names = [s.name for s in scenarios.select(["quick", "close", "keepalive-13b"])]
    assert names == ["keepalive-13b", "keepalive-100k", "close"]
    assert all(s.needs for s in scenarios.SCENARIOS if s.tls)  # HTTPS rows skip, not fail
    with pytest.raises(BenchError, match="unknown scenario"):
        scenarios.select(["nope"])
