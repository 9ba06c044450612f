"""The probe's output is bounded: ``kube._run_bounded`` stops reading past MAX_PROBE_BYTES or the timeout.

``FloodingStream`` has the four methods of the client's WSClient that the loop uses and delivers a
chunk per ``update``, like a container that answers the probe with an endless stream.
"""

from __future__ import annotations

from pidmap.sources import kube


class FloodingStream:
    def __init__(self, chunk: str, chunks: int) -> None:
        self.chunk, self.left, self.stdout, self.updates = chunk, chunks, "", 0

    def is_open(self) -> bool:
        return self.left > 0

    def update(self, timeout: float = 0) -> None:
        self.updates += 1
        if self.left > 0:
            self.stdout += self.chunk
            self.left -= 1

    def peek_channel(self, channel: int) -> str:
        return self.stdout if channel == 1 else ""


def test_reading_stops_past_the_byte_bound() -> None:
    mib = "x" * 2**20
    stream = FloodingStream(mib, chunks=1000)
    assert kube._run_bounded(stream, timeout=60) is True
    # Stopped at the first chunk past 16 MiB, not after all 1000.
    assert len(stream.stdout) == kube.MAX_PROBE_BYTES + 2**20 and stream.updates == 17


def test_a_stream_under_the_bound_is_read_to_its_end() -> None:
    stream = FloodingStream("y" * 1000, chunks=5)
    assert kube._run_bounded(stream, timeout=60) is False
    assert len(stream.stdout) == 5000 and not stream.is_open()


def test_a_stream_that_never_ends_is_left_at_the_timeout() -> None:
    stream = FloodingStream("", chunks=10**12)  # open forever, printing nothing
    assert kube._run_bounded(stream, timeout=0.05) is False
    assert stream.is_open()
