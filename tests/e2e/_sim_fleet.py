"""Start `poolgate sim` for the simulator's end-to-end tests."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tests.support.processes import (
    ProcessGroup,
    ServerProcess,
    free_port_range,
    poolgate_command,
    wait_http,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "vllm"


@dataclass
class SimProcess:
    proc: ServerProcess
    urls: list[str]


def start_sim(procs: ProcessGroup, *extra: str, replicas: int = 2, time_scale: float = 10.0,
              wait: bool = True) -> SimProcess:
    base = free_port_range(replicas)
    proc = procs.start(poolgate_command(
        "sim", "--replicas", str(replicas), "--port", str(base), "--profile", "fast",
        "--time-scale", str(time_scale), "--seed", "3", "--model", "/tmp/realvllm/tiny-llama",
        "--served-model-name", "tiny-llama", "--max-model-len", "1024",
        "--lora-modules", "tiny-lora=/tmp/realvllm/tiny-lora", "--max-loras", "2", *extra,
    ))
    urls = [f"http://127.0.0.1:{base + i}" for i in range(replicas)]
    if wait:
        for url in urls:
            wait_http(f"{url}/health", proc=proc)
    return SimProcess(proc, urls)


def capture(name: str) -> tuple[int, bytes]:
    """Status and body of a captured vLLM response."""
    raw = (FIXTURES / name).read_bytes()
    head, _, body = raw.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body
