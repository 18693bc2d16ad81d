"""The /infer request body: read within the router's size limit, then validated."""

from __future__ import annotations

from dataclasses import dataclass

import orjson
from aiohttp import web

from poolgate.router.errors import ClientDisconnected, InvalidRequest, PayloadTooLarge


async def read_body(request: web.Request, limit: int) -> bytes:
    """The request's body, at most `limit` bytes (the app's `client_max_size` is the same).

    A declared Content-Length over the limit is refused before a byte of the body is read, so a
    client announcing gigabytes gets its 413 at once instead of the router waiting for them.
    """
    declared = request.content_length
    if declared is not None and declared > limit:
        raise PayloadTooLarge(
            f"request body of {declared} bytes is over the router's limit of {limit} bytes "
            "(MAX_BODY_BYTES)", reason="body_too_large")
    try:
        return await request.read()
    except web.HTTPRequestEntityTooLarge:
        # A chunked body declares no length: aiohttp counts it against client_max_size.
        raise PayloadTooLarge(
            f"request body is over the router's limit of {limit} bytes (MAX_BODY_BYTES)",
            reason="body_too_large") from None
    except ConnectionError:
        # aiohttp fails the body's stream this way when the connection is lost mid-body.
        raise ClientDisconnected("closed the connection while sending the request body") from None


@dataclass(frozen=True, slots=True)
class InferRequest:
    """A validated /infer body."""

    prompt: str
    max_tokens: int | None


def parse_infer_body(raw: bytes) -> InferRequest:
    """Validate an /infer body; raises `InvalidRequest` with a message a user can act on."""
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"request body is not valid JSON: {exc}", reason="invalid_json") from None
    if not isinstance(doc, dict):
        raise InvalidRequest("request body must be a JSON object such as {\"prompt\": \"...\"}",
                             reason="invalid_body")
    if "prompt" not in doc:
        raise InvalidRequest("field 'prompt' is required", param="prompt", reason="invalid_body")
    prompt = doc["prompt"]
    if not isinstance(prompt, str):
        raise InvalidRequest(f"field 'prompt' must be a string, got {type(prompt).__name__}",
                             param="prompt", reason="invalid_body")
    max_tokens = doc.get("max_tokens")
    if max_tokens is not None and (
            isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1):
        raise InvalidRequest("field 'max_tokens' must be a positive integer", param="max_tokens",
                             reason="invalid_body")
    return InferRequest(prompt, max_tokens)
