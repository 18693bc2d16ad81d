"""Active HTTP health checks: one probe task per endpoint, results into a `HealthTracker`.

Targets come from HealthCheckPolicy (per pool) or a BackendTrafficPolicy's
`healthCheck.active`. Each endpoint is probed every `interval` with `GET <path>`; a probe
passes when it answers one of the expected statuses within `timeout`.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import aiohttp

from poolgate._aio import cancel_and_wait
from poolgate.core.pools import Endpoint, Pool
from poolgate.datalayer.health import HealthTracker
from poolgate.datalayer.health_spec import ActiveHealthCheckSpec

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ProbeTarget:
    """What to probe for one endpoint: the URL and the check's settings."""

    address: str  # the endpoint (what the tracker is keyed by)
    url: str
    spec: ActiveHealthCheckSpec


def probe_target(endpoint: Endpoint, pool: Pool, spec: ActiveHealthCheckSpec) -> ProbeTarget:
    """The probe of one endpoint of `pool`.

    A HealthCheckPolicy `port` equal to the pool's target port means the endpoint's own port
    (locally the declared address stands for the pod's target port); any other port is probed
    on the endpoint's host.
    """
    port = endpoint.port
    if spec.port is not None and spec.port != pool.target_port:
        port = spec.port
    host = f"[{endpoint.host}]" if ":" in endpoint.host else endpoint.host
    path = spec.path or "/"
    return ProbeTarget(endpoint.address, f"http://{host}:{port}{path}", spec)


def targets_for(pools: Mapping[str, Pool],
                checks: Mapping[str, ActiveHealthCheckSpec]) -> dict[str, ProbeTarget]:
    """Probe targets of every endpoint of every checked pool (first pool's check wins)."""
    out: dict[str, ProbeTarget] = {}
    for key, spec in checks.items():
        pool = pools.get(key)
        if pool is None:
            continue
        for ep in pool.endpoints:
            out.setdefault(ep.address, probe_target(ep, pool, spec))
    return out


class ActiveHealthChecker:
    """Runs the probes; `set_targets` may be called at any time (on reload)."""

    def __init__(self, tracker: HealthTracker, *, seed: int | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.tracker = tracker
        self._targets: dict[str, ProbeTarget] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._session: aiohttp.ClientSession | None = None
        self._rng = random.Random(seed)
        self._clock = clock
        self._closed = False

    @property
    def targets(self) -> Mapping[str, ProbeTarget]:
        """The probes currently configured, by endpoint address."""
        return self._targets

    def set_targets(self, targets: Mapping[str, ProbeTarget]) -> None:
        """Probe exactly `targets` from now on; unchanged targets keep their task and state."""
        old = self._targets
        self._targets = dict(targets)
        self.tracker.retain(self._targets)
        if self._session is None:
            return
        for address in list(self._tasks):
            if address not in self._targets or old.get(address) != self._targets[address]:
                self._tasks.pop(address).cancel()
        for address, target in self._targets.items():
            if address not in self._tasks:
                self._spawn(target)

    def start(self) -> None:
        """Open the session and start probing (needs a running loop)."""
        if self._closed or self._session is not None:
            return
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, force_close=True),
            timeout=aiohttp.ClientTimeout(total=None),
        )
        for target in self._targets.values():
            self._spawn(target)

    async def close(self) -> None:
        """Stop every probe and close the session (idempotent)."""
        self._closed = True
        tasks = list(self._tasks.values())
        self._tasks.clear()
        await cancel_and_wait(tasks)
        if self._session is not None:
            await self._session.close()

    def _spawn(self, target: ProbeTarget) -> None:
        # The first probe goes out at once (readiness waits for it); later ones are spread.
        self._tasks[target.address] = asyncio.get_running_loop().create_task(
            self._run(target), name=f"poolgate-health:{target.address}")

    async def _run(self, target: ProbeTarget) -> None:
        spec = target.spec
        loop = asyncio.get_running_loop()
        first = True
        while True:
            started = loop.time()
            ok, error = await self.probe_once(target)
            changed = self.tracker.record(
                target.address, ok, self._clock(), healthy_threshold=spec.healthy_threshold,
                unhealthy_threshold=spec.unhealthy_threshold, error=error)
            if changed and not (first and ok):
                log.warning("endpoint %s is now %s by active health check (%s)%s",
                            target.address, "healthy" if ok else "unhealthy", target.url,
                            f": {error}" if error else "")
            first = False
            jitter = self._rng.uniform(0, spec.interval * 0.1)
            await asyncio.sleep(max(0.0, spec.interval - (loop.time() - started)) + jitter)

    async def probe_once(self, target: ProbeTarget) -> tuple[bool, str | None]:
        """One probe: (passed, why it failed)."""
        session = self._session
        if session is None:
            raise RuntimeError("ActiveHealthChecker.start() was not called")
        spec = target.spec
        try:
            async with asyncio.timeout(spec.timeout):
                async with session.request(spec.method, target.url,
                                           allow_redirects=False) as resp:
                    await resp.read()
                    if resp.status in spec.expected_statuses:
                        return True, None
                    return False, f"HTTP {resp.status}"
        except TimeoutError:
            return False, f"no answer within {spec.timeout:g}s"
        except aiohttp.ClientError as exc:
            return False, f"{exc.__class__.__name__}: {exc}"
