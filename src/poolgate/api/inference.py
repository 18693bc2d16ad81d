"""Gateway API Inference Extension resources: InferencePool (v1alpha2 and v1), InferenceModel, InferenceObjective."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from poolgate.api._base import ApiModel, Labels, Resource

GROUP_V1 = "inference.networking.k8s.io"
GROUP_X = "inference.networking.x-k8s.io"

FailureMode = Literal["FailOpen", "FailClose"]
Port = Annotated[int, Field(ge=1, le=65535)]


class ExtensionRef(ApiModel):
    """v1alpha2 `extensionRef`: the endpoint picker service (poolgate picks endpoints itself)."""

    group: str | None = None
    kind: str = "Service"
    name: str
    port_number: Port | None = None
    failure_mode: FailureMode = "FailClose"


class InferencePoolSpecV1Alpha2(ApiModel):
    """v1alpha2 spec: `targetPortNumber`, flat `selector`, `extensionRef`."""

    target_port_number: Port
    selector: Annotated[Labels, Field(min_length=1)]
    extension_ref: ExtensionRef | None = None


class InferencePoolV1Alpha2(Resource):
    """InferencePool in `inference.networking.x-k8s.io/v1alpha2`."""

    KIND = "InferencePool"
    spec: InferencePoolSpecV1Alpha2


class LabelSelector(ApiModel):
    """v1 `selector`: only `matchLabels` exists in the InferencePool v1 API."""

    match_labels: Annotated[Labels, Field(min_length=1)]


class PortNumber(ApiModel):
    """`{number: N}`."""

    number: Port


class EndpointPickerRef(ApiModel):
    """v1 `endpointPickerRef`."""

    group: str | None = None
    kind: str = "Service"
    name: str
    port: PortNumber | None = None
    failure_mode: FailureMode = "FailClose"


class InferencePoolSpecV1(ApiModel):
    """v1 spec: `targetPorts[].number`, `selector.matchLabels`, `endpointPickerRef`."""

    target_ports: Annotated[list[PortNumber], Field(min_length=1, max_length=8)]
    selector: LabelSelector
    endpoint_picker_ref: EndpointPickerRef | None = None


class InferencePoolV1(Resource):
    """InferencePool in `inference.networking.k8s.io/v1`."""

    KIND = "InferencePool"
    spec: InferencePoolSpecV1


InferencePool = InferencePoolV1Alpha2 | InferencePoolV1


class PoolObjectReference(ApiModel):
    """`poolRef` of an InferenceModel / InferenceObjective."""

    group: str = GROUP_X
    kind: str = "InferencePool"
    name: Annotated[str, Field(min_length=1)]


class TargetModel(ApiModel):
    """`targetModels[]`: a model name the request's `model` may be rewritten to, with a weight."""

    name: Annotated[str, Field(min_length=1)]
    weight: Annotated[int, Field(ge=0, le=1_000_000)] | None = None


class InferenceModelSpec(ApiModel):
    """InferenceModel spec."""

    model_name: Annotated[str, Field(min_length=1)]
    criticality: Literal["Critical", "Standard", "Sheddable"] | None = None
    target_models: list[TargetModel] = Field(default_factory=list)
    pool_ref: PoolObjectReference

    @model_validator(mode="after")
    def _weights_all_or_none(self) -> InferenceModelSpec:
        weighted = [t.weight is not None for t in self.target_models]
        if any(weighted) and not all(weighted):
            raise ValueError("targetModels: set weight on every target or on none")
        return self


class InferenceModel(Resource):
    """InferenceModel (v1alpha2): a served model name, its criticality and target split."""

    KIND = "InferenceModel"
    spec: InferenceModelSpec


class InferenceObjectiveSpec(ApiModel):
    """InferenceObjective spec."""

    priority: int | None = None
    pool_ref: PoolObjectReference


class InferenceObjective(Resource):
    """InferenceObjective: a priority for requests naming it in `x-gateway-inference-objective`."""

    KIND = "InferenceObjective"
    spec: InferenceObjectiveSpec
