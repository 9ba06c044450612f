"""The pure parts of pidmap.sandbox.attach: how a container that can be attached to is started, and
the node command that attaches (the e2e test tests/e2e/test_debug_attach.py runs them for real)."""

from __future__ import annotations

from pidmap.sandbox.attach import _kill_argv, attach_argv, stdio_args


def test_a_container_with_stdin_gets_fifos_not_a_log_file() -> None:
    assert stdio_args({"name": "debugger", "stdin": True}, "/var/log/pods/x/0.log") == []
    assert stdio_args({"name": "app"}, "/var/log/pods/x/0.log") == ["--log-uri", "file:///var/log/pods/x/0.log"]


def test_attach_runs_ctr_tasks_attach_in_the_node_and_can_be_killed_there() -> None:
    cid = "ab" * 32
    exec_argv = ["/usr/bin/docker", "exec", "-i", "pd-m02", "ctr", "-n", "k8s.io", "tasks", "exec",
                 "--exec-id", "exec-0123", cid]
    argv = attach_argv(exec_argv)
    # argv only: the container ID is an argument of the node's shell, never part of its script.
    assert argv == ["/usr/bin/docker", "exec", "-i", "pd-m02", "sh", "-c", 'echo "$$" && exec "$@"', "sh",
                    "ctr", "-n", "k8s.io", "tasks", "attach", cid]
    assert _kill_argv(argv, 4242) == ["/usr/bin/docker", "exec", "pd-m02", "kill", "-KILL", "4242"]
