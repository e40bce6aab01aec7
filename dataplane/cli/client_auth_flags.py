"""`frontend https add` flags for client certificates (a pysozu extension, `ClientAuth`,
docs/client-certificates.md).

`--client-ca FILE` turns it on; each other `--client-*` flag needs it. PEM files are read by
the CLI and sent in the command, as `certificate add` does.
"""

from __future__ import annotations

import argparse

from dataplane.cli.args import read_file, unsigned
from dataplane.command.client_auth_rules import VERIFY_MODES, client_auth_problem
from dataplane.command.messages import ClientAuth

_OTHERS = ("crl", "verify", "verify_depth", "error_page", "match_cn")


def add_client_auth_flags(add: argparse.ArgumentParser) -> None:
    group = add.add_argument_group("client certificates (pysozu extension)")
    group.add_argument(
        "--client-ca", type=read_file, metavar="FILE", help="ask for client certificates: PEM CAs"
    )
    group.add_argument("--client-crl", type=read_file, metavar="FILE", help="PEM CRL of that CA")
    group.add_argument(
        "--client-verify", choices=VERIFY_MODES, help="on (default: required) or optional"
    )
    group.add_argument(
        "--client-verify-depth", type=unsigned, metavar="N", help="most intermediates (default 1)"
    )
    group.add_argument("--client-error-page", metavar="URL", help="302 there instead of the 400")
    group.add_argument(
        "--client-pass-certificate",
        action="store_true",
        help="send the certificate upstream (ssl-client-cert header, URL-encoded PEM)",
    )
    group.add_argument("--client-match-cn", metavar="REGEX", help="the subject DN must match")


def client_auth_from(a: argparse.Namespace) -> ClientAuth | None:
    """The settings the flags ask for (None without --client-ca); ArgumentTypeError if bad."""
    ca = getattr(a, "client_ca", None)
    given = [name for name in _OTHERS if getattr(a, f"client_{name}", None) is not None]
    if getattr(a, "client_pass_certificate", False):
        given.append("pass_certificate")
    if ca is None:
        if given:
            raise argparse.ArgumentTypeError("the --client-* flags need --client-ca")
        return None
    auth = ClientAuth(ca=ca, crl=a.client_crl, pass_certificate=a.client_pass_certificate)
    auth.verify = a.client_verify or "on"
    auth.verify_depth = 1 if a.client_verify_depth is None else a.client_verify_depth
    auth.error_page = a.client_error_page
    auth.match_cn = a.client_match_cn
    problem = client_auth_problem(auth)
    if problem is not None:
        raise argparse.ArgumentTypeError(problem)
    return auth
