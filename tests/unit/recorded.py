"""Load the recorded chain fixture (tests/fixtures/record.py) into pidmap's records."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pidmap.model import Container, HostView, Node, Pod, ProcessTable, RawProcess
from pidmap.procfs import (
    cgroup_container_id,
    cgroup_pod_uid,
    parse_ns_link,
    parse_stat_start_ticks,
    parse_status,
    raw_process,
)

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


def load(name: str = "chain_minikube_cgroupfs.json") -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((FIXTURES / name).read_text())
    return doc


def host_processes(doc: dict[str, Any], *, with_ns: bool = True) -> list[RawProcess]:
    out = []
    for pid, files in doc["host_proc"].items():
        status = parse_status(files["status"])
        assert status is not None
        out.append(raw_process(int(pid), status, files["cmdline"].replace("\0", " ").strip(),
                               pid_ns=parse_ns_link(files["ns_pid"]) if with_ns else None,
                               cgroup_id=cgroup_container_id(files["cgroup"]),
                               start_ticks=parse_stat_start_ticks(files["stat"]),
                               pod_uid=cgroup_pod_uid(files["cgroup"])))
    return out


def local_view(doc: dict[str, Any], *, with_ns: bool = True,
               drop: set[int] | None = None) -> HostView:
    procs = [p for p in host_processes(doc, with_ns=with_ns) if p.pid not in (drop or set())]
    node_init = doc["truth"]["nspid"][str(doc["truth"]["node_host_pid"])]
    return HostView(table=ProcessTable(processes=tuple(procs), boot_time=1_700_000_000.0),
                    via="local", node_level=len(node_init) - 1, host_level=0)


def node(doc: dict[str, Any]) -> Node:
    return Node(name="pc-record", provider="minikube", container_id=doc["truth"]["node_id"],
                host_pid=doc["truth"]["node_host_pid"])


def running_container(doc: dict[str, Any], name: str = "app") -> Container:
    return Container(name=name, type="app", image="busybox", container_id=doc["truth"]["container_id"],
                     runtime="containerd", state="running")


def pod(doc: dict[str, Any], *containers: Container, phase: str = "Running",
        shared: bool = False) -> Pod:
    return Pod(namespace="default", name="chain", uid=doc["truth"]["pod_uid"], phase=phase,
               node_name="pc-record", share_process_namespace=shared,
               containers=containers or (running_container(doc),))
