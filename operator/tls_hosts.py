"""Which certificate secures which host: the Ingresses' `tls` entries, settled by age.

An entry with `hosts` claims those hosts for its Secret's certificate (the oldest Ingress's
claim on a host wins; a later one gets a `Conflict`). An entry without `hosts` is what
ingress-nginx does with it (`extractTLSSecretName`): it secures the Ingress's own rule hosts
that its certificate covers (its SAN DNS names, else its CN; a `*.` name covers one label). One
that covers none of them is reported and not loaded: ingress-nginx uses it for nothing either.

A secured host's routes redirect plain HTTP to HTTPS by default (render.py). Every route is
served on HTTPS whether or not its host is secured: a client that asks for a host without a
certificate gets the listener's default one, as ingress-nginx serves its default certificate.

With `--default-ssl-certificate` (ingress-nginx's flag), that Secret's certificate is the
default: `finish` names every rule host no entry secures with it (they stay unsecured: no
redirect), and an entry that names hosts but no `secretName` secures them with it, as
ingress-nginx does. Without the flag such an entry is reported, not ignored.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from ingress_operator.ingress_semantics import SemanticError, normalize_host
from ingress_operator.model import Ingress, ObjectKey, TlsSecret


def covers(name: str, host: str) -> bool:
    """Does a certificate name cover a rule host (RFC 6125: `*.` stands for one label)?"""
    name = name.lower().rstrip(".")
    if name == host:
        return True
    if not name.startswith("*.") or host.startswith("*."):
        return False
    label, dot, parent = host.partition(".")
    return bool(dot and label) and parent == name[2:]


@dataclass(slots=True)
class TlsHosts:
    secrets: dict[ObjectKey, TlsSecret]
    report: Callable[[Ingress, str, str], None]  # (ingress, reason, message)
    hosts: dict[str, tuple[str, Ingress]] = field(default_factory=dict)  # host -> fingerprint
    certificates: dict[str, tuple[Ingress, TlsSecret, set[str]]] = field(default_factory=dict)
    default: TlsSecret | None = None  # --default-ssl-certificate, when found and sound
    default_name: str | None = None  # "ns/name" of the flag, for messages
    rule_hosts: dict[str, Ingress] = field(default_factory=dict)  # for `finish`

    def add(self, ingress: Ingress, rule_hosts: Iterable[str]) -> None:
        """Register the Ingress's certificates and claim the hosts they secure."""
        rule_hosts = list(rule_hosts)
        for host in rule_hosts:
            self.rule_hosts.setdefault(host, ingress)
        for entry in ingress.tls:
            if not entry.secret_name:
                if self.default is not None and entry.hosts:
                    self._claim(ingress, self.default, entry.hosts)
                elif entry.hosts:
                    why = (
                        f"--default-ssl-certificate {self.default_name} is not a usable TLS Secret"
                        if self.default_name
                        else "no --default-ssl-certificate is set"
                    )
                    message = f"a tls entry without secretName for {', '.join(entry.hosts)}: {why}"
                    self.report(ingress, "InvalidTLS", message)
                continue
            secret = self.secrets.get(ObjectKey(ingress.key.namespace, entry.secret_name))
            if secret is None or secret.problem:
                found = secret.problem if secret else None
                message = found or (
                    f"TLS secret {ingress.key.namespace}/{entry.secret_name} not found (or it "
                    "has neither tls.crt nor tls.key)"
                )
                self.report(ingress, "InvalidTLS", message)
                continue
            hosts: Iterable[str] = entry.hosts
            if not entry.hosts:
                hosts = sorted(h for h in rule_hosts if any(covers(n, h) for n in secret.names))
                if not hosts:
                    names = ", ".join(secret.names) or "none"
                    message = (
                        f"TLS secret {secret.key}: a tls entry without hosts secures the rule "
                        f"hosts its certificate covers, and it covers none (its names: {names}); "
                        "not used"
                    )
                    self.report(ingress, "InvalidTLS", message)
                    continue
            self._claim(ingress, secret, hosts)

    def _claim(self, ingress: Ingress, secret: TlsSecret, hosts: Iterable[str]) -> None:
        claimed = set()
        for raw in hosts:
            try:
                host = normalize_host(raw)
            except SemanticError as error:
                self.report(ingress, "InvalidHost", str(error))
                continue
            holder = self.hosts.setdefault(host, (secret.fingerprint, ingress))
            if holder[0] != secret.fingerprint:
                message = f"TLS host {host}: older Ingress {holder[1].key} sets its certificate"
                self.report(ingress, "Conflict", message)
                continue
            claimed.add(host)
        # Hosts all lost: serve nothing (an unnamed certificate would compete with the
        # winner's for the same names).
        if claimed:
            entry_names: tuple[Ingress, TlsSecret, set[str]] = (ingress, secret, set())
            self.certificates.setdefault(secret.fingerprint, entry_names)[2].update(claimed)

    def finish(self) -> None:
        """The default certificate names every rule host no entry secures (see module doc)."""
        if self.default is None:
            return
        names = {h for h in self.rule_hosts if h != "*" and not self.secured(h)}
        if names:
            owner = next(iter(self.rule_hosts.values()))
            entry = self.certificates.setdefault(
                self.default.fingerprint, (owner, self.default, set())
            )
            entry[2].update(names)

    def alias(self, host: str, alias: str) -> None:
        """A server alias (server-alias) gets its host's certificate when that covers it, as
        ingress-nginx gives it (else the default certificate)."""
        if host in self.rule_hosts:
            self.rule_hosts.setdefault(alias, self.rule_hosts[host])
        holder = self.hosts.get(host) or self.hosts.get("*." + host.partition(".")[2])
        if holder is None or alias in self.hosts:
            return
        certificate = self.certificates.get(holder[0])
        if certificate is not None and any(covers(n, alias) for n in certificate[1].names):
            self.hosts[alias] = holder
            certificate[2].add(alias)

    def secured(self, host: str) -> bool:
        """A host with a certificate (its own, or its single-label wildcard's)."""
        if host in self.hosts:
            return True
        _, dot, parent = host.partition(".")
        return bool(dot) and not host.startswith("*.") and f"*.{parent}" in self.hosts
