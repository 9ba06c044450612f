"""Discovery: /version, /api, /apis, /api/v1 and the OpenAPI v3 document kubectl looks for."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable

from aiohttp import web

from pidmap.sandbox.api import meta
from pidmap.sandbox.api.meta import Obj
from pidmap.sandbox.apiserver.http import json_response

VERSION_INFO = {
    "major": "1",
    "minor": "32",
    "gitVersion": meta.KUBE_VERSION,
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
    "info": {"title": "Kubernetes", "version": meta.KUBE_VERSION},
    "paths": {
        "/api/v1/namespaces/{namespace}/pods/{name}": {
            "patch": _openapi_operation("Pod", "patchCoreV1NamespacedPod")
        },
        "/api/v1/namespaces/{name}": {"patch": _openapi_operation("Namespace", "patchCoreV1Namespace")},
    },
    "components": {"schemas": {}},
}
OPENAPI_V1_HASH = hashlib.sha512(json.dumps(OPENAPI_V1, sort_keys=True).encode()).hexdigest().upper()


async def health(_request: web.Request) -> web.Response:
    return web.Response(text="ok")


async def version(_request: web.Request) -> web.Response:
    return json_response(VERSION_INFO)


def api_versions(port: int) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handler(_request: web.Request) -> web.Response:
        return json_response(
            {
                "kind": "APIVersions",
                "versions": ["v1"],
                "serverAddressByClientCIDRs": [
                    {"clientCIDR": "0.0.0.0/0", "serverAddress": f"127.0.0.1:{port}"}
                ],
            }
        )

    return handler


async def api_groups(_request: web.Request) -> web.Response:
    return json_response({"kind": "APIGroupList", "apiVersion": "v1", "groups": []})


async def api_resources(_request: web.Request) -> web.Response:
    return json_response(API_RESOURCES)


async def openapi_index(_request: web.Request) -> web.Response:
    return json_response(
        {"paths": {"api/v1": {"serverRelativeURL": f"/openapi/v3/api/v1?hash={OPENAPI_V1_HASH}"}}}
    )


async def openapi_v1(_request: web.Request) -> web.Response:
    return json_response(OPENAPI_V1)
