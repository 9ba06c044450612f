"""The kubelet's pod worker against an in-memory runtime: restart policies, kubelet's back-off
steps, CrashLoopBackOff, init containers in order, phase transitions.

The worker reaches containers only through the CRI-shaped ``Runtime`` protocol, so a runtime whose
containers are futures is enough to hold it to Kubernetes' rules (pkg/kubelet: getPhase,
podWorkers, the container back-off). The real runtime, containerd driven with ``ctr``, is held to
the same statuses in tests/integration/test_sandbox_kubelet.py and the sandbox e2e tests.
"""

from __future__ import annotations

import asyncio
import copy
import uuid
from collections.abc import Awaitable, Callable, Collection
from pathlib import Path
from typing import Any

from pidmap.sandbox.contracts import ExecProcess
from pidmap.sandbox.kubelet.pod_worker import PodWorker, backoff_delay
from pidmap.sandbox.kubelet.runtime import (
    ContainerConfig,
    PodSandboxConfig,
    Runtime,
    Started,
    StartFailed,
)


class FakeRuntime:
    """Containers are futures of their exit codes. ``exits[name]``: the codes of its next runs, each
    an exit at once; a run with no code left runs until ``finish(name, code)`` or a stop."""

    def __init__(self, exits: dict[str, list[int]] | None = None,
                 refuse: dict[str, str] | None = None) -> None:
        self.exits = {name: list(codes) for name, codes in (exits or {}).items()}
        self.refuse = dict(refuse or {})  # name -> the runtime's reason for a StartFailed
        self.started: list[str] = []  # container names, in the order they were started
        self.sandboxes: list[str] = []
        self.removed: list[str] = []
        self.stopped = 0
        self._runs: dict[str, asyncio.Future[int]] = {}
        self._names: dict[str, str] = {}
        self._by_uid: dict[str, str] = {}

    async def run_pod_sandbox(self, pod: PodSandboxConfig, current: str = "") -> str:
        current = current or self._by_uid.get(pod.uid, "")  # as containerd is asked by the pod's uid
        if current and current in self.sandboxes:
            return current
        self.sandboxes.append(f"sandbox-{len(self.sandboxes)}")
        self._by_uid[pod.uid] = self.sandboxes[-1]
        return self.sandboxes[-1]

    async def start(self, sandbox_id: str, pod: PodSandboxConfig, container: ContainerConfig) -> Started:
        assert sandbox_id == self.sandboxes[-1], "a container started outside the pod's sandbox"
        if container.name in self.refuse:
            raise StartFailed(self.refuse[container.name])
        container_id = f"{container.name}-{len(self.started)}"
        self.started.append(container.name)
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        codes = self.exits.get(container.name)
        if codes:
            future.set_result(codes.pop(0))
        self._runs[container_id] = future
        self._names[container_id] = container.name
        return Started(container_id, f"{container.reference.rsplit(':', 1)[0]}@sha256:fake")

    async def wait(self, container_id: str) -> int:
        return await asyncio.shield(self._runs[container_id])

    async def status(self, *container_ids: str) -> set[str]:
        live = {i for i, future in self._runs.items() if not future.done()} | set(self.sandboxes)
        return live & set(container_ids)

    def exec(self, container_id: str, command: list[str]) -> ExecProcess:
        raise NotImplementedError

    def attach(self, container_id: str) -> ExecProcess:
        raise NotImplementedError

    async def stop_pod_sandbox(self, pod: PodSandboxConfig, keep: Collection[str] = ()) -> None:
        self.stopped += 1
        for future in self._runs.values():
            if not future.done():
                future.set_result(137)

    async def remove_pod_sandbox(self, pod: PodSandboxConfig) -> None:
        self.sandboxes.clear()

    async def remove_container(self, container_id: str) -> None:
        self.removed.append(container_id)

    def logs(self, log_directory: str, container: str, attempt: int) -> Path | None:
        return None

    def finish(self, name: str, code: int) -> None:
        running = [i for i, f in self._runs.items() if self._names[i] == name and not f.done()]
        assert running, f"{name} is not running"
        self._runs[running[0]].set_result(code)


class Recorder:
    """What the API server would store after each on_change: the pod as it was then."""

    def __init__(self) -> None:
        self.snapshots: list[dict[str, Any]] = []
        self.pod: dict[str, Any] = {}

    def __call__(self) -> None:
        self.snapshots.append(copy.deepcopy(self.pod.get("status", {})))

    def phases(self) -> list[str]:
        seen: list[str] = []
        for status in self.snapshots:
            if status.get("phase") and (not seen or seen[-1] != status["phase"]):
                seen.append(status["phase"])
        return seen

    def reasons(self, container: str) -> list[str]:
        found = []
        for status in self.snapshots:
            for entry in status.get("containerStatuses") or []:
                reason = entry["state"].get("waiting", {}).get("reason")
                if entry["name"] == container and reason and reason not in found:
                    found.append(reason)
        return found


def make_pod(containers: list[dict[str, Any]], **spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": "p", "namespace": "default", "uid": str(uuid.uuid4())},
            "spec": {"nodeName": "n1", "containers": containers, **spec}, "status": {}}


def app(name: str = "app") -> dict[str, Any]:
    return {"name": name, "image": "busybox", "command": ["sh", "-c", "true"]}


async def answering() -> bool:
    return True


def worker_for(pod: dict[str, Any], runtime: Runtime, recorder: Recorder,
               sleeps: list[float]) -> PodWorker:
    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        await asyncio.sleep(0)

    recorder.pod = pod
    return PodWorker(pod, node="n1", node_index=0, runtime=runtime, answering=answering, on_change=recorder,
                     pod_ip="10.244.0.2", flavor="kind", sleep=sleep)


async def until(predicate: Callable[[], Any], what: str) -> None:
    for _ in range(2000):
        if predicate():
            return
        await asyncio.sleep(0)
    raise AssertionError(f"never: {what}")


def scenario(pod: dict[str, Any], runtime: FakeRuntime,
             body: Callable[[PodWorker, Recorder, list[float]], Awaitable[None]]) -> None:
    async def main() -> None:
        recorder, sleeps = Recorder(), list[float]()
        worker = worker_for(pod, runtime, recorder, sleeps)
        worker.start()
        try:
            await body(worker, recorder, sleeps)
        finally:
            assert worker.task is not None
            worker.task.cancel()
            await asyncio.gather(worker.task, return_exceptions=True)

    asyncio.run(main())


def status_of(pod: dict[str, Any], name: str, key: str = "containerStatuses") -> dict[str, Any]:
    """The container's status entry ({"state": {}} before the worker wrote one)."""
    return next((s for s in pod["status"].get(key) or [] if s["name"] == name), {"state": {}})


def finished(pod: dict[str, Any]) -> bool:
    return pod["status"].get("phase") in ("Succeeded", "Failed")


# ---------------------------------------------------------------------------------- restart policy

def test_always_restarts_a_container_that_exits_0_and_the_pod_stays_running() -> None:
    pod = make_pod([app()])  # restartPolicy defaults to Always
    runtime = FakeRuntime(exits={"app": [0, 0]})

    async def body(worker: PodWorker, recorder: Recorder, sleeps: list[float]) -> None:
        await until(lambda: runtime.started == ["app"] * 3 and "running" in status_of(pod, "app")["state"],
                    "the third run")
        entry = status_of(pod, "app")
        assert entry["restartCount"] == 2
        assert entry["lastState"]["terminated"]["exitCode"] == 0
        assert entry["lastState"]["terminated"]["reason"] == "Completed"
        assert entry["ready"] is True and pod["status"]["phase"] == "Running"
        assert recorder.phases() == ["Pending", "Running"]
        assert sleeps == [0.0, 10.0]  # at once, then kubelet's first back-off step
        # kubelet keeps one dead container per container: the one before it is removed.
        assert runtime.removed == ["app-0"]

    scenario(pod, runtime, body)


def test_on_failure_restarts_only_after_a_failure_then_succeeds() -> None:
    pod = make_pod([app()], restartPolicy="OnFailure")
    runtime = FakeRuntime(exits={"app": [1, 0]})

    async def body(worker: PodWorker, recorder: Recorder, sleeps: list[float]) -> None:
        await until(lambda: finished(pod), "the pod to finish")
        entry = status_of(pod, "app")
        assert runtime.started == ["app", "app"]
        assert entry["restartCount"] == 1
        assert entry["lastState"]["terminated"]["exitCode"] == 1
        assert entry["state"]["terminated"]["exitCode"] == 0
        assert pod["status"]["phase"] == "Succeeded"
        assert recorder.phases() == ["Pending", "Running", "Succeeded"]
        ready = next(c for c in pod["status"]["conditions"] if c["type"] == "Ready")
        assert ready["status"] == "False" and ready["reason"] == "PodCompleted"
        await until(lambda: runtime.stopped == 1, "the finished pod's sandbox to stop")

    scenario(pod, runtime, body)


def test_never_does_not_restart_and_a_failure_fails_the_pod() -> None:
    pod = make_pod([app()], restartPolicy="Never")
    runtime = FakeRuntime(exits={"app": [3]})

    async def body(worker: PodWorker, recorder: Recorder, sleeps: list[float]) -> None:
        await until(lambda: finished(pod), "the pod to finish")
        entry = status_of(pod, "app")
        assert runtime.started == ["app"] and sleeps == []
        assert entry["restartCount"] == 0 and entry["lastState"] == {}
        terminated = entry["state"]["terminated"]
        assert terminated["exitCode"] == 3 and terminated["reason"] == "Error"
        assert pod["status"]["phase"] == "Failed"

    scenario(pod, runtime, body)


# ---------------------------------------------------------------------------------------- back-off

def test_back_off_doubles_from_10s_to_5min_with_crash_loop_back_off() -> None:
    pod = make_pod([app("c")], restartPolicy="Always")
    runtime = FakeRuntime(exits={"c": [2] * 8})

    async def body(worker: PodWorker, recorder: Recorder, sleeps: list[float]) -> None:
        await until(lambda: len(runtime.started) == 9 and "running" in status_of(pod, "c")["state"],
                    "the ninth run")
        assert sleeps == [0.0, 10.0, 20.0, 40.0, 80.0, 160.0, 300.0, 300.0]
        assert sleeps == [backoff_delay(n) for n in range(1, 9)]
        # The first restart is at once (ContainerCreating); every later wait is CrashLoopBackOff,
        # in kubelet's words.
        assert recorder.reasons("c") == ["ContainerCreating", "CrashLoopBackOff"]
        messages = {entry["state"]["waiting"].get("message")
                    for status in recorder.snapshots for entry in status.get("containerStatuses") or []
                    if entry["state"].get("waiting", {}).get("reason") == "CrashLoopBackOff"}
        uid = pod["metadata"]["uid"]
        assert f"back-off 10s restarting failed container=c pod=p_default({uid})" in messages
        assert f"back-off 300s restarting failed container=c pod=p_default({uid})" in messages
        assert status_of(pod, "c")["restartCount"] == 8
        assert pod["status"]["phase"] == "Running"  # CrashLoopBackOff is Running, as kubectl shows it

    scenario(pod, runtime, body)


def test_a_container_that_cannot_start_is_a_start_error_with_exit_128() -> None:
    pod = make_pod([app()], restartPolicy="Never")
    runtime = FakeRuntime(refuse={"app": 'failed to create shim task: exec: "nope": not found'})

    async def body(worker: PodWorker, recorder: Recorder, sleeps: list[float]) -> None:
        await until(lambda: finished(pod), "the pod to finish")
        terminated = status_of(pod, "app")["state"]["terminated"]
        assert terminated["reason"] == "StartError" and terminated["exitCode"] == 128
        assert terminated["message"] == 'failed to create shim task: exec: "nope": not found'
        assert "containerID" not in terminated  # never created
        assert pod["status"]["phase"] == "Failed"

    scenario(pod, runtime, body)


def test_an_image_the_node_cannot_have_is_err_image_pull_then_image_pull_back_off() -> None:
    pod = make_pod([{"name": "x", "image": "nginx:1.25"}])
    runtime = FakeRuntime()

    async def body(worker: PodWorker, recorder: Recorder, sleeps: list[float]) -> None:
        await until(lambda: "ImagePullBackOff" in recorder.reasons("x"), "ImagePullBackOff")
        assert recorder.reasons("x") == ["ContainerCreating", "ErrImagePull", "ImagePullBackOff"]
        assert runtime.started == [] and pod["status"]["phase"] == "Pending"

    scenario(pod, runtime, body)


# --------------------------------------------------------------------------------- init containers

def test_init_containers_run_in_order_to_completion_before_the_app() -> None:
    init = [{"name": "one", "image": "busybox", "command": ["true"]},
            {"name": "two", "image": "busybox", "command": ["true"]}]
    pod = make_pod([app()], initContainers=init)
    runtime = FakeRuntime(exits={"one": [0], "two": [1, 0]})  # two fails once: restarted (Always)

    async def body(worker: PodWorker, recorder: Recorder, sleeps: list[float]) -> None:
        await until(lambda: "running" in status_of(pod, "app")["state"], "the app to run")
        assert runtime.started == ["one", "two", "two", "app"]
        assert len(runtime.sandboxes) == 1  # one sandbox for all of them
        one, two = (status_of(pod, n, "initContainerStatuses") for n in ("one", "two"))
        assert one["state"]["terminated"]["reason"] == "Completed" and one["restartCount"] == 0
        assert two["restartCount"] == 1 and two["state"]["terminated"]["exitCode"] == 0
        # While the init containers ran, the app waited as PodInitializing and the pod was Pending.
        assert recorder.reasons("app")[0] == "PodInitializing"
        initialized = [next(c for c in status["conditions"] if c["type"] == "Initialized")["status"]
                       for status in recorder.snapshots if status.get("conditions")]
        assert initialized[0] == "False" and initialized[-1] == "True"
        assert recorder.phases() == ["Pending", "Running"]

    scenario(pod, runtime, body)


def test_a_failing_init_container_under_never_fails_the_pod_and_the_app_never_starts() -> None:
    init = [{"name": "one", "image": "busybox", "command": ["true"]},
            {"name": "two", "image": "busybox", "command": ["false"]}]
    pod = make_pod([app()], restartPolicy="Never", initContainers=init)
    runtime = FakeRuntime(exits={"one": [0], "two": [5]})

    async def body(worker: PodWorker, recorder: Recorder, sleeps: list[float]) -> None:
        await until(lambda: finished(pod), "the pod to finish")
        assert runtime.started == ["one", "two"]
        assert status_of(pod, "two", "initContainerStatuses")["state"]["terminated"]["exitCode"] == 5
        assert status_of(pod, "app")["state"]["waiting"]["reason"] == "PodInitializing"
        assert pod["status"]["phase"] == "Failed"
        assert recorder.phases() == ["Pending", "Failed"]

    scenario(pod, runtime, body)


# ------------------------------------------------------------------------------- phase transitions

def test_phase_goes_pending_running_succeeded_with_conditions_to_match() -> None:
    pod = make_pod([app("a"), app("b")], restartPolicy="Never")
    runtime = FakeRuntime()

    async def body(worker: PodWorker, recorder: Recorder, sleeps: list[float]) -> None:
        await until(lambda: pod["status"].get("phase") == "Running"
                    and all("running" in s["state"] for s in pod["status"]["containerStatuses"]), "Running")
        conditions = {c["type"]: c["status"] for c in pod["status"]["conditions"]}
        assert conditions == {"PodScheduled": "True", "Initialized": "True", "ContainersReady": "True",
                              "Ready": "True"}
        assert pod["status"]["podIP"] == "10.244.0.2" and pod["status"]["qosClass"] == "BestEffort"
        runtime.finish("a", 0)
        await until(lambda: "terminated" in status_of(pod, "a")["state"], "a to end")
        assert pod["status"]["phase"] == "Running"  # b still runs
        runtime.finish("b", 0)
        await until(lambda: finished(pod), "the pod to finish")
        assert recorder.phases() == ["Pending", "Running", "Succeeded"]

    scenario(pod, runtime, body)


def test_a_lost_node_makes_the_pod_unknown_and_its_return_resumes_it() -> None:
    pod = make_pod([app()])
    runtime = FakeRuntime()

    async def body(worker: PodWorker, recorder: Recorder, sleeps: list[float]) -> None:
        await until(lambda: pod["status"].get("phase") == "Running", "Running")
        worker.lose()
        assert pod["status"]["phase"] == "Unknown" and pod["status"]["reason"] == "NodeLost"
        assert status_of(pod, "app")["ready"] is False
        await until(lambda: worker.task is not None and worker.task.done(), "the worker to stop")
        worker.resume()  # the node answers: its running container is adopted, not started again
        await until(lambda: status_of(pod, "app")["ready"], "the container adopted and ready again")
        assert runtime.started == ["app"] and len(runtime.sandboxes) == 1 and "reason" not in pod["status"]
        assert status_of(pod, "app")["restartCount"] == 0 and worker.containers["app"].running
        assert recorder.phases() == ["Pending", "Running", "Unknown", "Running"]

    scenario(pod, runtime, body)


def test_a_worker_for_a_pod_read_back_from_the_store_adopts_its_running_container() -> None:
    """The API server restarted: a new worker gets the stored pod; the runtime still runs it."""
    pod = make_pod([app()])
    runtime = FakeRuntime()

    async def main() -> None:
        recorder, sleeps = Recorder(), list[float]()
        first = worker_for(pod, runtime, recorder, sleeps)
        first.start()
        await until(lambda: status_of(pod, "app").get("ready"), "the first worker's container")
        assert first.task is not None
        first.task.cancel()  # the server stops; the container runs on in the runtime
        await asyncio.gather(first.task, return_exceptions=True)
        stored = copy.deepcopy(pod)
        worker = worker_for(stored, runtime, recorder, sleeps)
        worker.adopt()
        # Before the runtime confirms it, the stored container counts as adopting (exec may go to it).
        assert worker.containers["app"].adopting and not worker.containers["app"].running
        worker.start()
        try:
            await until(lambda: worker.containers["app"].running, "the container adopted")
            assert not worker.containers["app"].adopting
            assert runtime.started == ["app"] and len(runtime.sandboxes) == 1
            assert status_of(stored, "app")["restartCount"] == 0
            runtime.finish("app", 0)  # and its exit is still the worker's to see: restarted (Always)
            await until(lambda: runtime.started == ["app", "app"], "the restart")
        finally:
            assert worker.task is not None
            worker.task.cancel()
            await asyncio.gather(worker.task, return_exceptions=True)

    asyncio.run(main())
