"""Patches: RFC 7386 JSON merge patch (kubectl label / annotate) and the strategic merge patch
kubectl apply and kubectl debug send on pods (maps merge, named lists merge by name)."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from pidmap.sandbox.api.meta import Obj


def _merge_map(target: Any, patch: Obj, merge: Callable[[Any, Any], Any]) -> Obj:
    """The branch both patches share: ``patch``'s keys merged into a copy of ``target`` (a map or
    nothing) with ``merge``; null removes a key, ``$`` directives ($patch, $retainKeys, ...) are not data."""
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if key.startswith("$"):
            continue
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge(result.get(key), value)
    return result


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch; strategic merge patch reduces to it for maps."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    return _merge_map(target, patch, merge_patch)


def strategic_merge(target: Any, patch: Any) -> Any:
    """Strategic merge for what kubectl apply sends on pods: maps merge, named lists merge by name."""
    if isinstance(patch, dict):
        if patch.get("$patch") == "replace":
            return {k: v for k, v in patch.items() if k != "$patch"}
        return _merge_map(target, patch, strategic_merge)
    if (
        isinstance(patch, list)
        and isinstance(target, list)
        and all(isinstance(item, dict) and "name" in item for item in [*patch, *target])
    ):
        merged = {item["name"]: copy.deepcopy(item) for item in target}
        order = [item["name"] for item in target]
        for item in patch:
            if item.get("$patch") == "delete":
                merged.pop(item["name"], None)
                continue
            if item["name"] not in merged:
                order.append(item["name"])
            merged[item["name"]] = strategic_merge(merged.get(item["name"]), item)
        return [merged[name] for name in order if name in merged]
    return copy.deepcopy(patch)
