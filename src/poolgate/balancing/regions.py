"""Where the gateway stands and which regions are nearer: `--region` and `--region-order`."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RegionOrder:
    """Regions nearest first, as seen from the gateway.

    `home` is the gateway's own region (`--region`), `order` the configured order
    (`--region-order`, nearest first). The home region always comes first; regions in `order`
    follow in that order; any other region comes after them, one tier each, by name. An
    endpoint declared without a region counts as being in the home region. With neither a home
    nor an order there is no nearer region: every region is one tier.
    """

    home: str | None = None
    order: tuple[str, ...] = ()

    @classmethod
    def parse(cls, home: str | None, order_text: str | None) -> RegionOrder:
        """From the command-line values; `order_text` is comma-separated, blanks dropped."""
        order = tuple(dict.fromkeys(
            r.strip() for r in (order_text or "").split(",") if r.strip()))
        return cls(home.strip() if home and home.strip() else None, order)

    @property
    def has_preference(self) -> bool:
        """Whether some region is nearer than another."""
        return self.home is not None or bool(self.order)

    def region_of(self, declared: str | None) -> str:
        """The region an endpoint counts in (its own, else the home region, else "")."""
        if declared:
            return declared
        return self.home or ""

    def rank(self, region: str) -> tuple[int, str]:
        """Sort key: smaller is nearer."""
        if not self.has_preference:
            return (0, "")
        if region == self.home:
            return (-1, "")
        try:
            return (self.order.index(region), "")
        except ValueError:
            return (len(self.order), region)

    def tiers(self, regions: Iterable[str]) -> list[tuple[str, ...]]:
        """Regions grouped nearest first; a tier holds regions equally near."""
        ranked: dict[tuple[int, str], list[str]] = {}
        for region in dict.fromkeys(regions):
            ranked.setdefault(self.rank(region), []).append(region)
        return [tuple(sorted(ranked[k])) for k in sorted(ranked)]

    def sorted_regions(self, regions: Sequence[str]) -> list[str]:
        """`regions` nearest first (ties by name)."""
        return sorted(dict.fromkeys(regions), key=lambda r: (self.rank(r), r))
