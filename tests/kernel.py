"""Ground truth read straight from the kernel's /proc, independent of pidmap's own parsers.

Every test that checks a PID, a PID chain or a cgroup against reality reads it through here, so
that "what the kernel says" is written once. Processes that exit between listing and reading are
skipped, as they are gone by the time anything could be compared with them.
"""

from __future__ import annotations

from pathlib import Path

PROC = Path("/proc")


def nspid(pid: int) -> list[int]:
    """The NSpid line of /proc/PID/status: the PID in each namespace, the reader's first."""
    for line in (PROC / str(pid) / "status").read_text().splitlines():
        if line.startswith("NSpid:"):
            return [int(x) for x in line.split()[1:]]
    raise AssertionError(f"no NSpid line for PID {pid}")


def cgroups() -> dict[int, str]:
    """host PID → the text of its /proc/PID/cgroup, for every process alive during the pass."""
    found: dict[int, str] = {}
    for entry in PROC.iterdir():
        if entry.name.isdigit():
            try:
                found[int(entry.name)] = (entry / "cgroup").read_text()
            except OSError:
                continue
    return found


def pids_in_cgroup(fragment: str) -> list[int]:
    """Host PIDs whose cgroup path carries ``fragment`` (a container ID, a pod UID, a node ID)."""
    return sorted(pid for pid, text in cgroups().items() if fragment in text)
