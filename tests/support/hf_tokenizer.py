"""A tiny Hugging Face tokenizer directory built locally (nothing downloaded): a byte-level BPE
trained on a few sentences, a BOS-adding post-processor, and a chat template."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

# A Llama-3-like template that also renders tools (tojson) and refuses a bad role.
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% if tools %}{{ '<|start_header_id|>tools<|end_header_id|>\\n\\n' + tools | tojson + "
    "'<|eot_id|>' }}{% endif %}"
    "{% for message in messages %}"
    "{% if message['role'] not in ['system', 'user', 'assistant'] %}"
    "{{ raise_exception('unknown role ' + message['role']) }}{% endif %}"
    "{% generation %}{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + "
    "message['content'] | trim + '<|eot_id|>' }}{% endgeneration %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}"
    "{% endif %}{% if greeting is defined %}{{ greeting }}{% endif %}"
)
SPECIAL = ["<unk>", "<s>", "</s>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]
_CORPUS = [
    "the quick brown fox jumps over the lazy dog",
    "You are a helpful assistant. Answer briefly and cite the manual.",
    "shared prefix routing sends requests where their blocks are cached",
]


def build_tokenizer_dir(directory: Path, chat_template: Any = CHAT_TEMPLATE,
                        corpus: Sequence[str] = (), vocab_size: int = 400) -> Path:
    """Write tokenizer.json and tokenizer_config.json into `directory`; returns it. The BPE is
    trained on a few sentences, or on `corpus` with `vocab_size` tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    directory.mkdir(parents=True, exist_ok=True)
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size,
                                  special_tokens=SPECIAL,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(list(corpus) or _CORPUS * 20, trainer)
    bos = tok.token_to_id("<s>")
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", bos)])
    tok.save(str(directory / "tokenizer.json"))
    config: dict[str, Any] = {
        # The AddedToken form older configs use, next to plain strings.
        "bos_token": {"__type": "AddedToken", "content": "<s>", "lstrip": False,
                      "normalized": False, "rstrip": False, "single_word": False,
                      "special": True},
        "eos_token": "</s>",
        "unk_token": "<unk>", "tokenizer_class": "PreTrainedTokenizerFast",
        "model_max_length": 4096}
    if chat_template is not None:
        config["chat_template"] = chat_template
    (directory / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")
    return directory
