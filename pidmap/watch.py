"""``pidmap watch POD``: map the pod again every N seconds and say what changed.

Changes between two refreshes (``diff``, pure):
  appeared   a process the previous refresh did not have (same container, PIDs and start time)
  vanished   a process of the previous refresh that is gone (shown, marked, in the new picture)
  restarted  a container whose PID 1 has a new host (or node) PID, or whose restart count or
             container ID changed — the runtime started a new process tree for it
  deleted    the pod no longer exists (the watch goes on: a recreated pod is reported as created)
  created    the pod exists again after a deletion
  phase      the pod's phase changed

Ctrl-C ends a watch normally: exit status 0 (stopping is how a watch is meant to end; only a failed
first refresh is an error). ``--count N`` stops after N refreshes.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Literal

from pidmap.errors import NotFoundError, PidmapError
from pidmap.model import ContainerMap, PodMap, Process
from pidmap.wording import escape, escape_lines

ChangeKind = Literal["appeared", "vanished", "restarted", "deleted", "created", "phase", "error"]


@dataclass(frozen=True)
class Change:
    kind: ChangeKind
    detail: str
    container: str | None = None
    process: Process | None = None


@dataclass(frozen=True)
class Frame:
    """One refresh: what was seen, what was seen before, and the difference."""

    refresh: int
    time: str
    current: PodMap | None
    previous: PodMap | None
    changes: tuple[Change, ...]
    error: str | None = None


def _key(proc: Process) -> tuple[Any, ...]:
    # PIDs alone can be reused; the start time (from the host side) tells two lives apart.
    return (proc.container_pid, proc.node_pid, proc.host_pid, proc.start_time)


def _pid1(cmap: ContainerMap) -> Process | None:
    return next((p for p in cmap.processes if "pid1" in p.flags or p.container_pid == 1), None)


def _restart(old: ContainerMap, new: ContainerMap) -> str | None:
    before, after = _pid1(old), _pid1(new)
    if before is not None and after is not None:
        # Read inside the node (--via docker) there are no host PIDs: say which level changed.
        level = "host" if before.host_pid is not None and after.host_pid is not None else "node"
        old_pid = before.host_pid if level == "host" else before.node_pid
        new_pid = after.host_pid if level == "host" else after.node_pid
        if old_pid is not None and new_pid is not None and old_pid != new_pid:
            return f"PID 1 is now {level} PID {new_pid} (was {old_pid})"
    if new.container.restart_count != old.container.restart_count:
        return f"restart count {old.container.restart_count} → {new.container.restart_count}"
    if (old.container.container_id and new.container.container_id
            and old.container.container_id != new.container.container_id):
        return f"container ID {old.container.container_id[:12]} → {new.container.container_id[:12]}"
    return None


def _name(proc: Process) -> str:
    return f"PID {proc.container_pid} (node {proc.node_pid}, host {proc.host_pid}) {proc.command}"


def diff(previous: PodMap | None, current: PodMap | None, *, deleted_before: bool = False) -> list[Change]:
    """Pure: what changed from ``previous`` to ``current`` (None = the pod does not exist)."""
    if previous is None and current is None:
        return []
    if current is None:
        assert previous is not None
        return [Change("deleted", f"pod {previous.pod.namespace}/{previous.pod.name} was deleted")]
    if previous is None:
        return [Change("created", f"pod {current.pod.namespace}/{current.pod.name} exists again")] \
            if deleted_before else []
    changes: list[Change] = []
    if previous.pod.phase != current.pod.phase:
        changes.append(Change("phase", f"phase {previous.pod.phase} → {current.pod.phase}"))
    old_maps = {c.container.name: c for c in previous.containers}
    for cmap in current.containers:
        name = cmap.container.name
        old = old_maps.get(name)
        if old is None:
            continue
        why = _restart(old, cmap)
        if why is not None:
            changes.append(Change("restarted", f"container {name} restarted: {why}", container=name))
        old_keys = {_key(p) for p in old.processes}
        new_keys = {_key(p) for p in cmap.processes}
        changes += [Change("appeared", f"{name}: {_name(p)} appeared", name, p)
                    for p in cmap.processes if _key(p) not in old_keys]
        changes += [Change("vanished", f"{name}: {_name(p)} vanished", name, p)
                    for p in old.processes if _key(p) not in new_keys]
    return changes


def marked(current: PodMap, changes: list[Change] | tuple[Change, ...]) -> PodMap:
    """Pure: ``current`` with appeared rows flagged and vanished rows put back, flagged."""
    appeared = {(c.container, _key(c.process)) for c in changes if c.kind == "appeared" and c.process}
    vanished: dict[str | None, list[Process]] = {}
    for change in changes:
        if change.kind == "vanished" and change.process is not None:
            vanished.setdefault(change.container, []).append(change.process)
    restarted = {c.container for c in changes if c.kind == "restarted"}
    maps = []
    for cmap in current.containers:
        name = cmap.container.name
        rows = [replace(p, flags=(*p.flags, "appeared")) if (name, _key(p)) in appeared else p
                for p in cmap.processes]
        rows += [replace(p, flags=(*(f for f in p.flags if f != "pid1"), "vanished"))
                 for p in vanished.get(name, [])]
        notes = cmap.notes + ((f"{name}: RESTARTED since the previous refresh",) if name in restarted else ())
        maps.append(replace(cmap, processes=tuple(rows), notes=notes))
    return replace(current, containers=tuple(maps))


def run(fetch: Callable[[], PodMap], *, interval: float = 2.0, count: int | None = None,
        sleep: Callable[[float], None] = time.sleep) -> Iterator[Frame]:
    """Refresh until ``count`` frames were made. The first fetch's errors propagate (bad pod name,
    no cluster); later ones become frames, so that a deleted pod or a blip is shown, not fatal."""
    previous: PodMap | None = None
    deleted = False
    refresh = 0
    while count is None or refresh < count:
        refresh += 1
        stamp = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
        error: str | None = None
        current: PodMap | None
        try:
            current = fetch()
        except NotFoundError as err:
            if refresh == 1:
                raise
            current, error = None, err.message
        except PidmapError as err:
            if refresh == 1:
                raise
            yield Frame(refresh, stamp, previous, previous, (Change("error", err.message),),
                        error=err.message)
            if count is None or refresh < count:
                sleep(interval)
            continue
        changes = diff(previous, current, deleted_before=deleted)
        yield Frame(refresh, stamp, current, previous, tuple(changes), error=error)
        deleted = current is None
        previous = current
        if count is None or refresh < count:
            sleep(interval)


def change_document(change: Change) -> dict[str, Any]:
    proc = change.process
    return {
        "kind": change.kind,
        "container": change.container,
        "container_pid": proc.container_pid if proc else None,
        "node_pid": proc.node_pid if proc else None,
        "host_pid": proc.host_pid if proc else None,
        "command": proc.command if proc else None,
        "detail": change.detail,
    }


def frame_json(frame: Frame) -> str | None:
    """One JSON line per refresh that changed something (and for the first); None otherwise."""
    from pidmap.render import to_document

    if frame.refresh > 1 and not frame.changes:
        return None
    event = "initial" if frame.refresh == 1 else ("deleted" if frame.current is None else "changed")
    return json.dumps({
        "event": event,
        "refresh": frame.refresh,
        "time": frame.time,
        "changes": [change_document(c) for c in frame.changes],
        "pod": to_document(frame.current) if frame.current is not None else None,
    })


def frame_text(frame: Frame, *, pod_label: str, interval: float, wide: bool = False) -> str:
    from pidmap.render import render_text

    lines = [f"Every {interval:g}s: pidmap watch {pod_label}   refresh {frame.refresh}   {frame.time}"]
    if frame.current is None:
        lines.append(f"\npod {pod_label}: {escape(frame.error or 'not found')}")
    else:
        lines.append(render_text(marked(frame.current, frame.changes), wide=wide))
    if frame.changes:
        lines.append("\nCHANGES since the previous refresh")
        lines += [f"  {c.kind.upper():<10}{escape(c.detail)}" for c in frame.changes]
    else:
        lines.append("\nno change since the previous refresh" if frame.refresh > 1 else "")
    if frame.previous is not None and frame.changes:
        lines.append("\nPREVIOUS")
        lines.append(render_text(frame.previous, wide=wide))
    return escape_lines("\n".join(lines))
