"""The pydantic parameter models of the filters, which mypyc compiles (setup.py).

mypyc cannot compile a pydantic model, so these live in this plain module; each filter's module
re-exports its model as `Params`, which is what the registry and the tests use.
"""

from __future__ import annotations

from poolgate.scheduling._params import PluginParams


class FreshMetricsParams(PluginParams):
    """Parameters of `fresh-metrics-filter`."""

    require_fresh: bool = False


class LoraCapableParams(PluginParams):
    """Parameters of `lora-capable-filter`."""

    strict: bool = False
