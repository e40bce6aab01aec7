"""The proxy's listeners as values set them: `extraListeners` (TCP and UDP listeners in the
generated TOML, the Service's and the container's ports with their protocol, hostPort,
hostNetwork, ports below 1024) and `config.listeners` (trusted_proxies and expect_proxy of the
generated HTTP and HTTPS listeners). The configuration is read by pysozu's own reader."""

from __future__ import annotations

from typing import Any

import pytest
from chart_facts import container_ports, scenario_values
from chart_tooling import RELEASE, ToolError, helm_template, load_documents, one, pod_spec
from test_chart_commands import config_text

from dataplane.command.config import Config, parse_config
from dataplane.command.messages import (
    HttpListenerConfig,
    HttpsListenerConfig,
    TcpListenerConfig,
    UdpListenerConfig,
)

pytestmark = pytest.mark.timeout(300)


def loaded(objects: list[dict[str, Any]]) -> Config:
    config = parse_config(config_text(objects), source="config.toml")
    assert config.warnings == []
    return config


def by_address(config: Config) -> dict[str, Any]:
    return {str(listener.address): listener for listener in config.listeners}


def render(*assignments: str) -> list[dict[str, Any]]:
    return load_documents(helm_template(set_values=assignments))


def test_tcp_and_udp_listeners_reach_the_proxy_configuration(
    rendered_scenarios: dict[str, list[dict[str, Any]]],
) -> None:
    config = loaded(rendered_scenarios["l4-listeners"])
    listeners = by_address(config)
    postgres = listeners["0.0.0.0:5432"]
    assert isinstance(postgres, TcpListenerConfig)
    assert (postgres.expect_proxy, postgres.connect_timeout) == (True, 2)
    assert (postgres.front_timeout, postgres.back_timeout) == (600, 600)
    dns_udp = listeners["0.0.0.0:53"]
    assert isinstance(dns_udp, UdpListenerConfig)
    assert (dns_udp.max_flows, dns_udp.max_rx_datagram_size) == (20000, 4096)
    assert (dns_udp.front_timeout, dns_udp.back_timeout) == (10, 10)
    dns_tcp = listeners["0.0.0.0:5353"]
    assert isinstance(dns_tcp, TcpListenerConfig)
    # Unset keys keep pysozu's defaults: the top-level timeouts for TCP, 30 s for UDP flows.
    timeouts = scenario_values("l4-listeners")["config"]["timeouts"]
    assert (dns_tcp.expect_proxy, dns_tcp.connect_timeout) == (False, timeouts["connect"])
    assert (dns_tcp.front_timeout, dns_tcp.back_timeout) == (timeouts["front"], timeouts["back"])
    syslog = listeners["0.0.0.0:5514"]
    assert isinstance(syslog, UdpListenerConfig)
    assert (syslog.front_timeout, syslog.max_flows, syslog.max_rx_datagram_size) == (30, 0, 1500)
    # The routing comes from config.extraToml: each cluster's frontends name the listeners.
    frontends = {
        cluster_id: (
            [str(f.address) for f in cluster.tcp_frontends],
            [str(f.address) for f in cluster.udp_frontends],
        )
        for cluster_id, cluster in config.clusters.items()
    }
    assert frontends == {
        "postgres": (["0.0.0.0:5432"], []),
        "dns": (["0.0.0.0:5353"], ["0.0.0.0:53"]),
        "syslog": ([], ["0.0.0.0:5514"]),
    }
    # The generated HTTP and HTTPS listeners trust the load balancer (config.listeners).
    for address in ("0.0.0.0:8080", "0.0.0.0:8443"):
        assert listeners[address].trusted_proxies == ["10.0.0.0/8", "192.0.2.7"]
        assert listeners[address].expect_proxy is False


def test_extra_listeners_get_service_and_container_ports_with_their_protocol(
    rendered_scenarios: dict[str, list[dict[str, Any]]],
) -> None:
    objects = rendered_scenarios["l4-listeners"]
    service = one(objects, "Service", RELEASE)
    found = [
        (p["name"], p["port"], p["protocol"], p["targetPort"]) for p in service["spec"]["ports"]
    ]
    assert found == [
        ("http", 80, "TCP", "http"),
        ("https", 443, "TCP", "https"),
        ("postgres", 5432, "TCP", "postgres"),  # servicePort defaults to containerPort
        ("dns-udp", 53, "UDP", "dns-udp"),
        ("dns-tcp", 53, "TCP", "dns-tcp"),  # one Service port, both protocols
        ("syslog", 514, "UDP", "syslog"),
    ]  # fmt: skip
    spec = pod_spec(objects)
    ports = container_ports(spec, "pysozu")
    found_ports = {
        n: (p["containerPort"], p["protocol"], p.get("hostPort")) for n, p in ports.items()
    }
    assert found_ports == {
        "http": (8080, "TCP", None),
        "https": (8443, "TCP", None),
        "postgres": (5432, "TCP", None),
        "dns-udp": (53, "UDP", None),
        "dns-tcp": (5353, "TCP", None),
        "syslog": (5514, "UDP", 514),
        "metrics": (9090, "TCP", None),
    }  # fmt: skip
    # UDP 53 is below 1024: the pod's network lets uid 10001 bind from 53 up, no capability.
    assert spec["securityContext"]["sysctls"] == [
        {"name": "net.ipv4.ip_unprivileged_port_start", "value": "53"}
    ]
    assert container_ports(spec, "pysozu")["dns-udp"]["containerPort"] == 53
    for container in spec["containers"][:2]:
        assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}


def test_host_network_daemonset_binds_extra_listeners_on_the_node(
    rendered_scenarios: dict[str, list[dict[str, Any]]],
) -> None:
    objects = rendered_scenarios["daemonset-hostnetwork"]
    spec = pod_spec(objects)
    assert spec["hostNetwork"] is True and "sysctls" not in spec["securityContext"]
    mqtt = container_ports(spec, "pysozu")["mqtt"]
    assert mqtt == {"name": "mqtt", "containerPort": 1883, "protocol": "TCP"}
    listener = by_address(loaded(objects))["0.0.0.0:1883"]
    assert isinstance(listener, TcpListenerConfig)


def test_only_the_lowest_port_below_1024_sets_the_sysctl(k8s_tools: None) -> None:
    def start(*assignments: str) -> str | None:
        context = pod_spec(render(*assignments))["securityContext"]
        sysctls = {s["name"]: s["value"] for s in context.get("sysctls", [])}
        return sysctls.get("net.ipv4.ip_unprivileged_port_start")

    listener = ["extraListeners[0].name=dns", "extraListeners[0].protocol=UDP"]
    assert start(*listener, "extraListeners[0].containerPort=5353") is None
    assert start(*listener, "extraListeners[0].containerPort=53", "ports.http=80") == "53"
    assert start(*listener, "extraListeners[0].containerPort=853", "ports.http=80") == "80"


def test_generated_http_listeners_expect_proxy_headers(k8s_tools: None) -> None:
    objects = render("config.listeners.expectProxy=true")
    listeners = by_address(loaded(objects))
    assert isinstance(listeners["0.0.0.0:8080"], HttpListenerConfig)
    assert isinstance(listeners["0.0.0.0:8443"], HttpsListenerConfig)
    assert [li.expect_proxy for li in listeners.values()] == [True, True]
    assert [li.trusted_proxies for li in listeners.values()] == [[], []]


def test_default_listeners_set_neither_key(default_objects: list[dict[str, Any]]) -> None:
    text = one(default_objects, "ConfigMap")["data"]["config.toml"]
    assert "trusted_proxies" not in text and "expect_proxy" not in text
    listeners = by_address(loaded(default_objects))
    assert set(listeners) == {"0.0.0.0:8080", "0.0.0.0:8443"}
    assert all(not li.expect_proxy and li.trusted_proxies == [] for li in listeners.values())


def test_trusted_proxies_accepts_ipv6_networks(k8s_tools: None) -> None:
    objects = render("config.listeners.trustedProxies={10.1.2.0/24,fd00::/8,2001:db8::1}")
    for listener in loaded(objects).listeners:
        assert listener.trusted_proxies == ["10.1.2.0/24", "fd00::/8", "2001:db8::1"]


def listener(index: int, name: str, protocol: str, port: int, *more: str) -> list[str]:
    head = f"extraListeners[{index}]"
    return [
        f"{head}.name={name}",
        f"{head}.protocol={protocol}",
        f"{head}.containerPort={port}",
        *(f"{head}.{assignment}" for assignment in more),
    ]


@pytest.mark.parametrize(
    ("assignments", "complaint"),
    [
        (listener(0, "a", "TCP", 9000) + listener(1, "a", "UDP", 9001), "port name a is taken"),
        (listener(0, "metrics", "TCP", 9000), "port name metrics is taken by ports.metrics"),
        (listener(0, "a", "TCP", 8080), "containerPort 8080 is already used by ports.http"),
        (listener(0, "a", "TCP", 10254), "already used by ports.health"),
        (
            listener(0, "a", "TCP", 9000) + listener(1, "b", "UDP", 9000),
            "never share a port, even a TCP and a UDP one",
        ),
        (listener(0, "a", "UDP", 9000, "expectProxy=true"), "expectProxy applies to TCP"),
        (listener(0, "a", "UDP", 9000, "connectTimeout=2"), "connectTimeout applies to TCP"),
        (listener(0, "a", "TCP", 9000, "maxFlows=10"), "maxFlows applies to UDP"),
        (listener(0, "a", "TCP", 9000, "maxRxDatagramSize=9000"), "maxRxDatagramSize applies"),
        (
            listener(0, "a", "TCP", 9000, "servicePort=80"),
            "Service port 80/TCP is already used by service.ports.http",
        ),
        (
            listener(0, "a", "UDP", 9000, "servicePort=53")
            + listener(1, "b", "UDP", 9001, "servicePort=53"),
            "Service port 53/UDP is already used by extraListeners[0]",
        ),
        (
            ["hostNetwork=true", *listener(0, "dns", "UDP", 53)],
            "cannot bind ports below 1024 on the node",
        ),
        (
            ["hostNetwork=true", *listener(0, "a", "TCP", 9000, "hostPort=9000")],
            "hostPort and hostNetwork are exclusive",
        ),
        (
            ["hostPort.enabled=true", *listener(0, "a", "TCP", 9000, "hostPort=80")],
            "hostPort 80/TCP is already used by hostPort.ports.http",
        ),
    ],
)  # fmt: skip
def test_render_refuses_conflicting_listeners(
    k8s_tools: None, assignments: list[str], complaint: str
) -> None:
    with pytest.raises(ToolError) as error:
        helm_template(set_values=assignments)
    assert complaint in str(error.value)


def test_what_the_refusals_leave_possible_renders(k8s_tools: None) -> None:
    """Near misses of the refusals above are fine: a webhook port reused while the webhook is
    off, the same Service port for TCP and UDP, a UDP hostPort on a TCP hostPort's number."""
    objects = render(
        *listener(0, "a", "TCP", 8444, "servicePort=53"),
        *listener(1, "b", "UDP", 9001, "servicePort=53", "hostPort=80"),
        "hostPort.enabled=true",
    )
    ports = container_ports(pod_spec(objects), "pysozu")
    assert (ports["a"]["containerPort"], ports["b"]["hostPort"]) == (8444, 80)
    assert set(by_address(loaded(objects))) >= {"0.0.0.0:8444", "0.0.0.0:9001"}
    with pytest.raises(ToolError, match=r"already used by ports\.webhook"):
        helm_template(set_values=[*listener(0, "a", "TCP", 8444), "webhook.enabled=true"])


@pytest.mark.parametrize(
    ("assignments", "complaint"),
    [
        (listener(0, "a", "SCTP", 9000), "protocol"),
        (listener(0, "a", "tcp", 9000), "protocol"),
        (listener(0, "postgres-primary-1", "TCP", 9000), "name"),  # above 15 characters
        (listener(0, "Postgres", "TCP", 9000), "name"),
        (listener(0, "5432", "TCP", 9000), "name"),  # a letter is needed
        (listener(0, "a--b", "TCP", 9000), "name"),
        (listener(0, "a", "TCP", 0), "containerPort"),
        (listener(0, "a", "TCP", 9000, "servicePort=70000"), "servicePort"),
        (listener(0, "a", "TCP", 9000, "frontTimeout=0"), "frontTimeout"),
        (listener(0, "a", "TCP", 9000, "publicAddress=1.2.3.4"), "publicAddress"),
        (["extraListeners[0].name=a", "extraListeners[0].protocol=TCP"], "containerPort"),
        (["config.listeners.trustedProxies={example.com}"], "trustedProxies"),
        (["config.listeners.expectProxy=yes"], "expectProxy"),
        (["config.listeners.sendProxy=true"], "sendProxy"),
    ],
)
def test_schema_refuses_bad_listener_values(
    k8s_tools: None, assignments: list[str], complaint: str
) -> None:
    with pytest.raises(ToolError, match="schema") as error:
        helm_template(set_values=assignments)
    assert complaint in str(error.value)
