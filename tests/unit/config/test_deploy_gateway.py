"""deploy/gateway/gateway.yaml: the ConfigMap's manifests resolve, and the gateway is given each."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from poolgate.config.build import load_snapshot

MANIFEST = Path(__file__).resolve().parents[3] / "deploy" / "gateway" / "gateway.yaml"


def _docs() -> dict[str, dict[str, Any]]:
    return {d["kind"]: d for d in yaml.safe_load_all(MANIFEST.read_text()) if d}


def test_the_configmap_manifests_resolve_without_problems(tmp_path: Path) -> None:
    files = []
    for name, text in _docs()["ConfigMap"]["data"].items():
        (tmp_path / name).write_text(text)
        files.append(tmp_path / name)
    result = load_snapshot(files)
    assert result.snapshot is not None
    assert [str(p) for p in result.problems] == []
    pool = next(iter(result.snapshot.pools.values()))
    assert len(pool.endpoints) == 2  # the declared model servers, not an empty (503) pool


def test_every_configmap_file_is_passed_to_serve() -> None:
    docs = _docs()
    args = docs["Deployment"]["spec"]["template"]["spec"]["containers"][0]["args"]
    given = {args[i + 1] for i, a in enumerate(args) if a == "-f"}
    mount = "/etc/poolgate/"
    assert given == {mount + name for name in docs["ConfigMap"]["data"]}
