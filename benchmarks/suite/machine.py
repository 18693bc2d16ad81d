"""What the numbers were measured on: cores, CPU model, memory, OS, Python and package versions."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

_PACKAGES = ("poolgate", "aiohttp", "uvloop", "orjson", "matplotlib")


def _cpu_model(cpuinfo: str) -> str:
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name":
            return value.strip()
    return platform.processor() or "unknown"


def _mem_total_gib(meminfo: str) -> float | None:
    for line in meminfo.splitlines():
        if line.startswith("MemTotal:"):
            return round(int(line.split()[1]) / 1024 / 1024, 1)
    return None


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


@dataclass(frozen=True, slots=True)
class Machine:
    """The host and software versions, recorded with every report."""

    cores: int
    cpu_model: str
    memory_gib: float | None
    os: str
    python: str
    packages: dict[str, str]
    peers: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Machine:
        return cls(
            cores=int(data["cores"]), cpu_model=str(data["cpu_model"]),
            memory_gib=data.get("memory_gib"), os=str(data["os"]), python=str(data["python"]),
            packages=dict(data.get("packages", {})), peers=dict(data.get("peers", {})),
        )


def package_versions(names: tuple[str, ...] = _PACKAGES) -> dict[str, str]:
    """Installed versions of `names` in this interpreter (absent ones are left out)."""
    found: dict[str, str] = {}
    for name in names:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return found


def peer_versions(venv: Path, names: tuple[str, ...]) -> dict[str, str]:
    """Versions of the peer routers installed in `venv`, asked of that venv's Python."""
    python = venv / "bin" / "python"
    if not python.exists():
        return {}
    code = ("import importlib.metadata as m, sys\n"
            "for n in sys.argv[1:]:\n"
            "    try: print(n, m.version(n))\n"
            "    except m.PackageNotFoundError: pass\n")
    out = subprocess.run([str(python), "-c", code, *names], capture_output=True, text=True,
                         timeout=60, check=False)
    return dict(line.split(" ", 1) for line in out.stdout.splitlines() if " " in line)


def this_machine(peers: dict[str, str] | None = None) -> Machine:
    """Describe the machine the suite runs on."""
    return Machine(
        cores=os.cpu_count() or 0,
        cpu_model=_cpu_model(_read("/proc/cpuinfo")),
        memory_gib=_mem_total_gib(_read("/proc/meminfo")),
        os=f"{platform.system()} {platform.release()}",
        python=platform.python_version(),
        packages=package_versions(),
        peers=peers or {},
    )
