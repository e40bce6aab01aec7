"""The controller's Prometheus metrics, read from the rendered text (no sockets, no sleeps):
names, types and labels; rounds, pushes and the last sync as they happen; the controller's own
counters read at scrape time; the reconciler reporting its rounds; /metrics on the health app."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from ingress_operator import metrics
from ingress_operator.controller import Controller
from ingress_operator.kube import KubeApi, KubeError
from ingress_operator.metrics import ControllerMetrics, Sources, for_controller, problem_counts
from ingress_operator.model import ObjectKey
from ingress_operator.render import Problem, render
from ingress_operator.settings import RenderSettings, Settings
from kubernetes.client import ApiException
from prometheus_client.parser import text_string_to_metric_families
from test_operator_conformance import BASE, load
from test_operator_render import SETTINGS, ingress, rule

LATER = "2026-02-01T00:00:00Z"
FAMILIES = {
    "pysozu_ingress_reconciles": "counter",
    "pysozu_ingress_config_push_duration_seconds": "histogram",
    "pysozu_ingress_last_successful_sync_timestamp_seconds": "gauge",
    "pysozu_ingress_leader": "gauge",
    "pysozu_ingress_ready": "gauge",
    "pysozu_ingress_ingresses": "gauge",
    "pysozu_ingress_ingress_problems": "gauge",
    "pysozu_ingress_errors": "counter",
    "pysozu_ingress_relists": "counter",
    "pysozu_ingress_sweeps": "counter",
    "pysozu_ingress_swept_objects": "counter",
    "pysozu_ingress_publish_service_watches": "counter",
    "pysozu_ingress_events_posted": "counter",
    "pysozu_ingress_task_restarts": "counter",
    "pysozu_ingress_config_hash": "gauge",
    "pysozu_ingress_cluster_info": "gauge",
    "pysozu_ingress_certificate_expiry_timestamp_seconds": "gauge",
}


def samples(m: ControllerMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the exposition, by (name, sorted labels); the text must parse."""
    out = {}
    for family in text_string_to_metric_families(m.exposition().decode()):
        for sample in family.samples:
            out[sample.name, tuple(sorted(sample.labels.items()))] = sample.value
    return out


def value(m: ControllerMetrics, name: str, **labels: str) -> float:
    return samples(m)[name, tuple(sorted(labels.items()))]


def test_every_family_is_exported_with_its_type_and_the_prefix() -> None:
    text = ControllerMetrics().exposition().decode()
    found = {f.name: f.type for f in text_string_to_metric_families(text)}
    assert found == FAMILIES
    assert "_created" not in text  # no process-wide client defaults leak in


def test_a_fresh_controller_exports_zeros_for_every_fixed_label() -> None:
    m = ControllerMetrics()
    for result in metrics.RESULTS:
        assert value(m, "pysozu_ingress_reconciles_total", result=result) == 0
    for kind in metrics.ERROR_KINDS:
        assert value(m, "pysozu_ingress_errors_total", kind=kind) == 0
    assert value(m, "pysozu_ingress_ingresses", state="served") == 0
    assert value(m, "pysozu_ingress_ingresses", state="failed_closed") == 0
    assert value(m, "pysozu_ingress_ingresses", state="conflicting") == 0
    assert value(m, "pysozu_ingress_config_hash") == 0
    assert value(m, "pysozu_ingress_last_successful_sync_timestamp_seconds") == 0
    assert value(m, "pysozu_ingress_config_push_duration_seconds_count") == 0


def test_rounds_count_by_result_and_only_pushes_are_timed() -> None:
    now = [1000.0]
    m = ControllerMetrics(clock=lambda: now[0])
    m.round("pushed", 0.03)
    now[0] = 1005.0
    m.round("unchanged", 0.001)
    now[0] = 1010.0
    m.round("failed", 2.0)  # a failure is not a sync
    m.round("pushed", 7.0)
    assert value(m, "pysozu_ingress_reconciles_total", result="pushed") == 2
    assert value(m, "pysozu_ingress_reconciles_total", result="unchanged") == 1
    assert value(m, "pysozu_ingress_reconciles_total", result="failed") == 1
    assert value(m, "pysozu_ingress_errors_total", kind="dataplane") == 1
    assert value(m, "pysozu_ingress_last_successful_sync_timestamp_seconds") == 1010.0
    name = "pysozu_ingress_config_push_duration_seconds"
    assert value(m, name + "_count") == 2
    assert value(m, name + "_sum") == pytest.approx(7.03)
    assert value(m, name + "_bucket", le="0.025") == 0
    assert value(m, name + "_bucket", le="0.05") == 1  # cumulative buckets
    assert value(m, name + "_bucket", le="5.0") == 1
    assert value(m, name + "_bucket", le="10.0") == 2
    assert value(m, name + "_bucket", le="+Inf") == 2


def test_sources_are_read_at_every_scrape() -> None:
    state: dict[str, Any] = {"leader": False, "api": Counter(), "restarts": {"lease": 0}}
    m = ControllerMetrics(
        Sources(
            leader=lambda: state["leader"],
            ready=lambda: True,
            ingresses=lambda: (5, 2),
            problems=lambda: {"AnnotationNotEnforced": 2, "Conflict": 1},
            api_failures=lambda: state["api"],
            refused_requests=lambda: 3,
            relists=lambda: {"ingresses": 4},
            sweeps=lambda: 6,
            swept=lambda: 7,
            publish_watches=lambda: 8,
            task_restarts=lambda: state["restarts"],
            events_posted=lambda: 9,
        )
    )
    assert value(m, "pysozu_ingress_leader") == 0
    state["leader"] = True
    state["api"]["api_timeout"] += 2
    state["api"]["api_server"] += 1
    state["restarts"] = {"lease": 1, "status": 0}
    assert value(m, "pysozu_ingress_leader") == 1
    assert value(m, "pysozu_ingress_ready") == 1
    assert value(m, "pysozu_ingress_ingresses", state="served") == 3  # 5 served, 2 refusing
    assert value(m, "pysozu_ingress_ingresses", state="failed_closed") == 2
    assert value(m, "pysozu_ingress_ingress_problems", reason="Conflict") == 1
    assert value(m, "pysozu_ingress_errors_total", kind="api_timeout") == 2
    assert value(m, "pysozu_ingress_errors_total", kind="api_server") == 1
    assert value(m, "pysozu_ingress_errors_total", kind="dataplane_refused") == 3
    assert value(m, "pysozu_ingress_relists_total", resource="ingresses") == 4
    assert value(m, "pysozu_ingress_sweeps_total") == 6
    assert value(m, "pysozu_ingress_swept_objects_total") == 7
    assert value(m, "pysozu_ingress_publish_service_watches_total") == 8
    assert value(m, "pysozu_ingress_task_restarts_total", task="lease") == 1
    assert value(m, "pysozu_ingress_events_posted_total") == 9


def test_problem_counts_are_distinct_ingresses_per_reason() -> None:
    a, b = ObjectKey("ns", "a"), ObjectKey("ns", "b")
    problems = [
        Problem(a, "Conflict", "one"),
        Problem(a, "Conflict", "two"),  # the same Ingress twice: counted once
        Problem(b, "Conflict", "one"),
        Problem(b, "InvalidPath", "x"),
    ]
    assert problem_counts(problems) == {"Conflict": 2, "InvalidPath": 1}


def controller(tmp_path: Path) -> Controller:
    return Controller(Settings(command_socket=tmp_path / "sock"))


def test_a_controller_reports_its_rendering_and_its_rounds(tmp_path: Path) -> None:
    c = controller(tmp_path)
    m = c.metrics
    assert c.reconciler.on_round == m.round
    restricted = {"nginx.ingress.kubernetes.io/whitelist-source-range": "10.0.0.0/8"}
    snapshot = load(
        *BASE,
        extra=[
            ingress("open", [rule("a.example", ("/", "Prefix", "echo"))]),
            ingress("closed", [rule("b.example", ("/", "Prefix", "echo"))], annotations=restricted),
        ],
    )
    c.reconciler.last_rendered = render(snapshot, SETTINGS)
    c.reconciler.ready = True
    c.reconciler.refused_requests = 2
    c.events.posted = 4
    assert value(m, "pysozu_ingress_ingresses", state="served") == 1
    assert value(m, "pysozu_ingress_ingresses", state="failed_closed") == 1
    assert value(m, "pysozu_ingress_ingress_problems", reason="AnnotationNotEnforced") == 1
    assert value(m, "pysozu_ingress_ready") == 1
    assert value(m, "pysozu_ingress_leader") == 0  # no API: never the leader
    assert value(m, "pysozu_ingress_errors_total", kind="dataplane_refused") == 2
    assert value(m, "pysozu_ingress_events_posted_total") == 4


def test_the_reconciler_reports_each_round(tmp_path: Path) -> None:
    """Driven through Reconciler.run with reconcile_once faked: one pushed round, then one
    failed (the loop then waits out its back-off, which the test does not)."""
    c = controller(tmp_path)
    outcomes = iter([True, False])
    pushes = iter([Counter({"add_cluster": 1}), Counter()])

    async def once() -> bool:
        c.reconciler.last_push = next(pushes)
        return next(outcomes)

    c.reconciler.reconcile_once = once  # type: ignore[method-assign]
    c.reconciler.settings = Settings(command_socket=tmp_path / "sock", debounce_seconds=0.0)
    c.reconciler.max_delay = 0.0

    async def drive() -> None:
        task = asyncio.create_task(c.reconciler.run())
        for _ in range(2):
            c.reconciler.trigger()
            for _ in range(10):
                await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(drive())
    m = c.metrics
    assert value(m, "pysozu_ingress_reconciles_total", result="pushed") == 1
    assert value(m, "pysozu_ingress_reconciles_total", result="failed") == 1
    assert value(m, "pysozu_ingress_config_push_duration_seconds_count") == 1


def test_for_controller_reads_the_api_failures(tmp_path: Path) -> None:
    c = controller(tmp_path)

    class Api:
        failures = Counter({"api_unreachable": 5})

    c.api = Api()  # type: ignore[assignment]
    m = for_controller(c)
    assert value(m, "pysozu_ingress_errors_total", kind="api_unreachable") == 5


@pytest.mark.parametrize(
    ("raised", "kind"),
    [
        (ConnectionRefusedError("refused"), "api_unreachable"),
        (TimeoutError(), "api_timeout"),
        (ApiException(status=409, reason="Conflict"), "api_client"),
        (ApiException(status=503, reason="Unavailable"), "api_server"),
    ],
)
def test_api_failures_are_counted_by_kind(raised: Exception, kind: str) -> None:
    def method(*args: Any, **kwargs: Any) -> None:
        raise raised

    api = KubeApi.__new__(KubeApi)
    api.timeout = 10.0
    api.failures = Counter()
    with pytest.raises(KubeError):
        asyncio.run(api._call(method))
    assert api.failures == {kind: 1}


def test_what_was_pushed_is_exported_hash_clusters_and_certificates(tmp_path: Path) -> None:
    c = controller(tmp_path)
    m = c.metrics
    tls = [{"hosts": ["a.example"], "secretName": "conformance-tls"}]
    redirect = {"nginx.ingress.kubernetes.io/permanent-redirect": "https://elsewhere.example/"}
    snapshot = load(
        *BASE,
        extra=[
            ingress("web", [rule("a.example", ("/", "Prefix", "echo-service"))], tls=tls),
            ingress("moved", [rule("b.example", ("/", "Prefix", "x"))], annotations=redirect),
            # Younger: loses a.example/ to web.
            ingress("late", [rule("a.example", ("/", "Prefix", "other"))], created=LATER),
        ],
    )
    for key, body in snapshot.ingresses.items():  # the indices hold what was rendered
        c.indices.ingresses[key] = body
    c.indices.secrets.update(snapshot.secrets)
    rendered = render(snapshot, RenderSettings(nginx_annotations=True))
    c.reconciler.last_rendered = rendered
    assert value(m, "pysozu_ingress_config_hash") == 0  # nothing pushed yet
    assert not [k for k in samples(m) if k[0] == "pysozu_ingress_cluster_info"]
    c.reconciler.pushed = rendered
    digest = value(m, "pysozu_ingress_config_hash")
    assert 0 < digest < 2**53 and digest == int(digest)
    info = {dict(k[1])["cluster"]: dict(k[1]) for k in samples(m) if k[0].endswith("cluster_info")}
    assert info["default/echo-service:80"] == {"cluster": "default/echo-service:80",
        "namespace": "default", "ingress": "web", "service": "echo-service"}  # fmt: skip
    assert info["default/moved:-redirect"]["service"] == ""
    assert "default/other:80" not in info  # its only route was lost: never pushed
    assert value(m, "pysozu_ingress_ingresses", state="conflicting") == 1
    secret = snapshot.secrets[ObjectKey("default", "conformance-tls")]
    assert secret.not_after > 1e9
    expiry = "pysozu_ingress_certificate_expiry_timestamp_seconds"
    assert value(m, expiry, namespace="default", secret="conformance-tls") == secret.not_after
    assert [k for k in samples(m) if k[0] == expiry] == [
        (expiry, (("namespace", "default"), ("secret", "conformance-tls")))
    ]
    # The same state rendered again hashes the same; another state, another hash.
    c.reconciler.pushed = render(snapshot, RenderSettings(nginx_annotations=True))
    assert value(m, "pysozu_ingress_config_hash") == digest
    del snapshot.ingresses[ObjectKey("default", "moved")]
    c.reconciler.pushed = render(snapshot, RenderSettings(nginx_annotations=True))
    assert value(m, "pysozu_ingress_config_hash") != digest
