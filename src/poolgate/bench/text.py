"""Deterministic filler text of a given token length (about 4 characters per token)."""

from __future__ import annotations

import random

CHARS_PER_TOKEN = 4

# Common short English words: realistic-looking text whose length is easy to control.
_WORD_TEXT = (
    "the of and to in is you that it he was for on are as with his they at be this have from "
    "or one had by word but not what all were we when your can said there use an each which she "
    "do how their if will up other about out many then them these so some her would make like "
    "him into time has look two more write go see number no way could people my than first water "
    "been call who oil its now find long down day did get come made may part over new sound take "
    "only little work know place year live me back give most very after thing our just name good "
    "sentence man think say great where help through much before line right too mean old any same "
    "tell boy follow came want show also around form three small set put end does another well "
    "large must big even such because turn here why ask went men read need land different home "
    "us move try kind hand picture again change off play spell air away animal house point page "
    "letter mother answer found study still learn should world high every near add food between "
    "own below country plant last school father keep tree never start city earth eye light thought"
)
_WORDS = tuple(_WORD_TEXT.split())


def filler_text(rng: random.Random, tokens: int) -> str:
    """Text of exactly `tokens * CHARS_PER_TOKEN` characters, drawn from `rng`."""
    want = tokens * CHARS_PER_TOKEN
    parts: list[str] = []
    size = 0
    while size <= want:
        word = rng.choice(_WORDS)
        parts.append(word)
        size += len(word) + 1
    return " ".join(parts)[:want]


def prompt_tokens_estimate(text: str) -> int:
    """The token count the generator aimed at for `text` (chars / 4, at least 1)."""
    return max(1, len(text) // CHARS_PER_TOKEN)
