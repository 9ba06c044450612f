"""``pidmap node NODE`` and ``pidmap show --all``: every pod's processes from one scan, no exec.

    pods (ONE list call: spec.nodeName=NODE, or one namespace, or all)
    node containers (Docker SDK) ─ ONE host scan ─ correlate each pod without probes → [PodMap]

No container is exec'd into: the host side sees every process of every pod, and the innermost
NSpid entry is the PID in the container's own namespace. Correlation is ``correlate`` with no probe
(the cgroup's container ID decides membership), so rows equal what ``pidmap show`` gives, except
that user names are the host's uid numbers (the container's /etc/passwd is not read).
"""

from __future__ import annotations

import sys
from typing import Any

from pidmap.correlate import correlate
from pidmap.errors import DockerError, NotFoundError
from pidmap.model import HostView, Node, Options, Pod, PodMap, ProcessTable


def _sorted(pods: list[Pod]) -> list[Pod]:
    return sorted(pods, key=lambda pod: (pod.namespace, pod.name))


def map_pods(pods: list[Pod], nodes_by_name: dict[str, Node], table: ProcessTable | None,
             *, via: str = "local") -> list[PodMap]:
    """Pure: each pod correlated against one host table (None: no host side could be read)."""
    by_pid = {p.pid: p for p in table.processes} if table else {}
    views: dict[str, HostView | None] = {}
    result = []
    for pod in _sorted(pods):
        node = nodes_by_name.get(pod.node_name or "")
        notes: tuple[str, ...] = ()
        host: HostView | None = None
        if pod.node_name and node is None:
            notes = (f"node {pod.node_name} is not a Docker container on this engine",)
        if node is not None and node.running and table is not None and pod.phase == "Running":
            if node.name not in views:
                init = by_pid.get(node.host_pid or -1)
                views[node.name] = None if init is None else HostView(
                    table=table, via="local", node_level=len(init.nspid) - 1, host_level=0)
            host = views[node.name]
            if host is None:
                notes = (f"the processes of node {node.name} are not visible in this machine's /proc",)
        result.append(correlate(pod, node, {}, host, notes=notes))
    return result


def collect_node(node_name: str, options: Options) -> list[PodMap]:
    """Every pod scheduled on ``node_name``, mapped from one host scan and one list call."""
    from pidmap.sources import kube, nodes

    cluster = kube.Cluster(options)
    pods = kube.list_pods(cluster, node_name=node_name)
    client = nodes.docker_client()
    try:
        node = nodes.find_node(client, node_name)
    except nodes.NodeNotDockerError as err:
        if not pods:
            raise NotFoundError(f"node {node_name} not found: no node container and no pod on it",
                                "list nodes: kubectl get nodes") from err
        raise
    return _collect(pods, {node.name: node}, client, options)


def collect_all(namespace: str | None, options: Options) -> list[PodMap]:
    """Every pod of ``namespace`` (all namespaces when None), grouped by node, one scan in all."""
    from pidmap.sources import kube, nodes

    pods = kube.list_pods(kube.Cluster(options), namespace=namespace)
    found: dict[str, Node] = {}
    client: Any = None
    wanted = sorted({pod.node_name for pod in pods if pod.node_name})
    if wanted:
        client = nodes.docker_client()
        for name in wanted:
            try:
                found[name] = nodes.find_node(client, name)
            except nodes.NodeNotDockerError:
                continue  # reported as a note on each of its pods
    return _collect(pods, found, client, options)


def _collect(pods: list[Pod], found: dict[str, Node], client: Any, options: Options) -> list[PodMap]:
    from pidmap.sources import hostprocs

    if not any(pod.phase == "Running" for pod in pods) or not found:
        return map_pods(pods, found, None)
    local = options.via != "docker" and sys.platform.startswith("linux") and all(
        hostprocs.sees_container(node.container_id, node.host_pid) for node in found.values() if node.running)
    if local:
        return map_pods(pods, found, hostprocs.scan_local())
    if options.via == "local":
        raise DockerError("the node containers' processes are not visible in this machine's /proc",
                          "Docker runs elsewhere (Docker Desktop, remote DOCKER_HOST): use --via docker")
    # One scan per node, read inside it: node PIDs and container PIDs, no host PIDs.
    result: list[PodMap] = []
    for name, node in found.items():
        on_node = [pod for pod in pods if pod.node_name == name]
        table = hostprocs.scan_in_container(client, node.container_id, timeout=options.exec_timeout) \
            if node.running else None
        result.extend(_map_in_node(on_node, node, table))
    rest = [pod for pod in pods if pod.node_name not in found]
    result.extend(map_pods(rest, {}, None))
    return sorted(result, key=lambda m: (m.pod.namespace, m.pod.name))


def _map_in_node(pods: list[Pod], node: Node, table: ProcessTable | None) -> list[PodMap]:
    note = "read inside the node with docker exec: host PIDs cannot be seen"
    host = None
    if table is not None:
        host = HostView(table=table, via="docker", node_level=0, host_level=None, notes=(note,))
    return [correlate(pod, node, {}, host if pod.phase == "Running" else None) for pod in _sorted(pods)]
