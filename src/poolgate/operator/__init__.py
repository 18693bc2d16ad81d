"""poolgate.operator: the InferenceService controller that deploys the router (seed 003)."""
