"""poolgate.datalayer: per-endpoint live state (scraped model-server signals, gateway in-flight).

Public API: `Signals`, `EndpointStore`, `MetricsScraper`, `parse_signals`, `MetricsParseError`.
"""

from poolgate.datalayer.metrics_parser import MetricsParseError, parse_signals
from poolgate.datalayer.scraper import MetricsScraper, ScrapeError
from poolgate.datalayer.signals import Signals
from poolgate.datalayer.store import EndpointState, EndpointStore

__all__ = [
    "EndpointState",
    "EndpointStore",
    "MetricsParseError",
    "MetricsScraper",
    "ScrapeError",
    "Signals",
    "parse_signals",
]
