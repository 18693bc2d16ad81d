"""Reloading under load: atomic replaces, files written in parts, and a ConfigMap mounted the way
kubelet mounts it (a `..data` symlink swapped to a new directory)."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import aiohttp
import pytest

from tests.e2e.gateway_fleet import Fleet, start_fleet, start_gateway, write_endpoints
from tests.e2e.test_gateway_policies import BASE, REQUEST
from tests.faults.test_dead_replica import _load
from tests.support.processes import ProcessGroup

pytestmark = pytest.mark.e2e

MANIFESTS = BASE % {"timeouts": ""}
POOL_AT = MANIFESTS.index("apiVersion: inference.networking.x-k8s.io/v1alpha2\nkind: InferencePool")


@pytest.fixture
def fleet(procs: ProcessGroup) -> Fleet:
    return start_fleet(procs, 2)


def _config(tmp_path: Path, fleet: Fleet) -> Path:
    config = tmp_path / "config"
    config.mkdir()
    (config / "gw.yaml").write_text(MANIFESTS)
    write_endpoints(config, {"app": "sim"}, fleet.addresses)
    return config


async def test_a_file_written_in_two_parts_is_never_applied_half_way(
        procs: ProcessGroup, fleet: Fleet, tmp_path: Path) -> None:
    config = _config(tmp_path, fleet)
    gw = start_gateway(procs, config)
    load = asyncio.create_task(_load(gw.url, rate=20, seconds=4))
    target = config / "gw.yaml"
    for _ in range(6):
        await asyncio.sleep(0.35)
        with target.open("w") as f:  # an editor or script writing in two parts
            f.write(MANIFESTS[:POOL_AT])
            f.flush()
            await asyncio.sleep(0.1)
            f.write(MANIFESTS[POOL_AT:])
    statuses = await load
    assert statuses.count(200) == len(statuses), sorted(set(statuses))


async def test_atomic_replaces_under_load_fail_nothing(
        procs: ProcessGroup, fleet: Fleet, tmp_path: Path) -> None:
    config = _config(tmp_path, fleet)
    gw = start_gateway(procs, config)
    load = asyncio.create_task(_load(gw.url, rate=20, seconds=3))
    for i in range(6):
        await asyncio.sleep(0.4)
        staged = tmp_path / f"staged-{i}.yaml"
        staged.write_text(MANIFESTS + f"# revision {i}\n")
        os.replace(staged, config / "gw.yaml")
    statuses = await load
    assert statuses.count(200) == len(statuses), sorted(set(statuses))


def _kubelet_version(mount: Path, name: str, text: str) -> None:
    """Publish `text` as `mount/name` the way kubelet's atomic writer updates a ConfigMap
    volume: a new `..TIMESTAMP` directory, `..data` switched to it by a rename, the old one
    removed; `mount/name` is a symlink to `..data/name` throughout."""
    version = mount / f"..{time.monotonic_ns()}"
    version.mkdir()
    (version / name).write_text(text)
    old = os.readlink(mount / "..data") if (mount / "..data").is_symlink() else None
    tmp_link = mount / "..data_tmp"
    tmp_link.symlink_to(version.name)
    os.replace(tmp_link, mount / "..data")
    if not (mount / name).is_symlink():
        (mount / name).symlink_to(f"..data/{name}")
    if old is not None:
        for child in (mount / old).iterdir():
            child.unlink()
        (mount / old).rmdir()


async def test_a_configmap_mounted_like_kubelet_does_reloads(
        procs: ProcessGroup, fleet: Fleet, tmp_path: Path) -> None:
    mount = tmp_path / "mount"
    mount.mkdir()
    one = MANIFESTS + (
        "---\napiVersion: poolgate.dev/v1alpha1\nkind: LocalEndpoints\nmetadata: {name: sims}\n"
        "spec:\n  labels: {app: sim}\n  addresses: [%s]\n")
    _kubelet_version(mount, "gw.yaml", one % fleet.addresses[0])
    gw = start_gateway(procs, mount / "gw.yaml")

    async def endpoints() -> list[str]:
        async with aiohttp.ClientSession() as s, s.get(f"{gw.admin}/status") as r:
            status = await r.json()
        return [e["address"] for pool in status["pools"].values() for e in pool["endpoints"]]

    assert await endpoints() == [fleet.addresses[0]]
    # Several updates: each swap deletes the directory the previous one pointed to.
    for addresses in (fleet.addresses, fleet.addresses[1:], fleet.addresses):
        _kubelet_version(mount, "gw.yaml", one % ", ".join(addresses))
        deadline = time.monotonic() + 5
        while await endpoints() != addresses and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        assert await endpoints() == addresses
    async with aiohttp.ClientSession() as s, s.post(f"{gw.url}/v1/completions",
                                                    json=REQUEST) as r:
        assert r.status == 200
