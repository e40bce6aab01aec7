"""`bench/run`: parse options, prepare the machine, run the scenarios, print and save tables."""

from __future__ import annotations

import argparse
import datetime
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from harness import grpcload, report, scenarios, tools
from harness.errors import BenchError
from harness.idle import raise_fd_limit
from harness.procs import supervised
from harness.runner import Bench, Options
from harness.targets import (
    Direct,
    HAProxy,
    Nghttpx,
    Nginx,
    Pysozu,
    PysozuBare,
    PysozuTickets,
    Target,
)

BENCH_DIR = Path(__file__).resolve().parents[1]
REPO = BENCH_DIR.parent
DEFAULT_TARGETS = "nginx,haproxy,pysozu"


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench/run",
        description="Benchmark pysozu side by side with nginx and HAProxy on this machine.",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="seconds, not minutes: 1 run of 1 s per target, scenario set 'quick'",
    )
    parser.add_argument(
        "--scenarios",
        default=None,
        help=f"comma-separated scenarios or sets ({', '.join(scenarios.SETS)}); "
        f"scenarios: {', '.join(scenarios.BY_NAME)}",
    )
    parser.add_argument(
        "--targets",
        default=None,
        help="comma-separated, among nginx, haproxy, pysozu, pysozu-bare (pysozu with access "
        "logs and metrics off: beside pysozu in the access-logs scenario), pysozu-tickets2 "
        "(2 TLS 1.3 session tickets per handshake, as nginx, not sozu's 4), nghttpx (HTTP/2 and "
        "gRPC scenarios only), direct "
        f"(default {DEFAULT_TARGETS}, plus nghttpx when an HTTP/2 or gRPC scenario runs)",
    )
    parser.add_argument("--runs", type=int, default=None, help="runs per target (default 3)")
    parser.add_argument("--duration", type=float, default=None, help="seconds per run (default 10)")
    parser.add_argument("--connections", type=int, default=50, help="wrk connections")
    parser.add_argument(
        "--reconfig-changes",
        type=int,
        default=None,
        help="changes timed in the reconfig scenario, with the CLI and again on the command "
        "socket (default 100; 10 with --quick)",
    )
    parser.add_argument("--proxy-cpu", default="0", help="CPU list for the proxy (taskset -c)")
    parser.add_argument(
        "--load-cpus", default="1", help="CPU list for wrk, the backend and the harness"
    )
    parser.add_argument(
        "--pysozu",
        default=None,
        help="the pysozu executable, run as it is (default: the repository's .venv, built "
        "as --build says, then PATH)",
    )
    parser.add_argument(
        "--build",
        choices=("compiled", "pure"),
        default="compiled",
        help="the repository's pysozu as the Docker image has it, its metrics and access log "
        "compiled by mypyc (scripts/build-compiled: 20-30 s the first time after a change; "
        "needs a C compiler), or pure Python (default: compiled)",
    )
    parser.add_argument(
        "--results-dir",
        type=Path,
        default=BENCH_DIR / "results",
        help="where the Markdown results (and flame graphs) are written (default bench/results)",
    )
    parser.add_argument(
        "--no-install",
        action="store_true",
        help="never run apt-get; fail with the list of what is missing",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="record a py-spy flame graph of pysozu's worker during its first run of each "
        "scenario, written beside the results (that run's figures are slightly perturbed)",
    )
    parser.add_argument(
        "--keep-workdir", action="store_true", help="keep configurations and logs (printed path)"
    )
    args = parser.parse_args(argv)
    for name, value in (("runs", 3), ("duration", 10.0), ("reconfig_changes", 100)):
        if getattr(args, name) is None:
            quick = {"runs": 1, "duration": 1.0, "reconfig_changes": 10}[name]
            setattr(args, name, quick if args.quick else value)
    if args.scenarios is None:
        args.scenarios = "quick" if args.quick else "all"
    if args.targets is None:
        args.targets = DEFAULT_TARGETS
        chosen = scenarios.select([s.strip() for s in args.scenarios.split(",") if s.strip()])
        if any(s.http2 or s.grpc for s in chosen):
            args.targets += ",nghttpx"
    if args.runs < 1 or args.duration <= 0 or args.reconfig_changes < 1:
        parser.error("--runs, --duration and --reconfig-changes must be positive")
    return args


def find_pysozu(explicit: str | None, build: str = "pure") -> str | None:
    """The executable to run: `explicit`, else the repository's (compiled first when `build`
    says so), else the one on PATH."""
    if explicit is None and build == "compiled" and (REPO / ".venv" / "bin" / "pysozu").exists():
        return compiled_pysozu()
    for candidate in (explicit, str(REPO / ".venv" / "bin" / "pysozu"), shutil.which("pysozu")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


def grpc_python(pysozu: str | None) -> str | None:
    """A Python that can run harness/grpcload.py: the repository's .venv, pysozu's, or this."""
    candidates = [str(REPO / ".venv" / "bin" / "python"), sys.executable]
    if pysozu:
        candidates.insert(1, str(Path(pysozu).with_name("python")))
    for python in candidates:
        if os.access(python, os.X_OK) and grpcload.has_grpc(python):
            return python
    return None


def compiled_pysozu() -> str:
    """The repository's pysozu built by scripts/build-compiled (reused while the sources are
    the same): the launcher it writes, which runs the build with the repository's .venv."""
    print("bench: building pysozu compiled (scripts/build-compiled) ...", flush=True)
    try:
        result = subprocess.run(
            [str(REPO / "scripts" / "build-compiled")], capture_output=True, text=True, timeout=900
        )
    except subprocess.TimeoutExpired:
        raise BenchError("scripts/build-compiled took more than 15 minutes") from None
    if result.returncode != 0:
        raise BenchError(
            f"scripts/build-compiled failed (--build pure runs without it):\n{result.stderr}"
        )
    return str(Path(result.stdout.strip()) / "bin" / "pysozu")


PYSOZU_TARGETS = {"pysozu": Pysozu, "pysozu-bare": PysozuBare, "pysozu-tickets2": PysozuTickets}


def make_targets(names: list[str], paths: dict[str, str], pysozu: str | None) -> list[Target]:
    targets: list[Target] = []
    for name in names:
        if name == "nginx":
            targets.append(Nginx(paths["nginx"]))
        elif name == "haproxy":
            targets.append(HAProxy(paths["haproxy"]))
        elif name in PYSOZU_TARGETS:
            if pysozu is None:
                raise BenchError("pysozu not found: pass --pysozu or install it in ./.venv")
            targets.append(PYSOZU_TARGETS[name](pysozu))
        elif name == "nghttpx":
            targets.append(Nghttpx(paths["nghttpx"]))
        elif name == "direct":
            targets.append(Direct())
        else:
            raise BenchError(f"unknown target {name!r}")
    return targets


def cpu_pinning(proxy: str, load: str) -> tuple[str | None, str | None, str]:
    """The CPU lists to use, or none (with a note) on a single-core machine."""
    if (os.cpu_count() or 1) < 2:
        return None, None, "one CPU only: nothing pinned, the proxy shares the core with wrk."
    os.sched_setaffinity(0, _cpu_set(load))  # the harness itself stays off the proxy's core
    return proxy, load, f"proxy on CPU {proxy}; wrk, the backend and the harness on CPU {load}."


def _cpu_set(cpus: str) -> set[int]:
    chosen: set[int] = set()
    for part in cpus.split(","):
        low, _, high = part.partition("-")
        chosen.update(range(int(low), int(high or low) + 1))
    return chosen


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        return _run(args, sys.argv[1:] if argv is None else argv)
    except BenchError as error:
        print(f"bench: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("bench: interrupted; every process started was stopped", file=sys.stderr)
        return 130


def _run(args: argparse.Namespace, argv: list[str]) -> int:
    chosen = scenarios.select([s.strip() for s in args.scenarios.split(",") if s.strip()])
    target_names = [t.strip() for t in args.targets.split(",") if t.strip()]
    paths, pysozu = _tools(args, chosen, target_names)
    targets = make_targets(target_names, paths, pysozu)
    started = datetime.datetime.now(datetime.UTC)
    stamp = started.strftime("%Y-%m-%dT%H%M%SZ")
    args.results_dir.mkdir(parents=True, exist_ok=True)
    proxy_cpus, load_cpus, pinning_note = cpu_pinning(args.proxy_cpu, args.load_cpus)
    options = Options(
        runs=args.runs,
        duration_s=args.duration,
        connections=args.connections,
        proxy_cpus=proxy_cpus,
        load_cpus=load_cpus,
        reconfig_changes=args.reconfig_changes,
        fd_limit=raise_fd_limit(65_536),
        profile_prefix=args.results_dir / stamp if args.profile else None,
    )
    workdir = Path(tempfile.mkdtemp(prefix="pysozu-bench-"))
    workdir.chmod(0o755)  # nginx workers run as nobody and read configuration and files below
    try:
        with supervised(workdir) as sup:
            bench = Bench(options, sup, workdir, paths, targets)
            bench.start_backend()
            results = []
            for scenario in chosen:
                results.append(bench.run(scenario))
                print("\n" + report.scenario_table(results[-1]), flush=True)
    finally:
        if args.keep_workdir:
            print(f"bench: configurations and logs kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    set_name = args.scenarios.replace(",", "+")
    if args.quick and "quick" not in args.scenarios.split(","):
        set_name = f"quick-{set_name}"
    document = report.document(
        title=f"pysozu benchmark: {set_name}",
        started=started.strftime("%Y-%m-%d %H:%M UTC"),
        results=results,
        machine=tools.machine(),
        versions=_versions(paths, pysozu),
        method=[
            f"{options.runs} run(s) of {options.duration_s:g} s per target, interleaved "
            "(A B C A B C), the run with the median req/s quoted;",
            f"{options.connections} connections, 1 wrk thread; {pinning_note}",
            "CPU µs/req: utime+stime of all the proxy's processes during the run / requests;",
            "RSS: the proxy's worker processes right after the run; errors: socket errors plus "
            "non-2xx/3xx answers, summed over runs.",
        ],
        invocation=shlex.join(["bench/run", *argv]),
        backend_command=shlex.join(bench.backend_command),
        configs={name: text for name, text in bench.first_configs.items() if text},
    )
    path = args.results_dir / f"{stamp}-{set_name}.md"
    path.write_text(document)
    print(f"bench: results written to {path}")
    return 0


def _tools(
    args: argparse.Namespace, chosen: list[scenarios.Scenario], target_names: list[str]
) -> tuple[dict[str, str], str | None]:
    """Paths of the programs this run needs (installed when allowed), and of pysozu."""
    needed = ["wrk", "nginx", "taskset"]
    needed += ["haproxy"] if "haproxy" in target_names else []
    needed += ["openssl"] if any(s.tls for s in chosen) else []
    paths = tools.ensure(needed, install=not args.no_install)
    if any(s.layer4 for s in chosen):  # nginx stream as a relay, and as the UDP backend
        paths["nginx-stream"] = tools.nginx_stream_module(
            paths["nginx"], install=not args.no_install
        )
    if any(s.http2 for s in chosen):
        try:
            paths.update(tools.ensure(["h2load"], install=not args.no_install))
        except BenchError as error:
            print(f"bench: HTTP/2 scenarios will be skipped: {error}", flush=True)
    if "nghttpx" in target_names:
        paths.update(tools.ensure(["nghttpx"], install=not args.no_install))
    wants_pysozu = set(PYSOZU_TARGETS) & set(target_names)
    pysozu = find_pysozu(args.pysozu, args.build) if wants_pysozu else None
    if any(s.grpc for s in chosen):
        python = grpc_python(pysozu)
        if python:
            paths["grpc-python"] = python
        else:
            print("bench: gRPC scenarios will be skipped: no Python with grpcio", flush=True)
    if args.profile:
        py_spy = shutil.which("py-spy") or (pysozu and str(Path(pysozu).with_name("py-spy")))
        if not py_spy or not os.access(py_spy, os.X_OK):
            raise BenchError("--profile needs py-spy: `.venv/bin/pip install py-spy`")
        paths["py-spy"] = py_spy
    return paths, pysozu


def _versions(paths: dict[str, str], pysozu: str | None) -> dict[str, str]:
    versions = {
        "wrk": tools.version([paths["wrk"], "-v"]),
        "nginx": tools.version([paths["nginx"], "-v"]),
    }
    if "haproxy" in paths:
        versions["haproxy"] = tools.version([paths["haproxy"], "-v"])
    if "h2load" in paths:
        versions["h2load"] = tools.version([paths["h2load"], "--version"])
    if "nghttpx" in paths:
        versions["nghttpx"] = tools.version([paths["nghttpx"], "--version"])
    if "grpc-python" in paths:
        versions["grpcio (load and backend)"] = tools.version(
            [paths["grpc-python"], "-c", "import grpc; print('grpcio', grpc.__version__)"]
        )
    if pysozu:
        versions["pysozu"] = tools.pysozu_version(pysozu)
        versions["Python (pysozu)"] = tools.version(
            [str(Path(pysozu).with_name("python")), "--version"]
        )
    return versions
