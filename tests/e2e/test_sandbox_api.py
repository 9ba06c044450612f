"""The stand-in API server, judged by clients nobody here wrote: real kubectl and the official
Python client, against the real sandbox (Docker nodes, nested PID namespaces).

Ground truth comes from outside the server: Docker (which node containers exist), the host's /proc
(which processes carry a container's ID in their cgroup), and the Kubernetes rules kubectl users see.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import EXAMPLES, Sandbox, _sandbox_up, docker_answers
from tests.kernel import pids_in_cgroup

pytestmark = [pytest.mark.sandbox, pytest.mark.docker, pytest.mark.root]


def _labelled_containers(sandbox: Sandbox) -> list[str]:
    out = subprocess.run(
        ["docker", "ps", "--filter", f"label=io.pidmap.sandbox={sandbox.name}", "--format", "{{.Names}}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return sorted(out.split())


def _columns(table_text: str) -> list[dict[str, str]]:
    """Rows of kubectl's table output, split at the header's column starts."""
    lines = [line for line in table_text.splitlines() if line.strip()]
    header = lines[0]
    starts = [match.start() for match in re.finditer(r"(?:^|(?<=\s\s))\S", header)]
    names = [header[start:end].strip() for start, end in zip(starts, [*starts[1:], None], strict=True)]
    rows = []
    for line in lines[1:]:
        cells = [line[start:end].strip() for start, end in zip(starts, [*starts[1:], None], strict=True)]
        rows.append(dict(zip(names, cells, strict=True)))
    return rows


@pytest.fixture(scope="module")
def kubia(sandbox: Sandbox) -> Iterator[dict[str, Any]]:
    # Plain `kubectl apply`, no --validate=false: the server's OpenAPI v3 must satisfy kubectl.
    pod = sandbox.apply_example("kubia-manual.yaml")
    yield pod


@pytest.fixture
def namespace(sandbox: Sandbox) -> Iterator[str]:
    name = f"pb-{uuid.uuid4().hex[:6]}"
    sandbox.kubectl("create", "namespace", name)
    yield name
    sandbox.kubectl("delete", "namespace", name, "--wait=true", check=False, timeout=60)


def _python_api(kubeconfig: Path) -> Any:
    from kubernetes import client, config

    api_client = config.new_client_from_config(config_file=str(kubeconfig))  # type: ignore[no-untyped-call]
    return client.CoreV1Api(api_client)


# ------------------------------------------------------------------------------------------------
# kubectl


def test_discovery_answers_like_a_real_server(sandbox: Sandbox) -> None:
    resources = json.loads(sandbox.kubectl("get", "--raw", "/api/v1").stdout)
    by_name = {r["name"]: r for r in resources["resources"]}
    assert by_name["pods"]["shortNames"] == ["po"] and by_name["pods"]["namespaced"] is True
    assert "create" in by_name["pods/exec"]["verbs"]
    assert by_name["nodes"]["namespaced"] is False
    assert json.loads(sandbox.kubectl("get", "--raw", "/api").stdout)["versions"] == ["v1"]
    missing = sandbox.kubectl("get", "--raw", "/apis/pidmap.example/v1", check=False)
    assert missing.returncode != 0 and "NotFound" in missing.stderr
    assert "v1.32" in sandbox.kubectl("version", "-o", "json").stdout


def test_get_nodes_lists_the_docker_node_containers(sandbox: Sandbox) -> None:
    rows = _columns(sandbox.kubectl("get", "nodes", "-o", "wide").stdout)
    assert sorted(row["NAME"] for row in rows) == _labelled_containers(sandbox)
    assert all(row["STATUS"] == "Ready" for row in rows)
    assert [row["ROLES"] for row in rows].count("control-plane") == 1
    assert all(row["CONTAINER-RUNTIME"].startswith("containerd://") for row in rows)
    assert all(row["VERSION"].startswith("v1.32.") for row in rows)
    assert sandbox.kubectl("get", "no", "-o", "name").stdout.split() == [
        f"node/{row['NAME']}" for row in rows
    ]


def test_apply_then_get_wide_shows_it_running_on_a_node(sandbox: Sandbox, kubia: dict[str, Any]) -> None:
    rows = {row["NAME"]: row for row in _columns(sandbox.kubectl("get", "pods", "-o", "wide").stdout)}
    row = rows["kubia-manual"]
    assert row["STATUS"] == "Running" and row["READY"] == "1/1" and row["RESTARTS"] == "0"
    assert row["NODE"] in _labelled_containers(sandbox)
    assert row["NOMINATED NODE"] == "<none>" and row["READINESS GATES"] == "<none>"
    # Re-applying the same manifest is a no-op; a label change goes through as a patch.
    assert "unchanged" in sandbox.kubectl("apply", "-f", str(EXAMPLES / "kubia-manual.yaml")).stdout


def test_exec_ps_shows_node_app_js_as_pid_1(sandbox: Sandbox, kubia: dict[str, Any]) -> None:
    out = sandbox.kubectl("exec", "kubia-manual", "--", "ps", "aux").stdout
    pid1 = [line for line in out.splitlines() if re.match(r"^\s*(\S+\s+)?1\s", line)]
    assert pid1 and pid1[0].rstrip().endswith("node app.js"), out


def test_exec_exit_code_and_missing_command(sandbox: Sandbox, kubia: dict[str, Any]) -> None:
    assert sandbox.kubectl("exec", "kubia-manual", "--", "sh", "-c", "exit 3", check=False).returncode == 3
    both = sandbox.kubectl("exec", "kubia-manual", "--", "sh", "-c", "echo out; echo err >&2")
    assert both.stdout == "out\n" and both.stderr == "err\n"
    echoed = sandbox.kubectl("exec", "-i", "kubia-manual", "--", "cat", input="through stdin\n")
    assert echoed.stdout == "through stdin\n"
    missing = sandbox.kubectl("exec", "kubia-manual", "--", "no-such-binary", check=False)
    assert missing.returncode != 0
    assert "executable file not found in $PATH" in missing.stderr


def _host_pids_running(argv: list[str]) -> list[int]:
    wanted = "\0".join(argv).encode() + b"\0"
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and (entry / "cmdline").read_bytes() == wanted:
                pids.append(int(entry.name))
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
    return pids


def test_exec_command_dies_with_its_client(sandbox: Sandbox, kubia: dict[str, Any]) -> None:
    marker = ["sleep", str(4000 + os.getpid() % 1000)]
    client = subprocess.Popen(
        ["kubectl", "exec", "kubia-manual", "--", *marker],
        env=sandbox.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while not _host_pids_running(marker):
            assert time.monotonic() < deadline, "the exec'd command never showed up in the host's /proc"
            time.sleep(0.2)
    finally:
        client.kill()
        client.wait()
    deadline = time.monotonic() + 15
    while _host_pids_running(marker):
        assert time.monotonic() < deadline, "the exec'd command outlived its client"
        time.sleep(0.2)


def test_exec_errors(sandbox: Sandbox, kubia: dict[str, Any]) -> None:
    wrong = sandbox.kubectl("exec", "kubia-manual", "-c", "nope", "--", "true", check=False)
    assert wrong.returncode != 0
    assert "container nope is not valid for pod kubia-manual" in wrong.stderr
    absent = sandbox.kubectl("exec", "no-such-pod", "--", "true", check=False)
    assert 'pods "no-such-pod" not found' in absent.stderr


def test_pod_status_column_follows_kubectl_rules(sandbox: Sandbox) -> None:
    sandbox.apply_example("completes.yaml", {"Succeeded"})
    sandbox.apply_example("fails.yaml", {"Failed"})
    try:
        rows = {
            row["NAME"]: row for row in _columns(sandbox.kubectl("get", "pods", "completes", "fails").stdout)
        }
        assert rows["completes"]["STATUS"] == "Completed" and rows["completes"]["READY"] == "0/1"
        assert rows["fails"]["STATUS"] == "Error"
        completed = sandbox.kubectl("exec", "completes", "--", "true", check=False)
        assert "cannot exec into a container in a completed pod" in completed.stderr
    finally:
        sandbox.kubectl("delete", "pod", "completes", "fails", "--wait=true", check=False)


def test_selectors_and_all_namespaces(sandbox: Sandbox, namespace: str) -> None:
    for name, labels in (("pb-a", "app=a,tier=web"), ("pb-b", "app=b,tier=db"), ("pb-c", "app=c")):
        sandbox.kubectl(
            "run",
            name,
            "-n",
            namespace,
            "--image=busybox",
            f"--labels={labels}",
            "--restart=Never",
            "--",
            "sleep",
            "3600",
        )

    def names(*selector: str) -> list[str]:
        out = sandbox.kubectl("get", "pods", "-n", namespace, *selector, "-o", "name").stdout
        return sorted(line.removeprefix("pod/") for line in out.split())

    assert names("-l", "app=a") == ["pb-a"]
    assert names("-l", "app!=a") == ["pb-b", "pb-c"]
    assert names("-l", "app in (a,b)") == ["pb-a", "pb-b"]
    assert names("-l", "app notin (a,b)") == ["pb-c"]
    assert names("-l", "tier") == ["pb-a", "pb-b"]
    assert names("-l", "!tier") == ["pb-c"]
    assert names("-l", "tier=web,app=a") == ["pb-a"]
    assert names("--field-selector", "metadata.name=pb-b") == ["pb-b"]
    sandbox.wait_phase("pb-a", {"Running"}, namespace)
    node = sandbox.pod("pb-a", namespace)["spec"]["nodeName"]
    assert node in _labelled_containers(sandbox)
    on_node = names("--field-selector", f"spec.nodeName={node}")
    assert "pb-a" in on_node
    everywhere = json.loads(sandbox.kubectl("get", "pods", "-A", "-o", "json").stdout)["items"]
    expected = sorted(
        p["metadata"]["name"]
        for p in everywhere
        if p["metadata"]["namespace"] == namespace and p["spec"].get("nodeName") == node
    )
    assert on_node == expected
    assert names("--field-selector", "status.phase=Running,metadata.name=pb-a") == ["pb-a"]
    rows = _columns(sandbox.kubectl("get", "pods", "-A").stdout)
    assert {(r["NAMESPACE"], r["NAME"]) for r in rows} >= {(namespace, "pb-a"), (namespace, "pb-b")}
    sandbox.kubectl("label", "pod", "pb-c", "-n", namespace, "tier=cache")
    assert names("-l", "tier=cache") == ["pb-c"]
    bad = sandbox.kubectl("get", "pods", "-n", namespace, "--field-selector", "spec.bogus=1", check=False)
    assert bad.returncode != 0 and "field label not supported" in bad.stderr


def test_namespace_errors(sandbox: Sandbox) -> None:
    missing = sandbox.kubectl("run", "x", "-n", "pb-no-such-ns", "--image=busybox", check=False)
    assert 'namespaces "pb-no-such-ns" not found' in missing.stderr
    names = sandbox.kubectl("get", "ns", "-o", "name").stdout.split()
    assert {"namespace/default", "namespace/kube-system", "namespace/kube-public"} <= set(names)
    invalid = sandbox.kubectl("run", "Bad_Name", "--image=busybox", check=False)
    assert invalid.returncode != 0 and "Invalid value" in invalid.stderr


def test_delete_returns_and_the_processes_are_gone(sandbox: Sandbox, namespace: str) -> None:
    manifest = yaml.safe_load((EXAMPLES / "kubia-manual.yaml").read_text())
    sandbox.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(manifest))
    pod = sandbox.wait_phase("kubia-manual", {"Running"}, namespace)
    container_id = pod["status"]["containerStatuses"][0]["containerID"].split("://", 1)[1]
    assert pids_in_cgroup(container_id), "the running container has no process on the host"
    watch = subprocess.Popen(
        ["kubectl", "get", "pods", "-n", namespace, "-w", "-o", "name"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=sandbox.env,
    )
    try:
        started = time.monotonic()
        sandbox.kubectl("delete", "pod", "kubia-manual", "-n", namespace, timeout=60)
        assert time.monotonic() - started < 45
        assert pids_in_cgroup(container_id) == []
        gone = sandbox.kubectl("get", "pod", "kubia-manual", "-n", namespace, check=False)
        assert gone.returncode != 0 and "NotFound" in gone.stderr
    finally:
        watch.terminate()
        watched, _ = watch.communicate(timeout=10)
    assert "pod/kubia-manual" in watched  # the watch saw it (ADDED, then the updates)


# ------------------------------------------------------------------------------------------------
# The official Python client


def test_python_client_exec_matches_kubectl(sandbox: Sandbox, kubia: dict[str, Any]) -> None:
    from kubernetes.stream import stream

    api = _python_api(sandbox.kubeconfig)
    out = stream(
        api.connect_get_namespaced_pod_exec,
        "kubia-manual",
        "default",
        command=["ps", "aux"],
        stdout=True,
        stderr=True,
        stdin=False,
        tty=False,
    )
    kubectl_out = sandbox.kubectl("exec", "kubia-manual", "--", "ps", "aux").stdout

    def pid1(text: str) -> str:
        # procps ps aux: USER PID %CPU %MEM VSZ RSS TTY STAT START TIME COMMAND
        return next(line.split(None, 10)[10] for line in text.splitlines() if line.split()[1:2] == ["1"])

    assert pid1(out) == pid1(kubectl_out) == "node app.js"
    version = __import__("kubernetes").client.VersionApi(api.api_client).get_code()
    assert version.git_version.startswith("v1.32.")
    nodes = api.list_node().items
    assert sorted(n.metadata.name for n in nodes) == _labelled_containers(sandbox)
    assert all(n.status.node_info.kubelet_version.startswith("v1.32.") for n in nodes)


@pytest.mark.parametrize("command, code", [(["true"], 0), (["sh", "-c", "exit 3"], 3)])
def test_python_client_returncode(
    sandbox: Sandbox, kubia: dict[str, Any], command: list[str], code: int
) -> None:
    from kubernetes.stream import stream

    api = _python_api(sandbox.kubeconfig)
    ws = stream(
        api.connect_get_namespaced_pod_exec,
        "kubia-manual",
        "default",
        command=command,
        stdout=True,
        stderr=True,
        stdin=False,
        tty=False,
        _preload_content=False,
    )
    ws.run_forever(timeout=20)
    assert ws.returncode == code


def _exec_error(api: Any, name: str, **extra: Any) -> Any:
    from kubernetes.client.exceptions import ApiException
    from kubernetes.stream import stream

    with pytest.raises(ApiException) as caught:
        stream(
            api.connect_get_namespaced_pod_exec,
            name,
            "default",
            command=["true"],
            stdout=True,
            stderr=True,
            stdin=False,
            tty=False,
            **extra,
        )
    return caught.value


def test_python_client_errors_before_upgrade(sandbox: Sandbox, kubia: dict[str, Any], tmp_path: Path) -> None:
    from kubernetes.client.exceptions import ApiException

    api = _python_api(sandbox.kubeconfig)
    assert "404" in _exec_error(api, "no-such-pod").reason
    bad_container = _exec_error(api, "kubia-manual", container="nope")
    assert "400" in bad_container.reason
    with pytest.raises(ApiException) as caught:
        api.read_namespaced_pod("no-such-pod", "default")
    assert caught.value.status == 404 and json.loads(caught.value.body or "{}")["reason"] == "NotFound"

    config = yaml.safe_load(sandbox.kubeconfig.read_text())
    for user in config["users"]:
        user["user"]["token"] = "not-the-token"
    wrong = tmp_path / "wrong-token.kubeconfig"
    wrong.write_text(yaml.safe_dump(config))
    wrong_api = _python_api(wrong)
    with pytest.raises(ApiException) as caught:
        wrong_api.list_namespaced_pod("default")
    assert caught.value.status == 401 and json.loads(caught.value.body or "{}")["kind"] == "Status"
    assert "401" in _exec_error(wrong_api, "kubia-manual").reason


@pytest.fixture(scope="module")
def forbidding_sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    if not docker_answers():
        pytest.fail("no Docker engine answers: run scripts/install-docker.sh")
    name = os.environ.get("PIDMAP_TEST_SANDBOX", "pidmap-test") + "-forbid"
    box = _sandbox_up(name, "kind", tmp_path_factory.mktemp("forbid-home"), ["--forbid-exec"])
    try:
        yield box
    finally:
        box.pidmap("sandbox", "down", "--name", name, check=False, timeout=300)


def test_exec_forbidden_is_403_with_rbac_wording(forbidding_sandbox: Sandbox) -> None:
    box = forbidding_sandbox
    box.apply_example("kubia-manual.yaml")
    denied = box.kubectl("exec", "kubia-manual", "--", "true", check=False)
    assert denied.returncode != 0
    assert (
        'pods "kubia-manual" is forbidden: User' in denied.stderr
        and 'cannot create resource "pods/exec" in API group "" in the namespace "default"' in denied.stderr
    )
    error = _exec_error(_python_api(box.kubeconfig), "kubia-manual")
    assert "403" in error.reason


def test_logs_show_what_the_container_printed(sandbox: Sandbox, kubia: dict[str, Any]) -> None:
    assert "Kubia server starting..." in sandbox.kubectl("logs", "kubia-manual").stdout
    sandbox.apply_example("fails.yaml", {"Failed"})
    try:
        # The example writes this line to stderr before it exits 3.
        assert sandbox.kubectl("logs", "fails").stdout == "something went wrong\n"
        assert sandbox.kubectl("logs", "fails", "--tail=0").stdout == ""
        previous = sandbox.kubectl("logs", "fails", "--previous", check=False)
        assert previous.returncode != 0 and "previous terminated container" in previous.stderr
    finally:
        sandbox.kubectl("delete", "pod", "fails", "--wait=true", check=False)
