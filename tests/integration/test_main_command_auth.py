"""`command_allowed_uids`: the peer's credentials (SO_PEERCRED) decide on every connection.

The suite runs as root; a client of another uid runs under `setpriv` (uid/gid 65534, no
groups) against a socket made reachable for the test (the directory and the socket opened to
all: main creates the socket 0600).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from dataplane.command.messages import Cluster, Empty, Request
from dataplane.command.responses import ResponseStatus

pytestmark = [
    pytest.mark.timeout(60),
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run a client as another uid"),
    pytest.mark.skipif(shutil.which("setpriv") is None, reason="needs setpriv"),
]

NOBODY = 65534
AS_NOBODY = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]

# A raw client (stdlib only): sends the frame given as argv[2] to the socket argv[1], prints
# every answer frame as one JSON line up to the final one, then "EOF" if main closes the
# connection within a second, else "OPEN".
RAW_CLIENT = """
import json, socket, struct, sys
sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
sock.settimeout(10)
sock.connect(sys.argv[1])
body = sys.argv[2].encode()
sock.sendall(struct.pack("<Q", 8 + len(body)) + body)
data = b""
final = False
while True:
    try:
        chunk = sock.recv(65536)
    except TimeoutError:
        print("OPEN")
        break
    if not chunk:
        print("EOF")
        break
    data += chunk
    while len(data) >= 8 and len(data) >= struct.unpack("<Q", data[:8])[0]:
        (length,) = struct.unpack("<Q", data[:8])
        print(data[8:length].decode())
        final = final or json.loads(data[8:length])["status"] != 1
        data = data[length:]
    if final:
        sock.settimeout(1)
"""


def start(pysozu: Any, uids: str | None) -> Any:
    head = f"command_allowed_uids = {uids}\n" if uids is not None else ""
    config = pysozu.http_config(pysozu.free_port(), {"app": ("example.com", [pysozu.free_port()])})
    return pysozu.start(head + config, wait=uids is None or "0" in uids)


def open_to_all(proxy: Any) -> None:
    os.chmod(proxy.directory, 0o755)
    os.chmod(proxy.socket_path, 0o666)


def raw_as_nobody(proxy: Any, request: Request) -> list[str]:
    from dataplane.command.codec import encode

    result = subprocess.run(
        [*AS_NOBODY, sys.executable, "-c", RAW_CLIENT, proxy.socket_path, encode(request).decode()],
        capture_output=True,
        text=True,
        timeout=20,
        cwd="/",
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


def cli_as_nobody(proxy: Any, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*AS_NOBODY, sys.executable, "-m", "dataplane", "-c", str(proxy.config_path), *args],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=Path(__file__).resolve().parents[2],
    )


def test_a_uid_outside_the_list_gets_a_failure_then_the_connection_closes(pysozu: Any) -> None:
    proxy = start(pysozu, "[0]")
    open_to_all(proxy)
    lines = raw_as_nobody(proxy, Request.of(status=Empty()))
    assert len(lines) == 2, lines
    answer = json.loads(lines[0])
    assert answer["status"] == 2  # FAILURE
    assert answer["message"] == "unauthorized: actor UID 65534 not in command_allowed_uids"
    assert lines[1] == "EOF"
    # A state change is refused just the same, and changes nothing.
    add = Request.of(add_cluster=Cluster(cluster_id="intruder"))
    lines = raw_as_nobody(proxy, add)
    assert json.loads(lines[0])["status"] == 2
    assert lines[-1] == "EOF"
    listed = proxy.request(Request.of(query_clusters_hashes=Empty()))
    assert listed.status == ResponseStatus.OK
    assert "intruder" not in json.dumps(listed.content.value.map["main"].value.map)
    log = proxy.log()
    assert "uid 65534" in log and "is not in command_allowed_uids (status)" in log
    assert "(add_cluster)" in log


def test_the_cli_of_a_refused_uid_says_why(pysozu: Any) -> None:
    proxy = start(pysozu, "[0]")
    open_to_all(proxy)
    result = cli_as_nobody(proxy, "status")
    assert result.returncode != 0
    assert "unauthorized: actor UID 65534 not in command_allowed_uids" in (
        result.stdout + result.stderr
    )
    assert proxy.cli("status").returncode == 0  # root is listed: served as before


def test_a_listed_uid_is_served(pysozu: Any) -> None:
    proxy = start(pysozu, f"[0, {NOBODY}]")
    open_to_all(proxy)
    lines = raw_as_nobody(proxy, Request.of(status=Empty()))
    assert lines[-1] == "OPEN"
    assert json.loads(lines[-2])["status"] == 0, lines


def test_without_the_key_any_uid_that_reaches_the_socket_is_served(pysozu: Any) -> None:
    proxy = start(pysozu, None)
    open_to_all(proxy)
    lines = raw_as_nobody(proxy, Request.of(status=Empty()))
    assert lines[-1] == "OPEN"
    assert json.loads(lines[-2])["status"] == 0, lines


def test_an_empty_list_refuses_everybody_root_included(pysozu: Any) -> None:
    proxy = start(pysozu, "[]")
    deadline = time.monotonic() + 20
    while True:  # until main listens (it cannot be asked: it refuses everybody)
        result = proxy.cli("status")
        said = result.stdout + result.stderr
        if "unauthorized" in said or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert result.returncode != 0
    assert "unauthorized: actor UID 0 not in command_allowed_uids" in said
    assert "command_allowed_uids is empty: every command is refused" in proxy.log()
