"""The one table that maps model-server metric names to the signals poolgate reads.

Each signal lists its metric names in order of preference: the first name present on a page
wins, so `vllm:kv_cache_usage_perc` is used when present and the pre-0.10 name
`vllm:gpu_cache_usage_perc` only as a fallback. A server kind is recognised by the prefix of its
queue metric (`vllm:` or `sglang:`).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class MetricNames:
    """The metric names one kind of model server publishes for each signal."""

    server: str
    waiting: tuple[str, ...]
    running: tuple[str, ...]
    kv_usage: tuple[str, ...]
    # A gauge whose value is a timestamp, one series per label set; the newest series is current.
    lora_info: str | None
    # A gauge (value 1) whose labels carry the KV-cache geometry.
    cache_config: str | None


VLLM = MetricNames(
    server="vllm",
    waiting=("vllm:num_requests_waiting",),
    running=("vllm:num_requests_running",),
    kv_usage=("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc"),
    lora_info="vllm:lora_requests_info",
    cache_config="vllm:cache_config_info",
)

SGLANG = MetricNames(
    server="sglang",
    waiting=("sglang:num_queue_reqs",),
    running=("sglang:num_running_reqs",),
    kv_usage=("sglang:token_usage",),
    lora_info=None,
    cache_config=None,
)

SERVERS: tuple[MetricNames, ...] = (VLLM, SGLANG)

# Label names inside the LoRA and cache-config info series.
LORA_RUNNING_LABEL = "running_lora_adapters"
LORA_WAITING_LABEL = "waiting_lora_adapters"
LORA_MAX_LABEL = "max_lora"
BLOCK_SIZE_LABEL = "block_size"
NUM_BLOCKS_LABEL = "num_gpu_blocks"
