"""The named built-in scheduling profiles, as plain plugin lists (the config format itself)."""

from __future__ import annotations

from typing import Any

DEFAULT_PROFILE = "default"

# Prefix affinity outweighs the three load scorers together (4 > 1 + 1 + 1), so a full prefix
# match wins while the endpoint is within the load bound; beyond the bound its prefix score is 0
# and load decides. Bound: waiting + in-flight may exceed the least-loaded candidate's by
# max(4, 0.5 × that load) — 4 requests absorb scrape-interval noise on an idle pool, 50% keeps
# the rule proportional on a busy one.
BUILTIN_PROFILES: dict[str, list[dict[str, Any]]] = {
    "default": [
        {"type": "fresh-metrics-filter"},
        {"type": "lora-capable-filter"},
        {"type": "prefix-cache-scorer", "weight": 4,
         "params": {"loadBoundAbs": 4, "loadBoundRel": 0.5}},
        {"type": "queue-scorer", "weight": 1},
        {"type": "in-flight-scorer", "weight": 1},
        {"type": "kv-cache-utilization-scorer", "weight": 1},
        {"type": "lora-affinity-scorer", "weight": 1},
        {"type": "max-score-picker"},
    ],
    "round-robin": [
        {"type": "round-robin-picker"},
    ],
    "random": [
        {"type": "random-picker"},
    ],
    "least-in-flight": [
        {"type": "in-flight-scorer", "weight": 1},
        {"type": "max-score-picker"},
    ],
    "prefix-only": [
        {"type": "prefix-cache-scorer", "weight": 1},
        {"type": "max-score-picker"},
    ],
    "queue-kv": [
        {"type": "fresh-metrics-filter"},
        {"type": "lora-capable-filter"},
        {"type": "queue-scorer", "weight": 1},
        {"type": "kv-cache-utilization-scorer", "weight": 1},
        {"type": "lora-affinity-scorer", "weight": 1},
        {"type": "max-score-picker"},
    ],
}
