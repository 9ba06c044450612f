"""Plant known bugs in a copy of the tree and report which tests catch each one.

    PIDMAP_TEST_SANDBOX=NAME .venv/bin/python scripts/plant_bugs.py [--only BUG]... [--no-e2e]

For each bug below: copy the committed tree (``git archive HEAD``) to a temporary directory, apply
the bug's one textual patch there (it must match the current source exactly
once), and run the unit selection (whole) and the e2e selection (``-x``: up to the first failure;
it brings up the sandbox named by PIDMAP_TEST_SANDBOX, as the suite does) with this tree's Python
and PYTHONPATH set to the copy, so that both pytest and the ``python -m pidmap`` it starts import the
planted code. The tree itself is never modified. A control run with no bug comes first: a selection
that fails without a bug proves nothing. Prints one line per bug with the tests that failed; a bug
that no test catches (or a failing control) is reported loudly and the exit status is 1.

Not part of scripts/test.sh (one sandbox per bug: several minutes); tests/unit/test_plant_bugs.py
checks that every patch still applies to the current source.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Plant:
    name: str
    what: str
    path: str
    old: str
    new: str


PLANTS = (
    Plant("swap-rows", "swap the first two containers' rows in correlate",
          "pidmap/correlate.py",
          "    return PodMap(pod=pod, node=node, containers=tuple(maps), notes=tuple(pod_notes),\n",
          "    if len(maps) >= 2:  # PLANTED\n"
          "        import dataclasses\n"
          "        maps[0], maps[1] = (dataclasses.replace(maps[0], processes=maps[1].processes),\n"
          "                            dataclasses.replace(maps[1], processes=maps[0].processes))\n"
          "    return PodMap(pod=pod, node=node, containers=tuple(maps), notes=tuple(pod_notes),\n"),
    Plant("node-pid-off-by-one", "every node PID one too high",
          "pidmap/correlate.py",
          "        node_pid=host_proc.pid_at(host.node_level) if host_proc and host else None,\n",
          "        node_pid=(lambda n: None if n is None else n + 1)(host_proc.pid_at(host.node_level))"
          " if host_proc and host else None,  # PLANTED\n"),
    Plant("drop-sandbox-row", "drop the pause (pod sandbox) row of a shared-namespace pod",
          "pidmap/correlate.py",
          "                  via=host.via if host else None, sandbox=sandbox, "
          "sandbox_ancestry=sandbox_ancestry)\n",
          "                  via=host.via if host else None, sandbox=None, sandbox_ancestry=sandbox_ancestry)"
          "  # PLANTED\n"),
    Plant("host-pid-as-node-pid", "report the host PID as the node PID",
          "pidmap/correlate.py",
          "        node_pid=host_proc.pid_at(host.node_level) if host_proc and host else None,\n",
          "        node_pid=host_proc.pid_at(host.host_level) if host_proc and host else None,  # PLANTED\n"),
    Plant("no-escape", "container text reaches the terminal unescaped",
          "pidmap/wording.py",
          "    if _PLAIN.fullmatch(text):\n        return text\n",
          "    if True:  # PLANTED\n        return text\n"),
)

UNIT = ["tests/unit/test_recorded_node.py", "tests/unit/test_recorded_sandbox.py",
        "tests/unit/test_recorded_nested.py", "tests/unit/test_correlate.py",
        "tests/unit/test_correlate_trust.py", "tests/unit/test_wording.py", "tests/unit/test_picture.py",
        "tests/unit/test_whois.py"]
E2E = ["tests/e2e/test_show.py::test_every_pid_matches_ground_truth",
       "tests/e2e/test_trust.py::test_hostile_command_line_is_escaped_in_human_output_and_exact_in_json"]


def planted(source: str, plant: Plant) -> str:
    """``source`` with the bug in; ValueError unless the patch matches exactly once."""
    count = source.count(plant.old)
    if count != 1:
        raise ValueError(f"{plant.name}: the patch matches {count} times in {plant.path}, not once: "
                         "update scripts/plant_bugs.py to the current source")
    return source.replace(plant.old, plant.new)


def copy_tree(dest: Path) -> None:
    """The committed tree (HEAD: what is being judged, unaffected by edits made meanwhile)."""
    dest.mkdir(parents=True)
    archive = subprocess.run(["git", "archive", "HEAD"], cwd=ROOT, capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    if (ROOT / ".cache").is_dir():
        (dest / ".cache").symlink_to(ROOT / ".cache")  # Mermaid's parser (npm), as test.sh installs it


FAILED = re.compile(r"^(?:FAILED|ERROR) (\S+)")


def run_selection(tree: Path, selection: list[str], *, stop_first: bool) -> tuple[list[str], str]:
    """(failed test ids, pytest's last line) of one pytest run in the copy."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    argv = [sys.executable, "-m", "pytest", "-q", "-rfE", "-p", "no:cacheprovider",
            *(["-x"] if stop_first else []), *selection]
    done = subprocess.run(argv, cwd=tree, env=env, capture_output=True, text=True, timeout=3600)
    lines = done.stdout.splitlines()
    failed = sorted({m.group(1) for line in lines if (m := FAILED.match(line))})
    if done.returncode not in (0, 1) and not failed:
        failed = [f"<pytest exit {done.returncode}>"]
    return failed, (lines[-1] if lines else done.stderr.strip()[-200:])


def check(tree: Path, plant: Plant | None, e2e: bool) -> dict[str, list[str]]:
    copy_tree(tree)
    if plant is not None:
        path = tree / plant.path
        path.write_text(planted(path.read_text(), plant))
    env = {**os.environ, "PYTHONPATH": str(tree)}
    where = subprocess.run([sys.executable, "-c", "import pidmap; print(pidmap.__file__)"], cwd=tree,
                           env=env, capture_output=True, text=True, check=True).stdout.strip()
    assert where.startswith(str(tree)), f"the copy's pidmap is not the one imported: {where}"
    found: dict[str, list[str]] = {}
    for kind, selection, stop_first in (("unit", UNIT, False), ("e2e", E2E, True)):
        if kind == "e2e" and not e2e:
            continue
        start = time.monotonic()
        failed, last = run_selection(tree, selection, stop_first=stop_first)
        print(f"  {kind}: {last} ({time.monotonic() - start:.0f} s)", flush=True)
        found[kind] = failed
    return found


def _short(test: str) -> str:
    path, _, name = test.partition("::")
    return f"{Path(path).name}::{name}" if name else test


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", action="append", choices=[p.name for p in PLANTS])
    parser.add_argument("--no-e2e", action="store_true", help="the unit selection only (no sandbox)")
    parser.add_argument("--no-control", action="store_true", help="skip the run without a bug")
    args = parser.parse_args(argv)
    if not args.no_e2e and not os.environ.get("PIDMAP_TEST_SANDBOX"):
        parser.error("set PIDMAP_TEST_SANDBOX to a sandbox name of your own (the e2e runs bring it up)")
    chosen = [p for p in PLANTS if not args.only or p.name in args.only]
    results: list[tuple[str, str, dict[str, list[str]]]] = []
    bad = False
    for plant in ([None] if not args.no_control else []) + chosen:
        name = plant.name if plant else "control (no bug)"
        print(f"== {name}", flush=True)
        with tempfile.TemporaryDirectory(prefix="pidmap-plant-") as tmp:
            found = check(Path(tmp) / "tree", plant, not args.no_e2e)
        caught = any(found.values())
        if plant is None and caught:
            print(f"!! CONTROL FAILED without a bug: {found}", flush=True)
            bad = True
        elif plant is not None and not caught:
            print(f"!! NOT CAUGHT: {plant.name} ({plant.what}): no test in the selection failed", flush=True)
            bad = True
        results.append((name, plant.what if plant else "the selections as they are", found))
    print("\n| planted bug | what | unit tests that failed | e2e test that failed (-x) |")
    print("|---|---|---|---|")
    for name, what, found in results:
        cells = [", ".join(f"`{_short(test)}`" for test in found.get(kind, [])) or
                 ("(not run)" if kind not in found else "none") for kind in ("unit", "e2e")]
        print(f"| {name} | {what} | {cells[0]} | {cells[1]} |")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
