"""What `make run` prints works as printed (issue 16, item 6a): the demo is started as the
Makefile starts it (`.venv/bin/poolgate demo` from the repository root, the venv not on PATH) and
every shell paragraph of its banner is run as it is, from the same directory."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

from tests.support.processes import ProcessGroup, free_port, wait_http

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]


def _path_without(directory: Path) -> str:
    return os.pathsep.join(p for p in os.environ.get("PATH", "").split(os.pathsep)
                           if p and Path(p).resolve() != directory.resolve())


def _banner(procs: ProcessGroup, env: dict[str, str]) -> tuple[str, str]:
    script = Path(sys.executable).with_name("poolgate")
    port, admin = free_port(), free_port()
    demo = procs.start([str(script), "demo", "--port", str(port), "--admin-port", str(admin),
                        "--replicas", "2", "--time-scale", "20", "--access-log", "off"],
                       env=env, cwd=ROOT)
    wait_http(f"http://127.0.0.1:{admin}/readyz", proc=demo, timeout=30)
    deadline = time.monotonic() + 10
    while "Stop with Ctrl-C" not in demo.output():
        assert time.monotonic() < deadline, demo.output()
        time.sleep(0.05)
    return demo.output(), f"http://127.0.0.1:{port}"


def _paragraphs(banner: str) -> dict[str, str]:
    """The banner's shell paragraphs by their heading comment."""
    out = {}
    for paragraph in banner.split("\n\n"):
        if paragraph.startswith("# "):
            heading, _, script = paragraph.partition("\n")
            out[heading[2:]] = script
    return out


def test_every_command_the_demo_prints_works_as_printed(procs: ProcessGroup) -> None:
    if shutil.which("curl") is None:
        pytest.skip("the banner's examples use curl, which is not installed")
    venv_bin = Path(sys.executable).parent
    env = {**os.environ, "PATH": _path_without(venv_bin)}
    env.pop("VIRTUAL_ENV", None)
    banner, url = _banner(procs, env)
    paragraphs = _paragraphs(banner)
    assert len(paragraphs) == 5, banner
    relative = os.path.relpath(venv_bin, ROOT)
    if not relative.startswith(".."):
        # After `make run`: .venv/bin/poolgate and .venv/bin/python, not a bare `poolgate`.
        assert f"{relative}/poolgate bench --url {url}" in banner, banner
        assert f"{relative}/python -m pip install" in banner, banner

    results = {}
    for heading, script in paragraphs.items():
        done = subprocess.run(["sh", "-c", script], cwd=ROOT, env=env, capture_output=True,
                              text=True, timeout=120)
        assert done.returncode == 0, f"{heading}:\n{script}\n{done.stdout}\n{done.stderr}"
        results[heading] = done.stdout

    chat = orjson.loads(results["a chat completion"])
    assert chat["choices"][0]["message"]["content"]
    streamed = results["streamed, with a model name the gateway splits across two LoRA adapters"]
    assert streamed.rstrip().endswith("data: [DONE]")
    assert results["the openai SDK, installed into poolgate's Python first"].strip()
    bench = results["a benchmark: 50 requests at 10 per second, then a latency report"]
    assert "TTFT" in bench, bench
    counters = results["the gateway's request counters and live state"]
    assert "poolgate_requests_total{" in counters and '"pools"' in counters
