"""Where a sandbox keeps its state, and the shape of the cluster it describes.

One sandbox = one directory (``state_dir(name)``) holding:

    cluster.json    ClusterSpec: name, flavor, nodes (name, role, container id), API port, options
    token           the bearer token the stand-in API server accepts
    ca.crt          the sandbox CA (goes into the kubeconfig as certificate-authority-data)
    server.crt/.key the API server's certificate for 127.0.0.1 / localhost, signed by the CA
    pods.json       the API server's pod store (written on every change, read back on restart)
    namespaces.json its namespace store, kept the same way
    forbidden.json  verb:resource rules answered with 403, as RBAC would (sandbox up --forbid)
    apiserver.pid   PID of the background API server (it also runs the sandbox's kubelets)
    apiserver.log   its log

Every module of the sandbox reads and writes these through this one module, so that ``up``,
``down``, ``status`` and the API server agree on them.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Literal

Flavor = Literal["kind", "minikube"]
Role = Literal["control-plane", "worker"]

DEFAULT_NAME = "learn-k8s"
NODE_IMAGE = "pidmap/sandbox-node:2-containerd"
# Label set on everything the sandbox creates, so that ``down`` finds it even without a state dir.
OWNER_LABEL = "io.pidmap.sandbox"


@dataclass(frozen=True)
class NodeSpec:
    name: str  # Kubernetes node name = Docker container name = hostname
    role: Role
    container_id: str = ""  # filled in once the container exists


@dataclass(frozen=True)
class ClusterSpec:
    name: str
    flavor: Flavor
    nodes: tuple[NodeSpec, ...]
    api_port: int = 0
    # Options that tests switch on: exec answers 403 (RBAC), and the kube context name.
    exec_forbidden: bool = False
    context: str = ""
    kubeconfig: str = ""

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.api_port}"

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str) -> ClusterSpec:
        raw = json.loads(text)
        raw["nodes"] = tuple(NodeSpec(**node) for node in raw["nodes"])
        known = {f.name for f in fields(cls)}  # a cluster.json from an older pidmap may have more keys
        return cls(**{key: value for key, value in raw.items() if key in known})


def node_names(name: str, flavor: Flavor, workers: int) -> list[tuple[str, Role]]:
    """Node (= container) names exactly as kind / minikube give them.

    kind: NAME-control-plane, NAME-worker, NAME-worker2, ...
    minikube (docker driver): NAME, NAME-m02, NAME-m03, ... (the first node is the control plane)
    """
    if flavor == "kind":
        nodes: list[tuple[str, Role]] = [(f"{name}-control-plane", "control-plane")]
        nodes += [(f"{name}-worker{'' if i == 1 else i}", "worker") for i in range(1, workers + 1)]
        return nodes
    nodes = [(name, "control-plane")]
    nodes += [(f"{name}-m{i:02d}", "worker") for i in range(2, workers + 2)]
    return nodes


def context_name(name: str, flavor: Flavor) -> str:
    """The kubeconfig context kind (``kind-NAME``) or minikube (``NAME``) would create."""
    return f"kind-{name}" if flavor == "kind" else name


def sandboxes_root() -> Path:
    override = os.environ.get("PIDMAP_SANDBOX_HOME")
    if override:
        return Path(override)
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "pidmap" / "sandbox"


# kind and minikube accept cluster names that are DNS-1123 labels; the name also becomes a Docker
# container name, a directory under sandboxes_root() and a kubeconfig context, so nothing else may
# pass ("/", "..", "" would put the state dir - which `down` deletes - outside the sandboxes' root).
_NAME = re.compile(r"[a-z0-9]([-a-z0-9]{0,48}[a-z0-9])?")


def check_name(name: str) -> str:
    """``name`` if it is a valid sandbox name; ValueError with the rule otherwise."""
    if not _NAME.fullmatch(name):
        raise ValueError(f"invalid sandbox name {name!r}: use lower-case letters, digits and '-', "
                         "starting and ending with a letter or digit, at most 50 characters")
    return name


def state_dir(name: str) -> Path:
    return sandboxes_root() / check_name(name)


def is_state_dir(path: Path) -> bool:
    """True only for a directory that ``state_dir`` made: a direct child of the sandboxes' root."""
    resolved = path.resolve()
    return resolved.parent == sandboxes_root().resolve() and _NAME.fullmatch(resolved.name) is not None


@dataclass(frozen=True)
class StatePaths:
    root: Path

    @property
    def cluster(self) -> Path:
        return self.root / "cluster.json"

    @property
    def token(self) -> Path:
        return self.root / "token"

    @property
    def ca_cert(self) -> Path:
        return self.root / "ca.crt"

    @property
    def server_cert(self) -> Path:
        return self.root / "server.crt"

    @property
    def server_key(self) -> Path:
        return self.root / "server.key"

    @property
    def pods(self) -> Path:
        return self.root / "pods.json"

    @property
    def namespaces(self) -> Path:
        return self.root / "namespaces.json"

    @property
    def forbidden(self) -> Path:
        # RBAC stand-in: "verb:resource" rules the API server answers with 403, read per request.
        return self.root / "forbidden.json"

    def load_forbidden(self) -> frozenset[str]:
        try:
            rules = json.loads(self.forbidden.read_text())
        except (OSError, ValueError):
            return frozenset()
        return frozenset(str(rule) for rule in rules) if isinstance(rules, list) else frozenset()

    def save_forbidden(self, rules: list[str]) -> None:
        self.forbidden.write_text(json.dumps(sorted(set(rules))))

    @property
    def apiserver_pid(self) -> Path:
        return self.root / "apiserver.pid"

    @property
    def apiserver_log(self) -> Path:
        return self.root / "apiserver.log"

    def load_cluster(self) -> ClusterSpec:
        return ClusterSpec.from_json(self.cluster.read_text())

    def save_cluster(self, spec: ClusterSpec) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.cluster.with_suffix(".tmp")
        tmp.write_text(spec.to_json())
        tmp.replace(self.cluster)


def paths(name: str) -> StatePaths:
    return StatePaths(state_dir(name))
