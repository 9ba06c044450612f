"""Terminal safety: text from containers reaches no terminal raw, in any human output; JSON/YAML keep it.

The hostile command line is the recorded sidecar pod's (``pidmap show sidecar`` replayed from a raw
recording, tests/unit/recorded_node.py) with its commands replaced: what a container can put in its argv.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from pidmap.errors import ExitStatus
from pidmap.model import PodMap
from pidmap.output import OUTPUTS, Output, render, render_maps
from pidmap.watch import diff, frame_text, run
from pidmap.wording import escape, escape_lines, short, state_text
from tests.unit.test_picture import sidecar

# ESC ] 0 ; title BEL sets the terminal's title; CSI 2 J clears it; U+202E reverses what follows.
HOSTILE = "sleep \x1b]0;PWNED\x07 \x1b[2J \u202eevil\u202c \u2066x\u2069 \u200e\u200f \x9b31m \x7f end"
# Every code point a terminal or a bidi algorithm acts on; none may appear in human output.
UNSAFE = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u206f\ufeff]")
# Structure-breaking text for the pictures: closes a DOT string or a Mermaid label, adds a node.
BREAKOUT = 'x"]; evil [label="y"]; p0 -> evil; "\n end\nsubgraph z["w'


def _hostile(pmap: PodMap, command: str = HOSTILE) -> PodMap:
    containers = tuple(
        replace(cmap, processes=tuple(replace(p, command=command, user=f"u\x1b[31m{i}") for i, p in
                                      enumerate(cmap.processes)),
                notes=(f"{cmap.container.name}: note with {command}",))
        for cmap in pmap.containers)
    return replace(pmap, containers=containers)


def test_escape_writes_controls_and_direction_overrides_as_ps_does() -> None:
    assert escape("a\x1b]0;t\x07b") == "a\\x1b]0;t\\x07b"
    assert escape("\u202eabc\u2066\u2069\u200e\u200f") == "\\u202eabc\\u2066\\u2069\\u200e\\u200f"
    assert escape("\x9b\x7f\x00\t\n") == "\\x9b\\x7f\\x00\\x09\\x0a"
    assert escape("\U000e0001") == "\\U000e0001"  # a tag character (Cf) outside the BMP


@pytest.mark.parametrize("text", ["node app.js", "sh -c 'printf \"%s\\n\" x'", "café 日本語 ✓ 🙂",
                                  "└─ PID 1 · node 2", "a\u00a0b"])
def test_escape_leaves_printable_text_alone(text: str) -> None:
    assert escape(text) == text


def test_escaping_is_idempotent_and_cuts_never_split_an_escape() -> None:
    once = escape(HOSTILE)
    assert escape(once) == once and not UNSAFE.search(once)
    assert short("\x1b" * 30, 20) == "\\x1b" * 4 + "..."
    assert short("ab\u202e" * 10, 12) == "ab\\u202ea..."
    assert short("plain text that is long", 10) == "plain t..."
    assert escape_lines("a\x1b\nb") == "a\\x1b\nb"


def test_state_reason_from_the_cluster_is_escaped() -> None:
    cmap = sidecar().containers[0]
    waiting = replace(cmap.container, state="waiting", reason="Crash\x1b[2JLoop")
    assert state_text(waiting) == "waiting (Crash\\x1b[2JLoop)"


@pytest.mark.parametrize("output", [o for o in OUTPUTS if o not in ("json", "yaml")])
def test_no_human_output_carries_a_control_or_bidi_character(output: Output) -> None:
    pmap = _hostile(sidecar())
    for text in (render(pmap, output), render_maps([pmap, pmap], output)):
        assert not UNSAFE.search(text.replace("\n", "")), output
        assert "PWNED" in text  # shown, escaped: not dropped


@pytest.mark.parametrize("output", ["json", "yaml"])
def test_json_and_yaml_keep_the_exact_command_line(output: Output) -> None:
    pmap = _hostile(sidecar())
    text = render(pmap, output)
    # Both encoders write the characters as escapes; decoding gives the exact text back.
    assert not UNSAFE.search(text.replace("\n", ""))
    doc = json.loads(text) if output == "json" else yaml.safe_load(text)
    commands = [p["command"] for c in doc["containers"] for p in c["processes"]]
    assert commands and all(command == HOSTILE for command in commands)


def test_watch_frames_escape_changes_and_the_map() -> None:
    before = sidecar()
    after = _hostile(before)
    frames = list(run(iter([before, after]).__next__, interval=0, count=2, sleep=lambda _s: None))
    assert diff(before, after) == [] or frames[1].changes is not None
    text = frame_text(frames[1], pod_label="default/sidecar", interval=2)
    assert "PWNED" in text and not UNSAFE.search(text.replace("\n", ""))


@pytest.mark.skipif(shutil.which("dot") is None, reason="graphviz missing: scripts/setup.sh installs it")
def test_a_command_line_cannot_change_the_dot_picture() -> None:
    plain = sidecar()
    hostile = _hostile(plain, BREAKOUT + HOSTILE)

    def graph(pmap: PodMap) -> tuple[int, int, int]:
        dot = render(pmap, "dot")
        out = subprocess.run(["dot", "-Tjson"], input=dot, capture_output=True, text=True, check=True).stdout
        doc = json.loads(out)
        objects = doc.get("objects", [])
        clusters = sum(1 for o in objects if str(o.get("name", "")).startswith("cluster"))
        return len(objects) - clusters, clusters, len(doc.get("edges", []))

    assert graph(hostile) == graph(plain)
    assert "evil" in render(hostile, "dot")  # the text is in a label, not in the graph


def test_a_command_line_cannot_change_the_mermaid_picture() -> None:
    plain = render(sidecar(), "mermaid")
    hostile_text = render(_hostile(sidecar(), BREAKOUT + HOSTILE + " %%{init: {}}%%"), "mermaid")
    # The hostile containers' notes are comments at the end, one line each, starting no directive.
    notes = [line for line in hostile_text.splitlines() if line.lstrip().startswith("%%")]
    assert len(notes) == 2 and all(line.startswith("  %% note: ") and "evil" in line for line in notes)
    assert "%%{" not in hostile_text and "%" not in "".join(notes).replace("  %% ", "")
    hostile = "\n".join(line for line in hostile_text.splitlines() if line not in notes)
    assert len(hostile.splitlines()) == len(plain.splitlines())
    # Line by line the same statements: only label texts differ.
    shape = re.compile(r'\["[^"\n]*"\]')
    for mine, theirs in zip(hostile.splitlines(), plain.splitlines(), strict=True):
        assert shape.sub("[]", mine) == shape.sub("[]", theirs)
    # Without pidmap's own line breaks and the entities it wrote, no label holds HTML or markdown.
    labels = [re.sub(r"<br/>|#\w+;", "", label) for label in re.findall(r'\["([^"]*)"\]', hostile)]
    assert any("evil" in label for label in labels)
    assert not any(ch in label for label in labels for ch in "<>&;`\\")


def test_error_lines_are_escaped(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from pidmap.cli import main

    # A kubeconfig path is user text that the error quotes: it reaches stderr escaped.
    result = CliRunner().invoke(main, ["show", "kubia", "--kubeconfig", f"{tmp_path}/no\x1b]0;x\x07.yaml"])
    assert result.exit_code == ExitStatus.CONFIG, result.output
    assert "\\x1b]0;x\\x07" in result.output and "\x1b" not in result.output


def test_whois_answer_is_escaped_in_its_table_and_exact_in_json() -> None:
    from pidmap import whois
    from tests.unit.test_whois import _nodes, _pods, _subjects, _table

    answers = [whois.identify(s, _nodes(), _pods(), _table()) for s in _subjects()]
    answer = replace(next(a for a in answers if a.kind == "container"), command=HOSTILE)
    text = whois.render(answer, "table")
    assert "PWNED" in text and not UNSAFE.search(text.replace("\n", ""))
    assert json.loads(whois.render(answer, "json"))["command"] == HOSTILE
