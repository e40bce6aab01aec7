"""The controller's settings, from `pysozu-ingress` flags (see cli.py)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from dataplane.command.address import SocketAddress

DEFAULT_CONTROLLER_NAME = "pysozu.io/ingress-controller"
DEFAULT_INGRESS_CLASS = "pysozu"
DEFAULT_HTTP_ADDRESS = SocketAddress.parse("0.0.0.0:8080")
DEFAULT_HTTPS_ADDRESS = SocketAddress.parse("0.0.0.0:8443")
DEFAULT_HEALTH_ADDRESS = SocketAddress.parse("0.0.0.0:10254")
DEFAULT_ELECTION_ID = "pysozu-ingress-leader"


@dataclass(frozen=True, slots=True)
class RenderSettings:
    """What the pure rendering needs: which Ingresses are ours and where we listen."""

    http_address: SocketAddress = DEFAULT_HTTP_ADDRESS
    https_address: SocketAddress = DEFAULT_HTTPS_ADDRESS
    controller_name: str = DEFAULT_CONTROLLER_NAME
    ingress_class: str = DEFAULT_INGRESS_CLASS
    watch_ingress_without_class: bool = False
    nginx_annotations: bool = False
    limit_req_status: int = 503  # ingress-nginx's limit-req-status-code (429 or 503 here)
    proxy_body_size: int = 0  # bytes, for routes without proxy-body-size; 0: no limit
    default_certificate: tuple[str, str] | None = None  # --default-ssl-certificate ns/name


@dataclass(frozen=True, slots=True)
class Settings:
    command_socket: Path
    render: RenderSettings = RenderSettings()
    namespaces: tuple[str, ...] = ()  # empty: cluster-wide
    # --ingress-class-name: this IngressClass is ours, no IngressClass is ever read.
    ingress_class_name: str | None = None
    publish_address: str | None = None
    publish_service: tuple[str, str] | None = None  # (namespace, name)
    health_address: SocketAddress = DEFAULT_HEALTH_ADDRESS
    debounce_seconds: float = 0.2
    lease_name: str = DEFAULT_ELECTION_ID
    api_timeout: float = 10.0  # seconds for one Kubernetes API call
    sweep_period: float = 600.0  # seconds between sweeps of every resource (0: after re-lists)
    lease_namespace: str | None = None  # None: the pod's namespace
    identity: str = field(default="")
    # The validating admission webhook (webhook.py): HTTPS on this address, None: off.
    webhook_address: SocketAddress | None = None
    webhook_cert: Path = Path("/etc/pysozu-webhook/tls.crt")
    webhook_key: Path = Path("/etc/pysozu-webhook/tls.key")
    webhook_require_tls_secrets: bool = False  # a missing TLS Secret: refused, not a warning
