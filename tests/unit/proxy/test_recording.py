"""The Inference Extension's and llm-d's series as `Gateway.handle` records them, with an
in-memory client and upstream (everything in between is the real gateway)."""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from poolgate.config.build import load_snapshot
from poolgate.config.snapshot import Snapshot
from poolgate.datalayer import Signals
from poolgate.http.client import ConnectionSettings, UpstreamResponse
from poolgate.proxy.gateway import Gateway
from poolgate.proxy.recording import pool_gauges
from poolgate.scheduling.timed import PLUGIN_SAMPLE
from tests.unit.proxy._fakes import GATEWAY, Answer, FakeConnection, FakeResponder, FakeUpstreams
from tests.unit.proxy._fakes import gateway as make_gateway
from tests.unit.sim._captures import capture

A, B = "10.0.0.1:8000", "10.0.0.2:8000"

MODELS = """\
---
apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferenceModel
metadata: {name: food, namespace: default}
spec:
  modelName: food-review
  criticality: Standard
  poolRef: {group: inference.networking.k8s.io, kind: InferencePool, name: pool}
  targetModels: [{name: food-review-1, weight: 100}]
---
apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferenceObjective
metadata: {name: urgent, namespace: default}
spec:
  priority: 2
  poolRef: {group: inference.networking.k8s.io, kind: InferencePool, name: pool}
"""

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def snapshot(tmp_path: Path) -> Snapshot:
    path = tmp_path / "gw.yaml"
    path.write_text(GATEWAY + MODELS)
    result = load_snapshot([path])
    assert result.snapshot is not None, [str(p) for p in result.problems]
    return result.snapshot


def samples(gw: Gateway) -> Samples:
    body, _ = gw.metrics.exposition()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(body.decode())
            for s in family.samples}


def value(got: Samples, family: str, **labels: str) -> float:
    return got.get((family, tuple(sorted(labels.items()))), 0.0)


def models(model: str, target: str | None = None) -> dict[str, str]:
    return {"model_name": model, "target_model_name": target or model}


def llmd(model: str, target: str | None = None, priority: str = "0") -> dict[str, str]:
    return {**models(model, target), "fairness_id": "default-flow", "priority": priority}


class StreamingUpstreams(FakeUpstreams):
    """Answers with an SSE body fed in `chunks`, `gap` seconds apart."""

    def __init__(self, chunks: list[bytes], gap: float = 0.0) -> None:
        super().__init__({})
        self.chunks, self.gap = chunks, gap

    async def request(self, address: str, method: str, path: str, headers: Any, body: bytes,
                      settings: ConnectionSettings | None = None) -> UpstreamResponse:
        self.sent.append((address, body))
        response = UpstreamResponse(FakeConnection())  # type: ignore[arg-type]
        response.status, response.reason = 200, "OK"
        response.headers = [("content-type", "text/event-stream; charset=utf-8")]
        response.content_type = "text/event-stream; charset=utf-8"
        response.content_length = None

        async def feed() -> None:
            for chunk in self.chunks:
                await asyncio.sleep(self.gap)
                response._feed(chunk)
            response._finish()

        self.task = asyncio.get_running_loop().create_task(feed())
        return response


def sse(body: bytes) -> list[bytes]:
    """The events of a captured SSE body, each as one chunk."""
    return [e + b"\n\n" for e in body.split(b"\n\n") if e]


async def test_a_completion_with_usage_fills_every_objective_series(tmp_path: Path) -> None:
    body = capture("completions.http")[2]  # vLLM: usage 8 prompt + 16 completion tokens
    gw, _ = make_gateway(snapshot(tmp_path), FakeUpstreams({A: [Answer(200, body)],
                                                           B: [Answer(200, body)]}))
    request = {"model": "tiny-llama", "prompt": "hello", "max_tokens": 16}
    client = FakeResponder(request)
    await gw.handle(client, 80)
    assert client.status == 200
    got = samples(gw)
    # A name no InferenceModel knows, answered 200 by the model server: served, so its own label.
    m = models("tiny-llama")
    assert value(got, "inference_objective_request_total", **m, priority="0") == 1
    assert value(got, "inference_objective_request_sizes_sum", **m) == len(orjson.dumps(request))
    assert value(got, "inference_objective_response_sizes_sum", **m) == len(body)
    assert value(got, "inference_objective_input_tokens_sum", **m) == 8
    assert value(got, "inference_objective_output_tokens_sum", **m) == 16
    assert value(got, "inference_objective_input_tokens_bucket", **m, le="8.0") == 1
    assert value(got, "inference_objective_request_duration_seconds_count", **m) == 1
    duration = value(got, "inference_objective_request_duration_seconds_sum", **m)
    assert value(got, "inference_objective_normalized_time_per_output_token_seconds_sum",
                 **m) == pytest.approx(duration / 16)
    assert value(got, "llm_d_epp_request_ttft_seconds_count", **llmd("tiny-llama"),
                 streaming="false") == 1
    assert value(got, "inference_objective_running_requests", model_name="unknown") == 0
    assert not any(name == "inference_objective_request_error_total" for name, _ in got)


async def test_a_stream_with_usage_gives_ttft_itl_tpot_and_its_tokens(tmp_path: Path) -> None:
    events = sse(capture("chat_stream_usage.http")[2])  # usage 11 prompt + 8 completion tokens
    upstreams = StreamingUpstreams(events, gap=0.002)
    gw, _ = make_gateway(snapshot(tmp_path), upstreams)
    client = FakeResponder({"model": "tiny-llama", "messages": [{"role": "user", "content": "hi"}],
                            "stream": True, "stream_options": {"include_usage": True}},
                           path="/v1/chat/completions")
    await gw.handle(client, 80)
    assert client.sent == b"".join(events)
    got = samples(gw)
    labels = llmd("tiny-llama")
    assert value(got, "llm_d_epp_request_ttft_seconds_count", **labels, streaming="true") == 1
    ttft = value(got, "llm_d_epp_request_ttft_seconds_sum", **labels, streaming="true")
    assert 0 < ttft < value(got, "inference_objective_request_duration_seconds_sum",
                            **models("tiny-llama"))
    # One gap between each pair of chunks.
    assert value(got, "llm_d_epp_request_streaming_itl_seconds_count", **labels) == len(events) - 1
    assert value(got, "llm_d_epp_request_streaming_itl_seconds_sum", **labels) > 0
    assert value(got, "llm_d_epp_request_streaming_tpot_seconds_count", **labels) == 1
    assert value(got, "inference_objective_input_tokens_sum", **models("tiny-llama")) == 11
    assert value(got, "inference_objective_output_tokens_sum", **models("tiny-llama")) == 8


async def test_a_stream_without_usage_counts_no_tokens(tmp_path: Path) -> None:
    upstreams = StreamingUpstreams(sse(capture("chat_stream.http")[2]))
    gw, _ = make_gateway(snapshot(tmp_path), upstreams)
    await gw.handle(FakeResponder({"model": "tiny-llama", "messages": [], "stream": True},
                                  path="/v1/chat/completions"), 80)
    got = samples(gw)
    assert value(got, "llm_d_epp_request_ttft_seconds_count", **llmd("tiny-llama"),
                 streaming="true") == 1
    assert value(got, "inference_objective_output_tokens_count", **models("tiny-llama")) == 0
    assert value(got, "llm_d_epp_request_streaming_tpot_seconds_count", **llmd("tiny-llama")) == 0


async def test_an_unknown_model_is_one_label_and_its_404_a_model_server_error(
        tmp_path: Path) -> None:
    error = capture("err_unknown_model.http")[2]
    gw, _ = make_gateway(snapshot(tmp_path), FakeUpstreams({A: [Answer(404, error)],
                                                           B: [Answer(404, error)]}))
    for name in ("gpt-4o", "gpt-5", "claude"):
        await gw.handle(FakeResponder({"model": name, "prompt": "x"}), 80)
    got = samples(gw)
    unknown = models("unknown")
    assert value(got, "inference_objective_request_total", **unknown, priority="0") == 3
    assert value(got, "inference_objective_request_error_total", **unknown,
                 error_code="ModelServerError") == 3
    # The model server's answer reached the client whole: its latency counts, as upstream.
    assert value(got, "inference_objective_request_duration_seconds_count", **unknown) == 3
    assert not any(("model_name", "gpt-4o") in labels for _, labels in got)
    # The gateway's own request counter is bounded the same way.
    assert value(got, "poolgate_requests_total", route="default/route", model="unknown",
                 status="404") == 3
    assert not any(("model", "gpt-4o") in labels for _, labels in got)


async def test_inference_model_and_objective_name_the_labels(tmp_path: Path) -> None:
    body = capture("completions.http")[2]
    upstreams = FakeUpstreams({A: [Answer(200, body)], B: [Answer(200, body)]})
    gw, _ = make_gateway(snapshot(tmp_path), upstreams)
    client = FakeResponder({"model": "food-review", "prompt": "x"})
    client.headers.raw.append(("x-gateway-inference-objective", "urgent"))
    client.headers = type(client.headers)(client.headers.raw, dict(client.headers.raw))
    await gw.handle(client, 80)
    assert orjson.loads(upstreams.sent[0][1])["model"] == "food-review-1"
    got = samples(gw)
    m = models("food-review", "food-review-1")
    assert value(got, "inference_objective_request_total", **m, priority="2") == 1
    assert value(got, "llm_d_epp_request_ttft_seconds_count",
                 **llmd("food-review", "food-review-1", "2"), streaming="false") == 1


async def test_errors_the_gateway_answers_get_the_inference_extension_codes(
        tmp_path: Path) -> None:
    gw, _ = make_gateway(snapshot(tmp_path), FakeUpstreams({A: [Answer(failure="connect")],
                                                           B: [Answer(failure="connect")]}))
    bad = FakeResponder()
    bad.body = b"{not json"
    await gw.handle(bad, 80)
    assert bad.status == 400
    await gw.handle(FakeResponder({"model": "food-review", "prompt": "x"}), 80)
    got = samples(gw)
    assert value(got, "inference_objective_request_error_total", **models(""),
                 error_code="BadRequest") == 1
    assert value(got, "inference_objective_request_error_total",
                 **models("food-review", "food-review-1"), error_code="ServiceUnavailable") == 1
    # Admitted and picked: counted as a request, though no model server answered.
    assert value(got, "inference_objective_request_total",
                 **models("food-review", "food-review-1"), priority="0") == 1
    assert value(got, "inference_objective_running_requests", model_name="food-review") == 0


async def test_every_pick_is_timed_and_plugins_on_sampled_picks(tmp_path: Path) -> None:
    body = capture("completions.http")[2]
    gw, _ = make_gateway(snapshot(tmp_path), FakeUpstreams({A: [Answer(200, body)],
                                                           B: [Answer(200, body)]}))
    for _ in range(PLUGIN_SAMPLE):
        await gw.handle(FakeResponder({"model": "food-review", "prompt": "x"}), 80)
    got = samples(gw)
    assert value(got, "inference_extension_scheduler_e2e_duration_seconds_count") == PLUGIN_SAMPLE
    plugin = {"extension_point": "Scorer", "plugin_type": "queue-scorer",
              "plugin_name": "queue-scorer"}
    assert value(got, "inference_extension_plugin_duration_seconds_count", **plugin) == 1
    assert value(got, "inference_extension_plugin_duration_seconds_count",
                 extension_point="Picker", plugin_type="max-score-picker",
                 plugin_name="max-score-picker") == 1


async def test_pool_gauges_average_the_endpoints_with_fresh_metrics(tmp_path: Path) -> None:
    gw, _ = make_gateway(snapshot(tmp_path), FakeUpstreams({}))
    now = time.monotonic()
    gw.store.update(A, Signals(waiting=4, running=2, kv_usage=0.5, scraped_at=now))
    gw.store.update(B, Signals(waiting=1, running=6, kv_usage=0.1, scraped_at=now - 60))  # stale
    [pool] = pool_gauges(gw)
    assert (pool.name, pool.ready, pool.average_queue, pool.average_running) == ("pool", 1, 4, 2)
    assert pool.average_kv_cache == 0.5 and list(pool.queues) == [(A, 4)]
    got = samples(gw)
    assert value(got, "inference_pool_ready_pods", name="pool") == 1
    assert value(got, "inference_pool_per_pod_queue_size", name="pool",
                 model_server_pod=A) == 4
    assert value(got, "inference_pool_average_kv_cache_utilization", name="pool") == 0.5


def _documented() -> set[str]:
    """The series names docs/metrics.md's tables list."""
    docs = (Path(__file__).resolve().parents[3] / "docs" / "metrics.md").read_text()
    return set(re.findall(r"^\| `([a-z0-9_:]+)` \|", docs, re.MULTILINE))


async def test_docs_metrics_md_lists_every_family_metrics_exports(tmp_path: Path) -> None:
    gw, _ = make_gateway(snapshot(tmp_path), FakeUpstreams({}))
    body, _ = gw.metrics.exposition()
    families = {f.name for f in text_string_to_metric_families(body.decode())}
    documented = _documented()
    # Counters are documented by their sample name.
    missing = {f for f in families if f not in documented and f"{f}_total" not in documented}
    assert not missing, f"docs/metrics.md does not list {sorted(missing)}"
