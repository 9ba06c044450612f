"""The node agent (``--via agent``): a short-lived pod in the node's PID namespace, through the API.

    reap leftovers (label + age) ─ node Ready and schedulable? ─ create pod (hostPID, nodeName) ─┐
    ┌─ wait Running (image pulled) ◄────────────────────────────────────────────────────────────┘
    └─ exec procfs.SCAN_SCRIPT "full" (fixed text: no user input reaches the shell) ─ delete pod

Kubernetes is the one engine that reaches every node, so this is how pidmap reads node PIDs on a
cluster whose nodes are machines (EKS, GKE, bare metal) or Docker containers elsewhere. It is the only
thing pidmap ever creates, only when asked (``--via agent`` / ``PIDMAP_VIA=agent``), and it is removed
on success, on error, on timeout and on Ctrl-C/SIGTERM/SIGHUP; ``activeDeadlineSeconds`` ends it even
when pidmap is killed with -9, and the next agent run deletes what such a run left (by label and age).

Least privilege: ``hostPID`` shows every process of the node, and reading another process's
``/proc/PID/ns/pid`` link needs ptrace read access (``ptrace_may_access``, PTRACE_MODE_READ_FSCREDS):
root in the container with CAP_SYS_PTRACE has it for every process, whatever capabilities the target
holds. So the container drops every capability and adds back SYS_PTRACE alone: not privileged, no
host mounts, no host network, no service account token.
"""

from __future__ import annotations

import contextlib
import secrets
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import FrameType
from typing import Any

from pidmap.errors import ExecError, ForbiddenError, PidmapError
from pidmap.model import Options, ProbeResult, ProcessTable, Target
from pidmap.sources import kube

MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGER = "pidmap"
COMPONENT = "app.kubernetes.io/component"
DEFAULT_IMAGE = "busybox"
DEFAULT_NAMESPACE = "default"  # where `kubectl debug node/...` puts its pod too
CONTAINER = "agent"
# Long enough for one run (pod start, image pull, one scan) or a watch's refreshes before the agent is
# replaced; short enough that a pod of a run killed with -9 ends soon on its own.
DEADLINE_SECONDS = 120
START_TIMEOUT = 60.0
POLL_SECONDS = 0.2
# Reasons a container waits with when its image cannot be had (kubelet's images/types.go).
IMAGE_REASONS = ("ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull",
                 "RegistryUnavailable")


class AgentRefused(ForbiddenError):
    """The cluster will not run the agent (RBAC, Pod Security, image, node state): exit 6."""


class AgentFailed(ExecError):
    """The agent was allowed but did not give a scan (start timeout, exec failure)."""


_CAPS_REFUSED = "unable to apply caps"  # runc's words when the bounding set lacks a capability


class _CapabilitiesRefused(Exception):
    """runc could not give the agent SYS_PTRACE: the node's own bounding set lacks it."""


@dataclass(frozen=True)
class AgentSettings:
    image: str = DEFAULT_IMAGE
    namespace: str = DEFAULT_NAMESPACE
    deadline: int = DEADLINE_SECONDS


def settings_of(options: Options) -> AgentSettings:
    return AgentSettings(image=options.agent_image, namespace=options.agent_namespace,
                         deadline=options.agent_deadline)


def manifest(name: str, node_name: str, settings: AgentSettings, *, ptrace: bool = True) -> dict[str, Any]:
    """The agent pod. Its command is fixed (``sleep``): the scan comes later through exec.

    ``ptrace=False``: no capability at all, for a node whose bounding set lacks SYS_PTRACE (runc then
    fails with "unable to apply caps"); /proc's status, cgroup and cmdline files stay world-readable,
    only other processes' namespace links do not, and the cgroup's container ID matches instead.
    """
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": settings.namespace,
            "labels": {MANAGED_BY: MANAGER, COMPONENT: "node-agent"},
            "annotations": {"pidmap.io/node": node_name},
        },
        "spec": {
            "nodeName": node_name,  # bypasses the scheduler: this node and no other
            "hostPID": True,
            "restartPolicy": "Never",
            "activeDeadlineSeconds": settings.deadline,
            "terminationGracePeriodSeconds": 0,
            "tolerations": [{"operator": "Exists"}],  # every taint, as node-shell tools do
            "automountServiceAccountToken": False,
            "enableServiceLinks": False,
            "containers": [{
                "name": CONTAINER,
                "image": settings.image,
                "imagePullPolicy": "IfNotPresent",
                "command": ["sleep", str(settings.deadline + 30)],
                "securityContext": {
                    "capabilities": {"drop": ["ALL"], **({"add": ["SYS_PTRACE"]} if ptrace else {})},
                    "runAsUser": 0,
                },
            }],
        },
    }


def _pods_path(namespace: str) -> str:
    return f"/api/v1/namespaces/{namespace}/pods"


@dataclass
class _Agent:
    name: str
    node_name: str
    started: float  # time.monotonic() of the create
    deleted: bool = False
    # Whether this agent's pod asked for SYS_PTRACE: its own, not the session's flag, which another
    # node's refusal may clear while this agent is still starting (two nodes started in parallel).
    ptrace: bool = True


@dataclass
class AgentSession:
    """Agent pods of one pidmap run: at most one per node, reused while its deadline allows
    (``watch``), all deleted by ``close`` (which ``session`` calls however the run ends)."""

    cluster: kube.Cluster
    settings: AgentSettings
    agents: dict[str, _Agent] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    timings: dict[str, float] = field(default_factory=dict)  # step -> seconds, for the bench's report
    notes: list[str] = field(default_factory=list)
    reaped: bool = False
    ptrace: bool = True  # False once a node refused SYS_PTRACE
    closed: bool = False

    def scan(self, node_name: str) -> ProcessTable:
        """The node's processes as its own PID namespace shows them (node PIDs)."""
        agent = self.start(node_name)
        result = self._exec_scan(agent)
        if result.table is None and agent.ptrace and self._refused_capabilities(agent):
            # runc can fail the container just after the pod was seen Running: same remedy as in start.
            self._delete(agent)
            self._without_ptrace()
            agent = self.start(node_name)
            result = self._exec_scan(agent)
        if result.table is None:
            raise AgentFailed(f"the node agent on {node_name} could not scan: {result.error}"
                              + self._what_happened(agent), self._describe(agent))
        init = result.table.by_pid.get(1)
        if init is None or (init.cmdline.split()[:1] == ["sleep"] and len(result.table.processes) <= 2):
            # PID 1 is the agent's own sleep: the runtime ignored hostPID, so these are not node PIDs.
            raise AgentFailed(f"the agent pod on node {node_name} is not in the node's PID namespace "
                              "(the runtime did not honour hostPID)",
                              "map without --via agent; node PIDs need a runtime that runs hostPID pods")
        return result.table

    def _took(self, step: str, began: float) -> None:
        # Summed: a run can start an agent twice (a capability refused) or scan several times (watch).
        with self.lock:
            self.timings[step] = self.timings.get(step, 0.0) + time.monotonic() - began

    def _exec_scan(self, agent: _Agent) -> ProbeResult:
        began = time.monotonic()
        try:
            return self.cluster.probe(Target(namespace=self.settings.namespace, pod=agent.name),
                                      CONTAINER, mode="full")
        except ForbiddenError as err:
            raise AgentRefused(f"RBAC: exec into the agent pod is not allowed ({err.message})",
                               f"your credentials need create on pods/exec in namespace "
                               f"{self.settings.namespace}") from err
        finally:
            self._took("exec", began)

    def _what_happened(self, agent: _Agent) -> str:
        """The agent pod's phase and its container's end, as the API has them, for an error line."""
        try:
            pod = self.cluster.request("GET", f"{_pods_path(self.settings.namespace)}/{agent.name}",
                                       what=f"agent pod {agent.name}")
        except PidmapError:
            return ""
        status = pod.get("status") or {}
        statuses = status.get("containerStatuses") or []
        ends = [((c.get("state") or {}).get("terminated") or {}) for c in statuses]
        parts = [f"phase {status.get('phase')}"]
        parts += [str(status[key]) for key in ("reason", "message") if status.get(key)]
        parts += [f"container {end.get('reason')} (exit {end.get('exitCode')}) {end.get('message') or ''}"
                  .strip() for end in ends if end]
        return " (agent pod: " + "; ".join(parts) + ")"

    def _refused_capabilities(self, agent: _Agent) -> bool:
        try:
            pod = self.cluster.request("GET", f"{_pods_path(self.settings.namespace)}/{agent.name}",
                                       what=f"agent pod {agent.name}")
        except PidmapError:
            return False
        return any(_CAPS_REFUSED in str(((s.get("state") or {}).get("terminated") or {}).get("message"))
                   for s in (pod.get("status") or {}).get("containerStatuses") or [])

    def _without_ptrace(self) -> None:
        self.ptrace = False
        note = ("the node refused the agent CAP_SYS_PTRACE (not in its bounding set): other processes' "
                "PID-namespace links were unreadable, processes matched by cgroup container ID")
        with self.lock:
            if note not in self.notes:
                self.notes.append(note)

    def start(self, node_name: str) -> _Agent:
        """The running agent of ``node_name``: reused while it has time left, else a new one."""
        with self.lock:
            agent = self.agents.get(node_name)
            reaping = not self.reaped
            self.reaped = True
        if reaping:
            began = time.monotonic()
            reap(self.cluster, self.settings)
            self._took("reap", began)
        if agent is not None and not agent.deleted:
            left = self.settings.deadline - (time.monotonic() - agent.started)
            if left > self.cluster.options.exec_timeout + 5:
                return agent
            self._delete(agent)
        began = time.monotonic()
        check_node(self.cluster, node_name)
        self._took("node", began)
        try:
            return self._run_agent(node_name)
        except _CapabilitiesRefused:
            self._without_ptrace()
            return self._run_agent(node_name)

    def _run_agent(self, node_name: str) -> _Agent:
        agent = _Agent(name=f"pidmap-agent-{secrets.token_hex(4)}", node_name=node_name,
                       started=time.monotonic())
        with self.lock:
            if self.closed:
                raise AgentFailed("the run is ending: no agent is started")  # none once clean-up began
            old = self.agents.get(node_name)
            self.agents[node_name] = agent
            if old is not None and old is not agent:
                self.agents[f"{node_name}#{old.name}"] = old  # still deleted by close()
        began = time.monotonic()
        self._create(agent)
        self._took("create", began)
        began = time.monotonic()
        try:
            self._wait_running(agent)
        except _CapabilitiesRefused:
            self._took("start refused SYS_PTRACE", began)
            self._delete(agent)
            raise
        self._took("start", began)
        return agent

    def _create(self, agent: _Agent) -> None:
        agent.ptrace = self.ptrace
        body = manifest(agent.name, agent.node_name, self.settings, ptrace=agent.ptrace)
        try:
            self.cluster.request("POST", _pods_path(self.settings.namespace), body=body,
                                 what=f"pods in namespace {self.settings.namespace}")
        except ForbiddenError as err:
            agent.deleted = True  # nothing was made
            raise refusal(err.message, self.settings) from err
        except kube.ApiNotFound as err:
            agent.deleted = True
            raise AgentRefused(f'the agent namespace "{self.settings.namespace}" does not exist',
                               "pass --agent-namespace NS (an existing namespace)") from err

    def _wait_running(self, agent: _Agent) -> None:
        path = f"{_pods_path(self.settings.namespace)}/{agent.name}"
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if self.closed:
                raise AgentFailed("the run is ending: no longer waiting for the agent to start")
            pod = self.cluster.request("GET", path, what=f"agent pod {agent.name}")
            status = pod.get("status") or {}
            phase = status.get("phase")
            states = [(s.get("state") or {}) for s in status.get("containerStatuses") or []]
            if phase == "Running" and any(state.get("running") is not None for state in states):
                return
            for state in states:
                ended = state.get("terminated") or {}
                if agent.ptrace and _CAPS_REFUSED in str(ended.get("message")):
                    raise _CapabilitiesRefused(ended.get("message"))
                reason = (state.get("waiting") or {}).get("reason")
                if reason in IMAGE_REASONS:
                    message = (state.get("waiting") or {}).get("message") or reason
                    raise AgentRefused(
                        f"the agent image {self.settings.image!r} cannot be pulled on node {agent.node_name} "
                        f"({reason}: {message})",
                        "pass --agent-image IMAGE, an image the node can pull that has sh "
                        "(busybox is enough)")
            if phase in ("Failed", "Succeeded"):
                why = status.get("reason") or status.get("message") or phase
                raise AgentFailed(f"the agent pod on node {agent.node_name} ended before it could scan "
                                  f"({why})", self._describe(agent))
            if time.monotonic() > deadline:
                raise AgentFailed(f"the agent pod on node {agent.node_name} did not start within "
                                  f"{START_TIMEOUT:g}s (phase {phase})",
                                  f"kubectl describe pod {agent.name} -n {self.settings.namespace}")
            time.sleep(POLL_SECONDS)

    def _describe(self, agent: _Agent) -> str:
        return f"kubectl describe pod {agent.name} -n {self.settings.namespace}"

    def _delete(self, agent: _Agent) -> None:
        if agent.deleted:
            return
        agent.deleted = True
        path = f"{_pods_path(self.settings.namespace)}/{agent.name}"
        with contextlib.suppress(kube.ApiNotFound):
            self.cluster.request("DELETE", path, query=[("gracePeriodSeconds", "0")],
                                 body={"kind": "DeleteOptions", "apiVersion": "v1", "gracePeriodSeconds": 0},
                                 what=f"agent pod {agent.name}")

    def stop(self) -> None:
        """No new agent, and no more waiting for one to start: the run is ending."""
        with self.lock:
            self.closed = True

    def close(self) -> list[str]:
        """Delete every agent still there; the failures, as notes (the deadline ends those pods)."""
        with self.lock:
            self.closed = True
        began = time.monotonic()
        failures = []
        for agent in list(self.agents.values()):
            try:
                self._delete(agent)
            except PidmapError as err:
                failures.append(f"the agent pod {self.settings.namespace}/{agent.name} could not be deleted "
                                f"({err.message}); its activeDeadlineSeconds ends it within "
                                f"{self.settings.deadline}s")
        self._took("delete", began)
        return failures


def refusal(message: str, settings: AgentSettings) -> AgentRefused:
    """A 403 on the agent's create, named by its cause: Pod Security Admission, or RBAC."""
    if "PodSecurity" in message:
        return AgentRefused(
            f"Pod Security Admission refuses the agent in namespace {settings.namespace}: {message}",
            f"namespace {settings.namespace} enforces a level that forbids hostPID (baseline or restricted): "
            "pass --agent-namespace NS of a namespace labelled pod-security.kubernetes.io/enforce=privileged "
            "(or with no enforce label)")
    return AgentRefused(f"RBAC: creating the agent pod is not allowed ({message})",
                        f"your credentials need create and delete on pods, and create on pods/exec, in "
                        f"namespace {settings.namespace} (or pass --agent-namespace NS)")


def check_node(cluster: kube.Cluster, node_name: str) -> None:
    """Refuse a node the agent cannot run on (NotFoundError when there is no such node)."""
    refused = node_refusal(kube.get_node(cluster, node_name))
    if refused is not None:
        raise refused


def node_refusal(node: dict[str, Any]) -> AgentRefused | None:
    """Pure: why no agent should start on this Node object: cordoned (spec.unschedulable) or
    NotReady (its Ready condition is not True); None when it may."""
    name = (node.get("metadata") or {}).get("name") or "?"
    if (node.get("spec") or {}).get("unschedulable"):
        return AgentRefused(f"node {name} is cordoned (SchedulingDisabled): no agent is started on it",
                            f"kubectl uncordon {name}, or map it without --via agent")
    ready = next((c for c in (node.get("status") or {}).get("conditions") or [] if c.get("type") == "Ready"),
                 None)
    if ready is None or ready.get("status") != "True":
        why = (ready or {}).get("reason") or "no Ready condition"
        return AgentRefused(f"node {name} is NotReady ({why}): an agent pod would not start there",
                            f"kubectl describe node {name}")
    return None


def reap(cluster: kube.Cluster, settings: AgentSettings, now: datetime | None = None) -> list[str]:
    """Delete the agent pods a killed run left (``leftovers``). Names of those deleted; never fails
    the run (without list or delete rights the deadline still ends them)."""
    try:
        pods = cluster.request("GET", _pods_path(settings.namespace),
                               query=[("labelSelector", f"{MANAGED_BY}={MANAGER}")],
                               what=f"pods in namespace {settings.namespace}").get("items") or []
    except PidmapError:
        return []
    reaped = []
    for name in leftovers(pods, now or datetime.now(UTC), settings.deadline):
        with contextlib.suppress(PidmapError):
            cluster.request("DELETE", f"{_pods_path(settings.namespace)}/{name}",
                            query=[("gracePeriodSeconds", "0")], what="a leftover agent pod")
            reaped.append(name)
    return reaped


def leftovers(pods: list[dict[str, Any]], now: datetime, default_deadline: int) -> list[str]:
    """Pure: names of agent pods no live run owns: ended (their deadline passed: Failed,
    DeadlineExceeded) or older than their deadline (a live run's agent is younger). Pods already
    being deleted, and pods pidmap did not label, are left alone."""
    names = []
    for pod in pods:
        metadata = pod.get("metadata") or {}
        if (metadata.get("labels") or {}).get(MANAGED_BY) != MANAGER or metadata.get("deletionTimestamp"):
            continue
        created = _parse_time(metadata.get("creationTimestamp"))
        deadline = (pod.get("spec") or {}).get("activeDeadlineSeconds") or default_deadline
        ended = (pod.get("status") or {}).get("phase") in ("Failed", "Succeeded")
        if ended or (created is not None and (now - created).total_seconds() > deadline):
            names.append(str(metadata.get("name")))
    return names


def _parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except ValueError:
        return None


def _interrupt(signum: int, _frame: FrameType | None) -> None:
    # SIGTERM / SIGHUP end the run as Ctrl-C does, so that the finally below deletes the agents.
    raise KeyboardInterrupt(signal.Signals(signum).name)


@contextlib.contextmanager
def session(cluster: kube.Cluster, settings: AgentSettings) -> Iterator[AgentSession]:
    """Agents for one run, deleted whatever ends it (success, error, timeout, Ctrl-C, SIGTERM)."""
    agents = AgentSession(cluster, settings)
    handlers: dict[int, Any] = {}
    if threading.current_thread() is threading.main_thread():
        for signum in (int(signal.SIGTERM), int(signal.SIGHUP)):
            handlers[signum] = signal.signal(signum, _interrupt)
    try:
        yield agents
    finally:
        # A second Ctrl-C must not cut the clean-up short.
        if threading.current_thread() is threading.main_thread():
            handlers.setdefault(int(signal.SIGINT), signal.signal(signal.SIGINT, signal.SIG_IGN))
        try:
            agents.close()
        finally:
            for signum, handler in handlers.items():
                signal.signal(signum, handler)
