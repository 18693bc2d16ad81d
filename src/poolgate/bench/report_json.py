"""The versioned JSON report (`--json PATH`): config, per-run summaries, optionally raw records."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from poolgate import __version__
from poolgate.bench.config import BenchConfig
from poolgate.bench.errors import BenchError
from poolgate.bench.result import BenchResult

SCHEMA = "poolgate.bench"
SCHEMA_VERSION = 1

# Header values that must not end up in a report file.
_SECRET_HEADERS = frozenset({"authorization", "api-key", "x-api-key", "proxy-authorization", "cookie"})


def config_to_dict(config: BenchConfig) -> dict[str, Any]:
    """The JSON form of a config (schema: docs/bench.md, `config`)."""
    wl, load = config.workload, config.load
    return {
        "workload": {
            "kind": wl.kind,
            "seed": wl.seed,
            "model": wl.model,
            "models": {m.name: m.weight for m in wl.models},
            "groups": wl.groups,
            "prompts_per_group": wl.prompts_per_group,
            "system_prompt_len": wl.system_prompt_len,
            "group_zipf": wl.group_zipf,
            "question_len": str(wl.question_len),
            "input_len": str(wl.input_len),
            "output_len": str(wl.output_len),
        },
        "load": {
            "arrival": load.arrival,
            "rate": load.rate,
            "concurrency": load.concurrency,
            "duration": load.duration,
            "requests": load.requests,
            "warmup": load.warmup,
        },
        "api": config.api,
        "stream": config.stream,
        "ignore_eos": config.ignore_eos,
        "extra_body": dict(config.extra_body),
        "headers": {
            k: ("<redacted>" if k.lower() in _SECRET_HEADERS else v) for k, v in config.headers
        },
        "timeout": config.timeout,
        "scrape_urls": list(config.scrape_urls),
        "scrape_interval": config.scrape_interval,
        "cpu_children": config.cpu_children,
    }


def run_to_dict(result: BenchResult, *, raw: bool = False) -> dict[str, Any]:
    """The JSON form of one run (schema: docs/bench.md, `runs[]`)."""
    t = result.target
    out: dict[str, Any] = {
        "name": t.name,
        "url": t.url,
        "endpoint": t.endpoint(result.config.api),
        "cpu_pid": t.cpu_pid,
        "started_at": result.started_at,
        "warmup_requests": result.warmup_requests,
        "summary": result.summary().to_dict(),
    }
    if raw:
        out["requests"] = [r.to_dict() for r in result.records]
    return out


def report_document(results: Sequence[BenchResult], *, raw: bool = False) -> dict[str, Any]:
    """The whole report; every run shares the first run's config (a comparison uses one config)."""
    if not results:
        raise BenchError("no results to report")
    return {
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "poolgate_version": __version__,
        "created_at": datetime.now(UTC).isoformat(),
        "config": config_to_dict(results[0].config),
        "runs": [run_to_dict(r, raw=raw) for r in results],
    }


def write_json(results: Sequence[BenchResult], path: str | Path, *, raw: bool = False) -> None:
    """Write the report to `path` (parent directories are created)."""
    target = Path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(orjson.dumps(report_document(results, raw=raw), option=orjson.OPT_INDENT_2))
    except OSError as e:
        raise BenchError(f"cannot write the JSON report to {target}: {e.strerror or e}") from None


def read_json(path: str | Path) -> dict[str, Any]:
    """Load a report written by `write_json`, checking its schema name and version."""
    try:
        doc = orjson.loads(Path(path).read_bytes())
    except OSError as e:
        raise BenchError(f"cannot read {path}: {e.strerror or e}") from None
    except orjson.JSONDecodeError as e:
        raise BenchError(f"{path} is not JSON: {e}") from None
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA:
        raise BenchError(f"{path} is not a poolgate bench report")
    if doc.get("schema_version") != SCHEMA_VERSION:
        raise BenchError(
            f"{path} has report schema version {doc.get('schema_version')}, this poolgate reads {SCHEMA_VERSION}"
        )
    return doc
