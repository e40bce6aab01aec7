"""A runtime listener update, black-box: adding a custom 503 keeps the listener's custom 404,
in the live worker and in one respawned from main's state (command/listener_update.py)."""

from __future__ import annotations

import os
import signal
import time
from typing import Any

from dataplane.command.address import SocketAddress
from dataplane.command.messages import Empty, Request, UpdateHttpListenerConfig
from dataplane.command.responses import ResponseStatus

ANSWER_404 = (
    "HTTP/1.1 404 Not Found\\r\\nContent-Length: 10\\r\\nConnection: close\\r\\n\\r\\ncustom 404"
)
ANSWER_503 = (
    "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 10\r\nConnection: close\r\n\r\ncustom 503"
)


def _served(pysozu: Any, port: int) -> tuple[tuple[int, bytes], tuple[int, bytes]]:
    """(unknown host -> 404, a cluster whose only backend refuses -> 503)."""
    return pysozu.http_get(port, "unknown.example"), pysozu.http_get(port, "down.example")


def test_a_runtime_503_keeps_the_custom_404_live_and_after_a_respawn(pysozu: Any) -> None:
    port, dead = pysozu.free_port(), pysozu.free_port()  # nothing listens on `dead`
    toml = pysozu.http_config(port, {"down": ("down.example", [dead])}).replace(
        'protocol = "http"\n',
        f'protocol = "http"\nanswers = {{ "404" = "{ANSWER_404}" }}\n',
        1,
    )
    proxy = pysozu.start("worker_count = 1\n" + toml, workers=1)
    (status, body), (status_503, _) = _served(pysozu, port)
    assert (status, body, status_503) == (404, b"custom 404", 503)

    patch = UpdateHttpListenerConfig(
        address=SocketAddress.parse(f"127.0.0.1:{port}"), answers={"503": ANSWER_503}
    )
    answer = proxy.request(Request.of(update_http_listener=patch))
    assert answer.status == ResponseStatus.OK, answer.message
    assert _served(pysozu, port) == ((404, b"custom 404"), (503, b"custom 503"))

    victim = proxy.workers()[0].pid
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 10
    pids: set[int] = {victim}
    while time.monotonic() < deadline:
        infos = proxy.request(Request.of(list_workers=Empty())).content.value.vec
        pids = {info.pid for info in infos}
        if pids and victim not in pids:
            break
        time.sleep(0.05)
    assert pids and victim not in pids, proxy.log()
    proxy.wait_ready(workers=1)
    assert _served(pysozu, port) == ((404, b"custom 404"), (503, b"custom 503"))
