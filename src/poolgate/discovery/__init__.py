"""poolgate.discovery."""
