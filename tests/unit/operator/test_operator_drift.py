"""Whether a live object already holds every rendered field (then the apply is skipped)."""

from __future__ import annotations

from typing import Any

import pytest

from poolgate.operator._drift import contains
from poolgate.operator.render import render

DESIRED = {"spec": {"replicas": 2, "env": [{"name": "A", "value": "1"}], "labels": {"x": "y"}}}


@pytest.mark.parametrize(("live", "expected"), [
    pytest.param(DESIRED, True, id="equal"),
    pytest.param({"status": {}, "spec": {**DESIRED["spec"], "paused": False}}, True,
                 id="server-added-fields"),
    pytest.param({"spec": {**DESIRED["spec"],
                           "env": [{"name": "A", "value": "1", "extra": 1}]}}, True,
                 id="defaulted-list-item"),
    pytest.param({"spec": {**DESIRED["spec"], "replicas": 7}}, False, id="edited-scalar"),
    pytest.param({"spec": {**DESIRED["spec"], "env": [{"name": "A", "value": "2"}]}}, False,
                 id="edited-env"),
    pytest.param({"spec": {**DESIRED["spec"], "env": []}}, False, id="list-shorter"),
    pytest.param({"spec": {"replicas": 2, "env": [{"name": "A", "value": "1"}]}}, False,
                 id="missing-key"),
    pytest.param({"spec": "nope"}, False, id="wrong-type"),
])
def test_contains(live: dict[str, Any], expected: bool) -> None:
    assert contains(live, DESIRED) is expected


def test_a_rendered_object_contains_itself() -> None:
    obj = {"metadata": {"name": "llama", "namespace": "ml", "uid": "u", "generation": 1},
           "spec": {"modelRef": "m"}}
    for rendered in render(obj):
        assert contains(rendered, rendered)
