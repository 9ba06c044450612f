"""``pidmap node NODE`` and ``pidmap show --all``: every pod's processes from one scan, no exec.

    pods (ONE list call: spec.nodeName=NODE, or one namespace, or all)
    node containers (Docker SDK) ─ ONE host scan ─ correlate each pod without probes → [PodMap]

No container is exec'd into: the host side sees every process of every pod, and the innermost
NSpid entry is the PID in the container's own namespace. Correlation is ``correlate`` with no probe
(the cgroup's container ID decides membership), so rows equal what ``pidmap show`` gives, except
that user names are the host's uid numbers (the container's /etc/passwd is not read).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

from pidmap.correlate import correlate
from pidmap.errors import NotFoundError
from pidmap.model import HostView, Node, Options, Pod, PodMap


def _sorted(pods: list[Pod]) -> list[Pod]:
    return sorted(pods, key=lambda pod: (pod.namespace, pod.name))


def map_pods(pods: list[Pod], nodes_by_name: dict[str, Node],
             views: Mapping[str, HostView | None]) -> list[PodMap]:
    """Pure: each pod correlated against its node's host view (absent: no host side was read)."""
    result = []
    for pod in _sorted(pods):
        node = nodes_by_name.get(pod.node_name or "")
        notes: tuple[str, ...] = ()
        if pod.node_name and node is None:
            notes = (f"node {pod.node_name} is not a Docker container on this engine",)
        host = views.get(node.name) if node is not None else None
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

    views: dict[str, HostView | None] = {}
    if any(pod.runs(c) for pod in pods for c in pod.containers):
        # One scan of this machine's /proc serves every node whose processes it shows.
        local = functools.cache(hostprocs.scan_local)
        for name, node in found.items():
            views[name] = hostprocs.host_view(client, node, options.via, timeout=options.exec_timeout,
                                              local=local)
    return map_pods(pods, found, views)
