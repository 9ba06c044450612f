"""The tree, DOT and Mermaid pictures show who runs each container: the pod's
``containerd-shim-runc-v2 -namespace k8s.io -id <sandbox id>`` above each container's PID 1 (and the
pod's pause), the node's init above the shim ("the container runtime runs the container").

Ground truth is the kernel's: the shim is the PPid (/proc/PID/status) of the container's first
process, found by the container ID in its cgroup; its node PID is the node's own ``ps -o pid,ppid,args``
(``docker exec NODE``) and its NSpid. The pictures are read back by parsers that are not pidmap's:
the tree by its drawing, DOT by Graphviz (``dot -Tjson``), Mermaid by Mermaid's own parser.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests import grid
from tests.conftest import Sandbox
from tests.kernel import nspid, pids_in_cgroup
from tests.pictures import Graph, dot_graph, tree_path_to

pytestmark = [pytest.mark.sandbox, pytest.mark.docker, pytest.mark.root, pytest.mark.tool("dot", "node")]

SHIM = "/usr/local/bin/containerd-shim-runc-v2 -namespace k8s.io -id "


def _ppid(pid: int) -> int:
    status = (Path("/proc") / str(pid) / "status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("PPid:")))


def _node_ps(node: str) -> dict[int, tuple[int, str]]:
    """node PID -> (node PPID, args), as the node's own ps prints them."""
    out = subprocess.run(["docker", "exec", node, "ps", "-e", "-o", "pid=,ppid=,args="], capture_output=True,
                         text=True, check=True, timeout=30).stdout
    rows = (line.split(None, 2) for line in out.splitlines())
    return {int(pid): (int(ppid), args) for pid, ppid, args in rows}


def _mermaid_graph(text: str) -> Graph:
    """Mermaid's own parser (tests/grid.py's ``mermaid_parse``), as the pictures' graph."""
    doc = grid.mermaid_parse(text)
    return Graph(labels={v["id"]: v["text"].replace("<br>", "\n") for v in doc["vertices"]},
                 edges={(e["start"], e["end"]) for e in doc["edges"]})


@pytest.mark.parametrize("example", ["kubia-manual.yaml", "shared-pid.yaml"])
def test_pictures_name_the_shim_that_runs_each_container(sandbox: Sandbox, example: str) -> None:
    pod = sandbox.apply_example(example)
    name, node = pod["metadata"]["name"], pod["spec"]["nodeName"]
    node_host_pid = int(subprocess.run(["docker", "inspect", "-f", "{{.State.Pid}}", node],
                                       capture_output=True, text=True, check=True).stdout)
    ps = _node_ps(node)
    # Each container's first process (its parent is outside the container), its shim, the shim's node PID.
    truth: dict[str, tuple[int, int, int]] = {}
    for status in pod["status"]["containerStatuses"]:
        members = set(pids_in_cgroup(status["containerID"].removeprefix("containerd://")))
        (first,) = [pid for pid in members if _ppid(pid) not in members]
        shim = _ppid(first)
        truth[status["name"]] = (first, shim, nspid(shim)[1])
    if pod["spec"].get("shareProcessNamespace"):
        # pause: PID 1 of the shared namespace, a child of the same shim, in the pod's cgroup only.
        (pause,) = [pid for pid in pids_in_cgroup(pod["metadata"]["uid"])
                    if nspid(pid)[-1] == 1 and len(nspid(pid)) == 3]
        truth["pause"] = (pause, _ppid(pause), nspid(_ppid(pause))[1])
    for first, shim, shim_node in truth.values():
        # The node's own view agrees: the shim's node PID runs containerd-shim-runc-v2, under init.
        assert ps[nspid(first)[1]][0] == shim_node and ps[shim_node][1].startswith(SHIM), ps
        assert nspid(_ppid(shim))[1:] == [1] and _ppid(shim) == node_host_pid
    assert len({shim for _f, shim, _n in truth.values()}) == 1  # one shim per pod, as on kind

    tree = sandbox.pidmap("show", name, "-o", "tree").stdout
    for cname, (first, shim, shim_node) in truth.items():
        entry = "pod sandbox (pause" if cname == "pause" else f"container {cname} ("
        path = tree_path_to(tree, entry)
        assert path[2].startswith(f"node init: node PID 1 · host {node_host_pid}  "), path
        assert path[-2] == f"container runtime: node PID {shim_node} · host {shim}  {ps[shim_node][1]}", path
        if cname != "pause":
            assert tree_path_to(tree, f"· host {first}  ")[:-1] == path

    dot = sandbox.pidmap("show", name, "-o", "dot").stdout
    mermaid = sandbox.pidmap("show", name, "-o", "mermaid").stdout
    for graph in (dot_graph(dot), _mermaid_graph(mermaid)):
        init = graph.box(f"node PID 1 · host {node_host_pid}\n")
        for first, shim, shim_node in truth.values():
            box = graph.box(f"node PID {shim_node} · host {shim}\n")
            assert graph.labels[box].startswith("container runtime\n")
            assert graph.labels[box].split("\n", 2)[2].replace("\n", " ") == ps[shim_node][1]
            assert (init, box) in graph.edges and (box, graph.box(f"· host {first}\n")) in graph.edges
        assert len([edge for edge in graph.edges if edge[0] == box]) == len(truth)
