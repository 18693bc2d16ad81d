from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.processes import ProcessGroup, process_group


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[ProcessGroup]:
    """Start real processes; every one is stopped by PID at teardown, pass or fail."""
    with process_group(tmp_path) as group:
        yield group
