"""Filters: plugins that narrow the candidate endpoints."""
