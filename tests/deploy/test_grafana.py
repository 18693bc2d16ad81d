"""deploy/grafana/poolgate.json queries only series that poolgate's /metrics exports, and
deploy/monitoring's scrape examples point at the admin listener of deploy/gateway."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import yaml

from tests.unit.proxy._fakes import FakeUpstreams, gateway, snapshot

REPO = Path(__file__).resolve().parents[2]
DASHBOARD = REPO / "deploy" / "grafana" / "poolgate.json"
MONITORING = REPO / "deploy" / "monitoring"

_KEYWORDS = {"and", "or", "unless", "bool", "offset", "inf", "nan", "group_left", "group_right"}


def metric_names(expr: str) -> set[str]:
    """The series names a PromQL expression reads (functions, labels, keywords left out)."""
    e = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # string literals
    e = re.sub(r"\{[^}]*\}", "", e)  # label matchers
    e = re.sub(r"\[[^\]]*\]", "", e)  # range selectors
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", e)
    names = set()
    for m in re.finditer(r"[a-zA-Z_:][a-zA-Z0-9_:]*", e):
        if e[m.end():].lstrip().startswith("(") or m.group(0).lower() in _KEYWORDS:
            continue  # a function call, or an operator word
        names.add(m.group(0))
    return names


def test_metric_names_reads_names_not_functions_or_labels() -> None:
    expr = ('histogram_quantile(0.99, sum by(le, model_name) (rate(a_bucket{x=~"$m", y="z"}'
            '[$__rate_interval]))) / on(name) group_left b_total and c')
    assert metric_names(expr) == {"a_bucket", "b_total", "c"}


def exported_series(tmp: Path) -> set[str]:
    """Every series name the gateway's /metrics declares (# TYPE lines, samples or not)."""

    async def exposition() -> bytes:
        gw, _ = gateway(snapshot(tmp), FakeUpstreams({}))
        return gw.metrics.exposition()[0]

    body = asyncio.run(exposition()).decode()
    out: set[str] = set()
    for name, kind in re.findall(r"^# TYPE (\S+) (\S+)$", body, re.MULTILINE):
        if kind == "histogram":
            out |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
        elif kind == "counter":
            out |= {name if name.endswith("_total") else f"{name}_total"}
        else:
            out.add(name)
    return out


def _exprs(dashboard: dict[str, Any]) -> list[str]:
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    exprs += [v["definition"] for v in dashboard["templating"]["list"] if v["type"] == "query"]
    return exprs


def test_every_query_reads_a_series_poolgate_exports(tmp_path: Path) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    exported = exported_series(tmp_path)
    assert "inference_objective_request_total" in exported
    assert "llm_d_epp_request_ttft_seconds_bucket" in exported
    exprs = _exprs(dashboard)
    assert len(exprs) > 20
    read: set[str] = set()
    for expr in exprs:
        if expr.startswith("label_values("):
            expr = expr[len("label_values("):].split(",")[0]
        names = metric_names(expr)
        assert names, expr
        assert names <= exported, (expr, names - exported)
        assert expr.count("(") == expr.count(")") and expr.count("{") == expr.count("}"), expr
        read |= names
    # What the dashboard is for: rates, errors, TTFT/ITL, tokens, pool queue/KV, ready pods,
    # scheduler latency.
    for series in ("inference_objective_request_total", "inference_objective_request_error_total",
                   "llm_d_epp_request_ttft_seconds_bucket",
                   "llm_d_epp_request_streaming_itl_seconds_bucket",
                   "inference_objective_output_tokens_sum", "inference_pool_average_queue_size",
                   "inference_pool_per_pod_queue_size",
                   "inference_pool_average_kv_cache_utilization", "inference_pool_ready_pods",
                   "inference_extension_scheduler_e2e_duration_seconds_bucket",
                   "inference_extension_plugin_duration_seconds_bucket"):
        assert series in read, series


def test_the_dashboard_is_importable() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] == "poolgate" and dashboard["schemaVersion"] >= 36
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    assert variables == {"datasource", "pool", "model"}
    for panel in dashboard["panels"]:
        pos = panel["gridPos"]
        assert pos["x"] + pos["w"] <= 24, panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        used = set(re.findall(r"\$(\w+)", " ".join(t["expr"] for t in panel["targets"])))
        assert used <= variables | {"__rate_interval"}, panel["title"]


def test_the_scrape_examples_point_at_the_admin_listener() -> None:
    [monitor] = yaml.safe_load_all((MONITORING / "servicemonitor.yaml").read_text())
    plain = list(yaml.safe_load_all((REPO / "deploy" / "gateway" / "gateway.yaml").read_text()))
    [admin] = [o for o in plain if o and o["kind"] == "Service"
               and o["metadata"]["name"] == "poolgate-gateway-admin"]
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= admin["metadata"]["labels"].items()
    assert monitor["metadata"]["namespace"] == admin["metadata"]["namespace"]
    [endpoint] = monitor["spec"]["endpoints"]
    assert endpoint["path"] == "/metrics"
    assert endpoint["port"] in {p["name"] for p in admin["spec"]["ports"]}
    prometheus = yaml.safe_load((MONITORING / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in prometheus["scrape_configs"]}
    assert jobs["poolgate-local"]["static_configs"][0]["targets"] == ["127.0.0.1:9901"]
    [deployment] = [o for o in plain if o and o["kind"] == "Deployment"]
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/path"] == "/metrics"
