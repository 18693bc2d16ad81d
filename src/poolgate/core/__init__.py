"""Leaf types every layer may use: pools and endpoints, the gateway's error base and bodies."""
