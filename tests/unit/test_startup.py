"""Start-up: `pidmap --help` loads click and nothing of the SDKs, renderers or the sandbox.

What is imported is read from the interpreter itself (``-X importtime``), not from pidmap; the
time it takes is measured by scripts/bench.py, never asserted here.
"""

from __future__ import annotations

import subprocess
import sys

import click

from pidmap import cli, output

HEAVY = ("kubernetes", "docker", "psutil", "tabulate", "yaml", "pidmap.sandbox", "pidmap.collect",
         "pidmap.render", "pidmap.picture", "pidmap.sources")


def imported_modules(*args: str) -> set[str]:
    result = subprocess.run([sys.executable, "-X", "importtime", "-m", "pidmap", *args],
                            capture_output=True, text=True, check=False, timeout=60)
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    return {line.split("|")[-1].strip() for line in lines if line.startswith("import time:")}


def test_help_imports_nothing_heavy() -> None:
    modules = imported_modules("--help")
    assert "click" in modules  # the measurement sees imports at all
    loaded = sorted(m for m in modules if any(m == h or m.startswith(h + ".") for h in HEAVY))
    assert loaded == []


def test_help_lists_the_lazy_sandbox_with_its_own_words() -> None:
    from pidmap.sandbox.cli import sandbox

    assert sandbox.help is not None
    assert cli.LAZY_COMMANDS["sandbox"][2] == sandbox.help.strip().splitlines()[0]
    out = subprocess.run([sys.executable, "-m", "pidmap", "--help"], capture_output=True, text=True,
                         check=True, timeout=60).stdout
    assert "  sandbox  An offline kind/minikube-style cluster" in out
    sub = subprocess.run([sys.executable, "-m", "pidmap", "sandbox", "--help"], capture_output=True,
                         text=True, check=True, timeout=60).stdout
    assert "up" in sub and "down" in sub


def test_cli_output_choices_are_the_renderers() -> None:
    assert cli.OUTPUTS == output.OUTPUTS
    assert isinstance(cli.main, click.Group)
