"""Ground truth read straight from the kernel's /proc, independent of pidmap's own parsers.

Every test that checks a PID, a PID chain or a cgroup against reality reads it through here, so
that "what the kernel says" is written once. Processes that exit between listing and reading are
skipped, as they are gone by the time anything could be compared with them.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

PROC = Path("/proc")
CGROUP_MOUNT = Path("/sys/fs/cgroup")
# On cgroup v1 the hierarchy whose line tells membership: runc and Docker place every process in
# each v1 hierarchy, and ``pids`` is mounted wherever containers run (the sandbox uses it too).
V1_CONTROLLER = "pids"


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


@functools.cache
def cgroup_version(mounts: str = "/proc/self/mounts") -> int:
    """2 when ``/sys/fs/cgroup`` is the unified hierarchy (``cgroup2``, what most machines run), 1 when
    it holds v1 hierarchies (a tmpfs of ``cgroup`` mounts, with or without a hybrid ``unified``)."""
    kind = None
    for line in Path(mounts).read_text().splitlines():
        fields = line.split()
        if len(fields) >= 3 and fields[1] == str(CGROUP_MOUNT):
            kind = fields[2]  # the last mount on the path is the one seen
    return 2 if kind == "cgroup2" else 1


def cgroup_path(text: str, version: int | None = None) -> str | None:
    """The cgroup path in the text of a /proc/PID/cgroup: the ``0::`` line on cgroup v2, the line of
    the ``V1_CONTROLLER`` hierarchy on v1 (a hybrid machine's ``0::`` line is not the one that
    counts there). None when the text has no such line."""
    version = cgroup_version() if version is None else version
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        hierarchy, controllers, path = parts
        if version == 2 and hierarchy == "0" and controllers == "":
            return path
        if version == 1 and V1_CONTROLLER in controllers.split(","):
            return path
    return None


def cgroup_dir(path: str, version: int | None = None, mount: Path = CGROUP_MOUNT) -> Path:
    """The directory of a cgroup path (as ``cgroup_path`` gives it) in the mounted hierarchy."""
    version = cgroup_version() if version is None else version
    return (mount if version == 2 else mount / V1_CONTROLLER) / path.lstrip("/")


def cgroup_dirs(fragment: str, version: int | None = None, mount: Path = CGROUP_MOUNT) -> list[Path]:
    """Cgroup directories (of the hierarchy ``cgroup_path`` reads) whose name carries ``fragment``
    or, for a pod UID, its systemd form (dashes as underscores)."""
    names = {fragment, fragment.replace("-", "_")}
    top = cgroup_dir("/", version, mount)
    found = []
    for base, dirs, _ in os.walk(top):
        found += [Path(base) / d for d in dirs if any(n in d for n in names)]
    return sorted(found)


def pids_in_cgroup(fragment: str, version: int | None = None) -> list[int]:
    """Host PIDs whose cgroup path (``cgroup_path``: v2's ``0::`` line or v1's ``pids`` line)
    carries ``fragment`` (a container ID, a pod UID, a node ID)."""
    return sorted(pid for pid, text in cgroups().items()
                  if fragment in (cgroup_path(text, version) or ""))


def cmdlines() -> dict[int, bytes]:
    """Host PID -> its raw /proc/PID/cmdline (NUL-separated), for every process still there."""
    found = {}
    for entry in PROC.iterdir():
        if entry.name.isdigit():
            try:
                found[int(entry.name)] = (entry / "cmdline").read_bytes()
            except OSError:
                continue  # gone meanwhile
    return found


def pids_running(*argv: str) -> list[int]:
    """Host PIDs whose command line (/proc/PID/cmdline) begins with ``argv``, word for word."""
    wanted = [word.encode() for word in argv]
    return sorted(pid for pid, raw in cmdlines().items() if raw.split(b"\0")[:len(wanted)] == wanted)


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
