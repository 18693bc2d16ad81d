"""Measuring the cost of one `Scheduler.pick` (plus `on_picked`) with a warm prefix index.

`python -m benchmarks.pick [PROFILE]` (from the repository root) prints it at 8, 64 and 512
endpoints; the benchmark suite's pick section runs `python -m benchmarks.pick --json ...` once
per build (plain, and compiled by mypyc with the compiled tree first on PYTHONPATH).

The fleet is synthetic: every endpoint has fresh vLLM-like signals (varied queues, KV use, one
LoRA adapter on some), the prefix index holds the blocks of earlier requests, and each measured
request shares a ~1,000-character system prompt with the others and adds its own ~400-character
question (22 hashed blocks of 64 characters).
"""

from __future__ import annotations

import json
import random
import sys
import time

from poolgate.datalayer.signals import Signals
from poolgate.datalayer.store import EndpointStore
from poolgate.scheduling.builder import build_scheduler
from poolgate.scheduling.interfaces import LLMRequest

_SYSTEM = "You are a careful assistant. Answer briefly and cite the manual section. " * 14


def _request(rng: random.Random, i: int) -> LLMRequest:
    question = " ".join(f"word{rng.randrange(10_000)}" for _ in range(50))
    return LLMRequest(model="llama", messages=[
        {"role": "system", "content": _SYSTEM},
        {"role": "user", "content": f"Question {i}: {question}"},
    ], request_id=str(i))


def measure_pick_cost(n_endpoints: int, profile: str = "default", picks: int = 2000,
                      seed: int = 1, rounds: int = 5) -> float:
    """Microseconds per `pick` + `on_picked` at `n_endpoints` endpoints with a warm index.

    The best of `rounds` rounds of `picks / rounds` requests each, as `timeit` does, so that
    other work on the machine does not inflate the figure.
    """
    rng = random.Random(seed)
    store = EndpointStore()
    addresses = [f"10.0.{i // 250}.{i % 250}:8000" for i in range(n_endpoints)]
    now = 1000.0
    for address in addresses:
        store.update(address, Signals(
            waiting=rng.randrange(0, 8), running=rng.randrange(0, 16),
            kv_usage=rng.random(), lora_running=frozenset({"sql-lora"}) if rng.random() < 0.3
            else frozenset(), max_lora=4, block_size=16, num_blocks=8192, scraped_at=now))
        for _ in range(rng.randrange(0, 3)):
            store.begin(address, streamed=rng.random() < 0.5)
    scheduler = build_scheduler(profile, store, seed=seed)
    warm = [_request(rng, i) for i in range(max(200, n_endpoints * 4))]
    for req in warm:
        scheduler.on_picked(req, scheduler.pick(req, addresses, now).address)
    per_round = max(1, picks // rounds)
    best = float("inf")
    for r in range(rounds):
        measured = [_request(rng, r * per_round + i) for i in range(per_round)]
        start = time.perf_counter()
        for req in measured:
            scheduler.on_picked(req, scheduler.pick(req, addresses, now).address)
        best = min(best, (time.perf_counter() - start) / per_round * 1e6)
    return best


def main(argv: list[str]) -> None:
    """Print one line per fleet size for the profile named in `argv` (default `default`).

    `--json PROFILE PICKS SIZE...` prints instead one JSON object: the microseconds per pick by
    size and the file `Scheduler` was loaded from (a `.so` when poolgate is the compiled build),
    for the benchmark suite, which runs it in a process of its own per build.
    """
    if argv[:1] == ["--json"]:
        profile, picks, sizes = argv[1], int(argv[2]), [int(n) for n in argv[3:]]
        from poolgate.scheduling import scheduler
        costs = {str(n): measure_pick_cost(n, profile, picks=picks) for n in sizes}
        print(json.dumps({"us_per_pick": costs, "module": scheduler.__file__}))
        return
    profile = argv[0] if argv else "default"
    for n in (8, 64, 512):
        print(f"profile={profile} endpoints={n}: {measure_pick_cost(n, profile):.1f} us per pick")


if __name__ == "__main__":
    main(sys.argv[1:])
