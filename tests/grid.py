"""Parse every output format of pidmap and check every PID in it against the kernel.

The grid (tests/e2e/test_grid.py) and any other test can use these helpers:

- parsers turn one output (``table``/``wide``, ``json``, ``yaml``, ``tree``, ``dot``, ``mermaid``,
  ``watch``'s table and JSON lines, ``whois``'s table and JSON) into :class:`PodView` rows: the
  output is parsed by the format's own reader (``yaml.safe_load``, ``json``, Graphviz's ``dot``,
  Mermaid's parser through ``tests/e2e/mermaid_check.mjs``, the table by its header's columns);
- :func:`take_truth` reads the ground truth once: the pods from ``kubectl get pods -o json``, the
  nodes from ``docker inspect``, every process of every container (and the pause process of a
  shared-PID pod) from the host's ``/proc/PID/cgroup`` and ``/proc/PID/status`` NSpid;
- :func:`verify_view` checks one parsed pod against it: every row's PIDs are read again from the
  kernel (host PID → NSpid on the host; without a host PID, ``docker exec NODE cat
  /proc/N/status``), every container against kubectl, the node against ``docker inspect``, and the
  rows must be exactly the pod's processes: a row with no evidence fails, a missing one too.

The pods checked here must be ones whose processes never exit (``sleep``, ``httpd``, ``node``):
nothing is spared as "gone since".
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tests.kernel import nspid, pids_in_cgroup, start_ticks

ROOT = Path(__file__).resolve().parent.parent
MERMAID = ROOT / ".cache" / "mermaid"
MERMAID_CHECK = ROOT / "tests" / "e2e" / "mermaid_check.mjs"
SANDBOX_ROW = "<pod sandbox>"  # the container name given to a shared-PID pod's pause row


@dataclass
class Row:
    """One process row as an output shows it; None where the output shows no value."""

    container: str  # SANDBOX_ROW for the pause row
    container_pid: int | None
    node_pid: int | None
    host_pid: int | None
    command: str | None = None
    pid1_mark: bool | None = None  # the table's `1*`; None where the format has no mark


@dataclass
class PodView:
    """What one output says about one pod."""

    namespace: str
    pod: str
    node: str | None = None
    node_container_id: str | None = None  # possibly shortened, as the output shows it
    node_host_pid: int | None = None
    containers: dict[str, str | None] = field(default_factory=dict)  # name -> ID as shown, or None
    rows: list[Row] = field(default_factory=list)
    ancestry: list[Row] = field(default_factory=list)  # `RUNS UNDER` / JSON `ancestry`: node level


# --- parsers ------------------------------------------------------------------------------------

def _int(text: str | None) -> int | None:
    if text is None or text in ("-", "?", ""):
        return None
    return int(text)


def _row_from_doc(container: str, proc: dict[str, Any]) -> Row:
    return Row(container, proc["container_pid"], proc["node_pid"], proc["host_pid"], proc["command"])


def view_from_doc(doc: dict[str, Any]) -> PodView:
    """A `show` document (JSON or YAML, or one element of `node`/`show --all`/watch's `pod`)."""
    node = doc["node"] or {}
    view = PodView(doc["namespace"], doc["pod"], node.get("name"), node.get("container_id"),
                   node.get("host_pid"))
    if doc.get("sandbox") is not None:
        view.rows.append(_row_from_doc(SANDBOX_ROW, doc["sandbox"]))
    for container in doc["containers"]:
        view.containers[container["name"]] = container["container_id"]
        view.rows += [_row_from_doc(container["name"], p) for p in container["processes"]]
        view.ancestry += [_row_from_doc(container["name"], p) for p in container.get("ancestry") or []]
    return view


def parse_json(text: str) -> list[PodView]:
    doc = json.loads(text)
    return [view_from_doc(d) for d in (doc if isinstance(doc, list) else [doc])]


def parse_yaml(text: str) -> list[PodView]:
    doc = yaml.safe_load(text)
    return [view_from_doc(d) for d in (doc if isinstance(doc, list) else [doc])]


_COLUMNS = re.compile(r"\S+(?: \S+)*")


def _columns(header: str) -> list[tuple[str, int]]:
    return [(m.group(0), m.start()) for m in _COLUMNS.finditer(header)]


def _cells(line: str, columns: list[tuple[str, int]]) -> dict[str, str]:
    cells = {}
    for i, (name, start) in enumerate(columns):
        end = columns[i + 1][1] if i + 1 < len(columns) else len(line)
        cells[name] = line[start:end].strip()
    return cells


def parse_table(text: str) -> list[PodView]:
    """`-o table` / `-o wide` of show, node, show --all (pods one after another): by the columns of
    each section's header line (CONTAINER PID, NODE PID, HOST PID, ..., COMMAND)."""
    views: list[PodView] = []
    section: str | None = None  # the container a row belongs to, SANDBOX_ROW, or None
    ancestry = False
    columns: list[tuple[str, int]] | None = None
    for line in text.splitlines():
        if not line.strip():
            columns = None
            continue
        if m := re.match(r"POD (\S+)/(\S+)\s+phase: ", line):
            views.append(PodView(m.group(1), m.group(2)))
            section, columns = None, None
            continue
        if line.startswith("NODE ") and views:
            view = views[-1]
            view.node = line.split()[1]
            cid = re.search(r"container: (\S+)", line)
            hpid = re.search(r"host PID: (\S+)", line)
            view.node_container_id = None if cid is None or cid.group(1) == "-" else cid.group(1)
            view.node_host_pid = _int(hpid.group(1)) if hpid else None
            continue
        if line.startswith("POD SANDBOX"):
            section, ancestry = SANDBOX_ROW, False
            continue
        if line.startswith("CONTAINER PID"):
            columns = _columns(line)
            assert [c for c, _ in columns[:3]] == ["CONTAINER PID", "NODE PID", "HOST PID"], line
            assert columns[-1][0] == "COMMAND", line
            continue
        if m := re.match(r"CONTAINER (\S+) \((\w+)\)", line):
            section, ancestry = m.group(1), False
            cid = re.search(r"id: (\S+)", line)
            views[-1].containers[section] = cid.group(1) if cid else None
            continue
        if line.startswith("RUNS UNDER"):
            ancestry = True
            continue
        if columns is not None:
            assert section is not None, f"a row outside any section: {line!r}"
            cells = _cells(line, columns)
            cpid = cells["CONTAINER PID"]
            row = Row(section, _int(cpid.rstrip("*")), _int(cells["NODE PID"]), _int(cells["HOST PID"]),
                      cells["COMMAND"], None if ancestry else cpid.endswith("*"))
            (views[-1].ancestry if ancestry else views[-1].rows).append(row)
    return views


def parse_watch_table(text: str) -> list[list[PodView]]:
    """watch's table: one block per refresh, each starting `Every Ns: pidmap watch NS/POD`."""
    blocks = re.split(r"^Every [0-9.]+s: pidmap watch .*$", text, flags=re.M)
    assert blocks[0].strip() == "", blocks[0]
    return [parse_table(block) for block in blocks[1:]]


def parse_watch_json(text: str) -> list[tuple[dict[str, Any], PodView]]:
    """watch -o json: one document per line; each with its event and the pod's map."""
    out = []
    for line in text.splitlines():
        doc = json.loads(line)
        out.append((doc, view_from_doc(doc["pod"])))
    return out


_LABEL = re.compile(r"PID (\d+|-|\?) · node (\d+|-|\?) · host (\d+|-|\?)")


def _picture_row(container: str, label: str) -> Row:
    m = _LABEL.search(label)
    assert m, f"a process box without PIDs in {container}: {label!r}"
    return Row(container, _int(m.group(1)), _int(m.group(2)), _int(m.group(3)))


def _node_header(view: PodView, title: str) -> None:
    """`node NAME (provider, container ID, host PID N)`, or `node NAME` alone (agent)."""
    m = re.match(r"node (\S+)(?: \((.*)\))?$", title)
    assert m, title
    view.node = m.group(1)
    details = m.group(2) or ""
    cid = re.search(r"container (\w+)", details)
    hpid = re.search(r"host PID (\d+)", details)
    view.node_container_id = cid.group(1) if cid else None
    view.node_host_pid = int(hpid.group(1)) if hpid else None


def parse_tree(text: str) -> list[PodView]:
    lines = text.splitlines()
    assert lines[0] == "host", lines[:1]
    views: list[PodView] = []
    node_line = ""
    container: str | None = None
    for line in lines[1:]:
        if not line.strip() or line == "NOTES":
            break  # pidmap's notes follow the tree
        item = re.sub(r"^[│├└─ ]*", "", line)
        if item.startswith(("node init: ", "container runtime: ")):
            continue  # who runs the containers (the node's init, the pod's shim): not a container's row
        if item.startswith("node "):
            node_line = item
        elif m := re.match(r"pod sandbox \(.*?\)  (.*)$", item):
            views[-1].rows.append(_picture_row(SANDBOX_ROW, m.group(1)))
        elif m := re.match(r"pod (\S+)/(\S+) \(", item):
            views.append(PodView(m.group(1), m.group(2)))
            _node_header(views[-1], node_line)
            container = None
        elif m := re.match(r"container (\S+) \(", item):
            container = m.group(1)
            views[-1].containers[container] = None
        elif item.startswith("PID "):
            assert container is not None, line
            row = _picture_row(container, item)
            row.command = item.split("  ", 1)[1]
            views[-1].rows.append(row)
        else:
            raise AssertionError(f"a tree line this parser does not know: {line!r}")
    return views


@dataclass
class _Box:
    """A cluster (DOT) or subgraph (Mermaid) with its title, its boxes and its sub-clusters."""

    title: str
    leaves: list[tuple[str, str]]  # (id, label)
    children: list[_Box]


def _views_from_boxes(root: _Box) -> list[PodView]:
    assert root.title == "host", root.title
    views: list[PodView] = []
    for node in root.children:
        # The node's own boxes are who runs the containers (its init, each pod's shim): n<i>_a<PID>.
        assert all(re.fullmatch(r"n\d+_a\d+", leaf_id) for leaf_id, _ in node.leaves), node.leaves
        for pod in node.children:
            m = re.match(r"pod (\S+)/(\S+) \(", pod.title)
            assert m, pod.title
            view = PodView(m.group(1), m.group(2))
            _node_header(view, node.title)
            for leaf_id, label in pod.leaves:
                assert leaf_id.endswith("_sandbox"), (leaf_id, label)
                view.rows.append(_picture_row(SANDBOX_ROW, label))
            for box in pod.children:
                cm = re.match(r"container (\S+) \(", box.title)
                assert cm and not box.children, box.title
                view.containers[cm.group(1)] = None
                for leaf_id, label in box.leaves:
                    if leaf_id.endswith("_none"):  # `terminated (...)`: a container with no process
                        assert not _LABEL.search(label), label
                        continue
                    view.rows.append(_picture_row(cm.group(1), label))
            views.append(view)
    return views


def parse_dot(text: str) -> list[PodView]:
    """DOT through Graphviz itself: `dot -Tplain` must lay it out, and `dot -Tjson0` (the same parse,
    with the clusters -Tplain leaves out) gives each box's cluster."""
    dot = shutil.which("dot")
    assert dot, "graphviz (dot) is missing: scripts/setup.sh installs it"
    plain = subprocess.run([dot, "-Tplain"], input=text, capture_output=True, text=True, check=False)
    assert plain.returncode == 0 and plain.stdout.startswith("graph "), plain.stderr
    graph = json.loads(subprocess.run([dot, "-Tjson0"], input=text, capture_output=True, text=True,
                                      check=True).stdout)
    objects = {o["_gvid"]: o for o in graph["objects"]}
    clusters = graph["_subgraph_cnt"]
    plain_nodes = {line.split()[1] for line in plain.stdout.splitlines() if line.startswith("node ")}
    assert plain_nodes == {o["name"] for o in graph["objects"][clusters:]}

    def box(gvid: int) -> _Box:
        obj = objects[gvid]
        subs = obj.get("subgraphs") or []
        below = {n for s in subs for n in _all_nodes(objects, s)}
        leaves = [(objects[n]["name"], objects[n]["label"].replace("\\n", "\n"))
                  for n in obj.get("nodes") or [] if n not in below]
        return _Box(obj["label"], leaves, [box(s) for s in subs])

    (root,) = [o["_gvid"] for o in graph["objects"][:clusters] if o["name"] == "cluster_host"]
    return _views_from_boxes(box(root))


def _all_nodes(objects: dict[int, Any], gvid: int) -> list[int]:
    nodes: list[int] = objects[gvid].get("nodes") or []
    return nodes


def mermaid_parse(text: str) -> dict[str, Any]:
    """Mermaid's own parser (npm mermaid, installed by scripts/test.sh into .cache/mermaid):
    its vertices, subgraphs and edges as the parser's flowchart database holds them."""
    assert (MERMAID / "node_modules" / "mermaid").is_dir(), \
        "the mermaid parser is missing: scripts/test.sh installs it into .cache/mermaid (npm)"
    node = shutil.which("node")
    assert node, "node is missing: scripts/setup.sh installs it"
    result = subprocess.run([node, "--input-type=module", "-e", MERMAID_CHECK.read_text()], input=text,
                            capture_output=True, text=True, cwd=MERMAID, check=False,
                            env={"PATH": "/usr/bin:/bin", "PIDMAP_MERMAID_DUMP": "1"})
    assert result.returncode == 0, result.stdout + result.stderr
    parsed: dict[str, Any] = json.loads(result.stdout)
    return parsed


def parse_mermaid(text: str) -> list[PodView]:
    parsed = mermaid_parse(text)
    vertices = {v["id"]: v["text"].replace("<br>", "\n") for v in parsed["vertices"]}
    subgraphs = {s["id"]: s for s in parsed["subgraphs"]}

    def box(sid: str) -> _Box:
        sub = subgraphs[sid]
        return _Box(sub["title"], [(n, vertices[n]) for n in sub["nodes"] if n not in subgraphs],
                    [box(n) for n in sub["nodes"] if n in subgraphs])

    return _views_from_boxes(box("host"))


PARSERS = {"table": parse_table, "wide": parse_table, "json": parse_json, "yaml": parse_yaml,
           "tree": parse_tree, "dot": parse_dot, "mermaid": parse_mermaid}


def parse_whois_table(text: str) -> dict[str, Any]:
    """whois's table: a summary line, then `KEY   VALUE` lines (NODE, NAMESPACE, POD, CONTAINER,
    CONTAINER PID, CHAIN host H → node NAME N → container NAME C, COMMAND, MATCHED BY)."""
    lines = text.splitlines()
    fields = {}
    keys = ("CONTAINER PID", "CONTAINER", "NAMESPACE", "NODE", "POD", "CHAIN", "COMMAND", "MATCHED BY")
    for line in lines[1:]:
        key = next((k for k in keys if line.startswith(f"  {k} ")), None)
        assert key, f"a whois line this parser does not know: {line!r}"
        fields[key] = line[len(key) + 2:].strip()
    chain = [int(step.split()[-1]) for step in fields["CHAIN"].split(" → ")] if "CHAIN" in fields else []
    return {"summary": lines[0], "node": fields.get("NODE"), "namespace": fields.get("NAMESPACE"),
            "pod": fields.get("POD"), "container": fields.get("CONTAINER"),
            "container_pid": _int(fields.get("CONTAINER PID")), "nspid": chain,
            "command": fields.get("COMMAND")}


# --- ground truth -------------------------------------------------------------------------------

@dataclass
class Truth:
    """Read once per module from kubectl, docker inspect and the host's /proc."""

    namespace: str
    pods: dict[str, dict[str, Any]]  # kubectl get pods -o json, by name
    nodes: dict[str, dict[str, Any]]  # docker inspect, by node name
    # pod -> (container or SANDBOX_ROW, container PID, node PID, host PID) of each process
    procs: dict[str, set[tuple[str, int, int, int]]]
    starts: dict[int, int]  # host PID -> start ticks, to tell a process from a later one

    def container_ids(self, pod: str) -> dict[str, str]:
        """container name -> its full ID, as kubectl reports it (running or not)."""
        statuses = self.pods[pod]["status"]
        return {s["name"]: s["containerID"].split("://", 1)[1]
                for key in ("containerStatuses", "initContainerStatuses")
                for s in statuses.get(key) or [] if s.get("containerID")}

    def container_types(self, pod: str) -> dict[str, str]:
        spec = self.pods[pod]["spec"]
        return {**{c["name"]: "init" for c in spec.get("initContainers") or []},
                **{c["name"]: "app" for c in spec["containers"]}}

    def pod_of_host_pid(self, host_pid: int) -> tuple[str, str]:
        for pod, procs in self.procs.items():
            for container, _c, _n, h in procs:
                if h == host_pid:
                    return pod, container
        raise AssertionError(f"host PID {host_pid} is no process of the module's pods")


def kubectl_json(env: dict[str, str], *args: str) -> dict[str, Any]:
    out = subprocess.run(["kubectl", *args, "-o", "json"], capture_output=True, text=True, env=env,
                         check=True, timeout=60).stdout
    doc: dict[str, Any] = json.loads(out)
    return doc


def docker_inspect(name: str) -> dict[str, Any]:
    out = subprocess.run(["docker", "inspect", name], capture_output=True, text=True, check=True).stdout
    doc: dict[str, Any] = json.loads(out)[0]
    return doc


def _pod_cgroup_fragments(uid: str) -> tuple[str, str]:
    return f"pod{uid}", f"pod{uid.replace('-', '_')}"  # cgroupfs, systemd driver


def take_truth(env: dict[str, str], namespace: str) -> Truth:
    pods = {p["metadata"]["name"]: p for p in kubectl_json(env, "get", "pods", "-n", namespace)["items"]}
    nodes = {n: docker_inspect(n) for n in {p["spec"]["nodeName"] for p in pods.values()}}
    truth = Truth(namespace, pods, nodes, {}, {})
    for name, pod in pods.items():
        procs: set[tuple[str, int, int, int]] = set()
        ids = truth.container_ids(name)
        in_containers: set[int] = set()
        for container, cid in ids.items():
            for pid in pids_in_cgroup(cid):
                chain = nspid(pid)
                assert len(chain) == 3, (name, container, pid, chain)  # host, node, container
                procs.add((container, chain[2], chain[1], pid))
                in_containers.add(pid)
        uid = pod["metadata"]["uid"]
        for fragment in _pod_cgroup_fragments(uid):
            for pid in set(pids_in_cgroup(fragment)) - in_containers:
                chain = nspid(pid)
                if pod["spec"].get("shareProcessNamespace") and chain[-1] == 1:
                    procs.add((SANDBOX_ROW, 1, chain[1], pid))
        truth.procs[name] = procs
        truth.starts.update({h: start_ticks(h) for _c, _cp, _n, h in procs})
    return truth


def still_true(truth: Truth) -> None:
    """Every process of the truth still runs, as the same process: the pods are stable ones."""
    for host_pid, start in truth.starts.items():
        assert start_ticks(host_pid) == start, f"host PID {host_pid} exited or was reused"


# --- checks -------------------------------------------------------------------------------------

def node_view_of(node: str, pids: Iterable[int]) -> dict[int, tuple[list[int], str, str]]:
    """node PID -> (NSpid, cgroup text, cmdline) as the node itself shows them (docker exec NODE
    cat, one exec for all the PIDs)."""
    wanted = sorted(set(pids))
    if not wanted:
        return {}
    script = "; ".join(f"echo @@{p}; cat /proc/{p}/status /proc/{p}/cgroup; echo @@cmd; "
                       f"tr '\\0' ' ' < /proc/{p}/cmdline; echo" for p in wanted)
    out = subprocess.run(["docker", "exec", node, "sh", "-c", script], capture_output=True, text=True,
                         check=True, timeout=60).stdout
    found: dict[int, tuple[list[int], str, str]] = {}
    last = 0
    for chunk in out.split("@@")[1:]:
        head, _, body = chunk.partition("\n")
        if head == "cmd":
            pid = last
            chain, cgroup, _ = found[pid]
            found[pid] = (chain, cgroup, body.strip())
            continue
        last = int(head)
        chain = next(([int(x) for x in line.split()[1:]] for line in body.splitlines()
                      if line.startswith("NSpid:")), [])
        found[last] = (chain, body, "")
    return found


def _host_cmdline(pid: int) -> str:
    return (Path("/proc") / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode().strip()


def _command_ok(shown: str | None, actual: str) -> bool:
    if shown is None:
        return True
    return actual.startswith(shown.removesuffix("...")) if shown.endswith("...") else shown == actual


def verify_view(view: PodView, truth: Truth, via: str, *, only: str | None = None) -> int:
    """Check one parsed pod against the kernel, kubectl and docker inspect; return the rows checked.

    via: local (host PIDs shown), docker (no host PID: node PIDs checked inside the node), agent.
    only: the container of `-c` (then the other containers must not be shown)."""
    pod = view.pod
    assert view.namespace == truth.namespace and pod in truth.pods, (view.namespace, pod)
    kube = truth.pods[pod]
    node = kube["spec"]["nodeName"]
    inspect = truth.nodes[node]
    assert view.node == node, (pod, view.node, node)
    if via in ("local", "docker"):
        assert view.node_container_id is not None and inspect["Id"].startswith(view.node_container_id)
        assert view.node_host_pid == inspect["State"]["Pid"], (view.node_host_pid, inspect["State"]["Pid"])
        assert nspid(inspect["State"]["Pid"])[-1] == 1  # the node container's init
    else:  # the agent does not know the node's container; it must not invent one
        assert view.node_container_id in (None, inspect["Id"][:len(view.node_container_id or "")])
    # Containers: exactly kubectl's (or the one asked for), each with kubectl's ID where shown.
    ids, types = truth.container_ids(pod), truth.container_types(pod)
    assert set(view.containers) == ({only} if only else set(types)), (pod, view.containers, types)
    for name, shown_id in view.containers.items():
        assert shown_id is None or ids[name].startswith(shown_id), (pod, name, shown_id, ids[name])
    # Rows: exactly the kernel's processes of those containers (and the pause row), no more, no less.
    expected = {p for p in truth.procs[pod] if (only is None or p[0] in (only, SANDBOX_ROW))}
    if only is not None and not kube["spec"].get("shareProcessNamespace"):
        expected = {p for p in expected if p[0] == only}
    shown = [(r.container, r.container_pid, r.node_pid) for r in view.rows]
    assert len(shown) == len(set(shown)), f"{pod}: a row shown twice: {shown}"
    assert set(shown) == {(c, cp, n) for c, cp, n, _h in expected}, (pod, sorted(shown), sorted(expected))
    by_key = {(c, cp, n): h for c, cp, n, h in expected}
    in_node: list[Row] = []
    for row in view.rows:
        assert row.container_pid is not None and row.node_pid is not None, (pod, row)
        if row.pid1_mark is not None:
            assert row.pid1_mark == (row.container_pid == 1), (pod, row)
        if row.host_pid is None:
            assert via == "docker", f"{pod}: no host PID through --via {via}: {row}"
            in_node.append(row)
            continue
        assert via != "docker", f"{pod}: --via docker cannot see host PIDs, yet shows {row}"
        # The kernel's own account, read now: NSpid of that host PID, and its cgroup.
        assert row.host_pid == by_key[(row.container, row.container_pid, row.node_pid)], (pod, row)
        assert nspid(row.host_pid) == [row.host_pid, row.node_pid, row.container_pid], (pod, row)
        cgroup = (Path("/proc") / str(row.host_pid) / "cgroup").read_text()
        owner = ids[row.container] if row.container != SANDBOX_ROW else f"pod{kube['metadata']['uid']}"
        assert owner in cgroup, (pod, row)
        assert _command_ok(row.command, _host_cmdline(row.host_pid)), (pod, row)
    # Without host PIDs: the node's own /proc, read inside the node container.
    seen = node_view_of(node, [r.node_pid for r in in_node + view.ancestry if r.host_pid is None
                               and r.node_pid is not None])
    for row in in_node:
        assert row.node_pid is not None
        chain, cgroup, cmdline = seen[row.node_pid]
        assert chain == [row.node_pid, row.container_pid], (pod, row, chain)
        owner = ids[row.container] if row.container != SANDBOX_ROW else f"pod{kube['metadata']['uid']}"
        assert owner in cgroup, (pod, row)
        assert _command_ok(row.command, cmdline), (pod, row, cmdline)
    # RUNS UNDER / ancestry: node-level processes, up to the node's init.
    for row in view.ancestry:
        assert row.container_pid is None and row.node_pid is not None, (pod, row)
        if row.host_pid is not None:
            assert nspid(row.host_pid) == [row.host_pid, row.node_pid], (pod, row)
            assert _command_ok(row.command, _host_cmdline(row.host_pid)), (pod, row)
        else:
            assert via == "docker", (pod, row)
            assert seen[row.node_pid][0] == [row.node_pid], (pod, row)
    if view.ancestry:
        for name in {r.container for r in view.ancestry}:
            last = [r for r in view.ancestry if r.container == name][-1]
            assert last.node_pid == 1 and last.host_pid in (None, inspect["State"]["Pid"]), (pod, last)
    return len(view.rows) + len(view.ancestry)


def verify_views(views: list[PodView], truth: Truth, via: str, pods: set[str], *,
                 only: str | None = None) -> int:
    """Several pods (node, show --all): exactly ``pods``, each verified; return the rows checked."""
    names = [v.pod for v in views]
    assert sorted(names) == sorted(pods), (names, pods)
    return sum(verify_view(v, truth, via, only=only) for v in views)


def verify_whois(answer: dict[str, Any], truth: Truth, host_pid: int) -> None:
    """A whois answer (JSON, or parse_whois_table's dict) for a process of the truth's pods."""
    pod, container = truth.pod_of_host_pid(host_pid)
    kube = truth.pods[pod]
    chain = nspid(host_pid)
    assert answer["nspid"] == chain, (answer, chain)
    assert answer["container_pid"] == chain[-1]
    assert (answer["node"], answer["namespace"], answer["pod"]) == (
        kube["spec"]["nodeName"], truth.namespace, pod), answer
    assert answer["node"] in truth.nodes
    cgroup = (Path("/proc") / str(host_pid) / "cgroup").read_text()
    if container == SANDBOX_ROW:
        assert answer["container"] is None and f"pod{kube['metadata']['uid']}" in cgroup, answer
    else:
        assert answer["container"] == container and truth.container_ids(pod)[container] in cgroup, answer
    assert answer["command"] == _host_cmdline(host_pid), answer
