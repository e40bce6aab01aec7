"""Never silent: every key and flag of sozu 2.1 (tables in `sozu_surface.py`) works, with a
behaviour test, or pysozu says it does not: a warning naming it (config check and start), a
usage error or a FAILURE naming it. In-process: the config loader and the CLI parser, no proxy.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import io
import json
import logging
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import sozu_surface as surface
from sozu_surface import Proof, Refused, Tested, Unserved, Warned

from dataplane.cli.tree import build_parser
from dataplane.cli.unserved import unserved_flags
from dataplane.command.config import parse_config
from dataplane.command.config_clusters import HTTP_ONLY_FRONTEND_KEYS
from dataplane.command.config_listeners import LISTENER_KEYS
from dataplane.main import run
from dataplane.main.server import NOT_SUPPORTED

ROOT = Path(__file__).resolve().parents[2]
# pysozu's own keys and flags (extensions, documented in the README): not in sozu's lists.
EXTENSION_LISTENER_KEYS = {
    "trusted_proxies",
    "request_body_timeout",
    "request_body_min_rate",
    "h2c",  # tests/integration/test_grpc.py, test_http2.py
}
# A frontend's access rules (docs/access-control.md), tested in test_access.py and
# tests/integration/test_http_access.py.
EXTENSION_FRONTEND_KEYS = {"allowed_sources", "denied_sources", "rate_limits", "max_body_size"}
EXTENSION_FRONTEND_KEYS.add("canary")  # docs/canary.md, tests/unit/test_canary_routing.py
EXTENSION_FRONTEND_KEYS |= {"cors"}  # docs/cors.md: test_cors.py, test_http_cors.py
EXTENSION_FRONTEND_KEYS.add("auth_request")  # docs/access-control.md, test_http_auth_request.py
EXTENSION_FRONTEND_KEYS.add("client_auth")  # docs/client-certificates.md, test_https_client_auth.py
EXTENSION_FRONTEND_KEYS.add("connection_limit")  # docs/access-control.md, test_conn_limit.py
EXTENSION_FRONTEND_KEYS.add("custom_errors")  # docs/custom-errors.md, test_custom_errors.py
EXTENSION_FLAGS = {
    "--version",
    *("--client-ca", "--client-crl", "--client-verify", "--client-verify-depth"),
    *("--client-error-page", "--client-pass-certificate", "--client-match-cn"),
    *("--auth-cluster", "--auth-path", "--auth-method", "--auth-host", "--auth-signin"),
    *("--auth-response-header", "--auth-signin-redirect-param", "--auth-request-redirect"),
    "--prometheus-address",
    "--deadline",
    "--trusted-proxies",
    "--no-trusted-proxies",
    "--request-body-timeout",
    "--request-body-min-rate",
    "--connect-timeout",  # cluster add
    "--back-timeout",  # cluster add
    "--sticky-name",  # cluster add
    "--sticky-cookie-path",  # cluster add, the sticky cookie's attributes
    "--sticky-cookie-domain",
    "--sticky-cookie-max-age",
    "--sticky-cookie-expires",
    "--sticky-cookie-same-site",
    "--sticky-cookie-secure",
    "--sticky-cookie-http-only",
    "--hash-key",  # cluster add: upstream-hash-by
    "--host",  # alias of --hostname
    "--names",
    "--cert",
    "--old-cert",
    "--alpn-protocols",
    "--h2c",
    "--no-h2c",
    "--allow-source",
    "--deny-source",
    "--max-body-size",
    "--passthrough",  # frontend https add: TLS passthrough by SNI
    "--rate-limit",
    "--rate-burst",
    "--rate-limit-status",
    "--rate-limit-exempt",
    "--rate-limit-zone",
    "--connection-limit",
    "--connection-limit-status",
    "--connection-limit-exempt",
    "--connection-limit-zone",
    "--error-codes",
    "--error-cluster",
    "--error-header",
    *(f"--canary-{name}" for name in ("cluster", "header", "header-value", "header-pattern")),
    *(f"--canary-{name}" for name in ("cookie", "weight", "weight-total")),
    "--backend-tls",  # cluster add: TLS to the backends (and the flags below)
    "--backend-tls-ca",
    "--backend-tls-certificate",
    "--backend-tls-key",
    "--backend-tls-server-name",
    "--backend-tls-verify",
    "--backend-tls-verify-depth",
    "--backend-tls-verify-name",
    *("--cors", "--cors-allow-origin", "--cors-allow-methods", "--cors-allow-headers"),
    *("--cors-expose-headers", "--cors-allow-credentials", "--cors-max-age"),  # docs/cors.md
}
# What names the object a verb works on: covered by the verb's own entry.
IDENTIFYING = {"--id", "--address", "--backend-id", "--file"}
# and, for `remove`, the whole route: `frontend http remove --hostname ... --path-prefix ...`
ROUTE = {"--hostname", "--path-prefix", "--path-regex", "--path-equals", "--method"}
INTERNAL_VERBS = {"worker", "main"}  # sozu's internal `worker`/`main`: spawned by main itself


# -- helpers ----------------------------------------------------------------------------------


@cache
def _test_functions(path: str) -> frozenset[str]:
    tree = ast.parse((ROOT / path).read_text())
    return frozenset(
        node.name
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name.startswith("test")
    )


def _check_tested(proof: Tested) -> None:
    path, _, name = proof.test.partition("::")
    assert (ROOT / path).is_file(), f"{proof.test}: no such file"
    assert name in _test_functions(path), f"{proof.test}: no such test"


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + "}"
    raise TypeError(value)


def _warnings(text: str, tmp_path: Path) -> list[str]:
    """The warnings of `config check` (parse) and of start's loader (`run.load`): the same."""
    checked = parse_config(text).warnings
    path = tmp_path / "walk.toml"
    path.write_text(text)
    started = [line.partition(": ")[2] for line in run.load(str(path)).warnings]
    assert started == [line.partition(": ")[2] for line in checked]
    return checked


def _named(warnings: list[str], table: str, key: str) -> bool:
    where = f"[{table}] {key}: " if table else f": {key}: "
    return any(where in line for line in warnings)


CLUSTER_HEAD = {
    "http": 'frontends = [{address = "127.0.0.1:8080", hostname = "example.com"}]\n',
    "tcp": 'frontends = [{address = "127.0.0.1:8081"}]\n',
}
BACKENDS = 'backends = [{address = "127.0.0.1:9000"}]\n'


def _config_case(scope: str, key: str, context: str, value: object) -> tuple[str, str]:
    """(TOML using `key = value` in `scope`, the table a warning about it names)."""
    setting = f"{key} = {_toml(value)}\n"
    if scope == "top":
        return setting, ""
    if scope == "metrics":
        return f"[metrics]\n{setting}" if key == "address" else (
            f'[metrics]\naddress = "127.0.0.1:8125"\n{setting}'
        ), "metrics"
    if scope == "listener":
        head = f'[[listeners]]\naddress = "127.0.0.1:8080"\nprotocol = "{context}"\n'
        return head + setting, "listeners.0"
    if scope == "cluster":
        head = f'[clusters.c]\nprotocol = "{context}"\n' + CLUSTER_HEAD[context] + BACKENDS
        return head + setting, "clusters.c"
    if scope == "frontend":
        front = f'{{address = "127.0.0.1:8080", hostname = "example.com", {key} = {_toml(value)}}}'
        return (
            f'[clusters.c]\nprotocol = "http"\nfrontends = [{front}]\n{BACKENDS}',
            "clusters.c.frontends.0",
        )
    raise AssertionError(scope)


def _config_entries() -> list[tuple[str, str, str, Proof]]:
    entries: list[tuple[str, str, str, Proof]] = []
    entries += [("top", key, "", proof) for key, proof in surface.TOP_LEVEL.items()]
    entries += [("metrics", key, "", proof) for key, proof in surface.METRICS.items()]
    entries += [("listener", k, ctx, proof) for k, (ctx, proof) in surface.LISTENER.items()]
    entries += [("cluster", k, ctx, proof) for k, (ctx, proof) in surface.CLUSTER.items()]
    entries += [("frontend", key, "http", proof) for key, proof in surface.FRONTEND.items()]
    entries += [("backend", key, "", proof) for key, proof in surface.BACKEND.items()]
    return entries


# -- the configuration walk -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("scope", "key", "context", "proof"),
    _config_entries(),
    ids=[f"{scope}:{key}" for scope, key, _, _ in _config_entries()],
)
def test_every_sozu_key_is_tested_or_warned(
    scope: str, key: str, context: str, proof: Proof, tmp_path: Path
) -> None:
    if isinstance(proof, Tested):
        _check_tested(proof)
        return
    assert isinstance(proof, Warned | Unserved), f"{scope} {key}: {proof} is not a config proof"
    text, table = _config_case(scope, key, context, proof.value)
    warnings = _warnings(text, tmp_path)
    if isinstance(proof, Warned):
        assert _named(warnings, table, key), f"no warning names {key}: {warnings}"
    else:  # the table's whole object is not served, and says so
        assert any(
            f"[{table}]" in line and ("not supported yet" in line or f" {key}: " in line)
            for line in warnings
        ), f"nothing says [{table}] is not served: {warnings}"


def test_pysozus_own_listener_and_frontend_keys_are_all_in_sozus_lists() -> None:
    """A key the loader accepts but the walk does not know would escape it."""
    assert set(surface.LISTENER) >= LISTENER_KEYS - EXTENSION_LISTENER_KEYS
    assert set(HTTP_ONLY_FRONTEND_KEYS) - EXTENSION_FRONTEND_KEYS <= set(surface.FRONTEND)


def test_warnings_go_to_mains_log_at_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "c.toml"
    path.write_text("zombie_check_interval = 10\n")
    monkeypatch.setattr(run, "setup_logging", lambda *args, **kwargs: None)
    with caplog.at_level(logging.WARNING):
        assert run._configure(str(path)) is not None
    assert any("zombie_check_interval" in r.getMessage() for r in caplog.records)


# -- the CLI walk -----------------------------------------------------------------------------


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    found: dict[str, argparse.ArgumentParser] = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            found.update(action.choices)
    return found


def _leaves(
    parser: argparse.ArgumentParser,
    path: tuple[str, ...] = (),
    inherited: frozenset[str] = frozenset(),
) -> dict[str, set[str]]:
    """Every command path with the long flags it takes (a parent's flags count for children:
    `frontend http add --hostname ... id CLUSTER`)."""
    flags = inherited | {
        flag for action in parser._actions for flag in action.option_strings if flag[:2] == "--"
    }
    children = _subparsers(parser)
    if not children:
        return {" ".join(path): set(flags) - {"--help"}}
    found: dict[str, set[str]] = {}
    for name, child in children.items():
        for leaf, leaf_flags in _leaves(child, (*path, name), frozenset(flags)).items():
            found.setdefault(_verb_path(leaf), set()).update(leaf_flags)
    return found


def _verb_path(leaf: str) -> str:
    """`frontend http add id` and `... deny` are one verb (the target is the last word)."""
    words = leaf.split()
    return " ".join(words[:-1]) if words[-1] in ("id", "deny") else leaf


@cache
def _parser_leaves() -> dict[str, set[str]]:
    return _leaves(build_parser())


def _usage_error(argv: tuple[str, ...]) -> str | None:
    """argparse's message when `argv` is a usage error, else None."""
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr), contextlib.suppress(SystemExit):
        build_parser().parse_args(list(argv))
        return None
    return stderr.getvalue()


def _cli_entries() -> list[tuple[str, str, Proof]]:
    entries = [("", flag, proof) for flag, proof in surface.GLOBAL_FLAGS.items()]
    for path, flags in surface.CLI.items():
        entries += [(path, flag, proof) for flag, proof in flags.items()]
    return entries


@pytest.mark.parametrize(
    ("path", "flag", "proof"),
    _cli_entries(),
    ids=[f"{path or '*'} {flag}".strip() for path, flag, _ in _cli_entries()],
)
def test_every_sozu_verb_and_flag_is_tested_or_answered(path: str, flag: str, proof: Proof) -> None:
    leaves = _parser_leaves()
    if isinstance(proof, Refused):
        named = flag or path.split()[-1]
        message = _usage_error(proof.argv)
        if message is not None:
            assert named in message, message
            return
        args = build_parser().parse_args(list(proof.argv))
        verb = args.build(args).verb
        assert verb in NOT_SUPPORTED, f"pysozu {' '.join(proof.argv)} is accepted"
        return
    if path:
        assert path in leaves, f"pysozu {path}: no such command"
        if flag:
            assert flag in leaves[path], f"pysozu {path}: no flag {flag}"
    if isinstance(proof, Tested):
        _check_tested(proof)
        return
    assert isinstance(proof, Warned), f"{path} {flag}: {proof} is not a CLI proof"
    argv = [*path.split(), *surface.CLI_REQUIRED.get(path, ())]
    if flag:
        argv += [flag] if proof.value is True else [flag, str(proof.value)]
    lines = unserved_flags(build_parser().parse_args(argv))
    named = flag or path
    assert any(line.startswith(f"{named}: ") for line in lines), lines


def _covered_by_the_verb(path: str, flag: str, known: dict[str, Any]) -> bool:
    """Flags that only name what the verb acts on, and every flag of a verb about something
    pysozu does not serve (TCP, UDP, health checks): the verb's own entry proves them."""
    if "" not in known:
        return False
    if path.startswith(surface.UNSERVED_VERBS):
        return True
    return flag in IDENTIFYING or (path.endswith(" remove") and flag in ROUTE)


def test_every_flag_pysozu_takes_is_in_sozus_lists_or_an_extension() -> None:
    """A flag added to the parser without a place in the walk would be accepted unseen."""
    global_flags = set(surface.GLOBAL_FLAGS)
    missing = []
    for path, flags in _parser_leaves().items():
        if path.split()[0] in INTERNAL_VERBS:
            continue
        known: dict[str, Any] = surface.CLI.get(path, {})
        if not known:
            missing.append(path)
        missing += [
            f"{path} {flag}"
            for flag in sorted(flags - global_flags - EXTENSION_FLAGS)
            if flag not in known and not _covered_by_the_verb(path, flag, known)
        ]
    assert not missing, "\n".join(missing)
