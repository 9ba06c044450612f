"""``pods/log``: ``kubectl logs`` (``--previous``, ``--tail``, ``-f``) from the files the kubelet keeps."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from aiohttp import web

from pidmap.sandbox.api import errors, pods
from pidmap.sandbox.api.meta import Obj
from pidmap.sandbox.apiserver.http import truthy
from pidmap.sandbox.contracts import Kubelet


async def serve_log(
    request: web.Request, pod: Obj, kubelet: Kubelet, current: Callable[[], bool]
) -> web.StreamResponse:
    """The container's output as the kubelet recorded it; ``current()``: is ``pod`` still the
    stored object (a follow ends when the pod goes)."""
    name = pod["metadata"]["name"]
    query = request.query
    names = [c["name"] for c in pod["spec"].get("containers") or []]
    container = query.get("container")
    if not container:
        if len(names) != 1:
            raise errors.bad_request(
                f"a container name must be specified for pod {name}, choose one of: [{' '.join(names)}]"
            )
        container = names[0]
    if container not in pods.container_names(pod):
        raise errors.bad_request(f"container {container} is not valid for pod {name}")
    previous = truthy(query.get("previous"))
    path = kubelet.log_path(pod, container, previous)
    if path is None:
        if previous:
            raise errors.bad_request(f'previous terminated container "{container}" in pod "{name}" not found')
        raise errors.bad_request(
            f'container "{container}" in pod "{name}" is waiting to start: {_waiting_reason(pod, container)}'
        )
    data = path.read_bytes()
    tail = query.get("tailLines")
    if tail is not None and tail.isdigit():
        lines = data.splitlines(keepends=True)
        data = b"".join(lines[len(lines) - int(tail) :]) if int(tail) else b""
    if not truthy(query.get("follow")):
        return web.Response(body=data, content_type="text/plain")
    response = web.StreamResponse(headers={"Content-Type": "text/plain"})
    response.enable_chunked_encoding()
    await response.prepare(request)
    offset = path.stat().st_size
    try:
        await response.write(data)
        # Follow while this run of the container is the current one and still running.
        while current() and kubelet.log_path(pod, container, False) == path:
            size = path.stat().st_size
            if size > offset:
                with path.open("rb") as handle:
                    handle.seek(offset)
                    await response.write(handle.read(size - offset))
                offset = size
            elif not _running(pod, container):
                break
            await asyncio.sleep(0.2)
        await response.write_eof()
    except (ConnectionError, FileNotFoundError):
        pass
    return response


def _statuses(pod: Obj) -> list[Obj]:
    status = pod.get("status") or {}
    return [*(status.get("initContainerStatuses") or []), *(status.get("containerStatuses") or [])]


def _running(pod: Obj, container: str) -> bool:
    return any(s.get("name") == container and "running" in (s.get("state") or {}) for s in _statuses(pod))


def _waiting_reason(pod: Obj, container: str) -> str:
    for entry in _statuses(pod):
        if entry.get("name") == container:
            return str(((entry.get("state") or {}).get("waiting") or {}).get("reason") or "ContainerCreating")
    return "ContainerCreating"
