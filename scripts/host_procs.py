#!/usr/bin/env python3
"""Start N idle host processes for a benchmark, all in one new process group, and end them all.

    $ python3 scripts/host_procs.py 10000 -- lsns -t pid     # run a command while they exist
    host_procs: 10000 idle processes in process group 41234 (sleep 900 each)
    ...
    host_procs: 10000 processes ended

``idle_processes(n)`` is the same as a context manager (scripts/bench.py uses it). Bounded three
ways: at most ``MAX_PROCESSES`` processes, each one a ``sleep`` that ends by itself after ``lifetime``
seconds even if this helper is killed, and all of them killed with their process group on exit.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator

MAX_PROCESSES = 20_000


@contextlib.contextmanager
def idle_processes(n: int, lifetime: int = 900) -> Iterator[int]:
    """``n`` ``sleep LIFETIME`` processes in one new process group (yields its id); killed at exit."""
    if not 0 <= n <= MAX_PROCESSES:
        raise ValueError(f"between 0 and {MAX_PROCESSES} processes, not {n}")
    sleep = shutil.which("sleep") or "/bin/sleep"
    argv = [sleep, str(lifetime)]
    pids: list[int] = []
    pgid = 0
    try:
        for _ in range(n):
            # posix_spawn: no Python in the child, ~10x faster than subprocess for thousands.
            pid = os.posix_spawn(sleep, argv, os.environ, setpgroup=pgid)
            pgid = pgid or pid
            pids.append(pid)
        yield pgid
    finally:
        if pgid:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGKILL)
        for pid in pids:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)


def main(argv: list[str]) -> int:
    if not argv or not argv[0].isdigit():
        print("usage: host_procs.py N [-- COMMAND ...]", file=sys.stderr)
        return 2
    n = int(argv[0])
    command = argv[2:] if argv[1:2] == ["--"] else []
    with idle_processes(n) as pgid:
        print(f"host_procs: {n} idle processes in process group {pgid}", file=sys.stderr)
        code = subprocess.call(command) if command else 0
    print(f"host_procs: {n} processes ended", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
