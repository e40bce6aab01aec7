"""ingress-nginx's `auth-tls-*` annotations -> the `client_auth` of the Ingress's hosts' HTTPS
frontends (docs/client-certificates.md), with ingress-nginx's semantics and defaults.

Read with `--nginx-annotations` under `nginx.ingress.kubernetes.io/`, and always under
`pysozu.io/` (same names; ours win):

- `auth-tls-secret`: `namespace/name` (a bare name: the Ingress's namespace) of a Secret with
  `ca.crt` (the CAs client certificates must chain to) and optionally `ca.crl`;
- `auth-tls-verify-client`: `on` (default), `optional`, `off` (no client certificate asked:
  nothing to enforce); `optional_no_ca` is refused (Python's ssl cannot accept a certificate
  without verifying it);
- `auth-tls-verify-depth` (default 1), `auth-tls-error-page` (a 302 there instead of the 400),
  `auth-tls-pass-certificate-to-upstream` (default false: `ssl-client-cert`),
  `auth-tls-match-cn` (a regex on the subject DN, else 403).

As in nginx, where the client certificate is a `server` setting, the policy applies to every
HTTPS route of the Ingress's hosts, whichever Ingress made them; the first Ingress (in render
order) that sets it for a host wins, a later different one is reported (`Conflict`).

Security fails closed (the Ingress's routes answer 503, `AnnotationNotEnforced`): a value
that cannot be read, `auth-tls-*` without `auth-tls-secret`, a Secret that is missing, in
another namespace, without `ca.crt`, or whose `ca.crt`/`ca.crl` does not parse.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Protocol

from ingress_operator.access_annotations import Lookup
from ingress_operator.annotation_review import NOT_ENFORCED, Notice, Refusals
from ingress_operator.model import ObjectKey, TlsSecret

from dataplane.command.client_auth_rules import MAX_URL, MAX_VERIFY_DEPTH, client_auth_problem
from dataplane.command.messages import ClientAuth
from dataplane.command.regexes import RegexError, compile_regex

AUTH_TLS_NAMES = frozenset(
    {
        "auth-tls-secret",
        "auth-tls-verify-client",
        "auth-tls-verify-depth",
        "auth-tls-error-page",
        "auth-tls-pass-certificate-to-upstream",
        "auth-tls-match-cn",
    }
)
_SECRET = re.compile(r"^(?:([a-z0-9][a-z0-9-]{0,62})/)?([a-z0-9][a-z0-9.-]{0,252})$")
_URL = re.compile(r"^https?://[\x21-\x7e]+$")


class _Options(Protocol):  # annotations.Options (which imports this module)
    client_tls: ClientTls | None
    refused: list[str]
    notices: list[Notice]


@dataclass(frozen=True, slots=True)
class ClientTls:
    """What the annotations ask for (hashable: part of interned route keys); `ca`/`crl` are
    filled from the Secret at render time."""

    secret: tuple[str | None, str]  # (namespace as written, name)
    secret_key: str  # the annotation that names it, for messages
    verify: str = "on"
    depth: int = 1
    error_page: str | None = None
    pass_certificate: bool = False
    match_cn: str | None = None
    ca: str = ""
    crl: str = ""

    def message(self) -> ClientAuth:
        return ClientAuth(
            ca=self.ca,
            crl=self.crl or None,
            verify=self.verify,
            verify_depth=self.depth,
            error_page=self.error_page,
            pass_certificate=self.pass_certificate,
            match_cn=self.match_cn,
        )


@dataclass(slots=True)
class ClientTlsResult(Refusals):
    ask: ClientTls | None = None


def parse_client_tls(find: Lookup) -> ClientTlsResult:
    """`find(name)`: (key, value) of `pysozu.io/<name>`, else (with --nginx-annotations) of
    `nginx.ingress.kubernetes.io/<name>`."""
    out = ClientTlsResult()
    found = {name: kv for name in sorted(AUTH_TLS_NAMES) if (kv := find(name)) is not None}
    if not found:
        return out
    secret_hit = found.get("auth-tls-secret")
    if secret_hit is None or not secret_hit[1].strip():
        for key, _ in found.values():
            out.refuse(key, "has no effect without auth-tls-secret (remove it, or add that)")
        return out
    secret_key = secret_hit[0]
    match = _SECRET.match(secret_hit[1].strip())
    if match is None:
        out.refuse(secret_key, f"{secret_hit[1]!r} is not namespace/name of a Secret")
        return out
    verify = "on"
    if (hit := found.get("auth-tls-verify-client")) is not None:
        verify = hit[1].strip().lower()
        if verify == "off":
            out.notices.append(
                Notice("Normal", "ClientCertificateOff", f"annotation {hit[0]}: off, none asked")
            )
            return out
        if verify == "optional_no_ca":
            out.refuse(hit[0], "optional_no_ca is not served (certificates are always verified)")
            return out
        if verify not in ("on", "optional"):
            out.refuse(hit[0], f"{hit[1]!r} is not on, optional, optional_no_ca or off")
            return out
    depth = 1
    if (hit := found.get("auth-tls-verify-depth")) is not None:
        text = hit[1].strip()
        if not (text.isdigit() and int(text) <= MAX_VERIFY_DEPTH):
            out.refuse(hit[0], f"{hit[1]!r} is not a depth in 0..{MAX_VERIFY_DEPTH}")
            return out
        depth = int(text)
    page = None
    if (hit := found.get("auth-tls-error-page")) is not None:
        page = hit[1].strip()
        if len(page) > MAX_URL or not _URL.match(page):
            out.refuse(hit[0], f"{hit[1]!r} is not an http(s) URL")
            return out
    pass_certificate = False
    if (hit := found.get("auth-tls-pass-certificate-to-upstream")) is not None:
        text = hit[1].strip().lower()
        if text not in ("true", "false"):
            out.problems.append(f"annotation {hit[0]}: {hit[1]!r} is not true or false; false")
        pass_certificate = text == "true"
    match_cn = None
    if (hit := found.get("auth-tls-match-cn")) is not None:
        match_cn = hit[1].strip()
        try:
            compile_regex(match_cn)
        except RegexError as error:
            out.refuse(hit[0], f"{hit[1]!r} is not a regular expression ({error})")
            return out
    out.ask = ClientTls(
        (match.group(1), match.group(2)),
        secret_key,
        verify,
        depth,
        page,
        pass_certificate,
        match_cn,
    )
    return out


def resolve_client_tls(
    ask: ClientTls, secrets: Mapping[ObjectKey, TlsSecret], namespace: str
) -> tuple[ClientTls | None, Notice | None]:
    """Render time: the policy with its CA (and CRL), or a Warning refusing the Ingress."""
    written, name = ask.secret
    key = ObjectKey(namespace, name)
    secret = secrets.get(key)
    if (written or namespace) != namespace:
        why = "a Secret of another namespace is not read"
    elif secret is None:
        why = f"Secret {key} not found"
    elif not secret.ca:
        why = f"Secret {key} has no ca.crt" + (f" ({secret.problem})" if secret.problem else "")
    else:
        filled = replace(ask, ca=secret.ca, crl=secret.crl)
        problem = client_auth_problem(filled.message())
        if problem is None:
            return filled, None
        why = f"Secret {key}: {problem}"
    message = f"annotation {ask.secret_key}: {why}, so the Ingress's routes answer 503"
    return None, Notice("Warning", NOT_ENFORCED, message)


class ClientTlsHosts:
    """Per host, the client-certificate policy of its HTTPS frontends (render time)."""

    def __init__(self) -> None:
        self.by_host: dict[str, tuple[ClientTls, ObjectKey]] = {}

    def add(
        self,
        options: _Options,
        owner: ObjectKey,
        hosts: list[str],
        secrets: Mapping[ObjectKey, TlsSecret],
        problem: Callable[[str, str], None],
    ) -> None:
        """An Ingress's auth-tls: resolved against its Secret (refusing the Ingress when it
        cannot be used), then claimed for its hosts."""
        ask = options.client_tls
        if ask is None:
            return
        filled, notice = resolve_client_tls(ask, secrets, owner.namespace)
        if notice is None and "" in hosts:
            why = "a rule without host cannot ask for a certificate (it is asked by SNI)"
            message = f"annotation {ask.secret_key}: {why}, so the Ingress's routes answer 503"
            notice = Notice("Warning", NOT_ENFORCED, message)
        if notice is not None:
            options.refused.append(ask.secret_key)
            options.notices.append(notice)
            return
        assert filled is not None  # resolve_client_tls gives one or the other
        if options.refused:
            return  # its routes answer 503 anyway
        for host in hosts:
            known = self.by_host.setdefault(host, (filled, owner))
            if known[0] != filled:
                problem(
                    "Conflict",
                    f"{host}: the client certificates of older Ingress {known[1]} apply "
                    "(auth-tls-* is per host, as nginx's server)",
                )

    def get(self, host: str) -> ClientTls | None:
        found = self.by_host.get(host)
        return found[0] if found is not None else None
