"""Every script in scripts/ runs as its header says (scripts/test.sh is what runs this file)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, Sandbox

pytestmark = [pytest.mark.docker, pytest.mark.root]


def run(argv: list[str], env: dict[str, str] | None = None,
        timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          env=env or dict(os.environ), check=False)


def test_install_docker_leaves_a_running_engine_alone() -> None:
    before = subprocess.run(["pgrep", "-x", "dockerd"], capture_output=True, text=True, check=False).stdout
    result = run(["scripts/install-docker.sh"])
    assert result.returncode == 0, result.stderr
    assert "leaving it alone" in result.stdout
    after = subprocess.run(["pgrep", "-x", "dockerd"], capture_output=True, text=True, check=False).stdout
    assert before == after  # same dockerd, not a second one


def test_setup_is_idempotent() -> None:
    result = run(["scripts/setup.sh"])
    assert result.returncode == 0, result.stderr
    assert "venv: .venv ready" in result.stdout


def test_kind_up_without_kind_says_so_and_touches_nothing(tmp_path: Path) -> None:
    # A PATH with the basic tools but no kind on it.
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for tool in ("bash", "sed", "env", "cat"):
        found = shutil.which(tool)
        assert found is not None
        (bindir / tool).symlink_to(found)
    result = run(["bash", "scripts/kind-up.sh"], env={"PATH": str(bindir), "HOME": str(tmp_path)})
    assert result.returncode == 3
    assert "kind is not installed" in result.stderr
    assert "pidmap sandbox up" in result.stderr


def test_demo_runs_the_walkthrough_and_pidmap_show(tmp_path: Path) -> None:
    """The README's first command, on a private sandbox so that it never touches the user's."""
    name = "pidmap-demo-test"
    env = {**os.environ, "SANDBOX": name, "PIDMAP_SANDBOX_HOME": str(tmp_path),
           "KUBECONFIG": str(tmp_path / "kubeconfig")}
    pidmap = [sys.executable, "-m", "pidmap", "sandbox"]
    try:
        result = run(["scripts/demo.sh"], env=env, timeout=400)
        assert result.returncode == 0, result.stdout + result.stderr
        out = result.stdout
        for step in ("$ kubectl apply -f examples/kubia-manual.yaml", "$ kubectl get pods -o wide",
                     "$ kubectl exec kubia-manual -- ps -aux", "$ pidmap show kubia-manual"):
            assert step in out
        # ground truth from kubectl, not from the demo: the node it names is the pod's node
        pod = json.loads(subprocess.run(["kubectl", "get", "pod", "kubia-manual", "-o", "json"],
                                        env=env, capture_output=True, text=True, check=True).stdout)
        node = pod["spec"]["nodeName"]
        assert f"$ docker exec {node} ps -aux" in out
        # procps's columns, as on the course's nodes: USER PID ... COMMAND, PID 1 is node app.js
        inside = out.split("$ kubectl exec")[1].split("$ docker exec")[0]
        assert re.search(r"^root\s+1\s.*\snode app\.js$", inside, re.M), out
        assert re.search(r"^USER\s+PID\s+%CPU\s+%MEM\s+VSZ\s+RSS\s+TTY\s+STAT\s+START\s+TIME\s+COMMAND$",
                         out.split("$ docker exec")[1], re.M), out
    finally:
        run([*pidmap, "down", "--name", name], env=env)


@pytest.mark.sandbox
def test_bench_reports_ratios_against_pidmap_show(sandbox: Sandbox) -> None:
    sandbox.apply_example("kubia-manual.yaml")
    result = sandbox.run([sys.executable, str(ROOT / "scripts" / "bench.py"), "--runs", "1"], check=True,
                         timeout=300)
    lines = result.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("what"))
    rows = [line.rsplit(None, 2) for line in lines[header + 1:] if line.strip()]
    assert rows and all(len(row) == 3 for row in rows), result.stdout
    for _, seconds, ratio in rows:
        assert float(seconds) > 0, result.stdout
        float(ratio)
    assert rows[0][0].startswith("pidmap show") and rows[0][2] == "1.00", result.stdout
    assert any(line.startswith("course's 3 commands") for line in lines), result.stdout
    assert any(line.startswith("docker top NODE") for line in lines), result.stdout
    assert any(line.startswith("pidmap show --via agent") for line in lines), result.stdout
    steps = next(line for line in lines if line.startswith("where --via agent's time goes"))
    assert all(f"{step} " in steps for step in ("create", "start", "exec", "delete")), steps
