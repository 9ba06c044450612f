"""The grid: every command x every output format x every way to the node, each output parsed by its
format's own reader and every PID in it checked against the kernel (tests/grid.py).

Commands: `show POD`, `show --all`, `node NODE`, `whois PID` (a host PID, and `--level node --node
N`), `watch --count 1` and `--count 2` (and `-c`). Formats: those `pidmap COMMAND --help` offers.
Ways to the node: `--via local`, `--via docker`, `--via agent` (a pod per node and per run, a few
seconds each: a few agent cells, every format at least once, every command once).

The module's pods live in their own namespace and are ones whose processes never exit (sleep,
httpd, node), pinned to two nodes: the ground truth (kubectl, docker inspect, the host's /proc) is
read once, and each cell checks again, after its run, that every one of those processes is still
the same process. A row that the kernel does not confirm fails; so does a process left out.
Cell ids name themselves: `show-json-docker`, `node-mermaid-agent`, `watch-wide-local-count2`.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import yaml

from tests import grid
from tests.conftest import EXAMPLES, Sandbox, namespace_for
from tests.kernel import nspid

pytestmark = [pytest.mark.sandbox, pytest.mark.root, pytest.mark.docker, pytest.mark.tool("dot", "node")]

NAMESPACE = namespace_for(__name__)  # PIDMAP_TEST_SANDBOX-grid: never shared with another suite
# Two containers, one with two processes (a child whose PPID is the container's PID 1).
TWO = """
apiVersion: v1
kind: Pod
metadata:
  name: grid-two
spec:
  containers:
  - name: one
    image: busybox:1.36
    command: ["sleep", "86400"]
  - name: two
    image: busybox:1.36
    command: ["sh", "-c", "sleep 86401 & exec sleep 86402"]
"""
ON_A = ["kubia-manual.yaml", "shared-pid.yaml", "init-container.yaml"]  # node A: three pods
ON_B = "grid-two"  # node B: one pod, so that show --all spans two nodes


@dataclass
class Grid:
    box: Sandbox
    truth: grid.Truth
    node_a: str
    node_b: str

    def run(self, *args: str) -> str:
        result = self.box.pidmap(*args, timeout=180)
        assert "Traceback" not in result.stderr
        return result.stdout

    def pods_on(self, node: str) -> set[str]:
        return {name for name, pod in self.truth.pods.items() if pod["spec"]["nodeName"] == node}


def _pinned(manifest: dict[str, Any], node: str) -> str:
    pod = copy.deepcopy(manifest)
    pod["spec"]["nodeName"] = node
    return yaml.safe_dump(pod)


def _ready(box: Sandbox, name: str) -> bool:
    pod = box.pod(name, NAMESPACE)
    statuses = pod["status"].get("containerStatuses") or []
    return (pod["status"].get("phase") == "Running" and len(statuses) == len(pod["spec"]["containers"])
            and all("running" in s["state"] for s in statuses))


@pytest.fixture(scope="module")
def the_grid(sandbox: Sandbox) -> Iterator[Grid]:
    nodes = json.loads(sandbox.kubectl("get", "nodes", "-o", "json").stdout)["items"]
    schedulable = sorted(n["metadata"]["name"] for n in nodes if not n["spec"].get("taints"))
    assert len(schedulable) >= 2, schedulable
    node_a, node_b = schedulable[-2:]
    sandbox.kubectl("create", "namespace", NAMESPACE)
    try:
        names = []
        for example in ON_A:
            manifest = yaml.safe_load((EXAMPLES / example).read_text())
            sandbox.kubectl("apply", "-n", NAMESPACE, "-f", "-", input=_pinned(manifest, node_a))
            names.append(manifest["metadata"]["name"])
        sandbox.kubectl("apply", "-n", NAMESPACE, "-f", "-", input=_pinned(yaml.safe_load(TWO), node_b))
        names.append(ON_B)
        for name in names:
            sandbox.wait_phase(name, {"Running"}, NAMESPACE)
        deadline = time.monotonic() + 90
        while not all(_ready(sandbox, name) for name in names):
            assert time.monotonic() < deadline, "the grid's pods did not all run"
            time.sleep(0.3)
        # The two-process container: wait until its child runs as well (seen by the kernel).
        truth = grid.take_truth(sandbox.env, NAMESPACE)
        while len({p for p in truth.procs[ON_B] if p[0] == "two"}) < 2:
            assert time.monotonic() < deadline, truth.procs[ON_B]
            time.sleep(0.3)
            truth = grid.take_truth(sandbox.env, NAMESPACE)
        assert set(truth.procs) == set(names)
        # Every container that runs has its processes; the shared-PID pod has its pause row.
        assert {p[0] for p in truth.procs["shared-pid"]} == {"web", "shell", grid.SANDBOX_ROW}
        assert {p[0] for p in truth.procs["init-demo"]} == {"web"}
        yield Grid(sandbox, truth, node_a, node_b)
    finally:
        sandbox.kubectl("delete", "namespace", NAMESPACE, "--wait=true", check=False, timeout=180)


FORMATS = ["table", "wide", "json", "yaml", "tree", "dot", "mermaid"]
# The agent starts a pod per node and per run (several seconds on the sandbox): every format and
# every command through it once, not the whole product.
AGENT = {("show", "json"), ("show", "table"), ("all", "yaml"), ("all", "dot"),
         ("node", "mermaid"), ("node", "tree"), ("node", "wide")}


def _cells(command: str) -> list[Any]:
    cells = [pytest.param(fmt, via, id=f"{command}-{fmt}-{via}")
             for fmt in FORMATS for via in ("local", "docker")]
    cells += [pytest.param(fmt, "agent", id=f"{command}-{fmt}-agent")
              for cmd, fmt in sorted(AGENT) if cmd == command]
    return cells


def _check(g: Grid, fmt: str, via: str, out: str, pods: set[str], only: str | None = None) -> None:
    views = grid.PARSERS[fmt](out)
    rows = grid.verify_views(views, g.truth, via, pods, only=only)
    assert rows >= len(pods), rows
    if fmt in ("json", "yaml", "wide"):  # the formats that show ancestry (RUNS UNDER)
        assert all(v.ancestry for v in views), [v.pod for v in views if not v.ancestry]
    grid.still_true(g.truth)


@pytest.mark.parametrize(("fmt", "via"), _cells("show"))
def test_show(the_grid: Grid, fmt: str, via: str) -> None:
    out = the_grid.run("show", "shared-pid", "-n", NAMESPACE, "-o", fmt, "--via", via)
    _check(the_grid, fmt, via, out, {"shared-pid"})


@pytest.mark.parametrize("pod", ["kubia-manual", "init-demo", "grid-two"])
@pytest.mark.parametrize("fmt", ["table", "json"])
def test_show_each_pod(the_grid: Grid, fmt: str, pod: str) -> None:
    out = the_grid.run("show", pod, "-n", NAMESPACE, "-o", fmt, "--via", "local")
    _check(the_grid, fmt, "local", out, {pod})


@pytest.mark.parametrize("fmt", ["table", "yaml", "mermaid"])
def test_show_one_container(the_grid: Grid, fmt: str) -> None:
    out = the_grid.run("show", "grid-two", "-n", NAMESPACE, "-c", "two", "-o", fmt)
    _check(the_grid, fmt, "local", out, {"grid-two"}, only="two")


@pytest.mark.parametrize(("fmt", "via"), _cells("all"))
def test_show_all(the_grid: Grid, fmt: str, via: str) -> None:
    out = the_grid.run("show", "--all", "-n", NAMESPACE, "-o", fmt, "--via", via)
    _check(the_grid, fmt, via, out, set(the_grid.truth.pods))


@pytest.mark.parametrize(("fmt", "via"), _cells("node"))
def test_node(the_grid: Grid, fmt: str, via: str) -> None:
    out = the_grid.run("node", the_grid.node_a, "-n", NAMESPACE, "-o", fmt, "--via", via)
    pods = the_grid.pods_on(the_grid.node_a)
    assert len(pods) == 3
    _check(the_grid, fmt, via, out, pods)


def _target(g: Grid, which: str) -> int:
    """A host PID: the child in grid-two's `two` (container PID not 1), or shared-pid's pause."""
    if which == "pause":
        (pid,) = [h for c, _cp, _n, h in g.truth.procs["shared-pid"] if c == grid.SANDBOX_ROW]
    else:
        (pid,) = [h for c, cp, _n, h in g.truth.procs[ON_B] if c == "two" and cp != 1]
    return pid


WHOIS = [pytest.param(level, fmt, via, which, id=f"whois-{level}-{fmt}-{via}-{which}")
         for level in ("host", "node") for fmt in ("table", "json") for via in ("auto", "agent")
         for which in ("child", "pause")
         if not (via == "agent" and (level == "host" or which == "pause"))]


@pytest.mark.parametrize(("level", "fmt", "via", "which"), WHOIS)
def test_whois(the_grid: Grid, level: str, fmt: str, via: str, which: str) -> None:
    host_pid = _target(the_grid, which)
    pod, _container = the_grid.truth.pod_of_host_pid(host_pid)
    node = the_grid.truth.pods[pod]["spec"]["nodeName"]
    pid = host_pid if level == "host" else nspid(host_pid)[1]
    args = ["whois", str(pid), "-o", fmt, "--via", via]
    if level == "node":
        args += ["--level", "node", "--node", node]
    out = the_grid.run(*args)
    answer = json.loads(out) if fmt == "json" else grid.parse_whois_table(out)
    grid.verify_whois(answer, the_grid.truth, host_pid)
    if fmt == "table":
        words = "the pod sandbox (pause process)" if which == "pause" else "is PID "
        assert answer["summary"].startswith(f"host PID {host_pid} ") and words in answer["summary"], answer
    grid.still_true(the_grid.truth)


WATCH = [pytest.param(fmt, via, count, id=f"watch-{fmt}-{via}-count{count}")
         for fmt in ("table", "wide", "json") for via in ("local", "docker") for count in (1, 2)]
WATCH += [pytest.param("json", "agent", 2, id="watch-json-agent-count2"),
          pytest.param("table", "agent", 1, id="watch-table-agent-count1")]


def _watch(g: Grid, pod: str, fmt: str, via: str, count: int, *extra: str) -> str:
    # A child process with a bounded wait: a hung watch fails this cell, not the whole run.
    result = subprocess.run([sys.executable, "-m", "pidmap", "watch", pod, "-n", NAMESPACE, "-o", fmt,
                             "--via", via, "--count", str(count), "--interval", "0.3", *extra],
                            env=g.box.env, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    return result.stdout


def _check_watch(g: Grid, fmt: str, via: str, count: int, out: str, pod: str,
                 only: str | None = None) -> None:
    if fmt == "json":
        docs = grid.parse_watch_json(out)
        # One line per refresh that changed something: the first, and then nothing changes (the
        # kernel says so: still_true below).
        assert [d["event"] for d, _ in docs] == ["initial"], [d["event"] for d, _ in docs]
        assert docs[0][0]["refresh"] == 1 and docs[0][0]["changes"] == []
        views = [v for _, v in docs]
    else:
        blocks = grid.parse_watch_table(out)
        assert len(blocks) == count, len(blocks)
        assert all(len(b) == 1 for b in blocks), [len(b) for b in blocks]
        views = [b[0] for b in blocks]
        if count == 2:
            assert out.rstrip().endswith("no change since the previous refresh"), out[-300:]
        if fmt == "wide":
            assert all(v.ancestry for v in views)
    for view in views:
        assert view.pod == pod
        grid.verify_view(view, g.truth, via, only=only)
    grid.still_true(g.truth)


@pytest.mark.parametrize(("fmt", "via", "count"), WATCH)
def test_watch(the_grid: Grid, fmt: str, via: str, count: int) -> None:
    out = _watch(the_grid, "shared-pid", fmt, via, count)
    _check_watch(the_grid, fmt, via, count, out, "shared-pid")


@pytest.mark.parametrize("fmt", ["table", "wide", "json"])
def test_watch_one_container(the_grid: Grid, fmt: str) -> None:
    out = _watch(the_grid, ON_B, fmt, "local", 2, "-c", "two")
    _check_watch(the_grid, fmt, "local", 2, out, ON_B, only="two")
