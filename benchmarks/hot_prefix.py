"""Hot prefixes (issue 17, item 4): the default profile with and without `hotPrefix`, A/B.

`python -m benchmarks.hot_prefix [--workload skewed] [--rates 20,24] [--rounds 5]` (from the
repository root) runs, per round, every (rate, profile) pair once, each on a fresh fleet with
the same seed (the suite's `fresh_fleet_each`), the profiles in an order that rotates per
round, and prints every run and the per-pair medians. The profiles are:

- `without`: the built-in `default` profile's plugins with no `hotPrefix` on the prefix scorer;
- `with`: the same plus `hotPrefix: {}` (the documented defaults); `--arm NAME=JSON` (repeated)
  replaces it with profiles whose `hotPrefix` is JSON.

Workloads (the benchmark suite's fleets and shared-prefix chat, 8 simulated H100s at
`--time-scale 0.2`, 16 system prompts of 2048 tokens, 64 output tokens):

- `skewed`: section 6b's (`epp.zipf_routing_settings`): Zipf-skewed groups (`--group-zipf
  0.85`, the hottest about a quarter of the requests), 8 batch slots per replica, so the hottest
  group brings more than one replica serves;
- `routing`: section 2's (`settings.routing_settings`): every group equally popular, 256 slots;
- `skewed-256`: section 2's fleet (256 slots) with section 6b's Zipf-skewed groups;
- `skewed-kv512`: `skewed` with 512 KV-cache blocks per replica instead of 1024 (room for three
  of the 128-block system prompts next to a full batch), so a replica the hot group spills to
  evicts another group's prefix, and that group's next request is a cold prefill too.

Per run, besides the suite's row (TTFT p50/p90/p99, output tokens/s, prefix-cache hits): the
requests that found less than the system prompt cached (`cold`: a full prefill), those of the
hottest group, and the hottest group's TTFT p99. `--out FILE` saves everything as JSON.
`--trace` runs the simulator with its engine steps traced (`benchmarks.hot_prefix_trace`) and
prints, per run, what the requests above its TTFT p90 waited for.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import dataclasses
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

import orjson
import yaml

from benchmarks import hot_prefix_trace
from benchmarks.suite import stack
from benchmarks.suite.commands import SimSpec, sim_argv, time_scaled_gateway_flags
from benchmarks.suite.epp import zipf_config, zipf_routing_settings
from benchmarks.suite.harness import RunSpec, fresh_fleet_each, slug
from benchmarks.suite.model import RunRow
from benchmarks.suite.sections import routing_config
from benchmarks.suite.settings import RoutingSettings, routing_settings
from benchmarks.suite.stack import gateway
from poolgate.bench import BenchConfig, BenchResult
from poolgate.scheduling.profiles import BUILTIN_PROFILES

PREFIX_SCORER = "prefix-cache-scorer"


def workload(name: str, duration: float, warmup: int) -> tuple[RoutingSettings, BenchConfig]:
    """The fleet and the client's configuration of workload `name` (rate set per run)."""
    if name == "routing":
        s = routing_settings(False)
    elif name in ("skewed", "skewed-256", "skewed-kv512"):
        s = zipf_routing_settings(False)
        if name == "skewed-256":
            s = dataclasses.replace(s, fleet=routing_settings(False).fleet)
        elif name == "skewed-kv512":
            s = dataclasses.replace(s, fleet=dataclasses.replace(s.fleet, kv_cache_blocks=512))
    else:
        raise SystemExit(
            f"unknown --workload {name!r}: routing, skewed, skewed-256 or skewed-kv512")
    s = dataclasses.replace(s, duration=duration, warmup=warmup)
    config = routing_config(s) if name == "routing" else zipf_config(s)
    return s, config


def profiles_file(directory: Path, arms: dict[str, dict[str, Any] | None]) -> Path:
    """A `--scheduler-config` file with the profiles compared (`arms`: name -> `hotPrefix`)."""
    documents = []
    for name, hot in arms.items():
        plugins = copy.deepcopy(BUILTIN_PROFILES["default"])
        for entry in plugins:
            if entry["type"] == PREFIX_SCORER:
                entry["params"].pop("hotPrefix", None)
                if hot is not None:
                    entry["params"]["hotPrefix"] = hot
        documents.append({"profile": f"ab-{name}", "plugins": plugins})
    path = directory / "profiles.yaml"
    path.write_text(yaml.safe_dump_all(documents, sort_keys=False))
    return path


def extras(result: BenchResult, system_prompt_len: int) -> dict[str, Any]:
    """Cold prefills and the hottest group's tail, from the run's records."""
    ok = [r for r in result.records if r.ok]
    # A server reports no `prompt_tokens_details` when nothing was cached (vLLM and the
    # simulator alike): usage without cached tokens is a full prefill.
    cold = [r for r in ok if r.prompt_tokens is not None
            and (r.cached_tokens or 0) < system_prompt_len]
    hottest = [r for r in ok if r.group == 0]
    ttfts = sorted(r.ttft for r in hottest if r.ttft is not None)
    p99 = ttfts[min(len(ttfts) - 1, int(0.99 * len(ttfts)))] if ttfts else None
    return {"cold": len(cold), "cold_hottest": sum(1 for r in cold if r.group == 0),
            "hottest": len(hottest), "hottest_ttft_p99": p99}


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v * 1000:.0f}"


def _line(run: dict[str, Any]) -> str:
    row = run["row"]
    hits = row["prefix_cache_hit_rate"]
    return (f"{run['profile']:10s} {run['rate']:5.1f} r{run['round']}  TTFT p50/p90/p99 "
            f"{_ms(row['ttft_p50'])}/{_ms(row['ttft_p90'])}/{_ms(row['ttft_p99'])} ms  "
            f"{row['output_throughput']:7.1f} tok/s  hits "
            f"{'-' if hits is None else f'{hits * 100:.1f}%'}  cold {run['cold']} "
            f"(hottest {run['cold_hottest']} of {run['hottest']}, its p99 "
            f"{_ms(run['hottest_ttft_p99'])} ms)  waiting max {row['queue_max']}")


def traced_sim_argv(spec: SimSpec, port: int | str, endpoints_file: Path) -> list[str]:
    """`sim_argv` through `benchmarks.hot_prefix_trace`, tracing into the run's directory."""
    argv = sim_argv(spec, port, endpoints_file)
    trace = endpoints_file.parent.parent / "sim-trace.jsonl"
    return [argv[0], "-m", "benchmarks.hot_prefix_trace", str(trace), *argv[3:]]


async def measure(args: argparse.Namespace) -> list[dict[str, Any]]:
    settings, config = workload(args.workload, args.duration, args.warmup)
    if args.trace:
        stack.sim_argv = traced_sim_argv  # type: ignore[attr-defined]
    flags = time_scaled_gateway_flags(settings.fleet.time_scale)
    runs: list[dict[str, Any]] = []
    extra = ("--log-level", "info") if args.log_info else ()
    with tempfile.TemporaryDirectory(prefix="pg-hot-prefix-") as tmp:
        workdir = args.workdir or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        arms: dict[str, dict[str, Any] | None] = {"without": None}
        for arm in args.arm or ["with={}"]:
            name, _, hot = arm.partition("=")
            arms[name] = orjson.loads(hot)
        path = profiles_file(workdir, arms)
        names = list(arms)
        for n in range(args.rounds):
            order = names[n % len(names):] + names[:n % len(names)]
            for rate in args.rates:
                for profile in order:
                    cfg = dataclasses.replace(config, load=dataclasses.replace(
                        config.load, rate=rate))
                    spec = RunSpec(f"{profile} {rate:g}", "poolgate", gateway(
                        f"ab-{profile}", (*flags, "--scheduler-config", str(path), *extra)))
                    outcome = await fresh_fleet_each(settings.fleet, [spec], cfg,
                                                     workdir / f"r{n}", scrape=True)
                    if not outcome.rows:
                        print(f"{spec.name}: not measured: {outcome.notes}", file=sys.stderr)
                        continue
                    run = {"profile": profile, "rate": rate, "round": n + 1,
                           "row": dataclasses.asdict(outcome.rows[0]),
                           **extras(outcome.results[0], settings.system_prompt_len)}
                    runs.append(run)
                    print(_line(run), flush=True)
                    if args.trace:
                        rundir = workdir / f"r{n}" / slug(spec.name)
                        records = outcome.results[0].records
                        (rundir / "records.json").write_bytes(
                            orjson.dumps([r.to_dict() for r in records]))
                        run["tail"] = hot_prefix_trace.causes(
                            records, rundir / "sim-trace.jsonl", settings.system_prompt_len,
                            settings.fleet.max_num_seqs or 256, settings.fleet.time_scale)
                        for line in run["tail"]:
                            print(f"    {line}", flush=True)
    return runs


def summary(runs: list[dict[str, Any]]) -> list[str]:
    """Per (rate, profile): the median of every figure over its rounds."""
    lines = []
    keys = sorted({(r["rate"], r["profile"]) for r in runs})
    for rate, profile in keys:
        mine = [r for r in runs if (r["rate"], r["profile"]) == (rate, profile)]

        def med(get: Any, rs: list[dict[str, Any]] = mine) -> float | None:
            values = [v for r in rs if (v := get(r)) is not None]
            return statistics.median(values) if values else None

        row = RunRow.from_dict({**mine[0]["row"], **{
            f: med(lambda r, f=f: r["row"][f]) for f in
            ("ttft_p50", "ttft_p90", "ttft_p99", "output_throughput", "prefix_cache_hit_rate",
             "queue_max")}})
        lines.append(_line({"profile": profile, "rate": rate, "round": len(mine),
                            "row": dataclasses.asdict(row), "cold": med(lambda r: r["cold"]),
                            "cold_hottest": med(lambda r: r["cold_hottest"]),
                            "hottest": med(lambda r: r["hottest"]),
                            "hottest_ttft_p99": med(lambda r: r["hottest_ttft_p99"])}))
    return lines


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workload", default="skewed")
    parser.add_argument("--rates", default="20,24",
                        type=lambda s: [float(x) for x in s.split(",")])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--duration", type=float, default=25.0)
    parser.add_argument("--warmup", type=int, default=64)
    parser.add_argument("--arm", action="append",
                        help="NAME=JSON: a profile with `hotPrefix` JSON (default: with={})")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--workdir", type=Path,
                        help="keep every process's log here (default: a temporary directory)")
    parser.add_argument("--log-info", action="store_true",
                        help="run the gateway at --log-level info (its holder changes)")
    parser.add_argument("--trace", action="store_true",
                        help="trace the simulator's steps and print what the TTFT tail waited "
                             "for (keeps each run's trace and records in --workdir)")
    args = parser.parse_args(argv)
    runs = asyncio.run(measure(args))
    print("medians (the round column: runs):")
    for line in summary(runs):
        print(line)
    if args.out is not None:
        args.out.write_bytes(orjson.dumps({"args": {k: str(v) for k, v in vars(args).items()},
                                           "runs": runs}, option=orjson.OPT_INDENT_2))


if __name__ == "__main__":
    main(sys.argv[1:])
