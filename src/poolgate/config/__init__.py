"""poolgate.config."""
