"""Rendering helpers for the envoy-config unit tests: manifests in, bootstrap dicts out."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from poolgate.config.build import load_snapshot
from poolgate.envoy.bootstrap import Rendered, render
from poolgate.envoy.model import EnvoyOptions
from tests.unit.config.manifests import load

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"


def rendered(tmp_path: Path, *docs: str, options: EnvoyOptions | None = None) -> Rendered:
    """The bootstrap of inline manifests (which must load without errors)."""
    result = load(tmp_path, *docs)
    assert result.snapshot is not None, [str(p) for p in result.errors]
    return render(result.snapshot, options or EnvoyOptions(), result.warnings)


def rendered_dir(path: Path, options: EnvoyOptions | None = None) -> Rendered:
    """The bootstrap of a manifests directory (an example)."""
    result = load_snapshot([path])
    assert result.snapshot is not None, [str(p) for p in result.errors]
    return render(result.snapshot, options or EnvoyOptions(), result.warnings)


def hcm(out: Rendered, index: int = 0) -> dict[str, Any]:
    """The HTTP connection manager of the `index`-th listener."""
    listener = out.config["static_resources"]["listeners"][index]
    config: dict[str, Any] = listener["filter_chains"][0]["filters"][0]["typed_config"]
    return config


def routes(out: Rendered, index: int = 0) -> Iterator[dict[str, Any]]:
    """Every Envoy route of a listener, virtual host by virtual host."""
    for vhost in hcm(out, index)["route_config"]["virtual_hosts"]:
        yield from vhost["routes"]


def cluster(out: Rendered, name: str) -> dict[str, Any]:
    """The cluster called `name`."""
    found: dict[str, Any] = next(c for c in out.config["static_resources"]["clusters"]
                                 if c["name"] == name)
    return found


def http_filter(out: Rendered, name: str) -> dict[str, Any]:
    """The HTTP filter called `name` of the first listener."""
    found: dict[str, Any] = next(f for f in hcm(out)["http_filters"] if f["name"] == name)
    return found
