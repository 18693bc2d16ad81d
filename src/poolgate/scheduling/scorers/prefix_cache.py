"""`prefix-cache-scorer`: prefer the endpoint that most likely still caches the request's prefix,
optionally only while that endpoint is not a hotspot.

What it does: splits the request's prefix text (chat: role + content of each message in order;
completions: the prompt) into `blockSize`-character blocks, at most `maxBlocks`, and chains their
hashes seeded with the target model. `score = leading blocks the endpoint holds / total blocks`
(0 when the prompt is shorter than one block). The index is fed with the endpoint that answered
the request (`on_picked`, called by the gateway on its response head), bounded by `maxBlocksPerEndpoint` and `maxBlocksTotal` with
least-recently-used eviction.

Load bound (off when `loadBoundAbs` is unset). With `loadSignal: waiting+in-flight` (the
default) `load = waiting + in_flight` (waiting 0 when unknown); with `loadSignal: in-flight`
`load = in_flight`, the gateway's own count, fresh at every pick (a server's waiting requests
that came through this gateway are already in it). Relative to the least-loaded candidate (the
default): an endpoint whose `load > min_load + max(loadBoundAbs, loadBoundRel × min_load)` gets
prefix score 0. With `loadBoundMean` set (our default profile), an endpoint whose
`load > loadBoundAbs + loadBoundMean × mean_load` gets prefix score 0 as well (both bounds
apply: the smaller limit wins). Either way the
load scorers then decide instead of affinity piling onto a hot endpoint.
Category: affinity. Intent: reuse the model server's prefix cache (shorter prefill, lower TTFT)
without the hotspot failure mode of pure affinity.
Inputs: the request's messages / prompt and target model; `Signals.waiting`; `Endpoint.in_flight`;
`Endpoint.awaiting_first_token`.
Configuration: `blockSize` (64), `maxBlocks` (128; GIE's `maxPrefixBlocksToMatch` is accepted), `maxBlocksPerEndpoint` (16384; also `lruCapacityPerServer`),
`maxBlocksTotal` (131072), `loadBoundAbs` (unset), `loadBoundRel` (0.5), `loadBoundMean`
(unset), `loadSignal` (`waiting+in-flight`), `missSpread` (0), `prefillBound` (unset),
`hotPrefix` (unset: off; `prefix/replication.py`: a prefix group more popular than one replica
serves gets a second holder before the first reaches the load bound).

Prefill bound (off when `prefillBound` is unset): an endpoint with more than `prefillBound`
streamed requests from this gateway still awaiting their first token (queued or prefilling on
the server; vLLM starts a stream with the first token) gets prefix score 0, unless no candidate
has fewer. Only streamed requests count: a non-streamed response starts when it is complete.

Miss spread (`missSpread` > 0): when no candidate holds the request's first block, candidates
score `missSpread × (b_max − b) / (b_max − b_min)` by the number b of blocks the index holds for
them, so a new prefix goes where the least is cached.
"""

from __future__ import annotations

from collections.abc import Sequence

from poolgate.scheduling.interfaces import (
    BuildContext,
    Category,
    CycleState,
    Endpoint,
    LLMRequest,
    Scorer,
    TypedName,
)
from poolgate.scheduling.prefix.hashing import block_hashes, prefix_text
from poolgate.scheduling.prefix.index import PrefixIndex
from poolgate.scheduling.scorers._load_bound import LoadBound
from poolgate.scheduling.scorers.params import PrefixCacheParams

TYPE = "prefix-cache-scorer"
# The registry reads every plugin module's `Params` (the model lives in a plain module).
Params = PrefixCacheParams


class PrefixCacheScorer:
    """Leading-block prefix match against an LRU index of what each endpoint served."""

    category = Category.AFFINITY

    def __init__(self, name: str = TYPE, params: PrefixCacheParams | None = None) -> None:
        p = params or PrefixCacheParams.model_validate({})
        self.typed_name = TypedName(TYPE, name)
        self.block_size = p.block_size
        self.max_blocks = p.max_blocks
        self.bound = LoadBound(p)
        self.hot = self.bound.hot_prefixes()
        self.miss_spread = p.miss_spread
        self.index = PrefixIndex(p.max_blocks_per_endpoint, p.max_blocks_total)
        self._memo_key = f"prefix-hashes:{p.block_size}:{p.max_blocks}"

    def hashes(self, req: LLMRequest) -> list[int]:
        """The request's chained block hashes (computed once per request, then memoised)."""
        cached: list[int] | None = req.memo.get(self._memo_key)
        if cached is None:
            cached = block_hashes(req.model, prefix_text(req), self.block_size, self.max_blocks)
            req.memo[self._memo_key] = cached
        return cached

    def score(self, req: LLMRequest, endpoints: Sequence[Endpoint],
              cycle: CycleState) -> dict[str, float]:
        hashes = self.hashes(req)
        if not hashes:
            return {}
        matches = self.index.match_lengths(hashes, {e.address for e in endpoints})
        if not matches:
            return self._least_cached(endpoints) if self.miss_spread > 0 else {}
        if self.hot is not None:
            matches = self.hot.shape(hashes, matches, endpoints)
        matches = self.bound.apply(matches, endpoints)
        total = len(hashes)
        return {a: n / total for a, n in matches.items()}

    def _least_cached(self, endpoints: Sequence[Endpoint]) -> dict[str, float]:
        """On a miss, up to `missSpread` for the endpoints holding the fewest indexed blocks.

        A new prefix then goes where the least is cached, so the prefixes spread evenly over
        the pool when they first appear (instead of wherever load ties happen to break) and
        affinity afterwards keeps their load even.
        """
        blocks = self.index.blocks
        spread = self.miss_spread
        held = [blocks(e.address) for e in endpoints]
        lo = min(held)
        span = max(held) - lo
        if span == 0:
            return {}
        return {e.address: spread * (lo + span - n) / span for e, n in zip(endpoints, held,
                                                                         strict=True)}

    def on_picked(self, req: LLMRequest, address: str) -> None:
        """Record that `address` now holds the request's blocks."""
        hashes = self.hashes(req)
        if hashes:
            self.index.add(address, hashes)
            if self.hot is not None:
                self.hot.observe(hashes)

    def retain(self, addresses: Sequence[str]) -> None:
        """Forget endpoints that left the pool."""
        self.index.retain(addresses)
        if self.hot is not None:
            self.hot.retain(addresses)


def create(name: str, params: PrefixCacheParams, ctx: BuildContext) -> Scorer:
    """Factory for the registry."""
    return PrefixCacheScorer(name, params)
