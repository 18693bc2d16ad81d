"""poolgate.api."""
