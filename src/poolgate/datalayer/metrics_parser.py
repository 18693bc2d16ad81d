"""Reading `Signals` out of a model server's Prometheus text page.

A targeted scanner, not a full exposition parser: a vLLM page is about 56 KB and 650 lines, and
the gateway reads one per endpoint every 50 ms. prometheus-client's parser takes about 9.5 ms
for such a page; finding only the needed series with `str.find` takes well under 0.1 ms (see
docs/scheduling.md for the measurement). Only sample lines of the names in `metric_names` are
looked at; `# HELP` / `# TYPE` lines and every other metric are skipped unparsed.
"""

from __future__ import annotations

import math
import re

from poolgate.datalayer.metric_names import (
    BLOCK_SIZE_LABEL,
    LORA_MAX_LABEL,
    LORA_RUNNING_LABEL,
    LORA_WAITING_LABEL,
    NUM_BLOCKS_LABEL,
    SERVERS,
    MetricNames,
)
from poolgate.datalayer.signals import Signals

_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"')
_UNESCAPES = {"\\\\": "\\", '\\"': '"', "\\n": "\n"}
_ESCAPE = re.compile(r'\\[\\"n]')


class MetricsParseError(ValueError):
    """The page is not a model server's metrics page poolgate can read (says which name is missing)."""


def _series(text: str, name: str) -> list[str]:
    """The rest of every sample line of metric `name`: `{labels} value [ts]` or ` value [ts]`."""
    out: list[str] = []
    n = len(name)
    size = len(text)
    if text.startswith(name):
        i = 0
    else:
        j = text.find("\n" + name)
        i = j + 1 if j >= 0 else -1
    while i >= 0:
        after = i + n
        end = text.find("\n", after)
        if end < 0:
            end = size
        # The name must end here: `vllm:num_requests_waiting_by_reason` is another metric.
        if after < size and text[after] in "{ \t":
            out.append(text[after:end])
        j = text.find("\n" + name, end)
        i = j + 1 if j >= 0 else -1
    return out


def _value(rest: str) -> float | None:
    """The sample value of a line remainder, or None when it is missing or not finite."""
    brace = rest.rfind("}") if rest.startswith("{") else -1
    fields = rest[brace + 1 :].split()
    if not fields:
        return None
    try:
        value = float(fields[0])
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _labels(rest: str) -> dict[str, str]:
    """The labels of a line remainder, with Prometheus escapes undone."""
    if not rest.startswith("{"):
        return {}
    body = rest[1 : rest.rfind("}")]
    return {k: _ESCAPE.sub(lambda m: _UNESCAPES[m.group(0)], v) for k, v in _LABEL.findall(body)}


def _first_present(text: str, names: tuple[str, ...]) -> list[str]:
    """The series of the first name in `names` that has any sample line."""
    for name in names:
        found = _series(text, name)
        if found:
            return found
    return []


def _values(lines: list[str]) -> list[float]:
    return [v for v in map(_value, lines) if v is not None]


def _adapters(value: str) -> frozenset[str]:
    return frozenset(a for a in (s.strip() for s in value.split(",")) if a)


def _int_label(labels: dict[str, str], key: str) -> int | None:
    raw = labels.get(key)
    if raw is None:
        return None
    try:
        return int(float(raw))
    except ValueError:
        # vLLM writes "None" for settings that do not apply.
        return None


def detect_server(text: str) -> MetricNames:
    """The kind of model server that wrote `text`, from which queue metric it has."""
    for names in SERVERS:
        if _series(text, names.waiting[0]):
            return names
    wanted = ", ".join(n.waiting[0] for n in SERVERS)
    raise MetricsParseError(f"no queue metric on the page (looked for {wanted})")


def parse_signals(text: str, scraped_at: float, names: MetricNames | None = None) -> Signals:
    """The `Signals` in one metrics page scraped at monotonic time `scraped_at`.

    `names` skips server detection when the caller already knows the kind. Series of the same
    metric (several engines of one data-parallel server) are summed for queue counts; KV usage
    takes the highest engine, because a request may land on the fullest one. Raises
    `MetricsParseError` when a queue or KV metric is missing.
    """
    kind = names if names is not None else detect_server(text)
    waiting = _values(_first_present(text, kind.waiting))
    running = _values(_first_present(text, kind.running))
    kv = _values(_first_present(text, kind.kv_usage))
    for label, found, candidates in (
        ("waiting", waiting, kind.waiting),
        ("running", running, kind.running),
        ("kv_usage", kv, kind.kv_usage),
    ):
        if not found:
            raise MetricsParseError(
                f"{kind.server} page has no {label} metric (looked for {', '.join(candidates)})"
            )

    lora_running: frozenset[str] = frozenset()
    lora_waiting: frozenset[str] = frozenset()
    max_lora: int | None = None
    if kind.lora_info is not None:
        newest: tuple[float, str] | None = None
        # Stale label combinations stay on the page; the series stamped last is the current one.
        for rest in _series(text, kind.lora_info):
            stamp = _value(rest)
            if stamp is not None and (newest is None or stamp > newest[0]):
                newest = (stamp, rest)
        if newest is not None:
            labels = _labels(newest[1])
            lora_running = _adapters(labels.get(LORA_RUNNING_LABEL, ""))
            lora_waiting = _adapters(labels.get(LORA_WAITING_LABEL, ""))
            max_lora = _int_label(labels, LORA_MAX_LABEL)

    block_size: int | None = None
    num_blocks: int | None = None
    if kind.cache_config is not None:
        config = _series(text, kind.cache_config)
        if config:
            labels = _labels(config[0])
            block_size = _int_label(labels, BLOCK_SIZE_LABEL)
            num_blocks = _int_label(labels, NUM_BLOCKS_LABEL)

    return Signals(
        waiting=round(sum(waiting)),
        running=round(sum(running)),
        kv_usage=min(1.0, max(0.0, max(kv))),
        lora_running=lora_running,
        lora_waiting=lora_waiting,
        max_lora=max_lora,
        block_size=block_size,
        num_blocks=num_blocks,
        scraped_at=scraped_at,
    )
