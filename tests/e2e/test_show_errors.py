"""`pidmap show` errors against the sandbox: one line, a hint, the documented exit code, no traceback."""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pidmap.errors import ExitStatus
from tests.conftest import Sandbox
from tests.kernel import container_init, nspid

pytestmark = [pytest.mark.sandbox, pytest.mark.root, pytest.mark.docker]


def _assert_error(result: subprocess.CompletedProcess[str], status: ExitStatus, message: str) -> None:
    assert result.returncode == status, (result.stdout, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 2, result.stderr
    assert lines[0] == f"error: {message}" or (lines[0].startswith("error: ") and message in lines[0]), lines
    assert lines[1].startswith("hint: ") and "Traceback" not in result.stderr


@pytest.fixture(scope="module")
def kubia(sandbox: Sandbox) -> str:
    sandbox.apply_example("kubia-manual.yaml")
    return "kubia-manual"


def test_pod_not_found(sandbox: Sandbox) -> None:
    _assert_error(sandbox.pidmap("show", "no-such-pod", check=False), ExitStatus.NOT_FOUND,
                  'pod "no-such-pod" not found in namespace "default"')


def test_namespace_not_found(sandbox: Sandbox) -> None:
    _assert_error(sandbox.pidmap("show", "kubia-manual", "-n", "no-such-ns", check=False),
                  ExitStatus.NOT_FOUND, 'namespace "no-such-ns" not found')


def test_container_not_found(sandbox: Sandbox, kubia: str) -> None:
    _assert_error(sandbox.pidmap("show", kubia, "-c", "nope", check=False), ExitStatus.NOT_FOUND,
                  'container "nope" not found in pod "kubia-manual"')


def _where_exists(box: Sandbox, path: str, pod: str) -> list[str]:
    """Every place an injected command could have run, where ``path`` exists: this host (pidmap's
    own machine), each node container's filesystem (docker exec) and the pod (kubectl exec)."""
    places = ["host"] if Path(path).exists() else []
    nodes = box.kubectl("get", "nodes", "-o", "jsonpath={.items[*].metadata.name}").stdout.split()
    assert nodes
    for node in nodes:
        if subprocess.run(["docker", "exec", node, "test", "-e", path], capture_output=True).returncode == 0:
            places.append(f"node {node}")
    if box.kubectl("exec", pod, "--", "test", "-e", path, check=False).returncode == 0:
        places.append(f"pod {pod}")
    return places


def test_shell_metacharacters_never_reach_the_cluster(sandbox: Sandbox, kubia: str) -> None:
    sandbox.wait_phase(kubia, {"Running"})
    marker = f"/tmp/pc-pwned-{secrets.token_hex(4)}"
    assert _where_exists(sandbox, marker, kubia) == []
    _assert_error(sandbox.pidmap("show", f"kubia-manual;touch {marker}", check=False), ExitStatus.USAGE,
                  f"invalid pod name 'kubia-manual;touch {marker}': not a DNS-1123 subdomain")
    _assert_error(sandbox.pidmap("show", kubia, "-c", f"$(touch {marker})", check=False), ExitStatus.USAGE,
                  "invalid container name")
    assert _where_exists(sandbox, marker, kubia) == []
    # Positive control: the same check sees the file in each place once a command does make it.
    node = sandbox.pod(kubia)["spec"]["nodeName"]
    Path(marker).touch()
    subprocess.run(["docker", "exec", node, "touch", marker], check=True)
    sandbox.kubectl("exec", kubia, "--", "touch", marker)
    try:
        assert _where_exists(sandbox, marker, kubia) == ["host", f"node {node}", f"pod {kubia}"]
    finally:
        Path(marker).unlink()
        subprocess.run(["docker", "exec", node, "rm", "-f", marker], check=True)
        sandbox.kubectl("exec", kubia, "--", "rm", "-f", marker)


def test_wrong_token(sandbox: Sandbox, kubia: str, tmp_path: Path) -> None:
    text = sandbox.kubeconfig.read_text()
    bad = re.sub(r"(token:\s*)\S+", r"\1not-the-token", text)
    assert bad != text
    kubeconfig = tmp_path / "bad.kubeconfig"
    kubeconfig.write_text(bad)
    _assert_error(sandbox.pidmap("show", kubia, "--kubeconfig", str(kubeconfig), check=False),
                  ExitStatus.FORBIDDEN, "the API server rejected the credentials (401 Unauthorized)")


def test_docker_engine_down_with_via_docker(sandbox: Sandbox, kubia: str, tmp_path: Path) -> None:
    # Asked for by name, docker exec cannot degrade to something else (without --via the container
    # level is still mapped: tests/e2e/test_no_docker.py).
    dead = f"unix://{tmp_path}/dead.sock"
    env = {**sandbox.env, "DOCKER_HOST": dead}
    _assert_error(sandbox.pidmap("show", kubia, "--via", "docker", check=False, env=env), ExitStatus.DOCKER,
                  f"no Docker engine answers at {dead}")


CHURN = """apiVersion: v1
kind: Pod
metadata: {name: pc-churn}
spec:
  containers:
  - name: churn
    image: busybox:1.36
    command: ["sh", "-c", "while true; do sleep 0.05; done"]
"""


def test_processes_exiting_while_collecting_are_gone_rows_never_wrong_levels(sandbox: Sandbox,
                                                                             module_namespace: str) -> None:
    """A `sleep 0.05` every 50 ms: processes exit between the probe and the host scan. They are
    flagged `gone` with no node or host PID; every other row has all three levels. Ten runs, each
    checked; the probe and the scan are always more than 50 ms apart, so every run has such rows."""
    ns = module_namespace
    sandbox.kubectl("apply", "-n", ns, "-f", "-", input=CHURN)
    sandbox.wait_phase("pc-churn", {"Running"}, ns)
    try:
        gone_runs = 0
        for _ in range(10):
            result = sandbox.pidmap("show", "pc-churn", "-n", ns, "-o", "json", check=False)
            assert result.returncode == ExitStatus.OK and "Traceback" not in result.stderr, result.stderr
            (churn,) = json.loads(result.stdout)["containers"]
            for proc in churn["processes"]:
                if "gone" in proc["flags"]:
                    assert proc["host_pid"] is None and proc["node_pid"] is None
                else:
                    assert proc["host_pid"] is not None and proc["node_pid"] is not None, proc
            gone_runs += any("gone" in p["flags"] for p in churn["processes"])
        assert gone_runs >= 1
    finally:
        sandbox.kubectl("delete", "pod", "pc-churn", "-n", ns, "--wait=true", check=False)


RESTARTS = """apiVersion: v1
kind: Pod
metadata: {name: pc-restarts}
spec:
  containers:
  - name: app
    image: busybox:1.36
    command: ["sleep", "3600"]
"""


def test_a_restarted_container_is_mapped_to_its_new_pid1(sandbox: Sandbox, module_namespace: str) -> None:
    """The container's PID 1 is killed from the host; once kubectl reports the restart (restartCount
    up, a new container ID, running), pidmap shows that restart count and container ID and maps
    PID 1 to the new process: the kernel's NSpid of the one PID 1 in the new container's cgroup."""
    ns = module_namespace
    sandbox.kubectl("apply", "-n", ns, "-f", "-", input=RESTARTS)
    try:
        pod = sandbox.wait_phase("pc-restarts", {"Running"}, ns)
        (status,) = pod["status"]["containerStatuses"]
        old_id = status["containerID"].split("://", 1)[1]
        assert status["restartCount"] == 0
        old_init = container_init(old_id)
        os.kill(old_init, signal.SIGKILL)
        deadline = time.monotonic() + 60  # the sandbox's first back-off is 10 s
        while True:
            (status,) = sandbox.pod("pc-restarts", ns)["status"]["containerStatuses"]
            if status["restartCount"] == 1 and "running" in status["state"]:
                break
            assert time.monotonic() < deadline, status
            time.sleep(0.5)
        new_id = status["containerID"].split("://", 1)[1]
        assert new_id != old_id
        new_init = container_init(new_id)
        doc = json.loads(sandbox.pidmap("show", "pc-restarts", "-n", ns, "-o", "json").stdout)
        (container,) = doc["containers"]
        assert (container["restart_count"], container["container_id"]) == (1, new_id)
        (pid1,) = [p for p in container["processes"] if p["container_pid"] == 1]
        assert [pid1["host_pid"], pid1["node_pid"], 1] == nspid(new_init)
        assert pid1["host_pid"] != old_init and pid1["command"] == "sleep 3600"
    finally:
        sandbox.kubectl("delete", "pod", "pc-restarts", "-n", ns, "--wait=true", check=False)


@pytest.fixture
def forbidding(sandbox: Sandbox) -> Iterator[Sandbox]:
    """The session's sandbox, its RBAC stand-in answering pods/exec with 403 until the test ends."""
    sandbox.pidmap("sandbox", "forbid", "--name", sandbox.name, "create:pods/exec")
    try:
        yield sandbox
    finally:
        sandbox.pidmap("sandbox", "forbid", "--name", sandbox.name)


def test_exec_forbidden(forbidding: Sandbox, kubia: str) -> None:
    denied = forbidding.kubectl("exec", kubia, "--", "true", check=False)  # kubectl is refused too
    assert denied.returncode != 0 and "(Forbidden)" in denied.stderr, denied.stderr
    _assert_error(forbidding.pidmap("show", kubia, check=False), ExitStatus.FORBIDDEN,
                  "exec into pod is forbidden")


def test_node_namespace_option_filters_the_node_pods(sandbox: Sandbox, kubia: str,
                                                     module_namespace: str) -> None:
    node = sandbox.pod(kubia)["spec"]["nodeName"]
    everywhere = json.loads(sandbox.pidmap("node", node, "-o", "json").stdout)
    only = json.loads(sandbox.pidmap("node", node, "-n", module_namespace, "-o", "json").stdout)
    default = json.loads(sandbox.pidmap("node", node, "-n", "default", "-o", "json").stdout)
    expected = json.loads(sandbox.kubectl("get", "pods", "-n", "default", "--field-selector",
                                          f"spec.nodeName={node}", "-o", "json").stdout)["items"]
    in_ours = json.loads(sandbox.kubectl("get", "pods", "-n", module_namespace, "--field-selector",
                                         f"spec.nodeName={node}", "-o", "json").stdout)["items"]
    assert sorted(m["pod"] for m in only) == sorted(p["metadata"]["name"] for p in in_ours)
    assert {m["namespace"] for m in only} <= {module_namespace}
    assert sorted(m["pod"] for m in default) == sorted(p["metadata"]["name"] for p in expected)
    assert kubia in [m["pod"] for m in default] and {m["namespace"] for m in default} == {"default"}
    in_default = sorted(m["pod"] for m in everywhere if m["namespace"] == "default")
    assert in_default == sorted(m["pod"] for m in default)
