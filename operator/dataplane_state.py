"""The two states the reconciler compares, both as `ConfigState`s.

- desired: the rendered requests, dispatched into a fresh state. A request the state refuses
  (a certificate whose key does not match, a hostname it cannot route) becomes a problem for
  the Ingress it came from and is left out, so one bad object never blocks the others.
- applied: what this controller owns in the dataplane. It is read from the dataplane on
  (re)connect with `save_state` (the dataplane's own state file format), then kept up to date
  with every request the dataplane accepts.

The controller owns its two listeners' routes and certificates and the clusters whose ids it
makes (`<namespace>/<service>:<port>`); anything else in the dataplane (clusters from its TOML
file, other listeners) is never touched. A listener that already exists at our address (from
the TOML file) is adopted as it is.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import re
from collections.abc import Iterable
from pathlib import Path

from ingress_operator.dataplane_client import DataplaneClient, DataplaneError
from ingress_operator.ingress_semantics import is_ingress_cluster_id
from ingress_operator.model import der_fingerprint
from ingress_operator.render import Problem, Rendered
from ingress_operator.settings import RenderSettings

from dataplane.command.address import SocketAddress
from dataplane.command.messages import ListenerType, RemoveBackend, RemoveCertificate, Request
from dataplane.command.responses import ResponseStatus
from dataplane.command.state import ConfigState, StateError
from dataplane.command.statefile import encode_state, read_state_file

log = logging.getLogger("pysozu.ingress.state")

_LISTENER_VERBS = {"add_http_listener", "add_https_listener", "activate_listener"}
_scratch_numbers = itertools.count()


def _owns(request: Request, addresses: set[SocketAddress]) -> bool:
    body = request.body
    if request.verb in _LISTENER_VERBS or request.verb == "add_certificate":
        return body.address in addresses
    if request.verb in ("add_http_frontend", "add_https_frontend"):
        ours = body.cluster_id is not None and is_ingress_cluster_id(body.cluster_id)
        return ours and body.address in addresses
    if request.verb in ("add_cluster", "add_backend"):
        return is_ingress_cluster_id(body.cluster_id)
    return False


def owned_view(actual: ConfigState, settings: RenderSettings) -> ConfigState:
    """The part of the dataplane's state this controller manages."""
    addresses = {settings.http_address, settings.https_address}
    view = ConfigState()
    for request in actual.generate_requests():
        if _owns(request, addresses):
            try:
                view.dispatch(request)
            except StateError:  # e.g. a TOML route on our listener to a cluster we do not own
                continue
    return view


def _adopted_listeners(applied: ConfigState, settings: RenderSettings) -> list[Request]:
    """Our listeners as the dataplane already has them, if it has them."""
    found = []
    for kind, address in (
        (ListenerType.HTTP, settings.http_address),
        (ListenerType.HTTPS, settings.https_address),
    ):
        if address in applied.listener_table(kind):
            found += [
                r
                for r in applied.generate_requests()
                if r.verb in _LISTENER_VERBS and r.body.address == address
            ]
    return found


def desired_state(
    rendered: Rendered, applied: ConfigState, settings: RenderSettings
) -> tuple[ConfigState, list[Problem]]:
    """The desired state built from scratch (see `DesiredState` for the incremental path)."""
    state = ConfigState()
    problems: list[Problem] = []
    adopted = _adopted_listeners(applied, settings)
    adopted_addresses = {r.body.address for r in adopted}
    requests: Iterable[Request] = itertools.chain(
        adopted,
        (
            r
            for r in rendered.requests
            if not (r.verb in _LISTENER_VERBS and r.body.address in adopted_addresses)
        ),
    )
    for request in requests:
        try:
            state.dispatch(request)
        except StateError as error:
            origin = rendered.origin(request)
            if origin is None:
                log.error("the dataplane state refuses %s: %s", request.verb, error)
            else:
                problems.append(Problem(origin, "Rejected", f"{request.verb}: {error}"))
    return state, problems


_REMOVAL_ORDER = ("add_backend", "add_https_frontend", "add_http_frontend", "add_certificate")


def _inverse(request: Request) -> Request:
    """The request that undoes an `add_*` request the state holds."""
    body = request.body
    match request.verb:
        case "add_backend":
            removal = RemoveBackend(
                cluster_id=body.cluster_id, backend_id=body.backend_id, address=body.address
            )
            return Request.of(remove_backend=removal)
        case "add_http_frontend":
            return Request.of(remove_http_frontend=body)
        case "add_https_frontend":
            return Request.of(remove_https_frontend=body)
        case "add_certificate":
            fingerprint = der_fingerprint(body.certificate.certificate)
            return Request.of(
                remove_certificate=RemoveCertificate(address=body.address, fingerprint=fingerprint)
            )
        case "add_cluster":
            return Request.of(remove_cluster=body.cluster_id)
    raise ValueError(f"no inverse for {request.verb}")


class DesiredState:
    """The desired state, carried from one render to the next by what changed.

    Rebuilding ten thousand routes from scratch on every event would take seconds; instead the
    rendered requests are compared by their encoding, and only the removed ones are undone and
    the new ones applied, on a copy. Anything unusual (a listener change, a refused removal, a
    request refused last time) falls back to a full rebuild.
    """

    def __init__(self) -> None:
        self.state: ConfigState | None = None
        self._requests: dict[bytes, Request] = {}
        self._had_rejections = False

    def reset(self) -> None:
        self.state = None

    def update(
        self, rendered: Rendered, applied: ConfigState, settings: RenderSettings
    ) -> tuple[ConfigState, list[Problem], bool]:
        """The desired state, the problems found applying new requests, and whether it changed."""
        wanted = dict(zip(rendered.keys, rendered.requests, strict=True))
        if self.state is not None and not self._had_rejections:
            removed = [r for key, r in self._requests.items() if key not in wanted]
            added = [r for key, r in wanted.items() if key not in self._requests]
            if not removed and not added:
                return self.state, [], False
            if not any(r.verb in _LISTENER_VERBS for r in (*removed, *added)):
                state = self._patched(self.state, removed, added, rendered)
                if state is not None:
                    self.state, self._requests = state[0], wanted
                    self._had_rejections = bool(state[1])
                    return state[0], state[1], True
        full, problems = desired_state(rendered, applied, settings)
        self.state, self._requests, self._had_rejections = full, wanted, bool(problems)
        return full, problems, True

    @staticmethod
    def _patched(
        previous: ConfigState, removed: list[Request], added: list[Request], rendered: Rendered
    ) -> tuple[ConfigState, list[Problem]] | None:
        state = previous.copy()
        re_added = {r.body.cluster_id for r in added if r.verb == "add_cluster"}
        undo = sorted(
            (r for r in removed if r.verb != "add_cluster" or r.body.cluster_id not in re_added),
            key=lambda r: _REMOVAL_ORDER.index(r.verb) if r.verb in _REMOVAL_ORDER else 99,
        )
        try:
            for request in undo:
                state.dispatch(_inverse(request))
        except (StateError, ValueError):
            return None
        problems = []
        for request in added:
            try:
                state.dispatch(request)
            except StateError as error:
                origin = rendered.origin(request)
                if origin is None:
                    return None
                problems.append(Problem(origin, "Rejected", f"{request.verb}: {error}"))
        return state, problems


_TAKING = ("remove_", "deactivate_")


def is_swap(requests: list[Request]) -> bool:
    """Whether a diff both takes away and adds: then the order it reaches the workers in could
    show clients the gap (a route gone before it is back, a cluster without backends)."""
    takes = adds = False
    for request in requests:
        if request.verb.startswith(_TAKING):
            takes = True
        else:
            adds = True
        if takes and adds:
            return True
    return False


_ERRORS = re.compile(r"\b(\d+) errors\b")  # main's summary: "..., N ok messages, M errors"


async def load_in_bulk(client: DataplaneClient, scratch_dir: Path, requests: list[Request]) -> bool:
    """Hand requests over as one state file (`load_state`): main applies them in one go instead
    of one round trip each. True when main reports no error; else the caller resyncs, and what
    is missing is sent (and reported) one request at a time."""
    path = scratch_dir / f".pysozu-ingress-{os.getpid()}-{next(_scratch_numbers)}.state"
    try:
        # Private, and read by main at once: no need for write_state_file's fsync and rename.
        await asyncio.to_thread(path.write_bytes, encode_state(requests))
        response = await client.call(Request.of(load_state=str(path)))
    except OSError as error:
        raise DataplaneError(f"cannot write a state file in {scratch_dir}: {error}") from None
    finally:
        path.unlink(missing_ok=True)
    if response.status != ResponseStatus.OK:
        log.warning("load_state failed: %s", response.message)
        return False
    errors = _ERRORS.search(response.message)
    return errors is not None and errors.group(1) == "0"


async def fetch_state(client: DataplaneClient, scratch_dir: Path) -> ConfigState:
    """The dataplane's whole state, through a state file it writes for us."""
    path = scratch_dir / f".pysozu-ingress-{os.getpid()}-{next(_scratch_numbers)}.state"
    try:
        response = await client.call(Request.of(save_state=str(path)))
        if response.status != ResponseStatus.OK:
            raise DataplaneError(f"save_state failed: {response.message}")
        requests, errors = await asyncio.to_thread(read_state_file, path)
    except OSError as error:
        raise DataplaneError(f"cannot read the dataplane's state file {path}: {error}") from None
    finally:
        path.unlink(missing_ok=True)
    for bad_record in errors:
        log.warning("dataplane state file: %s", bad_record)
    state = ConfigState()
    for request in requests:
        try:
            state.dispatch(request)
        except StateError as error:
            log.warning("dataplane state file: %s refused: %s", request.verb, error)
    return state
