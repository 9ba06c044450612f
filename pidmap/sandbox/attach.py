"""``pods/attach``: ``kubectl attach`` and ``kubectl debug -i`` (and ``kubectl run -i``) on the sandbox.

On a real node, kubelet asks the runtime (CRI ``Attach``) to connect the client to the stdin, stdout
and stderr of a container's PID 1, which the container was started with (``stdin: true`` in its
spec; ``kubectl debug -i`` sets it on the ephemeral container it adds). containerd keeps them as
FIFOs that its shim holds open, so a client can come and go.

The sandbox does the same with containerd's own tools in the node:

* a container whose spec has ``stdin: true`` is started (``ctr run -d``) with FIFO stdio instead of
  a log file (``stdio_args``): the shim keeps the FIFOs, and a write end of stdin, open for the
  container's life, so the container's stdin stays open after ``ctr run`` returns, as with CRI;
* attaching is ``ctr -n k8s.io tasks attach ID`` run with ``docker exec -i NODE`` (``attach_argv``),
  which opens those FIFOs and waits for the task; the API server streams it over WebSocket with
  the exec channel protocol (``v5.channel.k8s.io`` / ``v4.channel.k8s.io``: 0 stdin, 1 stdout,
  2 stderr, 3 status, 255 close).

What differs from kind: the container's output goes to the FIFOs, not to its log file, so
``kubectl logs`` shows nothing for such a container, and output written while no client is attached
waits in the FIFO (64 KiB) for the next one. ``tty: true`` is not honoured: ``ctr run -t`` needs
a terminal on ``ctr``'s own stdin, which the kubelet stand-in does not have; a ``kubectl debug -it``
shell runs without a terminal (no prompt, no line editing, commands and their output as with ``-i``).
Ending the attach (the client goes away) leaves the container running, as on a real cluster; the
container's exit ends the attach, with a Success status whatever its exit code (kubelet reports no
exit code for attach).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
from typing import Any, Protocol

from aiohttp import WSMsgType, web

from pidmap.sandbox import objects
from pidmap.sandbox.contracts import ContainerNotFound, ContainerNotRunning
from pidmap.sandbox.objects import Obj

log = logging.getLogger("pidmap.sandbox.attach")

STDIN, STDOUT, STDERR, ERROR, RESIZE, CLOSE = 0, 1, 2, 3, 4, 255
PROTOCOLS = ("v5.channel.k8s.io", "v4.channel.k8s.io")


def stdio_args(container: dict[str, Any], log_file: str) -> list[str]:
    """``ctr run`` arguments for the container's stdio: FIFOs for a container that can be attached
    to (``stdin: true``), else its log file, as kubelet's CRI logger writes it."""
    if container.get("stdin"):
        return []  # ctr run -d without --log-uri: FIFOs under /run/containerd/fifo, kept by the shim
    return ["--log-uri", f"file://{log_file}"]


def attach_argv(exec_argv: list[str]) -> list[str]:
    """``ctr tasks attach`` for the container that ``exec_argv`` (``docker exec -i NODE ctr -n k8s.io
    tasks exec --exec-id ID CONTAINER``, the runtime's ``exec_argv`` with no command) would exec into.

    Started by a node shell that first prints its PID (then replaced by ``ctr``): a client that goes
    away must take its ``ctr`` with it, which killing ``docker exec`` does not, or the next attach
    would share the container's output with a forgotten reader."""
    ctr, tasks = exec_argv.index("ctr"), exec_argv.index("tasks")
    container_id = exec_argv[exec_argv.index("--exec-id") + 2]
    return [*exec_argv[:ctr], "sh", "-c", 'echo "$$" && exec "$@"', "sh", *exec_argv[ctr:tasks],
            "tasks", "attach", container_id]


def _kill_argv(argv: list[str], node_pid: int) -> list[str]:
    """``docker exec NODE kill -KILL PID`` for the attach ``argv`` started as node PID ``node_pid``."""
    node = argv[argv.index("sh") - 1]
    return [argv[0], "exec", node, "kill", "-KILL", str(node_pid)]


class AttachServer(Protocol):
    """What the attach handler needs of the API server (pidmap.sandbox.apiserver.ApiServer)."""

    runtime: Any
    sockets: set[web.WebSocketResponse]

    def _namespace(self, name: str) -> Obj: ...

    def _pod(self, namespace: str, name: str) -> Obj: ...

    def _authorize(self, verb: str, resource: str, name: str, namespace: str) -> None: ...


def _truthy(value: str | None) -> bool:
    return (value or "").lower() in ("1", "true", "yes")


def _spec_of(pod: Obj, container: str) -> dict[str, Any]:
    spec = pod["spec"]
    for key in ("containers", "initContainers", "ephemeralContainers"):
        for entry in spec.get(key) or []:
            if entry.get("name") == container:
                found: dict[str, Any] = entry
                return found
    return {}


async def attach_pod(server: AttachServer, request: web.Request) -> web.StreamResponse:
    """``GET``/``POST /api/v1/namespaces/NS/pods/NAME/attach?container=C&stdin=true&stdout=true...``"""
    namespace, name = request.match_info["namespace"], request.match_info["name"]
    query = request.query
    server._namespace(namespace)
    pod = server._pod(namespace, name)
    server._authorize("create", "pods/attach", name, namespace)
    stdin, stdout = _truthy(query.get("stdin")), _truthy(query.get("stdout"))
    stderr, tty = _truthy(query.get("stderr")), _truthy(query.get("tty"))
    if not (stdin or stdout or stderr):
        raise objects.bad_request("you must specify at least 1 of stdin, stdout, stderr")
    container = query.get("container") or objects.default_container(pod)
    if container is None or container not in objects.container_names(pod):
        raise objects.bad_request(f"container {container} is not valid for pod {name}")
    phase = pod["status"].get("phase")
    if phase in ("Succeeded", "Failed"):
        raise objects.bad_request(
            f"cannot attach to a container in a completed pod; current phase is {phase}")
    offered = [p.strip() for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",") if p.strip()]
    protocol = next((p for p in PROTOCOLS if p in offered), None)
    if protocol is None:
        raise objects.bad_request("the sandbox supports attach only over WebSocket with subprotocol "
                                  "v5.channel.k8s.io or v4.channel.k8s.io")
    runtime_attach = getattr(server.runtime, "attach_argv", None)
    if runtime_attach is None:
        raise objects.bad_request("the sandbox's runtime cannot attach to containers")
    try:
        argv: list[str] = runtime_attach(pod, container)
    except ContainerNotFound as err:
        raise objects.bad_request(f"container {container} is not valid for pod {name}") from err
    except ContainerNotRunning:
        raise objects.bad_request(f'container not found ("{container}")') from None
    # A container started without stdin has none to attach to (kubectl itself drops stdin then).
    stdin = stdin and bool(_spec_of(pod, container).get("stdin"))
    socket = web.WebSocketResponse(protocols=(protocol,), autoping=True)
    await socket.prepare(request)
    server.sockets.add(socket)
    try:
        await stream(socket, argv, protocol, stdin=stdin, stdout=stdout, stderr=stderr, tty=tty)
        await socket.close()
    finally:
        server.sockets.discard(socket)
    log.info("attach %s/%s[%s] done", namespace, name, container)
    return socket


async def _send(socket: web.WebSocketResponse, channel: int, data: bytes) -> None:
    with contextlib.suppress(ConnectionError, RuntimeError):
        await socket.send_bytes(bytes([channel]) + data)


async def stream(socket: web.WebSocketResponse, argv: list[str], protocol: str, *, stdin: bool,
                 stdout: bool, stderr: bool, tty: bool) -> None:
    """Run ``ctr tasks attach`` and join it to the client until the container exits or the client
    goes away (then only the attach ends: the container runs on)."""
    process = await asyncio.create_subprocess_exec(
        *argv, stdin=asyncio.subprocess.PIPE if stdin else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, start_new_session=True)
    # With a terminal the client opens no stderr stream: the container's stderr comes on stdout.
    err_channel = STDOUT if tty and not stderr else STDERR
    assert process.stdout is not None
    first = await process.stdout.readline()
    node_pid = int(first) if first.strip().isdigit() else None

    async def detach() -> None:
        if node_pid is not None:
            killer = await asyncio.create_subprocess_exec(
                *_kill_argv(argv, node_pid), stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(killer.wait(), 10)
        _kill_group(process.pid)
    tail = bytearray()  # the end of the stderr: ctr's own error, if attaching failed

    async def pump(reader: asyncio.StreamReader | None, channel: int, wanted: bool) -> None:
        if reader is None:
            return
        while chunk := await reader.read(65536):
            if reader is process.stderr:
                tail.extend(chunk)
                del tail[:-4096]
            if wanted:
                await _send(socket, channel, chunk)

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
            elif (channel == CLOSE and protocol.startswith("v5") and payload[:1] == bytes([STDIN])
                  and process.stdin is not None):
                # The client's stdin ended; the container's stays open (the shim holds it), as
                # with CRI for a container without stdinOnce.
                process.stdin.close()

    pumps: asyncio.Future[Any] = asyncio.gather(
        pump(process.stdout, STDOUT, stdout),
        pump(process.stderr, err_channel, stderr if err_channel == STDERR else stdout))
    reader: asyncio.Future[Any] = asyncio.ensure_future(read_client())
    try:
        done, _ = await asyncio.wait({pumps, reader}, return_when=asyncio.FIRST_COMPLETED)
        if reader in done and pumps not in done and socket.closed:
            await detach()  # the client went away: detach, the container runs on
        await pumps
        code = await process.wait()
        last = bytes(tail).decode(errors="replace").strip().splitlines()[-1:] or [""]
        if code != 0 and last[0].startswith("ctr: "):
            message = last[0].removeprefix("ctr: ")
            status = objects.status_failure(500, "InternalError", message, {"causes": [{"message": message}]})
        else:
            status = {"metadata": {}, "status": "Success"}
        await _send(socket, ERROR, json.dumps(status).encode())
    except (ConnectionError, RuntimeError):
        await detach()
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
