"""Bounded `model_name` / `target_model_name` label values.

The model name comes from the request body, so a client can send anything; a Prometheus series
per distinct value would grow without limit. A name is used as a label value only when the
gateway knows it:

- pinned: an InferenceModel's `modelName` or one of its target models (from the configuration;
  never evicted and not counted against the cap);
- served: a model server answered a request for it with a 2xx status (it exists there). At
  most `cap` served names are remembered; a served name past the cap is counted as `other`.

Any other name is counted as `unknown`; a request without a model has the empty value.
"""

from __future__ import annotations

from collections.abc import Iterable

UNKNOWN = "unknown"
OTHER = "other"
MAX_SERVED_MODELS = 100


class ModelLabels:
    """Which label value a model name is counted under (see the module docstring)."""

    __slots__ = ("_cap", "_pinned", "_served")

    def __init__(self, cap: int = MAX_SERVED_MODELS) -> None:
        self._cap = cap
        self._pinned: frozenset[str] = frozenset()
        self._served: set[str] = set()

    def pin(self, names: Iterable[str]) -> None:
        """The configured names (replacing the previous configuration's)."""
        self._pinned = frozenset(names)

    def label(self, name: str | None) -> str:
        """The label value of `name` as far as the gateway knows it now."""
        if name is None:
            return ""
        if name in self._pinned or name in self._served:
            return name
        return UNKNOWN

    def served(self, name: str | None) -> str:
        """A model server answered a request for `name` with success: remember it (within the
        cap) and return its label value."""
        if name is None:
            return ""
        if name in self._pinned or name in self._served:
            return name
        if len(self._served) >= self._cap:
            return OTHER
        self._served.add(name)
        return name

    def served_pair(self, model: str | None, target: str | None) -> tuple[str, str]:
        """`served` of both names of a request (one call: this runs per request)."""
        pinned, served = self._pinned, self._served
        if model is not None and target is not None and (model in pinned or model in served) \
                and (target in pinned or target in served):
            return model, target
        return self.served(model), self.served(target)

    @property
    def served_names(self) -> frozenset[str]:
        """The served names remembered so far."""
        return frozenset(self._served)
