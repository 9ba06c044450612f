"""Only the paths that talk to the API import the Kubernetes client: a host PID in no node needs
neither an API call nor the import (checked with the interpreter's own -X importtime)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.unit.test_startup import imported_modules

pytestmark = [pytest.mark.docker, pytest.mark.root]


def test_whois_of_a_host_process_needs_no_kubernetes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # No kubeconfig at all: had whois wanted the API, it would have failed with a config error.
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "none"))
    modules = imported_modules("whois", str(os.getpid()))
    assert "docker" in modules  # it did look for node containers
    assert not [m for m in modules if m == "kubernetes" or m.startswith("kubernetes.")]
