"""The simulator's settings (`poolgate sim` flags), resolved against a profile."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from poolgate.sim.faults import FaultSettings
from poolgate.sim.kv_events import KVEventsConfig
from poolgate.sim.profiles import DEFAULT_PROFILE, PROFILES, Profile


@dataclass(frozen=True)
class SimOptions:
    """Everything one replica needs; None means "the profile's default"."""

    model: str = "/model/llama2"
    served_model_names: tuple[str, ...] = ()
    lora_modules: tuple[tuple[str, str], ...] = ()
    max_loras: int = 1
    max_num_seqs: int | None = None
    max_model_len: int | None = None
    kv_cache_blocks: int | None = None
    block_size: int = 16
    max_waiting: int | None = None
    profile: str = DEFAULT_PROFILE
    time_scale: float = 1.0
    seed: int = 0
    stream_interval: int = 1
    startup_delay: float = 0.0
    faults: FaultSettings = field(default_factory=FaultSettings)
    kv_events: KVEventsConfig | None = None

    def __post_init__(self) -> None:
        if self.profile not in PROFILES:
            raise ValueError(
                f"unknown profile {self.profile!r}; choose one of {', '.join(sorted(PROFILES))}")
        if not self.time_scale > 0:
            raise ValueError(f"--time-scale must be greater than 0, got {self.time_scale}")
        for name, value in (("--max-loras", self.max_loras), ("--block-size", self.block_size),
                            ("--stream-interval", self.stream_interval),
                            ("--max-num-seqs", self.max_num_seqs),
                            ("--max-model-len", self.max_model_len),
                            ("--kv-cache-blocks", self.kv_cache_blocks)):
            if value is not None and value < 1:
                raise ValueError(f"{name} must be at least 1, got {value}")
        if self.max_waiting is not None and self.max_waiting < 0:
            raise ValueError(f"--max-waiting must be at least 0, got {self.max_waiting}")
        if self.startup_delay < 0:
            raise ValueError(f"--startup-delay must be at least 0, got {self.startup_delay}")
        names = [n for n, _ in self.lora_modules]
        if len(set(names)) != len(names):
            raise ValueError("--lora-modules names must be unique")
        tokens = self.num_blocks * self.block_size
        if self.model_len > tokens:
            raise ValueError(
                f"To serve at least one request with the model's max seq len ({self.model_len}), "
                f"{self.model_len} tokens of KV cache are needed, which is larger than the "
                f"available KV cache ({self.num_blocks} blocks x {self.block_size} = {tokens} "
                "tokens). Increase --kv-cache-blocks or decrease --max-model-len.")

    @property
    def profile_spec(self) -> Profile:
        """The chosen profile."""
        return PROFILES[self.profile]

    @property
    def model_names(self) -> tuple[str, ...]:
        """Served names; the first is reported in responses and metrics."""
        return self.served_model_names or (self.model,)

    @property
    def num_seqs(self) -> int:
        """Effective `--max-num-seqs`."""
        return self.max_num_seqs or self.profile_spec.max_num_seqs

    @property
    def model_len(self) -> int:
        """Effective `--max-model-len`."""
        return self.max_model_len or self.profile_spec.max_model_len

    @property
    def num_blocks(self) -> int:
        """Effective `--kv-cache-blocks`."""
        return self.kv_cache_blocks or self.profile_spec.kv_cache_blocks

    def replica_seed(self, index: int) -> int:
        """The seed of replica `index`, derived from `--seed` (stable across runs)."""
        return random.Random(f"poolgate-sim:{self.seed}:{index}").getrandbits(63)

    def cache_info(self) -> dict[str, str]:
        """Labels of `vllm:cache_config_info` (vLLM's set, with this replica's values)."""
        tokens = self.num_blocks * self.block_size
        return {
            "_block_size_resolved": "True", "block_size": str(self.block_size),
            "cache_dtype": "auto", "cache_hit_alignment_tokens": "None",
            "effective_attention_block_size": str(self.block_size),
            "enable_mamba_shared_prefix_checkpoint": "False", "enable_prefix_caching": "True",
            "gpu_memory_utilization": "0.9", "hash_block_size": "None",
            "is_attention_free": "False", "kv_cache_dtype_skip_layers": "[]",
            "kv_cache_layout": "None",
            "kv_cache_max_concurrency": str(round(tokens / self.model_len, 2)),
            "kv_cache_memory_bytes": str(tokens * self.profile_spec.kv_bytes_per_token),
            "kv_cache_size_tokens": str(tokens), "kv_offloading_backend": "native",
            "kv_offloading_size": "None", "kv_sharing_fast_prefill": "False",
            "mamba_block_size": "None", "mamba_cache_dtype": "auto", "mamba_cache_mode": "none",
            "mamba_page_size_padded": "None", "mamba_ssm_cache_dtype": "auto",
            "num_cpu_blocks": "None", "num_gpu_blocks": str(self.num_blocks),
            "num_gpu_blocks_override": "None", "prefix_cache_retention_interval": "0",
            "prefix_caching_hash_algo": "sha256", "prefix_match_unit": "None",
            "replayssm_buffer_len": "16", "skip_page_size_padded": "None",
            "sliding_window": "None", "swa_bounded_replay": "True",
            "use_kda_recoverssm": "False", "use_replayssm": "False",
            "user_specified_block_size": "True" if self.block_size != 16 else "False",
        }


def parse_lora_module(value: str) -> tuple[str, str]:
    """`name=path` as given to `--lora-modules`."""
    name, sep, path = value.partition("=")
    if not sep or not name or not path:
        raise ValueError(f"expected NAME=PATH, got {value!r}")
    return name, path
