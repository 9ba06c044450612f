"""The host side of the cgroups that runc, in a node, creates below the node container's own.

runc places each pod container where the kubelet stand-in asks (kubelet.pod_cgroup names the paths);
``sandbox down`` uses this module to kill whatever is left in those subtrees and remove them:
``<node>`` is the node container's path in each hierarchy, read from ``/proc/NODE_PID/cgroup``
(every cgroup v1 hierarchy it is in, plus the v2 (``0::``) one when it is not the root).
"""

from __future__ import annotations

import contextlib
import errno
import os
import time
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")
CGROUP_ROOT = "/sys/fs/cgroup"


@dataclass(frozen=True)
class Hierarchy:
    """One mounted cgroup hierarchy and the node container's place in it."""

    mount: Path  # e.g. /sys/fs/cgroup/pids
    node_path: str  # e.g. /docker/<node container id>
    cpuset: bool


def _mounts(proc: Path = PROC) -> list[tuple[Path, str, set[str]]]:
    found: list[tuple[Path, str, set[str]]] = []
    for line in (proc / "self" / "mounts").read_text().splitlines():
        fields = line.split()
        if len(fields) >= 4 and fields[2] in ("cgroup", "cgroup2"):
            found.append((Path(fields[1]), fields[2], set(fields[3].split(","))))
    return found


def node_hierarchies(node_pid: int, proc: Path = PROC) -> list[Hierarchy]:
    """Every hierarchy the node process is in, with its path there (root v2 skipped: not the node's)."""
    mounts = _mounts(proc)
    result: list[Hierarchy] = []
    seen: set[Path] = set()
    for line in (proc / str(node_pid) / "cgroup").read_text().splitlines():
        hierarchy_id, controllers, path = line.split(":", 2)
        mount: Path | None = None
        if hierarchy_id == "0" and controllers == "":
            if path == "/":
                continue
            mount = next((m for m, kind, _ in mounts if kind == "cgroup2"), None)
        else:
            wanted = set(controllers.split(","))
            mount = next((m for m, kind, opts in mounts if kind == "cgroup" and wanted <= opts), None)
        if mount is None or mount in seen:
            continue
        seen.add(mount)
        result.append(Hierarchy(mount=mount, node_path=path, cpuset="cpuset" in controllers.split(",")))
    return result


def pids_in(directory: Path) -> set[int]:
    """Host PIDs of every process in ``directory`` and the cgroups below it."""
    pids: set[int] = set()
    if not directory.is_dir():
        return pids
    for procs in directory.rglob("cgroup.procs"):
        with contextlib.suppress(OSError):
            pids.update(int(pid) for pid in procs.read_text().split())
    return pids


def remove_tree(directory: Path, timeout: float = 5.0) -> bool:
    """rmdir ``directory`` and its sub-cgroups bottom-up, retrying while their processes exit."""
    if not directory.is_dir():
        return True
    deadline = time.monotonic() + timeout
    while True:
        leftovers = False
        subdirs = sorted((p for p in directory.rglob("*") if p.is_dir()), key=lambda p: len(p.parts),
                         reverse=True)
        for path in [*subdirs, directory]:
            try:
                path.rmdir()
            except FileNotFoundError:
                pass
            except OSError as err:
                if err.errno not in (errno.EBUSY, errno.ENOTEMPTY):
                    raise
                leftovers = True
        if not leftovers or time.monotonic() > deadline:
            return not leftovers
        time.sleep(0.1)


def kill_all(directory: Path, sig: int) -> set[int]:
    """Send ``sig`` to every process in the cgroup tree; return the PIDs signalled."""
    pids = pids_in(directory)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
    return pids
