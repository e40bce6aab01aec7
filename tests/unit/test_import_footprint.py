"""What main and a worker import at start: the heavy libraries load only where they are used.

Each figure below is what the import costs a process in resident memory (measured, Python
3.11): cryptography 11-16 MB, prometheus_client 12 MB, importlib.metadata 5 MB, re2 2.7 MB,
passlib 4.4 MB. A new module-level import of one of them on the worker's or main's path fails
here, naming the modules that were loaded.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from dataplane.proxy.worker.entry import parse_worker_argv

pytestmark = pytest.mark.timeout(60)

# Never imported by a worker that serves plain HTTP, nor by main, until a feature needs them.
HEAVY = (
    "cryptography",  # certificates: parsed on first use (tls/certificate.py, state_rules.py)
    "re2",  # regexes from configuration (command/regexes.py)
    "passlib",  # basic auth hashes (proxy/routing/credentials.py)
    "bcrypt",
    "prometheus_client",  # main's /metrics endpoint, when configured (main/run.py)
    "importlib.metadata",  # dataplane.__version__ is read from the .dist-info
    "email",
)
# The h2 library's state machine and HPACK: loaded with a worker's first HTTP/2 connection.
HTTP2 = ("h2.connection", "h2.events", "hpack", "hyperframe", "dataplane.proxy.http2.front")
# OpenSSL's libraries come with these: loaded by TLS, basic auth or a state hash.
OPENSSL = ("ssl", "_ssl", "hashlib", "_hashlib", "hmac")
# Only main and the CLI use these: the worker's entry (proxy/worker/entry.py) skips them.
MAIN_ONLY = ("argparse", "tomllib", "dataplane.cli", "dataplane.main", "difflib", "tempfile")


def loaded_after(code: str) -> list[str]:
    """sys.modules of a fresh interpreter after running `code`."""
    script = f"{code}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=50, check=True
    )
    names: list[str] = json.loads(result.stdout.splitlines()[-1])
    return names


def found(names: list[str], packages: tuple[str, ...]) -> list[str]:
    return [n for n in names if any(n == p or n.startswith(p + ".") for p in packages)]


def test_worker_entry_loads_nothing_heavy() -> None:
    names = loaded_after(
        "import dataplane.proxy.worker.entry, dataplane.proxy.worker.boot, setproctitle"
    )
    assert "dataplane.proxy.worker.loop" in names  # the worker's own path is there
    assert found(names, HEAVY) == []
    assert found(names, MAIN_ONLY) == []
    assert found(names, HTTP2) == []
    assert found(names, OPENSSL) == []


def test_http2_connections_are_still_found_where_they_were() -> None:
    from dataplane.proxy.http2 import BackConnection, FrontConnection
    from dataplane.proxy.http2.back import BackConnection as Back
    from dataplane.proxy.http2.front import FrontConnection as Front

    assert (FrontConnection, BackConnection) == (Front, Back)
    with pytest.raises(AttributeError):
        import dataplane.proxy.http2 as http2

        _ = http2.NoSuchThing


def test_main_loads_nothing_heavy() -> None:
    names = loaded_after(
        "import dataplane, dataplane.cli.app, dataplane.main.run\n"
        "from dataplane.cli.tree import build_parser\n"
        "build_parser()\n"
        "from dataplane.command.config import default_config\n"
        "default_config()\n"
        "assert dataplane.__version__"
    )
    assert "dataplane.main.server" in names
    assert found(names, HEAVY) == []


def test_state_of_the_default_config_loads_nothing_heavy() -> None:
    """Main applies the embedded configuration's requests to its state at start."""
    names = loaded_after(
        "from dataplane.command.config import default_config\n"
        "from dataplane.command.state import ConfigState\n"
        "state = ConfigState()\n"
        "for request in default_config().generate_requests():\n"
        "    state.dispatch(request)\n"
        "assert state.clusters"
    )
    assert found(names, HEAVY) == []


def test_version_is_the_installed_distribution_s() -> None:
    import importlib.metadata

    import dataplane

    assert dataplane.__version__ == importlib.metadata.version("pysozu")


def test_version_reads_the_dist_info(tmp_path: object) -> None:
    from pathlib import Path

    import dataplane

    root = Path(str(tmp_path))
    (root / "other-1.0.dist-info").mkdir()
    (root / "other-1.0.dist-info" / "METADATA").write_text("Name: other\nVersion: 1.0\n")
    assert dataplane._dist_info_version([str(root)]) is None
    info = root / "pysozu-2.3.4.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.4\nName: pysozu\nVersion: 2.3.4\n\nbody\n")
    assert dataplane._dist_info_version([str(root / "missing"), str(root)]) == "2.3.4"


def test_worker_argv_as_main_writes_it() -> None:
    words = ["--id", "3", "--fd", "5", "--scm", "6", "--configuration-state-fd", "7"]
    assert parse_worker_argv([*words, "--command-buffer-size", "4096"]) == {
        "--id": 3,
        "--fd": 5,
        "--scm": 6,
        "--configuration-state-fd": 7,
        "--command-buffer-size": 4096,
        "--max-command-buffer-size": None,
    }
    assert parse_worker_argv(words)["--command-buffer-size"] == 1_000_000  # type: ignore[index]


@pytest.mark.parametrize(
    "words",
    [
        ["--id", "3", "--fd", "5", "--scm", "6"],  # a required flag missing
        ["--id", "3", "--fd", "5", "--scm", "6", "--configuration-state-fd"],  # no value
        ["--id", "x", "--fd", "5", "--scm", "6", "--configuration-state-fd", "7"],
        ["--id", "3", "--id", "4", "--fd", "5", "--scm", "6", "--configuration-state-fd", "7"],
        ["-c", "f", "--id", "3", "--fd", "5", "--scm", "6", "--configuration-state-fd", "7"],
        ["--help"],
    ],
)
def test_other_worker_command_lines_go_to_the_cli(words: list[str]) -> None:
    """Anything but main's exact form is left to the CLI, which says what is wrong."""
    assert parse_worker_argv(words) is None


def test_python_m_dataplane_worker_with_bad_flags_is_a_usage_error() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "dataplane", "worker", "--id", "x"],
        capture_output=True,
        text=True,
        timeout=50,
    )
    assert result.returncode == 2
    assert "--id" in result.stderr


@pytest.mark.parametrize("seconds", [0, 1.5, 951_782_400, 1_700_000_000, 4_102_444_799.9])
def test_sticky_cookie_dates_are_formatdate_s(seconds: float) -> None:
    from email.utils import formatdate

    from dataplane.proxy.mux.backend_choice import http_date

    assert http_date(seconds) == formatdate(seconds, usegmt=True)


@pytest.mark.parametrize("text", ["", "plain", '<a href="x">&\'</a>', "&amp;&lt;", "\u00e9<"])
def test_error_page_escape_is_html_escape_s(text: str) -> None:
    import html

    from dataplane.proxy.answers.responses import _escape

    assert _escape(text) == html.escape(text)


def test_backend_salts_use_hashlib_s_own_blake2b() -> None:
    """balancing/hashing.py imports `_blake2` so that no worker loads OpenSSL for salts."""
    import hashlib

    from dataplane.proxy.balancing import hashing

    assert hashing.blake2b is hashlib.blake2b
    data = b"127.0.0.1:8080"
    expected = int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little")
    assert hashing.hash_bytes(data) == expected


def test_a_lazy_module_is_imported_by_its_first_use_and_then_bound() -> None:
    from dataplane.command.lazy_import import lazy_module

    namespace: dict[str, object] = {}
    namespace["colorsys"] = stand_in = lazy_module("colorsys", namespace)
    assert "lazy module 'colorsys'" in repr(stand_in)
    assert stand_in.rgb_to_hsv(1.0, 0.0, 0.0) == (0.0, 1.0, 1.0)
    import colorsys

    assert namespace["colorsys"] is colorsys  # later uses are plain module lookups
