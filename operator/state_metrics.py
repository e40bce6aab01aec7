"""Metrics about the state the controller pushed: its hash, its clusters, its certificates.

- `pysozu_ingress_config_hash`: a 53-bit hash (exact in a float) of the requests of the last
  state the dataplane took whole, as ingress-nginx's `config_hash`: replicas that show the same
  value serve the same configuration; a change marks a reload in a graph.
- `pysozu_ingress_cluster_info{cluster,namespace,ingress,service} 1`: one series per cluster
  the controller made in the dataplane. The dataplane's per-cluster metrics carry `cluster`
  only (`pysozu_cluster_*{cluster}`); a PromQL join adds the Kubernetes names:

      sum by (namespace, ingress) (
        rate(pysozu_cluster_http_requests_total{status_class="5xx"}[5m])
        * on (cluster) group_left (namespace, ingress, service)
          max by (cluster, namespace, ingress, service) (pysozu_ingress_cluster_info))

  This is the bounded choice: the info metric has one series per cluster (Service port used by
  an Ingress), whatever the traffic, while labels on the dataplane side would multiply every
  per-cluster family (histograms of 17 buckets, status classes) by them, and the dataplane
  would have to learn Kubernetes names. No path or host label anywhere. A cluster that several
  Ingresses route to is labelled with the oldest (the one the rendering built it for). The
  Ingress's own answer clusters (`:-refused`, `:-redirect`, `:-app-root`) have service "".
  The `max by` collapses the replicas, which all export the same series.
- `pysozu_ingress_certificate_expiry_timestamp_seconds{namespace,secret}`: the expiry of the
  leaf certificate of each TLS Secret an Ingress of our class names (unix time), as
  ingress-nginx's `ssl_expire_time_seconds`; alert on `... - time() < 14 * 86400`.

Each is computed at scrape time from what the controller keeps, the hash and the clusters
once per rendering (cached by identity), so a scrape costs no push and a push no scrape work.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from ingress_operator.model import Ingress, ObjectKey, TlsSecret
from ingress_operator.render import Rendered

ClusterInfo = tuple[str, str, str, str]  # cluster, namespace, ingress, service


def config_hash(rendered: Rendered) -> int:
    """53 bits of a hash of the rendered requests (each request's canonical encoding)."""
    digest = hashlib.blake2b(digest_size=8)
    for key in rendered.keys:
        digest.update(len(key).to_bytes(4, "big"))
        digest.update(key)
    return int.from_bytes(digest.digest(), "big") >> 11


def _service(cluster: str) -> str:
    """`<namespace>/<service>:<port>` -> service; "" for an Ingress's own answer cluster."""
    _, _, rest = cluster.partition("/")
    service, _, port = rest.rpartition(":")
    return "" if port.startswith("-") else service


def cluster_info(rendered: Rendered) -> list[ClusterInfo]:
    rows = []
    for request in rendered.requests:
        if request.verb != "add_cluster":
            continue
        cluster = request.body.cluster_id
        owner = rendered.cluster_owner.get(cluster)
        if owner is not None:
            rows.append((cluster, owner.namespace, owner.name, _service(cluster)))
    return rows


@dataclass(slots=True)
class PushedSummary:
    """The hash and clusters of one rendering, recomputed when another one is pushed."""

    _rendered: Rendered | None = None
    _hash: int = 0
    _clusters: list[ClusterInfo] = field(default_factory=list)

    def _follow(self, rendered: Rendered | None) -> None:
        if rendered is self._rendered:
            return
        self._rendered = rendered
        self._hash = config_hash(rendered) if rendered is not None else 0
        self._clusters = cluster_info(rendered) if rendered is not None else []

    def config_hash(self, rendered: Rendered | None) -> int:
        self._follow(rendered)
        return self._hash

    def clusters(self, rendered: Rendered | None) -> list[ClusterInfo]:
        self._follow(rendered)
        return self._clusters


def certificate_expiries(
    rendered: Rendered | None,
    ingresses: Mapping[ObjectKey, Ingress],
    secrets: Mapping[ObjectKey, TlsSecret],
) -> Iterator[tuple[str, str, float]]:
    """(namespace, secret, expiry) of the usable TLS Secrets the Ingresses served name."""
    if rendered is None:
        return
    seen: set[ObjectKey] = set()
    for key in rendered.served:
        ingress = ingresses.get(key)
        if ingress is None:
            continue
        for tls in ingress.tls:
            name = ObjectKey(key.namespace, tls.secret_name or "")
            secret = secrets.get(name) if tls.secret_name else None
            if secret is not None and secret.not_after and name not in seen:
                seen.add(name)
                yield name.namespace, name.name, secret.not_after
