"""`python -m benchmarks.suite`: run the benchmark sections and regenerate the report."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import shutil
import signal
import sys
import tempfile
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType

from benchmarks.suite import (
    capacity,
    epp,
    multicluster,
    precise,
    replicas,
    saturation,
    saturation_profile,
)
from benchmarks.suite import sections as run
from benchmarks.suite.commands import PEERS
from benchmarks.suite.foreign import CpuSnapshot, foreign_share
from benchmarks.suite.machine import peer_versions, this_machine
from benchmarks.suite.model import Section
from benchmarks.suite.multicluster import ramp_settings
from benchmarks.suite.report import render
from benchmarks.suite.settings import (
    RoutingSettings,
    overhead_settings,
    pick_settings,
    routing_settings,
)
from benchmarks.suite.stack import serve_has_scheduler_profile
from benchmarks.suite.store import data_dir, load_sections, note_foreign_cpu, save_section
from poolgate.bench import BenchError, BenchResult, plot

SECTIONS = ("overhead", "routing", "pick", "multicluster", "peers", "epp", "capacity",
            "replicas", "saturation", "precise")
DEFAULT_SECTIONS = ("overhead", "routing", "pick", "multicluster")


@dataclass(frozen=True, slots=True)
class SuiteOptions:
    """The command line, validated."""

    out: Path
    only: tuple[str, ...]
    quick: bool
    peers_venv: Path
    rate: float | None
    keep_logs: bool
    render_only: bool = False


def parse_sections(text: str) -> tuple[str, ...]:
    """`overhead,pick` -> ("overhead", "pick"); unknown names are a usage error."""
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    unknown = [n for n in names if n not in SECTIONS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown section(s) {', '.join(unknown) or '(none)'}; choose from {', '.join(SECTIONS)}")
    return names


def parse_args(argv: Sequence[str]) -> SuiteOptions:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.suite",
        description="Run poolgate's benchmark suite and regenerate docs/benchmarks.md.")
    parser.add_argument("--out", type=Path, default=Path("docs/benchmarks.md"),
                        help="report to write; JSON and plots go to its stem directory")
    parser.add_argument("--only", type=parse_sections, default=DEFAULT_SECTIONS,
                        help=f"comma-separated sections of {','.join(SECTIONS)} "
                             f"(default: {','.join(DEFAULT_SECTIONS)})")
    parser.add_argument("--quick", action="store_true", help="smaller samples (~2 minutes)")
    parser.add_argument("--peers-venv", type=Path, default=Path(".venv-peers"),
                        help="venv holding vllm-router and sglang-router (make bench-peers)")
    parser.add_argument("--rate", type=float, default=None,
                        help="routing sections: requests/s instead of the calibrated rate")
    parser.add_argument("--keep-logs", action="store_true",
                        help="keep the processes' logs and configs (their directory is printed)")
    parser.add_argument("--render-only", action="store_true",
                        help="run nothing: regenerate the report from the saved JSON")
    ns = parser.parse_args(list(argv))
    if ns.rate is not None and not ns.rate > 0:
        parser.error("--rate must be positive")
    return SuiteOptions(ns.out, ns.only, ns.quick, ns.peers_venv.absolute(), ns.rate,
                        ns.keep_logs, ns.render_only)


def _plot(results: list[BenchResult], directory: Path, section: Section) -> Section:
    """`section` with its PNG written beside the JSON, or with a note saying why not."""
    if not results:
        return section
    name = f"{section.name}.png"
    try:
        with warnings.catch_warnings():
            # Non-streaming runs have no TTFT, so that panel has nothing to label.
            warnings.filterwarnings("ignore", message="No artists with labels", category=UserWarning)
            plot(results, directory / name)
    except BenchError as e:
        return dataclasses.replace(section, notes=[*section.notes, f"no plot: {e}"])
    return dataclasses.replace(section, plot=name)


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


async def run_suite(opts: SuiteOptions, workdir: Path) -> list[str]:
    """Run the chosen sections, saving each as it completes; returns the sections that failed."""
    cwd = Path.cwd()
    out_dir = data_dir(opts.out)
    failed: list[str] = []
    needs_gateway = any(s in opts.only for s in ("overhead", "routing", "peers"))
    profiles = serve_has_scheduler_profile() if needs_gateway else True
    if needs_gateway and not profiles:
        _say("note: `poolgate serve` has no --scheduler-profile; poolgate runs use its built-in choice")
    routing = routing_settings(opts.quick)
    if opts.rate is not None:
        routing = dataclasses.replace(routing, rate=opts.rate)
    for name in opts.only:
        _say(f"== {name}")
        started = time.monotonic()
        before = CpuSnapshot.take()
        try:
            if name == "overhead":
                sec, outcome = await run.overhead(overhead_settings(opts.quick), workdir / name,
                                                  profiles)
                save_section(out_dir, _plot(outcome.results, out_dir, sec))
            elif name == "routing":
                sec, outcome = await run.routing(routing, workdir / name, profiles)
                save_section(out_dir, _plot(outcome.results, out_dir, sec))
            elif name == "pick":
                save_section(out_dir, await run.pick(pick_settings(opts.quick), workdir / name))
            elif name == "multicluster":
                sec = await multicluster.run(ramp_settings(opts.quick), workdir / name)
                multicluster.plot(sec, out_dir / "multicluster.png")
                save_section(out_dir, dataclasses.replace(sec, plot="multicluster.png"))
            elif name in _OWN_RUNNERS:
                await _OWN_RUNNERS[name](opts, workdir / name, cwd)
            else:
                await _peers(opts, workdir, routing, profiles)
        except BenchError as e:
            _say(f"{name}: failed: {e}")
            failed.append(name)
        else:
            share = foreign_share(before, CpuSnapshot.take(), os.cpu_count() or 1)
            for saved in _names_of(name):
                note_foreign_cpu(out_dir, saved, share)
            _say(f"== {name}: done in {time.monotonic() - started:.0f} s"
                 + ("" if share is None else f"; other work used {share:.0%} of the CPU"))
    return failed


async def _peers(opts: SuiteOptions, workdir: Path, routing: RoutingSettings,
                 profiles: bool) -> None:
    """Issue 7: the peer routers' overhead and routing sections."""
    out_dir, venv, cwd = data_dir(opts.out), opts.peers_venv, Path.cwd()
    if not all(p.executable(venv).exists() for p in PEERS):
        raise BenchError(f"the peer routers are not installed in {venv}: run "
                         f"`make bench-peers` (or pass --peers-venv)")
    sec, outcome = await run.peers_overhead(overhead_settings(opts.quick), venv,
                                            workdir / "peers-overhead", cwd, profiles)
    save_section(out_dir, _plot(outcome.results, out_dir, sec))
    sec, outcome = await run.peers_routing(routing, venv, workdir / "peers-routing", cwd,
                                           profiles)
    save_section(out_dir, _plot(outcome.results, out_dir, sec))


async def _epp(opts: SuiteOptions, workdir: Path, cwd: Path) -> None:
    """Issue 15: Envoy + `poolgate epp` (cost per request, then routing quality); the peer
    routers are included when their venv exists."""
    out_dir = data_dir(opts.out)
    venv = opts.peers_venv if epp.peers_available(opts.peers_venv) else None
    save_section(out_dir, await epp.cost(epp.cost_settings(opts.quick), workdir / "cost", venv,
                                         cwd))
    settings = epp.zipf_routing_settings(opts.quick)
    if opts.rate is not None:
        settings = dataclasses.replace(settings, rate=opts.rate)
    save_section(out_dir, await epp.routing(settings, workdir / "routing", venv, cwd))


async def _capacity(opts: SuiteOptions, workdir: Path, cwd: Path) -> None:
    """Issue 17, item 3: the highest rate under the TTFT target, per front, and the ceiling;
    the peer routers are included when their venv exists."""
    venv = opts.peers_venv if epp.peers_available(opts.peers_venv) else None
    section = await capacity.run(capacity.capacity_settings(opts.quick), workdir, venv, cwd)
    save_section(data_dir(opts.out), section)


async def _replicas(opts: SuiteOptions, workdir: Path, cwd: Path) -> None:
    """Issue 17, item 3: one gateway against three behind a round-robin front, with and
    without their shared in-flight view."""
    settings = replicas.replica_settings(opts.quick)
    if opts.rate is not None:
        settings = dataclasses.replace(
            settings, routing=dataclasses.replace(settings.routing, rate=opts.rate))
    save_section(data_dir(opts.out), await replicas.run(settings, workdir))


async def _saturation(opts: SuiteOptions, workdir: Path, cwd: Path) -> None:
    """Issue 18: every front at saturation and fixed rates with `wrk`, then the profile of
    `poolgate serve` there; the peer routers are included when their venv exists."""
    settings = saturation.saturation_settings(opts.quick)
    venv = saturation.available_peers(opts.peers_venv)
    save_section(data_dir(opts.out), await saturation.run(settings, workdir / "fronts", venv, cwd))
    save_section(data_dir(opts.out), await saturation_profile.run(
        saturation_profile.profile_settings(opts.quick), settings, workdir / "profile"))


async def _precise(opts: SuiteOptions, workdir: Path, cwd: Path) -> None:
    """Issue 17, item 3: precise, approximate and round-robin prefix routing with KV caches
    too small for every group's prefix, without and with traffic around the gateway."""
    settings = precise.precise_settings(opts.quick)
    if opts.rate is not None:
        settings = dataclasses.replace(
            settings, routing=dataclasses.replace(settings.routing, rate=opts.rate))
    save_section(data_dir(opts.out), await precise.run(settings, workdir))


# Sections that run from (options, their work directory, the current directory) alone.
_OWN_RUNNERS = {"epp": _epp, "capacity": _capacity, "replicas": _replicas,
                "saturation": _saturation, "precise": _precise}


def _names_of(section: str) -> tuple[str, ...]:
    """The saved sections an option of --only produces."""
    return {"peers": ("peers-overhead", "peers-routing"),
            "epp": ("epp-cost", "epp-routing"),
            "saturation": ("saturation", "saturation-profile")}.get(section, (section,))


def write_report(opts: SuiteOptions) -> None:
    """Regenerate the report from every saved section."""
    machine = this_machine(peer_versions(opts.peers_venv, tuple(p.name for p in PEERS)))
    sections = load_sections(data_dir(opts.out))
    generated = datetime.now(UTC).isoformat(timespec="seconds")
    opts.out.parent.mkdir(parents=True, exist_ok=True)
    opts.out.write_text(render(sections, machine, generated))


def _terminate(signum: int, frame: FrameType | None) -> None:
    # SIGTERM takes the Ctrl-C path, so every process group is stopped on the way out.
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    opts = parse_args(sys.argv[1:] if argv is None else argv)
    if opts.render_only:
        write_report(opts)
        _say(f"wrote {opts.out} from {data_dir(opts.out)}/")
        return 0
    signal.signal(signal.SIGTERM, _terminate)
    # A shell starts background jobs with SIGINT ignored; Ctrl-C / kill -INT must still stop us.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    workdir = Path(tempfile.mkdtemp(prefix="poolgate-bench-"))
    failed: list[str] = []
    try:
        failed = asyncio.run(run_suite(opts, workdir))
        write_report(opts)
        _say(f"wrote {opts.out} (data in {data_dir(opts.out)}/)")
    except KeyboardInterrupt:
        _say("interrupted; every started process was stopped")
        return 130
    finally:
        if opts.keep_logs or failed:
            _say(f"process logs: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return 1 if failed else 0
