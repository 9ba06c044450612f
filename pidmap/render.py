"""Pure: ``PodMap`` → the table and wide table, and the document JSON and YAML are written from.

Tables are made of ``pidmap.wording`` cells (escaped: text from containers never reaches the
terminal raw); the document keeps every text exact. ``pidmap.output`` picks among these and the
pictures (``pidmap.picture``); this module and that one do not know each other.
"""

from __future__ import annotations

from typing import Any

from tabulate import tabulate

from pidmap.model import ContainerMap, PodMap, Process
from pidmap.wording import MISSING, cell, escape, short, state_text

COMMAND_WIDTH = 120


def _process_doc(proc: Process) -> dict[str, Any]:
    return {
        "container_pid": proc.container_pid,
        "node_pid": proc.node_pid,
        "host_pid": proc.host_pid,
        "ppid": proc.ppid,
        "user": proc.user,
        "state": proc.state,
        "command": proc.command,
        "start_time": proc.start_time,
        "flags": list(proc.flags),
    }


def _container_doc(cmap: ContainerMap) -> dict[str, Any]:
    c = cmap.container
    return {
        "name": c.name,
        "type": c.type,
        "container_id": c.container_id,
        "state": c.state,
        "reason": c.reason,
        "exit_code": c.exit_code,
        "restart_count": c.restart_count,
        "pid_namespace": cmap.pid_namespace,
        "cgroup_id": cmap.cgroup_id,
        "image": c.image,
        "processes": [_process_doc(p) for p in cmap.processes],
        # PID 1's parents in the node, nearest first: the runtime that runs the container.
        "ancestry": [_process_doc(p) for p in cmap.ancestry],
        "notes": list(cmap.notes),
    }


def to_document(result: PodMap) -> dict[str, Any]:
    """The JSON/YAML document; its keys are pinned by tests/unit/test_contract.py."""
    node = result.node
    notes = list(result.notes)
    for cmap in result.containers:
        notes.extend(cmap.notes)
    return {
        "namespace": result.pod.namespace,
        "pod": result.pod.name,
        "phase": result.pod.phase,
        "node": {
            "name": node.name if node else result.pod.node_name,
            "provider": node.provider if node else None,
            "container_id": (node.container_id or None) if node else None,  # none: seen by the agent
            "host_pid": node.host_pid if node else None,
        },
        "via": result.via,
        # shareProcessNamespace: the pause process, PID 1 of the pod's namespace (else null).
        "sandbox": _process_doc(result.sandbox) if result.sandbox is not None else None,
        "containers": [_container_doc(c) for c in result.containers],
        "notes": notes,
    }


def _pid1(proc: Process) -> str:
    # PID 1 stands out: it is the container's init, the one process whose exit ends the container.
    return f"{proc.container_pid}*" if "pid1" in proc.flags else cell(proc.container_pid)


def _process_table(processes: tuple[Process, ...], wide: bool) -> str:
    headers = ["CONTAINER PID", "NODE PID", "HOST PID", "PPID", "USER", "STATE"]
    if wide:
        headers += ["START"]
    headers += ["FLAGS", "COMMAND"]
    rows = []
    for proc in processes:
        row = [_pid1(proc), cell(proc.node_pid), cell(proc.host_pid), cell(proc.ppid), cell(proc.user),
               cell(proc.state)]
        if wide:
            row.append(cell(proc.start_time))
        flags = ",".join(f for f in proc.flags if f != "pid1")
        row += [flags, escape(proc.command) if wide else short(proc.command, COMMAND_WIDTH)]
        rows.append(row)
    return tabulate(rows, headers=headers, tablefmt="plain", disable_numparse=True)


def render_text(result: PodMap, wide: bool = False) -> str:
    pod, node = result.pod, result.node
    lines = [f"POD {cell(pod.namespace)}/{cell(pod.name)}   phase: {cell(pod.phase)}"]
    if node is not None:
        container = cell(node.container_id[:12]) or MISSING  # none: a node seen through the agent
        lines.append(f"NODE {cell(node.name)}   provider: {node.provider}   container: {container}   "
                     f"host PID: {cell(node.host_pid)}" + ("" if node.running else "   (stopped)"))
    else:
        lines.append(f"NODE {cell(pod.node_name or '(not scheduled)')}   "
                     "provider: -   container: -   host PID: -")
    if result.via:
        lines.append(f"VIA {result.via}")
    if result.sandbox is not None:
        # The pause process is PID 1 of a shared namespace yet in no container: its own block.
        lines.append("\nPOD SANDBOX (pause: PID 1 of the pod's shared PID namespace, in no container)")
        lines.append(_process_table((result.sandbox,), wide))
    for cmap in result.containers:
        c = cmap.container
        cid = cell((c.container_id or MISSING)[: 64 if wide else 12])
        head = (f"\nCONTAINER {cell(c.name)} ({c.type})   state: {state_text(c)}   "
                f"restarts: {c.restart_count}   id: {cid}")
        if wide:
            head += f"   pid-ns: {cell(cmap.pid_namespace)}"
            # Only worth a column when the cgroup says something the status did not.
            if cmap.cgroup_id != c.container_id:
                head += f"   cgroup-id: {cell(cmap.cgroup_id)}"
        lines.append(head)
        if cmap.processes:
            lines.append(_process_table(cmap.processes, wide))
        if wide and cmap.ancestry:
            lines.append("RUNS UNDER (PID 1's parents in the node, nearest first)")
            lines.append(_process_table(cmap.ancestry, wide))
    if result.sandbox is not None or any("pid1" in p.flags for cmap in result.containers
                                         for p in cmap.processes):
        lines.append("\n* = PID 1 of the container's PID namespace")
    notes = [*result.notes, *(n for cmap in result.containers for n in cmap.notes)]
    if notes:
        lines.append("\nNOTES")
        lines.extend(f"  - {escape(note)}" for note in notes)
    return "\n".join(lines)

