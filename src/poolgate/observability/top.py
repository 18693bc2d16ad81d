"""`poolgate top`: the status page's view in a terminal, drawn with rich from the admin
listener's `/api/live` document (see `poolgate.proxy.live_view`).

`render` is a pure function of one document, so a recorded document renders the same frame in
a test; `run_top` polls and redraws until Ctrl-C, or prints one frame with `once`.
"""

from __future__ import annotations

import json
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from typing import Any

from rich.console import Console, Group, JustifyMethod, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

HISTORY_SECONDS = 60  # the sparklines' span
PICKS_SHOWN = 6
NOTE_CHARS = 60  # an endpoint's last error, cut to this many characters
_SPARKS = "▁▂▃▄▅▆▇█"
_STATE_STYLE = {"ok": "green", "stale": "yellow", "unknown": "yellow", "unreachable": "bold red",
                "unhealthy": "bold red", "ejected": "bold red"}
_BREAKER_STYLE = {"closed": "green", "pending": "yellow", "open": "bold red"}


class FetchError(RuntimeError):
    """The admin listener could not be read."""


def fetch(admin: str, timeout: float = 3.0) -> dict[str, Any]:
    """The `/api/live` document of the gateway whose admin listener is at `admin`."""
    url = admin.rstrip("/") + f"/api/live?seconds={HISTORY_SECONDS}"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            doc: dict[str, Any] = json.loads(resp.read())
    except urllib.error.HTTPError as e:
        raise FetchError(f"{url}: HTTP {e.code} (is this poolgate's admin listener?)") from None
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise FetchError(f"{url}: {reason}") from None
    except ValueError as e:
        raise FetchError(f"{url}: not a JSON document ({e})") from None
    return doc


# -- formatting ----------------------------------------------------------------------------------

def _num(x: float | None, digits: int = 0) -> str:
    return "–" if x is None else f"{x:.{digits}f}"


def _rate(x: float | None) -> str:
    if x is None:
        return "–"
    return "0" if x == 0 else (f"{x:.2f}" if x < 10 else f"{x:.1f}")


def _seconds(s: float | None) -> str:
    if s is None:
        return "–"
    return f"{round(s * 1000)} ms" if s < 1 else f"{s:.2f} s"


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{round(x * 100)}%"


def _age(s: float) -> str:
    if s < 1:
        return "now"
    return f"{round(s)}s ago" if s < 60 else f"{int(s // 60)}m{round(s % 60):02d}s ago"


def sparkline(values: Sequence[float | None]) -> str:
    """One character per value, scaled to the largest; a space where there is no value."""
    top = max((v for v in values if v is not None), default=0.0)
    out = []
    for v in values:
        if v is None:
            out.append(" ")
        elif top <= 0:
            out.append(_SPARKS[0])
        else:
            out.append(_SPARKS[min(len(_SPARKS) - 1, int(v / top * (len(_SPARKS) - 1) + 0.5))])
    return "".join(out)


def _bar(fraction: float | None, width: int = 8) -> Text:
    if fraction is None:
        return Text("–")
    filled = round(max(0.0, min(1.0, fraction)) * width)
    style = "red" if fraction >= 0.9 else ("yellow" if fraction >= 0.7 else "cyan")
    text = Text("█" * filled, style=style)
    text.append("░" * (width - filled), style="dim")
    text.append(f" {_pct(fraction):>4}")
    return text


# -- the frame -----------------------------------------------------------------------------------

def render(doc: Mapping[str, Any], admin: str) -> RenderableType:
    """One frame of `poolgate top` for the `/api/live` document `doc` read from `admin`."""
    parts: list[RenderableType] = [_header(doc, admin), _traffic(doc)]
    for pool in doc["pools"]:
        parts.append(_pool(pool))
    if doc.get("backends"):
        parts.append(Text("Service backends", style="bold"))
        parts.extend(_breaker(b) for b in doc["backends"])
    if not doc["pools"] and not doc.get("backends"):
        parts.append(Text("No InferencePool configured.", style="dim"))
    return Group(*parts)


def _header(doc: Mapping[str, Any], admin: str) -> Text:
    s10, s60 = doc["summary"]["last_10s"], doc["summary"]["last_60s"]
    endpoints = [ep for pool in doc["pools"] for ep in pool["endpoints"]]
    ok = sum(1 for ep in endpoints if ep["state"] == "ok")
    text = Text("poolgate top", style="bold")
    text.append(f"  {admin}  ", style="dim")
    if doc["ready"]:
        text.append("ready", style="bold green")
    else:
        text.append(f"not ready: {doc['not_ready']}", style="bold red")
    text.append(f"  {time.strftime('%H:%M:%S', time.localtime(doc['time']))}\n", style="dim")
    fields = [
        ("req/s (10s)", _rate(s10["rate"]), ""),
        ("5xx/s (10s)", _rate(s10["error_rate"]), "red" if s10["error_rate"] else ""),
        ("429/s (10s)", _rate(s10["throttled_rate"]), "yellow" if s10["throttled_rate"] else ""),
        ("TTFT p50/p95 (60s)", f"{_seconds(s60['ttft_p50'])} / {_seconds(s60['ttft_p95'])}", ""),
        ("in flight", str(doc["active_requests"]), ""),
        ("endpoints ok", f"{ok}/{len(endpoints)}", "red" if ok < len(endpoints) else ""),
    ]
    for i, (label, value, style) in enumerate(fields):
        text.append(("  " if i else "") + label + " ", style="dim")
        text.append(value, style=style or "bold")
    return text


def _traffic(doc: Mapping[str, Any]) -> Table:
    t = doc["traffic"]
    table = Table.grid(padding=(0, 1))
    table.add_column(style="dim", no_wrap=True)
    table.add_column(no_wrap=True)
    table.add_column(style="dim", no_wrap=True)
    n = HISTORY_SECONDS
    requests, errors, p95 = t["requests"][-n:], t["errors"][-n:], t["ttft_p95"][-n:]
    table.add_row("requests/s", Text(sparkline(requests), style="cyan"),
                  f"max {max(requests, default=0)}/s, last {len(requests)} s")
    table.add_row("5xx/s", Text(sparkline(errors), style="red"),
                  f"{sum(errors)} in {len(errors)} s")
    known = [v for v in p95 if v is not None]
    table.add_row("TTFT p95", Text(sparkline(p95), style="magenta"),
                  f"max {_seconds(max(known))}" if known else "no streamed request")
    return table


def _pool(pool: Mapping[str, Any]) -> RenderableType:
    endpoints = pool["endpoints"]
    ok = sum(1 for ep in endpoints if ep["state"] == "ok")
    title = Text(f"InferencePool {pool['key']}", style="bold")
    title.append(f"  profile {pool['profile']}  {ok} of {len(endpoints)} endpoints ok",
                 style="dim")
    parts: list[RenderableType] = [Text(""), title]
    if pool["regions"]:
        parts.append(_regions(pool["regions"]))
    parts.append(_endpoints(endpoints))
    parts.append(_picks(pool))
    parts.extend(_breaker(b) for b in pool["backends"])
    return Group(*parts)


def _regions(regions: Sequence[Mapping[str, Any]]) -> Text:
    text = Text("share of requests (60s): ", style="dim")
    for i, r in enumerate(regions):
        if i:
            text.append("  ")
        text.append(r["region"], style="bold")
        text.append(" ")
        text.append_text(_bar(r["share"], 10))
        text.append(f" {r['available']}/{r['endpoints']} ok", style="dim")
    return text


def _endpoints(endpoints: Sequence[Mapping[str, Any]]) -> Table:
    table = Table(box=None, pad_edge=False, header_style="dim", expand=False)
    columns: tuple[tuple[str, JustifyMethod], ...] = (
        ("state", "left"), ("endpoint", "left"), ("placement", "left"), ("queued", "right"),
        ("running", "right"), ("KV cache", "left"), ("in flight", "right"),
        ("awaiting 1st", "right"), ("adapters", "left"), ("req/s", "right"), ("note", "left"))
    # Numbers and the endpoint keep their width in a narrow terminal; the placement, the
    # adapters and the note give theirs up first.
    widest = max((len(ep["address"]) for ep in endpoints), default=8)
    minimum = {"state": len("unreachable"), "endpoint": widest, "KV cache": 13,
               "placement": 9, "adapters": 8, "note": 4}
    for name, justify in columns:
        table.add_column(name, justify=justify, no_wrap=True, overflow="ellipsis",
                         min_width=minimum.get(name, len(name)),
                         max_width=40 if name == "note" else None)
    for ep in endpoints:
        placement = " / ".join(p for p in (ep["region"], ep["cluster"]) if p) or "–"
        adapters = " ".join([*ep["lora_running"], *(f"{a} (waiting)" for a in ep["lora_waiting"])])
        if ep["max_lora"] is not None:
            adapters = f"{adapters} {len(ep['lora_running'])}/{ep['max_lora']}".strip()
        adapters = adapters or "–"
        note = ep["last_error"] or ""
        if len(note) > NOTE_CHARS:
            note = note[:NOTE_CHARS - 1] + "…"
        if not note and ep["metrics_age"] is not None and not ep["metrics_fresh"]:
            note = f"metrics {round(ep['metrics_age'])} s old"
        table.add_row(Text(ep["state"], style=_STATE_STYLE.get(ep["state"], "")), ep["address"],
                      placement, _num(ep["waiting"]), _num(ep["running"]), _bar(ep["kv_usage"]),
                      str(ep["in_flight"]), str(ep["awaiting_first_token"]), adapters,
                      _rate(ep["rate"]), Text(note, style="red"))
    return table


def _picks(pool: Mapping[str, Any]) -> RenderableType:
    picks = pool["picks"][:PICKS_SHOWN]
    if not picks:
        return Text(f"recent picks: none yet ({pool['picks_total']} since start)", style="dim")
    table = Table(box=None, pad_edge=False, header_style="dim",
                  title=f"recent picks ({pool['picks_total']} since start)",
                  title_justify="left", title_style="dim")
    for name in ("when", "model", "endpoint", "decided by", "margin", "runner-up"):
        table.add_column(name, no_wrap=True, justify="right" if name == "margin" else "left")
    for p in picks:
        why = Text(p["decided_by"], style="bold")
        if p["reason"] != "highest weighted score":
            why.append(f" {p['reason']}", style="dim")
        table.add_row(_age(p["age"]), p["model"] + (" (LoRA)" if p["lora"] else ""),
                      p["endpoint"], why, f"+{p['margin']:.2f}" if p["margin"] else "–",
                      p["runner_up"] or "–")
    return table


def _breaker(backend: Mapping[str, Any]) -> Text:
    b = backend["breaker"]
    text = Text("breaker ", style="dim")
    text.append(b["state"], style=_BREAKER_STYLE.get(b["state"], ""))
    overflows = sum(b["overflows"].values())
    text.append(f"  active {b['active']}/{b['max_parallel_requests']}"
                f"  pending {b['pending']}/{b['max_pending_requests']}"
                f"  connections {b['connections']}/{b['max_connections']}"
                f"  overflows {overflows}", style="")
    if backend.get("ejected"):
        text.append("  ejected: " + ", ".join(backend["ejected"]), style="red")
    text.append(f"  {backend['key']}", style="dim")
    return text


# -- the command ---------------------------------------------------------------------------------

def run_top(admin: str, *, interval: float = 1.0, once: bool = False,
            console: Console | None = None) -> int:
    """Draw the view of the gateway at `admin` every `interval` seconds until Ctrl-C (exit 0),
    or print one frame with `once` (exit 1 when the admin listener cannot be read)."""
    if console is None:
        console = Console(width=None if sys.stdout.isatty() else 160)
    if once:
        try:
            doc = fetch(admin)
        except FetchError as e:
            Console(stderr=True).print(f"poolgate top: {e}", style="red", highlight=False,
                                       soft_wrap=True)
            return 1
        console.print(render(doc, admin), highlight=False)
        return 0
    try:
        with Live(console=console, screen=console.is_terminal, auto_refresh=False) as live:
            while True:
                try:
                    frame: RenderableType = render(fetch(admin), admin)
                except FetchError as e:
                    frame = Text(f"poolgate top: {e} (retrying every {interval:g} s)",
                                 style="red")
                live.update(frame, refresh=True)
                time.sleep(interval)
    except KeyboardInterrupt:
        return 0
