"""The `poolgate bench` command line: flags to a BenchConfig, run, then table/JSON/plot output."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Coroutine
from typing import Annotated, Any, TypeVar

import orjson
import typer
from rich.console import Console

from poolgate.bench.config import (
    BenchConfig,
    LoadConfig,
    Target,
    WorkloadConfig,
    parse_model_mix,
    parse_target,
)
from poolgate.bench.errors import BenchError
from poolgate.bench.lengths import LengthSpec
from poolgate.bench.result import BenchResult

T = TypeVar("T")

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)

_WORKLOAD = "Workload"
_LOAD = "Load shape"
_REQ = "Requests"
_OUT = "Output"
_MEASURE = "Side measurements"


@app.command(name="bench", no_args_is_help=True)
def bench(
    url: Annotated[str | None, typer.Option("--url", "-u", metavar="URL", help="Target base URL (e.g. http://127.0.0.1:8000), `NAME=URL` to name it.")] = None,
    compare: Annotated[list[str] | None, typer.Option("--compare", metavar="NAME=URL", help="`NAME=URL`; repeat to run several targets back to back on the identical workload.")] = None,
    workload: Annotated[str, typer.Option("--workload", "-w", help="shared-prefix | random | lora-mix", rich_help_panel=_WORKLOAD)] = "shared-prefix",
    seed: Annotated[int, typer.Option("--seed", help="Seed of the workload and the arrival schedule.", rich_help_panel=_WORKLOAD)] = 0,
    model: Annotated[str | None, typer.Option("--model", "-m", help="Model for every request (default: the first of GET /v1/models).", rich_help_panel=_WORKLOAD)] = None,
    models: Annotated[str | None, typer.Option("--models", metavar="NAME=W,...", help="Model/adapter mix by weight: `base=0.5,sql-lora=0.3`.", rich_help_panel=_WORKLOAD)] = None,
    groups: Annotated[int, typer.Option("--groups", help="shared-prefix: number of system prompts.", rich_help_panel=_WORKLOAD)] = 8,
    prompts_per_group: Annotated[int, typer.Option("--prompts-per-group", help="shared-prefix: distinct questions per group.", rich_help_panel=_WORKLOAD)] = 16,
    system_prompt_len: Annotated[int, typer.Option("--system-prompt-len", help="shared-prefix: tokens of each group's system prompt.", rich_help_panel=_WORKLOAD)] = 1024,
    group_zipf: Annotated[float, typer.Option("--group-zipf", metavar="S", help="shared-prefix: group g is picked with weight 1/(g+1)^S (0: uniform).", rich_help_panel=_WORKLOAD)] = 0.0,
    question_len: Annotated[str, typer.Option("--question-len", metavar="LEN", help="shared-prefix: question tokens (N, LOW:HIGH, normal:MEAN,STD).", rich_help_panel=_WORKLOAD)] = "64",
    input_len: Annotated[str, typer.Option("--input-len", metavar="LEN", help="random/lora-mix: prompt tokens (N, LOW:HIGH, normal:MEAN,STD).", rich_help_panel=_WORKLOAD)] = "256",
    output_len: Annotated[str, typer.Option("--output-len", metavar="LEN", help="max_tokens per request (N, LOW:HIGH, normal:MEAN,STD).", rich_help_panel=_WORKLOAD)] = "128",
    rate: Annotated[float | None, typer.Option("--rate", "-r", help="Open loop: requests per second.", rich_help_panel=_LOAD)] = None,
    arrival: Annotated[str, typer.Option("--arrival", help="Open loop: poisson | constant.", rich_help_panel=_LOAD)] = "poisson",
    concurrency: Annotated[int | None, typer.Option("--concurrency", "-c", help="Closed loop: requests in flight.", rich_help_panel=_LOAD)] = None,
    duration: Annotated[float | None, typer.Option("--duration", "-d", help="Seconds of sending (then wait for what is in flight).", rich_help_panel=_LOAD)] = None,
    requests: Annotated[int | None, typer.Option("--requests", "-n", help="Number of measured requests.", rich_help_panel=_LOAD)] = None,
    warmup: Annotated[int, typer.Option("--warmup", help="Unmeasured requests sent first.", rich_help_panel=_LOAD)] = 0,
    api: Annotated[str, typer.Option("--api", help="chat (/v1/chat/completions) | completions (/v1/completions).", rich_help_panel=_REQ)] = "chat",
    stream: Annotated[bool, typer.Option("--stream/--no-stream", help="Stream responses (needed for TTFT/ITL/TPOT).", rich_help_panel=_REQ)] = True,
    ignore_eos: Annotated[bool, typer.Option("--ignore-eos/--no-ignore-eos", help="Send vLLM's ignore_eos so outputs have max_tokens tokens.", rich_help_panel=_REQ)] = True,
    extra_body: Annotated[str | None, typer.Option("--extra-body", metavar="JSON", help="JSON object merged into every request body.", rich_help_panel=_REQ)] = None,
    header: Annotated[list[str] | None, typer.Option("--header", "-H", metavar="NAME: VALUE", help="`Name: value` added to every request; repeatable.", rich_help_panel=_REQ)] = None,
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds before a request counts as a timeout.", rich_help_panel=_REQ)] = 600.0,
    json_path: Annotated[str | None, typer.Option("--json", metavar="PATH", help="Write the JSON report here.", rich_help_panel=_OUT)] = None,
    raw: Annotated[bool, typer.Option("--raw", help="Include every request's record in the JSON report.", rich_help_panel=_OUT)] = False,
    plot_path: Annotated[str | None, typer.Option("--plot", metavar="PATH.png", help="Write a PNG comparing the runs (needs poolgate[bench]).", rich_help_panel=_OUT)] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar and no table.", rich_help_panel=_OUT)] = False,
    scrape_url: Annotated[list[str] | None, typer.Option("--scrape-url", metavar="URL", help="A model server /metrics URL to sample vllm:num_requests_waiting from; repeatable.", rich_help_panel=_MEASURE)] = None,
    scrape_interval: Annotated[float, typer.Option("--scrape-interval", help="Seconds between scrapes.", rich_help_panel=_MEASURE)] = 0.5,
    cpu_pid: Annotated[list[str] | None, typer.Option("--cpu-pid", metavar="[NAME=]PID", help="`PID` or `NAME=PID`: report this process's CPU µs per request; repeatable per target.", rich_help_panel=_MEASURE)] = None,
    cpu_children: Annotated[bool, typer.Option("--cpu-children", help="Add the CPU time of the --cpu-pid process's descendants.", rich_help_panel=_MEASURE)] = False,
) -> None:
    """Load-test OpenAI-compatible endpoints (open or closed loop) and report TTFT, TPOT, ITL, E2E."""
    try:
        config = BenchConfig(
            workload=WorkloadConfig(
                kind=_choice(workload, ("shared-prefix", "random", "lora-mix"), "--workload"),
                seed=seed,
                model=model,
                models=parse_model_mix(models) if models else (),
                groups=groups,
                prompts_per_group=prompts_per_group,
                system_prompt_len=system_prompt_len,
                group_zipf=group_zipf,
                question_len=LengthSpec.parse(question_len),
                input_len=LengthSpec.parse(input_len),
                output_len=LengthSpec.parse(output_len),
            ),
            load=LoadConfig(
                arrival=_choice(arrival, ("poisson", "constant"), "--arrival"),
                rate=rate,
                concurrency=concurrency,
                duration=duration,
                requests=requests,
                warmup=warmup,
            ),
            api=_choice(api, ("chat", "completions"), "--api"),
            stream=stream,
            ignore_eos=ignore_eos,
            extra_body=_parse_extra_body(extra_body),
            headers=tuple(_parse_header(h) for h in header or ()),
            timeout=timeout,
            scrape_urls=tuple(scrape_url or ()),
            scrape_interval=scrape_interval,
            cpu_children=cpu_children,
        )
        targets = _targets(url, compare or [], cpu_pid or [])
        err = Console(stderr=True)
        show_progress = not quiet and err.is_terminal
        results = _run_async(_run(config, targets, show_progress, err))
        if not quiet:
            from poolgate.bench.table import summary_table

            Console().print(summary_table(results))
        if json_path:
            from poolgate.bench.report_json import write_json

            write_json(results, json_path, raw=raw)
        if plot_path:
            from poolgate.bench.plot import plot

            plot(results, plot_path)
    except BenchError as e:
        typer.echo(f"poolgate bench: error: {e}", err=True)
        raise typer.Exit(2) from None
    if any(r.summary().completed == 0 for r in results):
        typer.echo("poolgate bench: a target completed no request", err=True)
        raise typer.Exit(1)


async def _run(config: BenchConfig, targets: list[Target], progress: bool, console: Console) -> list[BenchResult]:
    from poolgate.bench.runner import run_comparison

    return await run_comparison(config, targets, progress, console=console)


def _run_async(coro: Coroutine[Any, Any, T]) -> T:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)


def _choice(value: str, allowed: tuple[str, ...], flag: str) -> Any:
    if value not in allowed:
        raise BenchError(f"{flag} {value!r}: choose one of {', '.join(allowed)}")
    return value


def _parse_extra_body(text: str | None) -> dict[str, Any]:
    if not text:
        return {}
    try:
        obj = orjson.loads(text)
    except orjson.JSONDecodeError as e:
        raise BenchError(f"--extra-body is not JSON: {e}") from None
    if not isinstance(obj, dict):
        raise BenchError("--extra-body must be a JSON object")
    return obj


def _parse_header(text: str) -> tuple[str, str]:
    name, sep, value = text.partition(":")
    if not sep or not name.strip():
        raise BenchError(f"--header {text!r}: expected `Name: value`")
    return name.strip(), value.strip()


def _targets(url: str | None, compare: list[str], cpu_pids: list[str]) -> list[Target]:
    specs: list[Target] = []
    if url:
        specs.append(parse_target(url, "target"))
    for i, item in enumerate(compare):
        if "=" not in item.split("://")[0]:
            raise BenchError(f"--compare {item!r}: expected NAME=URL")
        specs.append(parse_target(item, f"target{i + 1}"))
    if not specs:
        raise BenchError("give a target: --url URL or --compare NAME=URL (repeatable)")
    pids = _cpu_pids(cpu_pids, [t.name for t in specs])
    return [Target(t.name, t.url, pids.get(t.name)) for t in specs]


def _cpu_pids(items: list[str], names: list[str]) -> dict[str, int]:
    pids: dict[str, int] = {}
    for item in items:
        name, sep, pid_s = item.rpartition("=")
        try:
            pid = int(pid_s)
        except ValueError:
            raise BenchError(f"--cpu-pid {item!r}: expected PID or NAME=PID") from None
        if not sep:
            if len(names) != 1:
                raise BenchError("--cpu-pid without NAME= needs exactly one target; use NAME=PID")
            name = names[0]
        if name not in names:
            raise BenchError(f"--cpu-pid {item!r}: no target named {name!r} (targets: {', '.join(names)})")
        pids[name] = pid
    return pids


def main(args: list[str]) -> None:
    """Run `poolgate bench ARGS...` (exits the process with the command's status)."""
    command = typer.main.get_command(app)
    try:
        command.main(args=args, prog_name="poolgate bench")
    except KeyboardInterrupt:
        typer.echo("poolgate bench: interrupted", err=True)
        sys.exit(130)
