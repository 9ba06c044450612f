"""The calls the CLI makes: gather every view, hand it to the pure core (correlate, nodemap, whois).

``pidmap show POD``: every view of one pod, in parallel:

    pod (API) ─┬─ probe per running container (exec, threads) ─┐
               └─ node container (Docker SDK) ─ host scan ──────┴─ correlate → PodMap

The host scan runs after the probes so that the probes' own processes are gone from it, and the pod
is read again at the end so that a container that restarted meanwhile is reported, not mis-mapped.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from pidmap.correlate import correlate
from pidmap.errors import DockerError, ExecError, NotFoundError, PidmapError, UsageError
from pidmap.model import HostView, Node, Options, Pod, PodMap, ProcessTable, Subject, Target
from pidmap.nodemap import map_pods
from pidmap.sources import hostprocs, kube, nodes
from pidmap.whois import Answer, Level, NodeInfo, identify, node_of


def collect_pod(target: Target, options: Options) -> PodMap:
    """Every view of one pod, once (``pidmap show``)."""
    with PodCollector(target, options) as collector:
        return collector.collect()


class PodCollector:
    """Maps one pod again and again (``pidmap watch``) keeping what does not change between
    refreshes: the loaded kubeconfig and its connection pool, the Docker client, the node container
    (looked up again only when its init is no longer the one found), the probe threads and the
    imports. A refresh is then one GET of the pod, the probes, the node's scan and one more GET.
    Nothing is made before the first ``collect()``, so its errors are that call's.
    """

    def __init__(self, target: Target, options: Options) -> None:
        kube.validate_target(target)
        self.target, self.options = target, options
        self._cluster: kube.Cluster | None = None
        self._rest: kube.Rest | None = None
        self._docker: Any = None
        self._node: Node | None = None
        self._pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="pidmap-probe")

    def __enter__(self) -> PodCollector:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        if self._rest is not None:
            self._rest.close()
            self._rest = None

    def _get_pod(self, cluster: kube.Cluster) -> Pod:
        if self._rest is None:
            self._rest = cluster.rest()
        return cluster.get_pod(self.target, rest=self._rest)

    def collect(self) -> PodMap:
        target, options = self.target, self.options
        if self._cluster is None:
            self._cluster = kube.Cluster(options)
        cluster = self._cluster
        pod = self._get_pod(cluster)
        if target.container is not None and pod.container(target.container) is None:
            names = ", ".join(c.name for c in pod.containers) or "none"
            raise NotFoundError(f'container "{target.container}" not found in pod "{pod.name}"',
                                f"its containers: {names}")
        wanted = [c for c in pod.containers if target.container in (None, c.name)]
        # Init containers run while the pod is Pending: exactly when someone is debugging it.
        running = [c for c in wanted if pod.runs(c)]
        notes: list[str] = []

        node_future = self._pool.submit(self._find_node, pod)
        probe_futures = {c.name: self._pool.submit(cluster.probe, target, c.name) for c in running}
        probes = {name: future.result() for name, future in probe_futures.items()}
        client, node, node_note = _node_result(node_future, required=bool(running))
        if node_note:
            notes.append(node_note)

        host: HostView | None = None
        restarted: set[str] = set()
        if running:
            host = hostprocs.host_view(client, node, options.via, timeout=options.exec_timeout)
            # Read again after the scan, so that a restart during any of it is caught.
            restarted, restart_notes = _restarts(lambda: self._get_pod(cluster), pod)
            notes.extend(restart_notes)
        result = correlate(pod, node, probes, host, only_container=target.container, notes=tuple(notes))
        for cmap in result.containers:
            probe = probes.get(cmap.container.name)
            # A restarted container's exec failed because it went away under it: that is the news.
            if (probe is not None and probe.no_shell and not cmap.processes
                    and cmap.container.name not in restarted):
                raise ExecError(f'container "{cmap.container.name}" has no shell and its processes cannot be '
                                "seen from the host side either",
                                "run pidmap as root on the Docker host (or with --via docker) "
                                "to map it by container ID")
        return result

    def _find_node(self, pod: Pod) -> tuple[Any, Node | None]:
        if not pod.node_name:
            return None, None
        if self._docker is None:
            self._docker = nodes.docker_client()
        known = self._node
        # The same node container with the same init: nothing to look up (a restarted node has a
        # new init PID; a node read through docker exec is looked up again, one inspect).
        if (known is not None and known.name == pod.node_name
                and hostprocs.sees_container(known.container_id, known.host_pid)):
            return self._docker, known
        self._node = nodes.find_node(self._docker, pod.node_name)
        return self._docker, self._node


def _node_result(future: Future[tuple[Any, Node | None]], *,
                 required: bool) -> tuple[Any, Node | None, str | None]:
    try:
        client, node = future.result()
    except nodes.DockerAccessDenied as err:
        return None, None, f"Docker: {err.message} — node container and node PIDs unknown"
    except DockerError as err:
        if required:
            raise
        return None, None, f"node container not looked up: {err.message}"
    return client, node, None


def _restarts(get_pod: Callable[[], Pod], before: Pod) -> tuple[set[str], list[str]]:
    """Containers that restarted or stopped while pidmap collected, and notes saying so."""
    try:
        after = get_pod()
    except PidmapError as err:
        return set(), [f"the pod could not be read again after collecting: {err.message}"]
    notes = []
    restarted: set[str] = set()
    if after.phase != before.phase:
        notes.append(f"the pod went from {before.phase} to {after.phase} while pidmap collected; rerun")
    for old in before.containers:
        new = after.container(old.name)
        if new is None:
            continue
        if new.restart_count != old.restart_count or new.container_id != old.container_id:
            restarted.add(old.name)
            change = (f"restarts {old.restart_count} → {new.restart_count}"
                      if new.restart_count != old.restart_count else
                      f"container {(old.container_id or '-')[:12]} → {(new.container_id or '-')[:12]}")
            notes.append(f"{old.name}: restarted while pidmap collected ({change}); "
                         "its rows may mix the old and the new container — rerun")
        elif old.state == "running" and new.state != "running":
            restarted.add(old.name)
            notes.append(f"{old.name}: stopped while pidmap collected (now {new.state}"
                         + (f", {new.reason}" if new.reason else "") + ")")
    return restarted, notes


# --- pidmap node / show --all: every pod of a node or namespace from one scan, no exec --------

def collect_node(node_name: str, options: Options) -> list[PodMap]:
    """Every pod scheduled on ``node_name``, mapped from one host scan and one list call."""
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
    views: dict[str, HostView | None] = {}
    if any(pod.runs(c) for pod in pods for c in pod.containers):
        # One scan of this machine's /proc serves every node whose processes it shows; it reads
        # only the processes of those nodes' PID namespaces (and the ones nested in them).
        roots = sorted(n.host_pid for n in found.values() if n.running and n.host_pid)
        local = functools.cache(functools.partial(hostprocs.scan_local, roots=roots))
        for name, node in found.items():
            views[name] = hostprocs.host_view(client, node, options.via, timeout=options.exec_timeout,
                                              local=local)
    return map_pods(pods, found, views)


# --- pidmap whois -----------------------------------------------------------------------------


def _node_infos(nodes: Sequence[Node], procfs_root: str = "/proc") -> list[NodeInfo]:
    """Each running node whose init this /proc shows (its cgroup names the node container): where
    the node sits in NSpid lines and its PID namespace. One read per node, no scan."""
    infos = []
    for node in nodes:
        if not node.running or not node.host_pid:
            continue
        init = hostprocs.read_subject(node.host_pid, procfs_root, ancestry=False)
        if init is None or node.container_id not in init.cgroup_text:
            continue  # stopped, or its processes are not on this machine's /proc (Docker Desktop)
        infos.append(NodeInfo(node=node, level=len(init.process.nspid) - 1, pid_ns=init.process.pid_ns))
    return infos


def whois_pid(pid: int, options: Options, *, level: Level = "host", node_name: str | None = None,
              procfs_root: str = "/proc") -> Answer:
    """``pidmap whois``: read the process and the node containers' inits; only for a process in a
    node, scan that node's processes and list its pods (one API call). A host process that is in
    no node costs no scan and no API call."""
    if pid <= 0:
        raise UsageError(f"invalid PID {pid}", "a PID is a positive number")
    if level == "node" and not node_name:
        raise UsageError("--level node needs --node NAME",
                         "node PIDs repeat across nodes: pidmap whois PID --level node --node NODE")
    client = nodes.docker_client()
    node_list = nodes.list_nodes(client)
    infos = _node_infos(node_list, procfs_root)
    if level == "node":
        info = next((i for i in infos if i.node.name == node_name), None)
        if info is None:
            known = ", ".join(sorted(n.name for n in node_list)) or "none"
            raise NotFoundError(f"node {node_name} is not a running node container whose processes this "
                                "machine can see", f"node containers: {known}")
        subject = _node_subject(pid, info, _node_table(info, procfs_root), procfs_root)
    else:
        found = hostprocs.read_subject(pid, procfs_root)
        if found is None:
            raise NotFoundError(f"no process with PID {pid} on this host",
                                "list processes with ps -e; for a PID shown inside a node container use "
                                "--level node --node NODE")
        subject = found
        if node_list and not infos and any(n.running for n in node_list):
            error = hostprocs.not_visible("the node containers")
            raise DockerError(error.message, "run pidmap whois on the Docker host itself (not Docker Desktop "
                              "or a remote DOCKER_HOST)")
    info = node_of(subject, infos)
    if info is None or subject.process.pid == info.node.host_pid:
        return identify(subject, infos, [], None)
    pods = kube.list_pods(kube.Cluster(options), node_name=info.node.name)
    return identify(subject, infos, pods, _node_table(info, procfs_root))


def _node_table(info: NodeInfo, procfs_root: str) -> ProcessTable:
    """The processes of one node's PID namespace and those nested in it."""
    return hostprocs.scan_local(procfs_root, roots=[info.node.host_pid] if info.node.host_pid else None)


def _node_subject(pid: int, info: NodeInfo, table: ProcessTable, procfs_root: str) -> Subject:
    for proc in table.processes:
        if len(proc.nspid) <= info.level or proc.nspid[info.level] != pid:
            continue
        subject = hostprocs.read_subject(proc.pid, procfs_root)
        if subject is not None and node_of(subject, [info]) is info:
            return subject
    raise NotFoundError(f"no process with PID {pid} in node {info.node.name}",
                        f"list the node's processes: docker exec {info.node.name} ps")
