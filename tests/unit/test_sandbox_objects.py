"""Pure parts of the stand-in API server: selectors, defaulting, scheduling, Status objects, the
STATUS column and the Tables kubectl prints.

Expected values follow Kubernetes' own rules (apimachinery ``labels.Parse`` / ``fields.Parse`` /
``duration.HumanDuration``, the pod printer in ``pkg/printers/internalversion/printers.go``); the pod
status shapes are the ones a kubelet reports for each situation.
"""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

import pytest

from pidmap.sandbox.api import admission, errors, meta, objects, patch, pods, printers, protobuf, selectors
from pidmap.sandbox.api.errors import ApiError
from pidmap.sandbox.apiserver import exec_stream
from pidmap.sandbox.cluster import layout
from pidmap.sandbox.kubelet.ctr import exec_failure

NOW = datetime.datetime(2026, 1, 10, 12, 0, 0, tzinfo=datetime.UTC)


def ago(seconds: float) -> str:
    return meta.timestamp(NOW - datetime.timedelta(seconds=seconds))


# ---------------------------------------------------------------------------------------------- time


@pytest.mark.parametrize(
    "seconds, text",
    [
        (-5, "<invalid>"),
        (-1, "0s"),
        (0, "0s"),
        (119, "119s"),
        (120, "2m"),
        (150, "2m30s"),
        (600, "10m"),
        (179 * 60, "179m"),
        (3 * 3600, "3h"),
        (3 * 3600 + 20 * 60, "3h20m"),
        (8 * 3600, "8h"),
        (47 * 3600, "47h"),
        (48 * 3600, "2d"),
        (49 * 3600, "2d1h"),
        (8 * 86400, "8d"),
        (800 * 86400, "2y70d"),
        (9 * 365 * 86400, "9y"),
    ],
)
def test_human_duration_matches_apimachinery(seconds: int, text: str) -> None:
    assert meta.human_duration(seconds) == text


# ----------------------------------------------------------------------------------------- selectors


@pytest.mark.parametrize(
    "selector, labels, expected",
    [
        ("app=a", {"app": "a"}, True),
        ("app==a", {"app": "b"}, False),
        ("app!=a", {}, True),  # != matches objects without the key, as in Kubernetes
        ("app!=a", {"app": "a"}, False),
        ("app in (a, b)", {"app": "b"}, True),
        ("app in (a,b)", {}, False),
        ("app notin (a,b)", {}, True),
        ("app notin (a,b)", {"app": "a"}, False),
        ("tier", {"tier": ""}, True),
        ("!tier", {"tier": "x"}, False),
        ("app in (a,b),tier", {"app": "a", "tier": "web"}, True),
        ("app in (a,b),!tier", {"app": "a", "tier": "web"}, False),
        ("", {"anything": "x"}, True),
    ],
)
def test_label_selectors(selector: str, labels: dict[str, str], expected: bool) -> None:
    assert selectors.labels_match(selectors.parse_label_selector(selector), labels) is expected


def test_a_label_selector_that_cannot_parse_is_400() -> None:
    with pytest.raises(ApiError) as caught:
        selectors.parse_label_selector("app in a")
    assert caught.value.code == 400


def test_field_selectors_on_pods() -> None:
    pod = {
        "metadata": {"name": "p", "namespace": "ns"},
        "spec": {"nodeName": "n1"},
        "status": {"phase": "Running"},
    }
    match = selectors.fields_match
    parse = selectors.parse_field_selector
    assert match(parse("spec.nodeName=n1,metadata.namespace==ns", selectors.POD_FIELDS), pod)
    assert not match(parse("status.phase!=Running", selectors.POD_FIELDS), pod)
    assert match(parse("spec.nodeName=", selectors.POD_FIELDS), {"metadata": {}, "spec": {}})  # unscheduled
    with pytest.raises(ApiError) as caught:
        parse("spec.bogus=1", selectors.POD_FIELDS)
    assert caught.value.code == 400 and caught.value.message == "field label not supported: spec.bogus"


# ------------------------------------------------------------------------------------ Status objects


def test_status_objects_have_the_real_shape() -> None:
    body = errors.not_found("pods", "x").body()
    assert body == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": 'pods "x" not found',
        "reason": "NotFound",
        "details": {"name": "x", "kind": "pods"},
        "code": 404,
    }
    forbidden = errors.forbidden("u", "create", "pods/exec", "p", "ns").body()
    assert forbidden["message"] == (
        'pods "p" is forbidden: User "u" cannot create resource "pods/exec" '
        'in API group "" in the namespace "ns"'
    )
    assert forbidden["details"] == {"name": "p", "kind": "pods"} and forbidden["code"] == 403
    assert errors.unauthorized().body()["reason"] == "Unauthorized"


def test_exit_status_frames() -> None:
    assert exec_stream.exit_status(0) == {"metadata": {}, "status": "Success"}
    failure = exec_stream.exit_status(3, ["sh", "-c", "exit 3"])
    assert failure["reason"] == "NonZeroExitCode"
    assert failure["details"]["causes"] == [{"reason": "ExitCode", "message": "3"}]
    assert "[sh -c exit 3], exit code 3" in failure["message"]


def test_the_runtime_names_an_exec_it_could_not_start() -> None:
    # ctr's words for a command runc cannot start become ExecFailed's message in the ctr runtime;
    # the API server never reads them.
    missing = exec_failure(b'ctr: OCI runtime exec failed: exec failed: unable to start '
                           b'container process: exec: "nope": executable file not found in '
                           b'$PATH: unknown\n')
    assert missing is not None and missing.startswith("OCI runtime exec failed:")
    assert "executable file not found in $PATH" in missing
    # The same exit code from the user's own command is just an exit code.
    assert exec_failure(b"sh: nope: not found\n") is None


# ---------------------------------------------------------------------------- defaulting, validation


def _pod(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p"},
        "spec": {"containers": [{"name": "c", "image": "busybox"}], **spec},
    }


def test_defaults_are_the_api_servers() -> None:
    pod = pods.default_pod(
        _pod(initContainers=[{"name": "i", "image": "busybox:1.36"}]), namespace="ns", now=NOW
    )
    assert pod["metadata"]["namespace"] == "ns" and pod["metadata"]["uid"]
    assert pod["metadata"]["creationTimestamp"] == "2026-01-10T12:00:00Z"
    assert pod["status"]["phase"] == "Pending"
    spec = pod["spec"]
    assert (spec["restartPolicy"], spec["dnsPolicy"], spec["schedulerName"]) == (
        "Always",
        "ClusterFirst",
        "default-scheduler",
    )
    assert spec["terminationGracePeriodSeconds"] == 30 and spec["enableServiceLinks"] is True
    assert spec["containers"][0]["imagePullPolicy"] == "Always"  # no tag means :latest
    assert spec["initContainers"][0]["imagePullPolicy"] == "IfNotPresent"
    assert spec["containers"][0]["terminationMessagePath"] == "/dev/termination-log"


@pytest.mark.parametrize(
    "pod, field",
    [
        (
            {"metadata": {"name": "Bad_Name"}, "spec": {"containers": [{"name": "c", "image": "x"}]}},
            "metadata.name",
        ),
        ({"metadata": {"name": "p"}, "spec": {"containers": []}}, "spec.containers"),
        ({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c"}]}}, "spec.containers[0].image"),
        (
            {
                "metadata": {"name": "p"},
                "spec": {"containers": [{"name": "c", "image": "x"}, {"name": "c", "image": "x"}]},
            },
            "spec.containers[1].name",
        ),
        (
            {
                "metadata": {"name": "p"},
                "spec": {"restartPolicy": "Sometimes", "containers": [{"name": "c", "image": "x"}]},
            },
            "spec.restartPolicy",
        ),
    ],
)
def test_invalid_pods_are_422(pod: dict[str, Any], field: str) -> None:
    with pytest.raises(ApiError) as caught:
        pods.validate_pod(pod)
    assert caught.value.code == 422 and caught.value.reason == "Invalid"
    assert field in [cause["field"] for cause in (caught.value.details or {})["causes"]]


def test_scheduling_spreads_over_workers() -> None:
    nodes = [("cp", True), ("w2", False), ("w1", False)]
    assert pods.schedule(nodes, []) == "w1"  # ties by name
    assert pods.schedule(nodes, [{"spec": {"nodeName": "w1"}}]) == "w2"
    assert pods.schedule([("cp", True)], []) == "cp"  # a lone control plane takes pods
    assert pods.schedule([], []) is None


def test_default_container_honours_the_annotation() -> None:
    pod = _pod()
    pod["spec"]["containers"].append({"name": "side", "image": "busybox"})
    assert pods.default_container(pod) == "c"
    pod["metadata"]["annotations"] = {meta.DEFAULT_CONTAINER_ANNOTATION: "side"}
    assert pods.default_container(pod) == "side"


def test_patches() -> None:
    assert patch.merge_patch({"a": {"b": 1, "c": 2}}, {"a": {"b": None, "d": 3}}) == {"a": {"c": 2, "d": 3}}
    target = {"containers": [{"name": "a", "image": "x", "ports": [1]}, {"name": "b", "image": "y"}]}
    patched = patch.strategic_merge(target, {"containers": [{"name": "b", "image": "z"}]})
    assert patched == {"containers": [{"name": "a", "image": "x", "ports": [1]}, {"name": "b", "image": "z"}]}


# ------------------------------------------------------------------------------- STATUS, READY, etc.


def _status_pod(
    status: dict[str, Any], *, init: int = 0, containers: int = 1, deleting: bool = False
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": "p", "creationTimestamp": ago(90)}
    if deleting:
        meta["deletionTimestamp"] = ago(0)
    return {
        "metadata": meta,
        "status": status,
        "spec": {
            "initContainers": [{"name": f"i{n}"} for n in range(init)],
            "containers": [{"name": f"c{n}"} for n in range(containers)],
        },
    }


def _cs(
    name: str, state: dict[str, Any], ready: bool = False, restarts: int = 0, **extra: Any
) -> dict[str, Any]:
    return {"name": name, "state": state, "ready": ready, "restartCount": restarts, **extra}


RUNNING = {"running": {"startedAt": ago(60)}}


@pytest.mark.parametrize(
    "pod, ready, status",
    [
        (
            _status_pod({"phase": "Running", "containerStatuses": [_cs("c0", RUNNING, True)]}),
            "1/1",
            "Running",
        ),
        (_status_pod({"phase": "Pending"}), "0/1", "Pending"),
        (
            _status_pod(
                {
                    "phase": "Pending",
                    "containerStatuses": [_cs("c0", {"waiting": {"reason": "ErrImagePull"}})],
                }
            ),
            "0/1",
            "ErrImagePull",
        ),
        (
            _status_pod(
                {
                    "phase": "Running",
                    "containerStatuses": [_cs("c0", {"waiting": {"reason": "CrashLoopBackOff"}}, restarts=2)],
                }
            ),
            "0/1",
            "CrashLoopBackOff",
        ),
        (
            _status_pod(
                {
                    "phase": "Pending",
                    "initContainerStatuses": [_cs("i0", RUNNING)],
                    "containerStatuses": [_cs("c0", {"waiting": {"reason": "PodInitializing"}})],
                },
                init=1,
            ),
            "0/1",
            "Init:0/1",
        ),
        (
            _status_pod(
                {
                    "phase": "Pending",
                    "initContainerStatuses": [
                        _cs("i0", {"terminated": {"exitCode": 0, "reason": "Completed"}}),
                        _cs("i1", RUNNING),
                    ],
                },
                init=2,
            ),
            "0/1",
            "Init:1/2",
        ),
        (
            _status_pod(
                {
                    "phase": "Pending",
                    "conditions": [{"type": "Initialized", "status": "True"}],
                    "initContainerStatuses": [
                        _cs("i0", {"terminated": {"exitCode": 0, "reason": "Completed"}})
                    ],
                    "containerStatuses": [_cs("c0", {"waiting": {"reason": "PodInitializing"}})],
                },
                init=1,
            ),
            "0/1",
            "PodInitializing",
        ),
        (
            _status_pod(
                {
                    "phase": "Pending",
                    "initContainerStatuses": [_cs("i0", {"terminated": {"exitCode": 1, "reason": "Error"}})],
                },
                init=1,
            ),
            "0/1",
            "Init:Error",
        ),
        (
            _status_pod(
                {"phase": "Pending", "initContainerStatuses": [_cs("i0", {"terminated": {"exitCode": 2}})]},
                init=1,
            ),
            "0/1",
            "Init:ExitCode:2",
        ),
        (
            _status_pod(
                {
                    "phase": "Succeeded",
                    "containerStatuses": [_cs("c0", {"terminated": {"exitCode": 0, "reason": "Completed"}})],
                }
            ),
            "0/1",
            "Completed",
        ),
        (
            _status_pod(
                {
                    "phase": "Failed",
                    "containerStatuses": [_cs("c0", {"terminated": {"exitCode": 3, "reason": "Error"}})],
                }
            ),
            "0/1",
            "Error",
        ),
        (
            _status_pod(
                {
                    "phase": "Failed",
                    "containerStatuses": [_cs("c0", {"terminated": {"exitCode": 137, "signal": 9}})],
                }
            ),
            "0/1",
            "Signal:9",
        ),
        (
            _status_pod({"phase": "Running", "containerStatuses": [_cs("c0", RUNNING, True)]}, deleting=True),
            "1/1",
            "Terminating",
        ),
        (
            _status_pod(
                {"phase": "Running", "reason": "NodeLost", "containerStatuses": [_cs("c0", RUNNING, True)]},
                deleting=True,
            ),
            "1/1",
            "Unknown",
        ),
        (_status_pod({"phase": "Unknown", "reason": "NodeLost"}), "0/1", "NodeLost"),
        (
            _status_pod(
                {
                    "phase": "Running",
                    "conditions": [{"type": "Ready", "status": "False"}],
                    "containerStatuses": [
                        _cs("c0", {"terminated": {"exitCode": 0, "reason": "Completed"}}),
                        _cs("c1", RUNNING, True),
                    ],
                },
                containers=2,
            ),
            "1/2",
            "NotReady",
        ),
        (
            _status_pod(
                {
                    "phase": "Running",
                    "conditions": [{"type": "Ready", "status": "True"}],
                    "containerStatuses": [
                        _cs("c0", {"terminated": {"exitCode": 0, "reason": "Completed"}}),
                        _cs("c1", RUNNING, True),
                    ],
                },
                containers=2,
            ),
            "1/2",
            "Running",
        ),
    ],
)
def test_status_column(pod: dict[str, Any], ready: str, status: str) -> None:
    cells = printers.pod_row_cells(pod, NOW)
    assert (cells[1], cells[2]) == (ready, status)
    assert cells[4] == "90s"


def test_restarts_column_says_when() -> None:
    pod = _status_pod(
        {
            "phase": "Running",
            "containerStatuses": [
                _cs(
                    "c0",
                    RUNNING,
                    True,
                    restarts=2,
                    lastState={"terminated": {"exitCode": 1, "finishedAt": ago(65)}},
                )
            ],
        }
    )
    assert printers.pod_row_cells(pod, NOW)[3] == "2 (65s ago)"


def test_tables_have_kubectls_columns() -> None:
    pod = _status_pod(
        {"phase": "Running", "podIP": "10.244.1.2", "containerStatuses": [_cs("c0", RUNNING, True)]}
    )
    pod["spec"]["nodeName"] = "n1"
    table = printers.table("pods", [pod], now=NOW)
    names = [(c["name"].upper(), c["priority"]) for c in table["columnDefinitions"]]
    assert names == [
        ("NAME", 0),
        ("READY", 0),
        ("STATUS", 0),
        ("RESTARTS", 0),
        ("AGE", 0),
        ("IP", 1),
        ("NODE", 1),
        ("NOMINATED NODE", 1),
        ("READINESS GATES", 1),
    ]
    assert table["rows"][0]["cells"][5:] == ["10.244.1.2", "n1", "<none>", "<none>"]
    assert table["rows"][0]["object"]["kind"] == "PartialObjectMetadata"
    node = objects.node_object(
        "n1",
        control_plane=True,
        ready=False,
        index=0,
        created=ago(3600),
        kernel="6.1",
        flavor="kind",
        cluster="c",
    )
    node_table = printers.table("nodes", [node], now=NOW)
    assert [c["name"].upper() for c in node_table["columnDefinitions"] if c["priority"] == 0] == [
        "NAME",
        "STATUS",
        "ROLES",
        "AGE",
        "VERSION",
    ]
    assert node_table["rows"][0]["cells"][:5] == [
        "n1",
        "NotReady",
        "control-plane",
        "60m",
        meta.KUBE_VERSION,
    ]


# -------------------------------------------------------------------------------------------- protobuf

# Recorded: `kubectl create ns pb-proto -v=9` (kubectl v1.32.4) against the sandbox; the request body
# it logged as a hex dump, copied byte for byte.
KUBECTL_CREATE_NS_PB_PROTO = bytes.fromhex(
    "6b387300 0a0f0a02 76311209 4e616d65 73706163 6512200a 180a0870 622d7072"
    "6f746f12 001a0022 002a0032 00380042 0012001a 020a001a 002200".replace(" ", "")
)


def test_protobuf_namespace_from_kubectl() -> None:
    decoded = protobuf.decode_protobuf_metadata_object(KUBECTL_CREATE_NS_PB_PROTO)
    assert decoded["apiVersion"] == "v1" and decoded["kind"] == "Namespace"
    assert decoded["metadata"]["name"] == "pb-proto"
    with pytest.raises(ApiError):
        protobuf.decode_protobuf_metadata_object(b"not protobuf")


# --- Pod Security Admission: the plugin's words (k8s.io/pod-security-admission admission.go and
# policy/check_hostNamespaces.go, check_privileged.go, check_capabilities_baseline.go) ---------------

def _agent_like(**spec: Any) -> dict[str, Any]:
    container = {"name": "agent", "image": "busybox",
                 "securityContext": {"capabilities": {"add": ["SYS_PTRACE"]}}}
    return {"metadata": {"name": "pidmap-agent-x"}, "spec": {"containers": [container], **spec}}


def test_pod_security_baseline_refuses_host_pid_in_the_plugins_words() -> None:
    labels = {admission.PSA_ENFORCE: "baseline"}
    refusal = admission.pod_security_violation(_agent_like(hostPID=True), labels)
    assert refusal is not None and refusal.code == 403
    assert refusal.body()["message"] == (
        'pods "pidmap-agent-x" is forbidden: violates PodSecurity "baseline:latest": '
        'non-default capabilities (container "agent" must not include "SYS_PTRACE" in '
        "securityContext.capabilities.add), "
        "host namespaces (hostPID=true)")
    assert refusal.body()["reason"] == "Forbidden"


def test_pod_security_restricted_names_its_version_and_privileged() -> None:
    pod = {"metadata": {"name": "p"}, "spec": {"containers": [
        {"name": "a", "securityContext": {"privileged": True}}, {"name": "b"}]}}
    labels = {admission.PSA_ENFORCE: "restricted", admission.PSA_ENFORCE_VERSION: "v1.32"}
    refusal = admission.pod_security_violation(pod, labels)
    assert refusal is not None
    assert refusal.body()["message"].endswith(
        'violates PodSecurity "restricted:v1.32": privileged (container "a" must not set '
        "securityContext.privileged=true)")


@pytest.mark.parametrize("labels", [{}, {admission.PSA_ENFORCE: "privileged"}])
def test_pod_security_privileged_or_unlabelled_admits_everything(labels: dict[str, str]) -> None:
    assert admission.pod_security_violation(_agent_like(hostPID=True), labels) is None


def test_pod_security_baseline_admits_a_plain_pod() -> None:
    pod = {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "a", "image": "busybox"}]}}
    assert admission.pod_security_violation(pod, {admission.PSA_ENFORCE: "baseline"}) is None


def test_rbac_refusal_of_a_create_names_no_object() -> None:
    body = errors.forbidden("u", "create", "pods", "", "ns").body()
    assert body["message"] == ('pods is forbidden: User "u" cannot create resource "pods" in API group "" '
                               'in the namespace "ns"')


def test_forbidden_rules_round_trip(tmp_path: Path) -> None:
    paths = layout.StatePaths(tmp_path)
    assert paths.load_forbidden() == frozenset()
    paths.save_forbidden(["create:pods", "create:pods/exec", "create:pods"])
    assert paths.load_forbidden() == {"create:pods", "create:pods/exec"}
