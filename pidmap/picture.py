"""Pure: ``PodMap``s → pictures of the nesting — a text tree, Graphviz DOT, Mermaid flowchart.

    host → node container → node init → pod → container runtime (shim) → container → processes

Each process carries its PID at every level it can be seen from, so the picture answers the same
question as the table, in the shape of the namespaces, and shows who runs each container: the node's
init above each pod's runtime (``ContainerMap.ancestry``: on kind one ``containerd-shim-runc-v2``
per pod), the runtime above each container's PID 1 and the pod's pause. DOT and Mermaid are meant
for slides: one cluster / subgraph per level, one box per process, an edge from each process to its
parent when both are in the same container, and from the init to each runtime and from each runtime
to what it started. pidmap's notes end the tree (``NOTES``) and the DOT and Mermaid text (comments).

Text from containers and the cluster is escaped (``pidmap.wording``) in the tree, and quoted for
DOT and Mermaid so that no command line can close a label, add a node or an edge, or start HTML.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from itertools import pairwise
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
    if cmap.pid_namespace:
        return f", pid-ns {cmap.pid_namespace}"
    # A container that does not run has no namespace to show; one that runs but whose inode could
    # not be read says so.
    return ", pid-ns ?" if cmap.processes else ""


def _notes(pmap: PodMap) -> list[str]:
    """The pod's notes and its containers', as the table prints them (escaped)."""
    return [escape(note) for note in (*pmap.notes, *(n for cmap in pmap.containers for n in cmap.notes))]


# ---------------------------------------------------------------------------------------- ancestry
#
# Who runs each container: its PID 1's parents in the node, nearest first (``ContainerMap.ancestry``;
# on kind and the sandbox: the pod's ``containerd-shim-runc-v2 -namespace k8s.io -id <sandbox id>``,
# then the node's init). The pictures draw each such process once per node, keyed by its node PID,
# with the node's init above the runtimes and each runtime above the PID 1 of every container it runs
# (and the pod's pause process, when the pod shares one PID namespace).

RUNTIME_TITLE = "container runtime"  # the nearest parent: the process that runs the container
INIT_TITLE = "node init"  # PID 1 of the node


def _role(chain: Sequence[Process], index: int) -> str:
    if chain[index].node_pid == 1:
        return INIT_TITLE
    return RUNTIME_TITLE if index == 0 else "node process"


def _node_pids(proc: Process) -> str:
    return f"node PID {cell(proc.node_pid)} · host {cell(proc.host_pid)}"


def _lines(command: str, width: int = 44) -> list[str]:
    """An escaped command in lines of about ``width`` characters, broken at spaces (a longer word,
    such as a 64-digit container ID, keeps a line of its own), for the boxes of DOT and Mermaid."""
    lines: list[str] = []
    for word in escape(command).split(" "):
        if lines and len(lines[-1]) + 1 + len(word) <= width:
            lines[-1] += " " + word
        else:
            lines.append(word)
    return lines[:6] if len(lines) <= 6 else [*lines[:5], "..."]


def _entry(cmap: ContainerMap) -> int | None:
    """Index of the process a container's runtime starts: its PID 1, else (a shared PID namespace,
    whose PID 1 is pause) the first whose parent is outside the container."""
    procs = list(cmap.processes)
    first = next((p for p in cmap.processes if "pid1" in p.flags), None) or next(
        (p for p in cmap.processes if p.ppid == 0), None) or (procs[0] if procs else None)
    return procs.index(first) if first is not None else None


def _chains(pmap: PodMap) -> list[tuple[Process, ...]]:
    """Every known ancestry of the pod: pause's (shared PID namespace), then each container's."""
    sandbox = [pmap.sandbox_ancestry] if pmap.sandbox is not None and pmap.sandbox_ancestry else []
    return sandbox + [cmap.ancestry for cmap in pmap.containers if cmap.ancestry]


def _runners(pods: Sequence[PodMap]) -> tuple[list[tuple[int, str, Process]], list[tuple[int, int]]]:
    """The node's processes that run the pods' containers, each once: (node PID, role, process),
    and the edges between them (parent's node PID, child's node PID), for DOT and Mermaid."""
    boxes: dict[int, tuple[int, str, Process]] = {}
    edges: dict[tuple[int, int], None] = {}
    for pmap in pods:
        for chain in _chains(pmap):
            for depth, proc in enumerate(chain):
                if proc.node_pid is not None:
                    boxes.setdefault(proc.node_pid, (proc.node_pid, _role(chain, depth), proc))
            for near, far in pairwise(chain):
                if near.node_pid is not None and far.node_pid is not None:
                    edges[(far.node_pid, near.node_pid)] = None
    return list(boxes.values()), list(edges)


def _runner_label(role: str, proc: Process) -> list[str]:
    return [role, _node_pids(proc), *_lines(proc.command)]


def _started(pmap: PodMap) -> list[tuple[int, str]]:
    """(node PID of the runtime, the box it starts) for pause and each container of the pod, by the
    box names DOT and Mermaid share (``sandbox``, ``c<index>_<process index>``)."""
    out: list[tuple[int, str]] = []
    if pmap.sandbox is not None and pmap.sandbox_ancestry and pmap.sandbox_ancestry[0].node_pid is not None:
        out.append((pmap.sandbox_ancestry[0].node_pid, "sandbox"))
    for c_index, cmap in enumerate(pmap.containers):
        entry = _entry(cmap)
        if cmap.ancestry and cmap.ancestry[0].node_pid is not None and entry is not None:
            out.append((cmap.ancestry[0].node_pid, f"c{c_index}_{entry}"))
    return out


def _node_init(pods: Sequence[PodMap]) -> Process | None:
    return next((chain[-1] for pmap in pods for chain in _chains(pmap) if chain[-1].node_pid == 1), None)


# ---------------------------------------------------------------------------------------------- tree

class _Item:
    """One line of the tree and the lines under it."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.children: list[_Item] = []
        self.keyed: dict[object, _Item] = {}

    def add(self, label: str, key: object = None) -> _Item:
        if key is not None and key in self.keyed:
            return self.keyed[key]
        item = _Item(label)
        self.children.append(item)
        if key is not None:
            self.keyed[key] = item
        return item

    def lines(self, pad: str = "") -> list[str]:
        out: list[str] = []
        for index, child in enumerate(self.children):
            last = index == len(self.children) - 1
            out.append(pad + ("└─ " if last else "├─ ") + child.label)
            out += child.lines(pad + ("   " if last else "│  "))
        return out


def _tree_ancestor(proc: Process, role: str) -> str:
    # The whole command: the runtime's -id (the pod sandbox's container ID) is the point.
    return f"{role}: {_node_pids(proc)}  {escape(proc.command)}"


def _tree_pod(parent: _Item, pmap: PodMap, init: Process | None) -> None:
    pod = pmap.pod
    share = ", shared PID namespace" if pod.share_process_namespace else ""
    pod_item = parent.add(f"pod {_pod_title(pmap)} ({escape(pod.phase)}{share})")

    def under(chain: tuple[Process, ...]) -> _Item:
        # The runtime (and whatever lies between it and the node's init) under the pod: one line
        # per process, shared by every container it runs.
        item = pod_item
        steps = list(chain)
        if init is not None and steps and steps[-1].node_pid == init.node_pid:
            steps.pop()
        for depth in range(len(steps) - 1, -1, -1):
            proc = steps[depth]
            item = item.add(_tree_ancestor(proc, _role(chain, depth)), key=proc.node_pid)
        return item

    if pmap.sandbox is not None:
        sandbox = pmap.sandbox
        under(pmap.sandbox_ancestry).add(f"{SANDBOX_TITLE}  {_pids(sandbox)}  {_short(sandbox.command)}")
    for cmap in pmap.containers:
        c = cmap.container
        title = f"container {escape(c.name)} ({c.type}, {state_text(c)}{_pid_ns(cmap)})"
        item = under(cmap.ancestry).add(title)
        for proc in cmap.processes:
            marks = "".join(f" [{flag}]" for flag in proc.flags if flag != "pid1")
            item.add(f"{_pids(proc)}  {_short(proc.command)}{marks}")


def render_tree(maps: Sequence[PodMap]) -> str:
    root = _Item("host")
    for key, node, pods in _group_by_node(maps):
        node_item = root.add(_node_title(node, key))
        init = _node_init(pods)
        # The node's init above the pods whose runtime it started; a pod none of whose containers
        # has a known runtime (not running, or not seen from the host) hangs from the node itself.
        init_item = node_item.add(_tree_ancestor(init, INIT_TITLE)) if init is not None else None
        for pmap in pods:
            _tree_pod(init_item if init_item is not None and _chains(pmap) else node_item, pmap, init)
    lines = ["host", *root.lines()]
    notes = [note for pmap in maps for note in _notes(pmap)]
    if notes:
        lines.append("\nNOTES")
        lines.extend(f"  - {note}" for note in dict.fromkeys(notes))
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
    # Edges from the node's processes into the pods are written after every box: a node belongs to
    # the first cluster it is named in.
    edges: list[str] = []
    pod_base = 0
    for node_index, (key, node, pods) in enumerate(_group_by_node(maps)):
        out.append(f"    subgraph cluster_n{node_index} {{")
        out.append(f'      label={_dot_string(_node_title(node, key))}; bgcolor="#e3ecf7";')
        runners, runner_edges = _runners(pods)
        for node_pid, role, proc in runners:
            color = "#c9d3ef" if node_pid == 1 else "#d7e8fb"
            label = "\n".join(_runner_label(role, proc))
            out.append(f'      n{node_index}_a{node_pid} [label={_dot_string(label)}, fillcolor="{color}"];')
        edges += [f"  n{node_index}_a{far} -> n{node_index}_a{near};" for far, near in runner_edges]
        for pod_index, pmap in enumerate(pods):
            pod_id = pod_base + pod_index
            pod = pmap.pod
            if not pmap.containers:
                # A pod without containers (never scheduled) still gets its box.
                out.append(f"      p{pod_id}_empty [label={_dot_string(f'pod {_pod_title(pmap)}')}];")
                continue
            out.append(f"      subgraph cluster_p{pod_id} {{")
            out.append(f"        label={_dot_string(f'pod {_pod_title(pmap)} ({escape(pod.phase)})')}; "
                       'bgcolor="#fdf3dc";')
            if pmap.sandbox is not None:
                label = f"{SANDBOX_TITLE}\n{_pids(pmap.sandbox)}\n{_short(pmap.sandbox.command, 40)}"
                out.append(f"        p{pod_id}_sandbox [label={_dot_string(label)}, "
                           'fillcolor="#ffe08a"];')
            for c_index, cmap in enumerate(pmap.containers):
                c = cmap.container
                out.append(f"        subgraph cluster_p{pod_id}_c{c_index} {{")
                title = f"container {escape(c.name)} ({c.type}{_pid_ns(cmap)})"
                out.append(f'          label={_dot_string(title)}; bgcolor="#e4f4e4";')
                if not cmap.processes:
                    # An empty cluster is not drawn at all: a placeholder keeps the container visible.
                    out.append(f"          p{pod_id}_c{c_index}_none [label={_dot_string(state_text(c))}, "
                               'shape=plaintext, style=""];')
                for p_index, proc in enumerate(cmap.processes):
                    label = f"{_pids(proc)}\n{_short(proc.command, 40)}"
                    extra = ', fillcolor="#ffe08a"' if "pid1" in proc.flags else ""
                    box = f"p{pod_id}_c{c_index}_{p_index}"
                    out.append(f"          {box} [label={_dot_string(label)}{extra}];")
                for parent, child in _parent_edges(cmap):
                    out.append(f"          p{pod_id}_c{c_index}_{parent} -> p{pod_id}_c{c_index}_{child};")
                out.append("        }")
            out.append("      }")
            edges += [f"  n{node_index}_a{runner} -> p{pod_id}_{box};" for runner, box in _started(pmap)]
        pod_base += len(pods)
        out.append("    }")
    out += ["  }", *edges]
    # pidmap's notes, as the table prints them: comments, so that a slide stays as drawn.
    out += [f"  // note: {note}" for note in dict.fromkeys(n for pmap in maps for n in _notes(pmap))]
    out.append("}")
    return "\n".join(out)


# ------------------------------------------------------------------------------------------- mermaid

_MERMAID_UNSAFE = re.compile(r'["<>#`;&%\\]')


def _mermaid_text(text: str) -> str:
    # Inside "..." a label may hold brackets, but not a double quote; '<' would start HTML, '&' and
    # '#' an entity, '`' a markdown string, ';' ends a statement in some versions and '%%{' starts a
    # directive (anywhere in the text, even in a comment): write them as Mermaid entities (#quot;
    # #lt; #gt; or a numeric one such as #59;). A backslash too, which
    # Mermaid passes to the HTML label as it is. The text was escaped (pidmap.wording) before, so it
    # holds no line break or control character that could end the statement.
    names = {'"': "#quot;", "<": "#lt;", ">": "#gt;"}
    return _MERMAID_UNSAFE.sub(lambda m: names.get(m.group(0), f"#{ord(m.group(0))};"), escape(text))


def render_mermaid(maps: Sequence[PodMap]) -> str:
    out = ["flowchart TB", '  subgraph host["host"]', "    direction TB"]
    pid1: list[str] = []  # the boxes of PID-1 processes, highlighted at the end
    runtime: list[str] = []  # the boxes of the node's processes that run the containers
    # Edges from the node's processes into the pods come after every box and subgraph: Mermaid
    # puts a box in the subgraph where it is first named.
    edges: list[str] = []
    pod_base = 0
    for node_index, (key, node, pods) in enumerate(_group_by_node(maps)):
        out.append(f'    subgraph n{node_index}["{_mermaid_text(_node_title(node, key))}"]')
        out.append("      direction TB")
        runners, runner_edges = _runners(pods)
        for node_pid, role, proc in runners:
            label = "<br/>".join(_mermaid_text(part) for part in _runner_label(role, proc))
            out.append(f'      n{node_index}_a{node_pid}["{label}"]')
            runtime.append(f"n{node_index}_a{node_pid}")
        edges += [f"  n{node_index}_a{far} --> n{node_index}_a{near}" for far, near in runner_edges]
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
                title = f"container {escape(c.name)} ({c.type}{_pid_ns(cmap)})"
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
            edges += [f"  n{node_index}_a{runner} --> p{pod_id}_{box}" for runner, box in _started(pmap)]
            if not pmap.containers:
                out.append(f'        p{pod_id}_empty["no container"]')
            out.append("      end")
        pod_base += len(pods)
        out.append("    end")
    out.append("  end")
    out += edges
    if pid1:
        out.append("  classDef pid1 fill:#ffe08a")
        out.append(f"  class {','.join(pid1)} pid1")
    if runtime:
        out.append("  classDef runtime fill:#d7e8fb")
        out.append(f"  class {','.join(runtime)} runtime")
    # pidmap's notes, as the table prints them: comments (a note cannot start a %%{ directive).
    notes = dict.fromkeys(note for pmap in maps for note in _notes(pmap))
    out += [f"  %% note: {_mermaid_text(note)}" for note in notes]
    return "\n".join(out)


def render_picture(maps: Sequence[PodMap], picture: Picture) -> str:
    if picture == "dot":
        return render_dot(maps)
    if picture == "mermaid":
        return render_mermaid(maps)
    return render_tree(maps)
