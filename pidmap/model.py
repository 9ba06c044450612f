"""Records that flow from the sources through correlation to rendering: frozen, typed, SDK-free.

Naming: ``container_pid`` / ``node_pid`` / ``host_pid`` are one process's PID as seen from the pod
container's, the node container's and the Docker host's PID namespace. ``None`` means "cannot be
seen from here" and is rendered as ``-`` (``null`` in JSON).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Literal, TypeVar

ContainerType = Literal["init", "app", "ephemeral"]
ContainerState = Literal["running", "waiting", "terminated", "unknown"]
Via = Literal["auto", "local", "docker", "agent"]
_Key = TypeVar("_Key", int, str)


@dataclass(frozen=True)
class Target:
    """What the user asked for: one pod, optionally one of its containers."""

    namespace: str
    pod: str
    container: str | None = None


@dataclass(frozen=True)
class Options:
    """How to reach the cluster and the node; everything the CLI passes to ``collect_pod``."""

    kubeconfig: str | None = None
    context: str | None = None
    via: Via = "auto"
    exec_timeout: float = 20.0
    request_timeout: float = 10.0
    agent_image: str = "busybox"  # --via agent: the node agent pod's image (needs only sh)
    agent_namespace: str = "default"  # --via agent: where the agent pod is created
    agent_deadline: int = 120  # --via agent: the agent pod's activeDeadlineSeconds


@dataclass(frozen=True)
class Container:
    """One container of the pod spec joined with its status."""

    name: str
    type: ContainerType
    image: str
    container_id: str | None  # bare 64-hex id (runtime prefix stripped), None before it exists
    runtime: str | None  # "containerd", "docker", "cri-o" ...
    state: ContainerState
    reason: str | None = None  # waiting / terminated reason (CrashLoopBackOff, Completed, ...)
    exit_code: int | None = None
    restart_count: int = 0


@dataclass(frozen=True)
class Pod:
    namespace: str
    name: str
    uid: str
    phase: str
    node_name: str | None
    share_process_namespace: bool
    containers: tuple[Container, ...]
    reason: str | None = None
    message: str | None = None

    def container(self, name: str) -> Container | None:
        return next((c for c in self.containers if c.name == name), None)

    def runs(self, container: Container) -> bool:
        """True when ``container`` has processes to map: its state is running and the pod's node
        answers. A Pending pod runs its init containers (that is when people debug it); a pod in
        Unknown phase has states nobody can vouch for, and a finished pod runs nothing."""
        return container.state == "running" and self.phase in ("Running", "Pending") and bool(self.node_name)


# Through the agent: "machine", a node that is a machine of its own (its host is itself);
# "unknown", a node in a PID namespace of its own whose maker no Docker label tells.
Provider = Literal["kind", "minikube", "k3d", "docker", "machine", "unknown"]


@dataclass(frozen=True)
class Node:
    """The Docker container that is the Kubernetes node."""

    name: str
    provider: Provider
    container_id: str
    host_pid: int | None  # the node's init process as the Docker engine reports it (State.Pid)
    running: bool = True


@dataclass(frozen=True)
class RawProcess:
    """One process as a /proc scan sees it, from whichever PID namespace the scan ran in.

    ``nspid`` is the NSpid line: the PID in every namespace from the reader's outwards-in, so
    ``nspid[0]`` is the reader's own view and ``nspid[-1]`` the innermost.
    """

    pid: int
    nspid: tuple[int, ...]
    ppid: int
    uid: int | None
    state: str
    name: str
    cmdline: str
    pid_ns: int | None = None  # inode of /proc/PID/ns/pid; None when unreadable (not root)
    cgroup_id: str | None = None  # innermost 64-hex container id in /proc/PID/cgroup
    pod_uid: str | None = None  # the pod<uid> component of the cgroup path (kubepods layouts)
    start_ticks: int | None = None  # field 22 of /proc/PID/stat, clock ticks since boot

    def pid_at(self, level: int | None) -> int | None:
        """The PID ``level`` namespaces below the reader's; None when the process is not that deep.

        With the node at ``node_level``, the container's own PID is at ``node_level + 1`` — not
        ``nspid[-1]``, which for a process in a PID namespace nested inside the container
        (docker-in-docker, ``unshare -p``) is its PID in that inner namespace.
        """
        if level is None or level >= len(self.nspid):
            return None
        return self.nspid[level]


@dataclass(frozen=True)
class ProcessTable:
    """Processes one reader saw, and the context needed to interpret their PIDs."""

    processes: tuple[RawProcess, ...]
    reader_pid_ns: int | None = None  # PID namespace inode of the reader itself
    own_pids: frozenset[int] = frozenset()  # the reader's own processes (filtered out)
    users: dict[int, str] = field(default_factory=dict)  # uid -> name from the reader's /etc/passwd
    boot_time: float | None = None  # seconds since the epoch, to turn start_ticks into times
    clock_ticks: int = 100
    notes: tuple[str, ...] = ()

    # Indexes built once per table: ``pidmap node`` correlates every container of every pod
    # against the same table, and a pass over all processes per container and purpose adds up.
    @cached_property
    def by_pid(self) -> dict[int, RawProcess]:
        return {proc.pid: proc for proc in self.processes}

    @cached_property
    def by_cgroup(self) -> dict[str, tuple[RawProcess, ...]]:
        return _group(self.processes, lambda proc: proc.cgroup_id)

    @cached_property
    def by_pid_ns(self) -> dict[int, tuple[RawProcess, ...]]:
        return _group(self.processes, lambda proc: proc.pid_ns)

    @cached_property
    def by_pod_uid(self) -> dict[str, tuple[RawProcess, ...]]:
        return _group(self.processes, lambda proc: proc.pod_uid)


def _group(processes: tuple[RawProcess, ...],
           key: Callable[[RawProcess], _Key | None]) -> dict[_Key, tuple[RawProcess, ...]]:
    groups: dict[_Key, list[RawProcess]] = {}
    for proc in processes:
        value = key(proc)
        if value is not None:
            groups.setdefault(value, []).append(proc)
    return {value: tuple(procs) for value, procs in groups.items()}


@dataclass(frozen=True)
class HostView:
    """The outer side of the chain: a process table plus where the node sits in its NSpid lines.

    ``node_level`` is the index into ``RawProcess.nspid`` that holds the node PID (0 when the
    table was read inside the node; 1 when read on the Docker host with the node one level down).
    ``host_level`` is the index of the host PID, or None when the host cannot be seen.
    """

    table: ProcessTable
    via: Literal["local", "docker", "agent"]
    node_level: int | None
    host_level: int | None
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Subject:
    """Everything ``pidmap whois`` reads about the asked-for process."""

    process: RawProcess  # as the host's /proc sees it (pid = host PID)
    cgroup_text: str  # /proc/PID/cgroup, whole
    ns_ancestry: tuple[int, ...] | None  # its PID namespace, then each parent's inode; None: unreadable


@dataclass(frozen=True)
class ProbeResult:
    """What the in-container probe printed (or why it could not run)."""

    table: ProcessTable | None
    error: str | None = None
    no_shell: bool = False


@dataclass(frozen=True)
class Process:
    """One row of the result: the same process at every level."""

    container_pid: int | None
    node_pid: int | None
    host_pid: int | None
    ppid: int | None  # in the container's namespace
    user: str | None
    state: str | None
    command: str
    start_time: str | None = None
    flags: tuple[str, ...] = ()  # "pid1", "gone" (container saw it, host no longer), "new"


@dataclass(frozen=True)
class ContainerMap:
    container: Container
    pid_namespace: int | None
    cgroup_id: str | None
    processes: tuple[Process, ...]
    notes: tuple[str, ...] = ()
    # PID 1's parents up to the node's init, nearest first (on kind: the pod's
    # containerd-shim-runc-v2, then the node's init); empty where the host side cannot see them.
    ancestry: tuple[Process, ...] = ()


@dataclass(frozen=True)
class PodMap:
    pod: Pod
    node: Node | None
    containers: tuple[ContainerMap, ...]
    notes: tuple[str, ...] = ()
    via: str | None = None
    # shareProcessNamespace: the pod sandbox's pause process, PID 1 of the pod's one PID namespace
    # and in no container (None otherwise, or where the host side cannot see it).
    sandbox: Process | None = None
    # The pause process's parents in the node, nearest first (as ``ContainerMap.ancestry``).
    sandbox_ancestry: tuple[Process, ...] = ()

    @property
    def running(self) -> bool:
        """Some container asked for runs: there are processes to map (else exit NOT_RUNNING)."""
        return any(self.pod.runs(cmap.container) for cmap in self.containers)
