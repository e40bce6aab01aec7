"""The benchmark's scenarios. To add one, append a Scenario to SCENARIOS (and to a set).

A scenario is data: what to request, how the proxies are configured, what runs beside the load
(idle connections, reconfiguration). `layer4` turns the proxies into byte relays: "tcp" (nginx
`stream`, HAProxy `mode tcp`, a pysozu TCP listener) still measured with wrk's HTTP through
them, "udp" (nginx `stream` UDP, a pysozu UDP listener; HAProxy has none) with
harness/udpload.py. `grpc` scenarios make unary gRPC calls with harness/grpcload.py to a
grpcio backend (h2c), also measured straight to that backend ("direct"). `needs` names
pysozu features the scenario depends on; when pysozu does not serve one of them, its row is
skipped with a printed reason, not failed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from harness.configs import BULK_FILE_NAME, LARGE_FILE_NAME
from harness.errors import BenchError


@dataclass(frozen=True)
class Scenario:
    name: str
    title: str
    path: str = "/"
    headers: dict[str, str] = field(default_factory=dict)
    clusters: int = 1
    access_logs: bool = False
    tls: bool = False
    http2: bool = False  # measured with h2load instead of wrk
    idle_connections: int = 0
    # Each held connection first sends one request and reads its answer, and the proxies' RSS
    # is measured before, while they are held, and after they close (a memory table).
    idle_requests: bool = False
    changes_per_s: int = 0  # pysozu only: backend add/remove rate applied during the runs
    reconfiguration_latency: bool = False  # pysozu only: `pysozu backend add` -> traffic
    needs: frozenset[str] = frozenset()
    layer4: str = ""  # "", "tcp" or "udp"
    request_body: int = 0  # bytes POSTed with each request (a wrk Lua script), 0: GET
    connections: int | None = None  # instead of --connections (the bulk transfer uses few)
    timeout_s: int = 5  # wrk's per-request timeout
    grpc: bool = False  # unary gRPC calls (harness/grpcload.py) to a grpcio h2c backend
    # False: the proxies are configured so that no TLS session can be resumed (no tickets, no
    # session cache): each of wrk's reconnections is a full handshake
    tls_resumption: bool = True


SCENARIOS = [
    Scenario("keepalive-13b", "keep-alive GET / (13 B)"),
    Scenario("keepalive-100k", "keep-alive GET 100 KiB file", path=f"/static/{LARGE_FILE_NAME}"),
    # wrk ignores "Connection:close" without the space; loadgen.header() always adds it.
    Scenario("close", "GET / with Connection: close", headers={"Connection": "close"}),
    Scenario("clusters-1k", "keep-alive GET /, 1,000 clusters in the routing table", clusters=1000),
    Scenario(
        "clusters-10k", "keep-alive GET /, 10,000 clusters in the routing table", clusters=10_000
    ),
    Scenario("access-logs", "keep-alive GET /, access logs on (to a file)", access_logs=True),
    Scenario("https-keepalive", "HTTPS keep-alive GET /", tls=True, needs=frozenset({"https"})),
    Scenario(
        "https-handshake",
        "HTTPS GET / with Connection: close (a TLS handshake per request, resumed by wrk)",
        headers={"Connection": "close"},
        tls=True,
        needs=frozenset({"https"}),
    ),
    Scenario(
        "https-handshake-full",
        "HTTPS GET / with Connection: close (a full TLS handshake per request: no tickets, "
        "no session cache)",
        headers={"Connection": "close"},
        tls=True,
        tls_resumption=False,
        needs=frozenset({"https"}),
    ),
    Scenario(
        "http2",
        "HTTP/2 over TLS GET /, 10 concurrent streams per connection (h2load)",
        tls=True,
        http2=True,
        needs=frozenset({"https", "h2"}),
    ),
    Scenario(
        "http2-100k",
        "HTTP/2 over TLS GET 100 KiB, 10 concurrent streams per connection (h2load)",
        path=f"/static/{LARGE_FILE_NAME}",
        tls=True,
        http2=True,
        needs=frozenset({"https", "h2"}),
    ),
    Scenario(
        "grpc",
        "gRPC unary calls (64 B) over h2/TLS, h2c to a grpcio backend; 50 in flight on one "
        "connection (harness/grpcload.py)",
        tls=True,
        grpc=True,
        needs=frozenset({"https", "h2", "grpc"}),
    ),
    Scenario(
        "grpc-h2c",
        "gRPC unary calls (64 B) over h2c (prior knowledge), h2c to a grpcio backend; 50 in "
        "flight on one connection",
        grpc=True,
        needs=frozenset({"h2c", "grpc"}),
    ),
    Scenario(
        "idle-10k",
        "keep-alive GET / while 10,000 idle connections are held open",
        idle_connections=10_000,
    ),
    Scenario(
        "idle-kept-10k",
        "keep-alive GET / while 10,000 connections that each made one request are held open",
        idle_connections=10_000,
        idle_requests=True,
    ),
    Scenario(
        "reconfig",
        "keep-alive GET / while pysozu applies 20 backend changes per second "
        "(nginx and HAProxy unchanged, for reference)",
        changes_per_s=20,
        reconfiguration_latency=True,
    ),
]

LAYER4 = [
    Scenario(
        "tcp-100k",
        "TCP relay: keep-alive POST of 100 KiB answered with 100 KiB (HAProxy mode tcp, "
        "nginx stream)",
        path=f"/static/{LARGE_FILE_NAME}",
        layer4="tcp",
        request_body=100 * 1024,
    ),
    Scenario(
        "tcp-bulk-100m",
        "TCP relay: GET of a 100 MiB file, 4 connections (HAProxy mode tcp, nginx stream)",
        path=f"/static/{BULK_FILE_NAME}",
        layer4="tcp",
        connections=4,
        timeout_s=60,
    ),
    Scenario(
        "udp",
        "UDP relay: 64-byte datagrams, each answered, 4 in flight per flow (nginx stream udp; "
        "HAProxy has no UDP)",
        layer4="udp",
    ),
]
SCENARIOS += LAYER4

BY_NAME = {scenario.name: scenario for scenario in SCENARIOS}

SETS = {
    "all": [s.name for s in SCENARIOS],
    "quick": ["keepalive-13b", "keepalive-100k"],
    "core": ["keepalive-13b", "keepalive-100k", "close"],
    "layer4": [s.name for s in LAYER4],
    "h2": ["http2", "http2-100k", "grpc", "grpc-h2c"],
}


def select(names: list[str]) -> list[Scenario]:
    """Scenarios by name or set name, in the order given, without duplicates."""
    chosen: list[Scenario] = []
    for name in names:
        for member in SETS.get(name, [name]):
            if member not in BY_NAME:
                known = ", ".join([*SETS, *BY_NAME])
                raise BenchError(f"unknown scenario {member!r} (known: {known})")
            if BY_NAME[member] not in chosen:
                chosen.append(BY_NAME[member])
    return chosen
