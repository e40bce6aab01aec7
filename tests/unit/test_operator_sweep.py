"""The sweep after a re-list: what a fresh listing lacks is dropped, what arrived since is kept."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from ingress_operator.indices import INGRESS_CLASSES, INGRESSES, SERVICES, Indices
from ingress_operator.kube import KubeError
from ingress_operator.model import ObjectKey
from ingress_operator.sweep import Sweeper
from test_operator_reconciler import WEB
from test_operator_render import APP_SERVICE

CLASS = {"metadata": {"name": "pysozu", "uid": "c1"}, "spec": {"controller": "x"}}


def named(body: dict[str, Any], name: str, uid: str) -> dict[str, Any]:
    return {**body, "metadata": {**body["metadata"], "name": name, "uid": uid}}


def settled(*events: tuple[tuple[str, ...], dict[str, Any]]) -> Indices:
    indices = Indices()
    indices.settle()
    for resource, body in events:
        indices.apply(resource, "ADDED", body)
    return indices


def test_the_sweep_drops_what_the_listing_lacks_and_keeps_what_came_after() -> None:
    indices = settled((INGRESSES, named(WEB, "a", "1")), (INGRESSES, named(WEB, "gone", "2")))
    mark = indices.mark()  # the listing starts here...
    indices.apply(INGRESSES, "ADDED", named(WEB, "new", "3"))  # ...and this came after it
    gone = indices.sweep(INGRESSES, [ObjectKey("default", "a")], mark)
    assert gone == [ObjectKey("default", "gone")]
    assert sorted(k.name for k in indices.snapshot().ingresses) == ["a", "new"]
    # An object touched after the mark is kept even if the listing lacks it (it is newer).
    mark = indices.mark()
    indices.apply(INGRESSES, "MODIFIED", named(WEB, "a", "1"))
    assert indices.sweep(INGRESSES, [], mark) == [ObjectKey("default", "new")]
    assert [k.name for k in indices.snapshot().ingresses] == ["a"]


def test_cluster_scoped_objects_are_swept_by_name_and_resources_apart() -> None:
    indices = settled((INGRESS_CLASSES, CLASS), (SERVICES, named(APP_SERVICE, "app", "s1")))
    mark = indices.mark()
    assert indices.sweep(INGRESS_CLASSES, [ObjectKey("", "pysozu")], mark) == []
    assert indices.sweep(INGRESS_CLASSES, [], mark) == ["pysozu"]
    assert indices.snapshot().classes == {}
    assert list(indices.snapshot().services) == [ObjectKey("default", "app")]
    indices.apply(SERVICES, "DELETED", named(APP_SERVICE, "app", "s1"))
    assert indices.sweep(SERVICES, [], indices.mark()) == []  # nothing left to stamp


def test_a_listing_event_after_the_startup_reports_a_relist() -> None:
    seen: list[tuple[str, ...]] = []
    indices = Indices()
    indices.on_relist = seen.append
    indices.apply(INGRESSES, None, named(WEB, "a", "1"))  # before the startup listing
    indices.expect({"1", "2"})
    indices.apply(INGRESSES, None, named(WEB, "b", "2"))  # the startup listing
    assert indices.settled and seen == []
    indices.apply(INGRESSES, "MODIFIED", named(WEB, "b", "2"))  # a watch event
    assert seen == []
    indices.apply(INGRESSES, None, named(WEB, "b", "2"))  # kopf listed again (after 410)
    assert seen == [INGRESSES]


class Listing:
    def __init__(self, keys: dict[tuple[str, ...], list[ObjectKey]]) -> None:
        self.keys = keys
        self.asked: list[tuple[str, ...]] = []
        self.fail = False

    async def __call__(self, resource: tuple[str, ...]) -> dict[str, ObjectKey]:
        self.asked.append(resource)
        if self.fail:
            raise KubeError("503 Service Unavailable", 503)
        return {f"uid-{i}": key for i, key in enumerate(self.keys.get(resource, []))}


def test_the_sweeper_lists_the_relisted_resources_and_triggers_a_push() -> None:
    indices = settled((INGRESSES, named(WEB, "a", "1")), (INGRESSES, named(WEB, "gone", "2")))
    listing = Listing({INGRESSES: [ObjectKey("default", "a")]})
    triggers: list[None] = []
    sweeper = Sweeper(indices, listing, lambda: triggers.append(None))
    indices.apply(INGRESSES, None, named(WEB, "a", "1"))  # a re-list: the sweeper is told
    assert indices.on_relist == sweeper.relisted
    assert asyncio.run(sweeper.sweep({INGRESSES})) == 1
    assert listing.asked == [INGRESSES] and len(triggers) == 1
    assert (sweeper.sweeps, sweeper.removed) == (1, 1)
    assert asyncio.run(sweeper.sweep({INGRESSES})) == 0
    assert len(triggers) == 1  # nothing removed: no push
    listing.fail = True
    with pytest.raises(KubeError):  # run() retries it with back-off
        asyncio.run(sweeper.sweep({INGRESSES}))
    assert [k.name for k in indices.snapshot().ingresses] == ["a"]  # a failure drops nothing


def test_the_sweep_period_flag() -> None:
    from ingress_operator.cli import parser, settings_from

    def period(*flag: str) -> float:
        return settings_from(parser().parse_args(["--command-socket", "s", *flag])).sweep_period

    assert period() == 600.0
    assert period("--sweep-period", "0") == 0.0
    with pytest.raises(SystemExit):
        period("--sweep-period", "-1")
    with pytest.raises(SystemExit):
        period("--sweep-period", "soon")
