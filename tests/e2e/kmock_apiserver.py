"""kmock 0.8 as a Kubernetes API server for the e2e tests, with the gaps a real one fills.

`python tests/e2e/kmock_apiserver.py --port-file F [--preload objects.json] [--port N]
[--faults faults.json]` serves until killed and writes its port to F once listening (`--port`:
that port, to come back where a killed one was). What it adds to `kmock.KubernetesEmulator`:

- CREATE: metadata.namespace from the URL, uid, creationTimestamp, generation, a name for
  `generateName`, `kind`/`apiVersion` when missing (kopf, kubectl and Events need them);
- every CREATE/PATCH: a new metadata.resourceVersion (a cluster-wide counter);
- lists carry `kind: <Kind>List` and `apiVersion` (kubectl refuses lists without them);
- `/api/v1` discovery says `groupVersion: v1`, not `/v1` (kubectl cannot map core kinds);
- `--preload`: objects stored before the first client connects (the scale test);
- `--faults`: fault injection, read again on every request: a JSON list of
  `{"match": "<substring of 'METHOD /path'>", "answer": 500 | "hang" | "deaf" | "gone"}`;
  the first match answers 500 (a Status body) or never answers. Two answers are for watch
  streams only (polled every 0.1 s, also by streams already open): "deaf" drops every event
  of a matching watch while the rule is there (the watch is down: events are lost, nothing
  ends), and "gone" ends a matching watch with an ERROR event, 410 Gone (its resource version
  is too old), once: the rule is taken out of the file when it fires.

Still not a real API server (see reference/kubernetes.md): no validation, no defaulting, no
server-side selectors, merge-patch for every patch type, watches replay from scratch.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import itertools
import json
import secrets
import uuid
from pathlib import Path
from typing import Any

import aiohttp.web
import kmock
from kmock._internal import enums

_versions = itertools.count(1)


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _api_version(resource: Any) -> str:
    return f"{resource.group}/{resource.version}" if resource.group else str(resource.version)


_WATCH_FAULTS = ("deaf", "gone")
_GONE = {
    "type": "ERROR",
    "object": {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "reason": "Expired",
        "message": "too old resource version",
        "code": 410,
    },
}


class ApiServerLikeEmulator(kmock.KubernetesEmulator):
    faults: Path | None = None

    def _rules(self) -> list[dict[str, Any]]:
        if self.faults is None or not self.faults.exists():
            return []
        rules: list[dict[str, Any]] = json.loads(self.faults.read_text() or "[]")
        return rules

    def _watch_fault(self, request: kmock.Request) -> str | None:
        """The watch fault ("deaf", "gone") a rule sets for this watch; "gone" fires once."""
        line = f"{request.method} {request.url.path}".lower()
        rules = self._rules()
        for index, rule in enumerate(rules):
            if rule["answer"] in _WATCH_FAULTS and rule["match"].lower() in line:
                if rule["answer"] == "gone":
                    del rules[index]
                    assert self.faults is not None
                    self.faults.write_text(json.dumps(rules))
                return str(rule["answer"])
        return None

    async def _serve_watch(self, request: kmock.Request) -> Any:
        """kmock's watch (replay what exists, then stream the bus), with the watch faults."""
        yield b""
        check = self._KubernetesEmulator__check  # kmock's own (name-mangled) helpers
        get_objs = self._KubernetesEmulator__get_objs
        queue: asyncio.Queue[Any] = asyncio.Queue()

        async def pump() -> None:
            async for event in self._buses[request.resource]:
                queue.put_nowait(event)

        pumping = asyncio.create_task(pump())
        try:
            await asyncio.sleep(0)  # the pump subscribes first: nothing falls between the two
            async with self._lock:
                objs = get_objs(request, strict=False)
                replay = [{"type": "ADDED", "object": obj.raw} for obj in objs if not obj.deleted]
            for event in replay:
                yield event
            while True:
                fault = self._watch_fault(request)
                if fault == "gone":
                    yield _GONE
                    return
                try:
                    event = await asyncio.wait_for(queue.get(), 0.1)
                except TimeoutError:
                    continue
                if fault == "deaf":
                    continue  # lost, as on a broken connection
                meta = event.get("object", {}).get("metadata", {})
                namespace, name = meta.get("namespace"), meta.get("name")
                if check(request, request.resource, namespace, name, strict=False):
                    yield event
        finally:
            pumping.cancel()

    async def _injected(self, request: kmock.Request) -> Any:
        """The answer a fault rule gives this request, or None."""
        line = f"{request.method} {request.url.path}"
        for rule in self._rules():
            if rule["answer"] in _WATCH_FAULTS or rule["match"].lower() not in line.lower():
                continue
            if rule["answer"] == "hang":
                await asyncio.Event().wait()
            status = int(rule["answer"])
            body = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": status}
            return aiohttp.web.json_response(body, status=status)
        return None

    def _info(self, resource: Any) -> Any:
        for known in self._get_resources():
            if known == resource:
                try:
                    return self.resources[known]
                except KeyError:
                    return None
        return None

    def complete(self, resource: Any, namespace: str | None, body: dict[str, Any]) -> None:
        """Fill in what the API server adds to an object it creates."""
        meta = body.setdefault("metadata", {})
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = meta["generateName"] + secrets.token_hex(3)[:5]
        if namespace and not meta.get("namespace"):
            meta["namespace"] = namespace
        meta.setdefault("uid", str(uuid.uuid4()))
        meta.setdefault("creationTimestamp", _now())
        meta.setdefault("generation", 1)
        meta["resourceVersion"] = str(next(_versions))
        info = self._info(resource)
        if info is not None and info.kind:
            body.setdefault("kind", info.kind)
        body.setdefault("apiVersion", _api_version(resource))

    async def _handle(self, request: kmock.Request) -> Any:
        if (injected := await self._injected(request)) is not None:
            return injected
        if request.resource is not None:
            if request.action == enums.action.CREATE and isinstance(request.data, dict):
                self.complete(request.resource, request.namespace, request.data)
            elif request.action == enums.action.UPDATE:
                version = str(next(_versions))
                if isinstance(request.data, dict):
                    request.data.setdefault("metadata", {})["resourceVersion"] = version
                elif isinstance(request.data, list):
                    op = {"op": "add", "path": "/metadata/resourceVersion", "value": version}
                    request.data.append(op)
        return await super()._handle(request)

    async def _serve_list(self, request: kmock.Request) -> Any:
        payload = await super()._serve_list(request)
        info = self._info(request.resource)
        if info is not None and info.kind:
            payload["kind"] = f"{info.kind}List"
        payload["apiVersion"] = _api_version(request.resource)
        return payload

    async def _serve_version(self, request: kmock.Request) -> Any:
        payload = await super()._serve_version(request)
        payload["groupVersion"] = payload["groupVersion"].lstrip("/")
        return payload


def preload(emulator: ApiServerLikeEmulator, path: Path) -> int:
    """Store objects (a JSON list of bodies with apiVersion/kind) as if created by clients."""
    by_kind = {}
    for resource in emulator._get_resources():
        info = emulator.resources[resource]
        by_kind[(_api_version(resource), info.kind)] = (resource, info)
    count = 0
    for body in json.loads(path.read_text()):
        resource, info = by_kind[(body["apiVersion"], body["kind"])]
        namespace = body["metadata"].get("namespace") if info.namespaced else None
        emulator.complete(resource, namespace, body)
        emulator.objects[resource, namespace, body["metadata"]["name"]] = body
        count += 1
    return count


async def serve(
    port_file: Path, preload_file: Path | None, port: int | None, faults: Path | None
) -> None:
    emulator = ApiServerLikeEmulator()
    emulator.faults = faults
    emulator.resources.load_bundled()
    if preload_file is not None:
        preload(emulator, preload_file)
    async with emulator, kmock.Server(emulator, port=port) as server:
        port_file.write_text(str(server.port))
        await asyncio.Event().wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port-file", type=Path, required=True)
    parser.add_argument("--preload", type=Path)
    parser.add_argument("--port", type=int)
    parser.add_argument("--faults", type=Path)
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args.port_file, args.preload, args.port, args.faults))


if __name__ == "__main__":
    main()
