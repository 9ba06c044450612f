"""Kubernetes objects as plain JSON dicts: the sandbox's version strings, well-known names and
timestamps (RFC 3339, and the ages kubectl prints)."""

from __future__ import annotations

import datetime
from typing import Any

Obj = dict[str, Any]

KUBE_VERSION = "v1.32.2"
CONTAINER_RUNTIME = "containerd://1.7.24"
DEFAULT_NAMESPACES = ("default", "kube-node-lease", "kube-public", "kube-system")
DEFAULT_CONTAINER_ANNOTATION = "kubectl.kubernetes.io/default-container"
CONTROL_PLANE_LABEL = "node-role.kubernetes.io/control-plane"


def now_utc() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def timestamp(moment: datetime.datetime) -> str:
    """RFC 3339 with second precision and a Z, as metav1.Time marshals."""
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_timestamp(text: str | None) -> datetime.datetime | None:
    if not text:
        return None
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))


def human_duration(seconds_total: float) -> str:
    """apimachinery ``duration.HumanDuration``: what kubectl prints in AGE."""
    seconds = int(seconds_total)
    if seconds < -1:
        return "<invalid>"
    if seconds < 0:
        return "0s"
    if seconds < 60 * 2:
        return f"{seconds}s"
    minutes = seconds // 60
    if minutes < 10:
        rest = seconds % 60
        return f"{minutes}m" if rest == 0 else f"{minutes}m{rest}s"
    if minutes < 60 * 3:
        return f"{minutes}m"
    hours = minutes // 60
    if hours < 8:
        rest = minutes % 60
        return f"{hours}h" if rest == 0 else f"{hours}h{rest}m"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        rest = hours % 24
        return f"{hours // 24}d" if rest == 0 else f"{hours // 24}d{rest}h"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        days = (hours // 24) % 365
        return f"{hours // 24 // 365}y" if days == 0 else f"{hours // 24 // 365}y{days}d"
    return f"{hours // 24 // 365}y"


def since(text: str | None, now: datetime.datetime) -> str:
    moment = parse_timestamp(text)
    if moment is None:
        return "<unknown>"
    return human_duration((now - moment).total_seconds())
