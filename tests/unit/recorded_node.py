"""Replay a node recorded by tests/fixtures/record_node.py through pidmap's real code paths.

Only the I/O is stood in for, at the seams pidmap already has: the recorded /proc files are laid out
as a procfs root (``procfs_root`` / ``scan_local``'s root; ``sees_container`` and ``pid_ns_ancestry``
read it, the latter answering the recorded NS_GET_PARENT chain), the Docker SDK client answers
with the recorded container list and ``docker inspect`` documents, and ``kube.Cluster`` answers
each REST path with the API JSON recorded for it and each probe with what ``kubectl exec`` printed.
Everything else (parsing, the node lookup, the scans' filtering, correlation, whois) is pidmap's.

The expected values in the tests come from ``truth`` (NSpid lines, ``docker inspect``) and the API
JSON, read with plain dict look-ups and substring searches here: never from pidmap's parsers.
"""

from __future__ import annotations

import atexit
import functools
import json
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any
from unittest import mock

from pidmap import collect
from pidmap.model import Options, PodMap, Target
from pidmap.sources import hostprocs, kube, nodes
from pidmap.whois import Answer

FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "sandbox_minikube_node.json"
DOC: dict[str, Any] = json.loads(FIXTURE.read_text())
NODE: str = DOC["node"]
NODE_PID: int = DOC["truth"]["node_host_pid"]
LEVEL: int = len(DOC["truth"]["nspid"][str(NODE_PID)]) - 1  # where node PIDs sit in NSpid lines


# --- ground truth, read straight from the recording ------------------------------------------------

def api_pods() -> list[dict[str, Any]]:
    pods: list[dict[str, Any]] = DOC["api"]["pods"]["items"]
    return pods


def container_ids() -> dict[str, tuple[str, str]]:
    """containerID (bare) → (pod, container), from the API's container statuses."""
    found = {}
    for pod in api_pods():
        for key in ("initContainerStatuses", "containerStatuses", "ephemeralContainerStatuses"):
            for status in pod["status"].get(key) or []:
                if status.get("containerID"):
                    cid = status["containerID"].split("://", 1)[1]
                    found[cid] = (pod["metadata"]["name"], status["name"])
    return found


def kernel_rows(container_id: str) -> set[tuple[int, int, int]]:
    """(container PID, node PID, host PID) of each recorded host process whose cgroup file names
    the container: the NSpid line's innermost, node-level and first entries."""
    return {(chain[-1], chain[LEVEL], int(pid)) for pid, chain in DOC["truth"]["nspid"].items()
            if container_id in DOC["host_proc"][pid]["cgroup"]}


def probe_pids(pod: str, container: str) -> set[int]:
    """The PIDs the container's recorded probe listed ("P N" lines), its own shell left out."""
    text = DOC["probes"][f"default/{pod}/{container}"]["stdout"]
    own = next(int(line.split()[1]) for line in text.splitlines() if line.startswith("self "))
    return {int(line.split()[1]) for line in text.splitlines() if line.startswith("P ")} - {own}


def pause_pids() -> dict[int, str]:
    """host PID → pod name of every recorded /pause, by the pod UID in its cgroup path."""
    uids = {pod["metadata"]["uid"]: pod["metadata"]["name"] for pod in api_pods()}
    found = {}
    for pid, files in DOC["host_proc"].items():
        if files["cmdline"].rstrip("\0") == "/pause":
            (name,) = [n for uid, n in uids.items() if uid in files["cgroup"]]
            found[int(pid)] = name
    return found


# --- the replay -------------------------------------------------------------------------------------

class _DockerApi:
    def __init__(self) -> None:
        self.inspect = DOC["docker"]["inspect"]

    def containers(self, all: bool = False) -> list[dict[str, Any]]:
        summaries: list[dict[str, Any]] = DOC["docker"]["containers"]
        return summaries

    def inspect_container(self, name_or_id: str) -> dict[str, Any]:
        import docker.errors

        for attrs in self.inspect.values():
            if name_or_id in (attrs["Id"], attrs["Name"].lstrip("/")):
                return dict(attrs)
        raise docker.errors.NotFound(f"No such container: {name_or_id}")

    # nodes._inspect's three calls (an inspect with its own deadline)
    def _url(self, pattern: str, container_id: str) -> str:
        return container_id

    def _get(self, container_id: str, timeout: float) -> str:
        return container_id

    def _result(self, container_id: str, as_json: bool) -> dict[str, Any]:
        return self.inspect_container(container_id)


class _Docker:
    def __init__(self) -> None:
        self.api = _DockerApi()


class _Rest:
    def close(self) -> None:
        pass


class _Cluster(kube.Cluster):
    """kube.Cluster with the recorded API JSON behind each path and recorded probe output."""

    def __init__(self, options: Options) -> None:
        self.options = options

    def rest(self) -> Any:
        return _Rest()

    def request(self, method: str, path: str, *, what: str, query: list[tuple[str, str]] | None = None,
                body: dict[str, Any] | None = None, timeout: float | None = None,
                rest: Any = None) -> dict[str, Any]:
        assert method == "GET", (method, path)  # pidmap only reads
        if path == "/api/v1/pods" and query == [("fieldSelector", f"spec.nodeName={NODE}")]:
            listed: dict[str, Any] = DOC["api"]["pods"]
            return listed
        if path == f"/api/v1/nodes/{NODE}":
            node: dict[str, Any] = DOC["api"]["node"]
            return node
        for pod in api_pods():
            if path == f"/api/v1/namespaces/{pod['metadata']['namespace']}/pods/{pod['metadata']['name']}":
                return pod
        raise kube.ApiNotFound(f"not recorded: {path}", kind="pods")

    def probe(self, target: Target, container: str, mode: str = "probe") -> Any:
        recorded = DOC["probes"][f"{target.namespace}/{target.pod}/{container}"]
        return kube._probe_result(container, recorded["stdout"], recorded["stderr"], "",
                                  recorded["exit_code"])


@functools.cache
def procfs_root() -> str:
    """The recorded /proc files as a procfs tree (kept for the test session, like a real /proc)."""
    root = Path(tempfile.mkdtemp(prefix="pidmap-recorded-node-"))
    atexit.register(shutil.rmtree, root, True)
    for pid, files in DOC["host_proc"].items():
        base = root / pid
        (base / "ns").mkdir(parents=True)
        for name in ("status", "cgroup", "stat"):
            (base / name).write_text(files[name])
        (base / "cmdline").write_bytes(files["cmdline"].encode())
        if files["ns_pid"] is not None:  # None: refused to root too (outside its user namespace)
            (base / "ns" / "pid").symlink_to(files["ns_pid"])  # readlink gives "pid:[INODE]"
    (root / "stat").write_text(DOC["proc_stat_btime"] + "\n")
    return str(root)


def _ancestry(pid: int, procfs_root: str = "") -> tuple[int, ...] | None:
    chain = DOC["ns_ancestry"].get(str(pid))
    return tuple(chain) if chain else None


@contextmanager
def replay() -> Iterator[str]:
    """Inside: pidmap's sources read the recording. Yields the procfs root."""
    root = procfs_root()
    real_scan, real_sees = hostprocs.scan_local, hostprocs.sees_container
    with ExitStack() as stack:
        for target, name, value in (
            (kube, "Cluster", _Cluster),
            (nodes, "docker_client", lambda *a, **k: _Docker()),
            (hostprocs, "scan_local", lambda procfs_root=root, roots=None: real_scan(procfs_root, roots)),
            (hostprocs, "sees_container", lambda cid, pid, procfs_root=root: real_sees(cid, pid, root)),
            (hostprocs, "pid_ns_ancestry", _ancestry),
        ):
            stack.enter_context(mock.patch.object(target, name, value))
        yield root


OPTIONS = Options(via="local")
Rows = set[tuple[int | None, int | None, int | None]]


@functools.cache
def node_maps() -> tuple[PodMap, ...]:
    """``pidmap node NODE`` over the recording."""
    with replay():
        return tuple(collect.collect_node(NODE, OPTIONS))


@functools.cache
def show(pod: str) -> PodMap:
    """``pidmap show POD`` over the recording (its probes, its pod, its node's /proc)."""
    with replay():
        return collect.collect_pod(Target(namespace="default", pod=pod), OPTIONS)


def whois(pid: int) -> Answer:
    """``pidmap whois PID`` (host level) over the recording."""
    with replay() as root:
        return collect.whois_pid(pid, OPTIONS, procfs_root=root)


def rows(pmap: PodMap) -> dict[str, Rows]:
    return {c.container.name: {(p.container_pid, p.node_pid, p.host_pid) for p in c.processes}
            for c in pmap.containers}
