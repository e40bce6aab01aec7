"""/healthz (the process answers) and /readyz (the first full state is in the dataplane)."""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web

from dataplane.command.address import SocketAddress


async def serve_health(address: SocketAddress, is_ready: Callable[[], bool]) -> web.AppRunner:
    async def healthz(_: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def readyz(_: web.Request) -> web.Response:
        if is_ready():
            return web.Response(text="ready\n")
        return web.Response(status=503, text="the first state is not pushed yet\n")

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    host, port = address.sockaddr()
    await web.TCPSite(runner, host, port).start()
    return runner
