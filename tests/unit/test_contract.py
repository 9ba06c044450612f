"""The JSON/YAML document's keys are a contract for scripts: pinned here."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest
import yaml

from pidmap.correlate import correlate
from pidmap.model import PodMap, ProbeResult
from pidmap.output import render
from pidmap.procfs import parse_scan
from tests.unit.recorded import load, local_view, node, pod

DOC = load()

TOP_KEYS = {"namespace", "pod", "phase", "node", "containers", "notes"}
NODE_KEYS = {"name", "provider", "container_id", "host_pid"}
CONTAINER_KEYS = {"name", "type", "container_id", "state", "restart_count", "pid_namespace", "processes"}
PROCESS_KEYS = {"container_pid", "node_pid", "host_pid", "ppid", "user", "state", "command"}


def _result() -> PodMap:
    probes = {"app": ProbeResult(table=parse_scan(DOC["container_probe"]))}
    return correlate(pod(DOC), node(DOC), probes, local_view(DOC, drop={DOC["truth"]["node_host_pid"]}))


def _check(doc: dict[str, Any]) -> None:
    assert doc.keys() >= TOP_KEYS
    assert doc["node"].keys() >= NODE_KEYS
    assert doc["containers"]
    for container in doc["containers"]:
        assert container.keys() >= CONTAINER_KEYS
        assert container["type"] in ("init", "app", "ephemeral")
        for proc in container["processes"]:
            assert proc.keys() >= PROCESS_KEYS
            for key in ("container_pid", "node_pid", "host_pid", "ppid"):
                assert proc[key] is None or isinstance(proc[key], int)
    assert isinstance(doc["notes"], list)


def test_json_keys() -> None:
    doc = json.loads(render(_result(), "json"))
    _check(doc)
    assert doc["node"]["host_pid"] == DOC["truth"]["node_host_pid"]
    assert doc["containers"][0]["processes"][0]["container_pid"] == 1
    assert doc["sandbox"] is None  # only a shareProcessNamespace pod has a pause row


def _check_against_recorded_kernel(doc: dict[str, Any]) -> int:
    """Every PID of the document against the recorded NSpid lines (the kernel's, not pidmap's)."""
    truth = DOC["truth"]
    assert doc["node"]["host_pid"] == truth["node_host_pid"]
    assert doc["node"]["container_id"] == truth["node_id"]
    checked = 0
    for container in doc["containers"]:
        assert container["container_id"] == truth["container_id"]
        for proc in container["processes"]:
            chain = truth["nspid"][str(proc["host_pid"])]
            assert chain[:3] == [proc["host_pid"], proc["node_pid"], proc["container_pid"]], proc
            checked += 1
    return checked


@pytest.mark.parametrize("fmt", ["json", "yaml"])
def test_every_pid_of_the_document_is_the_kernels(fmt: str) -> None:
    # The YAML is read by yaml.safe_load and checked on its own, not against the JSON.
    text = render(_result(), "json") if fmt == "json" else render(_result(), "yaml")
    doc = json.loads(text) if fmt == "json" else yaml.safe_load(text)
    _check(doc)
    # The recording's container processes (its node init is no container's), every one of them.
    recorded = {int(pid) for pid, chain in DOC["truth"]["nspid"].items() if len(chain) >= 3}
    assert {p["host_pid"] for c in doc["containers"] for p in c["processes"]} == recorded
    assert _check_against_recorded_kernel(doc) == len(recorded)


def test_unseen_pid_is_null() -> None:
    probes = {"app": ProbeResult(table=parse_scan(DOC["container_probe"]))}
    result = correlate(pod(DOC), None, probes, None)
    doc = json.loads(render(result, "json"))
    procs = doc["containers"][0]["processes"]
    assert procs and all(p["host_pid"] is None and p["node_pid"] is None for p in procs)
    assert doc["node"]["provider"] is None


def test_table_marks_pid1_and_wide_adds_columns() -> None:
    result = _result()
    table = render(result, "table")
    wide = render(result, "wide")
    assert "1*" in table and "* = PID 1" in table
    assert "START" not in table and "START" in wide and "pid-ns:" in wide
    # The cgroup's container ID is shown only where it differs from the one the API reported.
    cmap = result.containers[0]
    assert ("cgroup-id:" in wide) == (cmap.cgroup_id != cmap.container.container_id)
    other = replace(result, containers=(replace(cmap, cgroup_id="f" * 64),))
    assert f"cgroup-id: {'f' * 64}" in render(other, "wide")
