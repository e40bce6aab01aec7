"""/healthz (every supervised task alive and making progress) and /readyz (the dataplane holds
the state: the first full push, and again after a dataplane restart).

/metrics (when given) answers the controller's Prometheus metrics (metrics.py): the same port,
as ingress-nginx does on 10254, so one cluster-internal port carries probes and scrapes.

/healthz answers 503 naming the tasks that are dead or stuck, so a liveness probe restarts a
controller whose loops can no longer do their work, instead of trusting a process that answers.
"""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web

from dataplane.command.address import SocketAddress

METRICS_TYPE = "text/plain; version=0.0.4; charset=utf-8"  # Prometheus text format


async def serve_health(
    address: SocketAddress,
    is_ready: Callable[[], bool],
    problems: Callable[[], list[str]] = list,
    metrics: Callable[[], bytes] | None = None,
) -> web.AppRunner:
    async def healthz(_: web.Request) -> web.Response:
        if found := problems():
            return web.Response(status=503, text="".join(f"{line}\n" for line in found))
        return web.Response(text="ok\n")

    async def readyz(_: web.Request) -> web.Response:
        if is_ready():
            return web.Response(text="ready\n")
        return web.Response(status=503, text="the state is not pushed to the dataplane yet\n")

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    if metrics is not None:
        exposition = metrics

        async def scrape(_: web.Request) -> web.Response:
            return web.Response(body=exposition(), headers={"Content-Type": METRICS_TYPE})

        app.router.add_get("/metrics", scrape)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    host, port = address.sockaddr()
    await web.TCPSite(runner, host, port).start()
    return runner
