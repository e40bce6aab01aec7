"""`pysozu cluster ...`, `pysozu backend ...` and `pysozu certificate ...`."""

from __future__ import annotations

import argparse

from dataplane.cli import args as value
from dataplane.cli.backend_tls_flags import add_backend_tls_flags, backend_tls
from dataplane.cli.tree_base import GLOBAL_SHORT_TIMEOUT, Build, Subparsers, group, leaf
from dataplane.command.messages import (
    AddBackend,
    AddCertificate,
    CertificateAndKey,
    Cluster,
    Empty,
    HealthCheckConfig,
    ProxyProtocolConfig,
    QueryCertificatesFilters,
    QueryClusterByDomain,
    QueryHealthChecks,
    RemoveBackend,
    RemoveCertificate,
    ReplaceCertificate,
    Request,
    SetHealthCheck,
    StickyCookie,
)


def _cluster_list(a: argparse.Namespace) -> Request:
    if a.id is not None:
        return Request.of(query_cluster_by_id=a.id)
    if a.domain is not None:
        host, slash, path = a.domain.partition("/")
        query = QueryClusterByDomain(hostname=host, path=f"/{path}" if slash else None)
        return Request.of(query_clusters_by_domain=query)
    return Request.of(query_clusters_hashes=Empty())


def _cluster_add(a: argparse.Namespace) -> Request:
    proxy_protocol = {
        (True, True): ProxyProtocolConfig.RELAY_HEADER,
        (True, False): ProxyProtocolConfig.SEND_HEADER,
        (False, True): ProxyProtocolConfig.EXPECT_HEADER,
    }.get((a.send_proxy, a.expect_proxy))
    return Request.of(
        add_cluster=Cluster(
            cluster_id=a.id,
            sticky_session=a.sticky_session,
            https_redirect=a.https_redirect,
            proxy_protocol=proxy_protocol,
            load_balancing=a.load_balancing_policy,
            http2=True if a.http2 else None,
            answers=dict(a.answer),
            https_redirect_port=a.https_redirect_port,
            www_authenticate=a.www_authenticate,
            authorized_hashes=a.authorized_hash,
            connect_timeout=a.connect_timeout,
            back_timeout=a.back_timeout,
            sticky_name=a.sticky_name,
            sticky_cookie=_sticky_cookie(a),
            hash_key=a.hash_key,
            backend_tls=backend_tls(a),
        )
    )


def _sticky_cookie(a: argparse.Namespace) -> StickyCookie | None:
    """The `--sticky-cookie-*` flags; None when none is given (sozu's `Path=/` only)."""
    given = {
        name: getattr(a, f"sticky_cookie_{name}")
        for name in ("path", "domain", "max_age", "expires", "same_site", "secure")
        if getattr(a, f"sticky_cookie_{name}") is not None
    }
    if not given and not a.sticky_cookie_http_only:
        return None
    return StickyCookie(**given, http_only=a.sticky_cookie_http_only)


def _add_sticky_cookie_flags(add: argparse.ArgumentParser) -> None:
    flags = add.add_argument_group(
        "sticky cookie attributes (pysozu extension; default: Path=/ only, as sozu)"
    )
    flags.add_argument("--sticky-cookie-path", metavar="PATH", help="Path attribute (default /)")
    flags.add_argument("--sticky-cookie-domain", metavar="DOMAIN", help="Domain attribute")
    flags.add_argument(
        "--sticky-cookie-max-age", type=value.unsigned, metavar="SECONDS", help="Max-Age"
    )
    flags.add_argument(
        "--sticky-cookie-expires",
        type=value.unsigned,
        metavar="SECONDS",
        help="an Expires date this many seconds after the response",
    )
    flags.add_argument(
        "--sticky-cookie-same-site", choices=("Strict", "Lax", "None"), help="SameSite"
    )
    flags.add_argument(
        "--sticky-cookie-secure",
        choices=("never", "always", "https"),
        help="when to add Secure: never (default), always, or on requests that came over TLS",
    )
    flags.add_argument("--sticky-cookie-http-only", action="store_true", help="add HttpOnly")


def add_cluster_tree(top: Subparsers) -> None:
    cluster = group(top, "cluster", "cluster management")
    listing = leaf(
        cluster,
        "list",
        "query clusters: all of them, or by id or domain",
        _cluster_list,
        show="clusters",
    )
    by = listing.add_mutually_exclusive_group()  # sozu refuses both
    by.add_argument("-i", "--id", help="cluster identifier")
    by.add_argument("-d", "--domain", help="cluster domain name (host or host/path)")
    remove = leaf(cluster, "remove", "remove a cluster", lambda a: Request.of(remove_cluster=a.id))
    remove.add_argument("-i", "--id", required=True, help="cluster id")
    add = leaf(cluster, "add", "add (or update) a cluster", _cluster_add)
    add.add_argument("-i", "--id", required=True, help="cluster id")
    add.add_argument(
        "-s",
        "--sticky-session",
        action="store_true",
        help="send a client back to the backend its sticky session cookie names",
    )
    add.add_argument(
        "-r", "--https-redirect", action="store_true", help="redirect HTTP requests to HTTPS (301)"
    )
    add.add_argument(
        "--send-proxy", action="store_true", help="send a PROXY protocol v2 header to backends"
    )
    add.add_argument(
        "--expect-proxy", action="store_true", help="expect a PROXY protocol v2 header from clients"
    )
    add.add_argument(
        "--load-balancing-policy",
        type=value.load_balancing,
        default=value.load_balancing("round_robin"),
        metavar="POLICY",
        help="how to pick a backend: round_robin (default), random, least_loaded, "
        "power_of_two, hrw, maglev, in any case (sozu's documented roundrobin and "
        "leastconnections are taken too)",
    )
    add.add_argument(
        "--http2", action="store_true", help="speak HTTP/2 (h2c) to this cluster's backends"
    )
    add_backend_tls_flags(add)
    add.add_argument(
        "--connect-timeout",
        type=value.unsigned,
        metavar="SECONDS",
        help="pysozu extension: how long to wait for a connection to this cluster's backends, "
        "in seconds (default: the listener's connect_timeout)",
    )
    add.add_argument(
        "--back-timeout",
        type=value.unsigned,
        metavar="SECONDS",
        help="pysozu extension: inactivity timeout of this cluster's backend connections, "
        "in seconds (default: the listener's back_timeout)",
    )
    add.add_argument(
        "--sticky-name",
        metavar="NAME",
        help="pysozu extension: sticky session cookie name for this cluster (default: the "
        "listener's sticky_name)",
    )
    _add_sticky_cookie_flags(add)
    add.add_argument(
        "--hash-key",
        metavar="TEMPLATE",
        help="pysozu extension: with an hrw or maglev policy, the request variables that key "
        "the hash ($request_uri, $uri, $host, $remote_addr, $http_<name>, $cookie_<name>, "
        "$arg_<name>), as nginx's `hash ... consistent`",
    )
    add.add_argument(
        "--https-redirect-port",
        type=value.port,
        metavar="PORT",
        help="port in the Location of the HTTPS redirect (default: 443, left out of the URL)",
    )
    add.add_argument(
        "--www-authenticate",
        metavar="REALM",
        help="realm of the WWW-Authenticate header of a 401 answer",
    )
    add.add_argument(
        "--authorized-hash",
        type=value.authorized_hash,
        action="append",
        default=[],
        metavar="USER:HASH",
        help="credentials accepted by --required-auth frontends: user:hex(sha256(password)), "
        "repeatable",
    )
    add.add_argument(
        "--answer",
        type=value.answer,
        action="append",
        default=[],
        metavar="CODE=BODY",
        help="this cluster's answer for an HTTP status: <code>=<body> or "
        "<code>=file://<path>, repeatable",
    )
    h2 = group(cluster, "h2", "enable or disable HTTP/2 to a cluster's backends")
    for name, enabled in (("enable", True), ("disable", False)):
        toggle = leaf(
            h2, name, f"{name} HTTP/2 for backend connections", _h2_toggle(enabled), show="message"
        )
        toggle.add_argument("-i", "--id", required=True, help="cluster id")
    checks = group(cluster, "health-check", "backend health checks")
    check = leaf(
        checks,
        "set",
        "set or update a cluster's health check",
        _health_check_set,
        parent=GLOBAL_SHORT_TIMEOUT,
    )
    check.add_argument("-i", "--id", required=True, help="cluster id")
    check.add_argument("-u", "--uri", required=True, help="path to probe, e.g. /health")
    check.add_argument(
        "--interval",
        type=value.unsigned,
        default=10,
        metavar="SECONDS",
        help="time between two checks of a backend, in seconds (default: %(default)s)",
    )
    check.add_argument(
        "--timeout",
        dest="check_timeout",
        type=value.unsigned,
        default=5,
        metavar="SECONDS",
        help="how long one check may take, in seconds (default: %(default)s)",
    )
    check.add_argument(
        "--healthy-threshold",
        type=value.unsigned,
        default=3,
        metavar="N",
        help="consecutive successes that mark a backend healthy (default: %(default)s)",
    )
    check.add_argument(
        "--unhealthy-threshold",
        type=value.unsigned,
        default=3,
        metavar="N",
        help="consecutive failures that mark a backend unhealthy (default: %(default)s)",
    )
    check.add_argument(
        "--expected-status",
        type=value.unsigned,
        default=0,
        metavar="CODE",
        help="HTTP status a healthy backend answers; 0 (default): any 2xx",
    )
    remove_check = leaf(
        checks,
        "remove",
        "remove a cluster's health check",
        lambda a: Request.of(remove_health_check=a.id),
    )
    remove_check.add_argument("-i", "--id", required=True, help="cluster id")
    list_checks = leaf(
        checks,
        "list",
        "list health checks",
        lambda a: Request.of(query_health_checks=QueryHealthChecks(cluster_id=a.id)),
    )
    list_checks.add_argument("-i", "--id", help="only this cluster")


def _h2_toggle(enabled: bool) -> Build:
    def build(a: argparse.Namespace) -> Request:
        # sozu queries the cluster and re-submits it: the CLI app does that round trip.
        a.h2_enabled = enabled
        return Request.of(query_cluster_by_id=a.id)

    return build


def _health_check_set(a: argparse.Namespace) -> Request:
    config = HealthCheckConfig(
        uri=a.uri,
        interval=a.interval,
        timeout=a.check_timeout,
        healthy_threshold=a.healthy_threshold,
        unhealthy_threshold=a.unhealthy_threshold,
        expected_status=a.expected_status,
    )
    return Request.of(set_health_check=SetHealthCheck(cluster_id=a.id, config=config))


def add_backend_tree(top: Subparsers) -> None:
    backend = group(top, "backend", "backend management")
    listing = leaf(
        backend,
        "list",
        "pysozu extension: a cluster's backends with their health-check verdicts",
        _cluster_list,
        show="backends",
    )
    by = listing.add_mutually_exclusive_group(required=True)
    by.add_argument("-i", "--id", help="cluster identifier")
    by.add_argument("-d", "--domain", help="cluster domain name (host or host/path)")
    remove = leaf(
        backend,
        "remove",
        "remove a backend",
        lambda a: Request.of(
            remove_backend=RemoveBackend(
                cluster_id=a.id, backend_id=a.backend_id, address=a.address
            )
        ),
    )
    add = leaf(
        backend,
        "add",
        "add a backend",
        lambda a: Request.of(
            add_backend=AddBackend(
                cluster_id=a.id,
                backend_id=a.backend_id,
                address=a.address,
                sticky_id=a.sticky_id,
                backup=a.backup,
            )
        ),
    )
    for parser in (remove, add):
        parser.add_argument("-i", "--id", required=True, help="cluster id")
        parser.add_argument("--backend-id", required=True, help="backend id, unique in its cluster")
        parser.add_argument(
            "-a", "--address", type=value.address, required=True, help="server address, IP:port"
        )
    add.add_argument("-s", "--sticky-id", help="value for the sticky session cookie")
    add.add_argument(
        "-b",
        "--backup",
        type=_boolean,
        metavar="BOOL",
        help="true: a backup backend, used only when no other backend is available",
    )


def _boolean(text: str) -> bool:
    lowered = text.lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _certificate_and_key(a: argparse.Namespace, prefix: str = "") -> CertificateAndKey:
    chain_path = getattr(a, f"{prefix}chain")  # sozu requires it; absent is an empty chain
    return CertificateAndKey(
        certificate=value.read_file(getattr(a, f"{prefix}certificate")),
        certificate_chain=_split_pem(value.read_file(chain_path)) if chain_path else [],
        key=value.read_file(getattr(a, f"{prefix}key")),
        versions=a.tls_versions,
        names=a.names,
    )


def _names(text: str) -> list[str]:
    """`a.example,*.b.example`: the names to serve instead of the certificate's own."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise argparse.ArgumentTypeError("expected one or more comma-separated names")
    return names


def _split_pem(text: str) -> list[str]:
    marker = "-----END CERTIFICATE-----"
    return [part.strip() + "\n" + marker for part in text.split(marker)[:-1]]


def _fingerprint(a: argparse.Namespace, certificate: str | None, fingerprint: str | None) -> str:
    if fingerprint:
        return fingerprint
    if not certificate:
        raise argparse.ArgumentTypeError("give the certificate (--certificate) or -f FINGERPRINT")
    from dataplane.command.state import certificate_fingerprint

    return certificate_fingerprint(value.read_file(certificate))


def add_certificate_tree(top: Subparsers) -> None:
    certificate = group(top, "certificate", "list, add and remove certificates")
    listing = leaf(
        certificate,
        "list",
        "list certificates",
        lambda a: Request.of(
            **{
                "query_certificates_from_workers"
                if a.query_workers
                else "query_certificates_from_the_state": QueryCertificatesFilters(
                    domain=a.domain, fingerprint=a.fingerprint
                )
            }
        ),
        show="certificates",
    )
    listing.add_argument(
        "-f", "--fingerprint", help="only the certificate with this fingerprint (SHA-256, hex)"
    )
    listing.add_argument("-d", "--domain", help="only the certificates for this domain name")
    listing.add_argument(
        "-w",
        "--workers",
        dest="query_workers",
        action="store_true",
        help="ask the workers instead of main's state",
    )
    add = leaf(
        certificate,
        "add",
        "add a certificate",
        lambda a: Request.of(
            add_certificate=AddCertificate(address=a.address, certificate=_certificate_and_key(a))
        ),
    )
    add.add_argument("--certificate", required=True, help="path to the certificate")
    add.add_argument(
        "--certificate-chain", dest="chain", help="path to the certificate chain (default: none)"
    )
    add.add_argument("--key", required=True, help="path to the key")
    remove = leaf(
        certificate,
        "remove",
        "remove a certificate",
        lambda a: Request.of(
            remove_certificate=RemoveCertificate(
                address=a.address, fingerprint=_fingerprint(a, a.certificate, a.fingerprint)
            )
        ),
    )
    removed = remove.add_mutually_exclusive_group()  # sozu refuses both
    removed.add_argument("--certificate", "--cert", help="path to the certificate")
    removed.add_argument(
        "-f", "--fingerprint", help="fingerprint of the certificate (instead of --certificate)"
    )
    replace = leaf(
        certificate,
        "replace",
        "replace a certificate",
        lambda a: Request.of(
            replace_certificate=ReplaceCertificate(
                address=a.address,
                new_certificate=_certificate_and_key(a, "new_"),
                old_fingerprint=_fingerprint(a, a.old_certificate, a.fingerprint),
            )
        ),
    )
    replace.add_argument("--new-certificate", required=True, help="path to the new certificate")
    replace.add_argument(
        "--new-certificate-chain",
        dest="new_chain",
        help="path to the new certificate chain (default: none)",
    )
    replace.add_argument("--new-key", required=True, help="path to the new key")
    replaced = replace.add_mutually_exclusive_group()  # sozu refuses both
    replaced.add_argument(
        "--old-certificate",
        "--old-cert",
        help="path to the certificate to replace (or -f FINGERPRINT)",
    )
    replaced.add_argument(
        "-f", "--fingerprint", help="fingerprint of the certificate to replace (SHA-256, hex)"
    )
    for parser in (add, remove, replace):
        parser.add_argument(
            "-a", "--address", type=value.address, required=True, help="HTTPS listener address"
        )
    for parser in (add, replace):
        parser.add_argument(
            "--tls-versions",
            type=value.comma_separated(value.tls_version),
            action=value.Listed,
            nargs="*",
            default=[],
            metavar="VERSION",
            help="TLS versions recorded with the certificate: TLS_V1_2, TLS_V1_3 (the "
            "listener's versions decide what is negotiated); space- or comma-separated, or the "
            "option repeated",
        )
        parser.add_argument(
            "--names", type=_names, default=[], help="a,b: names to serve (default: the SAN/CN)"
        )
