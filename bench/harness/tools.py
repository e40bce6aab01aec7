"""The external programs the benchmark needs, installing them from Debian when missing,
and the facts (versions, machine) printed with every result."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from pathlib import Path

from harness.errors import ToolMissing

# program -> Debian package providing it
PACKAGES = {
    "wrk": "wrk",
    "nginx": "nginx-light",
    "haproxy": "haproxy",
    "h2load": "nghttp2-client",
    "nghttpx": "nghttp2-proxy",
    "openssl": "openssl",
    "taskset": "util-linux",
}
STREAM_PACKAGE = "libnginx-mod-stream"  # nginx's stream module, for the relay scenarios
STREAM_MODULE = Path("/usr/lib/nginx/modules/ngx_stream_module.so")
_SEARCH_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])


def which(program: str) -> str | None:
    return shutil.which(program, path=_SEARCH_PATH)


def missing(programs: list[str]) -> list[str]:
    return [p for p in programs if which(p) is None]


def ensure(programs: list[str], *, install: bool) -> dict[str, str]:
    """Paths of the programs; installs the missing ones with apt-get when allowed."""
    absent = missing(programs)
    if absent and install:
        _apt_install(sorted({PACKAGES[p] for p in absent}))
        absent = missing(programs)
    if absent:
        packages = " ".join(sorted({PACKAGES[p] for p in absent}))
        raise ToolMissing(
            f"missing: {', '.join(absent)}; install them with "
            f"`apt-get install {packages}` (or run bench/run without --no-install, as root)"
        )
    return {p: str(which(p)) for p in programs}


def nginx_stream_module(nginx: str, *, install: bool) -> str:
    """The `load_module` path of nginx's stream module ("" when nginx has it built in),
    installing Debian's package when allowed."""
    configure = _configure_arguments(nginx)
    if "--with-stream" in configure.split():
        return ""
    if not STREAM_MODULE.exists() and install:
        _apt_install([STREAM_PACKAGE])
    if not STREAM_MODULE.exists():
        raise ToolMissing(
            f"nginx's stream module ({STREAM_MODULE}) is missing: `apt-get install "
            f"{STREAM_PACKAGE}` (or run bench/run without --no-install, as root)"
        )
    return str(STREAM_MODULE)


def _configure_arguments(nginx: str) -> str:
    try:
        result = subprocess.run([nginx, "-V"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return result.stdout + result.stderr


def _apt_install(packages: list[str]) -> None:
    if which("apt-get") is None:
        raise ToolMissing(f"no apt-get here: install {' '.join(packages)} yourself")
    prefix = [] if os.geteuid() == 0 else ["sudo", "-n"]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    print(f"installing {' '.join(packages)} with apt-get", flush=True)
    lock = ["-o", "DPkg::Lock::Timeout=300"]
    for argv in (
        [*prefix, "apt-get", *lock, "update", "-qq"],
        [*prefix, "apt-get", *lock, "install", "-y", "-q", "--no-install-recommends", *packages],
    ):
        try:
            result = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=900)
        except (OSError, subprocess.TimeoutExpired) as error:
            raise ToolMissing(f"`{' '.join(argv)}` failed: {error}") from None
        if result.returncode != 0:
            raise ToolMissing(f"`{' '.join(argv)}` failed:\n{result.stderr.strip()[-800:]}")


def version(argv: list[str]) -> str:
    """First line a program prints about its version (some print on stderr, some exit 1)."""
    try:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"unknown ({error})"
    text = (result.stdout + result.stderr).strip()
    return text.splitlines()[0] if text else "unknown"


def pysozu_version(pysozu: str) -> str:
    """The installed distribution's version and the source tree's commit, read-only."""
    python = Path(pysozu).with_name("python")
    dist = version(
        [str(python), "-c", "import importlib.metadata as m; print(m.version('pysozu'))"]
    )
    repo = Path(__file__).resolve().parents[2]
    commit = version(["git", "-C", str(repo), "describe", "--always", "--dirty"])
    build = version([str(python), "-P", "-c", _BUILD_CHECK])  # what a worker would import
    return f"pysozu {dist} ({commit}), {build}"


_BUILD_CHECK = (
    "import dataplane.proxy.worker.boot; from dataplane import build_info;"
    " print(build_info.describe())"
)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine() -> dict[str, str]:
    return {
        "nproc": str(os.cpu_count()),
        "CPU": cpu_model(),
        "kernel": f"{platform.system()} {platform.release()}",
        "Python (harness)": platform.python_version(),
    }
