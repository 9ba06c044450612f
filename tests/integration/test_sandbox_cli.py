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
from pidmap.sandbox.cluster import layout

pytestmark = [pytest.mark.docker, pytest.mark.root]  # up runs as root; the non-root case drops to nobody


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
                    f"io.pidmap.sandbox={name}", layout.NODE_IMAGE], check=True, capture_output=True)
    try:
        result = pidmap("sandbox", "down", "--name", name, cwd=tmp_path, home=tmp_path)
        assert result.returncode == 0 and f"Deleted node {name}" in result.stdout, result.stdout
        assert owned(name) == []
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True, check=False)


def test_up_as_non_root_is_refused_before_anything_exists(tmp_path: Path) -> None:
    name = f"pf-nonroot-{os.getpid()}"
    env = {**os.environ, "PIDMAP_SANDBOX_HOME": str(tmp_path / "home"), "KUBECONFIG": str(tmp_path / "kc")}
    result = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable,
                             "-m", "pidmap", "sandbox", "up", "--name", name],
                            capture_output=True, text=True, cwd="/", env=env, timeout=120, check=False)
    assert_error(result, ExitStatus.SANDBOX, "the sandbox needs root", "sudo -E pidmap sandbox up")
    assert owned(name) == []
    assert not (tmp_path / "home").exists() and not (tmp_path / "kc").exists()


def test_up_without_the_sandbox_extra_is_refused_before_anything_exists(tmp_path: Path) -> None:
    # A package that fails to import is what a missing (or broken) extra looks like to Python.
    shadow = tmp_path / "shadow" / "cryptography"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('No module named cryptography')\n")
    name = f"pf-noextra-{os.getpid()}"
    result = pidmap("sandbox", "up", "--name", name, cwd=tmp_path, home=tmp_path / "home",
                    extra_env={"PYTHONPATH": str(tmp_path / "shadow")})
    assert_error(result, ExitStatus.SANDBOX, "cannot import cryptography", "pip install 'pidmap[sandbox]'")
    assert owned(name) == []
    assert not (tmp_path / "home" / name).exists()


def test_down_and_status_take_the_name_from_the_kind_config_as_up_does(tmp_path: Path) -> None:
    name = f"pf-cfgname-{os.getpid()}"
    (tmp_path / "kind-config.yaml").write_text(
        f"kind: Cluster\napiVersion: kind.x-k8s.io/v1alpha4\nname: {name}\nnodes:\n- role: control-plane\n")
    status = pidmap("sandbox", "status", cwd=tmp_path, home=tmp_path)
    assert_error(status, ExitStatus.SANDBOX, f"sandbox {name} is not up", f"--name {name}")
    subprocess.run(["docker", "run", "-d", "--name", name, "--network", "none", "--label",
                    f"io.pidmap.sandbox={name}", layout.NODE_IMAGE], check=True, capture_output=True)
    try:
        down = pidmap("sandbox", "down", cwd=tmp_path, home=tmp_path)
        assert down.returncode == 0 and f"Deleted node {name}" in down.stdout, (down.stdout, down.stderr)
        assert f'Deleted sandbox "{name}"' in down.stdout
        assert owned(name) == []
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True, check=False)


def test_down_with_an_unreadable_kubeconfig_still_removes_the_rest(tmp_path: Path) -> None:
    from pidmap.sandbox.cluster.layout import ClusterSpec

    name = f"pf-badkc-{os.getpid()}"
    kubeconfig = tmp_path / "broken.kubeconfig"
    kubeconfig.write_text("clusters: [unclosed\n")
    state = tmp_path / name
    state.mkdir()
    spec = ClusterSpec(name=name, flavor="kind", nodes=(), context=f"kind-{name}", kubeconfig=str(kubeconfig))
    (state / "cluster.json").write_text(spec.to_json())
    result = pidmap("sandbox", "down", "--name", name, cwd=tmp_path, home=tmp_path)
    assert result.returncode == 0, (result.stdout, result.stderr)
    assert f"warning: could not remove context kind-{name} from {kubeconfig}" in result.stdout
    assert "Traceback" not in result.stderr
    assert not state.exists()
    assert kubeconfig.read_text() == "clusters: [unclosed\n"  # left as it was, not rewritten
