"""The kubelet stand-in driven directly (no API server): pod dicts in, real processes out.

One node container of our own; every claim of the pod status is checked against the kernel
(/proc, cgroupfs) or against what the container itself prints.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pidmap.sandbox.cluster import image, layout, lifecycle
from pidmap.sandbox.cluster.layout import ClusterSpec, NodeSpec, StatePaths
from pidmap.sandbox.contracts import STDOUT, ContainerNotFound, ContainerNotRunning, ExecProcess
from pidmap.sandbox.kubelet.agent import Kubelet
from pidmap.sandbox.kubelet.ctr import container_cgroup
from pidmap.sandbox.kubelet.images import IMAGE_UNAVAILABLE, normalize_image
from pidmap.sandbox.kubelet.pod_worker import backoff_delay, pod_cgroup, pod_phase, qos_class
from tests.conftest import docker_answers
from tests.kernel import nspid, pids_in_cgroup, pids_running

pytestmark = [pytest.mark.docker, pytest.mark.root]

PROC = Path("/proc")


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    if not docker_answers():
        pytest.fail("no Docker engine answers: run scripts/install-docker.sh")
    import docker

    client = docker.from_env()
    image.ensure_image(client)
    archive = image.ensure_pod_images()
    name = f"pa-kubelet-{os.getpid()}"
    state = tmp_path_factory.mktemp("kubelet-state")
    # Both flavors' kubelets keep their logs in the one directory the node mounts at /var/log/pods.
    (state / "kind").mkdir()
    (state / "minikube").symlink_to("kind")
    try:
        lifecycle.run_node(client, layout.NODE_IMAGE, name, {layout.OWNER_LABEL: name},
                           state / "kind" / "logs")
        lifecycle.prepare_node(name, archive)
        yield name, state
    finally:
        subprocess.run(["docker", "rm", "-f", "-v", name], capture_output=True, check=False)


def make_pod(name: str, node: str, containers: list[dict[str, Any]], **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "default", "uid": str(uuid.uuid4())},
            "spec": {"nodeName": node, "containers": containers, **spec}, "status": {}}


def run_with_kubelet(node: tuple[str, Path], flavor: str,
                     body: Callable[[Kubelet, list[int]], Awaitable[None]]) -> None:
    name, state = node
    spec = ClusterSpec(name=name, flavor=flavor, nodes=(NodeSpec(name, "control-plane"),))  # type: ignore[arg-type]

    async def main() -> None:
        kubelet = Kubelet(spec, StatePaths(state / flavor))
        changes: list[int] = []
        try:
            await body(kubelet, changes)
        finally:
            await kubelet.close()

    asyncio.run(main())


async def until(predicate: Callable[[], Any], timeout: float = 20, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def status_of(pod: dict[str, Any], container: str, key: str = "containerStatuses") -> dict[str, Any]:
    found = [s for s in pod["status"].get(key) or [] if s["name"] == container]
    return found[0] if found else {"state": {}, "restartCount": 0}


async def run_exec(kubelet: Kubelet, pod: dict[str, Any], container: str, command: list[str]) -> str:
    """The command's stdout, through the kubelet's exec (as the API server streams it)."""
    process = kubelet.exec(pod, container, command)
    out = bytearray()

    async def collect(channel: int, chunk: bytes) -> None:
        if channel == STDOUT:
            out.extend(chunk)

    await process.start(stdin=False, tty=False)
    try:
        await asyncio.wait_for(process.output(collect), 20)
        assert await process.wait() == 0
    finally:
        await process.close()
    return out.decode()


def _ppid(pid: int) -> int:
    status = (PROC / str(pid) / "status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("PPid:")))


def test_normalize_image_names() -> None:
    assert normalize_image("busybox") == ("library/busybox", "docker.io/library/busybox:latest")
    assert normalize_image("busybox:1.36") == ("library/busybox", "docker.io/library/busybox:1.36")
    assert normalize_image("docker.io/luksa/kubia") == ("luksa/kubia", "docker.io/luksa/kubia:latest")
    assert normalize_image("registry.invalid/x/y:1")[0] == "registry.invalid/x/y"


def test_qos_class_and_cgroup_paths_as_kind_and_minikube_name_them() -> None:
    def pod(*resources: dict[str, Any]) -> dict[str, Any]:
        return {"spec": {"containers": [{"name": f"c{i}", "resources": r} for i, r in enumerate(resources)]}}

    both = {"cpu": "100m", "memory": "64Mi"}
    assert qos_class(pod({}, {})) == "BestEffort"
    assert qos_class(pod({"limits": both}, {"limits": both, "requests": both})) == "Guaranteed"
    assert qos_class(pod({"limits": both}, {"requests": {"cpu": "50m"}})) == "Burstable"
    uid = "0b5c3f7e-1111-2222-3333-444455556666"
    under = uid.replace("-", "_")
    # kind (systemd driver): no QoS level for Guaranteed pods.
    assert pod_cgroup("kind", "Guaranteed", uid) == (
        f"kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-pod{under}.slice")
    assert pod_cgroup("kind", "Burstable", uid) == (
        "kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-burstable.slice/"
        f"kubelet-kubepods-burstable-pod{under}.slice")
    assert container_cgroup("kind", "p", "ab" * 32) == f"p/cri-containerd-{'ab' * 32}.scope"
    # minikube (cgroupfs on a cgroup v1 host).
    assert pod_cgroup("minikube", "BestEffort", uid) == f"kubepods/besteffort/pod{uid}"
    assert pod_cgroup("minikube", "Guaranteed", uid) == f"kubepods/pod{uid}"
    assert container_cgroup("minikube", "p", "ab" * 32) == f"p/{'ab' * 32}"
    assert [backoff_delay(n) for n in (1, 2, 3, 4, 7, 8, 20)] == [0, 10, 20, 40, 300, 300, 300]


def test_phase_rules() -> None:
    def pod(policy: str, *states: dict[str, Any]) -> dict[str, Any]:
        return {"spec": {"restartPolicy": policy},
                "status": {"containerStatuses": [{"state": s, "lastState": {}} for s in states]}}

    ok: dict[str, Any] = {"terminated": {"exitCode": 0}}
    bad: dict[str, Any] = {"terminated": {"exitCode": 1}}
    running: dict[str, Any] = {"running": {}}
    assert pod_phase(pod("Never", ok, ok)) == "Succeeded"
    assert pod_phase(pod("Never", ok, bad)) == "Failed"
    assert pod_phase(pod("Never", running, bad)) == "Running"
    assert pod_phase(pod("Always", ok)) == "Running"
    assert pod_phase(pod("OnFailure", bad)) == "Running"
    assert pod_phase(pod("Always", {"waiting": {"reason": "ContainerCreating"}})) == "Pending"


def test_kind_cgroup_path_env_args_and_exec(node: tuple[str, Path]) -> None:
    async def body(kubelet: Kubelet, changes: list[int]) -> None:
        pod = make_pod("pa-env", node[0], [{
            "name": "main", "image": "busybox:1.36", "command": ["sh"],
            "args": ["-c", 'echo "$GREETING"; exec sleep 3600'],
            "env": [{"name": "GREETING", "value": "hello $(not expanded) `either`"}],
        }])
        await kubelet.start_pod(pod, lambda: changes.append(1))
        await until(lambda: "running" in status_of(pod, "main")["state"], what="running")
        assert changes, "on_change was never called"
        cid = status_of(pod, "main")["containerID"].removeprefix("containerd://")
        pids = pids_in_cgroup(cid)
        assert len(pids) == 1
        cgroup = (PROC / str(pids[0]) / "cgroup").read_text()
        uid = pod["metadata"]["uid"].replace("-", "_")
        assert re.search(rf"/kubelet\.slice/kubelet-kubepods\.slice/kubelet-kubepods-besteffort\.slice/"
                         rf"kubelet-kubepods-besteffort-pod{uid}\.slice/cri-containerd-{cid}\.scope$",
                         cgroup, re.MULTILINE), cgroup
        # command replaces the (empty) entrypoint, args the cmd; the shell then execs sleep as PID 1.
        assert (PROC / str(pids[0]) / "cmdline").read_bytes() == b"sleep\x003600\x00"
        log = kubelet.log_path(pod, "main")
        assert log is not None and log.read_text() == "hello $(not expanded) `either`\n"
        env = await run_exec(kubelet, pod, "main", ["env"])
        assert "GREETING=hello $(not expanded) `either`" in env.splitlines()
        # exec lands in the container's PID namespace and cgroup.
        ps = await run_exec(kubelet, pod, "main", ["sh", "-c", "cat /proc/self/cgroup; ps"])
        assert cid in ps and re.search(r"^\s*1\s+\S+\s+sleep 3600$", ps, re.MULTILINE), ps
        # While an exec runs, the container's cgroup holds only processes inside the container
        # (three NSpid levels), and the exec'd process is a child of the pod's shim, as on kind.
        pending = kubelet.exec(pod, "main", ["sleep", "3"])
        await pending.start(stdin=False, tty=False)
        try:
            def exec_visible() -> list[int]:
                return [p for p in pids_in_cgroup(cid)
                        if (PROC / str(p) / "cmdline").read_bytes() == b"sleep\x003\x00"]
            exec_pid = (await until(exec_visible, what="the exec'd process in the container's cgroup"))[0]
            for pid in pids_in_cgroup(cid):
                assert len(nspid(pid)) == 3, (pid, (PROC / str(pid) / "cmdline").read_bytes())
            parent = _ppid(exec_pid)
            assert (PROC / str(parent) / "cmdline").read_bytes().split(b"\0")[:3] == [
                b"/usr/local/bin/containerd-shim-runc-v2", b"-namespace", b"k8s.io"]
            assert _ppid(pids[0]) == parent
        finally:
            await pending.kill()
            await pending.close()
        with pytest.raises(ContainerNotFound):
            kubelet.exec(pod, "nope", ["true"])
        await kubelet.delete_pod(pod)
        with pytest.raises(ContainerNotRunning):
            kubelet.exec(pod, "main", ["true"])
        assert not pids_in_cgroup(cid)
        assert not pids_in_cgroup(uid)

    run_with_kubelet(node, "kind", body)


def _attach_readers(cid: str) -> list[int]:
    """Host PIDs of the ``ctr tasks attach`` processes reading container ``cid`` (the kernel's list)."""
    return pids_running("ctr", "-n", "k8s.io", "tasks", "attach", cid)


def test_attach_detach_keeps_the_container_and_its_stdin_and_its_exit_ends_the_attach(
        node: tuple[str, Path]) -> None:
    async def body(kubelet: Kubelet, changes: list[int]) -> None:
        pod = make_pod("pa-attach", node[0], [{"name": "shell", "image": "busybox:1.36", "command": ["sh"],
                                               "stdin": True}], restartPolicy="Never")
        await kubelet.start_pod(pod, lambda: changes.append(1))
        await until(lambda: "running" in status_of(pod, "shell")["state"], what="running")
        cid = status_of(pod, "shell")["containerID"].removeprefix("containerd://")
        shell = pids_in_cgroup(cid)
        assert len(shell) == 1

        async def attached(lines: list[bytes], want: str) -> tuple[ExecProcess, asyncio.Future[None]]:
            process = kubelet.attach(pod, "shell")
            out = bytearray()

            async def collect(channel: int, chunk: bytes) -> None:
                if channel == STDOUT:
                    out.extend(chunk)

            await process.start(stdin=True, tty=False)
            pump = asyncio.ensure_future(process.output(collect))
            for line in lines:
                await process.write(line)
            await until(lambda: want in out.decode(), what=f"{want!r} from the attached shell")
            return process, pump

        # The shell's stdin reaches PID 1 of the container: its $$ is 1.
        first, pump = await attached([b"echo one $$\n"], "one 1\n")
        first.close_stdin()  # the client's input ends ...
        await first.kill()  # ... and the client goes away: detach
        await asyncio.wait_for(pump, 20)
        await first.wait()
        await first.close()
        await until(lambda: not _attach_readers(cid), what="the node's ctr tasks attach to go")
        # The container runs on, its stdin still open (sh would have exited on end of input).
        await asyncio.sleep(1)
        assert pids_in_cgroup(cid) == shell and "running" in status_of(pod, "shell")["state"]
        # A second client reaches the same shell; its exit ends the attach with the container's code.
        second, pump = await attached([b"echo two $$\n"], "two 1\n")
        await second.write(b"exit 3\n")
        await asyncio.wait_for(pump, 20)
        assert await second.wait() == 3
        await second.close()
        await until(lambda: "terminated" in status_of(pod, "shell")["state"], what="terminated")
        assert status_of(pod, "shell")["state"]["terminated"]["exitCode"] == 3
        assert not pids_in_cgroup(cid) and not _attach_readers(cid)
        await kubelet.delete_pod(pod)
        with pytest.raises(ContainerNotRunning):
            kubelet.attach(pod, "shell")
        with pytest.raises(ContainerNotFound):
            kubelet.attach(pod, "nope")

    run_with_kubelet(node, "kind", body)


def test_crash_loop_backs_off_and_counts_restarts(node: tuple[str, Path]) -> None:
    async def body(kubelet: Kubelet, changes: list[int]) -> None:
        crashing = {"name": "c", "image": "busybox", "command": ["sh", "-c", "exit 2"]}
        pod = make_pod("pa-crash", node[0], [crashing], restartPolicy="OnFailure")
        await kubelet.start_pod(pod, lambda: None)
        seen: set[str] = set()

        def backing_off() -> bool:
            seen.add(status_of(pod, "c")["state"].get("waiting", {}).get("reason", ""))
            return int(status_of(pod, "c")["restartCount"]) >= 2
        # Restart 1 at once, restart 2 after kubelet's 10 s back-off.
        await until(backing_off, what="two restarts", timeout=30)
        status = status_of(pod, "c")
        assert "CrashLoopBackOff" in seen
        assert status["lastState"]["terminated"]["exitCode"] == 2
        assert pod["status"]["phase"] == "Running"
        await kubelet.delete_pod(pod)

    run_with_kubelet(node, "minikube", body)


def test_failing_init_container_with_never_fails_the_pod(node: tuple[str, Path]) -> None:
    async def body(kubelet: Kubelet, changes: list[int]) -> None:
        pod = make_pod("pa-init", node[0], [{"name": "app", "image": "busybox", "command": ["sleep", "60"]}],
                       restartPolicy="Never",
                       initContainers=[{"name": "one", "image": "busybox", "command": ["true"]},
                                       {"name": "two", "image": "busybox",
                                        "command": ["sh", "-c", "exit 5"]}])
        await kubelet.start_pod(pod, lambda: None)
        await until(lambda: pod["status"].get("phase") == "Failed", what="Failed")
        assert status_of(pod, "one", "initContainerStatuses")["state"]["terminated"]["reason"] == "Completed"
        assert status_of(pod, "two", "initContainerStatuses")["state"]["terminated"]["exitCode"] == 5
        assert status_of(pod, "app")["state"]["waiting"]["reason"] == "PodInitializing"
        assert "containerID" not in status_of(pod, "app")
        await kubelet.delete_pod(pod)

    run_with_kubelet(node, "minikube", body)


def test_unavailable_image_reports_err_image_pull(node: tuple[str, Path]) -> None:
    async def body(kubelet: Kubelet, changes: list[int]) -> None:
        pod = make_pod("pa-pull", node[0], [{"name": "x", "image": "nginx:1.25"}])
        reasons: list[tuple[str, str]] = []

        def record() -> None:
            waiting = status_of(pod, "x")["state"].get("waiting", {})
            reasons.append((waiting.get("reason", ""), waiting.get("message", "")))
        await kubelet.start_pod(pod, record)
        await until(lambda: any(r == "ImagePullBackOff" for r, _ in reasons), what="ImagePullBackOff")
        pull = next(m for r, m in reasons if r == "ErrImagePull")
        assert pull == f'Failed to pull image "nginx:1.25": {IMAGE_UNAVAILABLE}'
        assert pod["status"]["phase"] == "Pending"
        await kubelet.delete_pod(pod)

    run_with_kubelet(node, "minikube", body)
