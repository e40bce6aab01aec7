"""The TCP/UDP relay scenarios' pieces: configurations, the UDP load generator's report and
command line, wrk's POST script, the per-CPU notes, and finding nginx's stream module."""

from pathlib import Path

import pytest
from harness import configs, layer4, loadgen, scenarios, tools, udpload
from harness.errors import ParseError, ToolMissing
from harness.loadgen import LoadResult
from harness.results import Measurement, Outcome

from dataplane.command.config import parse_config
from dataplane.command.messages import UdpListenerConfig


def setup(layer4_protocol: str, **overrides) -> configs.ProxySetup:
    return configs.ProxySetup(
        workdir=Path("/run/bench"),
        listen_port=8080,
        backend_port=9090,
        layer4=layer4_protocol,
        **overrides,
    )


@pytest.mark.parametrize("protocol", ["tcp", "udp"])
def test_pysozu_relay_configs_are_accepted_without_warnings(protocol):
    text = layer4.pysozu_relay(setup(protocol))
    config = parse_config(text)
    assert not config.warnings
    [listener] = config.listeners
    assert str(listener.address) == "127.0.0.1:8080"
    assert isinstance(listener, UdpListenerConfig) == (protocol == "udp")
    assert len(config.clusters) == 1
    assert 'protocol = "tcp"' in text.split("[clusters.c0]")[1]
    assert 'backends = [{ address = "127.0.0.1:9090" }]' in text
    assert "worker_count = 1" in text and 'log_level = "warn"' in text


def test_nginx_stream_relays_tcp_with_the_module_loaded():
    text = layer4.nginx_stream(setup("tcp", nginx_stream_module=layer4.STREAM_MODULE))
    assert text.startswith("worker_processes 1;")
    assert f"load_module {layer4.STREAM_MODULE};" in text
    assert "upstream b { server 127.0.0.1:9090; }" in text
    assert "listen 127.0.0.1:8080 backlog=4096; proxy_pass b;" in text
    assert "http {" not in text and " udp;" not in text


def test_nginx_stream_relays_udp_sessions_as_long_as_pysozu_flows():
    text = layer4.nginx_stream(setup("udp"))
    assert "load_module" not in text  # built-in stream: nothing to load
    server = f"listen 127.0.0.1:8080 udp; proxy_pass b; proxy_timeout {layer4.UDP_IDLE_TIMEOUT_S}s;"
    assert server in text
    assert "proxy_responses" not in text  # a session is not cut after one answer


def test_the_udp_backend_returns_the_reply_for_every_datagram():
    text = layer4.nginx_udp_backend(Path("/w"), 5353, "/m/stream.so")
    assert "load_module /m/stream.so;" in text
    assert 'listen 127.0.0.1:5353 udp; return "pong\\n";' in text
    assert "master_process off;" in text


def test_haproxy_relays_tcp_only():
    text = layer4.haproxy_tcp(setup("tcp"))
    assert "mode tcp" in text and "nbthread 1" in text and "mode http" not in text
    assert "bind 127.0.0.1:8080" in text and "server s1 127.0.0.1:9090" in text
    with pytest.raises(ValueError, match="UDP"):
        layer4.haproxy_tcp(setup("udp"))


@pytest.mark.parametrize(
    "overrides",
    [{"layer4": "sctp"}, {"clusters": 2}, {"access_log": Path("/a.log")}],
)
def test_relay_configs_refuse_what_they_cannot_express(overrides):
    protocol = overrides.pop("layer4", "tcp")
    with pytest.raises(ValueError):
        layer4.pysozu_relay(setup(protocol, **overrides))


def test_wrk_posts_the_body_through_a_lua_script():
    script = layer4.wrk_body_script(102400)
    assert script == 'wrk.method = "POST"\nwrk.body = string.rep("x", 102400)\n'
    with pytest.raises(ValueError):
        layer4.wrk_body_script(0)
    argv = loadgen.wrk_command(
        "wrk",
        "http://127.0.0.1:1/x",
        connections=4,
        duration_s=1,
        headers={},
        timeout_s=60,
        script=Path("/w/post.lua"),
    )
    assert argv[-3:] == ["-s", "/w/post.lua", "http://127.0.0.1:1/x"]
    assert "--timeout=60s" in argv and "-c4" in argv


def test_the_backend_answers_a_post_to_a_static_file_with_the_file():
    text = configs.nginx_backend(Path("/w"), 9090, 1024)
    assert "error_page 405 =200 $uri;" in text and "client_max_body_size 1m;" in text
    assert configs.expected_body_size(f"/static/{configs.BULK_FILE_NAME}") == 100 * 2**20


def test_udpload_summary_round_trips_and_becomes_a_load_result():
    line = udpload.UdpLoad(sent=1000, received=990, lost=6, seconds=2.0).line()
    assert line == "udpload: sent 1000 received 990 lost 6 seconds 2.000"
    load = loadgen.parse_udpload(f"noise\n{line}\n")
    assert load == LoadResult(990, 2.0, 495.0, None, None, 6)
    assert udpload.parse("udpload: sent x") is None
    with pytest.raises(ParseError, match="no udpload summary"):
        loadgen.parse_udpload("Traceback ...")


def test_udpload_command_runs_the_harness_file_with_this_python():
    argv = loadgen.udpload_command(5353, flows=50, duration_s=1.5)
    assert argv[1].endswith("harness/udpload.py")
    assert argv[2:] == [
        "127.0.0.1",
        "5353",
        "--duration=1.5",
        "--flows=50",
        "--window=4",
        "--size=64",
    ]


def test_udpload_refuses_nonsense_options():
    with pytest.raises(SystemExit):
        udpload.main(["127.0.0.1", "1", "--flows", "0"])
    with pytest.raises(SystemExit):
        udpload.main(["127.0.0.1", "1", "--size", "70000"])


def _outcome(name: str, rps: float, requests: int, cpu_s: float | None) -> Outcome:
    load = LoadResult(requests, 1.0, rps, None, None, 0)
    return Outcome(name, [Measurement(load, cpu_s, None)])


def test_relay_notes_put_throughput_per_cpu_second_against_the_reference():
    outcomes = [
        _outcome("haproxy", 5000, 5000, 0.5),  # 10,000 per CPU second
        _outcome("pysozu", 6000, 6000, 0.75),  # 8,000
        Outcome("nginx", skipped="not installed"),
    ]
    size = 200 * 1024
    per_cpu, moved = layer4.relay_notes(outcomes, size)
    assert (
        per_cpu
        == "Per second of proxy CPU (median runs): haproxy 10,000, pysozu 8,000 (0.80x haproxy)."
    )
    assert moved.startswith("Bytes relayed (both directions): haproxy 977 MiB/s")
    gib = size / 2**30
    assert f"pysozu 1,172 MiB/s, {125 / 1e3 / gib:,.0f} ms CPU/GiB" in moved


def test_relay_notes_compare_with_the_load_generator_straight_to_the_backend():
    outcomes = [_outcome("direct", 100_000, 100_000, None), _outcome("pysozu", 40_000, 40_000, 0.3)]
    notes = layer4.relay_notes(outcomes, 0, reference="nginx")
    assert notes[0] == "Per second of proxy CPU (median runs): pysozu 133,333."
    assert notes[-1] == "Rate against the load generator straight to the backend: pysozu 0.40x."


def test_the_layer4_set_holds_the_relay_scenarios():
    chosen = scenarios.select(["layer4"])
    assert [s.name for s in chosen] == ["tcp-100k", "tcp-bulk-100m", "udp"]
    tcp_100k, bulk, udp = chosen
    assert tcp_100k.request_body == 100 * 1024 and tcp_100k.layer4 == "tcp"
    assert bulk.connections == 4 and bulk.timeout_s >= 30
    assert udp.layer4 == "udp" and udp in scenarios.select(["all"])


def test_stream_module_built_in_needs_no_load_module(monkeypatch):
    monkeypatch.setattr(tools, "_configure_arguments", lambda nginx: "--with-stream --with-http")
    assert tools.nginx_stream_module("nginx", install=False) == ""


def test_a_missing_dynamic_stream_module_names_the_package(monkeypatch, tmp_path):
    monkeypatch.setattr(tools, "_configure_arguments", lambda nginx: "--with-stream=dynamic")
    monkeypatch.setattr(tools, "STREAM_MODULE", tmp_path / "absent.so")
    with pytest.raises(ToolMissing, match="libnginx-mod-stream"):
        tools.nginx_stream_module("nginx", install=False)
    (tmp_path / "absent.so").write_bytes(b"")
    assert tools.nginx_stream_module("nginx", install=False) == str(tmp_path / "absent.so")
