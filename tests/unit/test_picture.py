"""Tree, DOT and Mermaid pictures of recorded real mappings.

Fixtures in tests/unit/data/issue4/, recorded from the sandbox (``pidmap sandbox up --name pd-dev``,
every examples/*.yaml applied) as root on the Docker host:
  sidecar.show.json   pidmap show sidecar -o json
  node-m02.json       pidmap node pd-dev-m02 -o json
  whois-m02.json      the inputs of whois.identify, dumped by the snippet in test_whois.py
"""

from __future__ import annotations

import html
import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from pidmap.model import Container, ContainerMap, Node, Pod, PodMap, Process
from pidmap.picture import render_dot, render_mermaid, render_tree

DATA = Path(__file__).resolve().parent / "data" / "issue4"


def podmap_from_document(doc: dict[str, Any]) -> PodMap:
    """Rebuild a PodMap from the JSON document ``render.to_document`` writes (the pinned keys)."""
    maps = []
    containers = []
    for c in doc["containers"]:
        container = Container(
            name=c["name"],
            type=c["type"],
            image=c["image"],
            container_id=c["container_id"],
            runtime="containerd",
            state=c["state"],
            reason=c["reason"],
            exit_code=c["exit_code"],
            restart_count=c["restart_count"],
        )
        containers.append(container)
        procs = tuple(
            Process(
                container_pid=p["container_pid"],
                node_pid=p["node_pid"],
                host_pid=p["host_pid"],
                ppid=p["ppid"],
                user=p["user"],
                state=p["state"],
                command=p["command"],
                start_time=p["start_time"],
                flags=tuple(p["flags"]),
            )
            for p in c["processes"]
        )
        maps.append(
            ContainerMap(
                container=container,
                pid_namespace=c["pid_namespace"],
                cgroup_id=c["cgroup_id"],
                processes=procs,
            )
        )
    pod = Pod(
        namespace=doc["namespace"],
        name=doc["pod"],
        uid="",
        phase=doc["phase"],
        node_name=doc["node"]["name"],
        share_process_namespace=False,
        containers=tuple(containers),
    )
    node_doc = doc["node"]
    node = (
        Node(
            name=node_doc["name"],
            provider=node_doc["provider"],
            container_id=node_doc["container_id"],
            host_pid=node_doc["host_pid"],
        )
        if node_doc["container_id"]
        else None
    )
    return PodMap(pod=pod, node=node, containers=tuple(maps), via=doc["via"])


def sidecar() -> PodMap:
    return podmap_from_document(json.loads((DATA / "sidecar.show.json").read_text()))


def node_maps() -> list[PodMap]:
    return [podmap_from_document(d) for d in json.loads((DATA / "node-m02.json").read_text())]


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
    assert text.count("node pd-dev-m02") == 1
    for pmap in maps:
        assert text.count(f"pod {pmap.pod.namespace}/{pmap.pod.name} (") == 1
    assert len([line for line in text.splitlines() if "PID " in line and " · host " in line]) == len(
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
    boxes = [line for line in plain.splitlines() if line.startswith("node ") and "PID " in line]
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
