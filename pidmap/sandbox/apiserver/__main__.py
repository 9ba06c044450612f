"""``python -m pidmap.sandbox.apiserver --state-dir DIR``: the API server and the kubelet, one
process on one asyncio loop (``pidmap sandbox up`` starts it detached). This is the one place
where the two rooms meet: the server is handed the kubelet as a ``contracts.Kubelet``."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path

from pidmap.sandbox.apiserver.server import serve
from pidmap.sandbox.cluster.layout import StatePaths
from pidmap.sandbox.kubelet.agent import Kubelet


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pidmap.sandbox.apiserver", description=__doc__)
    parser.add_argument("--state-dir", required=True, help="the sandbox's state directory")
    args = parser.parse_args(argv)
    logging.basicConfig(
        stream=sys.stdout, level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    paths = StatePaths(root=Path(args.state_dir))
    spec = paths.load_cluster()

    async def run() -> None:
        await serve(spec, paths, Kubelet(spec, paths))

    asyncio.run(run())
    return 0


if __name__ == "__main__":
    sys.exit(main())
