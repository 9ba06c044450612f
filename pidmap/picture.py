"""Pure: ``PodMap``s → pictures of the nesting — a text tree, Graphviz DOT, Mermaid flowchart.

    host → node container → pod → container (one PID namespace) → processes

Each process carries its PID at every level it can be seen from, so the picture answers the same
question as the table, in the shape of the namespaces. DOT and Mermaid are meant for slides: one
cluster / subgraph per level, one box per process, an edge from each process to its parent when
both are in the same container.

Text from containers and the cluster is escaped (``pidmap.wording``) in the tree, and quoted for
DOT and Mermaid so that no command line can close a label, add a node or an edge, or start HTML.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Literal

from pidmap.model import ContainerMap, Node, PodMap, Process
from pidmap.wording import cell, escape, short, state_text

Picture = Literal["tree", "dot", "mermaid"]
COMMAND_WIDTH = 60


# shareProcessNamespace: the pod's pause process, PID 1 of the namespace all its containers share.
SANDBOX_TITLE = "pod sandbox (pause, PID 1 of the shared PID namespace)"


def _short(command: str, width: int = COMMAND_WIDTH) -> str:
    return short(command, width)


def _pids(proc: Process) -> str:
    return f"PID {cell(proc.container_pid)} · node {cell(proc.node_pid)} · host {cell(proc.host_pid)}"


def _node_title(node: Node | None, fallback: str | None) -> str:
    if node is None:
        return f"node {escape(fallback or '(not scheduled)')}"
    return (f"node {escape(node.name)} ({node.provider}, container {escape(node.container_id[:12])}, "
            f"host PID {cell(node.host_pid)})")


def _group_by_node(maps: Sequence[PodMap]) -> list[tuple[str, Node | None, list[PodMap]]]:
    """Pods grouped under their node, in first-seen order (a node appears once per picture)."""
    groups: dict[str, tuple[Node | None, list[PodMap]]] = {}
    for pmap in maps:
        key = pmap.node.name if pmap.node else (pmap.pod.node_name or "")
        node, pods = groups.setdefault(key, (pmap.node, []))
        if node is None and pmap.node is not None:
            groups[key] = (pmap.node, pods)
        pods.append(pmap)
    return [(key, node, pods) for key, (node, pods) in groups.items()]


def _pod_title(pmap: PodMap) -> str:
    return f"{escape(pmap.pod.namespace)}/{escape(pmap.pod.name)}"


def _pid_ns(cmap: ContainerMap) -> str:
    return f"pid-ns {cmap.pid_namespace}" if cmap.pid_namespace else "pid-ns ?"


# ---------------------------------------------------------------------------------------------- tree

def render_tree(maps: Sequence[PodMap]) -> str:
    lines = ["host"]
    groups = _group_by_node(maps)
    for node_index, (key, node, pods) in enumerate(groups):
        node_last = node_index == len(groups) - 1
        lines.append(("└─ " if node_last else "├─ ") + _node_title(node, key))
        node_pad = "   " if node_last else "│  "
        for pod_index, pmap in enumerate(pods):
            pod_last = pod_index == len(pods) - 1
            pod = pmap.pod
            share = ", shared PID namespace" if pod.share_process_namespace else ""
            lines.append(node_pad + ("└─ " if pod_last else "├─ ")
                         + f"pod {_pod_title(pmap)} ({escape(pod.phase)}{share})")
            pod_pad = node_pad + ("   " if pod_last else "│  ")
            if pmap.sandbox is not None:
                lines.append(pod_pad + ("└─ " if not pmap.containers else "├─ ")
                             + f"{SANDBOX_TITLE}  {_pids(pmap.sandbox)}  {_short(pmap.sandbox.command)}")
            for c_index, cmap in enumerate(pmap.containers):
                c_last = c_index == len(pmap.containers) - 1
                c = cmap.container
                lines.append(pod_pad + ("└─ " if c_last else "├─ ")
                             + f"container {escape(c.name)} ({c.type}, {state_text(c)}, {_pid_ns(cmap)})")
                c_pad = pod_pad + ("   " if c_last else "│  ")
                for p_index, proc in enumerate(cmap.processes):
                    p_last = p_index == len(cmap.processes) - 1
                    marks = "".join(f" [{flag}]" for flag in proc.flags if flag != "pid1")
                    lines.append(c_pad + ("└─ " if p_last else "├─ ")
                                 + f"{_pids(proc)}  {_short(proc.command)}{marks}")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------- dot

def _dot_string(text: str) -> str:
    # DOT strings: backslash and double quote are the only characters to escape; a doubled
    # backslash also keeps Graphviz from reading \N, \G, \l or \r in a command line as its own
    # label escapes. A newline (only pidmap's own: every text from a container was escaped before,
    # so it holds none) is written as the escape sequence \n so the string stays on one line.
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return '"' + escaped.replace("\n", "\\n") + '"'


def _ids(maps: Sequence[PodMap]) -> Iterable[tuple[int, PodMap, int, ContainerMap]]:
    for pod_index, pmap in enumerate(maps):
        for c_index, cmap in enumerate(pmap.containers):
            yield pod_index, pmap, c_index, cmap


def _parent_edges(cmap: ContainerMap) -> list[tuple[int, int]]:
    """(parent index, child index) for processes whose parent is in the same container."""
    index = {p.container_pid: i for i, p in enumerate(cmap.processes) if p.container_pid is not None}
    return [(index[p.ppid], i) for i, p in enumerate(cmap.processes)
            if p.ppid in index and p.ppid != p.container_pid]


def render_dot(maps: Sequence[PodMap]) -> str:
    out = ["digraph pidmap {", "  rankdir=TB;", "  compound=true;",
           '  node [shape=box, style="rounded,filled", fillcolor="#ffffff", fontname="Helvetica"];',
           '  graph [fontname="Helvetica", style=rounded];',
           '  subgraph cluster_host {', '    label="host"; bgcolor="#f4f4f4";']
    pod_base = 0
    for node_index, (key, node, pods) in enumerate(_group_by_node(maps)):
        out.append(f"    subgraph cluster_n{node_index} {{")
        out.append(f'      label={_dot_string(_node_title(node, key))}; bgcolor="#e3ecf7";')
        for pod_index, _pmap, c_index, cmap in _ids(pods):
            pod_id = pod_base + pod_index
            if c_index == 0:
                pod = _pmap.pod
                out.append(f"      subgraph cluster_p{pod_id} {{")
                out.append(f"        label={_dot_string(f'pod {_pod_title(_pmap)} ({escape(pod.phase)})')}; "
                           'bgcolor="#fdf3dc";')
                if _pmap.sandbox is not None:
                    label = f"{SANDBOX_TITLE}\n{_pids(_pmap.sandbox)}\n{_short(_pmap.sandbox.command, 40)}"
                    out.append(f"        p{pod_id}_sandbox [label={_dot_string(label)}, "
                               'fillcolor="#ffe08a"];')
            c = cmap.container
            out.append(f"        subgraph cluster_p{pod_id}_c{c_index} {{")
            title = f"container {escape(c.name)} ({c.type}, {_pid_ns(cmap)})"
            out.append(f'          label={_dot_string(title)}; bgcolor="#e4f4e4";')
            if not cmap.processes:
                # An empty cluster is not drawn at all: a placeholder keeps the container visible.
                out.append(f"          p{pod_id}_c{c_index}_none [label={_dot_string(state_text(c))}, "
                           'shape=plaintext, style=""];')
            for p_index, proc in enumerate(cmap.processes):
                label = f"{_pids(proc)}\n{_short(proc.command, 40)}"
                extra = ', fillcolor="#ffe08a"' if "pid1" in proc.flags else ""
                out.append(f"          p{pod_id}_c{c_index}_{p_index} [label={_dot_string(label)}{extra}];")
            for parent, child in _parent_edges(cmap):
                out.append(f"          p{pod_id}_c{c_index}_{parent} -> p{pod_id}_c{c_index}_{child};")
            out.append("        }")
            if c_index == len(_pmap.containers) - 1:
                out.append("      }")
        # A pod without containers (never scheduled) still gets its box.
        for pod_index, pmap in enumerate(pods):
            if not pmap.containers:
                out.append(f"      p{pod_base + pod_index}_empty "
                           f"[label={_dot_string(f'pod {_pod_title(pmap)}')}];")
        pod_base += len(pods)
        out.append("    }")
    out += ["  }", "}"]
    return "\n".join(out)


# ------------------------------------------------------------------------------------------- mermaid

_MERMAID_UNSAFE = re.compile(r'["<>#`;&\\]')


def _mermaid_text(text: str) -> str:
    # Inside "..." a label may hold brackets, but not a double quote; '<' would start HTML, '&' and
    # '#' an entity, '`' a markdown string, and ';' ends a statement in some versions: write them as
    # Mermaid entities (#quot; #lt; #gt; or a numeric one such as #59;). A backslash too, which
    # Mermaid passes to the HTML label as it is. The text was escaped (pidmap.wording) before, so it
    # holds no line break or control character that could end the statement.
    names = {'"': "#quot;", "<": "#lt;", ">": "#gt;"}
    return _MERMAID_UNSAFE.sub(lambda m: names.get(m.group(0), f"#{ord(m.group(0))};"), escape(text))


def render_mermaid(maps: Sequence[PodMap]) -> str:
    out = ["flowchart TB", '  subgraph host["host"]', "    direction TB"]
    pid1: list[str] = []  # the boxes of PID-1 processes, highlighted at the end
    pod_base = 0
    for node_index, (key, node, pods) in enumerate(_group_by_node(maps)):
        out.append(f'    subgraph n{node_index}["{_mermaid_text(_node_title(node, key))}"]')
        out.append("      direction TB")
        for pod_index, pmap in enumerate(pods):
            pod_id = pod_base + pod_index
            pod = pmap.pod
            title = _mermaid_text(f"pod {_pod_title(pmap)} ({escape(pod.phase)})")
            out.append(f'      subgraph p{pod_id}["{title}"]')
            out.append("        direction TB")
            if pmap.sandbox is not None:
                label = "<br/>".join(_mermaid_text(part) for part in (
                    SANDBOX_TITLE, _pids(pmap.sandbox), _short(pmap.sandbox.command, 40)))
                out.append(f'        p{pod_id}_sandbox["{label}"]')
                pid1.append(f"p{pod_id}_sandbox")
            for c_index, cmap in enumerate(pmap.containers):
                c = cmap.container
                title = f"container {escape(c.name)} ({c.type}, {_pid_ns(cmap)})"
                out.append(f'        subgraph p{pod_id}_c{c_index}["{_mermaid_text(title)}"]')
                if not cmap.processes:
                    out.append(f'          p{pod_id}_c{c_index}_none["{_mermaid_text(state_text(c))}"]')
                for p_index, proc in enumerate(cmap.processes):
                    label = f"{_mermaid_text(_pids(proc))}<br/>{_mermaid_text(_short(proc.command, 40))}"
                    out.append(f'          p{pod_id}_c{c_index}_{p_index}["{label}"]')
                    if "pid1" in proc.flags:
                        pid1.append(f"p{pod_id}_c{c_index}_{p_index}")
                for parent, child in _parent_edges(cmap):
                    out.append(f"          p{pod_id}_c{c_index}_{parent} --> p{pod_id}_c{c_index}_{child}")
                out.append("        end")
            if not pmap.containers:
                out.append(f'        p{pod_id}_empty["no container"]')
            out.append("      end")
        pod_base += len(pods)
        out.append("    end")
    out.append("  end")
    if pid1:
        out.append("  classDef pid1 fill:#ffe08a")
        out.append(f"  class {','.join(pid1)} pid1")
    return "\n".join(out)


def render_picture(maps: Sequence[PodMap], picture: Picture) -> str:
    if picture == "dot":
        return render_dot(maps)
    if picture == "mermaid":
        return render_mermaid(maps)
    return render_tree(maps)
