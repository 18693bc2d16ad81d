"""Hardware/model profiles: the numbers behind the simulator's step-time and cache model.

A decode step costs ``step_base + step_per_seq * batch`` seconds; every prompt token that is not a
prefix-cache hit adds ``prefill_per_token`` seconds to the step that computes it; loading a LoRA
adapter into a GPU slot adds ``lora_load`` seconds to the step that needs it. All values are in
simulated seconds (``--time-scale`` divides them).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Profile:
    """Timing and capacity defaults of one simulated model server."""

    name: str
    step_base: float
    step_per_seq: float
    prefill_per_token: float
    lora_load: float
    kv_cache_blocks: int
    max_num_seqs: int
    max_model_len: int
    kv_bytes_per_token: int
    mean_output_tokens: int
    source: str

    def step_time(self, batch: int, uncached_prompt_tokens: int, lora_loads: int = 0) -> float:
        """Simulated duration of one engine step."""
        if batch <= 0:
            return 0.0
        return (
            self.step_base
            + self.step_per_seq * batch
            + self.prefill_per_token * uncached_prompt_tokens
            + self.lora_load * lora_loads
        )


H100_LLAMA3_8B = Profile(
    name="h100-llama3-8b",
    # 16 GB of bf16 weights read once per decode step from 3.35 TB/s HBM3 is ~4.8 ms; with kernel
    # launch and sampling overhead vLLM measures ~6-7 ms per step at batch 1 (~150 tok/s).
    step_base=0.0064,
    step_per_seq=0.0001,
    # ~16 GFLOP per prompt token (2 x 8B params) at ~35% of the 989 TFLOPS dense bf16 peak.
    prefill_per_token=0.00005,
    lora_load=0.025,
    # 80 GB x 0.9 gpu_memory_utilization - 16 GB weights - ~7 GB activations = ~52 GB of KV cache;
    # 128 KiB/token (32 layers x 8 KV heads x 128 dims x K,V x 2 bytes) -> ~420k tokens.
    kv_cache_blocks=26_000,
    max_num_seqs=256,
    max_model_len=8192,
    kv_bytes_per_token=131_072,
    mean_output_tokens=256,
    source=(
        "NVIDIA H100 SXM datasheet (3.35 TB/s HBM3, 989 TFLOPS bf16 dense); Llama-3-8B config "
        "(32 layers, 8 KV heads, head dim 128); vLLM single-stream benchmarks of ~150 tok/s"
    ),
)

A10_LLAMA2_7B = Profile(
    name="a10-llama2-7b",
    # 13.5 GB of fp16 weights over 600 GB/s GDDR6 is ~22.5 ms per decode step, plus overhead.
    step_base=0.024,
    step_per_seq=0.00025,
    # ~14 GFLOP per prompt token at ~40% of the 125 TFLOPS fp16 tensor peak.
    prefill_per_token=0.00028,
    lora_load=0.05,
    # 24 GB x 0.9 - 13.5 GB weights - ~1.5 GB activations = ~6.6 GB; 512 KiB/token
    # (32 layers x 32 KV heads x 128 dims x K,V x 2 bytes) -> ~12.9k tokens.
    kv_cache_blocks=800,
    max_num_seqs=256,
    max_model_len=4096,
    kv_bytes_per_token=524_288,
    mean_output_tokens=256,
    source=(
        "NVIDIA A10 datasheet (600 GB/s GDDR6, 125 TFLOPS fp16 tensor); Llama-2-7B config "
        "(32 layers, 32 KV heads, head dim 128); the seeds' llama2 + LoRA deployment"
    ),
)

FAST = Profile(
    name="fast",
    step_base=0.002,
    step_per_seq=0.0001,
    prefill_per_token=0.000005,
    lora_load=0.005,
    kv_cache_blocks=512,
    max_num_seqs=32,
    max_model_len=2048,
    kv_bytes_per_token=131_072,
    mean_output_tokens=32,
    source="for tests: small but nonzero delays and a small cache so that pressure is easy to reach",
)

ZERO = Profile(
    name="zero",
    step_base=0.0,
    step_per_seq=0.0,
    prefill_per_token=0.0,
    lora_load=0.0,
    kv_cache_blocks=26_000,
    max_num_seqs=256,
    max_model_len=8192,
    kv_bytes_per_token=131_072,
    mean_output_tokens=64,
    source="no simulated delay at all: measures the gateway's own overhead",
)

PROFILES: dict[str, Profile] = {p.name: p for p in (H100_LLAMA3_8B, A10_LLAMA2_7B, FAST, ZERO)}
DEFAULT_PROFILE = H100_LLAMA3_8B.name
