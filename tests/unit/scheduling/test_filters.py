from __future__ import annotations

import pytest

from poolgate.scheduling.filters.fresh_metrics import FreshMetricsFilter
from poolgate.scheduling.filters.fresh_metrics import Params as FreshParams
from poolgate.scheduling.filters.lora_capable import LoraCapableFilter
from poolgate.scheduling.filters.lora_capable import Params as LoraParams

from .builders import cycle, ep, req

A, B, C = "a:1", "b:1", "c:1"


@pytest.mark.parametrize(("known", "require_fresh", "expected"), [
    pytest.param({A: True, B: False, C: True}, False, [A, C], id="drops-unknown-when-some-known"),
    pytest.param({A: False, B: False}, False, [A, B], id="keeps-all-when-none-known"),
    pytest.param({A: False, B: False}, True, [], id="strict-drops-all-unknown"),
    pytest.param({A: True, B: True}, False, [A, B], id="all-known"),
])
def test_fresh_metrics_filter(known: dict[str, bool], require_fresh: bool,
                              expected: list[str]) -> None:
    f = FreshMetricsFilter(params=FreshParams(require_fresh=require_fresh))
    eps = [ep(a, known=k) for a, k in known.items()]
    assert [e.address for e in f.filter(req(), eps, cycle())] == expected


@pytest.mark.parametrize(("lora", "strict", "expected"), [
    pytest.param(None, False, [A, B, C], id="base-model-unfiltered"),
    pytest.param("sql", False, [A, B], id="running-or-free-slot"),
    pytest.param("chat", False, [B, C], id="waiting-adapter-or-free-slot"),
    pytest.param("other", False, [B], id="only-free-slot"),
])
def test_lora_capable_filter(lora: str | None, strict: bool, expected: list[str]) -> None:
    eps = [
        ep(A, loras={"sql", "x"}, max_lora=2),  # full: two adapters in use
        ep(B, loras={"sql"}, max_lora=2),  # one free slot
        ep(C, loras={"y"}, waiting_loras={"chat"}, max_lora=2),  # full, chat waiting
    ]
    f = LoraCapableFilter(params=LoraParams(strict=strict))
    assert [e.address for e in f.filter(req(lora=lora), eps, cycle())] == expected


@pytest.mark.parametrize(("strict", "expected"), [
    pytest.param(False, [A, B], id="lenient-keeps-all"),
    pytest.param(True, [], id="strict-empty"),
])
def test_lora_capable_filter_when_nothing_qualifies(strict: bool, expected: list[str]) -> None:
    eps = [ep(A, loras={"x", "y"}, max_lora=2), ep(B, known=False)]
    f = LoraCapableFilter(params=LoraParams(strict=strict))
    assert [e.address for e in f.filter(req(lora="sql"), eps, cycle())] == expected


def test_lora_capable_filter_needs_max_lora_for_a_free_slot() -> None:
    eps = [ep(A, max_lora=None), ep(B, loras={"sql"}, max_lora=None)]
    f = LoraCapableFilter()
    assert [e.address for e in f.filter(req(lora="sql"), eps, cycle())] == [B]
