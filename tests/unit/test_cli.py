from __future__ import annotations

import subprocess
import sys

from poolgate import __version__


def test_version_flag_prints_the_package_version() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "poolgate", "--version"], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == f"poolgate {__version__}"
