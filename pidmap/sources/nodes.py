"""Find the Docker container that *is* a Kubernetes node (kind, minikube, k3d).

Node name = container name for all three tools (and = hostname); the labels tell which tool made
it. A container of that name without any of the labels is still accepted (provider ``docker``)
when its hostname equals the node name, so hand-made nodes work too.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from pidmap.errors import DockerError
from pidmap.model import Node, Provider

KIND_CLUSTER = "io.x-k8s.kind.cluster"
MINIKUBE_CREATED_BY = "created_by.minikube.sigs.k8s.io"
MINIKUBE_NAME = "name.minikube.sigs.k8s.io"
K3D_CLUSTER = "k3d.cluster"


class DockerUnavailable(DockerError):
    """The engine does not answer (down, dead socket); distinct from being refused access."""


class DockerAccessDenied(DockerError):
    """The engine's socket exists but this user may not use it (not in the docker group)."""


class DockerSdkError(DockerError):
    """The Docker SDK failed for its own reasons before the engine was asked (an SDK too old for
    the installed ``requests``, a DOCKER_HOST it cannot parse): not the engine's fault."""


DEFAULT_TIMEOUT = 10.0


@contextmanager
def docker_errors(doing: str, *, container: str | None = None,
                  timeout: float | None = None) -> Iterator[None]:
    """Every Docker SDK failure → one DockerError (as psutil's ``wrap_exceptions`` does for /proc).

    ``doing`` says what was asked ("docker exec into the node"); ``container`` names the container
    whose disappearance (404) is news of its own; ``timeout`` is the deadline a TimeoutError broke.
    """
    import docker.errors
    import requests

    where = os.environ.get("DOCKER_HOST") or "the default Docker socket"
    try:
        yield
    except docker.errors.NotFound as err:
        if container is None:
            raise DockerError(f"{doing}: not found: {err.explanation or err}",
                              "check the engine: docker ps") from err
        raise DockerError(f"node container {container[:12]} no longer exists",
                          "the node was removed while pidmap ran; check: docker ps") from err
    except docker.errors.APIError as err:
        raise DockerError(f"{doing} failed: {err.explanation or err}",
                          "is the node container running? docker ps") from err
    except TimeoutError as err:
        raise DockerError(f"{doing} did not finish within {timeout or DEFAULT_TIMEOUT:g}s",
                          "is the node stuck? docker top NODE") from err
    except requests.Timeout as err:
        raise DockerError(f"the Docker engine at {where} did not answer within "
                          f"{timeout or DEFAULT_TIMEOUT:g}s ({doing})",
                          "is the engine overloaded? docker version; docker ps") from err
    except (docker.errors.DockerException, requests.RequestException, OSError) as err:
        text = str(err)
        if isinstance(err, PermissionError) or "Permission denied" in text or "PermissionError" in text:
            raise DockerAccessDenied(f"permission denied on {where}",
                                     "run as root or as a member of the docker group") from err
        if isinstance(err, requests.ConnectionError | ConnectionError | FileNotFoundError) or \
                "Connection aborted" in text or "No such file" in text or "Error while fetching" in text:
            raise DockerUnavailable(f"no Docker engine answers at {where}",
                                    "start it (scripts/install-docker.sh) or fix DOCKER_HOST; "
                                    "check: docker version") from err
        raise DockerError(f"Docker engine error during {doing}: {err}",
                          "check the engine: docker version") from err


def _causes(err: BaseException) -> list[BaseException]:
    """``err`` and every exception it was raised from or during, outermost first."""
    chain: list[BaseException] = []
    current: BaseException | None = err
    while current is not None and current not in chain:
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain


def _sdk_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("docker")
    except PackageNotFoundError:  # pragma: no cover - imported, so installed
        return "unknown version"


def docker_client(timeout: float = DEFAULT_TIMEOUT) -> Any:
    """A Docker SDK client for DOCKER_HOST / the CLI's context; engine errors become DockerError.

    ``timeout`` bounds every socket read of every call made with this client; the SDK has no other
    limit (a ``docker exec`` whose command never ends hangs without it). Three failures are told
    apart: the engine does not answer (nothing listens, connection refused or timed out), this user
    may not use it, and the SDK itself failed (docker 7.0.0 with requests >= 2.32 says "Not
    supported URL scheme http+docker" without ever opening the socket).
    """
    import docker
    import docker.errors
    import requests

    where = os.environ.get("DOCKER_HOST") or "the default Docker socket"
    try:
        client = docker.from_env(timeout=timeout)
        client.ping()
    except (docker.errors.DockerException, requests.RequestException, OSError) as err:
        text = str(err)
        chain = _causes(err)
        if any(isinstance(e, PermissionError) for e in chain) or "Permission denied" in text \
                or "PermissionError" in text:
            raise DockerAccessDenied(
                f"permission denied on {where}",
                "run as root or as a member of the docker group",
            ) from err
        unanswered = (requests.ConnectionError, requests.Timeout, ConnectionError, FileNotFoundError,
                      TimeoutError)
        if isinstance(err, docker.errors.APIError):
            raise DockerError(f"the Docker engine at {where} answered with an error: {err}",
                              "check the engine: docker version") from err
        if any(isinstance(e, unanswered) for e in chain):
            raise DockerUnavailable(
                f"no Docker engine answers at {where}",
                "start it (scripts/install-docker.sh) or fix DOCKER_HOST; check: docker version",
            ) from err
        raise DockerSdkError(
            f"the Docker SDK (Python package docker {_sdk_version()}) failed on its own before asking "
            f"the engine at {where}: {text}",
            "check DOCKER_HOST; an SDK older than this Python environment's requests fails so: "
            "pip install -U 'docker>=7.1'",
        ) from err
    return client


# Every label one of the tools always sets on its node containers: only containers with one of them
# are inspected (the engine's label filter would AND several keys: one list call each).
NODE_LABEL_KEYS = (KIND_CLUSTER, MINIKUBE_CREATED_BY, MINIKUBE_NAME, K3D_CLUSTER)

# One inspect's deadline when several containers are inspected in turn: the engine answers an
# inspect from memory in milliseconds, unless the container's lock is held (an exec or a stop stuck
# on a frozen container): then that one is skipped, with a note, and the others are still read.
INSPECT_TIMEOUT = 5.0


def _inspect(client: Any, container_id: str, timeout: float) -> dict[str, Any]:
    """``docker inspect`` of one container with its own read deadline (the SDK's
    ``inspect_container`` takes the client's only); the SDK's exceptions pass through."""
    api = client.api
    result: dict[str, Any] = api._result(api._get(api._url("/containers/{0}/json", container_id),
                                                  timeout=timeout), True)
    return result


def _summary_name(summary: dict[str, Any]) -> str:
    names = summary.get("Names") or []
    return str(names[0]).lstrip("/") if names else str(summary.get("Id", ""))[:12]


def _labelled_containers(client: Any, notes: list[str] | None = None, *,
                         timeout: float | None = None) -> list[dict[str, Any]]:
    """Every container with one of the labels, inspected once each (``docker inspect`` attrs): one
    list call (its summaries carry the labels) and one inspect per node container, whatever else
    the engine runs. A container whose inspect does not answer within ``timeout`` (stuck: its lock
    is held) is skipped, with a line in ``notes``: one stuck container elsewhere on a shared engine
    must not stop pidmap from reading the others."""
    import docker.errors
    import requests

    timeout = INSPECT_TIMEOUT if timeout is None else timeout
    found = []
    for summary in client.api.containers(all=True):
        labels = summary.get("Labels") or {}
        if not any(key in labels for key in NODE_LABEL_KEYS):
            continue
        try:
            found.append(_inspect(client, summary["Id"], timeout))
        except docker.errors.NotFound:
            continue  # removed since it was listed
        except (requests.Timeout, TimeoutError):
            if notes is not None:
                notes.append(f"node container {_summary_name(summary)} ({str(summary['Id'])[:12]}, "
                             f"{summary.get('State') or 'state unknown'}) did not answer docker inspect "
                             f"within {timeout:g}s: skipped (stuck? docker inspect "
                             f"{_summary_name(summary)})")
    return found


def provider_of(labels: dict[str, str]) -> Provider | None:
    if KIND_CLUSTER in labels:
        return "kind"
    if labels.get(MINIKUBE_CREATED_BY) == "true" or MINIKUBE_NAME in labels:
        return "minikube"
    if K3D_CLUSTER in labels:
        return "k3d"
    return None


def _node_of(attrs: dict[str, Any], node_name: str) -> Node | None:
    labels: dict[str, str] = attrs.get("Config", {}).get("Labels") or {}
    hostname = attrs.get("Config", {}).get("Hostname", "")
    provider = provider_of(labels)
    if provider is None and hostname != node_name:
        return None
    return _node(attrs, node_name, provider or "docker")


def _node(attrs: dict[str, Any], node_name: str, provider: Provider) -> Node:
    state = attrs.get("State", {})
    pid = int(state.get("Pid") or 0)
    return Node(name=node_name, provider=provider, container_id=attrs["Id"],
                host_pid=pid or None, running=bool(state.get("Running")))


def find_node(client: Any, node_name: str) -> Node:
    """The node container for ``node_name``; DockerError when the node is not a Docker container."""
    import docker.errors

    with docker_errors(f"looking for node {node_name}"):
        try:
            # By name: one inspect, of that container only (never of the others on the engine).
            node = _node_of(client.api.inspect_container(node_name), node_name)
        except docker.errors.NotFound:
            node = None
        if node is None:
            # kind/k3d/minikube always name the container after the node, but a renamed container
            # still keeps its hostname: look among the labelled ones (a stuck one skipped).
            for attrs in _labelled_containers(client):
                if attrs.get("Config", {}).get("Hostname") == node_name:
                    node = _node_of(attrs, node_name)
                    break
    if node is None:
        raise NodeNotDockerError(
            f"node {node_name} is not a Docker container on this engine",
            "pidmap maps kind, minikube (docker driver) and k3d nodes; check DOCKER_HOST / docker ps",
        )
    return node


class NodeNotDockerError(DockerError):
    """The pod's node is no container of the Docker engine pidmap talks to."""


__all__ = ["DockerAccessDenied", "DockerSdkError", "DockerUnavailable", "NodeNotDockerError", "docker_client",
           "docker_errors",
           "find_node", "list_nodes", "provider_of"]


# --- added for `pidmap whois` (issue 4) ------------------------------------------------------------

def list_nodes(client: Any, notes: list[str] | None = None) -> list[Node]:
    """Every node container (kind, minikube, k3d labels) the engine knows, running or not; one
    whose inspect does not answer in time is left out, with a line in ``notes``."""
    found: list[Node] = []
    with docker_errors("listing node containers"):
        for attrs in _labelled_containers(client, notes):
            labels = attrs.get("Config", {}).get("Labels") or {}
            provider = provider_of(labels)
            if provider is None:
                continue
            # The Kubernetes node name is the container's hostname (= its name for all three tools).
            name = attrs.get("Config", {}).get("Hostname") or attrs.get("Name", "").lstrip("/")
            found.append(_node(attrs, name, provider))
    return found


# --- docker exec with a deadline (review #5) -------------------------------------------------------

def exec_output(client: Any, container_id: str, argv: list[str], *, timeout: float,
                ) -> tuple[int | None, bytes, bytes]:
    """``docker exec ARGV`` in a container: (exit code, stdout, stderr), all within ``timeout`` s.

    The SDK's ``exec_run`` waits on the stream with ``poll()`` and no timeout, so a command that
    never answers (a D-state /proc read, a stuck node) would hang pidmap; here the multiplexed
    stream (8-byte headers: stream number, size) is read against one deadline. TimeoutError,
    OSError, ``requests`` and ``docker`` errors are left to the caller, who knows what was asked.
    """
    deadline = time.monotonic() + timeout
    api = client.api
    exec_id = api.exec_create(container_id, argv, stdout=True, stderr=True)["Id"]
    stream = api.exec_start(exec_id, socket=True)
    sock = getattr(stream, "_sock", stream)
    # The first bytes of output may arrive in the same read as the HTTP upgrade's headers, and so
    # sit in the response's buffer, not in the socket: read through that buffer when there is one
    # (seen under load: an exec that exited 0 whose output lacked its first line).
    response = getattr(getattr(getattr(stream, "_response", None), "raw", None), "_fp", None)
    reader = getattr(response, "fp", None)
    if reader is None or getattr(reader, "closed", True) or not hasattr(reader, "read1"):
        reader = None
    chunks: dict[int, bytearray] = {1: bytearray(), 2: bytearray()}
    try:
        while (header := _read_exact(sock, 8, deadline, reader)) is not None:
            payload = _read_exact(sock, int.from_bytes(header[4:8], "big"), deadline, reader) or b""
            chunks.setdefault(header[0], bytearray()).extend(payload)
    finally:
        stream.close()
    code = api.exec_inspect(exec_id).get("ExitCode")
    return (code if isinstance(code, int) else None), bytes(chunks[1]), bytes(chunks[2])


def _read_exact(sock: Any, size: int, deadline: float, reader: Any = None) -> bytes | None:
    """``size`` bytes, or None at a clean end of stream; TimeoutError past ``deadline``.
    ``reader``: the buffered reader over ``sock``, read first (what it holds, then the socket)."""
    buf = bytearray()
    while len(buf) < size:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("deadline passed")
        sock.settimeout(remaining)
        chunk = reader.read1(size - len(buf)) if reader is not None else sock.recv(size - len(buf))
        if not chunk:
            return None if not buf else bytes(buf)
        buf.extend(chunk)
    return bytes(buf)
