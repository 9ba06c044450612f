"""The store: pods and namespaces, one resourceVersion, the history watches resume from; and the
list and watch responses served from it."""

from __future__ import annotations

import asyncio
import copy
import json
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiohttp import web

from pidmap.sandbox.api import errors, meta, objects
from pidmap.sandbox.api.errors import ApiError
from pidmap.sandbox.api.meta import Obj
from pidmap.sandbox.apiserver.http import json_response, table, table_version, truthy
from pidmap.sandbox.cluster.layout import StatePaths

HISTORY = 10_000  # watch events kept for resourceVersion resumption


@dataclass(frozen=True)
class Event:
    resource_version: int
    resource: str
    kind: str  # ADDED / MODIFIED / DELETED
    obj: Obj


@dataclass(eq=False)  # identity hashing: each watch is its own subscriber
class Watcher:
    resource: str
    queue: asyncio.Queue[Event | None] = field(default_factory=asyncio.Queue)


class Store:
    """Pods and namespaces, a global resourceVersion, and a history for watches; saved on change."""

    def __init__(self, paths: StatePaths) -> None:
        self.paths = paths
        self.pods: dict[tuple[str, str], Obj] = {}
        self.namespaces: dict[str, Obj] = {}
        self.revision = 1
        self.history: deque[Event] = deque(maxlen=HISTORY)
        self.watchers: set[Watcher] = set()

    def load(self) -> None:
        if self.paths.pods.exists():
            stored = json.loads(self.paths.pods.read_text())
            self.revision = int(stored.get("metadata", {}).get("resourceVersion") or 1)
            for pod in stored.get("items", []):
                self.pods[(pod["metadata"]["namespace"], pod["metadata"]["name"])] = pod
        if self.paths.namespaces.exists():
            for namespace in json.loads(self.paths.namespaces.read_text()).get("items", []):
                self.namespaces[namespace["metadata"]["name"]] = namespace
        created = meta.timestamp(meta.now_utc())
        for name in meta.DEFAULT_NAMESPACES:
            self.namespaces.setdefault(name, objects.namespace_object(name, created=created))

    def save(self) -> None:
        for target, kind, items in (
            (self.paths.pods, "PodList", [self.pods[key] for key in sorted(self.pods)]),
            (
                self.paths.namespaces,
                "NamespaceList",
                [self.namespaces[key] for key in sorted(self.namespaces)],
            ),
        ):
            body = {
                "kind": kind,
                "apiVersion": "v1",
                "metadata": {"resourceVersion": str(self.revision)},
                "items": items,
            }
            tmp = target.with_name(f".{target.name}.tmp")
            tmp.write_text(json.dumps(body, indent=1))
            tmp.replace(target)

    def bump(self, obj: Obj) -> None:
        self.revision += 1
        obj.setdefault("metadata", {})["resourceVersion"] = str(self.revision)

    def emit(self, resource: str, kind: str, obj: Obj) -> None:
        event = Event(self.revision, resource, kind, copy.deepcopy(obj))
        self.history.append(event)
        for watcher in self.watchers:
            if watcher.resource == resource:
                watcher.queue.put_nowait(event)

    def changed(self, resource: str, kind: str, obj: Obj) -> None:
        """Record a change of ``obj``: new resourceVersion, saved, and told to watchers."""
        self.bump(obj)
        self.save()
        self.emit(resource, kind, obj)


async def list_response(
    store: Store,
    request: web.Request,
    resource: str,
    kind: str,
    items: list[Obj],
    matches: Callable[[Obj], bool],
) -> web.StreamResponse:
    if truthy(request.query.get("watch")):
        return await watch(store, request, resource, items, matches)
    selected = [copy.deepcopy(item) for item in items if matches(item)]
    version = table_version(request)
    if version is not None:
        return json_response(table(request, version, resource, selected, str(store.revision)))
    return json_response(
        {
            "kind": kind,
            "apiVersion": "v1",
            "metadata": {"resourceVersion": str(store.revision)},
            "items": selected,
        }
    )


async def watch(
    store: Store, request: web.Request, resource: str, items: list[Obj], matches: Callable[[Obj], bool]
) -> web.StreamResponse:
    since_text = request.query.get("resourceVersion", "")
    watcher = Watcher(resource)
    store.watchers.add(watcher)
    try:
        initial: list[Event]
        if since_text in ("", "0"):
            initial = [
                Event(store.revision, resource, "ADDED", copy.deepcopy(item)) for item in items
            ]
            last_sent = store.revision
        else:
            try:
                since_rv = int(since_text)
            except ValueError as err:
                raise errors.bad_request(f"invalid resource version: {since_text}") from err
            oldest = store.history[0].resource_version if store.history else store.revision
            if since_rv < oldest - 1 and since_rv < store.revision:
                raise ApiError(410, "Expired", f"too old resource version: {since_rv} ({oldest})")
            initial = [
                event
                for event in store.history
                if event.resource == resource and event.resource_version > since_rv
            ]
            last_sent = max(since_rv, store.revision)
        timeout = float(request.query.get("timeoutSeconds") or 1800)
        as_table = table_version(request)
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        first_table = True

        async def send(event: Event) -> None:
            nonlocal first_table
            if not matches(event.obj):
                return
            obj = event.obj
            if as_table is not None:
                obj = table(request, as_table, resource, [obj], str(event.resource_version), first_table)
                first_table = False
            await response.write(json.dumps({"type": event.kind, "object": obj}).encode() + b"\n")

        try:
            for event in initial:
                await send(event)
            await follow(watcher, send, timeout, last_sent)
            await response.write_eof()
        except ConnectionError:  # the client went away: the normal end of most watches
            pass
        return response
    finally:
        store.watchers.discard(watcher)


async def follow(
    watcher: Watcher, send: Callable[[Event], Awaitable[None]], timeout: float, last_sent: int
) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while (remaining := deadline - loop.time()) > 0:
        try:
            event = await asyncio.wait_for(watcher.queue.get(), remaining)
        except TimeoutError:
            return
        if event is None:
            return
        if event.resource_version > last_sent:
            await send(event)
