"""The simulator's text generator (no model, no vocabulary files); its tokenizer is
`poolgate.core.sim_tokens`, shared with the gateway's precise prefix scorer."""

from __future__ import annotations

import random
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

# Generated text is drawn from these pieces; the id of piece i is _PIECE_BASE + i.
_WORDS = (
    "the of and to in is that for it as was with be by on not he this are or his from at "
    "which but have an they you were her she there one all we their been has would when "
    "will more no if out so said what up its about into than them can only other new some "
    "could time these two may then do first any my now such like our over man me even most "
    "made after also did many before must through back years where much your way well down "
    "should because each just those people how too little state good very make world still "
    "own see men work long get here between both life being under never day same another "
    "know while last might us great old year off come since against go came right used "
    "take three model token cache server request stream batch prefix gateway pool"
)
_PIECES: tuple[str, ...] = (
    *(" " + w for w in _WORDS.split(" ")), "ing", "ed", "s", ",", ".", "ly", "er",
)
_PIECE_BASE = 1000


def fingerprint(ids: Sequence[int]) -> int:
    """A stable 32-bit digest of a token sequence (same in every process)."""
    return zlib.crc32(b"".join(i.to_bytes(4, "little") for i in ids))


@dataclass(frozen=True, slots=True)
class Token:
    """One generated token."""

    token_id: int
    text: str


class TextGenerator:
    """Draws generated tokens from a seeded RNG, so the same seed gives the same text."""

    def __init__(self, seed: int) -> None:
        self._rng = random.Random(seed)

    def next_token(self) -> Token:
        """The next generated token."""
        i = self._rng.randrange(len(_PIECES))
        return Token(_PIECE_BASE + i, _PIECES[i])

    def chance(self, p: float) -> bool:
        """True with probability `p` (for end-of-sequence decisions)."""
        return p > 0 and self._rng.random() < p
