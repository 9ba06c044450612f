"""Shared fixtures: one real sandbox per test session, real kubectl, pidmap run as a subprocess.

The sandbox is brought up once (``pidmap sandbox up``), in a private state directory and kubeconfig,
and torn down at the end (``pidmap sandbox down``). Its name comes from PIDMAP_TEST_SANDBOX
(default ``pidmap-test``) so that it never touches a sandbox a person started for a demo, and so
that two suites on one machine can use different names.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
Pods = dict[str, dict[str, Any]]  # pod name -> the pod object as kubectl prints it
# The examples whose pods run (rather than complete, fail or wait): what the e2e mapping tests map.
RUNNING_EXAMPLES = ["kubia-manual.yaml", "sidecar.yaml", "adapter.yaml", "ambassador.yaml",
                    "init-container.yaml", "shared-pid.yaml"]


def docker_answers() -> bool:
    return (
        shutil.which("docker") is not None
        and subprocess.run(["docker", "version"], capture_output=True, check=False).returncode == 0
    )


@dataclass
class Sandbox:
    name: str
    flavor: str
    home: Path
    kubeconfig: Path
    env: dict[str, str] = field(default_factory=dict)

    @property
    def state_dir(self) -> Path:
        return self.home / self.name

    def run(self, argv: list[str], *, check: bool = True, timeout: float = 120,
            input: str | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, input=input,
                                env=env or self.env, check=False)
        if check and result.returncode != 0:
            raise AssertionError(f"{argv} exited {result.returncode}\nstdout:\n{result.stdout}\n"
                                 f"stderr:\n{result.stderr}")
        return result

    def kubectl(self, *args: str, check: bool = True, timeout: float = 60,
                input: str | None = None) -> subprocess.CompletedProcess[str]:
        return self.run(["kubectl", *args], check=check, timeout=timeout, input=input)

    def pidmap(self, *args: str, check: bool = True, timeout: float = 120,
               env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return self.run([sys.executable, "-m", "pidmap", *args], check=check, timeout=timeout, env=env)

    def pod(self, name: str, namespace: str = "default") -> dict[str, Any]:
        out = self.kubectl("get", "pod", name, "-n", namespace, "-o", "json").stdout
        pod: dict[str, Any] = json.loads(out)
        return pod

    def wait_phase(self, name: str, phases: set[str], namespace: str = "default",
                   timeout: float = 60) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        pod = self.pod(name, namespace)
        while pod["status"].get("phase") not in phases:
            if time.monotonic() > deadline:
                raise AssertionError(f"pod {name} stayed {pod['status'].get('phase')}, wanted {phases}:\n"
                                     f"{json.dumps(pod['status'], indent=1)}")
            time.sleep(0.3)
            pod = self.pod(name, namespace)
        return pod

    def apply_example(self, filename: str, phases: set[str] | None = None,
                      namespace: str = "default") -> dict[str, Any]:
        """kubectl apply an examples/ manifest and wait until its pod reaches one of ``phases``."""
        path = EXAMPLES / filename
        self.kubectl("apply", "-n", namespace, "-f", str(path))
        name = self.kubectl("get", "-f", str(path), "-n", namespace, "-o",
                            "jsonpath={.metadata.name}").stdout.strip()
        return self.wait_phase(name, phases or {"Running"}, namespace)

    def node_container(self, node: str) -> str:
        return node  # node name = Docker container name, as in kind and minikube


def _sandbox_up(name: str, flavor: str, home: Path, extra: list[str]) -> Sandbox:
    kubeconfig = home / f"{name}.kubeconfig"
    env = {**os.environ, "KUBECONFIG": str(kubeconfig), "PIDMAP_SANDBOX_HOME": str(home)}
    box = Sandbox(name=name, flavor=flavor, home=home, kubeconfig=kubeconfig, env=env)
    box.pidmap("sandbox", "down", "--name", name, check=False)  # leftovers of an aborted run
    box.pidmap("sandbox", "up", "--name", name, "--flavor", flavor, "--kubeconfig", str(kubeconfig),
               *extra, timeout=300)
    return box


@pytest.fixture(scope="session")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    """The session's sandbox: minikube-style names, as in the course material."""
    if not docker_answers():
        pytest.fail("no Docker engine answers: run scripts/install-docker.sh (scripts/test.sh does)")
    name = os.environ.get("PIDMAP_TEST_SANDBOX", "pidmap-test")
    box = _sandbox_up(name, "minikube", tmp_path_factory.mktemp("sandbox-home"), [])
    try:
        yield box
    finally:
        box.pidmap("sandbox", "down", "--name", name, check=False, timeout=300)


@pytest.fixture(scope="module")
def running_examples(sandbox: Sandbox) -> Pods:
    """Every running example applied and Running: pod name -> the pod as kubectl reports it then."""
    names = [sandbox.apply_example(example)["metadata"]["name"] for example in RUNNING_EXAMPLES]
    # Read again once all are up, so each pod's statuses are the ones with every container running.
    return {name: sandbox.wait_phase(name, {"Running"}) for name in names}
