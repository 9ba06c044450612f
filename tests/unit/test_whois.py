"""whois.identify on inputs read by pidmap's own readers from a node recorded raw from a sandbox
(tests/fixtures/record_node.py, replayed by tests/unit/recorded_node.py): the node infos of the
recorded node containers over the recorded /proc (``collect._node_infos``), the pods of the recorded
pod list (``kube.pod_from_api``), the node's process table (``collect._node_table``) and the subject
(``hostprocs.read_subject``) of every recorded host process. Expected owners come from the API's
containerIDs and the cgroup text (plain substring searches), expected PIDs from the NSpid lines.
"""

from __future__ import annotations

import functools

from pidmap import collect
from pidmap.model import Pod, ProcessTable, RawProcess, Subject
from pidmap.sources import hostprocs, kube, nodes
from pidmap.whois import Answer, NodeInfo, chain_text, identify, node_of
from pidmap.whois import to_document as whois_document
from tests.unit import recorded_node
from tests.unit.recorded_node import DOC, NODE


@functools.cache
def _inputs() -> tuple[list[Subject], list[NodeInfo], ProcessTable]:
    with recorded_node.replay() as root:
        infos = collect._node_infos(nodes.list_nodes(recorded_node._Docker()), root)
        subjects = [s for pid in DOC["host_proc"]
                    if (s := hostprocs.read_subject(int(pid), root)) is not None]
        table = collect._node_table(next(i for i in infos if i.node.name == NODE), root)
    return subjects, infos, table


def _subjects() -> list[Subject]:
    return _inputs()[0]


def _nodes() -> list[NodeInfo]:
    return _inputs()[1]


def _pods() -> list[Pod]:
    return [kube.pod_from_api(p) for p in recorded_node.api_pods()]


def _table() -> ProcessTable:
    return _inputs()[2]


def _m02() -> NodeInfo:
    return next(i for i in _nodes() if i.node.name == NODE)


def _expected_owner(subject: Subject) -> tuple[str, str] | None:
    # Ground truth independent of identify: the pod list's containerIDs against the cgroup leaf.
    for pod in _pods():
        for c in pod.containers:
            if c.container_id and c.container_id in subject.cgroup_text.splitlines()[0]:
                return pod.name, c.name
    return None


def test_every_recorded_container_process_names_its_pod_and_container() -> None:
    checked = 0
    for subject in _subjects():
        owner = _expected_owner(subject)
        if owner is None:
            continue
        answer = identify(subject, _nodes(), _pods(), _table())
        assert answer.kind == "container", answer.summary
        assert (
            answer.pod.name if answer.pod else None,
            answer.container.name if answer.container else None,
        ) == owner
        assert answer.node is not None and answer.node.name == NODE
        level = _m02().level
        chain = DOC["truth"]["nspid"][str(subject.process.pid)]  # the kernel's NSpid line, as recorded
        assert len(chain) == level + 2  # host, node, container: nothing nested here
        assert answer.container_pid == chain[level + 1]
        assert answer.node_pid == chain[level]
        assert chain_text(answer).startswith(f"host {subject.process.pid} → node {NODE} ")
        checked += 1
    assert checked >= 5


def test_pause_processes_are_pod_sandboxes() -> None:
    pauses = [s for s in _subjects() if s.process.cmdline == "/pause"]
    assert pauses
    for subject in pauses:
        # Ground truth: the one pod whose UID the cgroup path names (cgroupfs: pod<uid>, dashes kept).
        (owner,) = [p.name for p in _pods() if f"pod{p.uid}/" in subject.cgroup_text]
        answer = identify(subject, _nodes(), _pods(), _table())
        assert answer.kind == "pod-sandbox"
        assert answer.pod is not None and answer.pod.name == owner


def test_pause_sharing_the_containers_namespace_is_still_the_sandbox() -> None:
    # shareProcessNamespace: pause is PID 1 of the namespace the containers' processes are in. Put a
    # recorded container process into pause's namespace; the namespace must not make pause its.
    pause = next(s for s in _subjects() if s.process.cmdline == "/pause")
    member = next(s for s in _subjects() if _expected_owner(s) is not None)
    table = ProcessTable(processes=(*_table().processes,
                                    RawProcess(**{**member.process.__dict__, "pid": 10**7,
                                                  "pid_ns": pause.process.pid_ns})))
    answer = identify(pause, _nodes(), _pods(), table)
    assert answer.kind == "pod-sandbox" and answer.container is None


def test_node_init_and_host_process_get_plain_answers() -> None:
    subjects = _subjects()
    init = next(s for s in subjects if s.process.pid == _m02().node.host_pid)
    answer = identify(init, _nodes(), _pods(), _table())
    assert answer.kind == "node" and answer.node_pid == 1 and "init process" in answer.summary
    recorder = next(s for s in subjects if s.process.pid == DOC["truth"]["recorder_pid"])
    answer = identify(recorder, _nodes(), _pods(), _table())
    assert answer.kind == "host" and answer.node is None and answer.pod is None
    assert whois_document(answer)["pod"] is None


def test_node_found_by_cgroup_when_namespace_ancestry_is_unreadable() -> None:
    # A non-root reader cannot open ns links: ancestry None, inodes None; the cgroup path decides.
    blind_nodes = [NodeInfo(i.node, i.level, None) for i in _nodes()]
    for subject in _subjects():
        if _expected_owner(subject) is None:
            continue
        blind = Subject(subject.process, subject.cgroup_text, None)
        info = node_of(blind, blind_nodes)
        assert info is not None and info.node.name == NODE


def test_pid_namespace_fallback_when_the_cgroup_leaf_matches_no_container() -> None:
    subject = next(s for s in _subjects() if _expected_owner(s) is not None and not _shares_namespace(s))
    owner = _expected_owner(subject)
    moved = Subject(
        RawProcess(**{**subject.process.__dict__, "cgroup_id": None}),
        subject.cgroup_text,
        subject.ns_ancestry,
    )
    answer: Answer = identify(moved, _nodes(), _pods(), _table())
    assert answer.kind == "container" and answer.matched_by == "PID namespace"
    assert (answer.pod.name if answer.pod else "", answer.container.name if answer.container else "") == owner


def _shares_namespace(subject: Subject) -> bool:
    ids = {p.cgroup_id for p in _table().processes if p.pid_ns == subject.process.pid_ns and p.cgroup_id}
    return len(ids) > 1
