"""A cluster's backend TLS settings (`Cluster.backend_tls`) turned into one client SSLContext.

Built once per cluster configuration (`ClusterRuntime.configure`), never per connection, and
once more by `check_backend_tls` when the command arrives, so that a bad PEM is refused with
a message rather than found by a worker. What Python's ssl cannot express is checked after
the handshake (`BackendTlsContext.accepts`): a verified name other than the SNI sent (nginx's
`proxy_ssl_name` with `proxy_ssl_server_name off`) and the chain's depth.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING

from dataplane.command.lazy_import import lazy_module
from dataplane.command.messages import BackendTls, Cluster
from dataplane.command.state_rules import StateError

if TYPE_CHECKING:
    import ssl
else:  # OpenSSL (4.8 MB of memory) loads on first use: command/lazy_import.py
    ssl = lazy_module("ssl", globals())

MAX_VERIFY_DEPTH = 100


class BackendTlsContext:
    """The SSLContext of a cluster's backend connections, and what is checked after a
    handshake."""

    __slots__ = ("alpn", "context", "depth", "name", "server_name")

    def __init__(self, config: BackendTls, http2: bool) -> None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        self.server_name = config.server_name or None
        self.name: str | None = None  # checked here after the handshake (not by OpenSSL)
        self.depth = config.verify_depth if config.verify else None
        if config.verify:
            if not config.ca:
                raise StateError("backend_tls: verify needs a ca bundle")
            try:
                context.load_verify_locations(cadata=config.ca)
            except (ssl.SSLError, ValueError) as error:
                raise StateError(f"backend_tls: ca is not a PEM bundle ({error})") from None
            wanted = config.verify_name or self.server_name
            context.check_hostname = wanted is not None and wanted == self.server_name
            if wanted is not None and not context.check_hostname:
                self.name = wanted
        else:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        if (config.certificate is None) != (config.key is None):
            raise StateError("backend_tls: a client certificate needs both certificate and key")
        if config.certificate is not None and config.key is not None:
            with (
                memory_file(config.certificate.encode()) as cert,
                memory_file(config.key.encode()) as key,
            ):
                try:
                    context.load_cert_chain(cert, key)
                except (ssl.SSLError, ValueError) as error:
                    raise StateError(
                        f"backend_tls: client certificate or key refused ({error})"
                    ) from None
        self.alpn = "h2" if http2 else "http/1.1"
        context.set_alpn_protocols([self.alpn])
        self.context = context

    def accepts(self, tls: ssl.SSLSocket) -> str | None:
        """After a completed handshake: None, or why the backend is not the one expected."""
        if self.name is not None:
            der = tls.getpeercert(binary_form=True)
            if not der or not names_match(der, self.name):
                return f"certificate does not match {self.name!r}"
        if self.depth is not None:
            chain = tls._sslobj.get_verified_chain()  # type: ignore[attr-defined]  # 3.13: public
            # leaf, intermediates, trust anchor: OpenSSL's (and nginx's) depth counts the middle
            if len(chain) - 2 > self.depth:
                return f"{len(chain) - 2} intermediate certificates, verify_depth is {self.depth}"
        selected = tls.selected_alpn_protocol()
        if selected is not None and selected != self.alpn:
            return f"backend chose ALPN {selected!r}, {self.alpn!r} was offered"
        return None


def names_match(der: bytes, name: str) -> bool:
    """Whether the certificate's subjectAltName covers `name` (a DNS name, `*.` matching one
    leftmost label, or an IP address)."""
    from cryptography import x509  # 11+ MB of memory: loaded by the first check only

    try:
        names = x509.load_der_x509_certificate(der).extensions.get_extension_for_class(
            x509.SubjectAlternativeName
        )
    except (ValueError, x509.ExtensionNotFound):
        return False
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        address = None
    if address is not None:
        return address in names.value.get_values_for_type(x509.IPAddress)
    wanted = name.lower().rstrip(".")
    for pattern in names.value.get_values_for_type(x509.DNSName):
        pattern = pattern.lower().rstrip(".")
        if pattern == wanted:
            return True
        label, _, rest = wanted.partition(".")
        if pattern.startswith("*.") and label and rest == pattern[2:]:
            return True
    return False


def check_backend_tls(cluster: Cluster) -> None:
    """Refuse (StateError) backend TLS settings a worker could not use."""
    config = cluster.backend_tls
    if config is None:
        return
    where = f"cluster {cluster.cluster_id}"
    if cluster.health_check is not None:  # its HTTP probe would fail on every TLS backend
        raise StateError(f"{where}: health checks do not speak TLS: not with backend_tls")
    depth = config.verify_depth
    if depth is not None and not 0 <= depth <= MAX_VERIFY_DEPTH:
        raise StateError(f"{where}: backend_tls verify_depth {depth} is not in 0..100")
    for field in ("server_name", "verify_name"):
        value = getattr(config, field)
        if value is not None and (not value or len(value) > 253 or not value.isascii()):
            raise StateError(f"{where}: backend_tls {field} {value!r} is not a host name")
    try:
        BackendTlsContext(config, bool(cluster.http2))
    except StateError as error:
        raise StateError(f"{where}: {error}") from None


@contextlib.contextmanager
def memory_file(data: bytes) -> Iterator[str]:
    """A path to an in-memory file holding `data`, gone when the block exits (keys never touch
    the disk where memfd exists)."""
    if hasattr(os, "memfd_create"):
        fd = os.memfd_create("pysozu-tls", os.MFD_CLOEXEC)
        path = f"/proc/self/fd/{fd}"
    else:  # not Linux: a private (0600) temporary file, unlinked on exit
        import tempfile

        fd, path = tempfile.mkstemp(prefix="pysozu-tls-")
    try:
        os.write(fd, data)
        yield path
    finally:
        os.close(fd)
        if not path.startswith("/proc/"):
            os.unlink(path)
