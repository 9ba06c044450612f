"""whois, node and watch on the sandbox, checked against the host's /proc, docker inspect, kubectl
and the stand-in API server's request log — never against pidmap's own output alone. The pictures
(tree, DOT, Mermaid) of every command are checked in the grid, tests/e2e/test_grid.py.

Run with PIDMAP_TEST_SANDBOX=pd-test (the session fixture brings the sandbox up and down).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from pidmap.errors import ExitStatus
from tests.conftest import Pods, Sandbox
from tests.kernel import cgroups, nspid, processes_in_cgroup, start_ticks

pytestmark = [pytest.mark.sandbox, pytest.mark.root, pytest.mark.docker]

def _container_ids(pod: dict[str, Any]) -> dict[str, str]:
    statuses = pod["status"].get("containerStatuses", []) + pod["status"].get("initContainerStatuses", [])
    return {s["containerID"].split("://", 1)[1]: s["name"] for s in statuses if s.get("containerID")}


def _host_processes_of(container_ids: dict[str, str]) -> dict[int, str]:
    """host PID → container name, for every process whose cgroup leaf is one of the IDs."""
    found: dict[int, str] = {}
    for pid, cgroup in cgroups().items():
        for cid, name in container_ids.items():
            if re.search(rf"/{cid}(\.scope)?$", cgroup, re.M) or f"-{cid}.scope" in cgroup:
                found[pid] = name
    return found


def _whois(box: Sandbox, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return box.pidmap("whois", *args, check=check)


def test_whois_names_pod_and_container_of_every_pod_process(
    sandbox: Sandbox, running_examples: Pods
) -> None:
    checked = 0
    for name, pod in running_examples.items():
        truth = _host_processes_of(_container_ids(pod))
        assert truth, f"no host process carries a container ID of {name}"
        for host_pid, container in truth.items():
            # Ground truth first: a short-lived child (sleep 1) may exit at any moment.
            try:
                chain = nspid(host_pid)
            except FileNotFoundError:
                continue
            result = _whois(sandbox, str(host_pid), "-o", "json", check=False)
            if result.returncode == ExitStatus.NOT_FOUND and not Path(f"/proc/{host_pid}").exists():
                continue  # exited between the read above and whois
            assert result.returncode == 0, result.stderr
            doc = json.loads(result.stdout)
            assert (doc["kind"], doc["namespace"], doc["pod"], doc["container"]) == (
                "container",
                "default",
                name,
                container,
            ), doc
            assert doc["node"] == pod["spec"]["nodeName"]
            # The container's own PID is one level below the node's (depth 1), even in a nested namespace.
            assert doc["nspid"] == chain and doc["container_pid"] == chain[2] and doc["node_pid"] == chain[1]
            checked += 1
    assert checked >= len(running_examples)


def test_whois_node_level_pid(sandbox: Sandbox, running_examples: Pods) -> None:
    pod = running_examples["kubia-manual"]
    host_pid, container = next(iter(_host_processes_of(_container_ids(pod)).items()))
    node_pid = nspid(host_pid)[1]
    node = pod["spec"]["nodeName"]
    doc = json.loads(_whois(sandbox, str(node_pid), "--level", "node", "--node", node, "-o", "json").stdout)
    assert (doc["pod"], doc["container"], doc["host_pid"]) == ("kubia-manual", container, host_pid)
    # docker exec NODE sees the same process under that PID.
    ps = (
        subprocess.run(
            ["docker", "exec", node, "cat", f"/proc/{node_pid}/cmdline"], capture_output=True, check=True
        )
        .stdout.replace(b"\0", b" ")
        .decode()
        .strip()
    )
    assert ps == doc["command"]


def test_whois_plain_answers_for_node_init_host_process_and_pause(
    sandbox: Sandbox, running_examples: Pods
) -> None:
    node = running_examples["sidecar"]["spec"]["nodeName"]
    init = int(
        subprocess.run(
            ["docker", "inspect", "-f", "{{.State.Pid}}", node], capture_output=True, text=True, check=True
        ).stdout
    )
    doc = json.loads(_whois(sandbox, str(init), "-o", "json").stdout)
    assert (doc["kind"], doc["node"], doc["node_pid"], doc["pod"]) == ("node", node, 1, None)
    doc = json.loads(_whois(sandbox, str(os.getpid()), "-o", "json").stdout)
    assert (doc["kind"], doc["node"], doc["pod"]) == ("host", None, None)
    uid = running_examples["sidecar"]["metadata"]["uid"]
    # From the kernel's cgroups (other suites' pause processes come and go on a shared machine:
    # one that exits after pgrep listed it is simply not this pod's).
    named_pause = {int(p) for p in subprocess.run(["pgrep", "-x", "pause"], capture_output=True,
                                                  text=True).stdout.split()}
    pause = [pid for pid, cgroup in cgroups().items() if pid in named_pause and f"pod{uid}" in cgroup]
    assert len(pause) == 1
    doc = json.loads(_whois(sandbox, str(pause[0]), "-o", "json").stdout)
    assert (doc["kind"], doc["pod"], doc["container"]) == ("pod-sandbox", "sidecar", None)


def test_whois_unknown_pid_is_one_line_error(sandbox: Sandbox) -> None:
    pid_max = int(Path("/proc/sys/kernel/pid_max").read_text())
    result = _whois(sandbox, str(pid_max + 1), check=False)
    assert result.returncode == ExitStatus.NOT_FOUND
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert lines[0] == f"error: no process with PID {pid_max + 1} on this host" and lines[1].startswith(
        "hint: "
    )
    assert "Traceback" not in result.stderr


def _exec_count(box: Sandbox) -> int:
    log = (box.state_dir / "apiserver.log").read_text()
    return len(re.findall(r" GET /api/v1/namespaces/[^ ]+/pods/[^ /]+/exec\?", log))


def _assert_exec_counted(box: Sandbox, pod: dict[str, Any]) -> None:
    """Positive control of the "no exec" checks: the same log count sees the execs `pidmap show`
    does make, one per running container of ``pod`` (what kubectl says runs)."""
    statuses = box.pod(pod["metadata"]["name"])["status"]["containerStatuses"]
    running = sum("running" in s["state"] for s in statuses)
    assert running
    before = _exec_count(box)
    box.pidmap("show", pod["metadata"]["name"], "-o", "json")
    assert _exec_count(box) - before == running, "the API server's log did not count show's execs"


def test_node_maps_every_pod_of_the_node_without_exec(sandbox: Sandbox, running_examples: Pods) -> None:
    node = running_examples["sidecar"]["spec"]["nodeName"]
    expected = {name for name, pod in running_examples.items() if pod["spec"]["nodeName"] == node}
    # The kernel's account of each pod's processes before the runs (PID -> start ticks): the loops'
    # brief children (sleep, sed, tail, wget...) come and go between two runs; a process alive
    # before the first run and after the second, with the same start, was there for both.
    ids = {name: _container_ids(running_examples[name]) for name in expected}
    before_runs = {name: {pid: start for cid in ids[name] for pid, start in processes_in_cgroup(cid).items()}
                   for name in expected}
    before = _exec_count(sandbox)
    docs = json.loads(sandbox.pidmap("node", node, "-o", "json").stdout)
    assert _exec_count(sandbox) == before, "pidmap node made exec calls"
    _assert_exec_counted(sandbox, running_examples["sidecar"])
    by_name = {d["pod"]: d for d in docs}
    assert expected <= set(by_name)
    on_node = json.loads(
        sandbox.kubectl("get", "pods", "-A", "--field-selector", f"spec.nodeName={node}", "-o", "json").stdout
    )
    assert set(by_name) == {p["metadata"]["name"] for p in on_node["items"]}
    for name in expected:
        # The host's own account of each chain; only a process the kernel says is gone is spared.
        checked = 0
        for container in by_name[name]["containers"]:
            for proc in container["processes"]:
                try:  # all reads before any check: a brief child may exit between them
                    chain = nspid(proc["host_pid"])
                    cgroup = Path(f"/proc/{proc['host_pid']}/cgroup").read_text()
                    started = start_ticks(proc["host_pid"])
                except (FileNotFoundError, ProcessLookupError):
                    continue  # exited since the run
                if before_runs[name].get(proc["host_pid"]) not in (None, started):
                    continue  # its PID was reused since (the kernel's start time differs)
                assert chain[:3] == [proc["host_pid"], proc["node_pid"], proc["container_pid"]], proc
                assert container["container_id"] in cgroup
                checked += 1
        assert checked, name
        after_runs = {pid: start for cid in ids[name] for pid, start in processes_in_cgroup(cid).items()}
        lasting = {pid: start for pid, start in before_runs[name].items() if after_runs.get(pid) == start}
        assert lasting, name  # every container's PID 1 at least
        # Every process the kernel says lived through the run is mapped, under its own container
        # (the cgroup's container ID) and with the kernel's chain; the brief ones are left out.
        for pid in lasting:
            (owner,) = [c for c in by_name[name]["containers"]
                        for p in c["processes"] if p["host_pid"] == pid] or [None]
            assert owner is not None, (name, pid)
            (proc,) = [p for p in owner["processes"] if p["host_pid"] == pid]
            assert owner["container_id"] in Path(f"/proc/{pid}/cgroup").read_text(), (name, pid)
            assert nspid(pid)[:3] == [pid, proc["node_pid"], proc["container_pid"]], (name, proc)
        # The node as docker inspect knows it.
        inspect = json.loads(subprocess.run(["docker", "inspect", node], capture_output=True, text=True,
                                            check=True).stdout)[0]
        assert by_name[name]["node"] == {**by_name[name]["node"], "name": node,
                                         "container_id": inspect["Id"], "host_pid": inspect["State"]["Pid"]}


def test_show_all_namespaces_maps_every_pod_without_exec(
    sandbox: Sandbox, running_examples: Pods
) -> None:
    truth = {name: _host_processes_of(_container_ids(pod)) for name, pod in running_examples.items()}
    before = _exec_count(sandbox)
    docs = json.loads(sandbox.pidmap("show", "--all", "-A", "-o", "json").stdout)
    assert _exec_count(sandbox) == before
    _assert_exec_counted(sandbox, running_examples["kubia-manual"])
    listed = json.loads(sandbox.kubectl("get", "pods", "-A", "-o", "json").stdout)["items"]
    assert sorted(d["pod"] for d in docs) == sorted(p["metadata"]["name"] for p in listed)
    for doc in docs:
        if doc["pod"] not in truth:
            continue
        mapped = {p["host_pid"]: c["name"] for c in doc["containers"] for p in c["processes"]}
        # Alive before and after the run: it existed during the scan and must be mapped, rightly.
        lasting = {pid: name for pid, name in truth[doc["pod"]].items() if Path(f"/proc/{pid}").exists()}
        assert lasting and all(mapped.get(pid) == name for pid, name in lasting.items()), doc["pod"]


def _watch(box: Sandbox, pod: str, count: int, interval: float = 1.0,
           namespace: str = "default") -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pidmap",
            "watch",
            pod,
            "-n",
            namespace,
            "-o",
            "json",
            "--interval",
            str(interval),
            "--count",
            str(count),
        ],
        env=box.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # Ended with SIGINT (_until): a suite started in the background inherits SIGINT ignored.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def _readline(proc: subprocess.Popen[str], timeout: float = 60.0) -> str:
    """One line of the child's stdout, or a failure (the child killed) after ``timeout`` s: a watch
    that never prints must fail this test, not hang the suite."""
    assert proc.stdout is not None
    stdout = proc.stdout
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.append(stdout.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    if reader.is_alive():
        proc.kill()
        reader.join(10)
        raise AssertionError(f"no line from {proc.args!r} within {timeout:g}s")
    return lines[0]


def _first_line(proc: subprocess.Popen[str]) -> dict[str, Any]:
    line = _readline(proc)
    assert line, proc.stderr.read() if proc.stderr else ""
    doc: dict[str, Any] = json.loads(line)
    return doc


def _until(proc: subprocess.Popen[str], kind: str, timeout: float = 120) -> list[dict[str, Any]]:
    """The watch's frames up to the first with a change of ``kind`` (or a ``kind`` event), then the
    watch is ended as Ctrl-C ends it (exit 0). However slow the machine, the event is waited for,
    not assumed to come within a fixed number of refreshes."""
    frames: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    try:
        while not any(f["event"] == kind or any(c["kind"] == kind for c in f["changes"]) for f in frames):
            left = deadline - time.monotonic()
            assert left > 0, f"no {kind} within {timeout:g}s: {frames}"
            line = _readline(proc, left)
            assert line, f"the watch ended before any {kind}: {frames}"
            frames.append(json.loads(line))
    finally:
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0 and "Traceback" not in err, err
    return frames


def test_watch_sees_a_new_process(sandbox: Sandbox, running_examples: Pods) -> None:
    proc = _watch(sandbox, "kubia-manual", count=1000)
    assert _first_line(proc)["event"] == "initial"
    sleeper = subprocess.Popen(
        ["kubectl", "exec", "kubia-manual", "--", "sleep", "30"],
        env=sandbox.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        events = _until(proc, "appeared")
        appeared = [c for e in events for c in e["changes"] if c["kind"] == "appeared"]
        sleep = next((c for c in appeared if c["command"] == "sleep 30"), None)
        assert sleep is not None, events
        # Checked while the exec'd sleep still runs: ending kubectl ends it.
        assert nspid(sleep["host_pid"]) == [sleep["host_pid"], sleep["node_pid"], sleep["container_pid"]]
    finally:
        sleeper.kill()
        sleeper.wait()


# The two tests that restart or delete a pod do it to their own copy, in the module's namespace: the
# shared running examples (and every fixture holding their statuses) stay as they were.

def test_watch_sees_a_container_restart(sandbox: Sandbox, module_namespace: str) -> None:
    pod = sandbox.apply_example("sidecar.yaml", namespace=module_namespace)
    assert pod["spec"].get("restartPolicy", "Always") == "Always"
    truth = _host_processes_of(_container_ids(pod))
    pid1 = next(pid for pid, name in truth.items() if name == "log-tailer" and nspid(pid)[-1] == 1)
    proc = _watch(sandbox, "sidecar", count=1000, namespace=module_namespace)
    _first_line(proc)
    os.kill(pid1, 9)
    events = _until(proc, "restarted")
    restarted = [c for e in events for c in e["changes"] if c["kind"] == "restarted"]
    assert [c["container"] for c in restarted][:1] == ["log-tailer"], events
    after = sandbox.pod("sidecar", module_namespace)
    tailer = next(s for s in after["status"]["containerStatuses"] if s["name"] == "log-tailer")
    assert tailer["restartCount"] >= 1
    sandbox.kubectl("delete", "pod", "sidecar", "-n", module_namespace, "--wait=true")


def test_watch_sees_a_deleted_pod(sandbox: Sandbox, module_namespace: str) -> None:
    sandbox.apply_example("ambassador.yaml", namespace=module_namespace)
    proc = _watch(sandbox, "ambassador", count=1000, namespace=module_namespace)
    _first_line(proc)
    sandbox.kubectl("delete", "pod", "ambassador", "-n", module_namespace, "--wait=true")
    events = _until(proc, "deleted")
    assert any(e["event"] == "deleted" for e in events), events


def test_watch_table_to_a_pipe_then_ctrl_c_exits_zero(
    sandbox: Sandbox, running_examples: Pods
) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "pidmap", "watch", "kubia-manual", "--interval", "0.5"],
        env=sandbox.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # A suite started in the background (``pytest &``) inherits SIGINT ignored, and Python keeps
        # an ignored SIGINT ignored: give the child the default a terminal's Ctrl-C meets.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    assert _readline(proc).startswith("Every 0.5s: pidmap watch default/kubia-manual")
    time.sleep(1.5)
    proc.send_signal(2)
    _out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "Traceback" not in err


def test_completion_lists_pods_from_the_cluster_and_is_silent_on_error(
    sandbox: Sandbox, running_examples: Pods
) -> None:
    env = {
        **sandbox.env,
        "_PIDMAP_COMPLETE": "bash_complete",
        "COMP_WORDS": "pidmap watch s",
        "COMP_CWORD": "2",
    }
    # The console script, as a shell calls it (click names the variable after the program: pidmap).
    script = str(Path(sys.executable).parent / "pidmap")
    out = sandbox.run([script], env=env).stdout
    names = json.loads(sandbox.kubectl("get", "pods", "-o", "json").stdout)["items"]
    expected = sorted(p["metadata"]["name"] for p in names if p["metadata"]["name"].startswith("s"))
    assert sorted(line.split(",", 1)[1] for line in out.splitlines()) == expected
    broken = sandbox.run([script], env={**env, "KUBECONFIG": "/nonexistent"})
    assert broken.stdout.strip() == "" and broken.stderr == ""  # no candidates, no error text
