from __future__ import annotations

from typing import Any

import pytest

from poolgate.bench.config import (
    BenchConfig,
    LoadConfig,
    ModelWeight,
    Target,
    WorkloadConfig,
    parse_model_mix,
    parse_target,
)
from poolgate.bench.errors import BenchError


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        pytest.param({"requests": 1}, "exactly one of --rate", id="no-rate-or-concurrency"),
        pytest.param({"rate": 1, "concurrency": 2, "requests": 1}, "exactly one of --rate", id="both"),
        pytest.param({"rate": 1}, "--duration SECONDS or --requests", id="no-stop"),
        pytest.param({"rate": 1, "requests": 1, "duration": 1}, "--duration SECONDS or --requests", id="two-stops"),
        pytest.param({"rate": 0, "requests": 1}, "--rate must be a positive", id="zero-rate"),
        pytest.param({"concurrency": 0, "requests": 1}, "--concurrency must be at least 1", id="zero-concurrency"),
        pytest.param({"rate": 1, "requests": 0}, "--requests must be at least 1", id="zero-requests"),
        pytest.param({"rate": 1, "duration": -1}, "--duration must be positive", id="negative-duration"),
        pytest.param({"rate": 1, "requests": 1, "warmup": -1}, "--warmup", id="negative-warmup"),
        pytest.param({"rate": 1, "requests": 1, "arrival": "bursty"}, "poisson or constant", id="arrival"),
    ],
)
def test_load_config_rejects_bad_combinations(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(BenchError, match=message):
        LoadConfig(**kwargs)


def test_workload_config_checks() -> None:
    with pytest.raises(BenchError, match="lora-mix workload needs --models"):
        WorkloadConfig(kind="lora-mix")
    with pytest.raises(BenchError, match="unknown workload"):
        WorkloadConfig(kind="zipf")  # type: ignore[arg-type]
    with pytest.raises(BenchError, match="--groups"):
        WorkloadConfig(groups=0)


def test_bench_config_checks() -> None:
    with pytest.raises(BenchError, match="--api"):
        BenchConfig(api="embeddings")  # type: ignore[arg-type]
    with pytest.raises(BenchError, match="--timeout"):
        BenchConfig(timeout=0)
    with pytest.raises(BenchError, match="--scrape-url"):
        BenchConfig(scrape_urls=("localhost:8000/metrics",))


def test_model_mix_parsing() -> None:
    assert parse_model_mix("base=0.5, sql-lora=0.3") == (
        ModelWeight("base", 0.5), ModelWeight("sql-lora", 0.3),
    )
    for bad, message in [("base", "NAME=WEIGHT"), ("a=x", "not a number"), ("a=-1", ">= 0"),
                         ("a=0", "positive"), ("a=1,a=2", "twice")]:
        with pytest.raises(BenchError, match=message):
            parse_model_mix(bad)


@pytest.mark.parametrize(
    ("url", "api", "expected"),
    [
        pytest.param("http://h:1", "chat", "http://h:1/v1/chat/completions", id="base"),
        pytest.param("http://h:1/", "completions", "http://h:1/v1/completions", id="base-slash"),
        pytest.param("http://h:1/v1", "chat", "http://h:1/v1/chat/completions", id="v1"),
        pytest.param("http://h:1/x/v1/completions", "chat", "http://h:1/x/v1/completions", id="full"),
    ],
)
def test_target_endpoint(url: str, api: Any, expected: str) -> None:
    assert Target("t", url).endpoint(api) == expected


def test_target_models_url_and_parsing() -> None:
    assert Target("t", "http://h:1/v1/chat/completions").models_url() == "http://h:1/v1/models"
    assert Target("t", "http://h:1").models_url() == "http://h:1/v1/models"
    assert parse_target("gw=http://h:1", "x") == Target("gw", "http://h:1")
    assert parse_target("http://h:1/?a=b", "x") == Target("x", "http://h:1/?a=b")
    with pytest.raises(BenchError, match="http"):
        parse_target("gw=ftp://h", "x")
