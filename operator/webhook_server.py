"""The admission webhook's HTTPS endpoint: `POST /validate-ingress` on `--webhook-address`.

The API server calls it over TLS, trusting the CA bundle of the ValidatingWebhookConfiguration.
The certificate and key are files mounted from a Secret (cert-manager's, or one the user
provides); a renewed Secret reaches the files within a minute or so (kubelet sync) and
`CertificateFiles.watch` loads it into the same SSL context (new handshakes use it; no restart,
no dropped connection). A pair that does not load (half written) keeps the previous one and is
retried at the next check.

A malformed body is answered 400 with the reason; the webhook never crashes on a request.
"""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
from collections.abc import Callable
from pathlib import Path

from aiohttp import web
from ingress_operator.supervision import Heartbeat
from ingress_operator.webhook import MAX_BODY, AdmissionError

from dataplane.command.address import SocketAddress

log = logging.getLogger("pysozu.ingress.webhook")

PATH = "/validate-ingress"
CHECK_EVERY = 10.0  # seconds between looks at the certificate files
Review = Callable[[bytes], bytes]


class CertificateFiles:
    """A server SSL context loaded from two files, reloaded when they change."""

    def __init__(self, cert: Path, key: Path) -> None:
        self.cert, self.key = cert, key
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.minimum_version = ssl.TLSVersion.TLSv1_2
        self.loads = 0
        self._stamp = self._files_stamp()
        self.context.load_cert_chain(cert, key)  # a bad pair at start is a clear error
        self.loads = 1

    def _files_stamp(self) -> tuple[tuple[int, int, int], ...]:
        stamps = []
        for path in (self.cert, self.key):
            try:
                st = os.stat(path)  # follows the Secret volume's ..data symlink
            except OSError:
                stamps.append((0, 0, 0))
            else:
                stamps.append((st.st_ino, st.st_mtime_ns, st.st_size))
        return tuple(stamps)

    def reload_if_changed(self) -> bool:
        """Load the pair again when a file changed; True when a new pair is in use."""
        stamp = self._files_stamp()
        if stamp == self._stamp:
            return False
        try:
            self.context.load_cert_chain(self.cert, self.key)
        except (OSError, ssl.SSLError) as error:
            log.warning("webhook certificate %s not loaded (%s): keeping the previous one",
                        self.cert, error)  # fmt: skip
            return False
        self._stamp = stamp
        self.loads += 1
        log.info("webhook certificate %s reloaded", self.cert)
        return True

    async def watch(self, heartbeat: Heartbeat) -> None:
        while True:
            heartbeat.beat()
            self.reload_if_changed()
            await asyncio.sleep(CHECK_EVERY)


def application(review: Review) -> web.Application:
    async def validate(request: web.Request) -> web.Response:
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return web.Response(status=413, text="the AdmissionReview is too large\n")
        try:
            answer = review(body)
        except AdmissionError as error:
            return web.Response(status=400, text=f"{error}\n")
        return web.Response(body=answer, content_type="application/json")

    app = web.Application(client_max_size=MAX_BODY)
    app.router.add_post(PATH, validate)
    return app


async def serve_webhook(
    address: SocketAddress, certificates: CertificateFiles, review: Review
) -> web.AppRunner:
    runner = web.AppRunner(application(review), access_log=None)
    await runner.setup()
    host, port = address.sockaddr()
    await web.TCPSite(runner, host, port, ssl_context=certificates.context).start()
    return runner
