"""poolgate.sim."""
