"""The seeded request sequence: shared-prefix, random and lora-mix prompts, encoded up front."""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from poolgate.bench.config import ApiKind, BenchConfig, WorkloadConfig
from poolgate.bench.errors import BenchError
from poolgate.bench.text import filler_text


@dataclass(frozen=True, slots=True)
class BenchRequest:
    """One request, ready to send: the encoded body plus what was asked for."""

    index: int
    model: str
    body: bytes
    prompt_len: int  # tokens the generator aimed at (~4 chars/token)
    output_len: int  # max_tokens
    group: int | None = None  # shared-prefix group
    prompt: int | None = None  # shared-prefix prompt within the group


def encode_body(
    api: ApiKind,
    model: str,
    system: str,
    user: str,
    max_tokens: int,
    *,
    stream: bool,
    ignore_eos: bool,
    extra_body: Mapping[str, Any],
) -> bytes:
    """The JSON body of one chat or completions request."""
    body: dict[str, Any] = {"model": model}
    if api == "chat":
        messages = [{"role": "system", "content": system}] if system else []
        messages.append({"role": "user", "content": user})
        body["messages"] = messages
    else:
        body["prompt"] = f"{system}\n{user}" if system else user
    body["max_tokens"] = max_tokens
    if ignore_eos:
        # vLLM extension: generate exactly max_tokens so output lengths are what we asked for.
        body["ignore_eos"] = True
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    body.update(extra_body)
    return orjson.dumps(body)


class Workload:
    """Request `i` of a run, derived from (seed, i) alone, so every target sees the same sequence."""

    def __init__(self, config: BenchConfig) -> None:
        wl = config.workload
        if wl.model is None and not wl.models:
            raise BenchError("no model: give --model NAME or --models NAME=WEIGHT,...")
        self._config = config
        self._wl = wl
        self._model_names = [m.name for m in wl.models]
        self._model_weights = [m.weight for m in wl.models]
        self._systems: list[str] = []
        self._questions: list[list[str]] = []
        self._group_cumulative: list[float] | None = None
        if wl.group_zipf > 0:
            total = 0.0
            self._group_cumulative = []
            for w in wl.group_weights():
                total += w
                self._group_cumulative.append(total)
        if wl.kind == "shared-prefix":
            self._build_shared_prefix(wl)

    def _build_shared_prefix(self, wl: WorkloadConfig) -> None:
        rng = random.Random(f"{wl.seed}/shared-prefix")
        for g in range(wl.groups):
            # A distinct leading tag guarantees groups differ from their first token on.
            head = f"[group {g}] "
            body_tokens = max(0, wl.system_prompt_len - len(head) // 4)
            self._systems.append((head + filler_text(rng, body_tokens))[: wl.system_prompt_len * 4])
            self._questions.append(
                [filler_text(rng, wl.question_len.sample(rng)) for _ in range(wl.prompts_per_group)]
            )

    @property
    def system_prompts(self) -> list[str]:
        """The shared prefix of each group (shared-prefix only; empty otherwise)."""
        return list(self._systems)

    def request(self, index: int, *, warmup: bool = False) -> BenchRequest:
        """Request number `index` (warm-up requests come from a separate seeded stream)."""
        wl = self._wl
        stream_name = "warmup" if warmup else "measure"
        rng = random.Random(f"{wl.seed}/{stream_name}/{index}")
        model = self._pick_model(rng)
        output_len = wl.output_len.sample(rng)
        group: int | None = None
        prompt: int | None = None
        if wl.kind == "shared-prefix":
            # Uniform groups keep the draw they always had, so existing seeds are unchanged.
            group = (rng.randrange(wl.groups) if self._group_cumulative is None else
                     rng.choices(range(wl.groups), cum_weights=self._group_cumulative)[0])
            prompt = rng.randrange(wl.prompts_per_group)
            system, user = self._systems[group], self._questions[group][prompt]
        else:
            system, user = "", filler_text(rng, wl.input_len.sample(rng))
        cfg = self._config
        body = encode_body(
            cfg.api, model, system, user, output_len,
            stream=cfg.stream, ignore_eos=cfg.ignore_eos, extra_body=cfg.extra_body,
        )
        return BenchRequest(
            index=index,
            model=model,
            body=body,
            prompt_len=(len(system) + len(user)) // 4,
            output_len=output_len,
            group=group,
            prompt=prompt,
        )

    def requests(self, count: int, *, warmup: bool = False) -> list[BenchRequest]:
        """The first `count` requests of the sequence."""
        return [self.request(i, warmup=warmup) for i in range(count)]

    def _pick_model(self, rng: random.Random) -> str:
        if self._model_names:
            return rng.choices(self._model_names, self._model_weights)[0]
        assert self._wl.model is not None  # checked in __init__
        return self._wl.model
