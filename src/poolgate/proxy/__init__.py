"""poolgate.proxy."""
