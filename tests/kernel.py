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


def start_ticks(pid: int) -> int:
    """Field 22 of /proc/PID/stat: when the process started, in clock ticks after boot (with the
    PID, what tells one process from a later one that reused its PID)."""
    text = (PROC / str(pid) / "stat").read_text()
    return int(text[text.rindex(")") + 2:].split()[19])


def processes_in_cgroup(fragment: str) -> dict[int, int]:
    """Host PID → start ticks of every process whose cgroup path carries ``fragment``; those that
    exit during the pass are left out (the kernel says they are gone)."""
    found: dict[int, int] = {}
    for pid in pids_in_cgroup(fragment):
        try:
            found[pid] = start_ticks(pid)
        except (FileNotFoundError, ProcessLookupError):
            continue
    return found


def container_inits(fragment: str) -> list[int]:
    """Host PIDs of the processes in cgroups carrying ``fragment`` whose NSpid ends in 1 (a PID
    namespace's init). The others may be brief (a loop's wget, sed, sleep): one that exits between
    the cgroup listing and the read is skipped, since the kernel says it is gone."""
    found = []
    for pid in pids_in_cgroup(fragment):
        try:
            chain = nspid(pid)
        except (FileNotFoundError, ProcessLookupError):
            continue
        if chain[-1] == 1:
            found.append(pid)
    return found


def container_init(container_id: str) -> int:
    """The host PID of the container's one PID 1 (the init of a running container does not exit)."""
    inits = container_inits(container_id)
    assert len(inits) == 1, (container_id[:12], inits)
    return inits[0]
