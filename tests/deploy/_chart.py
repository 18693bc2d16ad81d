"""Running helm and kubectl on the chart, and reading what they render, for tests/deploy."""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "deploy" / "charts" / "poolgate"
NAMESPACE = "poolgate"
RELEASE = "pg"
KUBE_VERSION = "1.34.0"

# Value files of the chart's ci/ folder, by the id the tests use.
CONFIGS: dict[str, tuple[Path, ...]] = {
    "default": (),
    "all-options": (CHART / "ci" / "all-options-values.yaml",),
    "watch-namespaces": (CHART / "ci" / "watch-namespaces-values.yaml",),
    "epp-only": (CHART / "ci" / "epp-only-values.yaml",),
}

Obj = dict[str, Any]
# (apiGroup, resource) -> verbs, the comparable form of a list of RBAC rules.
Grants = dict[tuple[str, str], frozenset[str]]


def tool(name: str) -> Path:
    """helm or kubectl from the venv's bin directory, where `make kube-tools` puts them."""
    path = Path(sys.executable).parent / name
    if not os.access(path, os.X_OK):
        pytest.fail(f"{path} is missing: run `make kube-tools` (scripts/install_kube_tools.py) "
                    "to install helm and kubectl", pytrace=False)
    return path


@functools.cache
def _tool_env() -> dict[str, str]:
    """No kubeconfig and private helm directories: nothing here may reach a cluster or a repo."""
    home = Path(tempfile.gettempdir()) / "poolgate-tests-kube-tools"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KUBE", "HELM_"))}
    env.update(KUBECONFIG=str(home / "no-kubeconfig"), HELM_CACHE_HOME=str(home / "cache"),
               HELM_CONFIG_HOME=str(home / "config"), HELM_DATA_HOME=str(home / "data"))
    return env


def run(name: str, *args: str, check: bool = True,
        stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run helm or kubectl; with `check`, fail the test with its output when it exits non-zero."""
    cmd = [str(tool(name)), *args]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=_tool_env(),
                            input=stdin, check=False)
    if check and result.returncode != 0:
        pytest.fail(f"{' '.join(cmd)} exited {result.returncode}:\n{result.stdout}\n"
                    f"{result.stderr}", pytrace=False)
    return result


def value_args(files: Iterable[Path] = (), sets: Iterable[str] = ()) -> list[str]:
    """helm's -f and --set arguments."""
    args: list[str] = []
    for f in files:
        args += ["-f", str(f)]
    for s in sets:
        args += ["--set", s]
    return args


def template_args(files: Iterable[Path] = (), sets: Iterable[str] = ()) -> list[str]:
    """`helm template` for the release `pg` in `poolgate`, as Kubernetes 1.34 with the
    Prometheus Operator's API (the ServiceMonitor option), CRDs included."""
    return ["template", RELEASE, str(CHART), "--namespace", NAMESPACE,
            "--kube-version", KUBE_VERSION, "--api-versions", "monitoring.coreos.com/v1",
            "--include-crds", *value_args(files, sets)]


@functools.cache
def _render_text(files: tuple[Path, ...], sets: tuple[str, ...]) -> str:
    return run("helm", *template_args(files, sets)).stdout


def render(files: Iterable[Path] = (), sets: Iterable[str] = ()) -> list[Obj]:
    """Every object `helm template` renders (a fresh copy per call: tests may change them)."""
    text = _render_text(tuple(files), tuple(sets))
    return [d for d in yaml.safe_load_all(text) if d]


def render_config(config: str) -> list[Obj]:
    """The objects rendered with one of CONFIGS."""
    return render(CONFIGS[config])


def load_file(path: Path) -> list[Obj]:
    """The documents of a plain manifest file."""
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def of_kind(objs: Iterable[Obj], kind: str) -> list[Obj]:
    return [o for o in objs if o["kind"] == kind]


def one(objs: Iterable[Obj], kind: str, name: str | None = None) -> Obj:
    """The only object of `kind` (and `name`); fails the test when there is not exactly one."""
    found = [o for o in of_kind(objs, kind) if name is None or o["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def grants(rules: Iterable[Mapping[str, Any]]) -> Grants:
    """RBAC rules as (group, resource) -> verbs; rules naming the same pair add up."""
    out: dict[tuple[str, str], set[str]] = {}
    for rule in rules:
        assert set(rule) <= {"apiGroups", "resources", "verbs"}, f"unexpected rule fields: {rule}"
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                out.setdefault((group, resource), set()).update(rule["verbs"])
    return {k: frozenset(v) for k, v in out.items()}


def args_of(container: Mapping[str, Any]) -> dict[str, list[str]]:
    """A container's `--flag value` arguments by flag (repeatable flags keep every value;
    a flag followed by another flag, or last, has no value)."""
    args = list(container["args"])
    out: dict[str, list[str]] = {}
    for i, arg in enumerate(args):
        if arg.startswith("-"):
            following = args[i + 1] if i + 1 < len(args) else None
            value = [] if following is None or following.startswith("-") else [following]
            out.setdefault(arg, []).extend(value)
    return out


def accepts(args: list[str]) -> subprocess.CompletedProcess[str]:
    """`poolgate ARGS --help`: click parses every option name and its arity before the eager
    --help exits, so an unknown flag or a missing value exits 2 and nothing is started."""
    poolgate = Path(sys.executable).parent / "poolgate"
    return subprocess.run([str(poolgate), *args, "--help"], capture_output=True, text=True,
                          timeout=60, check=False)


# Runs `poolgate epp ARGS` in a fresh interpreter with `run_serve` replaced by a recorder, so the
# command's own checks (controller name format, --source, profile, log level) run and nothing is
# started; prints what it would run with, as JSON.
_EPP_OPTIONS = """
import json, sys
import poolgate.proxy.run
seen = []
poolgate.proxy.run.run_serve = lambda options: seen.append(options) or 0
from poolgate.cli import app
try:
    app(sys.argv[1:], prog_name="poolgate")
except SystemExit as e:
    code = e.code
if not seen:
    sys.exit(code or 1)
o = seen[0]
print(json.dumps({
    "front": o.front, "host": o.host, "grpc_port": o.grpc_port, "admin_host": o.admin_host,
    "admin_port": o.admin_port, "drain_seconds": o.drain_seconds, "source": o.source,
    "discovery": o.discovery, "paths": [str(p) for p in o.paths],
    "namespaces": list(o.kube.namespaces), "controller_names": list(o.kube.controller_names),
    "write_status": o.kube.write_status, "leader_elect": o.kube.leader_elect,
    "publish_service": o.kube.publish_service,
    "scheduler_profile": o.gateway.scheduler_profile,
}))
"""


def epp_options(args: list[str]) -> dict[str, Any]:
    """What `poolgate ARGS` (an `epp` command line) would run the picker with: the command
    parsed and checked by poolgate itself, stopped before it serves. Fails the test when the
    command refuses the arguments."""
    assert args[0] == "epp"
    result = subprocess.run([sys.executable, "-c", _EPP_OPTIONS, *args], capture_output=True,
                            text=True, timeout=60, check=False)
    if result.returncode != 0:
        pytest.fail(f"poolgate {' '.join(args)} exited {result.returncode}:\n{result.stdout}\n"
                    f"{result.stderr}", pytrace=False)
    options: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return options
