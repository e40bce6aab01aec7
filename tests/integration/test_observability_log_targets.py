"""Main's and workers' own log lines on sozu's network targets (`log_target = "udp://..."`,
`tcp://`, `unix://`), read back by a real listener on 127.0.0.1 or a unix socket."""

from __future__ import annotations

import selectors
import socket
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.timeout(60)

WANTED = ("MAIN INFO", "WRK-00 INFO", "WRK-01 INFO")


def _config(pysozu: Any, target: str) -> str:
    return f'log_target = "{target}"\n' + pysozu.http_config(pysozu.free_port(), {})


def _until_every_process_spoke(receive: Any, timeout: float = 20.0) -> str:
    deadline = time.monotonic() + timeout
    text = ""
    while time.monotonic() < deadline and not all(tag in text for tag in WANTED):
        text += receive()
    return text


def test_udp_target_gets_one_line_per_datagram(pysozu: Any) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as receiver:
        receiver.bind(("127.0.0.1", 0))
        receiver.settimeout(0.5)
        port = receiver.getsockname()[1]
        pysozu.start(_config(pysozu, f"udp://127.0.0.1:{port}"))
        datagrams: list[bytes] = []

        def receive() -> str:
            try:
                datagrams.append(receiver.recv(65536))
            except TimeoutError:
                return ""
            return datagrams[-1].decode()

        text = _until_every_process_spoke(receive)
    assert all(tag in text for tag in WANTED), text
    assert all(d.endswith(b"\n") and d.count(b"\n") == 1 for d in datagrams), datagrams


def test_tcp_target_gets_a_stream_of_lines_from_each_process(pysozu: Any) -> None:
    with socket.socket() as server, selectors.DefaultSelector() as selector:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        server.setblocking(False)
        selector.register(server, selectors.EVENT_READ)
        proxy = pysozu.start(_config(pysozu, f"tcp://127.0.0.1:{server.getsockname()[1]}"))
        streams: dict[socket.socket, bytes] = {}

        def receive() -> str:
            got = ""
            for key, _ in selector.select(0.5):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                if sock is server:
                    accepted, _ = server.accept()
                    selector.register(accepted, selectors.EVENT_READ)
                    streams[accepted] = b""
                    continue
                data = sock.recv(65536)
                if not data:
                    selector.unregister(sock)
                    continue
                streams[sock] += data
                got += data.decode(errors="replace")
            return got

        text = _until_every_process_spoke(receive)
        # main and each worker connect on their own (the workers' access logs too: they
        # go to log_target when access_logs_target is not set)
        assert len(streams) >= 3, text
        assert proxy.cli("status").returncode == 0
        for sock in streams:
            sock.close()
    assert all(tag in text for tag in WANTED), text
    for data in streams.values():  # whole lines, one process per connection
        lines = data.decode().splitlines()
        assert (not data or data.endswith(b"\n")) and len(
            {line.split(" ")[1] for line in lines}
        ) <= 1, lines


def test_unix_target_is_a_datagram_socket(pysozu: Any) -> None:
    directory = Path(tempfile.mkdtemp(prefix="pzlog"))  # unix socket paths are short
    path = directory / "log.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as receiver:
        receiver.bind(str(path))
        receiver.settimeout(0.5)
        pysozu.start(_config(pysozu, f"unix://{path}"))

        def receive() -> str:
            try:
                return receiver.recv(65536).decode()
            except TimeoutError:
                return ""

        text = _until_every_process_spoke(receive)
    path.unlink()
    directory.rmdir()
    assert all(tag in text for tag in WANTED), text


def test_a_target_nobody_listens_on_never_stops_the_proxy(pysozu: Any) -> None:
    """Lines are dropped (a log must never block the proxy) and the proxy serves."""
    proxy = pysozu.start(_config(pysozu, f"tcp://127.0.0.1:{pysozu.free_port()}"))
    result = proxy.cli("status")
    assert result.returncode == 0, result.stderr
    assert "MAIN" not in proxy.log()  # nothing fell back to stdout
