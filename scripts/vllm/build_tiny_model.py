"""Build a tiny random Llama model for `make test-vllm`, entirely offline.

Run with the vLLM venv's Python (it needs torch, transformers, tokenizers and safetensors):

    .venv-vllm/bin/python scripts/vllm/build_tiny_model.py .cache/vllm-tiny-llama

The tokenizer is a byte-level BPE trained here on a generated English-like corpus (seeded, so
the same script gives the same vocabulary), saved as a Hugging Face tokenizer directory:
`tokenizer.json`, and `tokenizer_config.json` with the special tokens and a chat template. The
model is a Llama-architecture config with two small layers and random weights saved as
safetensors. Nothing is downloaded. An existing complete directory is left as it is.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

VOCAB_SIZE = 1024
SPECIAL_TOKENS = ["<unk>", "<s>", "</s>", "<|system|>", "<|user|>", "<|assistant|>"]
BOS, EOS = "<s>", "</s>"
# Each message: its role tag, its content, EOS; the BOS once at the start. The template renders
# the BOS itself, so vLLM tokenizes a rendered chat without adding special tokens again.
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>\n' + message['content'] + eos_token + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}"
)
MARKER = "poolgate-tiny-model.json"
_WORDS_TEXT = (
    "the a an of to in and or for with on at by from as is are was be been it this that "
    "these those we you they he she my your our their what which who when where why how "
    "model server gateway request response token tokens prefix cache block blocks replica "
    "replicas route routing pool endpoint endpoints event events score scorer queue load "
    "latency time first answer question system user assistant help please explain write "
    "short long story poem code python list number numbers one two three four five six seven "
    "eight nine ten hundred thousand data table chart report summary about between under over "
    "again before after during while because if then else not no yes can will would should "
    "could may might must shall do does did make made take took give gave find found know "
    "think see look want use work call try ask need feel become leave put mean keep let begin "
    "seem show hear play run move live believe hold bring happen provide sit stand lose pay "
    "meet include continue set learn change lead understand watch follow stop create speak "
    "read allow add spend grow open walk win offer remember love consider appear buy wait "
    "serve die send expect build stay fall cut reach kill remain suggest raise pass sell "
    "require decide pull river mountain city country world people child children family house "
    "school water food light night day year week month morning evening music game book page"
)
WORDS = _WORDS_TEXT.split()


def corpus(lines: int, seed: int = 17) -> list[str]:
    """Seeded pseudo-English text, with digits and punctuation, to train the BPE on."""
    rng = random.Random(seed)
    out = []
    for _ in range(lines):
        words = [rng.choice(WORDS) for _ in range(rng.randint(4, 24))]
        if rng.random() < 0.3:
            words.insert(rng.randrange(len(words)), str(rng.randint(0, 9999)))
        text = " ".join(words)
        out.append(text[0].upper() + text[1:] + rng.choice([".", "?", "!", ",", ":"]))
    return out


def build_tokenizer(out: Path) -> dict[str, int]:
    """Train and save the tokenizer; return the special tokens' ids."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE, special_tokens=SPECIAL_TOKENS, show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(corpus(20_000), trainer=trainer)
    ids = {t: tok.token_to_id(t) for t in SPECIAL_TOKENS}
    # A completion prompt gets the BOS (add_special_tokens=True); a rendered chat already has it.
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B", special_tokens=[(BOS, ids[BOS])])
    tok.save(str(out / "tokenizer.json"))
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": BOS,
        "eos_token": EOS,
        "unk_token": "<unk>",
        "pad_token": EOS,
        "add_bos_token": True,
        "add_eos_token": False,
        "clean_up_tokenization_spaces": False,
        "model_max_length": 2048,
        "chat_template": CHAT_TEMPLATE,
    }
    (out / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")
    (out / "special_tokens_map.json").write_text(json.dumps(
        {"bos_token": BOS, "eos_token": EOS, "unk_token": "<unk>", "pad_token": EOS},
        indent=2) + "\n")
    return ids


def build_model(out: Path, vocab_size: int, ids: dict[str, int]) -> None:
    """A two-layer Llama with random weights (seeded), saved as safetensors."""
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=vocab_size, hidden_size=256, intermediate_size=512, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, head_dim=64,
        max_position_embeddings=2048, rms_norm_eps=1e-5, tie_word_embeddings=True,
        bos_token_id=ids[BOS], eos_token_id=ids[EOS], pad_token_id=ids[EOS],
        torch_dtype="bfloat16")
    model = LlamaForCausalLM(config).to(torch.bfloat16)
    model.save_pretrained(str(out), safe_serialization=True)
    GenerationConfig(bos_token_id=ids[BOS], eos_token_id=ids[EOS],
                     pad_token_id=ids[EOS]).save_pretrained(str(out))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="the model directory to create")
    parser.add_argument("--force", action="store_true", help="rebuild even if it exists")
    args = parser.parse_args()
    out: Path = args.out
    if (out / MARKER).exists() and not args.force:
        print(f"{out}: already built")
        return 0
    started = time.monotonic()
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    ids = build_tokenizer(tmp)
    from tokenizers import Tokenizer
    vocab_size = Tokenizer.from_file(str(tmp / "tokenizer.json")).get_vocab_size()
    build_model(tmp, vocab_size, ids)
    seconds = time.monotonic() - started
    (tmp / MARKER).write_text(json.dumps(
        {"vocab_size": vocab_size, "special_tokens": ids, "build_seconds": round(seconds, 2)},
        indent=2) + "\n")
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    print(f"{out}: built in {seconds:.1f} s (vocabulary {vocab_size})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
