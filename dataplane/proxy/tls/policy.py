"""The rules of an HTTPS listener that need no socket: which ALPN protocols are offered,
strict SNI binding (421).

ALPN: only `http/1.1` is advertised until the HTTP/2 engine exists; `h2` in the configuration
is dropped with a warning, and a listener that would be left with `h2` only is refused.
"""

from __future__ import annotations

import logging

from dataplane.command.messages import HttpsListenerConfig
from dataplane.proxy.tls.store import TlsError, name_matches

log = logging.getLogger("dataplane.worker")

HTTP11 = "http/1.1"


def served_alpn(config: HttpsListenerConfig) -> list[str]:
    """The ALPN list actually advertised: `http/1.1` only (TlsError if that is excluded)."""
    wanted = config.alpn_protocols or ["h2", HTTP11]
    if config.disable_http11 or HTTP11 not in wanted:
        raise TlsError(
            f"listener {config.address}: only h2 would be offered, and HTTP/2 is not served yet"
        )
    if "h2" in config.alpn_protocols:
        log.warning("listener %s: h2 is not served yet; ALPN offers http/1.1", config.address)
    return [HTTP11]


class SniBinding:
    """The host names a request may carry on one TLS connection (strict SNI binding, 421).

    A certificate found by SNI covers its names (RFC 6125 wildcards; the CN only when there is
    no SAN). The default certificate, served for an unknown SNI, covers exactly that SNI.
    """

    __slots__ = ("_exact", "_names")

    def __init__(self, names: tuple[str, ...], exact: str | None) -> None:
        self._names = names
        self._exact = exact

    def allows(self, host: str) -> bool:
        if host.startswith("*"):
            return False  # a wildcard-looking Host is never expanded
        host = host.lower()
        if host == self._exact:
            return True
        return any(name_matches(name, host) for name in self._names)
