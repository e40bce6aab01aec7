"""`cluster add` flags for TLS to the cluster's backends (a pysozu extension, `BackendTls`).

Any `--backend-tls-*` flag implies `--backend-tls`. PEM files are read by the CLI and sent in
the command, as `certificate add` does.
"""

from __future__ import annotations

import argparse

from dataplane.cli.args import read_file, unsigned
from dataplane.command.messages import BackendTls


def add_backend_tls_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--backend-tls", action="store_true", help="pysozu extension: speak TLS to the backends"
    )
    parser.add_argument(
        "--backend-tls-server-name", metavar="NAME", help="SNI sent to the backends (default: none)"
    )
    parser.add_argument(
        "--backend-tls-verify",
        action="store_true",
        help="verify the backends' certificates against --backend-tls-ca",
    )
    parser.add_argument(
        "--backend-tls-verify-name",
        metavar="NAME",
        help="name the backends' certificates must hold (default: the SNI name)",
    )
    parser.add_argument(
        "--backend-tls-verify-depth",
        type=unsigned,
        metavar="N",
        help="most intermediate certificates between a backend's and the CA (default: any)",
    )
    parser.add_argument(
        "--backend-tls-ca", type=read_file, metavar="FILE", help="PEM bundle of trusted CAs"
    )
    parser.add_argument(
        "--backend-tls-certificate",
        type=read_file,
        metavar="FILE",
        help="PEM client certificate (and chain) shown to backends that ask for one",
    )
    parser.add_argument(
        "--backend-tls-key", type=read_file, metavar="FILE", help="PEM key of that certificate"
    )


def backend_tls(args: argparse.Namespace) -> BackendTls | None:
    config = BackendTls(
        server_name=args.backend_tls_server_name,
        verify=args.backend_tls_verify,
        verify_name=args.backend_tls_verify_name,
        verify_depth=args.backend_tls_verify_depth,
        ca=args.backend_tls_ca,
        certificate=args.backend_tls_certificate,
        key=args.backend_tls_key,
    )
    if not args.backend_tls and config == BackendTls():
        return None
    return config
