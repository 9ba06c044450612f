"""docs/faults.md stays true: every row names a test, and every test it names exists."""

from __future__ import annotations

import re
from pathlib import Path

from pidmap.errors import ExitStatus

ROOT = Path(__file__).resolve().parents[2]
TABLE = ROOT / "docs" / "faults.md"


def _rows() -> list[list[str]]:
    rows = []
    for line in TABLE.read_text().splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if line.startswith("|") and len(cells) == 4 and cells[0] not in ("fault", "---"):
            rows.append(cells)
    return rows


def test_every_fault_row_names_tests_that_exist() -> None:
    rows = _rows()
    assert len(rows) >= 15
    codes = {str(int(status)) for status in ExitStatus}
    for fault, _what, exit_code, tests in rows:
        assert set(re.findall(r"\d+", exit_code)) <= codes, fault  # documented exit codes only
        named = re.findall(r"`([^`]+)`", tests)
        assert named, f"no test named for: {fault}"
        for ref in named:
            if ref.startswith("["):  # another parameter of the previous test
                continue
            file, _, name = ref.partition("::")
            path = ROOT / "tests" / file
            assert path.is_file(), ref
            if name:
                function = name.split("[")[0]
                assert re.search(rf"^def {re.escape(function)}\(", path.read_text(), re.M), ref
