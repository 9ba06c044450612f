"""The API server's app: routing, authentication, and the handlers of namespaces, nodes and pods."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import os
import re
import signal
import ssl
from collections.abc import Awaitable, Callable

from aiohttp import web

from pidmap.sandbox.api import admission, errors, meta, objects, pods, selectors
from pidmap.sandbox.api.errors import ApiError
from pidmap.sandbox.api.meta import Obj
from pidmap.sandbox.api.patch import merge_patch, strategic_merge
from pidmap.sandbox.apiserver import attach, discovery, exec_stream, logs
from pidmap.sandbox.apiserver.http import json_response, read_json, respond, truthy
from pidmap.sandbox.apiserver.store import Store, list_response
from pidmap.sandbox.cluster.layout import ClusterSpec, StatePaths
from pidmap.sandbox.contracts import Kubelet

log = logging.getLogger("pidmap.sandbox.apiserver")


UNAUTHENTICATED_PATHS = frozenset({"/readyz", "/livez", "/healthz"})
# The user RBAC would name in a 403; the sandbox has one token, so one user.
SANDBOX_USER = "system:serviceaccount:default:pidmap-sandbox"


class ApiServer:
    def __init__(self, spec: ClusterSpec, paths: StatePaths, kubelet: Kubelet, token: str) -> None:
        self.spec = spec
        self.paths = paths
        self.kubelet = kubelet
        self.token = token
        self.store = Store(paths)
        self.tasks: set[asyncio.Task[None]] = set()
        self.sockets: set[web.WebSocketResponse] = set()
        self.node_created = (
            meta.timestamp(datetime.datetime.fromtimestamp(paths.cluster.stat().st_mtime, datetime.UTC))
            if paths.cluster.exists()
            else meta.timestamp(meta.now_utc())
        )

    # -- app ------------------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware])
        get, post = web.get, web.post
        app.add_routes(
            [
                get("/readyz", discovery.health),
                get("/livez", discovery.health),
                get("/healthz", discovery.health),
                get("/version", discovery.version),
                get("/version/", discovery.version),
                get("/api", discovery.api_versions(self.spec.api_port)),
                get("/apis", discovery.api_groups),
                get("/api/v1", discovery.api_resources),
                get("/openapi/v3", discovery.openapi_index),
                get("/openapi/v3/api/v1", discovery.openapi_v1),
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
                await self.kubelet.start_pod(pod, self._on_change(pod))

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
                    raise errors.unauthorized()
            response = await handler(request)
        except ApiError as err:
            response = json_response(err.body(), err.code)
        except web.HTTPNotFound:
            response = json_response(
                errors.status_failure(
                    404, "NotFound", "the server could not find the requested resource", {}
                ),
                404,
            )
        except web.HTTPMethodNotAllowed as err:
            response = json_response(
                errors.status_failure(
                    405,
                    "MethodNotAllowed",
                    f"the server does not allow this method on the requested resource ({err.method})",
                    {},
                ),
                405,
            )
        except Exception as err:  # a bug: answer like the real server does, keep serving
            log.exception("%s %s failed", request.method, request.path_qs)
            response = json_response(
                errors.status_failure(500, "InternalError", f"Internal error occurred: {err}", {}), 500
            )
        log.info("%s %s -> %s", request.method, request.path_qs, response.status)
        return response

    # -- namespaces -----------------------------------------------------------------------------

    def _namespace(self, name: str) -> Obj:
        namespace = self.store.namespaces.get(name)
        if namespace is None:
            raise errors.not_found("namespaces", name)
        return namespace

    async def list_namespaces(self, request: web.Request) -> web.StreamResponse:
        labels = selectors.parse_label_selector(request.query.get("labelSelector"))
        fields = selectors.parse_field_selector(
            request.query.get("fieldSelector"), ("metadata.name", "status.phase")
        )
        items = [self.store.namespaces[name] for name in sorted(self.store.namespaces)]
        return await list_response(
            self.store,
            request,
            "namespaces",
            "NamespaceList",
            items,
            lambda ns: (
                selectors.labels_match(labels, ns["metadata"].get("labels"))
                and selectors.fields_match(fields, ns)
            ),
        )

    async def get_namespace(self, request: web.Request) -> web.Response:
        return respond(request, "namespaces", self._namespace(request.match_info["name"]))

    async def create_namespace(self, request: web.Request) -> web.Response:
        body = await read_json(request, metadata_protobuf=True)
        name = str((body.get("metadata") or {}).get("name") or "")
        if not re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", name) or len(name) > 63:
            raise errors.invalid(
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
            raise errors.already_exists("namespaces", name)
        namespace = objects.namespace_object(name, created=meta.timestamp(meta.now_utc()))
        namespace["metadata"]["labels"].update((body.get("metadata") or {}).get("labels") or {})
        if request.query.get("dryRun"):
            return respond(request, "namespaces", namespace, 201)
        self.store.namespaces[name] = namespace
        self.store.changed("namespaces", "ADDED", namespace)
        return respond(request, "namespaces", namespace, 201)

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
            namespace["metadata"]["deletionTimestamp"] = meta.timestamp(meta.now_utc())
            self.store.changed("namespaces", "MODIFIED", namespace)
            doomed = [pod for (ns, _), pod in self.store.pods.items() if ns == name]
            self._spawn(self._finish_namespace(name, [self._begin_pod_delete(pod, None) for pod in doomed]))
        return respond(request, "namespaces", namespace)

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
                ready = self.kubelet.node_ready(node.name)
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
        labels = selectors.parse_label_selector(request.query.get("labelSelector"))
        fields = selectors.parse_field_selector(
            request.query.get("fieldSelector"), ("metadata.name", "spec.unschedulable")
        )
        return await list_response(
            self.store,
            request,
            "nodes",
            "NodeList",
            self._nodes(),
            lambda node: (
                selectors.labels_match(labels, node["metadata"]["labels"])
                and selectors.fields_match(fields, node)
            ),
        )

    async def get_node(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        for node in self._nodes():
            if node["metadata"]["name"] == name:
                return respond(request, "nodes", node)
        raise errors.not_found("nodes", name)

    # -- pods -----------------------------------------------------------------------------------

    def _pod(self, namespace: str, name: str) -> Obj:
        pod = self.store.pods.get((namespace, name))
        if pod is None:
            raise errors.not_found("pods", name)
        return pod

    async def list_pods(self, request: web.Request) -> web.StreamResponse:
        namespace = request.match_info.get("namespace")
        verb = "watch" if truthy(request.query.get("watch")) else "list"
        self._authorize(verb, "pods", "", namespace or "")
        if namespace is not None:
            self._namespace(namespace)
        labels = selectors.parse_label_selector(request.query.get("labelSelector"))
        fields = selectors.parse_field_selector(request.query.get("fieldSelector"), selectors.POD_FIELDS)

        def matches(pod: Obj) -> bool:
            return (
                (namespace is None or pod["metadata"]["namespace"] == namespace)
                and selectors.labels_match(labels, pod["metadata"].get("labels"))
                and selectors.fields_match(fields, pod)
            )

        items = [self.store.pods[key] for key in sorted(self.store.pods)]
        return await list_response(self.store, request, "pods", "PodList", items, matches)

    async def get_pod(self, request: web.Request) -> web.Response:
        self._authorize("get", "pods", request.match_info["name"], request.match_info["namespace"])
        pod = self._pod(request.match_info["namespace"], request.match_info["name"])
        return respond(request, "pods", pod)

    async def create_pod(self, request: web.Request) -> web.Response:
        namespace = request.match_info["namespace"]
        body = await read_json(request)
        if body.get("kind", "Pod") != "Pod" or body.get("apiVersion", "v1") != "v1":
            raise errors.bad_request(
                f"the API version in the data ({body.get('apiVersion')}) does not match "
                "the expected API version (v1)"
            )
        given_namespace = (body.get("metadata") or {}).get("namespace")
        if given_namespace and given_namespace != namespace:
            raise errors.bad_request(
                "the namespace of the provided object does not match the namespace sent on the request"
            )
        pod = pods.default_pod(body, namespace=namespace, now=meta.now_utc())
        pods.validate_pod(pod)
        if namespace not in self.store.namespaces:
            raise errors.not_found("namespaces", namespace)
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
            raise errors.already_exists("pods", name)
        node = pod["spec"].get("nodeName") or pods.schedule(
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
            return respond(request, "pods", pod, 201)
        self.store.pods[(namespace, name)] = pod
        self.store.changed("pods", "ADDED", pod)
        reply = respond(request, "pods", pod, 201)
        if known_node:
            # A pod bound to a node that does not exist stays Pending, as on a real cluster.
            await self.kubelet.start_pod(pod, self._on_change(pod))
        log.info("pod %s/%s -> node %s", namespace, name, node)
        return reply

    def _authorize(self, verb: str, resource: str, name: str, namespace: str) -> None:
        """The RBAC stand-in: 403 in RBAC's words for a rule of ``sandbox up --forbid VERB:RESOURCE``."""
        rules = self.paths.load_forbidden()
        if self.spec.exec_forbidden:
            rules |= {"create:pods/exec"}
        if f"{verb}:{resource}" in rules:
            raise errors.forbidden(SANDBOX_USER, verb, resource, name, namespace)

    def _admit_pod_security(self, pod: Obj, namespace: str) -> None:
        """The PodSecurity admission plugin: the namespace's enforce label against the pod."""
        labels = self.store.namespaces[namespace]["metadata"].get("labels") or {}
        refusal = admission.pod_security_violation(pod, labels)
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
                options = await read_json(request)
        grace_text = request.query.get("gracePeriodSeconds", options.get("gracePeriodSeconds"))
        grace = int(grace_text) if grace_text is not None else None
        if request.query.get("dryRun") or options.get("dryRun"):
            return respond(request, "pods", pod)
        if not pod["metadata"].get("deletionTimestamp"):
            self._spawn(self._begin_pod_delete(pod, grace))
        return respond(request, "pods", pod)

    def _begin_pod_delete(self, pod: Obj, grace: int | None) -> Awaitable[None]:
        """Mark ``pod`` terminating now; the returned coroutine finishes the deletion."""
        grace = pod["spec"].get("terminationGracePeriodSeconds", 30) if grace is None else grace
        now = meta.now_utc()
        pod["metadata"]["deletionTimestamp"] = meta.timestamp(now + datetime.timedelta(seconds=grace))
        pod["metadata"]["deletionGracePeriodSeconds"] = grace
        self.store.changed("pods", "MODIFIED", pod)
        return self._finish_pod_delete(pod)

    async def _finish_pod_delete(self, pod: Obj) -> None:
        key = (pod["metadata"]["namespace"], pod["metadata"]["name"])
        started = any(n.name == pod["spec"].get("nodeName") for n in self.spec.nodes)
        if started:
            try:
                await self.kubelet.delete_pod(pod)
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
        body = await read_json(request)
        strategic = content_type == "application/strategic-merge-patch+json"
        merged = strategic_merge(pod, body) if strategic else merge_patch(pod, body)
        name = pod["metadata"]["name"]
        if merged.get("spec") != pod["spec"]:
            raise errors.invalid(
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
        metadata = merged.get("metadata") or {}
        for fixed in ("name", "namespace", "uid", "creationTimestamp"):
            if metadata.get(fixed) != pod["metadata"].get(fixed):
                raise errors.invalid(
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
            values = metadata.get(key)
            if values is not None and not all(isinstance(v, str) for v in values.values()):
                raise errors.bad_request(f"metadata.{key} values must be strings")
        if request.query.get("dryRun"):
            return respond(request, "pods", {**pod, "metadata": metadata})
        # Only metadata changes: the runtime keeps its reference to the same pod dict.
        pod["metadata"] = metadata
        self.store.changed("pods", "MODIFIED", pod)
        return respond(request, "pods", pod)

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
        body = await read_json(request)
        if request.content_type == "application/strategic-merge-patch+json":
            merged = strategic_merge(pod, body)
        else:
            merged = merge_patch(pod, body)
        old = pod["spec"].get("ephemeralContainers") or []
        new = (merged.get("spec") or {}).get("ephemeralContainers") or []
        others = {k: v for k, v in (merged.get("spec") or {}).items() if k != "ephemeralContainers"}
        if (
            others != {k: v for k, v in pod["spec"].items() if k != "ephemeralContainers"}
            or new[: len(old)] != old
        ):
            raise errors.invalid(
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
        taken = set(pods.container_names(pod))
        added = new[len(old) :]
        for container in added:
            if not container.get("name") or container["name"] in taken or not container.get("image"):
                raise errors.invalid(
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
            return respond(request, "pods", merged)
        pod["spec"]["ephemeralContainers"] = new
        for container in added:
            await self.kubelet.add_ephemeral(pod, container)
        self.store.changed("pods", "MODIFIED", pod)
        return respond(request, "pods", pod)

    # -- exec, attach and logs: their streams live in exec_stream.py, attach.py and logs.py ----

    async def exec_pod(self, request: web.Request) -> web.StreamResponse:
        namespace, name = request.match_info["namespace"], request.match_info["name"]
        self._namespace(namespace)
        pod = self._pod(namespace, name)
        self._authorize("create", "pods/exec", name, namespace)
        return await exec_stream.serve_exec(request, pod, self.kubelet, self.sockets)

    async def attach_pod(self, request: web.Request) -> web.StreamResponse:
        """``kubectl attach``, ``kubectl debug -i``: attach.py."""
        namespace, name = request.match_info["namespace"], request.match_info["name"]
        self._namespace(namespace)
        pod = self._pod(namespace, name)
        self._authorize("create", "pods/attach", name, namespace)
        return await attach.serve_attach(request, pod, self.kubelet, self.sockets)

    async def pod_log(self, request: web.Request) -> web.StreamResponse:
        namespace, name = request.match_info["namespace"], request.match_info["name"]
        pod = self._pod(namespace, name)
        return await logs.serve_log(
            request, pod, self.kubelet, lambda: self.store.pods.get((namespace, name)) is pod
        )

    # -- misc -----------------------------------------------------------------------------------

    def _spawn(self, coroutine: Awaitable[None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coroutine)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)


async def serve(spec: ClusterSpec, paths: StatePaths, kubelet: Kubelet) -> None:
    """Serve until SIGTERM/SIGINT, then stop cleanly (pods live on in their node containers)."""
    token = paths.token.read_text().strip()
    server = ApiServer(spec, paths, kubelet, token)
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
    await kubelet.close()
    log.info("stopped")
