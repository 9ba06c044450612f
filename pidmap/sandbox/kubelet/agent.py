"""The kubelet stand-in the API server talks to (contracts.Kubelet): one for every node of the
sandbox. It keeps a pod worker per pod, a ``ctr`` runtime and its exit-event watcher per node, and
the node health poller that loses and resumes a node's pods."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from pidmap.sandbox.cluster.layout import ClusterSpec, StatePaths
from pidmap.sandbox.contracts import ContainerNotFound, ContainerNotRunning, ExecProcess, Pod
from pidmap.sandbox.kubelet.ctr import CtrRuntime
from pidmap.sandbox.kubelet.health import NodeHealth
from pidmap.sandbox.kubelet.pod_worker import STATUS_KEYS, ContainerRun, PodWorker, log_directory
from pidmap.sandbox.kubelet.runtime import NodeLost

log = logging.getLogger("pidmap.sandbox.kubelet")


class Kubelet:
    """One kubelet stand-in for every node of the sandbox (implements contracts.Kubelet)."""

    def __init__(self, spec: ClusterSpec, paths: StatePaths, docker_client: Any = None) -> None:
        self.spec = spec
        self.paths = paths
        self.health = NodeHealth([node.name for node in spec.nodes], docker_client)
        docker_cli = shutil.which("docker") or "docker"
        self._runtimes = {node.name: CtrRuntime(node.name, docker_cli, flavor=spec.flavor,
                                                log_root=paths.root / "logs")
                          for node in spec.nodes}
        self._pods: dict[str, PodWorker] = {}
        self._next_ip: dict[int, int] = {}
        self._poller: asyncio.Task[None] | None = None
        with contextlib.suppress(RuntimeError):
            asyncio.get_running_loop()
            self._ensure_poller()

    # ---- nodes -------------------------------------------------------------------------------
    def node_ready(self, node: str) -> bool:
        return self.health.ready(node)

    def _ensure_poller(self) -> None:
        if self._poller is None:
            self._poller = asyncio.create_task(self.health.poll(self._mark_node_lost, self._resume_node))
            for runtime in self._runtimes.values():
                runtime.events = asyncio.create_task(runtime.watch_events(self._ready_check(runtime.node)))

    def _ready_check(self, node: str) -> Callable[[], bool]:
        return lambda: self.node_ready(node)

    def _answering(self, node: str) -> Callable[[], Awaitable[bool]]:
        return lambda: self.health.answering(node)

    def _mark_node_lost(self, node: str) -> None:
        for worker in list(self._pods.values()):
            if worker.node == node and not worker.lost:
                worker.lose()

    def _resume_node(self, node: str) -> None:
        """The node answers again: its lost pods resume (adopted or started again)."""
        for worker in list(self._pods.values()):
            if worker.node == node:
                worker.resume()

    def _worker(self, pod: Pod, on_change: Callable[[], None], pod_ip: str) -> PodWorker | None:
        found = [(i, n) for i, n in enumerate(self.spec.nodes) if n.name == pod["spec"].get("nodeName")]
        if not found:
            return None
        index, node = found[0]
        return PodWorker(pod, node=node.name, node_index=index, runtime=self._runtimes[node.name],
                         answering=self._answering(node.name), on_change=on_change, pod_ip=pod_ip,
                         flavor=self.spec.flavor)

    # ---- contracts.Kubelet ----------------------------------------------------------------------
    async def start_pod(self, pod: Pod, on_change: Callable[[], None]) -> None:
        self._ensure_poller()
        status = pod.setdefault("status", {})
        pod_ip = status.get("podIP") or ""
        worker = self._worker(pod, on_change, pod_ip)
        if worker is None:  # a node this sandbox does not have: no kubelet would ever pick the pod up
            log.warning("pod %s: node %r is not in the sandbox; left Pending",
                        pod["metadata"]["name"], pod["spec"].get("nodeName"))
            return
        old = self._pods.pop(worker.uid, None)
        if old and old.task:
            old.task.cancel()
        if status.get("phase") in ("Succeeded", "Failed"):
            # A finished pod read back from the store: nothing to run.
            self._pods[worker.uid] = worker
            return
        if not pod_ip:
            self._next_ip[worker.node_index] = self._next_ip.get(worker.node_index, 1) + 1
            worker.pod_ip = f"10.244.{worker.node_index}.{self._next_ip[worker.node_index]}"
        # A pod read back from the store (the API server restarted): adopt what containerd runs.
        worker.adopt()
        self._pods[worker.uid] = worker
        worker.start()

    async def delete_pod(self, pod: Pod) -> None:
        worker = self._pods.pop(str(pod["metadata"]["uid"]), None)
        if worker is None:  # never driven by this process (e.g. a deletion the last server began)
            worker = self._worker(pod, lambda: None, "")
            if worker is None:
                return
        if worker.task:
            worker.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await worker.task
        with contextlib.suppress(NodeLost):
            await worker.teardown(remove=True)

    async def add_ephemeral(self, pod: Pod, container: dict[str, Any]) -> None:
        worker = self._pods.get(str(pod["metadata"]["uid"]))
        if worker is not None:
            worker.add_ephemeral(container)

    def exec(self, pod: Pod, container: str, command: list[str]) -> ExecProcess:
        runtime, container_id = self._running(pod, container)
        return runtime.exec(container_id, command)

    def attach(self, pod: Pod, container: str) -> ExecProcess:
        runtime, container_id = self._running(pod, container)
        return runtime.attach(container_id)

    def _running(self, pod: Pod, container: str) -> tuple[CtrRuntime, str]:
        """The runtime and containerd ID of the pod's running ``container``; ContainerNotFound,
        ContainerNotRunning."""
        worker = self._pods.get(str(pod["metadata"]["uid"]))
        names = [c["name"] for c in pod["spec"].get("containers", [])]
        names += [c["name"] for c in pod["spec"].get("initContainers", []) or []]
        names += [c["name"] for c in pod["spec"].get("ephemeralContainers", []) or []]
        if container not in names:
            raise ContainerNotFound(f"container {container} is not valid for pod {pod['metadata']['name']}")
        state: ContainerRun | None = worker.containers.get(container) if worker else None
        if (worker is None or state is None or not (state.running or state.adopting) or not state.container_id
                or worker.lost):
            raise ContainerNotRunning(f"container {container} is not running")
        return self._runtimes[worker.node], state.container_id

    def log_path(self, pod: Pod, container: str, previous: bool = False) -> Path | None:
        """The log file of the container's current (or previous) run, as /var/log/pods lays it out."""
        status = pod.get("status", {})
        runtime = self._runtimes.get(pod.get("spec", {}).get("nodeName", ""))
        for key in STATUS_KEYS.values():
            for entry in status.get(key) or []:
                if entry.get("name") == container:
                    attempt = int(entry.get("restartCount", 0)) - (1 if previous else 0)
                    return runtime.logs(log_directory(pod), container, attempt) if runtime else None
        return None

    async def close(self) -> None:
        tasks = [worker.task for worker in self._pods.values() if worker.task]
        if self._poller:
            tasks.append(self._poller)
        tasks += [runtime.events for runtime in self._runtimes.values() if runtime.events]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
