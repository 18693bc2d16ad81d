"""`poolgate envoy-config`: an Envoy v3 bootstrap rendered from a resolved `Snapshot`.

The same manifests `poolgate serve` reads become listeners, routes and clusters that give Envoy
poolgate's semantics (docs/envoy-config.md): InferencePool routes go through the ext_proc filter
to `poolgate epp`, which names the endpoint; what cannot be expressed in Envoy is listed, never
dropped in silence.
"""
