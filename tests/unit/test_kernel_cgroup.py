"""tests/kernel.py's cgroup membership reads the line that counts on the machine: the ``0::`` line
on cgroup v2, the ``pids`` hierarchy's line on v1 (where a hybrid ``0::`` line may stop at the
node). The v2 texts are real lines of kind nodes on cgroup v2 hosts (/work/shared/REAL-NODES.md);
the v1 text is the one recorded here (tests/fixtures/chain_minikube_cgroupfs.json)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.kernel import CGROUP_MOUNT, cgroup_dir, cgroup_path, cgroup_version
from tests.unit.recorded import load

NODE_V2 = "fd9d0ea06257a9780827cbc7fd92e3812a54fca26d63e191b73610d5d48b9cbd"
POD_V2 = "99f3a16ea25b7724cb56a4f0c0df1113ad9474fbf5545bead97fd5c7f61c13f4"
KIND_V2 = (f"0::/system.slice/docker-{NODE_V2}.scope/kubelet.slice/kubelet-kubepods.slice/"
           "kubelet-kubepods-besteffort.slice/kubelet-kubepods-besteffort-podeab5a334_93fe_48a8_b139_"
           f"9e8079c1f163.slice/cri-containerd-{POD_V2}.scope\n")
MINIKUBE_V2 = ("0::/system.slice/docker-1b3319ed9c1d4cca681f9c102da9b015555785b6240c4e4619f11b535cabdc07"
               ".scope/"
               "kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-podeb653d22_2525_47ca_9fc4_"
               "3762497ae1d2.slice/docker-84e9ffffe97fea4c5a0f01d401611cbafbf7e559fc6190ed74abfc2b25e889d4.scope\n")


def test_v2_reads_the_0_line() -> None:
    path = cgroup_path(KIND_V2, 2)
    assert path is not None and path.startswith(f"/system.slice/docker-{NODE_V2}.scope/")
    assert path.endswith(f"/cri-containerd-{POD_V2}.scope")
    assert cgroup_path(MINIKUBE_V2, 2) == MINIKUBE_V2[3:].rstrip("\n")
    assert cgroup_path(KIND_V2, 1) is None  # a v2 text has no v1 hierarchy's line
    assert cgroup_dir(path, 2) == CGROUP_MOUNT / path.lstrip("/")


def test_v1_reads_the_pids_line_not_a_hybrid_0_line() -> None:
    doc = load()
    container_id, node_id = doc["truth"]["container_id"], doc["truth"]["node_id"]
    text = next(files["cgroup"] for files in doc["host_proc"].values() if container_id in files["cgroup"])
    v1 = cgroup_path(text, 1)
    assert v1 is not None and v1.endswith(f"/{container_id}") and node_id in v1
    # The recorded hybrid machine's 0:: line stops at the node: read on v1 it would miss the pod.
    assert cgroup_path(text, 2) == f"/docker/{node_id}"
    assert cgroup_dir(v1, 1) == CGROUP_MOUNT / "pids" / v1.lstrip("/")


@pytest.mark.parametrize(("mounts", "version"), [
    ("cgroup2 /sys/fs/cgroup cgroup2 rw,nosuid,nodev,noexec,relatime,nsdelegate 0 0\n", 2),
    ("tmpfs /sys/fs/cgroup tmpfs ro,nosuid 0 0\ncgroup2 /sys/fs/cgroup/unified cgroup2 rw 0 0\n"
     "cgroup /sys/fs/cgroup/pids cgroup rw,pids 0 0\n", 1),
])
def test_version_from_the_mount_table(tmp_path: Path, mounts: str, version: int) -> None:
    table = tmp_path / "mounts"
    table.write_text(mounts)
    assert cgroup_version(str(table)) == version


def test_version_of_this_machine_is_what_stat_says() -> None:
    kind = subprocess.run(["stat", "-fc", "%T", str(CGROUP_MOUNT)], capture_output=True, text=True,
                          check=True).stdout.strip()
    assert cgroup_version() == (2 if kind == "cgroup2fs" else 1)
