"""The node image (static busybox, containerd, runc, procps) and the pod images' archive."""

from __future__ import annotations

import json
import shutil
import subprocess
import tarfile
import time
from pathlib import Path

import pytest

from pidmap.sandbox.cluster import image, layout
from tests.conftest import docker_answers

pytestmark = [pytest.mark.docker]


def test_static_elf_detection_matches_ldd() -> None:
    busybox = image.find_busybox()
    ldd = subprocess.run(["ldd", str(busybox)], capture_output=True, text=True, check=False)
    assert "not a dynamic executable" in ldd.stdout + ldd.stderr
    assert image.is_static_elf(busybox)
    node = shutil.which("node")
    if node:
        assert not image.is_static_elf(Path(node).resolve())


def test_shared_libraries_include_the_loader() -> None:
    node = shutil.which("node")
    if not node:
        pytest.skip("no node on this host: kubia is unavailable in the sandbox, by design")
    libraries = [str(path) for path in image.shared_libraries(Path(node))]
    interpreter = subprocess.run(["readelf", "-l", node], capture_output=True, text=True, check=False).stdout
    loader = next(line.split(":", 1)[1].strip(" ]") for line in interpreter.splitlines()
                  if "Requesting program interpreter" in line)
    assert loader in libraries
    assert any("libc.so" in lib for lib in libraries)


@pytest.fixture(scope="module")
def client() -> object:
    if not docker_answers():
        pytest.fail("no Docker engine answers: run scripts/install-docker.sh")
    import docker

    return docker.from_env()


def test_ensure_image_is_idempotent_and_labelled(client: object) -> None:
    first = image.ensure_image(client)
    second = image.ensure_image(client)
    assert first == second == layout.NODE_IMAGE
    inspect = subprocess.run(["docker", "image", "inspect", layout.NODE_IMAGE, "--format",
                              "{{index .Config.Labels \"io.pidmap.sandbox\"}} {{json .Config.Cmd}}"],
                             capture_output=True, text=True, check=True).stdout.split()
    assert inspect == ["1", '["/init"]']


def _layer_names(archive: tarfile.TarFile, member: str) -> list[str]:
    with tarfile.open(fileobj=archive.extractfile(member)) as layer:
        return layer.getnames()


def test_pod_images_archive_holds_the_four_images_with_their_configs() -> None:
    archive = image.ensure_pod_images()
    assert image.ensure_pod_images() == archive  # cached
    names = image.archived_images(archive)
    expected = ["docker.io/library/busybox:latest", "registry.k8s.io/pause:3.10",
                "gcr.io/distroless/static:latest"]
    if shutil.which("node"):
        expected.append("docker.io/luksa/kubia:latest")
    assert sorted(names) == sorted(expected)
    with tarfile.open(archive) as handle:
        manifest = json.load(handle.extractfile("manifest.json"))  # type: ignore[arg-type]
        by_name = {entry["RepoTags"][0]: entry for entry in manifest}
        # The pause image is one static binary and nothing else; the shell-less one has no shell.
        assert _layer_names(handle, by_name["registry.k8s.io/pause:3.10"]["Layers"][0]) == ["pause"]
        files = _layer_names(handle, by_name["gcr.io/distroless/static:latest"]["Layers"][0])
        assert "app" in files and not any(name.endswith("sh") for name in files)
        config = json.load(handle.extractfile(by_name["registry.k8s.io/pause:3.10"]["Config"]))  # type: ignore[arg-type]
        assert config["config"]["Entrypoint"] == ["/pause"]


def test_node_init_exits_zero_on_sigterm(client: object) -> None:
    name = f"pa-init-test-{time.monotonic_ns()}"
    subprocess.run(["docker", "run", "-d", "--name", name, "--network", "none", layout.NODE_IMAGE],
                   check=True, capture_output=True)
    try:
        started = time.monotonic()
        subprocess.run(["docker", "stop", "-t", "10", name], check=True, capture_output=True)
        assert time.monotonic() - started < 5, "init ignored SIGTERM (docker waited for its timeout)"
        code = subprocess.run(["docker", "inspect", "-f", "{{.State.ExitCode}}", name], capture_output=True,
                              text=True, check=True).stdout.strip()
        assert code == "0"
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True, check=False)
