"""deploy/gateway/gateway.yaml: the ConfigMap's manifests resolve, and the gateway is given each."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from poolgate.config.build import load_snapshot
from poolgate.discovery.kubernetes import PodCache, pod_from

MANIFEST = Path(__file__).resolve().parents[3] / "deploy" / "gateway" / "gateway.yaml"


def _docs() -> dict[str, dict[str, Any]]:
    return {d["kind"]: d for d in yaml.safe_load_all(MANIFEST.read_text()) if d}


def _pod(name: str, ip: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "poolgate",
                         "labels": {"app": "vllm-llama3-8b"}},
            "status": {"podIP": ip, "conditions": [{"type": "Ready", "status": "True"}]}}


def test_the_configmap_manifests_resolve_over_discovered_pods(tmp_path: Path) -> None:
    files = []
    for name, text in _docs()["ConfigMap"]["data"].items():
        (tmp_path / name).write_text(text)
        files.append(tmp_path / name)
    pods = PodCache()
    pods.replace("poolgate", [pod_from(_pod("vllm-0", "10.1.0.4")),
                              pod_from(_pod("vllm-1", "10.1.0.5"))])
    result = load_snapshot(files, cluster=pods)
    assert result.snapshot is not None
    assert [str(p) for p in result.problems] == []
    pool = next(iter(result.snapshot.pools.values()))
    assert [e.address for e in pool.endpoints] == ["10.1.0.4:8000", "10.1.0.5:8000"]


def test_serve_gets_every_configmap_file_and_discovers_pods() -> None:
    docs = _docs()
    args = docs["Deployment"]["spec"]["template"]["spec"]["containers"][0]["args"]
    given = {args[i + 1] for i, a in enumerate(args) if a == "-f"}
    assert given == {"/etc/poolgate/" + name for name in docs["ConfigMap"]["data"]}
    assert args[args.index("--discovery") + 1] == "kubernetes"
    rules = docs["Role"]["rules"]
    assert rules == [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}]
