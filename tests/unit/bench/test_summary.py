from __future__ import annotations

import pytest

from poolgate.bench.summary import Summary

from ._builders import rec


def test_tpot_excludes_the_first_token() -> None:
    assert rec(ttft=0.2, e2e=1.1, output_tokens=10).tpot == pytest.approx(0.1)
    assert rec(output_tokens=1).tpot is None
    assert rec(ttft=None).tpot is None


def test_lateness_is_never_negative() -> None:
    assert rec(scheduled=1.0, sent=1.25).lateness == pytest.approx(0.25)
    assert rec(scheduled=1.0, sent=0.9).lateness == 0.0


def test_summary_counts_throughput_and_cache_hit_rate() -> None:
    records = [
        rec(0, output_tokens=10, prompt_tokens=100, cached_tokens=80),
        rec(1, output_tokens=20, prompt_tokens=100, cached_tokens=0),
        rec(2, error="http_503", status=503, ttft=None, e2e=None, itl=[], output_tokens=None,
            prompt_tokens=None, cached_tokens=None),
        rec(3, error="timeout", status=0, ttft=None, e2e=None, itl=[], output_tokens=None),
        rec(4, error="http_503", status=503, ttft=None, e2e=None, itl=[], output_tokens=None),
    ]
    s = Summary.of(records, duration=2.0)
    assert (s.requests, s.completed, s.failed) == (5, 2, 3)
    assert s.errors == {"http_503": 2, "timeout": 1}
    assert s.output_throughput == pytest.approx(15.0)
    assert s.request_throughput == pytest.approx(1.0)
    assert s.prefix_cache_hit_rate == pytest.approx(80 / 200)
    assert s.ttft.count == 2 and s.e2e.count == 2
    assert s.itl.count == 18
    assert s.lateness.count == 5


def test_missing_cached_tokens_count_as_zero_when_others_report_them() -> None:
    s = Summary.of([rec(0, cached_tokens=None), rec(1, cached_tokens=50)], duration=1.0)
    assert s.prefix_cache_hit_rate == pytest.approx(50 / 200)


def test_cache_hit_rate_is_unknown_when_the_server_does_not_report_it() -> None:
    s = Summary.of([rec(0, cached_tokens=None)], duration=1.0)
    assert s.prefix_cache_hit_rate is None
    assert s.to_dict()["prefix_cache_hit_rate"] is None


def test_zero_duration_gives_zero_rates() -> None:
    s = Summary.of([], duration=0.0)
    assert s.request_throughput == 0.0 and s.ttft.count == 0
