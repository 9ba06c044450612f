"""Pure parsers of /proc text, and the fixed shell script that prints /proc where Python cannot run.

Nothing here opens a file: callers (``pidmap.sources.hostprocs``, ``pidmap.sources.kube``) read
the text — locally from a procfs root, or as the output of ``SCAN_SCRIPT`` run through ``kubectl
exec`` / ``docker exec`` — and these functions turn it into ``RawProcess`` records.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pidmap.model import ProcessTable, RawProcess

# The probe's $0: it names the probe in `ps` output. The host-side scan leaves out processes whose
# whole command line is the probe's (``is_probe_command``), so that a probe still running, of
# another pidmap run, never shows up as a process of the container it inspects.
PROBE_MARKER = "pidmap-probe"

# Needs only a POSIX shell and /proc (busybox ash, dash, bash): no ps, no awk. `readlink`, `tr`
# and `cat` are optional (missing ones only blank a field). Every external command it forks is a
# child of "$$", so the parser can drop the probe's own processes by PID and PPid. $1 is "full"
# (also per-process ns link, cgroup and stat: the node-side reader) or "probe" (in a container).
# The script is a constant: no user-supplied text is ever placed in it.
SCAN_SCRIPT = r"""# pidmap-probe
p() { printf '%s\n' "$1"; }
p "pidmap-probe 1"
p "self $$"
p "ns $(readlink /proc/$$/ns/pid 2>/dev/null)"
{ while IFS= read -r l; do case $l in btime*) p "B $l";; esac; done < /proc/stat; } 2>/dev/null
{ while IFS=: read -r n x u r; do p "U $u $n"; done < /etc/passwd; } 2>/dev/null
for d in /proc/[0-9]*; do
  {
    p "P ${d#/proc/}"
    while IFS= read -r l; do
      case $l in Name:*|State:*|PPid:*|Uid:*|NSpid:*) p "S $l";; esac
    done < "$d/status"
    if [ "$1" = full ]; then
      p "N $(readlink "$d/ns/pid")"
      while IFS= read -r l; do p "G $l"; done < "$d/cgroup"
      read -r l < "$d/stat" && p "T $l"
    fi
    printf 'C '; tr '\000\n' '  ' < "$d/cmdline"; printf '\n'
  } 2>/dev/null
done
p end
"""

def probe_argv(mode: str) -> list[str]:
    """The probe's command line: ``mode`` is "probe" (in a container) or "full" (in a node)."""
    return ["sh", "-c", SCAN_SCRIPT, PROBE_MARKER, mode]


# The probe's own command line as /proc shows it (NULs and, in the probe's output, newlines as
# spaces), whitespace folded. Only a process with exactly this command line is taken for a probe
# and left out: a process that merely mentions the marker (or names itself after it) is shown, or
# a container could hide a process from pidmap by putting "pidmap-probe" in its argv.
_PROBE_COMMANDS = frozenset(" ".join(" ".join(probe_argv(mode)).split()) for mode in ("probe", "full"))


def is_probe_command(cmdline: str) -> bool:
    """True for the command line of a pidmap probe (``probe_argv``), whatever its whitespace."""
    return " ".join(cmdline.split()) in _PROBE_COMMANDS


# A 64-hex path component, after a runtime prefix (docker-, crio-, cri-containerd-) or not, with a
# suffix (.scope, or any other .word) or not, blanks around it tolerated. CRI-O's conmon monitor
# runs in crio-conmon-<id>.scope: it carries the container's ID but is not the container.
_CONTAINER_ID = re.compile(r"(?:^|[/\-:])\s*(?<!conmon-)([0-9a-f]{64})(?:\.[^/\s]*)?\s*(?=/|$)")
_POD_UID = re.compile(r"pod([0-9a-f]{8}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{12})")
_NS_LINK = re.compile(r"^\w+:\[(\d+)\]$")


@dataclass(frozen=True)
class StatusFields:
    """The lines of /proc/PID/status pidmap needs."""

    name: str
    state: str  # the one-letter code: R S D Z T t X I
    ppid: int
    uid: int | None
    nspid: tuple[int, ...]


def parse_status(text: str) -> StatusFields | None:
    """Parse /proc/PID/status; None when the text is cut short (the process exited mid-read)."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields[key.strip()] = value.strip()
    if "Name" not in fields or "PPid" not in fields:
        return None
    try:
        ppid = int(fields["PPid"])
        uid = int(fields["Uid"].split()[0]) if fields.get("Uid") else None
        # NSpid exists since Linux 4.1; without it the only PID known is the reader's own (Pid:).
        nspid_text = fields.get("NSpid") or fields.get("Pid", "")
        nspid = tuple(int(part) for part in nspid_text.split())
    except ValueError:
        return None
    if not nspid:
        return None
    state = fields.get("State", "?").split()[0] if fields.get("State") else "?"
    return StatusFields(name=fields["Name"], state=state, ppid=ppid, uid=uid, nspid=nspid)


def parse_ns_link(target: str) -> int | None:
    """Inode of a namespace link target such as ``pid:[4026531836]``."""
    match = _NS_LINK.match(target.strip())
    return int(match.group(1)) if match else None


def cgroup_container_id(text: str) -> str | None:
    """The innermost 64-hex container id in /proc/PID/cgroup, or None.

    Handles cgroupfs (``/docker/<node>/kubepods/besteffort/pod<uid>/<id>``), systemd
    (``.../cri-containerd-<id>.scope``, ``docker-<id>.scope``, ``crio-<id>.scope``) and cgroup v2
    (``0::/...``); an id followed by another ``.suffix`` or padded with blanks too. CRI-O's
    ``crio-conmon-<id>.scope`` is the container's monitor, not the container: no id.

    Checked against the test vectors of OpenTelemetry, Datadog, Elastic APM, NeuVector, kepler, OBI
    and traceloop (``../shared/data/cgroup_vectors.json``, tests/unit/test_cgroup_vectors.py), with
    these deliberate differences, each named there:

    * **the innermost id wins**: a pod process's path carries the node's id first (kind: the node
      is ``docker-<node>.scope``) and its own last, and the last is the container it runs in —
      tracers that take the first id name the node instead;
    * **a sub-cgroup of a container is that container** (``/docker/<id>/not_hex``): processes a
      container moves into a child cgroup of its own stay in it;
    * **any runtime's 64-hex leaf is a container**, a plain ``/docker/<id>`` too, not only the
      layouts one vendor's patterns list (an ECS-only or a kubepods-only detector sees none);
    * **hierarchies that disagree** (cgroup v1 lets a process sit in different cgroups per
      controller): the line with the most ids nested wins, the first such line on a tie — not the
      last line of the file.
    """
    best: str | None = None
    best_depth = -1
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        path = parts[2].strip()
        ids = _CONTAINER_ID.findall(path)
        # Hierarchies can disagree (v1: a process may be moved in one controller only); the line
        # with the most ids nested is the most specific one.
        if ids and len(ids) > best_depth:
            best, best_depth = ids[-1], len(ids)
    return best


def cgroup_pod_uid(text: str) -> str | None:
    """The pod UID in a kubepods cgroup path: ``pod<uid>`` (cgroupfs) or ``-pod<uid_with_underscores>.slice``
    (systemd), always returned with dashes."""
    match = _POD_UID.search(text)
    return match.group(1).replace("_", "-") if match else None


def parse_stat_start_ticks(text: str) -> int | None:
    """Field 22 (starttime) of /proc/PID/stat; comm (field 2) may hold spaces and parentheses."""
    _, sep, rest = text.rpartition(")")
    if not sep:
        return None
    fields = rest.split()
    # rest starts at field 3 (state): starttime (22) is rest[19].
    try:
        return int(fields[19])
    except (IndexError, ValueError):
        return None


def parse_cmdline(raw: bytes) -> str:
    """/proc/PID/cmdline is NUL-separated (and NUL-terminated); shown space-separated."""
    return raw.replace(b"\0", b" ").decode("utf-8", "replace").strip()


def raw_process(pid: int, status: StatusFields, cmdline: str, *, pid_ns: int | None = None,
                cgroup_id: str | None = None, start_ticks: int | None = None,
                pod_uid: str | None = None) -> RawProcess:
    # Kernel threads and zombies have an empty cmdline; ps shows their name in brackets.
    return RawProcess(pid=pid, nspid=status.nspid, ppid=status.ppid, uid=status.uid, state=status.state,
                      name=status.name, cmdline=cmdline or f"[{status.name}]", pid_ns=pid_ns,
                      cgroup_id=cgroup_id, start_ticks=start_ticks, pod_uid=pod_uid)


def _is_number(text: str) -> bool:
    # ASCII digits only: str.isdigit() also takes '²' or '٣', which int() refuses or reads.
    return text.isascii() and text.isdigit()


class ScanFormatError(ValueError):
    """The text is not the output of SCAN_SCRIPT (the shell failed, or something else answered)."""


def parse_scan(text: str) -> ProcessTable:
    """Parse the output of ``SCAN_SCRIPT``, dropping the scan's own processes."""
    lines = text.splitlines()
    if not lines or not lines[0].startswith("pidmap-probe "):
        raise ScanFormatError("no probe header in the output")
    if lines[-1] != "end":
        raise ScanFormatError("the probe output is cut short")
    self_pid: int | None = None
    reader_ns: int | None = None
    boot_time: float | None = None
    users: dict[int, str] = {}
    entries: list[dict[str, list[str]]] = []
    current: dict[str, list[str]] | None = None
    for line in lines[1:-1]:
        tag, _, value = line.partition(" ")
        if tag == "P":
            current = {"P": [value]}
            entries.append(current)
        elif current is not None and tag in ("S", "N", "G", "T", "C"):
            current.setdefault(tag, []).append(value)
        elif tag == "self" and _is_number(value):
            self_pid = int(value)
        elif tag == "ns":
            reader_ns = parse_ns_link(value)
        elif tag == "B":
            parts = value.split()
            if len(parts) == 2 and _is_number(parts[1]):
                boot_time = float(parts[1])
        elif tag == "U":
            uid_text, _, user = value.partition(" ")
            if _is_number(uid_text) and user:
                users.setdefault(int(uid_text), user)
    processes: list[RawProcess] = []
    for entry in entries:
        pid_text = entry["P"][0]
        status = parse_status("\n".join(entry.get("S", [])))
        if status is None or not _is_number(pid_text):
            continue  # vanished between the glob and the read
        cmdline = " ".join(entry.get("C", [""])).strip()
        processes.append(raw_process(
            int(pid_text), status, cmdline,
            pid_ns=parse_ns_link(entry["N"][0]) if "N" in entry else None,
            cgroup_id=cgroup_container_id("\n".join(entry["G"])) if "G" in entry else None,
            pod_uid=cgroup_pod_uid("\n".join(entry["G"])) if "G" in entry else None,
            start_ticks=parse_stat_start_ticks(entry["T"][0]) if "T" in entry else None,
        ))
    own = {self_pid} if self_pid is not None else set()
    own |= {proc.pid for proc in processes if self_pid is not None and proc.ppid == self_pid}
    own |= {proc.pid for proc in processes if is_probe_command(proc.cmdline)}
    return ProcessTable(
        processes=tuple(proc for proc in processes if proc.pid not in own),
        reader_pid_ns=reader_ns, own_pids=frozenset(own), users=users, boot_time=boot_time,
    )
