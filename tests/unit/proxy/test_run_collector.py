"""The collector settings `poolgate serve` runs with: start-up frozen, rarer young collections,
and a configuration swap that still frees what only the old configuration held."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from poolgate.proxy.run import YOUNG_THRESHOLD, refreeze, tune_collector


class Node:
    """An object that can sit in a reference cycle and be watched through a weak reference."""

    def __init__(self) -> None:
        self.other: Node | None = None


@pytest.fixture
def collector() -> Iterator[None]:
    """The test process's collector as it was, afterwards."""
    threshold = gc.get_threshold()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)


def cycle() -> weakref.ref[Node]:
    a, b = Node(), Node()
    a.other, b.other = b, a
    return weakref.ref(a)


@pytest.mark.usefixtures("collector")
def test_start_up_is_frozen_and_young_collections_are_rarer() -> None:
    tune_collector()
    assert gc.get_freeze_count() > 0
    assert gc.get_threshold()[0] == YOUNG_THRESHOLD > 700


@pytest.mark.usefixtures("collector")
def test_a_swap_frees_the_cycles_only_the_old_configuration_held() -> None:
    old = [Node()]
    watched = cycle()
    old[0].other = watched()  # the old configuration holds the cycle
    tune_collector()
    del old  # the swap: nothing refers to the old configuration any more
    gc.collect()
    assert watched() is not None  # frozen: out of the collector's reach
    refreeze()
    assert watched() is None
    assert gc.get_freeze_count() > 0  # what is alive is frozen again

