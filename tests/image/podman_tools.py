"""podman, driven as a user drives `docker`: build the image, run, exec, stop and inspect
containers. Every container and volume is named after this test process and removed by the
fixtures that made it (by name, never by pattern)."""

from __future__ import annotations

import http.client
import itertools
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

REPO = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO / "scripts" / "build-image"
SHIM = REPO / "scripts" / "oci-runtime-shim"
CONFIG = "/etc/pysozu/config.toml"
T = TypeVar("T")
# Lines for the end-of-run summary (conftest.py): the build, the image's size.
REPORT: list[str] = []
_names = itertools.count(1)


class PodmanError(AssertionError):
    """A podman command failed; the message carries its output."""


def unavailable_reason() -> tuple[str, bool] | None:
    """Why the image tests cannot run here, and whether that is a skip (True) or a failure.

    Only a machine where podman cannot exist skips: not installed and not root (scripts/test
    installs podman, mmdebstrap and runc as root, as CI runs it). Root without them fails.
    """
    missing = [tool for tool in ("podman", "mmdebstrap", "runc") if not _which(tool)]
    if not missing:
        return None
    message = f"{', '.join(missing)} not installed"
    if os.geteuid() != 0:
        return f"{message} and not root: the image is neither built nor run here", True
    return f"{message}: run scripts/test as root (it installs them) or apt-get install them", False


def _which(tool: str) -> str | None:
    return shutil.which(tool, path=f"{os.environ.get('PATH', '')}:/usr/sbin:/sbin")


def base_image() -> str:
    """The base scripts/build-image built the image on (made already: this only looks it up)."""
    result = subprocess.run(
        [sys.executable, str(BUILD_SCRIPT), "--base-only", "--quiet"],
        capture_output=True, text=True, timeout=900, check=True,
    )  # fmt: skip
    return result.stdout.strip()


def wait_for(what: str, check: Callable[[], T | None], timeout: float = 30.0) -> T:
    """Poll `check` until it returns something truthy; fail naming `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            result = check()
        except (OSError, http.client.HTTPException) as error:
            last = error
        else:
            if result:
                return result
            last = result
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


class Podman:
    """The podman CLI with the runtime this machine needs (scripts/oci-runtime-shim)."""

    def __init__(self, runtime_dir: Path) -> None:
        runtime = runtime_dir / "runc"  # podman decides what a runtime can do by its name
        shutil.copy(SHIM, runtime)
        runtime.chmod(0o755)
        self.prefix = ["podman", "--runtime", str(runtime)]
        self.owned: list[tuple[str, str]] = []  # ("container" | "volume", name)

    def __call__(
        self, *args: str, timeout: float = 60, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [*self.prefix, *args], capture_output=True, text=True, timeout=timeout, check=False
        )
        if check and result.returncode != 0:
            raise PodmanError(
                f"podman {' '.join(args)} exited {result.returncode}:\n"
                f"{result.stdout[-2000:]}{result.stderr[-4000:]}"
            )
        return result

    def name(self, what: str) -> str:
        return f"pysozu-test-{os.getpid()}-{what}-{next(_names)}"

    def volume(self, what: str) -> str:
        name = self.name(what)
        self("volume", "create", name)
        self.owned.append(("volume", name))
        return name

    def run(self, image: str, *command: str, what: str, options: list[str]) -> Container:
        """`docker run -d` with these options; the container is removed at cleanup."""
        name = self.name(what)
        self.owned.append(("container", name))
        self("run", "--detach", "--name", name, *options, image, *command)
        return Container(self, name)

    def cleanup(self) -> None:
        for kind, name in reversed(self.owned):
            if kind == "container":
                self("rm", "--force", "--volumes", "--time", "0", name, check=False)
            else:
                self("volume", "rm", "--force", name, check=False)
        self.owned.clear()

    def image_facts(self, image: str) -> dict[str, Any]:
        facts: dict[str, Any] = json.loads(self("image", "inspect", image).stdout)[0]
        return facts


class Container:
    def __init__(self, podman: Podman, name: str) -> None:
        self.podman, self.name = podman, name

    def exec(self, *command: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        """`docker exec`: the command runs as the image's user, its result is returned."""
        return self.podman("exec", self.name, *command, timeout=timeout, check=False)

    def pysozu(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self.exec("pysozu", "-c", CONFIG, *args)

    def python(self, code: str) -> str:
        """Run Python in the container (it has no curl); return stdout, fail on error."""
        result = self.exec("python", "-c", code)
        assert result.returncode == 0, f"{code}\n{result.stdout}{result.stderr}\n{self.logs()}"
        return result.stdout

    def wait_ready(self, timeout: float = 60) -> None:
        """Until `pysozu status` (the image's HEALTHCHECK) answers."""
        try:
            wait_for(f"{self.name}: pysozu status", lambda: self.pysozu("status").returncode == 0,
                     timeout)  # fmt: skip
        except AssertionError as error:
            raise AssertionError(f"{error}\n{self.logs()}") from None

    def state(self) -> dict[str, Any]:
        inspected: dict[str, Any] = json.loads(self.podman("inspect", self.name).stdout)[0]
        return inspected

    def stop(self, seconds: int) -> float:
        """`docker stop -t seconds`; returns how long it took."""
        started = time.monotonic()
        self.podman("stop", "--time", str(seconds), self.name, timeout=seconds + 30)
        return time.monotonic() - started

    def logs(self) -> str:
        result = self.podman("logs", self.name, check=False)
        return f"--- {self.name} ---\n{(result.stdout + result.stderr)[-6000:]}"
