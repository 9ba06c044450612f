"""Exit codes that need the sandbox, each produced through the real CLI in a subprocess.

3 for `node` and `whois --level node` with a node no cluster or engine has; 6 for a 403 on reading
pods (the sandbox's RBAC stand-in, `pidmap sandbox forbid`); 7 for a node that is no Docker
container where Docker was asked for (a name no one knows, and a node of the cluster that a second,
empty Docker engine does not hold); 9 for a shell-less container whose host side cannot be seen,
and for a node agent that ends before it scans. The codes that need no cluster are in
test_exit_codes_offline.py; tests/unit/test_exit_code_coverage.py keeps the README's table and the
tests that produce each code in step.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pidmap.errors import ExitStatus
from tests.conftest import Pods, Sandbox
from tests.e2e.test_agent import wait_no_agent
from tests.e2e.test_no_docker import ps_in
from tests.grid import node_view_of
from tests.kernel import cmdlines, container_init

pytestmark = [pytest.mark.sandbox, pytest.mark.root, pytest.mark.docker]


def assert_error(result: subprocess.CompletedProcess[str], status: ExitStatus, message: str) -> list[str]:
    """Exit ``status``, nothing on stdout, and stderr exactly `error: ...` (containing ``message``)
    then `hint: ...`: no traceback."""
    assert result.returncode == status, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 2, result.stderr
    assert lines[0].startswith("error: ") and message in lines[0], result.stderr
    assert lines[1].startswith("hint: ") and len(lines[1]) > len("hint: "), result.stderr
    assert "Traceback" not in result.stderr
    return lines


def _cluster_nodes(sandbox: Sandbox) -> list[str]:
    return sandbox.kubectl("get", "nodes", "-o", "jsonpath={.items[*].metadata.name}").stdout.split()


def _docker_names() -> list[str]:
    return subprocess.run(["docker", "ps", "-a", "--format", "{{.Names}}"], capture_output=True, text=True,
                          check=True).stdout.split()


@pytest.fixture(scope="module")
def ghost(sandbox: Sandbox) -> str:
    """A node name neither the cluster (kubectl) nor the Docker engine (docker ps) knows."""
    name = f"{sandbox.name}-ghost"
    assert name not in _cluster_nodes(sandbox) and name not in _docker_names()
    return name


def test_node_not_in_the_cluster_is_3(sandbox: Sandbox, ghost: str) -> None:
    lines = assert_error(sandbox.pidmap("node", ghost, check=False), ExitStatus.NOT_FOUND,
                         f'node "{ghost}" not found')
    assert "kubectl get nodes" in lines[1]


def test_whois_at_node_level_on_an_unknown_node_is_3(sandbox: Sandbox, ghost: str) -> None:
    lines = assert_error(sandbox.pidmap("whois", "1", "--level", "node", "--node", ghost, check=False),
                         ExitStatus.NOT_FOUND, f"node {ghost} is not a running node container")
    # The hint lists the node containers there are: this sandbox's among them (from kubectl).
    for node in _cluster_nodes(sandbox):
        assert node in lines[1]


def test_node_that_is_no_docker_container_with_via_docker_is_7(sandbox: Sandbox, ghost: str) -> None:
    # --via docker asks for the node to be read through the engine: no container of that name is
    # there (docker ps above), so nothing can be read: 7, not a fallback to the container level.
    assert_error(sandbox.pidmap("node", ghost, "--via", "docker", check=False), ExitStatus.DOCKER,
                 f"node {ghost} is not a Docker container on this engine")


def _mounts_under(path: Path) -> list[str]:
    """Mount points at or below ``path``, from the kernel's mount table (mountinfo's 5th field)."""
    text = Path("/proc/self/mountinfo").read_text()
    points = [line.split()[4] for line in text.splitlines()]
    return [point for point in points if point == str(path) or point.startswith(f"{path}/")]


def _processes_naming(path: Path) -> list[int]:
    """PIDs whose command line mentions ``path`` (the engine and the containerd it started)."""
    return sorted(pid for pid, raw in cmdlines().items() if os.fsencode(path) in raw)


def _answers(host: str) -> bool:
    """The engine at ``host`` answers `docker ps` (a socket that is open but not yet serving, as
    while dockerd starts, is no answer)."""
    try:
        return subprocess.run(["docker", "-H", host, "ps", "-aq"], capture_output=True, text=True,
                              check=False, timeout=10).returncode == 0
    except subprocess.TimeoutExpired:
        return False


@pytest.fixture(scope="module")
def empty_engine() -> Iterator[str]:
    """A second, real Docker engine (dockerd with its own data, exec root, socket and containerd
    namespaces) that holds no container: what pidmap meets on a machine whose engine is not the one
    running the cluster's nodes. Yields its DOCKER_HOST. At the end the engine and the containerd it
    started are gone, and so are its mounts and files: checked, not assumed."""
    home = Path(tempfile.mkdtemp(prefix="pidmap-engine-", dir="/tmp"))  # short: socket paths <108
    (home / "daemon.json").write_text("{}")  # not /etc/docker/daemon.json: the main engine's
    host = f"unix://{home}/docker.sock"
    tag = "".join(ch for ch in home.name if ch.isalnum())  # a containerd namespace: letters, digits
    log = (home / "dockerd.log").open("w")
    engine = subprocess.Popen(
        ["dockerd", "-H", host, "--config-file", str(home / "daemon.json"), "--data-root", str(home / "data"),
         "--exec-root", str(home / "exec"), "--pidfile", str(home / "dockerd.pid"),
         "--containerd-namespace", tag, "--containerd-plugins-namespace", f"{tag}p",
         "--iptables=false", "--ip-masq=false", "--bridge=none"],
        stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while not _answers(host):
            assert engine.poll() is None, (home / "dockerd.log").read_text()[-2000:]
            assert time.monotonic() < deadline, "the second dockerd did not answer within 60 s"
            time.sleep(0.2)
        listed = subprocess.run(["docker", "-H", host, "ps", "-aq"], capture_output=True, text=True,
                                check=True, timeout=10).stdout
        assert listed.split() == []
        yield host
    finally:
        engine.terminate()
        try:
            engine.wait(timeout=60)
        except subprocess.TimeoutExpired:
            engine.kill()
        log.close()
        deadline = time.monotonic() + 30  # its containerd ends after it
        while (left := _processes_naming(home)) and time.monotonic() < deadline:
            time.sleep(0.2)
        for pid in left:  # nothing of it outlives the module, whatever the checks below say
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        mounts = _mounts_under(home)
        for point in reversed(mounts):  # a crash skips dockerd's own unmount
            subprocess.run(["umount", "-l", point], check=False)
        shutil.rmtree(home, ignore_errors=bool(left or mounts))
        assert not left, f"the second engine left processes: {left}"
        assert not mounts, f"the second engine left mounts: {mounts}"


@pytest.mark.tool("dockerd")
def test_node_of_the_cluster_that_is_no_container_here_is_7(sandbox: Sandbox, running_examples: Pods,
                                                            empty_engine: str) -> None:
    # The node is real (kubectl lists it and the pod runs on it) and a Docker engine answers, but
    # the engine is not the one that holds the node: where Docker was asked for, 7.
    node = running_examples["kubia-manual"]["spec"]["nodeName"]
    assert node in _cluster_nodes(sandbox)
    env = {**sandbox.env, "DOCKER_HOST": empty_engine}
    for argv in (["show", "kubia-manual", "--via", "docker"], ["show", "kubia-manual", "--via", "local"],
                 ["node", node, "--via", "docker"]):
        assert_error(sandbox.pidmap(*argv, env=env, check=False), ExitStatus.DOCKER,
                     f"node {node} is not a Docker container on this engine")
    # Without --via, pidmap maps what it can (the container level, from the exec) and says why the
    # rest is missing: exit 0, PID 1 as the container sees it (kubectl exec ps, the independent view).
    shown = sandbox.pidmap("show", "kubia-manual", "-o", "json", env=env, check=False)
    assert shown.returncode == 0, shown.stderr
    doc = json.loads(shown.stdout)
    (container,) = doc["containers"]
    seen = {p["container_pid"]: p["command"] for p in container["processes"]}
    assert seen == ps_in(sandbox, "kubia-manual", "kubia")
    assert all(p["node_pid"] is None and p["host_pid"] is None for p in container["processes"])
    assert any(f"node {node} is not a Docker container on this engine" in note and "--via agent" in note
               for note in doc["notes"]), doc["notes"]
    # The positive control: the engine that holds the node maps the same pod to the host (exit 0).
    # Through the engine there are node PIDs (no host PIDs): NSpid as the node reads it (node, container).
    mapped = json.loads(sandbox.pidmap("show", "kubia-manual", "--via", "docker", "-o", "json").stdout)
    rows = mapped["containers"][0]["processes"]
    assert {p["container_pid"] for p in rows} == {p["container_pid"] for p in container["processes"]}
    in_node = node_view_of(node, [p["node_pid"] for p in rows])
    for proc in rows:
        assert in_node[proc["node_pid"]][0] == [proc["node_pid"], proc["container_pid"]], proc


@pytest.fixture(scope="module")
def shellless(sandbox: Sandbox, module_namespace: str) -> Iterator[str]:
    """A pod of the pause image (one static binary, no shell) in the module's namespace."""
    sandbox.kubectl("run", "nosh", "-n", module_namespace, "--image=registry.k8s.io/pause:3.10")
    sandbox.wait_phase("nosh", {"Running"}, module_namespace)
    no_sh = sandbox.kubectl("exec", "nosh", "-n", module_namespace, "--", "sh", "-c", "true", check=False)
    assert no_sh.returncode != 0 and "executable file not found" in no_sh.stderr, no_sh.stderr
    yield "nosh"
    sandbox.kubectl("delete", "pod", "nosh", "-n", module_namespace, "--wait=true")


def test_no_shell_and_no_host_side_is_9(sandbox: Sandbox, shellless: str, module_namespace: str,
                                        tmp_path: Path) -> None:
    # No Docker engine answers, so the node's host side cannot be read; the probe has no shell.
    env = {**sandbox.env, "DOCKER_HOST": f"unix://{tmp_path}/nobody.sock"}
    assert_error(sandbox.pidmap("show", shellless, "-n", module_namespace, env=env, check=False),
                 ExitStatus.EXEC, f'container "{shellless}" has no shell and its processes cannot be seen '
                 "from the host side either")
    # The positive control: with the engine, the same pod maps from the host side (exit 0).
    shown = json.loads(sandbox.pidmap("show", shellless, "-n", module_namespace, "-o", "json").stdout)
    assert [p["command"] for p in shown["containers"][0]["processes"]] == ["/pause"]


def _pods_in(sandbox: Sandbox, namespace: str) -> list[str]:
    return sandbox.kubectl("get", "pods", "-n", namespace, "-o",
                           "jsonpath={.items[*].metadata.name}").stdout.split()


def test_agent_that_ends_before_it_scans_is_9(sandbox: Sandbox, shellless: str,
                                              module_namespace: str) -> None:
    # The pause image has no `sleep` for the agent to run: its pod fails before any scan.
    before = _pods_in(sandbox, module_namespace)
    result = sandbox.pidmap("show", shellless, "-n", module_namespace, "--via", "agent",
                            "--agent-image", "registry.k8s.io/pause:3.10",
                            "--agent-namespace", module_namespace, check=False, timeout=180)
    assert_error(result, ExitStatus.EXEC, "ended before it could scan")
    # pidmap asked for the agent pod's deletion before it exited; the API server finishes it once the
    # runtime has stopped the pod (grace period 0).
    wait_no_agent(sandbox, module_namespace)
    assert _pods_in(sandbox, module_namespace) == before


@pytest.fixture
def forbid(sandbox: Sandbox) -> Iterator[None]:
    """The sandbox's RBAC stand-in answers reading pods with 403 until the test ends."""
    sandbox.pidmap("sandbox", "forbid", "--name", sandbox.name, "get:pods", "list:pods", "watch:pods")
    try:
        yield
    finally:
        sandbox.pidmap("sandbox", "forbid", "--name", sandbox.name)


READS = [
    (["show", "kubia-manual"], "get"),
    (["show", "--all"], "list"),
    (["node", "NODE"], "list"),
    (["watch", "kubia-manual", "--count", "1"], "get"),
    (["whois", "PID"], "list"),
]


@pytest.mark.parametrize(("argv", "verb"), READS, ids=[" ".join(a) for a, _ in READS])
def test_reading_pods_forbidden_is_6(sandbox: Sandbox, running_examples: Pods, forbid: None,
                                     argv: list[str], verb: str) -> None:
    pod = running_examples["kubia-manual"]
    (status,) = pod["status"]["containerStatuses"]
    # A host PID of the pod (from the kernel's cgroups) and its node (from kubectl).
    fill = {"PID": str(container_init(status["containerID"].split("://", 1)[1])),
            "NODE": pod["spec"]["nodeName"]}
    # kubectl, the independent reader, is refused the same way.
    denied = sandbox.kubectl("get", "pods", *(["kubia-manual"] if verb == "get" else []), check=False)
    assert denied.returncode != 0 and "(Forbidden)" in denied.stderr, denied.stderr
    assert f'cannot {verb} resource "pods"' in denied.stderr, denied.stderr
    lines = assert_error(sandbox.pidmap(*[fill.get(arg, arg) for arg in argv], check=False),
                         ExitStatus.FORBIDDEN, "reading pod")
    assert "is forbidden" in lines[0] and f"cannot {verb} resource" in lines[0], lines
