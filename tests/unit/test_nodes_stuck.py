"""One stuck container on a shared Docker engine does not stop pidmap from reading the others.

The engine here is a small HTTP server on a Unix socket speaking the three calls pidmap makes
(list, inspect by ID, inspect by name) through the real Docker SDK and a real socket: one labelled
container's inspect never answers, as a container whose lock an exec stuck on a frozen cgroup holds.
"""

from __future__ import annotations

import json
import socketserver
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest

from pidmap.sources import nodes

GOOD = "a" * 64
STUCK = "b" * 64
OTHER = "c" * 64  # no node label: never inspected


def _attrs(cid: str, name: str, pid: int) -> dict[str, Any]:
    return {"Id": cid, "Name": f"/{name}",
            "Config": {"Hostname": name, "Labels": {nodes.KIND_CLUSTER: name.split("-")[0]}},
            "State": {"Running": True, "Pid": pid}}


CONTAINERS = {GOOD: _attrs(GOOD, "good-worker", 4242), STUCK: _attrs(STUCK, "stuck-worker", 4343)}


class Engine(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True

    def __init__(self, path: Path) -> None:
        self.requests: list[str] = []
        self.release = threading.Event()
        super().__init__(str(path), Handler)


class Handler(BaseHTTPRequestHandler):
    server: Engine

    def log_message(self, *_: object) -> None:
        pass

    def address_string(self) -> str:
        return "unix"

    def _send(self, body: Any, status: int = 200) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        path = self.path.split("?")[0]
        self.server.requests.append(path)
        if path.endswith("/containers/json"):
            summaries = [{"Id": cid, "Names": [a["Name"]], "Labels": a["Config"]["Labels"],
                          "State": "paused" if cid == STUCK else "running"} for cid, a in CONTAINERS.items()]
            summaries.append({"Id": OTHER, "Names": ["/unrelated"], "Labels": {}, "State": "running"})
            self._send(summaries)
            return
        key = path.split("/containers/")[-1].removesuffix("/json")
        found = CONTAINERS.get(key) or next((a for a in CONTAINERS.values() if a["Name"] == f"/{key}"), None)
        if found is None:
            self._send({"message": f"No such container: {key}"}, 404)
            return
        if found["Id"] == STUCK:
            self.server.release.wait(30)  # the engine holds the container's lock: no answer
            return
        self._send(found)


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    server = Engine(tmp_path / "docker.sock")
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server
    finally:
        server.release.set()
        server.shutdown()
        server.server_close()


def _client(engine: Engine) -> Any:
    import docker

    return docker.DockerClient(base_url=f"unix://{engine.server_address}", version="1.41", timeout=10)


def test_a_stuck_container_is_skipped_with_a_note_and_the_others_are_listed(
        engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(nodes, "INSPECT_TIMEOUT", 0.5)
    notes: list[str] = []
    found = nodes.list_nodes(_client(engine), notes)
    assert [(n.name, n.container_id, n.host_pid, n.provider) for n in found] == [
        ("good-worker", GOOD, 4242, "kind")]
    (note,) = notes
    assert "stuck-worker" in note and STUCK[:12] in note and "0.5s" in note and "paused" in note
    assert not any(OTHER in path for path in engine.requests)  # unlabelled: not inspected


def test_finding_one_node_inspects_only_that_container(engine: Engine) -> None:
    node = nodes.find_node(_client(engine), "good-worker")
    assert (node.container_id, node.host_pid, node.running) == (GOOD, 4242, True)
    assert not any(STUCK in path or "stuck-worker" in path for path in engine.requests), engine.requests
