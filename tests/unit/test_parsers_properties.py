"""Property tests: any text in gives a result or a clean error, never an exception.

Every parser here reads text a container or a kernel wrote (the probe's output comes from the
container's own ``sh``, which the container can replace). Strategies mix arbitrary Unicode with
text shaped like the real thing (``/proc/PID/status`` lines, probe tags, cgroup paths) so that the
interesting branches are reached, not only the early "not a probe" exit.
"""

from __future__ import annotations

import contextlib
import json
import re

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from pidmap.model import ProcessTable
from pidmap.procfs import (
    ScanFormatError,
    cgroup_container_id,
    cgroup_pod_uid,
    parse_cmdline,
    parse_ns_link,
    parse_scan,
    parse_stat_start_ticks,
    parse_status,
)
from pidmap.sources.kube import parse_exec_status
from pidmap.wording import escape
from tests.unit.recorded import load

settings.register_profile("pidmap", max_examples=200, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("pidmap")

HEX64 = st.text(alphabet="0123456789abcdef", min_size=64, max_size=64)
# Digits of every script (int() takes some, str.isdigit() more), signs, blanks and controls.
NUMBERISH = st.one_of(st.text(alphabet="0123456789²٣", min_size=1, max_size=6),
                      st.text(alphabet="0123456789-+ \t²٣\x00\x1b", max_size=12))
WORD = st.text(max_size=20)
LINE = st.one_of(WORD, NUMBERISH, st.text(alphabet=st.characters(codec="utf-8"), max_size=40))

RECORDED_PROBE: str = load()["container_probe"]
STATUS_KEYS = ["Name", "State", "PPid", "Uid", "NSpid", "Pid", "Tgid", ""]


@st.composite
def status_text(draw: st.DrawFn) -> str:
    lines = draw(st.lists(st.tuples(st.sampled_from(STATUS_KEYS), st.sampled_from([":", ":\t", "", "::"]),
                                    st.one_of(NUMBERISH, LINE)), max_size=10))
    return "\n".join(f"{key}{sep}{value}" for key, sep, value in lines)


@st.composite
def cgroup_text(draw: st.DrawFn) -> str:
    parts = st.one_of(HEX64, HEX64.map(lambda h: f"cri-containerd-{h}.scope"),
                      HEX64.map(lambda h: f"crio-conmon-{h}.scope"), HEX64.map(lambda h: f" {h}.x "),
                      st.just("kubepods"), st.just("pod12345678-1234-1234-1234-123456789abc"), WORD)
    lines = draw(st.lists(st.tuples(NUMBERISH, WORD, st.lists(parts, max_size=6)), max_size=6))
    return "\n".join(f"{h}:{ctl}:/" + "/".join(path) for h, ctl, path in lines)


PROBE_TAGS = ["P", "S", "N", "G", "T", "C", "self", "ns", "B", "U", "X", ""]


@st.composite
def probe_output(draw: st.DrawFn) -> str:
    """A probe report, well-formed or not: header and end kept or dropped, any tag, any value."""
    status_line = st.tuples(st.sampled_from(STATUS_KEYS), st.sampled_from([":\t", ":"]),
                            NUMBERISH).map("".join)
    value = st.one_of(NUMBERISH, LINE, status_line, cgroup_text(), st.just("pid:[4026531836]"),
                      st.tuples(NUMBERISH, st.just(" "), WORD).map("".join))
    body = draw(st.lists(st.tuples(st.sampled_from(PROBE_TAGS), value), max_size=30))
    # Mostly well-framed, so that the body is parsed; sometimes not, for the early exits.
    head = draw(st.sampled_from(["pidmap-probe 1"] * 6 + ["pidmap-probe", "", "garbage"]))
    tail = draw(st.sampled_from(["end"] * 6 + ["", "end\n", "en"]))
    return "\n".join([head, *(f"{tag} {value}" for tag, value in body), tail])


def _check_table(table: ProcessTable) -> None:
    for proc in table.processes:
        assert proc.pid >= 0 and proc.nspid and all(isinstance(p, int) for p in proc.nspid)
        assert proc.cgroup_id is None or re.fullmatch("[0-9a-f]{64}", proc.cgroup_id)


@given(st.one_of(status_text(), st.text()))
def test_status_gives_fields_or_none(text: str) -> None:
    fields = parse_status(text)
    assert fields is None or (fields.nspid and isinstance(fields.ppid, int))


@given(st.one_of(cgroup_text(), st.text()))
def test_cgroup_gives_an_id_or_none(text: str) -> None:
    found = cgroup_container_id(text)
    assert found is None or re.fullmatch("[0-9a-f]{64}", found)
    uid = cgroup_pod_uid(text)
    assert uid is None or len(uid) == 36


@given(HEX64, st.sampled_from(["/docker/{}", "/kubepods/besteffort/pod1/{}", "/x/cri-containerd-{}.scope",
                               "/x/crio-{}.scope", "/docker/{}/sub"]))
def test_cgroup_finds_the_id_in_every_layout(container_id: str, layout: str) -> None:
    assert cgroup_container_id("0::" + layout.format(container_id)) == container_id


@given(st.one_of(st.text(), st.integers(min_value=0).map(lambda n: f"pid:[{n}]")))
def test_ns_link_gives_an_inode_or_none(text: str) -> None:
    inode = parse_ns_link(text)
    assert inode is None or inode >= 0


@given(st.one_of(st.text(), st.lists(NUMBERISH, max_size=30).map(lambda f: "1 (a) b) " + " ".join(f))))
def test_stat_line_gives_ticks_or_none(text: str) -> None:
    ticks = parse_stat_start_ticks(text)
    assert ticks is None or isinstance(ticks, int)


@given(st.binary())
def test_cmdline_gives_text(raw: bytes) -> None:
    assert "\0" not in parse_cmdline(raw)


@given(st.one_of(probe_output(), st.text()))
@example("pidmap-probe 1\nself ²\nP ²\nS Name:\tx\nS PPid:\t0\nS NSpid:\t1\nU ² root\nend")
def test_probe_output_gives_a_table_or_a_scan_format_error(text: str) -> None:
    try:
        table = parse_scan(text)
    except ScanFormatError:
        return
    _check_table(table)


@given(st.lists(st.integers(min_value=0, max_value=400), max_size=20))
def test_a_recorded_probe_cut_or_mangled_anywhere_stays_clean(cuts: list[int]) -> None:
    text = RECORDED_PROBE
    for cut in cuts:
        text = text[:cut] + text[cut + 7:]
    with contextlib.suppress(ScanFormatError):
        _check_table(parse_scan(text))


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
                    | st.text(max_size=8)
                    | st.sampled_from(["Success", "Failure", "ExitCode", "42", "causes", "details"]),
                    lambda children: st.lists(children, max_size=4)
                    | st.dictionaries(st.sampled_from(["status", "message", "reason", "details", "causes"]),
                                      children, max_size=5), max_leaves=12)


@given(st.one_of(st.text(), JSON.map(json.dumps)))
def test_exec_status_gives_a_pair(text: str) -> None:
    code, message = parse_exec_status(text)
    assert code is None or isinstance(code, int)
    assert message is None or isinstance(message, str)


@given(st.text())
def test_escape_leaves_nothing_a_terminal_acts_on(text: str) -> None:
    safe = escape(text)
    assert not re.search("[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]", safe)
    assert escape(safe) == safe
