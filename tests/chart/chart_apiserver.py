"""A Kubernetes API stand-in for `kubectl apply`, built on kmock, served from a thread.

kmock 0.8's emulator stores objects verbatim; kubectl needs a little more of what a real
API server adds. This subclass fills those gaps (see reference/kubernetes.md, section 2):
server-set metadata on create, `kind` on lists, `/api/v1` discovery naming `v1`, and the
prometheus-operator ServiceMonitor and cert-manager Issuer/Certificate resources, which the
chart can render. kmock also reads
`/api/v1/namespaces[/NAME]` as a namespace prefix, not as the Namespace resource; those
paths are rewritten to `/api/v1/namespaces/-/namespaces[/NAME]`, so that Namespaces are
stored under the pseudo-namespace "-" (and nowhere else).

It checks nothing about schemas: kubernetes-validate does that in the other tests.
"""

from __future__ import annotations

import asyncio
import datetime
import itertools
import re
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, cast

import aiohttp.web
import kmock
from kmock._internal import enums, rendering

# Resources that are not built into Kubernetes but that the chart may render.
EXTRA_RESOURCES = {
    "monitoring.coreos.com/v1/servicemonitors": kmock.ResourceInfo(
        kind="ServiceMonitor",
        singular="servicemonitor",
        namespaced=True,
        verbs={"create", "delete", "get", "list", "patch", "update", "watch"},
    ),
    **{
        f"cert-manager.io/v1/{plural}": kmock.ResourceInfo(
            kind=kind,
            singular=kind.lower(),
            namespaced=True,
            verbs={"create", "delete", "get", "list", "patch", "update", "watch"},
        )
        for kind, plural in (("Issuer", "issuers"), ("Certificate", "certificates"))
    },
}
NAMESPACE_PATH = re.compile(r"^/api/v1/namespaces(/[^/]+)?/?$")
NAMESPACE_OBJECTS = "-"


class ApiServerStandIn(kmock.KubernetesEmulator):
    """kmock's emulator, plus the metadata and discovery details kubectl relies on."""

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        self.resources.load_bundled()
        for key, info in EXTRA_RESOURCES.items():
            self.resources[key] = info
        self._resource_versions = itertools.count(1)

    async def __call__(self, raw_request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        if match := NAMESPACE_PATH.match(raw_request.path):
            path = f"/api/v1/namespaces/{NAMESPACE_OBJECTS}/namespaces{match.group(1) or ''}"
            raw_request = raw_request.clone(rel_url=raw_request.rel_url.with_path(path))
        return await super().__call__(raw_request)

    async def _handle(self, request: rendering.Request) -> Any:
        if request.resource is not None and request.action == enums.action.CREATE:
            self._fill_server_metadata(request)
        return await super()._handle(request)

    def _fill_server_metadata(self, request: rendering.Request) -> None:
        if not isinstance(request.data, dict):  # e.g. protobuf, as `kubectl create <kind>` sends
            raise kmock.KubernetesError(
                status=415, reason="UnsupportedMediaType", message="send JSON objects"
            )
        metadata = request.data.setdefault("metadata", {})
        namespaced = request.namespace not in (None, NAMESPACE_OBJECTS)
        if namespaced and "namespace" not in metadata:
            metadata["namespace"] = request.namespace
        if "name" not in metadata and "generateName" in metadata:
            metadata["name"] = metadata["generateName"] + uuid.uuid4().hex[:5]
        metadata.setdefault("uid", str(uuid.uuid4()))
        metadata.setdefault("creationTimestamp", _now())
        metadata["resourceVersion"] = str(next(self._resource_versions))

    async def _serve_list(self, request: rendering.Request) -> Any:
        listing = cast(dict[str, Any], await super()._serve_list(request))
        resource = request.resource
        assert resource is not None  # list requests always name their resource
        info = self.resources[resource]
        if info.kind:
            listing["kind"] = f"{info.kind}List"
            group, version = resource.group, resource.version
            listing["apiVersion"] = f"{group}/{version}" if group else version
        return listing

    async def _serve_version(self, request: rendering.Request) -> Any:
        discovery = cast(dict[str, Any], await super()._serve_version(request))
        # kmock names the core group "/v1"; kubectl then cannot map core kinds.
        discovery["groupVersion"] = discovery["groupVersion"].lstrip("/")
        return discovery


def _now() -> str:
    return datetime.datetime.now(tz=datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@contextmanager
def running_apiserver(timeout: float = 10.0) -> Iterator[tuple[ApiServerStandIn, str]]:
    """Serve an `ApiServerStandIn` on 127.0.0.1 from a daemon thread; yield it and its URL.

    Blocking clients (kubectl subprocesses) can then talk to it from the test's thread.
    Read `.objects` only while no client is running: the server's loop owns it.
    """
    ready = threading.Event()
    stop: asyncio.Event | None = None
    loop: asyncio.AbstractEventLoop | None = None
    handed_over: dict[str, Any] = {}

    async def serve() -> None:
        nonlocal stop, loop
        loop, stop = asyncio.get_running_loop(), asyncio.Event()
        async with ApiServerStandIn() as handler, kmock.Server(handler) as server:
            handed_over.update(handler=handler, url=str(server.url).rstrip("/"))
            ready.set()
            await stop.wait()

    def run() -> None:
        try:
            asyncio.run(serve())
        except BaseException as error:  # reported to the waiting test below
            handed_over["error"] = error
            ready.set()

    thread = threading.Thread(target=run, name="kmock-apiserver", daemon=True)
    thread.start()
    if not ready.wait(timeout) or "error" in handed_over:
        raise RuntimeError(f"the kmock API stand-in did not start: {handed_over.get('error')!r}")
    try:
        yield handed_over["handler"], handed_over["url"]
    finally:
        assert loop is not None and stop is not None
        loop.call_soon_threadsafe(stop.set)
        thread.join(timeout)
