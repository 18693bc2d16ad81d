"""Loading the Gateway API / Inference Extension manifests into a `Snapshot` for the gateway."""

from __future__ import annotations

import logging
from collections.abc import Collection, Sequence
from pathlib import Path

from poolgate.config.build import PROFILE_NAMES, load_snapshot
from poolgate.config.snapshot import Snapshot
from poolgate.discovery.source import EndpointSource

log = logging.getLogger("poolgate.server")


class ConfigError(Exception):
    """The manifests could not be loaded; `problems` are printable lines."""

    def __init__(self, problems: Sequence[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = list(problems)


def load(paths: Sequence[Path], profiles: Collection[str] = PROFILE_NAMES,
         cluster: EndpointSource | None = None, warn: bool = True,
         warned: set[str] | None = None) -> Snapshot:
    """Load and resolve the manifests; raise `ConfigError` listing every error. `profiles`:
    the scheduler profile names pools may ask for; `cluster`: discovered endpoints (pods);
    `warn`: log the warnings (off for a load that is redone as soon as the pods are known);
    `warned`: the warnings the previous load of the same manifests logged: only the others are
    logged, and it becomes this load's (a reload for every pod change repeats none of them)."""
    result = load_snapshot(paths, profiles=profiles, cluster=cluster)
    warnings = [str(p) for p in result.problems if p.severity == "warning"]
    if warn:
        for line in warnings:
            if warned is None or line not in warned:
                log.warning("%s", line)
    if warned is not None:
        warned.clear()
        warned.update(warnings)
    errors = [str(p) for p in result.problems if p.severity == "error"]
    if errors or result.snapshot is None:
        raise ConfigError(errors or ["the configuration could not be resolved"])
    return result.snapshot
