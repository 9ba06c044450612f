"""Bring a sandbox up, tear it down, report on it: node containers, the API server, the kubeconfig.

``up`` creates one Docker container per node (named and labelled as kind or minikube would), the
state directory (cluster.json, token, certificates), starts the stand-in API server as a detached
process (which also runs the kubelet stand-in) and merges a context into the kubeconfig. ``down``
undoes every step, and works on whatever part of that exists.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import importlib
import json
import os
import secrets
import shlex
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from pidmap.errors import DockerError, SandboxError
from pidmap.sandbox.cluster import cgroups, layout
from pidmap.sandbox.cluster.layout import ClusterSpec, Flavor, NodeSpec, Role, StatePaths
from pidmap.sources import kube, nodes

Echo = Callable[[str], None]
DEFAULT_WORKERS = 2
READY_TIMEOUT_SECONDS = 30.0
NODE_OPTIONS: dict[str, Any] = {
    # kind runs its nodes --privileged, which fails on these VMs; this is what containerd and runc
    # need in a node: SYS_ADMIN (mounts, namespaces), NET_ADMIN (runc in a new network namespace),
    # no seccomp/apparmor/masked paths, the host's cgroup tree writable (runc creates the pods' cgroups
    # below the node's own), tmpfs /run and /tmp as kind has, and a volume for containerd's store.
    "cap_add": ["SYS_ADMIN", "NET_ADMIN"],
    "security_opt": ["seccomp=unconfined", "apparmor=unconfined"],
    "cgroupns": "host",
    "network_mode": "none",
    "tmpfs": {"/run": "", "/tmp": ""},
}
# `--security-opt systempaths=unconfined` is the CLI's name for empty masked and read-only /proc paths.
UNMASKED: dict[str, list[str]] = {"MaskedPaths": [], "ReadonlyPaths": []}
CONTAINERD_WAIT_SECONDS = 30.0
IMPORT_TIMEOUT_SECONDS = 180.0
# Cgroup subtrees the kubelet stand-in creates under a node's own cgroup (one per flavor).
KUBELET_CGROUP_ROOTS = ("kubelet.slice", "kubepods")


# The sandbox is a client of the same engine as pidmap: one way to reach it, one set of messages.
docker_client = nodes.docker_client
SANDBOX_EXTRA = ("aiohttp", "cryptography")
KIND_CONFIG = Path("kind-config.yaml")


def preflight() -> Any:
    """Everything ``up`` needs, checked before it creates anything; the Docker client on success.

    Not root: the kubelet stand-in cannot create cgroups or enter the nodes' namespaces, so every
    pod would stay Pending. Without the [sandbox] extra the API server cannot start, after the node
    containers already exist.
    """
    if os.geteuid() != 0:
        raise SandboxError("the sandbox needs root (it creates cgroups and enters node namespaces)",
                           hint="run it as root: sudo -E pidmap sandbox up")
    missing = []
    for module in SANDBOX_EXTRA:
        try:
            importlib.import_module(module)
        except ImportError:
            missing.append(module)
    if missing:
        raise SandboxError(f"the sandbox extra is not installed (cannot import {', '.join(missing)})",
                           hint="pip install 'pidmap[sandbox]'")
    return docker_client()


def default_name(config: Path | None = None) -> str:
    """The name ``up`` gives a sandbox when --name is not given: the kind config's name (the one
    passed, else ./kind-config.yaml), else DEFAULT_NAME; ``down`` and ``status`` resolve it alike."""
    if config is None and KIND_CONFIG.is_file():
        config = KIND_CONFIG
    if config is None:
        return layout.DEFAULT_NAME
    config_name, _roles = read_kind_config(config)
    return _name_from_config(config_name, config)


def _name_from_config(config_name: str | None, config: Path) -> str:
    """The kind config's name (DEFAULT_NAME when it has none), checked like --name."""
    try:
        return layout.check_name(config_name or layout.DEFAULT_NAME)
    except ValueError as err:
        raise SandboxError(f"{err} (from {config})", hint="fix the name: in the kind config") from err


def read_kind_config(path: Path) -> tuple[str | None, list[Role]]:
    """The cluster name (if any) and node roles of a kind config (kind.x-k8s.io/v1alpha4)."""
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as err:
        raise SandboxError(f"cannot read kind config {path}: {err}",
                           hint="see kind-config.yaml in the project for the expected shape") from err
    if not isinstance(raw, dict) or raw.get("kind") != "Cluster" or "nodes" not in raw:
        raise SandboxError(f"{path} is not a kind Cluster config",
                           hint="expected kind: Cluster, apiVersion: kind.x-k8s.io/v1alpha4, nodes: [...]")
    roles: list[Role] = []
    for node in raw.get("nodes") or []:
        role = (node or {}).get("role", "control-plane")
        if role not in ("control-plane", "worker"):
            raise SandboxError(f"{path}: unknown node role {role!r}", hint="use control-plane or worker")
        roles.append(role)
    if roles.count("control-plane") != 1:
        raise SandboxError(f"{path}: the sandbox needs exactly one control-plane node",
                           hint="list one `- role: control-plane` and any number of workers")
    name = raw.get("name")
    return (str(name) if name else None), roles


def node_labels(cluster: str, flavor: Flavor, node: str, role: Role) -> dict[str, str]:
    if flavor == "kind":
        labels = {"io.x-k8s.kind.cluster": cluster, "io.x-k8s.kind.role": role}
    else:
        labels = {
            "created_by.minikube.sigs.k8s.io": "true",
            "name.minikube.sigs.k8s.io": node,
            "mode.minikube.sigs.k8s.io": node,
            "role.minikube.sigs.k8s.io": "",
        }
    labels[layout.OWNER_LABEL] = cluster
    return labels


def active_kubeconfig(explicit: str | None) -> Path:
    return kube.kubeconfig_for_writing(explicit)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def owned_containers(client: Any, name: str) -> list[Any]:
    return list(client.containers.list(all=True, filters={"label": f"{layout.OWNER_LABEL}={name}"}))


def apiserver_pid(paths: StatePaths) -> int | None:
    """PID of the sandbox's API server, as its pid file names it, when that process is alive and
    serves this state directory (a stale file's PID may since be anything, another sandbox's
    server included)."""
    try:
        pid = int(paths.apiserver_pid.read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if _serves(pid, paths) else None


def _served_state(proc: Path, own_mounts: str) -> Path | None:
    """The state directory that the process at ``proc`` (/proc/PID) serves, when it is a sandbox API
    server that sees this machine's files as we do (our mount namespace: a server in a container
    has paths of its own, and its own Docker engine); None otherwise, or when it cannot be told."""
    try:
        argv = (proc / "cmdline").read_bytes().split(b"\0")  # a zombie's is empty
        if b"pidmap.sandbox.apiserver" not in argv or b"--state-dir" not in argv[:-1]:
            return None
        if os.readlink(proc / "ns" / "mnt") != own_mounts:
            return None
        state = Path(os.fsdecode(argv[argv.index(b"--state-dir") + 1]))
        # A relative state directory is relative to where that server was started.
        return state if state.is_absolute() else Path(os.readlink(proc / "cwd")) / state
    except OSError:
        return None  # gone, or not ours to read: nothing sure to say of it


def apiservers_named(name: str) -> list[tuple[int, Path]]:
    """Every live sandbox API server (any user's state home) serving a sandbox called ``name``:
    (PID, its state directory). Two of them would drive the same-named node containers."""
    own_mounts = os.readlink("/proc/self/ns/mnt")
    found = []
    for entry in Path("/proc").iterdir():
        state = _served_state(entry, own_mounts) if entry.name.isdigit() else None
        if state is not None and state.name == name:
            found.append((int(entry.name), state))
    return sorted(found)


def _same_state(state: Path, paths: StatePaths) -> bool:
    return os.path.realpath(state) == os.path.realpath(paths.root)


def _serves(pid: int, paths: StatePaths) -> bool:
    """``pid`` is (still) an API server of this state directory: its own /proc entry, read once."""
    state = _served_state(Path(f"/proc/{pid}"), os.readlink("/proc/self/ns/mnt"))
    return state is not None and _same_state(state, paths)


def _ready(spec: ClusterSpec, paths: StatePaths, token: str) -> bool:
    context = ssl.create_default_context(cafile=str(paths.ca_cert))
    request = urllib.request.Request(f"{spec.server}/readyz", headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=2, context=context) as response:
            return int(response.status) == 200
    except (urllib.error.URLError, OSError, ssl.SSLError):
        return False


def _start_apiserver(spec: ClusterSpec, paths: StatePaths, token: str) -> int:
    with paths.apiserver_log.open("ab") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "pidmap.sandbox.apiserver", "--state-dir", str(paths.root)],
            stdin=subprocess.DEVNULL, stdout=log_file, stderr=log_file, start_new_session=True,
            close_fds=True)
    paths.apiserver_pid.write_text(f"{process.pid}\n")
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = paths.apiserver_log.read_text(errors="replace").strip().splitlines()[-3:]
            raise SandboxError(
                f"the sandbox API server exited with {process.returncode}: " + " | ".join(tail),
                hint=f"see {paths.apiserver_log}")
        if _ready(spec, paths, token):
            return process.pid
        time.sleep(0.2)
    raise SandboxError(f"the sandbox API server did not answer {spec.server}/readyz in "
                       f"{READY_TIMEOUT_SECONDS:.0f} s", hint=f"see {paths.apiserver_log}")


def up(name: str | None, flavor: Flavor, config: Path | None, kubeconfig: str | None,
       forbid_exec: bool, echo: Echo) -> ClusterSpec:
    """Create the sandbox; on any failure remove whatever was created and re-raise."""
    roles: list[Role] = ["control-plane", *(["worker"] * DEFAULT_WORKERS)]  # type: ignore[list-item]
    if config is None and KIND_CONFIG.is_file():
        config = KIND_CONFIG
    config_name: str | None = None
    if config is not None:
        config_name, roles = read_kind_config(config)
    if not name:  # --name itself was checked by the command line (and layout.paths checks it again)
        name = _name_from_config(config_name, config) if config is not None else layout.DEFAULT_NAME
    client = preflight()
    paths = layout.paths(name)
    servers = apiservers_named(name)
    elsewhere = [(pid, state) for pid, state in servers if not _same_state(state, paths)]
    if elsewhere:
        pid, state = elsewhere[0]
        # Another state home's API server would drive (and reconcile away) the nodes made here.
        # `down` in that home stops it (found as a server of that state directory, even when the
        # directory is gone) and removes the node containers of the name.
        raise SandboxError(f"sandbox {name} is already up from another state home: its API server "
                           f"runs as PID {pid} with state in {state}",
                           hint=f"PIDMAP_SANDBOX_HOME={shlex.quote(str(state.parent))} pidmap sandbox down "
                           f"--name {name}")
    if owned_containers(client, name) or servers or paths.cluster.exists():
        raise SandboxError(f"sandbox {name} is already up (or was not fully torn down)",
                           hint=f"pidmap sandbox down --name {name}")
    workers = sum(1 for role in roles if role == "worker")
    names = layout.node_names(name, flavor, workers)
    context = layout.context_name(name, flavor)
    target = active_kubeconfig(kubeconfig)
    if flavor == "kind":
        echo(f'Creating cluster "{name}" ...')
    else:
        echo(f'😄  [{name}] pidmap sandbox (minikube flavor), {len(names)} nodes')
    try:
        return _up(client, name, flavor, names, paths, context, target, forbid_exec, echo)
    except BaseException:
        with contextlib.suppress(Exception):
            down(name, lambda _line: None)
        raise


def run_node(client: Any, image_name: str, node_name: str, labels: dict[str, str], logs: Path) -> Any:
    """Create and start one node container (containerd inside); ``logs`` is its /var/log/pods."""
    import docker.errors
    from docker.types import Mount

    logs.mkdir(parents=True, exist_ok=True)
    options = dict(NODE_OPTIONS)
    host_config = client.api.create_host_config(
        mounts=[Mount("/var/lib/containerd", None, type="volume"),
                Mount("/sys/fs/cgroup", "/sys/fs/cgroup", type="bind"),
                Mount("/var/log/pods", str(logs), type="bind")],
        cap_add=options.pop("cap_add"), security_opt=options.pop("security_opt"),
        cgroupns=options.pop("cgroupns"), network_mode=options.pop("network_mode"),
        tmpfs=options.pop("tmpfs"))
    host_config.update(UNMASKED)
    try:
        created = client.api.create_container(image_name, ["/init"], name=node_name, hostname=node_name,
                                              labels=labels, host_config=host_config)
        client.api.start(created["Id"])
        return client.containers.get(created["Id"])
    except docker.errors.APIError as err:
        raise DockerError(f"cannot create node container {node_name}: {err.explanation or err}",
                          hint=f"docker ps -a --filter name={node_name}") from err


def prepare_node(node_name: str, archive: Path) -> None:
    """Wait for the node's containerd, then import the pod images into its k8s.io namespace."""
    docker_cli = shutil.which("docker") or "docker"
    deadline = time.monotonic() + CONTAINERD_WAIT_SECONDS
    while True:
        probe = subprocess.run([docker_cli, "exec", node_name, "ctr", "version"], capture_output=True,
                               text=True, timeout=10, check=False)
        if probe.returncode == 0:
            break
        if time.monotonic() > deadline:
            raise SandboxError(f"containerd in node {node_name} did not answer in "
                               f"{CONTAINERD_WAIT_SECONDS:.0f} s: {probe.stderr.strip()}",
                               hint=f"docker exec {node_name} cat /var/log/containerd.log")
        time.sleep(0.2)
    with archive.open("rb") as handle:
        result = subprocess.run([docker_cli, "exec", "-i", node_name, "ctr", "-n", "k8s.io", "images",
                                 "import", "--snapshotter", "overlayfs", "-"], stdin=handle,
                                capture_output=True, text=True, timeout=IMPORT_TIMEOUT_SECONDS, check=False)
    if result.returncode != 0:
        raise SandboxError(f"cannot import the pod images into node {node_name}: {result.stderr.strip()}",
                           hint=f"docker exec {node_name} cat /var/log/containerd.log")


def _up(client: Any, name: str, flavor: Flavor, names: list[tuple[str, Role]], paths: StatePaths,
        context: str, target: Path, forbid_exec: bool, echo: Echo) -> ClusterSpec:

    from pidmap.sandbox.cluster import certs, image, kubeconfig

    image_name = image.ensure_image(client)
    archive = image.ensure_pod_images()
    echo(f" ✓ Ensuring node image ({image_name}) 🖼")
    nodes: list[NodeSpec] = []
    for node_name, role in names:
        container = run_node(client, image_name, node_name, node_labels(name, flavor, node_name, role),
                             paths.root / "logs")
        nodes.append(NodeSpec(name=node_name, role=role, container_id=container.id))
    with concurrent.futures.ThreadPoolExecutor(max_workers=len(nodes)) as pool:
        for done in [pool.submit(prepare_node, node.name, archive) for node in nodes]:
            done.result()
    echo(" ✓ Preparing nodes " + " ".join("📦" for _ in nodes))
    spec = ClusterSpec(name=name, flavor=flavor, nodes=tuple(nodes), api_port=free_port(),
                       exec_forbidden=forbid_exec, context=context, kubeconfig=str(target))
    paths.save_cluster(spec)
    token = secrets.token_urlsafe(32)
    fd = os.open(paths.token, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(token + "\n")
    certs.write_certificates(paths)
    _start_apiserver(spec, paths, token)
    echo(f" ✓ Starting control-plane (stand-in API server on {spec.server}) 🕹️")
    for created in nodes:
        echo(f"   {created.name:<28} {created.role:<14} {created.container_id[:12]}")
    kubeconfig.merge_context(target, context=context, server=spec.server,
                             ca_pem=paths.ca_cert.read_bytes(), token=token)
    if flavor == "kind":
        echo(f'Set kubectl context to "{context}"')
        echo("You can now use your cluster with:\n")
        echo(f"kubectl cluster-info --context {context}")
        echo("\nHave a nice day! 👋")
    else:
        echo(f'🏄  Done! kubectl is now configured to use "{context}" cluster and "default" namespace '
             "by default")
    if target != Path.home() / ".kube" / "config":
        echo(f"(kubeconfig: {target})")
    return spec


def _stop_apiserver(paths: StatePaths) -> bool:
    """Stop every API server of this state directory, found by its command line (the one its pid
    file names, and any orphan whose pid file was lost or overwritten): SIGTERM to all, up to 5 s
    to end, then SIGKILL to those that still serve it."""
    pids = [pid for pid, state in apiservers_named(paths.root.name) if _same_state(state, paths)]
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            continue
        except PermissionError as err:
            raise SandboxError(f"cannot stop the sandbox's API server (PID {pid}): not allowed",
                               hint="run pidmap sandbox down as root, as up was") from err
    deadline = time.monotonic() + 5.0
    running = list(pids)
    while running and time.monotonic() < deadline:
        for pid in list(running):
            with contextlib.suppress(ChildProcessError):
                if os.waitpid(pid, os.WNOHANG)[0] == pid:  # when `up` ran in this same process (tests)
                    running.remove(pid)
                    continue
            if not _serves(pid, paths):  # ended (a zombie's cmdline is empty) or reaped
                running.remove(pid)
        if running:
            time.sleep(0.1)
    for pid in running:
        if _serves(pid, paths):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    return bool(pids)


def _container_cgroup_roots(container: Any) -> list[Path]:
    """The sandbox's cgroup subtrees under a node container's cgroup, in every hierarchy."""
    pid = int(container.attrs.get("State", {}).get("Pid") or 0)
    roots: list[Path] = []
    if pid:
        with contextlib.suppress(OSError):
            for hierarchy in cgroups.node_hierarchies(pid):
                base = hierarchy.mount / hierarchy.node_path.lstrip("/")
                roots += [base / sub for sub in KUBELET_CGROUP_ROOTS]
    # A stopped node has no PID: docker's cgroupfs driver puts it at /docker/<id> everywhere.
    for mount in Path("/sys/fs/cgroup").iterdir():
        base = mount / "docker" / container.id
        roots += [base / sub for sub in KUBELET_CGROUP_ROOTS]
    return [root for root in dict.fromkeys(roots) if root.is_dir()]


def down(name: str, echo: Echo) -> bool:
    """Remove every trace of sandbox ``name``; False when there was nothing to remove."""
    paths = layout.paths(name)
    spec: ClusterSpec | None = None
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
        spec = paths.load_cluster()
    did = False
    if _stop_apiserver(paths):
        echo("Stopped the API server")
        did = True
    client = docker_client()
    containers = owned_containers(client, name)
    roots = [root for container in containers for root in _container_cgroup_roots(container)]
    killed: set[int] = set()
    for root in roots:
        killed |= cgroups.kill_all(root, signal.SIGKILL)
    for root in roots:
        if not cgroups.remove_tree(root):
            echo(f"warning: could not remove cgroup {root}")
    if killed:
        echo(f"Killed {len(killed)} pod processes")
    left: list[str] = []
    for container in containers:
        try:
            container.remove(force=True, v=True)  # v: its containerd volume too
        except Exception as err:  # down goes on with the rest, then says what is left
            echo(f"warning: could not delete node {container.name}: {err}")
            left.append(container.name)
            continue
        echo(f"Deleted node {container.name}")
        did = True
    if spec is not None and spec.kubeconfig and spec.context:
        from pidmap.sandbox.cluster import kubeconfig

        try:
            kubeconfig.remove_context(Path(spec.kubeconfig), spec.context)
        except (OSError, ValueError, TypeError, AttributeError, yaml.YAMLError) as err:
            # A kubeconfig edited into something unreadable must not stop the teardown.
            echo(f"warning: could not remove context {spec.context} from {spec.kubeconfig}: "
                 f"{str(err).splitlines()[0] if str(err) else type(err).__name__}")
        else:
            echo(f"Removed context {spec.context} from {spec.kubeconfig}")
    if paths.root.exists():
        if layout.is_state_dir(paths.root):  # never anything but a sandbox's own directory
            shutil.rmtree(paths.root, ignore_errors=True)
        did = True
    if left:
        raise SandboxError(f"sandbox {name}: node container(s) {', '.join(left)} could not be deleted",
                           hint=f"docker rm -f {' '.join(left)}")
    return did


@dataclass(frozen=True)
class NodeStatus:
    name: str
    role: str
    state: str
    container_id: str


@dataclass(frozen=True)
class PodStatus:
    namespace: str
    name: str
    phase: str
    node: str


@dataclass(frozen=True)
class Status:
    spec: ClusterSpec
    apiserver_pid: int | None
    nodes: tuple[NodeStatus, ...]
    pods: tuple[PodStatus, ...]


def status(name: str) -> Status:
    paths = layout.paths(name)
    if not paths.cluster.exists():
        raise SandboxError(f"sandbox {name} is not up", hint=f"pidmap sandbox up --name {name}")
    spec = paths.load_cluster()
    client = docker_client()
    by_name = {c.name: c for c in owned_containers(client, name)}
    nodes: list[NodeStatus] = []
    for node in spec.nodes:
        container = by_name.get(node.name)
        state = container.status if container is not None else "missing"
        nodes.append(NodeStatus(node.name, node.role, state, node.container_id[:12]))
    pods: list[PodStatus] = []
    with contextlib.suppress(OSError, ValueError):
        for pod in json.loads(paths.pods.read_text()).get("items", []):  # a PodList
            meta = pod.get("metadata", {})
            pods.append(PodStatus(meta.get("namespace", "default"), meta.get("name", "?"),
                                  pod.get("status", {}).get("phase", "Pending"),
                                  pod.get("spec", {}).get("nodeName", "")))
    return Status(spec, apiserver_pid(paths), tuple(nodes), tuple(pods))
