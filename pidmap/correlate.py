"""Pure: the pod, the node, what each container's probe saw and what the host saw → ``PodMap``.

The kernel decides, the container informs. A host process belongs to a container when its cgroup
carries the container's ID (the kernel's record, on that pod's node), or when it is in the PID
namespace the kernel puts those processes in and in no container's cgroup. The probe runs the
container's own ``sh``, which the container can replace: its report (PID-namespace inode, process
table) is checked against that view — an inode that disagrees discards the report, with a note;
a PID whose command differs shows the kernel's. No report picks a host process. Disagreements
are kept as flags and notes, never dropped.

    map_container ─ _members (kernel) ─ _check_report (probe vs kernel) ─ _rows ─ _row
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
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
    sandbox_ancestry: tuple[Process, ...] = ()
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
        # Each probe runs brief children (tr, cat) that another probe may list before its own
        # listing does: whatever descends from a probe's shell is the probes', never the pod's.
        listed = [proc for p in probes.values() if p.table for proc in p.table.processes]
        grown = True
        while grown:
            more = {proc.pid for proc in listed if proc.ppid in probe_pids} - probe_pids
            probe_pids, grown = probe_pids | more, bool(more)
    # Every process of the pod's one namespace (pause and every container's), found once, from
    # the pod's cgroup: the probes' claims name no process (see _check_report).
    shared_ns: int | None = None
    shared: list[RawProcess] = []
    if pod.share_process_namespace and host is not None:
        in_pod = host.table.by_pod_uid.get(pod.uid, ())
        shared_ns = _namespace_of(in_pod, container_level(host, in_pod))
        shared = _namespace_processes(pod, host, shared_ns)
    maps = []
    for container in pod.containers:
        if only_container is not None and container.name != only_container:
            continue
        maps.append(map_container(pod, container, probes.get(container.name), host, probe_pids, shared))
    if pod.share_process_namespace and any(pod.runs(m.container) for m in maps):
        if host is not None:
            sandbox, sandbox_ancestry, sandbox_notes = _shared_namespace_init(shared_ns, shared, host)
            pod_notes.extend(sandbox_notes)
        else:
            pod_notes.append("the pod shares one PID namespace; without the host side each container "
                             "lists every process of the pod")
    return PodMap(pod=pod, node=node, containers=tuple(maps), notes=tuple(pod_notes),
                  via=host.via if host else None, sandbox=sandbox, sandbox_ancestry=sandbox_ancestry)


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
    """The processes of the pod's cgroup in its shared PID namespace (all of them where the
    inodes are unreadable)."""
    return [p for p in host.table.by_pod_uid.get(pod.uid, ())
            if namespace is None or p.pid_ns in (namespace, None)]


def _shared_namespace_init(namespace: int | None, in_pod: list[RawProcess],
                           host: HostView) -> tuple[Process | None, tuple[Process, ...], list[str]]:
    """Who is PID 1 of a shared PID namespace: the pod's pause (sandbox) process, in no container.

    Kubernetes makes the sandbox's pause process PID 1 of the pod's one namespace, so no container
    shows a PID 1 of its own; say which process it is and where, or readers look for it in vain.
    """
    level = container_level(host, in_pod)
    candidates = [p for p in in_pod if p.pid_at(level) == 1]
    if not candidates:
        return None, (), []
    init = candidates[0]
    sandbox = Process(container_pid=1, node_pid=init.pid_at(host.node_level),
                      host_pid=init.pid_at(host.host_level), ppid=0, user=_user(init.uid, {0: "root"}),
                      state=init.state, command=init.cmdline or init.name, flags=("pid1",))
    where = ", ".join(f"{label} PID {pid}" for label, pid in (
        ("node", init.pid_at(host.node_level)), ("host", init.pid_at(host.host_level))) if pid is not None)
    inode = f" {namespace}" if namespace else ""
    return sandbox, _ancestry(host, init), [
        f"the containers share one PID namespace{inode}; its PID 1 is the pod's sandbox "
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


@dataclass(frozen=True)
class _Members:
    """One container's processes as the kernel shows them on its node (the host side)."""

    processes: tuple[RawProcess, ...] = ()
    level: int | None = None  # index of the container's own PID in their NSpid lines
    pid_ns: int | None = None  # the container's PID namespace, as the kernel says (None: unreadable)

    @property
    def by_container_pid(self) -> dict[int, RawProcess]:
        found: dict[int, RawProcess] = {}
        for member in self.processes:
            cpid = member.pid_at(self.level)
            if cpid is not None:
                found.setdefault(cpid, member)
        return found


def _members(pod: Pod, container: Container, host: HostView) -> _Members:
    """The host-side processes of one container: those whose cgroup carries its container ID.

    The cgroup is the kernel's record, which no process in the container can rewrite; the probe's
    claims are checked against it (``_check_report``), never used to pick processes. A cgroup can
    also hold processes at the node's level (a runtime's helper between fork and exec): they have no
    PID in the container's namespace and are not its own. Processes of a PID namespace nested inside
    the container (docker-in-docker, ``unshare -p``) keep its cgroup and stay its own.
    """
    table = host.table
    in_cgroup = table.by_cgroup.get(container.container_id or "", ())
    level = container_level(host, in_cgroup)
    own = [proc for proc in in_cgroup if proc.pid_at(level) is not None]
    pid_ns = _namespace_of(own, level)
    if pid_ns is not None and not pod.share_process_namespace:
        # In the container's namespace but in no container's cgroup: entered from the node
        # (nsenter) or moved out of the cgroup; the kernel still counts it in. Not so in a shared
        # namespace, where only the cgroup tells the pod's containers apart.
        seen = {proc.pid for proc in own}
        own += [proc for proc in table.by_pid_ns.get(pid_ns, ())
                if proc.cgroup_id is None and proc.pid not in seen and proc.pid_at(level) is not None]
    return _Members(processes=tuple(own), level=level, pid_ns=pid_ns)


def _namespace_of(processes: Iterable[RawProcess], level: int | None) -> int | None:
    """The PID namespace of processes at ``level`` (not nested deeper): its PID 1's, else the most
    common inode; None when no inode is readable (not root)."""
    at_level = [proc for proc in processes
                if level is not None and len(proc.nspid) == level + 1 and proc.pid_ns is not None]
    init = next((proc.pid_ns for proc in at_level if proc.pid_at(level) == 1), None)
    if init is not None:
        return init
    counts = Counter(proc.pid_ns for proc in at_level)
    return counts.most_common(1)[0][0] if counts else None


def _check_report(container: Container, table: ProcessTable | None,
                  members: _Members) -> tuple[ProcessTable | None, list[str]]:
    """The probe's table when the kernel agrees with it, else None and a note.

    The probe runs the container's own ``sh``, which a process in the container can replace: its
    PID-namespace inode is a claim. Where the kernel's inode for the container's processes differs,
    nothing of the report is used and the container is mapped from the host side alone.
    """
    if table is None or members.pid_ns is None or table.reader_pid_ns is None:
        return table, []
    if table.reader_pid_ns == members.pid_ns:
        return table, []
    return None, [f"{container.name}: the container's report was inconsistent: its probe claims PID "
                  f"namespace {table.reader_pid_ns}, but the kernel puts the container's processes in "
                  f"{members.pid_ns}; mapped from the host side (cgroup container ID) alone"]


def map_container(pod: Pod, container: Container, probe: ProbeResult | None,
                  host: HostView | None, probe_pids: frozenset[int] = frozenset(),
                  shared: Iterable[RawProcess] = ()) -> ContainerMap:
    """One container's processes; ``shared``: every process of the pod's shared PID namespace."""
    if not pod.runs(container):
        return ContainerMap(container=container, pid_namespace=None, cgroup_id=container.container_id,
                            processes=())
    notes: list[str] = []
    if probe is not None and probe.error:
        side = "mapped from the host side by its container ID" if host else "no host side to map it from"
        notes.append(f"{container.name}: {probe.error}; {side}")
    members = _members(pod, container, host) if host else _Members()
    table, report_notes = _check_report(container, probe.table if probe else None, members)
    notes += report_notes
    rows, row_notes = _rows(pod, container, table, members, host, probe_pids, shared)
    notes += row_notes
    if host is not None and not members.processes and (table is None or table.processes):
        notes.append(f"{container.name}: no process of this container found on the host side "
                     f"(container ID {(container.container_id or '?')[:12]})")
    if table is None and not members.processes:
        notes.append(f"{container.name}: its processes could not be mapped")
    rows.sort(key=lambda row: (row.container_pid is None, row.container_pid or 0))
    cgroup_id = next((p.cgroup_id for p in members.processes if p.cgroup_id), None) or container.container_id
    pid_ns = members.pid_ns or (table.reader_pid_ns if table else None) \
        or next((p.pid_ns for p in members.processes if p.pid_ns), None)
    first = next((p for p in members.processes if p.pid_at(members.level) == 1), None) or min(
        members.processes, key=lambda p: (p.start_ticks or 0, p.pid), default=None)
    ancestry = _ancestry(host, first) if host is not None and first is not None else ()
    return ContainerMap(container=container, pid_namespace=pid_ns, cgroup_id=cgroup_id,
                        processes=tuple(rows), notes=tuple(notes), ancestry=ancestry)


def _rows(pod: Pod, container: Container, table: ProcessTable | None, members: _Members,
          host: HostView | None, probe_pids: frozenset[int],
          shared: Iterable[RawProcess]) -> tuple[list[Process], list[str]]:
    """The rows: the probe's processes joined with the kernel's by container PID, then the kernel's
    that the probe did not see. Where both know a PID, the kernel's fields are shown."""
    level = members.level
    host_by_cpid = members.by_container_pid
    shared_all = {cpid for p in shared if (cpid := p.pid_at(level)) is not None}
    host_complete = host is not None and bool(members.processes)
    rows: list[Process] = []
    notes: list[str] = []
    seen: set[int] = set()
    gone: list[int] = []
    # The probe reads /proc inside the container: its PIDs are the container's own.
    for proc in table.processes if table else ():
        cpid = proc.pid
        if cpid in probe_pids:
            continue
        if pod.share_process_namespace and host and cpid not in host_by_cpid and cpid in shared_all:
            continue  # another container's (or pause's) process in the shared namespace
        host_proc = host_by_cpid.get(cpid)
        flags: list[str] = []
        reported: RawProcess | None = proc
        if host_proc is None and host_complete:
            flags.append("gone")
            gone.append(cpid)
        elif host_proc is not None and host_proc.cmdline != proc.cmdline and host_proc.name != proc.name:
            flags.append("mismatch")
            reported = None  # the kernel's process is shown, not the container's word for it
            notes.append(f"{container.name}: PID {cpid} runs {host_proc.cmdline!r} on the host but the "
                         f"container reported {proc.cmdline!r} (the PID was reused between the two reads, "
                         "or the report is wrong); the host's is shown")
        seen.add(cpid)
        rows.append(_row(cpid, reported, host_proc, host, level, table, flags))
    new: list[int] = []
    for cpid, host_proc in host_by_cpid.items():
        if cpid in seen:
            continue
        flags = ["new"] if table else []
        if table:
            new.append(cpid)
        rows.append(_row(cpid, None, host_proc, host, level, None, flags))
    if gone:
        notes.append(f"{container.name}: PIDs {_pids(gone)} seen in the container are gone on the host "
                     "(they exited between the probe and the host scan)")
    if new:
        notes.append(f"{container.name}: PIDs {_pids(new)} exist on the host but were not seen by the probe "
                     "(they started after it ran)")
    return rows, notes


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


def _row(cpid: int, proc: RawProcess | None, host_proc: RawProcess | None, host: HostView | None,
         level: int | None, probe_table: ProcessTable | None, flags: list[str]) -> Process:
    """One row. The kernel's fields (state, command, parent) where the host side has the process;
    the container's user names (its own /etc/passwd) where its report agrees with the kernel."""
    if cpid == 1:
        flags = ["pid1", *flags]
    user: str | None = None
    if proc is not None and probe_table is not None:
        user = _user(proc.uid, probe_table.users)
    elif host_proc is not None:
        # The host's user names need not be the container's; only uid 0 is root everywhere.
        user = _user(host_proc.uid, {0: "root"})
    ppid: int | None = proc.ppid if proc is not None else None
    if host_proc is not None and host is not None:
        # The parent's PID in the container's namespace; 0 (as ps shows) for a parent outside it.
        parent = host.table.by_pid.get(host_proc.ppid)
        ppid = (parent.pid_at(level) if parent is not None else None) or 0
    seen_by = host_proc or proc
    return Process(
        container_pid=cpid,
        node_pid=host_proc.pid_at(host.node_level) if host_proc and host else None,
        host_pid=host_proc.pid_at(host.host_level) if host_proc and host else None,
        ppid=ppid,
        user=user,
        state=seen_by.state if seen_by else None,
        command=seen_by.cmdline if seen_by else "",
        start_time=_start_time(host.table, host_proc) if host_proc and host else None,
        flags=tuple(flags),
    )
