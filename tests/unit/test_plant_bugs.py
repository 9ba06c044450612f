"""scripts/plant_bugs.py does not rot: each planted bug's patch matches the current source exactly
once and gives source that still compiles; the selections it runs exist."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("plant_bugs", ROOT / "scripts" / "plant_bugs.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["plant_bugs"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


PLANT_BUGS = _script()


@pytest.mark.parametrize("plant", PLANT_BUGS.PLANTS, ids=lambda p: p.name)
def test_each_patch_applies_once_and_compiles(plant: object) -> None:
    source = (ROOT / plant.path).read_text()  # type: ignore[attr-defined]
    changed = PLANT_BUGS.planted(source, plant)
    assert changed != source and "PLANTED" in changed
    compile(changed, plant.path, "exec")  # type: ignore[attr-defined]


def test_a_patch_that_no_longer_matches_is_an_error() -> None:
    plant = PLANT_BUGS.PLANTS[0]
    with pytest.raises(ValueError, match="matches 0 times"):
        PLANT_BUGS.planted("nothing here\n", plant)


def test_the_selections_exist() -> None:
    for test in [*PLANT_BUGS.UNIT, *PLANT_BUGS.E2E]:
        path, _, name = test.partition("::")
        assert (ROOT / path).is_file(), path
        assert not name or f"def {name}(" in (ROOT / path).read_text(), test
