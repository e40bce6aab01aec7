"""ingress-nginx's `service-upstream` and `default-backend`: where a cluster's backends come from.

Read with `--nginx-annotations` under `nginx.ingress.kubernetes.io/`, and always under
`pysozu.io/` (same names; ours win):

- `service-upstream: "true"`: one backend, the Service's ClusterIP and port, instead of its
  endpoints (kube-proxy balances; sticky sessions and per-pod weights then have nothing to
  pick from). A headless Service (no ClusterIP) is reported and its endpoints are used.
- `upstream-hash-by: <nginx variables>`: the cluster's `hash_key` with a MAGLEV (consistent)
  balancer, as nginx's `hash <key> consistent` (it overrides `load-balance`). Variables:
  `$request_uri`, `$uri`, `$host`, `$scheme`, `$remote_addr`, `$binary_remote_addr`,
  `$http_<header>`, `$cookie_<name>`, `$arg_<name>` (command/hash_keys.py); another one is
  reported and the key is not set. `upstream-hash-by-subset` (and `-subset-size`) is reported:
  served as plain consistent hashing.
- `default-backend: <service>`: a Service of the Ingress's namespace (its first port) whose
  endpoints serve the Ingress's routes while their own Service has no endpoint in rotation,
  as ingress-nginx's upstream does; with `custom-http-errors` it also serves the error pages
  (custom_errors_annotations.py).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ingress_operator.access_annotations import Lookup

from dataplane.command.hash_keys import parse_hash_key

UPSTREAM_NAMES = frozenset(
    {
        "service-upstream",
        "default-backend",
        "upstream-hash-by",
        "upstream-hash-by-subset",
        "upstream-hash-by-subset-size",
    }
)
_SERVICE_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")  # RFC 1035 label


@dataclass(slots=True)
class Upstream:
    service_upstream: bool = False
    default_backend: str | None = None  # a Service name of the Ingress's namespace
    hash_key: str | None = None  # upstream-hash-by
    problems: list[str] = field(default_factory=list)


def parse_upstream(find: Lookup) -> Upstream:
    result = Upstream()
    if (hit := find("service-upstream")) is not None:
        value = hit[1].strip().lower()
        if value in ("true", "false"):
            result.service_upstream = value == "true"
        else:
            result.problems.append(f"annotation {hit[0]}: {hit[1]!r} is not true or false")
    if (hit := find("default-backend")) is not None:
        name = hit[1].strip()
        if _SERVICE_NAME.match(name):
            result.default_backend = name
        else:
            result.problems.append(
                f"annotation {hit[0]}: {hit[1]!r} is not a Service name of the Ingress's namespace"
            )
    if (hit := find("upstream-hash-by")) is not None:
        try:
            parse_hash_key(hit[1].strip())
        except ValueError as error:
            result.problems.append(f"annotation {hit[0]}: {error}; not hashed")
        else:
            result.hash_key = hit[1].strip()
    for name in ("upstream-hash-by-subset", "upstream-hash-by-subset-size"):
        if (hit := find(name)) is not None and hit[1].strip().lower() not in ("", "false"):
            result.problems.append(
                f"annotation {hit[0]}: no subsets: served as plain consistent hashing"
            )
    return result
