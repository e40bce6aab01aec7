"""Configurations for the TCP and UDP relay scenarios, written equivalently for the three proxies.

TCP: nginx `stream`, HAProxy `mode tcp` and a pysozu TCP listener relay bytes to the same nginx
HTTP backend, so wrk still drives the load (HTTP inside a TCP relay). UDP: nginx `stream` with
`listen ... udp` and a pysozu UDP listener relay datagrams to a second nginx whose stream
`return` answers each one (a C backend that costs the load core little); HAProxy's community
edition has no UDP. Pure functions of `ProxySetup`, like harness/configs.py; and the notes
that put the relays' figures per CPU second.
"""

from __future__ import annotations

from pathlib import Path

from harness.configs import ProxySetup, pysozu_globals
from harness.results import Outcome

UDP_REPLY = b"pong\n"  # what the UDP backend answers to every datagram
UDP_PAYLOAD_SIZE = 64
UDP_IDLE_TIMEOUT_S = 30  # a flow (nginx: a UDP session) closes after this long idle
STREAM_MODULE = "/usr/lib/nginx/modules/ngx_stream_module.so"  # Debian's libnginx-mod-stream

PROTOCOLS = ("tcp", "udp")


def _load_module(module: str) -> str:
    return f"load_module {module};\n" if module else ""


def _check(setup: ProxySetup) -> None:
    if setup.layer4 not in PROTOCOLS:
        raise ValueError(f"layer4 must be one of {PROTOCOLS}, not {setup.layer4!r}")
    if setup.tls or setup.access_log or setup.clusters != 1:
        raise ValueError("the relay scenarios have one cluster, no TLS and no access logs")


def nginx_udp_backend(workdir: Path, port: int, module: str) -> str:
    """The UDP backend: every datagram answered with UDP_REPLY by nginx's stream `return`."""
    reply = UDP_REPLY.decode().replace("\n", "\\n")
    return f"""worker_processes 1;
daemon off;
master_process off;
pid {workdir}/udp-backend.pid;
error_log {workdir}/udp-backend-error.log warn;
{_load_module(module)}events {{ worker_connections 4096; }}
stream {{
  server {{ listen 127.0.0.1:{port} udp; return "{reply}"; }}
}}
"""


def nginx_stream(setup: ProxySetup) -> str:
    """nginx as a TCP or UDP relay (one worker). A UDP session lives as long as a pysozu flow:
    the client's datagrams share one upstream socket until it has been idle for the timeout."""
    _check(setup)
    if setup.layer4 == "udp":
        server = (
            f"listen 127.0.0.1:{setup.listen_port} udp; proxy_pass b; "
            f"proxy_timeout {UDP_IDLE_TIMEOUT_S}s;"
        )
    else:
        server = f"listen 127.0.0.1:{setup.listen_port} backlog=4096; proxy_pass b;"
    connections = 2 * setup.max_connections + 1000  # each relayed connection takes two
    return f"""worker_processes 1;
daemon off;
pid {setup.workdir}/nginx.pid;
error_log {setup.workdir}/nginx-error.log warn;
worker_rlimit_nofile {setup.fd_limit};
{_load_module(setup.nginx_stream_module)}events {{ worker_connections {connections}; }}
stream {{
  upstream b {{ server 127.0.0.1:{setup.backend_port}; }}
  server {{ {server} }}
}}
"""


def haproxy_tcp(setup: ProxySetup) -> str:
    """HAProxy as a TCP relay (`mode tcp`, one thread)."""
    _check(setup)
    if setup.layer4 != "tcp":
        raise ValueError("HAProxy (community edition) does not relay UDP")
    return f"""global
  nbthread 1
  maxconn {setup.max_connections}

defaults
  mode tcp
  timeout connect 5s
  timeout client 120s
  timeout server 120s

frontend fe
  bind 127.0.0.1:{setup.listen_port}
  maxconn {setup.max_connections}
  default_backend b

backend b
  server s1 127.0.0.1:{setup.backend_port}
"""


def pysozu_relay(setup: ProxySetup) -> str:
    """pysozu with a TCP or UDP listener and one cluster (sozu 2.1's format: a UDP listener's
    cluster is `protocol = "tcp"` too). Its flows' idle timeouts default to UDP_IDLE_TIMEOUT_S."""
    _check(setup)
    address = f'"127.0.0.1:{setup.listen_port}"'
    lines = pysozu_globals(setup)
    lines += ["", "[[listeners]]", f'protocol = "{setup.layer4}"', f"address = {address}"]
    lines += [
        "",
        "[clusters.c0]",
        'protocol = "tcp"',
        f"frontends = [{{ address = {address} }}]",
        f'backends = [{{ address = "127.0.0.1:{setup.backend_port}" }}]',
    ]
    return "\n".join(lines) + "\n"


def wrk_body_script(size: int) -> str:
    """A wrk Lua script that POSTs `size` bytes with every request (wrk adds Content-Length)."""
    if size <= 0:
        raise ValueError("a request body needs a positive size")
    return f'wrk.method = "POST"\nwrk.body = string.rep("x", {size})\n'


def relay_notes(
    outcomes: list[Outcome], bytes_per_request: int, reference: str = "haproxy"
) -> list[str]:
    """Throughput per CPU, the relay scenarios' figure of merit: requests (or datagrams) per
    second of the proxy's CPU, each target against `reference` (HAProxy for TCP, nginx for UDP);
    for a TCP transfer also MiB/s and CPU ms per GiB relayed (both directions counted)."""
    medians = {o.target: m for o in outcomes if not o.skipped and (m := o.median()) is not None}
    per_cpu = {
        name: 1e6 / m.cpu_us_per_request
        for name, m in medians.items()
        if m.cpu_us_per_request is not None and m.cpu_us_per_request > 0
    }
    notes = []
    base = per_cpu.get(reference)
    if per_cpu:
        parts = []
        for name, rate in per_cpu.items():
            ratio = f" ({rate / base:.2f}x {reference})" if base and name != reference else ""
            parts.append(f"{name} {rate:,.0f}{ratio}")
        notes.append("Per second of proxy CPU (median runs): " + ", ".join(parts) + ".")
    if bytes_per_request and medians:
        gib = bytes_per_request / 2**30
        parts = []
        for name, m in medians.items():
            mib_s = m.load.requests_per_s * bytes_per_request / 2**20
            cpu = m.cpu_us_per_request
            cost = f", {cpu / 1e3 / gib:,.0f} ms CPU/GiB" if cpu is not None else ""
            parts.append(f"{name} {mib_s:,.0f} MiB/s{cost}")
        notes.append("Bytes relayed (both directions): " + "; ".join(parts) + ".")
    direct = medians.get("direct")
    if direct is not None and direct.load.requests_per_s > 0:
        parts = [
            f"{name} {m.load.requests_per_s / direct.load.requests_per_s:.2f}x"
            for name, m in medians.items()
            if name != "direct"
        ]
        if parts:
            notes.append(
                "Rate against the load generator straight to the backend: " + ", ".join(parts) + "."
            )
    return notes
