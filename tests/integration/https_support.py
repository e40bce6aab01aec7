"""Helpers for the HTTPS integration tests: certificates made by trustme, real TLS clients.

`Pki` issues certificates from a throw-away CA into a temporary directory (nothing is ever
committed); `https_config` writes a TOML config with one HTTPS listener; `TlsClient` opens
real TLS connections (Python's ssl) with a chosen SNI and speaks HTTP/1.1 over them.
"""

from __future__ import annotations

import hashlib
import http.client
import socket
import ssl
from pathlib import Path

import trustme


class Pki:
    def __init__(self, directory: Path) -> None:
        self.ca = trustme.CA()
        self.directory = directory
        self.count = 0

    def issue(self, *names: str, **options: object) -> dict[str, str]:
        """Files for a certificate covering `names`: {"certificate", "key", "fingerprint"}."""
        leaf = self.ca.issue_cert(*names, **options)  # type: ignore[arg-type]
        self.count += 1
        cert = self.directory / f"cert-{self.count}.pem"
        key = self.directory / f"key-{self.count}.pem"
        cert.write_bytes(leaf.cert_chain_pems[0].bytes())
        key.write_bytes(leaf.private_key_pem.bytes())
        der = ssl.PEM_cert_to_DER_cert(leaf.cert_chain_pems[0].bytes().decode())
        return {
            "certificate": str(cert),
            "key": str(key),
            "fingerprint": hashlib.sha256(der).hexdigest(),
        }

    def client_context(self, **options: object) -> ssl.SSLContext:
        context = ssl.create_default_context()
        self.ca.configure_trust(context)
        for name, value in options.items():
            setattr(context, name, value)
        return context


def insecure_context() -> ssl.SSLContext:
    """A client that accepts any certificate (to see which one is served)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def https_config(
    port: int,
    clusters: dict[str, tuple[str, int, dict[str, str] | None]],
    listener: str = "",
    cluster_extra: str = "",
) -> str:
    """One HTTPS listener; per cluster id (hostname, backend port, certificate files)."""
    lines = ["[[listeners]]", 'protocol = "https"', f'address = "127.0.0.1:{port}"', listener, ""]
    for cluster_id, (hostname, backend, cert) in clusters.items():
        front = f'address = "127.0.0.1:{port}", hostname = "{hostname}"'
        if cert is not None:
            front += f', certificate = "{cert["certificate"]}", key = "{cert["key"]}"'
        lines += [
            f"[clusters.{cluster_id}]",
            'protocol = "http"',
            cluster_extra,
            f"frontends = [{{ {front} }}]",
            f'backends = [{{ address = "127.0.0.1:{backend}", backend_id = "{cluster_id}-1" }}]',
            "",
        ]
    return "\n".join(lines)


def served_fingerprint(sock: ssl.SSLSocket) -> str:
    der = sock.getpeercert(binary_form=True)
    assert der is not None
    return hashlib.sha256(der).hexdigest()


class TlsClient:
    """One TLS connection to 127.0.0.1:port with `sni`; HTTP/1.1 requests over it."""

    def __init__(
        self, port: int, sni: str | None, context: ssl.SSLContext, timeout: float = 5.0
    ) -> None:
        raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock = context.wrap_socket(raw, server_hostname=sni)

    def get(
        self, host: str, path: str = "/", headers: dict[str, str] | None = None
    ) -> http.client.HTTPResponse:
        lines = [f"GET {path} HTTP/1.1", f"Host: {host}"]
        lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        response = http.client.HTTPResponse(self.sock)  # type: ignore[arg-type]
        response.begin()
        response.body = response.read()  # type: ignore[attr-defined]
        return response

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> TlsClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
