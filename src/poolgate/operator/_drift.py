"""Whether a live object already holds everything the operator would apply (so skip the write)."""

from __future__ import annotations

from typing import Any


def contains(live: Any, desired: Any) -> bool:
    """True when every field of `desired` is in `live` with the same value.

    Dicts compare key by key (the API server's defaults and other managers' fields are extra
    keys, which are fine); lists compare item by item and must have the same length; scalars
    compare equal. A quantity the server normalises (`cpu: 1` → `"1"`) counts as a difference:
    the apply is then sent, which is harmless.
    """
    if isinstance(desired, dict):
        return isinstance(live, dict) and all(
            key in live and contains(live[key], value) for key, value in desired.items())
    if isinstance(desired, list):
        return (isinstance(live, list) and len(live) == len(desired)
                and all(contains(a, b) for a, b in zip(live, desired, strict=True)))
    return bool(live == desired)
