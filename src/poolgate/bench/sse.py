"""An incremental, bytes-level Server-Sent Events decoder: feed network chunks, get `data` payloads."""

from __future__ import annotations


class SSEDecoder:
    """Splits a byte stream into SSE events and returns each event's joined `data:` lines.

    Handles LF, CRLF and CR line endings (also when split across chunks), multi-line data,
    comments (`:`), and fields other than `data` (ignored). Events without data are dropped.
    """

    __slots__ = ("_buf",)

    def __init__(self) -> None:
        self._buf = b""

    def feed(self, chunk: bytes) -> list[bytes]:
        """Add bytes from the network; return the data of every event completed by them."""
        buf = self._buf + chunk if self._buf else chunk
        if b"\r" in buf:
            # Hold back a trailing CR: it may be the first half of a CRLF split across reads.
            tail = b"\r" if buf.endswith(b"\r") else b""
            if tail:
                buf = buf[:-1]
            buf = buf.replace(b"\r\n", b"\n").replace(b"\r", b"\n") + tail
        events: list[bytes] = []
        start = 0
        while True:
            end = buf.find(b"\n\n", start)
            if end < 0:
                break
            data = _event_data(buf[start:end])
            if data is not None:
                events.append(data)
            start = end + 2
        self._buf = buf[start:]
        return events

    def pending(self) -> bytes:
        """Bytes received but not yet part of a complete event."""
        return self._buf

    def close(self) -> list[bytes]:
        """End of stream: return a last event that lacks its closing blank line, if any.

        Some servers close the connection right after the final `data:` line.
        """
        rest = self._buf.rstrip(b"\r\n")
        self._buf = b""
        if not rest:
            return []
        data = _event_data(rest.replace(b"\r\n", b"\n").replace(b"\r", b"\n"))
        return [data] if data is not None else []


def _event_data(block: bytes) -> bytes | None:
    # The common case (one `data: ...` line) avoids splitting.
    if block.startswith(b"data:") and b"\n" not in block:
        value = block[5:]
        return value[1:] if value.startswith(b" ") else value
    lines: list[bytes] = []
    for line in block.split(b"\n"):
        if not line or line.startswith(b":"):
            continue
        name, colon, value = line.partition(b":")
        if name != b"data":
            continue
        if not colon:
            value = b""
        lines.append(value[1:] if value.startswith(b" ") else value)
    return b"\n".join(lines) if lines else None
