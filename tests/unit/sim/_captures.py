"""Read the real vLLM 0.32 captures in tests/fixtures/vllm (raw HTTP responses)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "vllm"


def capture(name: str) -> tuple[int, dict[str, str], bytes]:
    """Status, lower-cased headers and body of a captured response."""
    raw = (FIXTURES / name).read_bytes()
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    return status, headers, body


def capture_json(name: str) -> Any:
    return json.loads(capture(name)[2])


def sse_payloads(body: bytes) -> list[Any]:
    """The JSON payloads of an SSE body (without the final [DONE])."""
    frames = body.decode().split("\n\n")
    return [json.loads(f[len("data: "):]) for f in frames if f.startswith("data: {")]


def key_shape(value: Any) -> Any:
    """Keys in order, recursively (values ignored): what 'same fields, same order' compares."""
    if isinstance(value, dict):
        return [(k, key_shape(v)) for k, v in value.items()]
    if isinstance(value, list):
        return [key_shape(v) for v in value]
    return None
