"""The one call the CLI makes: gather every view of a pod, in parallel, and correlate them.

    pod (API) ─┬─ probe per running container (exec, threads) ─┐
               └─ node container (Docker SDK) ─ host scan ──────┴─ correlate → PodMap

The host scan runs after the probes so that the probes' own processes are gone from it, and the pod
is read again at the end so that a container that restarted meanwhile is reported, not mis-mapped.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace
from typing import Any

from pidmap.correlate import correlate
from pidmap.errors import DockerError, ExecError, NotFoundError, PidmapError
from pidmap.model import HostView, Node, Options, Pod, PodMap, Target
from pidmap.sources import hostprocs, kube, nodes


def collect_pod(target: Target, options: Options) -> PodMap:
    kube.validate_target(target)
    cluster = kube.Cluster(options)
    pod = cluster.get_pod(target)
    if target.container is not None and pod.container(target.container) is None:
        names = ", ".join(c.name for c in pod.containers) or "none"
        raise NotFoundError(f'container "{target.container}" not found in pod "{pod.name}"',
                            f"its containers: {names}")
    wanted = [c for c in pod.containers if target.container in (None, c.name)]
    # Init containers run while the pod is Pending: exactly when someone is debugging it.
    running = [c for c in wanted if pod.runs(c)]
    notes: list[str] = []

    with ThreadPoolExecutor(max_workers=max(1, len(running) + 1)) as pool:
        node_future = pool.submit(_find_node, pod)
        probe_futures = {c.name: pool.submit(cluster.probe, target, c.name) for c in running}
        probes = {name: future.result() for name, future in probe_futures.items()}
        client, node, node_note = _node_result(node_future, required=bool(running))
    if node_note:
        notes.append(node_note)

    host: HostView | None = None
    if running:
        host = hostprocs.host_view(client, node, options.via, timeout=options.exec_timeout)
        restarted, restart_notes = _restarts(cluster, target, pod)
        notes.extend(restart_notes)
        for name in restarted:
            if name in probes and probes[name].table is None:
                # The exec failed because the container went away under it: that is the news.
                probes[name] = replace(probes[name], no_shell=False)
    result = correlate(pod, node, probes, host, only_container=target.container, notes=tuple(notes))
    for cmap in result.containers:
        probe = probes.get(cmap.container.name)
        if probe is not None and probe.no_shell and not cmap.processes:
            raise ExecError(f'container "{cmap.container.name}" has no shell and its processes cannot be '
                            "seen from the host side either",
                            "run pidmap as root on the Docker host (or with --via docker) "
                            "to map it by container ID")
    return result


def _find_node(pod: Pod) -> tuple[Any, Node | None]:
    if not pod.node_name:
        return None, None
    client = nodes.docker_client()
    return client, nodes.find_node(client, pod.node_name)


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


def _restarts(cluster: kube.Cluster, target: Target, before: Pod) -> tuple[set[str], list[str]]:
    """Containers that restarted or stopped while pidmap collected, and notes saying so."""
    try:
        after = cluster.get_pod(target)
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
