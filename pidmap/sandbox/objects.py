"""Pure pieces of the stand-in API server: Kubernetes objects as plain JSON dicts.

Status objects, pod defaulting and validation, scheduling, label and field selectors, node and
namespace objects, and server-side ``Table`` rendering with the columns and STATUS text that
kubectl shows (ported from Kubernetes' ``pkg/printers/internalversion/printers.go``). Nothing here
does I/O, so all of it is unit-tested without a server.
"""

from __future__ import annotations

import copy
import datetime
import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

Obj = dict[str, Any]

KUBE_VERSION = "v1.32.2"
CONTAINER_RUNTIME = "containerd://1.7.24"
DEFAULT_NAMESPACES = ("default", "kube-node-lease", "kube-public", "kube-system")
DEFAULT_CONTAINER_ANNOTATION = "kubectl.kubernetes.io/default-container"
CONTROL_PLANE_LABEL = "node-role.kubernetes.io/control-plane"

_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


# ---------------------------------------------------------------------------------------------
# Time


def now_utc() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def timestamp(moment: datetime.datetime) -> str:
    """RFC 3339 with second precision and a Z, as metav1.Time marshals."""
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_timestamp(text: str | None) -> datetime.datetime | None:
    if not text:
        return None
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))


def human_duration(seconds_total: float) -> str:
    """apimachinery ``duration.HumanDuration``: what kubectl prints in AGE."""
    seconds = int(seconds_total)
    if seconds < -1:
        return "<invalid>"
    if seconds < 0:
        return "0s"
    if seconds < 60 * 2:
        return f"{seconds}s"
    minutes = seconds // 60
    if minutes < 10:
        rest = seconds % 60
        return f"{minutes}m" if rest == 0 else f"{minutes}m{rest}s"
    if minutes < 60 * 3:
        return f"{minutes}m"
    hours = minutes // 60
    if hours < 8:
        rest = minutes % 60
        return f"{hours}h" if rest == 0 else f"{hours}h{rest}m"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        rest = hours % 24
        return f"{hours // 24}d" if rest == 0 else f"{hours // 24}d{rest}h"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        days = (hours // 24) % 365
        return f"{hours // 24 // 365}y" if days == 0 else f"{hours // 24 // 365}y{days}d"
    return f"{hours // 24 // 365}y"


def since(text: str | None, now: datetime.datetime) -> str:
    moment = parse_timestamp(text)
    if moment is None:
        return "<unknown>"
    return human_duration((now - moment).total_seconds())


# ---------------------------------------------------------------------------------------------
# Status objects (errors)


class ApiError(Exception):
    """An error the API answers with a ``Status`` body."""

    def __init__(self, code: int, reason: str, message: str, details: Obj | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details

    def body(self) -> Obj:
        return status_failure(self.code, self.reason, self.message, self.details)


def status_failure(code: int, reason: str, message: str, details: Obj | None = None) -> Obj:
    body: Obj = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
    }
    if details is not None:
        body["details"] = details
    body["code"] = code
    return body


def not_found(resource: str, name: str) -> ApiError:
    return ApiError(404, "NotFound", f'{resource} "{name}" not found', {"name": name, "kind": resource})


def already_exists(resource: str, name: str) -> ApiError:
    return ApiError(
        409, "AlreadyExists", f'{resource} "{name}" already exists', {"name": name, "kind": resource}
    )


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def unauthorized() -> ApiError:
    return ApiError(401, "Unauthorized", "Unauthorized")


def forbidden(user: str, verb: str, resource: str, name: str, namespace: str) -> ApiError:
    """RBAC's wording, e.g. for ``pods/exec``."""
    kind = resource.partition("/")[0]
    # A create names no object yet: RBAC then says `pods is forbidden: ...`.
    subject = f'{kind} "{name}"' if name else kind
    # A list across namespaces is refused "at the cluster scope".
    scope = f'in the namespace "{namespace}"' if namespace else "at the cluster scope"
    message = f'{subject} is forbidden: User "{user}" cannot {verb} resource "{resource}" in API group "" '
    message += scope
    return ApiError(403, "Forbidden", message, {"name": name, "kind": kind})


# --- Pod Security Admission (k8s.io/pod-security-admission), the baseline checks pidmap's agent meets --
PSA_ENFORCE = "pod-security.kubernetes.io/enforce"
PSA_ENFORCE_VERSION = "pod-security.kubernetes.io/enforce-version"
# policy/check_capabilities_baseline.go: what baseline allows in capabilities.add.
BASELINE_CAPABILITIES = frozenset({
    "AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD", "NET_BIND_SERVICE",
    "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT"})


def _join_quote(items: Iterable[str]) -> str:
    return ", ".join(f'"{item}"' for item in items)


def _containers_of(spec: Obj) -> list[Obj]:
    return [c for key in ("initContainers", "containers", "ephemeralContainers") for c in spec.get(key) or []]


def pod_security_violation(pod: Obj, namespace_labels: Mapping[str, str]) -> ApiError | None:
    """The PodSecurity admission plugin's refusal of ``pod`` in a namespace with these labels, or None.

    Only the baseline checks the sandbox's users meet are made (capabilities, host namespaces,
    privileged; restricted includes them, so a pod they refuse is refused by restricted too). The
    wording is the plugin's: ``violates PodSecurity "LEVEL:VERSION": reason (detail), ...``
    (admission.go; each check's ForbiddenReason / ForbiddenDetail in policy/check_*.go).
    """
    level = namespace_labels.get(PSA_ENFORCE, "privileged")
    if level not in ("baseline", "restricted"):
        return None
    spec = pod.get("spec") or {}
    containers = _containers_of(spec)
    failures: list[str] = []
    added = {c["name"]: [str(cap) for cap in (((c.get("securityContext") or {}).get("capabilities") or {})
                                               .get("add") or []) if str(cap) not in BASELINE_CAPABILITIES]
             for c in containers}
    bad = [name for name, caps in added.items() if caps]
    if bad:
        caps = sorted({cap for name in bad for cap in added[name]})
        failures.append(f"non-default capabilities ({'container' if len(bad) == 1 else 'containers'} "
                        f"{_join_quote(bad)} must not include {_join_quote(caps)} in "
                        "securityContext.capabilities.add)")
    host = [f"{field}=true" for field in ("hostNetwork", "hostPID", "hostIPC") if spec.get(field)]
    if host:
        failures.append(f"host namespaces ({', '.join(host)})")
    privileged = [c["name"] for c in containers if (c.get("securityContext") or {}).get("privileged")]
    if privileged:
        failures.append(f"privileged ({'container' if len(privileged) == 1 else 'containers'} "
                        f"{_join_quote(privileged)} must not set securityContext.privileged=true)")
    if not failures:
        return None
    version = namespace_labels.get(PSA_ENFORCE_VERSION, "latest")
    name = (pod.get("metadata") or {}).get("name", "")
    message = f'pods "{name}" is forbidden: violates PodSecurity "{level}:{version}": {", ".join(failures)}'
    return ApiError(403, "Forbidden", message, {"name": name, "kind": "pods"})


def invalid(kind: str, name: str, causes: list[Obj]) -> ApiError:
    summary = ", ".join(f"{cause['field']}: {cause['message']}" for cause in causes)
    message = (
        f'{kind} "{name}" is invalid: {summary}'
        if len(causes) == 1
        else f'{kind} "{name}" is invalid: [{summary}]'
    )
    return ApiError(422, "Invalid", message, {"name": name, "kind": kind, "causes": causes})


def _cause(field: str, message: str, reason: str = "FieldValueInvalid") -> Obj:
    return {"reason": reason, "message": message, "field": field}


# ---------------------------------------------------------------------------------------------
# Selectors


@dataclass(frozen=True)
class Requirement:
    key: str
    operator: str  # "=", "!=", "in", "notin", "exists", "!"
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        value = labels.get(self.key)
        if self.operator == "=":
            return present and value == self.values[0]
        if self.operator == "!=":
            return not present or value != self.values[0]
        if self.operator == "in":
            return present and value in self.values
        if self.operator == "notin":
            return not present or value not in self.values
        if self.operator == "exists":
            return present
        return not present  # "!"


def _split_top_level(text: str) -> list[str]:
    """Split on commas that are not inside ``( )`` (set-based requirements hold commas)."""
    parts: list[str] = []
    depth = 0
    current = ""
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    return [part.strip() for part in parts if part.strip()]


_SET_REQUIREMENT = re.compile(r"^(?P<key>[^\s!=()]+)\s+(?P<op>in|notin)\s*\((?P<values>[^)]*)\)$")
_EQUALITY = re.compile(r"^(?P<key>[^\s!=()]+)\s*(?P<op>==|=|!=)\s*(?P<value>[^\s!=(),]*)$")
_KEY = re.compile(r"^(?P<bang>!?)\s*(?P<key>[^\s!=(),]+)$")


def parse_label_selector(text: str | None) -> list[Requirement]:
    """labels.Parse: equality (``=``, ``==``, ``!=``), ``in``/``notin`` sets, ``key`` and ``!key``."""
    requirements: list[Requirement] = []
    for part in _split_top_level(text or ""):
        if match := _SET_REQUIREMENT.match(part):
            values = tuple(value.strip() for value in match["values"].split(",") if value.strip())
            requirements.append(Requirement(match["key"], match["op"], values))
        elif match := _EQUALITY.match(part):
            operator = "!=" if match["op"] == "!=" else "="
            requirements.append(Requirement(match["key"], operator, (match["value"],)))
        elif match := _KEY.match(part):
            requirements.append(Requirement(match["key"], "!" if match["bang"] else "exists"))
        else:
            raise bad_request(f"unable to parse requirement: {part!r}")
    return requirements


def labels_match(requirements: Sequence[Requirement], labels: Mapping[str, str] | None) -> bool:
    return all(requirement.matches(labels or {}) for requirement in requirements)


POD_FIELDS = (
    "metadata.name",
    "metadata.namespace",
    "spec.nodeName",
    "spec.restartPolicy",
    "spec.schedulerName",
    "spec.serviceAccountName",
    "spec.hostNetwork",
    "status.phase",
    "status.podIP",
    "status.nominatedNodeName",
)
NAMED_FIELDS = ("metadata.name", "metadata.namespace")


def parse_field_selector(text: str | None, allowed: Iterable[str]) -> list[Requirement]:
    """fields.Parse: only ``=``, ``==`` and ``!=``, on the fields the resource supports."""
    allowed_set = set(allowed)
    requirements: list[Requirement] = []
    for part in _split_top_level(text or ""):
        match = re.match(r"^(?P<key>[^=!]+?)\s*(?P<op>==|=|!=)\s*(?P<value>.*)$", part)
        if match is None:
            raise bad_request(f"invalid selector: '{text}'; can't understand '{part}'")
        key = match["key"].strip()
        if key not in allowed_set:
            raise bad_request(f"field label not supported: {key}")
        requirements.append(Requirement(key, "!=" if match["op"] == "!=" else "=", (match["value"].strip(),)))
    return requirements


def field_value(obj: Obj, path: str) -> str:
    current: Any = obj
    for part in path.split("."):
        current = current.get(part) if isinstance(current, dict) else None
    if current is None:
        return ""
    if isinstance(current, bool):
        return "true" if current else "false"
    return str(current)


def fields_match(requirements: Sequence[Requirement], obj: Obj) -> bool:
    return all(
        requirement.matches({requirement.key: field_value(obj, requirement.key)})
        for requirement in requirements
    )


# ---------------------------------------------------------------------------------------------
# Pods: defaulting, validation, scheduling


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
            _cause("metadata.name", "Required value: name or generateName is required", "FieldValueRequired")
        )
    elif len(name) > 253 or not _DNS1123_SUBDOMAIN.match(name):
        causes.append(
            _cause(
                "metadata.name",
                f'Invalid value: "{name}": a lowercase RFC 1123 subdomain '
                "must consist of lower case alphanumeric characters, '-' or '.', and must "
                "start and end with an alphanumeric character",
            )
        )
    for key, value in (meta.get("labels") or {}).items():
        if not isinstance(value, str):
            causes.append(_cause(f"metadata.labels.{key}", "Invalid value: label values must be strings"))
    spec = pod.get("spec") or {}
    containers = spec.get("containers") or []
    if not containers:
        causes.append(_cause("spec.containers", "Required value", "FieldValueRequired"))
    seen: set[str] = set()
    for key in ("initContainers", "containers"):
        for index, container in enumerate(spec.get(key) or []):
            where = f"spec.{key}[{index}]"
            if not isinstance(container, dict):
                causes.append(_cause(where, "Invalid value: must be an object"))
                continue
            cname = str(container.get("name") or "")
            if not cname:
                causes.append(_cause(f"{where}.name", "Required value", "FieldValueRequired"))
            elif len(cname) > 63 or not _DNS1123_LABEL.match(cname):
                causes.append(
                    _cause(
                        f"{where}.name",
                        f'Invalid value: "{cname}": a lowercase RFC 1123 '
                        "label must consist of lower case alphanumeric characters or '-'",
                    )
                )
            elif cname in seen:
                causes.append(_cause(f"{where}.name", f'Duplicate value: "{cname}"', "FieldValueDuplicate"))
            seen.add(cname)
            if not container.get("image"):
                causes.append(_cause(f"{where}.image", "Required value", "FieldValueRequired"))
    policy = spec.get("restartPolicy", "Always")
    if policy not in ("Always", "OnFailure", "Never"):
        causes.append(
            _cause(
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


# ---------------------------------------------------------------------------------------------
# Merge patches (enough for kubectl apply and kubectl label / annotate)


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch; strategic merge patch reduces to it for maps."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if key.startswith("$"):  # strategic-merge directives ($patch, $retainKeys, ...)
            continue
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


# ---------------------------------------------------------------------------------------------
# Nodes and namespaces


def node_object(
    name: str,
    *,
    control_plane: bool,
    ready: bool,
    index: int,
    created: str,
    kernel: str,
    flavor: str,
    cluster: str,
) -> Obj:
    labels = {
        "beta.kubernetes.io/arch": "amd64",
        "beta.kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        "kubernetes.io/hostname": name,
        "kubernetes.io/os": "linux",
    }
    if control_plane:
        labels[CONTROL_PLANE_LABEL] = ""
        labels["node.kubernetes.io/exclude-from-external-load-balancers"] = ""
    if flavor == "minikube":
        labels["minikube.k8s.io/name"] = cluster
        labels["minikube.k8s.io/primary"] = "true" if control_plane else "false"
    condition_time = created
    conditions = [
        {
            "type": kind,
            "status": "False",
            "reason": reason,
            "message": message,
            "lastHeartbeatTime": condition_time,
            "lastTransitionTime": condition_time,
        }
        for kind, reason, message in (
            ("MemoryPressure", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
            ("DiskPressure", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
            ("PIDPressure", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
        )
    ]
    conditions.append(
        {
            "type": "Ready",
            "status": "True" if ready else "Unknown",
            "reason": "KubeletReady" if ready else "NodeStatusUnknown",
            "message": "kubelet is posting ready status" if ready else "Kubelet stopped posting node status.",
            "lastHeartbeatTime": condition_time,
            "lastTransitionTime": condition_time,
        }
    )
    return {
        "kind": "Node",
        "apiVersion": "v1",
        "metadata": {
            "name": name,
            "uid": str(uuid.uuid5(uuid.NAMESPACE_URL, f"pidmap-sandbox/{cluster}/node/{name}")),
            "resourceVersion": "1",
            "creationTimestamp": created,
            "labels": labels,
            "annotations": {
                "kubeadm.alpha.kubernetes.io/cri-socket": "unix:///run/containerd/containerd.sock",
                "node.alpha.kubernetes.io/ttl": "0",
            },
        },
        "spec": {
            "podCIDR": f"10.244.{index}.0/24",
            "podCIDRs": [f"10.244.{index}.0/24"],
            "providerID": f"kind://docker/{cluster}/{name}",
            **({"taints": [{"key": CONTROL_PLANE_LABEL, "effect": "NoSchedule"}]} if control_plane else {}),
        },
        "status": {
            "capacity": {"cpu": "8", "ephemeral-storage": "100Gi", "memory": "16Gi", "pods": "110"},
            "allocatable": {"cpu": "8", "ephemeral-storage": "100Gi", "memory": "16Gi", "pods": "110"},
            "conditions": conditions,
            "addresses": [
                {"type": "InternalIP", "address": f"172.18.0.{index + 2}"},
                {"type": "Hostname", "address": name},
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "nodeInfo": {
                "machineID": uuid.uuid5(uuid.NAMESPACE_URL, f"machine/{cluster}/{name}").hex,
                "systemUUID": str(uuid.uuid5(uuid.NAMESPACE_URL, f"system/{cluster}/{name}")),
                "bootID": str(uuid.uuid5(uuid.NAMESPACE_URL, f"boot/{cluster}/{name}")),
                "kernelVersion": kernel,
                "osImage": "Debian GNU/Linux 12 (bookworm)",
                "containerRuntimeVersion": CONTAINER_RUNTIME,
                "kubeletVersion": KUBE_VERSION,
                "kubeProxyVersion": KUBE_VERSION,
                "operatingSystem": "linux",
                "architecture": "amd64",
            },
            "images": [],
        },
    }


def namespace_object(name: str, *, created: str, phase: str = "Active") -> Obj:
    meta: Obj = {
        "name": name,
        "uid": new_uid(),
        "resourceVersion": "1",
        "creationTimestamp": created,
        "labels": {"kubernetes.io/metadata.name": name},
    }
    return {
        "kind": "Namespace",
        "apiVersion": "v1",
        "metadata": meta,
        "spec": {"finalizers": ["kubernetes"]},
        "status": {"phase": phase},
    }


# ---------------------------------------------------------------------------------------------
# Table rendering (kubectl get asks the server for these)


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


# ---------------------------------------------------------------------------------------------
# Protobuf: `kubectl create namespace` sends its body as application/vnd.kubernetes.protobuf

PROTOBUF = "application/vnd.kubernetes.protobuf"
_PROTOBUF_MAGIC = b"k8s\x00"


def _protobuf_fields(data: bytes) -> Iterable[tuple[int, int | bytes]]:
    """(field number, value) of one protobuf message; length-delimited values stay bytes."""
    offset = 0

    def varint() -> int:
        nonlocal offset
        value = shift = 0
        while True:
            if offset >= len(data):
                raise bad_request("the body of the request was in an unknown format: truncated protobuf")
            byte = data[offset]
            offset += 1
            value |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                return value

    while offset < len(data):
        key = varint()
        number, wire = key >> 3, key & 7
        if wire == 0:
            yield number, varint()
        elif wire == 2:
            length = varint()
            yield number, data[offset : offset + length]
            offset += length
        elif wire in (1, 5):
            size = 8 if wire == 1 else 4
            yield number, data[offset : offset + size]
            offset += size
        else:
            raise bad_request(f"the body of the request was in an unknown format: protobuf wire type {wire}")


def _protobuf_map(entries: list[bytes]) -> dict[str, str]:
    result: dict[str, str] = {}
    for entry in entries:
        fields = {number: value for number, value in _protobuf_fields(entry)}
        key, value = fields.get(1, b""), fields.get(2, b"")
        if isinstance(key, bytes) and isinstance(value, bytes):
            result[key.decode()] = value.decode()
    return result


def decode_protobuf_metadata_object(body: bytes) -> Obj:
    """apiVersion, kind and metadata (name, generateName, namespace, labels, annotations) of an
    object sent as Kubernetes protobuf (magic ``k8s\\0`` + runtime.Unknown). Enough for objects
    whose spec the sandbox ignores, such as Namespace."""
    if not body.startswith(_PROTOBUF_MAGIC):
        raise bad_request("the body of the request was in an unknown format: missing protobuf magic")
    api_version = kind = ""
    raw = b""
    for number, value in _protobuf_fields(body[len(_PROTOBUF_MAGIC) :]):
        if number == 1 and isinstance(value, bytes):  # TypeMeta
            for type_number, type_value in _protobuf_fields(value):
                if isinstance(type_value, bytes):
                    api_version = type_value.decode() if type_number == 1 else api_version
                    kind = type_value.decode() if type_number == 2 else kind
        elif number == 2 and isinstance(value, bytes):
            raw = value
    meta: Obj = {}
    labels: list[bytes] = []
    annotations: list[bytes] = []
    for number, value in _protobuf_fields(raw):
        if number != 1 or not isinstance(value, bytes):  # field 1 of every object is ObjectMeta
            continue
        for meta_number, meta_value in _protobuf_fields(value):
            if not isinstance(meta_value, bytes):
                continue
            if meta_number in (1, 2, 3):
                meta[("name", "generateName", "namespace")[meta_number - 1]] = meta_value.decode()
            elif meta_number == 11:
                labels.append(meta_value)
            elif meta_number == 12:
                annotations.append(meta_value)
    if labels:
        meta["labels"] = _protobuf_map(labels)
    if annotations:
        meta["annotations"] = _protobuf_map(annotations)
    return {"apiVersion": api_version, "kind": kind, "metadata": meta}
