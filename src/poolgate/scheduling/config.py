"""The endpoint-picker configuration: a profile name, or a profile's own list of plugins.

```yaml
profile: my-profile        # a built-in name, or the name of the custom list below
staleness: 2.0             # seconds after which scraped metrics count as unknown
seed: 7                    # optional: fixes the random tie-breaks
plugins:                   # optional: omit to use the built-in profile named above
- type: prefix-cache-scorer
  name: prefix             # optional, defaults to the type
  weight: 4                # scorers only, default 1
  params: {blockSize: 64, loadBoundAbs: 4}
- type: queue-scorer
- type: max-score-picker
```

GIE's `EndpointPickerConfig` shape (`plugins[{type, name, parameters}]` +
`schedulingProfiles[{name, plugins[{pluginRef, weight}]}]`) is read by
`SchedulerConfig.from_endpoint_picker_config`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError

from poolgate.api.validation_text import describe_validation_error
from poolgate.scheduling.errors import SchedulerConfigError
from poolgate.scheduling.profiles import BUILTIN_PROFILES, DEFAULT_PROFILE

# GIE plugin types that only organise profiles; poolgate runs one profile per pool.
_PROFILE_HANDLER_TYPES = frozenset({"single-profile-handler"})


class PluginConfig(BaseModel):
    """One plugin of a profile: its registered `type`, instance `name`, scorer `weight`, `params`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: str
    name: str | None = None
    weight: float | None = Field(None, ge=0.0)
    params: dict[str, Any] = Field(
        default_factory=dict, validation_alias=AliasChoices("params", "parameters"))

    @property
    def instance_name(self) -> str:
        """The name used in logs and results: `name`, or the type when unnamed."""
        return self.name or self.type


class SchedulerConfig(BaseModel):
    """Which scheduling profile to run, and how."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    profile: str = DEFAULT_PROFILE
    plugins: list[PluginConfig] | None = None
    staleness: float = Field(2.0, gt=0.0)
    seed: int | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> SchedulerConfig:
        """Validate `data`; raises `SchedulerConfigError` naming every bad field."""
        try:
            return cls.model_validate(dict(data or {}))
        except ValidationError as exc:
            raise SchedulerConfigError(
                f"invalid scheduler config: {describe_validation_error(exc)}") from exc

    @classmethod
    def from_endpoint_picker_config(cls, doc: Mapping[str, Any],
                                    profile: str | None = None) -> SchedulerConfig:
        """Read GIE's `EndpointPickerConfig` (the `spec`-less document body).

        Uses the scheduling profile named `profile`, else the first one; profile-handler plugins
        are skipped.
        """
        declared: dict[str, Mapping[str, Any]] = {}
        for raw in doc.get("plugins") or []:
            if not isinstance(raw, Mapping) or "type" not in raw:
                raise SchedulerConfigError(f"EndpointPickerConfig plugin without a type: {raw!r}")
            declared[str(raw.get("name") or raw["type"])] = raw
        profiles = doc.get("schedulingProfiles") or []
        chosen = next((p for p in profiles if profile is None or p.get("name") == profile), None)
        if chosen is None:
            wanted = f"profile {profile!r}" if profile else "any profile"
            raise SchedulerConfigError(f"EndpointPickerConfig has no scheduling {wanted}")
        plugins: list[dict[str, Any]] = []
        for ref in chosen.get("plugins") or []:
            name = str(ref.get("pluginRef", ""))
            raw = declared.get(name)
            if raw is None:
                raise SchedulerConfigError(
                    f"scheduling profile {chosen.get('name')!r} refers to undeclared plugin {name!r}")
            if raw["type"] in _PROFILE_HANDLER_TYPES:
                continue
            entry: dict[str, Any] = {"type": raw["type"], "name": name,
                                     "params": dict(raw.get("parameters") or {})}
            if ref.get("weight") is not None:
                entry["weight"] = ref["weight"]
            plugins.append(entry)
        return cls.from_dict({"profile": str(chosen.get("name") or "custom"), "plugins": plugins})

    def resolved_plugins(self) -> list[PluginConfig]:
        """The plugin list to build: the custom list, or the built-in profile's."""
        if self.plugins is not None:
            return list(self.plugins)
        builtin = BUILTIN_PROFILES.get(self.profile)
        if builtin is None:
            known = ", ".join(sorted(BUILTIN_PROFILES))
            raise SchedulerConfigError(
                f"unknown scheduling profile {self.profile!r} (built-in profiles: {known}); "
                "give a plugin list to define a custom one")
        return [PluginConfig.model_validate(p) for p in builtin]
