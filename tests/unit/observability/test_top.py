"""`poolgate top`'s frame, rendered from a recorded `/api/live` document
(tests/fixtures/status/live.json: the status page's fleet test, one replica of three killed)."""

from __future__ import annotations

import copy
import http.server
import io
import json
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from poolgate.observability import top
from poolgate.observability.top import FetchError, fetch, render, run_top, sparkline

RECORDED = Path(__file__).resolve().parents[2] / "fixtures" / "status" / "live.json"
ADMIN = "http://127.0.0.1:9901"


@pytest.fixture
def doc() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(RECORDED.read_text())
    return loaded


def _text(doc: dict[str, Any], width: int = 160) -> str:
    console = Console(record=True, width=width, color_system=None, file=io.StringIO())
    console.print(render(doc, ADMIN))
    return console.export_text()


def test_the_frame_shows_the_gateway_its_endpoints_and_what_decided_the_picks(
        doc: dict[str, Any]) -> None:
    text = _text(doc)
    pool = doc["pools"][0]
    assert f"poolgate top  {ADMIN}  ready" in text
    assert "endpoints ok 2/3" in text
    assert "req/s (10s) 6.50" in text
    lines = text.splitlines()
    for ep in pool["endpoints"]:
        [row] = [line for line in lines if ep["address"] in line and line.startswith(ep["state"])]
        assert ep["region"] in row
    assert "scrape: GET http://" in text  # the killed replica's last error
    assert "us-east" in text and "eu-west" in text and "95%" in text
    assert f"recent picks ({pool['picks_total']} since start)" in text
    assert pool["picks"][0]["decided_by"] in text
    assert "breaker closed" in text
    assert "InferencePool default/vllm-llama2-7b-pool" in text


def test_a_gateway_that_is_not_ready_says_why(doc: dict[str, Any]) -> None:
    waiting = copy.deepcopy(doc)
    waiting.update(ready=False, not_ready="waiting for the first metrics scrape of 10.0.0.1:8000")
    assert "not ready: waiting for the first metrics scrape of 10.0.0.1:8000" in _text(waiting)


def test_a_narrow_terminal_still_shows_every_endpoint(doc: dict[str, Any]) -> None:
    text = _text(doc, width=100)
    for ep in doc["pools"][0]["endpoints"]:
        assert ep["address"] in text


def test_an_empty_gateway_renders(doc: dict[str, Any]) -> None:
    empty = copy.deepcopy(doc)
    empty.update(pools=[], backends=[])
    assert "No InferencePool configured." in _text(empty)


@pytest.mark.parametrize(("values", "expected"), [
    pytest.param([0, 1, 2, 4], "▁▃▅█", id="scaled-to-the-largest"),
    pytest.param([0, 0], "▁▁", id="all-zero"),
    pytest.param([None, 0.5, None], " █ ", id="gaps"),
    pytest.param([], "", id="empty"),
])
def test_sparkline(values: list[float | None], expected: str) -> None:
    assert sparkline(values) == expected


def test_once_prints_one_frame(doc: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(top, "fetch", lambda admin: doc)
    console = Console(record=True, width=160, color_system=None, file=io.StringIO())
    assert run_top(ADMIN, once=True, console=console) == 0
    assert "endpoints ok 2/3" in console.export_text()


# -- reading the admin listener ------------------------------------------------------------------

@pytest.fixture
def admin_server() -> Iterator[tuple[str, dict[str, tuple[int, bytes]]]]:
    """An HTTP server answering each path from a table (status, body)."""
    answers: dict[str, tuple[int, bytes]] = {}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            status, body = answers.get(self.path.partition("?")[0], (404, b"no"))
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", answers
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_fetch_reads_the_live_document(admin_server: tuple[str, dict[str, tuple[int, bytes]]],
                                       doc: dict[str, Any]) -> None:
    url, answers = admin_server
    answers["/api/live"] = (200, json.dumps(doc).encode())
    assert fetch(url + "/")["pools"] == doc["pools"]


@pytest.mark.parametrize(("answer", "message"), [
    pytest.param(None, "HTTP 404 (is this poolgate's admin listener?)", id="not-poolgate"),
    pytest.param((200, b"<html>"), "not a JSON document", id="not-json"),
])
def test_fetch_says_what_went_wrong(admin_server: tuple[str, dict[str, tuple[int, bytes]]],
                                    answer: tuple[int, bytes] | None, message: str) -> None:
    url, answers = admin_server
    if answer is not None:
        answers["/api/live"] = answer
    with pytest.raises(FetchError, match=re.escape(message)):
        fetch(url)


def test_once_against_nothing_fails_with_the_reason(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_top("http://127.0.0.1:1", once=True) == 1
    assert "poolgate top: http://127.0.0.1:1/api/live?seconds=60:" in capsys.readouterr().err
