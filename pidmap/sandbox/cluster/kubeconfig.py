"""Add and remove the sandbox's entry in a kubeconfig, the way kind does.

kind names the cluster, the user and the context all ``kind-NAME`` and makes the context current;
``kind delete cluster`` removes the three entries and clears ``current-context`` if it pointed there.
Everything else in the file is kept as it was.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Any

import yaml


def _load(kubeconfig: Path) -> dict[str, Any]:
    if not kubeconfig.exists():
        return {}
    loaded = yaml.safe_load(kubeconfig.read_text()) or {}
    if not isinstance(loaded, dict):
        raise ValueError(f"{kubeconfig} is not a kubeconfig (top level is not a mapping)")
    return loaded


def _save(kubeconfig: Path, config: dict[str, Any]) -> None:
    kubeconfig.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = kubeconfig.with_name(f".{kubeconfig.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        yaml.safe_dump(config, handle, default_flow_style=False, sort_keys=False)
    tmp.replace(kubeconfig)


def _without(entries: Any, name: str) -> list[Any]:
    return [entry for entry in (entries or []) if not (isinstance(entry, dict) and entry.get("name") == name)]


def merge_context(kubeconfig: Path, *, context: str, server: str, ca_pem: bytes, token: str) -> None:
    """Add or replace cluster, user and context named ``context`` and make it the current one."""
    config = _load(kubeconfig)
    config.setdefault("apiVersion", "v1")
    config.setdefault("kind", "Config")
    config.setdefault("preferences", {})
    config["clusters"] = [
        *_without(config.get("clusters"), context),
        {
            "name": context,
            "cluster": {
                "server": server,
                "certificate-authority-data": base64.b64encode(ca_pem).decode("ascii"),
            },
        },
    ]
    config["users"] = [*_without(config.get("users"), context), {"name": context, "user": {"token": token}}]
    config["contexts"] = [
        *_without(config.get("contexts"), context),
        {
            "name": context,
            "context": {"cluster": context, "user": context},
        },
    ]
    config["current-context"] = context
    _save(kubeconfig, config)


def remove_context(kubeconfig: Path, context: str) -> None:
    """Remove the cluster, user and context named ``context``; a missing file is left missing."""
    if not kubeconfig.exists():
        return
    config = _load(kubeconfig)
    for key in ("clusters", "users", "contexts"):
        if key in config:
            config[key] = _without(config[key], context)
    if config.get("current-context") == context:
        config["current-context"] = ""
    _save(kubeconfig, config)
