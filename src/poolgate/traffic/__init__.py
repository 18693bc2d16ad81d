"""poolgate.traffic."""
