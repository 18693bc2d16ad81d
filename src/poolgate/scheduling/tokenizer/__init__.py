"""Turning a request body into the token ids its model server will compute, exactly.

The precise prefix scorer needs a request's token ids as the model server makes them (chat
template applied, special tokens as the server adds them), because the server's KV events name
blocks of those ids. Two tokenizers:

- `simulator`: poolgate's simulator's own (`poolgate.core.sim_tokens`), for `poolgate sim`;
- a Hugging Face tokenizer directory on local disk (`tokenizer.json`, `tokenizer_config.json`,
  optionally `chat_template.jinja`), for vLLM serving that model: the `tokenizers` library and
  the chat template rendered with jinja2 the way transformers does.

`load_tokenizer` refuses a bad choice at load time with a message naming what is wrong.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from poolgate.scheduling.tokenizer.simulator import SimulatorTokenizer

SIMULATOR = "simulator"


class TokenizerError(ValueError):
    """A tokenizer that cannot be used (missing directory, unreadable file, bad template)."""


class RequestTokenizer(Protocol):
    """What the precise prefix scorer asks of a tokenizer."""

    name: str

    def token_ids(self, body: Mapping[str, Any]) -> list[int] | None:
        """The prompt token ids the server computes for a `/v1/completions` or
        `/v1/chat/completions` body; None when the body has no prompt the tokenizer can
        render (the request is then scored by load alone)."""
        ...


def load_tokenizer(spec: str) -> RequestTokenizer:
    """`simulator`, or the path of a Hugging Face tokenizer directory."""
    if spec == SIMULATOR:
        return SimulatorTokenizer()
    from poolgate.scheduling.tokenizer.huggingface import HFTokenizer, HFTokenizerError

    try:
        return HFTokenizer.load(Path(spec))
    except HFTokenizerError as e:
        raise TokenizerError(str(e)) from None
