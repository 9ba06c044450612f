"""The real runtime: one node's containerd, driven with ``ctr`` as kubelet drives it through CRI.

Every node container runs kind's container runtime (containerd, containerd-shim-runc-v2, runc; see
cluster/image.py). This runtime reaches it with ``docker exec NODE ctr -n k8s.io ...`` (argv lists
only, every call with a timeout):

* RunPodSandbox: one ``registry.k8s.io/pause:3.10`` container per pod owning the pod's network, IPC
  and UTS namespaces (hostname = pod name), and with ``shareProcessNamespace`` its PID namespace;
* CreateContainer + StartContainer: init, app and ephemeral containers join those namespaces
  (``ctr run --with-ns``), with the CRI labels (``io.kubernetes.pod.name`` ...) and annotations. The
  ``io.kubernetes.cri.sandbox-id`` annotation makes the runc v2 shim group a pod's containers, so
  a pod has one ``containerd-shim-runc-v2 -namespace k8s.io -id <sandbox id>``, as on kind;
* cgroups named as containerd's systemd driver names them on kind (minikube flavor: the cgroupfs
  names), under the node container's own cgroup; container IDs are containerd's;
* Exec: ``ctr task exec``, so exec'd processes are children of the shim; a command runc cannot
  start becomes ExecFailed, never text for the API server to parse;
* Attach: a container with ``stdin: true`` is started with containerd's FIFOs for its stdio (kept
  open by the shim, as with CRI) instead of a log file, and reached with ``ctr tasks attach``
  (CtrAttach);
* exits come from containerd's ``/tasks/exit`` events (``ctr events``), with a periodic listing
  for an event missed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import secrets
import signal
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path

from pidmap.sandbox.cluster import cgroups
from pidmap.sandbox.cluster.catalog import PAUSE, PodImage
from pidmap.sandbox.contracts import STDERR, STDOUT, ExecFailed, Send
from pidmap.sandbox.kubelet.runtime import (
    ContainerConfig,
    ImageUnavailable,
    NodeLost,
    PodSandboxConfig,
    Started,
    StartFailed,
)

log = logging.getLogger("pidmap.sandbox.kubelet")

NAMESPACE = "k8s.io"
SNAPSHOTTER = "overlayfs"
CALL_TIMEOUT = 15.0
NODE_POLL_SECONDS = 1.0
RECONCILE_SECONDS = 10.0
GRACE_SECONDS = 2.0
POD_LOG_DIR = "/var/log/pods"  # bind-mounted from the state directory's logs/
_NON_ZERO_EXIT = re.compile(r"exit with non-zero exit code (\d+)")
# `ctr task exec` reports a command runc cannot start like this (exit status 1), as containerd
# reports it to kubelet on a real node.
_EXEC_FAILED = re.compile(rb"^ctr: (OCI runtime exec failed: .+)$", re.MULTILINE)


def stdio_args(container: ContainerConfig, log_file: str) -> list[str]:
    """``ctr run`` arguments for the container's stdio: its log file, as kubelet's CRI logger writes
    it; none for a container that can be attached to (``stdin: true``): ``ctr run -d`` without
    ``--log-uri`` gives it FIFOs under /run/containerd/fifo that the shim keeps open (a write end of
    stdin too) for the container's life, so its stdin stays open after ``ctr run`` returns."""
    if container.stdin:
        return []
    return ["--log-uri", f"file://{log_file}"]


def container_cgroup(flavor: str, pod_dir: str, container_id: str) -> str:
    """The container's cgroup below the node's: containerd's systemd driver (kind) or cgroupfs names."""
    leaf = f"cri-containerd-{container_id}.scope" if flavor == "kind" else container_id
    return f"{pod_dir}/{leaf}"


def exec_failure(stderr: bytes | bytearray) -> str | None:
    """The runtime's refusal to start an exec'd command, in the words kubelet reports; None: none."""
    failed = _EXEC_FAILED.search(stderr)
    return failed.group(1).decode(errors="replace").strip() if failed else None


@dataclass
class CtrResult:
    returncode: int
    stdout: str
    stderr: str


class CtrRuntime:
    """One node's containerd, reached with ``docker exec NODE ctr`` (every call with a timeout)."""

    def __init__(self, node: str, docker_cli: str, *, flavor: str = "kind",
                 log_root: Path | None = None) -> None:
        self.node = node
        self.docker = docker_cli
        self.flavor = flavor
        self.log_root = log_root  # the host's side of the node's /var/log/pods
        self.waiters: dict[str, asyncio.Future[int]] = {}
        # Waiters whose task is known to have started: only these can be settled by a listing that
        # does not show their task (one registered before `ctr run` is not in the listing yet).
        self.started: set[str] = set()
        self.images: dict[str, str] = {}  # reference -> manifest digest
        self.cgroup_parent = ""  # the node container's cgroup, e.g. /docker/<id>
        self.events: asyncio.Task[None] | None = None
        self._exits: dict[str, asyncio.Future[int]] = {}  # containers `start` started, for `wait`
        self._sandbox_pids: dict[str, int] = {}  # sandbox id -> node PID of its pause process

    # ---- calls into the node ------------------------------------------------------------------
    def ctr_argv(self, *args: str, stdin: bool = False) -> list[str]:
        return [self.docker, "exec", *(["-i"] if stdin else []), self.node, "ctr", "-n", NAMESPACE, *args]

    async def run(self, argv: list[str], timeout: float = CALL_TIMEOUT,
                  stdin: Path | None = None) -> CtrResult:
        """Run ``argv`` (a docker exec); NodeLost when it does not finish in ``timeout`` seconds."""
        handle = stdin.open("rb") if stdin else None
        try:
            process = await asyncio.create_subprocess_exec(
                *argv, stdin=handle or asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE, start_new_session=True)
            try:
                out, errors = await asyncio.wait_for(process.communicate(), timeout)
            except (TimeoutError, asyncio.CancelledError):
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
                raise
        except TimeoutError as timeout_error:
            what = " ".join(argv[2:6])
            raise NodeLost(f"{self.node}: {what}... did not answer in {timeout:.0f} s") from timeout_error
        finally:
            if handle:
                handle.close()
        return CtrResult(process.returncode or 0, out.decode(errors="replace"),
                         errors.decode(errors="replace"))

    async def ctr(self, *args: str, timeout: float = CALL_TIMEOUT) -> CtrResult:
        return await self.run(self.ctr_argv(*args), timeout)

    async def node_exec(self, *argv: str, timeout: float = CALL_TIMEOUT) -> CtrResult:
        return await self.run([self.docker, "exec", self.node, *argv], timeout)

    async def tasks(self) -> dict[str, tuple[int, str]]:
        """containerd's tasks: id -> (node PID, status)."""
        result = await self.ctr("tasks", "ls")
        if result.returncode != 0:
            raise NodeLost(f"{self.node}: ctr tasks ls: {result.stderr.strip()}")
        found: dict[str, tuple[int, str]] = {}
        for line in result.stdout.splitlines()[1:]:
            fields = line.split()
            if len(fields) >= 3 and fields[1].isdigit():
                found[fields[0]] = (int(fields[1]), fields[2])
        return found

    async def load_images(self) -> None:
        result = await self.ctr("images", "ls")
        if result.returncode != 0:
            raise NodeLost(f"{self.node}: ctr images ls: {result.stderr.strip()}")
        self.images = {}
        for line in result.stdout.splitlines()[1:]:
            fields = line.split()
            if len(fields) >= 3 and not fields[0].startswith("sha256:"):
                self.images[fields[0]] = fields[2]

    async def _read_cgroup_parent(self) -> None:
        result = await self.node_exec("cat", "/proc/1/cgroup")
        for line in result.stdout.splitlines():
            hierarchy, controllers, path = line.split(":", 2)
            if path != "/" and (controllers == "pids" or hierarchy == "0"):
                self.cgroup_parent = path
                return
        raise NodeLost(f"{self.node}: cannot read its cgroup ({result.stderr.strip()})")

    async def _prepare(self) -> None:
        """The node's cgroup and images, read on first use."""
        if not self.cgroup_parent:
            await self._read_cgroup_parent()
        if not self.images:
            await self.load_images()

    # ---- exits -------------------------------------------------------------------------------
    def expect_exit(self, container_id: str, *, started: bool = True) -> asyncio.Future[int]:
        """The future of the task's exit code. ``started=False``: registered before ``ctr run``
        (so that an exit at once is not missed), the task may not exist yet; ``task_started`` says
        when it does. Until then ``reconcile`` leaves the waiter alone."""
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.waiters[container_id] = future
        if started:
            self.started.add(container_id)
        return future

    def task_started(self, container_id: str) -> None:
        if container_id in self.waiters:
            self.started.add(container_id)

    def forget(self, container_id: str) -> None:
        self.waiters.pop(container_id, None)
        self.started.discard(container_id)

    def exited(self, container_id: str, code: int) -> None:
        self.started.discard(container_id)
        future = self.waiters.pop(container_id, None)
        if future is not None and not future.done():
            future.set_result(code)

    async def delete_task(self, container_id: str) -> int | None:
        """Delete a stopped task; its exit code as containerd reports it (None: no such task)."""
        result = await self.ctr("tasks", "delete", container_id)
        if result.returncode != 0:
            return None
        found = _NON_ZERO_EXIT.search(result.stderr)
        return int(found.group(1)) if found else 0

    async def reconcile(self) -> None:
        """Settle every waiter whose task is no longer running (an exit event we did not see).

        Only waiters whose task had started before the listing is asked for: a `ctr run` under way
        (seconds on a loaded node) has registered its waiter but its task is not listed yet, and
        settling it with 255 would report a running container as exited (and start it again)."""
        armed = [container_id for container_id in self.waiters if container_id in self.started]
        if not armed:
            return
        tasks = await self.tasks()
        for container_id in armed:
            if container_id not in self.waiters:
                continue  # its exit event came while the listing ran
            pid_status = tasks.get(container_id)
            if pid_status is None:
                self.exited(container_id, 255)  # lost with its node (Kubernetes: exit 255, Unknown)
            elif pid_status[1] == "STOPPED":
                code = await self.delete_task(container_id)
                self.exited(container_id, 255 if code is None else code)

    async def _stop_stale_watchers(self) -> None:
        """A `ctr events` left by an earlier kubelet (a killed `docker exec` client does not stop
        what it started in the node): stopped by its PID, so the node shows one watcher."""
        with contextlib.suppress(NodeLost):
            listing = await self.node_exec("ps", "-e", "-o", "pid=,args=")
            stale = [line.split(None, 1)[0] for line in listing.stdout.splitlines()
                     if line.split(None, 1)[1:] == ["ctr events"]]
            if stale:
                await self.node_exec("kill", *stale)

    async def watch_events(self, is_up: Callable[[], bool]) -> None:
        """Follow containerd's /tasks/exit events for as long as the kubelet lives."""
        while True:
            if not is_up():
                await asyncio.sleep(NODE_POLL_SECONDS)
                continue
            await self._stop_stale_watchers()
            process = await asyncio.create_subprocess_exec(
                self.docker, "exec", self.node, "ctr", "events", stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL, start_new_session=True)
            settle = asyncio.create_task(self._settle_periodically())
            try:
                assert process.stdout is not None
                while line := await process.stdout.readline():
                    text = line.decode(errors="replace")
                    if f" {NAMESPACE} /tasks/exit " not in text:
                        continue
                    with contextlib.suppress(ValueError, KeyError):
                        event = json.loads(text[text.index("{"):])
                        if event.get("id") == event.get("container_id"):
                            self.exited(str(event["container_id"]), int(event.get("exit_status", 0)))
            finally:
                settle.cancel()
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
            await asyncio.sleep(NODE_POLL_SECONDS)

    async def _settle_periodically(self) -> None:
        await asyncio.sleep(0.5)  # the event stream is subscribed by then
        while True:
            with contextlib.suppress(NodeLost):
                await self.reconcile()
            await asyncio.sleep(RECONCILE_SECONDS)

    # ---- the Runtime surface -------------------------------------------------------------------
    def _cgroup(self, pod: PodSandboxConfig, container_id: str) -> str:
        return f"{self.cgroup_parent}/{container_cgroup(self.flavor, pod.cgroup_parent, container_id)}"

    @staticmethod
    def _labels(pod: PodSandboxConfig, container: str | None) -> list[str]:
        labels = {"io.kubernetes.pod.name": pod.name, "io.kubernetes.pod.namespace": pod.namespace,
                  "io.kubernetes.pod.uid": pod.uid}
        if container is None:
            labels["io.cri-containerd.kind"] = "sandbox"
        else:
            labels["io.kubernetes.container.name"] = container
            labels["io.cri-containerd.kind"] = "container"
        return [arg for key, value in labels.items() for arg in ("--label", f"{key}={value}")]

    def _run_argv(self, pod: PodSandboxConfig, container_id: str, container: str | None,
                  annotations: dict[str, str]) -> list[str]:
        """``ctr run -d`` for one of the pod's containers (None: its sandbox): its cgroup, the CRI
        labels, and the ``io.kubernetes.cri.*`` annotations (sandbox-id groups them under one shim)."""
        argv = ["run", "-d", "--snapshotter", SNAPSHOTTER, "--cgroup", self._cgroup(pod, container_id),
                *self._labels(pod, container)]
        for key, value in annotations.items():
            argv += ["--annotation", f"io.kubernetes.cri.{key}={value}"]
        return argv

    async def run_pod_sandbox(self, pod: PodSandboxConfig, current: str = "") -> str:
        """RunPodSandbox, unless the pod's pause container runs (adopted after a restart)."""
        tasks: dict[str, tuple[int, str]] | None = None
        if not current:  # adopting: the pod's sandbox that still runs, if any
            result = await self.ctr(
                "containers", "ls", "-q", f'labels."io.kubernetes.pod.uid"=={pod.uid},'
                'labels."io.cri-containerd.kind"==sandbox')
            candidates = result.stdout.split() if result.returncode == 0 else []
            tasks = await self.tasks() if candidates else {}
            running = [i for i in candidates if tasks.get(i, (0, ""))[1] == "RUNNING"]
            current = (running or candidates or [""])[0]
        if current:
            pid_status = (tasks or await self.tasks()).get(current)
            if pid_status and pid_status[1] == "RUNNING":
                self._sandbox_pids[current] = pid_status[0]
                return current
            await self._remove_containers([current])
        await self._prepare()  # only a new sandbox needs the node's cgroup and images
        if PAUSE.reference not in self.images:
            raise NodeLost(f"{self.node}: containerd has no {PAUSE.reference} (sandbox up imports it)")
        sandbox_id = secrets.token_hex(32)
        argv = self._run_argv(pod, sandbox_id, None, {
            "sandbox-id": sandbox_id, "container-type": "sandbox", "sandbox-name": pod.name,
            "sandbox-namespace": pod.namespace, "sandbox-uid": pod.uid})
        if pod.host_pid:
            argv += ["--with-ns", "pid:/proc/1/ns/pid"]
        result = await self.ctr(*argv, PAUSE.reference, sandbox_id)
        if result.returncode != 0:
            raise RuntimeError(f"RunPodSandbox for {pod.name}: {result.stderr.strip()}")
        pid_status = (await self.tasks()).get(sandbox_id)
        if not pid_status:
            raise NodeLost(f"{self.node}: the sandbox of {pod.name} did not start")
        self._sandbox_pids[sandbox_id] = pid_status[0]
        # The pod's hostname, in the sandbox's UTS namespace (CRI sets it through the OCI spec,
        # which `ctr run` has no flag for).
        await self.node_exec("nsenter", f"--uts=/proc/{pid_status[0]}/ns/uts", "hostname", pod.name)
        return sandbox_id

    async def _pull(self, reference: str, local: PodImage) -> str | None:
        """The stand-in for a pull: tag the local image with the wanted name; its image ID or None."""
        if reference not in self.images:
            if local.reference not in self.images:
                return None
            result = await self.ctr("images", "tag", local.reference, reference)
            if result.returncode != 0 and "already exists" not in result.stderr:
                log.warning("ctr images tag %s %s: %s", local.reference, reference, result.stderr.strip())
                return None
            self.images[reference] = self.images[local.reference]
        return f"{reference.split('@')[0].rsplit(':', 1)[0]}@{self.images[reference]}"

    async def start(self, sandbox_id: str, pod: PodSandboxConfig, container: ContainerConfig) -> Started:
        await self._prepare()
        image_id = await self._pull(container.reference, container.image)
        if image_id is None:
            raise ImageUnavailable(container.reference)
        container_id = secrets.token_hex(32)
        log_file = f"{POD_LOG_DIR}/{pod.log_directory}/{container.name}/{container.attempt}.log"
        argv = self._run_argv(pod, container_id, container.name, {
            "sandbox-id": sandbox_id, "container-type": "container", "container-name": container.name,
            "image-name": container.reference})
        argv += [*stdio_args(container, log_file), "--cwd", container.working_dir,
                 "--env", f"HOSTNAME={pod.name}"]
        for name, value in container.env:
            argv += ["--env", f"{name}={value}"]
        pause_ns = f"/proc/{self._sandbox_pids.get(sandbox_id, 0)}/ns"
        argv += ["--with-ns", f"network:{pause_ns}/net", "--with-ns", f"ipc:{pause_ns}/ipc",
                 "--with-ns", f"uts:{pause_ns}/uts"]
        if pod.host_pid:
            argv += ["--with-ns", "pid:/proc/1/ns/pid"]
        elif pod.share_process_namespace:
            argv += ["--with-ns", f"pid:{pause_ns}/pid"]
        elif container.target_container_id:
            target_pid = (await self.tasks()).get(container.target_container_id, (0, ""))[0]
            if target_pid:
                argv += ["--with-ns", f"pid:/proc/{target_pid}/ns/pid"]
        if container.privileged:
            argv += ["--privileged"]
        for flag, capabilities in (("--cap-add", container.cap_add), ("--cap-drop", container.cap_drop)):
            for capability in capabilities:
                argv += [flag, f"CAP_{capability.upper().removeprefix('CAP_')}"]
        if container.mounts:
            await self.node_exec("mkdir", "-p", *(source for source, _ in container.mounts))
        for source, destination in container.mounts:
            argv += ["--mount", f"type=bind,src={source},dst={destination},options=rbind:rw"]
        argv += [container.reference, container_id, *container.argv]
        await self.node_exec("mkdir", "-p", log_file.rsplit("/", 1)[0])
        # Before the start, so that an exit at once is not missed; armed for reconcile once it runs.
        exit_future = self.expect_exit(container_id, started=False)
        result = await self.ctr(*argv)
        if result.returncode != 0:
            self.forget(container_id)
            await self._remove_containers([container_id])
            raise StartFailed(result.stderr.strip().removeprefix("ctr: "))
        self.task_started(container_id)
        self._exits[container_id] = exit_future
        return Started(container_id, image_id)

    async def wait(self, container_id: str) -> int:
        future = self._exits.pop(container_id, None)
        if future is None:  # adopting a running task: it may have exited before we listened
            future = self.expect_exit(container_id)
            await self.reconcile()
        exit_code = await asyncio.shield(future)
        with contextlib.suppress(NodeLost):
            await self.delete_task(container_id)
        return exit_code

    async def status(self, *container_ids: str) -> set[str]:
        tasks = await self.tasks()
        return {i for i in container_ids if tasks.get(i, (0, ""))[1] == "RUNNING"}

    def exec(self, container_id: str, command: list[str]) -> CtrExec:
        return CtrExec(self, container_id, command)

    def attach(self, container_id: str) -> CtrAttach:
        return CtrAttach(self, container_id)

    async def _remove_containers(self, ids: list[str]) -> None:
        ids = [i for i in ids if i]
        if ids:
            await asyncio.gather(*(self.ctr("tasks", "delete", "--force", i) for i in ids))
            await self.ctr("containers", "delete", *ids)

    async def remove_container(self, container_id: str) -> None:
        self._exits.pop(container_id, None)
        await self._remove_containers([container_id])

    async def stop_pod_sandbox(self, pod: PodSandboxConfig, keep: Collection[str] = ()) -> None:
        """StopPodSandbox: SIGTERM, grace, SIGKILL; then every container of the pod but ``keep`` removed."""
        result = await self.ctr("containers", "ls", "-q", f'labels."io.kubernetes.pod.uid"=={pod.uid}')
        ids = result.stdout.split() if result.returncode == 0 else []
        tasks = await self.tasks()
        live = [i for i in ids if tasks.get(i, (0, ""))[1] == "RUNNING"]
        # Exits come from containerd's events: SIGTERM to all at once, the grace period, then SIGKILL.
        exits = {i: self.waiters.get(i) or self.expect_exit(i) for i in live}
        await asyncio.gather(*(self.ctr("tasks", "kill", "--signal", "SIGTERM", i) for i in live))
        if exits:
            _, pending = await asyncio.wait(exits.values(), timeout=GRACE_SECONDS)
            stubborn = [i for i, future in exits.items() if future in pending]
            await asyncio.gather(*(self.ctr("tasks", "kill", "--signal", "SIGKILL", i) for i in stubborn))
            if pending:
                await asyncio.wait(pending, timeout=CALL_TIMEOUT)
        await self._remove_containers([i for i in ids if i not in keep])
        await asyncio.gather(*(self.ctr("tasks", "delete", "--force", i) for i in ids if i in keep))
        for i in ids:
            self._sandbox_pids.pop(i, None)

    async def remove_pod_sandbox(self, pod: PodSandboxConfig) -> None:
        """RemovePodSandbox: the pod's volumes on the node, and its cgroup in every hierarchy."""
        if not self.cgroup_parent:
            with contextlib.suppress(NodeLost):
                await self._read_cgroup_parent()
        await self.node_exec("rm", "-rf", f"/var/lib/kubelet/pods/{pod.uid}")
        if self.cgroup_parent:
            await asyncio.to_thread(_remove_pod_cgroups, self.cgroup_parent, pod.cgroup_parent)

    def logs(self, log_directory: str, container: str, attempt: int) -> Path | None:
        if self.log_root is None or attempt < 0:
            return None
        path = self.log_root / log_directory / container / f"{attempt}.log"
        return path if path.exists() else None


def _remove_pod_cgroups(parent: str, pod_dir: str) -> None:
    """runc removed each container's cgroup; the pod's own goes with the pod (every hierarchy)."""
    root = Path(cgroups.CGROUP_ROOT)
    with contextlib.suppress(OSError):
        for mount in root.iterdir():
            cgroups.remove_tree(mount / parent.lstrip("/") / pod_dir, timeout=1.0)


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


class _CtrStdio:
    """What an exec and an attach share: a local ``ctr`` launcher, its stdin, and its end."""

    started_as = "command"
    _process: asyncio.subprocess.Process | None = None

    @property
    def process(self) -> asyncio.subprocess.Process:
        if self._process is None:
            raise RuntimeError(f"the {self.started_as} was not started")
        return self._process

    async def write(self, data: bytes) -> None:
        stdin = self.process.stdin
        if stdin is not None:
            with contextlib.suppress(ConnectionError):
                stdin.write(data)
                await stdin.drain()

    def close_stdin(self) -> None:
        # The attach's case: this client's input ends; the container's stdin stays open (the shim
        # holds a write end of its FIFO), as with CRI for a container without stdinOnce.
        if self.process.stdin is not None:
            self.process.stdin.close()

    async def close(self) -> None:
        if self._process is not None and self._process.returncode is None:
            _kill_group(self._process.pid)
            await self._process.wait()


class CtrExec(_CtrStdio):
    """``ctr task exec``: started by the container's shim, in the container's namespaces, cgroup and
    environment (containerd copies the container's process spec), as kubectl exec is on kind."""

    def __init__(self, runtime: CtrRuntime, container_id: str, command: list[str]) -> None:
        self.runtime = runtime
        self.container_id = container_id
        self.started_as = "exec"
        self.exec_id = f"exec-{secrets.token_hex(8)}"
        self.argv = runtime.ctr_argv("tasks", "exec", "--exec-id", self.exec_id, container_id, *command,
                                     stdin=True)
        self._process: asyncio.subprocess.Process | None = None
        self._early_stderr = bytearray()

    async def start(self, *, stdin: bool, tty: bool) -> None:
        self._process = await asyncio.create_subprocess_exec(
            *self.argv,
            stdin=asyncio.subprocess.PIPE if stdin else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT if tty else asyncio.subprocess.PIPE,
            # Its own process group, so that a client that goes away takes the whole command with it.
            start_new_session=True,
        )

    async def output(self, send: Send) -> None:
        process = self.process
        early_stderr = self._early_stderr
        held_back = bytearray()
        sent_any = False

        async def flush_held() -> None:
            nonlocal sent_any
            if held_back and exec_failure(early_stderr) is None:
                await send(STDERR, bytes(held_back))
                held_back.clear()
                sent_any = True

        async def pump(stream: asyncio.StreamReader | None, channel: int) -> None:
            nonlocal sent_any
            if stream is None:
                return
            while chunk := await stream.read(65536):
                if channel == STDERR and not sent_any and len(early_stderr) < 4096:
                    # Hold stderr back until we know it is not ctr's "cannot execute" line.
                    early_stderr.extend(chunk)
                    held_back.extend(chunk)
                    if exec_failure(early_stderr) is None and b"\n" in early_stderr:
                        await flush_held()
                    continue
                if channel == STDOUT:
                    await flush_held()
                    sent_any = True
                await send(channel, chunk)

        await asyncio.gather(pump(process.stdout, STDOUT), pump(process.stderr, STDERR))
        await flush_held()

    async def wait(self) -> int:
        code = await self.process.wait()
        failure = exec_failure(bytes(self._early_stderr)) if code != 0 else None
        if failure is not None:
            raise ExecFailed(failure)
        return code

    async def kill(self) -> None:
        # Killing the local launcher does not reach a process that the container's shim started.
        with contextlib.suppress(Exception):
            await self.runtime.ctr("tasks", "kill", "--exec-id", self.exec_id, "--signal", "SIGKILL",
                                   self.container_id, timeout=5.0)
        if self._process is not None:
            _kill_group(self._process.pid)


# The node's shell prints its PID, then becomes ``ctr`` (argv only: the container ID is an argument
# of the shell, never part of its script).
_PRINT_PID_THEN_EXEC = 'echo "$$" && exec "$@"'


class CtrAttach(_CtrStdio):
    """``ctr tasks attach``: the stdio of the container's PID 1 (CRI Attach). containerd keeps them
    as FIFOs that its shim holds open, so a client can come and go, as with CRI on kind.

    What differs from kind: the container's output goes to the FIFOs, not to its log file, so
    ``kubectl logs`` shows nothing for such a container, and output written while no client is
    attached waits in the FIFO (64 KiB) for the next one. ``tty: true`` is not honoured: ``ctr run
    -t`` needs a terminal on ``ctr``'s own stdin, which the kubelet stand-in does not have; with a
    terminal asked for, the container's stderr comes on stdout, as the client then expects.

    ``ctr`` is started by a node shell that first prints its PID: a client that goes away must take
    its ``ctr`` with it (``kill``, by that PID in the node), which killing ``docker exec`` does not,
    or the next attach would share the container's output with a forgotten reader. The container
    runs on."""

    def __init__(self, runtime: CtrRuntime, container_id: str) -> None:
        self.runtime = runtime
        self.container_id = container_id
        self.argv = [runtime.docker, "exec", "-i", runtime.node, "sh", "-c", _PRINT_PID_THEN_EXEC, "sh",
                     "ctr", "-n", NAMESPACE, "tasks", "attach", container_id]
        self.started_as = "attach"
        self.node_pid: int | None = None
        self._process: asyncio.subprocess.Process | None = None
        self._tty = False
        self._stderr_tail = bytearray()  # the end of ctr's stderr: its own error, if attaching failed

    async def start(self, *, stdin: bool, tty: bool) -> None:
        self._tty = tty
        self._process = await asyncio.create_subprocess_exec(
            *self.argv, stdin=asyncio.subprocess.PIPE if stdin else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, start_new_session=True)
        assert self._process.stdout is not None
        first = await self._process.stdout.readline()
        self.node_pid = int(first) if first.strip().isdigit() else None

    async def output(self, send: Send) -> None:
        process = self.process
        tail = self._stderr_tail

        async def pump(stream: asyncio.StreamReader | None, channel: int) -> None:
            if stream is None:
                return
            while chunk := await stream.read(65536):
                if stream is process.stderr:
                    tail.extend(chunk)
                    del tail[:-4096]
                await send(channel, chunk)

        await asyncio.gather(pump(process.stdout, STDOUT),
                             pump(process.stderr, STDOUT if self._tty else STDERR))

    async def wait(self) -> int:
        code = await self.process.wait()
        last = bytes(self._stderr_tail).decode(errors="replace").strip().splitlines()[-1:] or [""]
        if code != 0 and last[0].startswith("ctr: "):
            raise ExecFailed(last[0].removeprefix("ctr: "))
        return code

    async def kill(self) -> None:
        """Detach: ``ctr`` in the node by its PID, then the local ``docker exec``."""
        if self.node_pid is not None:
            with contextlib.suppress(Exception):
                await self.runtime.node_exec("kill", "-KILL", str(self.node_pid), timeout=10.0)
        if self._process is not None:
            _kill_group(self._process.pid)

