"""poolgate.scheduling."""
