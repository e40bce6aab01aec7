"""Configuration files for the backend and the three proxies, written equivalently.

Every proxy: one worker, keep-alive to the backend, forwarding headers (X-Forwarded-For/-Proto/
-Port, Forwarded, a request id, as sozu adds them by default), access logs off unless asked for,
and a routing table of `clusters` virtual hosts of which the measured traffic uses `localhost`.
These are pure functions of `ProxySetup`, so they are unit-testable and the files reproducible.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

TARGET_HOST = "localhost"
SMALL_BODY = "hello, world\n"  # 13 bytes, as in the reference baseline
LARGE_FILE_NAME = "100k.bin"
LARGE_FILE_SIZE = 100 * 1024
BULK_FILE_NAME = "100m.bin"  # written only when a scenario asks for it
BULK_FILE_SIZE = 100 * 1024 * 1024


@dataclass(frozen=True)
class TlsFiles:
    certificate: Path
    key: Path
    combined_pem: Path  # certificate then key, as HAProxy wants it


@dataclass(frozen=True)
class ProxySetup:
    workdir: Path
    listen_port: int
    backend_port: int
    clusters: int = 1
    access_log: Path | None = None
    tls: TlsFiles | None = None
    http2: bool = False  # offer h2 by ALPN (pysozu offers it by default on HTTPS)
    max_connections: int = 10_000
    fd_limit: int = 65_536
    extra_clusters_without_backend: tuple[str, ...] = ()  # for the reconfiguration scenario
    ready_timeout_s: float = 30.0  # how long the proxy may take to route its first request
    layer4: str = ""  # "tcp"/"udp": a byte relay (harness/layer4.py writes its configuration)
    nginx_stream_module: str = ""  # load_module path for nginx's stream (empty: built in)
    grpc: bool = False  # the backend is a gRPC (h2c) server; the front h2 over TLS, else h2c
    tls13_tickets: int | None = None  # pysozu's send_tls13_tickets (None: sozu's default, 4)
    # False: no session can be resumed, every handshake is a full one (nginx: no tickets, no
    # session cache; pysozu: send_tls13_tickets = 0, and OpenSSL keeps no server-side cache)
    tls_resumption: bool = True


def expected_body_size(path: str) -> int:
    """Bytes of the backend's answer to path."""
    if path.endswith(BULK_FILE_NAME):
        return BULK_FILE_SIZE
    return LARGE_FILE_SIZE if path.endswith(LARGE_FILE_NAME) else len(SMALL_BODY.encode())


def cluster_hosts(clusters: int) -> list[str]:
    """The routing table's host names: the target last, so that it is never a lucky first."""
    return [f"cluster-{i}.bench.test" for i in range(clusters - 1)] + [TARGET_HOST]


def nginx_backend(workdir: Path, port: int, fd_limit: int) -> str:
    """The backend: 13-byte `GET /` answer, and a 100 KiB static file under /static/."""
    return f"""worker_processes 1;
daemon off;
master_process off;
pid {workdir}/backend.pid;
error_log {workdir}/backend-error.log warn;
worker_rlimit_nofile {fd_limit};
events {{ worker_connections {fd_limit - 100}; }}
http {{
  access_log off;
  {_temp_paths(workdir, "backend")}
  default_type application/octet-stream;
  sendfile on;
  keepalive_requests 1000000;
  keepalive_timeout 120s;
  server {{
    listen 127.0.0.1:{port} backlog=4096;
    location = / {{ return 200 {json.dumps(SMALL_BODY)}; }}
    location /static/ {{
      alias {workdir}/www/;
      client_max_body_size 1m;
      client_body_buffer_size 256k;
      error_page 405 =200 $uri;  # a POST gets the file too (its body read and dropped)
    }}
  }}
}}
"""


def _temp_paths(workdir: Path, name: str) -> str:
    base = workdir / f"{name}-tmp"
    return " ".join(
        f"{kind}_temp_path {base}/{kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )


# Every handshake a full one: no ticket, no session cache, and no ticket sent at all (without
# NumTickets 0, OpenSSL still sends stateful tickets that nothing can resume)
NGINX_NO_RESUMPTION = (
    "\n  ssl_session_tickets off;\n  ssl_session_cache off;\n  ssl_conf_command NumTickets 0;"
)


def nginx_proxy(setup: ProxySetup) -> str:
    """nginx as a proxy: one server block and one keep-alive upstream per cluster."""
    scheme = "https" if setup.tls else "http"
    listen = f"127.0.0.1:{setup.listen_port}" + (" ssl" if setup.tls else "")
    listen += " http2" if setup.http2 else ""
    tls = (
        # TLS 1.3 as pysozu and HAProxy speak it: nginx 1.22 (Debian 12) defaults to TLS 1.2,
        # whose session ids wrk resumes on every reconnect (a full handshake costs 2x)
        f"ssl_certificate {setup.tls.certificate};\n  ssl_certificate_key {setup.tls.key};\n"
        "  ssl_protocols TLSv1.2 TLSv1.3;" + ("" if setup.tls_resumption else NGINX_NO_RESUMPTION)
        if setup.tls
        else ""
    )
    log = f"access_log {setup.access_log};" if setup.access_log else "access_log off;"
    blocks = []
    for i, host in enumerate(cluster_hosts(setup.clusters)):
        options = " backlog=4096" if i == 0 else ""  # socket options go on one listen only
        blocks.append(
            f"  upstream c{i} {{ server 127.0.0.1:{setup.backend_port}; keepalive 64; "
            f"keepalive_requests 1000000; }}\n"
            f"  server {{ listen {listen}{options}; server_name {host}; "
            f"location / {{ proxy_pass http://c{i}; }} }}"
        )
    servers = "\n".join(blocks)
    # worker_connections counts upstream connections too: a request in flight on each held
    # connection (idle-kept-10k) takes two.
    return f"""worker_processes 1;
daemon off;
pid {setup.workdir}/nginx.pid;
error_log {setup.workdir}/nginx-error.log warn;
worker_rlimit_nofile {setup.fd_limit};
events {{ worker_connections {2 * setup.max_connections + 1000}; }}
http {{
  {log}
  {_temp_paths(setup.workdir, "nginx")}
  {tls}
  keepalive_requests 1000000;
  keepalive_timeout 120s;
  server_names_hash_max_size {max(512, 4 * setup.clusters)};
  server_names_hash_bucket_size 128;
  proxy_http_version 1.1;
  proxy_set_header Connection "";
  proxy_set_header Host $host;
  proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
  proxy_set_header X-Forwarded-Proto {scheme};
  proxy_set_header X-Forwarded-Port $server_port;
  proxy_set_header Forwarded "proto={scheme};for=\\"$remote_addr:$remote_port\\";by=$server_addr";
  proxy_set_header X-Request-Id $request_id;
{servers}
}}
"""


def haproxy_proxy(setup: ProxySetup) -> tuple[str, str]:
    """HAProxy as a proxy: (configuration, host map). One backend per cluster, chosen by map."""
    scheme = "https" if setup.tls else "http"
    bind = f"bind 127.0.0.1:{setup.listen_port}" + (
        f" ssl crt {setup.tls.combined_pem}" if setup.tls else ""
    )
    bind += " no-tls-tickets" if setup.tls and not setup.tls_resumption else ""
    bind += " alpn h2,http/1.1" if setup.http2 else ""
    hosts = cluster_hosts(setup.clusters)
    host_map = "".join(f"{host} c{i}\n" for i, host in enumerate(hosts))
    logging = "  log global\n  option httplog\n" if setup.access_log else ""
    global_log = "  log stdout format raw local0 info\n" if setup.access_log else ""
    # no session cache: with no-tls-tickets, TLS 1.3 would otherwise resume from it
    no_cache = "  tune.ssl.cachesize 0\n" if setup.tls and not setup.tls_resumption else ""
    routing = (
        f"  use_backend %[req.hdr(host),lower,word(1,:),map({setup.workdir}/haproxy-hosts.map)]\n"
        if setup.clusters > 1
        else f"  default_backend c{len(hosts) - 1}\n"
    )
    backends = "".join(
        f"backend c{i}\n  server s1 127.0.0.1:{setup.backend_port}\n" for i in range(len(hosts))
    )
    config = f"""global
  nbthread 1
  maxconn {setup.max_connections}
{global_log}{no_cache}
defaults
  mode http
{logging}  timeout connect 5s
  timeout client 120s
  timeout server 120s
  timeout http-keep-alive 120s
  http-reuse always
  option forwardfor

frontend fe
  {bind}
  maxconn {setup.max_connections}
  http-request set-header X-Forwarded-Proto {scheme}
  http-request set-header X-Forwarded-Port %[dst_port]
  http-request add-header Forwarded proto={scheme};for=\\"%[src]:%[src_port]\\";by=%[dst]
  unique-id-format %{{+X}}o\\ %ci:%cp_%fi:%fp_%Ts_%rt:%pid
  unique-id-header X-Request-Id
{routing}
{backends}"""
    return config, host_map


def reconfiguration_host(cluster_id: str) -> str:
    """Host name of a cluster created without backends for the reconfiguration scenario."""
    return f"{cluster_id}.bench.test"


def _toml(value: str) -> str:
    return json.dumps(value)  # a TOML basic string is a JSON string for these ASCII paths


def pysozu_proxy(setup: ProxySetup) -> str:
    """pysozu (sozu's TOML format). sozu has no "access logs off" switch: successful requests are
    logged at info level, so "off" is `log_level = "warn"`."""
    lines = pysozu_globals(setup)
    address = f"127.0.0.1:{setup.listen_port}"
    protocol = "https" if setup.tls else "http"
    lines += ["", "[[listeners]]", f'protocol = "{protocol}"', f"address = {_toml(address)}"]
    if setup.tls:
        # wrk sends the connect address (127.0.0.1) as SNI with `Host: localhost`: strict SNI
        # binding would rightly answer 421. nginx and HAProxy do not check, so neither do we.
        lines.append("strict_sni_binding = false")
        tickets = setup.tls13_tickets if setup.tls_resumption else 0
        if tickets is not None:
            lines.append(f"send_tls13_tickets = {tickets}")
    elif setup.grpc:
        lines.append("h2c = true")  # h2 with prior knowledge on the clear-text listener
    tls = (
        f", certificate = {_toml(str(setup.tls.certificate))}, key = {_toml(str(setup.tls.key))}"
        if setup.tls
        else ""
    )
    backend = f'backends = [{{ address = "127.0.0.1:{setup.backend_port}" }}]'
    backend += "\nhttp2 = true" if setup.grpc else ""  # h2c to the gRPC backend
    for i, host in enumerate(cluster_hosts(setup.clusters)):
        lines += [
            "",
            f"[clusters.c{i}]",
            'protocol = "http"',
            f"frontends = [{{ address = {_toml(address)}, hostname = {_toml(host)}{tls} }}]",
            backend,
        ]
    for cluster_id in setup.extra_clusters_without_backend:
        hostname = _toml(reconfiguration_host(cluster_id))
        lines += [
            "",
            f"[clusters.{cluster_id}]",
            'protocol = "http"',
            f"frontends = [{{ address = {_toml(address)}, hostname = {hostname}{tls} }}]",
            "backends = []",
        ]
    return "\n".join(lines) + "\n"


def nghttpx_proxy(setup: ProxySetup) -> str:
    """nghttpx (nghttp2's proxy): h2 (and HTTP/1.1) over TLS, or h2c with `no-tls`; one
    worker; HTTP/1.1 keep-alive to the backend, h2c to a gRPC one. No routing table: it has
    one backend pattern, so `clusters` must be 1. Access logs are off unless a file is set."""
    if setup.clusters != 1 or setup.layer4 or setup.extra_clusters_without_backend:
        raise ValueError("nghttpx here serves one virtual host, HTTP only")
    front = f"frontend=127.0.0.1,{setup.listen_port}" + ("" if setup.tls else ";no-tls")
    lines = [
        front,
        f"backend=127.0.0.1,{setup.backend_port};;proto={'h2' if setup.grpc else 'http/1.1'}",
        "workers=1",
        f"worker-frontend-connections={setup.max_connections}",
        f"rlimit-nofile={setup.fd_limit}",
        "add-x-forwarded-for=yes",
        "add-forwarded=for,proto,by",
        "no-via=yes",
        f"errorlog-file={setup.workdir / 'nghttpx-error.log'}",
        f"pid-file={setup.workdir / 'nghttpx.pid'}",
    ]
    if setup.tls:
        lines += [
            f"private-key-file={setup.tls.key}",
            f"certificate-file={setup.tls.certificate}",
            "no-ocsp=yes",  # a self-signed certificate has no responder to ask
        ]
    if setup.access_log:
        lines.append(f"accesslog-file={setup.access_log}")
    return "\n".join(lines) + "\n"


def pysozu_globals(setup: ProxySetup) -> list[str]:
    """The global keys of every pysozu configuration here: one worker, logs in the workdir."""
    workdir = setup.workdir
    lines = [
        "worker_count = 1",
        f"command_socket = {_toml(str(workdir / 'pysozu.sock'))}",
        f"log_level = {_toml('info' if setup.access_log else 'warn')}",
        f"log_target = {_toml(f'file://{workdir}/pysozu.log')}",
        f"max_connections = {setup.max_connections}",
        "worker_timeout = 60",
        "ctl_command_timeout = 60000",
    ]
    if setup.access_log:
        lines.append(f"access_logs_target = {_toml(f'file://{setup.access_log}')}")
    return lines
