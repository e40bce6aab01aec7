"""A throwaway self-signed certificate for the HTTPS scenarios (made with the openssl CLI)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from harness.configs import TARGET_HOST, TlsFiles
from harness.errors import ToolMissing


def self_signed(openssl: str, directory: Path) -> TlsFiles:
    """An ECDSA P-256 certificate for `localhost`, valid for one day."""
    certificate, key = directory / "cert.pem", directory / "key.pem"
    argv = [
        openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
        "-nodes", "-days", "1", "-subj", f"/CN={TARGET_HOST}",
        "-addext", f"subjectAltName=DNS:{TARGET_HOST}",
        "-keyout", str(key), "-out", str(certificate),
    ]  # fmt: skip
    result = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        raise ToolMissing(f"openssl could not make a certificate: {result.stderr.strip()}")
    combined = directory / "cert-and-key.pem"
    combined.write_text(certificate.read_text() + key.read_text())
    return TlsFiles(certificate=certificate, key=key, combined_pem=combined)
