"""The --publish-service Service, watched on its own: Ingress status follows its address.

ingress-nginx's `--publish-service NS/NAME`: the address written in `status.loadBalancer` of
the Ingresses served is that Service's (`model.published_addresses`: a LoadBalancer's
load-balancer addresses and external IPs; a pending LoadBalancer publishes nothing rather than
its cluster IP). The Service is listed by name, then watched from that list's resourceVersion
(any namespace, also one the controller does not watch for Ingresses); every change wakes the
status writer (`changed`), so a new load-balancer address reaches every Ingress within seconds,
without waiting for a push. A watch the server ends is resumed where it was; one ended with 410
Gone starts over with a listing; failures are retried with back-off (1 s doubling to 30 s).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from ingress_operator.kube import KubeApi, KubeError
from ingress_operator.model import Address, parse_service
from ingress_operator.supervision import Backoff, Heartbeat

log = logging.getLogger("pysozu.ingress.publish")


class PublishedService:
    def __init__(
        self, api: KubeApi, namespace: str, name: str, changed: Callable[[], None]
    ) -> None:
        self.api = api
        self.namespace, self.name = namespace, name
        self.changed = changed
        self.addresses: tuple[Address, ...] | None = None  # None: not read yet
        self.watches = 0  # watches started (for metrics and tests)

    def _update(self, body: dict[str, Any] | None) -> None:
        addresses = parse_service(body).addresses if body is not None else ()
        if addresses == self.addresses:
            return
        if not addresses:
            what = "has no address to publish yet" if body is not None else "does not exist"
            log.warning("the publish Service %s/%s %s", self.namespace, self.name, what)
        else:
            log.info(
                "publishing %s (Service %s/%s)",
                ", ".join(value for _, value in addresses),
                self.namespace,
                self.name,
            )
        self.addresses = addresses
        self.changed()

    def _event(self, kind: str, body: dict[str, Any]) -> None:
        self._update(None if kind == "DELETED" else body)

    async def run(self, heartbeat: Heartbeat) -> None:
        backoff = Backoff(first=1.0, limit=30.0)
        version: str | None = None
        while True:
            heartbeat.beat()
            try:
                if version is None:
                    body, version = await self.api.list_service(self.namespace, self.name)
                    self._update(body)
                heartbeat.beat()
                self.watches += 1
                version = await self.api.watch_service(
                    self.namespace, self.name, version, self._event
                )
                backoff.reset()
            except KubeError as error:
                if error.status == 410:  # too old to resume from: list again, at once
                    version = None
                    continue
                delay = backoff.next()
                log.warning(
                    "publish Service %s/%s: %s (again in %.0fs)",
                    self.namespace,
                    self.name,
                    error,
                    delay,
                )
                version = None
                await asyncio.sleep(delay)
