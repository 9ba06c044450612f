"""A container with a PID namespace nested inside it (``unshare --pid --fork --mount-proc``), recorded
from a kind-flavor sandbox (tests/fixtures/record_sandbox.py; the manifest is in the fixture).

The nested namespace's init has four NSpid numbers (host, node, container, nested): its container PID
is the third, not the last. Expected rows come from the recorded NSpid lines and a substring search of
each process's cgroup file, not from pidmap's parsers.
"""

from __future__ import annotations

from typing import Any

from pidmap.correlate import correlate
from pidmap.model import HostView, Node, ProbeResult, ProcessTable, Subject
from pidmap.procfs import parse_ns_link, parse_scan
from pidmap.sources.kube import pod_from_api
from pidmap.whois import NodeInfo, identify
from tests.unit.recorded import host_processes, load

DOC = load("sandbox_kind_nested_pidns.json")
NODE_PID = DOC["truth"]["node_host_pid"]
NODE_DEPTH = len(DOC["truth"]["nspid"][str(NODE_PID)]) - 1
(STATUS,) = DOC["pod"]["status"]["containerStatuses"]
CID = STATUS["containerID"].split("://")[1]
# host PID -> NSpid of the container's processes (those in its cgroup, below the node)
MEMBERS = {int(pid): chain for pid, chain in DOC["truth"]["nspid"].items() if len(chain) > NODE_DEPTH + 1
           and f"cri-containerd-{CID}.scope" in DOC["host_proc"][pid]["cgroup"]}
EXPECTED = {(chain[NODE_DEPTH + 1], chain[NODE_DEPTH], chain[0]) for chain in MEMBERS.values()}


def _pod() -> Any:
    return pod_from_api(DOC["pod"])


def _node() -> Node:
    # The node init's cgroup path is /docker/<node container id> (cgroupfs driver on this host).
    node_id = DOC["host_proc"][str(NODE_PID)]["cgroup"].splitlines()[0].rsplit("/", 1)[1]
    return Node(name=DOC["pod"]["spec"]["nodeName"], provider="kind", container_id=node_id, host_pid=NODE_PID)


def _rows(result: Any) -> set[tuple[int | None, int | None, int | None]]:
    (cmap,) = result.containers
    return {(p.container_pid, p.node_pid, p.host_pid) for p in cmap.processes}


def test_the_fixture_has_a_nested_namespace() -> None:
    assert any(len(chain) == NODE_DEPTH + 3 for chain in MEMBERS.values())
    assert len(EXPECTED) == len(MEMBERS) == 3


def test_local_view_with_probe_and_without() -> None:
    probes = {STATUS["name"]: ProbeResult(table=parse_scan(DOC["probes"]["outer"]))}
    for with_ns in (True, False):  # by namespace inode (root) and by cgroup only (not root)
        view = HostView(table=ProcessTable(processes=tuple(host_processes(DOC, with_ns=with_ns))),
                        via="local", node_level=NODE_DEPTH, host_level=0)
        for given in (probes, {}):  # with the probe, and from the host side alone (pidmap node)
            result = correlate(_pod(), _node(), given, view)
            assert _rows(result) == EXPECTED, (with_ns, bool(given))
            (cmap,) = result.containers
            assert [p.container_pid for p in cmap.processes if "pid1" in p.flags] == [1]
            assert not any(f in p.flags for p in cmap.processes for f in ("mismatch", "gone", "new"))
            assert not cmap.notes and not result.notes
            # The nested init's parent (unshare) by its container PID, from the recorded PPid line.
            host_pid, chain = next((pid, c) for pid, c in MEMBERS.items() if len(c) == NODE_DEPTH + 3)
            status = DOC["host_proc"][str(host_pid)]["status"]
            parent = int(next(line for line in status.splitlines() if line.startswith("PPid:")).split()[1])
            row = next(p for p in cmap.processes if p.container_pid == chain[NODE_DEPTH + 1])
            assert row.ppid == MEMBERS[parent][NODE_DEPTH + 1]


def test_docker_view() -> None:
    view = HostView(table=parse_scan(DOC["node_scan_full"]), via="docker", node_level=0, host_level=None)
    result = correlate(_pod(), None, {}, view)
    assert _rows(result) == {(c, n, None) for c, n, _ in EXPECTED}


def test_whois_names_the_container_pid_not_the_nested_one() -> None:
    pod = _pod()
    node = _node()
    node_ns = parse_ns_link(DOC["host_proc"][str(NODE_PID)]["ns_pid"])
    info = NodeInfo(node=node, level=NODE_DEPTH, pid_ns=node_ns)
    procs = {p.pid: p for p in host_processes(DOC)}
    for host_pid, chain in MEMBERS.items():
        # Namespace ancestry was not recorded: the node is found by its id in the cgroup path.
        subject = Subject(process=procs[host_pid], cgroup_text=DOC["host_proc"][str(host_pid)]["cgroup"],
                          ns_ancestry=None)
        answer = identify(subject, [info], [pod])
        assert (answer.kind, answer.container_pid, answer.node_pid) == ("container", chain[NODE_DEPTH + 1],
                                                                        chain[NODE_DEPTH])
        assert answer.container is not None and answer.container.container_id == CID
