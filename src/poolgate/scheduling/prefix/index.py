"""Which prompt blocks each endpoint has recently served, bounded per endpoint and in total.

Three structures stay in step: an LRU of block hashes per endpoint (the per-endpoint bound), one
global LRU of (endpoint, hash) entries (the total bound), and an owners map from hash to the
endpoints holding it (so a lookup walks the request's blocks once, not once per endpoint).
Measured cost: about 570 bytes per (endpoint, block) entry in the worst case (no block shared
between endpoints), so the default total bound of 131072 entries stays under about 75 MB.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Collection, Iterable, Sequence

DEFAULT_MAX_BLOCKS_PER_ENDPOINT = 16384
DEFAULT_MAX_BLOCKS_TOTAL = 131072


class PrefixIndex:
    """An approximate map of each endpoint's prefix cache, fed with the blocks of the requests
    sent to it, evicting least recently used blocks first."""

    def __init__(self, max_blocks_per_endpoint: int = DEFAULT_MAX_BLOCKS_PER_ENDPOINT,
                 max_blocks_total: int = DEFAULT_MAX_BLOCKS_TOTAL) -> None:
        if max_blocks_per_endpoint <= 0 or max_blocks_total <= 0:
            raise ValueError("prefix index bounds must be positive")
        self.max_blocks_per_endpoint = max_blocks_per_endpoint
        self.max_blocks_total = max_blocks_total
        self._by_endpoint: dict[str, OrderedDict[int, None]] = {}
        self._owners: dict[int, set[str]] = {}
        self._lru: OrderedDict[tuple[str, int], None] = OrderedDict()

    def __len__(self) -> int:
        """Number of (endpoint, block) entries held."""
        return len(self._lru)

    def __repr__(self) -> str:
        return (f"PrefixIndex(endpoints={len(self._by_endpoint)}, entries={len(self._lru)}, "
                f"hashes={len(self._owners)})")

    def blocks(self, address: str) -> int:
        """Number of blocks held for `address`."""
        entries = self._by_endpoint.get(address)
        return len(entries) if entries is not None else 0

    def add(self, address: str, hashes: Sequence[int]) -> None:
        """Record that `address` now caches the blocks `hashes` (a chain, first block first)."""
        entries = self._by_endpoint.get(address)
        if entries is None:
            entries = self._by_endpoint[address] = OrderedDict()
        lru = self._lru
        owners = self._owners
        # Newest last: insert the chain tail first, so its head is the most recently used and
        # eviction cuts a chain from its end (a chain without its head matches nothing).
        for h in reversed(hashes):
            key = (address, h)
            if h in entries:
                entries.move_to_end(h)
                lru.move_to_end(key)
                continue
            entries[h] = None
            lru[key] = None
            holders = owners.get(h)
            if holders is None:
                owners[h] = {address}
            else:
                holders.add(address)
        while len(entries) > self.max_blocks_per_endpoint:
            oldest, _ = entries.popitem(last=False)
            del lru[(address, oldest)]
            self._drop_owner(oldest, address)
        while len(lru) > self.max_blocks_total:
            (victim, h), _ = lru.popitem(last=False)
            del self._by_endpoint[victim][h]
            self._drop_owner(h, victim)

    def _drop_owner(self, h: int, address: str) -> None:
        holders = self._owners[h]
        holders.discard(address)
        if not holders:
            del self._owners[h]

    def match_lengths(  # noqa: C901, PLR0912 - one flat function on the pick's hot path
            self, hashes: Sequence[int], candidates: Collection[str]) -> dict[str, int]:
        """For each candidate holding the first block, how many leading blocks it holds (>= 1).

        Candidates that do not hold the first block are left out (their match is 0).
        """
        result: dict[str, int] = {}
        if not hashes:
            return result
        first = self._owners.get(hashes[0])
        if not first:
            return result
        active = first.intersection(candidates)
        owners = self._owners
        n = len(hashes)
        # Holdings are prefix-closed: block i+1's hash chains block i's, so every add that
        # touches block i+1 touches block i too and refreshes it later (tail first), and LRU
        # eviction therefore never drops block i while block i+1 stays. An endpoint holding the
        # last block holds them all: in the common case (the whole prefix cached) that settles
        # every candidate with one set operation instead of a walk over the blocks.
        last = owners.get(hashes[-1]) if n > 1 else None
        if last:
            full = active & last
            if full:
                for address in full:
                    result[address] = n
                active -= full
        # By the same closure, "every active endpoint holds block i" is true up to some block
        # and false after it: find that block by bisection rather than one subset test per block.
        lo, hi = 1, n
        while lo < hi and active:
            mid = (lo + hi) // 2
            holders = owners.get(hashes[mid])
            if holders is not None and active <= holders:
                lo = mid + 1
            else:
                hi = mid
        i = lo
        while active and i < n:
            holders = owners.get(hashes[i])
            if holders is None:
                break
            # The common case, everyone still matching, needs no new set.
            if not active <= holders:
                for address in active - holders:
                    result[address] = i
                active = active & holders
            i += 1
        for address in active:
            result[address] = i
        return result

    def remove_endpoint(self, address: str) -> None:
        """Forget everything recorded for `address`."""
        entries = self._by_endpoint.pop(address, None)
        if entries is None:
            return
        for h in entries:
            del self._lru[(address, h)]
            self._drop_owner(h, address)

    def retain(self, addresses: Iterable[str]) -> None:
        """Forget every endpoint not in `addresses`."""
        keep = set(addresses)
        for address in [a for a in self._by_endpoint if a not in keep]:
            self.remove_endpoint(address)
