"""A shareProcessNamespace pod recorded from a kind-flavor sandbox (tests/fixtures/record_sandbox.py):
systemd-style cgroup paths (cri-containerd-<id>.scope, pod<uid_with_underscores>.slice), pause as
PID 1, probes taken through real kubectl exec. Expected rows come from the recorded NSpid lines and
a plain substring search of each process's cgroup file — not from pidmap's parsers."""

from __future__ import annotations

import json
from typing import Any

from pidmap.correlate import correlate
from pidmap.model import HostView, Node, ProbeResult, ProcessTable
from pidmap.output import render
from pidmap.picture import render_picture
from pidmap.procfs import parse_scan
from pidmap.render import to_document
from pidmap.sources.kube import pod_from_api
from tests.unit.recorded import host_processes, load

DOC = load("sandbox_kind_shared_pid.json")
NODE_PID = DOC["truth"]["node_host_pid"]


def _pod() -> Any:
    return pod_from_api(DOC["pod"])


def _expected() -> dict[str, set[tuple[int, int, int]]]:
    out: dict[str, set[tuple[int, int, int]]] = {}
    for status in DOC["pod"]["status"]["containerStatuses"]:
        cid = status["containerID"].split("://")[1]
        out[status["name"]] = {
            (chain[2], chain[1], chain[0]) for pid, chain in DOC["truth"]["nspid"].items()
            if len(chain) == 3 and f"cri-containerd-{cid}.scope" in DOC["host_proc"][pid]["cgroup"]
        }
    return out


def _probes() -> dict[str, ProbeResult]:
    return {name: ProbeResult(table=parse_scan(text)) for name, text in DOC["probes"].items()}


def _rows(result: Any) -> dict[str, set[tuple[int | None, int | None, int | None]]]:
    return {c.container.name: {(p.container_pid, p.node_pid, p.host_pid) for p in c.processes}
            for c in result.containers}


def test_pod_from_api() -> None:
    pod = _pod()
    assert pod.share_process_namespace and pod.phase == "Running"
    assert [c.name for c in pod.containers] == ["web", "shell"]
    assert all(c.runtime == "containerd" and c.state == "running" and len(c.container_id or "") == 64
               for c in pod.containers)


def test_local_view_as_root_and_not_root() -> None:
    pod = _pod()
    node = Node(name=pod.node_name or "", provider="kind", container_id="x", host_pid=NODE_PID)
    depth = len(DOC["truth"]["nspid"][str(NODE_PID)]) - 1
    expected = _expected()
    assert all(expected.values())
    for with_ns in (True, False):
        table = ProcessTable(processes=tuple(host_processes(DOC, with_ns=with_ns)))
        view = HostView(table=table, via="local", node_level=depth, host_level=0)
        result = correlate(pod, node, _probes(), view)
        assert _rows(result) == expected
        assert not any("gone" in n or "new" in n for n in result.notes)
        assert all(not c.notes for c in result.containers), [c.notes for c in result.containers]


def test_shared_namespace_names_its_pause_pid1() -> None:
    # Ground truth: the recorded process whose innermost NSpid is 1 and whose command is /pause.
    pause = [(pid, chain) for pid, chain in DOC["truth"]["nspid"].items()
             if len(chain) == 3 and chain[2] == 1 and DOC["host_proc"][pid]["cmdline"].startswith("/pause")]
    assert len(pause) == 1
    host_pid, (_, node_pid, _) = int(pause[0][0]), pause[0][1]
    pod = _pod()
    depth = len(DOC["truth"]["nspid"][str(NODE_PID)]) - 1
    for with_ns in (True, False):
        view = HostView(table=ProcessTable(processes=tuple(host_processes(DOC, with_ns=with_ns))),
                        via="local", node_level=depth, host_level=0)
        result = correlate(pod, None, _probes(), view)
        notes = [n for n in result.notes if "PID 1 is the pod's sandbox" in n]
        assert len(notes) == 1, notes
        assert "'/pause'" in notes[0] and f"node PID {node_pid}, host PID {host_pid}" in notes[0]
        # ... and a row of its own, in the document and in every picture.
        assert result.sandbox is not None
        assert (result.sandbox.container_pid, result.sandbox.node_pid, result.sandbox.host_pid,
                result.sandbox.command) == (1, node_pid, host_pid, "/pause")
        doc = to_document(result)
        assert doc["sandbox"]["host_pid"] == host_pid and doc["sandbox"]["node_pid"] == node_pid
        assert f"PID 1 · node {node_pid} · host {host_pid}  /pause" in render_picture([result], "tree")
        table = render(result, "table")
        assert "POD SANDBOX" in table and "/pause" in table.split("CONTAINER web")[0]


def test_docker_view() -> None:
    pod = _pod()
    view = HostView(table=parse_scan(DOC["node_scan_full"]), via="docker", node_level=0, host_level=None)
    result = correlate(pod, None, _probes(), view)
    assert _rows(result) == {name: {(c, n, None) for c, n, _ in rows} for name, rows in _expected().items()}


def test_pod_from_api_orders_init_app_ephemeral() -> None:
    # The sandbox has no ephemeral containers (kubectl debug): add one, shaped as the API returns it.
    raw = json.loads(json.dumps(DOC["pod"]))
    raw["spec"]["initContainers"] = [{"name": "prep", "image": "busybox:1.36"}]
    raw["status"]["initContainerStatuses"] = [{
        "name": "prep", "image": "busybox:1.36", "imageID": "", "ready": False, "restartCount": 0,
        "containerID": "containerd://" + "d" * 64,
        "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]
    raw["spec"]["ephemeralContainers"] = [
        {"name": "debugger", "image": "busybox:1.36", "targetContainerName": "web"}]
    raw["status"]["ephemeralContainerStatuses"] = [{
        "name": "debugger", "image": "busybox:1.36", "imageID": "", "ready": False, "restartCount": 0,
        "state": {"waiting": {"reason": "ContainerCreating"}}}]
    pod = pod_from_api(raw)
    assert [(c.name, c.type, c.state) for c in pod.containers] == [
        ("prep", "init", "terminated"), ("web", "app", "running"), ("shell", "app", "running"),
        ("debugger", "ephemeral", "waiting")]
    assert pod.containers[0].exit_code == 0 and pod.containers[-1].reason == "ContainerCreating"
    assert pod.containers[-1].container_id is None
