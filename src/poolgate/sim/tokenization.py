"""Bodies of vLLM's tokenizer endpoints (`/tokenize`, `/detokenize`, `/v1/*/render`) and of the
model / server info endpoints SGLang routers probe, computed with the simulator's tokenizer.

Pure: request JSON in, response JSON out; the aiohttp handlers in `server` only move bytes.
Token ids are those `tokens.encode` gives, so the ids a router reads from `/tokenize` or a
render endpoint are exactly the prompt ids the simulated engine caches blocks of.
"""

from __future__ import annotations

import uuid
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from poolgate.core.sim_tokens import (
    BOS_TOKEN_ID,
    CHARS_PER_TOKEN,
    GENERATION_PROMPT,
    VOCAB_SIZE,
    encode,
    render_chat,
)
from poolgate.sim.errors import ApiError
from poolgate.sim.protocol import ChatMessage, ChatRequest, CompletionRequest, check_lengths
from poolgate.sim.tokens import _PIECE_BASE, _PIECES

BOS_TEXT = "<s>"
# Prompt chunks are hashed, not looked up, so `/detokenize` can only give back chunks this
# replica has tokenized; a bounded table keeps that memory flat under any load.
_REVERSE_TABLE_SIZE = 65_536


class TokenizeCompletion(BaseModel):
    """`POST /tokenize` with a `prompt`."""

    model_config = ConfigDict(extra="allow")

    model: str | None = None
    prompt: str
    add_special_tokens: bool = True
    return_token_strs: bool | None = False


class TokenizeChat(BaseModel):
    """`POST /tokenize` with `messages` (the chat template is applied first)."""

    model_config = ConfigDict(extra="allow")

    model: str | None = None
    messages: list[ChatMessage]
    add_generation_prompt: bool = True
    continue_final_message: bool = False
    add_special_tokens: bool = False
    return_token_strs: bool | None = False


class Detokenize(BaseModel):
    """`POST /detokenize`."""

    model_config = ConfigDict(extra="allow")

    model: str | None = None
    tokens: list[int] = Field(default_factory=list)


def chunks(text: str) -> list[str]:
    """The text of each token `encode(text)` gives after BOS."""
    return [text[i : i + CHARS_PER_TOKEN] for i in range(0, len(text), CHARS_PER_TOKEN)]


def chat_text(messages: Sequence[ChatMessage], add_generation_prompt: bool = True,
              continue_final_message: bool = False) -> str:
    """The prompt text the simulator's chat template makes of `messages`."""
    text = render_chat((m.role, m.text()) for m in messages)
    if add_generation_prompt and not continue_final_message:
        return text
    text = text.removesuffix(GENERATION_PROMPT)
    if continue_final_message:
        # The last message stays open, so the model continues it.
        text = text.removesuffix("</s>\n")
    return text


class Vocabulary:
    """Token id → text, for `/detokenize`: generated pieces, BOS, and prompt chunks seen."""

    def __init__(self, capacity: int = _REVERSE_TABLE_SIZE) -> None:
        self.capacity = capacity
        self._chunks: OrderedDict[int, str] = OrderedDict()

    def learn(self, text: str) -> list[int]:
        """`encode(text)`, remembering the text of each chunk id."""
        ids = encode(text)
        table = self._chunks
        for token_id, chunk in zip(ids[1:], chunks(text), strict=True):
            table[token_id] = chunk
            table.move_to_end(token_id)
        while len(table) > self.capacity:
            table.popitem(last=False)
        return ids

    def text_of(self, token_id: int) -> str:
        """The text of one id; U+FFFD for an in-vocabulary id never tokenized here."""
        if token_id == BOS_TOKEN_ID:
            return BOS_TEXT
        piece = token_id - _PIECE_BASE
        if 0 <= piece < len(_PIECES):
            return _PIECES[piece]
        return self._chunks.get(token_id, "\ufffd")


def _token_strs(text: str, bos: bool) -> list[str]:
    return ([BOS_TEXT] if bos else []) + chunks(text)


def tokenize(data: Any, vocab: Vocabulary, max_model_len: int) -> dict[str, Any]:
    """The body of `POST /tokenize` for a validated prompt or messages request."""
    req: TokenizeChat | TokenizeCompletion
    if isinstance(data, dict) and "messages" in data:
        req = TokenizeChat.model_validate(data)
        text = chat_text(req.messages, req.add_generation_prompt, req.continue_final_message)
        # The template's own BOS is part of the rendered prompt, as with Llama chat templates.
        ids = vocab.learn(text)
        bos = True
    else:
        req = TokenizeCompletion.model_validate(data)
        text = req.prompt
        ids = vocab.learn(text)
        bos = req.add_special_tokens
        if not bos:
            ids = ids[1:]
    strs = _token_strs(text, bos) if req.return_token_strs else None
    return {"count": len(ids), "max_model_len": max_model_len, "tokens": ids, "token_strs": strs}


def detokenize(req: Detokenize, vocab: Vocabulary) -> dict[str, Any]:
    """The body of `POST /detokenize`; 400 for an id outside the vocabulary."""
    for token_id in req.tokens:
        if not 0 <= token_id < VOCAB_SIZE:
            raise ApiError(400, f"Token id {token_id} is out of vocabulary", "BadRequestError",
                           "tokens")
    return {"prompt": "".join(vocab.text_of(t) for t in req.tokens)}


def _sampling_params(req: ChatRequest | CompletionRequest, max_tokens: int) -> dict[str, Any]:
    """The engine-side sampling parameters a render returns (vLLM's defaults where unset)."""
    return {
        "n": req.n or 1,
        "presence_penalty": 0.0,
        "frequency_penalty": 0.0,
        "repetition_penalty": 1.0,
        "temperature": 1.0 if req.temperature is None else req.temperature,
        "top_p": 1.0 if req.top_p is None else req.top_p,
        "top_k": 0,
        "min_p": 0.0,
        "seed": req.seed,
        "stop": list(req.stop_strings()),
        "stop_token_ids": [],
        "ignore_eos": req.ignore_eos,
        "max_tokens": max_tokens,
        "min_tokens": 0,
        "logprobs": None,
        "prompt_logprobs": None,
        "skip_special_tokens": True,
        "spaces_between_special_tokens": True,
        "include_stop_str_in_output": False,
    }


def _generate_request(prefix: str, model: str, ids: list[int], max_tokens: int,
                      req: ChatRequest | CompletionRequest) -> dict[str, Any]:
    """One rendered request, shaped as vLLM's tokens-in `GenerateRequest`."""
    opts = req.stream_options
    return {
        "request_id": f"{prefix}-{uuid.uuid4().hex}",
        "token_ids": ids,
        "features": None,
        "sampling_params": _sampling_params(req, max_tokens),
        "model": model,
        "stream": bool(req.stream),
        "stream_options": opts.model_dump() if opts is not None else None,
        "cache_salt": None,
        "priority": 0,
        "kv_transfer_params": None,
    }


def render_chat_request(req: ChatRequest, model: str, vocab: Vocabulary,
                        max_model_len: int) -> dict[str, Any]:
    """The body of `POST /v1/chat/completions/render`: the prompt ids the engine would run."""
    ids = vocab.learn(chat_text(req.messages))
    user_max, param = req.requested_max_tokens()
    max_tokens = check_lengths(len(ids), user_max, param, max_model_len)
    return _generate_request("chatcmpl", model, ids, max_tokens, req)


def _completion_prompts(req: CompletionRequest, vocab: Vocabulary) -> list[list[int]]:
    p = req.prompt
    if isinstance(p, str):
        return [vocab.learn(p)]
    if not p:
        raise ApiError(400, "Prompt cannot be empty", "BadRequestError", "prompt")
    if all(isinstance(x, int) for x in p):
        return [[int(x) for x in p if isinstance(x, int)]]
    out: list[list[int]] = []
    for item in p:
        if isinstance(item, str):
            out.append(vocab.learn(item))
        elif isinstance(item, list):
            out.append([int(x) for x in item])
    return out


def render_completion_request(req: CompletionRequest, model: str, vocab: Vocabulary,
                              max_model_len: int) -> list[dict[str, Any]]:
    """The body of `POST /v1/completions/render`: one rendered request per prompt."""
    out: list[dict[str, Any]] = []
    for ids in _completion_prompts(req, vocab):
        user_max, param = req.requested_max_tokens()
        max_tokens = check_lengths(len(ids), user_max, param, max_model_len)
        out.append(_generate_request("cmpl", model, ids, max_tokens, req))
    return out


def model_info(model_path: str, served_name: str) -> dict[str, Any]:
    """The body of SGLang's `GET /get_model_info` (also `/model_info`)."""
    return {
        "model_path": model_path,
        "tokenizer_path": model_path,
        "served_model_name": served_name,
        "is_generation": True,
        "preferred_sampling_params": None,
        "weight_version": "default",
        "has_image_understanding": False,
        "has_audio_understanding": False,
        "model_type": "llama",
        "architectures": ["LlamaForCausalLM"],
    }


def server_info(model_path: str, served_name: str, host: str, port: int, max_model_len: int,
                max_num_seqs: int, kv_tokens: int, block_size: int,
                version: str) -> dict[str, Any]:
    """The body of SGLang's `GET /get_server_info` (also `/server_info`): server arguments,
    scheduler limits and the version, flattened into one object as SGLang does."""
    return {
        "model_path": model_path,
        "tokenizer_path": model_path,
        "served_model_name": served_name,
        "host": host,
        "port": port,
        "tp_size": 1,
        "dp_size": 1,
        "context_length": max_model_len,
        "max_running_requests": max_num_seqs,
        "max_total_num_tokens": kv_tokens,
        "page_size": block_size,
        "skip_tokenizer_init": False,
        "internal_states": [{"max_total_num_tokens": kv_tokens,
                             "max_running_requests": max_num_seqs}],
        "version": version,
    }
