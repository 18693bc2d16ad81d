"""Errors a `poolgate bench` user can cause (bad flags, unreachable targets, missing extras)."""

from __future__ import annotations


class BenchError(Exception):
    """A user-facing benchmark error; the message is printed as-is, without a traceback."""
