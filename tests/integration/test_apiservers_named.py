"""The sandbox's API servers as the kernel lists them: ``apiservers_named`` finds them by their
command lines in /proc, whatever state home they were started from, and ``sandbox down`` stops a
server of its state directory that no pid file names (an orphan), even when the directory is gone.
The stand-ins are sleeping Pythons whose arguments read like the API server's."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pidmap.sandbox.cluster.lifecycle import apiservers_named

pytestmark = [pytest.mark.root, pytest.mark.docker]

NAME = f"pa-{os.getpid()}"  # no real sandbox is called this: a real `up` is never refused because of us


def _server(state: str, cwd: Path | None = None, code: str = "import time; time.sleep(120)",
            ) -> subprocess.Popen[bytes]:
    argv = [sys.executable, "-c", code, "-m", "pidmap.sandbox.apiserver", "--state-dir", state]
    return subprocess.Popen(argv, cwd=cwd)


def _state_letter(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[dict[str, tuple[int, Path]]]:
    """Relative and absolute state directories of NAME, and one of another name."""
    (tmp_path / "cwd").mkdir()
    started = {
        "relative": (_server(f"home-a/{NAME}", tmp_path / "cwd"), tmp_path / "cwd" / "home-a" / NAME),
        "absolute": (_server(str(tmp_path / "home-b" / NAME)), tmp_path / "home-b" / NAME),
        "other": (_server(str(tmp_path / "home-b" / f"{NAME}-other")), tmp_path / "home-b" / f"{NAME}-other"),
    }
    try:
        yield {key: (process.pid, state) for key, (process, state) in started.items()}
    finally:
        for process, _ in started.values():
            process.kill()
            process.wait()


def test_finds_every_server_of_the_name_from_any_home(servers: dict[str, tuple[int, Path]]) -> None:
    assert apiservers_named(NAME) == sorted([servers["relative"], servers["absolute"]])
    assert apiservers_named(f"{NAME}-other") == [servers["other"]]


def test_a_zombie_is_no_server(tmp_path: Path) -> None:
    process = _server(str(tmp_path / NAME), code="pass")
    try:
        deadline = time.monotonic() + 30
        while _state_letter(process.pid) != "Z":  # ended, not yet reaped: its PID is still listed
            assert time.monotonic() < deadline, _state_letter(process.pid)
            time.sleep(0.05)
        assert apiservers_named(NAME) == []
    finally:
        process.wait()


def test_down_stops_an_orphaned_server_whose_state_is_gone(tmp_path: Path) -> None:
    home = tmp_path / "home"  # never created: the orphan's state directory is gone
    orphan = _server(str(home / NAME))
    try:
        deadline = time.monotonic() + 30
        while apiservers_named(NAME) != [(orphan.pid, home / NAME)]:
            assert time.monotonic() < deadline, apiservers_named(NAME)
            time.sleep(0.05)
        down = subprocess.run([sys.executable, "-m", "pidmap", "sandbox", "down", "--name", NAME],
                              env={**os.environ, "PIDMAP_SANDBOX_HOME": str(home)}, capture_output=True,
                              text=True, timeout=120, check=False)
        assert down.returncode == 0, down.stderr
        assert "Stopped the API server" in down.stdout, down.stdout
        assert orphan.wait(timeout=10) == -15  # SIGTERM, as the kernel reports it
    finally:
        orphan.kill()
        orphan.wait()
