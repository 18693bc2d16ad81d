"""The issues' targets, checked against a section's rows: PASS, MISS, or n/a when not measured."""

from __future__ import annotations

from benchmarks.suite import _format as fmt
from benchmarks.suite.model import QUEUE_FLOOR, Check, Section

# Row names the sections use and the checks look up.
DIRECT = "direct"
GATEWAY = "poolgate"
C1 = " (c=1)"  # suffix of runs with one request at a time
DIRECT_C1 = DIRECT + C1
GATEWAY_C1 = GATEWAY + C1
PINNED = " (pinned)"  # suffix of runs with the front on a CPU of its own (see `pinning`)
FLOOR = " (floor)"  # suffix of a routing run at a fraction of the rate (no queueing)


def c1_row(name: str) -> str:
    """The row name of `name`'s run with one request in flight at a time."""
    return name + C1


def pinned_row(name: str) -> str:
    """The row name of `name`'s run with client and simulator on one CPU, the front on another."""
    return name + PINNED


def baseline_row(name: str) -> str:
    """The direct row a run's added latency is measured against (same concurrency, pinning)."""
    if name.endswith(PINNED):
        return pinned_row(DIRECT)
    return DIRECT_C1 if name.endswith(C1) else DIRECT

# Issue 3: gateway overhead on 2 cores.
MAX_ADDED_P50 = 0.001  # seconds
MAX_GATEWAY_CPU_US = 300.0
# Issue 4: routing quality against round-robin, and pick cost.
TTFT_P90_FRACTION_OF_RR = 1 / 5
MIN_THROUGHPUT_VS_RR = 1.5
QUEUE_FACTOR = 2.0
MAX_PICK_US_AT_64 = 100.0


def profile_row(profile: str) -> str:
    """The row name of a poolgate scheduler profile's run."""
    return f"poolgate {profile}"


def added(gateway: float | None, direct: float | None) -> float | None:
    """Latency the gateway adds over going direct (may be negative within noise)."""
    return None if gateway is None or direct is None else gateway - direct


def overhead_checks(section: Section) -> list[Check]:
    """Issue 3: added p50 latency at concurrency 64 and the gateway's CPU per request."""
    direct, gw = section.row(DIRECT), section.row(GATEWAY)
    add_p50 = added(gw.e2e_p50, direct.e2e_p50) if gw and direct else None
    cpu = gw.cpu_us_per_request if gw else None
    checks = [
        Check("added p50 latency, 64 concurrent tiny requests", f"<= {fmt.ms(MAX_ADDED_P50, 0)}",
              fmt.ms(add_p50, 2), None if add_p50 is None else add_p50 <= MAX_ADDED_P50),
    ]
    checks.extend(_pinned_added_p50(section, MAX_ADDED_P50))
    checks.append(Check("gateway CPU per request", f"<= {fmt.us(MAX_GATEWAY_CPU_US)}", fmt.us(cpu),
                        None if cpu is None else cpu <= MAX_GATEWAY_CPU_US))
    return checks


def _pinned_added_p50(section: Section, limit: float) -> list[Check]:
    """The added p50 of the pinned pair (gateway on a CPU of its own), when it was measured."""
    direct, gw = section.row(pinned_row(DIRECT)), section.row(pinned_row(GATEWAY))
    if direct is None or gw is None:
        return []
    add_p50 = added(gw.e2e_p50, direct.e2e_p50)
    return [Check("added p50 latency, 64 concurrent, gateway on its own CPU (pinned)",
                  f"<= {fmt.ms(limit, 1)}", fmt.ms(add_p50, 2),
                  None if add_p50 is None else add_p50 <= limit)]


def routing_checks(section: Section, profile: str = "default") -> list[Check]:
    """Issue 4: `profile` against round-robin on TTFT p90, output tokens/s and queue balance."""
    best, rr = section.row(profile_row(profile)), section.row(profile_row("round-robin"))
    checks: list[Check] = []
    if best and rr and best.ttft_p90 is not None and rr.ttft_p90 is not None:
        limit = rr.ttft_p90 * TTFT_P90_FRACTION_OF_RR
        checks.append(Check(f"TTFT p90, {profile} vs round-robin", f"<= 1/5 of {fmt.ms(rr.ttft_p90)}",
                            f"{fmt.ms(best.ttft_p90)} ({fmt.fraction(best.ttft_p90, rr.ttft_p90)})",
                            best.ttft_p90 <= limit))
    else:
        checks.append(Check(f"TTFT p90, {profile} vs round-robin", "<= 1/5 of round-robin's",
                            fmt.MISSING, None))
    if best and rr and rr.output_throughput > 0:
        gain = best.output_throughput / rr.output_throughput
        checks.append(Check(f"output tokens/s, {profile} vs round-robin",
                            f">= {MIN_THROUGHPUT_VS_RR}x {fmt.rate(rr.output_throughput, 'tok/s')}",
                            f"{fmt.rate(best.output_throughput, 'tok/s')} ({fmt.ratio(gain)})",
                            gain >= MIN_THROUGHPUT_VS_RR))
    else:
        checks.append(Check(f"output tokens/s, {profile} vs round-robin", ">= 1.5x round-robin's",
                            fmt.MISSING, None))
    if best and best.queue_rounds:
        checks.append(Check(
            f"no replica's waiting queue above 2x the mean at any scrape ({profile})",
            f"0 of {best.queue_rounds} scrapes (queues <= {QUEUE_FLOOR:g} excused)",
            f"{best.queue_rounds_above_2x_floor} (without the excuse: {best.queue_rounds_above_2x};"
            f" worst max/mean {fmt.ratio(best.queue_worst_max_to_mean)})",
            best.queue_rounds_above_2x_floor == 0))
    else:
        checks.append(Check(f"no replica's waiting queue above 2x the mean ({profile})",
                            "0 scrapes", fmt.MISSING, None))
    return checks


def pick_checks(section: Section) -> list[Check]:
    """Issue 4: the default profile's pick cost at 64 endpoints with a warm prefix index."""
    checks = []
    for profile in pick_builds(section):
        at_64 = section.extra.get("us_per_pick", {}).get(profile, {}).get("64")
        build = profile.removeprefix("default")
        checks.append(Check(f"pick cost at 64 endpoints (default profile{build}, warm index)",
                            f"<= {fmt.us(MAX_PICK_US_AT_64)}", fmt.us(at_64),
                            None if at_64 is None else float(at_64) <= MAX_PICK_US_AT_64))
    return checks


def pick_builds(section: Section | None) -> list[str]:
    """The default profile's rows of the pick section: "default" (plain Python) and, when it was
    measured, "default (mypyc)" (the compiled build); ["default"] without a section, so that a
    missing measurement still shows as a check."""
    costs = section.extra.get("us_per_pick", {}) if section is not None else {}
    return ["default", *(p for p in costs if p == "default (mypyc)")]


# Issue 7: against the peer routers, in the same runs.
MAX_CPU_VS_VLLM_ROUTER_RR = 1.5
MAX_ADDED_P50_VS_PEERS = 0.0005  # seconds
TTFT_P90_FRACTION_OF_BEST_PEER = 0.5
VLLM_ROUTER_RR = "vllm-router round_robin"


def peer_checks(over: Section | None, route: Section | None) -> list[Check]:
    """Issue 7: CPU per request against vllm-router's round_robin and added p50 (peers overhead
    run); TTFT p90 and output tokens/s against the best peer configuration (peers routing run)."""
    checks: list[Check] = []
    if over is not None:
        gw, direct, rr = over.row(GATEWAY), over.row(DIRECT), over.row(VLLM_ROUTER_RR)
        ours = gw.cpu_us_per_request if gw else None
        theirs = rr.cpu_us_per_request if rr else None
        ratio = None if ours is None or not theirs else ours / theirs
        checks.append(Check(
            "gateway CPU per request vs vllm-router round_robin (same run)",
            f"<= {MAX_CPU_VS_VLLM_ROUTER_RR}x {fmt.us(theirs)}",
            f"{fmt.us(ours)} ({fmt.ratio(ratio)})",
            None if ratio is None else ratio <= MAX_CPU_VS_VLLM_ROUTER_RR))
        add_p50 = added(gw.e2e_p50, direct.e2e_p50) if gw and direct else None
        checks.append(Check(
            "added p50 latency, 64 concurrent tiny requests (peers run)",
            f"<= {fmt.ms(MAX_ADDED_P50_VS_PEERS, 1)}", fmt.ms(add_p50, 2),
            None if add_p50 is None else add_p50 <= MAX_ADDED_P50_VS_PEERS))
        checks.extend(_pinned_added_p50(over, MAX_ADDED_P50_VS_PEERS))
        checks.extend(_c1_added_p50(over, MAX_ADDED_P50_VS_PEERS))
    if route is not None:
        ours_row = route.row(profile_row("default"))
        peers = [r for r in route.rows if r.kind == "peer"]
        fastest = min((r for r in peers if r.ttft_p90 is not None),
                      key=lambda r: r.ttft_p90 or 0.0, default=None)
        busiest = max(peers, key=lambda r: r.output_throughput, default=None)
        if ours_row and ours_row.ttft_p90 is not None and fastest and fastest.ttft_p90:
            measured = (f"{fmt.ms(ours_row.ttft_p90)} "
                        f"({fmt.ratio(ours_row.ttft_p90 / fastest.ttft_p90)})")
            floor = next((r for r in route.rows if r.name.endswith(FLOOR)), None)
            if floor is not None and floor.ttft_p90 is not None:
                # What no router can beat on this fleet: the same requests without queueing.
                measured += (f"; the fleet's floor (at {_rate_of(floor.name)}): "
                             f"{fmt.ms(floor.ttft_p90)} "
                             f"({fmt.ratio(floor.ttft_p90 / fastest.ttft_p90)})")
            checks.append(Check(
                "TTFT p90, default vs the best peer configuration",
                f"<= 0.5x {fastest.name}'s {fmt.ms(fastest.ttft_p90)}", measured,
                ours_row.ttft_p90 <= TTFT_P90_FRACTION_OF_BEST_PEER * fastest.ttft_p90))
        if ours_row and busiest and busiest.output_throughput > 0:
            checks.append(Check(
                "output tokens/s, default vs the best peer configuration",
                f">= {busiest.name}'s {fmt.rate(busiest.output_throughput, 'tok/s')}",
                f"{fmt.rate(ours_row.output_throughput, 'tok/s')} "
                f"({fmt.ratio(ours_row.output_throughput / busiest.output_throughput)})",
                ours_row.output_throughput >= busiest.output_throughput))
    return checks


def _c1_added_p50(section: Section, limit: float) -> list[Check]:
    """poolgate's added p50 with one request at a time, next to the lowest peer's."""
    direct, gw = section.row(DIRECT_C1), section.row(GATEWAY_C1)
    if direct is None or gw is None:
        return []
    ours = added(gw.e2e_p50, direct.e2e_p50)
    peers = [(r.name.removesuffix(C1), added(r.e2e_p50, direct.e2e_p50))
             for r in section.rows if r.kind == "peer" and r.name.endswith(C1)]
    best = min(((n, a) for n, a in peers if a is not None), key=lambda p: p[1], default=None)
    measured = fmt.ms(ours, 2)
    if best is not None:
        measured += f" ({best[0]}: {fmt.ms(best[1], 2)})"
    return [Check("added p50 latency, one request at a time (c=1)", f"<= {fmt.ms(limit, 1)}",
                  measured, None if ours is None else ours <= limit)]


def floor_row(name: str, rate: float) -> str:
    """The row name of `name`'s routing run at `rate` requests/s, the fleet's TTFT floor."""
    return f"{name} at {rate:g} req/s{FLOOR}"


def _rate_of(floor_name: str) -> str:
    return floor_name.removesuffix(FLOOR).rpartition(" at ")[2]
