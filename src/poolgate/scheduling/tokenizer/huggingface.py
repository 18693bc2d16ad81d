"""A Hugging Face tokenizer directory, applied to a request body the way vLLM does it.

Files read: `tokenizer.json` (required; loaded with the `tokenizers` library, the same Rust code
transformers' fast tokenizers run), `tokenizer_config.json` (special tokens, and the chat
template unless `chat_template.jinja` is present), `chat_template.jinja` (optional).

Chat: the template is rendered as transformers renders it (a sandboxed jinja2 environment with
`trim_blocks` and `lstrip_blocks`, the `loopcontrols` extension and the `generation` tag,
`tojson` without HTML escaping, `raise_exception` and `strftime_now`; the variables `messages`,
`tools`, `documents`, `add_generation_prompt`, the special tokens, and the request's
`chat_template_kwargs`), then encoded without special tokens (vLLM's default for chat: the
template writes them). Message contents that are lists of parts become their text parts joined
by newlines, unless the template iterates over a message's content (vLLM's "string" and
"openai" content formats). `continue_final_message` cuts the text after the final message.
Completions: the prompt text encoded with special tokens (vLLM's default), or the token ids
given. The body's `add_special_tokens` overrides either default, as in vLLM.

Cost: encoding is about 1 µs a token (measured, docs/scheduling.md), and a chat prompt is
mostly what other requests sent too (the system prompt, earlier turns). The tokenizer splits the
text at its added tokens (the template's `<|start_header_id|>`...) before anything else, so with
a position-independent pipeline (no normalizer; byte-level or regex pre-tokenizers; no added
token that strips or matches whole words) each piece between them encodes on its own and is
cached (`_PieceCache`): a request pays only for its new pieces. The first requests are checked
against a whole encode, and any difference turns the cache off for good.
"""

from __future__ import annotations

import datetime
import json
import logging
import re
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

TOKENIZER_FILE = "tokenizer.json"
CONFIG_FILE = "tokenizer_config.json"
TEMPLATE_FILE = "chat_template.jinja"

# A template that loops over a message's content takes the list of parts (vLLM's "openai"
# content format); any other gets the parts' text joined ("string").
_ITERATES_CONTENT = re.compile(
    r"\{%-?\s*for\s+\w+\s+in\s+\w+(?:\[\s*['\"]content['\"]\s*\]|\.content)\b")

_cache: dict[tuple[str, tuple[float, ...]], HFTokenizer] = {}
log = logging.getLogger(__name__)
# Pre-tokenizers whose output for a piece of text does not depend on where the piece starts.
_PIECEWISE_PRE_TOKENIZERS = frozenset({"ByteLevel", "Split", "Digits", "Punctuation",
                                       "Whitespace", "WhitespaceSplit"})
_PIECES_CACHED = 4096
_PIECES_CHECKED = 32


class HFTokenizerError(ValueError):
    """The directory cannot be used; the message says which file and why."""


class HFTokenizer:
    """Token ids of request bodies for the model whose tokenizer directory this is."""

    def __init__(self, directory: Path, encoder: Any, templates: Mapping[str, Any],
                 special_tokens: Mapping[str, Any], iterates_content: bool) -> None:
        self.name = str(directory)
        self._encoder = encoder
        self._template = templates.get("default")
        self._tool_template = templates.get("tool_use", self._template)
        self._special = dict(special_tokens)
        self._openai_content = iterates_content
        self._pieces = _PieceCache.for_encoder(encoder)

    @classmethod
    def load(cls, directory: Path) -> HFTokenizer:
        """Load `directory` (cached while its files are unchanged); raises HFTokenizerError."""
        if not directory.is_dir():
            raise HFTokenizerError(f"{directory} is not a directory (give 'simulator' "
                                   f"or a Hugging Face tokenizer directory with {TOKENIZER_FILE})")
        files = [directory / TOKENIZER_FILE, directory / CONFIG_FILE, directory / TEMPLATE_FILE]
        if not files[0].is_file():
            raise HFTokenizerError(f"{directory} has no {TOKENIZER_FILE}")
        key = (str(directory.resolve()),
               tuple(f.stat().st_mtime if f.exists() else -1.0 for f in files))
        found = _cache.get(key)
        if found is None:
            found = _cache[key] = cls._read(directory)
        return found

    @classmethod
    def _read(cls, directory: Path) -> HFTokenizer:
        try:
            from tokenizers import Tokenizer
        except ImportError:  # pragma: no cover - a dependency of poolgate
            raise HFTokenizerError("the 'tokenizers' package is not installed") from None
        path = directory / TOKENIZER_FILE
        try:
            encoder = Tokenizer.from_file(str(path))
        except Exception as e:  # the Rust side raises a plain Exception
            raise HFTokenizerError(f"{path} cannot be read: {e}") from None
        config = _read_config(directory / CONFIG_FILE)
        sources, where = _template_sources(directory, config)
        templates = {name: _compile(source, f"{where} ({name})" if len(sources) > 1 else where)
                     for name, source in sources.items()}
        return cls(directory, encoder, templates, _special_tokens(config),
                   any(_ITERATES_CONTENT.search(source) for source in sources.values()))

    def token_ids(self, body: Mapping[str, Any]) -> list[int] | None:
        messages = body.get("messages")
        if isinstance(messages, list):
            text = self.render_chat(body)
            if text is None:
                return None
            return self._encode(text, bool(body.get("add_special_tokens", False)))
        prompt = body.get("prompt")
        if isinstance(prompt, list) and len(prompt) == 1:
            prompt = prompt[0]
        if isinstance(prompt, str):
            return self._encode(prompt, bool(body.get("add_special_tokens", True)))
        if isinstance(prompt, list) and prompt and all(isinstance(x, int) for x in prompt):
            return list(prompt)
        return None

    def render_chat(self, body: Mapping[str, Any]) -> str | None:
        """The prompt text of a chat body, or None (no template, or the template refused it)."""
        tools = body.get("tools")
        # transformers: a tokenizer with named templates uses "tool_use" when tools are given.
        template = self._tool_template if tools else self._template
        messages = body.get("messages")
        if template is None or not isinstance(messages, list):
            return None
        conversation = [self._message(m) for m in messages]
        if any(m is None for m in conversation):
            return None
        continue_final = bool(body.get("continue_final_message", False))
        kwargs = body.get("chat_template_kwargs")
        variables: dict[str, Any] = {**self._special, **(kwargs if isinstance(kwargs, Mapping)
                                                           else {})}
        variables.update(
            messages=conversation, tools=tools, documents=body.get("documents"),
            add_generation_prompt=(bool(body.get("add_generation_prompt", True))
                                   and not continue_final))
        try:
            text: str = template.render(**variables)
        except Exception:
            return None  # raise_exception() or a template error: the server refuses it too
        if continue_final:
            return _cut_after_final(text, conversation[-1] if conversation else None)
        return text

    def _message(self, message: Any) -> dict[str, Any] | None:
        if not isinstance(message, Mapping):
            return None
        out = dict(message)
        content = out.get("content")
        if isinstance(content, list) and not self._openai_content:
            out["content"] = "\n".join(str(p.get("text", "")) for p in content
                                       if isinstance(p, Mapping) and p.get("type") == "text")
        return out

    def _encode(self, text: str, add_special_tokens: bool) -> list[int]:
        pieces = self._pieces
        if pieces is not None and not add_special_tokens:
            return pieces.encode(text)
        ids: list[int] = self._encoder.encode(text, add_special_tokens=add_special_tokens).ids
        return ids


class _PieceCache:
    """Encodes text piece by piece between the tokenizer's added tokens, each piece cached."""

    def __init__(self, encoder: Any, added: Mapping[str, int]) -> None:
        self._encoder = encoder
        self._added = dict(added)
        names = sorted(added, key=len, reverse=True)  # longest first: leftmost-longest matches
        self._split = re.compile("(" + "|".join(re.escape(n) for n in names) + ")")
        self._ids: OrderedDict[str, list[int]] = OrderedDict()
        self._checks_left = _PIECES_CHECKED
        self.enabled = True

    @classmethod
    def for_encoder(cls, encoder: Any) -> _PieceCache | None:
        """A cache when `encoder`'s pipeline is position-independent (else None)."""
        try:
            spec = json.loads(encoder.to_str())
        except Exception:
            return None
        if spec.get("normalizer") is not None or not _piecewise(spec.get("pre_tokenizer")):
            return None
        added: dict[str, int] = {}
        for token_id, token in encoder.get_added_tokens_decoder().items():
            if token.lstrip or token.rstrip or token.single_word:
                return None
            added[token.content] = token_id
        return cls(encoder, added) if added else None

    def encode(self, text: str) -> list[int]:
        """The ids of `text` without special tokens added (the whole encode's)."""
        if not self.enabled:
            return list(self._encoder.encode(text, add_special_tokens=False).ids)
        out: list[int] = []
        cache, added = self._ids, self._added
        for i, piece in enumerate(self._split.split(text)):
            if i % 2:
                out.append(added[piece])
            elif piece:
                ids = cache.get(piece)
                if ids is None:
                    ids = cache[piece] = list(
                        self._encoder.encode(piece, add_special_tokens=False).ids)
                    if len(cache) > _PIECES_CACHED:
                        cache.popitem(last=False)
                else:
                    cache.move_to_end(piece)
                out.extend(ids)
        if self._checks_left:
            self._checks_left -= 1
            whole = list(self._encoder.encode(text, add_special_tokens=False).ids)
            if whole != out:
                self.enabled = False
                log.warning("tokenizer: encoding piece by piece differs from a whole encode "
                            "for this tokenizer; piece caching is off")
                return whole
        return out


def _piecewise(pre_tokenizer: Any) -> bool:
    if not isinstance(pre_tokenizer, Mapping):
        return False
    kind = pre_tokenizer.get("type")
    if kind == "Sequence":
        return all(_piecewise(p) for p in pre_tokenizer.get("pretokenizers") or [None])
    if kind == "ByteLevel":
        return not pre_tokenizer.get("add_prefix_space", False)
    return kind in _PIECEWISE_PRE_TOKENIZERS


def _read_config(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise HFTokenizerError(f"{path} cannot be read: {e}") from None
    if not isinstance(data, dict):
        raise HFTokenizerError(f"{path} is not a JSON object")
    return data


def _template_sources(directory: Path, config: Mapping[str, Any]) -> tuple[dict[str, str], str]:
    """The chat templates by name ("default", maybe "tool_use"; none without a template) as
    transformers finds them, and the file they came from."""
    path = directory / TEMPLATE_FILE
    if path.exists():
        try:
            return {"default": path.read_text(encoding="utf-8")}, str(path)
        except OSError as e:
            raise HFTokenizerError(f"{path} cannot be read: {e}") from None
    where = f"{directory / CONFIG_FILE} (chat_template)"
    template = config.get("chat_template")
    if template is None:
        return {}, where
    if isinstance(template, str):
        return {"default": template}, where
    if isinstance(template, list):
        named = {t.get("name"): t.get("template") for t in template if isinstance(t, Mapping)}
        if not isinstance(named.get("default"), str):
            raise HFTokenizerError(f"{where} names no 'default' template")
        return {str(k): v for k, v in named.items() if isinstance(v, str)}, where
    raise HFTokenizerError(f"{where} is neither a string nor a list of templates")


def _special_tokens(config: Mapping[str, Any]) -> dict[str, Any]:
    """`bos_token`, `eos_token`, ... as strings, as transformers passes them to templates."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        if key.endswith("_token"):
            text = value.get("content") if isinstance(value, Mapping) else value
            if isinstance(text, str):
                out[key] = text
    extra = config.get("additional_special_tokens")
    if isinstance(extra, list):
        out["additional_special_tokens"] = [
            t.get("content") if isinstance(t, Mapping) else t for t in extra]
    return out


def _compile(source: str, where: str) -> Any:
    try:
        env = _environment()
        return env.from_string(source)
    except ImportError:  # pragma: no cover - a dependency of poolgate
        raise HFTokenizerError("the 'jinja2' package is not installed") from None
    except Exception as e:
        raise HFTokenizerError(f"the chat template in {where} does not compile: "
                               f"{e}") from None


def _environment() -> Any:
    from jinja2 import nodes
    from jinja2.exceptions import TemplateError
    from jinja2.ext import Extension, loopcontrols
    from jinja2.parser import Parser
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    class GenerationTag(Extension):
        """transformers' `{% generation %}` block (it marks assistant text; rendered as is)."""

        tags = {"generation"}  # noqa: RUF012 - jinja2's own attribute

        def parse(self, parser: Parser) -> nodes.Node:
            lineno = next(parser.stream).lineno
            body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
            return nodes.CallBlock(self.call_method("_body"), [], [], body).set_lineno(lineno)

        def _body(self, caller: Callable[[], str]) -> str:
            return caller()

    def raise_exception(message: str) -> None:
        raise TemplateError(message)

    def strftime_now(fmt: str) -> str:
        return datetime.datetime.now().strftime(fmt)

    def tojson(value: Any, ensure_ascii: bool = False, indent: int | None = None,
               separators: Sequence[str] | None = None, sort_keys: bool = False) -> str:
        # transformers' filter: jinja2's own escapes HTML characters.
        return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent,
                          separators=tuple(separators) if separators else None,  # type: ignore[arg-type]
                          sort_keys=sort_keys)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[GenerationTag, loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env


def _cut_after_final(text: str, final: Mapping[str, Any] | None) -> str | None:
    """transformers' `continue_final_message`: the text up to the end of the final message's
    content, so the model continues it."""
    if final is None:
        return None
    content = final.get("content")
    if isinstance(content, list):
        texts = [p.get("text") for p in content if isinstance(p, Mapping) and "text" in p]
        content = texts[-1] if texts else None
    if not isinstance(content, str):
        return None
    for needle in (content, content.strip()):
        at = text.rfind(needle)
        if at >= 0 and needle:
            return text[: at + len(needle)]
    return None
