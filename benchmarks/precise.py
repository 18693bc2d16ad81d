"""What precise prefix routing costs: the pick, tokenizing a request, ingesting KV events.

`python -m benchmarks.precise [--rounds N]` (from the repository root) prints, as medians of
interleaved rounds (each round measures every case once, in turn):

- pick: µs per `Scheduler.pick` + `on_picked` at 8, 64 and 512 endpoints, for the default
  profile (approximate prefix index) and for the same profile with `precise-prefix-cache-scorer`
  (index fed by the KV events each pick's endpoint would publish). The precise figure is split
  into a fresh request (tokenized in the pick) and the pick alone (token ids already memoised);
- tokenize: µs to turn one request of about 2,000 tokens into token ids with the simulator's
  tokenizer and with a Hugging Face tokenizer directory (a byte-level BPE trained here on the
  same English-like text, so that most words are one token as with a real model's tokenizer
  on English; `--hf DIR` adds another, e.g. a real model's), chat and completions;
- the server's `/tokenize` over HTTP (a local `poolgate sim`, keep-alive), for comparison;
- events: µs per stored block when a `BlockStored` batch is applied to the index.

The fleets are synthetic (as `benchmarks.pick`): fresh signals, some in-flight requests, a
shared ~1,000-character system prompt and a ~400-character question per request.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from poolgate.core.kv_events import BlockStored
from poolgate.datalayer.kv_events import KVEventsHub
from poolgate.datalayer.kv_index import KVBlockIndex
from poolgate.datalayer.signals import Signals
from poolgate.datalayer.store import EndpointStore
from poolgate.scheduling.builder import build_scheduler
from poolgate.scheduling.config import SchedulerConfig
from poolgate.scheduling.interfaces import LLMRequest
from poolgate.scheduling.profiles import BUILTIN_PROFILES
from poolgate.scheduling.scheduler import Scheduler
from poolgate.scheduling.scorers.precise_prefix_cache import PrecisePrefixCacheScorer
from poolgate.scheduling.tokenizer import load_tokenizer
from poolgate.sim.tokens import TextGenerator

_SYSTEM = "You are a careful assistant. Answer briefly and cite the manual section. " * 14
_BLOCK = 16


def precise_config() -> SchedulerConfig:
    """The default profile with the precise scorer in the prefix scorer's place (same bounds)."""
    plugins: list[dict[str, Any]] = []
    for entry in BUILTIN_PROFILES["default"]:
        if entry["type"] == "prefix-cache-scorer":
            params = {k: v for k, v in entry["params"].items() if k != "missSpread"}
            entry = {"type": "precise-prefix-cache-scorer", "weight": entry["weight"],
                     "params": {**params, "tokenProcessorConfig": {"blockSize": _BLOCK}}}
        plugins.append(entry)
    return SchedulerConfig(profile="precise", plugins=plugins)


def _body(rng: random.Random, i: int) -> dict[str, Any]:
    question = " ".join(f"word{rng.randrange(10_000)}" for _ in range(50))
    return {"model": "llama", "messages": [
        {"role": "system", "content": _SYSTEM},
        {"role": "user", "content": f"Question {i}: {question}"}]}


def _request(body: dict[str, Any], i: int) -> LLMRequest:
    return LLMRequest(model="llama", messages=body["messages"], body=body, request_id=str(i))


class PickBench:
    """One warm fleet and scheduler; `run` measures µs per pick + on_picked."""

    def __init__(self, n: int, precise: bool, seed: int = 1) -> None:
        rng = random.Random(seed)
        self.rng = rng
        self.store = EndpointStore()
        self.addresses = [f"10.0.{i // 250}.{i % 250}:8000" for i in range(n)]
        self.now = 1000.0
        for address in self.addresses:
            self.store.update(address, Signals(
                waiting=rng.randrange(0, 8), running=rng.randrange(0, 16),
                kv_usage=rng.random(), lora_running=frozenset({"sql-lora"})
                if rng.random() < 0.3 else frozenset(), max_lora=4, block_size=_BLOCK,
                num_blocks=8192, scraped_at=self.now))
            for _ in range(rng.randrange(0, 3)):
                self.store.begin(address, streamed=rng.random() < 0.5)
        self.hub = KVEventsHub()
        config = precise_config() if precise else SchedulerConfig(profile="default")
        self.scheduler: Scheduler = build_scheduler(config, self.store, seed=seed,
                                                    kv_events=self.hub)
        self.scorer: PrecisePrefixCacheScorer | None = next(
            (w.scorer for w in self.scheduler.profile.scorers
             if isinstance(w.scorer, PrecisePrefixCacheScorer)), None)
        if self.scorer is not None:
            for address in self.addresses:
                self.scorer.index.trust_from(address, 0.0)
        self.counter = 0
        for _ in range(max(200, n * 4)):
            self._one(_request(_body(rng, self.counter), self.counter))

    def _one(self, req: LLMRequest) -> None:
        self.counter += 1
        address = self.scheduler.pick(req, self.addresses, self.now).address
        self.scheduler.on_picked(req, address)
        if self.scorer is not None:
            # The endpoint's server stores the prompt's blocks and publishes them.
            ids = self.scorer.token_ids(req) or []
            n = len(ids) // _BLOCK
            self.scorer.index.apply(address, [BlockStored(
                [hash((address, self.counter, i)) for i in range(n)], None,
                ids[: n * _BLOCK], _BLOCK)])

    def run(self, picks: int, pretokenized: bool = False) -> float:
        reqs = [_request(_body(self.rng, self.counter + i), self.counter + i)
                for i in range(picks)]
        if pretokenized and self.scorer is not None:
            for req in reqs:
                self.scorer.keys(req, _BLOCK)
        self.counter += picks
        scheduler, addresses, now = self.scheduler, self.addresses, self.now
        start = time.perf_counter()
        for req in reqs:
            scheduler.on_picked(req, scheduler.pick(req, addresses, now).address)
        return (time.perf_counter() - start) / picks * 1e6


def _english(words: int, seed: int) -> str:
    """`words` words of the simulator's English-like generated text."""
    gen = TextGenerator(seed)
    return "".join(gen.next_token().text for _ in range(words)).strip()


def _long_chat(tokens: int) -> dict[str, Any]:
    """A chat body of about `tokens` tokens (of a word-level tokenizer; the simulator's, at 4
    characters a token, counts a few more)."""
    return {"model": "m", "messages": [{"role": "system", "content": _SYSTEM},
                                       {"role": "user", "content": _english(tokens - 200, 5)}]}


def english_tokenizer(directory: Path) -> Path:
    """A byte-level BPE trained on the same kind of English-like text (8,000 tokens at most), so
    that, as a real model's tokenizer on English, most words are one token."""
    from tests.support.hf_tokenizer import build_tokenizer_dir

    corpus = [_english(60, seed) for seed in range(3000)] + [_SYSTEM]
    return build_tokenizer_dir(directory, corpus=corpus, vocab_size=8000)


def _bodies(n: int, seed: int) -> dict[str, list[dict[str, Any]]]:
    """`n` fresh bodies of each request shape (about 2,000 tokens each)."""
    shared = _english(1500, 99)
    return {
        "chat, all new": [{"model": "m", "messages": [
            {"role": "system", "content": _SYSTEM},
            {"role": "user", "content": _english(1800, seed * 1000 + i)}]} for i in range(n)],
        "chat, 1.5k shared + 0.5k new": [{"model": "m", "messages": [
            {"role": "system", "content": shared},
            {"role": "user", "content": _english(500, seed * 1000 + i)}]} for i in range(n)],
        "completion, all new": [{"model": "m", "prompt": _english(2000, seed * 1000 + i)}
                                for i in range(n)],
    }


def _tokenize_cases(hf_dirs: list[Path]) -> dict[str, Callable[[int], float]]:
    """Per case, a function of the round number giving µs per request (fresh bodies each)."""
    tokenizers = [("simulator", load_tokenizer("simulator"))]
    tokenizers += [(f"hf {d.name}", load_tokenizer(str(d))) for d in hf_dirs]
    for _, tok in tokenizers:  # past the piece cache's first checks (a one-off cost)
        for warm in _bodies(40, 10_000).values():
            for body in warm:
                tok.token_ids(body)
    cases: dict[str, Callable[[int], float]] = {}
    for name, tok in tokenizers:
        for shape in _bodies(1, 0):
            def case(r: int, tok: Any = tok, shape: str = shape) -> float:
                bodies = _bodies(20, r + 1)[shape]
                start = time.perf_counter()
                for body in bodies:
                    tok.token_ids(body)
                return (time.perf_counter() - start) / len(bodies) * 1e6
            cases[f"{name}: {shape}"] = case
    return cases


def _token_counts(hf_dirs: list[Path]) -> dict[str, int]:
    chat = _long_chat(2000)
    out = {"simulator": len(load_tokenizer("simulator").token_ids(chat) or [])}
    for directory in hf_dirs:
        out[directory.name] = len(load_tokenizer(str(directory)).token_ids(chat) or [])
    return out


def _events_per_block() -> float:
    index = KVBlockIndex()
    ids = list(range(16 * 64))
    batches = [[BlockStored([r * 1000 + i for i in range(64)], None, ids, 16)]
               for r in range(200)]
    start = time.perf_counter()
    for r, batch in enumerate(batches):
        index.apply(f"10.0.0.{r % 8}:8000", batch)
    return (time.perf_counter() - start) / (200 * 64) * 1e6


async def _tokenize_round_trips(url: str, body: dict[str, Any], n: int) -> float:
    import aiohttp

    async with aiohttp.ClientSession() as session:
        for _ in range(5):  # warm the connection
            async with session.post(f"{url}/tokenize", json=body) as r:
                await r.read()
        start = time.perf_counter()
        for _ in range(n):
            async with session.post(f"{url}/tokenize", json=body) as r:
                await r.read()
        return (time.perf_counter() - start) / n * 1e6


def _sim_round_trip(rounds: int) -> list[float]:
    from tests.support.processes import free_port, wait_http

    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "poolgate", "sim", "--port", str(port), "--model", "m",
         "--max-model-len", "8192"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_http(f"http://127.0.0.1:{port}/health")
        body = _long_chat(2000)
        return [asyncio.run(_tokenize_round_trips(f"http://127.0.0.1:{port}", body, 50))
                for _ in range(rounds)]
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--picks", type=int, default=400)
    parser.add_argument("--sizes", default="8,64,512")
    parser.add_argument("--hf", action="append", type=Path, default=[],
                        help="a Hugging Face tokenizer directory to measure too")
    args = parser.parse_args(argv)
    sizes = [int(x) for x in args.sizes.split(",")]
    hf_dirs = [english_tokenizer(Path(tempfile.mkdtemp(prefix="pg-precise-")) / "english-bpe"),
               *args.hf]

    benches = {(n, p): PickBench(n, p) for n in sizes for p in (False, True)}
    picks: dict[str, list[float]] = {}
    for _ in range(args.rounds):
        for (n, precise), bench in benches.items():
            if precise:
                picks.setdefault(f"precise, fresh request @{n}", []).append(bench.run(args.picks))
                picks.setdefault(f"precise, tokens memoised @{n}", []).append(
                    bench.run(args.picks, pretokenized=True))
            else:
                picks.setdefault(f"default @{n}", []).append(bench.run(args.picks))
    cases = _tokenize_cases(hf_dirs)
    tokenize: dict[str, list[float]] = {}
    for r in range(args.rounds):
        for name, case in cases.items():
            tokenize.setdefault(name, []).append(case(r))
    events = [_events_per_block() for _ in range(args.rounds)]
    http = _sim_round_trip(args.rounds)

    print("pick + on_picked, µs (median of interleaved rounds):")
    for name, values in picks.items():
        print(f"  {name:34s} {statistics.median(values):8.1f}")
    print(f"tokens in the ~2k-token chat: {_token_counts(hf_dirs)}")
    print("tokenize one ~2k-token request, µs:")
    for name, values in tokenize.items():
        print(f"  {name:48s} {statistics.median(values):8.1f}")
    print(f"  {'poolgate sim POST /tokenize (HTTP), chat':48s} {statistics.median(http):8.1f}")
    print(f"apply BlockStored, µs per block: {statistics.median(events):.2f}")


if __name__ == "__main__":
    main(sys.argv[1:])
