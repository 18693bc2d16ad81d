"""The ecosystem's metric families (issue 16, item 1) from a running `poolgate demo`: traffic of
every kind through the gateway, then every family of docs/metrics.md's Inference Extension /
llm-d tables is read back from `/metrics` with its labels and plausible values, and the token
counts equal the `usage` the simulator reported to the client."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from poolgate.scheduling.timed import PLUGIN_SAMPLE
from tests.support.processes import ProcessGroup, free_port, poolgate_command, wait_http

pytestmark = pytest.mark.e2e

POOL = "vllm-llama2-7b-pool"
BASE = "/model/llama2"  # an InferenceModel naming itself as its target
SPLIT = "tweet-summary"  # an InferenceModel split over two LoRA adapters
LLMD = {"model_name", "target_model_name", "fairness_id", "priority"}
MODEL = {"model_name", "target_model_name"}


@dataclass
class Sent:
    """What the client sent and got, per (model_name, target_model_name) label pair."""

    requests: int = 0
    request_bytes: int = 0
    response_bytes: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    with_usage: int = 0
    streamed: int = 0
    streamed_with_usage: int = 0  # and more than one output token (TPOT needs two)
    wall: float = 0.0
    targets: set[str] = field(default_factory=set)


Families = dict[str, list[tuple[str, dict[str, str], float]]]


def _families(admin: str) -> Families:
    with urllib.request.urlopen(f"{admin}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    out: Families = {}
    for family in text_string_to_metric_families(text):
        out[family.name] = [(s.name, s.labels, s.value) for s in family.samples]
    return out


def _value(families: Families, family: str, sample: str, **labels: str) -> float:
    return sum(v for name, lab, v in families.get(family, [])
               if name == sample and all(lab.get(k) == x for k, x in labels.items()))


def _label_names(families: Families, family: str) -> set[str]:
    names: set[str] = set()
    for _, labels, _ in families[family]:
        names |= set(labels) - {"le"}
    return names


async def _send(session: aiohttp.ClientSession, url: str, body: dict[str, Any],
                sent: dict[tuple[str, str], Sent], model_label: str) -> None:
    """One request; its usage and sizes are booked under (model_label, the served target)."""
    raw = json.dumps(body).encode()
    path = "/v1/chat/completions" if "messages" in body else "/v1/completions"
    started = time.monotonic()
    async with session.post(url + path, data=raw,
                            headers={"content-type": "application/json"}) as resp:
        payload = await resp.read()
        status = resp.status
    wall = time.monotonic() - started
    usage: dict[str, int] | None = None
    target = body["model"]
    if status == 200 and body.get("stream"):
        events = [json.loads(line[6:]) for line in payload.decode().split("\n")
                  if line.startswith("data: {")]
        target = events[0]["model"]
        usage = events[-1].get("usage")
    elif status == 200:
        obj = json.loads(payload)
        target, usage = obj["model"], obj["usage"]
    key = (model_label, target if status == 200 else model_label)
    s = sent[key]
    s.requests += 1
    s.request_bytes += len(raw)
    s.response_bytes += len(payload)
    s.wall += wall
    if body.get("stream") and status == 200:
        s.streamed += 1
    if usage is not None:
        s.prompt_tokens += usage["prompt_tokens"]
        s.completion_tokens += usage["completion_tokens"]
        s.with_usage += 1
        if body.get("stream") and usage["completion_tokens"] > 1:
            s.streamed_with_usage += 1


async def _traffic(url: str) -> tuple[dict[tuple[str, str], Sent], float]:
    sent: dict[tuple[str, str], Sent] = defaultdict(Sent)
    chat = [{"role": "user", "content": "tell me about the gateway api inference extension"}]
    started = time.monotonic()
    async with aiohttp.ClientSession() as session:
        jobs = []
        for i in range(12):  # not streamed: usage in the JSON body
            jobs.append(_send(session, url, {"model": BASE, "messages": chat,
                                             "max_tokens": 4 + i % 5}, sent, BASE))
        for i in range(8):  # streamed with the final usage chunk
            jobs.append(_send(session, url, {
                "model": SPLIT, "prompt": f"summarize tweet {i}: the weather is fine",
                "max_tokens": 6 + i % 3, "stream": True,
                "stream_options": {"include_usage": True}}, sent, SPLIT))
        for _ in range(3):  # streamed without usage: no tokens may be counted
            jobs.append(_send(session, url, {"model": BASE, "messages": chat, "max_tokens": 5,
                                             "stream": True}, sent, BASE))
        for name in ("gpt-4o", "gpt-5"):  # no InferenceModel, not served: one label
            jobs.append(_send(session, url, {"model": name, "messages": chat, "max_tokens": 3},
                              sent, "unknown"))
        await asyncio.gather(*jobs)
        async with session.post(url + "/v1/completions", data=b"{not json",
                                headers={"content-type": "application/json"}) as resp:
            assert resp.status == 400
    return sent, time.monotonic() - started


async def test_every_ecosystem_family_from_demo_traffic(procs: ProcessGroup) -> None:
    port, admin_port = free_port(), free_port()
    demo = procs.start(poolgate_command(
        "demo", "--port", str(port), "--admin-port", str(admin_port), "--replicas", "2",
        "--time-scale", "4", "--seed", "5", "--access-log", "off"))
    url, admin = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{admin_port}"
    wait_http(f"{admin}/readyz", proc=demo, timeout=30)
    deadline = time.monotonic() + 10
    while _value(_families(admin), "inference_pool_ready_pods", "inference_pool_ready_pods",
                 name=POOL) < 2:
        assert time.monotonic() < deadline, "the replicas' metrics were never scraped"
        await asyncio.sleep(0.1)

    sent, elapsed = await _traffic(url)
    f = _families(admin)

    # -- per model: the Inference Extension's inference_objective_* -----------------------------
    assert set(sent) == {(BASE, BASE), (SPLIT, "tweet-summary-1"), (SPLIT, "tweet-summary-2"),
                         ("unknown", "unknown")}
    assert _label_names(f, "inference_objective_request") == MODEL | {"priority"}
    for family in ("inference_objective_request_duration_seconds",
                   "inference_objective_request_sizes", "inference_objective_response_sizes",
                   "inference_objective_input_tokens", "inference_objective_output_tokens",
                   "inference_objective_normalized_time_per_output_token_seconds"):
        assert _label_names(f, family) == MODEL, family
    assert _label_names(f, "inference_objective_request_error") == MODEL | {"error_code"}
    assert _label_names(f, "inference_objective_running_requests") == {"model_name"}
    for (model, target), s in sent.items():
        labels = {"model_name": model, "target_model_name": target}
        h = "inference_objective_"
        assert _value(f, h + "request", h + "request_total", **labels, priority="0") \
            == s.requests, labels
        assert _value(f, h + "request_sizes", h + "request_sizes_sum", **labels) \
            == s.request_bytes
        assert _value(f, h + "request_sizes", h + "request_sizes_count", **labels) == s.requests
        # Every answer reached the client whole: its duration and size are counted.
        d = h + "request_duration_seconds"
        assert _value(f, d, d + "_count", **labels) == s.requests
        assert 0 < _value(f, d, d + "_sum", **labels) <= s.wall + 0.05 * s.requests
        assert _value(f, h + "response_sizes", h + "response_sizes_sum", **labels) \
            == s.response_bytes
        # Tokens: exactly what the simulator reported in `usage`, nothing for the others.
        assert _value(f, h + "input_tokens", h + "input_tokens_sum", **labels) == s.prompt_tokens
        assert _value(f, h + "input_tokens", h + "input_tokens_count", **labels) == s.with_usage
        assert _value(f, h + "output_tokens", h + "output_tokens_sum", **labels) \
            == s.completion_tokens
        assert _value(f, h + "output_tokens", h + "output_tokens_count", **labels) \
            == s.with_usage
        n = h + "normalized_time_per_output_token_seconds"
        assert _value(f, n, n + "_count", **labels) == s.with_usage
        if s.with_usage:
            per_token = _value(f, n, n + "_sum", **labels) / s.with_usage
            assert 0 < per_token < _value(f, d, d + "_sum", **labels) / s.requests
    assert sent["unknown", "unknown"].with_usage == 0
    assert _value(f, "inference_objective_request_error", "inference_objective_request_error_total",
                  model_name="unknown", target_model_name="unknown",
                  error_code="ModelServerError") == 2
    assert _value(f, "inference_objective_request_error", "inference_objective_request_error_total",
                  model_name="", target_model_name="", error_code="BadRequest") == 1
    assert sum(v for _, labels, v in f["inference_objective_request_error"]
               if labels["model_name"] != "unknown" and labels["error_code"] != "BadRequest") == 0
    # Nothing is running any more; the client's own names never became labels.
    assert all(v == 0 for _, _, v in f["inference_objective_running_requests"])
    assert {lab["model_name"] for _, lab, _ in f["inference_objective_running_requests"]} \
        == {BASE, SPLIT, "unknown"}
    assert not any(lab.get("model_name") in ("gpt-4o", "gpt-5") or
                   lab.get("target_model_name") in ("gpt-4o", "gpt-5")
                   for samples in f.values() for _, lab, _ in samples)

    # -- per model: llm-d's TTFT, ITL and TPOT measured on the relayed stream -------------------
    ttft, itl, tpot = ("llm_d_epp_request_ttft_seconds",
                       "llm_d_epp_request_streaming_itl_seconds",
                       "llm_d_epp_request_streaming_tpot_seconds")
    assert _label_names(f, ttft) == LLMD | {"streaming"}
    assert _label_names(f, itl) == LLMD and _label_names(f, tpot) == LLMD
    for (model, target), s in sent.items():
        labels = {"model_name": model, "target_model_name": target,
                  "fairness_id": "default-flow", "priority": "0"}
        d = "inference_objective_request_duration_seconds"
        duration = _value(f, d, d + "_sum", model_name=model, target_model_name=target)
        streamed = _value(f, ttft, ttft + "_count", **labels, streaming="true")
        unary = _value(f, ttft, ttft + "_count", **labels, streaming="false")
        assert (streamed, unary) == (s.streamed, s.requests - s.streamed), labels
        first = _value(f, ttft, ttft + "_sum", **labels)
        assert 0 < first <= duration
        if s.streamed:
            # The gaps between chunks: several per stream, each shorter than the whole stream.
            assert _value(f, itl, itl + "_count", **labels) >= s.streamed
            assert 0 < _value(f, itl, itl + "_sum", **labels) < duration
        assert _value(f, tpot, tpot + "_count", **labels) == s.streamed_with_usage
        if s.streamed_with_usage:
            per_token = _value(f, tpot, tpot + "_sum", **labels) / s.streamed_with_usage
            assert 0 < per_token < duration / s.requests

    # -- per pool: inference_pool_* -------------------------------------------------------------
    assert _value(f, "inference_pool_ready_pods", "inference_pool_ready_pods", name=POOL) == 2
    for family in ("inference_pool_average_kv_cache_utilization",
                   "inference_pool_average_queue_size", "inference_pool_average_running_requests"):
        [(_, labels, v)] = f[family]
        assert labels == {"name": POOL} and v >= 0, family
    assert 0 <= f["inference_pool_average_kv_cache_utilization"][0][2] <= 1
    per_pod = f["inference_pool_per_pod_queue_size"]
    assert len(per_pod) == 2 and all(lab["name"] == POOL and v >= 0 for _, lab, v in per_pod)
    assert {lab["model_server_pod"].rsplit(":", 1)[0] for _, lab, _ in per_pod} == {"127.0.0.1"}

    # -- the endpoint picker's latency ----------------------------------------------------------
    e2e = "inference_extension_scheduler_e2e_duration_seconds"
    picks = _value(f, e2e, e2e + "_count")
    admitted = sum(s.requests for s in sent.values())
    assert picks >= admitted  # two replicas: every attempt is picked
    assert 0 < _value(f, e2e, e2e + "_sum") / picks < 0.05
    plugin = "inference_extension_plugin_duration_seconds"
    assert _label_names(f, plugin) == {"extension_point", "plugin_type", "plugin_name"}
    points = {lab["extension_point"] for name, lab, _ in f[plugin] if name == plugin + "_count"}
    assert points == {"Filter", "Scorer", "Picker"}
    sampled = _value(f, plugin, plugin + "_count", extension_point="Picker")
    assert sampled == picks // PLUGIN_SAMPLE
    assert elapsed > 0
