"""The kubelet stand-in: drives each node's containerd with ``ctr``, as kubelet drives it through CRI.

Every node container runs kind's container runtime (containerd, containerd-shim-runc-v2, runc; see
image.py). The stand-in reaches it with ``docker exec NODE ctr -n k8s.io ...`` (argv lists only,
every call with a timeout) and does what kubelet asks of CRI:

* RunPodSandbox: one ``registry.k8s.io/pause:3.10`` container per pod owning the pod's network, IPC
  and UTS namespaces (hostname = pod name), and with ``shareProcessNamespace`` its PID namespace;
* CreateContainer + StartContainer: init, app and ephemeral containers join those namespaces
  (``ctr run --with-ns``), with the CRI labels (``io.kubernetes.pod.name`` ...) and annotations. The
  ``io.kubernetes.cri.sandbox-id`` annotation makes the runc v2 shim group a pod's containers, so
  a pod has one ``containerd-shim-runc-v2 -namespace k8s.io -id <sandbox id>``, as on kind;
* cgroups named as kind's systemd driver names them (minikube flavor: the cgroupfs names), under
  the node container's own cgroup; container IDs are containerd's (``containerd://<id>``);
* ExecSync / Exec: ``ctr task exec``, so exec'd processes are children of the shim;
* exits come from containerd's ``/tasks/exit`` events (``ctr events``), restarts follow the
  restart policy with kubelet's back-off (immediate, then 10 s doubling to 5 min: CrashLoopBackOff).

A node container that stops answering (stopped, paused) makes its pods ``Unknown`` (NodeLost) and
the node NotReady; when it answers again its pods resume: containers still running are adopted,
the others (a restarted node lost them) are started again in a new sandbox. An API server that
restarts adopts its pods' running containers the same way: containerd is the source of truth.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import secrets
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pidmap.sandbox import attach, cgroups, objects
from pidmap.sandbox.contracts import ContainerNotFound, ContainerNotRunning, Pod
from pidmap.sandbox.image import PAUSE, POD_IMAGES, PodImage
from pidmap.sandbox.layout import ClusterSpec, NodeSpec, StatePaths

log = logging.getLogger("pidmap.sandbox.kubelet")

NAMESPACE = "k8s.io"
SNAPSHOTTER = "overlayfs"
CALL_TIMEOUT = 15.0
NODE_POLL_SECONDS = 1.0
RECONCILE_SECONDS = 10.0
BACKOFF_INITIAL_SECONDS = 10.0
BACKOFF_MAX_SECONDS = 300.0
GRACE_SECONDS = 2.0
POD_LOG_DIR = "/var/log/pods"  # bind-mounted from the state directory's logs/
IMAGE_UNAVAILABLE = "the sandbox runs only busybox, luksa/kubia, registry.k8s.io/pause and " \
    "gcr.io/distroless/static (offline)"
_NON_ZERO_EXIT = re.compile(r"exit with non-zero exit code (\d+)")


class NodeLost(Exception):
    """The pod's node container is not running, or its containerd does not answer in time."""


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


def resolve_image(image: str) -> tuple[str, PodImage] | None:
    """(the reference Kubernetes reports, the local image that stands for it); None: not here."""
    repository, reference = normalize_image(image)
    local = POD_IMAGES.get(repository)
    return (reference, local) if local else None


def container_argv(container: dict[str, Any], image: PodImage) -> list[str]:
    """Kubernetes' rule: command replaces the entrypoint, args replace the image's cmd."""
    command = container.get("command")
    args = container.get("args")
    if command:
        return [*command, *(args or [])]
    return [*image.entrypoint, *(args if args is not None else image.cmd)]


def qos_class(pod: Pod) -> str:
    """Kubernetes' GetPodQOS, for cpu and memory."""
    containers = [*(pod["spec"].get("initContainers") or []), *pod["spec"].get("containers", [])]
    requests_any = limits_any = False
    guaranteed = True
    for container in containers:
        resources = container.get("resources") or {}
        requests, limits = resources.get("requests") or {}, resources.get("limits") or {}
        requests_any = requests_any or any(k in requests for k in ("cpu", "memory"))
        limits_any = limits_any or any(k in limits for k in ("cpu", "memory"))
        for kind in ("cpu", "memory"):
            if kind not in limits or (kind in requests and str(requests[kind]) != str(limits[kind])):
                guaranteed = False
    if not requests_any and not limits_any:
        return "BestEffort"
    return "Guaranteed" if guaranteed else "Burstable"


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


def backoff_delay(restart_count: int) -> float:
    """Seconds before restart number ``restart_count``: kubelet restarts at once the first time,
    then backs off 10 s, doubling up to 5 min."""
    if restart_count <= 1:
        return 0.0
    return min(BACKOFF_MAX_SECONDS, BACKOFF_INITIAL_SECONDS * 2.0 ** (restart_count - 2))


def pod_cgroup(flavor: str, qos: str, pod_uid: str) -> str:
    """The pod's cgroup below the node's (kind: systemd names; minikube: cgroupfs names)."""
    if flavor == "kind":
        under = pod_uid.replace("-", "_")
        if qos == "Guaranteed":
            return f"kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-pod{under}.slice"
        level = qos.lower()
        return (f"kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-{level}.slice/"
                f"kubelet-kubepods-{level}-pod{under}.slice")
    return f"kubepods/pod{pod_uid}" if qos == "Guaranteed" else f"kubepods/{qos.lower()}/pod{pod_uid}"


def container_cgroup(flavor: str, pod_dir: str, container_id: str) -> str:
    leaf = f"cri-containerd-{container_id}.scope" if flavor == "kind" else container_id
    return f"{pod_dir}/{leaf}"


@dataclass
class CtrResult:
    returncode: int
    stdout: str
    stderr: str


class NodeRuntime:
    """One node's containerd, reached with ``docker exec NODE ctr`` (every call with a timeout)."""

    def __init__(self, node: str, docker_cli: str) -> None:
        self.node = node
        self.docker = docker_cli
        self.waiters: dict[str, asyncio.Future[int]] = {}
        # Waiters whose task is known to have started: only these can be settled by a listing that
        # does not show their task (one registered before `ctr run` is not in the listing yet).
        self.started: set[str] = set()
        self.images: dict[str, str] = {}  # reference -> manifest digest
        self.cgroup_parent = ""  # the node container's cgroup, e.g. /docker/<id>
        self.events: asyncio.Task[None] | None = None

    def ctr_argv(self, *args: str, stdin: bool = False) -> list[str]:
        return [self.docker, "exec", *(["-i"] if stdin else []), self.node, "ctr", "-n", NAMESPACE, *args]

    async def run(self, argv: list[str], timeout: float = CALL_TIMEOUT,
                  stdin: Path | None = None) -> CtrResult:
        """Run ``argv`` (a docker exec); NodeLost when it does not finish in ``timeout`` seconds."""
        handle = stdin.open("rb") if stdin else None
        try:
            process = await asyncio.create_subprocess_exec(
                *argv, stdin=handle or asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE, start_new_session=True)
            try:
                out, errors = await asyncio.wait_for(process.communicate(), timeout)
            except (TimeoutError, asyncio.CancelledError):
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
                raise
        except TimeoutError as timeout_error:
            what = " ".join(argv[2:6])
            raise NodeLost(f"{self.node}: {what}... did not answer in {timeout:.0f} s") from timeout_error
        finally:
            if handle:
                handle.close()
        return CtrResult(process.returncode or 0, out.decode(errors="replace"),
                         errors.decode(errors="replace"))

    async def ctr(self, *args: str, timeout: float = CALL_TIMEOUT) -> CtrResult:
        return await self.run(self.ctr_argv(*args), timeout)

    async def node_exec(self, *argv: str, timeout: float = CALL_TIMEOUT) -> CtrResult:
        return await self.run([self.docker, "exec", self.node, *argv], timeout)

    async def tasks(self) -> dict[str, tuple[int, str]]:
        """containerd's tasks: id -> (node PID, status)."""
        result = await self.ctr("tasks", "ls")
        if result.returncode != 0:
            raise NodeLost(f"{self.node}: ctr tasks ls: {result.stderr.strip()}")
        found: dict[str, tuple[int, str]] = {}
        for line in result.stdout.splitlines()[1:]:
            fields = line.split()
            if len(fields) >= 3 and fields[1].isdigit():
                found[fields[0]] = (int(fields[1]), fields[2])
        return found

    async def load_images(self) -> None:
        result = await self.ctr("images", "ls")
        if result.returncode != 0:
            raise NodeLost(f"{self.node}: ctr images ls: {result.stderr.strip()}")
        self.images = {}
        for line in result.stdout.splitlines()[1:]:
            fields = line.split()
            if len(fields) >= 3 and not fields[0].startswith("sha256:"):
                self.images[fields[0]] = fields[2]

    def expect_exit(self, container_id: str, *, started: bool = True) -> asyncio.Future[int]:
        """The future of the task's exit code. ``started=False``: registered before ``ctr run``
        (so that an exit at once is not missed), the task may not exist yet; ``task_started`` says
        when it does. Until then ``reconcile`` leaves the waiter alone."""
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.waiters[container_id] = future
        if started:
            self.started.add(container_id)
        return future

    def task_started(self, container_id: str) -> None:
        if container_id in self.waiters:
            self.started.add(container_id)

    def forget(self, container_id: str) -> None:
        self.waiters.pop(container_id, None)
        self.started.discard(container_id)

    def exited(self, container_id: str, code: int) -> None:
        self.started.discard(container_id)
        future = self.waiters.pop(container_id, None)
        if future is not None and not future.done():
            future.set_result(code)

    async def delete_task(self, container_id: str) -> int | None:
        """Delete a stopped task; its exit code as containerd reports it (None: no such task)."""
        result = await self.ctr("tasks", "delete", container_id)
        if result.returncode != 0:
            return None
        found = _NON_ZERO_EXIT.search(result.stderr)
        return int(found.group(1)) if found else 0

    async def reconcile(self) -> None:
        """Settle every waiter whose task is no longer running (an exit event we did not see).

        Only waiters whose task had started before the listing is asked for: a `ctr run` under way
        (seconds on a loaded node) has registered its waiter but its task is not listed yet, and
        settling it with 255 would report a running container as exited (and start it again)."""
        armed = [container_id for container_id in self.waiters if container_id in self.started]
        if not armed:
            return
        tasks = await self.tasks()
        for container_id in armed:
            if container_id not in self.waiters:
                continue  # its exit event came while the listing ran
            pid_status = tasks.get(container_id)
            if pid_status is None:
                self.exited(container_id, 255)  # lost with its node (Kubernetes: exit 255, Unknown)
            elif pid_status[1] == "STOPPED":
                code = await self.delete_task(container_id)
                self.exited(container_id, 255 if code is None else code)

    async def _stop_stale_watchers(self) -> None:
        """A `ctr events` left by an earlier kubelet (a killed `docker exec` client does not stop
        what it started in the node): stopped by its PID, so the node shows one watcher."""
        with contextlib.suppress(NodeLost):
            listing = await self.node_exec("ps", "-e", "-o", "pid=,args=")
            stale = [line.split(None, 1)[0] for line in listing.stdout.splitlines()
                     if line.split(None, 1)[1:] == ["ctr events"]]
            if stale:
                await self.node_exec("kill", *stale)

    async def watch_events(self, is_up: Callable[[], bool]) -> None:
        """Follow containerd's /tasks/exit events for as long as the kubelet lives."""
        while True:
            if not is_up():
                await asyncio.sleep(NODE_POLL_SECONDS)
                continue
            await self._stop_stale_watchers()
            process = await asyncio.create_subprocess_exec(
                self.docker, "exec", self.node, "ctr", "events", stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL, start_new_session=True)
            settle = asyncio.create_task(self._settle_periodically())
            try:
                assert process.stdout is not None
                while line := await process.stdout.readline():
                    text = line.decode(errors="replace")
                    if f" {NAMESPACE} /tasks/exit " not in text:
                        continue
                    with contextlib.suppress(ValueError, KeyError):
                        event = json.loads(text[text.index("{"):])
                        if event.get("id") == event.get("container_id"):
                            self.exited(str(event["container_id"]), int(event.get("exit_status", 0)))
            finally:
                settle.cancel()
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
            await asyncio.sleep(NODE_POLL_SECONDS)

    async def _settle_periodically(self) -> None:
        await asyncio.sleep(0.5)  # the event stream is subscribed by then
        while True:
            with contextlib.suppress(NodeLost):
                await self.reconcile()
            await asyncio.sleep(RECONCILE_SECONDS)


@dataclass
class ContainerRun:
    name: str
    container_id: str = ""
    previous_id: str = ""  # the dead container kept for `kubectl logs --previous` (kubelet keeps one)
    running: bool = False


@dataclass
class PodRun:
    pod: Pod
    node: NodeSpec
    node_index: int
    on_change: Callable[[], None]
    pod_ip: str
    sandbox_id: str = ""
    sandbox_pid: int = 0  # node PID of the pause process
    containers: dict[str, ContainerRun] = field(default_factory=dict)
    task: asyncio.Task[None] | None = None
    lost: bool = False
    sandbox_lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def uid(self) -> str:
        return str(self.pod["metadata"]["uid"])

    @property
    def name(self) -> str:
        return str(self.pod["metadata"]["name"])

    @property
    def namespace(self) -> str:
        return str(self.pod["metadata"].get("namespace", "default"))


class Kubelet:
    """One kubelet stand-in for every node of the sandbox (implements contracts.Runtime)."""

    def __init__(self, spec: ClusterSpec, paths: StatePaths, docker_client: Any = None) -> None:
        import docker

        self.spec = spec
        self.paths = paths
        self._docker = docker_client or docker.from_env()
        docker_cli = shutil.which("docker") or "docker"
        self._nodes = {node.name: NodeRuntime(node.name, docker_cli) for node in spec.nodes}
        self._pods: dict[str, PodRun] = {}
        self._node_up: dict[str, bool] = {}
        self._next_ip: dict[int, int] = {}
        self._ephemeral_tasks: set[asyncio.Task[None]] = set()
        self._poller: asyncio.Task[None] | None = None
        with contextlib.suppress(RuntimeError):
            asyncio.get_running_loop()
            self._ensure_poller()

    # ---- nodes -------------------------------------------------------------------------------
    def _inspect_node(self, node: str) -> bool:
        import docker.errors

        try:
            attrs = self._docker.api.inspect_container(node)
        except docker.errors.DockerException as err:
            if not isinstance(err, docker.errors.NotFound):
                log.warning("docker inspect %s failed: %s", node, err)
            return False
        state = attrs.get("State", {})
        return bool(state.get("Running")) and not state.get("Paused")

    def _refresh_node(self, node: str) -> bool:
        self._node_up[node] = running = self._inspect_node(node)
        return running

    def node_ready(self, node: str) -> bool:
        if node not in self._node_up:
            self._refresh_node(node)
        return self._node_up.get(node, False)

    async def _poll_nodes(self) -> None:
        while True:
            for node in self.spec.nodes:
                was_up = self._node_up.get(node.name)
                try:
                    up = await asyncio.to_thread(self._refresh_node, node.name)
                except Exception:  # the engine went away mid-call: the node counts as down
                    log.exception("polling node %s failed", node.name)
                    self._node_up[node.name] = up = False
                if not up:  # idempotent: pods already lost or finished are left alone
                    self._mark_node_lost(node.name)
                elif was_up is not None:  # lost pods of a node that answers: tried again each poll
                    self._resume_node(node.name)
            await asyncio.sleep(NODE_POLL_SECONDS)

    def _ensure_poller(self) -> None:
        if self._poller is None:
            self._poller = asyncio.create_task(self._poll_nodes())
            for runtime in self._nodes.values():
                runtime.events = asyncio.create_task(runtime.watch_events(self._ready_check(runtime.node)))

    def _ready_check(self, node: str) -> Callable[[], bool]:
        return lambda: self.node_ready(node)

    def _mark_node_lost(self, node: str) -> None:
        for run in list(self._pods.values()):
            if run.node.name == node and not run.lost:
                self._lose(run)

    def _resume_node(self, node: str) -> None:
        """The node answers again: its lost pods resume (adopted or started again)."""
        for run in list(self._pods.values()):
            if run.node.name == node and run.lost and (run.task is None or run.task.done()):
                run.lost = False
                run.pod["status"].pop("reason", None)
                run.pod["status"].pop("message", None)
                run.task = asyncio.create_task(self._drive(run), name=f"pod {run.namespace}/{run.name}")

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
        for key in ("containerStatuses", "initContainerStatuses", "ephemeralContainerStatuses"):
            for entry in status.get(key) or []:
                entry["ready"] = False
        self._set_condition(run, "Ready", False, "NodeLost")
        self._set_condition(run, "ContainersReady", False, "NodeLost")
        run.on_change()

    async def _node(self, run: PodRun) -> NodeRuntime:
        """The pod's node, answering; its cgroup and images read on first use."""
        runtime = self._nodes[run.node.name]
        if not await asyncio.to_thread(self._refresh_node, run.node.name):
            raise NodeLost(run.node.name)
        if not runtime.cgroup_parent:
            result = await runtime.node_exec("cat", "/proc/1/cgroup")
            for line in result.stdout.splitlines():
                hierarchy, controllers, path = line.split(":", 2)
                if path != "/" and (controllers == "pids" or hierarchy == "0"):
                    runtime.cgroup_parent = path
                    break
            if not runtime.cgroup_parent:
                raise NodeLost(f"{run.node.name}: cannot read its cgroup ({result.stderr.strip()})")
        if not runtime.images:
            await runtime.load_images()
        return runtime

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
        if status.get("phase") in ("Succeeded", "Failed"):
            # A finished pod read back from the store: nothing to run.
            self._pods[uid] = PodRun(pod, node, index, on_change, status.get("podIP", ""))
            return
        pod_ip = status.get("podIP") or ""
        if not pod_ip:
            self._next_ip[index] = self._next_ip.get(index, 1) + 1
            pod_ip = f"10.244.{index}.{self._next_ip[index]}"
        run = PodRun(pod, node, index, on_change, pod_ip)
        # A pod read back from the store (the API server restarted): adopt what containerd runs.
        for key in ("initContainerStatuses", "containerStatuses", "ephemeralContainerStatuses"):
            for entry in status.get(key) or []:
                container_id = str(entry.get("containerID", "")).removeprefix("containerd://")
                run.containers[entry["name"]] = ContainerRun(entry["name"], container_id)
        self._pods[uid] = run
        run.task = asyncio.create_task(self._drive(run), name=f"pod {run.namespace}/{run.name}")

    async def delete_pod(self, pod: Pod) -> None:
        uid = str(pod["metadata"]["uid"])
        run = self._pods.pop(uid, None)
        if run is None:  # never driven by this process (e.g. a deletion the last server began)
            found = [(i, n) for i, n in enumerate(self.spec.nodes) if n.name == pod["spec"].get("nodeName")]
            if not found:
                return
            run = PodRun(pod, found[0][1], found[0][0], lambda: None, "")
            with contextlib.suppress(NodeLost):
                await self._node(run)
        if run.task:
            run.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await run.task
        with contextlib.suppress(NodeLost):
            await self._teardown(run, remove=True)

    def exec_argv(self, pod: Pod, container: str, command: list[str]) -> list[str]:
        run = self._pods.get(str(pod["metadata"]["uid"]))
        names = [c["name"] for c in pod["spec"].get("containers", [])]
        names += [c["name"] for c in pod["spec"].get("initContainers", []) or []]
        names += [c["name"] for c in pod["spec"].get("ephemeralContainers", []) or []]
        if container not in names:
            raise ContainerNotFound(f"container {container} is not valid for pod {pod['metadata']['name']}")
        state = run.containers.get(container) if run else None
        if run is None or state is None or not state.running or not state.container_id or run.lost:
            raise ContainerNotRunning(f"container {container} is not running")
        # The exec'd process is started by the container's shim, in the container's namespaces,
        # cgroup and environment (containerd copies the container's process spec).
        return self._nodes[run.node.name].ctr_argv(
            "tasks", "exec", "--exec-id", f"exec-{secrets.token_hex(8)}", state.container_id, *command,
            stdin=True)

    def attach_argv(self, pod: Pod, container: str) -> list[str]:
        """``kubectl attach`` / ``kubectl debug -i``: pidmap.sandbox.attach."""
        return attach.attach_argv(self.exec_argv(pod, container, []))

    async def kill_exec(self, argv: list[str]) -> None:
        """Kill an exec started with ``exec_argv`` (its client went away): ``ctr task kill --exec-id``."""
        if "--exec-id" not in argv:
            return
        at = argv.index("--exec-id")
        exec_id, container_id = argv[at + 1], argv[at + 2]
        node = argv[argv.index("ctr") - 1]
        if node in self._nodes:
            await self._nodes[node].ctr("tasks", "kill", "--exec-id", exec_id, "--signal", "SIGKILL",
                                        container_id, timeout=5.0)

    async def close(self) -> None:
        tasks = [run.task for run in self._pods.values() if run.task]
        if self._poller:
            tasks.append(self._poller)
        tasks += [runtime.events for runtime in self._nodes.values() if runtime.events]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    def log_path(self, pod: Pod, container: str, previous: bool = False) -> Path | None:
        """The log file of the container's current (or previous) run, as /var/log/pods lays it out."""
        status = pod.get("status", {})
        for key in ("containerStatuses", "initContainerStatuses", "ephemeralContainerStatuses"):
            for entry in status.get(key) or []:
                if entry.get("name") == container:
                    restart = int(entry.get("restartCount", 0)) - (1 if previous else 0)
                    path = self._log_dir(pod, container) / f"{restart}.log"
                    return path if restart >= 0 and path.exists() else None
        return None

    # ---- paths -------------------------------------------------------------------------------------
    @staticmethod
    def _pod_key(pod: Pod) -> str:
        meta = pod["metadata"]
        return f"{meta.get('namespace', 'default')}_{meta['name']}_{meta['uid']}"

    def _log_dir(self, pod: Pod, container: str) -> Path:
        return self.paths.root / "logs" / self._pod_key(pod) / container

    def _pod_cgroup(self, run: PodRun) -> str:
        qos = run.pod.get("status", {}).get("qosClass") or qos_class(run.pod)
        return pod_cgroup(self.spec.flavor, qos, run.uid)

    def _cgroup(self, runtime: NodeRuntime, run: PodRun, container_id: str) -> str:
        leaf = container_cgroup(self.spec.flavor, self._pod_cgroup(run), container_id)
        return f"{runtime.cgroup_parent}/{leaf}"

    def _volume_root(self, run: PodRun) -> str:
        return f"/var/lib/kubelet/pods/{run.uid}/volumes"

    def _mounts(self, run: PodRun, container: dict[str, Any]) -> list[tuple[str, str]]:
        volumes = {v["name"]: v for v in run.pod["spec"].get("volumes", []) or []}
        pairs: list[tuple[str, str]] = []
        for mount in container.get("volumeMounts", []) or []:
            volume = volumes.get(mount.get("name"), {})
            if "hostPath" in volume:
                source = str(volume["hostPath"].get("path", "/"))
            else:  # emptyDir, and a plain empty directory for every other kind
                source = f"{self._volume_root(run)}/kubernetes.io~empty-dir/{mount['name']}"
            pairs.append((source, str(mount["mountPath"])))
        return pairs

    def _labels(self, run: PodRun, container: str | None) -> list[str]:
        labels = {"io.kubernetes.pod.name": run.name, "io.kubernetes.pod.namespace": run.namespace,
                  "io.kubernetes.pod.uid": run.uid}
        if container is None:
            labels["io.cri-containerd.kind"] = "sandbox"
        else:
            labels["io.kubernetes.container.name"] = container
            labels["io.cri-containerd.kind"] = "container"
        return [arg for key, value in labels.items() for arg in ("--label", f"{key}={value}")]

    # ---- the pod's lifecycle -------------------------------------------------------------------------
    async def _drive(self, run: PodRun) -> None:
        deadline = run.pod["spec"].get("activeDeadlineSeconds")
        try:
            if deadline is None:
                await self._drive_inner(run)
                return
            started = objects.parse_timestamp(run.pod.get("status", {}).get("startTime"))
            elapsed = (objects.now_utc() - started).total_seconds() if started else 0.0
            try:
                await asyncio.wait_for(self._drive_inner(run), max(0.0, float(deadline) - elapsed))
            except TimeoutError:
                await self._deadline_exceeded(run)
        except asyncio.CancelledError:
            raise
        except NodeLost as err:
            log.warning("pod %s/%s: node lost: %s", run.namespace, run.name, err)
            self._lose(run)
        except Exception:
            log.exception("pod %s/%s failed in the sandbox kubelet", run.namespace, run.name)
            if not await asyncio.to_thread(self._refresh_node, run.node.name):
                self._lose(run)

    async def _deadline_exceeded(self, run: PodRun) -> None:
        """spec.activeDeadlineSeconds passed: kill the containers, the pod Failed (DeadlineExceeded)."""
        with contextlib.suppress(NodeLost):
            await self._teardown(run, remove=False)
        status = run.pod["status"]
        moment = objects.timestamp(objects.now_utc())
        for key in ("containerStatuses", "initContainerStatuses"):
            for entry in status.get(key) or []:
                state = entry.get("state", {})
                if "running" in state:
                    entry["state"] = {"terminated": {
                        "exitCode": 137, "reason": "Error", "startedAt": state["running"].get("startedAt"),
                        "finishedAt": moment, "containerID": entry.get("containerID", "")}}
                entry["ready"] = False
                entry["started"] = False
        for state in run.containers.values():
            state.running = False
        status["phase"] = "Failed"
        status["reason"] = "DeadlineExceeded"
        status["message"] = "Pod was active on the node longer than the specified deadline"
        self._set_condition(run, "ContainersReady", False, "PodFailed")
        self._set_condition(run, "Ready", False, "PodFailed")
        run.on_change()

    def _init_status(self, run: PodRun) -> None:
        spec = run.pod["spec"]
        status = run.pod.setdefault("status", {})
        init_containers = spec.get("initContainers") or []
        resuming = bool(status.get("containerStatuses"))
        status.update({
            "phase": status.get("phase") if resuming and status.get("phase") != "Unknown" else "Pending",
            "hostIP": f"172.18.0.{run.node_index + 2}",
            "hostIPs": [{"ip": f"172.18.0.{run.node_index + 2}"}],
            "podIP": run.pod_ip,
            "podIPs": [{"ip": run.pod_ip}],
            "startTime": status.get("startTime") or objects.timestamp(objects.now_utc()),
            "qosClass": status.get("qosClass") or qos_class(run.pod),
        })
        for container in [*init_containers, *spec.get("containers", [])]:
            run.containers.setdefault(container["name"], ContainerRun(container["name"]))
        if resuming:
            status["phase"] = pod_phase(run.pod)
            return
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

    @staticmethod
    def _waiting(container: dict[str, Any], reason: str) -> dict[str, Any]:
        resolved = resolve_image(container.get("image", ""))
        return {
            "name": container["name"],
            "image": resolved[0] if resolved else container.get("image", ""),
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

    def _entry(self, run: PodRun, name: str, kind: str) -> dict[str, Any]:
        key = {"init": "initContainerStatuses", "app": "containerStatuses",
               "ephemeral": "ephemeralContainerStatuses"}[kind]
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
        runtime = await self._node(run)
        await self._ensure_sandbox(runtime, run)
        spec = run.pod["spec"]
        policy = spec.get("restartPolicy", "Always")
        for container in spec.get("initContainers") or []:
            entry = self._entry(run, container["name"], "init")
            done = entry.get("state", {}).get("terminated", {})
            if done and done.get("exitCode") == 0:
                continue  # resuming a pod whose init containers already completed
            while True:
                exit_code = await self._run_container(run, container, "init")
                if exit_code == 0:
                    break
                if policy == "Never":
                    self._update_phase(run)
                    await self._teardown(run, remove=False)
                    return
                await self._back_off(run, container, "init")
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
        await self._teardown(run, remove=False)

    async def _keep_running(self, run: PodRun, container: dict[str, Any], policy: str) -> None:
        entry = self._entry(run, container["name"], "app")
        terminated = entry.get("state", {}).get("terminated")
        if terminated and not (policy == "Always" or (policy == "OnFailure" and terminated.get("exitCode"))):
            return  # resuming: this one finished for good
        while True:
            exit_code = await self._run_container(run, container, "app")
            if exit_code is None:
                return
            if policy == "Never" or (policy == "OnFailure" and exit_code == 0):
                return
            await self._back_off(run, container, "app")

    async def _back_off(self, run: PodRun, container: dict[str, Any], kind: str) -> None:
        await asyncio.sleep(backoff_delay(int(self._entry(run, container["name"], kind)["restartCount"])))

    async def _image_pull_failure(self, run: PodRun, container: dict[str, Any], kind: str) -> None:
        image = container.get("image", "")
        entry = self._entry(run, container["name"], kind)
        entry["state"] = {"waiting": {"reason": "ErrImagePull",
                                      "message": f'Failed to pull image "{image}": {IMAGE_UNAVAILABLE}'}}
        self._update_phase(run)
        await asyncio.sleep(1.0)
        entry["state"] = {"waiting": {"reason": "ImagePullBackOff",
                                      "message": f'Back-off pulling image "{image}"'}}
        self._update_phase(run)
        await asyncio.Future()  # stays Pending until deleted, like a pull that never succeeds

    async def _pull(self, runtime: NodeRuntime, reference: str, local: PodImage) -> str | None:
        """The stand-in for a pull: tag the local image with the wanted name; its image ID or None."""
        if reference not in runtime.images:
            if local.reference not in runtime.images:
                return None
            result = await runtime.ctr("images", "tag", local.reference, reference)
            if result.returncode != 0 and "already exists" not in result.stderr:
                log.warning("ctr images tag %s %s: %s", local.reference, reference, result.stderr.strip())
                return None
            runtime.images[reference] = runtime.images[local.reference]
        return f"{reference.split('@')[0].rsplit(':', 1)[0]}@{runtime.images[reference]}"

    async def _ensure_sandbox(self, runtime: NodeRuntime, run: PodRun) -> None:
        """RunPodSandbox, unless the pod's pause container runs (adopted after a restart)."""
        async with run.sandbox_lock:
            if not run.sandbox_id:  # adopting: the pod's sandbox that still runs, if any
                result = await runtime.ctr(
                    "containers", "ls", "-q", f'labels."io.kubernetes.pod.uid"=={run.uid},'
                    'labels."io.cri-containerd.kind"==sandbox')
                candidates = result.stdout.split() if result.returncode == 0 else []
                tasks = await runtime.tasks() if candidates else {}
                running = [i for i in candidates if tasks.get(i, (0, ""))[1] == "RUNNING"]
                run.sandbox_id = (running or candidates or [""])[0]
            if run.sandbox_id:
                pid_status = (await runtime.tasks()).get(run.sandbox_id)
                if pid_status and pid_status[1] == "RUNNING":
                    run.sandbox_pid = pid_status[0]
                    return
                await self._remove_containers(runtime, [run.sandbox_id])
            if PAUSE.reference not in runtime.images:
                raise NodeLost(f"{run.node.name}: containerd has no {PAUSE.reference} "
                               "(sandbox up imports it)")
            sandbox_id = secrets.token_hex(32)
            argv = ["run", "-d", "--snapshotter", SNAPSHOTTER,
                    "--cgroup", self._cgroup(runtime, run, sandbox_id),
                    *self._labels(run, None),
                    "--annotation", f"io.kubernetes.cri.sandbox-id={sandbox_id}",
                    "--annotation", "io.kubernetes.cri.container-type=sandbox",
                    "--annotation", f"io.kubernetes.cri.sandbox-name={run.name}",
                    "--annotation", f"io.kubernetes.cri.sandbox-namespace={run.namespace}",
                    "--annotation", f"io.kubernetes.cri.sandbox-uid={run.uid}"]
            if run.pod["spec"].get("hostPID"):
                argv += ["--with-ns", "pid:/proc/1/ns/pid"]
            result = await runtime.ctr(*argv, PAUSE.reference, sandbox_id)
            if result.returncode != 0:
                raise RuntimeError(f"RunPodSandbox for {run.name}: {result.stderr.strip()}")
            run.sandbox_id = sandbox_id
            pid_status = (await runtime.tasks()).get(sandbox_id)
            if not pid_status:
                raise NodeLost(f"{run.node.name}: the sandbox of {run.name} did not start")
            run.sandbox_pid = pid_status[0]
            # The pod's hostname, in the sandbox's UTS namespace (CRI sets it through the OCI spec,
            # which `ctr run` has no flag for).
            await runtime.node_exec("nsenter", f"--uts=/proc/{run.sandbox_pid}/ns/uts", "hostname", run.name)

    async def _run_container(self, run: PodRun, container: dict[str, Any], kind: str) -> int | None:
        """Run the container once (or adopt its running task); its exit code (None: cannot run)."""
        name = container["name"]
        runtime = await self._node(run)
        state = run.containers.setdefault(name, ContainerRun(name))
        entry = self._entry(run, name, kind)
        if state.container_id and "running" in entry.get("state", {}):
            tasks = await runtime.tasks()
            adopted = tasks.get(state.container_id)
            sandbox = tasks.get(run.sandbox_id)
            if adopted and adopted[1] == "RUNNING" and sandbox and sandbox[1] == "RUNNING":
                state.running = True
                entry["ready"] = entry["started"] = True
                self._update_phase(run)
                return await self._wait(runtime, run, container, kind, state.container_id,
                                        entry["state"]["running"]["startedAt"])
            # Gone with its node's containerd (the node container restarted): exit 255, as kubelet says.
            return await self._finish(runtime, run, container, kind, state.container_id, 255,
                                      entry["state"]["running"]["startedAt"], reason="Unknown")
        resolved = resolve_image(container.get("image", ""))
        image_id = await self._pull(runtime, *resolved) if resolved else None
        if resolved is None or image_id is None:
            await self._image_pull_failure(run, container, kind)
            return None
        reference, local = resolved
        await self._ensure_sandbox(runtime, run)
        container_id = secrets.token_hex(32)
        restarts = int(entry.get("restartCount", 0))
        log_file = f"{POD_LOG_DIR}/{self._pod_key(run.pod)}/{name}/{restarts}.log"
        argv = ["run", "-d", "--snapshotter", SNAPSHOTTER,
                "--cgroup", self._cgroup(runtime, run, container_id),
                *self._labels(run, name),
                "--annotation", f"io.kubernetes.cri.sandbox-id={run.sandbox_id}",
                "--annotation", "io.kubernetes.cri.container-type=container",
                "--annotation", f"io.kubernetes.cri.container-name={name}",
                "--annotation", f"io.kubernetes.cri.image-name={reference}",
                *attach.stdio_args(container, log_file),
                "--cwd", container.get("workingDir") or local.working_dir, "--env", f"HOSTNAME={run.name}"]
        for variable in container.get("env", []) or []:
            argv += ["--env", f"{variable['name']}={variable.get('value', '')}"]
        pause_ns = f"/proc/{run.sandbox_pid}/ns"
        argv += ["--with-ns", f"network:{pause_ns}/net", "--with-ns", f"ipc:{pause_ns}/ipc",
                 "--with-ns", f"uts:{pause_ns}/uts"]
        spec = run.pod["spec"]
        target = container.get("targetContainerName")
        if spec.get("hostPID"):
            argv += ["--with-ns", "pid:/proc/1/ns/pid"]
        elif spec.get("shareProcessNamespace"):
            argv += ["--with-ns", f"pid:{pause_ns}/pid"]
        elif kind == "ephemeral" and target in run.containers and run.containers[target].running:
            target_pid = (await runtime.tasks()).get(run.containers[target].container_id, (0, ""))[0]
            if target_pid:
                argv += ["--with-ns", f"pid:/proc/{target_pid}/ns/pid"]
        security = container.get("securityContext") or {}
        if security.get("privileged"):
            argv += ["--privileged"]
        capabilities = security.get("capabilities") or {}
        for flag, key in (("--cap-add", "add"), ("--cap-drop", "drop")):
            for capability in capabilities.get(key) or []:
                argv += [flag, f"CAP_{str(capability).upper().removeprefix('CAP_')}"]
        mounts = self._mounts(run, container)
        if mounts:
            await runtime.node_exec("mkdir", "-p", *(source for source, _ in mounts))
        for source, destination in mounts:
            argv += ["--mount", f"type=bind,src={source},dst={destination},options=rbind:rw"]
        argv += [reference, container_id, *container_argv(container, local)]
        await runtime.node_exec("mkdir", "-p", log_file.rsplit("/", 1)[0])
        started_at = objects.timestamp(objects.now_utc())
        # Before the start, so that an exit at once is not missed; armed for reconcile once it runs.
        exit_future = runtime.expect_exit(container_id, started=False)
        result = await runtime.ctr(*argv)
        if result.returncode != 0:
            runtime.forget(container_id)
            message = result.stderr.strip().removeprefix("ctr: ")
            await self._remove_containers(runtime, [container_id])
            return await self._finish(runtime, run, container, kind, container_id, 128, started_at,
                                      reason="StartError", message=message, created=False)
        runtime.task_started(container_id)
        if state.previous_id:  # kubelet keeps one dead container per container
            await self._remove_containers(runtime, [state.previous_id])
        state.previous_id = state.container_id
        state.container_id = container_id
        state.running = True
        entry.update({"containerID": f"containerd://{container_id}", "imageID": image_id, "image": reference,
                      "started": True, "ready": kind != "ephemeral",  # ephemeral: never ready
                      "state": {"running": {"startedAt": started_at}}})
        self._update_phase(run)
        return await self._wait(runtime, run, container, kind, container_id, started_at, exit_future)

    async def _wait(self, runtime: NodeRuntime, run: PodRun, container: dict[str, Any], kind: str,
                    container_id: str, started_at: str, future: asyncio.Future[int] | None = None) -> int:
        if future is None:  # adopting a running task: it may have exited before we listened
            future = runtime.expect_exit(container_id)
            await runtime.reconcile()
        exit_code = await asyncio.shield(future)
        with contextlib.suppress(NodeLost):
            await runtime.delete_task(container_id)
        return await self._finish(runtime, run, container, kind, container_id, exit_code, started_at)

    async def _finish(self, runtime: NodeRuntime, run: PodRun, container: dict[str, Any], kind: str,
                      container_id: str, exit_code: int, started_at: str, reason: str | None = None,
                      message: str | None = None, created: bool = True) -> int:
        name = container["name"]
        state = run.containers[name]
        state.running = False
        if not await asyncio.to_thread(self._refresh_node, run.node.name):
            raise NodeLost(run.node.name)
        entry = self._entry(run, name, kind)
        full_id = f"containerd://{container_id}"
        terminated: dict[str, Any] = {
            "exitCode": exit_code, "reason": reason or ("Completed" if exit_code == 0 else "Error"),
            "startedAt": started_at, "finishedAt": objects.timestamp(objects.now_utc())}
        if message:
            terminated["message"] = message
        if created:
            terminated["containerID"] = full_id
        entry["state"] = {"terminated": terminated}
        entry["ready"] = kind == "init" and exit_code == 0
        entry["started"] = False
        policy = run.pod["spec"].get("restartPolicy", "Always")
        will_restart = policy == "Always" or (policy == "OnFailure" and exit_code != 0)
        if kind == "init":
            will_restart = policy != "Never" and exit_code != 0
        if kind == "ephemeral":
            will_restart = False
        if will_restart:
            restarts = int(entry.get("restartCount", 0))
            entry["lastState"] = {"terminated": terminated}
            entry["restartCount"] = restarts + 1
            delay = backoff_delay(restarts + 1)
            entry["state"] = {"waiting": {"reason": "ContainerCreating"}} if not delay else {"waiting": {
                "reason": "CrashLoopBackOff",
                "message": (f"back-off {int(delay)}s restarting failed container={name} "
                            f"pod={run.name}_{run.namespace}({run.uid})")}}
        self._update_phase(run)
        return exit_code

    # ---- ephemeral containers --------------------------------------------------------------------------
    async def add_ephemeral(self, pod: Pod, container: dict[str, Any]) -> None:
        """`kubectl debug`: run one more container in the pod (in its target's PID namespace)."""
        run = self._pods.get(str(pod["metadata"]["uid"]))
        if run is None or run.lost:
            return
        statuses = run.pod["status"].setdefault("ephemeralContainerStatuses", [])
        resolved = resolve_image(container.get("image", ""))
        image = resolved[0] if resolved else container.get("image", "")
        statuses.append({"name": container["name"], "image": image,
                         "imageID": "", "restartCount": 0, "ready": False,
                         "state": {"waiting": {"reason": "ContainerCreating"}}, "lastState": {}})
        run.on_change()

        async def go() -> None:
            with contextlib.suppress(NodeLost):
                await self._run_container(run, container, "ephemeral")

        task = asyncio.create_task(go(), name=f"ephemeral {run.name}/{container['name']}")
        run.containers.setdefault(container["name"], ContainerRun(container["name"]))
        self._ephemeral_tasks.add(task)
        task.add_done_callback(self._ephemeral_tasks.discard)

    # ---- teardown ----------------------------------------------------------------------------------
    async def _remove_containers(self, runtime: NodeRuntime, ids: list[str]) -> None:
        ids = [i for i in ids if i]
        if ids:
            await asyncio.gather(*(runtime.ctr("tasks", "delete", "--force", i) for i in ids))
            await runtime.ctr("containers", "delete", *ids)

    async def _teardown(self, run: PodRun, remove: bool) -> None:
        """StopPodSandbox (and with ``remove`` RemovePodSandbox): SIGTERM, grace, SIGKILL, delete."""
        runtime = self._nodes[run.node.name]
        if not await asyncio.to_thread(self._refresh_node, run.node.name):
            return
        result = await runtime.ctr("containers", "ls", "-q", f'labels."io.kubernetes.pod.uid"=={run.uid}')
        ids = result.stdout.split() if result.returncode == 0 else []
        tasks = await runtime.tasks()
        live = [i for i in ids if tasks.get(i, (0, ""))[1] == "RUNNING"]
        # Exits come from containerd's events: SIGTERM to all at once, the grace period, then SIGKILL.
        exits = {i: runtime.waiters.get(i) or runtime.expect_exit(i) for i in live}
        await asyncio.gather(*(runtime.ctr("tasks", "kill", "--signal", "SIGTERM", i) for i in live))
        if exits:
            _, pending = await asyncio.wait(exits.values(), timeout=GRACE_SECONDS)
            stubborn = [i for i, future in exits.items() if future in pending]
            await asyncio.gather(*(runtime.ctr("tasks", "kill", "--signal", "SIGKILL", i) for i in stubborn))
            if pending:
                await asyncio.wait(pending, timeout=CALL_TIMEOUT)
        for state in run.containers.values():
            state.running = False
        keep = set() if remove else {s.container_id for s in run.containers.values()}
        await self._remove_containers(runtime, [i for i in ids if i not in keep])
        await asyncio.gather(*(runtime.ctr("tasks", "delete", "--force", i) for i in ids if i in keep))
        run.sandbox_id = ""
        run.sandbox_pid = 0
        if remove:
            await runtime.node_exec("rm", "-rf", f"/var/lib/kubelet/pods/{run.uid}")
            if runtime.cgroup_parent:
                await asyncio.to_thread(self._remove_pod_cgroups, runtime.cgroup_parent,
                                        self._pod_cgroup(run))

    @staticmethod
    def _remove_pod_cgroups(parent: str, pod_dir: str) -> None:
        """runc removed each container's cgroup; the pod's own goes with the pod (every hierarchy)."""
        root = Path(cgroups.CGROUP_ROOT)
        with contextlib.suppress(OSError):
            for mount in root.iterdir():
                cgroups.remove_tree(mount / parent.lstrip("/") / pod_dir, timeout=1.0)
