"""Faults end cleanly: one line, a documented exit code, no traceback, no hang past --request-timeout.

Each test is one row of the fault table in docs/faults.md. They break things on purpose (stop the
API server, freeze a container, pause a node), so they run in a private sandbox of their own, not in
the session's. Ground truth: the kernel's /proc (tests/kernel.py) and the processes' own argv.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pidmap.errors import ExitStatus
from tests import kernel
from tests.conftest import Sandbox, private_kind_sandbox

pytestmark = [pytest.mark.sandbox, pytest.mark.root, pytest.mark.docker]

TIMEOUT = 2.0  # --request-timeout in these tests; pidmap's defaults are 10s (API) and 20s (probe)


@pytest.fixture(scope="module")
def faults(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    with private_kind_sandbox(tmp_path_factory, "-faults") as box:
        yield box


def _pod(box: Sandbox, name: str, script: str) -> dict[str, object]:
    manifest = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
                "spec": {"containers": [{"name": "app", "image": "busybox:1.36",
                                         "command": ["sh", "-c", script]}]}}
    box.kubectl("apply", "-f", "-", input=json.dumps(manifest))
    return box.wait_phase(name, {"Running"})


def _container_id(pod: dict[str, object]) -> str:
    status = pod["status"]
    assert isinstance(status, dict)
    return str(status["containerStatuses"][0]["containerID"]).split("://", 1)[1]


def _clean(result: subprocess.CompletedProcess[str]) -> None:
    """No traceback, and an error (if any) is the documented two lines: error, then hint."""
    assert "Traceback" not in result.stderr, result.stderr
    if result.returncode != 0:
        lines = result.stderr.splitlines()
        assert len(lines) == 2 and lines[0].startswith("error: ") and lines[1].startswith("hint: "), lines


def _api_server_pid(box: Sandbox) -> int:
    """The sandbox's API server, by its argv (``pidmap.sandbox.apiserver --state-dir DIR``)."""
    wanted = ["-m", "pidmap.sandbox.apiserver", "--state-dir", str(box.state_dir)]
    for entry in kernel.PROC.iterdir():
        if entry.name.isdigit():
            try:
                argv = (entry / "cmdline").read_bytes().decode().split("\0")
            except OSError:
                continue
            if any(argv[i:i + len(wanted)] == wanted for i in range(len(argv))):
                return int(entry.name)
    raise AssertionError(f"no API server process for {box.state_dir}")


def test_api_server_stopped_show_exits_unreachable_within_the_timeout(faults: Sandbox) -> None:
    _pod(faults, "fl-app", "sleep 3600")
    server = _api_server_pid(faults)
    os.kill(server, signal.SIGSTOP)
    try:
        # It still accepts connections (the kernel's backlog) but never answers. The subprocess
        # limit is below pidmap's own 10s default: only --request-timeout can end it in time.
        result = faults.pidmap("show", "fl-app", "--request-timeout", f"{TIMEOUT:g}s", check=False, timeout=9)
    finally:
        os.kill(server, signal.SIGCONT)
    assert result.returncode == ExitStatus.UNREACHABLE, result.stderr
    _clean(result)
    assert "did not answer in time" in result.stderr


def _freezer(pid: int) -> Path:
    """The cgroup freezer file of a process's cgroup (v1 freezer hierarchy, or v2 cgroup.freeze)."""
    for line in (kernel.PROC / str(pid) / "cgroup").read_text().splitlines():
        hierarchy, controllers, path = line.split(":", 2)
        if "freezer" in controllers.split(","):
            return Path("/sys/fs/cgroup/freezer") / path.lstrip("/") / "freezer.state"
        if hierarchy == "0" and not controllers:
            return Path("/sys/fs/cgroup") / path.lstrip("/") / "cgroup.freeze"
    raise AssertionError(f"no freezer for PID {pid}")


def _pod_freezer(pid: int) -> Path:
    """The freezer file of the pod cgroup that holds a container's cgroup (its parent).

    Freezing the pod, not the container, leaves the container's own freezer state THAWED (v1:
    freezer.self_freezing 0; v2: its cgroup.freeze 0), so runc takes it for running and starts an
    exec; the exec's process then joins the container's cgroup, inside the frozen pod, and stops there.
    """
    own = _freezer(pid)
    return own.parent.parent / own.name


def _states(freezer: Path) -> tuple[str, str]:
    return ("FROZEN", "THAWED") if freezer.name == "freezer.state" else ("1", "0")


def _show_while_frozen(faults: Sandbox, name: str, freezer_of: Callable[[int], Path],
                       ) -> tuple[set[int], set[int], dict[str, Any]]:
    """A pod running ``sleep 3600 & wait`` whose freezer (``freezer_of`` its PID 1) is frozen while
    `pidmap show -o json` maps it, exit 0: (its PIDs before, the kernel's PIDs in the container's
    cgroup while still frozen, the container's map). Thawed whatever happens."""
    pod = _pod(faults, name, "sleep 3600 & wait")
    pids = kernel.pids_in_cgroup(_container_id(pod))
    freezer = freezer_of(pids[0])
    frozen, thawed = _states(freezer)
    freezer.write_text(frozen)
    try:
        result = faults.pidmap("show", name, "-o", "json", "--request-timeout", f"{TIMEOUT:g}s",
                               check=False, timeout=60)
        # Read while still frozen: nothing in the cgroup can start or exit.
        truth = set(kernel.pids_in_cgroup(_container_id(pod)))
    finally:
        freezer.write_text(thawed)
    _clean(result)
    assert result.returncode == 0, result.stderr
    (cmap,) = json.loads(result.stdout)["containers"]
    assert {p["host_pid"] for p in cmap["processes"]} == truth
    return set(pids), truth, cmap


def test_frozen_container_probe_is_refused_and_the_host_side_maps_it(faults: Sandbox) -> None:
    # The container's own cgroup is frozen: runc takes it for paused and refuses the exec at
    # once (as on a real kind node), so the probe fails without waiting for any timeout.
    pids, truth, cmap = _show_while_frozen(faults, "fl-frozen", _freezer)
    assert truth >= pids
    for proc in cmap["processes"]:
        assert proc["container_pid"] == kernel.nspid(proc["host_pid"])[-1]
    # The runtime's refusal is the note (not a timeout), and the map says where it came from.
    refused = [note for note in cmap["notes"] if "the probe failed" in note and "paused" in note]
    assert refused and "mapped from the host side" in refused[0], cmap["notes"]
    assert not any("did not finish within" in note for note in cmap["notes"]), cmap["notes"]


def test_probe_stuck_in_a_frozen_pod_times_out_and_the_host_side_maps_it(faults: Sandbox) -> None:
    # The probe's exec joins the container's cgroup, and freezes with the pod: it never answers. The
    # kernel's PIDs, read while frozen, include the stuck exec (it joined the container's cgroup, so
    # it is the container's as the kernel sees it).
    pids, truth, cmap = _show_while_frozen(faults, "fl-stuck", _pod_freezer)
    assert truth > pids
    assert any(f"did not finish within {TIMEOUT:g}s" in note for note in cmap["notes"]), cmap["notes"]


def test_api_server_stopped_during_the_exec_show_ends_with_notes(faults: Sandbox) -> None:
    pod = _pod(faults, "fl-midway", "sleep 3600 & wait")
    container_id = _container_id(pod)
    before = set(kernel.pids_in_cgroup(container_id))
    freezer = _pod_freezer(min(before))
    frozen, thawed = _states(freezer)
    server = _api_server_pid(faults)
    # The pod is frozen so that the exec, once it has joined the container, waits there: then
    # the API server is stopped mid-exec, and the container thawed (the probe runs, its answer
    # cannot pass the stopped server).
    freezer.write_text(frozen)
    run = subprocess.Popen([sys.executable, "-m", "pidmap", "show", "fl-midway", "-o", "json",
                            "--request-timeout", f"{TIMEOUT:g}s"], env=faults.env, text=True,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        for _ in range(300):
            if set(kernel.pids_in_cgroup(container_id)) - before:
                break  # the exec's process is in the container: the exec is under way
            time.sleep(0.05)
        else:
            raise AssertionError("the probe's exec never reached the container")
        os.kill(server, signal.SIGSTOP)
        freezer.write_text(thawed)
        out, err = run.communicate(timeout=60)
    finally:
        freezer.write_text(thawed)
        os.kill(server, signal.SIGCONT)
        if run.poll() is None:
            run.kill()
            run.wait()
    result = subprocess.CompletedProcess(run.args, run.returncode, out, err)
    _clean(result)
    assert result.returncode == 0, err
    doc = json.loads(out)
    (cmap,) = doc["containers"]
    assert {p["host_pid"] for p in cmap["processes"]} >= before  # mapped from the host side
    assert any(f"did not finish within {TIMEOUT:g}s" in note for note in cmap["notes"]), cmap["notes"]
    assert any("could not be read again" in note for note in doc["notes"]), doc["notes"]


def _last_pid() -> int:
    """Forks since boot (/proc/stat `processes`): monotonic, unlike the last PID, which wraps at
    pid_max (seen in CI: a negative rate after the PIDs wrapped)."""
    line = next(line for line in kernel.PROC.joinpath("stat").read_text().splitlines()
                if line.startswith("processes "))
    return int(line.split()[1])


def test_a_pod_forking_hundreds_of_processes_a_second_maps_five_times_in_a_row(faults: Sandbox) -> None:
    # Batches of short-lived processes (fork + exec of a real binary), as fast as the node runs them.
    _pod(faults, "fl-forks", "while :; do for i in 1 2 3 4 5 6 7 8 9 10; do /bin/true & done; wait; done")
    try:
        before, start = _last_pid(), time.monotonic()
        time.sleep(1.0)
        # The kernel's last allocated PID: every process on the machine, the pod's nearly all of them.
        rate = (_last_pid() - before) / (time.monotonic() - start)
        print(f"processes started per second while the fork pod runs: {rate:.0f}")
        assert rate >= 100, f"the fork pod starts only {rate:.0f} processes a second: not the fault asked for"
        for _ in range(5):
            result = faults.pidmap("show", "fl-forks", "-o", "json", check=False, timeout=120)
            _clean(result)
            assert result.returncode == 0, result.stderr
            (cmap,) = json.loads(result.stdout)["containers"]
            assert any(p["container_pid"] == 1 and p["host_pid"] for p in cmap["processes"])
            table = faults.pidmap("show", "fl-forks", check=False, timeout=120)
            _clean(table)
            assert table.returncode == 0, table.stderr
    finally:
        faults.kubectl("delete", "pod", "fl-forks", "--wait=false", check=False)


def _argv(pid: int) -> list[str] | None:
    """The kernel's argv of ``pid``; None once it has exited."""
    try:
        return (kernel.PROC / str(pid) / "cmdline").read_bytes().decode(errors="replace").split("\0")[:-1]
    except OSError:
        return None


def _is_probe(argv: list[str]) -> bool:
    """A pidmap probe (``sh -c SCRIPT pidmap-probe probe``, and the subshells it forks, which keep its
    argv) or the ``tr`` it runs for each command line (``tr '\\000\\n' '  '``)."""
    return (argv[:2] == ["sh", "-c"] and argv[3:5] == ["pidmap-probe", "probe"]) or \
        argv == ["tr", "\\000\\n", "  "]


def test_a_host_with_ten_thousand_more_processes_maps_them_all(faults: Sandbox) -> None:
    # 10,000 sleeping processes in one container: the host then has 10,000+ processes, and the
    # container's own probe (a shell loop over /proc) has 10,000 to print.
    script = "i=0; while [ $i -lt 10000 ]; do sleep 3600 & i=$((i+1)); done; echo started; wait"
    pod = _pod(faults, "fl-many", script)
    container_id = _container_id(pod)
    try:
        for _ in range(600):
            if "started" in faults.kubectl("logs", "fl-many", check=False).stdout:
                break
            time.sleep(0.5)
        else:
            raise AssertionError("the 10,000 processes did not start")
        host_total = sum(1 for entry in kernel.PROC.iterdir() if entry.name.isdigit())
        print(f"processes on the host: {host_total}")
        assert host_total > 10_000
        # The container's own processes sleep: read before pidmap runs, they are the whole truth.
        truth = set(kernel.pids_in_cgroup(container_id))
        result = faults.pidmap("show", "fl-many", "-o", "json", check=False, timeout=300)
        after = set(kernel.pids_in_cgroup(container_id))
        assert truth <= after  # none of them exited meanwhile
        # Anything else in the cgroup now is pidmap's probe (or a child it forked), whose exec outlived
        # its timeout: the runtime kills it once the exec's client is gone, which may be just after
        # pidmap exits. It is pidmap's own, never the container's: told by the kernel's argv.
        others = {pid: _argv(pid) for pid in after - truth}
        print(f"in the container's cgroup: {len(after)}; not the container's own: {others}")
        assert all(argv is None or _is_probe(argv) for argv in others.values()), others
        _clean(result)
        assert result.returncode == 0, result.stderr
        (cmap,) = json.loads(result.stdout)["containers"]
        assert {p["host_pid"] for p in cmap["processes"]} == truth and len(truth) > 10_000
        print("notes:", cmap["notes"])
    finally:
        faults.kubectl("delete", "pod", "fl-many", "--wait=false", check=False)


class EngineThatGoesAway:
    """A Docker socket that forwards to the real engine until pidmap starts a ``docker exec``, then
    closes every connection and stops answering: the engine goes away in the middle of a run."""

    def __init__(self, path: Path, upstream: str = "/var/run/docker.sock") -> None:
        self.path, self.upstream, self.gone = path, upstream, threading.Event()
        self.listener = socket.socket(socket.AF_UNIX)
        self.listener.bind(str(path))
        self.listener.listen(16)
        self.open: list[socket.socket] = [self.listener]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.gone.is_set():
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            engine = socket.socket(socket.AF_UNIX)
            engine.connect(self.upstream)
            self.open += [client, engine]
            threading.Thread(target=self._pump, args=(client, engine, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(engine, client, False), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, from_client: bool) -> None:
        while True:
            try:
                data = source.recv(65536)
            except OSError:
                return
            if from_client and re.search(rb"POST /[^ ]*/exec/[0-9a-f]+/start", data):
                self.go_away()
                return
            if not data:
                return
            with contextlib.suppress(OSError):
                sink.sendall(data)

    def go_away(self) -> None:
        self.gone.set()
        for sock in self.open:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        self.path.unlink(missing_ok=True)


def test_docker_engine_gone_during_the_node_side_read_is_one_line(faults: Sandbox, tmp_path: Path) -> None:
    _pod(faults, "fl-engine", "sleep 3600")
    engine = EngineThatGoesAway(tmp_path / "docker.sock")
    try:
        env = {**faults.env, "DOCKER_HOST": f"unix://{engine.path}"}
        result = faults.pidmap("show", "fl-engine", "--via", "docker", "--request-timeout", f"{TIMEOUT:g}s",
                               check=False, env=env, timeout=60)
    finally:
        engine.go_away()
    assert engine.gone.is_set()  # it did go away, at the docker exec of the node-side reader
    _clean(result)
    # --via docker asks for the node to be read through the engine: with the engine gone there is
    # no way round it (no degrading to the container level), so the run ends as with no engine at
    # all: exit 7, one line naming the socket that stopped answering, and the hint.
    assert result.returncode == ExitStatus.DOCKER, result.stderr
    error, hint = result.stderr.splitlines()
    assert error == f"error: no Docker engine answers at unix://{engine.path}", error
    assert "DOCKER_HOST" in hint and "docker version" in hint, hint
    assert result.stdout == ""


def _node_pid(node: str) -> int:
    """The node container's init, as the host sees it (docker inspect)."""
    return int(subprocess.run(["docker", "inspect", "-f", "{{.State.Pid}}", node], capture_output=True,
                              text=True, check=True, timeout=60).stdout)


def _thaw(freezer: Path) -> None:
    """Make sure a node is thawed after ``docker unpause``. On cgroup v1 a freeze that races a
    process joining the cgroup (a ``docker exec`` into the node, which the sandbox's kubelet makes
    all the time) can stay FREEZING, and runc's unpause may leave it so: then every exec into the
    node, and the engine's calls about it, hang. THAWED is written to the freezer file directly."""
    for _ in range(50):
        try:
            state = freezer.read_text().strip()
        except OSError:
            return  # the node's cgroup is gone: nothing is frozen
        if state in ("THAWED", "0"):
            return
        freezer.write_text("THAWED" if freezer.name == "freezer.state" else "0")
        time.sleep(0.1)
    raise AssertionError(f"{freezer} stays {state} after docker unpause and THAWED written to it")


# Last in the module: the sandbox keeps a lost node's pods Unknown.
@pytest.mark.parametrize(("stop", "start"), [("pause", "unpause"), ("stop", "start")])
def test_paused_node_show_ends_within_the_timeout(faults: Sandbox, stop: str, start: str) -> None:
    name = f"fl-{stop}"
    pod = _pod(faults, name, "sleep 3600")
    node = str(pod["spec"]["nodeName"])  # type: ignore[index]
    node_freezer = _freezer(_node_pid(node))
    try:
        subprocess.run(["docker", stop, node], check=True, capture_output=True, timeout=120)
        result = faults.pidmap("show", name, "--request-timeout", f"{TIMEOUT:g}s", check=False,
                               timeout=60)
    finally:
        # Always undone, whatever failed above (a paused node left behind wedges every exec into it).
        subprocess.run(["docker", start, node], check=False, capture_output=True, timeout=120)
        if stop == "pause":
            _thaw(node_freezer)
    _clean(result)
    # The API server may already say the pod is Unknown (NodeLost: exit 8, as documented), or still
    # Running: then the probe times out and the frozen processes are mapped from the host side.
    assert result.returncode in (ExitStatus.OK, ExitStatus.NOT_RUNNING), result.stderr
    if result.returncode == ExitStatus.NOT_RUNNING:
        assert "Unknown" in result.stdout and "NodeLost" in result.stdout


def test_request_timeout_takes_kubectl_durations() -> None:
    from pidmap.cli import Duration

    for given, seconds in (("30", 30.0), ("30s", 30.0), ("500ms", 0.5), ("2m", 120.0), ("1m30s", 90.0),
                           ("1.5", 1.5)):
        assert Duration().convert(given, None, None) == seconds
    for bad in ("0", "soon", "-1s", "5x"):
        result = subprocess.run([sys.executable, "-m", "pidmap", "show", "kubia", "--request-timeout", bad],
                                capture_output=True, text=True, check=False, timeout=60)
        assert result.returncode == ExitStatus.USAGE, result.stderr
        assert result.stderr.startswith("error: Invalid value for '--request-timeout'"), result.stderr
        _clean(result)


def _restart_api_server(box: Sandbox) -> None:
    """A new API server for the sandbox once its old one is dead (the pods are adopted, as after a
    restart), so that the tests which run after this one, in whatever order, have a cluster."""
    from pidmap.sandbox.cluster import lifecycle
    from pidmap.sandbox.cluster.layout import StatePaths

    paths = StatePaths(box.state_dir)
    deadline = time.monotonic() + 30
    while lifecycle.apiserver_pid(paths) is not None:
        assert time.monotonic() < deadline, "the killed API server is still there"
        time.sleep(0.1)
    lifecycle._start_apiserver(paths.load_cluster(), paths, paths.token.read_text().strip())


def test_api_server_killed_during_the_exec_show_ends_with_notes(faults: Sandbox) -> None:
    pod = _pod(faults, "fl-killed", "sleep 3600 & wait")
    container_id = _container_id(pod)
    before = set(kernel.pids_in_cgroup(container_id))
    freezer = _pod_freezer(min(before))  # the exec is let in, and stops inside (see _pod_freezer)
    frozen, thawed = _states(freezer)
    server = _api_server_pid(faults)
    freezer.write_text(frozen)
    killed = False
    run = subprocess.Popen([sys.executable, "-m", "pidmap", "show", "fl-killed", "-o", "json",
                            "--request-timeout", "20s"], env=faults.env, text=True,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        for _ in range(300):
            if set(kernel.pids_in_cgroup(container_id)) - before:
                break  # the exec's process is in the container: the exec is under way
            time.sleep(0.05)
        else:
            raise AssertionError("the probe's exec never reached the container")
        os.kill(server, signal.SIGKILL)
        killed = True
        out, err = run.communicate(timeout=60)
    finally:
        freezer.write_text(thawed)
        if run.poll() is None:
            run.kill()
            run.wait()
        if killed:
            _restart_api_server(faults)
    result = subprocess.CompletedProcess(run.args, run.returncode, out, err)
    _clean(result)
    assert result.returncode == 0, err
    doc = json.loads(out)
    (cmap,) = doc["containers"]
    assert {p["host_pid"] for p in cmap["processes"]} >= before  # mapped from the host side
    # The broken stream ends the probe (not the 20s timeout), and the last read says it failed.
    assert any("the exec connection was lost" in note for note in cmap["notes"]), cmap["notes"]
    assert any("could not be read again" in note and "does not answer" in note for note in doc["notes"])
