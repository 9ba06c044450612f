"""The exec status (channel 3) and target validation — shapes from REFERENCE.md / the Python client."""

from __future__ import annotations

import json

import pytest

from pidmap.errors import UsageError
from pidmap.model import Target
from pidmap.sources.kube import _probe_result, parse_exec_status, validate_target
from tests.unit.recorded import load

PROBE_OUTPUT = load()["container_probe"]
SUCCESS = '{"metadata":{},"status":"Success"}'
EXIT_3 = json.dumps({"metadata": {}, "status": "Failure",
                     "message": "command terminated with non-zero exit code: 3", "reason": "NonZeroExitCode",
                     "details": {"causes": [{"reason": "ExitCode", "message": "3"}]}})
# What a runtime reports when the binary is missing: a Failure without an exit code (issue 1840).
NO_SH = json.dumps({"metadata": {}, "status": "Failure", "reason": "InternalError",
                    "message": 'failed to exec in container: exec: "sh": executable file not found in $PATH'})
NOT_RUNNING = json.dumps({"metadata": {}, "status": "Failure", "reason": "BadRequest",
                          "message": "container not running (abc)"})


def test_parse_exec_status() -> None:
    assert parse_exec_status(SUCCESS) == (0, None)
    assert parse_exec_status(EXIT_3) == (3, "command terminated with non-zero exit code: 3")
    assert parse_exec_status(NO_SH)[0] is None
    assert parse_exec_status("") == (None, None)


def test_probe_result_success_parses_table() -> None:
    result = _probe_result("app", PROBE_OUTPUT, "", SUCCESS)
    assert result.error is None and result.table is not None
    assert {p.pid for p in result.table.processes} == {1, 2}


def test_probe_result_without_shell_is_flagged() -> None:
    result = _probe_result("app", "", "", NO_SH)
    assert result.no_shell and result.table is None and "no shell" in (result.error or "")
    assert _probe_result("app", "", "sh: not found", EXIT_3.replace('"3"', '"127"')).no_shell


def test_probe_result_other_failures_are_notes() -> None:
    assert "not running" in (_probe_result("app", "", "", NOT_RUNNING).error or "")
    assert "without a status" in (_probe_result("app", "", "", "").error or "")
    assert "probe failed" in (_probe_result("app", "garbage", "", EXIT_3).error or "")


@pytest.mark.parametrize(("pod", "namespace", "container"), [
    ("kubia;ls", "default", None), ("kubia", "default;x", None), ("kubia", "default", "c$(x)"),
    ("Kubia", "default", None), ("kubia..x", "default", None),
])
def test_validate_target_rejects(pod: str, namespace: str, container: str | None) -> None:
    with pytest.raises(UsageError):
        validate_target(Target(namespace=namespace, pod=pod, container=container))


def test_validate_target_accepts_dns_names() -> None:
    validate_target(Target(namespace="kube-system", pod="coredns-5d78c9869d-x7k2p.a", container="dns-1"))
