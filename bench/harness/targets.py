"""The things a load generator can be pointed at: nginx, HAProxy, pysozu, or the backend itself.

A target writes its configuration, starts pinned to the proxy's core, waits until it routes a
request to the backend, and says which processes to measure: all of its processes for CPU time
(an idle master costs nothing), its workers for memory.
"""

from __future__ import annotations

import contextlib
import subprocess
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol

from harness import configs, layer4, procfs
from harness.errors import TargetFailed
from harness.procs import Supervisor, accepts, http_status, last_lines, udp_exchange, wait_until


@dataclass
class Running:
    name: str
    port: int
    command: list[str]
    proc: subprocess.Popen[bytes] | None  # None: nothing of ours between wrk and the backend
    workers_are_children: bool = True
    config_path: Path | None = None
    ready_after_s: float | None = None  # from start to the first request routed

    def all_pids(self) -> list[int]:
        return procfs.process_tree(self.proc.pid) if self.proc else []

    def worker_pids(self) -> list[int]:
        """The processes that serve requests (nginx's and pysozu's children; HAProxy itself)."""
        if self.proc is None:
            return []
        tree = self.all_pids()
        return tree[1:] if self.workers_are_children and len(tree) > 1 else tree[:1]


class Target(Protocol):
    name: str

    def start(self, sup: Supervisor, setup: configs.ProxySetup, cpus: str | None) -> Running: ...

    def stop(self, sup: Supervisor, running: Running) -> None: ...


def _wait_routed(sup: Supervisor, running: Running, setup: configs.ProxySetup) -> None:
    """Wait until a request through the target reaches the backend; fail with its last words."""
    assert running.proc is not None

    def routed() -> bool:
        if setup.layer4 == "udp":
            return udp_exchange(running.port, b"ready?") == layer4.UDP_REPLY
        if setup.grpc:  # it accepts (a real call is checked next: a GET is no gRPC call)
            return accepts(running.port)
        return http_status(running.port, configs.TARGET_HOST, tls=setup.tls is not None) == 200

    try:
        wait_until(
            routed,
            proc=running.proc,
            what=running.name,
            timeout_s=setup.ready_timeout_s,
        )
    except TargetFailed as error:
        cpu = procfs.cpu_seconds(running.all_pids())
        logs = [f"{cpu:.1f} s of CPU used", sup.stderr_tail(running.name)]
        logs += [_tail(p) for p in sorted(setup.workdir.glob("*.log")) if p.name != "access.log"]
        detail = " / ".join(log for log in logs if log)
        raise TargetFailed(f"{error}: {detail}" if detail else str(error)) from None


class Direct:
    """wrk straight to the backend: the ceiling of this machine's load generator and backend."""

    name = "direct"

    def start(self, sup: Supervisor, setup: configs.ProxySetup, cpus: str | None) -> Running:
        if setup.tls and not setup.grpc:  # the gRPC client goes h2c straight to its backend
            raise TargetFailed("the backend speaks plain HTTP only")
        return Running(self.name, setup.backend_port, [], None)

    def stop(self, sup: Supervisor, running: Running) -> None:
        pass


class _Process:
    """A target that is a process tree of ours."""

    name: str

    def _launch(
        self,
        sup: Supervisor,
        running: Running,
        setup: configs.ProxySetup,
        cpus: str | None,
        stdout: Path | None = None,
    ) -> Running:
        started = time.monotonic()
        running.proc = sup.start(self.name, running.command, cpus=cpus, stdout=stdout)
        try:
            _wait_routed(sup, running, setup)
        except TargetFailed:
            sup.stop(running.proc)  # a proxy still loading must not steal the core from others
            raise
        running.ready_after_s = time.monotonic() - started
        return running

    def stop(self, sup: Supervisor, running: Running) -> None:
        if running.proc:
            sup.stop(running.proc)


class Nginx(_Process):
    name = "nginx"

    def __init__(self, binary: str) -> None:
        self.binary = binary

    def start(self, sup: Supervisor, setup: configs.ProxySetup, cpus: str | None) -> Running:
        if setup.grpc:
            raise TargetFailed("nginx-light has no grpc module: not configured for gRPC here")
        path = setup.workdir / "nginx.conf"
        path.write_text(layer4.nginx_stream(setup) if setup.layer4 else configs.nginx_proxy(setup))
        (setup.workdir / "nginx-tmp").mkdir(exist_ok=True)
        (setup.workdir / "nginx-tmp").chmod(0o777)  # workers run as nobody
        command = [self.binary, "-p", str(setup.workdir), "-c", str(path)]
        running = Running(self.name, setup.listen_port, command, None, config_path=path)
        return self._launch(sup, running, setup, cpus)


class HAProxy(_Process):
    name = "haproxy"

    def __init__(self, binary: str) -> None:
        self.binary = binary

    def start(self, sup: Supervisor, setup: configs.ProxySetup, cpus: str | None) -> Running:
        if setup.layer4 == "udp":
            raise TargetFailed("HAProxy (community edition) does not relay UDP")
        if setup.grpc:
            raise TargetFailed("HAProxy is not configured for gRPC here")
        if setup.layer4:
            config, host_map = layer4.haproxy_tcp(setup), ""
        else:
            config, host_map = configs.haproxy_proxy(setup)
        path = setup.workdir / "haproxy.cfg"
        path.write_text(config)
        (setup.workdir / "haproxy-hosts.map").write_text(host_map)
        command = [self.binary, "-db", "-f", str(path)]
        running = Running(
            self.name,
            setup.listen_port,
            command,
            None,
            workers_are_children=False,
            config_path=path,
        )
        # Access logs go to HAProxy's stdout ("log stdout"), redirected to the log file.
        return self._launch(sup, running, setup, cpus, stdout=setup.access_log)


class Nghttpx(_Process):
    """nghttp2's proxy, for the HTTP/2 and gRPC scenarios (one worker process under its main)."""

    name = "nghttpx"

    def __init__(self, binary: str) -> None:
        self.binary = binary

    def start(self, sup: Supervisor, setup: configs.ProxySetup, cpus: str | None) -> Running:
        if not (setup.http2 or setup.grpc):
            raise TargetFailed("nghttpx is measured in the HTTP/2 and gRPC scenarios only")
        try:
            text = configs.nghttpx_proxy(setup)
        except ValueError as error:
            raise TargetFailed(f"nghttpx: {error}") from None
        path = setup.workdir / "nghttpx.conf"
        path.write_text(text)
        command = [self.binary, f"--conf={path}"]
        running = Running(self.name, setup.listen_port, command, None, config_path=path)
        return self._launch(sup, running, setup, cpus)


class Pysozu(_Process):
    """pysozu's main process started pinned: the worker it spawns inherits the CPU affinity."""

    name = "pysozu"

    def __init__(self, executable: str) -> None:
        self.executable = executable

    def start(self, sup: Supervisor, setup: configs.ProxySetup, cpus: str | None) -> Running:
        path = setup.workdir / "pysozu.toml"
        path.write_text(layer4.pysozu_relay(setup) if setup.layer4 else configs.pysozu_proxy(setup))
        command = [self.executable, "start", "-c", str(path)]
        running = Running(self.name, setup.listen_port, command, None, config_path=path)
        return self._launch(sup, running, setup, cpus)

    def cli(self, running: Running, *args: str) -> list[str]:
        assert running.config_path is not None
        return [self.executable, "-c", str(running.config_path), *args]

    def stop(self, sup: Supervisor, running: Running) -> None:
        """`pysozu shutdown` first (a graceful stop), then make sure."""
        if running.proc and running.proc.poll() is None:
            with contextlib.suppress(OSError, subprocess.TimeoutExpired):
                subprocess.run(
                    self.cli(running, "shutdown"), capture_output=True, timeout=10, check=False
                )
        super().stop(sup, running)


class PysozuBare(Pysozu):
    """pysozu with access logs and metrics off, whatever the scenario says (`metrics disable`
    once it serves). Beside `pysozu` in the access-logs scenario it measures what the two
    cost, in the same interleaved runs: on this kind of shared machine, runs minutes apart
    differ more than the cost itself."""

    name = "pysozu-bare"

    def start(self, sup: Supervisor, setup: configs.ProxySetup, cpus: str | None) -> Running:
        running = super().start(sup, replace(setup, access_log=None), cpus)
        disable = subprocess.run(
            self.cli(running, "metrics", "disable"),
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        if disable.returncode != 0:
            self.stop(sup, running)
            raise TargetFailed(f"pysozu metrics disable failed: {disable.stderr.strip()}")
        return running


class PysozuTickets(Pysozu):
    """pysozu sending 2 TLS 1.3 session tickets per full handshake, as nginx (OpenSSL's
    default) does, instead of sozu's 4: each ticket costs the server a session serialized,
    encrypted and MACed. Beside `pysozu` in the HTTPS scenarios it compares like with like."""

    name = "pysozu-tickets2"

    def start(self, sup: Supervisor, setup: configs.ProxySetup, cpus: str | None) -> Running:
        return super().start(sup, replace(setup, tls13_tickets=2), cpus)


def _tail(path: Path) -> str:
    return last_lines(path.read_text(errors="replace")) if path.exists() else ""
