"""Who runs each container, in the tree, DOT and Mermaid pictures: pods recorded from the containerd
sandbox (tests/fixtures/record_sandbox.py, minikube flavor), with the pod's containerd-shim-runc-v2
and the node's init recorded beside the pod's processes.

Expected PIDs come from the recorded kernel files alone: the shim is the recorded PPid of each
container's first process (the one whose parent is outside the container's cgroup), its node PID
the second field of its recorded NSpid line; the node's init is the recorded node container PID.
"""

from __future__ import annotations

from typing import Any

import pytest

from pidmap.correlate import correlate
from pidmap.model import HostView, Node, PodMap, ProbeResult, ProcessTable
from pidmap.picture import render_dot, render_mermaid, render_tree
from pidmap.procfs import parse_scan
from pidmap.sources.kube import pod_from_api
from tests.pictures import dot_graph, mermaid_graph, tree_path_to
from tests.unit.recorded import host_processes, load

FIXTURES = ["sandbox_containerd_shared_pid.json", "sandbox_containerd_init_demo.json"]


def _map(doc: dict[str, Any]) -> PodMap:
    pod = pod_from_api(doc["pod"])
    node_pid = doc["truth"]["node_host_pid"]
    depth = len(doc["truth"]["nspid"][str(node_pid)]) - 1
    view = HostView(table=ProcessTable(processes=tuple(host_processes(doc))), via="local",
                    node_level=depth, host_level=0)
    node = Node(name=pod.node_name or "", provider="minikube", container_id="0" * 64, host_pid=node_pid)
    probes = {name: ProbeResult(table=parse_scan(text)) for name, text in doc["probes"].items()}
    return correlate(pod, node, probes, view)


def _truth(doc: dict[str, Any]) -> dict[str, tuple[int, int, int]]:
    """container name (or "pause") -> (its first process's host PID, the shim's host PID, the
    shim's node PID), from the recorded cgroup files, PPid and NSpid lines."""
    ppid = {int(pid): parent for pid, parent in doc["truth"]["ppid"].items()}
    nspid = {int(pid): chain for pid, chain in doc["truth"]["nspid"].items()}
    out: dict[str, tuple[int, int, int]] = {}
    for status in doc["pod"]["status"]["containerStatuses"]:
        cid = status["containerID"].split("://")[1]
        members = {int(pid) for pid, files in doc["host_proc"].items() if cid in files["cgroup"]}
        (first,) = [pid for pid in members if ppid[pid] not in members]
        out[status["name"]] = (first, ppid[first], nspid[ppid[first]][1])
    if doc["pod"]["spec"].get("shareProcessNamespace"):
        (pause,) = [int(pid) for pid, files in doc["host_proc"].items() if files["cmdline"] == "/pause\0"]
        out["pause"] = (pause, ppid[pause], nspid[ppid[pause]][1])
    return out


@pytest.mark.parametrize("fixture", FIXTURES)
def test_tree_puts_each_container_under_its_shim_under_the_nodes_init(fixture: str) -> None:
    doc = load(fixture)
    node_pid = doc["truth"]["node_host_pid"]
    tree = render_tree([_map(doc)])
    for name, (first, shim, shim_node) in _truth(doc).items():
        entry = "pod sandbox (pause" if name == "pause" else f"container {name} ("
        path = tree_path_to(tree, entry)
        assert path[2] == f"node init: node PID 1 · host {node_pid}  /init", path
        assert path[-2].startswith(f"container runtime: node PID {shim_node} · host {shim}  "
                                   "/usr/local/bin/containerd-shim-runc-v2 -namespace k8s.io -id "), path
        if name != "pause":
            assert tree_path_to(tree, f"· host {first}  ")[:-1] == path
    # A container that ran and ended has no PID namespace to show (not "pid-ns ?").
    assert "pid-ns ?" not in tree


@pytest.mark.tool("dot")
@pytest.mark.parametrize("fixture", FIXTURES)
@pytest.mark.parametrize("picture", ["dot", "mermaid"])
def test_pictures_draw_one_shim_per_pod_with_edges_to_each_pid_1(fixture: str, picture: str) -> None:
    doc = load(fixture)
    node_pid = doc["truth"]["node_host_pid"]
    pmap = _map(doc)
    graph = dot_graph(render_dot([pmap])) if picture == "dot" else mermaid_graph(render_mermaid([pmap]))
    init = graph.box(f"node PID 1 · host {node_pid}")
    assert graph.labels[init].startswith("node init\n")
    truth = _truth(doc)
    shims = {shim for _first, shim, _node in truth.values()}
    assert len(shims) == 1  # one shim per pod, as on kind
    for _name, (first, shim, shim_node) in truth.items():
        box = graph.box(f"node PID {shim_node} · host {shim}")
        assert "containerd-shim-runc-v2" in graph.labels[box]
        assert (init, box) in graph.edges
        assert (box, graph.box(f"· host {first}\n")) in graph.edges
    # Nothing else comes out of the shim: one edge per container that runs (and pause).
    assert len([edge for edge in graph.edges if edge[0] == box]) == len(truth)


@pytest.mark.tool("dot")
def test_pictures_keep_pidmaps_notes() -> None:
    # The shared namespace's note names pause: at the tree's end, as comments in DOT and Mermaid.
    pmap = _map(load("sandbox_containerd_shared_pid.json"))
    (note,) = pmap.notes
    assert "its PID 1 is the pod's sandbox process '/pause'" in note
    assert render_tree([pmap]).endswith(f"\n\nNOTES\n  - {note}")
    dot = render_dot([pmap])
    assert f"\n  // note: {note}\n}}" in dot
    assert dot_graph(dot).labels == dot_graph(dot.replace(f"// note: {note}", "")).labels
    assert render_mermaid([pmap]).endswith(f"\n  %% note: {note.replace(';', '#59;')}")
