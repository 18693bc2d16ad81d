"""SIGTERM and SIGINT stop every long-running command cleanly (issue 13, item 11).

For each of `serve`, `demo`, `sim`, `router` and `operator`: with work in flight, SIGTERM stops
accepting, lets what is running finish within the command's drain time (cutting it at the end;
`sim` and `operator` have none), closes and exits 0 without a traceback. A second signal during
the drain changes nothing. SIGINT alone does the same.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest
import yaml

from tests.e2e.gateway_fleet import start_fleet, start_gateway, write_endpoints
from tests.e2e.router_process import metric, start_router
from tests.e2e.test_gateway_policies import BASE
from tests.e2e.test_router_operator import TOKEN, FakeApi, eventually, isvc
from tests.support.apps import serve_app
from tests.support.processes import (
    ProcessGroup,
    ServerProcess,
    free_port,
    poolgate_command,
    wait_http,
)

pytestmark = pytest.mark.e2e

MODEL = "/model/llama2"


async def signal_and_wait(proc: ServerProcess, first: signal.Signals,
                          then: signal.Signals | None = None, timeout: float = 15.0) -> float:
    """Send `first` (and `then` 0.3 s later, during the stop); seconds until the process ended.

    A process still running after `timeout` is killed and fails the test.
    """
    started = time.monotonic()
    os.kill(proc.pid, first)
    if then is not None:
        await asyncio.sleep(0.3)
        if proc.proc.poll() is None:
            os.kill(proc.pid, then)
    while proc.proc.poll() is None:
        if time.monotonic() - started > timeout:
            proc.kill()
            pytest.fail(f"{proc.args[3:]} still running {timeout} s after {first.name}:\n"
                        f"{proc.output()[-3000:]}")
        await asyncio.sleep(0.02)
    return time.monotonic() - started


def assert_clean_exit(proc: ServerProcess) -> None:
    out = proc.output()
    assert proc.proc.returncode == 0, out[-3000:]
    assert "Traceback" not in out, out[-3000:]


def refuses_connections(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return False
    except OSError:
        return True


async def status_of(request: Awaitable[aiohttp.ClientResponse]) -> int | str:
    """The status of a request that reads its whole body, or the error's class name."""
    try:
        async with await request as resp:
            await resp.read()
            return resp.status
    except aiohttp.ClientError as exc:
        return type(exc).__name__


def completion(s: aiohttp.ClientSession, url: str, tokens: int,
               stream: bool = False) -> Awaitable[aiohttp.ClientResponse]:
    return s.post(f"{url}/v1/completions", json={
        "model": MODEL, "prompt": "hello", "max_tokens": tokens, "ignore_eos": True,
        "stream": stream})


# --- router -----------------------------------------------------------------------------------

async def test_router_finishes_requests_in_flight_then_exits(procs: ProcessGroup) -> None:
    router = start_router(procs, SIMULATED_LATENCY_MS="1500")
    port = int(router.url.rsplit(":", 1)[1])
    async with aiohttp.ClientSession() as s:
        in_flight = asyncio.create_task(status_of(s.post(f"{router.url}/infer",
                                                         json={"prompt": "hi"})))
        while await metric(s, router, "poolgate_router_requests_in_flight") < 1:
            await asyncio.sleep(0.02)
        os.kill(router.process.pid, signal.SIGTERM)
        await asyncio.sleep(0.2)
        assert refuses_connections(port)  # stopped accepting, still draining
        elapsed = await signal_and_wait(router.process, signal.SIGINT)
        assert await in_flight == 200
    assert elapsed < 4
    assert_clean_exit(router.process)


async def test_router_cuts_what_outlives_its_drain_time(procs: ProcessGroup) -> None:
    router = start_router(procs, SIMULATED_LATENCY_MS="30000")
    async with aiohttp.ClientSession() as s:
        in_flight = asyncio.create_task(status_of(s.post(f"{router.url}/infer",
                                                         json={"prompt": "hi"})))
        while await metric(s, router, "poolgate_router_requests_in_flight") < 1:
            await asyncio.sleep(0.02)
        elapsed = await signal_and_wait(router.process, signal.SIGTERM)
        assert await in_flight == "ServerDisconnectedError"
    assert 4.5 < elapsed < 7.5  # the 5 s drain
    assert_clean_exit(router.process)
    assert "1 request(s) still in progress after 5 s: cancelling them" in router.process.output()


# --- sim --------------------------------------------------------------------------------------

async def test_sim_stops_at_once_with_generations_in_flight(procs: ProcessGroup) -> None:
    # A slow profile: this generation would run for a minute.
    fleet = start_fleet(procs, 1, profile="a10-llama2-7b")
    async with aiohttp.ClientSession() as s:
        stream = asyncio.create_task(status_of(completion(s, fleet.urls[0], 2500, stream=True)))
        await asyncio.sleep(1.0)
        elapsed = await signal_and_wait(fleet.proc, signal.SIGTERM, then=signal.SIGINT)
        assert await stream != 200  # cut: it had a minute to go
    assert elapsed < 3
    assert_clean_exit(fleet.proc)


# --- demo -------------------------------------------------------------------------------------

async def test_demo_drains_the_gateway_then_stops_the_fleet(procs: ProcessGroup) -> None:
    port, admin = free_port(), free_port()
    demo = procs.start(poolgate_command("demo", "--port", str(port), "--admin-port", str(admin),
                                        "--replicas", "1", "--access-log", "off"))
    wait_http(f"http://127.0.0.1:{admin}/readyz", proc=demo, timeout=30)
    match = re.search(r"replicas \(([\d.]+:\d+)\)", demo.output())
    assert match, demo.output()
    gateway, replica = f"http://127.0.0.1:{port}", f"http://{match.group(1)}"
    async with aiohttp.ClientSession() as s:
        short = asyncio.create_task(status_of(completion(s, gateway, 40)))  # about 1 s
        long = asyncio.create_task(status_of(completion(s, gateway, 2500, stream=True)))
        direct = asyncio.create_task(status_of(completion(s, replica, 2500, stream=True)))
        await asyncio.sleep(0.3)
        elapsed = await signal_and_wait(demo, signal.SIGTERM, then=signal.SIGINT)
        assert await short == 200
        assert await long != 200 and await direct != 200  # cut: a minute to go
    assert elapsed < 5 + 3  # the gateway's 5 s drain, then the fleet at once
    assert_clean_exit(demo)


# --- serve ------------------------------------------------------------------------------------

async def test_serve_finishes_requests_in_flight_then_exits(procs: ProcessGroup,
                                                            tmp_path: Path) -> None:
    fleet = start_fleet(procs, 1)  # "fast": 2 ms a token
    config = tmp_path / "config"
    config.mkdir()
    (config / "gw.yaml").write_text(BASE % {"timeouts": ""})
    write_endpoints(config, {"app": "sim"}, fleet.addresses)
    gw = start_gateway(procs, config, "--drain-seconds", "3")
    async with aiohttp.ClientSession() as s:
        in_flight = asyncio.create_task(status_of(completion(s, gw.url, 400, stream=True)))
        await asyncio.sleep(0.3)
        elapsed = await signal_and_wait(gw.proc, signal.SIGTERM, then=signal.SIGINT)
        assert await in_flight == 200
    assert elapsed < 3
    assert_clean_exit(gw.proc)


# --- operator ---------------------------------------------------------------------------------

@pytest.fixture
async def kubeconfig(tmp_path: Path) -> AsyncIterator[tuple[Path, FakeApi]]:
    """A kubeconfig pointing at a fake API server serving one InferenceService."""
    api = FakeApi(items=[isvc("llama", 1)])
    async with serve_app(api.app()) as port:
        path = tmp_path / "kubeconfig"
        path.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "fake",
            "contexts": [{"name": "fake",
                          "context": {"cluster": "fake", "user": "op", "namespace": "ml"}}],
            "clusters": [{"name": "fake", "cluster": {"server": f"http://127.0.0.1:{port}"}}],
            "users": [{"name": "op", "user": {"token": TOKEN}}],
        }))
        yield path, api


async def test_operator_stops_while_watching(procs: ProcessGroup,
                                             kubeconfig: tuple[Path, FakeApi]) -> None:
    path, api = kubeconfig
    operator = procs.start(poolgate_command("operator", "--kubeconfig", str(path)))
    await eventually(lambda: len(api.statuses) >= 1)  # listed, applied: now in the watch
    elapsed = await signal_and_wait(operator, signal.SIGTERM, then=signal.SIGINT)
    assert elapsed < 3
    assert_clean_exit(operator)


# --- SIGINT alone, every command ----------------------------------------------------------------

async def _idle_serve(procs: ProcessGroup, tmp_path: Path, _: Path) -> ServerProcess:
    config = tmp_path / "config"
    config.mkdir()
    (config / "gw.yaml").write_text(BASE % {"timeouts": ""})
    write_endpoints(config, {"app": "sim"}, [f"127.0.0.1:{free_port()}"])
    return start_gateway(procs, config).proc


async def _idle_demo(procs: ProcessGroup, tmp_path: Path, _: Path) -> ServerProcess:
    port, admin = free_port(), free_port()
    demo = procs.start(poolgate_command("demo", "--port", str(port), "--admin-port", str(admin),
                                        "--replicas", "1"))
    wait_http(f"http://127.0.0.1:{admin}/readyz", proc=demo, timeout=30)
    return demo


async def _idle_sim(procs: ProcessGroup, tmp_path: Path, _: Path) -> ServerProcess:
    return start_fleet(procs, 1).proc


async def _idle_router(procs: ProcessGroup, tmp_path: Path, _: Path) -> ServerProcess:
    return start_router(procs).process


async def _idle_operator(procs: ProcessGroup, tmp_path: Path, path: Path) -> ServerProcess:
    operator = procs.start(poolgate_command("operator", "--kubeconfig", str(path)))
    await eventually(lambda: "applied Deployment and Service" in operator.output())
    return operator


Launch = Callable[[ProcessGroup, Path, Path], Awaitable[ServerProcess]]


@pytest.mark.parametrize("launch", [
    pytest.param(_idle_serve, id="serve"),
    pytest.param(_idle_demo, id="demo"),
    pytest.param(_idle_sim, id="sim"),
    pytest.param(_idle_router, id="router"),
    pytest.param(_idle_operator, id="operator"),
])
async def test_sigint_alone_stops_each_command(procs: ProcessGroup, tmp_path: Path,
                                               kubeconfig: tuple[Path, FakeApi],
                                               launch: Launch) -> None:
    proc = await launch(procs, tmp_path, kubeconfig[0])
    elapsed = await signal_and_wait(proc, signal.SIGINT)
    assert elapsed < 3
    assert_clean_exit(proc)
