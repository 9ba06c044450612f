"""No Docker engine (a remote or managed cluster, as a user of EKS or GKE has it): pidmap degrades,
never drops. ``DOCKER_HOST`` points at a socket nobody serves; the container level still comes from
the exec, checked against ``kubectl exec … ps`` (the container's own view), and nothing is created
in the cluster.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from pidmap.errors import ExitStatus
from tests.conftest import Sandbox

pytestmark = [pytest.mark.sandbox, pytest.mark.root, pytest.mark.docker]


@pytest.fixture(scope="module")
def pods(sandbox: Sandbox) -> list[str]:
    return [sandbox.apply_example(name)["metadata"]["name"] for name in ("kubia-manual.yaml", "sidecar.yaml")]


@pytest.fixture
def no_docker(sandbox: Sandbox, tmp_path: Path) -> Iterator[dict[str, str]]:
    """The sandbox's environment with DOCKER_HOST at a socket nobody serves; no pod exists after that
    did not before (a run without --via agent creates nothing). A pod an earlier test deleted may
    finish going meanwhile: fewer is fine, a new one is not."""
    before = pod_uids(sandbox)
    yield {**sandbox.env, "DOCKER_HOST": f"unix://{tmp_path}/nobody.sock"}
    created = set(pod_uids(sandbox)) - set(before)
    assert not created, created


def pod_uids(box: Sandbox) -> list[str]:
    out = box.kubectl("get", "pods", "-A", "-o", "jsonpath={.items[*].metadata.uid}").stdout
    return sorted(out.split())


def ps_in(box: Sandbox, pod: str, container: str) -> dict[int, str]:
    """PID → command line as the container itself sees them (`ps` in it), ps's own line left out."""
    out = box.kubectl("exec", pod, "-c", container, "--", "ps", "-o", "pid,args").stdout
    rows = [line.split(None, 1) for line in out.splitlines()[1:]]
    return {int(pid): args for pid, args in rows if not args.startswith("ps ")}


def _agent_note(notes: list[str]) -> None:
    assert any("--via agent" in note and "no Docker engine answers" in note for note in notes), notes


def test_show_maps_the_container_level_without_docker(sandbox: Sandbox, pods: list[str],
                                                      no_docker: dict[str, str]) -> None:
    result = sandbox.pidmap("show", "kubia-manual", "-o", "json", env=no_docker, check=False)
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    (container,) = doc["containers"]
    seen = {p["container_pid"]: p["command"] for p in container["processes"]}
    assert seen == ps_in(sandbox, "kubia-manual", "kubia") == {1: "node app.js"}
    assert all(p["node_pid"] is None and p["host_pid"] is None for p in container["processes"])
    assert doc["node"]["name"] == sandbox.pod("kubia-manual")["spec"]["nodeName"]
    _agent_note(doc["notes"])


def test_show_table_says_how_to_get_the_rest(sandbox: Sandbox, pods: list[str],
                                            no_docker: dict[str, str]) -> None:
    result = sandbox.pidmap("show", "sidecar", env=no_docker, check=False)
    assert result.returncode == 0, result.stderr
    assert "rerun with --via agent" in result.stdout
    doc = json.loads(sandbox.pidmap("show", "sidecar", "-o", "json", env=no_docker).stdout)
    for container in doc["containers"]:
        # PID 1 of each container, as `ps` inside it shows it: the one process that cannot come and go.
        (init,) = [p for p in container["processes"] if p["container_pid"] == 1]
        assert init["command"] == ps_in(sandbox, "sidecar", container["name"])[1]


def test_show_all_and_node_map_every_pod_without_docker(sandbox: Sandbox, pods: list[str],
                                                       no_docker: dict[str, str]) -> None:
    node = sandbox.pod("kubia-manual")["spec"]["nodeName"]
    for argv in (["show", "--all"], ["node", node]):
        result = sandbox.pidmap(*argv, "-o", "json", env=no_docker, check=False)
        assert result.returncode == 0, (argv, result.stderr)
        docs = {d["pod"]: d for d in json.loads(result.stdout)}
        kubia = docs["kubia-manual"]
        assert [p["container_pid"] for p in kubia["containers"][0]["processes"]] == [1]
        _agent_note(kubia["notes"])


def test_watch_maps_without_docker(sandbox: Sandbox, pods: list[str], no_docker: dict[str, str]) -> None:
    result = sandbox.pidmap("watch", "kubia-manual", "--count", "1", "-o", "json", env=no_docker, check=False)
    assert result.returncode == 0, result.stderr
    frame = json.loads(result.stdout.splitlines()[0])
    assert frame["pod"]["containers"][0]["processes"][0]["container_pid"] == 1
    _agent_note(frame["pod"]["notes"])


def test_whois_without_any_way_to_the_node_says_so(sandbox: Sandbox, pods: list[str],
                                                   no_docker: dict[str, str]) -> None:
    result = sandbox.pidmap("whois", "1", env=no_docker, check=False)
    assert result.returncode == ExitStatus.DOCKER, result.stderr
    error, hint = result.stderr.splitlines()
    assert error.startswith("error: no Docker engine answers at") and "no way to the node" in error
    assert hint.startswith("hint: ") and "--via agent" in hint


def test_node_not_in_the_cluster_is_not_found_without_docker(sandbox: Sandbox,
                                                             no_docker: dict[str, str]) -> None:
    result = sandbox.pidmap("node", "no-such-node", env=no_docker, check=False)
    assert result.returncode == ExitStatus.NOT_FOUND, result.stderr
    assert result.stderr.splitlines()[0] == 'error: node "no-such-node" not found'
