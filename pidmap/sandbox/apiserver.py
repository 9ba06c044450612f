"""The sandbox's stand-in kube-apiserver: ``python -m pidmap.sandbox.apiserver --state-dir DIR``.

Speaks the real wire protocol for what kubectl and the official Python client use on pods, nodes
and namespaces: discovery, a minimal OpenAPI v3 (so ``kubectl apply`` validates server-side),
get/list/watch with label and field selectors, create/delete/patch, server-side ``Table``s, and
``pods/exec`` and ``pods/attach`` (attach.py) over WebSocket (``v5.channel.k8s.io`` and
``v4.channel.k8s.io``). Errors are real ``Status`` objects. The data plane is the Kubelet
(pidmap.sandbox.kubelet), driven through the ``Runtime`` protocol in contracts.py, on this
process's asyncio loop.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import copy
import datetime
import hashlib
import json
import logging
import os
import re
import signal
import ssl
import sys
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

from pidmap.sandbox import attach, objects
from pidmap.sandbox.contracts import ContainerNotFound, ContainerNotRunning, Runtime
from pidmap.sandbox.layout import ClusterSpec, StatePaths
from pidmap.sandbox.objects import ApiError, Obj

log = logging.getLogger("pidmap.sandbox.apiserver")

UNAUTHENTICATED_PATHS = frozenset({"/readyz", "/livez", "/healthz"})
# The user RBAC would name in a 403; the sandbox has one token, so one user.
SANDBOX_USER = "system:serviceaccount:default:pidmap-sandbox"
HISTORY = 10_000  # watch events kept for resourceVersion resumption

VERSION_INFO = {
    "major": "1",
    "minor": "32",
    "gitVersion": objects.KUBE_VERSION,
    "gitCommit": "67a30c0adcf52bd3f56ff0893ce19966be12991f",
    "gitTreeState": "clean",
    "buildDate": "2025-02-12T21:19:47Z",
    "goVersion": "go1.23.6",
    "compiler": "gc",
    "platform": "linux/amd64",
}


def _resource(
    name: str,
    kind: str,
    namespaced: bool,
    verbs: list[str],
    short: list[str] | None = None,
    singular: str = "",
) -> Obj:
    entry: Obj = {
        "name": name,
        "singularName": singular,
        "namespaced": namespaced,
        "kind": kind,
        "verbs": verbs,
    }
    if short:
        entry["shortNames"] = short
    return entry


API_RESOURCES: Obj = {
    "kind": "APIResourceList",
    "groupVersion": "v1",
    "resources": [
        _resource(
            "namespaces",
            "Namespace",
            False,
            ["create", "delete", "get", "list", "patch", "watch"],
            ["ns"],
            "namespace",
        ),
        _resource("nodes", "Node", False, ["get", "list", "watch"], ["no"], "node"),
        _resource("pods", "Pod", True, ["create", "delete", "get", "list", "patch", "watch"], ["po"], "pod")
        | {"categories": ["all"]},
        _resource("pods/ephemeralcontainers", "Pod", True, ["get", "patch", "update"]),
        _resource("pods/exec", "PodExecOptions", True, ["create", "get"]),
        _resource("pods/attach", "PodAttachOptions", True, ["create", "get"]),
        _resource("pods/log", "Pod", True, ["get"]),
    ],
}

_PATCH_PARAMETERS = [
    {
        "name": name,
        "in": "query",
        "description": description,
        "schema": {"type": "string", "uniqueItems": True},
    }
    for name, description in (
        ("dryRun", "When present, indicates that modifications should not be persisted."),
        (
            "fieldManager",
            "fieldManager is a name associated with the actor or entity that is making these changes.",
        ),
        (
            "fieldValidation",
            "fieldValidation instructs the server on how to handle objects in the "
            "request containing unknown or duplicate fields.",
        ),
        ("force", 'Force is going to "force" Apply requests.'),
    )
]


def _openapi_operation(kind: str, operation_id: str) -> Obj:
    return {
        "operationId": operation_id,
        "parameters": _PATCH_PARAMETERS,
        "responses": {"200": {"description": "OK"}},
        "x-kubernetes-action": "patch",
        "x-kubernetes-group-version-kind": {"group": "", "version": "v1", "kind": kind},
    }


# kubectl (QueryParamVerifierV3) looks for a PATCH operation tagged with the object's GVK that
# lists ``fieldValidation``; finding it, kubectl lets this server validate instead of downloading a
# full schema. That is all the schema this server publishes.
OPENAPI_V1: Obj = {
    "openapi": "3.0.0",
    "info": {"title": "Kubernetes", "version": objects.KUBE_VERSION},
    "paths": {
        "/api/v1/namespaces/{namespace}/pods/{name}": {
            "patch": _openapi_operation("Pod", "patchCoreV1NamespacedPod")
        },
        "/api/v1/namespaces/{name}": {"patch": _openapi_operation("Namespace", "patchCoreV1Namespace")},
    },
    "components": {"schemas": {}},
}
OPENAPI_V1_HASH = hashlib.sha512(json.dumps(OPENAPI_V1, sort_keys=True).encode()).hexdigest().upper()


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
        created = objects.timestamp(objects.now_utc())
        for name in objects.DEFAULT_NAMESPACES:
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


# ---------------------------------------------------------------------------------------------
# Request helpers


def _json(body: Obj, status: int = 200) -> web.Response:
    return web.Response(status=status, text=json.dumps(body), content_type="application/json")


def _truthy(value: str | None) -> bool:
    """The apiserver's rule for boolean query parameters: anything but 0/false (any case) is true."""
    return value is not None and value.lower() not in ("0", "false")


def _table_version(request: web.Request) -> str | None:
    """meta.k8s.io version of the Table the client accepts (``None``: plain JSON)."""
    for media_range in request.headers.get("Accept", "").split(","):
        params = dict(part.strip().split("=", 1) for part in media_range.split(";")[1:] if "=" in part)
        if params.get("as") == "Table" and params.get("g") == "meta.k8s.io":
            return params.get("v", "v1")
    return None


async def _read_json(request: web.Request, *, metadata_protobuf: bool = False) -> Obj:
    """The request body; protobuf only where metadata is all the sandbox needs (namespaces)."""
    if request.content_type == objects.PROTOBUF:
        if metadata_protobuf:
            return objects.decode_protobuf_metadata_object(await request.read())
        raise ApiError(
            415,
            "UnsupportedMediaType",
            f"the sandbox API server accepts this object only as JSON, not {objects.PROTOBUF}",
            {},
        )
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise objects.bad_request(f"the body of the request was in an unknown format: {err}") from err
    if not isinstance(body, dict):
        raise objects.bad_request("the body of the request must be a JSON object")
    return body


def _strategic_merge(target: Any, patch: Any) -> Any:
    """Strategic merge for what kubectl apply sends on pods: maps merge, named lists merge by name."""
    if isinstance(patch, dict):
        if patch.get("$patch") == "replace":
            return {k: v for k, v in patch.items() if k != "$patch"}
        result = copy.deepcopy(target) if isinstance(target, dict) else {}
        for key, value in patch.items():
            if key.startswith("$"):
                continue
            if value is None:
                result.pop(key, None)
            else:
                result[key] = _strategic_merge(result.get(key), value)
        return result
    if (
        isinstance(patch, list)
        and isinstance(target, list)
        and all(isinstance(item, dict) and "name" in item for item in [*patch, *target])
    ):
        merged = {item["name"]: copy.deepcopy(item) for item in target}
        order = [item["name"] for item in target]
        for item in patch:
            if item.get("$patch") == "delete":
                merged.pop(item["name"], None)
                continue
            if item["name"] not in merged:
                order.append(item["name"])
            merged[item["name"]] = _strategic_merge(merged.get(item["name"]), item)
        return [merged[name] for name in order if name in merged]
    return copy.deepcopy(patch)


# ---------------------------------------------------------------------------------------------
# The server


class ApiServer:
    def __init__(self, spec: ClusterSpec, paths: StatePaths, runtime: Runtime, token: str) -> None:
        self.spec = spec
        self.paths = paths
        self.runtime = runtime
        self.token = token
        self.store = Store(paths)
        self.tasks: set[asyncio.Task[None]] = set()
        self.sockets: set[web.WebSocketResponse] = set()
        self.node_created = (
            objects.timestamp(datetime.datetime.fromtimestamp(paths.cluster.stat().st_mtime, datetime.UTC))
            if paths.cluster.exists()
            else objects.timestamp(objects.now_utc())
        )

    # -- app ------------------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware])
        get, post = web.get, web.post
        app.add_routes(
            [
                get("/readyz", self.health),
                get("/livez", self.health),
                get("/healthz", self.health),
                get("/version", self.version),
                get("/version/", self.version),
                get("/api", self.api_versions),
                get("/apis", self.api_groups),
                get("/api/v1", self.api_resources),
                get("/openapi/v3", self.openapi_index),
                get("/openapi/v3/api/v1", self.openapi_v1),
                get("/api/v1/namespaces", self.list_namespaces),
                post("/api/v1/namespaces", self.create_namespace),
                get("/api/v1/namespaces/{name}", self.get_namespace),
                web.delete("/api/v1/namespaces/{name}", self.delete_namespace),
                get("/api/v1/nodes", self.list_nodes),
                get("/api/v1/nodes/{name}", self.get_node),
                get("/api/v1/pods", self.list_pods),
                get("/api/v1/namespaces/{namespace}/pods", self.list_pods),
                post("/api/v1/namespaces/{namespace}/pods", self.create_pod),
                get("/api/v1/namespaces/{namespace}/pods/{name}", self.get_pod),
                web.delete("/api/v1/namespaces/{namespace}/pods/{name}", self.delete_pod),
                web.patch("/api/v1/namespaces/{namespace}/pods/{name}", self.patch_pod),
                get("/api/v1/namespaces/{namespace}/pods/{name}/ephemeralcontainers", self.get_pod),
                web.patch(
                    "/api/v1/namespaces/{namespace}/pods/{name}/ephemeralcontainers", self.patch_ephemeral
                ),
                get("/api/v1/namespaces/{namespace}/pods/{name}/exec", self.exec_pod),
                get("/api/v1/namespaces/{namespace}/pods/{name}/log", self.pod_log),
                post("/api/v1/namespaces/{namespace}/pods/{name}/exec", self.exec_pod),
                get("/api/v1/namespaces/{namespace}/pods/{name}/attach", self.attach_pod),
                post("/api/v1/namespaces/{namespace}/pods/{name}/attach", self.attach_pod),
            ]
        )
        app.on_startup.append(self._on_startup)
        app.on_shutdown.append(self._on_shutdown)
        return app

    async def _on_startup(self, _app: web.Application) -> None:
        self.store.load()
        self.store.save()
        log.info(
            "store: %d pods, %d namespaces, resourceVersion %d (reloaded pods are adopted from containerd)",
            len(self.store.pods),
            len(self.store.namespaces),
            self.store.revision,
        )
        known = {node.name for node in self.spec.nodes}
        for pod in list(self.store.pods.values()):
            if pod["metadata"].get("deletionTimestamp"):
                # A deletion the previous server did not finish: finish it.
                self._spawn(self._finish_pod_delete(pod))
            elif pod["spec"].get("nodeName") in known:
                # The kubelet takes the pod up again: containers that still run are adopted
                # (containerd is the source of truth), the others are started as after a crash.
                await self.runtime.start_pod(pod, self._on_change(pod))

    async def _on_shutdown(self, _app: web.Application) -> None:
        for watcher in list(self.store.watchers):
            watcher.queue.put_nowait(None)
        for socket in list(self.sockets):
            await socket.close(code=1001, message=b"server shutting down")

    @web.middleware
    async def _middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        try:
            if request.path not in UNAUTHENTICATED_PATHS:
                header = request.headers.get("Authorization", "")
                if header != f"Bearer {self.token}":
                    raise objects.unauthorized()
            response = await handler(request)
        except ApiError as err:
            response = _json(err.body(), err.code)
        except web.HTTPNotFound:
            response = _json(
                objects.status_failure(
                    404, "NotFound", "the server could not find the requested resource", {}
                ),
                404,
            )
        except web.HTTPMethodNotAllowed as err:
            response = _json(
                objects.status_failure(
                    405,
                    "MethodNotAllowed",
                    f"the server does not allow this method on the requested resource ({err.method})",
                    {},
                ),
                405,
            )
        except Exception as err:  # a bug: answer like the real server does, keep serving
            log.exception("%s %s failed", request.method, request.path_qs)
            response = _json(
                objects.status_failure(500, "InternalError", f"Internal error occurred: {err}", {}), 500
            )
        log.info("%s %s -> %s", request.method, request.path_qs, response.status)
        return response

    # -- discovery ------------------------------------------------------------------------------

    async def health(self, _request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def version(self, _request: web.Request) -> web.Response:
        return _json(VERSION_INFO)

    async def api_versions(self, request: web.Request) -> web.Response:
        return _json(
            {
                "kind": "APIVersions",
                "versions": ["v1"],
                "serverAddressByClientCIDRs": [
                    {"clientCIDR": "0.0.0.0/0", "serverAddress": f"127.0.0.1:{self.spec.api_port}"}
                ],
            }
        )

    async def api_groups(self, _request: web.Request) -> web.Response:
        return _json({"kind": "APIGroupList", "apiVersion": "v1", "groups": []})

    async def api_resources(self, _request: web.Request) -> web.Response:
        return _json(API_RESOURCES)

    async def openapi_index(self, _request: web.Request) -> web.Response:
        return _json(
            {"paths": {"api/v1": {"serverRelativeURL": f"/openapi/v3/api/v1?hash={OPENAPI_V1_HASH}"}}}
        )

    async def openapi_v1(self, _request: web.Request) -> web.Response:
        return _json(OPENAPI_V1)

    # -- generic list / get / watch -------------------------------------------------------------

    def _respond(self, request: web.Request, resource: str, obj: Obj, status: int = 200) -> web.Response:
        version = _table_version(request)
        if version is not None:
            body = objects.table(
                resource,
                [obj],
                now=objects.now_utc(),
                include_object=request.query.get("includeObject", "Metadata"),
                resource_version=obj["metadata"].get("resourceVersion", ""),
            )
            body["apiVersion"] = f"meta.k8s.io/{version}"
            return _json(body, status)
        return _json(copy.deepcopy(obj), status)

    async def _list(
        self, request: web.Request, resource: str, kind: str, items: list[Obj], matches: Callable[[Obj], bool]
    ) -> web.StreamResponse:
        if _truthy(request.query.get("watch")):
            return await self._watch(request, resource, items, matches)
        selected = [copy.deepcopy(item) for item in items if matches(item)]
        version = _table_version(request)
        if version is not None:
            body = objects.table(
                resource,
                selected,
                now=objects.now_utc(),
                include_object=request.query.get("includeObject", "Metadata"),
                resource_version=str(self.store.revision),
            )
            body["apiVersion"] = f"meta.k8s.io/{version}"
            return _json(body)
        return _json(
            {
                "kind": kind,
                "apiVersion": "v1",
                "metadata": {"resourceVersion": str(self.store.revision)},
                "items": selected,
            }
        )

    async def _watch(
        self, request: web.Request, resource: str, items: list[Obj], matches: Callable[[Obj], bool]
    ) -> web.StreamResponse:
        since_text = request.query.get("resourceVersion", "")
        watcher = Watcher(resource)
        self.store.watchers.add(watcher)
        try:
            initial: list[Event]
            if since_text in ("", "0"):
                initial = [
                    Event(self.store.revision, resource, "ADDED", copy.deepcopy(item)) for item in items
                ]
                last_sent = self.store.revision
            else:
                try:
                    since_rv = int(since_text)
                except ValueError as err:
                    raise objects.bad_request(f"invalid resource version: {since_text}") from err
                oldest = self.store.history[0].resource_version if self.store.history else self.store.revision
                if since_rv < oldest - 1 and since_rv < self.store.revision:
                    raise ApiError(410, "Expired", f"too old resource version: {since_rv} ({oldest})")
                initial = [
                    event
                    for event in self.store.history
                    if event.resource == resource and event.resource_version > since_rv
                ]
                last_sent = max(since_rv, self.store.revision)
            timeout = float(request.query.get("timeoutSeconds") or 1800)
            table_version = _table_version(request)
            response = web.StreamResponse(headers={"Content-Type": "application/json"})
            response.enable_chunked_encoding()
            await response.prepare(request)
            first_table = True

            async def send(event: Event) -> None:
                nonlocal first_table
                if not matches(event.obj):
                    return
                obj = event.obj
                if table_version is not None:
                    obj = objects.table(
                        resource,
                        [obj],
                        now=objects.now_utc(),
                        include_object=request.query.get("includeObject", "Metadata"),
                        resource_version=str(event.resource_version),
                        with_columns=first_table,
                    )
                    obj["apiVersion"] = f"meta.k8s.io/{table_version}"
                    first_table = False
                await response.write(json.dumps({"type": event.kind, "object": obj}).encode() + b"\n")

            try:
                for event in initial:
                    await send(event)
                await self._follow(watcher, send, timeout, last_sent)
                await response.write_eof()
            except ConnectionError:  # the client went away: the normal end of most watches
                pass
            return response
        finally:
            self.store.watchers.discard(watcher)

    @staticmethod
    async def _follow(
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

    # -- namespaces -----------------------------------------------------------------------------

    def _namespace(self, name: str) -> Obj:
        namespace = self.store.namespaces.get(name)
        if namespace is None:
            raise objects.not_found("namespaces", name)
        return namespace

    async def list_namespaces(self, request: web.Request) -> web.StreamResponse:
        labels = objects.parse_label_selector(request.query.get("labelSelector"))
        fields = objects.parse_field_selector(
            request.query.get("fieldSelector"), ("metadata.name", "status.phase")
        )
        items = [self.store.namespaces[name] for name in sorted(self.store.namespaces)]
        return await self._list(
            request,
            "namespaces",
            "NamespaceList",
            items,
            lambda ns: (
                objects.labels_match(labels, ns["metadata"].get("labels"))
                and objects.fields_match(fields, ns)
            ),
        )

    async def get_namespace(self, request: web.Request) -> web.Response:
        return self._respond(request, "namespaces", self._namespace(request.match_info["name"]))

    async def create_namespace(self, request: web.Request) -> web.Response:
        body = await _read_json(request, metadata_protobuf=True)
        name = str((body.get("metadata") or {}).get("name") or "")
        if not re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", name) or len(name) > 63:
            raise objects.invalid(
                "Namespace",
                name,
                [
                    {
                        "reason": "FieldValueInvalid",
                        "field": "metadata.name",
                        "message": f'Invalid value: "{name}": a lowercase RFC 1123 label must consist of '
                        "lower case alphanumeric characters or '-', and must start and end with an "
                        "alphanumeric character",
                    }
                ],
            )
        if name in self.store.namespaces:
            raise objects.already_exists("namespaces", name)
        namespace = objects.namespace_object(name, created=objects.timestamp(objects.now_utc()))
        namespace["metadata"]["labels"].update((body.get("metadata") or {}).get("labels") or {})
        if request.query.get("dryRun"):
            return self._respond(request, "namespaces", namespace, 201)
        self.store.namespaces[name] = namespace
        self.store.changed("namespaces", "ADDED", namespace)
        return self._respond(request, "namespaces", namespace, 201)

    async def delete_namespace(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        namespace = self._namespace(name)
        if name in ("default", "kube-system", "kube-public"):
            raise ApiError(
                403,
                "Forbidden",
                f'namespaces "{name}" is forbidden: this namespace may not be deleted',
                {"name": name, "kind": "namespaces"},
            )
        if namespace["status"]["phase"] != "Terminating":
            namespace["status"]["phase"] = "Terminating"
            namespace["metadata"]["deletionTimestamp"] = objects.timestamp(objects.now_utc())
            self.store.changed("namespaces", "MODIFIED", namespace)
            pods = [pod for (ns, _), pod in self.store.pods.items() if ns == name]
            self._spawn(self._finish_namespace(name, [self._begin_pod_delete(pod, None) for pod in pods]))
        return self._respond(request, "namespaces", namespace)

    async def _finish_namespace(self, name: str, deletions: list[Awaitable[None]]) -> None:
        await asyncio.gather(*deletions)
        namespace = self.store.namespaces.pop(name, None)
        if namespace is not None:
            self.store.changed("namespaces", "DELETED", namespace)

    # -- nodes ----------------------------------------------------------------------------------

    def _nodes(self) -> list[Obj]:
        kernel = os.uname().release
        nodes = []
        for index, node in enumerate(self.spec.nodes):
            try:
                ready = self.runtime.node_ready(node.name)
            except Exception:  # a broken probe means "not known to be ready", as the real NodeLost
                log.exception("node_ready(%s) failed", node.name)
                ready = False
            nodes.append(
                objects.node_object(
                    node.name,
                    control_plane=node.role == "control-plane",
                    ready=ready,
                    index=index,
                    created=self.node_created,
                    kernel=kernel,
                    flavor=self.spec.flavor,
                    cluster=self.spec.name,
                )
            )
        return nodes

    async def list_nodes(self, request: web.Request) -> web.StreamResponse:
        labels = objects.parse_label_selector(request.query.get("labelSelector"))
        fields = objects.parse_field_selector(
            request.query.get("fieldSelector"), ("metadata.name", "spec.unschedulable")
        )
        return await self._list(
            request,
            "nodes",
            "NodeList",
            self._nodes(),
            lambda node: (
                objects.labels_match(labels, node["metadata"]["labels"])
                and objects.fields_match(fields, node)
            ),
        )

    async def get_node(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        for node in self._nodes():
            if node["metadata"]["name"] == name:
                return self._respond(request, "nodes", node)
        raise objects.not_found("nodes", name)

    # -- pods -----------------------------------------------------------------------------------

    def _pod(self, namespace: str, name: str) -> Obj:
        pod = self.store.pods.get((namespace, name))
        if pod is None:
            raise objects.not_found("pods", name)
        return pod

    async def list_pods(self, request: web.Request) -> web.StreamResponse:
        namespace = request.match_info.get("namespace")
        if namespace is not None:
            self._namespace(namespace)
        labels = objects.parse_label_selector(request.query.get("labelSelector"))
        fields = objects.parse_field_selector(request.query.get("fieldSelector"), objects.POD_FIELDS)

        def matches(pod: Obj) -> bool:
            return (
                (namespace is None or pod["metadata"]["namespace"] == namespace)
                and objects.labels_match(labels, pod["metadata"].get("labels"))
                and objects.fields_match(fields, pod)
            )

        items = [self.store.pods[key] for key in sorted(self.store.pods)]
        return await self._list(request, "pods", "PodList", items, matches)

    async def get_pod(self, request: web.Request) -> web.Response:
        pod = self._pod(request.match_info["namespace"], request.match_info["name"])
        return self._respond(request, "pods", pod)

    async def create_pod(self, request: web.Request) -> web.Response:
        namespace = request.match_info["namespace"]
        body = await _read_json(request)
        if body.get("kind", "Pod") != "Pod" or body.get("apiVersion", "v1") != "v1":
            raise objects.bad_request(
                f"the API version in the data ({body.get('apiVersion')}) does not match "
                "the expected API version (v1)"
            )
        given_namespace = (body.get("metadata") or {}).get("namespace")
        if given_namespace and given_namespace != namespace:
            raise objects.bad_request(
                "the namespace of the provided object does not match the namespace sent on the request"
            )
        pod = objects.default_pod(body, namespace=namespace, now=objects.now_utc())
        objects.validate_pod(pod)
        if namespace not in self.store.namespaces:
            raise objects.not_found("namespaces", namespace)
        if self.store.namespaces[namespace]["status"]["phase"] == "Terminating":
            raise ApiError(
                403,
                "Forbidden",
                f'pods "{pod["metadata"]["name"]}" is forbidden: unable to create '
                f"new content in namespace {namespace} because it is being terminated",
                {"name": pod["metadata"]["name"], "kind": "pods"},
            )
        name = pod["metadata"]["name"]
        self._authorize("create", "pods", "", namespace)
        self._admit_pod_security(pod, namespace)
        if (namespace, name) in self.store.pods:
            raise objects.already_exists("pods", name)
        node = pod["spec"].get("nodeName") or objects.schedule(
            [(n.name, n.role == "control-plane") for n in self.spec.nodes], self.store.pods.values()
        )
        known_node = node is not None and any(n.name == node for n in self.spec.nodes)
        if node is not None:
            pod["spec"]["nodeName"] = node
            if known_node:
                pod["status"]["conditions"] = [
                    {
                        "type": "PodScheduled",
                        "status": "True",
                        "lastProbeTime": None,
                        "lastTransitionTime": pod["metadata"]["creationTimestamp"],
                    }
                ]
        if request.query.get("dryRun"):
            return self._respond(request, "pods", pod, 201)
        self.store.pods[(namespace, name)] = pod
        self.store.changed("pods", "ADDED", pod)
        reply = self._respond(request, "pods", pod, 201)
        if known_node:
            # A pod bound to a node that does not exist stays Pending, as on a real cluster.
            await self.runtime.start_pod(pod, self._on_change(pod))
        log.info("pod %s/%s -> node %s", namespace, name, node)
        return reply

    def _authorize(self, verb: str, resource: str, name: str, namespace: str) -> None:
        """The RBAC stand-in: 403 in RBAC's words for a rule of ``sandbox up --forbid VERB:RESOURCE``."""
        rules = self.paths.load_forbidden()
        if self.spec.exec_forbidden:
            rules |= {"create:pods/exec"}
        if f"{verb}:{resource}" in rules:
            raise objects.forbidden(SANDBOX_USER, verb, resource, name, namespace)

    def _admit_pod_security(self, pod: Obj, namespace: str) -> None:
        """The PodSecurity admission plugin: the namespace's enforce label against the pod."""
        labels = self.store.namespaces[namespace]["metadata"].get("labels") or {}
        refusal = objects.pod_security_violation(pod, labels)
        if refusal is not None:
            raise refusal

    def _on_change(self, pod: Obj) -> Callable[[], None]:
        def on_change() -> None:
            key = (pod["metadata"]["namespace"], pod["metadata"]["name"])
            if self.store.pods.get(key) is pod:
                self.store.changed("pods", "MODIFIED", pod)

        return on_change

    async def delete_pod(self, request: web.Request) -> web.Response:
        self._authorize("delete", "pods", request.match_info["name"], request.match_info["namespace"])
        pod = self._pod(request.match_info["namespace"], request.match_info["name"])
        options: Obj = {}
        if request.can_read_body:
            with contextlib.suppress(ApiError):
                options = await _read_json(request)
        grace_text = request.query.get("gracePeriodSeconds", options.get("gracePeriodSeconds"))
        grace = int(grace_text) if grace_text is not None else None
        if request.query.get("dryRun") or options.get("dryRun"):
            return self._respond(request, "pods", pod)
        if not pod["metadata"].get("deletionTimestamp"):
            self._spawn(self._begin_pod_delete(pod, grace))
        return self._respond(request, "pods", pod)

    def _begin_pod_delete(self, pod: Obj, grace: int | None) -> Awaitable[None]:
        """Mark ``pod`` terminating now; the returned coroutine finishes the deletion."""
        grace = pod["spec"].get("terminationGracePeriodSeconds", 30) if grace is None else grace
        now = objects.now_utc()
        pod["metadata"]["deletionTimestamp"] = objects.timestamp(now + datetime.timedelta(seconds=grace))
        pod["metadata"]["deletionGracePeriodSeconds"] = grace
        self.store.changed("pods", "MODIFIED", pod)
        return self._finish_pod_delete(pod)

    async def _finish_pod_delete(self, pod: Obj) -> None:
        key = (pod["metadata"]["namespace"], pod["metadata"]["name"])
        started = any(n.name == pod["spec"].get("nodeName") for n in self.spec.nodes)
        if started:
            try:
                await self.runtime.delete_pod(pod)
            except Exception:
                log.exception("runtime.delete_pod(%s/%s) failed; removing the object anyway", *key)
        if self.store.pods.get(key) is pod:
            del self.store.pods[key]
            self.store.changed("pods", "DELETED", pod)
        log.info("pod %s/%s deleted", *key)

    async def patch_pod(self, request: web.Request) -> web.Response:
        pod = self._pod(request.match_info["namespace"], request.match_info["name"])
        content_type = request.content_type
        if content_type not in ("application/merge-patch+json", "application/strategic-merge-patch+json"):
            raise ApiError(
                415,
                "UnsupportedMediaType",
                f"the sandbox API server does not support patches of type "
                f"{content_type!r}; use a merge or strategic merge patch",
                {},
            )
        patch = await _read_json(request)
        strategic = content_type == "application/strategic-merge-patch+json"
        merged = _strategic_merge(pod, patch) if strategic else objects.merge_patch(pod, patch)
        name = pod["metadata"]["name"]
        if merged.get("spec") != pod["spec"]:
            raise objects.invalid(
                "Pod",
                name,
                [
                    {
                        "reason": "FieldValueForbidden",
                        "field": "spec",
                        "message": "Forbidden: pod updates may not change fields other than "
                        "`spec.containers[*].image`, "
                        "`spec.initContainers[*].image`, `spec.activeDeadlineSeconds`, "
                        "`spec.tolerations` (only additions to existing tolerations), "
                        "`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously "
                        "negative) (the sandbox allows none of them)",
                    }
                ],
            )
        meta = merged.get("metadata") or {}
        for fixed in ("name", "namespace", "uid", "creationTimestamp"):
            if meta.get(fixed) != pod["metadata"].get(fixed):
                raise objects.invalid(
                    "Pod",
                    name,
                    [
                        {
                            "reason": "FieldValueInvalid",
                            "field": f"metadata.{fixed}",
                            "message": "Invalid value: field is immutable",
                        }
                    ],
                )
        for key in ("labels", "annotations"):
            values = meta.get(key)
            if values is not None and not all(isinstance(v, str) for v in values.values()):
                raise objects.bad_request(f"metadata.{key} values must be strings")
        if request.query.get("dryRun"):
            return self._respond(request, "pods", {**pod, "metadata": meta})
        # Only metadata changes: the runtime keeps its reference to the same pod dict.
        pod["metadata"] = meta
        self.store.changed("pods", "MODIFIED", pod)
        return self._respond(request, "pods", pod)

    def _exec_abort(self, argv: list[str]) -> Callable[[], Awaitable[None]] | None:
        """The runtime's way to stop an exec whose client went away (``kill_exec``), if it has one:
        killing the local launcher does not reach a process that the container's shim started."""
        kill_exec = getattr(self.runtime, "kill_exec", None)
        if kill_exec is None:
            return None

        async def abort() -> None:
            with contextlib.suppress(Exception):
                await kill_exec(argv)

        return abort

    async def patch_ephemeral(self, request: web.Request) -> web.Response:
        """``kubectl debug``: the ephemeralcontainers subresource may only add ephemeral containers."""
        pod = self._pod(request.match_info["namespace"], request.match_info["name"])
        name = pod["metadata"]["name"]
        if request.content_type not in (
            "application/merge-patch+json",
            "application/strategic-merge-patch+json",
        ):
            raise ApiError(
                415,
                "UnsupportedMediaType",
                f"the sandbox API server does not support patches of type {request.content_type!r}",
                {},
            )
        patch = await _read_json(request)
        if request.content_type == "application/strategic-merge-patch+json":
            merged = _strategic_merge(pod, patch)
        else:
            merged = objects.merge_patch(pod, patch)
        old = pod["spec"].get("ephemeralContainers") or []
        new = (merged.get("spec") or {}).get("ephemeralContainers") or []
        others = {k: v for k, v in (merged.get("spec") or {}).items() if k != "ephemeralContainers"}
        if (
            others != {k: v for k, v in pod["spec"].items() if k != "ephemeralContainers"}
            or new[: len(old)] != old
        ):
            raise objects.invalid(
                "Pod",
                name,
                [
                    {
                        "reason": "FieldValueForbidden",
                        "field": "spec.ephemeralContainers",
                        "message": "Forbidden: existing ephemeral containers may not be changed or removed",
                    }
                ],
            )
        taken = set(objects.container_names(pod))
        added = new[len(old) :]
        for container in added:
            if not container.get("name") or container["name"] in taken or not container.get("image"):
                raise objects.invalid(
                    "Pod",
                    name,
                    [
                        {
                            "reason": "FieldValueInvalid",
                            "field": "spec.ephemeralContainers",
                            "message": f"Invalid value: {container.get('name')!r}: "
                            "a new, unique name and an image",
                        }
                    ],
                )
            taken.add(container["name"])
            container.setdefault("terminationMessagePath", "/dev/termination-log")
            container.setdefault("terminationMessagePolicy", "File")
            container.setdefault("imagePullPolicy", "IfNotPresent")
        if request.query.get("dryRun"):
            return self._respond(request, "pods", merged)
        pod["spec"]["ephemeralContainers"] = new
        add = getattr(self.runtime, "add_ephemeral", None)
        for container in added:
            if add is not None:
                await add(pod, container)
        self.store.changed("pods", "MODIFIED", pod)
        return self._respond(request, "pods", pod)

    async def attach_pod(self, request: web.Request) -> web.StreamResponse:
        """``kubectl attach``, ``kubectl debug -i``: pidmap.sandbox.attach."""
        return await attach.attach_pod(self, request)

    # -- exec -----------------------------------------------------------------------------------

    async def exec_pod(self, request: web.Request) -> web.StreamResponse:
        namespace, name = request.match_info["namespace"], request.match_info["name"]
        query = request.query
        self._namespace(namespace)
        pod = self._pod(namespace, name)
        self._authorize("create", "pods/exec", name, namespace)
        command = query.getall("command", [])
        stdin, stdout = _truthy(query.get("stdin")), _truthy(query.get("stdout"))
        stderr, tty = _truthy(query.get("stderr")), _truthy(query.get("tty"))
        if not (stdin or stdout or stderr):
            raise objects.bad_request("you must specify at least 1 of stdin, stdout, stderr")
        if not command:
            raise objects.bad_request("you must specify at least one command for the container")
        container = query.get("container") or objects.default_container(pod)
        if container is None or container not in objects.container_names(pod):
            raise objects.bad_request(f"container {container} is not valid for pod {name}")
        phase = pod["status"].get("phase")
        if phase in ("Succeeded", "Failed"):
            raise objects.bad_request(
                f"cannot exec into a container in a completed pod; current phase is {phase}"
            )
        offered = [
            p.strip() for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",") if p.strip()
        ]
        protocol = next((p for p in ("v5.channel.k8s.io", "v4.channel.k8s.io") if p in offered), None)
        if protocol is None:
            raise objects.bad_request(
                "the sandbox supports exec only over WebSocket with subprotocol "
                "v5.channel.k8s.io or v4.channel.k8s.io"
            )
        not_running: str | None = None
        argv: list[str] = []
        try:
            argv = self.runtime.exec_argv(pod, container, list(command))
        except ContainerNotFound as err:
            raise objects.bad_request(f"container {container} is not valid for pod {name}") from err
        except ContainerNotRunning:
            not_running = f'container not found ("{container}")'
            if protocol != "v5.channel.k8s.io":
                raise objects.bad_request(not_running) from None
        socket = web.WebSocketResponse(protocols=(protocol,), autoping=True)
        await socket.prepare(request)
        self.sockets.add(socket)
        try:
            if not_running is not None:
                await _send_status(
                    socket,
                    objects.status_failure(
                        500, "InternalError", not_running, {"causes": [{"message": not_running}]}
                    ),
                )
            else:
                await _run_exec(
                    socket,
                    argv,
                    protocol,
                    stdin=stdin,
                    stdout=stdout,
                    stderr=stderr,
                    tty=tty,
                    command=command,
                    abort=self._exec_abort(argv),
                )
            await socket.close()
        finally:
            self.sockets.discard(socket)
        log.info("exec %s/%s[%s] %s done", namespace, name, container, command[:1])
        return socket

    # -- logs -----------------------------------------------------------------------------------

    async def pod_log(self, request: web.Request) -> web.StreamResponse:
        """``kubectl logs``: the container's output as the kubelet recorded it (not in the Runtime
        contract: served when the runtime offers ``log_path(pod, container, previous)``)."""
        namespace, name = request.match_info["namespace"], request.match_info["name"]
        pod = self._pod(namespace, name)
        query = request.query
        names = [c["name"] for c in pod["spec"].get("containers") or []]
        container = query.get("container")
        if not container:
            if len(names) != 1:
                raise objects.bad_request(
                    f"a container name must be specified for pod {name}, choose one of: [{' '.join(names)}]"
                )
            container = names[0]
        if container not in objects.container_names(pod):
            raise objects.bad_request(f"container {container} is not valid for pod {name}")
        log_path = getattr(self.runtime, "log_path", None)
        if log_path is None:
            raise ApiError(405, "MethodNotAllowed", "this sandbox's runtime keeps no container logs", {})
        previous = _truthy(query.get("previous"))
        path = log_path(pod, container, previous)
        if path is None:
            if previous:
                raise objects.bad_request(
                    f'previous terminated container "{container}" in pod "{name}" not found'
                )
            raise objects.bad_request(
                f'container "{container}" in pod "{name}" is waiting to start: '
                f"{self._waiting_reason(pod, container)}"
            )
        data = path.read_bytes()
        tail = query.get("tailLines")
        if tail is not None and tail.isdigit():
            lines = data.splitlines(keepends=True)
            data = b"".join(lines[len(lines) - int(tail) :]) if int(tail) else b""
        if not _truthy(query.get("follow")):
            return web.Response(body=data, content_type="text/plain")
        response = web.StreamResponse(headers={"Content-Type": "text/plain"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        offset = path.stat().st_size
        try:
            await response.write(data)
            # Follow while this run of the container is the current one and still running.
            while self.store.pods.get((namespace, name)) is pod and log_path(pod, container, False) == path:
                size = path.stat().st_size
                if size > offset:
                    with path.open("rb") as handle:
                        handle.seek(offset)
                        await response.write(handle.read(size - offset))
                    offset = size
                elif not self._running(pod, container):
                    break
                await asyncio.sleep(0.2)
            await response.write_eof()
        except (ConnectionError, FileNotFoundError):
            pass
        return response

    @staticmethod
    def _statuses(pod: Obj) -> list[Obj]:
        status = pod.get("status") or {}
        return [*(status.get("initContainerStatuses") or []), *(status.get("containerStatuses") or [])]

    def _running(self, pod: Obj, container: str) -> bool:
        return any(
            s.get("name") == container and "running" in (s.get("state") or {}) for s in self._statuses(pod)
        )

    def _waiting_reason(self, pod: Obj, container: str) -> str:
        for entry in self._statuses(pod):
            if entry.get("name") == container:
                return str(
                    ((entry.get("state") or {}).get("waiting") or {}).get("reason") or "ContainerCreating"
                )
        return "ContainerCreating"

    # -- misc -----------------------------------------------------------------------------------

    def _spawn(self, coroutine: Awaitable[None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coroutine)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)


# ---------------------------------------------------------------------------------------------
# Exec streaming

STDIN, STDOUT, STDERR, ERROR, RESIZE, CLOSE = 0, 1, 2, 3, 4, 255
# `ctr task exec` reports a command runc cannot start like this (exit status 1), as containerd
# reports it to kubelet on a real node.
_EXEC_FAILED = re.compile(rb"^ctr: (OCI runtime exec failed: .+)$", re.MULTILINE)


async def _send_status(socket: web.WebSocketResponse, status: Obj) -> None:
    with contextlib.suppress(ConnectionError, RuntimeError):
        await socket.send_bytes(bytes([ERROR]) + json.dumps(status).encode())


def _exit_status(code: int, early_stderr: bytes, command: list[str] | None = None) -> Obj:
    failed = _EXEC_FAILED.search(early_stderr) if code != 0 else None
    if failed is not None:
        message = failed.group(1).decode(errors="replace").strip()
        return objects.status_failure(500, "InternalError", message, {"causes": [{"message": message}]}) | {
            "metadata": {}
        }
    if code == 0:
        return {"metadata": {}, "status": "Success"}
    exit_text = str(code if code >= 0 else 128 - code)
    return {
        "metadata": {},
        "status": "Failure",
        "message": f"command terminated with non-zero exit code: error executing command "
        f"[{' '.join(command or [])}], exit code "
        f"{exit_text}",
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": exit_text}]},
    }


async def _run_exec(
    socket: web.WebSocketResponse,
    argv: list[str],
    protocol: str,
    *,
    stdin: bool,
    stdout: bool,
    stderr: bool,
    tty: bool,
    command: list[str],
    abort: Callable[[], Awaitable[None]] | None = None,
) -> None:
    process = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.PIPE if stdin else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT if tty else asyncio.subprocess.PIPE,
        # Its own process group, so that a client that goes away takes the whole command with it.
        start_new_session=True,
    )
    early_stderr = bytearray()
    sent_any = False
    held_back = bytearray()

    async def pump(stream: asyncio.StreamReader | None, channel: int, wanted: bool) -> None:
        nonlocal sent_any
        if stream is None:
            return
        while chunk := await stream.read(65536):
            if channel == STDERR and not sent_any and len(early_stderr) < 4096:
                # Hold stderr back until we know it is not the launcher's "cannot execute" line.
                early_stderr.extend(chunk)
                held_back.extend(chunk)
                if not _EXEC_FAILED.search(early_stderr) and b"\n" in early_stderr:
                    await flush_held()
                continue
            if channel == STDOUT:
                await flush_held()
                sent_any = True
            if wanted:
                await socket.send_bytes(bytes([channel]) + chunk)

    async def flush_held() -> None:
        nonlocal sent_any
        if held_back and not _EXEC_FAILED.search(early_stderr):
            if stderr:
                await socket.send_bytes(bytes([STDERR]) + bytes(held_back))
            held_back.clear()
            sent_any = True

    async def read_client() -> None:
        async for message in socket:
            if message.type != WSMsgType.BINARY or not message.data:
                continue
            data: bytes = message.data
            channel, payload = data[0], data[1:]
            if channel == STDIN and process.stdin is not None and payload:
                with contextlib.suppress(ConnectionError):
                    process.stdin.write(payload)
                    await process.stdin.drain()
            elif (
                channel == CLOSE
                and protocol.startswith("v5")
                and payload[:1] == bytes([STDIN])
                and process.stdin is not None
            ):
                process.stdin.close()

    pumps: asyncio.Future[Any] = asyncio.gather(
        pump(process.stdout, STDOUT, stdout), pump(process.stderr, STDERR, stderr)
    )
    reader: asyncio.Future[Any] = asyncio.ensure_future(read_client())
    try:
        done, _ = await asyncio.wait({pumps, reader}, return_when=asyncio.FIRST_COMPLETED)
        if reader in done and pumps not in done:
            # The client went away (or closed) before the command ended: the command must not outlive it.
            if socket.closed:
                if abort is not None:
                    await abort()
                _kill_group(process.pid)
            await pumps
        code = await process.wait()
        if not _EXEC_FAILED.search(early_stderr):
            await flush_held()
        await _send_status(socket, _exit_status(code, bytes(early_stderr), command))
    except (ConnectionError, RuntimeError):
        if abort is not None:
            await abort()
        _kill_group(process.pid)
        await process.wait()
    finally:
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader
        if process.returncode is None:
            _kill_group(process.pid)
            await process.wait()


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


# ---------------------------------------------------------------------------------------------
# Entry point


def _load_runtime(spec: ClusterSpec, paths: StatePaths) -> Runtime:
    try:
        from pidmap.sandbox.kubelet import Kubelet  # type: ignore[import-not-found,unused-ignore]
    except ImportError as err:
        log.error(
            "cannot start: the sandbox kubelet (pidmap.sandbox.kubelet.Kubelet) is not importable: %s", err
        )
        raise SystemExit(1) from err
    runtime: Runtime = Kubelet(spec, paths)
    return runtime


async def serve(spec: ClusterSpec, paths: StatePaths, runtime: Runtime) -> None:
    """Serve until SIGTERM/SIGINT, then stop cleanly (pods live on in their node containers)."""
    token = paths.token.read_text().strip()
    server = ApiServer(spec, paths, runtime, token)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(paths.server_cert, paths.server_key)
    runner = web.AppRunner(server.app(), access_log=None, shutdown_timeout=3)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", spec.api_port, ssl_context=context)
    await site.start()
    log.info("serving %s for sandbox %s (%d nodes)", spec.server, spec.name, len(spec.nodes))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    log.info("stopping")
    await runner.cleanup()
    for task in list(server.tasks):
        task.cancel()
    await runtime.close()
    log.info("stopped")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pidmap.sandbox.apiserver", description=__doc__)
    parser.add_argument("--state-dir", required=True, help="the sandbox's state directory")
    args = parser.parse_args(argv)
    logging.basicConfig(
        stream=sys.stdout, level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    paths = StatePaths(root=__import__("pathlib").Path(args.state_dir))
    spec = paths.load_cluster()

    async def run() -> None:
        await serve(spec, paths, _load_runtime(spec, paths))

    asyncio.run(run())
    return 0


if __name__ == "__main__":
    sys.exit(main())
