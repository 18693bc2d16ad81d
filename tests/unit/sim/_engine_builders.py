"""Builders for engine tests: small engines, requests and a step loop with a fake clock."""

from __future__ import annotations

from dataclasses import replace

from poolgate.sim.engine import Engine, EngineConfig, SimRequest, TokenOutput
from poolgate.sim.profiles import FAST, Profile

PROFILE = replace(FAST, step_base=0.001, step_per_seq=0.0005, prefill_per_token=0.0001,
                  lora_load=0.05)


def make_engine(*, seqs: int = 4, blocks: int = 64, block_size: int = 4, max_loras: int = 1,
                max_waiting: int | None = None, profile: Profile = PROFILE) -> Engine:
    return Engine(EngineConfig(profile=profile, model_key="/model/m", max_num_seqs=seqs,
                               kv_cache_blocks=blocks, block_size=block_size,
                               max_loras=max_loras, max_waiting=max_waiting))


def make_request(rid: str, prompt: list[int] | int = 8, max_tokens: int = 4,
                 adapter: str | None = None, **kw: object) -> SimRequest:
    ids = list(range(100, 100 + prompt)) if isinstance(prompt, int) else prompt
    return SimRequest(request_id=rid, prompt_token_ids=ids, max_tokens=max_tokens,
                      sampling_seed=7, adapter=adapter, **kw)  # type: ignore[arg-type]


class Clock:
    """Runs steps back to back, advancing a fake simulated clock by each step's duration."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.now = 0.0
        self.durations: list[float] = []

    def step(self) -> list[TokenOutput]:
        d = self.engine.begin_step(self.now)
        if d is None:
            return []
        self.durations.append(d)
        self.now += d
        return self.engine.end_step(self.now)

    def run(self, max_steps: int = 10_000) -> dict[str, list[TokenOutput]]:
        outs: dict[str, list[TokenOutput]] = {}
        for _ in range(max_steps):
            if not self.engine.has_work:
                return outs
            for o in self.step():
                outs.setdefault(o.request_id, []).append(o)
        raise AssertionError("engine did not drain")
