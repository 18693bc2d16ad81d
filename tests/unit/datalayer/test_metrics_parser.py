from __future__ import annotations

from pathlib import Path

import pytest

from poolgate.datalayer.metric_names import SGLANG, VLLM
from poolgate.datalayer.metrics_parser import MetricsParseError, detect_server, parse_signals
from poolgate.datalayer.signals import Signals

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "metrics"


def _page(name: str) -> str:
    return (FIXTURES / name).read_text()


@pytest.mark.parametrize(("fixture", "expected"), [
    pytest.param("vllm_idle.txt", Signals(
        waiting=0, running=0, kv_usage=0.0, lora_running=frozenset(),
        lora_waiting=frozenset(), max_lora=2, block_size=128, num_blocks=32, scraped_at=5.0),
        id="vllm-idle"),
    pytest.param("vllm_during_load.txt", Signals(
        waiting=29, running=11, kv_usage=pytest.approx(0.967741935483871),  # type: ignore[arg-type]
        lora_running=frozenset({"tiny-lora"}), lora_waiting=frozenset({"tiny-lora"}),
        max_lora=2, block_size=128, num_blocks=32, scraped_at=5.0),
        id="vllm-during-load"),
    pytest.param("vllm_during_load_kv1GiB.txt", Signals(
        waiting=24, running=16, kv_usage=pytest.approx(0.004883408619216212),  # type: ignore[arg-type]
        lora_running=frozenset({"tiny-lora"}), lora_waiting=frozenset({"tiny-lora"}),
        max_lora=2, block_size=128, num_blocks=8192, scraped_at=5.0),
        id="vllm-during-load-big-cache"),
    # Three lora_requests_info series remain on this page; the newest one says "none running".
    pytest.param("vllm_lora_final.txt", Signals(
        waiting=0, running=0, kv_usage=0.0, max_lora=2, block_size=128, num_blocks=32,
        scraped_at=5.0), id="vllm-stale-lora-series"),
    pytest.param("sglang_sample.txt", Signals(
        waiting=3, running=6, kv_usage=pytest.approx(0.43),  # type: ignore[arg-type]
        scraped_at=5.0), id="sglang"),
])
def test_parse_real_captures(fixture: str, expected: Signals) -> None:
    assert parse_signals(_page(fixture), 5.0) == expected


def test_detect_server() -> None:
    assert detect_server(_page("vllm_idle.txt")) is VLLM
    assert detect_server(_page("sglang_sample.txt")) is SGLANG
    with pytest.raises(MetricsParseError, match="no queue metric"):
        detect_server("# nothing here\nup 1\n")


def test_queue_metric_prefix_of_another_name_is_not_matched() -> None:
    # `vllm:num_requests_waiting_by_reason` must not be read as `vllm:num_requests_waiting`.
    page = ('vllm:num_requests_waiting_by_reason{reason="capacity"} 9.0\n'
            'vllm:num_requests_waiting{engine="0"} 2.0\n'
            'vllm:num_requests_running{engine="0"} 1.0\n'
            'vllm:kv_cache_usage_perc{engine="0"} 0.5\n')
    s = parse_signals(page, 0.0)
    assert (s.waiting, s.running, s.kv_usage) == (2, 1, 0.5)
    assert (s.max_lora, s.block_size) == (None, None)


def test_engines_are_summed_and_kv_takes_the_fullest() -> None:
    page = ('vllm:num_requests_waiting{engine="0"} 2.0\n'
            'vllm:num_requests_waiting{engine="1"} 3.0\n'
            'vllm:num_requests_running{engine="0"} 1.0\n'
            'vllm:num_requests_running{engine="1"} 4.0\n'
            'vllm:kv_cache_usage_perc{engine="0"} 0.2\n'
            'vllm:kv_cache_usage_perc{engine="1"} 0.7\n')
    s = parse_signals(page, 0.0)
    assert (s.waiting, s.running) == (5, 5)
    assert s.kv_usage == pytest.approx(0.7)


def test_old_gpu_cache_name_is_a_fallback() -> None:
    page = ("vllm:num_requests_waiting 0\nvllm:num_requests_running 1\n"
            "vllm:gpu_cache_usage_perc 0.25 1700000000000\n")
    assert parse_signals(page, 0.0).kv_usage == pytest.approx(0.25)


def test_kv_usage_is_clamped_and_non_finite_values_skipped() -> None:
    page = ("vllm:num_requests_waiting NaN\nvllm:num_requests_waiting 4\n"
            "vllm:num_requests_running +Inf\nvllm:num_requests_running 1\n"
            "vllm:kv_cache_usage_perc 1.5\n")
    s = parse_signals(page, 0.0)
    assert (s.waiting, s.running, s.kv_usage) == (4, 1, 1.0)


def test_lora_labels_with_escapes_and_several_adapters() -> None:
    page = ("vllm:num_requests_waiting 0\nvllm:num_requests_running 0\n"
            "vllm:kv_cache_usage_perc 0\n"
            'vllm:lora_requests_info{max_lora="4",running_lora_adapters="a, b",'
            'waiting_lora_adapters="c\\"q"} 20.0\n'
            'vllm:lora_requests_info{max_lora="4",running_lora_adapters="old",'
            'waiting_lora_adapters=""} 10.0\n')
    s = parse_signals(page, 0.0)
    assert s.lora_running == frozenset({"a", "b"})
    assert s.lora_waiting == frozenset({'c"q'})
    assert s.max_lora == 4


@pytest.mark.parametrize(("page", "message"), [
    pytest.param("vllm:num_requests_waiting 1\nvllm:num_requests_running 1\n",
                 "vllm page has no kv_usage metric (looked for vllm:kv_cache_usage_perc, "
                 "vllm:gpu_cache_usage_perc)", id="no-kv"),
    pytest.param("vllm:num_requests_waiting 1\nvllm:kv_cache_usage_perc 0\n",
                 "vllm page has no running metric", id="no-running"),
    pytest.param("vllm:num_requests_waiting{a=\"b\"}\nvllm:num_requests_running 1\n"
                 "vllm:kv_cache_usage_perc 0\n", "no waiting metric", id="no-value"),
    pytest.param("<html>not metrics</html>", "no queue metric", id="not-metrics"),
])
def test_unreadable_pages(page: str, message: str) -> None:
    with pytest.raises(MetricsParseError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_signals(page, 0.0)


@pytest.mark.parametrize("page", [
    pytest.param("vllm:num_requests_waiting 7\nvllm:num_requests_running 1\n"
                 "vllm:kv_cache_usage_perc 0", id="first-line"),
    pytest.param("\nvllm:num_requests_waiting 7\r\nvllm:num_requests_running 1\r\n"
                 "vllm:kv_cache_usage_perc 0\r\n", id="leading-newline-crlf"),
])
def test_sample_lines_at_the_edges_of_the_page(page: str) -> None:
    s = parse_signals(page, 0.0, VLLM)
    assert (s.waiting, s.running) == (7, 1)


def test_signals_age() -> None:
    assert Signals(waiting=0, running=0, kv_usage=0.0, scraped_at=3.0).age(5.5) == 2.5
