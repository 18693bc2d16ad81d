"""Shared pieces of every resource schema: the camelCase base model, metadata, label checks."""

from __future__ import annotations

import re
from typing import Annotated, ClassVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

# Kubernetes label syntax (apimachinery validation.IsQualifiedName / IsValidLabelValue).
_LABEL_NAME = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


class ApiModel(BaseModel):
    """Base of every schema: camelCase aliases, strict types, unknown fields kept for forward compat.

    A field written in a manifest but not defined here is reported by the loader
    (`poolgate.api.fields`): silently when it is in `INERT`, as a field poolgate does not act on
    when it is in `NOT_ACTED_ON`, and otherwise as unknown (likely a typo), with the closest name.
    """

    # Fields of the upstream schema that poolgate does not model, and whose absence changes how
    # traffic is handled: writing one is a warning that poolgate ignores it.
    NOT_ACTED_ON: ClassVar[frozenset[str]] = frozenset()
    # Fields of the upstream schema with no bearing on what poolgate serves (`status`,
    # `metadata.uid`, or settings whose absence another warning already reports): accepted silently.
    INERT: ClassVar[frozenset[str]] = frozenset()

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="allow",
        frozen=True,
        strict=True,
    )


def _check_labels(labels: dict[str, str]) -> dict[str, str]:
    for key, value in labels.items():
        prefix, _, name = key.rpartition("/")
        if prefix and (len(prefix) > 253 or not _DNS_SUBDOMAIN.match(prefix)):
            raise ValueError(f"label key {key!r} has an invalid prefix (must be a DNS subdomain)")
        if not _LABEL_NAME.match(name):
            raise ValueError(
                f"label key {key!r} is invalid: at most 63 characters, alphanumerics, '-', '_' "
                "or '.', starting and ending with an alphanumeric"
            )
        if len(value) > 63 or not _LABEL_VALUE.match(value):
            raise ValueError(
                f"label value {value!r} for {key!r} is invalid: at most 63 characters, "
                "alphanumerics, '-', '_' or '.', starting and ending with an alphanumeric"
            )
    return labels


Labels = Annotated[dict[str, str], AfterValidator(_check_labels)]
"""A label map checked against Kubernetes label syntax."""


class ObjectMeta(ApiModel):
    """The part of `metadata` poolgate reads; everything else is kept but unused."""

    INERT = frozenset({
        "generateName", "selfLink", "uid", "resourceVersion", "generation", "deletionTimestamp",
        "deletionGracePeriodSeconds", "ownerReferences", "finalizers", "managedFields",
    })

    name: Annotated[str, Field(min_length=1, max_length=253)]
    namespace: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    creation_timestamp: str | None = None


class Resource(ApiModel):
    """A top-level Kubernetes-style object: apiVersion, kind, metadata, spec."""

    KIND: ClassVar[str] = ""
    INERT = frozenset({"status"})

    api_version: str
    kind: str
    metadata: ObjectMeta

    @property
    def namespace(self) -> str:
        """The object's namespace, `default` when unset (as `kubectl apply` would place it)."""
        return self.metadata.namespace or "default"

    @property
    def name(self) -> str:
        """The object's name."""
        return self.metadata.name

    @property
    def key(self) -> str:
        """`namespace/name`."""
        return f"{self.namespace}/{self.metadata.name}"
