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

from tests.conftest import ROOT, Sandbox, suite_name

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
    name = suite_name("demo")
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
@pytest.mark.timeout(1200)  # a sandbox of its own and every benchmark: minutes on a loaded machine
def test_bench_sandbox_prints_the_whole_matrix(sandbox: Sandbox) -> None:
    """scripts/bench.py --sandbox, small: every group of the matrix is there and every row is sane
    (positive times, min <= median <= max, a peak memory, a ratio against the group's first row).
    No time is asserted: the numbers are the benchmark's to report."""
    name = f"{sandbox.name}-b"
    result = run([sys.executable, str(ROOT / "scripts" / "bench.py"), "--sandbox", "--name", name,
                  "--runs", "2", "--procs", "300", "--node-pods", "2,4", "--cluster-pods", "10"],
                 env={**sandbox.env}, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    titles = [line for line in out.splitlines() if line and not line.startswith(" ")]
    expected = ["pidmap bench: sandbox", "show kubia-manual (1 containers)",
                "show bench-three (3 containers)", "show kubia-manual through a node agent (no Docker)",
                "watch kubia-manual: one steady refresh", "host scan with",
                "start-up alone",
                f"node {name}-m03 with", f"node {name}-m03 with", "show --all -A with", "goals (issue 10)"]
    starts = [t for t in titles if not t.startswith(("(ratio", " "))]
    assert len(starts) == len(expected), out
    for want in expected:
        assert any(t.startswith(want) for t in starts), (want, out)
    agent = next(t for t in titles if "through a node agent" in t)
    assert all(f"{step} " in agent for step in ("create", "start", "exec", "delete")), agent
    host = next(t for t in titles if t.startswith("host scan with"))
    assert int(host.split()[3]) >= 300, host  # the extra processes were there while it ran
    rows = re.findall(r"^  (.+?)\s+(\d+\.\d{3})\s+(\S+)\s+(\d+)\s+(=|\d+\.\d\d)$", out, re.M)
    assert len(rows) >= 25, out
    for label, median, spread, peak, ratio in rows:
        assert float(median) > 0 and int(peak) > 0, label
        if spread != "estimated":
            low, high = (float(x) for x in spread.split("-"))
            assert 0 < low <= float(median) <= high, label
        if ratio != "=":
            assert float(ratio) > 0, label
    for peer in ("manual recipe", "bare Python readlink", "lsns -t pid", "ps -e -o pid,pidns,cgroup",
                 "psutil process_iter", "pidmap --help", "pidmap whois 1", "pidmap node",
                 "pidmap show --all -A", "a loop of pidmap show per pod", "pidmap watch refresh",
                 "pidmap show kubia-manual --via agent"):
        assert any(label.startswith(peer) for label, *_ in rows), (peer, out)
    goals = out.split("goals (issue 10)")[1].split("(ratio")[0].strip().splitlines()
    assert len(goals) == 7, out
    assert all(re.search(r"\d+\.\d\d  (met|NOT met)$", line) for line in goals), goals
    # the bench's sandbox is gone again
    left = subprocess.run(["docker", "ps", "-a", "--filter", f"name=^{name}", "--format", "{{.Names}}"],
                          capture_output=True, text=True, check=True).stdout.split()
    assert left == []
