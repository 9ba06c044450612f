"""The kernel decides, the container informs: correlate() against probes that lie, on recorded runs.

Two recordings (tests/fixtures/, each says how it was made) are laid side by side in one host table,
as two nodes' processes on one Docker host: the minikube-style chain (container ``app``, with a PID
namespace nested inside it) and the kind-style shareProcessNamespace pod ``shared-pid`` on another
node. Their PIDs do not overlap. A probe is then made to claim what another container's probe, or
the node, would report. Expected rows come from the recorded NSpid lines (``truth``), never from
pidmap's parsers.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from pidmap.correlate import correlate
from pidmap.model import HostView, ProbeResult, ProcessTable
from pidmap.procfs import parse_scan
from tests.unit.recorded import host_processes, load, node, pod

CHAIN = load()
KIND = load("sandbox_kind_shared_pid.json")
# container PID -> (node PID, host PID) of the chain's container, from /proc/PID/status at recording.
EXPECTED = {v[2]: (v[1], v[0]) for v in CHAIN["truth"]["nspid"].values() if len(v) == 3}
CHAIN_HOST_PIDS = {int(pid) for pid in CHAIN["host_proc"]}


def _view() -> HostView:
    processes = (*host_processes(CHAIN), *host_processes(KIND))
    assert len({p.pid for p in processes}) == len(processes)  # two runs, no PID in common
    node_init = CHAIN["truth"]["nspid"][str(CHAIN["truth"]["node_host_pid"])]
    return HostView(table=ProcessTable(processes=processes, boot_time=1_700_000_000.0), via="local",
                    node_level=len(node_init) - 1, host_level=0)


def _claim(namespace_line: str, body_from: str) -> ProbeResult:
    """A probe report made of another report's process table under a chosen ``ns`` line."""
    lines = body_from.splitlines()
    lines[2] = namespace_line
    return ProbeResult(table=parse_scan("\n".join(lines) + "\n"))


def _node_ns_line() -> str:
    line: str = CHAIN["node_scan_full"].splitlines()[2]
    return line


LIES = {
    # Another pod's container (on another node): its namespace and its process table.
    "another-pod": lambda: _claim(KIND["probes"]["web"].splitlines()[2], KIND["probes"]["web"]),
    # Another pod's namespace, with the container's own process table.
    "another-pod-ns-own-table": lambda: _claim(KIND["probes"]["web"].splitlines()[2],
                                               CHAIN["container_probe"]),
    # The node's own PID namespace: every node-level process would match it.
    "the-node": lambda: _claim(_node_ns_line(), CHAIN["container_probe"]),
}


@pytest.mark.parametrize("lie", list(LIES))
def test_a_probe_claiming_a_foreign_namespace_gets_no_foreign_process(lie: str) -> None:
    result = correlate(pod(CHAIN), node(CHAIN), {"app": LIES[lie]()}, _view())
    (cmap,) = result.containers
    host_pids = {p.host_pid for p in cmap.processes}
    assert host_pids <= CHAIN_HOST_PIDS - {CHAIN["truth"]["node_host_pid"]}
    # Mapped from the kernel's side: every real process, with the kernel's PIDs and commands.
    assert {p.container_pid: (p.node_pid, p.host_pid) for p in cmap.processes} == EXPECTED
    by_host = {int(pid): files["cmdline"].replace("\0", " ").strip()
               for pid, files in CHAIN["host_proc"].items()}
    assert all(p.command == by_host[p.host_pid] for p in cmap.processes if p.host_pid is not None)
    assert all(not p.flags or p.flags == ("pid1",) for p in cmap.processes)  # no "new"/"gone" noise
    (note,) = [n for n in cmap.notes if "inconsistent" in n]
    assert "the kernel puts the container's processes in" in note
    # The PID namespace shown is the kernel's, not the claim.
    assert cmap.pid_namespace == parse_scan(CHAIN["container_probe"]).reader_pid_ns


def test_an_honest_probe_on_the_same_table_is_used_without_a_note() -> None:
    (cmap,) = correlate(pod(CHAIN), node(CHAIN), {"app": ProbeResult(table=parse_scan(
        CHAIN["container_probe"]))}, _view()).containers
    assert {p.container_pid: (p.node_pid, p.host_pid) for p in cmap.processes} == EXPECTED
    assert not cmap.notes


def test_a_probe_that_renames_its_processes_shows_the_kernels_commands() -> None:
    table = parse_scan(CHAIN["container_probe"])
    renamed = replace(table, processes=tuple(replace(p, cmdline="innocent", name="innocent")
                                             for p in table.processes))
    (cmap,) = correlate(pod(CHAIN), node(CHAIN), {"app": ProbeResult(table=renamed)}, _view()).containers
    assert {p.container_pid: (p.node_pid, p.host_pid) for p in cmap.processes} == EXPECTED
    assert not any(p.command == "innocent" for p in cmap.processes)
    assert all("mismatch" in p.flags for p in cmap.processes)
    assert any("the container reported 'innocent'" in n and "the host's is shown" in n for n in cmap.notes)


def test_a_probe_that_invents_processes_gets_no_host_pid_for_them() -> None:
    table = parse_scan(CHAIN["container_probe"])
    # PIDs the container does not have but the other pod's container does (PID 4 and 5 there).
    invented = replace(table, processes=(*table.processes,
                                         *(replace(p, pid=pid) for p in table.processes[:1]
                                           for pid in (40, 41))))
    (cmap,) = correlate(pod(CHAIN), node(CHAIN), {"app": ProbeResult(table=invented)}, _view()).containers
    rows = {p.container_pid: p for p in cmap.processes}
    assert rows[40].host_pid is None and "gone" in rows[40].flags
    assert {p.host_pid for p in cmap.processes} - {None} <= CHAIN_HOST_PIDS


def test_shared_namespace_pod_ignores_a_probe_naming_another_pods_namespace() -> None:
    from pidmap.sources.kube import pod_from_api

    shared = pod_from_api(KIND["pod"])
    honest = {name: ProbeResult(table=parse_scan(text)) for name, text in KIND["probes"].items()}
    lying = dict(honest, web=_claim(CHAIN["container_probe"].splitlines()[2], CHAIN["container_probe"]))
    kind_node = replace(node(CHAIN), name=shared.node_name or "", host_pid=KIND["truth"]["node_host_pid"])
    view = replace(_view(), node_level=len(KIND["truth"]["nspid"][str(KIND["truth"]["node_host_pid"])]) - 1)
    want = correlate(shared, kind_node, honest, view)
    got = correlate(shared, kind_node, lying, view)
    kind_pids = {int(pid) for pid in KIND["host_proc"]}
    for cmap in got.containers:
        assert {p.host_pid for p in cmap.processes} <= kind_pids
    assert got.sandbox == want.sandbox and got.sandbox is not None
    assert [c.processes for c in got.containers][1] == [c.processes for c in want.containers][1]
    assert any("inconsistent" in n for n in got.containers[0].notes)


def test_only_the_probes_own_command_line_is_left_out_not_a_process_that_mentions_it() -> None:
    from pidmap.procfs import PROBE_MARKER, is_probe_command, probe_argv

    assert is_probe_command(" ".join(probe_argv("probe")))
    assert is_probe_command(" ".join(probe_argv("full")).replace("\n", " "))  # as the probe prints it
    assert not is_probe_command(f"sleep 3600 {PROBE_MARKER} probe")
    lines = CHAIN["container_probe"].splitlines()
    at = lines.index("C sleep 100002 ")
    lines[at] = f"C sleep 100002 {PROBE_MARKER}"
    table = parse_scan("\n".join(lines) + "\n")
    assert any(PROBE_MARKER in p.cmdline for p in table.processes)  # shown, not hidden
