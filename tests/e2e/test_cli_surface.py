"""The CLI surface around the commands: --version, --context that picks a second context of a
kubeconfig, and shell completion (bash, zsh, fish) of pod and node names, run through the real
shells where they can run it. Ground truth: the installed distribution's metadata, kubectl, docker
and the kernel, never pidmap's own output.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest
import yaml

from tests.conftest import Pods, Sandbox
from tests.kernel import container_init

BIN = Path(sys.executable).parent  # where the `pidmap` console script is installed
NODE_LABELS = ("io.x-k8s.kind.cluster", "created_by.minikube.sigs.k8s.io", "name.minikube.sigs.k8s.io",
               "k3d.cluster")


def _env(base: dict[str, str]) -> dict[str, str]:
    return {**base, "PATH": f"{BIN}{os.pathsep}{base.get('PATH', '')}"}


def test_version_is_the_installed_distributions() -> None:
    result = subprocess.run([str(BIN / "pidmap"), "--version"], capture_output=True, text=True,
                            timeout=60, check=False)
    assert result.returncode == 0 and result.stderr == "", result.stderr
    assert result.stdout == f"pidmap, version {version('pidmap')}\n"


# --- --context ----------------------------------------------------------------------------------

def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.sandbox
@pytest.mark.root
@pytest.mark.docker
def test_context_picks_the_named_context_of_a_kubeconfig(sandbox: Sandbox, running_examples: Pods,
                                                         tmp_path: Path) -> None:
    """A kubeconfig whose current context points at nothing, and a second context (the sandbox's):
    without --context pidmap uses the current one (unreachable, 5); with it, the sandbox's, and the
    PID it maps is the kernel's."""
    config = yaml.safe_load(sandbox.kubeconfig.read_text())
    ours = sandbox.kubectl("config", "current-context").stdout.strip()
    port = _closed_port()
    config["clusters"].append({"name": "nowhere", "cluster": {"server": f"https://127.0.0.1:{port}",
                                                              "insecure-skip-tls-verify": True}})
    config["contexts"].append({"name": "nowhere", "context": {"cluster": "nowhere",
                                                              "user": config["users"][0]["name"]}})
    config["current-context"] = "nowhere"
    kubeconfig = tmp_path / "two-contexts"
    kubeconfig.write_text(yaml.safe_dump(config))
    env = {**sandbox.env, "KUBECONFIG": str(kubeconfig)}

    default = sandbox.pidmap("show", "kubia-manual", "--request-timeout", "5s", check=False, env=env)
    assert default.returncode == 5 and f"127.0.0.1:{port}" in default.stderr, default.stderr
    chosen = sandbox.pidmap("show", "kubia-manual", "--context", ours, "-o", "json", env=env)
    doc = json.loads(chosen.stdout)
    (status,) = running_examples["kubia-manual"]["status"]["containerStatuses"]
    (pid1,) = [p for p in doc["containers"][0]["processes"] if p["container_pid"] == 1]
    assert pid1["host_pid"] == container_init(status["containerID"].split("://", 1)[1])
    # kubectl, given the same file and context, names the same node.
    assert doc["node"]["name"] == json.loads(sandbox.run(
        ["kubectl", "--context", ours, "get", "pod", "kubia-manual", "-o", "json"], env=env).stdout
    )["spec"]["nodeName"]


# --- shell completion ---------------------------------------------------------------------------

def _docker_nodes() -> set[str]:
    """Containers of the engine that carry a kind, minikube or k3d node label (docker's own view)."""
    names: set[str] = set()
    for label in NODE_LABELS:
        out = subprocess.run(["docker", "ps", "-a", "--filter", f"label={label}", "--format", "{{.Names}}"],
                             capture_output=True, text=True, check=True).stdout
        names |= set(out.split())
    return names


def _cluster_nodes(sandbox: Sandbox) -> set[str]:
    return set(sandbox.kubectl("get", "nodes", "-o", "jsonpath={.items[*].metadata.name}").stdout.split())


def _default_pods(sandbox: Sandbox) -> set[str]:
    return set(sandbox.kubectl("get", "pods", "-n", "default", "-o",
                               "jsonpath={.items[*].metadata.name}").stdout.split())


@pytest.mark.sandbox
@pytest.mark.root
@pytest.mark.docker
@pytest.mark.tool("fish")
def test_fish_completes_node_and_pod_names_through_fish_itself(sandbox: Sandbox,
                                                               running_examples: Pods) -> None:
    """fish sources the script pidmap prints and answers `complete -C` as it would on <TAB>."""
    env = _env(sandbox.env)

    def complete(line: str) -> set[str]:
        script = f'source (env _PIDMAP_COMPLETE=fish_source pidmap | psub); complete -C "{line}"'
        result = subprocess.run(["fish", "--no-config", "-c", script], capture_output=True, text=True,
                                env=env, timeout=120, check=False)
        assert result.returncode == 0 and result.stderr == "", result.stderr
        return {line.split("\t")[0] for line in result.stdout.splitlines()}

    nodes = complete("pidmap node ")
    assert _cluster_nodes(sandbox) <= nodes and nodes <= _docker_nodes(), nodes
    prefix = f"{sandbox.name}-m"
    assert complete(f"pidmap node {prefix}") == {n for n in _docker_nodes() if n.startswith(prefix)}
    assert complete("pidmap show ") == _default_pods(sandbox)
    assert complete("pidmap show kubia") == {p for p in _default_pods(sandbox) if p.startswith("kubia")}


def _click_protocol(shell: str, words: str, env: dict[str, str]) -> list[str]:
    """What the shell's completion function gets from pidmap: the exact call each of click's scripts
    makes (COMP_WORDS, COMP_CWORD, _PIDMAP_COMPLETE=SHELL_complete)."""
    parts = words.split(" ")
    result = subprocess.run(["pidmap"], capture_output=True, text=True, timeout=120, check=False,
                            env={**env, "COMP_WORDS": words, "COMP_CWORD": str(len(parts) - 1),
                                 "_PIDMAP_COMPLETE": f"{shell}_complete"})
    assert result.returncode == 0 and result.stderr == "", result.stderr
    return result.stdout.splitlines()


@pytest.mark.sandbox
@pytest.mark.root
@pytest.mark.docker
@pytest.mark.tool("zsh")
def test_zsh_script_parses_and_completes_node_and_pod_names(sandbox: Sandbox,
                                                            running_examples: Pods) -> None:
    env = _env(sandbox.env)
    script = subprocess.run(["pidmap"], capture_output=True, text=True, timeout=60, check=True,
                            env={**env, "_PIDMAP_COMPLETE": "zsh_source"}).stdout
    assert "compdef _pidmap_completion pidmap" in script
    parsed = subprocess.run(["zsh", "-n"], input=script, capture_output=True, text=True, timeout=60,
                            check=False)
    assert parsed.returncode == 0, parsed.stderr
    assert "_PIDMAP_COMPLETE=zsh_complete" in script  # the call _click_protocol makes

    def values(words: str) -> set[str]:
        lines = _click_protocol("zsh", words, env)
        # Three lines per item: type, value, help.
        return {lines[i + 1] for i in range(0, len(lines), 3) if lines[i] == "plain"}

    nodes = values("pidmap node ")
    assert _cluster_nodes(sandbox) <= nodes and nodes <= _docker_nodes(), nodes
    assert values("pidmap show ") == _default_pods(sandbox)


@pytest.mark.sandbox
@pytest.mark.root
@pytest.mark.docker
def test_bash_completes_node_names_through_bash_itself(sandbox: Sandbox, running_examples: Pods) -> None:
    """bash sources the script and runs its completion function as <TAB> would (COMP_WORDS set)."""
    env = _env(sandbox.env)
    prefix = f"{sandbox.name}-m"
    script = (f'eval "$(_PIDMAP_COMPLETE=bash_source pidmap)"; COMP_WORDS=(pidmap node {prefix}); '
              'COMP_CWORD=2; _pidmap_completion pidmap; printf "%s\\n" "${COMPREPLY[@]}"')
    result = subprocess.run(["bash", "--norc", "--noprofile", "-c", script], capture_output=True, text=True,
                            env=env, timeout=120, check=False)
    assert result.returncode == 0 and result.stderr == "", result.stderr
    got = set(result.stdout.split())
    assert got == {n for n in _docker_nodes() if n.startswith(prefix)}
    assert {n for n in _cluster_nodes(sandbox) if n.startswith(prefix)} <= got
