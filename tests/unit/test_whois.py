"""whois.identify on inputs recorded from the sandbox (tests/unit/data/issue4/whois-m02.json).

Recorded as root on the Docker host with every examples/*.yaml applied to ``pidmap sandbox up --name
pd-dev``: for node pd-dev-m02, the node infos of the node containers over ``scan_local()`` (now
``pidmap.collect._node_infos``), the pods of ``kube.list_pods(node_name=...)``, and the subject
(now ``hostprocs.read_subject``) of every host process whose cgroup
carries a container ID of those pods, of every ``pause`` process, of the node's init, and of the
recording Python itself.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from pidmap.model import Container, Node, Pod, ProcessTable, RawProcess, Subject
from pidmap.whois import Answer, NodeInfo, chain_text, identify, node_of, to_document

DOC: dict[str, Any] = json.loads(
    (Path(__file__).resolve().parent / "data" / "issue4" / "whois-m02.json").read_text()
)


def _raw(d: dict[str, Any]) -> RawProcess:
    known = set(RawProcess.__dataclass_fields__)
    fields: dict[str, Any] = {k: (tuple(v) if k == "nspid" else v) for k, v in d.items() if k in known}
    return RawProcess(**fields)


def _subjects() -> list[Subject]:
    return [
        Subject(
            process=_raw(s["process"]),
            cgroup_text=s["cgroup_text"],
            ns_ancestry=tuple(s["ns_ancestry"]) if s["ns_ancestry"] else None,
        )
        for s in DOC["subjects"]
    ]


def _nodes() -> list[NodeInfo]:
    return [NodeInfo(node=Node(**n["node"]), level=n["level"], pid_ns=n["pid_ns"]) for n in DOC["nodes"]]


CONTAINER_FIELDS = {f.name for f in dataclasses.fields(Container)}


def _pods() -> list[Pod]:
    pods = []
    for p in DOC["pods"]:
        # The recording predates dropping two unread fields (started_at, message): keep the known ones.
        containers = tuple(Container(**{k: v for k, v in c.items() if k in CONTAINER_FIELDS})
                           for c in p["containers"])
        pods.append(Pod(**{**p, "containers": containers}))
    return pods


def _table() -> ProcessTable:
    return ProcessTable(
        processes=tuple(
            RawProcess(
                pid=pid,
                nspid=(pid,),
                ppid=0,
                uid=0,
                state="S",
                name="x",
                cmdline="x",
                pid_ns=ns,
                cgroup_id=cid,
            )
            for pid, ns, cid in DOC["table_pid_ns"]
        )
    )


def _m02() -> NodeInfo:
    return next(i for i in _nodes() if i.node.name == "pd-dev-m02")


def _expected_owner(subject: Subject) -> tuple[str, str] | None:
    # Ground truth independent of identify: the pod list's containerIDs against the cgroup leaf.
    for pod in _pods():
        for c in pod.containers:
            if c.container_id and c.container_id in subject.cgroup_text.splitlines()[0]:
                return pod.name, c.name
    return None


def _node_level_by_kernel(name: str) -> int:
    """The depth of the node's PID namespace per the recorded /proc of its init (host PID from
    docker inspect at recording time): its NSpid is (host PID, 1), so the node is level 1."""
    (info,) = [i for i in _nodes() if i.node.name == name]
    (init,) = [s for s in _subjects() if s.process.pid == info.node.host_pid]
    assert init.process.nspid[-1] == 1 and init.process.nspid[0] == info.node.host_pid
    return len(init.process.nspid) - 1


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
        assert answer.node is not None and answer.node.name == "pd-dev-m02"
        # The node's level from the kernel's record, not from pidmap's scanner: the NSpid of the
        # node container's init (recorded from /proc) ends in 1 at the node's level.
        level = _node_level_by_kernel("pd-dev-m02")
        assert len(subject.process.nspid) == level + 2  # host, node, container: nothing nested here
        assert answer.container_pid == subject.process.nspid[level + 1]
        assert answer.node_pid == subject.process.nspid[level]
        assert chain_text(answer).startswith(f"host {subject.process.pid} → node pd-dev-m02 ")
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
    recorder = subjects[-1]
    answer = identify(recorder, _nodes(), _pods(), _table())
    assert answer.kind == "host" and answer.node is None and answer.pod is None
    assert to_document(answer)["pod"] is None


def test_node_found_by_cgroup_when_namespace_ancestry_is_unreadable() -> None:
    # A non-root reader cannot open ns links: ancestry None, inodes None; the cgroup path decides.
    blind_nodes = [NodeInfo(i.node, i.level, None) for i in _nodes()]
    for subject in _subjects():
        if _expected_owner(subject) is None:
            continue
        blind = Subject(subject.process, subject.cgroup_text, None)
        info = node_of(blind, blind_nodes)
        assert info is not None and info.node.name == "pd-dev-m02"


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
    ids = {cid for _pid, ns, cid in DOC["table_pid_ns"] if ns == subject.process.pid_ns and cid}
    return len(ids) > 1
