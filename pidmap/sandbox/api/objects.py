"""The built-in objects the sandbox serves: its nodes and namespaces."""

from __future__ import annotations

import uuid

from pidmap.sandbox.api.meta import CONTAINER_RUNTIME, CONTROL_PLANE_LABEL, KUBE_VERSION, Obj
from pidmap.sandbox.api.pods import new_uid


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
