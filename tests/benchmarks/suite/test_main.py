"""The suite's command line."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from benchmarks.suite.main import DEFAULT_SECTIONS, main, parse_args, parse_sections


def test_defaults() -> None:
    opts = parse_args([])
    assert opts.out == Path("docs/benchmarks.md")
    assert opts.only == DEFAULT_SECTIONS == ("overhead", "routing", "pick", "multicluster")
    assert not opts.quick and opts.rate is None
    assert opts.peers_venv == Path(".venv-peers").absolute()


def test_only_and_options() -> None:
    opts = parse_args(["--only", "peers, pick", "--quick", "--out", "x/b.md", "--rate", "9.5",
                       "--peers-venv", "/p"])
    assert opts.only == ("peers", "pick")
    assert opts.quick and opts.rate == 9.5 and opts.out == Path("x/b.md")
    assert opts.peers_venv == Path("/p")


def test_unknown_section_is_refused() -> None:
    with pytest.raises(argparse.ArgumentTypeError, match=r"unknown section.*bogus"):
        parse_sections("overhead,bogus")
    with pytest.raises(argparse.ArgumentTypeError):
        parse_sections(" , ")


def test_bad_rate_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        parse_args(["--rate", "0"])
    assert exc.value.code == 2
    assert "--rate must be positive" in capsys.readouterr().err


def test_render_only_runs_nothing(tmp_path: Path) -> None:
    out = tmp_path / "b.md"
    assert main(["--render-only", "--out", str(out), "--peers-venv", str(tmp_path)]) == 0
    assert out.read_text().startswith("# Benchmarks\n")
    assert not (tmp_path / "b").exists()  # nothing measured, nothing saved
