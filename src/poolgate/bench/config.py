"""What a benchmark run does: workload, load shape, request options, targets; validated up front."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

from poolgate.bench.errors import BenchError
from poolgate.bench.lengths import LengthSpec

WorkloadKind = Literal["shared-prefix", "random", "lora-mix"]
ArrivalKind = Literal["poisson", "constant"]
ApiKind = Literal["chat", "completions"]

WORKLOAD_KINDS: tuple[WorkloadKind, ...] = ("shared-prefix", "random", "lora-mix")
ARRIVAL_KINDS: tuple[ArrivalKind, ...] = ("poisson", "constant")
API_KINDS: tuple[ApiKind, ...] = ("chat", "completions")


@dataclass(frozen=True, slots=True)
class ModelWeight:
    """One entry of a model/adapter mix: requests name `name` with probability ∝ `weight`."""

    name: str
    weight: float


def parse_model_mix(text: str) -> tuple[ModelWeight, ...]:
    """Parse `base=0.5,sql-lora=0.3` into a mix; weights need not sum to 1."""
    mix: list[ModelWeight] = []
    for item in (p.strip() for p in text.split(",")):
        if not item:
            continue
        name, sep, weight_s = item.rpartition("=")
        if not sep or not name:
            raise BenchError(f"model mix entry {item!r}: expected NAME=WEIGHT")
        try:
            weight = float(weight_s)
        except ValueError:
            raise BenchError(f"model mix entry {item!r}: weight {weight_s!r} is not a number") from None
        if not math.isfinite(weight) or weight < 0:
            raise BenchError(f"model mix entry {item!r}: weight must be a finite number >= 0")
        mix.append(ModelWeight(name, weight))
    if not mix or sum(m.weight for m in mix) <= 0:
        raise BenchError(f"model mix {text!r}: needs at least one entry with a positive weight")
    if len({m.name for m in mix}) != len(mix):
        raise BenchError(f"model mix {text!r}: a model is listed twice")
    return tuple(mix)


@dataclass(frozen=True, slots=True)
class WorkloadConfig:
    """The seeded request sequence; identical for every target of a comparison."""

    kind: WorkloadKind = "shared-prefix"
    seed: int = 0
    model: str | None = None
    models: tuple[ModelWeight, ...] = ()
    # shared-prefix
    groups: int = 8
    prompts_per_group: int = 16
    system_prompt_len: int = 1024
    # Group popularity: 0 picks groups uniformly; s > 0 picks group g (0-based) with probability
    # proportional to 1 / (g + 1)^s (Zipf), so group 0 is the hottest.
    group_zipf: float = 0.0
    question_len: LengthSpec = field(default_factory=lambda: LengthSpec.fixed(64))
    # random and lora-mix
    input_len: LengthSpec = field(default_factory=lambda: LengthSpec.fixed(256))
    # every workload
    output_len: LengthSpec = field(default_factory=lambda: LengthSpec.fixed(128))

    def __post_init__(self) -> None:
        if self.kind not in WORKLOAD_KINDS:
            raise BenchError(f"unknown workload {self.kind!r}; choose one of {', '.join(WORKLOAD_KINDS)}")
        if self.kind == "lora-mix" and not self.models:
            raise BenchError("the lora-mix workload needs --models NAME=WEIGHT,...")
        if self.kind == "shared-prefix":
            if self.groups < 1 or self.prompts_per_group < 1:
                raise BenchError("--groups and --prompts-per-group must be at least 1")
            if self.system_prompt_len < 0:
                raise BenchError("--system-prompt-len must be >= 0")
            if not (math.isfinite(self.group_zipf) and self.group_zipf >= 0):
                raise BenchError(f"--group-zipf must be a finite number >= 0, got {self.group_zipf}")

    def group_weights(self) -> list[float]:
        """The relative popularity of each shared-prefix group (all 1.0 when uniform)."""
        return [1.0 / (g + 1) ** self.group_zipf for g in range(self.groups)]


@dataclass(frozen=True, slots=True)
class LoadConfig:
    """How requests arrive: open loop at `rate` or closed loop at `concurrency`; how many or how long."""

    arrival: ArrivalKind = "poisson"
    rate: float | None = None
    concurrency: int | None = None
    duration: float | None = None
    requests: int | None = None
    warmup: int = 0

    def __post_init__(self) -> None:
        if self.arrival not in ARRIVAL_KINDS:
            raise BenchError(f"unknown arrival {self.arrival!r}; choose poisson or constant")
        if (self.rate is None) == (self.concurrency is None):
            raise BenchError("give exactly one of --rate (open loop) or --concurrency (closed loop)")
        if self.rate is not None and not (math.isfinite(self.rate) and self.rate > 0):
            raise BenchError(f"--rate must be a positive number of requests/s, got {self.rate}")
        if self.concurrency is not None and self.concurrency < 1:
            raise BenchError(f"--concurrency must be at least 1, got {self.concurrency}")
        if (self.duration is None) == (self.requests is None):
            raise BenchError("give exactly one of --duration SECONDS or --requests N")
        if self.duration is not None and not (math.isfinite(self.duration) and self.duration > 0):
            raise BenchError(f"--duration must be positive, got {self.duration}")
        if self.requests is not None and self.requests < 1:
            raise BenchError(f"--requests must be at least 1, got {self.requests}")
        if self.warmup < 0:
            raise BenchError(f"--warmup must be >= 0, got {self.warmup}")

    @property
    def open_loop(self) -> bool:
        return self.rate is not None


@dataclass(frozen=True, slots=True)
class BenchConfig:
    """Everything that defines a run except the target; recorded verbatim in the JSON report."""

    workload: WorkloadConfig = field(default_factory=WorkloadConfig)
    load: LoadConfig = field(default_factory=lambda: LoadConfig(rate=10.0, requests=100))
    api: ApiKind = "chat"
    stream: bool = True
    ignore_eos: bool = True
    extra_body: Mapping[str, Any] = field(default_factory=dict)
    headers: tuple[tuple[str, str], ...] = ()
    timeout: float = 600.0
    scrape_urls: tuple[str, ...] = ()
    scrape_interval: float = 0.5
    cpu_children: bool = False

    def __post_init__(self) -> None:
        if self.api not in API_KINDS:
            raise BenchError(f"unknown --api {self.api!r}; choose chat or completions")
        if not (self.timeout > 0):
            raise BenchError(f"--timeout must be positive, got {self.timeout}")
        if not (self.scrape_interval > 0):
            raise BenchError(f"--scrape-interval must be positive, got {self.scrape_interval}")
        for url in self.scrape_urls:
            check_http_url(url, "--scrape-url")


def check_http_url(url: str, what: str) -> None:
    """Raise a BenchError unless `url` is an absolute http(s) URL with a host."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise BenchError(f"{what} {url!r}: expected an http:// or https:// URL with a host")


@dataclass(frozen=True, slots=True)
class Target:
    """An OpenAI-compatible server to benchmark, and optionally the PID whose CPU time to measure."""

    name: str
    url: str
    cpu_pid: int | None = None

    def __post_init__(self) -> None:
        if not self.name:
            raise BenchError(f"target {self.url!r} needs a name")
        check_http_url(self.url, f"target {self.name!r}")

    def endpoint(self, api: ApiKind) -> str:
        """The full URL to POST to: a base URL gets `/v1/chat/completions` or `/v1/completions`."""
        path = "chat/completions" if api == "chat" else "completions"
        base = self.url.rstrip("/")
        if base.endswith(("/chat/completions", "/completions")):
            return base
        if base.endswith("/v1"):
            return f"{base}/{path}"
        return f"{base}/v1/{path}"

    def models_url(self) -> str:
        """Where `GET /v1/models` lives for this target."""
        base = self.url.rstrip("/")
        for suffix in ("/chat/completions", "/completions"):
            base = base.removesuffix(suffix)
        return f"{base}/models" if base.endswith("/v1") else f"{base}/v1/models"


def parse_target(text: str, default_name: str) -> Target:
    """Parse `NAME=URL` (or a bare URL, named `default_name`)."""
    name, sep, url = text.partition("=")
    if not sep or "://" in name:
        return Target(default_name, text)
    return Target(name.strip(), url.strip())
