"""The image, built from the unchanged Dockerfile and run as the README and the Dockerfile's
header tell a user to: `docker run` (podman here) with the built-in config and with a mounted
one, `docker exec ... pysozu status`, `docker stop -t 35` draining an in-flight request, a
read-only root filesystem and user 10001.

The built-in config listens on fixed ports (8080, 8443, 9090), so that container gets its own
network namespace (`--network none`) and is reached from inside (`docker exec`); the mounted
config listens on free ports of 127.0.0.1 with `--network host`.
"""

from __future__ import annotations

import http.client
import http.server
import socket
import socketserver
import threading
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from podman_tools import CONFIG, REPO, REPORT, Podman, base_image, wait_for

pytestmark = [pytest.mark.image, pytest.mark.timeout(1800)]

VERSION = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
DRAIN_STOP_SECONDS = 35  # the README's and the Dockerfile's `docker stop -t 35`


def docker_run_options(volume: str) -> list[str]:
    """The Dockerfile header's `docker run --read-only --tmpfs /tmp -v pysozu-run:/run/pysozu`.

    podman, unlike docker, would also mount tmpfs on /run, /tmp and /var/tmp of a read-only
    container; --read-only-tmpfs=false keeps docker's behaviour, so /tmp is writable only
    because the command says so.
    """
    return ["--read-only", "--read-only-tmpfs=false", "--tmpfs", "/tmp",
            "--volume", f"{volume}:/run/pysozu"]  # fmt: skip


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class SlowBackend:
    """An HTTP backend on 127.0.0.1: `/` answers at once, `/slow` waits for `release`."""

    def __init__(self) -> None:
        self.received_slow = threading.Event()
        self.release = threading.Event()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                if self.path == "/slow":
                    outer.received_slow.set()
                    outer.release.wait(60)
                body = f"backend {self.path}".encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
            daemon_threads = True

        self.server = Server(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def backend() -> Iterator[SlowBackend]:
    server = SlowBackend()
    yield server
    server.stop()


def get(port: int, host: str, path: str = "/", timeout: float = 30) -> tuple[int, str]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("GET", path, headers={"Host": host})
        response = connection.getresponse()
        return response.status, response.read().decode(errors="replace")
    finally:
        connection.close()


def test_image_facts_and_size(podman: Podman, image: str) -> None:
    facts = podman.image_facts(image)
    config = facts["Config"]
    assert config["User"] == "10001:10001"
    assert config["Entrypoint"] == ["/usr/bin/tini", "-g", "--"]
    assert config["Cmd"] == ["pysozu", "start", "-c", CONFIG]
    assert set(config["Volumes"]) == {"/run/pysozu"}
    # Kept by the docker image format (scripts/build-image: --format docker).
    assert facts["Healthcheck"]["Test"] == ["CMD", "pysozu", "-c", CONFIG, "status"]
    assert facts["Labels"]["org.opencontainers.image.version"] == VERSION
    # The commands are there, as the image's user runs them.
    version = podman("run", "--rm", "--network", "none", image, "pysozu", "--version")
    assert version.stdout.split() == ["pysozu", VERSION]
    assert "--command-socket" in podman("run", "--rm", image, "pysozu-ingress", "--help").stdout
    imports = "import kopf, kubernetes.client, kubernetes.config, ingress_operator.controller"
    podman("run", "--rm", "--network", "none", image, "python", "-c", imports)
    # Size: the whole image, and what the Dockerfile adds to its base.
    size, base_size = facts["Size"], podman.image_facts(base_image())["Size"]
    REPORT.append(
        f"image {image}: {size / 1e6:.0f} MB, of which {base_size / 1e6:.0f} MB base "
        f"(Debian 12 python3 + python3-dev, made by mmdebstrap) and "
        f"{(size - base_size) / 1e6:.0f} MB added by the Dockerfile"
    )
    venv = podman("run", "--rm", "--network", "none", "--entrypoint", "du", image,
                  "-s", "-m", "/opt/pysozu").stdout.split()[0]  # fmt: skip
    REPORT.append(f"  /opt/pysozu (the virtual environment): {venv} MB")
    assert size > base_size


# Run by the image's Python: which modules are compiled, and a line the compiled formatter made.
COMPILED_CHECK = """
import {modules}
from dataplane import build_info
from dataplane.command.messages import AccessLogFormat
from dataplane.proxy.observability.access_log_format import AccessRecord, formatter_for
print(build_info.describe())
line = formatter_for(AccessLogFormat.ASCII, "T", 1).format(AccessRecord(session_id="s", status=200))
print(line.split()[3].decode())
"""
# The build stage's clean-up, seen from the runtime image.
LEFT_BEHIND = """
import glob, shutil
print(shutil.which("pip"), glob.glob("/opt/pysozu/lib/python3*/site-packages/kubernetes/aio"))
"""


def test_the_build_stage_left_a_compiled_pysozu_and_no_pip(podman: Podman, image: str) -> None:
    """What the Dockerfile's build stage installs (PYSOZU_COMPILE=1 pip install, then its
    clean-up), as the image's user finds it: every module listed in pyproject.toml's
    [tool.pysozu] compile is a C extension and works, both configs check, no pip, and the
    kubernetes client without its unused asyncio copy."""

    def run(*command: str) -> str:
        return podman("run", "--rm", "--network", "none", image, *command).stdout

    compiled = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["pysozu"]["compile"]
    modules = [path.removesuffix(".py").replace("/", ".") for path in compiled]
    described = run("python", "-c", COMPILED_CHECK.format(modules=", ".join(modules)))
    names = ", ".join(module.rsplit(".", 1)[1] for module in sorted(modules))  # as describe()
    assert described.splitlines() == [f"compiled: {names}", "INFO-ACCESS"]
    assert "valid" in run("pysozu", "-c", CONFIG, "config", "check")
    embedded = "import dataplane.command as c, pathlib as p; print(p.Path(c.__file__).parent)"
    assert "valid" in run(
        "pysozu", "-c", f"{run('python', '-c', embedded).strip()}/default.toml", "config", "check"
    )
    assert run("python", "-c", LEFT_BEHIND).split() == ["None", "[]"]


def test_builtin_config_serves_and_stops_cleanly(podman: Podman, image: str) -> None:
    """`docker run --read-only ... pysozu`: the baked-in config, then routes added with the CLI
    through `docker exec`, traffic, metrics, read-only root, user 10001, `docker stop`."""
    volume = podman.volume("run")
    proxy = podman.run(image, what="builtin", options=["--network", "none",
                                                       *docker_run_options(volume)])  # fmt: skip
    proxy.wait_ready()
    status = proxy.pysozu("status")
    assert "RUNNING" in status.stdout and f"version {VERSION}" in status.stdout, status
    # A backend inside the container, routed with the CLI as the README's tour does.
    backend = proxy.podman("exec", "--detach", proxy.name, "python", "-m", "dataplane.main.demo",
                           "--address", "127.0.0.1:3000", "--body", "inner")  # fmt: skip
    assert backend.returncode == 0
    for args in (
        ["cluster", "add", "--id", "app"],
        ["backend", "add", "--id", "app", "--backend-id", "app-1", "--address", "127.0.0.1:3000"],
        ["frontend", "http", "add", "--address", "0.0.0.0:8080", "--hostname", "app.test",
         "id", "app"],
    ):  # fmt: skip
        done = proxy.pysozu(*args)
        assert done.returncode == 0, f"pysozu {' '.join(args)}: {done.stdout}{done.stderr}"
    fetch = (
        "import http.client, sys\n"
        "c = http.client.HTTPConnection('127.0.0.1', int(sys.argv[1]), timeout=10)\n"
        "c.request('GET', sys.argv[2], headers={'Host': sys.argv[3]})\n"
        "r = c.getresponse(); print(r.status, r.read().decode())\n"
    )

    def inside(port: int, path: str, host: str = "app.test") -> str:
        result = proxy.exec("python", "-c", fetch, str(port), path, host)
        assert result.returncode == 0, result.stderr
        return result.stdout.strip()

    wait_for("the route", lambda: inside(8080, "/") == "200 inner")
    assert inside(8080, "/", host="other.test").startswith("404 ")
    metrics = inside(9090, "/metrics")
    assert metrics.startswith("200 ") and "pysozu_" in metrics
    # Read-only root, writable /tmp and /run/pysozu, every process as 10001.
    assert "Read-only file system" in proxy.exec("touch", "/etc/pysozu/x").stderr
    assert proxy.exec("touch", "/tmp/x", "/run/pysozu/x").returncode == 0
    uids = proxy.python(
        "import os; print(sorted({os.stat(f'/proc/{p}').st_uid for p in os.listdir('/proc') "
        "if p.isdigit()}))"
    )
    assert uids.strip() == "[10001]"
    state = proxy.state()
    assert state["HostConfig"]["ReadonlyRootfs"] is True
    elapsed = proxy.stop(DRAIN_STOP_SECONDS)
    state = proxy.state()["State"]
    assert (state["Status"], state["ExitCode"]) == ("exited", 0), proxy.logs()
    assert elapsed < 15, f"docker stop took {elapsed:.1f}s with nothing in flight"


def mounted_config(http_port: int, metrics_port: int, backend_port: int) -> str:
    return f"""\
command_socket = "/run/pysozu/pysozu.sock"
worker_count = 2
log_level = "info"
log_target = "stdout"

[prometheus]
address = "127.0.0.1:{metrics_port}"

[[listeners]]
protocol = "http"
address = "127.0.0.1:{http_port}"

[clusters.app]
protocol = "http"
frontends = [{{ address = "127.0.0.1:{http_port}", hostname = "app.test" }}]
backends = [{{ address = "127.0.0.1:{backend_port}", backend_id = "app-1" }}]
"""


def test_mounted_config_serves_and_stop_drains(
    podman: Podman, image: str, backend: SlowBackend, tmp_path: Path
) -> None:
    """`docker run -v config.toml:/etc/pysozu/config.toml:ro ...`: traffic from the host,
    metrics scraped from the host, then `docker stop -t 35` while a request is in flight:
    the request completes, then the container exits 0, well before docker's SIGKILL."""
    http_port, metrics_port = free_port(), free_port()
    config = tmp_path / "config.toml"
    config.write_text(mounted_config(http_port, metrics_port, backend.port))
    config.chmod(0o644)
    volume = podman.volume("run")
    options = ["--network", "host", *docker_run_options(volume),
               "--volume", f"{config}:{CONFIG}:ro"]  # fmt: skip
    proxy = podman.run(image, what="mounted", options=options)
    proxy.wait_ready()
    assert get(http_port, "app.test") == (200, "backend /")
    assert get(http_port, "other.test")[0] == 404
    metrics = get(metrics_port, "metrics", "/metrics")
    assert metrics[0] == 200 and "pysozu_" in metrics[1]
    # A request in flight when `docker stop` comes.
    answer: dict[str, tuple[int, str]] = {}
    client = threading.Thread(
        target=lambda: answer.update(slow=get(http_port, "app.test", "/slow"))
    )
    client.start()
    assert backend.received_slow.wait(10), "the slow request never reached the backend"
    stopped: dict[str, float] = {}
    stopper = threading.Thread(target=lambda: stopped.update(after=proxy.stop(DRAIN_STOP_SECONDS)))
    stopper.start()
    # SIGTERM reached main through tini (a soft stop); the request in flight is still served.
    wait_for("the soft stop", lambda: "received SIGTERM: soft stop" in proxy.logs(), timeout=15)
    assert client.is_alive() and stopper.is_alive()
    backend.release.set()
    client.join(30)
    stopper.join(DRAIN_STOP_SECONDS + 30)
    assert answer.get("slow") == (200, "backend /slow")
    state = proxy.state()["State"]
    assert (state["Status"], state["ExitCode"]) == ("exited", 0), proxy.logs()
    assert stopped["after"] < DRAIN_STOP_SECONDS - 5, "the drain ran into docker's SIGKILL"
