"""The node image: built from the host's static busybox and Node.js; kubia really answers in it."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pytest

from pidmap.sandbox import image, layout
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


def test_node_image_runs_kubia_and_static_pause(client: object) -> None:
    if not image.image_has_node(client):
        pytest.skip("the image was built without Node.js (no node on the host)")
    name = f"pa-image-test-{time.monotonic_ns()}"
    subprocess.run(["docker", "run", "-d", "--name", name, "--hostname", name, "--network", "none",
                    layout.NODE_IMAGE, "/usr/bin/node", "/app.js"], check=True, capture_output=True)
    try:
        deadline = time.monotonic() + 10
        answer = ""
        while time.monotonic() < deadline and not answer:
            answer = subprocess.run(["docker", "exec", name, "wget", "-q", "-O", "-", "http://127.0.0.1:8080/"],
                                    capture_output=True, text=True, check=False).stdout
            time.sleep(0.2)
        assert answer == f"You've hit {name}\n"
        logs = subprocess.run(["docker", "logs", name], capture_output=True, text=True, check=True).stdout
        assert logs.startswith("Kubia server starting...")
        passwd = subprocess.run(["docker", "exec", name, "cat", "/etc/passwd"], capture_output=True,
                                text=True, check=True).stdout
        assert passwd.startswith("root:x:0:0:") and "nobody:" in passwd
        # /pause is a static binary when gcc could link one; otherwise a shell script.
        head = subprocess.run(["docker", "exec", name, "head", "-c", "4", "/pause"], capture_output=True,
                              check=True).stdout
        assert head in (b"\x7fELF", b"#!/b")
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True, check=False)


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
