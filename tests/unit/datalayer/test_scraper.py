"""MetricsScraper settings that are checked at construction (no sockets, no event loop)."""

from __future__ import annotations

import pytest

from poolgate.datalayer.scraper import MetricsScraper
from poolgate.datalayer.store import EndpointStore


def test_timeout_defaults_to_half_the_staleness_capped_at_one_second() -> None:
    assert MetricsScraper(EndpointStore(), staleness=0.5).timeout == 0.25
    assert MetricsScraper(EndpointStore(), staleness=10.0).timeout == 1.0
    assert MetricsScraper(EndpointStore(), timeout=3.0, staleness=10.0).timeout == 3.0


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"interval": 0}, "scrape interval must be > 0"),
    ({"interval": -1.0}, "scrape interval must be > 0"),
    ({"staleness": 0}, "staleness must be > 0"),
    ({"timeout": 0}, "scrape timeout must be > 0"),
    ({"scheme": "https"}, "only scheme 'http'.*'https'"),
    ({"scheme": "HTTP"}, "only scheme 'http'"),
])
def test_bad_settings_are_rejected_with_the_reason(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        MetricsScraper(EndpointStore(), **kwargs)  # type: ignore[arg-type]


def test_endpoints_keep_order_and_drop_duplicates_before_start() -> None:
    scraper = MetricsScraper(EndpointStore())
    scraper.set_endpoints(["b:1", "a:1", "b:1"])
    assert scraper.endpoints == ["b:1", "a:1"]
    assert not scraper.running


async def test_scrape_once_before_start_is_a_programming_error() -> None:
    scraper = MetricsScraper(EndpointStore())
    with pytest.raises(RuntimeError, match="start"):
        await scraper.scrape_once("127.0.0.1:1")
