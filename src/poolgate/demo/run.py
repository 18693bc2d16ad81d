"""The embedded default: a simulated fleet plus the gateway, from a built-in configuration."""

from __future__ import annotations

import os
import shlex
import shutil
import sys
import tempfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from poolgate._aio import StopSignal, run_until_stopped
from poolgate.proxy.gateway import GatewayOptions
from poolgate.proxy.run import serve_until_stopped
from poolgate.proxy.server import GatewayServer, ServeOptions
from poolgate.sim import SimOptions, start_fleet
from poolgate.sim.fleet import write_endpoints_file

# Seed 001's adapters: ten LoRA modules on one llama2 base, four GPU slots.
SEED_LORA_MODULES = (
    ("sql-lora", "/adapters/yard1/llama-2-7b-sql-lora-test_0"),
    ("sql-lora-1", "/adapters/yard1/llama-2-7b-sql-lora-test_1"),
    ("sql-lora-2", "/adapters/yard1/llama-2-7b-sql-lora-test_2"),
    ("sql-lora-3", "/adapters/yard1/llama-2-7b-sql-lora-test_3"),
    ("sql-lora-4", "/adapters/yard1/llama-2-7b-sql-lora-test_4"),
    ("tweet-summary", "/adapters/vineetsharma/qlora-adapter-Llama-2-7b-hf-TweetSumm_0"),
    ("tweet-summary-1", "/adapters/vineetsharma/qlora-adapter-Llama-2-7b-hf-TweetSumm_1"),
    ("tweet-summary-2", "/adapters/vineetsharma/qlora-adapter-Llama-2-7b-hf-TweetSumm_2"),
    ("tweet-summary-3", "/adapters/vineetsharma/qlora-adapter-Llama-2-7b-hf-TweetSumm_3"),
    ("tweet-summary-4", "/adapters/vineetsharma/qlora-adapter-Llama-2-7b-hf-TweetSumm_4"),
)
POOL_LABELS = {"app": "vllm-llama2-7b-pool"}


@dataclass(frozen=True)
class DemoOptions:
    """Settings of `poolgate demo`."""

    port: int = 8080
    admin_port: int = 9901
    host: str = "127.0.0.1"
    replicas: int = 4
    profile: str = "a10-llama2-7b"
    time_scale: float = 1.0
    seed: int = 0
    access_log: str = "-"


def builtin_manifests() -> str:
    """The demo's Gateway API / Inference Extension manifests (see manifests.yaml)."""
    return resources.files("poolgate.demo").joinpath("manifests.yaml").read_text()


def shell_name(program: str, name: str) -> str:
    """How to type `program` in a shell started where the demo was: `name` when the shell's
    PATH finds that very file, else its path (relative to the working directory when under
    it), quoted for the shell."""
    path = os.path.abspath(program)
    found = shutil.which(name)
    if found is not None and os.path.abspath(found) == path:
        return name
    relative = os.path.relpath(path)
    shown = path if relative.startswith("..") else relative
    return shlex.quote(shown if os.sep in shown else f".{os.sep}{shown}")


def own_commands() -> tuple[str, str]:
    """How to run this poolgate and this Python from the demo's working directory: after
    `make run`, `.venv/bin/poolgate` and `.venv/bin/python` (the venv is not on PATH)."""
    python = shell_name(sys.executable, "python")
    script = Path(sys.executable).with_name("poolgate")
    poolgate = shell_name(str(script), "poolgate") if script.is_file() else f"{python} -m poolgate"
    return poolgate, python


def instructions(url: str, admin: str, replicas: list[str], poolgate: str = "poolgate",
                 python: str = "python") -> str:
    """What to paste to talk to the demo. Each paragraph after the first is a shell script,
    headed by a comment, that works as printed from the demo's working directory (an e2e test
    runs every one)."""
    return f"""
poolgate demo is running: {len(replicas)} simulated vLLM replicas ({", ".join(replicas)})
behind the gateway at {url}  (live status page: {admin}/  metrics: {admin}/metrics)
Paste any paragraph below into a shell opened in this directory.

# a chat completion
curl {url}/v1/chat/completions -H 'Content-Type: application/json' -d '{{
  "model": "/model/llama2", "max_tokens": 50,
  "messages": [{{"role": "user", "content": "introduce yourself"}}]}}'

# streamed, with a model name the gateway splits across two LoRA adapters
curl -N {url}/v1/completions -H 'Content-Type: application/json' \\
  -d '{{"model": "tweet-summary", "prompt": "summarize: ...", "max_tokens": 30, "stream": true}}'

# the openai SDK, installed into poolgate's Python first
{python} -m pip install -q openai
{python} - <<'EOF'
from openai import OpenAI
client = OpenAI(base_url="{url}/v1", api_key="unused")
reply = client.chat.completions.create(
    model="/model/llama2", messages=[{{"role": "user", "content": "hello"}}], max_tokens=50)
print(reply.choices[0].message.content)
EOF

# a benchmark: 50 requests at 10 per second, then a latency report
{poolgate} bench --url {url} --model /model/llama2 --rate 10 --requests 50

# the gateway's request counters and live state
curl -s {admin}/metrics | grep '^poolgate_requests_total'
curl -s {admin}/status

Stop with Ctrl-C or SIGTERM.
"""


async def run_demo_async(options: DemoOptions, stop: StopSignal) -> int:
    """Start the fleet, then the gateway; on a stop signal the gateway drains (5 s) and stops,
    then the fleet."""
    sim = SimOptions(
        lora_modules=SEED_LORA_MODULES, max_loras=4, profile=options.profile,
        time_scale=options.time_scale, seed=options.seed,
    )
    fleet = await start_fleet(sim, "127.0.0.1", 0, options.replicas)
    try:
        with tempfile.TemporaryDirectory(prefix="poolgate-demo-") as tmp:
            config = Path(tmp)
            (config / "gateway.yaml").write_text(builtin_manifests())
            write_endpoints_file(config / "endpoints.yaml", "demo-replicas", POOL_LABELS,
                                 list(fleet.addresses))
            serve = ServeOptions(
                paths=[config], host=options.host, port=options.port,
                admin_port=options.admin_port, access_log=options.access_log, watch=False,
                drain_seconds=5.0, gateway=GatewayOptions(seed=options.seed),
            )

            async def announce(server: GatewayServer) -> None:
                bound = next(iter(server.bound_ports.values()))
                poolgate, python = own_commands()
                print(instructions(f"http://{options.host}:{bound}",
                                   f"http://127.0.0.1:{options.admin_port}",
                                   list(fleet.addresses), poolgate, python), flush=True)

            return await serve_until_stopped(serve, stop, on_started=announce)
    finally:
        await fleet.close()


def run_demo(options: DemoOptions) -> int:
    """Run `poolgate demo` until SIGTERM or SIGINT; returns the exit code."""
    return run_until_stopped("poolgate demo", lambda stop: run_demo_async(options, stop))
