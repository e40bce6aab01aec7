"""`status.loadBalancer.ingress`, written by one replica elected with a coordination.k8s.io Lease.

Every replica serves traffic; only the Lease holder writes status. It writes our address on the
Ingresses we serve and clears it from those we stop serving (an Ingress whose status holds our
address but that is no longer ours), comparing before patching so a steady state writes
nothing. An Ingress that fails closed (an access restriction pysozu cannot enforce) gets our
address with the error `pysozu.io/AnnotationNotEnforced` on each listener port (Ingress status
has no conditions); its Events name the annotation.
The address: --publish-address, else the --publish-service Service's (watched on its own,
publish.py: a change of its address is written at once), else the pod's own.

Both loops outlive API failures: the Lease is tried again with back-off (an unreachable API
server means we are not the leader), and status writes that failed are retried with back-off
until they pass or a newer state supersedes them.
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import logging
import os
import socket
from collections.abc import Callable
from typing import Any

from ingress_operator.annotation_review import NOT_ENFORCED
from ingress_operator.kube import KubeApi, KubeError, now
from ingress_operator.model import ObjectKey, Snapshot
from ingress_operator.render import Rendered
from ingress_operator.settings import Settings
from ingress_operator.supervision import Backoff, Heartbeat, Sleep

log = logging.getLogger("pysozu.ingress.status")

Addresses = tuple[tuple[str, str], ...]
# An Ingress failing closed: its address with this error on the listeners' ports (Ingress
# status has no conditions; `ports[].error` takes a CamelCase value, prefixed by our domain).
REFUSED_ERROR = "pysozu.io/" + NOT_ENFORCED
_PARALLEL_WRITES = 8
IDLE_BEAT = 10.0  # an idle status writer still beats this often
STALL_AFTER = 120.0  # /healthz: a loop is stuck after this long without a beat
Change = tuple[ObjectKey, Addresses, str | None]


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


def publish_addresses(
    settings: Settings, snapshot: Snapshot, followed: Addresses | None = None
) -> Addresses:
    """--publish-address; else the --publish-service Service's addresses (`followed`: from its
    own watch, publish.py; before it answered, the Service as indexed when it is in a watched
    namespace); else the pod's IP."""
    if settings.publish_address:
        return (address_entry(settings.publish_address),)
    if settings.publish_service:
        if followed is not None:
            return followed
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
        self,
        api: KubeApi,
        namespace: str,
        name: str,
        identity: str,
        duration: int = 15,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.api = api
        self._sleep = sleep
        self.namespace, self.name, self.identity = namespace, name, identity
        self.duration = duration
        self.is_leader = False

    async def run(self, on_elected: Any, heartbeat: Heartbeat | None = None) -> None:
        """Try to take or renew the Lease every third of its duration, forever; after a
        failure, sooner (back-off from 0.5 s up to that third)."""
        beat = heartbeat or Heartbeat("lease", STALL_AFTER)
        backoff = Backoff(limit=self.duration / 3)
        while True:
            beat.beat()
            failed = True
            try:
                leader = await self._try_acquire()
                failed = False
            except KubeError as error:
                log.warning("lease %s/%s: %s", self.namespace, self.name, error)
                leader = False
            except Exception:  # a bug or an odd answer: logged, and the Lease is tried again
                log.exception("lease %s/%s", self.namespace, self.name)
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
            if failed:
                await self._sleep(backoff.next())
            else:
                backoff.reset()
                await self._sleep(self.duration / 3)

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
        self.followed: Callable[[], Addresses | None] = lambda: None  # the publish Service's
        self._latest: tuple[Rendered, Snapshot] | None = None
        self._wake = asyncio.Event()
        self._beat = Heartbeat("status", STALL_AFTER)

    async def update(self, rendered: Rendered, snapshot: Snapshot) -> None:
        self._latest = (rendered, snapshot)
        self._wake.set()

    async def on_elected(self) -> None:
        self._wake.set()

    def wake(self) -> None:
        """Write again what differs (the published address changed)."""
        self._wake.set()

    async def run(self, heartbeat: Heartbeat | None = None) -> None:
        beat = self._beat = heartbeat or self._beat
        backoff = Backoff()
        retry: list[Change] = []
        while True:
            beat.beat()
            try:
                async with asyncio.timeout(backoff.next() if retry else IDLE_BEAT):
                    await self._wake.wait()
            except TimeoutError:
                if not (retry and self.elector.is_leader):
                    retry = []
                    continue
                changes = retry
            else:
                self._wake.clear()
                if not (self.elector.is_leader and self._latest is not None):
                    retry = []
                    continue
                changes = self._changes(*self._latest)
            retry = await self._apply(changes)
            if retry:
                log.warning("%d status writes failed; retrying", len(retry))
            else:
                backoff.reset()

    async def _write(self, rendered: Rendered, snapshot: Snapshot) -> list[Change]:
        """Write what differs; return the writes that failed."""
        return await self._apply(self._changes(rendered, snapshot))

    def _changes(self, rendered: Rendered, snapshot: Snapshot) -> list[Change]:
        ours = publish_addresses(self.settings, snapshot, self.followed())
        if not ours:
            log.warning("no address to publish in Ingress status yet")
            return []
        changes: list[Change] = []
        for key, ingress in snapshot.ingresses.items():
            if key in rendered.served:
                error = REFUSED_ERROR if key in rendered.refused else None
                if ingress.status_addresses != ours or ingress.status_error != error:
                    changes.append((key, ours, error))
            elif ingress.status_addresses == ours:
                changes.append((key, (), None))
        return changes

    async def _apply(self, changes: list[Change]) -> list[Change]:
        if not changes:
            return []
        semaphore = asyncio.Semaphore(_PARALLEL_WRITES)
        render = self.settings.render
        ports = (render.http_address.port, render.https_address.port)
        failed: list[Change] = []

        async def write(key: ObjectKey, addresses: Addresses, error: str | None) -> None:
            async with semaphore:
                try:
                    if error is None:
                        await self.api.patch_ingress_status(key, addresses)
                    else:
                        await self.api.patch_ingress_status(key, addresses, error, ports)
                except KubeError as failure:
                    log.warning("cannot write the status of %s: %s", key, failure)
                    if failure.status != 404:  # a deleted Ingress needs no status
                        failed.append((key, addresses, error))
                self._beat.beat()  # thousands of writes to a slow API server are progress

        await asyncio.gather(*(write(*change) for change in changes))
        return failed
