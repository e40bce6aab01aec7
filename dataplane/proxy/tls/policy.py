"""The rules of an HTTPS listener that need no socket: which ALPN protocols are offered,
strict SNI binding (421).

ALPN: the listener's `alpn_protocols` in its order (sozu's default: `h2`, then `http/1.1`);
`disable_http11` takes `http/1.1` out. A connection that negotiates `h2` speaks HTTP/2
(mux/h2_session.py); one that negotiates nothing speaks HTTP/1.1.
"""

from __future__ import annotations

import logging

from dataplane.command.messages import HttpsListenerConfig
from dataplane.proxy.tls.store import TlsError, name_matches

log = logging.getLogger("dataplane.worker")

HTTP11 = "http/1.1"
SERVED = ("h2", HTTP11)


def served_alpn(config: HttpsListenerConfig) -> list[str]:
    """The ALPN list advertised (TlsError when nothing pysozu speaks would be left)."""
    wanted = config.alpn_protocols or list(SERVED)
    offered = [name for name in wanted if name in SERVED]
    if config.disable_http11:
        offered = [name for name in offered if name != HTTP11]
    unknown = [name for name in wanted if name not in SERVED]
    if unknown:
        log.warning("listener %s: ALPN %s not served, not offered", config.address, unknown)
    if not offered:
        raise TlsError(f"listener {config.address}: no ALPN protocol pysozu speaks is left")
    return offered


class SniBinding:
    """The host names a request may carry on one TLS connection (strict SNI binding, 421).

    A certificate found by SNI covers its names (RFC 6125 wildcards; the CN only when there is
    no SAN). The default certificate, served for an unknown SNI, covers exactly that SNI.
    """

    __slots__ = ("_allowed", "_exact", "_names")

    def __init__(self, names: tuple[str, ...], exact: str | None) -> None:
        self._names = names
        self._exact = exact
        # The last host allowed, as the request wrote it: a connection's requests name the
        # same host, which is then one comparison (names and exact never change).
        self._allowed: str | None = None

    def allows(self, host: str) -> bool:
        if host == self._allowed:
            return True
        if host.startswith("*"):
            return False  # a wildcard-looking Host is never expanded
        lowered = host.lower()
        if lowered == self._exact or any(name_matches(name, lowered) for name in self._names):
            self._allowed = host
            return True
        return False
