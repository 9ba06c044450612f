#!/usr/bin/env python3
"""Time pidmap beside its peers, at every size, in one run: one matrix of medians and ratios.

    $ .venv/bin/python scripts/bench.py --sandbox          # brings up what it needs, then removes it
    pidmap bench: sandbox pidmap-bench, 7 runs per row, 10000 extra host processes, 2 CPUs
    ...

Rows (each group's ratios are against its first peer, marked "="):

* ``show`` of kubia-manual and of a pod with three containers, beside the manual recipe for that
  pod: ``kubectl get pod -o wide``, one ``kubectl exec POD -c C -- ps aux`` per container and
  ``docker exec NODE ps aux``, run one after the other as a person would;
* ``show --via agent`` (no Docker: one short-lived hostPID pod per run) beside ``show``, and beside
  ``kubectl debug node/NODE --image=busybox -- ps`` where the cluster supports it, with where one
  agent run's time goes;
* ``watch``'s steady refresh (one ``PodCollector.collect()`` after the first), beside the same recipe;
* growth: ``node NODE`` with 10, 50 and 100 pods on the node and ``show --all -A`` with 300 pods on
  the cluster, beside one ``show`` and beside a loop of ``show`` per pod (n x the median ``show``);
* the host scan (``scan_local`` of one node) and ``whois`` with 10,000+ host processes, beside a bare
  Python ``readlink`` pass over ``/proc/*/ns/pid``, ``lsns -t pid``, ``ps -e -o pid,pidns,cgroup``
  and psutil's ``process_iter``;
* start-up alone: ``pidmap --help`` and ``pidmap whois 1``.

Every row is a median of ``--runs`` runs with its spread (min-max) and the peak memory (max RSS) of
the process that ran it (for the rows timed inside one Python process, that whole process). The
goals of issue 10 follow the table, each with its measured ratio. The machine is shared: read the
spread before the medians. Growth rows and ``--sandbox`` need root (the sandbox does); without
``--sandbox`` the cluster of the current kubeconfig is used read-only and the growth rows are left
out (they create pods).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

from host_procs import idle_processes  # noqa: E402

PIDMAP = [sys.executable, "-m", "pidmap"]
THREE = "bench-three"


def fail(argv: Sequence[str], code: int, stderr: str) -> NoReturn:
    """End the benchmark with one line: the command, its exit status and its last line on stderr."""
    last = (stderr.strip().splitlines() or [""])[-1]
    raise SystemExit(f"bench: {' '.join(argv)[:200]} exited {code}: {last}")


def run_once(argv: Sequence[str], env: dict[str, str]) -> tuple[float, int, str]:
    """(wall seconds, peak RSS in KiB, stdout) of one run; a failing command ends the benchmark."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(list(argv), stdout=out, stderr=err, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        if proc.returncode != 0:
            fail(argv, proc.returncode, err.read().decode("utf-8", "replace"))
        return seconds, usage.ru_maxrss, out.read().decode("utf-8", "replace")


@dataclass
class Row:
    name: str
    samples: list[float]
    rss_kib: int
    note: str = ""

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def spread(self) -> str:
        return f"{min(self.samples):.3f}-{max(self.samples):.3f}"


@dataclass
class Group:
    title: str
    rows: list[Row] = field(default_factory=list)

    def add(self, row: Row) -> Row:
        self.rows.append(row)
        return row


def timed(
    name: str, commands: Sequence[Sequence[str]], runs: int, env: dict[str, str], note: str = ""
) -> Row:
    """Each run runs every command once, in order (a recipe); its time is theirs together."""
    samples, peak = [], 0
    for _ in range(runs):
        total = 0.0
        for argv in commands:
            seconds, rss, _ = run_once(argv, env)
            total += seconds
            peak = max(peak, rss)
        samples.append(total)
    return Row(name, samples, peak, note)


def inner(name: str, what: str, runs: int, env: dict[str, str], *args: str, note: str = "") -> Row:
    """A row timed inside one Python process (this script's --inner mode); RSS is that process's."""
    _, rss, out = run_once([sys.executable, __file__, "--inner", what, "--runs", str(runs), *args], env)
    return Row(name, json.loads(out)["samples"], rss, note)


# The agent's own step timings (reap, node check, create, start, exec, delete) from one run.
AGENT_STEPS = """
import json, sys, time
from pidmap.collect import agents_for, collect_pod
from pidmap.model import Options, Target
options = Options(via="agent")
began = time.perf_counter()
with agents_for(options) as agents:
    collect_pod(Target(namespace=sys.argv[2], pod=sys.argv[1]), options, agents)
    steps = agents.timings  # the same dict: the delete at the block's end adds its step
steps["total in-process"] = time.perf_counter() - began
print(json.dumps({k: round(v, 2) for k, v in steps.items()}))
"""


def agent_group(env: dict[str, str], pod: str, ns: str, node: str, runs: int) -> Group:
    """``show --via agent`` with no Docker (DOCKER_HOST at nothing) beside ``show``, and beside
    ``kubectl debug node/NODE -- ps`` where the cluster supports it; the title says where one agent
    run's time goes."""
    no_docker = {**env, "DOCKER_HOST": "unix:///nonexistent/docker.sock"}
    out = subprocess.run([sys.executable, "-c", AGENT_STEPS, pod, ns], capture_output=True, text=True,
                         env=no_docker, check=False, timeout=300)
    if out.returncode != 0:
        fail(["pidmap show --via agent (in-process)"], out.returncode, out.stderr)
    steps = ", ".join(f"{step} {seconds}" for step, seconds in json.loads(out.stdout).items())
    debug = ["kubectl", "debug", f"node/{node}", "--image=busybox", "--attach", "--", "ps"]
    supported = subprocess.run(debug, capture_output=True, env=env, check=False, timeout=120).returncode == 0
    group = Group(f"show {pod} through a node agent (no Docker); one agent run, seconds: {steps}"
                  + ("" if supported else "; kubectl debug node/NODE: not supported by this cluster "
                     "(the sandbox's API server takes pods as JSON, kubectl debug sends protobuf)"))
    group.add(timed(f"pidmap show {pod}", [[*PIDMAP, "show", pod, "-n", ns]], runs, env))
    group.add(timed(f"pidmap show {pod} --via agent (one agent pod per run)",
                    [[*PIDMAP, "show", pod, "-n", ns, "--via", "agent"]], runs, no_docker))
    if supported:
        group.add(timed("kubectl debug node/NODE --image=busybox -- ps (node level; leaves its pod)",
                        [debug], runs, env))
    return group


# --- what --inner runs ------------------------------------------------------------------------


def _bare_readlink() -> int:
    count = 0
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                os.readlink(f"/proc/{name}/ns/pid")
                count += 1
            except OSError:
                pass
    return count


def inner_main(what: str, runs: int, args: list[str]) -> int:
    fn: Callable[[], object]
    if what == "readlink":
        fn = _bare_readlink
    elif what == "scan":
        from pidmap.sources import hostprocs

        roots = [int(args[0])]
        fn = lambda: hostprocs.scan_local(roots=roots)  # noqa: E731
    elif what == "psutil":
        import psutil

        fn = lambda: list(psutil.process_iter(["pid", "name", "cmdline", "status"]))  # noqa: E731
    elif what == "watch":
        from pidmap.collect import PodCollector
        from pidmap.model import Options, Target

        collector = PodCollector(Target(namespace=args[1], pod=args[0]), Options())
        collector.collect()  # the first refresh makes the clients; the steady ones are timed
        fn = collector.collect
    else:
        raise SystemExit(f"bench: unknown --inner {what}")
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    print(json.dumps({"samples": samples}))
    return 0


# --- the cluster side -------------------------------------------------------------------------


def kubectl(env: dict[str, str], *args: str, stdin: str | None = None) -> str:
    result = subprocess.run(
        ["kubectl", *args], input=stdin, capture_output=True, text=True, env=env, check=False
    )
    if result.returncode != 0:
        fail(["kubectl", *args], result.returncode, result.stderr)
    return result.stdout


def pod_doc(env: dict[str, str], pod: str, namespace: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(kubectl(env, "get", "pod", pod, "-n", namespace, "-o", "json"))
    if not doc["spec"].get("nodeName"):
        raise SystemExit(f"bench: pod {namespace}/{pod} is not scheduled on a node")
    return doc


def recipe(env: dict[str, str], pod: str, namespace: str) -> list[list[str]]:
    """The manual recipe for ``pod``: where it runs, each container's ps, the node's ps."""
    doc = pod_doc(env, pod, namespace)
    containers = [c["name"] for c in doc["spec"]["containers"]]
    return [
        ["kubectl", "get", "pod", pod, "-n", namespace, "-o", "wide"],
        *(["kubectl", "exec", "-n", namespace, pod, "-c", c, "--", "ps", "aux"] for c in containers),
        ["docker", "exec", doc["spec"]["nodeName"], "ps", "aux"],
    ]


def sleep_pods(names: Sequence[str], nodes: Sequence[str]) -> str:
    return "\n---\n".join(
        f"""apiVersion: v1
kind: Pod
metadata: {{name: {name}, labels: {{app: bench-grow}}}}
spec:
  nodeName: {nodes[i % len(nodes)]}
  containers:
  - {{name: sleep, image: "busybox:1.36", command: ["sleep", "86400"]}}"""
        for i, name in enumerate(names)
    )


THREE_CONTAINERS = f"""apiVersion: v1
kind: Pod
metadata: {{name: {THREE}}}
spec:
  containers:
  - {{name: web, image: "busybox:1.36", command: ["httpd", "-f", "-p", "8080", "-h", "/"]}}
  - {{name: worker, image: "busybox:1.36", command: ["sh", "-c", "while true; do sleep 5; done"]}}
  - {{name: idle, image: "busybox:1.36", command: ["sleep", "86400"]}}
"""


def grow_to(env: dict[str, str], have: int, want: int, nodes: Sequence[str], prefix: str) -> int:
    if want > have:
        names = [f"{prefix}-{i:03d}" for i in range(have, want)]
        kubectl(env, "apply", "-f", "-", stdin=sleep_pods(names, nodes))
        kubectl(
            env,
            "wait",
            "--for=jsonpath={.status.phase}=Running",
            "--timeout=600s",
            *(f"pod/{n}" for n in names),
        )
    return max(have, want)


# --- the matrix -------------------------------------------------------------------------------


def bench(args: argparse.Namespace, env: dict[str, str], sandbox: bool) -> list[Group]:
    runs = args.runs
    ns = args.namespace
    groups: list[Group] = []
    kubia = pod_doc(env, args.pod, ns)
    node = kubia["spec"]["nodeName"]

    pods = [args.pod] + ([THREE] if sandbox or args.three else [])
    for pod in pods:
        group = Group(f"show {pod} ({len(pod_doc(env, pod, ns)['spec']['containers'])} containers)")
        group.add(
            timed(
                "manual recipe: kubectl get -o wide; kubectl exec ps aux per container; "
                "docker exec NODE ps aux",
                recipe(env, pod, ns),
                runs,
                env,
            )
        )
        group.add(timed(f"pidmap show {pod}", [[*PIDMAP, "show", pod, "-n", ns]], runs, env))
        groups.append(group)

    groups.append(agent_group(env, args.pod, ns, node, runs))

    group = Group(f"watch {args.pod}: one steady refresh")
    group.add(timed("manual recipe (as above)", recipe(env, args.pod, ns), runs, env))
    group.add(
        inner(
            "pidmap watch refresh (kept clients: pod GET, probe, node scan, GET)",
            "watch",
            runs,
            env,
            args.pod,
            ns,
        )
    )
    groups.append(group)

    node_doc = json.loads(
        subprocess.run(["docker", "inspect", node], capture_output=True, text=True, check=True).stdout
    )[0]
    node_pid = str(node_doc["State"]["Pid"])
    with idle_processes(args.procs):
        total = sum(1 for e in os.scandir("/proc") if e.name.isdigit())
        pod_pid = json.loads(run_once([*PIDMAP, "show", args.pod, "-n", ns, "-o", "json"], env)[2])[
            "containers"
        ][0]["processes"][0]["host_pid"]
        group = Group(f"host scan with {total} host processes ({args.procs} extra idle ones)")
        group.add(inner("bare Python readlink of every /proc/*/ns/pid", "readlink", runs, env))
        group.add(inner(f"pidmap host scan of node {node} (scan_local)", "scan", runs, env, node_pid))
        group.add(timed("lsns -t pid", [["lsns", "-t", "pid"]], runs, env))
        group.add(
            timed("ps -e -o pid,pidns,cgroup", [["ps", "-e", "-o", "pid,pidns,cgroup"]], runs, env)
        )
        try:
            import psutil  # noqa: F401

            group.add(inner("psutil process_iter (pid, name, cmdline, status)", "psutil", runs, env))
        except ImportError:
            pass
        group.add(
            timed(
                f"pidmap whois {pod_pid} (a pod's process)",
                [[*PIDMAP, "whois", str(pod_pid)]],
                runs,
                env,
            )
        )
        group.add(timed("pidmap whois 1 (the host's init)", [[*PIDMAP, "whois", "1"]], runs, env))
        groups.append(group)

    group = Group("start-up alone")
    group.add(timed("python -c pass (the interpreter)", [[sys.executable, "-c", "pass"]], runs, env))
    group.add(timed("pidmap --help", [[*PIDMAP, "--help"]], runs, env))
    group.add(timed("pidmap whois 1", [[*PIDMAP, "whois", "1"]], runs, env))
    groups.append(group)

    if sandbox:
        groups.extend(growth(args, env, node_of_sandbox(args.name), runs))
    return groups


def node_of_sandbox(name: str) -> list[str]:
    return [f"{name}-m03", f"{name}-m02", name]


def growth(args: argparse.Namespace, env: dict[str, str], nodes: list[str], runs: int) -> list[Group]:
    crowded = nodes[0]
    groups = []
    have = 0
    for size in args.node_pods:
        have = grow_to(env, have, size, [crowded], "bench-grow")
        on_node = json.loads(
            kubectl(
                env, "get", "pods", "-A", "--field-selector", f"spec.nodeName={crowded}", "-o", "json"
            )
        )["items"]
        group = Group(f"node {crowded} with {len(on_node)} pods")
        one_show = group.add(
            timed("pidmap show (one pod of the node)", [[*PIDMAP, "show", "bench-grow-000"]], runs, env)
        )
        group.add(timed(f"pidmap node {crowded}", [[*PIDMAP, "node", crowded, "-o", "json"]], runs, env))
        group.add(
            Row(
                f"a loop of pidmap show per pod ({len(on_node)} x the median show)",
                [one_show.median * len(on_node)],
                one_show.rss_kib,
                note="estimated",
            )
        )
        groups.append(group)
    total = len(json.loads(kubectl(env, "get", "pods", "-A", "-o", "json"))["items"])
    if args.cluster_pods > total:
        grow_to(env, 0, args.cluster_pods - total, nodes[1:], "bench-spread")
    total = len(json.loads(kubectl(env, "get", "pods", "-A", "-o", "json"))["items"])
    group = Group(f"show --all -A with {total} pods on {len(nodes)} nodes")
    one = group.add(timed("pidmap show (one pod)", [[*PIDMAP, "show", "bench-grow-000"]], runs, env))
    group.add(timed("pidmap show --all -A", [[*PIDMAP, "show", "--all", "-A", "-o", "json"]], runs, env))
    group.add(
        Row(
            f"a loop of pidmap show per pod ({total} x the median show)",
            [one.median * total],
            one.rss_kib,
            note="estimated",
        )
    )
    groups.append(group)
    return groups


# --- report -----------------------------------------------------------------------------------


def report(groups: list[Group]) -> None:
    width = max(len(r.name) for g in groups for r in g.rows) + 2
    print(f"{'':<{width}}{'median s':>10}{'min-max s':>15}{'peak MB':>9}{'ratio':>8}")
    for group in groups:
        print(f"\n{group.title}")
        base = group.rows[0].median
        for i, row in enumerate(group.rows):
            ratio = "=" if i == 0 else f"{row.median / base:.2f}"
            spread = row.spread if len(row.samples) > 1 else row.note or "-"
            cells = f"{row.median:>10.3f}{spread:>15}{row.rss_kib / 1024:>9.0f}{ratio:>8}"
            print(f"  {row.name:<{width - 2}}{cells}")


def goals(groups: list[Group]) -> list[tuple[str, float, str]]:
    """(goal, measured, verdict) for every goal whose rows ran."""

    def find(title_start: str, name_start: str) -> Row | None:
        for group in groups:
            if group.title.startswith(title_start):
                for row in group.rows:
                    if row.name.startswith(name_start):
                        return row
        return None

    found: list[tuple[str, float, str]] = []

    def goal(text: str, value: float | None, ok: Callable[[float], bool]) -> None:
        if value is not None:
            found.append((text, value, "met" if ok(value) else "NOT met"))

    for group in groups:
        if group.title.startswith("show ") and "(3 containers)" in group.title:
            goal(
                "show of a three-container pod <= 1.0x its recipe",
                group.rows[1].median / group.rows[0].median,
                lambda v: v <= 1.0,
            )
        if group.title.startswith("watch "):
            goal(
                "watch refresh <= 0.25x the recipe for kubia-manual",
                group.rows[1].median / group.rows[0].median,
                lambda v: v <= 0.25,
            )
    node_groups = [g for g in groups if g.title.startswith("node ")]
    if node_groups:
        largest = node_groups[-1]
        goal(
            f"{largest.title}: node <= 1.5x one show",
            largest.rows[1].median / largest.rows[0].median,
            lambda v: v <= 1.5,
        )
    bare, scan, lsns = (
        find("host scan", "bare"),
        find("host scan", "pidmap host scan"),
        find("host scan", "lsns"),
    )
    if bare and scan:
        goal("host scan <= 1.5x a bare readlink pass", scan.median / bare.median, lambda v: v <= 1.5)
    if scan and lsns:
        goal("host scan >= 4x faster than lsns -t pid", lsns.median / scan.median, lambda v: v >= 4)
    helper = find("start-up", "pidmap --help")
    if helper:
        goal("pidmap --help <= 0.10 s", helper.median, lambda v: v <= 0.10)
    node_rows = [(g, g.rows[1].median) for g in node_groups]
    if len(node_rows) >= 2:
        (g0, t0), (g1, t1) = node_rows[0], node_rows[-1]
        n0, n1 = int(g0.title.split(" with ")[1].split()[0]), int(g1.title.split(" with ")[1].split()[0])
        goal(
            f"node time linear or better in pods ({n0} -> {n1} pods: time ratio / pod ratio)",
            (t1 / t0) / (n1 / n0),
            lambda v: v <= 1.0,
        )
    return found


def print_goals(found: list[tuple[str, float, str]]) -> None:
    print("\ngoals (issue 10)")
    width = max((len(text) for text, _, _ in found), default=10) + 2
    for text, value, verdict in found:
        print(f"  {text:<{width - 2}}{value:>8.2f}  {verdict}")


@contextmanager
def bench_sandbox(args: argparse.Namespace, env: dict[str, str]) -> Iterator[None]:
    home = tempfile.mkdtemp(prefix="pidmap-bench-")
    env["PIDMAP_SANDBOX_HOME"] = home
    env["KUBECONFIG"] = str(Path(home) / "kubeconfig")
    sandbox = [*PIDMAP, "sandbox"]
    try:
        run_once(
            [
                *sandbox,
                "up",
                "--name",
                args.name,
                "--flavor",
                "minikube",
                "--kubeconfig",
                env["KUBECONFIG"],
            ],
            env,
        )
        kubectl(env, "apply", "-f", str(ROOT / "examples" / "kubia-manual.yaml"))
        kubectl(env, "apply", "-f", "-", stdin=THREE_CONTAINERS)
        kubectl(
            env,
            "wait",
            "--for=jsonpath={.status.phase}=Running",
            "pod/kubia-manual",
            f"pod/{THREE}",
            "--timeout=120s",
        )
        yield
    finally:
        subprocess.run(
            [*sandbox, "down", "--name", args.name],
            env=env,
            check=False,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        shutil.rmtree(home, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--pod", default="kubia-manual")
    parser.add_argument("-n", "--namespace", default="default")
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--kubeconfig")
    parser.add_argument(
        "--sandbox",
        action="store_true",
        help="bring a private sandbox up for the run (pods, growth rows), and down after",
    )
    parser.add_argument("--name", default="pidmap-bench", help="name of the --sandbox sandbox")
    parser.add_argument(
        "--three", action="store_true", help=f"without --sandbox: pod {THREE} exists too"
    )
    parser.add_argument(
        "--procs", type=int, default=10_000, help="extra idle host processes for the scan rows"
    )
    parser.add_argument(
        "--node-pods",
        type=lambda s: [int(x) for x in s.split(",")],
        default=[10, 50, 100],
        help="pods on the crowded node, comma-separated sizes",
    )
    parser.add_argument(
        "--cluster-pods", type=int, default=300, help="pods on the cluster for show --all -A"
    )
    parser.add_argument("--inner", help=argparse.SUPPRESS)
    args, rest = parser.parse_known_args()
    if args.inner:
        return inner_main(args.inner, args.runs, rest)
    env = dict(os.environ)
    if args.kubeconfig:
        env["KUBECONFIG"] = args.kubeconfig
    start = time.monotonic()
    header = (
        f"pidmap bench: {'sandbox ' + args.name if args.sandbox else 'current kubeconfig'}, {args.runs} runs "
        f"per row, {args.procs} extra host processes, {os.cpu_count()} CPUs, load average "
        f"{os.getloadavg()[0]:.1f} at start"
    )
    if args.sandbox:
        with bench_sandbox(args, env):
            groups = bench(args, env, sandbox=True)
    else:
        groups = bench(args, env, sandbox=False)
    print(header)
    report(groups)
    print_goals(goals(groups))
    print(
        f"\n(ratio: the row's median / its group's first row; peak MB: max RSS of the process that ran "
        f"the row; whole run {time.monotonic() - start:.0f} s, load average {os.getloadavg()[0]:.1f} at end)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
