"""``kubectl debug -i POD --image=busybox --target=app -- sh`` on the sandbox, as on kind: kubectl adds
the ephemeral container (``ephemeralcontainers`` subresource), waits for it to run, then attaches to
its stdin and stdout (``pods/attach`` over WebSocket). What the debug shell prints is checked against
the kernel (NSpid and PID-namespace links of the target's processes, found by its container ID in
their cgroup), and ``pidmap show`` then lists the debugger as ``ephemeral``. A client that goes away
detaches: the shell runs on (the kernel's cgroup), no ``ctr tasks attach`` is left in the node (the
kernel's process list), and ``kubectl attach`` reaches the same shell again.
"""

from __future__ import annotations

import json
import queue
import subprocess
import threading
import time
from pathlib import Path
from typing import IO, Any

import pytest

from tests.conftest import Pods, Sandbox
from tests.kernel import nspid, pids_in_cgroup, pids_running

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


def _line_queue(stream: IO[bytes]) -> queue.Queue[bytes]:
    """The lines of ``stream`` as a thread reads them (so a test can wait with a deadline), then b""
    at its end."""
    lines: queue.Queue[bytes] = queue.Queue()

    def read() -> None:
        for line in iter(stream.readline, b""):
            lines.put(line)
        lines.put(b"")

    threading.Thread(target=read, daemon=True).start()
    return lines


def _converse(sandbox: Sandbox, argv: list[str], script: str, exit_line: str,
              tmp: Path) -> tuple[list[str], str, int]:
    """Run ``argv`` (kubectl attaching to a shell), send ``script`` and then a marker echo, read its
    stdout up to the marker, and only then send ``exit_line``: (stdout lines before the marker,
    stderr, exit code).

    The shell must not exit before its output has been read: `ctr tasks attach` opens the output
    FIFO in the background and ends on the container's exit status (containerd's
    cmd/ctr/commands/tasks/attach.go waits on the task), so a shell that answers and exits at once
    can end before its answer reaches the client (seen once in CI: `again 1` lost, exit 0). Waiting
    for the marker keeps that race out of the check."""
    marker = f"end-of-answer-{time.monotonic_ns()}"
    with (tmp / "stderr").open("w+") as err:
        client = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err,
                                  env=sandbox.env)
        assert client.stdin is not None and client.stdout is not None
        lines = _line_queue(client.stdout)
        try:
            client.stdin.write(f"{script}echo {marker}\n".encode())
            client.stdin.flush()
            got: list[str] = []
            deadline = time.monotonic() + 120
            end = f"{marker}\n".encode()
            while (line := lines.get(timeout=max(deadline - time.monotonic(), 0.1))) != end:
                assert line and time.monotonic() < deadline, (got, line)
                got.append(line.decode().rstrip("\n"))
            client.stdin.write(exit_line.encode())
            client.stdin.close()
            code = client.wait(timeout=90)
        finally:
            client.kill()
            client.wait()
        err.seek(0)
        return got, err.read(), code


def test_kubectl_debug_attaches_a_shell_in_the_targets_pid_namespace(sandbox: Sandbox, module_namespace: str,
                                                                     tmp_path: Path) -> None:
    ns = module_namespace
    sandbox.kubectl("apply", "-n", ns, "-f", "-", input=POD)
    try:
        pod = sandbox.wait_phase("pa-attach", {"Running"}, ns)
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
        out, stderr, code = _converse(
            sandbox, ["kubectl", "debug", "-i", "pa-attach", "-n", ns, "--image=busybox", "--target=app",
                      "--", "sh"], "ps -o pid,args; readlink /proc/$$/ns/pid\n", "exit\n", tmp_path)
        assert code == 0, stderr
        # Attached, not kubectl's fallback to the container's log.
        assert "falling back" not in stderr and "error" not in stderr.lower(), stderr
        # kubectl's own lines ("Targeting container ...", "Defaulting debug container name ...") first.
        lines = out[next(i for i, line in enumerate(out) if line.split() == ["PID", "COMMAND"]):]
        shown = {int(line.split(None, 1)[0]): line.split(None, 1)[1] for line in lines[1:-1]}
        assert {pid: shown.get(pid) for pid in expected} == expected, (shown, expected)
        assert "sh" in shown.values()  # the debug shell itself, beside the target's processes
        assert lines[-1] == str(target_ns), (lines[-1], target_ns)  # the shell's PID namespace
        # pidmap lists the debugger as an ephemeral container of the pod, ended by its exit.
        deadline = time.monotonic() + 30
        while True:
            status = sandbox.pod("pa-attach", ns)["status"].get("ephemeralContainerStatuses") or []
            if status and "terminated" in status[0]["state"]:
                break
            assert time.monotonic() < deadline, status
            time.sleep(0.3)
        assert status[0]["state"]["terminated"]["exitCode"] == 0, status[0]["state"]
        doc = json.loads(sandbox.pidmap("show", "pa-attach", "-n", ns, "-o", "json").stdout)
        by_type = {c["type"]: c for c in doc["containers"]}
        assert by_type["ephemeral"]["name"] == status[0]["name"]
        assert by_type["ephemeral"]["state"] == "terminated"
        assert {p["host_pid"] for p in by_type["app"]["processes"]} == set(app)
    finally:
        sandbox.kubectl("delete", "pod", "pa-attach", "-n", ns, "--wait=true")


DETACH_POD = """apiVersion: v1
kind: Pod
metadata: {name: pa-detach}
spec:
  containers:
  - {name: app, image: busybox, command: [sleep, "3600"]}
"""


def _ephemeral(sandbox: Sandbox, pod: str, namespace: str, name: str, state: str) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while True:
        found = [s for s in sandbox.pod(pod, namespace)["status"].get("ephemeralContainerStatuses") or []
                 if s["name"] == name]
        if found and state in found[0]["state"]:
            entry: dict[str, Any] = found[0]
            return entry
        assert time.monotonic() < deadline, found
        time.sleep(0.3)


def test_a_client_that_goes_away_detaches_and_kubectl_attach_reaches_it_again(sandbox: Sandbox,
                                                                              module_namespace: str,
                                                                              tmp_path: Path) -> None:
    ns = module_namespace
    sandbox.kubectl("apply", "-n", ns, "-f", "-", input=DETACH_POD)
    try:
        sandbox.wait_phase("pa-detach", {"Running"}, ns)
        client = subprocess.Popen(
            ["kubectl", "debug", "-i", "pa-detach", "-n", ns, "--image=busybox", "--container=dbg", "--",
             "sh"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=sandbox.env)
        assert client.stdin is not None and client.stdout is not None
        lines = _line_queue(client.stdout)
        try:
            client.stdin.write(b"echo attached $$\n")
            client.stdin.flush()
            deadline = time.monotonic() + 90
            while (line := lines.get(timeout=max(deadline - time.monotonic(), 0.1))) != b"attached 1\n":
                assert time.monotonic() < deadline, line
        finally:
            client.kill()  # the client goes away without a word
            client.wait()
        cid = str(_ephemeral(sandbox, "pa-detach", ns, "dbg", "running")["containerID"]).removeprefix("containerd://")
        shell = pids_in_cgroup(cid)
        assert len(shell) == 1, shell
        # The kernel: the node's `ctr tasks attach` went with its client; the shell runs on.
        deadline = time.monotonic() + 30
        while pids_running("ctr", "-n", "k8s.io", "tasks", "attach", cid):
            assert time.monotonic() < deadline, "ctr tasks attach outlived its client"
            time.sleep(0.3)
        time.sleep(1)
        assert pids_in_cgroup(cid) == shell
        assert "running" in _ephemeral(sandbox, "pa-detach", ns, "dbg", "running")["state"]
        # Its stdin is still open: a second client reaches the same shell (PID 1 of its container).
        again, stderr, code = _converse(sandbox, ["kubectl", "attach", "pa-detach", "-n", ns, "-c", "dbg",
                                                  "-i"], "echo again $$\n", "exit 4\n", tmp_path)
        assert "again 1" in again, (again, stderr)
        # The shell's exit ended the attach (kubectl exits 0: attach reports no exit code) ...
        assert code == 0, stderr
        # ... and the container, with the shell's code.
        ended = _ephemeral(sandbox, "pa-detach", ns, "dbg", "terminated")["state"]
        assert ended["terminated"]["exitCode"] == 4, ended
        assert not pids_in_cgroup(cid)
    finally:
        sandbox.kubectl("delete", "pod", "pa-detach", "-n", ns, "--wait=true")


def test_attach_can_be_forbidden_as_rbac_would(sandbox: Sandbox, running_examples: Pods) -> None:
    # `sandbox forbid create:pods/attach`: kubectl attach (and so kubectl debug's attach) gets RBAC's
    # 403; exec, a different subresource, is still allowed (the rule is no blanket refusal).
    sandbox.pidmap("sandbox", "forbid", "--name", sandbox.name, "create:pods/attach")
    try:
        refused = sandbox.kubectl("attach", "kubia-manual", "-i", input="", check=False, timeout=60)
        assert refused.returncode != 0 and "(Forbidden)" in refused.stderr, refused.stderr
        assert 'cannot create resource "pods/attach"' in refused.stderr, refused.stderr
        allowed = sandbox.kubectl("exec", "kubia-manual", "--", "cat", "/proc/1/cmdline")
        assert allowed.stdout.startswith("node"), allowed.stdout
    finally:
        sandbox.pidmap("sandbox", "forbid", "--name", sandbox.name)
