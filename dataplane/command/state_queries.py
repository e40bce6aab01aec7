"""Read-only questions asked of the routing state (the CLI's `list`, `query` verbs).

A mixin of `ConfigState`: it reads the state's tables and never changes them. Results are sorted,
so two processes with the same state answer the same bytes.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from dataplane.command.address import SocketAddress
from dataplane.command.messages import (
    AddBackend,
    CertificateAndKey,
    Cluster,
    FrontendFilters,
    HttpListenerConfig,
    HttpsListenerConfig,
    QueryCertificatesFilters,
    RequestHttpFrontend,
    RequestTcpFrontend,
    RequestUdpFrontend,
    TcpListenerConfig,
    UdpListenerConfig,
)
from dataplane.command.responses import (
    CertificatesByAddress,
    CertificateSummary,
    CertificatesWithFingerprints,
    ClusterInformation,
    ListedFrontends,
    ListenersList,
    ListOfCertificatesByAddress,
)


class StateQueries:
    """The queries; `ConfigState` provides the tables below."""

    http_listeners: dict[SocketAddress, HttpListenerConfig]
    https_listeners: dict[SocketAddress, HttpsListenerConfig]
    tcp_listeners: dict[SocketAddress, TcpListenerConfig]
    udp_listeners: dict[SocketAddress, UdpListenerConfig]
    clusters: dict[str, Cluster]
    http_fronts: dict[str, RequestHttpFrontend]
    https_fronts: dict[str, RequestHttpFrontend]
    tcp_fronts: dict[SocketAddress, RequestTcpFrontend]
    udp_fronts: dict[SocketAddress, RequestUdpFrontend]
    backends: dict[str, list[AddBackend]]
    certificates: dict[SocketAddress, dict[str, CertificateAndKey]]

    def list_frontends(self, filters: FrontendFilters) -> ListedFrontends:
        """Frontends of the asked kinds (all kinds when none is asked), by hostname substring."""
        everything = not (filters.http or filters.https or filters.tcp)
        domain = filters.domain

        def routed(table: dict[str, RequestHttpFrontend]) -> list[RequestHttpFrontend]:
            return [
                front
                for _, front in sorted(table.items())
                if domain is None or domain in front.hostname
            ]

        return ListedFrontends(
            http_frontends=routed(self.http_fronts) if everything or filters.http else [],
            https_frontends=routed(self.https_fronts) if everything or filters.https else [],
            tcp_frontends=[f for _, f in sorted(self.tcp_fronts.items())]
            if (everything or filters.tcp) and domain is None
            else [],
            udp_frontends=[f for _, f in sorted(self.udp_fronts.items())]
            if everything and domain is None
            else [],
        )

    def list_listeners(self) -> ListenersList:
        return ListenersList(
            http_listeners={str(a): v for a, v in sorted(self.http_listeners.items())},
            https_listeners={str(a): v for a, v in sorted(self.https_listeners.items())},
            tcp_listeners={str(a): v for a, v in sorted(self.tcp_listeners.items())},
            udp_listeners={str(a): v for a, v in sorted(self.udp_listeners.items())},
        )

    def cluster_information(self, cluster_id: str) -> ClusterInformation | None:
        return self.cluster_informations([cluster_id]).get(cluster_id)

    def cluster_informations(self, cluster_ids: Iterable[str]) -> dict[str, ClusterInformation]:
        """Several clusters at once: one pass over each frontend table, not one per cluster."""
        wanted = {cluster_id for cluster_id in cluster_ids if cluster_id in self.clusters}
        tables: tuple[dict[Any, Any], ...] = (
            self.http_fronts,
            self.https_fronts,
            self.tcp_fronts,
            self.udp_fronts,
        )
        fronts: dict[str, tuple[list[Any], ...]] = {c: ([], [], [], []) for c in wanted}
        for index, table in enumerate(tables):
            for _, front in sorted(table.items()):
                if front.cluster_id in fronts:
                    fronts[front.cluster_id][index].append(front)
        return {
            cluster_id: ClusterInformation(
                configuration=self.clusters[cluster_id],
                http_frontends=fronts[cluster_id][0],
                https_frontends=fronts[cluster_id][1],
                tcp_frontends=fronts[cluster_id][2],
                udp_frontends=fronts[cluster_id][3],
                backends=list(self.backends.get(cluster_id, [])),
            )
            for cluster_id in sorted(wanted)
        }

    def clusters_by_domain(self, hostname: str, path: str | None) -> list[ClusterInformation]:
        """Clusters with an HTTP(S) frontend on exactly this hostname (and path, if given)."""
        cluster_ids = sorted(
            {
                front.cluster_id
                for table in (self.http_fronts, self.https_fronts)
                for front in table.values()
                if front.cluster_id is not None
                and front.hostname == hostname
                and (path is None or front.path.value == path)
            }
        )
        return list(self.cluster_informations(cluster_ids).values())

    def _matching_certificates(
        self, filters: QueryCertificatesFilters
    ) -> list[tuple[SocketAddress, str, CertificateAndKey]]:
        wanted = filters.fingerprint.strip().lower() if filters.fingerprint else None
        return [
            (address, fingerprint, certificate)
            for address, known in sorted(self.certificates.items())
            for fingerprint, certificate in sorted(known.items())
            if (wanted is None or fingerprint == wanted)
            and (filters.domain is None or filters.domain in certificate.names)
        ]

    def query_certificates(self, filters: QueryCertificatesFilters) -> CertificatesWithFingerprints:
        return CertificatesWithFingerprints(
            certs={fp: cert for _, fp, cert in self._matching_certificates(filters)}
        )

    def certificates_by_address(
        self, filters: QueryCertificatesFilters
    ) -> ListOfCertificatesByAddress:
        by_address: dict[SocketAddress, list[CertificateSummary]] = {}
        for address, fingerprint, certificate in self._matching_certificates(filters):
            by_address.setdefault(address, []).append(
                CertificateSummary(domain=", ".join(certificate.names), fingerprint=fingerprint)
            )
        return ListOfCertificatesByAddress(
            certificates=[
                CertificatesByAddress(address=address, certificate_summaries=summaries)
                for address, summaries in by_address.items()
            ]
        )
