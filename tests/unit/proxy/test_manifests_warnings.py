"""A reload logs a configuration warning once, not at every reload (pods come and go)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from poolgate.proxy.manifests import load

POOL = """\
apiVersion: inference.networking.k8s.io/v1
kind: InferencePool
metadata: {name: pool, namespace: default}
spec:
  targetPorts: [{number: 8000}]
  selector: {matchLabels: {app: m}}
  endpointPickerRef: {name: epp}
"""
ENDPOINTS = """\
---
apiVersion: poolgate.dev/v1alpha1
kind: LocalEndpoints
metadata: {name: eps}
spec:
  labels: {app: m}
  addresses: [10.0.0.1]
"""
WARNING = "match selector app=m; the pool will answer 503"


def _logged(caplog: pytest.LogCaptureFixture, path: Path, warned: set[str] | None) -> int:
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="poolgate.server"):
        load([path], warned=warned)
    return sum(WARNING in r.getMessage() for r in caplog.records)


def test_a_warning_is_logged_again_only_after_it_went_away(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "pool.yaml"
    path.write_text(POOL)
    warned: set[str] = set()
    assert _logged(caplog, path, warned) == 1
    assert [w for w in warned if WARNING in w]
    assert _logged(caplog, path, warned) == 0  # the same warning: not repeated
    path.write_text(POOL + ENDPOINTS)
    assert _logged(caplog, path, warned) == 0  # gone
    assert not [w for w in warned if WARNING in w]
    path.write_text(POOL)
    assert _logged(caplog, path, warned) == 1  # back: said again


def test_without_a_record_every_load_logs_its_warnings(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "pool.yaml"
    path.write_text(POOL)
    assert _logged(caplog, path, None) == 1
    assert _logged(caplog, path, None) == 1
