"""The HTTP surface of one replica: routes, vLLM's error shapes, misc and LoRA endpoints."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

import orjson
from aiohttp import web
from pydantic import ValidationError

from poolgate.sim.errors import ApiError, validation_error
from poolgate.sim.faults import FaultSettings
from poolgate.sim.generation import JSON_HEADERS, ConnectionCut, handle_generation
from poolgate.sim.metrics import CONTENT_TYPE
from poolgate.sim.protocol import (
    ChatRequest,
    CompletionRequest,
    LoadLoraRequest,
    UnloadLoraRequest,
    parse_json,
    validate,
)
from poolgate.sim.protocol import (
    _errors as _validation_errors,
)
from poolgate.sim.replica import Replica
from poolgate.sim.responses import VLLM_VERSION, model_card
from poolgate.sim.tokenization import (
    Detokenize,
    Vocabulary,
    detokenize,
    model_info,
    render_chat_request,
    render_completion_request,
    server_info,
    tokenize,
)

log = logging.getLogger("poolgate.sim")

REPLICA = web.AppKey("replica", Replica)
VOCAB = web.AppKey("vocabulary", Vocabulary)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _json(status: int, body: object) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(body), headers=JSON_HEADERS)


@web.middleware
async def vllm_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Render every error as vLLM does; never a traceback."""
    try:
        return await handler(request)
    except ApiError as e:
        return web.Response(status=e.status, body=e.body(), headers=JSON_HEADERS)
    except web.HTTPNotFound:
        return _json(404, {"detail": "Not Found"})
    except web.HTTPMethodNotAllowed as e:
        resp = _json(405, {"detail": "Method Not Allowed"})
        resp.headers["allow"] = ", ".join(sorted(e.allowed_methods))
        return resp
    except ConnectionCut:
        # A crash fault already aborted the transport; there is nobody left to answer.
        return web.Response(status=500)
    except ConnectionResetError:
        # The client went away mid-stream (aiohttp's ClientConnectionResetError is one): as for
        # vLLM, a disconnect is not an error; the request's slot was freed when the job ended.
        log.debug("client disconnected during %s %s", request.method, request.path)
        return web.Response(status=499)
    except web.HTTPException:
        raise
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("unhandled error serving %s %s", request.method, request.path)
        return web.Response(status=500, body=ApiError(
            500, "Internal server error", "InternalServerError").body(), headers=JSON_HEADERS)


def _replica(request: web.Request) -> Replica:
    return request.app[REPLICA]


async def health(request: web.Request) -> web.Response:
    """`GET /health`: 200 with an empty body when ready, 503 while starting or failed."""
    return web.Response(status=200 if _replica(request).healthy else 503)


async def version(request: web.Request) -> web.Response:
    """`GET /version`."""
    return _json(200, {"version": VLLM_VERSION})


async def load(request: web.Request) -> web.Response:
    """`GET /load`: requests being served right now."""
    return _json(200, {"server_load": _replica(request).in_flight})


async def metrics(request: web.Request) -> web.Response:
    """`GET /metrics`."""
    return web.Response(body=_replica(request).metrics.render(),
                        headers={"Content-Type": CONTENT_TYPE})


async def models(request: web.Request) -> web.Response:
    """`GET /v1/models`: served names, then adapters (parent = the first served name)."""
    r = _replica(request)
    cards = [model_card(name, r.options.model, None, r.options.model_len, r.created,
                        r.new_id("modelperm")) for name in r.options.model_names]
    cards += [model_card(name, path, r.model_name, None, r.created, r.new_id("modelperm"))
              for name, path in r.adapters.items()]
    return _json(200, {"object": "list", "data": cards})


def _text(message: str) -> web.Response:
    # vLLM answers LoRA success as a bare body without a content type.
    resp = web.Response(body=message.encode())
    resp.headers.popall("Content-Type", None)
    return resp


def _adapter_missing(path: str) -> bool:
    """A local path that exists but holds no adapter_config.json fails like vLLM's loader;
    paths that do not exist locally stand for simulated adapters and always load."""
    p = Path(path)
    return p.exists() and not (p / "adapter_config.json").is_file()


async def load_lora(request: web.Request) -> web.Response:
    """`POST /v1/load_lora_adapter`."""
    r = _replica(request)
    body = validate(LoadLoraRequest, parse_json(await request.read()))
    if body.lora_name in r.adapters and not body.load_inplace:
        raise ApiError(400, f"The lora adapter '{body.lora_name}' has already been loaded. If "
                       "you want to load the adapter in place, set 'load_inplace' to True.",
                       "InvalidUserInput")
    if _adapter_missing(body.lora_path):
        raise ApiError(404, f"Loading lora {body.lora_name} failed: No adapter found for "
                       f"{body.lora_path}", "NotFoundError")
    r.adapters[body.lora_name] = body.lora_path
    return _text(f"Success: LoRA adapter '{body.lora_name}' added successfully.")


async def unload_lora(request: web.Request) -> web.Response:
    """`POST /v1/unload_lora_adapter`."""
    r = _replica(request)
    body = validate(UnloadLoraRequest, parse_json(await request.read()))
    if body.lora_name not in r.adapters:
        raise ApiError(404, f"The lora adapter '{body.lora_name}' cannot be found.",
                       "NotFoundError")
    del r.adapters[body.lora_name]
    if body.lora_name not in r.engine.running_adapters():
        r.engine.lora.evict(body.lora_name)
    return _text(f"Success: LoRA adapter '{body.lora_name}' removed successfully.")


async def get_faults(request: web.Request) -> web.Response:
    """`GET /admin/faults`: the replica's current fault settings."""
    return _json(200, _replica(request).faults.settings.model_dump())


async def set_faults(request: web.Request) -> web.Response:
    """`POST /admin/faults`: change some fault settings (others keep their value)."""
    r = _replica(request)
    data = parse_json(await request.read())
    if not isinstance(data, dict):
        raise ApiError(400, "expected a JSON object of fault settings", "BadRequestError")
    try:
        settings: FaultSettings = r.faults.update(data)
    except ValidationError as e:
        first = e.errors(include_url=False)[0]
        field = ".".join(str(p) for p in first["loc"])
        raise ApiError(400, f"invalid fault setting {field}: {first['msg']}",
                       "BadRequestError", field) from None
    return _json(200, settings.model_dump())


async def tokenize_handler(request: web.Request) -> web.Response:
    """`POST /tokenize`: the prompt's (or the templated messages') token ids."""
    r = _replica(request)
    data = parse_json(await request.read())
    if isinstance(data, dict):
        r.resolve_model(data.get("model"))
    try:
        body = tokenize(data, request.app[VOCAB], r.options.model_len)
    except ValidationError as e:
        raise validation_error(_validation_errors(e)) from None
    return _json(200, body)


async def detokenize_handler(request: web.Request) -> web.Response:
    """`POST /detokenize`: the text of token ids."""
    r = _replica(request)
    req = validate(Detokenize, parse_json(await request.read()))
    r.resolve_model(req.model)
    return _json(200, detokenize(req, request.app[VOCAB]))


async def render_chat_handler(request: web.Request) -> web.Response:
    """`POST /v1/chat/completions/render`: the request as the engine would run it, in ids."""
    r = _replica(request)
    req = validate(ChatRequest, parse_json(await request.read()))
    adapter = r.resolve_model(req.model)
    return _json(200, render_chat_request(req, r.reported_model(adapter), request.app[VOCAB],
                                          r.options.model_len))


async def render_completion_handler(request: web.Request) -> web.Response:
    """`POST /v1/completions/render`: one rendered request per prompt."""
    r = _replica(request)
    req = validate(CompletionRequest, parse_json(await request.read()))
    adapter = r.resolve_model(req.model)
    return _json(200, render_completion_request(req, r.reported_model(adapter),
                                                request.app[VOCAB], r.options.model_len))


async def model_info_handler(request: web.Request) -> web.Response:
    """SGLang's `GET /get_model_info` (and `/model_info`), for SGLang routers."""
    r = _replica(request)
    return _json(200, model_info(r.options.model, r.model_name))


async def server_info_handler(request: web.Request) -> web.Response:
    """SGLang's `GET /get_server_info` (and `/server_info`), for SGLang routers."""
    r = _replica(request)
    o = r.options
    host, port = _local_address(request)
    return _json(200, server_info(o.model, r.model_name, host, port, o.model_len, o.num_seqs,
                                  o.num_blocks * o.block_size, o.block_size, VLLM_VERSION))


async def reset_prefix_cache_handler(request: web.Request) -> web.Response:
    """vLLM's `POST /reset_prefix_cache`: drop every cached block (KV event AllBlocksCleared).

    vLLM refuses while requests hold blocks; the simulator answers that case with 409.
    """
    r = _replica(request)
    if not r.engine.reset_prefix_cache():
        return _json(409, {"error": "requests are running; the prefix cache was not reset"})
    r.runner.publish_kv_events()
    return web.Response(status=200)


def _local_address(request: web.Request) -> tuple[str, int]:
    sockname = request.transport.get_extra_info("sockname") if request.transport else None
    if isinstance(sockname, tuple) and len(sockname) >= 2:
        return str(sockname[0]), int(sockname[1])
    return request.url.host or "", request.url.port or 0


def build_app(replica: Replica) -> web.Application:
    """The aiohttp application of one replica."""
    app = web.Application(middlewares=[vllm_errors], client_max_size=64 << 20)
    app[REPLICA] = replica
    app[VOCAB] = Vocabulary()

    async def chat(request: web.Request) -> web.StreamResponse:
        return await handle_generation(replica, request, chat=True)

    async def completions(request: web.Request) -> web.StreamResponse:
        return await handle_generation(replica, request, chat=False)

    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_post("/v1/completions", completions)
    app.router.add_get("/v1/models", models)
    app.router.add_get("/health", health)
    app.router.add_get("/ping", health)
    app.router.add_post("/ping", health)
    app.router.add_get("/version", version)
    app.router.add_get("/load", load)
    app.router.add_get("/metrics", metrics)
    app.router.add_post("/v1/load_lora_adapter", load_lora)
    app.router.add_post("/v1/unload_lora_adapter", unload_lora)
    app.router.add_post("/tokenize", tokenize_handler)
    app.router.add_post("/detokenize", detokenize_handler)
    app.router.add_post("/reset_prefix_cache", reset_prefix_cache_handler)
    app.router.add_post("/v1/chat/completions/render", render_chat_handler)
    app.router.add_post("/v1/completions/render", render_completion_handler)
    for path in ("/get_model_info", "/model_info"):
        app.router.add_get(path, model_info_handler)
    for path in ("/get_server_info", "/server_info"):
        app.router.add_get(path, server_info_handler)
    app.router.add_get("/admin/faults", get_faults)
    app.router.add_post("/admin/faults", set_faults)
    return app
