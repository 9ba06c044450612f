"""Exit codes that need no cluster, each produced through the real CLI in a subprocess.

1 (a bug, and what --debug adds), 2 (--level node without --node, --all/-A misuses), 5 (TLS to
the API server fails), 130 (Ctrl-C while waiting on the API server). The endpoints are real sockets
on 127.0.0.1: a TLS server whose certificate the kubeconfig's CA did not sign, and a server that
accepts and never answers.
"""

from __future__ import annotations

import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from pidmap.errors import ExitStatus


def _pidmap(*args: str, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pidmap", *args], capture_output=True, text=True,
                          timeout=timeout, env=env, check=False)


def _assert_error(result: subprocess.CompletedProcess[str], status: ExitStatus, message: str) -> None:
    assert result.returncode == status, (result.returncode, result.stderr)
    lines = result.stderr.splitlines()
    assert lines[0].startswith("error: ") and message in lines[0], result.stderr
    assert len(lines) == 2 and lines[1].startswith("hint: "), result.stderr
    assert "Traceback" not in result.stderr


def _kubeconfig(path: Path, server: str, ca: Path | None = None) -> Path:
    cluster: dict[str, str] = {"server": server}
    if ca is not None:
        cluster["certificate-authority"] = str(ca)
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "c", "cluster": cluster}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
    }))
    return path


def _self_signed(directory: Path, name: str) -> tuple[Path, Path]:
    cert, key = directory / f"{name}.crt", directory / f"{name}.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", f"/CN={name}", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    return cert, key


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A TCP port that accepts connections and never answers."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(16)
        yield server.getsockname()[1]


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[int]:
    """An HTTPS-speaking socket whose certificate no kubeconfig here trusts."""
    cert, key = _self_signed(tmp_path, "untrusted")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    server.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            try:
                with context.wrap_socket(conn, server_side=True):
                    pass  # the client refuses the handshake; nothing more to say
            except (ssl.SSLError, OSError):
                pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        stop.set()
        thread.join(5)
        server.close()


@pytest.mark.tool("openssl")
def test_tls_failure_is_unreachable_5(tls_server: int, tmp_path: Path) -> None:
    other_ca, _ = _self_signed(tmp_path, "other-ca")
    config = _kubeconfig(tmp_path / "config", f"https://127.0.0.1:{tls_server}", other_ca)
    env = {**os.environ, "KUBECONFIG": str(config)}
    _assert_error(_pidmap("show", "kubia-manual", env=env), ExitStatus.UNREACHABLE, "TLS to the API server")


def test_ctrl_c_while_waiting_on_the_api_server_is_130(silent_server: int, tmp_path: Path) -> None:
    config = _kubeconfig(tmp_path / "config", f"http://127.0.0.1:{silent_server}")
    env = {**os.environ, "KUBECONFIG": str(config)}
    proc = subprocess.Popen([sys.executable, "-m", "pidmap", "show", "kubia-manual"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # Wait until it has connected (the server's backlog holds the connection): then it is waiting.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not _connected_from(proc.pid, silent_server):
        time.sleep(0.05)
    assert _connected_from(proc.pid, silent_server), "pidmap never connected to the API server"
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == ExitStatus.INTERRUPTED, stderr
    assert stderr.strip() == "interrupted" and stdout == ""


def _connected_from(pid: int, port: int) -> bool:
    """True when ``pid`` holds a TCP connection to 127.0.0.1:port (from /proc, not from pidmap)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    remote = f"0100007F:{port:04X}"
    for line in Path(f"/proc/{pid}/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[2] == remote and fields[9] in inodes:
            return True
    return False


BUG = """
import sys
import pidmap.cli
import pidmap.collect

def collect_pod(*args, **kwargs):
    raise RuntimeError("planted bug")

pidmap.collect.collect_pod = collect_pod
if hasattr(pidmap.cli, "collect_pod"):
    pidmap.cli.collect_pod = collect_pod
sys.argv = ["pidmap", *sys.argv[1:]]
pidmap.cli.main()
"""


def test_a_bug_is_exit_1_in_one_line_and_debug_shows_the_traceback(tmp_path: Path) -> None:
    config = _kubeconfig(tmp_path / "config", "http://127.0.0.1:9")
    env = {**os.environ, "KUBECONFIG": str(config)}
    plain = subprocess.run([sys.executable, "-c", BUG, "show", "kubia-manual"], capture_output=True,
                           text=True, env=env, timeout=60, check=False)
    _assert_error(plain, ExitStatus.ERROR, "unexpected RuntimeError: planted bug")
    assert "--debug" in plain.stderr
    debug = subprocess.run([sys.executable, "-c", BUG, "--debug", "show", "kubia-manual"],
                           capture_output=True, text=True, env=env, timeout=60, check=False)
    assert debug.returncode != 0
    assert "Traceback" in debug.stderr and "RuntimeError: planted bug" in debug.stderr


MISUSES = [
    (["whois", "1", "--level", "node"], "--level node needs --node"),
    (["show", "--all", "kubia"], "--all takes no POD"),
    (["show", "kubia", "-A"], "-A goes with --all"),
    (["show"], "missing POD"),
]


@pytest.mark.parametrize(("argv", "message"), MISUSES, ids=[" ".join(a) for a, _ in MISUSES])
def test_misuses_are_usage_errors_2(argv: list[str], message: str, tmp_path: Path) -> None:
    env = {**os.environ, "KUBECONFIG": str(tmp_path / "none")}
    _assert_error(_pidmap(*argv, env=env), ExitStatus.USAGE, message)
