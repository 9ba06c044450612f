"""``pods/exec``: the WebSocket stream (v5.channel.k8s.io, v4.channel.k8s.io) between kubectl and a
command the kubelet starts in a container.

``serve_exec`` checks the request and opens the socket; ``run_exec`` streams one started command
(an ``ExecProcess``) both ways and ends with its Status on channel 3 (attach.py streams an attach
with it too). Neither reads the runtime's
text: a command the runtime cannot start arrives as ExecFailed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import WSMsgType, web

from pidmap.sandbox.api import errors, pods
from pidmap.sandbox.api.meta import Obj
from pidmap.sandbox.apiserver.http import truthy
from pidmap.sandbox.contracts import (
    STDERR,
    STDOUT,
    ContainerNotFound,
    ContainerNotRunning,
    ExecFailed,
    ExecProcess,
    Kubelet,
)

log = logging.getLogger("pidmap.sandbox.apiserver")

STDIN, ERROR, RESIZE, CLOSE = 0, 3, 4, 255
PROTOCOLS = ("v5.channel.k8s.io", "v4.channel.k8s.io")


def offered_protocol(request: web.Request) -> str | None:
    """The newest channel protocol both sides speak (None: the client offers none of ours)."""
    offered = [p.strip() for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",") if p.strip()]
    return next((p for p in PROTOCOLS if p in offered), None)


@dataclass(frozen=True)
class StreamOptions:
    """What an exec or attach request asks for: the container, its streams and the channel protocol."""

    container: str
    stdin: bool
    stdout: bool
    stderr: bool
    tty: bool
    protocol: str


def stream_options(request: web.Request, pod: Obj, action: str, *,
                   command: list[str] | None = None) -> StreamOptions:
    """The checks kubelet makes of an exec (``action`` "exec into", with its ``command``) or an
    attach ("attach to"), in its order and words; a failed one is a 400 BadRequest."""
    name = pod["metadata"]["name"]
    query = request.query
    stdin, stdout = truthy(query.get("stdin")), truthy(query.get("stdout"))
    stderr, tty = truthy(query.get("stderr")), truthy(query.get("tty"))
    if not (stdin or stdout or stderr):
        raise errors.bad_request("you must specify at least 1 of stdin, stdout, stderr")
    if command is not None and not command:
        raise errors.bad_request("you must specify at least one command for the container")
    container = query.get("container") or pods.default_container(pod)
    if container is None or container not in pods.container_names(pod):
        raise errors.bad_request(f"container {container} is not valid for pod {name}")
    phase = pod["status"].get("phase")
    if phase in ("Succeeded", "Failed"):
        raise errors.bad_request(f"cannot {action} a container in a completed pod; current phase is {phase}")
    protocol = offered_protocol(request)
    if protocol is None:
        verb = action.split()[0]
        raise errors.bad_request(
            f"the sandbox supports {verb} only over WebSocket with subprotocol "
            "v5.channel.k8s.io or v4.channel.k8s.io"
        )
    return StreamOptions(container, stdin, stdout, stderr, tty, protocol)


async def serve_exec(
    request: web.Request, pod: Obj, kubelet: Kubelet, sockets: set[web.WebSocketResponse]
) -> web.StreamResponse:
    """``kubectl exec`` into ``pod`` (found and authorized by the caller)."""
    name = pod["metadata"]["name"]
    command = request.query.getall("command", [])
    options = stream_options(request, pod, "exec into", command=command)
    container, protocol = options.container, options.protocol
    not_running: str | None = None
    process: ExecProcess | None = None
    try:
        process = kubelet.exec(pod, container, list(command))
    except ContainerNotFound as err:
        raise errors.bad_request(f"container {container} is not valid for pod {name}") from err
    except ContainerNotRunning:
        not_running = f'container not found ("{container}")'
        if protocol != "v5.channel.k8s.io":
            raise errors.bad_request(not_running) from None
    socket = web.WebSocketResponse(protocols=(protocol,), autoping=True)
    await socket.prepare(request)
    sockets.add(socket)
    try:
        if process is None:
            assert not_running is not None
            await send_status(socket, internal_error(not_running))
        else:
            await run_exec(socket, process, protocol, stdin=options.stdin, stdout=options.stdout,
                           stderr=options.stderr, tty=options.tty, command=command)
        await socket.close()
    finally:
        sockets.discard(socket)
    log.info("exec %s/%s[%s] %s done", pod["metadata"]["namespace"], name, container, command[:1])
    return socket


async def send_status(socket: web.WebSocketResponse, status: Obj) -> None:
    with contextlib.suppress(ConnectionError, RuntimeError):
        await socket.send_bytes(bytes([ERROR]) + json.dumps(status).encode())


def internal_error(message: str) -> Obj:
    return errors.status_failure(500, "InternalError", message, {"causes": [{"message": message}]})


def exit_status(code: int, command: list[str] | None = None) -> Obj:
    """The Status that ends an exec whose command ran: Success, or its exit code as kubelet words it."""
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


async def run_exec(
    socket: web.WebSocketResponse,
    process: ExecProcess,
    protocol: str,
    *,
    stdin: bool,
    stdout: bool,
    stderr: bool,
    tty: bool,
    command: list[str],
    status_of: Callable[[int], Obj] | None = None,
) -> None:
    """Stream ``process`` (not started yet) over ``socket`` until it ends, then its Status:
    ``status_of(exit code)``, by default ``exit_status`` (an attach ends with Success whatever the code)."""
    await process.start(stdin=stdin, tty=tty)
    wanted = {STDOUT: stdout, STDERR: stderr}

    async def send(channel: int, chunk: bytes) -> None:
        if wanted.get(channel):
            await socket.send_bytes(bytes([channel]) + chunk)

    async def read_client() -> None:
        async for message in socket:
            if message.type != WSMsgType.BINARY or not message.data:
                continue
            data: bytes = message.data
            channel, payload = data[0], data[1:]
            if channel == STDIN and stdin and payload:
                await process.write(payload)
            elif channel == CLOSE and protocol.startswith("v5") and payload[:1] == bytes([STDIN]) and stdin:
                process.close_stdin()

    pumps: asyncio.Future[Any] = asyncio.ensure_future(process.output(send))
    reader: asyncio.Future[Any] = asyncio.ensure_future(read_client())
    try:
        done, _ = await asyncio.wait({pumps, reader}, return_when=asyncio.FIRST_COMPLETED)
        if reader in done and pumps not in done:
            # The client went away (or closed) before the command ended: the command must not outlive it.
            if socket.closed:
                await process.kill()
            await pumps
        try:
            code = await process.wait()
            status = exit_status(code, command) if status_of is None else status_of(code)
        except ExecFailed as failed:
            status = internal_error(str(failed)) | {"metadata": {}}
        await send_status(socket, status)
    except (ConnectionError, RuntimeError):
        await process.kill()
        await process.close()
    finally:
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader
        await process.close()
