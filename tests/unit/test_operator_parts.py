"""The controller's smaller parts: parsing hostile objects, indices, status, events, flags."""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ingress_operator.cli import parser, settings_from
from ingress_operator.events import EventRecorder
from ingress_operator.indices import ENDPOINT_SLICES, INGRESSES, SECRETS, Indices
from ingress_operator.model import (
    ObjectKey,
    parse_endpoint_slice,
    parse_ingress,
    parse_service,
    parse_tls_secret,
)
from ingress_operator.render import Problem, render
from ingress_operator.settings import RenderSettings, Settings
from ingress_operator.status import LeaseElector, StatusPublisher, publish_addresses
from test_operator_conformance import BASE, load
from test_operator_reconciler import WEB
from test_operator_render import APP_SERVICE, APP_SLICE, ingress, rule

# -- hostile objects never raise --------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(
    st.fixed_dictionaries(
        {},
        optional={
            "metadata": json_values,
            "spec": st.fixed_dictionaries(
                {},
                optional={"rules": json_values, "tls": json_values, "defaultBackend": json_values},
            )
            | json_values,
            "status": json_values,
            "endpoints": json_values,
            "ports": json_values,
            "data": json_values,
            "addressType": st.sampled_from(["IPv4", "IPv6", "FQDN", 3]),
        },
    )
)
def test_parsing_any_json_never_raises(body: dict[str, Any]) -> None:
    parse_ingress(body)
    parse_service(body)
    parse_endpoint_slice(body)
    parse_tls_secret(body)


def test_a_malformed_ingress_renders_its_problems_not_an_exception() -> None:
    body = {
        "kind": "Ingress",
        "metadata": {"namespace": "default", "name": "bad"},
        "spec": {
            "ingressClassName": "pysozu",
            "rules": [
                {
                    "host": 7,
                    "http": {
                        "paths": [
                            {
                                "path": "/",
                                "pathType": "Prefix",
                                "backend": {"service": {"name": "x", "port": {"number": "80"}}},
                            }
                        ]
                    },
                }
            ],
        },
    }
    rendered = render(load(*BASE, extra=[body]), RenderSettings())
    assert [p.reason for p in rendered.problems] == ["InvalidIngress"]


def test_a_secret_that_is_not_pem_is_a_problem() -> None:
    data = {
        "tls.crt": base64.b64encode(
            b"-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----"
        ).decode(),
        "tls.key": "%%%",
    }
    secret = parse_tls_secret({"metadata": {"namespace": "n", "name": "s"}, "data": data})
    assert secret.problem is not None and "n/s" in secret.problem


# -- indices ----------------------------------------------------------------------------------


def test_indices_follow_events_and_wait_for_the_startup_listing() -> None:
    indices = Indices()
    web = {**WEB, "metadata": {**WEB["metadata"], "uid": "u1"}}
    indices.apply(INGRESSES, None, web)  # seen before the listing answered
    assert not indices.settled
    indices.expect({"u1", "u2"})
    assert not indices.settled
    slice_ = {**APP_SLICE, "metadata": {**APP_SLICE["metadata"], "uid": "u2"}}
    indices.apply(ENDPOINT_SLICES, None, slice_)
    assert indices.settled
    snapshot = indices.snapshot()
    assert list(snapshot.ingresses) == [ObjectKey("default", "web")]
    assert [s.key.name for s in snapshot.slices[ObjectKey("default", "app")]] == ["app-1"]
    indices.apply(INGRESSES, "DELETED", web)
    assert indices.snapshot().ingresses == {}


def test_only_tls_secrets_are_kept() -> None:
    indices = Indices()
    indices.settle()
    opaque = {"type": "Opaque", "metadata": {"namespace": "d", "name": "s"}, "data": {}}
    indices.apply(SECRETS, None, opaque)
    assert indices.snapshot().secrets == {}


# -- status -----------------------------------------------------------------------------------


class FakeApi:
    def __init__(self) -> None:
        self.patched: dict[ObjectKey, tuple[tuple[str, str], ...]] = {}

    async def patch_ingress_status(self, key: ObjectKey, addresses: Any) -> None:
        self.patched[key] = addresses


def test_publish_addresses(monkeypatch: pytest.MonkeyPatch) -> None:
    snapshot = load(*BASE)
    base = Settings(command_socket=Path("s"))
    assert publish_addresses(
        Settings(command_socket=Path("s"), publish_address="203.0.113.9"), snapshot
    ) == (("ip", "203.0.113.9"),)
    assert publish_addresses(
        Settings(command_socket=Path("s"), publish_address="lb.example"), snapshot
    ) == (("hostname", "lb.example"),)
    via_service = Settings(command_socket=Path("s"), publish_service=("default", "echo-service"))
    assert publish_addresses(via_service, snapshot) == (("ip", "10.96.0.1"),)
    monkeypatch.setenv("POD_IP", "10.244.0.5")
    assert publish_addresses(base, snapshot) == (("ip", "10.244.0.5"),)


def test_the_leader_writes_status_for_served_ingresses_and_clears_the_others() -> None:
    ours = (("ip", "192.0.2.10"),)
    stale = ingress("gone", [rule("g.example", ("/", "Prefix", "app"))], class_name="nginx")
    stale["status"] = {"loadBalancer": {"ingress": [{"ip": "192.0.2.10"}]}}
    foreign = ingress("foreign", [rule("f.example", ("/", "Prefix", "app"))], class_name="nginx")
    foreign["status"] = {"loadBalancer": {"ingress": [{"ip": "198.51.100.1"}]}}
    current = ingress("current", [rule("c.example", ("/", "Prefix", "app"))])
    current["status"] = {"loadBalancer": {"ingress": [{"ip": "192.0.2.10"}]}}
    snapshot = load(*BASE, extra=[WEB, APP_SERVICE, APP_SLICE, stale, foreign, current])
    rendered = render(snapshot, RenderSettings())
    api = FakeApi()
    settings_ = Settings(command_socket=Path("s"), publish_address="192.0.2.10")
    elector = LeaseElector(api, "default", "lease", "me")  # type: ignore[arg-type]
    publisher = StatusPublisher(api, settings_, elector)  # type: ignore[arg-type]

    async def scenario() -> None:
        await publisher.update(rendered, snapshot)
        task = asyncio.create_task(publisher.run())
        await asyncio.sleep(0)
        assert api.patched == {}  # not the leader: nothing written
        elector.is_leader = True
        await publisher.on_elected()
        for _ in range(5):
            await asyncio.sleep(0)
        task.cancel()

    asyncio.run(scenario())
    assert api.patched == {ObjectKey("default", "web"): ours, ObjectKey("default", "gone"): ()}


# -- events -----------------------------------------------------------------------------------


def test_a_problem_is_posted_once_until_it_comes_back() -> None:
    async def scenario() -> int:
        recorder = EventRecorder(None, "test")
        problem = Problem(ObjectKey("d", "i"), "Conflict", "m")
        recorder.record([problem, problem], {})
        recorder.record([problem], {})
        queued = recorder._queue.qsize()
        recorder.forget(problem)
        recorder.record([problem], {})
        return queued + recorder._queue.qsize()

    assert asyncio.run(scenario()) == 1 + 2


# -- flags ------------------------------------------------------------------------------------


def test_flags() -> None:
    args = parser().parse_args(
        ["--command-socket", "/run/sozu.sock", "--namespace", "a", "--namespace", "b",
         "--publish-service", "ingress/pysozu", "--http-address", "127.0.0.1:80",
         "--watch-ingress-without-class", "--nginx-annotations"]
    )  # fmt: skip
    settings_ = settings_from(args)
    assert settings_.namespaces == ("a", "b")
    assert settings_.publish_service == ("ingress", "pysozu")
    assert str(settings_.render.http_address) == "127.0.0.1:80"
    assert settings_.render.watch_ingress_without_class and settings_.render.nginx_annotations
    assert settings_.render.controller_name == "pysozu.io/ingress-controller"
    with pytest.raises(SystemExit):
        parser().parse_args(["--command-socket", "s", "--publish-service", "no-slash"])
    with pytest.raises(SystemExit):
        parser().parse_args([])


# -- the command client's framing (a fed StreamReader, no socket) -----------------------------


def framed(body: bytes) -> bytes:
    return (len(body) + 8).to_bytes(8, "little") + body


def client_reading(data: bytes) -> Any:
    from ingress_operator.dataplane_client import DataplaneClient

    client = DataplaneClient(Path("unused"), timeout=1)
    reader = asyncio.StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    client._reader = reader
    return client


def test_the_client_skips_processing_frames_and_returns_the_final_answer() -> None:
    from dataplane.command.codec import encode
    from dataplane.command.responses import Response, ResponseStatus

    data = framed(encode(Response.processing("working"))) + framed(encode(Response.ok("done")))

    async def scenario() -> Any:
        return await client_reading(data)._final_answer()

    answer = asyncio.run(scenario())
    assert answer.status == ResponseStatus.OK and answer.message == "done"


@pytest.mark.parametrize(
    "data",
    [
        framed(b"not json"),
        (7).to_bytes(8, "little"),  # a length below the prefix
        (1 << 40).to_bytes(8, "little"),  # far above the limit
        framed(b'{"status": 0}')[:-3],  # cut short, then EOF
    ],
)
def test_unreadable_answers_make_the_dataplane_unavailable(data: bytes) -> None:
    from ingress_operator.dataplane_client import DataplaneUnavailable

    async def scenario() -> None:
        await client_reading(data).read_response()

    with pytest.raises(DataplaneUnavailable):
        asyncio.run(scenario())
