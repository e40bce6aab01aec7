"""The few Kubernetes API writes the controller makes, off the event loop.

kopf watches; these calls post Events, write `status.loadBalancer` and hold the Lease. They use
the official client with the same credentials kopf finds (in-cluster service account, else
KUBECONFIG), each call in a worker thread so the event loop never blocks.

Every call is bounded: urllib3 gets a connect and read timeout, and the whole call (urllib3's
own retries included) is abandoned after `timeout` seconds. Every failure of a call, whatever
the library raises for it (urllib3's `MaxRetryError` is not an OSError), is a `KubeError`.
"""

from __future__ import annotations

import asyncio
import collections
import datetime
import json
import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import kubernetes
import urllib3
from ingress_operator.model import ObjectKey
from kubernetes.watch.watch import iter_resp_lines

log = logging.getLogger("pysozu.ingress.kube")


class KubeError(Exception):
    """An API call failed; `status` is the HTTP status when there was one (409, 404...)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


DEFAULT_TIMEOUT = 10.0  # seconds for one API call, retries included
_LIST_TIMEOUT = 60.0  # the startup listing of every watched object may be large
WATCH_TIMEOUT = 50  # seconds the API server keeps a watch of ours open
# Listings need names and uids only: ask for PartialObjectMetadataList, plain JSON otherwise.
_METADATA_ONLY = {
    "Accept": "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json"
}


class KubeApi:
    def __init__(
        self, client: kubernetes.client.ApiClient, timeout: float = DEFAULT_TIMEOUT
    ) -> None:
        self.timeout = timeout
        self.failures: collections.Counter[str] = collections.Counter()  # by kind, for metrics
        self._core = kubernetes.client.CoreV1Api(client)
        self._networking = kubernetes.client.NetworkingV1Api(client)
        self._coordination = kubernetes.client.CoordinationV1Api(client)
        self._discovery = kubernetes.client.DiscoveryV1Api(client)

    @classmethod
    def from_environment(cls, timeout: float = DEFAULT_TIMEOUT) -> KubeApi:
        try:
            kubernetes.config.load_incluster_config()  # type: ignore[no-untyped-call]
        except kubernetes.config.ConfigException:
            kubernetes.config.load_kube_config()  # type: ignore[no-untyped-call]
        return cls(kubernetes.client.ApiClient(), timeout)

    async def _call(
        self, method: Any, *args: Any, bound: float | None = None, **kwargs: Any
    ) -> Any:
        """Call `method` in a thread; `bound` (default: the API's timeout) limits the whole call."""
        timeout = bound or self.timeout
        kwargs.setdefault("_request_timeout", (min(5.0, timeout), timeout))
        try:
            # The thread cannot be cancelled; past the bound it is left to urllib3's timeouts.
            return await asyncio.wait_for(asyncio.to_thread(method, *args, **kwargs), timeout)
        except kubernetes.client.ApiException as error:
            self.failures["api_server" if (error.status or 0) >= 500 else "api_client"] += 1
            raise KubeError(f"{error.status} {error.reason}", error.status) from None
        except TimeoutError:
            self.failures["api_timeout"] += 1
            raise KubeError(f"no answer within {timeout:.0f}s") from None
        except (OSError, ValueError, urllib3.exceptions.HTTPError) as error:
            # connection refused or reset, timeouts, retries exhausted, unreadable answers
            self.failures["api_unreachable"] += 1
            raise KubeError(f"{type(error).__name__}: {error}") from None

    def _listers(self, resource: tuple[str, ...]) -> tuple[Any, Any]:
        """(list in all namespaces, list in one namespace) for a watched resource."""
        plural = resource[-1]
        core, networking, discovery = self._core, self._networking, self._discovery
        table: dict[str, tuple[Any, Any]] = {
            "ingresses": (
                networking.list_ingress_for_all_namespaces,
                networking.list_namespaced_ingress,
            ),
            "ingressclasses": (networking.list_ingress_class, None),
            "services": (core.list_service_for_all_namespaces, core.list_namespaced_service),
            "endpointslices": (
                discovery.list_endpoint_slice_for_all_namespaces,
                discovery.list_namespaced_endpoint_slice,
            ),
            "secrets": (core.list_secret_for_all_namespaces, core.list_namespaced_secret),
        }
        return table[plural]

    async def list_uids(
        self,
        resources: Iterable[tuple[str, ...]],
        namespaces: Iterable[str],
        field_selectors: Mapping[tuple[str, ...], str],
    ) -> set[str]:
        """The uids of every object of these resources (all namespaces, or these ones)."""
        listed = await self.list_keys(resources, namespaces, field_selectors)
        return {uid for by_uid in listed.values() for uid in by_uid}

    async def list_keys(
        self,
        resources: Iterable[tuple[str, ...]],
        namespaces: Iterable[str],
        field_selectors: Mapping[tuple[str, ...], str],
    ) -> dict[tuple[str, ...], dict[str, ObjectKey]]:
        """Per resource, uid -> key of every object (all namespaces, or these ones); only the
        metadata is asked for (a real API server then sends no specs, no secret data)."""
        namespaces = tuple(namespaces)
        found: dict[tuple[str, ...], dict[str, ObjectKey]] = {}
        for resource in resources:
            everywhere, in_namespace = self._listers(resource)
            options: dict[str, Any] = {"_preload_content": False, "_headers": _METADATA_ONLY}
            if selector := field_selectors.get(resource):
                options["field_selector"] = selector
            calls: list[tuple[Any, tuple[str, ...]]] = [(everywhere, ())]
            if namespaces and in_namespace is not None:
                calls = [(in_namespace, (namespace,)) for namespace in namespaces]
            keys = found.setdefault(resource, {})
            for method, args in calls:
                raw = await self._call(method, *args, bound=_LIST_TIMEOUT, **options)
                try:
                    listed = json.loads(raw.data)
                except ValueError as error:
                    raise KubeError(f"unreadable list of {resource[-1]}: {error}") from None
                for item in listed.get("items") or []:
                    meta = item.get("metadata") or {}
                    uid, name = meta.get("uid"), meta.get("name")
                    if isinstance(uid, str) and isinstance(name, str):
                        keys[uid] = ObjectKey(str(meta.get("namespace") or ""), name)
        return found

    async def list_service(self, namespace: str, name: str) -> tuple[dict[str, Any] | None, str]:
        """The Service `namespace/name` (None: there is none) and the list's resourceVersion,
        to watch from. Listed by name, so `list` and `watch` on services are the rights used."""
        raw = await self._call(
            self._core.list_namespaced_service,
            namespace,
            field_selector=f"metadata.name={name}",
            _preload_content=False,
        )
        try:
            listed = json.loads(raw.data)
        except ValueError as error:
            raise KubeError(f"unreadable list of services: {error}") from None
        version = str((listed.get("metadata") or {}).get("resourceVersion") or "")
        for item in listed.get("items") or []:  # also filtered here: some servers ignore it
            if isinstance(item, dict) and (item.get("metadata") or {}).get("name") == name:
                return item, version
        return None, version

    async def watch_service(
        self,
        namespace: str,
        name: str,
        since: str,
        deliver: Callable[[str, dict[str, Any]], None],
        server_timeout: int = WATCH_TIMEOUT,
    ) -> str:
        """Watch the Service `namespace/name` from `since`, calling `deliver(type, object)` in
        the event loop for each event, until the server ends the watch (`server_timeout`; the
        read is abandoned `timeout` later); return the last resourceVersion seen. An ERROR
        event (410 Gone: `since` is too old) is a KubeError with its code.

        The stream is read in a daemon thread (a watch is long: a pooled thread would hold the
        process's exit); cancelling this call stops delivering at once."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[str] = loop.create_future()
        stop = threading.Event()

        def finish(version: str | None, error: KubeError | None) -> None:
            if done.done():
                return
            if error is not None:
                done.set_exception(error)
            else:
                done.set_result(version or since)

        def post(function: Callable[..., None], *args: Any) -> None:
            if stop.is_set():
                return
            try:
                loop.call_soon_threadsafe(function, *args)
            except RuntimeError:  # the loop is closed: nobody listens any more
                stop.set()

        def read() -> None:
            version = since
            try:
                response: Any = self._core.list_namespaced_service(
                    namespace,
                    field_selector=f"metadata.name={name}",
                    watch=True,
                    resource_version=since or None,
                    allow_watch_bookmarks=True,
                    timeout_seconds=server_timeout,
                    _preload_content=False,
                    _request_timeout=(min(5.0, self.timeout), server_timeout + self.timeout),
                )
                for line in iter_resp_lines(response):  # type: ignore[no-untyped-call]
                    if stop.is_set():
                        response.release_conn()
                        return
                    event = json.loads(line)
                    kind, body = str(event.get("type")), event.get("object") or {}
                    if kind == "ERROR":
                        code = body.get("code")
                        message = f"watch ended: {code} {body.get('message', '')}".rstrip()
                        post(finish, None, KubeError(message, code))
                        return
                    meta = body.get("metadata") or {}
                    version = meta.get("resourceVersion") or version
                    if kind != "BOOKMARK" and meta.get("name") == name:
                        post(deliver, kind, body)
                post(finish, version, None)
            except kubernetes.client.ApiException as error:
                post(finish, None, KubeError(f"{error.status} {error.reason}", error.status))
            except Exception as error:  # connection lost, read timeout, an unreadable line
                post(finish, None, KubeError(f"{type(error).__name__}: {error}"))

        threading.Thread(target=read, name=f"watch {namespace}/{name}", daemon=True).start()
        try:
            return await done
        finally:
            stop.set()

    async def post_event(
        self, ingress: ObjectKey, uid: str, kind: str, reason: str, message: str, component: str
    ) -> None:
        stamp = now()
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{ingress.name}.", "namespace": ingress.namespace},
            "involvedObject": {
                "apiVersion": "networking.k8s.io/v1",
                "kind": "Ingress",
                "namespace": ingress.namespace,
                "name": ingress.name,
                "uid": uid,
            },
            "type": kind,
            "reason": reason,
            "message": message[:1024],
            "source": {"component": component},
            "reportingComponent": component,
            "firstTimestamp": stamp.isoformat(),
            "lastTimestamp": stamp.isoformat(),
            "count": 1,
        }
        await self._call(self._core.create_namespaced_event, ingress.namespace, body)

    async def patch_ingress_status(
        self,
        ingress: ObjectKey,
        addresses: tuple[tuple[str, str], ...],
        error: str | None = None,
        ports: tuple[int, ...] = (),
    ) -> None:
        """Write `status.loadBalancer.ingress`; with an `error`, each address lists `ports`
        with that error (the only place an Ingress's status can say why: no conditions)."""
        port_status = [{"port": port, "protocol": "TCP", "error": error} for port in ports]
        entries: list[dict[str, Any]] | None = [
            {kind: value, "ports": port_status} if error else {kind: value}
            for kind, value in addresses
        ] or None
        body = {"status": {"loadBalancer": {"ingress": entries}}}
        await self._call(
            self._networking.patch_namespaced_ingress_status,
            ingress.name,
            ingress.namespace,
            body,
        )

    async def read_lease(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            lease = await self._call(self._coordination.read_namespaced_lease, name, namespace)
        except KubeError as error:
            if error.status == 404:
                return None
            raise
        result: dict[str, Any] = lease.to_dict()
        return result

    async def create_lease(self, namespace: str, name: str, spec: dict[str, Any]) -> None:
        body = {"metadata": {"name": name, "namespace": namespace}, "spec": spec}
        await self._call(self._coordination.create_namespaced_lease, namespace, body)

    async def patch_lease(
        self, namespace: str, name: str, spec: dict[str, Any], resource_version: str | None
    ) -> None:
        # The resourceVersion turns the merge patch into a compare-and-swap on a real server.
        metadata = {"resourceVersion": resource_version} if resource_version else {}
        body = {"metadata": metadata, "spec": spec}
        await self._call(self._coordination.patch_namespaced_lease, name, namespace, body)
