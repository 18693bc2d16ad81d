"""What each experiment sends and to what fleet, in a full and a `--quick` version."""

from __future__ import annotations

from dataclasses import dataclass

from benchmarks.suite.commands import SimSpec

ROUTING_PROFILES = ("default", "round-robin", "random", "least-in-flight", "prefix-only")
PICK_SIZES = (8, 64, 512)


@dataclass(frozen=True, slots=True)
class OverheadSettings:
    """Issue 3 / issue 7 (a): tiny non-streaming completions, closed loop, zero-latency fleet."""

    fleet: SimSpec
    concurrency: int
    requests: int
    warmup: int
    c1_requests: int  # an unloaded run at concurrency 1: the added latency without queueing
    rounds: int = 1  # interleaved repeats of the whole list; rows are per-figure medians
    input_len: int = 8
    output_len: int = 1
    seed: int = 0


@dataclass(frozen=True, slots=True)
class RoutingSettings:
    """Issue 4 / issue 7 (b): shared-prefix chat, open loop above round-robin's capacity."""

    fleet: SimSpec
    rate: float  # requests/s of real time
    duration: float  # seconds of sending
    warmup: int
    groups: int
    prompts_per_group: int
    system_prompt_len: int
    question_len: int
    output_len: int
    profiles: tuple[str, ...] = ROUTING_PROFILES
    scrape_interval: float = 0.5
    seed: int = 0


@dataclass(frozen=True, slots=True)
class PickSettings:
    """Issue 4: pick cost at several fleet sizes with a warm prefix index."""

    sizes: tuple[int, ...]
    picks: int
    repeats: int = 1
    profiles: tuple[str, ...] = ("default",)


def overhead_settings(quick: bool) -> OverheadSettings:
    return OverheadSettings(
        fleet=SimSpec(replicas=1, profile="zero"),
        concurrency=64,
        requests=800 if quick else 5000,
        warmup=100 if quick else 300,
        c1_requests=100 if quick else 400,
        rounds=1 if quick else 3,
    )


def routing_settings(quick: bool) -> RoutingSettings:
    return RoutingSettings(
        fleet=SimSpec(replicas=8, profile="h100-llama3-8b", time_scale=0.2,
                      kv_cache_blocks=1024),
        rate=26.0,
        duration=10.0 if quick else 45.0,
        warmup=32 if quick else 64,
        groups=16,
        prompts_per_group=16,
        system_prompt_len=2048,
        question_len=64,
        output_len=64,
        # --quick keeps the two runs issue 4's targets compare.
        profiles=("default", "round-robin") if quick else ROUTING_PROFILES,
    )


def pick_settings(quick: bool) -> PickSettings:
    return PickSettings(sizes=PICK_SIZES, picks=500 if quick else 2000, repeats=1 if quick else 3,
                        profiles=("default",) if quick else ("default", "prefix-only"))
