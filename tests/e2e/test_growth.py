"""Growth: a node with 100 pods is one list call and one scan; a watch refresh is the probe and the
scan, with its clients kept. Ground truth: the kernel's NSpid and cgroup files, and the stand-in API
server's own request log (every request it answered, one line each)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from pidmap import collect
from pidmap.model import Options, Target
from pidmap.sources import hostprocs, kube, nodes
from tests.conftest import Pods, Sandbox
from tests.kernel import nspid, pids_in_cgroup

# Starting 100 pods takes ~30 s alone and several minutes on a loaded shared machine: this module's
# tests get a longer limit than the suite's 300 s (the fixture's own waits end before it).
pytestmark = [pytest.mark.sandbox, pytest.mark.docker, pytest.mark.root, pytest.mark.timeout(1200)]

PODS = 100
LABEL = "pc-growth"
T = TypeVar("T")


def _manifest(node: str) -> str:
    return "\n---\n".join(f"""apiVersion: v1
kind: Pod
metadata: {{name: pc-grow-{i:03d}, labels: {{app: {LABEL}}}}}
spec:
  nodeName: {node}
  containers:
  - {{name: sleep, image: "busybox:1.36", command: ["sleep", "86400"]}}""" for i in range(PODS))


@pytest.fixture(scope="module")
def crowded_node(sandbox: Sandbox, module_namespace: str) -> Iterator[str]:
    """One worker with 100 more running pods (each a busybox sleep: ~30 s to start here), in the
    module's namespace."""
    node = f"{sandbox.name}-m03"
    ns = module_namespace
    sandbox.kubectl("apply", "-n", ns, "-f", "-", input=_manifest(node), timeout=300)
    try:
        # Phase Running is not enough: a pod whose container exited and waits to restart
        # (CrashLoopBackOff, restartPolicy Always) is Running too, with no process to map. Ready
        # (every container started and running, per the API) is what the maps need.
        sandbox.kubectl("wait", "-n", ns, "--for=condition=Ready", "pod", "-l", f"app={LABEL}",
                        "--timeout=900s", timeout=930)
        pods = json.loads(sandbox.kubectl("get", "pod", "-n", ns, "-l", f"app={LABEL}", "-o",
                                          "json").stdout)["items"]
        for pod in pods:
            (status,) = pod["status"]["containerStatuses"]
            # A sleep 86400 never exits: a restart would be the sandbox's kubelet mistaking a
            # container being started for one that exited (the bug this test once caught).
            assert "running" in status["state"] and status["started"], (pod["metadata"]["name"], status)
            assert status["restartCount"] == 0, (pod["metadata"]["name"], status)
        yield node
    finally:
        sandbox.kubectl("delete", "pod", "-n", ns, "-l", f"app={LABEL}", "--wait=true", timeout=300)


def _log_lines(box: Sandbox) -> list[str]:
    return (box.state_dir / "apiserver.log").read_text().splitlines()


def _requests(lines: list[str]) -> list[str]:
    """'METHOD PATH?QUERY' of every request the API server answered (its access log lines)."""
    found = (re.search(r"apiserver: (GET|POST|PUT|PATCH|DELETE) (\S+) -> \d+$", line) for line in lines)
    return [f"{m.group(1)} {m.group(2)}" for m in found if m]


def _counting(fn: Callable[..., T], calls: list[int]) -> Callable[..., T]:
    """The real function, counted."""
    def wrapper(*args: Any, **kwargs: Any) -> T:
        calls.append(1)
        return fn(*args, **kwargs)
    return wrapper


def test_node_with_100_pods_is_one_list_call_and_one_scan(
        sandbox: Sandbox, crowded_node: str, monkeypatch: pytest.MonkeyPatch) -> None:
    before = len(_log_lines(sandbox))
    docs = json.loads(sandbox.pidmap("node", crowded_node, "-o", "json").stdout)
    # An idle watch another test's kubectl left (`delete --wait`) is logged when the server ends it,
    # which can fall in this window (seen in CI): watches of other namespaces are not this call's.
    requests = [r for r in _requests(_log_lines(sandbox)[before:])
                if not ("watch=true" in r and "/namespaces/" in r)]
    # One list call, filtered by the server (fieldSelector), and nothing else: no GET per pod, no exec.
    assert requests == [f"GET /api/v1/pods?fieldSelector=spec.nodeName%3D{crowded_node}"], requests

    ours = {d["pod"]: d for d in docs if d["pod"].startswith("pc-grow-")}
    assert sorted(ours) == [f"pc-grow-{i:03d}" for i in range(PODS)]
    for name, doc in ours.items():
        (container,) = doc["containers"]
        assert doc["node"]["name"] == crowded_node
        assert container["processes"], name
        for proc in container["processes"]:
            chain = nspid(proc["host_pid"])  # a pod's sleep 86400 does not exit under the test
            assert chain == [proc["host_pid"], proc["node_pid"], proc["container_pid"]], (name, proc)
            assert container["container_id"] in Path(f"/proc/{proc['host_pid']}/cgroup").read_text()
            assert proc["command"] == "sleep 86400"

    # The same call in this process: one host scan in all, which reads only the node's processes.
    monkeypatch.setenv("KUBECONFIG", str(sandbox.kubeconfig))
    scans: list[int] = []
    reads: list[int] = []
    monkeypatch.setattr(hostprocs, "scan_local", _counting(hostprocs.scan_local, scans))
    monkeypatch.setattr(hostprocs, "_read_process", _counting(hostprocs._read_process, reads))
    maps = collect.collect_node(crowded_node, Options())
    assert len(scans) == 1
    read = len(reads)
    # The kernel's count of the node's processes: those in the node container's cgroup.
    node_id = next(m.node.container_id for m in maps if m.node is not None)
    in_node = pids_in_cgroup(node_id)
    host_total = sum(1 for entry in Path("/proc").iterdir() if entry.name.isdigit())
    assert len(in_node) >= 2 * PODS  # each pod: its pause and its sleep
    assert read <= len(in_node) + 10 < host_total, (read, len(in_node), host_total)  # not the whole host


def test_watch_keeps_its_clients_and_repeats_only_probe_and_scan(
        sandbox: Sandbox, running_examples: Pods, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBECONFIG", str(sandbox.kubeconfig))
    counts: dict[str, list[int]] = {"kubeconfig": [], "docker": [], "find_node": [], "scan": []}
    load = _counting(kube._load_configuration, counts["kubeconfig"])
    monkeypatch.setattr(kube, "_load_configuration", load)
    monkeypatch.setattr(nodes, "docker_client", _counting(nodes.docker_client, counts["docker"]))
    monkeypatch.setattr(nodes, "find_node", _counting(nodes.find_node, counts["find_node"]))
    monkeypatch.setattr(hostprocs, "scan_local", _counting(hostprocs.scan_local, counts["scan"]))
    before = len(_log_lines(sandbox))
    refreshes = 3
    with collect.PodCollector(Target(namespace="default", pod="kubia-manual"), Options()) as collector:
        maps = [collector.collect() for _ in range(refreshes)]
    assert {name: len(calls) for name, calls in counts.items()} == {
        "kubeconfig": 1, "docker": 1, "find_node": 1, "scan": refreshes}
    requests = _requests(_log_lines(sandbox)[before:])
    pod_path = "GET /api/v1/namespaces/default/pods/kubia-manual"
    # Per refresh: the pod, its one container's probe, the pod again (restarted meanwhile?).
    assert sum(r == pod_path for r in requests) == 2 * refreshes, requests
    assert sum(r.startswith(pod_path + "/exec?") for r in requests) == refreshes, requests
    assert len(requests) == 3 * refreshes, requests
    for pmap in maps:  # and every refresh is still the kernel's truth
        (container,) = pmap.containers
        for proc in container.processes:
            assert proc.host_pid is not None
            assert nspid(proc.host_pid) == [proc.host_pid, proc.node_pid, proc.container_pid]
