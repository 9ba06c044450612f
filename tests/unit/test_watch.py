"""watch's diffing on real mappings replayed from a raw recording (tests/unit/recorded_node.py)."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

from pidmap.model import PodMap, Process
from pidmap.watch import diff, frame_json, marked, run
from tests.unit.test_picture import sidecar


def _with(pmap: PodMap, name: str, rows: tuple[Process, ...], **changes: Any) -> PodMap:
    maps = tuple(
        replace(c, processes=rows, container=replace(c.container, **changes))
        if c.container.name == name
        else c
        for c in pmap.containers
    )
    return replace(pmap, containers=maps)


def test_same_mapping_twice_is_no_change() -> None:
    assert diff(sidecar(), sidecar()) == []


def test_appeared_and_vanished_processes() -> None:
    before = sidecar()
    writer = before.containers[0]
    newcomer = Process(
        container_pid=99,
        node_pid=990,
        host_pid=9900,
        ppid=1,
        user="0",
        state="S",
        command="sleep 30",
        start_time="2026-11-24T08:10:00Z",
    )
    gone = writer.processes[-1]
    after = _with(before, writer.container.name, (*writer.processes[:-1], newcomer))
    changes = diff(before, after)
    kinds = sorted((c.kind, c.process.host_pid if c.process else None) for c in changes)
    assert kinds == sorted([("appeared", 9900), ("vanished", gone.host_pid)])
    shown = marked(after, changes)
    rows = {p.host_pid: p.flags for p in shown.containers[0].processes}
    assert "appeared" in rows[9900] and "vanished" in rows[gone.host_pid]


def test_restart_is_a_new_host_pid_for_pid1() -> None:
    before = sidecar()
    tailer = next(c for c in before.containers if c.container.name == "log-tailer")
    pid1 = tailer.processes[0]
    assert pid1.container_pid == 1
    reborn = replace(pid1, host_pid=(pid1.host_pid or 0) + 1000, node_pid=(pid1.node_pid or 0) + 10)
    after = _with(before, "log-tailer", (reborn,))
    changes = diff(before, after)
    restarted = [c for c in changes if c.kind == "restarted"]
    assert len(restarted) == 1 and restarted[0].container == "log-tailer"
    assert str(reborn.host_pid) in restarted[0].detail


def test_restart_count_alone_counts_as_restart() -> None:
    before = sidecar()
    tailer = next(c for c in before.containers if c.container.name == "log-tailer")
    after = _with(before, "log-tailer", tailer.processes, restart_count=tailer.container.restart_count + 1)
    assert [c.kind for c in diff(before, after)] == ["restarted"]


def test_deleted_then_created() -> None:
    pmap = sidecar()
    assert [c.kind for c in diff(pmap, None)] == ["deleted"]
    assert diff(None, pmap) == []
    assert [c.kind for c in diff(None, pmap, deleted_before=True)] == ["created"]


def test_run_emits_json_lines_only_on_change_and_stops_after_count() -> None:
    base = sidecar()
    writer = base.containers[0]
    later = _with(base, writer.container.name, writer.processes[:1])
    states = iter([base, base, later])
    frames = list(run(lambda: next(states), interval=0, count=3, sleep=lambda _s: None))
    assert [f.refresh for f in frames] == [1, 2, 3]
    lines = [frame_json(f) for f in frames]
    assert lines[1] is None
    first, third = json.loads(lines[0] or ""), json.loads(lines[2] or "")
    assert first["event"] == "initial" and first["pod"]["pod"] == "sidecar"
    assert third["event"] == "changed"
    assert {c["kind"] for c in third["changes"]} == {"vanished"}


def test_restart_read_inside_the_node_names_node_pids() -> None:
    """--via docker has no host PIDs: the change must say node PID, not host PID."""
    before = sidecar()
    tailer = next(c for c in before.containers if c.container.name == "log-tailer")
    pid1 = replace(tailer.processes[0], host_pid=None)
    before = _with(before, "log-tailer", (pid1,))
    after = _with(before, "log-tailer", (replace(pid1, node_pid=(pid1.node_pid or 0) + 10),))
    restarted = [c for c in diff(before, after) if c.kind == "restarted"]
    assert len(restarted) == 1
    new_pid = (pid1.node_pid or 0) + 10
    assert restarted[0].detail.endswith(f"PID 1 is now node PID {new_pid} (was {pid1.node_pid})")
