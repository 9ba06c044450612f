"""The kernel decides, the container informs: hostile text and lying probes against the real sandbox.

Ground truth is read from the host's /proc (tests/kernel.py) and kubectl, never from pidmap.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager

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
    """/proc/PID/cmdline as pidmap documents it: arguments joined by spaces, ends trimmed."""
    return kernel.PROC.joinpath(str(pid), "cmdline").read_bytes().replace(b"\0", b" ").decode().strip()


@pytest.fixture(scope="module")
def hostile(sandbox: Sandbox, module_namespace: str) -> Iterator[dict[str, object]]:
    sandbox.kubectl("apply", "-n", module_namespace, "-f", "-", input=json.dumps(HOSTILE_POD))
    yield sandbox.wait_phase("tr-hostile-cmdline", {"Running"}, module_namespace)
    sandbox.kubectl("delete", "pod", "tr-hostile-cmdline", "-n", module_namespace, "--wait=true")


def test_hostile_command_line_is_escaped_in_human_output_and_exact_in_json(
        sandbox: Sandbox, hostile: dict[str, object], module_namespace: str) -> None:
    ns = module_namespace
    host_pids = kernel.pids_in_cgroup(_container_id(hostile))
    truth = {pid: _cmdline(pid) for pid in host_pids}
    init = next(pid for pid, cmdline in truth.items() if HOSTILE_ARG in cmdline)

    for output in ("table", "wide", "tree"):
        result = sandbox.pidmap("show", "tr-hostile-cmdline", "-n", ns, "-o", output)
        assert not RAW.search(result.stdout + result.stderr), output
        assert "\\x1b]0;PWNED\\x07\\u202eevil" in result.stdout, output
    whois = sandbox.pidmap("whois", str(init))
    assert not RAW.search(whois.stdout + whois.stderr)
    assert "PWNED" in whois.stdout

    doc = json.loads(sandbox.pidmap("show", "tr-hostile-cmdline", "-n", ns, "-o", "json").stdout)
    by_host_pid = {p["host_pid"]: p["command"] for p in doc["containers"][0]["processes"]}
    assert by_host_pid[init] == truth[init]
    assert json.loads(sandbox.pidmap("whois", str(init), "-o", "json").stdout)["command"] == truth[init]


# A container that answers the probe itself: it writes a report of its own making (another pod's
# PID namespace, an innocent PID 1), then puts a script that prints it in place of its `sh` — first
# in PATH (a runtime that resolves `sh` by PATH) and at /bin/sh (one that runs the rootfs's /bin/sh).
FAKE_REPORT = ("pidmap-probe 1\\nself 99\\nns pid:[%s]\\nP 1\\nS Name:\\tsh\\nS State:\\tS (sleeping)\\n"
               "S PPid:\\t0\\nS Uid:\\t0\\t0\\t0\\t0\\nS NSpid:\\t1\\nC innocent\\nend\\n")

def _liar_script(answer: str) -> str:
    """The container's command: replace its own `sh` by a script whose body is ``answer``."""
    return (
        f"printf '{FAKE_REPORT}' \"$FOREIGN_NS\" > /tmp/report\n"
        f"printf '#!/bin/busybox sh\\n{answer}\\n' > /tmp/fake-sh\n"
        "chmod +x /tmp/fake-sh\n"
        "mkdir -p /usr/local/bin && cp /tmp/fake-sh /usr/local/bin/sh\n"
        "cp /tmp/fake-sh /bin/sh.new && mv /bin/sh.new /bin/sh\n"
        "sleep 3600 & wait\n"
    )


@contextmanager
def _lying_pod(sandbox: Sandbox, manifest: dict[str, object], name: str,
               ns: str) -> Iterator[dict[str, object]]:
    """Run a pod that replaces its `sh`; afterwards delete the pod.

    Its containers run on containerd, each in a root filesystem of its own (a snapshot of its
    image): the `sh` it replaces is its own, gone with the pod; the node's and other pods' are untouched.
    """
    sandbox.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(manifest))
    pod = sandbox.wait_phase(name, {"Running"}, ns)
    node_sh = _node_sh(pod)
    try:
        yield pod
        assert _node_sh(pod) == node_sh  # the node's own sh was never touched
    finally:
        sandbox.kubectl("delete", "pod", name, "-n", ns, "--wait=true", check=False)


def _node_sh(pod: dict[str, object]) -> tuple[str, int]:
    """The node container's /bin/sh as the host sees it (/proc/NODE_PID/root): its link and inode."""
    node = str(pod["spec"]["nodeName"])  # type: ignore[index]
    pid = subprocess.run(["docker", "inspect", "-f", "{{.State.Pid}}", node], capture_output=True,
                         text=True, check=True, timeout=60).stdout.strip()
    sh = kernel.PROC / pid / "root" / "bin" / "sh"
    return os.readlink(sh) if sh.is_symlink() else "", sh.stat().st_ino


def _liar(foreign_ns: int, name: str = "tr-liar",
          answer: str = "exec /bin/busybox cat /tmp/report") -> dict[str, object]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"containers": [{"name": "app", "image": "busybox:1.36",
                                     "env": [{"name": "FOREIGN_NS", "value": str(foreign_ns)}],
                                     "command": ["/bin/busybox", "sh", "-c", _liar_script(answer)]}]}}


def test_a_container_answering_the_probe_with_another_pods_namespace_gets_none_of_its_processes(
        sandbox: Sandbox, hostile: dict[str, object], module_namespace: str) -> None:
    ns = module_namespace
    foreign_pids = set(kernel.pids_in_cgroup(_container_id(hostile)))
    foreign_ns = kernel.PROC.joinpath(str(min(foreign_pids)), "ns", "pid").stat().st_ino
    with _lying_pod(sandbox, _liar(foreign_ns), "tr-liar", ns) as liar:
        # The trap is set: what the exec runs as `sh` answers with the forged report.
        answer = ""
        for _ in range(50):
            answer = sandbox.kubectl("exec", "tr-liar", "-n", ns, "--", "sh", "-c", "true").stdout
            if answer.startswith("pidmap-probe"):
                break
            time.sleep(0.2)
        assert f"ns pid:[{foreign_ns}]" in answer

        own = set(kernel.pids_in_cgroup(_container_id(liar)))
        doc = json.loads(sandbox.pidmap("show", "tr-liar", "-n", ns, "-o", "json").stdout)
        (cmap,) = doc["containers"]
        rows = {p["host_pid"]: p for p in cmap["processes"]}
        assert not set(rows) & foreign_pids
        # Its real processes, from the host side: the kernel's PIDs and command lines.
        alive = {pid for pid in own if kernel.PROC.joinpath(str(pid)).exists()}
        assert alive <= set(rows) <= own
        for pid in alive:
            assert rows[pid]["container_pid"] == kernel.nspid(pid)[-1]
            assert rows[pid]["command"] == _cmdline(pid)
        assert not any(p["command"] == "innocent" for p in cmap["processes"])
        init = next(pid for pid in alive if kernel.nspid(pid)[-1] == 1)
        assert cmap["pid_namespace"] == kernel.PROC.joinpath(str(init), "ns", "pid").stat().st_ino
        assert any("report was inconsistent" in note and str(foreign_ns) in note for note in cmap["notes"])
        table = sandbox.pidmap("show", "tr-liar", "-n", ns).stdout
        assert "report was inconsistent" in table and "innocent" not in table


def test_a_malformed_probe_answer_is_a_note_and_the_host_side_maps(sandbox: Sandbox,
                                                                   module_namespace: str) -> None:
    ns = module_namespace
    # (The 16 MiB bound on the probe's output is checked in tests/unit/test_probe_bounds.py.)
    name, note = "tr-liar-bad", "unreadable probe output"
    with _lying_pod(sandbox, _liar(0, name, "echo hello; exit 0"), name, ns) as pod:
        for _ in range(50):  # until the trap is set
            trap = sandbox.kubectl("exec", name, "-n", ns, "--", "sh", "-c", "true", check=False)
            if "hello" in trap.stdout:
                break
            time.sleep(0.2)
        result = sandbox.pidmap("show", name, "-n", ns, "-o", "json", check=False)
        assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
        (cmap,) = json.loads(result.stdout)["containers"]
        assert any(note in n for n in cmap["notes"]), cmap["notes"]
        own = set(kernel.pids_in_cgroup(_container_id(pod)))
        alive = {pid for pid in own if kernel.PROC.joinpath(str(pid)).exists()}
        assert alive <= {p["host_pid"] for p in cmap["processes"]} <= own
