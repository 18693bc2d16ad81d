"""Request tokenizers for the precise prefix scorer: the simulator's, and a Hugging Face
directory checked token for token against transformers (rendering, then vLLM's encode)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from poolgate.core.sim_tokens import encode, render_chat
from poolgate.scheduling.tokenizer import TokenizerError, load_tokenizer
from poolgate.scheduling.tokenizer.huggingface import HFTokenizer
from poolgate.sim.protocol import ChatRequest, CompletionRequest
from tests.support.hf_tokenizer import build_tokenizer_dir

SYSTEM = {"role": "system", "content": "You are a helpful assistant."}
USER = {"role": "user", "content": "the quick brown fox"}


# -- the simulator's ------------------------------------------------------------------------

def _sim_engine_ids(body: dict[str, Any]) -> list[int]:
    """What `poolgate sim` computes (sim/generation.py), from its own request models."""
    if "messages" in body:
        req = ChatRequest.model_validate(body)
        return encode(render_chat((m.role, m.text()) for m in req.messages))
    prompt = CompletionRequest.model_validate(body).prompt
    if isinstance(prompt, str):
        return encode(prompt)
    first = prompt[0] if len(prompt) == 1 and not isinstance(prompt[0], int) else prompt
    if isinstance(first, str):
        return encode(first)
    return [int(x) for x in first]  # type: ignore[union-attr]


@pytest.mark.parametrize("body", [
    pytest.param({"model": "m", "prompt": "the quick brown fox " * 20}, id="text"),
    pytest.param({"model": "m", "prompt": ["one prompt in a list"]}, id="text-in-list"),
    pytest.param({"model": "m", "prompt": [5, 6, 7, 8]}, id="token-ids"),
    pytest.param({"model": "m", "prompt": [[5, 6, 7]]}, id="token-ids-in-list"),
    pytest.param({"model": "m", "messages": [SYSTEM, USER]}, id="chat"),
    pytest.param({"model": "m", "messages": [
        {"role": "user", "content": [{"type": "text", "text": "a"},
                                     {"type": "image_url", "image_url": {"url": "x"}},
                                     {"type": "text", "text": "b"}]},
        {"role": "assistant", "content": None}]}, id="chat-parts"),
])
def test_simulator_tokenizer_matches_the_simulators_engine(body: dict[str, Any]) -> None:
    assert load_tokenizer("simulator").token_ids(body) == _sim_engine_ids(body)


@pytest.mark.parametrize("body", [
    pytest.param({"prompt": ["two", "prompts"]}, id="batch"),
    pytest.param({"prompt": []}, id="empty"),
    pytest.param({"prompt": 5}, id="number"),
    pytest.param({"messages": ["not a mapping"]}, id="bad-message"),
    pytest.param({}, id="nothing"),
])
def test_simulator_tokenizer_declines_what_it_cannot_render(body: dict[str, Any]) -> None:
    assert load_tokenizer("simulator").token_ids(body) is None


# -- a Hugging Face directory ---------------------------------------------------------------

@pytest.fixture(scope="module")
def tok_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tokenizer_dir(tmp_path_factory.mktemp("tok"))


@pytest.fixture(scope="module")
def reference(tok_dir: Path) -> Any:
    transformers = pytest.importorskip("transformers")
    return transformers.AutoTokenizer.from_pretrained(str(tok_dir))


def _vllm_chat_ids(ref: Any, body: dict[str, Any]) -> list[int]:
    """vLLM's chat path: the template rendered by transformers, encoded without special
    tokens (unless the body asks for them)."""
    kwargs = dict(body.get("chat_template_kwargs") or {})
    text = ref.apply_chat_template(
        body["messages"], tools=body.get("tools"), tokenize=False,
        add_generation_prompt=body.get("add_generation_prompt", True)
        and not body.get("continue_final_message", False),
        continue_final_message=body.get("continue_final_message", False), **kwargs)
    ids: list[int] = ref.encode(text, add_special_tokens=body.get("add_special_tokens", False))
    return ids


@pytest.mark.parametrize("body", [
    pytest.param({"messages": [SYSTEM, USER]}, id="chat"),
    pytest.param({"messages": [SYSTEM, USER], "add_generation_prompt": False}, id="no-gen-prompt"),
    pytest.param({"messages": [SYSTEM, USER, {"role": "assistant", "content": "the lazy"}],
                  "continue_final_message": True}, id="continue-final"),
    pytest.param({"messages": [USER], "chat_template_kwargs": {"greeting": "hello there"}},
                 id="template-kwargs"),
    pytest.param({"messages": [USER], "tools": [
        {"type": "function", "function": {"name": "lookup", "parameters": {"q": "é"}}}]},
                 id="tools-tojson"),
    pytest.param({"messages": [SYSTEM, USER], "add_special_tokens": True}, id="special-tokens"),
])
def test_chat_matches_transformers_and_vllms_encode(tok_dir: Path, reference: Any,
                                                    body: dict[str, Any]) -> None:
    assert load_tokenizer(str(tok_dir)).token_ids(body) == _vllm_chat_ids(reference, body)


def test_list_contents_are_joined_as_vllm_does_for_string_templates(
        tok_dir: Path, reference: Any) -> None:
    parts = {"role": "user", "content": [{"type": "text", "text": "the quick"},
                                         {"type": "text", "text": "brown fox"}]}
    joined = {"role": "user", "content": "the quick\nbrown fox"}
    assert (load_tokenizer(str(tok_dir)).token_ids({"messages": [parts]})
            == _vllm_chat_ids(reference, {"messages": [joined]}))


@pytest.mark.parametrize("body", [
    pytest.param({"prompt": "the quick brown fox"}, id="text"),
    pytest.param({"prompt": ["the quick brown fox"]}, id="text-in-list"),
    pytest.param({"prompt": "the quick brown fox", "add_special_tokens": False}, id="no-bos"),
])
def test_completions_match_transformers(tok_dir: Path, reference: Any,
                                        body: dict[str, Any]) -> None:
    prompt = body["prompt"] if isinstance(body["prompt"], str) else body["prompt"][0]
    expected = reference.encode(prompt, add_special_tokens=body.get("add_special_tokens", True))
    assert load_tokenizer(str(tok_dir)).token_ids(body) == expected


def test_token_id_prompts_pass_through_and_refusals_give_none(tok_dir: Path) -> None:
    tok = load_tokenizer(str(tok_dir))
    assert tok.token_ids({"prompt": [3, 4, 5]}) == [3, 4, 5]
    assert tok.token_ids({"messages": [{"role": "wizard", "content": "x"}]}) is None
    assert tok.token_ids({"prompt": ["a", "b"]}) is None


def test_named_templates_use_tool_use_with_tools(tmp_path: Path) -> None:
    directory = build_tokenizer_dir(tmp_path, chat_template=[
        {"name": "default", "template": "D{{ messages[0]['content'] }}"},
        {"name": "tool_use", "template": "T{{ messages[0]['content'] }}"}])
    tok = HFTokenizer.load(directory)
    assert tok.render_chat({"messages": [USER]}) == "Dthe quick brown fox"
    assert tok.render_chat({"messages": [USER], "tools": [{"x": 1}]}) == "Tthe quick brown fox"


def test_a_template_file_wins_and_no_template_declines_chat(tmp_path: Path) -> None:
    plain = build_tokenizer_dir(tmp_path / "plain", chat_template=None)
    assert HFTokenizer.load(plain).token_ids({"messages": [USER]}) is None
    (plain / "chat_template.jinja").write_text("F{{ messages[0]['content'] }}", encoding="utf-8")
    assert HFTokenizer.load(plain).render_chat({"messages": [USER]}) == "Fthe quick brown fox"


def _broken(tmp_path: Path, what: str) -> Path:
    directory = build_tokenizer_dir(tmp_path / "d")
    if what == "tokenizer-json":
        (directory / "tokenizer.json").write_text("{not json", encoding="utf-8")
    elif what == "no-tokenizer-json":
        (directory / "tokenizer.json").unlink()
    elif what == "config-json":
        (directory / "tokenizer_config.json").write_text("[1, 2", encoding="utf-8")
    elif what == "config-not-object":
        (directory / "tokenizer_config.json").write_text("[1, 2]", encoding="utf-8")
    elif what == "template-syntax":
        (directory / "chat_template.jinja").write_text("{% for x in %}", encoding="utf-8")
    elif what == "no-default-template":
        config = json.loads((directory / "tokenizer_config.json").read_text(encoding="utf-8"))
        config["chat_template"] = [{"name": "tool_use", "template": "x"}]
        (directory / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")
    return directory


@pytest.mark.parametrize(("what", "message"), [
    pytest.param("tokenizer-json", "tokenizer.json cannot be read", id="tokenizer-json"),
    pytest.param("no-tokenizer-json", "has no tokenizer.json", id="no-tokenizer-json"),
    pytest.param("config-json", "tokenizer_config.json cannot be read", id="config-json"),
    pytest.param("config-not-object", "is not a JSON object", id="config-not-object"),
    pytest.param("template-syntax", "chat_template.jinja does not compile", id="template"),
    pytest.param("no-default-template", "names no 'default' template", id="no-default"),
])
def test_bad_directories_are_refused_with_what_is_wrong(tmp_path: Path, what: str,
                                                        message: str) -> None:
    directory = _broken(tmp_path, what)
    with pytest.raises(TokenizerError, match=message):
        load_tokenizer(str(directory))


def test_a_path_that_is_not_a_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(TokenizerError, match="is not a directory"):
        load_tokenizer(str(tmp_path / "missing"))


# -- encoding piece by piece between added tokens -------------------------------------------

def _whole(tok_dir: Path, text: str) -> list[int]:
    from tokenizers import Tokenizer
    return list(Tokenizer.from_file(str(tok_dir / "tokenizer.json"))
                .encode(text, add_special_tokens=False).ids)


@given(st.lists(st.sampled_from(["the quick", " brown fox", "<s>", "<|eot_id|>", "\n\n",
                                 "<|start_header_id|>", "user", " é ", "lazy dog.", "  "]),
                max_size=12))
@settings(max_examples=60, deadline=None)
def test_pieces_between_added_tokens_encode_as_the_whole(tok_dir: Path, parts: list[str]) -> None:
    from tokenizers import Tokenizer

    from poolgate.scheduling.tokenizer.huggingface import _PieceCache

    cache = _PieceCache.for_encoder(Tokenizer.from_file(str(tok_dir / "tokenizer.json")))
    assert cache is not None
    text = "".join(parts)
    assert cache.encode(text) == _whole(tok_dir, text)
    assert cache.enabled


def test_a_shared_system_prompt_is_encoded_once(tok_dir: Path) -> None:
    tok = HFTokenizer.load(tok_dir)
    pieces = tok._pieces
    assert pieces is not None
    for question in ("the quick brown fox", "the lazy dog"):
        tok.token_ids({"messages": [SYSTEM, {"role": "user", "content": question}]})
    system_piece = "system"
    assert system_piece in pieces._ids  # cached once, reused by the second request
    assert "\n\nYou are a helpful assistant." in pieces._ids


def test_a_piecewise_difference_turns_the_cache_off(tok_dir: Path) -> None:
    from tokenizers import Tokenizer

    from poolgate.scheduling.tokenizer.huggingface import _PieceCache

    encoder = Tokenizer.from_file(str(tok_dir / "tokenizer.json"))
    wrong = _PieceCache(encoder, {"quick": 3})  # not an added token: splitting there is wrong
    assert wrong.encode("the quick brown fox") == _whole(tok_dir, "the quick brown fox")
    assert not wrong.enabled


def test_position_dependent_pipelines_are_encoded_whole() -> None:
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers

    from poolgate.scheduling.tokenizer.huggingface import _PieceCache

    meta = Tokenizer(models.BPE())
    meta.pre_tokenizer = pre_tokenizers.Metaspace(prepend_scheme="first")
    meta.add_special_tokens(["<s>"])
    assert _PieceCache.for_encoder(meta) is None
    normed = Tokenizer(models.BPE())
    normed.normalizer = normalizers.NFKC()
    normed.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    normed.add_special_tokens(["<s>"])
    assert _PieceCache.for_encoder(normed) is None
