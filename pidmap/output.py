"""Pure: the one output switch — ``-o`` → which renderer, for one pod or for many.

    PodMap(s) ─┬─ table, wide ─── render.render_text ──┐
               ├─ tree, dot, mermaid ─ picture ────────┼─ human text: wording.escape_lines
               └─ json, yaml ─── render.to_document ───┘   (the document keeps exact text)

``render`` and ``picture`` share their words through ``pidmap.wording`` and never import each
other (an import-linter contract in pyproject.toml says so). Every human text passes a last
``escape_lines`` here: each cell was escaped where it was laid out, so this changes nothing unless a
renderer let a text through raw, and then no control character reaches the terminal either.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Literal

import yaml

from pidmap.model import PodMap
from pidmap.picture import render_picture
from pidmap.render import render_text, to_document
from pidmap.wording import escape_lines

Output = Literal["table", "wide", "json", "yaml", "tree", "dot", "mermaid"]
OUTPUTS: tuple[Output, ...] = ("table", "wide", "json", "yaml", "tree", "dot", "mermaid")


def dump(document: Any, output: Literal["json", "yaml"]) -> str:
    """JSON or YAML text of a document; both encoders write control characters as escapes."""
    if output == "json":
        return json.dumps(document, indent=2)
    return yaml.safe_dump(document, sort_keys=False).rstrip("\n")


def render(result: PodMap, output: Output) -> str:
    """One pod in the asked-for output."""
    if output in ("json", "yaml"):
        return dump(to_document(result), output)
    if output in ("tree", "dot", "mermaid"):
        return escape_lines(render_picture([result], output))
    return escape_lines(render_text(result, wide=output == "wide"))


def render_maps(maps: Sequence[PodMap], output: Output) -> str:
    """Several pods (``pidmap node``, ``show --all``): one picture, one JSON list, or tables."""
    if output in ("json", "yaml"):
        return dump([to_document(m) for m in maps], output)
    if output in ("tree", "dot", "mermaid"):
        return escape_lines(render_picture(maps, output))
    return "\n\n".join(render(m, output) for m in maps) or "no pods"
