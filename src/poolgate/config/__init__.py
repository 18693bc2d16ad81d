"""Resolving Kubernetes-style resources into one immutable runtime snapshot (`load_snapshot`)."""
