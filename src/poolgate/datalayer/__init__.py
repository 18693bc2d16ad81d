"""poolgate.datalayer: per-endpoint live state (scraped model-server signals, gateway in-flight).

Public API: `Signals`, `EndpointStore`, `MetricsScraper`, `ScrapeCadence`, `parse_signals`,
`MetricsParseError`.
"""

from poolgate.datalayer.metrics_parser import MetricsParseError, parse_signals
from poolgate.datalayer.scraper import MetricsScraper, ScrapeError
from poolgate.datalayer.scraper_cadence import ScrapeCadence
from poolgate.datalayer.signals import Signals
from poolgate.datalayer.store import EndpointState, EndpointStore

__all__ = [
    "EndpointState",
    "EndpointStore",
    "MetricsParseError",
    "MetricsScraper",
    "ScrapeCadence",
    "ScrapeError",
    "Signals",
    "parse_signals",
]
