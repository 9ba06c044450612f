"""The host reader on a real chain (host → Docker node → nested PID namespace), checked against
/proc NSpid read directly, ``docker top`` and ``docker exec NODE ps``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from pidmap.sources import hostprocs
from pidmap.sources.nodes import docker_client
from tests.conftest import suite_name
from tests.fixtures.chain import Chain, start_chain
from tests.kernel import nspid

pytestmark = [pytest.mark.root, pytest.mark.docker]


@pytest.fixture(scope="module")
def chain() -> Iterator[Chain]:
    chain = start_chain(suite_name("it-hostprocs"))
    try:
        yield chain
    finally:
        chain.remove()


def test_local_scan_matches_proc_nspid_and_ns_links(chain: Chain) -> None:
    table = hostprocs.scan_local()
    by_pid = {p.pid: p for p in table.processes}
    inner = chain.host_pids_in_container()
    assert len(inner) == 2
    for host_pid in inner:
        proc = by_pid[host_pid]
        assert list(proc.nspid) == nspid(host_pid)
        assert proc.pid_ns == int(os.readlink(f"/proc/{host_pid}/ns/pid")[5:-1])
        assert proc.cgroup_id == chain.container_id
        assert proc.start_ticks is not None
    assert by_pid[chain.node_host_pid].cgroup_id == chain.node_id
    assert os.getpid() not in by_pid  # the reader does not list itself
    assert not any("not root" in note for note in table.notes)


def test_local_scan_agrees_with_docker_top(chain: Chain) -> None:
    top = subprocess.run(["docker", "top", chain.node, "-o", "pid,args"], capture_output=True, text=True,
                         check=True).stdout.splitlines()[1:]
    top_pids = {int(line.split()[0]): line.split(None, 1)[1] for line in top}
    table = hostprocs.scan_local()
    ids = (chain.node_id, chain.container_id)
    in_node = {p.pid: p.cmdline for p in table.processes if p.cgroup_id in ids}
    assert in_node == top_pids


def test_scan_of_a_node_reads_exactly_the_node_and_what_nests_in_it(chain: Chain) -> None:
    """roots=[node init]: the node's PID namespace and the ones inside it, nothing of the host.
    Ground truth: ``docker top`` (the node container's cgroup) and the kernel's NSpid."""
    outsider = subprocess.Popen(["sleep", "60"])  # a host process: must not be read
    try:
        table = hostprocs.scan_local(roots=[chain.node_host_pid])
    finally:
        outsider.kill()
        outsider.wait()
    top = subprocess.run(["docker", "top", chain.node, "-o", "pid"], capture_output=True, text=True,
                         check=True).stdout.split()[1:]
    assert {p.pid for p in table.processes} == {int(pid) for pid in top}
    assert outsider.pid not in table.by_pid and 1 not in table.by_pid
    for proc in table.processes:
        assert list(proc.nspid) == nspid(proc.pid)
    for host_pid in chain.host_pids_in_container():  # the nested namespace is read too
        assert table.by_pid[host_pid].cgroup_id == chain.container_id
    assert hostprocs.scan_local(roots=[]).processes == ()


def test_sees_container_only_for_its_own_init(chain: Chain) -> None:
    assert hostprocs.sees_container(chain.node_id, chain.node_host_pid)
    assert not hostprocs.sees_container(chain.node_id, 1)
    assert not hostprocs.sees_container(chain.node_id, None)


def test_docker_exec_reader_matches_ps_in_node(chain: Chain) -> None:
    table = hostprocs.scan_in_container(docker_client(), chain.node_id)
    ps = subprocess.run(["docker", "exec", chain.node, "ps", "-o", "pid,args"], capture_output=True,
                        text=True, check=True).stdout.splitlines()[1:]
    ps_pids = {int(line.split()[0]) for line in ps if "ps -o" not in line}
    assert {p.pid for p in table.processes} == ps_pids
    for host_pid in chain.host_pids_in_container():
        host_chain = nspid(host_pid)
        proc = next(p for p in table.processes if p.pid == host_chain[1])
        assert list(proc.nspid) == host_chain[1:]  # the node's view: host level cut off
        assert proc.pid_ns == int(os.readlink(f"/proc/{host_pid}/ns/pid")[5:-1])
        assert proc.cgroup_id == chain.container_id


def test_procfs_root_is_a_parameter(tmp_path: Path, chain: Chain) -> None:
    # A copied /proc/PID tree (as a remote collector would ship it) reads the same as the real one.
    pid = chain.host_pids_in_container()[0]
    fake = tmp_path / str(pid)
    fake.mkdir()
    for name in ("status", "cgroup", "stat"):
        (fake / name).write_text(Path(f"/proc/{pid}/{name}").read_text())
    (fake / "cmdline").write_bytes(Path(f"/proc/{pid}/cmdline").read_bytes())
    (fake / "ns").mkdir()
    (fake / "ns" / "pid").symlink_to(os.readlink(f"/proc/{pid}/ns/pid"))
    table = hostprocs.scan_local(str(tmp_path))
    (proc,) = table.processes
    assert list(proc.nspid) == nspid(pid) and proc.cgroup_id == chain.container_id


UNPRIVILEGED = """
import json, sys
from pidmap.sources import hostprocs
table = hostprocs.scan_local()
json.dump({"procs": {p.pid: [list(p.nspid), p.pid_ns, p.cgroup_id] for p in table.processes},
           "notes": list(table.notes)}, sys.stdout)
"""


def test_unprivileged_reader_degrades_without_traceback(chain: Chain) -> None:
    result = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                             sys.executable, "-c", UNPRIVILEGED], capture_output=True, text=True,
                            check=False, cwd="/", env={"PYTHONPATH": str(Path(__file__).parents[2]),
                                                       "PATH": os.environ["PATH"]})
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    doc = json.loads(result.stdout)
    for host_pid in chain.host_pids_in_container():
        host_nspid, pid_ns, cgroup_id = doc["procs"][str(host_pid)]
        assert host_nspid == nspid(host_pid)  # status is world-readable
        assert pid_ns is None  # another user's ns link is not
        assert cgroup_id == chain.container_id
    assert any("not root" in note for note in doc["notes"])
