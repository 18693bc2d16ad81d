"""Approximate prefix-cache tracking: chained block hashes of prompts and an LRU index per endpoint."""

from poolgate.scheduling.prefix.hashing import block_hashes, prefix_text
from poolgate.scheduling.prefix.index import PrefixIndex

__all__ = ["PrefixIndex", "block_hashes", "prefix_text"]
