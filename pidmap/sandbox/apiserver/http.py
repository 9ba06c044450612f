"""Request and response helpers every handler shares: JSON bodies, boolean query parameters, Tables."""

from __future__ import annotations

import copy
import json

from aiohttp import web

from pidmap.sandbox.api import errors, meta, printers, protobuf
from pidmap.sandbox.api.errors import ApiError
from pidmap.sandbox.api.meta import Obj


def json_response(body: Obj, status: int = 200) -> web.Response:
    return web.Response(status=status, text=json.dumps(body), content_type="application/json")


def truthy(value: str | None) -> bool:
    """The apiserver's rule for boolean query parameters: anything but 0/false (any case) is true."""
    return value is not None and value.lower() not in ("0", "false")


def table_version(request: web.Request) -> str | None:
    """meta.k8s.io version of the Table the client accepts (``None``: plain JSON)."""
    for media_range in request.headers.get("Accept", "").split(","):
        params = dict(part.strip().split("=", 1) for part in media_range.split(";")[1:] if "=" in part)
        if params.get("as") == "Table" and params.get("g") == "meta.k8s.io":
            return params.get("v", "v1")
    return None


async def read_json(request: web.Request, *, metadata_protobuf: bool = False) -> Obj:
    """The request body; protobuf only where metadata is all the sandbox needs (namespaces)."""
    if request.content_type == protobuf.PROTOBUF:
        if metadata_protobuf:
            return protobuf.decode_protobuf_metadata_object(await request.read())
        raise ApiError(
            415,
            "UnsupportedMediaType",
            f"the sandbox API server accepts this object only as JSON, not {protobuf.PROTOBUF}",
            {},
        )
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise errors.bad_request(f"the body of the request was in an unknown format: {err}") from err
    if not isinstance(body, dict):
        raise errors.bad_request("the body of the request must be a JSON object")
    return body


def table(
    request: web.Request, version: str, resource: str, objs: list[Obj], resource_version: str,
    with_columns: bool = True,
) -> Obj:
    """The meta.k8s.io ``Table`` of ``objs`` in the version the client asked for (``table_version``)."""
    body = printers.table(
        resource,
        objs,
        now=meta.now_utc(),
        include_object=request.query.get("includeObject", "Metadata"),
        resource_version=resource_version,
        with_columns=with_columns,
    )
    body["apiVersion"] = f"meta.k8s.io/{version}"
    return body


def respond(request: web.Request, resource: str, obj: Obj, status: int = 200) -> web.Response:
    """One object, as JSON or as the Table the client asks for."""
    version = table_version(request)
    if version is not None:
        resource_version = obj["metadata"].get("resourceVersion", "")
        return json_response(table(request, version, resource, [obj], resource_version), status)
    return json_response(copy.deepcopy(obj), status)
