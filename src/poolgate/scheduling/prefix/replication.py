"""Hot prefixes: a prefix group with more traffic than one replica serves comfortably is spread
on purpose over the fewest replicas that can serve it, before its first holder saturates.

Without this, the prefix scorers keep a group on the endpoints that hold its prefix until the
hotspot bound (`_load_bound.py`) drops them. Then the load scorers pick another endpoint, which
has to prefill the whole prefix cold while the first one is already overloaded. This policy acts
earlier. It runs inside a prefix scorer (`prefix-cache-scorer` or `precise-prefix-cache-scorer`,
parameter `hotPrefix`) and changes only that scorer's matches (endpoint -> leading blocks held).

Group: the requests whose first `groupBlocks` blocks are the same. Its key is the hash of block
`groupBlocks` (it chains every block before it). Both indexes use the same kind of key, and it
costs nothing to read. Requests shorter than that are in no group: a short prefix is cheap to
prefill anywhere. A deeper key, such as the deepest indexed block, would split a group by
question, and the index changes it from one request to the next.

Demand, per group, counted on the answered requests (`observe`): `share` is the group's
exponentially weighted share of the arrivals, `(1/window) x sum of decay^i` over the arrivals i
(newest i = 0) of the group, `decay = 1 - 1/window`. It starts at 0, so a new policy wants about
`window` arrivals of evidence before it acts. The group's demand, in requests in flight, is
`d = share x F` by Little's law, F being the candidates' load (in-flight requests: the load the
bound compares). This assumes the group's requests last as long as the pool's average.

What one holder should carry: `T = replicateAt x L`, L being the load bound's limit at this pick,
`min(min_load + max(loadBoundAbs, loadBoundRel x min_load), loadBoundAbs + loadBoundMean x
mean_load)`: the load at which the bound would take the holder's affinity away. With
`replicaConcurrency` set, T is at most that many requests.

Holders: a group starts "plain" (no holder set: affinity goes to whichever endpoints hold it, as
without this policy). Only a group that brings more than one replica's even share of the
traffic (`share x N > 1`, N candidates), or that has holders, is evaluated at its picks. Its
pressure, the need for one more holder, is `d / (k x T)` with k holders. A plain group's is at
least `L_h / T` too, L_h being the mean load of the endpoints holding it, when the group is at
least half of that load: its holder is heading over the target because of it, even though the
group alone is not over it yet. The pressure is averaged over the group's picks
(`p_avg += (p - p_avg) / settleArrivals`, from 0 after every change), so neither Poisson noise
in the loads nor a noisy share moves holders. When `p_avg > 1` and `share x N > k` (k at least
1: the group brings more than k replicas' even share), the group gets ONE more holder, at most
once per `settleArrivals` of its requests. The first time, its holders become the most loaded
endpoint holding it (the one carrying it) plus one more. The new holder is the best other
candidate: below T, then fewest hot groups, then already holding the prefix, then not
prefilling (no stream awaiting its first token), then least loaded. With k >= 2, after
`shrinkAfter` arrivals of the group since the last change, when `r_avg < shrinkBelow x (k - 1)`
(`r = d / T`, averaged like p but never reset) or `share x N < shrinkBelow x (k - 1)`, the
most loaded holder is dropped. The gap between the grow and the shrink thresholds is the
hysteresis.

Routing: while a group has holders, only they keep its affinity. A holder that does not hold
the prefix yet (just added) is scored as if it held it as deeply as the best holder does. So
the next request of the group goes to whichever holder the load scorers prefer: the new, least
loaded one first, which then learns the prefix. After that, load balances the group across its
holders. Other endpoints holding the prefix (earlier spills) lose its affinity. The load and
prefill bounds still apply to the holders afterwards, as before.

State: a bounded LRU of `maxGroups` groups. Holders change during a pick (the only state a pick
changes); arrivals are counted when a request is answered (`on_picked`).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from pydantic import Field

from poolgate.scheduling._params import PluginParams
from poolgate.scheduling.interfaces import Endpoint

log = logging.getLogger(__name__)


class HotPrefixParams(PluginParams):
    """The `hotPrefix` parameters of the prefix scorers (off when absent)."""

    group_blocks: int = Field(8, ge=1, description="blocks that identify a prefix group")
    replicate_at: float = Field(
        0.5, gt=0.0, le=1.0,
        description="a holder's target load, as a fraction of the load bound's limit")
    replica_concurrency: float | None = Field(
        None, gt=0.0, description="a holder's target load in requests at most (unset: no cap)")
    shrink_below: float = Field(
        0.6, gt=0.0, lt=1.0,
        description="a holder is dropped when demand falls below this x (k - 1) x target")
    window: int = Field(128, ge=2, description="arrivals the demand share averages over")
    settle_arrivals: int = Field(
        8, ge=1, description="a group's arrivals (and picks) a decision averages over and "
                             "waits for between two additions")
    shrink_after: int = Field(
        64, ge=1, description="a group's arrivals since its last change before a removal")
    max_groups: int = Field(4096, ge=1, description="groups tracked (least recent forgotten)")


@dataclass(slots=True)
class _Group:
    """One prefix group's demand and holders."""

    weight: float = 0.0  # decayed arrival count as of arrival number `stamp`
    stamp: int = 0
    seen: int = 0  # arrivals of the group
    changed: int = 0  # `seen` at the last change of `holders`
    ratio: float = 0.0  # demand / target, averaged over the group's picks
    pressure: float = 0.0  # the need for one more holder, averaged since the last change
    holders: list[str] = field(default_factory=list)  # empty: plain affinity


@dataclass(frozen=True, slots=True)
class GroupView:
    """What the policy knows about one group (for tests and the status page)."""

    key: int
    share: float
    holders: tuple[str, ...]


# A load bound's limit over the candidates' loads, or None when the scorer has no load bound.
LimitOf = Callable[[Sequence[float]], float | None]
# The candidates' loads, in order.
LoadsOf = Callable[[Sequence[Endpoint]], list[int]]


class _Loads:
    """The candidates' loads of one pick, by address only when asked (most picks need none)."""

    __slots__ = ("_addresses", "_by_address", "counts", "endpoints")

    def __init__(self, endpoints: Sequence[Endpoint], counts: list[int]) -> None:
        self.endpoints = endpoints
        self.counts = counts
        self._by_address: dict[str, int] | None = None
        self._addresses: set[str] | None = None

    def by_address(self) -> dict[str, int]:
        if self._by_address is None:
            self._by_address = dict(zip([e.address for e in self.endpoints], self.counts,
                                        strict=True))
        return self._by_address

    def addresses(self) -> Collection[str]:
        if self._by_address is not None:
            return self._by_address.keys()
        if self._addresses is None:
            self._addresses = {e.address for e in self.endpoints}
        return self._addresses


class HotPrefixPolicy:
    """Tracks each prefix group's demand and gives a hot group the fewest holders it needs.

    See the module docstring for the formulas. `shape` runs during a pick and returns the
    matches the scorer should use. `observe` counts an answered request of the group.
    """

    def __init__(self, params: HotPrefixParams, limit_of: LimitOf, loads_of: LoadsOf) -> None:
        self.group_blocks = params.group_blocks
        self.replicate_at = params.replicate_at
        self.replica_concurrency = params.replica_concurrency
        self.shrink_below = params.shrink_below
        self.settle = params.settle_arrivals
        self.shrink_after = params.shrink_after
        self.max_groups = params.max_groups
        self.rate = 1.0 / params.window
        self.decay = 1.0 - self.rate
        self.limit_of = limit_of
        self.loads_of = loads_of
        self._arrivals = 0
        self._groups: OrderedDict[int, _Group] = OrderedDict()
        self._replicated: dict[int, _Group] = {}  # groups with a holder set

    def __repr__(self) -> str:
        return (f"HotPrefixPolicy(groups={len(self._groups)}, "
                f"replicated={ {hex(k): g.holders for k, g in self._replicated.items()} })")

    # -- demand ----------------------------------------------------------------------------------

    def group_key(self, keys: Sequence[int]) -> int | None:
        """The request's group: the key of its block `groupBlocks`, None when shorter."""
        depth = self.group_blocks
        return keys[depth - 1] if len(keys) >= depth else None

    def observe(self, keys: Sequence[int]) -> None:
        """Count one answered request with block keys `keys` in its group's demand."""
        key = self.group_key(keys)
        if key is None:
            return
        self._arrivals += 1
        n = self._arrivals
        groups = self._groups
        g = groups.get(key)
        if g is None:
            g = groups[key] = _Group(stamp=n)
            if len(groups) > self.max_groups:
                old_key, _ = groups.popitem(last=False)
                self._replicated.pop(old_key, None)
        else:
            groups.move_to_end(key)
        g.weight = g.weight * self.decay ** (n - g.stamp) + 1.0
        g.stamp = n
        g.seen += 1

    def share(self, key: int) -> float:
        """The group's share of the recent arrivals (0 when unknown)."""
        g = self._groups.get(key)
        return self._share(g) if g is not None else 0.0

    def _share(self, g: _Group) -> float:
        return g.weight * self.decay ** (self._arrivals - g.stamp) * self.rate

    def target(self, loads: Sequence[float]) -> float:
        """What one holder should carry at most: replicateAt x the load bound's limit, capped
        by replicaConcurrency; at least 1 request."""
        t = float("inf")
        limit = self.limit_of(loads)
        if limit is not None:
            t = self.replicate_at * limit
        if self.replica_concurrency is not None:
            t = min(t, self.replica_concurrency)
        return max(t, 1.0)

    # -- holders ---------------------------------------------------------------------------------

    def shape(self, keys: Sequence[int], matches: dict[str, int],
              endpoints: Sequence[Endpoint]) -> dict[str, int]:
        """The matches to score for a request with block keys `keys` (`matches`: address ->
        leading blocks held, as the scorer's index says), after adjusting its group's holders."""
        key = self.group_key(keys)
        if key is None:
            return matches
        g = self._groups.get(key)
        if g is None or g.seen < self.settle:
            return matches
        share = self._share(g)
        n = len(endpoints)
        if not g.holders and share * n <= 1.0:
            # At most one replica's even share: the common case, no more work.
            g.ratio = g.pressure = 0.0
            return matches
        counts = self.loads_of(endpoints)
        demand = share * sum(counts)
        target = self.target(counts)
        loads = _Loads(endpoints, counts)
        ratio = demand / target
        settle = self.settle
        g.ratio += (ratio - g.ratio) / settle
        if g.holders:
            pressure = ratio / len(g.holders)
        else:
            pressure = max(ratio, self._busy(demand, target, matches, loads.by_address()))
        g.pressure += (pressure - g.pressure) / settle
        self._adjust(key, g, share * n, demand, target, matches, endpoints, loads)
        if not g.holders:
            return matches
        return self._restrict(g.holders, matches, keys, loads.addresses())

    def _busy(self, demand: float, target: float, matches: Mapping[str, int],
              loads: Mapping[str, int]) -> float:
        """How loaded the endpoints holding a plain group are, in targets, when the group is at
        least half of their load (0 otherwise): it needs a second holder when they are over
        the target, even if its own demand is not yet, because of what else they carry."""
        depth = self.group_blocks
        held = n_held = 0
        for a, m in matches.items():
            load = loads.get(a)
            if m >= depth and load is not None:
                held += load
                n_held += 1
        if not n_held or demand < held / 2:
            return 0.0
        return held / (n_held * target)

    def _adjust(self, key: int, g: _Group, shares: float, demand: float, target: float,
                matches: Mapping[str, int], endpoints: Sequence[Endpoint],
                lazy: _Loads) -> None:
        """Add or drop at most one holder (`shares`: the group's share x candidates)."""
        holders = g.holders
        k = max(len(holders), 1)
        since = g.seen - g.changed
        if (g.pressure > 1.0 and shares > k and k < len(endpoints)
                and (not holders or since >= self.settle)):
            self._grow(key, g, demand, target, matches, endpoints, lazy.by_address())
        elif (len(holders) >= 2 and since >= self.shrink_after
              and (g.ratio < self.shrink_below * (k - 1)
                   or shares < self.shrink_below * (k - 1))):
            # The most loaded holder goes (the latest added among equals); the rest keep
            # the group, all of them already holding its prefix.
            loads = lazy.by_address()
            order = {a: i for i, a in enumerate(holders)}
            drop = max(holders, key=lambda a: (loads.get(a, -1), order[a]))
            holders.remove(drop)
            g.changed = g.seen
            g.pressure = 0.0
            log.info("hot prefix %x: %d holders %s (dropped %s; demand %.1f in flight, "
                     "target %.1f per holder)", key, len(holders), holders, drop, demand, target)

    def _grow(self, key: int, g: _Group, demand: float, target: float,
              matches: Mapping[str, int], endpoints: Sequence[Endpoint],
              loads: Mapping[str, int]) -> None:
        depth = self.group_blocks
        hot = self._hot_counts(key)
        by_address = {e.address: e for e in endpoints}

        def rank(a: str) -> tuple[int, int, int, int, str]:
            return (hot.get(a, 0), 0 if matches.get(a, 0) >= depth else 1,
                    1 if by_address[a].awaiting_first_token else 0, loads[a], a)

        holders = g.holders
        if not holders:
            warm = [a for a, m in matches.items() if m >= depth and a in by_address]
            if not warm:
                return  # nobody holds it (evicted): the scorer's miss handling places it
            # The one carrying the group now stays: the most loaded endpoint holding it.
            holders.append(max(warm, key=lambda a: (loads[a], matches[a], a)))
        others = [a for a in by_address if a not in holders]
        # A holder with room for its part of the group: below the target, if any is.
        roomy = [a for a in others if loads[a] < target] or others
        new = min(roomy, key=rank)
        holders.append(new)
        g.changed = g.seen
        g.pressure = 0.0
        self._replicated[key] = g
        log.info("hot prefix %x: %d holders %s (added %s%s; demand %.1f in flight, target %.1f "
                 "per holder)", key, len(holders), holders, new,
                 "" if matches.get(new, 0) >= depth else ", cold", demand, target)

    def _hot_counts(self, skip: int) -> dict[str, int]:
        """Per endpoint, how many other groups it is one of several holders of."""
        counts: dict[str, int] = {}
        for key, g in self._replicated.items():
            if key != skip and len(g.holders) >= 2:
                for a in g.holders:
                    counts[a] = counts.get(a, 0) + 1
        return counts

    def _restrict(self, holders: Sequence[str], matches: dict[str, int], keys: Sequence[int],
                  candidates: Collection[str]) -> dict[str, int]:
        """Only the holders keep the group's affinity; one not holding the prefix yet counts as
        holding it as deeply as the best holder does."""
        out: dict[str, int] = {}
        depth = self.group_blocks
        deepest = 0  # the deepest match of a holder holding the group
        for a in holders:
            if a in candidates:
                m = out[a] = matches.get(a, 0)
                if m >= depth and m > deepest:
                    deepest = m
        if not out:
            return matches  # none is a candidate of this pick: plain affinity
        if not deepest:
            deepest = max(matches.values(), default=len(keys))
        for a, m in out.items():
            if m < depth:
                out[a] = deepest
        return out

    # -- pool changes and inspection -------------------------------------------------------------

    def retain(self, addresses: Iterable[str]) -> None:
        """Forget holders that left the pool (a group left with none is plain again)."""
        keep = set(addresses)
        for key, g in list(self._replicated.items()):
            g.holders[:] = [a for a in g.holders if a in keep]
            if not g.holders:
                del self._replicated[key]

    def holders(self, keys: Sequence[int]) -> tuple[str, ...]:
        """The holders of the group of a request with block keys `keys` (empty: plain)."""
        key = self.group_key(keys)
        g = self._groups.get(key) if key is not None else None
        return tuple(g.holders) if g is not None else ()

    def replicated(self) -> list[GroupView]:
        """Every group with a holder set, hottest first."""
        views = [GroupView(k, self._share(g), tuple(g.holders))
                 for k, g in self._replicated.items() if g.holders]
        return sorted(views, key=lambda v: -v.share)

