"""The relay's per-response measurements: first bytes, inter-chunk gaps, the final usage."""

from __future__ import annotations

import pytest

from poolgate.observability import meter as meter_module
from poolgate.observability.meter import ITL_BUCKETS, ResponseMeter
from poolgate.observability.usage import Usage
from tests.unit.sim._captures import capture


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_buffered_body_only_holds_the_usage() -> None:
    clock = Clock()
    m = ResponseMeter("m", clock)
    m.body(capture("chat.http")[2])
    assert m.first is None  # its TTFT is the request's duration (proxy/recording.py)
    assert not m.streamed
    assert m.gaps == []
    assert m.usage() == Usage(20, 16)


def test_chunk_gaps_go_to_the_itl_buckets(monkeypatch: pytest.MonkeyPatch) -> None:
    ticks = iter([10.0, 10.004, 10.054, 10.055])  # gaps 4 ms, 50 ms, 1 ms
    monkeypatch.setattr(meter_module, "monotonic", lambda: next(ticks))
    clock = Clock()
    m = ResponseMeter(None, clock)
    clock.now = 0.3
    for chunk in (b"a", b"b", b"c", b"d"):
        m.chunk(chunk)
    assert m.first == 0.3  # on the gateway's clock, which the request's arrival is read from
    expected = [0] * (len(ITL_BUCKETS) + 1)
    expected[ITL_BUCKETS.index(0.005)] += 1
    expected[ITL_BUCKETS.index(0.06)] += 1
    expected[ITL_BUCKETS.index(0.001)] += 1
    assert m.gaps == expected
    assert m.gap_sum == pytest.approx(0.055)


def test_the_final_usage_event_is_found_when_split_over_reads() -> None:
    body = capture("chat_stream_usage.http")[2]
    at = body.rfind(b'"usage"')
    m = ResponseMeter(None, Clock())
    # Everything up to the middle of the usage event, the rest of it, then [DONE].
    done = body.rfind(b"data: [DONE]")
    for part in (body[:at + 10], body[at + 10:done], body[done:]):
        m.chunk(part)
    assert m.usage() == Usage(11, 8)


def test_no_body_and_no_usage_count_nothing() -> None:
    assert ResponseMeter(None, Clock()).usage() is None
    m = ResponseMeter(None, Clock())
    m.chunk(capture("chat_stream.http")[2])
    assert m.usage() is None
