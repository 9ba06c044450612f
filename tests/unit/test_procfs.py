"""procfs parsers against /proc text recorded on this machine (tests/fixtures/record.py)."""

from __future__ import annotations

import pytest

from pidmap.procfs import (
    ScanFormatError,
    cgroup_container_id,
    cgroup_pod_uid,
    parse_cmdline,
    parse_ns_link,
    parse_scan,
    parse_stat_start_ticks,
    parse_status,
)
from tests.unit.recorded import load

DOC = load()
TRUTH = DOC["truth"]


@pytest.mark.parametrize("pid", sorted(DOC["host_proc"]))
def test_status_nspid_matches_recorded_truth(pid: str) -> None:
    status = parse_status(DOC["host_proc"][pid]["status"])
    assert status is not None
    assert list(status.nspid) == TRUTH["nspid"][pid]
    assert status.name == "sleep" or status.name == "unshare"
    assert status.uid == 0


def test_status_cut_short_is_none() -> None:
    assert parse_status("Name:\tsleep\nState:\tS (sleeping)\n") is None
    assert parse_status("") is None


def test_cgroup_innermost_id_cgroupfs_shape() -> None:
    for pid, files in DOC["host_proc"].items():
        expected = TRUTH["container_id"] if len(TRUTH["nspid"][pid]) == 3 else TRUTH["node_id"]
        assert cgroup_container_id(files["cgroup"]) == expected


def test_cgroup_kind_systemd_and_v2_shapes() -> None:
    cid = "a" * 64
    node = "b" * 64
    # Shapes from REFERENCE.md (kind systemd driver, minikube docker runtime, cgroup v2).
    kind = (f"0::/system.slice/docker-{node}.scope/kubelet.slice/kubelet-kubepods.slice/"
            f"kubelet-kubepods-besteffort.slice/kubelet-kubepods-besteffort-pod1_2.slice/"
            f"cri-containerd-{cid}.scope\n")
    assert cgroup_container_id(kind) == cid
    assert cgroup_container_id(f"12:pids:/kubepods/burstable/pod1/docker-{cid}.scope\n") == cid
    assert cgroup_container_id("0::/init.scope\n1:name=systemd:/user.slice\n") is None


def test_ns_link() -> None:
    for files in DOC["host_proc"].values():
        assert parse_ns_link(files["ns_pid"]) == int(files["ns_pid"][5:-1])
    assert parse_ns_link("garbage") is None


def test_stat_start_ticks_is_field_22() -> None:
    for files in DOC["host_proc"].values():
        assert parse_stat_start_ticks(files["stat"]) == int(files["stat"].rsplit(")", 1)[1].split()[19])
    assert parse_stat_start_ticks("12 (a ) b) S 1 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 777 0") == 777


def test_cmdline() -> None:
    assert parse_cmdline(b"sleep\x00100\x00") == "sleep 100"
    assert parse_cmdline(b"") == ""


def test_scan_of_nested_container_matches_docker_top_and_nspid() -> None:
    table = parse_scan(DOC["container_probe"])
    # The probe ran in the nested namespace: PID 1 and 2 there are the two sleeps.
    inner = {tuple(v)[-1]: v for v in TRUTH["nspid"].values() if len(v) == 3}
    assert sorted(p.pid for p in table.processes) == sorted(inner)
    by_pid = {p.pid: p for p in table.processes}
    assert by_pid[1].ppid == 0 and by_pid[2].ppid == 1
    assert by_pid[1].cmdline == "sleep 100002"
    assert table.users[0] == "root"
    assert table.own_pids  # the probe's own shell was seen and dropped
    assert all("pidmap-probe" not in p.cmdline for p in table.processes)
    host_ns = {parse_ns_link(f["ns_pid"]) for pid, f in DOC["host_proc"].items()
               if len(TRUTH["nspid"][pid]) == 3}
    assert host_ns == {table.reader_pid_ns}


def test_full_scan_of_node_has_cgroup_and_ns() -> None:
    table = parse_scan(DOC["node_scan_full"])
    top_lines = TRUTH["docker_top"].splitlines()[1:]
    assert len(table.processes) == len(top_lines)
    node_pids = {v[1] for v in TRUTH["nspid"].values()}
    assert {p.pid for p in table.processes} == node_pids
    for proc in table.processes:
        assert proc.pid_ns is not None and proc.start_ticks is not None
        expected = TRUTH["container_id"] if len(proc.nspid) == 2 else TRUTH["node_id"]
        assert proc.cgroup_id == expected


def test_scan_rejects_other_output() -> None:
    with pytest.raises(ScanFormatError):
        parse_scan("sh: not found\n")
    with pytest.raises(ScanFormatError):
        parse_scan(DOC["container_probe"].rsplit("end", 1)[0])


def test_pod_uid_from_both_cgroup_layouts() -> None:
    uid = "4af19622-5166-4d10-a49f-6d908800b6f2"
    assert cgroup_pod_uid(f"8:pids:/docker/x/kubepods/besteffort/pod{uid}/{'a' * 64}\n") == uid
    systemd = (f"0::/kubelet-kubepods-besteffort-pod{uid.replace('-', '_')}.slice/"
               f"cri-containerd-{'a' * 64}.scope")
    assert cgroup_pod_uid(systemd) == uid
    assert cgroup_pod_uid("0::/init.scope") is None
