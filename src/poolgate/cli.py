"""The `poolgate` command line: commands only, each delegating to its package."""

from __future__ import annotations

import typer

from poolgate import __version__

app = typer.Typer(
    name="poolgate",
    help="An inference gateway for fleets of LLM model servers.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"poolgate {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """An inference gateway for fleets of LLM model servers."""


# Each package registers its own command below (one line each, keep sorted by command name).


def main() -> None:
    """Entry point of the `poolgate` console script."""
    app()
