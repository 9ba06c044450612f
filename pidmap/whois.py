"""``pidmap whois PID``: from a host PID (or a node PID) back to node, pod, container and chain.

    PID ─► host /proc: NSpid chain, cgroup, PID namespace and its ancestors
        ─► node: the node container whose PID namespace is an ancestor of the process's (its init's
           host PID from the Docker SDK); the node's id in the cgroup path when ancestry is unreadable
        ─► pods of that node: ONE list call (fieldSelector spec.nodeName=NODE, all namespaces)
        ─► container: the cgroup's container ID against the pods' containerIDs; else the PID
           namespace shared with a process whose cgroup does match; else the pod UID in the cgroup
           path (the pod's sandbox, i.e. its pause process)

Pure: ``identify`` decides (recorded fixtures test it); ``pidmap.collect.whois_pid`` does the reading.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pidmap.model import Container, Node, Pod, ProcessTable, Subject
from pidmap.procfs import cgroup_pod_uid
from pidmap.wording import cell, escape

Level = Literal["host", "node"]
Kind = Literal["container", "pod-sandbox", "node", "other-container", "host"]


@dataclass(frozen=True)
class NodeInfo:
    node: Node
    level: int  # index of the node's PID in a member's NSpid (the node init's NSpid depth)
    pid_ns: int | None  # the node init's PID namespace inode


@dataclass(frozen=True)
class Answer:
    kind: Kind
    summary: str
    host_pid: int | None
    node_pid: int | None
    container_pid: int | None
    nspid: tuple[int, ...]
    command: str
    node: Node | None = None
    pod: Pod | None = None
    container: Container | None = None
    matched_by: str | None = None
    pid_namespace: int | None = None
    notes: tuple[str, ...] = ()  # what could not be read (a node container that did not answer)


def node_of(subject: Subject, nodes: Sequence[NodeInfo]) -> NodeInfo | None:
    """The node whose PID namespace is the process's or an ancestor of it."""
    proc = subject.process
    for info in nodes:
        if proc.pid == info.node.host_pid:
            return info
    if subject.ns_ancestry is not None:
        for info in nodes:
            if info.pid_ns is not None and info.pid_ns in subject.ns_ancestry:
                return info
        if any(info.pid_ns is not None for info in nodes):
            return None
    # Namespace ancestry unreadable (not root): the node's container id leads every cgroup path
    # of the processes inside it (cgroupfs /docker/<id>/..., systemd docker-<id>.scope/...).
    for info in nodes:
        if info.node.container_id in subject.cgroup_text and len(proc.nspid) > info.level:
            return info
    return None


def _container_of(pods: Sequence[Pod], container_id: str | None) -> tuple[Pod, Container] | None:
    if not container_id:
        return None
    for pod in pods:
        for container in pod.containers:
            if container.container_id == container_id:
                return pod, container
    return None


def identify(subject: Subject, nodes: Sequence[NodeInfo], pods: Sequence[Pod],
             table: ProcessTable | None = None, *, seen_as: str = "host PID") -> Answer:
    """Pure: what the process is. ``pods`` are the pods of its node; ``table`` the host scan.

    ``seen_as`` names the PID the subject carries: a host PID, or a node PID when only the node's
    view was read (the node agent on a node whose host this machine cannot see).
    """
    proc = subject.process
    info = node_of(subject, nodes)
    base: dict[str, Any] = {"host_pid": proc.pid, "nspid": proc.nspid, "command": proc.cmdline,
                            "pid_namespace": proc.pid_ns}
    if info is None:
        outside = next((i.node for i in nodes if i.node.container_id in subject.cgroup_text), None)
        if outside is not None:
            # nsenter / docker exec: joined the node's cgroup but kept the host's PID namespace.
            return Answer(kind="node", node_pid=None, container_pid=None, node=outside,
                          matched_by="node container ID in the cgroup path",
                          summary=(f"{seen_as} {proc.pid} is in the cgroup of node container {outside.name} "
                                   "but not in its PID namespace (a process that entered the node, such as "
                                   "nsenter): no pod owns it"), **base)
        if proc.cgroup_id:
            return Answer(kind="other-container", node_pid=None, container_pid=None,
                          summary=(f"{seen_as} {proc.pid} is in Docker container {proc.cgroup_id[:12]}, "
                                   "which is not a Kubernetes node: no pod owns it"), **base)
        return Answer(kind="host", node_pid=None, container_pid=None,
                      summary=f"{seen_as} {proc.pid} is a process of the host itself, in no node container",
                      **base)
    node = info.node
    node_pid = proc.pid_at(info.level)
    base["node"] = node
    if proc.pid == node.host_pid:
        return Answer(kind="node", node_pid=node_pid, container_pid=None, matched_by="node init host PID",
                      summary=f"{seen_as} {proc.pid} is the init process (node PID {node_pid}) of node "
                              f"container {node.name}: no pod owns it", **base)
    # The container's own namespace is the one just below the node's.
    container_pid = proc.pid_at(info.level + 1)
    found = _container_of(pods, proc.cgroup_id)
    matched_by = "cgroup container ID"
    if found is None and proc.cgroup_id is None and table is not None and proc.pid_ns is not None:
        # Moved out of its cgroup (or a runtime that names cgroups otherwise): any process of the
        # same PID namespace whose cgroup does match names the container. Not for a process with a
        # container ID of its own that no container has: that is the pod sandbox (pause), which
        # in a shareProcessNamespace pod shares the containers' namespace but belongs to none.
        for other in table.by_pid_ns.get(proc.pid_ns, ()):
            if other.pid != proc.pid:
                found = _container_of(pods, other.cgroup_id)
                if found is not None:
                    matched_by = "PID namespace"
                    break
    if found is not None:
        pod, container = found
        shared = ""
        if pod.share_process_namespace and proc.pid_ns is not None:
            shared = " (the pod shares one PID namespace)"
        return Answer(kind="container", node_pid=node_pid, container_pid=container_pid, pod=pod,
                      container=container, matched_by=matched_by,
                      summary=(f"{seen_as} {proc.pid} is PID {_text(container_pid)} of container "
                               f"{container.name} in pod {pod.namespace}/{pod.name} on node {node.name}"
                               + shared), **base)
    uid = cgroup_pod_uid(subject.cgroup_text)
    pod_by_uid = next((p for p in pods if uid and p.uid == uid), None)
    if pod_by_uid is not None and proc.cgroup_id is None:
        return Answer(kind="node", node_pid=node_pid, container_pid=container_pid, pod=pod_by_uid,
                      matched_by="pod UID in the cgroup path",
                      summary=(f"{seen_as} {proc.pid} is in the cgroup of pod {pod_by_uid.namespace}/"
                               f"{pod_by_uid.name} on node {node.name} but in none of its containers' "
                               "(a runtime helper of the pod): no container owns it"), **base)
    if pod_by_uid is not None:
        # The leaf id is no container's: it is the pod sandbox's, whose only process is pause.
        return Answer(kind="pod-sandbox", node_pid=node_pid, container_pid=container_pid, pod=pod_by_uid,
                      matched_by="pod UID in the cgroup path",
                      summary=(f"{seen_as} {proc.pid} is the pod sandbox (pause process) of pod "
                               f"{pod_by_uid.namespace}/{pod_by_uid.name} on node {node.name}: "
                               "it belongs to no container of the pod"), **base)
    if uid is not None:
        what = f"in the cgroup of pod UID {uid}, which no pod on node {node.name} has (deleted?)"
    elif proc.cgroup_id:
        what = f"in container {proc.cgroup_id[:12]} on node {node.name}, which no pod lists (deleted?)"
    elif container_pid is not None:
        what = f"in a PID namespace nested inside node {node.name}, but in no pod's cgroup"
    else:
        what = f"a process of node {node.name} itself (node PID {node_pid}), in no pod"
    return Answer(kind="node", node_pid=node_pid, container_pid=container_pid,
                  summary=f"{seen_as} {proc.pid} is {what}", **base)


def _text(value: int | None) -> str:
    return "-" if value is None else str(value)


def chain_text(answer: Answer) -> str:
    parts = [f"host {_text(answer.host_pid)}"]
    if answer.node is not None:
        parts.append(f"node {answer.node.name} {_text(answer.node_pid)}")
    if answer.container is not None:
        parts.append(f"container {answer.container.name} {_text(answer.container_pid)}")
    elif answer.container_pid is not None:
        parts.append(f"nested {answer.container_pid}")
    return " → ".join(parts)


def to_document(answer: Answer) -> dict[str, Any]:
    node, pod, container = answer.node, answer.pod, answer.container
    return {
        "kind": answer.kind,
        "summary": answer.summary,
        "host_pid": answer.host_pid,
        "node_pid": answer.node_pid,
        "container_pid": answer.container_pid,
        "nspid": list(answer.nspid),
        "node": node.name if node else None,
        "node_container_id": (node.container_id or None) if node else None,
        "namespace": pod.namespace if pod else None,
        "pod": pod.name if pod else None,
        "container": container.name if container else None,
        "container_id": container.container_id if container else None,
        "pid_namespace": answer.pid_namespace,
        "matched_by": answer.matched_by,
        "command": answer.command,
        "notes": list(answer.notes),
    }


def render(answer: Answer, output: str) -> str:
    if output == "json":
        return json.dumps(to_document(answer), indent=2)
    doc = to_document(answer)
    rows = [("NODE", doc["node"]), ("NAMESPACE", doc["namespace"]), ("POD", doc["pod"]),
            ("CONTAINER", doc["container"]), ("CONTAINER PID", doc["container_pid"]),
            ("CHAIN", chain_text(answer)), ("COMMAND", doc["command"]), ("MATCHED BY", doc["matched_by"])]
    # The summary and the command quote names and text the cluster and the container wrote.
    lines = [escape(answer.summary)]
    lines += [f"  {key:<14}{cell(value)}" for key, value in rows if value is not None]
    lines += [f"note: {escape(note)}" for note in answer.notes]
    return "\n".join(lines)
