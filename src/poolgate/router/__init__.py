"""poolgate.router: the InferenceService router (seed 003), `poolgate router`; see docs/router.md."""
