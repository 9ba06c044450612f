"""Pods: the defaults the API server fills in, validation, scheduling, container names."""

from __future__ import annotations

import copy
import datetime
import re
import uuid
from collections.abc import Iterable, Sequence

from pidmap.sandbox.api.errors import cause, invalid
from pidmap.sandbox.api.meta import DEFAULT_CONTAINER_ANNOTATION, Obj, timestamp

_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def new_uid() -> str:
    return str(uuid.uuid4())


def _default_container(container: Obj) -> None:
    container.setdefault("terminationMessagePath", "/dev/termination-log")
    container.setdefault("terminationMessagePolicy", "File")
    image = str(container.get("image", ""))
    tag = image.rsplit("/", 1)[-1].partition(":")[2] if "@" not in image else "digest"
    # The apiserver's rule: Always for :latest or no tag, else IfNotPresent.
    container.setdefault("imagePullPolicy", "Always" if tag in ("", "latest") else "IfNotPresent")
    container.setdefault("resources", {})
    for port in container.get("ports") or []:
        if isinstance(port, dict):
            port.setdefault("protocol", "TCP")


def default_pod(pod: Obj, *, namespace: str, now: datetime.datetime) -> Obj:
    """The defaults the real API server fills in on create (the ones kubectl shows in -o yaml)."""
    pod = copy.deepcopy(pod)
    pod["apiVersion"] = "v1"
    pod["kind"] = "Pod"
    meta = pod.setdefault("metadata", {})
    meta["namespace"] = namespace
    if not meta.get("name") and meta.get("generateName"):
        meta["name"] = meta["generateName"] + uuid.uuid4().hex[:5]
    meta["uid"] = new_uid()
    meta["creationTimestamp"] = timestamp(now)
    meta.pop("deletionTimestamp", None)
    meta.pop("resourceVersion", None)
    spec = pod.setdefault("spec", {})
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("securityContext", {})
    spec.setdefault("schedulerName", "default-scheduler")
    spec.setdefault("enableServiceLinks", True)
    spec.setdefault("preemptionPolicy", "PreemptLowerPriority")
    spec.setdefault("priority", 0)
    spec.setdefault("serviceAccountName", spec.get("serviceAccount") or "default")
    spec.setdefault("serviceAccount", spec["serviceAccountName"])
    spec.setdefault(
        "tolerations",
        [
            {
                "key": "node.kubernetes.io/not-ready",
                "operator": "Exists",
                "effect": "NoExecute",
                "tolerationSeconds": 300,
            },
            {
                "key": "node.kubernetes.io/unreachable",
                "operator": "Exists",
                "effect": "NoExecute",
                "tolerationSeconds": 300,
            },
        ],
    )
    for key in ("initContainers", "containers", "ephemeralContainers"):
        for container in spec.get(key) or []:
            if isinstance(container, dict):
                _default_container(container)
    pod["status"] = {"phase": "Pending", "qosClass": "BestEffort"}
    return pod


def validate_pod(pod: Obj) -> None:
    """Raise 422 Invalid for what the real validation would reject and the sandbox relies on."""
    meta = pod.get("metadata") or {}
    name = str(meta.get("name") or "")
    causes: list[Obj] = []
    if not name:
        causes.append(
            cause("metadata.name", "Required value: name or generateName is required", "FieldValueRequired")
        )
    elif len(name) > 253 or not _DNS1123_SUBDOMAIN.match(name):
        causes.append(
            cause(
                "metadata.name",
                f'Invalid value: "{name}": a lowercase RFC 1123 subdomain '
                "must consist of lower case alphanumeric characters, '-' or '.', and must "
                "start and end with an alphanumeric character",
            )
        )
    for key, value in (meta.get("labels") or {}).items():
        if not isinstance(value, str):
            causes.append(cause(f"metadata.labels.{key}", "Invalid value: label values must be strings"))
    spec = pod.get("spec") or {}
    containers = spec.get("containers") or []
    if not containers:
        causes.append(cause("spec.containers", "Required value", "FieldValueRequired"))
    seen: set[str] = set()
    for key in ("initContainers", "containers"):
        for index, container in enumerate(spec.get(key) or []):
            where = f"spec.{key}[{index}]"
            if not isinstance(container, dict):
                causes.append(cause(where, "Invalid value: must be an object"))
                continue
            cname = str(container.get("name") or "")
            if not cname:
                causes.append(cause(f"{where}.name", "Required value", "FieldValueRequired"))
            elif len(cname) > 63 or not _DNS1123_LABEL.match(cname):
                causes.append(
                    cause(
                        f"{where}.name",
                        f'Invalid value: "{cname}": a lowercase RFC 1123 '
                        "label must consist of lower case alphanumeric characters or '-'",
                    )
                )
            elif cname in seen:
                causes.append(cause(f"{where}.name", f'Duplicate value: "{cname}"', "FieldValueDuplicate"))
            seen.add(cname)
            if not container.get("image"):
                causes.append(cause(f"{where}.image", "Required value", "FieldValueRequired"))
    policy = spec.get("restartPolicy", "Always")
    if policy not in ("Always", "OnFailure", "Never"):
        causes.append(
            cause(
                "spec.restartPolicy",
                f'Unsupported value: "{policy}": supported values: "Always", "OnFailure", "Never"',
                "FieldValueNotSupported",
            )
        )
    if causes:
        raise invalid("Pod", name, causes)


def schedule(nodes: Sequence[tuple[str, bool]], pods: Iterable[Obj]) -> str | None:
    """Pick a node: the worker with the fewest pods, ties by name; the control plane only if alone.

    ``nodes`` are (name, is_control_plane). Like kind, the control plane carries a NoSchedule taint,
    so pods go there only when the cluster has no worker.
    """
    workers = [name for name, control_plane in nodes if not control_plane]
    candidates = workers or [name for name, _ in nodes]
    if not candidates:
        return None
    load = dict.fromkeys(candidates, 0)
    for pod in pods:
        node = (pod.get("spec") or {}).get("nodeName")
        if node in load:
            load[node] += 1
    return min(candidates, key=lambda name: (load[name], name))


def default_container(pod: Obj) -> str | None:
    """The container kubectl exec/logs use when none is named."""
    annotated = ((pod.get("metadata") or {}).get("annotations") or {}).get(DEFAULT_CONTAINER_ANNOTATION)
    if annotated:
        return str(annotated)
    containers = (pod.get("spec") or {}).get("containers") or []
    return str(containers[0]["name"]) if containers else None


def container_names(pod: Obj) -> list[str]:
    spec = pod.get("spec") or {}
    return [
        str(c.get("name"))
        for key in ("initContainers", "containers", "ephemeralContainers")
        for c in spec.get(key) or []
    ]


def container_spec(pod: Obj, name: str) -> Obj | None:
    """The spec of the pod's container (init, app or ephemeral) called ``name``; None: it has none."""
    spec = pod.get("spec") or {}
    for key in ("initContainers", "containers", "ephemeralContainers"):
        for container in spec.get(key) or []:
            if container.get("name") == name:
                found: Obj = container
                return found
    return None
