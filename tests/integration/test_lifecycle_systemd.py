"""systemd's notify protocol, on an abstract NOTIFY_SOCKET: ready, reloads, upgrade, stop."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from typing import Any

import pytest

pytestmark = pytest.mark.timeout(60)


class Systemd:
    """Stands in for systemd: collects what pysozu says on NOTIFY_SOCKET."""

    def __init__(self) -> None:
        self.name = f"pysozu-test-{os.getpid()}-{id(self)}"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + self.name)
        self.sock.settimeout(20)

    def next(self) -> dict[str, str]:
        data, _ = self.sock.recvfrom(4096)
        return dict(line.split("=", 1) for line in data.decode().splitlines())

    def until(self, key: str) -> list[dict[str, str]]:
        seen = []
        while True:
            seen.append(self.next())
            if key in seen[-1]:
                return seen


@pytest.fixture
def systemd(monkeypatch: pytest.MonkeyPatch) -> Iterator[Systemd]:
    fake = Systemd()
    monkeypatch.setenv("NOTIFY_SOCKET", "@" + fake.name)
    yield fake
    fake.sock.close()


def test_ready_reloading_upgrade_and_stopping(pysozu: Any, systemd: Systemd) -> None:
    port = pysozu.free_port()
    proxy = pysozu.start(f'[[listeners]]\nprotocol = "http"\naddress = "127.0.0.1:{port}"\n')
    assert systemd.next()["READY"] == "1"
    assert proxy.cli("cluster", "add", "-i", "a").returncode == 0
    assert systemd.next() == {"RELOADING": "1"}
    assert systemd.next()["READY"] == "1"
    assert proxy.cli("status").returncode == 0  # a query says nothing to systemd
    upgrade = proxy.cli("upgrade", "--worker", "0")
    assert upgrade.returncode == 0, upgrade.stderr
    assert systemd.next() == {"RELOADING": "1"}
    assert systemd.next()["READY"] == "1"
    upgrade = proxy.cli("upgrade", timeout=60)
    assert upgrade.returncode == 0, upgrade.stderr
    new_main = upgrade.stdout.split("New main process has pid ")[1].split()[0]
    said = systemd.until("MAINPID")
    assert said == [{"RELOADING": "1"}, {"MAINPID": new_main}]  # the old main hands over
    assert systemd.next() == {"MAINPID": new_main, "READY": "1"}  # the new one is ready
    assert proxy.cli("shutdown").returncode == 0
    assert {"STOPPING": "1"} in systemd.until("STOPPING")
