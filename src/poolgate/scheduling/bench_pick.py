"""`python -m poolgate.scheduling.bench_pick [PROFILE]`: print the pick cost at 8, 64, 512 endpoints."""

from __future__ import annotations

import sys

from poolgate.scheduling.benchmark import measure_pick_cost


def main(argv: list[str]) -> None:
    """Print one line per fleet size for the profile named in `argv` (default `default`)."""
    profile = argv[0] if argv else "default"
    for n in (8, 64, 512):
        print(f"profile={profile} endpoints={n}: {measure_pick_cost(n, profile):.1f} us per pick")


if __name__ == "__main__":
    main(sys.argv[1:])
