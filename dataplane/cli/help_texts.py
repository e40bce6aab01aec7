"""Help for the options several `pysozu listener` commands share, written once.

`listener http add` and `listener tcp update` describe `--front-timeout` in the same words: the
text comes from `LISTENER_HELP` (`UDP_HELP` for UDP) and `H2_HELP`, and `listener_option` adds
an option with it.
For `add`, the default shown is the request message's own (what main receives when the option
is left out); `update` shows none, since an option left out keeps the listener's current value.
"""

from __future__ import annotations

import argparse
from typing import Any

import msgspec

LISTENER_HELP = {
    "address": "listener address, IP:port",
    "public_address": "IP:port to report in logs and forwarded headers instead of the socket's",
    "front_timeout": "inactivity timeout of the client connection, in seconds",
    "back_timeout": "inactivity timeout of the backend connection, in seconds",
    "connect_timeout": "how long to wait for a backend connection to open, in seconds",
    "request_timeout": "how long a client has to send a complete request (then 408), in seconds",
    "request_body_timeout": "window, in seconds, over which a request body's rate is measured: "
    "a body slower than --request-body-min-rate over a window is cut with 408; 0: no check "
    "(pysozu extension)",
    "request_body_min_rate": "slowest request body accepted, in bytes per second, averaged "
    "over each --request-body-timeout window; 0: no check (pysozu extension)",
    "expect_proxy": "expect a PROXY protocol header (v2, or v1 text) at the start of each "
    "client connection; its source address becomes the client's",
    "no_expect_proxy": "stop expecting a PROXY protocol header from clients",
    "sticky_name": "name of the sticky session cookie",
    "trusted_proxies": "peers (IP networks, CIDR, or addresses) whose X-Forwarded-*, Forwarded "
    "and X-Real-IP headers are kept and appended to; any other client's are replaced "
    "(pysozu extension); space- or comma-separated, or the option repeated",
    "no_trusted_proxies": "trust no peer's forwarding headers any more",
    "sozu_id_header": "name of the request id header set on requests and answers (sozu: Sozu-Id)",
}

# UDP has flows where the others have connections.
UDP_HELP = {
    "front_timeout": "inactivity timeout of a client flow, in seconds",
    "back_timeout": "inactivity timeout of an upstream flow, in seconds",
    "max_rx_datagram_size": "largest datagram received, in bytes, at most the buffer size",
    "max_flows": "maximum concurrent flows; 0: automatic, sozu uses ~70%% of RLIMIT_NOFILE",
}

# What each HTTP/2 knob limits, and sozu 2.1's built-in value (used while the option is unset).
H2_HELP = {
    "h2_max_rst_stream_per_window": "RST_STREAM frames accepted per 1 s window (sozu: 100)",
    "h2_max_ping_per_window": "PING frames accepted per 1 s window (sozu: 100)",
    "h2_max_settings_per_window": "SETTINGS frames accepted per 1 s window (sozu: 50)",
    "h2_max_empty_data_per_window": "empty DATA frames accepted per 1 s window (sozu: 100)",
    "h2_max_continuation_frames": "CONTINUATION frames accepted per header block (sozu: 20)",
    "h2_max_glitch_count": "protocol anomalies tolerated before ENHANCE_YOUR_CALM (sozu: 100)",
    "h2_initial_connection_window": "connection receive window, in bytes (sozu: 1048576)",
    "h2_max_concurrent_streams": "SETTINGS_MAX_CONCURRENT_STREAMS advertised (sozu: 100)",
    "h2_stream_shrink_ratio": "when to shrink the recycled stream slots, a ratio (sozu: 2)",
    "h2_max_rst_stream_lifetime": "RST_STREAM frames accepted over a connection's life "
    "(sozu: 10000)",
    "h2_max_rst_stream_abusive_lifetime": "RST_STREAM frames accepted before any response over "
    "a connection's life, the Rapid Reset signature (sozu: 50)",
    "h2_max_rst_stream_emitted_lifetime": "RST_STREAM frames the proxy may send over a "
    "connection's life (sozu: 500)",
    "h2_max_header_list_size": "decoded header list size per request, in bytes (sozu: 65536)",
    "h2_max_header_table_size": "HPACK dynamic table size accepted from the peer, in bytes "
    "(sozu: 65536)",
    "h2_stream_idle_timeout_seconds": "idle timeout of one stream, in seconds "
    "(sozu: max(30, back timeout))",
    "h2_graceful_shutdown_deadline_seconds": "time between GOAWAY and closing the connection, "
    "in seconds; 0: wait for the streams (sozu: 5)",
    "h2_max_window_update_stream0_per_window": "connection-level WINDOW_UPDATE frames accepted "
    "per 1 s window (sozu: 100)",
    "h2_max_header_fields": "header fields per request, cookie crumbs included (sozu: 128)",
}

H2_GROUP = "HTTP/2 limits"
H2_GROUP_DESCRIPTION = (
    "sozu's limits for HTTP/2 clients of this listener (flood and abuse caps, windows, "
    "streams): at least 1 (the shutdown deadline may be 0); new connections get them"
)

ANSWER_HELP = {
    "301": "the redirection to HTTPS",
    "400": "a request that cannot be parsed",
    "401": "a request without valid credentials",
    "404": "a request no frontend matches",
    "408": "a request not received within request_timeout, or a body slower than "
    "request_body_min_rate",
    "413": "a request head larger than the buffer",
    "421": "a host the connection's TLS certificate does not cover",
    "429": "a client over the per-(cluster, source IP) connection limit",
    "502": "an invalid backend response",
    "503": "a cluster with no backend available",
    "504": "a backend that did not answer within back_timeout",
    "507": "a backend response head larger than the buffer",
}


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def listener_option(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    name: str,
    defaults: type[msgspec.Struct] | None = None,
    *,
    udp: bool = False,
    **kwargs: Any,
) -> None:
    """Add `--name` with its shared help; `defaults`: the message whose default to show."""
    help_text = (udp and UDP_HELP.get(name)) or LISTENER_HELP.get(name) or H2_HELP[name]
    default = _default(defaults, name) if defaults is not None else None
    if default is not None and default is not False:
        help_text = f"{help_text} (default: {default})"
    parser.add_argument(flag(name), help=help_text, **kwargs)


def answer_help(code: str) -> str:
    return f"file holding the {code} answer sent for {ANSWER_HELP[code]}"


def _default(message: type[msgspec.Struct], name: str) -> Any:
    for field in msgspec.structs.fields(message):
        if field.name == name:
            return None if field.default is msgspec.NODEFAULT else field.default
    return None
