"""`/metrics` has vLLM 0.32's names, help texts, types, labels and histogram buckets."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from poolgate.sim.engine import Finished, TokenOutput
from poolgate.sim.metrics import SimMetrics, token_buckets
from poolgate.sim.options import SimOptions
from tests.unit.sim._captures import FIXTURES


def _families(text: str) -> dict[str, object]:
    return {f.name: f for f in text_string_to_metric_families(text)}


def _metrics() -> SimMetrics:
    opts = SimOptions(profile="fast", served_model_names=("tiny-llama",), max_loras=2)
    m = SimMetrics("tiny-llama", 1024, 2, opts.cache_info(), wall=lambda: 100.0)
    m.bind(lambda: 2.0, lambda: 1.0, lambda: 0.25)
    return m


def test_names_types_help_and_buckets_match_vllm() -> None:
    ours = {f.name: f for f in text_string_to_metric_families(_metrics().render().decode())}
    theirs = {f.name: f for f in text_string_to_metric_families(
        (FIXTURES / "metrics_final.txt").read_text())}
    vllm_ours = {n for n in ours if n.startswith("vllm:")}
    assert {"vllm:num_requests_running", "vllm:num_requests_waiting", "vllm:kv_cache_usage_perc",
            "vllm:lora_requests_info", "vllm:cache_config_info", "vllm:prompt_tokens",
            "vllm:generation_tokens", "vllm:request_success", "vllm:prefix_cache_queries",
            "vllm:prefix_cache_hits", "vllm:num_preemptions", "vllm:time_to_first_token_seconds",
            "vllm:inter_token_latency_seconds", "vllm:e2e_request_latency_seconds",
            "vllm:request_queue_time_seconds"} <= vllm_ours
    for name in vllm_ours:
        assert name in theirs, name
        assert ours[name].type == theirs[name].type, name
        assert ours[name].documentation == theirs[name].documentation, name
        if ours[name].type == "histogram" and name not in ("vllm:request_prompt_tokens",
                                                            "vllm:request_generation_tokens"):
            def les(f: object) -> list[str]:
                return [s.labels["le"] for s in f.samples if s.name.endswith("_bucket")]  # type: ignore[attr-defined]
            assert les(ours[name]) == les(theirs[name]), name


def test_token_buckets_follow_max_model_len() -> None:
    assert token_buckets(1024) == [1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0]


def test_labels_gauges_and_preset_reasons() -> None:
    text = _metrics().render().decode()
    fams = _families(text)
    running = fams["vllm:num_requests_running"].samples[0]  # type: ignore[attr-defined]
    assert running.labels == {"engine": "0", "model_name": "tiny-llama"} and running.value == 2.0
    reasons = {s.labels["finished_reason"] for s in fams["vllm:request_success"].samples  # type: ignore[attr-defined]
               if s.name.endswith("_total")}
    assert reasons == {"stop", "length", "abort", "error", "repetition"}
    assert "vllm:request_success_created{" in text
    info = fams["vllm:cache_config_info"].samples[0]  # type: ignore[attr-defined]
    assert info.labels["block_size"] == "16" and info.labels["num_gpu_blocks"] == "512"
    assert info.labels["engine"] == "0"


def test_lora_info_keeps_stale_combinations() -> None:
    m = _metrics()
    m.set_lora_state(["sql"], ["tweet"])
    m.set_lora_state([], [])
    samples = _families(m.render().decode())["vllm:lora_requests_info"].samples  # type: ignore[attr-defined]
    combos = {(s.labels["running_lora_adapters"], s.labels["waiting_lora_adapters"])
              for s in samples}
    assert combos == {("sql", "tweet"), ("", "")}
    assert all(s.labels["max_lora"] == "2" and s.value == 100.0 for s in samples)


def test_observe_counts_success_and_latencies() -> None:
    m = _metrics()
    m.observe(TokenOutput("a", "x", 1, 0, 0.05, None, None))
    m.observe(TokenOutput("a", "y", 2, 0, None, 0.01,
                          Finished("length", None, 0.5, 0.1, 10, 2)))
    text = m.render().decode()
    assert 'vllm:request_success_total{engine="0",finished_reason="length",model_name="tiny-llama"} 1.0' in text
    assert 'vllm:time_to_first_token_seconds_count{engine="0",model_name="tiny-llama"} 1.0' in text
    assert 'vllm:e2e_request_latency_seconds_sum{engine="0",model_name="tiny-llama"} 0.5' in text
