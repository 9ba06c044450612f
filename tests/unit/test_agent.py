"""The node agent's pure parts: its pod, its refusals, which leftovers it reaps, and how its scan
becomes the outer side of the chain. The sandbox tests (tests/e2e/test_agent.py) run it for real."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from pidmap.cli import kubectl_complete
from pidmap.model import ProcessTable, RawProcess
from pidmap.sandbox.api import admission
from pidmap.sources import agent
from pidmap.sources.hostprocs import INITIAL_PID_NS, agent_view

SETTINGS = agent.AgentSettings(image="busybox", namespace="tools", deadline=60)


def test_manifest_is_a_least_privilege_hostpid_pod_pinned_to_its_node() -> None:
    pod = agent.manifest("pidmap-agent-1", "node-a", SETTINGS)
    spec, (container,) = pod["spec"], pod["spec"]["containers"]
    assert pod["metadata"]["namespace"] == "tools"
    assert pod["metadata"]["labels"][agent.MANAGED_BY] == "pidmap"
    assert spec["hostPID"] is True and spec["nodeName"] == "node-a"
    assert spec["activeDeadlineSeconds"] == 60 and spec["restartPolicy"] == "Never"
    assert spec["tolerations"] == [{"operator": "Exists"}]
    assert spec["automountServiceAccountToken"] is False
    assert not spec.get("hostNetwork") and not spec.get("hostIPC") and not spec.get("volumes")
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"], "add": ["SYS_PTRACE"]}
    assert "privileged" not in container["securityContext"]
    assert container["command"][0] == "sleep" and "sh" not in container["command"]  # no shell, no user text
    assert container["image"] == "busybox"


def test_manifest_without_ptrace_adds_no_capability() -> None:
    (container,) = agent.manifest("a", "n", SETTINGS, ptrace=False)["spec"]["containers"]
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}


@pytest.mark.parametrize(("enforce", "refused"), [(None, False), ("privileged", False), ("baseline", True),
                                                 ("restricted", True)])
def test_pod_security_levels_and_the_agent(enforce: str | None, refused: bool) -> None:
    labels = {admission.PSA_ENFORCE: enforce} if enforce else {}
    verdict = admission.pod_security_violation(agent.manifest("a", "n", SETTINGS), labels)
    assert (verdict is not None) == refused


def test_refusal_names_pod_security_with_what_would_allow_it() -> None:
    err = agent.refusal('pods "a" is forbidden: violates PodSecurity "baseline:latest": host namespaces '
                        "(hostPID=true)", SETTINGS)
    assert err.message.startswith("Pod Security Admission refuses the agent in namespace tools")
    assert "pod-security.kubernetes.io/enforce=privileged" in err.hint and int(err.status) == 6


def test_refusal_names_rbac_otherwise() -> None:
    err = agent.refusal('pods is forbidden: User "u" cannot create resource "pods"', SETTINGS)
    assert err.message.startswith("RBAC: creating the agent pod is not allowed") and int(err.status) == 6


def _node(*, ready: str = "True", reason: str = "KubeletReady",
          unschedulable: bool = False) -> dict[str, Any]:
    # The shape of `kubectl get node NODE -o json` (metadata, spec, status.conditions).
    return {"metadata": {"name": "node-a"}, "spec": {"unschedulable": True} if unschedulable else {},
            "status": {"conditions": [{"type": "MemoryPressure", "status": "False"},
                                      {"type": "Ready", "status": ready, "reason": reason}]}}


def test_node_refusal() -> None:
    assert agent.node_refusal(_node()) is None
    not_ready = agent.node_refusal(_node(ready="Unknown", reason="NodeStatusUnknown"))
    assert not_ready is not None and "node node-a is NotReady (NodeStatusUnknown)" in not_ready.message
    cordoned = agent.node_refusal(_node(unschedulable=True))
    assert cordoned is not None and "cordoned" in cordoned.message
    assert "kubectl uncordon node-a" in cordoned.hint


def _agent_pod(name: str, created: str, *, phase: str = "Running", deleting: bool = False,
               labelled: bool = True) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name, "creationTimestamp": created,
                                "labels": {agent.MANAGED_BY: "pidmap"} if labelled else {}}
    if deleting:
        metadata["deletionTimestamp"] = created
    return {"metadata": metadata, "spec": {"activeDeadlineSeconds": 30}, "status": {"phase": phase}}


def test_leftovers_are_old_or_ended_labelled_pods() -> None:
    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    pods = [
        _agent_pod("live", "2026-01-01T11:59:50Z"),  # a running pidmap's: younger than its deadline
        _agent_pod("old", "2026-01-01T11:58:00Z"),
        _agent_pod("ended", "2026-01-01T11:59:55Z", phase="Failed"),
        _agent_pod("going", "2026-01-01T11:50:00Z", deleting=True),
        _agent_pod("not-ours", "2026-01-01T11:00:00Z", labelled=False),
    ]
    assert agent.leftovers(pods, now, 120) == ["old", "ended"]


def _proc(pid: int, nspid: tuple[int, ...], pid_ns: int | None, cmdline: str = "x") -> RawProcess:
    return RawProcess(pid=pid, nspid=nspid, ppid=0, uid=0, state="S", name=cmdline, cmdline=cmdline,
                      pid_ns=pid_ns)


NODE_NS = 4026532500


def test_agent_view_of_a_machine_node_is_its_own_host() -> None:
    table = ProcessTable(processes=(_proc(1, (1,), INITIAL_PID_NS, "/sbin/init"),),
                         reader_pid_ns=INITIAL_PID_NS, boot_time=1000.0)
    view = agent_view(table, local=None)
    assert (view.via, view.node_level, view.host_level) == ("agent", 0, 0)
    assert any("HOST PID = NODE PID" in note for note in view.notes)


def test_agent_view_uses_this_machines_proc_when_it_shows_the_node() -> None:
    table = ProcessTable(processes=(_proc(1, (1,), NODE_NS),), reader_pid_ns=NODE_NS, boot_time=1000.0)
    here = ProcessTable(processes=(_proc(500, (500, 1), NODE_NS), _proc(1, (1,), INITIAL_PID_NS)),
                        boot_time=1000.0)
    view = agent_view(table, local=lambda: here)
    assert view.table is here and (view.node_level, view.host_level) == (1, 0)


def test_agent_view_keeps_the_agents_table_for_another_kernel() -> None:
    # Same namespace inode on another machine means nothing: inodes are per kernel (boot time differs).
    table = ProcessTable(processes=(_proc(1, (1,), NODE_NS),), reader_pid_ns=NODE_NS, boot_time=1000.0)
    here = ProcessTable(processes=(_proc(500, (500, 1), NODE_NS),), boot_time=2000.0)
    view = agent_view(table, local=lambda: here, notes=("agent note",))
    assert view.table is table and (view.node_level, view.host_level) == (0, None)
    assert view.notes[0] == "agent note"


def test_kubectl_complete_speaks_cobras_protocol(capsys: pytest.CaptureFixture[str]) -> None:
    kubectl_complete(["show", "--via", ""])
    lines = capsys.readouterr().out.splitlines()
    assert lines[-1] == ":4"  # ShellCompDirectiveNoFileComp
    assert {"auto", "local", "docker", "agent"} <= set(lines)


class _OneAnswer:
    """A cluster whose every GET answers the same pod (what _wait_running reads)."""

    def __init__(self, pod: dict[str, Any]) -> None:
        self.pod = pod

    def request(self, method: str, path: str, **_: Any) -> dict[str, Any]:
        assert method == "GET", (method, path)
        return self.pod


def test_a_refusal_is_known_by_the_agents_own_request_not_the_sessions() -> None:
    # Two nodes started at once: node A's refusal clears the session's flag while node B's agent,
    # created asking for SYS_PTRACE, is still starting; B's refusal must still be one (and be
    # retried without it), not "the agent pod ended before it could scan". Seen in the grid
    # (tests/e2e/test_grid.py, show --all --via agent over two nodes) as exit 9.
    refused = {"status": {"phase": "Failed", "containerStatuses": [{"state": {"terminated": {
        "exitCode": 128, "reason": "StartError",
        "message": "failed to create shim task: OCI runtime create failed: unable to apply caps"}}}]}}
    session = agent.AgentSession(cluster=_OneAnswer(refused), settings=SETTINGS)  # type: ignore[arg-type]
    session.ptrace = False  # another node refused first
    started_with_ptrace = agent._Agent(name="pidmap-agent-b", node_name="b", started=0.0, ptrace=True)
    with pytest.raises(agent._CapabilitiesRefused):
        session._wait_running(started_with_ptrace)
    without = agent._Agent(name="pidmap-agent-c", node_name="c", started=0.0, ptrace=False)
    with pytest.raises(agent.AgentFailed, match="ended before it could scan"):
        session._wait_running(without)
