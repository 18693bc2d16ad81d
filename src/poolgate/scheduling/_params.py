"""The base of every plugin's `Params` model: strict, immutable, snake_case or camelCase keys."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel


class PluginParams(BaseModel):
    """Plugin parameters; unknown keys are errors, so a typo never silently keeps a default."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, alias_generator=to_camel, populate_by_name=True,
    )


class NoParams(PluginParams):
    """For plugins without parameters."""
