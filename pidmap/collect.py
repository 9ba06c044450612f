"""The calls the CLI makes: gather every view, hand it to the pure core (correlate, nodemap, whois).

``pidmap show POD``: every view of one pod, in parallel:

    pod (API) ─┬─ probe per running container (exec, threads) ─┐
               └─ node container (Docker SDK) ─ host scan ──────┴─ correlate → PodMap

The host scan runs after the probes so that the probes' own processes are gone from it, and the pod
is read again at the end so that a container that restarted meanwhile is reported, not mis-mapped.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

from pidmap.correlate import correlate
from pidmap.errors import DockerError, ExecError, NotFoundError, PidmapError, UsageError
from pidmap.model import (
    HostView,
    Node,
    Options,
    Pod,
    PodMap,
    ProbeResult,
    ProcessTable,
    Subject,
    Target,
    Via,
)
from pidmap.nodemap import map_pods
from pidmap.sources import agent, hostprocs, kube, nodes
from pidmap.whois import Answer, Level, NodeInfo, identify, node_of


@contextmanager
def agents_for(options: Options) -> Iterator[agent.AgentSession | None]:
    """The node agents of one run (``--via agent``; None otherwise), deleted however it ends: a
    ``watch`` holds one session for all its refreshes, so each node's agent is reused."""
    if options.via != "agent":
        yield None
        return
    with agent.session(kube.Cluster(options), agent.settings_of(options)) as agents:
        yield agents


@contextmanager
def _stopping(agents: agent.AgentSession | None) -> Iterator[None]:
    """On Ctrl-C or SIGTERM while agents start in worker threads, tell them to stop waiting, so that
    the pool's exit does not wait out a pod start before the agents are deleted. (Not on an error: a
    watch goes on after a failed refresh, with its agents.)"""
    try:
        yield
    except (KeyboardInterrupt, SystemExit):
        if agents is not None:
            agents.stop()
        raise


def collect_pod(target: Target, options: Options, agents: agent.AgentSession | None = None) -> PodMap:
    """Every view of one pod, once (``pidmap show``)."""
    if options.via == "agent" and agents is None:
        with agents_for(options) as own:
            return collect_pod(target, options, own)
    with PodCollector(target, options, agents) as collector:
        return collector.collect()


class PodCollector:
    """Maps one pod again and again (``pidmap watch``) keeping what does not change between
    refreshes: the loaded kubeconfig and its connection pool, the Docker client, the node container
    (looked up again only when its init is no longer the one found), the probe threads, the node
    agents (``--via agent``) and the imports. A refresh is then one GET of the pod, the probes, the
    node's scan and one more GET. Nothing is made before the first ``collect()``, so its errors are
    that call's.
    """

    def __init__(self, target: Target, options: Options, agents: agent.AgentSession | None = None) -> None:
        kube.validate_target(target)
        self.target, self.options, self.agents = target, options, agents
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
        target, options, agents = self.target, self.options, self.agents
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

        with _stopping(agents):
            if agents is not None:
                # The agent pod starts while the probes run; it scans after them (their shells gone).
                started = (self._pool.submit(agents.start, pod.node_name)
                           if running and pod.node_name else None)
            else:
                node_future = self._pool.submit(self._find_node, pod)
            probe_futures = {c.name: self._pool.submit(cluster.probe, target, c.name) for c in running}
            probes = {name: future.result() for name, future in probe_futures.items()}
            if agents is not None:
                reach = Reach(host_side=False)
                if started is not None:
                    started.result()
            else:
                reach = _node_result(node_future, options.via, required=bool(running))
        if reach.note:
            notes.append(reach.note)

        host: HostView | None = None
        restarted: set[str] = set()
        if running:
            if agents is not None and pod.node_name:
                table = agents.scan(pod.node_name)
                host = hostprocs.agent_view(table, notes=tuple(agents.notes))
                reach = Reach(node=machine_node(pod.node_name, host))
            elif reach.host_side:
                host = hostprocs.host_view(reach.client, reach.node, options.via,
                                           timeout=options.exec_timeout)
            # Read again after the scan, so that a restart during any of it is caught.
            restarted, restart_notes = _restarts(lambda: self._get_pod(cluster), pod)
            notes.extend(restart_notes)
        result = correlate(pod, reach.node, probes, host, only_container=target.container, notes=tuple(notes))
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


def machine_node(node_name: str, view: HostView | None) -> Node | None:
    """The node as the agent saw it when it is a machine of its own (its host is itself)."""
    if view is None or view.via != "agent" or view.node_level != 0 or view.host_level != 0:
        return None
    return Node(name=node_name, provider="machine", container_id="", host_pid=1)


AGENT_HINT = "rerun with --via agent to read them through a short-lived pod on the node"


def no_node_note(reason: str) -> str:
    """The note of a map made without the node: what is missing, why, and how to get it."""
    return f"node and host PIDs unknown: {reason}; {AGENT_HINT}"


@dataclass(frozen=True)
class Reach:
    """How the node of a pod can be read from here (Docker), or why not."""

    client: Any = None
    node: Node | None = None
    note: str | None = None
    host_side: bool = True  # False: nothing on this machine shows the node (no Docker, not a container)


def _node_result(future: Future[tuple[Any, Node | None]], via: Via, *, required: bool) -> Reach:
    try:
        client, node = future.result()
    except nodes.DockerAccessDenied as err:
        # This machine runs the engine (its socket is here): its /proc still shows host PIDs.
        return Reach(note=f"Docker: {err.message} — node container and node PIDs unknown")
    except (nodes.DockerUnavailable, nodes.NodeNotDockerError) as err:
        if via in ("docker", "local"):
            raise  # asked for by name: no way round it
        # Degrade, never drop: the exec already gave the container level.
        return Reach(note=no_node_note(err.message), host_side=False)
    except DockerError as err:
        if required:
            raise
        return Reach(note=f"node container not looked up: {err.message}")
    return Reach(client=client, node=node)


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
    if options.via == "agent":
        return _collect_by_agent(pods, [node_name], options)
    try:
        client = nodes.docker_client()
        node = nodes.find_node(client, node_name)
    except (nodes.DockerUnavailable, nodes.NodeNotDockerError) as err:
        if options.via in ("docker", "local"):
            raise
        if not pods:
            kube.get_node(cluster, node_name)  # NotFoundError when the cluster has no such node
        return _probed(cluster, pods, {node_name: no_node_note(err.message)})
    return _collect(pods, {node.name: node}, client, options)


def collect_all(namespace: str | None, options: Options) -> list[PodMap]:
    """Every pod of ``namespace`` (all namespaces when None), grouped by node, one scan in all."""
    cluster = kube.Cluster(options)
    pods = kube.list_pods(cluster, namespace=namespace)
    if options.via == "agent":
        return _collect_by_agent(pods, sorted({p.node_name for p in pods if p.node_name}), options)
    found: dict[str, Node] = {}
    unreachable: dict[str, str] = {}
    client: Any = None
    wanted = sorted({pod.node_name for pod in pods if pod.node_name})
    if wanted:
        try:
            client = nodes.docker_client()
        except nodes.DockerUnavailable as err:
            if options.via in ("docker", "local"):
                raise
            unreachable = dict.fromkeys(wanted, no_node_note(err.message))
        for name in wanted if client is not None else ():
            try:
                found[name] = nodes.find_node(client, name)
            except nodes.NodeNotDockerError as err:
                if options.via in ("docker", "local"):
                    continue  # reported as a note on each of its pods
                unreachable[name] = no_node_note(err.message)
    mapped = _collect([p for p in pods if p.node_name not in unreachable], found, client, options)
    probed = _probed(cluster, [p for p in pods if p.node_name in unreachable], unreachable)
    return sorted([*mapped, *probed], key=lambda m: (m.pod.namespace, m.pod.name))


def _collect_by_agent(pods: list[Pod], node_names: list[str], options: Options) -> list[PodMap]:
    """``--via agent``: one agent per node that runs something (in parallel), no Docker, no exec into pods."""
    wanted = [name for name in node_names if any(p.runs(c) for p in pods if p.node_name == name
                                                  for c in p.containers)]
    with agent.session(kube.Cluster(options), agent.settings_of(options)) as agents:
        if not wanted and node_names:
            agent.check_node(agents.cluster, node_names[0])  # `node NODE` of a node with nothing running
        with ThreadPoolExecutor(max_workers=max(1, min(8, len(wanted)))) as pool, _stopping(agents):
            tables = dict(zip(wanted, pool.map(agents.scan, wanted), strict=True))
    # One scan of this machine's /proc serves every node it shows (kind/minikube/k3d here).
    local = functools.cache(hostprocs.scan_local)
    views: dict[str, HostView | None] = {name: hostprocs.agent_view(table, local, tuple(agents.notes))
                                         for name, table in tables.items()}
    found = {name: node for name, view in views.items() if (node := machine_node(name, view)) is not None}
    return map_pods(pods, found, views)


def _probed(cluster: kube.Cluster, pods: list[Pod], notes: dict[str, str]) -> list[PodMap]:
    """Pods whose node nothing here can read: the container level from one exec per running
    container (in parallel), as ``show`` has it; node and host PIDs stay unknown, with a note."""
    jobs = [(pod, c) for pod in pods for c in pod.containers if pod.runs(c)]
    with ThreadPoolExecutor(max_workers=max(1, min(8, len(jobs)))) as pool:
        futures = {(pod.namespace, pod.name, c.name): pool.submit(
            cluster.probe, Target(namespace=pod.namespace, pod=pod.name), c.name) for pod, c in jobs}
        results = {key: future.result() for key, future in futures.items()}
    maps = []
    for pod in sorted(pods, key=lambda p: (p.namespace, p.name)):
        mine = [c.name for c in pod.containers if (pod.namespace, pod.name, c.name) in results]
        probes: dict[str, ProbeResult] = {name: results[(pod.namespace, pod.name, name)] for name in mine}
        note = notes.get(pod.node_name or "")
        maps.append(correlate(pod, None, probes, None, notes=(note,) if note else ()))
    return maps


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
    if options.via == "agent":
        if level != "node" or node_name is None:
            raise UsageError("--via agent reads one node: it needs --level node --node NODE",
                             "pidmap whois PID --level node --node NODE --via agent")
        return _whois_by_agent(pid, node_name, options, procfs_root)
    try:
        client = nodes.docker_client()
    except nodes.DockerUnavailable as err:
        raise nodes.DockerUnavailable(
            f"{err.message}: no way to the node containers from here",
            "for a node PID: pidmap whois PID --level node --node NODE --via agent") from err
    notes: list[str] = []
    if level == "node" and node_name is not None:
        # One node named: only its container is inspected, whatever else the engine runs (a stuck
        # container of another cluster cannot hold this up).
        try:
            node_list = [nodes.find_node(client, node_name)]
        except nodes.NodeNotDockerError:
            node_list = []
    else:
        node_list = nodes.list_nodes(client, notes)
    infos = _node_infos(node_list, procfs_root)
    if level == "node":
        info = next((i for i in infos if i.node.name == node_name), None)
        if info is None:
            every = nodes.list_nodes(client)
            known = ", ".join(sorted(n.name for n in every)) or "none"
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
        return replace(identify(subject, infos, [], None), notes=tuple(notes))
    pods = kube.list_pods(kube.Cluster(options), node_name=info.node.name)
    return replace(identify(subject, infos, pods, _node_table(info, procfs_root)), notes=tuple(notes))


def _node_table(info: NodeInfo, procfs_root: str) -> ProcessTable:
    """The processes of one node's PID namespace and those nested in it."""
    return hostprocs.scan_local(procfs_root, roots=[info.node.host_pid] if info.node.host_pid else None)


def _whois_by_agent(pid: int, node_name: str, options: Options, procfs_root: str) -> Answer:
    """``whois PID --level node --node NODE --via agent``: the agent's scan of NODE names the node's
    PID namespace; this machine's /proc adds the host side where it shows that namespace."""
    cluster = kube.Cluster(options)
    with agent.session(cluster, agent.settings_of(options)) as agents:
        table = agents.scan(node_name)
    local = functools.partial(hostprocs.scan_local, procfs_root)
    view = hostprocs.agent_view(table, local, tuple(agents.notes))
    node_ns = table.reader_pid_ns
    level = view.node_level or 0
    init = next((p for p in view.table.by_pid_ns.get(node_ns or -1, ()) if p.pid_at(level) == 1), None)
    node = machine_node(node_name, view) or Node(
        name=node_name, provider="unknown", container_id="",
        host_pid=init.pid if init is not None and view.host_level == 0 else None)
    info = NodeInfo(node=node, level=level, pid_ns=node_ns)
    pods = kube.list_pods(cluster, node_name=node_name)
    if view.table is not table:
        # This machine shows the node: the ordinary path, from the host's /proc.
        subject = _node_subject(pid, info, view.table, procfs_root)
        return identify(subject, [info], pods, view.table)
    found = next((p for p in table.processes if p.pid == pid), None)
    if found is None:
        raise NotFoundError(f"no process with PID {pid} on node {node_name}",
                            f"the agent saw {len(table.processes)} processes there; list them with "
                            f"pidmap node {node_name} --via agent")
    # The agent's table keeps what whois needs of the cgroup file (container ID, pod UID) and of the
    # ancestry (the process's namespace, nested in the node's).
    cgroup_text = "\n".join(part for part in (
        f"0::/kubepods/pod{found.pod_uid}" if found.pod_uid else "", found.cgroup_id or "") if part)
    ancestry = tuple(dict.fromkeys(ns for ns in (found.pid_ns, node_ns) if ns is not None)) or None
    subject = Subject(process=found, cgroup_text=cgroup_text, ns_ancestry=ancestry)
    answer = identify(subject, [info], pods, table,
                      seen_as="host PID" if view.host_level == 0 else f"node {node_name} PID")
    return answer if view.host_level == 0 else replace(answer, host_pid=None)


def _node_subject(pid: int, info: NodeInfo, table: ProcessTable, procfs_root: str) -> Subject:
    for proc in table.processes:
        if len(proc.nspid) <= info.level or proc.nspid[info.level] != pid:
            continue
        subject = hostprocs.read_subject(proc.pid, procfs_root)
        if subject is not None and node_of(subject, [info]) is info:
            return subject
    raise NotFoundError(f"no process with PID {pid} in node {info.node.name}",
                        f"list the node's processes: docker exec {info.node.name} ps")
