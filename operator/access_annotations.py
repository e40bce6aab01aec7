"""ingress-nginx's access annotations -> a frontend's access fields (docs/access-control.md).

Read with `--nginx-annotations` under `nginx.ingress.kubernetes.io/`, and always under
`pysozu.io/` (same names; ours win). As ingress-nginx reads them (its `ipallowlist`,
`ipdenylist`, `ratelimit` and `proxy` annotation parsers):

- `allowlist-source-range` (alias `whitelist-source-range`, read only when the first is absent
  or empty) -> `allowed_sources`; `denylist-source-range` -> `denied_sources`. Comma-separated
  networks or single addresses; host bits after the prefix are cleared (`10.0.0.1/8` is
  `10.0.0.0/8`), as Go's `net.ParseCIDR` does. One bad entry, or an empty value, makes
  ingress-nginx deny the location (503): here the Ingress fails closed, and the Event names it.
- `limit-rps`, `limit-rpm` -> one rate limit each (`rate` per second, `burst` = the whole
  number times `limit-burst-multiplier`, default 5, as ingress-nginx computes it); `0` or
  absent: no limit. `limit-allowlist` (alias `limit-whitelist`) -> their `exempt_sources`.
  The status is the controller's `--limit-req-status-code` (ingress-nginx's ConfigMap key).
  A bad number or network fails closed; a bad multiplier means 5 (ingress-nginx), reported.
- `limit-connections` -> `connection_limit` (nginx's `limit_conn`, one zone per Ingress as
  ingress-nginx writes it): requests in flight per client address, beyond which 503; `0` or
  absent: no limit; `limit-allowlist` addresses are exempt. A bad number fails closed.
- `proxy-body-size` (nginx sizes: `512k`, `8m`, `1g`, bytes; `0` is no limit) ->
  `max_body_size`; a bad size is reported and the controller's `--proxy-body-size` applies,
  as ingress-nginx falls back to its global `proxy-body-size`.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from ingress_operator.annotation_review import NGINX, NOT_ENFORCED, PREFIX, Notice

from dataplane.command.messages import ConnectionLimit, RateLimit

ACCESS_NAMES = frozenset(
    {
        "allowlist-source-range",
        "whitelist-source-range",
        "denylist-source-range",
        "limit-rps",
        "limit-rpm",
        "limit-connections",
        "limit-burst-multiplier",
        "limit-allowlist",
        "limit-whitelist",
        "proxy-body-size",
    }
)
DEFAULT_BURST_MULTIPLIER = 5  # ingress-nginx's defBurst
_MAX_RATE = 1_000_000_000  # a larger limit is no limit; refused rather than overflowing
_NETWORK = re.compile(r"^[0-9A-Fa-f.:]+(/[0-9]{1,3})?$")
_SIZE = re.compile(r"^([0-9]{1,19})([kKmMgG]?)$")
_SCALE = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}
_MAX_SIZE = 2**63 - 1

Lookup = Callable[[str], tuple[str, str] | None]  # name -> (key, value) when set


@dataclass(frozen=True, slots=True)
class Access:
    """What the access annotations ask for, hashable (it is part of interned route keys)."""

    allowed: tuple[str, ...] = ()
    denied: tuple[str, ...] = ()
    rates: tuple[tuple[float, int], ...] = ()  # (requests per second, burst)
    exempt: tuple[str, ...] = ()
    max_body_size: int | None = None  # None: the controller's default
    status: int = 503  # of the rate limits: the controller's --limit-req-status-code
    connections: int = 0  # limit-connections: requests in flight per client (0: no limit)

    def __bool__(self) -> bool:
        return bool(
            self.allowed or self.denied or self.rates or self.max_body_size or self.connections
        )

    def connection_limit(self, zone: str) -> ConnectionLimit | None:
        """ingress-nginx's `limit_conn` in the Ingress's zone (503: its default status)."""
        if not self.connections:
            return None
        exempt = list(self.exempt)
        return ConnectionLimit(
            max_concurrent_per_client=self.connections, exempt_sources=exempt, zone=zone
        )

    def rate_limits(self, zone: str) -> list[RateLimit]:
        """`zone`: one per Ingress, so its routes count a client once, as ingress-nginx's
        per-Ingress `limit_req_zone` does."""
        exempt, status = list(self.exempt), self.status
        return [
            RateLimit(rate=rate, burst=burst, status=status, exempt_sources=exempt, zone=zone)
            for rate, burst in self.rates
        ]

    def resolved(self, status: int, default_body_size: int) -> Access | None:
        """With the controller's settings; None when it asks for nothing (a plain route)."""
        body = default_body_size if self.max_body_size is None else self.max_body_size
        access = Access(
            self.allowed, self.denied, self.rates, self.exempt, body, status, self.connections
        )
        return access if access else None


@dataclass(slots=True)
class AccessResult:
    access: Access = field(default_factory=Access)
    refused: list[str] = field(default_factory=list)  # keys whose value cannot be enforced
    notices: list[Notice] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def networks(value: str) -> tuple[str, ...]:
    """Comma-separated networks or addresses, normalised; ValueError names a bad entry."""
    out: list[str] = []
    for raw in value.split(","):
        entry = raw.strip()
        if not _NETWORK.match(entry):
            raise ValueError(f"{entry!r} is not an IP address or network")
        try:
            network = ipaddress.ip_network(entry, strict=False)
        except ValueError:
            raise ValueError(f"{entry!r} is not an IP address or network") from None
        if isinstance(network, ipaddress.IPv6Network) and network.prefixlen == 128:
            mapped = network.network_address.ipv4_mapped  # the dataplane unwraps clients too
            if mapped is not None:
                network = ipaddress.IPv4Network(mapped)
        text = str(network)
        if text not in out:
            out.append(text)
    return tuple(out)


def body_size(value: str) -> int:
    """nginx's size syntax (`client_max_body_size`): digits with an optional k, m or g."""
    match = _SIZE.match(value.strip())
    if match is None:
        raise ValueError(f"{value!r} is not a size (bytes, or a number with k, m or g)")
    size = int(match.group(1)) * _SCALE[match.group(2).lower()]
    if size > _MAX_SIZE:
        raise ValueError(f"{value!r} is too large")
    return size


def _whole(value: str) -> int:
    text = value.strip()
    if not text.isdigit() or int(text) > _MAX_RATE:
        raise ValueError(f"{value!r} is not a whole number in 0..{_MAX_RATE}")
    return int(text)


def lookup(annotations: Mapping[str, str], nginx: bool) -> Lookup:
    """`pysozu.io/<name>` first, then (with `nginx`) `nginx.ingress.kubernetes.io/<name>`."""
    get = annotations.get

    def find(name: str) -> tuple[str, str] | None:
        for prefix in (PREFIX, NGINX) if nginx else (PREFIX,):
            value = get(prefix + name)
            if value is not None:
                return prefix + name, value
        return None

    return find


def _first(find: Lookup, name: str, alias: str, problems: list[str]) -> tuple[str, str] | None:
    """ingress-nginx's alias rule: the alias is read only when the name is absent or empty."""
    found, other = find(name), find(alias)
    if found is None or not found[1].strip():
        return other or found
    if other is not None and other[1] != found[1]:
        problems.append(f"annotation {other[0]}: ignored, {found[0]} is set and wins")
    return found


def parse_access(find: Lookup) -> AccessResult:
    result = AccessResult()

    def refuse(key: str, why: str) -> None:
        result.refused.append(key)
        message = f"annotation {key}: {why}, so the Ingress's routes answer 503"
        result.notices.append(Notice("Warning", NOT_ENFORCED, message))

    def nets(found: tuple[str, str] | None) -> tuple[str, ...]:
        if found is None:
            return ()
        key, value = found
        try:
            return networks(value)
        except ValueError as error:
            refuse(key, str(error))
            return ()

    problems = result.problems
    allowed = nets(_first(find, "allowlist-source-range", "whitelist-source-range", problems))
    denied = nets(find("denylist-source-range"))
    exempt = nets(_first(find, "limit-allowlist", "limit-whitelist", problems))
    multiplier = DEFAULT_BURST_MULTIPLIER
    if (found := find("limit-burst-multiplier")) is not None:
        try:
            multiplier = _whole(found[1])
        except ValueError as error:
            result.problems.append(f"annotation {found[0]}: {error}; the default 5 applies")
    rates: list[tuple[float, int]] = []
    for name, seconds in (("limit-rps", 1), ("limit-rpm", 60)):
        if (found := find(name)) is None:
            continue
        try:
            number = _whole(found[1])
        except ValueError as error:
            refuse(found[0], str(error))
            continue
        if number:
            rates.append((number / seconds, number * multiplier))
    connections = 0
    if (found := find("limit-connections")) is not None:
        try:
            connections = min(_whole(found[1]), 2**31 - 1)
        except ValueError as error:
            refuse(found[0], str(error))
    any_rate = any(find(n) for n in ("limit-rps", "limit-rpm"))
    if not rates and not any_rate:
        names: tuple[str, ...] = ("limit-burst-multiplier",)
        if not connections and not find("limit-connections"):
            names += ("limit-allowlist", "limit-whitelist")
        for name in names:
            if (found := find(name)) is not None:
                needs = (
                    "limit-rps or limit-rpm"
                    if name.endswith("multiplier")
                    else "limit-rps, limit-rpm or limit-connections"
                )
                result.problems.append(f"annotation {found[0]}: has no effect without {needs}")
    max_body = None
    if (found := find("proxy-body-size")) is not None:
        try:
            max_body = body_size(found[1])
        except ValueError as error:
            result.problems.append(
                f"annotation {found[0]}: {error}; the controller's default applies"
            )
    exempt = exempt if rates or connections else ()
    result.access = Access(allowed, denied, tuple(rates), exempt, max_body, 503, connections)
    return result
