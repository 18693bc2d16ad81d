"""What a run's TTFT tail is made of: the simulator's engine steps traced, read against the
client's records (`python -m benchmarks.hot_prefix --trace`).

`python -m benchmarks.hot_prefix_trace FILE sim ARGS...` runs `poolgate sim ARGS...` with every
engine writing JSON lines to FILE: each request's arrival (`add`: the running batch and the
waiting queue it found), each engine step (`step`: its duration, batch, waiting queue and the
requests it admitted with their uncached prompt tokens) and each first token (`first`: cached
tokens and the prompt's first block as the group). Tracing only observes; the engine behaves as
without it. Times are simulated seconds (wall-clock seconds x the time scale).

`causes` matches the client's records to the traced requests (the last N arrivals are the N
measured requests; within each group in order) and sorts every request above the run's TTFT
p90 under the first cause that applies:

1. `own cold prefill`: it found less than the system prompt cached;
2. `behind a cold prefill`: a step of its replica between its arrival and its first token
   prefilled another request's system prompt (at least half of it uncached);
3. `queued for a batch slot`: it arrived to a full running batch (or a waiting queue);
4. `other`: none of these (a batch of warm prefills, a long decode step).
"""

from __future__ import annotations

import bisect
import statistics
import sys
import zlib
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from poolgate.bench import RequestRecord

GROUP_TOKENS = 64  # a prompt's first tokens, enough to tell the system prompts apart

CAUSES = ("own cold prefill", "behind a cold prefill", "queued for a batch slot", "other")


def install(path: Path) -> Callable[[], None]:
    """Make every Engine built from now on write its trace to `path` (JSON lines); returns
    the function that undoes it."""
    from poolgate.sim import engine as eng

    out = open(path, "ab", buffering=0)  # noqa: SIM115 - closed by the returned function
    cls: Any = eng.Engine
    index: dict[int, int] = {}

    def write(record: dict[str, Any]) -> None:
        out.write(orjson.dumps(record) + b"\n")

    init, add, begin, emit = cls.__init__, cls.add, cls.begin_step, cls._emit

    def traced_init(self: Any, config: Any) -> None:
        init(self, config)
        index[id(self)] = len(index)

    def traced_add(self: Any, req: Any, now: float) -> None:
        running, waiting = self.num_running, self.num_waiting
        add(self, req, now)
        write({"k": "add", "r": index[id(self)], "id": req.request_id, "t": now,
               "run": running, "wait": waiting})

    def traced_begin(self: Any, now: float) -> float | None:
        before = {id(s) for s in self._running}
        duration = begin(self, now)
        admitted = [[s.req.request_id, len(s.token_ids()) - (s.cached_tokens or 0)]
                    for s in self._running if id(s) not in before]
        if duration is not None:
            write({"k": "step", "r": index[id(self)], "t": now, "d": duration,
                   "n": len(self._running), "w": self.num_waiting, "adm": admitted})
        return duration  # type: ignore[no-any-return]

    def traced_emit(self: Any, seq: Any, now: float) -> Any:
        token = emit(self, seq, now)
        if token.ttft is not None:
            head = seq.req.prompt_token_ids[:GROUP_TOKENS]
            write({"k": "first", "r": index[id(self)], "id": seq.req.request_id, "t": now,
                   "ttft": token.ttft, "cached": token.cached_tokens,
                   "plen": len(seq.req.prompt_token_ids),
                   "g": zlib.crc32(orjson.dumps(head))})
        return token

    cls.__init__, cls.add, cls.begin_step, cls._emit = (
        traced_init, traced_add, traced_begin, traced_emit)

    def uninstall() -> None:
        cls.__init__, cls.add, cls.begin_step, cls._emit = init, add, begin, emit
        out.close()

    return uninstall


@dataclass
class Traced:
    """One request as the simulator saw it."""

    replica: int
    arrival: float
    running: int  # batch size it found
    waiting: int  # queue it found
    first: float = 0.0
    ttft: float = 0.0
    cached: int = 0
    group: int = 0
    admitted: float | None = None


@dataclass
class _Step:
    t: float
    d: float
    n: int
    w: int
    admitted: list[tuple[str, int]] = field(default_factory=list)


def read_trace(path: Path) -> tuple[list[Traced], dict[int, list[_Step]]]:
    """The traced requests in arrival order (first token seen) and every replica's steps."""
    reqs: dict[str, Traced] = {}
    steps: dict[int, list[_Step]] = defaultdict(list)
    for line in path.read_bytes().splitlines():
        e = orjson.loads(line)
        if e["k"] == "add":
            reqs[e["id"]] = Traced(e["r"], e["t"], e["run"], e["wait"])
        elif e["k"] == "step":
            adm = [(a[0], a[1]) for a in e["adm"]]
            steps[e["r"]].append(_Step(e["t"], e["d"], e["n"], e["w"], adm))
            for rid, _ in adm:
                if rid in reqs and reqs[rid].admitted is None:
                    reqs[rid].admitted = e["t"]
        elif e["k"] == "first" and e["id"] in reqs:
            r = reqs[e["id"]]
            r.first, r.ttft, r.cached, r.group = e["t"], e["ttft"], e["cached"], e["g"]
    done = sorted((r for r in reqs.values() if r.first), key=lambda r: r.arrival)
    return done, steps


def match(records: Sequence[RequestRecord], traced: Sequence[Traced]) -> list[Traced | None]:
    """Each measured record's traced request: the last len(records) arrivals are the measured
    ones; groups are named by a majority over arrival order, then matched in order per group."""
    ok = sorted((r for r in records if r.ok and r.ttft is not None), key=lambda r: r.sent)
    tail = list(traced[-len(ok):]) if ok else []
    votes: dict[int, Counter[int | None]] = defaultdict(Counter)
    for rec, t in zip(ok, tail, strict=False):
        votes[t.group][rec.group] += 1
    name = {key: c.most_common(1)[0][0] for key, c in votes.items()}
    by_group: dict[int | None, list[Traced]] = defaultdict(list)
    for t in tail:
        by_group[name[t.group]].append(t)
    taken: dict[int | None, int] = defaultdict(int)
    found: dict[int, Traced | None] = {}
    for rec in ok:
        lst = by_group[rec.group]
        i = taken[rec.group]
        found[rec.index] = lst[i] if i < len(lst) else None
        taken[rec.group] += 1
    return [found.get(r.index) for r in records]


def classify(t: Traced, steps: Sequence[_Step], system_prompt_len: int,
             max_num_seqs: int) -> str:
    """The first cause of the list in the module docstring that applies to `t`."""
    if t.cached < system_prompt_len:
        return CAUSES[0]
    starts = [s.t for s in steps]
    lo = bisect.bisect_left(starts, t.arrival)
    hi = bisect.bisect_left(starts, t.first)
    # The step in progress at arrival counts too: the request waits for it to end.
    for s in steps[max(0, lo - 1):hi]:
        if s.t + s.d <= t.arrival:
            continue
        if any(u >= system_prompt_len // 2 for _, u in s.admitted):
            return CAUSES[1]
    if t.running >= max_num_seqs or t.waiting > 0:
        return CAUSES[2]
    return CAUSES[3]


def causes(records: Sequence[RequestRecord], trace: Path, system_prompt_len: int,
           max_num_seqs: int, time_scale: float) -> list[str]:
    """The report: the tail's causes with shares, and its groups."""
    traced, steps = read_trace(trace)
    pairs = [(r, t) for r, t in zip(records, match(records, traced), strict=True)
             if r.ok and r.ttft is not None]
    matched = [(r, t) for r, t in pairs if t is not None]
    if not matched:
        return ["no traced request matched the records"]
    ttfts = sorted(r.ttft for r, _ in pairs if r.ttft is not None)
    p90 = ttfts[int(0.9 * len(ttfts))]
    gap = statistics.median(r.ttft - t.ttft / time_scale for r, t in matched
                            if r.ttft is not None)
    agree = sum(1 for r, t in matched if r.ttft is not None
                and abs(r.ttft - t.ttft / time_scale - gap) < 0.05)
    slow = [(r, t) for r, t in matched if r.ttft is not None and r.ttft > p90]
    lines = [f"{len(matched)} of {len(pairs)} records matched; client TTFT - simulator TTFT: "
             f"median {gap * 1000:.0f} ms, within 50 ms of it for {agree}"]
    lines.append(f"TTFT above p90 ({p90 * 1000:.0f} ms): {len(slow)} requests")
    by_cause: dict[str, list[tuple[RequestRecord, Traced]]] = defaultdict(list)
    for r, t in slow:
        by_cause[classify(t, steps[t.replica], system_prompt_len, max_num_seqs)].append((r, t))
    lines.append("cause | share | TTFT median | hottest group's | batch found (median) | "
                 "queue found (median)")
    for cause in CAUSES:
        mine = by_cause.get(cause, [])
        if not mine:
            lines.append(f"{cause} | 0 | - | - | - | -")
            continue
        med = statistics.median(r.ttft for r, _ in mine if r.ttft is not None)
        lines.append(
            f"{cause} | {len(mine)} ({100 * len(mine) / len(slow):.0f} %) | {med * 1000:.0f} ms"
            f" | {sum(1 for r, _ in mine if r.group == 0)} | "
            f"{statistics.median(t.running for _, t in mine):g} | "
            f"{statistics.median(t.waiting for _, t in mine):g}")
    groups = Counter(r.group for r, _ in slow)
    lines.append("slow requests by group (0 = hottest): " + ", ".join(
        f"{g}: {n}" for g, n in sorted(groups.items(), key=lambda x: (x[0] is None, x[0]))))
    replicas = Counter(t.replica for _, t in slow)
    lines.append("slow requests by replica: " + ", ".join(
        f"{k}: {n}" for k, n in sorted(replicas.items())))
    return lines


def main(argv: list[str]) -> None:
    from poolgate.cli import main as poolgate_main

    install(Path(argv[0]))
    sys.argv = ["poolgate", *argv[1:]]
    poolgate_main()


if __name__ == "__main__":
    main(sys.argv[1:])
