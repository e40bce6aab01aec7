"""Annotations pysozu cannot honour: access restrictions fail closed (503, a Warning Event,
an error in status), raw nginx config and unmapped keys get a Warning, nginx internals a
Normal Event. Pure: no sockets, no kopf."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import pytest
from ingress_operator.access_annotations import ACCESS_NAMES
from ingress_operator.annotation_review import NOT_ENFORCED, RESTRICTING_NGINX
from ingress_operator.events import EventRecorder
from ingress_operator.ingress_semantics import is_ingress_cluster_id, refused_cluster_id
from ingress_operator.model import ObjectKey
from ingress_operator.render import Problem, Rendered
from ingress_operator.settings import RenderSettings, Settings
from ingress_operator.status import REFUSED_ERROR, LeaseElector, StatusPublisher
from test_operator_conformance import BASE, HTTP, HTTPS, answer, backends, load
from test_operator_render import TLS_RULE, WEB, go, ingress, rule, state_of

NGINX = "nginx.ingress.kubernetes.io/"
ON = RenderSettings(nginx_annotations=True)
OFF = RenderSettings()
REFUSED = "default/web:-refused"
SERVED = "default/echo-service:80"


def cluster_ids(rendered: Rendered) -> list[str]:
    return sorted(r.body.cluster_id for r in rendered.requests if r.verb == "add_cluster")


def notices(rendered: Rendered) -> list[tuple[str, str, str]]:
    return [(p.type, p.reason, p.message) for p in rendered.problems]


RESTRICTING = [
    *(NGINX + name for name in sorted(RESTRICTING_NGINX)),
    NGINX + "limit-something-new",  # a key added after this list: its name says "limit"
    NGINX + "auth-tls-future",
    "pysozu.io/blocklist-source-range",
    "pysozu.io/auth-type",
    "pysozu.io/global-rate-limit",
]


@pytest.mark.parametrize("settings", [ON, OFF], ids=["nginx-on", "nginx-off"])
@pytest.mark.parametrize("key", RESTRICTING)
def test_restrictions_pysozu_cannot_enforce_fail_closed(key: str, settings: RenderSettings) -> None:
    if settings is ON and key.removeprefix(NGINX) in ACCESS_NAMES:
        return  # enforced: tests/unit/test_operator_access.py
    rendered = go(ingress("web", [WEB], annotations={key: "10.0.0.0/8"}), settings=settings)
    assert answer(rendered, HTTP, "web.example", "/") == REFUSED
    assert cluster_ids(rendered) == [REFUSED]  # the Service's cluster is not even created
    assert backends(rendered, REFUSED) == []  # no backend: the dataplane answers 503
    assert rendered.refused == {ObjectKey("default", "web")}
    assert rendered.served == {ObjectKey("default", "web")}
    [problem] = rendered.problems
    assert (problem.type, problem.reason) == ("Warning", NOT_ENFORCED)
    assert key in problem.message and "503" in problem.message
    off = key.startswith(NGINX) and settings is OFF
    assert ("--nginx-annotations is off" in problem.message) == off


def test_switched_off_waf_annotations_restrict_nothing() -> None:
    annotations = {NGINX + "enable-modsecurity": "false", NGINX + "enable-global-auth": "false"}
    rendered = go(ingress("web", [WEB], annotations=annotations), settings=ON)
    assert answer(rendered, HTTP, "web.example", "/") == SERVED
    assert rendered.refused == frozenset()
    assert [p.reason for p in rendered.problems] == ["Unsupported", "Unsupported"]


def test_a_refused_ingress_keeps_its_routes_and_its_tls_redirect() -> None:
    tls = [{"hosts": ["foo.bar.com"], "secretName": "conformance-tls"}]
    default = {"service": {"name": "echo-service", "port": {"number": 80}}}
    body = ingress(
        "web",
        [TLS_RULE],
        tls=tls,
        default=default,
        annotations={NGINX + "auth-type": "basic"},
    )
    rendered = go(body, settings=ON)
    assert answer(rendered, HTTP, "foo.bar.com", "/") == "308 https"
    assert answer(rendered, HTTPS, "foo.bar.com", "/x") == REFUSED
    assert answer(rendered, HTTP, "other.example", "/") == REFUSED  # its defaultBackend
    assert backends(rendered, REFUSED) == []


def test_an_older_refused_ingress_keeps_its_routes_closed_and_a_newer_one_touches_nothing() -> None:
    closed = ingress("web", [WEB], annotations={NGINX + "global-rate-limit": "10"})
    newer = ingress("later", [WEB], created="2026-02-01T00:00:00Z")
    rendered = go(closed, newer, settings=ON)
    assert answer(rendered, HTTP, "web.example", "/") == REFUSED
    assert [p.reason for p in rendered.problems] == [NOT_ENFORCED, "Conflict"]
    other = rule("other.example", ("/", "Prefix", "echo-service"))
    older = ingress("aaa", [other], created="2025-01-01T00:00:00Z")
    rendered = go(older, closed, settings=ON)
    assert answer(rendered, HTTP, "other.example", "/") == SERVED
    assert backends(rendered, SERVED) != []


def test_the_refused_cluster_is_owned_and_accepted_by_the_dataplane_state() -> None:
    assert is_ingress_cluster_id(refused_cluster_id(ObjectKey("default", "web")))
    body = ingress("web", [WEB], annotations={NGINX + "global-rate-limit": "5"})
    state = state_of(go(body, settings=ON))
    assert REFUSED in state.clusters
    fixed = state_of(go(ingress("web", [WEB]), settings=ON))
    removed = [r.verb for r in state.diff(fixed) if r.body == REFUSED]
    assert removed == ["remove_cluster"]


@pytest.mark.parametrize("name", ["configuration-snippet", "server-snippet", "stream-snippet"])
@pytest.mark.parametrize("settings", [ON, OFF], ids=["nginx-on", "nginx-off"])
def test_raw_config_is_never_executed_and_says_so(name: str, settings: RenderSettings) -> None:
    rendered = go(ingress("web", [WEB], annotations={NGINX + name: "deny all;"}), settings=settings)
    assert answer(rendered, HTTP, "web.example", "/") == SERVED
    [(kind, reason, message)] = notices(rendered)
    assert (kind, reason) == ("Warning", "SnippetIgnored")
    assert NGINX + name in message and "never executed" in message


def test_an_auth_snippet_is_raw_config_and_fails_closed() -> None:
    body = ingress("web", [WEB], annotations={NGINX + "auth-snippet": "x"})
    rendered = go(body, settings=ON)
    assert answer(rendered, HTTP, "web.example", "/") == REFUSED


@pytest.mark.parametrize(
    "name", ["proxy-buffering", "proxy-buffer-size", "client-body-buffer-size"]
)
def test_nginx_internals_get_a_normal_event(name: str) -> None:
    rendered = go(ingress("web", [WEB], annotations={NGINX + name: "on"}), settings=ON)
    assert answer(rendered, HTTP, "web.example", "/") == SERVED
    [(kind, reason, message)] = notices(rendered)
    assert (kind, reason) == ("Normal", "NoMeaningHere")
    assert NGINX + name in message and "no meaning" in message


@pytest.mark.parametrize("name", ["mirror-target", "proxy-cookie-path", "no-such-annotation"])
def test_other_nginx_annotations_are_not_supported_ignored(name: str) -> None:
    rendered = go(ingress("web", [WEB], annotations={NGINX + name: "/"}), settings=ON)
    assert answer(rendered, HTTP, "web.example", "/") == SERVED
    assert notices(rendered) == [
        ("Warning", "Unsupported", f"annotation {NGINX}{name}: not supported by pysozu, ignored")
    ]


def test_without_the_flag_nginx_annotations_are_reported_as_not_read() -> None:
    annotations = {
        NGINX + "affinity": "cookie",
        NGINX + "proxy-buffering": "off",
        NGINX + "mirror-target": "/",
        "other.example/key": "v",  # not ours to judge
    }
    rendered = go(ingress("web", [WEB], annotations=annotations), settings=OFF)
    assert answer(rendered, HTTP, "web.example", "/") == SERVED
    assert notices(rendered) == [
        (
            "Warning",
            "Unsupported",
            "ignored (--nginx-annotations is off): "
            f"{NGINX}affinity, {NGINX}mirror-target, {NGINX}proxy-buffering",
        )
    ]


def test_mapped_annotations_say_nothing() -> None:
    annotations = {NGINX + "affinity": "cookie", "pysozu.io/load-balancing": "random"}
    rendered = go(ingress("web", [WEB], annotations=annotations), settings=ON)
    assert rendered.problems == []


# -- status and Events ------------------------------------------------------------------------


class FakeApi:
    def __init__(self) -> None:
        self.patched: dict[ObjectKey, tuple[Any, ...]] = {}
        self.events: list[tuple[str, str]] = []

    async def patch_ingress_status(self, key: ObjectKey, *args: Any) -> None:
        self.patched[key] = args

    async def post_event(self, key: ObjectKey, uid: str, kind: str, reason: str, *_: Any) -> None:
        self.events.append((kind, reason))


def publish(bodies: list[dict[str, Any]]) -> dict[ObjectKey, tuple[Any, ...]]:
    snapshot = load(*BASE, extra=bodies)
    from ingress_operator.render import render

    rendered = render(snapshot, ON)
    api = FakeApi()
    settings = Settings(command_socket=Path("s"), publish_address="192.0.2.10", render=ON)
    elector = LeaseElector(api, "default", "lease", "me")  # type: ignore[arg-type]
    elector.is_leader = True
    publisher = StatusPublisher(api, settings, elector)  # type: ignore[arg-type]
    asyncio.run(publisher._write(rendered, snapshot))
    return api.patched


def test_status_says_why_a_refused_ingress_is_not_served() -> None:
    closed = ingress("web", [WEB], annotations={NGINX + "global-rate-limit": "5"})
    ours = (("ip", "192.0.2.10"),)
    assert publish([closed]) == {ObjectKey("default", "web"): (ours, REFUSED_ERROR, (8080, 8443))}
    assert REFUSED_ERROR == "pysozu.io/AnnotationNotEnforced"
    closed["status"] = {
        "loadBalancer": {
            "ingress": [
                {"ip": "192.0.2.10", "ports": [{"port": 8080, "protocol": "TCP", "error": "x"}]}
            ]
        }
    }
    assert publish([closed]) == {ObjectKey("default", "web"): (ours, REFUSED_ERROR, (8080, 8443))}
    # fixed: the error goes away; written once, then nothing to write
    fixed = ingress("web", [WEB])
    fixed["status"] = closed["status"]
    assert publish([fixed]) == {ObjectKey("default", "web"): (ours,)}
    fixed["status"] = {"loadBalancer": {"ingress": [{"ip": "192.0.2.10"}]}}
    assert publish([fixed]) == {}


def test_events_keep_their_type() -> None:
    api = FakeApi()

    async def scenario() -> None:
        recorder = EventRecorder(api, "test")  # type: ignore[arg-type]
        recorder.start()
        key = ObjectKey("d", "i")
        recorder.record([Problem(key, "NoMeaningHere", "m", "Normal"), Problem(key, "X", "m")], {})
        for _ in range(5):
            await asyncio.sleep(0)
        await recorder.stop()

    asyncio.run(scenario())
    assert api.events == [("Normal", "NoMeaningHere"), ("Warning", "X")]


def test_a_normal_event_is_posted_once_per_change_not_per_reconcile_or_hour() -> None:
    api = FakeApi()
    key = ObjectKey("d", "i")
    info, warning = Problem(key, "NoMeaningHere", "m", "Normal"), Problem(key, "X", "m")

    async def scenario() -> None:
        recorder = EventRecorder(api, "test", repeat_after=0.0)  # type: ignore[arg-type]
        recorder.start()
        for problems in ([info, warning], [info, warning], [info], [], [info]):
            recorder.record(problems, {})  # one reconcile each; an hour passes each time
            for _ in range(5):
                await asyncio.sleep(0)
        await recorder.stop()

    asyncio.run(scenario())
    # The Warning repeats after repeat_after; the Normal one only when it came back.
    assert api.events == [
        ("Normal", "NoMeaningHere"),
        ("Warning", "X"),
        ("Warning", "X"),
        ("Normal", "NoMeaningHere"),
    ]


# -- basic auth the dataplane enforces (sozu's authorized_hashes) -----------------------------

ALICE = "alice:" + "ab" * 32
BOB = "bob:" + "CD" * 32


def fronts(rendered: Rendered) -> list[Any]:
    return [r.body for r in rendered.requests if r.verb.endswith("_frontend")]


def test_pysozu_basic_auth_maps_onto_the_cluster_and_every_route() -> None:
    tls = [{"hosts": ["foo.bar.com"], "secretName": "conformance-tls"}]
    annotations = {
        "pysozu.io/authorized-hashes": f"{ALICE}, {BOB}",
        "pysozu.io/www-authenticate": "staff only",
    }
    body = ingress("web", [TLS_RULE], tls=tls, annotations=annotations)
    for settings in (ON, OFF):
        rendered = go(body, settings=settings)
        assert rendered.problems == [] and rendered.refused == frozenset()
        [cluster] = [r.body for r in rendered.requests if r.verb == "add_cluster"]
        assert (cluster.cluster_id, cluster.authorized_hashes) == (SERVED, [ALICE, BOB])
        assert cluster.www_authenticate == "staff only"
        assert answer(rendered, HTTPS, "foo.bar.com", "/") == SERVED
        assert [f.required_auth for f in fronts(rendered)] == [True, True]  # HTTP and HTTPS
    plain = go(ingress("web", [TLS_RULE], tls=tls))
    assert {f.required_auth for f in fronts(plain)} == {None}


def test_bad_hash_entries_are_reported_and_no_entry_left_means_every_request_is_refused() -> None:
    annotations = {"pysozu.io/authorized-hashes": "alice:secret"}
    rendered = go(ingress("web", [WEB], annotations=annotations))
    [problem] = rendered.problems
    assert problem.reason == "InvalidAnnotation" and "'alice'" in problem.message
    assert "secret" not in problem.message  # never echo what may be a password
    [cluster] = [r.body for r in rendered.requests if r.verb == "add_cluster"]
    assert cluster.authorized_hashes == []  # the dataplane answers 401 to everyone
    assert {f.required_auth for f in fronts(rendered)} == {True}


def test_a_realm_without_hashes_is_reported() -> None:
    rendered = go(ingress("web", [WEB], annotations={"pysozu.io/www-authenticate": "x"}))
    assert [p.reason for p in rendered.problems] == ["InvalidAnnotation"]
    assert {f.required_auth for f in fronts(rendered)} == {None}


def test_auth_on_a_cluster_an_older_ingress_owns_stays_closed() -> None:
    older = ingress("old", [rule("old.example", ("/", "Prefix", "echo-service"))])
    newer = ingress(
        "new",
        [rule("new.example", ("/", "Prefix", "echo-service"))],
        created="2026-03-01T00:00:00Z",
        annotations={"pysozu.io/authorized-hashes": ALICE},
    )
    rendered = go(older, newer)
    assert [p.reason for p in rendered.problems] == ["Conflict"]
    by_host = {f.hostname: f.required_auth for f in fronts(rendered)}
    assert by_host == {"old.example": None, "new.example": True}  # the older's empty list: 401


def test_the_annotation_docs_name_every_key_the_controller_judges() -> None:
    from ingress_operator.annotation_review import NO_MEANING, RAW_CONFIG
    from ingress_operator.annotations import NGINX_MAPPED, PYSOZU_MAPPED

    doc = (Path(__file__).parents[2] / "docs" / "ingress-annotations.md").read_text()
    wildcards = re.findall(r"`([a-z-]+)\*`", doc)
    for key in sorted(RESTRICTING_NGINX | RAW_CONFIG | NO_MEANING | NGINX_MAPPED | PYSOZU_MAPPED):
        listed = re.search(rf"`(pysozu\.io/)?{re.escape(key)}[`:]", doc) is not None
        assert listed or any(key.startswith(w) for w in wildcards), key
