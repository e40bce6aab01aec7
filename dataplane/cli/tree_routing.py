"""`pysozu frontend ...` and `pysozu listener ...`: routes and listening addresses.

HTTP(S) routes end with their target as in sozu: `... id <cluster>` or `... deny`, e.g.
`pysozu frontend http add --address 0.0.0.0:8080 --hostname example.com id app`.
"""

from __future__ import annotations

import argparse
from typing import Any

from dataplane.cli import args as value
from dataplane.cli.auth_request_flags import add_auth_request_flags, auth_request_from
from dataplane.cli.canary_flags import add_canary_flags, canary_from
from dataplane.cli.client_auth_flags import add_client_auth_flags, client_auth_from
from dataplane.cli.cors_flags import add_cors_flags, cors_policy
from dataplane.cli.custom_errors_flags import add_custom_errors_flags, custom_errors_from
from dataplane.cli.help_texts import (
    H2_GROUP,
    H2_GROUP_DESCRIPTION,
    LISTENER_HELP,
    answer_help,
    listener_option,
)
from dataplane.cli.tree_base import GLOBAL, group, leaf
from dataplane.command.messages import (
    ActivateListener,
    AlpnProtocols,
    ConnectionLimit,
    CustomHttpAnswers,
    DeactivateListener,
    Empty,
    FrontendFilters,
    HttpListenerConfig,
    HttpsListenerConfig,
    ListenerType,
    PathRule,
    PathRuleKind,
    RateLimit,
    RemoveListener,
    Request,
    RequestHttpFrontend,
    RequestTcpFrontend,
    RequestUdpFrontend,
    RulePosition,
    TcpListenerConfig,
    UdpListenerConfig,
    UpdateHttpListenerConfig,
    UpdateHttpsListenerConfig,
    UpdateTcpListenerConfig,
    UpdateUdpListenerConfig,
    _H2Knobs,
)
from dataplane.command.passthrough_rules import passthrough_problem

TAGS_HELP = "labels kept with the frontend: key=value, other-key=other-value"
ANSWER_CODES = ("301", "400", "401", "404", "408", "413", "421", "429", "502", "503", "504", "507")


# -- frontends -------------------------------------------------------------------------------


def _path(a: argparse.Namespace) -> PathRule:
    if a.path_regex is not None:
        return PathRule(kind=PathRuleKind.REGEX, value=a.path_regex)
    if a.path_equals is not None:
        return PathRule(kind=PathRuleKind.EQUALS, value=a.path_equals)
    return PathRule(kind=PathRuleKind.PREFIX, value=a.path_prefix or "")


def _http_frontend(a: argparse.Namespace, adding: bool) -> RequestHttpFrontend:
    front = RequestHttpFrontend(
        cluster_id=a.cluster_id if a.route == "id" else None,
        address=a.address,
        hostname=a.hostname,
        path=_path(a),
        method=a.method,
        position=RulePosition.TREE,
    )
    if not adding:
        return front
    front.tags = a.tags or {}
    front.redirect = a.redirect
    front.redirect_scheme = a.redirect_scheme
    front.redirect_template = a.redirect_template
    front.rewrite_host = a.rewrite_host
    front.rewrite_path = a.rewrite_path
    front.rewrite_port = a.rewrite_port
    front.required_auth = True if a.required_auth else None
    front.headers = a.header
    front.hsts = value.hsts(a)
    front.allowed_sources = a.allow_source
    front.denied_sources = a.deny_source
    front.max_body_size = a.max_body_size
    front.canary = canary_from(a)
    front.passthrough = bool(getattr(a, "passthrough", False))
    front.cors = cors_policy(a)
    front.auth_request = auth_request_from(a)
    front.client_auth = client_auth_from(a)
    front.custom_errors = custom_errors_from(a)
    if a.rate_limit is not None:
        front.rate_limits = [
            RateLimit(
                rate=a.rate_limit,
                burst=a.rate_burst,
                status=a.rate_limit_status,
                exempt_sources=a.rate_limit_exempt,
                zone=a.rate_limit_zone,
            )
        ]
    elif a.rate_burst or a.rate_limit_exempt or a.rate_limit_status != 503 or a.rate_limit_zone:
        raise argparse.ArgumentTypeError(
            "--rate-burst, --rate-limit-status and --rate-limit-exempt need --rate-limit"
        )
    if a.connection_limit is not None:
        front.connection_limit = ConnectionLimit(
            max_concurrent_per_client=a.connection_limit,
            status=a.connection_limit_status,
            exempt_sources=a.connection_limit_exempt,
            zone=a.connection_limit_zone,
        )
    elif a.connection_limit_exempt or a.connection_limit_status != 503 or a.connection_limit_zone:
        raise argparse.ArgumentTypeError("--connection-limit-* flags need --connection-limit")
    if front.passthrough and (problem := passthrough_problem(front)) is not None:
        raise argparse.ArgumentTypeError(f"--passthrough: {problem}")
    return front


def _access_flags(add: argparse.ArgumentParser) -> None:
    """pysozu extensions (docs/access-control.md): who may use the route, and how much."""
    add.add_argument(
        "--allow-source",
        action="append",
        default=[],
        metavar="CIDR",
        help="only clients in this network may use the route (others get 403); repeatable",
    )
    add.add_argument(
        "--deny-source",
        action="append",
        default=[],
        metavar="CIDR",
        help="clients in this network get 403; repeatable",
    )
    add.add_argument(
        "--max-body-size",
        type=int,
        metavar="BYTES",
        help="larger request bodies get 413 (chunked ones too); 0: no limit",
    )
    add.add_argument(
        "--rate-limit",
        type=float,
        metavar="PER_SECOND",
        help="requests per second allowed per client address (each worker counts its own)",
    )
    add.add_argument(
        "--rate-burst",
        type=int,
        default=0,
        metavar="N",
        help="requests a client may run ahead of --rate-limit (default 0)",
    )
    add.add_argument(
        "--rate-limit-status",
        type=int,
        default=503,
        metavar="STATUS",
        choices=(429, 503),
        help="status answered beyond the limit: 429 or 503 (default, as ingress-nginx)",
    )
    add.add_argument(
        "--rate-limit-exempt",
        action="append",
        default=[],
        metavar="CIDR",
        help="clients in this network are not rate limited; repeatable",
    )
    add.add_argument(
        "--rate-limit-zone",
        metavar="NAME",
        help="routes naming the same zone count a client together (nginx's limit_req_zone)",
    )
    add.add_argument(
        "--connection-limit",
        type=int,
        metavar="N",
        help="requests in flight allowed per client address (nginx's limit_conn; per worker)",
    )
    add.add_argument(
        "--connection-limit-status",
        type=int,
        default=503,
        choices=(429, 503),
        metavar="STATUS",
        help="status answered beyond --connection-limit: 429 or 503 (default, as ingress-nginx)",
    )
    add.add_argument(
        "--connection-limit-exempt",
        action="append",
        default=[],
        metavar="CIDR",
        help="clients in this network are not counted; repeatable",
    )
    add.add_argument(
        "--connection-limit-zone",
        metavar="NAME",
        help="routes naming the same zone count a client together (nginx's limit_conn_zone)",
    )


def _http_route_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-a", "--address", type=value.address, required=True, help="frontend address, IP:port"
    )
    parser.add_argument(
        "--hostname",
        "--host",
        required=True,
        help="host to match, e.g. example.com or *.example.com",
    )
    paths = parser.add_mutually_exclusive_group()
    paths.add_argument(
        "-p", "--path-prefix", metavar="PREFIX", help="URL path prefix to match (default: any path)"
    )
    paths.add_argument("--path-regex", metavar="REGEX", help="regex the URL path must match")
    paths.add_argument("--path-equals", metavar="PATH", help="URL path to match exactly")
    parser.add_argument("-m", "--method", help="HTTP method to match (default: any method)")


def _route_target(parser: argparse.ArgumentParser) -> None:
    """`id <cluster>` or `deny`, after the flags (a subcommand, as in sozu)."""
    targets = parser.add_subparsers(dest="route", required=True, metavar="{id <CLUSTER>,deny}")
    # -c/-t/-j may follow the target, as sozu's global options may.
    target = targets.add_parser("id", help="route to this cluster", parents=[GLOBAL])
    target.add_argument("cluster_id", metavar="CLUSTER", help="id of the cluster to route to")
    targets.add_parser("deny", help="answer 401 to what this route matches", parents=[GLOBAL])


def _add_http_frontends(sub: Any, kind: str) -> None:
    verb = f"{kind}_frontend"
    add = leaf(
        sub,
        "add",
        f"add an {kind.upper()} route",
        lambda a: Request.of(**{f"add_{verb}": _http_frontend(a, True)}),
    )
    _http_route_flags(add)
    add.add_argument("--tags", type=value.tags, metavar="TAGS", help=TAGS_HELP)
    add.add_argument(
        "--redirect",
        type=value.redirect_policy,
        metavar="POLICY",
        help="forward (default): send to the cluster; permanent: answer 301 to the URL made "
        "by --redirect-scheme and the rewrites; unauthorized: answer 401",
    )
    add.add_argument(
        "--redirect-scheme",
        type=value.redirect_scheme,
        metavar="SCHEME",
        help="scheme of a permanent redirect's Location: use-same (default), use-http, use-https",
    )
    add.add_argument(
        "--redirect-template",
        metavar="NAME",
        help="answer template (cluster or listener answers) to send for a redirect; "
        "it may use %%REDIRECT_LOCATION",
    )
    add.add_argument(
        "--rewrite-host",
        metavar="TEMPLATE",
        help="host sent to the backend or put in a redirect: text with $HOST[n] and $PATH[n], "
        "the captures of the matched hostname and path",
    )
    add.add_argument(
        "--rewrite-path",
        metavar="TEMPLATE",
        help="path sent to the backend or put in a redirect, same placeholders as --rewrite-host",
    )
    add.add_argument(
        "--rewrite-port",
        type=value.port,
        metavar="PORT",
        help="port of a redirect's Location, 1-65535",
    )
    add.add_argument(
        "--required-auth", action="store_true", help="require a valid Basic Authorization header"
    )
    add.add_argument(
        "--header",
        type=value.header,
        action="append",
        default=[],
        metavar="WHERE=NAME=VALUE",
        help="header to set on the request, the response or both: "
        "<request|response|both>=<name>=<value>; an empty value removes it; repeatable",
    )
    value.add_hsts_flags(add)
    _access_flags(add)
    add_canary_flags(add)
    if kind == "https":
        add.add_argument(
            "--passthrough",
            action="store_true",
            help="TLS passthrough (pysozu extension): connections whose ClientHello names this "
            "hostname go, still encrypted, to the cluster's backends; no HTTP option applies",
        )
        add_client_auth_flags(add)
    add_cors_flags(add)
    add_auth_request_flags(add)
    add_custom_errors_flags(add)
    _route_target(add)
    remove = leaf(
        sub,
        "remove",
        f"remove an {kind.upper()} route",
        lambda a: Request.of(**{f"remove_{verb}": _http_frontend(a, False)}),
    )
    _http_route_flags(remove)
    _route_target(remove)


def _add_l4_frontends(sub: Any, kind: str, message: type) -> None:
    verb = f"{kind}_frontend"
    add = leaf(
        sub,
        "add",
        f"add a {kind.upper()} frontend",
        lambda a: Request.of(
            **{f"add_{verb}": message(cluster_id=a.id, address=a.address, tags=a.tags or {})}
        ),
    )
    add.add_argument("--tags", type=value.tags, metavar="TAGS", help=TAGS_HELP)
    remove = leaf(
        sub,
        "remove",
        f"remove a {kind.upper()} frontend",
        lambda a: Request.of(**{f"remove_{verb}": message(cluster_id=a.id, address=a.address)}),
    )
    for parser in (add, remove):
        parser.add_argument("-i", "--id", required=True, help="cluster id")
        parser.add_argument(
            "-a", "--address", type=value.address, required=True, help="frontend address, IP:port"
        )


def add_frontend_tree(top: Any) -> None:
    frontend = group(top, "frontend", "frontend management")
    for kind in ("http", "https"):
        _add_http_frontends(group(frontend, kind, f"{kind.upper()} routes"), kind)
    _add_l4_frontends(group(frontend, "tcp", "TCP frontends"), "tcp", RequestTcpFrontend)
    _add_l4_frontends(group(frontend, "udp", "UDP frontends"), "udp", RequestUdpFrontend)
    listing = leaf(
        frontend,
        "list",
        "list frontends",
        lambda a: Request.of(
            list_frontends=FrontendFilters(http=a.http, https=a.https, tcp=a.tcp, domain=a.domain)
        ),
        show="frontends",
    )
    listing.add_argument("--http", action="store_true", help="HTTP frontends")
    listing.add_argument("--https", action="store_true", help="HTTPS frontends")
    listing.add_argument("--tcp", action="store_true", help="TCP frontends")
    listing.add_argument("-d", "--domain", help="hostname contains this")


# -- listeners -------------------------------------------------------------------------------


def _set(message: Any, a: argparse.Namespace, names: tuple[str, ...]) -> Any:
    for name in names:
        given = getattr(a, name, None)
        if given is not None:
            setattr(message, name, given)
    return message


TIMEOUTS = ("front_timeout", "back_timeout", "request_timeout", "connect_timeout")
BODY_RATE = ("request_body_timeout", "request_body_min_rate")  # pysozu extension
H2_KNOBS = _H2Knobs.__struct_fields__


def _answers(a: argparse.Namespace) -> CustomHttpAnswers | None:
    given = {
        f"answer_{code}": value.read_file(path)
        for code in ANSWER_CODES
        if (path := getattr(a, f"answer_{code}", None)) is not None
    }
    return CustomHttpAnswers(**given) if given else None


H2C_HELP = (
    "also speak HTTP/2 with prior knowledge (h2c) to clients opening with its preface, "
    "e.g. gRPC behind a TLS-terminating load balancer (pysozu extension)"
)


def _http_listener(a: argparse.Namespace, tls: bool) -> Request:
    listener: HttpListenerConfig
    if tls:
        listener = HttpsListenerConfig(
            address=a.address, versions=a.tls_versions, cipher_list=a.cipher_list or []
        )
    else:
        listener = HttpListenerConfig(address=a.address)
    _set(listener, a, ("public_address", "sticky_name", "trusted_proxies", *TIMEOUTS, *BODY_RATE))
    listener.expect_proxy = a.expect_proxy
    listener.http_answers = _answers(a)
    if not tls:
        listener.h2c = a.h2c
    verb = "add_https_listener" if tls else "add_http_listener"
    return Request.of(**{verb: listener})


def _http_update(a: argparse.Namespace, tls: bool) -> Request:
    patch = (
        UpdateHttpsListenerConfig(address=a.address)
        if tls
        else UpdateHttpListenerConfig(address=a.address)
    )
    _set(
        patch,
        a,
        ("public_address", "sticky_name", "sozu_id_header", *TIMEOUTS, *BODY_RATE, *H2_KNOBS),
    )
    patch.trusted_proxies = a.trusted_proxies
    patch.expect_proxy = a.expect_proxy
    patch.http_answers = _answers(a)
    if not tls:
        patch.h2c = a.h2c
    if isinstance(patch, UpdateHttpsListenerConfig):
        patch.strict_sni_binding = a.strict_sni_binding
        patch.disable_http11 = a.disable_http11
        if a.reset_alpn:
            patch.alpn_protocols = AlpnProtocols(values=[])
        elif a.alpn_protocols:
            patch.alpn_protocols = AlpnProtocols(values=a.alpn_protocols)
        patch.hsts = value.hsts(a)
    verb = "update_https_listener" if tls else "update_http_listener"
    return Request.of(**{verb: patch})


def _address_verbs(sub: Any, proxy: ListenerType) -> None:
    label = proxy.name
    builders = {
        "remove": lambda a: Request.of(
            remove_listener=RemoveListener(address=a.address, proxy=proxy)
        ),
        "activate": lambda a: Request.of(
            activate_listener=ActivateListener(address=a.address, proxy=proxy)
        ),
        "deactivate": lambda a: Request.of(
            deactivate_listener=DeactivateListener(address=a.address, proxy=proxy)
        ),
    }
    for name, build in builders.items():
        parser = leaf(sub, name, f"{name} a {label} listener", build)
        _listener_address(parser)


def _listener_address(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-a", "--address", type=value.address, required=True, help=LISTENER_HELP["address"]
    )


def _settings(
    parser: argparse.ArgumentParser,
    names: tuple[str, ...],
    defaults: type | None = None,
    udp: bool = False,
) -> None:
    """Timeouts and sizes: `defaults` is the message of an `add` (None: an `update`)."""
    for name in names:
        unit = "BYTES" if name.endswith("size") else "N" if name == "max_flows" else "SECONDS"
        if name.endswith("rate"):
            unit = "BYTES_PER_SECOND"
        listener_option(parser, name, defaults, udp=udp, type=value.unsigned, metavar=unit)


def _answer_files(parser: argparse.ArgumentParser, codes: tuple[str, ...]) -> None:
    for code in codes:
        parser.add_argument(f"--answer-{code}", metavar="FILE", help=answer_help(code))


def _expect_proxy(parser: argparse.ArgumentParser, updating: bool) -> None:
    if not updating:
        listener_option(parser, "expect_proxy", action="store_true")
        return
    # An update's on/off pair sets one value, the last given wins (clap's overrides_with).
    for name, setting in (("expect_proxy", True), ("no_expect_proxy", False)):
        listener_option(parser, name, dest="expect_proxy", action="store_const", const=setting)


def _trusted_proxies(parser: argparse.ArgumentParser, updating: bool) -> None:
    """`--trusted-proxies CIDR...` (an update replaces the list; `--no-trusted-proxies`
    empties it). Each entry is checked here, as main checks it."""
    flags = parser.add_mutually_exclusive_group() if updating else parser
    listener_option(
        flags,
        "trusted_proxies",
        type=value.comma_separated(value.network),
        action=value.Listed,
        nargs="*",
        metavar="CIDR",
    )
    if updating:
        listener_option(
            flags, "no_trusted_proxies", dest="trusted_proxies", action="store_const", const=[]
        )


def _updating(parser: argparse.ArgumentParser) -> None:
    parser.description = f"{parser.description}; options left out keep their current value"


def _http_listener_tree(sub: Any, tls: bool) -> None:
    proxy = ListenerType.HTTPS if tls else ListenerType.HTTP
    message = HttpsListenerConfig if tls else HttpListenerConfig
    add = leaf(sub, "add", f"add a {proxy.name} listener", lambda a: _http_listener(a, tls))
    _listener_address(add)
    listener_option(add, "public_address", type=value.address, metavar="IP:PORT")
    _answer_files(add, ("404", "503"))
    _expect_proxy(add, updating=False)
    listener_option(add, "sticky_name", message, metavar="NAME")
    _trusted_proxies(add, updating=False)
    _settings(add, TIMEOUTS, message)
    _settings(add, BODY_RATE, message)
    if not tls:
        add.add_argument("--h2c", action="store_true", help=H2C_HELP)
    if tls:
        add.add_argument(
            "--tls-versions",
            type=value.comma_separated(value.tls_version),
            action=value.Listed,
            nargs="*",
            default=[],
            metavar="VERSION",
            help="TLS versions to accept: TLS_V1_2, TLS_V1_3 (default: both); space- or "
            "comma-separated, or the option repeated",
        )
        add.add_argument(
            "--tls-cipher-list",
            dest="cipher_list",
            type=value.comma_separated(str),
            action=value.Listed,
            nargs="*",
            metavar="CIPHER",
            help="cipher suites, IANA names such as TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 "
            "(default: sozu's list); space- or comma-separated, or the option repeated",
        )
    _address_verbs(sub, proxy)
    update = leaf(
        sub, "update", f"patch a running {proxy.name} listener", lambda a: _http_update(a, tls)
    )
    _updating(update)
    _listener_address(update)
    listener_option(update, "public_address", type=value.address, metavar="IP:PORT")
    listener_option(update, "sticky_name", metavar="NAME")
    _settings(update, TIMEOUTS)
    _settings(update, BODY_RATE)
    _expect_proxy(update, updating=True)
    _trusted_proxies(update, updating=True)
    if not tls:
        h2c = update.add_mutually_exclusive_group()
        h2c.add_argument("--h2c", dest="h2c", action="store_const", const=True, help=H2C_HELP)
        h2c.add_argument(
            "--no-h2c", dest="h2c", action="store_const", const=False, help="stop speaking h2c"
        )
    h2 = update.add_argument_group(H2_GROUP, H2_GROUP_DESCRIPTION)
    for knob in H2_KNOBS:
        listener_option(h2, knob, type=value.unsigned, metavar="N")
    listener_option(update, "sozu_id_header", metavar="NAME")
    _answer_files(update, tuple(c for c in ANSWER_CODES if c != "400"))
    if tls:
        _tls_update_flags(update)


def _tls_update_flags(update: argparse.ArgumentParser) -> None:
    # Each on/off pair sets one value, the last given wins (clap's overrides_with).
    update.add_argument(
        "--strict-sni-binding",
        dest="strict_sni_binding",
        action="store_const",
        const=True,
        help="answer 421 to a request whose host the connection's certificate does not cover "
        "(the default)",
    )
    update.add_argument(
        "--no-strict-sni-binding",
        dest="strict_sni_binding",
        action="store_const",
        const=False,
        help="serve a request whatever the connection's TLS SNI was",
    )
    update.add_argument(
        "--disable-http11",
        dest="disable_http11",
        action="store_const",
        const=True,
        help="offer only h2 in ALPN (refused until pysozu serves HTTP/2)",
    )
    update.add_argument(
        "--enable-http11",
        dest="disable_http11",
        action="store_const",
        const=False,
        help="offer http/1.1 in ALPN again",
    )
    alpn = update.add_mutually_exclusive_group()
    alpn.add_argument(
        "--alpn-protocols",
        type=value.comma_separated(str),
        action=value.Listed,
        nargs="*",
        metavar="PROTOCOL",
        help="ALPN protocols to offer, among h2 and http/1.1, comma-separated as sozu takes them "
        "(h2,http/1.1) or space-separated; http/1.1 must be one of them until pysozu serves "
        "HTTP/2",
    )
    alpn.add_argument(
        "--reset-alpn",
        action="store_true",
        help="offer the default ALPN protocols again (h2, http/1.1)",
    )
    value.add_hsts_flags(update)


def _l4_listener_tree(sub: Any, proxy: ListenerType) -> None:
    udp = proxy == ListenerType.UDP
    message = UdpListenerConfig if udp else TcpListenerConfig
    settings = ("front_timeout", "back_timeout") + (
        ("max_rx_datagram_size", "max_flows") if udp else ("connect_timeout",)
    )

    def add_request(a: argparse.Namespace) -> Request:
        if udp:
            return Request.of(
                add_udp_listener=_set(
                    UdpListenerConfig(address=a.address), a, ("public_address", *settings)
                )
            )
        listener = _set(TcpListenerConfig(address=a.address), a, ("public_address", *settings))
        listener.expect_proxy = a.expect_proxy
        return Request.of(add_tcp_listener=listener)

    def update_request(a: argparse.Namespace) -> Request:
        if udp:
            return Request.of(
                update_udp_listener=_set(
                    UpdateUdpListenerConfig(address=a.address), a, ("public_address", *settings)
                )
            )
        patch = _set(UpdateTcpListenerConfig(address=a.address), a, ("public_address", *settings))
        patch.expect_proxy = a.expect_proxy
        return Request.of(update_tcp_listener=patch)

    add = leaf(sub, "add", f"add a {proxy.name} listener", add_request)
    update = leaf(sub, "update", f"patch a running {proxy.name} listener", update_request)
    _updating(update)
    for parser, defaults in ((add, message), (update, None)):
        _listener_address(parser)
        listener_option(parser, "public_address", type=value.address, metavar="IP:PORT")
        _settings(parser, settings, defaults, udp)
        if not udp:
            _expect_proxy(parser, updating=parser is update)
    _address_verbs(sub, proxy)


def add_listener_tree(top: Any) -> None:
    listener = group(top, "listener", "listener management")
    _http_listener_tree(group(listener, "http", "HTTP listeners"), tls=False)
    _http_listener_tree(group(listener, "https", "HTTPS listeners"), tls=True)
    _l4_listener_tree(group(listener, "tcp", "TCP listeners"), ListenerType.TCP)
    _l4_listener_tree(group(listener, "udp", "UDP listeners"), ListenerType.UDP)
    leaf(
        listener,
        "list",
        "list all listeners",
        lambda a: Request.of(list_listeners=Empty()),
        show="listeners",
    )
