"""The pod worker: what kubelet decides for one pod, through the ``Runtime`` protocol only.

Init containers in order to completion, then the app containers; restarts per
``spec.restartPolicy`` with kubelet's back-off (at once, then 10 s doubling to 5 min:
CrashLoopBackOff); ``activeDeadlineSeconds``; and ``pod["status"]`` (phase, conditions, hostIP,
podIP, startTime, qosClass, the container statuses) kept true to Kubernetes' rules, with
``on_change`` called after every change. A pod whose node stops answering is ``Unknown``
(NodeLost) until it answers again; then its containers still running are adopted, the others are
started again in a new sandbox. A worker made for a pod read back from the store (the API server
restarted) adopts its running containers the same way: the runtime is the source of truth.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from pidmap.sandbox.api import meta
from pidmap.sandbox.cluster.catalog import PodImage
from pidmap.sandbox.contracts import Pod
from pidmap.sandbox.kubelet.images import IMAGE_UNAVAILABLE, container_argv, resolve_image
from pidmap.sandbox.kubelet.runtime import (
    ContainerConfig,
    ImageUnavailable,
    NodeLost,
    PodSandboxConfig,
    Runtime,
    StartFailed,
)

log = logging.getLogger("pidmap.sandbox.kubelet")

BACKOFF_INITIAL_SECONDS = 10.0
BACKOFF_MAX_SECONDS = 300.0
STATUS_KEYS = {"init": "initContainerStatuses", "app": "containerStatuses",
               "ephemeral": "ephemeralContainerStatuses"}


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


def log_directory(pod: Pod) -> str:
    meta_ = pod["metadata"]
    return f"{meta_.get('namespace', 'default')}_{meta_['name']}_{meta_['uid']}"


@dataclass
class ContainerRun:
    name: str
    container_id: str = ""
    previous_id: str = ""  # the dead container kept for `kubectl logs --previous` (kubelet keeps one)
    running: bool = False
    # Read back as running from the store (the API server restarted) and not yet confirmed by the
    # runtime: as on a node whose kubelet restarted, exec goes to the runtime meanwhile.
    adopting: bool = False


class PodWorker:
    """Drives one pod on one node's runtime (kubelet's podWorkers + SyncPod, for what the sandbox has)."""

    def __init__(self, pod: Pod, *, node: str, node_index: int, runtime: Runtime,
                 answering: Callable[[], Awaitable[bool]], on_change: Callable[[], None], pod_ip: str,
                 flavor: str, sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        self.pod = pod
        self.node = node
        self.node_index = node_index
        self.runtime = runtime
        self.answering = answering  # does the node answer (asked now)?
        self.on_change = on_change
        self.pod_ip = pod_ip
        self.flavor = flavor
        self.sleep = sleep
        self.sandbox_id = ""
        self.containers: dict[str, ContainerRun] = {}
        self.task: asyncio.Task[None] | None = None
        self.lost = False
        self._sandbox_lock = asyncio.Lock()
        self._ephemeral_tasks: set[asyncio.Task[None]] = set()

    @property
    def uid(self) -> str:
        return str(self.pod["metadata"]["uid"])

    @property
    def name(self) -> str:
        return str(self.pod["metadata"]["name"])

    @property
    def namespace(self) -> str:
        return str(self.pod["metadata"].get("namespace", "default"))

    def sandbox_config(self) -> PodSandboxConfig:
        spec = self.pod["spec"]
        qos = self.pod.get("status", {}).get("qosClass") or qos_class(self.pod)
        return PodSandboxConfig(self.uid, self.name, self.namespace, pod_cgroup(self.flavor, qos, self.uid),
                                host_pid=bool(spec.get("hostPID")),
                                share_process_namespace=bool(spec.get("shareProcessNamespace")))

    def adopt(self) -> None:
        """A pod read back from the store: the containers its statuses name are the runtime's."""
        status = self.pod.get("status", {})
        for key in STATUS_KEYS.values():
            for entry in status.get(key) or []:
                container_id = str(entry.get("containerID", "")).removeprefix("containerd://")
                running = bool(container_id) and "running" in (entry.get("state") or {})
                self.containers[entry["name"]] = ContainerRun(entry["name"], container_id, adopting=running)

    def start(self) -> None:
        self.task = asyncio.create_task(self.drive(), name=f"pod {self.namespace}/{self.name}")

    # ---- node lost and back --------------------------------------------------------------------
    def lose(self) -> None:
        status = self.pod["status"]
        if status.get("phase") in ("Succeeded", "Failed"):
            return
        self.lost = True
        if self.task and self.task is not asyncio.current_task():
            self.task.cancel()
        status["phase"] = "Unknown"
        status["reason"] = "NodeLost"
        status["message"] = f"Node {self.node} which was running pod {self.name} is unresponsive"
        for container in self.containers.values():
            container.running = container.adopting = False
        for key in STATUS_KEYS.values():
            for entry in status.get(key) or []:
                entry["ready"] = False
        self._set_condition("Ready", False, "NodeLost")
        self._set_condition("ContainersReady", False, "NodeLost")
        self.on_change()

    def resume(self) -> None:
        """The node answers again: a lost pod resumes (adopted or started again)."""
        if self.lost and (self.task is None or self.task.done()):
            self.lost = False
            self.pod["status"].pop("reason", None)
            self.pod["status"].pop("message", None)
            self.start()

    # ---- the pod's lifecycle ---------------------------------------------------------------------
    async def drive(self) -> None:
        deadline = self.pod["spec"].get("activeDeadlineSeconds")
        try:
            if deadline is None:
                await self._drive()
                return
            started = meta.parse_timestamp(self.pod.get("status", {}).get("startTime"))
            elapsed = (meta.now_utc() - started).total_seconds() if started else 0.0
            try:
                await asyncio.wait_for(self._drive(), max(0.0, float(deadline) - elapsed))
            except TimeoutError:
                await self._deadline_exceeded()
        except asyncio.CancelledError:
            raise
        except NodeLost as err:
            log.warning("pod %s/%s: node lost: %s", self.namespace, self.name, err)
            self.lose()
        except Exception:
            log.exception("pod %s/%s failed in the sandbox kubelet", self.namespace, self.name)
            if not await self.answering():
                self.lose()

    async def _deadline_exceeded(self) -> None:
        """spec.activeDeadlineSeconds passed: kill the containers, the pod Failed (DeadlineExceeded)."""
        with contextlib.suppress(NodeLost):
            await self.teardown(remove=False)
        status = self.pod["status"]
        moment = meta.timestamp(meta.now_utc())
        for key in ("containerStatuses", "initContainerStatuses"):
            for entry in status.get(key) or []:
                state = entry.get("state", {})
                if "running" in state:
                    entry["state"] = {"terminated": {
                        "exitCode": 137, "reason": "Error", "startedAt": state["running"].get("startedAt"),
                        "finishedAt": moment, "containerID": entry.get("containerID", "")}}
                entry["ready"] = False
                entry["started"] = False
        for state in self.containers.values():
            state.running = False
        status["phase"] = "Failed"
        status["reason"] = "DeadlineExceeded"
        status["message"] = "Pod was active on the node longer than the specified deadline"
        self._set_condition("ContainersReady", False, "PodFailed")
        self._set_condition("Ready", False, "PodFailed")
        self.on_change()

    def _init_status(self) -> None:
        spec = self.pod["spec"]
        status = self.pod.setdefault("status", {})
        init_containers = spec.get("initContainers") or []
        resuming = bool(status.get("containerStatuses"))
        status.update({
            "phase": status.get("phase") if resuming and status.get("phase") != "Unknown" else "Pending",
            "hostIP": f"172.18.0.{self.node_index + 2}",
            "hostIPs": [{"ip": f"172.18.0.{self.node_index + 2}"}],
            "podIP": self.pod_ip,
            "podIPs": [{"ip": self.pod_ip}],
            "startTime": status.get("startTime") or meta.timestamp(meta.now_utc()),
            "qosClass": status.get("qosClass") or qos_class(self.pod),
        })
        for container in [*init_containers, *spec.get("containers", [])]:
            self.containers.setdefault(container["name"], ContainerRun(container["name"]))
        if resuming:
            status["phase"] = pod_phase(self.pod)
            return
        status.pop("reason", None)
        status.pop("message", None)
        status["conditions"] = []
        self._set_condition("PodScheduled", True)
        self._set_condition("Initialized", not init_containers,
                            None if not init_containers else "ContainersNotInitialized")
        self._set_condition("ContainersReady", False, "ContainersNotReady")
        self._set_condition("Ready", False, "ContainersNotReady")
        reason = "PodInitializing" if init_containers else "ContainerCreating"
        if init_containers:
            status["initContainerStatuses"] = [_waiting(c, "PodInitializing") for c in init_containers]
        else:
            status.pop("initContainerStatuses", None)
        status["containerStatuses"] = [_waiting(c, reason) for c in spec.get("containers", [])]

    def _set_condition(self, kind: str, value: bool, reason: str | None = None) -> None:
        conditions: list[dict[str, Any]] = self.pod["status"].setdefault("conditions", [])
        text = "True" if value else "False"
        existing = next((c for c in conditions if c["type"] == kind), None)
        moment = meta.timestamp(meta.now_utc())
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

    def _entry(self, name: str, kind: str) -> dict[str, Any]:
        return next(e for e in self.pod["status"][STATUS_KEYS[kind]] if e["name"] == name)

    def _update_phase(self) -> None:
        status = self.pod["status"]
        spec = self.pod["spec"]
        phase = pod_phase(self.pod)
        status["phase"] = phase
        ready = all(e.get("ready") for e in status.get("containerStatuses") or [])
        init_done = all("terminated" in e.get("state", {}) and e["state"]["terminated"].get("exitCode") == 0
                        for e in status.get("initContainerStatuses") or [])
        if spec.get("initContainers"):
            self._set_condition("Initialized", init_done, "ContainersNotInitialized")
        finished = phase in ("Succeeded", "Failed")
        reason = "PodCompleted" if finished else "ContainersNotReady"
        self._set_condition("ContainersReady", ready and not finished, reason)
        self._set_condition("Ready", ready and not finished, reason)
        self.on_change()

    async def _node(self) -> None:
        if not await self.answering():
            raise NodeLost(self.node)

    async def _drive(self) -> None:
        self._init_status()
        self.on_change()
        await self._node()
        await self._ensure_sandbox()
        spec = self.pod["spec"]
        policy = spec.get("restartPolicy", "Always")
        for container in spec.get("initContainers") or []:
            entry = self._entry(container["name"], "init")
            done = entry.get("state", {}).get("terminated", {})
            if done and done.get("exitCode") == 0:
                continue  # resuming a pod whose init containers already completed
            while True:
                exit_code = await self._run_container(container, "init")
                if exit_code == 0:
                    break
                if policy == "Never":
                    self._update_phase()
                    await self.teardown(remove=False)
                    return
                await self._back_off(container, "init")
        lost = False
        try:
            # A TaskGroup, so that a node lost under one container stops its siblings too.
            async with asyncio.TaskGroup() as group:
                for container in spec.get("containers", []):
                    group.create_task(self._keep_running(container, policy))
        except* NodeLost:
            lost = True
        if lost:
            raise NodeLost(self.node)
        self._update_phase()
        await self.teardown(remove=False)

    async def _keep_running(self, container: dict[str, Any], policy: str) -> None:
        entry = self._entry(container["name"], "app")
        terminated = entry.get("state", {}).get("terminated")
        if terminated and not (policy == "Always" or (policy == "OnFailure" and terminated.get("exitCode"))):
            return  # resuming: this one finished for good
        while True:
            exit_code = await self._run_container(container, "app")
            if exit_code is None:
                return
            if policy == "Never" or (policy == "OnFailure" and exit_code == 0):
                return
            await self._back_off(container, "app")

    async def _back_off(self, container: dict[str, Any], kind: str) -> None:
        await self.sleep(backoff_delay(int(self._entry(container["name"], kind)["restartCount"])))

    async def _image_pull_failure(self, container: dict[str, Any], kind: str) -> None:
        image = container.get("image", "")
        entry = self._entry(container["name"], kind)
        entry["state"] = {"waiting": {"reason": "ErrImagePull",
                                      "message": f'Failed to pull image "{image}": {IMAGE_UNAVAILABLE}'}}
        self._update_phase()
        await self.sleep(1.0)
        entry["state"] = {"waiting": {"reason": "ImagePullBackOff",
                                      "message": f'Back-off pulling image "{image}"'}}
        self._update_phase()
        await asyncio.Future()  # stays Pending until deleted, like a pull that never succeeds

    async def _ensure_sandbox(self) -> None:
        """RunPodSandbox, unless the pod's pause container runs (adopted after a restart)."""
        async with self._sandbox_lock:
            self.sandbox_id = await self.runtime.run_pod_sandbox(self.sandbox_config(), self.sandbox_id)

    def _container_config(self, container: dict[str, Any], kind: str, reference: str, local: PodImage,
                          attempt: int) -> ContainerConfig:
        target = self.containers.get(container.get("targetContainerName") or "")
        security = container.get("securityContext") or {}
        capabilities = security.get("capabilities") or {}
        return ContainerConfig(
            name=container["name"], reference=reference, image=local,
            argv=tuple(container_argv(container, local)),
            working_dir=container.get("workingDir") or local.working_dir, attempt=attempt,
            env=tuple((str(v["name"]), str(v.get("value", ""))) for v in container.get("env", []) or []),
            mounts=tuple(self._mounts(container)), privileged=bool(security.get("privileged")),
            cap_add=tuple(str(c) for c in capabilities.get("add") or []),
            cap_drop=tuple(str(c) for c in capabilities.get("drop") or []),
            target_container_id=target.container_id if kind == "ephemeral" and target and target.running
            else "",
            stdin=bool(container.get("stdin")))

    def _mounts(self, container: dict[str, Any]) -> list[tuple[str, str]]:
        volumes = {v["name"]: v for v in self.pod["spec"].get("volumes", []) or []}
        pairs: list[tuple[str, str]] = []
        for mount in container.get("volumeMounts", []) or []:
            volume = volumes.get(mount.get("name"), {})
            if "hostPath" in volume:
                source = str(volume["hostPath"].get("path", "/"))
            else:  # emptyDir, and a plain empty directory for every other kind
                source = f"/var/lib/kubelet/pods/{self.uid}/volumes/kubernetes.io~empty-dir/{mount['name']}"
            pairs.append((source, str(mount["mountPath"])))
        return pairs

    async def _run_container(self, container: dict[str, Any], kind: str) -> int | None:
        """Run the container once (or adopt its running task); its exit code (None: cannot run)."""
        name = container["name"]
        await self._node()
        state = self.containers.setdefault(name, ContainerRun(name))
        entry = self._entry(name, kind)
        if state.container_id and "running" in entry.get("state", {}):
            running = await self.runtime.status(state.container_id, self.sandbox_id)
            state.adopting = False
            started_at = entry["state"]["running"]["startedAt"]
            if state.container_id in running and self.sandbox_id in running:
                state.running = True
                entry["ready"] = entry["started"] = True
                self._update_phase()
                return await self._wait(container, kind, state.container_id, started_at)
            # Gone with its node's containerd (the node container restarted): exit 255, as kubelet says.
            return await self._finish(container, kind, state.container_id, 255, started_at, reason="Unknown")
        resolved = resolve_image(container.get("image", ""))
        if resolved is None:
            await self._image_pull_failure(container, kind)
            return None
        await self._ensure_sandbox()
        config = self._container_config(container, kind, *resolved, int(entry.get("restartCount", 0)))
        started_at = meta.timestamp(meta.now_utc())
        try:
            started = await self.runtime.start(self.sandbox_id, self.sandbox_config(), config)
        except ImageUnavailable:
            await self._image_pull_failure(container, kind)
            return None
        except StartFailed as err:
            return await self._finish(container, kind, "", 128, started_at, reason="StartError",
                                      message=str(err))
        if state.previous_id:  # kubelet keeps one dead container per container
            await self.runtime.remove_container(state.previous_id)
        state.previous_id = state.container_id
        state.container_id = started.container_id
        state.running = True
        entry.update({"containerID": f"containerd://{started.container_id}", "imageID": started.image_id,
                      "image": resolved[0], "started": True,
                      "ready": kind != "ephemeral",  # ephemeral: never ready
                      "state": {"running": {"startedAt": started_at}}})
        self._update_phase()
        return await self._wait(container, kind, started.container_id, started_at)

    async def _wait(self, container: dict[str, Any], kind: str, container_id: str, started_at: str) -> int:
        exit_code = await self.runtime.wait(container_id)
        return await self._finish(container, kind, container_id, exit_code, started_at)

    async def _finish(self, container: dict[str, Any], kind: str, container_id: str, exit_code: int,
                      started_at: str, reason: str | None = None, message: str | None = None) -> int:
        """Record the container's end (``container_id`` empty: it was never created) and whether
        and when it restarts."""
        name = container["name"]
        state = self.containers[name]
        state.running = False
        await self._node()
        entry = self._entry(name, kind)
        terminated: dict[str, Any] = {
            "exitCode": exit_code, "reason": reason or ("Completed" if exit_code == 0 else "Error"),
            "startedAt": started_at, "finishedAt": meta.timestamp(meta.now_utc())}
        if message:
            terminated["message"] = message
        if container_id:
            terminated["containerID"] = f"containerd://{container_id}"
        entry["state"] = {"terminated": terminated}
        entry["ready"] = kind == "init" and exit_code == 0
        entry["started"] = False
        policy = self.pod["spec"].get("restartPolicy", "Always")
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
                            f"pod={self.name}_{self.namespace}({self.uid})")}}
        self._update_phase()
        return exit_code

    # ---- ephemeral containers ----------------------------------------------------------------------
    def add_ephemeral(self, container: dict[str, Any]) -> None:
        """`kubectl debug`: run one more container in the pod (in its target's PID namespace)."""
        if self.lost:
            return
        statuses = self.pod["status"].setdefault("ephemeralContainerStatuses", [])
        resolved = resolve_image(container.get("image", ""))
        image = resolved[0] if resolved else container.get("image", "")
        statuses.append({"name": container["name"], "image": image,
                         "imageID": "", "restartCount": 0, "ready": False,
                         "state": {"waiting": {"reason": "ContainerCreating"}}, "lastState": {}})
        self.on_change()

        async def go() -> None:
            with contextlib.suppress(NodeLost):
                await self._run_container(container, "ephemeral")

        task = asyncio.create_task(go(), name=f"ephemeral {self.name}/{container['name']}")
        self.containers.setdefault(container["name"], ContainerRun(container["name"]))
        self._ephemeral_tasks.add(task)
        task.add_done_callback(self._ephemeral_tasks.discard)

    # ---- teardown ------------------------------------------------------------------------------------
    async def teardown(self, remove: bool) -> None:
        """StopPodSandbox (and with ``remove`` RemovePodSandbox)."""
        if not await self.answering():
            return
        config = self.sandbox_config()
        keep = () if remove else {s.container_id for s in self.containers.values()}
        try:
            await self.runtime.stop_pod_sandbox(config, keep)
        finally:
            for state in self.containers.values():
                state.running = False
        self.sandbox_id = ""
        if remove:
            await self.runtime.remove_pod_sandbox(config)


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
