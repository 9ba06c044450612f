"""The kubelet stand-in: real pod containers as nested namespaces inside the node containers.

Every process is started from the host, moved into its cgroup by a fixed shell text *before* it
enters the node (so all its descendants stay there), then enters the node's namespaces with the
host's util-linux ``nsenter`` and makes its own with the node's busybox ``unshare``::

    sh -c WRAPPER pidmap-cgroup <cgroup.procs ...> -- nsenter --target NODE_PID ... -- /bin/unshare ...

A pod is a pause process (own UTS, IPC, network, PID and mount namespaces; hostname = pod name,
``lo`` up) plus one process tree per container that joins pause's UTS, IPC and network namespaces
and gets a PID + mount namespace of its own, or pause's with ``shareProcessNamespace: true``.
emptyDir volumes are node directories bind-mounted into each container's mount namespace.

Decisions where a real cluster leaves room: the first restart after a crash is immediate, later
ones back off 1 s, 2 s, 4 s ... up to 10 s (CrashLoopBackOff); a pod whose node container stops
becomes ``Unknown`` (reason NodeLost) and stays so, as on a real cluster until the node controller
evicts it: delete it and create it again once the node is back. When the API server restarts,
pods that were still running are started afresh (new container IDs): their old processes are
killed first.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import secrets
import shutil
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pidmap.sandbox import cgroups, objects
from pidmap.sandbox.contracts import ContainerNotFound, ContainerNotRunning, Pod
from pidmap.sandbox.layout import ClusterSpec, NodeSpec, StatePaths

log = logging.getLogger("pidmap.sandbox.kubelet")

PROC = Path("/proc")
# Moves the shell into each cgroup.procs given before `--`, then execs the rest: the process and
# every descendant are in the container's cgroups before anything of the container runs.
CGROUP_WRAPPER = 'while [ "$1" != -- ]; do echo $$ > "$1" || exit 99; shift; done; shift; exec "$@"'
# Runs inside the container's fresh mount namespace: bind-mount volumes (pairs SRC DST), cd to the
# working directory, exec the command. Only argv carries user text.
CONTAINER_SETUP = ('while [ "$1" != -- ]; do mkdir -p "$1" "$2" && mount --bind "$1" "$2" || exit 126; '
                   'shift 2; done; shift; cd "$1" || exit 126; shift; exec "$@"')
# exec: open every cgroup.procs on the host as fds 3, 4, ... (busybox sh: dash allows only fds 0-9),
# enter the container, and there have the process move itself ("0" = the writer) before it execs.
# So the exec'd process and its children are in the container's cgroup, and the host-side nsenter is
# not (as with runc exec, whose shim stays outside).
EXEC_OPEN_CGROUPS = ('i=3; while [ "$1" != -- ]; do eval "exec $i>\\"\\$1\\"" || exit 99; i=$((i+1)); '
                     'shift; done; shift; exec "$@"')
EXEC_JOIN_CGROUPS = ('i=3; while [ "$i" -lt "$1" ]; do echo 0 >&$i || exit 99; eval "exec $i>&-"; '
                     'i=$((i+1)); done; shift; exec "$@"')
PAUSE_SETUP = 'hostname "$1" && ip link set lo up && exec /pause'
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
NODE_POLL_SECONDS = 1.0
BACKOFF_MAX_SECONDS = 10.0
GRACE_SECONDS = 2.0
IMAGE_UNAVAILABLE = "the sandbox runs only busybox and luksa/kubia (offline)"


class NodeLost(Exception):
    """The pod's node container is not running."""


@dataclass(frozen=True)
class Image:
    reference: str  # as Kubernetes reports it: docker.io/library/busybox:1.36
    image_id: str
    entrypoint: tuple[str, ...]
    cmd: tuple[str, ...]


def normalize_image(image: str) -> tuple[str, str]:
    """``busybox:1.36`` -> (``library/busybox``, ``docker.io/library/busybox:1.36``)."""
    name, digest = [*image.split("@", 1), ""][:2]
    tag = ""
    if ":" in name.rsplit("/", 1)[-1]:
        name, tag = name.rsplit(":", 1)
    first = name.split("/", 1)[0]
    registry = "docker.io"
    if "/" in name and ("." in first or ":" in first or first == "localhost"):
        registry, name = name.split("/", 1)
    if registry == "docker.io" and "/" not in name:
        name = f"library/{name}"
    suffix = f"@{digest}" if digest else f":{tag or 'latest'}"
    return (name if registry == "docker.io" else f"{registry}/{name}"), f"{registry}/{name}{suffix}"


def resolve_image(image: str, has_node: bool) -> Image | None:
    """The sandbox's stand-in for pulling ``image``; None when it cannot run here."""
    repository, reference = normalize_image(image)
    digest = hashlib.sha256(reference.encode()).hexdigest()
    image_id = f"{reference.split('@')[0].rsplit(':', 1)[0]}@sha256:{digest}"
    if repository == "library/busybox":
        return Image(reference, image_id, (), ("sh",))
    if repository == "luksa/kubia" and has_node:
        return Image(reference, image_id, ("node", "app.js"), ())
    return None


def container_argv(container: dict[str, Any], image: Image) -> list[str]:
    """Kubernetes' rule: command replaces the entrypoint, args replace the image's cmd."""
    command = container.get("command")
    args = container.get("args")
    if command:
        return [*command, *(args or [])]
    return [*image.entrypoint, *(args if args is not None else image.cmd)]


def pod_phase(pod: Pod) -> str:
    """Kubernetes' getPhase (pkg/kubelet/kubelet_pods.go), for what the sandbox tracks."""
    spec = pod.get("spec", {})
    status = pod.get("status", {})
    policy = spec.get("restartPolicy", "Always")
    init_statuses = status.get("initContainerStatuses") or []
    for init in init_statuses:
        terminated = init.get("state", {}).get("terminated")
        if policy == "Never" and terminated and terminated.get("exitCode") != 0:
            return "Failed"
        if not (terminated and terminated.get("exitCode") == 0):
            return "Pending"
    running = waiting = stopped = succeeded = 0
    for container in status.get("containerStatuses") or []:
        state = container.get("state", {})
        if "running" in state:
            running += 1
        elif "terminated" in state:
            stopped += 1
            if state["terminated"].get("exitCode") == 0:
                succeeded += 1
        elif container.get("lastState", {}).get("terminated"):
            stopped += 1
        else:
            waiting += 1
    if waiting > 0:
        return "Pending"
    if running > 0:
        return "Running"
    if stopped > 0:
        if policy == "Always":
            return "Running"
        if stopped == succeeded:
            return "Succeeded"
        if policy == "Never":
            return "Failed"
        return "Running"
    return "Pending"


@dataclass
class ContainerRun:
    name: str
    container_id: str = ""
    main_pid: int = 0  # host PID of the container's first process
    running: bool = False
    env: tuple[str, ...] = ()  # NAME=value as the container was started with; exec gets the same


@dataclass
class PodRun:
    pod: Pod
    node: NodeSpec
    node_index: int
    on_change: Callable[[], None]
    pod_ip: str
    hierarchies: list[cgroups.Hierarchy] = field(default_factory=list)
    node_pid: int = 0
    pause_pid: int = 0
    pause_id: str = ""
    containers: dict[str, ContainerRun] = field(default_factory=dict)
    task: asyncio.Task[None] | None = None
    lost: bool = False

    @property
    def uid(self) -> str:
        return str(self.pod["metadata"]["uid"])

    @property
    def name(self) -> str:
        return str(self.pod["metadata"]["name"])

    @property
    def namespace(self) -> str:
        return str(self.pod["metadata"].get("namespace", "default"))


def _children(pid: int) -> list[int]:
    try:
        text = (PROC / str(pid) / "task" / str(pid) / "children").read_text()
    except OSError:
        return []
    return [int(child) for child in text.split()]


def _chain(pid: int, depth: int) -> list[int]:
    """``pid`` and its first descendants, ``depth`` generations down (shorter if some are missing)."""
    chain = [pid]
    for _ in range(depth):
        children = _children(chain[-1])
        if not children:
            break
        chain.append(children[0])
    return chain


async def _descendant(pid: int, depth: int, timeout: float = 5.0) -> int:
    """The first process ``depth`` generations below ``pid`` (0 when it exited before showing up)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        chain = _chain(pid, depth)
        if len(chain) == depth + 1:
            return chain[-1]
        if not (PROC / str(pid)).exists():
            return 0
        await asyncio.sleep(0.02)
    return 0


def backoff_delay(restart_count: int) -> float:
    """Seconds before restart number ``restart_count``: 0, then 1, 2, 4 ... capped (tests stay fast)."""
    return 0.0 if restart_count <= 1 else min(BACKOFF_MAX_SECONDS, 2.0 ** (restart_count - 2))


def _exit_code(returncode: int) -> int:
    # nsenter and busybox unshare re-raise a child's fatal signal; Kubernetes reports 128+N.
    return 128 - returncode if returncode < 0 else returncode


class Kubelet:
    """One kubelet stand-in for every node of the sandbox (implements contracts.Runtime)."""

    def __init__(self, spec: ClusterSpec, paths: StatePaths, docker_client: Any = None) -> None:
        import docker

        self.spec = spec
        self.paths = paths
        self._docker = docker_client or docker.from_env()
        self._pods: dict[str, PodRun] = {}
        self._node_up: dict[str, bool] = {}
        self._node_pid: dict[str, int] = {}
        self._has_node: bool | None = None
        self._busybox: Path | None = None
        self._next_ip: dict[int, int] = {}
        self._poller: asyncio.Task[None] | None = None
        with contextlib.suppress(RuntimeError):
            asyncio.get_running_loop()
            self._poller = asyncio.create_task(self._poll_nodes())

    # ---- nodes -------------------------------------------------------------------------------
    def _inspect_node(self, node: str) -> tuple[bool, int]:
        import docker.errors

        try:
            attrs = self._docker.api.inspect_container(node)
        except docker.errors.NotFound:
            return False, 0
        except docker.errors.DockerException as err:
            log.warning("docker inspect %s failed: %s", node, err)
            return False, 0
        state = attrs.get("State", {})
        return bool(state.get("Running")) and not state.get("Paused"), int(state.get("Pid") or 0)

    def _refresh_node(self, node: str) -> bool:
        running, pid = self._inspect_node(node)
        self._node_up[node] = running
        self._node_pid[node] = pid
        return running

    def node_ready(self, node: str) -> bool:
        if node not in self._node_up:
            self._refresh_node(node)
        return self._node_up.get(node, False)

    async def _poll_nodes(self) -> None:
        while True:
            for node in self.spec.nodes:
                try:
                    up = await asyncio.to_thread(self._refresh_node, node.name)
                except Exception:  # the engine went away mid-call: the node counts as down
                    log.exception("polling node %s failed", node.name)
                    self._node_up[node.name] = up = False
                if not up:  # idempotent: pods already lost or finished are left alone
                    self._mark_node_lost(node.name)
            await asyncio.sleep(NODE_POLL_SECONDS)

    def _ensure_poller(self) -> None:
        if self._poller is None:
            self._poller = asyncio.create_task(self._poll_nodes())

    def _mark_node_lost(self, node: str) -> None:
        for run in list(self._pods.values()):
            if run.node.name == node and not run.lost:
                self._lose(run)

    def _lose(self, run: PodRun) -> None:
        status = run.pod["status"]
        if status.get("phase") in ("Succeeded", "Failed"):
            return
        run.lost = True
        if run.task and run.task is not asyncio.current_task():
            run.task.cancel()
        status["phase"] = "Unknown"
        status["reason"] = "NodeLost"
        status["message"] = f"Node {run.node.name} which was running pod {run.name} is unresponsive"
        for container in run.containers.values():
            container.running = False
        for key in ("containerStatuses", "initContainerStatuses"):
            for entry in status.get(key) or []:
                entry["ready"] = False
        self._set_condition(run, "Ready", False, "NodeLost")
        self._set_condition(run, "ContainersReady", False, "NodeLost")
        run.on_change()

    def has_node_js(self) -> bool:
        if self._has_node is None:
            from pidmap.sandbox.image import image_has_node
            from pidmap.sandbox.layout import NODE_IMAGE

            try:
                self._has_node = image_has_node(self._docker, NODE_IMAGE)
            except Exception:  # no image: nothing can run anyway; report kubia as unavailable
                self._has_node = False
        return self._has_node

    # ---- runtime protocol ------------------------------------------------------------------------
    async def start_pod(self, pod: Pod, on_change: Callable[[], None]) -> None:
        self._ensure_poller()
        node_name = pod["spec"].get("nodeName")
        found = [(i, n) for i, n in enumerate(self.spec.nodes) if n.name == node_name]
        if not found:  # a node this sandbox does not have: no kubelet would ever pick the pod up
            log.warning("pod %s: node %r is not in the sandbox; left Pending",
                        pod["metadata"]["name"], node_name)
            return
        index, node = found[0]
        uid = str(pod["metadata"]["uid"])
        old = self._pods.pop(uid, None)
        if old and old.task:
            old.task.cancel()
        status = pod.setdefault("status", {})
        if status.get("phase") in ("Succeeded", "Failed", "Unknown"):
            # A finished pod read back from the store: nothing to run.
            self._pods[uid] = PodRun(pod, node, index, on_change, status.get("podIP", ""),
                                     lost=status.get("phase") == "Unknown")
            return
        self._next_ip[index] = self._next_ip.get(index, 1) + 1
        run = PodRun(pod, node, index, on_change, f"10.244.{index}.{self._next_ip[index]}")
        self._pods[uid] = run
        run.task = asyncio.create_task(self._drive(run), name=f"pod {run.namespace}/{run.name}")

    async def delete_pod(self, pod: Pod) -> None:
        uid = str(pod["metadata"]["uid"])
        run = self._pods.pop(uid, None)
        if run is None:
            return
        if run.task:
            run.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await run.task
        await asyncio.to_thread(self._teardown, run)

    def exec_argv(self, pod: Pod, container: str, command: list[str]) -> list[str]:
        run = self._pods.get(str(pod["metadata"]["uid"]))
        names = [c["name"] for c in pod["spec"].get("containers", [])]
        names += [c["name"] for c in pod["spec"].get("initContainers", []) or []]
        if container not in names:
            raise ContainerNotFound(f"container {container} is not valid for pod {pod['metadata']['name']}")
        state = run.containers.get(container) if run else None
        if run is None or state is None or not state.running or not state.main_pid or run.lost:
            raise ContainerNotRunning(f"container {container} is not running")
        if not (PROC / str(state.main_pid)).exists():
            raise ContainerNotRunning(f"container {container} is not running")
        procs = [str(p) for p in self._procs_files(run, self._container_cgroup(run, state.container_id))]
        # env -i: an exec'd process gets the container's environment, not the API server's.
        return [str(self._host_busybox()), "sh", "-c", EXEC_OPEN_CGROUPS, "pidmap-exec", *procs, "--",
                "nsenter", "--target", str(state.main_pid), "--pid", "--mount", "--uts", "--ipc", "--net",
                "--root", "--wd", "--",
                "/bin/sh", "-c", EXEC_JOIN_CGROUPS, "pidmap-join", str(3 + len(procs)),
                "/bin/env", "-i", *state.env, *command]

    def _host_busybox(self) -> Path:
        if self._busybox is None:
            from pidmap.sandbox.image import find_busybox

            self._busybox = find_busybox()
        return self._busybox

    async def close(self) -> None:
        tasks = [run.task for run in self._pods.values() if run.task]
        if self._poller:
            tasks.append(self._poller)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    def log_path(self, pod: Pod, container: str, previous: bool = False) -> Path | None:
        """The log file of the container's current (or previous) run, as /var/log/pods lays it out."""
        status = pod.get("status", {})
        for entry in (status.get("containerStatuses") or []) + (status.get("initContainerStatuses") or []):
            if entry.get("name") == container:
                restart = int(entry.get("restartCount", 0)) - (1 if previous else 0)
                path = self._log_dir(pod, container) / f"{restart}.log"
                return path if restart >= 0 and path.exists() else None
        return None

    # ---- cgroups and paths -------------------------------------------------------------------------
    def _log_dir(self, pod: Pod, container: str) -> Path:
        meta = pod["metadata"]
        pod_key = f"{meta.get('namespace', 'default')}_{meta['name']}_{meta['uid']}"
        return self.paths.root / "logs" / pod_key / container

    def _container_cgroup(self, run: PodRun, container_id: str) -> str:
        return cgroups.container_dir(self.spec.flavor, run.uid, container_id)

    def _procs_files(self, run: PodRun, relative: str) -> list[Path]:
        return [d / "cgroup.procs" for d in cgroups.directories(run.hierarchies, relative)]

    def _volume_root(self, run: PodRun) -> str:
        return f"/var/lib/kubelet/pods/{run.uid}/volumes"

    def _mounts(self, run: PodRun, container: dict[str, Any]) -> list[str]:
        volumes = {v["name"]: v for v in run.pod["spec"].get("volumes", []) or []}
        pairs: list[str] = []
        for mount in container.get("volumeMounts", []) or []:
            volume = volumes.get(mount.get("name"), {})
            if "hostPath" in volume:
                source = str(volume["hostPath"].get("path", "/"))
            else:  # emptyDir, and a plain empty directory for every other kind
                source = f"{self._volume_root(run)}/kubernetes.io~empty-dir/{mount['name']}"
            pairs += [source, str(mount["mountPath"])]
        return pairs

    # ---- the pod's lifecycle -------------------------------------------------------------------------
    async def _drive(self, run: PodRun) -> None:
        try:
            await self._drive_inner(run)
        except asyncio.CancelledError:
            raise
        except NodeLost:
            self._lose(run)
        except Exception:
            log.exception("pod %s/%s failed in the sandbox kubelet", run.namespace, run.name)
            if not await asyncio.to_thread(self._refresh_node, run.node.name):
                self._lose(run)

    def _init_status(self, run: PodRun) -> None:
        spec = run.pod["spec"]
        status = run.pod.setdefault("status", {})
        init_containers = spec.get("initContainers") or []
        status.update({
            "phase": "Pending",
            "hostIP": f"172.18.0.{run.node_index + 2}",
            "hostIPs": [{"ip": f"172.18.0.{run.node_index + 2}"}],
            "podIP": run.pod_ip,
            "podIPs": [{"ip": run.pod_ip}],
            "startTime": status.get("startTime") or objects.timestamp(objects.now_utc()),
            "qosClass": "BestEffort",
        })
        status.pop("reason", None)
        status.pop("message", None)
        status["conditions"] = []
        self._set_condition(run, "PodScheduled", True)
        self._set_condition(run, "Initialized", not init_containers,
                            None if not init_containers else "ContainersNotInitialized")
        self._set_condition(run, "ContainersReady", False, "ContainersNotReady")
        self._set_condition(run, "Ready", False, "ContainersNotReady")
        reason = "PodInitializing" if init_containers else "ContainerCreating"
        if init_containers:
            status["initContainerStatuses"] = [self._waiting(c, "PodInitializing") for c in init_containers]
        else:
            status.pop("initContainerStatuses", None)
        status["containerStatuses"] = [self._waiting(c, reason) for c in spec.get("containers", [])]
        for container in [*init_containers, *spec.get("containers", [])]:
            run.containers[container["name"]] = ContainerRun(container["name"])

    def _waiting(self, container: dict[str, Any], reason: str) -> dict[str, Any]:
        resolved = resolve_image(container.get("image", ""), self.has_node_js())
        return {
            "name": container["name"],
            "image": resolved.reference if resolved else container.get("image", ""),
            "imageID": "",
            "ready": False,
            "restartCount": 0,
            "started": False,
            "state": {"waiting": {"reason": reason}},
            "lastState": {},
        }

    def _set_condition(self, run: PodRun, kind: str, value: bool, reason: str | None = None) -> None:
        conditions: list[dict[str, Any]] = run.pod["status"].setdefault("conditions", [])
        text = "True" if value else "False"
        existing = next((c for c in conditions if c["type"] == kind), None)
        moment = objects.timestamp(objects.now_utc())
        if existing is None:
            existing = {"type": kind, "status": text, "lastProbeTime": None, "lastTransitionTime": moment}
            conditions.append(existing)
        elif existing["status"] != text:
            existing["status"] = text
            existing["lastTransitionTime"] = moment
        if reason and not value:
            existing["reason"] = reason
        else:
            existing.pop("reason", None)

    def _entry(self, run: PodRun, name: str, init: bool) -> dict[str, Any]:
        key = "initContainerStatuses" if init else "containerStatuses"
        return next(e for e in run.pod["status"][key] if e["name"] == name)

    def _update_phase(self, run: PodRun) -> None:
        status = run.pod["status"]
        spec = run.pod["spec"]
        phase = pod_phase(run.pod)
        status["phase"] = phase
        ready = all(e.get("ready") for e in status.get("containerStatuses") or [])
        init_done = all("terminated" in e.get("state", {}) and e["state"]["terminated"].get("exitCode") == 0
                        for e in status.get("initContainerStatuses") or [])
        if spec.get("initContainers"):
            self._set_condition(run, "Initialized", init_done, "ContainersNotInitialized")
        finished = phase in ("Succeeded", "Failed")
        reason = "PodCompleted" if finished else "ContainersNotReady"
        self._set_condition(run, "ContainersReady", ready and not finished, reason)
        self._set_condition(run, "Ready", ready and not finished, reason)
        run.on_change()

    async def _drive_inner(self, run: PodRun) -> None:
        self._init_status(run)
        run.on_change()
        node_ok = await asyncio.to_thread(self._refresh_node, run.node.name)
        if not node_ok:
            raise NodeLost(run.node.name)
        run.node_pid = self._node_pid[run.node.name]
        run.hierarchies = await asyncio.to_thread(cgroups.node_hierarchies, run.node_pid)
        # Leftovers of an earlier API server process for this pod (see the module docstring).
        await asyncio.to_thread(self._kill_pod_processes, run)
        await self._start_pause(run)
        spec = run.pod["spec"]
        policy = spec.get("restartPolicy", "Always")
        for container in spec.get("initContainers") or []:
            while True:
                exit_code = await self._run_container(run, container, init=True)
                if exit_code == 0:
                    break
                if policy == "Never":
                    self._update_phase(run)
                    await asyncio.to_thread(self._teardown_processes, run)
                    return
                await self._back_off(run, container, init=True)
        lost = False
        try:
            # A TaskGroup, so that a node lost under one container stops its siblings too.
            async with asyncio.TaskGroup() as group:
                for container in spec.get("containers", []):
                    group.create_task(self._keep_running(run, container, policy))
        except* NodeLost:
            lost = True
        if lost:
            raise NodeLost(run.node.name)
        self._update_phase(run)
        await asyncio.to_thread(self._teardown_processes, run)

    async def _keep_running(self, run: PodRun, container: dict[str, Any], policy: str) -> None:
        while True:
            exit_code = await self._run_container(run, container, init=False)
            if exit_code is None:
                return
            if policy == "Never" or (policy == "OnFailure" and exit_code == 0):
                return
            await self._back_off(run, container, init=False)

    async def _back_off(self, run: PodRun, container: dict[str, Any], init: bool) -> None:
        await asyncio.sleep(backoff_delay(int(self._entry(run, container["name"], init)["restartCount"])))

    async def _image_pull_failure(self, run: PodRun, container: dict[str, Any], init: bool) -> None:
        image = container.get("image", "")
        entry = self._entry(run, container["name"], init)
        entry["state"] = {"waiting": {"reason": "ErrImagePull",
                                      "message": f'Failed to pull image "{image}": {IMAGE_UNAVAILABLE}'}}
        self._update_phase(run)
        await asyncio.sleep(1.0)
        entry["state"] = {"waiting": {"reason": "ImagePullBackOff",
                                      "message": f'Back-off pulling image "{image}"'}}
        self._update_phase(run)
        await asyncio.Future()  # stays Pending until deleted, like a pull that never succeeds

    async def _spawn(self, argv: list[str], log_file: Path | None) -> asyncio.subprocess.Process:
        if log_file is None:
            return await asyncio.create_subprocess_exec(
                *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL, start_new_session=True)
        log_file.parent.mkdir(parents=True, exist_ok=True)
        with log_file.open("ab") as handle:
            return await asyncio.create_subprocess_exec(
                *argv, stdin=asyncio.subprocess.DEVNULL, stdout=handle, stderr=handle, start_new_session=True)

    async def _start_pause(self, run: PodRun) -> None:
        run.pause_id = secrets.token_hex(32)
        relative = self._container_cgroup(run, run.pause_id)
        procs = await asyncio.to_thread(cgroups.create, run.hierarchies, relative)
        argv = ["sh", "-c", CGROUP_WRAPPER, "pidmap-cgroup", *map(str, procs), "--",
                "nsenter", "--target", str(run.node_pid), "--mount", "--uts", "--ipc", "--net", "--pid",
                "--root", "--wd", "--",
                "/bin/unshare", "--uts", "--ipc", "--net", "--pid", "--fork", "--mount-proc",
                "/bin/sh", "-c", PAUSE_SETUP, "pidmap-pause", run.name]
        process = await self._spawn(argv, None)
        run.pause_pid = await _descendant(process.pid, 2)
        if not run.pause_pid:
            raise NodeLost(run.node.name)
        await asyncio.to_thread(self._move_helpers_out, run, _chain(process.pid, 1))
        # Containers join pause's namespaces only once its set-up (hostname, lo) is done.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 5.0
        while loop.time() < deadline:
            try:
                cmdline = (PROC / str(run.pause_pid) / "cmdline").read_bytes()
            except OSError:
                raise NodeLost(run.node.name) from None
            if cmdline.startswith(b"/pause") or cmdline.startswith(b"sh\x00/pause"):
                return
            await asyncio.sleep(0.02)
        raise NodeLost(run.node.name)

    @staticmethod
    def _environment(run: PodRun, container: dict[str, Any]) -> list[str]:
        env = [f"PATH={DEFAULT_PATH}", f"HOSTNAME={run.name}", "HOME=/root"]
        for variable in container.get("env", []) or []:
            env.append(f"{variable['name']}={variable.get('value', '')}")
        return env

    def _container_command(self, run: PodRun, container: dict[str, Any], image: Image) -> list[str]:
        env = self._environment(run, container)
        return ["/bin/sh", "-c", CONTAINER_SETUP, "pidmap-setup", *self._mounts(run, container), "--",
                container.get("workingDir") or "/", "/bin/env", "-i", *env, *container_argv(container, image)]

    async def _run_container(self, run: PodRun, container: dict[str, Any], init: bool) -> int | None:
        """Run the container once; return its exit code (None: it cannot run, e.g. no image)."""
        name = container["name"]
        image = resolve_image(container.get("image", ""), self.has_node_js())
        if image is None:
            await self._image_pull_failure(run, container, init)
            return None
        if not await asyncio.to_thread(self._refresh_node, run.node.name):
            raise NodeLost(run.node.name)
        state = run.containers[name]
        entry = self._entry(run, name, init)
        container_id = secrets.token_hex(32)
        relative = self._container_cgroup(run, container_id)
        procs = await asyncio.to_thread(cgroups.create, run.hierarchies, relative)
        wrapper = ["sh", "-c", CGROUP_WRAPPER, "pidmap-cgroup", *map(str, procs), "--"]
        if run.pod["spec"].get("shareProcessNamespace"):
            argv = [*wrapper, "nsenter", "--target", str(run.pause_pid), "--pid", "--mount", "--uts", "--ipc",
                    "--net", "--root", "--wd", "--", "/bin/unshare", "--mount",
                    *self._container_command(run, container, image)]
            depth = 1
        else:
            pause = f"/proc/{run.pause_pid}/ns"
            argv = [*wrapper, "nsenter", "--target", str(run.node_pid), "--mount", "--pid", "--root", "--wd",
                    f"--uts={pause}/uts", f"--ipc={pause}/ipc", f"--net={pause}/net", "--",
                    "/bin/unshare", "--pid", "--fork", "--mount-proc",
                    *self._container_command(run, container, image)]
            depth = 2
        restarts = int(entry.get("restartCount", 0))
        log_file = self._log_dir(run.pod, name) / f"{restarts}.log"
        started_at = objects.timestamp(objects.now_utc())
        process = await self._spawn(argv, log_file)
        state.container_id = container_id
        state.env = tuple(self._environment(run, container))
        state.main_pid = await _descendant(process.pid, depth)
        state.running = bool(state.main_pid)
        await asyncio.to_thread(self._move_helpers_out, run, _chain(process.pid, depth - 1))
        full_id = f"containerd://{container_id}"
        entry.update({"containerID": full_id, "imageID": image.image_id, "image": image.reference,
                      "started": state.running, "ready": state.running,
                      "state": {"running": {"startedAt": started_at}}})
        self._update_phase(run)
        returncode = await process.wait()
        state.running = False
        finished_at = objects.timestamp(objects.now_utc())
        exit_code = _exit_code(returncode)
        # Whatever the container left behind (daemonized children) goes with it, as with runc.
        directory = cgroups.directories(run.hierarchies, self._container_cgroup(run, container_id))
        await asyncio.to_thread(self._kill_and_remove, directory)
        if not await asyncio.to_thread(self._refresh_node, run.node.name):
            raise NodeLost(run.node.name)
        previous = entry["state"]
        entry["state"] = {"terminated": {
            "exitCode": exit_code, "reason": "Completed" if exit_code == 0 else "Error",
            "startedAt": previous.get("running", {}).get("startedAt", started_at),
            "finishedAt": finished_at, "containerID": full_id}}
        entry["ready"] = init and exit_code == 0
        entry["started"] = False
        policy = run.pod["spec"].get("restartPolicy", "Always")
        will_restart = policy == "Always" or (policy == "OnFailure" and exit_code != 0)
        if init:
            will_restart = policy != "Never" and exit_code != 0
        if will_restart:
            entry["lastState"] = {"terminated": entry["state"]["terminated"]}
            entry["restartCount"] = restarts + 1
            delay = backoff_delay(restarts + 1)
            entry["state"] = {"waiting": {"reason": "ContainerCreating"}} if not delay else {"waiting": {
                "reason": "CrashLoopBackOff",
                "message": (f"back-off {int(delay)}s restarting failed container={name} "
                            f"pod={run.name}_{run.namespace}({run.uid})")}}
        self._update_phase(run)
        return exit_code

    def _move_helpers_out(self, run: PodRun, helpers: list[int]) -> None:
        """Move nsenter (host) and unshare (node) up into the pod's cgroup once the container runs.

        They only wait for the container's first process; on a real node their counterpart (the
        containerd shim) is not in the container's cgroup either, so a container's cgroup lists
        nothing but the container's own processes.
        """
        for directory in self._pod_directories(run):
            for pid in helpers:
                with contextlib.suppress(OSError):
                    (directory / "cgroup.procs").write_text(f"{pid}\n")

    # ---- teardown ----------------------------------------------------------------------------------
    def _pod_directories(self, run: PodRun) -> list[Path]:
        return cgroups.directories(run.hierarchies, cgroups.pod_dir(self.spec.flavor, run.uid))

    @staticmethod
    def _kill_and_remove(directories: list[Path]) -> None:
        for directory in directories[:1]:
            cgroups.kill_all(directory, signal.SIGKILL)
        for directory in directories:
            cgroups.remove_tree(directory)

    def _kill_pod_processes(self, run: PodRun) -> None:
        directories = self._pod_directories(run)
        if not directories:
            return
        if cgroups.pids_in(directories[0]):
            cgroups.kill_all(directories[0], signal.SIGTERM)
            for _ in range(int(GRACE_SECONDS / 0.1)):
                if not cgroups.pids_in(directories[0]):
                    break
                time.sleep(0.1)
        # Repeat: a process spawned just before its task was cancelled may join its cgroup late.
        deadline = time.monotonic() + 5.0
        while True:
            for directory in directories:
                cgroups.kill_all(directory, signal.SIGKILL)
            if all(cgroups.remove_tree(directory, timeout=0.5) for directory in directories):
                return
            if time.monotonic() > deadline:
                log.warning("pod %s/%s: cgroups still busy after SIGKILL", run.namespace, run.name)
                return

    def _teardown_processes(self, run: PodRun) -> None:
        """The pod finished: stop pause, drop its cgroups (a finished pod has no sandbox)."""
        self._kill_pod_processes(run)
        run.pause_pid = 0

    def _teardown(self, run: PodRun) -> None:
        if not run.hierarchies:
            running, pid = self._inspect_node(run.node.name)
            if running:
                run.hierarchies = cgroups.node_hierarchies(pid)
        self._kill_pod_processes(run)
        running, pid = self._inspect_node(run.node.name)
        if running:
            volumes = PROC / str(pid) / "root" / "var" / "lib" / "kubelet" / "pods" / run.uid
            shutil.rmtree(volumes, ignore_errors=True)
