"""The reconciler against an in-memory dataplane: what it sends, and when (no sockets)."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ingress_operator.dataplane_client import DataplaneUnavailable
from ingress_operator.dataplane_state import DesiredState, desired_state
from ingress_operator.events import EventRecorder
from ingress_operator.model import Snapshot
from ingress_operator.reconciler import Reconciler
from ingress_operator.render import Problem, render
from ingress_operator.settings import RenderSettings, Settings
from test_operator_conformance import BASE, load
from test_operator_render import APP_SERVICE, APP_SLICE, endpoint_slice, ep, ingress, rule

from dataplane.command.messages import (
    Cluster,
    HttpListenerConfig,
    Request,
    RequestHttpFrontend,
)
from dataplane.command.responses import Response, ResponseStatus
from dataplane.command.state import ConfigState, StateError
from dataplane.command.statefile import read_state_file, write_state_file


class FakeDataplane:
    """Main's command handling, in memory: dispatch on the state or answer FAILURE."""

    def __init__(self) -> None:
        self.state = ConfigState()
        self.received: list[Request] = []
        self.refuse: set[str] = set()  # verbs to refuse
        self.down = False
        self.connected = True

    async def execute(self, requests: Sequence[Request]) -> list[Response]:
        if self.down:
            raise DataplaneUnavailable("connection refused")
        return [self._answer(request) for request in requests]

    async def call(self, request: Request) -> Response:
        return (await self.execute([request]))[0]

    async def close(self) -> None:
        self.connected = False

    def _answer(self, request: Request) -> Response:
        self.received.append(request)
        if request.verb == "save_state":
            write_state_file(request.body, self.state.generate_requests())
            return Response.ok()
        if request.verb == "load_state":  # main's summary format
            loaded, _ = read_state_file(request.body)
            answers = [self._answer(r) for r in loaded]
            errors = sum(a.status != ResponseStatus.OK for a in answers)
            return Response.ok(f"loaded, {len(answers) - errors} ok messages, {errors} errors")
        if request.verb in self.refuse:
            return Response.failure(f"{request.verb} refused for the test")
        try:
            self.state.dispatch(request)
        except StateError as error:
            return Response.failure(str(error))
        return Response.ok()

    def verbs(self) -> list[str]:
        sent = [r.verb for r in self.received if r.verb != "save_state"]
        self.received.clear()
        return sent


class Recorder(EventRecorder):
    def __init__(self) -> None:
        super().__init__(None, "test")
        self.problems: list[Problem] = []

    def record(self, problems: Iterable[Problem], uids: Mapping[Any, str]) -> None:
        self.problems.extend(problems)


WEB = ingress("web", [rule("app.example", ("/", "Prefix", "app"))])


class Harness:
    def __init__(self, tmp_path: Path, *bodies: dict[str, Any]) -> None:
        self.bodies = list(bodies)
        self.snapshot: Snapshot | None = load(*BASE, extra=self.bodies)
        settings = Settings(command_socket=tmp_path / "sozu.sock", render=RenderSettings())
        self.events = Recorder()
        self.reconciler = Reconciler(settings, lambda: self.snapshot, self.events)
        self.dataplane = FakeDataplane()
        self.reconciler.client = self.dataplane  # type: ignore[assignment]

    def change(self, *bodies: dict[str, Any]) -> None:
        self.snapshot = load(*BASE, extra=list(bodies))

    def reconcile(self) -> bool:
        return asyncio.run(self.reconciler.reconcile_once())


def test_first_push_sends_everything_then_nothing(tmp_path: Path) -> None:
    harness = Harness(tmp_path, WEB, APP_SERVICE, APP_SLICE)
    assert not harness.reconciler.ready
    assert harness.reconcile()
    assert harness.reconciler.ready
    first = harness.dataplane.verbs()
    assert first.count("add_backend") == 2 and "add_cluster" in first
    assert sorted(first[:2]) == ["add_http_listener", "add_https_listener"]
    assert first[-2:] == ["activate_listener"] * 2  # listeners serve once their routes are in
    assert harness.reconcile()
    assert harness.dataplane.verbs() == []


def test_endpoint_changes_send_only_backend_requests(tmp_path: Path) -> None:
    harness = Harness(tmp_path, WEB, APP_SERVICE, APP_SLICE)
    harness.reconcile()
    harness.dataplane.verbs()
    scaled = endpoint_slice(
        "app-1", "app", [{"name": "web", "port": 8080}], [ep(f"10.0.1.{i}") for i in range(5)]
    )
    harness.change(WEB, APP_SERVICE, scaled)
    assert harness.reconcile()
    verbs = harness.dataplane.verbs()
    assert sorted(set(verbs) - {"load_state"}) == ["add_backend", "remove_backend"]


def slice_of(*ips: str) -> dict[str, Any]:
    return endpoint_slice("app-1", "app", [{"name": "web", "port": 8080}], [ep(i) for i in ips])


def test_a_swap_goes_as_one_batch_and_the_rest_one_by_one(tmp_path: Path) -> None:
    harness = Harness(tmp_path, WEB, APP_SERVICE, slice_of("10.0.1.1"))
    harness.reconcile()
    harness.dataplane.verbs()
    # Replacing every endpoint: one load_state (the workers get it in one write), so no
    # request finds the cluster empty between the removal and the addition.
    harness.change(WEB, APP_SERVICE, slice_of("10.0.1.2"))
    assert harness.reconcile()
    assert harness.dataplane.verbs() == ["load_state", "remove_backend", "add_backend"]
    # Adding only, or removing only, has no gap to hide: pipelined as it is.
    harness.change(WEB, APP_SERVICE, slice_of("10.0.1.2", "10.0.1.3"))
    assert harness.reconcile()
    assert harness.dataplane.verbs() == ["add_backend"]
    harness.change(WEB, APP_SERVICE, slice_of("10.0.1.3"))
    assert harness.reconcile()
    assert harness.dataplane.verbs() == ["remove_backend"]
    # A route moving to another Service: removals and additions, one batch.
    other = {**APP_SERVICE, "metadata": {**APP_SERVICE["metadata"], "name": "other"}}
    moved = ingress("web", [rule("app.example", ("/", "Prefix", "other"))])
    harness.change(moved, APP_SERVICE, other, slice_of("10.0.1.3"))
    assert harness.reconcile()
    verbs = harness.dataplane.verbs()
    assert verbs[0] == "load_state" and verbs.count("load_state") == 1
    assert "remove_http_frontend" in verbs and "add_http_frontend" in verbs


def test_what_a_swap_batch_missed_is_resent_alone_and_reported(tmp_path: Path) -> None:
    harness = Harness(tmp_path, WEB, APP_SERVICE, slice_of("10.0.1.1"))
    harness.reconcile()
    harness.dataplane.refuse = {"add_backend"}
    harness.change(WEB, APP_SERVICE, slice_of("10.0.1.2"))
    assert not harness.reconcile()
    refused = [p for p in harness.events.problems if p.reason == "DataplaneRefused"]
    assert [p.ingress.name for p in refused] == ["web"] and "add_backend" in refused[0].message
    harness.dataplane.verbs()
    harness.dataplane.refuse = set()
    assert harness.reconcile()
    assert harness.dataplane.verbs() == ["add_backend"]  # exactly what was missing


def test_a_refused_request_is_an_event_on_its_ingress_and_is_retried(tmp_path: Path) -> None:
    harness = Harness(tmp_path, WEB, APP_SERVICE, APP_SLICE)
    harness.dataplane.refuse = {"add_backend"}
    assert not harness.reconcile()
    refused = [p for p in harness.events.problems if p.reason == "DataplaneRefused"]
    assert {p.ingress.name for p in refused} == {"web"} and len(refused) == 2
    harness.dataplane.verbs()
    harness.dataplane.refuse = set()
    assert harness.reconcile()
    assert harness.dataplane.verbs() == ["add_backend", "add_backend"]


def test_a_restarted_dataplane_gets_the_whole_state_again(tmp_path: Path) -> None:
    harness = Harness(tmp_path, WEB, APP_SERVICE, APP_SLICE)
    harness.reconcile()
    everything = sorted(harness.dataplane.verbs())
    harness.dataplane.down = True
    harness.reconciler.dataplane_lost()  # what the event subscription's EOF triggers
    assert not harness.reconcile()
    harness.dataplane.down = False
    harness.dataplane.state = ConfigState()  # a new process, empty
    assert harness.reconcile()
    assert sorted(harness.dataplane.verbs()) == everything


def test_a_restarted_operator_resyncs_and_sends_only_the_difference(tmp_path: Path) -> None:
    harness = Harness(tmp_path, WEB, APP_SERVICE, APP_SLICE)
    harness.reconcile()
    again = Harness(tmp_path, WEB, APP_SERVICE, APP_SLICE)
    again.dataplane = harness.dataplane
    again.reconciler.client = harness.dataplane  # type: ignore[assignment]
    harness.dataplane.verbs()
    assert again.reconcile()
    assert harness.dataplane.verbs() == []


def test_foreign_state_is_kept_and_our_listener_address_adopted(tmp_path: Path) -> None:
    harness = Harness(tmp_path, WEB, APP_SERVICE, APP_SLICE)
    settings = RenderSettings()
    listener = HttpListenerConfig(address=settings.http_address, front_timeout=7)
    foreign = [
        Request.of(add_http_listener=listener),
        Request.of(add_cluster=Cluster(cluster_id="legacy-app")),
        Request.of(
            add_http_frontend=RequestHttpFrontend(
                cluster_id="legacy-app", address=settings.http_address, hostname="legacy.example"
            )
        ),
    ]
    for request in foreign:
        harness.dataplane.state.dispatch(request)
    assert harness.reconcile()
    state = harness.dataplane.state
    assert "legacy-app" in state.clusters
    assert state.http_listeners[settings.http_address].front_timeout == 7
    assert "add_http_listener" not in harness.dataplane.verbs()
    harness.change(APP_SERVICE, APP_SLICE)  # the Ingress is deleted
    assert harness.reconcile()
    assert set(state.clusters) == {"legacy-app"}
    assert [f.hostname for f in state.http_fronts.values()] == ["legacy.example"]


def test_nothing_is_sent_before_the_indices_are_filled(tmp_path: Path) -> None:
    harness = Harness(tmp_path, WEB)
    harness.snapshot = None
    assert harness.reconcile()
    assert harness.dataplane.received == []
    assert not harness.reconciler.ready


def test_a_certificate_the_state_refuses_is_reported_and_the_rest_is_pushed(tmp_path: Path) -> None:
    snapshot = load(*BASE)
    good = snapshot.secrets[next(k for k in snapshot.secrets if k.name == "conformance-tls")]
    other = snapshot.secrets[next(k for k in snapshot.secrets if k.name == "other-tls")]
    mismatched = {
        "kind": "Secret",
        "type": "kubernetes.io/tls",
        "metadata": {"namespace": "default", "name": "mismatch"},
        "data": {
            "tls.crt": base64.b64encode(good.certificate.encode()).decode(),
            "tls.key": base64.b64encode(other.private_key.encode()).decode(),
        },
    }
    tls = [{"hosts": ["app.example"], "secretName": "mismatch"}]
    harness = Harness(
        tmp_path,
        ingress("web", [rule("app.example", ("/", "Prefix", "app"))], tls=tls),
        APP_SERVICE,
        APP_SLICE,
        mismatched,
    )
    assert harness.reconcile()
    rejected = [p for p in harness.events.problems if p.reason == "Rejected"]
    assert len(rejected) == 1 and "key does not match" in rejected[0].message
    assert "add_http_frontend" in harness.dataplane.verbs()


def test_the_incremental_desired_state_equals_a_full_rebuild() -> None:
    """Each step's state, carried over from the previous one, equals the state built anew."""
    settings = RenderSettings()
    tls = [{"hosts": ["app.example"], "secretName": "conformance-tls"}]
    paths = [("/", "Prefix", "app"), ("/api", "Exact", "app")]
    steps: list[list[dict[str, Any]]] = [
        [WEB, APP_SERVICE, APP_SLICE],
        [ingress("web", [rule("app.example", *paths)]), APP_SERVICE, APP_SLICE],
        [ingress("web", [rule("app.example", *paths)], tls=tls), APP_SERVICE, APP_SLICE],
        [
            ingress(
                "web",
                [rule("app.example", *paths)],
                annotations={"pysozu.io/sticky-sessions": "true"},
            ),
            APP_SERVICE,
            endpoint_slice("app-1", "app", [{"name": "web", "port": 8080}], [ep("10.0.0.7")]),
        ],
        [ingress("other", [rule("b.example", ("/", "Prefix", "app"))]), APP_SERVICE, APP_SLICE],
        [APP_SERVICE, APP_SLICE],
        [WEB, APP_SERVICE, APP_SLICE],
    ]
    desired = DesiredState()
    applied = ConfigState()
    for number, bodies in enumerate(steps):
        rendered = render(load(*BASE, extra=bodies), settings)
        state, problems, changed = desired.update(rendered, applied, settings)
        rebuilt, rebuilt_problems = desired_state(rendered, applied, settings)
        assert state == rebuilt, f"step {number}"
        assert problems == rebuilt_problems and (changed or number == 0)
    assert desired.update(rendered, applied, settings)[2] is False  # unchanged: nothing to do


def big_slice(count: int) -> dict[str, Any]:
    endpoints = [ep(f"10.0.{i // 250}.{i % 250}") for i in range(count)]
    return endpoint_slice("app-1", "app", [{"name": "web", "port": 8080}], endpoints)


def test_a_first_sync_goes_in_bulk(tmp_path: Path) -> None:
    harness = Harness(tmp_path, WEB, APP_SERVICE, big_slice(1500))
    assert harness.reconcile()
    verbs = harness.dataplane.verbs()
    assert verbs.count("load_state") == 2  # in chunks main answers within its worker timeout
    assert verbs.count("add_backend") == 1500
    assert len(harness.dataplane.state.backends["default/app:80"]) == 1500
    assert harness.reconcile() and harness.dataplane.verbs() == []


def test_what_a_bulk_load_missed_is_resent_alone_and_reported(tmp_path: Path) -> None:
    harness = Harness(tmp_path, WEB, APP_SERVICE, big_slice(600))
    harness.dataplane.refuse = {"add_cluster"}
    assert not harness.reconcile()
    after_bulk = [v for v in harness.dataplane.verbs() if v != "load_state"]
    assert after_bulk.count("add_cluster") == 2  # once in the file, once alone
    refused = [p for p in harness.events.problems if p.reason == "DataplaneRefused"]
    assert refused and "add_cluster" in refused[0].message
    harness.dataplane.refuse = set()
    assert harness.reconcile()
    assert "default/app:80" in harness.dataplane.state.clusters
