"""The markers mean something: a missing need fails the test, and under CI=true a skip fails too.

Each check runs a real pytest in a subprocess with the project's conftest, on the machine as it is
except for the one thing taken away (graphviz's `dot` off PATH), and reads its outcome.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT

PLAIN_SKIP = '''
import pytest

def test_skips():
    pytest.skip("nothing to see")
'''


def pytest_run(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:randomly", *args], cwd=ROOT,
                          capture_output=True, text=True, env=env, timeout=120, check=False)


def test_without_graphviz_the_picture_test_fails_not_skips(tmp_path: Path) -> None:
    bindir = tmp_path / "bin"  # a PATH with no dot on it
    bindir.mkdir()
    env = {**os.environ, "PATH": str(bindir)}
    result = pytest_run("tests/unit/test_picture.py", "-k", "dot_renders", env=env)
    assert result.returncode == 1, result.stdout
    assert "dot is not on PATH" in result.stdout
    assert "skipped" not in result.stdout.splitlines()[-1]
    # The positive control: with dot on PATH the same tests pass.
    assert pytest_run("tests/unit/test_picture.py", "-k", "dot_renders",
                      env=dict(os.environ)).returncode == 0


def test_a_skip_fails_under_ci_and_is_a_skip_elsewhere(tmp_path: Path) -> None:
    test_file = tmp_path / "test_plain_skip.py"
    test_file.write_text(PLAIN_SKIP)
    args = ("-p", "tests.conftest", "--rootdir", str(ROOT), str(test_file))
    in_ci = pytest_run(*args, env={**os.environ, "CI": "true"})
    assert in_ci.returncode == 1 and "skipped under CI=true" in in_ci.stdout, in_ci.stdout
    outside = pytest_run(*args, env={k: v for k, v in os.environ.items() if k != "CI"})
    assert outside.returncode == 0 and "1 skipped" in outside.stdout, outside.stdout


def test_an_unregistered_marker_is_an_error(tmp_path: Path) -> None:
    test_file = tmp_path / "test_typo_marker.py"
    test_file.write_text("import pytest\n\n@pytest.mark.sandbx\ndef test_x():\n    pass\n")
    result = pytest_run("--rootdir", str(ROOT), "-c", str(ROOT / "pyproject.toml"), str(test_file),
                        env=dict(os.environ))
    assert result.returncode != 0 and "sandbx" in result.stdout + result.stderr
