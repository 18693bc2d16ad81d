"""The small protocol the request path answers through (`poolgate.http.server.DownstreamRequest`
implements it; unit tests use an in-memory one, so `Gateway.handle` runs without sockets)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Protocol

from poolgate.http.server import RequestHeaders


class Responder(Protocol):
    """One client request and the way to answer it.

    Answer once: `respond()` (a whole response), or `start()`, `write()`..., `end()`; `abort()`
    drops the connection (a body that cannot be finished). `status` is the status sent (0 while
    nothing was sent), `started` whether the response head went out.
    """

    method: str
    raw_path: str  # path and query as received
    path: str  # decoded path, no query
    body: bytes
    body_too_large: bool
    status: int

    @property
    def headers(self) -> RequestHeaders: ...

    @property
    def host(self) -> str: ...

    @property
    def client_address(self) -> str: ...

    @property
    def query(self) -> Mapping[str, str]: ...

    @property
    def started(self) -> bool: ...

    async def respond(self, status: int, reason: str, headers: Iterable[tuple[str, str]],
                      body: bytes, content_length: int | None = None) -> None: ...

    async def start(self, status: int, reason: str, headers: Iterable[tuple[str, str]],
                    content_length: int | None = None) -> None: ...

    async def write(self, data: bytes) -> None: ...

    async def end(self) -> None: ...

    def abort(self) -> None: ...
