"""The cgroup v2 branch of tests/kernel.py on a real cgroup2 hierarchy, on any machine: a cgroup2
filesystem is mounted on a temporary directory (on a v1 host it is the hybrid's unified hierarchy,
on a v2 host the one hierarchy again), a process is moved into a new cgroup there, and the kernel's
/proc/PID/cgroup is read through the helpers with version 2."""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.kernel import cgroup_dirs, cgroup_path, pids_in_cgroup

pytestmark = [pytest.mark.root]


@pytest.fixture
def cgroup2_mount() -> Iterator[Path]:
    mount = Path(tempfile.mkdtemp(prefix="pidmap-cgroup2-"))
    subprocess.run(["mount", "-t", "cgroup2", "none", str(mount)], check=True, capture_output=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True, capture_output=True)
        mount.rmdir()


def test_v2_membership_on_a_real_cgroup2_hierarchy(cgroup2_mount: Path) -> None:
    fragment = f"pidmap-test-{os.getpid()}-" + os.urandom(4).hex()
    leaf = cgroup2_mount / fragment / "leaf"
    leaf.mkdir(parents=True)
    sleeper = subprocess.Popen(["sleep", "300"])
    try:
        (leaf / "cgroup.procs").write_text(str(sleeper.pid))
        text = Path(f"/proc/{sleeper.pid}/cgroup").read_text()
        path = cgroup_path(text, 2)
        assert path is not None and path.endswith(f"/{fragment}/leaf"), text
        assert pids_in_cgroup(fragment, 2) == [sleeper.pid]
        assert pids_in_cgroup(fragment, 1) == []  # no v1 hierarchy line carries it
        found = cgroup_dirs(fragment, 2, mount=cgroup2_mount)
        assert found == [cgroup2_mount / fragment]
        assert (found[0] / "leaf" / "cgroup.procs").read_text().split() == [str(sleeper.pid)]
    finally:
        sleeper.kill()
        sleeper.wait()
        leaf.rmdir()
        (cgroup2_mount / fragment).rmdir()
    assert pids_in_cgroup(fragment, 2) == []
