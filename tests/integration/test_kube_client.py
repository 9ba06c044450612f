"""The Kubernetes side against real sockets: a dropped exec stream, and the $KUBECONFIG chain.

The server here is a real TCP listener speaking just enough HTTP/WebSocket to accept the exec
upgrade and then drop the connection, as a node that dies mid-probe or a proxy timing out does.
"""

from __future__ import annotations

import base64
import hashlib
import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from pidmap.errors import ConfigError
from pidmap.model import Options, Target
from pidmap.sources import kube

WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 section 1.3


def _kubeconfig(path: Path, server: str, context: str) -> Path:
    path.write_text(f"""apiVersion: v1
kind: Config
clusters: [{{name: c-{context}, cluster: {{server: "{server}"}}}}]
users: [{{name: u-{context}, user: {{token: abc}}}}]
contexts: [{{name: {context}, context: {{cluster: c-{context}, user: u-{context}}}}}]
current-context: {context}
""")
    return path


@pytest.fixture
def dropping_server() -> Iterator[str]:
    """Accepts every WebSocket upgrade (101), then closes the socket without a close frame."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                request = b""
                while b"\r\n\r\n" not in request:
                    chunk = conn.recv(4096)
                    if not chunk:
                        break
                    request += chunk
                key = next((line.split(b":", 1)[1].strip() for line in request.split(b"\r\n")
                            if line.lower().startswith(b"sec-websocket-key:")), b"")
                accept = base64.b64encode(hashlib.sha1(key + WS_GUID.encode()).digest()).decode()
                conn.sendall(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                              "Connection: Upgrade\r\nSec-WebSocket-Protocol: v4.channel.k8s.io\r\n"
                              f"Sec-WebSocket-Accept: {accept}\r\n\r\n").encode())

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        listener.close()
        thread.join(timeout=5)


def test_exec_stream_dropped_after_upgrade_is_a_probe_error(dropping_server: str, tmp_path: Path) -> None:
    config = _kubeconfig(tmp_path / "kubeconfig", dropping_server, "drop")
    cluster = kube.Cluster(Options(kubeconfig=str(config), exec_timeout=5.0))
    result = cluster.probe(Target(namespace="default", pod="p", container="c"), "c")
    assert result.table is None and not result.no_shell
    assert result.error is not None and result.error.startswith("the exec connection was lost"), result


def test_kubeconfig_chain_merges_every_entry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = _kubeconfig(tmp_path / "first", "https://127.0.0.1:1111", "one")
    second = _kubeconfig(tmp_path / "second", "https://127.0.0.1:2222", "two")
    missing = tmp_path / "missing"
    monkeypatch.setenv("KUBECONFIG", os.pathsep.join([str(missing), str(first), "", str(second)]))
    # kubectl's rule: a context defined only in a later file is usable; the first file's
    # current-context wins.
    assert kube.Cluster(Options(context="two")).configuration.host == "https://127.0.0.1:2222"
    assert kube.Cluster(Options()).configuration.host == "https://127.0.0.1:1111"
    assert kube.kubeconfig_chain() == [missing, first, second]
    assert kube.kubeconfig_for_writing() == first  # the first that exists, as kubectl and kind do
    monkeypatch.setenv("KUBECONFIG", os.pathsep.join([str(missing), str(tmp_path / "also-missing")]))
    assert kube.kubeconfig_for_writing() == tmp_path / "also-missing"
    with pytest.raises(ConfigError, match="no kubeconfig at"):
        kube.Cluster(Options())


def test_unparsable_kubeconfig_is_a_config_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    bad.write_text("clusters: [unclosed\n")
    with pytest.raises(ConfigError, match="cannot"):
        kube.Cluster(Options(kubeconfig=str(bad)))
