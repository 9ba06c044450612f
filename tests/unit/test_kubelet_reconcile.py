"""The kubelet stand-in's reconcile: a listing of containerd's tasks settles only the waiters whose
task had started, never one registered before its `ctr run` returned (whose task the listing may
not show yet). Settling that one with 255 once reported a running `sleep 86400` as exited, made its
pod CrashLoopBackOff (phase Running, no process to map) and started a second copy beside it.

containerd's listing is given here (``tasks``); the sandbox e2e tests run the real one."""

from __future__ import annotations

import asyncio

from pidmap.sandbox.kubelet.ctr import CtrRuntime


class Listed(CtrRuntime):
    """A CtrRuntime whose `ctr tasks ls` answers ``listing`` (id -> (pid, status))."""

    def __init__(self) -> None:
        super().__init__("node", "docker")
        self.listing: dict[str, tuple[int, str]] = {}

    async def tasks(self) -> dict[str, tuple[int, str]]:
        await asyncio.sleep(0)
        return dict(self.listing)

    async def delete_task(self, container_id: str) -> int | None:
        return 3


def test_a_container_being_started_is_not_settled_by_a_listing_without_it() -> None:
    async def scenario() -> None:
        runtime = Listed()
        starting = runtime.expect_exit("new", started=False)  # before `ctr run`
        await runtime.reconcile()  # the listing does not show "new" yet
        assert not starting.done()
        runtime.listing["new"] = (42, "RUNNING")  # `ctr run -d` returned: the task runs
        runtime.task_started("new")
        await runtime.reconcile()
        assert not starting.done()
        runtime.listing["new"] = (42, "STOPPED")  # an exit whose event was missed
        await runtime.reconcile()
        assert starting.done() and starting.result() == 3
        assert "new" not in runtime.started and "new" not in runtime.waiters

    asyncio.run(scenario())


def test_a_started_task_missing_from_the_listing_is_lost_with_255() -> None:
    async def scenario() -> None:
        runtime = Listed()
        adopted = runtime.expect_exit("adopted")  # running when registered (adoption, teardown)
        await runtime.reconcile()
        assert adopted.done() and adopted.result() == 255

    asyncio.run(scenario())


def test_an_exit_event_during_the_listing_wins() -> None:
    async def scenario() -> None:
        runtime = Listed()
        future = runtime.expect_exit("quick")
        runtime.listing["quick"] = (7, "RUNNING")
        listing = asyncio.create_task(runtime.reconcile())
        runtime.exited("quick", 0)  # the /tasks/exit event arrives first
        await listing
        assert future.result() == 0

    asyncio.run(scenario())
