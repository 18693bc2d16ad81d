from __future__ import annotations

import orjson
import pytest

from poolgate.proxy.models import merge_model_list

SERVED = orjson.dumps({"object": "list", "data": [
    {"id": "/model/llama2", "object": "model", "parent": None},
    {"id": "sql-lora", "object": "model", "parent": "/model/llama2"},
]})


def test_inference_model_names_are_added_once() -> None:
    doc = orjson.loads(merge_model_list(SERVED, ["sql-lora", "tweets"], created=7))
    assert [m["id"] for m in doc["data"]] == ["/model/llama2", "sql-lora", "tweets"]
    added = doc["data"][-1]
    assert added["owned_by"] == "poolgate" and added["created"] == 7 and added["object"] == "model"


def test_nothing_to_add_returns_the_same_bytes() -> None:
    assert merge_model_list(SERVED, ["sql-lora"], created=7) is SERVED


@pytest.mark.parametrize("body", [
    pytest.param(b"not json", id="not-json"),
    pytest.param(b'{"error": {"message": "x"}}', id="error-object"),
    pytest.param(b'["a"]', id="array"),
])
def test_other_bodies_pass_unchanged(body: bytes) -> None:
    assert merge_model_list(body, ["tweets"], created=7) == body
