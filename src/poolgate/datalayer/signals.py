"""The live signals of one model server, as read from one scrape of its `/metrics`."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Signals:
    """One scrape's view of a model server: queues, KV-cache use, LoRA adapters, cache shape.

    `waiting` and `running` are request counts summed over every engine of the server;
    `kv_usage` is the KV-cache utilisation in [0, 1]; `lora_running` / `lora_waiting` are the
    adapters with requests running / waiting; `max_lora` is the server's adapter slot count
    (None when the server publishes no LoRA information); `block_size` / `num_blocks` are the
    KV-cache geometry (None when not published); `scraped_at` is the monotonic time of the scrape.
    """

    waiting: int
    running: int
    kv_usage: float
    lora_running: frozenset[str] = frozenset()
    lora_waiting: frozenset[str] = frozenset()
    max_lora: int | None = None
    block_size: int | None = None
    num_blocks: int | None = None
    scraped_at: float = 0.0

    def age(self, now: float) -> float:
        """Seconds since the scrape, at monotonic time `now`."""
        return now - self.scraped_at
