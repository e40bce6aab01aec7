"""Running the scenarios: targets started side by side, runs interleaved (A B C A B C)."""

from __future__ import annotations

import contextlib
import shlex
import socket
import statistics
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from harness import configs, grpcload, layer4, loadgen, procfs, reconfig, tls
from harness.errors import ParseError, TargetFailed
from harness.idle import idle_connections
from harness.procs import (
    Supervisor,
    accepts,
    free_port,
    http_get,
    http_status,
    pinned,
    udp_exchange,
    wait_until,
)
from harness.profiling import flame_graph
from harness.results import (
    MEMORY_AFTER_S,
    MEMORY_HELD_S,
    Measurement,
    MemorySample,
    Outcome,
    ScenarioResult,
)
from harness.scenarios import Scenario
from harness.targets import Direct, Pysozu, Running, Target


@dataclass(frozen=True)
class Options:
    runs: int
    duration_s: float
    connections: int
    proxy_cpus: str | None
    load_cpus: str | None
    reconfig_changes: int
    fd_limit: int  # open files each process may have (inherited by the proxies)
    profile_prefix: Path | None = None  # flame graphs of pysozu's worker: <prefix>-flame-*.svg

    def capacity(self, scenario: Scenario) -> int:
        """Connections each proxy is configured for. Proxies reserve about two descriptors per
        connection (client and backend sides), so the open-file limit caps it."""
        return min(10_000 + scenario.idle_connections, self.fd_limit // 2 - 100)

    def idle_count(self, scenario: Scenario) -> int:
        """Idle connections actually held: the scenario's, unless the capacity is smaller."""
        room = self.capacity(scenario) - self.connections - 50
        return max(0, min(scenario.idle_connections, room))


class Bench:
    def __init__(
        self,
        options: Options,
        supervisor: Supervisor,
        workdir: Path,
        tools: dict[str, str],
        targets: list[Target],
    ) -> None:
        self.options, self.sup, self.workdir = options, supervisor, workdir
        self.tools, self.targets = tools, targets
        self.backend_port = 0
        self.udp_backend_port = 0  # started with the first UDP scenario
        self.grpc_backend_port = 0  # started with the first gRPC scenario
        self.backend_command: list[str] = []
        self.first_configs: dict[str, str] = {}
        self._tls: configs.TlsFiles | None = None

    def start_backend(self) -> None:
        """The nginx backend, on the load generator's core."""
        (self.workdir / "www").mkdir()
        (self.workdir / "www" / configs.LARGE_FILE_NAME).write_bytes(
            bytes(range(256)) * (configs.LARGE_FILE_SIZE // 256)
        )
        (self.workdir / "backend-tmp").mkdir(mode=0o777)
        self.backend_port = free_port()
        path = self.workdir / "backend.conf"
        path.write_text(
            configs.nginx_backend(self.workdir, self.backend_port, self.options.fd_limit)
        )
        command = [self.tools["nginx"], "-p", str(self.workdir), "-c", str(path)]
        proc = self.sup.start("backend", command, cpus=self.options.load_cpus)
        self.backend_command = pinned(command, self.options.load_cpus)
        wait_until(
            lambda: http_status(self.backend_port, "backend") == 200,
            proc=proc,
            what="the nginx backend",
            timeout_s=30,
        )

    def prepare_layer4(self, scenario: Scenario) -> None:
        """What a relay scenario needs beside the HTTP backend: the 100 MiB file, written once,
        or the UDP backend (nginx stream `return`), started once on the load core."""
        bulk = self.workdir / "www" / configs.BULK_FILE_NAME
        if scenario.path.endswith(configs.BULK_FILE_NAME) and not bulk.exists():
            block = bytes(range(256)) * 4096
            with bulk.open("wb") as out:
                for _ in range(configs.BULK_FILE_SIZE // len(block)):
                    out.write(block)
        if scenario.layer4 != "udp" or self.udp_backend_port:
            return
        port = free_port_udp()
        path = self.workdir / "udp-backend.conf"
        module = self.tools.get("nginx-stream", "")
        path.write_text(layer4.nginx_udp_backend(self.workdir, port, module))
        command = [self.tools["nginx"], "-p", str(self.workdir), "-c", str(path)]
        proc = self.sup.start("udp-backend", command, cpus=self.options.load_cpus)
        wait_until(
            lambda: udp_exchange(port, b"ready?") == layer4.UDP_REPLY,
            proc=proc,
            what="the nginx UDP backend",
            timeout_s=30,
        )
        self.udp_backend_port = port

    def prepare_grpc(self, scenario: Scenario) -> None:
        """The grpcio backend (harness/grpcload.py), started once on the load core, run by the
        Python that has grpcio (the repository's .venv); none: the rows say why."""
        python = self.tools.get("grpc-python")
        if not scenario.grpc or self.grpc_backend_port or not python:
            return
        port = free_port()
        proc = self.sup.start(
            "grpc-backend", grpcload.server_command(python, port), cpus=self.options.load_cpus
        )
        wait_until(lambda: accepts(port), proc=proc, what="the grpcio backend", timeout_s=30)
        self.grpc_backend_port = port

    def tls_files(self) -> configs.TlsFiles:
        if self._tls is None:
            self._tls = tls.self_signed(self.tools["openssl"], self.workdir)
        return self._tls

    def run(self, scenario: Scenario) -> ScenarioResult:
        print(f"\n== {scenario.name}: {scenario.title}", flush=True)
        result = ScenarioResult(scenario.name, scenario.title, [])
        idle = self.options.idle_count(scenario)
        if idle != scenario.idle_connections:
            result.notes.append(
                f"Held {idle:,} idle connections, not {scenario.idle_connections:,}: the "
                f"open-file limit here is {self.options.fd_limit:,} (raise it with `ulimit -n`)."
            )
        started: list[tuple[Target, Running, Outcome]] = []
        self.prepare_layer4(scenario)
        self.prepare_grpc(scenario)
        targets = self.targets
        if scenario.grpc and not any(t.name == "direct" for t in targets):
            targets = [Direct(), *targets]  # the client straight to the grpcio backend
        try:
            for target in targets:
                if target.name == "nghttpx" and not (scenario.http2 or scenario.grpc):
                    continue  # an HTTP/2 peer: no row elsewhere
                outcome = Outcome(target.name)
                result.outcomes.append(outcome)
                running = self._start(target, scenario, outcome)
                if running is not None:
                    started.append((target, running, outcome))
                    if running.command:
                        command = pinned(running.command, self.options.proxy_cpus)
                        result.commands.append(f"# {target.name}: {shlex.join(command)}")
            ready = [
                f"{running.name} {running.ready_after_s:.1f} s"
                for _, running, _ in started
                if running.ready_after_s is not None
            ]
            if ready:
                result.notes.append("Start-up, to the first routed request: " + ", ".join(ready))
                print("  started: " + ", ".join(ready), flush=True)
            if scenario.idle_requests:
                for target, running, outcome in started:
                    if outcome.skipped is None and running.proc:
                        self._memory(scenario, target, running, result)
            for run_index in range(self.options.runs):
                for target, running, outcome in started:
                    if outcome.skipped is None:
                        self._measure(scenario, target, running, outcome, result, run_index)
            pysozu = next((s for s in started if s[0].name == "pysozu"), None)
            if scenario.reconfiguration_latency and pysozu and pysozu[2].skipped is None:
                self._reconfiguration_latency(pysozu[0], pysozu[1], result)
        finally:
            for target, running, _ in started:
                target.stop(self.sup, running)
        if scenario.layer4:
            moved = scenario.request_body + (
                configs.expected_body_size(scenario.path) if scenario.layer4 == "tcp" else 0
            )
            reference = "haproxy" if scenario.layer4 == "tcp" else "nginx"
            result.notes += layer4.relay_notes(result.outcomes, moved, reference)
        if scenario.access_logs:  # checked once stopped: buffered lines are written by then
            result.notes += _silent_access_logs(started)
            result.notes += _access_log_cost(result.outcomes)
            for note in result.notes[-1:]:
                print(f"  {note}", flush=True)
        return result

    def _memory(
        self, scenario: Scenario, target: Target, running: Running, result: ScenarioResult
    ) -> None:
        """RSS of the serving processes before, while and after the scenario's idle connections
        (each with one request answered) are held."""
        count = self.options.idle_count(scenario)
        workers = running.worker_pids()
        request = f"GET {scenario.path} HTTP/1.1\r\nHost: {configs.TARGET_HOST}\r\n\r\n"
        before = procfs.rss_bytes(workers)
        try:
            with idle_connections(running.port, count, request=request.encode()):
                time.sleep(MEMORY_HELD_S)
                held = procfs.rss_bytes(workers)
        except TargetFailed as error:
            result.notes.append(f"{target.name}: memory not measured: {error}")
            return
        time.sleep(MEMORY_AFTER_S)
        sample = MemorySample(count, before, held, procfs.rss_bytes(workers))
        result.memory[target.name] = sample
        print(
            f"  memory {target.name:8} {sample.before / 1e6:.1f} MB -> {sample.held / 1e6:.1f} MB "
            f"held -> {sample.after / 1e6:.1f} MB after",
            flush=True,
        )

    def _reconfiguration_latency(
        self, pysozu: Target, running: Running, result: ScenarioResult
    ) -> None:
        assert isinstance(pysozu, Pysozu) and running.config_path is not None
        try:
            result.reconfiguration = reconfig.latencies(
                pysozu.cli(running),
                running.config_path.parent / "pysozu.sock",
                running.port,
                self.backend_port,
                _reconfig_clusters(self.options.reconfig_changes),
            )
        except (OSError, TargetFailed) as error:
            result.notes.append(f"Reconfiguration latency not measured: {error}")

    def _start(self, target: Target, scenario: Scenario, outcome: Outcome) -> Running | None:
        if scenario.http2 and "h2load" not in self.tools:
            outcome.skipped = "h2load not installed"
            return None
        if scenario.grpc and not self.grpc_backend_port:
            outcome.skipped = "no Python with grpcio (the repository's .venv has it)"
            return None
        directory = self.workdir / scenario.name / target.name
        directory.mkdir(parents=True)
        directory.chmod(0o755)  # nginx workers (user nobody) read below it
        setup = configs.ProxySetup(
            workdir=directory,
            listen_port=free_port_udp() if scenario.layer4 == "udp" else free_port(),
            backend_port=(
                self.udp_backend_port
                if scenario.layer4 == "udp"
                else self.grpc_backend_port or self.backend_port
                if scenario.grpc
                else self.backend_port
            ),
            clusters=scenario.clusters,
            access_log=directory / "access.log" if scenario.access_logs else None,
            tls=self.tls_files() if scenario.tls else None,
            tls_resumption=scenario.tls_resumption,
            http2=scenario.http2 or scenario.grpc,
            grpc=scenario.grpc,
            max_connections=self.options.capacity(scenario),
            fd_limit=self.options.fd_limit,
            extra_clusters_without_backend=(
                _reconfig_clusters(self.options.reconfig_changes)
                if scenario.reconfiguration_latency
                else ()
            ),
            # A feature pysozu lacks shows as a listener that never answers: do not wait long.
            ready_timeout_s=(10.0 if scenario.needs else 30.0) + scenario.clusters / 50,
            layer4=scenario.layer4,
            nginx_stream_module=self.tools.get("nginx-stream", ""),
        )
        try:
            running = target.start(self.sup, setup, self.options.proxy_cpus)
        except TargetFailed as error:
            reason = str(error)
            if target.name == "pysozu" and scenario.needs:
                reason = f"pysozu does not serve {'/'.join(sorted(scenario.needs))} yet ({error})"
            outcome.skipped = reason
            print(f"  {target.name}: skipped: {reason}", flush=True)
            return None
        try:
            if scenario.grpc:
                self._check_grpc(running, scenario)
            else:
                _check_answer(running, scenario)
        except TargetFailed as error:
            outcome.skipped = str(error)
            print(f"  {target.name}: skipped: {error}", flush=True)
            target.stop(self.sup, running)
            return None
        if running.config_path and not self.first_configs.get(target.name):
            text = running.config_path.read_text()
            self.first_configs[target.name] = text if len(text) < 20_000 else ""
        return running

    def _check_grpc(self, running: Running, scenario: Scenario) -> None:
        """One call through the target must come back with its bytes."""
        command = self._load_command(scenario, running.port, running.proc is None, calls=1)
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=30)
        except subprocess.TimeoutExpired:
            raise TargetFailed("a gRPC call got no answer in 30 s") from None
        if done.returncode != 0:
            detail = (done.stderr + done.stdout).strip()[-400:]
            raise TargetFailed(f"a gRPC call failed: {detail}")

    def _load_command(
        self, scenario: Scenario, port: int, direct: bool = False, calls: int = 0
    ) -> list[str]:
        scheme = "https" if scenario.tls else "http"
        connections = scenario.connections or self.options.connections
        if scenario.grpc:
            tls = scenario.tls and not direct  # the backend itself speaks h2c only
            return grpcload.client_command(
                self.tools["grpc-python"],
                f"127.0.0.1:{port}",
                duration_s=self.options.duration_s,
                concurrency=connections,
                ca=self.tls_files().certificate if tls else None,
                authority=configs.TARGET_HOST,
                calls=calls,
            )
        if scenario.layer4 == "udp":
            return loadgen.udpload_command(
                port,
                flows=connections,
                duration_s=self.options.duration_s,
                size=layer4.UDP_PAYLOAD_SIZE,
            )
        script = None
        if scenario.request_body:
            script = self.workdir / f"post-{scenario.request_body}.lua"
            script.write_text(layer4.wrk_body_script(scenario.request_body))
        if scenario.http2:
            return loadgen.h2load_command(
                self.tools["h2load"],
                f"https://{configs.TARGET_HOST}:{port}{scenario.path}",
                connections=self.options.connections,
                duration_s=self.options.duration_s,
                connect_to=f"127.0.0.1:{port}",
            )
        return loadgen.wrk_command(
            self.tools["wrk"],
            f"{scheme}://127.0.0.1:{port}{scenario.path}",
            connections=connections,
            duration_s=self.options.duration_s,
            headers={"Host": configs.TARGET_HOST, **scenario.headers},
            timeout_s=scenario.timeout_s,
            script=script,
        )

    def _measure(
        self,
        scenario: Scenario,
        target: Target,
        running: Running,
        outcome: Outcome,
        result: ScenarioResult,
        run_index: int,
    ) -> None:
        command = self._load_command(scenario, running.port, running.proc is None)
        command = pinned(command, self.options.load_cpus)
        if run_index == 0:
            result.commands.append(f"# load on {target.name}: {shlex.join(command)}")
        pids = running.all_pids()
        try:
            with self._beside_load(scenario, target, running, result, run_index):
                user_before, system_before = procfs.cpu_split(pids)
                completed = subprocess.run(
                    command, capture_output=True, text=True, timeout=self.options.duration_s + 60
                )
                user_after, system_after = procfs.cpu_split(pids)
                cpu_used = user_after + system_after - user_before - system_before
                system_used = system_after - system_before
                rss = procfs.rss_bytes(running.worker_pids()) if running.proc else None
        except (OSError, TargetFailed, subprocess.TimeoutExpired) as error:
            outcome.skipped = f"run {run_index + 1} failed: {error}"
            print(f"  {target.name}: {outcome.skipped}", flush=True)
            return
        try:
            parse = loadgen.parse_h2load if scenario.http2 else loadgen.parse_wrk
            parse = loadgen.parse_udpload if scenario.layer4 == "udp" else parse
            parse = loadgen.parse_grpcload if scenario.grpc else parse
            load = parse(completed.stdout)
        except ParseError as error:
            outcome.skipped = f"load generator failed: {completed.stderr.strip() or error}"
            print(f"  {target.name}: {outcome.skipped}", flush=True)
            return
        if running.proc and running.proc.poll() is not None:
            outcome.skipped = (
                f"exited with status {running.proc.returncode} during run {run_index + 1}"
            )
            print(f"  {target.name}: {outcome.skipped}", flush=True)
            return
        measurement = Measurement(
            load,
            cpu_used if running.proc else None,
            rss,
            system_used if running.proc else None,
        )
        outcome.runs.append(measurement)
        cpu = measurement.cpu_us_per_request
        print(
            f"  run {run_index + 1} {target.name:8} {load.requests_per_s:>10,.0f} req/s  "
            f"p99 {load.p99_ms if load.p99_ms is not None else '-'} ms  "
            f"cpu {f'{cpu:.1f}' if cpu is not None else '-'} µs/req  errors {load.errors}",
            flush=True,
        )

    @contextlib.contextmanager
    def _beside_load(
        self,
        scenario: Scenario,
        target: Target,
        running: Running,
        result: ScenarioResult,
        run_index: int,
    ) -> Iterator[None]:
        """What runs beside the load: idle connections, pysozu's reconfiguration churn, py-spy."""
        with contextlib.ExitStack() as stack:
            idle = self.options.idle_count(scenario)
            if idle and running.proc:
                stack.enter_context(idle_connections(running.port, idle))
            churn = None
            if scenario.changes_per_s and target.name == "pysozu":
                churn = stack.enter_context(
                    reconfig.Churn(
                        running.config_path.parent / "pysozu.sock",  # type: ignore[union-attr]
                        f"c{scenario.clusters - 1}",
                        self.backend_port,
                        scenario.changes_per_s,
                    )
                )
            workers = running.worker_pids()
            prefix = self.options.profile_prefix
            if prefix and target.name == "pysozu" and run_index == 0 and workers:
                output = prefix.with_name(f"{prefix.name}-flame-{scenario.name}-pysozu.svg")
                stack.enter_context(
                    flame_graph(
                        self.sup, self.tools["py-spy"], workers[0], output, self.options.duration_s
                    )
                )
                result.notes.append(f"pysozu's first run was profiled with py-spy: {output}")
            yield
        if churn is not None:
            result.notes.append(
                f"Run {run_index + 1}: pysozu applied {churn.applied} changes "
                f"({churn.failed} failed) during the run."
            )


def _access_log_cost(outcomes: list[Outcome]) -> list[str]:
    """pysozu with and without access logs and metrics, measured in the same interleaved runs:
    what they cost, over all the runs (a median of each target's noisy runs can even show
    them free); then run by run, each pysozu run against the pysozu-bare run that followed it,
    whose median a disturbed run moves least, and their spread."""
    by_name = {outcome.target: outcome.runs for outcome in outcomes}
    on, off = by_name.get("pysozu"), by_name.get("pysozu-bare")
    if not on or not off:
        return []

    def rate(runs: list[Measurement]) -> float:
        return sum(m.load.requests_per_s for m in runs) / len(runs)

    def cpu(runs: list[Measurement]) -> float | None:
        seconds = [m.proxy_cpu_s for m in runs]
        requests = sum(m.load.requests for m in runs)
        if None in seconds or not requests:
            return None
        return sum(s for s in seconds if s is not None) * 1e6 / requests

    with_logs, without = rate(on), rate(off)
    text = (
        f"Access logs and metrics cost pysozu {1 - with_logs / without:.1%} of its requests/s "
        f"({with_logs:,.0f} with, {without:,.0f} without, mean of {len(on)} runs)"
    )
    cpu_on, cpu_off = cpu(on), cpu(off)
    if cpu_on is not None and cpu_off is not None:
        text += (
            f" and {cpu_on - cpu_off:.1f} µs of CPU per request, {cpu_on / cpu_off - 1:.1%} "
            f"({cpu_on:.1f} with, {cpu_off:.1f} without, all runs' CPU over all their requests)"
        )
    paired = sorted(
        1 - a.load.requests_per_s / b.load.requests_per_s
        for a, b in zip(on, off, strict=False)
        if b.load.requests_per_s
    )
    if len(paired) > 1:
        text += (
            f"; run by run, {statistics.median(paired):.1%} of requests/s "
            f"(median of {len(paired)} pairs, from {paired[0]:.1%} to {paired[-1]:.1%})"
        )
    return [text + "."]


def _silent_access_logs(started: list[tuple[Target, Running, Outcome]]) -> list[str]:
    """Access logs on must mean lines written: say so when a target wrote none."""
    notes = []
    for target, running, outcome in started:
        if target.name == "pysozu-bare":
            continue  # off on purpose
        log = running.config_path.parent / "access.log" if running.config_path else None
        if outcome.runs and log is not None and (not log.exists() or log.stat().st_size == 0):
            notes.append(f"Warning: {running.name} wrote no access log lines ({log}).")
    return notes


def _check_answer(running: Running, scenario: Scenario) -> None:
    """The measured request must get the backend's exact answer through the target: a proxy
    that answers an error page quickly must not look fast."""
    if scenario.layer4 == "udp":
        reply = udp_exchange(running.port, b"x" * layer4.UDP_PAYLOAD_SIZE, timeout_s=2.0)
        if reply != layer4.UDP_REPLY:
            raise TargetFailed(f"a datagram was answered {reply!r}, not {layer4.UDP_REPLY!r}")
        return
    expected = configs.expected_body_size(scenario.path)
    answer = http_get(
        running.port,
        configs.TARGET_HOST,
        scenario.path,
        tls=scenario.tls,
        max_bytes=expected + 65536,
    )
    if answer is None or answer[0] != 200 or len(answer[1]) != expected:
        got = "no answer" if answer is None else f"{answer[0]} with {len(answer[1])} bytes"
        raise TargetFailed(f"GET {scenario.path} answered {got}, not 200 with {expected} bytes")


def free_port_udp() -> int:
    """A port free for UDP on 127.0.0.1 (and, as far as one can tell, for TCP)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _reconfig_clusters(changes: int) -> tuple[str, ...]:
    """Clusters without backends: `changes` for the CLI, as many for the command socket."""
    return tuple(f"reconf-{i}" for i in range(2 * changes))
