"""poolgate.bench."""
