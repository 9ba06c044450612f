"""Find the Docker container that *is* a Kubernetes node (kind, minikube, k3d).

Node name = container name for all three tools (and = hostname); the labels tell which tool made
it. A container of that name without any of the labels is still accepted (provider ``docker``)
when its hostname equals the node name, so hand-made nodes work too.
"""

from __future__ import annotations

import os
from typing import Any

from pidmap.errors import DockerError, NotFoundError
from pidmap.model import Node, Provider

KIND_CLUSTER = "io.x-k8s.kind.cluster"
MINIKUBE_CREATED_BY = "created_by.minikube.sigs.k8s.io"
MINIKUBE_NAME = "name.minikube.sigs.k8s.io"
K3D_CLUSTER = "k3d.cluster"


class DockerUnavailable(DockerError):
    """The engine does not answer (down, dead socket); distinct from being refused access."""


class DockerAccessDenied(DockerError):
    """The engine's socket exists but this user may not use it (not in the docker group)."""


def docker_client() -> Any:
    """A Docker SDK client for DOCKER_HOST / the CLI's context; engine errors become DockerError."""
    import docker
    import docker.errors

    where = os.environ.get("DOCKER_HOST") or "the default Docker socket"
    try:
        client = docker.from_env(timeout=10)
        client.ping()
    except docker.errors.DockerException as err:
        text = str(err)
        if "Permission denied" in text or "PermissionError" in text:
            raise DockerAccessDenied(
                f"permission denied on {where}",
                "run as root or as a member of the docker group",
            ) from err
        raise DockerUnavailable(
            f"no Docker engine answers at {where}",
            "start it (scripts/install-docker.sh) or fix DOCKER_HOST; check: docker version",
        ) from err
    return client


def provider_of(labels: dict[str, str]) -> Provider | None:
    if KIND_CLUSTER in labels:
        return "kind"
    if labels.get(MINIKUBE_CREATED_BY) == "true" or MINIKUBE_NAME in labels:
        return "minikube"
    if K3D_CLUSTER in labels:
        return "k3d"
    return None


def _node_of(container: Any, node_name: str) -> Node | None:
    attrs = container.attrs
    labels: dict[str, str] = attrs.get("Config", {}).get("Labels") or {}
    hostname = attrs.get("Config", {}).get("Hostname", "")
    provider = provider_of(labels)
    if provider is None and hostname != node_name:
        return None
    state = attrs.get("State", {})
    pid = int(state.get("Pid") or 0)
    return Node(name=node_name, provider=provider or "docker", container_id=attrs["Id"],
                host_pid=pid or None, running=bool(state.get("Running")))


def find_node(client: Any, node_name: str) -> Node:
    """The node container for ``node_name``; DockerError when the node is not a Docker container."""
    import docker.errors

    try:
        try:
            node = _node_of(client.containers.get(node_name), node_name)
        except docker.errors.NotFound:
            node = None
        if node is None:
            # kind/k3d/minikube always name the container after the node, but a renamed container
            # still keeps its hostname: look among the labelled ones.
            for container in client.containers.list(all=True):
                labels = container.attrs.get("Config", {}).get("Labels") or {}
                if (provider_of(labels) and container.attrs.get("Config", {}).get("Hostname") == node_name):
                    node = _node_of(container, node_name)
                    break
    except docker.errors.DockerException as err:
        raise DockerError(f"Docker engine error while looking for node {node_name}: {err}",
                          "check the engine: docker version") from err
    if node is None:
        raise NodeNotDockerError(
            f"node {node_name} is not a Docker container on this engine",
            "pidmap maps kind, minikube (docker driver) and k3d nodes; check DOCKER_HOST / docker ps",
        )
    return node


class NodeNotDockerError(DockerError):
    """The pod's node is no container of the Docker engine pidmap talks to."""


__all__ = ["DockerAccessDenied", "DockerUnavailable", "NodeNotDockerError", "NotFoundError",
           "docker_client", "find_node", "provider_of"]


# --- added for `pidmap whois` (issue 4) ------------------------------------------------------------

def list_nodes(client: Any) -> list[Node]:
    """Every node container (kind, minikube, k3d labels) the engine knows, running or not."""
    import docker.errors

    found: list[Node] = []
    try:
        for container in client.containers.list(all=True):
            attrs = container.attrs
            labels = attrs.get("Config", {}).get("Labels") or {}
            if provider_of(labels) is None:
                continue
            # The Kubernetes node name is the container's hostname (= its name for all three tools).
            name = attrs.get("Config", {}).get("Hostname") or attrs.get("Name", "").lstrip("/")
            node = _node_of(container, name)
            if node is not None:
                found.append(node)
    except docker.errors.DockerException as err:
        raise DockerError(f"Docker engine error while listing node containers: {err}",
                          "check the engine: docker version") from err
    return found
