"""Forwarding /infer to an OpenAI-compatible backend (the gateway or a vLLM server)."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson

from poolgate.router.errors import BackendTimeout, BadGateway, RouterError

log = logging.getLogger("poolgate.router")


@dataclass(frozen=True, slots=True)
class Completion:
    """What the router keeps from a `/v1/completions` answer."""

    text: str
    finish_reason: str | None
    usage: dict[str, Any] | None


class BackendError(RouterError):
    """The backend refused the request with its own status (e.g. 400, 404, 429, 503)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message, reason="backend")
        self.status = status


class Backend:
    """One backend base URL: health probing plus `complete()`."""

    def __init__(self, base_url: str, model_ref: str, timeout_s: float,
                 session: aiohttp.ClientSession) -> None:
        self.base_url = base_url
        self.model_ref = model_ref
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)
        self.session = session
        self.healthy = False
        self.reason = "backend not checked yet"

    async def check(self) -> None:
        """Probe `GET /v1/models`: healthy when it answers 200 and lists MODEL_REF."""
        try:
            async with self.session.get(f"{self.base_url}/v1/models",
                                        timeout=aiohttp.ClientTimeout(total=2)) as resp:
                body = await resp.read()
                if resp.status != 200:
                    self._set(False, f"backend {self.base_url}/v1/models answered {resp.status}")
                    return
            ids = {m.get("id") for m in orjson.loads(body).get("data", []) if isinstance(m, dict)}
        except asyncio.CancelledError:
            raise
        except (aiohttp.ClientError, TimeoutError, ValueError, AttributeError) as exc:
            self._set(False, f"backend {self.base_url} unreachable: {type(exc).__name__} {exc}")
            return
        if self.model_ref not in ids:
            self._set(False, f"backend {self.base_url} does not serve model {self.model_ref!r}")
            return
        self._set(True, "backend healthy")

    def _set(self, healthy: bool, reason: str) -> None:
        if healthy != self.healthy:
            log.log(logging.INFO if healthy else logging.WARNING, "%s", reason)
        self.healthy = healthy
        self.reason = reason

    async def complete(self, prompt: str, max_tokens: int | None) -> Completion:
        """Run `prompt` through `/v1/completions` for MODEL_REF; raises a `RouterError` on failure."""
        payload: dict[str, Any] = {"model": self.model_ref, "prompt": prompt}
        if max_tokens is not None:
            payload["max_tokens"] = max_tokens
        try:
            async with self.session.post(f"{self.base_url}/v1/completions",
                                         data=orjson.dumps(payload), timeout=self.timeout,
                                         headers={"content-type": "application/json"}) as resp:
                body = await resp.read()
                status = resp.status
        except asyncio.CancelledError:
            raise
        except TimeoutError:
            raise BackendTimeout(f"backend {self.base_url} did not answer within "
                                 f"{self.timeout.total} s", reason="backend_timeout") from None
        except aiohttp.ClientError as exc:
            raise BadGateway(f"backend {self.base_url} failed: {type(exc).__name__}",
                             reason="backend_unreachable") from None
        if status != 200:
            raise _backend_refusal(status, body)
        try:
            doc = orjson.loads(body)
            choice = doc["choices"][0]
            text = choice["text"]
            if not isinstance(text, str):
                raise TypeError("text is not a string")
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise BadGateway(f"backend answered an unusable completion: {exc}",
                             reason="backend_bad_response") from None
        usage = doc.get("usage")
        return Completion(text, choice.get("finish_reason"),
                          usage if isinstance(usage, dict) else None)


def _backend_refusal(status: int, body: bytes) -> RouterError:
    try:
        message = str(orjson.loads(body)["error"]["message"])
    except (ValueError, KeyError, TypeError):
        message = body.decode(errors="replace")[:300]
    text = f"backend answered {status}: {message}"
    if 400 <= status < 500 or status == 503:
        # The client's own mistake, or the backend's overload signal: pass the status on.
        return BackendError(status, text)
    return BadGateway(text, reason="backend_error")
