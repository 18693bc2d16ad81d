"""The gateway's HTTP listeners: one per port the Gateways declare, kept in step with the
snapshot (opened and closed on reload)."""

from __future__ import annotations

import errno
import logging
import socket
from collections.abc import Awaitable, Callable, Mapping
from typing import Protocol

from poolgate.config.snapshot import Snapshot
from poolgate.http.server import DownstreamRequest, HttpServer
from poolgate.proxy.manifests import ConfigError

log = logging.getLogger("poolgate.server")


class ListenError(Exception):
    """A listener could not bind; the message says which address, why, in plain words, and
    which command-line `flag` picks another port (when the binder knows it)."""

    def __init__(self, host: str, port: int, error: OSError, flag: str | None = None) -> None:
        self.host, self.port, self.error, self.flag = host, port, error, flag
        what = f"{host}:{port}"
        if error.errno == errno.EACCES:
            text = f"cannot listen on {what}: permission denied (ports below 1024 need root)"
        elif error.errno == errno.EADDRINUSE:
            text = f"cannot listen on {what}: the address is already in use"
        else:
            text = f"cannot listen on {what}: {error.strerror or error}"
        if flag is not None and error.errno in (errno.EACCES, errno.EADDRINUSE, None):
            text = f"{text.rstrip('.')}; choose another port with {flag}"
        super().__init__(text)

    def naming(self, flag: str) -> ListenError:
        """This error with `flag` as the way to another port, unless it names one already."""
        return self if self.flag is not None else ListenError(self.host, self.port, self.error,
                                                              flag)


def bind_error(host: str, port: int) -> OSError | None:
    """The error binding `host:port` gives now, or None when it can be bound (for binders that
    only say that they failed, as gRPC does)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as e:
            return e
    return None


class Front(Protocol):
    """Where requests come in: the HTTP listeners (`Listeners`), or the endpoint picker's gRPC
    server (`epp.ExtProcFront`)."""

    @property
    def bound_ports(self) -> dict[int, int]: ...

    async def sync(self, snapshot: Snapshot) -> None: ...

    def stop_accepting(self) -> None: ...

    async def close(self) -> None: ...


class Listeners:
    """The listeners serving `handle(request, declared_port)`, by the port the Gateway declares.

    `port` replaces a single declared port and `port_map` maps declared ports to the ports
    actually bound (the command line's --port and --port-map); `reuse_port`: bound with
    SO_REUSEPORT, shared with other processes that do the same (--reuse-port)."""

    def __init__(self, handle: Callable[[DownstreamRequest, int], Awaitable[None]], *,
                 host: str, port: int | None, port_map: Mapping[int, int],
                 max_body: int, reuse_port: bool = False) -> None:
        self._handle = handle
        self._reuse_port = reuse_port
        self._host = host
        self._port = port
        self._port_map = port_map
        self._max_body = max_body
        self._listeners: dict[int, tuple[HttpServer, int]] = {}

    @property
    def bound_ports(self) -> dict[int, int]:
        """Declared listener port -> the port actually bound."""
        return {declared: bound for declared, (_, bound) in self._listeners.items()}

    async def sync(self, snapshot: Snapshot) -> None:
        """Open the listeners `snapshot` declares and close the others; raise `ConfigError` when
        --port cannot apply, `ListenError` when a port cannot be bound."""
        wanted = sorted({lst.port for lst in snapshot.listeners})
        if self._port is not None and len(wanted) > 1 and not self._port_map:
            raise ConfigError([
                f"--port replaces a single listener port, but the Gateways declare ports "
                f"{', '.join(map(str, wanted))}; use --port-map DECLARED=BOUND for each."
            ])
        for declared in list(self._listeners):
            if declared not in wanted:
                listener, _ = self._listeners.pop(declared)
                await listener.close()
                log.info("listener on declared port %d removed", declared)
        for declared in wanted:
            if declared in self._listeners:
                continue
            bound = self._bind_port(declared)
            listener = HttpServer(self._handler_for(declared), max_body=self._max_body)
            try:
                await listener.start(self._host, bound, self._reuse_port)
            except OSError as e:
                flag = (f"--port-map {declared}=PORT"
                        if len(wanted) > 1 or declared in self._port_map else "--port")
                raise ListenError(self._host, bound, e, flag) from None
            self._listeners[declared] = (listener, bound)
            log.info("listening on %s:%d (Gateway listener port %d)", self._host, bound, declared)

    def stop_accepting(self) -> None:
        """Close the listening sockets; requests in progress finish."""
        for listener, _ in self._listeners.values():
            listener.stop_accepting()

    async def close(self) -> None:
        """Close every listener and its connections."""
        for listener, _ in self._listeners.values():
            await listener.close()
        self._listeners.clear()

    def _bind_port(self, declared: int) -> int:
        if declared in self._port_map:
            return self._port_map[declared]
        if self._port is not None:
            return self._port
        return declared

    def _handler_for(self, declared: int) -> Callable[[DownstreamRequest], Awaitable[None]]:
        handle = self._handle

        def handler(request: DownstreamRequest) -> Awaitable[None]:
            return handle(request, declared)

        return handler
