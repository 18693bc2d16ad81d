"""Which endpoint holds which KV-cache block, learnt from the model servers' KV events.

vLLM names a block by a hash of its tokens, its parent's hash and extra keys, seeded at random
unless PYTHONHASHSEED is set, and with an algorithm that changes between releases: the gateway
cannot recompute it. It does not need to. A `BlockStored` event carries each block's tokens and
its parent's engine hash, so every block is re-keyed here with a key of our own:

    key(block i) = hash((key(block i - 1), bytes of block i's token ids))

with block 0's parent being `root_key(lora_name)` (the adapter the blocks were computed for; None
for the base model). Per endpoint the index keeps `engine hash -> our key`, so a later event's
parent (an engine hash) finds its key, and `BlockRemoved` (engine hashes) finds what to drop. The
request side computes the same keys from the request's token ids (`block_keys`), and
`match_lengths` counts, per endpoint, the leading blocks it holds.

A block whose parent's engine hash is unknown (its `BlockStored` was lost, or came before this
gateway subscribed) cannot be keyed: it is dropped and counted. Memory is bounded per endpoint
(`max_blocks_per_endpoint`, oldest first); vLLM's own evictions arrive as `BlockRemoved`.

Python's `hash()` is salted per process: the keys are only compared inside the process that made
them (each gateway replica builds its own index from the same events).

Besides blocks, the index keeps when each endpoint's entries can be trusted (`usable`): the event
subscriber marks an endpoint untrusted after lost events it could not replay, until the stream
has been consistent for a while; the scorer falls back to its approximate index meanwhile.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Collection, Iterable, Sequence

from poolgate.core.kv_events import (
    AllBlocksCleared,
    BlockHash,
    BlockRemoved,
    BlockStored,
    KVEvent,
)

DEFAULT_MAX_BLOCKS_PER_ENDPOINT = 65_536
_ROOT = "poolgate-kv-root"


def root_key(lora_name: str | None) -> int:
    """The parent key of a chain's first block for adapter `lora_name` (None: base model)."""
    return hash((_ROOT, lora_name))


def block_keys(token_ids: Sequence[int], block_size: int, parent: int,
               max_blocks: int | None = None) -> list[int]:
    """The keys of the full blocks of `token_ids` (at most `max_blocks`), chained from `parent`.

    Empty when a token id is outside 0..2**32-1 (no model has such a vocabulary).
    """
    n = len(token_ids) // block_size
    if max_blocks is not None and n > max_blocks:
        n = max_blocks
    if n <= 0:
        return []
    try:
        data = array("I", token_ids[: n * block_size]).tobytes()
    except OverflowError:
        return []
    width = 4 * block_size
    out: list[int] = []
    append = out.append
    h = parent
    for start in range(0, n * width, width):
        h = hash((h, data[start : start + width]))
        append(h)
    return out


class _Holdings:
    """One endpoint's blocks: engine hash -> our key (oldest first), and how many engine hashes
    map to each key (two can: the engine's extra keys, such as a cache salt, are not in ours)."""

    __slots__ = ("block_size", "counts", "keys")

    def __init__(self) -> None:
        self.keys: dict[BlockHash, int] = {}
        self.counts: dict[int, int] = {}
        self.block_size: int | None = None


class KVBlockIndex:
    """Blocks held per endpoint, keyed by our chained keys; see the module docstring."""

    def __init__(self, max_blocks_per_endpoint: int = DEFAULT_MAX_BLOCKS_PER_ENDPOINT) -> None:
        if max_blocks_per_endpoint < 1:
            raise ValueError("max_blocks_per_endpoint must be at least 1")
        self.max_blocks_per_endpoint = max_blocks_per_endpoint
        self._endpoints: dict[str, _Holdings] = {}
        self._owners: dict[int, set[str]] = {}
        # When each endpoint's entries may be used (monotonic time); absent: not yet.
        self._usable_from: dict[str, float] = {}
        # The block size the last BlockStored of any endpoint announced (None before any), and
        # every size any announced (almost always one: the scorer then checks no endpoint).
        self.last_block_size: int | None = None
        self.block_sizes: set[int] = set()
        # `usable_set`'s answer and the times between which it holds.
        self._usable_cache: tuple[float, float, frozenset[str]] | None = None

    def __repr__(self) -> str:
        return (f"KVBlockIndex(endpoints={len(self._endpoints)}, keys={len(self._owners)}, "
                f"usable={sorted(self._usable_from)})")

    # -- what the scorer reads ---------------------------------------------------------------

    def blocks(self, address: str) -> int:
        """Number of blocks held for `address`."""
        holdings = self._endpoints.get(address)
        return len(holdings.keys) if holdings is not None else 0

    def block_size(self, address: str) -> int | None:
        """The block size `address`'s events announced last (None before any)."""
        holdings = self._endpoints.get(address)
        return holdings.block_size if holdings is not None else None

    def usable(self, address: str, now: float) -> bool:
        """Whether `address`'s entries are trustworthy at `now` (see `trust_from`)."""
        return self._usable_from.get(address, math.inf) <= now

    def usable_set(self, now: float) -> frozenset[str]:
        """Every endpoint whose entries are trustworthy at `now` (cached until trust changes
        or a hold ends: the scorer asks at every pick)."""
        cached = self._usable_cache
        if cached is not None and cached[0] <= now < cached[1]:
            return cached[2]
        since, until = -math.inf, math.inf
        usable: list[str] = []
        for address, when in self._usable_from.items():
            if when <= now:
                usable.append(address)
                since = max(since, when)
            else:
                until = min(until, when)
        answer = frozenset(usable)
        self._usable_cache = (since, until, answer)
        return answer

    def holds(self, address: str, key: int) -> bool:
        """Whether `address` holds the block with our key `key`."""
        holdings = self._endpoints.get(address)
        return holdings is not None and key in holdings.counts

    def match_lengths(self, keys: Sequence[int], candidates: Collection[str]) -> dict[str, int]:
        """For each of `candidates` holding the first block, how many leading blocks of the chain
        `keys` it holds (>= 1); the others are left out (their match is 0)."""
        result: dict[str, int] = {}
        if not keys:
            return result
        first = self._owners.get(keys[0])
        if not first:
            return result
        active = first.intersection(candidates)
        if not active:
            return result
        owners = self._owners
        n = len(keys)
        i = 1
        while i < n:
            holders = owners.get(keys[i])
            if holders is None:
                break
            # The common case, every remaining candidate still matching, builds no new set.
            if not active <= holders:
                for address in active - holders:
                    result[address] = i
                active = active & holders
                if not active:
                    return result
            i += 1
        for address in active:
            result[address] = i
        return result

    # -- what the event subscriber writes ----------------------------------------------------

    def trust_from(self, address: str, when: float) -> None:
        """`address`'s entries may be used from monotonic time `when` (inf: not until told)."""
        self._usable_from[address] = when
        self._usable_cache = None

    def distrust(self, address: str) -> None:
        """`address`'s entries are not to be used until `trust_from` is called again."""
        self._usable_from.pop(address, None)
        self._usable_cache = None

    def apply(self, address: str, events: Iterable[KVEvent]) -> int:
        """Apply one batch of `address`'s events in order; returns the blocks dropped because
        their parent was unknown."""
        dropped = 0
        for event in events:
            if isinstance(event, BlockStored):
                dropped += self._stored(address, event)
            elif isinstance(event, BlockRemoved):
                self._removed(address, event)
            elif isinstance(event, AllBlocksCleared):
                self.clear(address)
        return dropped

    def clear(self, address: str) -> None:
        """Forget every block of `address` (its trust is left as it is)."""
        holdings = self._endpoints.pop(address, None)
        if holdings is None:
            return
        owners = self._owners
        for key in holdings.counts:
            holders = owners[key]
            holders.discard(address)
            if not holders:
                del owners[key]

    def retain(self, addresses: Iterable[str]) -> None:
        """Forget every endpoint not in `addresses` (blocks and trust)."""
        keep = set(addresses)
        for address in [a for a in self._endpoints if a not in keep]:
            self.clear(address)
        for address in [a for a in self._usable_from if a not in keep]:
            del self._usable_from[address]
        self._usable_cache = None

    def _stored(self, address: str, event: BlockStored) -> int:
        if event.group_idx:
            return 0  # hybrid models: only the first KV-cache group's blocks are indexed
        holdings = self._endpoints.get(address)
        if holdings is None:
            holdings = self._endpoints[address] = _Holdings()
        hashes = event.block_hashes
        parent_hash = event.parent_block_hash
        if parent_hash is None:
            lora = event.lora_name
            # Before vLLM named adapters in events, only an id: a root no request can match.
            parent = root_key(lora if lora is not None or event.lora_id is None
                              else f"lora-id:{event.lora_id}")
        else:
            found = holdings.keys.get(parent_hash)
            if found is None:
                return len(hashes)
            parent = found
        size = event.block_size
        if size < 1:
            return len(hashes)
        holdings.block_size = self.last_block_size = size
        if size not in self.block_sizes:
            self.block_sizes.add(size)
        keys = block_keys(event.token_ids, size, parent, len(hashes))
        for engine_hash, key in zip(hashes, keys, strict=False):
            self._add(address, holdings, engine_hash, key)
        limit = self.max_blocks_per_endpoint
        while len(holdings.keys) > limit:
            oldest = next(iter(holdings.keys))
            self._unref(address, holdings, holdings.keys.pop(oldest))
        return len(hashes) - len(keys)

    def _add(self, address: str, holdings: _Holdings, engine_hash: BlockHash, key: int) -> None:
        previous = holdings.keys.pop(engine_hash, None)
        holdings.keys[engine_hash] = key  # (re)inserted last: the newest
        if previous == key:
            return
        if previous is not None:
            self._unref(address, holdings, previous)
        count = holdings.counts.get(key, 0)
        holdings.counts[key] = count + 1
        if count == 0:
            holders = self._owners.get(key)
            if holders is None:
                self._owners[key] = {address}
            else:
                holders.add(address)

    def _removed(self, address: str, event: BlockRemoved) -> None:
        if event.group_idx:
            return
        holdings = self._endpoints.get(address)
        if holdings is None:
            return
        pop = holdings.keys.pop
        for engine_hash in event.block_hashes:
            key = pop(engine_hash, None)
            if key is not None:
                self._unref(address, holdings, key)

    def _unref(self, address: str, holdings: _Holdings, key: int) -> None:
        count = holdings.counts[key] - 1
        if count:
            holdings.counts[key] = count
            return
        del holdings.counts[key]
        holders = self._owners[key]
        holders.discard(address)
        if not holders:
            del self._owners[key]
