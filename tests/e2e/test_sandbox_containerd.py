"""The sandbox's nodes run kind's container runtime: containerd, containerd-shim-runc-v2 and runc.

What the course's own commands show on a node (``docker exec NODE ps -aux``, ``kubectl exec ... --
ps -aux``) and what containerd holds (``ctr -n k8s.io containers ls``) are checked against the
kernel's /proc, as on kind (REAL-NODES.md §2).
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Sandbox
from tests.kernel import nspid, pids_in_cgroup

pytestmark = [pytest.mark.sandbox, pytest.mark.docker, pytest.mark.root]

PROC = Path("/proc")
PROCPS_HEADER = ["USER", "PID", "%CPU", "%MEM", "VSZ", "RSS", "TTY", "STAT", "START", "TIME", "COMMAND"]


def _docker_exec(node: str, *argv: str) -> str:
    return subprocess.run(["docker", "exec", node, *argv], capture_output=True, text=True, check=True,
                          timeout=30).stdout


def _ps_aux(text: str) -> list[dict[str, str]]:
    lines = text.splitlines()
    assert lines[0].split() == PROCPS_HEADER, lines[0]
    rows = []
    for line in lines[1:]:
        fields = line.split(None, 10)
        rows.append(dict(zip(PROCPS_HEADER, fields, strict=False)))
    return rows


def _status_ids(pod: dict[str, Any]) -> list[str]:
    status = pod["status"]
    entries = [*(status.get("initContainerStatuses") or []), *(status.get("containerStatuses") or []),
               *(status.get("ephemeralContainerStatuses") or [])]
    return [str(e["containerID"]).removeprefix("containerd://") for e in entries if e.get("containerID")]


def _cmdline(pid: int) -> str:
    return (PROC / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()


def test_node_ps_aux_shows_node_app_once_under_the_pods_shim(sandbox: Sandbox) -> None:
    pod = sandbox.apply_example("kubia-manual.yaml")
    node = pod["spec"]["nodeName"]
    rows = _ps_aux(_docker_exec(node, "ps", "-aux"))
    app = [row for row in rows if "app.js" in row["COMMAND"]]
    assert [row["COMMAND"] for row in app] == ["node app.js"], app
    # Its parent, from the node's own ps: the pod's shim, in containerd's k8s.io namespace.
    listing = _docker_exec(node, "ps", "-e", "-o", "pid=,ppid=,args=").splitlines()
    tree = {int(pid): (int(ppid), args) for pid, ppid, args in (line.split(None, 2) for line in listing)}
    parent_args = tree[tree[int(app[0]["PID"])][0]][1]
    shim = "/usr/local/bin/containerd-shim-runc-v2 -namespace k8s.io -id "
    assert parent_args.startswith(shim), parent_args
    # One shim per pod (kind): its -id is the pod's sandbox, whose process is /pause beside the app.
    shim_pid = tree[int(app[0]["PID"])][0]
    children = sorted(args for pid, (ppid, args) in tree.items() if ppid == shim_pid)
    assert children == ["/pause", "node app.js"], children
    sandbox_id = parent_args.split(" -id ", 1)[1].split()[0]
    labels = _docker_exec(node, "ctr", "-n", "k8s.io", "containers", "info", sandbox_id)
    info = json.loads(labels)["Labels"]
    assert info["io.kubernetes.pod.name"] == "kubia-manual" and info["io.kubernetes.pod.uid"] == pod[
        "metadata"]["uid"] and info["io.cri-containerd.kind"] == "sandbox"
    # Inside the container: the course's columns, PID 1 is node app.js.
    inside = _ps_aux(sandbox.kubectl("exec", "kubia-manual", "--", "ps", "-aux").stdout)
    assert inside[0]["PID"] == "1" and inside[0]["COMMAND"] == "node app.js", inside


def _host_processes_carrying(token: str) -> list[int]:
    found = []
    for entry in PROC.iterdir():
        if entry.name.isdigit():
            try:
                if token in _cmdline(int(entry.name)):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def test_no_host_process_but_the_container_carries_its_command(sandbox: Sandbox,
                                                               module_namespace: str) -> None:
    ns = module_namespace
    # A command no other process on this shared machine carries: only the container's own process
    # (three-level NSpid, in the container's cgroup) may show it; no launcher or helper.
    token = f"{31_000_000 + os.getpid()}"
    sandbox.kubectl("run", "pa-argv", "-n", ns, "--image=busybox", "--", "sleep", token)
    try:
        pod = sandbox.wait_phase("pa-argv", {"Running"}, ns)
        own = set(pids_in_cgroup(_status_ids(pod)[0]))
        carrying = _host_processes_carrying(f"sleep {token}")
        assert carrying and set(carrying) <= own, {pid: _cmdline(pid) for pid in carrying}
        assert all(len(nspid(pid)) == 3 for pid in carrying), {pid: nspid(pid) for pid in carrying}
    finally:
        sandbox.kubectl("delete", "pod", "pa-argv", "-n", ns, "--wait=true")
    # kubia-manual: within this sandbox's node containers, only the container carries app.js.
    kubia = sandbox.apply_example("kubia-manual.yaml")
    node_ids = [subprocess.run(["docker", "inspect", "-f", "{{.Id}}", node["metadata"]["name"]],
                               capture_output=True, text=True, check=True).stdout.strip()
                for node in json.loads(sandbox.kubectl("get", "nodes", "-o", "json").stdout)["items"]]
    in_nodes = {pid for node_id in node_ids for pid in pids_in_cgroup(node_id)}
    carrying = [pid for pid in _host_processes_carrying("app.js") if pid in in_nodes]
    assert carrying and set(carrying) <= set(pids_in_cgroup(_status_ids(kubia)[0])), carrying


def test_containerd_lists_every_container_id_the_statuses_report(sandbox: Sandbox) -> None:
    sandbox.apply_example("kubia-manual.yaml")
    sandbox.apply_example("sidecar.yaml")
    pods = json.loads(sandbox.kubectl("get", "pods", "-o", "json").stdout)["items"]
    by_node: dict[str, set[str]] = {}
    for pod in pods:
        if pod["status"].get("phase") in ("Running", "Pending", "Succeeded", "Failed"):
            by_node.setdefault(pod["spec"]["nodeName"], set()).update(_status_ids(pod))
    assert by_node
    for node, ids in by_node.items():
        listed = set(_docker_exec(node, "ctr", "-n", "k8s.io", "containers", "ls", "-q").split())
        assert ids <= listed, (node, ids - listed)


def test_crash_looping_container_backs_off_like_kubelet(sandbox: Sandbox, module_namespace: str) -> None:
    ns = module_namespace
    sandbox.kubectl("run", "pa-crashloop", "-n", ns, "--image=busybox", "--restart=Always", "--", "sh",
                    "-c", "exit 2")
    try:
        started = time.monotonic()
        seen: set[str] = set()
        while time.monotonic() - started < 30:
            status = sandbox.pod("pa-crashloop", ns)["status"].get("containerStatuses") or [{}]
            seen.add(((status[0].get("state") or {}).get("waiting") or {}).get("reason", ""))
            time.sleep(1)
        status = sandbox.pod("pa-crashloop", ns)["status"]["containerStatuses"][0]
        # Restart 1 at once, 2 after 10 s, 3 after 20 s more: never more than 3 in 30 s.
        assert 2 <= status["restartCount"] <= 3, status
        assert status["lastState"]["terminated"]["exitCode"] == 2
        assert "CrashLoopBackOff" in seen, seen
    finally:
        sandbox.kubectl("delete", "pod", "pa-crashloop", "-n", ns, "--wait=true")


def test_host_pid_pod_runs_in_the_nodes_pid_namespace(sandbox: Sandbox, module_namespace: str) -> None:
    ns = module_namespace
    manifest = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "pa-hostpid"},
                "spec": {"hostPID": True, "containers": [{"name": "c", "image": "busybox",
                                                          "command": ["sleep", "3600"]}]}}
    sandbox.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(manifest))
    try:
        pod = sandbox.wait_phase("pa-hostpid", {"Running"}, ns)
        pids = pids_in_cgroup(_status_ids(pod)[0])
        assert pids and all(len(nspid(pid)) == 2 for pid in pids), {pid: nspid(pid) for pid in pids}
        node_init = int(subprocess.run(["docker", "inspect", "-f", "{{.State.Pid}}", pod["spec"]["nodeName"]],
                                       capture_output=True, text=True, check=True).stdout)
        node_ns = (PROC / str(node_init) / "ns" / "pid").readlink()
        assert (PROC / str(pids[0]) / "ns" / "pid").readlink() == node_ns
        # The container sees the node's processes: containerd among them.
        assert "containerd" in sandbox.kubectl("exec", "pa-hostpid", "-n", ns, "--", "ps").stdout
    finally:
        sandbox.kubectl("delete", "pod", "pa-hostpid", "-n", ns, "--wait=true")


def test_active_deadline_fails_the_pod_and_kills_its_containers(sandbox: Sandbox,
                                                                module_namespace: str) -> None:
    ns = module_namespace
    manifest = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "pa-deadline"},
                "spec": {"activeDeadlineSeconds": 3, "containers": [{"name": "c", "image": "busybox",
                                                                      "command": ["sleep", "3600"]}]}}
    sandbox.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(manifest))
    try:
        running = sandbox.wait_phase("pa-deadline", {"Running"}, ns)
        cid = _status_ids(running)[0]
        assert pids_in_cgroup(cid)
        pod = sandbox.wait_phase("pa-deadline", {"Failed"}, ns, timeout=30)
        assert pod["status"]["reason"] == "DeadlineExceeded", pod["status"]
        assert "terminated" in pod["status"]["containerStatuses"][0]["state"]
        assert not pids_in_cgroup(cid)
    finally:
        sandbox.kubectl("delete", "pod", "pa-deadline", "-n", ns, "--wait=true")


def _show(sandbox: Sandbox, pod: str, namespace: str = "default") -> dict[str, Any]:
    return dict(json.loads(sandbox.pidmap("show", pod, "-n", namespace, "-o", "json").stdout))


def test_pause_image_pod_has_no_shell_and_is_mapped_from_the_host(sandbox: Sandbox,
                                                                  module_namespace: str) -> None:
    ns = module_namespace
    sandbox.kubectl("run", "pa-pauseonly", "-n", ns, "--image=registry.k8s.io/pause:3.10")
    try:
        pod = sandbox.wait_phase("pa-pauseonly", {"Running"}, ns)
        failed = sandbox.kubectl("exec", "pa-pauseonly", "-n", ns, "--", "ls", check=False)
        assert failed.returncode != 0
        assert 'exec: "ls": executable file not found in $PATH' in failed.stderr, failed.stderr
        cid = _status_ids(pod)[0]
        (host_pid,) = pids_in_cgroup(cid)
        shown = _show(sandbox, "pa-pauseonly", ns)
        (row,) = shown["containers"][0]["processes"]
        assert (row["container_pid"], row["host_pid"], row["command"]) == (1, host_pid, "/pause")
        assert nspid(host_pid) == [host_pid, row["node_pid"], 1]
        assert any("no shell" in note for note in shown["notes"]), shown["notes"]
    finally:
        sandbox.kubectl("delete", "pod", "pa-pauseonly", "-n", ns, "--wait=true")


def test_kubectl_debug_adds_an_ephemeral_container_in_its_targets_pid_namespace(
        sandbox: Sandbox, module_namespace: str) -> None:
    ns = module_namespace
    sandbox.kubectl("run", "pa-debugme", "-n", ns, "--image=busybox", "--", "sleep", "3600")
    try:
        sandbox.wait_phase("pa-debugme", {"Running"}, ns)
        sandbox.kubectl("debug", "pa-debugme", "-n", ns, "--image=busybox", "--target=pa-debugme", "--",
                        "sleep", "1000")

        def debugger_running() -> dict[str, Any] | None:
            entries = sandbox.pod("pa-debugme", ns)["status"].get("ephemeralContainerStatuses") or []
            return entries[0] if entries and "running" in entries[0]["state"] else None

        deadline = time.monotonic() + 30
        while not (entry := debugger_running()):
            assert time.monotonic() < deadline, "the ephemeral container never ran"
            time.sleep(0.3)
        pod = sandbox.pod("pa-debugme", ns)
        app_pids = pids_in_cgroup(_status_ids(pod)[0])
        debug_pids = pids_in_cgroup(str(entry["containerID"]).removeprefix("containerd://"))
        assert debug_pids and all(len(nspid(pid)) == 3 for pid in debug_pids)
        # The kernel: the debugger's sleep is in the target's PID namespace, where sleep 3600 is PID 1.
        target_ns = (PROC / str(app_pids[0]) / "ns" / "pid").readlink()
        assert all((PROC / str(pid) / "ns" / "pid").readlink() == target_ns for pid in debug_pids)
        shown = _show(sandbox, "pa-debugme", ns)
        by_type = {c["type"]: c for c in shown["containers"]}
        assert by_type["ephemeral"]["name"] == entry["name"]
        commands = {p["command"] for p in by_type["ephemeral"]["processes"]}
        assert {"sleep 1000", "sleep 3600"} <= commands, commands
    finally:
        sandbox.kubectl("delete", "pod", "pa-debugme", "-n", ns, "--wait=true")


def test_show_wide_names_the_shim_that_runs_the_container(sandbox: Sandbox) -> None:
    pod = sandbox.apply_example("kubia-manual.yaml")
    node = pod["spec"]["nodeName"]
    listing = _docker_exec(node, "ps", "-e", "-o", "pid=,ppid=,args=").splitlines()
    tree = {int(pid): (int(ppid), args) for pid, ppid, args in (line.split(None, 2) for line in listing)}
    (app_pid,) = [pid for pid, (_, args) in tree.items() if args == "node app.js"]
    shim_pid = tree[app_pid][0]
    # JSON: the ancestry is the node's own view (docker exec ps) and the kernel's (NSpid).
    doc = _show(sandbox, "kubia-manual")
    ancestry = doc["containers"][0]["ancestry"]
    assert [(a["node_pid"], a["ppid"], a["command"]) for a in ancestry] == [
        (shim_pid, tree[shim_pid][0], tree[shim_pid][1]), (1, 0, tree[1][1])], ancestry
    assert nspid(ancestry[0]["host_pid"]) == [ancestry[0]["host_pid"], shim_pid]
    # -o wide names the shim, with the same node PIDs.
    wide = sandbox.pidmap("show", "kubia-manual", "-o", "wide").stdout
    runs_under = wide.split("RUNS UNDER", 1)[1]
    shim_row = next(line for line in runs_under.splitlines() if "containerd-shim-runc-v2" in line)
    assert shim_row.split()[:4] == ["-", str(shim_pid), str(ancestry[0]["host_pid"]), str(tree[shim_pid][0])]
    assert shim_row.rstrip().endswith(tree[shim_pid][1]), shim_row
