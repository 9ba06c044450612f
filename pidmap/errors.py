"""Errors pidmap expects, each with a one-line message, a hint, and one exit status.

The CLI maps every ``PidmapError`` to ``error: MESSAGE`` + ``hint: HINT`` on stderr and exits with
its ``status``; anything else is a bug and shows a traceback only with ``--debug``. Third-party
exceptions are translated into these at the ``pidmap.sources`` boundary (``raise ... from err``).
"""

from __future__ import annotations

from enum import IntEnum


class ExitStatus(IntEnum):
    """Exit codes, documented in the README's table."""

    OK = 0
    ERROR = 1  # unexpected failure (a bug): rerun with --debug
    USAGE = 2  # bad command line (click's own usage errors use 2 as well)
    NOT_FOUND = 3  # pod, namespace, container, node or PID does not exist
    CONFIG = 4  # no kubeconfig, unknown context
    UNREACHABLE = 5  # the API server does not answer
    FORBIDDEN = 6  # 401 / 403: credentials rejected, or exec not allowed
    DOCKER = 7  # no Docker engine, or the node is not a Docker container
    NOT_RUNNING = 8  # the pod has no process to map (Pending, Succeeded, Failed, Unknown)
    EXEC = 9  # the in-container probe could not run (no shell, exec failed)
    SANDBOX = 10  # the sandbox cannot do what was asked (already up, not up, ...)
    INTERRUPTED = 130  # Ctrl-C


class PidmapError(Exception):
    """Base of every error pidmap expects; carries a hint and an exit status."""

    status: ExitStatus = ExitStatus.ERROR
    default_hint: str = ""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = self.default_hint if hint is None else hint


class UsageError(PidmapError):
    """The command line asks for something that cannot be valid."""

    status = ExitStatus.USAGE


class NotFoundError(PidmapError):
    """A pod, namespace, container, node or PID that does not exist."""

    status = ExitStatus.NOT_FOUND


class ConfigError(PidmapError):
    """No usable kubeconfig or context."""

    status = ExitStatus.CONFIG
    default_hint = "set KUBECONFIG or pass --kubeconfig PATH (try: pidmap sandbox up)"


class UnreachableError(PidmapError):
    """The Kubernetes API server does not answer."""

    status = ExitStatus.UNREACHABLE
    default_hint = "check that the cluster is up: kubectl cluster-info"


class ForbiddenError(PidmapError):
    """The API server rejected the credentials (401) or the request (403)."""

    status = ExitStatus.FORBIDDEN


class DockerError(PidmapError):
    """No Docker engine, or the node is not a Docker container."""

    status = ExitStatus.DOCKER


class NotRunningError(PidmapError):
    """The pod has no running process to map."""

    status = ExitStatus.NOT_RUNNING


class ExecError(PidmapError):
    """The probe could not be run inside a container."""

    status = ExitStatus.EXEC


class SandboxError(PidmapError):
    """The sandbox cannot do what was asked."""

    status = ExitStatus.SANDBOX
