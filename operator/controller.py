"""The controller's parts, put together: indices -> reconciler -> dataplane; status; health.

Started by kopf's startup handler (inside kopf's event loop) and stopped by its cleanup
handler. Background tasks are operator-level, never per object: kopf would put finalizers on
users' objects for per-object daemons and timers. Each runs supervised (supervision.py): an
exception restarts it after a back-off, and /healthz fails while one is dead or stuck.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from pathlib import Path

from aiohttp import web
from ingress_operator import events, metrics, reconciler, status, webhook
from ingress_operator.claims import ClaimIndex
from ingress_operator.events import EventRecorder
from ingress_operator.health import serve_health
from ingress_operator.indices import FIELD_SELECTORS, Indices
from ingress_operator.kube import KubeApi
from ingress_operator.model import IngressClass, ObjectKey, Snapshot
from ingress_operator.publish import PublishedService
from ingress_operator.reconciler import Reconciler
from ingress_operator.render import Rendered
from ingress_operator.settings import Settings
from ingress_operator.status import LeaseElector, StatusPublisher
from ingress_operator.supervision import Heartbeat, Supervisor
from ingress_operator.sweep import Sweeper
from ingress_operator.webhook_server import CertificateFiles, serve_webhook

log = logging.getLogger("pysozu.ingress")

_SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")

_LISTING_PATIENCE = 120.0  # seconds to wait for the objects listed at startup to arrive


def pod_namespace() -> str:
    if namespace := os.environ.get("POD_NAMESPACE"):
        return namespace
    try:
        return _SERVICE_ACCOUNT_NAMESPACE.read_text().strip() or "default"
    except OSError:
        return "default"


class Controller:
    def __init__(self, settings: Settings, api: KubeApi | None = None) -> None:
        self.settings = settings
        self.api = api
        self.events = EventRecorder(api, component=settings.render.controller_name)
        named = settings.ingress_class_name
        controller_name = settings.render.controller_name
        self.indices = Indices(IngressClass(named, controller_name, False) if named else None)
        self.reconciler = Reconciler(settings, self.snapshot, self.events, self._pushed)
        self.status: StatusPublisher | None = None
        self._elector: LeaseElector | None = None
        if api is not None:
            identity = settings.identity or f"{socket.gethostname()}-{uuid.uuid4().hex[:8]}"
            namespace = settings.lease_namespace or pod_namespace()
            self._elector = LeaseElector(api, namespace, settings.lease_name, identity)
            self.status = StatusPublisher(api, settings, self._elector)
        self.published: PublishedService | None = None
        if api is not None and self.status is not None and settings.publish_service:
            published = PublishedService(api, *settings.publish_service, self._republish)
            self.status.followed = lambda: published.addresses
            self.published = published
        self.sweeper: Sweeper | None = None
        if api is not None:
            self.sweeper = Sweeper(
                self.indices, self._list_keys, self.reconciler.trigger, settings.sweep_period
            )
        self._health: web.AppRunner | None = None
        self.supervisor = Supervisor()
        self._tasks: list[asyncio.Task[None]] = []
        self.metrics = metrics.for_controller(self)  # /metrics on the health port
        self._webhook: web.AppRunner | None = None
        indices = self.indices
        self.claims = ClaimIndex(
            lambda: indices.ingresses,
            lambda: indices.classes,
            indices.routing_version,
            settings.render,
        )

    def snapshot(self) -> Snapshot | None:
        """None until the startup listing has been seen: a partial state would remove routes."""
        return self.indices.snapshot() if self.indices.settled else None

    async def _await_listing(self) -> None:
        """Learn which objects exist, so the first push waits until all have been seen."""
        if self.api is None:
            self.indices.settle()
            return
        try:
            resources, namespaces = self.indices.resources, self.settings.namespaces
            uids = await self.api.list_uids(resources, namespaces, FIELD_SELECTORS)
        except Exception as error:  # never stay unready because of the listing
            log.warning("cannot list the watched objects (%s): serving what arrives", error)
            self.indices.settle()
            return
        self.indices.expect(uids)
        self.reconciler.trigger()
        await asyncio.sleep(_LISTING_PATIENCE)
        if not self.indices.settled:
            log.warning("some listed objects never arrived: serving what has")
            self.indices.settle()
            self.reconciler.trigger()

    async def _list_keys(self, resource: tuple[str, ...]) -> dict[str, ObjectKey]:
        assert self.api is not None
        namespaces = self.settings.namespaces
        listed = await self.api.list_keys((resource,), namespaces, FIELD_SELECTORS)
        return listed.get(resource, {})

    def _republish(self) -> None:
        """The publish Service's address changed: the status writer writes it everywhere."""
        if self.status is not None:
            self.status.wake()

    async def _pushed(self, rendered: Rendered, snapshot: Snapshot) -> None:
        if self.status is not None:
            await self.status.update(rendered, snapshot)

    async def start(self) -> None:
        self._health = await serve_health(
            self.settings.health_address,
            lambda: self.reconciler.ready,
            self.supervisor.problems,
            self.metrics.exposition,
        )
        spawn = self.supervisor.spawn
        if self.settings.webhook_address is not None:
            certificates = CertificateFiles(self.settings.webhook_cert, self.settings.webhook_key)
            self._webhook = await serve_webhook(
                self.settings.webhook_address, certificates, self._admission_review
            )
            spawn("webhook-certificates", certificates.watch, 60.0)
        # A loop beats between API calls: its bound leaves room for a few calls timing out.
        api_stall = max(status.STALL_AFTER, 4 * self.settings.api_timeout)
        self._tasks.append(asyncio.create_task(self._await_listing(), name="startup-listing"))
        spawn("events", self.events.post_forever, max(events.STALL_AFTER, api_stall))
        spawn("reconciler", self.reconciler.run, reconciler.STALL_AFTER)
        spawn("dataplane-watch", self.reconciler.watch_dataplane, reconciler.STALL_AFTER)
        spawn("dataplane-resync", self.reconciler.resync_periodically, reconciler.STALL_AFTER)
        if self._elector is not None and self.status is not None:
            elector, on_elected = self._elector, self.status.on_elected

            async def lease(heartbeat: Heartbeat) -> None:
                await elector.run(on_elected, heartbeat)

            spawn("lease", lease, api_stall)
            spawn("status", self.status.run, api_stall)
        if self.published is not None:
            spawn("publish-service", self.published.run, api_stall)
        if self.sweeper is not None:
            spawn("sweep", self.sweeper.run, max(api_stall, reconciler.STALL_AFTER))
        log.info(
            "pysozu ingress controller %s (class %s) -> %s",
            self.settings.render.controller_name,
            self.settings.render.ingress_class,
            self.settings.command_socket,
        )

    def _admission_review(self, body: bytes) -> bytes:
        indices, settled = self.indices, self.indices.settled
        context = webhook.Context(
            settings=self.settings.render,
            classes=lambda: indices.classes,
            # Before every listed object has arrived, the indices would miss some: not judged.
            secrets=(lambda: indices.secrets) if settled else None,
            namespaces=self.settings.namespaces,
            conflicts=self.claims.conflicts if settled else None,
            require_tls_secrets=self.settings.webhook_require_tls_secrets,
        )
        return webhook.review(body, context)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        await self.supervisor.stop()
        await self.reconciler.client.close()
        if self._health is not None:
            await self._health.cleanup()
        if self._webhook is not None:
            await self._webhook.cleanup()
