"""Parsing the CLI's argument values (addresses, tags, headers, answers...) as sozu does.

Each parser raises `argparse.ArgumentTypeError` with a message naming the bad value, which
argparse prints as a usage error (exit status 2).
"""

from __future__ import annotations

import argparse
import string
from collections.abc import Callable, Sequence
from typing import Any

from dataplane.command.address import SocketAddress, parse_network
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
    """A parser for `a,b`: each comma-separated part, stripped, read by `item` (empty parts
    skipped)."""

    def parse(text: str) -> list[Any]:
        return [item(part.strip()) for part in text.split(",") if part.strip()]

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


def network(text: str) -> str:
    """A `trusted_proxies` entry, checked as main checks it, kept as typed."""
    try:
        parse_network(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return text


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


# RFC 9110 token characters, the only ones a header name may have (sozu checks the same).
_TOKEN = frozenset(string.ascii_letters + string.digits + "!#$%&'*+-.^_`|~")


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
    if not set(name) <= _TOKEN:
        raise argparse.ArgumentTypeError(f"invalid header name {name!r}: not an RFC 9110 token")
    if any((ord(c) < 0x20 and c != "\t") or c == "\x7f" for c in value):
        raise argparse.ArgumentTypeError(
            f"invalid header value {value!r}: control characters are not allowed"
        )
    return Header(position=positions[position.lower()], key=name, val=value)


def answer(text: str) -> tuple[str, str]:
    """`<code>=<body>` or `<code>=file://<path>` (the file is read here)."""
    code, sep, body = text.partition("=")
    if not sep or not body or not (code.isdigit() and len(code) == 3):
        raise argparse.ArgumentTypeError(
            f"invalid answer {text!r}: expected <code>=<body> or <code>=file://<path>"
        )
    if body.startswith("file://"):
        body = read_file(body.removeprefix("file://"))
    return code, body


def read_file(path: str) -> str:
    try:
        with open(path, encoding="utf-8", newline="") as handle:  # keep CRLF as written
            return handle.read()
    except (OSError, UnicodeDecodeError) as error:
        raise argparse.ArgumentTypeError(f"cannot read {path}: {error}") from None


def unsigned(text: str) -> int:
    """A whole number, 0 or more (sozu's u32/u64 options refuse a sign)."""
    if not (text.isascii() and text.isdigit()):
        raise argparse.ArgumentTypeError(f"invalid number {text!r}: expected 0 or more")
    return int(text)


def port(text: str) -> int:
    """A TCP port, 1-65535."""
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= 65_535:
        raise argparse.ArgumentTypeError(f"invalid port {text!r}: expected 1-65535")
    return int(text)


def authorized_hash(text: str) -> str:
    """`username:hex(sha256(password))`, as sozu accepts it."""
    user, sep, digest = text.partition(":")
    user_ok = bool(user) and all(c.isascii() and (c.isalnum() or c in "_-") for c in user)
    digest_ok = len(digest) == 64 and all(c in "0123456789abcdef" for c in digest)
    if not (sep and user_ok and digest_ok):
        raise argparse.ArgumentTypeError(
            f"invalid authorized hash {text!r}: expected username:hex(sha256(password)), "
            "64 lowercase hex digits"
        )
    return text


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
    """sozu's `TLS_V12`, `TLS_V13` (`TLSv1`, `TLS_V11`, `SSL_V3`...), ours `TLS_V1_2`, `tls1.3`."""
    compact = text.strip().upper().replace(".", "").replace("_", "").replace("V", "")
    names = {v.name.replace("_", "").replace("V", ""): v for v in TlsVersion}
    names["TLS1"] = TlsVersion.TLS_V1_0  # sozu spells TLS 1.0 `TLSv1`
    if compact in names:
        return names[compact]
    raise argparse.ArgumentTypeError(
        f"unknown TLS version {text!r} (expected TLS_V12 or TLS_V13; also TLS_V1_2, TLS_V1_3)"
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
    name = text.lower().replace("_", "-")  # sozu takes use_same too
    if name not in schemes:
        raise argparse.ArgumentTypeError(
            f"unknown redirect scheme {text!r} (expected use-same, use-http or use-https)"
        )
    return schemes[name]


def add_hsts_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--hsts-max-age",
        type=unsigned,
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
