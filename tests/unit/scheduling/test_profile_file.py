"""Custom scheduler profiles from a YAML file: poolgate plugin lists and GIE EndpointPickerConfig."""

from __future__ import annotations

from pathlib import Path

import pytest

from poolgate.scheduling.errors import SchedulerConfigError
from poolgate.scheduling.profile_file import load_profile_file

TAIL_FIRST = """\
profile: tail-first
plugins:
- type: prefix-cache-scorer
  weight: 4
  params: {loadBoundAbs: 12, loadSignal: in-flight, missSpread: 0.5}
- type: in-flight-scorer
- type: max-score-picker
"""

GIE = """\
apiVersion: inference.networking.x-k8s.io/v1alpha1
kind: EndpointPickerConfig
plugins:
- type: single-profile-handler
- type: queue-scorer
- name: prefix
  type: prefix-cache-scorer
  parameters: {maxPrefixBlocksToMatch: 256, lruCapacityPerServer: 31250}
- type: max-score-picker
schedulingProfiles:
- name: gie-default
  plugins:
  - pluginRef: queue-scorer
    weight: 1
  - pluginRef: prefix
    weight: 3
  - pluginRef: max-score-picker
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "profiles.yaml"
    path.write_text(text)
    return path


def test_loads_poolgate_and_gie_documents(tmp_path: Path) -> None:
    profiles = load_profile_file(_write(tmp_path, TAIL_FIRST + "---\n" + GIE))
    assert sorted(profiles) == ["gie-default", "tail-first"]
    tail = profiles["tail-first"].resolved_plugins()
    assert [p.type for p in tail] == ["prefix-cache-scorer", "in-flight-scorer", "max-score-picker"]
    gie = profiles["gie-default"].resolved_plugins()
    assert [(p.type, p.weight) for p in gie] == [
        ("queue-scorer", 1), ("prefix-cache-scorer", 3), ("max-score-picker", None)]


@pytest.mark.parametrize(("text", "message"), [
    pytest.param("profile: default\nplugins: [{type: queue-scorer}]\n",
                 "'default' is a built-in profile's name", id="shadows-builtin"),
    pytest.param(TAIL_FIRST + "---\n" + TAIL_FIRST, "(document 2): profile 'tail-first' is defined twice",
                 id="twice"),
    pytest.param("profile: mine\n", "profile 'mine' has no plugins list", id="no-plugins"),
    pytest.param("profile: mine\nplugins: [{type: magic-scorer}]\n",
                 "unknown plugin type 'magic-scorer'", id="unknown-plugin"),
    pytest.param("profile: mine\nplugins: [{type: prefix-cache-scorer, params: {blockSize: 0}}]\n",
                 "blockSize", id="bad-param"),
    pytest.param("profile: mine\nplugins: []\nstaleness: 0\n", "staleness", id="bad-field"),
    pytest.param("- a list\n", "(document 1): expected a mapping, got list", id="not-a-mapping"),
    pytest.param("kind: EndpointPickerConfig\nplugins: []\n", "no named schedulingProfiles",
                 id="gie-without-profiles"),
    pytest.param("profile: [unclosed\n", "not valid YAML", id="yaml"),
    pytest.param("# nothing\n", "defines no scheduling profile", id="empty"),
])
def test_errors_name_the_file_and_the_problem(tmp_path: Path, text: str, message: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(SchedulerConfigError) as info:
        load_profile_file(path)
    assert str(path) in str(info.value)
    assert message in str(info.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(SchedulerConfigError, match="cannot read"):
        load_profile_file(tmp_path / "absent.yaml")
