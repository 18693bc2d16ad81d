"""How often to scrape an endpoint: fast while requests flow to its pool, slow once it is idle.

A pool that no request has been bound for in `idle_after` seconds has nothing to route, so its
endpoints are scraped every `idle` seconds instead of every `base` seconds; the first request
bound for it brings the base interval back (and the scraper scrapes its endpoints at once).
The back-off never lets signals go stale: `within(staleness)` caps the idle interval at half the
staleness bound, so an idle pool's last scrape is always younger than the bound the endpoint
picker and the saturation check apply, and the first request after an idle period is routed on
signals at most `idle` (plus one scrape) old while the fresh scrape is under way.
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_IDLE_INTERVAL = 1.0
DEFAULT_IDLE_AFTER = 3.0


@dataclass(frozen=True, slots=True)
class ScrapeCadence:
    """The scrape interval as a function of how long a pool has gone without requests.

    `base`: seconds between scrapes while requests flow; `idle`: seconds between scrapes once
    no request has been bound for the pool in `idle_after` seconds (`idle == base` never backs
    off).
    """

    base: float
    idle: float
    idle_after: float = DEFAULT_IDLE_AFTER

    def __post_init__(self) -> None:
        if not self.base > 0:
            raise ValueError(f"scrape interval must be > 0 seconds, got {self.base}")
        if self.idle < self.base:
            raise ValueError(f"the idle scrape interval ({self.idle:g}s) must not be shorter "
                             f"than the scrape interval ({self.base:g}s)")
        if not self.idle_after >= 0:
            raise ValueError(f"the idle delay must be >= 0 seconds, got {self.idle_after}")

    @classmethod
    def fixed(cls, interval: float) -> ScrapeCadence:
        """Every `interval` seconds, busy or idle."""
        return cls(interval, interval)

    @property
    def adaptive(self) -> bool:
        """Whether an idle pool is scraped less often."""
        return self.idle > self.base

    def within(self, staleness: float) -> ScrapeCadence:
        """This cadence with the idle interval capped at `staleness / 2` (never below `base`),
        so signals of an idle pool stay fresh by that bound."""
        idle = max(self.base, min(self.idle, staleness / 2))
        return ScrapeCadence(self.base, idle, self.idle_after)

    def interval(self, idle_for: float) -> float:
        """Seconds until the next scrape of an endpoint whose pool last had a request bound for
        it `idle_for` seconds ago."""
        return self.base if idle_for < self.idle_after else self.idle

    def is_idle(self, idle_for: float) -> bool:
        """Whether `idle_for` seconds without requests puts the pool on the idle interval."""
        return self.adaptive and idle_for >= self.idle_after
