from __future__ import annotations

import json

import pytest

from benchmarks.pick import main, measure_pick_cost


@pytest.mark.parametrize("profile", ["default", "round-robin"])
def test_measure_pick_cost_runs_each_profile(profile: str) -> None:
    cost = measure_pick_cost(8, profile, picks=20, rounds=2)
    assert 0.0 < cost < 1e6


def test_unknown_profile_is_reported() -> None:
    with pytest.raises(ValueError, match="unknown scheduling profile"):
        measure_pick_cost(8, "nope", picks=2)


def test_bench_pick_prints_three_sizes(capsys: pytest.CaptureFixture[str],
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    import benchmarks.pick as bench

    monkeypatch.setattr(bench, "measure_pick_cost", lambda n, profile: float(n))
    main(["queue-kv"])
    lines = capsys.readouterr().out.splitlines()
    assert lines == [f"profile=queue-kv endpoints={n}: {n:.1f} us per pick" for n in (8, 64, 512)]


def test_bench_pick_json_gives_each_size_and_the_scheduler_it_ran(
        capsys: pytest.CaptureFixture[str]) -> None:
    from poolgate.scheduling import scheduler

    main(["--json", "round-robin", "20", "8", "16"])
    out = json.loads(capsys.readouterr().out)
    assert sorted(out["us_per_pick"]) == ["16", "8"]
    assert all(0.0 < v < 1e6 for v in out["us_per_pick"].values())
    assert out["module"] == scheduler.__file__
