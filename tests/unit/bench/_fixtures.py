"""Captured vLLM exchanges (tests/fixtures/bench) split into status, headers and body."""

from __future__ import annotations

from pathlib import Path

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "bench"


def http_body(name: str) -> bytes:
    """The body of a captured HTTP response (everything after the blank line)."""
    raw = (FIXTURES / name).read_bytes()
    _, sep, body = raw.partition(b"\r\n\r\n")
    assert sep, f"{name} has no header/body separator"
    return body


def http_status(name: str) -> int:
    return int((FIXTURES / name).read_bytes().split(b" ", 2)[1])
