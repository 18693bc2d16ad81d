"""Process logging: human-readable lines on stderr (the access log goes to stdout as JSON)."""

from __future__ import annotations

import logging
import sys

LEVELS = ("debug", "info", "warning", "error")


def configure_logging(level: str) -> None:
    """Configure the root logger once for a poolgate process."""
    if level not in LEVELS:
        raise ValueError(f"log level must be one of {', '.join(LEVELS)}, not {level!r}")
    logging.basicConfig(
        level=getattr(logging, level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # aiohttp logs every client disconnect at INFO/ERROR; a gateway sees those all day.
    logging.getLogger("aiohttp.server").setLevel(logging.CRITICAL)
