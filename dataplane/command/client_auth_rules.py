"""Value checks for a frontend's client certificates (a pysozu extension,
docs/client-certificates.md; ingress-nginx's `auth-tls-*`).

`client_auth_problem` says what is wrong with a `ClientAuth`, or None: the state checks
(`state_rules.check_http_frontend`) turn it into a StateError, the TOML reader
(`read_client_auth`, a frontend's `client_auth` table, PEM files by path) and the CLI report it
before anything is sent. The CA bundle and the CRL are parsed here with `cryptography`, so that
a worker never meets one OpenSSL cannot load.
"""

from __future__ import annotations

import re

from dataplane.command.config_reader import Table
from dataplane.command.messages import ClientAuth
from dataplane.command.regexes import RegexError, compile_regex

VERIFY_MODES = ("on", "optional", "optional_no_ca")
MAX_VERIFY_DEPTH = 100
MAX_URL = 2048
_URL_TEXT = re.compile(r"[\x21-\x7e]+")  # visible ASCII, no space


def client_auth_problem(auth: ClientAuth, hostname: str | None = None) -> str | None:
    """What makes `auth` unusable, or None (`hostname`: the frontend's, when known)."""
    from cryptography import x509  # 11 MB: only where a client_auth is checked

    if auth.verify not in VERIFY_MODES:
        return f"client_auth verify {auth.verify!r} is not one of {', '.join(VERIFY_MODES)}"
    if not 0 <= auth.verify_depth <= MAX_VERIFY_DEPTH:
        return f"client_auth verify_depth {auth.verify_depth} is not in 0..{MAX_VERIFY_DEPTH}"
    try:
        if not x509.load_pem_x509_certificates(auth.ca.encode()):
            raise ValueError("no certificate")
    except (ValueError, UnicodeEncodeError) as error:
        return f"client_auth ca is not a PEM certificate bundle ({error})"
    if auth.crl is not None:
        try:
            x509.load_pem_x509_crl(auth.crl.encode())
        except (ValueError, UnicodeEncodeError) as error:
            return f"client_auth crl is not a PEM CRL ({error})"
    page = auth.error_page
    if page is not None and (len(page) > MAX_URL or not _URL_TEXT.fullmatch(page)):
        return f"client_auth error_page {page!r} must be 1..{MAX_URL} visible ASCII characters"
    if auth.match_cn is not None:
        try:
            compile_regex(auth.match_cn)
        except RegexError as error:
            return f"client_auth match_cn {auth.match_cn!r} does not compile: {error}"
    if hostname is not None and ("/" in hostname or "*" in hostname.removeprefix("*.")):
        return "client_auth needs an exact or *.domain hostname (the handshake picks it by SNI)"
    return None


def read_client_auth(frontend: Table) -> ClientAuth | None:
    """A frontend's `client_auth = { ca = "ca.pem", crl = "ca.crl", verify = "on", ... }`."""
    table = frontend.table("client_auth")
    if table is None:
        return None
    paths = {key: table.text(key, required=key == "ca") for key in ("ca", "crl")}
    texts = {
        key: table.report.read_file(table.name, key, path) if path else None
        for key, path in paths.items()
    }
    auth = ClientAuth(
        ca=texts["ca"] or "",
        crl=texts["crl"],
        verify=table.text("verify", "on"),
        verify_depth=table.integer("verify_depth", 1, low=0, high=MAX_VERIFY_DEPTH),
        error_page=table.text("error_page"),
        pass_certificate=bool(table.flag("pass_certificate", False)),
        match_cn=table.text("match_cn"),
    )
    table.finish(strict=True)
    if texts["ca"] is None:
        return None  # reported by the read
    problem = client_auth_problem(auth)
    if problem is not None:
        table.error(None, problem)
        return None
    return auth
