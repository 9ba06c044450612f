"""Load the recorded fixtures (tests/fixtures/record*.py) into pidmap's records."""

from __future__ import annotations

import json
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

from pidmap.model import Container, HostView, Node, Pod, ProcessTable, RawProcess
from pidmap.sources.hostprocs import scan_local

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


def load(name: str = "chain_minikube_cgroupfs.json") -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((FIXTURES / name).read_text())
    return doc


def host_processes(doc: dict[str, Any], *, with_ns: bool = True) -> list[RawProcess]:
    """The recorded /proc files laid out as a procfs tree and read by pidmap's real scanner.

    ``with_ns=False`` stands for a reader that is not root: the kernel then refuses the ns links
    (EACCES), which a root test run cannot reproduce, so the inode is blanked after the scan.
    """
    with tempfile.TemporaryDirectory(prefix="pidmap-procfs-") as root:
        for pid, files in doc["host_proc"].items():
            base = Path(root) / pid
            (base / "ns").mkdir(parents=True)
            (base / "status").write_text(files["status"])
            (base / "cgroup").write_text(files["cgroup"])
            (base / "stat").write_text(files["stat"])
            (base / "cmdline").write_bytes(files["cmdline"].encode())
            (base / "ns" / "pid").symlink_to(files["ns_pid"])  # readlink gives "pid:[INODE]"
        table = scan_local(root)
    assert len(table.processes) == len(doc["host_proc"])  # the scanner read every recorded process
    return [proc if with_ns else replace(proc, pid_ns=None) for proc in table.processes]


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
