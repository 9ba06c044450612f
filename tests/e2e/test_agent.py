"""``--via agent`` against the sandbox, with no Docker engine (``DOCKER_HOST`` at a dead socket): the
node's PIDs come only from a hostPID pod pidmap creates through the API and removes again.

Ground truth is the kernel's: each container's processes are found on this machine by their cgroup
(the container ID ``kubectl get pod`` reports), and their ``NSpid`` lines (host, node, container)
are read straight from /proc (tests/kernel.py). Nothing here trusts pidmap's own output for it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pidmap.errors import ExitStatus
from tests.conftest import Sandbox
from tests.kernel import nspid, pids_in_cgroup

pytestmark = [pytest.mark.sandbox, pytest.mark.root, pytest.mark.docker]

AGENT_LABEL = "app.kubernetes.io/managed-by=pidmap"
UNPRIVILEGED_ID = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
THREE = """apiVersion: v1
kind: Pod
metadata: {name: three}
spec:
  containers:
  - {name: one, image: busybox, command: ["sleep", "86400"]}
  - {name: two, image: busybox, command: ["sh", "-c", "sleep 86400 & sleep 86401"]}
  - {name: three, image: busybox, command: ["httpd", "-f", "-p", "8081"]}
"""


@pytest.fixture(scope="module")
def pods(sandbox: Sandbox, module_namespace: str) -> Iterator[list[str]]:
    """kubia-manual (the shared example, in default) and three, this module's own pod, in its namespace."""
    sandbox.apply_example("kubia-manual.yaml")
    sandbox.kubectl("apply", "-n", module_namespace, "-f", "-", input=THREE)
    sandbox.wait_phase("three", {"Running"}, module_namespace)
    yield ["kubia-manual", "three"]
    sandbox.kubectl("delete", "pod", "three", "-n", module_namespace, "--wait=true")


@pytest.fixture
def no_docker(sandbox: Sandbox, tmp_path: Path) -> dict[str, str]:
    return {**sandbox.env, "DOCKER_HOST": f"unix://{tmp_path}/nobody.sock"}


def agent_pods(box: Sandbox, namespace: str | None = None) -> list[dict[str, Any]]:
    where = ["-n", namespace] if namespace else ["-A"]
    items: list[dict[str, Any]] = json.loads(
        box.kubectl("get", "pods", *where, "-l", AGENT_LABEL, "-o", "json").stdout)["items"]
    return items


def wait_no_agent(box: Sandbox, namespace: str | None = None, timeout: float = 20) -> None:
    """The agent pods are gone: pidmap asked for their deletion before it exited; the API server
    finishes a deletion once the runtime has stopped the pod (grace period 0)."""
    deadline = time.monotonic() + timeout
    while (left := agent_pods(box, namespace)) and time.monotonic() < deadline:
        time.sleep(0.3)
    assert not left, [p["metadata"]["name"] for p in left]


def kernel_rows(box: Sandbox, pod: str, namespace: str) -> dict[str, set[tuple[int, int, int]]]:
    """container → {(container PID, node PID, host PID)} from the host's /proc, by cgroup."""
    rows: dict[str, set[tuple[int, int, int]]] = {}
    for status in box.pod(pod, namespace)["status"]["containerStatuses"]:
        container_id = status["containerID"].split("://")[-1]
        found = set()
        for host_pid in pids_in_cgroup(container_id):
            try:
                chain = nspid(host_pid)
            except (OSError, AssertionError):
                continue  # exited meanwhile
            if len(chain) == 3:
                found.add((chain[2], chain[1], chain[0]))
        rows[status["name"]] = found
    return rows


def mapped_rows(doc: dict[str, Any]) -> dict[str, set[tuple[int, int, int | None]]]:
    return {c["name"]: {(p["container_pid"], p["node_pid"], p["host_pid"]) for p in c["processes"]}
            for c in doc["containers"]}


@pytest.mark.parametrize("pod", ["kubia-manual", "three"])
def test_agent_node_pids_are_the_kernels(sandbox: Sandbox, pods: list[str], no_docker: dict[str, str],
                                        pod: str, module_namespace: str) -> None:
    namespace = module_namespace if pod == "three" else "default"
    before = kernel_rows(sandbox, pod, namespace)
    result = sandbox.pidmap("show", pod, "-n", namespace, "--via", "agent", "-o", "json", env=no_docker,
                            check=False)
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["via"] == "agent"
    after = kernel_rows(sandbox, pod, namespace)
    for name, rows in mapped_rows(doc).items():
        assert rows, name
        # Every row is a real process's chain, as the kernel gives it (host, node, container).
        assert rows <= (before[name] | after[name]), (name, rows, before[name])
        assert before[name] & after[name] <= rows  # and none that lived throughout is missing
    wait_no_agent(sandbox)


def test_agent_alone_gives_node_pids_when_this_machine_cannot_see_the_node(
        sandbox: Sandbox, pods: list[str], no_docker: dict[str, str], module_namespace: str) -> None:
    """Run as nobody, this machine's /proc cannot tell which namespace a process is in, so only the
    agent's own scan is used (as on a remote cluster): node PIDs = the kernel's middle NSpid field."""
    ns = module_namespace
    home = Path(tempfile.mkdtemp(prefix="ag-nobody-"))
    try:
        home.chmod(0o755)
        kubeconfig = home / "kubeconfig"
        kubeconfig.write_text(sandbox.kubeconfig.read_text())
        kubeconfig.chmod(0o644)
        env = {**no_docker, "KUBECONFIG": str(kubeconfig), "HOME": str(home)}
        argv = [*UNPRIVILEGED_ID, sys.executable, "-m", "pidmap", "show", "three", "-n", ns, "--via", "agent",
                "-o", "json"]
        result = sandbox.run(argv, env=env, check=False)
    finally:
        shutil.rmtree(home)
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    kernel = {name: {(c, n) for c, n, _ in rows} for name, rows in kernel_rows(sandbox, "three", ns).items()}
    for name, rows in mapped_rows(doc).items():
        assert all(host is None for _, _, host in rows)
        assert {(c, n) for c, n, _ in rows} <= kernel[name] and rows, (name, rows, kernel[name])
    assert any("host PIDs cannot be seen" in note for note in doc["notes"])
    wait_no_agent(sandbox)


def _pods_and_containers(docs: list[dict[str, Any]]) -> set[tuple[str, str, str, int]]:
    return {(d["namespace"], d["pod"], c["name"], p["node_pid"])
            for d in docs if not d["pod"].startswith("pidmap-agent-")
            for c in d["containers"] for p in c["processes"]
            if p["command"].split()[:1] != ["sleep"] or d["pod"] == "three"}


def test_node_and_whois_by_agent_match_docker(sandbox: Sandbox, pods: list[str],
                                              no_docker: dict[str, str], module_namespace: str) -> None:
    ns = module_namespace
    node = sandbox.pod("three", ns)["spec"]["nodeName"]
    by_docker = json.loads(sandbox.pidmap("node", node, "-o", "json").stdout)
    result = sandbox.pidmap("node", node, "--via", "agent", "-o", "json", env=no_docker, check=False)
    assert result.returncode == 0, result.stderr
    by_agent = json.loads(result.stdout)
    assert {d["pod"] for d in by_agent} == {d["pod"] for d in by_docker}
    assert _pods_and_containers(by_agent) == _pods_and_containers(by_docker)

    shown = json.loads(sandbox.pidmap("show", "three", "-n", ns, "-o", "json").stdout)
    (one,) = [c for c in shown["containers"] if c["name"] == "one"]
    node_pid = one["processes"][0]["node_pid"]
    docker_answer = json.loads(sandbox.pidmap("whois", str(node_pid), "--level", "node", "--node", node,
                                              "-o", "json").stdout)
    result = sandbox.pidmap("whois", str(node_pid), "--level", "node", "--node", node, "--via", "agent",
                            "-o", "json", env=no_docker, check=False)
    assert result.returncode == 0, result.stderr
    agent_answer = json.loads(result.stdout)
    for key in ("kind", "node", "namespace", "pod", "container", "container_id", "node_pid", "container_pid"):
        assert agent_answer[key] == docker_answer[key], key
    assert (agent_answer["pod"], agent_answer["container"]) == ("three", "one")
    wait_no_agent(sandbox)


def test_run_without_via_agent_creates_nothing(sandbox: Sandbox, pods: list[str],
                                               module_namespace: str) -> None:
    ns = module_namespace
    def uids() -> list[str]:
        out = sandbox.kubectl("get", "pods", "-A", "-o", "jsonpath={.items[*].metadata.uid}").stdout
        return sorted(out.split())

    wait_no_agent(sandbox)  # an earlier test's agent may still be finishing its deletion
    before = uids()
    node = sandbox.pod("three", ns)["spec"]["nodeName"]
    for argv in (["show", "three", "-n", ns], ["show", "--all", "-A"], ["node", node],
                 ["watch", "three", "-n", ns, "--count", "1"]):
        sandbox.pidmap(*argv)
    created = set(uids()) - set(before)  # a pod another test deleted may finish going meanwhile
    assert not created, created


# --- refusals: one line, exit 6, the cause named, nothing left ---------------------------------

def _refused(result: subprocess.CompletedProcess[str], words: str) -> None:
    assert result.returncode == ExitStatus.FORBIDDEN, (result.stdout, result.stderr)
    error, hint = result.stderr.splitlines()
    assert error.startswith("error: ") and words in error, error
    assert hint.startswith("hint: ") and "Traceback" not in result.stderr


@pytest.fixture
def baseline_namespace(sandbox: Sandbox) -> Iterator[str]:
    name = "psa-baseline"
    sandbox.kubectl("create", "-f", "-", input=(
        f"apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {name}\n  labels:\n"
        "    pod-security.kubernetes.io/enforce: baseline\n"))
    try:
        yield name
    finally:
        sandbox.kubectl("delete", "namespace", name, "--wait=true", check=False, timeout=180)


def test_pod_security_baseline_refuses_the_agent(sandbox: Sandbox, pods: list[str], no_docker: dict[str, str],
                                                 baseline_namespace: str) -> None:
    result = sandbox.pidmap("show", "kubia-manual", "--via", "agent", "--agent-namespace", baseline_namespace,
                            env=no_docker, check=False)
    _refused(result, "Pod Security")
    assert 'violates PodSecurity "baseline:latest"' in result.stderr and "hostPID=true" in result.stderr
    assert "pod-security.kubernetes.io/enforce=privileged" in result.stderr.splitlines()[1]
    assert not agent_pods(sandbox, baseline_namespace)


@pytest.fixture
def forbidden(sandbox: Sandbox) -> Iterator[None]:
    try:
        yield
    finally:
        sandbox.pidmap("sandbox", "forbid", "--name", sandbox.name)  # no rule: allow everything again


@pytest.mark.parametrize(("rule", "words"), [("create:pods", "RBAC: creating the agent pod is not allowed"),
                                             ("create:pods/exec", "RBAC: exec into the agent pod")])
def test_rbac_refusals_name_rbac_and_leave_nothing(sandbox: Sandbox, pods: list[str],
                                                   no_docker: dict[str, str], forbidden: None, rule: str,
                                                   words: str) -> None:
    sandbox.pidmap("sandbox", "forbid", "--name", sandbox.name, rule)
    node = sandbox.pod("kubia-manual")["spec"]["nodeName"]
    result = sandbox.pidmap("node", node, "--via", "agent", env=no_docker, check=False)
    _refused(result, words)
    wait_no_agent(sandbox)


def test_an_image_that_cannot_be_pulled_is_named(sandbox: Sandbox, pods: list[str],
                                                 no_docker: dict[str, str]) -> None:
    result = sandbox.pidmap("show", "kubia-manual", "--via", "agent", "--agent-image", "no-such/image:1",
                            env=no_docker, check=False)
    _refused(result, "the agent image 'no-such/image:1' cannot be pulled")
    wait_no_agent(sandbox)


# --- clean-up however the run ends ----------------------------------------------------------------

def _start_then_wait_for_agent(box: Sandbox, env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    run = subprocess.Popen([sys.executable, "-m", "pidmap", *args], env=env, text=True,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while not agent_pods(box):
        assert run.poll() is None, run.communicate()
        assert time.monotonic() < deadline, "no agent pod appeared"
        time.sleep(0.2)
    return run


def test_sigint_mid_run_deletes_the_agent(sandbox: Sandbox, pods: list[str],
                                          no_docker: dict[str, str]) -> None:
    # A watch holds its agent between refreshes: Ctrl-C arrives while the agent pod exists.
    run = _start_then_wait_for_agent(sandbox, no_docker, "watch", "kubia-manual", "--via", "agent",
                                     "--interval", "1", "-o", "json")
    run.send_signal(signal.SIGINT)
    _, err = run.communicate(timeout=60)
    assert run.returncode == 0, err  # a watch ends with Ctrl-C: exit 0
    assert "Traceback" not in err
    wait_no_agent(sandbox)


def test_sigterm_mid_run_deletes_the_agent(sandbox: Sandbox, pods: list[str],
                                           no_docker: dict[str, str], module_namespace: str) -> None:
    ns = module_namespace
    run = _start_then_wait_for_agent(sandbox, no_docker, "show", "three", "-n", ns, "--via", "agent")
    run.send_signal(signal.SIGTERM)
    _, err = run.communicate(timeout=60)
    assert run.returncode in (0, ExitStatus.INTERRUPTED), err  # it may have finished first
    assert "Traceback" not in err
    wait_no_agent(sandbox)


def test_sigkill_leaves_an_agent_that_its_deadline_ends_and_the_next_run_reaps(
        sandbox: Sandbox, pods: list[str], no_docker: dict[str, str]) -> None:
    deadline = 10
    run = _start_then_wait_for_agent(sandbox, no_docker, "watch", "kubia-manual", "--via", "agent",
                                     "--agent-deadline", str(deadline), "--interval", "1", "-o", "json")
    os.kill(run.pid, signal.SIGKILL)
    run.communicate(timeout=30)
    (left,) = agent_pods(sandbox)
    name = left["metadata"]["name"]
    # activeDeadlineSeconds ends it (the kubelet fails it with DeadlineExceeded) within deadline + 30 s.
    ends = time.monotonic() + deadline + 30
    while sandbox.pod(name)["status"].get("phase") not in ("Failed", "Succeeded"):
        assert time.monotonic() < ends, sandbox.pod(name)["status"]
        time.sleep(0.5)
    # The object stays (as on a real cluster) until the next agent run reaps it by label and age.
    result = sandbox.pidmap("show", "kubia-manual", "--via", "agent", env=no_docker, check=False)
    assert result.returncode == 0, result.stderr
    wait_no_agent(sandbox)


@pytest.mark.tool("kubectl")
def test_kubectl_pidmap_tab_completes_through_the_installed_executable(sandbox: Sandbox,
                                                                       pods: list[str]) -> None:
    """kubectl 1.26+ runs kubectl_complete-pidmap (cobra's __complete protocol) for `kubectl pidmap <TAB>`."""
    scripts = Path(sys.executable).parent
    assert (scripts / "kubectl_complete-pidmap").is_file(), "installed with the package (console script)"
    env = {**sandbox.env, "PATH": f"{scripts}{os.pathsep}{sandbox.env.get('PATH', '')}"}
    result = sandbox.run(["kubectl", "__complete", "pidmap", "show", "kubia"], env=env)
    lines = result.stdout.splitlines()
    assert "kubia-manual\tRunning" in lines and lines[-1] == ":4", result.stdout
    result = sandbox.run(["kubectl", "__complete", "pidmap", "show", "--via", ""], env=env)
    assert "agent" in result.stdout.splitlines()
