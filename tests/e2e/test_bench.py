"""`poolgate bench` end to end against a small vLLM-shaped server defined in this module."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web

from poolgate.bench import (
    BenchConfig,
    LengthSpec,
    LoadConfig,
    Target,
    WorkloadConfig,
    read_json,
    run_comparison,
)
from tests.support.processes import ProcessGroup, free_port, poolgate_command

pytestmark = pytest.mark.e2e


@dataclass
class FakeVLLM:
    """Streams `max_tokens` chunks like vLLM 0.32, reports cached prompt tokens for a repeated
    system prompt, answers 503 for the model `overloaded`, and exposes a waiting-queue gauge."""

    token_delay: float = 0.001
    bodies: list[bytes] = field(default_factory=list)
    seen_prefixes: set[str] = field(default_factory=set)
    in_flight: int = 0

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self.generate)
        app.router.add_post("/v1/completions", self.generate)
        app.router.add_get("/v1/models", self.models)
        app.router.add_get("/metrics", self.metrics)
        return app

    async def models(self, request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": "tiny", "object": "model"}]})

    async def metrics(self, request: web.Request) -> web.Response:
        text = (
            "# TYPE vllm:num_requests_waiting gauge\n"
            f'vllm:num_requests_waiting{{engine="0",model_name="tiny"}} {float(self.in_flight)}\n'
            f'vllm:num_requests_running{{engine="0",model_name="tiny"}} 0.0\n'
        )
        return web.Response(text=text, content_type="text/plain")

    async def generate(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        self.bodies.append(raw)
        body = orjson.loads(raw)
        if body["model"] == "overloaded":
            return web.Response(
                status=503,
                text="upstream connect error or disconnect/reset before headers. reset reason: overflow",
            )
        if "messages" in body:
            system = next((m["content"] for m in body["messages"] if m["role"] == "system"), "")
            prompt_chars = sum(len(m["content"]) for m in body["messages"])
        else:
            system, prompt_chars = "", len(body["prompt"])
        cached = len(system) // 4 if system in self.seen_prefixes else 0
        self.seen_prefixes.add(system)
        n = body["max_tokens"]
        usage = {
            "prompt_tokens": prompt_chars // 4, "completion_tokens": n,
            "total_tokens": prompt_chars // 4 + n,
            "prompt_tokens_details": {"cached_tokens": cached},
        }
        if not body.get("stream"):
            return web.json_response({"object": "chat.completion", "choices": [], "usage": usage})
        self.in_flight += 1
        try:
            resp = web.StreamResponse(headers={"content-type": "text/event-stream; charset=utf-8"})
            await resp.prepare(request)
            role = {"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]}
            await resp.write(b"data: " + orjson.dumps(role) + b"\n\n")
            for i in range(n):
                await asyncio.sleep(self.token_delay)
                chunk = {"choices": [{"index": 0, "delta": {"content": f" t{i}"}, "finish_reason": None}]}
                await resp.write(b"data: " + orjson.dumps(chunk) + b"\n\n")
            await resp.write(b"data: " + orjson.dumps({"choices": [], "usage": usage}) + b"\n\n")
            await resp.write(b"data: [DONE]\n\n")
            await resp.write_eof()
            return resp
        finally:
            self.in_flight -= 1


@pytest.fixture
async def fake() -> AsyncIterator[tuple[FakeVLLM, str]]:
    server = FakeVLLM()
    runner = web.AppRunner(server.app())
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield server, f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def test_library_comparison_runs_the_identical_workload(fake: tuple[FakeVLLM, str]) -> None:
    server, url = fake
    config = BenchConfig(
        workload=WorkloadConfig(
            kind="shared-prefix", seed=3, groups=2, prompts_per_group=3, system_prompt_len=64,
            question_len=LengthSpec.fixed(8), output_len=LengthSpec.fixed(5),
        ),
        load=LoadConfig(rate=200.0, arrival="poisson", requests=24, warmup=2),
        scrape_urls=(f"{url}/metrics",),
        scrape_interval=0.05,
    )
    results = await run_comparison(
        config, [Target("first", url, cpu_pid=os.getpid()), Target("second", f"{url}/v1")]
    )
    assert [r.target.name for r in results] == ["first", "second"]
    # The model came from GET /v1/models; warm-up requests are not measured.
    assert all(r.config.workload.model == "tiny" for r in results)
    assert len(server.bodies) == 2 * (2 + 24)
    first = server.bodies[2:26]
    second = server.bodies[28:52]
    assert first == second
    for r in results:
        s = r.summary()
        assert (s.requests, s.completed, s.failed) == (24, 24, 0)
        assert s.total_output_tokens == 24 * 5
        assert s.ttft.count == 24 and s.ttft.p50 is not None and s.ttft.p50 > 0
        assert s.itl.count == 24 * 4
        assert s.tpot.p50 is not None and s.e2e.p99 is not None
        assert s.tpot.p50 < s.e2e.p99
        # Two system prompts, each cached after its first use (including warm-up).
        assert s.prefix_cache_hit_rate is not None and s.prefix_cache_hit_rate > 0.5
        assert s.queue is not None and len(s.queue.rounds) >= 1
    cpu = results[0].summary().cpu
    assert cpu is not None and cpu.requests == 24 and cpu.cpu_seconds >= 0
    assert results[1].summary().cpu is None


async def test_closed_loop_for_a_duration_and_non_streaming(fake: tuple[FakeVLLM, str]) -> None:
    _server, url = fake
    config = BenchConfig(
        workload=WorkloadConfig(kind="random", model="tiny", input_len=LengthSpec.parse("4:8"),
                                output_len=LengthSpec.fixed(3)),
        load=LoadConfig(concurrency=3, duration=0.3),
        stream=False,
    )
    (result,) = await run_comparison(config, [Target("t", url)])
    s = result.summary()
    assert s.completed == s.requests > 3
    assert s.failed == 0
    assert s.ttft.count == 0  # no stream, no TTFT
    assert s.e2e.count == s.completed
    assert s.total_output_tokens == 3 * s.completed
    assert sorted(r.index for r in result.records) == list(range(s.requests))


async def _wait_exit(proc: Any, timeout: float = 30.0) -> int:
    deadline = asyncio.get_running_loop().time() + timeout
    while proc.proc.poll() is None:
        assert asyncio.get_running_loop().time() < deadline, proc.output()
        await asyncio.sleep(0.05)
    return int(proc.proc.returncode)


async def test_cli_writes_a_well_formed_json_report(
    fake: tuple[FakeVLLM, str], procs: ProcessGroup, tmp_path: Path
) -> None:
    _server, url = fake
    report = tmp_path / "report.json"
    proc = procs.start(poolgate_command(
        "bench", "--compare", f"a={url}", "--compare", f"b={url}",
        "--workload", "lora-mix", "--models", "tiny=0.8,overloaded=0.2", "--seed", "1",
        "--input-len", "16", "--output-len", "4", "--rate", "100", "--arrival", "constant",
        "--requests", "20", "--api", "completions", "--json", str(report), "--raw",
    ))
    assert await _wait_exit(proc) == 0, proc.output()
    out = proc.output()
    assert "TTFT p99 (ms)" in out and "b/a" in out
    doc = read_json(report)
    assert [r["name"] for r in doc["runs"]] == ["a", "b"]
    assert doc["config"]["api"] == "completions"
    assert doc["config"]["workload"]["models"] == {"tiny": 0.8, "overloaded": 0.2}
    for run in doc["runs"]:
        summary = run["summary"]
        assert summary["requests"] == 20
        errors = summary["errors"]
        assert set(errors) == {"http_503"}
        assert summary["completed"] + errors["http_503"] == 20
        assert summary["total_output_tokens"] == 4 * summary["completed"]
        assert len(run["requests"]) == 20
        failed = [r for r in run["requests"] if r["error"]]
        assert all(r["model"] == "overloaded" and r["status"] == 503 for r in failed)
        assert "reset reason: overflow" in failed[0]["error_detail"]
    assert doc["runs"][0]["summary"]["errors"] == doc["runs"][1]["summary"]["errors"]


async def test_cli_reports_a_user_error_without_a_traceback(procs: ProcessGroup) -> None:
    proc = procs.start([sys.executable, "-m", "poolgate", "bench", "--url", "http://127.0.0.1:1",
                        "--requests", "1"])
    assert await _wait_exit(proc) == 2
    out = proc.output()
    assert "error: give exactly one of --rate" in out
    assert "Traceback" not in out
