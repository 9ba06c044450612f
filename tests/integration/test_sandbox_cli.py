"""`pidmap sandbox up|down|status` errors: one line, a hint, exit code 10 (sandbox) or 7 (docker).

These need Docker (or its absence) but no running sandbox; nothing here leaves a container behind.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pidmap.errors import ExitStatus

pytestmark = [pytest.mark.docker]


def pidmap(*args: str, cwd: Path, home: Path, extra_env: dict[str, str] | None = None,
           ) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PIDMAP_SANDBOX_HOME": str(home), "KUBECONFIG": str(home / "kubeconfig"),
           **(extra_env or {})}
    return subprocess.run([sys.executable, "-m", "pidmap", *args], capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=120, check=False)


def assert_error(result: subprocess.CompletedProcess[str], status: ExitStatus, text: str, hint: str) -> None:
    assert result.returncode == status, result.stderr
    lines = result.stderr.splitlines()
    assert lines[0].startswith("error: ") and text in lines[0], result.stderr
    assert lines[1].startswith("hint: ") and hint in lines[1], result.stderr
    assert "Traceback" not in result.stderr


def owned(name: str) -> list[str]:
    return subprocess.run(["docker", "ps", "-aq", "--filter", f"label=io.pidmap.sandbox={name}"],
                          capture_output=True, text=True, check=True).stdout.split()


def test_no_docker_engine(tmp_path: Path) -> None:
    result = pidmap("sandbox", "up", "--name", "pa-nodocker", cwd=tmp_path, home=tmp_path,
                    extra_env={"DOCKER_HOST": f"unix://{tmp_path}/no-such.sock"})
    assert_error(result, ExitStatus.DOCKER, "no Docker engine answers", "scripts/install-docker.sh")


def test_status_and_down_when_not_up(tmp_path: Path) -> None:
    status = pidmap("sandbox", "status", "--name", "pa-absent", cwd=tmp_path, home=tmp_path)
    assert_error(status, ExitStatus.SANDBOX, "sandbox pa-absent is not up",
                 "pidmap sandbox up --name pa-absent")
    down = pidmap("sandbox", "down", "--name", "pa-absent", cwd=tmp_path, home=tmp_path)
    assert down.returncode == 0 and "nothing to stop" in down.stdout


def test_kind_config_in_the_current_directory_is_read(tmp_path: Path) -> None:
    (tmp_path / "kind-config.yaml").write_text(
        "kind: Cluster\napiVersion: kind.x-k8s.io/v1alpha4\nnodes:\n- role: worker\n- role: worker\n")
    result = pidmap("sandbox", "up", "--name", "pa-badconfig", cwd=tmp_path, home=tmp_path)
    assert_error(result, ExitStatus.SANDBOX, "needs exactly one control-plane node", "role: control-plane")
    assert owned("pa-badconfig") == []


def test_not_a_kind_config(tmp_path: Path) -> None:
    config = tmp_path / "other.yaml"
    config.write_text("apiVersion: v1\nkind: Pod\n")
    result = pidmap("sandbox", "up", "--name", "pa-badconfig", "--config", str(config), cwd=tmp_path,
                    home=tmp_path)
    assert_error(result, ExitStatus.SANDBOX, "is not a kind Cluster config", "kind: Cluster")


def test_down_removes_a_partial_sandbox(tmp_path: Path) -> None:
    """Only a labelled node container is left (no state dir, no API server): down still cleans up."""
    name = f"pa-partial-{os.getpid()}"
    subprocess.run(["docker", "run", "-d", "--name", name, "--network", "none", "--label",
                    f"io.pidmap.sandbox={name}", "pidmap/sandbox-node:1"], check=True, capture_output=True)
    try:
        result = pidmap("sandbox", "down", "--name", name, cwd=tmp_path, home=tmp_path)
        assert result.returncode == 0 and f"Deleted node {name}" in result.stdout, result.stdout
        assert owned(name) == []
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True, check=False)
