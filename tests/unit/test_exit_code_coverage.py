"""Every exit code in the README's table is produced by a test, through the CLI (a `pidmap`
subprocess), that asserts the code, the one `error:` line, the `hint:` line and no traceback.

PRODUCED_BY names those tests; the checks below fail when the README gains a code no test
produces, when a named test is renamed or removed (it must exist, be collected, and name the code
it asserts), or when ExitStatus and the README disagree.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

from pidmap.errors import ExitStatus

ROOT = Path(__file__).resolve().parents[2]

# code -> tests ("FILE::FUNCTION" under tests/) that produce it through the CLI.
PRODUCED_BY: dict[int, list[str]] = {
    0: ["e2e/test_no_docker.py::test_watch_maps_without_docker"],
    1: ["e2e/test_exit_codes_offline.py::test_a_bug_is_exit_1_in_one_line_and_debug_shows_the_traceback"],
    2: ["e2e/test_exit_codes_offline.py::test_misuses_are_usage_errors_2",  # --level node without --node
        "e2e/test_show_errors_offline.py::test_usage_errors_come_before_any_kubeconfig_load",
        "e2e/test_show_errors_offline.py::test_command_line_mistakes_read_like_every_other_error"],
    3: ["e2e/test_show_errors.py::test_pod_not_found",
        "e2e/test_show_errors.py::test_namespace_not_found",
        "e2e/test_show_errors.py::test_container_not_found",
        "e2e/test_exit_codes.py::test_node_not_in_the_cluster_is_3",
        "e2e/test_exit_codes.py::test_whois_at_node_level_on_an_unknown_node_is_3",
        "e2e/test_whois_node_watch_picture.py::test_whois_unknown_pid_is_one_line_error"],
    4: ["e2e/test_show_errors_offline.py::test_no_kubeconfig",
        "e2e/test_show_errors_offline.py::test_unknown_context"],
    5: ["e2e/test_exit_codes_offline.py::test_tls_failure_is_unreachable_5",
        "e2e/test_show_errors_offline.py::test_api_unreachable"],
    6: ["e2e/test_show_errors.py::test_wrong_token",  # 401
        "e2e/test_show_errors.py::test_exec_forbidden",  # 403 on pods/exec
        "e2e/test_exit_codes.py::test_reading_pods_forbidden_is_6"],  # 403 on get/list/watch pods
    7: ["e2e/test_show_errors.py::test_docker_engine_down_with_via_docker",
        "e2e/test_exit_codes.py::test_node_that_is_no_docker_container_with_via_docker_is_7",
        "e2e/test_exit_codes.py::test_node_of_the_cluster_that_is_no_container_here_is_7",
        "e2e/test_no_docker.py::test_whois_without_any_way_to_the_node_says_so"],
    8: ["e2e/test_show.py::test_not_running_phases",  # Pending, Succeeded, Failed
        "e2e/test_sandbox_runtime.py::test_stopped_node_makes_its_pods_unknown"],  # Unknown
    9: ["e2e/test_exit_codes.py::test_no_shell_and_no_host_side_is_9",
        "e2e/test_exit_codes.py::test_agent_that_ends_before_it_scans_is_9"],
    10: ["e2e/test_sandbox_runtime.py::test_second_up_is_refused",
         "integration/test_sandbox_cli.py::test_status_and_down_when_not_up",
         "integration/test_sandbox_cli.py::test_down_that_cannot_remove_a_node_is_10_and_names_what_is_left"],
    130: ["e2e/test_exit_codes_offline.py::test_ctrl_c_while_waiting_on_the_api_server_is_130"],
}


def readme_codes() -> dict[int, str]:
    text = (ROOT / "README.md").read_text()
    table = text.split("\n## Exit codes\n", 1)[1].split("\n## ", 1)[0]
    rows = re.finditer(r"^\| *(\d+) *\| *(.+?) *\|$", table, re.M)
    return {int(match[1]): match[2].strip() for match in rows}


def _function(ref: str) -> tuple[str, ast.FunctionDef]:
    file, _, name = ref.partition("::")
    source = (ROOT / "tests" / file).read_text()
    for node in ast.parse(source).body:
        if isinstance(node, ast.FunctionDef) and node.name == name:
            return source, node
    raise AssertionError(f"{ref}: no such test function")


def test_the_readme_table_and_exit_status_agree() -> None:
    codes = readme_codes()
    assert sorted(codes) == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 130], codes
    assert sorted(codes) == sorted(int(status) for status in ExitStatus)


def test_every_documented_exit_code_is_produced_by_a_named_test() -> None:
    missing = sorted(set(readme_codes()) - set(PRODUCED_BY))
    assert not missing, f"no test named for exit code(s) {missing}: add one to PRODUCED_BY"
    assert not set(PRODUCED_BY) - set(readme_codes()), "PRODUCED_BY names a code the README lacks"
    for code, refs in PRODUCED_BY.items():
        assert refs, code
        for ref in refs:
            source, function = _function(ref)
            body = ast.get_source_segment(source, function) or ""
            named = f"ExitStatus.{ExitStatus(code).name}" in body or re.search(rf"\b{code}\b", body)
            assert named, f"{ref} does not name the exit code {code} it is listed for"


def test_every_named_test_is_collected() -> None:
    files = sorted({ref.partition("::")[0] for refs in PRODUCED_BY.values() for ref in refs})
    result = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:random_order",
                             "-p", "no:cacheprovider", *(f"tests/{file}" for file in files)],
                            cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    collected = {line.split("[", 1)[0] for line in result.stdout.splitlines() if "::" in line}
    for refs in PRODUCED_BY.values():
        for ref in refs:
            assert f"tests/{ref}" in collected, f"{ref} is not collected"
