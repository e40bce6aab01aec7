"""TCP access log lines of a real pysozu: one per relayed connection, in sozu's ASCII layout
(protocol `TCP`, no request parts) and as JSON lines; errors at the error level."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest
from test_observability_access_logs import lines_of, parse_ascii, parse_json

pytestmark = pytest.mark.timeout(60)


@pytest.mark.parametrize("log_format", ["ascii", "json"])
def test_one_line_per_tcp_connection(pysozu: Any, tmp_path: Path, log_format: str) -> None:
    backend = socket.create_server(("127.0.0.1", 0))
    backend_port = backend.getsockname()[1]
    dead = socket.create_server(("127.0.0.1", 0))
    dead_port = dead.getsockname()[1]
    dead.close()  # refused
    port, lonely = pysozu.free_port(), pysozu.free_port()
    log_path = tmp_path / "access.log"
    toml = (
        f'worker_count = 1\naccess_logs_target = "file://{log_path}"\n'
        f'access_logs_format = "{log_format}"\n'
        f'[[listeners]]\nprotocol = "tcp"\naddress = "127.0.0.1:{port}"\n'
        f'[[listeners]]\nprotocol = "tcp"\naddress = "127.0.0.1:{lonely}"\n'
        f'[clusters.t]\nprotocol = "tcp"\n'
        f'frontends = [{{ address = "127.0.0.1:{port}", tags = {{ team = "db" }} }}]\n'
        f'backends = [{{ address = "127.0.0.1:{backend_port}", backend_id = "b" }}]\n'
        f'[clusters.gone]\nprotocol = "tcp"\n'
        f'frontends = [{{ address = "127.0.0.1:{lonely}" }}]\n'
        f'backends = [{{ address = "127.0.0.1:{dead_port}", backend_id = "d" }}]\n'
    )
    try:
        pysozu.start(toml, workers=1)
        with socket.create_connection(("127.0.0.1", port), timeout=5) as client:
            conn, _ = backend.accept()
            with conn:
                client.sendall(b"12345")
                assert conn.recv(100) == b"12345"
                conn.sendall(b"abc")
                assert client.recv(100) == b"abc"
            source = client.getsockname()
        with socket.create_connection(("127.0.0.1", lonely), timeout=5) as client:
            assert client.recv(10) == b""  # no backend: closed
        lines = lines_of(log_path, 2)
    finally:
        backend.close()
    assert len(lines) == 2, lines
    parse = parse_ascii if log_format == "ascii" else parse_json
    records = {record["cluster_id"]: record for record in map(parse, lines)}
    ok = records["t"]
    assert ok["protocol"] == "TCP" and ok["level"] == "INFO-ACCESS "
    assert (ok["backend_id"], ok["error"], ok["status"]) == ("b", False, None)
    assert ok["client_address"] == f"127.0.0.1:{source[1]}"
    assert ok["backend_address"] == f"127.0.0.1:{backend_port}"
    assert (int(ok["bytes_in"]), int(ok["bytes_out"])) == (5, 3)
    assert 0 <= ok["request_time"] < 5
    assert ok.get("method") is None and ok.get("path") is None
    if log_format == "ascii":
        assert ok["tags"] == "team=db"
    else:
        assert ok["tags"] == {"team": "db"}
    failed = records["gone"]
    assert failed["level"] == "ERROR-ACCESS" and failed["error"] is True
    assert failed["message"] == "no backend available"
    assert failed["backend_id"] is None
