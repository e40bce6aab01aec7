"""`[[listeners]]` entries of sozu's TOML, as listener messages.

Keys follow sozu 2.1's `ListenerBuilder` (which denies unknown fields: an unknown key is an
error). A key that exists in sozu but does not apply to the listener's protocol (a cipher list on
a plain HTTP listener) is accepted with a warning, as sozu accepts and ignores it; HSTS on plain
HTTP and `expect_proxy` on UDP are errors, as in sozu. Timeouts default to the top-level ones.
`trusted_proxies` (a pysozu extension) must hold IP networks.
`request_body_timeout` / `request_body_min_rate` (pysozu extensions) bound how slowly a request
body may come (see the README).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dataplane.command.address import SocketAddress, parse_network
from dataplane.command.config_reader import Report, Table
from dataplane.command.messages import (
    DEFAULT_CIPHER_LIST,
    DEFAULT_GROUPS_LIST,
    DEFAULT_REQUEST_BODY_MIN_RATE,
    DEFAULT_REQUEST_BODY_TIMEOUT,
    DEFAULT_STICKY_NAME,
    CertificateAndKey,
    HstsConfig,
    HttpListenerConfig,
    HttpsListenerConfig,
    TcpListenerConfig,
    TlsVersion,
    UdpListenerConfig,
)
from dataplane.command.state_rules import StateError, check_certificate

AnyListenerConfig = HttpListenerConfig | HttpsListenerConfig | TcpListenerConfig | UdpListenerConfig

PROTOCOLS = ("http", "https", "tcp", "udp")
U32 = 2**32 - 1
DEFAULT_ALPN = ["h2", "http/1.1"]
DEFAULT_HSTS_MAX_AGE = 31_536_000
H2_MIN_BUFFER_SIZE = 16_393
LEGACY_ANSWER_CODES = tuple(
    str(code) for code in (301, 400, 401, 404, 408, 413, 421, 429, 502, 503, 504, 507)
)
H2_KEYS = tuple(name for name in HttpListenerConfig.__struct_fields__ if name.startswith("h2_"))
HTTP_KEYS = (
    "sticky_name",
    "request_timeout",
    "answers",
    "sozu_id_header",
    "elide_x_real_ip",
    "send_x_real_ip",
    "trusted_proxies",
    "request_body_timeout",
    "request_body_min_rate",
    *(f"answer_{code}" for code in LEGACY_ANSWER_CODES),
    *H2_KEYS,
)
TLS_KEYS = (
    "tls_versions",
    "cipher_list",
    "cipher_suites",
    "groups_list",
    "certificate",
    "certificate_chain",
    "key",
    "send_tls13_tickets",
    "alpn_protocols",
    "strict_sni_binding",
    "disable_http11",
)
KEYS_BY_PROTOCOL = {
    "http": {"connect_timeout", "hsts", "h2c", *HTTP_KEYS},
    "https": {"connect_timeout", "hsts", *HTTP_KEYS, *TLS_KEYS},
    "tcp": {"connect_timeout"},
    "udp": {"max_rx_datagram_size", "max_flows"},
}
PROTOCOL_SPECIFIC_KEYS = set().union(*KEYS_BY_PROTOCOL.values())
COMMON_KEYS = {
    "address",
    "protocol",
    "public_address",
    "expect_proxy",
    "front_timeout",
    "back_timeout",
}
LISTENER_KEYS = frozenset({*COMMON_KEYS, *PROTOCOL_SPECIFIC_KEYS})
NO_SHRINK = "it sizes sozu's stream slab; a pysozu stream is freed when it closes"
NO_GROUPS = "Python's ssl module cannot choose key exchange groups: OpenSSL's defaults apply"
TLS_VERSION_ALIASES = {
    "TLS_V10": TlsVersion.TLS_V1_0,
    "TLS_V11": TlsVersion.TLS_V1_1,
    "TLS_V12": TlsVersion.TLS_V1_2,
    "TLS_V13": TlsVersion.TLS_V1_3,
    "TLSV1": TlsVersion.TLS_V1_0,
}


@dataclass
class Defaults:
    """Top-level values that listeners inherit."""

    front_timeout: int = 60
    back_timeout: int = 30
    connect_timeout: int = 3
    request_timeout: int = 10


def tls_versions(table: Table, key: str) -> list[TlsVersion] | None:
    names = table.str_list(key)
    if names is None:
        return None
    versions = []
    for name in names:
        normalized = name.strip().upper().replace(".", "").replace("-", "_")
        version = TLS_VERSION_ALIASES.get(normalized) or TlsVersion.__members__.get(normalized)
        if version is None:
            table.error(key, f"unknown TLS version {name!r}: expected TLS_V12 or TLS_V13")
        else:
            versions.append(version)
    return versions


def hsts(table: Table, scope: str) -> HstsConfig | None:
    """An `hsts` sub-table; `enabled` is required, as in sozu."""
    sub = table.table("hsts")
    if sub is None:
        return None
    enabled = sub.flag("enabled")
    if enabled is None and not sub.has("enabled"):
        sub.error("enabled", "missing required key")
    max_age = sub.integer("max_age", high=U32)
    config = HstsConfig(
        enabled=enabled,
        max_age=DEFAULT_HSTS_MAX_AGE if max_age is None and enabled else max_age,
        include_subdomains=sub.flag("include_subdomains"),
        preload=sub.flag("preload"),
        force_replace_backend=sub.flag("force_replace_backend"),
    )
    sub.finish(strict=True)
    if scope == "http":
        table.error("hsts", "HSTS is only valid on HTTPS (RFC 6797 7.2)")
    return config


def answers(table: Table) -> dict[str, str]:
    """Legacy `answer_NNN` files, then the `answers` map (which wins), as sozu merges them."""
    merged: dict[str, str] = {}
    for code in LEGACY_ANSWER_CODES:
        path = table.text(f"answer_{code}")
        if path:
            body = table.report.read_file(table.name, f"answer_{code}", path)
            if body is not None:
                merged[code] = body
    merged.update(answer_map(table, "answers"))
    return merged


def answer_map(table: Table, key: str) -> dict[str, str]:
    """A status -> template map; `file://path` values are read from disk, empty ones skipped."""
    raw = table.str_map(key) or {}
    loaded: dict[str, str] = {}
    for code, value in raw.items():
        if not (code.isdigit() and len(code) == 3):
            table.error(key, f"{code!r} is not an HTTP status code")
        elif value.startswith("file://"):
            body = table.report.read_file(table.name, key, value.removeprefix("file://"))
            if body is not None:
                loaded[code] = body
        elif value:
            loaded[code] = value
    return loaded


def read_certificate(table: Table) -> tuple[str | None, list[str], str | None]:
    """The certificate, chain and key named by `certificate`/`certificate_chain`/`key`."""
    paths = {key: table.text(key) for key in ("certificate", "certificate_chain", "key")}
    texts = {
        key: table.report.read_file(table.name, key, path) if path else None
        for key, path in paths.items()
    }
    chain = split_pem_chain(texts["certificate_chain"] or "")
    certificate, key = texts["certificate"], texts["key"]
    if (paths["certificate"] is None) != (paths["key"] is None):
        missing = "key" if paths["key"] is None else "certificate"
        table.error(missing, "certificate and key must be given together")
    elif certificate is not None and key is not None:
        try:
            check_certificate(
                CertificateAndKey(certificate=certificate, key=key, certificate_chain=chain)
            )
        except StateError as error:
            table.error("certificate", str(error))
    return certificate, chain, key


def split_pem_chain(text: str) -> list[str]:
    marker = "-----END CERTIFICATE-----"
    return [part.strip() + "\n" + marker + "\n" for part in text.split(marker)[:-1]]


def parse_listener(table: Table, defaults: Defaults) -> AnyListenerConfig | None:
    address = table.address("address", required=True)
    protocol = table.text("protocol", required=True)
    if protocol is not None and protocol.lower() not in PROTOCOLS:
        table.error("protocol", f"unknown protocol {protocol!r}: expected http, https, tcp or udp")
        protocol = None
    if address is None or protocol is None:
        table.used.update(key for key in table.data if key in LISTENER_KEYS)  # known, not read
        table.finish(strict=True)
        return None
    protocol = protocol.lower()
    listener = build_listener(table, protocol, address, defaults)
    table.finish(strict=True)
    return listener


def build_listener(
    table: Table, protocol: str, address: SocketAddress, defaults: Defaults
) -> AnyListenerConfig:
    """Read every key that applies to `protocol`; warn about sozu keys that do not."""
    public_address = table.address("public_address")
    expect_proxy = table.flag("expect_proxy", False)
    if public_address is not None and expect_proxy:
        table.error("public_address", "public_address cannot be combined with expect_proxy")
    # UDP flows have their own defaults (30/30 s), not the top-level TCP ones.
    front_default = 30 if protocol == "udp" else defaults.front_timeout
    back_default = 30 if protocol == "udp" else defaults.back_timeout
    common: dict[str, Any] = {
        "address": address,
        "public_address": public_address,
        "front_timeout": table.integer("front_timeout", front_default, high=U32),
        "back_timeout": table.integer("back_timeout", back_default, high=U32),
    }
    listener: AnyListenerConfig
    if protocol == "udp":
        if expect_proxy:
            table.error("expect_proxy", "PROXY protocol is not supported on UDP listeners")
        listener = UdpListenerConfig(
            **common,
            max_rx_datagram_size=table.integer("max_rx_datagram_size", 1500, low=1, high=65535),
            max_flows=table.integer("max_flows", 0, high=U32),
        )
    else:
        common["expect_proxy"] = expect_proxy
        common["connect_timeout"] = table.integer(
            "connect_timeout", defaults.connect_timeout, high=U32
        )
        if protocol == "tcp":
            listener = TcpListenerConfig(**common)
        elif protocol == "http":
            hsts(table, "http")  # an error on plain HTTP
            listener = HttpListenerConfig(
                **common, **_http_fields(table, defaults), h2c=table.flag("h2c", False)
            )
        else:
            http = _http_fields(table, defaults)
            listener = HttpsListenerConfig(**common, **http, **_tls_fields(table))
    for key in sorted(PROTOCOL_SPECIFIC_KEYS - KEYS_BY_PROTOCOL[protocol]):
        if table.has(key):
            table.used.add(key)
            table.warn(key, f"does not apply to a {protocol} listener, ignored")
    return listener


def _http_fields(table: Table, defaults: Defaults) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "sticky_name": table.text("sticky_name", DEFAULT_STICKY_NAME),
        "request_timeout": table.integer("request_timeout", defaults.request_timeout, high=U32),
        "answers": answers(table),
        "sozu_id_header": table.text("sozu_id_header"),
        "elide_x_real_ip": table.flag("elide_x_real_ip", False),
        "send_x_real_ip": table.flag("send_x_real_ip", False),
        "trusted_proxies": trusted_proxies(table),
        "request_body_timeout": table.integer(
            "request_body_timeout", DEFAULT_REQUEST_BODY_TIMEOUT, high=U32
        ),
        "request_body_min_rate": table.integer(
            "request_body_min_rate", DEFAULT_REQUEST_BODY_MIN_RATE, high=U32
        ),
    }
    for key in H2_KEYS:
        low = 0 if key == "h2_graceful_shutdown_deadline_seconds" else 1
        fields[key] = table.integer(key, low=low)
        if table.has(key) and key == "h2_stream_shrink_ratio":
            table.warn(key, f"accepted but ignored: {NO_SHRINK}")
    return fields


def trusted_proxies(table: Table) -> list[str]:
    """The pysozu `trusted_proxies` key: IP networks (CIDR) or single addresses."""
    networks: list[str] = table.str_list("trusted_proxies", [])
    for text in networks:
        try:
            parse_network(text)
        except ValueError as error:
            table.error("trusted_proxies", str(error))
    return networks


def _tls_fields(table: Table) -> dict[str, Any]:
    certificate, chain, key = read_certificate(table)
    alpn = table.str_list("alpn_protocols") or list(DEFAULT_ALPN)
    for value in alpn:
        if value not in DEFAULT_ALPN:
            table.error("alpn_protocols", f"{value!r} is not one of h2, http/1.1")
    if table.has("groups_list"):
        table.warn("groups_list", f"accepted but ignored: {NO_GROUPS}")
    disable_http11 = table.flag("disable_http11")
    if disable_http11 and "http/1.1" in alpn:
        table.error("disable_http11", "disable_http11 = true needs alpn_protocols without http/1.1")
    return {
        "versions": tls_versions(table, "tls_versions")
        or [TlsVersion.TLS_V1_2, TlsVersion.TLS_V1_3],
        "cipher_list": table.str_list("cipher_list", list(DEFAULT_CIPHER_LIST)),
        "cipher_suites": table.str_list("cipher_suites", list(DEFAULT_CIPHER_LIST)),
        "groups_list": table.str_list("groups_list", list(DEFAULT_GROUPS_LIST)),
        "certificate": certificate,
        "certificate_chain": chain,
        "key": key,
        "send_tls13_tickets": table.integer("send_tls13_tickets", 4),
        "alpn_protocols": list(dict.fromkeys(alpn)),
        "strict_sni_binding": table.flag("strict_sni_binding"),
        "disable_http11": disable_http11,
        "hsts": hsts(table, "https"),
    }


def auto_listener(
    report: Report, protocol: str, address: SocketAddress, defaults: Defaults
) -> AnyListenerConfig:
    """The listener sozu creates for a frontend whose address no `[[listeners]]` declares."""
    return build_listener(Table(report, "", {}), protocol, address, defaults)
