"""Server-side ``Table`` rendering with the columns and STATUS text that kubectl shows (ported from
Kubernetes' ``pkg/printers/internalversion/printers.go``)."""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from typing import Any

from pidmap.sandbox.api.meta import Obj, human_duration, parse_timestamp, since


def _column(name: str, kind: str, description: str, priority: int = 0, fmt: str = "") -> Obj:
    return {"name": name, "type": kind, "format": fmt, "description": description, "priority": priority}


# The two columns every table here shares, word for word as the real API server describes them.
NAME_COLUMN = _column("Name", "string", "Name must be unique within a namespace.", fmt="name")
AGE_COLUMN = _column(
    "Age",
    "string",
    "CreationTimestamp is a timestamp representing the server time when this object was created.",
)

POD_COLUMNS = [
    NAME_COLUMN,
    _column("Ready", "string", "The aggregate readiness state of this pod for accepting traffic."),
    _column("Status", "string", "The aggregate status of the containers in this pod."),
    _column(
        "Restarts",
        "string",
        "The number of times the containers in this pod have been restarted "
        "and when the last container in this pod has restarted.",
    ),
    AGE_COLUMN,
    _column("IP", "string", "IP address allocated to the pod. Routable at least within the cluster.", 1),
    _column("Node", "string", "NodeName is a request to schedule this pod onto a specific node.", 1),
    _column(
        "Nominated Node",
        "string",
        "nominatedNodeName is set when this pod preempts other pods on the node.",
        1,
    ),
    _column(
        "Readiness Gates",
        "string",
        "If specified, all readiness gates will be evaluated for pod readiness.",
        1,
    ),
]

NODE_COLUMNS = [
    NAME_COLUMN,
    _column("Status", "string", "The status of the node"),
    _column("Roles", "string", "The roles of the node"),
    AGE_COLUMN,
    _column("Version", "string", "Kubelet Version reported by the node."),
    _column("Internal-IP", "string", "List of addresses reachable to the node.", 1),
    _column("External-IP", "string", "List of addresses reachable to the node.", 1),
    _column(
        "OS-Image",
        "string",
        "OS Image reported by the node from /etc/os-release (e.g. Debian GNU/Linux 7 (wheezy)).",
        1,
    ),
    _column(
        "Kernel-Version",
        "string",
        "Kernel Version reported by the node from 'uname -r' (e.g. 3.16.0-0.bpo.4-amd64).",
        1,
    ),
    _column(
        "Container-Runtime",
        "string",
        "Container runtime version reported by the node through "
        "runtime remote API (e.g. containerd://1.4.2).",
        1,
    ),
]

NAMESPACE_COLUMNS = [
    NAME_COLUMN,
    _column("Status", "string", "The status of the namespace"),
    AGE_COLUMN,
]


def _is_restartable_init(container: Obj | None) -> bool:
    return bool(container) and (container or {}).get("restartPolicy") == "Always"


def _later(current: datetime.datetime | None, text: str | None) -> datetime.datetime | None:
    moment = parse_timestamp(text)
    if moment is None:
        return current
    return moment if current is None or moment > current else current


def _condition_true(status: Obj, kind: str) -> bool:
    return any(c.get("type") == kind and c.get("status") == "True" for c in status.get("conditions") or [])


def pod_row_cells(pod: Obj, now: datetime.datetime) -> list[Any]:
    """printPod: NAME READY STATUS RESTARTS AGE IP NODE NOMINATED-NODE READINESS-GATES."""
    spec = pod.get("spec") or {}
    status = pod.get("status") or {}
    meta = pod.get("metadata") or {}
    init_specs = {c.get("name"): c for c in spec.get("initContainers") or []}
    total = len(spec.get("containers") or []) + sum(_is_restartable_init(c) for c in init_specs.values())
    ready = 0
    restarts = 0
    sidecar_restarts = 0
    last_restart: datetime.datetime | None = None
    last_sidecar_restart: datetime.datetime | None = None
    reason = str(status.get("reason") or status.get("phase") or "")

    for condition in status.get("conditions") or []:
        if condition.get("type") == "PodScheduled" and condition.get("reason") == "SchedulingGated":
            reason = "SchedulingGated"

    initializing = False
    init_total = len(spec.get("initContainers") or [])
    for index, container in enumerate(status.get("initContainerStatuses") or []):
        restarts += int(container.get("restartCount") or 0)
        finished = ((container.get("lastState") or {}).get("terminated") or {}).get("finishedAt")
        last_restart = _later(last_restart, finished)
        restartable = _is_restartable_init(init_specs.get(container.get("name")))
        if restartable:
            sidecar_restarts += int(container.get("restartCount") or 0)
            last_sidecar_restart = _later(last_sidecar_restart, finished)
        state = container.get("state") or {}
        terminated = state.get("terminated")
        waiting = state.get("waiting")
        if terminated is not None and int(terminated.get("exitCode") or 0) == 0:
            continue
        if restartable and container.get("started"):
            if container.get("ready"):
                ready += 1
            continue
        if terminated is not None:
            if not terminated.get("reason"):
                if terminated.get("signal"):
                    reason = f"Init:Signal:{terminated['signal']}"
                else:
                    reason = f"Init:ExitCode:{terminated.get('exitCode', 0)}"
            else:
                reason = "Init:" + str(terminated["reason"])
        elif waiting is not None and waiting.get("reason") and waiting.get("reason") != "PodInitializing":
            reason = "Init:" + str(waiting["reason"])
        else:
            reason = f"Init:{index}/{init_total}"
        initializing = True
        break

    if not initializing or _condition_true(status, "Initialized"):
        restarts = sidecar_restarts
        last_restart = last_sidecar_restart
        has_running = False
        for container in reversed(status.get("containerStatuses") or []):
            restarts += int(container.get("restartCount") or 0)
            last_restart = _later(
                last_restart, ((container.get("lastState") or {}).get("terminated") or {}).get("finishedAt")
            )
            state = container.get("state") or {}
            waiting = state.get("waiting")
            terminated = state.get("terminated")
            if waiting is not None and waiting.get("reason"):
                reason = str(waiting["reason"])
            elif terminated is not None and terminated.get("reason"):
                reason = str(terminated["reason"])
            elif terminated is not None:
                if terminated.get("signal"):
                    reason = f"Signal:{terminated['signal']}"
                else:
                    reason = f"ExitCode:{terminated.get('exitCode', 0)}"
            elif container.get("ready") and state.get("running") is not None:
                has_running = True
                ready += 1
        if reason == "Completed" and has_running:
            reason = "Running" if _condition_true(status, "Ready") else "NotReady"

    phase = status.get("phase")
    if meta.get("deletionTimestamp") and status.get("reason") == "NodeLost":
        reason = "Unknown"
    elif meta.get("deletionTimestamp") and phase not in ("Succeeded", "Failed"):
        reason = "Terminating"

    restarts_text = str(restarts)
    if restarts and last_restart is not None:
        restarts_text = f"{restarts} ({human_duration((now - last_restart).total_seconds())} ago)"

    pod_ips = status.get("podIPs") or []
    pod_ip = (pod_ips[0].get("ip") if pod_ips else None) or status.get("podIP") or "<none>"
    gates = spec.get("readinessGates") or []
    if gates:
        true_types = {c.get("type") for c in status.get("conditions") or [] if c.get("status") == "True"}
        gates_text = f"{sum(g.get('conditionType') in true_types for g in gates)}/{len(gates)}"
    else:
        gates_text = "<none>"
    return [
        meta.get("name", ""),
        f"{ready}/{total}",
        reason,
        restarts_text,
        since(meta.get("creationTimestamp"), now),
        pod_ip,
        spec.get("nodeName") or "<none>",
        status.get("nominatedNodeName") or "<none>",
        gates_text,
    ]


def node_roles(node: Obj) -> list[str]:
    roles: set[str] = set()
    for key, value in ((node.get("metadata") or {}).get("labels") or {}).items():
        if key.startswith("node-role.kubernetes.io/"):
            role = key.removeprefix("node-role.kubernetes.io/")
            if role:
                roles.add(role)
        elif key == "kubernetes.io/role" and value:
            roles.add(value)
    return sorted(roles)


def node_row_cells(node: Obj, now: datetime.datetime) -> list[Any]:
    status = node.get("status") or {}
    states: list[str] = []
    for condition in status.get("conditions") or []:
        if condition.get("type") == "Ready":
            states.append("Ready" if condition.get("status") == "True" else "NotReady")
    if not states:
        states.append("Unknown")
    if (node.get("spec") or {}).get("unschedulable"):
        states.append("SchedulingDisabled")
    addresses = status.get("addresses") or []

    def address(kind: str) -> str:
        return next((a["address"] for a in addresses if a.get("type") == kind), "<none>")

    info = status.get("nodeInfo") or {}
    meta = node.get("metadata") or {}
    return [
        meta.get("name", ""),
        ",".join(states),
        ",".join(node_roles(node)) or "<none>",
        since(meta.get("creationTimestamp"), now),
        info.get("kubeletVersion", ""),
        address("InternalIP"),
        address("ExternalIP"),
        info.get("osImage") or "<unknown>",
        info.get("kernelVersion") or "<unknown>",
        info.get("containerRuntimeVersion") or "<unknown>",
    ]


def namespace_row_cells(namespace: Obj, now: datetime.datetime) -> list[Any]:
    meta = namespace.get("metadata") or {}
    return [
        meta.get("name", ""),
        (namespace.get("status") or {}).get("phase", ""),
        since(meta.get("creationTimestamp"), now),
    ]


TABLES = {
    "pods": (POD_COLUMNS, pod_row_cells),
    "nodes": (NODE_COLUMNS, node_row_cells),
    "namespaces": (NAMESPACE_COLUMNS, namespace_row_cells),
}


def table(
    resource: str,
    objects: Sequence[Obj],
    *,
    now: datetime.datetime,
    include_object: str = "Metadata",
    resource_version: str = "",
    with_columns: bool = True,
) -> Obj:
    """A meta.k8s.io/v1 Table; rows carry PartialObjectMetadata unless the client asks for Object."""
    columns, cells = TABLES[resource]
    rows: list[Obj] = []
    for obj in objects:
        row: Obj = {"cells": cells(obj, now)}
        if include_object == "Object":
            row["object"] = obj
        elif include_object != "None":
            row["object"] = {
                "kind": "PartialObjectMetadata",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": obj.get("metadata", {}),
            }
        if resource == "pods":
            phase = (obj.get("status") or {}).get("phase")
            if phase in ("Succeeded", "Failed"):
                row["conditions"] = [{"type": "Completed", "status": "True"}]
        rows.append(row)
    result: Obj = {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": resource_version},
        "columnDefinitions": [],
        "rows": rows,
    }
    if with_columns:
        result["columnDefinitions"] = columns
    return result
