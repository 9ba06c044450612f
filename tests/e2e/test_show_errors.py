"""`pidmap show` errors against the sandbox: one line, a hint, the documented exit code, no traceback."""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pidmap.errors import ExitStatus
from tests.conftest import Sandbox

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


def test_shell_metacharacters_never_reach_the_cluster(sandbox: Sandbox) -> None:
    _assert_error(sandbox.pidmap("show", "kubia-manual;touch /tmp/pc-pwned", check=False), ExitStatus.USAGE,
                  "invalid pod name 'kubia-manual;touch /tmp/pc-pwned': not a DNS-1123 subdomain")
    assert not Path("/tmp/pc-pwned").exists()


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


CRASHLOOP = """apiVersion: v1
kind: Pod
metadata: {name: pc-crashloop}
spec:
  containers:
  - name: flappy
    image: busybox:1.36
    command: ["sh", "-c", "sleep 0.5; exit 1"]
  - name: churn
    image: busybox:1.36
    command: ["sh", "-c", "while true; do sleep 0.05; done"]
"""


def test_process_exits_and_container_restarts_while_collecting(sandbox: Sandbox,
                                                              module_namespace: str) -> None:
    """Processes that exit between the probe and the host scan, and a container that restarts, are
    reported (flags / notes) or simply absent — never a traceback, never a PID at the wrong level."""
    ns = module_namespace
    sandbox.kubectl("apply", "-n", ns, "-f", "-", input=CRASHLOOP)
    sandbox.wait_phase("pc-crashloop", {"Running"}, ns)
    seen_gone = False
    try:
        deadline = time.monotonic() + 40
        runs = 0
        while time.monotonic() < deadline and (runs < 10 or not seen_gone):
            runs += 1
            result = sandbox.pidmap("show", "pc-crashloop", "-n", ns, "-o", "json", check=False)
            assert "Traceback" not in result.stderr
            assert result.returncode in (ExitStatus.OK, ExitStatus.NOT_RUNNING), result.stderr
            doc = json.loads(result.stdout)
            churn = next(c for c in doc["containers"] if c["name"] == "churn")
            for proc in churn["processes"]:
                if "gone" in proc["flags"]:
                    seen_gone = True
                    assert proc["host_pid"] is None and proc["node_pid"] is None
                elif proc["host_pid"] is not None:
                    assert proc["container_pid"] is not None and proc["node_pid"] is not None
            assert all(isinstance(n, str) for n in doc["notes"])
        # `sleep 0.05` every 50 ms: across runs some probe sees one the host scan no longer has.
        assert seen_gone
    finally:
        sandbox.kubectl("delete", "pod", "pc-crashloop", "-n", ns, "--wait=true", check=False)


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
