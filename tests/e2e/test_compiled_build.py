"""The wheel `pip install .` builds (setup.py, issue 18): the request path's hot modules compiled
by mypyc and serving the seeds' semantics, and the same modules as plain Python when no C
compiler is there.

`make test` runs the rest of the suite on the editable install's plain modules and
`make test-compiled` the whole suite on a compiled build; these tests keep both install paths of
the wheel working in `make test` (one build each, about a minute together: pip's isolated build
environment brings mypyc from the package registry, as it would for a user).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import aiohttp
import openai
import orjson
import pytest

from benchmarks.suite.compiled import ROOT, build_compiled, compiled_env, hot_modules
from tests.e2e.gateway_fleet import SEED_LORAS, RunningGateway, seed_000_config, start_fleet
from tests.support.processes import ProcessGroup, free_port, poolgate_command, wait_http

pytestmark = pytest.mark.e2e

OVERFLOW = "upstream connect error or disconnect/reset before headers. reset reason: overflow"


def _sources(dest: Path) -> Path:
    """What the wheel is built from, copied, so that the build starts from nothing as on a fresh
    clone (a build in the checkout reuses the C files and objects of earlier builds in build/)."""
    for name in ("setup.py", "pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, dest / name)
    shutil.copytree(ROOT / "src", dest / "src",
                    ignore=shutil.ignore_patterns("__pycache__", "*.so", "*.egg-info"))
    return dest


@pytest.fixture(scope="module")
def compiled_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = _sources(tmp_path_factory.mktemp("sources"))
    return asyncio.run(build_compiled(tmp_path_factory.mktemp("compiled"), root=root))


def _module_files(tree: Path, modules: list[str]) -> dict[str, str]:
    code = ("import importlib, json, sys\n"
            "print(json.dumps({m: importlib.import_module(m).__file__ for m in sys.argv[1:]}))")
    out = subprocess.run([sys.executable, "-c", code, *modules], capture_output=True, text=True,
                         env={**os.environ, **compiled_env(tree)}, check=True, timeout=60)
    files: dict[str, str] = orjson.loads(out.stdout)
    return files


def _mapped_files(pid: int) -> set[str]:
    """The files process `pid` has mapped (its loaded extension modules among them)."""
    lines = Path(f"/proc/{pid}/maps").read_text().splitlines()
    return {line.split(maxsplit=5)[5] for line in lines if len(line.split(maxsplit=5)) == 6}


def test_setup_lists_the_hot_modules_and_they_exist() -> None:
    modules = hot_modules()
    assert "poolgate.proxy.gateway" in modules and "poolgate.http.server" in modules
    for module in modules:
        assert (ROOT / "src" / (module.replace(".", "/") + ".py")).is_file(), module


def test_the_wheel_compiles_every_hot_module(compiled_tree: Path) -> None:
    plain = "poolgate.scheduling.scorers.params"  # pydantic models: mypyc cannot compile them
    files = _module_files(compiled_tree, [*hot_modules(), plain])
    assert "poolgate.scheduling.scheduler" in hot_modules()  # the pick too
    for module in hot_modules():
        assert files[module].startswith(str(compiled_tree)), files[module]
        assert files[module].endswith(".so"), (module, files[module])
    # What setup.py does not list stays Python, from the same tree.
    assert files[plain] == str(compiled_tree / "poolgate" / "scheduling" / "scorers" / "params.py")


async def test_a_compiled_gateway_serves_the_seeds_semantics(
        procs: ProcessGroup, tmp_path: Path, compiled_tree: Path) -> None:
    fleet = start_fleet(procs, 1, loras=SEED_LORAS, time_scale=0.5)
    config = seed_000_config(tmp_path, fleet)
    port, admin = free_port(), free_port()
    proc = procs.start(poolgate_command(
        "serve", "-f", str(config), "--port", str(port), "--admin-port", str(admin),
        "--host", "127.0.0.1", "--seed", "1"), env=compiled_env(compiled_tree))
    wait_http(f"http://127.0.0.1:{admin}/readyz", proc=proc)
    gw = RunningGateway(proc, port, admin, config)
    # The process really runs the compiled listener and gateway.
    assert [f for f in _mapped_files(proc.pid) if f.startswith(str(compiled_tree))
            and f.endswith(".so")]

    body = {"model": "/model/llama2", "max_completion_tokens": 100, "temperature": 0,
            "messages": [{"role": "user", "content": "introduce yourself"}]}

    async def chat(s: aiohttp.ClientSession) -> tuple[int, str]:
        async with s.post(f"{gw.url}/v1/chat/completions", json=body,
                          headers={"host": "example.com"}) as r:
            return r.status, await r.text()

    async with aiohttp.ClientSession() as s:
        results = sorted(await asyncio.gather(chat(s), chat(s)))
        assert [status for status, _ in results] == [200, 503], results
        assert orjson.loads(results[0][1])["usage"]["completion_tokens"] == 100
        assert results[1][1] == OVERFLOW

    client = openai.AsyncOpenAI(base_url=f"{gw.url}/v1", api_key="unused",
                                default_headers={"host": "example.com"})
    try:
        stream = await client.chat.completions.create(
            model="/model/llama2", messages=[{"role": "user", "content": "count"}],
            max_completion_tokens=12, stream=True, stream_options={"include_usage": True})
        chunks = [chunk async for chunk in stream]
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert text and chunks[-1].usage is not None
        assert chunks[-1].usage.completion_tokens == 12
        with pytest.raises(openai.NotFoundError) as err:
            await client.chat.completions.create(
                model="no-such-model", messages=[{"role": "user", "content": "x"}])
        assert err.value.status_code == 404
    finally:
        await client.close()

    async with aiohttp.ClientSession() as s, s.get(f"{gw.admin}/metrics") as m:
        metrics = await m.text()
    assert "poolgate_circuit_breaker_overflows_total{" in metrics


def test_without_a_c_compiler_the_wheel_installs_plain_python(tmp_path: Path) -> None:
    wheels, root = tmp_path / "wheel", _sources(tmp_path)
    # setuptools takes the compiler from CC (and the linker from LDSHARED): `false` fails both.
    env = {**os.environ, "CC": "false", "LDSHARED": "false"}
    out = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--disable-pip-version-check", "--no-deps", "-v",
         "-w", str(wheels), str(root)], capture_output=True, text=True, env=env, cwd=root,
        timeout=900)
    log = out.stdout + out.stderr
    assert out.returncode == 0, log[-3000:]
    assert "the hot modules stay plain Python" in log, log[-3000:]
    (wheel,) = wheels.glob("poolgate-*.whl")
    tree = tmp_path / "tree"
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        z.extractall(tree)
    assert not [n for n in names if n.endswith(".so")], names
    files = _module_files(tree, list(hot_modules()))
    for module, file in files.items():
        assert file == str(tree / (module.replace(".", "/") + ".py")), (module, file)
    # And that plain install runs: the CLI answers from it.
    cli = subprocess.run([sys.executable, "-m", "poolgate", "--help"], capture_output=True,
                             text=True, env={**os.environ, **compiled_env(tree)}, timeout=60)
    assert cli.returncode == 0 and "serve" in cli.stdout, cli.stderr
