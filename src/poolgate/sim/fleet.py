"""A fleet of replicas in one event loop: start/stop in-process, or run as `poolgate sim`."""

from __future__ import annotations

import asyncio
import errno
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import yaml
import zmq
from aiohttp import web

from poolgate._aio import StopSignal, run_until_stopped
from poolgate.sim.options import SimOptions
from poolgate.sim.replica import Replica
from poolgate.sim.server import build_app

# Seconds a replica that is stopping gives the requests it is still answering before cutting
# them. A simulator has nothing worth draining, and aiohttp's default (60 s) kept `poolgate sim`
# and `poolgate demo` serving for a minute or more after SIGTERM.
STOP_GRACE_S = 0.5


@dataclass
class SimFleet:
    """Running replicas; `urls[i]` serves replica i."""

    replicas: list[Replica]
    runners: list[web.AppRunner]
    host: str
    ports: list[int]

    @property
    def urls(self) -> list[str]:
        """Base URLs, one per replica."""
        return [f"http://{self.host}:{p}" for p in self.ports]

    @property
    def addresses(self) -> list[str]:
        """`host:port` of each replica (as LocalEndpoints lists them)."""
        return [f"{self.host}:{p}" for p in self.ports]

    async def close(self) -> None:
        """Stop listening and stop every engine."""
        for runner in self.runners:
            await runner.cleanup()
        for replica in self.replicas:
            await replica.close()


class FleetListenError(Exception):
    """A replica's port could not be bound; the message names `--port` (replica i listens on
    PORT+i)."""

    def __init__(self, host: str, port: int, index: int, replicas: int, error: OSError) -> None:
        reason = ("the address is already in use" if error.errno == errno.EADDRINUSE
                  else error.strerror or str(error))
        which = f"replica {index} of {replicas} listens on --port + {index}; " if replicas > 1 \
            else ""
        super().__init__(f"cannot listen on {host}:{port}: {reason} ({which}choose another "
                         "port with --port)")

    @classmethod
    def kv_events(cls, index: int, replicas: int, error: zmq.ZMQError) -> FleetListenError:
        """A replica's KV-event socket could not be bound (endpoints offset by the replica index)."""
        out = cls.__new__(cls)
        which = f"replica {index} of {replicas} uses the ports + {index}; " if replicas > 1 else ""
        Exception.__init__(out, f"cannot open the KV-event sockets of --kv-events-config: {error} "
                                f"({which}choose other ports)")
        return out


async def start_fleet(options: SimOptions, host: str, base_port: int, replicas: int) -> SimFleet:
    """Start `replicas` replicas on base_port..base_port+replicas-1 in the running loop.

    With base_port 0 every replica gets its own ephemeral port (see `SimFleet.ports`).
    """
    if replicas < 1:
        raise ValueError(f"--replicas must be at least 1, got {replicas}")
    fleet = SimFleet([], [], host, [])
    loop = asyncio.get_running_loop()
    try:
        for i in range(replicas):
            try:
                replica = Replica(options, i)
            except zmq.ZMQError as e:
                raise FleetListenError.kv_events(i, replicas, e) from None
            fleet.replicas.append(replica)
            runner = web.AppRunner(build_app(replica), handler_cancellation=True,
                                   access_log=None, shutdown_timeout=STOP_GRACE_S)
            await runner.setup()
            fleet.runners.append(runner)
            port = base_port + i if base_port else 0
            try:
                await web.TCPSite(runner, host, port).start()
            except OSError as e:
                raise FleetListenError(host, port, i, replicas, e) from None
            fleet.ports.append(int(runner.addresses[0][1]))
            replica.start()
            if not replica.ready:
                loop.call_later(options.startup_delay / options.time_scale, replica.mark_ready)
    except BaseException:
        await fleet.close()
        raise
    return fleet


def endpoints_document(name: str, labels: Mapping[str, str], addresses: list[str]) -> str:
    """A LocalEndpoints YAML document declaring `addresses` under `labels`."""
    return yaml.safe_dump({
        "apiVersion": "poolgate.dev/v1alpha1",
        "kind": "LocalEndpoints",
        "metadata": {"name": name},
        "spec": {"labels": dict(labels), "addresses": addresses},
    }, sort_keys=False)


def write_endpoints_file(path: Path, name: str | None, labels: Mapping[str, str],
                         addresses: list[str]) -> None:
    """Write the fleet's LocalEndpoints atomically (a watcher never sees half a file)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(endpoints_document(name or path.stem, labels, addresses))
    tmp.replace(path)


async def serve_fleet(options: SimOptions, host: str, base_port: int, replicas: int,
                      stop: StopSignal, endpoints_file: Path | None = None,
                      endpoints_name: str | None = None,
                      endpoints_labels: Mapping[str, str] | None = None) -> int:
    """Run a fleet until `stop` (SIGTERM or SIGINT): then stop listening, cut the requests still
    running (after `STOP_GRACE_S`) and return 0."""
    fleet = await start_fleet(options, host, base_port, replicas)
    try:
        if endpoints_file is not None:
            write_endpoints_file(endpoints_file, endpoints_name, endpoints_labels or {},
                                 fleet.addresses)
        for i, url in enumerate(fleet.urls):
            print(f"poolgate sim: replica {i} serving {options.model_names[0]!r} on {url} "
                  f"(profile {options.profile}, time scale {options.time_scale:g})", flush=True)
        await stop.wait()
    finally:
        await fleet.close()
    return 0


def run_sim(options: SimOptions, host: str, base_port: int, replicas: int,
            endpoints_file: Path | None = None, endpoints_name: str | None = None,
            endpoints_labels: Mapping[str, str] | None = None) -> int:
    """Run `poolgate sim` until SIGTERM or SIGINT; returns the exit code."""
    try:
        return run_until_stopped("poolgate sim", lambda stop: serve_fleet(
            options, host, base_port, replicas, stop, endpoints_file, endpoints_name,
            endpoints_labels))
    except (FleetListenError, OSError) as e:
        print(f"poolgate sim: {e}", file=sys.stderr)
        return 1
