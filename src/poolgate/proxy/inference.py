"""Inference routing: read the OpenAI request body once, map `model` through InferenceModel."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

import orjson

from poolgate.config.choice import choose_target_model
from poolgate.config.snapshot import Snapshot
from poolgate.proxy.errors import BadRequest

OBJECTIVE_HEADER = "x-gateway-inference-objective"


@dataclass(slots=True)
class InferenceRequest:
    """The parts of an OpenAI request body the gateway routes on."""

    body: bytes  # what goes upstream (rewritten when the target model differs)
    model: str | None  # the model the client asked for
    target_model: str | None  # the model sent upstream
    criticality: str | None
    payload: dict[str, Any] | None  # the parsed body, for the endpoint picker (prompt/messages)
    stream: bool


def parse_body(body: bytes, content_type: str) -> dict[str, Any] | None:
    """The JSON object in `body`, or None when the request carries no JSON (e.g. a GET)."""
    if not body:
        return None
    if content_type and "json" not in content_type:
        return None
    try:
        obj = orjson.loads(body)
    except orjson.JSONDecodeError as e:
        raise BadRequest(f"Malformed JSON in the request body: {e}") from None
    if not isinstance(obj, dict):
        raise BadRequest(f"The request body must be a JSON object, not {type(obj).__name__}.")
    return obj


def route_inference(body: bytes, content_type: str, method: str, snapshot: Snapshot,
                    pool_key: str, rnd: random.Random) -> InferenceRequest:
    """Parse the body once, find the InferenceModel for its `model`, choose the target model.

    A model that no InferenceModel names passes through unchanged (criticality unknown).
    """
    payload = parse_body(body, content_type) if method == "POST" else None
    if payload is None:
        return InferenceRequest(body, None, None, None, None, False)
    model = payload.get("model")
    if model is None:
        raise BadRequest("The request body has no `model`: the gateway routes on it.", "model")
    if not isinstance(model, str):
        raise BadRequest(f"`model` must be a string, not {type(model).__name__}.", "model")
    stream = payload.get("stream") is True
    spec = snapshot.inference_model(pool_key, model)
    if spec is None:
        return InferenceRequest(body, model, model, None, payload, stream)
    target = choose_target_model(spec, rnd)
    if target != model:
        payload["model"] = target
        body = orjson.dumps(payload)
    return InferenceRequest(body, model, target, spec.criticality, payload, stream)
