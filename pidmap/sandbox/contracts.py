"""The seam between the API server room (pidmap.sandbox.apiserver) and the kubelet room
(pidmap.sandbox.kubelet), and the typed errors that cross it.

Both live in one background process (``python -m pidmap.sandbox.apiserver --state-dir DIR``), on one
asyncio loop. The API server owns the pod objects (dicts shaped exactly like Kubernetes' JSON): it
validates, defaults and schedules them (sets ``spec.nodeName``), stores them, and hands them to the
kubelet. The kubelet owns everything real: containers, namespaces, cgroups. It advances the pod's
``status`` in place and calls ``on_change`` after every change so the store is saved.

Nothing the runtime prints reaches the server as text to parse: a container that does not exist or
does not run, or a command the runtime cannot start, crosses as one of the exceptions below.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol

Pod = dict[str, Any]

# The channels of an exec's output (Kubernetes' remotecommand numbering).
STDOUT, STDERR = 1, 2
Send = Callable[[int, bytes], Awaitable[None]]


class ContainerNotFound(Exception):
    """The pod has no container of that name (API: 400 BadRequest)."""


class ContainerNotRunning(Exception):
    """The container exists but is not running (API: 400 BadRequest, or a v5 channel-3 Failure)."""


class ExecFailed(Exception):
    """The runtime could not start the exec'd command (runc's ``OCI runtime exec failed: ...``);
    ``str(err)`` is the message kubelet reports (API: a channel-3 500 InternalError Failure)."""


class ExecProcess(Protocol):
    """One ``kubectl exec``: a command started in a running container, its stdio streamed.

    ``Kubelet.attach`` hands out the same shape for ``kubectl attach`` / ``kubectl debug -i``: a
    connection to the stdio of the container's PID 1 (see its docstring for what differs)."""

    async def start(self, *, stdin: bool, tty: bool) -> None:
        """Start the command (with a terminal: stderr comes merged into stdout)."""

    async def output(self, send: Send) -> None:
        """Hand each chunk of the command's stdout (STDOUT) and stderr (STDERR) to ``send`` until both end."""

    async def write(self, data: bytes) -> None:
        """Feed the command's stdin (started with ``stdin=True``)."""

    def close_stdin(self) -> None:
        """End of input (v5's close frame)."""

    async def wait(self) -> int:
        """The command's exit code; ExecFailed when the runtime could not start it."""

    async def kill(self) -> None:
        """Stop the command inside the container (its client went away), and its launcher."""

    async def close(self) -> None:
        """Release what is left: the launcher, if it still runs."""


class Kubelet(Protocol):
    async def start_pod(self, pod: Pod, on_change: Callable[[], None]) -> None:
        """Start driving ``pod`` (already scheduled) through its lifecycle; return at once.

        Runs init containers in order to completion, then the app containers, restarts per
        ``spec.restartPolicy``, and keeps ``pod["status"]`` (phase, conditions, hostIP, podIP,
        startTime, initContainerStatuses, containerStatuses) true to Kubernetes' rules.
        """

    async def delete_pod(self, pod: Pod) -> None:
        """Kill every process of the pod, remove its cgroups; return when they are gone."""

    async def add_ephemeral(self, pod: Pod, container: dict[str, Any]) -> None:
        """``kubectl debug``: run one more container in the pod (in its target's PID namespace)."""

    def exec(self, pod: Pod, container: str, command: list[str]) -> ExecProcess:
        """``kubectl exec``: ``command`` (argv only, never through a shell), not started yet.

        The process lands in the container's PID, mount, UTS, IPC and network namespaces and in its
        cgroup, as on a real node. Raises ContainerNotFound / ContainerNotRunning.
        """

    def attach(self, pod: Pod, container: str) -> ExecProcess:
        """``kubectl attach`` / ``kubectl debug -i``: a connection to the stdio of the container's
        PID 1 (started with ``stdin: true`` for its stdin to be reachable), not made yet.

        Unlike an exec: ``output`` ends, and ``wait`` returns, when the container exits (its code is
        the container's, or nonzero when the attach itself failed: ExecFailed with the runtime's
        reason); ``kill`` detaches (the container runs on); ``close_stdin`` ends this client's input
        only, never the container's stdin. Raises ContainerNotFound / ContainerNotRunning.
        """

    def log_path(self, pod: Pod, container: str, previous: bool = False) -> Path | None:
        """The log file of the container's current (or previous) run; None: it has none."""

    def node_ready(self, node: str) -> bool:
        """True while the node's Docker container is running."""

    async def close(self) -> None:
        """Stop background tasks (not the pods: they live on in their node containers)."""
