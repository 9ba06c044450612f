"""Host readers: one pass over a /proc, giving every process with its NSpid chain and identity.

Two readers give the same ``ProcessTable``:

* ``scan_local(procfs_root, roots=...)`` reads a /proc on this machine (the Docker host), with the
  procfs root as a parameter. Missing processes (ENOENT/ESRCH: they exited mid-scan) are skipped;
  unreadable fields (EACCES: another user's ns link when not root) become ``None`` plus one note.
  Its cost follows the pod, not the host: one ``readlink`` of every ``/proc/PID/ns/pid`` (9 µs
  each), then the four files of a process only for those in a wanted PID-namespace subtree (the
  node containers' ``roots``); a host with 10,000 unrelated processes costs ~0.1 s, not ~5 s.
* ``scan_in_container(docker_client, container)`` runs ``procfs.SCAN_SCRIPT`` in the node container
  through ``docker exec`` (busybox sh + /proc only) — for Docker Desktop, a remote DOCKER_HOST, or
  ``--via docker``. Its PIDs are the node's view; the host's are not visible from there.

Nothing here knows about pods: ``pidmap whois`` and ``pidmap node`` reuse the same tables.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sys
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

from pidmap.errors import DockerError
from pidmap.model import HostView, Node, ProcessTable, RawProcess, Subject, Via
from pidmap.procfs import (
    ScanFormatError,
    cgroup_container_id,
    cgroup_pod_uid,
    is_probe_command,
    parse_cmdline,
    parse_ns_link,
    parse_scan,
    parse_stat_start_ticks,
    parse_status,
    probe_argv,
    raw_process,
)

DEFAULT_PROCFS = "/proc"

# ioctl(2) on an nsfs fd: _IO(0xb7, 0x2), linux/nsfs.h. Fails with EPERM at the reader's own root.
NS_GET_PARENT = 0xB702


# The first pass's answer for one process: its PID-namespace inode, or one of these.
_GONE = -1  # exited between the listing and the readlink
_DENIED = -2  # another user's process and we are not root (EACCES)


def _pid_namespaces(root: Path) -> dict[int, int]:
    """PID -> PID-namespace inode (or _GONE / _DENIED) for every process of ``root``: one pass
    over the directory, one readlink each, nothing else opened (the cost of the whole host)."""
    prefix = f"{root}/"
    found: dict[int, int] = {}
    readlink = os.readlink
    for name in os.listdir(root):  # plain names: cheaper than scandir's entries, 10,000 times
        if not name.isdigit():
            continue
        try:
            link = readlink(prefix + name + "/ns/pid")
        except PermissionError:
            found[int(name)] = _DENIED
            continue
        except OSError:  # ENOENT / ESRCH: exited since the listing
            continue
        # "pid:[4026531836]"; parse_ns_link's regex costs more than the readlink itself here.
        try:
            found[int(name)] = int(link[5:-1])
        except ValueError:
            found[int(name)] = _GONE
    return found


def _wanted_namespaces(root: Path, namespaces: dict[int, int], roots: list[int]) -> set[int] | None:
    """The PID namespaces of ``roots`` (host PIDs) and every namespace nested in one of them; None
    when that cannot be told (a copied /proc without nsfs: then everything is read)."""
    wanted: set[int] = set()
    for pid in roots:
        inode = namespaces.get(pid, _GONE)
        if inode == _DENIED:
            return None  # not root: the node's own namespace is unknown, so is what nests in it
        if inode >= 0:
            wanted.add(inode)
    if not wanted:
        return wanted
    # One process per namespace tells the namespace's ancestry (NS_GET_PARENT on its nsfs fd); if
    # it exited meanwhile (a brief `sleep`), the next one of the same namespace is asked.
    members: dict[int, list[int]] = {}
    for pid, inode in namespaces.items():
        if inode >= 0 and inode not in wanted:
            members.setdefault(inode, []).append(pid)
    result = set(wanted)
    for inode, pids in members.items():
        for pid in sorted(pids):  # the lowest PID: most often the namespace's long-lived init
            ancestry = pid_ns_ancestry(pid, str(root))
            if ancestry is None:
                if os.path.exists(f"{root}/{pid}"):
                    return None  # not an nsfs link (a copied /proc): the tree cannot be told
                continue  # exited: ask the next one
            if ancestry[0] != inode or wanted.intersection(ancestry[1:]):
                # (A PID reused between the two reads leaves the namespace's place unknown: read it.)
                result.add(inode)
            break
    return result


def _cgroup_paths(root: Path, pids: Collection[int]) -> set[str]:
    """Every cgroup path (all hierarchies) of the ``pids``; '/' is left out (it holds everything)."""
    paths: set[str] = set()
    for pid in pids:
        try:
            text = (root / str(pid) / "cgroup").read_text()
        except OSError:
            continue
        paths.update(path for line in text.splitlines()
                     if len(parts := line.split(":", 2)) == 3 and (path := parts[2].strip()) not in ("", "/"))
    return paths


def _under(cgroup_text: str, subtrees: set[str]) -> bool:
    for line in cgroup_text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        path = parts[2].strip()
        if any(path == top or path.startswith(top + "/") for top in subtrees):
            return True
    return False


def read_process(root: Path, pid: int) -> tuple[RawProcess | None, bool]:
    """One process from ``root``/PID; (None, _) when it vanished. The flag: ns link was denied."""
    proc, denied, _ = _read_process(root, pid)
    return proc, denied


def _read_process(root: Path, pid: int, pid_ns: int | None = None) -> tuple[RawProcess | None, bool, str]:
    """``pid_ns``: the inode already read by the first pass (not read again)."""
    base = root / str(pid)
    try:
        status = parse_status((base / "status").read_text())
        if status is None:
            return None, False, ""
        cmdline = parse_cmdline((base / "cmdline").read_bytes())
        cgroup_text = (base / "cgroup").read_text()
        cgroup_id = cgroup_container_id(cgroup_text)
        start_ticks = parse_stat_start_ticks((base / "stat").read_text())
    except (FileNotFoundError, ProcessLookupError):
        return None, False, ""
    except PermissionError:
        return None, True, ""
    denied = False
    if pid_ns is None:
        try:
            pid_ns = parse_ns_link(os.readlink(base / "ns" / "pid"))
        except (FileNotFoundError, ProcessLookupError):
            return None, False, ""
        except PermissionError:
            denied = True  # another user's process and we are not root: NSpid still tells the PIDs
    return raw_process(pid, status, cmdline, pid_ns=pid_ns, cgroup_id=cgroup_id,
                       start_ticks=start_ticks, pod_uid=cgroup_pod_uid(cgroup_text)), denied, cgroup_text


def read_subject(pid: int, procfs_root: str = DEFAULT_PROCFS, *, ancestry: bool = True) -> Subject | None:
    """The process ``pidmap whois`` asks about, with its whole cgroup file and namespace ancestry
    (unless ``ancestry`` is False); None when no such process exists (or it exited)."""
    root = Path(procfs_root)
    proc, _, cgroup_text = _read_process(root, pid)
    if proc is None:
        return None
    return Subject(process=proc, cgroup_text=cgroup_text,
                   ns_ancestry=pid_ns_ancestry(pid, procfs_root) if ancestry else None)


def pid_ns_ancestry(pid: int, procfs_root: str = DEFAULT_PROCFS) -> tuple[int, ...] | None:
    """Inodes of the process's PID namespace and each of its parents; None when unreadable."""
    try:
        fd = os.open(Path(procfs_root) / str(pid) / "ns" / "pid", os.O_RDONLY)
    except OSError:
        return None
    inodes = [os.fstat(fd).st_ino]
    try:
        while True:
            try:
                parent = fcntl.ioctl(fd, NS_GET_PARENT)
            except OSError:
                break  # EPERM: the reader's own namespace (or one outside it) is the top
            os.close(fd)
            fd = parent
            inodes.append(os.fstat(fd).st_ino)
    finally:
        os.close(fd)
    return tuple(inodes)


def _boot_time(root: Path) -> float | None:
    """When this kernel booted (``btime`` of /proc/stat): start ticks become times, and two tables
    with one boot time were read on one kernel. psutil answers for this machine's own /proc (its
    ``PROCFS_PATH`` seam); a recorded or node-side /proc is read as text."""
    import psutil

    if str(root) == psutil.PROCFS_PATH:
        try:
            return float(psutil.boot_time())
        except (OSError, RuntimeError):
            return None
    try:
        for line in (root / "stat").read_text().splitlines():
            if line.startswith("btime "):
                return float(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


def scan_local(procfs_root: str = DEFAULT_PROCFS, roots: Collection[int] | None = None) -> ProcessTable:
    """The processes visible in ``procfs_root``, the scanner itself excluded.

    ``roots``: host PIDs (node containers' inits); only processes in the PID namespace of one of
    them, or in a namespace nested in it, are read. None: every process. A process whose
    namespace cannot be read (not root) is read whole, since only its cgroup can place it.
    """
    root = Path(procfs_root)
    namespaces = _pid_namespaces(root)
    wanted = None if roots is None else _wanted_namespaces(root, namespaces, list(roots))
    processes: list[RawProcess] = []
    denied = 0
    # A process whose namespace link is denied (as root: one outside this user namespace) is
    # kept only when its cgroup lies under a root's: the kernel's other record of where it runs.
    subtrees = None if wanted is None else _cgroup_paths(root, roots or ())
    for pid in sorted(namespaces if wanted is None else
                      (pid for pid, inode in namespaces.items() if inode in wanted or inode == _DENIED)):
        inode = namespaces[pid]
        if inode == _GONE:
            continue
        proc, was_denied, cgroup_text = _read_process(root, pid, None if inode == _DENIED else inode)
        if proc is None or is_probe_command(proc.cmdline):
            continue
        if inode == _DENIED and subtrees is not None and not _under(cgroup_text, subtrees):
            continue
        denied += was_denied
        processes.append(proc)
    notes: list[str] = []
    # As root a handful of denials are processes outside this user namespace: not worth a note.
    if denied and os.geteuid() != 0:
        notes.append(f"not root: the PID-namespace inode of {denied} host processes is unreadable "
                     "(matched by cgroup container ID instead)")
    if not (root / "1").exists():
        # PID 1 exists in every PID namespace: unseen, /proc was mounted with hidepid=1/2 (or
        # subset=pid) and hides other users' processes from this one.
        notes.append(f"{procfs_root} hides other users' processes (mounted with hidepid): "
                     "only this user's are seen; run as root to map the containers'")
    reader_ns: int | None = None
    with contextlib.suppress(OSError):
        reader_ns = parse_ns_link(os.readlink(root / "self" / "ns" / "pid"))
    own = frozenset({os.getpid()}) if str(root) == DEFAULT_PROCFS else frozenset()
    return ProcessTable(
        processes=tuple(proc for proc in processes if proc.pid not in own),
        reader_pid_ns=reader_ns, own_pids=own, boot_time=_boot_time(root),
        clock_ticks=os.sysconf("SC_CLK_TCK"), notes=tuple(notes),
    )


def sees_container(container_id: str, host_pid: int | None, procfs_root: str = DEFAULT_PROCFS) -> bool:
    """True when ``host_pid`` in this /proc is the container's init (same machine, same kernel).

    On Docker Desktop or a remote engine, State.Pid names a process of another machine: the PID may
    not exist here, or belong to something else, so the cgroup must carry the container's id.
    """
    if not host_pid:
        return False
    try:
        cgroup = (Path(procfs_root) / str(host_pid) / "cgroup").read_text()
    except OSError:
        return False
    return container_id in cgroup


def scan_in_container(client: Any, container_id: str, *, timeout: float = 30.0) -> ProcessTable:
    """Run the scan inside a (node) container with ``docker exec``; PIDs are that container's view."""
    from pidmap.sources.nodes import docker_errors, exec_output

    with docker_errors("docker exec into the node (the node-side reader)", container=container_id,
                       timeout=timeout):
        exit_code, stdout, stderr = exec_output(
            client, container_id, probe_argv("full"), timeout=timeout)
    text = stdout.decode("utf-8", "replace")
    try:
        table = parse_scan(text)
    except ScanFormatError as err:
        detail = stderr.decode("utf-8", "replace").strip().splitlines()
        raise DockerError(
            f"the node-side reader failed in the node container (exit {exit_code}): "
            f"{detail[-1] if detail else err}",
            "the node needs /bin/sh and /proc; try --via local on the Docker host",
        ) from err
    return table


def node_level(table: ProcessTable, node: Node) -> int | None:
    """Index of the node's PIDs in the NSpid lines of ``table`` (read on the Docker host): the
    depth of the node's init; None when the init is not in the table (stopped, or elsewhere)."""
    init = table.by_pid.get(node.host_pid or -1)
    return None if init is None else len(init.nspid) - 1


def not_visible(what: str) -> DockerError:
    return DockerError(f"the processes of {what} are not visible in this machine's /proc",
                       "Docker runs elsewhere (Docker Desktop, remote DOCKER_HOST): use --via docker")


def host_view(client: Any, node: Node | None, via: Via, *, timeout: float,
              local: Callable[[], ProcessTable] | None = None) -> HostView | None:
    """The outer side of the chain for the pods of ``node``: this machine's /proc when the node's
    processes are in it (``via`` auto or local), else a scan run inside the node with docker exec.

    ``local`` gives the host table (default: the processes of this node's PID-namespace subtree);
    callers mapping several nodes pass one that scans once for all of them. None for a stopped
    node (nothing runs in it).
    """
    if node is None:
        # No Docker access: the host's /proc still shows host PIDs and NSpid (by cgroup id), but
        # not where the node sits in the chain.
        if via == "docker" or not sys.platform.startswith("linux"):
            raise DockerError("cannot read the node's processes without access to Docker",
                              "run as root or as a member of the docker group")
        return HostView(table=(local or scan_local)(), via="local", node_level=None, host_level=0)
    if not node.running:
        return None
    visible = via != "docker" and sys.platform.startswith("linux") and sees_container(
        node.container_id, node.host_pid)
    if via == "local" and not visible:
        raise not_visible(f"node {node.name}")
    if not visible:
        table = scan_in_container(client, node.container_id, timeout=timeout)
        why = "requested with --via docker" if via == "docker" else \
            "the node's processes are not visible in this machine's /proc"
        return HostView(table=table, via="docker", node_level=0, host_level=None,
                        notes=(f"read inside the node with docker exec ({why}): host PIDs cannot be seen",))
    table = local() if local is not None else scan_local(roots=[node.host_pid] if node.host_pid else None)
    level = node_level(table, node)
    if level is None:
        return HostView(table=table, via="local", node_level=None, host_level=0,
                        notes=(f"the node's init (host PID {node.host_pid}) exited during the scan",))
    return HostView(table=table, via="local", node_level=level, host_level=0)


# The initial PID namespace's inode is a kernel constant (PROC_PID_INIT_INO, include/linux/proc_ns.h):
# a node whose processes live in it is a machine of its own, not a container.
INITIAL_PID_NS = 0xEFFFFFFC


def agent_view(table: ProcessTable, local: Callable[[], ProcessTable] | None = scan_local,
               notes: tuple[str, ...] = ()) -> HostView:
    """The outer side of the chain from the node agent's scan (``table``: node PIDs at level 0).

    A node in the initial PID namespace is the host itself (HOST PID = NODE PID). Otherwise, when
    this machine runs the same kernel (same boot time) and its /proc shows processes of the node's PID
    namespace (a kind/minikube/k3d node here), this machine's table is used instead, with the node
    found by that namespace: it gives host PIDs as well. Else only node PIDs are known. ``notes``
    (the agent's own, such as a capability it was refused) go with the agent's table only.
    """
    node_ns = table.reader_pid_ns
    if node_ns == INITIAL_PID_NS:
        return HostView(table=table, via="agent", node_level=0, host_level=0,
                        notes=(*notes, "the node is a machine of its own (its processes are in the "
                               "kernel's initial PID namespace): HOST PID = NODE PID"))
    if local is not None and node_ns is not None and sys.platform.startswith("linux"):
        here = local()
        members = here.by_pid_ns.get(node_ns, ())
        same_kernel = here.boot_time is not None and table.boot_time is not None and \
            abs(here.boot_time - table.boot_time) <= 1
        if members and same_kernel:
            return HostView(table=here, via="agent", node_level=min(len(p.nspid) for p in members) - 1,
                            host_level=0,
                            notes=("node PID namespace found by the agent; node and host PIDs from this "
                                   "machine's /proc, which shows it",))
    return HostView(table=table, via="agent", node_level=0, host_level=None,
                    notes=(*notes, "read on the node by the agent pod: host PIDs cannot be seen from here",))
