"""Pure core of ``pidmap node NODE`` and ``pidmap show --all`` (``pidmap.collect`` reads):

    pods (ONE list call: spec.nodeName=NODE, or one namespace, or all)
    node containers (Docker SDK) ─ ONE host scan ─ correlate each pod without probes → [PodMap]

No container is exec'd into: the host side sees every process of every pod, and the NSpid entry one
level below the node's is the PID in the container's own namespace. Correlation is ``correlate`` with no probe
(the cgroup's container ID decides membership), so rows equal what ``pidmap show`` gives, except
that user names are the host's uid numbers (the container's /etc/passwd is not read).
"""

from __future__ import annotations

from collections.abc import Mapping

from pidmap.correlate import correlate
from pidmap.model import HostView, Node, Pod, PodMap


def _sorted(pods: list[Pod]) -> list[Pod]:
    return sorted(pods, key=lambda pod: (pod.namespace, pod.name))


def map_pods(pods: list[Pod], nodes_by_name: dict[str, Node],
             views: Mapping[str, HostView | None]) -> list[PodMap]:
    """Pure: each pod correlated against its node's host view (absent: no host side was read)."""
    result = []
    for pod in _sorted(pods):
        node = nodes_by_name.get(pod.node_name or "")
        notes: tuple[str, ...] = ()
        # A node read through the agent has a view but no node container.
        host = views.get(pod.node_name or "")
        if pod.node_name and node is None and host is None:
            notes = (f"node {pod.node_name} is not a Docker container on this engine",)
        result.append(correlate(pod, node, {}, host, notes=notes))
    return result
