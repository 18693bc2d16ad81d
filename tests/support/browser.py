"""A real headless Chromium (Debian's `chromium`) driven over the Chrome DevTools Protocol, for
the status page's browser tests.

A small CDP client over aiohttp's websocket: Chromium starts with `--remote-debugging-port=0`
and writes the port it chose to `DevToolsActivePort` in its fresh profile directory; the client
attaches to one page target with a flat session and collects everything that reports an error
on the page's console (`console.error`, uncaught exceptions, and the browser's own log entries
such as a failed load or a Content-Security-Policy violation). The process is started through
the test's `ProcessGroup`, so it is stopped by PID at teardown whatever happens.

A missing chromium fails the test with a clear message rather than skipping it: `make os-deps`
installs it, and a silently skipped browser test would prove nothing.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import shutil
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.support.processes import ProcessGroup, ServerProcess

# As the machine note's probe ran it: no sandbox (root in CI), no GPU, and nothing that reaches
# out to Google's services (the network is closed: those connections fail, many at a time).
CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage", "--disable-extensions", "--mute-audio", "--hide-scrollbars",
    "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0",
)


def chromium_binary() -> str:
    """The chromium executable; fails the test when it is not installed."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    pytest.fail("chromium is not installed (needed for the status page's browser test): "
                "run `make os-deps` (apt-get install chromium)")


class CdpError(RuntimeError):
    """A DevTools command answered with an error."""


@dataclass
class Page:
    """One page target, attached with a flat session."""

    browser: Browser
    session_id: str
    console_errors: list[str] = field(default_factory=list)
    _load: asyncio.Event = field(default_factory=asyncio.Event)

    async def send(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        return await self.browser.send(method, params, session_id=self.session_id)

    def on_event(self, method: str, params: dict[str, Any]) -> None:
        if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            args = params.get("args", [])
            self.console_errors.append("console.error: " + " ".join(
                str(a.get("value", a.get("description", ""))) for a in args))
        elif method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            exc = details.get("exception", {})
            self.console_errors.append(
                f"uncaught: {exc.get('description') or details.get('text')}")
        elif method == "Log.entryAdded":
            entry = params.get("entry", {})
            if entry.get("level") == "error":
                self.console_errors.append(
                    f"log ({entry.get('source')}): {entry.get('text')} {entry.get('url', '')}")
        elif method == "Page.loadEventFired":
            self._load.set()

    async def goto(self, url: str, timeout: float = 20.0) -> None:
        """Navigate and wait for the load event."""
        self._load.clear()
        result = await self.send("Page.navigate", {"url": url})
        if result.get("errorText"):
            raise CdpError(f"navigating to {url}: {result['errorText']}")
        async with asyncio.timeout(timeout):
            await self._load.wait()

    async def evaluate(self, expression: str) -> Any:
        """The JSON value of `expression` in the page (promises awaited)."""
        result = await self.send("Runtime.evaluate", {
            "expression": expression, "returnByValue": True, "awaitPromise": True})
        if "exceptionDetails" in result:
            raise CdpError(f"{expression!r} threw: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def wait_for(self, expression: str, timeout: float = 20.0,
                       interval: float = 0.1) -> Any:
        """Poll `expression` until it is truthy; its value, or a TimeoutError naming it."""
        deadline = time.monotonic() + timeout
        while True:
            value = await self.evaluate(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(f"{expression!r} still {value!r} after {timeout}s")
            await asyncio.sleep(interval)

    async def set_viewport(self, width: int, height: int) -> None:
        await self.send("Emulation.setDeviceMetricsOverride", {
            "width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})

    async def screenshot(self, path: Path, *, full_page: bool = True) -> None:
        """A PNG of the page (the whole document when `full_page`)."""
        params: dict[str, Any] = {"format": "png"}
        if full_page:
            metrics = await self.send("Page.getLayoutMetrics")
            size = metrics["cssContentSize"]
            params.update(captureBeyondViewport=True, clip={
                "x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1})
        result = await self.send("Page.captureScreenshot", params)
        await asyncio.to_thread(path.write_bytes, base64.b64decode(result["data"]))


@dataclass
class Browser:
    """A running Chromium and its DevTools websocket."""

    process: ServerProcess
    ws: aiohttp.ClientWebSocketResponse
    _pending: dict[int, asyncio.Future[dict[str, Any]]] = field(default_factory=dict)
    _pages: dict[str, Page] = field(default_factory=dict)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    async def send(self, method: str, params: dict[str, Any] | None = None, *,
                   session_id: str | None = None, timeout: float = 30.0) -> dict[str, Any]:
        msg_id = next(self._ids)
        message: dict[str, Any] = {"id": msg_id, "method": method, "params": params or {}}
        if session_id is not None:
            message["sessionId"] = session_id
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[msg_id] = future
        await self.ws.send_json(message)
        async with asyncio.timeout(timeout):
            return await future

    async def read_loop(self) -> None:
        async for msg in self.ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                continue
            data = msg.json()
            if "id" in data:
                future = self._pending.pop(data["id"], None)
                if future is None or future.done():
                    continue
                if "error" in data:
                    future.set_exception(CdpError(str(data["error"])))
                else:
                    future.set_result(data.get("result", {}))
            elif "method" in data:
                page = self._pages.get(data.get("sessionId", ""))
                if page is not None:
                    page.on_event(data["method"], data.get("params", {}))
        for future in self._pending.values():
            if not future.done():
                future.set_exception(CdpError("the browser closed the DevTools connection"))

    async def new_page(self) -> Page:
        """A blank page with its console, log and load events reported."""
        target = await self.send("Target.createTarget", {"url": "about:blank"})
        attached = await self.send("Target.attachToTarget",
                                   {"targetId": target["targetId"], "flatten": True})
        page = Page(self, attached["sessionId"])
        self._pages[page.session_id] = page
        for domain in ("Runtime", "Log", "Page"):
            await page.send(f"{domain}.enable")
        return page


@contextlib.asynccontextmanager
async def chromium(procs: ProcessGroup, profile_dir: Path,
                   timeout: float = 30.0) -> AsyncIterator[Browser]:
    """Start headless Chromium with a fresh profile in `profile_dir` and connect to it."""
    binary = chromium_binary()
    await asyncio.to_thread(profile_dir.mkdir, parents=True, exist_ok=True)
    proc = procs.start([binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile_dir}",
                        "about:blank"])
    port_file = profile_dir / "DevToolsActivePort"
    deadline = time.monotonic() + timeout
    while not port_file.is_file() or len(port_file.read_text().splitlines()) < 2:
        if proc.proc.poll() is not None:
            pytest.fail(f"chromium exited with {proc.proc.returncode}:\n{proc.output()}")
        if time.monotonic() > deadline:
            pytest.fail(f"chromium wrote no DevToolsActivePort in {timeout}s:\n{proc.output()}")
        await asyncio.sleep(0.05)
    port, path = port_file.read_text().splitlines()[:2]
    async with aiohttp.ClientSession() as session, session.ws_connect(
            f"ws://127.0.0.1:{port}{path}", max_msg_size=0) as ws:
        browser = Browser(proc, ws)
        reader = asyncio.create_task(browser.read_loop())
        try:
            yield browser
        finally:
            with contextlib.suppress(Exception):
                await browser.send("Browser.close", timeout=5.0)
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
    # Browser.close ends the process; the group's stop (SIGTERM, then SIGKILL) covers the rest.
    deadline = time.monotonic() + 10
    while proc.proc.poll() is None and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    proc.stop()
