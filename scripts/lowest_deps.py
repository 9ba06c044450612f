#!/usr/bin/env python3
"""Print the lowest declared version of every dependency of pidmap, one ``name==version`` a line.

    $ python3 scripts/lowest_deps.py
    kubernetes==30.1.0
    docker==7.1.0
    ...

Read from pyproject.toml: the runtime dependencies, the ``sandbox`` extra (the tests bring a sandbox
up), and the test tools pytest, pytest-timeout, pytest-random-order and hypothesis from the ``dev`` extra.
scripts/test.sh installs exactly these into .venv-lowest when PIDMAP_DEPS=lowest. Every one must
have a ``>=`` lower bound: one without is an error, since "the lowest declared version" would
then mean any version at all.
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Test tools whose lowest version is part of the run; the linters and type checker check the source,
# not the dependencies, and run in the newest environment only.
TEST_TOOLS = ("pytest", "pytest-timeout", "pytest-random-order", "hypothesis")
_SPEC = re.compile(r"^([A-Za-z0-9_.\[\]-]+)\s*>=\s*([0-9][0-9A-Za-z.]*)\s*(,.*)?$")


def lowest_pins(pyproject: Path = ROOT / "pyproject.toml") -> list[str]:
    project = tomllib.loads(pyproject.read_text())["project"]
    extras = project.get("optional-dependencies", {})
    specs = list(project["dependencies"]) + list(extras.get("sandbox", []))
    specs += [spec for spec in extras.get("dev", []) if re.split(r"[<>=!~ ]", spec)[0] in TEST_TOOLS]
    pins = []
    for spec in specs:
        match = _SPEC.match(spec)
        if match is None:
            raise SystemExit(f"lowest_deps: {spec!r} in pyproject.toml has no '>=' lower bound")
        # The bound must name a release that exists ("kubernetes>=30" would pin 30.0.0, never made).
        pins.append(f"{match.group(1)}=={match.group(2)}")
    return pins


if __name__ == "__main__":
    print("\n".join(lowest_pins()))
    sys.exit(0)
