"""Scorers: plugins that rate each candidate endpoint in [0, 1]."""
