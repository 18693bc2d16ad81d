from __future__ import annotations

import pytest
from typer.testing import CliRunner

from poolgate.bench.command import app

runner = CliRunner()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(["-n", "1", "-c", "1", "-m", "m"], "give a target", id="no-target"),
        pytest.param(["-u", "http://h:1", "-n", "1", "-m", "m"], "exactly one of --rate", id="no-load"),
        pytest.param(["-u", "http://h:1", "-n", "1", "-c", "1", "-m", "m", "--workload", "zipf"],
                     "--workload 'zipf'", id="bad-workload"),
        pytest.param(["-u", "http://h:1", "-n", "1", "-c", "1", "-m", "m", "--output-len", "x"],
                     "cannot parse length", id="bad-length"),
        pytest.param(["-u", "http://h:1", "-n", "1", "-c", "1", "-m", "m", "-H", "nocolon"],
                     "Name: value", id="bad-header"),
        pytest.param(["-u", "http://h:1", "-n", "1", "-c", "1", "-m", "m", "--extra-body", "[1]"],
                     "JSON object", id="bad-extra-body"),
        pytest.param(["--compare", "http://h:1", "-n", "1", "-c", "1", "-m", "m"],
                     "NAME=URL", id="unnamed-compare"),
        pytest.param(["--compare", "a=http://h:1", "--compare", "b=http://h:2", "-n", "1", "-c", "1",
                      "-m", "m", "--cpu-pid", "5"], "exactly one target", id="ambiguous-cpu-pid"),
        pytest.param(["-u", "http://h:1", "-n", "1", "-c", "1", "-m", "m", "--cpu-pid", "zz=5"],
                     "no target named 'zz'", id="unknown-cpu-target"),
    ],
)
def test_user_errors_exit_2_with_a_message(args: list[str], message: str) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert message in result.output


def test_help_lists_every_documented_flag() -> None:
    result = runner.invoke(app, ["--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for flag in ("--rate", "--arrival", "--concurrency", "--duration", "--requests", "--warmup",
                 "--workload", "--groups", "--prompts-per-group", "--system-prompt-len",
                 "--question-len", "--output-len", "--input-len", "--models", "--api",
                 "--no-stream", "--json", "--raw", "--plot", "--compare", "--scrape-url",
                 "--cpu-pid", "--quiet"):
        assert flag in result.output


def test_docs_describe_every_flag() -> None:
    from pathlib import Path

    docs = (Path(__file__).resolve().parents[3] / "docs" / "bench.md").read_text()
    result = runner.invoke(app, ["--help"], env={"COLUMNS": "300"})
    flags = {w.strip("│,") for w in result.output.split() if w.startswith("--")}
    assert {"--rate", "--cpu-children", "--scrape-interval"} <= flags
    missing = sorted(f for f in flags if f and f not in docs and f != "--help")
    assert not missing, f"docs/bench.md does not mention {missing}"
