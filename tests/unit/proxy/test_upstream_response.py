"""An upstream response's body as the relay takes it: whole when it is all there, chunk by chunk
as it arrives, the end and a break reported."""

from __future__ import annotations

import asyncio

import pytest

from poolgate.http.client import BodyError, UpstreamResponse


class Source:
    """The connection side of a response (`ResponseSource`), in memory."""

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.paused = 0
        self.resumed = 0

    def pause_reading(self) -> None:
        self.paused += 1

    def resume_reading(self) -> None:
        self.resumed += 1

    def response_released(self, response: UpstreamResponse) -> None:
        pass

    def close(self) -> None:
        pass


async def test_a_body_received_whole_is_taken_without_waiting() -> None:
    response = UpstreamResponse(Source())
    response._feed(b'{"a": ')
    assert response.received() is None  # more is to come
    response._feed(b"1}")
    response._finish()
    assert response.received() == b'{"a": 1}'
    assert response.received() == b""  # taken: nothing left
    empty = UpstreamResponse(Source())
    empty._finish()
    assert empty.received() == b""


async def test_a_body_that_broke_off_is_not_taken_as_received() -> None:
    response = UpstreamResponse(Source())
    response._feed(b"part")
    response._finish(ConnectionResetError("reset"))
    assert response.received() is None
    with pytest.raises(BodyError):
        await response.read()


async def test_chunks_come_as_they_arrive_then_the_end() -> None:
    response = UpstreamResponse(Source())
    response._feed(b"data: 1\n\n")
    response._feed(b"data: 2\n\n")
    response._feed(b"")  # (nothing: never taken for the end)
    assert await response.next_chunk() == b"data: 1\n\ndata: 2\n\n"  # what is buffered, joined
    later = asyncio.get_running_loop().call_later(0.01, response._feed, b"data: 3\n\n")
    assert await response.next_chunk() == b"data: 3\n\n"  # waited for
    later.cancel()
    response._finish()
    assert await response.next_chunk() == b""
    assert await response.next_chunk() == b""


async def test_iterating_the_chunks_ends_with_the_body_and_raises_a_break() -> None:
    response = UpstreamResponse(Source())
    response._feed(b"a")
    response._finish()
    assert [c async for c in response.iter_chunks()] == [b"a"]
    broken = UpstreamResponse(Source())
    broken._feed(b"b")
    broken._finish(ConnectionResetError("reset"))
    seen = []
    with pytest.raises(BodyError):
        async for chunk in broken.iter_chunks():
            seen.append(chunk)
    assert seen == [b"b"]
