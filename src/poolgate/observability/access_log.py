"""One JSON line per request, written without the logging module's per-record overhead."""

from __future__ import annotations

import sys
import time
from typing import IO, Any

import orjson


class AccessLog:
    """Writes access-log records as JSON lines to a binary stream (stdout by default)."""

    def __init__(self, stream: IO[bytes] | None = None, enabled: bool = True) -> None:
        self._stream = stream if stream is not None else sys.stdout.buffer
        self.enabled = enabled

    @classmethod
    def open(cls, target: str) -> AccessLog:
        """`-` for stdout, `off` to disable, otherwise a file path (appended to)."""
        if target == "off":
            return cls(enabled=False)
        if target == "-":
            return cls()
        return cls(open(target, "ab", buffering=0))

    def write(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        record["time"] = time.time()
        try:
            self._stream.write(orjson.dumps(record) + b"\n")
            self._stream.flush()
        except (BrokenPipeError, ValueError):
            # stdout closed under us (e.g. piped into `head`): stop logging, keep serving.
            self.enabled = False
