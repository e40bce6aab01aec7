"""Parsing the CLI's argument values (addresses, tags, headers, answers...) as sozu does.

Each parser raises `argparse.ArgumentTypeError` with a message naming the bad value, which
argparse prints as a usage error (exit status 2).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from typing import Any

from dataplane.command.address import SocketAddress
from dataplane.command.messages import (
    Header,
    HeaderPosition,
    HstsConfig,
    LoadBalancingAlgorithms,
    RedirectPolicy,
    RedirectScheme,
    TlsVersion,
)

DEFAULT_HSTS_MAX_AGE = 31_536_000


def comma_separated(item: Callable[[str], Any]) -> Callable[[str], list[Any]]:
    """A parser for `a,b`: each comma-separated part read by `item` (empty parts skipped)."""

    def parse(text: str) -> list[Any]:
        return [item(part) for part in text.split(",") if part.strip()]

    return parse


class Listed(argparse.Action):
    """A list option given the ways sozu's users give it: space-separated (`--x a b`), comma-
    separated (`--x a,b`, sozu's `--alpn-protocols`) or repeated (`--x a --x b`, sozu's
    `--tls-versions`). Its `type` must return a list (`comma_separated`)."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[Any] | None,
        option_string: str | None = None,
    ) -> None:
        items = list(getattr(namespace, self.dest, None) or [])
        for parts in values or []:
            items.extend(parts)
        setattr(namespace, self.dest, items)


def address(text: str) -> SocketAddress:
    try:
        return SocketAddress.parse(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def tags(text: str) -> dict[str, str]:
    """`key=value, other-key=other-value`."""
    result: dict[str, str] = {}
    for item in text.split(","):
        if not item.strip():
            continue
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise argparse.ArgumentTypeError(f"invalid tag {item.strip()!r}: expected key=value")
        result[key.strip()] = value.strip()
    return result


def header(text: str) -> Header:
    """`<request|response|both>=<name>=<value>` (an empty value deletes the header)."""
    position, sep, rest = text.partition("=")
    name, sep2, value = rest.partition("=")
    positions = {
        "request": HeaderPosition.REQUEST,
        "response": HeaderPosition.RESPONSE,
        "both": HeaderPosition.BOTH,
    }
    if not (sep and sep2) or position.lower() not in positions or not name:
        raise argparse.ArgumentTypeError(
            f"invalid header {text!r}: expected <request|response|both>=<name>=<value>"
        )
    return Header(position=positions[position.lower()], key=name, val=value)


def answer(text: str) -> tuple[str, str]:
    """`<code>=<body>` or `<code>=file://<path>` (the file is read here)."""
    code, sep, body = text.partition("=")
    if not sep or not (code.isdigit() and len(code) == 3):
        raise argparse.ArgumentTypeError(
            f"invalid answer {text!r}: expected <code>=<body> or <code>=file://<path>"
        )
    if body.startswith("file://"):
        body = read_file(body.removeprefix("file://"))
    return code, body


def read_file(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except (OSError, UnicodeDecodeError) as error:
        raise argparse.ArgumentTypeError(f"cannot read {path}: {error}") from None


def load_balancing(text: str) -> LoadBalancingAlgorithms:
    name = text.strip().lower()
    aliases = {"roundrobin": "round_robin", "leastconnections": "least_loaded"}
    name = aliases.get(name, name)
    try:
        return LoadBalancingAlgorithms[name.upper()]
    except KeyError:
        choices = ", ".join(a.name.lower() for a in LoadBalancingAlgorithms)
        raise argparse.ArgumentTypeError(
            f"unknown load balancing policy {text!r} (expected one of {choices})"
        ) from None


def tls_version(text: str) -> TlsVersion:
    """`TLS_V1_2`, `TLS_V12`, `tls1.2`, `TLSv1.3`..."""
    compact = text.strip().upper().replace(".", "").replace("_", "").replace("V", "")
    names = {v.name.replace("_", "").replace("V", ""): v for v in TlsVersion}
    if compact in names:
        return names[compact]
    raise argparse.ArgumentTypeError(
        f"unknown TLS version {text!r} (expected TLS_V1_2 or TLS_V1_3)"
    )


def redirect_policy(text: str) -> RedirectPolicy:
    policies = {
        "forward": RedirectPolicy.FORWARD,
        "permanent": RedirectPolicy.PERMANENT,
        "unauthorized": RedirectPolicy.UNAUTHORIZED,
    }
    if text.lower() not in policies:
        raise argparse.ArgumentTypeError(
            f"unknown redirect policy {text!r} (expected forward, permanent or unauthorized)"
        )
    return policies[text.lower()]


def redirect_scheme(text: str) -> RedirectScheme:
    schemes = {
        "use-same": RedirectScheme.USE_SAME,
        "use-http": RedirectScheme.USE_HTTP,
        "use-https": RedirectScheme.USE_HTTPS,
    }
    if text.lower() not in schemes:
        raise argparse.ArgumentTypeError(
            f"unknown redirect scheme {text!r} (expected use-same, use-http or use-https)"
        )
    return schemes[text.lower()]


def add_hsts_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--hsts-max-age",
        type=int,
        metavar="SECONDS",
        help="HSTS max-age (enables HSTS; default 31536000)",
    )
    parser.add_argument(
        "--hsts-include-subdomains",
        action="store_true",
        help="append includeSubDomains (enables HSTS)",
    )
    parser.add_argument("--hsts-preload", action="store_true", help="append preload (enables HSTS)")
    parser.add_argument(
        "--hsts-disabled",
        action="store_true",
        help="explicitly disable HSTS (suppresses a listener default)",
    )
    parser.add_argument(
        "--hsts-force-replace-backend",
        action="store_true",
        help="replace a backend's Strict-Transport-Security header (enables HSTS)",
    )


def hsts(args: argparse.Namespace) -> HstsConfig | None:
    enabling = (
        args.hsts_max_age is not None
        or args.hsts_include_subdomains
        or args.hsts_preload
        or args.hsts_force_replace_backend
    )
    if args.hsts_disabled:
        if enabling:
            raise argparse.ArgumentTypeError("--hsts-disabled excludes the other --hsts-* flags")
        return HstsConfig(enabled=False)
    if not enabling:
        return None
    return HstsConfig(
        enabled=True,
        max_age=DEFAULT_HSTS_MAX_AGE if args.hsts_max_age is None else args.hsts_max_age,
        include_subdomains=args.hsts_include_subdomains or None,
        preload=args.hsts_preload or None,
        force_replace_backend=args.hsts_force_replace_backend or None,
    )
