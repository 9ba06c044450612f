"""The kernel decides, the container informs: hostile text and lying probes against the real sandbox.

Ground truth is read from the host's /proc (tests/kernel.py) and kubectl, never from pidmap.
"""

from __future__ import annotations

import json
import re

import pytest

from tests import kernel
from tests.conftest import Sandbox

pytestmark = [pytest.mark.sandbox, pytest.mark.root, pytest.mark.docker]

# ESC ] 0 ; PWNED BEL sets the terminal's title; U+202E makes what follows read right to left.
HOSTILE_ARG = "\x1b]0;PWNED\x07\u202eevil"
HOSTILE_POD = {
    "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "tr-hostile-cmdline"},
    # sh stays PID 1 (it waits), so its command line keeps the hostile $0 for as long as the pod runs.
    "spec": {"containers": [{"name": "app", "image": "busybox:1.36",
                             "command": ["sh", "-c", "sleep 3600 & wait", HOSTILE_ARG]}]},
}
RAW = re.compile("[\x1b\x07\u202e]")


def _container_id(pod: dict[str, object]) -> str:
    status = pod["status"]
    assert isinstance(status, dict)
    return str(status["containerStatuses"][0]["containerID"]).split("://", 1)[1]


def _cmdline(pid: int) -> str:
    return kernel.PROC.joinpath(str(pid), "cmdline").read_bytes().rstrip(b"\0").replace(b"\0", b" ").decode()


@pytest.fixture(scope="module")
def hostile(sandbox: Sandbox) -> dict[str, object]:
    sandbox.kubectl("apply", "-f", "-", input=json.dumps(HOSTILE_POD))
    return sandbox.wait_phase("tr-hostile-cmdline", {"Running"})


def test_hostile_command_line_is_escaped_in_human_output_and_exact_in_json(
        sandbox: Sandbox, hostile: dict[str, object]) -> None:
    host_pids = kernel.pids_in_cgroup(_container_id(hostile))
    truth = {pid: _cmdline(pid) for pid in host_pids}
    init = next(pid for pid, cmdline in truth.items() if HOSTILE_ARG in cmdline)

    for output in ("table", "wide", "tree"):
        result = sandbox.pidmap("show", "tr-hostile-cmdline", "-o", output)
        assert not RAW.search(result.stdout + result.stderr), output
        assert "\\x1b]0;PWNED\\x07\\u202eevil" in result.stdout, output
    whois = sandbox.pidmap("whois", str(init))
    assert not RAW.search(whois.stdout + whois.stderr)
    assert "PWNED" in whois.stdout

    doc = json.loads(sandbox.pidmap("show", "tr-hostile-cmdline", "-o", "json").stdout)
    by_host_pid = {p["host_pid"]: p["command"] for p in doc["containers"][0]["processes"]}
    assert by_host_pid[init] == truth[init]
    assert json.loads(sandbox.pidmap("whois", str(init), "-o", "json").stdout)["command"] == truth[init]
