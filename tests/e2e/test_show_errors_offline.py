"""`pidmap show` errors that need no cluster: one line, a hint, the documented exit code, no traceback.

Runs the real CLI in a subprocess against real (absent or closed) endpoints.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from pidmap.errors import ExitStatus


def _pidmap(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pidmap", *args], capture_output=True, text=True,
                          timeout=60, env=env, check=False)


def _assert_error(result: subprocess.CompletedProcess[str], status: ExitStatus, message: str) -> None:
    assert result.returncode == status, result.stderr
    lines = result.stderr.splitlines()
    assert lines[0].startswith("error: ") and message in lines[0], result.stderr
    assert len(lines) == 2 and lines[1].startswith("hint: "), result.stderr
    assert "Traceback" not in result.stderr


BAD_NAMES = ["kubia;rm -rf /", "$(reboot)", "Kubia", "kubia manual", "-kubia", "a" * 254]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_invalid_pod_name_is_rejected_before_any_call(name: str, tmp_path: Path) -> None:
    # No kubeconfig exists: a usage error (2) rather than a config error (4) proves no call was tried.
    env = {**os.environ, "KUBECONFIG": str(tmp_path / "none")}
    _assert_error(_pidmap("show", "--", name, env=env), ExitStatus.USAGE, "invalid pod name")


def test_invalid_namespace(tmp_path: Path) -> None:
    env = {**os.environ, "KUBECONFIG": str(tmp_path / "none")}
    _assert_error(_pidmap("show", "kubia", "-n", "Bad_NS", env=env), ExitStatus.USAGE, "invalid namespace")


# No kubeconfig exists in any of these: 2 rather than 4 proves the names were checked first.
EARLY_USAGE_ERRORS = [
    (["node", "a;b"], "invalid node name 'a;b'"),
    (["node", "kind-worker", "-n", "Bad"], "invalid namespace 'Bad'"),
    (["show", "--all", "-n", "Bad"], "invalid namespace 'Bad'"),
    (["whois", "1", "--level", "node", "--node", "a;b"], "invalid node name 'a;b'"),
    (["watch", "Bad", "--count", "1"], "invalid pod name 'Bad'"),
    (["watch", "kubia", "-n", "Bad_NS", "--count", "1"], "invalid namespace 'Bad_NS'"),
    (["show", "kubia", "--interval", "3"], "--interval goes with --watch"),
    (["show", "kubia", "--count", "2"], "--count goes with --watch"),
    (["show", "kubia", "-w", "-o", "yaml"], "--watch prints table, wide or json, not yaml"),
]


@pytest.mark.parametrize(("argv", "message"), EARLY_USAGE_ERRORS,
                         ids=[" ".join(a) for a, _ in EARLY_USAGE_ERRORS])
def test_usage_errors_come_before_any_kubeconfig_load(argv: list[str], message: str, tmp_path: Path) -> None:
    env = {**os.environ, "KUBECONFIG": str(tmp_path / "none")}
    _assert_error(_pidmap(*argv, env=env), ExitStatus.USAGE, message)


@pytest.mark.parametrize("output", ["yaml", "tree", "dot", "mermaid"])
def test_watch_refuses_outputs_it_cannot_redraw(output: str, tmp_path: Path) -> None:
    env = {**os.environ, "KUBECONFIG": str(tmp_path / "none")}
    result = _pidmap("watch", "kubia", "-o", output, env=env)
    assert result.returncode == ExitStatus.USAGE and f"'{output}' is not one of" in result.stderr


def test_no_kubeconfig(tmp_path: Path) -> None:
    env = {**os.environ, "KUBECONFIG": str(tmp_path / "missing.kubeconfig")}
    _assert_error(_pidmap("show", "kubia", env=env), ExitStatus.CONFIG, "no kubeconfig at")


def test_unknown_context(tmp_path: Path) -> None:
    kubeconfig = _kubeconfig(tmp_path, "https://127.0.0.1:1")
    _assert_error(_pidmap("show", "kubia", "--kubeconfig", str(kubeconfig), "--context", "nope"),
                  ExitStatus.CONFIG, 'context "nope" is not in the kubeconfig')


def test_kubeconfig_without_current_context(tmp_path: Path) -> None:
    # What `kubectl config` leaves once the last context is deleted (e.g. after `sandbox down`).
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text('apiVersion: v1\nkind: Config\nclusters: []\ncontexts: []\nusers: []\n'
                          'current-context: ""\n')
    result = _pidmap("show", "kubia", "--kubeconfig", str(kubeconfig))
    _assert_error(result, ExitStatus.CONFIG, "has no current context (contexts: none)")
    assert "use-context" in result.stderr


def test_api_unreachable(tmp_path: Path) -> None:
    with socket.socket() as sock:  # a port nobody listens on: bound, then closed
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    kubeconfig = _kubeconfig(tmp_path, f"https://127.0.0.1:{port}")
    _assert_error(_pidmap("show", "kubia", "--kubeconfig", str(kubeconfig)), ExitStatus.UNREACHABLE,
                  f"the API server at https://127.0.0.1:{port} does not answer")


def _kubeconfig(tmp_path: Path, server: str) -> Path:
    path = tmp_path / "kubeconfig"
    path.write_text(f"""apiVersion: v1
kind: Config
clusters: [{{name: c, cluster: {{server: "{server}", insecure-skip-tls-verify: true}}}}]
users: [{{name: u, user: {{token: abc}}}}]
contexts: [{{name: x, context: {{cluster: c, user: u}}}}]
current-context: x
""")
    return path


# click's own words, which vary in punctuation across the declared click versions (8.1.0 says
# "No such option: --bogus", later ones "No such option '--bogus'"): what must hold is the meaning.
CLICK_USAGE = [
    (["show", "kubia", "-o", "xml"], r"'xml' is not one of", "pidmap show --help"),
    (["whois", "abc"], r"'abc' is not a valid integer", "pidmap whois --help"),
    (["show", "kubia", "--bogus"], r"No such option:? '?--bogus'?", "pidmap show --help"),
    (["node"], r"Missing argument '?NODE'?", "pidmap node --help"),
    (["frobnicate"], r"No such command:? '?frobnicate'?", "pidmap --help"),
]


@pytest.mark.parametrize(("argv", "message", "hint"), CLICK_USAGE,
                         ids=[" ".join(a) for a, _, _ in CLICK_USAGE])
def test_command_line_mistakes_read_like_every_other_error(argv: list[str], message: str, hint: str,
                                                           tmp_path: Path) -> None:
    env = {**os.environ, "KUBECONFIG": str(tmp_path / "none")}
    result = _pidmap(*argv, env=env)
    _assert_error(result, ExitStatus.USAGE, "")
    assert re.search(message, result.stderr.splitlines()[0]), result.stderr
    assert result.stderr.splitlines()[1] == f"hint: {hint}"


def test_kubectl_style_pod_argument_is_accepted(tmp_path: Path) -> None:
    # pod/NAME reaches the kubeconfig step (no name error); deploy/NAME is still no pod name.
    env = {**os.environ, "KUBECONFIG": str(tmp_path / "none")}
    _assert_error(_pidmap("show", "pod/kubia", env=env), ExitStatus.CONFIG, "no kubeconfig at")
    _assert_error(_pidmap("show", "deploy/kubia", env=env), ExitStatus.USAGE, "invalid pod name")
