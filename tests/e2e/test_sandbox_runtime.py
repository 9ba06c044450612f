"""The sandbox's data plane through real kubectl, checked against /proc, docker and nsenter.

Every example manifest must reach its phase with Kubernetes' container states, and what the status
claims (container IDs, PID 1, namespaces) must be true on the host. The node-loss and teardown
tests use a second, private sandbox so that stopping a node never disturbs the session's one.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pidmap.errors import ExitStatus
from pidmap.sandbox.cluster.layout import OWNER_LABEL
from tests.conftest import Sandbox, private_kind_sandbox
from tests.kernel import cgroup_dirs, container_init, nspid, pids_in_cgroup

pytestmark = [pytest.mark.sandbox, pytest.mark.docker, pytest.mark.root]

PROC = Path("/proc")


def pid_ns(pid: int) -> str:
    return os.readlink(PROC / str(pid) / "ns" / "pid")


def cmdline(pid: int) -> str:
    return (PROC / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode().strip()


def container_id(status: dict[str, Any]) -> str:
    raw = str(status["containerID"])
    assert raw.startswith("containerd://"), raw
    cid = raw.removeprefix("containerd://")
    assert re.fullmatch(r"[0-9a-f]{64}", cid), raw
    return cid


def statuses(pod: dict[str, Any], key: str = "containerStatuses") -> dict[str, dict[str, Any]]:
    return {s["name"]: s for s in pod["status"].get(key) or []}


def wait_for(predicate: Any, timeout: float = 30, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def test_kubia_manual_runs_node_app_as_pid_1(sandbox: Sandbox) -> None:
    pod = sandbox.apply_example("kubia-manual.yaml")
    kubia = statuses(pod)["kubia"]
    assert "running" in kubia["state"] and kubia["ready"] is True and kubia["restartCount"] == 0
    node = pod["spec"]["nodeName"]
    cid = container_id(kubia)
    pids = pids_in_cgroup(cid)
    assert pids, f"no host process carries {cid} in its cgroup"
    main = [pid for pid in pids if nspid(pid)[-1] == 1]
    assert len(main) == 1, {pid: nspid(pid) for pid in pids}
    chain = nspid(main[0])
    assert len(chain) == 3 and chain[0] == main[0], chain
    assert cmdline(main[0]) == "node app.js"
    # The node's own view: docker exec sees the process under its node PID.
    ps = subprocess.run(["docker", "exec", node, "ps", "-o", "pid,args"], capture_output=True, text=True,
                        check=True).stdout
    rows = {int(line.split(None, 1)[0]): line.split(None, 1)[1] for line in ps.splitlines()[1:]}
    assert rows.get(chain[1]) == "node app.js", ps
    inside = sandbox.kubectl("exec", "kubia-manual", "--", "ps", "aux").stdout
    # procps's columns (USER PID ... COMMAND), as the real image prints them.
    assert inside.splitlines()[0].split()[:2] == ["USER", "PID"], inside
    assert re.search(r"^root\s+1\s.*\snode app\.js$", inside, re.MULTILINE), inside
    # The app answers with its hostname = the pod name, on the pod's own network namespace.
    answer = sandbox.kubectl("exec", "kubia-manual", "--", "wget", "-q", "-O", "-",
                             "http://127.0.0.1:8080/").stdout
    assert answer == "You've hit kubia-manual\n"


def test_sidecar_containers_have_their_own_pid_namespaces(sandbox: Sandbox) -> None:
    pod = sandbox.apply_example("sidecar.yaml")
    by_name = statuses(pod)
    assert len(by_name) == 2 and all("running" in s["state"] for s in by_name.values())
    namespaces = {}
    for name, status in by_name.items():
        namespaces[name] = pid_ns(container_init(container_id(status)))
    assert len(set(namespaces.values())) == 2, namespaces
    # ... but one network and UTS namespace (pause's), and the shared emptyDir volume works.
    writer, tailer = (by_name[c["name"]] for c in pod["spec"]["containers"])
    writer_pid = container_init(container_id(writer))
    tailer_pid = container_init(container_id(tailer))
    for kind in ("net", "uts", "ipc"):
        assert os.readlink(PROC / str(writer_pid) / "ns" / kind) == os.readlink(
            PROC / str(tailer_pid) / "ns" / kind), kind
    hostname = subprocess.run(["nsenter", "--target", str(writer_pid), "--uts", "hostname"],
                              capture_output=True, text=True, check=True).stdout.strip()
    assert hostname == "sidecar"
    tailer_name = pod["spec"]["containers"][1]["name"]
    log_dir = pod["spec"]["containers"][1]["volumeMounts"][0]["mountPath"]
    wait_for(lambda: sandbox.kubectl("exec", "sidecar", "-c", tailer_name, "--", "ls",
                                     log_dir).stdout.strip(),
             what="the writer's file to appear in the tailer's volume")


def test_shared_pid_pod_has_pause_as_pid_1(sandbox: Sandbox) -> None:
    pod = sandbox.apply_example("shared-pid.yaml")
    by_name = statuses(pod)
    namespaces = set()
    for status in by_name.values():
        pids = pids_in_cgroup(container_id(status))
        assert pids and all(len(nspid(pid)) == 3 and nspid(pid)[-1] != 1 for pid in pids)
        namespaces |= {pid_ns(pid) for pid in pids}
    assert len(namespaces) == 1, namespaces
    # PID 1 of that namespace is the pause process.
    some_pid = pids_in_cgroup(container_id(by_name["shell"]))[0]
    pause = [int(p.name) for p in PROC.iterdir() if p.name.isdigit() and _safe_ns(int(p.name)) in namespaces]
    assert len(pause) == 1 and cmdline(pause[0]) == "/pause", pause
    assert pid_ns(some_pid) == pid_ns(pause[0])
    ps = sandbox.kubectl("exec", "shared-pid", "-c", "shell", "--", "ps").stdout
    assert re.search(r"^\s*1\s+\S+\s+/pause$", ps, re.MULTILINE), ps
    assert "httpd -f -p 8080" in ps and "sleep 86400" in ps


def test_adapter_and_ambassador_share_the_pod_network(sandbox: Sandbox) -> None:
    adapter = sandbox.apply_example("adapter.yaml")
    assert all("running" in s["state"] for s in statuses(adapter).values())

    def metrics() -> str:
        result = sandbox.kubectl("exec", "adapter", "-c", "app", "--", "wget", "-q", "-O", "-",
                                 "http://127.0.0.1:9102/metrics", check=False)
        return result.stdout if result.returncode == 0 else ""

    assert re.fullmatch(r"app_requests_total \d+\n", wait_for(metrics, what="the adapter's metrics"))
    ambassador = sandbox.apply_example("ambassador.yaml")
    by_name = statuses(ambassador)
    # Each container's PID 1 (the app's loop runs a brief wget and sleep beside it).
    app_pid = container_init(container_id(by_name["app"]))
    proxy_pid = container_init(container_id(by_name["ambassador"]))
    assert pid_ns(app_pid) != pid_ns(proxy_pid)
    net = {os.readlink(PROC / str(pid) / "ns" / "net") for pid in (app_pid, proxy_pid)}
    assert len(net) == 1
    page = sandbox.kubectl("exec", "ambassador", "-c", "app", "--", "wget", "-q", "-O", "-",
                           "http://127.0.0.1:8001/").stdout
    assert page == "hello from the upstream service, via the ambassador\n"
    # Pods are isolated from each other: the ambassador's port is not open in another pod.
    other = sandbox.kubectl("exec", "adapter", "-c", "app", "--", "wget", "-q", "-T", "2", "-O", "-",
                            "http://127.0.0.1:8001/", check=False)
    assert other.returncode != 0


def _safe_ns(pid: int) -> str:
    try:
        return pid_ns(pid) if nspid(pid)[-1] == 1 else ""
    except OSError:
        return ""


def test_init_container_completes_before_the_app(sandbox: Sandbox) -> None:
    pod = sandbox.apply_example("init-container.yaml")
    init = statuses(pod, "initContainerStatuses")["prepare"]
    web = statuses(pod)["web"]
    assert init["state"]["terminated"]["exitCode"] == 0
    assert init["state"]["terminated"]["reason"] == "Completed"
    assert not pids_in_cgroup(container_id(init)), "a completed init container left processes"
    assert web["state"]["running"]["startedAt"] >= init["state"]["terminated"]["finishedAt"]
    conditions = {c["type"]: c["status"] for c in pod["status"]["conditions"]}
    assert conditions == {"PodScheduled": "True", "Initialized": "True", "ContainersReady": "True",
                          "Ready": "True"}
    page = sandbox.kubectl("exec", "init-demo", "--", "wget", "-q", "-O", "-", "http://127.0.0.1:8080/").stdout
    assert page == "prepared by the init container\n"


@pytest.mark.parametrize(("example", "name", "phase", "exit_code", "reason"), [
    ("completes.yaml", "completes", "Succeeded", 0, "Completed"),
    ("fails.yaml", "fails", "Failed", 3, "Error"),
])
def test_run_to_completion(sandbox: Sandbox, module_namespace: str, example: str, name: str, phase: str,
                           exit_code: int, reason: str) -> None:
    pod = sandbox.apply_example(example, {"Succeeded", "Failed"}, module_namespace)
    assert pod["status"]["phase"] == phase
    job = statuses(pod)["job"]
    terminated = job["state"]["terminated"]
    assert (terminated["exitCode"], terminated["reason"]) == (exit_code, reason)
    assert terminated["containerID"] == job["containerID"]
    assert job["restartCount"] == 0 and job["ready"] is False
    assert not pids_in_cgroup(container_id(job))
    result = sandbox.kubectl("exec", name, "-n", module_namespace, "--", "true", check=False)
    assert result.returncode != 0


def test_unknown_image_stays_pending(sandbox: Sandbox, module_namespace: str) -> None:
    sandbox.kubectl("apply", "-n", module_namespace, "-f",
                    str(Path(__file__).parents[2] / "examples" / "pending.yaml"))

    def backing_off() -> dict[str, Any] | None:
        pod = sandbox.pod("pending", module_namespace)
        waiting = statuses(pod)["app"]["state"].get("waiting", {})
        return pod if waiting.get("reason") == "ImagePullBackOff" else None

    pod = wait_for(backing_off, what="ImagePullBackOff")
    assert pod["status"]["phase"] == "Pending"
    app = statuses(pod)["app"]
    expected = 'Back-off pulling image "registry.invalid/pidmap/no-such-image:1"'
    assert app["state"]["waiting"]["message"] == expected
    assert app["ready"] is False and "containerID" not in app


def test_killing_pid_1_restarts_the_container(sandbox: Sandbox, module_namespace: str) -> None:
    ns = module_namespace
    sandbox.kubectl("run", "pa-restart", "-n", ns, "--image=busybox", "--restart=Always", "--",
                    "sleep", "3600")
    pod = sandbox.wait_phase("pa-restart", {"Running"}, ns)
    first = statuses(pod)["pa-restart"]
    old_id = container_id(first)
    main = next(pid for pid in pids_in_cgroup(old_id) if nspid(pid)[-1] == 1)
    os.kill(main, signal.SIGKILL)

    def restarted() -> dict[str, Any] | None:
        status = statuses(sandbox.pod("pa-restart", ns))["pa-restart"]
        return status if status["restartCount"] == 1 and "running" in status["state"] else None

    status = wait_for(restarted, what="restartCount 1 and running")
    assert container_id(status) != old_id
    last = status["lastState"]["terminated"]
    assert (last["exitCode"], last["reason"]) == (137, "Error")
    assert last["containerID"] == first["containerID"]
    assert not pids_in_cgroup(old_id)
    assert pids_in_cgroup(container_id(status))
    sandbox.kubectl("delete", "pod", "pa-restart", "-n", ns, "--wait=true")


def test_delete_pod_removes_processes_and_cgroups(sandbox: Sandbox, module_namespace: str) -> None:
    ns = module_namespace
    sandbox.kubectl("run", "pa-delete", "-n", ns, "--image=busybox", "--restart=Never", "--", "sleep", "3600")
    pod = sandbox.wait_phase("pa-delete", {"Running"}, ns)
    cid = container_id(statuses(pod)["pa-delete"])
    uid = pod["metadata"]["uid"]
    assert pids_in_cgroup(cid)
    assert _cgroup_dirs(uid)
    sandbox.kubectl("delete", "pod", "pa-delete", "-n", ns, "--wait=true", timeout=60)
    wait_for(lambda: not pids_in_cgroup(cid), timeout=15, what="the pod's processes to exit")
    wait_for(lambda: not _cgroup_dirs(uid), timeout=15, what="the pod's cgroups to go")


def _cgroup_dirs(fragment: str) -> list[Path]:
    """The pod's cgroup directories in the hierarchy membership is read from (v2's one, v1's pids)."""
    return cgroup_dirs(fragment)


# ---- a private sandbox: node loss, then a teardown that must leave nothing behind ------------

@pytest.fixture(scope="module")
def private(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    with private_kind_sandbox(tmp_path_factory, "-lost") as box:
        yield box


def test_private_sandbox_is_named_and_labelled_like_kind(private: Sandbox) -> None:
    names = subprocess.run(["docker", "ps", "--filter", f"label=io.x-k8s.kind.cluster={private.name}",
                            "--format", "{{.Names}} {{.Label \"io.x-k8s.kind.role\"}}"],
                           capture_output=True, text=True, check=True).stdout.split("\n")
    assert sorted(filter(None, names)) == [f"{private.name}-control-plane control-plane",
                                           f"{private.name}-worker worker"]
    hostname = subprocess.run(["docker", "exec", f"{private.name}-worker", "hostname"], capture_output=True,
                              text=True, check=True).stdout.strip()
    assert hostname == f"{private.name}-worker"
    contexts = private.kubectl("config", "get-contexts", "-o", "name").stdout.split()
    assert f"kind-{private.name}" in contexts
    assert (private.state_dir / "token").stat().st_mode & 0o777 == 0o600


def test_second_up_is_refused(private: Sandbox) -> None:
    result = private.pidmap("sandbox", "up", "--name", private.name, "--flavor", "kind", check=False)
    assert result.returncode == 10, result.stderr
    error, hint = result.stderr.splitlines()
    assert error == f"error: sandbox {private.name} is already up (or was not fully torn down)"
    assert hint == f"hint: pidmap sandbox down --name {private.name}"


def test_up_from_another_state_home_is_refused_and_names_the_live_api_server(private: Sandbox,
                                                                             tmp_path: Path) -> None:
    # Same name, another PIDMAP_SANDBOX_HOME: its API server would drive this one's node containers.
    other = tmp_path / "other-home"
    env = {**private.env, "PIDMAP_SANDBOX_HOME": str(other)}
    owned = ["docker", "ps", "-aq", "--filter", f"label={OWNER_LABEL}={private.name}"]
    before = subprocess.run(owned, capture_output=True, text=True, check=True).stdout
    assert before.split()
    result = private.pidmap("sandbox", "up", "--name", private.name, "--flavor", "kind", env=env,
                            check=False)
    assert result.returncode == ExitStatus.SANDBOX, result.stderr
    # The kernel: the live API server is the process the state's pid file names, and it is one.
    pid = int((private.state_dir / "apiserver.pid").read_text())
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    assert b"pidmap.sandbox.apiserver" in argv and os.fsencode(private.state_dir) in argv, argv
    error, hint = result.stderr.splitlines()
    assert error == (f"error: sandbox {private.name} is already up from another state home: its API "
                     f"server runs as PID {pid} with state in {private.state_dir}")
    assert hint == (f"hint: PIDMAP_SANDBOX_HOME={private.state_dir.parent} pidmap sandbox down "
                    f"--name {private.name}")
    # Nothing was made: no state in the other home, no container.
    assert not (other / private.name).exists()
    after = subprocess.run(owned, capture_output=True, text=True, check=True).stdout
    assert after == before


def test_status_lists_nodes_and_pods(private: Sandbox) -> None:
    private.kubectl("run", "pa-status", "--image=busybox", "--", "sleep", "3600")
    private.wait_phase("pa-status", {"Running"})
    out = private.pidmap("sandbox", "status", "--name", private.name).stdout
    ids = {n["name"]: n["container_id"][:12] for n in
           json.loads((private.state_dir / "cluster.json").read_text())["nodes"]}
    for node, short_id in ids.items():
        docker_state = subprocess.run(["docker", "inspect", "-f", "{{.State.Status}}", node],
                                      capture_output=True, text=True, check=True).stdout.strip()
        assert re.search(rf"^{re.escape(node)}\s+\S+\s+{docker_state}\s+{short_id}$", out, re.MULTILINE), out
    assert re.search(r"^default\s+pa-status\s+Running\s+\S+$", out, re.MULTILINE), out
    private.kubectl("delete", "pod", "pa-status")


def _node_ready(box: Sandbox, node: str) -> str:
    nodes = json.loads(box.kubectl("get", "node", node, "-o", "json").stdout)
    return str(next(c for c in nodes["status"]["conditions"] if c["type"] == "Ready")["status"])


def _on(node: str, name: str) -> str:
    return json.dumps({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
                       "spec": {"nodeName": node, "containers": [{"name": "c", "image": "busybox",
                                                                  "command": ["sleep", "3600"]}]}})


def test_paused_node_is_not_ready_then_resumes_and_starts_new_pods(private: Sandbox) -> None:
    worker = f"{private.name}-worker"
    private.kubectl("apply", "-f", "-", input=_on(worker, "pa-frozen"))
    before = container_id(statuses(private.wait_phase("pa-frozen", {"Running"}))["c"])
    subprocess.run(["docker", "pause", worker], check=True, capture_output=True)
    try:
        wait_for(lambda: _node_ready(private, worker) != "True", timeout=10, what="node NotReady")
        time.sleep(10)
    finally:
        subprocess.run(["docker", "unpause", worker], check=True, capture_output=True)
    unpaused = time.monotonic()
    private.kubectl("apply", "-f", "-", input=_on(worker, "pa-after-pause"))
    private.wait_phase("pa-after-pause", {"Running"}, timeout=30)
    assert time.monotonic() - unpaused < 30
    assert _node_ready(private, worker) == "True"
    # The pod that ran through the pause is adopted: the same container, never restarted.
    pod = private.wait_phase("pa-frozen", {"Running"}, timeout=30)
    assert container_id(statuses(pod)["c"]) == before and statuses(pod)["c"]["restartCount"] == 0
    assert pids_in_cgroup(before)
    private.kubectl("delete", "pod", "pa-frozen", "pa-after-pause")


def test_restarted_api_server_adopts_running_pods(private: Sandbox) -> None:
    from pidmap.sandbox.cluster import lifecycle
    from pidmap.sandbox.cluster.layout import StatePaths

    private.kubectl("apply", "-f", "-", input=_on(f"{private.name}-control-plane", "pa-adopt"))
    before = container_id(statuses(private.wait_phase("pa-adopt", {"Running"}))["c"])
    paths = StatePaths(private.state_dir)
    old = int(paths.apiserver_pid.read_text())
    os.kill(old, signal.SIGTERM)
    wait_for(lambda: lifecycle.apiserver_pid(paths) is None, what="the API server to stop")
    new = lifecycle._start_apiserver(paths.load_cluster(), paths, paths.token.read_text().strip())
    assert new != old
    # containerd is the source of truth: the same container, still running, never restarted.
    time.sleep(2)
    pod = private.wait_phase("pa-adopt", {"Running"})
    status = statuses(pod)["c"]
    assert container_id(status) == before and status["restartCount"] == 0 and status["ready"], status
    assert [nspid(p)[-1] for p in pids_in_cgroup(before)] == [1]
    assert private.kubectl("exec", "pa-adopt", "--", "cat", "/proc/1/cmdline").stdout == "sleep\x003600\x00"
    # One event watcher per node, as one kubelet: the old server's was stopped, not left behind.
    def watchers() -> list[str]:
        args = subprocess.run(["docker", "exec", f"{private.name}-control-plane", "ps", "-e", "-o", "args="],
                              capture_output=True, text=True, check=True).stdout.splitlines()
        return [line for line in args if line.strip() == "ctr events"]
    wait_for(lambda: len(watchers()) == 1, what="one ctr events in the node")
    private.kubectl("delete", "pod", "pa-adopt")
    assert not pids_in_cgroup(before)


def test_stopped_node_makes_its_pods_unknown(private: Sandbox) -> None:
    worker = f"{private.name}-worker"
    manifest = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "pa-lost"},
                "spec": {"nodeName": worker, "containers": [{"name": "c", "image": "busybox",
                                                              "command": ["sleep", "3600"]}]}}
    private.kubectl("apply", "-f", "-", input=json.dumps(manifest))
    pod = private.wait_phase("pa-lost", {"Running"})
    assert pod["spec"]["nodeName"] == worker
    cid = container_id(statuses(pod)["c"])
    assert pids_in_cgroup(cid)
    subprocess.run(["docker", "stop", "-t", "1", worker], check=True, capture_output=True)
    pod = private.wait_phase("pa-lost", {"Unknown"}, timeout=30)
    assert pod["status"].get("reason") == "NodeLost"
    nodes = json.loads(private.kubectl("get", "node", worker, "-o", "json").stdout)
    ready = next(c for c in nodes["status"]["conditions"] if c["type"] == "Ready")
    assert ready["status"] != "True"
    assert not pids_in_cgroup(cid)
    # Nothing runs, so pidmap has nothing to map: exit 8, in one line, naming the phase.
    shown = private.pidmap("show", "pa-lost", check=False)
    assert shown.returncode == ExitStatus.NOT_RUNNING, (shown.stdout, shown.stderr)
    assert shown.stderr.splitlines() == ["error: pod pa-lost is Unknown: no process to map",
                                         "hint: kubectl describe pod pa-lost -n default"], shown.stderr
    assert "phase: Unknown" in shown.stdout
    # Started again, the node's containerd has lost its tasks: the pod runs again in a new sandbox,
    # its container restarted once (the lost one reported with exit code 255, as kubelet does).
    subprocess.run(["docker", "start", worker], check=True, capture_output=True)

    def restarted() -> dict[str, Any] | None:
        status = statuses(private.pod("pa-lost"))["c"]
        return status if status["restartCount"] == 1 and "running" in status["state"] else None

    status = wait_for(restarted, timeout=60, what="the lost container restarted once")
    assert status["lastState"]["terminated"]["exitCode"] == 255, status
    assert private.pod("pa-lost")["status"]["phase"] == "Running"
    assert pids_in_cgroup(container_id(status))
    private.kubectl("delete", "pod", "pa-lost", "--wait=true")


@pytest.fixture
def doomed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    """A sandbox of its own for the test that takes it down (the others' must stay up, whatever
    order they run in)."""
    with private_kind_sandbox(tmp_path_factory, "-down") as box:
        yield box


def test_down_leaves_nothing_behind(doomed: Sandbox) -> None:
    private = doomed
    # A stopped worker, and a running pod on the control plane, so there is something to clean up.
    subprocess.run(["docker", "stop", "-t", "1", f"{private.name}-worker"], check=True, capture_output=True)
    pin = json.dumps({"spec": {"nodeName": f"{private.name}-control-plane"}})
    private.kubectl("run", "pa-left", "--image=busybox", "--overrides", pin, "--", "sleep", "3600")
    pod = private.wait_phase("pa-left", {"Running"})
    cid = container_id(statuses(pod)["pa-left"])
    spec = json.loads((private.state_dir / "cluster.json").read_text())
    port = spec["api_port"]
    node_ids = [n["container_id"] for n in spec["nodes"]]
    api_pid = int((private.state_dir / "apiserver.pid").read_text())
    assert pids_in_cgroup(cid)

    result = private.pidmap("sandbox", "down", "--name", private.name)
    assert "Deleted" in result.stdout

    left = subprocess.run(["docker", "ps", "-aq", "--filter", f"label=io.pidmap.sandbox={private.name}"],
                          capture_output=True, text=True, check=True).stdout.split()
    assert left == [], "no container"
    assert not pids_in_cgroup(cid), "no pod process"
    api_cmdline = PROC / str(api_pid) / "cmdline"
    assert not api_cmdline.exists() or b"pidmap.sandbox.apiserver" not in api_cmdline.read_bytes()
    for node_id in node_ids:
        assert not cgroup_dirs(node_id), "no cgroup dir"
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0, "no listening port"
    contexts = private.kubectl("config", "get-contexts", "-o", "name").stdout.split()
    assert f"kind-{private.name}" not in contexts, "no kubeconfig entry"
    assert not private.state_dir.exists(), "no state dir"
    again = private.pidmap("sandbox", "down", "--name", private.name)
    assert "nothing to stop" in again.stdout
    status = private.pidmap("sandbox", "status", "--name", private.name, check=False)
    assert status.returncode == 10 and "is not up" in status.stderr
