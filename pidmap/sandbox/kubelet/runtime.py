"""The CRI-shaped seam between the pod worker (what kubelet decides) and a container runtime (what
containerd does), one runtime per node: its whole surface is below.

* ``run_pod_sandbox``: the pod's pause container, owning its network, IPC and UTS namespaces;
* ``start``: create and start one container in that sandbox (the image "pulled" first);
* ``wait`` / ``status``: a container's exit code, and which containers run;
* ``exec``: a command in a running container;
* ``attach``: the stdio of a running container's PID 1 (a container started with ``stdin``);
* ``stop_pod_sandbox`` / ``remove_pod_sandbox`` / ``remove_container``: stop and clean up;
* ``logs``: where a container's output was written.

Failures cross as the exceptions below, never as the runtime's text.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from pidmap.sandbox.cluster.catalog import PodImage
from pidmap.sandbox.contracts import ExecProcess


class NodeLost(Exception):
    """The pod's node container is not running, or its runtime does not answer in time."""


class ImageUnavailable(Exception):
    """The image cannot be had on this node (kubelet: ErrImagePull)."""


class StartFailed(Exception):
    """The container was created but its process could not start (kubelet: StartError, exit 128);
    ``str(err)`` is the runtime's reason as kubelet reports it."""


@dataclass(frozen=True)
class PodSandboxConfig:
    uid: str
    name: str
    namespace: str
    cgroup_parent: str  # the pod's cgroup below the node's (kubelet names it)
    host_pid: bool = False
    share_process_namespace: bool = False

    @property
    def log_directory(self) -> str:
        """The pod's directory under /var/log/pods, as kubelet names it."""
        return f"{self.namespace}_{self.name}_{self.uid}"


@dataclass(frozen=True)
class ContainerConfig:
    name: str
    reference: str  # the image as Kubernetes reports it (docker.io/library/busybox:1.36)
    image: PodImage  # the local image that stands for it
    argv: tuple[str, ...]
    working_dir: str
    attempt: int  # the restart count: names the log file
    env: tuple[tuple[str, str], ...] = ()
    mounts: tuple[tuple[str, str], ...] = ()  # (node path, container path)
    privileged: bool = False
    cap_add: tuple[str, ...] = ()
    cap_drop: tuple[str, ...] = ()
    target_container_id: str = ""  # an ephemeral container: join this container's PID namespace
    stdin: bool = False  # ``stdin: true``: its stdio kept open for ``attach`` (CRI's stdin), not a log file


@dataclass(frozen=True)
class Started:
    container_id: str
    image_id: str  # repository@digest, as containerStatuses[].imageID shows it


class Runtime(Protocol):
    async def run_pod_sandbox(self, pod: PodSandboxConfig, current: str = "") -> str:
        """The id of the pod's running sandbox: ``current`` (or one found by the pod's uid) if it
        still runs, else a new one."""

    async def start(self, sandbox_id: str, pod: PodSandboxConfig, container: ContainerConfig) -> Started:
        """Create and start the container; returns once it runs. ImageUnavailable, StartFailed."""

    async def wait(self, container_id: str) -> int:
        """The container's exit code (255: lost with its node's runtime)."""

    async def status(self, *container_ids: str) -> set[str]:
        """Which of these containers run."""

    def exec(self, container_id: str, command: list[str]) -> ExecProcess:
        """``command`` in the running container, not started yet."""

    def attach(self, container_id: str) -> ExecProcess:
        """A connection to the running container's stdio (CRI Attach), not made yet: ends when the
        container exits; ``kill`` detaches, the container runs on."""

    async def stop_pod_sandbox(self, pod: PodSandboxConfig, keep: Collection[str] = ()) -> None:
        """SIGTERM every container of the pod, a grace period, SIGKILL; remove them but ``keep``."""

    async def remove_pod_sandbox(self, pod: PodSandboxConfig) -> None:
        """What is left of a stopped pod on the node: its volumes and cgroups."""

    async def remove_container(self, container_id: str) -> None:
        """Remove a stopped container."""

    def logs(self, log_directory: str, container: str, attempt: int) -> Path | None:
        """The file that holds the output of the container's run number ``attempt``, if any."""
