"""Certificates and kubeconfig entries of the sandbox, checked with openssl and kubectl."""

from __future__ import annotations

import json
import stat
import subprocess
from pathlib import Path

import pytest
import yaml

from pidmap.sandbox.cluster.certs import write_certificates
from pidmap.sandbox.cluster.kubeconfig import merge_context, remove_context
from pidmap.sandbox.cluster.layout import StatePaths


def _run(*argv: str, env: dict[str, str] | None = None) -> str:
    return subprocess.run(argv, capture_output=True, text=True, check=True, env=env).stdout


@pytest.mark.tool("openssl")  # the independent checker here
def test_certificates_verify_with_openssl(tmp_path: Path) -> None:
    paths = StatePaths(tmp_path / "state")
    write_certificates(paths)
    verified = _run("openssl", "verify", "-CAfile", str(paths.ca_cert), str(paths.server_cert))
    assert verified.strip().endswith(": OK")
    text = _run("openssl", "x509", "-in", str(paths.server_cert), "-noout", "-text")
    assert "IP Address:127.0.0.1" in text and "DNS:localhost" in text
    assert "TLS Web Server Authentication" in text
    assert stat.S_IMODE(paths.server_key.stat().st_mode) == 0o600
    # The key belongs to the certificate.
    cert_key = _run("openssl", "x509", "-in", str(paths.server_cert), "-noout", "-pubkey")
    key_pub = _run("openssl", "pkey", "-in", str(paths.server_key), "-pubout")
    assert cert_key == key_pub


def _kubectl_config(kubeconfig: Path, *args: str) -> str:
    return _run("kubectl", "--kubeconfig", str(kubeconfig), "config", *args)


def test_merge_and_remove_keep_everything_else(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "deep" / "dir" / "config"
    other = {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": "other",
        "clusters": [{"name": "other", "cluster": {"server": "https://10.0.0.1:6443"}}],
        "users": [{"name": "other", "user": {"token": "t0"}}],
        "contexts": [{"name": "other", "context": {"cluster": "other", "user": "other", "namespace": "x"}}],
        "preferences": {"colors": True},
    }
    kubeconfig.parent.mkdir(parents=True)
    kubeconfig.write_text(yaml.safe_dump(other))

    merge_context(kubeconfig, context="kind-pb", server="https://127.0.0.1:1234", ca_pem=b"PEM", token="tok")
    merge_context(kubeconfig, context="kind-pb", server="https://127.0.0.1:5678", ca_pem=b"PEM", token="tok2")
    assert _kubectl_config(kubeconfig, "current-context").strip() == "kind-pb"
    assert sorted(_kubectl_config(kubeconfig, "get-contexts", "-o", "name").split()) == ["kind-pb", "other"]
    view = json.loads(_kubectl_config(kubeconfig, "view", "--raw", "-o", "json", "--minify"))
    assert view["clusters"][0]["cluster"]["server"] == "https://127.0.0.1:5678"
    assert view["users"][0]["user"]["token"] == "tok2"
    assert stat.S_IMODE(kubeconfig.stat().st_mode) == 0o600

    remove_context(kubeconfig, "kind-pb")
    left = yaml.safe_load(kubeconfig.read_text())
    assert left["current-context"] == ""
    assert [c["name"] for c in left["contexts"]] == ["other"]
    assert left["contexts"][0]["context"]["namespace"] == "x" and left["preferences"] == {"colors": True}
    assert _kubectl_config(kubeconfig, "get-clusters").split()[1:] == ["other"]


def test_merge_creates_a_missing_file_and_remove_tolerates_one(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "new" / "config"
    merge_context(kubeconfig, context="pb", server="https://127.0.0.1:1", ca_pem=b"x", token="t")
    assert stat.S_IMODE(kubeconfig.parent.stat().st_mode) == 0o700
    assert _kubectl_config(kubeconfig, "current-context").strip() == "pb"
    remove_context(tmp_path / "absent", "pb")
    assert not (tmp_path / "absent").exists()
