"""A running main and its workers, serving plain HTTP, have mapped none of the native
libraries that only TLS certificates, configured regexes or basic auth need (see
tests/unit/test_import_footprint.py for the Python modules): each costs megabytes of
resident memory in every process. Read from /proc/<pid>/maps, after traffic went through."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.timeout(60)

# A path fragment of each library's shared object, as /proc/<pid>/maps names it.
NATIVE = {
    "cryptography": "cryptography/hazmat/bindings/_rust",
    "re2": "_re2.",
    "bcrypt": "bcrypt/_bcrypt",
}


def mapped(pid: int) -> set[str]:
    text = Path(f"/proc/{pid}/maps").read_text()
    return {name for name, fragment in NATIVE.items() if fragment in text}


def test_plain_http_processes_map_no_certificate_regex_or_hash_library(
    pysozu: Any, backends: Any
) -> None:
    backend = backends.start("hello")
    port = pysozu.free_port()
    proxy = pysozu.start(pysozu.http_config(port, {"app": ("example.com", [backend])}))
    for _ in range(20):
        status, body = pysozu.http_get(port, "example.com", "/")
        assert (status, body) == (200, b"hello")
    pids = [proxy.process.pid, *(info.pid for info in proxy.workers())]
    assert len(pids) == 3
    assert {pid: mapped(pid) for pid in pids} == {pid: set() for pid in pids}


def test_a_regex_route_loads_re2_in_the_workers(pysozu: Any, backends: Any) -> None:
    """The check above is not blind: a configured regex does map RE2."""
    backend = backends.start("regex")
    port = pysozu.free_port()
    toml = pysozu.http_config(port, {"app": ("example.com", [backend])}).replace(
        'hostname = "example.com" }',
        'hostname = "example.com", path = "/r[0-9]+", path_type = "REGEX" }',
    )
    proxy = pysozu.start(toml)
    assert pysozu.http_get(port, "example.com", "/r12") == (200, b"regex")
    for info in proxy.workers():
        assert "re2" in mapped(info.pid)
