"""Pickers: plugins that choose one endpoint from the scored candidates."""
