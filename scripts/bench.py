#!/usr/bin/env python3
"""Time `pidmap show` side by side with the peers' ways of getting (part of) the same answer.

    $ .venv/bin/python scripts/bench.py --pod kubia-manual --runs 5
    kubectl debug node/NODE: not supported by this cluster (the sandbox's API server takes pods as ...
    pod default/kubia-manual on node learn-k8s-m02, 5 runs each, median wall time
    where --via agent's time goes (one run, seconds): reap 0.014, node 0.015, create 0.046, start ...
    what                                                                      median s  vs pidmap show
    pidmap show (container -> node -> host, all levels)                          1.101            1.00
    pidmap show --via agent (no Docker; one agent pod per run)                   4.701            4.27
    course's 3 commands (kubectl exec ps; get -o wide; docker exec NODE ps)      0.533            0.48
    kubectl exec POD -- ps aux (container level only)                            0.338            0.31
    docker top NODE (node/host level only)                                       0.065            0.06
    lsns -t pid (host level only)                                                0.010            0.01

Each peer answers only part of the question (see the "what" column); the course's three commands
are the only peer that covers as many levels, and still leaves the matching to the reader's eye.
kindps, pid2pod and crictl are not installable offline; where they are on PATH they are timed too.
Uses the cluster of the current kubeconfig (KUBECONFIG / --kubeconfig). With --sandbox it brings a
private sandbox up (and down again) and applies examples/kubia-manual.yaml first.
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
from pathlib import Path
from typing import NoReturn

ROOT = Path(__file__).resolve().parent.parent


def fail(argv: list[str], result: subprocess.CompletedProcess[str]) -> NoReturn:
    """End the benchmark with one line: the command, its exit status and the last line it wrote to stderr."""
    last = (result.stderr.strip().splitlines() or [""])[-1]
    raise SystemExit(f"bench: {' '.join(argv)} exited {result.returncode}: {last}")


def timed(argv: list[str], runs: int, env: dict[str, str]) -> float:
    """Median wall time of ``argv`` over ``runs`` runs; a failing run aborts the benchmark."""
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        result = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
        samples.append(time.perf_counter() - start)
        if result.returncode != 0:
            fail(argv, result)
    return statistics.median(samples)


def must(argv: list[str], env: dict[str, str]) -> str:
    """Stdout of ``argv``; a failure ends the benchmark with one line, not a traceback."""
    result = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
    if result.returncode != 0:
        fail(argv, result)
    return result.stdout


def pod_node(pod: str, namespace: str, env: dict[str, str]) -> str:
    out = must(["kubectl", "get", "pod", pod, "-n", namespace, "-o", "json"], env)
    node: str = json.loads(out)["spec"].get("nodeName") or ""
    if not node:
        raise SystemExit(f"bench: pod {namespace}/{pod} is not scheduled on a node")
    return node


def run_bench(pod: str, namespace: str, runs: int, env: dict[str, str]) -> list[tuple[str, float]]:
    node = pod_node(pod, namespace, env)
    pidmap = [sys.executable, "-m", "pidmap"]
    course = [
        ["kubectl", "exec", "-n", namespace, pod, "--", "ps", "aux"],
        ["kubectl", "get", "pods", "-n", namespace, "-o", "wide"],
        ["docker", "exec", node, "ps", "aux"],
    ]
    rows = [("pidmap show (container -> node -> host, all levels)",
             timed([*pidmap, "show", pod, "-n", namespace], runs, env))]
    # The node agent: no Docker needed (DOCKER_HOST at nothing), one hostPID pod created and deleted.
    no_docker = {**env, "DOCKER_HOST": "unix:///nonexistent/docker.sock"}
    rows.append(("pidmap show --via agent (no Docker; one agent pod per run)",
                 timed([*pidmap, "show", pod, "-n", namespace, "--via", "agent"], runs, no_docker)))
    debug = ["kubectl", "debug", f"node/{node}", "--image=busybox", "--attach", "--", "ps"]
    if subprocess.run([*debug[:2], "--help"], capture_output=True, env=env, check=False).returncode == 0 \
            and subprocess.run(debug, capture_output=True, env=env, check=False, timeout=120).returncode == 0:
        rows.append(("kubectl debug node/NODE --image=busybox -- ps (node level; leaves its pod)",
                     timed(debug, runs, env)))
    else:
        print("kubectl debug node/NODE: not supported by this cluster (the sandbox's API server takes "
              "pods as JSON only, and kubectl debug sends protobuf): not timed")
    course_times = [timed(argv, runs, env) for argv in course]
    rows.append(("course's 3 commands (kubectl exec ps; get -o wide; docker exec NODE ps)",
                 sum(course_times)))
    rows.append(("kubectl exec POD -- ps aux (container level only)", course_times[0]))
    rows.append(("docker top NODE (node/host level only)", timed(["docker", "top", node], runs, env)))
    if shutil.which("lsns"):
        rows.append(("lsns -t pid (host level only)", timed(["lsns", "-t", "pid"], runs, env)))
    for peer, argv in (("kindps", ["kindps", pod]), ("pid2pod", ["pid2pod", "1"]),
                       ("crictl", ["crictl", "ps"])):
        if shutil.which(peer):
            rows.append((f"{peer} ({' '.join(argv[1:])})", timed(argv, runs, env)))
    print(f"pod {namespace}/{pod} on node {node}, {runs} runs each, median wall time")
    print("where --via agent's time goes (one run, seconds): " + agent_steps(pod, namespace, no_docker))
    return rows


AGENT_STEPS = """
import json, sys, time
from pidmap.collect import agents_for, collect_pod
from pidmap.model import Options, Target
options = Options(via="agent")
began = time.perf_counter()
with agents_for(options) as agents:
    collect_pod(Target(namespace=sys.argv[2], pod=sys.argv[1]), options, agents)
    steps = agents.timings
steps["total in-process"] = time.perf_counter() - began
print(json.dumps({k: round(v, 3) for k, v in steps.items()}))
"""


def agent_steps(pod: str, namespace: str, env: dict[str, str]) -> str:
    """The agent's own timings (reap, node check, create, start, exec, delete) from one in-process run."""
    out = must([sys.executable, "-c", AGENT_STEPS, pod, namespace], env).strip()
    return ", ".join(f"{step} {seconds}" for step, seconds in json.loads(out).items())


def report(rows: list[tuple[str, float]]) -> None:
    base = rows[0][1]
    width = max(len(name) for name, _ in rows)
    print(f"{'what':<{width}}  {'median s':>9}  {'vs pidmap show':>14}")
    for name, seconds in rows:
        print(f"{name:<{width}}  {seconds:>9.3f}  {seconds / base:>14.2f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--pod", default="kubia-manual")
    parser.add_argument("-n", "--namespace", default="default")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--kubeconfig")
    parser.add_argument("--sandbox", action="store_true",
                        help="bring a private sandbox up for the run, with kubia-manual applied")
    args = parser.parse_args()
    env = dict(os.environ)
    if args.kubeconfig:
        env["KUBECONFIG"] = args.kubeconfig
    if not args.sandbox:
        report(run_bench(args.pod, args.namespace, args.runs, env))
        return 0
    with tempfile.TemporaryDirectory(prefix="pidmap-bench-") as home:
        env["PIDMAP_SANDBOX_HOME"] = home
        env["KUBECONFIG"] = str(Path(home) / "kubeconfig")
        name = "pidmap-bench"
        pidmap = [sys.executable, "-m", "pidmap", "sandbox"]
        try:
            must([*pidmap, "up", "--name", name, "--flavor", "minikube",
                  "--kubeconfig", env["KUBECONFIG"]], env)
            must(["kubectl", "apply", "-f", str(ROOT / "examples" / "kubia-manual.yaml")], env)
            must(["kubectl", "wait", "--for=jsonpath={.status.phase}=Running", "pod/kubia-manual",
                  "--timeout=60s"], env)
            report(run_bench("kubia-manual", "default", args.runs, env))
        finally:
            subprocess.run([*pidmap, "down", "--name", name], env=env, check=False,
                           stdout=subprocess.DEVNULL)
    return 0


if __name__ == "__main__":
    sys.exit(main())
