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
from tests.conftest import suite_name

# up runs as root (the non-root case drops to nobody); shared_images: the node image the tests that make
# a node container of their own run, built once per session whatever runs first.
pytestmark = [pytest.mark.docker, pytest.mark.root, pytest.mark.usefixtures("shared_images")]

# Sandbox names these tests use (none of them is ever up): the suite's own, as every name is.
NODOCKER, ABSENT, BADCONFIG = suite_name("nodocker"), suite_name("absent"), suite_name("badconfig")


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
    result = pidmap("sandbox", "up", "--name", NODOCKER, cwd=tmp_path, home=tmp_path,
                    extra_env={"DOCKER_HOST": f"unix://{tmp_path}/no-such.sock"})
    assert_error(result, ExitStatus.DOCKER, "no Docker engine answers", "scripts/install-docker.sh")


def test_status_and_down_when_not_up(tmp_path: Path) -> None:
    status = pidmap("sandbox", "status", "--name", ABSENT, cwd=tmp_path, home=tmp_path)
    assert_error(status, ExitStatus.SANDBOX, f"sandbox {ABSENT} is not up",
                 f"pidmap sandbox up --name {ABSENT}")
    down = pidmap("sandbox", "down", "--name", ABSENT, cwd=tmp_path, home=tmp_path)
    assert down.returncode == 0 and "nothing to stop" in down.stdout


def test_kind_config_in_the_current_directory_is_read(tmp_path: Path) -> None:
    (tmp_path / "kind-config.yaml").write_text(
        "kind: Cluster\napiVersion: kind.x-k8s.io/v1alpha4\nnodes:\n- role: worker\n- role: worker\n")
    result = pidmap("sandbox", "up", "--name", BADCONFIG, cwd=tmp_path, home=tmp_path)
    assert_error(result, ExitStatus.SANDBOX, "needs exactly one control-plane node", "role: control-plane")
    assert owned(BADCONFIG) == []


def test_not_a_kind_config(tmp_path: Path) -> None:
    config = tmp_path / "other.yaml"
    config.write_text("apiVersion: v1\nkind: Pod\n")
    result = pidmap("sandbox", "up", "--name", BADCONFIG, "--config", str(config), cwd=tmp_path,
                    home=tmp_path)
    assert_error(result, ExitStatus.SANDBOX, "is not a kind Cluster config", "kind: Cluster")


def test_down_removes_a_partial_sandbox(tmp_path: Path) -> None:
    """Only a labelled node container is left (no state dir, no API server): down still cleans up."""
    name = suite_name(f"partial-{os.getpid()}")
    subprocess.run(["docker", "run", "-d", "--name", name, "--network", "none", "--label",
                    f"io.pidmap.sandbox={name}", layout.NODE_IMAGE], check=True, capture_output=True)
    try:
        result = pidmap("sandbox", "down", "--name", name, cwd=tmp_path, home=tmp_path)
        assert result.returncode == 0 and f"Deleted node {name}" in result.stdout, result.stdout
        assert owned(name) == []
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True, check=False)


def test_up_as_non_root_is_refused_before_anything_exists(tmp_path: Path) -> None:
    name = suite_name(f"nonroot-{os.getpid()}")
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
    name = suite_name(f"noextra-{os.getpid()}")
    result = pidmap("sandbox", "up", "--name", name, cwd=tmp_path, home=tmp_path / "home",
                    extra_env={"PYTHONPATH": str(tmp_path / "shadow")})
    assert_error(result, ExitStatus.SANDBOX, "cannot import cryptography", "pip install 'pidmap[sandbox]'")
    assert owned(name) == []
    assert not (tmp_path / "home" / name).exists()


def test_down_and_status_take_the_name_from_the_kind_config_as_up_does(tmp_path: Path) -> None:
    name = suite_name(f"cfgname-{os.getpid()}")
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

    name = suite_name(f"badkc-{os.getpid()}")
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


@pytest.mark.tool("chattr")
def test_down_that_cannot_remove_a_node_is_10_and_names_what_is_left(tmp_path: Path) -> None:
    """A node container Docker itself cannot remove (an immutable file in its writable layer: `docker
    rm -f` fails with EPERM): down removes the rest, exits 10 and names the container and the fix."""
    name = suite_name(f"downfail-{os.getpid()}")
    subprocess.run(["docker", "create", "--name", name, "--network", "none", "--label",
                    f"io.pidmap.sandbox={name}", layout.NODE_IMAGE], check=True, capture_output=True)
    upper = subprocess.run(["docker", "inspect", "-f", "{{.GraphDriver.Data.UpperDir}}", name],
                           capture_output=True, text=True, check=True).stdout.strip()
    pinned = Path(upper) / "pinned"
    try:
        pinned.touch()
        subprocess.run(["chattr", "+i", str(pinned)], check=True, capture_output=True)
        # Docker, the independent witness, cannot remove it either.
        refused = subprocess.run(["docker", "rm", "-f", name], capture_output=True, text=True, check=False)
        assert refused.returncode != 0 and "operation not permitted" in refused.stderr, refused.stderr
        result = pidmap("sandbox", "down", "--name", name, cwd=tmp_path, home=tmp_path)
        assert_error(result, ExitStatus.SANDBOX,
                     f"sandbox {name}: node container(s) {name} could not be deleted", f"docker rm -f {name}")
        assert len(result.stderr.splitlines()) == 2
        assert f"warning: could not delete node {name}" in result.stdout
        assert owned(name), "the container is still there, as down said"
        # Once Docker can remove it, down finishes the job.
        subprocess.run(["chattr", "-i", str(pinned)], check=True, capture_output=True)
        again = pidmap("sandbox", "down", "--name", name, cwd=tmp_path, home=tmp_path)
        assert again.returncode == 0 and f"Deleted node {name}" in again.stdout, (again.stdout, again.stderr)
        assert owned(name) == []
    finally:
        subprocess.run(["chattr", "-i", str(pinned)], capture_output=True, check=False)
        subprocess.run(["docker", "rm", "-f", name], capture_output=True, check=False)
