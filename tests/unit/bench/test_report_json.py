from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from poolgate import __version__
from poolgate.bench.errors import BenchError
from poolgate.bench.report_json import SCHEMA, SCHEMA_VERSION, read_json, write_json

from ._builders import rec, result

DIST_KEYS = {"count", "mean", "p50", "p90", "p99", "min", "max"}
SUMMARY_KEYS = {
    "requests", "completed", "failed", "errors", "duration", "request_throughput",
    "output_throughput", "input_throughput", "total_prompt_tokens", "total_output_tokens",
    "total_cached_tokens", "prefix_cache_hit_rate", "ttft", "tpot", "itl", "e2e",
    "scheduler_lateness", "cpu", "queue",
}
RECORD_KEYS = {
    "index", "model", "group", "prompt_len", "max_tokens", "scheduled", "sent", "finished",
    "status", "error", "error_detail", "ttft", "tpot", "e2e", "itl", "output_tokens",
    "prompt_tokens", "cached_tokens",
}


def test_report_has_the_documented_shape(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "report.json"
    write_json([result("a"), result("b", [rec(0, error="http_503", status=503)])], path)
    doc = orjson.loads(path.read_bytes())
    assert doc["schema"] == SCHEMA == "poolgate.bench"
    assert doc["schema_version"] == SCHEMA_VERSION == 1
    assert doc["poolgate_version"] == __version__
    assert set(doc) == {"schema", "schema_version", "poolgate_version", "created_at", "config", "runs"}
    cfg = doc["config"]
    assert set(cfg) >= {"workload", "load", "api", "stream", "headers", "timeout"}
    assert cfg["workload"]["output_len"] == "128"
    assert cfg["headers"] == {"Authorization": "<redacted>", "x-gateway-inference-objective": "hi"}
    assert [r["name"] for r in doc["runs"]] == ["a", "b"]
    run = doc["runs"][0]
    assert run["endpoint"] == "http://127.0.0.1:9/v1/chat/completions"
    assert "requests" not in run
    summary = run["summary"]
    assert set(summary) == SUMMARY_KEYS
    for key in ("ttft", "tpot", "itl", "e2e", "scheduler_lateness"):
        assert set(summary[key]) == DIST_KEYS
    assert doc["runs"][1]["summary"]["errors"] == {"http_503": 1}
    assert read_json(path) == doc


def test_raw_adds_every_request_record(tmp_path: Path) -> None:
    path = tmp_path / "raw.json"
    write_json([result("a")], path, raw=True)
    records = orjson.loads(path.read_bytes())["runs"][0]["requests"]
    assert len(records) == 2
    assert set(records[0]) == RECORD_KEYS
    assert records[0]["tpot"] == pytest.approx(0.1)


def test_read_json_rejects_other_documents(tmp_path: Path) -> None:
    other = tmp_path / "other.json"
    other.write_bytes(b'{"schema": "something"}')
    with pytest.raises(BenchError, match="not a poolgate bench report"):
        read_json(other)
    future = tmp_path / "future.json"
    future.write_bytes(orjson.dumps({"schema": SCHEMA, "schema_version": 99}))
    with pytest.raises(BenchError, match="schema version 99"):
        read_json(future)
    with pytest.raises(BenchError, match="cannot read"):
        read_json(tmp_path / "missing.json")


def test_write_json_reports_unwritable_paths(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(BenchError, match="cannot write the JSON report"):
        write_json([result()], blocker / "report.json")
