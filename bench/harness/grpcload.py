"""The gRPC scenarios' backend and load generator: grpcio, unary calls, no generated code.

Run as a script by a Python that has grpcio (the repository's .venv; the harness itself needs
only the standard library and never imports grpc):

    python grpcload.py server PORT                # h2c, `/bench.Echo/Unary` returns its request
    python grpcload.py client HOST:PORT --duration=S --concurrency=N [--tls=CA.pem]
        [--authority=localhost] [--calls=N] [--size=B]

The client keeps N unary calls in flight on one channel (one HTTP/2 connection, N streams)
for S seconds (or until --calls calls are done) and prints one summary line,
`grpcload: {"calls": ..., "seconds": ..., "errors": ..., "p50_ms": ..., "p99_ms": ...}`,
that `parse()` reads. A call answered with anything but the request's bytes is an error.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

METHOD = "/bench.Echo/Unary"
SUMMARY = re.compile(r"^grpcload: (\{.*\})$", re.M)


@dataclass(frozen=True)
class Summary:
    calls: int
    seconds: float
    errors: int
    p50_ms: float | None
    p99_ms: float | None


def parse(text: str) -> Summary | None:
    match = SUMMARY.search(text)
    if match is None:
        return None
    data = json.loads(match[1])
    return Summary(
        int(data["calls"]),
        float(data["seconds"]),
        int(data["errors"]),
        data.get("p50_ms"),
        data.get("p99_ms"),
    )


def has_grpc(python: str) -> bool:
    """Can this Python import grpc (and so run this file)?"""
    try:
        done = subprocess.run([python, "-c", "import grpc"], capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def server_command(python: str, port: int) -> list[str]:
    return [python, str(Path(__file__).resolve()), "server", str(port)]


def client_command(
    python: str,
    address: str,
    *,
    duration_s: float,
    concurrency: int,
    ca: Path | None = None,
    authority: str = "localhost",
    calls: int = 0,
    size: int = 64,
) -> list[str]:
    argv = [python, str(Path(__file__).resolve()), "client", address]
    argv += [f"--duration={duration_s:g}", f"--concurrency={concurrency}", f"--size={size}"]
    argv += [f"--authority={authority}", f"--calls={calls}"]
    return argv + ([f"--tls={ca}"] if ca else [])


def _serve(port: int) -> None:  # pragma: no cover - runs in its own process
    from concurrent import futures

    import grpc

    def unary(request: bytes, context: object) -> bytes:
        return request

    handler = grpc.unary_unary_rpc_method_handler(unary, lambda b: b, lambda b: b)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler("bench.Echo", {"Unary": handler}),)
    )
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    server.wait_for_termination()


def _load(address: str, options: dict[str, str]) -> Summary:  # pragma: no cover
    import grpc

    authority = options.get("authority", "localhost")
    channel_options = [("grpc.default_authority", authority)]
    if options.get("tls"):
        credentials = grpc.ssl_channel_credentials(Path(options["tls"]).read_bytes())
        channel_options.append(("grpc.ssl_target_name_override", authority))
        channel = grpc.secure_channel(address, credentials, options=channel_options)
    else:
        channel = grpc.insecure_channel(address, options=channel_options)
    call = channel.unary_unary(METHOD, lambda b: b, lambda b: b)
    payload = b"x" * int(options.get("size", "64"))
    duration = float(options.get("duration", "1"))
    limit = int(options.get("calls", "0"))
    concurrency = int(options.get("concurrency", "10"))
    lock = threading.Lock()
    done = threading.Event()
    latencies: list[float] = []
    counts = {"errors": 0, "started": 0}
    first_error: list[str] = []
    started = time.monotonic()
    deadline = started + duration

    def launch() -> None:
        with lock:
            if done.is_set() or (limit and counts["started"] >= limit):
                return
            counts["started"] += 1
        began = time.monotonic()
        future = call.future(payload, timeout=10)
        future.add_done_callback(lambda f: finished(f, began))

    def finished(future: object, began: float) -> None:
        now = time.monotonic()
        error = future.exception()  # type: ignore[attr-defined]
        ok = error is None and future.result() == payload  # type: ignore[attr-defined]
        with lock:
            latencies.append(now - began)
            if not ok:
                counts["errors"] += 1
                if not first_error:
                    first_error.append(repr(error) if error else "a wrong answer")
            total = len(latencies)
            if now >= deadline or (limit and total >= limit):
                if total >= counts["started"]:
                    done.set()
                return
        launch()

    for _ in range(concurrency if not limit else min(concurrency, limit)):
        launch()
    done.wait(duration + 15)
    with lock:
        done.set()
        elapsed = time.monotonic() - started
        ordered = sorted(latencies)
    channel.close()

    def quantile(q: float) -> float | None:
        return (
            round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 3)
            if ordered
            else None
        )

    if first_error:
        print(f"grpcload: first error: {first_error[0][:300]}", file=sys.stderr, flush=True)
    return Summary(len(ordered), elapsed, counts["errors"], quantile(0.5), quantile(0.99))


def main(argv: list[str]) -> int:  # pragma: no cover - runs in its own process
    if len(argv) >= 2 and argv[0] == "server":
        _serve(int(argv[1]))
        return 0
    if len(argv) >= 2 and argv[0] == "client":
        options = dict(arg[2:].split("=", 1) for arg in argv[2:] if arg.startswith("--"))
        summary = _load(argv[1], options)
        print("grpcload: " + json.dumps(summary.__dict__), flush=True)
        return 0 if summary.calls and not summary.errors else 1
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
