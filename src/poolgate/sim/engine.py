"""The simulated vLLM engine: continuous batching over a paged, prefix-cached KV cache.

Plain, synchronous and clock-free: the caller passes `now` (simulated seconds) to every method and
sleeps for the duration `begin_step` returns before calling `end_step`. One step runs every
running request once: a request admitted this step computes its uncached prompt (prefill) and
samples its first token; the others decode one token each.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from poolgate.core.kv_events import MEDIUM_GPU, AllBlocksCleared, BlockRemoved, BlockStored, KVEvent
from poolgate.sim.kv_cache import Block, KVCache, chain_block_hashes
from poolgate.sim.lora_slots import LoraSlots, SlotDecision
from poolgate.sim.profiles import Profile
from poolgate.sim.tokens import TextGenerator


class QueueFull(Exception):
    """The waiting queue already holds `max_waiting` requests."""


@dataclass(frozen=True, slots=True)
class EngineConfig:
    """Capacity and timing of one engine."""

    profile: Profile
    model_key: str
    max_num_seqs: int
    kv_cache_blocks: int
    block_size: int
    max_loras: int
    max_waiting: int | None = None


@dataclass(frozen=True, slots=True)
class SimRequest:
    """What the engine needs to know about one generation request."""

    request_id: str
    prompt_token_ids: list[int]
    max_tokens: int
    sampling_seed: int
    adapter: str | None = None
    stop: tuple[str, ...] = ()
    ignore_eos: bool = False
    # Without a client-set max_tokens the model ends on EOS, after mean_output_tokens on average.
    eos_enabled: bool = False


@dataclass(frozen=True, slots=True)
class Finished:
    """Outcome and timings of a request that finished normally."""

    finish_reason: str  # "length" | "stop"
    stop_reason: str | None
    e2e: float
    queue_time: float
    prompt_tokens: int
    completion_tokens: int


@dataclass(frozen=True, slots=True)
class TokenOutput:
    """One generated token for one request, as seen at the end of a step."""

    request_id: str
    delta: str
    completion_tokens: int
    cached_tokens: int
    ttft: float | None  # set on the first token
    itl: float | None  # set on every later token
    finished: Finished | None


@dataclass
class EngineCounters:
    """Cumulative counters (vLLM's prompt/generation/prefix-cache/preemption totals)."""

    prompt_tokens: int = 0
    generation_tokens: int = 0
    prefix_cache_queries: int = 0
    prefix_cache_hits: int = 0
    preemptions: int = 0
    rejections: int = 0


@dataclass(eq=False)
class _Sequence:
    req: SimRequest
    arrival: float
    generator: TextGenerator
    output_ids: list[int] = field(default_factory=list)
    text: str = ""
    emitted: int = 0
    blocks: list[Block] = field(default_factory=list)
    hashes: list[int] = field(default_factory=list)
    cached_tokens: int | None = None
    scheduled_at: float | None = None
    last_token_at: float | None = None

    @property
    def num_tokens(self) -> int:
        return len(self.req.prompt_token_ids) + len(self.output_ids)

    def token_ids(self) -> list[int]:
        return self.req.prompt_token_ids + self.output_ids


class Engine:
    """Continuous batching with `max_num_seqs` slots, a FCFS waiting queue, KV and LoRA limits."""

    def __init__(self, config: EngineConfig) -> None:
        self.config = config
        self.kv = KVCache(config.kv_cache_blocks, config.block_size)
        self.lora = LoraSlots(config.max_loras)
        self.counters = EngineCounters()
        self._waiting: deque[_Sequence] = deque()
        self._running: list[_Sequence] = []
        self._by_id: dict[str, _Sequence] = {}
        self._step: list[_Sequence] = []
        self._events: list[KVEvent] | None = None
        self._lora_ids: dict[str, int] = {}

    # -- KV events -----------------------------------------------------------------------------

    def enable_kv_events(self) -> None:
        """Record vLLM's KV-cache events (stored, evicted, cleared) for `take_kv_events`."""
        self._events = []
        self.kv.track_evictions = True

    def take_kv_events(self) -> list[KVEvent]:
        """Events since the last call, in the order the cache changed (one engine step's batch)."""
        if self._events is None:
            return []
        self._flush_evictions()
        out, self._events = self._events, []
        return out

    def reset_prefix_cache(self) -> bool:
        """Drop every cached block (vLLM's /reset_prefix_cache); False while requests hold blocks."""
        if not self.kv.reset():
            return False
        if self._events is not None:
            self._events.append(AllBlocksCleared())
        return True

    def _flush_evictions(self) -> None:
        if self._events is not None:
            evicted = self.kv.take_evicted()
            if evicted:
                self._events.append(BlockRemoved(evicted, MEDIUM_GPU))

    def _record_stored(self, seq: _Sequence, first: int, end: int, tokens: list[int]) -> None:
        assert self._events is not None
        bs = self.kv.block_size
        adapter = seq.req.adapter
        lora_id = None
        if adapter is not None:
            lora_id = self._lora_ids.setdefault(adapter, len(self._lora_ids) + 1)
        self._events.append(BlockStored(
            block_hashes=seq.hashes[first:end],
            parent_block_hash=seq.hashes[first - 1] if first > 0 else None,
            token_ids=tokens[first * bs : end * bs], block_size=bs, lora_id=lora_id,
            medium=MEDIUM_GPU, lora_name=adapter))

    # -- observation ---------------------------------------------------------------------------

    @property
    def num_running(self) -> int:
        """Requests holding a batch slot."""
        return len(self._running)

    @property
    def num_waiting(self) -> int:
        """Requests queued for a slot (including preempted ones)."""
        return len(self._waiting)

    @property
    def has_work(self) -> bool:
        """Whether a step would do anything."""
        return bool(self._running or self._waiting)

    def running_adapters(self) -> list[str]:
        """Adapters of running requests, in first-use order, without repeats."""
        return list(dict.fromkeys(s.req.adapter for s in self._running if s.req.adapter))

    def waiting_adapters(self) -> list[str]:
        """Adapters of waiting requests, in queue order, without repeats."""
        return list(dict.fromkeys(s.req.adapter for s in self._waiting if s.req.adapter))

    def running_ids(self) -> list[str]:
        """Ids of running requests, oldest first."""
        return [s.req.request_id for s in self._running]

    def waiting_ids(self) -> list[str]:
        """Ids of waiting requests, in queue order."""
        return [s.req.request_id for s in self._waiting]

    # -- requests ------------------------------------------------------------------------------

    def add(self, req: SimRequest, now: float) -> None:
        """Queue a request; raises QueueFull when `max_waiting` requests already wait."""
        if req.request_id in self._by_id:
            raise ValueError(f"duplicate request id {req.request_id!r}")
        limit = self.config.max_waiting
        if limit is not None and len(self._waiting) >= limit:
            self.counters.rejections += 1
            raise QueueFull(req.request_id)
        seq = _Sequence(req, now, TextGenerator(req.sampling_seed))
        self._waiting.append(seq)
        self._by_id[req.request_id] = seq

    def abort(self, request_id: str) -> bool:
        """Drop a request wherever it is and free its KV references at once; False if unknown."""
        seq = self._by_id.pop(request_id, None)
        if seq is None:
            return False
        if seq in self._running:
            self._running.remove(seq)
            self.kv.release(seq.blocks)
            seq.blocks = []
        else:
            self._waiting.remove(seq)
        return True

    # -- stepping ------------------------------------------------------------------------------

    def begin_step(self, now: float) -> float | None:
        """Schedule one step and return its simulated duration; None when nothing can run."""
        preempted = self._grow_running()
        lora_loads = 0
        prefill_tokens = 0
        if not preempted:
            lora_loads, prefill_tokens = self._admit(now)
        self._step = list(self._running)
        if not self._step:
            return None
        return self.config.profile.step_time(len(self._step), prefill_tokens, lora_loads)

    def end_step(self, now: float) -> list[TokenOutput]:
        """Finish the step begun last: every request still running gets one token."""
        outputs: list[TokenOutput] = []
        for seq in self._step:
            if self._by_id.get(seq.req.request_id) is not seq or seq not in self._running:
                continue  # aborted or preempted during the step
            outputs.append(self._emit(seq, now))
        self._step = []
        return outputs

    def _grow_running(self) -> bool:
        """Give each running request room for the token it computes; preempt the newest if full."""
        preempted = False
        for seq in list(self._running):
            if seq not in self._running:
                continue
            while len(seq.blocks) < self.kv.blocks_for(seq.num_tokens):
                if self.kv.num_free > 0:
                    seq.blocks += self.kv.allocate(1)
                    continue
                victim = self._running[-1]
                self._preempt(victim)
                preempted = True
                if victim is seq:
                    break
        return preempted

    def _preempt(self, seq: _Sequence) -> None:
        self._running.remove(seq)
        self.kv.release(seq.blocks)
        seq.blocks = []
        self._waiting.appendleft(seq)
        self.counters.preemptions += 1

    def _admit(self, now: float) -> tuple[int, int]:
        lora_loads = 0
        prefill_tokens = 0
        skipped: list[_Sequence] = []
        bs = self.kv.block_size
        while self._waiting and len(self._running) < self.config.max_num_seqs:
            seq = self._waiting[0]
            adapter = seq.req.adapter
            in_use = {s.req.adapter for s in self._running if s.req.adapter}
            if adapter is not None and self.lora.decide(adapter, in_use) is SlotDecision.WAIT:
                # vLLM skips requests whose adapter cannot get a slot; later ones may still run.
                skipped.append(self._waiting.popleft())
                continue
            tokens = seq.token_ids()
            extra = (self.config.model_key, adapter)
            seq.hashes = chain_block_hashes(tokens, bs, extra, seq.hashes)
            # At least one token must be computed to sample from, so a full hit is cut by a block.
            max_hit_blocks = (len(tokens) - 1) // bs
            hits = self.kv.cached_prefix(seq.hashes[:max_hit_blocks])
            new_blocks = self.kv.blocks_for(len(tokens)) - len(hits)
            if not self.kv.can_allocate(new_blocks, hits):
                break  # FCFS: the head of the queue waits for KV space, so do the others
            self._waiting.popleft()
            self.kv.acquire(hits)
            seq.blocks = hits + self.kv.allocate(new_blocks)
            if adapter is not None and self.lora.use(adapter, in_use):
                lora_loads += 1
            hit_tokens = len(hits) * bs
            prefill_tokens += len(tokens) - hit_tokens
            if seq.cached_tokens is None:
                prompt_len = len(seq.req.prompt_token_ids)
                seq.cached_tokens = min(hit_tokens, prompt_len)
                seq.scheduled_at = now
                self.counters.prompt_tokens += prompt_len
                self.counters.prefix_cache_queries += prompt_len
                self.counters.prefix_cache_hits += seq.cached_tokens
            self._running.append(seq)
        for seq in reversed(skipped):
            self._waiting.appendleft(seq)
        return lora_loads, prefill_tokens

    def _emit(self, seq: _Sequence, now: float) -> TokenOutput:
        bs = self.kv.block_size
        tokens = seq.token_ids()
        # Every token in the sequence now has KV: publish the full blocks for later prefix hits.
        seq.hashes = chain_block_hashes(tokens, bs, (self.config.model_key, seq.req.adapter),
                                        seq.hashes)
        self._cache_blocks(seq, tokens)
        token = seq.generator.next_token()
        seq.output_ids.append(token.token_id)
        self.counters.generation_tokens += 1
        req = seq.req
        finish_reason: str | None = None
        stop_reason: str | None = None
        eos_p = 1.0 / max(1, self.config.profile.mean_output_tokens)
        if req.eos_enabled and not req.ignore_eos and seq.generator.chance(eos_p):
            finish_reason = "stop"  # EOS: the token itself is not text
        else:
            seq.text += token.text
            cut = _find_stop(seq.text, req.stop, len(token.text))
            if cut is not None:
                seq.text = seq.text[: cut[0]]
                finish_reason, stop_reason = "stop", cut[1]
        if finish_reason is None and len(seq.output_ids) >= req.max_tokens:
            finish_reason = "length"
        delta = seq.text[seq.emitted :]
        seq.emitted = max(seq.emitted, len(seq.text))
        ttft = itl = None
        if seq.last_token_at is None:
            ttft = now - seq.arrival
        else:
            itl = now - seq.last_token_at
        seq.last_token_at = now
        finished = None
        if finish_reason is not None:
            finished = Finished(
                finish_reason=finish_reason,
                stop_reason=stop_reason,
                e2e=now - seq.arrival,
                queue_time=(seq.scheduled_at or now) - seq.arrival,
                prompt_tokens=len(req.prompt_token_ids),
                completion_tokens=len(seq.output_ids),
            )
            self._running.remove(seq)
            self.kv.release(seq.blocks)
            seq.blocks = []
            del self._by_id[req.request_id]
        return TokenOutput(req.request_id, delta, len(seq.output_ids), seq.cached_tokens or 0,
                           ttft, itl, finished)

    def _cache_blocks(self, seq: _Sequence, tokens: list[int]) -> None:
        """Cache the sequence's full blocks; record each newly stored run as one BlockStored."""
        if self._events is None:
            for i in range(len(seq.hashes)):
                self.kv.cache(seq.blocks[i], seq.hashes[i])
            return
        self._flush_evictions()  # evictions of this step's allocations came first
        run_start: int | None = None
        for i in range(len(seq.hashes)):
            if self.kv.cache(seq.blocks[i], seq.hashes[i]):
                if run_start is None:
                    run_start = i
            elif run_start is not None:
                self._record_stored(seq, run_start, i, tokens)
                run_start = None
        if run_start is not None:
            self._record_stored(seq, run_start, len(seq.hashes), tokens)


def _find_stop(text: str, stops: tuple[str, ...], new_chars: int) -> tuple[int, str] | None:
    """The earliest stop string that the newest token completed: (start index, stop string)."""
    best: tuple[int, str] | None = None
    for stop in stops:
        if not stop:
            continue
        start = max(0, len(text) - new_chars - len(stop) + 1)
        i = text.find(stop, start)
        if i >= 0 and (best is None or i < best[0]):
            best = (i, stop)
    return best
