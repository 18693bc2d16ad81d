"""`StateKey`, the typed key into `CycleState` (`interfaces` re-exports it).

A plain module: mypyc compiles `interfaces`, and a generic dataclass compiled by it fails to
import ("attribute '__dict__' of 'type' objects is not writable").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class StateKey(Generic[T]):
    """A typed key into `CycleState`: the value type travels with the key."""

    name: str
