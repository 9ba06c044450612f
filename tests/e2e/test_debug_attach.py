"""``kubectl debug -i POD --image=busybox --target=app -- sh`` on the sandbox, as on kind: kubectl adds
the ephemeral container (``ephemeralcontainers`` subresource), waits for it to run, then attaches to
its stdin and stdout (``pods/attach`` over WebSocket). What the debug shell prints is checked against
the kernel (NSpid and PID-namespace links of the target's processes, found by its container ID in
their cgroup), and ``pidmap show`` then lists the debugger as ``ephemeral``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.conftest import Sandbox
from tests.kernel import nspid, pids_in_cgroup

pytestmark = [pytest.mark.sandbox, pytest.mark.docker, pytest.mark.root, pytest.mark.tool("kubectl")]

PROC = Path("/proc")
POD = """apiVersion: v1
kind: Pod
metadata: {name: pa-attach}
spec:
  containers:
  - {name: app, image: busybox, command: [sh, -c, "sleep 3600 & exec sleep 3601"]}
"""


def _cmdline(pid: int) -> str:
    return (PROC / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode().strip()


def test_kubectl_debug_attaches_a_shell_in_the_targets_pid_namespace(sandbox: Sandbox) -> None:
    sandbox.kubectl("apply", "-f", "-", input=POD)
    try:
        pod = sandbox.wait_phase("pa-attach", {"Running"})
        app_id = pod["status"]["containerStatuses"][0]["containerID"].removeprefix("containerd://")
        deadline = time.monotonic() + 30
        # Both sleeps started (the shell has become the second one).
        while True:
            app = pids_in_cgroup(app_id)
            if sorted(_cmdline(pid) for pid in app) == ["sleep 3600", "sleep 3601"]:
                break
            assert time.monotonic() < deadline, app
            time.sleep(0.2)
        # The kernel: the target's processes, by their PID in the container's namespace.
        expected = {nspid(pid)[-1]: _cmdline(pid) for pid in app}
        target_ns = (PROC / str(app[0]) / "ns" / "pid").readlink()
        shell = "ps -o pid,args; readlink /proc/$$/ns/pid; exit\n"
        result = sandbox.kubectl("debug", "-i", "pa-attach", "--image=busybox", "--target=app", "--", "sh",
                                 input=shell, timeout=120)
        # Attached, not kubectl's fallback to the container's log.
        assert "falling back" not in result.stderr and "error" not in result.stderr.lower(), result.stderr
        # kubectl's own lines ("Targeting container ...", "Defaulting debug container name ...") first.
        out = result.stdout.splitlines()
        lines = out[next(i for i, line in enumerate(out) if line.split() == ["PID", "COMMAND"]):]
        shown = {int(line.split(None, 1)[0]): line.split(None, 1)[1] for line in lines[1:-1]}
        assert {pid: shown.get(pid) for pid in expected} == expected, (shown, expected)
        assert "sh" in shown.values()  # the debug shell itself, beside the target's processes
        assert lines[-1] == str(target_ns), (lines[-1], target_ns)  # the shell's PID namespace
        # pidmap lists the debugger as an ephemeral container of the pod, ended by its exit.
        deadline = time.monotonic() + 30
        while True:
            status = sandbox.pod("pa-attach")["status"].get("ephemeralContainerStatuses") or []
            if status and "terminated" in status[0]["state"]:
                break
            assert time.monotonic() < deadline, status
            time.sleep(0.3)
        assert status[0]["state"]["terminated"]["exitCode"] == 0, status[0]["state"]
        doc = json.loads(sandbox.pidmap("show", "pa-attach", "-o", "json").stdout)
        by_type = {c["type"]: c for c in doc["containers"]}
        assert by_type["ephemeral"]["name"] == status[0]["name"]
        assert by_type["ephemeral"]["state"] == "terminated"
        assert {p["host_pid"] for p in by_type["app"]["processes"]} == set(app)
    finally:
        sandbox.kubectl("delete", "pod", "pa-attach", "--wait=true")
