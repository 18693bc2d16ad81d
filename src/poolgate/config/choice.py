"""Weighted choices the data plane makes per request: backendRef and InferenceModel target."""

from __future__ import annotations

import random

from poolgate.config.snapshot import Backend, InferenceModelSpec, RouteRule


def _no_backend(rule: RouteRule) -> Backend:
    message = (
        "the route rule has no backendRefs" if not rule.backends
        else "every backendRef of the route rule has weight 0"
    )
    return Backend(kind="", name="", namespace="", weight=0,
                   key=f"rule/{rule.index}/no-backend", error=message)


def choose_backend(rule: RouteRule, rnd: random.Random) -> Backend:
    """A backend picked with probability weight/total; an error Backend (500) when none can be."""
    backends = rule.backends
    if len(backends) == 1 and backends[0].weight > 0:
        return backends[0]
    total = sum(b.weight for b in backends)
    if total <= 0:
        return _no_backend(rule)
    point = rnd.randrange(total)
    for backend in backends:
        point -= backend.weight
        if point < 0:
            return backend
    raise AssertionError("unreachable: point < total")


def choose_target_model(spec: InferenceModelSpec, rnd: random.Random) -> str:
    """The model name to send upstream: a target picked by weight, or `model_name` itself."""
    targets = spec.target_models
    total = sum(t.weight for t in targets)
    if total <= 0:
        return spec.model_name
    point = rnd.randrange(total)
    for target in targets:
        point -= target.weight
        if point < 0:
            return target.name
    raise AssertionError("unreachable: point < total")
