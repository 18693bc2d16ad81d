"""`GET /v1/models` through an InferencePool: the model servers' list plus the pool's
InferenceModel names (the names clients may send, which the gateway maps to target models)."""

from __future__ import annotations

from collections.abc import Sequence

import orjson


def merge_model_list(body: bytes, names: Sequence[str], created: int) -> bytes:
    """The OpenAI model list in `body` with an entry added for each of `names` it lacks.

    A body that is not an OpenAI list (an error, another server's format) is returned unchanged.
    """
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body
    data = doc.get("data") if isinstance(doc, dict) else None
    if not isinstance(data, list):
        return body
    have = {m.get("id") for m in data if isinstance(m, dict)}
    added = False
    for name in names:
        if name not in have:
            data.append({"id": name, "object": "model", "created": created,
                         "owned_by": "poolgate", "root": name, "parent": None,
                         "max_model_len": None, "permission": []})
            added = True
    return orjson.dumps(doc) if added else body
