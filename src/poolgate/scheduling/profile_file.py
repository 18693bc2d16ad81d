"""Custom scheduling profiles from a YAML file (`poolgate serve --scheduler-config FILE`).

The file holds one or more YAML documents, each either

- a poolgate profile: `{profile: NAME, plugins: [...], staleness?, seed?}` (the `SchedulerConfig`
  shape, with a plugin list), defining the profile NAME; or
- GIE's `EndpointPickerConfig` (`kind: EndpointPickerConfig`): each of its `schedulingProfiles`
  becomes a profile of that name.

Pools select a profile by name (annotation `poolgate.dev/scheduler-profile`, or
`--scheduler-profile`), built-in or from the file. Every profile is built once while loading,
so a bad plugin, parameter or weight is reported at start-up, never at the first request.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from poolgate.datalayer.store import EndpointStore
from poolgate.scheduling.builder import build_scheduler
from poolgate.scheduling.config import SchedulerConfig
from poolgate.scheduling.errors import SchedulerConfigError
from poolgate.scheduling.profiles import BUILTIN_PROFILES

ENDPOINT_PICKER_CONFIG = "EndpointPickerConfig"


def load_profile_file(path: Path) -> dict[str, SchedulerConfig]:
    """The custom profiles `path` defines, by name; raises `SchedulerConfigError` naming the file,
    the document and the problem."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise SchedulerConfigError(f"{path}: cannot read: {e.strerror or e}") from None
    try:
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as e:
        raise SchedulerConfigError(f"{path}: not valid YAML: {e}") from None
    if not docs:
        raise SchedulerConfigError(f"{path}: defines no scheduling profile")
    profiles: dict[str, SchedulerConfig] = {}
    for number, doc in enumerate(docs, start=1):
        where = f"{path} (document {number})"
        if not isinstance(doc, Mapping):
            raise SchedulerConfigError(f"{where}: expected a mapping, got {type(doc).__name__}")
        try:
            found = _profiles_of(doc)
        except SchedulerConfigError as e:
            raise SchedulerConfigError(f"{where}: {e}") from None
        for config in found:
            _check_name(config.profile, profiles, where)
            try:
                # Built once here and dropped: every plugin and parameter is checked now.
                build_scheduler(config, EndpointStore())
            except SchedulerConfigError as e:
                raise SchedulerConfigError(f"{where}: {e}") from None
            profiles[config.profile] = config
    return profiles


def _profiles_of(doc: Mapping[str, Any]) -> list[SchedulerConfig]:
    if doc.get("kind") == ENDPOINT_PICKER_CONFIG:
        names = [str(p.get("name")) for p in doc.get("schedulingProfiles") or []
                 if isinstance(p, Mapping) and p.get("name")]
        if not names:
            raise SchedulerConfigError("EndpointPickerConfig has no named schedulingProfiles")
        body = {k: v for k, v in doc.items() if k not in ("apiVersion", "kind")}
        return [SchedulerConfig.from_endpoint_picker_config(body, name) for name in names]
    config = SchedulerConfig.from_dict(doc)
    if config.plugins is None:
        raise SchedulerConfigError(
            f"profile {config.profile!r} has no plugins list (to use a built-in profile, name it "
            "in the annotation or --scheduler-profile instead)")
    return [config]


def _check_name(name: str, seen: Mapping[str, SchedulerConfig], where: str) -> None:
    if name in BUILTIN_PROFILES:
        raise SchedulerConfigError(
            f"{where}: profile {name!r} is a built-in profile's name; give yours another name")
    if name in seen:
        raise SchedulerConfigError(f"{where}: profile {name!r} is defined twice")
