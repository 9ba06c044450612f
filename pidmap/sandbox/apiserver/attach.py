"""``pods/attach``: ``kubectl attach``, ``kubectl debug -i`` (and ``kubectl run -i``) on the sandbox.

On a real node, kubelet asks the runtime (CRI ``Attach``) to connect the client to the stdin, stdout
and stderr of a container's PID 1, which the container was started with (``stdin: true`` in its
spec; ``kubectl debug -i`` sets it on the ephemeral container it adds). Here the kubelet hands out
that connection as an ``ExecProcess`` (``Kubelet.attach`` in contracts.py; containerd's side is
``CtrAttach`` in kubelet/ctr.py), and this module streams it with exec's channel protocol
(``run_exec`` in exec_stream.py: ``v5.channel.k8s.io`` / ``v4.channel.k8s.io``, 0 stdin, 1 stdout,
2 stderr, 3 status, 255 close). What differs from exec, as on a real cluster:

* the container's exit ends the attach with a Success status whatever its exit code (kubelet
  reports no exit code for attach); an attach the runtime could not make ends with its reason;
* the client going away detaches: the container runs on;
* the client's end of stdin (v5 close frame) ends this client's input, not the container's stdin.
"""

from __future__ import annotations

import logging

from aiohttp import web

from pidmap.sandbox.api import errors, pods
from pidmap.sandbox.api.meta import Obj
from pidmap.sandbox.apiserver.exec_stream import run_exec, stream_options
from pidmap.sandbox.contracts import ContainerNotFound, ContainerNotRunning, ExecProcess, Kubelet

log = logging.getLogger("pidmap.sandbox.apiserver")

SUCCESS: Obj = {"metadata": {}, "status": "Success"}


def attach_status(_code: int) -> Obj:
    """How an attach whose container exited ends: Success, whatever the container's exit code."""
    return SUCCESS


async def serve_attach(
    request: web.Request, pod: Obj, kubelet: Kubelet, sockets: set[web.WebSocketResponse]
) -> web.StreamResponse:
    """``GET``/``POST .../pods/NAME/attach?container=C&stdin=true&stdout=true...`` on ``pod`` (found
    and authorized by the caller)."""
    name = pod["metadata"]["name"]
    options = stream_options(request, pod, "attach to")
    container, protocol = options.container, options.protocol
    try:
        process: ExecProcess = kubelet.attach(pod, container)
    except ContainerNotFound as err:
        raise errors.bad_request(f"container {container} is not valid for pod {name}") from err
    except ContainerNotRunning:
        raise errors.bad_request(f'container not found ("{container}")') from None
    # A container started without stdin has none to attach to (kubectl itself drops stdin then).
    stdin = options.stdin and bool((pods.container_spec(pod, container) or {}).get("stdin"))
    socket = web.WebSocketResponse(protocols=(protocol,), autoping=True)
    await socket.prepare(request)
    sockets.add(socket)
    try:
        await run_exec(socket, process, protocol, stdin=stdin, stdout=options.stdout, stderr=options.stderr,
                       tty=options.tty, command=[], status_of=attach_status)
        await socket.close()
    finally:
        sockets.discard(socket)
    log.info("attach %s/%s[%s] done", pod["metadata"]["namespace"], name, container)
    return socket
