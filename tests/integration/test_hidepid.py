"""The host reader on a /proc mounted with ``hidepid=2``: a user sees only its own processes there.

A fresh procfs instance is mounted with the option (the host's /proc is left alone), then read by
pidmap's real scanner as root and as nobody. Ground truth: the same mount listed by the kernel.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from pidmap.sources import hostprocs

pytestmark = [pytest.mark.root]

SCAN = """
import json, sys
from pidmap.sources.hostprocs import scan_local
table = scan_local(sys.argv[1])
print(json.dumps({"uids": sorted({p.uid for p in table.processes}), "count": len(table.processes),
                  "notes": list(table.notes)}))
"""


@pytest.fixture
def hidden_proc() -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="pidmap-hidepid-"))
    root.chmod(0o755)
    subprocess.run(["mount", "-t", "proc", "-o", "hidepid=2", "proc", str(root)], check=True)
    try:
        yield root
    finally:
        subprocess.run(["umount", str(root)], check=False)
        root.rmdir()


def test_hidepid_proc_shows_a_user_only_its_own_processes_without_error(hidden_proc: Path) -> None:
    as_root = hostprocs.scan_local(str(hidden_proc))
    assert len(as_root.processes) > 10  # root is not hidden from
    result = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                             sys.executable, "-c", SCAN, str(hidden_proc)], capture_output=True, text=True,
                            check=False, cwd="/", env={"PYTHONPATH": str(Path(__file__).parents[2]),
                                                       "PATH": os.environ["PATH"]})
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    doc = json.loads(result.stdout)
    # Only nobody's processes (the scanner itself) are listed; nothing else, and no exception.
    assert doc["uids"] == [65534] and 1 <= doc["count"] < len(as_root.processes)
    assert any("hides other users' processes" in note for note in doc["notes"])
    assert not any("hides" in note for note in as_root.notes)
