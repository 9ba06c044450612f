"""Read pidmap's pictures back as graphs, with parsers that are not pidmap's: the tree by its drawing
(each line's parent is the nearest line above it drawn one level less deep), DOT by Graphviz itself
(``dot -Tjson``), Mermaid by its statements (the e2e tests use Mermaid's own parser:
tests/grid.py's mermaid_parse)."""

from __future__ import annotations

import json
import re
import subprocess
from dataclasses import dataclass, field

_BRANCH = re.compile(r"^((?:[│ ]  )*)[├└]─ (.*)$")


def tree_paths(text: str) -> list[list[str]]:
    """Each line of a ``-o tree`` picture with the lines above it on its branch: [root, ..., line]."""
    paths: list[list[str]] = []
    stack: list[str] = []
    lines = text.split("\n\nNOTES")[0].splitlines()
    stack = [lines[0]]
    paths.append(list(stack))
    for line in lines[1:]:
        match = _BRANCH.match(line)
        assert match, f"not a tree line: {line!r}"
        depth = len(match.group(1)) // 3 + 1
        stack = [*stack[:depth], match.group(2)]
        paths.append(list(stack))
    return paths


def tree_path_to(text: str, needle: str) -> list[str]:
    """The one branch whose last line holds ``needle``."""
    found = [path for path in tree_paths(text) if needle in path[-1]]
    assert len(found) == 1, (needle, found)
    return found[0]


@dataclass
class Graph:
    labels: dict[str, str] = field(default_factory=dict)  # box -> its label, line breaks as "\n"
    edges: set[tuple[str, str]] = field(default_factory=set)

    def box(self, needle: str) -> str:
        """The one box whose label holds ``needle``."""
        found = [name for name, label in self.labels.items() if needle in label]
        assert len(found) == 1, (needle, found, self.labels)
        return found[0]


def dot_graph(dot: str) -> Graph:
    """The boxes and edges Graphviz reads from a DOT text."""
    out = subprocess.run(["dot", "-Tjson"], input=dot, capture_output=True, text=True, check=True).stdout
    doc = json.loads(out)
    graph = Graph()
    names: dict[int, str] = {}
    for obj in doc.get("objects", []):
        if "nodes" in obj or str(obj.get("name", "")).startswith("cluster"):
            continue  # a cluster
        names[obj["_gvid"]] = obj["name"]
        graph.labels[obj["name"]] = str(obj.get("label", "")).replace("\\n", "\n")
    graph.edges = {(names[e["tail"]], names[e["head"]]) for e in doc.get("edges", [])}
    return graph


_MERMAID_BOX = re.compile(r'^\s*(\w+)\["([^"]*)"\]$')
_MERMAID_EDGE = re.compile(r"^\s*(\w+) --> (\w+)$")


def mermaid_graph(text: str) -> Graph:
    """The boxes and edges of a ``-o mermaid`` picture, statement by statement."""
    graph = Graph()
    for line in text.splitlines():
        if box := _MERMAID_BOX.match(line):
            graph.labels[box.group(1)] = box.group(2).replace("<br/>", "\n")
        elif edge := _MERMAID_EDGE.match(line):
            graph.edges.add((edge.group(1), edge.group(2)))
    return graph
