"""Node health: is each node's Docker container running (and not paused)? Polled every second;
a node that stops answering loses its pods (NodeLost), one that answers again gets them back."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Any

log = logging.getLogger("pidmap.sandbox.kubelet")

NODE_POLL_SECONDS = 1.0


class NodeHealth:
    def __init__(self, nodes: Sequence[str], docker_client: Any = None) -> None:
        import docker

        self.nodes = list(nodes)
        self._docker = docker_client or docker.from_env()
        self._up: dict[str, bool] = {}

    def _inspect(self, node: str) -> bool:
        import docker.errors

        try:
            attrs = self._docker.api.inspect_container(node)
        except docker.errors.DockerException as err:
            if not isinstance(err, docker.errors.NotFound):
                log.warning("docker inspect %s failed: %s", node, err)
            return False
        state = attrs.get("State", {})
        return bool(state.get("Running")) and not state.get("Paused")

    def refresh(self, node: str) -> bool:
        self._up[node] = running = self._inspect(node)
        return running

    def ready(self, node: str) -> bool:
        if node not in self._up:
            self.refresh(node)
        return self._up.get(node, False)

    async def answering(self, node: str) -> bool:
        """Asked now (not from the last poll), off the event loop."""
        return await asyncio.to_thread(self.refresh, node)

    async def poll(self, lost: Callable[[str], None], back: Callable[[str], None]) -> None:
        """Forever: ``lost(node)`` for every node down, ``back(node)`` for every node up that was
        polled before (both idempotent: pods already lost or finished are left alone)."""
        while True:
            for node in self.nodes:
                was_up = self._up.get(node)
                try:
                    up = await asyncio.to_thread(self.refresh, node)
                except Exception:  # the engine went away mid-call: the node counts as down
                    log.exception("polling node %s failed", node)
                    self._up[node] = up = False
                if not up:
                    lost(node)
                elif was_up is not None:  # lost pods of a node that answers: tried again each poll
                    back(node)
            await asyncio.sleep(NODE_POLL_SECONDS)
