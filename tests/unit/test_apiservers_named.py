"""``apiservers_named``: the live sandbox API servers of a name, found by their command lines in the
kernel's /proc, whatever state home they were started from (relative state directories resolved
against the server's own working directory)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from pidmap.sandbox.cluster.lifecycle import apiservers_named


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[dict[str, tuple[int, Path]]]:
    """Three processes whose argv looks like the API server's (a sleeping Python; the module name and
    --state-dir are its arguments): relative and absolute state directories, and another name."""
    sleeper = [sys.executable, "-c", "import time; time.sleep(60)", "-m", "pidmap.sandbox.apiserver",
               "--state-dir"]
    (tmp_path / "cwd").mkdir()
    started = {
        "relative": (subprocess.Popen([*sleeper, "home-a/learn-k8s"], cwd=tmp_path / "cwd"),
                     tmp_path / "cwd" / "home-a" / "learn-k8s"),
        "absolute": (subprocess.Popen([*sleeper, str(tmp_path / "home-b" / "learn-k8s")]),
                     tmp_path / "home-b" / "learn-k8s"),
        "other": (subprocess.Popen([*sleeper, str(tmp_path / "home-b" / "other")]),
                  tmp_path / "home-b" / "other"),
    }
    try:
        yield {key: (process.pid, state) for key, (process, state) in started.items()}
    finally:
        for process, _ in started.values():
            process.kill()
            process.wait()


def test_finds_every_server_of_the_name_from_any_home(servers: dict[str, tuple[int, Path]]) -> None:
    found = apiservers_named("learn-k8s")
    assert servers["relative"] in found and servers["absolute"] in found
    assert servers["other"][0] not in {pid for pid, _ in found}
    assert servers["other"] in apiservers_named("other")


def test_a_process_that_ended_is_not_a_server(servers: dict[str, tuple[int, Path]]) -> None:
    process = subprocess.Popen([sys.executable, "-c", "pass", "-m", "pidmap.sandbox.apiserver", "--state-dir",
                                "/nowhere/gone"])
    process.wait()
    assert all(state != Path("/nowhere/gone") for _, state in apiservers_named("gone"))
