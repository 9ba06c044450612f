"""correlate() on the recorded chain: every PID checked against the recorded NSpid truth."""

from __future__ import annotations

from dataclasses import replace

from pidmap.correlate import correlate, explain_not_running
from pidmap.model import Container, HostView, ProbeResult
from pidmap.procfs import parse_scan
from tests.unit.recorded import load, local_view, node, pod, running_container

DOC = load()
TRUTH = DOC["truth"]
# container PID -> (node PID, host PID), straight from /proc/PID/status at recording time
EXPECTED = {v[2]: (v[1], v[0]) for v in TRUTH["nspid"].values() if len(v) == 3}


def _probe() -> dict[str, ProbeResult]:
    return {"app": ProbeResult(table=parse_scan(DOC["container_probe"]))}


def _rows(result_container: object) -> dict[int, tuple[int | None, int | None]]:
    return {p.container_pid: (p.node_pid, p.host_pid) for p in result_container.processes}  # type: ignore[attr-defined]


def test_chain_by_namespace_inode() -> None:
    result = correlate(pod(DOC), node(DOC), _probe(), local_view(DOC))
    (cmap,) = result.containers
    assert _rows(cmap) == EXPECTED
    assert cmap.pid_namespace == parse_scan(DOC["container_probe"]).reader_pid_ns
    pid1 = next(p for p in cmap.processes if p.container_pid == 1)
    assert "pid1" in pid1.flags and pid1.ppid == 0 and pid1.user == "root"
    assert pid1.command == "sleep 100002" and pid1.start_time is not None
    assert not result.notes and not cmap.notes


def test_not_root_matches_by_cgroup() -> None:
    result = correlate(pod(DOC), node(DOC), _probe(), local_view(DOC, with_ns=False))
    assert _rows(result.containers[0]) == EXPECTED


def test_no_shell_maps_from_host_by_container_id() -> None:
    probes = {"app": ProbeResult(table=None, no_shell=True, error="no shell")}
    (cmap,) = correlate(pod(DOC), node(DOC), probes, local_view(DOC)).containers
    assert _rows(cmap) == EXPECTED
    by_pid = {p.container_pid: p for p in cmap.processes}
    assert by_pid[2].ppid == 1 and by_pid[1].ppid == 0  # derived from the host's PPid
    assert any("no shell" in note for note in cmap.notes)


def test_via_docker_has_node_pids_but_no_host_pids() -> None:
    view = HostView(table=parse_scan(DOC["node_scan_full"]), via="docker", node_level=0, host_level=None)
    (cmap,) = correlate(pod(DOC), node(DOC), _probe(), view).containers
    assert _rows(cmap) == {cpid: (node_pid, None) for cpid, (node_pid, _) in EXPECTED.items()}


def test_exited_process_is_flagged_gone_not_hidden() -> None:
    host_pid_of_2 = EXPECTED[2][1]
    (cmap,) = correlate(pod(DOC), node(DOC), _probe(), local_view(DOC, drop={host_pid_of_2})).containers
    row = next(p for p in cmap.processes if p.container_pid == 2)
    assert row.host_pid is None and row.node_pid is None and "gone" in row.flags
    assert any("PIDs 2 seen in the container are gone" in n for n in cmap.notes)


def test_process_started_after_probe_is_flagged_new() -> None:
    table = parse_scan(DOC["container_probe"])
    table = replace(table, processes=tuple(p for p in table.processes if p.pid != 2))
    probes = {"app": ProbeResult(table=table)}
    (cmap,) = correlate(pod(DOC), node(DOC), probes, local_view(DOC)).containers
    row = next(p for p in cmap.processes if p.container_pid == 2)
    assert row.host_pid == EXPECTED[2][1] and "new" in row.flags


def test_shared_namespace_splits_by_cgroup() -> None:
    other = Container(name="sidecar", type="app", image="x", container_id="c" * 64, runtime="containerd",
                      state="running")
    probe_table = parse_scan(DOC["container_probe"])
    probes = {"app": ProbeResult(table=probe_table),
              "sidecar": ProbeResult(table=probe_table)}
    shared = pod(DOC, running_container(DOC), other, shared=True)
    result = correlate(shared, node(DOC), probes, local_view(DOC))
    app, sidecar = result.containers
    assert _rows(app) == EXPECTED
    assert sidecar.processes == ()  # none of the namespace's processes carries its id


def test_waiting_and_terminated_containers_have_no_rows() -> None:
    waiting = replace(running_container(DOC, "w"), state="waiting", reason="CrashLoopBackOff")
    done = replace(running_container(DOC, "i"), type="init", state="terminated", exit_code=0,
                   reason="Completed")
    result = correlate(pod(DOC, done, waiting), node(DOC), {}, local_view(DOC))
    assert [c.processes for c in result.containers] == [(), ()]


def test_not_running_phases_explain_why() -> None:
    done = replace(running_container(DOC, "job"), state="terminated", exit_code=3, reason="Error")
    failed = pod(DOC, done, phase="Failed")
    (why,) = explain_not_running(failed)
    assert "Failed" in why and "job exited 3 (Error)" in why
    pending = replace(pod(DOC, replace(done, state="waiting", reason="ContainerCreating", exit_code=None),
                          phase="Pending"))
    assert "ContainerCreating" in explain_not_running(pending)[0]
    assert "not scheduled" in explain_not_running(replace(pending, node_name=None))[0]
    assert "cannot be obtained" in explain_not_running(replace(pending, phase="Unknown"))[0]
    result = correlate(failed, None, {}, None)
    assert result.notes == (why,) and not result.running


def test_shared_namespace_drops_the_other_probes_shells() -> None:
    # Two probes run at once in one namespace: each sees the other's shell, which is no process
    # of either container.
    table = parse_scan(DOC["container_probe"])
    other_probe = replace(table, processes=(), own_pids=frozenset({2}))
    probes = {"app": ProbeResult(table=table),
              "sidecar": ProbeResult(table=other_probe)}
    other = Container(name="sidecar", type="app", image="x", container_id="c" * 64, runtime="containerd",
                      state="running")
    shared = pod(DOC, running_container(DOC), other, shared=True)
    app = correlate(shared, node(DOC), probes, None).containers[0]
    assert [p.container_pid for p in app.processes] == [1]


def test_running_init_container_of_a_pending_pod_is_mapped() -> None:
    init = replace(running_container(DOC, "wait"), type="init")
    app = replace(running_container(DOC, "app"), container_id=None, state="waiting", reason="PodInitializing")
    pending = pod(DOC, init, app, phase="Pending")
    probes = {"wait": ProbeResult(table=parse_scan(DOC["container_probe"]))}
    result = correlate(pending, node(DOC), probes, local_view(DOC))
    wait, waiting = result.containers
    assert _rows(wait) == EXPECTED and waiting.processes == ()
    assert result.running  # something to map: exit 0, not NOT_RUNNING
    assert "running, and mapped: wait" in result.notes[0]
    only_app = correlate(pending, node(DOC), {}, local_view(DOC), only_container="app")
    assert not only_app.running
    # A pod whose node stopped answering (Unknown) has states nobody can vouch for: nothing mapped.
    unknown = correlate(replace(pending, phase="Unknown"), node(DOC), probes, local_view(DOC))
    assert not unknown.running and unknown.containers[0].processes == ()


def test_ancestry_walks_from_pid_1_to_the_nodes_init() -> None:
    """kind's shape (REAL-NODES.md §2): app <- containerd-shim-runc-v2 <- the node's init; the
    walk stops at the node's PID 1 and never climbs into the host's processes above it."""
    from pidmap.correlate import _ancestry
    from pidmap.model import ProcessTable, RawProcess

    def proc(pid: int, nspid: tuple[int, ...], ppid: int, cmdline: str) -> RawProcess:
        return RawProcess(pid=pid, nspid=nspid, ppid=ppid, uid=0, state="S", name=cmdline.split()[0],
                          cmdline=cmdline)

    shim = "/usr/local/bin/containerd-shim-runc-v2 -namespace k8s.io -id " + "a" * 64
    table = ProcessTable(processes=(
        proc(50, (50,), 1, "dockerd"),
        proc(100, (100, 1), 50, "/init"),
        proc(150, (150, 98), 100, shim),
        proc(160, (160, 118, 1), 150, "/pause"),
        proc(200, (200, 193, 1), 150, "node app.js"),
    ))
    host = HostView(table=table, via="local", node_level=1, host_level=0)
    chain = _ancestry(host, table.by_pid[200])
    assert [(p.node_pid, p.host_pid, p.ppid, p.command) for p in chain] == [
        (98, 150, 1, shim), (1, 100, 0, "/init")]


def test_shared_namespace_drops_the_other_probes_children() -> None:
    # Each probe runs brief children (tr, cat); one probe may list another's child that the other's
    # own listing never saw (it ran later): a descendant of a probe's shell is no process of the
    # pod. Seen by the grid (tests/e2e/test_grid.py) as a `gone` row `tr \000\n` under shared-pid.
    table = parse_scan(DOC["container_probe"])
    base = next(p for p in table.processes if p.pid == 1)
    child = replace(base, pid=9, nspid=(9,), ppid=2, name="tr", cmdline="tr \\000\\n")
    grandchild = replace(base, pid=10, nspid=(10,), ppid=9, name="cat", cmdline="cat")
    seen_by_app = replace(table, processes=(*table.processes, child, grandchild))
    other_probe = replace(table, processes=(), own_pids=frozenset({2}))
    probes = {"app": ProbeResult(table=seen_by_app), "sidecar": ProbeResult(table=other_probe)}
    other = Container(name="sidecar", type="app", image="x", container_id="c" * 64, runtime="containerd",
                      state="running")
    shared = pod(DOC, running_container(DOC), other, shared=True)
    app = correlate(shared, node(DOC), probes, None).containers[0]
    assert [p.container_pid for p in app.processes] == [1]
