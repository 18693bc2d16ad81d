"""poolgate.state."""
