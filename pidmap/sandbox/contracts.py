"""The seam between the stand-in API server (apiserver.py) and the kubelet stand-in (kubelet.py).

Both live in one background process (``python -m pidmap.sandbox.apiserver --state-dir DIR``), on one
asyncio loop. The API server owns the pod objects (dicts shaped exactly like Kubernetes' JSON): it
validates, defaults and schedules them (sets ``spec.nodeName``), stores them, and hands them to the
runtime. The runtime owns everything real: processes, namespaces, cgroups. It advances the pod's
``status`` in place and calls ``on_change`` after every change so the store is saved.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

Pod = dict[str, Any]


class ContainerNotFound(Exception):
    """The pod has no container of that name (API: 400 BadRequest)."""


class ContainerNotRunning(Exception):
    """The container exists but is not running (API: 400 BadRequest, or a v5 channel-3 Failure)."""


class Runtime(Protocol):
    async def start_pod(self, pod: Pod, on_change: Callable[[], None]) -> None:
        """Start driving ``pod`` (already scheduled) through its lifecycle; return at once.

        Runs init containers in order to completion, then the app containers, restarts per
        ``spec.restartPolicy``, and keeps ``pod["status"]`` (phase, conditions, hostIP, podIP,
        startTime, initContainerStatuses, containerStatuses) true to Kubernetes' rules.
        """

    async def delete_pod(self, pod: Pod) -> None:
        """Kill every process of the pod, remove its cgroups; return when they are gone."""

    def exec_argv(self, pod: Pod, container: str, command: list[str]) -> list[str]:
        """argv to run *on the host, as root* that runs ``command`` inside the container.

        The process must land in the container's PID, mount, UTS, IPC and network namespaces and
        in its cgroup, as ``kubectl exec`` does on a real node. ``command`` is passed as argv
        only, never through a shell. Raises ContainerNotFound / ContainerNotRunning.
        """

    def node_ready(self, node: str) -> bool:
        """True while the node's Docker container is running."""

    async def close(self) -> None:
        """Stop background tasks (not the pods: they live on in their node containers)."""
