"""The scheduler's memory of its recent picks, and why each went where it did (the status page's
"recent picks").

Recording is on the request path, so it costs O(1) and allocates nothing: `PickLog` is a ring
of `PickRecord`s allocated once, and a pick fills the next one with references to what it
computed anyway (the weighted totals and each scorer's scores, which scorers return as new
dicts). Nothing is compared or summed then; `explain` works out which scorer decided when
someone reads the log.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from poolgate.scheduling.interfaces import Picker, WeightedScorer

DEFAULT_PICK_LOG_SIZE = 16
_TIE = 1e-9


class PickRecord:
    """One pick as the scheduler saw it; overwritten in place when the ring comes round.

    `scores[i]` is what the i-th scorer of the profile returned (None when it was skipped:
    weight 0); `offered` counts the addresses the pick was given, `candidates` those the
    filters kept."""

    __slots__ = ("address", "at", "candidates", "lora", "model", "offered", "scores", "totals")

    def __init__(self, scorers: int) -> None:
        self.at = 0.0
        self.model = ""
        self.lora: str | None = None
        self.address = ""
        self.offered = 0
        self.candidates = 0
        self.totals: dict[str, float] = {}
        self.scores: list[dict[str, float] | None] = [None] * scorers


class PickLog:
    """A ring of the last `size` picks of one scheduler (`size` >= 1).

    The scheduler fills `slot` during a pick and calls `commit()` once the pick succeeded; a
    pick that raises leaves the slot to the next one."""

    __slots__ = ("_next", "_records", "count", "slot")

    def __init__(self, size: int, scorers: int) -> None:
        if size < 1:
            raise ValueError(f"a pick log holds at least one pick, got {size}")
        self._records = [PickRecord(scorers) for _ in range(size)]
        self._next = 0
        self.slot = self._records[0]
        self.count = 0  # picks committed since the start

    def commit(self) -> None:
        """The pick in `slot` is complete: keep it and move to the next slot."""
        i = self._next + 1
        if i == len(self._records):
            i = 0
        self._next = i
        self.slot = self._records[i]
        self.count += 1

    def recent(self, limit: int | None = None) -> list[PickRecord]:
        """The committed picks, newest first, at most `limit`."""
        records = self._records
        n = min(self.count, len(records))
        if limit is not None:
            n = min(n, limit)
        return [records[(self._next - 1 - k) % len(records)] for k in range(n)]


@dataclass(frozen=True, slots=True)
class PickExplanation:
    """Why a pick went where it did.

    `decided_by` names the plugin that made the difference: the scorer whose weighted score put
    the chosen endpoint furthest ahead of the runner-up (`margin`, in weighted-score units), or
    the picker when the scores did not decide (a tie broken at random, a picker that ignores
    scores, or a weighted-random choice of another than the best). `reason` says which of
    these it was in a few words; `contributions` are each scorer's weighted score for the
    chosen endpoint."""

    at: float
    model: str
    lora: str | None
    endpoint: str
    offered: int
    candidates: int
    total: float
    runner_up: str | None
    runner_up_total: float | None
    decided_by: str
    margin: float
    reason: str
    contributions: dict[str, float]


def explain(record: PickRecord, scorers: Sequence[WeightedScorer],
            picker: Picker) -> PickExplanation:
    """Why `record`'s pick went where it did, under the profile's `scorers` and `picker`."""
    chosen, totals = record.address, record.totals
    total = totals.get(chosen, 0.0)
    runner_up: str | None = None
    runner_up_total = -math.inf
    for address, value in totals.items():
        if address != chosen and value > runner_up_total:
            runner_up, runner_up_total = address, value
    contributions = {str(w.scorer.typed_name): w.weight * _clamped(scores, chosen)
                     for w, scores in zip(scorers, record.scores, strict=False)
                     if scores is not None}
    decided_by, margin, reason = _decider(record, scorers, picker, runner_up, total,
                                          runner_up_total)
    return PickExplanation(
        at=record.at, model=record.model, lora=record.lora, endpoint=chosen,
        offered=record.offered, candidates=record.candidates, total=total,
        runner_up=runner_up, runner_up_total=None if runner_up is None else runner_up_total,
        decided_by=decided_by, margin=margin, reason=reason, contributions=contributions)


def _decider(record: PickRecord, scorers: Sequence[WeightedScorer], picker: Picker,
             runner_up: str | None, total: float,
             runner_up_total: float) -> tuple[str, float, str]:
    """(plugin, margin, reason) of `explain`."""
    picker_name = str(picker.typed_name)
    if runner_up is None:
        return "-", 0.0, "only candidate"
    if not any(s is not None for s in record.scores):
        return picker_name, 0.0, "picker (no scorer ran)"
    if total < runner_up_total - _TIE:
        return picker_name, total - runner_up_total, "picker chose below the best score"
    if total - runner_up_total <= _TIE:
        return picker_name, 0.0, "tie broken by the picker"
    best, best_margin = "-", -math.inf
    for w, scores in zip(scorers, record.scores, strict=False):
        if scores is None:
            continue
        margin = w.weight * (_clamped(scores, record.address) - _clamped(scores, runner_up))
        if margin > best_margin:
            best, best_margin = str(w.scorer.typed_name), margin
    return best, best_margin, "highest weighted score"


def _clamped(scores: dict[str, float], address: str) -> float:
    """A scorer's score for `address` as the runner counted it: missing 0, clamped to [0, 1]."""
    score = scores.get(address, 0.0)
    if not 0.0 <= score <= 1.0:
        return 1.0 if score > 1.0 else 0.0
    return score
