"""The pod's own commands against a real proxy: the chart's config, probes and preStop drain,
and tini's process-group SIGTERM, run on 127.0.0.1 with the pysozu installed in this venv.

Paths and ports are moved into a temporary directory and free loopback ports; everything
else is taken verbatim from the rendered Deployment.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from chart_tooling import container, one, pod_spec

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

POD_CONFIG = "/etc/pysozu/config.toml"


@dataclass
class Pod:
    """The proxy container's commands, rewritten for this machine."""

    config: Path
    metrics_port: int
    start: list[str]
    startup: str  # the probes' paths, GET on the metrics port as the kubelet does
    readiness: str
    liveness: str
    pre_stop: list[str]
    drain_seconds: float
    env: dict[str, str]

    def run(self, command: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            command, env=self.env, capture_output=True, text=True, timeout=timeout, check=False
        )

    def probe(self, path: str) -> bool:
        """What the kubelet's httpGet probe decides: a 2xx or 3xx answer in time."""
        try:
            url = f"http://127.0.0.1:{self.metrics_port}{path}"
            with urllib.request.urlopen(url, timeout=5) as response:
                return 200 <= response.status < 400
        except (urllib.error.URLError, OSError):
            return False


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture
def pod(default_objects: list[dict[str, Any]], tmp_path: Path) -> Pod:
    text: str = one(default_objects, "ConfigMap")["data"]["config.toml"]
    spec = pod_spec(default_objects)
    proxy = container(spec, "pysozu")
    ports = {p["name"]: p["containerPort"] for p in proxy["ports"]}
    local_ports = {name: free_port() for name in ports}
    text = text.replace("/run/pysozu/", f"{tmp_path}/")
    for name, port in ports.items():
        text = text.replace(f'"0.0.0.0:{port}"', f'"127.0.0.1:{local_ports[name]}"')
    config = tmp_path / "config.toml"
    config.write_text(text)

    def local(command: list[str]) -> list[str]:
        return [part.replace(POD_CONFIG, str(config)) for part in command]

    hook = local(proxy["lifecycle"]["preStop"]["exec"]["command"])
    hook[-1] = re.sub(r"^sleep \d+;", "sleep 0;", hook[-1])  # skip the deregistration wait
    timeout_ms = hook[-1].split(" -t ", 1)[1].split()[0]
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    return Pod(
        config=config,
        metrics_port=local_ports["metrics"],
        start=local(proxy["args"]),
        startup=proxy["startupProbe"]["httpGet"]["path"],
        readiness=proxy["readinessProbe"]["httpGet"]["path"],
        liveness=proxy["livenessProbe"]["httpGet"]["path"],
        pre_stop=hook,
        drain_seconds=int(timeout_ms) / 1000,
        env=env,
    )


@pytest.fixture
def proxy(pod: Pod) -> Iterator[subprocess.Popen[bytes]]:
    """`pysozu start` as the container runs it, in its own process group (as under tini)."""
    process = subprocess.Popen(
        pod.start, env=pod.env, start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        yield process
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)


def wait_for_startup_probe(pod: Pod) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if pod.probe(pod.startup):
            return
        time.sleep(0.3)
    pytest.fail("the startup probe never passed")


def assert_group_gone(process: subprocess.Popen[bytes], within: float) -> None:
    """main exits cleanly and no worker of its process group is left behind."""
    assert process.wait(within) == 0
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            os.killpg(process.pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    pytest.fail("workers outlived the main process")


def test_probes_pass_only_while_the_proxy_runs(pod: Pod, proxy: subprocess.Popen[bytes]) -> None:
    wait_for_startup_probe(pod)
    # Startup passes with one worker running, readiness once every worker runs: the kubelet
    # probes readiness again until it passes, and so does this (a loaded machine showed the
    # gap between the two).
    deadline = time.monotonic() + 30
    while not pod.probe(pod.readiness):
        assert time.monotonic() < deadline, "the readiness probe never passed"
        time.sleep(0.3)
    assert pod.probe(pod.liveness)
    os.killpg(proxy.pid, signal.SIGKILL)
    proxy.wait(10)
    assert not pod.probe(pod.liveness)


def test_pre_stop_hook_drains_and_stops_within_the_drain_time(
    pod: Pod, proxy: subprocess.Popen[bytes]
) -> None:
    wait_for_startup_probe(pod)
    started = time.monotonic()
    hook = pod.run(pod.pre_stop, timeout=pod.drain_seconds + 5)
    assert hook.returncode == 0, hook.stderr
    assert_group_gone(proxy, within=pod.drain_seconds - (time.monotonic() - started))


def test_process_group_sigterm_soft_stops(pod: Pod, proxy: subprocess.Popen[bytes]) -> None:
    """What `tini -g` does on `docker stop` or when the kubelet stops the container."""
    wait_for_startup_probe(pod)
    os.killpg(proxy.pid, signal.SIGTERM)
    assert_group_gone(proxy, within=pod.drain_seconds)


def test_metrics_endpoint_answers_on_the_scraped_port(
    pod: Pod, proxy: subprocess.Popen[bytes]
) -> None:
    wait_for_startup_probe(pod)
    url = f"http://127.0.0.1:{pod.metrics_port}/metrics"
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            assert response.status == 200
            assert response.headers["Content-Type"].startswith("text/plain")
    except urllib.error.URLError as error:
        pytest.fail(f"nothing serves the config's [prometheus] address ({url}): {error}")
