"""Tree, DOT and Mermaid pictures of real mappings: ``pidmap show sidecar`` and ``pidmap node NODE``
run over a node recorded raw from a sandbox (tests/fixtures/record_node.py; see
tests/unit/recorded_node.py for the replay and tests/unit/test_recorded_node.py for the checks of
those mappings against the recorded kernel ground truth).
"""

from __future__ import annotations

import html
import re
import subprocess

import pytest

from pidmap.model import ContainerMap, PodMap, Process
from pidmap.picture import render_dot, render_mermaid, render_tree
from tests.unit import recorded_node
from tests.unit.recorded_node import NODE


def sidecar() -> PodMap:
    return recorded_node.show("sidecar")


def node_maps() -> list[PodMap]:
    return list(recorded_node.node_maps())


def _all_processes(maps: list[PodMap]) -> list[Process]:
    return [p for m in maps for c in m.containers for p in c.processes]


def test_tree_nests_host_node_pod_container_process() -> None:
    pmap = sidecar()
    text = render_tree([pmap])
    lines = text.splitlines()
    assert lines[0] == "host"
    indent = {line.split("─ ", 1)[1].split(" ")[0]: len(line.split("─ ", 1)[0]) for line in lines[1:]}
    assert indent["node"] < indent["pod"] < indent["container"] < indent["PID"]
    assert f"node {pmap.node.name}" in text if pmap.node else False
    for cmap in pmap.containers:
        assert f"container {cmap.container.name} (" in text
        for proc in cmap.processes:
            assert f"PID {proc.container_pid} · node {proc.node_pid} · host {proc.host_pid}" in text


def test_tree_of_a_whole_node_lists_each_pod_once_under_one_node() -> None:
    maps = node_maps()
    text = render_tree(maps)
    assert text.count(f"node {NODE}") == 1
    for pmap in maps:
        assert text.count(f"pod {pmap.pod.namespace}/{pmap.pod.name} (") == 1
    # One line per process; the node's init and each pod's runtime (who runs the containers) are
    # their own lines ("node init: ...", "container runtime: ..."), not processes of a container.
    assert len([line for line in text.splitlines() if "─ PID " in line and " · host " in line]) == len(
        _all_processes(maps)
    )


@pytest.mark.tool("dot")
@pytest.mark.parametrize(
    "maps", [pytest.param([sidecar()], id="sidecar"), pytest.param(node_maps(), id="node")]
)
def test_dot_renders_with_graphviz_and_keeps_every_process(maps: list[PodMap]) -> None:
    dot = render_dot(maps)
    svg = subprocess.run(["dot", "-Tsvg"], input=dot, capture_output=True, text=True, check=True).stdout
    assert svg.lstrip().startswith("<?xml") and "<svg" in svg
    # Graphviz's own reading of the graph: one cluster per node/pod/container, one box per process.
    plain = subprocess.run(["dot", "-Tplain"], input=dot, capture_output=True, text=True, check=True).stdout
    # (The node's init and each pod's runtime are boxes of their own, named n<node>_a<node PID>.)
    boxes = [line for line in plain.splitlines()
             if line.startswith("node ") and "PID " in line and not re.match(r"node n\d+_a\d+ ", line)]
    assert len(boxes) == len(_all_processes(maps))
    for proc in _all_processes(maps):
        assert f"host {proc.host_pid}" in svg
    assert svg.count('class="cluster"') == 1 + len({m.node.name for m in maps if m.node}) + len(maps) + sum(
        len(m.containers) for m in maps
    )


@pytest.mark.tool("dot")
def test_dot_escapes_quotes_and_backslashes_in_commands() -> None:
    pmap = sidecar()
    cmap = pmap.containers[0]
    odd = Process(
        container_pid=7,
        node_pid=70,
        host_pid=700,
        ppid=1,
        user="0",
        state="S",
        command='sh -c "echo \\"hi\\"" \\ {x}',
        flags=(),
    )
    pmap = PodMap(
        pod=pmap.pod,
        node=pmap.node,
        containers=(ContainerMap(cmap.container, cmap.pid_namespace, cmap.cgroup_id, (odd,)),),
    )
    # Graphviz draws the command exactly: the quotes and backslashes did not end or bend the label.
    svg = subprocess.run(["dot", "-Tsvg"], input=render_dot([pmap]), capture_output=True, text=True,
                         check=True).stdout
    drawn = [html.unescape(text) for text in re.findall(r"<text[^>]*>(.*?)</text>", svg)]
    assert odd.command in drawn, drawn


def test_mermaid_structure_subgraphs_balanced_and_labels_safe() -> None:
    maps = node_maps()
    text = render_mermaid(maps)
    lines = [line.strip() for line in text.splitlines()]
    assert lines[0] == "flowchart TB"
    opened = sum(1 for line in lines if line.startswith("subgraph "))
    assert opened == sum(1 for line in lines if line == "end")
    assert opened == 1 + 1 + len(maps) + sum(len(m.containers) for m in maps)
    labels = re.findall(r'\["(.*?)"\]', text)
    bare = [re.sub(r"#\w+;", "", label) for label in labels]  # Mermaid entities: #quot; #59; ...
    assert all('"' not in text and ";" not in text for text in bare)
    assert any("#59;" in label for label in labels)  # the recorded shell loops do hold ';'

    boxes = [line for line in lines if re.match(r"p\d+_c\d+_\d+\[", line)]
    assert len(boxes) == len(_all_processes(maps))
