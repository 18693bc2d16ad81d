"""A compiled build of poolgate for the sections that measure the gateway's own CPU (issue 18).

`make` installs poolgate editable, so the suite's `poolgate serve` runs the hot modules as plain
Python; `pip install .` (a wheel, the container image) compiles them with mypyc (setup.py). To
measure both, a wheel is built from this checkout the way `pip install .` builds it, unpacked
into the run's directory, and put first on a gateway's PYTHONPATH.
"""

from __future__ import annotations

import ast
import asyncio
import os
import sys
import zipfile
from functools import cache
from pathlib import Path

from poolgate.bench import BenchError

ROOT = Path(__file__).resolve().parents[2]
# Imported from the build to check that it is compiled (an extension module, not the .py).
PROBE = "poolgate.http.server"


async def build_compiled(workdir: Path, root: Path = ROOT, timeout: float = 900) -> Path:
    """A directory holding poolgate with its hot modules compiled, built from `root`; BenchError
    when pip cannot build the wheel or the build fell back to plain Python (no C compiler,
    mypyc missing)."""
    wheels, tree = workdir / "wheel", workdir / "tree"
    wheels.mkdir(parents=True, exist_ok=True)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "pip", "wheel", "--disable-pip-version-check", "--no-deps", "-w",
        str(wheels), str(root), stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT, cwd=root)
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise BenchError(f"building the compiled wheel took more than {timeout:.0f} s") from None
    if proc.returncode != 0:
        text = out.decode(errors="replace").strip()
        raise BenchError(f"pip wheel failed ({proc.returncode}): {text[-1500:]}")
    found = sorted(wheels.glob("poolgate-*.whl"))
    if not found:
        raise BenchError(f"pip wheel wrote no poolgate wheel into {wheels}")
    with zipfile.ZipFile(found[-1]) as wheel:
        wheel.extractall(tree)
    await check_compiled(tree)
    return tree


async def check_compiled(tree: Path) -> None:
    """BenchError unless `tree` holds a compiled `PROBE`."""
    code = f"import {PROBE} as m; print(m.__file__)"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", code, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT, env={**os.environ, **compiled_env(tree)})
    out, _ = await proc.communicate()
    where = out.decode(errors="replace").strip()
    if proc.returncode != 0 or not where.endswith(".so") or not where.startswith(str(tree)):
        raise BenchError(f"the wheel's hot modules are not compiled (setup.py fell back to plain "
                         f"Python: no C compiler or no mypyc?): {PROBE} is {where[-500:]}")


def compiled_env(tree: Path) -> dict[str, str]:
    """The environment that runs poolgate from `tree`."""
    path = os.environ.get("PYTHONPATH")
    return {"PYTHONPATH": f"{tree}{os.pathsep}{path}" if path else str(tree)}


@cache
def hot_modules(setup: Path = ROOT / "setup.py") -> tuple[str, ...]:
    """The modules setup.py compiles, dotted (`poolgate.http.server`); () when it lists none."""
    try:
        tree = ast.parse(setup.read_text())
    except (OSError, SyntaxError):
        return ()
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "HOT_MODULES" for t in node.targets):
            paths = ast.literal_eval(node.value)
            return tuple(p.removeprefix("src/").removesuffix(".py").replace("/", ".")
                         for p in paths)
    return ()
