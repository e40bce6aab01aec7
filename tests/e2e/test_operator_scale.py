"""Scale: 1,000 Ingresses (3,000 paths) preloaded in kmock, then the operator starts.

Figures (printed; run with `-s` to see them): time until the dataplane holds the whole state,
the operator's resident memory, and how long one changed Ingress takes to go live.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from conftest import PUBLISHED, World, wait_for
from objects import endpoint_slice, ingress, ingress_class, service

from dataplane.command.statefile import read_state_file

INGRESSES = 1000
PATHS = ("/", "/api", "/static")
# One Prefix path is 2 dataplane rules ("/" is 1), on the HTTP and the HTTPS listener (every
# route answers on both, as in ingress-nginx; no TLS here: the default certificate).
FRONTENDS = 2 * INGRESSES * (1 + 2 * (len(PATHS) - 1))
FULL_STATE_SECONDS = 30
ONE_CHANGE_SECONDS = 1.0
MAX_OPERATOR_RSS_MIB = 400

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


def preload_objects(backend_port: int) -> list[dict[str, Any]]:
    objects = [ingress_class()]
    for n in range(INGRESSES):
        name = f"svc-{n}"
        objects.append(service(name))
        objects.append(endpoint_slice(name, ["127.0.0.2", "127.0.0.3"], backend_port))
        body = ingress(
            f"app-{n}", f"app-{n}.example", name, extra_paths=[(p, name) for p in PATHS[1:]]
        )
        body["metadata"]["creationTimestamp"] = f"2026-01-01T00:{n // 60 % 60:02d}:{n % 60:02d}Z"
        # Already published (a restarted controller): the leader has no status to write, so the
        # figures are the routing path's, not kmock's (it takes ~0.2 s per status patch here).
        body["status"] = {"loadBalancer": {"ingress": [{"ip": PUBLISHED}]}}
        objects.append(body)
    return objects


def dataplane_verbs(world: World, tmp_path: Path) -> Counter[str]:
    """What the dataplane holds, counted by verb (from its own state file)."""
    saved = tmp_path / "saved.state"
    done = world.pysozu("state", "save", "-f", str(saved))
    assert done.returncode == 0, done.stderr
    requests, errors = read_state_file(saved)
    assert errors == []
    return Counter(request.verb for request in requests)


def test_a_thousand_ingresses(world: World, tmp_path: Path) -> None:
    world.backend("127.0.0.2", "pod-a")
    world.backend("127.0.0.3", "pod-b")
    world.backend("127.0.0.4", "changed")
    # A fresh API server holding everything before the operator starts.
    world.processes.pop("kmock").stop()
    preload = tmp_path / "preload.json"
    preload.write_text(json.dumps(preload_objects(world.backend_port)))
    world.start_apiserver(preload)

    started = time.monotonic()
    world.start_operator()
    wait_for("the full state", world.operator_ready, timeout=FULL_STATE_SECONDS + 30)
    full_state = time.monotonic() - started
    held = dataplane_verbs(world, tmp_path)
    assert held["add_http_frontend"] + held["add_https_frontend"] == FRONTENDS
    assert held["add_cluster"] == INGRESSES and held["add_backend"] == 2 * INGRESSES
    status, body, _ = world.get("app-999.example", "/api/x")
    assert status == 200 and body.split()[0] in ("pod-a", "pod-b")
    rss_mib = world.processes["operator"].rss_kib() / 1024

    # Steady state first: an unrelated Service is added and pushed.
    world.apply(service("changed"), endpoint_slice("changed", ["127.0.0.4"], world.backend_port))
    time.sleep(2)

    # One Ingress changes: its /api path moves to another service.
    changed = ingress(
        "app-500",
        "app-500.example",
        "svc-500",
        extra_paths=[("/api", "changed"), ("/static", "svc-500")],
    )
    changed["metadata"]["creationTimestamp"] = "2026-01-01T00:08:20Z"
    before_kubectl = time.monotonic()
    world.apply(changed)
    applied = time.monotonic()
    wait_for(
        "the changed Ingress",
        lambda: world.get("app-500.example", "/api")[1].startswith("changed"),
        timeout=10,
    )
    live = time.monotonic()
    print(
        f"\n{INGRESSES} Ingresses / {INGRESSES * len(PATHS)} paths / {FRONTENDS} frontends:"
        f"\n  operator start -> dataplane fully configured (/readyz): {full_state:.1f} s"
        f"\n  operator RSS after the full push: {rss_mib:.0f} MiB"
        f"\n  one Ingress changed -> live: {live - applied:.2f} s after kubectl returned"
        f" ({live - before_kubectl:.2f} s including kubectl itself)"
    )
    assert full_state < FULL_STATE_SECONDS
    assert rss_mib < MAX_OPERATOR_RSS_MIB
    assert live - applied < ONE_CHANGE_SECONDS
