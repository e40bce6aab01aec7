"""`pysozu-ingress`: run the ingress controller beside a pysozu dataplane."""

from __future__ import annotations

import argparse
import asyncio
import logging
import re
import sys
from pathlib import Path

from ingress_operator.access_annotations import body_size
from ingress_operator.settings import (
    DEFAULT_CONTROLLER_NAME,
    DEFAULT_ELECTION_ID,
    DEFAULT_INGRESS_CLASS,
    RenderSettings,
    Settings,
)

from dataplane.command.address import SocketAddress

_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")


def _address(text: str) -> SocketAddress:
    try:
        return SocketAddress.parse(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _namespaced_name(text: str) -> tuple[str, str]:
    namespace, sep, name = text.partition("/")
    if not sep or not namespace or not name or "/" in name:
        raise argparse.ArgumentTypeError(f"{text!r} is not NAMESPACE/NAME")
    return namespace, name


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number of seconds")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds (0 or more)")
    return value


def _lease_name(text: str) -> str:
    """A Lease name is a DNS subdomain: lowercase alphanumerics, '-' and '.', 253 at most."""
    if not _SUBDOMAIN.fullmatch(text) or len(text) > 253:
        raise argparse.ArgumentTypeError(f"{text!r} is not a valid Lease name")
    return text


def _body_size(text: str) -> int:
    try:
        return body_size(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="pysozu-ingress",
        description="Kubernetes ingress controller for a pysozu dataplane (same pod, shared "
        "command socket). Credentials: in-cluster service account, else KUBECONFIG.",
    )
    p.add_argument("--command-socket", required=True, type=Path, help="the dataplane's socket")
    p.add_argument(
        "--controller-name",
        default=DEFAULT_CONTROLLER_NAME,
        help="IngressClass spec.controller value served (default: %(default)s)",
    )
    p.add_argument(
        "--ingress-class",
        default=DEFAULT_INGRESS_CLASS,
        help="legacy kubernetes.io/ingress.class value served (default: %(default)s)",
    )
    p.add_argument(
        "--ingress-class-name",
        metavar="NAME",
        help="serve Ingresses of the IngressClass NAME (spec.ingressClassName, or the legacy "
        "annotation) without reading IngressClass objects, so that with --namespace the "
        "controller needs no cluster-scoped right at all; the default-class mark is then not "
        "seen (class-less Ingresses need --watch-ingress-without-class)",
    )
    p.add_argument(
        "--watch-ingress-without-class",
        action="store_true",
        help="also serve Ingresses with no class at all",
    )
    p.add_argument(
        "--namespace",
        "--watch-namespace",  # ingress-nginx's name
        dest="namespace",
        action="append",
        default=[],
        metavar="NS",
        help="watch only this namespace (repeatable; default: all); then the controller needs "
        "namespaced rights only, beside reading IngressClasses (none with --ingress-class-name)",
    )
    p.add_argument("--http-address", default="0.0.0.0:8080", type=_address)
    p.add_argument("--https-address", default="0.0.0.0:8443", type=_address)
    p.add_argument(
        "--publish-address", metavar="IP_OR_HOSTNAME", help="address written in Ingress status"
    )
    p.add_argument(
        "--publish-service",
        type=_namespaced_name,
        metavar="NS/NAME",
        help="write this Service's address in Ingress status",
    )
    p.add_argument(
        "--health-address",
        default="0.0.0.0:10254",
        type=_address,
        help="/healthz and /readyz (default: %(default)s)",
    )
    p.add_argument(
        "--nginx-annotations",
        action="store_true",
        help="also read the common nginx.ingress.kubernetes.io annotations",
    )
    p.add_argument(
        "--limit-req-status-code",
        type=int,
        choices=(429, 503),
        default=503,
        help="status of requests over a limit-rps/limit-rpm limit (ingress-nginx's ConfigMap "
        "key; default: %(default)s)",
    )
    p.add_argument(
        "--proxy-body-size",
        type=_body_size,
        default=0,
        metavar="SIZE",
        help="request body limit of routes without a proxy-body-size annotation, in nginx "
        "syntax (1m, 512k; ingress-nginx's default is 1m); 0: no limit (default: 0)",
    )
    p.add_argument(
        "--default-ssl-certificate",
        type=_namespaced_name,
        metavar="NAMESPACE/NAME",
        help="a TLS Secret served to every host no tls entry secures (their HTTP is not "
        "redirected), and to tls entries that name hosts but no secretName (those are "
        "secured), as ingress-nginx's flag; in a watched namespace",
    )
    p.add_argument(
        "--debounce",
        type=float,
        default=0.2,
        metavar="SECONDS",
        help="wait for this much quiet before pushing (default: %(default)s)",
    )
    p.add_argument(
        "--election-id",
        default=DEFAULT_ELECTION_ID,
        type=_lease_name,
        metavar="NAME",
        help="the Lease the replicas elect their status writer with; one per release "
        "(default: %(default)s)",
    )
    p.add_argument(
        "--api-timeout",
        type=_positive,
        default=10.0,
        metavar="SECONDS",
        help="bound of one Kubernetes API call, retries included (default: %(default)s)",
    )
    p.add_argument(
        "--sweep-period",
        type=_seconds,
        default=600.0,
        metavar="SECONDS",
        help="list every watched resource this often and drop what was deleted unseen; "
        "re-listed resources (a watch restarted after 410 Gone) are swept at once; "
        "0: only those (default: %(default)s)",
    )
    p.add_argument(
        "--webhook-address",
        type=_address,
        metavar="HOST:PORT",
        help="serve the validating admission webhook (POST /validate-ingress) over HTTPS "
        "here (default: off)",
    )
    p.add_argument(
        "--webhook-cert-file",
        type=Path,
        default=Path("/etc/pysozu-webhook/tls.crt"),
        help="the webhook's certificate (PEM, chain after it; reloaded when it changes) "
        "(default: %(default)s)",
    )
    p.add_argument(
        "--webhook-key-file",
        type=Path,
        default=Path("/etc/pysozu-webhook/tls.key"),
        help="the webhook's private key (PEM) (default: %(default)s)",
    )
    p.add_argument(
        "--webhook-require-tls-secrets",
        action="store_true",
        help="the webhook refuses an Ingress whose tls[].secretName is not found or holds no "
        "usable key pair (default: a warning: cert-manager creates Secrets after the Ingress)",
    )
    p.add_argument("-v", "--verbose", action="store_true")
    return p  # fmt: skip


def settings_from(args: argparse.Namespace) -> Settings:
    return Settings(
        command_socket=args.command_socket,
        render=RenderSettings(
            http_address=args.http_address,
            https_address=args.https_address,
            controller_name=args.controller_name,
            ingress_class=args.ingress_class,
            watch_ingress_without_class=args.watch_ingress_without_class,
            nginx_annotations=args.nginx_annotations,
            limit_req_status=args.limit_req_status_code,
            proxy_body_size=args.proxy_body_size,
            default_certificate=args.default_ssl_certificate,
        ),
        namespaces=tuple(args.namespace),
        ingress_class_name=args.ingress_class_name,
        publish_address=args.publish_address,
        publish_service=args.publish_service,
        health_address=args.health_address,
        debounce_seconds=max(0.0, args.debounce),
        lease_name=args.election_id,
        api_timeout=args.api_timeout,
        sweep_period=args.sweep_period,
        webhook_address=args.webhook_address,
        webhook_cert=args.webhook_cert_file,
        webhook_key=args.webhook_key_file,
        webhook_require_tls_secrets=args.webhook_require_tls_secrets,
    )


async def run(settings: Settings) -> None:
    # Imported here so that `--help` and flag errors do not pay for kopf and kubernetes.
    import kopf
    from ingress_operator.controller import Controller
    from ingress_operator.indices import build_registry, watched
    from ingress_operator.kube import KubeApi

    controller = Controller(settings, KubeApi.from_environment(settings.api_timeout))
    await kopf.operator(
        registry=build_registry(watched(settings.ingress_class_name)),
        memo=kopf.Memo(controller=controller),
        standalone=True,
        clusterwide=not settings.namespaces,
        namespaces=settings.namespaces,
    )


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not args.verbose:
        logging.getLogger("kopf").setLevel(logging.WARNING)
    try:
        asyncio.run(run(settings_from(args)))
    except KeyboardInterrupt:
        return 0
    except Exception as error:  # a clear line, not a traceback, for configuration errors
        if args.verbose:
            raise
        print(f"pysozu-ingress: {type(error).__name__}: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
