"""poolgate.router."""
