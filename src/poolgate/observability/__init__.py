"""poolgate.observability."""
