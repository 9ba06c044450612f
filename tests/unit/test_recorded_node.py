"""``pidmap node``, ``show`` and ``whois`` run over a node recorded raw from a minikube-flavor sandbox
(tests/fixtures/record_node.py: /proc files, API JSON, docker inspect, probe output) and checked
against the ground truth recorded at the same moment: every row's PIDs against the NSpid lines of
the processes whose cgroup names the container, every container against the API's container
statuses, the node against ``docker inspect``. A row with no evidence fails."""

from __future__ import annotations

import pytest

from pidmap.model import PodMap
from tests.unit import recorded_node as rec
from tests.unit.recorded_node import DOC, LEVEL, NODE, NODE_PID


def _check_evidence(pmap: PodMap) -> int:
    """Every row of every container has evidence, and every kernel member is a row. Returns the
    number of rows checked."""
    ids = rec.container_ids()
    checked = 0
    for cmap in pmap.containers:
        cid = cmap.container.container_id
        assert cid is None or ids[cid] == (pmap.pod.name, cmap.container.name)  # the API's own record
        kernel = rec.kernel_rows(cid) if cid else set()
        seen = {(p.container_pid, p.node_pid, p.host_pid) for p in cmap.processes if p.host_pid is not None}
        assert seen == kernel, (pmap.pod.name, cmap.container.name)
        for proc in cmap.processes:
            if proc.host_pid is None:
                # Seen only by the probe: it must be in what the probe printed, and say it is gone.
                assert "gone" in proc.flags
                assert proc.container_pid in rec.probe_pids(pmap.pod.name, cmap.container.name)
            checked += 1
    return checked


def test_node_maps_every_pod_of_the_api_once_with_kernel_rows() -> None:
    maps = rec.node_maps()
    api = {p["metadata"]["name"]: p for p in rec.api_pods()}
    assert sorted(m.pod.name for m in maps) == sorted(api)
    checked = 0
    for pmap in maps:
        spec = api[pmap.pod.name]["spec"]
        assert [c.container.name for c in pmap.containers] == [
            c["name"] for c in (spec.get("initContainers") or []) + spec["containers"]]
        assert pmap.pod.phase == api[pmap.pod.name]["status"]["phase"]
        checked += _check_evidence(pmap)
    assert checked >= 6  # the recording holds sidecar's and adapter's loops and init-demo's web


def test_node_is_the_docker_inspect_of_the_node_container() -> None:
    (attrs,) = [a for a in DOC["docker"]["inspect"].values() if a["Name"] == f"/{NODE}"]
    for pmap in rec.node_maps():
        assert pmap.node is not None
        assert (pmap.node.name, pmap.node.container_id, pmap.node.host_pid) == (
            NODE, attrs["Id"], attrs["State"]["Pid"])
    assert attrs["State"]["Pid"] == NODE_PID and DOC["truth"]["nspid"][str(NODE_PID)][LEVEL] == 1


@pytest.mark.parametrize("pod", ["sidecar", "adapter", "init-demo"])
def test_show_rows_are_the_kernels(pod: str) -> None:
    pmap = rec.show(pod)
    assert _check_evidence(pmap) >= 1
    running = [c for c in pmap.containers if c.container.state == "running"]
    assert running and all(any(p.container_pid == 1 and p.host_pid for p in c.processes) for c in running)


def test_whois_every_container_process_names_its_pod_and_container() -> None:
    checked = 0
    for cid, owner in rec.container_ids().items():
        for cpid, npid, hpid in rec.kernel_rows(cid):
            answer = rec.whois(hpid)
            assert answer.kind == "container", answer.summary
            assert (answer.pod.name if answer.pod else None,
                    answer.container.name if answer.container else None) == owner
            assert (answer.container_pid, answer.node_pid) == (cpid, npid)
            assert answer.node is not None and answer.node.name == NODE
            checked += 1
    assert checked >= 6


def test_whois_pause_node_inits_and_host() -> None:
    pauses = rec.pause_pids()
    assert len(pauses) == len(rec.api_pods()) - 1  # every pod but the completed one keeps its sandbox
    for pid, pod in pauses.items():
        answer = rec.whois(pid)
        assert answer.kind == "pod-sandbox" and answer.pod is not None and answer.pod.name == pod
    for name, pid in DOC["truth"]["node_inits"].items():
        answer = rec.whois(pid)
        assert answer.kind == "node" and answer.node is not None and answer.node.name == name
        assert answer.node_pid == 1
    answer = rec.whois(DOC["truth"]["recorder_pid"])
    assert answer.kind == "host" and answer.node is None and answer.pod is None
