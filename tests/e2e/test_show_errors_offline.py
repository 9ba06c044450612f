"""`pidmap show` errors that need no cluster: one line, a hint, the documented exit code, no traceback.

Runs the real CLI in a subprocess against real (absent or closed) endpoints.
"""

from __future__ import annotations

import os
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


def test_no_kubeconfig(tmp_path: Path) -> None:
    env = {**os.environ, "KUBECONFIG": str(tmp_path / "missing.kubeconfig")}
    _assert_error(_pidmap("show", "kubia", env=env), ExitStatus.CONFIG, "no kubeconfig at")


def test_unknown_context(tmp_path: Path) -> None:
    kubeconfig = _kubeconfig(tmp_path, "https://127.0.0.1:1")
    _assert_error(_pidmap("show", "kubia", "--kubeconfig", str(kubeconfig), "--context", "nope"),
                  ExitStatus.CONFIG, "cannot use kubeconfig")


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
