"""Finding the node container through the Docker SDK, checked against ``docker inspect``."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator

import pytest

from pidmap.errors import ExitStatus
from pidmap.sources.nodes import (
    DockerSdkError,
    DockerUnavailable,
    NodeNotDockerError,
    docker_client,
    find_node,
)
from tests.conftest import suite_name
from tests.fixtures.chain import IMAGE as chain_image
from tests.fixtures.chain import Chain, start_chain

# shared_images: the busybox image of tests/fixtures/chain.py, built once per session, whatever runs first.
pytestmark = [pytest.mark.root, pytest.mark.docker, pytest.mark.usefixtures("shared_images")]


@pytest.fixture(scope="module")
def chain() -> Iterator[Chain]:
    chain = start_chain(suite_name("it-nodes"))
    try:
        yield chain
    finally:
        chain.remove()


def test_find_minikube_node_matches_docker_inspect(chain: Chain) -> None:
    inspect = json.loads(subprocess.run(["docker", "inspect", chain.node], capture_output=True, text=True,
                                        check=True).stdout)[0]
    node = find_node(docker_client(), chain.node)
    assert node.provider == "minikube"
    assert node.container_id == inspect["Id"]
    assert node.host_pid == inspect["State"]["Pid"]
    assert node.running


def test_kind_and_k3d_labels() -> None:
    made = []
    try:
        cluster = suite_name("it")
        kind = [f"io.x-k8s.kind.cluster={cluster}", "io.x-k8s.kind.role=worker"]
        for name, labels in ((f"{cluster}-kind-worker", kind),
                             (f"k3d-{cluster}-agent-0", [f"k3d.cluster={cluster}", "k3d.role=agent"])):
            argv = ["docker", "run", "-d", "--name", name, "--hostname", name, "--network", "none"]
            for label in labels:
                argv += ["--label", label]
            subprocess.run([*argv, chain_image, "sleep", "1000"], capture_output=True, check=True)
            made.append(name)
        assert find_node(docker_client(), f"{cluster}-kind-worker").provider == "kind"
        assert find_node(docker_client(), f"k3d-{cluster}-agent-0").provider == "k3d"
    finally:
        for name in made:
            subprocess.run(["docker", "rm", "-f", name], capture_output=True, check=False)


def test_node_that_is_not_a_docker_container() -> None:
    with pytest.raises(NodeNotDockerError) as info:
        find_node(docker_client(), suite_name("no-such-node"))
    assert info.value.status == ExitStatus.DOCKER
    assert "not a Docker container" in info.value.message


def test_docker_engine_down(tmp_path: object, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/dead.sock")
    with pytest.raises(DockerUnavailable) as info:
        docker_client()
    assert info.value.status == ExitStatus.DOCKER
    assert "no Docker engine answers" in info.value.message
    assert os.environ["DOCKER_HOST"] in info.value.message


def test_docker_engine_refusing_tcp_is_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", "tcp://127.0.0.1:1")  # nothing listens on port 1
    with pytest.raises(DockerUnavailable) as info:
        docker_client()
    assert "no Docker engine answers at tcp://127.0.0.1:1" in info.value.message


def test_docker_sdk_failing_on_its_own_is_not_a_dead_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    """The SDK rejects the address before opening any socket (as docker 7.0.0 does with requests
    >= 2.32: "Not supported URL scheme http+docker"): the SDK is named, with its version."""
    from importlib.metadata import version

    monkeypatch.setenv("DOCKER_HOST", "bogus://somewhere")
    with pytest.raises(DockerSdkError) as info:
        docker_client()
    assert info.value.status == ExitStatus.DOCKER
    sdk = f"the Docker SDK (Python package docker {version('docker')}) failed on its own"
    assert sdk in info.value.message
    assert "no Docker engine answers" not in info.value.message
    assert "bogus://somewhere" in info.value.message


def test_scan_in_a_node_whose_shell_hangs_ends_within_its_timeout() -> None:
    """docker exec has no limit of its own: the scan's timeout must end it, as a DockerError."""
    import time

    from pidmap.errors import DockerError
    from pidmap.sources import hostprocs

    name = suite_name(f"it-hang-{os.getpid()}")
    subprocess.run(["docker", "run", "-d", "--name", name, "--network", "none", chain_image,
                    "sleep", "1000"], capture_output=True, check=True)
    try:
        # `sh` now never answers: what a node stuck on a D-state /proc read looks like from outside.
        subprocess.run(["docker", "exec", name, "sh", "-c",
                        "rm /bin/sh && printf '#!/bin/busybox sh\\nexec /bin/busybox sleep 1000\\n' > /bin/sh"
                        " && /bin/busybox chmod +x /bin/sh"],
                       capture_output=True, check=True)
        start = time.monotonic()
        with pytest.raises(DockerError) as info:
            hostprocs.scan_in_container(docker_client(), name, timeout=2.0)
        assert time.monotonic() - start < 15
        assert "did not finish within 2s" in info.value.message
        assert info.value.status == ExitStatus.DOCKER
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True, check=False)
