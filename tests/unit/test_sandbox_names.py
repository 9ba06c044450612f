"""Sandbox names become directories that `pidmap sandbox down` deletes: only DNS-1123 labels pass."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from pidmap.sandbox.cluster import layout

BAD = ["/", "..", ".", "", "a/b", "../x", "UPPER", "-lead", "trail-", "a b", "x;rm -rf /", "a" * 51]


@pytest.mark.parametrize("name", BAD)
def test_bad_names_never_make_a_state_dir(name: str) -> None:
    with pytest.raises(ValueError, match="invalid sandbox name"):
        layout.state_dir(name)


@pytest.mark.parametrize("name", ["learn-k8s", "pidmap-test", "a", "k3", "a" * 50])
def test_good_names_stay_under_the_root(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIDMAP_SANDBOX_HOME", str(tmp_path))
    path = layout.state_dir(name)
    assert path.parent == tmp_path
    assert layout.is_state_dir(path)


def test_is_state_dir_refuses_everything_else(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIDMAP_SANDBOX_HOME", str(tmp_path / "root"))
    for path in (Path("/"), tmp_path, tmp_path / "root", tmp_path / "root" / "a" / "b", Path.home()):
        assert not layout.is_state_dir(path), path


@pytest.mark.parametrize("command", ["down", "status", "up"])
@pytest.mark.parametrize("name", ["/", "..", ""])
def test_cli_refuses_bad_names_with_usage_error(command: str, name: str, tmp_path: Path) -> None:
    # A file beside the sandboxes' root proves nothing around it was deleted.
    keep = tmp_path / "keep"
    keep.write_text("still here")
    env = {"PIDMAP_SANDBOX_HOME": str(tmp_path / "home"), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    result = subprocess.run([sys.executable, "-m", "pidmap", "sandbox", command, "--name", name],
                            capture_output=True, text=True, env=env, timeout=60, check=False)
    assert result.returncode == 2, result.stderr
    assert "invalid sandbox name" in result.stderr
    assert "Traceback" not in result.stderr
    assert keep.read_text() == "still here"


def test_a_kind_config_name_is_checked_too(tmp_path: Path) -> None:
    config = tmp_path / "kind-config.yaml"
    config.write_text("kind: Cluster\napiVersion: kind.x-k8s.io/v1alpha4\nname: ../evil\n"
                      "nodes:\n- role: control-plane\n")
    env = {"PIDMAP_SANDBOX_HOME": str(tmp_path / "home"), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    result = subprocess.run([sys.executable, "-m", "pidmap", "sandbox", "up", "--config", str(config)],
                            capture_output=True, text=True, env=env, timeout=60, check=False)
    assert result.returncode == 10, result.stderr
    assert "invalid sandbox name '../evil'" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "evil").exists() and not (tmp_path / "home").exists()
