"""The live status page (`/` on the admin listener) in a real headless Chromium: it loads with
no console error, shows every endpoint of a running `poolgate demo`, and follows a replica that
stops while traffic flows, without a reload.

The fleet test saves a screenshot (and the `/api/live` document it drew) into the test's tmp
directory; with POOLGATE_SCREENSHOT=PATH set, the screenshot is also written to PATH (that is how
docs/status-page.png is made: `POOLGATE_SCREENSHOT=docs/status-page.png pytest
tests/e2e/test_status_page.py`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import shutil
import time
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from poolgate.demo.run import POOL_LABELS, SEED_LORA_MODULES, builtin_manifests
from tests.e2e.gateway_fleet import Fleet, RunningGateway, start_fleet, start_gateway
from tests.support.browser import Page, chromium
from tests.support.processes import ProcessGroup, free_port, poolgate_command, wait_http

pytestmark = pytest.mark.e2e

# What the page shows of each endpoint: its row's address and one-word state.
ROWS = ("[...document.querySelectorAll('tr[data-endpoint]')]"
        ".map(r => [r.dataset.endpoint, r.dataset.state])")
UPDATES = "Number(document.body.dataset.updates)"
LAPTOP = (1440, 900)


def _get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return json.loads(resp.read())


async def _open(page: Page, url: str) -> None:
    await page.set_viewport(*LAPTOP)
    await page.goto(url)
    await page.wait_for(f"{UPDATES} >= 2")


async def test_the_page_shows_every_endpoint_of_the_demo(procs: ProcessGroup,
                                                         tmp_path: Path) -> None:
    port, admin_port = free_port(), free_port()
    demo = procs.start(poolgate_command("demo", "--port", str(port), "--admin-port",
                                        str(admin_port), "--access-log", "off"))
    admin = f"http://127.0.0.1:{admin_port}"
    wait_http(f"{admin}/readyz", proc=demo, timeout=30)
    [pool] = _get_json(f"{admin}/status")["pools"].values()
    replicas = sorted(ep["address"] for ep in pool["endpoints"])
    assert len(replicas) == 4

    async with chromium(procs, tmp_path / "chromium") as browser:
        page = await browser.new_page()
        await _open(page, f"{admin}/")
        assert sorted(await page.evaluate(ROWS)) == [[a, "ok"] for a in replicas]
        assert await page.evaluate("document.getElementById('readiness').textContent") == "ready"
        assert await page.evaluate("document.body.dataset.connection") == "ok"
        assert await page.evaluate("document.querySelectorAll('.chart svg polyline, "
                                   ".chart svg text').length") > 0
        assert page.console_errors == []


# -- a fleet whose replicas can be stopped one by one ------------------------------------------

def _fleet_config(tmp_path: Path, fleets: list[Fleet], regions: list[str]) -> Path:
    """The demo's manifests, with one sim process per replica placed in `regions`."""
    config = tmp_path / "config"
    config.mkdir()
    (config / "gateway.yaml").write_text(builtin_manifests())
    addresses = [{"address": f.addresses[0], "region": region, "cluster": f"{region}-a"}
                 for f, region in zip(fleets, regions, strict=True)]
    (config / "endpoints.yaml").write_text(yaml.safe_dump({
        "apiVersion": "poolgate.dev/v1alpha1", "kind": "LocalEndpoints",
        "metadata": {"name": "replicas"},
        "spec": {"labels": POOL_LABELS, "addresses": addresses}}, sort_keys=False))
    return config


@contextlib.asynccontextmanager
async def _traffic(gw: RunningGateway, rate: float) -> AsyncIterator[list[int]]:
    """Requests at about `rate` per second (streamed and not, base model and adapters) for as
    long as the block runs; yields the statuses received so far."""
    statuses: list[int] = []
    rnd = random.Random(7)
    prompts = [f"You are assistant number {i}. " * 12 for i in range(4)]

    async def one(session: aiohttp.ClientSession, i: int) -> None:
        body = {"model": rnd.choice(["/model/llama2", "/model/llama2", "tweet-summary"]),
                "prompt": rnd.choice(prompts) + f"question {i}", "stream": rnd.random() < 0.7,
                "max_tokens": rnd.randint(8, 40), "ignore_eos": True}
        try:
            async with session.post(f"{gw.url}/v1/completions", json=body) as r:
                await r.read()
                statuses.append(r.status)
        except aiohttp.ClientError:
            statuses.append(0)

    async def run() -> None:
        tasks: set[asyncio.Task[None]] = set()
        async with aiohttp.ClientSession() as session:
            try:
                for i in range(1_000_000):
                    task = asyncio.create_task(one(session, i))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                    await asyncio.sleep(rnd.expovariate(rate))
            finally:
                for task in list(tasks):
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)

    runner = asyncio.create_task(run())
    try:
        yield statuses
    finally:
        runner.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await runner


async def test_the_page_follows_a_replica_that_stops(procs: ProcessGroup,
                                                    tmp_path: Path) -> None:
    loras = [f"{name}={path}" for name, path in SEED_LORA_MODULES[5:8]]
    fleets = [start_fleet(procs, 1, profile="a10-llama2-7b", time_scale=2.0, loras=loras)
              for _ in range(3)]
    regions = ["us-east", "us-east", "eu-west"]
    gw = start_gateway(procs, _fleet_config(tmp_path, fleets, regions), "--access-log", "off")
    addresses = [f.addresses[0] for f in fleets]
    stopped = addresses[2]

    async with _traffic(gw, rate=8.0) as statuses, \
            chromium(procs, tmp_path / "chromium") as browser:
        page = await browser.new_page()
        await _open(page, f"{gw.admin}/")
        assert sorted(await page.evaluate(ROWS)) == sorted([a, "ok"] for a in addresses)
        # Traffic shows up: picks with what decided them, both regions' shares, the chart.
        await page.wait_for("document.querySelectorAll('table.picks tbody tr:not(.empty-row)')"
                            ".length >= 5")
        await page.wait_for("document.querySelectorAll('.share div').length == 2")
        assert "us-east" in await page.evaluate("document.querySelector('.share-legend')"
                                                ".textContent")
        before = await page.evaluate(UPDATES)

        fleets[2].proc.kill()  # SIGKILL, by PID: the replica is gone without a goodbye
        killed_at = time.monotonic()
        state = await page.wait_for(
            f"((r) => r && r[1] !== 'ok' ? r[1] : '')(({ROWS}).find(r => r[0] === '{stopped}'))",
            timeout=30)
        noticed = time.monotonic() - killed_at
        assert state in ("unreachable", "stale"), state
        rows = dict(await page.evaluate(ROWS))
        assert rows == {addresses[0]: "ok", addresses[1]: "ok", stopped: state}
        assert await page.evaluate(UPDATES) > before  # updated in place, not reloaded
        await page.wait_for("[...document.querySelectorAll('.kpis div')].some(d => "
                            "d.textContent.startsWith('endpoints ok') && "
                            "d.textContent.endsWith('2 / 3'))")
        # Traffic keeps flowing to the two left; let the charts and shares show it.
        await asyncio.sleep(6)
        shot = tmp_path / "status-page.png"
        await page.screenshot(shot)
        live = _get_json(f"{gw.admin}/api/live")
        (tmp_path / "live.json").write_text(json.dumps(live, indent=1))
        assert page.console_errors == []
    # Streams relayed their first tokens: the TTFT chart has data.
    assert live["summary"]["last_60s"]["ttft_p50"] is not None

    target = os.environ.get("POOLGATE_SCREENSHOT")
    if target:
        shutil.copyfile(shot, target)
    assert shot.stat().st_size > 20_000
    assert statuses.count(200) > 20, statuses
    print(f"the page showed {stopped} as {state} {noticed:.1f} s after SIGKILL")
