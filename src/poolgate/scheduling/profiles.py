"""The named built-in scheduling profiles, as plain plugin lists (the config format itself)."""

from __future__ import annotations

from typing import Any

DEFAULT_PROFILE = "default"

# Load-aware prefix affinity. Prefix affinity outweighs the two load scorers together (4 > 1 + 1),
# so a full prefix match wins while its endpoint is within the load bound; beyond the bound its
# prefix score is 0 and load decides. The bound is on the gateway's own in-flight counts (exact
# at every pick, unlike scraped queues, which lag a scrape interval): affinity stops sending an
# endpoint more once it carries more than min(least-loaded + max(12, least-loaded),
# 12 + 2 x mean). The slack is wide on purpose: every spill is a full prefill of the prefix on
# another endpoint, which costs more than a few queued requests, so the bound is for real
# hotspots (a prefix too popular for one endpoint), not for Poisson noise. A prefix nobody holds
# goes where the index holds the fewest blocks (missSpread), so prefixes start out spread
# evenly. Affinity also stops for an endpoint with more than 2 streams awaiting their first
# token (prefillBound: it is running a long prefill, and requests sent now queue behind it), and
# the in-flight scorer adds 4 x those streams to an endpoint's load, so spilled requests go to an
# endpoint that is decoding rather than one that is prefilling. The KV-utilisation scorer is left
# out: an endpoint holding hot prefixes shows high KV use, so that scorer works against affinity
# (and a pick is cheaper without it).
# docs/scheduling.md ("How the defaults were chosen") has the measurements behind these numbers.
BUILTIN_PROFILES: dict[str, list[dict[str, Any]]] = {
    "default": [
        {"type": "fresh-metrics-filter"},
        {"type": "lora-capable-filter"},
        {"type": "prefix-cache-scorer", "weight": 4,
         "params": {"loadBoundAbs": 12, "loadBoundRel": 1.0, "loadBoundMean": 2.0,
                    "loadSignal": "in-flight", "missSpread": 0.5, "prefillBound": 2}},
        {"type": "in-flight-scorer", "weight": 1, "params": {"awaitingWeight": 4}},
        {"type": "queue-scorer", "weight": 1},
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
