"""The pure parts of ``pods/attach`` on the sandbox: how a container that can be attached to is
started, the node command that attaches, and how an attach ends (the e2e test
tests/e2e/test_debug_attach.py and tests/integration/test_sandbox_kubelet.py run them for real)."""

from __future__ import annotations

from pidmap.sandbox.apiserver import attach, exec_stream
from pidmap.sandbox.cluster.catalog import BUSYBOX
from pidmap.sandbox.kubelet.ctr import CtrRuntime, stdio_args
from pidmap.sandbox.kubelet.runtime import ContainerConfig


def _config(*, stdin: bool) -> ContainerConfig:
    return ContainerConfig(name="debugger", reference=BUSYBOX.reference, image=BUSYBOX, argv=("sh",),
                           working_dir="/", attempt=0, stdin=stdin)


def test_a_container_with_stdin_gets_fifos_not_a_log_file() -> None:
    assert stdio_args(_config(stdin=True), "/var/log/pods/x/0.log") == []
    assert stdio_args(_config(stdin=False), "/var/log/pods/x/0.log") == [
        "--log-uri", "file:///var/log/pods/x/0.log"]


def test_attach_runs_ctr_tasks_attach_in_the_node() -> None:
    cid = "ab" * 32
    process = CtrRuntime("pd-m02", "/usr/bin/docker").attach(cid)
    # argv only: the container ID is an argument of the node's shell, never part of its script.
    assert process.argv == ["/usr/bin/docker", "exec", "-i", "pd-m02", "sh", "-c", 'echo "$$" && exec "$@"',
                            "sh", "ctr", "-n", "k8s.io", "tasks", "attach", cid]


def test_an_attach_ends_with_success_whatever_the_containers_exit_code() -> None:
    for code in (0, 1, 137):
        assert attach.attach_status(code) == {"metadata": {}, "status": "Success"}
    # An exec, by contrast, reports the command's exit code.
    assert exec_stream.exit_status(1, ["sh"])["status"] == "Failure"
