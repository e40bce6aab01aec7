"""`status.loadBalancer.ingress`, written by one replica elected with a coordination.k8s.io Lease.

Every replica serves traffic; only the Lease holder writes status. It writes our address on the
Ingresses we serve and clears it from those we stop serving (an Ingress whose status holds our
address but that is no longer ours), comparing before patching so a steady state writes
nothing. An Ingress that fails closed (an access restriction pysozu cannot enforce) gets our
address with the error `pysozu.io/AnnotationNotEnforced` on each listener port (Ingress status
has no conditions); its Events name the annotation.
The address: --publish-address, else the --publish-service Service's, else the pod's own.
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import logging
import os
import socket
from typing import Any

from ingress_operator.annotation_review import NOT_ENFORCED
from ingress_operator.kube import KubeApi, KubeError, now
from ingress_operator.model import ObjectKey, Snapshot
from ingress_operator.render import Rendered
from ingress_operator.settings import Settings

log = logging.getLogger("pysozu.ingress.status")

Addresses = tuple[tuple[str, str], ...]
# An Ingress failing closed: its address with this error on the listeners' ports (Ingress
# status has no conditions; `ports[].error` takes a CamelCase value, prefixed by our domain).
REFUSED_ERROR = "pysozu.io/" + NOT_ENFORCED
_PARALLEL_WRITES = 8


def _micro_time(stamp: datetime.datetime) -> str:
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _as_datetime(value: Any) -> datetime.datetime | None:
    if isinstance(value, datetime.datetime):
        return value if value.tzinfo else value.replace(tzinfo=datetime.UTC)
    if isinstance(value, str):
        try:
            return datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
    return None


def address_entry(value: str) -> tuple[str, str]:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return ("hostname", value)
    return ("ip", value)


def publish_addresses(settings: Settings, snapshot: Snapshot) -> Addresses:
    if settings.publish_address:
        return (address_entry(settings.publish_address),)
    if settings.publish_service:
        service = snapshot.services.get(ObjectKey(*settings.publish_service))
        return service.addresses if service is not None else ()
    pod_ip = os.environ.get("POD_IP")
    if not pod_ip:
        try:
            pod_ip = socket.gethostbyname(socket.gethostname())
        except OSError:
            return ()
    return (address_entry(pod_ip),)


class LeaseElector:
    def __init__(
        self, api: KubeApi, namespace: str, name: str, identity: str, duration: int = 15
    ) -> None:
        self.api = api
        self.namespace, self.name, self.identity = namespace, name, identity
        self.duration = duration
        self.is_leader = False

    async def run(self, on_elected: Any) -> None:
        """Try to take or renew the Lease every third of its duration, forever."""
        while True:
            try:
                leader = await self._try_acquire()
            except KubeError as error:
                log.warning("lease %s/%s: %s", self.namespace, self.name, error)
                leader = False
            if leader != self.is_leader:
                log.info(
                    "%s leadership of %s/%s",
                    "took" if leader else "lost",
                    self.namespace,
                    self.name,
                )
                self.is_leader = leader
                if leader:
                    await on_elected()
            await asyncio.sleep(self.duration / 3)

    async def _try_acquire(self) -> bool:
        stamp = now()
        spec = {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": self.duration,
            "renewTime": _micro_time(stamp),
        }
        lease = await self.api.read_lease(self.namespace, self.name)
        if lease is None:
            spec["acquireTime"] = _micro_time(stamp)
            try:
                await self.api.create_lease(self.namespace, self.name, spec)
            except KubeError as error:
                if error.status == 409:  # another replica was faster
                    return False
                raise
            return True
        current = lease.get("spec") or {}
        holder = current.get("holder_identity")
        renewed = _as_datetime(current.get("renew_time"))
        duration = current.get("lease_duration_seconds") or self.duration
        expired = renewed is None or renewed + datetime.timedelta(seconds=duration) < stamp
        if holder not in (None, self.identity) and not expired:
            return False
        if holder != self.identity:
            spec["acquireTime"] = _micro_time(stamp)
        version = (lease.get("metadata") or {}).get("resource_version")
        try:
            await self.api.patch_lease(self.namespace, self.name, spec, version)
        except KubeError as error:
            if error.status == 409:
                return False
            raise
        return True


class StatusPublisher:
    """Writes in the background, latest state first: a thousand status writes never hold up
    routing, and states superseded while writing are skipped."""

    def __init__(self, api: KubeApi, settings: Settings, elector: LeaseElector) -> None:
        self.api = api
        self.settings = settings
        self.elector = elector
        self._latest: tuple[Rendered, Snapshot] | None = None
        self._wake = asyncio.Event()

    async def update(self, rendered: Rendered, snapshot: Snapshot) -> None:
        self._latest = (rendered, snapshot)
        self._wake.set()

    async def on_elected(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            if self.elector.is_leader and self._latest is not None:
                await self._write(*self._latest)

    async def _write(self, rendered: Rendered, snapshot: Snapshot) -> None:
        ours = publish_addresses(self.settings, snapshot)
        if not ours:
            log.warning("no address to publish in Ingress status yet")
            return
        changes: list[tuple[ObjectKey, Addresses, str | None]] = []
        for key, ingress in snapshot.ingresses.items():
            if key in rendered.served:
                error = REFUSED_ERROR if key in rendered.refused else None
                if ingress.status_addresses != ours or ingress.status_error != error:
                    changes.append((key, ours, error))
            elif ingress.status_addresses == ours:
                changes.append((key, (), None))
        if not changes:
            return
        semaphore = asyncio.Semaphore(_PARALLEL_WRITES)
        render = self.settings.render
        ports = (render.http_address.port, render.https_address.port)

        async def write(key: ObjectKey, addresses: Addresses, error: str | None) -> None:
            async with semaphore:
                try:
                    if error is None:
                        await self.api.patch_ingress_status(key, addresses)
                    else:
                        await self.api.patch_ingress_status(key, addresses, error, ports)
                except KubeError as failure:
                    log.warning("cannot write the status of %s: %s", key, failure)

        await asyncio.gather(*(write(*change) for change in changes))
