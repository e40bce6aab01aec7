"""The e2e world: kmock as the API server, the real dataplane, the real operator, real backends.

Each test gets its own `World`: a kmock API server process (tests/e2e/kmock_apiserver.py), a
kubeconfig pointing at it, `pysozu start` with one worker, `pysozu-ingress` beside it (same
command socket), and HTTP backends on 127.0.0.x. Everything listens on 127.0.0.1 and is
stopped (by pid) at teardown.
"""

from __future__ import annotations

import http.client
import http.server
import json
import os
import signal
import socketserver
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "support"))
from ports import free_port

HERE = Path(__file__).parent
VENV_BIN = Path(sys.executable).parent
KUBECTL = "/usr/bin/kubectl"
PUBLISHED = "192.0.2.10"
T = TypeVar("T")


def wait_for(what: str, check: Callable[[], T | None], timeout: float = 40.0) -> T:
    """Poll `check` until it returns something truthy; fail naming `what` after `timeout`
    (generous: a loaded CI machine runs the operator, the dataplane and kmock on two cores;
    a passing wait returns at once)."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            result = check()
        except (OSError, http.client.HTTPException, subprocess.SubprocessError) as error:
            last = error
        else:
            if result:
                return result
            last = result
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


class Backend:
    """An HTTP server answering every request with its name (and the path it got)."""

    def __init__(self, ip: str, port: int, name: str) -> None:
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                outer.hits += 1
                body = f"{outer.name} {self.path}".encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                # What the proxy sent, for tests of header rewrites.
                self.send_header("X-Seen-Host", self.headers.get("Host", ""))
                self.send_header("X-Seen-Forwarded-Host", self.headers.get("X-Forwarded-Host", ""))
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:  # the body is read and its size answered
                size = len(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
                outer.hits += 1
                body = f"{outer.name} {self.path} {size}".encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
            daemon_threads = True
            allow_reuse_address = True

        self.name = name
        self.hits = 0  # requests that reached this backend
        self.server = Server((ip, port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Process:
    def __init__(self, name: str, args: list[str], log: Path, env: dict[str, str]) -> None:
        self.name, self.log = name, log
        self.popen = subprocess.Popen(
            args, stdout=log.open("wb"), stderr=subprocess.STDOUT, env=env, start_new_session=True
        )

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.popen.poll() is None:
            os.killpg(self.popen.pid, sig)
            try:
                self.popen.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(10)

    def rss_kib(self) -> int:
        for line in Path(f"/proc/{self.popen.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise AssertionError("no VmRSS")


class World:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.http_port, self.https_port, self.health_port = free_port(), free_port(), free_port()
        self.backend_port = free_port()
        self.socket = tmp / "sozu.sock"
        self.config = tmp / "config.toml"
        self.config.write_text(
            f'worker_count = 1\ncommand_socket = "{self.socket}"\nlog_level = "info"\n'
        )
        self.kubeconfig = tmp / "kubeconfig"
        self.faults = tmp / "faults.json"
        self.env = {**os.environ, "KUBECONFIG": str(self.kubeconfig), "POD_NAMESPACE": "default"}
        self.processes: dict[str, Process] = {}
        self.backends: list[Backend] = []

    # -- processes ---------------------------------------------------------------------------

    def start_apiserver(self, preload: Path | None = None, port: int | None = None) -> None:
        """kmock (on `port` when given: coming back where a stopped one was); the rules in
        `self.faults` (see kmock_apiserver.py) are read on every request."""
        port_file = self.tmp / "kmock.port"
        port_file.unlink(missing_ok=True)
        args = [sys.executable, str(HERE / "kmock_apiserver.py"), "--port-file", str(port_file)]
        args += ["--faults", str(self.faults)]
        if preload is not None:
            args += ["--preload", str(preload)]
        if port is not None:
            args += ["--port", str(port)]
        self.processes["kmock"] = Process("kmock", args, self.tmp / "kmock.log", self.env)
        port = wait_for(
            "the kmock API server", lambda: port_file.exists() and port_file.read_text()
        )
        self.api_port = int(port)
        self.kubeconfig.write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "clusters": [
                        {"name": "kmock", "cluster": {"server": f"http://127.0.0.1:{port}"}}
                    ],
                    "users": [{"name": "test", "user": {"token": "test"}}],
                    "contexts": [
                        {
                            "name": "kmock",
                            "context": {"cluster": "kmock", "user": "test", "namespace": "default"},
                        }
                    ],
                    "current-context": "kmock",
                }
            )
        )

    def start_dataplane(self) -> None:
        self.socket.unlink(missing_ok=True)
        args = [str(VENV_BIN / "pysozu"), "start", "-c", str(self.config)]
        self.processes["dataplane"] = Process(
            "dataplane", args, self.tmp / "dataplane.log", self.env
        )
        wait_for("the dataplane's command socket", lambda: self.pysozu("status").returncode == 0)

    def start_operator(self, *extra: str, publish_address: str | None = PUBLISHED) -> None:
        args = [
            str(VENV_BIN / "pysozu-ingress"),
            "--command-socket", str(self.socket),
            "--http-address", f"127.0.0.1:{self.http_port}",
            "--https-address", f"127.0.0.1:{self.https_port}",
            "--health-address", f"127.0.0.1:{self.health_port}",
            *(("--publish-address", publish_address) if publish_address else ()),
            *extra,
        ]  # fmt: skip
        self.processes["operator"] = Process("operator", args, self.tmp / "operator.log", self.env)

    def operator_ready(self) -> bool:
        return self.health("/readyz")[0] == 200

    def health(self, path: str = "/healthz") -> tuple[int, str]:
        connection = http.client.HTTPConnection("127.0.0.1", self.health_port, timeout=2)
        try:
            connection.request("GET", path)
            response = connection.getresponse()
            return response.status, response.read().decode()
        finally:
            connection.close()

    def inject(self, *rules: dict[str, Any]) -> None:
        """Make kmock answer matching requests with a fault (none: clear them)."""
        self.faults.write_text(json.dumps(list(rules)))

    def stop(self) -> None:
        for backend in self.backends:
            backend.stop()
        for name in ("operator", "dataplane", "kmock"):
            if name in self.processes:
                self.processes[name].stop()

    def logs(self) -> str:
        return "\n".join(
            f"--- {p.name} ---\n{p.log.read_text(errors='replace')[-4000:]}"
            for p in self.processes.values()
        )

    # -- tools -------------------------------------------------------------------------------

    def kubectl(self, *args: str, stdin: str | None = None) -> str:
        command = [KUBECTL, "--kubeconfig", str(self.kubeconfig), *args]
        done = subprocess.run(command, input=stdin, capture_output=True, text=True, timeout=30)
        assert done.returncode == 0, f"kubectl {' '.join(args)}: {done.stderr}"
        return done.stdout

    def apply(self, *documents: dict[str, Any]) -> None:
        self.kubectl("apply", "--validate=false", "-f", "-", stdin=yaml.safe_dump_all(documents))

    def pysozu(self, *args: str) -> subprocess.CompletedProcess[str]:
        command = [str(VENV_BIN / "pysozu"), "-c", str(self.config), *args]
        return subprocess.run(command, capture_output=True, text=True, timeout=30)

    def pysozu_json(self, *args: str) -> Any:
        done = self.pysozu("-j", *args)
        assert done.returncode == 0, done.stderr or done.stdout
        return json.loads(done.stdout)

    def get(self, host: str, path: str = "/") -> tuple[int, str, dict[str, str]]:
        connection = http.client.HTTPConnection("127.0.0.1", self.http_port, timeout=5)
        try:
            connection.request("GET", path, headers={"Host": host})
            response = connection.getresponse()
            body = response.read().decode(errors="replace")
            return response.status, body, {k.lower(): v for k, v in response.getheaders()}
        finally:
            connection.close()

    def backend(self, ip: str, name: str) -> Backend:
        backend = Backend(ip, self.backend_port, name)
        self.backends.append(backend)
        return backend


@pytest.fixture
def world(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[World]:
    world = World(tmp_path)
    try:
        world.start_apiserver()
        world.start_dataplane()
        yield world
    finally:
        world.stop()
        report = getattr(request.node, "rep_call", None)
        if report is not None and report.failed:
            print(world.logs())


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report
