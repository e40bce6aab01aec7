"""`ssl-passthrough`: an Ingress's hosts reached by TLS server name, still encrypted.

`nginx.ingress.kubernetes.io/ssl-passthrough: "true"` (with `--nginx-annotations`) or
`pysozu.io/ssl-passthrough: "true"` makes each rule host of the Ingress a passthrough frontend
on the HTTPS listener (a pysozu extension, docs/tls-passthrough.md): connections whose
ClientHello names the host go, as raw TCP, to the Service of the host's `/` path, whose pods
terminate TLS. As ingress-nginx does (`buildPassthroughBackends`): only the `/` path counts,
other paths of the host are ignored for passthrough (Warning), a host without `/` gets no
passthrough (Warning), and the first (oldest) Ingress naming a host wins. The Ingress's HTTP
routes stay as they are (ingress-nginx still serves the host on port 80, and HTTPS clients
whose ClientHello names another host, or none, are terminated and routed as usual).

Security fails closed: an Ingress whose access restrictions pysozu enforces on HTTP (source
lists, rate limits, basic auth) or cannot enforce (`refused`) gets no passthrough frontend: a
raw TLS stream cannot be checked, and ingress-nginx would serve it to everyone. Its HTTPS
traffic is then terminated by pysozu with the restrictions applied; a Warning says why.
The other HTTP annotations of a passthrough Ingress shape only its plain HTTP routes: a
Normal Event says so.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ingress_operator.annotation_review import NGINX, PREFIX
from ingress_operator.ingress_semantics import ANY_HOST, SemanticError, normalize_host
from ingress_operator.interned import Encoded, encoded
from ingress_operator.model import BackendRef, Ingress, IngressPath

from dataplane.command.address import SocketAddress
from dataplane.command.messages import Request, RequestHttpFrontend

if TYPE_CHECKING:
    from ingress_operator.annotations import Options

PASSTHROUGH_NAMES = frozenset({"ssl-passthrough"})
ROOT = "/"
# Keys that say nothing about HTTP handling: no "applies to HTTP only" notice for them.
_NEUTRAL = frozenset(
    {"ssl-passthrough", "ssl-redirect", "force-ssl-redirect", "backend-protocol", "ingress.class"}
)

Report = Callable[[Ingress, str, str, str], None]  # ingress, type, reason, message


def wanted(annotations: Mapping[str, str], nginx: bool, problems: list[str]) -> bool:
    """Does the Ingress ask for passthrough? (`pysozu.io/` first, then nginx's with `nginx`)"""
    for prefix in (PREFIX, NGINX) if nginx else (PREFIX,):
        value = annotations.get(prefix + "ssl-passthrough")
        if value is None:
            continue
        lowered = value.strip().lower()
        if lowered in ("true", "false"):
            return lowered == "true"
        problems.append(f"annotation {prefix}ssl-passthrough: {value!r} is not true or false")
        return False
    return False


def restrictions(options: Options) -> list[str]:
    """What this Ingress restricts on HTTP that a raw TLS stream would escape."""
    found = []
    if options.refused:
        found += options.refused
    access = options.access
    if access.allowed or access.denied:
        found.append("source ranges")
    if access.rates:
        found.append("rate limits")
    if options.required_auth or options.basic_auth is not None:
        found.append("authentication")
    return found


@dataclass(slots=True)
class PassthroughHosts:
    """The passthrough hosts of a render: host -> (cluster id, owner Ingress)."""

    hosts: dict[str, tuple[str, Ingress]] = field(default_factory=dict)

    def add(
        self,
        ingress: Ingress,
        options: Options,
        nginx: bool,
        cluster_of: Callable[[BackendRef], str],
        report: Report,
    ) -> None:
        problems: list[str] = []
        asked = wanted(ingress.annotations, nginx, problems)
        for message in problems:
            report(ingress, "Warning", "InvalidAnnotation", message)
        if not asked:
            return
        blocked = restrictions(options)
        if blocked:
            message = (
                f"ssl-passthrough: not applied, the Ingress restricts access ({', '.join(blocked)})"
                " and a TLS stream passed through cannot be checked; HTTPS is terminated here"
            )
            report(ingress, "Warning", "PassthroughRefused", message)
            return
        self._notice_http_only(ingress, report)
        for rule in ingress.rules:
            self._add_rule(ingress, rule.host, rule.paths, cluster_of, report)

    def _add_rule(
        self,
        ingress: Ingress,
        raw_host: str | None,
        paths: tuple[IngressPath, ...],
        cluster_of: Callable[[BackendRef], str],
        report: Report,
    ) -> None:
        try:
            host = normalize_host(raw_host)
        except SemanticError:
            return  # reported with the rule
        if host == ANY_HOST:
            message = "ssl-passthrough: a rule without host matches no TLS server name; ignored"
            report(ingress, "Warning", "InvalidAnnotation", message)
            return
        root: BackendRef | None = None
        for entry in paths:
            path, backend = entry.path, entry.backend
            if (path or ROOT) != ROOT or backend is None or root is not None:
                message = f"ssl-passthrough: ignoring path {path!r} of host {host} (only / is)"
                report(ingress, "Warning", "PassthroughPathIgnored", message)
                continue
            root = backend
        if root is None:
            message = f"ssl-passthrough: host {host} has no / path: no passthrough for it"
            report(ingress, "Warning", "InvalidAnnotation", message)
            return
        current = self.hosts.get(host)
        if current is not None:
            message = f"ssl-passthrough: host {host} is passed through by older Ingress "
            report(ingress, "Warning", "Conflict", message + str(current[1].key))
            return
        self.hosts[host] = (cluster_of(root), ingress)

    @staticmethod
    def _notice_http_only(ingress: Ingress, report: Report) -> None:
        others = sorted(
            key
            for key in ingress.annotations
            if key.startswith((NGINX, PREFIX))
            and key.removeprefix(NGINX).removeprefix(PREFIX) not in _NEUTRAL
        )
        if others:
            message = (
                "ssl-passthrough: TLS connections to its hosts are passed through unread, so "
                f"{', '.join(others)} apply to its plain HTTP routes only"
            )
            report(ingress, "Normal", "PassthroughHttpOnly", message)

    def clusters(self) -> set[str]:
        return {cid for cid, _ in self.hosts.values()}

    def frontends(self, address: SocketAddress) -> list[Encoded]:
        """`add_https_frontend` with `passthrough`, one per host, sorted."""
        out = []
        for host, (cid, owner) in sorted(self.hosts.items()):
            front = RequestHttpFrontend(
                cluster_id=cid,
                address=address,
                hostname=host,
                tags={"namespace": owner.key.namespace, "ingress": owner.key.name},
                passthrough=True,
            )
            out.append(encoded(Request.of(add_https_frontend=front)))
        return out
