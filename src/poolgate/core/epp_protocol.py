"""The names of the Inference Extension's endpoint-picker protocol (docs/epp.md), shared by the
picker (`poolgate epp`) and the Envoy configuration that calls it (`poolgate envoy-config`)."""

from __future__ import annotations

LB_NAMESPACE = "envoy.lb"  # dynamic/filter metadata namespace of the pick and the served endpoint
SUBSET_NAMESPACE = "envoy.lb.subset_hint"  # where the proxy may restrict the candidates
DESTINATION = "x-gateway-destination-endpoint"  # header and metadata key of the pick(s)
SERVED = "x-gateway-destination-endpoint-served"  # metadata key: the endpoint that answered
SUBSET = "x-gateway-destination-endpoint-subset"  # metadata key: the allowed endpoints
# gRPC metadata on each ext_proc stream naming the backendRef the route sends to, so that the
# picker uses the very backend (pool, retries) Envoy chose instead of routing again.
BACKEND_REF_METADATA = "x-poolgate-backend-ref"
EXT_PROC_FILTER = "envoy.filters.http.ext_proc"  # also the namespace of ext_proc's attributes
