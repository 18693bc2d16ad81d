"""`poolgate top --once` against a running `poolgate serve`: one frame with every endpoint, the
picks the requests made, and a clear failure when nothing listens at --admin."""

from __future__ import annotations

import json
import subprocess
import urllib.request
from pathlib import Path

import pytest

from poolgate.demo.run import POOL_LABELS, builtin_manifests
from tests.e2e.gateway_fleet import start_fleet, start_gateway, write_endpoints
from tests.support.processes import ProcessGroup, free_port, poolgate_command

pytestmark = pytest.mark.e2e


def _complete(url: str, i: int) -> int:
    body = json.dumps({"model": "/model/llama2", "prompt": f"hello {i}", "max_tokens": 3,
                       "stream": i % 2 == 0}).encode()
    request = urllib.request.Request(f"{url}/v1/completions", data=body,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as resp:
        resp.read()
        return int(resp.status)


def test_top_once_prints_the_gateway_s_endpoints_and_picks(procs: ProcessGroup,
                                                          tmp_path: Path) -> None:
    fleet = start_fleet(procs, 3, time_scale=10.0)
    config = tmp_path / "config"
    config.mkdir()
    (config / "gateway.yaml").write_text(builtin_manifests())
    write_endpoints(config, POOL_LABELS, fleet.addresses)
    gw = start_gateway(procs, config, "--access-log", "off")
    assert [_complete(gw.url, i) for i in range(6)] == [200] * 6

    result = subprocess.run(poolgate_command("top", "--admin", gw.admin, "--once"),
                            capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert f"poolgate top  {gw.admin}  ready" in out
    assert "endpoints ok 3/3" in out
    rows = [line for line in out.splitlines() if line.startswith("ok ")]
    assert sorted(a for line in rows for a in fleet.addresses if a in line) == \
        sorted(fleet.addresses)
    assert "InferencePool default/vllm-llama2-7b-pool" in out
    assert "recent picks (6 since start)" in out
    assert "breaker closed" in out


def test_top_once_without_a_gateway_fails_saying_where_it_looked() -> None:
    admin = f"http://127.0.0.1:{free_port()}"
    result = subprocess.run(poolgate_command("top", "--admin", admin, "--once"),
                            capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 1
    assert f"poolgate top: {admin}/api/live?seconds=60:" in result.stderr
    assert result.stdout == ""
