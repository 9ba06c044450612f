"""Pure: the pod, the node, what each container's probe saw and what the host saw → ``PodMap``.

A host process belongs to a container when its PID-namespace inode equals the one the container's
probe reported; where several containers share a namespace (``shareProcessNamespace``), where no
probe ran (no shell), or where inodes are unreadable (not root), its cgroup's container ID decides.
Disagreements between the two sides are kept as flags and notes, never dropped.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime

from pidmap.model import (
    Container,
    ContainerMap,
    HostView,
    Node,
    Pod,
    PodMap,
    ProbeResult,
    Process,
    ProcessTable,
    RawProcess,
)


def correlate(pod: Pod, node: Node | None, probes: Mapping[str, ProbeResult], host: HostView | None,
              *, only_container: str | None = None, notes: tuple[str, ...] = ()) -> PodMap:
    sandbox: Process | None = None
    pod_notes: list[str] = list(notes)
    if host is not None:
        pod_notes.extend(host.notes)
        pod_notes.extend(host.table.notes)
    if pod.phase != "Running":
        pod_notes.extend(explain_not_running(pod))
    # In a shared namespace every probe sees the others' shells (they run in parallel).
    probe_pids: frozenset[int] = frozenset()
    if pod.share_process_namespace:
        probe_pids = frozenset().union(*(p.table.own_pids for p in probes.values() if p.table))
    # Every process of the pod's one namespace (pause and every container's), found once.
    shared_ns = next((p.table.reader_pid_ns for p in probes.values()
                      if p.table and p.table.reader_pid_ns), None)
    shared: list[RawProcess] = []
    if pod.share_process_namespace and host is not None:
        shared = _namespace_processes(pod, host, shared_ns)
    maps = []
    for container in pod.containers:
        if only_container is not None and container.name != only_container:
            continue
        maps.append(map_container(pod, container, probes.get(container.name), host, probe_pids, shared))
    if pod.share_process_namespace and any(pod.runs(m.container) for m in maps):
        if host is not None:
            if shared_ns is None:
                # No probe named the namespace: the host side's reading of it does.
                shared_ns = next((m.pid_namespace for m in maps if m.pid_namespace), None)
                shared = _namespace_processes(pod, host, shared_ns)
            sandbox, sandbox_notes = _shared_namespace_init(shared_ns, shared, host)
            pod_notes.extend(sandbox_notes)
        else:
            pod_notes.append("the pod shares one PID namespace; without the host side each container "
                             "lists every process of the pod")
    return PodMap(pod=pod, node=node, containers=tuple(maps), notes=tuple(pod_notes),
                  via=host.via if host else None, sandbox=sandbox)


def container_level(host: HostView, members: Iterable[RawProcess] = ()) -> int | None:
    """Index in ``RawProcess.nspid`` of the PID in the container's own namespace.

    One below the node. Where the node's depth is unknown (its init was not found), the members'
    own depth is the best guess, and a process of a PID namespace nested inside the container is
    then indistinguishable from the container's own.
    """
    if host.node_level is not None:
        return host.node_level + 1
    depth = max((len(proc.nspid) for proc in members), default=0)
    return depth - 1 if depth > 1 else None


def _namespace_processes(pod: Pod, host: HostView, namespace: int | None) -> list[RawProcess]:
    """A shared PID namespace's members, and the pod's processes (by cgroup) whose inode is unknown."""
    table = host.table
    return [p for p in (*table.by_pid_ns.get(namespace or -1, ()), *table.by_pod_uid.get(pod.uid, ()))
            if p.pid_ns == namespace or p.pid_ns is None]


def _shared_namespace_init(namespace: int | None, in_pod: list[RawProcess],
                           host: HostView) -> tuple[Process | None, list[str]]:
    """Who is PID 1 of a shared PID namespace: the pod's pause (sandbox) process, in no container.

    Kubernetes makes the sandbox's pause process PID 1 of the pod's one namespace, so no container
    shows a PID 1 of its own; say which process it is and where, or readers look for it in vain.
    """
    level = container_level(host, in_pod)
    candidates = [p for p in in_pod if p.pid_at(level) == 1]
    if not candidates:
        return None, []
    init = candidates[0]
    sandbox = Process(container_pid=1, node_pid=init.pid_at(host.node_level),
                      host_pid=init.pid_at(host.host_level), ppid=0, user=_user(init.uid, {0: "root"}),
                      state=init.state, command=init.cmdline or init.name, flags=("pid1",))
    where = ", ".join(f"{label} PID {pid}" for label, pid in (
        ("node", init.pid_at(host.node_level)), ("host", init.pid_at(host.host_level))) if pid is not None)
    inode = f" {namespace}" if namespace else ""
    return sandbox, [f"the containers share one PID namespace{inode}; its PID 1 is the pod's sandbox "
                     f"process {init.cmdline or init.name!r}" + (f" ({where})" if where else "")]


def explain_not_running(pod: Pod) -> list[str]:
    """Why a pod in this phase has no process to map, in plain words."""
    ran = [c for c in pod.containers if c.state == "terminated"]
    ran_text = ", ".join(f"{c.name} exited {c.exit_code}" + (f" ({c.reason})" if c.reason else "")
                         for c in ran)
    if pod.phase == "Pending":
        if not pod.node_name:
            why = "pod is Pending: it is not scheduled to a node yet, so no container exists"
        else:
            waiting = ", ".join(f"{c.name}: {c.reason or 'waiting'}" for c in pod.containers
                                if c.state == "waiting")
            runs = ", ".join(c.name for c in pod.containers if pod.runs(c))
            why = ("pod is Pending: its containers have not all started yet"
                   + (f" ({waiting})" if waiting else "")
                   + (f"; running, and mapped: {runs}" if runs else ""))
    elif pod.phase == "Succeeded":
        why = "pod Succeeded: every container ran to completion (exit 0) and will not restart"
    elif pod.phase == "Failed":
        why = "pod Failed: every container has terminated and at least one failed; none will restart"
    else:
        why = (f"pod is {pod.phase}: the state of its containers cannot be obtained, "
               "typically because its node does not answer")
    if pod.reason:
        why += f" (reason: {pod.reason}" + (f": {pod.message}" if pod.message else "") + ")"
    return [why + (f"; containers that ran: {ran_text}" if ran_text else "")]


def _start_time(table: ProcessTable, proc: RawProcess) -> str | None:
    if proc.start_ticks is None or table.boot_time is None:
        return None
    stamp = table.boot_time + proc.start_ticks / table.clock_ticks
    return datetime.fromtimestamp(stamp, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _user(uid: int | None, users: Mapping[int, str]) -> str | None:
    if uid is None:
        return None
    return users.get(uid, str(uid))


def _members(pod: Pod, container: Container, probe_ns: int | None,
             host: HostView) -> tuple[list[RawProcess], int | None]:
    """The host-side processes of one container, and their level (see ``container_level``).

    By PID-namespace inode where both sides know it; by the cgroup's container ID otherwise (inode
    unreadable: not root, or a node without CAP_SYS_PTRACE; or no probe) and for processes of a PID
    namespace nested inside the container (docker-in-docker, ``unshare -p``), which keep its cgroup.
    A cgroup can also hold processes at the node's level (a runtime's helper between fork and
    exec): they have no PID in the container's namespace and are not its own.
    """
    cid = container.container_id
    table = host.table
    by_ns: list[RawProcess] = []
    if probe_ns is not None:
        # shareProcessNamespace: one namespace for the pod, the cgroup tells containers apart.
        by_ns = [proc for proc in table.by_pid_ns.get(probe_ns, ())
                 if not pod.share_process_namespace or proc.cgroup_id is None or proc.cgroup_id == cid]
    seen = {proc.pid for proc in by_ns}
    by_cgroup = [proc for proc in table.by_cgroup.get(cid or "", ()) if proc.pid not in seen]
    if by_ns or host.node_level is not None:
        level = container_level(host, by_ns)
    else:
        level = container_level(host, by_cgroup)
    by_cgroup = [proc for proc in by_cgroup if proc.pid_at(level) is not None]
    return [*by_ns, *by_cgroup], level


def map_container(pod: Pod, container: Container, probe: ProbeResult | None,
                  host: HostView | None, probe_pids: frozenset[int] = frozenset(),
                  shared: Iterable[RawProcess] = ()) -> ContainerMap:
    """One container's processes; ``shared``: every process of the pod's shared PID namespace."""
    notes: list[str] = []
    if not pod.runs(container):
        return ContainerMap(container=container, pid_namespace=None, cgroup_id=container.container_id,
                            processes=(), notes=tuple(notes))
    table = probe.table if probe else None
    probe_ns = table.reader_pid_ns if table else None
    if probe is not None and probe.error:
        side = "mapped from the host side by its container ID" if host else "no host side to map it from"
        notes.append(f"{container.name}: {probe.error}; {side}")

    members, level = _members(pod, container, probe_ns, host) if host else ([], None)
    pid_ns = probe_ns or next((p.pid_ns for p in members if p.pid_ns and p.pid_at(level) == 1), None) \
        or next((p.pid_ns for p in members if p.pid_ns), None)
    # container PID -> host-side record: the PID one level below the node's (see RawProcess.pid_at).
    host_by_cpid: dict[int, RawProcess] = {}
    for member in members:
        cpid = member.pid_at(level)
        if cpid is not None:
            host_by_cpid.setdefault(cpid, member)
    shared_all = {cpid for p in shared if (cpid := p.pid_at(level)) is not None}
    host_complete = host is not None and bool(members)

    rows: list[Process] = []
    seen: set[int] = set()
    gone: list[int] = []
    # The probe reads /proc inside the container: its PIDs are the container's own.
    for proc in table.processes if table else ():
        cpid = proc.pid
        if cpid in probe_pids:
            continue
        if pod.share_process_namespace and host and cpid not in host_by_cpid and cpid in shared_all:
            continue  # another container's (or pause's) process in the shared namespace
        hproc = host_by_cpid.get(cpid)
        flags: list[str] = []
        if hproc is None and host_complete:
            flags.append("gone")
            gone.append(cpid)
        elif hproc is not None and hproc.cmdline != proc.cmdline and hproc.name != proc.name:
            flags.append("mismatch")
            notes.append(f"{container.name}: PID {cpid} runs {proc.cmdline!r} in the container but "
                         f"{hproc.cmdline!r} on the host (the PID was reused between the two reads)")
        seen.add(cpid)
        rows.append(_row(cpid, proc, hproc, host, table, flags))
    new: list[int] = []
    for cpid, hproc in host_by_cpid.items():
        if cpid in seen:
            continue
        flags = ["new"] if table else []
        if table:
            new.append(cpid)
        # The parent's PID in the container's namespace; 0 (as ps shows) for a parent outside it.
        parent = host.table.by_pid.get(hproc.ppid) if host else None
        ppid = (parent.pid_at(level) if parent is not None else None) or 0
        rows.append(_row(cpid, None, hproc, host, None, flags, ppid=ppid))
    if gone:
        notes.append(f"{container.name}: PIDs {_pids(gone)} seen in the container are gone on the host "
                     "(they exited between the probe and the host scan)")
    if new:
        notes.append(f"{container.name}: PIDs {_pids(new)} exist on the host but were not seen by the probe "
                     "(they started after it ran)")
    if host is not None and not members and (table is None or table.processes):
        notes.append(f"{container.name}: no process of this container found on the host side "
                     f"(container ID {(container.container_id or '?')[:12]})")
    if table is None and not members:
        notes.append(f"{container.name}: its processes could not be mapped")
    rows.sort(key=lambda row: (row.container_pid is None, row.container_pid or 0))
    cgroup_id = next((p.cgroup_id for p in members if p.cgroup_id), None) or container.container_id
    first = next((p for p in members if p.pid_at(level) == 1), None) or min(
        members, key=lambda p: (p.start_ticks or 0, p.pid), default=None)
    ancestry = _ancestry(host, first) if host is not None and first is not None else ()
    return ContainerMap(container=container, pid_namespace=pid_ns, cgroup_id=cgroup_id,
                        processes=tuple(rows), notes=tuple(notes), ancestry=ancestry)


def _ancestry(host: HostView, first: RawProcess, limit: int = 16) -> tuple[Process, ...]:
    """The parents of a container's first process inside the node, nearest first, up to the node's
    init (PID 1 at the node's level): who runs the container (containerd-shim-runc-v2 on kind)."""
    if host.node_level is None:
        return ()
    chain: list[Process] = []
    current = host.table.by_pid.get(first.ppid)
    while current is not None and len(chain) < limit:
        node_pid = current.pid_at(host.node_level)
        if node_pid is None:
            break  # above the node: the host's own processes are not the node's runtime
        parent = host.table.by_pid.get(current.ppid)
        chain.append(Process(
            container_pid=None, node_pid=node_pid, host_pid=current.pid_at(host.host_level),
            ppid=(parent.pid_at(host.node_level) if parent is not None else None) or 0,
            user=_user(current.uid, {0: "root"}), state=current.state,
            command=current.cmdline or current.name, start_time=_start_time(host.table, current)))
        if node_pid == 1:
            break
        current = parent
    return tuple(chain)


def _pids(pids: list[int]) -> str:
    return ", ".join(str(pid) for pid in sorted(pids))


def _row(cpid: int, proc: RawProcess | None, hproc: RawProcess | None, host: HostView | None,
         probe_table: ProcessTable | None, flags: list[str], *, ppid: int | None = None) -> Process:
    if cpid == 1:
        flags = ["pid1", *flags]
    user: str | None = None
    if proc is not None and probe_table is not None:
        user = _user(proc.uid, probe_table.users)
    elif hproc is not None:
        # The host's user names need not be the container's; only uid 0 is root everywhere.
        user = _user(hproc.uid, {0: "root"})
    seen_by = proc or hproc
    return Process(
        container_pid=cpid,
        node_pid=hproc.pid_at(host.node_level) if hproc and host else None,
        host_pid=hproc.pid_at(host.host_level) if hproc and host else None,
        ppid=proc.ppid if proc is not None else ppid,
        user=user,
        state=seen_by.state if seen_by else None,
        command=seen_by.cmdline if seen_by else "",
        start_time=_start_time(host.table, hproc) if hproc and host else None,
        flags=tuple(flags),
    )
