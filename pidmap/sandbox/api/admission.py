"""Pod Security Admission (k8s.io/pod-security-admission): the baseline checks pidmap's agent meets."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from pidmap.sandbox.api.errors import ApiError
from pidmap.sandbox.api.meta import Obj

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
