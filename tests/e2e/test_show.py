"""`pidmap show` on the sandbox: every number pidmap prints equals ground truth read independently —
the host's /proc/PID/status NSpid, `docker exec NODE ps`, and `kubectl exec POD -- ps` (real kubectl).

Run with PIDMAP_TEST_SANDBOX=pc-test (the session fixture brings the sandbox up and down).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from pidmap.errors import ExitStatus
from tests import grid
from tests.conftest import RUNNING_EXAMPLES, Pods, Sandbox
from tests.kernel import cgroups, container_init, nspid

pytestmark = [pytest.mark.sandbox, pytest.mark.root, pytest.mark.docker]


def _ps_table(text: str) -> dict[int, tuple[int, str]]:
    """busybox `ps -o pid,ppid,args` → {pid: (ppid, args)}."""
    rows: dict[int, tuple[int, str]] = {}
    for line in text.splitlines()[1:]:
        parts = line.split(None, 2)
        if len(parts) == 3 and parts[0].isdigit():
            rows[int(parts[0])] = (int(parts[1]), parts[2].strip())
    return rows


def _show(box: Sandbox, pod: str, *args: str) -> dict[str, Any]:
    result = box.pidmap("show", pod, "-o", "json", *args)
    doc: dict[str, Any] = json.loads(result.stdout)
    return doc


def _container_ps(box: Sandbox, pod: str, container: str, namespace: str = "default",
                  ) -> dict[int, tuple[int, str]]:
    out = box.kubectl("exec", pod, "-n", namespace, "-c", container, "--", "ps", "-o", "pid,ppid,args").stdout
    # ps itself is a fresh process the probe could not have seen.
    return {pid: row for pid, row in _ps_table(out).items() if not row[1].startswith("ps -o")}


def _alive(host_pid: int, command: str) -> bool:
    try:
        raw = Path(f"/proc/{host_pid}/cmdline").read_bytes()
    except OSError:
        return False
    return raw.replace(b"\0", b" ").decode().strip() == command


# (host PID, node PID, container PID, command, cgroup text) of one process, as the kernel showed it.
Seen = tuple[int, int, int, str, str]


@contextmanager
def kernel_sampler(fragment: str, every: float = 0.05) -> Iterator[set[Seen]]:
    """Every process whose cgroup carries ``fragment`` (the pod's UID), read from /proc every
    ``every`` s while the block runs: NSpid, command line, cgroup. The evidence for rows whose
    process is gone by the time the test reads /proc (a sidecar's one-second ``sleep 1`` is seen
    some twenty times). Nothing pidmap printed goes in."""
    seen: set[Seen] = set()
    stop = threading.Event()

    def sample() -> None:
        while True:
            for pid, text in cgroups().items():
                if fragment not in text and fragment.replace("-", "_") not in text:
                    continue
                try:
                    chain = nspid(pid)
                    command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
                except (OSError, AssertionError):
                    continue  # exited between the two reads
                if len(chain) == 3:
                    seen.add((chain[0], chain[1], chain[2], command, text))
            if stop.wait(every):
                return

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield seen
    finally:
        stop.set()
        thread.join()


@pytest.mark.parametrize("example", RUNNING_EXAMPLES)
def test_every_pid_matches_ground_truth(sandbox: Sandbox, running_examples: Pods,
                                        example: str) -> None:
    name = {"kubia-manual.yaml": "kubia-manual", "init-container.yaml": "init-demo"}.get(
        example, example.removesuffix(".yaml"))
    pod = sandbox.pod(name)
    node_name = pod["spec"]["nodeName"]
    statuses = {s["name"]: s for key in ("containerStatuses", "initContainerStatuses")
                for s in pod["status"].get(key, [])}
    running_names = [n for n, s in statuses.items() if "running" in s["state"]]
    # ps before and after pidmap: what both show is long-lived and must be in pidmap's answer;
    # short-lived processes (the sidecars' `sleep 1`) may come and go in between: the kernel
    # sampler saw each of them while it lived.
    with kernel_sampler(pod["metadata"]["uid"]) as seen:
        time.sleep(2.5)  # a whole loop of the adapter (2 s): the kernel shows each command it runs
        before = {c: _container_ps(sandbox, name, c) for c in running_names}
        doc = _show(sandbox, name)
        after = {c: _container_ps(sandbox, name, c) for c in running_names}
    node_ps = _ps_table(subprocess.run(["docker", "exec", node_name, "ps", "-o", "pid,ppid,args"],
                                       capture_output=True, text=True, check=True).stdout)
    assert doc["phase"] == "Running" and doc["pod"] == name and doc["namespace"] == "default"
    inspect = json.loads(subprocess.run(["docker", "inspect", node_name], capture_output=True, text=True,
                                        check=True).stdout)[0]
    assert doc["node"] == {**doc["node"], "name": node_name, "provider": "minikube",
                           "container_id": inspect["Id"], "host_pid": inspect["State"]["Pid"]}
    shared = bool(pod["spec"].get("shareProcessNamespace"))
    mapped: set[int] = set()
    stable_all: set[int] = set()
    for container in doc["containers"]:
        status = statuses[container["name"]]
        assert container["container_id"] == status["containerID"].split("://", 1)[1]
        assert container["restart_count"] == status["restartCount"]
        if container["name"] not in running_names:
            assert container["state"] != "running" and container["processes"] == []
            continue
        assert container["state"] == "running" and container["processes"], container
        stable = {pid for pid, row in before[container["name"]].items()
                  if after[container["name"]].get(pid) == row}
        stable_all |= stable
        for proc in container["processes"]:
            cpid, node_pid, host_pid = proc["container_pid"], proc["node_pid"], proc["host_pid"]
            mapped.add(cpid)
            # Evidence for every row: the kernel showed this process, in this container's cgroup,
            # with these three PIDs and this command, while pidmap ran. A row seen by the probe
            # only (gone before the host scan: no host PID) needs the kernel's process with that
            # container PID and command. An invented row has neither.
            if host_pid is None:
                assert "gone" in proc["flags"], proc
                evidence = {s for s in seen if s[2] == cpid and s[3] == proc["command"]}
            else:
                evidence = {s for s in seen if s[:4] == (host_pid, node_pid, cpid, proc["command"])}
            if not any(container["container_id"] in s[4] for s in evidence):
                # A child of a few milliseconds (the adapter's date, sed, mv) can fall between two
                # samples. It is accepted only when it is gone now, the kernel did show this
                # container running that command, and no sampled process contradicts its PIDs.
                assert host_pid is None or not Path(f"/proc/{host_pid}").exists(), (container["name"], proc)
                assert any(s[3] == proc["command"] and container["container_id"] in s[4] for s in seen), \
                    (container["name"], proc)
                if host_pid is not None:  # (its pre-exec fork may have been sampled: same PIDs)
                    cid = container["container_id"]
                    clash = [s for s in seen if (s[0] == host_pid or (s[2] == cpid and cid in s[4]))
                             and s[:3] != (host_pid, node_pid, cpid)]
                    assert not clash, (container["name"], proc, clash)
            try:  # every read before any check: a brief sleep may exit between two reads
                alive = _alive(host_pid, proc["command"])
                chain, cgroup = nspid(host_pid), Path(f"/proc/{host_pid}/cgroup").read_text()
            except OSError:
                alive = False
            if not alive or (cpid in stable and node_pid not in node_ps):
                # Gone since (the adapter's `sleep 2` can outlive both ps runs and still end
                # before these reads): the sampler's evidence above is what shows it was real; if
                # the container still runs it, pidmap's host or node PID is wrong.
                now = _container_ps(sandbox, name, container["name"])
                assert now.get(cpid, (0, ""))[1] != proc["command"], (container["name"], proc, now)
                continue
            assert chain == [host_pid, node_pid, cpid]  # the host's own account of the chain
            assert container["container_id"] in cgroup
            if cpid in stable:
                assert node_ps[node_pid][1] == proc["command"]  # docker exec NODE ps
                assert after[container["name"]][cpid] == (proc["ppid"], proc["command"])  # kubectl exec ps
        if not shared:
            assert stable <= {p["container_pid"] for p in container["processes"]}
            assert any(p["container_pid"] == 1 and "pid1" in p["flags"] for p in container["processes"])
    if shared:
        # One namespace for the pod: ps shows the pause process (PID 1) plus every container's.
        assert stable_all - mapped == {1}
        assert "pause" in next(iter(after.values()))[1][1]
        # ... and pidmap shows that PID 1 as the pod's sandbox row, at every level.
        sandbox_row = doc["sandbox"]
        assert sandbox_row["container_pid"] == 1 and _alive(sandbox_row["host_pid"], sandbox_row["command"])
        assert nspid(sandbox_row["host_pid"]) == [sandbox_row["host_pid"], sandbox_row["node_pid"], 1]
        assert node_ps[sandbox_row["node_pid"]][1] == sandbox_row["command"] == "/pause"
    else:
        assert doc["sandbox"] is None


def test_table_output_kubia(sandbox: Sandbox, running_examples: Pods) -> None:
    # The table is parsed by its columns and its row checked against the kernel (tests/grid.py),
    # not against pidmap's JSON: the container's PID 1 is the one process whose cgroup carries the
    # container ID and whose NSpid ends in 1.
    pod = running_examples["kubia-manual"]
    (status,) = pod["status"]["containerStatuses"]
    host_pid = container_init(status["containerID"].split("://", 1)[1])
    chain = nspid(host_pid)
    out = sandbox.pidmap("show", "kubia-manual").stdout
    assert "POD default/kubia-manual" in out and "provider: minikube" in out
    (view,) = grid.parse_table(out)
    assert [(r.container, r.container_pid, r.node_pid, r.host_pid, r.pid1_mark) for r in view.rows] == [
        ("kubia", 1, chain[1], host_pid, True)]
    assert view.rows[0].command == "node app.js"
    assert view.node == pod["spec"]["nodeName"]
    assert view.node_host_pid == grid.docker_inspect(pod["spec"]["nodeName"])["State"]["Pid"]
    wide = sandbox.pidmap("show", "kubia-manual", "-o", "wide").stdout
    pid_ns = int(os.readlink(f"/proc/{host_pid}/ns/pid")[5:-1])  # the kernel's namespace inode
    assert f"pid-ns: {pid_ns}" in wide


def test_one_container_with_c(sandbox: Sandbox, running_examples: Pods) -> None:
    doc = _show(sandbox, "sidecar", "-c", "log-tailer")
    (container,) = doc["containers"]
    assert container["name"] == "log-tailer"
    assert [p["command"] for p in container["processes"]] == ["tail -f /var/log/app/app.log"]


def test_kubectl_plugin_name(sandbox: Sandbox, running_examples: Pods) -> None:
    # kubectl finds plugins on PATH by name (kubectl-pidmap, a console script of the package).
    env = {**sandbox.env, "PATH": f"{Path(sys.executable).parent}:{sandbox.env['PATH']}"}
    result = sandbox.run(["kubectl", "pidmap", "show", "kubia-manual", "-o", "json"], env=env)
    assert json.loads(result.stdout)["pod"] == "kubia-manual"


UNPRIVILEGED_ID = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


def test_unprivileged_maps_what_it_can(sandbox: Sandbox, running_examples: Pods) -> None:
    home = Path(tempfile.mkdtemp(prefix="pc-nobody-"))  # pytest's tmp_path is not reachable by nobody
    try:
        home.chmod(0o755)
        kubeconfig = home / "kubeconfig"
        kubeconfig.write_text(sandbox.kubeconfig.read_text())
        kubeconfig.chmod(0o644)
        env = {**sandbox.env, "KUBECONFIG": str(kubeconfig), "HOME": str(home)}
        argv = [*UNPRIVILEGED_ID, sys.executable, "-m", "pidmap", "show", "kubia-manual", "-o", "json"]
        result = sandbox.run(argv, env=env, check=False)
    finally:
        shutil.rmtree(home)
    assert "Traceback" not in result.stderr
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    (status,) = running_examples["kubia-manual"]["status"]["containerStatuses"]
    host_pid = container_init(status["containerID"].split("://", 1)[1])  # the kernel's, not root pidmap's
    (proc,) = [p for p in doc["containers"][0]["processes"] if p["container_pid"] == 1]
    assert proc["host_pid"] == host_pid and nspid(host_pid)[-1] == 1  # NSpid is world-readable
    assert proc["node_pid"] is None  # no Docker access: the node's level is unknown
    assert any("permission denied" in n for n in doc["notes"])
    assert any("not root" in n for n in doc["notes"])


# --- lifecycle: no process to map -------------------------------------------------------------

@pytest.mark.parametrize(("example", "phase", "words"), [
    ("completes.yaml", "Succeeded", "job exited 0"),
    ("fails.yaml", "Failed", "job exited 3"),
    ("pending.yaml", "Pending", "containers have not all started"),
])
def test_not_running_phases(sandbox: Sandbox, module_namespace: str, example: str, phase: str,
                            words: str) -> None:
    pod = sandbox.apply_example(example, {phase}, module_namespace)
    name = pod["metadata"]["name"]
    result = sandbox.pidmap("show", name, "-n", module_namespace, check=False)
    assert result.returncode == ExitStatus.NOT_RUNNING, result.stderr
    assert f"phase: {phase}" in result.stdout and words in result.stdout
    assert result.stderr.splitlines()[0] == f"error: pod {name} is {phase}: no process to map"
    assert result.stderr.splitlines()[1].startswith("hint: ") and len(result.stderr.splitlines()) == 2
    doc = json.loads(sandbox.pidmap("show", name, "-n", module_namespace, "-o", "json", check=False).stdout)
    assert doc["phase"] == phase and all(c["processes"] == [] for c in doc["containers"])


# --- init containers and nested PID namespaces (manifests inline: not examples for people) -------

SLOW_INIT = """
apiVersion: v1
kind: Pod
metadata:
  name: slow-init
spec:
  initContainers:
  - name: wait
    image: busybox:1.36
    command: ["sh", "-c", "sleep 3000"]
  containers:
  - name: app
    image: busybox:1.36
    command: ["sleep", "3001"]
"""

# PID 1 is sleep 3001; `unshare` makes a PID namespace nested inside the container whose own PID 1
# is `sleep 3000`, as docker-in-docker or kind-in-a-pod do (which needs CAP_SYS_ADMIN, as on kind).
NESTED = """
apiVersion: v1
kind: Pod
metadata:
  name: nested-pidns
spec:
  containers:
  - name: outer
    image: busybox:1.36
    command: ["sh", "-c", "unshare --pid --fork --mount-proc sleep 3000 & exec sleep 3001"]
    securityContext:
      capabilities:
        add: ["SYS_ADMIN"]
"""


def _apply_inline(box: Sandbox, manifest: str, name: str, namespace: str, ready: Any) -> dict[str, Any]:
    box.kubectl("apply", "-n", namespace, "-f", "-", input=manifest)
    deadline = time.monotonic() + 60
    pod = box.pod(name, namespace)
    while not ready(pod):
        assert time.monotonic() < deadline, json.dumps(pod["status"], indent=1)
        time.sleep(0.3)
        pod = box.pod(name, namespace)
    return pod


def _check_rows_against_proc(box: Sandbox, pod: str, namespace: str, container: dict[str, Any]) -> None:
    """Every row equals the host's NSpid (outermost three levels) and kubectl exec ps in the container."""
    ps = _container_ps(box, pod, container["name"], namespace)
    assert {p["container_pid"] for p in container["processes"]} == set(ps)
    for proc in container["processes"]:
        host_pid = proc["host_pid"]
        assert _alive(host_pid, proc["command"]), proc
        assert nspid(host_pid)[:3] == [host_pid, proc["node_pid"], proc["container_pid"]]
        assert container["container_id"] in Path(f"/proc/{host_pid}/cgroup").read_text()
        assert ps[proc["container_pid"]] == (proc["ppid"], proc["command"])


def _all_rows(box: Sandbox, pod: str, namespace: str) -> dict[str, set[tuple[Any, ...]]]:
    docs = json.loads(box.pidmap("show", "--all", "-n", namespace, "-o", "json").stdout)
    (doc,) = [d for d in docs if d["pod"] == pod]
    return {c["name"]: {(p["container_pid"], p["node_pid"], p["host_pid"]) for p in c["processes"]}
            for c in doc["containers"]}


def test_running_init_container_of_a_pending_pod_is_mapped(sandbox: Sandbox, module_namespace: str) -> None:
    ns = module_namespace

    def init_runs(pod: dict[str, Any]) -> bool:
        return any("running" in s["state"] for s in pod["status"].get("initContainerStatuses") or [])

    try:
        pod = _apply_inline(sandbox, SLOW_INIT, "slow-init", ns, init_runs)
        assert pod["status"]["phase"] == "Pending"
        result = sandbox.pidmap("show", "slow-init", "-n", ns, "-o", "json", check=False)
        assert result.returncode == 0, result.stderr
        doc = json.loads(result.stdout)
        assert doc["phase"] == "Pending"
        wait, app = doc["containers"]
        assert (wait["name"], wait["type"], wait["state"]) == ("wait", "init", "running")
        (status,) = pod["status"]["initContainerStatuses"]
        assert wait["container_id"] == status["containerID"].split("://", 1)[1]
        assert [p["container_pid"] for p in wait["processes"] if "pid1" in p["flags"]] == [1]
        _check_rows_against_proc(sandbox, "slow-init", ns, wait)
        assert app["state"] == "waiting" and app["processes"] == []
        # From the host side alone (cgroup ID, no exec), the same rows.
        rows = {(p["container_pid"], p["node_pid"], p["host_pid"]) for p in wait["processes"]}
        assert _all_rows(sandbox, "slow-init", ns) == {"wait": rows, "app": set()}
        # Only the app container asked for: nothing of it runs yet.
        only_app = sandbox.pidmap("show", "slow-init", "-n", ns, "-c", "app", check=False)
        assert only_app.returncode == ExitStatus.NOT_RUNNING, only_app.stderr
        assert only_app.stderr.splitlines()[0] == "error: pod slow-init is Pending: no process to map"
    finally:
        sandbox.kubectl("delete", "pod", "slow-init", "-n", ns, "--wait=true", check=False)


def test_nested_pid_namespace_keeps_the_container_pids(sandbox: Sandbox, module_namespace: str) -> None:
    ns = module_namespace

    def three_processes(pod: dict[str, Any]) -> bool:
        if pod["status"].get("phase") != "Running":
            return False
        ps = sandbox.kubectl("exec", "nested-pidns", "-n", ns, "--", "ps", "-o", "pid,args",
                             check=False).stdout
        return "sleep 3000" in ps

    try:
        _apply_inline(sandbox, NESTED, "nested-pidns", ns, three_processes)
        doc = _show(sandbox, "nested-pidns", "-n", ns)
        (outer,) = doc["containers"]
        _check_rows_against_proc(sandbox, "nested-pidns", ns, outer)
        (nested_init,) = [p for p in outer["processes"] if p["command"] == "sleep 3000"]
        chain = nspid(nested_init["host_pid"])
        assert len(chain) == 4 and chain[3] == 1 and nested_init["container_pid"] == chain[2] != 1
        pid1 = [p for p in outer["processes"] if "pid1" in p["flags"]]
        assert [(p["container_pid"], p["command"]) for p in pid1] == [(1, "sleep 3001")]
        assert not any("mismatch" in p["flags"] for p in outer["processes"])
        assert not outer["notes"] and not any("reused" in n for n in doc["notes"])
        rows = {(p["container_pid"], p["node_pid"], p["host_pid"]) for p in outer["processes"]}
        assert _all_rows(sandbox, "nested-pidns", ns) == {"outer": rows}
    finally:
        sandbox.kubectl("delete", "pod", "nested-pidns", "-n", ns, "--wait=true", check=False)


def test_show_all_in_a_missing_namespace_is_not_found(sandbox: Sandbox) -> None:
    # The API answers a missing namespace's pod list with 200 and no items, like an empty one's.
    missing = sandbox.pidmap("show", "--all", "-n", "no-such-ns", check=False)
    assert missing.returncode == ExitStatus.NOT_FOUND, missing.stderr
    assert missing.stderr.splitlines()[0] == 'error: namespace "no-such-ns" not found'
    sandbox.kubectl("create", "namespace", "pe-empty")
    try:
        empty = sandbox.pidmap("show", "--all", "-n", "pe-empty")
        assert empty.stdout.strip() == "no pods"
    finally:
        sandbox.kubectl("delete", "namespace", "pe-empty", "--wait=true", check=False, timeout=180)
